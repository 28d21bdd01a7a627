#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "guest/synth/synth.h"
#include "harness.h"
#include "uffd/uffd.h"

static void sleep_s(double s)
{
	struct timespec ts = { .tv_sec = (time_t)s, .tv_nsec = (long)((s - (double)(time_t)s) * 1e9) };

	nanosleep(&ts, NULL);
}

void mig_case_init(struct mig_case *c, const char *workload, uint64_t mem)
{
	memset(c, 0, sizeof(*c));
	c->guest = (struct hmig_synth_params){ .mem_bytes = mem, .vcpus = 2, .workload = workload,
					       .seed = 11, .fill = 1.0 };
	hmig_config_init(&c->cfg);
	/* Plaintext unless a test sets credentials: the CRC32C path, checked
	 * on every page; test_secure.c runs the TLS ones. */
	c->cfg.insecure = true;
	c->cfg.mode = HMIG_MODE_PRECOPY;
	c->cfg.connect_timeout_ms = 5000;
	c->cfg.accept_timeout_ms = 20000;
	c->cfg.io_timeout_ms = 10000;
	c->warmup_s = 0.2;
	c->run_after_s = 0.3;
}

static int dump(void *ctx, FILE *f, int (*report)(void *, FILE *))
{
	return report(ctx, f);
}

static int dest_report(void *d, FILE *f)
{
	return hmig_dest_report(d, f);
}

static int src_report(void *s, FILE *f)
{
	return hmig_source_report(s, f);
}

static bool parse_file(const char *path, json_t **out)
{
	char err[DOC_ERR_LEN];

	return doc_load(path, out, err) == 0;
}

/* A fake, for mig_case.dest_no_postcopy only: synth's ops with the fault fd
 * taken away, which is how a backend says it cannot post-copy. */
static int fake_no_fault_fd(struct hmig_guest *g)
{
	snprintf(g->err, sizeof(g->err), "fake: this destination cannot post-copy");
	return -EOPNOTSUPP;
}

static struct hmig_guest_ops fake_no_postcopy_ops;

/* A fake, for mig_case.dest_guest_dies only: synth's ops whose fault
 * reader, a few wake-ups into post-copy, says the guest is gone, as the
 * Xen backend does for a domain that crashed there. */
static struct hmig_guest_ops fake_dies_ops;
static int (*real_faults_read)(struct hmig_guest *g, uint64_t *pfns, uint32_t max);

static int fake_dies_faults_read(struct hmig_guest *g, uint64_t *pfns, uint32_t max)
{
	static int calls;

	if (++calls > 3) {
		snprintf(g->err, sizeof(g->err), "fake: the guest died during post-copy");
		return -ESRCH;
	}
	return real_faults_read(g, pfns, max);
}

/* The child: a destination that reports to `json` and exits 0 (ok), 1
 * (migration failed), 3 (integrity mismatch). */
static void dest_main(const struct mig_case *c, int ready_fd, const char *json)
{
	struct hmig_guest *g;
	struct hmig_dest *d;
	char err[256];

	if (synth_open_dest_holed(c->holes, &g, err) ||
	    hmig_dest_new(&c->cfg, g, "127.0.0.1:0", &d, err)) {
		fprintf(stderr, "dest setup: %s\n", err);
		_exit(1);
	}
	if (c->dest_no_postcopy) {
		fake_no_postcopy_ops = *g->ops;
		fake_no_postcopy_ops.fault_fd = fake_no_fault_fd;
		g->ops = &fake_no_postcopy_ops;
	}
	if (c->dest_guest_dies) {
		fake_dies_ops = *g->ops;
		real_faults_read = g->ops->faults_read;
		fake_dies_ops.faults_read = fake_dies_faults_read;
		g->ops = &fake_dies_ops;
	}
	dprintf(ready_fd, "%s\n", hmig_dest_address(d));
	close(ready_fd);
	int rc = hmig_dest_run(d), status = rc ? 1 : 0;
	if (!rc) {
		sleep_s(c->run_after_s);
		g->ops->pause(g);
		int v = g->ops->verify(g);
		hmig_dest_set_integrity(d, v ? "mismatch" : "ok", v ? hmig_guest_error(g) : NULL);
		if (v) {
			fprintf(stderr, "dest oracle: %s\n", hmig_guest_error(g));
			status = 3;
		}
	} else {
		fprintf(stderr, "dest: %s\n", hmig_dest_error(d));
	}
	FILE *f = fopen(json, "w");
	if (f) {
		dump(d, f, dest_report);
		fclose(f);
	}
	hmig_dest_free(d);
	g->ops->destroy(g);
	_exit(status);
}

