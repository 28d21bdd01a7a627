/* A channel: one connected stream socket driven by its own io_uring.
 *
 * Send side.  net_chan_sendv() copies the caller's iovec list into one of
 * max_inflight slots and returns a sequence number.  The kernel sees ONE
 * sendmsg at a time, built from every queued slot's unsent iovecs (up to
 * NET_IOV_MAX, up to the bandwidth cap's tokens).  Two sends in flight on one
 * stream socket may interleave their bytes when the first comes back short
 * (its remainder is resubmitted after the second started), and linked sends
 * break their chain on a short send; one in flight is the simple way to keep
 * the stream in order, and coalescing makes it no slower: while one request
 * drains, later sends queue up and all go in the next request.  A slot
 * completes when all its bytes were sent and no request still references its
 * memory (a zero-copy request does until its notification completion).
 *
 * Receive side.  Data lands in nbufs buffers of buf_size bytes: a provided
 * buffer ring the kernel picks from, filled by one multishot recv when the
 * kernel has them, else by one single-shot recv at a time.  Completed buffers
 * queue up in order as segments; reads copy out of them, peek/consume read
 * them in place, and a buffer goes back to the kernel once fully consumed.
 * When all buffers hold unconsumed data the recv stops (-ENOBUFS) and TCP
 * flow control pushes back on the sender until the consumer catches up.
 *
 * Every wait goes through chan_wait(): submit, wait for a completion or a
 * deadline (the caller's, or the bandwidth cap's next refill), reap, resubmit.
 */
#include "net/net.h"

#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>

#include "net/sys.h"

/* Queued sends per channel.  Eight batches of a few hundred KiB keep the
 * socket busy while the engine prepares the next one, and bound the guest
 * memory the kernel may still be reading (which the engine must not reuse)
 * to a few MiB. */
#define DEF_INFLIGHT 8
#define MAX_INFLIGHT 4096

/* Bulk receive buffers: 32 x 128 KiB = 4 MiB, the bulk socket buffer, so the
 * socket can hand over all it holds without waiting for the consumer.  A
 * PAGES record (256 pages by default, 1 MiB) spans several buffers; the
 * engine copies records out with net_chan_read.  net_chan_peek, the in-place
 * view, is not used by the engine yet (docs/benchmarks.md: installing from
 * the receive buffers would save one copy per page). */
#define BULK_NBUFS 32
#define BULK_BUF_SIZE (128u << 10)

/* Urgent receive buffers: a request or a reply is a header plus at most a
 * page; 16 KiB holds a few, 16 of them absorb a burst of faults. */
#define URGENT_NBUFS 16
#define URGENT_BUF_SIZE (16u << 10)

/* Buffer ids are 16 bits and ring sizes powers of two, but the CQ (below:
 * 2 * nbufs + 2 * RING_ENTRIES, rounded up) may have at most 65536 entries
 * (the kernel's IORING_MAX_CQ_ENTRIES), which 32768 buffers would pass. */
#define MAX_NBUFS 16384

/* Zero-copy only from this size: Linux's MSG_ZEROCOPY documentation puts
 * the break-even at about 10 KB (pinning pages and a notification cost more
 * than a memcpy below that); 32 KiB leaves room for the extra completion
 * io_uring adds.  Loopback copies anyway, so tests see no difference. */
#define ZC_MIN (32u << 10)

/* Bandwidth cap.  The bucket holds at most 50 ms worth of bytes (at least
 * 64 KiB): enough to keep the link busy across our own wake-up latency,
 * small enough that the average over any window above ~100 ms stays near
 * the cap.  A send request waits for at least RATE_QUANTUM tokens (or what
 * is left to send), or a cap would become a flood of tiny requests. */
#define RATE_BURST_MIN (64u << 10)
#define RATE_BURST_DIV 20
#define RATE_QUANTUM (64u << 10)

/* 32 SQEs: at most one send, one recv, one wake poll and a cancel are
 * prepared between two submits.  The CQ is sized for a multishot recv that
 * fills every buffer before we reap; the kernel keeps overflowing CQEs
 * (IORING_FEAT_NODROP) anyway. */
#define RING_ENTRIES 32

/* How long close waits for the kernel to let go of our receive buffers. */
#define CLOSE_DRAIN_MS 1000

#define BGID 0

struct net_send {
	struct iovec *iov;      /* the caller's list, zero-length entries dropped */
	int iovcnt;
	int idx;                /* first iovec not fully sent */
	size_t off;             /* bytes of iov[idx] sent */
	size_t len, done;
	unsigned refs;          /* requests still referencing this memory */
	uint8_t *ct;            /* TLS: the send as ciphertext, what goes out */
	size_t ct_len, ct_cap;  /* kept across sends: a slot's buffer is reused */
};

struct net_seg {
	uint32_t bid, off, len;
};

/* user_data: operation in the top byte, then two 24-bit operands.  For a
 * send: the number of slots it covers and the first slot's index; for a
 * recv into our own buffer: the buffer id. */
enum { OP_SEND = 1, OP_RECV, OP_WAKE, OP_CANCEL };
#define UD(op, hi, lo) (((uint64_t)(op) << 56) | ((uint64_t)(hi) << 24) | (uint64_t)(lo))
#define UD_OP(u) ((unsigned)((u) >> 56))
#define UD_HI(u) ((unsigned)(((u) >> 24) & 0xffffff))
#define UD_LO(u) ((unsigned)((u) & 0xffffff))

/* Counters have one writer, the owning thread, and any reader (stats
 * sampling from another thread).  A relaxed load and store is then exact
 * and cheaper than a locked read-modify-write; relaxed is enough because a
 * reader wants each number, not an ordering between them. */
#define STAT_ADD(ch, f, n) \
	atomic_store_explicit(&(ch)->st.f, atomic_load_explicit(&(ch)->st.f, memory_order_relaxed) + (n), \
			      memory_order_relaxed)

static size_t tls_fill(struct net_chan *ch, size_t want);
static ssize_t tls_decrypt(struct net_chan *ch, void *dst, size_t len);
static int tls_error(struct net_chan *ch);
static int tls_seal(struct net_chan *ch, struct net_send *s);

const char *net_kind_name(enum net_kind kind)
{
	return kind == NET_URGENT ? "urgent" : "bulk";
}

static const char *name(const struct net_chan *ch)
{
	return net_kind_name(ch->kind);
}

static struct io_uring_sqe *chan_sqe(struct net_chan *ch)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&ch->ring);

	if (!sqe) {
		io_uring_submit(&ch->ring);
		sqe = io_uring_get_sqe(&ch->ring);
	}
	return sqe;
}

/* ---- errors --------------------------------------------------------------- */

