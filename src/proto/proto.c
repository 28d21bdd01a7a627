/* Encoders and checking decoders for the records of docs/protocol.md.
 *
 * The rule every decoder follows: validate the whole record first, then fill
 * the output.  A record that fails any check leaves the caller's state (the
 * stale bitmap in particular) untouched, so an error never half-applies.
 */
#include "proto/proto.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/bitmap.h"
#include "common/crc32c.h"
#include "common/err.h"
#include "common/utf8.h"

/* Largest errno the ERROR record may carry: Linux keeps errnos below 4096
 * (MAX_ERRNO); anything above is garbage, not a code worth reporting. */
#define MAX_ERRNO_CODE 4095u

struct rec_info {
	const char *name;
	uint32_t flags;   /* flags the type may carry */
	uint32_t min_len; /* smallest valid body */
	bool needs_hello; /* only valid once the geometry is known */
};

static const struct rec_info rec_table[] = {
	[PROTO_HELLO] = { "HELLO", 0, PROTO_HELLO_MIN, false },
	[PROTO_PAGES] = { "PAGES", PROTO_FLAG_CRC32C, sizeof(struct proto_wire_pfns), true },
	[PROTO_ZERO] = { "ZERO", 0, sizeof(struct proto_wire_pfns), true },
	[PROTO_PASS_END] = { "PASS_END", 0, sizeof(struct proto_wire_pass_end), true },
	[PROTO_STALE] = { "STALE", PROTO_FLAG_LAST, sizeof(struct proto_wire_stale), true },
	[PROTO_VCPU_STATE] = { "VCPU_STATE", PROTO_FLAG_POSTCOPY, 1, true },
	[PROTO_RESUMED] = { "RESUMED", 0, sizeof(struct proto_wire_resumed), true },
	[PROTO_REQUEST] = { "REQUEST", 0, sizeof(struct proto_wire_pfns), true },
	[PROTO_DONE] = { "DONE", 0, sizeof(struct proto_wire_done), true },
	[PROTO_ERROR] = { "ERROR", 0, sizeof(struct proto_wire_error), false },
	[PROTO_DIRTY] = { "DIRTY", PROTO_FLAG_LAST, sizeof(struct proto_wire_stale), true },
	[PROTO_SYNC] = { "SYNC", 0, sizeof(struct proto_wire_sync), true },
	[PROTO_LOADED] = { "LOADED", 0, sizeof(struct proto_wire_sync), true },
	[PROTO_COMMIT] = { "COMMIT", 0, sizeof(struct proto_wire_sync), true },
	[PROTO_VERDICT] = { "VERDICT", 0, sizeof(struct proto_wire_error), true },
	[PROTO_RECOVER] = { "RECOVER", 0, sizeof(struct proto_wire_recover), true },
	[PROTO_MISSING] = { "MISSING", PROTO_FLAG_LAST, sizeof(struct proto_wire_stale), true },
};

#define NTYPES (sizeof(rec_table) / sizeof(rec_table[0]))

static const struct rec_info *rec_lookup(uint32_t type)
{
	if (type == 0 || type >= NTYPES)
		return NULL;
	return &rec_table[type];
}

const char *proto_type_name(uint32_t type)
{
	const struct rec_info *ri = rec_lookup(type);

	if (ri)
		return ri->name;
	return type & PROTO_TYPE_OPTIONAL ? "UNKNOWN-OPTIONAL" : "UNKNOWN";
}

uint32_t proto_pages_max_count(const struct hmig_guest_geometry *geo)
{
	/* pfn, CRC32C and data: the count must fit with or without the CRCs. */
	uint64_t per_page = 12 + (uint64_t)geo->page_size;
	uint64_t fit = (PROTO_MAX_BODY - sizeof(struct proto_wire_pfns)) / per_page;

	return fit < PROTO_MAX_BATCH ? (uint32_t)fit : PROTO_MAX_BATCH;
}

/* The backend declares how large its vCPU state gets (both sides run the
 * same backend, so the wire does not carry it); the protocol only caps it. */
static uint64_t vcpu_max(const struct hmig_guest_geometry *geo)
{
	return geo->vcpu_state_max < PROTO_MAX_BODY ? geo->vcpu_state_max : PROTO_MAX_BODY;
}

uint32_t proto_body_max(uint32_t type, const struct hmig_guest_geometry *geo)
{
	const struct rec_info *ri = rec_lookup(type);

	if (!ri || (ri->needs_hello && !geo))
		return 0;
	switch ((enum proto_type)type) {
	case PROTO_HELLO:
		return PROTO_HELLO_MAX;
	case PROTO_PAGES:
		return sizeof(struct proto_wire_pfns) +
		       proto_pages_max_count(geo) * (12 + geo->page_size);
	case PROTO_ZERO:
	case PROTO_REQUEST:
		return sizeof(struct proto_wire_pfns) + 8 * PROTO_MAX_BATCH;
	case PROTO_PASS_END:
		return sizeof(struct proto_wire_pass_end);
	case PROTO_STALE:
	case PROTO_DIRTY:
	case PROTO_MISSING:
		return PROTO_STALE_MAX_BODY;
	case PROTO_SYNC:
	case PROTO_LOADED:
	case PROTO_COMMIT:
		return sizeof(struct proto_wire_sync);
	case PROTO_RECOVER:
		return sizeof(struct proto_wire_recover);
	case PROTO_VERDICT:
		return sizeof(struct proto_wire_error) + PROTO_ERROR_TEXT_MAX;
	case PROTO_VCPU_STATE:
		return (uint32_t)vcpu_max(geo);
	case PROTO_RESUMED:
		return sizeof(struct proto_wire_resumed);
	case PROTO_DONE:
		return sizeof(struct proto_wire_done);
	case PROTO_ERROR:
		return sizeof(struct proto_wire_error) + PROTO_ERROR_TEXT_MAX;
	}
	return 0;
}

/* ------------------------------------------------------------ header */

