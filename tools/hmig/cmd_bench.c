/* hmig bench: the measurements behind docs/benchmarks.md.  Speed targets are
 * checked here, as ratios against a baseline measured in the same run, never
 * by timed assertions in tests. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "baseline.h"
#include "cmd.h"
#include "local.h"
#include "profile.h"
#include "doc.h"
#include "summary.h"

struct bench_opts {
	uint64_t mem;
	double seconds;
	uint32_t vcpus;
	bool insecure;  /* plaintext (CRC32C per page) instead of TLS */
};

/* What the channels ran, for each table's heading. */
static const char *channels(const struct bench_opts *o)
{
	return o->insecure ? "plaintext with CRC32C" : "TLS 1.3, throwaway PSK";
}

struct bench {
	const char *name;
	const char *summary;
	int (*run)(const struct bench_opts *o);
};

static int profile_or_die(struct profile_opts *po, struct profile *pr)
{
	int rc = profile_run(po, pr);

	if (rc) {
		die_msg("%s", pr->err);
		profile_free(pr);
	}
	return rc;
}

/* Dirty logging on the synth guest: what a collect costs per GiB with few and
 * with many dirty pages, what logging costs the guest, and how fast the
 * uniform workload writes at all. */
static int bench_guest(const struct bench_opts *o)
{
	static const struct {
		const char *label, *workload;
		enum hmig_dirty_mode mode;
	} cases[] = {
		{ "few dirty (1k pages/s)", "uniform:rate=1000", HMIG_DIRTY_WP_ASYNC },
		{ "many dirty (unthrottled)", "uniform", HMIG_DIRTY_WP_ASYNC },
		{ "few dirty (1k pages/s)", "uniform:rate=1000", HMIG_DIRTY_WP_SYNC },
		{ "many dirty (unthrottled)", "uniform", HMIG_DIRTY_WP_SYNC },
	};
	uint64_t mems[2] = { o->mem, o->mem * 4 };

	printf("## bench guest: dirty logging (%u vCPUs, %.1f s per case, 100 ms interval)\n\n",
	       o->vcpus, o->seconds);
	printf("| memory | case | logging | collect ms (mean) | collect ms/GiB | "
	       "pages/collect | writes/s logged | ops/s unlogged | slowdown | integrity |\n");
	printf("|---|---|---|---|---|---|---|---|---|---|\n");
	for (size_t m = 0; m < 2; m++) {
		for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
			struct profile_opts po = {
				.p = { .mem_bytes = mems[m], .vcpus = o->vcpus,
				       .workload = cases[i].workload, .fill = 1.0 },
				.seconds = o->seconds, .interval_ms = 100,
				.dirty = cases[i].mode, .baseline = true,
			};
			struct profile pr;

			if (profile_or_die(&po, &pr))
				return 1;
			double gib = (double)mems[m] / (double)(1ull << 30);
			char size[32];

			summary_size(size, sizeof(size), (double)mems[m]);
			printf("| %s | %s | %s | %.3f | %.3f | %.0f | %.0f | %.0f | %.2fx | %s |\n",
			       size, cases[i].label, pr.mode, pr.collect_mean_ms,
			       pr.collect_mean_ms / gib, pr.dirty_rate_pps / 10.0,
			       pr.writes_logged, pr.ops_unlogged,
			       pr.ops_unlogged / (pr.ops_logged > 0 ? pr.ops_logged : 1),
			       pr.integrity);
			fflush(stdout);
			profile_free(&pr);
		}
	}
	return 0;
}

/* One local migration with `workload` and knobs ("key=value", NULL-ended,
 * for the source); parses both reports. */
static int migrate_sec(const struct bench_opts *o, const char *workload, enum hmig_mode mode,
		       double warmup, const char *const *knobs, bool insecure, json_t **src,
		       json_t **dst);

static int migrate_k(const struct bench_opts *o, const char *workload, enum hmig_mode mode,
		     double warmup, const char *const *knobs, json_t **src, json_t **dst)
{
	return migrate_sec(o, workload, mode, warmup, knobs, o->insecure, src, dst);
}

