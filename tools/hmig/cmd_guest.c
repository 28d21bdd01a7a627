/* hmig guest: run the built-in guest with dirty logging and report, per
 * interval, how many pages it dirtied, what collecting them cost, and what the
 * logging costs the guest (ops/s with logging vs a run without). */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <hmig/synth.h>

#include "cmd.h"
#include "doc.h"
#include "migopts.h"
#include "profile.h"

struct guest_opts {
	struct profile_opts prof;
	struct outfile json; /* --json, opened before the guest runs */
};

void cmd_guest_usage(void)
{
	printf("usage: hmig guest [options]\n"
	       "Runs the built-in guest with dirty logging and prints, per interval, the pages\n"
	       "dirtied, the dirty rate, the cost of collecting them and the guest's ops/s;\n"
	       "then the logging overhead against a run without logging, and the oracle's\n"
	       "verdict on the memory.\n\n"
	       "  --mem SIZE          guest memory (default 1G)\n"
	       "  --vcpus N           vCPU threads, 1..64 (default 2)\n"
	       "  --workload SPEC     name[:key=value,...] (default uniform:rate=20000):\n"
	       "                        idle\n"
	       "                        uniform[:rate=OPS]          random page writes\n"
	       "                        zipf[:rate=OPS,s=0.99]      skewed hot set\n"
	       "                        seq[:rate=OPS]              sequential writes\n"
	       "                        read[:rate=OPS,write_pct=5] read-mostly\n"
	       "                        kv[:rate=OPS,set_pct=10,load=0.5,dist=zipf|uniform,s=0.99]\n"
	       "                      rate is ops/s over all vCPUs; absent or 0 = unthrottled\n"
	       "  --fill F            fraction of pages written before the workload (default 1)\n"
	       "  --seed N            workload seed (default fixed)\n"
	       "  --seconds S         how long to run with logging (default 5)\n"
	       "  --interval-ms MS    collect period (default 100)\n"
	       "  --dirty MODE        auto, async (uffd-wp async + PAGEMAP_SCAN) or sync\n"
	       "  --no-baseline       skip the run without logging\n"
	       "  --json FILE         write the figures as JSON\n");
}

static int parse_guest_opts(int argc, char **argv, struct guest_opts *o)
{
	static const struct option longopts[] = {
		{ "mem", required_argument, NULL, 'm' },
		{ "vcpus", required_argument, NULL, 'v' },
		{ "workload", required_argument, NULL, 'w' },
		{ "fill", required_argument, NULL, 'f' },
		{ "seed", required_argument, NULL, 's' },
		{ "seconds", required_argument, NULL, 't' },
		{ "interval-ms", required_argument, NULL, 'i' },
		{ "dirty", required_argument, NULL, 'd' },
		{ "no-baseline", no_argument, NULL, 'B' },
		{ "json", required_argument, NULL, 'j' },
		{ 0 }
	};
	int c, idx;

	*o = (struct guest_opts){ .prof = {
		.seconds = 5, .interval_ms = 100, .baseline = true, .rows_out = stdout,
	}, .json.fd = -1 };
	synth_opts_default(&o->prof.p);
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "", longopts, &idx)) != -1) {
		switch (c) {
		case 'm': case 'v': case 'w': case 'f': case 's': /* the synth group */
			if (synth_opt_set(&o->prof.p, longopts[idx].name, optarg))
				return -1;
			break;
		case 't':
			if (opt_double("--seconds", optarg, 0.1, 86400, &o->prof.seconds))
				return -1;
			break;
		case 'i':
			if (opt_u64("--interval-ms", optarg, 1, 60000, &o->prof.interval_ms))
				return -1;
			break;
		case 'd':
			if (hmig_dirty_mode_parse(optarg, &o->prof.dirty)) {
				die_msg("bad value for --dirty: '%s' (use auto, async or sync)", optarg);
				return -1;
			}
			break;
		case 'B':
			o->prof.baseline = false;
			break;
		case 'j':
			o->json.path = optarg;
			break;
		default:
			die_msg("unknown or incomplete option '%s': run 'hmig guest --help'",
				argv[optind - 1]);
			return -1;
		}
	}
	if (optind < argc) {
		die_msg("unexpected argument '%s': run 'hmig guest --help'", argv[optind]);
		return -1;
	}
	return outfile_open(&o->json, o->json.path);
}