void proto_hdr_encode(void *buf, uint32_t type, uint32_t flags, uint32_t body_len)
{
	struct proto_wire_hdr *w = buf;

	put_le32(w->type, type);
	put_le32(w->flags, flags);
	put_le32(w->body_len, body_len);
	put_le32(w->reserved, 0);
}

int proto_hdr_decode(const void *buf, size_t len,
		     const struct hmig_guest_geometry *geo,
		     struct proto_hdr *out, char *err)
{
	const struct proto_wire_hdr *w = buf;
	const struct rec_info *ri;
	uint32_t type, flags, body_len, reserved, max;

	if (len < PROTO_HDR_LEN)
		return err_setf(err, -EPROTO,
				"record header: truncated (%zu of %d bytes)",
				len, PROTO_HDR_LEN);
	type = get_le32(w->type);
	flags = get_le32(w->flags);
	body_len = get_le32(w->body_len);
	reserved = get_le32(w->reserved);
	ri = rec_lookup(type);

	/* The reserved word is checked even for skippable records: nonzero
	 * there means the stream is out of step, not that the peer is newer. */
	if (reserved)
		return err_setf(err, -EPROTO,
				"%s record (type 0x%08x) header: reserved field is 0x%08x, must be 0 (stream corrupt or out of step)",
				proto_type_name(type), type, reserved);
	if (body_len > PROTO_MAX_BODY)
		return err_setf(err, -EMSGSIZE,
				"%s record (type 0x%08x): body_len %u over the absolute limit %u",
				proto_type_name(type), type, body_len, PROTO_MAX_BODY);
	if (!ri) {
		if (type & PROTO_TYPE_OPTIONAL) {
			*out = (struct proto_hdr){ type, flags, body_len, true };
			return 0;
		}
		return err_setf(err, -EPROTO,
				"UNKNOWN record: mandatory type 0x%08x is not part of protocol version %d (is the peer a newer hmig? run the same version on both hosts)",
				type, PROTO_VERSION);
	}
	if (ri->needs_hello && !geo)
		return err_setf(err, -EPROTO,
				"%s record: arrived before HELLO (the peer must start with HELLO)",
				ri->name);
	if (flags & ~ri->flags)
		return err_setf(err, -EPROTO,
				"%s record: unknown flags 0x%08x", ri->name,
				flags & ~ri->flags);
	if (body_len < ri->min_len)
		return err_setf(err, -EPROTO,
				"%s record: body_len %u below the minimum %u",
				ri->name, body_len, ri->min_len);
	max = proto_body_max(type, geo);
	if (body_len > max)
		return err_setf(err, -EMSGSIZE,
				"%s record: body_len %u over the limit %u for this geometry",
				ri->name, body_len, max);
	*out = (struct proto_hdr){ type, flags, body_len, false };
	return 0;
}

/* Every type decoder starts here: a record of another type is a caller bug,
 * and re-checking the length bounds keeps a decoder safe even when handed a
 * header that did not come from proto_hdr_decode. */
static int expect(const struct proto_hdr *h, uint32_t type, char *err)
{
	const struct rec_info *ri = rec_lookup(type);

	if (h->type != type)
		return err_setf(err, -EINVAL,
				"%s decoder handed a %s record (caller bug)",
				ri->name, proto_type_name(h->type));
	if (h->body_len < ri->min_len)
		return err_setf(err, -EPROTO,
				"%s record: body_len %u below the minimum %u",
				ri->name, h->body_len, ri->min_len);
	return 0;
}

static int expect_fixed(const struct proto_hdr *h, uint32_t type, uint32_t size,
			char *err)
{
	int rc = expect(h, type, err);

	if (rc)
		return rc;
	if (h->body_len != size)
		return err_setf(err, h->body_len > size ? -EMSGSIZE : -EPROTO,
				"%s record: body_len %u, must be %u",
				proto_type_name(type), h->body_len, size);
	return 0;
}

static int room(size_t len, uint64_t need, uint32_t type, char *err)
{
	if (len < need)
		return err_setf(err, -ENOSPC,
				"%s record: encoder buffer of %zu bytes, needs %llu (caller bug)",
				proto_type_name(type), len, (unsigned long long)need);
	return 0;
}

/* -------------------------------------------------------------- HELLO */

static int hello_check(const struct proto_hello *h, char *err)
{
	uint32_t ps = h->geo.page_size;
	size_t n = strnlen(h->backend, PROTO_BACKEND_LEN);

	if (h->mode > HMIG_MODE_HYBRID)
		return err_setf(err, -EPROTO,
				"HELLO record: unknown migration mode %u (0 precopy, 1 postcopy, 2 hybrid)",
				h->mode);
	if (ps < PROTO_MIN_PAGE_SIZE || ps > PROTO_MAX_PAGE_SIZE || (ps & (ps - 1)))
		return err_setf(err, -EPROTO,
				"HELLO record: page size %u is not a power of two in %u..%u",
				ps, PROTO_MIN_PAGE_SIZE, PROTO_MAX_PAGE_SIZE);
	if (h->geo.npages == 0 || h->geo.npages > PROTO_MAX_NPAGES)
		return err_setf(err, -EPROTO,
				"HELLO record: page count %llu not in 1..%llu",
				(unsigned long long)h->geo.npages,
				(unsigned long long)PROTO_MAX_NPAGES);
	if (h->geo.nvcpus == 0 || h->geo.nvcpus > PROTO_MAX_VCPUS)
		return err_setf(err, -EPROTO,
				"HELLO record: vCPU count %u not in 1..%u",
				h->geo.nvcpus, PROTO_MAX_VCPUS);
	if (n == 0 || n == PROTO_BACKEND_LEN)
		return err_setf(err, -EPROTO,
				"HELLO record: backend name must be 1..%d characters",
				PROTO_BACKEND_LEN - 1);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)h->backend[i];

		if (c < 0x21 || c > 0x7e)
			return err_setf(err, -EPROTO,
					"HELLO record: backend name has byte 0x%02x (printable ASCII only)",
					c);
	}
	return 0;
}

