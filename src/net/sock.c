/* Setting up a channel pair: listen, connect with retry, the channel preamble,
 * pairing bulk with urgent by session id.
 *
 * Plain blocking-style socket code with poll(): it runs once per migration,
 * before any io_uring exists.  The channels take over the sockets after.
 */
#include "net/net.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/un.h>

#include "common/endian.h"
#include "net/sys.h"

/* A migration opens two connections; the rest is room for retries and
 * stray connections while the listener is busy reading preambles. */
#define LISTEN_BACKLOG 16

/* Between connection attempts while the listener is not up yet: short enough
 * that a sender started just before its receiver connects within a tenth of
 * a second of it, long enough not to spin. */
#define CONNECT_RETRY_MS 100

/* A real sender writes its preamble right after connect.  A connection that
 * has said nothing for 5 s (a port scanner, a wrong client that waits for us
 * to talk first) is closed so it does not hold a pending slot; 5 s still
 * leaves a heavily loaded sender plenty of time. */
#define PREAMBLE_TIMEOUT_MS 5000

/* How soon net_accept_pair sees net_listener_stop from another thread (a
 * signal interrupts its poll at once). */
#define STOP_POLL_MS 250

/* From accept to authenticated: preamble, TLS handshake and the preamble
 * again inside TLS.  A handshake is two round trips and one signature or
 * key derivation each way, milliseconds; 10 s is for a loaded host, and
 * bounds how long a peer that stalls mid-handshake holds a pending slot. */
#define HANDSHAKE_TIMEOUT_MS 10000

/* Bulk socket buffers.  4 MiB covers the bandwidth-delay product of 10 Gb/s
 * at 3 ms round trip (a data-centre path); with less, one connection cannot
 * fill such a link.  It is applied only when net.core.wmem_max/rmem_max allow
 * it: a larger request is silently clamped to that limit (212992 bytes on a
 * stock kernel) AND switches off the kernel's autotuning, which would
 * otherwise grow the buffer up to tcp_wmem/tcp_rmem's maximum (4 / 6 MiB by
 * default) by itself.  Asking for 4 MiB on a stock host would get 0.4 MiB. */
#define BULK_SOCKBUF (4 << 20)

static void preamble_put(uint8_t *p, uint64_t session_id, enum net_kind kind, bool tls)
{
	memcpy(p, NET_PREAMBLE_MAGIC, 8);
	put_le64(p + 8, session_id);
	put_le32(p + 16, (uint32_t)kind);
	put_le32(p + 20, NET_PREAMBLE_VERSION);
	put_le32(p + 24, tls ? NET_SEC_TLS13 : NET_SEC_PLAIN);
	put_le32(p + 28, 0);
}

/* -1 when the limit cannot be read (no /proc in a sandbox). */
static long sysctl_long(const char *path)
{
	FILE *f = fopen(path, "re");
	long v = -1;

	if (!f)
		return -1;
	if (fscanf(f, "%ld", &v) != 1)
		v = -1;
	fclose(f);
	return v;
}

/* The urgent channel's packets go first where the path honours priorities
 * (pfifo_fast's and prio's bands, an htb class per priority): 6 is
 * TC_PRIO_INTERACTIVE, the highest an unprivileged socket may set.  On a
 * plain FIFO bottleneck it changes nothing. */
#define URGENT_PRIORITY 6

static int urgent_priority(int fd, char *err)
{
	int rc = sys_setsockopt_int(fd, SOL_SOCKET, SO_PRIORITY, URGENT_PRIORITY);

	return rc < 0 ? err_setf(err, rc, "cannot set SO_PRIORITY: %s", strerror(-rc)) : 0;
}

/* Socket options before connect()/listen(): buffer sizes must be set before
 * the handshake, which fixes the TCP window scale. */
