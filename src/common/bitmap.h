/* Plain and atomic bitmaps over pfns (one bit a page). */
#ifndef HMIG_COMMON_BITMAP_H
#define HMIG_COMMON_BITMAP_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#define BITMAP_WORDS(n) (((n) + 63) / 64)

/* A zeroed bitmap, its pages touched now.  This machine's first write to a
 * page costs some 2 us (its memory is backed lazily), and a bitmap first
 * written inside the downtime (the push set, the stale set) cost 0.1-0.3 ms
 * at 8 GiB; calloc's fresh pages are only mapped.  The writes are volatile
 * so that no compiler folds them into the calloc. */
static inline uint64_t *bitmap_new(uint64_t nbits)
{
	size_t words = BITMAP_WORDS(nbits);
	uint64_t *b = calloc(words, sizeof(uint64_t));

	for (size_t w = 0; b && w < words; w += 512)
		((volatile uint64_t *)b)[w] = 0;
	return b;
}

/* Touches every page of b for writing and changes no bit (an atomic or of
 * 0: a setter on another thread loses nothing).  On this machine a page
 * left alone while GiB of other memory were touched costs some 2 us at its
 * next touch (its mapping was dropped below us: a 768 KiB buffer read in
 * 25 us warm took 415 us after 14 GiB elsewhere).  A migration touches
 * GiB between passes; the bitmaps the downtime walks are warmed just
 * before it. */
static inline void bitmap_warm(uint64_t *b, uint64_t nbits)
{
	for (size_t w = 0; w < BITMAP_WORDS(nbits); w += 512)
		__atomic_fetch_or(&b[w], 0, __ATOMIC_RELAXED);
}

static inline bool bitmap_test(const uint64_t *b, uint64_t i)
{
	return (b[i / 64] >> (i % 64)) & 1;
}

static inline void bitmap_set(uint64_t *b, uint64_t i)
{
	b[i / 64] |= 1ull << (i % 64);
}

static inline void bitmap_clear(uint64_t *b, uint64_t i)
{
	b[i / 64] &= ~(1ull << (i % 64));
}

/* Sets bits [start, end) a word at a time: a range may cover the whole guest
 * (a collect under an unthrottled writer, a stale set of everything), and
 * one bit at a time would be a million stores per 4 GiB. */
static inline void bitmap_set_range(uint64_t *b, uint64_t start, uint64_t end)
{
	while (start < end && start % 64)
		bitmap_set(b, start++);
	for (; start + 64 <= end; start += 64)
		b[start / 64] = ~0ull;
	while (start < end)
		bitmap_set(b, start++);
}

static inline uint64_t bitmap_count(const uint64_t *b, uint64_t nbits)
{
	uint64_t n = 0;

	for (uint64_t w = 0; w < BITMAP_WORDS(nbits); w++)
		n += (uint64_t)__builtin_popcountll(b[w]);
	return n;
}

/* Next set bit at or after i, or nbits when there is none. */
static inline uint64_t bitmap_next(const uint64_t *b, uint64_t nbits, uint64_t i)
{
	while (i < nbits) {
		uint64_t w = b[i / 64] >> (i % 64);

		if (w)
			return i + (uint64_t)__builtin_ctzll(w) < nbits ?
			       i + (uint64_t)__builtin_ctzll(w) : nbits;
		i = (i / 64 + 1) * 64;
	}
	return nbits;
}

/* Atomically sets bit i; returns whether it was already set.  For sets that
 * several threads update (present/requested pages). */
static inline bool bitmap_test_and_set_atomic(_Atomic uint64_t *b, uint64_t i)
{
	uint64_t m = 1ull << (i % 64);

	return atomic_fetch_or_explicit(&b[i / 64], m, memory_order_acq_rel) & m;
}

static inline bool bitmap_test_atomic(_Atomic uint64_t *b, uint64_t i)
{
	return (atomic_load_explicit(&b[i / 64], memory_order_acquire) >> (i % 64)) & 1;
}

#endif
