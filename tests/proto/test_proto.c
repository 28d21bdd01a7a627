/* Wire-format tests: a round trip for every record, then a table of malformed
 * records, each built from a valid one by patching bytes at the offsets
 * docs/protocol.md gives, so the table also pins the documented layout.
 */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>
#include <criterion/parameterized.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/bitmap.h"
#include "common/err.h"
#include "common/crc32c.h"
#include "proto/proto.h"

/* 1000 pages: not a multiple of 64, so the last bitmap word is partial.
 * The vCPU state limit is what the synth backend declares for 4 vCPUs. */
static const struct hmig_guest_geometry G = {
	.npages = 1000, .page_size = 4096, .nvcpus = 4,
	.vcpu_state_max = (1u << 20) + 4 * 4096,
};

#define REC_MAX (64 * 1024)

/* Offsets inside an encoded record: header fields, then the body at B. */
#define H_TYPE 0
#define H_FLAGS 4
#define H_LEN 8
#define H_RES 12
#define B 16

/* Header decode, then the type's decoder, as the engine will run them. */
static int decode_any(const uint8_t *buf, size_t len,
		      const struct hmig_guest_geometry *geo, char *err)
{
	struct proto_hdr h;
	const uint8_t *body = buf + PROTO_HDR_LEN;
	int rc = proto_hdr_decode(buf, len, geo, &h, err);

	if (rc || h.skip)
		return rc;
	switch (h.type) {
	case PROTO_HELLO: {
		struct proto_hello hello;

		return proto_hello_decode(&h, body, &hello, err);
	}
	case PROTO_PAGES:
	case PROTO_ZERO:
	case PROTO_REQUEST: {
		struct proto_pages p;

		return proto_pages_decode(&h, body, geo, &p, err);
	}
	case PROTO_PASS_END: {
		struct proto_pass_end pe;

		return proto_pass_end_decode(&h, body, geo, &pe, err);
	}
	case PROTO_STALE: {
		uint64_t *bm = bitmap_new(geo->npages);

		rc = proto_stale_decode(&h, body, geo, bm, err);
		free(bm);
		return rc;
	}
	case PROTO_VCPU_STATE: {
		const void *blob;
		size_t n;

		return proto_vcpu_decode(&h, body, &blob, &n, err);
	}
	case PROTO_RESUMED: {
		struct proto_resumed r;

		return proto_resumed_decode(&h, body, &r, err);
	}
	case PROTO_DONE: {
		struct proto_done d;

		return proto_done_decode(&h, body, &d, err);
	}
	case PROTO_ERROR: {
		struct proto_error e;

		return proto_err_decode(&h, body, &e, err);
	}
	}
	cr_fail("proto_hdr_decode accepted unhandled type %u", h.type);
	return 0;
}

/* ------------------------------------------------------- valid records */

enum base {
	BASE_HELLO, BASE_PAGES, BASE_ZERO, BASE_REQUEST, BASE_PASS_END,
	BASE_STALE_RANGES, BASE_STALE_BITMAP, BASE_VCPU, BASE_RESUMED,
	BASE_DONE, BASE_ERROR,
};

static const struct proto_hello HELLO = {
	.mode = HMIG_MODE_HYBRID, .caps = PROTO_CAP_POSTCOPY,
	.session_id = 0x1122334455667788ull, .geo = { 1000, 4096, 4 },
	.backend = "synth",
};

static const uint64_t PAGES_PFNS[] = { 1, 2 };
static const uint64_t ZERO_PFNS[] = { 10, 20, 30 };
static const uint64_t REQUEST_PFNS[] = { 7, 2, 9 }; /* unsorted on purpose */

/* Builds the valid record `which` into buf; returns its length. */
static size_t build(enum base which, uint8_t *buf)
{
	char err[ERR_LEN] = "";
	uint64_t *bm = bitmap_new(G.npages), pos = 0;
	int n = -1;

	switch (which) {
	case BASE_HELLO:
		n = proto_hello_encode(buf, REC_MAX, &HELLO, err);
		break;
	case BASE_PAGES:
		n = proto_pages_encode(buf, REC_MAX, &G, PAGES_PFNS, 2, err);
		memset(buf + n, 0xab, 2 * 4096);
		n += 2 * 4096;
		break;
	case BASE_ZERO:
		n = proto_zero_encode(buf, REC_MAX, &G, ZERO_PFNS, 3, err);
		break;
	case BASE_REQUEST:
		n = proto_request_encode(buf, REC_MAX, &G, REQUEST_PFNS, 3, err);
		break;
	case BASE_PASS_END:
		n = proto_pass_end_encode(buf, REC_MAX,
			&(struct proto_pass_end){ 3, 100, 50 }, err);
		break;
	case BASE_STALE_RANGES: /* two runs: [5, 10) and [100, 101) */
		bitmap_set_range(bm, 5, 10);
		bitmap_set(bm, 100);
		n = proto_stale_encode(buf, REC_MAX, &G, bm, &pos, err);
		break;
	case BASE_STALE_BITMAP: /* every other page: 500 runs, bitmap wins */
		for (uint64_t i = 0; i < G.npages; i += 2)
			bitmap_set(bm, i);
		n = proto_stale_encode(buf, REC_MAX, &G, bm, &pos, err);
		break;
	case BASE_VCPU:
		n = proto_vcpu_encode(buf, REC_MAX, &G, 100, 0, err);
		memset(buf + n, 0x5a, 100);
		n += 100;
		break;
	case BASE_RESUMED:
		n = proto_resumed_encode(buf, REC_MAX,
			&(struct proto_resumed){ 1234567, 42 }, err);
		break;
	case BASE_DONE:
		n = proto_done_encode(buf, REC_MAX,
			&(struct proto_done){ 1000, 4u << 20, 17 }, err);
		break;
	case BASE_ERROR:
		n = proto_err_encode(buf, REC_MAX, EIO, "disk on fire", err);
		break;
	}
	free(bm);
	cr_assert(gt(int, n, 0), "building base %d: %s", which, err);
	return (size_t)n;
}

