/* Tests for include/hmig: what a program linked with libhmig.so alone can
 * do.  This file links the public library and nothing internal, so a
 * function missing from the export map fails to link here, and a
 * migration that only works with internal help fails to run. */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>
#include <criterion/parameterized.h>

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <math.h>

#include <hmig/hmig.h>
#include <hmig/synth.h>

/* Both ends of one migration in this process: the destination runs on its
 * own thread, the source on the test's. */
struct pair {
	struct hmig_config cfg;
	struct hmig_guest *sg, *dg;
	struct hmig_source *src;
	struct hmig_dest *dst;
	int src_rc, dst_rc;
};

static void *run_dest(void *arg)
{
	struct pair *p = arg;

	p->dst_rc = hmig_dest_run(p->dst);
	return NULL;
}

static void pair_open(struct pair *p, enum hmig_mode mode, const char *workload)
{
	struct hmig_synth_params sp = { .mem_bytes = 32 << 20, .vcpus = 2, .seed = 7,
					.workload = workload, .fill = 1.0 };
	struct timespec warm = { .tv_nsec = 100 * 1000 * 1000 };
	char err[256] = "";

	memset(p, 0, sizeof(*p));
	hmig_config_init(&p->cfg);
	p->cfg.insecure = true; /* two ends in one process, on loopback */
	p->cfg.mode = mode;
	p->cfg.accept_timeout_ms = 20000;
	p->cfg.io_timeout_ms = 10000;
	p->cfg.sample_ms = 20; /* timelines of a few rows even for short runs */
	cr_assert(eq(int, hmig_synth_open_dest(&p->dg, err), 0), "%s", err);
	cr_assert(eq(int, hmig_dest_new(&p->cfg, p->dg, "127.0.0.1:0", &p->dst, err), 0), "%s",
		  err);
	cr_assert(eq(int, hmig_synth_open(&sp, &p->sg, err), 0), "%s", err);
	cr_assert(eq(int, p->sg->ops->run(p->sg), 0), "%s", hmig_guest_error(p->sg));
	nanosleep(&warm, NULL);
	cr_assert(eq(int, hmig_source_new(&p->cfg, p->sg, &p->src, err), 0), "%s", err);
}

static void pair_close(struct pair *p)
{
	hmig_source_free(p->src);
	p->sg->ops->destroy(p->sg);
	hmig_dest_free(p->dst);
	p->dg->ops->destroy(p->dg);
}

/* A report written through the public call, as text. */
static char *report_text(int (*write)(void *, FILE *), void *ctx)
{
	char *buf = NULL;
	size_t n = 0;
	FILE *f = open_memstream(&buf, &n);

	cr_assert(not(eq(ptr, f, NULL)));
	cr_assert(eq(int, write(ctx, f), 0));
	fclose(f);
	return buf;
}

static int source_report(void *s, FILE *f)
{
	return hmig_source_report(s, f);
}

static int dest_report(void *d, FILE *f)
{
	return hmig_dest_report(d, f);
}

static const enum hmig_mode modes[] = { HMIG_MODE_PRECOPY, HMIG_MODE_POSTCOPY, HMIG_MODE_HYBRID };

ParameterizedTestParameters(api, threads_migrate_with_integrity)
{
	static int idx[] = { 0, 1, 2 };

	return cr_make_param_array(int, idx, sizeof(idx) / sizeof(idx[0]));
}

ParameterizedTest(int *i, api, threads_migrate_with_integrity, .timeout = 120)
{
	enum hmig_mode mode = modes[*i];
	struct pair p;
	pthread_t t;
	char want[64];

	pair_open(&p, mode, "uniform:rate=20000");
	cr_assert(eq(int, pthread_create(&t, NULL, run_dest, &p), 0));
	p.src_rc = hmig_source_run(p.src, hmig_dest_address(p.dst));
	pthread_join(t, NULL);
	cr_assert(eq(int, p.src_rc, 0), "source: %s", hmig_source_error(p.src));
	cr_assert(eq(int, p.dst_rc, 0), "destination: %s", hmig_dest_error(p.dst));

	cr_assert(eq(int, p.dg->ops->pause(p.dg), 0));
	cr_assert(eq(int, p.dg->ops->verify(p.dg), 0), "%s", hmig_guest_error(p.dg));
	hmig_dest_set_integrity(p.dst, "ok", NULL);

	/* Both reports say what ran, in docs/report.md's keys. */
	char *s = report_text(source_report, p.src), *d = report_text(dest_report, p.dst);
	snprintf(want, sizeof(want), "\"mode\": \"%s\"", hmig_mode_name(mode));
	cr_expect(not(eq(ptr, strstr(s, want), NULL)), "%s", s);
	cr_expect(not(eq(ptr, strstr(s, "\"result\": \"ok\""), NULL)), "%s", s);
	cr_expect(not(eq(ptr, strstr(d, "\"integrity\": \"ok\""), NULL)), "%s", d);
	free(s);
	free(d);
	pair_close(&p);
}

