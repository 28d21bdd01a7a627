/* Host checks of the Xen backend's parts that need no Xen
 * (src/guest/xen/oracle.c, state.c): the level-1 frame digest, hmigt's
 * replay oracle over a guest modelled in host memory (a fake mapper, named
 * as such below), and the vCPU state blob's bounds. */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "guest/xen/oracle.h"
#include "guest/xen/state.h"

#define NDATA 96u
#define NGFNS (HMIGT_DATA_GFN + NDATA)

/* ------------------------------------------------------ level 1: digests */

Test(digest, any_changed_word_changes_the_digest)
{
	static uint64_t page[HMIGT_PAGE_U64], copy[HMIGT_PAGE_U64];

	for (unsigned i = 0; i < HMIGT_PAGE_U64; i++)
		page[i] = hmigt_mix64(i);
	uint32_t d = xen_frame_digest(page);
	memcpy(copy, page, sizeof(page));
	cr_assert(eq(u32, xen_frame_digest(copy), d), "equal frames, equal digests");
	for (unsigned i = 0; i < HMIGT_PAGE_U64; i++)
		for (unsigned bit = 0; bit < 64; bit += 21) {
			copy[i] ^= 1ull << bit;
			cr_assert(ne(u32, xen_frame_digest(copy), d), "word %u bit %u", i, bit);
			copy[i] ^= 1ull << bit;
		}
	/* Two words swapped: order matters. */
	copy[3] = page[4];
	copy[4] = page[3];
	cr_assert(ne(u32, xen_frame_digest(copy), d));
	memset(copy, 0, sizeof(copy));
	cr_assert(ne(u32, xen_frame_digest(copy), d));
}

Test(digest, hash64_depends_on_length_and_seed)
{
	uint64_t a[2] = { 0x10, 0x11 };

	cr_assert(ne(u64, xen_hash64(a, 8, 0), xen_hash64(a, 16, 0)));
	cr_assert(ne(u64, xen_hash64(a, 16, 0), xen_hash64(a, 16, 1)));
	cr_assert(ne(u64, xen_hash64(NULL, 0, 0), xen_hash64(a, 1, 0)), "a zero byte is not nothing");
	cr_assert(eq(u64, xen_hash64(a, 16, 7), xen_hash64(a, 16, 7)));
}

/* ------------------------------------------------ level 2: hmigt's replay */

/* A fake: an hmigt guest's memory in host memory, gfn g at mem + g pages,
 * driven through the guest's write protocol (hmigt_layout.h). */
struct fake_guest {
	uint8_t *mem;
	struct hmigt_ctl *ctl;
	uint32_t *table;
	unsigned maps; /* mappings not yet unmapped */
};

static uint32_t *page_of(struct fake_guest *f, uint32_t p)
{
	return (uint32_t *)(f->mem + (size_t)(HMIGT_DATA_GFN + p) * HMIGT_PAGE_SIZE);
}

static void fake_op(struct fake_guest *f)
{
	uint64_t k = f->ctl->ops_done;
	struct hmigt_op op = hmigt_op(&f->ctl->wl, k);

	if (op.write) {
		uint32_t v = f->table[op.pfn];

		hmigt_page_fill(f->ctl->wl.seed, HMIGT_DATA_GFN + op.pfn, v + 1, page_of(f, op.pfn));
		f->table[op.pfn] = v + 1;
	}
	f->ctl->ops_done = k + 1;
	f->ctl->writes += op.write;
}

static struct fake_guest *fake_new(uint64_t ops)
{
	struct fake_guest *f = calloc(1, sizeof(*f));

	cr_assert(f != NULL);
	f->mem = calloc(NGFNS, HMIGT_PAGE_SIZE);
	cr_assert(f->mem != NULL);
	f->ctl = (struct hmigt_ctl *)(f->mem + (size_t)HMIGT_CTL_GFN * HMIGT_PAGE_SIZE);
	f->table = (uint32_t *)(f->mem + (size_t)HMIGT_TABLE_GFN * HMIGT_PAGE_SIZE);
	*f->ctl = (struct hmigt_ctl){
		.magic = HMIGT_CTL_MAGIC, .abi = HMIGT_ABI, .state = HMIGT_STATE_RUN, .boots = 1,
		.table_gfn = HMIGT_TABLE_GFN,
		.wl = { .seed = 7, .data_gfn = HMIGT_DATA_GFN, .n_data = NDATA, .write_thresh = 192,
			.fill_thresh = 128 },
	};
	for (uint32_t p = 0; p < NDATA; p++) {
		f->table[p] = hmigt_initial_version(&f->ctl->wl, p);
		hmigt_page_fill(7, HMIGT_DATA_GFN + p, f->table[p], page_of(f, p));
	}
	while (f->ctl->ops_done < ops)
		fake_op(f);
	return f;
}

static void fake_free(struct fake_guest *f)
{
	cr_assert(eq(u32, f->maps, 0), "the oracle left %u mappings", f->maps);
	free(f->mem);
	free(f);
}

