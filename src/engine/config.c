/* The knobs: defaults and "-o key=value" parsing, declared as one table. */
#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hmig/hmig.h>

#include "common/err.h"
#include "proto/proto.h"

void hmig_config_init(struct hmig_config *cfg)
{
	*cfg = (struct hmig_config){
		.mode = HMIG_MODE_HYBRID,
		.max_passes = 5,            /* Xen's default iteration limit */
		.dirty_threshold_pages = 50,/* Xen's "few enough dirty pages" */
		.downtime_target_ms = 300,  /* QEMU's downtime-limit default */
		.byte_budget = 0,
		/* A pass that shrinks the dirty set by under 10% is mostly
		 * resending the same hot pages. */
		.min_progress = 0.1,
		.precopy_passes = 1, /* postcopy mode: pass 0, then switch */
		.switch_after_ms = 0,
		.push = HMIG_PUSH_HOT,
		/* 16 pages = 64 KiB after a fault: one TCP window's worth of
		 * read-ahead, small next to a 1 MiB push batch. */
		.near_pages = 16,
		/* 256 pages = 1 MiB a record: large enough that the per-record
		 * cost vanishes, small enough to overlap with the next pass. */
		.batch_pages = 256,
		.rate_limit_bps = 0,
		.connect_timeout_ms = 10000,
		.accept_timeout_ms = 0,
		.io_timeout_ms = 30000,
		/* Ten minutes to mend a network before a committed migration
		 * gives up: an operator's window, where QEMU's post-copy pauses
		 * forever (0 asks for that). */
		.recover_timeout_ms = 600000,
		/* Ten rows a second: enough to see a 100 ms post-copy tail, a
		 * few kB a second of report. */
		.sample_ms = 100,
		.dirty = HMIG_DIRTY_AUTO,
		.max_mem = 0,
		/* Secure by default: no credentials and no insecure = refused. */
		.tls_creds = NULL,
		.tls_psk = NULL,
		.insecure = false,
	};
}

/* The one table of knobs: the "-o key=value" parser (hmig_config_set) and
 * the constructors' check (hmig_config_check) both take their ranges from
 * here, so a value the parser refuses is one a library caller cannot slip in
 * through the struct either.  Enum knobs are ranged by their values; their
 * spellings come from the type's own parser. */
enum knob_type { K_U32, K_U64, K_INT, K_DOUBLE, K_MODE, K_DIRTY, K_PUSH };

struct knob {
	struct hmig_knob pub;   /* key, help, sides, range */
	enum knob_type type;
	size_t off;
};

#define SRC HMIG_SIDE_SOURCE
#define DST HMIG_SIDE_DEST
#define BOTH (HMIG_SIDE_SOURCE | HMIG_SIDE_DEST)
#define KNOB(k, sd, t, mn, mx, h) { { #k, h, sd, mn, mx }, t, offsetof(struct hmig_config, k) }

/* One hour bounds every timeout: longer is a hang, not a timeout.  1e15
 * bounds the counts and rates: far above any real guest or link, and still
 * exact as a double. */
