/* Error text kept next to a negative errno.
 *
 * Every layer returns 0 / a count or -errno.  The human-readable line (what went
 * wrong and what to do about it) is written into a fixed buffer owned by the
 * caller's context; the CLI prints it.  The library never prints on its own.
 */
#ifndef HMIG_COMMON_ERR_H
#define HMIG_COMMON_ERR_H

#include <stddef.h>

/* Long enough for one line naming the problem and its remedy. */
#define ERR_LEN 256

/* Formats fmt into buf (ERR_LEN bytes) and returns rc, so a failure site reads
 * `return err_setf(ctx->err, -EINVAL, "...")`.  Overwrites what was there. */
int err_setf(char *buf, int rc, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Like err_setf but keeps an earlier message: the first error is the cause,
 * later ones are usually its consequences. */
int err_keepf(char *buf, int rc, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#endif
