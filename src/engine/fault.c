/* The post-copy fault handler: a dispatcher over the destination's page
 * sets (engine/pages.h):
 *
 *   missing    not present, not asked for: a fault moves it to requested
 *   requested  asked of the source once on the urgent channel
 *   present    installed, by the pull reply or by the pusher, whichever
 *              claimed it first (the other counts a duplicate)
 *
 * One thread, woken by the userfaultfd (a vCPU blocked on a missing page),
 * by the urgent channel (a reply), or by net_chan_wake (quit).  It owns the
 * urgent channel.
 *
 * A fault can race with a push of the same page:
 *
 *   vCPU: touches p (blocks)   bulk loop: installs p (wakes the vCPU)
 *   handler: reads the fault for p, finds p present: nothing to ask
 *
 * and the other order asks for p, whose reply then finds it present.  Either
 * way p is installed once and the vCPU runs on.
 */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/err.h"
#include "common/prio.h"
#include "engine/fault.h"

/* Fault events read per wake-up; a vCPU has at most one fault outstanding,
 * so this is far above what 64 vCPUs can produce at once. */
#define FAULT_BATCH 256

/* How long a wait may last before the quit flag is looked at again; a wake
 * ends it sooner. */
#define FAULT_TICK_MS 100

static int fail(struct fault_handler *fh, int rc, const char *what, const char *detail)
{
	fh->rc = eng_io_error(fh->err, rc, "source", what, detail);
	return fh->rc;
}

/* Replies to earlier requests, as many as have arrived. */
static int take_replies(struct fault_handler *fh)
{
	struct proto_hdr h;
	int rc;

	while ((rc = net_chan_readable(fh->urgent)) == 1) {
		rc = eng_rec_read(fh->urgent, fh->geo, fh->io_timeout_ms, "source", &h, &fh->rx,
				  fh->err);
		if (rc)
			return fh->rc = rc;
		if (h.type != PROTO_PAGES && h.type != PROTO_ZERO)
			return fh->rc = err_setf(fh->err, -EPROTO,
						 "unexpected %s on the urgent channel",
						 proto_type_name(h.type));
		if ((rc = pages_install_record(fh->pages, fh->geo, &h, fh->rx.p, VIA_PULL, fh->err)))
			return fh->rc = rc;
	}
	return rc < 0 ? fail(fh, rc, "post-copy", fh->urgent->err) : 0;
}

static int ask(struct fault_handler *fh, const uint64_t *pfns, uint32_t n)
{
	uint8_t req[PROTO_HDR_LEN + 8 + 8 * FAULT_BATCH];
	int len = proto_request_encode(req, sizeof(req), fh->geo, pfns, n, fh->err);

	if (len < 0)
		return fh->rc = len;
	int rc = eng_rec_send(fh->urgent, req, (size_t)len, fh->io_timeout_ms, fh->err);
	if (rc)
		return fail(fh, rc, "asking for pages", fh->urgent->err);
	fh->requests += n;
	return 0;
}

/* Reads pending faults and asks for each missing page once. */
static int take_faults(struct fault_handler *fh)
{
	uint64_t pfns[FAULT_BATCH], asked[FAULT_BATCH];
	int n = fh->g->ops->faults_read(fh->g, pfns, FAULT_BATCH);

	if (n < 0)
		return fh->rc = err_setf(fh->err, n, "%s", hmig_guest_error(fh->g));
	uint32_t nask = pages_faulted(fh->pages, pfns, (uint32_t)n, clock_now_ns(), asked);
	fh->faults += (uint64_t)n;
	return nask ? ask(fh, asked, nask) : 0;
}

/* On a new link after a lost one: what was asked and never came is asked
 * again (the vCPUs that wait for it will not fault a second time). */
static int ask_again(struct fault_handler *fh)
{
	uint64_t pfns[FAULT_BATCH], pos = 0;
	uint32_t n;
	int rc;

	while ((n = pages_asked_missing(fh->pages, &pos, pfns, FAULT_BATCH)) > 0) {
		if ((rc = ask(fh, pfns, n)))
			return rc;
		fh->asked_again += n;
	}
	return 0;
}

static void *fault_main(void *arg)
{
	struct fault_handler *fh = arg;
	int ufd = fh->g->ops->fault_fd(fh->g);

	/* A blocked vCPU waits for this thread; the bulk loop and the
	 * running vCPUs can wait a little (common/prio.h). */
	prio_urgent_thread();

	/* Only a restart has asked before (ask_again walks every pfn). */
	if (fh->requests && ask_again(fh))
		goto out;
	while (!atomic_load(&fh->quit) && pages_present(fh->pages) != fh->geo->npages) {
		if (take_replies(fh) || take_faults(fh))
			break;
		int rc = net_chan_wait_any_fd(&fh->urgent, 1, ufd, FAULT_TICK_MS);
		if (rc < 0 && rc != -ETIMEDOUT && rc != -EINTR) {
			fail(fh, rc, "post-copy", fh->urgent->err);
			break;
		}
	}
out:
	/* The bulk loop may be waiting for every page: tell it either way. */
	atomic_store(&fh->exited, true);
	pages_wake(fh->pages);
	return NULL;
}

int fault_start(struct fault_handler *fh, struct pages *pages, struct hmig_guest *g,
		const struct hmig_guest_geometry *geo, struct net_chan *urgent,
		int io_timeout_ms, char *err)
{
	int rc;

	/* Counters go on across a restart after a lost link. */
	uint64_t faults = fh->faults, requests = fh->requests, again = fh->asked_again;

	memset(fh, 0, sizeof(*fh));
	fh->faults = faults;
	fh->requests = requests;
	fh->asked_again = again;
	fh->pages = pages;
	fh->g = g;
	fh->geo = geo;
	fh->urgent = urgent;
	fh->io_timeout_ms = io_timeout_ms;
	rc = pthread_create(&fh->thread, NULL, fault_main, fh);
	if (rc)
		return err_setf(err, -rc, "cannot start the fault handler: %s", strerror(rc));
	fh->running = true;
	return 0;
}

int fault_stop(struct fault_handler *fh)
{
	if (fh->running) {
		atomic_store(&fh->quit, true);
		net_chan_wake(fh->urgent);
		pthread_join(fh->thread, NULL);
		fh->running = false;
	}
	rec_buf_free(&fh->rx);
	return fh->rc;
}
