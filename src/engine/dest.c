/* The destination: SETUP -> RECEIVING -> RESUMED -> COMPLETE.
 *
 * Pages that arrive during pre-copy are installed (a later pass overwrites
 * an earlier one: the guest does not run here yet).  At switchover the stale
 * set arrives, then the vCPU state; in stop-and-copy the stale pages follow,
 * then DONE, and only then does the guest start here and RESUMED go back.
 * Every record is checked against the geometry by src/proto before any byte
 * of it reaches guest memory.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <hmig/hmig.h>

#include "common/bitmap.h"
#include "common/clock.h"
#include "common/err.h"
#include "engine/dest.h"

enum dst_state { D_SETUP, D_RECEIVING, D_RESUMED, D_COMPLETE, D_FAILED };

static const char *const state_names[] = {
	"setup", "receiving", "resumed", "complete", "failed",
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
	row.pages_present = d->npresent;
	row.guest_ops_per_s = NAN;
	stats_report_add_timeline(&d->rep, &row);
}

/* States change here only, and each change is a timeline row. */
static void set_state(struct hmig_dest *d, int st)
{
	d->state = st;
	timeline(d, state_names[st]);
}

int hmig_dest_new(const struct hmig_config *cfg, struct hmig_guest *guest,
		  const char *listen_addr, struct hmig_dest **out, char *errbuf)
{
	struct hmig_dest *d;
	struct net_opts opts = { .peer = "source" };
	int rc;

	*out = NULL;
	if (hmig_config_check(cfg, errbuf))
		return -EINVAL;
	d = calloc(1, sizeof(*d));
	if (!d)
		return err_setf(errbuf, -ENOMEM, "out of memory");
	d->cfg = *cfg;
	d->g = guest;
	pthread_mutex_init(&d->lock, NULL);
	pthread_cond_init(&d->all_present, NULL);
	stats_hist_init(&d->fault_lat);
	stats_report_init(&d->rep, STATS_SIDE_DESTINATION);
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
	d->t0 = clock_now_ns();
	rc = eng_rec_read(&d->net.bulk, NULL, d->cfg.io_timeout_ms, "source", &h, &d->rx, d->err);
	if (rc)
		return rc;
	if (h.type != PROTO_HELLO)
		return err_setf(d->err, -EPROTO, "the source began with %s instead of HELLO",
				proto_type_name(h.type));
	if ((rc = proto_hello_decode(&h, d->rx.p, &peer, d->err)))
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
	d->present = bitmap_new(d->geo.npages);
	d->stale = bitmap_new(d->geo.npages);
	if (!d->present || !d->stale)
		return err_setf(d->err, -ENOMEM, "out of memory for %lu pages of bookkeeping",
				(unsigned long)d->geo.npages);
	ours = peer; /* echo: the source checks we agreed to its geometry */
	ours.caps = 0;
	n = proto_hello_encode(buf, sizeof(buf), &ours, d->err);
	if (n < 0)
		return n;
	return eng_rec_send(&d->net.bulk, buf, (size_t)n, d->cfg.io_timeout_ms, d->err);
}

/* -------------------------------------------------------------- receiving */

int dest_install(struct hmig_dest *d, uint64_t pfn, uint32_t n, const void *data,
		 enum via via, char *err)
{
	pthread_mutex_lock(&d->lock);
	int rc = d->g->ops->page_install(d->g, pfn, n, data);
	if (rc < 0) {
		pthread_mutex_unlock(&d->lock);
		return err_setf(err, rc, "installing pfn %lu: %s", (unsigned long)pfn,
				hmig_guest_error(d->g));
	}
	uint64_t now = d->started ? clock_now_ns() : 0;
	for (uint64_t p = pfn; p < pfn + n; p++) {
		if (bitmap_test(d->present, p)) {
			d->duplicates++;
			continue;
		}
		bitmap_set(d->present, p);
		d->npresent++;
		if (via == VIA_PULL)
			d->pulled++;
		else if (via == VIA_PUSH)
			d->pushed++;
		/* Fault latency: from the handler reading the fault to here. */
		if (d->t_fault && d->t_fault[p]) {
			uint64_t lat = now - d->t_fault[p];

			stats_hist_add(&d->fault_lat, lat);
			d->blocktime_ns += (double)lat * d->waiters[p];
			d->t_fault[p] = 0;
		}
	}
	d->installs += n;
	if (d->npresent == d->geo.npages)
		pthread_cond_broadcast(&d->all_present);
	pthread_mutex_unlock(&d->lock);
	return 0;
}

