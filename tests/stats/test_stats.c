/* Tests for src/stats: the histogram and the report, read back with the
 * CLI's reader (tools/hmig/doc.c).  The merge of two reports is the CLI's
 * (tests/cli). */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>
#include <criterion/parameterized.h>

#include <errno.h>
#include <locale.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "stats/hist.h"
#include "stats/report.h"

#include "doc_check.h"

/* ---- helpers ------------------------------------------------------------ */

/* xorshift64*: deterministic, so a failure reproduces. */
static uint64_t rng_next(uint64_t *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 0x2545f4914f6cdd1dull;
}

static double rng_unit(uint64_t *s)
{
	return (double)(rng_next(s) >> 11) / 9007199254740992.0;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* The report as JSON text, written through a memstream (malloc'd). */
static char *capture_report(const struct stats_report *r)
{
	char *buf = NULL;
	size_t n = 0;
	FILE *f = open_memstream(&buf, &n);
	int rc;

	cr_assert(not(eq(ptr, f, NULL)));
	rc = stats_report_write_json(r, f);
	cr_assert(eq(int, rc, 0));
	fclose(f);
	return buf;
}

/* The report written and parsed back; *text keeps the text when asked for. */
static json_t *report_json(const struct stats_report *r, char **text)
{
	char *t = capture_report(r);
	json_t *v = doc_check_parse(t);

	if (text)
		*text = t;
	else
		free(t);
	return v;
}

#define path_u64 doc_check_u64
#define path_dbl doc_check_dbl
#define expect_str doc_check_str

/* ---- histogram ---------------------------------------------------------- */

Test(hist, buckets_cover_every_value_within_bound)
{
	uint64_t seed = 1, lo, hi, v;
	unsigned i, idx, prev = 0;

	for (v = 0; v < 5000; v++) {
		idx = stats_hist_index(v);
		cr_assert(ge(u32, idx, prev), "index not monotonic at %lu", v);
		prev = idx;
	}
	cr_assert(eq(u32, stats_hist_index(UINT64_MAX), STATS_HIST_BUCKETS - 1));
	for (i = 0; i < 200000; i++) {
		v = rng_next(&seed) >> (rng_next(&seed) % 64);
		idx = stats_hist_index(v);
		cr_assert(lt(u32, idx, STATS_HIST_BUCKETS));
		stats_hist_bucket_range(idx, &lo, &hi);
		cr_assert(le(u64, lo, v));
		cr_assert(ge(u64, hi, v));
		if (lo < 2 * STATS_HIST_SUB)
			cr_assert(eq(u64, lo, hi), "small values must be exact");
		else
			cr_assert(le(dbl, (double)(hi - lo + 1) / (double)lo,
				     1.0 / STATS_HIST_SUB));
	}
	/* Buckets tile the range with no gap or overlap. */
	for (i = 1; i < STATS_HIST_BUCKETS; i++) {
		uint64_t plo, phi;

		stats_hist_bucket_range(i - 1, &plo, &phi);
		stats_hist_bucket_range(i, &lo, &hi);
		cr_assert(eq(u64, lo, phi + 1), "gap before bucket %u", i);
	}
	cr_assert(eq(u64, hi, UINT64_MAX));
}

enum dist { DIST_LOGUNIFORM, DIST_UNIFORM, DIST_SMALL, DIST_BIMODAL };

static uint64_t draw(enum dist d, uint64_t *s)
{
	switch (d) {
	case DIST_LOGUNIFORM:	/* 1 us .. 10 s in ns: fault latencies */
		return (uint64_t)exp(log(1e3) + rng_unit(s) * (log(1e10) - log(1e3)));
	case DIST_UNIFORM:
		return 1 + rng_next(s) % 1000000000ull;
	case DIST_SMALL:
		return rng_next(s) % 200;
	case DIST_BIMODAL:	/* fast local hits and slow remote fetches */
		return rng_unit(s) < 0.9 ? 100 + rng_next(s) % 50 :
					   50000 + rng_next(s) % 5000000;
	}
	return 0;
}

struct hist_case {
	enum dist dist;
	size_t n;
};

ParameterizedTestParameters(hist, quantiles_match_sorted_reference)
{
	static struct hist_case cases[] = {
		{ DIST_LOGUNIFORM, 100000 }, { DIST_UNIFORM, 100000 },
		{ DIST_SMALL, 5000 }, { DIST_BIMODAL, 50000 },
		{ DIST_LOGUNIFORM, 7 }, { DIST_UNIFORM, 1 },
	};

	return cr_make_param_array(struct hist_case, cases,
				   sizeof(cases) / sizeof(cases[0]));
}

ParameterizedTest(struct hist_case *c, hist, quantiles_match_sorted_reference)
{
	static const double qs[] = { 0, 0.01, 0.1, 0.25, 0.5, 0.9, 0.99, 0.999, 1 };
	struct stats_hist *h = malloc(sizeof(*h));
	uint64_t *ref = malloc(c->n * sizeof(*ref));
	uint64_t seed = 42 + c->dist, sum = 0;
	size_t i;

	stats_hist_init(h);
	for (i = 0; i < c->n; i++) {
		ref[i] = draw(c->dist, &seed);
		sum += ref[i];
		stats_hist_add(h, ref[i]);
	}
	qsort(ref, c->n, sizeof(*ref), cmp_u64);
	cr_assert(eq(u64, h->count, c->n));
	cr_assert(eq(u64, h->sum, sum));
	cr_assert(eq(u64, stats_hist_min(h), ref[0]));
	cr_assert(eq(u64, h->max, ref[c->n - 1]));
	cr_assert(eq(dbl, stats_hist_quantile(h, 0), (double)ref[0]));
	cr_assert(eq(dbl, stats_hist_quantile(h, 1), (double)ref[c->n - 1]));
	for (i = 0; i < sizeof(qs) / sizeof(qs[0]); i++) {
		uint64_t rank = (uint64_t)ceil(qs[i] * (double)c->n);
		double want, got = stats_hist_quantile(h, qs[i]);

		if (rank < 1)
			rank = 1;
		if (rank > c->n)
			rank = c->n;
		want = (double)ref[rank - 1];
		if (want < 2 * STATS_HIST_SUB) {
			cr_assert(eq(dbl, got, want), "q=%g exact range", qs[i]);
			continue;
		}
		cr_assert(le(dbl, fabs(got - want) / want, STATS_HIST_REL_ERR),
			  "dist %d q=%g: got %.1f want %.1f", c->dist, qs[i], got, want);
	}
	free(ref);
	free(h);
}

Test(hist, merge_equals_single_histogram)
{
	struct stats_hist *all = malloc(sizeof(*all));
	struct stats_hist *part = malloc(4 * sizeof(*part));
	struct stats_hist *merged = malloc(sizeof(*merged));
	uint64_t seed = 7, v;
	unsigned i;

	stats_hist_init(all);
	stats_hist_init(merged);
	for (i = 0; i < 4; i++)
		stats_hist_init(&part[i]);
	for (i = 0; i < 40000; i++) {
		v = draw(DIST_BIMODAL, &seed);
		stats_hist_add(all, v);
		stats_hist_add(&part[i % 3 == 0 ? 0 : i % 3], v);	/* part[3] empty */
	}
	for (i = 0; i < 4; i++)
		stats_hist_merge(merged, &part[i]);
	cr_assert(eq(int, memcmp(all, merged, sizeof(*all)), 0));
	cr_assert(eq(dbl, stats_hist_quantile(merged, 0.99),
		     stats_hist_quantile(all, 0.99)));
	free(all);
	free(part);
	free(merged);
}

Test(hist, empty_and_extremes)
{
	struct stats_hist h;

	stats_hist_init(&h);
	cr_assert(isnan(stats_hist_quantile(&h, 0.5)));
	cr_assert(isnan(stats_hist_mean(&h)));
	cr_assert(eq(u64, stats_hist_min(&h), 0));
	stats_hist_add(&h, UINT64_MAX);
	stats_hist_add(&h, 0);
	cr_assert(eq(u64, stats_hist_min(&h), 0));
	cr_assert(eq(u64, h.max, UINT64_MAX));
	cr_assert(eq(dbl, stats_hist_quantile(&h, 1), (double)UINT64_MAX));
	cr_assert(eq(dbl, stats_hist_quantile(&h, 0.5), 0));
}

/* ---- the report --------------------------------------------------------- */

static void fill_source(struct stats_report *r)
{
	struct stats_pass_row p0 = { 0, 262144, 30000, 850.5, 1234.25, 35000.5 };
	struct stats_pass_row p1 = { 1, 30000, 9000, 100.25, 1200.5, 90000 };
	struct stats_timeline_row t0 = { .t_ms = 0, .phase = "precopy", .pages_present = STATS_NONE,
					 .guest_ops_per_s = 20000, .bulk_bps = NAN };
	struct stats_timeline_row t1 = { .t_ms = 10, .phase = "postcopy", .event = "resumed",
					 .bytes_bulk = 1 << 20, .bytes_urgent = 4096,
					 .pages_present = STATS_NONE, .pages_pulled = 1,
					 .bulk_bps = 5e8, .guest_ops_per_s = 15000.5,
					 .dirty_rate_pps = 1000 };

	stats_report_init(r, STATS_SIDE_SOURCE);
	r->mode = HMIG_MODE_HYBRID;
	stats_report_set_result(r, STATS_RESULT_OK, NULL);
	snprintf(r->dirty_logging, sizeof(r->dirty_logging), "uffd-wp-async");
	snprintf(r->guest.backend, sizeof(r->guest.backend), "synth");
	r->guest.pages = 262144;
	r->guest.page_size = 4096;
	r->guest.vcpus = 4;
	snprintf(r->guest.workload, sizeof(r->guest.workload), "uniform:rate=20000");
	r->total_ms = 1500.75;
	r->downtime_ms = 12.5;
	r->bytes.total = 1200000000;
	r->bytes.precopy = 1000000000;
	r->bytes.stopcopy = 0;
	r->bytes.push = 150000000;
	r->bytes.pull = 50000000;
	r->pages.sent = 290000;
	r->pages.zero = 1000;
	r->pages.duplicate = 11;	/* the source's view; the merge drops it */
	r->switchover.reason = HMIG_REASON_MAX_PASSES;
	r->switchover.stale_pages = 9000;
	r->guest_ops_per_s_before = 20000;
	cr_assert(eq(int, stats_report_add_pass(r, &p0), 0));
	cr_assert(eq(int, stats_report_add_pass(r, &p1), 0));
	cr_assert(eq(int, stats_report_add_timeline(r, &t0), 0));
	cr_assert(eq(int, stats_report_add_timeline(r, &t1), 0));
	cr_assert(eq(int, stats_report_set_extra_u64(r, "link_mbps", 10000), 0));
	cr_assert(eq(int, stats_report_set_extra_double(r, "cpu_pct", 37.5), 0));
	cr_assert(eq(int, stats_report_set_extra_bool(r, "postcopy_available", false), 0));
}

static void fill_destination(struct stats_report *r)
{
	struct stats_timeline_row t0 = { .t_ms = 1510, .phase = "complete", .bytes_bulk = 5 << 20,
					 .bytes_urgent = 8192, .pages_present = 262144,
					 .guest_ops_per_s = 19000, .pull_latency_us = 250 };
	struct stats_hist h;
	unsigned i;

	stats_report_init(r, STATS_SIDE_DESTINATION);
	stats_report_set_result(r, STATS_RESULT_OK, NULL);
	r->integrity = STATS_INTEGRITY_OK;
	snprintf(r->guest.backend, sizeof(r->guest.backend), "synth");
	r->total_ms = 1600.25;
	r->downtime_ms = 14.0;
	r->pages.sent = 5;		/* the merge keeps the source's */
	r->pages.duplicate = 42;
	r->pages.pulled = 1200;
	r->pages.pushed = 8000;
	r->faults.count = 1300;
	r->faults.blocktime_ms = 210.5;
	stats_hist_init(&h);
	for (i = 1; i <= 1000; i++)
		stats_hist_add(&h, i * 1000);	/* 1..1000 us, in ns */
	stats_report_set_fault_latency(r, &h);
	r->guest_ops_per_s_after = 18000;
	cr_assert(eq(int, stats_report_add_timeline(r, &t0), 0));
	cr_assert(eq(int, stats_report_set_extra_u64(r, "link_mbps", 9999), 0));
	cr_assert(eq(int, stats_report_set_extra_u64(r, "uffd_events", 1300), 0));
}

Test(report, every_design_key_is_written_with_its_value)
{
	struct stats_report r;
	json_t *v;
	char *text;

	fill_source(&r);
	v = report_json(&r, &text);

	expect_str(v, "side", "source");
	expect_str(v, "mode", "hybrid");
	expect_str(v, "result", "ok");
	cr_assert(eq(ptr, (void *)json_object_get(v, "error"), NULL), "no error when ok");
	expect_str(v, "integrity", "skipped");
	expect_str(v, "dirty_logging", "uffd-wp-async");
	expect_str(v, "guest.backend", "synth");
	cr_assert(eq(u64, path_u64(v, "guest.pages"), 262144));
	cr_assert(eq(u64, path_u64(v, "guest.page_size"), 4096));
	cr_assert(eq(u64, path_u64(v, "guest.vcpus"), 4));
	expect_str(v, "guest.workload", "uniform:rate=20000");
	cr_assert(eq(dbl, path_dbl(v, "total_ms"), 1500.75));
	cr_assert(eq(dbl, path_dbl(v, "downtime_ms"), 12.5));
	cr_assert(eq(u64, path_u64(v, "bytes.total"), 1200000000));
	cr_assert(eq(u64, path_u64(v, "bytes.precopy"), 1000000000));
	cr_assert(eq(u64, path_u64(v, "bytes.stopcopy"), 0));
	cr_assert(eq(u64, path_u64(v, "bytes.push"), 150000000));
	cr_assert(eq(u64, path_u64(v, "bytes.pull"), 50000000));
	cr_assert(eq(u64, path_u64(v, "pages.sent"), 290000));
	cr_assert(eq(u64, path_u64(v, "pages.zero"), 1000));
	cr_assert(eq(u64, path_u64(v, "pages.duplicate"), 11));
	cr_assert(eq(u64, path_u64(v, "pages.pulled"), 0));
	cr_assert(eq(u64, path_u64(v, "pages.pushed"), 0));
	cr_assert(eq(sz, json_array_size(json_object_get(v, "passes")), 2));
	cr_assert(eq(u64, path_u64(v, "passes[1].pass"), 1));
	cr_assert(eq(u64, path_u64(v, "passes[0].pages_sent"), 262144));
	cr_assert(eq(u64, path_u64(v, "passes[0].pages_dirtied"), 30000));
	cr_assert(eq(dbl, path_dbl(v, "passes[0].ms"), 850.5));
	cr_assert(eq(dbl, path_dbl(v, "passes[0].mbps"), 1234.25));
	cr_assert(eq(dbl, path_dbl(v, "passes[0].dirty_rate_pps"), 35000.5));
	expect_str(v, "switchover.reason", "max_passes");
	cr_assert(eq(u64, path_u64(v, "switchover.stale_pages"), 9000));
	/* Not measured on the source: present, and null. */
	cr_assert(eq(int, doc_u64(v, "faults.count", &(uint64_t){0}), -ENODATA));
	cr_assert(eq(int, doc_double(v, "faults.latency_us.p50", &(double){0}), -ENODATA));
	cr_assert(eq(int, doc_double(v, "faults.latency_us.p90", &(double){0}), -ENODATA));
	cr_assert(eq(int, doc_double(v, "faults.latency_us.p99", &(double){0}), -ENODATA));
	cr_assert(eq(int, doc_double(v, "faults.latency_us.max", &(double){0}), -ENODATA));
	cr_assert(eq(int, doc_double(v, "faults.blocktime_ms", &(double){0}), -ENODATA));
	cr_assert(eq(sz, json_array_size(json_object_get(v, "timeline")), 2));
	cr_assert(eq(dbl, path_dbl(v, "timeline[1].t_ms"), 10));
	expect_str(v, "timeline[1].phase", "postcopy");
	cr_assert(eq(u64, path_u64(v, "timeline[1].bytes_bulk"), 1 << 20));
	cr_assert(eq(u64, path_u64(v, "timeline[1].bytes_urgent"), 4096));
	cr_assert(eq(int, json_typeof(doc_path(v, "timeline[1].pages_present")), JSON_NULL));
	cr_assert(eq(int, json_typeof(doc_path(v, "timeline[0].event")), JSON_NULL));
	cr_assert(eq(int, json_typeof(doc_path(v, "timeline[0].bulk_bps")), JSON_NULL));
	expect_str(v, "timeline[1].event", "resumed");
	cr_assert(eq(dbl, path_dbl(v, "timeline[1].bulk_bps"), 5e8));
	cr_assert(eq(u64, path_u64(v, "timeline[1].pages_pulled"), 1));
	cr_assert(eq(dbl, path_dbl(v, "timeline[1].dirty_rate_pps"), 1000));
	cr_assert(eq(dbl, path_dbl(v, "timeline[1].guest_ops_per_s"), 15000.5));
	cr_assert(eq(dbl, path_dbl(v, "guest_ops_per_s_before"), 20000));
	cr_assert(eq(ptr, (void *)json_object_get(v, "guest_ops_per_s_after"), NULL));
	cr_assert(eq(u64, path_u64(v, "link_mbps"), 10000));
	cr_assert(eq(dbl, path_dbl(v, "cpu_pct"), 37.5));
	json_t *pa = json_object_get(v, "postcopy_available");

	cr_assert(pa && json_is_false(pa), "a boolean extra is written as false");
	/* A table row is one line. */
	cr_assert(not(eq(ptr, strstr(text, "{\"pass\": 1, \"pages_sent\": 30000"), NULL)), "%s", text);

	json_decref(v);
	free(text);
	stats_report_free(&r);
}

Test(report, failure_and_fault_latency)
{
	struct stats_report r;
	json_t *v;

	fill_destination(&r);
	stats_report_set_result(&r, STATS_RESULT_FAILED, "source closed the %s channel", "urgent");
	v = report_json(&r, NULL);
	expect_str(v, "side", "destination");
	expect_str(v, "result", "failed");
	expect_str(v, "error", "source closed the urgent channel");
	expect_str(v, "integrity", "ok");
	cr_assert(eq(int, json_typeof(doc_path(v, "switchover.reason")), JSON_NULL));
	/* 1..1000 us: p50 = 500, p99 = 990, within the histogram's bound. */
	cr_assert(le(dbl, fabs(path_dbl(v, "faults.latency_us.p50") - 500) / 500,
		     STATS_HIST_REL_ERR));
	cr_assert(le(dbl, fabs(path_dbl(v, "faults.latency_us.p90") - 900) / 900,
		     STATS_HIST_REL_ERR));
	cr_assert(le(dbl, fabs(path_dbl(v, "faults.latency_us.p99") - 990) / 990,
		     STATS_HIST_REL_ERR));
	cr_assert(eq(dbl, path_dbl(v, "faults.latency_us.max"), 1000));
	cr_assert(eq(dbl, path_dbl(v, "faults.blocktime_ms"), 210.5));
	/* Powers of two: [2^(k-1), 2^k) us holds 2^(k-1) of the values 1..1000
	 * for k = 1..9 and 489 for k = 10, give or take the values within the
	 * histogram's 1.6% of an edge, which may land on either side of it. */
	json_t *lh = doc_path(v, "faults.latency_hist_us");
	uint64_t sum = 0;
	cr_assert(eq(sz, json_array_size(lh), 11));
	for (size_t k = 0; k < json_array_size(lh); k++) {
		uint64_t n = (uint64_t)json_integer_value(json_array_get(lh, k));
		uint64_t want = k == 10 ? 489 : k ? 1ull << (k - 1) : 0;

		uint64_t slack = 1 + (k ? (1ull << (k - 1)) / 32 : 0);

		cr_assert(le(u64, n, want + 2 * slack), "bucket %zu: %lu", k, (unsigned long)n);
		cr_assert(ge(u64, n + 2 * slack, want), "bucket %zu: %lu", k, (unsigned long)n);
		sum += n;
	}
	cr_assert(eq(u64, sum, 1000));
	cr_assert(eq(dbl, path_dbl(v, "faults.share_ge_1ms"), 0));
	json_decref(v);
	stats_report_free(&r);

	/* A tenth of the faults at 5 ms: share_ge_1ms says so. */
	struct stats_hist h;
	stats_hist_init(&h);
	for (unsigned i = 0; i < 90; i++)
		stats_hist_add(&h, 100000);
	for (unsigned i = 0; i < 10; i++)
		stats_hist_add(&h, 5000000);
	stats_report_init(&r, STATS_SIDE_DESTINATION);
	stats_report_set_fault_latency(&r, &h);
	cr_assert(eq(dbl, r.faults.share_ge_1ms, 0.1));
	cr_assert(eq(u64, r.faults.hist[7], 90)); /* 100 us: [64, 128) */
	cr_assert(eq(u64, r.faults.hist[13], 10)); /* 5000 us: [4096, 8192) */
	cr_assert(eq(u32, r.faults.nhist, 14));
	stats_report_free(&r);

	/* A report nobody finished does not claim success. */
	stats_report_init(&r, STATS_SIDE_SOURCE);
	v = report_json(&r, NULL);
	expect_str(v, "result", "failed");
	expect_str(v, "error", "migration did not finish");
	json_decref(v);
	stats_report_free(&r);
}

/* What a side cannot see is null, never a 0 that reads as measured: the
 * destination's pages sent and zero, bytes per phase and dirty logging, the
 * source's fault count. */
Test(report, what_a_side_does_not_measure_is_null)
{
	static const char *const dest_nulls[] = {
		"pages.sent", "pages.zero", "bytes.precopy", "bytes.stopcopy", "dirty_logging",
		"downtime_ms",
	};
	struct stats_report r;
	json_t *v;

	stats_report_init(&r, STATS_SIDE_DESTINATION);
	v = report_json(&r, NULL);
	for (size_t i = 0; i < sizeof(dest_nulls) / sizeof(dest_nulls[0]); i++) {
		json_t *x = doc_path(v, dest_nulls[i]);

		cr_assert(x && json_is_null(x), "destination %s is not null", dest_nulls[i]);
	}
	cr_assert(eq(u64, path_u64(v, "faults.count"), 0));
	cr_assert(eq(u64, path_u64(v, "pages.pulled"), 0));
	json_decref(v);
	stats_report_free(&r);

	stats_report_init(&r, STATS_SIDE_SOURCE);
	v = report_json(&r, NULL);
	json_t *fc = doc_path(v, "faults.count"), *dl = doc_path(v, "dirty_logging");
	cr_assert(fc && json_is_null(fc), "source faults.count is not null");
	cr_assert(dl && json_is_null(dl), "an unknown dirty_logging is not null");
	cr_assert(eq(u64, path_u64(v, "pages.sent"), 0));
	json_decref(v);
	stats_report_free(&r);
}

/* A workload spec or an error line may quote bytes a user typed or a peer
 * sent: the report still parses, with \xNN where a byte was not UTF-8 or not
 * printable (common/esc.h). */
Test(report, text_that_is_not_utf8_still_parses)
{
	struct stats_report r;
	json_t *v;

	stats_report_init(&r, STATS_SIDE_SOURCE);
	snprintf(r.guest.workload, sizeof(r.guest.workload), "kv:\xff\xc0\xaf");
	stats_report_set_result(&r, STATS_RESULT_FAILED, "bad spec 'h\xc3\xa9\xed\xa0\x80'");
	v = report_json(&r, NULL);
	expect_str(v, "guest.workload", "kv:\\xff\\xc0\\xaf");
	expect_str(v, "error", "bad spec 'h\xc3\xa9\\xed\\xa0\\x80'");
	json_decref(v);
	stats_report_free(&r);
}

/* Numbers are JSON's whatever the C locale's decimal point. */
Test(report, numbers_ignore_the_locale)
{
	struct stats_report r;
	json_t *v;
	char *text;

	if (!setlocale(LC_NUMERIC, "de_DE.UTF-8") && !setlocale(LC_NUMERIC, "fr_FR.UTF-8"))
		cr_skip_test("no locale with a ',' decimal point is installed");
	fill_source(&r);
	text = capture_report(&r);
	cr_assert(not(eq(ptr, strstr(text, "\"total_ms\": 1500.75"), NULL)), "%s", text);
	v = doc_check_parse(text);
	cr_assert(eq(dbl, path_dbl(v, "passes[0].mbps"), 1234.25));
	json_decref(v);
	free(text);
	stats_report_free(&r);
}

Test(report, tables_grow_and_extras_are_checked)
{
	struct stats_report r;
	struct stats_timeline_row row = { .phase = "precopy" };
	size_t i;

	stats_report_init(&r, STATS_SIDE_SOURCE);
	cr_assert(eq(int, stats_report_reserve(&r, 4, 100), 0));
	cr_assert(ge(sz, r.timeline_cap, 100));
	for (i = 0; i < 1000; i++) {
		row.t_ms = (double)i;
		cr_assert(eq(int, stats_report_add_timeline(&r, &row), 0));
	}
	cr_assert(eq(sz, r.ntimeline, 1000));
	cr_assert(eq(dbl, r.timeline[999].t_ms, 999));
	cr_assert(eq(int, stats_report_set_extra_u64(&r, "pages", 1), -EINVAL));
	cr_assert(eq(int, stats_report_set_extra_u64(&r, "timeline_destination", 1), -EINVAL));
	cr_assert(eq(int, stats_report_set_extra_u64(&r, "", 1), -EINVAL));
	cr_assert(eq(int, stats_report_set_extra_u64(&r,
		"a_key_that_is_far_too_long_for_the_fixed_key_buffer", 1), -EINVAL));
	cr_assert(eq(int, stats_report_set_extra_u64(&r, "x", 1), 0));
	cr_assert(eq(int, stats_report_set_extra_double(&r, "x", 2.5), 0));
	cr_assert(eq(sz, r.nextras, 1), "same key replaces");
	cr_assert(eq(dbl, r.extras[0].d, 2.5));
	stats_report_free(&r);
}
