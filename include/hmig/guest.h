/* hmig guest backends: one ops table per backend, the engine never knows which.
 *
 * The shape follows Xen's xg_sr save/restore ops: every member says when it is
 * called, how often, and who owns what.  Members a backend cannot do return
 * -EOPNOTSUPP; none is ever NULL (tests/guest checks this for every backend).
 *
 * Threading: the engine calls every member from one thread at a time, except
 * pages_map (source) and page_install / faults_read (destination), which the
 * engine may call from its sender / fault-handler thread while another thread
 * uses the rest.  A backend's vCPU threads are its own business.
 *
 * Errors: members return 0 (or a count) on success and -errno on failure, with
 * a one-line message retrievable by hmig_guest_error().  -ESRCH means the
 * guest itself is gone (it shut down or crashed): the engine then does not
 * say that it runs on at the source.
 */
#ifndef HMIG_GUEST_H
#define HMIG_GUEST_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct hmig_guest;

struct hmig_guest_geometry {
	uint64_t npages;    /* pfns are 0 .. npages-1 */
	uint32_t page_size; /* bytes; 4096 for every backend so far */
	uint32_t nvcpus;
	/* The largest vCPU state (vcpu_save's blob, in bytes) this backend
	 * sends or accepts for this geometry: the VCPU_STATE record's limit on
	 * both sides, checked before the receiver allocates (the protocol caps
	 * it at 64 MiB whatever a backend says).  Filled by geometry(); not on
	 * the wire, since both sides run the same backend, so dest_prepare
	 * ignores it.  Declare a bound independent of the guest's memory size:
	 * the state is sent inside the downtime, and what grows with memory
	 * belongs in memory, where pre-copy moves it first. */
	uint32_t vcpu_state_max;
};

/* What every backend can tell of the guest's progress; the counters are
 * monotonic since the guest started running on this host (source or
 * destination), and 0 when the guest does not count them.  A backend's own
 * figures (an oracle's, a workload's latency) come from its own header. */
struct hmig_guest_stats {
	uint64_t ops;          /* operations the guest completed (reads + writes) */
	uint64_t writes;       /* page writes among them (what dirty logging sees) */
	char workload[128];    /* what runs, for reports (a workload spec) */
	/* Destination: the longest gap any vCPU saw across the migration, from
	 * its last operation on the source to its first one here, in ms (wall
	 * clocks: exact on one host, as good as the clocks' sync across two).
	 * NAN until every vCPU that ran on the source has run here, and for
	 * guests that cannot tell. */
	double blackout_ms;
};

/* How a backend tracks writes on the source. */
enum hmig_dirty_mode {
	HMIG_DIRTY_AUTO = 0,  /* best available */
	HMIG_DIRTY_WP_ASYNC,  /* userfaultfd async write-protect + PAGEMAP_SCAN */
	HMIG_DIRTY_WP_SYNC,   /* userfaultfd write-protect faults, handler thread */
	HMIG_DIRTY_BACKEND,   /* the hypervisor's own log (Xen log-dirty) */
};

/* page_install flags. */
#define HMIG_INSTALL_REPLACE 0x1u /* the pages are present: overwrite them */

/* dirty_collect flags. */
#define HMIG_COLLECT_FINAL 0x1u /* the guest is paused; the last collect */

struct hmig_guest_ops {
	const char *name; /* the backend's name, sent in HELLO ("xen") */

	/* ------------------------------------------------------------ both sides */

	/* Fills *geo, vcpu_state_max included.  Source: any time after
	 * creation.  Destination: after dest_prepare, with the geometry it was
	 * prepared for.  Never fails for a prepared guest. */
	int (*geometry)(struct hmig_guest *g, struct hmig_guest_geometry *geo);

	/* Marks the pfns that never move: ORs into `bitmap` (npages bits in
	 * 64-bit words, as dirty_collect's) every pfn this guest never sends
	 * as a source and never needs as a destination, and returns how many
	 * it marked, 0 for a guest with none.  These are holes in the pfn space
	 * and pages the destination host owns (a Xen guest's console and
	 * xenstore rings).  HELLO's npages counts them.
	 *
	 * When, how often, cost: the engine calls it once per migration on
	 * each side, the source after geometry and before dirty_start, the
	 * destination after dest_prepare and before the first page_install,
	 * and keeps the bitmap.  It may cost a pass over the pfn space, so it
	 * is never called per page.  The set is fixed from open (source) or
	 * dest_prepare (destination) until destroy: a backend whose layout
	 * changes under a migration fails the migration (at pause or
	 * vcpu_save).  The wire does not carry the set: each side computes it
	 * from its own guest, and a backend makes a destination that disagrees
	 * with its source fail by name (dest_prepare or vcpu_restore).
	 *
	 * The engine, in return, never moves one.  The source sends none in
	 * any pass or push, names none in STALE or DIRTY, and fails a REQUEST
	 * for one with -EPROTO.  The destination counts them present from the
	 * start (every other pfn present = complete), and never requests,
	 * installs or drops one.  The backend never reports one from
	 * dirty_collect or faults_read, and need not accept one in pages_map,
	 * page_install or pages_drop. */
	int64_t (*pfns_never_sent)(struct hmig_guest *g, uint64_t *bitmap);