Test(proto, every_base_record_is_valid)
{
	uint8_t *buf = calloc(1, REC_MAX);

	for (int b = BASE_HELLO; b <= BASE_ERROR; b++) {
		char err[ERR_LEN] = "";
		size_t len = build(b, buf);
		int rc = decode_any(buf, len, b == BASE_HELLO ? NULL : &G, err);

		cr_assert(eq(int, rc, 0), "base %d: %s", b, err);
	}
	free(buf);
}

/* ---------------------------------------------------------- round trips */

Test(proto, header_layout)
{
	uint8_t buf[PROTO_HDR_LEN];
	static const uint8_t want[PROTO_HDR_LEN] = {
		4, 3, 2, 1, 8, 7, 6, 5, 0xc, 0xb, 0xa, 9, 0, 0, 0, 0,
	};

	proto_hdr_encode(buf, 0x01020304, 0x05060708, 0x090a0b0c);
	cr_assert(eq(int, memcmp(buf, want, sizeof(want)), 0), "little-endian, reserved 0");
}

Test(proto, hello_round_trip)
{
	uint8_t buf[128];
	struct proto_hdr h;
	struct proto_hello out;
	char err[ERR_LEN] = "";
	size_t len = build(BASE_HELLO, buf);

	cr_assert(eq(sz, len, PROTO_HDR_LEN + PROTO_HELLO_LEN));
	cr_assert(eq(u64, get_le64(buf + B + 32), 1000), "npages at body offset 32");
	cr_assert(eq(u32, get_le32(buf + B + 40), 4096), "page_size at body offset 40");
	cr_assert(eq(int, proto_hdr_decode(buf, len, NULL, &h, err), 0), "%s", err);
	cr_assert(eq(int, proto_hello_decode(&h, buf + B, &out, err), 0), "%s", err);
	cr_assert(eq(u32, out.mode, HELLO.mode));
	cr_assert(eq(u64, out.caps, HELLO.caps));
	cr_assert(eq(u64, out.session_id, HELLO.session_id));
	cr_assert(eq(u64, out.geo.npages, 1000));
	cr_assert(eq(u32, out.geo.page_size, 4096));
	cr_assert(eq(u32, out.geo.nvcpus, 4));
	cr_assert(eq(str, out.backend, "synth"));
	cr_assert(eq(int, proto_hello_match(&HELLO, &out, err), 0), "%s", err);
}

Test(proto, hello_match_names_the_difference)
{
	struct proto_hello peer = HELLO;
	char err[ERR_LEN] = "";

	peer.geo.npages = 999;
	cr_assert(eq(int, proto_hello_match(&HELLO, &peer, err), -EPROTO));
	cr_assert(ne(ptr, strstr(err, "999 pages"), NULL), "%s", err);
	peer = HELLO;
	peer.session_id++;
	cr_assert(eq(int, proto_hello_match(&HELLO, &peer, err), -EPROTO));
	cr_assert(ne(ptr, strstr(err, "session"), NULL), "%s", err);
}

Test(proto, hello_encode_refuses_bad_geometry)
{
	uint8_t buf[128];
	struct proto_hello bad = HELLO;
	char err[ERR_LEN] = "";

	bad.geo.page_size = 3000;
	cr_assert(eq(int, proto_hello_encode(buf, sizeof(buf), &bad, err), -EINVAL));
	cr_assert(ne(ptr, strstr(err, "page size 3000"), NULL), "%s", err);
}

Test(proto, pages_round_trip_prefix_and_data)
{
	/* Out of order, so the decoder takes its sort-and-compare path. */
	const uint64_t pfns[] = { 999, 0, 500 };
	uint8_t *buf = calloc(1, REC_MAX);
	struct proto_hdr h;
	struct proto_pages p;
	char err[ERR_LEN] = "";
	int n = proto_pages_encode(buf, REC_MAX, &G, pfns, 3, err);

	cr_assert(eq(int, n, PROTO_HDR_LEN + 8 + 3 * 8), "prefix only: %s", err);
	cr_assert(eq(u32, get_le32(buf + H_LEN), 8 + 3 * (8 + 4096)),
		  "body_len covers the data that follows");
	for (int i = 0; i < 3; i++)
		memset(buf + n + i * 4096, 'a' + i, 4096);
	cr_assert(eq(int, proto_hdr_decode(buf, PROTO_HDR_LEN, &G, &h, err), 0), "%s", err);
	cr_assert(eq(int, proto_pages_decode(&h, buf + B, &G, &p, err), 0), "%s", err);
	cr_assert(eq(u32, p.count, 3));
	for (uint32_t i = 0; i < 3; i++) {
		cr_assert(eq(u64, proto_pages_pfn(&p, i), pfns[i]));
		cr_assert(eq(u8, p.data[i * 4096], 'a' + i));
		cr_assert(eq(u8, p.data[i * 4096 + 4095], 'a' + i));
	}
	free(buf);
}

/* A plaintext stream's PAGES: a CRC32C per page after the pfns, checked by
 * the decoder; one flipped bit in any page's data names that page's pfn. */
static int pages_crc_record(uint8_t *buf, const uint64_t *pfns, uint32_t n)
{
	uint32_t crcs[3];
	char err[ERR_LEN] = "";

	for (uint32_t i = 0; i < n; i++) {
		memset(buf + 2048 + i * 4096, 'k' + (int)i, 4096);
		crcs[i] = crc32c(buf + 2048 + i * 4096, 4096);
	}
	int len = proto_pages_encode_crc(buf, REC_MAX, &G, pfns, crcs, n, err);
	cr_assert(eq(int, len, PROTO_HDR_LEN + 8 + 12 * (int)n), "%s", err);
	memmove(buf + len, buf + 2048, n * 4096);
	return len;
}

