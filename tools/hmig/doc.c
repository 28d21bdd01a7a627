#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "doc.h"

static int doc_err(char *err, int rc, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int doc_err(char *err, int rc, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, DOC_ERR_LEN, fmt, ap);
	va_end(ap);
	return rc;
}

/* ---- reading ------------------------------------------------------------ */

int doc_parse(const char *text, size_t len, json_t **out, char *err)
{
	json_error_t e;

	*out = NULL;
	if (len > DOC_MAX_BYTES)
		return doc_err(err, -E2BIG, "a report of %zu bytes is over the %zu MiB limit",
			       len, DOC_MAX_BYTES >> 20);
	/* Duplicate keys: the last one wins, as in Python and jq. */
	*out = json_loadb(text, len, 0, &e);
	if (!*out)
		return doc_err(err, -EINVAL, "invalid JSON at byte %d (line %d, column %d): %s",
			       e.position, e.line, e.column, e.text);
	return 0;
}

int doc_load(const char *path, json_t **out, char *err)
{
	FILE *f = fopen(path, "r");
	struct stat st;
	char *buf;
	int rc;

	*out = NULL;
	if (!f)
		return doc_err(err, -errno, "cannot read %s: %s", path, strerror(errno));
	if (fstat(fileno(f), &st) || (size_t)st.st_size > DOC_MAX_BYTES) {
		fclose(f);
		return doc_err(err, -E2BIG, "%s is not a report: over %zu MiB", path,
			       DOC_MAX_BYTES >> 20);
	}
	buf = malloc((size_t)st.st_size + 1);
	if (!buf) {
		fclose(f);
		return doc_err(err, -ENOMEM, "out of memory reading %s", path);
	}
	size_t n = fread(buf, 1, (size_t)st.st_size, f);
	rc = ferror(f) ? -EIO : 0;
	fclose(f);
	if (rc)
		doc_err(err, rc, "cannot read %s", path);
	else
		rc = doc_parse(buf, n, out, err);
	free(buf);
	return rc;
}

/* ---- lookups ------------------------------------------------------------ */

static bool all_digits(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!isdigit((unsigned char)s[i]))
			return false;
	return n > 0;
}

json_t *doc_path(const json_t *root, const char *path)
{
	const json_t *v = root;
	const char *p = path;
	char key[256];

	while (v && *p) {
		size_t n = strcspn(p, ".[");

		if (n) {
			if (n >= sizeof(key))
				return NULL;
			memcpy(key, p, n);
			key[n] = '\0';
			v = json_is_array(v) && all_digits(key, n) ?
			    json_array_get(v, strtoull(key, NULL, 10)) : json_object_get(v, key);
			p += n;
		} else if (*p == '[') {
			size_t d = strspn(p + 1, "0123456789");

			if (!d || p[1 + d] != ']')
				return NULL;
			v = json_array_get(v, strtoull(p + 1, NULL, 10));
			p += d + 2;
		} else {
			return NULL; /* an empty segment: "a..b", ".a" */
		}
		if (*p == '.' && !*++p)
			return NULL; /* a trailing '.' */
	}
	return (json_t *)v;
}

int doc_double(const json_t *root, const char *path, double *out)
{
	const json_t *v = doc_path(root, path);

	if (!v)
		return -ENOENT;
	if (json_is_null(v))
		return -ENODATA;
	if (!json_is_number(v))
		return -EINVAL;
	*out = json_number_value(v);
	return 0;
}

int doc_u64(const json_t *root, const char *path, uint64_t *out)
{
	const json_t *v = doc_path(root, path);
	double d;

	if (!v)
		return -ENOENT;
	if (json_is_null(v))
		return -ENODATA;
	if (json_is_integer(v)) {
		if (json_integer_value(v) < 0)
			return -ERANGE;
		*out = (uint64_t)json_integer_value(v);
		return 0;
	}
	if (!json_is_real(v))
		return -EINVAL;
	/* 5.0 is 5; above 2^53 a double no longer holds every integer. */
	d = json_real_value(v);
	if (d < 0 || d > 9007199254740992.0 || d != floor(d))
		return -ERANGE;
	*out = (uint64_t)d;
	return 0;
}

const char *doc_str(const json_t *root, const char *path)
{
	return json_string_value(doc_path(root, path));
}

/* ---- writing ------------------------------------------------------------ */

json_t *doc_real(double v)
{
	return isfinite(v) ? json_real(v) : json_null();
}

/* 15 significant digits, as the library's reports: jansson's default of 17
 * round-trips every double but writes 43.760373 as 43.760373000000001, and
 * nothing in a report is measured to a part in 10^15. */
int doc_write(const json_t *doc, FILE *f)
{
	int rc = json_dumpf(doc, f, JSON_INDENT(2) | JSON_PRESERVE_ORDER |
				    JSON_REAL_PRECISION(15)) ? -EIO : 0;

	if (fputc('\n', f) == EOF && !rc)
		rc = -EIO;
	if (fflush(f) && !rc)
		rc = errno ? -errno : -EIO;
	return rc;
}

/* ---- merging ------------------------------------------------------------ */

