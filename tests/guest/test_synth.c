/* The synth guest: ops-table contract, deterministic workloads, pause and
 * vCPU state, dirty logging that misses no write, the oracle, and the
 * destination's missing-page faults. */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <hmig/synth.h>

#include "common/bitmap.h"
#include "common/endian.h"
#include "guest/synth/synth.h"
#include "uffd/uffd.h"

#define PAGE 4096

static void skip_without_uffd(void)
{
	struct uffd_probe p;
	int rc = uffd_probe(&p);

	if (rc)
		cr_skip_test("userfaultfd unavailable here (%s)", strerror(-rc));
}

static struct hmig_guest *open_synth(uint64_t mem, uint32_t vcpus, const char *wl,
				     uint64_t seed, uint64_t ops_limit)
{
	struct hmig_synth_params p = { .mem_bytes = mem, .vcpus = vcpus, .workload = wl,
				       .seed = seed, .fill = 1.0, .ops_limit = ops_limit };
	struct hmig_guest *g;
	char err[256];
	int rc = hmig_synth_open(&p, &g, err);

	cr_assert_eq(rc, 0, "open synth %s: %s", wl, err);
	return g;
}

static void sleep_ms(int ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000 };

	nanosleep(&ts, NULL);
}

static uint64_t ops_of(struct hmig_guest *g)
{
	struct hmig_guest_stats st;

	g->ops->stats(g, &st);
	return st.ops;
}

/* Waits (bounded) until the guest has done `want` ops. */
static void wait_ops(struct hmig_guest *g, uint64_t want)
{
	for (int i = 0; i < 3000 && ops_of(g) < want; i++)
		sleep_ms(5);
	cr_assert_geq(ops_of(g), want, "guest stalled at %lu of %lu ops",
		      (unsigned long)ops_of(g), (unsigned long)want);
}

static const uint8_t *page_of(struct hmig_guest *g, uint64_t pfn)
{
	const void *p;

	cr_assert_eq(g->ops->pages_map(g, &pfn, 1, &p), 0);
	return p;
}

Test(guest, ops_table_has_no_null_member)
{
	struct hmig_guest *g;
	char err[256];

	cr_assert_eq(hmig_synth_open_dest(&g, err), 0, "%s", err);
	const void *const *m = (const void *const *)g->ops;
	size_t n = sizeof(*g->ops) / sizeof(void *);
	for (size_t i = 0; i < n; i++)
		cr_assert_not_null(m[i], "ops member %zu of '%s' is NULL", i, g->ops->name);
	g->ops->destroy(g);
}

/* (An unknown backend's name is the CLI's to refuse: tests/cli.) */
/* The oracle's counters and kv latency come from synth's own call, which
 * refuses a guest of another backend rather than misread it. */
Test(guest, synth_stats_are_synths_own, .timeout = 30)
{
	static const struct hmig_guest_ops other_ops = { .name = "other" };
	struct hmig_guest other = { .ops = &other_ops };
	struct hmig_guest *g = open_synth(4 << 20, 2, "kv:set_pct=50", 3, 0);
	struct hmig_synth_stats st;

	cr_assert_eq(hmig_synth_stats(&other, &st), -EINVAL);
	cr_assert(strstr(hmig_guest_error(&other), "'other'"), "%s", hmig_guest_error(&other));
	cr_assert_eq(g->ops->run(g), 0);
	wait_ops(g, 2000);
	g->ops->pause(g);
	cr_assert_eq(hmig_synth_stats(g, &st), 0, "%s", hmig_guest_error(g));
	cr_assert_geq(st.lat_count, 2000, "kv requests were not timed");
	cr_assert_gt(st.lat_p50_ns, 0);
	cr_assert_leq(st.lat_p50_ns, st.lat_p99_ns);
	cr_assert_leq(st.lat_p99_ns, st.lat_max_ns);
	cr_assert_eq(st.violations, 0);
	g->ops->destroy(g);
}

Test(guest, bad_params_are_named)
{
	struct hmig_guest *g;
	char err[256];
	struct hmig_synth_params p = { .mem_bytes = 1 << 20, .vcpus = 2, .workload = "zipf:s=2" };

	cr_assert_eq(hmig_synth_open(NULL, &g, err), -EINVAL);
	cr_assert(strstr(err, "hmig_synth_open_dest"), "%s", err);
	cr_assert_null(g);
	cr_assert_eq(hmig_synth_open(&p, &g, err), -EINVAL);
	cr_assert(strstr(err, "s=2"), "%s", err);
	p.workload = "uniform:speed=3";
	cr_assert_eq(hmig_synth_open(&p, &g, err), -EINVAL);
	cr_assert(strstr(err, "speed"), "%s", err);
	p.workload = "uniform";
	p.vcpus = 0;
	cr_assert_eq(hmig_synth_open(&p, &g, err), -EINVAL);
	cr_assert(strstr(err, "vCPU"), "%s", err);
	cr_assert_null(g);
}

