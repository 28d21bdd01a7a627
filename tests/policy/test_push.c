/* The post-copy push orders, as tables: what each hands out, in which
 * order, and that no page goes out twice or after it was pulled. */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <errno.h>
#include <string.h>

#include "common/bitmap.h"
#include "policy/push.h"

#define N 4096

/* Drains p in batches of `batch`, checking that no page comes twice and
 * each is in `stale`; returns how many came and writes them to out. */
static uint64_t drain(struct push *p, const uint64_t *stale, uint64_t *out, uint32_t batch)
{
	uint64_t *seen = bitmap_new(N), got = 0, buf[64];
	uint32_t n;

	while ((n = push_next(p, buf, batch)) > 0) {
		for (uint32_t i = 0; i < n; i++) {
			cr_assert(bitmap_test(stale, buf[i]), "pfn %lu was not stale",
				  (unsigned long)buf[i]);
			cr_assert(!bitmap_test(seen, buf[i]), "pfn %lu pushed twice",
				  (unsigned long)buf[i]);
			bitmap_set(seen, buf[i]);
			out[got++] = buf[i];
		}
	}
	free(seen);
	return got;
}

static uint64_t *stale_every(uint64_t step)
{
	uint64_t *s = bitmap_new(N);

	for (uint64_t q = 0; q < N; q += step)
		bitmap_set(s, q);
	return s;
}

struct row {
	enum hmig_push order;
	const char *name;
	uint64_t step;        /* stale set: every step-th page */
	uint32_t batch;
	uint64_t want;        /* pages pushed */
};

static struct row rows[] = {
	{ HMIG_PUSH_SEQ, "seq", 1, 64, N },
	{ HMIG_PUSH_SEQ, "seq, scattered", 3, 7, (N + 2) / 3 },
	{ HMIG_PUSH_HOT, "hot", 2, 64, N / 2 },
	{ HMIG_PUSH_NEAR, "near", 5, 10, (N + 4) / 5 },
	{ HMIG_PUSH_OFF, "off", 1, 64, 0 },
};

ParameterizedTestParameters(push, every_stale_page_once)
{
	return cr_make_param_array(struct row, rows, sizeof(rows) / sizeof(rows[0]));
}

ParameterizedTest(struct row *r, push, every_stale_page_once)
{
	struct push p;
	uint64_t *stale = stale_every(r->step), *out = malloc(N * sizeof(uint64_t));
	uint8_t heat[N] = { 0 };

	cr_assert_eq(push_init(&p, r->order, 16, N), 0);
	if (push_wants_heat(&p))
		cr_assert_eq(push_plan(&p, stale, heat), 0);
	push_start(&p, stale);
	cr_assert_eq(push_left(&p), bitmap_count(stale, N));
	cr_assert_eq(push_active(&p), r->want > 0, "%s", r->name);
	cr_assert_eq(drain(&p, stale, out, r->batch), r->want, "%s", r->name);
	if (r->want)
		cr_assert_eq(push_left(&p), 0, "%s left pages behind", r->name);
	cr_assert(!push_active(&p));
	push_free(&p);
	free(stale);
	free(out);
}

/* Hot: by heat, hottest first; pages the plan did not know (the final
 * collect found them) come after it, in pfn order. */
Test(push, hot_goes_by_heat_then_pfn_order)
{
	struct push p;
	uint64_t *plan = bitmap_new(N), *stale = bitmap_new(N), out[8];
	uint8_t heat[N] = { 0 };

	uint64_t pfns[] = { 10, 20, 30, 40 };
	uint8_t heats[] = { 1, 9, 3, 9 };
	for (int i = 0; i < 4; i++) {
		bitmap_set(plan, pfns[i]);
		bitmap_set(stale, pfns[i]);
		heat[pfns[i]] = heats[i];
	}
	bitmap_set(stale, 5);   /* found after the plan */
	bitmap_set(stale, 3000);
	cr_assert_eq(push_init(&p, HMIG_PUSH_HOT, 16, N), 0);
	cr_assert(push_wants_heat(&p));
	cr_assert_eq(push_plan(&p, plan, heat), 0);
	push_start(&p, stale);
	cr_assert_eq(drain(&p, stale, out, 3), 6);
	uint64_t want[] = { 20, 40, 30, 10, 5, 3000 };
	for (int i = 0; i < 6; i++)
		cr_assert_eq(out[i], want[i], "position %d: %lu, want %lu", i,
			     (unsigned long)out[i], (unsigned long)want[i]);
	push_free(&p);
	free(plan);
	free(stale);
}

