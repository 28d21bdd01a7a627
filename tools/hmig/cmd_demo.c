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

/* Both reports merged into one document; NULL, with the reason printed,
 * when neither side wrote one that parses. */
static json_t *merged(const struct local_run *lr)
{
	json_t *s = NULL, *d = NULL, *m = NULL;
	char err[DOC_ERR_LEN] = "no report from either side";

	if (lr->src_json)
		doc_parse(lr->src_json, lr->src_len, &s, err);
	if (lr->dst_json)
		doc_parse(lr->dst_json, lr->dst_len, &d, err);
	if ((s || d) && doc_merged(s, d, &m, err))
		m = NULL;
	if (!m)
		die_msg("cannot merge the two sides' reports: %s", err);
	json_decref(s);
	json_decref(d);
	return m;
}

static int write_doc(const json_t *doc, struct outfile *out)
{
	char *text = NULL;
	size_t len = 0;
	FILE *m = open_memstream(&text, &len);
	int rc = m ? doc_write(doc, m) : -ENOMEM;

	if (m && fclose(m) && !rc)
		rc = -ENOMEM;
	if (rc) {
		die_msg("cannot write %s: %s", out->path, strerror(-rc));
		outfile_drop(out);
	} else {
		rc = outfile_write(out, text, len);
	}
	free(text);
	return rc ? -1 : 0;
}

int cmd_demo(int argc, char **argv)
{
	struct mig_opts o;
	struct local_run lr;

	if (mig_parse(argc, argv, ROLE_DEMO, &o))
		return EXIT_USAGE;
	if (!o.quiet) {
		char size[32];

		summary_size(size, sizeof(size), (double)o.guest.synth.mem_bytes);
		printf("demo: %s migration of a %s guest, %u vCPUs, workload %s\n",
		       hmig_mode_name(o.cfg.mode), size, o.guest.synth.vcpus,
		       o.guest.synth.workload);
		fflush(stdout);
	}
	int status = local_migrate(&o, &lr);
	json_t *doc = merged(&lr);
	if (doc && !o.quiet)
		summary_print(doc, stdout);
	if (o.json && (!doc || write_doc(doc, &o.json_out)))
		status = 1;
	if (!doc)
		outfile_drop(&o.json_out);
	json_decref(doc);
	local_run_free(&lr);
	return status;
}
