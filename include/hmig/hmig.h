/* hmig: live migration of a running guest's memory, pre-copy then post-copy.
 *
 * A migration is a source context (hmig_source) on the host the guest runs on
 * and a destination context (hmig_dest) where it will run.  Both take a
 * guest (include/hmig/guest.h) and a config of policy knobs; the source
 * connects, the destination listens.  Every function returns 0 (or a count)
 * or -errno, with a one-line message naming the problem and its remedy in the
 * context (hmig_source_error / hmig_dest_error).  The library never exits,
 * aborts or prints.
 */
#ifndef HMIG_HMIG_H
#define HMIG_HMIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <hmig/guest.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The values are also the HELLO record's wire values (docs/protocol.md):
 * never renumber them. */
enum hmig_mode {
	HMIG_MODE_PRECOPY = 0,  /* passes, then stop-and-copy; never post-copy */
	HMIG_MODE_POSTCOPY = 1, /* precopy_passes passes (1 by default), then post-copy */
	HMIG_MODE_HYBRID = 2,   /* bounded passes; post-copy unless they converge */
};

/* Why pre-copy stopped (the report's switchover.reason). */
enum hmig_reason {
	HMIG_REASON_NONE,
	HMIG_REASON_CONVERGED,   /* the dirty set fits the downtime target */
	HMIG_REASON_MAX_PASSES,  /* passes exhausted */
	HMIG_REASON_NO_PROGRESS, /* the dirty set did not shrink by min_progress */
	HMIG_REASON_BYTE_BUDGET, /* byte_budget spent */
	HMIG_REASON_FORCED,      /* operator, or switch_after_ms */
};

/* What the post-copy pusher sends first. */
enum hmig_push {
	HMIG_PUSH_SEQ,  /* pfn order */
	HMIG_PUSH_HOT,  /* pages dirtied most often during pre-copy first */
	HMIG_PUSH_NEAR, /* after each pull, the next near_pages pages first; else seq */
	HMIG_PUSH_OFF,  /* nothing: pure demand paging */
};

/* The knobs.  hmig_config_init sets the defaults; hmig_config_set takes
 * "-o key=value" strings (keys as the member names). */
struct hmig_config {
	enum hmig_mode mode;
	/* pre-copy stop rule (src/policy) */
	uint32_t max_passes;            /* passes including pass 0 (5, as Xen) */
	uint64_t dirty_threshold_pages; /* stop when at most this many are dirty (50, as Xen) */
	double downtime_target_ms;      /* stop when the rest fits this (300, as QEMU) */
	double byte_budget;             /* give up after sending this many guest sizes; 0 = none
					 * (hybrid: 1.3, see docs/architecture.md) */
	double min_progress;            /* give up when a pass shrinks the dirty set by less; 0 = off */
	uint32_t precopy_passes;        /* postcopy mode: passes before the switch (1:
					 * pass 0; 0 sends nothing first) */
	double switch_after_ms;         /* force the switch after this long; 0 = never */
	/* post-copy */
	enum hmig_push push;            /* pusher order (hot) */
	uint32_t near_pages;            /* push=near: pages after a pulled one (16) */
	/* transfer */
	uint32_t batch_pages;           /* pages per PAGES record on the bulk channel */
	uint64_t rate_limit_bps;        /* bulk bandwidth cap, bytes/s; 0 = none */
	int connect_timeout_ms;         /* how long the source retries connecting */
	int accept_timeout_ms;          /* how long the destination waits; 0 = forever */
	int io_timeout_ms;              /* a peer silent this long is dead */
	int recover_timeout_ms;         /* after the commit: how long both sides try to
					 * reconnect a lost link (600000; 0 = forever) */
	int sample_ms;                  /* a timeline row and a fresh status this often
					 * (100; 0: rows at events only) */
	enum hmig_dirty_mode dirty;     /* dirty logging mode to ask the backend for */
	/* destination; every value is valid, so not in -o's table (set the
	 * struct, or 'hmig recv --max-mem SIZE') */
	uint64_t max_mem;               /* refuse a guest larger than this many bytes,
					 * before allocating anything; 0 = this host's
					 * available memory (MemAvailable) */
	/* Transport security (README, "Trust model").  Exactly one of the three:
	 * hmig_source_new and hmig_dest_new refuse a config with none, or with
	 * both credentials.  Not knobs: set them in the struct; the strings
	 * must outlive the source or destination. */
	const char *tls_creds;          /* X.509 directory: ca-cert.pem, server-cert.pem,
					 * server-key.pem, client-cert.pem, client-key.pem */
	const char *tls_psk;            /* pre-shared key file, "identity:hexkey" */
	bool insecure;                  /* no TLS: plaintext, each page with a CRC32C;
					 * anyone who reaches the port can migrate in */
};

