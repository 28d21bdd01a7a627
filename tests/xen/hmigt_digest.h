/* Digests of hmigt_layout.h's pure functions over many inputs.  Built twice,
 * into the Criterion test (-m64) and into selftest32 (-m32, freestanding):
 * the guest computes stamps and ops with 32-bit code, a checker in dom0 with
 * 64-bit code, and any arithmetic that differs between the two (a shift or
 * a multiply the compiler lowers differently, a width mistake) shows up as
 * different digests. */
#ifndef HMIG_TESTS_XEN_HMIGT_DIGEST_H
#define HMIG_TESTS_XEN_HMIGT_DIGEST_H

#include <stdint.h>

#include "hmigt_layout.h"

enum { DIGEST_MIX, DIGEST_STAMP, DIGEST_FILL, DIGEST_OPS, DIGEST_HOT_OPS, DIGEST_INITIAL,
       DIGEST_REPLAY, DIGEST_COUNT };

static const char *const digest_names[DIGEST_COUNT] = {
	"mix64", "stamp_word", "page_fill", "op", "op_hot", "initial_version", "replay",
};

#define DIGEST_REPLAY_PAGES 97 /* prime: every op draw lands somewhere new */

static inline uint64_t digest_fold(uint64_t acc, uint64_t v)
{
	return hmigt_mix64(acc ^ v) + 1;
}

/* page and versions are the caller's scratch (no stack-hungry arrays in a
 * freestanding program). */
static inline void hmigt_digests(uint64_t out[DIGEST_COUNT], uint32_t page[HMIGT_PAGE_U32],
				 uint32_t versions[DIGEST_REPLAY_PAGES])
{
	struct hmigt_workload wl = { .seed = 0x0123456789abcdefull, .data_gfn = HMIGT_DATA_GFN,
				     .n_data = 16128, .write_thresh = 192, .fill_thresh = 128 };
	struct hmigt_workload hot = wl;
	uint64_t acc, k;
	uint32_t i, v, g;

	hot.hot_pages = 100;
	hot.hot_thresh = 230;

	for (acc = 0, k = 0; k < (1u << 20); k++)
		acc = digest_fold(acc, hmigt_mix64(k * 0x5851f42d4c957f2dull ^ (k << 40)));
	out[DIGEST_MIX] = acc;

	for (acc = 0, g = 0x400; g < 0x400 + 64; g++)
		for (v = 1; v < 0xffffffffu && v < 64; v += 7)
			for (i = 0; i < HMIGT_PAGE_U64; i += 31)
				acc = digest_fold(acc, hmigt_stamp_word(wl.seed, g, v * 0x01010101u, i));
	out[DIGEST_STAMP] = acc;

	for (acc = 0, v = 0; v < 40; v++) {
		hmigt_page_fill(wl.seed ^ v, 0x400 + v * 977, v, page);
		for (i = 0; i < HMIGT_PAGE_U32; i++)
			acc = digest_fold(acc, page[i]);
	}
	out[DIGEST_FILL] = acc;

	for (acc = 0, k = 0; k < (1u << 20); k++) {
		struct hmigt_op op = hmigt_op(&wl, k * 3 + (k << 33));

		acc = digest_fold(acc, (uint64_t)op.write << 32 | op.pfn);
	}
	out[DIGEST_OPS] = acc;

	for (acc = 0, k = 0; k < (1u << 18); k++) {
		struct hmigt_op op = hmigt_op(&hot, k);

		acc = digest_fold(acc, (uint64_t)op.write << 32 | op.pfn);
	}
	out[DIGEST_HOT_OPS] = acc;

	for (acc = 0, i = 0; i < wl.n_data; i++)
		acc = digest_fold(acc, hmigt_initial_version(&wl, i));
	out[DIGEST_INITIAL] = acc;

	wl.n_data = DIGEST_REPLAY_PAGES;
	hmigt_replay(&wl, 200000, versions);
	for (acc = 0, i = 0; i < DIGEST_REPLAY_PAGES; i++)
		acc = digest_fold(acc, versions[i]);
	out[DIGEST_REPLAY] = acc;
}

#endif
