/* Tests for src/stats: the histogram, the JSON writer and parser, and the
 * report.  The merge of two reports is the CLI's (tests/cli). */
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
#include "stats/json.h"
#include "stats/report.h"

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

static void parse_ok(const char *text, struct json_val *v)
{
	char err[ERR_LEN] = "";
	int rc = json_parse(text, strlen(text), NULL, v, err);

	cr_assert(eq(int, rc, 0), "parsing %s: %s", text, err);
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

static void parse_text(const char *text, struct json_val *v)
{
	char err[ERR_LEN] = "";
	int rc = json_parse(text, strlen(text), NULL, v, err);

	cr_assert(eq(int, rc, 0), "%s\n--- in ---\n%s", err, text);
}

static uint64_t path_u64(const struct json_val *root, const char *path)
{
	uint64_t v = 0;
	int rc = json_path_u64(root, path, &v);

	cr_assert(eq(int, rc, 0), "%s: rc %d", path, rc);
	return v;
}

static double path_dbl(const struct json_val *root, const char *path)
{
	double v = 0;
	int rc = json_path_double(root, path, &v);

	cr_assert(eq(int, rc, 0), "%s: rc %d", path, rc);
	return v;
}

static void expect_str(const struct json_val *root, const char *path,
		       const char *want)
{
	const char *s = json_path_str(root, path);

	cr_assert(not(eq(ptr, (void *)s, NULL)), "%s missing or not a string", path);
	cr_assert(eq(str, (char *)s, (char *)want), "%s", path);
}

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

/* ---- JSON writer -------------------------------------------------------- */

Test(json_writer, compact_layout_and_scalars)
{
	struct json_writer w;

	json_writer_init(&w, NULL, 0);
	json_obj_begin(&w);
	json_key(&w, "a");
	json_arr_begin(&w);
	json_put_u64(&w, UINT64_MAX);
	json_put_i64(&w, INT64_MIN);
	json_put_double(&w, 0.1);
	json_put_double(&w, NAN);
	json_put_double(&w, -INFINITY);
	json_put_bool(&w, true);
	json_obj_begin(&w);
	json_obj_end(&w);
	json_arr_end(&w);
	json_kv_str(&w, "b", "x");
	json_obj_end(&w);
	cr_assert(eq(int, json_writer_finish(&w), 0));
	cr_assert(eq(str, w.buf,
		     "{\"a\":[18446744073709551615,-9223372036854775808,0.1,"
		     "null,null,true,{}],\"b\":\"x\"}"));
	json_writer_free(&w);
}

Test(json_writer, pretty_keeps_deep_rows_on_one_line)
{
	struct json_writer w;

	json_writer_init(&w, NULL, 1);
	json_obj_begin(&w);
	json_key(&w, "rows");
	json_arr_begin(&w);
	json_put_u64(&w, 1);
	json_arr_end(&w);
	json_kv_u64(&w, "n", 2);
	json_obj_end(&w);
	cr_assert(eq(int, json_writer_finish(&w), 0));
	cr_assert(eq(str, w.buf, "{\n  \"rows\": [1],\n  \"n\": 2\n}\n"));
	json_writer_free(&w);
}

Test(json_writer, nesting_misuse_is_refused)
{
	struct json_writer w;

	json_writer_init(&w, NULL, 0);	/* value in an object without key */
	json_obj_begin(&w);
	cr_assert(eq(int, json_put_u64(&w, 1), -EINVAL));
	cr_assert(eq(int, json_writer_finish(&w), -EINVAL));
	json_writer_free(&w);

	json_writer_init(&w, NULL, 0);	/* key in an array */
	json_arr_begin(&w);
	cr_assert(eq(int, json_key(&w, "k"), -EINVAL));
	json_writer_free(&w);

	json_writer_init(&w, NULL, 0);	/* mismatched end */
	json_arr_begin(&w);
	cr_assert(eq(int, json_obj_end(&w), -EINVAL));
	json_writer_free(&w);

	json_writer_init(&w, NULL, 0);	/* dangling key */
	json_obj_begin(&w);
	json_key(&w, "k");
	cr_assert(eq(int, json_obj_end(&w), -EINVAL));
	json_writer_free(&w);

	json_writer_init(&w, NULL, 0);	/* two documents */
	json_put_null(&w);
	cr_assert(eq(int, json_put_null(&w), -EINVAL));
	json_writer_free(&w);

	json_writer_init(&w, NULL, 0);	/* unfinished */
	json_arr_begin(&w);
	cr_assert(eq(int, json_writer_finish(&w), -EINVAL));
	json_writer_free(&w);

	json_writer_init(&w, NULL, 0);	/* nothing at all */
	cr_assert(eq(int, json_writer_finish(&w), -EINVAL));
	json_writer_free(&w);
}

Test(json_writer, string_escaping_round_trips)
{
	static const char *const strs[] = {
		"",
		"plain",
		"quote \" backslash \\ slash /",
		"\x01\x02\x1f\b\f\n\r\t\x7f",
		"h\xc3\xa9llo \xe2\x82\xac \xf0\x9d\x84\x9e",	/* é € 𝄞 */
		"\xef\xbf\xbf end of BMP, \xf4\x8f\xbf\xbf last code point",
	};
	struct json_writer w;
	struct json_val v;
	size_t i;

	json_writer_init(&w, NULL, 0);
	json_arr_begin(&w);
	for (i = 0; i < sizeof(strs) / sizeof(strs[0]); i++)
		json_put_str(&w, strs[i]);
	json_put_strn(&w, "nul\0inside", 10);
	json_arr_end(&w);
	cr_assert(eq(int, json_writer_finish(&w), 0));
	/* Control characters never appear raw in the output. */
	for (i = 0; i < w.len; i++)
		cr_assert(ge(u8, (uint8_t)w.buf[i], 0x20), "raw control at %zu", i);
	cr_assert(not(eq(ptr, strstr(w.buf, "\\u0001"), NULL)));
	cr_assert(not(eq(ptr, strstr(w.buf, "\\n"), NULL)));
	parse_text(w.buf, &v);
	cr_assert(eq(sz, json_len(&v), sizeof(strs) / sizeof(strs[0]) + 1));
	for (i = 0; i < sizeof(strs) / sizeof(strs[0]); i++) {
		cr_assert(eq(str, (char *)json_val_str(json_at(&v, i)), (char *)strs[i]));
		cr_assert(eq(sz, json_at(&v, i)->str.len, strlen(strs[i])));
	}
	cr_assert(eq(sz, json_at(&v, i)->str.len, 10));
	cr_assert(eq(int, memcmp(json_at(&v, i)->str.s, "nul\0inside", 10), 0));
	json_val_free(&v);
	json_writer_free(&w);
}

Test(json_writer, invalid_utf8_becomes_replacement_character)
{
	struct json_writer w;

	json_writer_init(&w, NULL, 0);
	json_put_str(&w, "a\xff" "b\xc0\xaf" "c\xed\xa0\x80");	/* bad, overlong, surrogate */
	cr_assert(eq(int, json_writer_finish(&w), 0));
	cr_assert(eq(str, w.buf, "\"a\xef\xbf\xbd" "b\xef\xbf\xbd\xef\xbf\xbd"
		     "c\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\""));
	json_writer_free(&w);
}

Test(json_writer, doubles_round_trip_exactly)
{
	uint64_t seed = 99;
	unsigned i;

	for (i = 0; i < 2000; i++) {
		struct json_writer w;
		struct json_val v;
		double d, got;
		uint64_t bits = rng_next(&seed);

		memcpy(&d, &bits, sizeof(d));
		if (!isfinite(d))
			continue;
		if (i % 2)
			d = rng_unit(&seed) * 1e4;	/* typical ms values */
		json_writer_init(&w, NULL, 0);
		json_put_double(&w, d);
		cr_assert(eq(int, json_writer_finish(&w), 0));
		parse_text(w.buf, &v);
		cr_assert(eq(int, json_val_double(&v, &got), 0));
		cr_assert(eq(int, memcmp(&got, &d, sizeof(d)), 0), "%s", w.buf);
		json_val_free(&v);
		json_writer_free(&w);
	}
}

Test(json_writer, decimal_point_ignores_locale)
{
	struct json_writer w;
	struct json_val v;
	double d;

	if (!setlocale(LC_NUMERIC, "de_DE.UTF-8") &&
	    !setlocale(LC_NUMERIC, "fr_FR.UTF-8"))
		cr_skip_test("no locale with a ',' decimal point is installed");
	json_writer_init(&w, NULL, 0);
	json_put_double(&w, 1.5);
	cr_assert(eq(int, json_writer_finish(&w), 0));
	cr_assert(eq(str, w.buf, "1.5"));
	parse_text("2.25", &v);
	cr_assert(eq(int, json_val_double(&v, &d), 0));
	cr_assert(eq(dbl, d, 2.25));
	json_val_free(&v);
	json_writer_free(&w);
}

Test(json_writer, file_output)
{
	char *buf = NULL;
	size_t n = 0;
	FILE *f = open_memstream(&buf, &n);
	struct json_writer w;

	json_writer_init(&w, f, 0);
	json_arr_begin(&w);
	json_put_str(&w, "x");
	json_arr_end(&w);
	cr_assert(eq(int, json_writer_finish(&w), 0));
	fclose(f);
	cr_assert(eq(str, buf, "[\"x\"]"));
	free(buf);
}

/* ---- JSON parser -------------------------------------------------------- */

Test(json_parse, unicode_escapes_and_surrogate_pairs)
{
	struct json_val v;
	const struct json_val *s;

	parse_ok("[\"\\u00e9\\u20AC\\ud834\\udd1e\", \"\\u0000\", \"\\/\\\"\\\\\\b\\f\\n\\r\\t\"]", &v);
	cr_assert(eq(str, (char *)json_val_str(json_at(&v, 0)),
		     "\xc3\xa9\xe2\x82\xac\xf0\x9d\x84\x9e"));
	s = json_at(&v, 1);
	cr_assert(eq(sz, s->str.len, 1));
	cr_assert(eq(u8, (uint8_t)s->str.s[0], 0));
	cr_assert(eq(str, (char *)json_val_str(json_at(&v, 2)), "/\"\\\b\f\n\r\t"));
	json_val_free(&v);
}

Test(json_parse, literals_whitespace_and_bom)
{
	struct json_val v;
	bool b;

	parse_ok("\xef\xbb\xbf \t\r\n{ \"t\" : true , \"f\":false,\"n\":null,\"e\":{},\"a\":[] } \n", &v);
	cr_assert(eq(int, json_val_bool(json_get(&v, "t"), &b), 0));
	cr_assert(b);
	cr_assert(eq(int, json_val_bool(json_get(&v, "f"), &b), 0));
	cr_assert(not(b));
	cr_assert(eq(int, json_get(&v, "n")->type, JSON_NULL));
	cr_assert(eq(int, json_val_bool(json_get(&v, "n"), &b), -ENODATA));
	cr_assert(eq(int, json_val_bool(json_get(&v, "zz"), &b), -ENOENT));
	cr_assert(eq(sz, json_len(json_get(&v, "e")), 0));
	cr_assert(eq(int, json_get(&v, "a")->type, JSON_ARR));
	json_val_free(&v);
}

Test(json_parse, numbers)
{
	struct json_val v;
	uint64_t u;
	int64_t i;
	double d;

	parse_ok("[18446744073709551615, 18446744073709551616, -9223372036854775808,"
		 " -42, 1.5e3, 2.5, 1E-2, -0, 0, 9007199254740993]", &v);
	cr_assert(eq(int, json_val_u64(json_at(&v, 0), &u), 0));
	cr_assert(eq(u64, u, UINT64_MAX));
	cr_assert(eq(int, json_val_u64(json_at(&v, 1), &u), -ERANGE));
	cr_assert(eq(int, json_val_double(json_at(&v, 1), &d), 0));
	cr_assert(eq(dbl, d, 18446744073709551616.0));
	cr_assert(eq(int, json_val_i64(json_at(&v, 2), &i), 0));
	cr_assert(eq(i64, i, INT64_MIN));
	cr_assert(eq(int, json_val_i64(json_at(&v, 3), &i), 0));
	cr_assert(eq(i64, i, -42));
	cr_assert(eq(int, json_val_u64(json_at(&v, 3), &u), -ERANGE));
	cr_assert(eq(int, json_val_u64(json_at(&v, 4), &u), 0));
	cr_assert(eq(u64, u, 1500));
	cr_assert(eq(int, json_val_u64(json_at(&v, 5), &u), -ERANGE));
	cr_assert(eq(int, json_val_double(json_at(&v, 5), &d), 0));
	cr_assert(eq(dbl, d, 2.5));
	cr_assert(eq(int, json_val_double(json_at(&v, 6), &d), 0));
	cr_assert(eq(dbl, d, 0.01));
	cr_assert(eq(int, json_val_u64(json_at(&v, 7), &u), 0));
	cr_assert(eq(u64, u, 0));
	cr_assert(eq(int, json_val_u64(json_at(&v, 8), &u), 0));
	/* 2^53 + 1 has no double but is read exactly. */
	cr_assert(eq(int, json_val_u64(json_at(&v, 9), &u), 0));
	cr_assert(eq(u64, u, 9007199254740993ull));
	cr_assert(eq(int, json_val_u64(json_get(&v, "x"), &u), -ENOENT));
	json_val_free(&v);

	parse_ok("\"s\"", &v);
	cr_assert(eq(int, json_val_u64(&v, &u), -EINVAL));
	json_val_free(&v);
}

/* The text is stored inline: Criterion hands parameters to a fresh process,
 * where a pointer to a string literal need not be valid. */
struct bad_case {
	char text[40];
	int rc;
	size_t offset;
};

ParameterizedTestParameters(json_parse, malformed_input_is_rejected)
{
	static struct bad_case cases[] = {
		{ "[1,2,]", -EINVAL, 5 },		/* trailing comma */
		{ "{\"a\":1,}", -EINVAL, 7 },		/* trailing comma */
		{ "{\"a\":1 \"b\":2}", -EINVAL, 7 },	/* missing comma */
		{ "{\"a\" 1}", -EINVAL, 5 },		/* missing colon */
		{ "{1:2}", -EINVAL, 1 },		/* non-string key */
		{ "\"abc", -EINVAL, 0 },		/* unterminated string */
		{ "[\"ab\\", -EINVAL, 1 },		/* unterminated by escape */
		{ "\"a\\x\"", -EINVAL, 2 },		/* bad escape */
		{ "\"\\u12g4\"", -EINVAL, 5 },		/* bad hex */
		{ "\"\\ud834\"", -EINVAL, 1 },		/* lone high surrogate */
		{ "\"\\udd1e\"", -EINVAL, 1 },		/* lone low surrogate */
		{ "\"\\ud834\\u0041\"", -EINVAL, 7 },	/* high + non-low */
		{ "\"a\tb\"", -EINVAL, 2 },		/* raw control char */
		{ "\"\xc3\x28\"", -EINVAL, 1 },		/* bad UTF-8 */
		{ "x{}", -EINVAL, 0 },			/* leading garbage */
		{ "{} x", -EINVAL, 3 },			/* trailing garbage */
		{ "[1]]", -EINVAL, 3 },			/* trailing garbage */
		{ "", -EINVAL, 0 },			/* empty */
		{ "  ", -EINVAL, 2 },			/* only whitespace */
		{ "01", -EINVAL, 0 },			/* leading zero */
		{ "-", -EINVAL, 1 },
		{ "1.", -EINVAL, 2 },
		{ "1e+", -EINVAL, 3 },
		{ ".5", -EINVAL, 0 },
		{ "+1", -EINVAL, 0 },
		{ "1e999", -EINVAL, 0 },		/* not a finite double */
		{ "tru", -EINVAL, 0 },
		{ "[nul]", -EINVAL, 1 },
		{ "[1 2]", -EINVAL, 3 },
		{ "{\"a\":[1,{\"b\":}]}", -EINVAL, 13 },
	};

	return cr_make_param_array(struct bad_case, cases,
				   sizeof(cases) / sizeof(cases[0]));
}

ParameterizedTest(struct bad_case *c, json_parse, malformed_input_is_rejected)
{
	char err[ERR_LEN] = "", want[48];
	struct json_val v;
	int rc = json_parse(c->text, strlen(c->text), NULL, &v, err);

	cr_assert(eq(int, rc, c->rc), "'%s': rc %d (%s)", c->text, rc, err);
	snprintf(want, sizeof(want), "at byte %zu ", c->offset);
	cr_assert(not(eq(ptr, strstr(err, want), NULL)),
		  "'%s': wanted \"%s\" in \"%s\"", c->text, want, err);
	cr_assert(eq(int, v.type, JSON_NULL));
}

Test(json_parse, depth_limit)
{
	char text[2 * (JSON_DEFAULT_MAX_DEPTH + 1) + 1], err[ERR_LEN] = "";
	struct json_limits lim = { .max_depth = 3 };
	struct json_val v;
	size_t i, n = JSON_DEFAULT_MAX_DEPTH;

	/* Exactly at the limit: accepted. */
	for (i = 0; i < n; i++) {
		text[i] = '[';
		text[2 * n - 1 - i] = ']';
	}
	cr_assert(eq(int, json_parse(text, 2 * n, NULL, &v, err), 0), "%s", err);
	json_val_free(&v);
	/* One more: refused where the extra bracket opens. */
	n++;
	for (i = 0; i < n; i++) {
		text[i] = '[';
		text[2 * n - 1 - i] = ']';
	}
	cr_assert(eq(int, json_parse(text, 2 * n, NULL, &v, err), -E2BIG));
	snprintf(text, sizeof(text), "at byte %d ", JSON_DEFAULT_MAX_DEPTH);
	cr_assert(not(eq(ptr, strstr(err, text), NULL)), "%s", err);

	cr_assert(eq(int, json_parse("{\"a\":[[1]]}", 11, &lim, &v, err), 0), "%s", err);
	json_val_free(&v);
	cr_assert(eq(int, json_parse("{\"a\":[[[1]]]}", 13, &lim, &v, err), -E2BIG));
	cr_assert(not(eq(ptr, strstr(err, "at byte 7 "), NULL)), "%s", err);
}

Test(json_parse, size_and_value_limits)
{
	struct json_limits lim = { .max_len = 8, .max_values = 3 };
	char err[ERR_LEN] = "";
	struct json_val v;

	cr_assert(eq(int, json_parse("[1, 2, 3, 4]", 12, &lim, &v, err), -E2BIG));
	cr_assert(not(eq(ptr, strstr(err, "limit"), NULL)), "%s", err);
	cr_assert(eq(int, json_parse("[1,2]", 5, &lim, &v, err), 0));
	json_val_free(&v);
	cr_assert(eq(int, json_parse("[1,2,3]", 7, &lim, &v, err), -E2BIG));
	cr_assert(not(eq(ptr, strstr(err, "at byte 5 "), NULL)), "%s", err);
}

Test(json_parse, error_names_line_and_column)
{
	char err[ERR_LEN] = "";
	struct json_val v;
	const char *text = "{\n  \"a\": 1,\n  \"b\": ?\n}";

	cr_assert(eq(int, json_parse(text, strlen(text), NULL, &v, err), -EINVAL));
	cr_assert(not(eq(ptr, strstr(err, "byte 19 (line 3, column 8)"), NULL)), "%s", err);
}

Test(json_parse, lookups_and_paths)
{
	struct json_val v;

	parse_ok("{\"faults\":{\"latency_us\":{\"p50\":12.5}},"
		 "\"passes\":[{\"ms\":1},{\"ms\":2.5}],\"k\":1,\"k\":2}", &v);
	cr_assert(eq(dbl, path_dbl(&v, "faults.latency_us.p50"), 12.5));
	cr_assert(eq(dbl, path_dbl(&v, "passes[1].ms"), 2.5));
	cr_assert(eq(dbl, path_dbl(&v, "passes.1.ms"), 2.5));
	cr_assert(eq(u64, path_u64(&v, "k"), 2), "duplicate keys: last wins");
	cr_assert(eq(ptr, (void *)json_path(&v, ""), (void *)&v));
	cr_assert(eq(ptr, (void *)json_path(&v, "passes[2].ms"), NULL));
	cr_assert(eq(ptr, (void *)json_path(&v, "passes[x]"), NULL));
	cr_assert(eq(ptr, (void *)json_path(&v, "faults."), NULL));
	cr_assert(eq(ptr, (void *)json_path(&v, "faults..p50"), NULL));
	cr_assert(eq(ptr, (void *)json_path(&v, "nope.p50"), NULL));
	cr_assert(eq(ptr, (void *)json_path(NULL, "a"), NULL));
	cr_assert(eq(sz, json_len(json_get(&v, "passes")), 2));
	json_val_free(&v);
}

/* ---- the report --------------------------------------------------------- */

static void fill_source(struct stats_report *r)
{
	struct stats_pass_row p0 = { 0, 262144, 30000, 850.5, 1234.25, 35000.5 };
	struct stats_pass_row p1 = { 1, 30000, 9000, 100.25, 1200.5, 90000 };
	struct stats_timeline_row t0 = { 0, "precopy", 0, 0, 0, 20000 };
	struct stats_timeline_row t1 = { 10, "postcopy", 1 << 20, 4096, 0, 15000.5 };

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
	r->switchover.reason = STATS_REASON_MAX_PASSES;
	r->switchover.stale_pages = 9000;
	r->guest_ops_per_s_before = 20000;
	cr_assert(eq(int, stats_report_add_pass(r, &p0), 0));
	cr_assert(eq(int, stats_report_add_pass(r, &p1), 0));
	cr_assert(eq(int, stats_report_add_timeline(r, &t0), 0));
	cr_assert(eq(int, stats_report_add_timeline(r, &t1), 0));
	cr_assert(eq(int, stats_report_set_extra_u64(r, "link_mbps", 10000), 0));
	cr_assert(eq(int, stats_report_set_extra_double(r, "cpu_pct", 37.5), 0));
}

static void fill_destination(struct stats_report *r)
{
	struct stats_timeline_row t0 = { 1510, "complete", 5 << 20, 8192, 262144, 19000 };
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
	struct json_val v;
	char *text;

	fill_source(&r);
	text = capture_report(&r);
	parse_text(text, &v);

	expect_str(&v, "side", "source");
	expect_str(&v, "mode", "hybrid");
	expect_str(&v, "result", "ok");
	cr_assert(eq(ptr, (void *)json_get(&v, "error"), NULL), "no error when ok");
	expect_str(&v, "integrity", "skipped");
	expect_str(&v, "dirty_logging", "uffd-wp-async");
	expect_str(&v, "guest.backend", "synth");
	cr_assert(eq(u64, path_u64(&v, "guest.pages"), 262144));
	cr_assert(eq(u64, path_u64(&v, "guest.page_size"), 4096));
	cr_assert(eq(u64, path_u64(&v, "guest.vcpus"), 4));
	expect_str(&v, "guest.workload", "uniform:rate=20000");
	cr_assert(eq(dbl, path_dbl(&v, "total_ms"), 1500.75));
	cr_assert(eq(dbl, path_dbl(&v, "downtime_ms"), 12.5));
	cr_assert(eq(u64, path_u64(&v, "bytes.total"), 1200000000));
	cr_assert(eq(u64, path_u64(&v, "bytes.precopy"), 1000000000));
	cr_assert(eq(u64, path_u64(&v, "bytes.stopcopy"), 0));
	cr_assert(eq(u64, path_u64(&v, "bytes.push"), 150000000));
	cr_assert(eq(u64, path_u64(&v, "bytes.pull"), 50000000));
	cr_assert(eq(u64, path_u64(&v, "pages.sent"), 290000));
	cr_assert(eq(u64, path_u64(&v, "pages.zero"), 1000));
	cr_assert(eq(u64, path_u64(&v, "pages.duplicate"), 11));
	cr_assert(eq(u64, path_u64(&v, "pages.pulled"), 0));
	cr_assert(eq(u64, path_u64(&v, "pages.pushed"), 0));
	cr_assert(eq(sz, json_len(json_get(&v, "passes")), 2));
	cr_assert(eq(u64, path_u64(&v, "passes[1].pass"), 1));
	cr_assert(eq(u64, path_u64(&v, "passes[0].pages_sent"), 262144));
	cr_assert(eq(u64, path_u64(&v, "passes[0].pages_dirtied"), 30000));
	cr_assert(eq(dbl, path_dbl(&v, "passes[0].ms"), 850.5));
	cr_assert(eq(dbl, path_dbl(&v, "passes[0].mbps"), 1234.25));
	cr_assert(eq(dbl, path_dbl(&v, "passes[0].dirty_rate_pps"), 35000.5));
	expect_str(&v, "switchover.reason", "max_passes");
	cr_assert(eq(u64, path_u64(&v, "switchover.stale_pages"), 9000));
	cr_assert(eq(u64, path_u64(&v, "faults.count"), 0));
	/* Not measured on the source: present, and null. */
	cr_assert(eq(int, json_path_double(&v, "faults.latency_us.p50", &(double){0}), -ENODATA));
	cr_assert(eq(int, json_path_double(&v, "faults.latency_us.p90", &(double){0}), -ENODATA));
	cr_assert(eq(int, json_path_double(&v, "faults.latency_us.p99", &(double){0}), -ENODATA));
	cr_assert(eq(int, json_path_double(&v, "faults.latency_us.max", &(double){0}), -ENODATA));
	cr_assert(eq(int, json_path_double(&v, "faults.blocktime_ms", &(double){0}), -ENODATA));
	cr_assert(eq(sz, json_len(json_get(&v, "timeline")), 2));
	cr_assert(eq(dbl, path_dbl(&v, "timeline[1].t_ms"), 10));
	expect_str(&v, "timeline[1].phase", "postcopy");
	cr_assert(eq(u64, path_u64(&v, "timeline[1].bytes_bulk"), 1 << 20));
	cr_assert(eq(u64, path_u64(&v, "timeline[1].bytes_urgent"), 4096));
	cr_assert(eq(u64, path_u64(&v, "timeline[1].pages_present"), 0));
	cr_assert(eq(dbl, path_dbl(&v, "timeline[1].guest_ops_per_s"), 15000.5));
	cr_assert(eq(dbl, path_dbl(&v, "guest_ops_per_s_before"), 20000));
	cr_assert(eq(ptr, (void *)json_get(&v, "guest_ops_per_s_after"), NULL));
	cr_assert(eq(u64, path_u64(&v, "link_mbps"), 10000));
	cr_assert(eq(dbl, path_dbl(&v, "cpu_pct"), 37.5));
	/* A table row is one line. */
	cr_assert(not(eq(ptr, strstr(text, "{\"pass\": 1, \"pages_sent\": 30000"), NULL)), "%s", text);

	json_val_free(&v);
	free(text);
	stats_report_free(&r);
}

Test(report, failure_and_fault_latency)
{
	struct stats_report r;
	struct json_val v;
	char *text;

	fill_destination(&r);
	stats_report_set_result(&r, STATS_RESULT_FAILED, "source closed the %s channel", "urgent");
	text = capture_report(&r);
	parse_text(text, &v);
	expect_str(&v, "side", "destination");
	expect_str(&v, "result", "failed");
	expect_str(&v, "error", "source closed the urgent channel");
	expect_str(&v, "integrity", "ok");
	cr_assert(eq(int, json_path(&v, "switchover.reason")->type, JSON_NULL));
	/* 1..1000 us: p50 = 500, p99 = 990, within the histogram's bound. */
	cr_assert(le(dbl, fabs(path_dbl(&v, "faults.latency_us.p50") - 500) / 500,
		     STATS_HIST_REL_ERR));
	cr_assert(le(dbl, fabs(path_dbl(&v, "faults.latency_us.p90") - 900) / 900,
		     STATS_HIST_REL_ERR));
	cr_assert(le(dbl, fabs(path_dbl(&v, "faults.latency_us.p99") - 990) / 990,
		     STATS_HIST_REL_ERR));
	cr_assert(eq(dbl, path_dbl(&v, "faults.latency_us.max"), 1000));
	cr_assert(eq(dbl, path_dbl(&v, "faults.blocktime_ms"), 210.5));
	json_val_free(&v);
	free(text);
	stats_report_free(&r);

	/* A report nobody finished does not claim success. */
	stats_report_init(&r, STATS_SIDE_SOURCE);
	text = capture_report(&r);
	parse_text(text, &v);
	expect_str(&v, "result", "failed");
	expect_str(&v, "error", "migration did not finish");
	json_val_free(&v);
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
