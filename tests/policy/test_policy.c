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
};

/* 1 GB/s: 300 ms of downtime holds ~73k pages. */
#define BW 1e9

static struct row rows[] = {
	{ "few dirty pages converge", HMIG_MODE_PRECOPY, 5, 0, 0.1, 0, 0,
	  1, 40, 5000, GIB + 1, BW, 100, false, HMIG_DECIDE_STOPCOPY, HMIG_REASON_CONVERGED },
	{ "dirty set fits downtime", HMIG_MODE_HYBRID, 5, 0, 0.1, 0, 0,
	  1, 60000, 70000, GIB, BW, 100, false, HMIG_DECIDE_STOPCOPY, HMIG_REASON_CONVERGED },
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
	  0, 200000, PAGES_1G, GIB, BW, 400, false, HMIG_DECIDE_PASS, HMIG_REASON_NONE },
	{ "postcopy mode switches after its passes", HMIG_MODE_POSTCOPY, 5, 1, 0, 0, 0,
	  0, 200000, PAGES_1G, GIB, BW, 100, false, HMIG_DECIDE_POSTCOPY, HMIG_REASON_MAX_PASSES },
	{ "postcopy mode stays post-copy when converged", HMIG_MODE_POSTCOPY, 5, 1, 0, 0, 0,
	  0, 10, PAGES_1G, GIB, BW, 100, false, HMIG_DECIDE_POSTCOPY, HMIG_REASON_CONVERGED },
	{ "converged beats forced", HMIG_MODE_HYBRID, 5, 0, 0, 0, 0,
	  0, 10, PAGES_1G, GIB, BW, 100, true, HMIG_DECIDE_STOPCOPY, HMIG_REASON_CONVERGED },
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
		.operator_forced = r->forced,
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
	cr_assert(strstr(err, "warp") && strstr(err, "max_passes"), "%s", err);
	cr_assert_eq(hmig_config_set(&cfg, "mode", "teleport", err), -EINVAL);
	cr_assert(strstr(err, "teleport"), "%s", err);
}
