/* The threads a blocked vCPU waits for: the destination's fault handler and
 * the source's urgent server. */
#ifndef HMIG_COMMON_PRIO_H
#define HMIG_COMMON_PRIO_H

#include <pthread.h>
#include <sched.h>
#include <sys/resource.h>
#include <unistd.h>

/* The calling thread gets the lowest real-time priority (SCHED_FIFO 1) when
 * allowed (root or CAP_SYS_NICE), else nice -10 when allowed, else stays as
 * it is.  These threads sleep until a fault or a request comes and then do
 * a few microseconds of work; under the fair scheduler a wake-up could wait
 * for the running vCPU's or the bulk loop's slice (the p99 tails of a pull
 * were milliseconds on two cores).  Real-time, they preempt at once: the
 * tails went, at the price of the bulk loop they interrupt (measured in
 * docs/benchmarks.md, issue 11).  The kernel's real-time throttling (95% of
 * each second by default) bounds what a runaway thread could take.  Returns
 * 2 for real-time, 1 for nice, 0 for neither. */
static inline int prio_urgent_thread(void)
{
	struct sched_param sp = { .sched_priority = 1 };

	if (pthread_setschedparam(pthread_self(), SCHED_FIFO, &sp) == 0)
		return 2;
	return setpriority(PRIO_PROCESS, (id_t)gettid(), -10) == 0;
}

#endif