/* One local migration, TLS with an ephemeral key (local.c) unless insecure. */
static int migrate_sec(const struct bench_opts *o, const char *workload, enum hmig_mode mode,
		       double warmup, const char *const *knobs, bool insecure, json_t **src,
		       json_t **dst)
{
	struct mig_opts m;
	struct local_run lr;
	char err[256];
	char *argv[] = { "bench", NULL };

	if (mig_parse(1, argv, ROLE_DEMO, &m))
		return -1;
	for (; knobs && *knobs; knobs++) {
		char key[64];
		const char *eq = strchr(*knobs, '=');

		snprintf(key, sizeof(key), "%.*s", (int)(eq - *knobs), *knobs);
		if (hmig_config_set(&m.cfg, key, eq + 1, err)) {
			die_msg("bench: %s", err);
			return -1;
		}
	}
	m.guest.synth.mem_bytes = o->mem;
	m.guest.synth.vcpus = o->vcpus;
	m.guest.synth.workload = workload;
	m.cfg.mode = mode;
	m.cfg.insecure = insecure;
	m.warmup = warmup;
	m.run_after = 0.5;
	m.quiet = true;
	int status = local_migrate(&m, &lr);
	int rc = -1;
	if (lr.src_json && lr.dst_json && doc_parse(lr.src_json, lr.src_len, src, err) == 0) {
		if (doc_parse(lr.dst_json, lr.dst_len, dst, err) == 0)
			rc = 0;
		else
			json_decref(*src);
	}
	local_run_free(&lr);
	if (rc)
		die_msg("bench: the migration with %s failed (status %d)", workload, status);
	return rc;
}

static int migrate(const struct bench_opts *o, const char *workload, enum hmig_mode mode,
		   double warmup, json_t **src, json_t **dst)
{
	return migrate_k(o, workload, mode, warmup, NULL, src, dst);
}

static double jd(const json_t *r, const char *path)
{
	double v = 0;

	doc_double(r, path, &v);
	return v;
}

/* Pre-copy: pass-0 throughput against raw TCP in the same run, then
 * downtime and bytes against the dirty rate. */
static int bench_precopy(const struct bench_opts *o)
{
	static const char *const rates[] = {
		"idle", "uniform:rate=10000", "uniform:rate=50000", "uniform:rate=200000",
	};
	json_t *src, *dst;
	struct baseline_tcp tcp;

	printf("## bench precopy (%lu MiB guest, %u vCPUs, loopback, %s)\n\n",
	       (unsigned long)(o->mem >> 20), o->vcpus, channels(o));
	/* Source + destination + the fresh-memory baseline: warm 4 guest sizes. */
	baseline_warm_memory(4 * o->mem);
	if (baseline_tcp_blast(o->mem, &tcp)) {
		die_msg("bench: the raw TCP baseline failed");
		return 1;
	}
	printf("raw TCP, %lu MiB into a reused 1 MiB buffer: %.0f MB/s; into fresh memory: %.0f MB/s\n\n",
	       (unsigned long)(o->mem >> 20), tcp.reused_mbs, tcp.fresh_mbs);

	if (migrate(o, "idle", HMIG_MODE_PRECOPY, 0.2, &src, &dst))
		return 1;
	double ms = jd(src, "passes[0].ms"), pages = jd(src, "passes[0].pages_sent");
	double mbs = pages * 4096 / (ms / 1e3) / 1e6;
	printf("pass 0 of an idle guest: %.0f ms, %.0f MB/s = %.2fx raw TCP (reused buffer), "
	       "%.2fx raw TCP into fresh memory (target >= 0.8x); integrity %s\n\n",
	       ms, mbs, mbs / tcp.reused_mbs, mbs / tcp.fresh_mbs, doc_str(dst, "integrity"));
	json_decref(src);
	json_decref(dst);

	printf("| workload | passes | switchover | stale pages | downtime ms | total ms | "
	       "bytes / guest size | integrity |\n|---|---|---|---|---|---|---|---|\n");
	for (size_t i = 0; i < sizeof(rates) / sizeof(rates[0]); i++) {
		if (migrate(o, rates[i], HMIG_MODE_PRECOPY, 1.0, &src, &dst))
			return 1;
		printf("| %s | %zu | %s | %.0f | %.1f | %.0f | %.2f | %s |\n", rates[i],
		       json_array_size(json_object_get(src, "passes")), doc_str(src, "switchover.reason"),
		       jd(src, "switchover.stale_pages"), jd(src, "downtime_ms"),
		       jd(src, "total_ms"), jd(src, "bytes.total") / (double)o->mem,
		       doc_str(dst, "integrity"));
		fflush(stdout);
		json_decref(src);
		json_decref(dst);
	}
	return 0;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* Median and range of n values (sorts v). */
struct spread {
	double med, min, max;
};

static struct spread spread_of(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(v[0]), cmp_double);
	return (struct spread){ n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2, v[0], v[n - 1] };
}

