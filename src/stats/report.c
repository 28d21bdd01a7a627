#include "stats/report.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "common/esc.h"

/* ---- names -------------------------------------------------------------- */

#define NAME_OF(table, i) \
	((size_t)(i) < sizeof(table) / sizeof(table[0]) ? table[i] : "?")

const char *stats_side_name(enum stats_side s)
{
	static const char *const names[] = { "source", "destination", "merged" };

	return NAME_OF(names, s);
}

const char *stats_result_name(enum stats_result r)
{
	static const char *const names[] = { "ok", "failed", "cancelled" };

	return NAME_OF(names, r);
}

const char *stats_integrity_name(enum stats_integrity i)
{
	static const char *const names[] = { "skipped", "ok", "mismatch" };

	return NAME_OF(names, i);
}

const char *stats_reason_name(enum hmig_reason r)
{
	return r == HMIG_REASON_NONE ? NULL : hmig_reason_name(r);
}

/* Every top-level key this file writes; an extra may not shadow one. */
static const char *const own_keys[] = {
	"side", "mode", "result", "error", "integrity", "dirty_logging",
	"guest", "total_ms", "downtime_ms", "bytes", "pages", "passes",
	"switchover", "faults", "guest_ops_per_s_before",
	"guest_ops_per_s_after", "timeline", "timeline_destination", "start_unix_ms", "security",
};

/* ---- building ----------------------------------------------------------- */

void stats_report_init(struct stats_report *r, enum stats_side side)
{
	memset(r, 0, sizeof(*r));
	r->side = side;
	r->mode = HMIG_MODE_HYBRID;
	r->result = STATS_RESULT_FAILED;
	snprintf(r->error, sizeof(r->error), "migration did not finish");
	r->integrity = STATS_INTEGRITY_SKIPPED;
	r->total_ms = NAN;
	r->downtime_ms = NAN;
	r->faults.latency_us.p50 = NAN;
	r->faults.latency_us.p90 = NAN;
	r->faults.latency_us.p99 = NAN;
	r->faults.latency_us.max = NAN;
	r->faults.blocktime_ms = NAN;
	r->faults.share_ge_1ms = NAN;
	r->start_unix_ms = NAN;
	r->guest_ops_per_s_before = NAN;
	r->guest_ops_per_s_after = NAN;
	/* What a side cannot see is null, not 0: the destination does not know
	 * which pages the source found zero or in which phase bytes were sent,
	 * and the source never sees a fault. */
	if (side == STATS_SIDE_DESTINATION) {
		r->pages.sent = r->pages.zero = STATS_NONE;
		r->bytes.precopy = r->bytes.stopcopy = STATS_NONE;
	} else if (side == STATS_SIDE_SOURCE) {
		r->faults.count = STATS_NONE;
	}
}

void stats_report_free(struct stats_report *r)
{
	free(r->passes);
	free(r->timeline);
	free(r->extras);
	r->passes = NULL;
	r->timeline = NULL;
	r->extras = NULL;
	r->npasses = r->passes_cap = 0;
	r->ntimeline = r->timeline_cap = 0;
	r->nextras = r->extras_cap = 0;
}

void stats_report_set_result(struct stats_report *r, enum stats_result res,
			     const char *fmt, ...)
{
	va_list ap;

	r->result = res;
	r->error[0] = '\0';
	if (res == STATS_RESULT_OK || !fmt)
		return;
	va_start(ap, fmt);
	vsnprintf(r->error, sizeof(r->error), fmt, ap);
	va_end(ap);
}

/* Makes room for `want` elements of `size` in *arr of capacity *cap. */
static int table_reserve(void **arr, size_t *cap, size_t want, size_t size)
{
	size_t ncap = *cap ? *cap : 16;
	void *na;

	if (want <= *cap)
		return 0;
	while (ncap < want) {
		if (ncap > SIZE_MAX / 2 / size)
			return -ENOMEM;
		ncap *= 2;
	}
	na = realloc(*arr, ncap * size);
	if (!na)
		return -ENOMEM;
	*arr = na;
	*cap = ncap;
	return 0;
}

int stats_report_reserve(struct stats_report *r, size_t npasses, size_t ntimeline)
{
	int rc;

	rc = table_reserve((void **)&r->passes, &r->passes_cap, npasses,
			   sizeof(*r->passes));
	if (rc)
		return rc;
	return table_reserve((void **)&r->timeline, &r->timeline_cap, ntimeline,
			     sizeof(*r->timeline));
}

