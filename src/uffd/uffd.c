#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "uffd/uffd.h"

static int ret_errno(long rc)
{
	return rc < 0 ? -errno : (int)rc;
}

static int uffd_syscall(void)
{
	return ret_errno(syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK));
}

/* Opens a userfaultfd and runs the UFFDIO_API handshake asking for
 * `features`; *got (if non-NULL) receives what the kernel offers.  The
 * handshake may run once per fd, so probing and opening both come here. */
static int uffd_api(uint64_t features, uint64_t *got)
{
	struct uffdio_api api = { .api = UFFD_API, .features = features };
	int fd = uffd_syscall();

	if (fd < 0)
		return fd;
	if (ioctl(fd, UFFDIO_API, &api) < 0) {
		int rc = -errno;

		close(fd);
		return rc;
	}
	if (got)
		*got = api.features;
	return fd;
}

int uffd_open(uint64_t features)
{
	return uffd_api(features, NULL);
}

int uffd_probe(struct uffd_probe *p)
{
	p->features = 0;
	p->pagemap_scan = false;
	/* Asking for no feature reports every one the kernel has. */
	int fd = uffd_api(0, &p->features);
	if (fd < 0)
		return fd;
	close(fd);

	/* An empty scan of a valid range is enough: kernels without PAGEMAP_SCAN
	 * answer ENOTTY. */
	int pm = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	if (pm >= 0) {
		static const char probe_page[1] __attribute__((aligned(4096)));
		struct page_region r;
		struct pm_scan_arg a = {
			.size = sizeof(a),
			.start = (uintptr_t)probe_page & ~(uintptr_t)4095,
			.end = ((uintptr_t)probe_page & ~(uintptr_t)4095) + 4096,
			.vec = (uintptr_t)&r,
			.vec_len = 1,
			.category_mask = PAGE_IS_WRITTEN,
			.return_mask = PAGE_IS_WRITTEN,
		};
		p->pagemap_scan = ioctl(pm, PAGEMAP_SCAN, &a) >= 0;
		close(pm);
	}
	return 0;
}

int uffd_register(int fd, void *addr, size_t len, uint64_t mode)
{
	struct uffdio_register r = {
		.range = { .start = (uintptr_t)addr, .len = len },
		.mode = mode,
	};

	return ret_errno(ioctl(fd, UFFDIO_REGISTER, &r));
}

int uffd_unregister(int fd, void *addr, size_t len)
{
	struct uffdio_range r = { .start = (uintptr_t)addr, .len = len };

	return ret_errno(ioctl(fd, UFFDIO_UNREGISTER, &r));
}

static int sys_ioctl(int fd, unsigned long req, void *arg)
{
	return ioctl(fd, req, arg) < 0 ? -errno : 0;
}

/* UFFDIO_COPY from src, or UFFDIO_ZEROPAGE when src is NULL.  The kernel
 * has no length limit here but may place part of the range and stop:
 * EAGAIN when the address space changed under it (carry on from there),
 * EEXIST at a page already present.  The ioctl's progress field says how
 * much went in. */
int uffd_place_via(uffd_ioctl_fn io, int fd, void *dst, const void *src, size_t len,
		   size_t *done)
{
	size_t at = 0;
	int rc = 0;

	while (at < len) {
		struct uffdio_copy c = {
			.dst = (uintptr_t)dst + at, .src = (uintptr_t)src + at, .len = len - at,
		};
		struct uffdio_zeropage z = {
			.range = { .start = (uintptr_t)dst + at, .len = len - at },
		};
		rc = src ? io(fd, UFFDIO_COPY, &c) : io(fd, UFFDIO_ZEROPAGE, &z);
		int64_t progress = src ? c.copy : z.zeropage;

		if (rc == 0) {
			at = len;
			break;
		}
		if (progress > 0)
			at += (size_t)progress;
		if (rc != -EAGAIN)
			break;
		rc = 0;
	}
	if (done)
		*done = at;
	return rc;
}

int uffd_copy(int fd, void *dst, const void *src, size_t len, size_t *done)
{
	return uffd_place_via(sys_ioctl, fd, dst, src, len, done);
}

int uffd_zeropage(int fd, void *dst, size_t len, size_t *done)
{
	return uffd_place_via(sys_ioctl, fd, dst, NULL, len, done);
}

/* UFFDIO_WRITEPROTECT has no progress field: on EAGAIN (the address space
 * changed under it) the whole range goes again, which is harmless because
 * setting or clearing protection twice is the same as once. */
