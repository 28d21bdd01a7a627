/* Tests for src/engine/config.c: every knob's bounds, through both ways a
 * value gets in (the "-o key=value" parser and the struct the constructors
 * check).  Only the public library is linked: this is what a caller sees. */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>
#include <criterion/parameterized.h>

#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <hmig/hmig.h>

enum ktype { T_U32, T_U64, T_INT, T_DOUBLE, T_ENUM };

/* The ranges as documented (README's knob table, hmig.h), written out here
 * again on purpose: the test states what the table in config.c must say. */
struct knob_case {
	const char *key;
	size_t off;
	enum ktype type;
	double min, max;
	const char *min_text, *max_text; /* enums: the spellings of min and max */
};

#define K(k, t, mn, mx) { #k, offsetof(struct hmig_config, k), t, mn, mx, NULL, NULL }
#define E(k, mn, mx, mnt, mxt) { #k, offsetof(struct hmig_config, k), T_ENUM, mn, mx, mnt, mxt }

static const struct knob_case cases[] = {
	E(mode, HMIG_MODE_PRECOPY, HMIG_MODE_HYBRID, "precopy", "hybrid"),
	K(max_passes, T_U32, 1, 1000),
	K(dirty_threshold_pages, T_U64, 0, 1e15),
	K(downtime_target_ms, T_DOUBLE, 0, 1e7),
	K(byte_budget, T_DOUBLE, 0, 1e6),
	K(min_progress, T_DOUBLE, 0, 1),
	K(precopy_passes, T_U32, 0, 1000),
	K(switch_after_ms, T_DOUBLE, 0, 1e9),
	E(push, HMIG_PUSH_SEQ, HMIG_PUSH_OFF, "seq", "off"),
	K(near_pages, T_U32, 1, 1024),
	K(batch_pages, T_U32, 1, 1024), /* PROTO_MAX_BATCH: a PAGES record's limit */
	K(rate_limit_bps, T_U64, 0, 1e15),
	K(connect_timeout_ms, T_INT, 1, 3.6e6),
	K(accept_timeout_ms, T_INT, 0, 3.6e6),
	K(io_timeout_ms, T_INT, 1, 3.6e6),
	K(recover_timeout_ms, T_INT, 0, 8.64e7),
	K(sample_ms, T_INT, 0, 6e4),
	E(dirty, HMIG_DIRTY_AUTO, HMIG_DIRTY_WP_SYNC, "auto", "sync"),
};

#define NCASES (sizeof(cases) / sizeof(cases[0]))

static void put(struct hmig_config *cfg, const struct knob_case *c, double v)
{
	void *f = (char *)cfg + c->off;
	/* Only an enum's value is converted to int here: a double outside
	 * int's range (1e15, NaN) converted to int is undefined behaviour,
	 * which UBSan (tools/run test's second build) reports. */
	int e = c->type == T_ENUM ? (int)v : 0;

	switch (c->type) {
	case T_U32: *(uint32_t *)f = (uint32_t)v; break;
	case T_U64: *(uint64_t *)f = (uint64_t)v; break;
	case T_INT: *(int *)f = (int)v; break;
	case T_DOUBLE: *(double *)f = v; break;
	case T_ENUM: memcpy(f, &e, sizeof(e)); break;
	}
}

static double get(const struct hmig_config *cfg, const struct knob_case *c)
{
	const void *f = (const char *)cfg + c->off;
	int e;

	switch (c->type) {
	case T_U32: return *(const uint32_t *)f;
	case T_U64: return (double)*(const uint64_t *)f;
	case T_INT: return *(const int *)f;
	case T_DOUBLE: return *(const double *)f;
	case T_ENUM: memcpy(&e, f, sizeof(e)); return e;
	}
	return NAN;
}

/* A config with one knob set directly in the struct: refused by the check
 * and by both constructors with the same line, which names the knob, the
 * range and the value.  The constructors get no guest and no address: the
 * check comes before either is used. */
static void expect_struct_refused(const struct knob_case *c, double v, const char *vtext)
{
	struct hmig_config cfg;
	struct hmig_source *src = (void *)1;
	struct hmig_dest *dst = (void *)1;
	char err[256] = "", err2[256] = "", range[64];

	hmig_config_init(&cfg);
	put(&cfg, c, v);
	cr_assert(eq(int, hmig_config_check(&cfg, err), -EINVAL), "%s = %s passed", c->key, vtext);
	snprintf(range, sizeof(range), "%g to %g", c->min, c->max);
	cr_expect(not(eq(ptr, strstr(err, c->key), NULL)), "no knob name: %s", err);
	cr_expect(not(eq(ptr, strstr(err, range), NULL)), "no range '%s': %s", range, err);
	cr_expect(not(eq(ptr, strstr(err, vtext), NULL)), "no value '%s': %s", vtext, err);
	cr_expect(eq(ptr, strchr(err, '\n'), NULL), "not one line: %s", err);

	cr_assert(eq(int, hmig_source_new(&cfg, NULL, &src, err2), -EINVAL), "%s", c->key);
	cr_expect(eq(ptr, (void *)src, NULL));
	cr_expect(eq(str, err2, err));
	err2[0] = '\0';
	cr_assert(eq(int, hmig_dest_new(&cfg, NULL, NULL, &dst, err2), -EINVAL), "%s", c->key);
	cr_expect(eq(ptr, (void *)dst, NULL));
	cr_expect(eq(str, err2, err));
}

