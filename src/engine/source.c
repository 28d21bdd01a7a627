/* The source: SETUP -> PRECOPY(pass 0..n) -> SETTLE -> SWITCHOVER ->
 * STOPCOPY | POSTCOPY -> DONE, and FAILED from anywhere before the
 * destination confirmed the resume, in which case the source guest runs on:
 * nothing is lost.
 *
 * One thread drives it; this file is the algorithm of docs/architecture.md.
 * How pages go out is sender.c's business, which pages the post-copy
 * pusher sends next is src/policy/push.c's, and when pre-copy stops is the
 * stop rule's (src/policy, or the caller's own).
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <hmig/hmig.h>

#include "common/bitmap.h"
#include "common/clock.h"
#include "common/err.h"
#include "common/esc.h"
#include "common/prio.h"
#include "engine/engine.h"
#include "engine/progress.h"
#include "engine/sender.h"
#include "policy/policy.h"
#include "policy/push.h"

enum src_state {
	S_SETUP, S_PRECOPY, S_SETTLE, S_SWITCHOVER, S_STOPCOPY, S_POSTCOPY, S_RECOVERING,
	S_DONE, S_FAILED, S_CANCELLED,
};

static const char *const state_names[] = {
	"setup", "precopy", "settle", "switchover", "stopcopy", "postcopy", "recovering",
	"done", "failed", "cancelled",
};

enum { OWNED, CANCELLING, HANDED };

struct hmig_source {
	struct hmig_config cfg;
	struct hmig_guest *g;
	struct hmig_guest_geometry geo;
	enum src_state state;
	hmig_stop_rule stop_rule;
	void *stop_data;
	struct net_pair net;
	struct net_tls *tls;   /* credentials; NULL: insecure */
	struct rec_buf rx;
	struct sender bulk, urgent; /* pages out on each channel */
	struct sent_log sent;  /* what went out; held: what the destination has */
	uint64_t *moving;      /* every pfn but those the backend never sends */
	uint64_t *dirty;       /* pages to send next: dirtied since their last send */
	uint64_t *todo;        /* the pass being sent (a copy of dirty); scratch */
	uint8_t *heat;         /* per page: passes that found it dirty (saturating) */
	struct push push;      /* post-copy: what to push next (under push_lock) */
	pthread_mutex_t push_lock;
	/* Post-copy: the thread that serves pulls, so that a reply never waits
	 * for a pushed batch being built or encrypted.  It owns the urgent
	 * channel and its sender while it runs. */
	struct {
		pthread_t thread;
		bool running;
		_Atomic bool quit;
		_Atomic int rc;        /* why it stopped, 0 while it serves */
		/* Set by serve(): only then does a failure wake the main
		 * thread's bulk waits.  Before it (waiting for RESUMED) the
		 * main thread meets a broken link on bulk itself, and serve()
		 * looks at rc first. */
		_Atomic bool wake_bulk;
		char err[ERR_LEN];
		struct rec_buf rx;
	} srv;
	_Atomic bool force;
	_Atomic bool paused;   /* we paused the guest: resume it on failure */
	/* The commit (docs/protocol.md): from the moment the source decides to
	 * send COMMIT the guest belongs to the destination and never runs here
	 * again; before it, any failure resumes it here. */
	bool committed;
	bool resumed;          /* RESUMED came: the guest runs there */
	bool dest_done;        /* the destination's DONE came: it holds every page */
	/* The commit and a cancel race (a signal handler cancels while this
	 * thread commits): one compare-and-swap from OWNED decides which won. */
	_Atomic int owner;     /* OWNED, CANCELLING or HANDED */
	char addr[NET_ADDR_TEXT]; /* where the destination listens, for recovery */
	uint64_t session_id;
	int verdict;           /* enum proto_verdict, -1 until one came */
	char verdict_text[PROTO_ERROR_TEXT_MAX + 1];
	uint32_t recoveries;
	double paused_link_ms; /* time spent with the link down after the commit */
	uint64_t resent_after_recovery; /* pages sent before that a recovery found still missing */
	bool postcopy_ok;      /* the destination's HELLO offered PROTO_CAP_POSTCOPY */
	bool logging;          /* dirty logging is on (not with precopy_passes=0) */
	uint64_t t0, t_end, t_pause;
	/* Where the downtime goes: paused, collected, state sent, LOADED
	 * received, RESUMED received (ns, 0 until reached). */
	uint64_t t_paused, t_collected, t_sent, t_loaded, t_resumed;
	uint64_t t_sample;     /* the last look at the dirty log */
	uint64_t sync_token;   /* last SYNC sent */
	uint32_t settle_rounds;
	uint64_t dropped_early; /* pages the destination dropped before the pause */
	uint64_t dropped_late;  /* ... and in the downtime */
	_Atomic uint64_t pulled, pushed;
	uint64_t nmoving;      /* pages that move */
	/* What the status and the timeline read from other threads (the
	 * progress lock guards the channels' replacement, engine/progress.h). */
	struct progress prog;
	struct {
		_Atomic int state;
		_Atomic bool finished;
		_Atomic uint32_t pass;
		_Atomic uint64_t pass_pages, pass_sent;
		_Atomic uint64_t left;      /* after the switch: pages the destination lacks */
		_Atomic double dirty_rate;  /* pages/s, the last look */
		_Atomic double downtime_ms;
		_Atomic uint64_t rate;      /* the bulk cap now (hmig_source_set_rate) */
	} live;
	struct link_bytes bytes; /* sent, over every link */
	struct stats_report rep;
	char err[ERR_LEN];
};

/* Bytes sent on bulk (urgent), over every link this migration had.  The
 * engine's thread, or under the progress lock. */
static uint64_t bulk_bytes(struct hmig_source *s)
{
	return link_bytes(&s->bytes, &s->net, NET_BULK);
}

static uint64_t urgent_bytes(struct hmig_source *s)
{
	return link_bytes(&s->bytes, &s->net, NET_URGENT);
}

/* progress's read: the figures of now, for the timeline and the status. */
static void progress_read(void *ctx, struct progress_raw *r)
{
	struct hmig_source *s = ctx;
	struct hmig_guest_stats gs;

	*r = (struct progress_raw){
		.phase = state_names[atomic_load(&s->live.state)],
		.finished = atomic_load(&s->live.finished),
		.pass = atomic_load(&s->live.pass),
		.guest_pages = s->nmoving,
		.page_size = s->geo.page_size,
		.pass_pages = atomic_load(&s->live.pass_pages),
		.pass_sent = atomic_load(&s->live.pass_sent),
		.pages_present = STATS_NONE,
		.pages_left = atomic_load(&s->live.left),
		.bytes_bulk = bulk_bytes(s),
		.bytes_urgent = urgent_bytes(s),
		.pulled = atomic_load(&s->pulled),
		.guest_here = !atomic_load(&s->paused),
		.dirty_rate_pps = atomic_load(&s->live.dirty_rate),
		.downtime_ms = atomic_load(&s->live.downtime_ms),
		.rate_limit_bps = atomic_load(&s->live.rate),
	};
	if (s->g->ops->stats(s->g, &gs) == 0)
		r->guest_ops = gs.ops;
}

static void timeline(struct hmig_source *s, const char *event)
{
	progress_event(&s->prog, event);
}

/* States change here only, and each change is a timeline row. */
static void set_state(struct hmig_source *s, enum src_state st)
{
	s->state = st;
	atomic_store(&s->live.state, (int)st);
	timeline(s, state_names[st]);
}

