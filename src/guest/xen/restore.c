/* The Xen backend's destination side: a domain the operator created paused
 * from the source's configuration (`xl create -p`), which already holds
 * all its memory (the builder's content) and the pages its own toolstack set
 * up.  hmig overwrites the frames, checks the two domains are the same kind
 * of guest, carries TSC, params and the HVM context in Xen's restore order,
 * and unpauses it at start.
 *
 * Post-copy is not here yet: it needs Xen's mem_paging ring to leave frames
 * missing (DESIGN §4), so this backend has no fault fd and the engine never
 * offers post-copy for it (include/hmig/guest.h, fault_fd).
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

/* Every frame is populated, present or "missing" alike, and the domain
 * cannot run before start: a write through the mapping is an install and a
 * replace at once. */
int xen_page_install(struct hmig_guest *g, uint64_t pfn, uint32_t n, const void *data,
		     unsigned flags)
{
	struct xen_guest *x = to_xen(g);

	(void)flags;
	if (!x->prepared || x->started)
		return err_setf(x->base.err, -EINVAL, "install: %s",
				x->started ? "the guest runs already (no post-copy for Xen guests)"
					   : "call dest_prepare first");
	if (pfn >= x->frames || n > x->frames - pfn)
		return err_setf(x->base.err, -ERANGE, "install: pfns %lu..%lu out of range",
				(unsigned long)pfn, (unsigned long)(pfn + n));
	if (data)
		memcpy(x->frames_map + pfn * XEN_PAGE, data, (size_t)n * XEN_PAGE);
	else
		memset(x->frames_map + pfn * XEN_PAGE, 0, (size_t)n * XEN_PAGE);
	return 0;
}

static int no_postcopy(struct xen_guest *x)
{
	return err_setf(x->base.err, -EOPNOTSUPP,
			"post-copy is not there yet for Xen guests (it needs Xen's mem_paging): use --mode precopy or hybrid");
}

int64_t xen_pages_drop(struct hmig_guest *g, const uint64_t *bitmap)
{
	(void)bitmap;
	return no_postcopy(to_xen(g));
}

int xen_fault_fd(struct hmig_guest *g)
{
	return no_postcopy(to_xen(g));
}

int xen_faults_read(struct hmig_guest *g, uint64_t *pfns, uint32_t max)
{
	(void)pfns;
	(void)max;
	return no_postcopy(to_xen(g));
}

/* Nothing traps: every frame was present all along. */
int xen_faults_done(struct hmig_guest *g)
{
	(void)g;
	return 0;
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

struct digest_check {
	const uint32_t *want;
	uint64_t bad, first_bad;
};

static int digest_cmp(void *ctx, uint64_t pfn, const void *page)
{
	struct digest_check *c = ctx;

	if (xen_frame_digest(page) != c->want[pfn] && !c->bad++)
		c->first_bad = pfn;
	return 0;
}

/* Level 1: every frame must be what the source had at the pause.  Checked
 * before the unpause, so a wrong frame never runs.  start comes with the
 * source's COMMIT, after which the source does not resume its guest either:
 * on a mismatch both domains stay paused, the source's intact (docs/xen.md). */
static int check_digests(struct xen_guest *x)
{
	struct digest_check c = { .want = x->digest };
	uint64_t t0 = clock_now_ns();
	int rc = xen_each_frame(x, digest_cmp, &c);

	if (rc)
		return rc;
	pthread_mutex_lock(&x->lock);
	x->xs.digest_frames = x->frames - x->never_count;
	x->xs.digest_ms = clock_ms(clock_now_ns() - t0);
	pthread_mutex_unlock(&x->lock);
	if (c.bad)
		return err_setf(x->base.err, -EBADMSG,
				"integrity (digest): %lu frames differ from the source's at the pause, the first gfn %#lx (pfn %lu): domain %u stays paused",
				(unsigned long)c.bad, (unsigned long)x->gfn[c.first_bad],
				(unsigned long)c.first_bad, x->domid);
	return 0;
}

int xen_start(struct hmig_guest *g)
{
	struct xen_guest *x = to_xen(g);
	int rc;

	if (!x->restored || x->started)
		return err_setf(x->base.err, -EINVAL, "start: restore the vCPU state first, once");
	if (x->digest && (rc = check_digests(x)))
		return rc;
	/* The one pause `xl create -p` left. */
	if (xc_domain_unpause(x->xch, x->domid))
		return xen_fail(x, -errno, "cannot unpause domain %u: %s", x->domid, strerror(errno));
	x->started = true;
	if (x->xs.hmigt)
		x->ops_base = x->xs.ops_at_pause;
	/* The whole-guest mapping stays until destroy: nothing writes through
	 * it any more, and dom0 mapping a running guest's frames is what any
	 * device model does.  Unmapping it costs about 4 us a frame under the
	 * test bed's TCG, 120 ms for 128 MiB: here, before the engine sends
	 * RESUMED, it would count as downtime (before the unpause it was half
	 * of that guest's 210 ms). */
	return 0;
}