static const char *workloads[] = {
	"uniform", "zipf:s=0.9", "seq", "read:write_pct=30", "kv:set_pct=50", "idle",
};

/* Criterion runs each test in a re-executed copy of this program, where
 * pointers differ (ASLR): parameters are indexes into the tables, not
 * pointers. */
static int workload_idx[] = { 0, 1, 2, 3, 4, 5 };

ParameterizedTestParameters(guest, same_seed_same_memory)
{
	return cr_make_param_array(int, workload_idx,
				   sizeof(workload_idx) / sizeof(workload_idx[0]));
}

/* Two guests with one seed, stopped after the same number of ops, hold
 * identical memory; another seed gives other memory. */
ParameterizedTest(int *idx, guest, same_seed_same_memory, .timeout = 60)
{
	const char **wl = &workloads[*idx];
	const uint64_t mem = 4 << 20, limit = 3000;
	struct hmig_guest *a = open_synth(mem, 2, *wl, 7, limit);
	struct hmig_guest *b = open_synth(mem, 2, *wl, 7, limit);
	struct hmig_guest *c = open_synth(mem, 2, *wl, 8, limit);
	bool idle = !strcmp(*wl, "idle");

	cr_assert_eq(a->ops->run(a), 0);
	cr_assert_eq(b->ops->run(b), 0);
	cr_assert_eq(c->ops->run(c), 0);
	if (!idle) {
		wait_ops(a, 2 * limit);
		wait_ops(b, 2 * limit);
		wait_ops(c, 2 * limit);
	}
	a->ops->pause(a);
	b->ops->pause(b);
	c->ops->pause(c);
	uint64_t differ_ab = 0, differ_ac = 0;
	for (uint64_t p = 0; p < mem / PAGE; p++) {
		differ_ab += memcmp(page_of(a, p), page_of(b, p), PAGE) != 0;
		differ_ac += memcmp(page_of(a, p), page_of(c, p), PAGE) != 0;
	}
	cr_assert_eq(differ_ab, 0, "%s: %lu pages differ with the same seed", *wl,
		     (unsigned long)differ_ab);
	cr_assert_gt(differ_ac, 0, "%s: another seed gave identical memory", *wl);
	cr_assert_eq(a->ops->verify(a), 0, "%s", hmig_guest_error(a));
	a->ops->destroy(a);
	b->ops->destroy(b);
	c->ops->destroy(c);
}

Test(guest, pause_stops_every_write_and_resume_restarts, .timeout = 30)
{
	struct hmig_guest *g = open_synth(8 << 20, 2, "uniform", 1, 0);

	cr_assert_eq(g->ops->run(g), 0);
	wait_ops(g, 1000);
	cr_assert_eq(g->ops->pause(g), 0);
	cr_assert_eq(g->ops->pause(g), 0, "pause is idempotent");
	uint64_t n = ops_of(g);
	sleep_ms(50);
	cr_assert_eq(ops_of(g), n, "a paused guest ran ops");
	cr_assert_eq(g->ops->verify(g), 0, "%s", hmig_guest_error(g));
	cr_assert_eq(g->ops->resume(g), 0);
	wait_ops(g, n + 1000);
	g->ops->destroy(g);
}

Test(guest, verify_refuses_a_running_guest, .timeout = 30)
{
	struct hmig_guest *g = open_synth(4 << 20, 1, "uniform:rate=1000", 1, 0);

	cr_assert_eq(g->ops->run(g), 0);
	cr_assert_eq(g->ops->verify(g), -EBUSY);
	g->ops->destroy(g);
}

/* Copies every page of src into a fresh destination and restores the vCPU
 * state: a migration with no network, which the oracle must accept. */
static struct hmig_guest *clone_to_dest(struct hmig_guest *src, void *blob, size_t len)
{
	struct hmig_guest_geometry geo;
	struct hmig_guest *d;
	char err[256];

	src->ops->geometry(src, &geo);
	cr_assert_eq(hmig_synth_open_dest(&d, err), 0, "%s", err);
	cr_assert_eq(d->ops->dest_prepare(d, &geo), 0, "%s", hmig_guest_error(d));
	for (uint64_t p = 0; p < geo.npages; p++)
		cr_assert_eq(d->ops->page_install(d, p, 1, page_of(src, p), 0), 0, "%s",
			     hmig_guest_error(d));
	cr_assert_eq(d->ops->vcpu_restore(d, blob, len), 0, "%s", hmig_guest_error(d));
	return d;
}

