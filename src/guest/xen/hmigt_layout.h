/* hmigt: the contract between the Xen test guest and whoever checks it.
 *
 * hmigt (tests/xen/hmigt/) is a 32-bit PVH guest that runs with paging off,
 * so guest-physical addresses are the addresses it uses.  It makes no
 * hypercall after boot and takes no interrupt; it reports through port 0xe9
 * (Xen prints it as "(dN) ..." in `xl dmesg`).  This header is everything a
 * checker outside the guest needs: where the control page is, what the guest
 * writes there, and the pure functions that say what every data page must
 * hold.  The guest includes it too, so both sides compute with the same code.
 * It is freestanding C11 (only <stdint.h> and <stddef.h>) and its arithmetic
 * is the same built -m32 and -m64: 64-bit multiplies, adds and shifts only,
 * no division (the guest has no libgcc for __udivdi3).
 *
 * Guest-physical layout (gfn = address / 4096):
 *
 *   [1 MiB, 2 MiB)   the ELF image, its stack; Xen's start_info, cmdline and
 *                    memory map (the guest halts if they are not below 2 MiB)
 *   gfn 0x200        control page: struct hmigt_ctl
 *   gfn 0x201 ...    version table: one uint32_t per data page, the page's
 *                    current version (at most 511 pages of table)
 *   gfn 0x400 ...    data pages: data page p is gfn HMIGT_DATA_GFN + p, for
 *                    p < n_data, up to the end of the RAM entry of the memory
 *                    map that holds 4 MiB (or fewer: cmdline pages=N)
 *
 * Data page contents.  Version 0 is a page of zeros.  Version v >= 1 of the
 * page at gfn g is 512 little-endian 64-bit words hmigt_stamp_word(seed, g,
 * v, i): word 0 names the gfn, word 1 the version, the rest follow from
 * (seed, g, v), so two versions of a page differ in every word but word 0.
 *
 * Ops.  Op k (k = 0, 1, ...) is a pure function of the workload and k
 * (hmigt_op): it picks a data page and whether it writes it.  A read checks
 * the page against its version; a write checks it, then rewrites the whole
 * page at version + 1.  Initial versions (before op 0) are hmigt_initial_version.
 *
 * The replay rule (what a checker concludes from a paused guest): with
 * D = ctl->ops_done, replaying ops 0 .. D-1 over the initial versions gives
 * every page's version E[p]; the table must equal E and every data page must
 * equal its stamp, except for the one write that may be in flight -- see
 * hmigt_inflight_pfn() and struct hmigt_ctl's write protocol.
 */
#ifndef HMIG_GUEST_XEN_HMIGT_LAYOUT_H
#define HMIG_GUEST_XEN_HMIGT_LAYOUT_H

#include <stddef.h>
#include <stdint.h>

#define HMIGT_PAGE_SIZE 4096u
#define HMIGT_PAGE_U64 (HMIGT_PAGE_SIZE / 8)
#define HMIGT_PAGE_U32 (HMIGT_PAGE_SIZE / 4)

#define HMIGT_CTL_GFN 0x200u   /* 2 MiB: above any image the builder loads at 1 MiB */
#define HMIGT_TABLE_GFN 0x201u
#define HMIGT_DATA_GFN 0x400u  /* 4 MiB */
#define HMIGT_TABLE_MAX_PAGES (HMIGT_DATA_GFN - HMIGT_TABLE_GFN)
/* 511 table pages of 1024 versions: guests up to about 2 GiB. */
#define HMIGT_MAX_DATA_PAGES (HMIGT_TABLE_MAX_PAGES * (HMIGT_PAGE_SIZE / 4))

#define HMIGT_CTL_MAGIC 0x4c54435447494d48ull   /* "HMIGTCTL" as bytes */
#define HMIGT_STAMP_MAGIC 0x504d415453544d48ull /* "HMTSTAMP" as bytes */
#define HMIGT_ABI 1u

/* ctl->state */
enum hmigt_state {
	HMIGT_STATE_BOOT = 1, /* entered, parsing start_info and cmdline */
	HMIGT_STATE_FILL = 2, /* writing the initial versions */
	HMIGT_STATE_RUN = 3,  /* running ops; every field below is valid */
	HMIGT_STATE_HALT = 4, /* stopped on a setup error: ctl->halt_reason */
};

