/* The destination: SETUP -> PRECOPY -> SWITCHOVER -> [STOPCOPY] -> LOADED
 * -> POSTCOPY | COMPLETE, RECOVERING after the LOADED when the link is lost,
 * and FAILED or CANCELLED before it.
 *
 *   PRECOPY     passes arrive and are installed (a later pass overwrites an
 *               earlier one: the guest does not run here yet); DIRTY drops
 *               pages the source's guest rewrote, SYNC is answered
 *   SWITCHOVER  the stale set (STALE), then the vCPU state
 *   STOPCOPY    the stale pages, then the source's DONE
 *   LOADED      everything needed to start is here, and LOADED went back:
 *               the guest starts only on the source's COMMIT (RESUMED goes
 *               back then).  From LOADED on, this side never gives the
 *               guest up: the source may have committed.
 *   POSTCOPY    the guest runs; pushed pages arrive on bulk, pulls go
 *               through the fault handler (fault.c) on urgent, until every
 *               page is present
 *
 * Each state accepts the records of its row in `accepts` and no other.
 * Every record is checked against the geometry by src/proto before any byte
 * of it reaches guest memory; the page sets are engine/pages.c's.
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <hmig/hmig.h>

#include "common/bitmap.h"
#include "common/clock.h"
#include "common/err.h"
#include "common/esc.h"
#include "engine/engine.h"
#include "engine/fault.h"
#include "engine/pages.h"
#include "engine/progress.h"
#include "stats/hist.h"

enum dst_state {
	D_SETUP, D_PRECOPY, D_SWITCHOVER, D_STOPCOPY, D_LOADED, D_POSTCOPY, D_RECOVERING,
	D_COMPLETE, D_FAILED, D_CANCELLED,
};

static const char *const state_names[] = {
	"setup", "receiving", "switchover", "stopcopy", "loaded", "postcopy", "recovering",
	"complete", "failed", "cancelled",
};

/* Who may still end the migration here: OWNED until LOADED goes back (a
 * cancel is clean: the source has not committed), HANDED from then on (the
 * source may have committed: this side keeps the guest).  One
 * compare-and-swap settles a cancel that races with LOADED. */
enum { OWNED, CANCELLING, HANDED };

#define R(t) (1u << (t))

/* The records each state takes from the source on bulk. */
static const uint32_t accepts[] = {
	[D_PRECOPY] = R(PROTO_PAGES) | R(PROTO_ZERO) | R(PROTO_PASS_END) | R(PROTO_DIRTY) |
		      R(PROTO_SYNC) | R(PROTO_STALE),
	[D_SWITCHOVER] = R(PROTO_STALE) | R(PROTO_VCPU_STATE),
	[D_STOPCOPY] = R(PROTO_PAGES) | R(PROTO_ZERO) | R(PROTO_DONE),
	[D_LOADED] = R(PROTO_COMMIT),
	[D_POSTCOPY] = R(PROTO_PAGES) | R(PROTO_ZERO) | R(PROTO_DONE),
};

struct hmig_dest {
	struct hmig_config cfg;
	struct hmig_guest *g;
	struct hmig_guest_geometry geo;
	enum dst_state state;
	struct net_listener listener;
	struct net_pair net;
	struct net_tls *tls;     /* credentials; NULL: insecure */
	hmig_reject_fn on_reject;
	void *reject_data;
	struct rec_buf rx;
	struct pages pages;      /* present / requested / missing */
	struct fault_handler fh; /* post-copy only */
	uint64_t *stale;         /* a STALE or DIRTY set being received */
	bool postcopy;           /* the vCPU state said post-copy */
	bool done;               /* every page is here and our DONE went back */
	uint64_t session_id;     /* of the first connection: a recovery must match */
	_Atomic int owner;       /* OWNED, CANCELLING, HANDED */
	uint32_t recoveries;
	double paused_link_ms;   /* time spent with the link down */
	uint64_t t0, t_switch, t_resume, t_complete;
	uint64_t bulk_at_resume; /* bulk bytes received when the guest resumed */
	uint64_t ops_at_resume;  /* guest ops when it resumed */
	uint64_t dropped_early;  /* pages DIRTY made missing before the switchover */
	uint64_t dropped_late;   /* ... and STALE, inside the downtime */
	/* written by pages' hook, under pages.lock; read after the handler stops */
	struct stats_hist fault_lat; /* fault read -> page installed, ns */
	double blocktime_ns;
	/* What the status and the timeline read from other threads (the
	 * progress lock guards the channels' replacement and the page sets'
	 * making, engine/progress.h). */
	struct progress prog;
	struct {
		_Atomic int state;
		_Atomic bool finished, started;
		_Atomic uint64_t lat_sum_ns, lat_n; /* served faults */
	} live;
	bool pages_live;         /* under the progress lock: pages is made */
	struct link_bytes bytes; /* received, over every link */
	struct stats_report rep;
	char err[ERR_LEN];
};