Test(guest, vcpu_state_round_trip_continues_the_workload, .timeout = 60)
{
	skip_without_uffd();
	struct hmig_guest *s = open_synth(8 << 20, 2, "kv", 3, 0);
	void *blob;
	size_t len;

	cr_assert_eq(s->ops->run(s), 0);
	wait_ops(s, 5000);
	s->ops->pause(s);
	cr_assert_eq(s->ops->vcpu_save(s, &blob, &len), 0);
	struct hmig_guest *d = clone_to_dest(s, blob, len);
	cr_assert_eq(d->ops->verify(d), 0, "restored guest: %s", hmig_guest_error(d));

	/* A blob of another version is refused by name. */
	uint8_t *bad = malloc(len);
	memcpy(bad, blob, len);
	put_le32(bad + 4, 99);
	struct hmig_guest *d2;
	char err[256];
	struct hmig_guest_geometry geo;
	s->ops->geometry(s, &geo);
	cr_assert_eq(hmig_synth_open_dest(&d2, err), 0);
	cr_assert_eq(d2->ops->dest_prepare(d2, &geo), 0);
	cr_assert_eq(d2->ops->vcpu_restore(d2, bad, len), -EPROTO);
	cr_assert(strstr(hmig_guest_error(d2), "version 99"), "%s", hmig_guest_error(d2));
	d2->ops->destroy(d2);
	free(bad);

	cr_assert_eq(d->ops->start(d), 0, "%s", hmig_guest_error(d));
	struct hmig_guest_stats st;
	for (int i = 0; i < 2000; i++) {
		d->ops->stats(d, &st);
		if (st.ops > 5000)
			break;
		sleep_ms(5);
	}
	cr_assert_gt(st.ops, 5000, "the destination guest did not run");
	d->ops->pause(d);
	cr_assert_eq(d->ops->verify(d), 0, "after running on: %s", hmig_guest_error(d));
	free(blob);
	d->ops->destroy(d);
	s->ops->destroy(s);
}

/* The geometry declares the largest vCPU state the guest sends, which is
 * the record limit on both sides: the blob fits it, the destination declares
 * the same, and it does not grow with memory. */
Test(guest, vcpu_state_fits_the_declared_limit, .timeout = 30)
{
	skip_without_uffd();
	struct hmig_guest *s = open_synth(4 << 20, 3, "uniform", 2, 0);
	struct hmig_guest *big = open_synth(16 << 20, 3, "idle", 2, 0);
	struct hmig_guest_geometry geo, geo_big, dgeo;
	struct hmig_guest *d;
	char err[256];
	void *blob;
	size_t len;

	cr_assert_eq(s->ops->run(s), 0);
	wait_ops(s, 100);
	s->ops->pause(s);
	cr_assert_eq(s->ops->geometry(s, &geo), 0);
	cr_assert_eq(big->ops->geometry(big, &geo_big), 0);
	cr_assert_eq(s->ops->vcpu_save(s, &blob, &len), 0);
	cr_assert_gt(geo.vcpu_state_max, 0);
	cr_assert_leq(len, geo.vcpu_state_max, "a %zu-byte state over the declared %u", len,
		      geo.vcpu_state_max);
	cr_assert_eq(geo_big.vcpu_state_max, geo.vcpu_state_max, "the limit grew with memory");

	cr_assert_eq(hmig_synth_open_dest(&d, err), 0, "%s", err);
	geo.vcpu_state_max = 0; /* not on the wire: the destination declares its own */
	cr_assert_eq(d->ops->dest_prepare(d, &geo), 0, "%s", hmig_guest_error(d));
	cr_assert_eq(d->ops->geometry(d, &dgeo), 0);
	cr_assert_eq(dgeo.vcpu_state_max, geo_big.vcpu_state_max);
	cr_assert_eq(dgeo.npages, geo.npages);
	free(blob);
	d->ops->destroy(d);
	big->ops->destroy(big);
	s->ops->destroy(s);
}

/* Without holes no pfn is never sent, on either side, and the pfn space is
 * the guest's memory. */
Test(guest, no_pfn_is_never_sent_by_default, .timeout = 30)
{
	skip_without_uffd();
	struct hmig_guest *s = open_synth(4 << 20, 2, "idle", 1, 0), *d;
	struct hmig_guest_geometry geo;
	char err[256];

	s->ops->geometry(s, &geo);
	cr_assert_eq(geo.npages, (4 << 20) / PAGE);
	uint64_t *bm = bitmap_new(geo.npages);
	cr_assert_eq(s->ops->pfns_never_sent(s, bm), 0);
	cr_assert_eq(bitmap_count(bm, geo.npages), 0);
	cr_assert_eq(hmig_synth_open_dest(&d, err), 0, "%s", err);
	cr_assert_eq(d->ops->pfns_never_sent(d, bm), -EINVAL, "answered before dest_prepare");
	cr_assert_eq(d->ops->dest_prepare(d, &geo), 0, "%s", hmig_guest_error(d));
	cr_assert_eq(d->ops->pfns_never_sent(d, bm), 0);
	cr_assert_eq(bitmap_count(bm, geo.npages), 0);
	free(bm);
	d->ops->destroy(d);
	s->ops->destroy(s);
}