static int sock_tune(int fd, int family, bool bulk, const struct net_opts *o, char *err)
{
	int snd = o->sndbuf, rcv = o->rcvbuf, rc;

	if (family != AF_UNIX) {
		/* We batch ourselves: Nagle would only hold back the tail of each
		 * batch and every small urgent reply until the previous one is
		 * acknowledged (up to a delayed-ACK timeout, 40 ms). */
		rc = sys_setsockopt_int(fd, IPPROTO_TCP, TCP_NODELAY, 1);
		if (rc < 0)
			return err_setf(err, rc, "cannot set TCP_NODELAY: %s", strerror(-rc));
		if (!bulk && (rc = urgent_priority(fd, err)))
			return rc;
	}
	if (bulk && !snd && sysctl_long("/proc/sys/net/core/wmem_max") >= BULK_SOCKBUF)
		snd = BULK_SOCKBUF;
	if (bulk && !rcv && sysctl_long("/proc/sys/net/core/rmem_max") >= BULK_SOCKBUF)
		rcv = BULK_SOCKBUF;
	if (snd > 0 && (rc = sys_setsockopt_int(fd, SOL_SOCKET, SO_SNDBUF, snd)) < 0)
		return err_setf(err, rc, "cannot set SO_SNDBUF to %d: %s", snd, strerror(-rc));
	if (rcv > 0 && (rc = sys_setsockopt_int(fd, SOL_SOCKET, SO_RCVBUF, rcv)) < 0)
		return err_setf(err, rc, "cannot set SO_RCVBUF to %d: %s", rcv, strerror(-rc));
	return 0;
}

/* ---- connector ----------------------------------------------------------- */

static int connect_wait(int fd, const struct net_addr *a, uint64_t deadline)
{
	struct pollfd p = { .fd = fd, .events = POLLOUT };
	int rc, soerr = 0;

	rc = sys_connect(fd, (const struct sockaddr *)&a->ss, a->len);
	if (rc != -EINPROGRESS)
		return rc;
	rc = sys_poll(&p, 1, net_ms_left(deadline));
	if (rc < 0)
		return rc;
	if (rc == 0)
		return -ETIMEDOUT;
	rc = sys_getsockopt_int(fd, SOL_SOCKET, SO_ERROR, &soerr);
	return rc < 0 ? rc : -soerr;
}

/* Errors worth another attempt: the listener is not there yet (refused, no
 * socket file), or is there but swamped (unix backlog full: EAGAIN). */
static bool connect_retryable(int rc)
{
	return rc == -ECONNREFUSED || rc == -ENOENT || rc == -EAGAIN || rc == -ECONNRESET ||
	       rc == -ECONNABORTED || rc == -EINTR;
}

static int connect_error(char *err, int rc, const struct net_addr *a, int timeout_ms)
{
	switch (-rc) {
	case ECONNREFUSED:
	case ENOENT:
		return err_setf(err, rc, "cannot connect to %s: %s (is 'hmig recv' listening there?)",
				a->text, rc == -ENOENT ? "no such socket" : "connection refused");
	case ETIMEDOUT:
		return err_setf(err, rc, "cannot connect to %s: no answer within %d ms (is the host up and the port open in its firewall?)",
				a->text, timeout_ms);
	case ENETUNREACH:
	case EHOSTUNREACH:
		return err_setf(err, rc, "cannot connect to %s: %s (check the address and this host's routes)",
				a->text, strerror(-rc));
	case EACCES:
	case EPERM:
		return err_setf(err, rc, "cannot connect to %s: permission denied (a firewall rule? for a unix socket, the file's permissions)",
				a->text);
	default:
		return err_setf(err, rc, "cannot connect to %s: %s", a->text, strerror(-rc));
	}
}

/* The connector's side of TLS on fd (non-blocking, preamble sent): the
 * handshake, then the preamble again inside the session.  0 with *out set. */
