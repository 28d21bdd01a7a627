/* The Xen backend's destination side: a domain the operator created paused
 * from the source's configuration (`xl create -p`), which already holds
 * all its memory (the builder's content) and the pages its own toolstack set
 * up.  hmig overwrites the frames, checks the two domains are the same kind
 * of guest, carries TSC, params and the HVM context in Xen's restore order,
 * and unpauses it at start.
 *
 * Post-copy: the domain comes populated, and Xen 4.17 cannot mark a gfn
 * missing without a page behind it, so frames are made missing when
 * post-copy begins (pages_drop: nominate + evict through the mem_paging
 * ring, paging.c) and loaded back one by one after start.  On a hypervisor
 * without mem_paging the fault fd is refused, and the engine offers no
 * post-copy (include/hmig/guest.h, fault_fd).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "common/bitmap.h"
#include "common/clock.h"
#include "common/err.h"
#include "guest/xen/backend.h"

/* One mapping of every frame, in pfn order (libxenforeignmemory maps any
 * number of gfns in one call, each page after the other), taken at open,
 * before the source connects, and dropped at destroy: neither the io
 * timeout nor the downtime pays for either.  Installs write through it
 * until start, when the domain cannot run, so its frames cannot move under
 * the mapping. */
int xen_map_all(struct xen_guest *x)
{
	int err0;
	int *err = malloc(x->frames * sizeof(int));
	void *p;

	if (!err)
		return err_setf(x->base.err, -ENOMEM, "out of memory for %lu mapping results",
				(unsigned long)x->frames);
	p = xenforeignmemory_map(x->fmem, x->domid, PROT_READ | PROT_WRITE, x->frames, x->gfn, err);
	if (!p) {
		err0 = -errno;
		free(err);
		return xen_fail(x, err0, "cannot map destination domain %u's %lu frames: %s", x->domid,
				(unsigned long)x->frames, strerror(-err0));
	}
	for (uint64_t i = 0; i < x->frames; i++)
		if (err[i]) {
			err0 = err[i] < 0 ? err[i] : -err[i];
			free(err);
			xenforeignmemory_unmap(x->fmem, p, x->frames);
			return xen_fail(x, err0, "cannot map gfn %#lx of destination domain %u: %s",
					(unsigned long)x->gfn[i], x->domid, strerror(-err0));
		}
	free(err);
	x->frames_map = p;
	return 0;
}

void xen_unmap_all(struct xen_guest *x)
{
	if (x->frames_map)
		xenforeignmemory_unmap(x->fmem, x->frames_map, x->frames);
	x->frames_map = NULL;
}

/* The contract's count checks: what HELLO carries. */
int xen_dest_prepare(struct hmig_guest *g, const struct hmig_guest_geometry *geo)
{
	struct xen_guest *x = to_xen(g);
	int rc;

	if (!x->is_dest || x->prepared)
		return err_setf(x->base.err, -EINVAL, "dest_prepare: not a fresh destination");
	if ((rc = xen_dest_check_fresh(x)))
		return rc;
	if (geo->page_size != XEN_PAGE)
		return err_setf(x->base.err, -EINVAL, "the source's pages are %u bytes, Xen's %u",
				geo->page_size, XEN_PAGE);
	if (geo->nvcpus != x->nvcpus)
		return err_setf(x->base.err, -EINVAL,
				"the source's guest has %u vCPUs, destination domain %u has %u: create it from the source's config",
				geo->nvcpus, x->domid, x->nvcpus);
	if (geo->npages != x->frames)
		return err_setf(x->base.err, -EINVAL,
				"the source's guest has %lu frames (%lu MiB), destination domain %u has %lu (%lu MiB): create it from the source's config (memory, maxmem)",
				(unsigned long)geo->npages, (unsigned long)(geo->npages >> 8), x->domid,
				(unsigned long)x->frames, (unsigned long)(x->frames >> 8));
	x->prepared = true;
	return 0;
}

/* The level-1 digest of a frame loaded after start, against the source's
 * at the pause: the guest runs already, so a mismatch cannot stop it; it
 * is kept for verify, which then fails. */
static void digest_loaded(struct xen_guest *x, uint64_t pfn, const void *page)
{
	static const uint8_t zero[XEN_PAGE];

	if (!x->digest)
		return;
	bool bad = xen_frame_digest(page ? page : zero) != x->digest[pfn];
	pthread_mutex_lock(&x->lock);
	x->xs.digest_frames++;
	if (bad && !x->digest_bad++)
		x->digest_first_bad = pfn;
	pthread_mutex_unlock(&x->lock);
}

