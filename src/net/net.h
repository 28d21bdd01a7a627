/* io_uring channels: the two byte streams between source and destination.
 *
 * A migration uses two connections (docs/architecture.md, "The channels"):
 *   bulk    pre-copy passes and the post-copy pusher: big batches;
 *   urgent  pull requests and their replies: small and first in line, so a
 *           fault never waits behind megabytes of pushed pages.
 * This layer moves bytes and knows nothing of records (src/proto does).
 *
 * Every connection starts with a 32-byte channel preamble, sent by the
 * connecting side and read by the listener before anything else:
 *
 *   off  size  field
 *     0     8  magic "HMIGCHAN"
 *     8     8  session id, le64   (pairs bulk with urgent of one migration)
 *    16     4  channel kind, le32 (0 bulk, 1 urgent)
 *    20     4  preamble version, le32 (2)
 *    24     4  security, le32     (0 plaintext, 1 TLS 1.3 follows)
 *    28     4  reserved, 0
 *
 * With TLS the handshake follows, then the connector sends the same 32 bytes
 * again inside the session, so that kind and session id are authenticated;
 * the listener pairs a connection only once all of that has passed
 * (docs/protocol.md).
 *
 * Conventions: every int-returning function returns 0 (or a count / sequence
 * number) on success and -errno on failure, with one line naming the problem
 * and its remedy written into the err buffer of the object it acted on
 * (net_listener.err, net_pair.err, net_chan.err).  Timeouts are in
 * milliseconds: < 0 waits forever, 0 does not block.
 *
 * Threading: a net_chan (its socket and its own io_uring) is used by ONE
 * thread at a time.  Exceptions: net_chan_wake(), net_chan_request_rate() and
 * net_chan_stats() may be called from any thread while the channel is open.  Handing a channel to
 * another thread is allowed once its sends are flushed: io_uring runs a
 * request's completion work in the thread that submitted it, and cancels the
 * request when that thread exits.  The receive side is therefore armed lazily
 * by the first thread that receives; if that thread exits, the next receiving
 * thread re-arms it (the -ECANCELED completion says so), but a thread must
 * not exit with sends in flight (their partial progress is lost with them).
 */
#ifndef HMIG_NET_NET_H
#define HMIG_NET_NET_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <liburing.h>

#include "common/err.h"
#include "net/tls.h"

#define NET_PREAMBLE_LEN 32
#define NET_PREAMBLE_MAGIC "HMIGCHAN"
#define NET_PREAMBLE_VERSION 2

/* The preamble's security field: what follows it on the connection. */
enum net_security { NET_SEC_PLAIN = 0, NET_SEC_TLS13 = 1 };

/* Longest text form: "unix:" + a 107-byte socket path + NUL fits. */
#define NET_ADDR_TEXT 128

/* At most this many iovecs per sendmsg(): the kernel's UIO_MAXIOV. */
#define NET_IOV_MAX 1024

/* At most this many iovecs per net_chan_sendv().  A send with more than one
 * sendmsg() takes goes out in several, in order: a PAGES record is a prefix
 * and up to 1024 page iovecs, one more than UIO_MAXIOV when no two pages
 * are adjacent. */
#define NET_SEND_IOV_MAX (2 * NET_IOV_MAX)

/* Connections the listener holds while waiting for their partner (or their
 * preamble).  A migration needs two; 16 lets a few retrying or interleaved
 * senders pair up while a port scanner cannot make it hold many fds. */
#define NET_PENDING_MAX 16

enum net_kind { NET_BULK = 0, NET_URGENT = 1 };

/* Kernel features a channel can use.  net_opts.disable turns one off even
 * when the kernel has it (experiments, and tests of the fallbacks);
 * net_chan_features() says which are in use. */
enum {
	NET_F_SEND_ZC = 1u << 0,        /* IORING_OP_SENDMSG_ZC for big sends (6.1) */
	NET_F_BUF_RING = 1u << 1,       /* receive into a provided buffer ring (5.19) */
	NET_F_RECV_MULTISHOT = 1u << 2, /* one recv request, many completions (6.0) */
	NET_F_SEND_WAITALL = 1u << 3,   /* MSG_WAITALL: the kernel resubmits short sends (5.19) */
};

/* A parsed address: HOST:PORT, [V6]:PORT, tcp:HOST:PORT, unix:/path,
 * unix:@abstract.  An empty HOST (":PORT") means every IPv4 interface. */
struct net_addr {
	struct sockaddr_storage ss;
	socklen_t len;
	char text[NET_ADDR_TEXT];   /* canonical, numeric: "[::1]:4444" */
};

/* Knobs shared by both channels of a pair; a zeroed struct (or NULL) means
 * the defaults.  Copied by the functions that take it, except `peer`, which
 * must outlive the channels (a string literal, normally). */
