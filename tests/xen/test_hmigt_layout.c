/* Host checks of src/guest/xen/hmigt_layout.h, the contract between the hmigt
 * test guest and its checker.  No Xen needed: a guest's memory is modelled in
 * host memory and driven through the same write protocol as tests/xen/hmigt. */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "hmigt_digest.h"
#include "hmigt_layout.h"

#define NPAGES 64

/* A guest in host memory: the control page's op fields, the table, the pages. */
struct model {
	struct hmigt_workload wl;
	uint64_t ops_done;
	uint32_t inflight_pfn, inflight_old;
	uint32_t table[NPAGES];
	uint32_t pages[NPAGES][HMIGT_PAGE_U32];
	uint64_t violations;
};

static struct model *model_new(uint64_t seed, uint32_t write_thresh, uint32_t fill_thresh)
{
	struct model *m = calloc(1, sizeof(*m));
	uint32_t p;

	cr_assert(m != NULL);
	m->wl = (struct hmigt_workload){ .seed = seed, .data_gfn = HMIGT_DATA_GFN, .n_data = NPAGES,
					 .write_thresh = write_thresh, .fill_thresh = fill_thresh };
	for (p = 0; p < NPAGES; p++) {
		m->table[p] = hmigt_initial_version(&m->wl, p);
		hmigt_page_fill(seed, HMIGT_DATA_GFN + p, m->table[p], m->pages[p]);
	}
	return m;
}

/* One op as the guest's run_op does it. */
static void model_op(struct model *m)
{
	uint64_t k = m->ops_done;
	struct hmigt_op op = hmigt_op(&m->wl, k);
	uint32_t v = m->table[op.pfn];

	if (hmigt_page_diff(m->wl.seed, HMIGT_DATA_GFN + op.pfn, v, m->pages[op.pfn]) >= 0)
		m->violations++;
	if (op.write) {
		hmigt_page_fill(m->wl.seed, HMIGT_DATA_GFN + op.pfn, v + 1, m->pages[op.pfn]);
		m->table[op.pfn] = v + 1;
	}
	m->ops_done = k + 1;
}

/* The first op index >= from that writes. */
static uint64_t next_write(const struct hmigt_workload *wl, uint64_t from)
{
	while (!hmigt_op(wl, from).write)
		from++;
	return from;
}

Test(hmigt_layout, fill_is_the_stamp_definition)
{
	static uint32_t page[HMIGT_PAGE_U32];
	const uint32_t versions[] = { 0, 1, 2, 77, 0xffffffffu };

	for (unsigned g = 0x400; g < 0x410; g++)
		for (unsigned i = 0; i < sizeof(versions) / sizeof(versions[0]); i++) {
			hmigt_page_fill(42, g, versions[i], page);
			for (unsigned j = 0; j < HMIGT_PAGE_U32; j++)
				cr_assert(eq(u32, page[j], hmigt_stamp_u32(42, g, versions[i], j)),
					  "gfn %#x version %u word %u", g, versions[i], j);
			cr_assert(eq(i64, hmigt_page_diff(42, g, versions[i], page), -1));
		}
}

Test(hmigt_layout, diff_names_the_first_wrong_word)
{
	static uint32_t page[HMIGT_PAGE_U32];

	hmigt_page_fill(7, 0x500, 3, page);
	page[700] ^= 0x100;
	cr_assert(eq(i64, hmigt_page_diff(7, 0x500, 3, page), 700));
	page[5] ^= 1;
	cr_assert(eq(i64, hmigt_page_diff(7, 0x500, 3, page), 5));
	/* The wrong gfn fails in word 0, the wrong version in word 2. */
	hmigt_page_fill(7, 0x500, 3, page);
	cr_assert(eq(i64, hmigt_page_diff(7, 0x501, 3, page), 0));
	cr_assert(eq(i64, hmigt_page_diff(7, 0x500, 4, page), 2));
	cr_assert(eq(i64, hmigt_page_diff(7, 0x500, 0, page), 0));
}

