/* TLS credentials, handshakes and what they negotiated (tls.h). */
#include "net/tls.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <gnutls/x509.h>

#include "common/err.h"
#include "common/esc.h"

#ifndef TCP_ULP
#define TCP_ULP 31
#endif

/* TLS 1.3 only: every cipher it has is an AEAD, and the handshake is
 * encrypted after the first flight.  The ciphers in our order, the
 * listener's order winning: AES-128-GCM first, which runs on the AES and
 * carry-less multiply instructions of any x86 server of the last decade
 * (GnuTLS otherwise let the client's list pick ChaCha20 here, no faster
 * on this CPU).  Both sides are hmig, so AES-GCM is always chosen, on a
 * CPU without those instructions too (where ChaCha20-Poly1305 would be
 * faster); ChaCha20 is in the list for a peer that offers no AES.  PSK
 * key exchange is (EC)DHE-PSK only, never plain PSK: a key that leaks
 * later must not open a recorded stream. */
#define PRIO_BASE "NORMAL:-VERS-ALL:+VERS-TLS1.3:-CIPHER-ALL:+AES-128-GCM:+AES-256-GCM:" \
		  "+CHACHA20-POLY1305:%SERVER_PRECEDENCE"
#define PRIO_X509 PRIO_BASE
#define PRIO_PSK PRIO_BASE ":+ECDHE-PSK:+DHE-PSK:-CTYPE-ALL"

/* A PSK shorter than this is a password, not a key: refuse it. */
#define PSK_MIN_BYTES 16
#define PSK_MAX_BYTES 64
#define PSK_IDENTITY_MAX 128

struct net_tls {
	bool server;
	bool psk;
	gnutls_certificate_credentials_t x509;
	gnutls_psk_client_credentials_t psk_client;
	gnutls_psk_server_credentials_t psk_server;
	char identity[PSK_IDENTITY_MAX + 1];
	uint8_t key[PSK_MAX_BYTES];
	size_t key_len;
};

void net_tls_free(struct net_tls *t)
{
	if (!t)
		return;
	if (t->x509)
		gnutls_certificate_free_credentials(t->x509);
	if (t->psk_client)
		gnutls_psk_free_client_credentials(t->psk_client);
	if (t->psk_server)
		gnutls_psk_free_server_credentials(t->psk_server);
	gnutls_memset(t->key, 0, sizeof(t->key));
	free(t);
}

