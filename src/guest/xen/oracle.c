/* The Xen backend's oracle without Xen: the hashes, and hmigt's replay over a
 * mapper (oracle.h says what each level proves). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "guest/xen/oracle.h"

uint64_t xen_hash64(const void *p, size_t len, uint64_t seed)
{
	const uint8_t *b = p;
	uint64_t h = hmigt_mix64(seed ^ len);

	/* Eight bytes at a time through the bijective mix, the tail padded
	 * with zeros: len is folded in above, so padding cannot collide. */
	for (size_t i = 0; i < len; i += 8) {
		uint64_t w = 0;
		size_t n = len - i < 8 ? len - i : 8;

		memcpy(&w, b + i, n);
		h = hmigt_mix64(h ^ w) + HMIGT_GOLDEN;
	}
	return h;
}

/* Two lanes of multiply-xorshift over the frame's 512 words: every step is a
 * bijection of the lane, so a change in any word changes that lane's final
 * state, and the finaliser spreads it; 2^-32 is then the chance that a
 * changed frame keeps its digest.  Two lanes let the multiplies overlap:
 * this runs over all of guest memory inside the downtime, twice. */
uint32_t xen_frame_digest(const void *page)
{
	const uint64_t *w = page;
	uint64_t a = 0x243f6a8885a308d3ull, b = 0x13198a2e03707344ull;

	for (unsigned i = 0; i < HMIGT_PAGE_U64; i += 2) {
		a = (a ^ w[i]) * 0xbf58476d1ce4e5b9ull;
		a ^= a >> 29;
		b = (b ^ w[i + 1]) * 0x94d049bb133111ebull;
		b ^= b >> 31;
	}
	return (uint32_t)hmigt_mix64(a ^ (b << 17 | b >> 47));
}

/* ------------------------------------------------------- hmigt's replay */

struct replay {
	const struct hmigt_mem *mem;
	struct hmigt_verdict *v;
	uint32_t *expect, *table;
	char *err;
	int bad; /* first mismatch found: -EBADMSG, err says which */
};

static int mismatch(struct replay *r, uint32_t p, const char *what, long word)
{
	if (!r->bad)
		r->bad = err_setf(r->err, -EBADMSG,
				  "integrity (hmigt replay): gfn %#x (data page %u) %s (word %ld, version table %u, replay %u)",
				  HMIGT_DATA_GFN + p, p, what, word, r->table[p], r->expect[p]);
	return r->bad;
}

static void check_page(struct replay *r, uint32_t p, const uint32_t *page)
{
	const struct hmigt_ctl *c = &r->v->ctl;
	uint64_t seed = c->wl.seed;
	uint32_t gfn = HMIGT_DATA_GFN + p, old = c->inflight_old;
	long w;

	if ((long)p != r->v->inflight) {
		if (r->table[p] != r->expect[p])
			mismatch(r, p, "has a version table entry that differs from the replay", -1);
		else if ((w = hmigt_page_diff(seed, gfn, r->expect[p], page)) >= 0)
			mismatch(r, p, "differs from its stamp", w);
		return;
	}
	/* The write of op ops_done, interrupted by the pause: committed or torn. */
	if (r->table[p] == old + 1) {
		if ((w = hmigt_page_diff(seed, gfn, old + 1, page)) >= 0)
			mismatch(r, p, "is committed in the table but not fully written", w);
	} else if (r->table[p] != old) {
		mismatch(r, p, "is in flight with a table entry neither old nor new", -1);
	} else if (hmigt_page_torn(seed, gfn, old, page) < 0) {
		mismatch(r, p, "is in flight but no prefix of the new version over the old", -1);
	}
}

