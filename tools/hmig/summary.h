/* The human summary of a report, printed from its JSON so that 'send',
 * 'recv', 'demo' and 'report FILE' all say the same thing the same way. */
#ifndef HMIG_TOOLS_SUMMARY_H
#define HMIG_TOOLS_SUMMARY_H

#include <stdio.h>

#include "stats/json.h"

void summary_print(const struct json_val *report, FILE *f);

/* Writes a report through `write` into memory and parses it back. */
int summary_capture(int (*write)(void *ctx, FILE *f), void *ctx, struct json_val *out,
		    char **text, size_t *len);

#endif
