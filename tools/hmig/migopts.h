/* Options shared by 'send', 'recv' and 'demo', declared once; the synth
 * group of them also serves 'hmig guest'. */
#ifndef HMIG_TOOLS_MIGOPTS_H
#define HMIG_TOOLS_MIGOPTS_H

#include <stdbool.h>

#include <hmig/hmig.h>

#include "cmd.h"
#include "guestspec.h"

enum mig_role { ROLE_SEND = 1, ROLE_RECV = 2, ROLE_DEMO = 4 };

struct mig_opts {
	struct guest_spec guest;
	struct hmig_config cfg;
	double warmup;     /* seconds the source guest runs before the migration */
	double run_after;  /* seconds the destination guest runs before the oracle */
	const char *json;
	struct outfile json_out; /* json, opened by mig_parse */
	const char *to;
	const char *listen;
	int ready_fd;      /* recv: write the bound address here, then close it */
	const char *control; /* --control PATH; NULL: the default path */
	bool quiet;        /* errors only: no progress, no summary */
	bool no_progress;
	bool no_summary;   /* demo's source: it prints the merged one */
};

/* The synth option group (--mem, --vcpus, --workload, --fill, --seed),
 * shared with 'hmig guest': the defaults, and one option by its long name
 * (0, or print one line and -1). */
void synth_opts_default(struct hmig_synth_params *p);
int synth_opt_set(struct hmig_synth_params *p, const char *name, const char *arg);

/* Parses argv for `role` and opens the --json file (o->json_out: the caller
 * writes or drops it); prints one line and returns -1 on a bad option or a
 * path it cannot write. */
int mig_parse(int argc, char **argv, enum mig_role role, struct mig_opts *o);
void mig_usage(enum mig_role role);

#endif
