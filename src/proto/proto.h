/* The hmig wire format: record layouts, encoders and checking decoders.
 *
 * docs/protocol.md is the specification, byte by byte; this header is its code
 * and the two must agree record for record.  Everything here is pure: no I/O,
 * no sockets, no guest memory.  The engine reads a PROTO_HDR_LEN header, lets
 * proto_hdr_decode() bound the body length before it allocates or reads
 * anything, reads the body, runs the type's decoder, and only then touches
 * guest memory.  Decoders return views into the body, never copies.
 *
 * Returns: 0 or a length on success, otherwise
 *   -EPROTO           malformed record (bad magic, counts that disagree with
 *                     the length, nonzero reserved bits, duplicate pfns,
 *                     unknown mandatory type, record out of sequence)
 *   -EPROTONOSUPPORT  the peer speaks another protocol version
 *   -EMSGSIZE         body length over the type's limit or PROTO_MAX_BODY
 *   -ERANGE           a pfn, range or page count outside the guest
 *   -EBADMSG          page data that fail their CRC32C (corrupted in transit)
 *   -EINVAL, -ENOSPC  caller bug: bad encoder argument, buffer too small,
 *                     decoder handed a record of another type
 * and one line naming the record and the problem in `err` (ERR_LEN bytes).
 */
#ifndef HMIG_PROTO_H
#define HMIG_PROTO_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

#include <hmig/hmig.h>

#include "common/endian.h"

/* 2: DIRTY and SYNC before the pause.  3: the handover as a commit (LOADED,
 * COMMIT, VERDICT) and its recovery (RECOVER, MISSING).  4: PAGES records
 * of a plaintext stream carry a CRC32C per page. */
#define PROTO_VERSION 4

/* ------------------------------------------------------------ limits */

/* No body may exceed this, whatever the geometry says: it bounds what a
 * corrupt or hostile header can make the receiver allocate.  64 MiB holds a
 * full PAGES batch at 4 KiB pages sixteen times over; a backend's declared
 * vCPU state limit (geometry's vcpu_state_max) is cut to it. */
#define PROTO_MAX_BODY (64u << 20)

/* Pages per PAGES record (fewer with large pages, see proto_pages_max_count)
 * and pfns per ZERO / REQUEST record.  1024 x 4 KiB = 4 MiB: large enough that
 * the 16 + 8 + 8 KiB prefix is 0.2% overhead, small enough that one record in
 * flight on the urgent channel never delays a fault by more than a few ms. */
#define PROTO_MAX_BATCH 1024u

/* Geometry a HELLO may announce.  4 KiB..2 MiB covers x86 base pages through
 * huge pages; 2^40 pages (4 PiB at 4 KiB) keeps npages * page_size and every
 * per-page table size far from overflowing 64 bits. */
#define PROTO_MIN_PAGE_SIZE 4096u
#define PROTO_MAX_PAGE_SIZE (2u << 20)
#define PROTO_MAX_NPAGES (1ull << 40)
#define PROTO_MAX_VCPUS 1024u

/* STALE: the encoder cuts the stale set into segments of this many pfns (1 GiB
 * of 4 KiB pages, a 32 KiB bitmap) and sends each as whichever of ranges or
 * bitmap is smaller, so no STALE body exceeds PROTO_STALE_MAX_BODY. */
#define PROTO_STALE_SEG_BITS (1u << 18)
#define PROTO_STALE_MAX_RANGES (PROTO_STALE_SEG_BITS / 128)
#define PROTO_STALE_MAX_BODY (24u + PROTO_STALE_SEG_BITS / 8)

/* ERROR text, bytes of UTF-8; an error line plus context fits easily. */
#define PROTO_ERROR_TEXT_MAX 1024u

/* ------------------------------------------------------------ header */

#define PROTO_HDR_LEN 16

/* Type bit 31: a receiver that does not know the type may skip the record
 * (Xen migration v2's rule).  Without it an unknown type ends the migration. */
#define PROTO_TYPE_OPTIONAL 0x80000000u

enum proto_type {
	PROTO_HELLO = 1,
	PROTO_PAGES = 2,
	PROTO_ZERO = 3,
	PROTO_PASS_END = 4,
	PROTO_STALE = 5,
	PROTO_VCPU_STATE = 6,
	PROTO_RESUMED = 7,
	PROTO_REQUEST = 8,
	PROTO_DONE = 9,
	PROTO_ERROR = 10,
	PROTO_DIRTY = 11,
	PROTO_SYNC = 12,
	PROTO_LOADED = 13,
	PROTO_COMMIT = 14,
	PROTO_VERDICT = 15,
	PROTO_RECOVER = 16,
	PROTO_MISSING = 17,
};