int uffd_wp_via(uffd_ioctl_fn io, int fd, void *addr, size_t len, bool protect)
{
	struct uffdio_writeprotect w = {
		.range = { .start = (uintptr_t)addr, .len = len },
		.mode = protect ? UFFDIO_WRITEPROTECT_MODE_WP : 0,
	};
	int rc;

	while ((rc = io(fd, UFFDIO_WRITEPROTECT, &w)) == -EAGAIN)
		;
	return rc;
}

int uffd_wp(int fd, void *addr, size_t len, bool protect)
{
	return uffd_wp_via(sys_ioctl, fd, addr, len, protect);
}

int uffd_wake(int fd, void *addr, size_t len)
{
	struct uffdio_range r = { .start = (uintptr_t)addr, .len = len };

	return ret_errno(ioctl(fd, UFFDIO_WAKE, &r));
}

int uffd_read(int fd, struct uffd_msg *msgs, int max)
{
	ssize_t n = read(fd, msgs, sizeof(*msgs) * (size_t)max);

	if (n < 0)
		return errno == EAGAIN ? 0 : -errno;
	return (int)(n / (ssize_t)sizeof(*msgs));
}

/* Regions per PAGEMAP_SCAN call: 512 * 24 bytes lives on the stack; a scan
 * that fills it resumes from walk_end, so this bounds stack use, not range. */
#define SCAN_VEC 512

int64_t pagemap_scan_written(int pagemap_fd, void *base, size_t len, size_t page_size,
			     bool rearm, void (*found)(void *arg, uint64_t first, uint64_t end),
			     void *arg)
{
	struct page_region vec[SCAN_VEC];
	uintptr_t start = (uintptr_t)base, end = start + len;
	int64_t total = 0;

	while (start < end) {
		struct pm_scan_arg a = {
			.size = sizeof(a),
			.flags = (rearm ? PM_SCAN_WP_MATCHING : 0) | PM_SCAN_CHECK_WPASYNC,
			.start = start,
			.end = end,
			.vec = (uintptr_t)vec,
			.vec_len = SCAN_VEC,
			.category_mask = PAGE_IS_WRITTEN,
			.return_mask = PAGE_IS_WRITTEN,
		};
		long n = ioctl(pagemap_fd, PAGEMAP_SCAN, &a);

		if (n < 0)
			return -errno;
		for (long i = 0; i < n; i++) {
			uint64_t first = (vec[i].start - (uintptr_t)base) / page_size;
			uint64_t last = (vec[i].end - (uintptr_t)base) / page_size;

			found(arg, first, last);
			total += (int64_t)(last - first);
		}
		/* walk_end < end means the vector filled up; go on from there. */
		if (a.walk_end <= start)
			break;
		start = a.walk_end;
	}
	return total;
}

/* Advances iov[*first..n) past `bytes` bytes already done. */
static void iov_advance(struct iovec *iov, size_t n, size_t *first, size_t bytes)
{
	while (*first < n && bytes >= iov[*first].iov_len)
		bytes -= iov[(*first)++].iov_len;
	if (*first < n && bytes) {
		iov[*first].iov_base = (char *)iov[*first].iov_base + bytes;
		iov[*first].iov_len -= bytes;
	}
}

/* process_madvise takes at most UIO_MAXIOV iovecs per call. */
#define DROP_IOV_MAX 1024

int uffd_drop_runs(int *pidfd, struct iovec *iov, size_t n)
{
	size_t first = 0;

	while (*pidfd >= 0 && first < n) {
		size_t cnt = n - first < DROP_IOV_MAX ? n - first : DROP_IOV_MAX;
		long done = syscall(SYS_process_madvise, *pidfd, iov + first, cnt, MADV_DONTNEED, 0);

		if (done > 0) {
			iov_advance(iov, n, &first, (size_t)done);
			continue;
		}
		if (done == 0 && iov[first].iov_len) /* no progress: never loop forever */
			return -EIO;
		if (done == 0) {
			first++;
			continue;
		}
		if (errno != EINVAL && errno != ENOSYS && errno != EPERM)
			return -errno;
		close(*pidfd); /* unsupported here: never try again */
		*pidfd = -1;
	}
	for (; first < n; first++)
		if (iov[first].iov_len && madvise(iov[first].iov_base, iov[first].iov_len, MADV_DONTNEED))
			return -errno;
	return 0;
}
