/* The post-copy fault handler: a dispatcher over three page sets.
 *
 *   missing    not present, not asked for: a fault moves it to requested
 *   requested  asked of the source once on the urgent channel
 *   present    installed, by the pull reply or by the pusher, whichever
 *              came first (the other is a duplicate, dropped by EEXIST)
 *
 * One thread, woken by the userfaultfd (a vCPU blocked on a missing page),
 * by the urgent channel (a reply), or by net_chan_wake (quit).  It owns the
 * urgent channel; installs and the page sets are shared with the bulk loop
 * under hmig_dest.lock.
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
#include <sys/resource.h>
#include <unistd.h>

#include "common/bitmap.h"
#include "common/clock.h"
#include "common/err.h"
#include "engine/dest.h"

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
static int take_replies(struct hmig_dest *d)
{
	struct fault_handler *fh = &d->fh;
	struct net_chan *ch = &d->net.urgent;
	struct proto_hdr h;
	int rc;

	while ((rc = net_chan_readable(ch)) == 1) {
		rc = eng_rec_read(ch, &d->geo, d->cfg.io_timeout_ms, "source", &h, &fh->rx, fh->err);
		if (rc)
			return fh->rc = rc;
		if (h.type != PROTO_PAGES && h.type != PROTO_ZERO)
			return fh->rc = err_setf(fh->err, -EPROTO,
						 "unexpected %s on the urgent channel",
						 proto_type_name(h.type));
		if ((rc = dest_install_record(d, &h, fh->rx.p, VIA_PULL, fh->err)))
			return fh->rc = rc;
	}
	return rc < 0 ? fail(fh, rc, "post-copy", ch->err) : 0;
}

/* Reads pending faults and asks for each missing page once. */
static int take_faults(struct hmig_dest *d)
{
	struct fault_handler *fh = &d->fh;
	uint64_t pfns[FAULT_BATCH], ask[FAULT_BATCH];
	uint8_t req[PROTO_HDR_LEN + 8 + 8 * FAULT_BATCH];
	uint32_t nask = 0;
	int n = d->g->ops->faults_read(d->g, pfns, FAULT_BATCH);

	if (n < 0)
		return fh->rc = err_setf(fh->err, n, "%s", hmig_guest_error(d->g));
	uint64_t now = clock_now_ns();
	pthread_mutex_lock(&d->lock);
	for (int i = 0; i < n; i++) {
		uint64_t p = pfns[i];

		if (p >= d->geo.npages || bitmap_test(d->present, p))
			continue; /* installed since the vCPU faulted: it is awake */
		d->waiters[p]++;
		if (!d->t_fault[p])
			d->t_fault[p] = now;
		if (!bitmap_test(fh->requested, p)) {
			bitmap_set(fh->requested, p);
			ask[nask++] = p;
		}
	}
	pthread_mutex_unlock(&d->lock);
	fh->faults += (uint64_t)n;
	if (!nask)
		return 0;
	int len = proto_request_encode(req, sizeof(req), &d->geo, ask, nask, fh->err);
	if (len < 0)
		return fh->rc = len;
	int rc = eng_rec_send(&d->net.urgent, req, (size_t)len, d->cfg.io_timeout_ms, fh->err);
	if (rc)
		return fh->rc = rc;
	fh->requests += nask;
	return 0;
}

static bool all_present(struct hmig_dest *d)
{
	pthread_mutex_lock(&d->lock);
	bool all = d->npresent == d->geo.npages;
	pthread_mutex_unlock(&d->lock);
	return all;
}

/* The handler runs at this nice value when allowed (root or CAP_SYS_NICE):
 * a blocked vCPU waits for it, while the bulk loop and the running vCPUs
 * can wait a little.  Without the privilege it runs at the default. */
#define FAULT_NICE -10

static void *fault_main(void *arg)
{
	struct hmig_dest *d = arg;
	struct fault_handler *fh = &d->fh;
	struct net_chan *urgent = &d->net.urgent;
	int ufd = d->g->ops->fault_fd(d->g);

	setpriority(PRIO_PROCESS, (id_t)gettid(), FAULT_NICE);

	while (!atomic_load(&fh->quit) && !all_present(d)) {
		if (take_replies(d) || take_faults(d))
			break;
		int rc = net_chan_wait_any_fd(&urgent, 1, ufd, FAULT_TICK_MS);
		if (rc < 0 && rc != -ETIMEDOUT && rc != -EINTR) {
			fail(fh, rc, "post-copy", urgent->err);
			break;
		}
	}
	/* The bulk loop may be waiting for every page: tell it either way. */
	pthread_mutex_lock(&d->lock);
	pthread_cond_broadcast(&d->all_present);
	pthread_mutex_unlock(&d->lock);
	return NULL;
}

int fault_start(struct hmig_dest *d)
{
	struct fault_handler *fh = &d->fh;
	int rc;

	fh->requested = bitmap_new(d->geo.npages);
	if (!fh->requested)
		return err_setf(d->err, -ENOMEM, "out of memory for the fault handler");
	rc = pthread_create(&fh->thread, NULL, fault_main, d);
	if (rc)
		return err_setf(d->err, -rc, "cannot start the fault handler: %s", strerror(rc));
	fh->running = true;
	return 0;
}

int fault_stop(struct hmig_dest *d)
{
	struct fault_handler *fh = &d->fh;

	if (fh->running) {
		atomic_store(&fh->quit, true);
		net_chan_wake(&d->net.urgent);
		pthread_join(fh->thread, NULL);
		fh->running = false;
	}
	rec_buf_free(&fh->rx);
	free(fh->requested);
	fh->requested = NULL;
	return fh->rc;
}
