#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cmd.h"
#include "summary.h"

static double num(const json_t *r, const char *path)
{
	double v;

	return doc_double(r, path, &v) ? NAN : v;
}

static unsigned long long u64(const json_t *r, const char *path)
{
	uint64_t v;

	return doc_u64(r, path, &v) ? 0 : (unsigned long long)v;
}

static const char *str(const json_t *r, const char *path)
{
	const char *s = doc_str(r, path);

	return s ? s : "-";
}

static void mib(FILE *f, const char *label, unsigned long long b)
{
	fprintf(f, "%s %.1f MiB", label, (double)b / (1 << 20));
}

void summary_print(const json_t *r, FILE *f)
{
	const char *side = doc_str(r, "side");

	fprintf(f, "== %s: %s migration, result %s", side ? side : "migration", str(r, "mode"),
		str(r, "result"));
	if (doc_str(r, "error"))
		fprintf(f, " (%s)", str(r, "error"));
	fprintf(f, "\n   guest %s, %llu pages x %llu B, %llu vCPUs, workload %s\n",
		str(r, "guest.backend"), u64(r, "guest.pages"), u64(r, "guest.page_size"),
		u64(r, "guest.vcpus"), str(r, "guest.workload"));
	fprintf(f, "   total %.1f ms, downtime %.2f ms, switchover %s, %llu stale pages\n",
		num(r, "total_ms"), num(r, "downtime_ms"), str(r, "switchover.reason"),
		u64(r, "switchover.stale_pages"));
	fprintf(f, "  ");
	mib(f, " bytes: total", u64(r, "bytes.total"));
	mib(f, ", precopy", u64(r, "bytes.precopy"));
	mib(f, ", stopcopy", u64(r, "bytes.stopcopy"));
	mib(f, ", push", u64(r, "bytes.push"));
	mib(f, ", pull", u64(r, "bytes.pull"));
	fprintf(f, "\n   pages: sent %llu, zero %llu, duplicate %llu, pulled %llu, pushed %llu\n",
		u64(r, "pages.sent"), u64(r, "pages.zero"), u64(r, "pages.duplicate"),
		u64(r, "pages.pulled"), u64(r, "pages.pushed"));
	const json_t *passes = json_object_get(r, "passes");
	for (size_t i = 0; i < json_array_size(passes); i++) {
		const json_t *p = json_array_get(passes, i);

		fprintf(f, "   pass %llu: %llu pages in %.1f ms (%.0f Mbit/s), %llu dirtied (%.0f pages/s)\n",
			u64(p, "pass"), u64(p, "pages_sent"), num(p, "ms"), num(p, "mbps"),
			u64(p, "pages_dirtied"), num(p, "dirty_rate_pps"));
	}
	if (u64(r, "faults.count"))
		fprintf(f, "   faults: %llu, latency p50 %.1f us, p99 %.1f us, max %.1f us, blocktime %.1f ms\n",
			u64(r, "faults.count"), num(r, "faults.latency_us.p50"),
			num(r, "faults.latency_us.p99"), num(r, "faults.latency_us.max"),
			num(r, "faults.blocktime_ms"));
	if (side && !strcmp(side, "source"))
		fprintf(f, "   integrity: checked by the destination's oracle\n");
	else
		fprintf(f, "   integrity: %s\n", str(r, "integrity"));
}

int summary_capture(int (*write)(void *ctx, FILE *f), void *ctx, json_t **out,
		    char **text, size_t *len)
{
	char err[DOC_ERR_LEN];
	FILE *m = open_memstream(text, len);
	int rc;

	if (!m)
		return -errno;
	rc = write(ctx, m);
	if (fclose(m) && !rc)
		rc = -EIO;
	if (rc)
		return rc;
	return doc_parse(*text, *len, out, err);
}

int summary_finish(int (*write)(void *ctx, FILE *f), void *ctx, bool quiet,
		   struct outfile *out)
{
	json_t *rep;
	char *text = NULL;
	size_t len = 0;
	int rc = 0;

	if (summary_capture(write, ctx, &rep, &text, &len) == 0) {
		if (!quiet)
			summary_print(rep, stdout);
		json_decref(rep);
	}
	if (!text)
		outfile_drop(out);
	else if (outfile_write(out, text, len))
		rc = -1;
	free(text);
	return rc;
}
