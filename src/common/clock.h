/* Monotonic time in the units the report uses. */
#ifndef HMIG_COMMON_CLOCK_H
#define HMIG_COMMON_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline uint64_t clock_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Wall-clock time (CLOCK_REALTIME), ns since the epoch: for what two hosts
 * compare, meaningful only as far as their clocks are synchronised. */
static inline uint64_t clock_wall_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static inline double clock_ms(uint64_t ns)
{
	return (double)ns / 1e6;
}

#endif
