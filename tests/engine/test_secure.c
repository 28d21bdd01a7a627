/* Every page checked in transit, over real migrations between two
 * processes: a relay between the two sides flips one bit of the bulk
 * stream, and the migration must fail before the commit, naming the page,
 * with the source guest still running. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "keygen.h"

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

/* ---- TLS ----------------------------------------------------------------- */

struct keys {
	char dir[64], psk[96], psk_other[96], x509[96];
};

static void keys_make(struct keys *k)
{
	char err[256];

	snprintf(k->dir, sizeof(k->dir), "/tmp/hmig-keys-XXXXXX");
	cr_assert(mkdtemp(k->dir) != NULL);
	snprintf(k->psk, sizeof(k->psk), "%s/mig.psk", k->dir);
	snprintf(k->psk_other, sizeof(k->psk_other), "%s/other.psk", k->dir);
	snprintf(k->x509, sizeof(k->x509), "%s/x509", k->dir);
	cr_assert_eq(keygen_psk(k->psk, "hmig-test", err), 0, "%s", err);
	cr_assert_eq(keygen_psk(k->psk_other, "hmig-test", err), 0, "%s", err);
	cr_assert_eq(keygen_x509(k->x509, "engine", err), 0, "%s", err);
}

static void keys_free(struct keys *k)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", k->dir);
	cr_expect_eq(system(cmd), 0);
}

/* A case over TLS: new keys, and the config naming one of them (the PSK
 * file, or the X.509 directory when x509). */
static void tls_case(struct mig_case *c, struct keys *k, const char *workload, uint64_t mem,
		     bool x509)
{
	need_uffd();
	keys_make(k);
	mig_case_init(c, workload, mem);
	c->cfg.insecure = false;
	if (x509)
		c->cfg.tls_creds = k->x509;
	else
		c->cfg.tls_psk = k->psk;
}

static void assert_encrypted(const json_t *rep, const char *auth, const char *peer)
{
	const json_t *enc = json_object_get(json_object_get(rep, "security"), "encrypted");

	cr_assert(json_is_true(enc), "the report does not say encrypted");
	cr_assert_str_eq(rep_str(rep, "security.auth"), auth);
	cr_assert(strstr(rep_str(rep, "security.cipher"), "TLS1.3"), "%s",
		  rep_str(rep, "security.cipher"));
	cr_assert(strstr(rep_str(rep, "security.peer"), peer), "%s", rep_str(rep, "security.peer"));
	cr_assert_str_eq(rep_str(rep, "security.integrity"), "aead");
	cr_assert(json_is_false(json_object_get(json_object_get(rep, "security"), "ktls")));
}

/* Post-copy, so both channels carry pages: pushes on bulk, pulls on urgent. */
Test(secure, psk_migrates_postcopy_with_integrity, .timeout = 180)
{
	struct mig_case c;
	struct mig_result r;
	struct keys k;

	tls_case(&c, &k, "uniform:rate=100000", 128 * MIB, false);
	c.cfg.mode = HMIG_MODE_POSTCOPY;
	mig_run(&c, &r);
	assert_migrated(&r, "TLS-PSK post-copy");
	assert_encrypted(r.src, "psk", "psk:hmig-test");
	assert_encrypted(r.dst, "psk", "psk:hmig-test");
	cr_assert_gt(rep_u64(r.dst, "pages.pulled"), 0, "no page came by pull");
	mig_result_free(&r);
	keys_free(&k);
}

Test(secure, x509_migrates_precopy_with_integrity, .timeout = 180)
{
	struct mig_case c;
	struct mig_result r;
	struct keys k;

	tls_case(&c, &k, "uniform:rate=20000", 64 * MIB, true);
	mig_run(&c, &r);
	assert_migrated(&r, "TLS-X.509 pre-copy");
	assert_encrypted(r.src, "x509", "CN=hmig engine destination");
	assert_encrypted(r.dst, "x509", "CN=hmig engine source");
	mig_result_free(&r);
	keys_free(&k);
}

/* Inside TLS a flipped bit is in ciphertext: the record fails its AEAD
 * tag, nothing of it is installed, and the source guest runs on. */
Test(secure, flipped_bit_under_tls_fails_the_record, .timeout = 120)
{
	struct mig_case c;
	struct mig_result r;
	struct keys k;

	tls_case(&c, &k, "uniform:rate=20000", 64 * MIB, false);
	c.relay = (struct relay_plan){ .stream_offset = 5 << 20 };
	mig_run(&c, &r);
	cr_assert_eq(r.flips, 1);
	cr_assert_lt(r.src_rc, 0, "the source claims success over a corrupted stream");
	cr_assert_eq(r.dst_status, 1);
	const char *derr = rep_str(r.dst, "error");
	cr_assert(strstr(derr, "failed authentication"), "%s", derr);
	cr_assert_gt(r.src_ops_after, 0, "the source guest stopped running after the failure");
	mig_result_free(&r);
	keys_free(&k);
}

/* A stranger with another key gets nothing in: its run fails, the
 * destination counts the rejection and goes on waiting, and the real
 * source then migrates with integrity ok. */
Test(secure, stranger_is_turned_away_and_the_source_gets_in, .timeout = 180)
{
	struct mig_case c;
	struct mig_result r;
	struct keys k;

	tls_case(&c, &k, "uniform:rate=20000", 64 * MIB, false);
	c.cfg.connect_timeout_ms = 2000;
	c.stranger_psk = k.psk_other;
	mig_run(&c, &r);
	cr_assert_lt(r.stranger_rc, 0, "a stranger migrated in");
	cr_assert(strstr(r.stranger_err, "TLS"), "the stranger is not told why: %s", r.stranger_err);
	assert_migrated(&r, "after a stranger");
	cr_assert_geq(rep_u64(r.dst, "security.rejected_connections"), 1);
	mig_result_free(&r);
	keys_free(&k);
}

/* A guest larger than the destination allows is refused before anything is
 * allocated, with one line saying so; the source guest runs on. */
Test(secure, guest_over_max_mem_is_refused, .timeout = 60)
{
	struct mig_case c;
	struct mig_result r;

	need_uffd();
	mig_case_init(&c, "uniform:rate=20000", 64 * MIB);
	c.cfg.max_mem = 32 * MIB;
	mig_run(&c, &r);
	cr_assert_lt(r.src_rc, 0);
	cr_assert_eq(r.dst_status, 1);
	cr_assert(strstr(r.src_err, "larger than this destination's limit of 32 MiB"), "%s", r.src_err);
	cr_assert_gt(r.src_ops_after, 0);
	/* Nothing was prepared: the destination's peak memory stayed far
	 * below the 64 MiB guest it refused. */
	cr_assert_lt(rep_num(r.dst, "peak_rss_mib"), 48, "%g MiB", rep_num(r.dst, "peak_rss_mib"));
	mig_result_free(&r);
}
