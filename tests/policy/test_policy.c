/* The pre-copy stop rule, as a table: knobs + pass figures -> decision + reason. */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <errno.h>
#include <math.h>
#include <string.h>

#include "policy/policy.h"

#define GIB (1ull << 30)
#define PAGES_1G (GIB / 4096)

struct row {
	char name[48];
	enum hmig_mode mode;
	uint32_t max_passes, precopy_passes;
	double min_progress, byte_budget, switch_after_ms;
	/* the pass */
	uint32_t pass;
	uint64_t dirty, sent, bytes_sent;
	double bw_bps, elapsed_ms;
	bool forced;
	/* expected */
	enum hmig_decision want;
	enum hmig_reason why;
	/* the pass, continued: asked mid-pass, pages planned (0: as sent),
	 * re-dirtied (0: as dirty), the dirty rate */
	bool mid;
	uint64_t planned, redirtied;
	double rate_pps;
};

/* 1 GB/s: 300 ms of downtime holds ~73k pages. */
#define BW 1e9

static struct row rows[] = {
	{ "few dirty pages converge", HMIG_MODE_PRECOPY, 5, 0, 0.1, 0, 0,
	  1, 40, 5000, GIB + 1, BW, 100, false, HMIG_DECIDE_STOPCOPY, HMIG_REASON_CONVERGED },
	{ "dirty set fits downtime", HMIG_MODE_PRECOPY, 5, 0, 0.1, 0, 0,
	  1, 60000, 70000, GIB, BW, 100, false, HMIG_DECIDE_STOPCOPY, HMIG_REASON_CONVERGED },
	/* Hybrid never stops and copies for longer than a post-copy switch (1 ms). */
	{ "hybrid: 245 ms of stop-and-copy is not converged", HMIG_MODE_HYBRID, 5, 0, 0.1, 0, 0,
	  1, 60000, 70000, GIB, BW, 100, false, HMIG_DECIDE_PASS, HMIG_REASON_NONE },
	{ "hybrid: 0.8 ms of stop-and-copy is", HMIG_MODE_HYBRID, 5, 0, 0.1, 0, 0,
	  1, 200, 70000, GIB, BW, 100, false, HMIG_DECIDE_STOPCOPY, HMIG_REASON_CONVERGED },
	{ "no bandwidth figure: not converged", HMIG_MODE_PRECOPY, 5, 0, 0, 0, 0,
	  0, 60000, PAGES_1G, GIB, 0, 100, false, HMIG_DECIDE_PASS, HMIG_REASON_NONE },
	{ "shrinking: another pass", HMIG_MODE_PRECOPY, 5, 0, 0.1, 0, 0,
	  1, 100000, 200000, GIB, BW, 100, false, HMIG_DECIDE_PASS, HMIG_REASON_NONE },
	{ "precopy out of passes: stop-and-copy", HMIG_MODE_PRECOPY, 5, 0, 0, 0, 0,
	  4, 100000, 100000, 2 * GIB, BW, 100, false, HMIG_DECIDE_STOPCOPY, HMIG_REASON_MAX_PASSES },
	{ "hybrid out of passes: post-copy", HMIG_MODE_HYBRID, 5, 0, 0, 0, 0,
	  4, 100000, 100000, 2 * GIB, BW, 100, false, HMIG_DECIDE_POSTCOPY, HMIG_REASON_MAX_PASSES },
	{ "max_passes=1 stops after pass 0", HMIG_MODE_PRECOPY, 1, 0, 0, 0, 0,
	  0, 100000, PAGES_1G, GIB, BW, 100, false, HMIG_DECIDE_STOPCOPY, HMIG_REASON_MAX_PASSES },
	{ "no progress in hybrid: post-copy", HMIG_MODE_HYBRID, 5, 0, 0.1, 0, 0,
	  1, 95000, 100000, GIB, BW, 100, false, HMIG_DECIDE_POSTCOPY, HMIG_REASON_NO_PROGRESS },
	{ "no progress in precopy: stop-and-copy", HMIG_MODE_PRECOPY, 5, 0, 0.1, 0, 0,
	  2, 120000, 100000, GIB, BW, 100, false, HMIG_DECIDE_STOPCOPY, HMIG_REASON_NO_PROGRESS },
	{ "min_progress=0 never gives up on it", HMIG_MODE_PRECOPY, 5, 0, 0, 0, 0,
	  2, 120000, 100000, GIB, BW, 100, false, HMIG_DECIDE_PASS, HMIG_REASON_NONE },
	{ "pass 0 that dirtied a little: another pass", HMIG_MODE_HYBRID, 5, 0, 0.1, 0, 0,
	  0, 26000, PAGES_1G, GIB, BW, 100, false, HMIG_DECIDE_PASS, HMIG_REASON_NONE },
	/* Converging would resend 38% of the guest and more: over hybrid's 1.3. */
	{ "hybrid: pass 0 that dirtied 38%", HMIG_MODE_HYBRID, 5, 0, 0.1, 0, 0,
	  0, 100000, PAGES_1G, GIB, BW, 100, false, HMIG_DECIDE_POSTCOPY, HMIG_REASON_BYTE_BUDGET },
	{ "precopy: pass 0 that dirtied 38%", HMIG_MODE_PRECOPY, 5, 0, 0.1, 0, 0,
	  0, 100000, PAGES_1G, GIB, BW, 100, false, HMIG_DECIDE_PASS, HMIG_REASON_NONE },
	{ "pass 0 dirtied nearly all it sent", HMIG_MODE_HYBRID, 5, 0, 0.1, 0, 0,
	  0, 250000, PAGES_1G, GIB, BW, 100, false, HMIG_DECIDE_POSTCOPY, HMIG_REASON_NO_PROGRESS },
	{ "byte budget spent", HMIG_MODE_HYBRID, 9, 0, 0, 1.5, 0,
	  2, 100000, 100000, 2 * GIB, BW, 100, false, HMIG_DECIDE_POSTCOPY, HMIG_REASON_BYTE_BUDGET },
	{ "byte budget not yet spent", HMIG_MODE_HYBRID, 9, 0, 0, 3, 0,
	  2, 100000, 100000, 2 * GIB, BW, 100, false, HMIG_DECIDE_PASS, HMIG_REASON_NONE },
	{ "operator forces post-copy", HMIG_MODE_HYBRID, 5, 0, 0.1, 0, 0,
	  0, 200000, PAGES_1G, GIB, BW, 100, true, HMIG_DECIDE_POSTCOPY, HMIG_REASON_FORCED },
	{ "operator forces precopy to stop", HMIG_MODE_PRECOPY, 5, 0, 0.1, 0, 0,
	  0, 200000, PAGES_1G, GIB, BW, 100, true, HMIG_DECIDE_STOPCOPY, HMIG_REASON_FORCED },
	{ "switch_after_ms elapsed", HMIG_MODE_HYBRID, 5, 0, 0, 0, 500,
	  0, 200000, PAGES_1G, GIB, BW, 600, false, HMIG_DECIDE_POSTCOPY, HMIG_REASON_FORCED },
	{ "switch_after_ms not yet", HMIG_MODE_HYBRID, 5, 0, 0, 0, 500,
	  0, 20000, PAGES_1G, GIB, BW, 400, false, HMIG_DECIDE_PASS, HMIG_REASON_NONE },
	{ "postcopy mode switches after its passes", HMIG_MODE_POSTCOPY, 5, 1, 0, 0, 0,
	  0, 200000, PAGES_1G, GIB, BW, 100, false, HMIG_DECIDE_POSTCOPY, HMIG_REASON_MAX_PASSES },
	{ "postcopy mode stays post-copy when converged", HMIG_MODE_POSTCOPY, 5, 1, 0, 0, 0,
	  0, 10, PAGES_1G, GIB, BW, 100, false, HMIG_DECIDE_POSTCOPY, HMIG_REASON_CONVERGED },
	{ "converged beats forced", HMIG_MODE_HYBRID, 5, 0, 0, 0, 0,
	  0, 10, PAGES_1G, GIB, BW, 100, true, HMIG_DECIDE_STOPCOPY, HMIG_REASON_CONVERGED },
	/* Mid-pass (hybrid): 25k of 262k pages sent, at 1 GB/s = 244k pages/s. */
	{ "mid-pass: a writer faster than the link", HMIG_MODE_HYBRID, 5, 0, 0.1, 0, 0,
	  0, 30000, 25000, 100u << 20, BW, 100, false, HMIG_DECIDE_POSTCOPY,
	  HMIG_REASON_NO_PROGRESS, true, PAGES_1G, 12000, 2e6 },
	{ "mid-pass: 200k writes/s", HMIG_MODE_HYBRID, 5, 0, 0.1, 0, 0,
	  0, 20000, 25000, 100u << 20, BW, 100, false, HMIG_DECIDE_POSTCOPY,
	  HMIG_REASON_NO_PROGRESS, true, PAGES_1G, 1000, 2e5 },
	{ "mid-pass: 20k writes/s goes on", HMIG_MODE_HYBRID, 5, 0, 0.1, 0, 0,
	  0, 2000, 25000, 100u << 20, BW, 100, false, HMIG_DECIDE_PASS,
	  HMIG_REASON_NONE, true, PAGES_1G, 100, 2e4 },
	{ "mid-pass: precopy mode never decides", HMIG_MODE_PRECOPY, 5, 0, 0.1, 0, 0,
	  0, 30000, 25000, 100u << 20, BW, 100, true, HMIG_DECIDE_PASS,
	  HMIG_REASON_NONE, true, PAGES_1G, 12000, 2e6 },
	{ "mid-pass: the operator forces", HMIG_MODE_HYBRID, 5, 0, 0.1, 0, 0,
	  0, 2000, 25000, 100u << 20, BW, 100, true, HMIG_DECIDE_POSTCOPY,
	  HMIG_REASON_FORCED, true, PAGES_1G, 100, 2e4 },
	{ "mid-pass: 100k/s, budget 1.3: post-copy", HMIG_MODE_HYBRID, 5, 0, 0.1, 0, 0,
	  0, 20000, 25000, 100u << 20, BW, 100, false, HMIG_DECIDE_POSTCOPY,
	  HMIG_REASON_NO_PROGRESS, true, PAGES_1G, 1000, 1e5 },
	{ "mid-pass: 100k/s, budget 3: goes on", HMIG_MODE_HYBRID, 5, 0, 0.1, 3, 0,
	  0, 20000, 25000, 100u << 20, BW, 100, false, HMIG_DECIDE_PASS,
	  HMIG_REASON_NONE, true, PAGES_1G, 1000, 1e5 },
};