/* Bytes received on bulk (urgent), over every link this migration had.
 * The engine's thread, or under the progress lock. */
static uint64_t bulk_bytes(struct hmig_dest *d)
{
	return link_bytes(&d->bytes, &d->net, NET_BULK);
}

static uint64_t urgent_bytes(struct hmig_dest *d)
{
	return link_bytes(&d->bytes, &d->net, NET_URGENT);
}

static void net_close(struct hmig_dest *d)
{
	link_down(&d->bytes, &d->prog, &d->net);
	net_pair_close(&d->net);
}

/* progress's read: the figures of now, for the timeline and the status. */
static void progress_read(void *ctx, struct progress_raw *r)
{
	struct hmig_dest *d = ctx;
	struct hmig_guest_stats gs;

	*r = (struct progress_raw){
		.phase = state_names[atomic_load(&d->live.state)],
		.finished = atomic_load(&d->live.finished),
		.pages_present = STATS_NONE,
		.pages_left = STATS_NONE,
		.bytes_bulk = bulk_bytes(d),
		.bytes_urgent = urgent_bytes(d),
		.lat_sum_ns = atomic_load(&d->live.lat_sum_ns),
		.lat_n = atomic_load(&d->live.lat_n),
		.guest_here = atomic_load(&d->live.started),
		.dirty_rate_pps = NAN,
		.downtime_ms = NAN, /* the source's to measure: see finish_report */
	};
	if (d->pages_live) {
		struct pages_counts c;

		pages_counts(&d->pages, &c);
		r->page_size = d->geo.page_size; /* set before the pages */
		r->guest_pages = d->geo.npages - c.never;
		r->pages_present = c.present - c.never;
		r->pulled = c.pulled;
		if (atomic_load(&d->live.started))
			r->pages_left = d->geo.npages - c.present;
	}
	if (r->guest_here && d->g->ops->stats(d->g, &gs) == 0)
		r->guest_ops = gs.ops;
}

static void timeline(struct hmig_dest *d, const char *event)
{
	progress_event(&d->prog, event);
}

/* States change here only, and each change is a timeline row. */
static void set_state(struct hmig_dest *d, enum dst_state st)
{
	d->state = st;
	atomic_store(&d->live.state, (int)st);
	timeline(d, state_names[st]);
}

/* pages' hook: a page vCPUs waited for is in. */
static void fault_served(void *ctx, uint64_t latency_ns, uint32_t waiters)
{
	struct hmig_dest *d = ctx;

	stats_hist_add(&d->fault_lat, latency_ns);
	d->blocktime_ns += (double)latency_ns * waiters;
	atomic_fetch_add_explicit(&d->live.lat_sum_ns, latency_ns, memory_order_relaxed);
	atomic_fetch_add_explicit(&d->live.lat_n, 1, memory_order_relaxed);
}

/* The listener turned a connection away: count it, tell the caller's hook. */
static void rejected(void *ctx, const char *from, const char *why)
{
	struct hmig_dest *d = ctx;
	char line[ERR_LEN];

	d->rep.security.rejected++;
	esc_text(line, sizeof(line), why, strlen(why));
	if (d->on_reject)
		d->on_reject(d->reject_data, from, line);
}

void hmig_dest_set_reject_hook(struct hmig_dest *d, hmig_reject_fn fn, void *data)
{
	d->on_reject = fn;
	d->reject_data = data;
}

int hmig_dest_new(const struct hmig_config *cfg, struct hmig_guest *guest,
		  const char *listen_addr, struct hmig_dest **out, char *errbuf)
{
	struct hmig_dest *d;
	struct net_opts opts = { .peer = "source", .on_reject = rejected };
	int rc;

	*out = NULL;
	if (hmig_config_check(cfg, errbuf))
		return -EINVAL;
	d = calloc(1, sizeof(*d));
	if (!d)
		return err_setf(errbuf, -ENOMEM, "out of memory");
	d->cfg = *cfg;
	d->g = guest;
	stats_hist_init(&d->fault_lat);
	stats_report_init(&d->rep, STATS_SIDE_DESTINATION);
	if ((rc = progress_init(&d->prog, &d->rep, progress_read, d))) {
		free(d);
		return err_setf(errbuf, rc, "cannot set up the status lock");
	}
	if ((rc = eng_tls_load(cfg, true, &d->tls, errbuf))) {
		hmig_dest_free(d);
		return rc;
	}
	opts.tls = d->tls;
	opts.reject_ctx = d;
	rc = net_listen(&d->listener, listen_addr, &opts);
	if (rc) {
		err_setf(errbuf, rc, "%s", d->listener.err);
		hmig_dest_free(d);
		return rc;
	}
	*out = d;
	return 0;
}

