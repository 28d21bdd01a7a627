/* Xen's mem_paging ring on a destination domain: how the Xen backend leaves
 * frames missing after the guest starts (DESIGN §4, docs/xen.md "Post-copy").
 *
 * A frame is made missing with nominate + evict (Xen drops the page and
 * marks the gfn paged out), and put back with xc_mem_paging_load (Xen
 * allocates a page and copies 4 KiB into it).  A vCPU that touches a
 * paged-out gfn is paused by Xen, which puts a request on the ring and
 * kicks an event channel; so does a dom0 process that maps one (a FOREIGN
 * request: libxenforeignmemory retries until the frame is back).  Each
 * request is answered exactly once, after the frame is back: Xen frees a
 * ring slot only when it consumes the answer, and the ring has 8 of them,
 * so an unanswered request, FOREIGN ones included, is a slot lost for good.
 *
 * Who touches what:
 *
 *   fault thread   xen_paging_read: the ring's request side (req_cons), and
 *                  parks what it cannot answer yet
 *   installers     xen_paging_loaded: frame present, answers what is parked
 *   both           under pg_lock: frame states after start, the parked
 *                  table, the ring's response side and the notify
 *
 * A request and the load of its frame can race; both sides decide under
 * pg_lock, so the request is either parked before the load finishes (and
 * answered by it) or read after (and answered at once):
 *
 *   fault thread: lock, frame EVICTED: park      loader: load (no lock)
 *                 unlock                                 lock, PRESENT, answer parked
 *
 * The backend never maps a frame that is not present while paging is on:
 * the mapping would not fail but wait for the frame (FEASIBILITY, problem
 * 7), and if the waiter is the thread that would load it, for ever.
 */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "common/clock.h"
#include "common/err.h"
#include "guest/xen/backend.h"

/* A gfn no domain has: asked to nominate it, a hypervisor with mem_paging
 * answers ENODEV (no ring on the domain) or EINVAL, one without it ENOSYS
 * (XENMEM_paging_op is compiled out), and nothing changes either way. */
#define PROBE_GFN ((1ull << 52) - 1)

/* xc_mem_paging_disable is EBUSY while a vCPU waits for ring space; it
 * waits at most this many tries 10 ms apart. */
#define DISABLE_TRIES 200

/* The fault thread looks at the domain's state this often (DESIGN §4.5
 * rule 7): a guest that crashed in post-copy fails the migration at once
 * instead of having its frames pushed to a dead domain. */
#define ALIVE_EVERY_NS (1000ull * 1000 * 1000)

int xen_paging_probe(struct xen_guest *x)
{
	int rc = xc_mem_paging_nominate(x->xch, x->domid, PROBE_GFN), e = errno;

	/* The refusal is expected: not an error line for a later message. */
	pthread_mutex_lock(&x->log.lock);
	x->log.last[0] = '\0';
	pthread_mutex_unlock(&x->log.lock);
	if (rc == 0 || e != ENOSYS) {
		x->paging_rc = 0;
		return 0;
	}
	x->paging_rc = err_setf(x->paging_why, -EOPNOTSUPP,
				"this hypervisor has no mem_paging (ENOSYS): rebuild Xen with CONFIG_MEM_PAGING=y (docs/xen.md)");
	return 0;
}

int xen_paging_open_fd(struct xen_guest *x)
{
	x->pg.xce = xenevtchn_open(&x->log.xtl, 0);
	if (!x->pg.xce)
		return xen_fail(x, -errno, "cannot open Xen's event channel device: %s",
				strerror(errno));
	return 0;
}

/* Xen's own setup order (xenpaging, libxc's xc_vm_event_enable): map the
 * ring page while the guest still has it, enable, bind the event channel,
 * then take the page out of the guest's physmap so that the guest cannot
 * write the ring (Xen keeps its own reference).  The domain is paused. */