static int connect_tls(int fd, const struct net_addr *a, enum net_kind kind, const uint8_t *pre,
		       const struct net_opts *o, gnutls_session_t *out, char *err)
{
	uint64_t deadline = net_deadline(HANDSHAKE_TIMEOUT_MS);
	gnutls_session_t s;
	size_t sent = 0;
	char why[ERR_LEN];
	int rc;

	if ((rc = net_tls_session(o->tls, fd, &s, err)) < 0)
		return rc;
	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };

		rc = net_tls_handshake(s, &p.events, why);
		if (rc == 0)
			break;
		if (rc != -EAGAIN) {
			gnutls_deinit(s);
			return err_setf(err, rc, "%s channel to %s: %s", net_kind_name(kind), a->text, why);
		}
		rc = sys_poll(&p, 1, net_ms_left(deadline));
		if (rc == 0) {
			gnutls_deinit(s);
			return err_setf(err, -ETIMEDOUT, "%s channel to %s: no TLS handshake within %d ms (is 'hmig recv' there, and not swamped?)",
					net_kind_name(kind), a->text, HANDSHAKE_TIMEOUT_MS);
		}
	}
	while (sent < NET_PREAMBLE_LEN) {
		ssize_t n = gnutls_record_send(s, pre + sent, NET_PREAMBLE_LEN - sent);
		struct pollfd p = { .fd = fd, .events = POLLOUT };

		if (n > 0) {
			sent += (size_t)n;
			continue;
		}
		if ((n != GNUTLS_E_AGAIN && n != GNUTLS_E_INTERRUPTED) ||
		    sys_poll(&p, 1, net_ms_left(deadline)) <= 0) {
			gnutls_deinit(s);
			return err_setf(err, -EIO, "%s channel to %s: cannot send the preamble inside TLS: %s",
					net_kind_name(kind), a->text, gnutls_strerror((int)n));
		}
	}
	*out = s;
	return 0;
}

static int connect_one(const struct net_addr *a, enum net_kind kind, uint64_t session_id,
		       uint64_t deadline, int timeout_ms, const struct net_opts *o,
		       int *out, gnutls_session_t *tls, char *err)
{
	uint8_t pre[NET_PREAMBLE_LEN];
	int family = a->ss.ss_family, fd, rc;
	ssize_t n;

	*tls = NULL;
	for (;;) {
		fd = sys_socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0)
			return err_setf(err, fd, "cannot create a socket for %s: %s", a->text,
					strerror(-fd));
		rc = sock_tune(fd, family, kind == NET_BULK, o, err);
		if (rc < 0)
			goto fail;
		rc = connect_wait(fd, a, deadline);
		if (rc == 0)
			break;
		sys_close(fd);
		if (!connect_retryable(rc) || net_ms_left(deadline) == 0)
			return connect_error(err, rc, a, timeout_ms);
		int ms = net_ms_left(deadline);
		sys_poll(NULL, 0, ms < 0 || ms > CONNECT_RETRY_MS ? CONNECT_RETRY_MS : ms);
	}

	/* 32 bytes into a fresh connection's empty send buffer: one send, never
	 * short, never blocking. */
	preamble_put(pre, session_id, kind, o->tls != NULL);
	n = sys_send(fd, pre, sizeof(pre), MSG_NOSIGNAL);
	if (n != (ssize_t)sizeof(pre)) {
		rc = n < 0 ? (int)n : -EIO;
		err_setf(err, rc, "cannot send the %s channel preamble to %s: %s (did the listener exit?)",
			 net_kind_name(kind), a->text, strerror(-rc));
		goto fail;
	}
	if (o->tls && (rc = connect_tls(fd, a, kind, pre, o, tls, err)) < 0)
		goto fail;
	rc = sys_set_nonblock(fd, 0);
	if (rc < 0) {
		err_setf(err, rc, "cannot make the %s socket blocking: %s", net_kind_name(kind),
			 strerror(-rc));
		goto fail;
	}
	*out = fd;
	return 0;
fail:
	if (*tls) {
		gnutls_deinit(*tls);
		*tls = NULL;
	}
	sys_close(fd);
	return rc;
}

static void tls_drop(gnutls_session_t *s)
{
	if (*s)
		gnutls_deinit(*s);
	*s = NULL;
}

/* Both fds and both sessions (NULL: plaintext) are consumed, on success and
 * on failure. */