static void expect_struct_ok(const struct knob_case *c, double v)
{
	struct hmig_config cfg;
	char err[256] = "";

	hmig_config_init(&cfg);
	put(&cfg, c, v);
	cr_assert(eq(int, hmig_config_check(&cfg, err), 0), "%s = %g: %s", c->key, v, err);
}

static void expect_text(const struct knob_case *c, const char *text, int want, double value)
{
	struct hmig_config cfg, before;
	char err[256] = "";

	hmig_config_init(&cfg);
	before = cfg;
	int rc = hmig_config_set(&cfg, c->key, text, err);
	cr_assert(eq(int, rc, want), "-o %s=%s: %s", c->key, text, err);
	if (want == 0) {
		cr_expect(eq(dbl, get(&cfg, c), value), "-o %s=%s", c->key, text);
		cr_expect(eq(int, hmig_config_check(&cfg, err), 0), "%s", err);
		return;
	}
	cr_expect(eq(int, memcmp(&cfg, &before, sizeof(cfg)), 0), "refused, yet changed");
	cr_expect(not(eq(ptr, strstr(err, c->key), NULL)), "%s", err);
	cr_expect(not(eq(ptr, strstr(err, text), NULL)), "%s", err);
}

/* Indexes, not the rows: Criterion may run a case in a fresh exec of this
 * binary, where the rows' string pointers would point elsewhere. */
ParameterizedTestParameters(config, every_knob_bounds_both_paths)
{
	static int idx[NCASES];

	for (size_t i = 0; i < NCASES; i++)
		idx[i] = (int)i;
	return cr_make_param_array(int, idx, NCASES);
}

ParameterizedTest(int *i, config, every_knob_bounds_both_paths)
{
	const struct knob_case *c = &cases[*i];
	char lo[40], hi[40], below[40], above[40];
	bool integral = c->type != T_DOUBLE;
	double step = integral ? 1 : c->max / 2;

	/* The bounds themselves are in. */
	expect_struct_ok(c, c->min);
	expect_struct_ok(c, c->max);
	snprintf(lo, sizeof(lo), "%.17g", c->min);
	snprintf(hi, sizeof(hi), "%.17g", c->max);
	expect_text(c, c->min_text ? c->min_text : lo, 0, c->min);
	expect_text(c, c->max_text ? c->max_text : hi, 0, c->max);

	/* One past either bound is out. */
	snprintf(below, sizeof(below), "%.17g", c->min - step);
	snprintf(above, sizeof(above), "%.17g", c->max + step);
	if (!c->min_text) {
		expect_text(c, below, -EINVAL, 0);
		expect_text(c, above, -EINVAL, 0);
	} else {
		expect_text(c, "nonsense", -EINVAL, 0);
	}
	/* Unsigned fields cannot hold a value below 0; every other one can. */
	if (c->min > 0 || c->type == T_INT || c->type == T_DOUBLE || c->type == T_ENUM)
		expect_struct_refused(c, c->min - step, below);
	expect_struct_refused(c, c->max + step, above);

	if (integral && !c->min_text)
		expect_text(c, "2.5", -EINVAL, 0);
	if (c->type == T_DOUBLE) {
		expect_struct_refused(c, NAN, "nan");
		expect_text(c, "nan", -EINVAL, 0);
		expect_text(c, "inf", -EINVAL, 0);
	}
}

/* An unknown key is named, and hmig_config_knob_name lists every knob the
 * table above has: a knob added to config.c without a row here fails this
 * test. */
Test(config, unknown_knob_lists_every_knob)
{
	struct hmig_config cfg;
	char err[256] = "";
	size_t n = 0;

	hmig_config_init(&cfg);
	cr_assert(eq(int, hmig_config_set(&cfg, "max_passes_typo", "1", err), -EINVAL));
	cr_assert(not(eq(ptr, strstr(err, "max_passes_typo"), NULL)), "%s", err);
	for (const char *k; (k = hmig_config_knob_name((unsigned)n)); n++) {
		bool found = false;

		for (size_t i = 0; i < NCASES; i++)
			found |= !strcmp(cases[i].key, k);
		cr_expect(found, "knob '%s' has no row in this test's table", k);
	}
	cr_expect(eq(sz, n, NCASES), "%zu knobs are listed, the table has %zu", n, NCASES);
}

/* hmig_config_knob describes each knob as this file's table does, and says
 * which side it is for: what the source decides is the source's alone. */
