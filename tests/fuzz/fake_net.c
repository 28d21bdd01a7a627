/* A fake of src/net for the fuzz targets: the same functions, reading what
 * fake_net_feed() gave and throwing away what is sent.  Linked before
 * libhmig-internal.a, so the real chan.c, sock.c and tls.c never are. */
#include <errno.h>
#include <stdlib.h>
#include <stdio.h>
#include <stdatomic.h>
#include <string.h>

#include "common/endian.h"
#include "fake.h"
#include "net/net.h"
#include "proto/proto.h"

static const uint8_t *feed[2];
static size_t feed_len[2];
static int feed_patch;

void fake_net_feed(const uint8_t *bulk, size_t nb, const uint8_t *urgent, size_t nu,
		   int patch_session)
{
	feed[0] = bulk;
	feed_len[0] = nb;
	feed[1] = urgent;
	feed_len[1] = nu;
	feed_patch = patch_session;
}

void fake_split(const uint8_t *data, size_t size, const uint8_t **bulk, size_t *nb,
		const uint8_t **urgent, size_t *nu)
{
	const uint8_t *sep = memmem(data, size, "HMIGURGT", 8);

	*bulk = data;
	*nb = sep ? (size_t)(sep - data) : size;
	*urgent = sep ? sep + 8 : NULL;
	*nu = sep ? size - *nb - 8 : 0;
}

/* Each channel reads its own copy (the session patch writes into it). */
struct fake_stream {
	uint8_t *buf;
	size_t len, pos;
};

static struct fake_stream streams[2];

static void chan_init(struct net_chan *ch, enum net_kind kind, uint64_t session_id)
{
	struct fake_stream *st = &streams[kind];

	memset(ch, 0, sizeof(*ch));
	ch->open = true;
	ch->fd = -1;
	ch->kind = kind;
	ch->peer = "the peer";
	ch->cap = 8;
	free(st->buf);
	st->buf = malloc(feed_len[kind] ? feed_len[kind] : 1);
	if (feed_len[kind])
		memcpy(st->buf, feed[kind], feed_len[kind]);
	st->len = feed_len[kind];
	st->pos = 0;
	/* HELLO's session id is at body offset 24, after the 16-byte header. */
	if (kind == NET_BULK && feed_patch && st->len >= PROTO_HDR_LEN + 32)
		put_le64(st->buf + PROTO_HDR_LEN + 24, session_id);
}

int net_listen(struct net_listener *l, const char *addr, const struct net_opts *opts)
{
	memset(l, 0, sizeof(*l));
	l->open = true;
	snprintf(l->addr.text, sizeof(l->addr.text), "%s", addr);
	if (opts)
		l->opts = *opts;
	return 0;
}

int net_accept_pair(struct net_listener *l, int timeout_ms, struct net_pair *pair)
{
	(void)l;
	(void)timeout_ms;
	memset(pair, 0, sizeof(*pair));
	/* The session the destination learns from the preamble: whatever the
	 * input's HELLO says, so HELLO and "preamble" agree unless the input
	 * has no HELLO there. */
	pair->session_id = feed_len[0] >= PROTO_HDR_LEN + 32 ? get_le64(feed[0] + PROTO_HDR_LEN + 24) : 1;
	chan_init(&pair->bulk, NET_BULK, 0);
	chan_init(&pair->urgent, NET_URGENT, 0);
	return 0;
}

void net_listener_close(struct net_listener *l)
{
	l->open = false;
}

void net_listener_stop(struct net_listener *l)
{
	atomic_store(&l->stop, true);
}

int net_connect_pair(const char *addr, uint64_t session_id, int timeout_ms,
		     const struct net_opts *opts, struct net_pair *pair)
{
	(void)addr;
	(void)timeout_ms;
	(void)opts;
	memset(pair, 0, sizeof(*pair));
	pair->session_id = session_id;
	chan_init(&pair->bulk, NET_BULK, session_id);
	chan_init(&pair->urgent, NET_URGENT, session_id);
	return 0;
}

void net_chan_close(struct net_chan *ch)
{
	ch->open = false;
}

void net_pair_close(struct net_pair *pair)
{
	net_chan_close(&pair->bulk);
	net_chan_close(&pair->urgent);
}

int64_t net_chan_sendv(struct net_chan *ch, const struct iovec *iov, int iovcnt)
{
	(void)iov;
	(void)iovcnt;
	if (!ch->open)
		return err_setf(ch->err, -EBADF, "closed");
	return (int64_t)ch->seq_next++ + 1;
}

int net_chan_send_wait(struct net_chan *ch, int64_t seq, int timeout_ms)
{
	(void)seq;
	(void)timeout_ms;
	return ch->open ? 0 : -EBADF;
}

int net_chan_flush(struct net_chan *ch, int timeout_ms)
{
	return net_chan_send_wait(ch, 0, timeout_ms);
}

int net_chan_read(struct net_chan *ch, void *dst, size_t len, int timeout_ms)
{
	struct fake_stream *st = &streams[ch->kind];

	(void)timeout_ms;
	if (!ch->open)
		return err_setf(ch->err, -EBADF, "closed");
	if (st->len - st->pos < len)
		return err_setf(ch->err, -ECONNRESET, "%s channel: peer closed the connection",
				net_kind_name(ch->kind));
	memcpy(dst, st->buf + st->pos, len);
	st->pos += len;
	return 0;
}

int net_chan_readable(struct net_chan *ch)
{
	(void)ch;
	return 1; /* data, or the end: a read will not block */
}

int net_chan_wait_any(struct net_chan *const *chs, int n, int timeout_ms)
{
	(void)n;
	(void)timeout_ms;
	(void)chs;
	return 0;
}

int net_chan_wait_any_fd(struct net_chan *const *chs, int n, int fd, int timeout_ms)
{
	(void)fd;
	return net_chan_wait_any(chs, n, timeout_ms);
}

int net_chan_wake(struct net_chan *ch)
{
	(void)ch;
	return 0;
}

void net_chan_set_rate(struct net_chan *ch, uint64_t bytes_per_s)
{
	ch->rate = bytes_per_s;
}

void net_chan_request_rate(struct net_chan *ch, uint64_t bytes_per_s)
{
	ch->rate = bytes_per_s;
}

void net_chan_set_send_timeout(struct net_chan *ch, int timeout_ms)
{
	ch->send_timeout_ms = timeout_ms;
}

void net_chan_stats(const struct net_chan *ch, struct net_chan_stats *out)
{
	memset(out, 0, sizeof(*out));
	out->bytes_recv = streams[ch->kind].pos;
}

void net_chan_security(const struct net_chan *ch, struct net_tls_info *out)
{
	(void)ch;
	memset(out, 0, sizeof(*out));
}

const char *net_kind_name(enum net_kind kind)
{
	return kind == NET_URGENT ? "urgent" : "bulk";
}

int net_tls_new(struct net_tls **out, const struct net_tls_config *cfg, bool server, char *err)
{
	(void)cfg;
	(void)server;
	*out = NULL;
	return err_setf(err, -EINVAL, "no TLS in the fuzz targets");
}

void net_tls_free(struct net_tls *t)
{
	(void)t;
}
