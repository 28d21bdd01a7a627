/* The destination: SETUP -> PRECOPY -> SWITCHOVER -> STOPCOPY | POSTCOPY ->
 * COMPLETE, and FAILED from any of them.
 *
 *   PRECOPY     passes arrive and are installed (a later pass overwrites an
 *               earlier one: the guest does not run here yet); DIRTY drops
 *               pages the source's guest rewrote, SYNC is answered
 *   SWITCHOVER  the stale set (STALE), then the vCPU state
 *   STOPCOPY    the stale pages, then the source's DONE: the guest starts
 *               with every page present and RESUMED goes back
 *   POSTCOPY    the guest started right after the vCPU state; pushed pages
 *               arrive on bulk, pulls go through the fault handler (fault.c)
 *               on urgent, until every page is present
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
#include "stats/hist.h"

enum dst_state { D_SETUP, D_PRECOPY, D_SWITCHOVER, D_STOPCOPY, D_POSTCOPY, D_COMPLETE, D_FAILED };

static const char *const state_names[] = {
	"setup", "receiving", "switchover", "stopcopy", "postcopy", "complete", "failed",
};

#define R(t) (1u << (t))

/* The records each state takes from the source on bulk. */
static const uint32_t accepts[] = {
	[D_PRECOPY] = R(PROTO_PAGES) | R(PROTO_ZERO) | R(PROTO_PASS_END) | R(PROTO_DIRTY) |
		      R(PROTO_SYNC) | R(PROTO_STALE),
	[D_SWITCHOVER] = R(PROTO_STALE) | R(PROTO_VCPU_STATE),
	[D_STOPCOPY] = R(PROTO_PAGES) | R(PROTO_ZERO) | R(PROTO_DONE),
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
	bool done;               /* the source's DONE came, and ours went back */
	uint64_t t0, t_switch, t_resume, t_complete;
	uint64_t bulk_at_resume; /* bulk bytes received when the guest resumed */
	uint64_t ops_at_resume;  /* guest ops when it resumed */
	uint64_t dropped_early;  /* pages DIRTY made missing before the switchover */
	uint64_t dropped_late;   /* ... and STALE, inside the downtime */
	/* written by pages' hook, under pages.lock; read after the handler stops */
	struct stats_hist fault_lat; /* fault read -> page installed, ns */
	double blocktime_ns;
	struct stats_report rep;
	char err[ERR_LEN];
};

static void timeline(struct hmig_dest *d, const char *phase)
{
	struct stats_timeline_row row = { .t_ms = clock_ms(clock_now_ns() - d->t0) };
	struct net_chan_stats b, u;

	snprintf(row.phase, sizeof(row.phase), "%s", phase);
	net_chan_stats(&d->net.bulk, &b);
	net_chan_stats(&d->net.urgent, &u);
	row.bytes_bulk = b.bytes_recv;
	row.bytes_urgent = u.bytes_recv;
	row.pages_present = d->pages.g ? pages_present(&d->pages) : 0;
	row.guest_ops_per_s = NAN;
	stats_report_add_timeline(&d->rep, &row);
}

/* States change here only, and each change is a timeline row. */
static void set_state(struct hmig_dest *d, enum dst_state st)
{
	d->state = st;
	timeline(d, state_names[st]);
}