Test(proto, pages_with_crc32c_round_trip)
{
	const uint64_t pfns[] = { 7, 3, 900 };
	uint8_t *buf = calloc(1, REC_MAX);
	struct proto_hdr h;
	struct proto_pages p;
	char err[ERR_LEN] = "";
	int n = pages_crc_record(buf, pfns, 3);

	cr_assert(eq(u32, get_le32(buf + H_FLAGS), PROTO_FLAG_CRC32C));
	cr_assert(eq(u32, get_le32(buf + H_LEN), 8 + 3 * (12 + 4096)));
	cr_assert(eq(int, proto_hdr_decode(buf, PROTO_HDR_LEN, &G, &h, err), 0), "%s", err);
	cr_assert(eq(int, proto_pages_decode(&h, buf + B, &G, &p, err), 0), "%s", err);
	cr_assert(eq(ptr, (void *)p.data, buf + n));
	cr_assert(eq(u32, get_le32(p.crcs + 4), crc32c(buf + n + 4096, 4096)));
	for (uint32_t i = 0; i < 3; i++)
		cr_assert(eq(u8, p.data[i * 4096 + 17], 'k' + i));
	free(buf);
}

Test(proto, pages_crc32c_mismatch_names_the_pfn)
{
	const uint64_t pfns[] = { 7, 3, 900 };
	uint8_t *buf = calloc(1, REC_MAX);
	struct proto_hdr h;
	struct proto_pages p;
	char err[ERR_LEN] = "";

	for (uint32_t page = 0; page < 3; page++) {
		int n = pages_crc_record(buf, pfns, 3);
		char want[64];

		buf[n + page * 4096 + 1234] ^= 0x10;
		cr_assert(eq(int, proto_hdr_decode(buf, PROTO_HDR_LEN, &G, &h, err), 0), "%s", err);
		cr_assert(eq(int, proto_pages_decode(&h, buf + B, &G, &p, err), -EBADMSG));
		snprintf(want, sizeof(want), "pfn %llu fail their CRC32C",
			 (unsigned long long)pfns[page]);
		cr_assert(ne(ptr, strstr(err, want), NULL), "%s", err);
	}
	/* A CRC itself damaged is a mismatch too. */
	int n = pages_crc_record(buf, pfns, 3);
	buf[n - 1] ^= 1;
	cr_assert(eq(int, proto_hdr_decode(buf, PROTO_HDR_LEN, &G, &h, err), 0), "%s", err);
	cr_assert(eq(int, proto_pages_decode(&h, buf + B, &G, &p, err), -EBADMSG));
	cr_assert(ne(ptr, strstr(err, "pfn 900"), NULL), "%s", err);
	free(buf);
}

Test(proto, crc32c_flag_only_on_pages_and_length_must_match)
{
	const uint64_t pfns[] = { 1, 2 };
	uint8_t *buf = calloc(1, REC_MAX);
	struct proto_hdr h;
	struct proto_pages p;
	char err[ERR_LEN] = "";

	pages_crc_record(buf, pfns, 2);
	/* the flag without room for the CRCs: the count disagrees */
	put_le32(buf + H_LEN, 8 + 2 * (8 + 4096));
	cr_assert(eq(int, proto_hdr_decode(buf, PROTO_HDR_LEN, &G, &h, err), 0), "%s", err);
	cr_assert(eq(int, proto_pages_decode(&h, buf + B, &G, &p, err), -EPROTO));
	cr_assert(ne(ptr, strstr(err, "does not match count 2"), NULL), "%s", err);
	int n = proto_zero_encode(buf, REC_MAX, &G, pfns, 2, err);
	cr_assert(gt(int, n, 0));
	put_le32(buf + H_FLAGS, PROTO_FLAG_CRC32C);
	cr_assert(eq(int, proto_hdr_decode(buf, PROTO_HDR_LEN, &G, &h, err), -EPROTO));
	cr_assert(ne(ptr, strstr(err, "unknown flags"), NULL), "%s", err);
	free(buf);
}

static void pfn_list_round_trip(uint32_t type, const uint64_t *pfns, uint32_t count)
{
	uint8_t *buf = calloc(1, REC_MAX);
	struct proto_hdr h;
	struct proto_pages p;
	char err[ERR_LEN] = "";
	int n = type == PROTO_ZERO ?
		proto_zero_encode(buf, REC_MAX, &G, pfns, count, err) :
		proto_request_encode(buf, REC_MAX, &G, pfns, count, err);

	cr_assert(eq(int, n, PROTO_HDR_LEN + 8 + 8 * (int)count), "%s", err);
	cr_assert(eq(int, proto_hdr_decode(buf, n, &G, &h, err), 0), "%s", err);
	cr_assert(eq(u32, h.type, type));
	cr_assert(eq(int, proto_pages_decode(&h, buf + B, &G, &p, err), 0), "%s", err);
	cr_assert(eq(u32, p.count, count));
	cr_assert(eq(ptr, (void *)p.data, NULL));
	for (uint32_t i = 0; i < count; i++)
		cr_assert(eq(u64, proto_pages_pfn(&p, i), pfns[i]));
	free(buf);
}

Test(proto, zero_and_request_round_trip)
{
	pfn_list_round_trip(PROTO_ZERO, ZERO_PFNS, 3);
	pfn_list_round_trip(PROTO_REQUEST, REQUEST_PFNS, 3);
}

Test(proto, full_batches_fit_their_limits)
{
	struct hmig_guest_geometry big = { 1u << 20, 4096, 4 };
	struct hmig_guest_geometry huge = { 1u << 20, 2u << 20, 4 };
	uint64_t pfns[PROTO_MAX_BATCH];
	uint8_t *buf = calloc(1, REC_MAX);
	struct proto_hdr h;
	struct proto_pages p;
	char err[ERR_LEN] = "";

	/* Descending: the worst case for the duplicate check. */
	for (uint32_t i = 0; i < PROTO_MAX_BATCH; i++)
		pfns[i] = big.npages - 1 - 3 * i;
	cr_assert(gt(int, proto_request_encode(buf, REC_MAX, &big, pfns,
					       PROTO_MAX_BATCH, err), 0), "%s", err);
	cr_assert(eq(int, proto_hdr_decode(buf, PROTO_HDR_LEN, &big, &h, err), 0), "%s", err);
	cr_assert(eq(int, proto_pages_decode(&h, buf + B, &big, &p, err), 0), "%s", err);
	cr_assert(eq(u32, p.count, PROTO_MAX_BATCH));

	cr_assert(eq(u32, proto_pages_max_count(&big), PROTO_MAX_BATCH));
	cr_assert(eq(u32, proto_pages_max_count(&huge), 31), "31 x 2 MiB fit in 64 MiB");
	cr_assert(le(u32, proto_body_max(PROTO_PAGES, &huge), PROTO_MAX_BODY));
	cr_assert(eq(u32, proto_body_max(PROTO_PAGES, &big), 8 + 1024 * (12 + 4096)));
	cr_assert(eq(int, proto_pages_encode(buf, REC_MAX, &huge, pfns, 32, err), -EINVAL));
	cr_assert(eq(u32, proto_body_max(PROTO_PAGES, NULL), 0), "no limit before HELLO");
	free(buf);
}

