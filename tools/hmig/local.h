/* A migration between two local processes (demo, bench). */
#ifndef HMIG_TOOLS_LOCAL_H
#define HMIG_TOOLS_LOCAL_H

#include <stddef.h>

#include "migopts.h"

struct local_run {
	char *src_json, *dst_json; /* the two reports, NULL when a side wrote none */
	size_t src_len, dst_len;
};

/* Runs it; the destination's knobs of o->cfg go to the destination too.
 * Returns the exit status (0 when both sides succeeded and the oracle said
 * ok). */
int local_migrate(const struct mig_opts *o, struct local_run *lr);
void local_run_free(struct local_run *lr);

#endif
