/* The destination's pages, with one owner: which are present, which were
 * asked for, and what waiting for them cost.
 *
 *   present    installed here: by a pass, by the pusher or by a pull
 *   requested  asked of the source once, not present yet (post-copy)
 *   missing    the rest; post-copy recovery asks for it (pages_missing)
 *
 * The engine owns presence, not the backend.  The engine decides what to ask
 * for, when the guest may start (stop-and-copy: everything present) and when
 * post-copy ends, and all three read this one set; the backend is told per
 * install whether it overwrites a page that is there (HMIG_INSTALL_REPLACE,
 * pre-copy only) or places a missing one.  (synth used to keep a second
 * present bitmap of its own to decide that.)
 *
 * Locking: every function here takes pages.lock itself, and no caller holds
 * it.  An install claims its pages under the lock (marks them present),
 * installs them without it, then records what it measured.  The bulk loop and
 * the fault handler may install at once after the start, and a page that
 * both bring (the push and the pull of it racing) is claimed by the first
 * and counted a duplicate by the second: it is placed once.  A vCPU that
 * touches a page claimed but not yet placed waits in the kernel until the
 * placing wakes it, as for any missing page.
 */
#ifndef HMIG_ENGINE_PAGES_H
#define HMIG_ENGINE_PAGES_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include <hmig/hmig.h>

#include "proto/proto.h"

/* How a page arrived, for the report. */
enum via { VIA_PASS, VIA_PUSH, VIA_PULL };

/* Called when a page that vCPUs were blocked on is in place: how long since
 * the handler read the first fault on it, and how many fault events waited.
 * Any thread, with pages.lock held: keep it short and never call pages_*
 * from it. */
struct pages_hook {
	void (*served)(void *ctx, uint64_t latency_ns, uint32_t waiters);
	void *ctx;
};

struct pages {
	struct hmig_guest *g;
	uint64_t npages;
	uint32_t page_size;
	struct pages_hook hook;
	bool crc_required;       /* plaintext stream: every PAGES carries CRC32Cs */
	pthread_mutex_t lock;
	pthread_cond_t changed;  /* pages became present, or pages_wake */
	/* under lock */
	uint64_t *present;
	uint64_t npresent;
	uint64_t *never;         /* pfns the backend never moves (NULL: none) */
	uint64_t nnever;
	uint64_t *requested;     /* post-copy only */
	uint64_t *t_fault;       /* first unserved fault on the page, ns; 0 none */
	uint32_t *waiters;       /* fault events waiting on the page */
	bool started;            /* the guest runs here: place, never replace */
	bool woken;
	uint64_t installs, duplicates, pulled, pushed;
};

/* Empty sets for geo.  0 or -ENOMEM. */
int pages_init(struct pages *ps, struct hmig_guest *g, const struct hmig_guest_geometry *geo,
	       struct pages_hook hook);
void pages_free(struct pages *ps);

/* The pfns the backend never moves (npages bits): present from the start,
 * so the set is complete when every other pfn is; an install, drop or fault
 * that names one is refused.  Once, before any install.  0 or -ENOMEM. */
int pages_never_sent(struct pages *ps, const uint64_t *never);

/* Installs n contiguous pages from pfn (data: n * page_size bytes, or NULL
 * for zero pages) that arrived `via`.  0, or -errno with a line in err. */
int pages_install(struct pages *ps, uint64_t pfn, uint32_t n, const void *data, enum via via,
		  char *err);

/* A PAGES or ZERO record: checked against the geometry, then one install per
 * run of adjacent pfns (the usual case in a pass: one UFFDIO_COPY a run). */
int pages_install_record(struct pages *ps, const struct hmig_guest_geometry *geo,
			 const struct proto_hdr *h, const void *body, enum via via, char *err);

/* Makes the present pages among `set` (npages bits) missing again and
 * empties `set`, calling the backend's pages_drop even when none is
 * (guest.h).  Before the start only.  Returns how many, or -errno. */
int64_t pages_drop(struct pages *ps, uint64_t *set, char *err);

/* Post-copy begins: from here installs place and never replace, and faults
 * are tracked.  Once, before the guest starts.  0 or -ENOMEM. */
int pages_start_postcopy(struct pages *ps);

/* Stop-and-copy: the guest starts with every page present.  Once. */
void pages_start(struct pages *ps);

/* vCPUs are blocked on pfns[0..n) (fault events read at `now_ns`): of those
 * not present, the ones never asked for go to ask[] and become requested.
 * Returns how many to ask. */
uint32_t pages_faulted(struct pages *ps, const uint64_t *pfns, uint32_t n, uint64_t now_ns,
		       uint64_t *ask);

/* Touches the sets' pages (common/bitmap.h, bitmap_warm): before a
 * switchover walks them. */
void pages_warm(struct pages *ps);

/* Pfns asked of the source and still missing, from *pos on (advanced), at
 * most max: what a fault handler asks for again after a lost link.  Returns
 * how many. */
uint32_t pages_asked_missing(struct pages *ps, uint64_t *pos, uint64_t *pfns, uint32_t max);

/* What this side still needs: writes the missing pages to out (npages bits)
 * and returns how many. */
uint64_t pages_missing(struct pages *ps, uint64_t *out);

uint64_t pages_present(struct pages *ps);

/* The counters at one instant (present counts the never-moving pfns). */
struct pages_counts {
	uint64_t present, never, pulled, pushed;
};
void pages_counts(struct pages *ps, struct pages_counts *c);

/* Waits until every page is present (true) or pages_wake (false; a wake
 * ends one wait, the next waits again). */
bool pages_wait_all(struct pages *ps);
void pages_wake(struct pages *ps);

#endif
