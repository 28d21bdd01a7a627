/* An in-memory guest for the fuzz targets only: every member does the
 * least that keeps the engine going, and checks what the engine hands it
 * as strictly as a real backend would (ASan watches the memory). */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "fake.h"

#define PS 4096u

struct fake {
	struct hmig_guest base;
	bool dest;
	uint64_t npages, max_pages;
	uint8_t *mem;
};

static struct fake *F(struct hmig_guest *g)
{
	return (struct fake *)g;
}

static int geometry(struct hmig_guest *g, struct hmig_guest_geometry *geo)
{
	*geo = (struct hmig_guest_geometry){ .npages = F(g)->npages, .page_size = PS, .nvcpus = 1,
					     .vcpu_state_max = 4096 };
	return 0;
}

static int64_t never_sent(struct hmig_guest *g, uint64_t *bitmap)
{
	memset(bitmap, 0, (F(g)->npages + 63) / 64 * 8);
	return 0;
}

static int stats(struct hmig_guest *g, struct hmig_guest_stats *st)
{
	(void)g;
	memset(st, 0, sizeof(*st));
	strcpy(st->workload, "fuzz");
	return 0;
}

static int ok(struct hmig_guest *g)
{
	(void)g;
	return 0;
}

static void destroy(struct hmig_guest *g)
{
	free(F(g)->mem);
	free(g);
}

static int pages_map(struct hmig_guest *g, const uint64_t *pfns, uint32_t n, const void **ptrs)
{
	for (uint32_t i = 0; i < n; i++) {
		if (pfns[i] >= F(g)->npages)
			abort(); /* the engine's bug, not the input's */
		ptrs[i] = F(g)->mem + pfns[i] * PS;
	}
	return 0;
}

static void pages_unmap(struct hmig_guest *g, const uint64_t *pfns, uint32_t n, const void **ptrs)
{
	(void)g;
	(void)pfns;
	(void)n;
	(void)ptrs;
}

static int dirty_start(struct hmig_guest *g, enum hmig_dirty_mode want)
{
	(void)g;
	(void)want;
	return HMIG_DIRTY_WP_ASYNC;
}

static int64_t dirty_collect(struct hmig_guest *g, uint64_t *bitmap, unsigned flags)
{
	(void)flags;
	/* Every pass finds the last page dirty: passes, settle and stale sets
	 * all have something to do. */
	bitmap[(F(g)->npages - 1) / 64] |= 1ull << ((F(g)->npages - 1) % 64);
	return 1;
}

static int vcpu_save(struct hmig_guest *g, void **blob, size_t *len)
{
	(void)g;
	*blob = calloc(1, 64);
	*len = 64;
	return *blob ? 0 : -ENOMEM;
}

static int dest_prepare(struct hmig_guest *g, const struct hmig_guest_geometry *geo)
{
	struct fake *f = F(g);

	if (f->mem || geo->page_size != PS || geo->npages > f->max_pages)
		return err_setf(g->err, -EINVAL, "fuzz guest: not this geometry");
	f->npages = geo->npages;
	f->mem = calloc(geo->npages, PS);
	return f->mem ? 0 : -ENOMEM;
}

static int page_install(struct hmig_guest *g, uint64_t pfn, uint32_t n, const void *data,
			unsigned flags)
{
	struct fake *f = F(g);

	(void)flags;
	if (!f->mem || pfn >= f->npages || n > f->npages - pfn)
		abort(); /* the engine let a bad pfn through */
	if (data)
		memcpy(f->mem + pfn * PS, data, (size_t)n * PS);
	else
		memset(f->mem + pfn * PS, 0, (size_t)n * PS);
	return 0;
}

static int64_t pages_drop(struct hmig_guest *g, const uint64_t *bitmap)
{
	int64_t n = 0;

	for (uint64_t p = 0; p < F(g)->npages; p++)
		if (bitmap[p / 64] >> (p % 64) & 1) {
			memset(F(g)->mem + p * PS, 0, PS);
			n++;
		}
	return n;
}

static int unsupported(struct hmig_guest *g)
{
	return err_setf(g->err, -EOPNOTSUPP, "fuzz guest: no post-copy faults");
}

static int faults_read(struct hmig_guest *g, uint64_t *pfns, uint32_t max)
{
	(void)pfns;
	(void)max;
	return unsupported(g);
}

static int vcpu_restore(struct hmig_guest *g, const void *blob, size_t len)
{
	(void)g;
	(void)blob;
	return len ? 0 : -EPROTO;
}

static const struct hmig_guest_ops ops = {
	.name = "synth", /* what HELLO names: inputs captured from synth migrations */
	.geometry = geometry,
	.pfns_never_sent = never_sent,
	.stats = stats,
	.verify = ok,
	.destroy = destroy,
	.run = ok,
	.pages_map = pages_map,
	.pages_unmap = pages_unmap,
	.dirty_start = dirty_start,
	.dirty_collect = dirty_collect,
	.dirty_stop = ok,
	.pause = ok,
	.resume = ok,
	.vcpu_save = vcpu_save,
	.dest_prepare = dest_prepare,
	.page_install = page_install,
	.pages_drop = pages_drop,
	.fault_fd = unsupported,
	.faults_read = faults_read,
	.faults_done = ok,
	.vcpu_restore = vcpu_restore,
	.start = ok,
};

struct hmig_guest *fake_guest_source(uint64_t npages)
{
	struct fake *f = calloc(1, sizeof(*f));

	f->base.ops = &ops;
	f->npages = npages;
	f->mem = calloc(npages, PS);
	for (uint64_t p = 0; p < npages; p += 2)
		memset(f->mem + p * PS, (int)(p + 1), PS); /* half data, half zero */
	return &f->base;
}

struct hmig_guest *fake_guest_dest(uint64_t max_pages)
{
	struct fake *f = calloc(1, sizeof(*f));

	f->base.ops = &ops;
	f->max_pages = max_pages;
	return &f->base;
}
