#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "guest/synth/workload.h"

/* ------------------------------------------------------------ randomness */

static inline uint64_t mix64(uint64_t x)
{
	/* splitmix64's finaliser: a bijection with full avalanche. */
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

/* The k-th random word of op `op` of vCPU `id`: counter-based, so replay and
 * the live run draw identical values without carrying RNG state. */
static inline uint64_t op_rand(uint64_t seed, uint32_t id, uint64_t op, unsigned k)
{
	return mix64(mix64(seed ^ ((uint64_t)(id + 1) << 40)) ^ mix64(op * 4 + k));
}

static inline double unit(uint64_t r)
{
	return (double)(r >> 11) * (1.0 / 9007199254740992.0); /* [0, 1) */
}

/* ------------------------------------------------------------- parsing */

struct wl_name {
	const char *name;
	enum wl_kind kind;
};

static const struct wl_name names[] = {
	{ "idle", WL_IDLE }, { "uniform", WL_UNIFORM }, { "zipf", WL_ZIPF },
	{ "seq", WL_SEQ },   { "read", WL_READ },       { "kv", WL_KV },
};

static int parse_num(const char *key, const char *val, double min, double max,
		     double *out, const char *spec, char *err)
{
	char *end;
	double v = strtod(val, &end);

	if (end == val || *end || !(v >= min && v <= max))
		return err_setf(err, -EINVAL,
				"bad workload '%s': %s=%s is not a number from %g to %g",
				spec, key, val, min, max);
	*out = v;
	return 0;
}

int wl_parse(const char *spec, struct wl_params *p, char *err)
{
	char buf[WL_SPEC_MAX];
	char *save = NULL, *name, *kv;
	double v;
	int rc;

	if (!spec || !*spec)
		spec = "idle";
	if (strlen(spec) >= sizeof(buf))
		return err_setf(err, -EINVAL, "workload spec is longer than %d characters",
				WL_SPEC_MAX - 1);
	memset(p, 0, sizeof(*p));
	snprintf(p->spec, sizeof(p->spec), "%s", spec);
	p->theta = 0.99;  /* YCSB's default skew */
	p->write_pct = 5; /* "read-mostly": one op in twenty writes */
	p->set_pct = 10;  /* a cache-like get/set mix */
	p->load = 0.5;    /* linear probing stays short at half load */
	p->kv_zipf = true;

	snprintf(buf, sizeof(buf), "%s", spec);
	name = strtok_r(buf, ":", &save);
	size_t i;
	for (i = 0; name && i < sizeof(names) / sizeof(names[0]); i++)
		if (!strcmp(name, names[i].name))
			break;
	if (!name || i == sizeof(names) / sizeof(names[0]))
		return err_setf(err, -EINVAL,
				"unknown workload '%s': use idle, uniform, zipf, seq, read or kv",
				name ? name : spec);
	p->kind = names[i].kind;

	while ((kv = strtok_r(NULL, ",", &save))) {
		char *eq = strchr(kv, '=');

		if (!eq)
			return err_setf(err, -EINVAL,
					"bad workload '%s': '%s' is not key=value", spec, kv);
		*eq = '\0';
		const char *key = kv, *val = eq + 1;

		if (!strcmp(key, "rate") && p->kind != WL_IDLE) {
			if ((rc = parse_num(key, val, 0, 1e9, &p->rate, spec, err)))
				return rc;
		} else if ((!strcmp(key, "s") || !strcmp(key, "theta")) &&
			   (p->kind == WL_ZIPF || p->kind == WL_KV)) {
			/* theta = 1 divides by zero in the sampler; 0 is uniform. */
			if ((rc = parse_num(key, val, 0.01, 0.999, &p->theta, spec, err)))
				return rc;
		} else if (!strcmp(key, "write_pct") && p->kind == WL_READ) {
			if ((rc = parse_num(key, val, 0, 100, &v, spec, err)))
				return rc;
			p->write_pct = (unsigned)v;
		} else if (!strcmp(key, "set_pct") && p->kind == WL_KV) {
			if ((rc = parse_num(key, val, 0, 100, &v, spec, err)))
				return rc;
			p->set_pct = (unsigned)v;
		} else if (!strcmp(key, "load") && p->kind == WL_KV) {
			if ((rc = parse_num(key, val, 0.01, 0.9, &p->load, spec, err)))
				return rc;
		} else if (!strcmp(key, "dist") && p->kind == WL_KV) {
			if (strcmp(val, "zipf") && strcmp(val, "uniform"))
				return err_setf(err, -EINVAL,
						"bad workload '%s': dist=%s (use zipf or uniform)",
						spec, val);
			p->kv_zipf = !strcmp(val, "zipf");
		} else {
			return err_setf(err, -EINVAL,
					"bad workload '%s': '%s' is not a parameter of %s (see 'hmig guest --help')",
					spec, key, names[i].name);
		}
	}
	return 0;
}

/* ---------------------------------------------------------------- zipf */

/* Exact partial sums up to this many terms; past it the tail is the
 * midpoint rule's integral of x^-theta from m + 1/2 to n + 1/2, whose error
 * is about theta / 24 * m^-(theta + 1): under 1e-7 absolute at m = 1000,
 * against a sum of at least 1.  Set-up is then some 20 us per vCPU whatever
 * the guest's size; the destination does it inside the downtime (vCPU
 * restore), where the exact sum of 262144 terms of a 1 GiB guest cost 2.2 ms.
 * Both sides run this same code, so their draws agree. */
#define ZETA_EXACT 1000

static double zeta(uint64_t n, double theta)
{
	uint64_t m = n < ZETA_EXACT ? n : ZETA_EXACT;
	double s = 0;

	for (uint64_t i = 1; i <= m; i++)
		s += pow((double)i, -theta);
	if (n > m)
		s += (pow((double)n + 0.5, 1 - theta) - pow((double)m + 0.5, 1 - theta)) /
		     (1 - theta);
	return s;
}

static void zipf_init(struct wl_zipf *z, uint64_t n, double theta)
{
	z->n = n ? n : 1;
	z->theta = theta;
	z->alpha = 1.0 / (1.0 - theta);
	z->zetan = zeta(z->n, theta);
	double zeta2 = zeta(2, theta);
	z->eta = (1 - pow(2.0 / (double)z->n, 1 - theta)) / (1 - zeta2 / z->zetan);
	z->half_pow_theta = 1 + pow(0.5, theta);
}

static uint64_t zipf_draw(const struct wl_zipf *z, double u)
{
	double uz = u * z->zetan;

	if (uz < 1)
		return 0;
	if (uz < z->half_pow_theta)
		return 1 < z->n ? 1 : 0;
	uint64_t r = (uint64_t)((double)z->n * pow(z->eta * u - z->eta + 1, z->alpha));
	return r < z->n ? r : z->n - 1;
}

/* Rank -> index: hot ranks scattered over the range instead of bunched at
 * its start.  r * P mod n is a bijection because P is prime and n < P. */
static uint64_t scatter(uint64_t rank, uint64_t n)
{
	return (uint64_t)(((unsigned __int128)rank * 2654435761u) % n);
}

/* ----------------------------------------------------------- vCPU view */

#define KV_SLOT 64
#define KV_SLOTS_PER_PAGE(ps) ((ps) / KV_SLOT - 1) /* slot 0 is the page header */

void wl_vcpu_init(struct wl_vcpu *w, const struct wl_params *p, uint64_t seed,
		  uint32_t id, uint32_t nvcpus, uint64_t npages, uint32_t page_size)
{
	memset(w, 0, sizeof(*w));
	w->p = p;
	w->seed = seed;
	w->id = id;
	w->lo = npages * id / nvcpus;
	w->hi = npages * (id + 1) / nvcpus;
	w->page_size = page_size;
	uint64_t owned = w->hi - w->lo;

	if (p->kind == WL_KV) {
		w->nslots = owned * KV_SLOTS_PER_PAGE(page_size);
		w->nkeys = (uint64_t)((double)w->nslots * p->load);
		if (!w->nkeys)
			w->nkeys = 1;
		if (p->kv_zipf && w->nkeys)
			zipf_init(&w->zipf, w->nkeys, p->theta);
	} else if (p->kind == WL_ZIPF && owned) {
		zipf_init(&w->zipf, owned, p->theta);
	}
}

void wl_op_decide(const struct wl_vcpu *w, uint64_t op, struct wl_op *out)
{
	uint64_t owned = w->hi - w->lo;
	uint64_t r0 = op_rand(w->seed, w->id, op, 0);

	out->key = 0;
	out->write = true;
	switch (w->p->kind) {
	case WL_IDLE:
		out->write = false;
		out->pfn = w->lo;
		break;
	case WL_UNIFORM:
		out->pfn = w->lo + r0 % owned;
		break;
	case WL_ZIPF:
		out->pfn = w->lo + scatter(zipf_draw(&w->zipf, unit(r0)), owned);
		break;
	case WL_SEQ:
		out->pfn = w->lo + op % owned;
		break;
	case WL_READ:
		out->pfn = w->lo + r0 % owned;
		out->write = op_rand(w->seed, w->id, op, 1) % 100 < w->p->write_pct;
		break;
	case WL_KV:
		out->pfn = w->lo;
		out->key = w->p->kv_zipf ? scatter(zipf_draw(&w->zipf, unit(r0)), w->nkeys)
					 : r0 % w->nkeys;
		out->write = op_rand(w->seed, w->id, op, 1) % 100 < w->p->set_pct;
		break;
	}
}

/* ---------------------------------------------------------- page stamps */

#define STAMP_MAGIC 0x484d494750414745ull /* "HMIGPAGE" */
#define WORD_STEP 0x9e3779b97f4a7c15ull

bool wl_fill_page(uint64_t seed, double fill, uint64_t pfn)
{
	if (fill >= 1.0)
		return true;
	return unit(mix64(seed ^ mix64(pfn ^ 0xf111ull))) < fill;
}

static inline uint64_t page_base(uint64_t seed, uint64_t pfn, uint32_t version)
{
	return mix64(seed ^ mix64(pfn) ^ ((uint64_t)version << 32));
}

/* Word 0 names the page, word 1 its version; the rest is an arithmetic
 * sequence from a (seed, pfn, version) hash, so two versions differ in every
 * word and generating a page costs about as much as memset. */
void wl_page_gen(void *page, uint32_t page_size, uint64_t seed, uint64_t pfn,
		 uint32_t version)
{
	uint64_t *w = page;
	size_t n = page_size / 8;

	if (!version) {
		memset(page, 0, page_size);
		return;
	}
	uint64_t b = page_base(seed, pfn, version);
	w[0] = STAMP_MAGIC ^ pfn;
	w[1] = version;
	for (size_t i = 2; i < n; i++)
		w[i] = b + i * WORD_STEP;
}

bool wl_page_check(const void *page, uint32_t page_size, uint64_t seed, uint64_t pfn,
		   uint32_t version)
{
	const uint64_t *w = page;
	size_t n = page_size / 8;

	if (!version)
		return w[0] == 0 && w[1] == 0 && w[n - 1] == 0;
	uint64_t b = page_base(seed, pfn, version);
	return w[0] == (STAMP_MAGIC ^ pfn) && w[1] == version && w[2] == b + 2 * WORD_STEP &&
	       w[n - 1] == b + (n - 1) * WORD_STEP;
}

long wl_page_diff(const void *page, uint32_t page_size, uint64_t seed, uint64_t pfn,
		  uint32_t version)
{
	uint64_t expect[page_size / 8];
	const uint8_t *a = page, *b = (const uint8_t *)expect;

	wl_page_gen(expect, page_size, seed, pfn, version);
	if (!memcmp(a, b, page_size))
		return -1;
	for (uint32_t i = 0; i < page_size; i++)
		if (a[i] != b[i])
			return i;
	return -1;
}

/* ------------------------------------------------------------------ kv */

/* A kv page: slot 0 = { magic ^ pfn, version, 0... }, slots 1..63 entries of
 * { key + 1 (0 = empty), version of the set, 48 bytes of value }.  A value is
 * derived from (seed, key, version), so a get can check it in place. */
struct kv_slot {
	uint64_t key1;
	uint64_t version;
	uint64_t value[6];
};

_Static_assert(sizeof(struct kv_slot) == KV_SLOT, "kv slot is 64 bytes");

static void kv_value(uint64_t *v, uint64_t seed, uint64_t key, uint64_t version)
{
	uint64_t b = mix64(seed ^ mix64(key ^ 0x6b76ull) ^ (version << 32));

	for (int i = 0; i < 6; i++)
		v[i] = b + (uint64_t)i * WORD_STEP;
}

static struct kv_slot *kv_slot_at(const struct wl_vcpu *w, uint8_t *base, uint64_t s,
				  uint64_t *pfn)
{
	uint64_t per = KV_SLOTS_PER_PAGE(w->page_size);
	uint64_t page = s / per;

	*pfn = w->lo + page;
	return (struct kv_slot *)(base + page * w->page_size) + 1 + s % per;
}

static void kv_header_set(const struct wl_vcpu *w, uint8_t *base, uint64_t pfn,
			  uint32_t version)
{
	struct kv_slot *h = (struct kv_slot *)(base + (pfn - w->lo) * w->page_size);

	h->key1 = STAMP_MAGIC ^ pfn;
	h->version = version;
}

static uint64_t kv_home(const struct wl_vcpu *w, uint64_t key)
{
	return mix64(w->seed ^ mix64(key + ((uint64_t)w->id << 48))) % w->nslots;
}

void wl_kv_fill(const struct wl_vcpu *w, uint8_t *base, uint32_t *versions)
{
	uint64_t pfn = w->lo;

	for (uint64_t p = w->lo; p < w->hi; p++) {
		versions[p] = 1;
		kv_header_set(w, base, p, 1);
	}
	/* Load <= 0.9 guarantees an empty slot within the probe. */
	for (uint64_t k = 0; k < w->nkeys; k++) {
		uint64_t s = kv_home(w, k);
		struct kv_slot *e;

		while ((e = kv_slot_at(w, base, s, &pfn))->key1)
			s = (s + 1) % w->nslots;
		e->key1 = k + 1;
		e->version = 1;
		kv_value(e->value, w->seed, k, 1);
	}
}

bool wl_kv_exec(const struct wl_vcpu *w, uint8_t *base, uint32_t *versions,
		const struct wl_op *op, uint64_t *bad_pfn)
{
	uint64_t s = kv_home(w, op->key), pfn = w->lo;
	struct kv_slot *e = NULL;
	uint64_t v[6];

	/* Probe.  Every page touched on the way is checked against the oracle's
	 * version, so a stale page is caught the moment a request reads it. */
	for (uint64_t n = 0; n < w->nslots; n++, s = (s + 1) % w->nslots) {
		e = kv_slot_at(w, base, s, &pfn);
		const struct kv_slot *h =
			(const struct kv_slot *)(base + (pfn - w->lo) * w->page_size);
		if (h->key1 != (STAMP_MAGIC ^ pfn) || h->version != versions[pfn]) {
			*bad_pfn = pfn;
			return false;
		}
		if (e->key1 == op->key + 1)
			break;
		if (!e->key1) { /* every key was inserted by the fill */
			*bad_pfn = pfn;
			return false;
		}
	}
	if (!e || e->key1 != op->key + 1) {
		*bad_pfn = pfn;
		return false;
	}
	kv_value(v, w->seed, op->key, e->version);
	if (memcmp(v, e->value, sizeof(v))) {
		*bad_pfn = pfn;
		return false;
	}
	if (op->write) {
		uint32_t ver = ++versions[pfn];

		e->version = ver;
		kv_value(e->value, w->seed, op->key, ver);
		kv_header_set(w, base, pfn, ver);
	}
	return true;
}