/* After start: each frame of the run is paged out (the engine installs a
 * missing page once, by pull or push, and nothing else pages frames in),
 * so each is one xc_mem_paging_load, and then the requests that waited
 * for it are answered.  Two threads may load at once, never one frame. */
static int install_running(struct xen_guest *x, uint64_t pfn, uint32_t n, const uint8_t *data)
{
	static const uint8_t zero[XEN_PAGE];

	for (uint32_t i = 0; i < n; i++) {
		uint64_t p = pfn + i;
		const uint8_t *page = data ? data + (size_t)i * XEN_PAGE : NULL;
		uint64_t t0 = clock_now_ns();
		int rc;

		pthread_mutex_lock(&x->pg_lock);
		uint8_t st = x->fstate[p];
		pthread_mutex_unlock(&x->pg_lock);
		if (st != XF_EVICTED)
			return err_setf(x->base.err, -EINVAL,
					"install: pfn %lu of domain %u is not missing (engine bug)",
					(unsigned long)p, x->domid);
		if ((rc = xen_paging_load(x, p, page ? page : zero)))
			return rc;
		digest_loaded(x, p, page);
		uint64_t dt = clock_now_ns() - t0;
		pthread_mutex_lock(&x->pg_lock);
		xen_paging_loaded(x, p);
		pthread_mutex_unlock(&x->pg_lock);
		pthread_mutex_lock(&x->lock);
		x->xs.loaded++;
		x->xs.load_ms += clock_ms(dt);
		pthread_mutex_unlock(&x->lock);
	}
	return 0;
}

/* A populated frame after the whole-guest mapping is gone (a pass that
 * follows a drop, which no source of ours sends). */
static int write_one(struct xen_guest *x, uint64_t pfn, const uint8_t *page)
{
	int rc = 0;
	uint8_t *p = xen_map_frames(x, pfn, 1, PROT_READ | PROT_WRITE, &rc);

	if (!p)
		return rc;
	if (page)
		memcpy(p, page, XEN_PAGE);
	else
		memset(p, 0, XEN_PAGE);
	xenforeignmemory_unmap(x->fmem, p, 1);
	return 0;
}

/* Before start the domain cannot run: a frame still populated is written
 * through the mapping (one memcpy; a write is an install and a replace at
 * once), a frame already paged out is loaded. */
int xen_page_install(struct hmig_guest *g, uint64_t pfn, uint32_t n, const void *data,
		     unsigned flags)
{
	struct xen_guest *x = to_xen(g);
	static const uint8_t zero[XEN_PAGE];
	int rc;

	(void)flags;
	pthread_mutex_lock(&x->pg_lock);
	bool started = x->started;
	pthread_mutex_unlock(&x->pg_lock);
	if (!x->prepared || (started && !x->pg.on))
		return err_setf(x->base.err, -EINVAL, "install: %s",
				started ? "every frame is present already (post-copy ended)"
					: "call dest_prepare first");
	if (pfn >= x->frames || n > x->frames - pfn)
		return err_setf(x->base.err, -ERANGE, "install: pfns %lu..%lu out of range",
				(unsigned long)pfn, (unsigned long)(pfn + n));
	if (started)
		return install_running(x, pfn, n, data);
	for (uint32_t i = 0; i < n; i++) {
		uint64_t p = pfn + i;
		const uint8_t *page = data ? (const uint8_t *)data + (size_t)i * XEN_PAGE : NULL;

		if (x->fstate[p] == XF_EVICTED) {
			if ((rc = xen_paging_load(x, p, page ? page : zero)))
				return rc;
		} else if (x->frames_map) {
			if (page)
				memcpy(x->frames_map + p * XEN_PAGE, page, XEN_PAGE);
			else
				memset(x->frames_map + p * XEN_PAGE, 0, XEN_PAGE);
		} else if ((rc = write_one(x, p, page))) {
			return rc;
		}
		x->fstate[p] = XF_PRESENT;
	}
	return 0;
}

/* Post-copy begins (the engine drops the stale copies, at the switch or in
 * the settle before it): from here every frame the source has not sent,
 * or has rewritten since, must be missing in Xen, so that the guest's
 * first touch asks for it.  That is the named frames and every frame never
 * installed (the domain builder's bytes), so each call evicts both; the
 * engine calls this at the switch even when nothing is stale (guest.h).
 * Eviction cannot be allowed to fail (Otto's rule, DESIGN §4.3): the guest
 * has not run here, so a failure means someone maps the frame; it fails
 * the migration before LOADED, and the source's guest goes on there. */
