/* synth: the built-in guest.
 *
 * A real running guest inside the hmig process: an anonymous mapping of
 * npages pages, and one thread per vCPU executing a workload (workload.c)
 * against it until paused.  Each vCPU owns a contiguous, disjoint range of
 * pages, so every page has exactly one writer and the oracle's per-page
 * version table needs no locks.
 *
 * Source side: dirty logging with userfaultfd write-protect, async mode read
 * and re-armed by PAGEMAP_SCAN (6.7+) for guests under 2 GiB, synchronous
 * write-protect faults served by a handler thread from 2 GiB (and as the
 * fallback); SYNC_FROM_PAGES says why.
 * Destination side: the same mapping registered for missing pages; pages go
 * in with UFFDIO_COPY / UFFDIO_ZEROPAGE and come out with MADV_DONTNEED.
 *
 * THP is disabled on a destination's mapping (MADV_NOHUGEPAGE): missing
 * faults then work at 4 KiB, the unit the protocol moves (QEMU does the same
 * for post-copy on the destination).  A source's mapping asks for THP
 * (MADV_HUGEPAGE), as QEMU's guest RAM does: async write-protect splits a
 * huge page at its first write and tracks it at 4 KiB from then on, so a
 * written byte still dirties one page, while a region not written since the
 * log was armed stays one entry for PAGEMAP_SCAN instead of 512.  The
 * final collect, inside the downtime, walks the page tables; for a guest
 * that writes little of its memory it gets up to 512 times shorter.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include <hmig/synth.h>

#include "common/bitmap.h"
#include "common/clock.h"
#include "common/endian.h"
#include "common/err.h"
#include "guest/synth/synth.h"
#include "guest/synth/workload.h"
#include "stats/hist.h"
#include "uffd/uffd.h"

#define SYNTH_PAGE 4096
#define SYNTH_MAX_VCPUS 64
#define DEFAULT_SEED 0x686d6967ull /* "hmig" */

struct vcpu {
	struct synth *s;
	uint32_t id;
	pthread_t thread;
	struct wl_vcpu wl;
	/* Written by the vCPU thread only; read by others (stats) relaxed. */
	_Atomic uint64_t op;        /* next op index: cursor and RNG state */
	_Atomic uint64_t writes;
	_Atomic uint64_t violations;
	uint64_t first_bad_pfn;
	/* Blackout: when the last op completed (wall clock, ns); on a
	 * destination, `came_from` is the source's value, carried in the vCPU
	 * state, and first_here the first op completed here. */
	_Atomic uint64_t last_op_wall, first_here;
	uint64_t came_from;
	uint64_t op_at_start;       /* op when it started on this host */
	uint64_t writes_at_start;
	struct stats_hist lat;      /* kv request latency, ns; vCPU-private */
	/* Pacing: op `pace_op0` was due at `pace_t0`. */
	uint64_t pace_t0, pace_op0;
};

struct synth {
	struct hmig_guest base;
	uint64_t npages;          /* data pages + gap + version-table pages */
	uint64_t data_pages;      /* pages the workload uses, pfns 0 .. data_pages-1 */
	uint64_t holes, gap;      /* never-sent pfns and the gap after the data pages
				   * they lie in (holes_walk); 0 but in tests */
	uint32_t page_size, nvcpus;
	uint8_t *mem;
	size_t mem_len;
	struct wl_params wl;
	uint64_t seed;
	double fill;
	uint64_t ops_limit;
	uint32_t *versions; /* oracle: per-page version, in guest memory (below) */
	struct vcpu *vcpus;

	/* Run control.  pause_req is polled by vCPUs between ops; parked vCPUs
	 * and sleeping (paced, idle) ones wait on `cond`. */
	pthread_mutex_t lock;
	pthread_cond_t cond;      /* vCPUs wait here */
	pthread_cond_t parked_cv; /* pause() waits here */
	_Atomic bool pause_req;
	_Atomic bool quit;
	uint32_t parked;
	bool threads_live;

	/* Dirty logging. */
	enum hmig_dirty_mode dirty_mode; /* 0 = off */
	int wp_fd, pagemap_fd;
	pthread_t wp_thread;
	int wp_quit_fd;
	pthread_mutex_t wp_lock;   /* sync mode: handler vs collect */
	uint64_t *wp_dirty;        /* sync mode: pages written since collect */

	/* Destination. */
	bool is_dest, restored, started, faults_over;
	int uffd;
	int pidfd;         /* ourselves, for process_madvise; -1 without */
};

static struct synth *to_synth(struct hmig_guest *g)
{
	return (struct synth *)g;
}

/* ------------------------------------------------------------ memory */

/* The oracle's version table (4 bytes per data page) lives in guest memory,
 * in the pages after the data pages, the way a kernel keeps its own
 * bookkeeping in RAM.  It then moves like any other page: dirty-logged,
 * sent in passes, pulled on demand.  The vCPU state is left with cursors
 * and counters, a few bytes per vCPU, so the switchover does not grow with
 * the guest (a separate table was 1 MiB per GiB inside the downtime).  The
 * cost: a write dirties its page and one table page (1024 entries each). */
static uint64_t table_pages(uint64_t data_pages, uint32_t page_size)
{
	return (data_pages * sizeof(uint32_t) + page_size - 1) / page_size;
}

/* Maps npages; set_layout then says where the table starts.  Pages past the
 * table's last entry stay zero. */