static const void *fake_map(void *ctx, uint64_t gfn, uint32_t n, int *rc, char *err)
{
	struct fake_guest *f = ctx;

	cr_assert(n >= 1 && n <= HMIGT_MAP_MAX, "mapped %u pages at once", n);
	if (gfn + n > NGFNS) {
		*rc = -EFAULT;
		snprintf(err, 256, "fake: gfn %#lx beyond the guest", (unsigned long)gfn);
		return NULL;
	}
	f->maps++;
	return f->mem + gfn * HMIGT_PAGE_SIZE;
}

static void fake_unmap(void *ctx, const void *p, uint32_t n)
{
	struct fake_guest *f = ctx;

	(void)p;
	(void)n;
	f->maps--;
}

static int check(struct fake_guest *f, uint64_t min_ops, struct hmigt_verdict *v, char *err)
{
	struct hmigt_mem mem = { fake_map, fake_unmap, f };

	return hmigt_replay_check(&mem, min_ops, v, err);
}

Test(replay, a_faithful_guest_passes)
{
	struct fake_guest *f = fake_new(5000);
	struct hmigt_verdict v;
	char err[256] = "";

	cr_assert(eq(int, check(f, 5000, &v, err), 0), "%s", err);
	cr_assert(eq(u64, v.pages, NDATA));
	cr_assert(eq(u64, v.ctl.ops_done, 5000));
	cr_assert(eq(i64, v.inflight, -1));
	fake_free(f);
}

Test(replay, one_flipped_byte_is_named)
{
	struct fake_guest *f = fake_new(3000);
	struct hmigt_verdict v;
	char err[256], want[32];

	((uint8_t *)page_of(f, 41))[777] ^= 0x20;
	cr_assert(eq(int, check(f, 0, &v, err), -EBADMSG));
	snprintf(want, sizeof(want), "gfn %#x", HMIGT_DATA_GFN + 41);
	cr_assert(ne(ptr, strstr(err, want), NULL), "%s", err);
	cr_assert(ne(ptr, strstr(err, "word 194"), NULL), "byte 777 is in 32-bit word 194: %s", err);
	fake_free(f);
}

Test(replay, a_stale_page_and_a_stale_table_are_caught)
{
	struct fake_guest *f = fake_new(4000);
	struct hmigt_verdict v;
	char err[256];
	uint32_t p = 0;

	while (f->table[p] < 2)
		p++;
	/* The page an older pass sent: one version behind, table and all. */
	hmigt_page_fill(7, HMIGT_DATA_GFN + p, f->table[p] - 1, page_of(f, p));
	cr_assert(eq(int, check(f, 0, &v, err), -EBADMSG));
	cr_assert(ne(ptr, strstr(err, "differs from its stamp"), NULL), "%s", err);
	f->table[p]--;
	cr_assert(eq(int, check(f, 0, &v, err), -EBADMSG));
	cr_assert(ne(ptr, strstr(err, "version table"), NULL), "%s", err);
	fake_free(f);
}

/* A pause inside a page write: the page is a prefix of the new version over
 * the old one, which the rule accepts; anything else in its place is not. */
Test(replay, the_write_a_pause_interrupted_is_accepted)
{
	struct fake_guest *f = fake_new(2000);
	struct hmigt_verdict v;
	char err[256] = "";

	while (!hmigt_op(&f->ctl->wl, f->ctl->ops_done).write)
		fake_op(f);
	struct hmigt_op op = hmigt_op(&f->ctl->wl, f->ctl->ops_done);
	uint32_t old = f->table[op.pfn], *pg = page_of(f, op.pfn);
	static uint32_t next[HMIGT_PAGE_U32];

	f->ctl->inflight_old = old;
	f->ctl->inflight_pfn = op.pfn + 1;
	hmigt_page_fill(7, HMIGT_DATA_GFN + op.pfn, old + 1, next);
	memcpy(pg, next, 300 * 4);
	cr_assert(eq(int, check(f, 0, &v, err), 0), "%s", err);
	cr_assert(eq(i64, v.inflight, op.pfn));
	pg[600] ^= 1; /* not a prefix any more */
	cr_assert(eq(int, check(f, 0, &v, err), -EBADMSG));
	cr_assert(ne(ptr, strstr(err, "in flight"), NULL), "%s", err);
	fake_free(f);
}

Test(replay, lost_work_restarts_and_guest_violations_fail)
{
	struct fake_guest *f = fake_new(1000);
	struct hmigt_verdict v;
	char err[256];

	cr_assert(eq(int, check(f, 1001, &v, err), -EBADMSG), "fewer ops than at the pause");
	cr_assert(ne(ptr, strstr(err, "lost work"), NULL), "%s", err);
	f->ctl->boots = 2;
	cr_assert(eq(int, check(f, 0, &v, err), -EBADMSG));
	cr_assert(ne(ptr, strstr(err, "restarted"), NULL), "%s", err);
	f->ctl->boots = 1;
	f->ctl->violations = 3;
	cr_assert(eq(int, check(f, 0, &v, err), -EBADMSG));
	cr_assert(ne(ptr, strstr(err, "found 3"), NULL), "%s", err);
	f->ctl->violations = 0;
	f->ctl->magic = 0;
	cr_assert(eq(int, check(f, 0, &v, err), -ENODATA), "not hmigt: no level 2");
	fake_free(f);
}