/* A source with nobody to talk to fails with -errno and a one-line message,
 * and its guest keeps running: nothing is lost. */
Test(api, failure_is_an_errno_and_a_line, .timeout = 60)
{
	struct pair p;
	struct hmig_guest_stats a, b;
	struct timespec nap = { .tv_nsec = 100 * 1000 * 1000 };

	pair_open(&p, HMIG_MODE_HYBRID, "uniform:rate=20000");
	p.cfg.connect_timeout_ms = 200;
	hmig_source_free(p.src);
	char err[256] = "";
	cr_assert(eq(int, hmig_source_new(&p.cfg, p.sg, &p.src, err), 0), "%s", err);
	int rc = hmig_source_run(p.src, "unix:@hmig-api-test-nobody-listens");
	cr_assert(lt(int, rc, 0));
	const char *msg = hmig_source_error(p.src);
	cr_expect(gt(sz, strlen(msg), 0));
	cr_expect(eq(ptr, strchr(msg, '\n'), NULL), "%s", msg);
	p.sg->ops->stats(p.sg, &a);
	nanosleep(&nap, NULL);
	p.sg->ops->stats(p.sg, &b);
	cr_expect(gt(u64, b.ops, a.ops), "the source guest stopped");
	pair_close(&p);
}

/* A caller's own pre-copy stop rule: it is called after every pass with
 * that pass's figures, and the source does what it says (here: exactly
 * three passes, then post-copy, whatever the built-in rule would do). */
struct rule_log {
	int calls, mid_calls;
	uint32_t passes[16];
	uint64_t sent[16];
	uint64_t mid_sent_last;
	bool mid_grows;
	uint64_t guest_bytes;
};

static enum hmig_decision three_passes(const struct hmig_config *cfg,
				       const struct hmig_pass_stats *pass,
				       enum hmig_reason *reason, void *data)
{
	struct rule_log *log = data;

	(void)cfg;
	if (pass->mid_pass) { /* hybrid mode asks during passes too: go on */
		if (log->mid_calls++ && pass->pages_sent <= log->mid_sent_last)
			log->mid_grows = false;
		log->mid_sent_last = pass->pages_sent;
		return HMIG_DECIDE_PASS;
	}
	if (log->calls < 16) {
		log->passes[log->calls] = pass->pass;
		log->sent[log->calls] = pass->pages_sent;
	}
	log->calls++;
	log->guest_bytes = pass->guest_bytes;
	if (pass->pass < 2)
		return HMIG_DECIDE_PASS;
	*reason = HMIG_REASON_FORCED;
	return HMIG_DECIDE_POSTCOPY;
}

