#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "cmd.h"
#include "common/esc.h"
#include "summary.h"

/* The summary reads like QEMU's 'info migrate': one labelled line per
 * figure, from the report's JSON.  A figure the report does not have
 * (absent, or null: not measured on this side, or not reached) prints as
 * "-", never as 0 or nan. */

#define MIB ((double)(1 << 20))

static bool num(const json_t *r, const char *path, double *v)
{
	return doc_double(r, path, v) == 0 && isfinite(*v);
}

/* Formatted values live in a few buffers of the caller's. */
struct bufs {
	char b[12][48];
	int next;
};

static char *buf(struct bufs *bs)
{
	return bs->b[bs->next++ % 12];
}

/* The number at path through fmt, divided by div, or "-". */
static const char *fnum(struct bufs *bs, const json_t *r, const char *path, const char *fmt,
			double div)
{
	double v;
	char *b;

	if (!num(r, path, &v))
		return "-";
	b = buf(bs);
	snprintf(b, sizeof(bs->b[0]), fmt, v / div);
	return b;
}

/* Every string of a report is peer text as far as the terminal knows (the
 * file may come from anywhere): escaped before it is printed.  Eight buffers
 * in turn, so one row may take up to eight. */
static const char *str(const json_t *r, const char *path)
{
	static char bufs[8][1024];
	static unsigned next;
	const char *s = doc_str(r, path);
	char *b = bufs[next++ % 8];

	if (!s)
		return "-";
	esc_text(b, sizeof(bufs[0]), s, strlen(s));
	return b;
}

static void row(FILE *f, const char *label, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void row(FILE *f, const char *label, const char *fmt, ...)
{
	va_list ap;

	fprintf(f, "  %-18s", label);
	va_start(ap, fmt);
	vfprintf(f, fmt, ap);
	va_end(ap);
	fputc('\n', f);
}

void summary_size(char *b, size_t n, double bytes)
{
	if (bytes >= 1024 * MIB)
		snprintf(b, n, "%.1f GiB", bytes / (1024 * MIB));
	else if (bytes >= MIB)
		snprintf(b, n, "%.1f MiB", bytes / MIB);
	else
		snprintf(b, n, "%.0f KiB", bytes / 1024);
}

enum side { SIDE_SOURCE, SIDE_DEST, SIDE_MERGED };

static enum side side_of(const json_t *r)
{
	const char *s = str(r, "side");

	if (!strcmp(s, "destination"))
		return SIDE_DEST;
	if (!strcmp(s, "merged"))
		return SIDE_MERGED;
	return SIDE_SOURCE;
}

/* The destination's timeline: its own, or the merged report's copy. */
static const json_t *dest_timeline(const json_t *r, enum side side)
{
	if (side == SIDE_SOURCE)
		return NULL;
	return json_object_get(r, side == SIDE_MERGED ? "timeline_destination" : "timeline");
}

static void print_guest(const json_t *r, FILE *f, struct bufs *bs)
{
	double pages, psize;
	char *size = "-";

	if (num(r, "guest.pages", &pages) && num(r, "guest.page_size", &psize)) {
		size = buf(bs);
		summary_size(size, sizeof(bs->b[0]), pages * psize);
	}
	row(f, "guest:", "%s, %s (%s pages of %s B), %s vCPUs, workload %s",
	    str(r, "guest.backend"), size, fnum(bs, r, "guest.pages", "%.0f", 1),
	    fnum(bs, r, "guest.page_size", "%.0f", 1), fnum(bs, r, "guest.vcpus", "%.0f", 1),
	    str(r, "guest.workload"));
}

/* downtime: the source's, with the steps it is made of. */
static void print_downtime(const json_t *r, FILE *f, struct bufs *bs)
{
	static const char *const steps[] = { "pause", "collect", "send", "load", "commit" };
	char parts[160] = "";
	size_t o = 0;

	for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
		char key[40];
		double v;

		snprintf(key, sizeof(key), "downtime_%s_ms", steps[i]);
		if (num(r, key, &v))
			o += (size_t)snprintf(parts + o, sizeof(parts) - o, "%s%s %.2f", o ? ", " : " (",
					      steps[i], v);
	}
	if (o)
		snprintf(parts + o, sizeof(parts) - o, ")");
	row(f, "downtime:", "%s%s", fnum(bs, r, "downtime_ms", "%.2f ms", 1), parts);
	double v;
	if (num(r, "switchover_to_resume_ms", &v))
		row(f, "", "destination: %.2f ms from the switchover's first record to the resume", v);
}

