#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "cmd.h"
#include "control.h"
#include "guestspec.h"

#define ERR 256

static int fail(char *err, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int fail(char *err, int rc, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, ERR, fmt, ap);
	va_end(ap);
	return rc;
}

/* ---- where ---------------------------------------------------------------- */

int control_dir(char *dir, size_t len, bool make, char *err)
{
	const char *xdg = getenv("XDG_RUNTIME_DIR");
	struct stat st;

	if (xdg && xdg[0] == '/')
		snprintf(dir, len, "%s/hmig", xdg);
	else if (geteuid() == 0)
		snprintf(dir, len, "/run/hmig");
	else
		snprintf(dir, len, "/tmp/hmig-%lu", (unsigned long)geteuid());
	if (make && mkdir(dir, 0700) && errno != EEXIST)
		return fail(err, -errno, "cannot make the control directory %s: %s (give --control PATH)",
			    dir, strerror(errno));
	if (lstat(dir, &st))
		return fail(err, -errno, "no control directory %s: %s", dir, strerror(errno));
	/* Anyone who may write there may put a socket of theirs in our name. */
	if (!S_ISDIR(st.st_mode) || st.st_uid != geteuid() || (st.st_mode & 077))
		return fail(err, -EPERM,
			    "refusing the control directory %s: not a directory of yours closed to others (remove it, or give --control PATH)",
			    dir);
	return 0;
}

static int sun_of(struct sockaddr_un *sun, const char *path, char *err)
{
	memset(sun, 0, sizeof(*sun));
	sun->sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sun->sun_path))
		return fail(err, -ENAMETOOLONG, "control socket path %s is longer than %zu bytes (use a shorter one)",
			    path, sizeof(sun->sun_path) - 1);
	memcpy(sun->sun_path, path, strlen(path) + 1);
	return 0;
}

/* 0 when something listens at path, -ECONNREFUSED when nothing does (a
 * stale socket, or a file that is no socket), else -errno. */
static int probe(const char *path)
{
	struct sockaddr_un sun;
	char err[ERR];
	int fd, rc = 0;

	if (sun_of(&sun, path, err))
		return -ENAMETOOLONG;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)))
		rc = -errno;
	close(fd);
	return rc;
}

/* Removes the socket at path if nothing listens there; never a file that
 * is not a socket. */
static bool remove_stale(const char *path)
{
	struct stat st;

	return lstat(path, &st) == 0 && S_ISSOCK(st.st_mode) && probe(path) == -ECONNREFUSED &&
	       unlink(path) == 0;
}

/* The default directory's sockets are named PID.sock: those whose hmig is
 * gone go. */
static void sweep(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	char path[CONTROL_PATH + 256];

	while (d && (e = readdir(d))) {
		size_t n = strspn(e->d_name, "0123456789");

		if (!n || strcmp(e->d_name + n, ".sock"))
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		remove_stale(path);
	}
	if (d)
		closedir(d);
}

/* ---- listening -------------------------------------------------------------- */

static int bind_temp(const char *tmp, char *err)
{
	struct sockaddr_un sun;
	int fd, rc;

	if ((rc = sun_of(&sun, tmp, err)))
		return rc;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return fail(err, -errno, "cannot make a control socket: %s", strerror(errno));
	/* Owner-only from its first moment: umask for the bind, and chmod
	 * for a umask a filesystem ignores. */
	mode_t old = umask(0177);
	rc = bind(fd, (struct sockaddr *)&sun, sizeof(sun)) ? -errno : 0;
	umask(old);
	if (!rc && (chmod(tmp, 0600) || listen(fd, CONTROL_CLIENTS)))
		rc = -errno;
	if (rc) {
		close(fd);
		unlink(tmp);
		return fail(err, rc, "cannot listen at %s: %s (give another --control PATH)", tmp,
			    strerror(-rc));
	}
	return fd;
}