struct net_opts {
	unsigned max_inflight;  /* sends queued per channel; 0 = 8 (chan.c says why) */
	unsigned nbufs;         /* receive buffers per channel, rounded up to a power
	                         * of two; 0 = per-kind default */
	unsigned buf_size;      /* bytes per receive buffer; 0 = per-kind default */
	unsigned disable;       /* NET_F_* bits not to use */
	int sndbuf, rcvbuf;     /* force SO_SNDBUF / SO_RCVBUF; 0 = policy (sock.c) */
	const char *peer;       /* the other end in messages ("the destination");
	                         * NULL = by role: connector says destination,
	                         * listener says source */
	const struct net_tls *tls; /* credentials: every connection runs TLS 1.3;
	                         * NULL = plaintext.  Must outlive the channels. */
	/* Listener: called once per connection it closes without pairing it
	 * (who, why), from the accepting thread; NULL = only counted. */
	void (*on_reject)(void *ctx, const char *from, const char *why);
	void *reject_ctx;
};

/* Per-channel counters.  Single writer (the owning thread), relaxed atomics:
 * any thread may read them; each field is exact, but two fields of one
 * snapshot may come from slightly different instants. */
struct net_chan_stats {
	uint64_t bytes_sent;    /* confirmed by the kernel */
	uint64_t bytes_recv;
	uint64_t sends;         /* net_chan_sendv() calls */
	uint64_t submits;       /* sendmsg requests (several sends coalesce into one) */
	uint64_t short_sends;   /* requests that sent less than asked, resubmitted */
	uint64_t zc_submits;    /* of submits, zero-copy */
	uint64_t recv_cqes;     /* receive completions with data */
	uint64_t throttle_ns;   /* time sends waited for the bandwidth cap */
};

struct net_stat_cells {
	_Atomic uint64_t bytes_sent, bytes_recv, sends, submits, short_sends,
		zc_submits, recv_cqes, throttle_ns;
};

struct net_send;    /* chan.c */
struct net_seg;     /* chan.c */

struct net_chan {
	bool open;              /* false in a zeroed struct: close is then a no-op */
	int fd;
	enum net_kind kind;
	const char *peer;
	unsigned features;      /* NET_F_* in use */
	struct io_uring ring;
	unsigned ops;           /* requests whose last completion is still due */

	/* send side: a circular queue of max_inflight sends, seq % cap */
	struct net_send *sends;
	struct iovec *iov_pool; /* cap * NET_SEND_IOV_MAX, copies of callers' lists */
	struct iovec *tx_iov;   /* the one sendmsg in flight */
	struct msghdr tx_msg;
	unsigned cap;
	uint64_t seq_next;      /* next sequence number to hand out */
	uint64_t seq_done;      /* every send <= this completed */
	uint64_t seq_cursor;    /* first send with bytes not yet submitted */
	uint64_t tx_queued;     /* bytes queued, not yet confirmed */
	bool tx_busy;           /* a sendmsg is in flight (chan.c: why only one) */
	bool tx_zc;             /* ... and it is zero-copy */
	size_t tx_len;          /* ... of this many bytes */
	int tx_err;             /* sticky: once a send failed, all do */
	int send_timeout_ms;    /* net_chan_sendv waits this long for room; < 0 forever */

	/* bandwidth cap (token bucket, bytes) */
	uint64_t rate;          /* bytes/s, 0 = unlimited */
	_Atomic uint64_t rate_next; /* net_chan_request_rate: bytes/s + 1; 0 none */
	double tokens, burst;
	uint64_t tokens_ns;     /* when tokens was last refilled */
	uint64_t throttled_until; /* 0, or when enough tokens will be there */
	uint64_t throttle_since;

	/* receive side */
	unsigned char *bufs;    /* nbufs * buf_size */
	size_t bufs_len;
	struct io_uring_buf_ring *br;
	size_t br_len;
	unsigned nbufs, buf_size;
	struct net_seg *segs;   /* received data in order, a FIFO of nbufs */
	unsigned seg_head, seg_count;
	uint16_t *free_bids;    /* without a buffer ring: buffers we hand out */
	unsigned nfree;
	size_t rx_avail;        /* bytes in segs */
	bool rx_started;        /* a thread has received: keep a recv armed */
	bool rx_armed;          /* a recv request is in the kernel */
	bool rx_ok;             /* a recv has completed with data (probe result) */
	bool rx_eof;            /* rx_err came from an orderly close */
	bool rx_desync;         /* rx_err came from a read cut short */
	int rx_err;             /* sticky, reported once rx_avail is drained */

	/* wake-up from another thread */
	int wake_fd;            /* eventfd */
	bool wake_armed, wake_oneshot, woken;
	bool closing;

