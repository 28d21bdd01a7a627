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
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <hmig/hmig.h>

#include "common/bitmap.h"
#include "common/clock.h"
#include "common/err.h"
#include "common/esc.h"
#include "engine/engine.h"
#include "engine/sender.h"
#include "policy/policy.h"
#include "policy/push.h"

enum src_state {
	S_SETUP, S_PRECOPY, S_SETTLE, S_SWITCHOVER, S_STOPCOPY, S_POSTCOPY, S_DONE, S_FAILED,
};

static const char *const state_names[] = {
	"setup", "precopy", "settle", "switchover", "stopcopy", "postcopy", "done", "failed",
};

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
	struct push push;      /* post-copy: what to push next */
	_Atomic bool force;
	bool paused;           /* we paused the guest: resume it on failure */
	bool resumed_remote;   /* the destination runs the guest: never resume here */
	uint64_t t0, t_pause;
	uint64_t sync_token;   /* last SYNC sent */
	uint32_t settle_rounds;
	uint64_t dropped_early; /* pages the destination dropped before the pause */
	uint64_t dropped_late;  /* ... and in the downtime */
	uint64_t tl_ns, tl_ops;  /* the last timeline row, for guest ops/s */
	uint64_t pulled, pushed;
	struct stats_report rep;
	char err[ERR_LEN];
};

static uint64_t bulk_bytes(struct hmig_source *s)
{
	struct net_chan_stats st;

	net_chan_stats(&s->net.bulk, &st);
	return st.bytes_sent;
}

static void timeline(struct hmig_source *s, const char *phase)
{
	struct stats_timeline_row row = { .t_ms = clock_ms(clock_now_ns() - s->t0) };
	struct net_chan_stats u;
	struct hmig_guest_stats gs;
	uint64_t now = clock_now_ns();

	snprintf(row.phase, sizeof(row.phase), "%s", phase);
	row.bytes_bulk = bulk_bytes(s);
	net_chan_stats(&s->net.urgent, &u);
	row.bytes_urgent = u.bytes_sent;
	s->g->ops->stats(s->g, &gs);
	row.guest_ops_per_s = now > s->tl_ns ? (double)(gs.ops - s->tl_ops) / ((double)(now - s->tl_ns) / 1e9) : 0;
	s->tl_ns = now;
	s->tl_ops = gs.ops;
	stats_report_add_timeline(&s->rep, &row);
}