Test(proto, fixed_records_round_trip)
{
	uint8_t buf[128];
	struct proto_hdr h;
	struct proto_pass_end pe;
	struct proto_resumed r;
	struct proto_done d;
	char err[ERR_LEN] = "";

	build(BASE_PASS_END, buf);
	cr_assert(eq(int, proto_hdr_decode(buf, PROTO_HDR_LEN, &G, &h, err), 0), "%s", err);
	cr_assert(eq(int, proto_pass_end_decode(&h, buf + B, &G, &pe, err), 0), "%s", err);
	cr_assert(eq(u64, pe.pass, 3));
	cr_assert(eq(u64, pe.pages_sent, 100));
	cr_assert(eq(u64, pe.pages_dirty, 50));

	build(BASE_RESUMED, buf);
	cr_assert(eq(int, proto_hdr_decode(buf, PROTO_HDR_LEN, &G, &h, err), 0), "%s", err);
	cr_assert(eq(int, proto_resumed_decode(&h, buf + B, &r, err), 0), "%s", err);
	cr_assert(eq(u64, r.downtime_ns, 1234567));
	cr_assert(eq(u64, r.resume_wall_ns, 42));

	build(BASE_DONE, buf);
	cr_assert(eq(int, proto_hdr_decode(buf, PROTO_HDR_LEN, &G, &h, err), 0), "%s", err);
	cr_assert(eq(int, proto_done_decode(&h, buf + B, &d, err), 0), "%s", err);
	cr_assert(eq(u64, d.pages, 1000));
	cr_assert(eq(u64, d.bytes, 4u << 20));
	cr_assert(eq(u64, d.requests, 17));

	/* A decoder handed another type's record is a caller bug. */
	cr_assert(eq(int, proto_resumed_decode(&h, buf + B, &r, err), -EINVAL));
	cr_assert(ne(ptr, strstr(err, "DONE"), NULL), "%s", err);
}

Test(proto, vcpu_state_round_trip)
{
	uint8_t buf[256];
	struct proto_hdr h;
	const void *blob;
	size_t n;
	char err[ERR_LEN] = "";

	build(BASE_VCPU, buf);
	cr_assert(eq(int, proto_hdr_decode(buf, PROTO_HDR_LEN, &G, &h, err), 0), "%s", err);
	cr_assert(eq(int, proto_vcpu_decode(&h, buf + B, &blob, &n, err), 0), "%s", err);
	cr_assert(eq(sz, n, 100));
	cr_assert(eq(ptr, (void *)blob, buf + B));
	cr_assert(eq(u32, proto_body_max(PROTO_VCPU_STATE, &G),
		     (1u << 20) + 4 * 4096));
	cr_assert(eq(int, proto_vcpu_encode(buf, sizeof(buf), &G,
					    (1u << 20) + 4 * 4096 + 1, 0, err),
		     -EMSGSIZE));
}

/* VCPU_STATE's limit is the backend's declaration, on both sides, and the
 * protocol's 64 MiB cap still holds over a backend that declares more. */
Test(proto, vcpu_state_limit_is_the_backends)
{
	uint8_t buf[256];
	struct hmig_guest_geometry small = G, greedy = G;
	struct proto_hdr h;
	char err[ERR_LEN] = "";

	small.vcpu_state_max = 300;
	greedy.vcpu_state_max = UINT32_MAX;
	cr_assert(eq(u32, proto_body_max(PROTO_VCPU_STATE, &small), 300));
	cr_assert(eq(int, proto_vcpu_encode(buf, sizeof(buf), &small, 300, 0, err), PROTO_HDR_LEN),
		  "%s", err);
	cr_assert(eq(int, proto_vcpu_encode(buf, sizeof(buf), &small, 301, 0, err), -EMSGSIZE));
	cr_assert(ne(ptr, strstr(err, "1..300"), NULL), "%s", err);
	proto_hdr_encode(buf, PROTO_VCPU_STATE, 0, 301);
	cr_assert(eq(int, proto_hdr_decode(buf, PROTO_HDR_LEN, &small, &h, err), -EMSGSIZE));
	cr_assert(ne(ptr, strstr(err, "over the limit 300"), NULL), "%s", err);

	cr_assert(eq(u32, proto_body_max(PROTO_VCPU_STATE, &greedy), PROTO_MAX_BODY));
	proto_hdr_encode(buf, PROTO_VCPU_STATE, 0, PROTO_MAX_BODY);
	cr_assert(eq(int, proto_hdr_decode(buf, PROTO_HDR_LEN, &greedy, &h, err), 0), "%s", err);
	proto_hdr_encode(buf, PROTO_VCPU_STATE, 0, PROTO_MAX_BODY + 1);
	cr_assert(eq(int, proto_hdr_decode(buf, PROTO_HDR_LEN, &greedy, &h, err), -EMSGSIZE));
}

Test(proto, error_round_trip)
{
	uint8_t buf[2048];
	struct proto_hdr h;
	struct proto_error e;
	char err[ERR_LEN] = "";
	int n = proto_err_encode(buf, sizeof(buf), ENOSPC, "no space \xc3\xa9 here", err);

	cr_assert(eq(int, n, PROTO_HDR_LEN + 8 + 16), "%s", err);
	cr_assert(eq(int, proto_hdr_decode(buf, n, NULL, &h, err), 0),
		  "ERROR is accepted before HELLO: %s", err);
	cr_assert(eq(int, proto_err_decode(&h, buf + B, &e, err), 0), "%s", err);
	cr_assert(eq(u32, e.code, ENOSPC));
	cr_assert(eq(u32, e.text_len, 16));
	cr_assert(eq(int, memcmp(e.text, "no space \xc3\xa9 here", 16), 0));
	cr_assert(eq(int, proto_err_encode(buf, sizeof(buf), -EIO, "x", err), -EINVAL));
}