/* Test-only holes: exactly that many pfns are never sent, in runs of many
 * lengths, and a destination opened alike reports the same set.  The guest
 * never writes one, and a guest moved without them verifies and runs on.
 * A destination opened with other holes refuses the vCPU state by name. */
Test(guest, holes_are_reported_exactly_and_never_needed, .timeout = 60)
{
	skip_without_uffd();
	const uint64_t mem = 8 << 20, holes = 300;
	struct hmig_synth_params prm = { .mem_bytes = mem, .vcpus = 2, .workload = "uniform",
					 .seed = 6, .fill = 1.0 };
	struct hmig_guest_geometry geo;
	struct hmig_guest *s, *d, *other;
	char err[256];
	void *blob;
	size_t len;

	cr_assert_eq(synth_open_holed(&prm, holes, &s, err), 0, "%s", err);
	s->ops->geometry(s, &geo);
	const uint64_t n = geo.npages;
	cr_assert_gt(n, mem / PAGE + holes, "the holes took pages of the guest's memory");
	uint64_t *never = bitmap_new(n), *seen = bitmap_new(n), *dnever = bitmap_new(n);
	cr_assert_eq(s->ops->pfns_never_sent(s, never), (int64_t)holes);
	cr_assert_eq(bitmap_count(never, n), holes);
	uint64_t runs = 0, across = 0;
	for (uint64_t p = bitmap_next(never, n, 0), e; p < n; p = bitmap_next(never, n, e)) {
		for (e = p; e < n && bitmap_test(never, e); e++)
			;
		runs++;
		across += p / 64 != (e - 1) / 64;
	}
	cr_assert_geq(runs, 10, "one run of holes does not test much");
	cr_assert_gt(across, 0, "no run crosses a bitmap word");
	cr_assert(!bitmap_test(never, 0) && !bitmap_test(never, n - 1),
		  "the holes touch the ends of the pfn space: nothing moves after them");

	/* The guest never writes one. */
	cr_assert_eq(s->ops->run(s), 0);
	cr_assert_gt(s->ops->dirty_start(s, HMIG_DIRTY_AUTO), 0, "%s", hmig_guest_error(s));
	for (int i = 0; i < 20; i++) {
		cr_assert_geq(s->ops->dirty_collect(s, seen, 0), 0, "%s", hmig_guest_error(s));
		sleep_ms(2);
	}
	s->ops->pause(s);
	cr_assert_geq(s->ops->dirty_collect(s, seen, HMIG_COLLECT_FINAL), 0);
	cr_assert_gt(bitmap_count(seen, n), 100, "the workload hardly wrote");
	for (uint64_t w = 0; w < BITMAP_WORDS(n); w++)
		cr_assert_eq(seen[w] & never[w], 0, "the guest wrote a hole near pfn %lu",
			     (unsigned long)(w * 64));

	/* Moved without them, it verifies and runs on. */
	cr_assert_eq(s->ops->vcpu_save(s, &blob, &len), 0);
	cr_assert_eq(synth_open_dest_holed(holes, &d, err), 0, "%s", err);
	cr_assert_eq(d->ops->dest_prepare(d, &geo), 0, "%s", hmig_guest_error(d));
	cr_assert_eq(d->ops->pfns_never_sent(d, dnever), (int64_t)holes);
	cr_assert_eq(memcmp(never, dnever, BITMAP_WORDS(n) * 8), 0, "the sides disagree");
	for (uint64_t p = 0; p < n; p++)
		if (!bitmap_test(never, p))
			cr_assert_eq(d->ops->page_install(d, p, 1, page_of(s, p), 0), 0, "%s",
				     hmig_guest_error(d));
	cr_assert_eq(d->ops->vcpu_restore(d, blob, len), 0, "%s", hmig_guest_error(d));
	cr_assert_eq(d->ops->verify(d), 0, "%s", hmig_guest_error(d));
	cr_assert_eq(d->ops->start(d), 0);
	wait_ops(d, 5000);
	d->ops->pause(d);
	cr_assert_eq(d->ops->verify(d), 0, "after running on: %s", hmig_guest_error(d));

	/* Other holes, or none, are refused by name. */
	cr_assert_eq(synth_open_dest_holed(holes - 1, &other, err), 0, "%s", err);
	cr_assert_eq(other->ops->dest_prepare(other, &geo), 0, "%s", hmig_guest_error(other));
	cr_assert_eq(other->ops->vcpu_restore(other, blob, len), -EPROTO);
	cr_assert(strstr(hmig_guest_error(other), "300 holes, this destination 299"), "%s",
		  hmig_guest_error(other));
	other->ops->destroy(other);
	cr_assert_eq(hmig_synth_open_dest(&other, err), 0, "%s", err);
	cr_assert_eq(other->ops->dest_prepare(other, &geo), 0, "%s", hmig_guest_error(other));
	cr_assert_eq(other->ops->vcpu_restore(other, blob, len), -EPROTO);
	other->ops->destroy(other);

	free(blob);
	free(never);
	free(seen);
	free(dnever);
	d->ops->destroy(d);
	s->ops->destroy(s);
}