static void print_bytes(const json_t *r, FILE *f, enum side side, struct bufs *bs)
{
	double total, ms;

	row(f, side == SIDE_DEST ? "received:" : side == SIDE_SOURCE ? "sent:" : "transferred:",
	    "%s MiB (pre-copy %s, stop-and-copy %s, push %s, pull %s MiB)",
	    fnum(bs, r, "bytes.total", "%.1f", MIB), fnum(bs, r, "bytes.precopy", "%.1f", MIB),
	    fnum(bs, r, "bytes.stopcopy", "%.1f", MIB), fnum(bs, r, "bytes.push", "%.1f", MIB),
	    fnum(bs, r, "bytes.pull", "%.1f", MIB));
	if (num(r, "bytes.total", &total) && num(r, "total_ms", &ms) && ms > 0)
		row(f, "throughput:", "%.1f MiB/s over the total time", total / MIB / (ms / 1e3));
	else
		row(f, "throughput:", "-");
}

/* remaining: what the destination still lacked at the end (its timeline's
 * last pages_present); a source's report cannot say. */
static void print_remaining(const json_t *r, FILE *f, enum side side)
{
	const json_t *tl = dest_timeline(r, side);
	size_t n = json_array_size(tl);
	double pages, present;

	if (n && num(r, "guest.pages", &pages) &&
	    num(json_array_get(tl, n - 1), "pages_present", &present))
		row(f, "remaining:", "%.0f pages", pages - present);
	else
		row(f, "remaining:", "-");
}

static void print_passes(const json_t *r, FILE *f, struct bufs *bs)
{
	const json_t *passes = json_object_get(r, "passes");
	size_t n = json_array_size(passes);

	if (!n) {
		row(f, "passes:", "%s", side_of(r) == SIDE_DEST ? "- (the source counts them)" : "0");
		row(f, "dirty rate:", "-");
		return;
	}
	row(f, "passes:", "%zu, then %s", n, str(r, "switchover.reason"));
	row(f, "dirty rate:", "%s pages/s in the last pass",
	    fnum(bs, json_array_get(passes, n - 1), "dirty_rate_pps", "%.0f", 1));
	for (size_t i = 0; i < n; i++) {
		const json_t *p = json_array_get(passes, i);

		row(f, "", "pass %s: %s pages in %s ms (%s Mbit/s), %s dirtied meanwhile",
		    fnum(bs, p, "pass", "%.0f", 1), fnum(bs, p, "pages_sent", "%.0f", 1),
		    fnum(bs, p, "ms", "%.1f", 1), fnum(bs, p, "mbps", "%.0f", 1),
		    fnum(bs, p, "pages_dirtied", "%.0f", 1));
	}
}

static void print_faults(const json_t *r, FILE *f, struct bufs *bs)
{
	double count;

	if (!num(r, "faults.count", &count)) {
		row(f, "post-copy faults:", "- (the destination counts them)");
		return;
	}
	row(f, "post-copy faults:", "%.0f, pulled %s, pushed %s pages", count,
	    fnum(bs, r, "pages.pulled", "%.0f", 1), fnum(bs, r, "pages.pushed", "%.0f", 1));
	if (count > 0) {
		row(f, "fault latency:", "p50 %s, p90 %s, p99 %s, max %s us; %s%% at 1 ms or more",
		    fnum(bs, r, "faults.latency_us.p50", "%.1f", 1),
		    fnum(bs, r, "faults.latency_us.p90", "%.1f", 1),
		    fnum(bs, r, "faults.latency_us.p99", "%.1f", 1),
		    fnum(bs, r, "faults.latency_us.max", "%.1f", 1),
		    fnum(bs, r, "faults.share_ge_1ms", "%.1f", 0.01));
		row(f, "blocktime:", "%s", fnum(bs, r, "faults.blocktime_ms", "%.1f ms", 1));
	}
}