static int write_json(struct guest_opts *o, const struct profile *pr)
{
	json_t *doc = json_pack("{s:{s:s,s:I,s:I,s:I,s:s},s:s,s:s,s:o,s:o}",
		"guest", "backend", "synth", "pages", (json_int_t)pr->geo.npages,
		"page_size", (json_int_t)pr->geo.page_size, "vcpus", (json_int_t)pr->geo.nvcpus,
		"workload", o->prof.p.workload,
		"dirty_logging", pr->mode, "integrity", pr->integrity,
		"collect_mean_ms", doc_real(pr->collect_mean_ms),
		"guest_ops_per_s_logged", doc_real(pr->ops_logged));
	json_t *rows = json_array();
	int rc = doc && rows ? 0 : -ENOMEM;

	if (!rc && pr->ops_unlogged > 0) {
		json_object_set_new(doc, "guest_ops_per_s_unlogged", doc_real(pr->ops_unlogged));
		json_object_set_new(doc, "logging_slowdown", doc_real(
			pr->ops_unlogged / (pr->ops_logged > 0 ? pr->ops_logged : 1)));
	}
	if (!rc && pr->synth_final.lat_count) {
		json_object_set_new(doc, "kv_latency_p50_ns", doc_real(pr->synth_final.lat_p50_ns));
		json_object_set_new(doc, "kv_latency_p99_ns", doc_real(pr->synth_final.lat_p99_ns));
	}
	for (size_t i = 0; !rc && i < pr->nrows; i++) {
		const struct profile_row *r = &pr->rows[i];

		if (json_array_append_new(rows, json_pack("{s:o,s:I,s:o,s:o,s:o}",
				"t_ms", doc_real(r->t_ms), "pages_dirtied", (json_int_t)r->dirtied,
				"dirty_rate_pps", doc_real((double)r->dirtied * 1000.0 /
							   (double)o->prof.interval_ms),
				"collect_ms", doc_real(r->collect_ms),
				"guest_ops_per_s", doc_real(r->ops_per_s))))
			rc = -ENOMEM;
	}
	if (!rc && json_object_set(doc, "intervals", rows))
		rc = -ENOMEM;
	json_decref(rows);

	char *text = NULL;
	size_t len = 0;
	FILE *m = rc ? NULL : open_memstream(&text, &len);
	if (m) {
		rc = doc_write(doc, m);
		if (fclose(m) && !rc)
			rc = -ENOMEM;
	}
	json_decref(doc);
	if (rc || !m) {
		die_msg("cannot write %s: %s", o->json.path, strerror(rc ? -rc : ENOMEM));
		outfile_drop(&o->json);
		rc = -1;
	} else {
		rc = outfile_write(&o->json, text, len);
	}
	free(text);
	return rc;
}

int cmd_guest(int argc, char **argv)
{
	struct guest_opts o;
	struct profile pr;
	int rc;

	if (parse_guest_opts(argc, argv, &o))
		return EXIT_USAGE;
	printf("guest: synth, %lu MiB, %u vCPUs, workload %s, fill %.0f%%\n",
	       (unsigned long)(o.prof.p.mem_bytes >> 20), o.prof.p.vcpus, o.prof.p.workload,
	       o.prof.p.fill * 100);
	rc = profile_run(&o.prof, &pr);
	if (rc) {
		die_msg("%s", pr.err);
		profile_free(&pr);
		outfile_drop(&o.json);
		return rc == -EINVAL ? EXIT_USAGE : 1;
	}
	double gib = (double)(pr.geo.npages * pr.geo.page_size) / (double)(1ull << 30);
	printf("\nfill: %.0f ms\n", pr.fill_ms);
	printf("collect: mean %.3f ms, max %.3f ms (%.3f ms per GiB)\n", pr.collect_mean_ms,
	       pr.collect_max_ms, pr.collect_mean_ms / gib);
	printf("guest ops/s with logging:    %.0f\n", pr.ops_logged);
	if (pr.ops_unlogged > 0)
		printf("guest ops/s without logging: %.0f  (logging slowdown %.2fx)\n",
		       pr.ops_unlogged, pr.ops_unlogged / (pr.ops_logged > 0 ? pr.ops_logged : 1));
	if (pr.synth_final.lat_count)
		printf("kv request latency: p50 %.0f ns, p99 %.0f ns, max %.0f ns\n",
		       pr.synth_final.lat_p50_ns, pr.synth_final.lat_p99_ns,
		       pr.synth_final.lat_max_ns);
	printf("integrity: %s (oracle replayed %lu ops in %.0f ms)%s%s\n", pr.integrity,
	       (unsigned long)pr.final.ops, pr.verify_ms, pr.err[0] ? ": " : "", pr.err);
	int status = strcmp(pr.integrity, "mismatch") ? 0 : 1;
	if (o.json.path && write_json(&o, &pr))
		status = 1;
	profile_free(&pr);
	return status;
}