/* pages' hook: a page vCPUs waited for is in. */
static void fault_served(void *ctx, uint64_t latency_ns, uint32_t waiters)
{
	struct hmig_dest *d = ctx;

	stats_hist_add(&d->fault_lat, latency_ns);
	d->blocktime_ns += (double)latency_ns * waiters;
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
	eng_report_security(&d->rep, &d->net.bulk);
	d->t0 = clock_now_ns();
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
	if (!d->stale || pages_init(&d->pages, d->g, &d->geo, hook))
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
	ours.caps = 0;
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

/* SYNC: everything before it is installed or dropped; say so. */
static int on_sync(struct hmig_dest *d, const struct proto_hdr *h)
{
	uint8_t buf[PROTO_HDR_LEN + 8];
	uint64_t token;
	int rc = proto_sync_decode(h, d->rx.p, &token, d->err);

	if (rc)
		return rc;
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
	struct net_chan_stats b;
	struct hmig_guest_stats gs;
	int rc, n;

	if ((rc = d->g->ops->start(d->g)))
		return err_setf(d->err, rc, "starting the guest: %s", hmig_guest_error(d->g));
	d->t_resume = clock_now_ns();
	net_chan_stats(&d->net.bulk, &b);
	d->bulk_at_resume = b.bytes_recv;
	d->g->ops->stats(d->g, &gs);
	d->ops_at_resume = gs.ops;
	timeline(d, "resumed");
	struct proto_resumed r = { .downtime_ns = d->t_resume - d->t_switch };
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	r.resume_wall_ns = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
	d->rep.downtime_ms = clock_ms(r.downtime_ns);
	n = proto_resumed_encode(buf, sizeof(buf), &r, d->err);
	if (n < 0)
		return n;
	return eng_rec_send(&d->net.bulk, buf, (size_t)n, d->cfg.io_timeout_ms, d->err);
}

/* Post-copy: the stale copies go, the fault handler starts, and the guest
 * resumes at once; what it touches is pulled, the rest is pushed. */
static int switch_to_postcopy(struct hmig_dest *d)
{
	int64_t dropped = pages_drop(&d->pages, d->stale, d->err);
	int rc;

	if (dropped < 0)
		return (int)dropped;
	d->dropped_late = (uint64_t)dropped;
	if (pages_start_postcopy(&d->pages))
		return err_setf(d->err, -ENOMEM, "out of memory for fault bookkeeping");
	if ((rc = fault_start(&d->fh, &d->pages, d->g, &d->geo, &d->net.urgent,
			      d->cfg.io_timeout_ms, d->err)))
		return rc;
	set_state(d, D_POSTCOPY);
	return start_guest(d);
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
	if (h->flags & PROTO_FLAG_POSTCOPY)
		return switch_to_postcopy(d);
	/* Stop-and-copy: the stale pages follow and overwrite their copies. */
	memset(d->stale, 0, BITMAP_WORDS(d->geo.npages) * sizeof(uint64_t));
	set_state(d, D_STOPCOPY);
	return 0;
}

/* ------------------------------------------------------------------- done */

/* The source's DONE: it will push nothing more.  Wait until every page is
 * present (post-copy: pulls may still be running), stop trapping faults,
 * and let the source go. */
static int on_done(struct hmig_dest *d)
{
	uint8_t buf[PROTO_HDR_LEN + 24];
	uint64_t missing = d->geo.npages - pages_present(&d->pages);
	int rc, n;

	if (d->state == D_STOPCOPY) {
		if (missing)
			return err_setf(d->err, -EPROTO,
					"the source finished but %lu of %lu pages never arrived",
					(unsigned long)missing, (unsigned long)d->geo.npages);
		pages_start(&d->pages);
		if ((rc = start_guest(d)))
			return rc;
	} else {
		pages_wait_all(&d->pages);
		if ((rc = fault_stop(&d->fh)))
			return err_setf(d->err, rc,
					"post-copy failed with %lu pages still missing: %.150s",
					(unsigned long)(d->geo.npages - pages_present(&d->pages)),
					d->fh.err);
	}
	if ((rc = d->g->ops->faults_done(d->g)))
		return err_setf(d->err, rc, "%s", hmig_guest_error(d->g));
	d->t_complete = clock_now_ns();
	struct proto_done done = { .pages = d->pages.installs, .requests = d->fh.requests };
	n = proto_done_encode(buf, sizeof(buf), &done, d->err);
	if (n < 0)
		return n;
	if ((rc = eng_rec_send(&d->net.bulk, buf, (size_t)n, d->cfg.io_timeout_ms, d->err)))
		return rc;
	/* The source hangs up first, once it has read our DONE.  Closing first
	 * could let it see the urgent channel end before DONE arrives on bulk
	 * (two connections have no order between them) and call that a failure. */
	uint8_t byte;
	rc = net_chan_read(&d->net.bulk, &byte, 1, d->cfg.io_timeout_ms);
	if (rc == 0)
		return err_setf(d->err, -EPROTO, "the source sent more after DONE");
	d->done = true;
	return 0;
}

/* The record loop of the bulk channel, from the first pass to the
 * source's DONE. */
static int receive(struct hmig_dest *d)
{
	struct proto_hdr h;
	int rc;

	set_state(d, D_PRECOPY);
	while (!d->done) {
		rc = eng_rec_read(&d->net.bulk, &d->geo, d->cfg.io_timeout_ms, "source", &h, &d->rx,
				  d->err);
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
		if (h.type >= 32 || !(accepts[d->state] & R(h.type)))
			return err_setf(d->err, -EPROTO, "unexpected %s record from the source in %s",
					proto_type_name(h.type), state_names[d->state]);
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
		case PROTO_DONE:
			rc = on_done(d);
			break;
		default: /* excluded by accepts[] */
			rc = -EPROTO;
		}
		if (rc)
			return rc;
	}
	return 0;
}

