/* hmigt-check DOMID: check a running hmigt against the replay rule of
 * src/guest/xen/hmigt_layout.h, from dom0.
 *
 * Pauses the domain, maps its control page, version table and data pages
 * read-only, replays ops [0, ops_done) and compares every data page byte for
 * byte (allowing the one write a pause may interrupt), then unpauses it.  It
 * is the test bed's proof that the header predicts a real guest, before and
 * after a migration; the Xen backend's own oracle is a separate, later piece.
 *
 * Exit 0 when everything matches, 1 on a mismatch or a guest-reported
 * violation, 2 when it cannot look (bad usage, not hmigt, mapping failed).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <xenctrl.h>
#include <xenforeignmemory.h>

#include "hmigt_layout.h"

#define BATCH 1024 /* gfns per foreign mapping, as libxc's save code does */
#define MAX_REPORTS 5

struct check {
	xc_interface *xch;
	xenforeignmemory_handle *fmem;
	uint32_t domid;
	struct hmigt_ctl ctl;
	uint32_t *expect, *table;
	long inflight;
	unsigned long bad;
};

static void *map(struct check *c, xen_pfn_t first, size_t n)
{
	xen_pfn_t *gfns = calloc(n, sizeof(*gfns));
	int *err = calloc(n, sizeof(*err));
	void *p = NULL;
	size_t i;

	if (!gfns || !err)
		goto out;
	for (i = 0; i < n; i++)
		gfns[i] = first + i;
	p = xenforeignmemory_map(c->fmem, c->domid, PROT_READ, n, gfns, err);
	for (i = 0; p && i < n; i++)
		if (err[i]) {
			fprintf(stderr, "hmigt-check: gfn %#" PRIx64 ": map error %d\n",
				(uint64_t)gfns[i], err[i]);
			xenforeignmemory_unmap(c->fmem, p, n);
			p = NULL;
		}
out:
	free(gfns);
	free(err);
	return p;
}

static void mismatch(struct check *c, uint32_t p, const char *what, long word)
{
	if (c->bad++ < MAX_REPORTS)
		fprintf(stderr, "hmigt-check d%u: gfn %#x (data page %u): %s (word %ld, table %u, replay %u)\n",
			c->domid, HMIGT_DATA_GFN + p, p, what, word, c->table[p], c->expect[p]);
}

static void check_page(struct check *c, uint32_t p, const uint32_t *page)
{
	uint64_t seed = c->ctl.wl.seed;
	uint32_t gfn = HMIGT_DATA_GFN + p, old = c->ctl.inflight_old;
	long w;

	if ((long)p != c->inflight) {
		if (c->table[p] != c->expect[p])
			mismatch(c, p, "version table differs from the replay", -1);
		else if ((w = hmigt_page_diff(seed, gfn, c->expect[p], page)) >= 0)
			mismatch(c, p, "page differs from its stamp", w);
		return;
	}
	/* The write of op ops_done, interrupted: committed or torn. */
	if (c->table[p] == old + 1) {
		if ((w = hmigt_page_diff(seed, gfn, old + 1, page)) >= 0)
			mismatch(c, p, "in-flight page committed but not fully written", w);
	} else if (c->table[p] != old) {
		mismatch(c, p, "in-flight page's table entry is neither old nor new", -1);
	} else if (hmigt_page_torn(seed, gfn, old, page) < 0) {
		mismatch(c, p, "in-flight page is no prefix of the new version over the old", -1);
	}
}

