/* Tests of the hmig binary around a running migration: the progress line,
 * the control socket (status, set-rate, switch, cancel) and --quiet.  Each
 * migration is small (32 MiB or less) and checks its integrity. */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>

#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "doc_check.h"
#include "keys.h"
#include "run.h"

#define contains(hay, needle) \
	cr_assert(not(eq(ptr, strstr((hay), (needle)), NULL)), "no '%s' in:\n%s", (needle), (hay))

/* Default control sockets go under $XDG_RUNTIME_DIR/hmig: the scratch
 * directory's, so tests see only their own. */
static void scratch_env(void)
{
	run_in_scratch();
	setenv("XDG_RUNTIME_DIR", run_scratch, 1);
}

TestSuite(mig, .init = scratch_env, .fini = run_scratch_done, .timeout = 180);

/* "hmig status --json WHO" until it answers in `phase`; its "return". */
static json_t *status_when(const char *who, const char *phase)
{
	for (;;) {
		struct run r;
		json_t *v = NULL;
		char err[DOC_ERR_LEN];

		run_hmig(&r, "status --json %s", who);
		if (r.status == 0 && doc_parse(r.out, strlen(r.out), &v, err) == 0 &&
		    (!phase || !strcmp(doc_str(v, "return.phase"), phase))) {
			json_t *ret = json_incref(json_object_get(v, "return"));

			json_decref(v);
			run_free(&r);
			return ret;
		}
		json_decref(v);
		run_free(&r);
		usleep(50000);
	}
}

/* The one file in the default control directory: the pid of its hmig. */
static long default_socket_pid(void)
{
	char dir[64];
	struct dirent *e;
	long pid = 0;

	snprintf(dir, sizeof(dir), "%s/hmig", run_scratch);
	DIR *d = opendir(dir);
	cr_assert(not(eq(ptr, d, NULL)), "no %s", dir);
	while ((e = readdir(d)))
		if (e->d_name[0] != '.')
			pid = strtol(e->d_name, NULL, 10);
	closedir(d);
	return pid;
}

static void expect_integrity_ok(const char *path)
{
	char err[DOC_ERR_LEN];
	json_t *v;

	cr_assert(eq(int, doc_load(path, &v, err), 0), "%s", err);
	doc_check_str(v, "integrity", "ok");
	doc_check_str(v, "result", "ok");
	json_decref(v);
}

/* An operator watches a capped pre-copy, forces the switch and lifts the
 * cap through the control socket; both sides print progress to a log. */
Test(mig, status_switch_and_set_rate_while_send_runs)
{
	struct run src, dst;
	json_t *st, *v;
	char err[DOC_ERR_LEN];

	run_hmig_bg("dst", "recv --insecure --listen unix:%s/mig.sock --json dst.json", run_scratch);
	/* 32 MiB at 1 MB/s: pass 0 takes half a minute unless told otherwise;
	 * and only the operator can end pre-copy (it never converges, never
	 * runs out of passes or progress). */
	run_hmig_bg("src", "send --insecure --to unix:%s/mig.sock --mem 32M --mode precopy --warmup 0.1 "
		    "-o rate_limit_bps=1000000 -o downtime_target_ms=0 -o dirty_threshold_pages=0 "
		    "-o max_passes=1000 -o min_progress=0 --control src.sock --json src.json",
		    run_scratch);

	st = status_when("src.sock", "precopy");
	doc_check_str(st, "side", "source");
	cr_assert(eq(u64, doc_check_u64(st, "rate_limit_bps"), 1000000));
	cr_assert(eq(u64, doc_check_u64(st, "guest_pages"), 8192));
	json_decref(st);
	/* The destination, by its pid: its default socket. */
	char pid[32];
	snprintf(pid, sizeof(pid), "%ld", default_socket_pid());
	st = status_when(pid, "receiving");
	doc_check_str(st, "side", "destination");
	json_decref(st);

	free(run_expect(0, NULL, "switch src.sock"));
	char *out = run_expect(0, NULL, "set-rate src.sock 0");
	contains(out, "rate cap: none");
	free(out);
	/* A destination has no rate to set: one line, and it runs on. */
	free(run_expect(1, "ask the source", "set-rate %s 1M", pid));

	run_wait("src", &src);
	run_wait("dst", &dst);
	cr_assert(eq(int, src.status, 0), "%s", src.err);
	cr_assert(eq(int, dst.status, 0), "%s", dst.err);
	expect_integrity_ok("dst.json");
	expect_integrity_ok("src.json");
	cr_assert(eq(int, doc_load("src.json", &v, err), 0), "%s", err);
	doc_check_str(v, "switchover.reason", "forced");
	json_decref(v);
	/* Not a terminal: plain lines, the last with the final state. */
	contains(src.err, "hmig send: ");
	contains(src.err, " done: ");
	contains(dst.err, "hmig recv: ");
	contains(dst.err, " complete: ");
	cr_assert(eq(ptr, strchr(src.err, '\r'), NULL));
	/* Both sockets went with their processes. */
	cr_assert(eq(int, access("src.sock", F_OK), -1));
	cr_assert(eq(long, default_socket_pid(), 0));
	run_free(&src);
	run_free(&dst);
}

static int connect_to(const char *path)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);

	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path);
	cr_assert(eq(int, connect(fd, (struct sockaddr *)&sun, sizeof(sun)), 0), "%s",
		  strerror(errno));
	return fd;
}