/* VERDICT codes: what the destination's oracle said. */
enum proto_verdict { PROTO_VERDICT_OK = 0, PROTO_VERDICT_MISMATCH = 1, PROTO_VERDICT_SKIPPED = 2 };

/* RECOVER flags: source: it has committed (sent COMMIT); destination: it
 * holds the loaded vCPU state. */
#define PROTO_RECOVER_COMMITTED 0x1u
#define PROTO_RECOVER_LOADED 0x1u

/* RECOVER state (destination): where it stands. */
enum proto_recover_state {
	PROTO_RECOVER_WAITING = 0,  /* loaded, waiting for COMMIT */
	PROTO_RECOVER_RUNNING = 1,  /* the guest runs here; pages are missing */
	PROTO_RECOVER_COMPLETE = 2, /* every page is here */
};

/* STALE, DIRTY: this record completes the set. */
#define PROTO_FLAG_LAST 0x1u
/* PAGES: a CRC32C of each page follows the pfn list (docs/protocol.md).  Set
 * on every PAGES record of a plaintext (--insecure) stream and on none of an
 * encrypted one, where the AEAD tag proves the data already. */
#define PROTO_FLAG_CRC32C 0x1u
/* VCPU_STATE: post-copy follows; the destination resumes at once and pulls
 * what is missing.  Without it, stop-and-copy follows: the stale pages, then
 * DONE, and only then does the destination resume.  Other types have no
 * flags; undefined flag bits must be 0. */
#define PROTO_FLAG_POSTCOPY 0x1u

struct proto_wire_hdr {
	uint8_t type[4];
	uint8_t flags[4];
	uint8_t body_len[4];
	uint8_t reserved[4]; /* 0; nonzero is rejected */
};
_Static_assert(sizeof(struct proto_wire_hdr) == PROTO_HDR_LEN, "record header");

struct proto_hdr {
	uint32_t type;
	uint32_t flags;
	uint32_t body_len;
	bool skip; /* unknown optional type: read body_len bytes and drop them */
};

/* ------------------------------------------------------------- bodies */

#define PROTO_HELLO_MAGIC "HMIGHELO"
#define PROTO_HELLO_LEN 64
/* A HELLO of any version starts with magic and version, so a v1 receiver can
 * name a newer peer's version instead of failing on its length. */
#define PROTO_HELLO_MIN 12u
#define PROTO_HELLO_MAX 4096u
#define PROTO_BACKEND_LEN 16

/* HELLO's mode is enum hmig_mode as is: the public values are the wire
 * values, so neither may change without the other. */
_Static_assert(HMIG_MODE_PRECOPY == 0 && HMIG_MODE_POSTCOPY == 1 && HMIG_MODE_HYBRID == 2,
	       "HELLO mode wire values");

/* The destination can take pages missing after resume (userfaultfd or a
 * paging ring): without it the source may only finish with stop-and-copy. */
#define PROTO_CAP_POSTCOPY (1ull << 0)

struct proto_wire_hello {
	uint8_t magic[8];
	uint8_t version[4];
	uint8_t mode[4];
	uint8_t caps[8];
	uint8_t session_id[8];
	uint8_t npages[8];
	uint8_t page_size[4];
	uint8_t nvcpus[4];
	uint8_t backend[PROTO_BACKEND_LEN]; /* ASCII, NUL-padded, >= 1 NUL */
};
_Static_assert(sizeof(struct proto_wire_hello) == PROTO_HELLO_LEN, "HELLO");

struct proto_hello {
	uint32_t mode; /* enum hmig_mode; checked <= HMIG_MODE_HYBRID */
	uint64_t caps; /* PROTO_CAP_*; unknown bits are ignored, not rejected */
	uint64_t session_id;
	/* npages, page_size, nvcpus; vcpu_state_max is not on the wire (the
	 * decoder leaves it 0): each side takes it from its own backend. */
	struct hmig_guest_geometry geo;
	char backend[PROTO_BACKEND_LEN]; /* NUL-terminated */
};

