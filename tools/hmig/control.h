/* The control socket of a running 'hmig send' or 'hmig recv' (docs/control.md):
 * a unix stream socket, owner-only, answering one JSON object per line as
 * QEMU's QMP does: {"execute": "status"} -> {"return": {...}}, or
 * {"error": "one line"}.  Commands: status, set-rate, switch, cancel.
 *
 * Where it lives: --control PATH, or by default DIR/PID.sock with DIR
 * $XDG_RUNTIME_DIR/hmig, else /run/hmig for root, else /tmp/hmig-UID, made
 * 0700 and refused when someone else owns it or may write to it.  A socket
 * appears at its path only once it listens (bound under a temporary name,
 * then linked), so a path that refuses a connection is stale: it is
 * removed, and a live one is never replaced.
 */
#ifndef HMIG_TOOLS_CONTROL_H
#define HMIG_TOOLS_CONTROL_H

#include <poll.h>
#include <stdbool.h>
#include <sys/types.h>

#include <hmig/hmig.h>
#include <jansson.h>

#define CONTROL_CLIENTS 8     /* connections served at once; more wait */
#define CONTROL_LINE 4096     /* a request longer than this is refused */
#define CONTROL_PATH 108      /* sun_path */

/* What the commands act on: one running side. */
struct control_target {
	struct hmig_source *src; /* one of the two */
	struct hmig_dest *dst;
	struct hmig_guest *guest; /* its backend's figures join the status
				   * (guest_report_extras), or NULL */
};

/* A connection: what it sent that is not yet a whole line. */
struct control_client {
	int fd;                    /* -1: free */
	size_t len;
	char buf[CONTROL_LINE];
};

struct control {
	int fd;                    /* listening; -1: none */
	char path[CONTROL_PATH];
	dev_t dev;                 /* the socket this run made, so that */
	ino_t ino;                 /* close removes it and nothing else */
	struct control_client clients[CONTROL_CLIENTS];
};

/* The default directory, made if missing and checked (owner-only); 0, or
 * -errno with one line in err (256 bytes). */
int control_dir(char *dir, size_t len, bool make, char *err);

/* Listens at path, or at the default path for this process when path is
 * NULL (removing the default directory's stale sockets first).  0, or
 * -errno with one line in err; c->fd is -1 until it succeeds. */
int control_open(struct control *c, const char *path, char *err);
/* Closes every connection and removes the socket if it is still ours. */
void control_close(struct control *c);

/* Fills pfd with what to poll (the listener, the connections); returns the
 * count, at most 1 + CONTROL_CLIENTS. */
int control_pollfds(struct control *c, struct pollfd *pfd);
/* Accepts, reads and answers what poll found ready in pfd[0..n). */
void control_serve(struct control *c, const struct pollfd *pfd, int n,
		   const struct control_target *t);

/* The answer to one request line: {"return": ...} or {"error": "..."}. */
json_t *control_answer(const char *line, size_t len, const struct control_target *t);

/* A status as its JSON object: the keys of docs/control.md, null for what
 * the side does not know. */
json_t *control_status_json(const struct hmig_status *st, bool source);

/* The client's whole call for the commands (cmd_status.c): sends request
 * (taking its reference) to `who`, prints an error reply or a failure as
 * one line and returns NULL, else the reply's "return".  *reply is the
 * reply to json_decref. */
const json_t *control_cmd(const char *who, json_t *request, json_t **reply);

/* The client: sends one request to the hmig whose pid or socket path `who`
 * names and returns its reply (*reply; json_decref it).  0, or -errno with
 * one line in err naming the socket and what to do. */
int control_call(const char *who, const json_t *request, json_t **reply, char *err);

#endif