const char *hmig_dest_address(const struct hmig_dest *d)
{
	return d->listener.addr.text;
}

/* ------------------------------------------------------------------ hello */

static int accept_and_hello(struct hmig_dest *d)
{
	uint8_t buf[PROTO_HDR_LEN + PROTO_HELLO_LEN];
	struct proto_hello peer, ours;
	struct proto_hdr h;
	int rc, n;

	rc = net_accept_pair(&d->listener, d->cfg.accept_timeout_ms ? d->cfg.accept_timeout_ms : -1,
			     &d->net);
	if (rc)
		return err_setf(d->err, rc, "%s", d->net.err);
	link_up(&d->bytes, &d->prog);
	eng_report_security(&d->rep, &d->net.bulk);
	d->t0 = clock_now_ns();
	if ((rc = progress_start(&d->prog, d->cfg.sample_ms)))
		return err_setf(d->err, rc, "cannot start the timeline sampler");
	d->session_id = d->net.session_id;
	eng_pair_timeouts(&d->net, d->cfg.io_timeout_ms);
	rc = eng_rec_read(&d->net.bulk, NULL, d->cfg.io_timeout_ms, "source", &h, &d->rx, d->err);
	if (rc)
		return rc;
	if (h.type != PROTO_HELLO)
		return err_setf(d->err, -EPROTO, "the source began with %s instead of HELLO",
				proto_type_name(h.type));
	if ((rc = proto_hello_decode(&h, d->rx.p, &peer, d->err)))
		return rc;
	if (peer.session_id != d->net.session_id)
		return err_setf(d->err, -EPROTO,
				"the source's HELLO names session %016llx, its channels %016llx (a HELLO from another migration?)",
				(unsigned long long)peer.session_id,
				(unsigned long long)d->net.session_id);
	/* Before anything is allocated for the guest. */
	if ((rc = eng_mem_allowed(&peer.geo, d->cfg.max_mem, d->err)))
		return rc;
	if (strcmp(peer.backend, d->g->ops->name))
		return err_setf(d->err, -EINVAL,
				"the source moves a '%s' guest, this destination holds '%s' guests",
				peer.backend, d->g->ops->name);
	rc = d->g->ops->dest_prepare(d->g, &peer.geo);
	if (rc)
		return err_setf(d->err, rc, "cannot hold the source's guest: %s",
				hmig_guest_error(d->g));
	d->geo = peer.geo;
	/* HELLO does not carry VCPU_STATE's limit: this side's backend, the
	 * same as the source's, declares it. */
	struct hmig_guest_geometry mine;
	d->g->ops->geometry(d->g, &mine);
	d->geo.vcpu_state_max = mine.vcpu_state_max;
	d->cfg.mode = (enum hmig_mode)peer.mode; /* proto checked the range */
	struct pages_hook hook = { fault_served, d };
	d->stale = bitmap_new(d->geo.npages);
	progress_lock(&d->prog);
	rc = d->stale ? pages_init(&d->pages, d->g, &d->geo, hook) : -ENOMEM;
	d->pages_live = !rc;
	progress_unlock(&d->prog);
	if (rc)
		return err_setf(d->err, -ENOMEM, "out of memory for %lu pages of bookkeeping",
				(unsigned long)d->geo.npages);
	d->pages.crc_required = !d->net.bulk.tls; /* plaintext: CRC32C on every page */
	/* What the backend never moves is there from the start (d->stale is
	 * free scratch until the switchover). */
	int64_t never = d->g->ops->pfns_never_sent(d->g, d->stale);
	if (never < 0)
		return err_setf(d->err, (int)never, "%s", hmig_guest_error(d->g));
	if (pages_never_sent(&d->pages, d->stale))
		return err_setf(d->err, -ENOMEM, "out of memory for the never-sent pfns");
	memset(d->stale, 0, BITMAP_WORDS(d->geo.npages) * sizeof(uint64_t));
	ours = peer; /* echo: the source checks we agreed to its geometry */
	/* Post-copy needs a backend that can leave pages missing after start:
	 * one that cannot has no fault fd (include/hmig/guest.h). */
	ours.caps = d->g->ops->fault_fd(d->g) >= 0 ? PROTO_CAP_POSTCOPY : 0;
	stats_report_set_extra_bool(&d->rep, "postcopy_available", ours.caps != 0);
	/* Asked for post-copy it cannot do, this side refuses first, with
	 * its backend's reason (the source's own refusal could only say the
	 * capability is missing, not why): the ERROR goes back in place of
	 * HELLO, before any page moves. */
	if (!ours.caps && d->cfg.mode == HMIG_MODE_POSTCOPY)
		return err_setf(d->err, -EOPNOTSUPP, "post-copy refused (no PROTO_CAP_POSTCOPY here): %s",
				hmig_guest_error(d->g));
	n = proto_hello_encode(buf, sizeof(buf), &ours, d->err);
	if (n < 0)
		return n;
	return eng_rec_send(&d->net.bulk, buf, (size_t)n, d->cfg.io_timeout_ms, d->err);
}

