/* The CLI's backend choice.  The library has no by-name chooser on purpose:
 * backends differ in what names a guest (synth's parameters, a Xen domid),
 * so each has typed openers, and turning text into one of them is option
 * parsing, which is the CLI's job. */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "guestspec.h"

/* "on"/"off" (or 1/0) for a switch in a spec. */
static int parse_switch(const char *key, const char *v, size_t n, bool *out, char *err)
{
	if ((n == 2 && !strncmp(v, "on", 2)) || (n == 1 && *v == '1'))
		*out = true;
	else if ((n == 3 && !strncmp(v, "off", 3)) || (n == 1 && *v == '0'))
		*out = false;
	else {
		snprintf(err, 256, "--guest xen: bad %s '%.*s' (use on or off)", key, (int)n, v);
		return -EINVAL;
	}
	return 0;
}

/* xen:domid=N[,digest=on|off][,prearm=on|off] */
static int parse_xen(const char *opts, struct guest_spec *gs, char *err)
{
	bool have_domid = false;

	memset(&gs->xen, 0, sizeof(gs->xen));
	while (*opts) {
		size_t len = strcspn(opts, ","), klen = strcspn(opts, "=");
		const char *v = opts + klen + 1;
		size_t vlen = len - klen - 1;

		if (klen >= len || vlen == 0) {
			snprintf(err, 256, "--guest xen: '%.*s' is not key=value (e.g. xen:domid=5)",
				 (int)len, opts);
			return -EINVAL;
		}
		if (klen == 5 && !strncmp(opts, "domid", 5)) {
			char buf[16], *end;
			unsigned long d;

			snprintf(buf, sizeof(buf), "%.*s", (int)(vlen < 15 ? vlen : 15), v);
			errno = 0;
			d = strtoul(buf, &end, 10);
			if (vlen > 10 || *end || errno || !d || d >= 0x7ff0 || !isdigit((unsigned char)*v)) {
				snprintf(err, 256, "--guest xen: bad domid '%.*s' (a domain id from `xl list`, not 0)",
					 (int)vlen, v);
				return -EINVAL;
			}
			gs->xen.domid = (uint32_t)d;
			have_domid = true;
		} else if (klen == 6 && !strncmp(opts, "digest", 6)) {
			if (parse_switch("digest", v, vlen, &gs->xen.opts.digest, err))
				return -EINVAL;
			gs->xen.digest_set = true;
		} else if (klen == 6 && !strncmp(opts, "prearm", 6)) {
			if (parse_switch("prearm", v, vlen, &gs->xen.opts.prearm, err))
				return -EINVAL;
			gs->xen.prearm_set = true;
		} else {
			snprintf(err, 256, "--guest xen: unknown option '%.*s' (xen takes domid=N, digest=on|off and prearm=on|off)",
				 (int)klen, opts);
			return -EINVAL;
		}
		opts += len + (opts[len] == ',');
	}
	if (!have_domid) {
		snprintf(err, 256, "--guest xen needs the domain: --guest xen:domid=N (N from `xl list`)");
		return -EINVAL;
	}
	return 0;
}

int guest_spec_parse(const char *spec, struct guest_spec *gs, char *err)
{
	size_t n = strcspn(spec, ":");
	int rc;

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
		if ((rc = parse_xen(spec[n] ? spec + n + 1 : "", gs, err)))
			return rc;
		gs->backend = GUEST_XEN;
		return 0;
	}
	snprintf(err, 256, "unknown guest backend '%.*s': use synth or xen:domid=N", (int)n, spec);
	return -EINVAL;
}

int guest_check_source(const struct guest_spec *gs, char *err)
{
	switch (gs->backend) {
	case GUEST_SYNTH:
		return hmig_synth_params_check(&gs->synth, err);
	case GUEST_XEN:
		/* guest_spec_parse checked the domid; the domain itself is the
		 * opener's to find. */
		if (gs->xen.prearm_set) {
			snprintf(err, 256,
				 "--guest xen: prearm= is the destination's option (hmig recv), it makes the frames missing there");
			return -EINVAL;
		}
		return 0;
	}
	snprintf(err, 256, "no guest backend chosen (caller bug)");
	return -EINVAL;
}