/* PAGES and ZERO: one install per run of adjacent pfns (the usual case in
 * a pass), which the backend turns into one UFFDIO_COPY. */
int dest_install_record(struct hmig_dest *d, const struct proto_hdr *h, const void *body,
			enum via via, char *err)
{
	struct proto_pages pg;
	int rc = proto_pages_decode(h, body, &d->geo, &pg, err);

	if (rc)
		return rc;
	for (uint32_t i = 0; i < pg.count;) {
		uint64_t first = proto_pages_pfn(&pg, i);
		uint32_t j = i + 1;

		while (j < pg.count && proto_pages_pfn(&pg, j) == first + (j - i))
			j++;
		const void *data = pg.data ? pg.data + (size_t)i * d->geo.page_size : NULL;
		if ((rc = dest_install(d, first, j - i, data, via, err)))
			return rc;
		i = j;
	}
	return 0;
}

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

static int on_stale(struct hmig_dest *d, const struct proto_hdr *h)
{
	if (!d->t_switch)
		d->t_switch = clock_now_ns();
	return proto_stale_decode(h, d->rx.p, &d->geo, d->stale, d->err);
}

/* Makes the pages of `set` that are present here missing again, and
 * empties `set`.  Returns how many it dropped, or -errno.  The source names
 * only pages it sent us, but a page it sent may still be in flight when a
 * record naming it was cut: what is not present needs no drop. */
static int64_t drop_present(struct hmig_dest *d, uint64_t *set)
{
	size_t words = BITMAP_WORDS(d->geo.npages);
	uint64_t n = 0;

	pthread_mutex_lock(&d->lock);
	for (size_t w = 0; w < words; w++) {
		set[w] &= d->present[w];
		n += (uint64_t)__builtin_popcountll(set[w]);
	}
	pthread_mutex_unlock(&d->lock);
	if (!n)
		return 0;
	int64_t dropped = d->g->ops->pages_drop(d->g, set);
	if (dropped < 0)
		return err_setf(d->err, (int)dropped, "%s", hmig_guest_error(d->g));
	pthread_mutex_lock(&d->lock);
	for (size_t w = 0; w < words; w++)
		d->present[w] &= ~set[w];
	d->npresent -= n;
	pthread_mutex_unlock(&d->lock);
	memset(set, 0, words * 8);
	return (int64_t)n;
}

/* DIRTY (pre-copy, post-copy ahead): the source's guest wrote these pages
 * after sending them.  The guest does not run here yet, so they can go now,
 * which leaves only the last moments' writes to drop in the downtime. */
static int on_dirty(struct hmig_dest *d, const struct proto_hdr *h)
{
	int rc = proto_stale_decode(h, d->rx.p, &d->geo, d->stale, d->err);

	if (rc || !(h->flags & PROTO_FLAG_LAST))
		return rc;
	int64_t n = drop_present(d, d->stale);
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
	d->syncs++;
	int n = proto_sync_encode(buf, sizeof(buf), token, d->err);
	if (n < 0)
		return n;
	return eng_rec_send(&d->net.bulk, buf, (size_t)n, d->cfg.io_timeout_ms, d->err);
}

static int start_guest(struct hmig_dest *d);

/* Post-copy: the stale pages become missing again, the fault handler starts,
 * and the guest resumes at once; what it touches is pulled. */
static int switch_to_postcopy(struct hmig_dest *d)
{
	int64_t dropped = drop_present(d, d->stale);
	int rc;

	if (dropped < 0)
		return (int)dropped;
	d->dropped_late = (uint64_t)dropped;
	d->postcopy = true;
	d->t_fault = calloc(d->geo.npages, sizeof(*d->t_fault));
	d->waiters = calloc(d->geo.npages, sizeof(*d->waiters));
	if (!d->t_fault || !d->waiters)
		return err_setf(d->err, -ENOMEM, "out of memory for fault bookkeeping");
	if ((rc = fault_start(d)))
		return rc;
	return start_guest(d);
}

