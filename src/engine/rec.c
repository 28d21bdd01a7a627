#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/err.h"
#include "common/esc.h"
#include "engine/engine.h"

void rec_buf_free(struct rec_buf *rb)
{
	free(rb->p);
	rb->p = NULL;
	rb->cap = 0;
}

static int rec_buf_fit(struct rec_buf *rb, size_t len)
{
	if (len <= rb->cap)
		return 0;
	uint8_t *p = realloc(rb->p, len);
	if (!p)
		return -ENOMEM;
	rb->p = p;
	rb->cap = len;
	return 0;
}

void eng_pair_timeouts(struct net_pair *p, int io_timeout_ms)
{
	net_chan_set_send_timeout(&p->bulk, io_timeout_ms);
	net_chan_set_send_timeout(&p->urgent, io_timeout_ms);
}

bool eng_link_lost(int rc)
{
	switch (-rc) {
	case ECONNRESET:
	case EPIPE:
	case ETIMEDOUT:
	case ENOTCONN:
	case ECONNREFUSED:
	case EHOSTUNREACH:
	case EHOSTDOWN:
	case ENETUNREACH:
	case ENETDOWN:
	case ENETRESET:
		return true;
	}
	return false;
}

int eng_io_error(char *err, int rc, const char *peer, const char *what, const char *detail)
{
	if (rc == -ETIMEDOUT)
		return err_setf(err, rc, "%s: the %s went silent (is it still running? raise -o io_timeout_ms)",
				what, peer);
	if (rc == -ECONNRESET || rc == -EPIPE)
		return err_setf(err, rc, "%s: the %s closed the connection (did it exit? see its error)",
				what, peer);
	return err_setf(err, rc, "%s: %s", what, detail && *detail ? detail : strerror(-rc));
}

int eng_rec_read(struct net_chan *ch, const struct hmig_guest_geometry *geo,
		 int timeout_ms, const char *peer, struct proto_hdr *h,
		 struct rec_buf *rb, char *err)
{
	uint8_t hdr[PROTO_HDR_LEN];
	int rc;

	for (;;) {
		rc = net_chan_read(ch, hdr, sizeof(hdr), timeout_ms);
		if (rc)
			return eng_io_error(err, rc, peer, "reading a record", ch->err);
		rc = proto_hdr_decode(hdr, sizeof(hdr), geo, h, err);
		if (rc)
			return rc;
		if ((rc = rec_buf_fit(rb, h->body_len ? h->body_len : 1)))
			return err_setf(err, rc, "out of memory for a %u-byte %s record",
					h->body_len, proto_type_name(h->type));
		if (h->body_len) {
			rc = net_chan_read(ch, rb->p, h->body_len, timeout_ms);
			if (rc)
				return eng_io_error(err, rc, peer, "reading a record body", ch->err);
		}
		if (!h->skip)
			break;
	}
	if (h->type == PROTO_ERROR) {
		struct proto_error e;

		rc = proto_err_decode(h, rb->p, &e, err);
		if (rc)
			return rc;
		/* The peer's words, escaped: a valid ERROR text may still
		 * hold C1 controls (common/esc.h). */
		char text[ESC_MAX(PROTO_ERROR_TEXT_MAX) + 1];

		esc_text(text, sizeof(text), e.text, e.text_len);
		return err_setf(err, -ECONNABORTED, "the %s failed: %s", peer, text);
	}
	return 0;
}

int eng_rec_send(struct net_chan *ch, const void *buf, size_t len, int timeout_ms,
		 char *err)
{
	struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
	int64_t seq = net_chan_sendv(ch, &iov, 1);

	if (seq < 0)
		return eng_io_error(err, (int)seq, ch->peer ? ch->peer : "peer", "sending", ch->err);
	int rc = net_chan_send_wait(ch, seq, timeout_ms);
	if (rc)
		return eng_io_error(err, rc, ch->peer ? ch->peer : "peer", "sending", ch->err);
	return 0;
}

void eng_send_error(struct net_chan *ch, int rc, const char *text)
{
	uint8_t buf[PROTO_HDR_LEN + 8 + PROTO_ERROR_TEXT_MAX];
	char ignored[ERR_LEN];
	int n;

	if (!ch->open)
		return;
	n = proto_err_encode(buf, sizeof(buf), rc < 0 ? -rc : (rc ? rc : EPROTO), text,
			     ignored);
	if (n > 0)
		eng_rec_send(ch, buf, (size_t)n, 1000, ignored);
}

uint64_t eng_session_id(void)
{
	uint64_t id = 0;

	while (!id)
		if (getrandom(&id, sizeof(id), 0) != sizeof(id))
			id = clock_now_ns() ^ ((uint64_t)getpid() << 32);
	return id;
}

void eng_report_guest(struct stats_report *rep, enum hmig_mode mode, struct hmig_guest *g,
		      const struct hmig_guest_geometry *geo)
{
	struct hmig_guest_stats gs;

	rep->mode = mode;
	snprintf(rep->guest.backend, sizeof(rep->guest.backend), "%s", g->ops->name);
	rep->guest.pages = geo->npages;
	rep->guest.page_size = geo->page_size;
	rep->guest.vcpus = geo->nvcpus;
	if (geo->npages && g->ops->stats(g, &gs) == 0)
		snprintf(rep->guest.workload, sizeof(rep->guest.workload), "%s", gs.workload);
	/* The process's peak resident memory, the guest's included: what a
	 * side costs its host (ru_maxrss is in KiB on Linux). */
	struct rusage ru;
	if (getrusage(RUSAGE_SELF, &ru) == 0)
		stats_report_set_extra_double(rep, "peak_rss_mib", (double)ru.ru_maxrss / 1024.0);
}
