/* When pre-copy stops, and what comes next.
 *
 * Pure: the decision is a function of the knobs and the statistics of the
 * pass that just ended (Xen's migration v2 keeps its stop rule the same way,
 * as a callback with no I/O).  No clock, no context, no I/O; the engine
 * measures and passes the figures in.  Tests are tables (tests/policy).
 */
#ifndef HMIG_POLICY_POLICY_H
#define HMIG_POLICY_POLICY_H

#include <stdbool.h>
#include <stdint.h>

#include <hmig/hmig.h>

/* The built-in stop rule is hmig_stop_rule_default (include/hmig/hmig.h),
 * over struct hmig_pass_stats, returning an enum hmig_decision. */

/* The stop-and-copy downtime the remaining dirty set would cost, in ms, at the
 * bandwidth measured (infinity when the bandwidth is unknown). */
double policy_downtime_ms(const struct hmig_pass_stats *p);

/* Guest sizes pre-copy would have sent once it converges, foreseen from the
 * pass's figures: what went out, what the pass still has to send, and the
 * passes after it at the measured dirty rate and bandwidth.  Infinity when
 * the guest dirties as fast as the link sends (it never converges) or a
 * figure is missing. */
double policy_precopy_forecast(const struct hmig_pass_stats *p);

const char *policy_decision_name(enum hmig_decision d);

#endif
