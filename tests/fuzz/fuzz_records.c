/* libFuzzer target: the record decoders (src/proto), as the engine runs
 * them.  The input is a record stream: each header goes through
 * proto_hdr_decode (with no geometry until a HELLO decodes, then that
 * HELLO's), each body through its type's decoder, and the PAGES CRC32C
 * check reads every page.  Bodies the header said are larger than the
 * input are not read. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/bitmap.h"
#include "common/err.h"
#include "proto/proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct hmig_guest_geometry geo = { 0 };
	bool have_geo = false;
	uint64_t *set = NULL;
	char err[ERR_LEN];

	while (size >= PROTO_HDR_LEN) {
		struct proto_hdr h;

		if (proto_hdr_decode(data, PROTO_HDR_LEN, have_geo ? &geo : NULL, &h, err))
			break;
		if (size - PROTO_HDR_LEN < h.body_len)
			break;
		/* The body in its own allocation, so ASan sees any read past it. */
		uint8_t *body = malloc(h.body_len ? h.body_len : 1);
		memcpy(body, data + PROTO_HDR_LEN, h.body_len);
		data += PROTO_HDR_LEN + h.body_len;
		size -= PROTO_HDR_LEN + h.body_len;
		if (h.skip) {
			free(body);
			continue;
		}
		union {
			struct proto_hello hello;
			struct proto_pages pages;
			struct proto_pass_end pe;
			struct proto_resumed res;
			struct proto_done done;
			struct proto_error e;
		} u;
		uint64_t token;
		const void *blob;
		size_t len;

		switch (h.type) {
		case PROTO_HELLO:
			if (!proto_hello_decode(&h, body, &u.hello, err) &&
			    u.hello.geo.npages <= (1u << 20)) {
				/* A geometry small enough to hold the STALE sets. */
				geo = u.hello.geo;
				geo.vcpu_state_max = 1 << 16;
				have_geo = true;
				free(set);
				set = bitmap_new(geo.npages);
			}
			break;
		case PROTO_PAGES:
		case PROTO_ZERO:
		case PROTO_REQUEST:
			if (!proto_pages_decode(&h, body, &geo, &u.pages, err))
				for (uint32_t i = 0; i < u.pages.count; i++)
					if (proto_pages_pfn(&u.pages, i) >= geo.npages)
						abort();
			break;
		case PROTO_PASS_END:
			proto_pass_end_decode(&h, body, &geo, &u.pe, err);
			break;
		case PROTO_STALE:
		case PROTO_DIRTY:
			if (set)
				proto_stale_decode(&h, body, &geo, set, err);
			break;
		case PROTO_VCPU_STATE:
			proto_vcpu_decode(&h, body, &blob, &len, err);
			break;
		case PROTO_RESUMED:
			proto_resumed_decode(&h, body, &u.res, err);
			break;
		case PROTO_SYNC:
			proto_sync_decode(&h, body, &token, err);
			break;
		case PROTO_DONE:
			proto_done_decode(&h, body, &u.done, err);
			break;
		case PROTO_ERROR:
			proto_err_decode(&h, body, &u.e, err);
			break;
		}
		free(body);
	}
	free(set);
	return 0;
}
