#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cmd.h"
#include "profile.h"

static void sleep_until_ns(uint64_t t)
{
	struct timespec ts = { .tv_sec = (time_t)(t / 1000000000ull),
			       .tv_nsec = (long)(t % 1000000000ull) };

	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
		;
}

/* dirty_collect's bitmap: npages bits in 64-bit words. */
static size_t bitmap_words(uint64_t npages)
{
	return (size_t)((npages + 63) / 64);
}

static uint64_t bitmap_weight(const uint64_t *b, uint64_t npages)
{
	uint64_t n = 0;

	for (size_t w = 0; w < bitmap_words(npages); w++)
		n += (uint64_t)__builtin_popcountll(b[w]);
	return n;
}

static int fail(struct profile *pr, struct hmig_guest *g, int rc)
{
	snprintf(pr->err, sizeof(pr->err), "%s", hmig_guest_error(g));
	return rc;
}

static int measure(const struct profile_opts *o, struct profile *pr, struct hmig_guest *g,
		   uint64_t *dirty)
{
	struct hmig_guest_stats st0, prev, cur;
	uint64_t start = mono_ns(), tick = start;
	double collect_sum = 0;
	uint64_t dirtied_sum = 0;

	if (o->rows_out)
		fprintf(o->rows_out, "%9s %12s %14s %11s %14s\n", "t_ms", "dirtied",
			"dirty_pages/s", "collect_ms", "guest_ops/s");
	g->ops->stats(g, &st0);
	prev = st0;
	for (size_t i = 0; i < pr->nrows; i++) {
		tick += o->interval_ms * 1000000ull;
		sleep_until_ns(tick);
		memset(dirty, 0, bitmap_words(pr->geo.npages) * sizeof(*dirty));
		uint64_t c0 = mono_ns();
		int64_t n = g->ops->dirty_collect(g, dirty, 0);
		uint64_t c1 = mono_ns();
		if (n < 0)
			return fail(pr, g, (int)n);
		g->ops->stats(g, &cur);
		struct profile_row *r = &pr->rows[i];
		*r = (struct profile_row){
			.t_ms = ms_of_ns(c1 - start),
			.dirtied = bitmap_weight(dirty, pr->geo.npages),
			.collect_ms = ms_of_ns(c1 - c0),
			.ops_per_s = (double)(cur.ops - prev.ops) * 1000.0 / (double)o->interval_ms,
		};
		prev = cur;
		collect_sum += r->collect_ms;
		dirtied_sum += r->dirtied;
		if (r->collect_ms > pr->collect_max_ms)
			pr->collect_max_ms = r->collect_ms;
		if (o->rows_out)
			fprintf(o->rows_out, "%9.0f %12lu %14.0f %11.3f %14.0f\n", r->t_ms,
				(unsigned long)r->dirtied,
				(double)r->dirtied * 1000.0 / (double)o->interval_ms,
				r->collect_ms, r->ops_per_s);
	}
	double secs = (double)(mono_ns() - start) / 1e9;
	pr->ops_logged = (double)(cur.ops - st0.ops) / secs;
	pr->writes_logged = (double)(cur.writes - st0.writes) / secs;
	pr->collect_mean_ms = collect_sum / (double)pr->nrows;
	pr->dirty_rate_pps = (double)dirtied_sum / secs;
	return 0;
}

int profile_run(const struct profile_opts *o, struct profile *pr)
{
	struct hmig_guest *g;
	uint64_t *dirty = NULL;
	int rc;

	memset(pr, 0, sizeof(*pr));
	uint64_t t0 = mono_ns();
	rc = hmig_synth_open(&o->p, &g, pr->err);
	if (rc)
		return rc;
	pr->fill_ms = ms_of_ns(mono_ns() - t0);
	g->ops->geometry(g, &pr->geo);
	pr->nrows = (size_t)(o->seconds * 1000 / (double)o->interval_ms);
	if (!pr->nrows)
		pr->nrows = 1;
	pr->rows = calloc(pr->nrows, sizeof(*pr->rows));
	dirty = calloc(bitmap_words(pr->geo.npages), sizeof(*dirty));
	if (!pr->rows || !dirty) {
		rc = -ENOMEM;
		snprintf(pr->err, sizeof(pr->err), "out of memory");
		goto out;
	}
	if ((rc = g->ops->run(g)) < 0) {
		fail(pr, g, rc);
		goto out;
	}
	rc = g->ops->dirty_start(g, o->dirty);
	if (rc < 0) {
		fail(pr, g, rc);
		goto out;
	}
	pr->mode = hmig_dirty_mode_name(rc);
	if (o->rows_out)
		fprintf(o->rows_out, "dirty logging: %s\n\n", pr->mode);
	if ((rc = measure(o, pr, g, dirty)) < 0)
		goto out;
	if ((rc = g->ops->dirty_stop(g)) < 0) {
		fail(pr, g, rc);
		goto out;
	}
	if (o->baseline) {
		struct hmig_guest_stats a, b;
		uint64_t b0 = mono_ns();

		g->ops->stats(g, &a);
		sleep_until_ns(b0 + (uint64_t)(o->seconds * 1e9));
		g->ops->stats(g, &b);
		pr->ops_unlogged = (double)(b.ops - a.ops) / ((double)(mono_ns() - b0) / 1e9);
	}
	g->ops->pause(g);
	g->ops->stats(g, &pr->final);
	hmig_synth_stats(g, &pr->synth_final);
	uint64_t v0 = mono_ns();
	rc = g->ops->verify(g);
	pr->verify_ms = ms_of_ns(mono_ns() - v0);
	pr->integrity = rc == 0 ? "ok" : rc == -EOPNOTSUPP ? "skipped" : "mismatch";
	if (rc && rc != -EOPNOTSUPP)
		snprintf(pr->err, sizeof(pr->err), "%s", hmig_guest_error(g));
	rc = 0;
out:
	free(dirty);
	g->ops->destroy(g);
	return rc;
}

void profile_free(struct profile *pr)
{
	free(pr->rows);
	pr->rows = NULL;
}
