/* hmig demo: the README's demo.  Runs 'hmig recv' as a child process on a
 * loopback port and the source in this process (local.c), prints both
 * summaries and, with --json, one report merging the two sides. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd.h"
#include "migopts.h"
#include "stats/report.h"
#include "local.h"
#include "summary.h"

void cmd_demo_usage(void)
{
	mig_usage(ROLE_DEMO);
}

static int merge(const char *src_text, size_t src_len, const char *dst_text, size_t dst_len,
		 const char *out)
{
	struct json_val s, d;
	char err[256];
	int rc = -EINVAL;
	bool have_s = src_text && json_parse(src_text, src_len, NULL, &s, err) == 0;
	bool have_d = dst_text && json_parse(dst_text, dst_len, NULL, &d, err) == 0;
	FILE *f = fopen(out, "w");

	if (f && (have_s || have_d))
		rc = stats_report_merge_json(have_s ? &s : NULL, have_d ? &d : NULL, f, err);
	if (!f || fclose(f) || rc) {
		die_msg("cannot write the merged report %s: %s", out, rc ? err : strerror(errno));
		rc = -1;
	}
	if (have_s)
		json_val_free(&s);
	if (have_d)
		json_val_free(&d);
	return rc;
}

int cmd_demo(int argc, char **argv)
{
	struct mig_opts o;
	struct local_run lr;

	if (mig_parse(argc, argv, ROLE_DEMO, &o))
		return EXIT_USAGE;
	printf("demo: %s migration of a %lu MiB guest, %u vCPUs, workload %s\n",
	       hmig_mode_name(o.cfg.mode), (unsigned long)(o.p.mem_bytes >> 20), o.p.vcpus,
	       o.p.workload);
	fflush(stdout);
	int status = local_migrate(&o, argc, argv, &lr);
	if (lr.dst_out)
		fwrite(lr.dst_out, 1, strlen(lr.dst_out), stdout);
	if (o.json && merge(lr.src_json, lr.src_len, lr.dst_json, lr.dst_len, o.json))
		status = 1;
	local_run_free(&lr);
	return status;
}
