/* The Xen backend's private parts, shared by common.c (opening, the frame
 * list, what both sides do), save.c (the source) and restore.c (the
 * destination).  docs/architecture.md, "The xen guest", says what it does
 * and why; include/hmig/xen.h is its public face.
 *
 * Xen's headers need GNU C (xen/foreign/x86_64.h defines __align8__ only
 * without __STRICT_ANSI__): the files that include this one are built with
 * c_std=gnu11 (meson.build).
 */
#ifndef HMIG_GUEST_XEN_BACKEND_H
#define HMIG_GUEST_XEN_BACKEND_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include <xenctrl.h>
#include <xenevtchn.h>
#include <xenforeignmemory.h>
#include <xen/vm_event.h>

#include <hmig/xen.h>

#include "guest/xen/oracle.h"
#include "guest/xen/state.h"

#define XEN_PAGE 4096u
#define XEN_BATCH 1024u /* frames per foreign mapping, as Xen's own save does */

/* libxenctrl and libxenforeignmemory print their errors to stderr unless
 * given a logger; the library may not print, so this one keeps the last
 * error line for the message hmig writes instead. */
struct xen_log {
	xentoollog_logger xtl; /* first: the libraries hold a pointer to it */
	pthread_mutex_t lock;
	char last[160];
};

/* A destination frame's state (restore.c, paging.c).  Before start the
 * engine's present set decides what an install does; the backend keeps
 * these to know what Xen holds:
 *
 *   XF_STALE    populated, with bytes the source did not send (the domain
 *               builder's, or a copy the source rewrote since): made
 *               missing when post-copy begins
 *   XF_PRESENT  populated with what the source sent
 *   XF_EVICTED  paged out: Xen holds no page; a touch is a paging request
 */
enum { XF_STALE, XF_PRESENT, XF_EVICTED };

/* A paging request not answered yet: its frame is on its way. */
struct xen_parked {
	uint64_t pfn;
	uint32_t vcpu, flags;
	uint64_t t_ns; /* when it was read off the ring */
};

/* The mem_paging ring of a destination (paging.c). */
struct xen_paging {
	xenevtchn_handle *xce;   /* from open: its fd is the fault fd */
	bool on;                 /* enabled on the domain */
	bool bound, ring_hidden;
	xen_pfn_t ring_gfn;
	void *ring;              /* our mapping of the ring page */
	vm_event_back_ring_t back;
	evtchn_port_t lport;
	struct xen_parked *parked; /* at most `slots`: each holds a ring slot */
	uint32_t nparked, slots;
	/* under pg_lock */
	uint64_t requests, foreign, odd, answered;
	uint64_t wait_max_ns, wait_max_gfn; /* the longest a parked request waited */
	/* the fault thread's */
	uint64_t t_alive;                   /* last look at the domain's state */
	unsigned long paged_at_end;
};

struct xen_guest {
	struct hmig_guest base;
	uint32_t domid;
	bool is_dest;
	struct hmig_xen_options opts;
	struct xen_log log;
	xc_interface *xch;
	xenforeignmemory_handle *fmem;
	uint32_t nvcpus;
	unsigned long nr_pages;  /* the domain's page count at open: the layout guard */
	xen_pfn_t nr_gpfns;      /* size of its physical address space */

	/* The frame list: hmig's pfn i is gfn[i], every populated RAM gfn in
	 * ascending order (holes are not in it); `never` marks the pfns whose
	 * gfn the host owns (HVM params name them), which never move. */
	uint64_t frames;
	xen_pfn_t *gfn;
	uint64_t *never;
	uint64_t never_count;
	uint64_t fingerprint, never_fingerprint, policy_hash;

	/* hmigt's control page, mapped read-only for stats (NULL when the
	 * frame list has no gfn HMIGT_CTL_GFN). */
	const volatile struct hmigt_ctl *ctl;
	uint64_t ops_base; /* hmigt's ops_done when the guest began on this host */

	bool paused;       /* this handle holds a pause of the domain */

	/* Source: log-dirty. */
	bool logdirty;
	xc_hypercall_buffer_t dirty_hbuf;
	int dirty_hbuf_pages;

	/* Destination. */
	bool prepared, restored, started;
	uint32_t *digest;   /* the source's level-1 digests, or NULL */
	/* Every frame, mapped writable once at open and in pfn order, until
	 * start: an install is then a memcpy.  Mapping per install cost about
	 * 0.5 ms a run under the test bed's TCG, and the stale pages of the
	 * stop-and-copy are runs of one page, inside the downtime. */
	uint8_t *frames_map;

	/* Destination post-copy: Xen's mem_paging (paging.c).  paging_rc is
	 * 0 when the hypervisor has it, -EOPNOTSUPP with paging_why when not
	 * (probed at open). */
	int paging_rc;
	char paging_why[256];
	uint8_t *fstate;            /* per frame, XF_*; after start under pg_lock */
	pthread_mutex_t pg_lock;
	struct xen_paging pg;
	uint64_t digest_bad, digest_first_bad; /* level 1 on frames loaded after start */

	pthread_mutex_t lock; /* xs */
	struct hmig_xen_stats xs;
};

static inline struct xen_guest *to_xen(struct hmig_guest *g)
{
	return (struct xen_guest *)g;
}