/* hmig_source_cancel was called (before the commit). */
static int cancelled(struct hmig_source *s)
{
	if (atomic_load(&s->owner) != CANCELLING)
		return 0;
	return err_setf(s->err, -ECANCELED,
			"cancelled by the operator before the commit: the guest runs here");
}

/* ----------------------------------------------------------------- setup */

int hmig_source_new(const struct hmig_config *cfg, struct hmig_guest *guest,
		    struct hmig_source **out, char *errbuf)
{
	struct hmig_source *s;

	*out = NULL;
	if (hmig_config_check(cfg, errbuf))
		return -EINVAL;
	s = calloc(1, sizeof(*s));
	if (!s)
		return err_setf(errbuf, -ENOMEM, "out of memory");
	s->cfg = *cfg;
	s->g = guest;
	s->stop_rule = hmig_stop_rule_default;
	int rc = eng_tls_load(cfg, false, &s->tls, errbuf);
	if (rc) {
		free(s);
		return rc;
	}
	s->verdict = -1;
	s->bytes.sent = true;
	pthread_mutex_init(&s->push_lock, NULL);
	atomic_store(&s->live.left, STATS_NONE);
	atomic_store(&s->live.dirty_rate, NAN);
	atomic_store(&s->live.downtime_ms, NAN);
	atomic_store(&s->live.rate, cfg->rate_limit_bps);
	guest->ops->geometry(guest, &s->geo);
	s->moving = bitmap_new(s->geo.npages);
	s->dirty = bitmap_new(s->geo.npages);
	s->todo = bitmap_new(s->geo.npages);
	s->heat = calloc(s->geo.npages, 1);
	stats_report_init(&s->rep, STATS_SIDE_SOURCE);
	if (!s->moving || !s->dirty || !s->todo || !s->heat ||
	    progress_init(&s->prog, &s->rep, progress_read, s) ||
	    sent_log_init(&s->sent, s->geo.npages) ||
	    push_init(&s->push, cfg->push, cfg->near_pages, s->geo.npages)) {
		hmig_source_free(s);
		return err_setf(errbuf, -ENOMEM, "out of memory for %lu pages of bookkeeping",
				(unsigned long)s->geo.npages);
	}
	/* Holes and host-owned pages never move (Xen has both): asked once,
	 * kept as the complement, the set every pass-0 and every 'everything'
	 * starts from. */
	int64_t never = guest->ops->pfns_never_sent(guest, s->todo);
	if (never < 0) {
		err_setf(errbuf, (int)never, "%s", hmig_guest_error(guest));
		hmig_source_free(s);
		return (int)never;
	}
	for (uint64_t w = 0; w < BITMAP_WORDS(s->geo.npages); w++)
		s->moving[w] = ~s->todo[w];
	if (s->geo.npages % 64)
		s->moving[BITMAP_WORDS(s->geo.npages) - 1] &= (1ull << (s->geo.npages % 64)) - 1;
	s->nmoving = bitmap_count(s->moving, s->geo.npages);
	*out = s;
	return 0;
}

void hmig_source_set_stop_rule(struct hmig_source *s, hmig_stop_rule rule, void *data)
{
	s->stop_rule = rule ? rule : hmig_stop_rule_default;
	s->stop_data = rule ? data : NULL;
}

/* Connects both channels to s->addr with s->session_id (the first time,
 * or again after a lost link) and sets them up: the bandwidth cap, the send
 * timeouts, a sender on each. */
static int open_channels(struct hmig_source *s, int timeout_ms)
{
	struct net_opts opts = { .peer = "destination", .disable = NET_F_SEND_ZC, .tls = s->tls };
	int rc = net_connect_pair(s->addr, s->session_id, timeout_ms, &opts, &s->net);

	if (rc)
		return err_setf(s->err, rc, "%s", s->net.err);
	eng_report_security(&s->rep, &s->net.bulk);
	/* Live: the status reads it, and hmig_source_set_rate reaches it (the
	 * cap is set under the lock, so that a change cannot fall between). */
	progress_lock(&s->prog);
	net_chan_set_rate(&s->net.bulk, atomic_load(&s->live.rate));
	s->bytes.live = true;
	progress_unlock(&s->prog);
	eng_pair_timeouts(&s->net, s->cfg.io_timeout_ms);
	/* Pushes and pulls are both capped at batch_pages: a reply is one
	 * record, sent and waited for before the next request is read. */
	if ((rc = sender_init(&s->bulk, s->g, &s->geo, &s->net.bulk, &s->sent,
			      s->cfg.batch_pages, s->cfg.io_timeout_ms, s->err)) ||
	    (rc = sender_init(&s->urgent, s->g, &s->geo, &s->net.urgent, &s->sent,
			      PROTO_MAX_BATCH, s->cfg.io_timeout_ms, s->srv.err)))
		return rc == -ENOMEM ? err_setf(s->err, rc, "%s", s->srv.err) : rc;
	return 0;
}

static void close_channels(struct hmig_source *s)
{
	link_down(&s->bytes, &s->prog, &s->net);
	sender_free(&s->bulk);
	sender_free(&s->urgent);
	net_pair_close(&s->net);
}

static int connect_and_hello(struct hmig_source *s, const char *addr)
{
	struct proto_hello ours = {
		.mode = s->cfg.mode,
		.caps = PROTO_CAP_POSTCOPY, /* this side can always serve pulls */
		.geo = s->geo,
	};
	uint8_t buf[PROTO_HDR_LEN + PROTO_HELLO_LEN];
	struct proto_hello peer;
	struct proto_hdr h;
	int rc, n;

	snprintf(s->addr, sizeof(s->addr), "%s", addr);
	s->session_id = ours.session_id = eng_session_id();
	snprintf(ours.backend, sizeof(ours.backend), "%s", s->g->ops->name);
	if ((rc = open_channels(s, s->cfg.connect_timeout_ms)))
		return rc;

	n = proto_hello_encode(buf, sizeof(buf), &ours, s->err);
	if (n < 0)
		return n;
	if ((rc = eng_rec_send(&s->net.bulk, buf, (size_t)n, s->cfg.io_timeout_ms, s->err)))
		return rc;
	rc = eng_rec_read(&s->net.bulk, NULL, s->cfg.io_timeout_ms, "destination", &h, &s->rx,
			  s->err);
	if (rc)
		return rc;
	if (h.type != PROTO_HELLO)
		return err_setf(s->err, -EPROTO, "the destination answered HELLO with %s",
				proto_type_name(h.type));
	if ((rc = proto_hello_decode(&h, s->rx.p, &peer, s->err)) ||
	    (rc = proto_hello_match(&ours, &peer, s->err)))
		return rc;
	/* A destination that cannot leave pages missing after resume: no
	 * post-copy, asked for or switched to (ask_rule then stops and copies). */
	s->postcopy_ok = peer.caps & PROTO_CAP_POSTCOPY;
	stats_report_set_extra_bool(&s->rep, "postcopy_available", s->postcopy_ok);
	if (s->cfg.mode == HMIG_MODE_POSTCOPY && !s->postcopy_ok)
		return err_setf(s->err, -EOPNOTSUPP,
				"post-copy refused: the destination's HELLO lacks PROTO_CAP_POSTCOPY (its '%s' guests cannot run with pages missing): use --mode precopy or hybrid",
				peer.backend);
	return 0;
}

/* ------------------------------------------------------------ sending pages */

