/* The timeline sampler and the status query (engine/progress.h). */
#include <errno.h>
#include <math.h>
#include <string.h>

#include "common/clock.h"
#include "engine/progress.h"

int progress_init(struct progress *p, struct stats_report *rep,
		  void (*read)(void *ctx, struct progress_raw *raw), void *ctx)
{
	pthread_condattr_t ca;
	int rc;

	memset(p, 0, sizeof(*p));
	p->rates = (struct stats_timeline_row){
		.bulk_bps = NAN, .urgent_bps = NAN, .pulls_per_s = NAN,
		.pull_latency_us = NAN, .guest_ops_per_s = NAN,
	};
	p->rep = rep;
	p->read = read;
	p->ctx = ctx;
	if ((rc = pthread_mutex_init(&p->lock, NULL)))
		return -rc;
	if ((rc = pthread_condattr_init(&ca)) ||
	    (rc = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC)) ||
	    (rc = pthread_cond_init(&p->wake, &ca))) {
		pthread_mutex_destroy(&p->lock);
		return -rc;
	}
	pthread_condattr_destroy(&ca);
	return 0;
}

void progress_free(struct progress *p)
{
	if (!p->read)
		return; /* never initialised */
	progress_stop(p);
	pthread_cond_destroy(&p->wake);
	pthread_mutex_destroy(&p->lock);
	p->read = NULL;
}

void progress_lock(struct progress *p)
{
	pthread_mutex_lock(&p->lock);
}

void progress_unlock(struct progress *p)
{
	pthread_mutex_unlock(&p->lock);
}

static double per_s(uint64_t now, uint64_t then, double dt_s)
{
	return now >= then ? (double)(now - then) / dt_s : 0;
}

/* Rates from the latest sample to raw (taken at now), into p->rates; raw
 * becomes the latest sample.  Under the lock. */
static void take_rates(struct progress *p, const struct progress_raw *raw, uint64_t now)
{
	const struct progress_raw *a = &p->prev;
	struct stats_timeline_row *r = &p->rates;
	double dt = (double)(now - p->prev_ns) / 1e9;

	if (dt <= 0)
		return;
	r->bulk_bps = per_s(raw->bytes_bulk, a->bytes_bulk, dt);
	r->urgent_bps = per_s(raw->bytes_urgent, a->bytes_urgent, dt);
	r->pulls_per_s = per_s(raw->pulled, a->pulled, dt);
	r->pull_latency_us = raw->lat_n > a->lat_n ? (double)(raw->lat_sum_ns - a->lat_sum_ns) /
							     (double)(raw->lat_n - a->lat_n) / 1e3
						   : NAN;
	r->guest_ops_per_s = raw->guest_here ? per_s(raw->guest_ops, a->guest_ops, dt) : NAN;
	p->prev = *raw;
	p->prev_ns = now;
}

/* A row of raw's counters, the latest rates and the dirty rate of now. */
static void append_row(struct progress *p, const struct progress_raw *raw, uint64_t now,
		       const char *event)
{
	struct stats_timeline_row row = p->rates;

	row.t_ms = clock_ms(now - p->t0);
	snprintf(row.phase, sizeof(row.phase), "%s", raw->phase);
	snprintf(row.event, sizeof(row.event), "%s", event ? event : "");
	row.bytes_bulk = raw->bytes_bulk;
	row.bytes_urgent = raw->bytes_urgent;
	row.pages_present = raw->pages_present;
	row.pages_pulled = raw->pulled;
	row.dirty_rate_pps = raw->dirty_rate_pps;
	stats_report_add_timeline(p->rep, &row); /* out of memory: the row is lost */
}

