#include <math.h>
#include <stdio.h>
#include <string.h>

#include "live.h"

#define MIB ((double)(1 << 20))

/* A figure or "-", in one of the caller's buffers. */
static const char *fig(char *b, size_t n, double v, const char *fmt)
{
	if (!isfinite(v))
		return "-";
	snprintf(b, n, fmt, v);
	return b;
}

/* 950, 20.1k, 1.2M: a rate that keeps the line short. */
static const char *rate(char *b, size_t n, double v)
{
	if (!isfinite(v))
		return "-";
	if (v >= 1e6)
		snprintf(b, n, "%.1fM", v / 1e6);
	else if (v >= 1e4)
		snprintf(b, n, "%.1fk", v / 1e3);
	else
		snprintf(b, n, "%.0f", v);
	return b;
}

static bool one_of(const char *phase, const char *const *list)
{
	for (; *list; list++)
		if (!strcmp(phase, *list))
			return true;
	return false;
}

/* Pages the destination holds, in percent: its own count, or what the
 * source has left to send once it knows (after the switch). */
static double present_pct(const struct hmig_status *st)
{
	if (!st->guest_pages)
		return NAN;
	if (st->pages_present != HMIG_UNKNOWN)
		return 100.0 * (double)st->pages_present / (double)st->guest_pages;
	if (st->pages_left != HMIG_UNKNOWN && st->pages_left <= st->guest_pages)
		return 100.0 * (double)(st->guest_pages - st->pages_left) / (double)st->guest_pages;
	return NAN;
}

void live_format(const struct hmig_status *st, bool source, char *buf, size_t len)
{
	static const char *const before[] = { "precopy", "settle", "receiving", NULL };
	char a[24], b[24], c[24], d[24];
	double moved = (double)(st->bytes_bulk + st->bytes_urgent) / MIB;
	int n = snprintf(buf, len, "%6.1f s  %s", st->elapsed_ms / 1e3, st->phase);

	if (n < 0 || (size_t)n >= len)
		return;
	buf += n;
	len -= (size_t)n;
	if (st->finished) {
		snprintf(buf, len, ": %.1f MiB %s", moved, source ? "sent" : "received");
	} else if (!strcmp(st->phase, "setup")) {
		snprintf(buf, len, source ? ": the guest warms up, then hmig connects"
					  : ": waiting for a source");
	} else if (one_of(st->phase, before) && source) {
		double pass_pct = st->pass_pages ? 100.0 * (double)st->pass_sent /
							   (double)st->pass_pages : NAN;

		snprintf(buf, len, " pass %u: %.1f MiB sent, pass %s done, dirty %s pages/s, "
			 "pass ETA %s, %s MiB/s", st->pass, moved,
			 fig(a, sizeof(a), pass_pct, "%.0f%%"),
			 rate(b, sizeof(b), st->dirty_rate_pps),
			 fig(c, sizeof(c), st->eta_ms / 1e3, "%.1f s"),
			 fig(d, sizeof(d), st->bulk_bps / MIB, "%.1f"));
	} else if (one_of(st->phase, before)) {
		snprintf(buf, len, ": %.1f MiB received, %s present, %s MiB/s", moved, fig(a, sizeof(a), present_pct(st), "%.1f%%"),
			 fig(b, sizeof(b), st->bulk_bps / MIB, "%.1f"));
	} else {
		/* After the switch: what is there, what is pulled (the
		 * destination times the pulls), what is pushed. */
		c[0] = '\0';
		if (isfinite(st->pull_latency_us))
			snprintf(c, sizeof(c), " (%.0f us)", st->pull_latency_us);
		snprintf(buf, len, ": %s present, %s pulls/s%s, push %s MiB/s, %.1f MiB %s",
			 fig(a, sizeof(a), present_pct(st), "%.1f%%"),
			 rate(b, sizeof(b), st->pulls_per_s), c,
			 fig(d, sizeof(d), st->bulk_bps / MIB, "%.1f"), moved,
			 source ? "sent" : "received");
	}
}
