#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "baseline.h"
#include "cmd.h"

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
		uint64_t t0 = mono_ns(), sent = 0;

		while (sent < bytes) {
			size_t want = bytes - sent < CHUNK ? (size_t)(bytes - sent) : CHUNK;
			ssize_t n = send(fd, buf, want, 0);

			if (n <= 0)
				break;
			sent += (uint64_t)n;
		}
		if (sent == bytes && recv(fd, &ack, 1, 0) == 1)
			mbs = (double)bytes / ((double)(mono_ns() - t0) / 1e9) / 1e6;
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

/* The touch runs in a child, so that this process's peak resident memory,
 * which the migration reports quote, is its own. */
double baseline_touch(uint64_t bytes)
{
	double ms = -1;
	int pfd[2];

	if (pipe(pfd))
		return -1;
	pid_t pid = fork();
	if (pid == 0) {
		void *m = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

		if (m == MAP_FAILED)
			_exit(1);
		madvise(m, bytes, MADV_NOHUGEPAGE); /* as guest memory */
		uint64_t t = mono_ns();
		if (madvise(m, bytes, MADV_POPULATE_WRITE))
			memset(m, 1, bytes);
		ms = (double)(mono_ns() - t) / 1e6;
		_exit(write(pfd[1], &ms, sizeof(ms)) == sizeof(ms) ? 0 : 1);
	}
	close(pfd[1]);
	if (pid < 0 || read(pfd[0], &ms, sizeof(ms)) != sizeof(ms))
		ms = -1;
	close(pfd[0]);
	if (pid > 0)
		waitpid(pid, NULL, 0);
	return ms;
}

uint64_t baseline_mem_available(void)
{
	FILE *f = fopen("/proc/meminfo", "r");
	unsigned long long kib = 0;
	char line[128];

	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "MemAvailable: %llu kB", &kib) == 1)
			break;
	if (f)
		fclose(f);
	return (uint64_t)kib << 10;
}

void baseline_warm_memory(uint64_t bytes)
{
	baseline_touch(bytes);
}

#define PULL_ROUNDS 4000

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Nearest-rank quantile of n samples, sorting them in place. */
static double quantile(uint64_t *v, size_t n, double q)
{
	size_t rank = (size_t)ceil(q * (double)n);

	qsort(v, n, sizeof(*v), cmp_u64);
	return (double)v[rank ? rank - 1 : 0];
}

/* A userfaultfd with [m, m+len) registered for missing pages.  Raw
 * syscalls, not libhmig: the baseline measures the kernel's floor. */
static int uffd_missing(void *m, size_t len)
{
	struct uffdio_api api = { .api = UFFD_API };
	struct uffdio_register reg = {
		.range = { .start = (uintptr_t)m, .len = len },
		.mode = UFFDIO_REGISTER_MODE_MISSING,
	};
	int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);

	if (fd < 0)
		return -errno;
	if (ioctl(fd, UFFDIO_API, &api) || ioctl(fd, UFFDIO_REGISTER, &reg)) {
		int rc = -errno;

		close(fd);
		return rc;
	}
	return fd;
}

static void echo_server(int lfd)
{
	char req[24], page[4096];
	int fd = accept(lfd, NULL, NULL);

	memset(page, 0x33, sizeof(page));
	for (;;) {
		size_t got = 0;

		while (got < sizeof(req)) {
			ssize_t n = recv(fd, req + got, sizeof(req) - got, 0);
			if (n <= 0)
				_exit(0);
			got += (size_t)n;
		}
		if (send(fd, page, sizeof(page), 0) != sizeof(page))
			_exit(1);
	}
}

int baseline_pull(struct baseline_pull *out)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t alen = sizeof(a);
	uint64_t ns[PULL_ROUNDS];
	int got_rounds = 0;
	char req[24] = { 0 }, page[4096];
	int lfd = socket(AF_INET, SOCK_STREAM, 0), one = 1;

	if (lfd < 0 || bind(lfd, (struct sockaddr *)&a, sizeof(a)) || listen(lfd, 1) ||
	    getsockname(lfd, (struct sockaddr *)&a, &alen))
		return -EIO;
	pid_t pid = fork();
	if (pid == 0)
		echo_server(lfd);
	close(lfd);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(fd, (struct sockaddr *)&a, sizeof(a))) {
		close(fd);
		waitpid(pid, NULL, 0);
		return -EIO;
	}
	for (int i = 0; i < PULL_ROUNDS; i++) {
		uint64_t t0 = mono_ns();
		size_t got = 0;

		if (send(fd, req, sizeof(req), 0) != sizeof(req))
			break;
		while (got < sizeof(page)) {
			ssize_t n = recv(fd, page + got, sizeof(page) - got, 0);
			if (n <= 0)
				break;
			got += (size_t)n;
		}
		ns[got_rounds++] = mono_ns() - t0;
	}
	close(fd);
	waitpid(pid, NULL, 0);
	if (!got_rounds)
		return -EIO;
	out->rtt_p50_ns = quantile(ns, (size_t)got_rounds, 0.5);
	out->rtt_p99_ns = quantile(ns, (size_t)got_rounds, 0.99);

	/* One page at a time into fresh memory, as a pull installs it. */
	size_t len = (size_t)PULL_ROUNDS * 4096;
	uint8_t *m = mmap(NULL, len, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (m == MAP_FAILED)
		return -EIO;
	madvise(m, len, MADV_NOHUGEPAGE);
	int ufd = uffd_missing(m, len);
	if (ufd < 0) {
		munmap(m, len);
		return -EIO;
	}
	for (int i = 0; i < PULL_ROUNDS; i++) {
		struct uffdio_copy c = { .dst = (uintptr_t)(m + (size_t)i * 4096),
					 .src = (uintptr_t)page, .len = 4096 };
		uint64_t t0 = mono_ns();

		ioctl(ufd, UFFDIO_COPY, &c);
		ns[i] = mono_ns() - t0;
	}
	out->copy_p50_ns = quantile(ns, PULL_ROUNDS, 0.5);
	out->copy_p99_ns = quantile(ns, PULL_ROUNDS, 0.99);
	close(ufd);
	munmap(m, len);
	return 0;
}
