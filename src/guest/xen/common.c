/* The Xen backend: opening a domain, its frame list, and the members both
 * sides share (geometry, never-sent pfns, stats, the oracle, pause).  The
 * source's members are in save.c, the destination's in restore.c.
 *
 * The pfn space is a compacted frame list, not the guest's physical address
 * space: hmig pfn i is the i-th populated RAM gfn in ascending order.  A
 * 64 MiB PVH guest has 0xff000 gfns of address space (its special pages sit
 * just below 4 GiB) but about 16400 frames; numbering gfns directly would
 * make the geometry, the report and every per-pfn table claim a 4 GiB guest.
 * The pages the host owns (the console and xenstore rings and the other
 * pages HVM params name) stay in the list, since both domains have them, and
 * are marked never-sent: each side's toolstack set its own up.
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "common/bitmap.h"
#include "common/clock.h"
#include "common/err.h"
#include "guest/xen/backend.h"

#include <xenguest.h> /* the CPU policy calls; needs xenctrl.h first */

/* Exported by libxenctrl (every symbol of it is global) but declared only in
 * its private xc_private.h: XEN_DOMCTL_getpageframeinfo3, the type of each
 * of `num` gfns in place.  Xen's own save calls it for the same purpose. */
int xc_get_pfn_type_batch(xc_interface *xch, uint32_t dom, unsigned int num, xen_pfn_t *arr);

/* ------------------------------------------------------------ messages */

static void log_vmessage(xentoollog_logger *l, xentoollog_level level, int errnoval,
			 const char *context, const char *format, va_list al)
{
	struct xen_log *log = (struct xen_log *)l;

	(void)errnoval;
	(void)context;
	if (level < XTL_WARN)
		return;
	pthread_mutex_lock(&log->lock);
	vsnprintf(log->last, sizeof(log->last), format, al);
	log->last[strcspn(log->last, "\n")] = '\0';
	pthread_mutex_unlock(&log->lock);
}

static void log_destroy(xentoollog_logger *l)
{
	(void)l; /* embedded in the guest, freed with it */
}

/* err_setf on the guest's line, with libxenctrl's own last word appended
 * when it had one. */
int xen_fail(struct xen_guest *x, int rc, const char *fmt, ...)
{
	char msg[ERR_LEN];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	pthread_mutex_lock(&x->log.lock);
	if (x->log.last[0])
		err_setf(x->base.err, rc, "%s (xen: %.90s)", msg, x->log.last);
	else
		err_setf(x->base.err, rc, "%s", msg);
	x->log.last[0] = '\0';
	pthread_mutex_unlock(&x->log.lock);
	return rc;
}

/* --------------------------------------------------------- the domain */

int xen_getinfo(struct xen_guest *x, xc_dominfo_t *info)
{
	int n = xc_domain_getinfo(x->xch, x->domid, 1, info);

	/* It answers the first domain at or after domid (ESRCH when there is
	 * none): check it is ours. */
	if (n < 0 && errno != ESRCH)
		return xen_fail(x, -errno, "cannot read domain %u's state: %s", x->domid,
				strerror(errno));
	if (n != 1 || info->domid != x->domid || info->dying)
		return xen_fail(x, -ESRCH, "no Xen domain %u here (`xl list` shows the domains)",
				x->domid);
	return 0;
}

/* A domain that shut down (a triple fault is a reboot, `xl shutdown` a
 * poweroff) or crashed stays until destroyed, paused for good: there is
 * nothing running to move.  `when` says since when: "" at open, else the
 * step that found it. */
int xen_check_alive(struct xen_guest *x, const xc_dominfo_t *info, const char *when)
{
	static const char *const why[] = { "powered off", "rebooted", "suspended", "crashed",
					   "was reset by its watchdog" };

	if (!info->shutdown && !info->crashed)
		return 0;
	const char *what = info->crashed ? "crashed" :
			   info->shutdown_reason < sizeof(why) / sizeof(why[0])
				   ? why[info->shutdown_reason] : "shut down";
	return xen_fail(x, -ESRCH, "domain %u %s%s%s: there is nothing running to move (`xl dmesg` says why)",
			x->domid, what, *when ? " " : "", when);
}

/* What hmig can move: a PVH guest (an HVM container with no device model)
 * on hardware-assisted paging, alive. */