/* Sends every page in `set` (npages bits) and waits until the kernel has
 * taken them all.  Returns the page count. */
static int64_t send_set(struct hmig_source *s, const uint64_t *set)
{
	uint64_t n = 0;
	int rc;

	for (uint64_t p = bitmap_next(set, s->geo.npages, 0); p < s->geo.npages;
	     p = bitmap_next(set, s->geo.npages, p + 1)) {
		if ((rc = sender_queue(&s->bulk, p)))
			return rc;
		n++;
	}
	if ((rc = sender_flush(&s->bulk)) || (rc = sender_drain(&s->bulk)))
		return rc;
	return (int64_t)n;
}

static int send_small(struct hmig_source *s, const void *buf, int len)
{
	if (len < 0)
		return len;
	return eng_rec_send(&s->net.bulk, buf, (size_t)len, s->cfg.io_timeout_ms, s->err);
}

/* ---------------------------------------------------------------- passes */

static int collect(struct hmig_source *s, unsigned flags)
{
	int64_t found = s->g->ops->dirty_collect(s->g, s->dirty, flags);

	if (found < 0)
		return err_setf(s->err, (int)found, "%s", hmig_guest_error(s->g));
	return 0;
}

/* Hybrid mode looks at the dirty log while a pass runs, this often (or
 * every SAMPLE_PAGES sent, whichever comes first), so that a guest that
 * rewrites memory faster than pre-copy can ever catch up is switched to
 * post-copy at once instead of after a wasted pass.  A look is one collect:
 * a page-table walk of about 0.3 ms per GiB, 0.3% of a 100 ms interval. */
#define SAMPLE_MS 100
#define SAMPLE_PAGES (64u << 8) /* 64 MiB of 4 KiB pages */

/* Asks the stop rule; the mode has the last word (precopy mode never leaves
 * pages missing on a running guest, whatever a custom rule says), and so
 * does a destination that cannot post-copy. */
static enum hmig_decision ask_rule(struct hmig_source *s, struct hmig_pass_stats *pp,
				   enum hmig_reason *why)
{
	pp->operator_forced = atomic_load(&s->force);
	pp->elapsed_ms = clock_ms(clock_now_ns() - s->t0);
	*why = HMIG_REASON_NONE;
	enum hmig_decision d = s->stop_rule(&s->cfg, pp, why, s->stop_data);
	if (d == HMIG_DECIDE_POSTCOPY && (s->cfg.mode == HMIG_MODE_PRECOPY || !s->postcopy_ok))
		d = HMIG_DECIDE_STOPCOPY;
	return d;
}

/* A look at the dirty log in the middle of a pass that has sent up to (not
 * including) pfn `next`: what the guest rewrote of what went out, and how
 * fast it dirties. */
static int sample(struct hmig_source *s, struct hmig_pass_stats *pp, uint64_t next,
		  uint64_t t_pass, uint64_t bytes_pass, enum hmig_decision *d, enum hmig_reason *why)
{
	uint64_t before = bitmap_count(s->dirty, s->geo.npages), now;
	int rc;

	if ((rc = collect(s, 0)))
		return rc;
	now = clock_now_ns();
	uint64_t dirty = bitmap_count(s->dirty, s->geo.npages);
	double dt = (double)(now - s->t_sample) / 1e9;
	pp->mid_pass = true;
	pp->dirty_pages = dirty;
	pp->redirtied = 0;
	for (uint64_t w = 0; w < next / 64; w++)
		pp->redirtied += (uint64_t)__builtin_popcountll(s->dirty[w]);
	for (uint64_t q = next & ~63ull; q < next; q++)
		pp->redirtied += bitmap_test(s->dirty, q);
	pp->dirty_rate_pps = dt > 0 ? (double)(dirty - before) / dt : 0;
	double pass_s = (double)(now - t_pass) / 1e9;
	pp->bandwidth_bps = pass_s > 0 ? (double)(bulk_bytes(s) - bytes_pass) / pass_s : 0;
	pp->bytes_sent = bulk_bytes(s);
	s->t_sample = now;
	atomic_store(&s->live.dirty_rate, pp->dirty_rate_pps);
	*d = ask_rule(s, pp, why);
	return 0;
}

/* One pass: sends `todo` (in pfn order), then collects what the guest
 * dirtied meanwhile into s->dirty, the next pass's work, and asks the stop
 * rule what comes next.  In hybrid mode the rule is also asked during the
 * pass; when it stops the pass early, what the pass did not send goes back
 * into s->dirty, to be sent after the switch. */
static int run_pass(struct hmig_source *s, uint32_t pass, uint64_t *todo,
		    struct hmig_pass_stats *pp, enum hmig_decision *d)
{
	uint64_t t = clock_now_ns(), b = bulk_bytes(s), n = 0, next = s->geo.npages;
	uint64_t planned = bitmap_count(todo, s->geo.npages), since = 0;
	uint8_t pe[PROTO_HDR_LEN + 24];
	enum hmig_reason why = HMIG_REASON_NONE;
	/* Mid-pass looks only ever switch to post-copy: none without it. */
	bool looks = s->cfg.mode == HMIG_MODE_HYBRID && s->postcopy_ok;
	int rc;

	*d = HMIG_DECIDE_PASS;
	pp->pass = pass;
	pp->pages_planned = planned;
	s->t_sample = t;
	atomic_store(&s->live.pass_sent, 0);
	atomic_store(&s->live.pass_pages, planned);
	atomic_store(&s->live.pass, pass);
	for (uint64_t q = bitmap_next(todo, s->geo.npages, 0); q < s->geo.npages;
	     q = bitmap_next(todo, s->geo.npages, q + 1)) {
		if (looks && since >= SAMPLE_PAGES / 16 &&
		    (since >= SAMPLE_PAGES || clock_now_ns() - s->t_sample >= SAMPLE_MS * 1000000ull)) {
			pp->pages_sent = n;
			if ((rc = sample(s, pp, q, t, b, d, &why)))
				return rc;
			since = 0;
			if (*d != HMIG_DECIDE_PASS) {
				next = q;
				break;
			}
		}
		if (since % 1024 == 0 && (rc = cancelled(s)))
			return rc;
		/* Its content goes out now: a write the last collect saw is in
		 * it, and a later one is logged again (the collect re-armed). */
		bitmap_clear(s->dirty, q);
		if ((rc = sender_queue(&s->bulk, q)))
			return rc;
		n++;
		since++;
		atomic_store_explicit(&s->live.pass_sent, n, memory_order_relaxed);
	}
	if ((rc = sender_flush(&s->bulk)) || (rc = sender_drain(&s->bulk)))
		return rc;
	/* Cut short: the rest of the pass is still to send. */
	for (uint64_t q = bitmap_next(todo, s->geo.npages, next); q < s->geo.npages;
	     q = bitmap_next(todo, s->geo.npages, q + 1))
		bitmap_set(s->dirty, q);
	if ((rc = collect(s, 0)))
		return rc;
	uint64_t dirty = bitmap_count(s->dirty, s->geo.npages);
	for (uint64_t q = bitmap_next(s->dirty, s->geo.npages, 0); q < s->geo.npages;
	     q = bitmap_next(s->dirty, s->geo.npages, q + 1))
		if (s->heat[q] < UINT8_MAX)
			s->heat[q]++;
	double ms = clock_ms(clock_now_ns() - t);
	uint64_t bytes = bulk_bytes(s) - b;