int64_t xen_pages_drop(struct hmig_guest *g, const uint64_t *bitmap)
{
	struct xen_guest *x = to_xen(g);
	uint64_t t0 = clock_now_ns(), evicted = 0;
	int64_t named = 0;
	int rc;

	if (!x->prepared || x->started)
		return err_setf(x->base.err, -EINVAL, "pages_drop: %s",
				x->started ? "the guest runs already" : "call dest_prepare first");
	if (x->paging_rc)
		return err_setf(x->base.err, x->paging_rc, "%s", x->paging_why);
	/* No frame may be mapped by us when it is nominated. */
	xen_unmap_all(x);
	if ((rc = xen_paging_enable(x)))
		return rc;
	for (uint64_t p = 0; p < x->frames; p++) {
		bool stale = bitmap_test(bitmap, p);

		if (bitmap_test(x->never, p) || x->fstate[p] == XF_EVICTED ||
		    (x->fstate[p] == XF_PRESENT && !stale))
			continue;
		if ((rc = xen_paging_evict(x, p)))
			return rc;
		x->fstate[p] = XF_EVICTED;
		evicted++;
		named += stale;
	}
	pthread_mutex_lock(&x->lock);
	x->xs.paging = true;
	x->xs.evicted += evicted;
	x->xs.evict_ms += clock_ms(clock_now_ns() - t0);
	pthread_mutex_unlock(&x->lock);
	return named;
}

/* Every frame the source can send is made missing now, before the source
 * connects, so that the switch to pure post-copy evicts nothing (the
 * prearm option, include/hmig/xen.h). */
int xen_prearm(struct xen_guest *x)
{
	uint64_t t0 = clock_now_ns(), n = 0;
	int rc;

	if (x->paging_rc)
		return err_setf(x->base.err, x->paging_rc, "prearm: %s", x->paging_why);
	if ((rc = xen_paging_enable(x)))
		return rc;
	for (uint64_t p = 0; p < x->frames; p++) {
		if (bitmap_test(x->never, p))
			continue;
		if ((rc = xen_paging_evict(x, p)))
			return rc;
		x->fstate[p] = XF_EVICTED;
		n++;
	}
	pthread_mutex_lock(&x->lock);
	x->xs.paging = true;
	x->xs.evicted = n;
	x->xs.evict_ms = clock_ms(clock_now_ns() - t0);
	pthread_mutex_unlock(&x->lock);
	return 0;
}

int xen_fault_fd(struct hmig_guest *g)
{
	struct xen_guest *x = to_xen(g);

	if (x->paging_rc)
		return err_setf(x->base.err, x->paging_rc, "%s", x->paging_why);
	return xenevtchn_fd(x->pg.xce);
}

int xen_faults_read(struct hmig_guest *g, uint64_t *pfns, uint32_t max)
{
	return xen_paging_read(to_xen(g), pfns, max);
}

/* Every frame is back: paging goes off (stop-and-copy never turned it on). */
int xen_faults_done(struct hmig_guest *g)
{
	struct xen_guest *x = to_xen(g);
	uint64_t t0 = clock_now_ns();
	int rc;

	if (!x->pg.on)
		return 0;
	for (uint64_t p = 0; p < x->frames; p++)
		if (x->fstate[p] == XF_EVICTED)
			return err_setf(x->base.err, -EINVAL,
					"faults_done: gfn %#lx (pfn %lu) of domain %u is still missing (engine bug)",
					(unsigned long)x->gfn[p], (unsigned long)p, x->domid);
	rc = xen_paging_disable(x);
	pthread_mutex_lock(&x->lock);
	x->xs.paging_off_ms = clock_ms(clock_now_ns() - t0);
	x->xs.requests = x->pg.requests;
	x->xs.foreign_requests = x->pg.foreign;
	pthread_mutex_unlock(&x->lock);
	return rc;
}

/* ----------------------------------------------------------- vCPU state */

