/* The destination's page sets (src/engine/pages.c) over a real synth
 * destination guest: claims, drops, faults and the race between the push
 * and the pull of one page. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/bitmap.h"
#include "engine/pages.h"
#include "harness.h"

#define PAGE 4096

/* A running source guest paused, its memory and vCPU state copied out: what
 * a migration would bring. */
struct image {
	struct hmig_guest *src;
	struct hmig_guest_geometry geo;
	uint8_t *data;
	void *blob;
	size_t len;
};

static void image_take(struct image *im, uint64_t mem)
{
	struct hmig_synth_params p = { .mem_bytes = mem, .vcpus = 1, .workload = "read:write_pct=0",
				       .seed = 3, .fill = 1.0 };
	char err[256];

	cr_assert_eq(hmig_synth_open(&p, &im->src, err), 0, "%s", err);
	cr_assert_eq(im->src->ops->run(im->src), 0);
	im->src->ops->pause(im->src);
	im->src->ops->geometry(im->src, &im->geo);
	cr_assert_eq(im->src->ops->vcpu_save(im->src, &im->blob, &im->len), 0);
	im->data = malloc(im->geo.npages * PAGE);
	for (uint64_t q = 0; q < im->geo.npages; q++) {
		const void *ptr;

		cr_assert_eq(im->src->ops->pages_map(im->src, &q, 1, &ptr), 0);
		memcpy(im->data + q * PAGE, ptr, PAGE);
	}
}

static void image_free(struct image *im)
{
	free(im->data);
	free(im->blob);
	im->src->ops->destroy(im->src);
}

static struct hmig_guest *dest_for(const struct image *im)
{
	struct hmig_guest *d;
	char err[256];

	cr_assert_eq(hmig_synth_open_dest(&d, err), 0);
	cr_assert_eq(d->ops->dest_prepare(d, &im->geo), 0, "%s", hmig_guest_error(d));
	cr_assert_eq(d->ops->vcpu_restore(d, im->blob, im->len), 0, "%s", hmig_guest_error(d));
	return d;
}

struct racer {
	struct pages *ps;
	const uint8_t *data;
	enum via via;
	pthread_barrier_t *go;
};

static void *race_install(void *arg)
{
	struct racer *r = arg;
	char err[256];

	pthread_barrier_wait(r->go);
	/* The first 256 pages in runs of 8, as records would bring them. */
	for (uint64_t q = 0; q < 256; q += 8)
		cr_assert_eq(pages_install(r->ps, q, 8, r->data + q * PAGE, r->via, err), 0, "%s",
			     err);
	return NULL;
}

/* Push and pull deliver the same pages at once after the guest started:
 * each page is placed exactly once, with its content, and the other arrival
 * counts a duplicate; the reading vCPU, faulting on them meanwhile, sees the
 * right stamps (the oracle checks). */
Test(pages, the_same_page_by_two_paths_is_installed_once, .timeout = 30)
{
	need_uffd();
	struct image im;
	struct pages ps;
	char err[256];

	image_take(&im, 2 << 20);
	struct hmig_guest *d = dest_for(&im);
	cr_assert_eq(pages_init(&ps, d, &im.geo, (struct pages_hook){ 0 }), 0);
	uint64_t rest = im.geo.npages - 256;
	for (uint64_t q = 256; q < im.geo.npages; q += 512) {
		uint32_t n = (uint32_t)(im.geo.npages - q < 512 ? im.geo.npages - q : 512);

		cr_assert_eq(pages_install(&ps, q, n, im.data + q * PAGE, VIA_PASS, err), 0, "%s",
			     err);
	}
	cr_assert_eq(pages_start_postcopy(&ps), 0);
	cr_assert_eq(d->ops->start(d), 0);
	pthread_barrier_t go;
	pthread_barrier_init(&go, NULL, 2);
	struct racer a = { &ps, im.data, VIA_PUSH, &go }, b = { &ps, im.data, VIA_PULL, &go };
	pthread_t ta, tb;
	pthread_create(&ta, NULL, race_install, &a);
	pthread_create(&tb, NULL, race_install, &b);
	pthread_join(ta, NULL);
	pthread_join(tb, NULL);
	cr_assert_eq(pages_present(&ps), im.geo.npages);
	cr_assert_eq(ps.pushed + ps.pulled, 256, "placed %lu + %lu times",
		     (unsigned long)ps.pushed, (unsigned long)ps.pulled);
	cr_assert_eq(ps.duplicates, 256);
	cr_assert_eq(ps.installs, rest + 512);
	cr_assert(pages_wait_all(&ps));
	cr_assert_eq(d->ops->faults_done(d), 0);
	struct timespec nap = { .tv_nsec = 50 * 1000 * 1000 };
	nanosleep(&nap, NULL); /* the reader runs over every page */
	d->ops->pause(d);
	cr_assert_eq(d->ops->verify(d), 0, "%s", hmig_guest_error(d));
	pthread_barrier_destroy(&go);
	pages_free(&ps);
	d->ops->destroy(d);
	image_free(&im);
}

