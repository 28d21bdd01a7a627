/* JSON for the report: a streaming writer and a small DOM parser.
 *
 * Both speak RFC 8259 JSON in UTF-8.  Neither is on a hot path: the writer runs
 * once per migration, the parser reads report files in `hmig report` and
 * `hmig demo`.  They are independent of the C locale (a "," decimal point in
 * LC_NUMERIC changes nothing).
 *
 * Errors: every function returns 0 (or a count) or -errno.
 *   -EINVAL  malformed input, or a writer call out of order
 *   -E2BIG   a parser limit (depth, size, value count) was exceeded
 *   -ENOMEM  out of memory
 *   -EIO     (or the stream's errno) writing to the FILE failed
 */
#ifndef HMIG_STATS_JSON_H
#define HMIG_STATS_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* ---- the DOM ------------------------------------------------------------ */

enum json_type { JSON_NULL, JSON_BOOL, JSON_NUM, JSON_STR, JSON_ARR, JSON_OBJ };

/* Bits of json_val.num.exact: the number is integral and u / i hold it
 * exactly (digit strings are converted without going through the double). */
#define JSON_EXACT_U64 1u
#define JSON_EXACT_I64 2u

struct json_member;

struct json_val {
	enum json_type type;
	union {
		bool b;
		struct {
			double d;	/* nearest double, always set */
			uint64_t u;
			int64_t i;
			unsigned exact;	/* JSON_EXACT_* */
		} num;
		struct {
			char *s;	/* NUL-terminated; may hold \0 from \u0000 */
			size_t len;
		} str;
		struct {
			struct json_val *items;
			size_t n;
		} arr;
		struct {
			struct json_member *m;	/* in document order */
			size_t n;
		} obj;
	};
};

struct json_member {
	char *key;
	size_t key_len;
	struct json_val val;
};

/* ---- the parser --------------------------------------------------------- */

/* A zero field means the default.  Defaults fit a long migration's report
 * (a 10-minute timeline at 10 ms is ~420k values) with a wide margin while
 * keeping a hostile file from eating gigabytes: one value costs ~40 bytes. */
struct json_limits {
	unsigned max_depth;	/* nested arrays/objects; default 64 */
	size_t max_len;		/* input bytes; default 64 MiB */
	size_t max_values;	/* values in the tree; default 4 Mi */
};

#define JSON_DEFAULT_MAX_DEPTH 64
#define JSON_DEFAULT_MAX_LEN ((size_t)64 << 20)
#define JSON_DEFAULT_MAX_VALUES ((size_t)4 << 20)

/* Parses text[0..len) into *out (caller-owned storage; release with
 * json_val_free).  lim may be NULL.  On failure *out is left JSON_NULL,
 * nothing leaks and err (ERR_LEN bytes) names the byte offset, line and
 * column and what was expected, e.g.
 *   "invalid JSON at byte 12 (line 1, column 13): expected ',' or ']'".
 * A leading UTF-8 byte-order mark is skipped.  Duplicate object keys are kept;
 * lookups return the last one (as Python and jq do). */
int json_parse(const char *text, size_t len, const struct json_limits *lim,
	       struct json_val *out, char *err);

/* Frees what v owns (not v itself) and leaves it JSON_NULL. */
void json_val_free(struct json_val *v);

/* ---- lookups: all NULL-tolerant, returning NULL when absent ------------- */

/* Member `key` of an object (the last one if duplicated). */
const struct json_val *json_get(const struct json_val *obj, const char *key);
/* Item i of an array. */
const struct json_val *json_at(const struct json_val *arr, size_t i);
/* Items of an array or members of an object; 0 for anything else. */
size_t json_len(const struct json_val *v);

/* Path lookup: keys separated by '.', array items as "[N]" or as a numeric
 * segment: "faults.latency_us.p50", "passes[0].ms", "passes.0.ms".  The empty
 * path is root.  Keys containing '.' or '[' cannot be addressed this way. */
const struct json_val *json_path(const struct json_val *root, const char *path);

