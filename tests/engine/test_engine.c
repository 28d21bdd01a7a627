/* Pre-copy migrations between two processes over loopback, each checked byte
 * for byte by the oracle on the destination. */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <errno.h>
#include <signal.h>
#include <string.h>

#include "harness.h"

#define MIB (1ull << 20)

static const char *workloads[] = {
	"idle", "uniform:rate=20000", "zipf:rate=50000", "seq:rate=20000",
	"read:rate=50000,write_pct=20", "kv:rate=100000,set_pct=20",
};

static int workload_idx[] = { 0, 1, 2, 3, 4, 5 };

ParameterizedTestParameters(engine, precopy_every_workload)
{
	return cr_make_param_array(int, workload_idx,
				   sizeof(workload_idx) / sizeof(workload_idx[0]));
}

ParameterizedTest(int *i, engine, precopy_every_workload, .timeout = 120)
{
	struct mig_case c;
	struct mig_result r;

	need_uffd();
	mig_case_init(&c, workloads[*i], 64 * MIB);
	mig_run(&c, &r);
	assert_migrated(&r, workloads[*i]);
	cr_assert_geq(rep_u64(r.src, "pages.sent") + rep_u64(r.src, "pages.zero"),
		      64 * MIB / 4096, "pass 0 must send every page");
	mig_result_free(&r);
}

Test(engine, max_passes_1_is_one_pass_then_stopcopy, .timeout = 120)
{
	struct mig_case c;
	struct mig_result r;

	need_uffd();
	mig_case_init(&c, "uniform", 64 * MIB); /* unthrottled: never converges in one pass */
	c.cfg.max_passes = 1;
	c.cfg.dirty_threshold_pages = 0;
	c.cfg.downtime_target_ms = 0;
	mig_run(&c, &r);
	assert_migrated(&r, "max_passes=1");
	cr_assert_eq(json_array_size(json_object_get(r.src, "passes")), 1);
	cr_assert_str_eq(rep_str(r.src, "switchover.reason"), "max_passes");
	cr_assert_gt(rep_u64(r.src, "bytes.stopcopy"), 0);
	mig_result_free(&r);
}

Test(engine, idle_guest_converges_and_zero_pages_carry_no_data, .timeout = 120)
{
	struct mig_case c;
	struct mig_result r;

	need_uffd();
	mig_case_init(&c, "idle", 64 * MIB);
	c.guest.fill = 0.25;
	mig_run(&c, &r);
	assert_migrated(&r, "idle");
	size_t passes = json_array_size(json_object_get(r.src, "passes"));
	cr_assert_leq(passes, 2, "an idle guest took %zu passes", passes);
	cr_assert_str_eq(rep_str(r.src, "switchover.reason"), "converged");
	uint64_t sent = rep_u64(r.src, "pages.sent"), zero = rep_u64(r.src, "pages.zero");
	uint64_t npages = 64 * MIB / 4096;
	cr_assert_eq(sent + zero, npages);
	/* A quarter of the pages hold data; the zero pages travel as pfns only. */
	cr_assert_lt(sent, npages / 3, "%lu pages sent with data", (unsigned long)sent);
	cr_assert_gt(zero, npages / 2);
	uint64_t bytes = rep_u64(r.src, "bytes.total");
	/* data + pfn lists + the vCPU state (4 bytes a page) + record headers */
	uint64_t most = sent * 4096 + zero * 8 + npages * 4 + 64 * 1024;
	cr_assert_leq(bytes, most, "%lu bytes for %lu data pages", (unsigned long)bytes,
		      (unsigned long)sent);
	mig_result_free(&r);
}

