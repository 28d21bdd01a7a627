/* Tests for tools/hmig/guestspec.c: the --guest parser names what it
 * refuses, and each side gets its backend's own opener. */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "guestspec.h"

Test(guestspec, unknown_and_missing_backends_are_named)
{
	struct guest_spec gs = { 0 };
	char err[256];

	cr_assert(eq(int, guest_spec_parse("qemu", &gs, err), -EINVAL));
	cr_assert(ne(ptr, strstr(err, "qemu"), NULL), "%s", err);
	cr_assert(eq(int, guest_spec_parse("synth:mem=1G", &gs, err), -EINVAL));
	cr_assert(ne(ptr, strstr(err, "--mem"), NULL), "%s", err);
	cr_assert(eq(int, (int)gs.backend, 0), "a refused spec chose a backend");
	cr_assert(eq(int, guest_spec_parse("synth", &gs, err), 0), "%s", err);
	cr_assert(eq(int, (int)gs.backend, GUEST_SYNTH));
}

/* xen:domid=N[,digest=on|off]: the domain and the source's digest switch,
 * every malformed spec named. */
Test(guestspec, xen_specs_are_parsed_and_bad_ones_named)
{
	static const struct {
		const char *spec, *says;
	} bad[] = {
		{ "xen", "needs the domain" },
		{ "xen:", "needs the domain" },
		{ "xen:domid=", "not key=value" },
		{ "xen:domid=0", "bad domid" },
		{ "xen:domid=-3", "bad domid" },
		{ "xen:domid=5x", "bad domid" },
		{ "xen:domid=99999999999", "bad domid" },
		{ "xen:domid=5,digest=maybe", "bad digest" },
		{ "xen:domid=5,prearm=maybe", "bad prearm" },
		{ "xen:domid=5,claim=1", "unknown option 'claim'" },
		{ "xen:digest=on", "needs the domain" },
	};
	struct guest_spec gs = { 0 };
	char err[256];

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		cr_assert(eq(int, guest_spec_parse(bad[i].spec, &gs, err), -EINVAL), "%s", bad[i].spec);
		cr_assert(ne(ptr, strstr(err, bad[i].says), NULL), "%s: %s", bad[i].spec, err);
	}
	cr_assert(eq(int, guest_spec_parse("xen:domid=5", &gs, err), 0), "%s", err);
	cr_assert(eq(int, (int)gs.backend, GUEST_XEN));
	cr_assert(eq(u32, gs.xen.domid, 5));
	cr_assert(not(gs.xen.opts.digest));
	cr_assert(eq(int, guest_spec_parse("xen:digest=on,domid=12", &gs, err), 0), "%s", err);
	cr_assert(eq(u32, gs.xen.domid, 12));
	cr_assert(gs.xen.opts.digest && gs.xen.digest_set);
	/* prearm is the destination's: send refuses it before opening. */
	cr_assert(eq(int, guest_spec_parse("xen:domid=12,prearm=on", &gs, err), 0), "%s", err);
	cr_assert(gs.xen.opts.prearm && gs.xen.prearm_set);
	cr_assert(eq(int, guest_check_source(&gs, err), -EINVAL));
	cr_assert(ne(ptr, strstr(err, "destination"), NULL), "%s", err);
}

/* Opening a Xen guest where there is none (no Xen here, or hmig built
 * without it) is refused in one line that says so, on either side; recv
 * refuses the source's digest option first. */
Test(guestspec, xen_without_xen_says_so)
{
	struct guest_spec gs = { 0 };
	struct hmig_guest *g = (struct hmig_guest *)&gs;
	char err[256];

	if (access("/dev/xen/privcmd", F_OK) == 0)
		cr_skip_test("this host runs Xen: the test bed's suite covers the real thing");
	cr_assert(eq(int, guest_spec_parse("xen:domid=5,digest=on", &gs, err), 0), "%s", err);
	cr_assert(eq(int, guest_open_source(&gs, &g, err), -EOPNOTSUPP), "%s", err);
	cr_assert(eq(ptr, g, NULL));
	cr_assert(strstr(err, "no Xen") || strstr(err, "without Xen"), "%s", err);
	cr_assert(eq(int, guest_open_dest(&gs, &g, err), -EINVAL));
	cr_assert(ne(ptr, strstr(err, "digest="), NULL), "%s", err);
	cr_assert(eq(int, guest_spec_parse("xen:domid=5", &gs, err), 0), "%s", err);
	cr_assert(eq(int, guest_open_dest(&gs, &g, err), -EOPNOTSUPP), "%s", err);
	cr_assert(strstr(err, "no Xen") || strstr(err, "without Xen"), "%s", err);
}

/* The source opener reads the synth option group; the destination's takes
 * nothing from it. */
Test(guestspec, each_side_gets_its_opener)
{
	struct guest_spec gs = { .backend = GUEST_SYNTH,
				 .synth = { .mem_bytes = 1 << 20, .vcpus = 0 } };
	struct hmig_guest *g;
	char err[256];

	cr_assert(eq(int, guest_open_source(&gs, &g, err), -EINVAL), "vCPUs 0 was not read");
	cr_assert(ne(ptr, strstr(err, "vCPU"), NULL), "%s", err);
	cr_assert(eq(int, guest_open_dest(&gs, &g, err), 0), "%s", err);
	cr_assert(eq(str, (char *)g->ops->name, "synth"));
	g->ops->destroy(g);
	gs.synth.vcpus = 1;
	cr_assert(eq(int, guest_open_source(&gs, &g, err), 0), "%s", err);
	struct hmig_guest_geometry geo;
	cr_assert(eq(int, g->ops->geometry(g, &geo), 0));
	cr_assert(eq(u64, geo.npages, 256));
	g->ops->destroy(g);
}