enum merge_kind {
	M_SRC,		/* the source's, else the destination's */
	M_DST,		/* the destination's, else the source's */
	M_SIDE,		/* "merged" */
	M_RESULT,
	M_ERROR,
	M_MAX,		/* the larger number */
	M_TL_SRC,	/* the source's timeline, or [] */
	M_TL_DST,	/* the destination's timeline on the source's clock, or [] */
	M_TL_SHIFT,	/* what M_TL_DST added to each t_ms, or null */
};

struct merge_rule {
	const char *key;
	enum merge_kind kind;
	const struct merge_rule *sub;	/* per-member rules if both are objects */
	size_t nsub;
};

#define NRULES(a) (sizeof(a) / sizeof((a)[0]))

static const struct merge_rule pages_rules[] = {
	{ "sent", M_SRC },
	{ "zero", M_SRC },
	{ "duplicate", M_DST },
	{ "pulled", M_DST },
	{ "pushed", M_DST },
};

/* Order here is the order in the merged document. */
static const struct merge_rule top_rules[] = {
	{ "side", M_SIDE },
	{ "mode", M_SRC },
	{ "result", M_RESULT },
	{ "error", M_ERROR },
	{ "integrity", M_DST },
	{ "dirty_logging", M_SRC },
	{ "guest", M_SRC },
	{ "total_ms", M_MAX },
	{ "downtime_ms", M_SRC },
	{ "bytes", M_SRC },
	{ "pages", M_SRC, pages_rules, NRULES(pages_rules) },
	{ "passes", M_SRC },
	{ "switchover", M_SRC },
	{ "faults", M_DST },
	{ "guest_ops_per_s_before", M_SRC },
	{ "guest_ops_per_s_after", M_DST },
	{ "timeline", M_TL_SRC },
	{ "timeline_destination", M_TL_DST },
	{ "timeline_destination_shift_ms", M_TL_SHIFT },
};

/* The merged document under construction; rc is the first failure. */
struct merge {
	int rc;
};

/* Adds key: v to obj, taking v's reference (v NULL: out of memory). */
static void put_new(struct merge *m, json_t *obj, const char *key, json_t *v)
{
	if (json_object_set_new(obj, key, v) && !m->rc)
		m->rc = -ENOMEM;
}

static bool present(const json_t *v)
{
	return v && !json_is_null(v);
}

/* The preferred value if it is there and not null, else the other one if it
 * is, else whichever exists (a null), else NULL: omit the key. */
static json_t *pick(json_t *pref, json_t *other)
{
	if (present(pref))
		return pref;
	if (present(other))
		return other;
	return pref ? pref : other;
}

static bool known(const struct merge_rule *rules, size_t n, const char *key)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(rules[i].key, key) == 0)
			return true;
	return false;
}

/* Members neither rule table names: the source's, then the destination's,
 * renamed "<key>_destination" where the source has the key too. */
static void copy_unknown(struct merge *m, json_t *out, json_t *s, json_t *d,
			 const struct merge_rule *rules, size_t nrules)
{
	static const char suffix[] = "_destination";
	const char *key;
	json_t *v;

	json_object_foreach(s, key, v)
		if (!known(rules, nrules, key))
			put_new(m, out, key, json_incref(v));
	json_object_foreach(d, key, v) {
		if (known(rules, nrules, key))
			continue;
		if (!json_object_get(s, key)) {
			put_new(m, out, key, json_incref(v));
			continue;
		}
		char *k = malloc(strlen(key) + sizeof(suffix));

		if (!k) {
			m->rc = -ENOMEM;
			return;
		}
		strcpy(k, key);
		strcat(k, suffix);
		put_new(m, out, k, json_incref(v));
		free(k);
	}
}

static json_t *as_obj(json_t *v)
{
	return json_is_object(v) ? v : NULL;
}

static json_t *merge_obj(struct merge *m, json_t *s, json_t *d,
			 const struct merge_rule *rules, size_t n);

static void merge_member(struct merge *m, json_t *out, const struct merge_rule *rule,
			 json_t *sv, json_t *dv)
{
	json_t *v = rule->kind == M_DST ? pick(dv, sv) : pick(sv, dv);

	if (!v)
		return;
	if (rule->sub && (as_obj(sv) || as_obj(dv)))
		put_new(m, out, rule->key, merge_obj(m, as_obj(sv), as_obj(dv), rule->sub,
						     rule->nsub));
	else
		put_new(m, out, rule->key, json_incref(v));
}

static json_t *merge_obj(struct merge *m, json_t *s, json_t *d,
			 const struct merge_rule *rules, size_t n)
{
	json_t *out = json_object();

	if (!out)
		return NULL;
	for (size_t i = 0; i < n; i++)
		merge_member(m, out, &rules[i], json_object_get(s, rules[i].key),
			     json_object_get(d, rules[i].key));
	copy_unknown(m, out, s, d, rules, n);
	return out;
}

enum side_result { SR_ABSENT, SR_OK, SR_CANCELLED, SR_FAILED };

static enum side_result side_result(const json_t *doc)
{
	const char *res;

