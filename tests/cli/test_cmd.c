/* Tests for the hmig binary's usage: what an operator sees when a command
 * line is wrong, asks for help or for the version.  Nothing here migrates a
 * guest (tests/cli/test_mig.c does). */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>
#include <criterion/parameterized.h>

#include <hmig/hmig.h>

#include "run.h"

#define contains(hay, needle) \
	cr_assert(not(eq(ptr, strstr((hay), (needle)), NULL)), "no '%s' in:\n%s", (needle), (hay))
#define lacks(hay, needle) \
	cr_assert(eq(ptr, strstr((hay), (needle)), NULL), "'%s' in:\n%s", (needle), (hay))

TestSuite(cmd, .init = run_in_scratch, .fini = run_scratch_done, .timeout = 30);

Test(cmd, version_is_the_project_version)
{
	struct run r;

	run_hmig(&r, "--version");
	cr_assert(eq(int, r.status, 0));
	contains(r.out, "hmig " HMIG_VERSION "\n");
	run_free(&r);
}

/* Bad usage: exit 2, one line on stderr naming the problem and what to do,
 * and no guest built first: the line comes before the guest's (a guest
 * would take its warm-up, and demo prints its banner, first). */
struct usage_case {
	char args[96];
	char says[64];
};

ParameterizedTestParameters(cmd, bad_usage_is_one_line_and_exit_2)
{
	static struct usage_case cases[] = {
		{ "send --to 127.0.0.1:99999 --warmup 30", "above 65535" },
		{ "send --to 127.0.0.1:0 --warmup 30", "port 0" },
		{ "send --to '[::1' --warmup 30", "[IPv6]" },
		{ "send --warmup 30", "send needs --to" },
		{ "recv --listen :70000", "above 65535" },
		{ "recv", "recv needs --listen" },
		{ "demo --mem 0", "at least 64K" },
		{ "demo --vcpus 4 --mem 128K", "at least 64K" },
		{ "demo --mem 1X", "bad size for --mem" },
		{ "demo --fill 2", "bad value for --fill" },
		{ "demo --workload nosuch", "nosuch" },
		{ "demo --mode fast", "--mode" },
		{ "demo -o batch_pages=0", "batch_pages" },
		{ "demo -o nosuch=1", "unknown knob 'nosuch'" },
		{ "demo --bogus", "--bogus" },
		{ "demo extra", "unexpected argument 'extra'" },
		{ "send --to 127.0.0.1:1 --guest nosuch", "unknown guest backend" },
		/* secure by default: credentials, or --insecure said out loud */
		{ "send --to 127.0.0.1:1 --warmup 30", "send needs credentials" },
		{ "recv --listen 127.0.0.1:0", "recv needs credentials" },
		{ "send --to 127.0.0.1:1 --insecure --tls-psk k.psk", "give one of" },
		{ "frobnicate", "unknown command 'frobnicate'" },
		/* an unwritable --json: found before the migration, not after */
		{ "demo --mem 16M --json /nonexistent/r.json", "cannot write /nonexistent/r.json" },
		{ "send --to 127.0.0.1:1 --warmup 30 --json /nonexistent/r.json", "cannot write" },
		{ "recv --listen 127.0.0.1:0 --json /", "cannot write /: Is a directory" },
		{ "guest --mem 16M --json /nonexistent/r.json", "cannot write" },
		{ "guest --seconds 0", "--seconds" },
		{ "bench", "bench needs a benchmark" },
		{ "bench --mem 1G", "bench needs a benchmark" },
		{ "bench nosuch", "unknown benchmark 'nosuch'" },
	};

	return cr_make_param_array(struct usage_case, cases, sizeof(cases) / sizeof(cases[0]));
}

ParameterizedTest(struct usage_case *c, cmd, bad_usage_is_one_line_and_exit_2)
{
	struct run r;

	run_hmig(&r, "%s", c->args);
	cr_assert(eq(int, r.status, 2), "hmig %s: exit %d\n%s", c->args, r.status, r.err);
	contains(r.err, c->says);
	cr_assert(eq(int, run_lines(r.err), 1), "hmig %s:\n%s", c->args, r.err);
	cr_assert(eq(str, r.out, ""), "hmig %s printed:\n%s", c->args, r.out);
	run_free(&r);
}

/* ---- knobs -------------------------------------------------------------- */

/* The line of `help` that lists knob `key`, or NULL. */
static const char *knob_line(const char *help, const char *key)
{
	const char *list = strstr(help, "\nknobs (-o KEY=VALUE):\n");
	char want[80];

	if (!list)
		return NULL;
	snprintf(want, sizeof(want), "\n  %s ", key);
	return strstr(list, want);
}

/* send --help lists every knob a source takes with its default, recv --help
 * every knob a destination takes and no other, demo --help all of them:
 * never a list cut short. */