	struct proto_pass_end pend = { .pass = pass, .pages_sent = n, .pages_dirty = dirty };
	if ((rc = send_small(s, pe, proto_pass_end_encode(pe, sizeof(pe), &pend, s->err))))
		return rc;
	struct stats_pass_row row = {
		.pass = pass, .pages_sent = n, .pages_dirtied = dirty, .ms = ms,
		.mbps = ms > 0 ? (double)bytes * 8 / 1e6 / (ms / 1e3) : 0,
		.dirty_rate_pps = ms > 0 ? (double)dirty / (ms / 1e3) : 0,
	};
	stats_report_add_pass(&s->rep, &row);
	atomic_store(&s->live.dirty_rate, row.dirty_rate_pps);
	char phase[32];
	snprintf(phase, sizeof(phase), "pass %u", pass);
	timeline(s, phase);

	if (*d == HMIG_DECIDE_PASS) {
		pp->mid_pass = false;
		pp->pages_sent = n;
		pp->dirty_pages = dirty;
		pp->redirtied = dirty;
		pp->bytes_sent = bulk_bytes(s);
		pp->bandwidth_bps = ms > 0 ? (double)bytes / (ms / 1e3) : 0;
		pp->dirty_rate_pps = ms > 0 ? (double)dirty / (ms / 1e3) : 0;
		*d = ask_rule(s, pp, &why);
	}
	if (*d != HMIG_DECIDE_PASS)
		s->rep.switchover.reason = why;
	return 0;
}

/* Runs passes until the stop rule stops them; returns its decision. */
static int precopy(struct hmig_source *s, enum hmig_decision *decision)
{
	struct hmig_pass_stats pp = {
		.guest_bytes = s->geo.npages * s->geo.page_size,
		.page_size = s->geo.page_size,
	};
	size_t words = BITMAP_WORDS(s->geo.npages);
	int rc;

	set_state(s, S_PRECOPY);
	/* postcopy with precopy_passes=0: nothing moves before the switch, so
	 * nothing the destination holds can go stale.  No dirty log then, and
	 * no collect in the downtime, which for synth is a walk of the whole
	 * guest's page tables (3.5-5 ms at 8 GiB). */
	if (s->cfg.mode == HMIG_MODE_POSTCOPY && !s->cfg.precopy_passes) {
		memcpy(s->dirty, s->moving, words * 8);
		s->rep.switchover.reason = HMIG_REASON_MAX_PASSES;
		*decision = HMIG_DECIDE_POSTCOPY;
		return 0;
	}
	rc = s->g->ops->dirty_start(s->g, s->cfg.dirty);
	if (rc < 0)
		return err_setf(s->err, rc, "%s", hmig_guest_error(s->g));
	snprintf(s->rep.dirty_logging, sizeof(s->rep.dirty_logging), "%s",
		 hmig_dirty_mode_name(rc));
	s->logging = true;
	/* Pass 0 sends every page; pass n the pages pass n-1 saw dirtied. */
	for (uint32_t pass = 0;; pass++) {
		memcpy(s->todo, pass ? s->dirty : s->moving, words * 8);
		memset(s->dirty, 0, words * 8);
		if ((rc = run_pass(s, pass, s->todo, &pp, decision)))
			return rc;
		if (*decision != HMIG_DECIDE_PASS)
			return 0;
	}
}

/* ------------------------------------------------------------- switchover */

/* Sends `set` as STALE or DIRTY records (as many as it takes). */
static int send_set_records(struct hmig_source *s, uint32_t type, const uint64_t *set)
{
	uint8_t rec[PROTO_HDR_LEN + PROTO_STALE_MAX_BODY];
	uint64_t pos = 0;
	int rc, n;

	do {
		n = type == PROTO_DIRTY
			    ? proto_dirty_encode(rec, sizeof(rec), &s->geo, set, &pos, s->err)
			    : proto_stale_encode(rec, sizeof(rec), &s->geo, set, &pos, s->err);
		if ((rc = send_small(s, rec, n)))
			return rc;
	} while (pos < s->geo.npages);
	return 0;
}

/* todo = dirty & held: pages the destination holds that the guest has
 * written since; their copies there must go.  Clears them from held.
 * Returns how many. */
static uint64_t take_stale_copies(struct hmig_source *s)
{
	uint64_t n = 0;

	for (uint64_t w = 0; w < BITMAP_WORDS(s->geo.npages); w++) {
		s->todo[w] = s->dirty[w] & s->sent.held[w];
		s->sent.held[w] &= ~s->todo[w];
		n += (uint64_t)__builtin_popcountll(s->todo[w]);
	}
	return n;
}

/* Before the pause: let the destination catch up, and for a post-copy
 * switch have it drop what the guest rewrote, so that the downtime holds
 * neither.
 *
 * What was sent may still sit in socket buffers or wait to be installed:
 * tens of MiB on a fast link, 40 ms of a 4 GiB guest's downtime here before
 * this existed.  A SYNC round trip drains it while the guest still runs.
 * For post-copy, each round first collects the dirty log and sends DIRTY
 * for the pages the destination holds, which it drops before it answers;
 * the next round finds only what the guest wrote meanwhile.  Rounds go on
 * while they shrink that set, up to SETTLE_ROUNDS, so a guest that writes
 * faster than the destination drops cannot hold the switch back. */
#define SETTLE_ROUNDS 4
#define SETTLE_ENOUGH 256 /* pages: about 0.2 ms of drops at the switch */

static int sync_round_trip(struct hmig_source *s)
{
	uint8_t rec[PROTO_HDR_LEN + 8];
	struct proto_hdr h;
	uint64_t token;
	int rc;

	if ((rc = send_small(s, rec, proto_sync_encode(rec, sizeof(rec), ++s->sync_token, s->err))))
		return rc;
	rc = eng_rec_read(&s->net.bulk, &s->geo, s->cfg.io_timeout_ms, "destination", &h, &s->rx,
			  s->err);
	if (rc)
		return rc;
	if (h.type != PROTO_SYNC)
		return err_setf(s->err, -EPROTO, "expected SYNC from the destination, got %s",
				proto_type_name(h.type));
	if ((rc = proto_sync_decode(&h, s->rx.p, &token, s->err)))
		return rc;
	if (token != s->sync_token)
		return err_setf(s->err, -EPROTO, "the destination answered SYNC %lu with %lu",
				(unsigned long)s->sync_token, (unsigned long)token);
	return 0;
}

static int settle(struct hmig_source *s, bool postcopy)
{
	uint64_t prev = UINT64_MAX;
	int rc;

	set_state(s, S_SETTLE);
	/* The push plan is O(guest): made now, over the dirty set of this
	 * moment, not in the downtime (push_plan says what follows it). */
	if (postcopy && push_wants_heat(&s->push) &&
	    push_plan(&s->push, s->dirty, s->heat))
		return err_setf(s->err, -ENOMEM, "out of memory for the push order");
	for (;;) {
		uint64_t n = 0;

		if ((rc = cancelled(s)))
			return rc;
		if (postcopy && s->logging) {
			if ((rc = collect(s, 0)))
				return rc;
			n = take_stale_copies(s);
			if (n && (rc = send_set_records(s, PROTO_DIRTY, s->todo)))
				return rc;
			s->dropped_early += n;
		}
		if ((rc = sync_round_trip(s)))
			return rc;
		s->settle_rounds++;
		if (!postcopy || n <= SETTLE_ENOUGH || n >= prev || s->settle_rounds >= SETTLE_ROUNDS)
			return 0;
		prev = n;
	}
}

