/* TLS 1.3 on the channels (src/net/tls.c, chan.c): real handshakes over
 * loopback sockets with credentials made by 'hmig keygen''s code, both ways
 * to authenticate, and every way a stranger is turned away. */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/endian.h"
#include "keygen.h"
#include "net/net.h"

struct creds {
	char dir[64];
	char psk[96], psk2[96];   /* two different keys */
	char x509[96], x509b[96]; /* two different CAs */
};

static void creds_make(struct creds *c)
{
	char err[256];

	snprintf(c->dir, sizeof(c->dir), "/tmp/hmig-tls-XXXXXX");
	cr_assert(mkdtemp(c->dir) != NULL);
	snprintf(c->psk, sizeof(c->psk), "%s/a.psk", c->dir);
	snprintf(c->psk2, sizeof(c->psk2), "%s/b.psk", c->dir);
	snprintf(c->x509, sizeof(c->x509), "%s/a", c->dir);
	snprintf(c->x509b, sizeof(c->x509b), "%s/b", c->dir);
	cr_assert(eq(int, keygen_psk(c->psk, "hmig-test", err), 0), "%s", err);
	cr_assert(eq(int, keygen_psk(c->psk2, "hmig-test", err), 0), "%s", err);
	cr_assert(eq(int, keygen_x509(c->x509, "test-a", err), 0), "%s", err);
	cr_assert(eq(int, keygen_x509(c->x509b, "test-b", err), 0), "%s", err);
}

static void creds_free(struct creds *c)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", c->dir);
	cr_expect(eq(int, system(cmd), 0));
}

static struct net_tls *tls_of(const char *psk, const char *dir, bool server)
{
	struct net_tls_config cfg = { .creds_dir = dir, .psk_file = psk };
	struct net_tls *t;
	char err[256];

	cr_assert(eq(int, net_tls_new(&t, &cfg, server, err), 0), "%s", err);
	return t;
}

struct rejects {
	int n;
	char from[64], why[256];
};

static void on_reject(void *ctx, const char *from, const char *why)
{
	struct rejects *r = ctx;

	r->n++;
	snprintf(r->from, sizeof(r->from), "%s", from);
	snprintf(r->why, sizeof(r->why), "%s", why);
}

struct conn {
	char addr[NET_ADDR_TEXT];
	struct net_opts opts;
	struct net_pair pair;
	uint64_t sid;
	int rc;
	pthread_t tid;
};

static void *conn_main(void *p)
{
	struct conn *c = p;

	c->rc = net_connect_pair(c->addr, c->sid, 5000, &c->opts, &c->pair);
	return NULL;
}

static void conn_start(struct conn *c, const char *addr, uint64_t sid, const struct net_tls *t)
{
	memset(c, 0, sizeof(*c));
	snprintf(c->addr, sizeof(c->addr), "%s", addr);
	c->sid = sid;
	c->opts.tls = t;
	cr_assert(eq(int, pthread_create(&c->tid, NULL, conn_main, c), 0));
}

/* Sends len bytes of a pattern each way at once and checks them. */
static void exchange(struct net_chan *a, struct net_chan *b, size_t len)
{
	uint8_t *out = malloc(len), *in = malloc(len);

	for (size_t i = 0; i < len; i++)
		out[i] = (uint8_t)(i * 7 + (i >> 11));
	struct iovec iov[3] = { { out, 5 }, { out + 5, len / 2 - 5 }, { out + len / 2, len - len / 2 } };
	cr_assert(gt(i64, net_chan_sendv(a, iov, 3), 0), "%s", a->err);
	cr_assert(eq(int, net_chan_read(b, in, len, 5000), 0), "%s", b->err);
	cr_assert(eq(int, memcmp(in, out, len), 0));
	cr_assert(eq(int, net_chan_flush(a, 5000), 0), "%s", a->err);
	free(out);
	free(in);
}

/* Pairs through a TLS listener; returns both sides. */
static void tls_pair(const struct net_tls *srv, const struct net_tls *cli, struct net_pair *src,
		     struct net_pair *dst)
{
	struct net_opts lo = { .tls = srv };
	struct net_listener l;
	struct conn c;

	cr_assert(eq(int, net_listen(&l, "127.0.0.1:0", &lo), 0), "%s", l.err);
	conn_start(&c, l.addr.text, 77, cli);
	int rc = net_accept_pair(&l, 5000, dst);
	pthread_join(c.tid, NULL);
	cr_assert(eq(int, c.rc, 0), "connect: %s", c.pair.err);
	cr_assert(eq(int, rc, 0), "accept: %s", dst->err);
	cr_assert(eq(u64, dst->session_id, 77));
	*src = c.pair;
	net_listener_close(&l);
}