int xen_paging_enable(struct xen_guest *x)
{
	struct xen_paging *pg = &x->pg;
	uint64_t ring_gfn = 0;
	uint32_t port;
	int e = 0, rc;

	if (pg->on)
		return 0;
	if (x->paging_rc)
		return err_setf(x->base.err, x->paging_rc, "%s", x->paging_why);
	if (xc_hvm_param_get(x->xch, x->domid, HVM_PARAM_PAGING_RING_PFN, &ring_gfn))
		return xen_fail(x, -errno, "cannot read domain %u's HVM_PARAM_PAGING_RING_PFN: %s",
				x->domid, strerror(errno));
	if (!ring_gfn)
		return err_setf(x->base.err, -ENOENT,
				"domain %u has no paging ring page (HVM_PARAM_PAGING_RING_PFN is 0)",
				x->domid);
	pg->ring_gfn = ring_gfn;
	pg->ring = xenforeignmemory_map(x->fmem, x->domid, PROT_READ | PROT_WRITE, 1,
					&pg->ring_gfn, &e);
	if (!pg->ring || e) {
		rc = e ? (e < 0 ? e : -e) : -errno;
		if (pg->ring)
			xenforeignmemory_unmap(x->fmem, pg->ring, 1);
		pg->ring = NULL;
		return xen_fail(x, rc, "cannot map domain %u's paging ring (gfn %#lx): %s",
				x->domid, (unsigned long)ring_gfn, strerror(-rc));
	}
	memset(pg->ring, 0, XEN_PAGE);
	if (xc_mem_paging_enable(x->xch, x->domid, &port)) {
		rc = -errno;
		xenforeignmemory_unmap(x->fmem, pg->ring, 1);
		pg->ring = NULL;
		switch (-rc) {
		case ENOSYS:
			return err_setf(x->base.err, -EOPNOTSUPP,
					"this hypervisor has no mem_paging: rebuild Xen with CONFIG_MEM_PAGING=y");
		case EXDEV:
			return xen_fail(x, -EOPNOTSUPP,
					"domain %u uses populate-on-demand, which mem_paging excludes: set maxmem = memory",
					x->domid);
		case EBUSY:
			return xen_fail(x, rc,
					"domain %u has a pager already (xenpaging?): stop it", x->domid);
		default:
			return xen_fail(x, rc,
					"cannot turn on mem_paging for domain %u (it needs HAP and no IOMMU): %s",
					x->domid, strerror(-rc));
		}
	}
	pg->on = true;
	SHARED_RING_INIT((vm_event_sring_t *)pg->ring);
	BACK_RING_INIT(&pg->back, (vm_event_sring_t *)pg->ring, XEN_PAGE);
	xenevtchn_port_or_error_t lp = xenevtchn_bind_interdomain(pg->xce, x->domid, port);
	if (lp < 0)
		return xen_fail(x, -errno, "cannot bind domain %u's paging event channel %u: %s",
				x->domid, port, strerror(errno));
	pg->lport = (evtchn_port_t)lp;
	pg->bound = true;
	xen_pfn_t g = pg->ring_gfn;
	if (xc_domain_decrease_reservation_exact(x->xch, x->domid, 1, 0, &g))
		return xen_fail(x, -errno, "cannot hide the paging ring from domain %u: %s",
				x->domid, strerror(errno));
	pg->ring_hidden = true;
	pg->slots = RING_SIZE(&pg->back);
	pg->parked = calloc(pg->slots, sizeof(*pg->parked));
	if (!pg->parked)
		return err_setf(x->base.err, -ENOMEM, "out of memory for the paging requests");
	return 0;
}

int xen_paging_evict(struct xen_guest *x, uint64_t pfn)
{
	uint64_t gfn = x->gfn[pfn];

	/* Both or neither: a frame left nominated but not evicted would keep
	 * its old bytes through a later load (DESIGN §4.1), so either failure
	 * fails the migration before the guest can run. */
	if (xc_mem_paging_nominate(x->xch, x->domid, gfn))
		return xen_fail(x, errno == EBUSY ? -EBUSY : -errno,
				"cannot make gfn %#lx (pfn %lu) of domain %u missing: nominate: %s%s",
				(unsigned long)gfn, (unsigned long)pfn, x->domid, strerror(errno),
				errno == EBUSY ? " (someone maps it)" : "");
	if (xc_mem_paging_evict(x->xch, x->domid, gfn))
		return xen_fail(x, errno == EBUSY ? -EBUSY : -errno,
				"cannot make gfn %#lx (pfn %lu) of domain %u missing: evict: %s",
				(unsigned long)gfn, (unsigned long)pfn, x->domid, strerror(errno));
	return 0;
}

int xen_paging_load(struct xen_guest *x, uint64_t pfn, const void *page)
{
	uint64_t gfn = x->gfn[pfn];

	/* libxc copies the page into a hypercall buffer first, so const is
	 * only its prototype's omission. */
	if (xc_mem_paging_load(x->xch, x->domid, gfn, (void *)page))
		return xen_fail(x, -errno, "cannot load gfn %#lx (pfn %lu) into domain %u: %s",
				(unsigned long)gfn, (unsigned long)pfn, x->domid, strerror(errno));
	return 0;
}