static int pair_open(struct net_pair *pair, int fd_bulk, int fd_urgent, gnutls_session_t tls_bulk,
		     gnutls_session_t tls_urgent, const struct net_opts *o)
{
	int rc;

	rc = net_chan_open(&pair->bulk, fd_bulk, NET_BULK, o);
	if (rc < 0) {
		sys_close(fd_urgent);
		tls_drop(&tls_bulk);
		tls_drop(&tls_urgent);
		return err_setf(pair->err, rc, "%s", pair->bulk.err);
	}
	rc = net_chan_open(&pair->urgent, fd_urgent, NET_URGENT, o);
	if (rc < 0) {
		err_setf(pair->err, rc, "%s", pair->urgent.err);
		net_chan_close(&pair->bulk);
		tls_drop(&tls_bulk);
		tls_drop(&tls_urgent);
		return rc;
	}
	if (tls_bulk && (rc = net_chan_start_tls(&pair->bulk, tls_bulk)) < 0) {
		err_setf(pair->err, rc, "%s", pair->bulk.err);
		tls_drop(&tls_urgent);
		net_pair_close(pair);
		return rc;
	}
	if (tls_urgent && (rc = net_chan_start_tls(&pair->urgent, tls_urgent)) < 0) {
		err_setf(pair->err, rc, "%s", pair->urgent.err);
		net_pair_close(pair);
		return rc;
	}
	return 0;
}

int net_connect_pair(const char *addr, uint64_t session_id, int timeout_ms,
		     const struct net_opts *opts, struct net_pair *pair)
{
	struct net_opts o = opts ? *opts : (struct net_opts){ 0 };
	uint64_t deadline = net_deadline(timeout_ms);
	struct net_addr a;
	gnutls_session_t tls_bulk = NULL, tls_urgent = NULL;
	int fd_bulk = -1, fd_urgent = -1, rc;

	memset(pair, 0, sizeof(*pair));
	pair->session_id = session_id;
	if (!o.peer)
		o.peer = "the destination";
	rc = net_addr_parse(&a, addr, pair->err);
	if (rc < 0)
		return rc;
	if ((a.ss.ss_family == AF_INET && ((struct sockaddr_in *)&a.ss)->sin_port == 0) ||
	    (a.ss.ss_family == AF_INET6 && ((struct sockaddr_in6 *)&a.ss)->sin6_port == 0))
		return err_setf(pair->err, -EINVAL, "cannot connect to %s: port 0 (give the port 'hmig recv' listens on)",
				a.text);
	rc = connect_one(&a, NET_BULK, session_id, deadline, timeout_ms, &o, &fd_bulk, &tls_bulk,
			 pair->err);
	if (rc < 0)
		return rc;
	rc = connect_one(&a, NET_URGENT, session_id, deadline, timeout_ms, &o, &fd_urgent,
			 &tls_urgent, pair->err);
	if (rc < 0) {
		sys_close(fd_bulk);
		tls_drop(&tls_bulk);
		return rc;
	}
	return pair_open(pair, fd_bulk, fd_urgent, tls_bulk, tls_urgent, &o);
}

void net_pair_close(struct net_pair *pair)
{
	net_chan_close(&pair->urgent);
	net_chan_close(&pair->bulk);
}

/* ---- listener ------------------------------------------------------------ */

static int bind_error(struct net_listener *l, int rc)
{
	bool un = l->addr.ss.ss_family == AF_UNIX;

	switch (-rc) {
	case EADDRINUSE:
		return err_setf(l->err, rc, "cannot listen on %s: address already in use (another 'hmig recv' running? pick another %s)",
				l->addr.text, un ? "path" : "port");
	case EACCES:
		return err_setf(l->err, rc, "cannot listen on %s: permission denied (%s)", l->addr.text,
				un ? "check the directory's permissions" : "ports below 1024 need root: pick a higher one");
	case EADDRNOTAVAIL:
		return err_setf(l->err, rc, "cannot listen on %s: address not available (is it an address of this host?)",
				l->addr.text);
	case ENOENT:
		return err_setf(l->err, rc, "cannot listen on %s: the directory does not exist", l->addr.text);
	default:
		return err_setf(l->err, rc, "cannot listen on %s: %s", l->addr.text, strerror(-rc));
	}
}

