/* hmig send: migrate a running guest to 'hmig recv'. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cmd.h"
#include "migopts.h"
#include "monitor.h"
#include "summary.h"

/* The CLI may keep this one global: the signal handlers need it. */
static struct hmig_source *volatile running;

static void on_sigusr1(int sig)
{
	(void)sig;
	if (running)
		hmig_source_force_switch(running);
}

/* SIGINT / SIGTERM: cancel before the commit; after it, say why not (one
 * write(2): async-signal-safe). */
static void on_stop(int sig)
{
	static const char late[] =
		"hmig: not cancelled: the guest was handed over and runs on the destination\n";

	(void)sig;
	if (running && hmig_source_cancel(running) == -EBUSY &&
	    write(STDERR_FILENO, late, sizeof(late) - 1) < 0)
		return;
}

static void catch_signals(void)
{
	struct sigaction sa = { .sa_handler = on_stop };

	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sa.sa_handler = on_sigusr1;
	sigaction(SIGUSR1, &sa, NULL);
}

struct source_ctx {
	struct hmig_source *src;
	struct hmig_guest *g;
};

static int library_report(void *ctx, FILE *f)
{
	return hmig_source_report(ctx, f);
}

static int write_source_report(void *ctx, FILE *f)
{
	struct source_ctx *c = ctx;

	return report_with_guest(library_report, c->src, c->g, f);
}

/* The source's migration proper, once its control socket is open. */
static int migrate(struct mig_opts *o, const char *to, struct control *ctl)
{
	struct hmig_guest *g;
	struct hmig_source *src;
	struct monitor mon;
	char err[256];
	int rc, status = 1;

	rc = guest_open_source(&o->guest, &g, err);
	if (rc) {
		die_msg("%s", err);
		outfile_drop(&o->json_out);
		/* A bad parameter, or a guest this hmig or host cannot move. */
		return rc == -EINVAL || rc == -EOPNOTSUPP ? EXIT_USAGE : 1;
	}
	if ((rc = hmig_source_new(&o->cfg, g, &src, err))) {
		die_msg("%s", err);
		outfile_drop(&o->json_out);
		g->ops->destroy(g);
		return rc == -EINVAL ? EXIT_USAGE : 1;
	}
	/* Handlers before the guest runs: a Ctrl-C or SIGUSR1 during the
	 * warm-up is a cancel or a forced switch, never a dead guest. */
	running = src;
	catch_signals();
	monitor_start(&mon, &(struct control_target){ .src = src, .guest = g }, ctl, "hmig send",
		      !o->quiet && !o->no_progress);
	if ((rc = g->ops->run(g))) {
		monitor_stop(&mon);
		die_msg("%s", hmig_guest_error(g));
		goto out;
	}
	struct timespec w = { .tv_sec = (time_t)o->warmup,
			      .tv_nsec = (long)((o->warmup - (double)(time_t)o->warmup) * 1e9) };
	struct hmig_guest_stats a, b;
	int sa = g->ops->stats(g, &a);
	uint64_t t0 = mono_ns();
	while (nanosleep(&w, &w) && errno == EINTR)
		;
	/* The guest's own pace, for the report's guest_ops_per_s_before. */
	if (o->warmup > 0 && !sa && !g->ops->stats(g, &b) && mono_ns() > t0)
		hmig_source_set_ops_before(src, (double)(b.ops - a.ops) /
						   ((double)(mono_ns() - t0) / 1e9));
	rc = hmig_source_run(src, to);
	/* The migration is over: its last line says so when it ended, not
	 * after the destination's guest has run its --run-after. */
	monitor_stop(&mon);
	/* Exit 0 means the guest runs on the destination with every page and
	 * its oracle, if it has one, said ok: wait for that word. */
	if (!rc)
		rc = hmig_source_wait_verdict(src, o->cfg.io_timeout_ms);
	if (rc)
		die_msg("%s", hmig_source_error(src));
	else
		status = 0;
	struct source_ctx rctx = { src, g };
	if (summary_finish(write_source_report, &rctx, o->quiet || o->no_summary, &o->json_out))
		status = 1;
out:
	running = NULL;
	hmig_source_free(src);
	g->ops->destroy(g);
	return status;
}

int run_source(struct mig_opts *o, const char *to)
{
	struct control ctl;
	int status;

	/* Before the guest: a --control PATH in use is bad usage, found at
	 * once. */
	if (monitor_control_open(&ctl, o->control, o->quiet)) {
		outfile_drop(&o->json_out);
		return EXIT_USAGE;
	}
	status = migrate(o, to, &ctl);
	control_close(&ctl);
	return status;
}

void cmd_send_usage(void)
{
	mig_usage(ROLE_SEND);
}

int cmd_send(int argc, char **argv)
{
	struct mig_opts o;

	if (mig_parse(argc, argv, ROLE_SEND, &o))
		return EXIT_USAGE;
	return run_source(&o, o.to);
}
