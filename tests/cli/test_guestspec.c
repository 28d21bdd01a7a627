/* Tests for tools/hmig/guestspec.c: the --guest parser names what it
 * refuses, and each side gets its backend's own opener. */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>

#include <errno.h>
#include <string.h>

#include "guestspec.h"

Test(guestspec, unknown_and_missing_backends_are_named)
{
	struct guest_spec gs = { 0 };
	char err[256];

	cr_assert(eq(int, guest_spec_parse("qemu", &gs, err), -EINVAL));
	cr_assert(ne(ptr, strstr(err, "qemu"), NULL), "%s", err);
	cr_assert(eq(int, guest_spec_parse("xen:domid=5", &gs, err), -EOPNOTSUPP));
	cr_assert(ne(ptr, strstr(err, "'xen' is not built in"), NULL), "%s", err);
	cr_assert(eq(int, guest_spec_parse("synth:mem=1G", &gs, err), -EINVAL));
	cr_assert(ne(ptr, strstr(err, "--mem"), NULL), "%s", err);
	cr_assert(eq(int, (int)gs.backend, 0), "a refused spec chose a backend");
	cr_assert(eq(int, guest_spec_parse("synth", &gs, err), 0), "%s", err);
	cr_assert(eq(int, (int)gs.backend, GUEST_SYNTH));
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