/* Post-copy: downtime, pull latency against what a pull costs at least,
 * throughput against raw TCP, hybrid against pre-copy where pre-copy cannot
 * converge, and the three push orders. */
static int bench_postcopy(const struct bench_opts *o)
{
	enum { DOWNTIME_RUNS = 5 };
	json_t *src, *dst;
	struct baseline_tcp tcp;
	struct baseline_pull pull;
	printf("## bench postcopy (%lu MiB guest, %u vCPUs, loopback, %s)\n\n",
	       (unsigned long)(o->mem >> 20), o->vcpus, channels(o));
	baseline_warm_memory(4 * o->mem);
	if (baseline_tcp_blast(o->mem, &tcp) || baseline_pull(&pull)) {
		die_msg("bench: a baseline failed");
		return 1;
	}
	double floor_us = (pull.rtt_p50_ns + pull.copy_p50_ns) / 1e3;
	printf("baselines: raw TCP %.0f MB/s (reused buffer), %.0f MB/s (fresh memory); "
	       "4 KiB round trip p50 %.1f us (p99 %.1f); one-page UFFDIO_COPY p50 %.1f us "
	       "(p99 %.1f); a pull costs at least %.1f us\n\n",
	       tcp.reused_mbs, tcp.fresh_mbs, pull.rtt_p50_ns / 1e3, pull.rtt_p99_ns / 1e3,
	       pull.copy_p50_ns / 1e3, pull.copy_p99_ns / 1e3, floor_us);

	/* Downtime: postcopy after pass 0, a guest writing 20k pages/s. */
	double dt[DOWNTIME_RUNS], bo[DOWNTIME_RUNS], r50[DOWNTIME_RUNS], r99[DOWNTIME_RUNS];
	double rtt99_us = pull.rtt_p99_ns / 1e3;
	printf("| run | downtime ms | guest blackout ms | stale pages | faults | pull p50 us | "
	       "pull p99 us | p50 / floor | p99 / RTT p99 | integrity |\n"
	       "|---|---|---|---|---|---|---|---|---|---|\n");
	for (int i = 0; i < DOWNTIME_RUNS; i++) {
		if (migrate(o, "uniform:rate=20000", HMIG_MODE_POSTCOPY, 1.0, &src, &dst))
			return 1;
		dt[i] = jd(src, "downtime_ms");
		bo[i] = jd(dst, "guest_blackout_ms");
		double p50 = jd(dst, "faults.latency_us.p50"), p99 = jd(dst, "faults.latency_us.p99");
		r50[i] = p50 / floor_us;
		r99[i] = p99 / rtt99_us;
		printf("| %d | %.2f | %.2f | %.0f | %.0f | %.1f | %.1f | %.1fx | %.1fx | %s |\n", i,
		       dt[i], bo[i], jd(src, "switchover.stale_pages"), jd(dst, "faults.count"), p50,
		       p99, r50[i], r99[i], doc_str(dst, "integrity"));
		fflush(stdout);
		json_decref(src);
		json_decref(dst);
	}
	struct spread sd = spread_of(dt, DOWNTIME_RUNS), sb = spread_of(bo, DOWNTIME_RUNS);
	struct spread s50 = spread_of(r50, DOWNTIME_RUNS), s99 = spread_of(r99, DOWNTIME_RUNS);
	printf("\nover %d runs, median (range): post-copy downtime %.2f ms (%.2f-%.2f; target <= 2 ms); "
	       "guest blackout %.2f ms (%.2f-%.2f); pull p50 %.1fx the floor (%.1f-%.1f; target <= 2x); "
	       "pull p99 %.1fx the 4 KiB round trip's p99 (%.1f-%.1f; target <= 3x)\n\n",
	       DOWNTIME_RUNS, sd.med, sd.min, sd.max, sb.med, sb.min, sb.max, s50.med, s50.min,
	       s50.max, s99.med, s99.min, s99.max);

	/* Throughput: an idle guest, nothing sent before the switch, pushed. */
	static const char *const nothing_first[] = { "precopy_passes=0", "push=seq", NULL };
	if (migrate_k(o, "idle", HMIG_MODE_POSTCOPY, 0.2, nothing_first, &src, &dst))
		return 1;
	double ms = jd(dst, "resume_to_complete_ms");
	double mbs = (double)o->mem / (ms / 1e3) / 1e6;
	printf("post-copy of an idle guest (precopy_passes=0, push=seq): resume to complete %.0f ms, "
	       "%.0f MB/s = %.2fx raw TCP (reused buffer), %.2fx raw TCP into fresh memory "
	       "(target >= 0.8x); integrity %s\n\n",
	       ms, mbs, mbs / tcp.reused_mbs, mbs / tcp.fresh_mbs, doc_str(dst, "integrity"));
	json_decref(src);
	json_decref(dst);

	/* A dirty rate pre-copy cannot beat: unthrottled uniform writes. */
	static const char *const bounded[] = { "min_progress=0", NULL };
	printf("| unthrottled uniform | passes | switchover | downtime ms | guest blackout ms | "
	       "total ms | bytes / guest | faults | integrity |\n|---|---|---|---|---|---|---|---|---|\n");
	for (int m = 0; m < 2; m++) {
		enum hmig_mode mode = m ? HMIG_MODE_PRECOPY : HMIG_MODE_HYBRID;

		if (migrate_k(o, "uniform", mode, 1.0, m ? bounded : NULL, &src, &dst))
			return 1;
		printf("| %s | %zu | %s | %.1f | %.1f | %.0f | %.2f | %.0f | %s |\n", hmig_mode_name(mode),
		       json_array_size(json_object_get(src, "passes")), doc_str(src, "switchover.reason"),
		       jd(src, "downtime_ms"), jd(dst, "guest_blackout_ms"), jd(src, "total_ms"),
		       jd(src, "bytes.total") / (double)o->mem, jd(dst, "faults.count"),
		       doc_str(dst, "integrity"));
		fflush(stdout);
		json_decref(src);
		json_decref(dst);
	}

	/* Push against pull: the three push orders after a switch at pass 0. */
	static const char *const orders[][3] = {
		{ "push=seq", NULL }, { "push=hot", NULL }, { "push=near", NULL },
	};
	static const char *const loads[] = { "uniform:rate=200000", "zipf:rate=200000" };
	printf("\n| workload | push | faults | blocktime ms | pull p50 us | pull p99 us | "
	       "pulled | pushed | guest ops/s in post-copy | resume to complete ms | integrity |\n"
	       "|---|---|---|---|---|---|---|---|---|---|---|\n");
	for (size_t w = 0; w < 2; w++) {
		for (size_t k = 0; k < sizeof(orders) / sizeof(orders[0]); k++) {
			if (migrate_k(o, loads[w], HMIG_MODE_POSTCOPY, 1.0, orders[k], &src, &dst))
				return 1;
			printf("| %s | %s | %.0f | %.1f | %.1f | %.1f | %.0f | %.0f | %.0f | %.0f | %s |\n",
			       loads[w], orders[k][0] + 5, jd(dst, "faults.count"),
			       jd(dst, "faults.blocktime_ms"), jd(dst, "faults.latency_us.p50"),
			       jd(dst, "faults.latency_us.p99"), jd(dst, "pages.pulled"),
			       jd(dst, "pages.pushed"), jd(dst, "guest_ops_per_s_postcopy"),
			       jd(dst, "resume_to_complete_ms"), doc_str(dst, "integrity"));
			fflush(stdout);
			json_decref(src);
			json_decref(dst);
		}
	}
	return 0;
}