static int check_kind(struct xen_guest *x, const xc_dominfo_t *info)
{
	int rc = xen_check_alive(x, info, "");

	if (rc)
		return rc;
	if (!info->hvm)
		return xen_fail(x, -EOPNOTSUPP,
				"domain %u is a PV guest: hmig moves PVH guests only (docs/xen.md)",
				x->domid);
	if (info->arch_config.emulation_flags & ~XEN_X86_EMU_LAPIC)
		return xen_fail(x, -EOPNOTSUPP,
				"domain %u is an HVM guest with emulated devices: hmig moves PVH guests only, the device model's state is not carried (docs/xen.md)",
				x->domid);
	if (!info->hap)
		return xen_fail(x, -EOPNOTSUPP,
				"domain %u runs on shadow paging: hmig needs hardware-assisted paging (HAP) for its dirty log",
				x->domid);
	return 0;
}

/* A destination must be exactly what `xl create -p` left: paused, and never
 * run (a guest that ran has state of its own that hmig would overwrite
 * under it).  Checked at open and again at dest_prepare. */
int xen_dest_check_fresh(struct xen_guest *x)
{
	xc_dominfo_t info;
	int rc = xen_getinfo(x, &info);

	if (rc)
		return rc;
	if (!info.paused || info.cpu_time)
		return xen_fail(x, -EBUSY,
				"destination domain %u %s: create it with `xl create -p` from the source's config and do not unpause it",
				x->domid, !info.paused ? "is not paused" : "has already run");
	return 0;
}

static int check_no_pod(struct xen_guest *x)
{
	uint64_t tot, cache, entries;

	if (xc_domain_get_pod_target(x->xch, x->domid, &tot, &cache, &entries))
		return xen_fail(x, -errno, "cannot read domain %u's populate-on-demand target: %s",
				x->domid, strerror(errno));
	if (entries)
		return xen_fail(x, -EINVAL,
				"destination domain %u uses populate-on-demand (%llu entries: maxmem above memory): set maxmem = memory in its config",
				x->domid, (unsigned long long)entries);
	return 0;
}

/* ------------------------------------------------------ the frame list */

/* The 16 HVM params Xen's own save carries (xg_sr_save_x86_hvm.c), and
 * which of them place a page the host owns: those define the never-sent
 * set, so the two domains must agree on them rather than have one
 * overwrite the other's (the destination's xenstored and xenconsoled map
 * its own pages). */
#define P(name, places_page) { HVM_PARAM_##name, #name, places_page }
const struct xen_param_info xen_saved_params[XEN_SAVED_PARAMS] = {
	P(STORE_PFN, true), P(IOREQ_PFN, true), P(BUFIOREQ_PFN, true),
	P(PAGING_RING_PFN, true), P(MONITOR_RING_PFN, true), P(SHARING_RING_PFN, true),
	P(VM86_TSS_SIZED, false), P(CONSOLE_PFN, true), P(ACPI_IOPORTS_LOCATION, false),
	P(VIRIDIAN, false), P(IDENT_PT, true), P(VM_GENERATION_ID_ADDR, false),
	P(IOREQ_SERVER_PFN, true), P(NR_IOREQ_SERVER_PAGES, true), P(X87_FIP_WIDTH, false),
	P(MCA_CAP, false),
};
#undef P

const struct xen_param_info *xen_param(uint32_t index)
{
	for (unsigned i = 0; i < XEN_SAVED_PARAMS; i++)
		if (xen_saved_params[i].index == index)
			return &xen_saved_params[i];
	return NULL;
}

static int add_frame(struct xen_guest *x, uint64_t *cap, xen_pfn_t gfn)
{
	if (x->frames == *cap) {
		uint64_t n = *cap ? *cap * 2 : 16384;
		xen_pfn_t *p = realloc(x->gfn, n * sizeof(*p));

		if (!p)
			return err_setf(x->base.err, -ENOMEM, "out of memory for the frame list");
		x->gfn = p;
		*cap = n;
	}
	x->gfn[x->frames++] = gfn;
	return 0;
}

/* Every gfn of the address space whose type says it holds RAM; holes, Xen's
 * own pages mapped into the guest, broken and not-yet-allocated pages are
 * not frames.  A pass over the whole address space, about 1 s under the
 * test bed's TCG: done at open, never inside the downtime. */
