/* Every page checked in transit, over real migrations between two
 * processes: a relay between the two sides flips one bit of the bulk
 * stream, and the migration must fail before the commit, naming the page,
 * with the source guest still running. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "harness.h"

#define MIB (1ull << 20)

/* A plaintext stream: the flipped bit is in page data, so the CRC32C of
 * that page fails at the destination, which names the pfn. */
Test(secure, flipped_bit_in_plaintext_fails_naming_the_pfn, .timeout = 120)
{
	struct mig_case c;
	struct mig_result r;
	char want[64];

	need_uffd();
	mig_case_init(&c, "uniform:rate=20000", 64 * MIB);
	c.relay = (struct relay_plan){ .pages_record = 5, .page = 3 };
	mig_run(&c, &r);
	cr_assert_eq(r.flips, 1, "the relay flipped %d bits", r.flips);
	cr_assert_lt(r.src_rc, 0, "the source claims success over a corrupted stream");
	cr_assert_eq(r.dst_status, 1, "destination exited %d", r.dst_status);
	cr_assert(r.have_dst);
	const char *derr = rep_str(r.dst, "error");
	snprintf(want, sizeof(want), "pfn %llu fail their CRC32C", (unsigned long long)r.flipped_pfn);
	cr_assert(strstr(derr, want), "destination error does not name pfn %llu: %s",
		  (unsigned long long)r.flipped_pfn, derr);
	cr_assert(strstr(r.src_err, "CRC32C"), "the source does not say why: %s", r.src_err);
	cr_assert_str_eq(rep_str(r.src, "result"), "failed");
	cr_assert_gt(r.src_ops_after, 0, "the source guest stopped running after the failure");
	mig_result_free(&r);
}

/* The relay leaves the stream alone when told to flip nothing past its
 * end: the same path migrates with integrity ok (the relay itself is
 * sound, so the failure above is the flip's). */
Test(secure, relay_without_a_flip_migrates, .timeout = 120)
{
	struct mig_case c;
	struct mig_result r;

	need_uffd();
	mig_case_init(&c, "uniform:rate=20000", 64 * MIB);
	c.relay = (struct relay_plan){ .pages_record = 1000000 };
	mig_run(&c, &r);
	cr_assert_eq(r.flips, 0);
	assert_migrated(&r, "through the relay");
	mig_result_free(&r);
}