/* A unix socket file survives the process that bound it.  If nobody accepts
 * on it any more it is stale and may be replaced; if somebody does, the
 * address really is in use. */
static bool unix_stale(const struct net_addr *a)
{
	int fd = sys_socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int rc;

	if (fd < 0)
		return false;
	rc = sys_connect(fd, (const struct sockaddr *)&a->ss, a->len);
	sys_close(fd);
	return rc == -ECONNREFUSED;
}

static const char *unix_path(const struct net_addr *a)
{
	const struct sockaddr_un *sun = (const struct sockaddr_un *)&a->ss;

	return a->ss.ss_family == AF_UNIX && sun->sun_path[0] ? sun->sun_path : NULL;
}

int net_listen(struct net_listener *l, const char *addr, const struct net_opts *opts)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	int family, fd, rc;

	memset(l, 0, sizeof(*l));
	l->fd = -1;
	if (opts)
		l->opts = *opts;
	if (!l->opts.peer)
		l->opts.peer = "the source";
	rc = net_addr_parse(&l->addr, addr, l->err);
	if (rc < 0)
		return rc;
	family = l->addr.ss.ss_family;
	fd = sys_socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return err_setf(l->err, fd, "cannot create a socket for %s: %s%s", l->addr.text,
				strerror(-fd), fd == -EAFNOSUPPORT ? " (this host has no IPv6?)" : "");
	if (family != AF_UNIX) {
		/* Restarting 'hmig recv' right after a migration must not fail on
		 * the previous connections' TIME_WAIT. */
		rc = sys_setsockopt_int(fd, SOL_SOCKET, SO_REUSEADDR, 1);
		if (rc < 0) {
			err_setf(l->err, rc, "cannot set SO_REUSEADDR: %s", strerror(-rc));
			goto fail;
		}
	}
	/* Accepted sockets inherit the buffer sizes, which must be set before the
	 * handshake.  The kind is only known from the preamble, after it, so
	 * both kinds get bulk-sized buffers: they are limits, not allocations. */
	rc = sock_tune(fd, family, true, &l->opts, l->err);
	if (rc < 0)
		goto fail;
	rc = sys_bind(fd, (const struct sockaddr *)&l->addr.ss, l->addr.len);
	if (rc == -EADDRINUSE && unix_path(&l->addr) && unix_stale(&l->addr)) {
		unlink(unix_path(&l->addr));
		rc = sys_bind(fd, (const struct sockaddr *)&l->addr.ss, l->addr.len);
	}
	if (rc < 0) {
		bind_error(l, rc);
		goto fail;
	}
	rc = sys_listen(fd, LISTEN_BACKLOG);
	if (rc < 0) {
		err_setf(l->err, rc, "cannot listen on %s: %s", l->addr.text, strerror(-rc));
		goto fail;
	}
	if (family != AF_UNIX && getsockname(fd, (struct sockaddr *)&ss, &len) == 0)
		net_addr_set(&l->addr, &ss, len);
	l->fd = fd;
	l->open = true;
	return 0;
fail:
	sys_close(fd);
	return rc;
}

static void pending_drop(struct net_listener *l, unsigned i)
{
	sys_close(l->pend[i].fd);
	if (l->pend[i].tls)
		gnutls_deinit(l->pend[i].tls);
	l->pend[i] = l->pend[--l->npend];
}

/* Every connection closed unpaired goes through here: counted, its reason
 * kept, and told to the listener's owner (who may print it). */
static void pending_reject(struct net_listener *l, unsigned i, const char *why)
{
	l->rejected++;
	err_setf(l->err, -EPROTO, "rejected a connection from %s: %s", l->pend[i].from, why);
	if (l->opts.on_reject)
		l->opts.on_reject(l->opts.reject_ctx, l->pend[i].from, why);
	pending_drop(l, i);
}