static int scan_frames(struct xen_guest *x)
{
	xen_pfn_t arr[XEN_BATCH];
	uint64_t cap = 0;
	int rc;

	if (xc_domain_nr_gpfns(x->xch, x->domid, &x->nr_gpfns))
		return xen_fail(x, -errno, "cannot read domain %u's address space size: %s",
				x->domid, strerror(errno));
	for (xen_pfn_t g = 0; g < x->nr_gpfns; g += XEN_BATCH) {
		unsigned k = x->nr_gpfns - g < XEN_BATCH ? (unsigned)(x->nr_gpfns - g) : XEN_BATCH;

		for (unsigned i = 0; i < k; i++)
			arr[i] = g + i;
		if (xc_get_pfn_type_batch(x->xch, x->domid, k, arr))
			return xen_fail(x, -errno, "cannot read domain %u's frame types at gfn %#lx: %s",
					x->domid, (unsigned long)g, strerror(errno));
		for (unsigned i = 0; i < k; i++) {
			unsigned long t = arr[i] & XEN_DOMCTL_PFINFO_LTAB_MASK;

			if (t == XEN_DOMCTL_PFINFO_XTAB || t == XEN_DOMCTL_PFINFO_BROKEN ||
			    t == XEN_DOMCTL_PFINFO_XALLOC)
				continue;
			if ((rc = add_frame(x, &cap, g + i)))
				return rc;
		}
	}
	if (!x->frames)
		return xen_fail(x, -EINVAL, "domain %u has no memory", x->domid);
	return 0;
}

