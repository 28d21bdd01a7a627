/* Internals shared by the source and destination state machines. */
#ifndef HMIG_ENGINE_ENGINE_H
#define HMIG_ENGINE_ENGINE_H

#include <stdbool.h>
#include <stdint.h>

#include <hmig/hmig.h>

#include "net/net.h"
#include "proto/proto.h"
#include "stats/report.h"

/* A growable receive buffer for record bodies.  It only grows after the
 * header's length passed proto_hdr_decode's per-type limit. */
struct rec_buf {
	uint8_t *p;
	size_t cap;
};

/* Reads one record (header, then body into rb) from ch.  Optional records of
 * unknown type are skipped.  An ERROR record from the peer becomes
 * -ECONNABORTED with "<peer> failed: <its text>" in err.  geo is NULL before
 * HELLO. */
int eng_rec_read(struct net_chan *ch, const struct hmig_guest_geometry *geo,
		 int timeout_ms, const char *peer, struct proto_hdr *h,
		 struct rec_buf *rb, char *err);

/* Sends len bytes of a small record and waits until the kernel has them. */
int eng_rec_send(struct net_chan *ch, const void *buf, size_t len, int timeout_ms,
		 char *err);

/* Sets both channels' send timeout (a peer that stops reading). */
void eng_pair_timeouts(struct net_pair *p, int io_timeout_ms);

/* Whether rc says the link is gone (reset, closed, silent past the io
 * timeout, unreachable) rather than the peer refusing or a record being
 * wrong: a committed migration recovers from the first, not the second. */
bool eng_link_lost(int rc);

/* Tells the peer why we give up (best effort: the channel may be dead). */
void eng_send_error(struct net_chan *ch, int rc, const char *text);

/* A failed read or send names the channel, the record and the peer. */
int eng_io_error(char *err, int rc, const char *peer, const char *what, const char *detail);

void rec_buf_free(struct rec_buf *rb);

/* Transport security (secure.c).  The credentials the config names (NULL
 * in *out for an explicit insecure config); -EINVAL when it names none and
 * is not insecure, or both. */
int eng_tls_load(const struct hmig_config *cfg, bool server, struct net_tls **out, char *err);
/* The report's "security" from the bulk channel. */
void eng_report_security(struct stats_report *rep, const struct net_chan *bulk);
/* Whether a guest of geo may be prepared here, before anything is allocated:
 * max_mem when set, else this host's available memory. */
int eng_mem_allowed(const struct hmig_guest_geometry *geo, uint64_t max_mem, char *err);

/* Random, never 0. */
uint64_t eng_session_id(void);

/* Fills the report's mode and guest fields (backend, geometry, workload),
 * and the process's peak resident memory (peak_rss_mib). */
void eng_report_guest(struct stats_report *rep, enum hmig_mode mode, struct hmig_guest *g,
		      const struct hmig_guest_geometry *geo);

#endif