/* ctl->halt_reason */
enum hmigt_halt {
	HMIGT_HALT_NONE = 0,
	HMIGT_HALT_START_INFO = 1, /* bad start_info magic or version < 1 */
	HMIGT_HALT_LAYOUT = 2,     /* start_info/cmdline/memmap not below 2 MiB */
	HMIGT_HALT_MEMORY = 3,     /* no RAM at 4 MiB, or too little */
	HMIGT_HALT_CMDLINE = 4,    /* an unknown or malformed cmdline word */
};

/* The workload: fixed at boot, enough to replay every op.  Thresholds are
 * out of 256 so the guest needs no division: a byte of the op's random word
 * is compared with them. */
struct hmigt_workload {
	uint64_t seed;
	uint32_t data_gfn;     /* HMIGT_DATA_GFN */
	uint32_t n_data;       /* data pages */
	uint32_t write_thresh; /* op k writes if (r & 0xff) < write_thresh; 256 = all */
	uint32_t hot_pages;    /* 0 = uniform; else the first hot_pages pages are hot */
	uint32_t hot_thresh;   /* op k picks a hot page if ((r >> 8) & 0xff) < hot_thresh */
	uint32_t fill_thresh;  /* page p starts at version 1 if its fill byte < fill_thresh */
};

/* The control page.  Only the guest writes it; fixed offsets on -m32 and
 * -m64 (every uint64_t is 8-aligned by explicit layout, since i386 aligns
 * uint64_t struct members to 4).
 *
 * Write protocol of op k on data page p (x86 stores become visible in
 * program order, and a pause stops the vCPU between two instructions):
 *
 *   check p against table[p]                 (reads only)
 *   inflight_old = table[p]
 *   inflight_pfn = p + 1                     <- the write is now "in flight"
 *   page p = stamp(table[p] + 1), 32-bit words in ascending order
 *   table[p] = table[p] + 1
 *   ops_done = k + 1                         (one 8-byte store: cmpxchg8b)
 *   inflight_pfn = 0
 *
 * A read op does only the check and the ops_done store.  So a paused guest
 * is in one of three states, told apart by hmigt_inflight_pfn(). */
struct hmigt_ctl {
	uint64_t magic;    /* HMIGT_CTL_MAGIC once the guest has started */
	uint32_t abi;      /* HMIGT_ABI */
	uint32_t state;    /* enum hmigt_state */
	uint32_t boots;    /* +1 at every entry: a restart shows as 2 */
	uint32_t table_gfn;
	struct hmigt_workload wl;

	uint64_t ops_done;     /* ops completed */
	uint32_t inflight_pfn; /* 1 + data page of the write in flight, 0 = none */
	uint32_t inflight_old; /* that page's version before the write */

	uint64_t writes, reads;
	uint64_t violations;   /* checks that failed; 0 in a correct run */
	uint64_t bad_op;       /* first violation: op index ... */
	uint32_t bad_gfn;      /* ... gfn ... */
	uint32_t bad_word;     /* ... 32-bit word index in the page ... */
	uint32_t bad_want;     /* ... and the word expected / found */
	uint32_t bad_got;

	uint64_t rate;         /* ops/s asked for; 0 = as fast as it goes */
	uint32_t tsc_khz;      /* from Xen's CPUID leaf; 0 = unknown (no pacing) */
	uint32_t report_ms;    /* a progress line every report_ms */
	uint64_t tsc_boot;
	uint64_t tsc_last;
	uint64_t tsc_backwards; /* RDTSC steps that went backwards */
	uint64_t gap_max;      /* largest TSC step between two loop turns, cycles */
	uint64_t gap_max_op;   /* ops_done when it happened */
	uint64_t stalls;       /* steps of at least stall_ms */
	uint32_t stall_ms;
	uint32_t halt_reason;  /* enum hmigt_halt */
	uint64_t reports;      /* progress lines printed */
	char cmdline[256];     /* the command line as given (truncated) */
};

