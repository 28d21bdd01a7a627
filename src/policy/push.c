#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/bitmap.h"
#include "policy/push.h"

/* Takes pfn out of the set if it is still there. */
static bool take(struct push *p, uint64_t pfn)
{
	if (pfn >= p->npages || !bitmap_test(p->unsent, pfn))
		return false;
	bitmap_clear(p->unsent, pfn);
	p->left--;
	return true;
}

/* pfn order from the cursor: push=seq, and what the other orders leave. */
static bool next_seq(struct push *p, uint64_t *pfn)
{
	p->cursor = bitmap_next(p->unsent, p->npages, p->cursor);
	if (p->cursor >= p->npages)
		return false;
	*pfn = p->cursor;
	return take(p, p->cursor);
}

static bool next_hot(struct push *p, uint64_t *pfn)
{
	while (p->order_pos < p->order_len)
		if (take(p, p->order[p->order_pos++])) {
			*pfn = p->order[p->order_pos - 1];
			return true;
		}
	return next_seq(p, pfn);
}

static bool next_near(struct push *p, uint64_t *pfn)
{
	while (p->near_len) {
		uint64_t q = p->near[p->near_head];

		p->near_head = (p->near_head + 1) % PUSH_NEAR_QUEUE;
		p->near_len--;
		if (take(p, q)) {
			*pfn = q;
			return true;
		}
	}
	return next_seq(p, pfn);
}

/* One row per order: its knob name, how it picks the next page (NULL:
 * pushes nothing), and what it learns from. */
struct push_order {
	enum hmig_push id;
	const char *name;
	bool (*next)(struct push *p, uint64_t *pfn);
	bool heat;         /* plans from the pre-copy heat */
	bool follows_pulls; /* queues pages after each pull */
};

static const struct push_order orders[] = {
	{ HMIG_PUSH_SEQ, "seq", next_seq, false, false },
	{ HMIG_PUSH_HOT, "hot", next_hot, true, false },
	{ HMIG_PUSH_NEAR, "near", next_near, false, true },
	{ HMIG_PUSH_OFF, "off", NULL, false, false },
};

#define NORDERS (sizeof(orders) / sizeof(orders[0]))

const char *hmig_push_name(enum hmig_push id)
{
	for (size_t i = 0; i < NORDERS; i++)
		if (orders[i].id == id)
			return orders[i].name;
	return "?";
}

int push_init(struct push *p, enum hmig_push id, uint32_t near_pages, uint64_t npages)
{
	memset(p, 0, sizeof(*p));
	for (size_t i = 0; i < NORDERS; i++)
		if (orders[i].id == id)
			p->how = &orders[i];
	if (!p->how)
		return -EINVAL;
	p->npages = npages;
	p->near_pages = near_pages;
	p->unsent = bitmap_new(npages);
	return p->unsent ? 0 : -ENOMEM;
}

void push_free(struct push *p)
{
	free(p->unsent);
	free(p->order);
	p->unsent = p->order = NULL;
}

bool push_wants_heat(const struct push *p)
{
	return p->how->heat;
}

/* A counting sort over the 256 possible heats, hottest first: those are the
 * pages the guest writes most, so it will touch them first. */
int push_plan(struct push *p, const uint64_t *set, const uint8_t *heat)
{
	uint64_t count[UINT8_MAX + 1] = { 0 }, start[UINT8_MAX + 1];
	uint64_t n = p->npages;

	free(p->order);
	p->order = malloc(bitmap_count(set, n) * sizeof(uint64_t) + 1);
	p->order_len = p->order_pos = 0;
	if (!p->order)
		return -ENOMEM;
	for (uint64_t q = bitmap_next(set, n, 0); q < n; q = bitmap_next(set, n, q + 1))
		count[heat[q]]++;
	uint64_t at = 0;
	for (int c = UINT8_MAX; c >= 0; c--) {
		start[c] = at;
		at += count[c];
	}
	for (uint64_t q = bitmap_next(set, n, 0); q < n; q = bitmap_next(set, n, q + 1))
		p->order[start[heat[q]]++] = q;
	p->order_len = at;
	return 0;
}

void push_start(struct push *p, const uint64_t *stale)
{
	memcpy(p->unsent, stale, BITMAP_WORDS(p->npages) * sizeof(uint64_t));
	p->left = bitmap_count(p->unsent, p->npages);
	p->cursor = 0;
}

uint64_t push_sent_among(const struct push *p, const uint64_t *set)
{
	uint64_t n = 0;

	for (uint64_t w = 0; w < BITMAP_WORDS(p->npages); w++)
		n += (uint64_t)__builtin_popcountll(set[w] & ~p->unsent[w]);
	return n;
}

bool push_taken(struct push *p, uint64_t pfn)
{
	return take(p, pfn);
}

void push_pulled(struct push *p, uint64_t pfn)
{
	if (!p->how->follows_pulls)
		return;
	for (uint32_t k = 1; k <= p->near_pages && p->near_len < PUSH_NEAR_QUEUE; k++) {
		if (pfn + k >= p->npages || !bitmap_test(p->unsent, pfn + k))
			continue;
		p->near[(p->near_head + p->near_len) % PUSH_NEAR_QUEUE] = pfn + k;
		p->near_len++;
	}
}

uint32_t push_next(struct push *p, uint64_t *pfns, uint32_t max)
{
	uint32_t n = 0;

	while (p->how->next && n < max && p->how->next(p, &pfns[n]))
		n++;
	return n;
}

bool push_active(const struct push *p)
{
	return p->how->next && p->left;
}
