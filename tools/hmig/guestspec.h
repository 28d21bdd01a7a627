/* --guest SPEC: which backend a command moves, and the one place the CLI
 * picks that backend's opener for each side. */
#ifndef HMIG_TOOLS_GUESTSPEC_H
#define HMIG_TOOLS_GUESTSPEC_H

#include <jansson.h>

#include <hmig/guest.h>
#include <hmig/synth.h>
#include <hmig/xen.h>

enum guest_backend {
	GUEST_SYNTH = 1,
	GUEST_XEN,
};

struct guest_spec {
	enum guest_backend backend;
	/* The synth option group (--mem, --vcpus, --workload, --fill, --seed):
	 * a synth source is made of these.  Another backend's options sit
	 * beside them, each read only by its own opener. */
	struct hmig_synth_params synth;
	/* --guest xen:domid=N[,digest=on|off]: the domain, and the source's
	 * options (digest_set: digest= was given, which recv refuses). */
	struct {
		uint32_t domid;
		bool digest_set, prearm_set;
		struct hmig_xen_options opts;
	} xen;
};

/* Parses SPEC, "NAME[:key=value,...]": the backend's name, then what names
 * its guest where it has one ("xen:domid=5").  Sets gs->backend and that
 * backend's part of gs.  0, or -EINVAL (unknown name, options a backend
 * does not take, a bad value) with one line in err (256 bytes).  A backend
 * this hmig was built without parses; its opener says so (-EOPNOTSUPP). */
int guest_spec_parse(const char *spec, struct guest_spec *gs, char *err);

/* Checks what guest_open_source would refuse of the chosen backend's
 * options, without building a guest: 0, or -EINVAL with one line in err. */
int guest_check_source(const struct guest_spec *gs, char *err);

/* A source guest (not yet running) and an empty destination guest of the
 * chosen backend, through its typed opener: 0, or -errno with one line in
 * err and *out NULL. */
int guest_open_source(const struct guest_spec *gs, struct hmig_guest **out, char *err);
int guest_open_dest(const struct guest_spec *gs, struct hmig_guest **out, char *err);

/* The backend's own figures for a report, under its name ("xen":
 * hmig_xen_stats), added to doc: true when it added any. */
bool guest_report_extras(struct hmig_guest *g, json_t *doc);

#endif