/* Pause and take the last dirty pages: from here the guest may only run on
 * the destination, or here again if the destination never confirms.
 * s->dirty is then every page the destination lacks the newest content of,
 * and s->todo those of them it holds an old copy of (the STALE set). */
static int switchover(struct hmig_source *s)
{
	int rc;

	set_state(s, S_SWITCHOVER);
	/* What the downtime walks, warmed while the guest still runs. */
	bitmap_warm(s->dirty, s->geo.npages);
	bitmap_warm(s->todo, s->geo.npages);
	bitmap_warm(s->sent.held, s->geo.npages);
	bitmap_warm(s->push.unsent, s->geo.npages);
	s->t_pause = clock_now_ns();
	if ((rc = s->g->ops->pause(s->g)))
		return err_setf(s->err, rc, "pausing the guest: %s", hmig_guest_error(s->g));
	s->paused = true;
	s->t_paused = clock_now_ns();
	atomic_store(&s->live.dirty_rate, NAN); /* it writes no more here */
	if (s->logging && (rc = collect(s, HMIG_COLLECT_FINAL)))
		return rc;
	s->dropped_late = take_stale_copies(s);
	s->rep.switchover.stale_pages = bitmap_count(s->dirty, s->geo.npages);
	s->t_collected = clock_now_ns();
	return 0;
}

static int send_stale_and_vcpus(struct hmig_source *s, uint32_t vcpu_flags)
{
	uint8_t hdr[PROTO_HDR_LEN];
	void *blob;
	size_t len;
	int rc, n;

	if ((rc = send_set_records(s, PROTO_STALE, s->todo)))
		return rc;
	rc = s->g->ops->vcpu_save(s->g, &blob, &len);
	if (rc)
		return err_setf(s->err, rc, "saving vCPU state: %s", hmig_guest_error(s->g));
	n = proto_vcpu_encode(hdr, sizeof(hdr), &s->geo, len, vcpu_flags, s->err);
	if (n < 0) {
		free(blob);
		return n;
	}
	struct iovec iov[2] = { { hdr, (size_t)n }, { blob, len } };
	int64_t seq = net_chan_sendv(&s->net.bulk, iov, 2);
	rc = seq < 0 ? (int)seq : net_chan_send_wait(&s->net.bulk, seq, s->cfg.io_timeout_ms);
	free(blob);
	if (rc)
		return eng_io_error(s->err, rc, "destination", "sending vCPU state", s->net.bulk.err);
	return 0;
}

static int wait_record(struct hmig_source *s, uint32_t type)
{
	struct proto_hdr h;
	int rc = eng_rec_read(&s->net.bulk, &s->geo, s->cfg.io_timeout_ms, "destination", &h,
			      &s->rx, s->err);

	if (rc)
		return rc;
	if (h.type != type)
		return err_setf(s->err, -EPROTO, "expected %s from the destination, got %s",
				proto_type_name(type), proto_type_name(h.type));
	return 0;
}

/* Stop-and-copy: the stale pages go out after the vCPU state, then DONE
 * (nothing more will be sent). */
static int send_the_rest(struct hmig_source *s)
{
	uint8_t done[PROTO_HDR_LEN + 24];
	uint64_t b = bulk_bytes(s);
	int rc;

	int64_t n = send_set(s, s->dirty);
	if (n < 0)
		return (int)n;
	struct proto_done d = { .pages = s->sent.data + s->sent.zero, .bytes = bulk_bytes(s) };
	if ((rc = send_small(s, done, proto_done_encode(done, sizeof(done), &d, s->err))))
		return rc;
	s->rep.bytes.stopcopy = bulk_bytes(s) - b;
	return 0;
}

/* The commit.  The destination has said LOADED: it holds the vCPU state
 * (and in stop-and-copy every page) and will start the guest only on
 * COMMIT.  From the moment the source decides to send it, the guest is the
 * destination's: the source never resumes it, whatever happens to the link
 * (it reconnects instead, see recover()).  Before this moment any failure
 * resumes the guest here and the destination never starts it, so at every
 * instant the guest runs in one place at most (docs/protocol.md). */
static int commit(struct hmig_source *s)
{
	uint8_t rec[PROTO_HDR_LEN + 8];
	int expect = OWNED, rc;

	s->t_sent = clock_now_ns();
	if ((rc = wait_record(s, PROTO_LOADED)))
		return rc;
	s->t_loaded = clock_now_ns();
	if (!atomic_compare_exchange_strong(&s->owner, &expect, HANDED))
		return cancelled(s);
	s->committed = true;
	timeline(s, "commit");
	return send_small(s, rec, proto_token_encode(rec, sizeof(rec), PROTO_COMMIT, s->session_id,
						     s->err));
}

/* -------------------------------------------------------------- post-copy */

/* A pull request, on the urgent server's thread: the pages go back on the
 * urgent channel at once, whatever the pusher is doing on bulk. */
static int reply_request(struct hmig_source *s, const struct proto_hdr *h)
{
	uint64_t pfns[PROTO_MAX_BATCH];
	struct proto_pages pg;
	int rc = proto_pages_decode(h, s->srv.rx.p, &s->geo, &pg, s->srv.err);

	if (rc)
		return rc;
	for (uint32_t i = 0; i < pg.count; i++) {
		pfns[i] = proto_pages_pfn(&pg, i);
		if (!bitmap_test(s->moving, pfns[i]))
			return err_setf(s->srv.err, -EPROTO,
					"the destination asked for pfn %lu, which never moves (a hole or a host page)",
					(unsigned long)pfns[i]);
	}
	/* Already pushed and on its way: sent again anyway, the destination
	 * installs whichever arrives first (the sent log counts a duplicate). */
	pthread_mutex_lock(&s->push_lock);
	for (uint32_t i = 0; i < pg.count; i++)
		push_taken(&s->push, pfns[i]);
	pthread_mutex_unlock(&s->push_lock);
	if ((rc = sender_send(&s->urgent, pfns, pg.count)) || (rc = sender_drain(&s->urgent)))
		return rc;
	s->pulled += pg.count;
	pthread_mutex_lock(&s->push_lock);
	for (uint32_t i = 0; i < pg.count; i++)
		push_pulled(&s->push, pfns[i]);
	atomic_store(&s->live.left, push_left(&s->push));
	pthread_mutex_unlock(&s->push_lock);
	return 0;
}

static void *urgent_main(void *arg)
{
	struct hmig_source *s = arg;
	struct net_chan *ch = &s->net.urgent;
	struct proto_hdr h;
	int rc = 0;

	/* A vCPU is blocked until its reply is out; the pusher can wait
	 * (common/prio.h), as for the destination's fault handler. */
	prio_urgent_thread();
	while (!rc && !atomic_load(&s->srv.quit)) {
		rc = net_chan_wait_any(&ch, 1, -1);
		if (rc == -EINTR) { /* urgent_stop, or a stray wake */
			rc = 0;
			continue;
		}
		if (rc < 0) {
			rc = eng_io_error(s->srv.err, rc, "destination", "serving pulls", ch->err);
			break;
		}
		while (!rc && (rc = net_chan_readable(ch)) == 1) {
			rc = eng_rec_read(ch, &s->geo, s->cfg.io_timeout_ms, "destination", &h,
					  &s->srv.rx, s->srv.err);
			if (!rc && h.type != PROTO_REQUEST)
				rc = err_setf(s->srv.err, -EPROTO, "unexpected %s on the urgent channel",
					      proto_type_name(h.type));
			if (!rc)
				rc = reply_request(s, &h);
		}
		if (rc < 0 && !s->srv.err[0])
			rc = eng_io_error(s->srv.err, rc, "destination", "serving pulls", ch->err);
	}
	if (rc < 0) {
		atomic_store(&s->srv.rc, rc);
		if (atomic_load(&s->srv.wake_bulk))
			net_chan_wake(&s->net.bulk); /* the pusher's thread looks at srv.rc */
	}
	return NULL;
}