/* common.c */
int xen_open(uint32_t domid, const struct hmig_xen_options *opts, bool is_dest,
	     struct xen_guest **out, char *errbuf);
int xen_fail(struct xen_guest *x, int rc, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
int xen_getinfo(struct xen_guest *x, xc_dominfo_t *info);
/* -ESRCH with a line when the domain shut down or crashed; `when` ("" or
 * "during pre-copy", ...) goes into the line. */
int xen_check_alive(struct xen_guest *x, const xc_dominfo_t *info, const char *when);
int xen_hvm_context(struct xen_guest *x, uint8_t **ctx, uint32_t *len);
int xen_cpu_policy_hash(struct xen_guest *x, uint64_t *hash);
/* Maps n <= XEN_BATCH gfns, or frames [pfn, pfn + n), with prot, each page
 * after the other: NULL with *rc and the guest's error line on failure.
 * Unmap with xenforeignmemory_unmap(x->fmem, p, n). */
void *xen_map_gfns(struct xen_guest *x, const xen_pfn_t *gfns, uint32_t n, int prot, int *rc);
void *xen_map_frames(struct xen_guest *x, uint64_t pfn, uint32_t n, int prot, int *rc);
/* The destination's whole-guest mapping (restore.c): map at open, drop at
 * start. */
int xen_map_all(struct xen_guest *x);
void xen_unmap_all(struct xen_guest *x);
/* Calls fn for every frame but the never-sent ones, read-only, in pfn order,
 * until fn returns non-zero (returned).  A pass over the guest's memory. */
int xen_each_frame(struct xen_guest *x, int (*fn)(void *ctx, uint64_t pfn, const void *page),
		   void *ctx);
extern const struct hmig_guest_ops xen_ops;

/* The 16 HVM params Xen's own save carries (xg_sr_save_x86_hvm.c). */
#define XEN_SAVED_PARAMS 16
struct xen_param_info {
	uint32_t index;
	const char *name;
	bool places_page; /* names a page the host owns: must agree, never set */
};
extern const struct xen_param_info xen_saved_params[XEN_SAVED_PARAMS];
/* One of them by index, or NULL. */
const struct xen_param_info *xen_param(uint32_t index);

/* save.c: the source's members */
int xen_run(struct hmig_guest *g);
int xen_pages_map(struct hmig_guest *g, const uint64_t *pfns, uint32_t n, const void **ptrs);
void xen_pages_unmap(struct hmig_guest *g, const uint64_t *pfns, uint32_t n, const void **ptrs);
int xen_dirty_start(struct hmig_guest *g, enum hmig_dirty_mode want);
int64_t xen_dirty_collect(struct hmig_guest *g, uint64_t *bitmap, unsigned flags);
int xen_dirty_stop(struct hmig_guest *g);
int xen_vcpu_save(struct hmig_guest *g, void **blob, size_t *len);

/* restore.c: the destination's members */
int xen_dest_prepare(struct hmig_guest *g, const struct hmig_guest_geometry *geo);
int xen_page_install(struct hmig_guest *g, uint64_t pfn, uint32_t n, const void *data,
		     unsigned flags);
int64_t xen_pages_drop(struct hmig_guest *g, const uint64_t *bitmap);
int xen_fault_fd(struct hmig_guest *g);
int xen_faults_read(struct hmig_guest *g, uint64_t *pfns, uint32_t max);
int xen_faults_done(struct hmig_guest *g);
int xen_vcpu_restore(struct hmig_guest *g, const void *blob, size_t len);
int xen_start(struct hmig_guest *g);
int xen_dest_check_fresh(struct xen_guest *x);
/* The prearm option: paging on and every frame evicted, at open. */
int xen_prearm(struct xen_guest *x);

/* paging.c: the mem_paging ring (each says when it may be called). */
uint64_t xen_pfn_of_gfn(const struct xen_guest *x, xen_pfn_t gfn); /* common.c; UINT64_MAX none */
/* At open: does the hypervisor have mem_paging?  Sets paging_rc/why. */
int xen_paging_probe(struct xen_guest *x);
/* At open: the event channel handle whose fd is the fault fd. */
int xen_paging_open_fd(struct xen_guest *x);
/* Before the first eviction, the domain paused and no frame mapped. */
int xen_paging_enable(struct xen_guest *x);
/* nominate + evict, or load, one frame. */
int xen_paging_evict(struct xen_guest *x, uint64_t pfn);
int xen_paging_load(struct xen_guest *x, uint64_t pfn, const void *page);
/* Under pg_lock: the longest any request waited for its frame so far. */
void xen_paging_waits(struct xen_guest *x, double *max_ms, uint64_t *gfn);
/* Under pg_lock: pfn is loaded; answers the requests parked on it. */
void xen_paging_loaded(struct xen_guest *x, uint64_t pfn);
/* The fault thread: new requests, their pfns (faults_read). */
int xen_paging_read(struct xen_guest *x, uint64_t *pfns, uint32_t max);
/* Every frame present: paging off, ring page back, nr_paged_pages 0. */
int xen_paging_disable(struct xen_guest *x);
/* destroy: drops the handles, leaves paging on if it still is. */
void xen_paging_close(struct xen_guest *x);

#endif