#define HMIGT_ASSERT_OFFSET(f, off) \
	_Static_assert(offsetof(struct hmigt_ctl, f) == (off), "hmigt_ctl." #f " moved")
HMIGT_ASSERT_OFFSET(abi, 8);
HMIGT_ASSERT_OFFSET(wl, 24);
HMIGT_ASSERT_OFFSET(ops_done, 56);
HMIGT_ASSERT_OFFSET(inflight_pfn, 64);
HMIGT_ASSERT_OFFSET(violations, 88);
HMIGT_ASSERT_OFFSET(rate, 120);
HMIGT_ASSERT_OFFSET(tsc_boot, 136);
HMIGT_ASSERT_OFFSET(gap_max, 160);
HMIGT_ASSERT_OFFSET(reports, 192);
HMIGT_ASSERT_OFFSET(cmdline, 200);
_Static_assert(sizeof(struct hmigt_workload) == 32, "hmigt_workload size");
_Static_assert(sizeof(struct hmigt_ctl) == 456, "hmigt_ctl size");
_Static_assert(sizeof(struct hmigt_ctl) <= HMIGT_PAGE_SIZE, "hmigt_ctl fits a page");

/* splitmix64's finaliser: a bijection with full avalanche. */
static inline uint64_t hmigt_mix64(uint64_t x)
{
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

#define HMIGT_GOLDEN 0x9e3779b97f4a7c15ull
/* Salt of the initial-fill draw, so it is independent of the op draws. */
#define HMIGT_FILL_SALT 0x66696c6c66696c6cull

/* The first word of version v's stamp after words 0 and 1.  (g, v) sit in
 * disjoint halves before the bijective mix, so no two (gfn, version) pairs of
 * one seed share it. */
static inline uint64_t hmigt_stamp_base(uint64_t seed, uint32_t gfn, uint32_t version)
{
	return hmigt_mix64(seed ^ ((uint64_t)gfn << 32 | version));
}

/* Word i (0..511) of version `version` >= 1 of the page at gfn. */
static inline uint64_t hmigt_stamp_word(uint64_t seed, uint32_t gfn, uint32_t version, unsigned i)
{
	if (i == 0)
		return HMIGT_STAMP_MAGIC ^ gfn;
	if (i == 1)
		return version;
	return hmigt_stamp_base(seed, gfn, version) + (uint64_t)i * HMIGT_GOLDEN;
}

/* The same stamp as 32-bit words, the unit the guest stores (an i386 64-bit
 * store is two 32-bit stores, so a pause can fall between the halves). */
static inline uint32_t hmigt_stamp_u32(uint64_t seed, uint32_t gfn, uint32_t version, unsigned j)
{
	uint64_t w;

	if (version == 0)
		return 0;
	w = hmigt_stamp_word(seed, gfn, version, j >> 1);
	return (j & 1) ? (uint32_t)(w >> 32) : (uint32_t)w;
}

/* Version of data page p before op 0. */
static inline uint32_t hmigt_initial_version(const struct hmigt_workload *wl, uint32_t p)
{
	uint64_t r = hmigt_mix64(wl->seed ^ HMIGT_FILL_SALT ^ p);

	return (r & 0xff) < wl->fill_thresh ? 1 : 0;
}

struct hmigt_op {
	uint32_t pfn;   /* data page index, < n_data */
	uint32_t write; /* 1 = write, 0 = read */
};

/* Op k.  The draw is counter-based splitmix64, so any op can be computed
 * without the ones before it.  Range reduction is multiply-shift: the high
 * 32 bits of r times n, no modulo. */
static inline struct hmigt_op hmigt_op(const struct hmigt_workload *wl, uint64_t k)
{
	uint64_t r = hmigt_mix64(wl->seed + (k + 1) * HMIGT_GOLDEN);
	uint32_t hi = (uint32_t)(r >> 32);
	struct hmigt_op op;

	op.write = (r & 0xff) < wl->write_thresh;
	if (wl->hot_pages && ((r >> 8) & 0xff) < wl->hot_thresh)
		op.pfn = (uint32_t)(((uint64_t)hi * wl->hot_pages) >> 32);
	else
		op.pfn = (uint32_t)(((uint64_t)hi * wl->n_data) >> 32);
	return op;
}

/* Writes version `version` of gfn's stamp into page: 32-bit stores in
 * ascending order through a volatile pointer, so an interrupted fill is a
 * prefix (the write protocol above depends on it).  Incremental: one
 * hmigt_mix64 per page, then an add per word. */
static inline void hmigt_page_fill(uint64_t seed, uint32_t gfn, uint32_t version,
				   volatile uint32_t *page)
{
	uint64_t w = HMIGT_STAMP_MAGIC ^ gfn, step = HMIGT_GOLDEN;
	unsigned i;

	if (version == 0) {
		for (i = 0; i < HMIGT_PAGE_U32; i++)
			page[i] = 0;
		return;
	}
	for (i = 0; i < HMIGT_PAGE_U64; i++) {
		if (i == 1)
			w = version;
		else if (i == 2)
			w = hmigt_stamp_base(seed, gfn, version) + 2 * step;
		else if (i > 2)
			w += step;
		page[2 * i] = (uint32_t)w;
		page[2 * i + 1] = (uint32_t)(w >> 32);
	}
}

/* Index of the first 32-bit word of `page` that differs from version
 * `version` of gfn's stamp, or -1 if the page is exactly that version. */
static inline long hmigt_page_diff(uint64_t seed, uint32_t gfn, uint32_t version,
				   const volatile uint32_t *page)
{
	uint64_t w = HMIGT_STAMP_MAGIC ^ gfn, step = HMIGT_GOLDEN;
	unsigned i;

	if (version == 0) {
		for (i = 0; i < HMIGT_PAGE_U32; i++)
			if (page[i])
				return (long)i;
		return -1;
	}
	for (i = 0; i < HMIGT_PAGE_U64; i++) {
		if (i == 1)
			w = version;
		else if (i == 2)
			w = hmigt_stamp_base(seed, gfn, version) + 2 * step;
		else if (i > 2)
			w += step;
		if (page[2 * i] != (uint32_t)w)
			return (long)(2 * i);
		if (page[2 * i + 1] != (uint32_t)(w >> 32))
			return (long)(2 * i + 1);
	}
	return -1;
}

/* A write from version `old` to old + 1 interrupted after n of its 32-bit
 * stores leaves words [0, n) new and [n, 1024) old.  Returns such an n
 * (0..1024; the largest, as the two versions share word 0), or -1 if the
 * page is no such mix.  Checker-side: one mix per word, no hurry. */
static inline long hmigt_page_torn(uint64_t seed, uint32_t gfn, uint32_t old,
				   const volatile uint32_t *page)
{
	unsigned n = 0, j;

	while (n < HMIGT_PAGE_U32 && page[n] == hmigt_stamp_u32(seed, gfn, old + 1, n))
		n++;
	for (j = n; j < HMIGT_PAGE_U32; j++)
		if (page[j] != hmigt_stamp_u32(seed, gfn, old, j))
			return -1;
	return (long)n;
}

/* Replays ops [0, ops) into versions[0 .. n_data), which the caller sizes.
 * O(ops + n_data), one hmigt_mix64 per op. */
static inline void hmigt_replay(const struct hmigt_workload *wl, uint64_t ops, uint32_t *versions)
{
	uint64_t k;
	uint32_t p;

	for (p = 0; p < wl->n_data; p++)
		versions[p] = hmigt_initial_version(wl, p);
	for (k = 0; k < ops; k++) {
		struct hmigt_op op = hmigt_op(wl, k);

		if (op.write)
			versions[op.pfn]++;
	}
}

/* Which data page a checker must treat as possibly torn, given a paused
 * guest's ops_done D, inflight_pfn I, inflight_old O, and the replayed
 * versions E of ops [0, D).  Returns:
 *
 *   -1   no write in flight (I == 0): every page p must be stamp(E[p]) and
 *        table[p] == E[p];
 *   p    the write of op D to page p was interrupted (I == p + 1, op D is a
 *        write of p, E[p] == O): table[p] is O or O + 1 and the page is
 *        hmigt_page_torn(.., O, ..) >= 0, all new (1024) if table[p] == O + 1;
 *        every other page as above;
 *   -2   the write of op D - 1 to I - 1 completed but inflight_pfn was not yet
 *        cleared (E[I - 1] == O + 1): every page as if I were 0;
 *   -3   inconsistent: the control page does not fit the replay.
 */
static inline long hmigt_inflight_pfn(const struct hmigt_workload *wl, uint64_t ops_done,
				      uint32_t inflight_pfn, uint32_t inflight_old,
				      const uint32_t *versions)
{
	uint32_t p;
	struct hmigt_op op;

	if (inflight_pfn == 0)
		return -1;
	p = inflight_pfn - 1;
	if (p >= wl->n_data)
		return -3;
	op = hmigt_op(wl, ops_done);
	if (op.write && op.pfn == p && versions[p] == inflight_old)
		return (long)p;
	if (ops_done > 0) {
		op = hmigt_op(wl, ops_done - 1);
		if (op.write && op.pfn == p && versions[p] == inflight_old + 1)
			return -2;
	}
	return -3;
}

#endif