struct dirty_case {
	const char *workload;
	enum hmig_dirty_mode mode;
};

static struct dirty_case dirty_cases[] = {
	{ "uniform", HMIG_DIRTY_WP_ASYNC }, { "zipf", HMIG_DIRTY_WP_ASYNC },
	{ "seq", HMIG_DIRTY_WP_ASYNC },     { "kv:set_pct=30", HMIG_DIRTY_WP_ASYNC },
	{ "uniform", HMIG_DIRTY_WP_SYNC },  { "kv:set_pct=30", HMIG_DIRTY_WP_SYNC },
};

static int dirty_idx[] = { 0, 1, 2, 3, 4, 5 };

ParameterizedTestParameters(guest, dirty_log_misses_no_write)
{
	return cr_make_param_array(int, dirty_idx, sizeof(dirty_idx) / sizeof(dirty_idx[0]));
}

/* A copy of every page of g (pause it first for a consistent picture). */
static uint8_t *snapshot(struct hmig_guest *g, uint64_t npages)
{
	uint8_t *copy = malloc(npages * PAGE);

	cr_assert_not_null(copy);
	for (uint64_t p = 0; p < npages; p++)
		memcpy(copy + p * PAGE, page_of(g, p), PAGE);
	return copy;
}

/* The oracle's version table lives in guest memory after the data pages,
 * 4 bytes a page, and takes its pages out of the guest's total. */
static uint8_t *version_slot(struct hmig_guest *g, uint64_t pfn)
{
	struct hmig_guest_geometry geo;

	g->ops->geometry(g, &geo);
	uint64_t data = geo.npages - (geo.npages * 4 + PAGE - 1) / PAGE;
	uint64_t at = pfn * 4;
	return (uint8_t *)page_of(g, data + at / PAGE) + at % PAGE;
}

/* vCPUs write flat out while we collect again and again; every page whose
 * version moved between the two snapshots must be in some collect. */
ParameterizedTest(int *idx, guest, dirty_log_misses_no_write, .timeout = 60)
{
	const struct dirty_case *c = &dirty_cases[*idx];
	skip_without_uffd();
	const uint64_t mem = 16 << 20, npages = mem / PAGE;
	struct hmig_guest *g = open_synth(mem, 2, c->workload, 5, 0);
	uint64_t *seen = bitmap_new(npages);
	uint8_t *before, *after;

	cr_assert_eq(g->ops->run(g), 0);
	g->ops->pause(g);
	int mode = g->ops->dirty_start(g, c->mode);
	if (mode == -EOPNOTSUPP)
		cr_skip_test("%s", hmig_guest_error(g));
	cr_assert_eq(mode, (int)c->mode, "%s", hmig_guest_error(g));
	before = snapshot(g, npages);
	g->ops->resume(g);
	for (int i = 0; i < 200; i++) {
		cr_assert_geq(g->ops->dirty_collect(g, seen, 0), 0, "%s", hmig_guest_error(g));
		if (i % 10 == 0)
			sleep_ms(1);
	}
	g->ops->pause(g);
	/* The final collect (no re-arm, split across threads) misses nothing
	 * either. */
	cr_assert_geq(g->ops->dirty_collect(g, seen, HMIG_COLLECT_FINAL), 0);
	after = snapshot(g, npages);

	/* Every page whose bytes changed, the version table's included. */
	uint64_t written = 0, missed = 0, first = 0;
	for (uint64_t p = 0; p < npages; p++) {
		if (!memcmp(before + p * PAGE, after + p * PAGE, PAGE))
			continue;
		written++;
		if (!bitmap_test(seen, p) && !missed++)
			first = p;
	}
	cr_assert_gt(written, 100, "the workload hardly wrote (%lu pages)", (unsigned long)written);
	cr_assert_eq(missed, 0, "%s/%s: %lu of %lu written pages never collected (first pfn %lu)",
		     c->workload, hmig_dirty_mode_name(c->mode), (unsigned long)missed,
		     (unsigned long)written, (unsigned long)first);

	/* Once stopped, logging costs nothing and memory is still right. */
	cr_assert_eq(g->ops->dirty_stop(g), 0);
	cr_assert_eq(g->ops->verify(g), 0, "%s", hmig_guest_error(g));
	free(before);
	free(after);
	free(seen);
	g->ops->destroy(g);
}

