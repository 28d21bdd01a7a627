/* Tests for the hmig binary's usage: what an operator sees when a command
 * line is wrong, asks for help or for the version.  Nothing here migrates a
 * guest (tests/cli/test_mig.c does). */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>
#include <criterion/parameterized.h>

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
		{ "frobnicate", "unknown command 'frobnicate'" },
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
