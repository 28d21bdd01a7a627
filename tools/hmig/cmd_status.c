/* hmig status: ask a running 'hmig send' or 'hmig recv' for its figures
 * through its control socket (docs/control.md), as QEMU's query-migrate. */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "cmd.h"
#include "control.h"
#include "doc.h"

void cmd_status_usage(void)
{
	printf("usage: hmig status [--json] PID|PATH\n"
	       "Prints the figures of a running 'hmig send' or 'hmig recv': the one with process id\n"
	       "PID (its default control socket), or the one listening at --control PATH.\n\n"
	       "  --json     the reply as it came: one JSON object (docs/control.md)\n");
}

#define MIB ((double)(1 << 20))

/* A number of the status, through fmt and divided by div, or "-". */
static const char *fig(char b[][48], int *k, const json_t *st, const char *key, const char *fmt,
		       double div)
{
	double v;

	if (doc_double(st, key, &v) || !isfinite(v))
		return "-";
	snprintf(b[*k % 8], 48, fmt, v / div);
	return b[(*k)++ % 8];
}

static void print_status(const json_t *st)
{
	char b[8][48];
	int k = 0;
	const char *side = doc_str(st, "side");
	bool source = side && !strcmp(side, "source");

#define F(key, fmt, div) fig(b, &k, st, key, fmt, div)
	printf("%-16s %s (pid %s)\n", "side:", side ? side : "-", F("pid", "%.0f", 1));
	printf("%-16s %s%s, pass %s\n", "phase:", doc_str(st, "phase") ? doc_str(st, "phase") : "-",
	       json_is_true(json_object_get(st, "finished")) ? " (finished)" : "",
	       F("pass", "%.0f", 1));
	printf("%-16s %s\n", "elapsed:", F("elapsed_ms", "%.1f s", 1e3));
	printf("%-16s %s of %s B\n", "guest pages:", F("guest_pages", "%.0f", 1),
	       F("page_size", "%.0f", 1));
	if (source)
		printf("%-16s %s of %s pages sent, ETA %s\n", "this pass:", F("pass_sent", "%.0f", 1),
		       F("pass_pages", "%.0f", 1), F("eta_ms", "%.1f s", 1e3));
	printf("%-16s %s present, %s left\n", "pages:", F("pages_present", "%.0f", 1),
	       F("pages_left", "%.0f", 1));
	printf("%-16s %s at %s\n", source ? "bulk sent:" : "bulk received:",
	       F("bytes_bulk", "%.1f MiB", MIB), F("bulk_bps", "%.1f MiB/s", MIB));
	printf("%-16s %s at %s\n", source ? "urgent sent:" : "urgent received:",
	       F("bytes_urgent", "%.1f MiB", MIB), F("urgent_bps", "%.1f MiB/s", MIB));
	if (source)
		printf("%-16s %s\n", "dirty rate:", F("dirty_rate_pps", "%.0f pages/s", 1));
	printf("%-16s %s, %s, mean latency %s\n", "pulls:", F("pages_pulled", "%.0f", 1),
	       F("pulls_per_s", "%.0f/s", 1), F("pull_latency_us", "%.0f us", 1));
	printf("%-16s %s\n", "guest ops/s:", F("guest_ops_per_s", "%.0f", 1));
	printf("%-16s %s\n", "downtime:", F("downtime_ms", "%.2f ms", 1));
	if (source) {
		double cap = 0;

		doc_double(st, "rate_limit_bps", &cap);
		printf("%-16s %s\n", "rate cap:", cap > 0 ? F("rate_limit_bps", "%.1f MiB/s", MIB)
							   : "none");
	}
#undef F
}

int cmd_status(int argc, char **argv)
{
	static const struct option longopts[] = { { "json", no_argument, NULL, 'j' }, { 0 } };
	bool raw = false;
	json_t *reply = NULL;
	const json_t *st;
	int c, status = 1;

	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		if (c != 'j') {
			die_msg("unknown option '%s': run 'hmig status --help'", argv[optind - 1]);
			return EXIT_USAGE;
		}
		raw = true;
	}
	if (argc - optind != 1) {
		die_msg("status takes one PID or control socket PATH: run 'hmig status --help'");
		return EXIT_USAGE;
	}
	st = control_cmd(argv[optind], json_pack("{s:s}", "execute", "status"), &reply);
	if (st && raw)
		status = doc_write(reply, stdout) ? 1 : 0;
	else if (st) {
		print_status(st);
		status = 0;
	}
	json_decref(reply);
	return status;
}
