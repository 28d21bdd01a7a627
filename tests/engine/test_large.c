/* Memory-heavy guests: every mode migrates a 4 GiB guest between two
 * processes, checked byte for byte by the oracle.  These are the slow tests
 * (each moves 4 GiB and replays it), so they are a suite of their own,
 * `meson test --suite large`, run one at a time.
 *
 * Nothing here times anything: how downtime and throughput scale with the
 * guest's size is measured by `hmig bench scale` (docs/benchmarks.md).
 * What these check is that no per-call limit of the kernel (process_madvise's
 * 2 GiB, iovec counts, PAGEMAP_SCAN's vector) turns size into a failure, and
 * that every page moves by the path the mode promises. */
#include <criterion/criterion.h>
#include <string.h>

#include "harness.h"
#include "uffd/uffd.h"

#define GIB (1ull << 30)
#define LARGE (4 * GIB)
#define NPAGES (LARGE / 4096)

static void large_case(struct mig_case *c, const char *workload, enum hmig_mode mode)
{
	mig_case_init(c, workload, LARGE);
	c->cfg.mode = mode;
	c->cfg.accept_timeout_ms = 120000; /* the 4 GiB source fills first */
	c->cfg.io_timeout_ms = 60000;
	c->warmup_s = 0.5;
	c->run_after_s = 0.5;
}

/* Post-copy moved every missing page by push or by pull, nothing by
 * stop-and-copy. */
static void assert_postcopy(struct mig_result *r, const char *what)
{
	uint64_t stale = rep_u64(r->dst, "switchover.stale_pages");

	cr_assert_gt(stale, 0, "%s: nothing was left for post-copy", what);
	cr_assert_eq(rep_u64(r->dst, "pages.pulled") + rep_u64(r->dst, "pages.pushed"), stale,
		     "%s: %lu stale pages, %lu pulled + %lu pushed", what, (unsigned long)stale,
		     (unsigned long)rep_u64(r->dst, "pages.pulled"),
		     (unsigned long)rep_u64(r->dst, "pages.pushed"));
	cr_assert_eq(rep_u64(r->src, "bytes.stopcopy"), 0, "%s went stop-and-copy", what);
}

Test(large, precopy_idle, .timeout = 900)
{
	struct mig_case c;
	struct mig_result r;

	need_uffd();
	large_case(&c, "idle", HMIG_MODE_PRECOPY);
	mig_run(&c, &r);
	assert_migrated(&r, "4 GiB precopy idle");
	cr_assert_eq(rep_u64(r.src, "pages.sent") + rep_u64(r.src, "pages.zero"), NPAGES);
	cr_assert_eq(rep_u64(r.src, "switchover.stale_pages"), 0);
	mig_result_free(&r);
}

/* A writer the passes keep up with: pass 0 leaves tens of thousands of
 * pages dirty, later passes and the stop-and-copy send them.  Pass 0 alone
 * may be fast enough for the rest to fit the default downtime target, so
 * the test asks for three passes outright (no convergence short of that). */
Test(large, precopy_busy, .timeout = 900)
{
	struct mig_case c;
	struct mig_result r;

	need_uffd();
	large_case(&c, "uniform:rate=50000", HMIG_MODE_PRECOPY);
	c.cfg.max_passes = 3;
	c.cfg.min_progress = 0;
	c.cfg.dirty_threshold_pages = 0;
	c.cfg.downtime_target_ms = 0;
	mig_run(&c, &r);
	assert_migrated(&r, "4 GiB precopy busy");
	cr_assert_geq(json_array_size(json_object_get(r.src, "passes")), 2, "the writer left nothing dirty");
	cr_assert_gt(rep_u64(r.src, "pages.duplicate"), 0);
	mig_result_free(&r);
}

/* Nothing sent first: the whole guest is missing at the resume, more than
 * process_madvise advises in one call, and the destination drops none of it
 * (it never held a page). */
Test(large, postcopy_with_nothing_sent_first, .timeout = 900)
{
	struct mig_case c;
	struct mig_result r;

	need_uffd();
	large_case(&c, "uniform:rate=20000", HMIG_MODE_POSTCOPY);
	c.cfg.precopy_passes = 0;
	mig_run(&c, &r);
	assert_migrated(&r, "4 GiB postcopy, 0 passes");
	cr_assert_eq(rep_u64(r.src, "switchover.stale_pages"), NPAGES);
	cr_assert_eq(rep_u64(r.dst, "stale_dropped_in_downtime"), 0);
	assert_postcopy(&r, "4 GiB postcopy, 0 passes");
	mig_result_free(&r);
}

/* After pass 0 the writer's pages are dropped on the destination while the
 * guest still runs on the source (DIRTY), and few are left for the
 * downtime. */
Test(large, postcopy_after_one_pass, .timeout = 900)
{
	struct mig_case c;
	struct mig_result r;

	need_uffd();
	large_case(&c, "uniform:rate=20000", HMIG_MODE_POSTCOPY);
	c.cfg.precopy_passes = 1;
	mig_run(&c, &r);
	assert_migrated(&r, "4 GiB postcopy, 1 pass");
	uint64_t before = rep_u64(r.dst, "stale_dropped_before_pause");
	uint64_t during = rep_u64(r.dst, "stale_dropped_in_downtime");
	cr_assert_gt(before, during, "%lu pages dropped before the pause, %lu in the downtime",
		     (unsigned long)before, (unsigned long)during);
	assert_postcopy(&r, "4 GiB postcopy, 1 pass");
	mig_result_free(&r);
}

/* An unthrottled writer rewrites the guest faster than pass 0 sends it:
 * hybrid gives up on pre-copy and finishes in post-copy, having dropped
 * more than 2 GiB of rewritten pages on the destination.  The log is async
 * on purpose: auto is sync at this size, and a writer whose first writes
 * each wait for the handler dirties so much less that hybrid may finish as
 * pre-copy instead (docs/benchmarks.md, 8 GiB), which is not this path. */
Test(large, hybrid_unthrottled_writer, .timeout = 900)
{
	struct mig_case c;
	struct mig_result r;
	struct uffd_probe p;

	need_uffd();
	if (uffd_probe(&p) || !(p.features & UFFD_FEATURE_WP_ASYNC) || !p.pagemap_scan)
		cr_skip_test("no async write-protect dirty logging here (Linux 6.7+)");
	large_case(&c, "uniform", HMIG_MODE_HYBRID);
	c.cfg.dirty = HMIG_DIRTY_WP_ASYNC;
	mig_run(&c, &r);
	assert_migrated(&r, "4 GiB hybrid, unthrottled");
	const char *why = rep_str(r.src, "switchover.reason");
	cr_assert(strcmp(why, "converged"), "an unthrottled writer converged");
	assert_postcopy(&r, "4 GiB hybrid, unthrottled");
	mig_result_free(&r);
}