/* Memory-heavy guests: every mode at 1, 2, 4 and 8 times --mem, each cell
 * `runs` times, against a baseline measured in the same run at each size:
 * faulting in that much fresh memory (what the destination pays before any
 * byte arrives) plus a raw TCP transfer of the same bytes into a reused
 * buffer.  The question is what grows with size besides the bytes. */
static int bench_scale(const struct bench_opts *o)
{
	enum { RUNS = 3 };
	static const struct {
		const char *label, *workload;
		enum hmig_mode mode;
		const char *const knobs[3];
	} cells[] = {
		{ "precopy, idle", "idle", HMIG_MODE_PRECOPY, { NULL } },
		{ "precopy, 50k writes/s", "uniform:rate=50000", HMIG_MODE_PRECOPY, { NULL } },
		{ "postcopy, 0 passes, idle", "idle", HMIG_MODE_POSTCOPY,
		  { "precopy_passes=0", NULL } },
		{ "postcopy, 1 pass, 20k writes/s", "uniform:rate=20000", HMIG_MODE_POSTCOPY,
		  { "precopy_passes=1", NULL } },
		{ "hybrid, unthrottled writer", "uniform", HMIG_MODE_HYBRID, { NULL } },
	};
	printf("## bench scale (%u vCPUs, loopback, %s, %d runs a cell: median (min-max))\n\n",
	       o->vcpus, channels(o), RUNS);
	/* This VM backs memory lazily and takes freed memory back after a
	 * while: whoever touches memory first pays several times what a warm
	 * touch costs, and the order of runs would decide the figures.  So
	 * warm up first, enough for both sides of the largest guest, and
	 * report what that first touch cost. */
	uint64_t warm = 2 * 8 * o->mem + (1ull << 30), avail = baseline_mem_available();
	if (avail && warm > avail - (avail >> 3))
		warm = avail - (avail >> 3); /* never push the host into the OOM killer */
	double cold_ms = baseline_touch(warm);
	printf("warm-up: faulting in %.0f GiB took %.1f s (%.2f s/GiB), one thread; the figures "
	       "below run on warm memory\n\n", (double)warm / (1ull << 30), cold_ms / 1e3,
	       cold_ms / 1e3 / ((double)warm / (1ull << 30)));
	printf("| guest | case | total s | s per GiB | baseline s (touch + TCP) | ratio | "
	       "downtime ms | bytes / guest | peak MiB src / dst | integrity |\n"
	       "|---|---|---|---|---|---|---|---|---|---|\n");
	for (int k = 1; k <= 8; k *= 2) {
		struct bench_opts so = *o;
		struct baseline_tcp tcp;

		so.mem = o->mem * (uint64_t)k;
		double gib = (double)so.mem / (double)(1ull << 30);
		double touch = baseline_touch(so.mem);
		if (touch < 0 || baseline_tcp_blast(so.mem, &tcp)) {
			die_msg("bench: the baselines at %.0f GiB failed", gib);
			return 1;
		}
		double base_s = touch / 1e3 + (double)so.mem / (tcp.reused_mbs * 1e6);
		printf("| %g GiB | baseline: touch %.2f s + TCP %.2f s (%.0f MB/s) | | | %.2f | | | | | |\n",
		       gib, touch / 1e3, (double)so.mem / (tcp.reused_mbs * 1e6), tcp.reused_mbs,
		       base_s);
		for (size_t c = 0; c < sizeof(cells) / sizeof(cells[0]); c++) {
			double tot[RUNS], dt[RUNS], bytes = 0, psrc = 0, pdst = 0;
			const char *integrity = "ok";

			for (int r = 0; r < RUNS; r++) {
				json_t *src, *dst;

				if (migrate_k(&so, cells[c].workload, cells[c].mode, 1.0,
					      cells[c].knobs, &src, &dst))
					return 1;
				tot[r] = jd(src, "total_ms") / 1e3;
				dt[r] = jd(src, "downtime_ms");
				bytes = jd(src, "bytes.total") / (double)so.mem;
				double ps = jd(src, "peak_rss_mib"), pd = jd(dst, "peak_rss_mib");
				psrc = ps > psrc ? ps : psrc;
				pdst = pd > pdst ? pd : pdst;
				const char *in = doc_str(dst, "integrity");
				if (!in || strcmp(in, "ok"))
					integrity = "MISMATCH";
				json_decref(src);
				json_decref(dst);
			}
			struct spread t = spread_of(tot, RUNS), d = spread_of(dt, RUNS);
			printf("| %g GiB | %s | %.2f (%.2f-%.2f) | %.2f | %.2f | %.2f | "
			       "%.2f (%.2f-%.2f) | %.2f | %.0f / %.0f | %s |\n",
			       gib, cells[c].label, t.med, t.min, t.max, t.med / gib, base_s,
			       t.med / base_s, d.med, d.min, d.max, bytes, psrc, pdst, integrity);
			fflush(stdout);
		}
	}
	return 0;
}

