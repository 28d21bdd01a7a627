/* The built-in synth guest: see synth.c. */
#ifndef HMIG_GUEST_SYNTH_H
#define HMIG_GUEST_SYNTH_H

#include <hmig/guest.h>

/* Creates a synth guest: a source when params is non-NULL (memory filled and
 * vCPUs ready to run), an empty destination when NULL. */
int synth_open(const struct hmig_synth_params *params, struct hmig_guest **out,
	       char *errbuf);

#endif