static const struct knob knobs[] = {
	KNOB(mode, SRC, K_MODE, HMIG_MODE_PRECOPY, HMIG_MODE_HYBRID, "precopy, postcopy or hybrid"),
	KNOB(max_passes, SRC, K_U32, 1, 1000, "pre-copy passes including pass 0"),
	KNOB(dirty_threshold_pages, SRC, K_U64, 0, 1e15, "converged at or below this many dirty pages"),
	KNOB(downtime_target_ms, SRC, K_DOUBLE, 0, 1e7, "converged when the rest fits this downtime"),
	KNOB(byte_budget, SRC, K_DOUBLE, 0, 1e6, "give up after this many guest sizes sent (0: none, hybrid 1.3)"),
	KNOB(min_progress, SRC, K_DOUBLE, 0, 1, "give up when a pass shrinks the dirty set by less"),
	KNOB(precopy_passes, SRC, K_U32, 0, 1000, "postcopy mode: passes before the switch"),
	KNOB(switch_after_ms, SRC, K_DOUBLE, 0, 1e9, "force the switch after this long (0 = never)"),
	KNOB(push, SRC, K_PUSH, HMIG_PUSH_SEQ, HMIG_PUSH_OFF, "post-copy pusher order: seq, hot, near or off"),
	KNOB(near_pages, SRC, K_U32, 1, 1024, "push=near: pages pushed after each pulled one"),
	/* A PAGES record carries at most PROTO_MAX_BATCH pages (fewer with
	 * pages over 4 KiB: the source clamps to proto_pages_max_count). */
	KNOB(batch_pages, SRC, K_U32, 1, PROTO_MAX_BATCH, "pages per PAGES record"),
	KNOB(rate_limit_bps, SRC, K_U64, 0, 1e15, "bulk channel cap in bytes/s (0 = none)"),
	KNOB(connect_timeout_ms, SRC, K_INT, 1, 3.6e6, "source: how long to keep trying to connect"),
	KNOB(accept_timeout_ms, DST, K_INT, 0, 3.6e6, "destination: wait for a source (0 = forever)"),
	KNOB(io_timeout_ms, BOTH, K_INT, 1, 3.6e6, "a silent peer is dead after this long"),
	KNOB(recover_timeout_ms, BOTH, K_INT, 0, 8.64e7,
	     "after the commit, how long to reconnect a lost link (0 = forever)"),
	KNOB(sample_ms, BOTH, K_INT, 0, 6e4, "timeline sample interval (0 = events only)"),
	KNOB(dirty, SRC, K_DIRTY, HMIG_DIRTY_AUTO, HMIG_DIRTY_WP_SYNC, "dirty logging: auto, async or sync"),
};

#define NKNOBS (sizeof(knobs) / sizeof(knobs[0]))

const char *hmig_reason_name(enum hmig_reason r)
{
	switch (r) {
	case HMIG_REASON_NONE: return "none";
	case HMIG_REASON_CONVERGED: return "converged";
	case HMIG_REASON_MAX_PASSES: return "max_passes";
	case HMIG_REASON_NO_PROGRESS: return "no_progress";
	case HMIG_REASON_BYTE_BUDGET: return "byte_budget";
	case HMIG_REASON_FORCED: return "forced";
	}
	return "?";
}

/* Push orders by their -o spelling; the index is the enum value. */
static int push_parse(const char *s, enum hmig_push *p)
{
	for (int i = HMIG_PUSH_SEQ; i <= HMIG_PUSH_OFF; i++)
		if (!strcmp(s, hmig_push_name((enum hmig_push)i))) {
			*p = (enum hmig_push)i;
			return 0;
		}
	return -EINVAL;
}

/* At file scope: C11 allows no declaration right after a case label, and
 * clang (the fuzz build) holds to that. */
_Static_assert(sizeof(enum hmig_mode) == sizeof(int) && sizeof(enum hmig_push) == sizeof(int) &&
	       sizeof(enum hmig_dirty_mode) == sizeof(int), "enum knobs are ints");

/* The field's value as a double: every knob's range is checked on that.
 * Enums are read as int, so a caller's stray -1 is -1, not 4294967295. */
static double knob_get(const struct hmig_config *cfg, const struct knob *k)
{
	const void *field = (const char *)cfg + k->off;
	int e;

	switch (k->type) {
	case K_U32: return *(const uint32_t *)field;
	case K_U64: return (double)*(const uint64_t *)field;
	case K_INT: return *(const int *)field;
	case K_DOUBLE: return *(const double *)field;
	case K_MODE:
	case K_DIRTY:
	case K_PUSH:
		memcpy(&e, field, sizeof(e));
		return e;
	}
	return NAN;
}

static void knob_put(struct hmig_config *cfg, const struct knob *k, double v)
{
	void *field = (char *)cfg + k->off;
	/* Converted to int only for the enums: -o rate_limit_bps=1e15 is in
	 * range for its knob, and as an int it would be undefined behaviour. */
	int e = k->type == K_MODE || k->type == K_DIRTY || k->type == K_PUSH ? (int)v : 0;

	switch (k->type) {
	case K_U32: *(uint32_t *)field = (uint32_t)v; break;
	case K_U64: *(uint64_t *)field = (uint64_t)v; break;
	case K_INT: *(int *)field = (int)v; break;
	case K_DOUBLE: *(double *)field = v; break;
	case K_MODE:
	case K_DIRTY:
	case K_PUSH: memcpy(field, &e, sizeof(e)); break;
	}
}

