/* The man page (docs/hmig.1.scd) against the binary's --help: every
 * command 'hmig --help' lists has a section, every option a command's
 * --help lists is in its section and the other way round, and every knob
 * is in KNOBS with its side and default. */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>

#include <ctype.h>

#include <hmig/hmig.h>

#include "run.h"

#define WORDS 64

struct words {
	int n;
	char w[WORDS][48];
};

static void add(struct words *s, const char *w, size_t len)
{
	for (int i = 0; i < s->n; i++)
		if (strlen(s->w[i]) == len && !strncmp(s->w[i], w, len))
			return;
	cr_assert(lt(int, s->n, WORDS));
	snprintf(s->w[s->n++], sizeof(s->w[0]), "%.*s", (int)len, w);
}

static bool has(const struct words *s, const char *w)
{
	for (int i = 0; i < s->n; i++)
		if (!strcmp(s->w[i], w))
			return true;
	return false;
}

/* A file of the source tree, by its path from docs/. */
static char *doc_file(const char *rel)
{
	const char *docs = getenv("HMIG_DOCS");
	char path[512];

	cr_assert(docs != NULL, "HMIG_DOCS is not set: run this test through meson test");
	snprintf(path, sizeof(path), "%s/%s", docs, rel);
	char *text = run_slurp(path);
	cr_assert(strlen(text) > 0, "cannot read %s", path);
	return text;
}

static char *man_page(void)
{
	return doc_file("hmig.1.scd");
}

/* The text of the man page's section whose heading line starts with
 * `heading`, up to the next heading of its level or above; NULL if none. */
static char *section(const char *man, const char *heading)
{
	char want[64];
	const char *a, *b;

	snprintf(want, sizeof(want), "\n%s", heading);
	if (!(a = strstr(man, want)))
		return NULL;
	a++;
	b = strstr(a + 1, heading[1] == '#' ? "\n#" : "\n# ");
	return strndup(a, b ? (size_t)(b - a) : strlen(a));
}

/* The options a man section documents: each *-x* or *--word* that starts a
 * line or follows ", " on one (a term line of an option list). */
static void man_options(const char *sec, struct words *out)
{
	out->n = 0;
	for (const char *l = sec; l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
		if (l[0] != '*' || l[1] != '-')
			continue;
		for (const char *p = l; p && *p != '\n'; p = strstr(p, ", *-")) {
			if (*p == ',')
				p += 2;
			size_t n = strcspn(p + 1, "*\n");

			add(out, p + 1, n);
			p += n;
		}
	}
}

/* The options a --help text lists: lines "  -x ..." or "  --word ...". */
static void help_options(const char *help, struct words *out)
{
	out->n = 0;
	for (const char *l = help; l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
		const char *p = l + strspn(l, " ");

		if (p == l || p[0] != '-' || p - l > 4)
			continue;
		add(out, p, strcspn(p, " \n,"));
	}
}

/* The commands 'hmig --help' lists. */
static void commands(struct words *out)
{
	struct run r;
	const char *l;

	run_hmig(&r, "--help");
	cr_assert(eq(int, r.status, 0));
	out->n = 0;
	l = strstr(r.out, "commands:\n");
	cr_assert(l != NULL, "%s", r.out);
	for (l = strchr(l, '\n') + 1; l[0] == ' ' && l[1] == ' '; l = strchr(l, '\n') + 1)
		add(out, l + 2, strcspn(l + 2, " "));
	run_free(&r);
}

TestSuite(man, .init = run_in_scratch, .fini = run_scratch_done, .timeout = 30);

