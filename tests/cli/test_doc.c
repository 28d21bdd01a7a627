/* Tests for tools/hmig/doc.c: path lookups, typed reads, parse errors and the
 * merge of a source and a destination report. */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "doc_check.h"

#define path_u64 doc_check_u64
#define path_dbl doc_check_dbl
#define expect_str doc_check_str

/* ---- lookups ------------------------------------------------------------ */

Test(doc, lookups_and_paths)
{
	json_t *v = doc_check_parse("{\"faults\":{\"latency_us\":{\"p50\":12.5}},"
				    "\"passes\":[{\"ms\":1},{\"ms\":2.5}],\"k\":1,\"k\":2}");

	cr_assert(eq(dbl, path_dbl(v, "faults.latency_us.p50"), 12.5));
	cr_assert(eq(dbl, path_dbl(v, "passes[1].ms"), 2.5));
	cr_assert(eq(dbl, path_dbl(v, "passes.1.ms"), 2.5));
	cr_assert(eq(u64, path_u64(v, "k"), 2), "duplicate keys: last wins");
	cr_assert(eq(ptr, (void *)doc_path(v, ""), (void *)v));
	cr_assert(eq(ptr, (void *)doc_path(v, "passes[2].ms"), NULL));
	cr_assert(eq(ptr, (void *)doc_path(v, "passes[x]"), NULL));
	cr_assert(eq(ptr, (void *)doc_path(v, "faults."), NULL));
	cr_assert(eq(ptr, (void *)doc_path(v, "faults..p50"), NULL));
	cr_assert(eq(ptr, (void *)doc_path(v, "nope.p50"), NULL));
	cr_assert(eq(ptr, (void *)doc_path(NULL, "a"), NULL));
	cr_assert(eq(sz, json_array_size(json_object_get(v, "passes")), 2));
	json_decref(v);
}

Test(doc, typed_reads)
{
	json_t *v = doc_check_parse("{\"neg\":-42,\"big\":1.5e3,\"frac\":2.5,\"zero\":-0,"
				    "\"s\":\"s\",\"n\":null,\"max\":9223372036854775807}");
	uint64_t u;
	double d;

	cr_assert(eq(int, doc_u64(v, "neg", &u), -ERANGE));
	cr_assert(eq(int, doc_u64(v, "big", &u), 0));
	cr_assert(eq(u64, u, 1500));
	cr_assert(eq(int, doc_u64(v, "frac", &u), -ERANGE));
	cr_assert(eq(int, doc_double(v, "frac", &d), 0));
	cr_assert(eq(dbl, d, 2.5));
	cr_assert(eq(int, doc_u64(v, "zero", &u), 0));
	cr_assert(eq(u64, u, 0));
	cr_assert(eq(int, doc_u64(v, "max", &u), 0));
	cr_assert(eq(u64, u, 9223372036854775807ull));
	cr_assert(eq(int, doc_u64(v, "s", &u), -EINVAL));
	cr_assert(eq(int, doc_double(v, "n", &d), -ENODATA));
	cr_assert(eq(int, doc_u64(v, "x", &u), -ENOENT));
	cr_assert(eq(ptr, (void *)doc_str(v, "neg"), NULL));
	json_decref(v);
}

Test(doc, parse_error_names_line_and_column)
{
	char err[DOC_ERR_LEN] = "";
	json_t *v = (void *)1;
	const char *text = "{\n  \"a\": 1,\n  \"b\": ?\n}";

	cr_assert(eq(int, doc_parse(text, strlen(text), &v, err), -EINVAL));
	cr_assert(eq(ptr, (void *)v, NULL));
	cr_assert(not(eq(ptr, strstr(err, "(line 3, column 8)"), NULL)), "%s", err);
}

Test(doc, load_names_the_file)
{
	char err[DOC_ERR_LEN] = "";
	json_t *v;

	cr_assert(eq(int, doc_load("/nonexistent/r.json", &v, err), -ENOENT));
	cr_assert(not(eq(ptr, strstr(err, "/nonexistent/r.json"), NULL)), "%s", err);
}

/* ---- merging ------------------------------------------------------------ */