void hmig_config_init(struct hmig_config *cfg);

/* Sets one knob from text.  -EINVAL with a message in errbuf (256 bytes)
 * naming the key or the bad value.  cfg is unchanged on failure. */
int hmig_config_set(struct hmig_config *cfg, const char *key, const char *value,
		    char *errbuf);

/* Checks every knob against its range, the same ranges hmig_config_set
 * applies to text: 0, or -EINVAL with one line in errbuf (256 bytes) naming
 * the first bad knob, its range and its value ("bad value for batch_pages: 0
 * (pages per PAGES record; 1 to 1024)").  hmig_source_new and hmig_dest_new
 * call it first, so a config set directly in the struct cannot get past
 * them; call it yourself to learn of a bad value before opening a guest. */
int hmig_config_check(const struct hmig_config *cfg, char *errbuf);

/* The i-th knob's key (0, 1, ...), NULL past the last: to list them. */
const char *hmig_config_knob_name(unsigned i);

/* Which side a knob means something to: the source decides how the guest
 * moves (mode, passes, push order, cap, ...); the destination takes those
 * from the source and has knobs of its own (accept_timeout_ms). */
#define HMIG_SIDE_SOURCE 1u
#define HMIG_SIDE_DEST 2u

struct hmig_knob {
	const char *key;
	const char *help;   /* one line, no period */
	unsigned sides;     /* HMIG_SIDE_* */
	double min, max;    /* the range hmig_config_check applies */
};

/* The i-th knob (0, 1, ...), NULL past the last. */
const struct hmig_knob *hmig_config_knob(unsigned i);

/* A knob's value as text, as hmig_config_set takes it ("hybrid", "300",
 * "0.1").  0, -ENOENT for an unknown key, -ENOSPC when len is too short. */
int hmig_config_get(const struct hmig_config *cfg, const char *key, char *buf, size_t len);

/* Checks an address as hmig_source_run (connect: true) or hmig_dest_new
 * (connect: false) will take it, resolving a host name: 0; -EINVAL for one
 * that cannot be right (a bad form, a port above 65535, port 0 to connect
 * to); -EADDRNOTAVAIL for a host name that does not resolve; one line in
 * errbuf (256 bytes).  Call it to learn of a bad address before opening a
 * guest. */
int hmig_addr_check(const char *addr, bool connect, char *errbuf);

const char *hmig_mode_name(enum hmig_mode m);
int hmig_mode_parse(const char *s, enum hmig_mode *m);
const char *hmig_reason_name(enum hmig_reason r);
const char *hmig_push_name(enum hmig_push p);

/* ------------------------------------------------ the pre-copy stop rule */

/* What the source knows when a pre-copy pass ends, or (hybrid mode) while
 * it runs: the stop rule's input. */
struct hmig_pass_stats {
	uint32_t pass;          /* the pass, 0-based */
	bool mid_pass;          /* asked during the pass (hybrid mode, about every
				 * 100 ms): HMIG_DECIDE_PASS lets it go on, anything
				 * else ends it at once */
	uint64_t pages_planned; /* pages the pass set out to send (pass 0: all) */
	uint64_t pages_sent;    /* pages it has sent (at its end: all it sent) */
	uint64_t dirty_pages;   /* pages dirty now: the next pass's work so far */
	uint64_t redirtied;     /* of the pages this pass sent, how many the guest
				 * has written again since (at its end: dirty_pages) */
	double dirty_rate_pps;  /* pages newly dirtied per second (since the last
				 * look, or over the pass at its end) */
	uint64_t bytes_sent;    /* all bytes sent so far, every pass */
	uint64_t guest_bytes;   /* npages * page_size */
	uint32_t page_size;
	double bandwidth_bps;   /* bytes/s measured over this pass; 0 if unknown */
	double elapsed_ms;      /* since the migration started */
	bool operator_forced;   /* the operator asked for the switch */
};

enum hmig_decision {
	HMIG_DECIDE_PASS,     /* run another pre-copy pass */
	HMIG_DECIDE_STOPCOPY, /* pause and send the rest before the destination resumes */
	HMIG_DECIDE_POSTCOPY, /* pause, move the vCPUs, pull the rest after the resume */
};