static int on_vcpu_state(struct hmig_dest *d, const struct proto_hdr *h)
{
	const void *blob;
	size_t len;
	int rc = proto_vcpu_decode(h, d->rx.p, &blob, &len, d->err);

	if (rc)
		return rc;
	if (d->vcpus_restored)
		return err_setf(d->err, -EPROTO, "the source sent VCPU_STATE twice");
	rc = d->g->ops->vcpu_restore(d->g, blob, len);
	if (rc)
		return err_setf(d->err, rc, "restoring vCPU state: %s", hmig_guest_error(d->g));
	d->vcpus_restored = true;
	/* Pages still to come: never sent here, or sent and rewritten since. */
	d->rep.switchover.stale_pages = d->geo.npages - d->npresent +
					bitmap_count(d->stale, d->geo.npages);
	if (!(h->flags & PROTO_FLAG_POSTCOPY))
		return 0; /* stop-and-copy: the stale pages follow, then DONE */
	return switch_to_postcopy(d);
}

/* Starts the guest here and tells the source (RESUMED).  Stop-and-copy
 * gets here with every page present; post-copy with the stale set missing
 * and the fault handler running. */
static int start_guest(struct hmig_dest *d)
{
	uint8_t buf[PROTO_HDR_LEN + 24];
	int rc, n;

	if (!d->vcpus_restored)
		return err_setf(d->err, -EPROTO, "the source finished without sending vCPU state");
	if (!d->postcopy && d->npresent != d->geo.npages)
		return err_setf(d->err, -EPROTO,
				"the source finished but %lu of %lu pages never arrived",
				(unsigned long)(d->geo.npages - d->npresent),
				(unsigned long)d->geo.npages);
	pthread_mutex_lock(&d->lock);
	d->started = true;
	pthread_mutex_unlock(&d->lock);
	if ((rc = d->g->ops->start(d->g)))
		return err_setf(d->err, rc, "starting the guest: %s", hmig_guest_error(d->g));
	d->t_resume = clock_now_ns();
	{
		struct net_chan_stats b;

		struct hmig_guest_stats gs;

		net_chan_stats(&d->net.bulk, &b);
		d->bulk_at_resume = b.bytes_recv;
		d->g->ops->stats(d->g, &gs);
		d->ops_at_resume = gs.ops;
	}
	set_state(d, D_RESUMED);
	struct proto_resumed r = { .downtime_ns = d->t_switch ? d->t_resume - d->t_switch : 0 };
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	r.resume_wall_ns = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
	d->rep.downtime_ms = clock_ms(r.downtime_ns);
	n = proto_resumed_encode(buf, sizeof(buf), &r, d->err);
	if (n < 0)
		return n;
	return eng_rec_send(&d->net.bulk, buf, (size_t)n, d->cfg.io_timeout_ms, d->err);
}

/* After the source's DONE: wait until every page is present (post-copy:
 * pulls may still be running), stop trapping faults, and let the source go. */
static int complete(struct hmig_dest *d)
{
	uint8_t buf[PROTO_HDR_LEN + 24];
	int rc, n;

	if (!d->postcopy && (rc = start_guest(d)))
		return rc;
	if (d->postcopy) {
		pthread_mutex_lock(&d->lock);
		while (d->npresent != d->geo.npages && !d->fh.rc)
			pthread_cond_wait(&d->all_present, &d->lock);
		pthread_mutex_unlock(&d->lock);
		if ((rc = fault_stop(d))) {
			char cause[ERR_LEN];

			memcpy(cause, d->fh.err, ERR_LEN);
			return err_setf(d->err, rc,
					"post-copy failed with %lu pages still missing: %.150s",
					(unsigned long)(d->geo.npages - d->npresent), cause);
		}
	}
	if ((rc = d->g->ops->faults_done(d->g)))
		return err_setf(d->err, rc, "%s", hmig_guest_error(d->g));
	d->t_complete = clock_now_ns();
	if (d->postcopy) {
		struct hmig_guest_stats gs;

		d->g->ops->stats(d->g, &gs);
		d->ops_postcopy = (double)(gs.ops - d->ops_at_resume) /
				  ((double)(d->t_complete - d->t_resume) / 1e9);
	}
	struct proto_done done = { .pages = d->installs, .requests = d->fh.requests };
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
	return rc == 0 ? err_setf(d->err, -EPROTO, "the source sent more after DONE") : 0;
}

