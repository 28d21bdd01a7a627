/* Credentials for the channels' TLS (src/net/tls.h): what 'hmig keygen'
 * writes, and what the tests make their keys with.  GnuTLS does all the
 * cryptography; this only fills in certificates and writes files. */
#ifndef HMIG_TOOLS_KEYGEN_H
#define HMIG_TOOLS_KEYGEN_H

/* A random 32-byte pre-shared key as "identity:hexkey" (psktool's format),
 * mode 0600.  0, or -errno with one line in err (256 bytes). */
int keygen_psk(const char *path, const char *identity, char *err);

/* A credentials directory as QEMU's tls-creds-x509 reads it: a new CA
 * (ca-cert.pem; its key is not kept), and server-cert.pem/server-key.pem
 * and client-cert.pem/client-key.pem signed by it, ECDSA P-256, valid 10
 * years; keys mode 0600.  The directory is created (0700) if missing.
 * `name` goes into the subjects' CNs ("hmig <name> CA", ...). */
int keygen_x509(const char *dir, const char *name, char *err);

#endif