/* A source's and a destination's report as the library writes them. */
static const char source_doc[] =
	"{\"side\":\"source\",\"mode\":\"hybrid\",\"result\":\"ok\",\"integrity\":\"skipped\","
	"\"dirty_logging\":\"uffd-wp-async\","
	"\"guest\":{\"backend\":\"synth\",\"pages\":262144,\"page_size\":4096,\"vcpus\":4,"
	"\"workload\":\"uniform:rate=20000\"},"
	"\"total_ms\":1500.75,\"downtime_ms\":12.5,"
	"\"bytes\":{\"total\":1200000000,\"precopy\":1000000000,\"stopcopy\":0,"
	"\"push\":150000000,\"pull\":50000000},"
	"\"pages\":{\"sent\":290000,\"zero\":1000,\"duplicate\":11,\"pulled\":0,\"pushed\":0},"
	"\"passes\":[{\"pass\":0,\"pages_sent\":262144,\"pages_dirtied\":30000,\"ms\":850.5,"
	"\"mbps\":1234.25,\"dirty_rate_pps\":35000.5},"
	"{\"pass\":1,\"pages_sent\":30000,\"pages_dirtied\":9000,\"ms\":100.25,\"mbps\":1200.5,"
	"\"dirty_rate_pps\":90000}],"
	"\"switchover\":{\"reason\":\"max_passes\",\"stale_pages\":9000},"
	"\"faults\":{\"count\":0,\"latency_us\":{\"p50\":null,\"p90\":null,\"p99\":null,"
	"\"max\":null},\"blocktime_ms\":null},"
	"\"guest_ops_per_s_before\":20000,"
	"\"timeline\":[{\"t_ms\":0,\"phase\":\"precopy\",\"bytes_bulk\":0,\"bytes_urgent\":0,"
	"\"pages_present\":0,\"guest_ops_per_s\":20000},"
	"{\"t_ms\":10,\"phase\":\"postcopy\",\"bytes_bulk\":1048576,\"bytes_urgent\":4096,"
	"\"pages_present\":0,\"guest_ops_per_s\":15000.5}],"
	"\"link_mbps\":10000,\"cpu_pct\":37.5}";

static const char destination_doc[] =
	"{\"side\":\"destination\",\"mode\":\"hybrid\",\"result\":\"ok\",\"integrity\":\"ok\","
	"\"guest\":{\"backend\":\"synth\",\"pages\":0,\"page_size\":0,\"vcpus\":0,\"workload\":\"\"},"
	"\"total_ms\":1600.25,\"downtime_ms\":14.0,"
	"\"bytes\":{\"total\":0,\"precopy\":0,\"stopcopy\":0,\"push\":0,\"pull\":0},"
	"\"pages\":{\"sent\":5,\"zero\":0,\"duplicate\":42,\"pulled\":1200,\"pushed\":8000},"
	"\"passes\":[],\"switchover\":{\"reason\":null,\"stale_pages\":0},"
	"\"faults\":{\"count\":1300,\"latency_us\":{\"p50\":500.5,\"p90\":900.5,\"p99\":990.5,"
	"\"max\":1000},\"blocktime_ms\":210.5},"
	"\"guest_ops_per_s_after\":18000,"
	"\"timeline\":[{\"t_ms\":1510,\"phase\":\"complete\",\"bytes_bulk\":5242880,"
	"\"bytes_urgent\":8192,\"pages_present\":262144,\"guest_ops_per_s\":19000}],"
	"\"link_mbps\":9999,\"uffd_events\":1300}";

static json_t *report_doc(const char *text, void (*tweak)(json_t *))
{
	json_t *v = doc_check_parse(text);

	if (tweak)
		tweak(v);
	return v;
}

static json_t *merge_docs(json_t *s, json_t *d)
{
	char *buf = NULL, err[DOC_ERR_LEN] = "";
	size_t n = 0;
	FILE *f = open_memstream(&buf, &n);
	int rc;

	rc = doc_merge(s, d, f, err);
	cr_assert(eq(int, rc, 0), "%s", err);
	fclose(f);
	json_t *out = doc_check_parse(buf);
	free(buf);
	return out;
}

