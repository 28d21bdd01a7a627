/* The post-copy pusher's order: which stale pages the source pushes next.
 *
 * Pure, like the stop rule: a small state built from the geometry and the
 * pre-copy heat, told what was sent and pulled, asked for the next pfns.
 * No I/O, no clock, no engine context; tests/policy drives it with tables.
 *
 * Every order hands out each page of the stale set at most once, and a page
 * that went out another way (a pull reply) is never pushed after.  An order
 * is a `next` function and a row of the table in push.c:
 *
 *   seq   pfn order
 *   hot   the pages pre-copy found dirty most often first (a counting sort
 *         over the heat), then pfn order for the rest
 *   near  after each pull, the `near_pages` pages after it first; else seq
 *   off   nothing: pure demand paging
 *
 * Threading: one thread (the source's) uses a pusher.
 */
#ifndef HMIG_POLICY_PUSH_H
#define HMIG_POLICY_PUSH_H

#include <stdbool.h>
#include <stdint.h>

#include <hmig/hmig.h>

/* Pages queued behind pulls for push=near, at most. */
#define PUSH_NEAR_QUEUE 1024

struct push {
	const struct push_order *how;
	uint64_t npages;
	uint32_t near_pages;
	uint64_t *unsent;   /* stale pages neither pushed nor pulled yet */
	uint64_t left;      /* how many */
	uint64_t cursor;    /* pfn order resumes here */
	uint64_t *order;    /* hot: the plan, hottest first */
	uint64_t order_len, order_pos;
	uint64_t near[PUSH_NEAR_QUEUE]; /* near: a ring of pages after pulls */
	uint32_t near_head, near_len;
};

/* Prepares a pusher for npages pages in `order`.  0 or -ENOMEM. */
int push_init(struct push *p, enum hmig_push order, uint32_t near_pages, uint64_t npages);
void push_free(struct push *p);

/* Whether the order plans ahead from the pre-copy heat (push_plan is worth
 * calling). */
bool push_wants_heat(const struct push *p);

/* Plans the order over `set` (npages bits: the pages expected to be stale)
 * from `heat` (per page, passes that found it dirty, saturating at 255).
 * O(guest): the source calls it before the pause, when the stale set is not
 * final yet; pages push_start later names beyond the plan follow it in pfn
 * order.  0 or -ENOMEM. */
int push_plan(struct push *p, const uint64_t *set, const uint8_t *heat);

/* The stale set at the switch (npages bits): what will be pushed.  Once. */
void push_start(struct push *p, const uint64_t *stale);

/* A page went to the destination another way (a pull reply): it will not be
 * pushed.  Returns whether it was still to push. */
bool push_taken(struct push *p, uint64_t pfn);

/* A page was pulled: orders that follow pulls (near) queue what is after it. */
void push_pulled(struct push *p, uint64_t pfn);

/* Writes up to max pfns to push next and takes them out of the set; returns
 * how many, 0 when nothing is left to push (or the order pushes nothing). */
uint32_t push_next(struct push *p, uint64_t *pfns, uint32_t max);

/* How many pages of `set` (npages bits) went out already, pushed or pulled:
 * after a lost link, those the destination still lacks are sent again. */
uint64_t push_sent_among(const struct push *p, const uint64_t *set);

/* Pages of the stale set not pushed or pulled yet. */
static inline uint64_t push_left(const struct push *p)
{
	return p->left;
}

/* Whether push_next would hand out anything: pages are left and the order
 * pushes at all (push=off never does; its pages come by pull). */
bool push_active(const struct push *p);

#endif