/* PAGES, ZERO and REQUEST: this prefix, count le64 pfns, for PAGES with
 * PROTO_FLAG_CRC32C count le32 CRC32Cs, and for PAGES count pages of data
 * in pfn order. */
struct proto_wire_pfns {
	uint8_t count[4];
	uint8_t pad[4]; /* 0; keeps the pfn array 8-byte aligned */
};
_Static_assert(sizeof(struct proto_wire_pfns) == 8, "pfn list prefix");

struct proto_pages {
	uint32_t count;
	const uint8_t *pfns; /* count le64 values: use proto_pages_pfn() */
	const uint8_t *crcs; /* PAGES with PROTO_FLAG_CRC32C: count le32 values,
			      * already checked against the data; else NULL */
	const uint8_t *data; /* PAGES: page i at data + i * page_size; else NULL */
};

static inline uint64_t proto_pages_pfn(const struct proto_pages *p, uint32_t i)
{
	return get_le64(p->pfns + 8 * (size_t)i);
}

struct proto_wire_pass_end {
	uint8_t pass[8];
	uint8_t pages_sent[8];
	uint8_t pages_dirty[8];
};
_Static_assert(sizeof(struct proto_wire_pass_end) == 24, "PASS_END");

struct proto_pass_end {
	uint64_t pass;        /* 0-based */
	uint64_t pages_sent;  /* PAGES + ZERO pfns sent in the pass */
	uint64_t pages_dirty; /* pages found dirty after it */
};

enum proto_stale_kind {
	PROTO_STALE_RANGES = 1,
	PROTO_STALE_BITMAP = 2,
};

/* STALE, ranges: this, then nranges x proto_wire_range, sorted, disjoint. */
struct proto_wire_stale {
	uint8_t kind[4];
	uint8_t nranges[4];
};
_Static_assert(sizeof(struct proto_wire_stale) == 8, "STALE ranges prefix");

struct proto_wire_range {
	uint8_t start[8];
	uint8_t count[8];
};
_Static_assert(sizeof(struct proto_wire_range) == 16, "STALE range");

/* STALE, bitmap segment: this, then ceil(nbits / 64) le64 words; bit i of word
 * w is pfn first_pfn + 64 w + i. */
struct proto_wire_stale_bitmap {
	uint8_t kind[4];
	uint8_t pad[4]; /* 0 */
	uint8_t first_pfn[8]; /* multiple of 64 */
	uint8_t nbits[8];
};
_Static_assert(sizeof(struct proto_wire_stale_bitmap) == 24, "STALE bitmap prefix");

struct proto_wire_resumed {
	uint8_t downtime_ns[8];
	uint8_t resume_wall_ns[8];
};
_Static_assert(sizeof(struct proto_wire_resumed) == 16, "RESUMED");

struct proto_resumed {
	/* Destination's share of the downtime, on its monotonic clock: from the
	 * first switchover record received to the guest running. */
	uint64_t downtime_ns;
	/* CLOCK_REALTIME at resume; comparable only with a synchronised clock. */
	uint64_t resume_wall_ns;
};

/* SYNC, LOADED, COMMIT: one token (SYNC: the source's; LOADED, COMMIT: the
 * session id). */
struct proto_wire_sync {
	uint8_t token[8];
};
_Static_assert(sizeof(struct proto_wire_sync) == 8, "SYNC");

struct proto_wire_recover {
	uint8_t session_id[8];
	uint8_t flags[4];
	uint8_t state[4];
};
_Static_assert(sizeof(struct proto_wire_recover) == 16, "RECOVER");

struct proto_recover {
	uint64_t session_id;
	uint32_t flags;
	uint32_t state; /* enum proto_recover_state; 0 from the source */
};

struct proto_wire_done {
	uint8_t pages[8];
	uint8_t bytes[8];
	uint8_t requests[8];
};
_Static_assert(sizeof(struct proto_wire_done) == 24, "DONE");

struct proto_done {
	uint64_t pages;    /* pages sent (source) / installed (destination) */
	uint64_t bytes;    /* record bytes sent (source) / received (destination) */
	uint64_t requests; /* pull requests served (source) / made (destination) */
};

struct proto_wire_error {
	uint8_t code[4];
	uint8_t text_len[4];
};
_Static_assert(sizeof(struct proto_wire_error) == 8, "ERROR prefix");

