/* The human summary of a report, printed from its JSON so that 'send',
 * 'recv', 'demo' and 'report FILE' all say the same thing the same way. */
#ifndef HMIG_TOOLS_SUMMARY_H
#define HMIG_TOOLS_SUMMARY_H

#include <stdbool.h>
#include <stdio.h>

#include "cmd.h"
#include "doc.h"
#include "guestspec.h"

/* Prints a report (a source's, a destination's or a merged one) as an
 * 'info migrate'-like summary: one labelled line per figure, "-" for what
 * the report does not have. */
void summary_print(const json_t *report, FILE *f);

/* A size in bytes as "1.0 GiB", "256.0 MiB" or "64 KiB". */
void summary_size(char *buf, size_t len, double bytes);

/* Writes a report through `write` into memory and parses it back. */
int summary_capture(int (*write)(void *ctx, FILE *f), void *ctx, json_t **out,
		    char **text, size_t *len);

/* Writes the library's report (through `write`) to f, with the guest
 * backend's own figures added (guest_report_extras): the report of send and
 * recv.  A guest with none gets the library's text unchanged.  0 or -errno. */
int report_with_guest(int (*write)(void *ctx, FILE *f), void *ctx, struct hmig_guest *g,
		      FILE *f);

/* The tail of send and recv: captures the report written by `write`, prints
 * its summary unless quiet, writes it to out (if one was asked for).  0, or
 * -1 when the file could not be written (the reason is printed). */
int summary_finish(int (*write)(void *ctx, FILE *f), void *ctx, bool quiet,
		   struct outfile *out);

#endif