/* The rest of the contract: the same guest on both sides. */
static int check_same_guest(struct xen_guest *x, const struct xen_state *st)
{
	if (st->nvcpus != x->nvcpus || st->frames != x->frames)
		return err_setf(x->base.err, -EPROTO,
				"vCPU state is for %u vCPUs and %lu frames, destination domain %u has %u and %lu",
				st->nvcpus, (unsigned long)st->frames, x->domid, x->nvcpus,
				(unsigned long)x->frames);
	if (st->fingerprint != x->fingerprint)
		return err_setf(x->base.err, -EPROTO,
				"the frame lists differ: the source's %lu frames sit at other gfns than destination domain %u's: create it from the source's config (memory, maxmem, type)",
				(unsigned long)st->frames, x->domid);
	if (st->never_sent != x->never_count || st->never_fingerprint != x->never_fingerprint)
		return err_setf(x->base.err, -EPROTO,
				"the host-owned pages differ (%lu on the source, %lu on destination domain %u: xenstore, console, ioreq pages): create it from the source's config",
				(unsigned long)st->never_sent, (unsigned long)x->never_count, x->domid);
	if (st->policy_hash != x->policy_hash)
		return err_setf(x->base.err, -EPROTO,
				"the CPU policies differ (the CPUID and MSRs the guest sees): destination domain %u must come from the source's config on a host whose CPU offers the same",
				x->domid);
	return 0;
}

static int restore_tsc(struct xen_guest *x, const struct xen_state *st)
{
	uint32_t mode, khz, inc;
	uint64_t nsec;

	if (xc_domain_get_tsc_info(x->xch, x->domid, &mode, &nsec, &khz, &inc))
		return xen_fail(x, -errno, "cannot read domain %u's TSC mode: %s", x->domid,
				strerror(errno));
	if (mode == st->tsc_mode && nsec == st->tsc_nsec && khz == st->tsc_khz &&
	    inc == st->tsc_incarnation)
		return 0; /* one config on one host: always so */
	if (xc_domain_set_tsc_info(x->xch, x->domid, st->tsc_mode, st->tsc_nsec, st->tsc_khz,
				   st->tsc_incarnation))
		return xen_fail(x, -errno, "cannot set domain %u's TSC mode to the source's (%u): %s",
				x->domid, st->tsc_mode, strerror(errno));
	return 0;
}

/* Params before the context, as Xen restores them: some decide what the
 * context may hold.  Those naming a host-owned page must already agree (each
 * domain keeps the pages its own toolstack set up); the rest are set where
 * they differ, and a set-once param that differs is a config mismatch. */
static int restore_params(struct xen_guest *x, const struct xen_state *st)
{
	for (uint32_t i = 0; i < st->nparams; i++) {
		uint32_t idx = st->params[i].index;
		const struct xen_param_info *p = xen_param(idx);
		uint64_t want = st->params[i].value, have;

		if (!p)
			return err_setf(x->base.err, -EPROTO,
					"vCPU state: HVM param %u is not one Xen's save carries", idx);
		if (xc_hvm_param_get(x->xch, x->domid, idx, &have))
			return xen_fail(x, -errno, "cannot read domain %u's HVM param %s: %s", x->domid,
					p->name, strerror(errno));
		if (have == want)
			continue;
		if (p->places_page)
			return err_setf(x->base.err, -EPROTO,
					"HVM param %s differs (source %#llx, destination domain %u %#llx): create it from the source's config",
					p->name, (unsigned long long)want, x->domid,
					(unsigned long long)have);
		if (xc_hvm_param_set(x->xch, x->domid, idx, want))
			return xen_fail(x, errno == EEXIST ? -EPROTO : -errno,
					"cannot set domain %u's HVM param %s to the source's %#llx (it has %#llx): %s",
					x->domid, p->name, (unsigned long long)want,
					(unsigned long long)have,
					errno == EEXIST ? "it is set once, create the domain from the source's config"
							: strerror(errno));
	}
	return 0;
}

int xen_vcpu_restore(struct hmig_guest *g, const void *blob, size_t len)
{
	struct xen_guest *x = to_xen(g);
	struct xen_state st;
	int rc;

	if (!x->prepared || x->restored)
		return err_setf(x->base.err, -EINVAL, "vcpu_restore: not a prepared destination");
	if ((rc = xen_state_decode(blob, len, &st, x->base.err)) ||
	    (rc = check_same_guest(x, &st)) || (rc = restore_tsc(x, &st)) ||
	    (rc = restore_params(x, &st)))
		return rc;
	if (xc_domain_hvm_setcontext(x->xch, x->domid, (uint8_t *)st.ctx, st.ctx_len))
		return xen_fail(x, -errno, "cannot set domain %u's HVM context (%u bytes): %s",
				x->domid, st.ctx_len, strerror(errno));
	if (st.digest_kind == XEN_DIGEST_FRAME) {
		x->digest = malloc(x->frames * sizeof(uint32_t));
		if (!x->digest)
			return err_setf(x->base.err, -ENOMEM, "out of memory for %lu digests",
					(unsigned long)x->frames);
		for (uint64_t i = 0; i < x->frames; i++)
			x->digest[i] = xen_state_digest(&st, i);
	}
	pthread_mutex_lock(&x->lock);
	x->xs.digest = x->digest != NULL;
	x->xs.ops_at_pause = st.hmigt_ops;
	x->xs.hmigt = st.hmigt_ops != XEN_STATE_NO_HMIGT;
	pthread_mutex_unlock(&x->lock);
	x->restored = true;
	return 0;
}