Test(proto, error_text_is_cut_and_cleaned_so_the_peer_accepts_it)
{
	char text[1200];
	uint8_t buf[2048];
	struct proto_hdr h;
	struct proto_error e;
	char err[ERR_LEN] = "";

	/* 1023 ASCII bytes then a 2-byte character: the cut must not split it. */
	memset(text, 'a', 1023);
	memcpy(text + 1023, "\xc3\xa9 tail", 8);
	cr_assert(gt(int, proto_err_encode(buf, sizeof(buf), EIO, text, err), 0), "%s", err);
	cr_assert(eq(u32, get_le32(buf + B + 4), 1023));
	cr_assert(eq(int, decode_any(buf, sizeof(buf), &G, err), 0), "%s", err);

	/* An escape sequence and a stray continuation byte become '?'. */
	proto_err_encode(buf, sizeof(buf), EIO, "a\x1b[2Jb\x80", err);
	cr_assert(eq(int, proto_hdr_decode(buf, PROTO_HDR_LEN, &G, &h, err), 0));
	cr_assert(eq(int, proto_err_decode(&h, buf + B, &e, err), 0), "%s", err);
	cr_assert(eq(int, memcmp(e.text, "a?[2Jb?", 7), 0));
}

/* --------------------------------------------------------------- STALE */

/* Encodes `set` as STALE records, decodes them into a fresh bitmap and checks
 * it equals `set`; returns how many records of each kind were sent. */
static void stale_round_trip(const struct hmig_guest_geometry *geo,
			     const uint64_t *set, int *nranges, int *nbitmaps)
{
	uint8_t *buf = malloc(PROTO_HDR_LEN + PROTO_STALE_MAX_BODY);
	uint64_t *got = bitmap_new(geo->npages), pos = 0;
	char err[ERR_LEN] = "";
	int records = 0;

	*nranges = *nbitmaps = 0;
	do {
		struct proto_hdr h;
		int n = proto_stale_encode(buf, PROTO_HDR_LEN + PROTO_STALE_MAX_BODY,
					   geo, set, &pos, err);

		cr_assert(gt(int, n, 0), "%s", err);
		cr_assert(eq(int, proto_hdr_decode(buf, n, geo, &h, err), 0), "%s", err);
		cr_assert(eq(sz, h.body_len + PROTO_HDR_LEN, (size_t)n));
		cr_assert(eq(int, !!(h.flags & PROTO_FLAG_LAST), pos == geo->npages),
			  "LAST exactly on the final record");
		cr_assert(eq(int, proto_stale_decode(&h, buf + B, geo, got, err), 0), "%s", err);
		if (get_le32(buf + B) == PROTO_STALE_RANGES)
			++*nranges;
		else
			++*nbitmaps;
		cr_assert(lt(int, ++records, 100), "encoder does not advance");
	} while (pos < geo->npages);
	cr_assert(eq(int, memcmp(got, set, BITMAP_WORDS(geo->npages) * 8), 0),
		  "decoded stale set differs");
	free(got);
	free(buf);
}

Test(proto, stale_round_trips_and_picks_the_smaller_encoding)
{
	/* Three segments, the last one partial and not a multiple of 64. */
	struct hmig_guest_geometry geo = { 2 * PROTO_STALE_SEG_BITS + 1013, 4096, 2 };
	uint64_t *set = bitmap_new(geo.npages);
	uint64_t rng = 88172645463325252ull;
	int r, b;

	stale_round_trip(&geo, set, &r, &b);
	cr_assert(eq(int, r + b, 1), "empty set: one empty LAST record");

	/* Sparse runs in segment 0, dense noise in segment 2, nothing in 1. */
	bitmap_set_range(set, 10, 5000);
	bitmap_set(set, 70000);
	for (uint64_t i = 2 * PROTO_STALE_SEG_BITS; i < geo.npages; i++) {
		rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
		if (rng & 1)
			bitmap_set(set, i);
	}
	stale_round_trip(&geo, set, &r, &b);
	cr_assert(eq(int, r, 1), "sparse segment as ranges");
	cr_assert(eq(int, b, 1), "noisy segment as a bitmap; the empty one skipped");

	/* Everything: one range per segment, bits up to the very last pfn. */
	bitmap_set_range(set, 0, geo.npages);
	stale_round_trip(&geo, set, &r, &b);
	cr_assert(eq(int, r, 3));
	cr_assert(eq(int, b, 0));
	free(set);
}

/* DIRTY uses STALE's encoding under its own type, and a guest of 8 GiB
 * (eight 1 GiB segments and a partial one) needs many records, every one
 * within the limit. */
Test(proto, dirty_round_trips_a_large_guest_in_many_records)
{
	struct hmig_guest_geometry geo = { (8ull << 30) / 4096 + 77, 4096, 2 };
	uint64_t *set = bitmap_new(geo.npages), *got = bitmap_new(geo.npages), pos = 0;
	uint8_t *buf = malloc(PROTO_HDR_LEN + PROTO_STALE_MAX_BODY);
	char err[ERR_LEN] = "";
	int records = 0;

	for (uint64_t p = 3; p < geo.npages; p += 2) /* worst case: scattered */
		bitmap_set(set, p);
	do {
		struct proto_hdr h;
		int n = proto_dirty_encode(buf, PROTO_HDR_LEN + PROTO_STALE_MAX_BODY, &geo, set,
					   &pos, err);

		cr_assert(gt(int, n, 0), "%s", err);
		cr_assert(eq(int, proto_hdr_decode(buf, n, &geo, &h, err), 0), "%s", err);
		cr_assert(eq(u32, h.type, PROTO_DIRTY));
		cr_assert(le(u32, h.body_len, PROTO_STALE_MAX_BODY));
		cr_assert(eq(int, proto_stale_decode(&h, buf + B, &geo, got, err), 0), "%s", err);
		records++;
	} while (pos < geo.npages);
	cr_assert(eq(int, records, 9));
	cr_assert(eq(int, memcmp(got, set, BITMAP_WORDS(geo.npages) * 8), 0));

	/* A bad DIRTY record names itself. */
	struct proto_hdr h = { .type = PROTO_DIRTY, .body_len = 8 };
	uint8_t body[8] = { 9 };
	cr_assert(eq(int, proto_stale_decode(&h, body, &geo, got, err), -EPROTO));
	cr_assert(ne(ptr, strstr(err, "DIRTY record: unknown encoding 9"), NULL), "%s", err);
	free(buf);
	free(set);
	free(got);
}

