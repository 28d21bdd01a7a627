/* Running the synth guest under dirty logging and measuring it: shared by
 * 'hmig guest' (prints every interval) and 'hmig bench guest' (tables). */
#ifndef HMIG_TOOLS_PROFILE_H
#define HMIG_TOOLS_PROFILE_H

#include <stdbool.h>
#include <stdio.h>

#include <hmig/synth.h>

struct profile_opts {
	struct hmig_synth_params p;
	double seconds;
	uint64_t interval_ms;
	enum hmig_dirty_mode dirty;
	bool baseline;   /* also run without logging for as long */
	FILE *rows_out;  /* print each interval here, or NULL */
};

struct profile_row {
	double t_ms, collect_ms, ops_per_s;
	uint64_t dirtied;
};

struct profile {
	struct hmig_guest_geometry geo;
	double fill_ms;
	const char *mode;           /* dirty logging in use */
	struct profile_row *rows;
	size_t nrows;
	double collect_mean_ms, collect_max_ms;
	double dirty_rate_pps;      /* mean over the intervals */
	double ops_logged, ops_unlogged; /* guest ops/s; unlogged 0 if not run */
	double writes_logged;       /* guest page writes/s under logging */
	struct hmig_guest_stats final;
	struct hmig_synth_stats synth_final; /* the oracle's counters, kv latency */
	const char *integrity;      /* "ok", "mismatch", "skipped" */
	double verify_ms;
	char err[256];
};

/* Runs it.  0 (integrity may still be "mismatch"), or -errno with pr->err. */
int profile_run(const struct profile_opts *o, struct profile *pr);
void profile_free(struct profile *pr);

#endif
