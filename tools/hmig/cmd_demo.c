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

static int merge(const char *src_text, size_t src_len, const char *dst_text, size_t dst_len,
		 const char *out)
{
	json_t *s = NULL, *d = NULL;
	char err[DOC_ERR_LEN] = "no report from either side";
	int rc = -EINVAL;
	FILE *f = fopen(out, "w");

	if (src_text)
		doc_parse(src_text, src_len, &s, err);
	if (dst_text)
		doc_parse(dst_text, dst_len, &d, err);
	if (f && (s || d))
		rc = doc_merge(s, d, f, err);
	if (!f || fclose(f) || rc) {
		die_msg("cannot write the merged report %s: %s", out, rc ? err : strerror(errno));
		rc = -1;
	}
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
	if (o.json && merge(lr.src_json, lr.src_len, lr.dst_json, lr.dst_len, o.json))
		status = 1;
	local_run_free(&lr);
	return status;
}