/* The record loop of the bulk channel, until the source's DONE. */
static int receive(struct hmig_dest *d)
{
	struct proto_hdr h;
	int rc;

	set_state(d, D_RECEIVING);
	while (!d->source_done) {
		rc = eng_rec_read(&d->net.bulk, &d->geo, d->cfg.io_timeout_ms, "source", &h, &d->rx,
				  d->err);
		if (rc && d->postcopy) {
			char cause[ERR_LEN];

			memcpy(cause, d->err, ERR_LEN);
			return err_setf(d->err, rc,
					"post-copy failed with %lu pages still missing, the guest cannot go on: %.130s",
					(unsigned long)(d->geo.npages - d->npresent), cause);
		}
		if (rc)
			return rc;
		switch (h.type) {
		case PROTO_PAGES:
		case PROTO_ZERO:
			rc = dest_install_record(d, &h, d->rx.p, d->postcopy ? VIA_PUSH : VIA_PASS,
						 d->err);
			break;
		case PROTO_PASS_END:
			rc = on_pass_end(d, &h);
			break;
		case PROTO_STALE:
			rc = d->vcpus_restored ? err_setf(d->err, -EPROTO, "STALE after VCPU_STATE")
					       : on_stale(d, &h);
			break;
		case PROTO_DIRTY:
			rc = d->vcpus_restored || d->t_switch
				     ? err_setf(d->err, -EPROTO, "DIRTY after the switchover began")
				     : on_dirty(d, &h);
			break;
		case PROTO_SYNC:
			rc = d->vcpus_restored ? err_setf(d->err, -EPROTO, "SYNC after VCPU_STATE")
					       : on_sync(d, &h);
			break;
		case PROTO_VCPU_STATE:
			rc = on_vcpu_state(d, &h);
			break;
		case PROTO_DONE:
			d->source_done = true;
			rc = complete(d);
			break;
		default:
			rc = err_setf(d->err, -EPROTO, "unexpected %s record from the source",
				      proto_type_name(h.type));
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
	d->rep.pages.duplicate = d->duplicates;
	d->rep.pages.pulled = d->pulled;
	d->rep.pages.pushed = d->pushed;
	/* Pages made missing again: before the pause (DIRTY) and inside the
	 * downtime (STALE, post-copy). */
	stats_report_set_extra_u64(&d->rep, "stale_dropped_before_pause", d->dropped_early);
	stats_report_set_extra_u64(&d->rep, "stale_dropped_in_downtime", d->dropped_late);
	if (d->postcopy) {
		d->rep.faults.count = d->fh.faults;
		d->rep.faults.blocktime_ms = d->blocktime_ns / 1e6;
		if (d->fault_lat.count)
			stats_report_set_fault_latency(&d->rep, &d->fault_lat);
		d->rep.bytes.push = b.bytes_recv - d->bulk_at_resume;
		d->rep.bytes.pull = u.bytes_recv;
		if (d->t_complete) {
			stats_report_set_extra_double(&d->rep, "resume_to_complete_ms",
						      clock_ms(d->t_complete - d->t_resume));
			stats_report_set_extra_double(&d->rep, "guest_ops_per_s_postcopy",
						      d->ops_postcopy);
		}
	}
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
		fault_stop(d);
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
	net_pair_close(&d->net);
	net_listener_close(&d->listener);
	rec_buf_free(&d->rx);
	stats_report_free(&d->rep);
	fault_stop(d);
	free(d->present);
	free(d->stale);
	free(d->t_fault);
	free(d->waiters);
	pthread_cond_destroy(&d->all_present);
	pthread_mutex_destroy(&d->lock);
	free(d);
}