/* Near: the pages after a pull go next, and only stale, unsent ones. */
Test(push, near_pages_follow_a_pull)
{
	struct push p;
	uint64_t *stale = stale_every(1), out[8];

	cr_assert_eq(push_init(&p, HMIG_PUSH_NEAR, 4, N), 0);
	push_start(&p, stale);
	cr_assert(push_taken(&p, 1000)); /* the pull's own page went on urgent */
	cr_assert(push_taken(&p, 1002)); /* so did another */
	push_pulled(&p, 1000);
	cr_assert_eq(push_next(&p, out, 3), 3);
	cr_assert_eq(out[0], 1001);
	cr_assert_eq(out[1], 1003);
	cr_assert_eq(out[2], 1004);
	cr_assert_eq(push_next(&p, out, 1), 1);
	cr_assert_eq(out[0], 0, "then pfn order");
	push_free(&p);
	free(stale);
}

/* A pulled page is never pushed after, in any order. */
Test(push, a_pulled_page_is_not_pushed)
{
	static const enum hmig_push ids[] = { HMIG_PUSH_SEQ, HMIG_PUSH_HOT, HMIG_PUSH_NEAR };

	for (size_t k = 0; k < 3; k++) {
		struct push p;
		uint64_t *stale = stale_every(1), *out = malloc(N * sizeof(uint64_t));
		uint8_t heat[N];

		memset(heat, 7, sizeof(heat));
		cr_assert_eq(push_init(&p, ids[k], 16, N), 0);
		if (push_wants_heat(&p))
			push_plan(&p, stale, heat);
		push_start(&p, stale);
		cr_assert(push_taken(&p, 77));
		cr_assert(!push_taken(&p, 77), "taken twice");
		push_pulled(&p, 77);
		uint64_t got = drain(&p, stale, out, 64);
		cr_assert_eq(got, N - 1);
		for (uint64_t i = 0; i < got; i++)
			cr_assert_neq(out[i], 77, "%s pushed a pulled page", hmig_push_name(ids[k]));
		push_free(&p);
		free(stale);
		free(out);
	}
}

/* After a lost link: of the pages the destination still lacks, those that
 * went out before (pushed or pulled) are the ones sent again. */
Test(push, sent_among_counts_what_went_out_before)
{
	struct push p;
	uint64_t *stale = stale_every(1), buf[10];

	cr_assert_eq(push_init(&p, HMIG_PUSH_SEQ, 16, N), 0);
	push_start(&p, stale);
	cr_assert_eq(push_sent_among(&p, stale), 0);
	cr_assert_eq(push_next(&p, buf, 10), 10); /* pfns 0..9 pushed */
	cr_assert(push_taken(&p, 100));          /* pulled */
	cr_assert_eq(push_sent_among(&p, stale), 11);
	uint64_t *lacking = bitmap_new(N);
	bitmap_set(lacking, 3);   /* pushed, lost */
	bitmap_set(lacking, 100); /* pulled, lost */
	bitmap_set(lacking, 500); /* never sent */
	cr_assert_eq(push_sent_among(&p, lacking), 2);
	push_free(&p);
	free(stale);
	free(lacking);
}

Test(push, names)
{
	cr_assert_str_eq(hmig_push_name(HMIG_PUSH_SEQ), "seq");
	cr_assert_str_eq(hmig_push_name(HMIG_PUSH_HOT), "hot");
	cr_assert_str_eq(hmig_push_name(HMIG_PUSH_NEAR), "near");
	cr_assert_str_eq(hmig_push_name(HMIG_PUSH_OFF), "off");
	cr_assert_str_eq(hmig_push_name((enum hmig_push)99), "?");
	struct push p;
	cr_assert_eq(push_init(&p, (enum hmig_push)99, 16, N), -EINVAL);
}