/* Under pg_lock: one answer on the ring. */
static void answer(struct xen_paging *pg, uint32_t vcpu, uint32_t flags, uint64_t gfn)
{
	vm_event_response_t rsp = {
		.version = VM_EVENT_INTERFACE_VERSION,
		.vcpu_id = vcpu,
		.flags = flags & VM_EVENT_FLAG_VCPU_PAUSED,
		.reason = VM_EVENT_REASON_MEM_PAGING,
		.u.mem_paging.gfn = gfn,
	};

	memcpy(RING_GET_RESPONSE(&pg->back, pg->back.rsp_prod_pvt), &rsp, sizeof(rsp));
	pg->back.rsp_prod_pvt++;
	pg->answered++;
}

/* Under pg_lock: makes the answers visible to Xen and kicks it. */
static void push(struct xen_guest *x)
{
	struct xen_paging *pg = &x->pg;

	if (pg->back.rsp_prod_pvt == pg->back.sring->rsp_prod)
		return;
	RING_PUSH_RESPONSES(&pg->back);
	xenevtchn_notify(pg->xce, pg->lport);
}

/* Under pg_lock: the longest wait of a parked request, those still parked
 * included with their age so far, with its gfn. */
static void note_wait(struct xen_guest *x, const struct xen_parked *r, uint64_t now)
{
	struct xen_paging *pg = &x->pg;

	if (now - r->t_ns > pg->wait_max_ns) {
		pg->wait_max_ns = now - r->t_ns;
		pg->wait_max_gfn = x->gfn[r->pfn];
	}
}

void xen_paging_waits(struct xen_guest *x, double *max_ms, uint64_t *gfn)
{
	struct xen_paging *pg = &x->pg;
	uint64_t now = clock_now_ns();

	for (uint32_t i = 0; i < pg->nparked; i++)
		note_wait(x, &pg->parked[i], now);
	*max_ms = clock_ms(pg->wait_max_ns);
	*gfn = pg->wait_max_gfn;
}

/* Under pg_lock: frame pfn is present now; answer what waited for it. */
static void answer_parked(struct xen_guest *x, uint64_t pfn)
{
	struct xen_paging *pg = &x->pg;
	uint64_t now = clock_now_ns();

	for (uint32_t i = 0; i < pg->nparked;) {
		if (pg->parked[i].pfn != pfn) {
			i++;
			continue;
		}
		note_wait(x, &pg->parked[i], now);
		answer(pg, pg->parked[i].vcpu, pg->parked[i].flags, x->gfn[pfn]);
		pg->parked[i] = pg->parked[--pg->nparked];
	}
}

void xen_paging_loaded(struct xen_guest *x, uint64_t pfn)
{
	x->fstate[pfn] = XF_PRESENT;
	if (x->pg.on) {
		answer_parked(x, pfn);
		push(x);
	}
}

int xen_paging_read(struct xen_guest *x, uint64_t *pfns, uint32_t max)
{
	struct xen_paging *pg = &x->pg;
	struct pollfd pfd = { .fd = xenevtchn_fd(pg->xce), .events = POLLIN };
	uint32_t n = 0;
	int rc = 0;

	if (!pg->on)
		return 0;
	uint64_t now = clock_now_ns();
	if (now - pg->t_alive >= ALIVE_EVERY_NS) {
		xc_dominfo_t info;

		pg->t_alive = now;
		if ((rc = xen_getinfo(x, &info)) ||
		    (rc = xen_check_alive(x, &info, "during post-copy")))
			return rc;
	}
	/* The kick: read and unmask it, then drain the ring.  A request put
	 * after the drain kicks again. */
	if (poll(&pfd, 1, 0) > 0) {
		xenevtchn_port_or_error_t p = xenevtchn_pending(pg->xce);

		if (p >= 0)
			xenevtchn_unmask(pg->xce, (evtchn_port_t)p);
	}
	pthread_mutex_lock(&x->pg_lock);
	while (n < max && RING_HAS_UNCONSUMED_REQUESTS(&pg->back)) {
		vm_event_request_t req;

		RING_COPY_REQUEST(&pg->back, pg->back.req_cons, &req);
		pg->back.req_cons++;
		pg->back.sring->req_event = pg->back.req_cons + 1;
		pg->requests++;
		if (req.flags & VM_EVENT_FLAG_FOREIGN)
			pg->foreign++;
		uint64_t gfn = req.u.mem_paging.gfn, pfn = xen_pfn_of_gfn(x, gfn);
		if (req.version != VM_EVENT_INTERFACE_VERSION ||
		    req.reason != VM_EVENT_REASON_MEM_PAGING || pfn == UINT64_MAX ||
		    (req.u.mem_paging.flags & MEM_PAGING_DROP_PAGE)) {
			/* Not a frame hmig moves, or the guest gave it up:
			 * nothing to bring, but the slot comes back only with
			 * an answer. */
			pg->odd++;
			answer(pg, req.vcpu_id, req.flags, gfn);
			continue;
		}
		if (x->fstate[pfn] == XF_PRESENT) { /* loaded since Xen asked */
			answer(pg, req.vcpu_id, req.flags, gfn);
			continue;
		}
		if (pg->nparked == pg->slots) {
			/* Cannot happen: every parked request holds a slot. */
			rc = err_setf(x->base.err, -EOVERFLOW,
				      "domain %u: more paging requests waiting than the ring has slots (%u)",
				      x->domid, pg->slots);
			break;
		}
		pg->parked[pg->nparked++] = (struct xen_parked){
			.pfn = pfn, .vcpu = req.vcpu_id, .flags = req.flags, .t_ns = now };
		pfns[n++] = pfn;
	}
	push(x);
	pthread_mutex_unlock(&x->pg_lock);
	return rc ? rc : (int)n;
}