/* The range check both paths share.  text is how the value was given (the
 * -o text, or the struct's number).  NaN fails every comparison, so the
 * test is written to let nothing but [min, max] through. */
static int knob_check(const struct knob *k, double v, const char *text, char *errbuf)
{
	if (v >= k->pub.min && v <= k->pub.max && (k->type == K_DOUBLE || v == floor(v)))
		return 0;
	return err_setf(errbuf, -EINVAL, "bad value for %s: %s (%s; %g to %g)",
			k->pub.key, text, k->pub.help, k->pub.min, k->pub.max);
}

int hmig_config_check(const struct hmig_config *cfg, char *errbuf)
{
	char text[40];

	for (size_t i = 0; i < NKNOBS; i++) {
		double v = knob_get(cfg, &knobs[i]);

		snprintf(text, sizeof(text), knobs[i].type == K_DOUBLE ? "%.15g" : "%.0f", v);
		if (knob_check(&knobs[i], v, text, errbuf))
			return -EINVAL;
	}
	return 0;
}

const char *hmig_config_knob_name(unsigned i)
{
	return i < NKNOBS ? knobs[i].pub.key : NULL;
}

const struct hmig_knob *hmig_config_knob(unsigned i)
{
	return i < NKNOBS ? &knobs[i].pub : NULL;
}

static const struct knob *knob_find(const char *key)
{
	for (size_t i = 0; i < NKNOBS; i++)
		if (!strcmp(knobs[i].pub.key, key))
			return &knobs[i];
	return NULL;
}

int hmig_config_get(const struct hmig_config *cfg, const char *key, char *buf, size_t len)
{
	const struct knob *k = knob_find(key);
	double v;
	int n;

	if (!k)
		return -ENOENT;
	v = knob_get(cfg, k);
	switch (k->type) {
	case K_MODE: n = snprintf(buf, len, "%s", hmig_mode_name((enum hmig_mode)v)); break;
	case K_DIRTY: { /* hmig_dirty_mode_parse's spellings, not the report's */
		static const char *const dirty[] = { "auto", "async", "sync" };

		n = v >= 0 && v < 3 ? snprintf(buf, len, "%s", dirty[(int)v]) : -1;
		break;
	}
	case K_PUSH: n = snprintf(buf, len, "%s", hmig_push_name((enum hmig_push)v)); break;
	case K_DOUBLE: n = snprintf(buf, len, "%.15g", v); break;
	default: n = snprintf(buf, len, "%.0f", v); break;
	}
	return n < 0 || (size_t)n >= len ? -ENOSPC : 0;
}

/* The knobs outgrew one 256-byte line: the message names the bad key and
 * how to list them; the CLI prints the whole list (tools/hmig/migopts.c). */
static int unknown_knob(const char *key, char *errbuf)
{
	return err_setf(errbuf, -EINVAL,
			"unknown knob '%.64s' (%zu knobs: hmig_config_knob_name() lists them)", key,
			NKNOBS);
}

int hmig_config_set(struct hmig_config *cfg, const char *key, const char *value,
		    char *errbuf)
{
	const struct knob *k = knob_find(key);
	char *end, quoted[80];
	double v;
	int rc = 0;

	if (!k)
		return unknown_knob(key, errbuf);
	switch (k->type) {
	case K_MODE: {
		enum hmig_mode m;

		rc = hmig_mode_parse(value, &m);
		v = m;
		break;
	}
	case K_DIRTY: {
		enum hmig_dirty_mode m;

		rc = hmig_dirty_mode_parse(value, &m);
		v = m;
		break;
	}
	case K_PUSH: {
		enum hmig_push p;

		rc = push_parse(value, &p);
		v = p;
		break;
	}
	default:
		errno = 0;
		v = strtod(value, &end);
		if (end == value || *end || errno)
			v = NAN;
		break;
	}
	if (rc)
		return err_setf(errbuf, -EINVAL, "bad value for %s: '%s' (use %s)", key, value,
				k->pub.help);
	snprintf(quoted, sizeof(quoted), "'%s'", value);
	if (knob_check(k, v, quoted, errbuf))
		return -EINVAL;
	knob_put(cfg, k, v);
	return 0;
}