static void *sampler(void *arg)
{
	struct progress *p = arg;
	uint64_t next = p->t0;

	pthread_mutex_lock(&p->lock);
	while (!p->quit) {
		next += (uint64_t)p->interval_ms * 1000000ull;
		struct timespec ts = { .tv_sec = (time_t)(next / 1000000000ull),
				       .tv_nsec = (long)(next % 1000000000ull) };
		while (!p->quit && pthread_cond_timedwait(&p->wake, &p->lock, &ts) != ETIMEDOUT)
			;
		if (p->quit)
			break;
		struct progress_raw raw;
		uint64_t now = clock_now_ns();

		p->read(p->ctx, &raw);
		take_rates(p, &raw, now);
		append_row(p, &raw, now, NULL);
		/* Fell behind (a stopped process, a loaded host): skip, do not
		 * burst. */
		if (now > next + (uint64_t)p->interval_ms * 1000000ull)
			next = now;
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

int progress_start(struct progress *p, int interval_ms)
{
	struct progress_raw raw;
	int rc;

	pthread_mutex_lock(&p->lock);
	p->t0 = clock_now_ns();
	p->t_end = 0;
	p->rep->start_unix_ms = (double)clock_wall_ns() / 1e6;
	p->read(p->ctx, &raw);
	p->prev = raw;
	p->prev_ns = p->t0;
	p->interval_ms = interval_ms;
	p->quit = false;
	pthread_mutex_unlock(&p->lock);
	if (interval_ms <= 0)
		return 0;
	if ((rc = pthread_create(&p->thread, NULL, sampler, p)))
		return -rc;
	p->running = true;
	return 0;
}

void progress_stop(struct progress *p)
{
	pthread_mutex_lock(&p->lock);
	if (p->t0 && !p->t_end)
		p->t_end = clock_now_ns();
	p->quit = true;
	pthread_cond_signal(&p->wake);
	pthread_mutex_unlock(&p->lock);
	if (!p->running)
		return;
	pthread_join(p->thread, NULL);
	p->running = false;
}

void progress_event(struct progress *p, const char *event)
{
	struct progress_raw raw;
	uint64_t now = clock_now_ns();

	pthread_mutex_lock(&p->lock);
	if (!p->t0) { /* before the start: t_ms 0 */
		p->t0 = now;
		p->prev_ns = now;
	}
	p->read(p->ctx, &raw);
	/* Without a sampler the events are the only samples. */
	if (!p->running)
		take_rates(p, &raw, now);
	append_row(p, &raw, now, event);
	pthread_mutex_unlock(&p->lock);
}

void progress_status(struct progress *p, struct hmig_status *out, size_t size)
{
	struct hmig_status st = { 0 };
	struct progress_raw raw;

	pthread_mutex_lock(&p->lock);
	p->read(p->ctx, &raw);
	snprintf(st.phase, sizeof(st.phase), "%s", raw.phase);
	st.finished = raw.finished;
	st.pass = raw.pass;
	st.elapsed_ms = p->t0 ? clock_ms((p->t_end ? p->t_end : clock_now_ns()) - p->t0) : 0;
	st.guest_pages = raw.guest_pages;
	st.page_size = raw.page_size;
	st.pass_pages = raw.pass_pages;
	st.pass_sent = raw.pass_sent;
	st.pages_present = raw.pages_present == STATS_NONE ? HMIG_UNKNOWN : raw.pages_present;
	st.pages_left = raw.pages_left == STATS_NONE ? HMIG_UNKNOWN : raw.pages_left;
	st.bytes_bulk = raw.bytes_bulk;
	st.bytes_urgent = raw.bytes_urgent;
	st.bulk_bps = p->rates.bulk_bps;
	st.urgent_bps = p->rates.urgent_bps;
	st.dirty_rate_pps = raw.dirty_rate_pps;
	st.pages_pulled = raw.pulled;
	st.pulls_per_s = p->rates.pulls_per_s;
	st.pull_latency_us = p->rates.pull_latency_us;
	st.guest_ops_per_s = raw.guest_here ? p->rates.guest_ops_per_s : NAN;
	st.downtime_ms = raw.downtime_ms;
	st.rate_limit_bps = raw.rate_limit_bps;
	st.eta_ms = NAN;
	if (raw.pass_pages >= raw.pass_sent && st.bulk_bps > 0 && !strcmp(raw.phase, "precopy"))
		st.eta_ms = (double)(raw.pass_pages - raw.pass_sent) * raw.page_size /
			    st.bulk_bps * 1e3;
	pthread_mutex_unlock(&p->lock);
	memset(out, 0, size);
	memcpy(out, &st, size < sizeof(st) ? size : sizeof(st));
}

uint64_t link_bytes(const struct link_bytes *lb, const struct net_pair *pair, enum net_kind k)
{
	struct net_chan_stats st = { 0 };

	if (lb->live)
		net_chan_stats(k == NET_BULK ? &pair->bulk : &pair->urgent, &st);
	return lb->carried[k] + (lb->sent ? st.bytes_sent : st.bytes_recv);
}

void link_up(struct link_bytes *lb, struct progress *p)
{
	pthread_mutex_lock(&p->lock);
	lb->live = true;
	pthread_mutex_unlock(&p->lock);
}

void link_down(struct link_bytes *lb, struct progress *p, const struct net_pair *pair)
{
	pthread_mutex_lock(&p->lock);
	if (lb->live) {
		lb->carried[NET_BULK] = link_bytes(lb, pair, NET_BULK);
		lb->carried[NET_URGENT] = link_bytes(lb, pair, NET_URGENT);
		lb->live = false;
	}
	pthread_mutex_unlock(&p->lock);
}
