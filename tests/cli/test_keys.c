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

Test(keys, the_documented_keys_are_the_written_keys)
{
	struct keys doc;
	struct run r, src, dst;
	json_t *s, *d, *m;

	keys_documented(&doc, "report.md");

	/* Post-copy, so that its keys are there too; checked by the oracle. */
	run_hmig_bg("dst", "recv --listen unix:%s/mig.sock --json dst.json --run-after 0.3",
		    run_scratch);
	run_hmig(&src, "send --to unix:%s/mig.sock --mem 16M --mode postcopy --warmup 0.2 "
		 "--json src.json", run_scratch);
	run_wait("dst", &dst);
	cr_assert(eq(int, src.status, 0), "%s", src.err);
	cr_assert(eq(int, dst.status, 0), "%s", dst.err);
	run_hmig(&r, "report --json src.json dst.json");
	cr_assert(eq(int, r.status, 0), "%s", r.err);
	s = load("src.json");
	d = load("dst.json");
	m = doc_check_parse(r.out);
	doc_check_str(d, "integrity", "ok");
	doc_check_str(m, "integrity", "ok");
	cr_assert(gt(u64, doc_check_u64(d, "faults.count"), 0), "no post-copy fault to report");
	keys_check(&doc, s, 'S', true, "the source's report");
	keys_check(&doc, d, 'D', true, "the destination's report");
	keys_check(&doc, m, 'M', true, "the merged report");
	json_decref(s);
	json_decref(d);
	json_decref(m);
	run_free(&r);
	run_free(&src);
	run_free(&dst);

	/* Failed runs add "error", and write nothing undocumented. */
	run_hmig(&r, "send --to 127.0.0.1:1 --mem 1M --warmup 0 -o connect_timeout_ms=50 "
		 "--json fs.json");
	cr_assert(eq(int, r.status, 1), "%s", r.err);
	run_free(&r);
	run_hmig(&r, "recv --listen 127.0.0.1:0 -o accept_timeout_ms=50 --json fd.json");
	cr_assert(eq(int, r.status, 1), "%s", r.err);
	run_free(&r);
	run_hmig(&r, "report --json fs.json fd.json");
	cr_assert(eq(int, r.status, 0), "%s", r.err);
	s = load("fs.json");
	d = load("fd.json");
	m = doc_check_parse(r.out);
	run_free(&r);
	cr_assert(not(eq(ptr, (void *)doc_str(s, "error"), NULL)));
	keys_check(&doc, s, 'S', false, "a failed source's report");
	keys_check(&doc, d, 'D', false, "a failed destination's report");
	keys_check(&doc, m, 'M', false, "a failed migration's merged report");
	json_decref(s);
	json_decref(d);
	json_decref(m);
}
