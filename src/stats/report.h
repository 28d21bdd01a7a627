/* The migration report: one struct per side, written as the JSON document
 * docs/report.md describes key by key.  Reading reports back and merging a source's with a
 * destination's is the CLI's business (tools/hmig/doc.c).
 *
 * Conventions of the struct:
 * - times are milliseconds, fault latencies microseconds, as in the JSON;
 * - a double set to NAN, or a counter set to STATS_NONE, means "not
 *   measured on this side" and is written as null (stats_report_init sets
 *   every double to NAN, and the counters a side cannot see to STATS_NONE);
 *   the other counters start at 0;
 * - every key docs/report.md marks "always" is always written (scripts may
 *   rely on the shape): "error" only when result is not ok, and
 *   "guest_ops_per_s_before" / "_after" and the extras only when set.
 *
 * Nothing here locks: the engine's thread fills a report, and its timeline
 * sampler appends rows under the engine's own lock (engine/progress.c).
 */
#ifndef HMIG_STATS_REPORT_H
#define HMIG_STATS_REPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <hmig/hmig.h>

#include "common/err.h"
#include "stats/hist.h"

enum stats_side { STATS_SIDE_SOURCE, STATS_SIDE_DESTINATION, STATS_SIDE_MERGED };
enum stats_result { STATS_RESULT_OK, STATS_RESULT_FAILED, STATS_RESULT_CANCELLED };
enum stats_integrity {
	STATS_INTEGRITY_SKIPPED,
	STATS_INTEGRITY_OK,
	STATS_INTEGRITY_MISMATCH,
};

/* The JSON spellings ("source", "cancelled", "ok", ...); "?" for an
 * out-of-range value. */
const char *stats_side_name(enum stats_side s);
const char *stats_result_name(enum stats_result r);
const char *stats_integrity_name(enum stats_integrity i);
/* hmig_reason_name's, but NULL for HMIG_REASON_NONE (no switchover
 * happened yet: written as "reason": null). */
const char *stats_reason_name(enum hmig_reason r);

/* One row of "passes". */
struct stats_pass_row {
	uint32_t pass;
	uint64_t pages_sent;
	uint64_t pages_dirtied;
	double ms;
	double mbps;
	double dirty_rate_pps;
};

/* Phase names are short words ("precopy", "switchover", "postcopy", ...). */
#define STATS_PHASE_LEN 24

/* A counter this side does not measure (the source's pages_present, the
 * destination's pages.sent): null. */
#define STATS_NONE UINT64_MAX

/* One row of "timeline".  Two kinds: a sample, taken every sample_ms from
 * start to end (event ""), and an event: a state change, the end of a pass,
 * a named moment ("resumed", "pushed all").  Counters are cumulative and
 * exact at the row's time; rates are the latest sample's, over the interval
 * before it (NAN until the first sample). */
struct stats_timeline_row {
	double t_ms;	/* since the migration started */
	char phase[STATS_PHASE_LEN];	/* the state at t_ms */
	char event[STATS_PHASE_LEN];	/* "" for a sample */
	uint64_t bytes_bulk;	/* cumulative, bulk channel (sent / received) */
	uint64_t bytes_urgent;	/* cumulative, urgent channel */
	double bulk_bps;	/* bytes/s on bulk */
	double urgent_bps;	/* bytes/s on urgent */
	uint64_t pages_present;	/* destination: pages installed; STATS_NONE */
	uint64_t pages_pulled;	/* cumulative: served (source) / received (destination) */
	double pulls_per_s;
	double pull_latency_us;	/* destination: mean fault-to-page over the interval */
	double dirty_rate_pps;	/* source: pages newly dirtied per second, last look */
	double guest_ops_per_s;	/* where the guest runs; NAN where it does not */
};

#define STATS_EXTRA_KEY_LEN 48

/* faults.latency_hist_us: 1 us to 2^39 us (6 days). */
#define STATS_LAT_BUCKETS 40

/* A numeric (or boolean) key the engine adds at the top level of the report. */
struct stats_extra {
	char key[STATS_EXTRA_KEY_LEN];
	bool is_u64;
	bool is_bool; /* written as true/false, from u */
	uint64_t u;
	double d;
};