int proto_hello_encode(void *buf, size_t len, const struct proto_hello *h,
		       char *err)
{
	struct proto_wire_hello *w;
	int rc;

	rc = room(len, PROTO_HDR_LEN + PROTO_HELLO_LEN, PROTO_HELLO, err);
	if (rc)
		return rc;
	/* A bad HELLO on the sending side is this side's bug, not the peer's. */
	if (hello_check(h, err))
		return -EINVAL;
	proto_hdr_encode(buf, PROTO_HELLO, 0, PROTO_HELLO_LEN);
	w = (struct proto_wire_hello *)((uint8_t *)buf + PROTO_HDR_LEN);
	memcpy(w->magic, PROTO_HELLO_MAGIC, sizeof(w->magic));
	put_le32(w->version, PROTO_VERSION);
	put_le32(w->mode, h->mode);
	put_le64(w->caps, h->caps);
	put_le64(w->session_id, h->session_id);
	put_le64(w->npages, h->geo.npages);
	put_le32(w->page_size, h->geo.page_size);
	put_le32(w->nvcpus, h->geo.nvcpus);
	/* strncpy's NUL padding is exactly the wire rule: no stack bytes leak. */
	strncpy((char *)w->backend, h->backend, PROTO_BACKEND_LEN);
	return PROTO_HDR_LEN + PROTO_HELLO_LEN;
}

int proto_hello_decode(const struct proto_hdr *h, const void *body,
		       struct proto_hello *out, char *err)
{
	const struct proto_wire_hello *w = body;
	struct proto_hello hello;
	uint32_t version;
	int rc;

	rc = expect(h, PROTO_HELLO, err);
	if (rc)
		return rc;
	/* Magic and version first, at the offsets every version shares, so a
	 * newer peer's longer HELLO is reported as a version mismatch. */
	if (memcmp(w->magic, PROTO_HELLO_MAGIC, sizeof(w->magic)))
		return err_setf(err, -EPROTO,
				"HELLO record: bad magic (the peer is not hmig, or the stream is out of step)");
	version = get_le32(w->version);
	if (version != PROTO_VERSION)
		return err_setf(err, -EPROTONOSUPPORT,
				"HELLO record: peer speaks protocol version %u, this side speaks %d (run the same hmig version on both hosts)",
				version, PROTO_VERSION);
	if (h->body_len != PROTO_HELLO_LEN)
		return err_setf(err, -EPROTO,
				"HELLO record: body_len %u, version %d HELLO is %d bytes",
				h->body_len, PROTO_VERSION, PROTO_HELLO_LEN);
	if (!memchr(w->backend, 0, PROTO_BACKEND_LEN))
		return err_setf(err, -EPROTO,
				"HELLO record: backend name is not NUL-terminated");
	for (size_t i = strnlen((const char *)w->backend, PROTO_BACKEND_LEN);
	     i < PROTO_BACKEND_LEN; i++)
		if (w->backend[i])
			return err_setf(err, -EPROTO,
					"HELLO record: backend name padding is not all NUL");
	hello.mode = get_le32(w->mode);
	hello.caps = get_le64(w->caps);
	hello.session_id = get_le64(w->session_id);
	hello.geo.npages = get_le64(w->npages);
	hello.geo.page_size = get_le32(w->page_size);
	hello.geo.nvcpus = get_le32(w->nvcpus);
	hello.geo.vcpu_state_max = 0; /* not on the wire */
	memcpy(hello.backend, w->backend, PROTO_BACKEND_LEN);
	rc = hello_check(&hello, err);
	if (rc)
		return rc;
	*out = hello;
	return 0;
}

int proto_hello_match(const struct proto_hello *ours,
		      const struct proto_hello *peer, char *err)
{
	if (peer->session_id != ours->session_id)
		return err_setf(err, -EPROTO,
				"HELLO record: peer answers session %016llx, this migration is %016llx (another migration on the same port?)",
				(unsigned long long)peer->session_id,
				(unsigned long long)ours->session_id);
	if (peer->mode != ours->mode)
		return err_setf(err, -EPROTO,
				"HELLO record: peer runs mode %u, this side %u",
				peer->mode, ours->mode);
	if (peer->geo.npages != ours->geo.npages ||
	    peer->geo.page_size != ours->geo.page_size ||
	    peer->geo.nvcpus != ours->geo.nvcpus)
		return err_setf(err, -EPROTO,
				"HELLO record: peer prepared %llu pages of %u bytes and %u vCPUs, this guest has %llu of %u and %u",
				(unsigned long long)peer->geo.npages,
				peer->geo.page_size, peer->geo.nvcpus,
				(unsigned long long)ours->geo.npages,
				ours->geo.page_size, ours->geo.nvcpus);
	return 0;
}

/* ---------------------------------------------- PAGES, ZERO, REQUEST */

static uint32_t pfns_limit(uint32_t type, const struct hmig_guest_geometry *geo)
{
	return type == PROTO_PAGES ? proto_pages_max_count(geo) : PROTO_MAX_BATCH;
}

static uint64_t pfns_body_len(uint32_t type, uint32_t flags,
			      const struct hmig_guest_geometry *geo, uint32_t count)
{
	uint64_t per = 8 + (type == PROTO_PAGES ? (uint64_t)geo->page_size : 0) +
		       (flags & PROTO_FLAG_CRC32C ? 4 : 0);

	return sizeof(struct proto_wire_pfns) + per * count;
}

