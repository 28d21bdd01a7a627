#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/bitmap.h"
#include "common/crc32c.h"
#include "common/err.h"
#include "engine/engine.h"
#include "engine/sender.h"

#define PREFIX_MAX (PROTO_HDR_LEN + 8 + 12 * PROTO_MAX_BATCH)

struct send_slot {
	int64_t seq;                      /* last send using this slot, 0 = none */
	uint32_t n;                       /* pages mapped */
	uint64_t pfns[PROTO_MAX_BATCH];   /* the batch, as given */
	const void *ptrs[PROTO_MAX_BATCH];
	uint64_t data_pfns[PROTO_MAX_BATCH], zero_pfns[PROTO_MAX_BATCH];
	uint8_t pages_prefix[PREFIX_MAX], zero_prefix[PREFIX_MAX];
	struct iovec iov[PROTO_MAX_BATCH + 1];
	uint32_t crcs[PROTO_MAX_BATCH];   /* sender.crc: each page's CRC32C ... */
	uint8_t *copy;                    /* ... over its copy here, which is sent */
	size_t copy_cap;
};

int sent_log_init(struct sent_log *log, uint64_t npages)
{
	memset(log, 0, sizeof(*log));
	pthread_mutex_init(&log->lock, NULL);
	log->ever = bitmap_new(npages);
	log->held = bitmap_new(npages);
	return log->ever && log->held ? 0 : -ENOMEM;
}

void sent_log_free(struct sent_log *log)
{
	free(log->ever);
	free(log->held);
	log->ever = log->held = NULL;
	pthread_mutex_destroy(&log->lock);
}

int sender_init(struct sender *sd, struct hmig_guest *g, const struct hmig_guest_geometry *geo,
		struct net_chan *ch, struct sent_log *log, uint32_t batch_max, int timeout_ms,
		char *err)
{
	uint32_t proto_max = proto_pages_max_count(geo);

	memset(sd, 0, sizeof(*sd));
	sd->g = g;
	sd->geo = geo;
	sd->ch = ch;
	sd->log = log;
	sd->timeout_ms = timeout_ms;
	sd->err = err;
	sd->batch_max = batch_max < proto_max ? batch_max : proto_max;
	/* Plaintext: PAGES carry CRC32Cs.  With TLS each record's AEAD tag
	 * proves the data already. */
	sd->crc = !ch->tls;
	/* The channel holds ch->cap sends in flight; one more slot is being
	 * filled meanwhile.  More would only wait in net_chan_sendv. */
	sd->nslots = ch->cap + 1;
	sd->slots = calloc(sd->nslots, sizeof(*sd->slots));
	if (!sd->slots)
		return err_setf(err, -ENOMEM, "out of memory for %u send slots", sd->nslots);
	return 0;
}

/* Waits for the slot's previous send, then releases its page mappings. */
static int slot_reclaim(struct sender *sd, struct send_slot *sl)
{
	if (sl->seq) {
		int rc = net_chan_send_wait(sd->ch, sl->seq, sd->timeout_ms);

		if (rc)
			return eng_io_error(sd->err, rc, "destination", "sending pages", sd->ch->err);
		sl->seq = 0;
	}
	if (sl->n) {
		sd->g->ops->pages_unmap(sd->g, sl->pfns, sl->n, sl->ptrs);
		sl->n = 0;
	}
	return 0;
}

void sender_free(struct sender *sd)
{
	for (unsigned i = 0; sd->slots && i < sd->nslots; i++) {
		struct send_slot *sl = &sd->slots[i];

		if (sl->seq && sd->ch->open)
			net_chan_send_wait(sd->ch, sl->seq, 0);
		if (sl->n)
			sd->g->ops->pages_unmap(sd->g, sl->pfns, sl->n, sl->ptrs);
		free(sl->copy);
	}
	free(sd->slots);
	sd->slots = NULL;
}

static int post(struct sender *sd, struct send_slot *sl, const struct iovec *iov, int iovcnt)
{
	int64_t seq = net_chan_sendv(sd->ch, iov, iovcnt);

	if (seq < 0)
		return eng_io_error(sd->err, (int)seq, "destination", "sending pages", sd->ch->err);
	sl->seq = sd->last_seq = seq;
	return 0;
}

static bool page_is_zero(const void *p, size_t len)
{
	const uint64_t *w = p;

	for (size_t i = 0; i < len / 8; i++)
		if (w[i])
			return false;
	return true;
}

/* A plaintext stream: each data page's CRC32C goes in the record.  It is
 * taken over a copy, and the copy is sent: the guest keeps writing, and a
 * page checksummed in place could change before the kernel reads it, which
 * the destination would take for corruption.  The copy costs one pass over
 * the data, which an encrypted channel pays anyway (net/tls.c); the slot
 * keeps its buffer, grown to the largest batch it sent. */
