/* The live progress line of send, recv and demo: one line of a running
 * migration's figures (struct hmig_status), for a terminal's '\r'-updated
 * line or a plain log line. */
#ifndef HMIG_TOOLS_LIVE_H
#define HMIG_TOOLS_LIVE_H

#include <stdbool.h>
#include <stddef.h>

#include <hmig/hmig.h>

/* Formats st, as seen from the source (source) or the destination, into
 * buf: before the switch the phase, pass, MiB moved, the pass's share done,
 * the dirty rate and the pass's ETA; after it the pages present, pulls/s and
 * push MiB/s.  What the side does not know is "-". */
void live_format(const struct hmig_status *st, bool source, char *buf, size_t len);

#endif