Test(config, knob_info_matches_the_table)
{
	static const char *const dest_only[] = { "accept_timeout_ms" };
	static const char *const both[] = { "io_timeout_ms", "recover_timeout_ms", "sample_ms" };
	const struct hmig_knob *k;
	unsigned i;

	for (i = 0; (k = hmig_config_knob(i)); i++) {
		const struct knob_case *c = NULL;
		unsigned want = HMIG_SIDE_SOURCE;

		cr_assert(eq(str, (char *)k->key, (char *)hmig_config_knob_name(i)));
		for (size_t j = 0; j < NCASES; j++)
			if (!strcmp(cases[j].key, k->key))
				c = &cases[j];
		cr_assert(c != NULL, "knob '%s' has no row", k->key);
		cr_expect(eq(dbl, k->min, c->min), "%s", k->key);
		cr_expect(eq(dbl, k->max, c->max), "%s", k->key);
		cr_expect(k->help && k->help[0], "%s has no help", k->key);
		for (size_t j = 0; j < sizeof(dest_only) / sizeof(dest_only[0]); j++)
			if (!strcmp(dest_only[j], k->key))
				want = HMIG_SIDE_DEST;
		for (size_t j = 0; j < sizeof(both) / sizeof(both[0]); j++)
			if (!strcmp(both[j], k->key))
				want = HMIG_SIDE_SOURCE | HMIG_SIDE_DEST;
		cr_expect(eq(u32, k->sides, want), "%s", k->key);
	}
	cr_assert(eq(sz, (size_t)i, NCASES));
}

/* hmig_config_get writes what hmig_config_set takes back: every knob of a
 * config that is not the default's round-trips to the same struct. */
Test(config, get_round_trips_through_set)
{
	struct hmig_config a, b;
	const struct hmig_knob *k;
	char text[64], err[256] = "";

	hmig_config_init(&a);
	for (size_t j = 0; j < NCASES; j++) /* every knob at its maximum */
		put(&a, &cases[j], cases[j].max);
	cr_assert(eq(int, hmig_config_check(&a, err), 0), "%s", err);
	hmig_config_init(&b);
	for (unsigned i = 0; (k = hmig_config_knob(i)); i++) {
		cr_assert(eq(int, hmig_config_get(&a, k->key, text, sizeof(text)), 0), "%s", k->key);
		cr_assert(eq(int, hmig_config_set(&b, k->key, text, err), 0), "%s=%s: %s", k->key,
			  text, err);
	}
	for (size_t j = 0; j < NCASES; j++)
		cr_expect(eq(dbl, get(&b, &cases[j]), get(&a, &cases[j])), "%s", cases[j].key);
	cr_assert(eq(int, hmig_config_get(&a, "mode", text, sizeof(text)), 0));
	cr_assert(eq(str, text, "hybrid"));
	cr_assert(eq(int, hmig_config_get(&a, "nope", text, sizeof(text)), -ENOENT));
	cr_assert(eq(int, hmig_config_get(&a, "mode", text, 3), -ENOSPC));
}

Test(config, defaults_pass_the_check)
{
	struct hmig_config cfg;
	char err[256] = "";

	hmig_config_init(&cfg);
	cr_assert(eq(int, hmig_config_check(&cfg, err), 0), "%s", err);
	cr_expect(eq(u32, cfg.precopy_passes, 1), "hmig.h documents 1");
}

/* The case the issue was filed for: a zeroed batch would write past the
 * source's batch array. */
Test(config, batch_pages_zero_is_refused_by_the_constructor)
{
	struct hmig_config cfg;
	struct hmig_source *src = NULL;
	char err[256] = "";

	hmig_config_init(&cfg);
	cfg.batch_pages = 0;
	cr_assert(eq(int, hmig_source_new(&cfg, NULL, &src, err), -EINVAL));
	cr_expect(eq(str, err, "bad value for batch_pages: 0 (pages per PAGES record; 1 to 1024)"));
}

/* Secure by default: a config with no credentials and no insecure is
 * refused by both constructors, with the remedy; so is one with both. */
Test(config, no_credentials_is_refused_naming_the_remedy)
{
	struct hmig_config cfg;
	struct hmig_source *src;
	struct hmig_dest *dst;
	char err[256];

	hmig_config_init(&cfg);
	cr_assert(eq(int, cfg.insecure, 0));
	cr_assert(eq(int, hmig_source_new(&cfg, NULL, &src, err), -EINVAL));
	cr_expect(not(eq(ptr, strstr(err, "--tls-psk"), NULL)), "%s", err);
	cr_expect(not(eq(ptr, strstr(err, "--insecure"), NULL)), "%s", err);
	cr_assert(eq(int, hmig_dest_new(&cfg, NULL, "127.0.0.1:0", &dst, err), -EINVAL));
	cr_expect(not(eq(ptr, strstr(err, "hmig keygen"), NULL)), "%s", err);
	cfg.tls_psk = "/nonexistent";
	cfg.tls_creds = "/nonexistent";
	cr_assert(eq(int, hmig_dest_new(&cfg, NULL, "127.0.0.1:0", &dst, err), -EINVAL));
	cr_expect(not(eq(ptr, strstr(err, "use one"), NULL)), "%s", err);
}
