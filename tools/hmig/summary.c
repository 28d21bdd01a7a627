#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cmd.h"
#include "common/esc.h"
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

/* Every string of a report is peer text as far as the terminal knows (the
 * file may come from anywhere): escaped before it is printed.  Four buffers
 * in turn, so one fprintf may take up to four. */
static const char *str(const json_t *r, const char *path)
{
	static char bufs[4][1024];
	static unsigned next;
	const char *s = doc_str(r, path);
	char *b = bufs[next++ % 4];

	if (!s)
		return "-";
	esc_text(b, sizeof(bufs[0]), s, strlen(s));
	return b;
}

static void mib(FILE *f, const char *label, unsigned long long b)
{
	fprintf(f, "%s %.1f MiB", label, (double)b / (1 << 20));
}

void summary_print(const json_t *r, FILE *f)
{
	const char *side = doc_str(r, "side");

	fprintf(f, "== %s: %s migration, result %s", side ? str(r, "side") : "migration", str(r, "mode"),
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
	const json_t *sec = json_object_get(r, "security");
	if (json_is_true(json_object_get(sec, "encrypted")))
		fprintf(f, "   security: %s (%s), peer %s, kTLS %s; %llu connection(s) rejected\n",
			str(r, "security.cipher"), str(r, "security.auth"), str(r, "security.peer"),
			json_is_true(json_object_get(sec, "ktls")) ? "yes" : "no",
			u64(r, "security.rejected_connections"));
	else if (sec)
		fprintf(f, "   security: none (--insecure), pages checked by %s; %llu connection(s) rejected\n",
			str(r, "security.integrity"), u64(r, "security.rejected_connections"));
	const json_t *xen = json_object_get(r, "xen");
	if (xen) {
		fprintf(f, "   xen: domain %llu, %llu frames (%llu host-owned)", u64(xen, "domid"),
			u64(xen, "frames"), u64(xen, "never_sent"));
		if (json_is_true(json_object_get(xen, "digest")) && u64(xen, "digest_frames"))
			fprintf(f, "; digest of %llu frames in %.0f ms", u64(xen, "digest_frames"),
				num(xen, "digest_ms"));
		if (u64(xen, "replay_pages"))
			fprintf(f, "; hmigt replay of %llu ops over %llu pages in %.0f ms",
				u64(xen, "replay_ops"), u64(xen, "replay_pages"), num(xen, "replay_ms"));
		fprintf(f, "\n");
	}
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

int report_with_guest(int (*write)(void *ctx, FILE *f), void *ctx, struct hmig_guest *g,
		      FILE *f)
{
	json_t *doc;
	char *text = NULL;
	size_t len = 0;
	int rc = summary_capture(write, ctx, &doc, &text, &len);

	if (rc == 0) {
		if (guest_report_extras(g, doc))
			rc = doc_write(doc, f);
		else
			rc = fwrite(text, 1, len, f) == len && fflush(f) == 0 ? 0 : -EIO;
		json_decref(doc);
	}
	free(text);
	return rc;
}

int summary_finish(int (*write)(void *ctx, FILE *f), void *ctx, bool quiet,
		   const char *json_path)
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
	if (json_path && text && write_text_file(json_path, text, len))
		rc = -1;
	free(text);
	return rc;
}
