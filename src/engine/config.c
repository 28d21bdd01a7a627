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
	const char *key;
	enum knob_type type;
	size_t off;
	double min, max;
	const char *help;
};

#define KNOB(k, t, mn, mx, h) { #k, t, offsetof(struct hmig_config, k), mn, mx, h }

/* One hour bounds every timeout: longer is a hang, not a timeout.  1e15
 * bounds the counts and rates: far above any real guest or link, and still
 * exact as a double. */
static const struct knob knobs[] = {
	KNOB(mode, K_MODE, HMIG_MODE_PRECOPY, HMIG_MODE_HYBRID, "precopy, postcopy or hybrid"),
	KNOB(max_passes, K_U32, 1, 1000, "pre-copy passes including pass 0"),
	KNOB(dirty_threshold_pages, K_U64, 0, 1e15, "converged at or below this many dirty pages"),
	KNOB(downtime_target_ms, K_DOUBLE, 0, 1e7, "converged when the rest fits this downtime"),
	KNOB(byte_budget, K_DOUBLE, 0, 1e6, "give up after this many guest sizes sent (0 = none)"),
	KNOB(min_progress, K_DOUBLE, 0, 1, "give up when a pass shrinks the dirty set by less"),
	KNOB(precopy_passes, K_U32, 0, 1000, "postcopy mode: passes before the switch"),
	KNOB(switch_after_ms, K_DOUBLE, 0, 1e9, "force the switch after this long (0 = never)"),
	KNOB(push, K_PUSH, HMIG_PUSH_SEQ, HMIG_PUSH_OFF, "post-copy pusher order: seq, hot, near or off"),
	KNOB(near_pages, K_U32, 1, 1024, "push=near: pages pushed after each pulled one"),
	/* A PAGES record carries at most PROTO_MAX_BATCH pages (fewer with
	 * pages over 4 KiB: the source clamps to proto_pages_max_count). */
	KNOB(batch_pages, K_U32, 1, PROTO_MAX_BATCH, "pages per PAGES record"),
	KNOB(rate_limit_bps, K_U64, 0, 1e15, "bulk channel cap in bytes/s (0 = none)"),
	KNOB(connect_timeout_ms, K_INT, 1, 3.6e6, "connect / accept timeout"),
	KNOB(accept_timeout_ms, K_INT, 0, 3.6e6, "destination: wait for a source (0 = forever)"),
	KNOB(io_timeout_ms, K_INT, 1, 3.6e6, "a silent peer is dead after this long"),
	KNOB(dirty, K_DIRTY, HMIG_DIRTY_AUTO, HMIG_DIRTY_WP_SYNC, "dirty logging: auto, async or sync"),
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
	if (v >= k->min && v <= k->max && (k->type == K_DOUBLE || v == floor(v)))
		return 0;
	return err_setf(errbuf, -EINVAL, "bad value for %s: %s (%s; %g to %g)",
			k->key, text, k->help, k->min, k->max);
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

/* "unknown knob 'KEY' (knobs: a,b,...)": every knob, however long the list
 * (the unknown key is what gets cut when the line is full).  Commas without
 * spaces, as in "-o a=1,b=2" lists elsewhere, keep the whole list inside
 * ERR_LEN; tests/engine/test_config.c fails when a new knob no longer fits. */
static int unknown_knob(const char *key, char *errbuf)
{
	static const char fmt[] = "unknown knob '%.*s' (knobs: %s)";
	char list[ERR_LEN * 2];
	size_t n = 0;

	list[0] = '\0';
	for (size_t i = 0; i < NKNOBS && n < sizeof(list); i++)
		n += (size_t)snprintf(list + n, sizeof(list) - n, "%s%s", i ? "," : "", knobs[i].key);
	/* fmt less its three conversions (8 bytes), the list and the NUL. */
	long room = (long)ERR_LEN - (long)(sizeof(fmt) - 1 - 8) - (long)strlen(list) - 1;
	return err_setf(errbuf, -EINVAL, fmt, room > 0 ? (int)room : 0, key, list);
}

int hmig_config_set(struct hmig_config *cfg, const char *key, const char *value,
		    char *errbuf)
{
	const struct knob *k = NULL;
	char *end, quoted[80];
	double v;
	int rc = 0;

	for (size_t i = 0; i < NKNOBS; i++)
		if (!strcmp(knobs[i].key, key))
			k = &knobs[i];
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
				k->help);
	snprintf(quoted, sizeof(quoted), "'%s'", value);
	if (knob_check(k, v, quoted, errbuf))
		return -EINVAL;
	knob_put(cfg, k, v);
	return 0;
}