static int urgent_start(struct hmig_source *s)
{
	int rc;

	s->srv.err[0] = '\0';
	atomic_store(&s->srv.rc, 0);
	atomic_store(&s->srv.quit, false);
	atomic_store(&s->srv.wake_bulk, false);
	if ((rc = pthread_create(&s->srv.thread, NULL, urgent_main, s)))
		return err_setf(s->err, -rc, "cannot start the thread that serves pulls: %s",
				strerror(rc));
	s->srv.running = true;
	return 0;
}

static void urgent_stop(struct hmig_source *s)
{
	if (!s->srv.running)
		return;
	atomic_store(&s->srv.quit, true);
	net_chan_wake(&s->net.urgent);
	pthread_join(s->srv.thread, NULL);
	s->srv.running = false;
}

/* The urgent server's failure, as the source's: its line and its errno. */
static int urgent_failed(struct hmig_source *s)
{
	int rc = atomic_load(&s->srv.rc);

	return rc ? err_setf(s->err, rc, "%s", s->srv.err) : 0;
}

/* One batch of pushed pages on bulk; 0 when there was nothing to push. */
static int push_batch(struct hmig_source *s)
{
	uint64_t pfns[PROTO_MAX_BATCH];
	int rc;

	pthread_mutex_lock(&s->push_lock);
	uint32_t n = push_next(&s->push, pfns, s->bulk.batch_max);
	atomic_store(&s->live.left, push_left(&s->push));
	pthread_mutex_unlock(&s->push_lock);
	if ((rc = sender_send(&s->bulk, pfns, n)))
		return rc;
	s->pushed += n;
	return (int)n;
}

static bool pushing(struct hmig_source *s)
{
	pthread_mutex_lock(&s->push_lock);
	bool active = push_active(&s->push);
	pthread_mutex_unlock(&s->push_lock);
	return active;
}

/* Pushed batches in flight at once: the link stays busy (2 MiB, ~2 ms at
 * 1 GB/s) without the pusher mapping more of the guest than that. */
#define PUSH_INFLIGHT 2

/* Post-copy on the source: pulls are served by their own thread (urgent_main,
 * started at the commit by committed_steps) while this one pushes the rest
 * of the stale set, then says DONE (nothing more will be pushed) and
 * waits.  Returns when the destination's DONE (every page present there),
 * or its ERROR, is next on bulk, or when the urgent server failed.  The
 * pull server stops only with the destination's DONE, or before a
 * recovery. */
static int serve(struct hmig_source *s)
{
	struct net_chan *bulk = &s->net.bulk;
	uint8_t done[PROTO_HDR_LEN + 24];
	int64_t inflight[PUSH_INFLIGHT] = { 0 };
	unsigned oldest = 0;
	bool done_sent = false;
	uint64_t pulled = s->pulled;
	int rc;

	atomic_store(&s->srv.wake_bulk, true); /* then srv.rc, first thing below */
	for (;;) {
		if ((rc = urgent_failed(s)))
			return rc;
		if ((rc = net_chan_readable(bulk)) == 1)
			return 0; /* the destination's DONE, or its ERROR */
		if (rc < 0)
			return eng_io_error(s->err, rc, "destination", "post-copy", bulk->err);
		if (pushing(s)) {
			if (inflight[oldest]) {
				rc = net_chan_send_wait(bulk, inflight[oldest], s->cfg.io_timeout_ms);
				if (rc == -EINTR)
					continue; /* the urgent server's failure */
				if (rc)
					return eng_io_error(s->err, rc, "destination", "pushing pages",
							    bulk->err);
			}
			if ((rc = push_batch(s)) < 0)
				return rc;
			inflight[oldest] = sender_last_seq(&s->bulk);
			oldest = (oldest + 1) % PUSH_INFLIGHT;
			continue;
		}
		if (!done_sent) {
			/* Nothing more will be pushed: the rest comes by pull. */
			struct proto_done d = { .pages = s->pushed, .requests = s->pulled };

			if ((rc = sender_drain(&s->bulk)) ||
			    (rc = send_small(s, done, proto_done_encode(done, sizeof(done), &d, s->err))))
				return rc;
			done_sent = true;
			timeline(s, "pushed all");
		}
		/* The rest comes by pull, for as long as pulls come: silence on
		 * both channels for io_timeout_ms is a dead destination. */
		rc = net_chan_wait_any(&bulk, 1, s->cfg.io_timeout_ms);
		if (rc == -ETIMEDOUT && s->pulled != pulled) {
			pulled = s->pulled;
			continue;
		}
		if (rc < 0 && rc != -EINTR)
			return eng_io_error(s->err, rc, "destination", "post-copy", bulk->err);
	}
}

/* Reconnection backoff after a lost link: the first retry soon (a blip),
 * then doubling up to RECOVER_BACKOFF_MAX_MS (a network being repaired). */
#define RECOVER_BACKOFF_MIN_MS 100
#define RECOVER_BACKOFF_MAX_MS 2000

/* One attempt: a new pair of connections, RECOVER both ways, and the
 * destination's missing set.  *state gets where it stands. */
static int reconnect(struct hmig_source *s, uint32_t *state)
{
	uint8_t rec[PROTO_HDR_LEN + sizeof(struct proto_wire_recover)];
	struct proto_recover ours = { .session_id = s->session_id, .flags = PROTO_RECOVER_COMMITTED };
	struct proto_recover theirs;
	struct proto_hdr h;
	int rc;

	if ((rc = open_channels(s, RECOVER_BACKOFF_MAX_MS)) ||
	    (rc = send_small(s, rec, proto_recover_encode(rec, sizeof(rec), &ours, s->err))) ||
	    (rc = wait_record(s, PROTO_RECOVER)) ||
	    (rc = proto_recover_decode(&(struct proto_hdr){ .type = PROTO_RECOVER,
							     .body_len = sizeof(struct proto_wire_recover) },
				       s->rx.p, &theirs, s->err)))
		return rc;
	if (theirs.session_id != s->session_id)
		return err_setf(s->err, -EPROTO,
				"the destination at %s holds another migration (session %016lx, ours %016lx)",
				s->addr, (unsigned long)theirs.session_id, (unsigned long)s->session_id);
	/* What it still needs: every page the lost link may have carried. */
	uint64_t *missing = s->todo;
	memset(missing, 0, BITMAP_WORDS(s->geo.npages) * sizeof(uint64_t));
	do {
		if ((rc = eng_rec_read(&s->net.bulk, &s->geo, s->cfg.io_timeout_ms, "destination", &h,
				       &s->rx, s->err)))
			return rc;
		if (h.type != PROTO_MISSING)
			return err_setf(s->err, -EPROTO, "expected MISSING after RECOVER, got %s",
					proto_type_name(h.type));
		if ((rc = proto_stale_decode(&h, s->rx.p, &s->geo, missing, s->err)))
			return rc;
	} while (!(h.flags & PROTO_FLAG_LAST));
	for (uint64_t w = 0; w < BITMAP_WORDS(s->geo.npages); w++)
		missing[w] &= s->moving[w];
	pthread_mutex_lock(&s->push_lock);
	/* The rest of what it lacks was still to push: only these go twice. */
	s->resent_after_recovery += push_sent_among(&s->push, missing);
	push_start(&s->push, missing);
	atomic_store(&s->live.left, push_left(&s->push));
	pthread_mutex_unlock(&s->push_lock);
	*state = theirs.state;
	return 0;
}