/* TLS against plaintext, in one run: pass-0 throughput, idle post-copy
 * throughput and pull latency, each `RUNS` times a side (median and range),
 * and the cipher TLS negotiated.  Targets (issue 13): encrypted throughput
 * >= 0.8x plaintext on loopback, pull p50 <= 1.2x plaintext. */
static int bench_tls(const struct bench_opts *o)
{
	enum { RUNS = 5 };
	static const char *const nothing_first[] = { "precopy_passes=0", "push=seq", NULL };
	double v[2][4][RUNS]; /* [tls][metric][run] */
	char cipher[128] = "?";
	json_t *src, *dst;

	printf("## bench tls (%lu MiB guest, %u vCPUs, loopback, %d runs a side, interleaved: "
	       "median (min-max))\n\n", (unsigned long)(o->mem >> 20), o->vcpus, RUNS);
	baseline_warm_memory(4 * o->mem);
	for (int r = 0; r < RUNS; r++) {
		for (int tls = 0; tls < 2; tls++) {
			if (migrate_sec(o, "idle", HMIG_MODE_PRECOPY, 0.2, NULL, !tls, &src, &dst))
				return 1;
			double ms = jd(src, "passes[0].ms"), pages = jd(src, "passes[0].pages_sent");
			v[tls][0][r] = pages * 4096 / (ms / 1e3) / 1e6;
			if (tls && doc_str(src, "security.cipher"))
				snprintf(cipher, sizeof(cipher), "%s", doc_str(src, "security.cipher"));
			json_decref(src);
			json_decref(dst);
			if (migrate_sec(o, "idle", HMIG_MODE_POSTCOPY, 0.2, nothing_first, !tls, &src, &dst))
				return 1;
			v[tls][1][r] = (double)o->mem / (jd(dst, "resume_to_complete_ms") / 1e3) / 1e6;
			json_decref(src);
			json_decref(dst);
			/* Pull latency as bench postcopy measures it: pass 0, then
			 * post-copy with a guest writing 20k pages/s. */
			if (migrate_sec(o, "uniform:rate=20000", HMIG_MODE_POSTCOPY, 1.0, NULL,
					!tls, &src, &dst))
				return 1;
			v[tls][2][r] = jd(dst, "faults.latency_us.p50");
			v[tls][3][r] = jd(dst, "faults.latency_us.p99");
			const char *in = doc_str(dst, "integrity");
			if (!in || strcmp(in, "ok")) {
				die_msg("bench tls: integrity %s", in ? in : "missing");
				return 1;
			}
			json_decref(src);
			json_decref(dst);
			fprintf(stderr, "bench tls: run %d %s done\n", r, tls ? "tls" : "plaintext");
		}
	}
	static const char *const names[] = {
		"pass-0 throughput, idle guest (MB/s)", "post-copy throughput, idle guest, push=seq (MB/s)",
		"pull latency p50 (us), post-copy after pass 0, 20k writes/s", "pull latency p99 (us)",
	};
	struct spread sp[2][4];
	for (int tls = 0; tls < 2; tls++)
		for (int m = 0; m < 4; m++)
			sp[tls][m] = spread_of(v[tls][m], RUNS);
	printf("negotiated: %s (kTLS: no, this kernel has none)\n\n", cipher);
	printf("| measure | plaintext (CRC32C) | TLS | TLS / plaintext | target | met |\n"
	       "|---|---|---|---|---|---|\n");
	for (int m = 0; m < 4; m++) {
		double ratio = sp[1][m].med / sp[0][m].med;
		const char *target = m < 2 ? ">= 0.8x" : m == 2 ? "<= 1.2x" : "-";
		const char *met = m < 2 ? (ratio >= 0.8 ? "yes" : "no") : m == 2 ? (ratio <= 1.2 ? "yes" : "no") : "-";
		printf("| %s | %.0f (%.0f-%.0f) | %.0f (%.0f-%.0f) | %.2fx | %s | %s |\n", names[m],
		       sp[0][m].med, sp[0][m].min, sp[0][m].max, sp[1][m].med, sp[1][m].min,
		       sp[1][m].max, ratio, target, met);
	}
	return 0;
}