ParameterizedTestParameters(policy, decide)
{
	return cr_make_param_array(struct row, rows, sizeof(rows) / sizeof(rows[0]));
}

ParameterizedTest(struct row *r, policy, decide)
{
	struct hmig_config cfg;
	enum hmig_reason why = HMIG_REASON_NONE;

	hmig_config_init(&cfg);
	cfg.mode = r->mode;
	cfg.max_passes = r->max_passes;
	cfg.precopy_passes = r->precopy_passes;
	cfg.min_progress = r->min_progress;
	cfg.byte_budget = r->byte_budget;
	cfg.switch_after_ms = r->switch_after_ms;
	struct hmig_pass_stats p = {
		.pass = r->pass, .dirty_pages = r->dirty, .pages_sent = r->sent,
		.bytes_sent = r->bytes_sent, .guest_bytes = GIB, .page_size = 4096,
		.bandwidth_bps = r->bw_bps, .elapsed_ms = r->elapsed_ms,
		.operator_forced = r->forced, .mid_pass = r->mid,
		.pages_planned = r->planned ? r->planned : r->sent,
		.redirtied = r->mid ? r->redirtied : r->dirty, .dirty_rate_pps = r->rate_pps,
	};
	enum hmig_decision d = hmig_stop_rule_default(&cfg, &p, &why, NULL);

	cr_assert_eq(d, r->want, "%s: decided %s, want %s", r->name, policy_decision_name(d),
		     policy_decision_name(r->want));
	if (r->want != HMIG_DECIDE_PASS)
		cr_assert_eq(why, r->why, "%s: reason %s, want %s", r->name,
			     hmig_reason_name(why), hmig_reason_name(r->why));
}

