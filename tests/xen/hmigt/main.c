/* hmigt: a deterministic PVH test guest for hmig's Xen backend.
 *
 * It fills its memory with stamps a checker can predict, then runs ops (page
 * reads and writes chosen by a counter-based RNG), checking every page it
 * touches and reporting progress through port 0xe9.  What it writes where is
 * specified in src/guest/xen/hmigt_layout.h, which a checker in dom0 includes.
 *
 * After boot it makes no hypercall and takes no interrupt (IF stays 0): only
 * plain memory accesses, RDTSC, PAUSE and `outb` to port 0xe9, which Xen
 * handles without touching guest memory.  That keeps it migratable by a
 * backend that carries only memory and the HVM context, and safe under
 * post-copy, where a hypercall whose buffer is not yet present would fail.
 *
 * Command line (the xl config's cmdline=, words key=value, numbers decimal
 * or 0x hex):
 *
 *   seed=N      workload seed                                       (1)
 *   rate=N      ops per second, paced by the TSC; 0 = flat out      (2000)
 *   write=P     percent of ops that write (the rest read)           (75)
 *   fill=P      percent of pages stamped at boot (the rest zero)    (100)
 *   pages=N     use at most N data pages                            (all)
 *   hot=N       the first N pages are a hot set ...                 (0: none)
 *   hotpct=P    ... that gets P percent of the ops                  (90)
 *   report=MS   a progress line every MS milliseconds               (1000)
 *   stall=MS    report every gap of at least MS between two turns
 *               of the main loop (the vCPU did not run)             (200)
 *   die=MS      triple-fault MS milliseconds after the run began,
 *               as a crashed guest would (the suite's dying source) (0: never)
 *
 * Pacing is by TSC, not by iteration counts: under nested TCG the speed of a
 * loop varies 2-5x with the host's load, so a count says nothing about time.
 * The TSC rate comes from Xen's CPUID leaf (guest TSC kHz).  The config must
 * set tsc_mode="native": with an emulated TSC, QEMU's TCG mis-reports RDTSCP
 * exits and Xen injects #GP (FEASIBILITY.md, problem 3); hmigt itself only
 * uses RDTSC.
 */
#include <stddef.h>
#include <stdint.h>

#include "hmigt_layout.h"

#define MIB (1024u * 1024u)
#define HMIGT_DEBUG_PORT 0xe9
#define MAX_VIOLATION_LINES 8 /* then only ctl->violations counts */

/* struct hvm_start_info and its memory map, from Xen's public
 * arch-x86/hvm/start_info.h (ABI, re-declared: the guest needs no Xen
 * headers). */
#define START_INFO_MAGIC 0x336ec578u
struct start_info {
	uint32_t magic;
	uint32_t version;
	uint32_t flags;
	uint32_t nr_modules;
	uint64_t modlist_paddr;
	uint64_t cmdline_paddr;
	uint64_t rsdp_paddr;
	uint64_t memmap_paddr; /* version >= 1 */
	uint32_t memmap_entries;
	uint32_t reserved;
} __attribute__((packed));

struct memmap_entry {
	uint64_t addr;
	uint64_t size;
	uint32_t type; /* 1 = RAM */
	uint32_t reserved;
} __attribute__((packed));

#define CTL ((volatile struct hmigt_ctl *)(HMIGT_CTL_GFN * HMIGT_PAGE_SIZE))
#define TABLE ((volatile uint32_t *)(HMIGT_TABLE_GFN * HMIGT_PAGE_SIZE))

static inline volatile uint32_t *data_page(uint32_t p)
{
	return (volatile uint32_t *)((HMIGT_DATA_GFN + p) * HMIGT_PAGE_SIZE);
}

/* ---------------------------------------------------------------- CPU */

static inline void outb(uint16_t port, uint8_t v)
{
	__asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port));
}

static inline uint64_t rdtsc(void)
{
	uint32_t lo, hi;

	__asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return (uint64_t)hi << 32 | lo;
}

static inline void cpuid(uint32_t leaf, uint32_t sub, uint32_t r[4])
{
	__asm__ volatile("cpuid" : "=a"(r[0]), "=b"(r[1]), "=c"(r[2]), "=d"(r[3])
			 : "a"(leaf), "c"(sub));
}

static inline void barrier(void)
{
	__asm__ volatile("" : : : "memory");
}