static void pending_add(struct net_listener *l, int fd, const struct sockaddr_storage *ss,
			socklen_t len)
{
	struct net_pending *p;
	struct net_addr from;

	if (l->npend == NET_PENDING_MAX) {
		unsigned oldest = 0;

		for (unsigned i = 1; i < l->npend; i++)
			if (l->pend[i].since_ns < l->pend[oldest].since_ns)
				oldest = i;
		pending_reject(l, oldest, "too many connections without a partner (several senders at once?)");
	}
	net_addr_set(&from, ss, len);
	p = &l->pend[l->npend++];
	memset(p, 0, sizeof(*p));
	p->fd = fd;
	p->since_ns = clock_now_ns();
	snprintf(p->from, sizeof(p->from), "%s", from.text);
}

/* pend[i] is authenticated (or plaintext and allowed): it may pair. */
static void pending_ready(struct net_listener *l, unsigned i)
{
	struct net_pending *p = &l->pend[i];

	p->state = PEND_READY;
	p->ready = true;
	/* A sender that reconnects (its first attempt timed out on its side)
	 * sends the same session and kind again: the newer connection wins.
	 * Only an authenticated connection can replace another. */
	for (unsigned j = 0; j < l->npend; j++) {
		if (j != i && l->pend[j].ready && l->pend[j].session_id == p->session_id &&
		    l->pend[j].kind == p->kind) {
			pending_drop(l, j);
			return;
		}
	}
}

static void pending_step(struct net_listener *l, unsigned i);

/* The preamble of pend[i] is complete: go on to TLS, keep it as ready, or
 * reject it. */
static void pending_check(struct net_listener *l, unsigned i)
{
	struct net_pending *p = &l->pend[i];
	uint32_t kind = get_le32(p->pre + 16), version = get_le32(p->pre + 20);
	uint32_t security = get_le32(p->pre + 24);
	char why[ERR_LEN];
	int rc;

	if (memcmp(p->pre, NET_PREAMBLE_MAGIC, 8) != 0) {
		pending_reject(l, i, "not an hmig channel (bad preamble magic; is something else connecting to this port?)");
		return;
	}
	if (version != NET_PREAMBLE_VERSION) {
		snprintf(why, sizeof(why), "channel preamble version %u, this hmig speaks %u (run the same hmig version on both hosts)",
			 version, NET_PREAMBLE_VERSION);
		pending_reject(l, i, why);
		return;
	}
	if (kind != NET_BULK && kind != NET_URGENT) {
		snprintf(why, sizeof(why), "unknown channel kind %u (run the same hmig version on both hosts)",
			 kind);
		pending_reject(l, i, why);
		return;
	}
	if (get_le32(p->pre + 28) || security > NET_SEC_TLS13) {
		pending_reject(l, i, "bad preamble security or reserved field (run the same hmig version on both hosts)");
		return;
	}
	if (security != (l->opts.tls ? NET_SEC_TLS13 : NET_SEC_PLAIN)) {
		pending_reject(l, i, l->opts.tls ?
			       "plaintext, and this side requires TLS (the sender runs --insecure? give both sides the same credentials)" :
			       "wants TLS, and this side runs --insecure (run both sides with the same credentials, or both --insecure)");
		return;
	}
	p->session_id = get_le64(p->pre + 8);
	p->kind = (enum net_kind)kind;
	if (!l->opts.tls) {
		pending_ready(l, i);
		return;
	}
	rc = net_tls_session(l->opts.tls, p->fd, &p->tls, why);
	if (rc < 0) {
		pending_reject(l, i, why);
		return;
	}
	p->state = PEND_HANDSHAKE;
	pending_step(l, i);
}

/* Moves pend[i] on as far as its socket allows: the preamble, the TLS
 * handshake, the preamble again inside TLS. */
