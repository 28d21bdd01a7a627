/* The Xen backend's vCPU state blob: state.h has the layout. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/endian.h"
#include "common/err.h"
#include "guest/xen/state.h"

#define PARAM_LEN 16u

static uint64_t pad8(uint64_t n)
{
	return (n + 7) & ~7ull;
}

uint64_t xen_state_max(uint32_t nvcpus, uint64_t frames)
{
	return XEN_STATE_HDR + XEN_STATE_MAX_PARAMS * PARAM_LEN + pad8(XEN_STATE_CTX_MAX(nvcpus)) +
	       4 * frames;
}

static uint64_t body_len(const struct xen_state *st)
{
	return XEN_STATE_HDR + (uint64_t)st->nparams * PARAM_LEN + pad8(st->ctx_len) +
	       (st->digest_kind == XEN_DIGEST_FRAME ? 4 * st->frames : 0);
}

int xen_state_encode(const struct xen_state *st, void **blob, size_t *len, char *err)
{
	uint8_t *b, *p;
	uint64_t n;

	*blob = NULL;
	if (st->nparams > XEN_STATE_MAX_PARAMS)
		return err_setf(err, -EINVAL, "%u HVM params to carry, at most %u", st->nparams,
				XEN_STATE_MAX_PARAMS);
	if (!st->ctx_len || st->ctx_len > XEN_STATE_CTX_MAX(st->nvcpus))
		return err_setf(err, -EINVAL,
				"an HVM context of %u bytes for %u vCPUs, hmig carries 1..%llu",
				st->ctx_len, st->nvcpus,
				(unsigned long long)XEN_STATE_CTX_MAX(st->nvcpus));
	n = body_len(st);
	b = calloc(1, n);
	if (!b)
		return err_setf(err, -ENOMEM, "out of memory for %llu bytes of vCPU state",
				(unsigned long long)n);
	put_le32(b, XEN_STATE_MAGIC);
	put_le32(b + 4, XEN_STATE_VERSION);
	put_le32(b + 8, st->nvcpus);
	put_le32(b + 12, 4096);
	put_le64(b + 16, st->frames);
	put_le64(b + 24, st->fingerprint);
	put_le64(b + 32, st->never_sent);
	put_le64(b + 40, st->never_fingerprint);
	put_le64(b + 48, st->policy_hash);
	put_le32(b + 56, st->tsc_mode);
	put_le32(b + 60, st->tsc_khz);
	put_le64(b + 64, st->tsc_nsec);
	put_le32(b + 72, st->tsc_incarnation);
	put_le32(b + 76, st->nparams);
	put_le64(b + 80, st->hmigt_ops);
	put_le32(b + 88, st->digest_kind);
	put_le32(b + 92, st->ctx_len);
	p = b + XEN_STATE_HDR;
	for (uint32_t i = 0; i < st->nparams; i++, p += PARAM_LEN) {
		put_le32(p, st->params[i].index);
		put_le64(p + 8, st->params[i].value);
	}
	memcpy(p, st->ctx, st->ctx_len);
	p += pad8(st->ctx_len);
	if (st->digest_kind == XEN_DIGEST_FRAME)
		for (uint64_t i = 0; i < st->frames; i++, p += 4)
			put_le32(p, st->digest[i]);
	*blob = b;
	*len = (size_t)n;
	return 0;
}

int xen_state_decode(const void *blob, size_t len, struct xen_state *st, char *err)
{
	const uint8_t *b = blob, *p;

	memset(st, 0, sizeof(*st));
	if (len < XEN_STATE_HDR || get_le32(b) != XEN_STATE_MAGIC)
		return err_setf(err, -EPROTO, "vCPU state: not a Xen guest's state");
	if (get_le32(b + 4) != XEN_STATE_VERSION)
		return err_setf(err, -EPROTO,
				"vCPU state version %u, this hmig reads %u: use the same hmig version on both hosts",
				get_le32(b + 4), XEN_STATE_VERSION);
	st->nvcpus = get_le32(b + 8);
	st->frames = get_le64(b + 16);
	st->fingerprint = get_le64(b + 24);
	st->never_sent = get_le64(b + 32);
	st->never_fingerprint = get_le64(b + 40);
	st->policy_hash = get_le64(b + 48);
	st->tsc_mode = get_le32(b + 56);
	st->tsc_khz = get_le32(b + 60);
	st->tsc_nsec = get_le64(b + 64);
	st->tsc_incarnation = get_le32(b + 72);
	st->nparams = get_le32(b + 76);
	st->hmigt_ops = get_le64(b + 80);
	st->digest_kind = get_le32(b + 88);
	st->ctx_len = get_le32(b + 92);
	if (get_le32(b + 12) != 4096)
		return err_setf(err, -EPROTO, "vCPU state: page size %u, Xen's is 4096",
				get_le32(b + 12));
	if (!st->nvcpus || st->nparams > XEN_STATE_MAX_PARAMS || !st->ctx_len ||
	    st->ctx_len > XEN_STATE_CTX_MAX(st->nvcpus) || st->never_sent > st->frames ||
	    st->digest_kind > XEN_DIGEST_FRAME || st->frames > (1ull << 40))
		return err_setf(err, -EPROTO,
				"vCPU state: out of bounds (%u vCPUs, %u params, HVM context %u bytes, %llu frames)",
				st->nvcpus, st->nparams, st->ctx_len, (unsigned long long)st->frames);
	if (body_len(st) != len)
		return err_setf(err, -EPROTO,
				"vCPU state: %zu bytes, its header describes %llu", len,
				(unsigned long long)body_len(st));
	p = b + XEN_STATE_HDR;
	for (uint32_t i = 0; i < st->nparams; i++, p += PARAM_LEN) {
		st->params[i].index = get_le32(p);
		st->params[i].value = get_le64(p + 8);
		if (get_le32(p + 4))
			return err_setf(err, -EPROTO, "vCPU state: HVM param %u has a non-zero pad",
					st->params[i].index);
	}
	st->ctx = p;
	p += pad8(st->ctx_len);
	st->digest_le = st->digest_kind == XEN_DIGEST_FRAME ? p : NULL;
	return 0;
}

uint32_t xen_state_digest(const struct xen_state *st, uint64_t i)
{
	return get_le32(st->digest_le + 4 * i);
}