static const struct bench benches[] = {
	{ "guest", "dirty-logging cost and guest write rate", bench_guest },
	{ "precopy", "pass-0 throughput vs raw TCP; downtime and bytes vs dirty rate",
	  bench_precopy },
	{ "postcopy", "downtime, pull latency vs RTT+copy, throughput, hybrid vs precopy, push orders",
	  bench_postcopy },
	{ "scale", "every mode at 1, 2, 4, 8 x --mem: time and downtime vs size, against touch + TCP",
	  bench_scale },
	{ "tls", "TLS against plaintext: pass-0 and post-copy throughput, pull latency, the cipher",
	  bench_tls },
};

#define NBENCHES (sizeof(benches) / sizeof(benches[0]))

void cmd_bench_usage(void)
{
	printf("usage: hmig bench <name> [--mem SIZE] [--vcpus N] [--seconds S] [--insecure]\n\n");
	for (size_t i = 0; i < NBENCHES; i++)
		printf("  %-8s %s\n", benches[i].name, benches[i].summary);
	printf("\nPrints Markdown tables (the format of docs/benchmarks.md).\n"
	       "  --mem SIZE     base guest size (default 1G)\n"
	       "  --vcpus N      vCPUs (default 2)\n"
	       "  --seconds S    measuring time per case (default 3)\n"
	       "  --insecure     plaintext channels (CRC32C per page) instead of TLS\n"
	       "                 (bench tls always measures both)\n");
}