/* One 8-byte store that a pause cannot split: an i386 uint64_t store is two
 * 32-bit stores, and a checker reading ops_done between them would see a
 * counter off by 2^32.  cmpxchg8b writes all 8 bytes in one instruction. */
static void store64(volatile uint64_t *p, uint64_t v)
{
	uint32_t lo = ((volatile uint32_t *)p)[0], hi = ((volatile uint32_t *)p)[1];

	__asm__ volatile("1: lock cmpxchg8b %0\n\tjnz 1b"
			 : "+m"(*p), "+a"(lo), "+d"(hi)
			 : "b"((uint32_t)v), "c"((uint32_t)(v >> 32))
			 : "memory", "cc");
}

/* 64-by-32 division with two divl: the high word first, its remainder then
 * heads the low word's dividend, so neither step overflows.  (gcc would call
 * libgcc's __udivdi3, which a freestanding guest does not have.) */
static uint64_t udiv64(uint64_t n, uint32_t d)
{
	uint32_t hi = (uint32_t)(n >> 32), lo = (uint32_t)n, qhi, qlo, r;

	__asm__("divl %4" : "=a"(qhi), "=d"(r) : "a"(hi), "d"(0u), "rm"(d));
	__asm__("divl %4" : "=a"(qlo), "=d"(r) : "a"(lo), "d"(r), "rm"(d));
	return (uint64_t)qhi << 32 | qlo;
}

/* ---------------------------------------------------------------- console */

/* Xen's port 0xe9 handler collects a line per domain and prints it with the
 * "(dN)" prefix at '\n'; every outb is a VM exit, so lines stay short and rare. */
static void putc_e9(char c)
{
	outb(HMIGT_DEBUG_PORT, (uint8_t)c);
}

static void puts_e9(const char *s)
{
	while (*s)
		putc_e9(*s++);
}

static void putu(uint64_t v)
{
	char buf[21];
	int i = 20;

	buf[i] = 0;
	do {
		uint64_t q = udiv64(v, 10);

		buf[--i] = (char)('0' + (v - q * 10));
		v = q;
	} while (v);
	puts_e9(buf + i);
}

static void putx(uint64_t v)
{
	int shift = 60;

	puts_e9("0x");
	while (shift > 0 && !((v >> shift) & 0xf))
		shift -= 4;
	for (; shift >= 0; shift -= 4)
		putc_e9("0123456789abcdef"[(v >> shift) & 0xf]);
}

static void put_kv(const char *key, uint64_t v)
{
	putc_e9(' ');
	puts_e9(key);
	putc_e9('=');
	putu(v);
}

/* ---------------------------------------------------------------- setup */

struct options {
	uint64_t seed;
	uint32_t rate, write_pct, fill_pct, pages, hot, hot_pct, report_ms, stall_ms, die_ms;
};

static int parse_number(const char *s, const char *end, uint64_t *out)
{
	uint64_t v = 0;
	unsigned base = 10;

	if (end - s > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
		base = 16;
		s += 2;
	}
	if (s == end)
		return -1;
	for (; s < end; s++) {
		unsigned d;

		if (*s >= '0' && *s <= '9')
			d = (unsigned)(*s - '0');
		else if (base == 16 && *s >= 'a' && *s <= 'f')
			d = (unsigned)(*s - 'a' + 10);
		else if (base == 16 && *s >= 'A' && *s <= 'F')
			d = (unsigned)(*s - 'A' + 10);
		else
			return -1;
		v = v * base + d;
	}
	*out = v;
	return 0;
}

static int key_is(const char *s, const char *eq, const char *key)
{
	while (s < eq && *key && *s == *key) {
		s++;
		key++;
	}
	return s == eq && !*key;
}