static int peer_error(struct net_chan *ch, int rc, bool eof, const char *dir)
{
	switch (-rc) {
	case EPIPE:
	case ECONNRESET:
		if (eof)
			return err_setf(ch->err, rc, "%s channel: peer closed the connection (did %s exit?)",
					name(ch), ch->peer);
		return err_setf(ch->err, rc, "%s channel: peer closed the connection (reset; did %s exit or crash?)",
				name(ch), ch->peer);
	case ETIMEDOUT:
		return err_setf(ch->err, rc, "%s channel: connection timed out (is %s still reachable?)",
				name(ch), ch->peer);
	case ECANCELED:
		return err_setf(ch->err, rc, "%s channel: %s cancelled by the kernel (the thread that queued it exited; flush before handing a channel to another thread)",
				name(ch), dir);
	default:
		return err_setf(ch->err, rc, "%s channel: %s failed: %s", name(ch), dir, strerror(-rc));
	}
}

static int tx_error(struct net_chan *ch)
{
	return peer_error(ch, ch->tx_err, false, "send");
}

static int rx_error(struct net_chan *ch)
{
	if (ch->rx_desync)
		return err_setf(ch->err, ch->rx_err, "%s channel: an earlier read was cut short, the stream is out of sync (close the channel)",
				name(ch));
	return peer_error(ch, ch->rx_err, ch->rx_eof, "receive");
}

static int wait_error(struct net_chan *ch, int rc, int timeout_ms, const char *what)
{
	if (rc == -ETIMEDOUT)
		return err_setf(ch->err, rc, "%s channel: %s for %d ms (is %s stuck?)", name(ch), what,
				timeout_ms, ch->peer);
	if (rc == -EINTR)
		return err_setf(ch->err, rc, "%s channel: wait interrupted by net_chan_wake", name(ch));
	return rc;  /* the message is already there */
}

static int closed_error(struct net_chan *ch)
{
	return err_setf(ch->err, -EBADF, "%s channel: used after close", name(ch));
}

/* ---- bandwidth cap -------------------------------------------------------- */

static void rate_refill(struct net_chan *ch, uint64_t now)
{
	ch->tokens += (double)(now - ch->tokens_ns) * (double)ch->rate / 1e9;
	if (ch->tokens > ch->burst)
		ch->tokens = ch->burst;
	ch->tokens_ns = now;
}

void net_chan_set_send_timeout(struct net_chan *ch, int timeout_ms)
{
	ch->send_timeout_ms = timeout_ms;
}

void net_chan_set_rate(struct net_chan *ch, uint64_t bytes_per_s)
{
	ch->rate = bytes_per_s;
	ch->burst = (double)(bytes_per_s / RATE_BURST_DIV > RATE_BURST_MIN ?
			     bytes_per_s / RATE_BURST_DIV : RATE_BURST_MIN);
	ch->tokens = ch->burst;
	ch->tokens_ns = clock_now_ns();
	ch->throttled_until = 0;
}

void net_chan_request_rate(struct net_chan *ch, uint64_t bytes_per_s)
{
	atomic_store(&ch->rate_next, bytes_per_s == UINT64_MAX ? bytes_per_s : bytes_per_s + 1);
}

/* How many bytes the next request may carry; 0 = wait (throttled_until set). */
static uint64_t rate_allow(struct net_chan *ch, uint64_t unsent)
{
	uint64_t now = clock_now_ns(), next = atomic_exchange(&ch->rate_next, 0);
	double need;

	if (next)
		net_chan_set_rate(ch, next - 1);

	if (!ch->rate)
		return UINT64_MAX;
	rate_refill(ch, now);
	need = (double)(unsent < RATE_QUANTUM ? unsent : RATE_QUANTUM);
	if (ch->tokens < need) {
		ch->throttled_until = now + (uint64_t)((need - ch->tokens) * 1e9 / (double)ch->rate) + 1;
		if (!ch->throttle_since)
			ch->throttle_since = now;
		return 0;
	}
	if (ch->throttle_since) {
		STAT_ADD(ch, throttle_ns, now - ch->throttle_since);
		ch->throttle_since = 0;
	}
	ch->throttled_until = 0;
	return (uint64_t)ch->tokens;
}

/* ---- send side ------------------------------------------------------------ */

static struct net_send *slot(struct net_chan *ch, uint64_t seq)
{
	return &ch->sends[seq % ch->cap];
}

/* Past sends with nothing left to submit (zero-length ones included). */
static void tx_advance_cursor(struct net_chan *ch)
{
	while (ch->seq_cursor < ch->seq_next) {
		struct net_send *s = slot(ch, ch->seq_cursor);

		if (s->done < s->len)
			break;
		ch->seq_cursor++;
	}
}

static void tx_retire(struct net_chan *ch)
{
	while (ch->seq_done + 1 < ch->seq_next) {
		struct net_send *s = slot(ch, ch->seq_done + 1);

		if (s->done < s->len || s->refs)
			break;
		ch->seq_done++;
	}
}

static void tx_unref(struct net_chan *ch, unsigned first, unsigned count)
{
	for (unsigned k = 0; k < count; k++)
		ch->sends[(first + k) % ch->cap].refs--;
}

/* The kernel took n more bytes: move them from unsent to sent, in order. */
static void tx_progress(struct net_chan *ch, size_t n)
{
	ch->tx_queued -= n;
	while (n && ch->seq_cursor < ch->seq_next) {
		struct net_send *s = slot(ch, ch->seq_cursor);

		while (n && s->idx < s->iovcnt) {
			size_t l = s->iov[s->idx].iov_len - s->off;

			if (l > n) {
				s->off += n;
				s->done += n;
				n = 0;
				break;
			}
			s->done += l;
			n -= l;
			s->idx++;
			s->off = 0;
		}
		if (s->done < s->len)
			break;
		ch->seq_cursor++;
	}
	tx_advance_cursor(ch);
}

static void tx_submit(struct net_chan *ch)
{
	uint64_t limit, total = 0;
	unsigned first, count = 0;
	struct io_uring_sqe *sqe;
	int n = 0, flags;
	bool zc;

	if (ch->tx_busy || ch->tx_err || ch->closing || ch->seq_cursor >= ch->seq_next)
		return;
	limit = rate_allow(ch, ch->tx_queued);
	if (!limit)
		return;
	first = (unsigned)(ch->seq_cursor % ch->cap);
	for (uint64_t seq = ch->seq_cursor;
	     seq < ch->seq_next && n < NET_IOV_MAX && total < limit; seq++) {
		struct net_send *s = slot(ch, seq);
		size_t off = s->off;

		count++;
		for (int i = s->idx; i < s->iovcnt && n < NET_IOV_MAX && total < limit; i++, off = 0) {
			size_t l = s->iov[i].iov_len - off;

			if (l > limit - total)
				l = (size_t)(limit - total);
			ch->tx_iov[n++] = (struct iovec){ (char *)s->iov[i].iov_base + off, l };
			total += l;
		}
	}
	if (!total)
		return;
	sqe = chan_sqe(ch);
	if (!sqe)
		return;     /* the SQ is full of requests; retried after the next reap */
	ch->tx_msg = (struct msghdr){ .msg_iov = ch->tx_iov, .msg_iovlen = (size_t)n };
	/* MSG_NOSIGNAL: a send to a closed peer must fail with -EPIPE, not kill
	 * the process with SIGPIPE. */
	flags = MSG_NOSIGNAL | (ch->features & NET_F_SEND_WAITALL ? MSG_WAITALL : 0);
	zc = (ch->features & NET_F_SEND_ZC) && total >= ZC_MIN;
	if (zc)
		io_uring_prep_sendmsg_zc(sqe, ch->fd, &ch->tx_msg, (unsigned)flags);
	else
		io_uring_prep_sendmsg(sqe, ch->fd, &ch->tx_msg, (unsigned)flags);
	io_uring_sqe_set_data64(sqe, UD(OP_SEND, count, first));
	for (unsigned k = 0; k < count; k++)
		ch->sends[(first + k) % ch->cap].refs++;
	ch->tx_busy = true;
	ch->tx_zc = zc;
	ch->tx_len = (size_t)total;
	ch->ops++;
	if (ch->rate)
		ch->tokens -= (double)total;
	STAT_ADD(ch, submits, 1);
	if (zc)
		STAT_ADD(ch, zc_submits, 1);
}

