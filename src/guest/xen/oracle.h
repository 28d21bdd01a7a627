/* The Xen backend's oracle, the parts that need no Xen: pure C11, so the
 * host tests check them without a hypervisor (tests/xen/test_oracle.c).
 *
 * Level 1 is guest-agnostic: a 32-bit digest of every frame, taken on the
 * source at the pause and checked on the destination before it unpauses
 * (xen_frame_digest here; the passes over memory are in save.c/restore.c).
 *
 * Level 2 is hmigt's replay (src/guest/xen/hmigt_layout.h): with the guest
 * paused, replay its ops from the seed and compare every data page byte for
 * byte, allowing the one write a pause may interrupt.  It reads guest memory
 * through a small mapper, so the backend (foreign mappings) and the test
 * bed's hmigt-check share it.
 */
#ifndef HMIG_GUEST_XEN_ORACLE_H
#define HMIG_GUEST_XEN_ORACLE_H

#include <stddef.h>
#include <stdint.h>

#include "hmigt_layout.h"

/* A 64-bit hash of len bytes (frame lists, CPU policies): equal inputs give
 * equal hashes on every host; not cryptographic. */
uint64_t xen_hash64(const void *p, size_t len, uint64_t seed);

/* The level-1 digest of one 4 KiB frame. */
uint32_t xen_frame_digest(const void *page);

/* Read-only access to guest memory by gfn, for the replay. */
struct hmigt_mem {
	/* Maps n (<= HMIGT_MAP_MAX) consecutive gfns from `gfn`: a pointer to
	 * n * 4096 bytes, or NULL with a negative errno in *rc and one line
	 * in err (256 bytes). */
	const void *(*map)(void *ctx, uint64_t gfn, uint32_t n, int *rc, char *err);
	void (*unmap)(void *ctx, const void *p, uint32_t n);
	void *ctx;
};

#define HMIGT_MAP_MAX 1024u /* pages a batch: libxc's save uses the same */

/* What a replay found (also on failure, as far as it got). */
struct hmigt_verdict {
	struct hmigt_ctl ctl;  /* the control page as read */
	long inflight;         /* hmigt_inflight_pfn()'s answer */
	uint64_t pages;        /* data pages compared */
};

/* Checks a paused hmigt against the replay rule; min_ops is the ops_done
 * the guest had when it was paused on its source (0 when unknown): a
 * migrated guest may have done more since, never fewer.  Returns
 * 0         every page, the version table and the counters fit;
 * -ENODATA  no hmigt control page (another guest, or not started yet);
 * -EBADMSG  a mismatch, the first named in err (gfn, data page, word);
 * -ENOMEM, or the mapper's error. */
int hmigt_replay_check(const struct hmigt_mem *mem, uint64_t min_ops, struct hmigt_verdict *v,
		       char *err);

#endif
