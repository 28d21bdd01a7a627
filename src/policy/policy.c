#include <math.h>

#include "policy/policy.h"

double policy_downtime_ms(const struct hmig_pass_stats *p)
{
	if (p->bandwidth_bps <= 0)
		return INFINITY;
	return (double)p->dirty_pages * p->page_size / p->bandwidth_bps * 1000.0;
}

/* Where a bounded pre-copy goes when it gives up: precopy pauses and copies
 * whatever is left (long downtime, but nothing else is allowed); postcopy and
 * hybrid resume on the destination at once and pull the rest. */
static enum hmig_decision give_up(const struct hmig_config *cfg)
{
	return cfg->mode == HMIG_MODE_PRECOPY ? HMIG_DECIDE_STOPCOPY : HMIG_DECIDE_POSTCOPY;
}

enum hmig_decision hmig_stop_rule_default(const struct hmig_config *cfg,
					  const struct hmig_pass_stats *p,
					  enum hmig_reason *reason, void *data)
{
	(void)data;
	/* Converged: the rest fits the downtime target.  Stop-and-copy then
	 * costs less than any fault would -- except in postcopy mode, which the
	 * operator chose to get post-copy (to measure pull against push). */
	if (p->dirty_pages <= cfg->dirty_threshold_pages ||
	    policy_downtime_ms(p) <= cfg->downtime_target_ms) {
		*reason = HMIG_REASON_CONVERGED;
		return cfg->mode == HMIG_MODE_POSTCOPY ? HMIG_DECIDE_POSTCOPY : HMIG_DECIDE_STOPCOPY;
	}
	if (p->operator_forced ||
	    (cfg->switch_after_ms > 0 && p->elapsed_ms >= cfg->switch_after_ms)) {
		*reason = HMIG_REASON_FORCED;
		return give_up(cfg);
	}
	/* Passes after pass 0 that are allowed: max_passes counts pass 0. */
	uint32_t max = cfg->mode == HMIG_MODE_POSTCOPY ? cfg->precopy_passes : cfg->max_passes;
	if (p->pass + 1 >= max) {
		*reason = HMIG_REASON_MAX_PASSES;
		return give_up(cfg);
	}
	if (cfg->byte_budget > 0 &&
	    (double)p->bytes_sent >= cfg->byte_budget * (double)p->guest_bytes) {
		*reason = HMIG_REASON_BYTE_BUDGET;
		return give_up(cfg);
	}
	/* Not shrinking by min_progress: the pass dirtied nearly as many pages
	 * as it sent, so the next pass, sending those, would dirty as many
	 * again.  Pass 0 counts too: a guest that rewrites its memory faster
	 * than pass 0 sends it will not converge in pass 1 either. */
	if (cfg->min_progress > 0 && p->pages_sent &&
	    (double)p->dirty_pages > (1.0 - cfg->min_progress) * (double)p->pages_sent) {
		*reason = HMIG_REASON_NO_PROGRESS;
		return give_up(cfg);
	}
	return HMIG_DECIDE_PASS;
}

const char *policy_decision_name(enum hmig_decision d)
{
	switch (d) {
	case HMIG_DECIDE_PASS: return "pass";
	case HMIG_DECIDE_STOPCOPY: return "stopcopy";
	case HMIG_DECIDE_POSTCOPY: return "postcopy";
	}
	return "?";
}