Test(engine, high_dirty_rate_hits_max_passes, .timeout = 120)
{
	struct mig_case c;
	struct mig_result r;

	need_uffd();
	mig_case_init(&c, "uniform", 64 * MIB);
	c.cfg.max_passes = 3;
	c.cfg.min_progress = 0;
	c.cfg.dirty_threshold_pages = 0;
	c.cfg.downtime_target_ms = 0;
	mig_run(&c, &r);
	assert_migrated(&r, "high dirty rate");
	cr_assert_eq(json_array_size(json_object_get(r.src, "passes")), 3);
	cr_assert_str_eq(rep_str(r.src, "switchover.reason"), "max_passes");
	cr_assert_gt(rep_u64(r.src, "switchover.stale_pages"), 0);
	mig_result_free(&r);
}

Test(engine, destination_killed_mid_pass_leaves_source_running, .timeout = 120)
{
	struct mig_case c;
	struct mig_result r;

	need_uffd();
	mig_case_init(&c, "uniform:rate=20000", 64 * MIB);
	c.cfg.rate_limit_bps = 16 * MIB; /* pass 0 takes ~4 s: time to kill it */
	c.kill_dest_after_s = 0.8;
	mig_run(&c, &r);
	cr_assert_lt(r.src_rc, 0, "the source claims success with a dead destination");
	cr_assert(strstr(r.src_err, "destination"), "error does not name the peer: %s", r.src_err);
	cr_assert_eq(r.dst_status, -SIGKILL);
	cr_assert_gt(r.src_ops_after, 0, "the source guest stopped running after the failure");
	cr_assert_str_eq(rep_str(r.src, "result"), "failed");
	mig_result_free(&r);
}

Test(engine, unreachable_destination_is_one_clear_error, .timeout = 60)
{
	struct hmig_synth_params p = { .mem_bytes = 4 * MIB, .vcpus = 1, .workload = "idle",
				       .fill = 1 };
	struct hmig_config cfg;
	struct hmig_guest *g;
	struct hmig_source *s;
	char err[256];

	hmig_config_init(&cfg);
	cfg.insecure = true;
	cfg.connect_timeout_ms = 300;
	cr_assert_eq(hmig_synth_open(&p, &g, err), 0, "%s", err);
	cr_assert_eq(g->ops->run(g), 0);
	cr_assert_eq(hmig_source_new(&cfg, g, &s, err), 0);
	/* Port 1 on loopback: nothing listens there. */
	int rc = hmig_source_run(s, "127.0.0.1:1");
	cr_assert_lt(rc, 0);
	cr_assert(strstr(hmig_source_error(s), "127.0.0.1:1"), "%s", hmig_source_error(s));
	cr_assert_null(strchr(hmig_source_error(s), '\n'), "more than one line");
	hmig_source_free(s);
	g->ops->destroy(g);
}

Test(engine, address_in_use_is_refused_at_once, .timeout = 30)
{
	struct hmig_config cfg;
	struct hmig_guest *g1, *g2;
	struct hmig_dest *d1, *d2;
	char err[256];

	hmig_config_init(&cfg);
	cfg.insecure = true;
	cr_assert_eq(hmig_synth_open_dest(&g1, err), 0);
	cr_assert_eq(hmig_synth_open_dest(&g2, err), 0);
	cr_assert_eq(hmig_dest_new(&cfg, g1, "127.0.0.1:0", &d1, err), 0, "%s", err);
	int rc = hmig_dest_new(&cfg, g2, hmig_dest_address(d1), &d2, err);
	cr_assert_eq(rc, -EADDRINUSE, "%d: %s", rc, err);
	cr_assert(strstr(err, "in use"), "%s", err);
	hmig_dest_free(d1);
	g1->ops->destroy(g1);
	g2->ops->destroy(g2);
}

/* ------------------------------------------------------------ post-copy */

/* Every mode x every workload: 0 postcopy with nothing sent first, 1 postcopy
 * after pass 0, 2 hybrid that cannot converge (so it goes post-copy). */
static int mode_workload[18];

ParameterizedTestParameters(engine, postcopy_every_mode_and_workload)
{
	for (int i = 0; i < 18; i++)
		mode_workload[i] = i;
	return cr_make_param_array(int, mode_workload, 18);
}