static int pfns_encode(void *buf, size_t len, uint32_t type,
		       const struct hmig_guest_geometry *geo,
		       const uint64_t *pfns, const uint32_t *crcs, uint32_t count, char *err)
{
	struct proto_wire_pfns *w;
	uint8_t *p;
	uint32_t flags = crcs ? PROTO_FLAG_CRC32C : 0;
	uint64_t prefix = PROTO_HDR_LEN + sizeof(*w) + (crcs ? 12 : 8) * (uint64_t)count;
	uint32_t limit = pfns_limit(type, geo);
	int rc;

	if (count == 0 || count > limit)
		return err_setf(err, -EINVAL,
				"%s record: count %u not in 1..%u (caller bug)",
				proto_type_name(type), count, limit);
	rc = room(len, prefix, type, err);
	if (rc)
		return rc;
	proto_hdr_encode(buf, type, flags, (uint32_t)pfns_body_len(type, flags, geo, count));
	w = (struct proto_wire_pfns *)((uint8_t *)buf + PROTO_HDR_LEN);
	put_le32(w->count, count);
	put_le32(w->pad, 0);
	p = (uint8_t *)(w + 1);
	for (uint32_t i = 0; i < count; i++) {
		if (pfns[i] >= geo->npages)
			return err_setf(err, -ERANGE,
					"%s record: pfn %llu out of range (guest has %llu pages; caller bug)",
					proto_type_name(type),
					(unsigned long long)pfns[i],
					(unsigned long long)geo->npages);
		put_le64(p + 8 * (size_t)i, pfns[i]);
	}
	for (uint32_t i = 0; crcs && i < count; i++)
		put_le32(p + 8 * (size_t)count + 4 * (size_t)i, crcs[i]);
	return (int)prefix;
}

int proto_pages_encode(void *buf, size_t len,
		       const struct hmig_guest_geometry *geo,
		       const uint64_t *pfns, uint32_t count, char *err)
{
	return pfns_encode(buf, len, PROTO_PAGES, geo, pfns, NULL, count, err);
}

int proto_pages_encode_crc(void *buf, size_t len,
			   const struct hmig_guest_geometry *geo,
			   const uint64_t *pfns, const uint32_t *crcs, uint32_t count,
			   char *err)
{
	return pfns_encode(buf, len, PROTO_PAGES, geo, pfns, crcs, count, err);
}

int proto_zero_encode(void *buf, size_t len,
		      const struct hmig_guest_geometry *geo,
		      const uint64_t *pfns, uint32_t count, char *err)
{
	return pfns_encode(buf, len, PROTO_ZERO, geo, pfns, NULL, count, err);
}

int proto_request_encode(void *buf, size_t len,
			 const struct hmig_guest_geometry *geo,
			 const uint64_t *pfns, uint32_t count, char *err)
{
	return pfns_encode(buf, len, PROTO_REQUEST, geo, pfns, NULL, count, err);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return (x > y) - (x < y);
}

/* Range and duplicate check of a pfn list.  Our sender emits most batches in
 * ascending order (a pass walks the dirty bitmap), so one pass proving the
 * list strictly increasing settles both; only out-of-order lists (pull
 * replies, the pusher's hot-first order) pay for a sorted copy. */
static int pfns_check(uint32_t type, const uint8_t *wire, uint32_t count,
		      uint64_t npages, char *err)
{
	uint64_t sorted[PROTO_MAX_BATCH]; /* 8 KiB of stack, no allocation */
	uint64_t prev = 0;
	bool increasing = true;

	for (uint32_t i = 0; i < count; i++) {
		uint64_t pfn = get_le64(wire + 8 * (size_t)i);

		if (pfn >= npages)
			return err_setf(err, -ERANGE,
					"%s record: pfn %llu out of range (guest has %llu pages)",
					proto_type_name(type),
					(unsigned long long)pfn,
					(unsigned long long)npages);
		if (i && pfn <= prev)
			increasing = false;
		prev = pfn;
		sorted[i] = pfn;
	}
	if (increasing)
		return 0;
	qsort(sorted, count, sizeof(sorted[0]), cmp_u64);
	for (uint32_t i = 1; i < count; i++)
		if (sorted[i] == sorted[i - 1])
			return err_setf(err, -EPROTO,
					"%s record: duplicate pfn %llu",
					proto_type_name(type),
					(unsigned long long)sorted[i]);
	return 0;
}

int proto_pages_decode(const struct proto_hdr *h, const void *body,
		       const struct hmig_guest_geometry *geo,
		       struct proto_pages *out, char *err)
{
	const struct proto_wire_pfns *w = body;
	uint32_t count, pad, limit;
	uint64_t want;
	int rc;

	if (h->type != PROTO_PAGES && h->type != PROTO_ZERO &&
	    h->type != PROTO_REQUEST)
		return err_setf(err, -EINVAL,
				"PAGES/ZERO/REQUEST decoder handed a %s record (caller bug)",
				proto_type_name(h->type));
	rc = expect(h, h->type, err);
	if (rc)
		return rc;
	count = get_le32(w->count);
	pad = get_le32(w->pad);
	limit = pfns_limit(h->type, geo);
	if (pad)
		return err_setf(err, -EPROTO, "%s record: pad is 0x%08x, must be 0",
				proto_type_name(h->type), pad);
	if (count == 0 || count > limit)
		return err_setf(err, -EPROTO, "%s record: count %u not in 1..%u",
				proto_type_name(h->type), count, limit);
	want = pfns_body_len(h->type, h->flags, geo, count);
	if (h->body_len != want)
		return err_setf(err, -EPROTO,
				"%s record: body_len %u does not match count %u (expected %llu)",
				proto_type_name(h->type), h->body_len, count,
				(unsigned long long)want);
	rc = pfns_check(h->type, (const uint8_t *)(w + 1), count, geo->npages, err);
	if (rc)
		return rc;
	const uint8_t *pfns = (const uint8_t *)(w + 1);
	const uint8_t *crcs = h->flags & PROTO_FLAG_CRC32C ? pfns + 8 * (size_t)count : NULL;
	const uint8_t *data = h->type != PROTO_PAGES ? NULL
			      : pfns + (crcs ? 12 : 8) * (size_t)count;
	/* Last, once the layout is known good: one read of every page. */
	for (uint32_t i = 0; crcs && i < count; i++) {
		uint32_t want_crc = get_le32(crcs + 4 * (size_t)i);
		uint32_t got = crc32c(data + (size_t)i * geo->page_size, geo->page_size);

		if (got != want_crc)
			return err_setf(err, -EBADMSG,
					"PAGES record: the data of pfn %llu fail their CRC32C (sent 0x%08x, received 0x%08x): corrupted in transit (check the network path, or use TLS)",
					(unsigned long long)get_le64(pfns + 8 * (size_t)i),
					want_crc, got);
	}
	out->count = count;
	out->pfns = pfns;
	out->crcs = crcs;
	out->data = data;
	return 0;
}

