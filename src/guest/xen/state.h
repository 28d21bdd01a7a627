/* The Xen backend's vCPU state blob (VCPU_STATE's body): what a PVH domain
 * carries besides its memory, encoded and decoded without Xen so the host
 * tests check every bound (tests/xen/test_oracle.c).
 *
 * Layout, little-endian, version 1:
 *
 *   0   u32 magic "HXEN"            4   u32 version (1)
 *   8   u32 nvcpus                  12  u32 page_size (4096)
 *   16  u64 frames                  24  u64 frame-list fingerprint
 *   32  u64 never_sent count        40  u64 never-sent fingerprint
 *   48  u64 CPU-policy hash
 *   56  u32 tsc_mode   60 u32 tsc_khz   64 u64 tsc_elapsed_nsec
 *   72  u32 tsc_incarnation         76  u32 nparams (<= XEN_STATE_MAX_PARAMS)
 *   80  u64 hmigt ops_done at the pause (XEN_STATE_NO_HMIGT: not hmigt)
 *   88  u32 digest kind (0 none, 1 xen_frame_digest)
 *   92  u32 hvm context length (1 .. XEN_STATE_CTX_MAX(nvcpus))
 *   96  nparams x { u32 index, u32 0, u64 value }
 *   ..  the HVM context (xc_domain_hvm_getcontext's bytes), padded to 8
 *   ..  digest kind 1: frames x u32, frame i's digest (never-sent frames: 0)
 *
 * Nothing follows; any other length is refused.
 */
#ifndef HMIG_GUEST_XEN_STATE_H
#define HMIG_GUEST_XEN_STATE_H

#include <stddef.h>
#include <stdint.h>

#define XEN_STATE_MAGIC 0x4e455848u /* "HXEN" */
#define XEN_STATE_VERSION 1u
#define XEN_STATE_HDR 96u
#define XEN_STATE_MAX_PARAMS 32u /* Xen's save code carries 16 */
#define XEN_STATE_NO_HMIGT UINT64_MAX
#define XEN_DIGEST_NONE 0u
#define XEN_DIGEST_FRAME 1u

/* The HVM context of a PVH vCPU is a few KiB (1 vCPU on the test bed: 2504
 * bytes; a CPU record of 1 KiB, XSAVE up to a few KiB on newer CPUs, LAPIC
 * registers 1 KiB); the domain's own records are small.  Generous bounds,
 * checked before anything is allocated: 64 KiB plus 32 KiB a vCPU. */
#define XEN_STATE_CTX_MAX(nvcpus) (65536u + 32768u * (uint64_t)(nvcpus))

struct xen_param {
	uint32_t index;
	uint64_t value;
};

struct xen_state {
	uint32_t nvcpus;
	uint64_t frames, fingerprint;
	uint64_t never_sent, never_fingerprint;
	uint64_t policy_hash;
	uint32_t tsc_mode, tsc_khz, tsc_incarnation;
	uint64_t tsc_nsec;
	uint32_t nparams;
	struct xen_param params[XEN_STATE_MAX_PARAMS];
	uint64_t hmigt_ops; /* XEN_STATE_NO_HMIGT when the guest is not hmigt */
	uint32_t digest_kind;
	uint32_t ctx_len;
	const uint8_t *ctx;     /* encode: the caller's; decode: points into the blob */
	const uint32_t *digest; /* encode only: frames digests when digest_kind is 1 */
	const uint8_t *digest_le; /* decode only: frames x u32 LE, in the blob */
};

/* The largest blob for nvcpus and frames: the VCPU_STATE limit the backend
 * declares.  The digest makes it grow with memory (4 bytes a frame); it is a
 * test knob, and the protocol's 64 MiB cap bounds it. */
uint64_t xen_state_max(uint32_t nvcpus, uint64_t frames);

/* A malloc'd blob of st: 0, or -EINVAL (a bound exceeded, named in err) or
 * -ENOMEM. */
int xen_state_encode(const struct xen_state *st, void **blob, size_t *len, char *err);

/* Parses a blob, checking magic, version and every length against the blob's
 * size before use: 0, or -EPROTO naming what is wrong. */
int xen_state_decode(const void *blob, size_t len, struct xen_state *st, char *err);

/* Frame i's digest from a decoded state (digest_kind 1 only). */
uint32_t xen_state_digest(const struct xen_state *st, uint64_t i);

#endif
