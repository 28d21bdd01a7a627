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

enum policy_decision {
	POLICY_PASS,     /* run another pre-copy pass */
	POLICY_STOPCOPY, /* pause and send the rest before the destination resumes */
	POLICY_POSTCOPY, /* pause, move the vCPUs, pull the rest after resume */
};

/* What the engine knows when a pass ends. */
struct policy_pass {
	uint32_t pass;          /* the pass that just ended, 0-based */
	uint64_t dirty_pages;   /* pages dirtied during it: the next pass's work */
	uint64_t pages_sent;    /* pages the pass sent (pass 0: every page) */
	uint64_t bytes_sent;    /* all bytes sent so far, every pass */
	uint64_t guest_bytes;   /* npages * page_size */
	uint32_t page_size;
	double bandwidth_bps;   /* bytes/s measured over this pass; 0 if unknown */
	double elapsed_ms;      /* since the migration started */
	bool operator_forced;   /* the operator asked for the switch */
};

/* Decides what follows the pass and why (*reason, HMIG_REASON_*). */
enum policy_decision policy_decide(const struct hmig_config *cfg,
				   const struct policy_pass *p,
				   enum hmig_reason *reason);

/* The stop-and-copy downtime the remaining dirty set would cost, in ms, at the
 * bandwidth measured (infinity when the bandwidth is unknown). */
double policy_downtime_ms(const struct policy_pass *p);

const char *policy_decision_name(enum policy_decision d);

#endif
