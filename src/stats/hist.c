#include "stats/hist.h"

#include <math.h>
#include <string.h>

void stats_hist_init(struct stats_hist *h)
{
	memset(h, 0, sizeof(*h));
	h->min = UINT64_MAX;
}

void stats_hist_merge(struct stats_hist *dst, const struct stats_hist *src)
{
	unsigned i;

	for (i = 0; i < STATS_HIST_BUCKETS; i++)
		dst->buckets[i] += src->buckets[i];
	dst->count += src->count;
	dst->sum += src->sum;
	if (src->min < dst->min)
		dst->min = src->min;
	if (src->max > dst->max)
		dst->max = src->max;
}

void stats_hist_bucket_range(unsigned idx, uint64_t *lo, uint64_t *hi)
{
	unsigned shift;

	if (idx < 2 * STATS_HIST_SUB) {
		*lo = *hi = idx;
		return;
	}
	/* Inverse of stats_hist_index: idx = shift * SUB + top, top in
	 * [SUB, 2*SUB). */
	shift = idx / STATS_HIST_SUB - 1;
	*lo = (uint64_t)(idx - shift * STATS_HIST_SUB) << shift;
	*hi = *lo + ((uint64_t)1 << shift) - 1;
}

double stats_hist_quantile(const struct stats_hist *h, double q)
{
	uint64_t rank, seen = 0, lo, hi;
	unsigned i;
	double mid;

	if (h->count == 0 || isnan(q))
		return NAN;
	if (q <= 0)
		return (double)h->min;
	if (q >= 1)
		return (double)h->max;
	rank = (uint64_t)ceil(q * (double)h->count);
	if (rank < 1)
		rank = 1;
	if (rank > h->count)
		rank = h->count;
	for (i = 0; i < STATS_HIST_BUCKETS; i++) {
		seen += h->buckets[i];
		if (seen >= rank)
			break;
	}
	if (i == STATS_HIST_BUCKETS)	/* counts torn by a live writer */
		return (double)h->max;
	stats_hist_bucket_range(i, &lo, &hi);
	/* Midpoint halves the worst case against either edge; clamping to the
	 * exact extremes only moves it closer to the true sample. */
	mid = (double)lo + (double)(hi - lo) / 2.0;
	if (mid < (double)h->min)
		mid = (double)h->min;
	if (mid > (double)h->max)
		mid = (double)h->max;
	return mid;
}

uint64_t stats_hist_min(const struct stats_hist *h)
{
	return h->count ? h->min : 0;
}

double stats_hist_mean(const struct stats_hist *h)
{
	return h->count ? (double)h->sum / (double)h->count : NAN;
}
