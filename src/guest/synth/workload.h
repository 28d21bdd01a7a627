/* Synth workloads: what a vCPU does with guest memory, op by op.
 *
 * Everything here is a pure function of (seed, vCPU, op index): the same op
 * index always picks the same page and writes the same bytes.  That is what
 * makes the oracle possible: verify replays the op sequence with no migration
 * and compares byte for byte.  The RNG is counter-based (its state is the op
 * index), so a vCPU's whole state is its cursor and counters.
 *
 * Page workloads (uniform, zipf, seq, read) stamp whole pages: a write of page
 * p at version v fills it with page_gen(seed, p, v), so the final memory is
 * determined by each page's last version.  kv keeps a hash table in guest
 * memory (64-byte slots, 63 per page after a page header), whose final
 * content depends on the history of sets: verify replays it into scratch
 * memory.
 */
#ifndef HMIG_GUEST_SYNTH_WORKLOAD_H
#define HMIG_GUEST_SYNTH_WORKLOAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum wl_kind { WL_IDLE, WL_UNIFORM, WL_ZIPF, WL_SEQ, WL_READ, WL_KV };

/* Longest workload spec carried in the vCPU state. */
#define WL_SPEC_MAX 128

struct wl_params {
	enum wl_kind kind;
	char spec[WL_SPEC_MAX]; /* as given, for reports and the vCPU state */
	double rate;            /* ops/s over all vCPUs; 0 = unthrottled */
	double theta;           /* zipf skew (zipf, kv with dist=zipf) */
	unsigned write_pct;     /* read: % of ops that write */
	unsigned set_pct;       /* kv: % of requests that are sets */
	double load;            /* kv: keys / slots */
	bool kv_zipf;           /* kv: key popularity zipf (else uniform) */
};

/* Parses "name[:key=value,...]".  0, or -EINVAL with a message naming the
 * bad part in err (ERR_LEN bytes). */
int wl_parse(const char *spec, struct wl_params *p, char *err);

/* Zipf sampler over 0..n-1 (YCSB's method: constant time per draw after an
 * O(min(n, 1e6)) set-up). */
struct wl_zipf {
	uint64_t n;
	double theta, alpha, zetan, eta, half_pow_theta;
};

/* One vCPU's fixed view of its workload: which pages it owns, derived
 * constants.  Built identically on source, destination and in verify. */
struct wl_vcpu {
	const struct wl_params *p;
	uint64_t seed;
	uint32_t id;
	uint64_t lo, hi;        /* owned pfns [lo, hi) */
	uint32_t page_size;
	struct wl_zipf zipf;    /* over owned pages, or over keys for kv */
	uint64_t nslots, nkeys; /* kv */
};

void wl_vcpu_init(struct wl_vcpu *w, const struct wl_params *p, uint64_t seed,
		  uint32_t id, uint32_t nvcpus, uint64_t npages, uint32_t page_size);

/* What op `op` of this vCPU does.  For kv, `pfn` is unused and `key` set. */
struct wl_op {
	bool write;
	uint64_t pfn;
	uint64_t key;
};

void wl_op_decide(const struct wl_vcpu *w, uint64_t op, struct wl_op *out);

/* Whether the fill writes page pfn (fraction `fill` of pages, scattered). */
bool wl_fill_page(uint64_t seed, double fill, uint64_t pfn);

/* Page content for (pfn, version): version 0 is all zeros. */
void wl_page_gen(void *page, uint32_t page_size, uint64_t seed, uint64_t pfn,
		 uint32_t version);

/* Cheap check of a few stamped words (the read path). */
bool wl_page_check(const void *page, uint32_t page_size, uint64_t seed, uint64_t pfn,
		   uint32_t version);

/* Full comparison: the offset of the first differing byte, or -1. */
long wl_page_diff(const void *page, uint32_t page_size, uint64_t seed, uint64_t pfn,
		  uint32_t version);

/* ------------------------------------------------------------------ kv */

/* Builds the vCPU's table in `base` (its owned pages, zeroed): headers and
 * the fill's keys.  Sets versions[] of its pages to 1. */
void wl_kv_fill(const struct wl_vcpu *w, uint8_t *base, uint32_t *versions);

/* Executes a get (write=false) or set on the table at `base` (owned pages).
 * versions[] is indexed by absolute pfn.  A set bumps the page's version.
 * Returns true when everything read matched the oracle's expectations; on
 * false *bad_pfn names the page. */
bool wl_kv_exec(const struct wl_vcpu *w, uint8_t *base, uint32_t *versions,
		const struct wl_op *op, uint64_t *bad_pfn);

#endif