/* A pre-copy stop rule, in the manner of Xen's precopy_policy callback: the
 * source calls it once after every pass, on its own thread, with the knobs
 * and that pass's figures, and does what it returns.  Unless it returns
 * HMIG_DECIDE_PASS it sets *reason (the report's switchover.reason).  It
 * should be pure (no I/O, no clock: the figures carry the time) and fast:
 * the guest keeps running while it decides.  In precopy mode a POSTCOPY
 * answer is taken as STOPCOPY: the mode is the operator's promise that the
 * guest never runs with pages missing. */
typedef enum hmig_decision (*hmig_stop_rule)(const struct hmig_config *cfg,
					     const struct hmig_pass_stats *pass,
					     enum hmig_reason *reason, void *data);

/* The built-in rule (docs/architecture.md, "The policy"); `data` is unused.
 * A custom rule may call it for the cases it does not want to decide. */
enum hmig_decision hmig_stop_rule_default(const struct hmig_config *cfg,
					  const struct hmig_pass_stats *pass,
					  enum hmig_reason *reason, void *data);

/* ------------------------------------------------------------ status */

/* A running migration's figures, from any thread at any time, as QEMU's
 * query-migrate: cumulative counts exact at the call, rates over the
 * engine's latest sample (sample_ms; NAN before the first one).  A figure a
 * side does not know is NAN, or HMIG_UNKNOWN for counts.  The struct only
 * grows, at its end: pass sizeof(struct hmig_status) as `size`, and a
 * library older than your header fills what it knows and zeroes the rest. */
#define HMIG_UNKNOWN UINT64_MAX

struct hmig_status {
	char phase[24];          /* the state: "setup", "precopy", "settle",
				  * "switchover", "stopcopy", "postcopy",
				  * "recovering", "done", "failed", ...
				  * (docs/report.md lists each side's); a
				  * destination is in "setup" until a source
				  * has connected */
	bool finished;           /* the run has returned */
	uint32_t pass;           /* source, pre-copy: the pass running, or the
				  * last (0 on the destination) */
	double elapsed_ms;       /* since the migration started (0 before) */
	uint64_t guest_pages;    /* pages that move */
	uint32_t page_size;
	uint64_t pass_pages;     /* source, pre-copy: pages the pass sends */
	uint64_t pass_sent;      /* ... of which sent */
	uint64_t pages_present;  /* destination: pages installed */
	uint64_t pages_left;     /* after the switch: pages the destination
				  * lacks (source: still to push or pull) */
	uint64_t bytes_bulk;     /* sent (source) / received (destination) */
	uint64_t bytes_urgent;
	double bulk_bps;         /* bytes/s */
	double urgent_bps;
	double dirty_rate_pps;   /* source: pages dirtied per second, last look */
	uint64_t pages_pulled;   /* post-copy: pulled (served / received) */
	double pulls_per_s;
	double pull_latency_us;  /* destination: mean, fault to page, last sample */
	double guest_ops_per_s;  /* where the guest runs, else NAN */
	double downtime_ms;      /* NAN until the destination resumed */
	uint64_t rate_limit_bps; /* source: the bulk cap now (0 = none) */
	double eta_ms;           /* source, pre-copy: the pass's rest at bulk_bps */
};

/* ------------------------------------------------------------ source */

struct hmig_source;

/* The guest must be running (ops->run called).  The source does not own it:
 * the caller destroys it after hmig_source_free.  cfg is checked first
 * (hmig_config_check): a bad one is -EINVAL before the guest is looked at. */
int hmig_source_new(const struct hmig_config *cfg, struct hmig_guest *guest,
		    struct hmig_source **out, char *errbuf);

/* Migrates the guest to the destination listening at addr ("HOST:PORT",
 * "[V6]:PORT", "unix:PATH").  Returns when the destination has resumed the
 * guest and holds every page (0), or on failure (-errno).  A failure before
 * the destination confirmed the resume leaves the source guest running:
 * nothing is lost. */
int hmig_source_run(struct hmig_source *src, const char *addr);

/* Replaces the pre-copy stop rule for this source; NULL restores the
 * built-in one.  Call it before hmig_source_run.  `data` is passed to every
 * call and must outlive the run. */
void hmig_source_set_stop_rule(struct hmig_source *src, hmig_stop_rule rule, void *data);

/* After hmig_source_run returned 0: waits up to timeout_ms for the
 * destination oracle's verdict (hmig_dest_set_integrity there), puts it in
 * the report and closes the connection.  0 when it said ok or skipped, or
 * closed without one (no oracle); -EBADMSG naming the mismatch; -ETIMEDOUT
 * when nothing came in time.  Optional: without it, hmig_source_free
 * closes the connection. */