Test(cmd, help_lists_every_knob_of_its_side_with_its_default)
{
	static const struct { const char *cmd; unsigned sides; } roles[] = {
		{ "send", HMIG_SIDE_SOURCE },
		{ "recv", HMIG_SIDE_DEST },
		{ "demo", HMIG_SIDE_SOURCE | HMIG_SIDE_DEST },
	};
	struct hmig_config def;
	const struct hmig_knob *k;

	hmig_config_init(&def);
	for (size_t r = 0; r < sizeof(roles) / sizeof(roles[0]); r++) {
		struct run h;

		run_hmig(&h, "%s --help", roles[r].cmd);
		cr_assert(eq(int, h.status, 0));
		lacks(h.out, "...");
		lacks(h.out, "\u2026");
		for (unsigned i = 0; (k = hmig_config_knob(i)); i++) {
			const char *line = knob_line(h.out, k->key);
			char val[64], want[80];

			if (!(k->sides & roles[r].sides)) {
				cr_assert(eq(ptr, (void *)line, NULL), "%s --help lists %s", roles[r].cmd,
					  k->key);
				continue;
			}
			cr_assert(not(eq(ptr, (void *)line, NULL)), "%s --help lacks %s:\n%s",
				  roles[r].cmd, k->key, h.out);
			cr_assert(eq(int, hmig_config_get(&def, k->key, val, sizeof(val)), 0));
			snprintf(want, sizeof(want), "(default %s", val);
			const char *eol = strchr(line + 1, '\n');
			const char *at = strstr(line, want);
			cr_assert(at && at < eol, "%s --help: %s without '%s'", roles[r].cmd, k->key,
				  want);
		}
		run_free(&h);
	}
}

Test(cmd, recv_refuses_a_source_knob_and_send_a_destination_knob)
{
	free(run_expect(2, "-o mode is the source's knob", "recv --listen 127.0.0.1:0 -o mode=precopy"));
	free(run_expect(2, "-o push is the source's knob", "recv --listen 127.0.0.1:0 --o push=seq"));
	free(run_expect(2, "-o accept_timeout_ms is the destination's knob",
			"send --to 127.0.0.1:1 -o accept_timeout_ms=5 --warmup 30"));
}

/* The library's line says how to list the knobs; the CLI lists them all. */
Test(cmd, an_unknown_knob_gets_the_whole_list)
{
	const struct hmig_knob *k;
	struct run r;

	run_hmig(&r, "send --to 127.0.0.1:1 -o max_pases=3");
	cr_assert(eq(int, r.status, 2));
	cr_assert(eq(int, run_lines(r.err), 1), "%s", r.err);
	contains(r.err, "unknown knob 'max_pases'");
	for (unsigned i = 0; (k = hmig_config_knob(i)); i++)
		contains(r.err, k->key);
	run_free(&r);
}

/* ---- summaries and reports ---------------------------------------------- */

/* A run that failed before measuring anything says "-" for what it did not
 * measure, never nan; its report file says null. */
Test(cmd, a_failed_run_prints_dashes_not_nan)
{
	struct run r;

	run_hmig(&r, "send --insecure --to 127.0.0.1:1 --mem 1M --warmup 0 -o connect_timeout_ms=50 "
		     "--json src.json");
	cr_assert(eq(int, r.status, 1), "%s", r.err);
	lacks(r.out, "nan");
	contains(r.out, "source side");
	contains(r.out, "status:           failed: cannot connect");
	contains(r.out, "downtime:         -\n");
	contains(r.out, "dirty rate:       -\n");
	run_free(&r);
	run_hmig(&r, "report src.json");
	cr_assert(eq(int, r.status, 0), "%s", r.err);
	lacks(r.out, "nan");
	contains(r.out, "downtime:         -\n");
	run_free(&r);
}

/* The destination's summary says which side it is and "-" for what only
 * the source measures. */
Test(cmd, the_destination_summary_names_its_side)
{
	struct run r;

	run_hmig(&r, "recv --insecure --listen 127.0.0.1:0 -o accept_timeout_ms=50 --json dst.json");
	cr_assert(eq(int, r.status, 1), "%s", r.err);
	contains(r.out, "destination side");
	contains(r.out, "received:");
	contains(r.out, "pages:            sent -, zero -,");
	lacks(r.out, "nan");
	run_free(&r);
}

Test(cmd, report_refuses_what_it_cannot_merge)
{
	free(run_expect(2, "report takes one report file", "report"));
	free(run_expect(2, "report takes one report file", "report a b c"));
	free(run_expect(2, "unknown option '--bogus'", "report --bogus a"));
	free(run_expect(1, "cannot read /nonexistent.json", "report /nonexistent.json"));
	cr_assert(eq(int, system("echo '{\"side\":\"source\"}' >a.json"), 0));
	free(run_expect(2, "one source and one destination", "report a.json a.json"));
}

/* A guest under 1 GiB is labelled in MiB or KiB, not "0 GiB". */
Test(cmd, bench_guest_labels_small_guests)
{
	struct run r;

	run_hmig(&r, "bench guest --mem 256K --seconds 0.2");
	cr_assert(eq(int, r.status, 0), "%s", r.err);
	contains(r.out, "| 256 KiB |");
	contains(r.out, "| 1.0 MiB |");
	lacks(r.out, " 0 GiB");
	run_free(&r);
}
