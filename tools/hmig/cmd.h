/* The hmig command table: one file per subcommand (cmd_<name>.c). */
#ifndef HMIG_TOOLS_CMD_H
#define HMIG_TOOLS_CMD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct cmd {
	const char *name;
	const char *summary;
	int (*run)(int argc, char **argv); /* returns the process exit status */
	void (*usage)(void);
};

int cmd_guest(int argc, char **argv);
void cmd_guest_usage(void);
int cmd_demo(int argc, char **argv);
void cmd_demo_usage(void);
int cmd_bench(int argc, char **argv);
int cmd_send(int argc, char **argv);
void cmd_send_usage(void);
int cmd_recv(int argc, char **argv);
void cmd_recv_usage(void);
int cmd_report(int argc, char **argv);
int cmd_keygen(int argc, char **argv);
void cmd_keygen_usage(void);
void cmd_report_usage(void);
int cmd_status(int argc, char **argv);
void cmd_status_usage(void);
int cmd_set_rate(int argc, char **argv);
void cmd_set_rate_usage(void);
int cmd_switch(int argc, char **argv);
void cmd_switch_usage(void);
int cmd_cancel(int argc, char **argv);
void cmd_cancel_usage(void);

struct mig_opts;
/* Runs the source side of a migration to `to` (cmd_send.c); exit status. */
int run_source(struct mig_opts *o, const char *to);
/* A file the command writes at its end (--json), opened at its start: a
 * path that cannot be written is bad usage found before a migration, not
 * after it. */
struct outfile {
	const char *path; /* NULL: none asked for */
	int fd;
	bool created;     /* this run made the file */
};

/* Opens path for writing without truncating it (NULL: nothing to do).  0,
 * or prints one line naming the path and why, and returns -1. */
int outfile_open(struct outfile *f, const char *path);
/* Replaces the file's content with text and closes it.  0, or prints why
 * not and returns -1.  Nothing to do when no path was asked for. */
int outfile_write(struct outfile *f, const char *text, size_t len);
/* Closes it unwritten, removing it if this run made it. */
void outfile_drop(struct outfile *f);
void cmd_bench_usage(void);
void cmd_demo_usage(void);

/* Exit statuses: 0 ok, 1 the operation failed, 2 bad usage or bad value. */
#define EXIT_USAGE 2

/* Monotonic time in ns, and a span of it in ms: the CLI's own timing. */
uint64_t mono_ns(void);
static inline double ms_of_ns(uint64_t ns)
{
	return (double)ns / 1e6;
}

/* Prints "hmig: <msg>" on one line to stderr. */
void die_msg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Value parsers: 0 on success, or print one line naming the option and the
 * bad value and return -1. */
int opt_size(const char *opt, const char *s, uint64_t *out);   /* 4096, 64K, 1G */
int opt_u64(const char *opt, const char *s, uint64_t min, uint64_t max, uint64_t *out);
int opt_double(const char *opt, const char *s, double min, double max, double *out);

#endif
