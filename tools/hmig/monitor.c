#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "cmd.h"
#include "live.h"
#include "monitor.h"

/* A terminal's line is redrawn four times a second: fresh enough to watch,
 * and the engine's figures change every sample_ms (100) anyway.  A log
 * gets a line every 5 s: a minute's migration is a dozen lines. */
#define TTY_MS 250
#define PLAIN_MS 5000

static void show(struct monitor *m, bool last)
{
	struct hmig_status st;
	char line[320];
	struct winsize ws;

	if (m->t.src)
		hmig_source_status(m->t.src, &st, sizeof(st));
	else
		hmig_dest_status(m->t.dst, &st, sizeof(st));
	live_format(&st, m->t.src != NULL, line, sizeof(line));
	if (!m->tty) {
		fprintf(stderr, "%s: %s\n", m->who, line);
		return;
	}
	/* One screen line, or the terminal wraps it and '\r' no longer
	 * goes back to its start. */
	if (ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 1 &&
	    ws.ws_col <= sizeof(line))
		line[ws.ws_col - 1] = '\0';
	fprintf(stderr, "\r%s\033[K%s", line, last ? "\n" : "");
}

static void *run(void *arg)
{
	struct monitor *m = arg;
	int every = m->tty ? TTY_MS : PLAIN_MS;
	uint64_t next = mono_ns() + (uint64_t)every * 1000000ull;
	sigset_t all;

	/* Signals go to the main thread, whose handlers cancel or switch. */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, NULL);
	for (;;) {
		struct pollfd pfd[2 + CONTROL_CLIENTS];
		int n = 1, timeout = -1;

		pfd[0] = (struct pollfd){ .fd = m->wake, .events = POLLIN };
		if (m->ctl)
			n += control_pollfds(m->ctl, pfd + 1);
		if (m->progress) {
			uint64_t now = mono_ns();

			timeout = now >= next ? 0 : (int)((next - now) / 1000000ull) + 1;
		}
		int rc = poll(pfd, (nfds_t)n, timeout);
		if (rc < 0 && errno != EINTR)
			break;
		if (pfd[0].revents)
			break;
		if (rc > 0 && m->ctl)
			control_serve(m->ctl, pfd + 1, n - 1, &m->t);
		if (m->progress && mono_ns() >= next) {
			show(m, false);
			next += (uint64_t)every * 1000000ull;
		}
	}
	if (m->progress)
		show(m, true);
	return NULL;
}

int monitor_control_open(struct control *ctl, const char *path, bool quiet)
{
	char err[256];

	if (control_open(ctl, path, err) == 0)
		return 0;
	if (path) {
		die_msg("%s", err);
		return -1;
	}
	if (!quiet)
		die_msg("warning: no control socket, so no 'hmig status': %s", err);
	return 0;
}

int monitor_start(struct monitor *m, const struct control_target *t, struct control *ctl,
		  const char *who, bool progress)
{
	int rc;

	*m = (struct monitor){ .t = *t, .ctl = ctl && ctl->fd >= 0 ? ctl : NULL, .who = who,
			       .progress = progress, .tty = isatty(STDERR_FILENO) };
	if (!m->ctl && !progress)
		return 0;
	m->wake = eventfd(0, EFD_CLOEXEC);
	if (m->wake < 0)
		return -errno;
	if ((rc = pthread_create(&m->thread, NULL, run, m))) {
		close(m->wake);
		return -rc;
	}
	m->running = true;
	return 0;
}

void monitor_stop(struct monitor *m)
{
	uint64_t one = 1;

	if (m->running && write(m->wake, &one, sizeof(one)) == sizeof(one)) {
		pthread_join(m->thread, NULL);
		close(m->wake);
		m->running = false;
	}
	if (m->ctl && !m->running)
		control_close(m->ctl);
}
