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

/* Milliseconds to fault in `bytes` of fresh 4 KiB pages in one thread
 * (MADV_POPULATE_WRITE), as a destination's first touch of guest memory
 * costs; -1 when it cannot map them.  The memory is freed again. */
double baseline_touch(uint64_t bytes);

/* MemAvailable from /proc/meminfo, in bytes; 0 when it cannot be read. */
uint64_t baseline_mem_available(void);

/* Blasts `bytes` over loopback TCP to a forked receiver, twice. */
int baseline_tcp_blast(uint64_t bytes, struct baseline_tcp *out);

/* Latency of what one pull costs at least, in ns (p50 and p99 over many):
 * a 24-byte request answered by a 4 KiB reply over loopback TCP, and one
 * UFFDIO_COPY of a page into fresh registered memory. */
struct baseline_pull {
	double rtt_p50_ns, rtt_p99_ns;
	double copy_p50_ns, copy_p99_ns;
};

int baseline_pull(struct baseline_pull *out);

#endif