/* 0, or -1 after printing the offending word. */
static int parse_cmdline(const char *cmd, struct options *o)
{
	static const struct {
		const char *key;
		size_t off;
		int is64;
	} keys[] = {
		{ "seed", offsetof(struct options, seed), 1 },
		{ "rate", offsetof(struct options, rate), 0 },
		{ "write", offsetof(struct options, write_pct), 0 },
		{ "fill", offsetof(struct options, fill_pct), 0 },
		{ "pages", offsetof(struct options, pages), 0 },
		{ "hot", offsetof(struct options, hot), 0 },
		{ "hotpct", offsetof(struct options, hot_pct), 0 },
		{ "report", offsetof(struct options, report_ms), 0 },
		{ "stall", offsetof(struct options, stall_ms), 0 },
		{ "die", offsetof(struct options, die_ms), 0 },
	};
	const char *s = cmd;

	while (s && *s) {
		const char *w, *eq = 0;
		unsigned i;
		uint64_t v;

		while (*s == ' ')
			s++;
		if (!*s)
			break;
		for (w = s; *s && *s != ' '; s++)
			if (*s == '=' && !eq)
				eq = s;
		for (i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
			if (eq && key_is(w, eq, keys[i].key))
				break;
		if (i == sizeof(keys) / sizeof(keys[0]) || parse_number(eq + 1, s, &v) ||
		    (!keys[i].is64 && v > 0xffffffffu)) {
			puts_e9("hmigt HALT bad cmdline word: ");
			while (w < s)
				putc_e9(*w++);
			putc_e9('\n');
			return -1;
		}
		if (keys[i].is64)
			*(uint64_t *)((char *)o + keys[i].off) = v;
		else
			*(uint32_t *)((char *)o + keys[i].off) = (uint32_t)v;
	}
	if (o->write_pct > 100 || o->fill_pct > 100 || o->hot_pct > 100) {
		puts_e9("hmigt HALT write=, fill= and hotpct= are percentages\n");
		return -1;
	}
	return 0;
}

static uint32_t pct_to_thresh(uint32_t pct)
{
	return pct * 256u / 100u; /* 100% = 256: every byte value is below it */
}

/* Xen's CPUID leaves start at the first 0x100 boundary from 0x40000000 that
 * carries "XenVMMXenVMM"; leaf base+3 sub-leaf 0 has the TSC mode in EBX and
 * the guest TSC frequency in kHz in ECX. */
static void xen_tsc(uint32_t *khz, uint32_t *mode)
{
	uint32_t base, r[4];

	*khz = 0;
	*mode = 0xffffffffu;
	for (base = 0x40000000u; base < 0x40010000u; base += 0x100) {
		cpuid(base, 0, r);
		if (r[1] == 0x566e6558u && r[2] == 0x65584d4du && r[3] == 0x4d4d566eu &&
		    r[0] >= base + 3) {
			cpuid(base + 3, 0, r);
			*mode = r[1];
			*khz = r[2];
			return;
		}
	}
}

static void halt(volatile struct hmigt_ctl *c, uint32_t reason)
{
	c->halt_reason = reason;
	c->state = HMIGT_STATE_HALT;
	for (;;)
		__asm__ volatile("pause");
}

static int below_ctl(uint64_t addr, uint64_t len)
{
	return addr + len <= (uint64_t)HMIGT_CTL_GFN * HMIGT_PAGE_SIZE;
}

/* The RAM entry of the memory map that holds 4 MiB: data pages run from 4 MiB
 * to its end.  0 if there is none. */
static uint64_t ram_end_above_4m(const struct start_info *si)
{
	const struct memmap_entry *m = (const struct memmap_entry *)(uintptr_t)si->memmap_paddr;
	uint64_t start = (uint64_t)HMIGT_DATA_GFN * HMIGT_PAGE_SIZE;
	uint32_t i;

	for (i = 0; i < si->memmap_entries; i++)
		if (m[i].type == 1 && m[i].addr <= start && m[i].addr + m[i].size > start)
			return m[i].addr + m[i].size;
	return 0;
}

static size_t cstrlen(const char *s)
{
	size_t n = 0;

	while (s[n])
		n++;
	return n;
}

/* ---------------------------------------------------------------- ops */

static void violation(volatile struct hmigt_ctl *c, uint64_t k, uint32_t p, uint32_t version,
		      long word)
{
	volatile uint32_t *page = data_page(p);
	uint32_t want = hmigt_stamp_u32(c->wl.seed, HMIGT_DATA_GFN + p, version, (unsigned)word);
	uint32_t got = page[word];

	if (c->violations == 0) {
		c->bad_op = k;
		c->bad_gfn = HMIGT_DATA_GFN + p;
		c->bad_word = (uint32_t)word;
		c->bad_want = want;
		c->bad_got = got;
	}
	c->violations = c->violations + 1;
	if (c->violations <= MAX_VIOLATION_LINES) {
		puts_e9("hmigt VIOLATION");
		put_kv("op", k);
		puts_e9(" gfn=");
		putx(HMIGT_DATA_GFN + p);
		put_kv("word", (uint64_t)word);
		put_kv("version", version);
		puts_e9(" want=");
		putx(want);
		puts_e9(" got=");
		putx(got);
		putc_e9('\n');
	}
}

/* Op k: the write protocol of struct hmigt_ctl, step by step; the barriers
 * keep the compiler from moving a store across a step (the CPU does not:
 * x86 stores are seen in program order). */
static void run_op(volatile struct hmigt_ctl *c, const struct hmigt_workload *wl, uint64_t k)
{
	struct hmigt_op op = hmigt_op(wl, k);
	uint32_t gfn = HMIGT_DATA_GFN + op.pfn, version = TABLE[op.pfn];
	long bad = hmigt_page_diff(wl->seed, gfn, version, data_page(op.pfn));

	if (bad >= 0)
		violation(c, k, op.pfn, version, bad);
	if (op.write) {
		c->inflight_old = version;
		barrier();
		c->inflight_pfn = op.pfn + 1;
		barrier();
		hmigt_page_fill(wl->seed, gfn, version + 1, data_page(op.pfn));
		barrier();
		TABLE[op.pfn] = version + 1;
		c->writes = c->writes + 1;
	} else {
		c->reads = c->reads + 1;
	}
	barrier();
	store64(&c->ops_done, k + 1);
	barrier();
	c->inflight_pfn = 0;
}

static void report(volatile struct hmigt_ctl *c, uint64_t ops, uint64_t ops_before,
		   uint64_t cycles)
{
	puts_e9("hmigt");
	put_kv("ops", ops);
	put_kv("w", c->writes);
	put_kv("r", c->reads);
	put_kv("viol", c->violations);
	if (c->tsc_khz) {
		uint64_t ms = udiv64(cycles, c->tsc_khz);

		if (ms && ms < 0xffffffffu)
			put_kv("ops_per_s", udiv64((ops - ops_before) * 1000u, (uint32_t)ms));
	}
	if (c->tsc_khz)
		put_kv("gap_max_ms", udiv64(c->gap_max, c->tsc_khz));
	put_kv("stalls", c->stalls);
	putc_e9('\n');
	c->reports = c->reports + 1;
}

void hmigt_main(const struct start_info *si)
{
	volatile struct hmigt_ctl *c = CTL;
	struct options o = { .seed = 1, .rate = 2000, .write_pct = 75, .fill_pct = 100,
			     .hot_pct = 90, .report_ms = 1000, .stall_ms = 200 };
	struct hmigt_workload wl;
	const char *cmd = "";
	uint64_t ram_end, n, k, t, last, next_op, next_report, report_ops, report_tsc;
	uint64_t cycles_per_op = 0, report_cycles, stall_cycles, backlog_cycles, die_at = 0;
	uint32_t p, khz, mode;
	size_t i;

	/* The builder hands over zeroed pages; a second entry after a botched
	 * migration finds the old control page and counts itself. */
	c->boots = c->magic == HMIGT_CTL_MAGIC ? c->boots + 1 : 1;
	c->magic = HMIGT_CTL_MAGIC;
	c->abi = HMIGT_ABI;
	c->state = HMIGT_STATE_BOOT;
	c->halt_reason = HMIGT_HALT_NONE;
	c->table_gfn = HMIGT_TABLE_GFN;

	if (si->magic != START_INFO_MAGIC || si->version < 1) {
		puts_e9("hmigt HALT start_info: bad magic or version < 1\n");
		halt(c, HMIGT_HALT_START_INFO);
	}
	if (si->cmdline_paddr)
		cmd = (const char *)(uintptr_t)si->cmdline_paddr;
	if (!below_ctl((uintptr_t)si, sizeof(*si)) ||
	    !below_ctl(si->cmdline_paddr, cstrlen(cmd) + 1) ||
	    !below_ctl(si->memmap_paddr, (uint64_t)si->memmap_entries * sizeof(struct memmap_entry))) {
		puts_e9("hmigt HALT start_info, cmdline or memory map above 2 MiB\n");
		halt(c, HMIGT_HALT_LAYOUT);
	}
	for (i = 0; i < sizeof(c->cmdline) - 1 && cmd[i]; i++)
		c->cmdline[i] = cmd[i];
	c->cmdline[i] = 0;
	if (parse_cmdline(cmd, &o))
		halt(c, HMIGT_HALT_CMDLINE);

	ram_end = ram_end_above_4m(si);
	n = ram_end ? (ram_end - (uint64_t)HMIGT_DATA_GFN * HMIGT_PAGE_SIZE) / HMIGT_PAGE_SIZE : 0;
	if (n > HMIGT_MAX_DATA_PAGES)
		n = HMIGT_MAX_DATA_PAGES;
	if (o.pages && n > o.pages)
		n = o.pages;
	if (n == 0 || o.hot > n) {
		puts_e9("hmigt HALT no RAM above 4 MiB, or hot= larger than the data pages\n");
		halt(c, HMIGT_HALT_MEMORY);
	}

	wl.seed = o.seed;
	wl.data_gfn = HMIGT_DATA_GFN;
	wl.n_data = (uint32_t)n;
	wl.write_thresh = pct_to_thresh(o.write_pct);
	wl.hot_pages = o.hot;
	wl.hot_thresh = o.hot ? pct_to_thresh(o.hot_pct) : 0;
	wl.fill_thresh = pct_to_thresh(o.fill_pct);
	c->wl = wl;

	xen_tsc(&khz, &mode);
	c->tsc_khz = khz;
	c->rate = o.rate;
	c->report_ms = o.report_ms;
	c->stall_ms = o.stall_ms;
	c->ops_done = 0;
	c->inflight_pfn = 0;
	c->inflight_old = 0;
	c->writes = c->reads = c->violations = 0;
	c->stalls = c->gap_max = c->gap_max_op = c->tsc_backwards = c->reports = 0;

	puts_e9("hmigt boot");
	put_kv("boots", c->boots);
	put_kv("pages", n);
	put_kv("seed", o.seed);
	put_kv("rate", o.rate);
	put_kv("write", o.write_pct);
	put_kv("fill", o.fill_pct);
	put_kv("hot", o.hot);
	put_kv("tsc_khz", khz);
	put_kv("tsc_mode", mode);
	putc_e9('\n');

	c->state = HMIGT_STATE_FILL;
	for (p = 0; p < wl.n_data; p++) {
		uint32_t v = hmigt_initial_version(&wl, p);

		hmigt_page_fill(wl.seed, HMIGT_DATA_GFN + p, v, data_page(p));
		TABLE[p] = v;
	}

	/* Without a TSC frequency there is no clock: run flat out and report
	 * every 2^16 ops instead. */
	if (khz && o.rate)
		cycles_per_op = udiv64((uint64_t)khz * 1000u, o.rate);
	report_cycles = (uint64_t)khz * o.report_ms;
	stall_cycles = (uint64_t)khz * o.stall_ms;
	/* After a stall (a migration's downtime, say), catch up at most 100 ms
	 * of ops: the rate is a rate, not a quota. */
	backlog_cycles = (uint64_t)khz * 100u;

	c->tsc_boot = last = rdtsc();
	c->tsc_last = last;
	if (khz && o.die_ms)
		die_at = last + (uint64_t)khz * o.die_ms;
	next_op = last;
	next_report = last + report_cycles;
	report_ops = 0;
	report_tsc = last;
	c->state = HMIGT_STATE_RUN;
	puts_e9("hmigt run\n");

	for (k = 0;;) {
		t = rdtsc();
		if (t < last) {
			c->tsc_backwards = c->tsc_backwards + 1;
		} else {
			uint64_t gap = t - last;

			if (gap > c->gap_max) {
				c->gap_max = gap;
				c->gap_max_op = k;
			}
			if (khz && gap >= stall_cycles) {
				c->stalls = c->stalls + 1;
				puts_e9("hmigt stall");
				put_kv("ms", udiv64(gap, khz));
				put_kv("ops", k);
				putc_e9('\n');
			}
		}
		last = t;
		c->tsc_last = t;
		if (die_at && t >= die_at) {
			/* No IDT: the #UD becomes a #DF, then a triple fault. */
			static const struct {
				uint16_t limit;
				uint32_t base;
			} __attribute__((packed)) no_idt = { 0, 0 };

			puts_e9("hmigt die: as asked\n");
			__asm__ volatile("lidt %0\n\tud2" : : "m"(no_idt));
		}

		if (khz ? t >= next_report : (k & 0xffff) == 0 && k != report_ops) {
			report(c, k, report_ops, t - report_tsc);
			report_ops = k;
			report_tsc = t;
			next_report = t + report_cycles;
		}
		if (cycles_per_op) {
			if (t < next_op) {
				__asm__ volatile("pause");
				continue;
			}
			next_op += cycles_per_op;
			if (t > next_op + backlog_cycles)
				next_op = t;
		}
		run_op(c, &wl, k);
		k++;
	}
}