Test(proto, sync_round_trip)
{
	uint8_t buf[64];
	struct proto_hdr h;
	uint64_t token = 0;
	char err[ERR_LEN] = "";
	int n = proto_sync_encode(buf, sizeof(buf), 0x1122334455667788ull, err);

	cr_assert(eq(int, n, PROTO_HDR_LEN + 8), "%s", err);
	cr_assert(eq(int, proto_hdr_decode(buf, n, &G, &h, err), 0), "%s", err);
	cr_assert(eq(int, proto_sync_decode(&h, buf + B, &token, err), 0), "%s", err);
	cr_assert(eq(u64, token, 0x1122334455667788ull));
	put_le32(buf + 8, 9);
	cr_assert(eq(int, proto_hdr_decode(buf, n, &G, &h, err), -EMSGSIZE));
	cr_assert(eq(int, proto_sync_encode(buf, 10, 1, err), -ENOSPC));
}

Test(proto, stale_decode_ors_into_the_set)
{
	uint8_t buf[256];
	uint64_t *bm = bitmap_new(G.npages);
	struct proto_hdr h;
	char err[ERR_LEN] = "";

	bitmap_set(bm, 999);
	build(BASE_STALE_RANGES, buf);
	cr_assert(eq(int, proto_hdr_decode(buf, sizeof(buf), &G, &h, err), 0), "%s", err);
	cr_assert(eq(int, proto_stale_decode(&h, buf + B, &G, bm, err), 0), "%s", err);
	cr_assert(eq(u64, bitmap_count(bm, G.npages), 5 + 1 + 1));
	cr_assert(bitmap_test(bm, 999) && bitmap_test(bm, 5) && bitmap_test(bm, 9) &&
		  !bitmap_test(bm, 10) && bitmap_test(bm, 100));
	free(bm);
}

/* ------------------------------------------------------- type handling */

Test(proto, unknown_optional_record_is_skipped_mandatory_is_not)
{
	uint8_t buf[PROTO_HDR_LEN];
	struct proto_hdr h;
	char err[ERR_LEN] = "";

	proto_hdr_encode(buf, PROTO_TYPE_OPTIONAL | 42, 0x7, 300);
	cr_assert(eq(int, proto_hdr_decode(buf, sizeof(buf), &G, &h, err), 0), "%s", err);
	cr_assert(h.skip);
	cr_assert(eq(u32, h.body_len, 300), "the caller must know how much to drop");

	proto_hdr_encode(buf, 42, 0, 300);
	cr_assert(eq(int, proto_hdr_decode(buf, sizeof(buf), &G, &h, err), -EPROTO));
	cr_assert(ne(ptr, strstr(err, "0x0000002a"), NULL), "%s", err);
}

Test(proto, type_names)
{
	cr_assert(eq(str, (char *)proto_type_name(PROTO_HELLO), "HELLO"));
	cr_assert(eq(str, (char *)proto_type_name(PROTO_VCPU_STATE), "VCPU_STATE"));
	cr_assert(eq(str, (char *)proto_type_name(PROTO_ERROR), "ERROR"));
	cr_assert(eq(str, (char *)proto_type_name(0), "UNKNOWN"));
	cr_assert(eq(str, (char *)proto_type_name(PROTO_TYPE_OPTIONAL | 3),
		     "UNKNOWN-OPTIONAL"));
}

/* ---------------------------------------------------- malformed records */

struct patch {
	size_t off;
	int width; /* 0: no patch; 4 or 8: a little-endian word */
	uint64_t val;
};

struct bad_case {
	const char *name;
	enum base base;
	struct patch p[2];
	size_t len;     /* bytes handed to the decoder; 0: the whole record */
	bool no_hello;  /* decode with no geometry yet */
	int want;
	const char *record; /* the error must name the record ... */
	const char *detail; /* ... and say what is wrong */
};

#define P4(o, v) { (o), 4, (v) }
#define P8(o, v) { (o), 8, (v) }

/* PAGES base: 2 pfns (1, 2) and their data. */
#define PAGES_LEN(n) (8 + (n) * (8 + 4096))
#define VCPU_LIMIT ((1u << 20) + 4 * 4096)