	/* Copies the progress counters into *st.  Any time, any thread. */
	int (*stats)(struct hmig_guest *g, struct hmig_guest_stats *st);

	/* Integrity oracle.  Called with the guest paused (or never started), any
	 * number of times.  Returns 0 when every page equals what a run of the same
	 * operations without a migration would have produced, -EBADMSG naming the
	 * first mismatching pfn in the error text, -EOPNOTSUPP when the backend has
	 * no oracle (the report then says integrity "skipped"). */
	int (*verify)(struct hmig_guest *g);

	/* Frees everything, stopping vCPU threads first.  Called exactly once; the
	 * pointer is invalid afterwards. */
	void (*destroy)(struct hmig_guest *g);

	/* ---------------------------------------------------------- source side */

	/* Starts the vCPUs (a fresh guest runs its fill, then its workload).
	 * Called once on a source guest before anything is migrated. */
	int (*run)(struct hmig_guest *g);

	/* Points ptrs[i] at the current contents of page pfns[i] for reading, with
	 * no copy.  The pointers stay valid until pages_unmap with the same
	 * arrays, which must come before the next pages_map from the same thread.
	 * Contents may change under the reader while the guest runs; that is what
	 * dirty logging is for.  Called once per batch, up to `n` <= 1024. */
	int (*pages_map)(struct hmig_guest *g, const uint64_t *pfns, uint32_t n,
			 const void **ptrs);
	void (*pages_unmap)(struct hmig_guest *g, const uint64_t *pfns, uint32_t n,
			    const void **ptrs);

	/* Starts dirty logging: from the return on, every write to guest memory is
	 * reported by a later dirty_collect.  Called once before pass 0.  Returns
	 * the mode in use (enum hmig_dirty_mode, > 0) or -errno. */
	int (*dirty_start)(struct hmig_guest *g, enum hmig_dirty_mode want);

	/* ORs into `bitmap` (npages bits) every page written since the previous
	 * collect (or dirty_start) and re-arms logging for those pages, so a write
	 * that races with the collect is reported now or by the next collect,
	 * never lost.  Returns the number of pages it found (which may include
	 * pages already set in bitmap).  Called at least once per pass, and
	 * once more with the guest paused at switchover with HMIG_COLLECT_FINAL:
	 * nothing is collected after that one, so the backend need not re-arm
	 * and should simply be fast (it is inside the downtime), as Xen's
	 * XEN_DOMCTL_SHADOW_LOGDIRTY_FINAL. */
	int64_t (*dirty_collect)(struct hmig_guest *g, uint64_t *bitmap, unsigned flags);

	/* Stops dirty logging and drops its overhead.  Called at most once after
	 * dirty_start; destroy also stops it. */
	int (*dirty_stop)(struct hmig_guest *g);

	/* Stops every vCPU at an operation boundary and returns only when all are
	 * stopped: no guest write happens after it returns until resume.  Called
	 * at switchover and before verify; idempotent. */
	int (*pause)(struct hmig_guest *g);

	/* Lets paused vCPUs go on.  On the source: when a migration fails before
	 * the destination has resumed.  Idempotent. */
	int (*resume)(struct hmig_guest *g);

	/* Serialises vCPU state (registers, or a simulated guest's workload
	 * cursor and counters) into a malloc'd blob of 1 to the geometry's
	 * vcpu_state_max bytes, which the caller frees.  The blob starts with a
	 * version word; vcpu_restore refuses other versions.  Called with the
	 * guest paused, once per migration. */
	int (*vcpu_save)(struct hmig_guest *g, void **blob, size_t *len);

	/* ----------------------------------------------------- destination side */

	/* Allocates memory for `geo` with every page missing and arms the fault
	 * mechanism, so a guest access to a missing page blocks until the page is
	 * installed (or, for a backend that cannot, leaves that to pages_drop).  Called exactly once, before anything else on a destination
	 * guest; fails with -EINVAL (and a message) for a geometry the backend
	 * cannot hold. */
	int (*dest_prepare)(struct hmig_guest *g, const struct hmig_guest_geometry *geo);

