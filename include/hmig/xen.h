/* xen: a Xen PVH domain as an hmig guest, driven from dom0.
 *
 * The source is a running domain; the destination is a domain the operator
 * created paused from the same configuration (`xl create -p`), which hmig
 * fills and unpauses.  hmig never creates, renames or destroys domains.
 * What the two domains must share, and what is not supported yet (PV and HVM
 * guests, guests that use event channels or PV devices, post-copy), is in
 * docs/xen.md; the backend's design is in docs/architecture.md.  Once opened,
 * a Xen guest is driven through the neutral ops table of <hmig/guest.h>.
 *
 * Needs dom0 and root (the privcmd device).  When hmig was built without Xen
 * (no libxen-dev), every function here returns -EOPNOTSUPP with the remedy.
 *
 * Errors: each function returns 0 or -errno with one line naming the problem
 * and its remedy in errbuf (256 bytes); an opener that fails sets *out to
 * NULL.
 */
#ifndef HMIG_XEN_H
#define HMIG_XEN_H

#include <stdbool.h>
#include <stdint.h>

#include <hmig/guest.h>

#ifdef __cplusplus
extern "C" {
#endif

/* What a Xen source guest does beyond moving memory. */
struct hmig_xen_options {
	/* The level-1 oracle: at the pause, a digest of every frame goes with
	 * the vCPU state (4 bytes a frame) and the destination checks its
	 * domain against it before unpausing.  Both passes over memory fall
	 * inside the downtime, so it is for tests, not for production or
	 * benchmarks.  Off by default. */
	bool digest;
	/* A destination's option: make every frame missing when it is opened
	 * (nominate + evict through Xen's mem_paging ring), before the source
	 * connects, instead of at the switch to post-copy, where the eviction
	 * falls inside the downtime.  For pure post-copy (mode postcopy,
	 * precopy_passes=0), where every frame is missing at the switch; a
	 * pre-copy pass then costs a hypercall per frame (xc_mem_paging_load
	 * instead of a write through one mapping).  Needs a hypervisor with
	 * mem_paging; the open fails without it.  Off by default. */
	bool prearm;
};

/* Opens running domain `domid` as a source guest for hmig_source_new.
 * opts NULL: the defaults.  Reads the domain's frame list (a pass over its
 * physical address space, before any pause).  -ESRCH no such domain;
 * -EOPNOTSUPP this host has no Xen (or hmig was built without it), or the
 * domain is not a PVH guest on HAP; -EACCES not root; -EINVAL domid 0. */
int hmig_xen_open(uint32_t domid, const struct hmig_xen_options *opts,
		  struct hmig_guest **out, char *errbuf);

/* Opens domain `domid` as the destination for hmig_dest_new: created with
 * `xl create -p` from the source's configuration, paused and never run.
 * opts NULL: the defaults (only prearm applies to a destination).  The
 * checks that need the source (memory, vCPUs, frame list, CPU policy) come
 * at dest_prepare and vcpu_restore; these are done here: -ESRCH, -EOPNOTSUPP
 * as for a source; -EBUSY the domain has run or is not paused; -EINVAL it
 * uses populate-on-demand (maxmem above memory). */
int hmig_xen_open_dest(uint32_t domid, const struct hmig_xen_options *opts,
		       struct hmig_guest **out, char *errbuf);

/* The Xen backend's own figures, beside the neutral hmig_guest_stats. */
struct hmig_xen_stats {
	uint32_t domid;
	uint64_t frames;          /* the frame list: guest pfns hmig numbers 0 .. frames-1 */
	uint64_t never_sent;      /* of them, pages the host owns (console, xenstore, ...) */
	bool hmigt;               /* the domain runs hmigt (tests/xen/hmigt), so the
				   * level-2 oracle applies */
	double open_ms;           /* opening it: the frame list, the host-owned pages,
				   * the CPU policy, and a destination's mapping */
	/* Level 1, the per-frame digest. */
	bool digest;              /* source: taken at the pause; destination: received */
	uint64_t digest_frames;   /* frames hashed (source) or checked (destination) */
	double digest_ms;         /* what that cost, inside the downtime */
	/* Level 2, hmigt's replay (the last verify that found hmigt). */
	uint64_t ops_at_pause;    /* hmigt's ops_done at the source's pause (the blob's) */
	uint64_t replay_ops;      /* ops_done the last verify replayed */
	uint64_t replay_pages;    /* data pages it compared byte for byte */
	double replay_ms;
	/* Post-copy on a destination, through Xen's mem_paging ring. */
	bool destination;         /* this is a destination: the fields below apply */
	bool paging_available;    /* the hypervisor has mem_paging (CONFIG_MEM_PAGING) */
	bool paging;              /* it was used: frames were left missing at start */
	uint64_t evicted;         /* frames made missing (nominate + evict) */
	double evict_ms;          /* what that cost in all */
	uint64_t loaded;          /* frames loaded after start (xc_mem_paging_load) */
	double load_ms;           /* what the loads cost in all */
	uint64_t requests;        /* paging requests read from the ring, answered once each */
	uint64_t foreign_requests;/* ... of them from a dom0 mapper, not a vCPU */
	double wait_max_ms;       /* the longest a request waited for its frame, one
				   * still waiting counted with its age so far */
	uint64_t wait_max_gfn;    /* ... and its gfn */
	double paging_off_ms;     /* turning it off once every frame was back */
};

/* Copies them into *st: 0, or -EINVAL for a guest of another backend (its
 * error line says so).  Any time, any thread. */
int hmig_xen_stats(struct hmig_guest *g, struct hmig_xen_stats *st);

#ifdef __cplusplus
}
#endif

#endif