Test(report_merge, follows_the_documented_rule)
{
	json_t *s = report_doc(source_doc, NULL), *d = report_doc(destination_doc, NULL);
	json_t *m = merge_docs(s, d);

	expect_str(m, "side", "merged");
	expect_str(m, "mode", "hybrid");
	expect_str(m, "result", "ok");
	cr_assert(eq(ptr, (void *)json_object_get(m, "error"), NULL));
	expect_str(m, "integrity", "ok");			/* destination */
	expect_str(m, "dirty_logging", "uffd-wp-async");	/* source */
	expect_str(m, "guest.workload", "uniform:rate=20000");	/* source */
	cr_assert(eq(dbl, path_dbl(m, "total_ms"), 1600.25));	/* larger */
	cr_assert(eq(dbl, path_dbl(m, "downtime_ms"), 12.5));	/* source: all of it */
	cr_assert(eq(u64, path_u64(m, "bytes.total"), 1200000000));
	cr_assert(eq(u64, path_u64(m, "bytes.pull"), 50000000));
	cr_assert(eq(u64, path_u64(m, "pages.sent"), 290000));	/* source */
	cr_assert(eq(u64, path_u64(m, "pages.zero"), 1000));	/* source */
	cr_assert(eq(u64, path_u64(m, "pages.duplicate"), 42));	/* destination */
	cr_assert(eq(u64, path_u64(m, "pages.pulled"), 1200));
	cr_assert(eq(u64, path_u64(m, "pages.pushed"), 8000));
	cr_assert(eq(sz, json_array_size(json_object_get(m, "passes")), 2));
	cr_assert(eq(dbl, path_dbl(m, "passes[0].ms"), 850.5));
	expect_str(m, "switchover.reason", "max_passes");
	cr_assert(eq(u64, path_u64(m, "switchover.stale_pages"), 9000));
	cr_assert(eq(u64, path_u64(m, "faults.count"), 1300));	/* destination */
	cr_assert(eq(dbl, path_dbl(m, "faults.latency_us.max"), 1000));
	cr_assert(eq(dbl, path_dbl(m, "faults.blocktime_ms"), 210.5));
	cr_assert(eq(dbl, path_dbl(m, "guest_ops_per_s_before"), 20000));
	cr_assert(eq(dbl, path_dbl(m, "guest_ops_per_s_after"), 18000));
	cr_assert(eq(sz, json_array_size(json_object_get(m, "timeline")), 2));
	expect_str(m, "timeline[0].phase", "precopy");
	cr_assert(eq(sz, json_array_size(json_object_get(m, "timeline_destination")), 1));
	expect_str(m, "timeline_destination[0].phase", "complete");
	cr_assert(eq(u64, path_u64(m, "timeline_destination[0].pages_present"), 262144));
	/* Extras: the source's value under the key, the destination's renamed. */
	cr_assert(eq(u64, path_u64(m, "link_mbps"), 10000));
	cr_assert(eq(u64, path_u64(m, "link_mbps_destination"), 9999));
	cr_assert(eq(u64, path_u64(m, "uffd_events"), 1300));
	cr_assert(eq(dbl, path_dbl(m, "cpu_pct"), 37.5));
	/* Keys keep the documented order. */
	cr_assert(eq(str, (char *)json_object_iter_key(json_object_iter(m)), "side"));

	json_decref(s);
	json_decref(d);
	json_decref(m);
}

static void starts(json_t *s, json_t *d, double src_ms, double dst_ms)
{
	json_object_set_new(s, "start_unix_ms", json_real(src_ms));
	json_object_set_new(d, "start_unix_ms", json_real(dst_ms));
}

/* Both timelines on one clock: the destination's rows move by the gap
 * between the two sides' wall clocks at their t_ms 0. */
Test(report_merge, the_destination_timeline_goes_on_the_source_clock)
{
	json_t *s = report_doc(source_doc, NULL), *d = report_doc(destination_doc, NULL);
	json_t *m;

	starts(s, d, 1700000000000.0, 1700000000250.5); /* the destination started later */
	m = merge_docs(s, d);
	cr_assert(eq(dbl, path_dbl(m, "timeline_destination_shift_ms"), 250.5));
	cr_assert(eq(dbl, path_dbl(m, "timeline_destination[0].t_ms"), 1510 + 250.5));
	cr_assert(eq(dbl, path_dbl(m, "timeline[1].t_ms"), 10), "the source's rows stay");
	cr_assert(eq(dbl, path_dbl(m, "start_unix_ms"), 1700000000000.0));
	cr_assert(eq(dbl, path_dbl(m, "start_unix_ms_destination"), 1700000000250.5));
	cr_assert(eq(dbl, path_dbl(d, "timeline[0].t_ms"), 1510), "the input is not changed");
	json_decref(m);

	/* Without one side's clock the rows stay on their own, and say so. */
	json_object_set_new(s, "start_unix_ms", json_null());
	m = merge_docs(s, d);
	json_t *shift = json_object_get(m, "timeline_destination_shift_ms");
	cr_assert(shift && json_is_null(shift), "no shift, yet not null");
	cr_assert(eq(dbl, path_dbl(m, "timeline_destination[0].t_ms"), 1510));
	json_decref(m);
	json_decref(s);
	json_decref(d);
}