Test(guest, dirty_collect_reports_only_new_writes, .timeout = 30)
{
	skip_without_uffd();
	const uint64_t npages = (4 << 20) / PAGE;
	struct hmig_guest *g = open_synth(4 << 20, 1, "idle", 5, 0);
	uint64_t *bm = bitmap_new(npages);

	cr_assert_eq(g->ops->run(g), 0);
	int mode = g->ops->dirty_start(g, HMIG_DIRTY_AUTO);
	cr_assert_gt(mode, 0, "%s", hmig_guest_error(g));
	cr_assert_eq(g->ops->dirty_collect(g, bm, 0), 0, "an idle guest dirtied pages");
	/* The test writes as the guest would (idle guests never write). */
	const void *p;
	uint64_t pfn = 17;
	g->ops->pages_map(g, &pfn, 1, &p);
	((volatile uint8_t *)p)[100] ^= 1;
	cr_assert_eq(g->ops->dirty_collect(g, bm, 0), 1);
	cr_assert(bitmap_test(bm, 17));
	memset(bm, 0, BITMAP_WORDS(npages) * 8);
	cr_assert_eq(g->ops->dirty_collect(g, bm, 0), 0, "collect did not re-arm");
	((volatile uint8_t *)p)[100] ^= 1;
	cr_assert_eq(g->ops->dirty_collect(g, bm, 0), 1, "a write after re-arm was lost");
	free(bm);
	g->ops->destroy(g);
}

/* Sync mode protects again what a collect found, in runs or, when runs
 * are many, in one call over the whole guest: each way a page written
 * again is found again, and a page nobody wrote is never reported. */
static const uint64_t sync_runs_pattern[] = { 0, 60, 61, 62, 63, 64, 65, 70, 127, 128, 200, 1023 };

static uint64_t sync_write(struct hmig_guest *g, uint64_t npages, bool many, uint64_t *want)
{
	uint64_t n = 0;

	if (many) /* every third page: more runs than one walk costs */
		for (uint64_t p = 1; p < npages; p += 3)
			want[n++] = p;
	else
		for (size_t i = 0; i < sizeof(sync_runs_pattern) / sizeof(uint64_t); i++)
			want[n++] = sync_runs_pattern[i];
	for (uint64_t i = 0; i < n; i++)
		((volatile uint8_t *)(uintptr_t)page_of(g, want[i]))[9] ^= 1;
	return n;
}

static bool sync_many[] = { false, true };

ParameterizedTestParameters(guest, sync_collect_protects_again_what_it_found)
{
	return cr_make_param_array(bool, sync_many, 2);
}

ParameterizedTest(bool *many, guest, sync_collect_protects_again_what_it_found, .timeout = 30)
{
	skip_without_uffd();
	/* 16384 pages: up to 32 runs go one call each (the pattern's 6). */
	const uint64_t npages = (64 << 20) / PAGE;
	struct hmig_guest *g = open_synth(64 << 20, 1, "idle", 5, 0);
	uint64_t *bm = bitmap_new(npages), *want = calloc(npages, sizeof(uint64_t));

	cr_assert_eq(g->ops->run(g), 0);
	cr_assert_eq(g->ops->dirty_start(g, HMIG_DIRTY_WP_SYNC), HMIG_DIRTY_WP_SYNC, "%s",
		     hmig_guest_error(g));
	for (int round = 0; round < 3; round++) {
		uint64_t n = sync_write(g, npages, *many, want);

		memset(bm, 0, BITMAP_WORDS(npages) * 8);
		cr_assert_eq(g->ops->dirty_collect(g, bm, 0), (int64_t)n, "round %d", round);
		for (uint64_t i = 0; i < n; i++)
			cr_assert(bitmap_test(bm, want[i]), "round %d: pfn %lu missed", round,
				  (unsigned long)want[i]);
		cr_assert_eq(g->ops->dirty_collect(g, bm, 0), 0, "round %d: found twice", round);
	}
	/* A neighbour nobody wrote before is found alone. */
	((volatile uint8_t *)(uintptr_t)page_of(g, 66))[1] ^= 1;
	memset(bm, 0, BITMAP_WORDS(npages) * 8);
	cr_assert_eq(g->ops->dirty_collect(g, bm, HMIG_COLLECT_FINAL), 1);
	cr_assert(bitmap_test(bm, 66));
	free(want);
	free(bm);
	g->ops->destroy(g);
}

/* auto: async for small guests, sync from 2 GiB (synth.c, SYNC_FROM_PAGES).
 * The large guest is never filled: only its page tables cost memory. */