int stats_report_add_pass(struct stats_report *r, const struct stats_pass_row *row)
{
	int rc = table_reserve((void **)&r->passes, &r->passes_cap,
			       r->npasses + 1, sizeof(*r->passes));

	if (rc)
		return rc;
	r->passes[r->npasses++] = *row;
	return 0;
}

int stats_report_add_timeline(struct stats_report *r,
			      const struct stats_timeline_row *row)
{
	int rc = table_reserve((void **)&r->timeline, &r->timeline_cap,
			       r->ntimeline + 1, sizeof(*r->timeline));

	if (rc)
		return rc;
	r->timeline[r->ntimeline] = *row;
	/* A caller that filled phase to the brim gets it terminated. */
	r->timeline[r->ntimeline].phase[STATS_PHASE_LEN - 1] = '\0';
	r->timeline[r->ntimeline].event[STATS_PHASE_LEN - 1] = '\0';
	r->ntimeline++;
	return 0;
}

static int extra_slot(struct stats_report *r, const char *key,
		      struct stats_extra **out)
{
	size_t i, n = strlen(key);
	int rc;

	if (n == 0 || n >= STATS_EXTRA_KEY_LEN)
		return -EINVAL;
	for (i = 0; i < sizeof(own_keys) / sizeof(own_keys[0]); i++)
		if (strcmp(key, own_keys[i]) == 0)
			return -EINVAL;
	for (i = 0; i < r->nextras; i++) {
		if (strcmp(r->extras[i].key, key) == 0) {
			*out = &r->extras[i];
			return 0;
		}
	}
	rc = table_reserve((void **)&r->extras, &r->extras_cap, r->nextras + 1,
			   sizeof(*r->extras));
	if (rc)
		return rc;
	*out = &r->extras[r->nextras++];
	memset(*out, 0, sizeof(**out));
	memcpy((*out)->key, key, n + 1);
	return 0;
}

static int set_extra(struct stats_report *r, const char *key, bool is_u64, bool is_bool,
		     uint64_t u, double d)
{
	struct stats_extra *e;
	int rc = extra_slot(r, key, &e);

	if (rc)
		return rc;
	e->is_u64 = is_u64;
	e->is_bool = is_bool;
	e->u = u;
	e->d = d;
	return 0;
}

int stats_report_set_extra_u64(struct stats_report *r, const char *key, uint64_t v)
{
	return set_extra(r, key, true, false, v, (double)v);
}

int stats_report_set_extra_bool(struct stats_report *r, const char *key, bool v)
{
	return set_extra(r, key, false, true, v, v);
}

int stats_report_set_extra_double(struct stats_report *r, const char *key, double v)
{
	return set_extra(r, key, false, false, 0, v);
}

void stats_report_set_fault_latency(struct stats_report *r,
				    const struct stats_hist *lat_ns)
{
	r->faults.latency_us.p50 = stats_hist_quantile(lat_ns, 0.50) / 1e3;
	r->faults.latency_us.p90 = stats_hist_quantile(lat_ns, 0.90) / 1e3;
	r->faults.latency_us.p99 = stats_hist_quantile(lat_ns, 0.99) / 1e3;
	r->faults.latency_us.max = lat_ns->count ? (double)lat_ns->max / 1e3 : NAN;
	memset(r->faults.hist, 0, sizeof(r->faults.hist));
	r->faults.nhist = 0;
	r->faults.share_ge_1ms = NAN;
	if (!lat_ns->count)
		return;
	uint64_t slow = 0;
	for (unsigned i = 0; i < STATS_HIST_BUCKETS; i++) {
		uint64_t lo, hi, n = lat_ns->buckets[i];

		if (!n)
			continue;
		stats_hist_bucket_range(i, &lo, &hi);
		double us = ((double)lo + (double)(hi - lo) / 2) / 1e3;
		unsigned k = 0;

		while (k < STATS_LAT_BUCKETS - 1 && us >= (double)(1ull << k))
			k++;
		r->faults.hist[k] += n;
		if (k + 1 > r->faults.nhist)
			r->faults.nhist = k + 1;
		if (lo >= 1000000)
			slow += n;
	}
	r->faults.share_ge_1ms = (double)slow / (double)lat_ns->count;
}

/* ---- writing ------------------------------------------------------------ */

/* A number; NaN ("not measured") and infinities become null, which jansson
 * would otherwise refuse. */
static json_t *num(double v)
{
	return isfinite(v) ? json_real(v) : json_null();
}

/* jansson's integers are signed 64-bit; no counter gets near 2^63.
 * STATS_NONE, a counter this side does not measure, is null. */
