/* hmig report: print the summary of a report file (hmig ... --json FILE). */
#include <stdio.h>

#include "cmd.h"
#include "summary.h"

void cmd_report_usage(void)
{
	printf("usage: hmig report FILE...\nPrints the summary of each JSON report.\n");
}

int cmd_report(int argc, char **argv)
{
	int status = 0;

	if (argc < 2) {
		cmd_report_usage();
		return EXIT_USAGE;
	}
	for (int i = 1; i < argc; i++) {
		char err[DOC_ERR_LEN];
		json_t *v;

		if (doc_load(argv[i], &v, err)) {
			die_msg("%s", err);
			status = 1;
			continue;
		}
		summary_print(v, stdout);
		json_decref(v);
	}
	return status;
}