Test(man, every_command_and_option_of_the_help_is_in_the_man_page)
{
	char *man = man_page();
	struct words cmds, mo, ho;

	commands(&cmds);
	cr_assert(gt(int, cmds.n, 5));
	for (int i = 0; i < cmds.n; i++) {
		char heading[64];
		struct run r;

		snprintf(heading, sizeof(heading), "## hmig %s ", cmds.w[i]);
		char *sec = section(man, heading);
		cr_assert(sec != NULL, "the man page has no section '%s'", heading);
		run_hmig(&r, "%s --help", cmds.w[i]);
		cr_assert(eq(int, r.status, 0), "hmig %s --help: %s", cmds.w[i], r.err);
		/* the knob list of send/recv/demo is KNOBS' business */
		char *knobs = strstr(r.out, "\nknobs (");
		if (knobs)
			*knobs = '\0';
		help_options(r.out, &ho);
		man_options(sec, &mo);
		for (int j = 0; j < ho.n; j++)
			cr_assert(has(&mo, ho.w[j]), "hmig %s --help lists %s; its man section does not",
				  cmds.w[i], ho.w[j]);
		for (int j = 0; j < mo.n; j++)
			cr_assert(has(&ho, mo.w[j]), "the man page gives hmig %s %s; its --help does not",
				  cmds.w[i], mo.w[j]);
		run_free(&r);
		free(sec);
	}
	/* ... and no section for a command that does not exist */
	for (const char *p = man; (p = strstr(p, "\n## hmig ")); p++) {
		char name[48];

		cr_assert(eq(int, sscanf(p, "\n## hmig %47s", name), 1));
		cr_assert(has(&cmds, name), "the man page has a section for 'hmig %s', which hmig --help does not list", name);
	}
	free(man);
}

Test(man, every_knob_is_in_the_man_page_with_its_side_and_default)
{
	static const char *const sides[] = { [HMIG_SIDE_SOURCE] = "source",
					     [HMIG_SIDE_DEST] = "destination",
					     [HMIG_SIDE_SOURCE | HMIG_SIDE_DEST] = "both" };
	char *man = man_page(), *sec = section(man, "# KNOBS");
	const struct hmig_knob *k;
	struct hmig_config def;
	int documented = 0, nknobs = 0;

	cr_assert(sec != NULL, "the man page has no KNOBS");
	hmig_config_init(&def);
	for (unsigned i = 0; (k = hmig_config_knob(i)); i++, nknobs++) {
		char term[96], val[64], want[96];

		snprintf(term, sizeof(term), "\n*%s* (%s)\n", k->key, sides[k->sides]);
		const char *at = strstr(sec, term);
		cr_assert(at != NULL, "KNOBS lacks '%s'", term + 1);
		cr_assert(eq(int, hmig_config_get(&def, k->key, val, sizeof(val)), 0));
		snprintf(want, sizeof(want), "(default %s", val);
		const char *body = at + strlen(term), *end = strchr(body, '\n');
		const char *d = strstr(body, want);
		cr_assert(d && d < end, "KNOBS: %s does not say '%s'", k->key, want);
	}
	for (const char *p = sec; (p = strstr(p, "\n*")); p++)
		documented++;
	cr_assert(eq(int, documented, nknobs), "KNOBS lists a knob the library does not have");
	free(sec);
	free(man);
}

/* The README's knob table: a row's first cell names one knob or several
 * (`a`, `b`), and every knob of the library has a row. */
Test(man, every_knob_has_a_row_in_the_readme)
{
	char *readme = doc_file("../README.md");
	const struct hmig_knob *k;
	int rows = 0, nknobs = 0;

	for (unsigned i = 0; (k = hmig_config_knob(i)); i++, nknobs++) {
		char want[64];
		bool found = false;

		snprintf(want, sizeof(want), "`%s`", k->key);
		for (const char *p = readme; !found && (p = strstr(p, "\n  | `")); p++) {
			const char *end = strstr(p + 5, " | "), *q = strstr(p, want);

			found = q && end && q < end;
		}
		cr_assert(found, "README.md's knob table has no row for %s", want);
	}
	for (const char *p = readme; (p = strstr(p, "\n  | `")); p++) {
		const char *end = strstr(p + 5, " | ");

		for (const char *q = p + 5; (q = strchr(q, '`')) && q < end;) {
			const char *close = strchr(q + 1, '`');

			rows++;
			if (!close)
				break;
			q = close + 1;
		}
	}
	cr_assert(eq(int, rows, nknobs), "README.md's knob table names %d knobs, the library has %d",
		  rows, nknobs);
	free(readme);
}