Test(policy, downtime_estimate)
{
	struct hmig_pass_stats p = { .dirty_pages = 1000, .page_size = 4096, .bandwidth_bps = 4096e3 };

	cr_assert_float_eq(policy_downtime_ms(&p), 1000.0, 1e-9);
	p.bandwidth_bps = 0;
	cr_assert(isinf(policy_downtime_ms(&p)));
}

Test(policy, knobs_parse_and_refuse_by_name)
{
	struct hmig_config cfg;
	char err[256];

	hmig_config_init(&cfg);
	cr_assert_eq(cfg.max_passes, 5);
	cr_assert_eq(cfg.dirty_threshold_pages, 50);
	cr_assert_float_eq(cfg.downtime_target_ms, 300, 1e-9);
	cr_assert_eq(hmig_config_set(&cfg, "max_passes", "3", err), 0);
	cr_assert_eq(cfg.max_passes, 3);
	cr_assert_eq(hmig_config_set(&cfg, "mode", "precopy", err), 0);
	cr_assert_eq(cfg.mode, HMIG_MODE_PRECOPY);
	cr_assert_eq(hmig_config_set(&cfg, "max_passes", "0", err), -EINVAL);
	cr_assert(strstr(err, "max_passes"), "%s", err);
	cr_assert_eq(hmig_config_set(&cfg, "max_passes", "2.5", err), -EINVAL);
	cr_assert_eq(hmig_config_set(&cfg, "min_progress", "x", err), -EINVAL);
	cr_assert_eq(hmig_config_set(&cfg, "warp", "9", err), -EINVAL);
	cr_assert(strstr(err, "warp") && strstr(err, "hmig_config_knob_name"), "%s", err);
	cr_assert_str_eq(hmig_config_knob_name(1), "max_passes");
	cr_assert_eq(hmig_config_set(&cfg, "mode", "teleport", err), -EINVAL);
	cr_assert(strstr(err, "teleport"), "%s", err);
}