static int copy_and_sum(struct sender *sd, struct send_slot *sl, uint32_t nd, int *niov)
{
	size_t ps = sd->geo->page_size, need = (size_t)nd * ps;
	uint32_t k = 0;

	if (need > sl->copy_cap) {
		uint8_t *p = realloc(sl->copy, need);

		if (!p)
			return err_setf(sd->err, -ENOMEM, "out of memory for %zu bytes of page copies", need);
		sl->copy = p;
		sl->copy_cap = need;
	}
	/* The data iovecs hold the pages in data_pfns order, merged in runs. */
	for (int v = 1; v < *niov; v++)
		for (size_t off = 0; off < sl->iov[v].iov_len; off += ps, k++)
			sl->crcs[k] = crc32c_copy(sl->copy + (size_t)k * ps,
						  (const uint8_t *)sl->iov[v].iov_base + off, ps);
	sl->iov[1] = (struct iovec){ sl->copy, need };
	*niov = 2;
	return 0;
}

/* Sends sl->pfns[0..n): zero pages as one ZERO record, the rest as one
 * PAGES record whose data iovecs point into guest memory (runs of adjacent
 * pages merged into one iovec).  The slot must be free (reclaimed); its
 * memory is in use until the send completes. */
static int send_slot(struct sender *sd, struct send_slot *sl, uint32_t n)
{
	size_t ps = sd->geo->page_size;
	uint32_t nd = 0, nz = 0;
	int rc;

	rc = sd->g->ops->pages_map(sd->g, sl->pfns, n, sl->ptrs);
	if (rc)
		return err_setf(sd->err, rc, "reading guest pages: %s", hmig_guest_error(sd->g));
	sl->n = n;

	int niov = 1;
	for (uint32_t i = 0; i < n; i++) {
		if (page_is_zero(sl->ptrs[i], ps)) {
			sl->zero_pfns[nz++] = sl->pfns[i];
			continue;
		}
		struct iovec *last = &sl->iov[niov - 1];
		if (nd && (const uint8_t *)last->iov_base + last->iov_len == sl->ptrs[i]) {
			last->iov_len += ps;
		} else {
			sl->iov[niov].iov_base = (void *)sl->ptrs[i];
			sl->iov[niov].iov_len = ps;
			niov++;
		}
		sl->data_pfns[nd++] = sl->pfns[i];
	}
	if (nz) {
		int len = proto_zero_encode(sl->zero_prefix, PREFIX_MAX, sd->geo, sl->zero_pfns, nz,
					    sd->err);
		if (len < 0)
			return len;
		struct iovec z = { .iov_base = sl->zero_prefix, .iov_len = (size_t)len };
		if ((rc = post(sd, sl, &z, 1)))
			return rc;
	}
	if (nd && sd->crc && (rc = copy_and_sum(sd, sl, nd, &niov)))
		return rc;
	if (nd) {
		int len = sd->crc ? proto_pages_encode_crc(sl->pages_prefix, PREFIX_MAX, sd->geo,
							   sl->data_pfns, sl->crcs, nd, sd->err)
				  : proto_pages_encode(sl->pages_prefix, PREFIX_MAX, sd->geo,
						       sl->data_pfns, nd, sd->err);
		if (len < 0)
			return len;
		sl->iov[0].iov_base = sl->pages_prefix;
		sl->iov[0].iov_len = (size_t)len;
		if ((rc = post(sd, sl, sl->iov, niov)))
			return rc;
	}
	struct sent_log *log = sd->log;
	pthread_mutex_lock(&log->lock);
	for (uint32_t i = 0; i < n; i++) {
		if (bitmap_test(log->ever, sl->pfns[i]))
			log->resent++;
		bitmap_set(log->ever, sl->pfns[i]);
		bitmap_set(log->held, sl->pfns[i]);
	}
	log->data += nd;
	log->zero += nz;
	pthread_mutex_unlock(&log->lock);
	return 0;
}

int sender_send(struct sender *sd, const uint64_t *pfns, uint32_t n)
{
	struct send_slot *sl = &sd->slots[sd->next];
	int rc;

	if (!n)
		return 0;
	sd->next = (sd->next + 1) % sd->nslots;
	if ((rc = slot_reclaim(sd, sl)))
		return rc;
	memcpy(sl->pfns, pfns, n * sizeof(uint64_t));
	return send_slot(sd, sl, n);
}

int sender_flush(struct sender *sd)
{
	uint32_t n = sd->batch_n;

	sd->batch_n = 0;
	return sender_send(sd, sd->batch, n);
}

int sender_queue(struct sender *sd, uint64_t pfn)
{
	sd->batch[sd->batch_n++] = pfn;
	return sd->batch_n == sd->batch_max ? sender_flush(sd) : 0;
}

int sender_drain(struct sender *sd)
{
	int rc;

	for (unsigned i = 0; i < sd->nslots; i++)
		if ((rc = slot_reclaim(sd, &sd->slots[i])))
			return rc;
	return 0;
}