/* ----------------------------------------------------------- PASS_END */

int proto_pass_end_encode(void *buf, size_t len,
			  const struct proto_pass_end *pe, char *err)
{
	struct proto_wire_pass_end *w;
	int rc = room(len, PROTO_HDR_LEN + sizeof(*w), PROTO_PASS_END, err);

	if (rc)
		return rc;
	proto_hdr_encode(buf, PROTO_PASS_END, 0, sizeof(*w));
	w = (struct proto_wire_pass_end *)((uint8_t *)buf + PROTO_HDR_LEN);
	put_le64(w->pass, pe->pass);
	put_le64(w->pages_sent, pe->pages_sent);
	put_le64(w->pages_dirty, pe->pages_dirty);
	return PROTO_HDR_LEN + sizeof(*w);
}

int proto_pass_end_decode(const struct proto_hdr *h, const void *body,
			  const struct hmig_guest_geometry *geo,
			  struct proto_pass_end *out, char *err)
{
	const struct proto_wire_pass_end *w = body;
	struct proto_pass_end pe;
	int rc = expect_fixed(h, PROTO_PASS_END, sizeof(*w), err);

	if (rc)
		return rc;
	pe.pass = get_le64(w->pass);
	pe.pages_sent = get_le64(w->pages_sent);
	pe.pages_dirty = get_le64(w->pages_dirty);
	if (pe.pages_sent > geo->npages || pe.pages_dirty > geo->npages)
		return err_setf(err, -ERANGE,
				"PASS_END record: pass %llu counts %llu sent and %llu dirty, guest has %llu pages",
				(unsigned long long)pe.pass,
				(unsigned long long)pe.pages_sent,
				(unsigned long long)pe.pages_dirty,
				(unsigned long long)geo->npages);
	*out = pe;
	return 0;
}

/* -------------------------------------------------------------- STALE */

/* Bits [first, first + nbits) of b as word w of a segment, masked to nbits. */
static uint64_t seg_word(const uint64_t *b, uint64_t first, uint64_t nbits,
			 uint64_t w)
{
	uint64_t v = b[first / 64 + w];
	uint64_t left = nbits - 64 * w;

	return left >= 64 ? v : v & ((1ull << left) - 1);
}

/* Number of runs of set bits in a segment: a run starts at every set bit whose
 * lower neighbour is clear.  The segment edge counts as clear, because the
 * encoder clips ranges there. */
static uint64_t seg_runs(const uint64_t *b, uint64_t first, uint64_t nbits)
{
	uint64_t runs = 0, carry = 0;

	for (uint64_t w = 0; w < BITMAP_WORDS(nbits); w++) {
		uint64_t v = seg_word(b, first, nbits, w);

		runs += (uint64_t)__builtin_popcountll(v & ~((v << 1) | carry));
		carry = v >> 63;
	}
	return runs;
}

/* First clear bit at or after i, or end. */
static uint64_t next_clear(const uint64_t *b, uint64_t end, uint64_t i)
{
	while (i < end) {
		uint64_t w = ~b[i / 64] >> (i % 64);

		if (w) {
			i += (uint64_t)__builtin_ctzll(w);
			return i < end ? i : end;
		}
		i = (i / 64 + 1) * 64;
	}
	return end;
}

static uint64_t seg_start(uint64_t pfn)
{
	return pfn - pfn % PROTO_STALE_SEG_BITS;
}

/* STALE and DIRTY share this body: a pfn set cut into segments. */
static int set_encode(void *buf, size_t len, uint32_t type,
		      const struct hmig_guest_geometry *geo,
		      const uint64_t *stale, uint64_t *pos, char *err)
{
	uint8_t *body = (uint8_t *)buf + PROTO_HDR_LEN;
	uint64_t npages = geo->npages, first, end, nbits, words, runs, next;
	uint64_t ranges_len, bitmap_len;
	uint32_t body_len;
	int rc;

	rc = room(len, PROTO_HDR_LEN + PROTO_STALE_MAX_BODY, type, err);
	if (rc)
		return rc;
	if (*pos >= npages || *pos % PROTO_STALE_SEG_BITS)
		return err_setf(err, -EINVAL,
				"%s record: encoder position %llu is not a segment start below %llu (caller bug)",
				proto_type_name(type), (unsigned long long)*pos,
				(unsigned long long)npages);

	first = bitmap_next(stale, npages, *pos);
	if (first == npages) {
		/* Nothing (more) is stale: the set still needs its LAST. */
		struct proto_wire_stale *w = (struct proto_wire_stale *)body;

		put_le32(w->kind, PROTO_STALE_RANGES);
		put_le32(w->nranges, 0);
		proto_hdr_encode(buf, type, PROTO_FLAG_LAST, sizeof(*w));
		*pos = npages;
		return PROTO_HDR_LEN + sizeof(*w);
	}
	first = seg_start(first);
	end = first + PROTO_STALE_SEG_BITS < npages ? first + PROTO_STALE_SEG_BITS : npages;
	nbits = end - first;
	words = BITMAP_WORDS(nbits);
	runs = seg_runs(stale, first, nbits);
	ranges_len = sizeof(struct proto_wire_stale) + runs * sizeof(struct proto_wire_range);
	bitmap_len = sizeof(struct proto_wire_stale_bitmap) + 8 * words;

	if (ranges_len <= bitmap_len) {
		struct proto_wire_stale *w = (struct proto_wire_stale *)body;
		struct proto_wire_range *r = (struct proto_wire_range *)(w + 1);
		uint64_t i = bitmap_next(stale, end, first);

		put_le32(w->kind, PROTO_STALE_RANGES);
		put_le32(w->nranges, (uint32_t)runs);
		while (i < end) {
			uint64_t stop = next_clear(stale, end, i);

			put_le64(r->start, i);
			put_le64(r->count, stop - i);
			r++;
			i = bitmap_next(stale, end, stop);
		}
		body_len = (uint32_t)ranges_len;
	} else {
		struct proto_wire_stale_bitmap *w = (struct proto_wire_stale_bitmap *)body;
		uint8_t *bits = (uint8_t *)(w + 1);

		put_le32(w->kind, PROTO_STALE_BITMAP);
		put_le32(w->pad, 0);
		put_le64(w->first_pfn, first);
		put_le64(w->nbits, nbits);
		for (uint64_t k = 0; k < words; k++)
			put_le64(bits + 8 * k, seg_word(stale, first, nbits, k));
		body_len = (uint32_t)bitmap_len;
	}

	next = bitmap_next(stale, npages, end);
	*pos = next == npages ? npages : seg_start(next);
	proto_hdr_encode(buf, type, *pos == npages ? PROTO_FLAG_LAST : 0, body_len);
	return PROTO_HDR_LEN + (int)body_len;
}