static void check_secure(const struct net_chan *ch, const char *auth, const char *peer)
{
	struct net_tls_info i;

	net_chan_security(ch, &i);
	cr_assert(eq(int, i.encrypted, 1));
	cr_assert(eq(str, i.auth, (char *)auth));
	cr_assert(strstr(i.cipher, "TLS1.3 AES-128-GCM ECDHE-") != NULL, "%s", i.cipher);
	cr_assert(strstr(i.peer, peer) != NULL, "peer '%s', wanted '%s'", i.peer, peer);
	cr_assert(not(i.ktls));
}

Test(tls, psk_pair_carries_both_channels_both_ways, .timeout = 60)
{
	struct creds c;
	struct net_pair src, dst;

	creds_make(&c);
	struct net_tls *srv = tls_of(c.psk, NULL, true), *cli = tls_of(c.psk, NULL, false);
	tls_pair(srv, cli, &src, &dst);
	check_secure(&dst.bulk, "psk", "psk:hmig-test");
	check_secure(&src.urgent, "psk", "psk:hmig-test");
	exchange(&src.bulk, &dst.bulk, 9 << 20);    /* several MiB: many records */
	exchange(&dst.bulk, &src.bulk, 100000);
	exchange(&dst.urgent, &src.urgent, 24);     /* one small record */
	exchange(&src.urgent, &dst.urgent, 70000);
	/* The bytes on the wire are ciphertext: more than the plaintext. */
	struct net_chan_stats st;
	net_chan_stats(&src.bulk, &st);
	cr_assert(gt(u64, st.bytes_sent, (uint64_t)(9 << 20)));
	net_pair_close(&src);
	net_pair_close(&dst);
	net_tls_free(srv);
	net_tls_free(cli);
	creds_free(&c);
}

Test(tls, x509_pair_names_the_peer_certificate, .timeout = 60)
{
	struct creds c;
	struct net_pair src, dst;

	creds_make(&c);
	struct net_tls *srv = tls_of(NULL, c.x509, true), *cli = tls_of(NULL, c.x509, false);
	tls_pair(srv, cli, &src, &dst);
	check_secure(&dst.bulk, "x509", "CN=hmig test-a source");
	check_secure(&src.bulk, "x509", "CN=hmig test-a destination");
	exchange(&src.bulk, &dst.bulk, 1 << 20);
	exchange(&dst.urgent, &src.urgent, 4096);
	net_pair_close(&src);
	net_pair_close(&dst);
	net_tls_free(srv);
	net_tls_free(cli);
	creds_free(&c);
}

/* readable, peek and consume see the plaintext stream, records and all. */
Test(tls, readable_peek_consume_and_wait_any, .timeout = 60)
{
	struct creds c;
	struct net_pair src, dst;
	const void *p;
	size_t n;

	creds_make(&c);
	struct net_tls *srv = tls_of(c.psk, NULL, true), *cli = tls_of(c.psk, NULL, false);
	tls_pair(srv, cli, &src, &dst);
	cr_assert(eq(int, net_chan_readable(&dst.urgent), 0));
	struct iovec iov = { "abcdefgh", 8 };
	cr_assert(gt(i64, net_chan_sendv(&src.urgent, &iov, 1), 0));
	struct net_chan *chs[2] = { &dst.urgent, &dst.bulk };
	cr_assert(eq(int, net_chan_wait_any(chs, 2, 5000), 0));
	cr_assert(eq(int, net_chan_readable(&dst.urgent), 1));
	cr_assert(eq(int, net_chan_peek(&dst.urgent, 3, 1000, &p, &n), 0));
	cr_assert(eq(sz, n, 3));
	cr_assert(eq(int, memcmp(p, "abc", 3), 0));
	cr_assert(eq(int, net_chan_consume(&dst.urgent, 3), 0));
	char rest[5];
	cr_assert(eq(int, net_chan_read(&dst.urgent, rest, 5, 0), 0), "%s", dst.urgent.err);
	cr_assert(eq(int, memcmp(rest, "defgh", 5), 0));
	cr_assert(eq(int, net_chan_read(&dst.urgent, rest, 1, 0), -ETIMEDOUT));
	/* The peer's close is an orderly end, as without TLS. */
	net_pair_close(&src);
	cr_assert(eq(int, net_chan_read(&dst.bulk, rest, 1, 5000), -ECONNRESET), "%s", dst.bulk.err);
	cr_assert(strstr(dst.bulk.err, "closed the connection") != NULL, "%s", dst.bulk.err);
	net_pair_close(&dst);
	net_tls_free(srv);
	net_tls_free(cli);
	creds_free(&c);
}