	/* TLS (chan.c): the session, the plaintext decrypted ahead (for peek
	 * and readable), the staging of small pieces into whole records */
	gnutls_session_t tls;   /* NULL: plaintext */
	struct net_tls_info sec;
	struct net_send *sealing; /* the send being encrypted (push callback) */
	uint8_t *pt, *stage;
	size_t pt_off, pt_len, pt_cap;
	int tls_err;            /* sticky: the decrypted stream cannot go on */
	int tls_gnutls_err;
	bool tls_eof;

	struct net_stat_cells st;
	char err[ERR_LEN];
};

struct net_pair {
	struct net_chan bulk, urgent;
	uint64_t session_id;
	char err[ERR_LEN];
};

enum net_pending_state {
	PEND_PREAMBLE,          /* reading the plaintext preamble */
	PEND_HANDSHAKE,         /* TLS handshake under way */
	PEND_CONFIRM,           /* reading the preamble again, inside TLS */
	PEND_READY,             /* authenticated (or plaintext): may pair */
};

struct net_pending {
	int fd;
	enum net_pending_state state;
	short events;           /* what the handshake waits for */
	unsigned got;           /* preamble bytes read (PEND_PREAMBLE, PEND_CONFIRM) */
	bool ready;             /* PEND_READY */
	gnutls_session_t tls;
	uint8_t inner[NET_PREAMBLE_LEN];
	uint64_t session_id;
	enum net_kind kind;
	uint64_t since_ns;
	uint8_t pre[NET_PREAMBLE_LEN];
	char from[NET_ADDR_TEXT];
};

struct net_listener {
	bool open;
	int fd;
	struct net_addr addr;   /* what we are bound to (the real port when 0 was asked) */
	struct net_opts opts;
	struct net_pending pend[NET_PENDING_MAX];
	unsigned npend;
	unsigned rejected;      /* connections closed unpaired: bad preamble,
	                         * failed authentication, too slow */
	_Atomic bool stop;      /* net_listener_stop: the next wake returns -ECANCELED */
	char err[ERR_LEN];      /* the last rejection, or the failure of net_listen */
};

/* ---- addresses ---------------------------------------------------------- */

/* Parses s into *a (host names are resolved).  Returns 0 or -EINVAL (malformed;
 * err says which form was expected), -EADDRNOTAVAIL (name does not resolve). */
int net_addr_parse(struct net_addr *a, const char *s, char *err);

/* Fills *a from a socket address (getsockname/accept), with its text. */
void net_addr_set(struct net_addr *a, const struct sockaddr_storage *ss, socklen_t len);

/* ---- listener and connector --------------------------------------------- */

/* Binds and listens on addr (SO_REUSEADDR; a stale unix socket file is
 * replaced).  Port 0 picks a free port: l->addr.text then names it. */
int net_listen(struct net_listener *l, const char *addr, const struct net_opts *opts);

/* Accepts connections until a bulk and an urgent one carrying the same
 * session id have sent valid preambles; opens *pair from them.  Bad
 * preambles are closed and counted (l->err keeps the last reason).  Unpaired
 * connections stay in l for the next call.  -ETIMEDOUT when none paired in
 * time; the message goes to pair->err. */
int net_accept_pair(struct net_listener *l, int timeout_ms, struct net_pair *pair);

/* Makes net_accept_pair return -ECANCELED at its next wake-up: a signal
 * (which interrupts its poll) or within one preamble timeout.  Async-signal
 * safe. */
void net_listener_stop(struct net_listener *l);

/* Closes the listener and every connection it still holds; removes the unix
 * socket file.  Safe on a zeroed struct and when called twice. */
void net_listener_close(struct net_listener *l);

/* Connects bulk then urgent to addr, retrying refused connections until the
 * timeout (the listener may start a moment later), sends the preambles and
 * opens *pair.  Errors go to pair->err. */
int net_connect_pair(const char *addr, uint64_t session_id, int timeout_ms,
		     const struct net_opts *opts, struct net_pair *pair);

/* Closes both channels (net_chan_close).  Safe on a zeroed struct, twice. */
void net_pair_close(struct net_pair *pair);

/* ---- channels ----------------------------------------------------------- */

/* Makes a channel of a connected stream socket; takes ownership of fd (closed
 * on failure too).  Probes the kernel's io_uring features.  -ENOSYS/-EPERM
 * when io_uring is unavailable. */
int net_chan_open(struct net_chan *ch, int fd, enum net_kind kind, const struct net_opts *opts);

/* Cancels what is in flight, closes the socket, frees everything.  Safe on a
 * zeroed struct and when called twice; must not race with net_chan_wake. */
void net_chan_close(struct net_chan *ch);

