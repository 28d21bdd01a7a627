/* Latency histogram: log-linear buckets, fixed size, O(1) record.
 *
 * Used for fault latencies (recorded in ns, reported in µs; from ~1 µs to
 * seconds) and key-value op latencies (ns).  The layout is HDR-style: values
 * below 64 each get their own bucket (exact); above that every power-of-two
 * range [2^k, 2^(k+1)) is split into 32 equal sub-buckets.  A bucket therefore
 * spans at most 1/32 of its lower bound, and a quantile reported as the
 * bucket's midpoint is within
 *
 *     STATS_HIST_REL_ERR = 1/64 (~1.6 %)
 *
 * of the true sample at that rank (relative to that sample).  Values below 64
 * are reported exactly, and min, max, count and sum are always exact.
 *
 * Why 32 sub-buckets: 16 would halve the size (7.5 KiB) at ~3 % error, 64
 * would give ~0.8 % at 30 KiB; a p99 that moves by 1.6 % between runs is below
 * the noise of any migration we measure, and 15 KiB per thread is nothing.
 *
 * Threading: a histogram has exactly one writer thread and no locks.  Give
 * every thread its own histogram and combine them with stats_hist_merge()
 * once the writers have stopped; reading one while its writer is still
 * running gives torn (but memory-safe) numbers.
 */
#ifndef HMIG_STATS_HIST_H
#define HMIG_STATS_HIST_H

#include <stdint.h>

#define STATS_HIST_SUB_BITS 5
#define STATS_HIST_SUB (1u << STATS_HIST_SUB_BITS)
/* Values < 2*SUB are exact; each of the remaining 64-SUB_BITS-1 octaves has
 * SUB buckets: 64 + 58 * 32 = 1920 buckets covering all of uint64_t. */
#define STATS_HIST_BUCKETS (STATS_HIST_SUB * (64 - STATS_HIST_SUB_BITS + 1))
#define STATS_HIST_REL_ERR (1.0 / (2.0 * STATS_HIST_SUB))

struct stats_hist {
	uint64_t count;
	uint64_t sum;	/* wraps after 2^64; 584 years of ns */
	uint64_t min;	/* UINT64_MAX while empty: use stats_hist_min() */
	uint64_t max;
	uint64_t buckets[STATS_HIST_BUCKETS];
};

/* Bucket of a value: the octave's shift times SUB, plus the top SUB_BITS+1
 * bits of the value.  For v < 64 the shift is 0 and the bucket is v itself,
 * so the small-value and log ranges need no separate branch at read time. */
static inline unsigned stats_hist_index(uint64_t v)
{
	unsigned shift;

	if (v < 2 * STATS_HIST_SUB)
		return (unsigned)v;
	/* msb - SUB_BITS, with msb = 63 - clz; v >= 64 so clz <= 57. */
	shift = (unsigned)(63 - STATS_HIST_SUB_BITS - __builtin_clzll(v));
	return shift * STATS_HIST_SUB + (unsigned)(v >> shift);
}

/* Records one value.  O(1), no allocation, no locks, single writer. */
static inline void stats_hist_add(struct stats_hist *h, uint64_t v)
{
	h->buckets[stats_hist_index(v)]++;
	h->count++;
	h->sum += v;
	if (v < h->min)
		h->min = v;
	if (v > h->max)
		h->max = v;
}

/* Empties h (count 0, min UINT64_MAX).  A zeroed struct is NOT a valid empty
 * histogram because of min; always init. */
void stats_hist_init(struct stats_hist *h);

/* Adds src's samples to dst, as if each had been recorded into dst. */
void stats_hist_merge(struct stats_hist *dst, const struct stats_hist *src);

/* Nearest-rank quantile, q in [0,1]: an estimate of the smallest sample s such
 * that at least ceil(q * count) samples are <= s, within STATS_HIST_REL_ERR of
 * it and always inside [min, max].  q = 0 gives min, q = 1 gives max exactly.
 * NaN when the histogram is empty or q is NaN. */
double stats_hist_quantile(const struct stats_hist *h, double q);

/* Exact; 0 when empty. */
uint64_t stats_hist_min(const struct stats_hist *h);
/* sum / count; NaN when empty. */
double stats_hist_mean(const struct stats_hist *h);

/* The inclusive range [*lo, *hi] of values that land in bucket idx
 * (idx < STATS_HIST_BUCKETS).  Exposed for tests and for printing. */
void stats_hist_bucket_range(unsigned idx, uint64_t *lo, uint64_t *hi);

#endif