uint64_t xen_pfn_of_gfn(const struct xen_guest *x, xen_pfn_t gfn)
{
	uint64_t lo = 0, hi = x->frames;

	while (lo < hi) {
		uint64_t mid = lo + (hi - lo) / 2;

		if (x->gfn[mid] < gfn)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < x->frames && x->gfn[lo] == gfn ? lo : UINT64_MAX;
}

static void mark_never(struct xen_guest *x, uint64_t gfn)
{
	uint64_t pfn = xen_pfn_of_gfn(x, gfn);

	if (pfn != UINT64_MAX && !bitmap_test(x->never, pfn)) {
		bitmap_set(x->never, pfn);
		x->never_count++;
	}
}

/* The pages the host owns, as Xen's own restore treats them: named by HVM
 * params (the xenstore and console rings, the ioreq and vm_event ring pages,
 * the identity page table, the ioreq servers' pages). */
static int find_host_pages(struct xen_guest *x)
{
	static const uint32_t one_page[] = {
		HVM_PARAM_STORE_PFN, HVM_PARAM_CONSOLE_PFN, HVM_PARAM_PAGING_RING_PFN,
		HVM_PARAM_MONITOR_RING_PFN, HVM_PARAM_SHARING_RING_PFN, HVM_PARAM_IOREQ_PFN,
		HVM_PARAM_BUFIOREQ_PFN,
	};
	uint64_t v, first, n;

	x->never = bitmap_new(x->frames);
	if (!x->never)
		return err_setf(x->base.err, -ENOMEM, "out of memory for the never-sent set");
	for (size_t i = 0; i < sizeof(one_page) / sizeof(one_page[0]); i++) {
		if (xc_hvm_param_get(x->xch, x->domid, one_page[i], &v))
			return xen_fail(x, -errno, "cannot read domain %u's HVM param %s: %s",
					x->domid, xen_param(one_page[i])->name, strerror(errno));
		if (v)
			mark_never(x, v);
	}
	if (xc_hvm_param_get(x->xch, x->domid, HVM_PARAM_IDENT_PT, &v) == 0 && v)
		mark_never(x, v >> 12); /* an address, not a pfn */
	if (xc_hvm_param_get(x->xch, x->domid, HVM_PARAM_IOREQ_SERVER_PFN, &first) == 0 &&
	    xc_hvm_param_get(x->xch, x->domid, HVM_PARAM_NR_IOREQ_SERVER_PAGES, &n) == 0)
		for (uint64_t i = 0; first && i < n && i < XEN_BATCH; i++)
			mark_never(x, first + i);

	/* Both fingerprints hash gfns as 64-bit words, so they do not depend
	 * on xen_pfn_t's width. */
	uint64_t *never_gfns = malloc((x->never_count + 1) * sizeof(uint64_t)), k = 0;
	uint64_t h = xen_hash64(NULL, 0, x->frames);

	if (!never_gfns)
		return err_setf(x->base.err, -ENOMEM, "out of memory for the never-sent set");
	for (uint64_t i = 0; i < x->frames; i++) {
		uint64_t g = x->gfn[i];

		h = xen_hash64(&g, 8, h);
		if (bitmap_test(x->never, i))
			never_gfns[k++] = g;
	}
	x->fingerprint = h;
	x->never_fingerprint = xen_hash64(never_gfns, k * 8, 0);
	free(never_gfns);
	return 0;
}

/* hmigt, if that is what runs: its control page, kept mapped for stats. */
static void find_hmigt(struct xen_guest *x)
{
	xen_pfn_t g = HMIGT_CTL_GFN;
	int e = 0;

	if (xen_pfn_of_gfn(x, g) == UINT64_MAX)
		return;
	void *p = xenforeignmemory_map(x->fmem, x->domid, PROT_READ, 1, &g, &e);
	if (p && !e)
		x->ctl = p;
	else if (p)
		xenforeignmemory_unmap(x->fmem, p, 1);
}

/* A destination's control page, once it runs and the frame is present
 * (mapping a missing one would wait for it): any thread, so under
 * pg_lock, which also orders it after start's. */
static void dest_find_hmigt(struct xen_guest *x)
{
	uint64_t pfn = xen_pfn_of_gfn(x, HMIGT_CTL_GFN);

	pthread_mutex_lock(&x->pg_lock);
	if (!x->ctl && x->started && pfn != UINT64_MAX && x->fstate[pfn] == XF_PRESENT)
		find_hmigt(x);
	pthread_mutex_unlock(&x->pg_lock);
}

static bool hmigt_runs(const struct xen_guest *x)
{
	return x->ctl && x->ctl->magic == HMIGT_CTL_MAGIC;
}

/* ---------------------------------------------------------- helpers */

void *xen_map_gfns(struct xen_guest *x, const xen_pfn_t *gfns, uint32_t n, int prot, int *rc)
{
	int err[XEN_BATCH];
	void *p = xenforeignmemory_map(x->fmem, x->domid, prot, n, gfns, err);

	if (!p) {
		*rc = xen_fail(x, -errno, "cannot map %u frames of domain %u from gfn %#lx: %s", n,
			       x->domid, (unsigned long)gfns[0], strerror(errno));
		return NULL;
	}
	for (uint32_t i = 0; i < n; i++)
		if (err[i]) {
			int e = err[i] < 0 ? err[i] : -err[i];

			xenforeignmemory_unmap(x->fmem, p, n);
			*rc = xen_fail(x, e, "cannot map gfn %#lx (pfn %lu) of domain %u: %s",
				       (unsigned long)gfns[i], (unsigned long)xen_pfn_of_gfn(x, gfns[i]),
				       x->domid, strerror(-e));
			return NULL;
		}
	return p;
}

void *xen_map_frames(struct xen_guest *x, uint64_t pfn, uint32_t n, int prot, int *rc)
{
	xen_pfn_t gfns[XEN_BATCH];

	for (uint32_t i = 0; i < n; i++)
		gfns[i] = x->gfn[pfn + i];
	return xen_map_gfns(x, gfns, n, prot, rc);
}

int xen_each_frame(struct xen_guest *x, int (*fn)(void *ctx, uint64_t pfn, const void *page),
		   void *ctx)
{
	int rc = 0;

	if (x->frames_map) {
		for (uint64_t pfn = 0; pfn < x->frames && !rc; pfn++)
			if (!bitmap_test(x->never, pfn))
				rc = fn(ctx, pfn, x->frames_map + pfn * XEN_PAGE);
		return rc;
	}
	for (uint64_t pfn = 0; pfn < x->frames && !rc; pfn += XEN_BATCH) {
		uint32_t n = x->frames - pfn < XEN_BATCH ? (uint32_t)(x->frames - pfn) : XEN_BATCH;
		const uint8_t *p = xen_map_frames(x, pfn, n, PROT_READ, &rc);

		if (!p)
			return rc;
		for (uint32_t i = 0; i < n && !rc; i++)
			if (!bitmap_test(x->never, pfn + i))
				rc = fn(ctx, pfn + i, p + (size_t)i * XEN_PAGE);
		xenforeignmemory_unmap(x->fmem, (void *)p, n);
	}
	return rc;
}

int xen_hvm_context(struct xen_guest *x, uint8_t **ctx, uint32_t *len)
{
	/* With no buffer Xen answers an upper bound (4568 bytes for a 1-vCPU
	 * PVH guest on the test bed); the second call's answer is the real
	 * length (2504 there), and that is what setcontext must get. */
	int bound = xc_domain_hvm_getcontext(x->xch, x->domid, NULL, 0);

	*ctx = NULL;
	if (bound <= 0)
		return xen_fail(x, bound ? -errno : -EPROTO, "cannot size domain %u's HVM context: %s",
				x->domid, strerror(errno));
	*ctx = malloc((size_t)bound);
	if (!*ctx)
		return err_setf(x->base.err, -ENOMEM, "out of memory for the HVM context");
	int n = xc_domain_hvm_getcontext(x->xch, x->domid, *ctx, (uint32_t)bound);
	if (n <= 0) {
		free(*ctx);
		*ctx = NULL;
		return xen_fail(x, n ? -errno : -EPROTO, "cannot read domain %u's HVM context: %s",
				x->domid, strerror(errno));
	}
	*len = (uint32_t)n;
	return 0;
}

/* A hash of the domain's CPUID leaves and MSRs as Xen serialises them: two
 * domains built from one config on one host agree; a destination host whose
 * CPU offers the guest something else does not. */
int xen_cpu_policy_hash(struct xen_guest *x, uint64_t *hash)
{
	xc_cpu_policy_t *p = xc_cpu_policy_init();
	uint32_t nl = 0, nm = 0;
	xen_cpuid_leaf_t *leaves = NULL;
	xen_msr_entry_t *msrs = NULL;
	int rc = 0;

	if (!p)
		return err_setf(x->base.err, -ENOMEM, "out of memory for a CPU policy");
	if (xc_cpu_policy_get_size(x->xch, &nl, &nm) ||
	    xc_cpu_policy_get_domain(x->xch, x->domid, p)) {
		rc = xen_fail(x, -errno, "cannot read domain %u's CPU policy: %s", x->domid,
			      strerror(errno));
		goto out;
	}
	leaves = calloc(nl ? nl : 1, sizeof(*leaves));
	msrs = calloc(nm ? nm : 1, sizeof(*msrs));
	if (!leaves || !msrs) {
		rc = err_setf(x->base.err, -ENOMEM, "out of memory for a CPU policy");
		goto out;
	}
	if (xc_cpu_policy_serialise(x->xch, p, leaves, &nl, msrs, &nm)) {
		rc = xen_fail(x, -errno, "cannot serialise domain %u's CPU policy: %s", x->domid,
			      strerror(errno));
		goto out;
	}
	*hash = xen_hash64(msrs, nm * sizeof(*msrs), xen_hash64(leaves, nl * sizeof(*leaves), 0));
out:
	free(leaves);
	free(msrs);
	xc_cpu_policy_destroy(p);
	return rc;
}

/* ---------------------------------------------------------- opening */

static void xen_destroy(struct hmig_guest *g);

static struct xen_guest *alloc_guest(uint32_t domid, bool is_dest)
{
	struct xen_guest *x = calloc(1, sizeof(*x));

	if (!x)
		return NULL;
	x->base.ops = &xen_ops;
	x->domid = domid;
	x->is_dest = is_dest;
	x->log.xtl.vmessage = log_vmessage;
	x->log.xtl.destroy = log_destroy;
	pthread_mutex_init(&x->log.lock, NULL);
	pthread_mutex_init(&x->lock, NULL);
	pthread_mutex_init(&x->pg_lock, NULL);
	/* As DECLARE_HYPERCALL_BUFFER initialises one (xenctrl.h). */
	x->dirty_hbuf = (xc_hypercall_buffer_t){ .hbuf = NULL, .param_shadow = NULL,
						 HYPERCALL_BUFFER_INIT_NO_BOUNCE };
	x->xs.domid = domid;
	return x;
}

static int open_handles(struct xen_guest *x)
{
	x->xch = xc_interface_open(&x->log.xtl, &x->log.xtl, 0);
	if (!x->xch) {
		int e = errno;

		if (e == ENOENT || e == ENODEV || e == ENXIO)
			return err_setf(x->base.err, -EOPNOTSUPP,
					"this host has no Xen (no /dev/xen/privcmd): run hmig in dom0 of a Xen host");
		if (e == EACCES || e == EPERM)
			return err_setf(x->base.err, -EACCES,
					"cannot open Xen's control interface: %s (run hmig as root in dom0)",
					strerror(e));
		return xen_fail(x, -e, "cannot open Xen's control interface: %s", strerror(e));
	}
	x->fmem = xenforeignmemory_open(&x->log.xtl, 0);
	if (!x->fmem)
		return xen_fail(x, -errno, "cannot open Xen's foreign memory interface: %s",
				strerror(errno));
	return 0;
}

/* A destination's own parts: its frame states (all stale: the builder's
 * bytes), whether post-copy is possible, the event channel for it, and
 * either the mapping installs write through until post-copy or start, or
 * (prearm) every frame made missing at once. */
static int open_dest(struct xen_guest *x)
{
	int rc;

	x->fstate = calloc(x->frames, 1);
	if (!x->fstate)
		return err_setf(x->base.err, -ENOMEM, "out of memory for %lu frame states",
				(unsigned long)x->frames);
	if ((rc = xen_paging_probe(x)) || (rc = xen_paging_open_fd(x)))
		return rc;
	if (x->opts.prearm)
		return xen_prearm(x);
	return xen_map_all(x);
}

int xen_open(uint32_t domid, const struct hmig_xen_options *opts, bool is_dest,
	     struct xen_guest **out, char *errbuf)
{
	struct xen_guest *x;
	xc_dominfo_t info;
	uint64_t t0 = clock_now_ns();
	int rc;

	*out = NULL;
	errbuf[0] = '\0';
	if (domid == 0)
		return err_setf(errbuf, -EINVAL, "domain 0 is dom0, which hmig runs in and cannot move");
	if (!(x = alloc_guest(domid, is_dest)))
		return err_setf(errbuf, -ENOMEM, "out of memory");
	if (opts)
		x->opts = *opts;
	if ((rc = open_handles(x)) || (rc = xen_getinfo(x, &info)) || (rc = check_kind(x, &info)) ||
	    (is_dest && ((rc = xen_dest_check_fresh(x)) || (rc = check_no_pod(x)))) ||
	    (rc = scan_frames(x)) || (rc = find_host_pages(x)) ||
	    (rc = xen_cpu_policy_hash(x, &x->policy_hash))) {
		snprintf(errbuf, ERR_LEN, "%s", x->base.err);
		xen_destroy(&x->base);
		return rc;
	}
	if (is_dest && (rc = open_dest(x))) {
		snprintf(errbuf, ERR_LEN, "%s", x->base.err);
		xen_destroy(&x->base);
		return rc;
	}
	x->nvcpus = info.max_vcpu_id + 1;
	x->nr_pages = info.nr_pages;
	/* A destination maps hmigt's control page only once it is present
	 * after start (xen_stats): a mapping held at the switch would keep
	 * the frame from being made missing. */
	if (!is_dest)
		find_hmigt(x);
	if (!is_dest && hmigt_runs(x))
		x->ops_base = x->ctl->ops_done;
	x->xs.frames = x->frames;
	x->xs.never_sent = x->never_count;
	x->xs.hmigt = !is_dest && hmigt_runs(x);
	x->xs.ops_at_pause = XEN_STATE_NO_HMIGT;
	x->xs.destination = is_dest;
	x->xs.paging_available = is_dest && !x->paging_rc;
	x->xs.open_ms = clock_ms(clock_now_ns() - t0);
	*out = x;
	return 0;
}

int hmig_xen_open(uint32_t domid, const struct hmig_xen_options *opts, struct hmig_guest **out,
		  char *errbuf)
{
	struct xen_guest *x;
	int rc;

	if (opts && opts->prearm)
		return err_setf(errbuf, -EINVAL,
				"prearm is a destination's option (hmig recv --guest xen:domid=N,prearm=on)");
	rc = xen_open(domid, opts, false, &x, errbuf);

	*out = rc ? NULL : &x->base;
	return rc;
}

int hmig_xen_open_dest(uint32_t domid, const struct hmig_xen_options *opts,
		       struct hmig_guest **out, char *errbuf)
{
	struct xen_guest *x;
	int rc = xen_open(domid, opts, true, &x, errbuf);

	*out = rc ? NULL : &x->base;
	return rc;
}

/* ------------------------------------------------------- both sides */

/* VCPU_STATE's limit (state.h): the fixed part, and the level-1 digest's 4
 * bytes a frame, which only a source with the digest on sends. */
static int xen_geometry(struct hmig_guest *g, struct hmig_guest_geometry *geo)
{
	struct xen_guest *x = to_xen(g);

	geo->npages = x->frames;
	geo->page_size = XEN_PAGE;
	geo->nvcpus = x->nvcpus;
	uint64_t max = xen_state_max(x->nvcpus, x->frames);
	geo->vcpu_state_max = max > UINT32_MAX ? UINT32_MAX : (uint32_t)max;
	return 0;
}

static int64_t xen_pfns_never_sent(struct hmig_guest *g, uint64_t *bitmap)
{
	struct xen_guest *x = to_xen(g);

	for (uint64_t w = 0; w < BITMAP_WORDS(x->frames); w++)
		bitmap[w] |= x->never[w];
	return (int64_t)x->never_count;
}

static int xen_stats(struct hmig_guest *g, struct hmig_guest_stats *st)
{
	struct xen_guest *x = to_xen(g);
	int n;

	memset(st, 0, sizeof(*st));
	st->blackout_ms = NAN;
	n = snprintf(st->workload, sizeof(st->workload), "xen:domid=%u", x->domid);
	if (x->is_dest)
		dest_find_hmigt(x);
	if (!hmigt_runs(x))
		return 0;
	/* hmigt's counters since it began on this host; its command line says
	 * what it runs. */
	uint64_t ops = x->ctl->ops_done;
	st->ops = ops > x->ops_base ? ops - x->ops_base : 0;
	st->writes = x->ctl->writes;
	snprintf(st->workload + n, sizeof(st->workload) - (size_t)n, " hmigt %.100s",
		 (const char *)x->ctl->cmdline);
	/* The blackout as hmigt saw it: its TSC runs on through the pause, so
	 * its largest step between two loop turns, taken at the op of the
	 * pause (or the one after, when a write was in flight), is the gap.
	 * A larger stall elsewhere hides it: then it cannot tell. */
	uint64_t at = x->ctl->gap_max_op, paused = x->xs.ops_at_pause;
	uint32_t khz = x->ctl->tsc_khz;
	if (x->is_dest && paused != XEN_STATE_NO_HMIGT && khz && at >= paused && at <= paused + 1)
		st->blackout_ms = (double)x->ctl->gap_max / khz;
	return 0;
}

int hmig_xen_stats(struct hmig_guest *g, struct hmig_xen_stats *st)
{
	memset(st, 0, sizeof(*st));
	if (g->ops != &xen_ops)
		return err_setf(g->err, -EINVAL, "hmig_xen_stats: this is a '%s' guest, not a Xen one",
				g->ops->name);
	struct xen_guest *x = to_xen(g);
	pthread_mutex_lock(&x->lock);
	*st = x->xs;
	pthread_mutex_unlock(&x->lock);
	if (x->is_dest) {
		pthread_mutex_lock(&x->pg_lock);
		st->requests = x->pg.requests;
		st->foreign_requests = x->pg.foreign;
		xen_paging_waits(x, &st->wait_max_ms, &st->wait_max_gfn);
		pthread_mutex_unlock(&x->pg_lock);
	}
	return 0;
}

static const void *oracle_map(void *ctx, uint64_t gfn, uint32_t n, int *rc, char *err)
{
	struct xen_guest *x = ctx;
	uint64_t pfn = xen_pfn_of_gfn(x, gfn);

	const void *p;

	if (pfn == UINT64_MAX || n > x->frames - pfn || x->gfn[pfn + n - 1] != gfn + n - 1) {
		*rc = err_setf(err, -EBADMSG,
			       "integrity (hmigt replay): gfns %#lx..%#lx are not all RAM in domain %u",
			       (unsigned long)gfn, (unsigned long)(gfn + n - 1), x->domid);
		return NULL;
	}
	if (!(p = xen_map_frames(x, pfn, n, PROT_READ, rc)))
		snprintf(err, ERR_LEN, "%s", x->base.err);
	return p;
}

static void oracle_unmap(void *ctx, const void *p, uint32_t n)
{
	struct xen_guest *x = ctx;

	xenforeignmemory_unmap(x->fmem, (void *)p, n);
}

/* Level 2: hmigt's replay.  Level 1 ran at start (restore.c), before the
 * guest could change a byte; for a guest that is not hmigt it is the
 * whole oracle. */
static int xen_verify(struct hmig_guest *g)
{
	struct xen_guest *x = to_xen(g);
	struct hmigt_mem mem = { oracle_map, oracle_unmap, x };
	struct hmigt_verdict v;
	char err[ERR_LEN] = "";
	uint64_t t0 = clock_now_ns();

	if (!x->paused && !(x->is_dest && !x->started))
		return err_setf(x->base.err, -EINVAL, "verify: pause the guest first");
	if (x->digest_bad)
		return err_setf(x->base.err, -EBADMSG,
				"integrity (digest): %lu frames loaded in post-copy differ from the source's at the pause, the first gfn %#lx (pfn %lu)",
				(unsigned long)x->digest_bad, (unsigned long)x->gfn[x->digest_first_bad],
				(unsigned long)x->digest_first_bad);
	if (x->is_dest && x->pg.on)
		return err_setf(x->base.err, -EINVAL,
				"verify: domain %u still has frames missing (post-copy did not end)",
				x->domid);
	/* Memory that matches does not make a guest that runs: one that died
	 * here since its start fails the check too. */
	if (x->is_dest && x->started) {
		xc_dominfo_t info;
		int rc = xen_getinfo(x, &info);

		if (rc || (rc = xen_check_alive(x, &info, "after it started here")))
			return rc;
	}
	uint64_t min_ops = x->is_dest && x->xs.ops_at_pause != XEN_STATE_NO_HMIGT
				   ? x->xs.ops_at_pause : 0;
	int rc = hmigt_replay_check(&mem, min_ops, &v, err);
	if (rc == -ENODATA) {
		if (x->is_dest && x->xs.digest && x->xs.digest_frames)
			return 0;
		return err_setf(x->base.err, -EOPNOTSUPP,
				"no oracle for domain %u: it is not hmigt and its source took no digest (xen:...,digest=on)",
				x->domid);
	}
	pthread_mutex_lock(&x->lock);
	x->xs.hmigt = true;
	x->xs.replay_ops = v.ctl.ops_done;
	x->xs.replay_pages = v.pages;
	x->xs.replay_ms = clock_ms(clock_now_ns() - t0);
	pthread_mutex_unlock(&x->lock);
	if (rc)
		snprintf(x->base.err, ERR_LEN, "%s", err);
	return rc;
}

/* xc_domain_pause waits until every vCPU is off its CPU: no guest write
 * happens after it returns.  The pause count is per caller, so this handle
 * holds at most one: pause and resume only change it when it is not
 * already so. */
static int set_paused(struct xen_guest *x, bool pause)
{
	if (x->paused == pause)
		return 0;
	if ((pause ? xc_domain_pause : xc_domain_unpause)(x->xch, x->domid))
		return xen_fail(x, -errno, "cannot %s domain %u: %s", pause ? "pause" : "unpause",
				x->domid, strerror(errno));
	x->paused = pause;
	return 0;
}

static int xen_pause(struct hmig_guest *g)
{
	return set_paused(to_xen(g), true);
}

static int xen_resume(struct hmig_guest *g)
{
	return set_paused(to_xen(g), false);
}

/* The domain outlives the handle.  A source stays as the migration left it
 * (paused after a success: the guest lives on the destination now; the
 * engine resumed it after a failure).  A destination that started runs on:
 * a pause taken for the oracle is released. */
static bool frames_missing(const struct xen_guest *x)
{
	for (uint64_t p = 0; p < x->frames; p++)
		if (x->fstate[p] == XF_EVICTED)
			return true;
	return false;
}

static void xen_destroy(struct hmig_guest *g)
{
	struct xen_guest *x = to_xen(g);

	if (x->is_dest && x->started)
		xen_resume(g);
	if (x->xch) {
		xen_dirty_stop(g);
		if (x->dirty_hbuf.hbuf)
			xc__hypercall_buffer_free_pages(x->xch, &x->dirty_hbuf, x->dirty_hbuf_pages);
	}
	xen_unmap_all(x);
	if (x->is_dest && x->pg.on && x->started && !frames_missing(x))
		xen_paging_disable(x);
	xen_paging_close(x);
	if (x->ctl)
		xenforeignmemory_unmap(x->fmem, (void *)x->ctl, 1);
	if (x->fmem)
		xenforeignmemory_close(x->fmem);
	if (x->xch)
		xc_interface_close(x->xch);
	free(x->gfn);
	free(x->never);
	free(x->digest);
	free(x->fstate);
	pthread_mutex_destroy(&x->pg_lock);
	pthread_mutex_destroy(&x->lock);
	pthread_mutex_destroy(&x->log.lock);
	free(x);
}

const struct hmig_guest_ops xen_ops = {
	.name = "xen",
	.geometry = xen_geometry,
	.pfns_never_sent = xen_pfns_never_sent,
	.stats = xen_stats,
	.verify = xen_verify,
	.destroy = xen_destroy,
	.run = xen_run,
	.pages_map = xen_pages_map,
	.pages_unmap = xen_pages_unmap,
	.dirty_start = xen_dirty_start,
	.dirty_collect = xen_dirty_collect,
	.dirty_stop = xen_dirty_stop,
	.pause = xen_pause,
	.resume = xen_resume,
	.vcpu_save = xen_vcpu_save,
	.dest_prepare = xen_dest_prepare,
	.page_install = xen_page_install,
	.pages_drop = xen_pages_drop,
	.fault_fd = xen_fault_fd,
	.faults_read = xen_faults_read,
	.faults_done = xen_faults_done,
	.vcpu_restore = xen_vcpu_restore,
	.start = xen_start,
};
