/* hmig report: print the summary of a report file (hmig ... --json FILE). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
		FILE *f = fopen(argv[i], "r");
		char *buf = NULL, err[256];
		size_t cap = 0, len = 0;
		struct json_val v;

		if (!f) {
			die_msg("cannot read %s: %s", argv[i], strerror(errno));
			status = 1;
			continue;
		}
		for (;;) {
			if (len + 65536 > cap) {
				cap = (cap + 65536) * 2;
				char *nb = realloc(buf, cap);
				if (!nb)
					break;
				buf = nb;
			}
			size_t n = fread(buf + len, 1, cap - len, f);
			if (!n)
				break;
			len += n;
		}
		fclose(f);
		if (!buf || json_parse(buf, len, NULL, &v, err)) {
			die_msg("%s is not a report: %s", argv[i], buf ? err : "out of memory");
			status = 1;
		} else {
			summary_print(&v, stdout);
			json_val_free(&v);
		}
		free(buf);
	}
	return status;
}