struct proto_error {
	uint32_t code;     /* positive errno, 1..4095 */
	uint32_t text_len;
	const char *text;  /* text_len bytes of UTF-8, NOT NUL-terminated */
};

/* ------------------------------------------------------- record sizes */

/* "HELLO", "PAGES", ...; "UNKNOWN" / "UNKNOWN-OPTIONAL" otherwise. */
const char *proto_type_name(uint32_t type);

/* Largest body a record of this type may carry under geo (NULL before HELLO),
 * never above PROTO_MAX_BODY; 0 for an unknown type or a type that needs a
 * geometry when geo is NULL.  Sizes receive buffers.  VCPU_STATE's is the
 * geometry's vcpu_state_max: the backend's figure, not the protocol's. */
uint32_t proto_body_max(uint32_t type, const struct hmig_guest_geometry *geo);

/* Pages per PAGES record at this page size: PROTO_MAX_BATCH, fewer when that
 * many large pages would not fit PROTO_MAX_BODY (31 at 2 MiB). */
uint32_t proto_pages_max_count(const struct hmig_guest_geometry *geo);

/* ------------------------------------------------------------ decoders */

/* Checks the first len bytes of buf as a record header and fills *out.  geo is
 * the negotiated geometry, NULL until HELLO: then only HELLO and ERROR (and
 * skippable optional records) are accepted.  Checks reserved == 0, the type,
 * its flags and body_len against the type's limits, so the caller may
 * allocate body_len bytes.  An unknown optional type returns 0 with
 * out->skip set. */
int proto_hdr_decode(const void *buf, size_t len,
		     const struct hmig_guest_geometry *geo,
		     struct proto_hdr *out, char *err);

/* Each takes a header proto_hdr_decode accepted and its body_len-byte body. */
int proto_hello_decode(const struct proto_hdr *h, const void *body,
		       struct proto_hello *out, char *err);

/* PAGES, ZERO or REQUEST: 1..limit pfns, each < npages, no duplicates, and
 * body_len exactly the size the count implies.  A PAGES record flagged
 * PROTO_FLAG_CRC32C has each page's data checked against its CRC32C here:
 * -EBADMSG naming the first pfn whose data do not match. */
int proto_pages_decode(const struct proto_hdr *h, const void *body,
		       const struct hmig_guest_geometry *geo,
		       struct proto_pages *out, char *err);

int proto_pass_end_decode(const struct proto_hdr *h, const void *body,
			  const struct hmig_guest_geometry *geo,
			  struct proto_pass_end *out, char *err);

/* STALE or DIRTY: checks every range / the segment against npages, then ORs
 * the record into stale (npages bits, BITMAP_WORDS(npages) words): a bad
 * record changes nothing.  h->flags & PROTO_FLAG_LAST says whether the set
 * is complete. */
int proto_stale_decode(const struct proto_hdr *h, const void *body,
		       const struct hmig_guest_geometry *geo,
		       uint64_t *stale, char *err);

int proto_sync_decode(const struct proto_hdr *h, const void *body, uint64_t *token,
		      char *err);

/* SYNC, LOADED or COMMIT. */
int proto_token_decode(const struct proto_hdr *h, const void *body, uint64_t *token,
		       char *err);

int proto_recover_decode(const struct proto_hdr *h, const void *body, struct proto_recover *out,
			 char *err);

/* VERDICT: out->code is the verdict (0..2), text as ERROR's. */
int proto_verdict_decode(const struct proto_hdr *h, const void *body, struct proto_error *out,
			 char *err);

/* The blob is the whole body; its size was bounded by proto_hdr_decode. */
int proto_vcpu_decode(const struct proto_hdr *h, const void *body,
		      const void **blob, size_t *len, char *err);

int proto_resumed_decode(const struct proto_hdr *h, const void *body,
			 struct proto_resumed *out, char *err);

int proto_done_decode(const struct proto_hdr *h, const void *body,
		      struct proto_done *out, char *err);

int proto_err_decode(const struct proto_hdr *h, const void *body,
		     struct proto_error *out, char *err);

/* The source's check of the destination's HELLO: same session, mode and
 * geometry (the destination echoes what it prepared). */
int proto_hello_match(const struct proto_hello *ours,
		      const struct proto_hello *peer, char *err);

/* ------------------------------------------------------------ encoders */

/* Each writes a whole record (header included) into buf, len bytes long, and
 * returns its length, except where noted. */