static void tx_complete(struct net_chan *ch, const struct io_uring_cqe *cqe)
{
	uint64_t ud = io_uring_cqe_get_data64(cqe);
	int res = cqe->res;

	/* A zero-copy request completes twice: first the result (with F_MORE),
	 * later the notification that the kernel let go of the pages. */
	if (!(cqe->flags & IORING_CQE_F_MORE)) {
		tx_unref(ch, UD_LO(ud), UD_HI(ud));
		ch->ops--;
	}
	if (cqe->flags & IORING_CQE_F_NOTIF)
		return;
	ch->tx_busy = false;
	if (res >= 0 && (size_t)res < ch->tx_len && ch->rate)
		ch->tokens += (double)(ch->tx_len - (size_t)res);  /* unsent bytes cost nothing */
	if (res > 0) {
		tx_progress(ch, (size_t)res);
		STAT_ADD(ch, bytes_sent, (uint64_t)res);
		if ((size_t)res < ch->tx_len)
			STAT_ADD(ch, short_sends, 1);
		return;
	}
	if (ch->tx_zc && (res == -EOPNOTSUPP || res == -EINVAL)) {
		/* This socket cannot do zero-copy: copy from now on.  The next
		 * pump resubmits the same bytes. */
		ch->features &= ~NET_F_SEND_ZC;
		return;
	}
	if (res == 0 || res == -EAGAIN || res == -EINTR)
		return;     /* nothing sent, resubmitted by the next pump */
	ch->tx_err = res;
}

/* ---- receive side --------------------------------------------------------- */

static unsigned char *buf_of(struct net_chan *ch, unsigned bid)
{
	return ch->bufs + (size_t)bid * ch->buf_size;
}

static void buf_release(struct net_chan *ch, unsigned bid)
{
	if (ch->features & NET_F_BUF_RING) {
		io_uring_buf_ring_add(ch->br, buf_of(ch, bid), ch->buf_size, (unsigned short)bid,
				      io_uring_buf_ring_mask(ch->nbufs), 0);
		io_uring_buf_ring_advance(ch->br, 1);
	} else {
		ch->free_bids[ch->nfree++] = (uint16_t)bid;
	}
}

static void rx_arm(struct net_chan *ch)
{
	struct io_uring_sqe *sqe;

	if (!ch->rx_started || ch->rx_armed || ch->rx_err || ch->closing)
		return;
	/* Every buffer holds unconsumed data: arming now would only fail with
	 * -ENOBUFS.  Consuming re-arms. */
	if ((ch->features & NET_F_BUF_RING) ? ch->seg_count == ch->nbufs : ch->nfree == 0)
		return;
	sqe = chan_sqe(ch);
	if (!sqe)
		return;
	if (ch->features & NET_F_BUF_RING) {
		if (ch->features & NET_F_RECV_MULTISHOT)
			io_uring_prep_recv_multishot(sqe, ch->fd, NULL, 0, 0);
		else
			io_uring_prep_recv(sqe, ch->fd, NULL, ch->buf_size, 0);
		sqe->flags |= IOSQE_BUFFER_SELECT;
		sqe->buf_group = BGID;
		io_uring_sqe_set_data64(sqe, UD(OP_RECV, 0, 0));
	} else {
		unsigned bid = ch->free_bids[--ch->nfree];

		io_uring_prep_recv(sqe, ch->fd, buf_of(ch, bid), ch->buf_size, 0);
		io_uring_sqe_set_data64(sqe, UD(OP_RECV, 0, bid));
	}
	ch->rx_armed = true;
	ch->ops++;
}

static void rx_complete(struct net_chan *ch, const struct io_uring_cqe *cqe)
{
	bool ring = ch->features & NET_F_BUF_RING;
	bool has_buf = ring ? (cqe->flags & IORING_CQE_F_BUFFER) : true;
	unsigned bid = ring ? cqe->flags >> IORING_CQE_BUFFER_SHIFT
			    : UD_LO(io_uring_cqe_get_data64(cqe));
	int res = cqe->res;

	if (!(cqe->flags & IORING_CQE_F_MORE)) {
		ch->rx_armed = false;
		ch->ops--;
	}
	if (res > 0) {
		struct net_seg *s = &ch->segs[(ch->seg_head + ch->seg_count++) % ch->nbufs];

		*s = (struct net_seg){ .bid = bid, .off = 0, .len = (uint32_t)res };
		ch->rx_avail += (size_t)res;
		ch->rx_ok = true;
		STAT_ADD(ch, bytes_recv, (uint64_t)res);
		STAT_ADD(ch, recv_cqes, 1);
		return;
	}
	if (has_buf)
		buf_release(ch, bid);
	if (ch->closing || ch->rx_err)
		return;
	switch (-res) {
	case 0:
		ch->rx_err = -ECONNRESET;
		ch->rx_eof = true;
		break;
	case ENOBUFS:   /* all buffers full: rx_arm once one is consumed */
	case ECANCELED: /* the arming thread exited: the next receiver re-arms */
	case EAGAIN:
	case EINTR:
		break;
	case EINVAL:
		if ((ch->features & NET_F_RECV_MULTISHOT) && !ch->rx_ok) {
			/* The probe: this kernel has no multishot recv. */
			ch->features &= ~NET_F_RECV_MULTISHOT;
			break;
		}
		ch->rx_err = res;
		break;
	default:
		ch->rx_err = res;
		break;
	}
}

static void rx_consume(struct net_chan *ch, size_t n)
{
	while (n) {
		struct net_seg *s = &ch->segs[ch->seg_head];
		size_t l = n < s->len ? n : s->len;

		s->off += (uint32_t)l;
		s->len -= (uint32_t)l;
		ch->rx_avail -= l;
		n -= l;
		if (!s->len) {
			buf_release(ch, s->bid);
			ch->seg_head = (ch->seg_head + 1) % ch->nbufs;
			ch->seg_count--;
		}
	}
}

/* ---- TLS ------------------------------------------------------------------ */

