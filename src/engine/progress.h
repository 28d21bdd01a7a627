/* A migration's live figures: the timeline of the report and the status
 * query (hmig_source_status / hmig_dest_status), one mechanism for both
 * sides.
 *
 * A side describes itself through one callback, `read`, which fills a
 * progress_raw with what it knows at that instant: its state, cumulative
 * counters, the dirty rate.  A sampler thread calls it every sample_ms and
 * appends a timeline row with the rates over the interval; the engine's
 * thread calls progress_event at a state change or a named moment, which
 * appends a row with the latest rates; hmig_*_status reads fresh counters
 * and the latest rates.
 *
 * Locking: `read` is always called with p->lock held, from any of those
 * threads.  What it reads is either atomic or changed by its owner only
 * under p->lock (progress_lock): the channels while a lost link is replaced,
 * the page sets while they are made.  The report's timeline is appended to
 * only here, under the lock; the rest of the report is the engine thread's.
 */
#ifndef HMIG_ENGINE_PROGRESS_H
#define HMIG_ENGINE_PROGRESS_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include <hmig/hmig.h>

#include "net/net.h"
#include "stats/report.h"

struct progress_raw {
	const char *phase;
	bool finished;
	uint32_t pass;
	uint64_t guest_pages;
	uint32_t page_size;
	uint64_t pass_pages, pass_sent;
	uint64_t pages_present;    /* STATS_NONE where unknown */
	uint64_t pages_left;       /* STATS_NONE before the switch */
	uint64_t bytes_bulk, bytes_urgent;
	uint64_t pulled;
	uint64_t lat_sum_ns, lat_n; /* destination: served faults, cumulative */
	uint64_t guest_ops;
	bool guest_here;           /* the guest runs on this side now */
	double dirty_rate_pps;     /* NAN where unknown */
	double downtime_ms;        /* NAN until known */
	uint64_t rate_limit_bps;
};

struct progress {
	pthread_mutex_t lock;
	pthread_cond_t wake;      /* progress_stop */
	pthread_t thread;
	bool running, quit;
	int interval_ms;
	void (*read)(void *ctx, struct progress_raw *raw);
	void *ctx;
	struct stats_report *rep;
	uint64_t t0;               /* 0 until progress_start */
	uint64_t t_end;            /* progress_stop: the status's clock stops */
	/* the latest sample: its counters, and the rates that ended at it */
	struct progress_raw prev;
	uint64_t prev_ns;
	struct stats_timeline_row rates;
};

/* Ready for progress_status and progress_event (before any start).
 * 0 or -errno. */
int progress_init(struct progress *p, struct stats_report *rep,
		  void (*read)(void *ctx, struct progress_raw *raw), void *ctx);
/* Frees what init made; stops the sampler first. */
void progress_free(struct progress *p);

/* The migration starts now (t_ms 0, and the report's start_unix_ms); a
 * sampler thread runs when interval_ms > 0.  0 or -errno. */
int progress_start(struct progress *p, int interval_ms);
/* The run is over: stops the sampler (if it runs) and the status's clock;
 * events may still be added. */
void progress_stop(struct progress *p);

/* A timeline row for a named moment, now. */
void progress_event(struct progress *p, const char *event);

/* For a side's owner thread, around changes `read` must not see half-done. */
void progress_lock(struct progress *p);
void progress_unlock(struct progress *p);

/* The status now: fresh counters, the latest sample's rates. */
void progress_status(struct progress *p, struct hmig_status *st, size_t size);

/* A side's byte counts over every link its migration had: a recovery
 * replaces the channels, whose counters start again at zero, so what a lost
 * link carried is kept here.  `live` says the pair may be read; it changes
 * under the progress lock (link_up / link_down), so `read` may count from
 * any thread, and the owner's thread at any time. */
struct link_bytes {
	bool sent;          /* count bytes sent (source) or received (destination) */
	bool live;
	uint64_t carried[2]; /* NET_BULK, NET_URGENT */
};

uint64_t link_bytes(const struct link_bytes *lb, const struct net_pair *pair, enum net_kind k);
/* The pair is open: counted from now on.  Under the lock it takes. */
void link_up(struct link_bytes *lb, struct progress *p);
/* The pair is about to close: what it carried is kept. */
void link_down(struct link_bytes *lb, struct progress *p, const struct net_pair *pair);

#endif