Test(hmigt_layout, versions_share_only_the_gfn_word)
{
	for (uint32_t v = 1; v < 200; v++) {
		unsigned same = 0;

		for (unsigned j = 0; j < HMIGT_PAGE_U32; j++)
			same += hmigt_stamp_u32(9, 0x400, v, j) == hmigt_stamp_u32(9, 0x400, v + 1, j);
		/* words 0-1 (magic ^ gfn) and 3 (the version's high half) */
		cr_assert(le(u32, same, 3), "version %u and %u share %u words", v, v + 1, same);
	}
}

Test(hmigt_layout, ops_stay_in_range_with_the_asked_mix)
{
	struct hmigt_workload wl = { .seed = 5, .n_data = 1000, .write_thresh = 192,
				     .hot_pages = 10, .hot_thresh = 230 };
	unsigned writes = 0, hot = 0, n = 200000;

	for (uint64_t k = 0; k < n; k++) {
		struct hmigt_op op = hmigt_op(&wl, k);

		cr_assert(lt(u32, op.pfn, wl.n_data));
		writes += op.write;
		hot += op.pfn < wl.hot_pages;
	}
	/* 192/256 = 75% writes; 230/256 + the uniform draws' share of the hot
	 * pages = about 90%. */
	cr_assert(gt(dbl, writes / (double)n, 0.74));
	cr_assert(lt(dbl, writes / (double)n, 0.76));
	cr_assert(gt(dbl, hot / (double)n, 0.89));
	cr_assert(lt(dbl, hot / (double)n, 0.92));
}

Test(hmigt_layout, fill_threshold_sets_initial_versions)
{
	struct hmigt_workload wl = { .seed = 11, .n_data = 4096, .fill_thresh = 64 };
	unsigned ones = 0;

	for (uint32_t p = 0; p < wl.n_data; p++)
		ones += hmigt_initial_version(&wl, p);
	cr_assert(gt(u32, ones, 4096 / 4 - 150));
	cr_assert(lt(u32, ones, 4096 / 4 + 150));
	wl.fill_thresh = 256;
	cr_assert(eq(u32, hmigt_initial_version(&wl, 17), 1));
	wl.fill_thresh = 0;
	cr_assert(eq(u32, hmigt_initial_version(&wl, 17), 0));
}

Test(hmigt_layout, replay_predicts_a_guest, .timeout = 60)
{
	struct model *m = model_new(0xfeed, 192, 128);
	uint32_t expect[NPAGES];

	for (int i = 0; i < 20000; i++)
		model_op(m);
	cr_assert(eq(u64, m->violations, 0));
	hmigt_replay(&m->wl, m->ops_done, expect);
	for (uint32_t p = 0; p < NPAGES; p++) {
		cr_assert(eq(u32, m->table[p], expect[p]), "page %u", p);
		cr_assert(eq(i64, hmigt_page_diff(m->wl.seed, HMIGT_DATA_GFN + p, expect[p], m->pages[p]), -1));
	}
	free(m);
}

Test(hmigt_layout, a_stale_page_is_a_violation)
{
	struct model *m = model_new(3, 256, 256);
	uint32_t p;
	uint64_t k;

	for (k = 0; k < 500; k++)
		model_op(m);
	/* What a migration that lost the last write of a page would leave. */
	k = next_write(&m->wl, m->ops_done);
	p = hmigt_op(&m->wl, k).pfn;
	hmigt_page_fill(m->wl.seed, HMIGT_DATA_GFN + p, m->table[p] - 1, m->pages[p]);
	while (m->ops_done <= k)
		model_op(m);
	cr_assert(eq(u64, m->violations, 1));
	free(m);
}

