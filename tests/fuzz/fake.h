/* Fakes for the fuzz targets only: a channel pair fed from the fuzzer's
 * bytes (fake_net.c, standing in for src/net's sockets and io_uring), and
 * an in-memory guest (fake_guest.c).  Nothing outside tests/fuzz links
 * them. */
#ifndef HMIG_TESTS_FUZZ_FAKE_H
#define HMIG_TESTS_FUZZ_FAKE_H

#include <stddef.h>
#include <stdint.h>

#include <hmig/guest.h>

/* What the next connected or accepted pair reads: bulk[0..nb) on the bulk
 * channel, urgent[0..nu) on the urgent one; then the peer "closes".  With
 * patch_session, the first record on bulk is taken for a HELLO and its
 * session id is overwritten with the pair's real one (the source draws it
 * at random: without this every input would stop at the session check). */
void fake_net_feed(const uint8_t *bulk, size_t nb, const uint8_t *urgent, size_t nu,
		   int patch_session);

/* The fuzz guests: a source of npages pages with data, or an empty
 * destination that takes up to max_pages. */
struct hmig_guest *fake_guest_source(uint64_t npages);
struct hmig_guest *fake_guest_dest(uint64_t max_pages);

/* Splits an input at the first "HMIGURGT" into bulk and urgent parts. */
void fake_split(const uint8_t *data, size_t size, const uint8_t **bulk, size_t *nb,
		const uint8_t **urgent, size_t *nu);

#endif