static uint64_t served, served_waiters;

static void count_served(void *ctx, uint64_t latency_ns, uint32_t waiters)
{
	(void)ctx, (void)latency_ns;
	served++;
	served_waiters += waiters;
}

/* Before the start: a later pass replaces, a drop makes only present pages
 * missing; after it, a fault asks for each missing page once, and the hook
 * hears when the page it waited for arrives. */
Test(pages, drops_faults_and_what_is_still_needed, .timeout = 30)
{
	need_uffd();
	struct image im;
	struct pages ps;
	char err[256];

	image_take(&im, 1 << 20);
	struct hmig_guest *d = dest_for(&im);
	cr_assert_eq(pages_init(&ps, d, &im.geo, (struct pages_hook){ count_served, NULL }), 0);
	uint64_t n = im.geo.npages, *set = bitmap_new(n), *missing = bitmap_new(n);

	cr_assert_eq(pages_install(&ps, 0, 100, im.data, VIA_PASS, err), 0, "%s", err);
	cr_assert_eq(pages_install(&ps, 10, 5, im.data + 10 * PAGE, VIA_PASS, err), 0, "%s", err);
	cr_assert_eq(ps.duplicates, 5, "a later pass replaces");
	cr_assert_eq(pages_missing(&ps, missing), n - 100);
	cr_assert(!bitmap_test(missing, 99) && bitmap_test(missing, 100) &&
		  bitmap_test(missing, n - 1));

	bitmap_set_range(set, 90, 110); /* 90..99 present, 100..109 never came */
	cr_assert_eq(pages_drop(&ps, set, err), 10);
	cr_assert_eq(bitmap_count(set, n), 0, "the set is emptied");
	cr_assert_eq(pages_present(&ps), 90);

	cr_assert_eq(pages_start_postcopy(&ps), 0);
	bitmap_set(set, 5);
	cr_assert_lt(pages_drop(&ps, set, err), 0, "no drop once the guest runs");
	uint64_t faults[] = { 95, 95, 3, 200, 95 }, ask[8];
	cr_assert_eq(pages_faulted(&ps, faults, 5, 1000, ask), 2, "95 and 200, once each");
	cr_assert_eq(ask[0], 95);
	cr_assert_eq(ask[1], 200);
	cr_assert_eq(pages_faulted(&ps, faults, 1, 2000, ask), 0, "95 was asked for already");
	uint64_t pos = 0, again[4];
	cr_assert_eq(pages_asked_missing(&ps, &pos, again, 1), 1, "one at a time");
	cr_assert_eq(again[0], 95);
	cr_assert_eq(pages_asked_missing(&ps, &pos, again, 4), 1, "on from the cursor");
	cr_assert_eq(again[0], 200);
	cr_assert_eq(pages_asked_missing(&ps, &pos, again, 4), 0);
	served = served_waiters = 0;
	cr_assert_eq(pages_install(&ps, 95, 1, im.data + 95 * PAGE, VIA_PULL, err), 0, "%s", err);
	cr_assert_eq(served, 1);
	cr_assert_eq(served_waiters, 4, "four fault events waited on pfn 95");
	cr_assert_eq(ps.pulled, 1);
	pos = 0;
	cr_assert_eq(pages_asked_missing(&ps, &pos, again, 4), 1, "95 came: only 200 is owed");
	cr_assert_eq(again[0], 200);
	free(set);
	free(missing);
	pages_free(&ps);
	d->ops->faults_done(d);
	d->ops->destroy(d);
	image_free(&im);
}