int proto_stale_encode(void *buf, size_t len, const struct hmig_guest_geometry *geo,
		       const uint64_t *stale, uint64_t *pos, char *err)
{
	return set_encode(buf, len, PROTO_STALE, geo, stale, pos, err);
}

int proto_dirty_encode(void *buf, size_t len, const struct hmig_guest_geometry *geo,
		       const uint64_t *dirty, uint64_t *pos, char *err)
{
	return set_encode(buf, len, PROTO_DIRTY, geo, dirty, pos, err);
}

int proto_missing_encode(void *buf, size_t len, const struct hmig_guest_geometry *geo,
			 const uint64_t *missing, uint64_t *pos, char *err)
{
	return set_encode(buf, len, PROTO_MISSING, geo, missing, pos, err);
}

static int stale_ranges(const struct proto_hdr *h, const uint8_t *body,
			uint64_t npages, uint64_t *stale, char *err)
{
	const struct proto_wire_stale *w = (const struct proto_wire_stale *)body;
	const struct proto_wire_range *r = (const struct proto_wire_range *)(w + 1);
	uint32_t n = get_le32(w->nranges);
	uint64_t want = sizeof(*w) + (uint64_t)n * sizeof(*r), prev_end = 0;

	if (n > PROTO_STALE_MAX_RANGES)
		return err_setf(err, -EPROTO,
				"%s record: %u ranges, at most %u",
				proto_type_name(h->type), n,
				PROTO_STALE_MAX_RANGES);
	if (h->body_len != want)
		return err_setf(err, -EPROTO,
				"%s record: body_len %u does not match %u ranges (expected %llu)",
				proto_type_name(h->type), h->body_len, n, (unsigned long long)want);
	/* Sorted and disjoint keeps the encoding canonical and the cost of
	 * applying it bounded by npages, whatever the peer sends. */
	for (uint32_t i = 0; i < n; i++) {
		uint64_t start = get_le64(r[i].start), count = get_le64(r[i].count);

		if (count == 0)
			return err_setf(err, -EPROTO,
					"%s record: range %u at pfn %llu is empty",
					proto_type_name(h->type), i, (unsigned long long)start);
		if (start >= npages || count > npages - start)
			return err_setf(err, -ERANGE,
					"%s record: range %u (pfn %llu, %llu pages) crosses the end of the guest (%llu pages)",
					proto_type_name(h->type), i, (unsigned long long)start,
					(unsigned long long)count,
					(unsigned long long)npages);
		if (i && start < prev_end)
			return err_setf(err, -EPROTO,
					"%s record: range %u at pfn %llu overlaps or precedes the one before",
					proto_type_name(h->type), i, (unsigned long long)start);
		prev_end = start + count;
	}
	for (uint32_t i = 0; i < n; i++)
		bitmap_set_range(stale, get_le64(r[i].start),
				 get_le64(r[i].start) + get_le64(r[i].count));
	return 0;
}

static int stale_bitmap(const struct proto_hdr *h, const uint8_t *body,
			uint64_t npages, uint64_t *stale, char *err)
{
	const struct proto_wire_stale_bitmap *w =
		(const struct proto_wire_stale_bitmap *)body;
	const uint8_t *bits = (const uint8_t *)(w + 1);
	uint64_t first, nbits, words, want, last;
	uint32_t pad;

	if (h->body_len < sizeof(*w))
		return err_setf(err, -EPROTO,
				"%s record: bitmap body_len %u below the minimum %zu",
				proto_type_name(h->type), h->body_len, sizeof(*w));
	pad = get_le32(w->pad);
	first = get_le64(w->first_pfn);
	nbits = get_le64(w->nbits);
	if (pad)
		return err_setf(err, -EPROTO,
				"%s record: pad is 0x%08x, must be 0",
				proto_type_name(h->type), pad);
	if (nbits == 0 || nbits > PROTO_STALE_SEG_BITS)
		return err_setf(err, -EPROTO,
				"%s record: bitmap of %llu bits, must be 1..%u",
				proto_type_name(h->type), (unsigned long long)nbits, PROTO_STALE_SEG_BITS);
	if (first % 64)
		return err_setf(err, -EPROTO,
				"%s record: bitmap starts at pfn %llu, not a multiple of 64",
				proto_type_name(h->type), (unsigned long long)first);
	if (first >= npages || nbits > npages - first)
		return err_setf(err, -ERANGE,
				"%s record: bitmap pfn %llu + %llu bits crosses the end of the guest (%llu pages)",
				proto_type_name(h->type), (unsigned long long)first,
				(unsigned long long)nbits,
				(unsigned long long)npages);
	words = BITMAP_WORDS(nbits);
	want = sizeof(*w) + 8 * words;
	if (h->body_len != want)
		return err_setf(err, -EPROTO,
				"%s record: body_len %u does not match %llu bits (expected %llu)",
				proto_type_name(h->type), h->body_len, (unsigned long long)nbits,
				(unsigned long long)want);
	last = get_le64(bits + 8 * (words - 1));
	if (nbits % 64 && last >> (nbits % 64))
		return err_setf(err, -EPROTO,
				"%s record: bits set past the segment's %llu bits",
				proto_type_name(h->type), (unsigned long long)nbits);
	for (uint64_t k = 0; k < words; k++)
		stale[first / 64 + k] |= get_le64(bits + 8 * k);
	return 0;
}