/* ------------------------------------------------------- the state blob */

static void sample_state(struct xen_state *st, uint8_t *ctx, uint32_t *digest)
{
	memset(st, 0, sizeof(*st));
	st->nvcpus = 2;
	st->frames = 100;
	st->fingerprint = 0x1234;
	st->never_sent = 8;
	st->never_fingerprint = 0x5678;
	st->policy_hash = 0x9abc;
	st->tsc_mode = 2;
	st->tsc_khz = 2596122;
	st->tsc_nsec = 77;
	st->tsc_incarnation = 1;
	st->nparams = 3;
	for (uint32_t i = 0; i < 3; i++)
		st->params[i] = (struct xen_param){ i + 1, 0xfeff8 + i };
	st->hmigt_ops = 4242;
	st->ctx_len = 2503; /* odd: the pad is exercised */
	for (uint32_t i = 0; i < st->ctx_len; i++)
		ctx[i] = (uint8_t)i;
	st->ctx = ctx;
	for (uint32_t i = 0; i < 100; i++)
		digest[i] = i * 2654435761u;
	st->digest_kind = XEN_DIGEST_FRAME;
	st->digest = digest;
}

Test(state, round_trip_and_every_length_checked)
{
	static uint8_t ctx[4096];
	static uint32_t digest[100];
	struct xen_state st, back;
	void *blob;
	size_t len;
	char err[256] = "";

	sample_state(&st, ctx, digest);
	cr_assert(eq(int, xen_state_encode(&st, &blob, &len, err), 0), "%s", err);
	cr_assert(le(u64, (uint64_t)len, xen_state_max(2, 100)));
	cr_assert(eq(int, xen_state_decode(blob, len, &back, err), 0), "%s", err);
	cr_assert(eq(u32, back.nvcpus, 2));
	cr_assert(eq(u64, back.fingerprint, 0x1234));
	cr_assert(eq(u64, back.never_fingerprint, 0x5678));
	cr_assert(eq(u64, back.policy_hash, 0x9abc));
	cr_assert(eq(u32, back.tsc_khz, 2596122));
	cr_assert(eq(u64, back.hmigt_ops, 4242));
	cr_assert(eq(u32, back.nparams, 3));
	cr_assert(eq(u64, back.params[2].value, 0xfeff8 + 2));
	cr_assert(eq(u32, back.ctx_len, 2503));
	cr_assert(eq(int, memcmp(back.ctx, ctx, 2503), 0));
	cr_assert(eq(u32, xen_state_digest(&back, 99), 99 * 2654435761u));

	/* A byte short, a byte long: refused before anything is read. */
	cr_assert(eq(int, xen_state_decode(blob, len - 1, &back, err), -EPROTO));
	uint8_t *longer = malloc(len + 1);
	memcpy(longer, blob, len);
	cr_assert(eq(int, xen_state_decode(longer, len + 1, &back, err), -EPROTO));
	/* A context length that claims more than the blob holds. */
	memcpy(longer, blob, len);
	longer[92] = 0xff;
	longer[93] = 0xff;
	cr_assert(eq(int, xen_state_decode(longer, len, &back, err), -EPROTO));
	/* Another version is named. */
	memcpy(longer, blob, len);
	longer[4] = 9;
	cr_assert(eq(int, xen_state_decode(longer, len, &back, err), -EPROTO));
	cr_assert(ne(ptr, strstr(err, "version 9"), NULL), "%s", err);
	free(longer);
	free(blob);

	st.digest_kind = XEN_DIGEST_NONE;
	cr_assert(eq(int, xen_state_encode(&st, &blob, &len, err), 0), "%s", err);
	cr_assert(eq(int, xen_state_decode(blob, len, &back, err), 0), "%s", err);
	cr_assert(eq(ptr, (void *)back.digest_le, NULL));
	free(blob);
	st.ctx_len = (uint32_t)XEN_STATE_CTX_MAX(2) + 1;
	cr_assert(eq(int, xen_state_encode(&st, &blob, &len, err), -EINVAL), "oversized context");
}

#if HAVE_XEN
#include <hmig/guest.h>
extern const struct hmig_guest_ops xen_ops;

/* guest.h: no member is ever NULL, whatever the backend cannot do. */
Test(state, xen_ops_table_has_no_null_member)
{
	const void *const *m = (const void *const *)&xen_ops;

	for (size_t i = 0; i < sizeof(xen_ops) / sizeof(void *); i++)
		cr_assert(ne(ptr, (void *)m[i], NULL), "xen ops member %zu is NULL", i);
}
#endif
