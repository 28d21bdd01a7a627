#include "stats/report.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

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

const char *stats_reason_name(enum stats_reason r)
{
	static const char *const names[] = {
		NULL, "converged", "max_passes", "no_progress", "byte_budget",
		"forced",
	};

	return NAME_OF(names, r);
}

/* Every top-level key this file writes; an extra may not shadow one. */
static const char *const own_keys[] = {
	"side", "mode", "result", "error", "integrity", "dirty_logging",
	"guest", "total_ms", "downtime_ms", "bytes", "pages", "passes",
	"switchover", "faults", "guest_ops_per_s_before",
	"guest_ops_per_s_after", "timeline", "timeline_destination",
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
	r->guest_ops_per_s_before = NAN;
	r->guest_ops_per_s_after = NAN;
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

int stats_report_set_extra_u64(struct stats_report *r, const char *key, uint64_t v)
{
	struct stats_extra *e;
	int rc = extra_slot(r, key, &e);

	if (rc)
		return rc;
	e->is_u64 = true;
	e->u = v;
	e->d = (double)v;
	return 0;
}

int stats_report_set_extra_double(struct stats_report *r, const char *key, double v)
{
	struct stats_extra *e;
	int rc = extra_slot(r, key, &e);

	if (rc)
		return rc;
	e->is_u64 = false;
	e->u = 0;
	e->d = v;
	return 0;
}

void stats_report_set_fault_latency(struct stats_report *r,
				    const struct stats_hist *lat_ns)
{
	r->faults.latency_us.p50 = stats_hist_quantile(lat_ns, 0.50) / 1e3;
	r->faults.latency_us.p90 = stats_hist_quantile(lat_ns, 0.90) / 1e3;
	r->faults.latency_us.p99 = stats_hist_quantile(lat_ns, 0.99) / 1e3;
	r->faults.latency_us.max = lat_ns->count ? (double)lat_ns->max / 1e3 : NAN;
}

/* ---- writing ------------------------------------------------------------ */

/* Two pretty levels: the top-level keys and the members of guest, bytes,
 * passes, ... each get a line; a pass or timeline row stays on one line, so a
 * report with 5000 timeline samples is 5000 lines, not 40000. */
#define REPORT_PRETTY 2

static int finish_file(struct json_writer *w, FILE *f)
{
	int rc = json_writer_finish(w);

	if (fflush(f) != 0 && rc == 0)
		rc = errno ? -errno : -EIO;
	return rc;
}

int stats_report_write_json(const struct stats_report *r, FILE *f)
{
	struct json_writer w;
	const char *reason = stats_reason_name(r->switchover.reason);
	size_t i;

	json_writer_init(&w, f, REPORT_PRETTY);
	json_obj_begin(&w);
	json_kv_str(&w, "side", stats_side_name(r->side));
	json_kv_str(&w, "mode", hmig_mode_name(r->mode));
	json_kv_str(&w, "result", stats_result_name(r->result));
	if (r->result != STATS_RESULT_OK)
		json_kv_str(&w, "error", r->error[0] ? r->error :
			    stats_result_name(r->result));
	json_kv_str(&w, "integrity", stats_integrity_name(r->integrity));
	if (r->dirty_logging[0])
		json_kv_str(&w, "dirty_logging", r->dirty_logging);

	json_key(&w, "guest");
	json_obj_begin(&w);
	json_kv_str(&w, "backend", r->guest.backend);
	json_kv_u64(&w, "pages", r->guest.pages);
	json_kv_u64(&w, "page_size", r->guest.page_size);
	json_kv_u64(&w, "vcpus", r->guest.vcpus);
	json_kv_str(&w, "workload", r->guest.workload);
	json_obj_end(&w);

	json_kv_double(&w, "total_ms", r->total_ms);
	json_kv_double(&w, "downtime_ms", r->downtime_ms);

	json_key(&w, "bytes");
	json_obj_begin(&w);
	json_kv_u64(&w, "total", r->bytes.total);
	json_kv_u64(&w, "precopy", r->bytes.precopy);
	json_kv_u64(&w, "stopcopy", r->bytes.stopcopy);
	json_kv_u64(&w, "push", r->bytes.push);
	json_kv_u64(&w, "pull", r->bytes.pull);
	json_obj_end(&w);

	json_key(&w, "pages");
	json_obj_begin(&w);
	json_kv_u64(&w, "sent", r->pages.sent);
	json_kv_u64(&w, "zero", r->pages.zero);
	json_kv_u64(&w, "duplicate", r->pages.duplicate);
	json_kv_u64(&w, "pulled", r->pages.pulled);
	json_kv_u64(&w, "pushed", r->pages.pushed);
	json_obj_end(&w);

	json_key(&w, "passes");
	json_arr_begin(&w);
	for (i = 0; i < r->npasses; i++) {
		const struct stats_pass_row *p = &r->passes[i];

		json_obj_begin(&w);
		json_kv_u64(&w, "pass", p->pass);
		json_kv_u64(&w, "pages_sent", p->pages_sent);
		json_kv_u64(&w, "pages_dirtied", p->pages_dirtied);
		json_kv_double(&w, "ms", p->ms);
		json_kv_double(&w, "mbps", p->mbps);
		json_kv_double(&w, "dirty_rate_pps", p->dirty_rate_pps);
		json_obj_end(&w);
	}
	json_arr_end(&w);

	json_key(&w, "switchover");
	json_obj_begin(&w);
	json_key(&w, "reason");
	if (reason)
		json_put_str(&w, reason);
	else
		json_put_null(&w);
	json_kv_u64(&w, "stale_pages", r->switchover.stale_pages);
	json_obj_end(&w);

	json_key(&w, "faults");
	json_obj_begin(&w);
	json_kv_u64(&w, "count", r->faults.count);
	json_key(&w, "latency_us");
	json_obj_begin(&w);
	json_kv_double(&w, "p50", r->faults.latency_us.p50);
	json_kv_double(&w, "p90", r->faults.latency_us.p90);
	json_kv_double(&w, "p99", r->faults.latency_us.p99);
	json_kv_double(&w, "max", r->faults.latency_us.max);
	json_obj_end(&w);
	json_kv_double(&w, "blocktime_ms", r->faults.blocktime_ms);
	json_obj_end(&w);

	if (!isnan(r->guest_ops_per_s_before))
		json_kv_double(&w, "guest_ops_per_s_before", r->guest_ops_per_s_before);
	if (!isnan(r->guest_ops_per_s_after))
		json_kv_double(&w, "guest_ops_per_s_after", r->guest_ops_per_s_after);

	json_key(&w, "timeline");
	json_arr_begin(&w);
	for (i = 0; i < r->ntimeline; i++) {
		const struct stats_timeline_row *t = &r->timeline[i];

		json_obj_begin(&w);
		json_kv_double(&w, "t_ms", t->t_ms);
		json_kv_str(&w, "phase", t->phase);
		json_kv_u64(&w, "bytes_bulk", t->bytes_bulk);
		json_kv_u64(&w, "bytes_urgent", t->bytes_urgent);
		json_kv_u64(&w, "pages_present", t->pages_present);
		json_kv_double(&w, "guest_ops_per_s", t->guest_ops_per_s);
		json_obj_end(&w);
	}
	json_arr_end(&w);

	for (i = 0; i < r->nextras; i++) {
		const struct stats_extra *e = &r->extras[i];

		if (e->is_u64)
			json_kv_u64(&w, e->key, e->u);
		else
			json_kv_double(&w, e->key, e->d);
	}
	json_obj_end(&w);
	return finish_file(&w, f);
}