static const struct bad_case bad_cases[] = {
	{ "truncated header", BASE_PAGES, {}, .len = 10,
	  .want = -EPROTO, .record = "record header", .detail = "truncated (10 of 16" },
	{ "nonzero reserved", BASE_PAGES, { P4(H_RES, 1) },
	  .want = -EPROTO, .record = "PAGES record", .detail = "reserved field is 0x00000001" },
	{ "body_len over PAGES limit", BASE_PAGES, { P4(H_LEN, PAGES_LEN(1025)) },
	  .want = -EMSGSIZE, .record = "PAGES record", .detail = "over the limit 4206600" },
	{ "body_len over absolute cap", BASE_VCPU, { P4(H_LEN, (64u << 20) + 1) },
	  .want = -EMSGSIZE, .record = "VCPU_STATE record", .detail = "absolute limit" },
	{ "VCPU_STATE over its limit", BASE_VCPU, { P4(H_LEN, VCPU_LIMIT + 1) },
	  .want = -EMSGSIZE, .record = "VCPU_STATE record", .detail = "over the limit" },
	{ "VCPU_STATE empty", BASE_VCPU, { P4(H_LEN, 0) },
	  .want = -EPROTO, .record = "VCPU_STATE record", .detail = "below the minimum 1" },
	{ "PAGES body_len short of count", BASE_PAGES, { P4(H_LEN, PAGES_LEN(1)) },
	  .want = -EPROTO, .record = "PAGES record", .detail = "does not match count 2" },
	{ "PAGES body_len past count", BASE_PAGES, { P4(B, 1) },
	  .want = -EPROTO, .record = "PAGES record", .detail = "does not match count 1" },
	{ "PAGES count 0", BASE_PAGES, { P4(B, 0) },
	  .want = -EPROTO, .record = "PAGES record", .detail = "count 0 not in 1..1024" },
	{ "PAGES count over max", BASE_PAGES, { P4(B, 1025) },
	  .want = -EPROTO, .record = "PAGES record", .detail = "count 1025 not in 1..1024" },
	{ "ZERO count over max", BASE_ZERO, { P4(B, 5000) },
	  .want = -EPROTO, .record = "ZERO record", .detail = "count 5000" },
	{ "PAGES pad nonzero", BASE_PAGES, { P4(B + 4, 9) },
	  .want = -EPROTO, .record = "PAGES record", .detail = "pad" },
	{ "PAGES pfn out of range", BASE_PAGES, { P8(B + 16, 1000) },
	  .want = -ERANGE, .record = "PAGES record",
	  .detail = "pfn 1000 out of range (guest has 1000 pages)" },
	{ "PAGES pfn far out of range", BASE_PAGES, { P8(B + 8, UINT64_MAX) },
	  .want = -ERANGE, .record = "PAGES record", .detail = "out of range" },
	{ "PAGES duplicate pfn", BASE_PAGES, { P8(B + 16, 1) },
	  .want = -EPROTO, .record = "PAGES record", .detail = "duplicate pfn 1" },
	{ "REQUEST duplicate pfn, unsorted", BASE_REQUEST, { P8(B + 24, 7) },
	  .want = -EPROTO, .record = "REQUEST record", .detail = "duplicate pfn 7" },
	{ "REQUEST pfn out of range", BASE_REQUEST, { P8(B + 8, 4096) },
	  .want = -ERANGE, .record = "REQUEST record", .detail = "pfn 4096" },
	{ "ZERO duplicate pfn", BASE_ZERO, { P8(B + 24, 10) },
	  .want = -EPROTO, .record = "ZERO record", .detail = "duplicate pfn 10" },
	{ "PAGES before HELLO", BASE_PAGES, {}, .no_hello = true,
	  .want = -EPROTO, .record = "PAGES record", .detail = "before HELLO" },
	{ "unknown mandatory type", BASE_DONE, { P4(H_TYPE, 0x2a) },
	  .want = -EPROTO, .record = "UNKNOWN record", .detail = "mandatory type 0x0000002a" },
	{ "type 0", BASE_DONE, { P4(H_TYPE, 0) },
	  .want = -EPROTO, .record = "UNKNOWN record", .detail = "0x00000000" },
	{ "unknown optional type is skipped", BASE_DONE, { P4(H_TYPE, 0x8000002a) },
	  .want = 0 },
	{ "HELLO wrong magic", BASE_HELLO, { P4(B, 0x47495048) }, .no_hello = true,
	  .want = -EPROTO, .record = "HELLO record", .detail = "bad magic" },
	{ "HELLO wrong version", BASE_HELLO, { P4(B + 8, 1) }, .no_hello = true,
	  .want = -EPROTONOSUPPORT, .record = "HELLO record",
	  .detail = "version 1, this side speaks 4" },
	{ "HELLO from a newer, longer version", BASE_HELLO,
	  { P4(B + 8, 5), P4(H_LEN, 80) }, .no_hello = true,
	  .want = -EPROTONOSUPPORT, .record = "HELLO record", .detail = "version 5" },
	{ "HELLO v4 of the wrong length", BASE_HELLO, { P4(H_LEN, 63) }, .no_hello = true,
	  .want = -EPROTO, .record = "HELLO record", .detail = "is 64 bytes" },
	{ "HELLO page size not a power of two", BASE_HELLO, { P4(B + 40, 5000) },
	  .no_hello = true,
	  .want = -EPROTO, .record = "HELLO record", .detail = "page size 5000" },
	{ "HELLO page size too big", BASE_HELLO, { P4(B + 40, 4u << 20) },
	  .no_hello = true,
	  .want = -EPROTO, .record = "HELLO record", .detail = "page size 4194304" },
	{ "HELLO page size too small", BASE_HELLO, { P4(B + 40, 512) },
	  .no_hello = true,
	  .want = -EPROTO, .record = "HELLO record", .detail = "page size 512" },
	{ "HELLO no pages", BASE_HELLO, { P8(B + 32, 0) }, .no_hello = true,
	  .want = -EPROTO, .record = "HELLO record", .detail = "page count 0" },
	{ "HELLO no vCPUs", BASE_HELLO, { P4(B + 44, 0) }, .no_hello = true,
	  .want = -EPROTO, .record = "HELLO record", .detail = "vCPU count 0" },
	{ "HELLO too many vCPUs", BASE_HELLO, { P4(B + 44, 1025) }, .no_hello = true,
	  .want = -EPROTO, .record = "HELLO record", .detail = "vCPU count 1025" },
	{ "HELLO unknown mode", BASE_HELLO, { P4(B + 12, 3) }, .no_hello = true,
	  .want = -EPROTO, .record = "HELLO record", .detail = "mode 3" },
	{ "HELLO backend not terminated", BASE_HELLO,
	  { P8(B + 48, 0x4141414141414141ull), P8(B + 56, 0x4141414141414141ull) },
	  .no_hello = true,
	  .want = -EPROTO, .record = "HELLO record", .detail = "NUL-terminated" },
	{ "PASS_END with a flag", BASE_PASS_END, { P4(H_FLAGS, PROTO_FLAG_LAST) },
	  .want = -EPROTO, .record = "PASS_END record", .detail = "unknown flags 0x00000001" },
	{ "PASS_END too long", BASE_PASS_END, { P4(H_LEN, 25) },
	  .want = -EMSGSIZE, .record = "PASS_END record", .detail = "over the limit 24" },
	{ "PASS_END too short", BASE_PASS_END, { P4(H_LEN, 23) },
	  .want = -EPROTO, .record = "PASS_END record", .detail = "below the minimum 24" },
	{ "PASS_END counts more pages than the guest", BASE_PASS_END, { P8(B + 16, 1001) },
	  .want = -ERANGE, .record = "PASS_END record", .detail = "1001 dirty" },
	{ "STALE range crosses npages", BASE_STALE_RANGES, { P8(B + 24, 990), P8(B + 32, 11) },
	  .want = -ERANGE, .record = "STALE record", .detail = "crosses the end of the guest" },
	{ "STALE range count overflows", BASE_STALE_RANGES, { P8(B + 32, UINT64_MAX) },
	  .want = -ERANGE, .record = "STALE record", .detail = "crosses the end" },
	{ "STALE range starts past npages", BASE_STALE_RANGES, { P8(B + 24, 1000) },
	  .want = -ERANGE, .record = "STALE record", .detail = "range 1 (pfn 1000" },
	{ "STALE ranges overlap", BASE_STALE_RANGES, { P8(B + 24, 8) },
	  .want = -EPROTO, .record = "STALE record", .detail = "overlaps" },
	{ "STALE empty range", BASE_STALE_RANGES, { P8(B + 16, 0) },
	  .want = -EPROTO, .record = "STALE record", .detail = "is empty" },
	{ "STALE ranges count mismatch", BASE_STALE_RANGES, { P4(B + 4, 3) },
	  .want = -EPROTO, .record = "STALE record", .detail = "does not match 3 ranges" },
	{ "STALE unknown encoding", BASE_STALE_RANGES, { P4(B, 7) },
	  .want = -EPROTO, .record = "STALE record", .detail = "unknown encoding 7" },
	{ "STALE unknown flag", BASE_STALE_RANGES, { P4(H_FLAGS, 0x3) },
	  .want = -EPROTO, .record = "STALE record", .detail = "unknown flags 0x00000002" },
	{ "STALE over its limit", BASE_STALE_RANGES, { P4(H_LEN, PROTO_STALE_MAX_BODY + 8) },
	  .want = -EMSGSIZE, .record = "STALE record", .detail = "over the limit" },
	{ "STALE bitmap crosses npages", BASE_STALE_BITMAP, { P8(B + 8, 64) },
	  .want = -ERANGE, .record = "STALE record", .detail = "crosses the end of the guest" },
	{ "STALE bitmap unaligned", BASE_STALE_BITMAP, { P8(B + 8, 3) },
	  .want = -EPROTO, .record = "STALE record", .detail = "not a multiple of 64" },
	{ "STALE bitmap bits past nbits", BASE_STALE_BITMAP, { P8(B + 24 + 15 * 8, 1ull << 41) },
	  .want = -EPROTO, .record = "STALE record", .detail = "bits set past" },
	{ "STALE bitmap length mismatch", BASE_STALE_BITMAP, { P8(B + 16, 900) },
	  .want = -EPROTO, .record = "STALE record", .detail = "does not match 900 bits" },
	{ "STALE bitmap pad nonzero", BASE_STALE_BITMAP, { P4(B + 4, 1) },
	  .want = -EPROTO, .record = "STALE record", .detail = "pad" },
	{ "RESUMED wrong size", BASE_RESUMED, { P4(H_LEN, 8) },
	  .want = -EPROTO, .record = "RESUMED record", .detail = "below the minimum 16" },
	{ "DONE before HELLO", BASE_DONE, {}, .no_hello = true,
	  .want = -EPROTO, .record = "DONE record", .detail = "before HELLO" },
	{ "ERROR text too long", BASE_ERROR, { P4(B + 4, 2000), P4(H_LEN, 2008) },
	  .want = -EMSGSIZE, .record = "ERROR record", .detail = "over the limit 1032" },
	{ "ERROR text_len over max", BASE_ERROR, { P4(B + 4, 2000) },
	  .want = -EMSGSIZE, .record = "ERROR record", .detail = "at most 1024" },
	{ "ERROR text_len mismatch", BASE_ERROR, { P4(B + 4, 5) },
	  .want = -EPROTO, .record = "ERROR record", .detail = "text length 5" },
	{ "ERROR text not UTF-8", BASE_ERROR, { P4(B + 8, 0xff) },
	  .want = -EPROTO, .record = "ERROR record", .detail = "not printable UTF-8" },
	{ "ERROR text with escape", BASE_ERROR, { P4(B + 8, 0x5b1b) },
	  .want = -EPROTO, .record = "ERROR record", .detail = "text byte 0" },
	{ "ERROR code 0", BASE_ERROR, { P4(B, 0) },
	  .want = -EPROTO, .record = "ERROR record", .detail = "code 0" },
};