/* -------------------------------------------------------------- pre-copy */

static int on_pass_end(struct hmig_dest *d, const struct proto_hdr *h)
{
	struct proto_pass_end pe;
	int rc = proto_pass_end_decode(h, d->rx.p, &d->geo, &pe, d->err);
	char phase[32];

	if (rc)
		return rc;
	snprintf(phase, sizeof(phase), "pass %lu", (unsigned long)pe.pass);
	timeline(d, phase);
	return 0;
}

/* DIRTY: the source's guest wrote these pages after sending them.  The
 * guest does not run here yet, so they can go now, which leaves only the
 * last moments' writes to drop in the downtime. */
static int on_dirty(struct hmig_dest *d, const struct proto_hdr *h)
{
	int rc = proto_stale_decode(h, d->rx.p, &d->geo, d->stale, d->err);

	if (rc || !(h->flags & PROTO_FLAG_LAST))
		return rc;
	int64_t n = pages_drop(&d->pages, d->stale, d->err);
	if (n < 0)
		return (int)n;
	d->dropped_early += (uint64_t)n;
	return 0;
}

/* SYNC: everything before it is installed or dropped; say so.  The
 * source's pause may follow: what the switchover walks here is warmed
 * first (common/bitmap.h, bitmap_warm). */
static int on_sync(struct hmig_dest *d, const struct proto_hdr *h)
{
	uint8_t buf[PROTO_HDR_LEN + 8];
	uint64_t token;
	int rc = proto_sync_decode(h, d->rx.p, &token, d->err);

	if (rc)
		return rc;
	pages_warm(&d->pages);
	bitmap_warm(d->stale, d->geo.npages);
	int n = proto_sync_encode(buf, sizeof(buf), token, d->err);
	if (n < 0)
		return n;
	return eng_rec_send(&d->net.bulk, buf, (size_t)n, d->cfg.io_timeout_ms, d->err);
}

/* ------------------------------------------------------------- switchover */

static int on_stale(struct hmig_dest *d, const struct proto_hdr *h)
{
	if (d->state == D_PRECOPY) {
		d->t_switch = clock_now_ns();
		set_state(d, D_SWITCHOVER);
	}
	return proto_stale_decode(h, d->rx.p, &d->geo, d->stale, d->err);
}

/* Starts the guest here and tells the source (RESUMED).  Stop-and-copy
 * gets here with every page present; post-copy with the fault handler
 * running. */
static int start_guest(struct hmig_dest *d)
{
	uint8_t buf[PROTO_HDR_LEN + 24];
	struct hmig_guest_stats gs;
	int rc, n;

	if ((rc = d->g->ops->start(d->g)))
		return err_setf(d->err, rc, "starting the guest: %s", hmig_guest_error(d->g));
	d->t_resume = clock_now_ns();
	atomic_store(&d->live.started, true);
	d->bulk_at_resume = bulk_bytes(d);
	d->g->ops->stats(d->g, &gs);
	d->ops_at_resume = gs.ops;
	timeline(d, "resumed");
	struct proto_resumed r = { .downtime_ns = d->t_resume - d->t_switch };
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	r.resume_wall_ns = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
	n = proto_resumed_encode(buf, sizeof(buf), &r, d->err);
	if (n < 0)
		return n;
	return eng_rec_send(&d->net.bulk, buf, (size_t)n, d->cfg.io_timeout_ms, d->err);
}

/* Everything needed to start the guest is here: say so, and from now on
 * keep it (the source may commit at any moment, and then this side holds
 * the only copy that may ever run). */
