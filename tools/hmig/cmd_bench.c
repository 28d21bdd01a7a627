/* hmig bench: the measurements behind docs/benchmarks.md.  Speed targets are
 * checked here, as ratios against a baseline measured in the same run, never
 * by timed assertions in tests. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "baseline.h"
#include "cmd.h"
#include "local.h"
#include "profile.h"
#include "stats/json.h"

struct bench_opts {
	uint64_t mem;
	double seconds;
	uint32_t vcpus;
};

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
			printf("| %.0f GiB | %s | %s | %.3f | %.3f | %.0f | %.0f | %.0f | %.2fx | %s |\n",
			       gib, cases[i].label, pr.mode, pr.collect_mean_ms,
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

/* One local migration with `workload` and knobs; parses both reports. */
static int migrate(const struct bench_opts *o, const char *workload, enum hmig_mode mode,
		   double warmup, struct json_val *src, struct json_val *dst)
{
	struct mig_opts m;
	struct local_run lr;
	char err[256];
	char *argv[] = { "bench", NULL };

	if (mig_parse(1, argv, ROLE_DEMO, &m))
		return -1;
	m.p.mem_bytes = o->mem;
	m.p.vcpus = o->vcpus;
	m.p.workload = workload;
	m.cfg.mode = mode;
	m.warmup = warmup;
	m.run_after = 0.5;
	m.quiet = true;
	int status = local_migrate(&m, 0, argv, &lr);
	int rc = -1;
	if (lr.src_json && lr.dst_json &&
	    json_parse(lr.src_json, lr.src_len, NULL, src, err) == 0) {
		if (json_parse(lr.dst_json, lr.dst_len, NULL, dst, err) == 0)
			rc = 0;
		else
			json_val_free(src);
	}
	local_run_free(&lr);
	if (rc)
		die_msg("bench: the migration with %s failed (status %d)", workload, status);
	return rc;
}

static double jd(const struct json_val *r, const char *path)
{
	double v = 0;

	json_path_double(r, path, &v);
	return v;
}

/* Pre-copy: pass-0 throughput against raw TCP in the same run, then
 * downtime and bytes against the dirty rate. */
static int bench_precopy(const struct bench_opts *o)
{
	static const char *const rates[] = {
		"idle", "uniform:rate=10000", "uniform:rate=50000", "uniform:rate=200000",
	};
	struct json_val src, dst;
	struct baseline_tcp tcp;

	printf("## bench precopy (%lu MiB guest, %u vCPUs, loopback)\n\n",
	       (unsigned long)(o->mem >> 20), o->vcpus);
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
	double ms = jd(&src, "passes[0].ms"), pages = jd(&src, "passes[0].pages_sent");
	double mbs = pages * 4096 / (ms / 1e3) / 1e6;
	printf("pass 0 of an idle guest: %.0f ms, %.0f MB/s = %.2fx raw TCP (reused buffer), "
	       "%.2fx raw TCP into fresh memory (target >= 0.8x); integrity %s\n\n",
	       ms, mbs, mbs / tcp.reused_mbs, mbs / tcp.fresh_mbs, json_path_str(&dst, "integrity"));
	json_val_free(&src);
	json_val_free(&dst);

	printf("| workload | passes | switchover | stale pages | downtime ms | total ms | "
	       "bytes / guest size | integrity |\n|---|---|---|---|---|---|---|---|\n");
	for (size_t i = 0; i < sizeof(rates) / sizeof(rates[0]); i++) {
		if (migrate(o, rates[i], HMIG_MODE_PRECOPY, 1.0, &src, &dst))
			return 1;
		printf("| %s | %zu | %s | %.0f | %.1f | %.0f | %.2f | %s |\n", rates[i],
		       json_len(json_get(&src, "passes")), json_path_str(&src, "switchover.reason"),
		       jd(&src, "switchover.stale_pages"), jd(&src, "downtime_ms"),
		       jd(&src, "total_ms"), jd(&src, "bytes.total") / (double)o->mem,
		       json_path_str(&dst, "integrity"));
		fflush(stdout);
		json_val_free(&src);
		json_val_free(&dst);
	}
	return 0;
}

static const struct bench benches[] = {
	{ "guest", "dirty-logging cost and guest write rate", bench_guest },
	{ "precopy", "pass-0 throughput vs raw TCP; downtime and bytes vs dirty rate",
	  bench_precopy },
};

#define NBENCHES (sizeof(benches) / sizeof(benches[0]))

void cmd_bench_usage(void)
{
	printf("usage: hmig bench <name> [--mem SIZE] [--vcpus N] [--seconds S]\n\n");
	for (size_t i = 0; i < NBENCHES; i++)
		printf("  %-8s %s\n", benches[i].name, benches[i].summary);
	printf("\nPrints Markdown tables (the format of docs/benchmarks.md).\n"
	       "  --mem SIZE     base guest size (default 1G)\n"
	       "  --vcpus N      vCPUs (default 2)\n"
	       "  --seconds S    measuring time per case (default 3)\n");
}

int cmd_bench(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "mem", required_argument, NULL, 'm' },
		{ "vcpus", required_argument, NULL, 'v' },
		{ "seconds", required_argument, NULL, 't' },
		{ 0 }
	};
	struct bench_opts o = { .mem = 1ull << 30, .seconds = 3, .vcpus = 2 };
	uint64_t u;
	int c;

	if (argc < 2) {
		cmd_bench_usage();
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
