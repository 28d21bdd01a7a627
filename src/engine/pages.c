#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/bitmap.h"
#include "common/clock.h"
#include "common/err.h"
#include "engine/pages.h"

void pages_free(struct pages *ps)
{
	if (!ps->g)
		return;
	free(ps->present);
	free(ps->never);
	free(ps->requested);
	free(ps->t_fault);
	free(ps->waiters);
	pthread_cond_destroy(&ps->changed);
	pthread_mutex_destroy(&ps->lock);
	memset(ps, 0, sizeof(*ps));
}

int pages_init(struct pages *ps, struct hmig_guest *g, const struct hmig_guest_geometry *geo,
	       struct pages_hook hook)
{
	memset(ps, 0, sizeof(*ps));
	ps->g = g;
	ps->npages = geo->npages;
	ps->page_size = geo->page_size;
	ps->hook = hook;
	pthread_mutex_init(&ps->lock, NULL);
	pthread_cond_init(&ps->changed, NULL);
	/* requested too, though only post-copy needs it: made inside the
	 * downtime it would be touched there (bitmap_new). */
	ps->present = bitmap_new(ps->npages);
	ps->requested = bitmap_new(ps->npages);
	if (ps->present && ps->requested)
		return 0;
	pages_free(ps);
	return -ENOMEM;
}

void pages_warm(struct pages *ps)
{
	bitmap_warm(ps->present, ps->npages);
	bitmap_warm(ps->requested, ps->npages);
	if (ps->never)
		bitmap_warm(ps->never, ps->npages);
}

int pages_never_sent(struct pages *ps, const uint64_t *never)
{
	size_t words = BITMAP_WORDS(ps->npages);
	uint64_t n = bitmap_count(never, ps->npages);

	if (!n)
		return 0;
	ps->never = bitmap_new(ps->npages);
	if (!ps->never)
		return -ENOMEM;
	pthread_mutex_lock(&ps->lock);
	ps->nnever = n;
	for (size_t w = 0; w < words; w++) {
		ps->never[w] = never[w];
		ps->npresent += (uint64_t)__builtin_popcountll(never[w] & ~ps->present[w]);
		ps->present[w] |= never[w];
	}
	pthread_mutex_unlock(&ps->lock);
	return 0;
}

/* A run of pages to hand to the backend, and how. */
struct run {
	uint64_t pfn;
	uint32_t n;
	unsigned flags;
};

/* Under the lock: splits [pfn, pfn + n) into runs to place (missing, now
 * marked present) and, before the start, runs to replace (present); after
 * the start a present page is the other path's, already placed.  Returns
 * the number of runs. */
static uint32_t claim(struct pages *ps, uint64_t pfn, uint32_t n, enum via via, struct run *runs)
{
	uint32_t nruns = 0;

	for (uint64_t p = pfn; p < pfn + n; p++) {
		bool here = bitmap_test(ps->present, p);
		unsigned flags = here ? HMIG_INSTALL_REPLACE : 0;

		if (here) {
			ps->duplicates++;
			if (ps->started)
				continue;
		} else {
			bitmap_set(ps->present, p);
			ps->npresent++;
			if (via == VIA_PULL)
				ps->pulled++;
			else if (via == VIA_PUSH)
				ps->pushed++;
		}
		struct run *last = nruns ? &runs[nruns - 1] : NULL;
		if (last && last->flags == flags && last->pfn + last->n == p)
			last->n++;
		else
			runs[nruns++] = (struct run){ p, 1, flags };
	}
	ps->installs += n;
	return nruns;
}