ParameterizedTest(int *i, engine, postcopy_every_mode_and_workload, .timeout = 120)
{
	static const char *const names[] = { "postcopy/0 passes", "postcopy/1 pass", "hybrid" };
	int m = *i / 6, w = *i % 6;
	struct mig_case c;
	struct mig_result r;
	char what[96];

	need_uffd();
	snprintf(what, sizeof(what), "%s x %s", names[m], workloads[w]);
	mig_case_init(&c, workloads[w], 64 * MIB);
	c.cfg.mode = m < 2 ? HMIG_MODE_POSTCOPY : HMIG_MODE_HYBRID;
	c.cfg.precopy_passes = m == 0 ? 0 : 1;
	if (m == 2) { /* never converged: the policy must choose post-copy */
		c.cfg.max_passes = 2;
		c.cfg.dirty_threshold_pages = 0;
		c.cfg.downtime_target_ms = 0;
	}
	mig_run(&c, &r);
	assert_migrated(&r, what);
	if (m == 0) {
		cr_assert_eq(json_array_size(json_object_get(r.src, "passes")), 0, "%s", what);
		cr_assert_eq(rep_u64(r.src, "switchover.stale_pages"), 64 * MIB / 4096);
	}
	/* Hybrid may still converge (an idle guest, or a pass that found
	 * nothing dirty): then stop-and-copy is right, and the report says why. */
	if (m == 2 && !strcmp(rep_str(r.src, "switchover.reason"), "converged")) {
		mig_result_free(&r);
		return;
	}
	/* Post-copy moved what was stale, by push or by pull. */
	uint64_t stale = rep_u64(r.dst, "switchover.stale_pages");
	cr_assert_eq(rep_u64(r.dst, "pages.pulled") + rep_u64(r.dst, "pages.pushed"), stale,
		     "%s: %lu stale pages, %lu pulled + %lu pushed", what, (unsigned long)stale,
		     (unsigned long)rep_u64(r.dst, "pages.pulled"),
		     (unsigned long)rep_u64(r.dst, "pages.pushed"));
	cr_assert_eq(rep_u64(r.src, "bytes.stopcopy"), 0, "%s went stop-and-copy", what);
	mig_result_free(&r);
}

/* Pure demand paging: a guest that sweeps its memory pulls every page
 * across itself, and the migration completes. */
Test(engine, push_off_sweep_completes_by_pulls_alone, .timeout = 120)
{
	struct mig_case c;
	struct mig_result r;

	need_uffd();
	mig_case_init(&c, "seq", 16 * MIB);
	c.cfg.mode = HMIG_MODE_POSTCOPY;
	c.cfg.precopy_passes = 0;
	c.cfg.push = HMIG_PUSH_OFF;
	c.run_after_s = 0.2;
	mig_run(&c, &r);
	assert_migrated(&r, "push=off");
	cr_assert_eq(rep_u64(r.dst, "pages.pushed"), 0);
	cr_assert_eq(rep_u64(r.dst, "pages.pulled"), 16 * MIB / 4096);
	cr_assert_geq(rep_u64(r.dst, "faults.count"), 16 * MIB / 4096);
	mig_result_free(&r);
}

/* A large stale set and nothing pushed: vCPU threads block in faults, and
 * the report says for how long. */
Test(engine, vcpus_blocked_on_a_large_stale_set, .timeout = 120)
{
	struct mig_case c;
	struct mig_result r;

	need_uffd();
	mig_case_init(&c, "kv:set_pct=30", 32 * MIB);
	c.cfg.mode = HMIG_MODE_POSTCOPY;
	c.cfg.precopy_passes = 0;
	c.cfg.push = HMIG_PUSH_OFF;
	mig_run(&c, &r);
	assert_migrated(&r, "blocked vCPUs");
	cr_assert_gt(rep_u64(r.dst, "faults.count"), 1000);
	cr_assert_gt(rep_num(r.dst, "faults.blocktime_ms"), 0);
	cr_assert_gt(rep_num(r.dst, "faults.latency_us.p50"), 0);
	cr_assert_geq(rep_num(r.dst, "faults.latency_us.max"),
		      rep_num(r.dst, "faults.latency_us.p99"));
	mig_result_free(&r);
}