Test(api, a_custom_stop_rule_is_called_and_obeyed, .timeout = 120)
{
	struct rule_log log = { 0 };
	struct pair p;
	pthread_t t;

	/* Idle: the built-in rule would converge after pass 0.  The bulk cap
	 * stretches pass 0 to half a second, so the rule is also asked during
	 * it (hybrid mode looks every 100 ms), with pages_sent growing. */
	log.mid_grows = true;
	pair_open(&p, HMIG_MODE_HYBRID, "idle");
	hmig_source_free(p.src);
	p.cfg.rate_limit_bps = 64u << 20;
	char err[256] = "";
	cr_assert(eq(int, hmig_source_new(&p.cfg, p.sg, &p.src, err), 0), "%s", err);
	hmig_source_set_stop_rule(p.src, three_passes, &log);
	cr_assert(eq(int, pthread_create(&t, NULL, run_dest, &p), 0));
	p.src_rc = hmig_source_run(p.src, hmig_dest_address(p.dst));
	pthread_join(t, NULL);
	cr_assert(eq(int, p.src_rc, 0), "source: %s", hmig_source_error(p.src));
	cr_assert(eq(int, p.dst_rc, 0), "destination: %s", hmig_dest_error(p.dst));
	cr_assert(eq(int, p.dg->ops->pause(p.dg), 0));
	cr_assert(eq(int, p.dg->ops->verify(p.dg), 0), "%s", hmig_guest_error(p.dg));

	cr_assert(eq(int, log.calls, 3), "called %d times", log.calls);
	cr_assert(ge(int, log.mid_calls, 2), "asked %d times during pass 0", log.mid_calls);
	cr_assert(log.mid_grows, "pages_sent did not grow between the looks");
	for (int i = 0; i < 3; i++)
		cr_assert(eq(u32, log.passes[i], (uint32_t)i));
	cr_assert(eq(u64, log.sent[0], (32u << 20) / 4096), "pass 0 sends every page");
	cr_assert(eq(u64, log.guest_bytes, 32u << 20));
	char *s = report_text(source_report, p.src);
	cr_expect(not(eq(ptr, strstr(s, "\"reason\": \"forced\""), NULL)), "%s", s);
	cr_expect(not(eq(ptr, strstr(s, "\"pass\": 2"), NULL)), "%s", s);
	cr_expect(eq(ptr, strstr(s, "\"pass\": 3"), NULL), "%s", s);
	cr_expect(not(eq(ptr, strstr(s, "\"phase\": \"postcopy\""), NULL)), "%s", s);
	free(s);
	pair_close(&p);

	/* In precopy mode the same rule's POSTCOPY is a stop-and-copy. */
	log = (struct rule_log){ 0 };
	pair_open(&p, HMIG_MODE_PRECOPY, "idle");
	hmig_source_set_stop_rule(p.src, three_passes, &log);
	cr_assert(eq(int, pthread_create(&t, NULL, run_dest, &p), 0));
	p.src_rc = hmig_source_run(p.src, hmig_dest_address(p.dst));
	pthread_join(t, NULL);
	cr_assert(eq(int, p.src_rc, 0), "source: %s", hmig_source_error(p.src));
	cr_assert(eq(int, log.calls, 3));
	s = report_text(source_report, p.src);
	cr_expect(not(eq(ptr, strstr(s, "\"phase\": \"stopcopy\""), NULL)), "%s", s);
	cr_expect(eq(ptr, strstr(s, "\"phase\": \"postcopy\""), NULL), "%s", s);
	free(s);
	pair_close(&p);
}

/* ---- status and the timeline -------------------------------------------- */

/* What a thread polling both sides' status saw. */
struct watch {
	struct pair *p;
	_Atomic bool stop;
	bool rate_changed;
	double changed_at_ms;     /* the source's elapsed_ms when the cap went */
	uint64_t max_pass_sent, max_present, pass_pages;
	bool sent_grew, saw_precopy, eta_seen;
	uint64_t rate_seen_after;  /* rate_limit_bps read after the change */
};

static void *watch_main(void *arg)
{
	struct watch *w = arg;
	struct timespec nap = { .tv_nsec = 5 * 1000 * 1000 };

	while (!atomic_load(&w->stop)) {
		struct hmig_status s, d;

		cr_assert(eq(int, hmig_source_status(w->p->src, &s, sizeof(s)), 0));
		cr_assert(eq(int, hmig_dest_status(w->p->dst, &d, sizeof(d)), 0));
		if (!strcmp(s.phase, "precopy")) {
			w->saw_precopy = true;
			w->pass_pages = s.pass_pages;
			if (s.pass_sent > w->max_pass_sent) {
				w->sent_grew = w->max_pass_sent > 0;
				w->max_pass_sent = s.pass_sent;
			}
			w->eta_seen |= isfinite(s.eta_ms) && s.eta_ms > 0;
			/* A quarter of pass 0 under the cap, then lift it. */
			if (!w->rate_changed && s.pass_pages && s.pass_sent >= s.pass_pages / 4 &&
			    isfinite(s.bulk_bps)) {
				hmig_source_set_rate(w->p->src, 0);
				w->rate_changed = true;
				w->changed_at_ms = s.elapsed_ms;
			}
		}
		if (w->rate_changed) {
			cr_assert(eq(int, hmig_source_status(w->p->src, &s, sizeof(s)), 0));
			w->rate_seen_after = s.rate_limit_bps;
		}
		if (d.pages_present != HMIG_UNKNOWN && d.pages_present > w->max_present)
			w->max_present = d.pages_present;
		nanosleep(&nap, NULL);
	}
	return NULL;
}