/* With TLS the channel holds the connection's GnuTLS session, and GnuTLS's
 * transport is the channel's buffers, not the socket:
 *
 *   send:  net_chan_sendv -> tls_seal: the caller's iovecs, gathered into
 *          records of up to 16 KiB, are encrypted by gnutls_record_send,
 *          whose push callback appends the ciphertext to the send slot's
 *          buffer; the slot then sends that buffer like any iovec.  The
 *          caller's memory is read once, at sendv (stronger than the
 *          plaintext promise: the kernel reads until the send completes).
 *   recv:  the multishot recv fills the provided buffers with ciphertext;
 *          gnutls_record_recv's pull callback copies it out of them (and
 *          so releases them to the kernel) and decrypts into the reader's
 *          buffer, or into pt for peek and readable.
 *
 * The urgent channel has a session of its own: its records never queue
 * behind bulk's.  One extra copy each way (the ciphertext into and out of
 * GnuTLS's record buffer) is the price of keeping io_uring in charge of the
 * socket; the AEAD pass over the data costs more than either. */

static ssize_t tls_push(gnutls_transport_ptr_t p, const void *data, size_t len)
{
	struct net_chan *ch = p;
	struct net_send *s = ch->sealing;

	if (!s) {
		/* GnuTLS writes only from inside tls_seal (no tickets, no key
		 * updates are asked for): anything else is refused. */
		gnutls_transport_set_errno(ch->tls, EIO);
		return -1;
	}
	if (s->ct_len + len > s->ct_cap) {
		size_t cap = s->ct_cap ? 2 * s->ct_cap : 64 * 1024;
		uint8_t *ct;

		while (cap < s->ct_len + len)
			cap *= 2;
		ct = realloc(s->ct, cap);
		if (!ct) {
			gnutls_transport_set_errno(ch->tls, ENOMEM);
			return -1;
		}
		s->ct = ct;
		s->ct_cap = cap;
	}
	memcpy(s->ct + s->ct_len, data, len);
	s->ct_len += len;
	return (ssize_t)len;
}

static ssize_t tls_pull(gnutls_transport_ptr_t p, void *dst, size_t len)
{
	struct net_chan *ch = p;
	size_t got = 0;

	while (got < len && ch->rx_avail) {
		struct net_seg *s = &ch->segs[ch->seg_head];
		size_t l = len - got < s->len ? len - got : s->len;

		memcpy((char *)dst + got, buf_of(ch, s->bid) + s->off, l);
		rx_consume(ch, l);
		got += l;
	}
	if (got)
		return (ssize_t)got;
	if (ch->rx_err && ch->rx_eof)
		return 0;
	gnutls_transport_set_errno(ch->tls, ch->rx_err ? ECONNRESET : EAGAIN);
	return -1;
}

/* Encrypts the send's iovecs into its ciphertext buffer and makes that its
 * only iovec.  Small pieces (record headers, pfn lists) are gathered in
 * `stage` so that a record is 16 KiB whenever there is that much: each
 * record costs a header, a tag and a call into the cipher. */
static int tls_seal(struct net_chan *ch, struct net_send *s)
{
	size_t st = 0;
	int rc = 0;

	s->ct_len = 0;
	ch->sealing = s;
	/* A net_chan may be copied (a net_pair returned by value): point
	 * GnuTLS at where this one is now, before each use. */
	gnutls_transport_set_ptr(ch->tls, ch);
	for (int i = 0; i < s->iovcnt && !rc; i++) {
		const uint8_t *p = s->iov[i].iov_base;
		size_t n = s->iov[i].iov_len;

		while (n && !rc) {
			const uint8_t *rec = p;
			size_t l = NET_TLS_RECORD;

			if (st || n < NET_TLS_RECORD) {
				l = n < NET_TLS_RECORD - st ? n : NET_TLS_RECORD - st;
				memcpy(ch->stage + st, p, l);
				st += l;
				p += l;
				n -= l;
				if (st < NET_TLS_RECORD)
					continue;
				rec = ch->stage;
				l = st;
				st = 0;
			} else {
				p += l;
				n -= l;
			}
			if (gnutls_record_send(ch->tls, rec, l) != (ssize_t)l)
				rc = -EIO;
		}
	}
	if (!rc && st && gnutls_record_send(ch->tls, ch->stage, st) != (ssize_t)st)
		rc = -EIO;
	ch->sealing = NULL;
	if (rc)
		return err_setf(ch->err, -ENOMEM, "%s channel: cannot encrypt a send (out of memory?)",
				name(ch));
	s->iov[0] = (struct iovec){ s->ct, s->ct_len };
	s->iovcnt = s->ct_len ? 1 : 0;
	s->len = s->ct_len;
	return 0;
}

/* Decrypts into dst (len > 0): bytes, 0 when more ciphertext must come
 * first, or -errno (sticky in tls_err) when the stream cannot go on. */
static ssize_t tls_decrypt(struct net_chan *ch, void *dst, size_t len)
{
	ssize_t n;

	if (ch->tls_err)
		return ch->tls_err;
	gnutls_transport_set_ptr(ch->tls, ch); /* as in tls_seal */
	n = gnutls_record_recv(ch->tls, dst, len);
	if (n > 0)
		return n;
	switch (n) {
	case GNUTLS_E_AGAIN:
	case GNUTLS_E_INTERRUPTED:
		return 0;
	case 0:                             /* close_notify */
	case GNUTLS_E_PREMATURE_TERMINATION: /* the socket ended without one */
		ch->tls_err = ch->rx_err && !ch->rx_eof ? ch->rx_err : -ECONNRESET;
		ch->tls_eof = !ch->rx_err || ch->rx_eof;
		break;
	case GNUTLS_E_PULL_ERROR:
		/* The socket failed under TLS (reset, timed out: tls_pull saw
		 * rx_err): the link's error, so that a caller sees a lost link
		 * (and recovers after the commit) as it would without TLS, not a
		 * protocol error. */
		ch->tls_err = ch->rx_err ? ch->rx_err : -ECONNRESET;
		break;
	case GNUTLS_E_DECRYPTION_FAILED:
		ch->tls_err = -EBADMSG;
		break;
	default:
		ch->tls_err = -EPROTO;
		ch->tls_gnutls_err = (int)n;
		break;
	}
	return ch->tls_err;
}

static int tls_error(struct net_chan *ch)
{
	if (ch->rx_desync)
		return rx_error(ch);
	switch (-ch->tls_err) {
	case EBADMSG:
		return err_setf(ch->err, ch->tls_err, "%s channel: a TLS record failed authentication: the stream was corrupted or tampered with in transit",
				name(ch));
	case EPROTO:
		return err_setf(ch->err, ch->tls_err, "%s channel: TLS error: %s", name(ch),
				gnutls_strerror(ch->tls_gnutls_err));
	default:
		return peer_error(ch, ch->tls_err, ch->tls_eof, "receive");
	}
}

/* Decrypts ahead into pt until it holds `want` bytes or no more can come
 * without waiting; returns what pt holds. */