static void set_result(json_t *r, const char *result, const char *error)
{
	json_object_set_new(r, "result", json_string(result));
	json_object_set_new(r, "error", json_string(error));
}

static void no_downtime(json_t *r)
{
	json_object_set_new(r, "downtime_ms", json_null());
	set_result(r, "failed", "integrity mismatch at pfn 7");
}

static void src_cancelled(json_t *r)
{
	set_result(r, "cancelled", "operator cancelled");
}

static void src_failed(json_t *r)
{
	set_result(r, "failed", "connection reset");
}

Test(report_merge, failures_and_fallbacks)
{
	json_t *s, *d, *m;

	/* Destination failed: its error leads.  A source that knows no downtime
	 * is filled in by the destination's share. */
	s = report_doc(source_doc, NULL);
	d = report_doc(destination_doc, no_downtime);
	m = merge_docs(s, d);
	expect_str(m, "result", "failed");
	expect_str(m, "error", "destination: integrity mismatch at pfn 7");
	cr_assert(eq(dbl, path_dbl(m, "downtime_ms"), 12.5));
	json_decref(m);
	json_decref(s);
	json_decref(d);
	s = report_doc(source_doc, no_downtime);
	d = report_doc(destination_doc, NULL);
	m = merge_docs(s, d);
	cr_assert(eq(dbl, path_dbl(m, "downtime_ms"), 14.0));
	json_decref(m);
	json_decref(s);
	json_decref(d);
	d = report_doc(destination_doc, no_downtime);

	/* Source cancelled + destination failed: failed, both errors. */
	s = report_doc(source_doc, src_cancelled);
	m = merge_docs(s, d);
	expect_str(m, "result", "failed");
	expect_str(m, "error",
		   "source: operator cancelled; destination: integrity mismatch at pfn 7");
	json_decref(m);
	json_decref(d);

	/* Only a cancellation: cancelled. */
	d = report_doc(destination_doc, NULL);
	m = merge_docs(s, d);
	expect_str(m, "result", "cancelled");
	expect_str(m, "error", "source: operator cancelled");
	json_decref(m);
	json_decref(s);

	/* The source failed and the destination wrote nothing. */
	s = report_doc(source_doc, src_failed);
	m = merge_docs(s, NULL);
	expect_str(m, "result", "failed");
	expect_str(m, "error", "source: connection reset");
	cr_assert(eq(u64, path_u64(m, "pages.sent"), 290000));
	cr_assert(eq(sz, json_array_size(json_object_get(m, "timeline_destination")), 0));
	json_decref(m);

	/* Only the destination's report. */
	m = merge_docs(NULL, d);
	expect_str(m, "result", "ok");
	cr_assert(eq(u64, path_u64(m, "pages.sent"), 5));
	cr_assert(eq(sz, json_array_size(json_object_get(m, "timeline")), 0));
	cr_assert(eq(sz, json_array_size(json_object_get(m, "timeline_destination")), 1));
	json_decref(m);
	json_decref(s);
	json_decref(d);
}

Test(report_merge, rejects_non_reports)
{
	char err[DOC_ERR_LEN] = "";
	json_t *a = doc_check_parse("[1]");
	FILE *f = fopen("/dev/null", "w");

	cr_assert(eq(int, doc_merge(NULL, NULL, f, err), -EINVAL));
	cr_assert(eq(int, doc_merge(a, NULL, f, err), -EINVAL));
	cr_assert(not(eq(ptr, strstr(err, "source"), NULL)), "%s", err);
	json_decref(a);
	fclose(f);
}
