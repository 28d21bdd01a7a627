/* The CLI's thread beside a running migration: it serves the control
 * socket (control.h) and prints the live progress line (live.h), reading
 * the library's status from here, so the library never prints. */
#ifndef HMIG_TOOLS_MONITOR_H
#define HMIG_TOOLS_MONITOR_H

#include <pthread.h>
#include <stdbool.h>

#include "control.h"

struct monitor {
	struct control_target t;
	struct control *ctl;   /* served when its fd is open */
	const char *who;       /* "hmig send": the plain lines' prefix */
	bool progress;         /* print the progress line */
	bool tty;              /* stderr is a terminal: one '\r'-updated line */
	int wake;              /* eventfd: stop */
	pthread_t thread;
	bool running;
};

/* Opens the control socket: at path (--control), or at the default path
 * when path is NULL.  0; or, for a path given, prints why not and returns
 * -1 (bad usage); a default path that fails only costs the status queries:
 * one warning line unless quiet, and 0 with ctl->fd -1. */
int monitor_control_open(struct control *ctl, const char *path, bool quiet);

/* Starts the thread for t; progress says whether it prints.  0, or -errno
 * (the migration then runs without it, silently). */
int monitor_start(struct monitor *m, const struct control_target *t, struct control *ctl,
		  const char *who, bool progress);
/* Stops it: the progress line, if any, ends with the final figures and a
 * newline, and the control socket closes (a status asked after the
 * migration is told nothing answers, rather than left waiting).  Does
 * nothing when it did not start. */
void monitor_stop(struct monitor *m);

#endif
