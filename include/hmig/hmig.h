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
	double byte_budget;             /* give up after sending this many guest sizes; 0 = none */
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
 * naming the key or the bad value; an unknown key's message lists every
 * knob.  cfg is unchanged on failure. */
int hmig_config_set(struct hmig_config *cfg, const char *key, const char *value,
		    char *errbuf);

/* Checks every knob against its range, the same ranges hmig_config_set
 * applies to text: 0, or -EINVAL with one line in errbuf (256 bytes) naming
 * the first bad knob, its range and its value ("bad value for batch_pages: 0
 * (pages per PAGES record; 1 to 1024)").  hmig_source_new and hmig_dest_new
 * call it first, so a config set directly in the struct cannot get past
 * them; call it yourself to learn of a bad value before opening a guest. */
int hmig_config_check(const struct hmig_config *cfg, char *errbuf);

const char *hmig_mode_name(enum hmig_mode m);
int hmig_mode_parse(const char *s, enum hmig_mode *m);
const char *hmig_reason_name(enum hmig_reason r);
const char *hmig_push_name(enum hmig_push p);

/* ------------------------------------------------ the pre-copy stop rule */

/* What the source knows when a pre-copy pass ends: the stop rule's input. */
struct hmig_pass_stats {
	uint32_t pass;          /* the pass that just ended, 0-based */
	uint64_t dirty_pages;   /* pages dirtied during it: the next pass's work */
	uint64_t pages_sent;    /* pages the pass sent (pass 0: every page) */
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

/* Asks a running migration to switch to post-copy (stop-and-copy in precopy
 * mode) after the current pass.  Safe from any thread or a signal handler. */
void hmig_source_force_switch(struct hmig_source *src);

/* Writes the report (DESIGN.md "The report") as JSON. */
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

/* The address actually bound ("127.0.0.1:4444"; names the port picked for :0). */
const char *hmig_dest_address(const struct hmig_dest *dst);

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
/* Records the oracle's verdict in the report ("ok", "mismatch", "skipped"). */
void hmig_dest_set_integrity(struct hmig_dest *dst, const char *integrity,
			     const char *detail);
const char *hmig_dest_error(const struct hmig_dest *dst);
/* Frees the context (NULL does nothing); the guest stays the caller's. */
void hmig_dest_free(struct hmig_dest *dst);

#ifdef __cplusplus
}
#endif

#endif
