#include "keygen.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <gnutls/gnutls.h>
#include <gnutls/crypto.h>
#include <gnutls/x509.h>

#define PSK_BYTES 32
/* Ten years: these are a migration network's own credentials, replaced
 * by making a new set, not by expiry. */
#define VALID_S (10ll * 365 * 86400)

static int write_file(const char *path, const void *data, size_t len, mode_t mode, char *err)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
	ssize_t n;

	if (fd < 0) {
		snprintf(err, 256, "cannot write %.180s: %s", path, strerror(errno));
		return -errno;
	}
	/* An existing file keeps its mode through O_CREAT: set it. */
	fchmod(fd, mode);
	n = write(fd, data, len);
	if (close(fd) || n != (ssize_t)len) {
		snprintf(err, 256, "cannot write %.180s: %s", path, strerror(errno ? errno : EIO));
		return -EIO;
	}
	return 0;
}

int keygen_psk(const char *path, const char *identity, char *err)
{
	unsigned char key[PSK_BYTES];
	char line[256 + 2 * PSK_BYTES];
	int n, rc;

	if (!identity[0] || strchr(identity, ':') || strchr(identity, '\n') || strlen(identity) > 128) {
		snprintf(err, 256, "PSK identity '%.64s' must be 1..128 characters without ':' or newline",
			 identity);
		return -EINVAL;
	}
	if (gnutls_rnd(GNUTLS_RND_KEY, key, sizeof(key)) < 0) {
		snprintf(err, 256, "no random bytes for the key");
		return -EIO;
	}
	n = snprintf(line, sizeof(line), "%s:", identity);
	for (int i = 0; i < PSK_BYTES; i++)
		n += snprintf(line + n, sizeof(line) - (size_t)n, "%02x", key[i]);
	line[n++] = '\n';
	rc = write_file(path, line, (size_t)n, 0600, err);
	gnutls_memset(key, 0, sizeof(key));
	gnutls_memset(line, 0, sizeof(line));
	return rc;
}

/* Everything below fails the same way: name the step. */
#define TRY(call, what)                                                            \
	do {                                                                       \
		int r_ = (call);                                                   \
		if (r_ < 0) {                                                      \
			snprintf(err, 256, "keygen: %s: %s", what, gnutls_strerror(r_)); \
			rc = -EIO;                                                 \
			goto out;                                                  \
		}                                                                  \
	} while (0)

static int new_key(gnutls_x509_privkey_t *k)
{
	int rc = gnutls_x509_privkey_init(k);

	if (rc < 0)
		return rc;
	return gnutls_x509_privkey_generate(*k, GNUTLS_PK_ECDSA,
					    GNUTLS_CURVE_TO_BITS(GNUTLS_ECC_CURVE_SECP256R1), 0);
}

/* The fields every certificate here has: version, a random serial, the
 * subject, validity from an hour ago (clock skew) for ten years, its key. */
static int cert_base(gnutls_x509_crt_t c, gnutls_x509_privkey_t key, const char *dn)
{
	unsigned char serial[16];
	time_t now = time(NULL);
	int rc;

	if ((rc = gnutls_rnd(GNUTLS_RND_NONCE, serial, sizeof(serial))) < 0)
		return rc;
	serial[0] &= 0x7f; /* positive */
	if ((rc = gnutls_x509_crt_set_version(c, 3)) < 0 ||
	    (rc = gnutls_x509_crt_set_serial(c, serial, sizeof(serial))) < 0 ||
	    (rc = gnutls_x509_crt_set_dn(c, dn, NULL)) < 0 ||
	    (rc = gnutls_x509_crt_set_activation_time(c, now - 3600)) < 0 ||
	    (rc = gnutls_x509_crt_set_expiration_time(c, (time_t)(now + VALID_S))) < 0 ||
	    (rc = gnutls_x509_crt_set_key(c, key)) < 0)
		return rc;
	unsigned char id[64];
	size_t idlen = sizeof(id);
	if ((rc = gnutls_x509_crt_get_key_id(c, GNUTLS_KEYID_USE_SHA1, id, &idlen)) < 0)
		return rc;
	return gnutls_x509_crt_set_subject_key_id(c, id, idlen);
}