static int check(struct check *c)
{
	const struct hmigt_ctl *ctl;
	uint32_t n, p, table_pages;
	uint32_t *table;

	ctl = map(c, HMIGT_CTL_GFN, 1);
	if (!ctl)
		return 2;
	c->ctl = *ctl;
	xenforeignmemory_unmap(c->fmem, (void *)ctl, 1);
	if (c->ctl.magic != HMIGT_CTL_MAGIC || c->ctl.abi != HMIGT_ABI) {
		fprintf(stderr, "hmigt-check d%u: no hmigt control page at gfn %#x (magic %#" PRIx64 ")\n",
			c->domid, HMIGT_CTL_GFN, c->ctl.magic);
		return 2;
	}
	if (c->ctl.state != HMIGT_STATE_RUN) {
		fprintf(stderr, "hmigt-check d%u: hmigt is in state %u (halt reason %u), not running\n",
			c->domid, c->ctl.state, c->ctl.halt_reason);
		return 2;
	}
	n = c->ctl.wl.n_data;
	if (n == 0 || n > HMIGT_MAX_DATA_PAGES)
		return 2;
	table_pages = (n + HMIGT_PAGE_SIZE / 4 - 1) / (HMIGT_PAGE_SIZE / 4);
	table = map(c, HMIGT_TABLE_GFN, table_pages);
	c->expect = malloc((size_t)n * sizeof(*c->expect));
	if (!table || !c->expect)
		return 2;
	c->table = table;
	hmigt_replay(&c->ctl.wl, c->ctl.ops_done, c->expect);
	c->inflight = hmigt_inflight_pfn(&c->ctl.wl, c->ctl.ops_done, c->ctl.inflight_pfn,
					 c->ctl.inflight_old, c->expect);
	if (c->inflight == -3) {
		fprintf(stderr, "hmigt-check d%u: control page does not fit the replay (ops_done %" PRIu64
			", inflight_pfn %u, inflight_old %u)\n", c->domid, c->ctl.ops_done,
			c->ctl.inflight_pfn, c->ctl.inflight_old);
		c->bad++;
	}
	for (p = 0; p < n; p += BATCH) {
		uint32_t k = n - p < BATCH ? n - p : BATCH, i;
		const uint8_t *pages = map(c, HMIGT_DATA_GFN + p, k);

		if (!pages)
			return 2;
		for (i = 0; i < k; i++)
			check_page(c, p + i, (const uint32_t *)(pages + (size_t)i * HMIGT_PAGE_SIZE));
		xenforeignmemory_unmap(c->fmem, (void *)pages, k);
	}
	xenforeignmemory_unmap(c->fmem, table, table_pages);
	if (c->ctl.violations) {
		fprintf(stderr, "hmigt-check d%u: the guest counted %" PRIu64 " violations, first at op %"
			PRIu64 " gfn %#x word %u\n", c->domid, c->ctl.violations, c->ctl.bad_op,
			c->ctl.bad_gfn, c->ctl.bad_word);
		c->bad++;
	}
	return c->bad ? 1 : 0;
}

int main(int argc, char **argv)
{
	struct check c = { 0 };
	char *end;
	int rc = 2;

	if (argc != 2 || (c.domid = (uint32_t)strtoul(argv[1], &end, 10), *end)) {
		fprintf(stderr, "usage: hmigt-check DOMID\n");
		return 2;
	}
	c.xch = xc_interface_open(NULL, NULL, 0);
	c.fmem = xenforeignmemory_open(NULL, 0);
	if (!c.xch || !c.fmem) {
		fprintf(stderr, "hmigt-check: cannot open libxenctrl/libxenforeignmemory: %s (run in dom0 as root)\n",
			strerror(errno));
		goto out;
	}
	if (xc_domain_pause(c.xch, c.domid)) {
		fprintf(stderr, "hmigt-check: pause d%u: %s\n", c.domid, strerror(errno));
		goto out;
	}
	rc = check(&c);
	xc_domain_unpause(c.xch, c.domid);
	if (rc == 0)
		printf("hmigt-check d%u: ok ops_done=%" PRIu64 " pages=%u inflight=%ld boots=%u writes=%" PRIu64 "\n",
		       c.domid, c.ctl.ops_done, c.ctl.wl.n_data, c.inflight, c.ctl.boots, c.ctl.writes);
	else if (rc == 1)
		printf("hmigt-check d%u: FAILED, %lu mismatches\n", c.domid, c.bad);
out:
	free(c.expect);
	if (c.fmem)
		xenforeignmemory_close(c.fmem);
	if (c.xch)
		xc_interface_close(c.xch);
	return rc;
}
