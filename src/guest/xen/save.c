/* The Xen backend's source side: reading frames, HAP log-dirty, and the
 * state a paused PVH domain carries besides its memory (state.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "common/bitmap.h"
#include "common/clock.h"
#include "common/err.h"
#include "guest/xen/backend.h"

/* The domain runs already: it was running before hmig opened it. */
int xen_run(struct hmig_guest *g)
{
	(void)g;
	return 0;
}

/* One foreign mapping per batch, read-only: the pages come back one after
 * the other, so the sender merges runs of them into one iovec. */
int xen_pages_map(struct hmig_guest *g, const uint64_t *pfns, uint32_t n, const void **ptrs)
{
	struct xen_guest *x = to_xen(g);
	xen_pfn_t gfns[XEN_BATCH];
	int rc = 0;

	if (n == 0 || n > XEN_BATCH)
		return err_setf(x->base.err, -EINVAL, "pages_map: %u pages, 1 to %u", n, XEN_BATCH);
	for (uint32_t i = 0; i < n; i++) {
		if (pfns[i] >= x->frames)
			return err_setf(x->base.err, -ERANGE, "pages_map: pfn %lu out of range",
					(unsigned long)pfns[i]);
		gfns[i] = x->gfn[pfns[i]];
	}
	const uint8_t *p = xen_map_gfns(x, gfns, n, PROT_READ, &rc);
	if (!p)
		return rc;
	for (uint32_t i = 0; i < n; i++)
		ptrs[i] = p + (size_t)i * XEN_PAGE;
	return 0;
}

void xen_pages_unmap(struct hmig_guest *g, const uint64_t *pfns, uint32_t n, const void **ptrs)
{
	struct xen_guest *x = to_xen(g);

	(void)pfns;
	if (n)
		xenforeignmemory_unmap(x->fmem, (void *)ptrs[0], n);
}

/* ------------------------------------------------------------ log-dirty */

int xen_dirty_start(struct hmig_guest *g, enum hmig_dirty_mode want)
{
	struct xen_guest *x = to_xen(g);

	if (want != HMIG_DIRTY_AUTO && want != HMIG_DIRTY_BACKEND)
		return err_setf(x->base.err, -EINVAL,
				"a Xen guest's writes are logged by Xen itself: leave the dirty knob at auto");
	if (x->logdirty)
		return HMIG_DIRTY_BACKEND;
	/* A save that died (an hmig or xl killed mid-migration) leaves the
	 * mode on and a second ENABLE fails: Xen's own save then turns it off
	 * and on again, and so does this. */
	if (xc_shadow_control(x->xch, x->domid, XEN_DOMCTL_SHADOW_OP_ENABLE_LOGDIRTY, NULL, 0) &&
	    (xc_shadow_control(x->xch, x->domid, XEN_DOMCTL_SHADOW_OP_OFF, NULL, 0) ||
	     xc_shadow_control(x->xch, x->domid, XEN_DOMCTL_SHADOW_OP_ENABLE_LOGDIRTY, NULL, 0)))
		return xen_fail(x, -errno, "cannot turn on log-dirty mode for domain %u: %s", x->domid,
				strerror(errno));
	x->logdirty = true;
	if (!x->dirty_hbuf.hbuf) {
		uint64_t bytes = (x->nr_gpfns + 7) / 8;

		x->dirty_hbuf_pages = (int)((bytes + XEN_PAGE - 1) / XEN_PAGE);
		if (!xc__hypercall_buffer_alloc_pages(x->xch, &x->dirty_hbuf, x->dirty_hbuf_pages))
			return xen_fail(x, -ENOMEM, "out of memory for a %d-page dirty bitmap",
					x->dirty_hbuf_pages);
	}
	return HMIG_DIRTY_BACKEND;
}

/* CLEAN reads and clears Xen's bitmap with the domain held still under the
 * paging lock, so a write that races with it lands in this bitmap or the
 * next (guest.h's contract).  The bitmap is over gfns; the walk over the
 * frame list turns it into pfns and drops the pages the host owns. */
int64_t xen_dirty_collect(struct hmig_guest *g, uint64_t *bitmap, unsigned flags)
{
	struct xen_guest *x = to_xen(g);
	DECLARE_HYPERCALL_BUFFER_SHADOW(unsigned long, bm, &x->dirty_hbuf);
	xc_shadow_op_stats_t st;
	int64_t found = 0;

	if (!x->logdirty)
		return err_setf(x->base.err, -EINVAL, "dirty_collect before dirty_start");
	/* A guest that died in pre-copy stops it here, not at the pause: one
	 * hypercall a pass. */
	xc_dominfo_t info;
	int rc = xen_getinfo(x, &info);

	if (rc || (rc = xen_check_alive(x, &info, "during pre-copy")))
		return rc;
	/* In the paused final collect, FINAL also marks the pages dom0 holds
	 * mapped for writing (Xen's own save passes it there). */
	long long r = xc_logdirty_control(x->xch, x->domid, XEN_DOMCTL_SHADOW_OP_CLEAN,
					  HYPERCALL_BUFFER(bm), x->nr_gpfns,
					  flags & HMIG_COLLECT_FINAL ? XEN_DOMCTL_SHADOW_LOGDIRTY_FINAL : 0,
					  &st);
	if (r != (long long)x->nr_gpfns)
		return xen_fail(x, r < 0 ? -errno : -EIO,
				"cannot read domain %u's dirty log: %s", x->domid,
				r < 0 ? strerror(errno) : "short bitmap");
	for (uint64_t i = 0; i < x->frames; i++) {
		xen_pfn_t gfn = x->gfn[i];

		if ((bm[gfn / (8 * sizeof(*bm))] >> (gfn % (8 * sizeof(*bm)))) & 1 &&
		    !bitmap_test(x->never, i)) {
			bitmap_set(bitmap, i);
			found++;
		}
	}
	return found;
}