static json_t *count(uint64_t v)
{
	if (v == STATS_NONE)
		return json_null();
	return v <= INT64_MAX ? json_integer((json_int_t)v) : json_real((double)v);
}

/* A string the report always carries.  A workload spec or an error line may
 * quote what a user typed or what the peer sent, so it goes through the
 * peer-text escape (common/esc.h): non-printable bytes and bytes that are
 * not UTF-8 become \xNN, and the report never carries an escape sequence
 * for whoever prints it later. */
static json_t *text(const char *s)
{
	size_t n = strlen(s);
	char *buf = malloc(ESC_MAX(n) + 1);
	json_t *v;

	if (!buf)
		return NULL;
	esc_text(buf, ESC_MAX(n) + 1, s, n);
	v = json_string(buf);
	free(buf);
	return v;
}

/* The document, keys in docs/report.md's order; NULL when out of memory. */
static json_t *report_doc(const struct stats_report *r)
{
	const char *reason = stats_reason_name(r->switchover.reason);
	json_t *doc, *passes = json_array(), *timeline = json_array();
	int rc = passes && timeline ? 0 : -1;

	for (size_t i = 0; !rc && i < r->npasses; i++) {
		const struct stats_pass_row *p = &r->passes[i];

		rc = json_array_append_new(passes, json_pack("{s:I,s:o,s:o,s:o,s:o,s:o}",
			"pass", (json_int_t)p->pass, "pages_sent", count(p->pages_sent),
			"pages_dirtied", count(p->pages_dirtied), "ms", num(p->ms),
			"mbps", num(p->mbps), "dirty_rate_pps", num(p->dirty_rate_pps)));
	}
	for (size_t i = 0; !rc && i < r->ntimeline; i++) {
		const struct stats_timeline_row *t = &r->timeline[i];

		rc = json_array_append_new(timeline, json_pack(
			"{s:o,s:o,s:o*,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o}",
			"t_ms", num(t->t_ms), "phase", text(t->phase),
			"event", t->event[0] ? text(t->event) : json_null(),
			"bytes_bulk", count(t->bytes_bulk), "bytes_urgent", count(t->bytes_urgent),
			"bulk_bps", num(t->bulk_bps), "urgent_bps", num(t->urgent_bps),
			"pages_present", count(t->pages_present),
			"pages_pulled", count(t->pages_pulled), "pulls_per_s", num(t->pulls_per_s),
			"pull_latency_us", num(t->pull_latency_us),
			"dirty_rate_pps", num(t->dirty_rate_pps),
			"guest_ops_per_s", num(t->guest_ops_per_s)));
	}
	json_t *hist = json_array();
	for (unsigned k = 0; hist && !rc && k < r->faults.nhist; k++)
		rc = json_array_append_new(hist, count(r->faults.hist[k]));
	if (!hist)
		rc = -1;
	/* "O": passes and timeline are kept by the caller's references too. */
	doc = rc ? NULL : json_pack(
		"{s:s,s:s,s:s,s:o*,s:s,s:o*,"
		"s:{s:o,s:o,s:o,s:I,s:o},s:o,s:o,"
		"s:{s:o,s:o,s:o,s:o,s:o},s:{s:o,s:o,s:o,s:o,s:o},s:O,"
		"s:{s:o,s:o},s:{s:o,s:{s:o,s:o,s:o,s:o},s:o,s:O,s:o},"
		"s:o*,s:o*,s:o,s:O}",
		"side", stats_side_name(r->side), "mode", hmig_mode_name(r->mode),
		"result", stats_result_name(r->result),
		"error", r->result == STATS_RESULT_OK ? NULL :
			 text(r->error[0] ? r->error : stats_result_name(r->result)),
		"integrity", stats_integrity_name(r->integrity),
		"dirty_logging", r->dirty_logging[0] ? text(r->dirty_logging) : json_null(),
		"guest", "backend", text(r->guest.backend), "pages", count(r->guest.pages),
		"page_size", count(r->guest.page_size), "vcpus", (json_int_t)r->guest.vcpus,
		"workload", text(r->guest.workload),
		"total_ms", num(r->total_ms), "downtime_ms", num(r->downtime_ms),
		"bytes", "total", count(r->bytes.total), "precopy", count(r->bytes.precopy),
		"stopcopy", count(r->bytes.stopcopy), "push", count(r->bytes.push),
		"pull", count(r->bytes.pull),
		"pages", "sent", count(r->pages.sent), "zero", count(r->pages.zero),
		"duplicate", count(r->pages.duplicate), "pulled", count(r->pages.pulled),
		"pushed", count(r->pages.pushed),
		"passes", passes,
		"switchover", "reason", reason ? json_string(reason) : json_null(),
		"stale_pages", count(r->switchover.stale_pages),
		"faults", "count", count(r->faults.count),
		"latency_us", "p50", num(r->faults.latency_us.p50),
		"p90", num(r->faults.latency_us.p90), "p99", num(r->faults.latency_us.p99),
		"max", num(r->faults.latency_us.max),
		"blocktime_ms", num(r->faults.blocktime_ms),
		"latency_hist_us", hist, "share_ge_1ms", num(r->faults.share_ge_1ms),
		"guest_ops_per_s_before", isnan(r->guest_ops_per_s_before) ? NULL :
					  num(r->guest_ops_per_s_before),
		"guest_ops_per_s_after", isnan(r->guest_ops_per_s_after) ? NULL :
					 num(r->guest_ops_per_s_after),
		"start_unix_ms", num(r->start_unix_ms),
		"timeline", timeline);
	json_decref(hist);
	json_decref(passes);
	json_decref(timeline);
	if (doc && r->security.known) {
		json_t *sec = json_pack("{s:b,s:s?,s:o?,s:o?,s:o,s:b,s:b,s:I}",
					"encrypted", r->security.encrypted,
					"auth", r->security.auth[0] ? r->security.auth : NULL,
					"cipher", r->security.cipher[0] ? text(r->security.cipher) : NULL,
					"peer", r->security.peer[0] ? text(r->security.peer) : NULL,
					"integrity", text(r->security.integrity),
					"ktls", r->security.ktls,
					"ktls_available", r->security.ktls_available,
					"rejected_connections", (json_int_t)r->security.rejected);
		if (!sec || json_object_set_new(doc, "security", sec)) {
			json_decref(doc);
			doc = NULL;
		}
	}
	for (size_t i = 0; doc && i < r->nextras; i++) {
		const struct stats_extra *e = &r->extras[i];

		json_t *v = e->is_bool ? json_boolean(e->u) : e->is_u64 ? count(e->u) : num(e->d);

		if (json_object_set_new(doc, e->key, v)) {
			json_decref(doc);
			doc = NULL;
		}
	}
	return doc;
}