int cmd_bench(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "mem", required_argument, NULL, 'm' },
		{ "vcpus", required_argument, NULL, 'v' },
		{ "seconds", required_argument, NULL, 't' },
		{ "insecure", no_argument, NULL, 'i' },
		{ 0 }
	};
	struct bench_opts o = { .mem = 1ull << 30, .seconds = 3, .vcpus = 2 };
	uint64_t u;
	int c;

	if (argc < 2 || argv[1][0] == '-') {
		die_msg("bench needs a benchmark's name first: run 'hmig bench --help' for the list");
		return EXIT_USAGE;
	}
	const char *name = argv[1];
	optind = 2;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (c) {
		case 'm':
			if (opt_size("--mem", optarg, &o.mem))
				return EXIT_USAGE;
			break;
		case 'v':
			if (opt_u64("--vcpus", optarg, 1, 64, &u))
				return EXIT_USAGE;
			o.vcpus = (uint32_t)u;
			break;
		case 't':
			if (opt_double("--seconds", optarg, 0.2, 3600, &o.seconds))
				return EXIT_USAGE;
			break;
		case 'i':
			o.insecure = true;
			break;
		default:
			die_msg("unknown or incomplete option '%s': run 'hmig bench --help'",
				argv[optind - 1]);
			return EXIT_USAGE;
		}
	}
	for (size_t i = 0; i < NBENCHES; i++)
		if (!strcmp(name, benches[i].name))
			return benches[i].run(&o);
	die_msg("unknown benchmark '%s': run 'hmig bench --help' for the list", name);
	return EXIT_USAGE;
}