Test(guest, auto_dirty_logging_goes_sync_from_2_gib, .timeout = 60)
{
	skip_without_uffd();
	struct hmig_synth_params prm = { .mem_bytes = 2ull << 30, .vcpus = 1, .workload = "idle" };
	struct hmig_guest *small = open_synth(4 << 20, 1, "idle", 5, 0), *large;
	char err[256];

	cr_assert_eq(hmig_synth_open(&prm, &large, err), 0, "%s", err);
	cr_assert_eq(small->ops->run(small), 0);
	cr_assert_eq(large->ops->run(large), 0);
	cr_assert_eq(large->ops->dirty_start(large, HMIG_DIRTY_AUTO), HMIG_DIRTY_WP_SYNC, "%s",
		     hmig_guest_error(large));
	int mode = small->ops->dirty_start(small, HMIG_DIRTY_WP_ASYNC);
	if (mode == -EOPNOTSUPP) { /* auto can only be sync here */
		cr_log_info("%s", hmig_guest_error(small));
	} else {
		cr_assert_eq(small->ops->dirty_stop(small), 0);
		cr_assert_eq(small->ops->dirty_start(small, HMIG_DIRTY_AUTO), HMIG_DIRTY_WP_ASYNC,
			     "%s", hmig_guest_error(small));
	}
	small->ops->destroy(small);
	large->ops->destroy(large);
}

/* Guests of 2 GiB and more split the final collect across threads: writes
 * on both sides of every split point, and at the ends, are all found.  The
 * guest is never filled, so only page tables cost memory. */
Test(guest, final_collect_splits_a_large_guest_and_misses_nothing, .timeout = 120)
{
	skip_without_uffd();
	const uint64_t mem = 3ull << 30, npages = mem / PAGE;
	struct hmig_synth_params prm = { .mem_bytes = mem, .vcpus = 2, .workload = "idle" };
	struct hmig_guest *g;
	char err[256];

	cr_assert_eq(hmig_synth_open(&prm, &g, err), 0, "%s", err);
	uint64_t *bm = bitmap_new(npages);
	cr_assert_eq(g->ops->run(g), 0);
	int mode = g->ops->dirty_start(g, HMIG_DIRTY_WP_ASYNC);
	if (mode == -EOPNOTSUPP)
		cr_skip_test("%s", hmig_guest_error(g));
	cr_assert_eq(mode, HMIG_DIRTY_WP_ASYNC, "%s", hmig_guest_error(g));
	g->ops->pause(g);
	uint64_t want[64], n = 0;
	for (uint64_t d = 0; d < 3; d++) { /* around sixths and quarters */
		for (uint64_t k = 1; k < 6; k++)
			want[n++] = npages * k / 6 - 1 + d;
		for (uint64_t k = 1; k < 4; k++)
			want[n++] = npages * k / 4 - 1 + d;
	}
	want[n++] = 0;
	want[n++] = npages - 1;
	for (uint64_t i = 0; i < n; i++) {
		const void *p;

		cr_assert_eq(g->ops->pages_map(g, &want[i], 1, &p), 0);
		((volatile uint8_t *)p)[7] = 1;
	}
	int64_t found = g->ops->dirty_collect(g, bm, HMIG_COLLECT_FINAL);
	cr_assert_geq(found, 0, "%s", hmig_guest_error(g));
	for (uint64_t i = 0; i < n; i++)
		cr_assert(bitmap_test(bm, want[i]), "pfn %lu written but not collected",
			  (unsigned long)want[i]);
	uint64_t distinct = bitmap_count(bm, npages);
	cr_assert_eq((uint64_t)found, distinct);
	cr_assert_leq(distinct, n, "the collect reported pages nobody wrote");
	free(bm);
	g->ops->destroy(g);
}

Test(guest, oracle_catches_a_corrupted_page, .timeout = 30)
{
	struct hmig_guest *g = open_synth(4 << 20, 2, "uniform", 9, 2000);

	cr_assert_eq(g->ops->run(g), 0);
	wait_ops(g, 4000);
	g->ops->pause(g);
	cr_assert_eq(g->ops->verify(g), 0, "%s", hmig_guest_error(g));
	uint8_t *p = (uint8_t *)page_of(g, 321);
	p[2049] ^= 0x40;
	cr_assert_eq(g->ops->verify(g), -EBADMSG);
	cr_assert(strstr(hmig_guest_error(g), "pfn 321 "), "%s", hmig_guest_error(g));
	g->ops->destroy(g);
}

/* A page whose content is older than the vCPU state says (what a migration
 * that forgot a dirty page would leave): caught by verify, and by the first
 * read that touches it. */