/* A connection reset under TLS (the peer crashed, or the link timed out)
 * is the link's error, as without TLS: the engine then recovers after the
 * commit instead of failing on a "TLS error". */
Test(tls, a_reset_connection_is_the_links_error, .timeout = 60)
{
	static const struct linger rst = { .l_onoff = 1, .l_linger = 0 };
	struct creds c;
	struct net_pair src, dst;
	char buf[1];

	creds_make(&c);
	struct net_tls *srv = tls_of(c.psk, NULL, true), *cli = tls_of(c.psk, NULL, false);
	tls_pair(srv, cli, &src, &dst);
	/* close() with SO_LINGER 0 sends an RST and no FIN; the pair then
	 * closes an fd that is already gone, which it tolerates. */
	cr_assert(eq(int, setsockopt(src.bulk.fd, SOL_SOCKET, SO_LINGER, &rst, sizeof(rst)), 0));
	cr_assert(eq(int, close(src.bulk.fd), 0));
	cr_assert(eq(int, net_chan_read(&dst.bulk, buf, 1, 5000), -ECONNRESET), "%s", dst.bulk.err);
	cr_assert(strstr(dst.bulk.err, "reset") != NULL, "%s", dst.bulk.err);
	src.bulk.fd = -1;
	net_pair_close(&src);
	net_pair_close(&dst);
	net_tls_free(srv);
	net_tls_free(cli);
	creds_free(&c);
}

/* A stranger is turned away, the listener says who and why once per
 * connection, and the legitimate source still gets in afterwards. */
static void stranger(const struct net_tls *srv, const struct net_tls *bad, const struct net_tls *good,
		     const char *why)
{
	struct rejects rj = { 0 };
	struct net_opts lo = { .tls = srv, .on_reject = on_reject, .reject_ctx = &rj };
	struct net_listener l;
	struct net_pair dst, src;
	struct conn c;

	cr_assert(eq(int, net_listen(&l, "127.0.0.1:0", &lo), 0), "%s", l.err);
	conn_start(&c, l.addr.text, 13, bad);
	/* The listener rejects both of the stranger's connections, or the
	 * first while the stranger gives up: either way nothing pairs. */
	int rc = net_accept_pair(&l, 1500, &dst);
	pthread_join(c.tid, NULL);
	cr_assert(eq(int, rc, -ETIMEDOUT), "a stranger paired: %s", dst.err);
	cr_assert(lt(int, c.rc, 0), "the stranger's connect succeeded");
	cr_assert(ge(int, rj.n, 1));
	cr_assert(eq(u32, l.rejected, (unsigned)rj.n));
	cr_assert(strstr(rj.from, "127.0.0.1:") != NULL, "%s", rj.from);
	cr_assert(strstr(rj.why, why) != NULL, "reason '%s' lacks '%s'", rj.why, why);
	cr_log_info("stranger: connector said: %s", c.pair.err);

	conn_start(&c, l.addr.text, 14, good);
	cr_assert(eq(int, net_accept_pair(&l, 5000, &dst), 0), "%s", dst.err);
	pthread_join(c.tid, NULL);
	cr_assert(eq(int, c.rc, 0), "%s", c.pair.err);
	src = c.pair;
	exchange(&src.bulk, &dst.bulk, 65536);
	net_pair_close(&src);
	net_pair_close(&dst);
	net_listener_close(&l);
}

Test(tls, wrong_psk_is_rejected_and_the_right_one_gets_in, .timeout = 60)
{
	struct creds c;

	creds_make(&c);
	struct net_tls *srv = tls_of(c.psk, NULL, true), *bad = tls_of(c.psk2, NULL, false),
		       *good = tls_of(c.psk, NULL, false);
	stranger(srv, bad, good, "TLS");
	net_tls_free(srv);
	net_tls_free(bad);
	net_tls_free(good);
	creds_free(&c);
}

Test(tls, certificate_of_another_ca_is_rejected, .timeout = 60)
{
	struct creds c;

	creds_make(&c);
	struct net_tls *srv = tls_of(NULL, c.x509, true), *bad = tls_of(NULL, c.x509b, false),
		       *good = tls_of(NULL, c.x509, false);
	stranger(srv, bad, good, "TLS");
	net_tls_free(srv);
	net_tls_free(bad);
	net_tls_free(good);
	creds_free(&c);
}