static void pending_step(struct net_listener *l, unsigned i)
{
	struct net_pending *p = &l->pend[i];
	char why[ERR_LEN];
	ssize_t n;
	int rc;

	switch (p->state) {
	case PEND_PREAMBLE:
		/* Exactly the preamble's remaining bytes: what follows belongs
		 * to TLS or to the channel and must stay in the socket. */
		n = sys_recv(p->fd, p->pre + p->got, NET_PREAMBLE_LEN - p->got, 0);
		if (n == -EAGAIN || n == -EINTR)
			return;
		if (n <= 0) {
			pending_reject(l, i, n == 0 ? "closed before sending its channel preamble"
						    : "error before its channel preamble");
			return;
		}
		p->got += (unsigned)n;
		if (p->got == NET_PREAMBLE_LEN)
			pending_check(l, i);
		return;
	case PEND_HANDSHAKE:
		rc = net_tls_handshake(p->tls, &p->events, why);
		if (rc == -EAGAIN)
			return;
		if (rc < 0) {
			pending_reject(l, i, why);
			return;
		}
		p->state = PEND_CONFIRM;
		p->got = 0;
		/* fall through: the confirmation may have come with the
		 * handshake's last flight, already in GnuTLS's buffer. */
	case PEND_CONFIRM:
		while (p->got < NET_PREAMBLE_LEN) {
			n = gnutls_record_recv(p->tls, p->inner + p->got, NET_PREAMBLE_LEN - p->got);
			if (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED) {
				p->events = POLLIN;
				return;
			}
			if (n <= 0) {
				snprintf(why, sizeof(why), "TLS session ended before its preamble: %s",
					 n ? gnutls_strerror((int)n) : "closed");
				pending_reject(l, i, why);
				return;
			}
			p->got += (unsigned)n;
		}
		if (memcmp(p->inner, p->pre, NET_PREAMBLE_LEN)) {
			pending_reject(l, i, "the preamble inside TLS differs from the one before it (altered in transit?)");
			return;
		}
		pending_ready(l, i);
		return;
	case PEND_READY:
		return;
	}
}

static void pending_read(struct net_listener *l, int fd)
{
	unsigned i;

	for (i = 0; i < l->npend && l->pend[i].fd != fd; i++)
		;
	if (i < l->npend && !l->pend[i].ready)
		pending_step(l, i);
}

static void pending_expire(struct net_listener *l, uint64_t now)
{
	for (unsigned i = 0; i < l->npend;) {
		struct net_pending *p = &l->pend[i];

		if (p->state == PEND_PREAMBLE && now - p->since_ns > PREAMBLE_TIMEOUT_MS * 1000000ull)
			pending_reject(l, i, "sent no channel preamble within 5 s (not an hmig sender?)");
		else if (!p->ready && now - p->since_ns > HANDSHAKE_TIMEOUT_MS * 1000000ull)
			pending_reject(l, i, "did not finish its TLS handshake within 10 s");
		else
			i++;
	}
}

static bool pending_match(struct net_listener *l, unsigned *ib, unsigned *iu)
{
	for (unsigned i = 0; i < l->npend; i++) {
		if (!l->pend[i].ready || l->pend[i].kind != NET_BULK)
			continue;
		for (unsigned j = 0; j < l->npend; j++) {
			if (l->pend[j].ready && l->pend[j].kind == NET_URGENT &&
			    l->pend[j].session_id == l->pend[i].session_id) {
				*ib = i;
				*iu = j;
				return true;
			}
		}
	}
	return false;
}

/* 0 once the backlog is drained, or -errno when accepting cannot go on (out
 * of fds: the listener would stay readable and the wait would spin). */
static int accept_all(struct net_listener *l, char *err)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int fd;

	for (;;) {
		len = sizeof(ss);
		fd = sys_accept(l->fd, &ss, &len);
		if (fd == -EAGAIN)
			return 0;
		if (fd == -EINTR || fd == -ECONNABORTED)
			continue;   /* that one connection is gone, not the listener */
		if (fd == -EMFILE || fd == -ENFILE)
			return err_setf(err, fd, "cannot accept on %s: too many open files (raise 'ulimit -n')",
					l->addr.text);
		if (fd < 0)
			return err_setf(err, fd, "cannot accept on %s: %s", l->addr.text, strerror(-fd));
		pending_add(l, fd, &ss, len);
	}
}