struct stats_report {
	enum stats_side side;
	enum hmig_mode mode;
	enum stats_result result;
	char error[ERR_LEN];	/* one line; written only when result != ok */
	enum stats_integrity integrity;
	char dirty_logging[32];	/* e.g. "uffd-wp-async+pagemap-scan"; "" = null */
	struct {
		char backend[32];
		uint64_t pages;
		uint64_t page_size;
		uint32_t vcpus;
		char workload[128];
	} guest;
	double total_ms;
	double downtime_ms;
	struct {
		uint64_t total, precopy, stopcopy, push, pull;
	} bytes;
	struct {
		uint64_t sent, zero, duplicate, pulled, pushed;
	} pages;
	struct {
		enum hmig_reason reason;
		uint64_t stale_pages;
	} switchover;
	struct {
		uint64_t count;
		struct {
			double p50, p90, p99, max;
		} latency_us;
		double blocktime_ms;
		/* Fault latency by powers of two, as QEMU's postcopy latency
		 * distribution: hist[k] counts latencies in [2^(k-1), 2^k) us
		 * (hist[0]: below 1 us); nhist buckets, the last non-empty one
		 * last.  Each histogram bucket is counted at its midpoint, so a
		 * latency within 1.6% of a power of two may land one bucket off. */
		uint64_t hist[STATS_LAT_BUCKETS];
		unsigned nhist;
		double share_ge_1ms;	/* of timed faults, those of 1 ms or more */
	} faults;
	double start_unix_ms;	/* wall clock at t_ms 0 (NAN: not started) */
	/* What protected the stream (written as "security"; omitted when the
	 * migration never got a connection).  Strings are escaped by the writer. */
	struct {
		bool known;             /* a channel was set up */
		bool encrypted;         /* TLS 1.3; false: --insecure, CRC32C per page */
		bool ktls, ktls_available;
		char auth[8];           /* "psk", "x509", "" */
		char cipher[96];
		char peer[160];         /* the peer's certificate DN or PSK identity */
		char integrity[32];     /* "aead" or "crc32c-sse4.2" / "crc32c-table" */
		uint64_t rejected;      /* destination: connections turned away */
	} security;
	double guest_ops_per_s_before;	/* NAN = omit */
	double guest_ops_per_s_after;	/* NAN = omit */

	/* Growable tables: read them, append through the functions below. */
	struct stats_pass_row *passes;
	size_t npasses, passes_cap;
	struct stats_timeline_row *timeline;
	size_t ntimeline, timeline_cap;
	struct stats_extra *extras;
	size_t nextras, extras_cap;
};

/* Empty report for one side: counters 0 (STATS_NONE for those the side
 * cannot see), doubles NAN, integrity skipped,
 * mode hybrid, and result FAILED with error "migration did not finish", so a
 * report written on an early exit never claims success.  The engine sets
 * result = STATS_RESULT_OK when it completes. */
void stats_report_init(struct stats_report *r, enum stats_side side);
/* Frees the tables; r may be re-initialised afterwards. */
void stats_report_free(struct stats_report *r);

/* Sets result and (for anything but OK) the one-line error, printf-style. */
void stats_report_set_result(struct stats_report *r, enum stats_result res,
			     const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Pre-sizes the tables so appends up to these counts never allocate (call it
 * before the timeline sampler starts).  0 or -ENOMEM. */
int stats_report_reserve(struct stats_report *r, size_t npasses, size_t ntimeline);
/* Appends a copy of row; allocates only when the table is full (doubling).
 * 0 or -ENOMEM (the report is unchanged). */
int stats_report_add_pass(struct stats_report *r, const struct stats_pass_row *row);
int stats_report_add_timeline(struct stats_report *r,
			      const struct stats_timeline_row *row);

/* Adds or replaces a top-level numeric or boolean key.  -EINVAL if key is empty, longer
 * than STATS_EXTRA_KEY_LEN-1, or one of the report's own keys; -ENOMEM. */
int stats_report_set_extra_u64(struct stats_report *r, const char *key, uint64_t v);
int stats_report_set_extra_double(struct stats_report *r, const char *key, double v);
int stats_report_set_extra_bool(struct stats_report *r, const char *key, bool v);

/* Fills faults.latency_us.{p50,p90,p99,max} and the power-of-two buckets
 * (faults.latency_hist_us) from a histogram recorded in nanoseconds (NAN,
 * i.e. null, and no buckets when it is empty).  Leaves faults.count alone:
 * the engine counts faults, the histogram counts timed requests. */
void stats_report_set_fault_latency(struct stats_report *r,
				    const struct stats_hist *lat_ns);

/* Writes the report as one pretty-printed JSON document (table rows one per
 * line) and flushes f.  0, -ENOMEM, or -errno of the failed write.  Strings
 * that are not UTF-8 are written with U+FFFD for the bad bytes, so the
 * document always parses. */
int stats_report_write_json(const struct stats_report *r, FILE *f);

#endif