/* Answers whatever is still on the ring (a late duplicate), then turns
 * paging off and gives the guest back its ring page, so that the domain's
 * layout is again what `xl create` made (a later migration from it
 * compares frame lists with a fresh domain).  Every frame is present. */
int xen_paging_disable(struct xen_guest *x)
{
	struct xen_paging *pg = &x->pg;
	xc_dominfo_t info;
	uint64_t scratch[8];
	int rc, tries = 0;

	if (!pg->on)
		return 0;
	if ((rc = xen_paging_read(x, scratch, 8)) < 0)
		return rc;
	if (rc > 0 || pg->nparked)
		return err_setf(x->base.err, -EBUSY,
				"paging requests for gfn %#lx are still unanswered with every frame present (backend bug)",
				(unsigned long)x->gfn[pg->nparked ? pg->parked[0].pfn : scratch[0]]);
	while (xc_mem_paging_disable(x->xch, x->domid)) {
		if (errno != EBUSY || ++tries == DISABLE_TRIES)
			return xen_fail(x, -errno, "cannot turn mem_paging off for domain %u: %s",
					x->domid, strerror(errno));
		nanosleep(&(struct timespec){ .tv_nsec = 10 * 1000 * 1000 }, NULL);
	}
	pg->on = false;
	if (pg->bound)
		xenevtchn_unbind(pg->xce, pg->lport);
	pg->bound = false;
	xenforeignmemory_unmap(x->fmem, pg->ring, 1);
	pg->ring = NULL;
	if (pg->ring_hidden) {
		xen_pfn_t g = pg->ring_gfn;
		int e = 0;

		if (xc_domain_populate_physmap_exact(x->xch, x->domid, 1, 0, 0, &g))
			return xen_fail(x, -errno, "cannot give domain %u its ring page back: %s",
					x->domid, strerror(errno));
		pg->ring_hidden = false;
		/* As the domain builder leaves its special pages: zero. */
		void *p = xenforeignmemory_map(x->fmem, x->domid, PROT_READ | PROT_WRITE, 1, &g, &e);
		if (p && !e)
			memset(p, 0, XEN_PAGE);
		if (p)
			xenforeignmemory_unmap(x->fmem, p, 1);
	}
	if ((rc = xen_getinfo(x, &info)))
		return rc;
	pg->paged_at_end = info.nr_paged_pages;
	if (info.nr_paged_pages)
		return err_setf(x->base.err, -EIO,
				"domain %u still has %lu paged-out frames after paging ended",
				x->domid, info.nr_paged_pages);
	return 0;
}

void xen_paging_close(struct xen_guest *x)
{
	struct xen_paging *pg = &x->pg;

	/* A domain left with frames paged out cannot run without a pager:
	 * its vCPUs wait on the ring until the operator destroys it, which is
	 * what a failed post-copy means (docs/xen.md).  Paging stays on, so
	 * that Xen does not crash it on its next touch of a missing frame. */
	if (pg->ring)
		xenforeignmemory_unmap(x->fmem, pg->ring, 1);
	if (pg->bound)
		xenevtchn_unbind(pg->xce, pg->lport);
	if (pg->xce)
		xenevtchn_close(pg->xce);
	free(pg->parked);
	memset(pg, 0, sizeof(*pg));
}