static int accept_take(struct net_listener *l, unsigned ib, unsigned iu, struct net_pair *pair)
{
	int fds[2] = { l->pend[ib].fd, l->pend[iu].fd };
	gnutls_session_t tls[2] = { l->pend[ib].tls, l->pend[iu].tls };
	bool tcp = l->addr.ss.ss_family != AF_UNIX;
	int rc;

	pair->session_id = l->pend[ib].session_id;
	/* Remove the higher index first: removal moves the last entry into the hole. */
	l->pend[ib].fd = l->pend[iu].fd = -1;
	l->pend[ib].tls = l->pend[iu].tls = NULL;
	pending_drop(l, ib > iu ? ib : iu);
	pending_drop(l, ib > iu ? iu : ib);
	for (int k = 0; k < 2; k++) {
		rc = sys_set_nonblock(fds[k], 0);
		if (rc == 0 && tcp)
			rc = sys_setsockopt_int(fds[k], IPPROTO_TCP, TCP_NODELAY, 1);
		if (rc == 0 && tcp && k == 1)
			rc = sys_setsockopt_int(fds[k], SOL_SOCKET, SO_PRIORITY, URGENT_PRIORITY);
		if (rc < 0) {
			sys_close(fds[0]);
			sys_close(fds[1]);
			tls_drop(&tls[0]);
			tls_drop(&tls[1]);
			return err_setf(pair->err, rc, "cannot set up an accepted socket: %s",
					strerror(-rc));
		}
	}
	return pair_open(pair, fds[0], fds[1], tls[0], tls[1], &l->opts);
}

int net_accept_pair(struct net_listener *l, int timeout_ms, struct net_pair *pair)
{
	struct pollfd pfd[1 + NET_PENDING_MAX];
	uint64_t deadline = net_deadline(timeout_ms);
	unsigned ib, iu;
	int rc;

	memset(pair, 0, sizeof(*pair));
	if (!l->open)
		return err_setf(pair->err, -EBADF, "accept on a closed listener");
	for (;;) {
		uint64_t now = clock_now_ns();
		int ms = net_ms_left(deadline);
		nfds_t n = 1;

		if (pending_match(l, &ib, &iu))
			return accept_take(l, ib, iu, pair);
		if (atomic_load(&l->stop))
			return err_setf(pair->err, -ECANCELED, "stopped waiting for a source on %s",
					l->addr.text);
		if (ms == 0) {
			if (l->rejected)
				return err_setf(pair->err, -ETIMEDOUT, "no hmig sender paired up on %s within %d ms; %u connection(s) rejected, last: %s",
						l->addr.text, timeout_ms, l->rejected, l->err);
			return err_setf(pair->err, -ETIMEDOUT, "no hmig sender connected to %s within %d ms (start 'hmig send' toward this address)",
					l->addr.text, timeout_ms);
		}
		pending_expire(l, now);
		pfd[0] = (struct pollfd){ .fd = l->fd, .events = POLLIN };
		for (unsigned i = 0; i < l->npend; i++)
			if (!l->pend[i].ready)
				pfd[n++] = (struct pollfd){ .fd = l->pend[i].fd,
							    .events = l->pend[i].state == PEND_HANDSHAKE ?
								      l->pend[i].events : POLLIN };
		/* Wake up in time to expire a silent connection (each has its
		 * own deadline: a quarter of a second is fine enough), and to see
		 * a stop asked from another thread within STOP_POLL_MS. */
		if (ms < 0 || ms > STOP_POLL_MS)
			ms = STOP_POLL_MS;
		rc = sys_poll(pfd, n, ms);
		if (rc < 0 && rc != -EINTR)
			return err_setf(pair->err, rc, "waiting for connections on %s: %s",
					l->addr.text, strerror(-rc));
		for (nfds_t k = 1; rc > 0 && k < n; k++)
			if (pfd[k].revents)
				pending_read(l, pfd[k].fd);
		if (rc > 0 && pfd[0].revents && (rc = accept_all(l, pair->err)) < 0)
			return rc;
	}
}

void net_listener_stop(struct net_listener *l)
{
	atomic_store(&l->stop, true);
}

void net_listener_close(struct net_listener *l)
{
	if (!l->open)
		return;
	l->open = false;
	while (l->npend)
		pending_drop(l, l->npend - 1);
	sys_close(l->fd);
	l->fd = -1;
	if (unix_path(&l->addr))
		unlink(unix_path(&l->addr));
}
