/* TLS 1.3 for the channels, through GnuTLS (as QEMU's migration TLS).
 *
 * Credentials are loaded once per side (net_tls_new) and shared by both
 * channels of a pair; each connection then has its own session, so the
 * urgent channel never waits behind bulk's records.  Two ways to
 * authenticate, both mutual:
 *   X.509  a directory as QEMU's tls-creds-x509: ca-cert.pem, and
 *          server-cert.pem + server-key.pem (the listener, the destination)
 *          or client-cert.pem + client-key.pem (the connector, the source);
 *          each side checks the other's chain against the CA and the key
 *          purpose (TLS server / TLS client);
 *   PSK    a file "identity:hexkey" (GnuTLS psktool's format), the same on
 *          both sides; TLS 1.3 (EC)DHE-PSK, so a key seen later does not
 *          open recorded streams.
 *
 * The handshake runs on the socket before the channel exists (plain
 * non-blocking code with poll, like the preamble); the channel then takes
 * the session over and moves its records through io_uring (chan.c: GnuTLS's
 * transport callbacks read from and write to the channel's buffers).
 *
 * No cryptography here: every byte of it is GnuTLS's. */
#ifndef HMIG_NET_TLS_H
#define HMIG_NET_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <gnutls/gnutls.h>

/* What a user gives: one of the two, never both. */
struct net_tls_config {
	const char *creds_dir;  /* X.509 directory */
	const char *psk_file;   /* "identity:hexkey" */
};

struct net_tls;             /* loaded credentials (tls.c) */

/* What a session negotiated, for reports: the channel's security. */
struct net_tls_info {
	bool encrypted;
	bool ktls;              /* the kernel does the record layer (never, yet) */
	bool ktls_available;    /* the kernel offered it (TCP_ULP "tls") */
	char auth[8];           /* "x509" or "psk" */
	char cipher[96];        /* "TLS1.3 AES-128-GCM ECDHE-X25519" */
	char peer[160];         /* the peer's certificate DN or PSK identity, escaped */
};

/* Loads the credentials for one side (server: the listener).  0, or -errno
 * with one line naming the file and the remedy in err. */
int net_tls_new(struct net_tls **out, const struct net_tls_config *cfg, bool server, char *err);
void net_tls_free(struct net_tls *t);

/* One connection's session on socket fd (non-blocking), before the channel
 * takes it. */
int net_tls_session(const struct net_tls *t, int fd, gnutls_session_t *out, char *err);

/* One step of the handshake: 0 done (peer verified), -EAGAIN (poll the
 * socket for *events and call again), or -errno with the reason in err:
 * -EACCES for an authentication failure (wrong key, certificate from
 * another CA), -EPROTO for anything else the peer did wrong. */
int net_tls_handshake(gnutls_session_t s, short *events, char *err);

/* Fills *info from a finished session; ktls_available from the socket. */
void net_tls_describe(gnutls_session_t s, int fd, struct net_tls_info *info);

/* Largest plaintext of one TLS record: 16 KiB (RFC 8446 5.1). */
#define NET_TLS_RECORD 16384u

#endif
