/* Two-process migrations for the engine tests: the destination runs in a
 * forked child (its own address space, its own userfaultfd), the source in
 * the test process, over loopback TCP.  Both reports come back parsed. */
#ifndef HMIG_TESTS_ENGINE_HARNESS_H
#define HMIG_TESTS_ENGINE_HARNESS_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <hmig/hmig.h>
#include <hmig/synth.h>

#include "doc.h"
#include "relay.h"

struct mig_case {
	struct hmig_synth_params guest;
	struct hmig_config cfg;
	double warmup_s;      /* source guest runs this long first */
	double run_after_s;   /* destination guest runs this long before the oracle */
	double kill_dest_after_s; /* > 0: SIGKILL the destination this long after connect */
	double kill_src_after_s;  /* > 0: the source runs in a child, SIGKILLed this long
				   * after it starts; only the destination reports */
	uint64_t holes;           /* pfns the guest never moves, on both sides (synth's
				   * test holes, as Xen's memory holes) */
	struct relay_plan relay;  /* set: the source connects through a relay that
				   * flips one bit of the bulk stream (relay.h) */
	const char *stranger_psk; /* set: before the source, a stranger source with
				   * this key tries the destination (and must fail) */
	bool dest_no_postcopy;    /* the destination's guest is a fake: synth whose
				   * fault_fd says -EOPNOTSUPP, as a backend that cannot
				   * leave pages missing (Xen before mem_paging) */
	bool dest_guest_dies;     /* the destination's guest is a fake: synth whose
				   * faults_read fails with -ESRCH (the guest died)
				   * once post-copy has begun */
};

struct mig_result {
	int src_rc;               /* hmig_source_run */
	char src_err[256];
	int dst_status;           /* child exit status; -signal if killed */
	json_t *src, *dst;        /* reports (dst NULL when the child died) */
	bool have_src, have_dst;
	uint64_t src_ops_after;   /* source guest ops in 200 ms after the run */
	int stranger_rc;          /* the stranger's hmig_source_run */
	char stranger_err[256];
	int flips;                /* relay: bits flipped (0 or 1) ... */
	uint64_t flipped_pfn;     /* ... in this page's data (UINT64_MAX: none) */
};

void mig_case_init(struct mig_case *c, const char *workload, uint64_t mem);
void mig_run(const struct mig_case *c, struct mig_result *r);
void mig_result_free(struct mig_result *r);

/* Skips the test when userfaultfd is unavailable. */
void need_uffd(void);

/* A report's value at path, asserting it is there. */
uint64_t rep_u64(const json_t *r, const char *path);
double rep_num(const json_t *r, const char *path);
const char *rep_str(const json_t *r, const char *path);

/* Both sides say ok and the destination's oracle agrees. */
void assert_migrated(struct mig_result *r, const char *what);

#endif
