/* The destination context, shared by dest.c (the bulk record loop) and
 * fault.c (the post-copy fault handler). */
#ifndef HMIG_ENGINE_DEST_H
#define HMIG_ENGINE_DEST_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <hmig/hmig.h>

#include "engine/engine.h"
#include "stats/hist.h"

/* How a page arrived, for the report. */
enum via { VIA_PASS, VIA_PUSH, VIA_PULL };

/* The fault handler's state.  It owns the urgent channel; everything it
 * shares with the bulk loop is under hmig_dest.lock. */
struct fault_handler {
	pthread_t thread;
	bool running;
	_Atomic bool quit;
	int rc;                 /* why it stopped early, 0 otherwise */
	char err[ERR_LEN];
	struct rec_buf rx;
	uint64_t *requested;    /* asked of the source once; owned by the thread */
	uint64_t faults;        /* fault events read */
	uint64_t requests;      /* pfns requested */
};

struct hmig_dest {
	struct hmig_config cfg;
	struct hmig_guest *g;
	struct hmig_guest_geometry geo;
	int state;
	struct net_listener listener;
	struct net_pair net;
	struct rec_buf rx;
	uint64_t *stale;        /* the stale set, as the source sent it */
	bool vcpus_restored, postcopy, source_done, started;
	uint64_t t0, t_switch, t_resume, t_complete;
	uint64_t bulk_at_resume; /* bulk bytes received when the guest resumed */
	uint64_t ops_at_resume;  /* guest ops when it resumed */
	uint64_t dropped_early;  /* pages DIRTY made missing before the switchover */
	uint64_t dropped_late;   /* ... and STALE, inside the downtime */
	uint64_t syncs;          /* SYNC records answered */
	double ops_postcopy;     /* guest ops/s from resume to complete */

	/* Under lock: the page sets and what installs measure. */
	pthread_mutex_t lock;
	pthread_cond_t all_present;
	uint64_t *present;      /* pages installed */
	uint64_t npresent;
	uint64_t installs, duplicates, pulled, pushed;
	uint64_t *t_fault;      /* first unserved fault on the page, ns; 0 none */
	uint32_t *waiters;      /* fault events waiting on the page */
	struct stats_hist fault_lat; /* fault read -> page installed, ns */
	double blocktime_ns;

	struct fault_handler fh;
	struct stats_report rep;
	char err[ERR_LEN];
};

/* Installs n pages from pfn (data NULL: zero pages), under the lock; keeps
 * the page sets and the fault figures.  Any thread. */
int dest_install(struct hmig_dest *d, uint64_t pfn, uint32_t n, const void *data,
		 enum via via, char *err);

/* Installs every run of a PAGES or ZERO record. */
int dest_install_record(struct hmig_dest *d, const struct proto_hdr *h, const void *body,
			enum via via, char *err);

/* Starts / stops the post-copy fault handler thread.  fault_stop returns
 * the handler's error, if it failed. */
int fault_start(struct hmig_dest *d);
int fault_stop(struct hmig_dest *d);

#endif