/* One reply line from fd. */
static json_t *reply_line(int fd, char *buf, size_t len)
{
	size_t got = 0;
	char *nl;

	while (!(nl = memchr(buf, '\n', got))) {
		ssize_t n = recv(fd, buf + got, len - got, 0);

		cr_assert(gt(sz, (size_t)(n > 0 ? n : 0), 0), "the socket closed");
		got += (size_t)n;
	}
	*nl = '\0';
	cr_assert(eq(ptr, memchr(nl + 1, '\n', got - (size_t)(nl + 1 - buf)), NULL),
		  "more than one line per request");
	return doc_check_parse(buf);
}

/* A stale socket is replaced, a live one is not; the socket is the owner's
 * only; a bad request gets one error line and the migration goes on. */
Test(mig, the_control_socket_is_safe_to_poke)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	struct run a;
	struct stat st;
	char buf[8192];
	json_t *v;

	/* A socket nobody listens on: what a killed hmig leaves. */
	int s = socket(AF_UNIX, SOCK_STREAM, 0);
	snprintf(sun.sun_path, sizeof(sun.sun_path), "c.sock");
	cr_assert(eq(int, bind(s, (struct sockaddr *)&sun, sizeof(sun)), 0));
	close(s);

	run_hmig_bg("a", "recv --insecure --listen unix:%s/a.sock --control c.sock --no-progress", run_scratch);
	json_decref(status_when("c.sock", "setup"));
	cr_assert(eq(int, stat("c.sock", &st), 0));
	cr_assert(eq(int, (int)(st.st_mode & S_IFMT), S_IFSOCK), "c.sock is not a socket");
	cr_assert(eq(int, st.st_mode & 0777, 0600), "mode %o", st.st_mode & 0777);

	/* A second run does not take a live socket's path. */
	free(run_expect(2, "another hmig answers at c.sock",
			"recv --insecure --listen unix:%s/b.sock --control c.sock", run_scratch));
	cr_assert(eq(int, stat("c.sock", &st), 0), "the live socket was removed");

	/* Bad requests, one answer line each; the connection stays usable. */
	int fd = connect_to("c.sock");
	static const char *const bad[] = {
		"nonsense\n", "{\"execute\": 42}\n", "{\"execute\": \"reboot\"}\n",
		"{\"execute\": \"set-rate\"}\n", "{\"execute\": \"switch\"}\n", "[1, 2]\n",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		cr_assert(eq(sz, (size_t)send(fd, bad[i], strlen(bad[i]), 0), strlen(bad[i])));
		v = reply_line(fd, buf, sizeof(buf));
		cr_assert(not(eq(ptr, (void *)doc_str(v, "error"), NULL)), "no error for %s", bad[i]);
		json_decref(v);
	}
	const char ok[] = "{\"execute\": \"status\"}\n";
	cr_assert(eq(sz, (size_t)send(fd, ok, strlen(ok), 0), strlen(ok)));
	v = reply_line(fd, buf, sizeof(buf));
	doc_check_str(v, "return.side", "destination");
	json_decref(v);
	/* A line longer than any request: an error, and the connection ends. */
	memset(buf, 'x', sizeof(buf));
	cr_assert(gt(int, (int)send(fd, buf, sizeof(buf), MSG_NOSIGNAL), 0));
	v = reply_line(fd, buf, sizeof(buf));
	cr_assert(not(eq(ptr, (void *)doc_str(v, "error"), NULL)));
	json_decref(v);
	close(fd);

	free(run_expect(0, NULL, "cancel c.sock"));
	run_wait("a", &a);
	cr_assert(eq(int, a.status, 1), "%s", a.err);
	contains(a.err, "cancelled");
	cr_assert(eq(int, access("c.sock", F_OK), -1), "the socket outlived its hmig");
	run_free(&a);

	free(run_expect(1, "no control socket at c.sock", "status c.sock"));
}

Test(mig, demo_quiet_prints_nothing)
{
	struct run r;

	run_hmig(&r, "demo --mem 16M --quiet --json demo.json");
	cr_assert(eq(int, r.status, 0), "%s", r.err);
	cr_assert(eq(str, r.out, ""));
	cr_assert(eq(str, r.err, ""));
	expect_integrity_ok("demo.json");
	run_free(&r);
}

/* On a terminal the progress is one line, redrawn in place. */
Test(mig, a_terminal_gets_one_redrawn_line)
{
	struct run r;
	char cmd[512];

	if (system("command -v script >/dev/null") != 0)
		cr_skip_test("no script(1) to give hmig a terminal (apt-get install bsdutils)");
	snprintf(cmd, sizeof(cmd), "script -qec \"'%s' demo --mem 16M --json demo.json\" /dev/null",
		 run_hmig_path());
	FILE *p = popen(cmd, "r");
	cr_assert(not(eq(ptr, p, NULL)));
	char buf[65536];
	size_t n = fread(buf, 1, sizeof(buf) - 1, p);
	buf[n] = '\0';
	r.status = pclose(p);
	cr_assert(eq(int, r.status, 0), "%s", buf);
	contains(buf, "\r");
	contains(buf, "\033[K");
	contains(buf, " done: ");
	contains(buf, "== hybrid migration, both sides");
	expect_integrity_ok("demo.json");
}