/* A bare header, no checks: for VCPU_STATE-like callers and for tests. */
void proto_hdr_encode(void *buf, uint32_t type, uint32_t flags, uint32_t body_len);

/* Checks h as proto_hello_decode would; always writes PROTO_VERSION. */
int proto_hello_encode(void *buf, size_t len, const struct proto_hello *h,
		       char *err);

/* PAGES prefix only: header, count, pad, pfns — 24 + 8 count bytes, returned.
 * body_len covers the count pages of data the caller sends next, straight
 * from guest memory, in pfn order.  count <= proto_pages_max_count(geo); pfns
 * are range-checked here, duplicates only by the receiver. */
int proto_pages_encode(void *buf, size_t len,
		       const struct hmig_guest_geometry *geo,
		       const uint64_t *pfns, uint32_t count, char *err);

/* The same prefix for a plaintext stream, flagged PROTO_FLAG_CRC32C, with
 * crcs[i] the CRC32C of page i's data (of the copy that is sent): 24 +
 * 12 count bytes, returned. */
int proto_pages_encode_crc(void *buf, size_t len,
			   const struct hmig_guest_geometry *geo,
			   const uint64_t *pfns, const uint32_t *crcs, uint32_t count,
			   char *err);

int proto_zero_encode(void *buf, size_t len,
		      const struct hmig_guest_geometry *geo,
		      const uint64_t *pfns, uint32_t count, char *err);

int proto_request_encode(void *buf, size_t len,
			 const struct hmig_guest_geometry *geo,
			 const uint64_t *pfns, uint32_t count, char *err);

int proto_pass_end_encode(void *buf, size_t len,
			  const struct proto_pass_end *pe, char *err);

/* Encodes the next STALE record of the stale set (npages bits) from *pos,
 * which starts at 0, and advances *pos.  The record that leaves *pos ==
 * npages carries PROTO_FLAG_LAST; an empty set is one empty LAST record.
 * Segments with no stale page are not sent.  buf needs PROTO_HDR_LEN +
 * PROTO_STALE_MAX_BODY bytes.  Loop: do { encode; send } while (pos < npages). */
int proto_stale_encode(void *buf, size_t len,
		       const struct hmig_guest_geometry *geo,
		       const uint64_t *stale, uint64_t *pos, char *err);

/* DIRTY: the same encoding of another set (pages the destination holds but
 * the guest has written since; drop them now). */
int proto_dirty_encode(void *buf, size_t len, const struct hmig_guest_geometry *geo,
		       const uint64_t *dirty, uint64_t *pos, char *err);

int proto_sync_encode(void *buf, size_t len, uint64_t token, char *err);

/* SYNC, LOADED or COMMIT (type) with its token. */
int proto_token_encode(void *buf, size_t len, uint32_t type, uint64_t token, char *err);

int proto_recover_encode(void *buf, size_t len, const struct proto_recover *r, char *err);

/* MISSING: the destination's missing set, STALE's encoding (as
 * proto_stale_encode). */
int proto_missing_encode(void *buf, size_t len, const struct hmig_guest_geometry *geo,
			 const uint64_t *missing, uint64_t *pos, char *err);

/* VERDICT: the destination oracle's word (enum proto_verdict) and its line
 * (cleaned and cut as ERROR's text). */
int proto_verdict_encode(void *buf, size_t len, uint32_t verdict, const char *text, char *err);

/* VCPU_STATE header only (PROTO_HDR_LEN, returned); blob_len bytes follow. */
int proto_vcpu_encode(void *buf, size_t len,
		      const struct hmig_guest_geometry *geo, size_t blob_len,
		      uint32_t flags, char *err);

int proto_resumed_encode(void *buf, size_t len, const struct proto_resumed *r,
			 char *err);

int proto_done_encode(void *buf, size_t len, const struct proto_done *d,
		      char *err);

/* code is a positive errno (the engine passes -rc).  text is cut to
 * PROTO_ERROR_TEXT_MAX bytes on a character boundary; control characters and
 * bytes that are not UTF-8 are replaced, because a failing migration must
 * still be able to say why.  buf needs 8 + PROTO_HDR_LEN + strlen(text),
 * at most PROTO_HDR_LEN + 8 + PROTO_ERROR_TEXT_MAX. */
int proto_err_encode(void *buf, size_t len, int code, const char *text,
		     char *err);

#endif