/* The link died after the commit.  The guest is the destination's now:
 * never resume it here.  Reconnect with the same session id, backing off,
 * until recover_timeout_ms, prove which migration this is (RECOVER), and
 * learn where the destination stands: still waiting for COMMIT (send it
 * again), running with pages missing (push them again, serving its re-sent
 * requests first), or complete. */
static int recover(struct hmig_source *s, int cause)
{
	uint64_t t_lost = clock_now_ns(), backoff = RECOVER_BACKOFF_MIN_MS;
	uint64_t limit = s->cfg.recover_timeout_ms ? (uint64_t)s->cfg.recover_timeout_ms * 1000000ull
						   : UINT64_MAX;
	enum src_state was = s->state;
	char cause_text[ERR_LEN];
	uint32_t state = 0;
	int rc;

	memcpy(cause_text, s->err, ERR_LEN);
	urgent_stop(s); /* it served the lost link; it starts again on the new one */
	set_state(s, S_RECOVERING);
	for (;;) {
		close_channels(s);
		if (clock_now_ns() - t_lost >= limit)
			return err_setf(s->err, cause,
					"the link to the destination was lost after the commit and did not come back in %d ms (%.100s): the guest belongs to the destination; if it is still waiting there, it needs this source back",
					s->cfg.recover_timeout_ms, cause_text);
		rc = reconnect(s, &state);
		if (!rc)
			break;
		if (!eng_link_lost(rc))
			return rc; /* a refusal or a bad record: not the link */
		struct timespec nap = { .tv_sec = (time_t)(backoff / 1000),
					.tv_nsec = (long)(backoff % 1000) * 1000000 };
		nanosleep(&nap, NULL);
		backoff = backoff * 2 > RECOVER_BACKOFF_MAX_MS ? RECOVER_BACKOFF_MAX_MS : backoff * 2;
	}
	s->recoveries++;
	s->paused_link_ms += clock_ms(clock_now_ns() - t_lost);
	set_state(s, was);
	if (state == PROTO_RECOVER_WAITING) {
		uint8_t rec[PROTO_HDR_LEN + 8];

		return send_small(s, rec, proto_token_encode(rec, sizeof(rec), PROTO_COMMIT,
							     s->session_id, s->err));
	}
	s->resumed = true; /* it runs there; its RESUMED went with the old link */
	if (state == PROTO_RECOVER_COMPLETE)
		s->dest_done = true;
	return 0;
}

/* After the commit: the destination's RESUMED, the post-copy serving, its
 * DONE -- each step done once, so that after a recovery the loop goes on
 * where the link broke. */
static int committed_steps(struct hmig_source *s, bool postcopy)
{
	int rc;

	/* The guest may fault the moment it starts there, before its
	 * RESUMED is here: pulls are served from the commit on. */
	if (postcopy && !s->dest_done && !s->srv.running && (rc = urgent_start(s)))
		return rc;
	if (!s->resumed) {
		if ((rc = wait_record(s, PROTO_RESUMED)))
			return rc;
		s->resumed = true;
		s->t_resumed = clock_now_ns();
		if (!s->recoveries) {
			s->rep.downtime_ms = clock_ms(s->t_resumed - s->t_pause);
			atomic_store(&s->live.downtime_ms, s->rep.downtime_ms);
		}
		timeline(s, "resumed");
	}
	if (!s->dest_done) {
		if (postcopy && (rc = serve(s)))
			return rc;
		if ((rc = wait_record(s, PROTO_DONE)))
			return rc;
		urgent_stop(s); /* every page is there: no more pulls */
		s->dest_done = true;
		atomic_store(&s->live.left, 0);
	}
	return 0;
}

/* The link looks lost (the destination hung up while we sent, or went
 * quiet): it may have said why first (an ERROR before closing, a cancel).
 * Then that is the failure, not a lost link: a destination that failed
 * does not come back, and after the commit waiting recover_timeout_ms for
 * it would only hold the source.  What else the dead link still holds is
 * of no use to a recovery, which starts on new connections. */
static int said_why(struct hmig_source *s, int rc)
{
	struct proto_hdr h;
	char why[ERR_LEN];

	if (eng_link_lost(rc) && s->net.bulk.open &&
	    eng_rec_read(&s->net.bulk, &s->geo, 0, "destination", &h, &s->rx, why) ==
		    -ECONNABORTED)
		return err_setf(s->err, -ECONNABORTED, "%s", why);
	return rc;
}

static int after_commit(struct hmig_source *s, bool postcopy)
{
	int rc;

	while ((rc = said_why(s, committed_steps(s, postcopy))) && eng_link_lost(rc))
		if ((rc = recover(s, rc)))
			break;
	return rc;
}

/* Hands the guest over: the stale set and the vCPU state (and in
 * stop-and-copy the stale pages), the commit, then whatever the mode does
 * after it. */
static int handover(struct hmig_source *s, bool postcopy)
{
	uint64_t b0, u0;
	int rc;

	set_state(s, postcopy ? S_POSTCOPY : S_STOPCOPY);
	if (postcopy) {
		pthread_mutex_lock(&s->push_lock);
		push_start(&s->push, s->dirty);
		atomic_store(&s->live.left, push_left(&s->push));
		pthread_mutex_unlock(&s->push_lock);
	} else {
		atomic_store(&s->live.left, bitmap_count(s->dirty, s->geo.npages));
	}
	if ((rc = send_stale_and_vcpus(s, postcopy ? PROTO_FLAG_POSTCOPY : 0)) ||
	    (!postcopy && (rc = send_the_rest(s))) || (rc = commit(s)))
		return rc;
	b0 = bulk_bytes(s);
	u0 = urgent_bytes(s);
	rc = after_commit(s, postcopy);
	if (postcopy) {
		s->rep.bytes.push = bulk_bytes(s) - b0;
		s->rep.bytes.pull = urgent_bytes(s) - u0;
		s->rep.pages.pulled = s->pulled;
		s->rep.pages.pushed = s->pushed;
	}
	return rc;
}

/* -------------------------------------------------------------- the whole */

