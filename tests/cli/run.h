/* Running the hmig binary from a test, as an operator would: its path comes
 * from the environment (HMIG, set by tests/cli/meson.build), the command line
 * goes through sh -c, and what it printed and how it exited come back. */
#ifndef HMIG_TESTS_RUN_H
#define HMIG_TESTS_RUN_H

#include <criterion/criterion.h>
#include <criterion/new/assert.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

struct run {
	int status;      /* the exit status; 128 + N when killed by signal N */
	char *out, *err; /* all it wrote to stdout and stderr */
};

static inline const char *run_hmig_path(void)
{
	const char *p = getenv("HMIG");

	cr_assert(p != NULL && *p, "HMIG is not set: run this test through meson test");
	return p;
}

static inline char *run_slurp(const char *path)
{
	FILE *f = fopen(path, "r");
	char *buf = NULL;
	size_t len = 0;
	FILE *m = open_memstream(&buf, &len);
	char chunk[4096];
	size_t n;

	cr_assert(m != NULL);
	while (f && (n = fread(chunk, 1, sizeof(chunk), f)) > 0)
		fwrite(chunk, 1, n, m);
	if (f)
		fclose(f);
	fclose(m);
	return buf;
}

/* Runs "hmig ARGS" (printf-style, words as sh splits them) in the current
 * directory, with stdin from /dev/null. */
static inline void run_hmig(struct run *r, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static inline void run_hmig(struct run *r, const char *fmt, ...)
{
	char args[2048], cmd[4096], outp[64], errp[64];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(args, sizeof(args), fmt, ap);
	va_end(ap);
	snprintf(outp, sizeof(outp), "run-%ld.out", (long)getpid());
	snprintf(errp, sizeof(errp), "run-%ld.err", (long)getpid());
	snprintf(cmd, sizeof(cmd), "'%s' %s </dev/null >%s 2>%s", run_hmig_path(), args, outp,
		 errp);
	int st = system(cmd);
	cr_assert(st != -1, "cannot run %s", cmd);
	r->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
	r->out = run_slurp(outp);
	r->err = run_slurp(errp);
	unlink(outp);
	unlink(errp);
}

/* Counts the lines of s. */
static inline int run_lines(const char *s)
{
	int n = 0;

	for (; *s; s++)
		n += *s == '\n';
	return n;
}

/* Runs "hmig ARGS" and checks its exit status, and, when err_has is not
 * NULL, that stderr is one line saying err_has.  Returns what it printed
 * on stdout (free it). */
static inline char *run_expect(int status, const char *err_has, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static inline char *run_expect(int status, const char *err_has, const char *fmt, ...)
{
	char args[2048];
	struct run r;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(args, sizeof(args), fmt, ap);
	va_end(ap);
	run_hmig(&r, "%s", args);
	cr_assert(r.status == status, "hmig %s: exit %d, not %d:\n%s", args, r.status, status,
		  r.err);
	if (err_has) {
		cr_assert(strstr(r.err, err_has) != NULL, "hmig %s: no '%s' in:\n%s", args, err_has,
			  r.err);
		cr_assert(run_lines(r.err) == 1, "hmig %s: more than one line:\n%s", args, r.err);
	}
	free(r.err);
	return r.out;
}

/* Starts "hmig ARGS" in the background: its output goes to NAME.out and
 * NAME.err, and its exit status to NAME.rc once it exits (run_wait). */
static inline void run_hmig_bg(const char *name, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static inline void run_hmig_bg(const char *name, const char *fmt, ...)
{
	char args[2048], cmd[4096];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(args, sizeof(args), fmt, ap);
	va_end(ap);
	snprintf(cmd, sizeof(cmd),
		 "sh -c \"'%s' %s </dev/null >%s.out 2>%s.err; echo \\$? >%s.rc.new && mv %s.rc.new %s.rc\" &",
		 run_hmig_path(), args, name, name, name, name, name);
	cr_assert(eq(int, system(cmd), 0), "cannot start %s", cmd);
}

/* Waits for the background run NAME to exit (the test's .timeout bounds
 * the wait) and reads what it printed. */
static inline void run_wait(const char *name, struct run *r)
{
	char path[256];
	FILE *f;

	snprintf(path, sizeof(path), "%s.rc", name);
	while (!(f = fopen(path, "r")))
		usleep(20000);
	cr_assert(eq(int, fscanf(f, "%d", &r->status), 1));
	fclose(f);
	snprintf(path, sizeof(path), "%s.out", name);
	r->out = run_slurp(path);
	snprintf(path, sizeof(path), "%s.err", name);
	r->err = run_slurp(path);
}

static inline void run_free(struct run *r)
{
	free(r->out);
	free(r->err);
}

/* A fresh scratch directory as the current one, for a test's files
 * (.init = run_in_scratch, .fini = run_scratch_done: each test is a process
 * of its own, so one static names it). */
static char run_scratch[32];

static inline void run_in_scratch(void)
{
	snprintf(run_scratch, sizeof(run_scratch), "/tmp/hmig-test-XXXXXX");
	cr_assert(mkdtemp(run_scratch) != NULL, "mkdtemp");
	cr_assert(chdir(run_scratch) == 0);
}

static inline void run_scratch_done(void)
{
	char cmd[64];

	if (!run_scratch[0] || chdir("/"))
		return;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", run_scratch);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", run_scratch);
}


#endif
