#include "relay.h"

#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/endian.h"
#include "net/net.h"
#include "proto/proto.h"

struct pump {
	struct relay *r;
	int from, to;
	bool to_dest;
};

/* The bulk stream as it passes, record by record: where the next header
 * starts, and, once the chosen PAGES record's header went by, where its
 * chosen page's pfn and data are. */
struct follower {
	uint64_t next_hdr;      /* offset of the next record header */
	uint8_t hdr[PROTO_HDR_LEN + 8]; /* header and the pfn list's count */
	uint32_t pages_seen;
	uint64_t pfn_at, flip_at; /* UINT64_MAX: not known yet */
	uint64_t pfn;
};

static int tcp_connect(const char *addr)
{
	char host[64];
	const char *colon = strrchr(addr, ':');
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(colon + 1)) };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	snprintf(host, sizeof(host), "%.*s", (int)(colon - addr), addr);
	inet_pton(AF_INET, host, &sin.sin_addr);
	if (connect(fd, (struct sockaddr *)&sin, sizeof(sin))) {
		close(fd);
		return -1;
	}
	return fd;
}

/* Byte b at stream offset pos: learn the layout, say whether to flip it. */
static bool follow(struct relay *r, struct follower *f, uint8_t b, uint64_t pos)
{
	uint64_t into = pos - f->next_hdr;

	if (pos >= f->pfn_at && pos < f->pfn_at + 8) {
		f->pfn |= (uint64_t)b << (8 * (pos - f->pfn_at));
		if (pos == f->pfn_at + 7)
			atomic_store(&r->flipped_pfn, f->pfn);
	}
	if (pos == f->flip_at)
		return true;
	if (into < sizeof(f->hdr)) {
		f->hdr[into] = b;
		if (into + 1 == sizeof(f->hdr)) {
			uint32_t type = get_le32(f->hdr), flags = get_le32(f->hdr + 4);
			uint32_t len = get_le32(f->hdr + 8), count = get_le32(f->hdr + PROTO_HDR_LEN);

			if (type == PROTO_PAGES && ++f->pages_seen == r->plan.pages_record) {
				uint32_t page = r->plan.page % count;
				uint64_t body = f->next_hdr + PROTO_HDR_LEN;

				f->pfn_at = body + 8 + 8 * (uint64_t)page;
				f->flip_at = body + 8 + (flags & PROTO_FLAG_CRC32C ? 12 : 8) * (uint64_t)count +
					     (uint64_t)page * 4096 + 777;
			}
			f->next_hdr += PROTO_HDR_LEN + len;
		}
	}
	return false;
}

static void *pump_main(void *p)
{
	struct pump *pu = p;
	struct relay *r = pu->r;
	struct follower f = { .pfn_at = UINT64_MAX, .flip_at = UINT64_MAX };
	uint8_t buf[65536], pre[NET_PREAMBLE_LEN];
	unsigned got_pre = 0;
	uint64_t pos = 0;
	bool bulk = false, dead = false;
	ssize_t n;

	while ((n = read(pu->from, buf, sizeof(buf))) > 0) {
		size_t i = 0;

		if (pu->to_dest && got_pre < NET_PREAMBLE_LEN) {
			while (i < (size_t)n && got_pre < NET_PREAMBLE_LEN)
				pre[got_pre++] = buf[i++];
			if (got_pre == NET_PREAMBLE_LEN)
				bulk = get_le32(pre + 16) == 0;
		}
		for (; pu->to_dest && bulk && i < (size_t)n; i++, pos++) {
			bool flip = r->plan.stream_offset ? pos == r->plan.stream_offset
							  : follow(r, &f, buf[i], pos);
			if (flip) {
				buf[i] ^= 0x04;
				atomic_fetch_add(&r->flips, 1);
			}
		}
		/* Once the far side is gone, keep reading and drop: the sender
		 * then goes on to read the far side's ERROR, which is what it
		 * would see over a direct connection too. */
		for (size_t off = 0; !dead && off < (size_t)n;) {
			ssize_t w = send(pu->to, buf + off, (size_t)n - off, MSG_NOSIGNAL);

			if (w <= 0)
				dead = true;
			else
				off += (size_t)w;
		}
	}
	shutdown(pu->to, SHUT_WR);
	free(pu);
	return NULL;
}

static void *accept_main(void *p)
{
	struct relay *r = p;

	/* A migration is two connections. */
	for (int k = 0; k < 2; k++) {
		int a = accept4(r->lfd, NULL, NULL, SOCK_CLOEXEC), b;

		if (a < 0)
			return NULL;
		b = tcp_connect(r->target);
		if (b < 0) {
			close(a);
			return NULL;
		}
		r->fds[r->nfds++] = a;
		r->fds[r->nfds++] = b;
		for (int dir = 0; dir < 2; dir++) {
			struct pump *pu = malloc(sizeof(*pu));

			*pu = (struct pump){ r, dir ? b : a, dir ? a : b, dir == 0 };
			pthread_create(&r->pumps[r->npumps++], NULL, pump_main, pu);
		}
	}
	return NULL;
}

void relay_start(struct relay *r, const char *target, const struct relay_plan *plan)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(sin);

	memset(r, 0, sizeof(*r));
	snprintf(r->target, sizeof(r->target), "%s", target);
	r->plan = *plan;
	atomic_store(&r->flipped_pfn, UINT64_MAX);
	r->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	cr_assert(r->lfd >= 0);
	cr_assert(bind(r->lfd, (struct sockaddr *)&sin, sizeof(sin)) == 0);
	cr_assert(listen(r->lfd, 4) == 0);
	getsockname(r->lfd, (struct sockaddr *)&sin, &len);
	snprintf(r->addr, sizeof(r->addr), "127.0.0.1:%u", ntohs(sin.sin_port));
	pthread_create(&r->acceptor, NULL, accept_main, r);
}

void relay_stop(struct relay *r)
{
	shutdown(r->lfd, SHUT_RDWR);
	pthread_join(r->acceptor, NULL);
	for (int i = 0; i < r->npumps; i++)
		pthread_join(r->pumps[i], NULL);
	for (int i = 0; i < r->nfds; i++)
		close(r->fds[i]);
	close(r->lfd);
}