/* Sample rows (event null) of a timeline: t_ms and the counters never go
 * back, and every row names a phase. */
static size_t check_timeline(json_t *tl, const char *side)
{
	double t = -1;
	uint64_t bulk = 0;
	size_t i, samples = 0;
	json_t *row;

	bool is_array = json_is_array(tl);

	cr_assert(is_array, "%s: no timeline", side);
	json_array_foreach(tl, i, row) {
		double ti = json_number_value(json_object_get(row, "t_ms"));
		uint64_t b = (uint64_t)json_integer_value(json_object_get(row, "bytes_bulk"));

		cr_assert(ge(dbl, ti, t), "%s row %zu: t_ms %g after %g", side, i, ti, t);
		cr_assert(ge(u64, b, bulk), "%s row %zu: bytes_bulk went back", side, i);
		bool named = json_is_string(json_object_get(row, "phase"));

		cr_assert(named, "%s row %zu: no phase", side, i);
		t = ti;
		bulk = b;
		samples += json_is_null(json_object_get(row, "event"));
	}
	return samples;
}

/* A running migration answers status queries from another thread on both
 * sides, its bandwidth cap can be lifted while it runs, and both reports
 * carry a timeline sampled from start to end. */
Test(api, status_while_running_and_the_cap_can_change, .timeout = 120)
{
	struct watch w = { 0 };
	struct hmig_status st;
	struct pair p;
	pthread_t t, wt;
	char err[256] = "";

	pair_open(&p, HMIG_MODE_POSTCOPY, "uniform:rate=20000");
	/* Before anything runs. */
	cr_assert(eq(int, hmig_dest_status(p.dst, &st, sizeof(st)), 0));
	cr_assert(eq(str, st.phase, "setup"));
	cr_assert(not(st.finished));
	/* 4 MiB/s: pass 0 of 32 MiB would take 8 s under the cap. */
	hmig_source_free(p.src);
	p.cfg.rate_limit_bps = 4u << 20;
	cr_assert(eq(int, hmig_source_new(&p.cfg, p.sg, &p.src, err), 0), "%s", err);
	w.p = &p;
	cr_assert(eq(int, pthread_create(&t, NULL, run_dest, &p), 0));
	cr_assert(eq(int, pthread_create(&wt, NULL, watch_main, &w), 0));
	p.src_rc = hmig_source_run(p.src, hmig_dest_address(p.dst));
	pthread_join(t, NULL);
	atomic_store(&w.stop, true);
	pthread_join(wt, NULL);
	cr_assert(eq(int, p.src_rc, 0), "source: %s", hmig_source_error(p.src));
	cr_assert(eq(int, p.dst_rc, 0), "destination: %s", hmig_dest_error(p.dst));
	cr_assert(eq(int, p.dg->ops->pause(p.dg), 0));
	cr_assert(eq(int, p.dg->ops->verify(p.dg), 0), "%s", hmig_guest_error(p.dg));

	/* What the watcher saw while it ran. */
	cr_assert(w.saw_precopy);
	cr_assert(eq(u64, w.pass_pages, (32u << 20) / 4096));
	cr_assert(w.sent_grew, "pass_sent never grew between two looks");
	cr_assert(w.eta_seen, "no pass ETA while the cap held");
	cr_assert(w.rate_changed, "pass 0 never reached a quarter under the cap");
	cr_assert(eq(u64, w.rate_seen_after, 0));
	cr_assert(gt(u64, w.max_present, 0), "the destination never said it held a page");
	/* After the run: the clock has stopped, and the verdict's wait (the
	 * destination's guest runs a while first) is not the migration's. */
	cr_assert(eq(int, hmig_source_status(p.src, &st, sizeof(st)), 0));
	cr_assert(st.finished);
	cr_assert(eq(str, st.phase, "done"));
	cr_assert(eq(u64, st.pages_left, 0));
	cr_assert(isfinite(st.downtime_ms));
	struct timespec nap = { .tv_nsec = 300 * 1000 * 1000 };
	nanosleep(&nap, NULL);
	struct hmig_status later;
	cr_assert(eq(int, hmig_source_status(p.src, &later, sizeof(later)), 0));
	cr_assert(eq(dbl, later.elapsed_ms, st.elapsed_ms));
	double st_src_elapsed = st.elapsed_ms;
	hmig_dest_set_integrity(p.dst, "ok", NULL);
	cr_assert(eq(int, hmig_source_wait_verdict(p.src, 10000), 0), "%s", hmig_source_error(p.src));
	cr_assert(eq(int, hmig_dest_status(p.dst, &st, sizeof(st)), 0));
	cr_assert(st.finished);
	cr_assert(eq(str, st.phase, "complete"));
	cr_assert(eq(u64, st.pages_present, st.guest_pages));
	/* An older caller's smaller struct gets its part, nothing past it. */
	struct { struct hmig_status head; char canary[8]; } small;
	memset(&small, 0x5a, sizeof(small));
	cr_assert(eq(int, hmig_source_status(p.src, &small.head, offsetof(struct hmig_status, pass)), 0));
	cr_assert(eq(str, small.head.phase, "done"));
	cr_assert(eq(int, (int)small.canary[0], 0x5a));
	cr_assert(eq(int, hmig_source_status(p.src, &st, 0), -EINVAL));

	/* The reports' timelines: samples on both sides, and after the cap
	 * went, the source sent faster than the cap allows. */
	char *s = report_text(source_report, p.src), *d = report_text(dest_report, p.dst);
	json_t *sj = json_loads(s, 0, NULL), *dj = json_loads(d, 0, NULL);
	cr_assert(sj && dj);
	cr_assert(ge(sz, check_timeline(json_object_get(sj, "timeline"), "source"), 2));
	cr_assert(ge(sz, check_timeline(json_object_get(dj, "timeline"), "destination"), 2));
	cr_assert(eq(dbl, json_number_value(json_object_get(json_array_get(
				  json_object_get(dj, "timeline"), 0), "t_ms")), 0));
	bool started = json_is_number(json_object_get(sj, "start_unix_ms"));
	cr_assert(started, "no start_unix_ms");
	double total = json_number_value(json_object_get(sj, "total_ms"));
	cr_assert(lt(dbl, fabs(total - st_src_elapsed), 1.0), "total_ms %g, status elapsed %g", total,
		  st_src_elapsed);
	double fastest = 0;
	size_t i;
	json_t *row;
	json_array_foreach(json_object_get(sj, "timeline"), i, row) {
		double bps = json_number_value(json_object_get(row, "bulk_bps"));

		if (json_number_value(json_object_get(row, "t_ms")) > w.changed_at_ms && bps > fastest)
			fastest = bps;
	}
	cr_assert(gt(dbl, fastest, 3.0 * (4u << 20)), "fastest sample after the change: %g B/s",
		  fastest);
	json_decref(sj);
	json_decref(dj);
	free(s);
	free(d);
	pair_close(&p);
}