int control_open(struct control *c, const char *path, char *err)
{
	char dir[CONTROL_PATH], tmp[CONTROL_PATH + 32];
	struct stat st;
	int fd, rc;

	memset(c, 0, sizeof(*c));
	c->fd = -1;
	for (int i = 0; i < CONTROL_CLIENTS; i++)
		c->clients[i].fd = -1;
	if (!path) {
		if ((rc = control_dir(dir, sizeof(dir), true, err)))
			return rc;
		sweep(dir);
		if ((size_t)snprintf(c->path, sizeof(c->path), "%s/%ld.sock", dir, (long)getpid()) >=
		    sizeof(c->path))
			return fail(err, -ENAMETOOLONG, "control directory %s: path too long (give --control PATH)",
				    dir);
	} else if ((size_t)snprintf(c->path, sizeof(c->path), "%s", path) >= sizeof(c->path)) {
		return fail(err, -ENAMETOOLONG, "control socket path %s is longer than %zu bytes (use a shorter one)",
			    path, sizeof(c->path) - 1);
	}
	snprintf(tmp, sizeof(tmp), "%s.%ld~", c->path, (long)getpid());
	unlink(tmp); /* ours from an earlier life of this pid, if anything */
	if ((fd = bind_temp(tmp, err)) < 0)
		return fd;
	/* link() puts the listening socket at its path only if the path is
	 * free: a live socket there is never replaced, a stale one is
	 * removed and the link tried once more. */
	rc = link(tmp, c->path) ? -errno : 0;
	if (rc == -EEXIST && remove_stale(c->path))
		rc = link(tmp, c->path) ? -errno : 0;
	unlink(tmp);
	if (rc == -EEXIST && lstat(c->path, &st) == 0 && !S_ISSOCK(st.st_mode))
		rc = fail(err, rc, "%s exists and is not a socket: remove it or give another --control PATH",
			  c->path);
	else if (rc == -EEXIST)
		rc = fail(err, rc, "another hmig answers at %s: give another --control PATH", c->path);
	else if (rc)
		rc = fail(err, rc, "cannot make the control socket %s: %s (give another --control PATH)",
			  c->path, strerror(-rc));
	if (!rc && lstat(c->path, &st))
		rc = fail(err, -errno, "control socket %s vanished: %s", c->path, strerror(errno));
	if (rc) {
		close(fd);
		return rc;
	}
	c->dev = st.st_dev;
	c->ino = st.st_ino;
	c->fd = fd;
	return 0;
}

static void drop_client(struct control *c, int i)
{
	close(c->clients[i].fd);
	c->clients[i].fd = -1;
	c->clients[i].len = 0;
}

void control_close(struct control *c)
{
	struct stat st;

	if (c->fd < 0)
		return;
	for (int i = 0; i < CONTROL_CLIENTS; i++)
		if (c->clients[i].fd >= 0)
			drop_client(c, i);
	close(c->fd);
	c->fd = -1;
	/* Only the socket this run made: another may have taken the path. */
	if (lstat(c->path, &st) == 0 && st.st_dev == c->dev && st.st_ino == c->ino)
		unlink(c->path);
}

/* ---- answering ----------------------------------------------------------- */

static json_t *real_or_null(double v)
{
	return isfinite(v) ? json_real(v) : json_null();
}

static json_t *count_or_null(uint64_t v)
{
	return v == HMIG_UNKNOWN ? json_null() : json_integer((json_int_t)v);
}

