#include <math.h>

#include "policy/policy.h"

/* Hybrid mode never chooses a stop-and-copy that would keep the guest
 * paused longer than a post-copy switch does: the switch costs about 1 ms
 * of downtime here (settle has dropped the stale copies before the pause),
 * and after it the guest runs while the rest arrives.  So in hybrid mode
 * "converged" means the rest fits HYBRID_STOPCOPY_MS, whatever larger
 * downtime_target_ms says; precopy mode keeps the knob's 300 ms (QEMU's
 * default), because it has no switch to prefer. */
#define HYBRID_STOPCOPY_MS 1.0

/* Hybrid mode's byte budget, in guest sizes, when byte_budget is 0: the
 * target of issue 11.  Pre-copy that would send more than this to converge
 * is abandoned for post-copy as soon as that is foreseen. */
#define HYBRID_BYTES 1.3

double policy_downtime_ms(const struct hmig_pass_stats *p)
{
	if (p->bandwidth_bps <= 0)
		return INFINITY;
	return (double)p->dirty_pages * p->page_size / p->bandwidth_bps * 1000.0;
}

double policy_precopy_forecast(const struct hmig_pass_stats *p)
{
	double pages_per_s = p->bandwidth_bps / p->page_size;

	if (pages_per_s <= 0 || !p->guest_bytes)
		return INFINITY;
	/* Each later pass resends what the one before let the guest dirty:
	 * pages dirtied at r while sending at b, a geometric series of ratio
	 * r/b, which diverges when r >= b.  The rest of this pass is sent
	 * once, and lets the guest dirty its share meanwhile. */
	double ratio = p->dirty_rate_pps / pages_per_s;
	if (ratio >= 1)
		return INFINITY;
	double rest = p->pages_planned > p->pages_sent ? (double)(p->pages_planned - p->pages_sent) : 0;
	double again = ((double)p->redirtied + ratio * rest) / (1 - ratio);
	return ((double)p->bytes_sent + (rest + again) * p->page_size) / (double)p->guest_bytes;
}

/* Where a bounded pre-copy goes when it gives up: precopy pauses and copies
 * whatever is left (long downtime, but nothing else is allowed); postcopy and
 * hybrid resume on the destination at once and pull the rest. */
static enum hmig_decision give_up(const struct hmig_config *cfg)
{
	return cfg->mode == HMIG_MODE_PRECOPY ? HMIG_DECIDE_STOPCOPY : HMIG_DECIDE_POSTCOPY;
}

static bool forced(const struct hmig_config *cfg, const struct hmig_pass_stats *p)
{
	return p->operator_forced ||
	       (cfg->switch_after_ms > 0 && p->elapsed_ms >= cfg->switch_after_ms);
}

/* In the middle of a pass (hybrid mode): go on, unless the operator asks,
 * or pre-copy is foreseen never to converge within the byte budget -- a
 * guest rewriting memory faster than the link drains it.  Then switch now:
 * every page sent after this would be sent again. */
static enum hmig_decision mid_pass(const struct hmig_config *cfg, const struct hmig_pass_stats *p,
				   enum hmig_reason *reason)
{
	double budget = cfg->byte_budget > 0 ? cfg->byte_budget : HYBRID_BYTES;

	if (forced(cfg, p)) {
		*reason = HMIG_REASON_FORCED;
		return HMIG_DECIDE_POSTCOPY;
	}
	if (policy_precopy_forecast(p) > budget) {
		*reason = HMIG_REASON_NO_PROGRESS;
		return HMIG_DECIDE_POSTCOPY;
	}
	return HMIG_DECIDE_PASS;
}

enum hmig_decision hmig_stop_rule_default(const struct hmig_config *cfg,
					  const struct hmig_pass_stats *p,
					  enum hmig_reason *reason, void *data)
{
	(void)data;
	if (p->mid_pass)
		return cfg->mode == HMIG_MODE_HYBRID ? mid_pass(cfg, p, reason) : HMIG_DECIDE_PASS;
	/* Converged: the rest fits the downtime target.  Stop-and-copy then
	 * costs less than any fault would -- except in postcopy mode, which the
	 * operator chose to get post-copy (to measure pull against push). */
	double target = cfg->downtime_target_ms;
	if (cfg->mode == HMIG_MODE_HYBRID && target > HYBRID_STOPCOPY_MS)
		target = HYBRID_STOPCOPY_MS;
	if (p->dirty_pages <= cfg->dirty_threshold_pages || policy_downtime_ms(p) <= target) {
		*reason = HMIG_REASON_CONVERGED;
		return cfg->mode == HMIG_MODE_POSTCOPY ? HMIG_DECIDE_POSTCOPY : HMIG_DECIDE_STOPCOPY;
	}
	if (forced(cfg, p)) {
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
	/* Hybrid: converging would cost more bytes than post-copy now. */
	if (cfg->mode == HMIG_MODE_HYBRID &&
	    policy_precopy_forecast(p) > (cfg->byte_budget > 0 ? cfg->byte_budget : HYBRID_BYTES)) {
		*reason = HMIG_REASON_BYTE_BUDGET;
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