static size_t tls_fill(struct net_chan *ch, size_t want)
{
	while (ch->pt_len < want && !ch->tls_err) {
		size_t room;

		if (ch->pt_off && ch->pt_off + want > ch->pt_cap) {
			memmove(ch->pt, ch->pt + ch->pt_off, ch->pt_len);
			ch->pt_off = 0;
		}
		if (want > ch->pt_cap) {
			uint8_t *pt = realloc(ch->pt, want);

			if (!pt)
				break;
			ch->pt = pt;
			ch->pt_cap = want;
		}
		room = ch->pt_cap - ch->pt_off - ch->pt_len;
		if (!room)
			break;
		ssize_t n = tls_decrypt(ch, ch->pt + ch->pt_off + ch->pt_len, room);

		if (n <= 0)
			break;
		ch->pt_len += (size_t)n;
	}
	return ch->pt_len;
}

/* ---- wake-up -------------------------------------------------------------- */

/* A poll on the channel's eventfd lives in the ring, so a wake ends any wait
 * on the ring (and makes the ring fd readable for net_chan_wait_any):
 *
 *   waker                         owner
 *                                 wake_arm: poll(eventfd) in the ring
 *   write(eventfd, 1) ----------> poll completes -> read(eventfd) -> woken
 *                                 the wait returns -EINTR
 *
 * A write before the poll is armed is not lost: the eventfd stays readable
 * and the poll completes as soon as it is armed. */
static void wake_arm(struct net_chan *ch)
{
	struct io_uring_sqe *sqe;

	if (ch->wake_armed || ch->closing)
		return;
	sqe = chan_sqe(ch);
	if (!sqe)
		return;
	if (ch->wake_oneshot)
		io_uring_prep_poll_add(sqe, ch->wake_fd, POLLIN);
	else
		io_uring_prep_poll_multishot(sqe, ch->wake_fd, POLLIN);
	io_uring_sqe_set_data64(sqe, UD(OP_WAKE, 0, 0));
	ch->wake_armed = true;
	ch->ops++;
}

static void wake_complete(struct net_chan *ch, const struct io_uring_cqe *cqe)
{
	uint64_t v;

	if (!(cqe->flags & IORING_CQE_F_MORE)) {
		ch->wake_armed = false;
		ch->ops--;
	}
	if (cqe->res == -EINVAL && !ch->wake_oneshot) {
		ch->wake_oneshot = true;    /* no multishot poll (before 5.13) */
		return;
	}
	if (cqe->res > 0) {
		/* Reset the counter so the next wake is a new event. */
		if (read(ch->wake_fd, &v, sizeof(v)) == (ssize_t)sizeof(v))
			ch->woken = true;
	}
}

int net_chan_wake(struct net_chan *ch)
{
	uint64_t one = 1;

	if (write(ch->wake_fd, &one, sizeof(one)) < 0)
		return errno == EAGAIN ? 0 : -errno;    /* EAGAIN: counter full, a wake is pending */
	return 0;
}

/* ---- the loop ------------------------------------------------------------- */

static void chan_reap(struct net_chan *ch)
{
	struct io_uring_cqe *cqe;
	unsigned head, n = 0;

	io_uring_for_each_cqe(&ch->ring, head, cqe) {
		uint64_t ud = io_uring_cqe_get_data64(cqe);

		n++;
		if (ud == LIBURING_UDATA_TIMEOUT)
			continue;   /* liburing's own, on kernels without IORING_FEAT_EXT_ARG */
		switch (UD_OP(ud)) {
		case OP_SEND:
			tx_complete(ch, cqe);
			break;
		case OP_RECV:
			rx_complete(ch, cqe);
			break;
		case OP_WAKE:
			wake_complete(ch, cqe);
			break;
		case OP_CANCEL:
			ch->ops--;
			break;
		}
	}
	io_uring_cq_advance(&ch->ring, n);
	tx_retire(ch);
}

/* Queue what can go now, and hand it to the kernel. */
static void chan_pump(struct net_chan *ch)
{
	tx_submit(ch);
	rx_arm(ch);
	if (io_uring_sq_ready(&ch->ring))
		io_uring_submit(&ch->ring);
}

/* Non-blocking: reap what completed, resubmit. */
static void chan_poll(struct net_chan *ch)
{
	chan_reap(ch);
	chan_pump(ch);
}

/* One wait: returns 0 after something completed or the bandwidth cap's timer
 * ran out (the caller re-checks its condition), -ETIMEDOUT if the deadline
 * had already passed, -EINTR after a wake. */
static int chan_wait(struct net_chan *ch, uint64_t deadline)
{
	struct io_uring_cqe *cqe;
	struct __kernel_timespec ts;
	uint64_t until = deadline, now = clock_now_ns();
	int rc;

	wake_arm(ch);
	chan_pump(ch);
	if (ch->woken) {
		ch->woken = false;
		return -EINTR;
	}
	if (deadline != NET_NEVER && now >= deadline)
		return -ETIMEDOUT;
	if (ch->throttled_until && ch->throttled_until < until)
		until = ch->throttled_until;
	if (until == NET_NEVER) {
		rc = io_uring_submit_and_wait(&ch->ring, 1);
	} else {
		uint64_t d = until > now ? until - now : 0;

		ts.tv_sec = (long long)(d / 1000000000ull);
		ts.tv_nsec = (long long)(d % 1000000000ull);
		rc = io_uring_submit_and_wait_timeout(&ch->ring, &cqe, 1, &ts, NULL);
	}
	if (rc < 0 && rc != -ETIME && rc != -EINTR && rc != -EBUSY && rc != -EAGAIN)
		return err_setf(ch->err, rc, "%s channel: io_uring wait failed: %s", name(ch),
				strerror(-rc));
	chan_poll(ch);
	if (ch->woken) {
		ch->woken = false;
		return -EINTR;
	}
	return 0;
}

/* ---- open / close ---------------------------------------------------------- */

static unsigned pow2_at_least(unsigned v)
{
	unsigned p = 1;

	while (p < v)
		p <<= 1;
	return p;
}

static int uring_error(struct net_chan *ch, int rc)
{
	switch (-rc) {
	case ENOSYS:
		return err_setf(ch->err, rc, "cannot create an io_uring: this kernel has none (hmig needs Linux 5.6 or later built with CONFIG_IO_URING)");
	case EPERM:
	case EACCES:
		return err_setf(ch->err, rc, "cannot create an io_uring: not permitted (check sysctl kernel.io_uring_disabled, or the container's seccomp policy)");
	case ENOMEM:
		return err_setf(ch->err, rc, "cannot create an io_uring: out of locked memory (raise 'ulimit -l')");
	default:
		return err_setf(ch->err, rc, "cannot create an io_uring: %s", strerror(-rc));
	}
}