static int hexval(int c)
{
	return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
					      : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* "identity:hexkey\n", psktool's format; the first line is the key. */
static int psk_load(struct net_tls *t, const char *path, char *err)
{
	char line[PSK_IDENTITY_MAX + 2 * PSK_MAX_BYTES + 8];
	FILE *f = fopen(path, "re");
	char *colon, *hex;
	size_t n;

	if (!f)
		return err_setf(err, -errno, "cannot read the pre-shared key %s: %s (make one with 'hmig keygen --psk FILE')",
				path, strerror(errno));
	if (!fgets(line, sizeof(line), f)) {
		fclose(f);
		return err_setf(err, -EINVAL, "the pre-shared key file %s is empty (make one with 'hmig keygen --psk FILE')",
				path);
	}
	fclose(f);
	line[strcspn(line, "\r\n")] = '\0';
	colon = strchr(line, ':');
	if (!colon || colon == line || (size_t)(colon - line) > PSK_IDENTITY_MAX)
		return err_setf(err, -EINVAL, "the pre-shared key file %s is not 'identity:hexkey' (psktool's format; 'hmig keygen --psk FILE' makes one)",
				path);
	*colon = '\0';
	hex = colon + 1;
	n = strlen(hex);
	if (n % 2 || n / 2 < PSK_MIN_BYTES || n / 2 > PSK_MAX_BYTES)
		return err_setf(err, -EINVAL, "the key in %s has %zu hex digits, needs an even number from %d to %d (a random key of 32 bytes: 'hmig keygen --psk FILE')",
				path, n, 2 * PSK_MIN_BYTES, 2 * PSK_MAX_BYTES);
	for (size_t i = 0; i < n / 2; i++) {
		int hi = hexval(hex[2 * i]), lo = hexval(hex[2 * i + 1]);

		if (hi < 0 || lo < 0)
			return err_setf(err, -EINVAL, "the key in %s has a character that is not a hex digit",
					path);
		t->key[i] = (uint8_t)(hi << 4 | lo);
	}
	t->key_len = n / 2;
	memcpy(t->identity, line, (size_t)(colon - line) + 1); /* checked <= PSK_IDENTITY_MAX */
	gnutls_memset(line, 0, sizeof(line));
	return 0;
}

/* The server's key lookup: only the one identity of the file. */
static int psk_lookup(gnutls_session_t s, const gnutls_datum_t *user, gnutls_datum_t *key)
{
	const struct net_tls *t = gnutls_session_get_ptr(s);

	if (user->size != strlen(t->identity) || memcmp(user->data, t->identity, user->size))
		return -1;
	key->data = gnutls_malloc(t->key_len);
	if (!key->data)
		return -1;
	memcpy(key->data, t->key, t->key_len);
	key->size = (unsigned)t->key_len;
	return 0;
}

static int gnutls_error(char *err, int rc, const char *what, const char *path)
{
	return err_setf(err, rc == GNUTLS_E_FILE_ERROR ? -ENOENT : -EINVAL,
			"%s %s: %s (make a set with 'hmig keygen --tls-creds DIR')", what, path,
			gnutls_strerror(rc));
}

static int x509_load(struct net_tls *t, const char *dir, char *err)
{
	const char *role = t->server ? "server" : "client";
	char ca[4096], cert[4096], key[4096];
	int rc;

	snprintf(ca, sizeof(ca), "%s/ca-cert.pem", dir);
	snprintf(cert, sizeof(cert), "%s/%s-cert.pem", dir, role);
	snprintf(key, sizeof(key), "%s/%s-key.pem", dir, role);
	if ((rc = gnutls_certificate_allocate_credentials(&t->x509)) < 0)
		return err_setf(err, -ENOMEM, "out of memory for TLS credentials");
	rc = gnutls_certificate_set_x509_trust_file(t->x509, ca, GNUTLS_X509_FMT_PEM);
	if (rc <= 0)
		return rc == 0 ? err_setf(err, -EINVAL, "no CA certificate in %s (make a set with 'hmig keygen --tls-creds DIR')", ca)
			       : gnutls_error(err, rc, "cannot load the CA certificate", ca);
	rc = gnutls_certificate_set_x509_key_file(t->x509, cert, key, GNUTLS_X509_FMT_PEM);
	if (rc < 0)
		return gnutls_error(err, rc, t->server ? "cannot load the server certificate and key" :
					"cannot load the client certificate and key", cert);
	return 0;
}

int net_tls_new(struct net_tls **out, const struct net_tls_config *cfg, bool server, char *err)
{
	struct net_tls *t;
	int rc;

	*out = NULL;
	if (!!cfg->creds_dir == !!cfg->psk_file)
		return err_setf(err, -EINVAL, "TLS needs exactly one of a credentials directory and a pre-shared key file");
	t = calloc(1, sizeof(*t));
	if (!t)
		return err_setf(err, -ENOMEM, "out of memory for TLS credentials");
	t->server = server;
	t->psk = cfg->psk_file != NULL;
	if (t->psk) {
		rc = psk_load(t, cfg->psk_file, err);
		if (!rc && server) {
			rc = gnutls_psk_allocate_server_credentials(&t->psk_server) < 0 ? -ENOMEM : 0;
			if (!rc)
				gnutls_psk_set_server_credentials_function2(t->psk_server, psk_lookup);
		} else if (!rc) {
			gnutls_datum_t k = { t->key, (unsigned)t->key_len };

			rc = gnutls_psk_allocate_client_credentials(&t->psk_client) < 0 ? -ENOMEM : 0;
			if (!rc && gnutls_psk_set_client_credentials(t->psk_client, t->identity, &k,
								     GNUTLS_PSK_KEY_RAW) < 0)
				rc = -EINVAL;
			if (rc)
				err_setf(err, rc, "cannot set up the pre-shared key of %s", cfg->psk_file);
		}
	} else {
		rc = x509_load(t, cfg->creds_dir, err);
	}
	if (rc) {
		net_tls_free(t);
		return rc;
	}
	*out = t;
	return 0;
}

int net_tls_session(const struct net_tls *t, int fd, gnutls_session_t *out, char *err)
{
	unsigned flags = (t->server ? GNUTLS_SERVER : GNUTLS_CLIENT) | GNUTLS_NONBLOCK |
			 GNUTLS_NO_TICKETS | GNUTLS_NO_SIGNAL;
	gnutls_session_t s;
	const char *where = NULL;
	int rc;

	*out = NULL;
	if ((rc = gnutls_init(&s, flags)) < 0)
		return err_setf(err, -ENOMEM, "cannot start a TLS session: %s", gnutls_strerror(rc));
	gnutls_session_set_ptr(s, (void *)t);
	rc = gnutls_priority_set_direct(s, t->psk ? PRIO_PSK : PRIO_X509, &where);
	if (rc >= 0 && t->psk)
		rc = gnutls_credentials_set(s, GNUTLS_CRD_PSK,
					    t->server ? (void *)t->psk_server : (void *)t->psk_client);
	if (rc >= 0 && !t->psk) {
		/* Mutual: the listener demands the connector's certificate, and
		 * each side checks the other's against the CA and its role. */
		static gnutls_typed_vdata_st server_purpose = {
			GNUTLS_DT_KEY_PURPOSE_OID, (unsigned char *)GNUTLS_KP_TLS_WWW_SERVER, 0 };
		static gnutls_typed_vdata_st client_purpose = {
			GNUTLS_DT_KEY_PURPOSE_OID, (unsigned char *)GNUTLS_KP_TLS_WWW_CLIENT, 0 };

		rc = gnutls_credentials_set(s, GNUTLS_CRD_CERTIFICATE, t->x509);
		if (t->server)
			gnutls_certificate_server_set_request(s, GNUTLS_CERT_REQUIRE);
		if (rc >= 0)
			gnutls_session_set_verify_cert2(s, t->server ? &client_purpose : &server_purpose, 1, 0);
	}
	if (rc < 0) {
		gnutls_deinit(s);
		return err_setf(err, -EINVAL, "cannot set up a TLS session: %s%s%s", gnutls_strerror(rc),
				where ? " at " : "", where ? where : "");
	}
	gnutls_transport_set_int(s, fd);
	gnutls_handshake_set_timeout(s, 0); /* the caller's deadline bounds it */
	*out = s;
	return 0;
}

int net_tls_handshake(gnutls_session_t s, short *events, char *err)
{
	int rc = gnutls_handshake(s);

	if (rc == GNUTLS_E_SUCCESS)
		return 0;
	if (rc == GNUTLS_E_AGAIN || rc == GNUTLS_E_INTERRUPTED) {
		*events = gnutls_record_get_direction(s) ? POLLOUT : POLLIN;
		return -EAGAIN;
	}
	if (rc == GNUTLS_E_WARNING_ALERT_RECEIVED && gnutls_alert_get(s) != GNUTLS_A_CLOSE_NOTIFY) {
		*events = POLLIN;
		return -EAGAIN;
	}
	switch (rc) {
	case GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR:
	case GNUTLS_E_CERTIFICATE_ERROR:
	case GNUTLS_E_NO_CERTIFICATE_FOUND:
		return err_setf(err, -EACCES, "TLS: the peer's certificate does not verify (signed by another CA, expired, or not a TLS %s certificate)",
				gnutls_session_get_ptr(s) && ((const struct net_tls *)gnutls_session_get_ptr(s))->server ? "client" : "server");
	case GNUTLS_E_DECRYPTION_FAILED:
	case GNUTLS_E_KEY_USAGE_VIOLATION:
	case GNUTLS_E_INSUFFICIENT_CREDENTIALS:
	case GNUTLS_E_RECEIVED_DISALLOWED_NAME:
		return err_setf(err, -EACCES, "TLS: authentication failed: %s (another pre-shared key or credential set?)",
				gnutls_strerror(rc));
	case GNUTLS_E_FATAL_ALERT_RECEIVED:
		return err_setf(err, -EACCES, "TLS: the peer refused the handshake: %s (another key or credential set on its side?)",
				gnutls_alert_get_name(gnutls_alert_get(s)));
	case GNUTLS_E_PREMATURE_TERMINATION:
	case GNUTLS_E_PULL_ERROR:
	case GNUTLS_E_PUSH_ERROR:
		return err_setf(err, -ECONNRESET, "TLS: the peer closed the connection during the handshake (another key or credential set on its side, or no TLS there: --insecure?)");
	case GNUTLS_E_UNEXPECTED_PACKET_LENGTH:
	case GNUTLS_E_UNSUPPORTED_VERSION_PACKET:
	case GNUTLS_E_UNEXPECTED_PACKET:
		return err_setf(err, -EPROTO, "TLS: the peer does not speak TLS 1.3 (%s)", gnutls_strerror(rc));
	default:
		return err_setf(err, -EPROTO, "TLS handshake failed: %s", gnutls_strerror(rc));
	}
}

void net_tls_describe(gnutls_session_t s, int fd, struct net_tls_info *info)
{
	const struct net_tls *t = gnutls_session_get_ptr(s);
	char raw[512] = "";
	const char *group = gnutls_group_get_name(gnutls_group_get(s));

	memset(info, 0, sizeof(*info));
	info->encrypted = true;
	snprintf(info->auth, sizeof(info->auth), "%s", t->psk ? "psk" : "x509");
	/* "TLS1.3 AES-128-GCM ECDHE-X25519": version, cipher, and the group of
	 * the (EC)DHE exchange, the one part that shows a PSK session did
	 * forward secrecy (GnuTLS's own description leaves it out there). */
	snprintf(info->cipher, sizeof(info->cipher), "%s %s %s%s",
		 gnutls_protocol_get_name(gnutls_protocol_get_version(s)),
		 gnutls_cipher_get_name(gnutls_cipher_get(s)),
		 group && strncmp(group, "FFDHE", 5) ? "ECDHE-" : group ? "DHE-" : "no DHE",
		 group ? group : "");
	if (t->psk) {
		/* The server learns the identity; the client knows its own. */
		const char *u = t->server ? gnutls_psk_server_get_username(s) : t->identity;

		snprintf(raw, sizeof(raw), "psk:%s", u ? u : "");
	} else {
		unsigned n = 0;
		const gnutls_datum_t *certs = gnutls_certificate_get_peers(s, &n);
		gnutls_x509_crt_t crt;
		gnutls_datum_t dn = { 0 };

		if (n && gnutls_x509_crt_init(&crt) == 0) {
			if (gnutls_x509_crt_import(crt, &certs[0], GNUTLS_X509_FMT_DER) == 0 &&
			    gnutls_x509_crt_get_dn3(crt, &dn, 0) == 0) {
				snprintf(raw, sizeof(raw), "%.*s", (int)dn.size, (const char *)dn.data);
				gnutls_free(dn.data);
			}
			gnutls_x509_crt_deinit(crt);
		}
	}
	/* A certificate's name is the peer's text: escaped like any. */
	esc_text(info->peer, sizeof(info->peer), raw, strlen(raw));
	/* kTLS: attaching the "tls" upper-layer protocol without keys leaves a
	 * plain TCP data path, so the probe is harmless; this kernel (and
	 * hmig) then still does TLS in user space: see docs/architecture.md. */
	const char ulp[] = "tls";
	info->ktls_available = fd >= 0 && setsockopt(fd, IPPROTO_TCP, TCP_ULP, ulp, sizeof(ulp) - 1) == 0;
	info->ktls = false;
}