	if (!doc)
		return SR_ABSENT;
	res = json_string_value(json_object_get(doc, "result"));
	if (res && strcmp(res, "ok") == 0)
		return SR_OK;
	if (res && strcmp(res, "cancelled") == 0)
		return SR_CANCELLED;
	return SR_FAILED;	/* "failed", unknown or missing: not a success */
}

static const char *side_error(const json_t *doc)
{
	const char *e = json_string_value(json_object_get(doc, "error"));

	if (e && e[0])
		return e;
	if (!json_object_get(doc, "result"))
		return "report has no result";
	return "no error message";
}

/* "source: X; destination: Y" for the sides that did not succeed. */
static json_t *error_text(const json_t *s, enum side_result sr, const json_t *d,
			  enum side_result dr)
{
	const char *se = sr > SR_OK ? side_error(s) : NULL;
	const char *de = dr > SR_OK ? side_error(d) : NULL;

	if (se && de)
		return json_sprintf("source: %s; destination: %s", se, de);
	return json_sprintf("%s: %s", se ? "source" : "destination", se ? se : de);
}

/* How far the destination's clock started after the source's (ms), from
 * both sides' wall clocks at their t_ms 0; false when a side lacks one. */
static bool clock_shift(const json_t *src, const json_t *dst, double *shift)
{
	double s, d;

	if (doc_double(src, "start_unix_ms", &s) || doc_double(dst, "start_unix_ms", &d))
		return false;
	*shift = d - s;
	return true;
}

/* A copy of the destination's timeline with `shift` added to each t_ms. */
static json_t *shifted_timeline(const json_t *tl, double shift)
{
	json_t *out = json_deep_copy(tl), *row;
	size_t i;

	json_array_foreach(out, i, row) {
		json_t *t = json_object_get(row, "t_ms");

		if (json_is_number(t))
			json_object_set_new(row, "t_ms", json_real(json_number_value(t) + shift));
	}
	return out;
}

int doc_merge(json_t *src, json_t *dst, FILE *out, char *err)
{
	json_t *doc;
	int rc = doc_merged(src, dst, &doc, err);

	if (rc)
		return rc;
	rc = doc_write(doc, out);
	json_decref(doc);
	if (rc)
		return doc_err(err, rc, "writing the merged report: %s", strerror(-rc));
	return 0;
}

int doc_merged(json_t *src, json_t *dst, json_t **out, char *err)
{
	struct merge m = { 0 };
	enum side_result sr, dr;
	const char *result;
	double shift = 0;
	bool aligned;
	json_t *doc;

	if (!src && !dst)
		return doc_err(err, -EINVAL, "merging reports: neither side has one");
	if ((src && !json_is_object(src)) || (dst && !json_is_object(dst)))
		return doc_err(err, -EINVAL, "merging reports: the %s report is not a JSON object",
			       src && !json_is_object(src) ? "source" : "destination");
	sr = side_result(src);
	dr = side_result(dst);
	aligned = clock_shift(src, dst, &shift);
	if (sr == SR_FAILED || dr == SR_FAILED)
		result = "failed";
	else if (sr == SR_CANCELLED || dr == SR_CANCELLED)
		result = "cancelled";
	else
		result = "ok";

	doc = json_object();
	if (!doc)
		return doc_err(err, -ENOMEM, "merging reports: out of memory");
	for (size_t i = 0; i < NRULES(top_rules); i++) {
		const struct merge_rule *rule = &top_rules[i];
		json_t *sv = json_object_get(src, rule->key);
		json_t *dv = json_object_get(dst, rule->key);

		switch (rule->kind) {
		case M_SRC:
		case M_DST:
			merge_member(&m, doc, rule, sv, dv);
			break;
		case M_SIDE:
			put_new(&m, doc, rule->key, json_string("merged"));
			break;
		case M_RESULT:
			put_new(&m, doc, rule->key, json_string(result));
			break;
		case M_ERROR:
			if (sr > SR_OK || dr > SR_OK)
				put_new(&m, doc, rule->key, error_text(src, sr, dst, dr));
			break;
		case M_MAX:
			if (json_is_number(sv) && json_is_number(dv))
				put_new(&m, doc, rule->key, json_incref(
					json_number_value(sv) >= json_number_value(dv) ? sv : dv));
			else
				merge_member(&m, doc, rule, sv, dv);
			break;
		case M_TL_SRC:
		case M_TL_DST: {
			json_t *tl = json_object_get(rule->kind == M_TL_SRC ? src : dst, "timeline");

			if (!json_is_array(tl))
				put_new(&m, doc, rule->key, json_array());
			else if (rule->kind == M_TL_DST && aligned)
				put_new(&m, doc, rule->key, shifted_timeline(tl, shift));
			else
				put_new(&m, doc, rule->key, json_incref(tl));
			break;
		}
		case M_TL_SHIFT:
			put_new(&m, doc, rule->key, aligned ? json_real(shift) : json_null());
			break;
		}
	}
	copy_unknown(&m, doc, src, dst, top_rules, NRULES(top_rules));
	if (m.rc) {
		json_decref(doc);
		return doc_err(err, m.rc, "merging reports: out of memory");
	}
	*out = doc;
	return 0;
}