/* States change here only, and each change is a timeline row. */
static void set_state(struct hmig_source *s, enum src_state st)
{
	s->state = st;
	timeline(s, state_names[st]);
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
	guest->ops->geometry(guest, &s->geo);
	s->moving = bitmap_new(s->geo.npages);
	s->dirty = bitmap_new(s->geo.npages);
	s->todo = bitmap_new(s->geo.npages);
	s->heat = calloc(s->geo.npages, 1);
	stats_report_init(&s->rep, STATS_SIDE_SOURCE);
	if (!s->moving || !s->dirty || !s->todo || !s->heat ||
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
	*out = s;
	return 0;
}

void hmig_source_set_stop_rule(struct hmig_source *s, hmig_stop_rule rule, void *data)
{
	s->stop_rule = rule ? rule : hmig_stop_rule_default;
	s->stop_data = rule ? data : NULL;
}

static int connect_and_hello(struct hmig_source *s, const char *addr)
{
	struct proto_hello ours = {
		.mode = s->cfg.mode,
		.caps = 0,
		.session_id = eng_session_id(),
		.geo = s->geo,
	};
	struct net_opts opts = { .peer = "destination", .disable = NET_F_SEND_ZC, .tls = s->tls };
	uint8_t buf[PROTO_HDR_LEN + PROTO_HELLO_LEN];
	struct proto_hello peer;
	struct proto_hdr h;
	int rc, n;

	snprintf(ours.backend, sizeof(ours.backend), "%s", s->g->ops->name);
	rc = net_connect_pair(addr, ours.session_id, s->cfg.connect_timeout_ms, &opts, &s->net);
	if (rc)
		return err_setf(s->err, rc, "%s", s->net.err);
	eng_report_security(&s->rep, &s->net.bulk);
	if (s->cfg.rate_limit_bps)
		net_chan_set_rate(&s->net.bulk, s->cfg.rate_limit_bps);
	/* Pushes and pulls are both capped at batch_pages: a reply is one
	 * record, sent and waited for before the next request is read. */
	if ((rc = sender_init(&s->bulk, s->g, &s->geo, &s->net.bulk, &s->sent,
			      s->cfg.batch_pages, s->cfg.io_timeout_ms, s->err)) ||
	    (rc = sender_init(&s->urgent, s->g, &s->geo, &s->net.urgent, &s->sent,
			      PROTO_MAX_BATCH, s->cfg.io_timeout_ms, s->err)))
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
	if ((rc = proto_hello_decode(&h, s->rx.p, &peer, s->err)))
		return rc;
	return proto_hello_match(&ours, &peer, s->err);
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

/* One pass: sends `todo`, then collects what the guest
 * dirtied meanwhile into s->dirty, the next pass's work. */
static int run_pass(struct hmig_source *s, uint32_t pass, const uint64_t *todo,
		    struct hmig_pass_stats *pp)
{
	uint64_t t = clock_now_ns(), b = bulk_bytes(s);
	uint8_t pe[PROTO_HDR_LEN + 24];
	int rc;

	int64_t sent = send_set(s, todo);
	if (sent < 0)
		return (int)sent;
	if ((rc = collect(s, 0)))
		return rc;
	uint64_t dirty = bitmap_count(s->dirty, s->geo.npages);
	for (uint64_t p = bitmap_next(s->dirty, s->geo.npages, 0); p < s->geo.npages;
	     p = bitmap_next(s->dirty, s->geo.npages, p + 1))
		if (s->heat[p] < UINT8_MAX)
			s->heat[p]++;
	double ms = clock_ms(clock_now_ns() - t);
	uint64_t bytes = bulk_bytes(s) - b;

	struct proto_pass_end pend = { .pass = pass, .pages_sent = (uint64_t)sent,
				       .pages_dirty = dirty };
	if ((rc = send_small(s, pe, proto_pass_end_encode(pe, sizeof(pe), &pend, s->err))))
		return rc;
	struct stats_pass_row row = {
		.pass = pass, .pages_sent = (uint64_t)sent, .pages_dirtied = dirty, .ms = ms,
		.mbps = ms > 0 ? (double)bytes * 8 / 1e6 / (ms / 1e3) : 0,
		.dirty_rate_pps = ms > 0 ? (double)dirty / (ms / 1e3) : 0,
	};
	stats_report_add_pass(&s->rep, &row);
	char phase[32];
	snprintf(phase, sizeof(phase), "pass %u", pass);
	timeline(s, phase);

	pp->pass = pass;
	pp->pages_sent = (uint64_t)sent;
	pp->dirty_pages = dirty;
	pp->bytes_sent = bulk_bytes(s);
	pp->bandwidth_bps = ms > 0 ? (double)bytes / (ms / 1e3) : 0;
	pp->elapsed_ms = clock_ms(clock_now_ns() - s->t0);
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
	rc = s->g->ops->dirty_start(s->g, s->cfg.dirty);
	if (rc < 0)
		return err_setf(s->err, rc, "%s", hmig_guest_error(s->g));
	snprintf(s->rep.dirty_logging, sizeof(s->rep.dirty_logging), "%s",
		 hmig_dirty_mode_name(rc));

	/* postcopy with precopy_passes=0: nothing moves before the switch. */
	if (s->cfg.mode == HMIG_MODE_POSTCOPY && !s->cfg.precopy_passes) {
		memcpy(s->dirty, s->moving, words * 8);
		s->rep.switchover.reason = STATS_REASON_MAX_PASSES;
		*decision = HMIG_DECIDE_POSTCOPY;
		return 0;
	}
	/* Pass 0 sends every page; pass n the pages pass n-1 saw dirtied. */
	for (uint32_t pass = 0;; pass++) {
		memcpy(s->todo, pass ? s->dirty : s->moving, words * 8);
		memset(s->dirty, 0, words * 8);
		if ((rc = run_pass(s, pass, s->todo, &pp)))
			return rc;
		pp.operator_forced = atomic_load(&s->force);
		enum hmig_reason why = HMIG_REASON_NONE;
		*decision = s->stop_rule(&s->cfg, &pp, &why, s->stop_data);
		if (*decision == HMIG_DECIDE_PASS)
			continue;
		/* Precopy mode never leaves pages missing on a running guest,
		 * whatever a custom rule says. */
		if (s->cfg.mode == HMIG_MODE_PRECOPY)
			*decision = HMIG_DECIDE_STOPCOPY;
		s->rep.switchover.reason = eng_stats_reason(why);
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

		if (postcopy) {
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
	s->t_pause = clock_now_ns();
	if ((rc = s->g->ops->pause(s->g)))
		return err_setf(s->err, rc, "pausing the guest: %s", hmig_guest_error(s->g));
	s->paused = true;
	if ((rc = collect(s, HMIG_COLLECT_FINAL)))
		return rc;
	s->dropped_late = take_stale_copies(s);
	s->rep.switchover.stale_pages = bitmap_count(s->dirty, s->geo.npages);
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

static int stopcopy(struct hmig_source *s)
{
	uint64_t b = bulk_bytes(s);
	uint8_t done[PROTO_HDR_LEN + 24];
	int rc;

	set_state(s, S_STOPCOPY);
	if ((rc = send_stale_and_vcpus(s, 0)))
		return rc;
	int64_t n = send_set(s, s->dirty);
	if (n < 0)
		return (int)n;
	struct proto_done d = { .pages = s->sent.data + s->sent.zero, .bytes = bulk_bytes(s) };
	if ((rc = send_small(s, done, proto_done_encode(done, sizeof(done), &d, s->err))))
		return rc;
	s->rep.bytes.stopcopy = bulk_bytes(s) - b;
	if ((rc = wait_record(s, PROTO_RESUMED)))
		return rc;
	/* The destination runs the guest now. */
	s->resumed_remote = true;
	s->rep.downtime_ms = clock_ms(clock_now_ns() - s->t_pause);
	timeline(s, "resumed");
	return wait_record(s, PROTO_DONE);
}

/* -------------------------------------------------------------- post-copy */

/* A pull request: the pages go back on the urgent channel at once, whatever
 * the pusher has queued on bulk. */
static int reply_request(struct hmig_source *s, const struct proto_hdr *h)
{
	uint64_t pfns[PROTO_MAX_BATCH];
	struct proto_pages pg;
	int rc = proto_pages_decode(h, s->rx.p, &s->geo, &pg, s->err);

	if (rc)
		return rc;
	for (uint32_t i = 0; i < pg.count; i++) {
		pfns[i] = proto_pages_pfn(&pg, i);
		if (!bitmap_test(s->moving, pfns[i]))
			return err_setf(s->err, -EPROTO,
					"the destination asked for pfn %lu, which never moves (a hole or a host page)",
					(unsigned long)pfns[i]);
		/* Already pushed and on its way: send it again anyway, the
		 * destination installs whichever arrives first (the sent log
		 * counts it as a duplicate). */
		push_taken(&s->push, pfns[i]);
	}
	if ((rc = sender_send(&s->urgent, pfns, pg.count)) || (rc = sender_drain(&s->urgent)))
		return rc;
	s->pulled += pg.count;
	for (uint32_t i = 0; i < pg.count; i++)
		push_pulled(&s->push, pfns[i]);
	return 0;
}

/* One batch of pushed pages on bulk; 0 when there was nothing to push. */
static int push_batch(struct hmig_source *s)
{
	uint64_t pfns[PROTO_MAX_BATCH];
	uint32_t n = push_next(&s->push, pfns, s->bulk.batch_max);
	int rc;

	if ((rc = sender_send(&s->bulk, pfns, n)))
		return rc;
	s->pushed += n;
	return (int)n;
}

/* Pushed batches in flight while pulls are served.  The sender thread
 * must never block on a full bulk queue (9 MiB deep) while a request waits:
 * with two batches in flight (2 MiB, ~2 ms at 1 GB/s) the link stays busy
 * and the pusher yields to the urgent channel between every batch. */
#define PUSH_INFLIGHT 2

/* Waits up to this long for a pushed batch to leave before looking at the
 * urgent channel again; a request wakes the wait at once. */
#define PUSH_POLL_MS 1

/* Serves pulls first, always: the urgent channel is drained before every
 * bulk batch, and the pusher never waits on bulk without watching urgent,
 * so a reply never queues behind more than PUSH_INFLIGHT batches.  Ends at
 * the destination's DONE (every page present there). */
static int serve(struct hmig_source *s)
{
	struct net_chan *chs[2] = { &s->net.urgent, &s->net.bulk };
	uint8_t done[PROTO_HDR_LEN + 24];
	int64_t inflight[PUSH_INFLIGHT] = { 0 };
	unsigned oldest = 0;
	bool done_sent = false;
	struct proto_hdr h;
	int rc;

	for (;;) {
		while ((rc = net_chan_readable(&s->net.urgent)) == 1) {
			rc = eng_rec_read(&s->net.urgent, &s->geo, s->cfg.io_timeout_ms, "destination",
					  &h, &s->rx, s->err);
			if (rc)
				return rc;
			if (h.type != PROTO_REQUEST)
				return err_setf(s->err, -EPROTO, "unexpected %s on the urgent channel",
						proto_type_name(h.type));
			if ((rc = reply_request(s, &h)))
				return rc;
		}
		if (rc < 0)
			return eng_io_error(s->err, rc, "destination", "serving pulls", s->net.urgent.err);
		if ((rc = net_chan_readable(&s->net.bulk)) == 1)
			break; /* the destination's DONE, or its ERROR */
		if (rc < 0)
			return eng_io_error(s->err, rc, "destination", "post-copy", s->net.bulk.err);
		if (push_active(&s->push)) {
			if (inflight[oldest] &&
			    net_chan_send_wait(&s->net.bulk, inflight[oldest], 0) == -ETIMEDOUT) {
				rc = net_chan_wait_any(chs, 2, PUSH_POLL_MS);
				if (rc < 0 && rc != -ETIMEDOUT)
					return eng_io_error(s->err, rc, "destination", "post-copy",
							    s->net.bulk.err);
				continue;
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
		rc = net_chan_wait_any(chs, 2, s->cfg.io_timeout_ms);
		if (rc < 0)
			return eng_io_error(s->err, rc, "destination", "post-copy", s->net.urgent.err);
	}
	return wait_record(s, PROTO_DONE);
}

static int postcopy(struct hmig_source *s)
{
	int rc;

	set_state(s, S_POSTCOPY);
	push_start(&s->push, s->dirty);
	if ((rc = send_stale_and_vcpus(s, PROTO_FLAG_POSTCOPY)))
		return rc;
	if ((rc = wait_record(s, PROTO_RESUMED)))
		return rc;
	/* From here the guest runs on the destination, whatever happens. */
	s->resumed_remote = true;
	s->rep.downtime_ms = clock_ms(clock_now_ns() - s->t_pause);
	timeline(s, "resumed");

	struct net_chan_stats u0;
	uint64_t b0 = bulk_bytes(s);
	net_chan_stats(&s->net.urgent, &u0);
	rc = serve(s);
	struct net_chan_stats u1;
	net_chan_stats(&s->net.urgent, &u1);
	s->rep.bytes.push = bulk_bytes(s) - b0;
	s->rep.bytes.pull = u1.bytes_sent - u0.bytes_sent;
	s->rep.pages.pulled = s->pulled;
	s->rep.pages.pushed = s->pushed;
	if (rc) {
		char cause[ERR_LEN];

		memcpy(cause, s->err, ERR_LEN);
		err_setf(s->err, rc, "%.160s (in post-copy: the guest runs on the destination and cannot come back here)",
			 cause);
	}
	return rc;
}

/* -------------------------------------------------------------- the whole */

static void finish_report(struct hmig_source *s, int rc)
{
	struct net_chan_stats u;

	eng_report_guest(&s->rep, s->cfg.mode, s->g, &s->geo);
	s->rep.total_ms = clock_ms(clock_now_ns() - s->t0);
	net_chan_stats(&s->net.urgent, &u);
	s->rep.bytes.total = bulk_bytes(s) + u.bytes_sent;
	s->rep.bytes.precopy = s->rep.bytes.total - s->rep.bytes.stopcopy - s->rep.bytes.push -
			       s->rep.bytes.pull;
	s->rep.pages.sent = s->sent.data;
	s->rep.pages.zero = s->sent.zero;
	s->rep.pages.duplicate = s->sent.resent;
	stats_report_set_extra_u64(&s->rep, "settle_rounds", s->settle_rounds);
	/* The error line may quote the peer (its ERROR text, a vCPU state
	 * the backend refused): escaped once here, before anyone prints it. */
	esc_inplace(s->err, ERR_LEN);
	if (rc)
		stats_report_set_result(&s->rep, STATS_RESULT_FAILED, "%s", s->err);
	else
		stats_report_set_result(&s->rep, STATS_RESULT_OK, NULL);
}

int hmig_source_run(struct hmig_source *s, const char *addr)
{
	enum hmig_decision next = HMIG_DECIDE_STOPCOPY;
	int rc;

	s->t0 = clock_now_ns();
	set_state(s, S_SETUP);
	rc = connect_and_hello(s, addr);
	if (!rc)
		rc = precopy(s, &next);
	if (!rc)
		rc = settle(s, next == HMIG_DECIDE_POSTCOPY);
	if (!rc)
		rc = switchover(s);
	if (!rc)
		rc = next == HMIG_DECIDE_POSTCOPY ? postcopy(s) : stopcopy(s);
	if (rc) {
		set_state(s, S_FAILED);
		eng_send_error(&s->net.bulk, rc, s->err);
		if (s->paused && !s->resumed_remote) {
			/* Nothing reached a running destination: go on here. */
			s->g->ops->resume(s->g);
			s->paused = false;
		}
	} else {
		set_state(s, S_DONE);
	}
	if (s->g->ops->dirty_stop(s->g) < 0 && !rc)
		rc = err_setf(s->err, -EIO, "%s", hmig_guest_error(s->g));
	finish_report(s, rc);
	net_pair_close(&s->net);
	return rc;
}

void hmig_source_force_switch(struct hmig_source *s)
{
	atomic_store(&s->force, true);
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
	net_pair_close(&s->net);
	net_tls_free(s->tls);
	sender_free(&s->bulk);
	sender_free(&s->urgent);
	sent_log_free(&s->sent);
	push_free(&s->push);
	rec_buf_free(&s->rx);
	stats_report_free(&s->rep);
	free(s->moving);
	free(s->dirty);
	free(s->todo);
	free(s->heat);
	free(s);
}
