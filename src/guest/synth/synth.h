/* The synth guest's test-only openers: <hmig/synth.h>'s, with pfns that
 * never move.
 *
 * `holes` pfns of the guest's pfn space are never sent (pfns_never_sent):
 * they lie in a gap between the data pages and the oracle's version table
 * that the guest never touches (synth.c, holes_walk), the way a Xen guest's
 * pfn space has holes.  The public openers are these with 0.
 *
 * A destination must be opened with its source's count: the wire does not
 * carry it, as a Xen destination domain is built from its source's
 * configuration.  A destination with another count refuses the source's
 * vCPU state by name (-EPROTO). */
#ifndef HMIG_GUEST_SYNTH_H
#define HMIG_GUEST_SYNTH_H

#include <hmig/synth.h>

int synth_open_holed(const struct hmig_synth_params *params, uint64_t holes,
		     struct hmig_guest **out, char *errbuf);
int synth_open_dest_holed(uint64_t holes, struct hmig_guest **out, char *errbuf);

#endif