static int send_loaded(struct hmig_dest *d)
{
	uint8_t rec[PROTO_HDR_LEN + 8];
	int expect = OWNED;

	if (!atomic_compare_exchange_strong(&d->owner, &expect, HANDED))
		return err_setf(d->err, -ECANCELED, "cancelled by the operator before the commit");
	set_state(d, D_LOADED);
	return eng_rec_send(&d->net.bulk, rec,
			    (size_t)proto_token_encode(rec, sizeof(rec), PROTO_LOADED, d->session_id,
						       d->err),
			    d->cfg.io_timeout_ms, d->err);
}

static int on_vcpu_state(struct hmig_dest *d, const struct proto_hdr *h)
{
	const void *blob;
	size_t len;
	int rc = proto_vcpu_decode(h, d->rx.p, &blob, &len, d->err);

	if (rc)
		return rc;
	rc = d->g->ops->vcpu_restore(d->g, blob, len);
	if (rc)
		return err_setf(d->err, rc, "restoring vCPU state: %s", hmig_guest_error(d->g));
	/* Pages still to come: never sent here, or sent and rewritten since. */
	d->rep.switchover.stale_pages = d->geo.npages - pages_present(&d->pages) +
					bitmap_count(d->stale, d->geo.npages);
	if (!(h->flags & PROTO_FLAG_POSTCOPY)) {
		/* Stop-and-copy: the stale pages follow and overwrite their copies. */
		memset(d->stale, 0, BITMAP_WORDS(d->geo.npages) * sizeof(uint64_t));
		set_state(d, D_STOPCOPY);
		return 0;
	}
	/* Post-copy: the stale copies go now, so that the guest can start the
	 * moment the commit comes; what it touches then is pulled. */
	int64_t dropped = pages_drop(&d->pages, d->stale, d->err);
	if (dropped < 0)
		return (int)dropped;
	d->dropped_late = (uint64_t)dropped;
	if (pages_start_postcopy(&d->pages))
		return err_setf(d->err, -ENOMEM, "out of memory for fault bookkeeping");
	d->postcopy = true;
	return send_loaded(d);
}

/* Every page is here: stop trapping faults and say DONE.  The connection
 * stays open for the verdict (hmig_dest_set_integrity). */
static int complete(struct hmig_dest *d)
{
	uint8_t buf[PROTO_HDR_LEN + 24];
	int rc, n;

	if ((rc = d->g->ops->faults_done(d->g)))
		return err_setf(d->err, rc, "%s", hmig_guest_error(d->g));
	d->t_complete = clock_now_ns();
	struct proto_done done = { .pages = d->pages.installs, .requests = d->fh.requests };
	n = proto_done_encode(buf, sizeof(buf), &done, d->err);
	if (n < 0)
		return n;
	if ((rc = eng_rec_send(&d->net.bulk, buf, (size_t)n, d->cfg.io_timeout_ms, d->err)))
		return rc;
	d->done = true;
	return 0;
}

/* The source's COMMIT: the guest is ours; start it. */
static int on_commit(struct hmig_dest *d, const struct proto_hdr *h)
{
	uint64_t token;
	int rc = proto_token_decode(h, d->rx.p, &token, d->err);

	if (rc)
		return rc;
	if (token != d->session_id)
		return err_setf(d->err, -EPROTO, "COMMIT for session %016lx, this is %016lx",
				(unsigned long)token, (unsigned long)d->session_id);
	if (d->postcopy) {
		if ((rc = fault_start(&d->fh, &d->pages, d->g, &d->geo, &d->net.urgent,
				      d->cfg.io_timeout_ms, d->err)))
			return rc;
		set_state(d, D_POSTCOPY);
		return start_guest(d);
	}
	pages_start(&d->pages);
	if ((rc = start_guest(d)))
		return rc;
	return complete(d);
}

/* The source's DONE.  Stop-and-copy: every page must be here, and LOADED
 * goes back.  Post-copy: it will push nothing more; wait until pulls bring
 * the rest. */
static int on_done(struct hmig_dest *d)
{
	int rc;

	if (d->state == D_STOPCOPY) {
		uint64_t missing = d->geo.npages - pages_present(&d->pages);

		if (missing)
			return err_setf(d->err, -EPROTO,
					"the source finished but %lu of %lu pages never arrived",
					(unsigned long)missing, (unsigned long)d->geo.npages);
		return send_loaded(d);
	}
	/* A wake with pages missing is the handler ending (its link died, or a
	 * bad record): its reason goes to receive(), which knows what to do. */
	while (!pages_wait_all(&d->pages))
		if (atomic_load(&d->fh.exited))
			break;
	if ((rc = fault_stop(&d->fh)))
		return rc;
	if (pages_present(&d->pages) != d->geo.npages)
		return err_setf(d->err, -EIO, "the fault handler stopped with pages missing");
	return complete(d);
}

