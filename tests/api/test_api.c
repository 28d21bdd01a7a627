/* Tests for include/hmig: what a program linked with libhmig.so alone can
 * do.  This file links the public library and nothing internal, so a
 * function missing from the export map fails to link here, and a
 * migration that only works with internal help fails to run. */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>
#include <criterion/parameterized.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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

	/* Both reports say what ran, in DESIGN.md's keys. */
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
	int calls;
	uint32_t passes[16];
	uint64_t sent[16];
	uint64_t guest_bytes;
};

static enum hmig_decision three_passes(const struct hmig_config *cfg,
				       const struct hmig_pass_stats *pass,
				       enum hmig_reason *reason, void *data)
{
	struct rule_log *log = data;

	(void)cfg;
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

	/* Idle: the built-in rule would converge after pass 0. */
	pair_open(&p, HMIG_MODE_HYBRID, "idle");
	hmig_source_set_stop_rule(p.src, three_passes, &log);
	cr_assert(eq(int, pthread_create(&t, NULL, run_dest, &p), 0));
	p.src_rc = hmig_source_run(p.src, hmig_dest_address(p.dst));
	pthread_join(t, NULL);
	cr_assert(eq(int, p.src_rc, 0), "source: %s", hmig_source_error(p.src));
	cr_assert(eq(int, p.dst_rc, 0), "destination: %s", hmig_dest_error(p.dst));
	cr_assert(eq(int, p.dg->ops->pause(p.dg), 0));
	cr_assert(eq(int, p.dg->ops->verify(p.dg), 0), "%s", hmig_guest_error(p.dg));

	cr_assert(eq(int, log.calls, 3), "called %d times", log.calls);
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
