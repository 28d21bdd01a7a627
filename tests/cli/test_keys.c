/* docs/report.md against the reports hmig writes: real migrations (a
 * post-copy one, and runs that fail) through the binary, both sides and
 * the merge.  Every key written is documented for that document, and
 * every key documented as always there is written. */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>

#include "doc_check.h"
#include "keys.h"
#include "run.h"

TestSuite(keys, .init = run_in_scratch, .fini = run_scratch_done, .timeout = 180);

static json_t *load(const char *path)
{
	char err[DOC_ERR_LEN];
	json_t *v;

	cr_assert(eq(int, doc_load(path, &v, err), 0), "%s", err);
	return v;
}

/* The source's report, the destination's and their merge ('hmig report
 * --json'): each one's keys against the documented ones of its kind. */
static void check_three(const struct keys *doc, const char *src, const char *dst,
			bool complete, const char *what)
{
	char *out = run_expect(0, NULL, "report --json %s %s", src, dst);
	json_t *s = load(src), *d = load(dst), *m = doc_check_parse(out);
	char label[3][96];

	snprintf(label[0], sizeof(label[0]), "%s: the source's report", what);
	snprintf(label[1], sizeof(label[1]), "%s: the destination's report", what);
	snprintf(label[2], sizeof(label[2]), "%s: the merged report", what);
	keys_check(doc, s, 'S', complete, label[0]);
	keys_check(doc, d, 'D', complete, label[1]);
	keys_check(doc, m, 'M', complete, label[2]);
	json_decref(s);
	json_decref(d);
	json_decref(m);
	free(out);
}

Test(keys, the_documented_keys_are_the_written_keys)
{
	struct keys doc;
	struct run src, dst;
	json_t *v;

	keys_documented(&doc, "report.md");

	/* Post-copy, so that its keys are there too, and over TLS, so that
	 * the security object has all of its; checked by the oracle. */
	free(run_expect(0, NULL, "keygen --psk k.psk"));
	run_hmig_bg("dst", "recv --tls-psk k.psk --listen unix:%s/mig.sock --json dst.json --run-after 0.3",
		    run_scratch);
	run_hmig(&src, "send --tls-psk k.psk --to unix:%s/mig.sock --mem 16M --mode postcopy --warmup 0.2 "
		 "--json src.json", run_scratch);
	run_wait("dst", &dst);
	cr_assert(eq(int, src.status, 0), "%s", src.err);
	cr_assert(eq(int, dst.status, 0), "%s", dst.err);
	run_free(&src);
	run_free(&dst);
	v = load("dst.json");
	doc_check_str(v, "integrity", "ok");
	cr_assert(gt(u64, doc_check_u64(v, "faults.count"), 0), "no post-copy fault to report");
	json_decref(v);
	check_three(&doc, "src.json", "dst.json", true, "a post-copy migration");

	/* Failed runs add "error", and write nothing undocumented. */
	free(run_expect(1, NULL, "send --insecure --to 127.0.0.1:1 --mem 1M --warmup 0 "
			"-o connect_timeout_ms=50 --json fs.json"));
	free(run_expect(1, NULL, "recv --insecure --listen 127.0.0.1:0 -o accept_timeout_ms=50 --json fd.json"));
	v = load("fs.json");
	cr_assert(not(eq(ptr, (void *)doc_str(v, "error"), NULL)));
	json_decref(v);
	check_three(&doc, "fs.json", "fd.json", false, "a failed migration");
}