static int read_ctl(struct replay *r, uint64_t min_ops)
{
	struct hmigt_ctl *c = &r->v->ctl;
	int rc = 0;
	const void *p = r->mem->map(r->mem->ctx, HMIGT_CTL_GFN, 1, &rc, r->err);

	if (!p)
		return rc;
	memcpy(c, p, sizeof(*c));
	r->mem->unmap(r->mem->ctx, p, 1);
	if (c->magic != HMIGT_CTL_MAGIC)
		return err_setf(r->err, -ENODATA, "no hmigt control page at gfn %#x",
				HMIGT_CTL_GFN);
	if (c->abi != HMIGT_ABI || c->table_gfn != HMIGT_TABLE_GFN ||
	    c->wl.data_gfn != HMIGT_DATA_GFN || !c->wl.n_data ||
	    c->wl.n_data > HMIGT_MAX_DATA_PAGES)
		return err_setf(r->err, -EBADMSG,
				"integrity (hmigt replay): the control page is damaged (abi %u, table gfn %#x, data gfn %#x, %u data pages)",
				c->abi, c->table_gfn, c->wl.data_gfn, c->wl.n_data);
	if (c->state != HMIGT_STATE_RUN)
		return err_setf(r->err, -EBADMSG,
				"integrity (hmigt replay): hmigt is in state %u (halt reason %u), not running",
				c->state, c->halt_reason);
	if (c->boots != 1)
		return err_setf(r->err, -EBADMSG,
				"integrity (hmigt replay): hmigt entered its start %u times: the guest restarted instead of resuming",
				c->boots);
	if (c->violations)
		return err_setf(r->err, -EBADMSG,
				"integrity (hmigt replay): the guest itself found %llu stale or wrong pages, the first at op %llu, gfn %#x word %u",
				(unsigned long long)c->violations, (unsigned long long)c->bad_op,
				c->bad_gfn, c->bad_word);
	if (c->ops_done < min_ops)
		return err_setf(r->err, -EBADMSG,
				"integrity (hmigt replay): %llu ops done, but the guest had done %llu when it was paused on the source: it lost work",
				(unsigned long long)c->ops_done, (unsigned long long)min_ops);
	return 0;
}

int hmigt_replay_check(const struct hmigt_mem *mem, uint64_t min_ops, struct hmigt_verdict *v,
		       char *err)
{
	struct replay r = { .mem = mem, .v = v, .err = err };
	uint32_t n, table_pages;
	int rc;

	memset(v, 0, sizeof(*v));
	if ((rc = read_ctl(&r, min_ops)))
		return rc;
	n = v->ctl.wl.n_data;
	table_pages = (n + HMIGT_PAGE_U32 - 1) / HMIGT_PAGE_U32;
	r.expect = malloc((size_t)n * sizeof(*r.expect));
	if (!r.expect)
		return err_setf(err, -ENOMEM, "out of memory for the replay of %u pages", n);
	r.table = (uint32_t *)mem->map(mem->ctx, HMIGT_TABLE_GFN, table_pages, &rc, err);
	if (!r.table)
		goto out;
	hmigt_replay(&v->ctl.wl, v->ctl.ops_done, r.expect);
	v->inflight = hmigt_inflight_pfn(&v->ctl.wl, v->ctl.ops_done, v->ctl.inflight_pfn,
					 v->ctl.inflight_old, r.expect);
	if (v->inflight == -3) {
		rc = err_setf(err, -EBADMSG,
			      "integrity (hmigt replay): the control page does not fit the replay (ops_done %llu, write in flight to data page %u from version %u)",
			      (unsigned long long)v->ctl.ops_done, v->ctl.inflight_pfn - 1,
			      v->ctl.inflight_old);
		goto out_table;
	}
	for (uint32_t p = 0; p < n && !r.bad; p += HMIGT_MAP_MAX) {
		uint32_t k = n - p < HMIGT_MAP_MAX ? n - p : HMIGT_MAP_MAX;
		const uint8_t *pages = mem->map(mem->ctx, HMIGT_DATA_GFN + p, k, &rc, err);

		if (!pages)
			goto out_table;
		for (uint32_t i = 0; i < k && !r.bad; i++, v->pages++)
			check_page(&r, p + i, (const uint32_t *)(pages + (size_t)i * HMIGT_PAGE_SIZE));
		mem->unmap(mem->ctx, pages, k);
	}
	rc = r.bad;
out_table:
	mem->unmap(mem->ctx, r.table, table_pages);
out:
	free(r.expect);
	return rc;
}