void mig_run(const struct mig_case *c, struct mig_result *r)
{
	char json[] = "/tmp/hmig-test-XXXXXX", addr[128] = "";
	int pfd[2];
	struct hmig_guest *g;
	struct hmig_source *src;
	char err[256];

	memset(r, 0, sizeof(*r));
	int tfd = mkstemp(json);
	cr_assert_geq(tfd, 0);
	close(tfd);
	cr_assert_eq(pipe(pfd), 0);
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		close(pfd[0]);
		dest_main(c, pfd[1], json);
	}
	close(pfd[1]);
	struct pollfd p = { .fd = pfd[0], .events = POLLIN };
	if (poll(&p, 1, 10000) == 1) {
		ssize_t n = read(pfd[0], addr, sizeof(addr) - 1);
		addr[n > 0 ? n : 0] = '\0';
		addr[strcspn(addr, "\n")] = '\0';
	}
	close(pfd[0]);
	cr_assert(addr[0], "the destination never listened");

	if (c->kill_src_after_s > 0) {
		pid_t spid = fork();

		cr_assert_geq(spid, 0);
		if (spid == 0) {
			if (synth_open_holed(&c->guest, c->holes, &g, err) || g->ops->run(g))
				_exit(1);
			sleep_s(c->warmup_s);
			if (hmig_source_new(&c->cfg, g, &src, err))
				_exit(1);
			_exit(hmig_source_run(src, addr) ? 1 : 0);
		}
		sleep_s(c->kill_src_after_s);
		kill(spid, SIGKILL);
		waitpid(spid, NULL, 0);
		int st = 0;
		waitpid(pid, &st, 0);
		r->src_rc = -ECONNRESET;
		r->dst_status = WIFEXITED(st) ? WEXITSTATUS(st) : -WTERMSIG(st);
		r->have_dst = parse_file(json, &r->dst);
		unlink(json);
		return;
	}
	if (c->stranger_psk) {
		struct hmig_config sc = c->cfg;
		struct hmig_synth_params sp = c->guest;

		sc.tls_psk = c->stranger_psk;
		sc.tls_creds = NULL;
		sc.insecure = false;
		sp.mem_bytes = 4ull << 20;
		cr_assert_eq(synth_open_holed(&sp, 0, &g, err), 0, "%s", err);
		cr_assert_eq(g->ops->run(g), 0);
		cr_assert_eq(hmig_source_new(&sc, g, &src, err), 0, "%s", err);
		r->stranger_rc = hmig_source_run(src, addr);
		snprintf(r->stranger_err, sizeof(r->stranger_err), "%s", hmig_source_error(src));
		hmig_source_free(src);
		g->ops->destroy(g);
	}
	struct relay rl;
	bool relayed = c->relay.pages_record || c->relay.stream_offset;
	if (relayed) {
		relay_start(&rl, addr, &c->relay);
		snprintf(addr, sizeof(addr), "%s", rl.addr);
	}
	cr_assert_eq(synth_open_holed(&c->guest, c->holes, &g, err), 0, "%s", err);
	cr_assert_eq(g->ops->run(g), 0);
	sleep_s(c->warmup_s);
	cr_assert_eq(hmig_source_new(&c->cfg, g, &src, err), 0, "%s", err);

	pid_t killer = 0;
	if (c->kill_dest_after_s > 0) {
		killer = fork();
		if (killer == 0) {
			sleep_s(c->kill_dest_after_s);
			kill(pid, SIGKILL);
			_exit(0);
		}
	}
	r->src_rc = hmig_source_run(src, addr);
	/* As 'hmig send' does: the destination's oracle has the last word,
	 * and the connection closes only after it (a relay waits for that). */
	if (!r->src_rc)
		r->src_rc = hmig_source_wait_verdict(src, c->cfg.io_timeout_ms);
	snprintf(r->src_err, sizeof(r->src_err), "%s", hmig_source_error(src));
	if (relayed) {
		relay_stop(&rl);
		r->flips = atomic_load(&rl.flips);
		r->flipped_pfn = atomic_load(&rl.flipped_pfn);
	}
	if (killer > 0)
		waitpid(killer, NULL, 0);

	/* Does the source guest still run?  (It must after a failure.) */
	struct hmig_guest_stats a, b;
	g->ops->stats(g, &a);
	sleep_s(0.2);
	g->ops->stats(g, &b);
	r->src_ops_after = b.ops - a.ops;

	char *text = NULL;
	size_t len = 0;
	FILE *m = open_memstream(&text, &len);
	dump(src, m, src_report);
	fclose(m);
	r->have_src = doc_parse(text, len, &r->src, err) == 0;
	free(text);
	hmig_source_free(src);
	g->ops->destroy(g);

	int st = 0;
	waitpid(pid, &st, 0);
	r->dst_status = WIFEXITED(st) ? WEXITSTATUS(st) : -WTERMSIG(st);
	r->have_dst = parse_file(json, &r->dst);
	unlink(json);
}

void mig_result_free(struct mig_result *r)
{
	json_decref(r->src);
	json_decref(r->dst);
	r->src = r->dst = NULL;
}

/* ---------------------------------------------- assertions on reports */

void need_uffd(void)
{
	struct uffd_probe p;
	int rc = uffd_probe(&p);

	if (rc)
		cr_skip_test("userfaultfd unavailable: %s", strerror(-rc));
	if (!(p.features & UFFD_FEATURE_WP_UNPOPULATED) && !(p.features & UFFD_FEATURE_WP_ASYNC))
		cr_log_info("no async write-protect: the sync dirty log runs");
}

uint64_t rep_u64(const json_t *r, const char *path)
{
	uint64_t v = 0;

	cr_assert_eq(doc_u64(r, path, &v), 0, "report has no %s", path);
	return v;
}

const char *rep_str(const json_t *r, const char *path)
{
	const char *s = doc_str(r, path);

	cr_assert_not_null(s, "report has no %s", path);
	return s;
}

/* Both sides say ok and the destination's oracle agrees. */
void assert_migrated(struct mig_result *r, const char *what)
{
	cr_assert_eq(r->src_rc, 0, "%s: source failed: %s", what, r->src_err);
	cr_assert_eq(r->dst_status, 0, "%s: destination exited %d", what, r->dst_status);
	cr_assert(r->have_src && r->have_dst, "%s: a report is missing", what);
	cr_assert_str_eq(rep_str(r->src, "result"), "ok");
	cr_assert_str_eq(rep_str(r->dst, "result"), "ok");
	cr_assert_str_eq(rep_str(r->dst, "integrity"), "ok", "%s", what);
}

double rep_num(const json_t *r, const char *path)
{
	double v = 0;

	cr_assert_eq(doc_double(r, path, &v), 0, "report has no %s", path);
	return v;
}
