/* synth, hmig's built-in guest: its parameters and its openers.
 *
 * A real running guest inside the calling process: an anonymous mapping for
 * memory and one thread per vCPU running a workload against it, with an
 * oracle that replays the workload and checks every byte after a migration
 * (docs/architecture.md, "The synth guest").  Once opened, a synth guest is
 * driven through the neutral ops table of <hmig/guest.h> like any other.
 *
 * Errors: each function returns 0 or -errno with one line naming the problem
 * and its remedy in errbuf (256 bytes); an opener that fails sets *out to
 * NULL.
 */
#ifndef HMIG_SYNTH_H
#define HMIG_SYNTH_H

#include <stdint.h>

#include <hmig/guest.h>

#ifdef __cplusplus
extern "C" {
#endif

/* What a synth source guest is made of. */
struct hmig_synth_params {
	uint64_t mem_bytes;   /* rounded down to pages; at least 64 KiB per vCPU */
	uint32_t vcpus;       /* 1 .. 64 */
	const char *workload; /* "name[:key=value,...]" (docs/architecture.md);
			       * NULL or "" means "idle" */
	uint64_t seed;        /* 0 picks a fixed default */
	double fill;          /* fraction of pages written before the workload, 0..1 */
	uint64_t ops_limit;   /* each vCPU idles after this many ops; 0 = no limit
			       * (for reproducible tests; not carried by migration) */
};

/* Creates a source guest: memory mapped and filled (fill), vCPUs ready but
 * not running: ops->run starts them, as hmig_source_new requires.  -EINVAL
 * names a bad parameter (vCPUs, memory, fill, workload). */
int hmig_synth_open(const struct hmig_synth_params *params, struct hmig_guest **out,
		    char *errbuf);

/* Creates an empty destination guest for hmig_dest_new: the source's HELLO
 * gives it its geometry (ops->dest_prepare) and its vCPU state the workload,
 * seed and fill, so it takes no parameters. */
int hmig_synth_open_dest(struct hmig_guest **out, char *errbuf);

/* The synth guest's own figures, beside the neutral hmig_guest_stats:
 * its oracle's, and the kv workload's request latency.  Monotonic since the
 * guest started running on this host; exact once it is paused. */
struct hmig_synth_stats {
	uint64_t violations;    /* reads that found a wrong or stale stamp */
	uint64_t first_bad_pfn; /* pfn of the first violation, when violations > 0 */
	uint64_t lat_count;     /* kv requests timed; 0 for other workloads */
	double lat_p50_ns, lat_p99_ns, lat_max_ns; /* their latency, when lat_count > 0 */
};

/* Copies them into *st: 0, or -EINVAL for a guest of another backend (its
 * error line says so).  Any time, any thread. */
int hmig_synth_stats(struct hmig_guest *g, struct hmig_synth_stats *st);

/* Checks what hmig_synth_open checks of its parameters (vCPUs, memory,
 * fill, workload) without creating a guest: 0, or -EINVAL naming the bad
 * parameter and the remedy. */
int hmig_synth_params_check(const struct hmig_synth_params *params, char *errbuf);

/* Checks a workload spec without creating a guest: 0, or -EINVAL naming the
 * bad part. */
int hmig_synth_workload_check(const char *spec, char *errbuf);

#ifdef __cplusplus
}
#endif

#endif
