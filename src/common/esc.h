/* Peer text made harmless: the one helper every string that came from the
 * other side (or from a report file) goes through before it reaches a
 * terminal or a report.
 *
 * A migration peer chooses bytes that end up in summaries and error lines:
 * an ERROR record's text, the workload inside VCPU_STATE, a certificate's
 * name.  Printed raw, an escape sequence there sets the window title, clears
 * the screen or moves the cursor over the verdict.  So every byte that is not
 * printable becomes the four characters \xNN: the C0 controls and DEL, the C1
 * controls (U+0080..U+009F, which 8-bit terminals read as ESC [ and the like),
 * and every byte that does not start well-formed UTF-8.  Printable ASCII and
 * printable UTF-8 pass unchanged, backslash included, so escaping twice gives
 * the same text as escaping once: the library escapes what it writes and the
 * CLI escapes what it reads, and nothing shows doubled.
 *
 * Shared by the library and the CLI (built into both from this one file).
 */
#ifndef HMIG_COMMON_ESC_H
#define HMIG_COMMON_ESC_H

#include <stdbool.h>
#include <stddef.h>

/* Bytes escaping n bytes may take at most, without the NUL. */
#define ESC_MAX(n) (4 * (n))

/* Writes the escaped form of src[0..n) into dst (dstlen bytes, NUL-terminated
 * when dstlen > 0), cutting on a character boundary when it does not fit.
 * Returns the length written, without the NUL. */
size_t esc_text(char *dst, size_t dstlen, const char *src, size_t n);

/* The same for a NUL-terminated string, in place (buf holds len bytes): what
 * an error line quoting a peer goes through before anyone prints it. */
void esc_inplace(char *buf, size_t len);

/* Whether s[0..n) would come out of esc_text unchanged. */
bool esc_is_clean(const char *s, size_t n);

#endif
