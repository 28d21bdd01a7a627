/* Baselines measured in the same run as a benchmark, so figures are ratios
 * on this machine, today, rather than numbers from elsewhere. */
#ifndef HMIG_TOOLS_BASELINE_H
#define HMIG_TOOLS_BASELINE_H

#include <stdint.h>

struct baseline_tcp {
	double reused_mbs; /* MB/s received into one reused 1 MiB buffer */
	double fresh_mbs;  /* MB/s received into fresh memory (pays page allocation,
			    * as a destination installing new pages does) */
};

/* Touches and frees `bytes` of memory.  The machines this runs on back a
 * VM's memory lazily: the first touch of memory the VM never used costs
 * ~3 us a page (10x a warm one), and freed memory drifts back to the host.
 * Without this, whichever process allocates first pays it: benchmarks warm
 * up first so their ratios compare like with like. */
void baseline_warm_memory(uint64_t bytes);

/* Blasts `bytes` over loopback TCP to a forked receiver, twice. */
int baseline_tcp_blast(uint64_t bytes, struct baseline_tcp *out);

#endif