int pages_install(struct pages *ps, uint64_t pfn, uint32_t n, const void *data, enum via via,
		  char *err)
{
	struct run runs[PROTO_MAX_BATCH];
	uint32_t nruns;
	int rc;

	if (n > PROTO_MAX_BATCH || pfn >= ps->npages || n > ps->npages - pfn)
		return err_setf(err, -ERANGE, "installing pfns %lu..%lu: out of range (caller bug)",
				(unsigned long)pfn, (unsigned long)(pfn + n));
	for (uint64_t p = pfn; ps->never && p < pfn + n; p++)
		if (bitmap_test(ps->never, p))
			return err_setf(err, -EPROTO,
					"the source sent pfn %lu, which never moves (a hole or a host page)",
					(unsigned long)p);
	pthread_mutex_lock(&ps->lock);
	nruns = claim(ps, pfn, n, via, runs);
	pthread_mutex_unlock(&ps->lock);

	for (uint32_t i = 0; i < nruns; i++) {
		const uint8_t *src = data ? (const uint8_t *)data +
						    (runs[i].pfn - pfn) * ps->page_size
					  : NULL;

		rc = ps->g->ops->page_install(ps->g, runs[i].pfn, runs[i].n, src, runs[i].flags);
		if (rc < 0)
			return err_setf(err, rc, "installing pfn %lu: %s",
					(unsigned long)runs[i].pfn, hmig_guest_error(ps->g));
	}

	/* What the faults on the pages this call placed waited: from the
	 * handler reading the first of them to now.  (A page the other path
	 * placed is that path's to measure.) */
	pthread_mutex_lock(&ps->lock);
	if (ps->t_fault) {
		uint64_t now = clock_now_ns();

		for (uint32_t i = 0; i < nruns; i++) {
			if (runs[i].flags & HMIG_INSTALL_REPLACE)
				continue;
			for (uint64_t p = runs[i].pfn; p < runs[i].pfn + runs[i].n; p++) {
				if (!ps->t_fault[p])
					continue;
				if (ps->hook.served)
					ps->hook.served(ps->hook.ctx, now - ps->t_fault[p],
							ps->waiters[p]);
				ps->t_fault[p] = 0;
				ps->waiters[p] = 0;
			}
		}
	}
	if (nruns)
		pthread_cond_broadcast(&ps->changed);
	pthread_mutex_unlock(&ps->lock);
	return 0;
}

int pages_install_record(struct pages *ps, const struct hmig_guest_geometry *geo,
			 const struct proto_hdr *h, const void *body, enum via via, char *err)
{
	struct proto_pages pg;
	int rc;

	if (ps->crc_required && h->type == PROTO_PAGES && !(h->flags & PROTO_FLAG_CRC32C))
		return err_setf(err, -EPROTO,
				"PAGES record without CRC32Cs on a plaintext stream (the source must checksum every page)");
	if ((rc = proto_pages_decode(h, body, geo, &pg, err)))
		return rc;
	for (uint32_t i = 0; i < pg.count;) {
		uint64_t first = proto_pages_pfn(&pg, i);
		uint32_t j = i + 1;

		while (j < pg.count && proto_pages_pfn(&pg, j) == first + (j - i))
			j++;
		const void *data = pg.data ? pg.data + (size_t)i * geo->page_size : NULL;
		if ((rc = pages_install(ps, first, j - i, data, via, err)))
			return rc;
		i = j;
	}
	return 0;
}

int64_t pages_drop(struct pages *ps, uint64_t *set, char *err)
{
	size_t words = BITMAP_WORDS(ps->npages);
	uint64_t n = 0;

	pthread_mutex_lock(&ps->lock);
	if (ps->started) {
		pthread_mutex_unlock(&ps->lock);
		return err_setf(err, -EINVAL, "dropping pages after the guest started (caller bug)");
	}
	for (size_t w = 0; w < words; w++) {
		set[w] &= ps->present[w] & (ps->never ? ~ps->never[w] : ~0ull);
		n += (uint64_t)__builtin_popcountll(set[w]);
	}
	pthread_mutex_unlock(&ps->lock);
	/* The backend hears of every drop, an empty one too: at the switch
	 * to post-copy a backend whose missing pages are populated until then
	 * (Xen) makes them missing here (include/hmig/guest.h, pages_drop).
	 * Only this thread installs before the start: nothing can claim these
	 * pages between the count above and the drop. */
	int64_t dropped = ps->g->ops->pages_drop(ps->g, set);
	if (dropped < 0)
		return err_setf(err, (int)dropped, "%s", hmig_guest_error(ps->g));
	pthread_mutex_lock(&ps->lock);
	for (size_t w = 0; w < words; w++)
		ps->present[w] &= ~set[w];
	ps->npresent -= n;
	pthread_mutex_unlock(&ps->lock);
	memset(set, 0, words * sizeof(uint64_t));
	return (int64_t)n;
}