static int export(gnutls_x509_crt_t c, gnutls_x509_privkey_t k, const char *dir,
		  const char *role, char *err)
{
	gnutls_datum_t d = { 0 };
	char path[4096];
	int rc;

	snprintf(path, sizeof(path), "%s/%s-cert.pem", dir, role);
	if ((rc = gnutls_x509_crt_export2(c, GNUTLS_X509_FMT_PEM, &d)) < 0) {
		snprintf(err, 256, "keygen: export %.150s: %s", path, gnutls_strerror(rc));
		return -EIO;
	}
	rc = write_file(path, d.data, d.size, 0644, err);
	gnutls_free(d.data);
	if (rc || !k)
		return rc;
	snprintf(path, sizeof(path), "%s/%s-key.pem", dir, role);
	if ((rc = gnutls_x509_privkey_export2(k, GNUTLS_X509_FMT_PEM, &d)) < 0) {
		snprintf(err, 256, "keygen: export %.150s: %s", path, gnutls_strerror(rc));
		return -EIO;
	}
	rc = write_file(path, d.data, d.size, 0600, err);
	gnutls_memset(d.data, 0, d.size);
	gnutls_free(d.data);
	return rc;
}

/* A leaf for one role, signed by the CA. */
static int leaf(gnutls_x509_crt_t ca, gnutls_x509_privkey_t cakey, const char *dir,
		const char *name, bool server, char *err)
{
	gnutls_x509_crt_t c = NULL;
	gnutls_x509_privkey_t k = NULL;
	unsigned char akid[64];
	size_t akid_len = sizeof(akid);
	char dn[256];
	int rc = 0;

	snprintf(dn, sizeof(dn), "CN=hmig %s %s,O=hmig", name, server ? "destination" : "source");
	TRY(new_key(&k), "key generation");
	TRY(gnutls_x509_crt_init(&c), "certificate");
	TRY(cert_base(c, k, dn), "certificate fields");
	TRY(gnutls_x509_crt_set_basic_constraints(c, 0, -1), "basic constraints");
	TRY(gnutls_x509_crt_set_key_usage(c, GNUTLS_KEY_DIGITAL_SIGNATURE), "key usage");
	TRY(gnutls_x509_crt_set_key_purpose_oid(c, server ? GNUTLS_KP_TLS_WWW_SERVER
							  : GNUTLS_KP_TLS_WWW_CLIENT, 0),
	    "key purpose");
	TRY(gnutls_x509_crt_get_subject_key_id(ca, akid, &akid_len, NULL), "CA key id");
	TRY(gnutls_x509_crt_set_authority_key_id(c, akid, akid_len), "authority key id");
	TRY(gnutls_x509_crt_sign2(c, ca, cakey, GNUTLS_DIG_SHA256, 0), "signing");
	rc = export(c, k, dir, server ? "server" : "client", err);
out:
	if (c)
		gnutls_x509_crt_deinit(c);
	if (k)
		gnutls_x509_privkey_deinit(k);
	return rc;
}

int keygen_x509(const char *dir, const char *name, char *err)
{
	gnutls_x509_crt_t ca = NULL;
	gnutls_x509_privkey_t cakey = NULL;
	char dn[256];
	int rc = 0;

	if (mkdir(dir, 0700) && errno != EEXIST) {
		snprintf(err, 256, "cannot make %.180s: %s", dir, strerror(errno));
		return -errno;
	}
	snprintf(dn, sizeof(dn), "CN=hmig %s CA,O=hmig", name);
	TRY(new_key(&cakey), "CA key generation");
	TRY(gnutls_x509_crt_init(&ca), "CA certificate");
	TRY(cert_base(ca, cakey, dn), "CA certificate fields");
	TRY(gnutls_x509_crt_set_basic_constraints(ca, 1, 0), "CA basic constraints");
	TRY(gnutls_x509_crt_set_key_usage(ca, GNUTLS_KEY_KEY_CERT_SIGN | GNUTLS_KEY_CRL_SIGN),
	    "CA key usage");
	TRY(gnutls_x509_crt_sign2(ca, ca, cakey, GNUTLS_DIG_SHA256, 0), "CA self-signing");
	if ((rc = export(ca, NULL, dir, "ca", err)) ||
	    (rc = leaf(ca, cakey, dir, name, true, err)) ||
	    (rc = leaf(ca, cakey, dir, name, false, err)))
		goto out;
out:
	if (ca)
		gnutls_x509_crt_deinit(ca);
	if (cakey)
		gnutls_x509_privkey_deinit(cakey); /* the CA key is not kept */
	return rc;
}
