/* --guest SPEC: which backend a command moves, and the one place the CLI
 * picks that backend's opener for each side. */
#ifndef HMIG_TOOLS_GUESTSPEC_H
#define HMIG_TOOLS_GUESTSPEC_H

#include <hmig/guest.h>
#include <hmig/synth.h>

enum guest_backend {
	GUEST_SYNTH = 1,
};

struct guest_spec {
	enum guest_backend backend;
	/* The synth option group (--mem, --vcpus, --workload, --fill, --seed):
	 * a synth source is made of these.  Another backend's options sit
	 * beside them, each read only by its own opener. */
	struct hmig_synth_params synth;
};

/* Parses SPEC, "NAME[:key=value,...]": the backend's name, then what names
 * its guest where it has one (a later "xen:domid=5").  Sets gs->backend only.
 * 0, or -EINVAL (unknown name, options a backend does not take) or
 * -EOPNOTSUPP (a backend this hmig was built without) with one line in err
 * (256 bytes). */
int guest_spec_parse(const char *spec, struct guest_spec *gs, char *err);

/* Checks what guest_open_source would refuse of the chosen backend's
 * options, without building a guest: 0, or -EINVAL with one line in err. */
int guest_check_source(const struct guest_spec *gs, char *err);

/* A source guest (not yet running) and an empty destination guest of the
 * chosen backend, through its typed opener: 0, or -errno with one line in
 * err and *out NULL. */
int guest_open_source(const struct guest_spec *gs, struct hmig_guest **out, char *err);
int guest_open_dest(const struct guest_spec *gs, struct hmig_guest **out, char *err);

#endif