/* The dirty rate beats the link (a 24 MiB/s cap against an unthrottled
 * writer): hybrid gives up on pre-copy and goes post-copy, not
 * stop-and-copy. */
Test(engine, hybrid_switches_to_postcopy_when_the_link_is_too_slow, .timeout = 180)
{
	struct mig_case c;
	struct mig_result r;

	need_uffd();
	mig_case_init(&c, "uniform", 32 * MIB);
	c.cfg.mode = HMIG_MODE_HYBRID;
	c.cfg.rate_limit_bps = 24 * MIB;
	c.cfg.downtime_target_ms = 50;
	mig_run(&c, &r);
	assert_migrated(&r, "slow link");
	const char *why = rep_str(r.src, "switchover.reason");
	cr_assert(!strcmp(why, "no_progress") || !strcmp(why, "max_passes"), "reason %s", why);
	cr_assert_eq(rep_u64(r.src, "bytes.stopcopy"), 0);
	cr_assert_gt(rep_u64(r.dst, "pages.pulled") + rep_u64(r.dst, "pages.pushed"), 0);
	mig_result_free(&r);
}

/* A destination whose backend cannot leave pages missing (Xen without
 * mem_paging) offers no PROTO_CAP_POSTCOPY: post-copy is refused at HELLO
 * by the destination with one line naming the capability and the
 * backend's reason, before any page moves, and hybrid finishes by
 * stop-and-copy where it would have switched. */
Test(engine, no_postcopy_capability_refuses_postcopy_and_hybrid_stops_and_copies,
     .timeout = 180)
{
	struct mig_case c;
	struct mig_result r;

	need_uffd();
	mig_case_init(&c, "uniform:rate=2000", 32 * MIB);
	c.dest_no_postcopy = true;
	c.cfg.mode = HMIG_MODE_POSTCOPY;
	mig_run(&c, &r);
	cr_assert_lt(r.src_rc, 0, "source: %s", r.src_err);
	cr_assert(strstr(r.src_err, "PROTO_CAP_POSTCOPY") &&
		  strstr(r.src_err, "this destination cannot post-copy") && !strchr(r.src_err, '\n'),
		  "not one line naming the capability and why: %s", r.src_err);
	cr_assert_eq(rep_u64(r.src, "pages.sent") + rep_u64(r.src, "pages.zero"), 0,
		      "pages moved before the refusal");
	cr_assert_gt(r.src_ops_after, 0, "the source guest stopped");
	cr_assert_eq(r.dst_status, 1, "destination exited %d", r.dst_status);
	mig_result_free(&r);

	/* The slow link that makes hybrid switch to post-copy (above). */
	mig_case_init(&c, "uniform", 32 * MIB);
	c.dest_no_postcopy = true;
	c.cfg.mode = HMIG_MODE_HYBRID;
	c.cfg.rate_limit_bps = 24 * MIB;
	c.cfg.downtime_target_ms = 50;
	mig_run(&c, &r);
	assert_migrated(&r, "hybrid without post-copy");
	cr_assert_gt(rep_u64(r.src, "bytes.stopcopy"), 0, "hybrid did not stop and copy");
	cr_assert_eq(rep_u64(r.dst, "pages.pulled") + rep_u64(r.dst, "pages.pushed"), 0);
	json_t *pa = json_object_get(r.src, "postcopy_available");
	cr_assert(pa && json_is_false(pa), "the source report does not say post-copy was unavailable");
	mig_result_free(&r);
}

/* Post-copy with nothing sent before the switch and no pusher: every page
 * is pulled, so post-copy lasts for seconds. */
static void pulls_only(struct mig_case *c)
{
	need_uffd();
	mig_case_init(c, "uniform:rate=2000", 64 * MIB);
	c->cfg.mode = HMIG_MODE_POSTCOPY;
	c->cfg.precopy_passes = 0;
	c->cfg.push = HMIG_PUSH_OFF;
}