int proto_stale_decode(const struct proto_hdr *h, const void *body,
		       const struct hmig_guest_geometry *geo,
		       uint64_t *stale, char *err)
{
	const struct proto_wire_stale *w = body;
	uint32_t kind;
	int rc = expect(h, h->type == PROTO_DIRTY || h->type == PROTO_MISSING ? h->type : PROTO_STALE,
			err);

	if (rc)
		return rc;
	kind = get_le32(w->kind);
	switch (kind) {
	case PROTO_STALE_RANGES:
		return stale_ranges(h, body, geo->npages, stale, err);
	case PROTO_STALE_BITMAP:
		return stale_bitmap(h, body, geo->npages, stale, err);
	}
	return err_setf(err, -EPROTO,
			"%s record: unknown encoding %u (1 ranges, 2 bitmap)",
				proto_type_name(h->type), kind);
}

/* --------------------------------------------------------- VCPU_STATE */

int proto_vcpu_encode(void *buf, size_t len,
		      const struct hmig_guest_geometry *geo, size_t blob_len,
		      uint32_t flags, char *err)
{
	uint64_t max = vcpu_max(geo);
	int rc = room(len, PROTO_HDR_LEN, PROTO_VCPU_STATE, err);

	if (rc)
		return rc;
	if (blob_len == 0 || blob_len > max)
		return err_setf(err, -EMSGSIZE,
				"VCPU_STATE record: %zu bytes of vCPU state, the protocol allows 1..%llu for this guest",
				blob_len, (unsigned long long)max);
	proto_hdr_encode(buf, PROTO_VCPU_STATE, flags & PROTO_FLAG_POSTCOPY, (uint32_t)blob_len);
	return PROTO_HDR_LEN;
}

int proto_vcpu_decode(const struct proto_hdr *h, const void *body,
		      const void **blob, size_t *len, char *err)
{
	int rc = expect(h, PROTO_VCPU_STATE, err);

	if (rc)
		return rc;
	*blob = body;
	*len = h->body_len;
	return 0;
}

/* ------------------------------------------------------ RESUMED, DONE */

int proto_resumed_encode(void *buf, size_t len, const struct proto_resumed *r,
			 char *err)
{
	struct proto_wire_resumed *w;
	int rc = room(len, PROTO_HDR_LEN + sizeof(*w), PROTO_RESUMED, err);

	if (rc)
		return rc;
	proto_hdr_encode(buf, PROTO_RESUMED, 0, sizeof(*w));
	w = (struct proto_wire_resumed *)((uint8_t *)buf + PROTO_HDR_LEN);
	put_le64(w->downtime_ns, r->downtime_ns);
	put_le64(w->resume_wall_ns, r->resume_wall_ns);
	return PROTO_HDR_LEN + sizeof(*w);
}

int proto_resumed_decode(const struct proto_hdr *h, const void *body,
			 struct proto_resumed *out, char *err)
{
	const struct proto_wire_resumed *w = body;
	int rc = expect_fixed(h, PROTO_RESUMED, sizeof(*w), err);

	if (rc)
		return rc;
	out->downtime_ns = get_le64(w->downtime_ns);
	out->resume_wall_ns = get_le64(w->resume_wall_ns);
	return 0;
}

int proto_token_encode(void *buf, size_t len, uint32_t type, uint64_t token, char *err)
{
	struct proto_wire_sync *w;
	int rc = room(len, PROTO_HDR_LEN + sizeof(*w), type, err);

	if (rc)
		return rc;
	proto_hdr_encode(buf, type, 0, sizeof(*w));
	w = (struct proto_wire_sync *)((uint8_t *)buf + PROTO_HDR_LEN);
	put_le64(w->token, token);
	return PROTO_HDR_LEN + sizeof(*w);
}

int proto_sync_encode(void *buf, size_t len, uint64_t token, char *err)
{
	return proto_token_encode(buf, len, PROTO_SYNC, token, err);
}

int proto_token_decode(const struct proto_hdr *h, const void *body, uint64_t *token,
		       char *err)
{
	const struct proto_wire_sync *w = body;
	uint32_t type = h->type == PROTO_LOADED || h->type == PROTO_COMMIT ? h->type : PROTO_SYNC;
	int rc = expect_fixed(h, type, sizeof(*w), err);

	if (rc)
		return rc;
	*token = get_le64(w->token);
	return 0;
}

int proto_sync_decode(const struct proto_hdr *h, const void *body, uint64_t *token,
		      char *err)
{
	int rc = expect_fixed(h, PROTO_SYNC, sizeof(struct proto_wire_sync), err);

	return rc ? rc : proto_token_decode(h, body, token, err);
}

int proto_recover_encode(void *buf, size_t len, const struct proto_recover *r, char *err)
{
	struct proto_wire_recover *w;
	int rc = room(len, PROTO_HDR_LEN + sizeof(*w), PROTO_RECOVER, err);

	if (rc)
		return rc;
	proto_hdr_encode(buf, PROTO_RECOVER, 0, sizeof(*w));
	w = (struct proto_wire_recover *)((uint8_t *)buf + PROTO_HDR_LEN);
	put_le64(w->session_id, r->session_id);
	put_le32(w->flags, r->flags);
	put_le32(w->state, r->state);
	return PROTO_HDR_LEN + sizeof(*w);
}

int proto_recover_decode(const struct proto_hdr *h, const void *body, struct proto_recover *out,
			 char *err)
{
	const struct proto_wire_recover *w = body;
	int rc = expect_fixed(h, PROTO_RECOVER, sizeof(*w), err);

	if (rc)
		return rc;
	out->session_id = get_le64(w->session_id);
	out->flags = get_le32(w->flags);
	out->state = get_le32(w->state);
	if (out->flags & ~PROTO_RECOVER_COMMITTED)
		return err_setf(err, -EPROTO, "RECOVER record: unknown flags 0x%x", out->flags);
	if (out->state > PROTO_RECOVER_COMPLETE)
		return err_setf(err, -EPROTO, "RECOVER record: unknown state %u", out->state);
	return 0;
}

