/* Report documents in the CLI: reading them, looking values up by path, and
 * merging a source's and a destination's report into one.
 *
 * The library writes a report (hmig_source_report / hmig_dest_report); only
 * the CLI reads one back, so the reading and merging live here, on jansson,
 * and not in libhmig.  Errors: 0 or -errno, with one line in err (DOC_ERR_LEN
 * bytes) where a function takes one.
 */
#ifndef HMIG_TOOLS_DOC_H
#define HMIG_TOOLS_DOC_H

#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

#define DOC_ERR_LEN 256

/* A report file larger than this is not one of ours: a long migration's
 * report is a few hundred KiB, and this keeps a stray file from eating
 * memory. */
#define DOC_MAX_BYTES ((size_t)64 << 20)

/* Parses text[0..len) into a new reference (*out; json_decref it).  -EINVAL
 * with "invalid JSON at byte B (line L, column C): what", or -E2BIG. */
int doc_parse(const char *text, size_t len, json_t **out, char *err);

/* Reads and parses a file: as doc_parse, and -errno naming the file when it
 * cannot be read. */
int doc_load(const char *path, json_t **out, char *err);

/* Path lookup: keys separated by '.', array items as "[N]" or as a numeric
 * segment: "faults.latency_us.p50", "passes[0].ms", "passes.0.ms".  The empty
 * path is root.  NULL when absent (or root is NULL, or the path is
 * malformed).  Keys containing '.' or '[' cannot be addressed this way. */
json_t *doc_path(const json_t *root, const char *path);

/* Typed reads at a path: 0; -ENOENT absent, -ENODATA null, -EINVAL another
 * type, -ERANGE (u64) a number that is not an exact non-negative integer. */
int doc_u64(const json_t *root, const char *path, uint64_t *out);
int doc_double(const json_t *root, const char *path, double *out);
/* The string at path, or NULL if absent or not a string. */
const char *doc_str(const json_t *root, const char *path);

/* A number for a document: NaN and infinities become null, as in reports. */
json_t *doc_real(double v);

/* Writes doc as pretty JSON (two-space indent, keys in insertion order) and
 * a newline, and flushes f.  0 or -errno. */
int doc_write(const json_t *doc, FILE *f);

/* Merges a source report and a destination report into one document with
 * "side": "merged", written to out.  Either may be NULL (that side wrote no
 * report), not both.  The rule, key by key:
 *
 *   result       "failed" if either is failed (or has an unknown result),
 *                else "cancelled" if either is, else "ok"
 *   error        present when result is not ok: each not-ok side's error,
 *                prefixed "source: " / "destination: ", joined with "; "
 *                (source first: it drives the migration)
 *   total_ms     the larger of the two (the migration ends when both do)
 *   downtime_ms  the source's (pause to RESUMED: all of it), else the
 *                destination's (its share only)
 *   integrity, faults, guest_ops_per_s_after
 *                the destination's, else the source's
 *   pages        sent, zero: the source's; duplicate, pulled, pushed: the
 *                destination's; each falls back to the other side
 *   mode, guest, bytes, passes, switchover, dirty_logging,
 *   guest_ops_per_s_before
 *                the source's, else the destination's
 *   timeline     the source's (or []); "timeline_destination" the
 *                destination's (or []), on the source's clock: each row's
 *                t_ms plus the destination's start_unix_ms minus the
 *                source's, which "timeline_destination_shift_ms" gives
 *                (null, and the rows left on the destination's own clock,
 *                when either side lacks start_unix_ms).  Across hosts the
 *                alignment is as good as the two hosts' clock sync.
 *   other keys   copied; a key both sides have keeps the source's value and
 *                the destination's goes under "<key>_destination"
 *                (start_unix_ms is the source's, start_unix_ms_destination
 *                the destination's)
 *
 * "else" means: when the preferred side lacks the key or has null there.
 * Returns 0, -EINVAL (a document is not an object; both NULL), -ENOMEM, or
 * the write error; err says what went wrong. */
int doc_merge(json_t *src, json_t *dst, FILE *out, char *err);

/* The same merge as a new document (*out; json_decref it). */
int doc_merged(json_t *src, json_t *dst, json_t **out, char *err);

#endif
