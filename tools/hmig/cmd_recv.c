/* hmig recv: receive one migration, run the guest, check it with the oracle. */
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

/* The signal handler needs it. */
static struct hmig_dest *volatile receiving;

/* SIGINT / SIGTERM: cancel before this side said LOADED; after it the
 * source may have committed and the guest stays (one write(2)). */
static void on_stop(int sig)
{
	static const char late[] =
		"hmig: not cancelled: the source may have handed the guest over; it stays here\n";

	(void)sig;
	if (receiving && hmig_dest_cancel(receiving) == -EBUSY &&
	    write(STDERR_FILENO, late, sizeof(late) - 1) < 0)
		return;
}

struct dest_ctx {
	struct hmig_dest *d;
	struct hmig_guest *g;
};

static int library_report(void *ctx, FILE *f)
{
	return hmig_dest_report(ctx, f);
}

static int write_dest_report(void *ctx, FILE *f)
{
	struct dest_ctx *c = ctx;

	return report_with_guest(library_report, c->d, c->g, f);
}

/* Lets the migrated guest run, then pauses it and asks the oracle. */
static int run_and_verify(struct hmig_dest *d, struct hmig_guest *g, double seconds)
{
	struct hmig_guest_stats a, b;
	struct timespec w = { .tv_sec = (time_t)seconds,
			      .tv_nsec = (long)((seconds - (double)(time_t)seconds) * 1e9) };
	uint64_t t0 = mono_ns();

	g->ops->stats(g, &a);
	nanosleep(&w, NULL);
	g->ops->pause(g);
	g->ops->stats(g, &b);
	if (seconds > 0)
		hmig_dest_set_ops_after(d, (double)(b.ops - a.ops) /
					       ((double)(mono_ns() - t0) / 1e9));
	int rc = g->ops->verify(g);
	if (rc == -EOPNOTSUPP) {
		hmig_dest_set_integrity(d, "skipped", NULL);
		return 0;
	}
	hmig_dest_set_integrity(d, rc ? "mismatch" : "ok", rc ? hmig_guest_error(g) : NULL);
	if (rc)
		die_msg("%s", hmig_guest_error(g));
	return rc;
}

/* One line per connection turned away, at most RATE_BURST at once and then
 * one a second: a port scanner or a wrong source must not bury the
 * terminal.  Lines held back are counted into the next one printed. */
#define RATE_BURST 10.0

struct reject_printer {
	double tokens;
	uint64_t last_ns;
	unsigned held;
};

static void print_reject(void *data, const char *from, const char *why)
{
	struct reject_printer *rp = data;
	uint64_t now = mono_ns();

	rp->tokens += (double)(now - rp->last_ns) / 1e9;
	if (rp->tokens > RATE_BURST)
		rp->tokens = RATE_BURST;
	rp->last_ns = now;
	if (rp->tokens < 1) {
		rp->held++;
		return;
	}
	rp->tokens -= 1;
	/* `why` comes escaped from the library; the address is numeric. */
	if (rp->held)
		fprintf(stderr, "hmig recv: rejected a connection from %s: %s (and %u more not shown); still waiting for the source\n",
			from, why, rp->held);
	else
		fprintf(stderr, "hmig recv: rejected a connection from %s: %s; still waiting for the source\n",
			from, why);
	rp->held = 0;
}

void cmd_recv_usage(void)
{
	mig_usage(ROLE_RECV);
}

/* The destination's migration proper, once its control socket is open. */
static int receive(struct mig_opts *o, struct control *ctl)
{
	struct hmig_guest *g;
	struct hmig_dest *d;
	struct monitor mon;
	char err[256];
	int rc, status = 1;

	if ((rc = guest_open_dest(&o->guest, &g, err))) {
		die_msg("%s", err);
		outfile_drop(&o->json_out);
		return rc == -EINVAL || rc == -EOPNOTSUPP ? EXIT_USAGE : 1;
	}
	if ((rc = hmig_dest_new(&o->cfg, g, o->listen, &d, err))) {
		die_msg("%s", err);
		outfile_drop(&o->json_out);
		g->ops->destroy(g);
		return rc == -EINVAL ? EXIT_USAGE : 1;
	}
	struct reject_printer rp = { .tokens = RATE_BURST, .last_ns = mono_ns() };
	hmig_dest_set_reject_hook(d, print_reject, &rp);
	if (o->ready_fd >= 0) {
		dprintf(o->ready_fd, "%s\n", hmig_dest_address(d));
		close(o->ready_fd);
	} else if (!o->quiet) {
		printf("hmig recv: listening on %s\n", hmig_dest_address(d));
		fflush(stdout);
	}
	receiving = d;
	struct sigaction sa = { .sa_handler = on_stop };
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	monitor_start(&mon, &(struct control_target){ .dst = d, .guest = g }, ctl, "hmig recv",
		      !o->quiet && !o->no_progress);
	rc = hmig_dest_run(d);
	monitor_stop(&mon);
	if (rc)
		die_msg("%s", hmig_dest_error(d));
	else if (run_and_verify(d, g, o->run_after) == 0)
		status = 0;
	struct dest_ctx rctx = { d, g };
	if (summary_finish(write_dest_report, &rctx, o->quiet, &o->json_out))
		status = 1;
	receiving = NULL;
	hmig_dest_free(d);
	g->ops->destroy(g);
	return status;
}

int cmd_recv(int argc, char **argv)
{
	struct mig_opts o;
	struct control ctl;
	int status;

	if (mig_parse(argc, argv, ROLE_RECV, &o))
		return EXIT_USAGE;
	if (monitor_control_open(&ctl, o.control, o.quiet)) {
		outfile_drop(&o.json_out);
		return EXIT_USAGE;
	}
	status = receive(&o, &ctl);
	control_close(&ctl);
	return status;
}
