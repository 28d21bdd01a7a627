/* hmig send: migrate a running guest to 'hmig recv'. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cmd.h"
#include "migopts.h"
#include "summary.h"

/* The CLI may keep this one global: the signal handler needs it. */
static struct hmig_source *volatile forcing;

static void on_sigusr1(int sig)
{
	(void)sig;
	if (forcing)
		hmig_source_force_switch(forcing);
}

static int write_source_report(void *ctx, FILE *f)
{
	return hmig_source_report(ctx, f);
}

int write_text_file(const char *path, const char *text, size_t len)
{
	FILE *f = fopen(path, "w");

	if (!f || fwrite(text, 1, len, f) != len || fclose(f)) {
		die_msg("cannot write %s: %s", path, strerror(errno));
		if (f)
			fclose(f);
		return -1;
	}
	return 0;
}

int run_source(const struct mig_opts *o, const char *to)
{
	struct hmig_guest *g;
	struct hmig_source *src;
	char err[256];
	int rc, status = 1;

	rc = guest_open_source(&o->guest, &g, err);
	if (rc) {
		die_msg("%s", err);
		return rc == -EINVAL ? EXIT_USAGE : 1;
	}
	if ((rc = g->ops->run(g))) {
		die_msg("%s", hmig_guest_error(g));
		goto out_guest;
	}
	struct timespec w = { .tv_sec = (time_t)o->warmup,
			      .tv_nsec = (long)((o->warmup - (double)(time_t)o->warmup) * 1e9) };
	nanosleep(&w, NULL);
	if ((rc = hmig_source_new(&o->cfg, g, &src, err))) {
		die_msg("%s", err);
		goto out_guest;
	}
	forcing = src;
	signal(SIGUSR1, on_sigusr1);
	rc = hmig_source_run(src, to);
	forcing = NULL;
	if (rc)
		die_msg("%s", hmig_source_error(src));
	else
		status = 0;
	if (summary_finish(write_source_report, src, o->quiet, o->json))
		status = 1;
	hmig_source_free(src);
out_guest:
	g->ops->destroy(g);
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
