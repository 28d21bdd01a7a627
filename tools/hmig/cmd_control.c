/* hmig set-rate, switch, cancel: change a running 'hmig send' (or cancel a
 * 'hmig recv') through its control socket (docs/control.md).  One file for
 * the three: each is one request and one line of answer. */
#include <stdio.h>
#include <string.h>

#include "cmd.h"
#include "control.h"

void cmd_set_rate_usage(void)
{
	printf("usage: hmig set-rate PID|PATH RATE\n"
	       "Changes the bulk bandwidth cap of a running 'hmig send' to RATE bytes/s (a size:\n"
	       "100M is 100 MiB/s; 0 removes the cap), as -o rate_limit_bps does at the start.\n");
}

void cmd_switch_usage(void)
{
	printf("usage: hmig switch PID|PATH\n"
	       "Asks a running 'hmig send' to switch after the current pre-copy pass: to\n"
	       "post-copy in hybrid and postcopy modes, to stop-and-copy in precopy mode (as\n"
	       "SIGUSR1 does).\n");
}

void cmd_cancel_usage(void)
{
	printf("usage: hmig cancel PID|PATH\n"
	       "Cancels a running 'hmig send' or 'hmig recv' before the handover: the guest\n"
	       "keeps running on the source.  After the handover it is refused: the guest runs\n"
	       "on the destination.\n");
}

/* Runs `verb` (argv: NAME WHO [RATE]): 0 with its answer on stdout, 1 when
 * refused, 2 for bad usage. */
static int one_request(int argc, char **argv, const char *verb)
{
	bool rate = !strcmp(verb, "set-rate");
	json_t *req, *reply = NULL;
	const json_t *ret;
	uint64_t bps = 0;
	int status = 1;

	if (argc != (rate ? 3 : 2) || argv[1][0] == '-') {
		die_msg("%s takes %s: run 'hmig %s --help'", verb,
			rate ? "a PID or control socket PATH, then a RATE" : "one PID or control socket PATH",
			verb);
		return EXIT_USAGE;
	}
	if (rate && opt_size("RATE", argv[2], &bps))
		return EXIT_USAGE;
	req = rate ? json_pack("{s:s,s:{s:I}}", "execute", verb, "arguments", "bytes_per_s",
			       (json_int_t)bps)
		   : json_pack("{s:s}", "execute", verb);
	ret = control_cmd(argv[1], req, &reply);
	if (ret) {
		if (rate && bps)
			printf("rate cap: %.1f MiB/s (%llu bytes/s)\n", (double)bps / (1 << 20),
			       (unsigned long long)bps);
		else if (rate)
			printf("rate cap: none\n");
		else
			printf("%s: asked\n", verb);
		status = 0;
	}
	json_decref(reply);
	return status;
}

int cmd_set_rate(int argc, char **argv)
{
	return one_request(argc, argv, "set-rate");
}

int cmd_switch(int argc, char **argv)
{
	return one_request(argc, argv, "switch");
}

int cmd_cancel(int argc, char **argv)
{
	return one_request(argc, argv, "cancel");
}