/* The link died after LOADED: the source may have committed, so the guest
 * is kept (vCPUs that touch a missing page wait) and the source is waited
 * for, recover_timeout_ms at most.  It comes back on a new pair of
 * connections with the same session id, says RECOVER, and learns where
 * this side stands and which pages it still needs; the fault handler asks
 * again for what it had asked. */
static int recover(struct hmig_dest *d, int cause)
{
	enum dst_state was = d->state;
	uint64_t t_lost = clock_now_ns();
	char cause_text[ERR_LEN];
	int rc;

	memcpy(cause_text, d->err, ERR_LEN);
	fault_stop(&d->fh); /* it failed on the same link */
	net_close(d);
	set_state(d, D_RECOVERING);
	for (;;) {
		int left = -1;

		if (d->cfg.recover_timeout_ms) {
			double spent = clock_ms(clock_now_ns() - t_lost);

			if (spent >= d->cfg.recover_timeout_ms)
				return err_setf(d->err, cause,
						was == D_LOADED
							? "the source did not come back in %d ms after the link was lost (%.90s): it never committed (so the guest runs there) or it is gone; this side never started the guest"
							: "the source did not come back in %d ms after the link was lost (%.90s): %lu pages are still missing here",
						d->cfg.recover_timeout_ms, cause_text,
						(unsigned long)(d->geo.npages - pages_present(&d->pages)));
			left = d->cfg.recover_timeout_ms - (int)spent;
		}
		rc = net_accept_pair(&d->listener, left, &d->net);
		if (rc == -ECANCELED || (rc && rc != -ETIMEDOUT))
			return err_setf(d->err, rc, "waiting for the source to come back: %s", d->net.err);
		if (rc)
			continue;
		if (d->net.session_id == d->session_id)
			break;
		/* Another migration's source: not ours to serve. */
		eng_send_error(&d->net.bulk, -EBUSY, "this destination is recovering another migration");
		net_pair_close(&d->net);
	}
	link_up(&d->bytes, &d->prog);
	eng_pair_timeouts(&d->net, d->cfg.io_timeout_ms);

	struct proto_hdr h;
	struct proto_recover theirs;
	if ((rc = eng_rec_read(&d->net.bulk, &d->geo, d->cfg.io_timeout_ms, "source", &h, &d->rx,
			       d->err)))
		return rc;
	if (h.type != PROTO_RECOVER)
		return err_setf(d->err, -EPROTO, "a reconnected source began with %s, not RECOVER",
				proto_type_name(h.type));
	if ((rc = proto_recover_decode(&h, d->rx.p, &theirs, d->err)))
		return rc;
	bool all = pages_present(&d->pages) == d->geo.npages;
	struct proto_recover ours = {
		.session_id = d->session_id,
		.flags = PROTO_RECOVER_LOADED,
		.state = was == D_LOADED ? PROTO_RECOVER_WAITING
			 : all ? PROTO_RECOVER_COMPLETE : PROTO_RECOVER_RUNNING,
	};
	uint8_t rec[PROTO_HDR_LEN + PROTO_STALE_MAX_BODY];
	if ((rc = eng_rec_send(&d->net.bulk, rec,
			       (size_t)proto_recover_encode(rec, sizeof(rec), &ours, d->err),
			       d->cfg.io_timeout_ms, d->err)))
		return rc;
	/* What is still needed (d->stale is free scratch after the switchover). */
	pages_missing(&d->pages, d->stale);
	uint64_t pos = 0;
	do {
		int n = proto_missing_encode(rec, sizeof(rec), &d->geo, d->stale, &pos, d->err);

		if (n < 0)
			return n;
		if ((rc = eng_rec_send(&d->net.bulk, rec, (size_t)n, d->cfg.io_timeout_ms, d->err)))
			return rc;
	} while (pos < d->geo.npages);
	memset(d->stale, 0, BITMAP_WORDS(d->geo.npages) * sizeof(uint64_t));
	d->recoveries++;
	d->paused_link_ms += clock_ms(clock_now_ns() - t_lost);
	timeline(d, "recovered");
	d->state = was;
	if (was == D_POSTCOPY)
		return fault_start(&d->fh, &d->pages, d->g, &d->geo, &d->net.urgent,
				   d->cfg.io_timeout_ms, d->err);
	return 0;
}

/* The record loop of the bulk channel, from the first pass to our DONE.
 * After LOADED a lost link is waited out (recover); before it, it fails
 * the migration here, and the source, which has not committed, goes on. */