static int mem_map(struct synth *s)
{
	s->mem_len = (size_t)s->npages * s->page_size;
	void *m = mmap(NULL, s->mem_len, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (m == MAP_FAILED)
		return err_setf(s->base.err, -errno,
				"cannot map %zu MiB of guest memory: %s (use a smaller --mem)",
				s->mem_len >> 20, strerror(errno));
	s->mem = m;
	madvise(s->mem, s->mem_len, s->is_dest ? MADV_NOHUGEPAGE : MADV_HUGEPAGE);
	return 0;
}

/* Test-only holes (synth_open_holed): a gap of pfns between the data pages
 * and the version table that the guest never touches, as a Xen guest's pfn
 * space has holes.  `holes` of the gap's pfns are never sent
 * (pfns_never_sent), in runs of 1, 2, 3, ... pfns, each followed by one
 * ordinary pfn that moves like any untouched page: the set then has runs of
 * many lengths, some across bitmap words, for the engine's tests to skip.
 * Marks the runs from pfn `first` when bitmap is not NULL; returns the gap's
 * size, 0 without holes. */
static uint64_t holes_walk(uint64_t holes, uint64_t first, uint64_t *bitmap)
{
	uint64_t gap = 0;

	for (uint64_t run = 1; holes; run++) {
		uint64_t n = run < holes ? run : holes;

		if (bitmap)
			bitmap_set_range(bitmap, first + gap, first + gap + n);
		gap += n + 1;
		holes -= n;
	}
	return gap;
}

/* Holes enough for any test, few enough that the gap's walk (sqrt(2 holes)
 * runs) stays short and npages far from overflowing. */
#define SYNTH_MAX_HOLES (1ull << 32)

static int holes_check(uint64_t holes, char *errbuf)
{
	if (holes > SYNTH_MAX_HOLES)
		return err_setf(errbuf, -EINVAL, "%lu holes: at most %llu", (unsigned long)holes,
				SYNTH_MAX_HOLES);
	return 0;
}

/* Lays out `ram` pages, the data and then the table, around the gap:
 * pfns [0, data) data, [data, data + gap) the gap, then the table up to
 * npages.  The table is carved out of the guest's memory, as a kernel's own
 * bookkeeping is: a 1 GiB guest has 1 GiB in all.  A source does this at
 * creation; a destination at dest_prepare, from the geometry and its own
 * holes, the same way, so vcpu_restore can check the two agree. */
static void set_layout(struct synth *s, uint64_t ram)
{
	s->data_pages = ram - table_pages(ram, s->page_size);
	s->versions = (uint32_t *)(s->mem + (s->data_pages + s->gap) * s->page_size);
}

static uint8_t *page_ptr(struct synth *s, uint64_t pfn)
{
	return s->mem + pfn * s->page_size;
}

/* ------------------------------------------------------------ vCPUs */

static int vcpus_alloc(struct synth *s)
{
	s->vcpus = calloc(s->nvcpus, sizeof(*s->vcpus));
	if (!s->vcpus)
		return err_setf(s->base.err, -ENOMEM, "out of memory for vCPUs");
	for (uint32_t i = 0; i < s->nvcpus; i++) {
		struct vcpu *v = &s->vcpus[i];

		v->s = s;
		v->id = i;
		stats_hist_init(&v->lat);
	}
	return 0;
}

/* Gives each vCPU its share of the data pages, once the workload, seed and
 * layout are known (at creation on a source, at vcpu_restore on a
 * destination). */
static void vcpus_layout(struct synth *s)
{
	for (uint32_t i = 0; i < s->nvcpus; i++)
		wl_vcpu_init(&s->vcpus[i].wl, &s->wl, s->seed, i, s->nvcpus, s->data_pages,
			     s->page_size);
}

/* Parks the calling vCPU while a pause is requested.  Returns false when the
 * guest is being destroyed. */
static bool vcpu_park(struct vcpu *v)
{
	struct synth *s = v->s;

	pthread_mutex_lock(&s->lock);
	s->parked++;
	pthread_cond_broadcast(&s->parked_cv);
	while (atomic_load(&s->pause_req) && !atomic_load(&s->quit))
		pthread_cond_wait(&s->cond, &s->lock);
	s->parked--;
	pthread_mutex_unlock(&s->lock);
	/* A paused guest does not catch up on the ops it missed. */
	v->pace_t0 = clock_now_ns();
	v->pace_op0 = atomic_load_explicit(&v->op, memory_order_relaxed);
	return !atomic_load(&s->quit);
}

/* Sleeps until `deadline_ns` unless a pause or quit comes first; a sleeping
 * vCPU must not delay a pause (that would be downtime). */
static void vcpu_sleep_until(struct vcpu *v, uint64_t deadline_ns)
{
	struct synth *s = v->s;
	struct timespec ts = {
		.tv_sec = (time_t)(deadline_ns / 1000000000ull),
		.tv_nsec = (long)(deadline_ns % 1000000000ull),
	};

	pthread_mutex_lock(&s->lock);
	while (!atomic_load(&s->pause_req) && !atomic_load(&s->quit) &&
	       clock_now_ns() < deadline_ns)
		if (pthread_cond_timedwait(&s->cond, &s->lock, &ts) == ETIMEDOUT)
			break;
	pthread_mutex_unlock(&s->lock);
}

/* Below this lead over schedule a paced vCPU keeps running rather than
 * sleeping: a sleep costs ~50-100 us of wake-up latency itself. */
#define PACE_SLACK_NS 200000ull

static void vcpu_pace(struct vcpu *v, uint64_t op)
{
	double per_vcpu = v->s->wl.rate / v->s->nvcpus;

	if (per_vcpu <= 0)
		return;
	uint64_t due = v->pace_t0 + (uint64_t)((double)(op - v->pace_op0) * 1e9 / per_vcpu);
	uint64_t now = clock_now_ns();
	if (due > now + PACE_SLACK_NS)
		vcpu_sleep_until(v, due);
}

static void vcpu_violation(struct vcpu *v, uint64_t pfn)
{
	if (atomic_fetch_add_explicit(&v->violations, 1, memory_order_relaxed) == 0)
		v->first_bad_pfn = pfn;
}

/* One operation of the workload, at an op boundary on both sides. */
static void vcpu_step(struct vcpu *v, uint64_t op)
{
	struct synth *s = v->s;
	struct wl_op o;
	uint64_t bad;

	wl_op_decide(&v->wl, op, &o);
	if (s->wl.kind == WL_KV) {
		uint64_t t0 = clock_now_ns();

		if (!wl_kv_exec(&v->wl, page_ptr(s, v->wl.lo), s->versions, &o, &bad))
			vcpu_violation(v, bad);
		stats_hist_add(&v->lat, clock_now_ns() - t0);
	} else if (o.write) {
		wl_page_gen(page_ptr(s, o.pfn), s->page_size, s->seed, o.pfn,
			    s->versions[o.pfn] + 1);
		s->versions[o.pfn]++;
	} else if (!wl_page_check(page_ptr(s, o.pfn), s->page_size, s->seed, o.pfn,
				  s->versions[o.pfn])) {
		vcpu_violation(v, o.pfn);
	}
	if (o.write)
		atomic_fetch_add_explicit(&v->writes, 1, memory_order_relaxed);
	/* One clock read an op (about 20 ns through the vDSO, 2% of an
	 * unthrottled page write): the gap the guest sees across a migration
	 * is the one figure no engine-side clock can give. */
	uint64_t now = clock_wall_ns();
	atomic_store_explicit(&v->last_op_wall, now, memory_order_relaxed);
	if (v->came_from && !atomic_load_explicit(&v->first_here, memory_order_relaxed))
		atomic_store_explicit(&v->first_here, now, memory_order_relaxed);
	/* Release: a pauser that sees the new op count sees the op's writes. */
	atomic_store_explicit(&v->op, op + 1, memory_order_release);
}

/* An idle vCPU wakes this often to look for a pause; the cond wakes it at
 * once anyway, so this only bounds a lost wake-up. */
#define IDLE_TICK_NS 10000000ull

static void *vcpu_main(void *arg)
{
	struct vcpu *v = arg;
	struct synth *s = v->s;

	v->pace_t0 = clock_now_ns();
	v->pace_op0 = atomic_load(&v->op);
	while (!atomic_load_explicit(&s->quit, memory_order_relaxed)) {
		if (atomic_load_explicit(&s->pause_req, memory_order_acquire)) {
			if (!vcpu_park(v))
				break;
			continue;
		}
		uint64_t op = atomic_load_explicit(&v->op, memory_order_relaxed);
		if (s->wl.kind == WL_IDLE || (s->ops_limit && op >= s->ops_limit)) {
			vcpu_sleep_until(v, clock_now_ns() + IDLE_TICK_NS);
			continue;
		}
		vcpu_pace(v, op);
		if (atomic_load_explicit(&s->pause_req, memory_order_acquire))
			continue;
		vcpu_step(v, op);
	}
	return NULL;
}

static int vcpus_start(struct synth *s)
{
	for (uint32_t i = 0; i < s->nvcpus; i++) {
		struct vcpu *v = &s->vcpus[i];

		v->op_at_start = atomic_load(&v->op);
		v->writes_at_start = atomic_load(&v->writes);
		int rc = pthread_create(&v->thread, NULL, vcpu_main, v);
		if (rc) {
			atomic_store(&s->quit, true);
			pthread_cond_broadcast(&s->cond);
			for (uint32_t j = 0; j < i; j++)
				pthread_join(s->vcpus[j].thread, NULL);
			atomic_store(&s->quit, false);
			return err_setf(s->base.err, -rc, "cannot start vCPU thread: %s",
					strerror(rc));
		}
	}
	s->threads_live = true;
	return 0;
}

static void vcpus_stop(struct synth *s)
{
	if (!s->threads_live)
		return;
	pthread_mutex_lock(&s->lock);
	atomic_store(&s->quit, true);
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
	for (uint32_t i = 0; i < s->nvcpus; i++)
		pthread_join(s->vcpus[i].thread, NULL);
	s->threads_live = false;
}

static int synth_pause(struct hmig_guest *g)
{
	struct synth *s = to_synth(g);

	if (!s->threads_live)
		return 0;
	pthread_mutex_lock(&s->lock);
	atomic_store_explicit(&s->pause_req, true, memory_order_release);
	pthread_cond_broadcast(&s->cond); /* cut short paced and idle sleeps */
	while (s->parked < s->nvcpus)
		pthread_cond_wait(&s->parked_cv, &s->lock);
	pthread_mutex_unlock(&s->lock);
	return 0;
}

static int synth_resume(struct hmig_guest *g)
{
	struct synth *s = to_synth(g);

	pthread_mutex_lock(&s->lock);
	atomic_store(&s->pause_req, false);
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
	return 0;
}

/* --------------------------------------------------------------- fill */

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23 /* 5.14 */
#endif

static void *fill_main(void *arg)
{
	struct vcpu *v = arg;
	struct synth *s = v->s;

	/* Fault the range in with one call instead of one fault per page
	 * (about 4x faster at 1 GiB); the writes below then only copy.  A
	 * kernel without it just takes the faults. */
	if (s->fill > 0 || s->wl.kind == WL_KV)
		madvise(page_ptr(s, v->wl.lo), (v->wl.hi - v->wl.lo) * s->page_size,
			MADV_POPULATE_WRITE);

	if (s->wl.kind == WL_KV) {
		wl_kv_fill(&v->wl, page_ptr(s, v->wl.lo), s->versions);
		return NULL;
	}
	for (uint64_t p = v->wl.lo; p < v->wl.hi; p++) {
		if (!wl_fill_page(s->seed, s->fill, p))
			continue;
		s->versions[p] = 1;
		wl_page_gen(page_ptr(s, p), s->page_size, s->seed, p, 1);
	}
	return NULL;
}

/* The vCPUs fill their own pages in parallel, before the workload runs. */
static int guest_fill(struct synth *s)
{
	pthread_t t[SYNTH_MAX_VCPUS];
	uint32_t started = 0;
	int rc = 0;

	for (; started < s->nvcpus; started++) {
		rc = pthread_create(&t[started], NULL, fill_main, &s->vcpus[started]);
		if (rc)
			break;
	}
	for (uint32_t i = 0; i < started; i++)
		pthread_join(t[i], NULL);
	if (rc)
		return err_setf(s->base.err, -rc, "cannot start fill thread: %s", strerror(rc));
	return 0;
}

/* ---------------------------------------------------------- both sides */

/* The vCPU state this guest declares it may send: 1 MiB plus 4 KiB a vCPU.
 * Its blob is far smaller today (BLOB_HDR + 32 bytes a vCPU, below); the
 * room lets a later blob version reach vcpu_restore, which names the version
 * skew, instead of being cut off by the record reader as merely too long.
 * It does not grow with memory: the oracle's table moved into guest memory
 * for that reason (mem_map). */
#define VCPU_STATE_FIXED (1u << 20)
#define VCPU_STATE_PER_VCPU 4096u

static int synth_geometry(struct hmig_guest *g, struct hmig_guest_geometry *geo)
{
	struct synth *s = to_synth(g);

	geo->npages = s->npages;
	geo->page_size = s->page_size;
	geo->nvcpus = s->nvcpus;
	/* nvcpus <= SYNTH_MAX_VCPUS: no overflow. */
	geo->vcpu_state_max = VCPU_STATE_FIXED + s->nvcpus * VCPU_STATE_PER_VCPU;
	return 0;
}

static int64_t synth_pfns_never_sent(struct hmig_guest *g, uint64_t *bitmap)
{
	struct synth *s = to_synth(g);

	if (!s->mem)
		return err_setf(s->base.err, -EINVAL, "pfns_never_sent: call dest_prepare first");
	holes_walk(s->holes, s->data_pages, bitmap);
	return (int64_t)s->holes;
}

static int synth_stats(struct hmig_guest *g, struct hmig_guest_stats *st)
{
	struct synth *s = to_synth(g);

	memset(st, 0, sizeof(*st));
	snprintf(st->workload, sizeof(st->workload), "%s", s->wl.spec);
	st->blackout_ms = NAN;
	bool all_back = true;
	double worst = 0;
	for (uint32_t i = 0; s->vcpus && i < s->nvcpus; i++) {
		struct vcpu *v = &s->vcpus[i];
		uint64_t here = atomic_load_explicit(&v->first_here, memory_order_relaxed);

		st->ops += atomic_load_explicit(&v->op, memory_order_relaxed) - v->op_at_start;
		st->writes += atomic_load_explicit(&v->writes, memory_order_relaxed) -
			      v->writes_at_start;
		if (!v->came_from)
			continue; /* never ran on the source, or no destination */
		if (!here)
			all_back = false;
		else if (here > v->came_from && clock_ms(here - v->came_from) > worst)
			worst = clock_ms(here - v->came_from);
	}
	if (s->restored && all_back && worst > 0)
		st->blackout_ms = worst;
	return 0;
}

static const struct hmig_guest_ops synth_ops;

int hmig_synth_stats(struct hmig_guest *g, struct hmig_synth_stats *st)
{
	struct stats_hist lat;

	memset(st, 0, sizeof(*st));
	if (g->ops != &synth_ops)
		return err_setf(g->err, -EINVAL,
				"hmig_synth_stats: this is a '%s' guest, not a synth one",
				g->ops->name);
	struct synth *s = to_synth(g);
	stats_hist_init(&lat);
	for (uint32_t i = 0; s->vcpus && i < s->nvcpus; i++) {
		struct vcpu *v = &s->vcpus[i];
		uint64_t bad = atomic_load_explicit(&v->violations, memory_order_relaxed);

		if (bad && !st->violations)
			st->first_bad_pfn = v->first_bad_pfn;
		st->violations += bad;
		/* Racy read of a vCPU's histogram: counters may be torn by one
		 * sample while it runs; exact once paused. */
		stats_hist_merge(&lat, &v->lat);
	}
	st->lat_count = lat.count;
	if (lat.count) {
		st->lat_p50_ns = stats_hist_quantile(&lat, 0.50);
		st->lat_p99_ns = stats_hist_quantile(&lat, 0.99);
		st->lat_max_ns = (double)lat.max;
	}
	return 0;
}

/* Replays vCPU v's ops with no migration and compares its pages byte for
 * byte.  `expect` is a scratch version table (npages), `scratch` memory for
 * kv replay (owned pages) or NULL. */
static int verify_vcpu(struct synth *s, struct vcpu *v, uint32_t *expect, uint8_t *scratch)
{
	const struct wl_vcpu *w = &v->wl;
	uint64_t nops = atomic_load(&v->op), bad;
	struct wl_op o;

	if (s->wl.kind == WL_KV) {
		memset(scratch, 0, (w->hi - w->lo) * s->page_size);
		wl_kv_fill(w, scratch, expect);
		for (uint64_t op = 0; op < nops; op++) {
			wl_op_decide(w, op, &o);
			if (o.write)
				wl_kv_exec(w, scratch, expect, &o, &bad);
		}
	} else {
		for (uint64_t p = w->lo; p < w->hi; p++)
			expect[p] = wl_fill_page(s->seed, s->fill, p) ? 1 : 0;
		for (uint64_t op = 0; s->wl.kind != WL_IDLE && op < nops; op++) {
			wl_op_decide(w, op, &o);
			if (o.write)
				expect[o.pfn]++;
		}
	}
	for (uint64_t p = w->lo; p < w->hi; p++) {
		long off;

		if (s->wl.kind == WL_KV) {
			const uint8_t *a = page_ptr(s, p);
			const uint8_t *b = scratch + (p - w->lo) * s->page_size;

			off = -1;
			if (memcmp(a, b, s->page_size))
				for (off = 0; a[off] == b[off]; off++)
					;
		} else {
			off = wl_page_diff(page_ptr(s, p), s->page_size, s->seed, p, expect[p]);
		}
		if (off >= 0)
			return err_setf(s->base.err, -EBADMSG,
					"integrity: pfn %lu differs from the replay at byte %ld (vCPU %u, version %u expected, %u recorded)",
					(unsigned long)p, off, v->id, expect[p], s->versions[p]);
		if (expect[p] != s->versions[p])
			return err_setf(s->base.err, -EBADMSG,
					"integrity: pfn %lu has version %u but the replay gives %u (vCPU state damaged?)",
					(unsigned long)p, s->versions[p], expect[p]);
	}
	return 0;
}

/* The table's last page past the last entry is never written: zeros. */
static int verify_table_slack(struct synth *s)
{
	const uint8_t *end = (const uint8_t *)(s->versions + s->data_pages);
	const uint8_t *lim = s->mem + s->npages * s->page_size;

	for (const uint8_t *b = end; b < lim; b++)
		if (*b)
			return err_setf(s->base.err, -EBADMSG,
					"integrity: pfn %lu (version table) differs from the replay at byte %ld",
					(unsigned long)((uint64_t)(b - s->mem) / s->page_size),
					(long)((uint64_t)(b - s->mem) % s->page_size));
	return 0;
}

static int synth_verify(struct hmig_guest *g)
{
	struct synth *s = to_synth(g);
	uint32_t *expect;
	uint8_t *scratch = NULL;
	size_t scratch_len = 0;
	int rc = 0;

	if (!s->vcpus || (s->is_dest && !s->restored))
		return err_setf(s->base.err, -EINVAL, "verify: the guest has no state yet");
	if (s->threads_live && !atomic_load(&s->pause_req))
		return err_setf(s->base.err, -EBUSY, "verify: pause the guest first");
	expect = calloc(s->data_pages, sizeof(*expect));
	if (!expect)
		return err_setf(s->base.err, -ENOMEM, "verify: out of memory");
	if (s->wl.kind == WL_KV) {
		scratch_len = (size_t)(s->data_pages / s->nvcpus + 1) * s->page_size;
		scratch = mmap(NULL, scratch_len, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		if (scratch == MAP_FAILED) {
			free(expect);
			return err_setf(s->base.err, -ENOMEM, "verify: cannot map replay memory");
		}
	}
	for (uint32_t i = 0; !rc && i < s->nvcpus; i++) {
		struct vcpu *v = &s->vcpus[i];

		if (atomic_load(&v->violations)) {
			rc = err_setf(s->base.err, -EBADMSG,
				      "integrity: vCPU %u read a wrong or stale page at pfn %lu (%lu bad reads)",
				      v->id, (unsigned long)v->first_bad_pfn,
				      (unsigned long)atomic_load(&v->violations));
			break;
		}
		rc = verify_vcpu(s, v, expect, scratch);
	}
	if (!rc)
		rc = verify_table_slack(s);
	if (scratch)
		munmap(scratch, scratch_len);
	free(expect);
	return rc;
}

/* ----------------------------------------------------------- source side */

static int synth_run(struct hmig_guest *g)
{
	struct synth *s = to_synth(g);

	if (s->is_dest || s->threads_live)
		return err_setf(s->base.err, -EINVAL, "run: the guest is already running");
	return vcpus_start(s);
}

static int synth_pages_map(struct hmig_guest *g, const uint64_t *pfns, uint32_t n,
			   const void **ptrs)
{
	struct synth *s = to_synth(g);

	for (uint32_t i = 0; i < n; i++) {
		if (pfns[i] >= s->npages)
			return err_setf(s->base.err, -ERANGE, "pages_map: pfn %lu out of range",
					(unsigned long)pfns[i]);
		ptrs[i] = page_ptr(s, pfns[i]);
	}
	return 0;
}

static void synth_pages_unmap(struct hmig_guest *g, const uint64_t *pfns, uint32_t n,
			      const void **ptrs)
{
	(void)g, (void)pfns, (void)n, (void)ptrs;
}

/* Sync write-protect mode: the handler thread records the written page and
 * lifts the protection so the vCPU goes on.
 *
 * Ordering against dirty_collect (both under wp_lock):
 *
 *   handler: set bit p, unprotect p       collect: take bits, protect them
 *
 * Done under one lock, a fault handled before the collect is in this collect
 * (and p is protected again); one handled after is in the next.  Without the
 * lock, collect could clear p's bit and protect p between the handler's set
 * and unprotect, leaving p writable and unrecorded. */
static void *wp_handler_main(void *arg)
{
	struct synth *s = arg;
	struct uffd_msg msgs[64];
	struct pollfd pfd[2] = {
		{ .fd = s->wp_fd, .events = POLLIN },
		{ .fd = s->wp_quit_fd, .events = POLLIN },
	};

	for (;;) {
		if (poll(pfd, 2, -1) < 0 && errno != EINTR)
			break;
		if (pfd[1].revents)
			break;
		int n = uffd_read(s->wp_fd, msgs, 64);
		if (n <= 0)
			continue;
		pthread_mutex_lock(&s->wp_lock);
		for (int i = 0; i < n; i++) {
			if (msgs[i].event != UFFD_EVENT_PAGEFAULT)
				continue;
			uint64_t addr = msgs[i].arg.pagefault.address & ~(uint64_t)(s->page_size - 1);
			uint64_t pfn = (addr - (uintptr_t)s->mem) / s->page_size;

			bitmap_set(s->wp_dirty, pfn);
			uffd_wp(s->wp_fd, (void *)(uintptr_t)addr, s->page_size, false);
		}
		pthread_mutex_unlock(&s->wp_lock);
	}
	return NULL;
}

static int dirty_arm(struct synth *s, enum hmig_dirty_mode mode, uint64_t features)
{
	int rc;

	s->wp_fd = uffd_open(features);
	if (s->wp_fd < 0)
		return s->wp_fd;
	rc = uffd_register(s->wp_fd, s->mem, s->mem_len, UFFDIO_REGISTER_MODE_WP);
	if (!rc)
		rc = uffd_wp(s->wp_fd, s->mem, s->mem_len, true);
	if (rc) {
		close(s->wp_fd);
		s->wp_fd = -1;
		return rc;
	}
	s->dirty_mode = mode;
	return 0;
}

/* Which mode auto picks.  Async costs a guest nothing per write but its
 * final collect walks the page tables of the whole guest inside the
 * downtime: 0.3-0.5 ms per GiB once writes have split the huge pages, 2-4 ms
 * at 8 GiB.  Sync costs a written page one fault served by the handler per
 * pass (KVM's dirty logging without PML works the same way), and its final
 * collect reads a bitmap whatever the guest's size.  Below 2 GiB the walk
 * fits the 2 ms downtime budget with room to spare and async wins; from
 * there it does not (docs/benchmarks.md, issue 11). */
#define SYNC_FROM_PAGES (512ull << 10) /* 2 GiB of 4 KiB pages */

static int synth_dirty_start(struct hmig_guest *g, enum hmig_dirty_mode want)
{
	struct synth *s = to_synth(g);
	struct uffd_probe p;
	int rc;

	if (s->dirty_mode)
		return err_setf(s->base.err, -EBUSY, "dirty logging is already on");
	rc = uffd_probe(&p);
	if (rc)
		return err_setf(s->base.err, rc,
				"dirty logging needs userfaultfd: %s (run as root or set vm.unprivileged_userfaultfd=1)",
				strerror(-rc));
	bool async_ok = (p.features & UFFD_FEATURE_WP_ASYNC) && p.pagemap_scan;
	/* Without WP_UNPOPULATED, protection does not stick to never-touched
	 * pages: the sync mode below touches them first instead. */
	uint64_t unpop = p.features & UFFD_FEATURE_WP_UNPOPULATED;

	if (want == HMIG_DIRTY_WP_ASYNC && !async_ok)
		return err_setf(s->base.err, -EOPNOTSUPP,
				"async write-protect dirty logging needs Linux 6.7+ (UFFD_FEATURE_WP_ASYNC and PAGEMAP_SCAN); use the sync mode");
	if (want == HMIG_DIRTY_BACKEND)
		return err_setf(s->base.err, -EOPNOTSUPP,
				"the synth guest has no hypervisor dirty log; use auto");

	/* auto: async below SYNC_FROM_PAGES, sync from there (see above). */
	bool want_async = want == HMIG_DIRTY_WP_ASYNC ||
			  (want == HMIG_DIRTY_AUTO && s->npages < SYNC_FROM_PAGES);

	if (want_async && async_ok) {
		s->pagemap_fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
		if (s->pagemap_fd < 0)
			return err_setf(s->base.err, -errno, "cannot open /proc/self/pagemap: %s",
					strerror(errno));
		rc = dirty_arm(s, HMIG_DIRTY_WP_ASYNC, UFFD_FEATURE_WP_ASYNC | unpop);
		if (!rc)
			return HMIG_DIRTY_WP_ASYNC;
		close(s->pagemap_fd);
		s->pagemap_fd = -1;
		if (want == HMIG_DIRTY_WP_ASYNC)
			return err_setf(s->base.err, rc, "async write-protect failed: %s",
					strerror(-rc));
	}

	if (!unpop) /* map the zero page under untouched pages, so they can be protected */
		for (uint64_t p = 0; p < s->npages; p++)
			(void)*(volatile uint8_t *)page_ptr(s, p);
	s->wp_dirty = bitmap_new(s->npages);
	s->wp_quit_fd = eventfd(0, EFD_CLOEXEC);
	if (!s->wp_dirty || s->wp_quit_fd < 0)
		return err_setf(s->base.err, -ENOMEM, "out of memory for the dirty bitmap");
	rc = dirty_arm(s, HMIG_DIRTY_WP_SYNC, unpop);
	if (rc)
		return err_setf(s->base.err, rc, "write-protect dirty logging failed: %s",
				strerror(-rc));
	rc = pthread_create(&s->wp_thread, NULL, wp_handler_main, s);
	if (rc) {
		uffd_unregister(s->wp_fd, s->mem, s->mem_len);
		close(s->wp_fd);
		s->wp_fd = -1;
		s->dirty_mode = 0;
		return err_setf(s->base.err, -rc, "cannot start the write-protect handler: %s",
				strerror(rc));
	}
	return HMIG_DIRTY_WP_SYNC;
}

struct scan_part {
	struct synth *s;
	uint64_t *bitmap;
	uint64_t first, n; /* pfns [first, first + n) */
	bool rearm;
	int64_t found;     /* pages, or -errno */
};

static void collect_range(void *arg, uint64_t first, uint64_t end)
{
	struct scan_part *part = arg;

	bitmap_set_range(part->bitmap, part->first + first, part->first + end);
}

static void *scan_part_main(void *arg)
{
	struct scan_part *part = arg;
	struct synth *s = part->s;

	part->found = pagemap_scan_written(s->pagemap_fd, page_ptr(s, part->first),
					   part->n * s->page_size, s->page_size, part->rearm,
					   collect_range, part);
	return NULL;
}

/* The final collect runs inside the downtime, and PAGEMAP_SCAN's cost is
 * the page-table walk over the whole guest (about 0.3 ms per GiB read-only
 * here), not the few pages it finds.  So it walks without re-arming, which
 * is twice as fast, and splits guests of SCAN_SPLIT_PAGES or more across up
 * to SCAN_THREADS threads (the vCPUs are parked: their CPUs are free).
 * Smaller guests are not worth a thread start (~50 us). */
#define SCAN_SPLIT_PAGES (512ull << 10) /* 2 GiB of 4 KiB pages */
#define SCAN_THREADS 4

static int64_t scan_async(struct synth *s, uint64_t *bitmap, bool final)
{
	struct scan_part part[SCAN_THREADS];
	pthread_t tid[SCAN_THREADS];
	uint32_t nparts = 1, started = 1;
	int64_t found = 0;

	if (final && s->npages >= SCAN_SPLIT_PAGES) {
		long cpus = sysconf(_SC_NPROCESSORS_ONLN);

		nparts = cpus < 2 ? 1 : cpus > SCAN_THREADS ? SCAN_THREADS : (uint32_t)cpus;
	}
	/* Parts start on a 64-pfn boundary: no two threads set bits in one
	 * bitmap word. */
	uint64_t per = (s->npages / nparts + 63) & ~63ull;
	for (uint32_t i = 0; i < nparts; i++) {
		uint64_t first = i * per < s->npages ? i * per : s->npages;
		uint64_t end = i + 1 == nparts || first + per > s->npages ? s->npages : first + per;

		part[i] = (struct scan_part){ s, bitmap, first, end - first, !final, 0 };
	}
	for (; started < nparts; started++)
		if (pthread_create(&tid[started], NULL, scan_part_main, &part[started]))
			break; /* no thread: this one scans the rest itself */
	scan_part_main(&part[0]);
	for (uint32_t i = started; i < nparts; i++)
		scan_part_main(&part[i]);
	for (uint32_t i = 1; i < started; i++)
		pthread_join(tid[i], NULL);
	for (uint32_t i = 0; i < nparts; i++) {
		if (part[i].found < 0)
			return err_setf(s->base.err, (int)part[i].found, "PAGEMAP_SCAN failed: %s",
					strerror((int)-part[i].found));
		found += part[i].found;
	}
	return found;
}

/* Sync mode's collect, under wp_lock: the handler's bits move to `bitmap`,
 * and unless final (the guest is paused for good) the pages are protected
 * again, one call per run of written pages.  When runs are so many that
 * their calls would cost more than one walk over the whole guest (about
 * 1.5 ns a page here against 0.5-1 us a call), one call protects it all;
 * the lock holds the handler off either way, and a vCPU that faulted
 * meanwhile is recorded next time.  Reading the bits is one pass over the
 * bitmap (2^15 words at 8 GiB, some 20 us): the mode's final collect does
 * not grow with the guest's page tables. */
#define SYNC_RUNS_PER_WALK 512 /* one walk when runs average fewer pages */

static int64_t collect_sync(struct synth *s, uint64_t *bitmap, bool final)
{
	uint64_t words = BITMAP_WORDS(s->npages), runs = 0, start = 0;
	bool in_run = false;
	int64_t found = 0;

	for (uint64_t w = 0; w < words; w++) {
		uint64_t bits = s->wp_dirty[w];

		bitmap[w] |= bits;
		found += __builtin_popcountll(bits);
		/* A run starts at a 0->1 step and ends at a 1->0 step. */
		uint64_t prev = in_run ? (bits << 1) | 1 : bits << 1;
		runs += (uint64_t)__builtin_popcountll(bits & ~prev);
		in_run = bits >> 63;
	}
	if (final || !found) {
		memset(s->wp_dirty, 0, words * sizeof(uint64_t));
		return found;
	}
	if (runs > s->npages / SYNC_RUNS_PER_WALK) {
		memset(s->wp_dirty, 0, words * sizeof(uint64_t));
		uffd_wp(s->wp_fd, s->mem, s->mem_len, true);
		return found;
	}
	in_run = false;
	for (uint64_t p = 0; p <= s->npages; p++) {
		bool dirty = p < s->npages && bitmap_test(s->wp_dirty, p);

		if (dirty && !in_run)
			start = p;
		else if (!dirty && in_run)
			uffd_wp(s->wp_fd, page_ptr(s, start), (p - start) * s->page_size, true);
		in_run = dirty;
		if (p < s->npages && !(p % 64) && !s->wp_dirty[p / 64] && !in_run)
			p += 63; /* a clean word: nothing starts or ends in it */
	}
	memset(s->wp_dirty, 0, words * sizeof(uint64_t));
	return found;
}

static int64_t synth_dirty_collect(struct hmig_guest *g, uint64_t *bitmap, unsigned flags)
{
	struct synth *s = to_synth(g);
	bool final = flags & HMIG_COLLECT_FINAL;
	int64_t found = 0;

	switch (s->dirty_mode) {
	case HMIG_DIRTY_WP_ASYNC:
		return scan_async(s, bitmap, final);
	case HMIG_DIRTY_WP_SYNC:
		pthread_mutex_lock(&s->wp_lock);
		found = collect_sync(s, bitmap, final);
		pthread_mutex_unlock(&s->wp_lock);
		return found;
	default:
		return err_setf(s->base.err, -EINVAL, "dirty logging is not on");
	}
}

static int synth_dirty_stop(struct hmig_guest *g)
{
	struct synth *s = to_synth(g);

	if (!s->dirty_mode)
		return 0;
	if (s->dirty_mode == HMIG_DIRTY_WP_SYNC) {
		uint64_t one = 1;

		if (write(s->wp_quit_fd, &one, sizeof(one)) != sizeof(one))
			return err_setf(s->base.err, -errno, "cannot stop the wp handler");
		/* Lift protection before the handler goes, so no vCPU is left
		 * blocked on a fault nobody will read. */
		uffd_wp(s->wp_fd, s->mem, s->mem_len, false);
		pthread_join(s->wp_thread, NULL);
		close(s->wp_quit_fd);
		free(s->wp_dirty);
		s->wp_dirty = NULL;
	} else {
		uffd_wp(s->wp_fd, s->mem, s->mem_len, false);
		close(s->pagemap_fd);
		s->pagemap_fd = -1;
	}
	uffd_unregister(s->wp_fd, s->mem, s->mem_len);
	close(s->wp_fd);
	s->wp_fd = -1;
	s->dirty_mode = 0;
	return 0;
}

/* ------------------------------------------------------------ vCPU state */

/* Blob v4, little-endian:
 *   0  u32 magic "HSYN"   4 u32 version (4)   8 u32 nvcpus   12 u32 page_size
 *  16  u64 npages        24 u64 data_pages   32 u64 seed     40 f64 fill
 *  48  char[128] workload
 * 176  u64 holes (v3: so a destination opened with other holes says so)
 * 184  per vCPU: u64 op, u64 writes, u64 violations, u64 first_bad_pfn,
 *      u64 last_op_wall (v4: when its last op completed, wall clock ns)
 * The page version table is not here: it lives in guest memory (mem_map). */
#define BLOB_MAGIC 0x4e595348u /* "HSYN" */
#define BLOB_VERSION 4u
#define BLOB_HDR 184
#define BLOB_VCPU 40

static int synth_vcpu_save(struct hmig_guest *g, void **blob, size_t *len)
{
	struct synth *s = to_synth(g);
	size_t n = BLOB_HDR + (size_t)s->nvcpus * BLOB_VCPU;
	uint8_t *b = malloc(n), *p;
	uint64_t fill_bits;

	if (!b)
		return err_setf(s->base.err, -ENOMEM, "out of memory for the vCPU state");
	memset(b, 0, BLOB_HDR);
	put_le32(b, BLOB_MAGIC);
	put_le32(b + 4, BLOB_VERSION);
	put_le32(b + 8, s->nvcpus);
	put_le32(b + 12, s->page_size);
	put_le64(b + 16, s->npages);
	put_le64(b + 24, s->data_pages);
	put_le64(b + 32, s->seed);
	memcpy(&fill_bits, &s->fill, 8);
	put_le64(b + 40, fill_bits);
	memcpy(b + 48, s->wl.spec, strnlen(s->wl.spec, WL_SPEC_MAX - 1));
	put_le64(b + 176, s->holes);
	p = b + BLOB_HDR;
	for (uint32_t i = 0; i < s->nvcpus; i++, p += BLOB_VCPU) {
		struct vcpu *v = &s->vcpus[i];

		put_le64(p, atomic_load(&v->op));
		put_le64(p + 8, atomic_load(&v->writes));
		put_le64(p + 16, atomic_load(&v->violations));
		put_le64(p + 24, v->first_bad_pfn);
		put_le64(p + 32, atomic_load(&v->last_op_wall));
	}
	*blob = b;
	*len = n;
	return 0;
}

static int synth_vcpu_restore(struct hmig_guest *g, const void *blob, size_t len)
{
	struct synth *s = to_synth(g);
	const uint8_t *b = blob, *p;
	char spec[WL_SPEC_MAX];
	uint64_t fill_bits;
	int rc;

	if (!s->is_dest || s->restored || s->started)
		return err_setf(s->base.err, -EINVAL, "vcpu_restore: not a fresh destination");
	if (len < BLOB_HDR || get_le32(b) != BLOB_MAGIC)
		return err_setf(s->base.err, -EPROTO, "vCPU state: not a synth guest's state");
	if (get_le32(b + 4) != BLOB_VERSION)
		return err_setf(s->base.err, -EPROTO,
				"vCPU state version %u, this hmig reads %u: use the same hmig version on both hosts",
				get_le32(b + 4), BLOB_VERSION);
	uint32_t nv = get_le32(b + 8);
	uint64_t data = get_le64(b + 24);
	if (nv != s->nvcpus || get_le32(b + 12) != s->page_size || get_le64(b + 16) != s->npages ||
	    len != BLOB_HDR + (size_t)nv * BLOB_VCPU)
		return err_setf(s->base.err, -EPROTO,
				"vCPU state is for another geometry (%u vCPUs, %lu pages; this guest has %u, %lu)",
				nv, (unsigned long)get_le64(b + 16), s->nvcpus,
				(unsigned long)s->npages);
	if (data < nv || data > s->npages || table_pages(data, s->page_size) > s->npages - data)
		return err_setf(s->base.err, -EPROTO,
				"vCPU state: %lu data pages do not fit a %lu-page guest with its version table",
				(unsigned long)data, (unsigned long)s->npages);
	/* The never-sent set is fixed at dest_prepare, before this blob comes:
	 * a destination opened with other holes can only be refused here. */
	if (get_le64(b + 176) != s->holes)
		return err_setf(s->base.err, -EPROTO,
				"vCPU state: the source guest has %lu holes, this destination %lu: open both with the same holes",
				(unsigned long)get_le64(b + 176), (unsigned long)s->holes);
	if (data != s->data_pages)
		return err_setf(s->base.err, -EPROTO,
				"vCPU state: %lu data pages, where this %lu-page guest lays out %lu",
				(unsigned long)data, (unsigned long)s->npages,
				(unsigned long)s->data_pages);
	memcpy(spec, b + 48, WL_SPEC_MAX);
	spec[WL_SPEC_MAX - 1] = '\0';
	rc = wl_parse(spec, &s->wl, s->base.err);
	if (rc)
		return rc;
	s->seed = get_le64(b + 32);
	fill_bits = get_le64(b + 40);
	memcpy(&s->fill, &fill_bits, 8);
	vcpus_layout(s);
	p = b + BLOB_HDR;
	for (uint32_t i = 0; i < s->nvcpus; i++, p += BLOB_VCPU) {
		struct vcpu *v = &s->vcpus[i];

		atomic_store(&v->op, get_le64(p));
		atomic_store(&v->writes, get_le64(p + 8));
		atomic_store(&v->violations, get_le64(p + 16));
		v->first_bad_pfn = get_le64(p + 24);
		v->came_from = get_le64(p + 32);
	}
	s->restored = true;
	return 0;
}

/* ------------------------------------------------------ destination side */

static int synth_dest_prepare(struct hmig_guest *g, const struct hmig_guest_geometry *geo)
{
	struct synth *s = to_synth(g);
	int rc;

	if (!s->is_dest || s->mem)
		return err_setf(s->base.err, -EINVAL, "dest_prepare: called twice");
	if (geo->page_size != SYNTH_PAGE)
		return err_setf(s->base.err, -EINVAL,
				"page size %u not supported: the synth guest uses %u-byte pages",
				geo->page_size, SYNTH_PAGE);
	if (!geo->nvcpus || geo->nvcpus > SYNTH_MAX_VCPUS || geo->npages < geo->nvcpus)
		return err_setf(s->base.err, -EINVAL,
				"geometry of %u vCPUs over %lu pages not supported (1..%u vCPUs, at least one page each)",
				geo->nvcpus, (unsigned long)geo->npages, SYNTH_MAX_VCPUS);
	if (geo->npages - geo->nvcpus < s->gap)
		return err_setf(s->base.err, -EINVAL,
				"geometry of %lu pages cannot hold this destination's %lu holes (a %lu-pfn gap) and %u vCPUs",
				(unsigned long)geo->npages, (unsigned long)s->holes,
				(unsigned long)s->gap, geo->nvcpus);
	s->npages = geo->npages;
	s->page_size = geo->page_size;
	s->nvcpus = geo->nvcpus;
	if ((rc = mem_map(s)) || (rc = vcpus_alloc(s)))
		return rc;
	set_layout(s, s->npages - s->gap);
	s->uffd = uffd_open(0);
	if (s->uffd < 0)
		return err_setf(s->base.err, s->uffd,
				"cannot open userfaultfd: %s (run as root or set vm.unprivileged_userfaultfd=1)",
				strerror(-s->uffd));
	rc = uffd_register(s->uffd, s->mem, s->mem_len, UFFDIO_REGISTER_MODE_MISSING);
	if (rc)
		return err_setf(s->base.err, rc, "cannot register guest memory for missing faults: %s",
				strerror(-rc));
	s->pidfd = (int)syscall(SYS_pidfd_open, getpid(), 0); /* -1: madvise per run */
	return 0;
}

/* Overwrites present pages in place: only before start, when no vCPU runs
 * here to see a half-written page. */
static void overwrite(struct synth *s, uint64_t pfn, uint64_t n, const uint8_t *data)
{
	if (data)
		memcpy(page_ptr(s, pfn), data, n * s->page_size);
	else
		memset(page_ptr(s, pfn), 0, n * s->page_size);
}

/* The engine owns presence (src/engine/pages.c) and says, per run, whether
 * the pages are there to overwrite or missing to place: no bitmap here. */
static int synth_page_install(struct hmig_guest *g, uint64_t pfn, uint32_t n,
			      const void *data, unsigned flags)
{
	struct synth *s = to_synth(g);
	size_t len = (size_t)n * s->page_size, done = 0;
	int rc;

	if (pfn >= s->npages || n > s->npages - pfn)
		return err_setf(s->base.err, -ERANGE, "install: pfns %lu..%lu out of range",
				(unsigned long)pfn, (unsigned long)(pfn + n));
	if (s->faults_over)
		return err_setf(s->base.err, -EINVAL, "install after faults_done");
	if (flags & HMIG_INSTALL_REPLACE) {
		if (s->started)
			return err_setf(s->base.err, -EINVAL,
					"install: pfn %lu replaced while the guest runs",
					(unsigned long)pfn);
		overwrite(s, pfn, n, data);
		return 0;
	}
	rc = data ? uffd_copy(s->uffd, page_ptr(s, pfn), data, len, &done)
		  : uffd_zeropage(s->uffd, page_ptr(s, pfn), len, &done);
	if (rc == -EEXIST)
		return err_setf(s->base.err, rc,
				"install: pfn %lu is already present, the engine thought it missing",
				(unsigned long)(pfn + done / s->page_size));
	if (rc)
		return err_setf(s->base.err, rc, "UFFDIO_COPY at pfn %lu failed: %s",
				(unsigned long)pfn, strerror(-rc));
	return 0;
}

/* Runs gathered per uffd_drop_runs call; a stale set of any size goes in
 * as many calls as it needs. */
#define DROP_IOV 1024

static int drop_runs(struct synth *s, struct iovec *iov, int n)
{
	int rc = uffd_drop_runs(&s->pidfd, iov, (size_t)n);

	if (rc)
		return err_setf(s->base.err, rc, "MADV_DONTNEED of the stale pages failed: %s",
				strerror(-rc));
	return 0;
}

static int64_t synth_pages_drop(struct hmig_guest *g, const uint64_t *bitmap)
{
	struct synth *s = to_synth(g);
	struct iovec iov[DROP_IOV];
	int64_t n = 0;
	uint64_t p = 0;
	int niov = 0, rc;

	if (s->started)
		return err_setf(s->base.err, -EINVAL, "pages_drop after start");
	while ((p = bitmap_next(bitmap, s->npages, p)) < s->npages) {
		uint64_t e = p;

		while (e < s->npages && bitmap_test(bitmap, e))
			e++;
		iov[niov++] = (struct iovec){ page_ptr(s, p), (e - p) * s->page_size };
		if (niov == DROP_IOV) {
			if ((rc = drop_runs(s, iov, niov)))
				return rc;
			niov = 0;
		}
		n += (int64_t)(e - p);
		p = e;
	}
	if (niov && (rc = drop_runs(s, iov, niov)))
		return rc;
	return n;
}

static int synth_fault_fd(struct hmig_guest *g)
{
	struct synth *s = to_synth(g);

	return s->uffd >= 0 ? s->uffd : err_setf(s->base.err, -EBADF, "no fault fd before dest_prepare");
}

static int synth_faults_read(struct hmig_guest *g, uint64_t *pfns, uint32_t max)
{
	struct synth *s = to_synth(g);
	struct uffd_msg msgs[64];
	int n = uffd_read(s->uffd, msgs, max < 64 ? (int)max : 64), out = 0;

	if (n < 0)
		return err_setf(s->base.err, n, "reading userfaultfd: %s", strerror(-n));
	for (int i = 0; i < n; i++)
		if (msgs[i].event == UFFD_EVENT_PAGEFAULT)
			pfns[out++] = (msgs[i].arg.pagefault.address - (uintptr_t)s->mem) /
				      s->page_size;
	return out;
}

static int synth_faults_done(struct hmig_guest *g)
{
	struct synth *s = to_synth(g);
	int rc;

	if (s->faults_over)
		return 0;
	rc = uffd_unregister(s->uffd, s->mem, s->mem_len);
	if (rc)
		return err_setf(s->base.err, rc, "unregistering guest memory: %s", strerror(-rc));
	s->faults_over = true;
	return 0;
}

static int synth_start(struct hmig_guest *g)
{
	struct synth *s = to_synth(g);

	if (!s->is_dest || !s->restored || s->started)
		return err_setf(s->base.err, -EINVAL, "start: restore the vCPU state first, once");
	s->started = true;
	return vcpus_start(s);
}

static void synth_destroy(struct hmig_guest *g)
{
	struct synth *s = to_synth(g);

	/* Unblock vCPUs stuck on missing pages before joining them: after
	 * unregistering, a missing page simply reads as zeros. */
	if (s->is_dest && s->uffd >= 0 && s->mem)
		synth_faults_done(g);
	vcpus_stop(s);
	synth_dirty_stop(g);
	if (s->uffd >= 0)
		close(s->uffd);
	if (s->pidfd >= 0)
		close(s->pidfd);
	if (s->mem)
		munmap(s->mem, s->mem_len);
	free(s->vcpus);
	pthread_mutex_destroy(&s->wp_lock);
	pthread_cond_destroy(&s->parked_cv);
	pthread_cond_destroy(&s->cond);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

static const struct hmig_guest_ops synth_ops = {
	.name = "synth",
	.geometry = synth_geometry,
	.pfns_never_sent = synth_pfns_never_sent,
	.stats = synth_stats,
	.verify = synth_verify,
	.destroy = synth_destroy,
	.run = synth_run,
	.pages_map = synth_pages_map,
	.pages_unmap = synth_pages_unmap,
	.dirty_start = synth_dirty_start,
	.dirty_collect = synth_dirty_collect,
	.dirty_stop = synth_dirty_stop,
	.pause = synth_pause,
	.resume = synth_resume,
	.vcpu_save = synth_vcpu_save,
	.dest_prepare = synth_dest_prepare,
	.page_install = synth_page_install,
	.pages_drop = synth_pages_drop,
	.fault_fd = synth_fault_fd,
	.faults_read = synth_faults_read,
	.faults_done = synth_faults_done,
	.vcpu_restore = synth_vcpu_restore,
	.start = synth_start,
};

static struct synth *synth_alloc(void)
{
	struct synth *s = calloc(1, sizeof(*s));
	pthread_condattr_t ca;

	if (!s)
		return NULL;
	s->base.ops = &synth_ops;
	s->wp_fd = s->pagemap_fd = s->wp_quit_fd = s->uffd = s->pidfd = -1;
	pthread_mutex_init(&s->lock, NULL);
	pthread_mutex_init(&s->wp_lock, NULL);
	/* Paced sleeps use CLOCK_MONOTONIC deadlines. */
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&s->cond, &ca);
	pthread_condattr_destroy(&ca);
	pthread_cond_init(&s->parked_cv, NULL);
	return s;
}

int synth_open_dest_holed(uint64_t holes, struct hmig_guest **out, char *errbuf)
{
	struct synth *s;
	int rc;

	*out = NULL;
	errbuf[0] = '\0';
	if ((rc = holes_check(holes, errbuf)))
		return rc;
	if (!(s = synth_alloc()))
		return err_setf(errbuf, -ENOMEM, "out of memory");
	s->is_dest = true;
	s->holes = holes;
	s->gap = holes_walk(holes, 0, NULL);
	*out = &s->base;
	return 0;
}

int hmig_synth_open_dest(struct hmig_guest **out, char *errbuf)
{
	return synth_open_dest_holed(0, out, errbuf);
}

/* What an opener checks of a source's parameters, the workload aside. */
static int params_check(const struct hmig_synth_params *params, char *errbuf)
{
	if (!params->vcpus || params->vcpus > SYNTH_MAX_VCPUS)
		return err_setf(errbuf, -EINVAL, "bad vCPU count %u: use 1 to %u", params->vcpus,
				SYNTH_MAX_VCPUS);
	if (params->mem_bytes / SYNTH_PAGE < (uint64_t)params->vcpus * 16)
		return err_setf(errbuf, -EINVAL,
				"guest memory of %lu bytes is too small for %u vCPUs: give each at least 64K",
				(unsigned long)params->mem_bytes, params->vcpus);
	if (!(params->fill >= 0 && params->fill <= 1))
		return err_setf(errbuf, -EINVAL, "bad fill fraction %g: use 0 to 1", params->fill);
	return 0;
}

int hmig_synth_params_check(const struct hmig_synth_params *params, char *errbuf)
{
	struct wl_params wl;
	int rc = params_check(params, errbuf);

	return rc ? rc : wl_parse(params->workload, &wl, errbuf);
}

int synth_open_holed(const struct hmig_synth_params *params, uint64_t holes,
		     struct hmig_guest **out, char *errbuf)
{
	struct synth *s;
	int rc;

	*out = NULL;
	errbuf[0] = '\0';
	if (!params)
		return err_setf(errbuf, -EINVAL,
				"no synth parameters: a destination guest comes from hmig_synth_open_dest");
	if (!(s = synth_alloc()))
		return err_setf(errbuf, -ENOMEM, "out of memory");
	s->page_size = SYNTH_PAGE;
	s->npages = params->mem_bytes / SYNTH_PAGE; /* the gap comes on top, below */
	s->nvcpus = params->vcpus;
	s->seed = params->seed ? params->seed : DEFAULT_SEED;
	s->fill = params->fill;
	s->ops_limit = params->ops_limit;
	if ((rc = params_check(params, errbuf)) ||
	    (rc = wl_parse(params->workload, &s->wl, errbuf)) || (rc = holes_check(holes, errbuf)))
		goto fail;
	uint64_t ram = s->npages;
	s->holes = holes;
	s->gap = holes_walk(holes, 0, NULL);
	s->npages += s->gap;
	if ((rc = mem_map(s)) || (rc = vcpus_alloc(s))) {
		snprintf(errbuf, ERR_LEN, "%s", s->base.err);
		goto fail;
	}
	set_layout(s, ram);
	vcpus_layout(s);
	if ((rc = guest_fill(s))) {
		snprintf(errbuf, ERR_LEN, "%s", s->base.err);
		goto fail;
	}
	*out = &s->base;
	return 0;
fail:
	synth_destroy(&s->base);
	return rc;
}

int hmig_synth_open(const struct hmig_synth_params *params, struct hmig_guest **out,
		    char *errbuf)
{
	return synth_open_holed(params, 0, out, errbuf);
}

int hmig_synth_workload_check(const char *spec, char *errbuf)
{
	struct wl_params p;

	return wl_parse(spec, &p, errbuf);
}