Test(guest, oracle_catches_a_stale_page_on_first_read, .timeout = 60)
{
	skip_without_uffd();
	struct hmig_guest *s = open_synth(1 << 20, 2, "read:write_pct=0", 4, 0);
	const uint64_t stale = 77;
	void *blob;
	size_t len;

	cr_assert_eq(s->ops->run(s), 0);
	s->ops->pause(s);
	cr_assert_eq(s->ops->vcpu_save(s, &blob, &len), 0);
	/* The version table claims a newer version of page 77 than the page
	 * holds. */
	uint8_t *slot = version_slot(s, stale);
	put_le32(slot, get_le32(slot) + 1);
	struct hmig_guest *d = clone_to_dest(s, blob, len);
	cr_assert_eq(d->ops->verify(d), -EBADMSG);
	cr_assert(strstr(hmig_guest_error(d), "pfn 77 "), "%s", hmig_guest_error(d));
	cr_assert_eq(d->ops->start(d), 0);
	struct hmig_synth_stats st;
	for (int i = 0; i < 2000; i++) {
		cr_assert_eq(hmig_synth_stats(d, &st), 0);
		if (st.violations)
			break;
		sleep_ms(5);
	}
	cr_assert_gt(st.violations, 0, "no read noticed the stale page");
	cr_assert_eq(st.first_bad_pfn, stale);
	free(blob);
	d->ops->destroy(d);
	s->ops->destroy(s);
}

struct toucher {
	const volatile uint64_t *addr;
	uint64_t value;
	atomic_bool done;
};

static void *touch_main(void *arg)
{
	struct toucher *t = arg;

	t->value = t->addr[3];
	atomic_store(&t->done, true);
	return NULL;
}

Test(guest, missing_page_blocks_until_installed, .timeout = 30)
{
	skip_without_uffd();
	struct hmig_guest_geometry geo = { .npages = 64, .page_size = PAGE, .nvcpus = 1 };
	struct hmig_guest *d;
	char err[256];
	uint64_t data[PAGE / 8];

	cr_assert_eq(hmig_synth_open_dest(&d, err), 0);
	cr_assert_eq(d->ops->dest_prepare(d, &geo), 0, "%s", hmig_guest_error(d));
	struct toucher t = { .addr = (const volatile uint64_t *)page_of(d, 5) };
	pthread_t th;
	pthread_create(&th, NULL, touch_main, &t);

	struct pollfd pfd = { .fd = d->ops->fault_fd(d), .events = POLLIN };
	cr_assert_eq(poll(&pfd, 1, 5000), 1, "no fault reported");
	uint64_t pfns[8];
	int n = d->ops->faults_read(d, pfns, 8);
	cr_assert_eq(n, 1);
	cr_assert_eq(pfns[0], 5);
	sleep_ms(20);
	cr_assert(!atomic_load(&t.done), "the thread read a missing page");

	for (size_t i = 0; i < PAGE / 8; i++)
		data[i] = 0xabcd0000 + i;
	cr_assert_eq(d->ops->page_install(d, 5, 1, data, 0), 0, "%s", hmig_guest_error(d));
	pthread_join(th, NULL);
	cr_assert_eq(t.value, 0xabcd0003);

	/* Installing twice before start overwrites (a later pre-copy pass);
	 * the engine says so, since it owns presence.  Placing a page that is
	 * there is the engine's bug, and said to be. */
	data[3] = 42;
	cr_assert_eq(d->ops->page_install(d, 5, 1, data, HMIG_INSTALL_REPLACE), 0);
	cr_assert_eq(((const uint64_t *)page_of(d, 5))[3], 42);
	cr_assert_eq(d->ops->page_install(d, 5, 1, data, 0), -EEXIST);
	cr_assert(strstr(hmig_guest_error(d), "pfn 5 is already present"), "%s",
		  hmig_guest_error(d));
	/* A zero page is installed without data. */
	cr_assert_eq(d->ops->page_install(d, 6, 1, NULL, 0), 0);
	cr_assert_eq(((const uint64_t *)page_of(d, 6))[9], 0);

	/* Dropped pages fault again. */
	uint64_t *drop = bitmap_new(64);
	bitmap_set(drop, 5);
	cr_assert_eq(d->ops->pages_drop(d, drop), 1);
	t.done = false;
	pthread_create(&th, NULL, touch_main, &t);
	cr_assert_eq(poll(&pfd, 1, 5000), 1, "a dropped page did not fault");
	cr_assert_eq(d->ops->faults_read(d, pfns, 8), 1);
	cr_assert_eq(pfns[0], 5);
	data[3] = 7;
	cr_assert_eq(d->ops->page_install(d, 5, 1, data, 0), 0);
	pthread_join(th, NULL);
	cr_assert_eq(t.value, 7);
	free(drop);
	d->ops->destroy(d);
}

Test(guest, geometry_the_backend_cannot_hold_is_refused)
{
	struct hmig_guest *d;
	char err[256];
	struct hmig_guest_geometry geo = { .npages = 64, .page_size = 65536, .nvcpus = 1 };

	cr_assert_eq(hmig_synth_open_dest(&d, err), 0);
	cr_assert_eq(d->ops->dest_prepare(d, &geo), -EINVAL);
	cr_assert(strstr(hmig_guest_error(d), "65536"), "%s", hmig_guest_error(d));
	d->ops->destroy(d);
}