int xen_dirty_stop(struct hmig_guest *g)
{
	struct xen_guest *x = to_xen(g);

	if (!x->logdirty)
		return 0;
	x->logdirty = false;
	if (xc_shadow_control(x->xch, x->domid, XEN_DOMCTL_SHADOW_OP_OFF, NULL, 0))
		return xen_fail(x, -errno, "cannot turn log-dirty mode off for domain %u: %s", x->domid,
				strerror(errno));
	return 0;
}

/* ------------------------------------------------------------ vCPU state */

struct digest_pass {
	uint32_t *out;
};

static int digest_one(void *ctx, uint64_t pfn, const void *page)
{
	struct digest_pass *d = ctx;

	d->out[pfn] = xen_frame_digest(page);
	return 0;
}

/* The memory layout must be what open saw: a balloon driver or a
 * hot-plugged page would leave the destination with the wrong frames. */
static int check_layout(struct xen_guest *x)
{
	xc_dominfo_t info;
	xen_pfn_t nr;
	int rc;

	if ((rc = xen_getinfo(x, &info)) ||
	    (rc = xen_check_alive(x, &info, "during the migration, before its pause")))
		return rc;
	if (xc_domain_nr_gpfns(x->xch, x->domid, &nr))
		return xen_fail(x, -errno, "cannot read domain %u's address space size: %s",
				x->domid, strerror(errno));
	if (nr != x->nr_gpfns || info.nr_pages != x->nr_pages)
		return err_setf(x->base.err, -EBUSY,
				"domain %u changed its memory during the migration (%lu pages, %lu at the start; ballooning?): migrate it again",
				x->domid, info.nr_pages, x->nr_pages);
	return 0;
}

static int read_params(struct xen_guest *x, struct xen_state *st)
{
	st->nparams = XEN_SAVED_PARAMS;
	for (uint32_t i = 0; i < XEN_SAVED_PARAMS; i++) {
		st->params[i].index = xen_saved_params[i].index;
		if (xc_hvm_param_get(x->xch, x->domid, st->params[i].index, &st->params[i].value))
			return xen_fail(x, -errno, "cannot read domain %u's HVM param %s: %s", x->domid,
					xen_saved_params[i].name, strerror(errno));
	}
	return 0;
}

/* What Xen's own save sends for an HVM/PVH guest besides memory (TSC info,
 * the 16 HVM params, the HVM context), and what lets the destination check
 * it holds the same guest: the frame list's fingerprint, the CPU policy's
 * hash; then the oracle's part (hmigt's op count, the level-1 digests). */
int xen_vcpu_save(struct hmig_guest *g, void **blob, size_t *len)
{
	struct xen_guest *x = to_xen(g);
	struct xen_state st = {
		.nvcpus = x->nvcpus, .frames = x->frames, .fingerprint = x->fingerprint,
		.never_sent = x->never_count, .never_fingerprint = x->never_fingerprint,
		.policy_hash = x->policy_hash, .hmigt_ops = XEN_STATE_NO_HMIGT,
	};
	uint8_t *ctx = NULL;
	uint32_t *digest = NULL;
	int rc;

	*blob = NULL;
	if (!x->paused)
		return err_setf(x->base.err, -EINVAL, "vcpu_save: pause the guest first");
	if ((rc = check_layout(x)) || (rc = read_params(x, &st)))
		return rc;
	if (xc_domain_get_tsc_info(x->xch, x->domid, &st.tsc_mode, &st.tsc_nsec, &st.tsc_khz,
				   &st.tsc_incarnation))
		return xen_fail(x, -errno, "cannot read domain %u's TSC mode: %s", x->domid,
				strerror(errno));
	if ((rc = xen_hvm_context(x, &ctx, &st.ctx_len)))
		return rc;
	st.ctx = ctx;
	if (x->ctl && x->ctl->magic == HMIGT_CTL_MAGIC)
		st.hmigt_ops = x->ctl->ops_done;
	if (x->opts.digest) {
		uint64_t t0 = clock_now_ns();
		struct digest_pass d = { calloc(x->frames, sizeof(uint32_t)) };

		if (!d.out) {
			rc = err_setf(x->base.err, -ENOMEM, "out of memory for %lu digests",
				      (unsigned long)x->frames);
			goto out;
		}
		digest = d.out;
		if ((rc = xen_each_frame(x, digest_one, &d)))
			goto out;
		st.digest_kind = XEN_DIGEST_FRAME;
		st.digest = digest;
		pthread_mutex_lock(&x->lock);
		x->xs.digest = true;
		x->xs.digest_frames = x->frames - x->never_count;
		x->xs.digest_ms = clock_ms(clock_now_ns() - t0);
		pthread_mutex_unlock(&x->lock);
	}
	pthread_mutex_lock(&x->lock);
	x->xs.ops_at_pause = st.hmigt_ops;
	pthread_mutex_unlock(&x->lock);
	rc = xen_state_encode(&st, blob, len, x->base.err);
out:
	free(ctx);
	free(digest);
	return rc;
}