static int receive(struct hmig_dest *d)
{
	struct proto_hdr h;
	int rc;

	set_state(d, D_PRECOPY);
	while (!d->done) {
		if (atomic_load(&d->owner) == CANCELLING)
			return err_setf(d->err, -ECANCELED, "cancelled by the operator before the commit");
		rc = eng_rec_read(&d->net.bulk, &d->geo, d->cfg.io_timeout_ms, "source", &h, &d->rx,
				  d->err);
		if (!rc && h.type < 32 && (accepts[d->state] & R(h.type))) {
			switch ((enum proto_type)h.type) {
			case PROTO_PAGES:
			case PROTO_ZERO:
				rc = pages_install_record(&d->pages, &d->geo, &h, d->rx.p,
							  d->state == D_POSTCOPY ? VIA_PUSH : VIA_PASS,
							  d->err);
				break;
			case PROTO_PASS_END:
				rc = on_pass_end(d, &h);
				break;
			case PROTO_DIRTY:
				rc = on_dirty(d, &h);
				break;
			case PROTO_SYNC:
				rc = on_sync(d, &h);
				break;
			case PROTO_STALE:
				rc = on_stale(d, &h);
				break;
			case PROTO_VCPU_STATE:
				rc = on_vcpu_state(d, &h);
				break;
			case PROTO_COMMIT:
				rc = on_commit(d, &h);
				break;
			case PROTO_DONE:
				rc = on_done(d);
				if (rc && d->fh.rc) /* the fault handler's reason */
					memcpy(d->err, d->fh.err, ERR_LEN);
				break;
			default: /* excluded by accepts[] */
				rc = -EPROTO;
			}
		} else if (!rc) {
			rc = err_setf(d->err, -EPROTO, "unexpected %s record from the source in %s",
				      proto_type_name(h.type), state_names[d->state]);
		}
		if (rc && eng_link_lost(rc) && (d->state == D_LOADED || d->state == D_POSTCOPY))
			rc = recover(d, rc);
		if (rc && d->state == D_POSTCOPY) {
			char cause[ERR_LEN];

			memcpy(cause, d->err, ERR_LEN);
			return err_setf(d->err, rc,
					"post-copy failed with %lu pages still missing, the guest cannot go on: %.130s",
					(unsigned long)(d->geo.npages - pages_present(&d->pages)),
					cause);
		}
		if (rc)
			return rc;
	}
	return 0;
}

static void finish_report(struct hmig_dest *d, int rc)
{
	uint64_t bulk = bulk_bytes(d), urgent = urgent_bytes(d);

	eng_report_guest(&d->rep, d->cfg.mode, d->g, &d->geo);
	d->rep.total_ms = d->t0 ? clock_ms(clock_now_ns() - d->t0) : NAN;
	d->rep.bytes.total = bulk + urgent;
	d->rep.pages.duplicate = d->pages.duplicates;
	d->rep.pages.pulled = d->pages.pulled;
	d->rep.pages.pushed = d->pages.pushed;
	/* Pages made missing again: before the pause (DIRTY) and inside the
	 * downtime (STALE, post-copy). */
	stats_report_set_extra_u64(&d->rep, "stale_dropped_before_pause", d->dropped_early);
	stats_report_set_extra_u64(&d->rep, "stale_dropped_in_downtime", d->dropped_late);
	/* The downtime starts when the source pauses the guest, which this side
	 * does not see: downtime_ms is the source's (null here).  What this side
	 * saw of it: from the switchover's first record to the start. */
	stats_report_set_extra_double(&d->rep, "switchover_to_resume_ms",
				      d->t_switch && d->t_resume ? clock_ms(d->t_resume - d->t_switch)
								 : NAN);
	stats_report_set_extra_u64(&d->rep, "recoveries", d->recoveries);
	stats_report_set_extra_double(&d->rep, "recovery_paused_ms", d->paused_link_ms);
	if (d->pages.t_fault) { /* post-copy ran */
		d->rep.faults.count = d->fh.faults;
		d->rep.faults.blocktime_ms = d->blocktime_ns / 1e6;
		if (d->fault_lat.count)
			stats_report_set_fault_latency(&d->rep, &d->fault_lat);
		d->rep.bytes.push = bulk - d->bulk_at_resume;
		d->rep.bytes.pull = urgent;
		if (d->t_complete) {
			struct hmig_guest_stats gs;

			d->g->ops->stats(d->g, &gs);
			stats_report_set_extra_double(&d->rep, "resume_to_complete_ms",
						      clock_ms(d->t_complete - d->t_resume));
			stats_report_set_extra_double(&d->rep, "guest_ops_per_s_postcopy",
						      (double)(gs.ops - d->ops_at_resume) /
						      ((double)(d->t_complete - d->t_resume) / 1e9));
		}
	}
	/* The error line may quote the peer (its ERROR text, a vCPU state
	 * the backend refused): escaped once here, before anyone prints it. */
	esc_inplace(d->err, ERR_LEN);
	if (rc)
		stats_report_set_result(&d->rep, STATS_RESULT_FAILED, "%s", d->err);
	else
		stats_report_set_result(&d->rep, STATS_RESULT_OK, NULL);
}