static int setup_bufs(struct net_chan *ch, const struct net_opts *o)
{
	struct io_uring_buf_reg reg = { 0 };
	int rc;

	ch->bufs_len = (size_t)ch->nbufs * ch->buf_size;
	ch->bufs = mmap(NULL, ch->bufs_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (ch->bufs == MAP_FAILED) {
		ch->bufs = NULL;
		return err_setf(ch->err, -ENOMEM, "%s channel: cannot map %zu bytes of receive buffers",
				name(ch), ch->bufs_len);
	}
	ch->segs = calloc(ch->nbufs, sizeof(*ch->segs));
	if (!ch->segs)
		return err_setf(ch->err, -ENOMEM, "%s channel: out of memory", name(ch));

	if (!(o->disable & NET_F_BUF_RING)) {
		/* The ring must be page aligned: mmap gives that. */
		ch->br_len = (size_t)ch->nbufs * sizeof(struct io_uring_buf);
		ch->br = mmap(NULL, ch->br_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (ch->br == MAP_FAILED) {
			ch->br = NULL;
			return err_setf(ch->err, -ENOMEM, "%s channel: cannot map the buffer ring", name(ch));
		}
		reg.ring_addr = (uint64_t)(uintptr_t)ch->br;
		reg.ring_entries = ch->nbufs;
		reg.bgid = BGID;
		rc = io_uring_register_buf_ring(&ch->ring, &reg, 0);
		if (rc == 0) {
			io_uring_buf_ring_init(ch->br);
			for (unsigned b = 0; b < ch->nbufs; b++)
				io_uring_buf_ring_add(ch->br, buf_of(ch, b), ch->buf_size, (unsigned short)b,
						      io_uring_buf_ring_mask(ch->nbufs), (int)b);
			io_uring_buf_ring_advance(ch->br, (int)ch->nbufs);
			ch->features |= NET_F_BUF_RING;
			/* Multishot recv came after buffer rings (6.0 vs 5.19) and
			 * has no probe: the first recv tells (-EINVAL). */
			if (!(o->disable & NET_F_RECV_MULTISHOT))
				ch->features |= NET_F_RECV_MULTISHOT;
			return 0;
		}
		/* -EINVAL: no buffer rings in this kernel; fall back. */
		munmap(ch->br, ch->br_len);
		ch->br = NULL;
	}
	ch->free_bids = calloc(ch->nbufs, sizeof(*ch->free_bids));
	if (!ch->free_bids)
		return err_setf(ch->err, -ENOMEM, "%s channel: out of memory", name(ch));
	for (unsigned b = ch->nbufs; b-- > 0;)
		ch->free_bids[ch->nfree++] = (uint16_t)b;
	return 0;
}

static void chan_free(struct net_chan *ch, bool ring, bool leak_bufs)
{
	if (ring)
		io_uring_queue_exit(&ch->ring);
	/* After a failed drain a recv may still be in the kernel: better to leak
	 * its buffers than let it write into memory that is reused. */
	if (!leak_bufs) {
		if (ch->bufs)
			munmap(ch->bufs, ch->bufs_len);
		if (ch->br)
			munmap(ch->br, ch->br_len);
	}
	ch->bufs = NULL;
	ch->br = NULL;
	for (unsigned i = 0; ch->sends && i < ch->cap; i++)
		free(ch->sends[i].ct);
	if (ch->tls)
		gnutls_deinit(ch->tls);
	ch->tls = NULL;
	free(ch->pt);
	free(ch->stage);
	ch->pt = ch->stage = NULL;
	free(ch->sends);
	free(ch->iov_pool);
	free(ch->tx_iov);
	free(ch->segs);
	free(ch->free_bids);
	ch->sends = NULL;
	ch->iov_pool = ch->tx_iov = NULL;
	ch->segs = NULL;
	ch->free_bids = NULL;
	sys_close(ch->wake_fd);
	sys_close(ch->fd);
	ch->wake_fd = ch->fd = -1;
}

int net_chan_open(struct net_chan *ch, int fd, enum net_kind kind, const struct net_opts *opts)
{
	struct net_opts o = opts ? *opts : (struct net_opts){ 0 };
	struct io_uring_params p = { 0 };
	struct io_uring_probe *probe;
	struct sockaddr_storage ss;
	socklen_t sslen = sizeof(ss);
	int rc;

	memset(ch, 0, sizeof(*ch));
	ch->fd = fd;
	ch->wake_fd = -1;
	ch->kind = kind;
	ch->peer = o.peer ? o.peer : "the peer";
	ch->cap = o.max_inflight ? o.max_inflight : DEF_INFLIGHT;
	if (ch->cap > MAX_INFLIGHT)
		ch->cap = MAX_INFLIGHT;
	ch->nbufs = pow2_at_least(o.nbufs ? o.nbufs : kind == NET_BULK ? BULK_NBUFS : URGENT_NBUFS);
	if (ch->nbufs > MAX_NBUFS)
		ch->nbufs = MAX_NBUFS;
	ch->buf_size = o.buf_size ? o.buf_size : kind == NET_BULK ? BULK_BUF_SIZE : URGENT_BUF_SIZE;
	ch->seq_next = ch->seq_cursor = 1;
	ch->send_timeout_ms = -1;

	p.flags = IORING_SETUP_CQSIZE;
	p.cq_entries = pow2_at_least(2 * ch->nbufs + 2 * RING_ENTRIES);
	rc = io_uring_queue_init_params(RING_ENTRIES, &ch->ring, &p);
	if (rc < 0) {
		uring_error(ch, rc);
		chan_free(ch, false, false);
		return rc;
	}

	ch->sends = calloc(ch->cap, sizeof(*ch->sends));
	ch->iov_pool = calloc((size_t)ch->cap * NET_SEND_IOV_MAX, sizeof(*ch->iov_pool));
	ch->tx_iov = calloc(NET_IOV_MAX, sizeof(*ch->tx_iov));
	if (!ch->sends || !ch->iov_pool || !ch->tx_iov) {
		rc = err_setf(ch->err, -ENOMEM, "%s channel: out of memory", name(ch));
		goto fail;
	}
	for (unsigned i = 0; i < ch->cap; i++)
		ch->sends[i].iov = ch->iov_pool + (size_t)i * NET_SEND_IOV_MAX;

	rc = setup_bufs(ch, &o);
	if (rc < 0)
		goto fail;

	ch->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (ch->wake_fd < 0) {
		rc = err_setf(ch->err, -errno, "%s channel: cannot create an eventfd: %s", name(ch),
			      strerror(errno));
		goto fail;
	}

	/* Zero-copy send needs the opcode (6.1) and a socket family that does
	 * it: TCP does, AF_UNIX does not (it would fail every request). */
	probe = io_uring_get_probe_ring(&ch->ring);
	if (probe && io_uring_opcode_supported(probe, IORING_OP_SENDMSG_ZC) &&
	    !(o.disable & NET_F_SEND_ZC) &&
	    getsockname(fd, (struct sockaddr *)&ss, &sslen) == 0 && ss.ss_family != AF_UNIX)
		ch->features |= NET_F_SEND_ZC;
	if (probe)
		io_uring_free_probe(probe);
	if (!(o.disable & NET_F_SEND_WAITALL))
		ch->features |= NET_F_SEND_WAITALL;

	ch->open = true;
	return 0;
fail:
	chan_free(ch, true, false);
	return rc;
}

void net_chan_close(struct net_chan *ch)
{
	struct io_uring_sqe *sqe;
	uint64_t deadline;

	if (!ch->open)
		return;
	ch->open = false;
	ch->closing = true;
	if (ch->ops) {
		/* shutdown() ends a recv or send waiting on the socket on every
		 * kernel; the cancel catches the rest (the wake poll). */
		shutdown(ch->fd, SHUT_RDWR);
		sqe = chan_sqe(ch);
		if (sqe) {
			io_uring_prep_cancel64(sqe, 0, IORING_ASYNC_CANCEL_ANY);
			io_uring_sqe_set_data64(sqe, UD(OP_CANCEL, 0, 0));
			ch->ops++;
		}
		io_uring_submit(&ch->ring);
		deadline = net_deadline(CLOSE_DRAIN_MS);
		while ((ch->rx_armed || ch->tx_busy) && clock_now_ns() < deadline) {
			struct io_uring_cqe *cqe;
			struct __kernel_timespec ts = { .tv_nsec = 10 * 1000000 };

			io_uring_submit_and_wait_timeout(&ch->ring, &cqe, 1, &ts, NULL);
			chan_reap(ch);
		}
	}
	chan_free(ch, true, ch->rx_armed);
}

/* ---- sending ---------------------------------------------------------------- */

int64_t net_chan_sendv(struct net_chan *ch, const struct iovec *iov, int iovcnt)
{
	struct net_send *s;
	uint64_t seq;
	int rc;

	if (!ch->open)
		return closed_error(ch);
	if (iovcnt < 0 || iovcnt > NET_SEND_IOV_MAX)
		return err_setf(ch->err, -EINVAL, "%s channel: %d iovecs in one send, at most %d",
				name(ch), iovcnt, NET_SEND_IOV_MAX);
	chan_poll(ch);
	/* Backpressure: the queue is full until the oldest send completes; a
	 * peer that stops reading fails the send after send_timeout_ms. */
	uint64_t deadline = net_deadline(ch->send_timeout_ms);
	while (!ch->tx_err && ch->seq_next - 1 - ch->seq_done >= ch->cap) {
		rc = chan_wait(ch, deadline);
		if (rc < 0)
			return wait_error(ch, rc, ch->send_timeout_ms, "a send waited for room");
	}
	if (ch->tx_err)
		return tx_error(ch);

	seq = ch->seq_next++;
	s = slot(ch, seq);
	*s = (struct net_send){ .iov = s->iov, .ct = s->ct, .ct_cap = s->ct_cap };
	for (int i = 0; i < iovcnt; i++) {
		if (!iov[i].iov_len)
			continue;
		s->iov[s->iovcnt++] = iov[i];
		s->len += iov[i].iov_len;
	}
	if (ch->tls && (rc = tls_seal(ch, s)) < 0) {
		ch->seq_next--;
		return rc;
	}
	ch->tx_queued += s->len;
	STAT_ADD(ch, sends, 1);
	tx_advance_cursor(ch);
	tx_retire(ch);
	chan_pump(ch);
	return (int64_t)seq;
}

int net_chan_send_wait(struct net_chan *ch, int64_t seq, int timeout_ms)
{
	uint64_t deadline = net_deadline(timeout_ms);
	int rc;

	if (!ch->open)
		return closed_error(ch);
	if (seq <= 0 || (uint64_t)seq >= ch->seq_next)
		return err_setf(ch->err, -EINVAL, "%s channel: no send %lld queued", name(ch),
				(long long)seq);
	chan_poll(ch);
	while ((uint64_t)seq > ch->seq_done) {
		if (ch->tx_err)
			return tx_error(ch);
		rc = chan_wait(ch, deadline);
		if (rc < 0)
			return wait_error(ch, rc, timeout_ms, "sends not drained");
	}
	return 0;
}

int net_chan_flush(struct net_chan *ch, int timeout_ms)
{
	if (!ch->open)
		return closed_error(ch);
	if (ch->seq_next == 1)
		return 0;
	return net_chan_send_wait(ch, (int64_t)(ch->seq_next - 1), timeout_ms);
}

/* ---- receiving -------------------------------------------------------------- */

static int rx_begin(struct net_chan *ch)
{
	if (!ch->open)
		return closed_error(ch);
	ch->rx_started = true;
	chan_poll(ch);
	return 0;
}

/* What the consumer sees is the plaintext stream.  Without TLS that is the
 * received segments themselves; with TLS it is what GnuTLS decrypted out of
 * them (tls_fill): rx_have, rx_view and rx_take hide the difference. */

/* Bytes the consumer can take now, without waiting. */
static size_t rx_have(struct net_chan *ch)
{
	return ch->tls ? tls_fill(ch, 1) : ch->rx_avail;
}

/* Nothing buffered and nothing more will come: the reason is rx_fail's. */
static bool rx_dead(struct net_chan *ch)
{
	return ch->tls ? !ch->pt_len && ch->tls_err : !ch->rx_avail && ch->rx_err;
}

static int rx_fail(struct net_chan *ch)
{
	return ch->tls ? tls_error(ch) : rx_error(ch);
}

/* The oldest buffered bytes, contiguous; rx_have() > 0 first. */
static void rx_view(struct net_chan *ch, const uint8_t **p, size_t *n)
{
	if (ch->tls) {
		*p = ch->pt + ch->pt_off;
		*n = ch->pt_len;
		return;
	}
	struct net_seg *s = &ch->segs[ch->seg_head];

	*p = buf_of(ch, s->bid) + s->off;
	*n = s->len;
}

static void rx_take(struct net_chan *ch, size_t n)
{
	if (ch->tls) {
		ch->pt_off += n;
		ch->pt_len -= n;
		return;
	}
	rx_consume(ch, n);
}

int net_chan_read(struct net_chan *ch, void *dst, size_t len, int timeout_ms)
{
	uint64_t deadline = net_deadline(timeout_ms);
	size_t got = 0;
	int rc;

	rc = rx_begin(ch);
	if (rc < 0)
		return rc;
	/* Not blocking means all or nothing: never leave half a record read. */
	if (timeout_ms == 0) {
		size_t have = ch->tls ? tls_fill(ch, len) : ch->rx_avail;

		if (have < len) {
			if (rx_dead(ch))
				return rx_fail(ch);
			return err_setf(ch->err, -ETIMEDOUT, "%s channel: %zu of %zu bytes received so far (non-blocking read)",
					name(ch), have, len);
		}
	}
	while (got < len) {
		/* TLS, nothing decrypted ahead and a whole record wanted:
		 * decrypt straight into dst, no copy through pt. */
		if (ch->tls && !ch->pt_len && len - got >= NET_TLS_RECORD && !ch->tls_err) {
			ssize_t n = tls_decrypt(ch, (char *)dst + got, len - got);

			if (n > 0) {
				got += (size_t)n;
				deadline = net_deadline(timeout_ms);
				continue;
			}
		}
		if (rx_have(ch)) {
			const uint8_t *p;
			size_t l;

			rx_view(ch, &p, &l);
			if (l > len - got)
				l = len - got;
			memcpy((char *)dst + got, p, l);
			rx_take(ch, l);
			got += l;
			deadline = net_deadline(timeout_ms);
			continue;
		}
		if (rx_dead(ch))
			return rx_fail(ch);
		rc = chan_wait(ch, deadline);
		if (rc < 0 && got) {
			ch->rx_err = rc;
			ch->rx_desync = true;
			if (ch->tls)
				ch->tls_err = rc;
			return err_setf(ch->err, rc, "%s channel: %s after %zu of %zu bytes; the stream is out of sync (close the channel)",
					name(ch), rc == -EINTR ? "woken" : "stalled", got, len);
		}
		if (rc < 0)
			return wait_error(ch, rc, timeout_ms, "nothing received");
	}
	chan_pump(ch);  /* consumed buffers may let the recv re-arm */
	return 0;
}

int net_chan_peek(struct net_chan *ch, size_t want, int timeout_ms, const void **ptr, size_t *avail)
{
	uint64_t deadline = net_deadline(timeout_ms);
	const uint8_t *p;
	size_t n;
	int rc;

	*ptr = NULL;
	*avail = 0;
	rc = rx_begin(ch);
	if (rc < 0)
		return rc;
	while (!rx_have(ch)) {
		if (rx_dead(ch))
			return rx_fail(ch);
		rc = chan_wait(ch, deadline);
		if (rc < 0)
			return wait_error(ch, rc, timeout_ms, "nothing received");
	}
	rx_view(ch, &p, &n);
	*ptr = p;
	*avail = want < n ? want : n;
	return 0;
}

int net_chan_consume(struct net_chan *ch, size_t n)
{
	size_t have;

	if (!ch->open)
		return closed_error(ch);
	have = ch->tls ? tls_fill(ch, n) : ch->rx_avail;
	if (n > have)
		return err_setf(ch->err, -EINVAL, "%s channel: consuming %zu bytes, only %zu received",
				name(ch), n, have);
	if (ch->tls)
		rx_take(ch, n);
	else
		rx_consume(ch, n);
	chan_pump(ch);
	return 0;
}

int net_chan_readable(struct net_chan *ch)
{
	int rc = rx_begin(ch);

	if (rc < 0)
		return rc;
	return rx_have(ch) || rx_dead(ch);
}

/* Waiting on several rings at once: an io_uring fd is readable when its
 * completion queue is not empty, so poll() on the ring fds. */
#define WAIT_ANY_MAX 8

int net_chan_wait_any(struct net_chan *const *chs, int n, int timeout_ms)
{
	return net_chan_wait_any_fd(chs, n, -1, timeout_ms);
}

int net_chan_wait_any_fd(struct net_chan *const *chs, int n, int fd, int timeout_ms)
{
	struct pollfd pfd[WAIT_ANY_MAX + 1];
	uint64_t deadline = net_deadline(timeout_ms);
	int i, rc;

	if (n <= 0 || n > WAIT_ANY_MAX)
		return n > 0 ? err_setf(chs[0]->err, -EINVAL, "net_chan_wait_any: %d channels, at most %d",
					n, WAIT_ANY_MAX) : -EINVAL;
	for (;;) {
		uint64_t until = deadline;

		for (i = 0; i < n; i++) {
			rc = rx_begin(chs[i]);
			if (rc < 0)
				return rc;
			wake_arm(chs[i]);
			chan_pump(chs[i]);
		}
		for (i = 0; i < n; i++) {
			if (chs[i]->woken) {
				chs[i]->woken = false;
				return wait_error(chs[i], -EINTR, timeout_ms, "");
			}
		}
		for (i = 0; i < n; i++)
			if (rx_have(chs[i]) || rx_dead(chs[i]))
				return i;
		for (i = 0; i < n; i++) {
			if (chs[i]->throttled_until && chs[i]->throttled_until < until)
				until = chs[i]->throttled_until;
			pfd[i] = (struct pollfd){ .fd = chs[i]->ring.ring_fd, .events = POLLIN };
		}
		pfd[n] = (struct pollfd){ .fd = fd, .events = POLLIN }; /* fd < 0: ignored */
		if (net_ms_left(deadline) == 0)
			return err_setf(chs[0]->err, -ETIMEDOUT, "no data on %d channel(s) within %d ms (is %s stuck?)",
					n, timeout_ms, chs[0]->peer);
		rc = sys_poll(pfd, (nfds_t)n + 1, net_ms_left(until));
		if (rc < 0 && rc != -EINTR)
			return err_setf(chs[0]->err, rc, "waiting on %d channels: %s", n, strerror(-rc));
		if (fd >= 0 && pfd[n].revents)
			return n;
	}
}

/* ---- introspection ------------------------------------------------------------ */

void net_chan_stats(const struct net_chan *ch, struct net_chan_stats *out)
{
#define LOAD(f) out->f = atomic_load_explicit(&ch->st.f, memory_order_relaxed)
	LOAD(bytes_sent);
	LOAD(bytes_recv);
	LOAD(sends);
	LOAD(submits);
	LOAD(short_sends);
	LOAD(zc_submits);
	LOAD(recv_cqes);
	LOAD(throttle_ns);
#undef LOAD
}

unsigned net_chan_features(const struct net_chan *ch)
{
	return ch->features;
}

void net_chan_describe(const struct net_chan *ch, char *buf, size_t len)
{
	unsigned f = ch->features;

	snprintf(buf, len, "send=%s%s recv=%s%s", f & NET_F_SEND_ZC ? "sendmsg_zc" : "sendmsg",
		 f & NET_F_SEND_WAITALL ? "+waitall" : "",
		 f & NET_F_RECV_MULTISHOT ? "multishot+" : "",
		 f & NET_F_BUF_RING ? "buf_ring" : "own_buffers");
}

int net_chan_start_tls(struct net_chan *ch, gnutls_session_t s)
{
	if (!ch->open) {
		gnutls_deinit(s);
		return closed_error(ch);
	}
	ch->stage = malloc(NET_TLS_RECORD);
	ch->pt_cap = NET_TLS_RECORD;
	ch->pt = malloc(ch->pt_cap);
	if (!ch->stage || !ch->pt) {
		gnutls_deinit(s);
		return err_setf(ch->err, -ENOMEM, "%s channel: out of memory for TLS buffers", name(ch));
	}
	net_tls_describe(s, ch->fd, &ch->sec);
	/* From here GnuTLS reads and writes the channel's buffers, never the
	 * socket.  Records it already read past the handshake stay in its
	 * buffer and come out first. */
	gnutls_transport_set_ptr(s, ch);
	gnutls_transport_set_push_function(s, tls_push);
	gnutls_transport_set_pull_function(s, tls_pull);
	ch->tls = s;
	return 0;
}

void net_chan_security(const struct net_chan *ch, struct net_tls_info *out)
{
	if (ch->tls) {
		*out = ch->sec;
		return;
	}
	memset(out, 0, sizeof(*out));
}