int pages_start_postcopy(struct pages *ps)
{
	/* calloc of these (16 MiB of t_fault at 8 GiB) maps zero pages lazily:
	 * nothing here is paid in the downtime but the mmap. */
	ps->t_fault = calloc(ps->npages, sizeof(*ps->t_fault));
	ps->waiters = calloc(ps->npages, sizeof(*ps->waiters));
	if (!ps->t_fault || !ps->waiters)
		return -ENOMEM;
	pages_start(ps);
	return 0;
}

void pages_start(struct pages *ps)
{
	pthread_mutex_lock(&ps->lock);
	ps->started = true;
	pthread_mutex_unlock(&ps->lock);
}

uint32_t pages_faulted(struct pages *ps, const uint64_t *pfns, uint32_t n, uint64_t now_ns,
		       uint64_t *ask)
{
	uint32_t nask = 0;

	pthread_mutex_lock(&ps->lock);
	for (uint32_t i = 0; i < n; i++) {
		uint64_t p = pfns[i];

		if (p >= ps->npages || bitmap_test(ps->present, p))
			continue; /* placed since the vCPU faulted: it is awake */
		ps->waiters[p]++;
		if (!ps->t_fault[p])
			ps->t_fault[p] = now_ns;
		if (!bitmap_test(ps->requested, p)) {
			bitmap_set(ps->requested, p);
			ask[nask++] = p;
		}
	}
	pthread_mutex_unlock(&ps->lock);
	return nask;
}

uint32_t pages_asked_missing(struct pages *ps, uint64_t *pos, uint64_t *pfns, uint32_t max)
{
	uint64_t p = *pos;
	uint32_t n = 0;

	/* A word at a time: at 8 GiB a bit at a time held the lock for a
	 * millisecond, with the fault handler at real-time priority. */
	pthread_mutex_lock(&ps->lock);
	while (ps->requested && p < ps->npages && n < max) {
		uint64_t w = p / 64;
		uint64_t bits = (ps->requested[w] & ~ps->present[w]) >> (p % 64);

		if (!bits) {
			p = (w + 1) * 64;
			continue;
		}
		p += (uint64_t)__builtin_ctzll(bits);
		pfns[n++] = p++;
	}
	pthread_mutex_unlock(&ps->lock);
	*pos = p < ps->npages ? p : ps->npages;
	return n;
}

uint64_t pages_missing(struct pages *ps, uint64_t *out)
{
	size_t words = BITMAP_WORDS(ps->npages);
	uint64_t n;

	pthread_mutex_lock(&ps->lock);
	for (size_t w = 0; w < words; w++)
		out[w] = ~ps->present[w];
	if (ps->npages % 64)
		out[words - 1] &= (1ull << (ps->npages % 64)) - 1;
	n = ps->npages - ps->npresent;
	pthread_mutex_unlock(&ps->lock);
	return n;
}

void pages_counts(struct pages *ps, struct pages_counts *c)
{
	pthread_mutex_lock(&ps->lock);
	c->present = ps->npresent;
	c->never = ps->nnever;
	c->pulled = ps->pulled;
	c->pushed = ps->pushed;
	pthread_mutex_unlock(&ps->lock);
}

uint64_t pages_present(struct pages *ps)
{
	pthread_mutex_lock(&ps->lock);
	uint64_t n = ps->npresent;
	pthread_mutex_unlock(&ps->lock);
	return n;
}

bool pages_wait_all(struct pages *ps)
{
	pthread_mutex_lock(&ps->lock);
	while (ps->npresent != ps->npages && !ps->woken)
		pthread_cond_wait(&ps->changed, &ps->lock);
	bool all = ps->npresent == ps->npages;
	ps->woken = false; /* a wake ends one wait */
	pthread_mutex_unlock(&ps->lock);
	return all;
}

void pages_wake(struct pages *ps)
{
	pthread_mutex_lock(&ps->lock);
	ps->woken = true;
	pthread_cond_broadcast(&ps->changed);
	pthread_mutex_unlock(&ps->lock);
}
