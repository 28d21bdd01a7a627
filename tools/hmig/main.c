/* hmig: live-migrate a running guest's memory (pre-copy + post-copy). */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "cmd.h"

static const struct cmd commands[] = {
	{ "guest", "run the built-in guest with dirty logging and report dirty rates",
	  cmd_guest, cmd_guest_usage },
	{ "send", "migrate a running guest to 'hmig recv'", cmd_send, cmd_send_usage },
	{ "recv", "receive a migration and run the guest", cmd_recv, cmd_recv_usage },
	{ "demo", "migrate a guest between two local processes (the README's demo)",
	  cmd_demo, cmd_demo_usage },
	{ "status", "print the figures of a running send or recv", cmd_status, cmd_status_usage },
	{ "set-rate", "change the bandwidth cap of a running send", cmd_set_rate,
	  cmd_set_rate_usage },
	{ "switch", "make a running send switch after the current pass", cmd_switch,
	  cmd_switch_usage },
	{ "cancel", "cancel a running send or recv before the handover", cmd_cancel,
	  cmd_cancel_usage },
	{ "report", "print a JSON report as a summary, or merge two", cmd_report, cmd_report_usage },
	{ "keygen", "make TLS credentials (X.509 set or pre-shared key) for send and recv",
	  cmd_keygen, cmd_keygen_usage },
	{ "bench", "run a benchmark and print its table (docs/benchmarks.md)",
	  cmd_bench, cmd_bench_usage },
};

#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))

static void usage(FILE *f)
{
	fprintf(f, "usage: hmig <command> [options]\n\ncommands:\n");
	for (size_t i = 0; i < NCOMMANDS; i++)
		fprintf(f, "  %-8s %s\n", commands[i].name, commands[i].summary);
	fprintf(f, "\n'hmig <command> --help' shows a command's options; 'hmig --version' the version.\n");
}

int main(int argc, char **argv)
{
	/* A dead peer must be an error from send(), not a silent death. */
	signal(SIGPIPE, SIG_IGN);
	if (argc < 2) {
		usage(stderr);
		return EXIT_USAGE;
	}
	if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
		usage(stdout);
		return 0;
	}
	if (!strcmp(argv[1], "-V") || !strcmp(argv[1], "--version") || !strcmp(argv[1], "version")) {
		printf("hmig %s\n", HMIG_VERSION);
		return 0;
	}
	for (size_t i = 0; i < NCOMMANDS; i++) {
		if (strcmp(argv[1], commands[i].name))
			continue;
		for (int a = 2; a < argc; a++) {
			if (!strcmp(argv[a], "-h") || !strcmp(argv[a], "--help")) {
				commands[i].usage();
				return 0;
			}
		}
		return commands[i].run(argc - 1, argv + 1);
	}
	die_msg("unknown command '%s': run 'hmig --help' for the list", argv[1]);
	return EXIT_USAGE;
}
