/* hmig demo: the README's demo.  Runs 'hmig recv' as a child process on a
 * loopback port and the source in this process (local.c), prints both
 * summaries and, with --json, one report merging the two sides. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd.h"
#include "migopts.h"
#include "doc.h"
#include "local.h"
#include "summary.h"

void cmd_demo_usage(void)
{
	mig_usage(ROLE_DEMO);
}

static int merge(const struct local_run *lr, struct outfile *out)
{
	json_t *s = NULL, *d = NULL;
	char err[DOC_ERR_LEN] = "no report from either side";
	char *text = NULL;
	size_t len = 0;
	int rc = -EINVAL;
	FILE *m = open_memstream(&text, &len);

	if (lr->src_json)
		doc_parse(lr->src_json, lr->src_len, &s, err);
	if (lr->dst_json)
		doc_parse(lr->dst_json, lr->dst_len, &d, err);
	if (m && (s || d))
		rc = doc_merge(s, d, m, err);
	if (m && fclose(m) && !rc)
		rc = -EIO;
	if (rc) {
		die_msg("cannot merge the reports into %s: %s", out->path, err);
		outfile_drop(out);
	} else {
		rc = outfile_write(out, text, len);
	}
	free(text);
	json_decref(s);
	json_decref(d);
	return rc;
}

int cmd_demo(int argc, char **argv)
{
	struct mig_opts o;
	struct local_run lr;

	if (mig_parse(argc, argv, ROLE_DEMO, &o))
		return EXIT_USAGE;
	printf("demo: %s migration of a %lu MiB guest, %u vCPUs, workload %s\n",
	       hmig_mode_name(o.cfg.mode), (unsigned long)(o.guest.synth.mem_bytes >> 20),
	       o.guest.synth.vcpus, o.guest.synth.workload);
	fflush(stdout);
	int status = local_migrate(&o, &lr);
	if (lr.dst_out)
		fwrite(lr.dst_out, 1, strlen(lr.dst_out), stdout);
	if (o.json && merge(&lr, &o.json_out))
		status = 1;
	local_run_free(&lr);
	return status;
}
