/* The source's sender: pfns go out on one channel as PAGES records whose
 * page data are iovecs pointing straight into guest memory (no bounce copy;
 * on a plaintext channel a copy the CRC32Cs were taken over), and zero pages
 * as ZERO pfn lists.
 *
 * A sender owns send slots, one per send its channel may have in flight plus
 * the one being filled: a slot's record prefixes and page mappings must
 * outlive its send.  Batches fill up in pfn order of arrival and go out when
 * full (sender_queue) or when asked (sender_flush); reusing a slot waits for
 * its previous send, which is the channel's backpressure.
 *
 * What went out is kept in a sent_log that the source's two senders (bulk
 * and urgent) share: the source clears `held` bits when it tells the
 * destination to drop those pages.
 *
 * Threading: a sender is used by one thread at a time; the log is shared
 * by both senders, which record into it under its lock (post-copy serves
 * pulls on a thread of their own).  Outside post-copy the source's one
 * thread reads and writes the log freely.
 */
#ifndef HMIG_ENGINE_SENDER_H
#define HMIG_ENGINE_SENDER_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include <hmig/hmig.h>

#include "net/net.h"
#include "proto/proto.h"

struct sent_log {
	pthread_mutex_t lock; /* the senders record under it: post-copy's two
			       * (pushes, and pulls on their own thread) */
	uint64_t *ever;     /* sent at least once: a second time is a duplicate */
	uint64_t *held;     /* the destination holds a copy, current or not */
	uint64_t data, zero, resent; /* pages sent with data, as zero, again */
};

/* 0 or -ENOMEM; sent_log_free frees (also after a failed init). */
int sent_log_init(struct sent_log *log, uint64_t npages);
void sent_log_free(struct sent_log *log);

struct send_slot; /* sender.c */

struct sender {
	struct hmig_guest *g;
	const struct hmig_guest_geometry *geo;
	struct net_chan *ch;
	struct sent_log *log;
	int timeout_ms;
	char *err;                  /* the source's error line */
	struct send_slot *slots;
	unsigned nslots, next;
	int64_t last_seq;           /* the last send posted */
	uint64_t batch[PROTO_MAX_BATCH];
	uint32_t batch_n, batch_max;
	bool crc;                   /* plaintext channel: PAGES carry CRC32Cs */
};

/* Prepares a sender on ch (open), with a slot for each send ch may have in
 * flight plus one, and batches of at most batch_max pages (clamped to what
 * one PAGES record may hold).  0 or -ENOMEM with a message in err. */
int sender_init(struct sender *sd, struct hmig_guest *g, const struct hmig_guest_geometry *geo,
		struct net_chan *ch, struct sent_log *log, uint32_t batch_max, int timeout_ms,
		char *err);

/* Waits for the slots' sends (best effort) and frees them. */
void sender_free(struct sender *sd);

/* Adds pfn to the batch; a full batch goes out. */
int sender_queue(struct sender *sd, uint64_t pfn);

/* Sends the partial batch, if any. */
int sender_flush(struct sender *sd);

/* Sends pfns[0..n) (n <= batch_max) at once, in the next slot. */
int sender_send(struct sender *sd, const uint64_t *pfns, uint32_t n);

/* Waits until the kernel has taken every send (and unmaps their pages). */
int sender_drain(struct sender *sd);

/* Sequence number of the last send posted, for net_chan_send_wait. */
static inline int64_t sender_last_seq(const struct sender *sd)
{
	return sd->last_seq;
}

#endif
