/* userfaultfd and PAGEMAP_SCAN wrappers, each test skipping (with the reason)
 * when the running kernel lacks the feature. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "uffd/uffd.h"

#define PAGE 4096

static struct uffd_probe probe;

static void need_uffd(uint64_t features, bool scan)
{
	int rc = uffd_probe(&probe);

	if (rc)
		cr_skip_test("userfaultfd unavailable: %s", strerror(-rc));
	if ((probe.features & features) != features)
		cr_skip_test("kernel lacks uffd features %#lx",
			     (unsigned long)(features & ~probe.features));
	if (scan && !probe.pagemap_scan)
		cr_skip_test("kernel lacks PAGEMAP_SCAN (Linux 6.7+)");
}

static void *map_pages(size_t n)
{
	void *m = mmap(NULL, n * PAGE, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	cr_assert_neq(m, MAP_FAILED);
	madvise(m, n * PAGE, MADV_NOHUGEPAGE);
	return m;
}

Test(uffd, open_refuses_unknown_feature)
{
	need_uffd(0, false);
	cr_assert_lt(uffd_open(1ull << 62), 0, "a feature bit no kernel has was accepted");
	int fd = uffd_open(0);
	cr_assert_geq(fd, 0, "%s", strerror(-fd));
	close(fd);
}

Test(uffd, copy_then_copy_again_is_eexist)
{
	need_uffd(0, false);
	int fd = uffd_open(0);
	uint8_t *m = map_pages(4), src[PAGE];

	cr_assert_eq(uffd_register(fd, m, 4 * PAGE, UFFDIO_REGISTER_MODE_MISSING), 0);
	memset(src, 0x5a, PAGE);
	cr_assert_eq(uffd_copy(fd, m + PAGE, src, PAGE, NULL), 0);
	cr_assert_eq(m[PAGE + 100], 0x5a);
	cr_assert_eq(uffd_copy(fd, m + PAGE, src, PAGE, NULL), -EEXIST);
	/* A run that meets a present page says how much it placed before it. */
	uint8_t run[3 * PAGE];
	size_t done = 99;
	memset(run, 0x77, sizeof(run));
	cr_assert_eq(uffd_copy(fd, m, run, 3 * PAGE, &done), -EEXIST);
	cr_assert_eq(done, PAGE, "placed %zu bytes before the present page", done);
	cr_assert_eq(m[10], 0x77);
	cr_assert_eq(uffd_zeropage(fd, m + 2 * PAGE, PAGE, NULL), 0);
	cr_assert_eq(m[2 * PAGE + 7], 0);
	cr_assert_eq(uffd_zeropage(fd, m + 2 * PAGE, PAGE, NULL), -EEXIST);
	cr_assert_eq(uffd_unregister(fd, m, 4 * PAGE), 0);
	munmap(m, 4 * PAGE);
	close(fd);
}

Test(uffd, read_returns_zero_when_nothing_is_pending)
{
	need_uffd(0, false);
	int fd = uffd_open(0);
	struct uffd_msg msg;

	cr_assert_eq(uffd_read(fd, &msg, 1), 0);
	close(fd);
}

static uint64_t runs[64][2];
static int nruns;

static void record(void *arg, uint64_t first, uint64_t end)
{
	(void)arg;
	runs[nruns][0] = first;
	runs[nruns][1] = end;
	nruns++;
}

Test(uffd, pagemap_scan_finds_writes_and_rearms)
{
	need_uffd(UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED, true);
	const size_t n = 2048; /* spans several page tables' worth of PTEs */
	int fd = uffd_open(UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED);
	int pm = open("/proc/self/pagemap", O_RDONLY);
	uint8_t *m = map_pages(n);

	cr_assert_geq(fd, 0);
	cr_assert_eq(uffd_register(fd, m, n * PAGE, UFFDIO_REGISTER_MODE_WP), 0);
	cr_assert_eq(uffd_wp(fd, m, n * PAGE, true), 0);
	nruns = 0;
	cr_assert_eq(pagemap_scan_written(pm, m, n * PAGE, PAGE, true, record, NULL), 0);

	m[3 * PAGE] = 1;
	m[4 * PAGE + 9] = 1;
	m[1500 * PAGE + 4095] = 1;
	nruns = 0;
	cr_assert_eq(pagemap_scan_written(pm, m, n * PAGE, PAGE, true, record, NULL), 3);
	cr_assert_eq(nruns, 2);
	cr_assert_eq(runs[0][0], 3);
	cr_assert_eq(runs[0][1], 5);
	cr_assert_eq(runs[1][0], 1500);
	cr_assert_eq(runs[1][1], 1501);
	nruns = 0;
	cr_assert_eq(pagemap_scan_written(pm, m, n * PAGE, PAGE, true, record, NULL), 0,
		     "the scan did not write-protect what it reported");
	m[4 * PAGE] = 2;
	/* A scan that does not re-arm reports the write and leaves it there. */
	cr_assert_eq(pagemap_scan_written(pm, m, n * PAGE, PAGE, false, record, NULL), 1);
	cr_assert_eq(pagemap_scan_written(pm, m, n * PAGE, PAGE, false, record, NULL), 1);
	cr_assert_eq(pagemap_scan_written(pm, m, n * PAGE, PAGE, true, record, NULL), 1);
	munmap(m, n * PAGE);
	close(pm);
	close(fd);
}

static uint64_t counted_pages, counted_runs;

static void count(void *arg, uint64_t first, uint64_t end)
{
	(void)arg;
	cr_assert_eq(first % 2, 0, "page %lu was never written", (unsigned long)first);
	counted_pages += end - first;
	counted_runs++;
}

/* More written runs than one PAGEMAP_SCAN vector holds: the wrapper resumes
 * from walk_end and still reports every page. */
