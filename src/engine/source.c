/* The source: SETUP -> PRECOPY(pass 0..n) -> SWITCHOVER -> STOPCOPY -> DONE,
 * and FAILED from anywhere before the destination confirmed the resume, in
 * which case the source guest runs on: nothing is lost.
 *
 * One thread drives it.  Pages go out on the bulk channel as PAGES records
 * whose page data are iovecs pointing straight into guest memory (no bounce
 * copy); zero pages go as ZERO pfn lists.  A page that changes after it was
 * queued is fine: dirty logging saw the write, and a later pass or the
 * stop-and-copy sends it again.
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
#include "engine/engine.h"
#include "policy/policy.h"

enum src_state {
	S_SETUP, S_PRECOPY, S_SETTLE, S_SWITCHOVER, S_STOPCOPY, S_POSTCOPY, S_DONE, S_FAILED,
};

static const char *const state_names[] = {
	"setup", "precopy", "settle", "switchover", "stopcopy", "postcopy", "done", "failed",
};

/* Send slots: one per send the channel may have in flight, plus the one
 * being filled.  A slot's prefixes and page pointers must outlive its send. */
#define NSLOTS 9
#define PREFIX_MAX (PROTO_HDR_LEN + 8 + 8 * PROTO_MAX_BATCH)

struct send_slot {
	int64_t seq;                      /* last send using this slot, 0 = none */
	uint32_t n;                       /* pages mapped */
	uint64_t pfns[PROTO_MAX_BATCH];   /* the batch, as given */
	const void *ptrs[PROTO_MAX_BATCH];
	uint64_t data_pfns[PROTO_MAX_BATCH], zero_pfns[PROTO_MAX_BATCH];
	uint8_t pages_prefix[PREFIX_MAX], zero_prefix[PREFIX_MAX];
	struct iovec iov[PROTO_MAX_BATCH + 1];
};

struct hmig_source {
	struct hmig_config cfg;
	struct hmig_guest *g;
	struct hmig_guest_geometry geo;
	enum src_state state;
	struct net_pair net;
	struct rec_buf rx;
	struct send_slot *slots;
	unsigned slot_next;
	uint64_t *dirty;       /* pages to send next: dirtied since their last send */
	uint64_t *todo;        /* the pass being sent (a copy of dirty); scratch */
	uint64_t *held;        /* pages the destination holds a copy of, current or not */
	uint64_t batch[PROTO_MAX_BATCH];
	uint32_t batch_n;
	uint32_t batch_max;
	_Atomic bool force;
	bool paused;           /* we paused the guest: resume it on failure */
	bool resumed_remote;   /* the destination runs the guest: never resume here */
	uint64_t t0, t_pause;
	uint64_t sync_token;   /* last SYNC sent */
	uint32_t settle_rounds;
	uint64_t dropped_early; /* pages the destination dropped before the pause */
	uint64_t dropped_late;  /* ... and in the downtime */
	uint64_t tl_ns, tl_ops;  /* the last timeline row, for guest ops/s */
	/* counters for the report */
	uint64_t pages_sent, pages_zero, pages_resent;
	uint64_t *ever_sent;   /* pages sent at least once, for "duplicate" */
	uint8_t *hot;          /* per page: passes that found it dirty (saturating) */
	/* post-copy */
	uint64_t *unsent;      /* stale pages neither pushed nor pulled yet */
	uint64_t unsent_count;
	uint64_t *order;       /* push=hot: the stale set, hottest first */
	uint64_t order_len, order_pos, cursor;
	uint64_t near[PROTO_MAX_BATCH]; /* push=near: pages queued after a pull */
	uint32_t near_head, near_len;
	struct send_slot *uslot; /* replies on the urgent channel */
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
	s->slots = calloc(NSLOTS, sizeof(*s->slots));
	guest->ops->geometry(guest, &s->geo);
	s->dirty = bitmap_new(s->geo.npages);
	s->todo = bitmap_new(s->geo.npages);
	s->held = bitmap_new(s->geo.npages);
	s->ever_sent = bitmap_new(s->geo.npages);
	s->hot = calloc(s->geo.npages, 1);
	s->unsent = bitmap_new(s->geo.npages);
	s->uslot = calloc(1, sizeof(*s->uslot));
	stats_report_init(&s->rep, STATS_SIDE_SOURCE);
	if (!s->slots || !s->dirty || !s->todo || !s->held || !s->ever_sent || !s->hot || !s->unsent ||
	    !s->uslot) {
		hmig_source_free(s);
		return err_setf(errbuf, -ENOMEM, "out of memory for %lu pages of bookkeeping",
				(unsigned long)s->geo.npages);
	}
	s->batch_max = cfg->batch_pages;
	uint32_t proto_max = proto_pages_max_count(&s->geo);
	if (s->batch_max > proto_max)
		s->batch_max = proto_max;
	*out = s;
	return 0;
}

