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
#include "engine/engine.h"

enum dst_state { D_SETUP, D_RECEIVING, D_RESUMED, D_COMPLETE, D_FAILED };

static const char *const state_names[] = {
	"setup", "receiving", "resumed", "complete", "failed",
};

struct hmig_dest {
	struct hmig_config cfg;
	struct hmig_guest *g;
	struct hmig_guest_geometry geo;
	enum dst_state state;
	struct net_listener listener;
	struct net_pair net;
	struct rec_buf rx;
	uint64_t *present;   /* pages installed */
	uint64_t npresent;
	uint64_t *stale;     /* the stale set, as the source sent it */
	bool vcpus_restored, postcopy, source_done;
	uint64_t t0, t_switch;
	uint64_t installs, duplicates;
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
	row.pages_present = d->npresent;
	row.guest_ops_per_s = NAN;
	stats_report_add_timeline(&d->rep, &row);
}

/* States change here only, and each change is a timeline row. */
static void set_state(struct hmig_dest *d, enum dst_state st)
{
	d->state = st;
	timeline(d, state_names[st]);
}

int hmig_dest_new(const struct hmig_config *cfg, struct hmig_guest *guest,
		  const char *listen_addr, struct hmig_dest **out, char *errbuf)
{
	struct hmig_dest *d = calloc(1, sizeof(*d));
	struct net_opts opts = { .peer = "source" };
	int rc;

	*out = NULL;
	if (!d)
		return err_setf(errbuf, -ENOMEM, "out of memory");
	d->cfg = *cfg;
	d->g = guest;
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

/* Installs n pages from pfn on (data NULL: zero pages) and keeps the
 * present set; a page that was present already counts as a duplicate. */
static int install(struct hmig_dest *d, uint64_t pfn, uint32_t n, const void *data)
{
	int rc = d->g->ops->page_install(d->g, pfn, n, data);

	if (rc < 0)
		return err_setf(d->err, rc, "installing pfn %lu: %s", (unsigned long)pfn,
				hmig_guest_error(d->g));
	for (uint64_t p = pfn; p < pfn + n; p++) {
		if (bitmap_test(d->present, p)) {
			d->duplicates++;
		} else {
			bitmap_set(d->present, p);
			d->npresent++;
		}
	}
	d->installs += n;
	return 0;
}

/* PAGES and ZERO: one install per run of adjacent pfns (the usual case in
 * a pass), which the backend turns into one UFFDIO_COPY. */
static int on_pages(struct hmig_dest *d, const struct proto_hdr *h)
{
	struct proto_pages pg;
	int rc = proto_pages_decode(h, d->rx.p, &d->geo, &pg, d->err);

	if (rc)
		return rc;
	for (uint32_t i = 0; i < pg.count;) {
		uint64_t first = proto_pages_pfn(&pg, i);
		uint32_t j = i + 1;

		while (j < pg.count && proto_pages_pfn(&pg, j) == first + (j - i))
			j++;
		const void *data = pg.data ? pg.data + (size_t)i * d->geo.page_size : NULL;
		if ((rc = install(d, first, j - i, data)))
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

static int on_vcpu_state(struct hmig_dest *d, const struct proto_hdr *h)
{
	const void *blob;
	size_t len;
	int rc = proto_vcpu_decode(h, d->rx.p, &blob, &len, d->err);

	if (rc)
		return rc;
	if (d->vcpus_restored)
		return err_setf(d->err, -EPROTO, "the source sent VCPU_STATE twice");
	if (h->flags & PROTO_FLAG_POSTCOPY)
		return err_setf(d->err, -EOPNOTSUPP,
				"the source asks for post-copy, which this destination does not do yet");
	rc = d->g->ops->vcpu_restore(d->g, blob, len);
	if (rc)
		return err_setf(d->err, rc, "restoring vCPU state: %s", hmig_guest_error(d->g));
	d->vcpus_restored = true;
	d->rep.switchover.stale_pages = bitmap_count(d->stale, d->geo.npages);
	return 0;
}

/* Every page is here: stop trapping faults, start the guest, tell the
 * source it may let go. */
static int resume_guest(struct hmig_dest *d)
{
	uint8_t buf[PROTO_HDR_LEN + 24];
	int rc, n;

	if (!d->vcpus_restored)
		return err_setf(d->err, -EPROTO, "the source finished without sending vCPU state");
	if (d->npresent != d->geo.npages)
		return err_setf(d->err, -EPROTO,
				"the source finished but %lu of %lu pages never arrived",
				(unsigned long)(d->geo.npages - d->npresent),
				(unsigned long)d->geo.npages);
	if ((rc = d->g->ops->faults_done(d->g)))
		return err_setf(d->err, rc, "%s", hmig_guest_error(d->g));
	if ((rc = d->g->ops->start(d->g)))
		return err_setf(d->err, rc, "starting the guest: %s", hmig_guest_error(d->g));
	uint64_t now = clock_now_ns();
	set_state(d, D_RESUMED);
	struct proto_resumed r = { .downtime_ns = d->t_switch ? now - d->t_switch : 0 };
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	r.resume_wall_ns = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
	d->rep.downtime_ms = clock_ms(r.downtime_ns);
	n = proto_resumed_encode(buf, sizeof(buf), &r, d->err);
	if (n < 0)
		return n;
	if ((rc = eng_rec_send(&d->net.bulk, buf, (size_t)n, d->cfg.io_timeout_ms, d->err)))
		return rc;
	struct proto_done done = { .pages = d->installs };
	n = proto_done_encode(buf, sizeof(buf), &done, d->err);
	if (n < 0)
		return n;
	return eng_rec_send(&d->net.bulk, buf, (size_t)n, d->cfg.io_timeout_ms, d->err);
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
		if (rc)
			return rc;
		switch (h.type) {
		case PROTO_PAGES:
		case PROTO_ZERO:
			rc = on_pages(d, &h);
			break;
		case PROTO_PASS_END:
			rc = on_pass_end(d, &h);
			break;
		case PROTO_STALE:
			rc = d->vcpus_restored ? err_setf(d->err, -EPROTO, "STALE after VCPU_STATE")
					       : on_stale(d, &h);
			break;
		case PROTO_VCPU_STATE:
			rc = on_vcpu_state(d, &h);
			break;
		case PROTO_DONE:
			d->source_done = true;
			rc = resume_guest(d);
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

	d->rep.mode = eng_stats_mode(d->cfg.mode);
	snprintf(d->rep.guest.backend, sizeof(d->rep.guest.backend), "%s", d->g->ops->name);
	d->rep.guest.pages = d->geo.npages;
	d->rep.guest.page_size = d->geo.page_size;
	d->rep.guest.vcpus = d->geo.nvcpus;
	if (d->vcpus_restored) {
		struct hmig_guest_stats gs;

		d->g->ops->stats(d->g, &gs);
		snprintf(d->rep.guest.workload, sizeof(d->rep.guest.workload), "%s", gs.workload);
	}
	d->rep.total_ms = d->t0 ? clock_ms(clock_now_ns() - d->t0) : 0;
	net_chan_stats(&d->net.bulk, &b);
	net_chan_stats(&d->net.urgent, &u);
	d->rep.bytes.total = b.bytes_recv + u.bytes_recv;
	d->rep.pages.duplicate = d->duplicates;
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
	free(d->present);
	free(d->stale);
	free(d);
}
