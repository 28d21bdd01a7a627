#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "baseline.h"
#include "common/clock.h"

#define CHUNK (1u << 20)

/* The receiver: reads `bytes` into a reused buffer or into a fresh mapping,
 * then answers one byte so the sender's clock covers the whole transfer. */
static void receiver(int lfd, uint64_t bytes, int fresh)
{
	int fd = accept(lfd, NULL, NULL);
	uint8_t *buf = fresh ? mmap(NULL, bytes, PROT_READ | PROT_WRITE,
				    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)
			     : malloc(CHUNK);
	uint64_t got = 0;

	if (fd < 0 || !buf || buf == MAP_FAILED)
		_exit(1);
	if (fresh)
		madvise(buf, bytes, MADV_NOHUGEPAGE); /* as guest memory */
	while (got < bytes) {
		size_t want = bytes - got < CHUNK ? (size_t)(bytes - got) : CHUNK;
		ssize_t n = recv(fd, fresh ? buf + got : buf, want, 0);

		if (n <= 0)
			_exit(1);
		got += (uint64_t)n;
	}
	if (send(fd, "k", 1, 0) != 1)
		_exit(1);
	_exit(0);
}

static double blast(uint64_t bytes, int fresh)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t alen = sizeof(a);
	int lfd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
	char *buf = malloc(CHUNK), ack;
	double mbs = -1;

	if (lfd < 0 || !buf || bind(lfd, (struct sockaddr *)&a, sizeof(a)) ||
	    listen(lfd, 1) || getsockname(lfd, (struct sockaddr *)&a, &alen))
		goto out;
	memset(buf, 0x5a, CHUNK);
	pid_t pid = fork();
	if (pid == 0)
		receiver(lfd, bytes, fresh);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0) {
		uint64_t t0 = clock_now_ns(), sent = 0;

		while (sent < bytes) {
			size_t want = bytes - sent < CHUNK ? (size_t)(bytes - sent) : CHUNK;
			ssize_t n = send(fd, buf, want, 0);

			if (n <= 0)
				break;
			sent += (uint64_t)n;
		}
		if (sent == bytes && recv(fd, &ack, 1, 0) == 1)
			mbs = (double)bytes / ((double)(clock_now_ns() - t0) / 1e9) / 1e6;
	}
	close(fd);
	waitpid(pid, NULL, 0);
out:
	if (lfd >= 0)
		close(lfd);
	free(buf);
	return mbs;
}

int baseline_tcp_blast(uint64_t bytes, struct baseline_tcp *out)
{
	out->reused_mbs = blast(bytes, 0);
	out->fresh_mbs = blast(bytes, 1);
	return out->reused_mbs > 0 && out->fresh_mbs > 0 ? 0 : -EIO;
}

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

void baseline_warm_memory(uint64_t bytes)
{
	void *m = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

	if (m == MAP_FAILED)
		return;
	if (madvise(m, bytes, MADV_POPULATE_WRITE))
		memset(m, 1, bytes);
	munmap(m, bytes);
}
