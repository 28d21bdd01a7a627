/* hmigt-check DOMID: check a running hmigt against the replay rule of
 * src/guest/xen/hmigt_layout.h, from dom0.
 *
 * Pauses the domain, runs the Xen backend's level-2 oracle over it
 * (hmigt_replay_check, src/guest/xen/oracle.c) through read-only foreign
 * mappings, and unpauses it.  The test bed's smoke run uses it before and
 * after `xl migrate`, where no hmig is involved.
 *
 * Exit 0 when everything matches, 1 on a mismatch or a guest-reported
 * violation, 2 when it cannot look (bad usage, not hmigt, mapping failed).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <xenctrl.h>
#include <xenforeignmemory.h>

#include "guest/xen/oracle.h"

#define MAP_RETRY_MS 60000

struct check {
	xenforeignmemory_handle *fmem;
	uint32_t domid;
};

static const void *map(void *ctx, uint64_t gfn, uint32_t n, int *rc, char *err)
{
	struct check *c = ctx;
	xen_pfn_t gfns[HMIGT_MAP_MAX];
	int errs[HMIGT_MAP_MAX];
	void *p;

	if (n == 0 || n > HMIGT_MAP_MAX) {
		*rc = -EINVAL;
		snprintf(err, 256, "map of %u pages: 1 to %u", n, HMIGT_MAP_MAX);
		return NULL;
	}
	for (uint32_t i = 0; i < n; i++)
		gfns[i] = gfn + i;
	/* A frame that is paged out (a destination in post-copy) maps with
	 * -ENOENT: Xen has asked the pager for it, and the mapper retries, as
	 * libxenguest's callers do.  Up to MAP_RETRY_MS of retries. */
	for (unsigned waited_ms = 0;; waited_ms++) {
		bool paged = false;

		p = xenforeignmemory_map(c->fmem, c->domid, PROT_READ, n, gfns, errs);
		if (!p) {
			*rc = -errno;
			snprintf(err, 256, "map of gfn %#" PRIx64 ": %s", gfn, strerror(errno));
			return NULL;
		}
		for (uint32_t i = 0; i < n; i++) {
			if (errs[i] == -ENOENT && waited_ms < MAP_RETRY_MS) {
				paged = true;
			} else if (errs[i]) {
				xenforeignmemory_unmap(c->fmem, p, n);
				*rc = -EFAULT;
				snprintf(err, 256, "gfn %#" PRIx64 ": map error %d%s", gfn + i, errs[i],
					 errs[i] == -ENOENT ? " (still paged out)" : "");
				return NULL;
			}
		}
		if (!paged)
			return p;
		xenforeignmemory_unmap(c->fmem, p, n);
		usleep(1000);
	}
}

static void unmap(void *ctx, const void *p, uint32_t n)
{
	struct check *c = ctx;

	xenforeignmemory_unmap(c->fmem, (void *)p, n);
}

int main(int argc, char **argv)
{
	struct check c = { 0 };
	struct hmigt_mem mem = { map, unmap, &c };
	struct hmigt_verdict v;
	xc_interface *xch;
	char *end, err[256] = "";
	int rc;

	if (argc != 2 || (c.domid = (uint32_t)strtoul(argv[1], &end, 10), *end)) {
		fprintf(stderr, "usage: hmigt-check DOMID\n");
		return 2;
	}
	xch = xc_interface_open(NULL, NULL, 0);
	c.fmem = xenforeignmemory_open(NULL, 0);
	if (!xch || !c.fmem) {
		fprintf(stderr, "hmigt-check: cannot open libxenctrl/libxenforeignmemory: %s (run in dom0 as root)\n",
			strerror(errno));
		return 2;
	}
	if (xc_domain_pause(xch, c.domid)) {
		fprintf(stderr, "hmigt-check: pause d%u: %s\n", c.domid, strerror(errno));
		return 2;
	}
	rc = hmigt_replay_check(&mem, 0, &v, err);
	xc_domain_unpause(xch, c.domid);
	if (rc == 0)
		printf("hmigt-check d%u: ok ops_done=%" PRIu64 " pages=%u inflight=%ld boots=%u writes=%" PRIu64 "\n",
		       c.domid, v.ctl.ops_done, v.ctl.wl.n_data, v.inflight, v.ctl.boots, v.ctl.writes);
	else
		fprintf(stderr, "hmigt-check d%u: %s\n", c.domid, err);
	xenforeignmemory_close(c.fmem);
	xc_interface_close(xch);
	return rc == 0 ? 0 : rc == -EBADMSG ? 1 : 2;
}