#define NBAD (sizeof(bad_cases) / sizeof(bad_cases[0]))

/* Indices, not the structs: Criterion may run each parameter in a fresh
 * process image, where only plain data survives the trip. */
ParameterizedTestParameters(proto, malformed)
{
	static int idx[NBAD];

	for (size_t i = 0; i < NBAD; i++)
		idx[i] = (int)i;
	return cr_make_param_array(int, idx, NBAD);
}

ParameterizedTest(int *i, proto, malformed)
{
	const struct bad_case *c = &bad_cases[*i];
	uint8_t *buf = calloc(1, REC_MAX);
	char err[ERR_LEN] = "";
	size_t len = build(c->base, buf);
	int rc;

	for (int k = 0; k < 2; k++) {
		if (c->p[k].width == 4)
			put_le32(buf + c->p[k].off, (uint32_t)c->p[k].val);
		else if (c->p[k].width == 8)
			put_le64(buf + c->p[k].off, c->p[k].val);
	}
	rc = decode_any(buf, c->len ? c->len : len,
			c->no_hello ? NULL : &G, err);
	cr_assert(eq(int, rc, c->want), "%s: got %d (%s)", c->name, rc, err);
	if (c->want) {
		cr_assert(ne(ptr, strstr(err, c->record), NULL),
			  "%s: error does not name '%s': %s", c->name, c->record, err);
		cr_assert(ne(ptr, strstr(err, c->detail), NULL),
			  "%s: error does not say '%s': %s", c->name, c->detail, err);
	}
	free(buf);
}