json_t *control_status_json(const struct hmig_status *st, bool source)
{
	/* The names are the report's timeline columns where they are the same
	 * figure (docs/report.md). */
	return json_pack("{s:s,s:i,s:s,s:b,s:o,s:o,s:I,s:I,s:o,s:o,s:o,s:o,s:I,s:I,s:o,s:o,s:o,"
			 "s:I,s:o,s:o,s:o,s:o,s:o,s:o}",
			 "side", source ? "source" : "destination", "pid", (int)getpid(),
			 "phase", st->phase, "finished", st->finished,
			 "pass", source ? json_integer((json_int_t)st->pass) : json_null(),
			 "elapsed_ms", real_or_null(st->elapsed_ms),
			 "guest_pages", (json_int_t)st->guest_pages,
			 "page_size", (json_int_t)st->page_size,
			 "pass_pages", source ? count_or_null(st->pass_pages) : json_null(),
			 "pass_sent", source ? count_or_null(st->pass_sent) : json_null(),
			 "pages_present", count_or_null(st->pages_present),
			 "pages_left", count_or_null(st->pages_left),
			 "bytes_bulk", (json_int_t)st->bytes_bulk,
			 "bytes_urgent", (json_int_t)st->bytes_urgent,
			 "bulk_bps", real_or_null(st->bulk_bps),
			 "urgent_bps", real_or_null(st->urgent_bps),
			 "dirty_rate_pps", real_or_null(st->dirty_rate_pps),
			 "pages_pulled", (json_int_t)st->pages_pulled,
			 "pulls_per_s", real_or_null(st->pulls_per_s),
			 "pull_latency_us", real_or_null(st->pull_latency_us),
			 "guest_ops_per_s", real_or_null(st->guest_ops_per_s),
			 "downtime_ms", real_or_null(st->downtime_ms),
			 "rate_limit_bps", source ? json_integer((json_int_t)st->rate_limit_bps)
						  : json_null(),
			 "eta_ms", real_or_null(st->eta_ms));
}

static json_t *error_reply(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static json_t *error_reply(const char *fmt, ...)
{
	char text[ERR];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	return json_pack("{s:s}", "error", text);
}

static void status_of(const struct control_target *t, struct hmig_status *st)
{
	if (t->src)
		hmig_source_status(t->src, st, sizeof(*st));
	else
		hmig_dest_status(t->dst, st, sizeof(*st));
}

/* The bulk cap caps at 1e15 bytes/s, as the rate_limit_bps knob does. */
#define RATE_MAX 1e15

static json_t *set_rate(const struct control_target *t, const json_t *args)
{
	json_t *v = json_object_get(args, "bytes_per_s");

	if (!t->src)
		return error_reply("set-rate: the destination has no rate to set; ask the source ('hmig set-rate' with its pid)");
	if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > RATE_MAX)
		return error_reply("set-rate needs \"arguments\": {\"bytes_per_s\": N}, N from 0 (no cap) to %g",
				   RATE_MAX);
	hmig_source_set_rate(t->src, (uint64_t)json_integer_value(v));
	return json_pack("{s:{s:I}}", "return", "rate_limit_bps", json_integer_value(v));
}

static json_t *force_switch(const struct control_target *t)
{
	struct hmig_status st;

	if (!t->src)
		return error_reply("switch: the source decides the switch; ask the source ('hmig switch' with its pid)");
	status_of(t, &st);
	if (st.finished || (strcmp(st.phase, "setup") && strcmp(st.phase, "precopy")))
		return error_reply("switch: too late, the migration is in %s (the switch comes after pre-copy)",
				   st.phase);
	hmig_source_force_switch(t->src);
	return json_pack("{s:{}}", "return");
}

static json_t *cancel(const struct control_target *t)
{
	struct hmig_status st;

	status_of(t, &st);
	if (st.finished)
		return error_reply("cancel: nothing to cancel, the migration is over (%s)", st.phase);
	if (t->src && hmig_source_cancel(t->src) == -EBUSY)
		return error_reply("not cancelled: the guest was handed over and runs on the destination");
	if (t->dst && hmig_dest_cancel(t->dst) == -EBUSY)
		return error_reply("not cancelled: the source may have handed the guest over; it stays here");
	return json_pack("{s:{}}", "return");
}