/* Two pretty levels: the top-level keys and the members of guest, bytes,
 * passes, ... each get a line; a pass or timeline row stays on one line, so a
 * report with 5000 timeline rows is 5000 lines, not 40000.  jansson indents
 * every level or none, so the two outer levels are laid out here and each
 * value below them is jansson's one-line form.  15 significant digits: the
 * default 17 writes 43.760373 as 43.760373000000001, and nothing here is
 * measured to a part in 10^15. */
#define REPORT_PRETTY 2
#define DUMP_FLAGS (JSON_ENCODE_ANY | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(15))

static int dump(json_t *v, FILE *f, int level)
{
	bool obj = json_is_object(v);
	size_t n = obj ? json_object_size(v) : json_array_size(v), i = 0;
	const char *key;
	json_t *m;
	int rc = 0;

	if (level >= REPORT_PRETTY || n == 0)
		return json_dumpf(v, f, DUMP_FLAGS) ? -EIO : 0;
	fputc(obj ? '{' : '[', f);
	if (obj) {
		json_object_foreach(v, key, m) {
			json_t *k = json_string(key);

			fprintf(f, "%s\n%*s", i++ ? "," : "", 2 * (level + 1), "");
			if (!k || json_dumpf(k, f, DUMP_FLAGS))
				rc = -EIO;
			json_decref(k);
			fputs(": ", f);
			if (!rc)
				rc = dump(m, f, level + 1);
		}
	} else {
		json_array_foreach(v, i, m) {
			fprintf(f, "%s\n%*s", i ? "," : "", 2 * (level + 1), "");
			if (!rc)
				rc = dump(m, f, level + 1);
		}
	}
	fprintf(f, "\n%*s%c", 2 * level, "", obj ? '}' : ']');
	return rc;
}

int stats_report_write_json(const struct stats_report *r, FILE *f)
{
	json_t *doc = report_doc(r);
	int rc;

	if (!doc)
		return -ENOMEM;
	rc = dump(doc, f, 0);
	json_decref(doc);
	if (fputc('\n', f) == EOF && !rc)
		rc = -EIO;
	if (fflush(f) != 0 && !rc)
		rc = errno ? -errno : -EIO;
	return rc;
}