	/* Places `n` contiguous pages from pfn on: `data` is n * page_size bytes,
	 * or NULL for zero pages.  The engine owns presence and says which case
	 * it is: with HMIG_INSTALL_REPLACE the pages are present and are
	 * overwritten in place (a later pre-copy pass; only before start, when
	 * no vCPU can see a half-written page); without it they are missing and
	 * go in atomically, waking any vCPU blocked on them.  After start it may
	 * be called from two threads at once (pull and push paths), never for
	 * the same page.  One call per run is much cheaper than one per page (a
	 * single UFFDIO_COPY for the run).  0 or -errno. */
	int (*page_install)(struct hmig_guest *g, uint64_t pfn, uint32_t n, const void *data,
			    unsigned flags);

	/* Makes pages missing again: pages the guest wrote on the source after
	 * they were sent.  `bitmap` has npages bits, and names only pages that
	 * are present.  Called only on the way to post-copy, any number of
	 * times before start (in the settle before the pause, so that little
	 * is left to drop at switchover, and at switchover: that call comes
	 * even when `bitmap` is empty, before the destination says LOADED).
	 * From its return every page never installed must be missing too: a
	 * backend that cannot leave pages missing from dest_prepare on (Xen,
	 * whose destination domain comes populated) makes them missing here,
	 * and a failure fails the migration while the source still owns the
	 * guest.  Returns the number of named pages dropped. */
	int64_t (*pages_drop)(struct hmig_guest *g, const uint64_t *bitmap);

	/* A file descriptor that polls readable when a vCPU is blocked on a
	 * missing page.  Valid from dest_prepare to destroy; the guest owns it.
	 * -EOPNOTSUPP from a backend that cannot leave pages missing after
	 * start: the engine asks once, after dest_prepare, and offers
	 * post-copy to the source (HELLO's PROTO_CAP_POSTCOPY) only when it
	 * gets an fd; faults_read and pages_drop are then never called. */
	int (*fault_fd)(struct hmig_guest *g);

	/* Reads pending faults without blocking: writes up to `max` pfns that vCPUs
	 * are blocked on (a pfn may repeat across calls until installed) and
	 * returns how many, 0 when none is pending. */
	int (*faults_read)(struct hmig_guest *g, uint64_t *pfns, uint32_t max);

	/* Every page is present: stop trapping accesses (unregister).  Called at
	 * most once, after start; page_install fails with -EINVAL afterwards. */
	int (*faults_done)(struct hmig_guest *g);

	/* Restores the blob vcpu_save produced on the source.  Called once,
	 * before start; -EPROTO for a blob of another version or geometry. */
	int (*vcpu_restore)(struct hmig_guest *g, const void *blob, size_t len);

	/* Starts the vCPUs from the restored state.  Called exactly once. */
	int (*start)(struct hmig_guest *g);
};

/* Every backend's guest begins with this. */
struct hmig_guest {
	const struct hmig_guest_ops *ops;
	char err[256]; /* last error: one line naming problem and remedy */
};

/* Opening a guest.  Each backend has its own public header,
 * <hmig/<backend>.h>, with typed openers, one per side:
 *
 *   int hmig_<backend>_open(<what names a running guest>,
 *                           struct hmig_guest **out, char *errbuf);
 *   int hmig_<backend>_open_dest(<what names the destination>,
 *                                struct hmig_guest **out, char *errbuf);
 *
 * The first gives a source guest for hmig_source_new, the second a fresh
 * destination guest for hmig_dest_new.  A Xen backend, for one, declares
 * hmig_xen_open(uint32_t domid, ...) and hmig_xen_open_dest(uint32_t domid,
 * ...) in <hmig/xen.h>, its destination being an existing paused domain.
 * Both return 0 with *out set, or -errno with *out NULL and one line in
 * errbuf (256 bytes).  What only one backend's guests have (parameters,
 * oracle counters, test switches) stays in that backend's header, never
 * here.
 *
 * A backend's openers are declared and exported whether or not the backend
 * was built in (the export list is fixed, see src/libhmig.map): when it was
 * not, they return -EOPNOTSUPP with the remedy ("rebuild with -Dxen=enabled").
 * Choosing a backend by name is the program's business: the CLI's --guest
 * SPEC parser (tools/hmig/guestspec.c) is the one place hmig does it. */

static inline const char *hmig_guest_error(const struct hmig_guest *g)
{
	return g->err;
}

const char *hmig_dirty_mode_name(enum hmig_dirty_mode m);

/* Parses the option spelling of a mode ("auto", "async", "sync"): 0, or
 * -EINVAL for anything else. */
int hmig_dirty_mode_parse(const char *s, enum hmig_dirty_mode *m);

#ifdef __cplusplus
}
#endif

#endif