static int connect_and_hello(struct hmig_source *s, const char *addr)
{
	struct proto_hello ours = {
		.mode = s->cfg.mode,
		.caps = 0,
		.session_id = eng_session_id(),
		.geo = s->geo,
	};
	struct net_opts opts = { .peer = "destination", .disable = NET_F_SEND_ZC };
	uint8_t buf[PROTO_HDR_LEN + PROTO_HELLO_LEN];
	struct proto_hello peer;
	struct proto_hdr h;
	int rc, n;

	snprintf(ours.backend, sizeof(ours.backend), "%s", s->g->ops->name);
	rc = net_connect_pair(addr, ours.session_id, s->cfg.connect_timeout_ms, &opts, &s->net);
	if (rc)
		return err_setf(s->err, rc, "%s", s->net.err);
	if (s->cfg.rate_limit_bps)
		net_chan_set_rate(&s->net.bulk, s->cfg.rate_limit_bps);

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

static bool page_is_zero(const void *p, size_t len)
{
	const uint64_t *w = p;

	for (size_t i = 0; i < len / 8; i++)
		if (w[i])
			return false;
	return true;
}

/* Waits for the slot's previous send on `ch`, then releases its page
 * mappings. */
static int slot_reclaim(struct hmig_source *s, struct net_chan *ch, struct send_slot *sl)
{
	if (sl->seq) {
		int rc = net_chan_send_wait(ch, sl->seq, s->cfg.io_timeout_ms);

		if (rc)
			return eng_io_error(s->err, rc, "destination", "sending pages", ch->err);
		sl->seq = 0;
	}
	if (sl->n) {
		s->g->ops->pages_unmap(s->g, sl->pfns, sl->n, sl->ptrs);
		sl->n = 0;
	}
	return 0;
}

static int post(struct hmig_source *s, struct net_chan *ch, struct send_slot *sl,
		const struct iovec *iov, int iovcnt)
{
	int64_t seq = net_chan_sendv(ch, iov, iovcnt);

	if (seq < 0)
		return eng_io_error(s->err, (int)seq, "destination", "sending pages", ch->err);
	sl->seq = seq;
	return 0;
}

/* Sends sl->pfns[0..n) on ch: zero pages as one ZERO record, the rest as one
 * PAGES record whose data iovecs point into guest memory (runs of adjacent
 * pages merged into one iovec).  The slot must be free (reclaimed); its
 * memory is in use until the send completes. */
static int send_slot(struct hmig_source *s, struct net_chan *ch, struct send_slot *sl,
		     uint32_t n)
{
	size_t ps = s->geo.page_size;
	uint32_t nd = 0, nz = 0;
	int rc;

	rc = s->g->ops->pages_map(s->g, sl->pfns, n, sl->ptrs);
	if (rc)
		return err_setf(s->err, rc, "reading guest pages: %s", hmig_guest_error(s->g));
	sl->n = n;

	int niov = 1;
	for (uint32_t i = 0; i < n; i++) {
		if (page_is_zero(sl->ptrs[i], ps)) {
			sl->zero_pfns[nz++] = sl->pfns[i];
			continue;
		}
		struct iovec *last = &sl->iov[niov - 1];
		if (nd && (const uint8_t *)last->iov_base + last->iov_len == sl->ptrs[i]) {
			last->iov_len += ps;
		} else {
			sl->iov[niov].iov_base = (void *)sl->ptrs[i];
			sl->iov[niov].iov_len = ps;
			niov++;
		}
		sl->data_pfns[nd++] = sl->pfns[i];
	}
	if (nz) {
		int len = proto_zero_encode(sl->zero_prefix, PREFIX_MAX, &s->geo, sl->zero_pfns, nz,
					    s->err);
		if (len < 0)
			return len;
		struct iovec z = { .iov_base = sl->zero_prefix, .iov_len = (size_t)len };
		if ((rc = post(s, ch, sl, &z, 1)))
			return rc;
	}
	if (nd) {
		int len = proto_pages_encode(sl->pages_prefix, PREFIX_MAX, &s->geo, sl->data_pfns,
					     nd, s->err);
		if (len < 0)
			return len;
		sl->iov[0].iov_base = sl->pages_prefix;
		sl->iov[0].iov_len = (size_t)len;
		if ((rc = post(s, ch, sl, sl->iov, niov)))
			return rc;
	}
	for (uint32_t i = 0; i < n; i++) {
		if (bitmap_test(s->ever_sent, sl->pfns[i]))
			s->pages_resent++;
		bitmap_set(s->ever_sent, sl->pfns[i]);
		bitmap_set(s->held, sl->pfns[i]);
	}
	s->pages_sent += nd;
	s->pages_zero += nz;
	return 0;
}

/* Sends the batch on bulk, in the next slot (waiting for that slot's
 * previous send first: the bulk queue's backpressure). */
static int flush_batch(struct hmig_source *s)
{
	struct send_slot *sl = &s->slots[s->slot_next];
	uint32_t n = s->batch_n;
	int rc;

	if (!n)
		return 0;
	s->batch_n = 0;
	s->slot_next = (s->slot_next + 1) % NSLOTS;
	if ((rc = slot_reclaim(s, &s->net.bulk, sl)))
		return rc;
	memcpy(sl->pfns, s->batch, n * sizeof(uint64_t));
	return send_slot(s, &s->net.bulk, sl, n);
}

static int queue_page(struct hmig_source *s, uint64_t pfn)
{
	s->batch[s->batch_n++] = pfn;
	return s->batch_n == s->batch_max ? flush_batch(s) : 0;
}

/* Waits until the kernel has taken every queued bulk send. */
static int bulk_drain(struct hmig_source *s)
{
	int rc;

	for (unsigned i = 0; i < NSLOTS; i++)
		if ((rc = slot_reclaim(s, &s->net.bulk, &s->slots[i])))
			return rc;
	return 0;
}

/* Sends every page in `set` (npages bits), or every page when set is NULL,
 * and waits until the kernel has taken them all.  Returns the page count. */
static int64_t send_set(struct hmig_source *s, const uint64_t *set)
{
	uint64_t n = 0;
	int rc;

	for (uint64_t p = set ? bitmap_next(set, s->geo.npages, 0) : 0; p < s->geo.npages;
	     p = set ? bitmap_next(set, s->geo.npages, p + 1) : p + 1) {
		if ((rc = queue_page(s, p)))
			return rc;
		n++;
	}
	if ((rc = flush_batch(s)))
		return rc;
	if ((rc = bulk_drain(s)))
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

/* One pass: sends `todo` (NULL: every page), then collects what the guest
 * dirtied meanwhile into s->dirty, the next pass's work. */
static int run_pass(struct hmig_source *s, uint32_t pass, const uint64_t *todo,
		    struct policy_pass *pp)
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
		if (s->hot[p] < UINT8_MAX)
			s->hot[p]++;
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

/* Runs passes until the policy stops them; returns its decision. */
static int precopy(struct hmig_source *s, enum policy_decision *decision)
{
	struct policy_pass pp = {
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
		bitmap_set_range(s->dirty, 0, s->geo.npages);
		s->rep.switchover.reason = STATS_REASON_MAX_PASSES;
		*decision = POLICY_POSTCOPY;
		return 0;
	}
	/* Pass 0 sends every page; pass n the pages pass n-1 saw dirtied. */
	for (uint32_t pass = 0;; pass++) {
		if (pass) {
			memcpy(s->todo, s->dirty, words * 8);
			memset(s->dirty, 0, words * 8);
		}
		if ((rc = run_pass(s, pass, pass ? s->todo : NULL, &pp)))
			return rc;
		pp.operator_forced = atomic_load(&s->force);
		enum hmig_reason why = HMIG_REASON_NONE;
		*decision = policy_decide(&s->cfg, &pp, &why);
		if (*decision != POLICY_PASS) {
			s->rep.switchover.reason = eng_stats_reason(why);
			return 0;
		}
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
		s->todo[w] = s->dirty[w] & s->held[w];
		s->held[w] &= ~s->todo[w];
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
	struct proto_done d = { .pages = s->pages_sent + s->pages_zero, .bytes = bulk_bytes(s) };
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

/* push=hot: the pages left to send ordered by how many passes found each
 * dirty, hottest first (a counting sort over the 256 possible counts).
 * Those are the pages the guest writes most, so it will touch them first.
 * It is O(guest), so it runs before the pause, over the dirty set of that
 * moment; what the final collect adds comes after the order, in pfn order
 * (next_push). */
static int order_hot(struct hmig_source *s, const uint64_t *set)
{
	uint64_t count[UINT8_MAX + 1] = { 0 }, start[UINT8_MAX + 1];
	uint64_t n = s->geo.npages;

	s->order = malloc(bitmap_count(set, n) * sizeof(uint64_t) + 1);
	if (!s->order)
		return err_setf(s->err, -ENOMEM, "out of memory for the push order");
	for (uint64_t p = bitmap_next(set, n, 0); p < n; p = bitmap_next(set, n, p + 1))
		count[s->hot[p]]++;
	uint64_t at = 0;
	for (int c = UINT8_MAX; c >= 0; c--) {
		start[c] = at;
		at += count[c];
	}
	for (uint64_t p = bitmap_next(set, n, 0); p < n; p = bitmap_next(set, n, p + 1))
		s->order[start[s->hot[p]]++] = p;
	s->order_len = at;
	return 0;
}

static bool take_unsent(struct hmig_source *s, uint64_t p)
{
	if (p >= s->geo.npages || !bitmap_test(s->unsent, p))
		return false;
	bitmap_clear(s->unsent, p);
	s->unsent_count--;
	return true;
}

/* The pusher's next page, in the order the knob asks for. */
static bool next_push(struct hmig_source *s, uint64_t *pfn)
{
	while (s->near_len) {
		uint64_t p = s->near[s->near_head];

		s->near_head = (s->near_head + 1) % PROTO_MAX_BATCH;
		s->near_len--;
		if (take_unsent(s, p)) {
			*pfn = p;
			return true;
		}
	}
	while (s->order_pos < s->order_len)
		if (take_unsent(s, s->order[s->order_pos++])) {
			*pfn = s->order[s->order_pos - 1];
			return true;
		}
	/* pfn order: push=seq and near, and what push=hot's order lacks. */
	s->cursor = bitmap_next(s->unsent, s->geo.npages, s->cursor);
	if (s->cursor >= s->geo.npages)
		return false;
	*pfn = s->cursor;
	return take_unsent(s, s->cursor);
}

/* push=near: the pages after a pulled one go out next (pre-paging). */
static void queue_near(struct hmig_source *s, uint64_t pfn)
{
	for (uint32_t k = 1; k <= s->cfg.near_pages && s->near_len < PROTO_MAX_BATCH; k++) {
		if (pfn + k >= s->geo.npages || !bitmap_test(s->unsent, pfn + k))
			continue;
		s->near[(s->near_head + s->near_len) % PROTO_MAX_BATCH] = pfn + k;
		s->near_len++;
	}
}

/* A pull request: the pages go back on the urgent channel at once, whatever
 * the pusher has queued on bulk. */
static int reply_request(struct hmig_source *s, const struct proto_hdr *h)
{
	struct send_slot *sl = s->uslot;
	struct proto_pages pg;
	int rc = proto_pages_decode(h, s->rx.p, &s->geo, &pg, s->err);

	if (rc)
		return rc;
	for (uint32_t i = 0; i < pg.count; i++) {
		sl->pfns[i] = proto_pages_pfn(&pg, i);
		/* Already pushed and on its way: send it again anyway, the
		 * destination installs whichever arrives first (send_slot counts
		 * it as a duplicate). */
		take_unsent(s, sl->pfns[i]);
	}
	if ((rc = send_slot(s, &s->net.urgent, sl, pg.count)) ||
	    (rc = slot_reclaim(s, &s->net.urgent, sl)))
		return rc;
	s->pulled += pg.count;
	if (s->cfg.push == HMIG_PUSH_NEAR)
		for (uint32_t i = 0; i < pg.count; i++)
			queue_near(s, sl->pfns[i]);
	return 0;
}

/* One batch of pushed pages on bulk; 0 when there was nothing to push. */
static int push_batch(struct hmig_source *s)
{
	uint64_t pfn;
	uint32_t n = 0;
	int rc;

	while (n < s->batch_max && next_push(s, &pfn)) {
		s->batch[s->batch_n++] = pfn;
		n++;
	}
	if ((rc = flush_batch(s)))
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
		if (s->cfg.push != HMIG_PUSH_OFF && s->unsent_count) {
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
			inflight[oldest] = s->slots[(s->slot_next + NSLOTS - 1) % NSLOTS].seq;
			oldest = (oldest + 1) % PUSH_INFLIGHT;
			continue;
		}
		if (!done_sent) {
			/* Nothing more will be pushed: the rest comes by pull. */
			struct proto_done d = { .pages = s->pushed, .requests = s->pulled };

			if ((rc = bulk_drain(s)) ||
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
	memcpy(s->unsent, s->dirty, BITMAP_WORDS(s->geo.npages) * 8);
	s->unsent_count = s->rep.switchover.stale_pages;
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
	s->rep.pages.sent = s->pages_sent;
	s->rep.pages.zero = s->pages_zero;
	s->rep.pages.duplicate = s->pages_resent;
	stats_report_set_extra_u64(&s->rep, "settle_rounds", s->settle_rounds);
	if (rc)
		stats_report_set_result(&s->rep, STATS_RESULT_FAILED, "%s", s->err);
	else
		stats_report_set_result(&s->rep, STATS_RESULT_OK, NULL);
}

int hmig_source_run(struct hmig_source *s, const char *addr)
{
	enum policy_decision decision = POLICY_STOPCOPY;
	int rc;

	s->t0 = clock_now_ns();
	set_state(s, S_SETUP);
	rc = connect_and_hello(s, addr);
	if (!rc)
		rc = precopy(s, &decision);
	if (!rc && decision == POLICY_POSTCOPY && s->cfg.push == HMIG_PUSH_HOT)
		rc = order_hot(s, s->dirty);
	if (!rc)
		rc = settle(s, decision == POLICY_POSTCOPY);
	if (!rc)
		rc = switchover(s);
	if (!rc)
		rc = decision == POLICY_POSTCOPY ? postcopy(s) : stopcopy(s);
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
	rec_buf_free(&s->rx);
	stats_report_free(&s->rep);
	free(s->slots);
	free(s->dirty);
	free(s->todo);
	free(s->held);
	free(s->ever_sent);
	free(s->hot);
	free(s->unsent);
	free(s->order);
	free(s->uslot);
	free(s);
}