/* What a program can check before it opens a guest: the address it will
 * connect to or listen on, and a synth guest's make-up. */
Test(api, addresses_and_guest_params_are_checked_up_front)
{
	struct hmig_synth_params sp = { .mem_bytes = 1 << 20, .vcpus = 2, .fill = 1.0 };
	char err[256] = "";

	cr_assert(eq(int, hmig_addr_check("127.0.0.1:4444", true, err), 0), "%s", err);
	cr_assert(eq(int, hmig_addr_check("127.0.0.1:0", false, err), 0), "%s", err);
	cr_assert(eq(int, hmig_addr_check("unix:/run/x.sock", true, err), 0), "%s", err);
	cr_assert(eq(int, hmig_addr_check("127.0.0.1:0", true, err), -EINVAL));
	cr_assert(not(eq(ptr, strstr(err, "port 0"), NULL)), "%s", err);
	cr_assert(eq(int, hmig_addr_check("127.0.0.1:99999", false, err), -EINVAL));
	cr_assert(not(eq(ptr, strstr(err, "99999"), NULL)), "%s", err);
	cr_assert(eq(int, hmig_addr_check("nocolon", true, err), -EINVAL));

	cr_assert(eq(int, hmig_synth_params_check(&sp, err), 0), "%s", err);
	sp.mem_bytes = 0;
	cr_assert(eq(int, hmig_synth_params_check(&sp, err), -EINVAL));
	cr_assert(not(eq(ptr, strstr(err, "at least 64K"), NULL)), "%s", err);
	sp.mem_bytes = 1 << 20;
	sp.workload = "nosuch";
	cr_assert(eq(int, hmig_synth_params_check(&sp, err), -EINVAL));
	sp.workload = NULL;
	sp.vcpus = 0;
	cr_assert(eq(int, hmig_synth_params_check(&sp, err), -EINVAL));
}
