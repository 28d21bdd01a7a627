/* hmig report: print a report file (hmig ... --json FILE) as an 'info
 * migrate'-like summary, or merge a source's and a destination's report of
 * one migration into the document 'hmig demo --json' writes. */
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "cmd.h"
#include "summary.h"

void cmd_report_usage(void)
{
	printf("usage: hmig report [--text | --json] FILE [FILE2]\n"
	       "Prints a report that 'hmig send', 'recv' or 'demo' wrote with --json.  Given\n"
	       "two, a source's and a destination's report of one migration (in any order),\n"
	       "merges them as 'hmig demo --json' does (docs/report.md says how).\n\n"
	       "  --text     an 'info migrate'-like summary (the default)\n"
	       "  --json     the document itself: the merged one for two files\n");
}

static const char *side_of(const json_t *doc)
{
	const char *s = doc_str(doc, "side");

	return s ? s : "";
}

int cmd_report(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "text", no_argument, NULL, 't' },
		{ "json", no_argument, NULL, 'j' },
		{ 0 }
	};
	json_t *docs[2] = { NULL, NULL }, *doc = NULL;
	char err[DOC_ERR_LEN];
	bool json = false;
	int c, n, status = 1;

	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		if (c == '?') {
			die_msg("unknown option '%s': run 'hmig report --help'", argv[optind - 1]);
			return EXIT_USAGE;
		}
		json = c == 'j';
	}
	n = argc - optind;
	if (n < 1 || n > 2) {
		die_msg("report takes one report file, or a source's and a destination's to merge: run 'hmig report --help'");
		return EXIT_USAGE;
	}
	for (int i = 0; i < n; i++) {
		if (doc_load(argv[optind + i], &docs[i], err)) {
			die_msg("%s", err);
			goto out;
		}
	}
	if (n == 1) {
		doc = json_incref(docs[0]);
	} else {
		/* Which is which comes from the documents, not the order. */
		int s = !strcmp(side_of(docs[1]), "source") ? 1 : 0;

		if (strcmp(side_of(docs[s]), "source") || strcmp(side_of(docs[!s]), "destination")) {
			die_msg("to merge, give one source and one destination report (these are '%s' and '%s')",
				side_of(docs[0]), side_of(docs[1]));
			status = EXIT_USAGE;
			goto out;
		}
		if (doc_merged(docs[s], docs[!s], &doc, err)) {
			die_msg("%s", err);
			goto out;
		}
	}
	if (!json)
		summary_print(doc, stdout);
	else if (doc_write(doc, stdout))
		goto out; /* stdout closed: nobody to tell */
	status = 0;
out:
	json_decref(doc);
	json_decref(docs[0]);
	json_decref(docs[1]);
	return status;
}