json_t *control_answer(const char *line, size_t len, const struct control_target *t)
{
	json_error_t e;
	json_t *req = json_loadb(line, len, 0, &e), *reply;
	const char *cmd = json_string_value(json_object_get(req, "execute"));

	if (!req)
		return error_reply("bad request: %s at column %d; send one JSON object a line, e.g. {\"execute\": \"status\"}",
				   e.text, e.column);
	if (!cmd) {
		reply = error_reply("bad request: no \"execute\" string; e.g. {\"execute\": \"status\"}");
	} else if (!strcmp(cmd, "status")) {
		struct hmig_status st;

		status_of(t, &st);
		json_t *o = control_status_json(&st, t->src != NULL);
		/* A Xen guest's figures as the report has them (`xen`): its
		 * paging requests' longest wait, a stuck one growing. */
		if (o && t->guest)
			guest_report_extras(t->guest, o);
		reply = json_pack("{s:o}", "return", o);
	} else if (!strcmp(cmd, "set-rate")) {
		reply = set_rate(t, json_object_get(req, "arguments"));
	} else if (!strcmp(cmd, "switch")) {
		reply = force_switch(t);
	} else if (!strcmp(cmd, "cancel")) {
		reply = cancel(t);
	} else {
		reply = error_reply("unknown command '%.64s': use status, set-rate, switch or cancel",
				    cmd);
	}
	json_decref(req);
	return reply;
}

/* ---- serving ----------------------------------------------------------------- */

int control_pollfds(struct control *c, struct pollfd *pfd)
{
	int n = 0;

	if (c->fd < 0)
		return 0;
	pfd[n++] = (struct pollfd){ .fd = c->fd, .events = POLLIN };
	for (int i = 0; i < CONTROL_CLIENTS; i++)
		if (c->clients[i].fd >= 0)
			pfd[n++] = (struct pollfd){ .fd = c->clients[i].fd, .events = POLLIN };
	return n;
}

/* Writes the reply and a newline; a client that does not read it within
 * the socket buffer is dropped rather than waited for. */
static bool send_reply(int fd, json_t *reply)
{
	char *text = reply ? json_dumps(reply, JSON_COMPACT) : NULL;
	bool ok = false;

	json_decref(reply);
	if (text) {
		size_t n = strlen(text);

		text[n] = '\n'; /* json_dumps's NUL becomes the line's end */
		ok = send(fd, text, n + 1, MSG_NOSIGNAL | MSG_DONTWAIT) == (ssize_t)(n + 1);
		free(text);
	}
	return ok;
}

static void accept_one(struct control *c)
{
	int fd = accept4(c->fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);

	if (fd < 0)
		return;
	for (int i = 0; i < CONTROL_CLIENTS; i++) {
		if (c->clients[i].fd < 0) {
			c->clients[i].fd = fd;
			c->clients[i].len = 0;
			return;
		}
	}
	send_reply(fd, error_reply("busy: %d connections already; try again", CONTROL_CLIENTS));
	close(fd);
}

/* Reads what client i sent and answers each whole line. */
static void read_client(struct control *c, int i, const struct control_target *t)
{
	struct control_client *cl = &c->clients[i];
	ssize_t got = recv(cl->fd, cl->buf + cl->len, sizeof(cl->buf) - cl->len, 0);
	char *nl;

	if (got <= 0) {
		if (got == 0 || (errno != EAGAIN && errno != EINTR))
			drop_client(c, i);
		return;
	}
	cl->len += (size_t)got;
	while ((nl = memchr(cl->buf, '\n', cl->len))) {
		size_t n = (size_t)(nl - cl->buf);

		if (!send_reply(cl->fd, control_answer(cl->buf, n, t))) {
			drop_client(c, i);
			return;
		}
		memmove(cl->buf, nl + 1, cl->len - n - 1);
		cl->len -= n + 1;
	}
	if (cl->len == sizeof(cl->buf)) {
		send_reply(cl->fd, error_reply("request longer than %d bytes: send one short JSON object a line",
					       CONTROL_LINE));
		drop_client(c, i);
	}
}