/* The source dies in post-copy: the destination must fail loudly, never
 * report success with pages missing. */
Test(engine, source_lost_in_postcopy_fails_the_destination, .timeout = 120)
{
	struct mig_case c;
	struct mig_result r;

	pulls_only(&c);
	c.cfg.recover_timeout_ms = 2000; /* it waits that long for the source to come back */
	c.kill_src_after_s = 1.5;
	mig_run(&c, &r);
	cr_assert_eq(r.dst_status, 1, "destination exited %d", r.dst_status);
	cr_assert(r.have_dst);
	cr_assert_str_eq(rep_str(r.dst, "result"), "failed");
	const char *e = rep_str(r.dst, "error");
	cr_assert(strstr(e, "missing"), "error does not say pages are missing: %s", e);
	mig_result_free(&r);
}

/* The destination's guest dies in post-copy (a fake fault reader says so,
 * as the Xen backend does for a crashed domain): the destination fails and
 * says why, and the source, committed, fails at once with that line
 * instead of waiting recover_timeout_ms (10 minutes by default) for a
 * destination that will not come back. */
Test(engine, a_destination_that_fails_in_postcopy_fails_the_source_at_once, .timeout = 60)
{
	struct mig_case c;
	struct mig_result r;

	pulls_only(&c);
	c.dest_guest_dies = true;
	mig_run(&c, &r);
	cr_assert_eq(r.dst_status, 1, "destination exited %d", r.dst_status);
	cr_assert_lt(r.src_rc, 0, "the source succeeded");
	cr_assert(strstr(r.src_err, "the destination failed") &&
		  strstr(r.src_err, "fake: the guest died during post-copy") &&
		  !strchr(r.src_err, '\n'),
		  "the source's line does not quote the destination's failure: %s", r.src_err);
	cr_assert_eq(rep_u64(r.src, "recoveries"), 0, "the source tried to recover");
	mig_result_free(&r);
}

/* A guest with pfns that never move (Xen has memory holes and host-owned
 * pages): no pass sends them, the destination counts them present from the
 * start, and every mode still completes with integrity ok. */
Test(engine, pfns_that_never_move_stay_put_in_every_mode, .timeout = 180)
{
	static const enum hmig_mode modes[] = { HMIG_MODE_PRECOPY, HMIG_MODE_POSTCOPY,
						HMIG_MODE_HYBRID };
	const uint64_t holes = 100;

	need_uffd();
	for (int m = 0; m < 3; m++) {
		struct mig_case c;
		struct mig_result r;

		mig_case_init(&c, "uniform:rate=20000", 32 * MIB);
		c.holes = holes;
		c.cfg.mode = modes[m];
		mig_run(&c, &r);
		assert_migrated(&r, hmig_mode_name(modes[m]));
		uint64_t npages = rep_u64(r.src, "guest.pages");
		cr_assert_eq(rep_u64(r.src, "passes[0].pages_sent"), npages - holes,
			     "%s: pass 0 sent the holes", hmig_mode_name(modes[m]));
		cr_assert_leq(rep_u64(r.src, "switchover.stale_pages"), npages - holes);
		mig_result_free(&r);
	}
	/* Post-copy with nothing sent first pushes or pulls all but the holes. */
	struct mig_case c;
	struct mig_result r;
	mig_case_init(&c, "uniform:rate=20000", 32 * MIB);
	c.holes = holes;
	c.cfg.mode = HMIG_MODE_POSTCOPY;
	c.cfg.precopy_passes = 0;
	mig_run(&c, &r);
	assert_migrated(&r, "postcopy, 0 passes, holes");
	uint64_t npages = rep_u64(r.src, "guest.pages");
	cr_assert_eq(rep_u64(r.src, "switchover.stale_pages"), npages - holes);
	cr_assert_eq(rep_u64(r.dst, "pages.pulled") + rep_u64(r.dst, "pages.pushed"),
		     npages - holes);
	mig_result_free(&r);
}
