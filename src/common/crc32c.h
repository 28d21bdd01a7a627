/* CRC32C (Castagnoli, the iSCSI / ext4 / SCTP checksum) of page data on a
 * plaintext stream (docs/protocol.md, PAGES).
 *
 * With TLS the AEAD tag already proves every byte; a stream run with
 * --insecure has only TCP's 16-bit checksum, which a bad NIC, a bad switch
 * buffer or a middlebox rewriting payload slips past, so each page carries
 * its CRC32C and the destination checks it before the page goes in.
 * CRC32C and not CRC32: x86 has an instruction for it (SSE4.2 crc32), used
 * when the CPU has it, found at run time; elsewhere a 256-entry table.
 */
#ifndef HMIG_COMMON_CRC32C_H
#define HMIG_COMMON_CRC32C_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* CRC32C of p[0..n), the standard way (initial ~0, final ~): "123456789"
 * gives 0xe3069283. */
uint32_t crc32c(const void *p, size_t n);

/* Copies src[0..n) to dst and returns the CRC32C of the bytes copied, in one
 * pass: the source checksums a copy, never live guest memory, which may
 * change between the checksum and the send. */
uint32_t crc32c_copy(void *dst, const void *src, size_t n);

/* The portable table-driven version, whatever the CPU: tests compare the
 * two. */
uint32_t crc32c_sw(const void *p, size_t n);

/* Whether crc32c() uses the CPU's instruction (for reports and docs). */
bool crc32c_hw(void);

#endif
