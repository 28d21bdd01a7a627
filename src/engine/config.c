/* The knobs: defaults and "-o key=value" parsing, declared as one table. */
#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hmig/hmig.h>

#include "common/err.h"

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
	};
}

enum knob_type { K_U32, K_U64, K_INT, K_DOUBLE, K_MODE, K_DIRTY, K_PUSH };

struct knob {
	const char *key;
	enum knob_type type;
	size_t off;
	double min, max;
	const char *help;
};

#define KNOB(k, t, mn, mx, h) { #k, t, offsetof(struct hmig_config, k), mn, mx, h }

static const struct knob knobs[] = {
	KNOB(mode, K_MODE, 0, 0, "precopy, postcopy or hybrid"),
	KNOB(max_passes, K_U32, 1, 1000, "pre-copy passes including pass 0"),
	KNOB(dirty_threshold_pages, K_U64, 0, 1e15, "converged at or below this many dirty pages"),
	KNOB(downtime_target_ms, K_DOUBLE, 0, 1e7, "converged when the rest fits this downtime"),
	KNOB(byte_budget, K_DOUBLE, 0, 1e6, "give up after this many guest sizes sent (0 = none)"),
	KNOB(min_progress, K_DOUBLE, 0, 1, "give up when a pass shrinks the dirty set by less"),
	KNOB(precopy_passes, K_U32, 0, 1000, "postcopy mode: passes before the switch"),
	KNOB(switch_after_ms, K_DOUBLE, 0, 1e9, "force the switch after this long (0 = never)"),
	KNOB(push, K_PUSH, 0, 0, "post-copy pusher order: seq, hot, near or off"),
	KNOB(near_pages, K_U32, 1, 1024, "push=near: pages pushed after each pulled one"),
	KNOB(batch_pages, K_U32, 1, 1024, "pages per PAGES record"),
	KNOB(rate_limit_bps, K_U64, 0, 1e15, "bulk channel cap in bytes/s (0 = none)"),
	KNOB(connect_timeout_ms, K_INT, 1, 3.6e6, "connect / accept timeout"),
	KNOB(accept_timeout_ms, K_INT, 0, 3.6e6, "destination: wait for a source (0 = forever)"),
	KNOB(io_timeout_ms, K_INT, 1, 3.6e6, "a silent peer is dead after this long"),
	KNOB(dirty, K_DIRTY, 0, 0, "dirty logging: auto, async or sync"),
};

int hmig_mode_parse(const char *s, enum hmig_mode *m)
{
	if (!strcmp(s, "precopy"))
		*m = HMIG_MODE_PRECOPY;
	else if (!strcmp(s, "postcopy"))
		*m = HMIG_MODE_POSTCOPY;
	else if (!strcmp(s, "hybrid"))
		*m = HMIG_MODE_HYBRID;
	else
		return -EINVAL;
	return 0;
}

const char *hmig_mode_name(enum hmig_mode m)
{
	switch (m) {
	case HMIG_MODE_PRECOPY: return "precopy";
	case HMIG_MODE_POSTCOPY: return "postcopy";
	case HMIG_MODE_HYBRID: return "hybrid";
	}
	return "?";
}

const char *hmig_push_name(enum hmig_push p)
{
	switch (p) {
	case HMIG_PUSH_SEQ: return "seq";
	case HMIG_PUSH_HOT: return "hot";
	case HMIG_PUSH_NEAR: return "near";
	case HMIG_PUSH_OFF: return "off";
	}
	return "?";
}

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

static void list_keys(char *buf, size_t len)
{
	size_t n = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < sizeof(knobs) / sizeof(knobs[0]) && n < len; i++)
		n += (size_t)snprintf(buf + n, len - n, "%s%s", i ? ", " : "", knobs[i].key);
}

int hmig_config_set(struct hmig_config *cfg, const char *key, const char *value,
		    char *errbuf)
{
	const struct knob *k = NULL;
	char *end;

	for (size_t i = 0; i < sizeof(knobs) / sizeof(knobs[0]); i++)
		if (!strcmp(knobs[i].key, key))
			k = &knobs[i];
	if (!k) {
		char keys[200];

		list_keys(keys, sizeof(keys));
		return err_setf(errbuf, -EINVAL, "unknown knob '%s' (knobs: %s)", key, keys);
	}
	void *field = (char *)cfg + k->off;
	switch (k->type) {
	case K_MODE:
		if (hmig_mode_parse(value, field))
			return err_setf(errbuf, -EINVAL,
					"bad mode '%s': use precopy, postcopy or hybrid", value);
		return 0;
	case K_DIRTY:
		if (hmig_dirty_mode_parse(value, field))
			return err_setf(errbuf, -EINVAL,
					"bad dirty mode '%s': use auto, async or sync", value);
		return 0;
	case K_PUSH:
		for (int i = HMIG_PUSH_SEQ; i <= HMIG_PUSH_OFF; i++)
			if (!strcmp(value, hmig_push_name((enum hmig_push)i))) {
				*(enum hmig_push *)field = (enum hmig_push)i;
				return 0;
			}
		return err_setf(errbuf, -EINVAL, "bad push order '%s': use seq, hot, near or off",
				value);
	default:
		break;
	}
	errno = 0;
	double v = strtod(value, &end);
	if (end == value || *end || errno || !isfinite(v) || v < k->min || v > k->max ||
	    (k->type != K_DOUBLE && v != floor(v)))
		return err_setf(errbuf, -EINVAL, "bad value for %s: '%s' (%s; %g to %g)",
				key, value, k->help, k->min, k->max);
	switch (k->type) {
	case K_U32: *(uint32_t *)field = (uint32_t)v; break;
	case K_U64: *(uint64_t *)field = (uint64_t)v; break;
	case K_INT: *(int *)field = (int)v; break;
	case K_DOUBLE: *(double *)field = v; break;
	default: break;
	}
	return 0;
}