static void finish_report(struct hmig_dest *d, int rc)
{
	struct net_chan_stats b, u;

	eng_report_guest(&d->rep, d->cfg.mode, d->g, &d->geo);
	d->rep.total_ms = d->t0 ? clock_ms(clock_now_ns() - d->t0) : 0;
	net_chan_stats(&d->net.bulk, &b);
	net_chan_stats(&d->net.urgent, &u);
	d->rep.bytes.total = b.bytes_recv + u.bytes_recv;
	d->rep.pages.duplicate = d->pages.duplicates;
	d->rep.pages.pulled = d->pages.pulled;
	d->rep.pages.pushed = d->pages.pushed;
	/* Pages made missing again: before the pause (DIRTY) and inside the
	 * downtime (STALE, post-copy). */
	stats_report_set_extra_u64(&d->rep, "stale_dropped_before_pause", d->dropped_early);
	stats_report_set_extra_u64(&d->rep, "stale_dropped_in_downtime", d->dropped_late);
	if (d->pages.t_fault) { /* post-copy ran */
		d->rep.faults.count = d->fh.faults;
		d->rep.faults.blocktime_ms = d->blocktime_ns / 1e6;
		if (d->fault_lat.count)
			stats_report_set_fault_latency(&d->rep, &d->fault_lat);
		d->rep.bytes.push = b.bytes_recv - d->bulk_at_resume;
		d->rep.bytes.pull = u.bytes_recv;
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
	if (rc) {
		set_state(d, D_FAILED);
		fault_stop(&d->fh);
		pages_wake(&d->pages);
		eng_send_error(&d->net.bulk, rc, d->err);
	} else {
		set_state(d, D_COMPLETE);
	}
	finish_report(d, rc);
	net_pair_close(&d->net);
	net_listener_close(&d->listener);
	return rc;
}

int hmig_dest_report(struct hmig_dest *d, FILE *f)
{
	return stats_report_write_json(&d->rep, f);
}

void hmig_dest_set_integrity(struct hmig_dest *d, const char *integrity, const char *detail)
{
	if (!strcmp(integrity, "ok"))
		d->rep.integrity = STATS_INTEGRITY_OK;
	else if (!strcmp(integrity, "mismatch"))
		d->rep.integrity = STATS_INTEGRITY_MISMATCH;
	else
		d->rep.integrity = STATS_INTEGRITY_SKIPPED;
	if (d->rep.integrity == STATS_INTEGRITY_MISMATCH && detail)
		stats_report_set_result(&d->rep, STATS_RESULT_FAILED, "%s", detail);
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
	net_pair_close(&d->net);
	net_listener_close(&d->listener);
	net_tls_free(d->tls);
	rec_buf_free(&d->rx);
	stats_report_free(&d->rep);
	pages_free(&d->pages);
	free(d->stale);
	free(d);
}