int proto_done_encode(void *buf, size_t len, const struct proto_done *d,
		      char *err)
{
	struct proto_wire_done *w;
	int rc = room(len, PROTO_HDR_LEN + sizeof(*w), PROTO_DONE, err);

	if (rc)
		return rc;
	proto_hdr_encode(buf, PROTO_DONE, 0, sizeof(*w));
	w = (struct proto_wire_done *)((uint8_t *)buf + PROTO_HDR_LEN);
	put_le64(w->pages, d->pages);
	put_le64(w->bytes, d->bytes);
	put_le64(w->requests, d->requests);
	return PROTO_HDR_LEN + sizeof(*w);
}

int proto_done_decode(const struct proto_hdr *h, const void *body,
		      struct proto_done *out, char *err)
{
	const struct proto_wire_done *w = body;
	int rc = expect_fixed(h, PROTO_DONE, sizeof(*w), err);

	if (rc)
		return rc;
	out->pages = get_le64(w->pages);
	out->bytes = get_le64(w->bytes);
	out->requests = get_le64(w->requests);
	return 0;
}

/* -------------------------------------------------------------- ERROR */

/* Control characters would let a peer rewrite the operator's terminal line
 * when the text is printed; tab is the one worth keeping. */
static bool is_control(uint8_t c)
{
	return (c < 0x20 && c != '\t') || c == 0x7f;
}

/* ERROR and VERDICT: a code and a line of text, cleaned (control
 * characters and bytes that are not UTF-8 become '?') and cut at
 * PROTO_ERROR_TEXT_MAX bytes on a character boundary. */
static int coded_text_encode(void *buf, size_t len, uint32_t type, uint32_t code,
			     const char *text, char *err)
{
	const uint8_t *s = (const uint8_t *)text;
	size_t n = strlen(text), in = 0, out = 0;
	struct proto_wire_error *w;
	uint8_t *dst;
	int rc;

	rc = room(len, PROTO_HDR_LEN + sizeof(*w) +
		  (n < PROTO_ERROR_TEXT_MAX ? n : PROTO_ERROR_TEXT_MAX),
		  type, err);
	if (rc)
		return rc;
	w = (struct proto_wire_error *)((uint8_t *)buf + PROTO_HDR_LEN);
	dst = (uint8_t *)(w + 1);
	while (in < n) {
		size_t l = utf8_len(s + in, n - in);

		if (l == 0 || (l == 1 && is_control(s[in]))) {
			if (out + 1 > PROTO_ERROR_TEXT_MAX)
				break;
			dst[out++] = '?';
			in++;
			continue;
		}
		if (out + l > PROTO_ERROR_TEXT_MAX)
			break;
		memcpy(dst + out, s + in, l);
		out += l;
		in += l;
	}
	put_le32(w->code, code);
	put_le32(w->text_len, (uint32_t)out);
	proto_hdr_encode(buf, type, 0, (uint32_t)(sizeof(*w) + out));
	return (int)(PROTO_HDR_LEN + sizeof(*w) + out);
}

int proto_err_encode(void *buf, size_t len, int code, const char *text,
		     char *err)
{
	if (code <= 0 || (unsigned)code > MAX_ERRNO_CODE)
		return err_setf(err, -EINVAL,
				"ERROR record: code %d is not a positive errno (caller bug: pass -rc)",
				code);
	return coded_text_encode(buf, len, PROTO_ERROR, (uint32_t)code, text, err);
}

int proto_verdict_encode(void *buf, size_t len, uint32_t verdict, const char *text, char *err)
{
	if (verdict > PROTO_VERDICT_SKIPPED)
		return err_setf(err, -EINVAL, "VERDICT record: verdict %u (caller bug)", verdict);
	return coded_text_encode(buf, len, PROTO_VERDICT, verdict, text, err);
}

static int coded_text_decode(const struct proto_hdr *h, const void *body, uint32_t type,
			     uint32_t code_min, uint32_t code_max, struct proto_error *out,
			     char *err)
{
	const struct proto_wire_error *w = body;
	const uint8_t *text = (const uint8_t *)(w + 1);
	const char *name = proto_type_name(type);
	uint32_t code, n;
	int rc = expect(h, type, err);

	if (rc)
		return rc;
	code = get_le32(w->code);
	n = get_le32(w->text_len);
	if (n > PROTO_ERROR_TEXT_MAX)
		return err_setf(err, -EMSGSIZE,
				"%s record: text of %u bytes, at most %u",
				name, n, PROTO_ERROR_TEXT_MAX);
	if (h->body_len != sizeof(*w) + n)
		return err_setf(err, -EPROTO,
				"%s record: body_len %u does not match text length %u",
				name, h->body_len, n);
	if (code < code_min || code > code_max)
		return err_setf(err, -EPROTO, "%s record: code %u is not %s", name, code,
				type == PROTO_ERROR ? "an errno" : "a verdict (0 ok, 1 mismatch, 2 skipped)");
	for (uint32_t i = 0; i < n;) {
		size_t l = utf8_len(text + i, n - i);

		if (l == 0 || (l == 1 && is_control(text[i])))
			return err_setf(err, -EPROTO,
					"%s record (peer %s %u): text byte %u is not printable UTF-8",
					name, type == PROTO_ERROR ? "errno" : "verdict", code, i);
		i += (uint32_t)l;
	}
	out->code = code;
	out->text_len = n;
	out->text = (const char *)text;
	return 0;
}

int proto_err_decode(const struct proto_hdr *h, const void *body,
		     struct proto_error *out, char *err)
{
	return coded_text_decode(h, body, PROTO_ERROR, 1, MAX_ERRNO_CODE, out, err);
}

int proto_verdict_decode(const struct proto_hdr *h, const void *body, struct proto_error *out,
			 char *err)
{
	return coded_text_decode(h, body, PROTO_VERDICT, PROTO_VERDICT_OK, PROTO_VERDICT_SKIPPED,
				 out, err);
}