void control_serve(struct control *c, const struct pollfd *pfd, int n,
		   const struct control_target *t)
{
	for (int k = 1; k < n; k++) {
		if (!pfd[k].revents)
			continue;
		for (int i = 0; i < CONTROL_CLIENTS; i++)
			if (c->clients[i].fd == pfd[k].fd)
				read_client(c, i, t);
	}
	if (n > 0 && (pfd[0].revents & POLLIN))
		accept_one(c);
}

/* ---- calling ------------------------------------------------------------------ */

/* The socket `who` names: a pid's default path, or a path. */
static int resolve(const char *who, char *path, size_t len, char *err)
{
	char dir[CONTROL_PATH];
	int rc;

	if (!who[0] || who[strspn(who, "0123456789")]) {
		snprintf(path, len, "%s", who);
		return 0;
	}
	if ((rc = control_dir(dir, sizeof(dir), false, err)))
		return rc;
	snprintf(path, len, "%s/%s.sock", dir, who);
	return 0;
}

/* How long a client waits for its answer: an answer takes microseconds;
 * 5 s is a process that is stopped or stuck. */
#define CALL_TIMEOUT_MS 5000

int control_call(const char *who, const json_t *request, json_t **reply, char *err)
{
	char path[CONTROL_PATH + 64], buf[CONTROL_LINE * 4];
	struct sockaddr_un sun;
	size_t got = 0;
	char *text, *nl = NULL;
	json_error_t e;
	int fd, rc;

	*reply = NULL;
	if ((rc = resolve(who, path, sizeof(path), err)) || (rc = sun_of(&sun, path, err)))
		return rc;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return fail(err, -errno, "cannot make a socket: %s", strerror(errno));
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun))) {
		rc = -errno;
		close(fd);
		if (rc == -ENOENT)
			return fail(err, rc, "no control socket at %s: is that hmig send/recv running, as this user? (or give its --control PATH)",
				    path);
		if (rc == -ECONNREFUSED)
			return fail(err, rc, "nothing answers at %s: the hmig that made it is gone", path);
		return fail(err, rc, "cannot connect to %s: %s", path, strerror(-rc));
	}
	text = json_dumps(request, JSON_COMPACT);
	if (!text || send(fd, text, strlen(text), MSG_NOSIGNAL) < 0 ||
	    send(fd, "\n", 1, MSG_NOSIGNAL) < 0) {
		rc = fail(err, -EIO, "cannot send to %s: %s", path, strerror(errno));
		goto out;
	}
	while (!nl && got < sizeof(buf)) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		ssize_t n;

		if (poll(&p, 1, CALL_TIMEOUT_MS) != 1) {
			rc = fail(err, -ETIMEDOUT, "no answer from %s within %d s (is the process stopped?)",
				  path, CALL_TIMEOUT_MS / 1000);
			goto out;
		}
		n = recv(fd, buf + got, sizeof(buf) - got, 0);
		if (n <= 0) {
			rc = fail(err, -EIO, "%s hung up without an answer", path);
			goto out;
		}
		got += (size_t)n;
		nl = memchr(buf, '\n', got);
	}
	if (!nl || !(*reply = json_loadb(buf, (size_t)(nl - buf), 0, &e)))
		rc = fail(err, -EPROTO, "%s answered something that is not one JSON line", path);
out:
	free(text);
	close(fd);
	return rc;
}

const json_t *control_cmd(const char *who, json_t *request, json_t **reply)
{
	char err[256];
	const char *e;

	if (!request || control_call(who, request, reply, err)) {
		json_decref(request);
		die_msg("%s", request ? err : "out of memory");
		return NULL;
	}
	json_decref(request);
	if ((e = json_string_value(json_object_get(*reply, "error")))) {
		die_msg("%s", e);
		return NULL;
	}
	return json_object_get(*reply, "return");
}