static void finish_report(struct hmig_source *s, int rc)
{
	eng_report_guest(&s->rep, s->cfg.mode, s->g, &s->geo);
	s->rep.total_ms = clock_ms((s->t_end ? s->t_end : clock_now_ns()) - s->t0);
	s->rep.bytes.total = bulk_bytes(s) + urgent_bytes(s);
	s->rep.bytes.precopy = s->rep.bytes.total - s->rep.bytes.stopcopy - s->rep.bytes.push -
			       s->rep.bytes.pull;
	s->rep.pages.sent = s->sent.data;
	s->rep.pages.zero = s->sent.zero;
	s->rep.pages.duplicate = s->sent.resent;
	stats_report_set_extra_u64(&s->rep, "settle_rounds", s->settle_rounds);
	/* The downtime, step by step (null where a step was not reached). */
	static const char *const steps[] = {
		"downtime_pause_ms", "downtime_collect_ms", "downtime_send_ms",
		"downtime_load_ms", "downtime_commit_ms",
	};
	uint64_t marks[] = { s->t_pause, s->t_paused, s->t_collected, s->t_sent, s->t_loaded,
			     s->t_resumed };
	for (int i = 0; i < 5; i++)
		stats_report_set_extra_double(&s->rep, steps[i],
					      marks[i] && marks[i + 1] && !s->recoveries
						      ? clock_ms(marks[i + 1] - marks[i])
						      : NAN);
	stats_report_set_extra_u64(&s->rep, "recoveries", s->recoveries);
	stats_report_set_extra_double(&s->rep, "recovery_paused_ms", s->paused_link_ms);
	stats_report_set_extra_u64(&s->rep, "pages_resent_after_recovery", s->resent_after_recovery);
	if (s->verdict == PROTO_VERDICT_OK)
		s->rep.integrity = STATS_INTEGRITY_OK;
	else if (s->verdict == PROTO_VERDICT_MISMATCH)
		s->rep.integrity = STATS_INTEGRITY_MISMATCH;
	/* The error line may quote the peer (its ERROR text, a vCPU state
	 * the backend refused): escaped once here, before anyone prints it. */
	esc_inplace(s->err, ERR_LEN);
	if (rc == -ECANCELED)
		stats_report_set_result(&s->rep, STATS_RESULT_CANCELLED, "%s", s->err);
	else if (rc)
		stats_report_set_result(&s->rep, STATS_RESULT_FAILED, "%s", s->err);
	else if (s->verdict == PROTO_VERDICT_MISMATCH)
		stats_report_set_result(&s->rep, STATS_RESULT_FAILED,
					"the destination's oracle found a mismatch: %s", s->verdict_text);
	else
		stats_report_set_result(&s->rep, STATS_RESULT_OK, NULL);
}

int hmig_source_run(struct hmig_source *s, const char *addr)
{
	enum hmig_decision next = HMIG_DECIDE_STOPCOPY;
	int rc;

	s->t0 = clock_now_ns();
	if ((rc = progress_start(&s->prog, s->cfg.sample_ms)))
		return err_setf(s->err, rc, "cannot start the timeline sampler");
	set_state(s, S_SETUP);
	rc = connect_and_hello(s, addr);
	if (!rc)
		rc = precopy(s, &next);
	if (!rc)
		rc = settle(s, next == HMIG_DECIDE_POSTCOPY);
	if (!rc)
		rc = switchover(s);
	if (!rc)
		rc = handover(s, next == HMIG_DECIDE_POSTCOPY);
	urgent_stop(s); /* on failure: it may still run */
	if (rc && !s->committed && cancelled(s))
		rc = -ECANCELED;
	rc = said_why(s, rc);
	if (rc) {
		set_state(s, rc == -ECANCELED ? S_CANCELLED : S_FAILED);
		eng_send_error(&s->net.bulk, rc, s->err);
		if (s->paused && !s->committed) {
			/* Nothing was handed over: the guest goes on here. */
			s->g->ops->resume(s->g);
			s->paused = false;
		}
		/* -ESRCH from the guest: it died (guest.h); it runs nowhere. */
		if (!s->committed && rc != -ESRCH && !strstr(s->err, "the guest runs here")) {
			char cause[ERR_LEN];

			memcpy(cause, s->err, ERR_LEN);
			err_setf(s->err, rc, "%.200s; the guest runs here", cause);
		}
	} else {
		set_state(s, S_DONE);
	}
	if (s->g->ops->dirty_stop(s->g) < 0 && !rc)
		rc = err_setf(s->err, -EIO, "%s", hmig_guest_error(s->g));
	progress_stop(&s->prog);
	atomic_store(&s->live.finished, true);
	s->t_end = clock_now_ns();
	finish_report(s, rc);
	/* On success the bulk channel stays open for the verdict. */
	if (rc)
		close_channels(s);
	return rc;
}

/* The destination oracle's word comes after its DONE, once its guest has
 * run a while (hmig recv --run-after).  A destination that closes without
 * one has no oracle. */
int hmig_source_wait_verdict(struct hmig_source *s, int timeout_ms)
{
	struct proto_hdr h;
	struct proto_error v;
	int rc;

	if (!s->net.bulk.open)
		return err_setf(s->err, -ENOTCONN, "no verdict to wait for: the migration is over");
	rc = eng_rec_read(&s->net.bulk, &s->geo, timeout_ms, "destination", &h, &s->rx, s->err);
	if (rc == -ECONNRESET) { /* it closed: no oracle there */
		close_channels(s);
		return 0;
	}
	if (!rc && h.type != PROTO_VERDICT)
		rc = err_setf(s->err, -EPROTO, "expected VERDICT after DONE, got %s",
			      proto_type_name(h.type));
	if (!rc)
		rc = proto_verdict_decode(&h, s->rx.p, &v, s->err);
	close_channels(s);
	if (rc)
		return rc;
	s->verdict = (int)v.code;
	snprintf(s->verdict_text, sizeof(s->verdict_text), "%.*s", (int)v.text_len, v.text);
	finish_report(s, 0);
	if (s->verdict == PROTO_VERDICT_MISMATCH)
		return err_setf(s->err, -EBADMSG, "the destination's oracle found a mismatch: %.180s",
				s->verdict_text);
	return 0;
}

int hmig_source_cancel(struct hmig_source *s)
{
	int expect = OWNED;

	if (!atomic_compare_exchange_strong(&s->owner, &expect, CANCELLING))
		return expect == HANDED ? -EBUSY : 0;
	/* Before the commit the channels stay open from connect to the end. */
	if (s->net.bulk.open)
		net_chan_wake(&s->net.bulk);
	if (s->net.urgent.open)
		net_chan_wake(&s->net.urgent);
	return 0;
}

void hmig_source_force_switch(struct hmig_source *s)
{
	atomic_store(&s->force, true);
}

void hmig_source_set_rate(struct hmig_source *s, uint64_t bytes_per_s)
{
	atomic_store(&s->live.rate, bytes_per_s);
	progress_lock(&s->prog);
	if (s->bytes.live)
		net_chan_request_rate(&s->net.bulk, bytes_per_s);
	progress_unlock(&s->prog);
}

int hmig_source_status(struct hmig_source *s, struct hmig_status *st, size_t size)
{
	if (!size)
		return -EINVAL;
	progress_status(&s->prog, st, size);
	return 0;
}

void hmig_source_set_ops_before(struct hmig_source *s, double ops_per_s)
{
	s->rep.guest_ops_per_s_before = ops_per_s;
}

int hmig_source_report(struct hmig_source *s, FILE *f)
{
	return stats_report_write_json(&s->rep, f);
}

const char *hmig_source_error(const struct hmig_source *s)
{
	return s->err;
}

void hmig_source_free(struct hmig_source *s)
{
	if (!s)
		return;
	urgent_stop(s);
	progress_free(&s->prog);
	net_pair_close(&s->net);
	net_tls_free(s->tls);
	sender_free(&s->bulk);
	sender_free(&s->urgent);
	sent_log_free(&s->sent);
	push_free(&s->push);
	rec_buf_free(&s->rx);
	rec_buf_free(&s->srv.rx);
	pthread_mutex_destroy(&s->push_lock);
	stats_report_free(&s->rep);
	free(s->moving);
	free(s->dirty);
	free(s->todo);
	free(s->heat);
	free(s);
}