/* Typed reads.  0 on success; -ENOENT if v is NULL (absent), -ENODATA if it
 * is JSON null, -EINVAL if it has another type, -ERANGE (u64/i64) if the
 * number is not an integer representable exactly in that type. */
int json_val_u64(const struct json_val *v, uint64_t *out);
int json_val_i64(const struct json_val *v, int64_t *out);
int json_val_double(const struct json_val *v, double *out);
int json_val_bool(const struct json_val *v, bool *out);
/* The string, or NULL if v is absent or not a string. */
const char *json_val_str(const struct json_val *v);

/* json_path + the typed read, for `hmig report` style code. */
int json_path_u64(const struct json_val *root, const char *path, uint64_t *out);
int json_path_double(const struct json_val *root, const char *path, double *out);
const char *json_path_str(const struct json_val *root, const char *path);

/* ---- the writer --------------------------------------------------------- */

/* Deep enough for any report; the writer refuses to go deeper (-EINVAL). */
#define JSON_WRITER_MAX_DEPTH 32

/* Streaming writer.  Errors are sticky: after the first one every call
 * returns it and writes nothing, so a long sequence of calls can be checked
 * once, at json_writer_finish().  Nesting is checked: a value in an object
 * needs a key first, a key is only valid in an object, ends must match begins,
 * and the document is exactly one value. */
struct json_writer {
	FILE *f;	/* NULL: write into buf */
	char *buf;	/* output when f == NULL, always NUL-terminated; owned */
	size_t len;
	size_t cap;
	int err;	/* first error, sticky */
	unsigned pretty;	/* levels laid out one item per line */
	unsigned depth;
	bool key_pending;
	bool done;	/* the top-level value is complete */
	struct {
		char close;	/* '}' or ']' */
		uint32_t n;	/* items written at this level */
	} level[JSON_WRITER_MAX_DEPTH];
};

/* f == NULL: grow a malloc'd buffer (w->buf, w->len).  pretty = number of
 * outermost nesting levels written one item per line with two-space indent;
 * deeper containers stay on one line (so a report's table rows are one line
 * each).  0 = compact. */
void json_writer_init(struct json_writer *w, FILE *f, unsigned pretty);
/* Checks the document is complete, appends '\n' when pretty, returns the first
 * error.  Does not fflush or close f. */
int json_writer_finish(struct json_writer *w);
/* Frees the buffer (a no-op for FILE output). */
void json_writer_free(struct json_writer *w);

int json_obj_begin(struct json_writer *w);
int json_obj_end(struct json_writer *w);
int json_arr_begin(struct json_writer *w);
int json_arr_end(struct json_writer *w);
int json_key(struct json_writer *w, const char *key);

/* Strings are escaped: '"', '\\' and control characters (as \n, \t, ... or
 * \u00XX); other bytes pass through as UTF-8, except that a byte sequence
 * which is not valid UTF-8 becomes U+FFFD so the output always parses. */
int json_put_str(struct json_writer *w, const char *s);
int json_put_strn(struct json_writer *w, const char *s, size_t n);
int json_put_u64(struct json_writer *w, uint64_t v);
int json_put_i64(struct json_writer *w, int64_t v);
/* Shortest of %.15g/%.16g/%.17g that reads back as the same double; NaN and
 * infinities are written as null. */
int json_put_double(struct json_writer *w, double v);
int json_put_bool(struct json_writer *w, bool v);
int json_put_null(struct json_writer *w);
/* Writes a parsed value back out; exact integers stay exact. */
int json_put_val(struct json_writer *w, const struct json_val *v);

/* key + value in one call. */
int json_kv_str(struct json_writer *w, const char *key, const char *s);
int json_kv_u64(struct json_writer *w, const char *key, uint64_t v);
int json_kv_i64(struct json_writer *w, const char *key, int64_t v);
int json_kv_double(struct json_writer *w, const char *key, double v);
int json_kv_bool(struct json_writer *w, const char *key, bool v);

#endif