Test(tls, plaintext_sender_is_rejected_by_a_tls_listener, .timeout = 60)
{
	struct creds c;

	creds_make(&c);
	struct net_tls *srv = tls_of(c.psk, NULL, true), *good = tls_of(c.psk, NULL, false);
	struct rejects rj = { 0 };
	struct net_opts lo = { .tls = srv, .on_reject = on_reject, .reject_ctx = &rj };
	struct net_listener l;
	struct net_pair dst;
	struct conn cn;

	cr_assert(eq(int, net_listen(&l, "127.0.0.1:0", &lo), 0), "%s", l.err);
	conn_start(&cn, l.addr.text, 13, NULL);
	cr_assert(eq(int, net_accept_pair(&l, 1000, &dst), -ETIMEDOUT));
	pthread_join(cn.tid, NULL);
	net_pair_close(&cn.pair);
	cr_assert(eq(int, rj.n, 2));
	cr_assert(strstr(rj.why, "requires TLS") != NULL, "%s", rj.why);
	net_listener_close(&l);
	net_tls_free(srv);
	net_tls_free(good);
	creds_free(&c);
}

Test(tls, tls_sender_is_rejected_by_an_insecure_listener, .timeout = 60)
{
	struct creds c;

	creds_make(&c);
	struct net_tls *cli = tls_of(c.psk, NULL, false);
	struct rejects rj = { 0 };
	struct net_opts lo = { .on_reject = on_reject, .reject_ctx = &rj };
	struct net_listener l;
	struct net_pair dst;
	struct conn cn;

	cr_assert(eq(int, net_listen(&l, "127.0.0.1:0", &lo), 0), "%s", l.err);
	conn_start(&cn, l.addr.text, 13, cli);
	cr_assert(eq(int, net_accept_pair(&l, 1000, &dst), -ETIMEDOUT));
	pthread_join(cn.tid, NULL);
	cr_assert(lt(int, cn.rc, 0));
	cr_assert(ge(int, rj.n, 1));
	cr_assert(strstr(rj.why, "runs --insecure") != NULL, "%s", rj.why);
	net_listener_close(&l);
	net_tls_free(cli);
	creds_free(&c);
}

/* A connection that sends its preamble and then never speaks TLS is
 * dropped once its handshake time is up; it never pairs. */
Test(tls, stalled_handshake_is_dropped, .timeout = 60)
{
	struct creds c;

	creds_make(&c);
	struct net_tls *srv = tls_of(c.psk, NULL, true);
	struct rejects rj = { 0 };
	struct net_opts lo = { .tls = srv, .on_reject = on_reject, .reject_ctx = &rj };
	struct net_listener l;
	struct net_pair dst;
	uint8_t pre[NET_PREAMBLE_LEN] = { 0 };

	cr_assert(eq(int, net_listen(&l, "127.0.0.1:0", &lo), 0), "%s", l.err);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	cr_assert(eq(int, connect(fd, (const struct sockaddr *)&l.addr.ss, l.addr.len), 0));
	memcpy(pre, NET_PREAMBLE_MAGIC, 8);
	put_le64(pre + 8, 1);
	put_le32(pre + 20, NET_PREAMBLE_VERSION);
	put_le32(pre + 24, NET_SEC_TLS13);
	cr_assert(eq(sz, (size_t)send(fd, pre, sizeof(pre), MSG_NOSIGNAL), sizeof(pre)));
	/* Waits past the listener's handshake limit (10 s). */
	cr_assert(eq(int, net_accept_pair(&l, 12000, &dst), -ETIMEDOUT));
	cr_assert(eq(int, rj.n, 1));
	cr_assert(strstr(rj.why, "did not finish its TLS handshake") != NULL, "%s", rj.why);
	char b;
	cr_assert(eq(int, (int)recv(fd, &b, 1, 0), 0), "the connection was not closed");
	close(fd);
	net_listener_close(&l);
	net_tls_free(srv);
	creds_free(&c);
}

Test(tls, bad_credentials_name_the_file_and_the_remedy)
{
	struct net_tls_config cfg = { .psk_file = "/nonexistent/key" };
	struct net_tls *t;
	char err[256];

	cr_assert(eq(int, net_tls_new(&t, &cfg, true, err), -ENOENT));
	cr_assert(strstr(err, "/nonexistent/key") && strstr(err, "hmig keygen"), "%s", err);
	cfg = (struct net_tls_config){ .creds_dir = "/nonexistent" };
	cr_assert(lt(int, net_tls_new(&t, &cfg, false, err), 0));
	cr_assert(strstr(err, "/nonexistent/ca-cert.pem") && strstr(err, "hmig keygen"), "%s", err);
	cfg = (struct net_tls_config){ 0 };
	cr_assert(eq(int, net_tls_new(&t, &cfg, false, err), -EINVAL));
}