/* What protected the stream, when the report says. */
static void print_security(const json_t *r, FILE *f, struct bufs *bs)
{
	const json_t *sec = json_object_get(r, "security");

	if (!json_is_object(sec))
		return;
	if (json_is_true(json_object_get(sec, "encrypted")))
		row(f, "security:", "%s (%s), peer %s, kTLS %s; %s connection(s) rejected",
		    str(r, "security.cipher"), str(r, "security.auth"), str(r, "security.peer"),
		    json_is_true(json_object_get(sec, "ktls")) ? "yes" : "no",
		    fnum(bs, r, "security.rejected_connections", "%.0f", 1));
	else
		row(f, "security:", "none (--insecure), pages checked by %s; %s connection(s) rejected",
		    str(r, "security.integrity"), fnum(bs, r, "security.rejected_connections", "%.0f", 1));
}

/* A Xen guest's own figures (the "xen" object send and recv add). */
static void print_xen(const json_t *r, FILE *f, struct bufs *bs)
{
	const json_t *xen = json_object_get(r, "xen");
	double n;

	if (!json_is_object(xen))
		return;
	row(f, "xen:", "domain %s, %s frames (%s host-owned)", fnum(bs, xen, "domid", "%.0f", 1),
	    fnum(bs, xen, "frames", "%.0f", 1), fnum(bs, xen, "never_sent", "%.0f", 1));
	if (json_is_true(json_object_get(xen, "digest")) && num(xen, "digest_frames", &n) && n > 0)
		row(f, "", "digest of %.0f frames in %s", n, fnum(bs, xen, "digest_ms", "%.0f ms", 1));
	if (num(xen, "replay_pages", &n) && n > 0)
		row(f, "", "hmigt replay of %s ops over %.0f pages in %s",
		    fnum(bs, xen, "replay_ops", "%.0f", 1), n, fnum(bs, xen, "replay_ms", "%.0f ms", 1));
}

void summary_print(const json_t *r, FILE *f)
{
	static const char *const titles[] = {
		[SIDE_SOURCE] = "source side", [SIDE_DEST] = "destination side",
		[SIDE_MERGED] = "both sides",
	};
	enum side side = side_of(r);
	struct bufs bs = { .next = 0 };
	const char *res = str(r, "result");

	fprintf(f, "== %s migration, %s\n", str(r, "mode"), titles[side]);
	if (!strcmp(res, "ok"))
		row(f, "status:", "completed");
	else
		row(f, "status:", "%s: %s", res, str(r, "error"));
	print_guest(r, f, &bs);
	row(f, "dirty logging:", "%s", str(r, "dirty_logging"));
	row(f, "total time:", "%s", fnum(&bs, r, "total_ms", "%.1f ms", 1));
	print_downtime(r, f, &bs);
	row(f, "guest blackout:", "%s", fnum(&bs, r, "guest_blackout_ms", "%.2f ms", 1));
	print_bytes(r, f, side, &bs);
	print_remaining(r, f, side);
	row(f, "pages:", "sent %s, zero %s, duplicate %s", fnum(&bs, r, "pages.sent", "%.0f", 1),
	    fnum(&bs, r, "pages.zero", "%.0f", 1), fnum(&bs, r, "pages.duplicate", "%.0f", 1));
	print_passes(r, f, &bs);
	row(f, "switchover:", "%s, %s stale pages", str(r, "switchover.reason"),
	    fnum(&bs, r, "switchover.stale_pages", "%.0f", 1));
	print_faults(r, f, &bs);
	print_security(r, f, &bs);
	print_xen(r, f, &bs);
	row(f, "guest ops/s:", "%s", fnum(&bs, r, "guest_ops_per_s_after", "%.0f after the migration", 1));
	const char *integrity = str(r, "integrity");
	row(f, "integrity:", "%s%s", integrity,
	    side != SIDE_SOURCE ? "" : strcmp(integrity, "skipped") ? " (the destination's oracle said so)"
								  : " (no verdict from the destination)");
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