Test(uffd, pagemap_scan_resumes_past_a_full_vector)
{
	need_uffd(UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED, true);
	const size_t n = 4096;
	int fd = uffd_open(UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED);
	int pm = open("/proc/self/pagemap", O_RDONLY);
	uint8_t *m = map_pages(n);

	cr_assert_eq(uffd_register(fd, m, n * PAGE, UFFDIO_REGISTER_MODE_WP), 0);
	cr_assert_eq(uffd_wp(fd, m, n * PAGE, true), 0);
	for (size_t i = 0; i < n; i += 2) /* 2048 separate runs */
		m[i * PAGE] = 1;
	counted_pages = counted_runs = 0;
	cr_assert_eq(pagemap_scan_written(pm, m, n * PAGE, PAGE, true, count, NULL), 2048);
	cr_assert_eq(counted_pages, 2048);
	cr_assert_eq(counted_runs, 2048);
	munmap(m, n * PAGE);
	close(pm);
	close(fd);
}

/* process_madvise advises at most 2 GiB less a page per call: a 3 GiB set of
 * runs, one of them larger than that, goes in several calls, the cut falling
 * inside a run, and every page reads as zero afterwards.  The memory is never
 * populated but for one page per run, so the test costs little. */
Test(uffd, drop_runs_goes_past_process_madvise_limit, .timeout = 60)
{
	const size_t gib = 1ul << 30, len = 3 * gib;
	uint8_t *m = mmap(NULL, len, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	cr_assert_neq(m, MAP_FAILED);
	size_t marks[] = { 0, gib - PAGE, gib + 5 * PAGE, 2 * gib + 3 * PAGE, len - PAGE };

	for (int fallback = 0; fallback < 2; fallback++) {
		for (size_t i = 0; i < sizeof(marks) / sizeof(marks[0]); i++)
			m[marks[i]] = 0x5a;
		/* A 2.5 GiB run (over the per-call limit), then two small ones. */
		struct iovec iov[] = {
			{ m, 2 * gib + gib / 2 },
			{ m + 2 * gib + gib / 2, PAGE },
			{ m + 2 * gib + gib / 2 + 2 * PAGE, gib / 2 - 2 * PAGE },
		};
		int pidfd = fallback ? -1 : (int)syscall(SYS_pidfd_open, getpid(), 0);
		int rc = uffd_drop_runs(&pidfd, iov, 3);
		cr_assert_eq(rc, 0, "%s", strerror(-rc));
		for (size_t i = 0; i < sizeof(marks) / sizeof(marks[0]); i++)
			cr_assert_eq(m[marks[i]], 0, "offset %zu survived the drop (%s)", marks[i],
				     fallback ? "madvise" : "process_madvise");
		if (pidfd >= 0)
			close(pidfd);
	}
	munmap(m, len);
}

/* A fake UFFDIO_COPY/ZEROPAGE that places at most 3 pages per call and then
 * says EAGAIN, as the kernel does when the address space changes under it;
 * it stops with EEXIST at page `eexist_at` (counted from the first call's
 * dst). */
static struct {
	uintptr_t base;
	size_t calls, eexist_at;
} fake;

static int fake_place(int fd, unsigned long req, void *arg)
{
	(void)fd;
	fake.calls++;
	uint64_t start, len, *progress;
	if (req == UFFDIO_COPY) {
		struct uffdio_copy *c = arg;
		start = c->dst, len = c->len, progress = (uint64_t *)&c->copy;
	} else {
		struct uffdio_zeropage *z = arg;
		start = z->range.start, len = z->range.len, progress = (uint64_t *)&z->zeropage;
	}
	if (!fake.base)
		fake.base = start;
	uint64_t page = (start - fake.base) / PAGE, n = len / PAGE;
	if (page + n > fake.eexist_at) {
		n = fake.eexist_at - page;
		if (n == 0) {
			*progress = (uint64_t)-EEXIST;
			return -EEXIST;
		}
	}
	if (n > 3) {
		*progress = 3 * PAGE;
		return -EAGAIN;
	}
	*progress = n * PAGE;
	return page + n == fake.eexist_at ? -EEXIST : 0;
}

Test(uffd, place_loops_over_partial_progress)
{
	static uint8_t src[20 * PAGE];
	size_t done;

	for (int zero = 0; zero < 2; zero++) {
		fake.base = 0, fake.calls = 0, fake.eexist_at = SIZE_MAX;
		cr_assert_eq(uffd_place_via(fake_place, -1, (void *)0x100000, zero ? NULL : src,
					    20 * PAGE, &done), 0);
		cr_assert_eq(done, 20 * PAGE);
		cr_assert_eq(fake.calls, 7, "20 pages at 3 a call");

		fake.base = 0, fake.calls = 0, fake.eexist_at = 11;
		cr_assert_eq(uffd_place_via(fake_place, -1, (void *)0x100000, zero ? NULL : src,
					    20 * PAGE, &done), -EEXIST);
		cr_assert_eq(done, 11 * PAGE, "placed %zu bytes before the present page", done);
	}
}

static int wp_calls;

static int fake_wp(int fd, unsigned long req, void *arg)
{
	struct uffdio_writeprotect *w = arg;

	(void)fd;
	cr_assert_eq(req, UFFDIO_WRITEPROTECT);
	cr_assert_eq(w->range.len, 64 * PAGE, "the retry covers the whole range");
	return ++wp_calls < 3 ? -EAGAIN : 0;
}

Test(uffd, writeprotect_retries_eagain)
{
	wp_calls = 0;
	cr_assert_eq(uffd_wp_via(fake_wp, -1, (void *)0x100000, 64 * PAGE, true), 0);
	cr_assert_eq(wp_calls, 3);
}