/* ---------------------------------------------------------------- start */

/* Level 1: every frame present must be what the source had at the pause.
 * Checked before the unpause, so a wrong frame never runs.  start comes
 * with the source's COMMIT, after which the source does not resume its
 * guest either: on a mismatch both domains stay paused, the source's
 * intact (docs/xen.md).  In post-copy the missing frames are checked as
 * they are loaded (digest_loaded).  Only present frames are read: mapping
 * a paged-out one would wait for it. */
static int check_digests(struct xen_guest *x)
{
	uint64_t t0 = clock_now_ns(), bad = 0, first_bad = 0, checked = 0;
	int rc = 0;

	for (uint64_t pfn = 0; pfn < x->frames;) {
		if (x->fstate[pfn] != XF_PRESENT || bitmap_test(x->never, pfn)) {
			pfn++;
			continue;
		}
		uint32_t n = 1;
		while (n < XEN_BATCH && pfn + n < x->frames && x->fstate[pfn + n] == XF_PRESENT &&
		       !bitmap_test(x->never, pfn + n))
			n++;
		const uint8_t *p = x->frames_map ? x->frames_map + pfn * XEN_PAGE
						 : xen_map_frames(x, pfn, n, PROT_READ, &rc);
		if (!p)
			return rc;
		for (uint32_t i = 0; i < n; i++, checked++)
			if (xen_frame_digest(p + (size_t)i * XEN_PAGE) != x->digest[pfn + i] && !bad++)
				first_bad = pfn + i;
		if (!x->frames_map)
			xenforeignmemory_unmap(x->fmem, (void *)p, n);
		pfn += n;
	}
	pthread_mutex_lock(&x->lock);
	x->xs.digest_frames = checked;
	x->xs.digest_ms = clock_ms(clock_now_ns() - t0);
	pthread_mutex_unlock(&x->lock);
	if (bad)
		return err_setf(x->base.err, -EBADMSG,
				"integrity (digest): %lu frames differ from the source's at the pause, the first gfn %#lx (pfn %lu): domain %u stays paused",
				(unsigned long)bad, (unsigned long)x->gfn[first_bad],
				(unsigned long)first_bad, x->domid);
	return 0;
}

int xen_start(struct hmig_guest *g)
{
	struct xen_guest *x = to_xen(g);
	int rc;

	if (!x->restored || x->started)
		return err_setf(x->base.err, -EINVAL, "start: restore the vCPU state first, once");
	/* Stop-and-copy brings every frame before start; post-copy made the
	 * rest missing at the switch (pages_drop).  Anything else would run
	 * the guest on the domain builder's bytes. */
	for (uint64_t p = 0; p < x->frames; p++)
		if (x->fstate[p] == XF_STALE && !bitmap_test(x->never, p))
			return err_setf(x->base.err, -EPROTO,
					"start: gfn %#lx (pfn %lu) of domain %u was never sent nor made missing (engine bug)",
					(unsigned long)x->gfn[p], (unsigned long)p, x->domid);
	if (x->digest && (rc = check_digests(x)))
		return rc;
	/* Before the unpause: the first fault's frame may be pulled and
	 * installed (on the fault thread) before this thread is back. */
	if (x->xs.hmigt)
		x->ops_base = x->xs.ops_at_pause;
	pthread_mutex_lock(&x->pg_lock);
	x->started = true;
	pthread_mutex_unlock(&x->pg_lock);
	/* The one pause `xl create -p` left. */
	if (xc_domain_unpause(x->xch, x->domid)) {
		rc = xen_fail(x, -errno, "cannot unpause domain %u: %s", x->domid, strerror(errno));
		pthread_mutex_lock(&x->pg_lock);
		x->started = false;
		pthread_mutex_unlock(&x->pg_lock);
		return rc;
	}
	/* The whole-guest mapping (stop-and-copy's: post-copy dropped it in
	 * pages_drop) stays until destroy: nothing writes through it any
	 * more, and dom0 mapping a running guest's frames is what any device
	 * model does.  Unmapping it costs about 4 us a frame under the test
	 * bed's TCG, 120 ms for 128 MiB: here, before the engine sends
	 * RESUMED, it would count as downtime (before the unpause it was half
	 * of that guest's 210 ms). */
	return 0;
}
