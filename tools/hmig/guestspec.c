/* The CLI's backend choice.  The library has no by-name chooser on purpose:
 * backends differ in what names a guest (synth's parameters, a Xen domid),
 * so each has typed openers, and turning text into one of them is option
 * parsing, which is the CLI's job. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "guestspec.h"

int guest_spec_parse(const char *spec, struct guest_spec *gs, char *err)
{
	size_t n = strcspn(spec, ":");

	if (n == strlen("synth") && !strncmp(spec, "synth", n)) {
		if (spec[n]) {
			snprintf(err, 256,
				 "--guest synth takes no options after ':' (set the guest with --mem, --vcpus, --workload, --fill, --seed)");
			return -EINVAL;
		}
		gs->backend = GUEST_SYNTH;
		return 0;
	}
	if (n == strlen("xen") && !strncmp(spec, "xen", n)) {
		snprintf(err, 256,
			 "guest backend 'xen' is not built in: install libxen-dev and rebuild (meson -Dxen=enabled)");
		return -EOPNOTSUPP;
	}
	snprintf(err, 256, "unknown guest backend '%.*s': use 'synth'", (int)n, spec);
	return -EINVAL;
}

int guest_check_source(const struct guest_spec *gs, char *err)
{
	switch (gs->backend) {
	case GUEST_SYNTH:
		return hmig_synth_params_check(&gs->synth, err);
	}
	snprintf(err, 256, "no guest backend chosen (caller bug)");
	return -EINVAL;
}

int guest_open_source(const struct guest_spec *gs, struct hmig_guest **out, char *err)
{
	switch (gs->backend) {
	case GUEST_SYNTH:
		return hmig_synth_open(&gs->synth, out, err);
	}
	*out = NULL;
	snprintf(err, 256, "no guest backend chosen (caller bug)");
	return -EINVAL;
}

int guest_open_dest(const struct guest_spec *gs, struct hmig_guest **out, char *err)
{
	switch (gs->backend) {
	case GUEST_SYNTH:
		return hmig_synth_open_dest(out, err);
	}
	*out = NULL;
	snprintf(err, 256, "no guest backend chosen (caller bug)");
	return -EINVAL;
}
