/* A TCP relay for engine tests, between the source and the destination: it
 * forwards both connections of a migration byte for byte, and can flip one
 * bit on the way, the way a bad NIC or switch buffer would.  A test tool, not
 * a fake of any hmig layer: both sides still run their real channels.
 *
 * On a plaintext stream it follows the records of the bulk channel and flips
 * a bit in the data of one page of one PAGES record (so the test knows which
 * pfn to expect in the error); on any stream it can flip the byte at a fixed
 * offset of the bulk stream instead (inside TLS that is ciphertext). */
#ifndef HMIG_TESTS_ENGINE_RELAY_H
#define HMIG_TESTS_ENGINE_RELAY_H

#include <pthread.h>
#include <stdint.h>

struct relay_plan {
	uint32_t pages_record;  /* > 0: flip a bit in the Nth PAGES record on bulk ... */
	uint32_t page;          /* ... in this page of it (wrapped to its count) */
	uint64_t stream_offset; /* > 0: instead flip the bulk byte at this offset
				 * (counted after the channel preamble) */
};

struct relay {
	char addr[64];          /* where the source connects */
	char target[64];
	struct relay_plan plan;
	int lfd;
	pthread_t acceptor;
	_Atomic uint64_t flipped_pfn; /* the pfn whose data was flipped; UINT64_MAX none */
	_Atomic int flips;
	pthread_t pumps[8];
	int npumps;
	int fds[8];
	int nfds;
};

/* Listens on 127.0.0.1, any port, relaying to target ("127.0.0.1:PORT"). */
void relay_start(struct relay *r, const char *target, const struct relay_plan *plan);
/* Waits for both connections to end; frees everything. */
void relay_stop(struct relay *r);

#endif
