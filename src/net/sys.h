/* Socket syscall wrappers for the net layer.
 *
 * Each returns the result or -errno: errno is read here, once, right after
 * the call (liburing's convention), so the rest of src/net never touches it.
 */
#ifndef HMIG_NET_SYS_H
#define HMIG_NET_SYS_H

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/clock.h"

#define NET_NEVER UINT64_MAX

static inline int sys_socket(int domain, int type, int proto)
{
	int r = socket(domain, type, proto);
	return r < 0 ? -errno : r;
}

static inline int sys_bind(int fd, const struct sockaddr *sa, socklen_t len)
{
	return bind(fd, sa, len) < 0 ? -errno : 0;
}

static inline int sys_listen(int fd, int backlog)
{
	return listen(fd, backlog) < 0 ? -errno : 0;
}

static inline int sys_connect(int fd, const struct sockaddr *sa, socklen_t len)
{
	return connect(fd, sa, len) < 0 ? -errno : 0;
}

static inline int sys_accept(int fd, struct sockaddr_storage *ss, socklen_t *len)
{
	int r = accept4(fd, (struct sockaddr *)ss, len, SOCK_NONBLOCK | SOCK_CLOEXEC);
	return r < 0 ? -errno : r;
}

static inline int sys_setsockopt_int(int fd, int level, int name, int v)
{
	return setsockopt(fd, level, name, &v, sizeof(v)) < 0 ? -errno : 0;
}

static inline int sys_getsockopt_int(int fd, int level, int name, int *v)
{
	socklen_t len = sizeof(*v);

	return getsockopt(fd, level, name, v, &len) < 0 ? -errno : 0;
}

static inline ssize_t sys_recv(int fd, void *buf, size_t len, int flags)
{
	ssize_t r = recv(fd, buf, len, flags);
	return r < 0 ? -errno : r;
}

static inline ssize_t sys_send(int fd, const void *buf, size_t len, int flags)
{
	ssize_t r = send(fd, buf, len, flags);
	return r < 0 ? -errno : r;
}

static inline int sys_poll(struct pollfd *fds, nfds_t n, int timeout_ms)
{
	int r = poll(fds, n, timeout_ms);
	return r < 0 ? -errno : r;
}

static inline int sys_set_nonblock(int fd, int on)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl < 0)
		return -errno;
	fl = on ? fl | O_NONBLOCK : fl & ~O_NONBLOCK;
	return fcntl(fd, F_SETFL, fl) < 0 ? -errno : 0;
}

/* close() is not retried on EINTR: on Linux the fd is gone either way. */
static inline void sys_close(int fd)
{
	if (fd >= 0)
		close(fd);
}

/* Deadlines are absolute CLOCK_MONOTONIC ns; NET_NEVER for "wait forever". */
static inline uint64_t net_deadline(int timeout_ms)
{
	if (timeout_ms < 0)
		return NET_NEVER;
	return clock_now_ns() + (uint64_t)timeout_ms * 1000000ull;
}

/* Milliseconds left until deadline for poll(): -1 forever, 0 when passed,
 * rounded up so a wait never ends just before its deadline. */
static inline int net_ms_left(uint64_t deadline)
{
	uint64_t now, left;

	if (deadline == NET_NEVER)
		return -1;
	now = clock_now_ns();
	if (now >= deadline)
		return 0;
	left = (deadline - now + 999999) / 1000000;
	return left > INT32_MAX ? INT32_MAX : (int)left;
}

#endif