int hmig_source_wait_verdict(struct hmig_source *src, int timeout_ms);

/* Cancels the migration before the commit: the source stops, tells the
 * destination (which frees what it holds), resumes the guest here, and
 * hmig_source_run returns -ECANCELED.  After the commit the guest belongs to
 * the destination and this returns -EBUSY, changing nothing.  Safe from any
 * thread or a signal handler. */
int hmig_source_cancel(struct hmig_source *src);

/* The figures of this migration now (struct hmig_status).  0, or -EINVAL
 * when size is 0. */
int hmig_source_status(struct hmig_source *src, struct hmig_status *st, size_t size);

/* Asks a running migration to switch to post-copy (stop-and-copy in precopy
 * mode) after the current pass.  Safe from any thread or a signal handler. */
void hmig_source_force_switch(struct hmig_source *src);

/* Changes the bulk channel's bandwidth cap of a running migration (bytes/s,
 * 0 = none), as QEMU's migrate-set-parameters max-bandwidth: it applies
 * from the next 64 KiB sent, and to the channels of a recovered link too.
 * Safe from any thread. */
void hmig_source_set_rate(struct hmig_source *src, uint64_t bytes_per_s);

/* Records the guest's ops/s before the migration, measured by the caller
 * (the report's guest_ops_per_s_before). */
void hmig_source_set_ops_before(struct hmig_source *src, double ops_per_s);

/* Writes the report (docs/report.md) as JSON. */
int hmig_source_report(struct hmig_source *src, FILE *f);
const char *hmig_source_error(const struct hmig_source *src);
/* Frees the context (NULL does nothing); the guest stays the caller's. */
void hmig_source_free(struct hmig_source *src);

/* ------------------------------------------------------- destination */

struct hmig_dest;

/* The guest must be a fresh destination guest, from a backend's _open_dest
 * opener (include/hmig/guest.h).  cfg is checked first (hmig_config_check):
 * a bad one is -EINVAL before the guest or the address is used.  Then binds
 * the address at once, so the caller learns of "address in use" before
 * anything else. */
int hmig_dest_new(const struct hmig_config *cfg, struct hmig_guest *guest,
		  const char *listen_addr, struct hmig_dest **out, char *errbuf);

/* Accepts one migration and runs it to the end: returns 0 when the guest
 * runs here with every page present, -errno on failure. */
int hmig_dest_run(struct hmig_dest *dst);

/* Cancels the migration before this side said LOADED (it holds what the
 * guest needs to start): the destination tells the source, which resumes
 * its guest, frees what it holds, and hmig_dest_run returns -ECANCELED.
 * After LOADED the source may have committed, so the guest is kept here and
 * this returns -EBUSY.  Safe from any thread or a signal handler. */
int hmig_dest_cancel(struct hmig_dest *dst);

/* The address actually bound ("127.0.0.1:4444"; names the port picked for :0). */
const char *hmig_dest_address(const struct hmig_dest *dst);

/* The figures of this migration now (struct hmig_status). */
int hmig_dest_status(struct hmig_dest *dst, struct hmig_status *st, size_t size);

int hmig_dest_report(struct hmig_dest *dst, FILE *f);

/* Called once for every connection the destination closes without letting
 * it in (no or wrong credentials, a plaintext peer where TLS is required, a
 * handshake that never finishes, not hmig at all), from hmig_dest_run's
 * thread: `from` is the peer's address, `why` one line (escaped).  The
 * destination keeps waiting for its source.  The library records each in
 * the report (rejected_connections); printing is the caller's business.
 * Set it before hmig_dest_run; NULL removes it. */
typedef void (*hmig_reject_fn)(void *data, const char *from, const char *why);
void hmig_dest_set_reject_hook(struct hmig_dest *dst, hmig_reject_fn fn, void *data);
/* Records the guest's ops/s after the resume, measured by the caller. */
void hmig_dest_set_ops_after(struct hmig_dest *dst, double ops_per_s);
/* Records the oracle's verdict in the report ("ok", "mismatch", "skipped"),
 * and, after a successful hmig_dest_run, sends it to the source (which
 * waits for it up to io_timeout_ms, so that its exit status tells the
 * truth) and closes the connection. */
void hmig_dest_set_integrity(struct hmig_dest *dst, const char *integrity,
			     const char *detail);
const char *hmig_dest_error(const struct hmig_dest *dst);
/* Frees the context (NULL does nothing); the guest stays the caller's. */
void hmig_dest_free(struct hmig_dest *dst);

#ifdef __cplusplus
}
#endif

#endif