/* A pause inside op D's write, after n of its 32-bit stores. */
Test(hmigt_layout, inflight_write_is_recognised_torn)
{
	const unsigned cuts[] = { 0, 1, 2, 3, 4, 511, 1023, 1024 };

	for (unsigned c = 0; c < sizeof(cuts) / sizeof(cuts[0]); c++) {
		struct model *m = model_new(77, 160, 200);
		uint32_t expect[NPAGES], p, old;
		uint64_t d;

		for (int i = 0; i < 300; i++)
			model_op(m);
		d = next_write(&m->wl, m->ops_done);
		while (m->ops_done < d)
			model_op(m);
		p = hmigt_op(&m->wl, d).pfn;
		old = m->table[p];
		m->inflight_old = old;
		m->inflight_pfn = p + 1;
		for (unsigned j = 0; j < cuts[c]; j++)
			m->pages[p][j] = hmigt_stamp_u32(m->wl.seed, HMIGT_DATA_GFN + p, old + 1, j);

		hmigt_replay(&m->wl, m->ops_done, expect);
		cr_assert(eq(i64, hmigt_inflight_pfn(&m->wl, m->ops_done, m->inflight_pfn,
						     m->inflight_old, expect), p));
		long n = hmigt_page_torn(m->wl.seed, HMIGT_DATA_GFN + p, old, m->pages[p]);
		cr_assert(ge(i64, n, (long)cuts[c]), "cut %u", cuts[c]);
		/* A wrong word in the old part breaks the rule. */
		if (cuts[c] < 1000) {
			m->pages[p][1010] ^= 1;
			cr_assert(eq(i64, hmigt_page_torn(m->wl.seed, HMIGT_DATA_GFN + p, old, m->pages[p]), -1));
		}
		/* The wrong old version does not fit op D. */
		cr_assert(eq(i64, hmigt_inflight_pfn(&m->wl, m->ops_done, m->inflight_pfn, old + 5, expect), -3));
		free(m);
	}
}

/* A pause after op D-1's ops_done store, before inflight_pfn is cleared. */
Test(hmigt_layout, completed_write_not_yet_cleared)
{
	struct model *m = model_new(99, 192, 256);
	uint32_t expect[NPAGES + 1], p; /* + 1: gcc cannot see the range check */
	uint64_t d;

	d = next_write(&m->wl, 40);
	while (m->ops_done < d)
		model_op(m);
	p = hmigt_op(&m->wl, d).pfn;
	m->inflight_old = m->table[p];
	model_op(m);
	m->inflight_pfn = p + 1;
	hmigt_replay(&m->wl, m->ops_done, expect);
	/* Unless op D+1 happens to write p again, which makes it case "p". */
	if (!(hmigt_op(&m->wl, d + 1).write && hmigt_op(&m->wl, d + 1).pfn == p))
		cr_assert(eq(i64, hmigt_inflight_pfn(&m->wl, m->ops_done, m->inflight_pfn,
						     m->inflight_old, expect), -2));
	cr_assert(eq(i64, hmigt_inflight_pfn(&m->wl, m->ops_done, 0, 0, expect), -1));
	cr_assert(eq(i64, hmigt_inflight_pfn(&m->wl, m->ops_done, NPAGES + 1, 0, expect), -3));
	free(m);
}

/* -m32 (the guest) and -m64 (a checker in dom0) compute the same. */
Test(hmigt_layout, same_results_built_32_and_64_bit, .timeout = 60)
{
	static uint32_t page[HMIGT_PAGE_U32], versions[DIGEST_REPLAY_PAGES];
	uint64_t want[DIGEST_COUNT];
	char line[128], name[64];
	unsigned long long got;
	int seen = 0, status;
	FILE *f;

	if (!HMIGT_SELFTEST32[0])
		cr_skip_test("selftest32 not built: the compiler cannot build -m32 -ffreestanding");
	hmigt_digests(want, page, versions);
	f = popen(HMIGT_SELFTEST32 " 2>&1", "r");
	cr_assert(f != NULL, "popen: %s", strerror(errno));
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "%63s %llx", name, &got) != 2)
			continue;
		for (int i = 0; i < DIGEST_COUNT; i++)
			if (!strcmp(name, digest_names[i])) {
				cr_expect(eq(u64, (uint64_t)got, want[i]), "%s differs -m32 vs -m64", name);
				seen++;
			}
	}
	status = pclose(f);
	/* 126/127: the kernel cannot run i386 binaries (ia32_emulation=0). */
	if (seen == 0 && WIFEXITED(status) && WEXITSTATUS(status) >= 126)
		cr_skip_test("this kernel does not run 32-bit programs");
	cr_assert(eq(int, seen, DIGEST_COUNT), "selftest32 printed %d of %d digests", seen, DIGEST_COUNT);
}