int hmig_dest_run(struct hmig_dest *d)
{
	int rc;

	set_state(d, D_SETUP);
	rc = accept_and_hello(d);
	if (!rc)
		rc = receive(d);
	if (rc && atomic_load(&d->owner) == CANCELLING)
		rc = err_setf(d->err, -ECANCELED, "cancelled by the operator before the commit");
	if (rc) {
		set_state(d, rc == -ECANCELED ? D_CANCELLED : D_FAILED);
		fault_stop(&d->fh);
		pages_wake(&d->pages);
		eng_send_error(&d->net.bulk, rc, d->err);
		net_close(d);
	} else {
		set_state(d, D_COMPLETE);
	}
	progress_stop(&d->prog);
	atomic_store(&d->live.finished, true);
	finish_report(d, rc);
	/* On success the connection stays open for the verdict. */
	net_listener_close(&d->listener);
	return rc;
}

int hmig_dest_cancel(struct hmig_dest *d)
{
	int expect = OWNED;

	if (!atomic_compare_exchange_strong(&d->owner, &expect, CANCELLING))
		return expect == HANDED ? -EBUSY : 0;
	net_listener_stop(&d->listener);
	if (d->net.bulk.open)
		net_chan_wake(&d->net.bulk);
	return 0;
}

int hmig_dest_status(struct hmig_dest *d, struct hmig_status *st, size_t size)
{
	if (!size)
		return -EINVAL;
	progress_status(&d->prog, st, size);
	return 0;
}

int hmig_dest_report(struct hmig_dest *d, FILE *f)
{
	/* The blackout is known once every vCPU has run here, which may be
	 * after hmig_dest_run returned (the caller lets the guest run, then
	 * reports): read it now.  null when the guest cannot tell (an idle
	 * vCPU never completes an operation). */
	if (d->geo.npages) {
		struct hmig_guest_stats gs;

		if (d->g->ops->stats(d->g, &gs) == 0)
			stats_report_set_extra_double(&d->rep, "guest_blackout_ms", gs.blackout_ms);
	}
	return stats_report_write_json(&d->rep, f);
}

void hmig_dest_set_integrity(struct hmig_dest *d, const char *integrity, const char *detail)
{
	uint32_t verdict = PROTO_VERDICT_SKIPPED;

	if (!strcmp(integrity, "ok")) {
		d->rep.integrity = STATS_INTEGRITY_OK;
		verdict = PROTO_VERDICT_OK;
	} else if (!strcmp(integrity, "mismatch")) {
		d->rep.integrity = STATS_INTEGRITY_MISMATCH;
		verdict = PROTO_VERDICT_MISMATCH;
	} else {
		d->rep.integrity = STATS_INTEGRITY_SKIPPED;
	}
	if (d->rep.integrity == STATS_INTEGRITY_MISMATCH && detail)
		stats_report_set_result(&d->rep, STATS_RESULT_FAILED, "%s", detail);
	/* The source waits for it after our DONE: tell it, and hang up. */
	if (d->done && d->net.bulk.open) {
		uint8_t rec[PROTO_HDR_LEN + 8 + PROTO_ERROR_TEXT_MAX];
		char scratch[ERR_LEN];
		int n = proto_verdict_encode(rec, sizeof(rec), verdict, detail ? detail : integrity,
					     scratch);

		if (n > 0)
			eng_rec_send(&d->net.bulk, rec, (size_t)n, d->cfg.io_timeout_ms, scratch);
		net_close(d);
	}
}

void hmig_dest_set_ops_after(struct hmig_dest *d, double ops_per_s)
{
	d->rep.guest_ops_per_s_after = ops_per_s;
}

const char *hmig_dest_error(const struct hmig_dest *d)
{
	return d->err;
}

void hmig_dest_free(struct hmig_dest *d)
{
	if (!d)
		return;
	fault_stop(&d->fh);
	progress_free(&d->prog);
	net_pair_close(&d->net);
	net_listener_close(&d->listener);
	net_tls_free(d->tls);
	rec_buf_free(&d->rx);
	stats_report_free(&d->rep);
	pages_free(&d->pages);
	free(d->stale);
	free(d);
}
