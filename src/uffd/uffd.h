/* userfaultfd and PAGEMAP_SCAN wrappers.
 *
 * Thin: one function per ioctl, -errno converted once here, EAGAIN/partial
 * copies retried here so callers see 0 or a real error.  No state beyond the
 * file descriptors the caller owns.
 */
#ifndef HMIG_UFFD_UFFD_H
#define HMIG_UFFD_UFFD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "uffd/uapi.h"

/* What the running kernel offers (UFFDIO_API with no features asked). */
struct uffd_probe {
	uint64_t features;  /* UFFD_FEATURE_* the kernel reports */
	bool pagemap_scan;  /* PAGEMAP_SCAN on /proc/self/pagemap works */
};

/* Fills *p.  Returns 0, or -errno when userfaultfd itself is unavailable
 * (-EPERM: vm.unprivileged_userfaultfd=0 and not root; -ENOSYS: no kernel
 * support). */
int uffd_probe(struct uffd_probe *p);

/* Opens a userfaultfd (O_CLOEXEC | O_NONBLOCK) with exactly `features`
 * enabled.  Returns the fd or -errno (-EINVAL: a feature is missing). */
int uffd_open(uint64_t features);

/* Registers [addr, addr+len) in `mode` (UFFDIO_REGISTER_MODE_*). */
int uffd_register(int fd, void *addr, size_t len, uint64_t mode);
int uffd_unregister(int fd, void *addr, size_t len);

/* Atomically places len bytes from src at dst (page-aligned) and wakes
 * waiters.  Returns 0, -EEXIST when a page there is already present, or
 * -errno; *done (if non-NULL) gets the bytes placed before it stopped, so
 * a caller can tell the pages it placed from the one it found.  Retries
 * -EAGAIN (the mm changed under the copy) itself. */
int uffd_copy(int fd, void *dst, const void *src, size_t len, size_t *done);

/* Maps the zero page at dst (len bytes) and wakes.  0, -EEXIST or -errno,
 * with *done as for uffd_copy. */
int uffd_zeropage(int fd, void *dst, size_t len, size_t *done);

/* Sets (protect) or clears write protection on the range; clearing also wakes
 * threads blocked on a write-protect fault there.  Retries -EAGAIN itself. */
int uffd_wp(int fd, void *addr, size_t len, bool protect);

/* The loops above with the ioctl as a parameter (returning 0 or -errno and
 * filling its argument as the kernel does), so that unit tests can drive
 * them with a fake that stops part-way: the real kernel does that only when
 * the address space changes under it, which no test can arrange on cue.
 * uffd_copy/uffd_zeropage/uffd_wp are these with the real ioctl. */
typedef int (*uffd_ioctl_fn)(int fd, unsigned long req, void *arg);
int uffd_place_via(uffd_ioctl_fn io, int fd, void *dst, const void *src, size_t len,
		   size_t *done);
int uffd_wp_via(uffd_ioctl_fn io, int fd, void *addr, size_t len, bool protect);

/* Drops (MADV_DONTNEED) the runs iov[0..n), so that they read as missing
 * again under a userfaultfd.  One process_madvise call on *pidfd (a pidfd
 * of this process) covers many runs: a scattered stale set costs ~0.7 us a
 * page that way against ~1.8 us with one madvise per run.  The kernel
 * advises at most MAX_RW_COUNT bytes (2 GiB less a page) per call and
 * returns how many it did; the rest goes in further calls, however large the
 * set.  With *pidfd < 0, or when the kernel refuses process_madvise
 * (EINVAL, ENOSYS, EPERM: before 5.10, or DONTNEED before 6.x), it drops
 * run by run with madvise, and closes *pidfd and sets it to -1 so that later
 * calls go straight there.  iov[] is consumed.  Returns 0 or -errno. */
int uffd_drop_runs(int *pidfd, struct iovec *iov, size_t n);

/* Wakes threads blocked on the range (after a page was placed by other means). */
int uffd_wake(int fd, void *addr, size_t len);

/* Reads up to max messages without blocking.  Returns the count, 0 when none
 * is pending, or -errno. */
int uffd_read(int fd, struct uffd_msg *msgs, int max);

/* PAGEMAP_SCAN for pages written since they were last write-protected
 * (async uffd-wp), write-protecting them again in the same call when
 * `rearm` (a scan that only reads takes no page-table write and runs about
 * twice as fast, and several can run at once on parts of a range).  Calls
 * `found(arg, first, end)` for each run of written pages [first, end) as
 * page indexes relative to `base`.  Returns the number of pages found or
 * -errno. */
int64_t pagemap_scan_written(int pagemap_fd, void *base, size_t len, size_t page_size,
			     bool rearm, void (*found)(void *arg, uint64_t first, uint64_t end),
			     void *arg);

#endif