int guest_open_source(const struct guest_spec *gs, struct hmig_guest **out, char *err)
{
	switch (gs->backend) {
	case GUEST_SYNTH:
		return hmig_synth_open(&gs->synth, out, err);
	case GUEST_XEN:
		return hmig_xen_open(gs->xen.domid, &gs->xen.opts, out, err);
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
	case GUEST_XEN:
		if (gs->xen.digest_set) {
			*out = NULL;
			snprintf(err, 256,
				 "--guest xen: digest= is the source's option (the destination checks whatever digest the source sends)");
			return -EINVAL;
		}
		return hmig_xen_open_dest(gs->xen.domid, &gs->xen.opts, out, err);
	}
	*out = NULL;
	snprintf(err, 256, "no guest backend chosen (caller bug)");
	return -EINVAL;
}

static json_t *num_or_null(double v)
{
	return isnan(v) ? json_null() : json_real(v);
}

bool guest_report_extras(struct hmig_guest *g, json_t *doc)
{
	struct hmig_xen_stats xs;

	if (strcmp(g->ops->name, "xen") || hmig_xen_stats(g, &xs))
		return false;
	json_t *o = json_pack("{s:I, s:I, s:I, s:o, s:b, s:b, s:I, s:o}", "domid",
			      (json_int_t)xs.domid, "frames", (json_int_t)xs.frames,
			      "never_sent", (json_int_t)xs.never_sent, "open_ms",
			      num_or_null(xs.open_ms), "hmigt", xs.hmigt, "digest", xs.digest,
			      "digest_frames", (json_int_t)xs.digest_frames,
			      "digest_ms", num_or_null(xs.digest ? xs.digest_ms : NAN));
	if (o && xs.hmigt && xs.ops_at_pause != UINT64_MAX)
		json_object_set_new(o, "ops_at_pause", json_integer((json_int_t)xs.ops_at_pause));
	if (o && xs.replay_pages) {
		json_object_set_new(o, "replay_ops", json_integer((json_int_t)xs.replay_ops));
		json_object_set_new(o, "replay_pages", json_integer((json_int_t)xs.replay_pages));
		json_object_set_new(o, "replay_ms", num_or_null(xs.replay_ms));
	}
	/* A destination: could it post-copy, and what did paging cost. */
	if (o && xs.destination) {
		json_object_set_new(o, "paging_available", json_boolean(xs.paging_available));
		json_object_set_new(o, "paging", json_boolean(xs.paging));
	}
	if (o && xs.paging) {
		json_t *p = json_pack("{s:I, s:o, s:o, s:I, s:o, s:o, s:I, s:I, s:o}", "evicted",
				      (json_int_t)xs.evicted, "evict_ms", num_or_null(xs.evict_ms),
				      "evict_us_per_frame",
				      num_or_null(xs.evicted ? xs.evict_ms * 1e3 / (double)xs.evicted : NAN),
				      "loaded", (json_int_t)xs.loaded, "load_ms", num_or_null(xs.load_ms),
				      "load_us_per_frame",
				      num_or_null(xs.loaded ? xs.load_ms * 1e3 / (double)xs.loaded : NAN),
				      "requests", (json_int_t)xs.requests, "foreign_requests",
				      (json_int_t)xs.foreign_requests, "off_ms",
				      num_or_null(xs.paging_off_ms));
		if (p && xs.requests) {
			json_object_set_new(p, "wait_max_ms", num_or_null(xs.wait_max_ms));
			json_object_set_new(p, "wait_max_gfn", json_integer((json_int_t)xs.wait_max_gfn));
		}
		if (p)
			json_object_set_new(o, "paging_costs", p);
	}
	return o && json_object_set_new(doc, "xen", o) == 0;
}