/* Queues a send of iov[0..iovcnt) (at most NET_SEND_IOV_MAX).  The iovec array is
 * copied; the memory it points at is read by the kernel until the send
 * completes (net_chan_send_wait), with zero-copy sends as late as a TCP
 * retransmission: what goes out is its content at some moment before the
 * completion, so a page written meanwhile must count as dirty (dirty logging
 * armed before the send does that).  Blocks while max_inflight sends are
 * queued.  Returns the send's sequence number (> 0, increasing by 1) or
 * -errno: -ECONNRESET/-EPIPE when the peer went away, -EINTR after a wake. */
int64_t net_chan_sendv(struct net_chan *ch, const struct iovec *iov, int iovcnt);

/* Waits until send seq and every earlier one completed (the kernel no longer
 * reads their memory).  0, -ETIMEDOUT, -EINTR, or the send's error. */
int net_chan_send_wait(struct net_chan *ch, int64_t seq, int timeout_ms);

/* net_chan_send_wait for everything queued so far. */
int net_chan_flush(struct net_chan *ch, int timeout_ms);

/* Fills exactly len bytes.  Returns 0; -ETIMEDOUT or -EINTR (woken) when
 * nothing of it arrived in time (nothing consumed); -ECONNRESET when the peer
 * closed or reset the connection.  Once part of len was consumed the timeout
 * restarts with each arrival, and a timeout or wake mid-way leaves the stream
 * out of sync: the channel then fails every later read.  With timeout 0 it
 * is all or nothing: -ETIMEDOUT unless len bytes are already buffered. */
int net_chan_read(struct net_chan *ch, void *dst, size_t len, int timeout_ms);

/* Zero-copy view: waits for at least one received byte, then points *ptr at
 * min(want, contiguous bytes) of the oldest data.  *avail may be less than
 * want although more is buffered (the rest is in the next buffer): read it
 * with net_chan_read.  The view stays valid until those bytes are consumed
 * (net_chan_consume, net_chan_read) or the channel is closed. */
int net_chan_peek(struct net_chan *ch, size_t want, int timeout_ms,
		  const void **ptr, size_t *avail);

/* Drops n received bytes (after a peek); -EINVAL if fewer are buffered. */
int net_chan_consume(struct net_chan *ch, size_t n);

/* After a non-blocking reap: 1 if a read would not block (bytes buffered, or
 * the connection ended), 0 if not, -errno if the channel is closed. */
int net_chan_readable(struct net_chan *ch);

/* Waits until one of chs[0..n) is readable; returns the lowest such index
 * (put the urgent channel first), -ETIMEDOUT, or -EINTR after a wake of any
 * of them.  All chs must belong to the calling thread.  Keeps their queued
 * sends moving meanwhile. */
int net_chan_wait_any(struct net_chan *const *chs, int n, int timeout_ms);

/* The same, also returning n when `fd` (another subsystem's, e.g. a
 * userfaultfd; < 0 for none) polls readable.  Channels with data come
 * first. */
int net_chan_wait_any_fd(struct net_chan *const *chs, int n, int fd, int timeout_ms);

/* Any thread: the owner's current or next blocking wait on ch (read, peek,
 * send backpressure, send_wait, wait_any) returns -EINTR.  Wakes do not
 * queue up: several close together end one wait. */
int net_chan_wake(struct net_chan *ch);

/* Caps the send bandwidth (bytes/s; 0 removes the cap). */
void net_chan_set_rate(struct net_chan *ch, uint64_t bytes_per_s);

/* Any thread: the same, taken by the owner before its next send request
 * (a throttled send waits out at most one quantum at the old cap first).
 * Must not race with net_chan_close. */
void net_chan_request_rate(struct net_chan *ch, uint64_t bytes_per_s);

/* How long net_chan_sendv may wait for a free send slot (the peer reads
 * nothing: the queue stays full) before it fails with -ETIMEDOUT; < 0 (the
 * default) waits forever. */
void net_chan_set_send_timeout(struct net_chan *ch, int timeout_ms);

/* Any thread: a snapshot of the counters. */
void net_chan_stats(const struct net_chan *ch, struct net_chan_stats *out);

/* NET_F_* in use, and the same as text: "send=sendmsg_zc recv=multishot+buf_ring". */
unsigned net_chan_features(const struct net_chan *ch);
void net_chan_describe(const struct net_chan *ch, char *buf, size_t len);

/* Hands the channel a finished TLS session (its own from then on, freed at
 * close): from here every byte sent is encrypted and every byte read was
 * authenticated.  Called by sock.c right after net_chan_open. */
int net_chan_start_tls(struct net_chan *ch, gnutls_session_t s);

/* What protects the channel: encrypted or not, cipher, peer identity, kTLS. */
void net_chan_security(const struct net_chan *ch, struct net_tls_info *out);

/* "bulk" or "urgent". */
const char *net_kind_name(enum net_kind kind);

#endif
