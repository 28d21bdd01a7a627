/* The post-copy fault handler: one thread that waits on the guest's fault fd
 * (a vCPU blocked on a missing page) and on the urgent channel (a reply),
 * asks the source for each missing page once, and installs the replies.
 *
 * It owns the urgent channel; the page sets are the destination's `pages`
 * (engine/pages.h), which the bulk loop installs into at the same time.
 */
#ifndef HMIG_ENGINE_FAULT_H
#define HMIG_ENGINE_FAULT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "engine/engine.h"
#include "engine/pages.h"

struct fault_handler {
	struct pages *pages;
	struct hmig_guest *g;
	const struct hmig_guest_geometry *geo;
	struct net_chan *urgent;
	int io_timeout_ms;
	pthread_t thread;
	bool running;
	_Atomic bool quit;
	_Atomic bool exited;    /* the thread has ended (quit, all present, or rc) */
	int rc;                 /* why it stopped early, 0 otherwise */
	char err[ERR_LEN];
	struct rec_buf rx;
	uint64_t faults;        /* fault events read */
	uint64_t requests;      /* pfns requested */
	uint64_t asked_again;   /* ... of them, again after a lost link */
};

/* Starts the thread (again, after a lost link: then it first asks again
 * for what it had asked and never got).  0, or -errno with a line in err. */
int fault_start(struct fault_handler *fh, struct pages *pages, struct hmig_guest *g,
		const struct hmig_guest_geometry *geo, struct net_chan *urgent,
		int io_timeout_ms, char *err);

/* Stops it (if it runs) and returns why it had failed, 0 if it had not.
 * Safe to call twice. */
int fault_stop(struct fault_handler *fh);

#endif
