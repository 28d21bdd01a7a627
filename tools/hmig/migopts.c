#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd.h"
#include "migopts.h"

/* Options come in groups: the migration's own, then one group per guest
 * backend, which only that backend's opener reads (guestspec.c).  A group's
 * options are refused with another --guest, so backends' options can sit
 * side by side without one taking another's. */
enum opt_group { GROUP_MIG, GROUP_SYNTH };

struct mig_opt {
	const char *name;
	int has_arg;
	int roles;
	enum opt_group group;
	const char *arg, *help;
};

static const struct mig_opt table[] = {
	{ "to", 1, ROLE_SEND, GROUP_MIG, "ADDR", "destination address: HOST:PORT, [V6]:PORT or unix:PATH" },
	{ "listen", 1, ROLE_RECV, GROUP_MIG, "ADDR", "address to listen on (HOST:PORT, :PORT, unix:PATH)" },
	{ "guest", 1, ROLE_SEND | ROLE_RECV | ROLE_DEMO, GROUP_MIG, "SPEC", "guest backend: synth (the default, built in), or xen:domid=N (send and recv: a Xen domain, docs/xen.md; send: ,digest=on; recv: ,prearm=on)" },
	{ "warmup", 1, ROLE_SEND | ROLE_DEMO, GROUP_MIG, "S", "seconds the guest runs before the migration (default 1)" },
	{ "mode", 1, ROLE_SEND | ROLE_DEMO, GROUP_MIG, "MODE", "hybrid (default), precopy or postcopy" },
	{ "run-after", 1, ROLE_RECV | ROLE_DEMO, GROUP_MIG, "S", "seconds the migrated guest runs before the oracle (default 1)" },
	{ "json", 1, ROLE_SEND | ROLE_RECV | ROLE_DEMO, GROUP_MIG, "FILE", "write the report (demo: both sides merged)" },
	{ "ready-fd", 1, ROLE_RECV, GROUP_MIG, "FD", "write the bound address to FD once listening" },
	{ "tls-creds", 1, ROLE_SEND | ROLE_RECV | ROLE_DEMO, GROUP_MIG, "DIR", "TLS 1.3 with X.509: ca-cert.pem, server-cert.pem, server-key.pem, client-cert.pem, client-key.pem (hmig keygen)" },
	{ "tls-psk", 1, ROLE_SEND | ROLE_RECV | ROLE_DEMO, GROUP_MIG, "FILE", "TLS 1.3 with a pre-shared key, 'identity:hexkey' (hmig keygen --psk; demo makes one)" },
	{ "insecure", 0, ROLE_SEND | ROLE_RECV | ROLE_DEMO, GROUP_MIG, NULL, "no TLS: plaintext, pages checked by CRC32C only, and anyone who reaches the port can migrate in" },
	{ "max-mem", 1, ROLE_RECV, GROUP_MIG, "SIZE", "refuse a guest larger than this (default: this host's available memory)" },
	{ "quiet", 0, ROLE_SEND | ROLE_RECV | ROLE_DEMO, GROUP_MIG, NULL, "print errors only: no progress, no summary" },
	{ "no-progress", 0, ROLE_SEND | ROLE_RECV | ROLE_DEMO, GROUP_MIG, NULL, "no live progress line on stderr (the summary still prints)" },
	{ "control", 1, ROLE_SEND | ROLE_RECV | ROLE_DEMO, GROUP_MIG, "PATH", "control socket for 'hmig status' and co. (default DIR/PID.sock: see 'man hmig')" },
	{ "o", 1, ROLE_SEND | ROLE_RECV | ROLE_DEMO, GROUP_MIG, "KEY=VALUE", "set a knob (repeatable; the knobs are listed below)" },
	/* A synth source's make-up: the destination takes it from the source. */
	{ "mem", 1, ROLE_SEND | ROLE_DEMO, GROUP_SYNTH, "SIZE", "guest memory (default 1G)" },
	{ "vcpus", 1, ROLE_SEND | ROLE_DEMO, GROUP_SYNTH, "N", "vCPUs (default 2)" },
	{ "workload", 1, ROLE_SEND | ROLE_DEMO, GROUP_SYNTH, "SPEC", "workload (see 'hmig guest --help'; default uniform:rate=20000, demo uniform:rate=500000)" },
	{ "fill", 1, ROLE_SEND | ROLE_DEMO, GROUP_SYNTH, "F", "fraction of pages written before the workload (default 1)" },
	{ "seed", 1, ROLE_SEND | ROLE_DEMO, GROUP_SYNTH, "N", "workload seed" },
};

#define NOPTS (sizeof(table) / sizeof(table[0]))

static const struct {
	const char *title;
	enum guest_backend backend; /* the one --guest this group is for; 0: any */
} groups[] = {
	[GROUP_MIG] = { NULL, 0 },
	[GROUP_SYNTH] = { "synth guest (--guest synth)", GUEST_SYNTH },
};

static void usage_group(enum mig_role role, enum opt_group group)
{
	bool any = false;

	for (size_t i = 0; i < NOPTS; i++) {
		if (!(table[i].roles & (int)role) || table[i].group != group)
			continue;
		if (!any && groups[group].title)
			printf("\n%s:\n", groups[group].title);
		any = true;
		char left[40];
		snprintf(left, sizeof(left), "%s%s %s", strlen(table[i].name) > 1 ? "--" : "-",
			 table[i].name, table[i].arg ? table[i].arg : "");
		printf("  %-22s %s\n", left, table[i].help);
	}
}

/* The knobs a role takes: a source's for send, a destination's for recv,
 * every one for demo (which runs both sides). */
static unsigned role_sides(enum mig_role role)
{
	switch (role) {
	case ROLE_SEND: return HMIG_SIDE_SOURCE;
	case ROLE_RECV: return HMIG_SIDE_DEST;
	case ROLE_DEMO: break;
	}
	return HMIG_SIDE_SOURCE | HMIG_SIDE_DEST;
}

/* Every knob the role takes, each with its default and, for numbers, its
 * range: the library's own table, so the list is never short of one. */
static void usage_knobs(enum mig_role role)
{
	struct hmig_config def;
	const struct hmig_knob *k;
	char val[64];

	hmig_config_init(&def);
	printf("\nknobs (-o KEY=VALUE):\n");
	for (unsigned i = 0; (k = hmig_config_knob(i)); i++) {
		if (!(k->sides & role_sides(role)))
			continue;
		if (hmig_config_get(&def, k->key, val, sizeof(val)))
			snprintf(val, sizeof(val), "?");
		printf("  %-22s %s (default %s", k->key, k->help, val);
		/* An enum's range is its spellings, which the help names. */
		if (val[0] >= '0' && val[0] <= '9')
			printf("; %g to %g", k->min, k->max);
		printf(")%s\n", role == ROLE_DEMO && k->sides == HMIG_SIDE_DEST ? " [destination]"
			: role == ROLE_DEMO && k->sides == HMIG_SIDE_SOURCE ? " [source]" : "");
	}
}

void mig_usage(enum mig_role role)
{
	static const char *const what[] = {
		[ROLE_SEND] = "send [options]\nMigrates a running guest to 'hmig recv'.",
		[ROLE_RECV] = "recv [options]\nReceives one migration, runs the guest, checks it with the oracle.",
		[ROLE_DEMO] = "demo [options]\nMigrates a guest between two local processes over loopback TCP.",
	};

	printf("usage: hmig %s\n\n", what[role]);
	usage_group(role, GROUP_MIG);
	usage_group(role, GROUP_SYNTH);
	usage_knobs(role);
	printf("\nExit status: 0 migrated with integrity ok, 1 failed, 2 bad usage.\n"
	       "SIGUSR1 to the source forces the switch after the current pass.\n");
}

void synth_opts_default(struct hmig_synth_params *p)
{
	*p = (struct hmig_synth_params){ .mem_bytes = 1ull << 30, .vcpus = 2,
					 .workload = "uniform:rate=20000", .fill = 1.0 };
}

int synth_opt_set(struct hmig_synth_params *p, const char *name, const char *arg)
{
	uint64_t u;
	char err[256];

	if (!strcmp(name, "mem"))
		return opt_size("--mem", arg, &p->mem_bytes);
	if (!strcmp(name, "vcpus")) {
		if (opt_u64("--vcpus", arg, 1, 64, &u))
			return -1;
		p->vcpus = (uint32_t)u;
		return 0;
	}
	if (!strcmp(name, "workload")) {
		if (hmig_synth_workload_check(arg, err)) {
			die_msg("%s", err);
			return -1;
		}
		p->workload = arg;
		return 0;
	}
	if (!strcmp(name, "fill"))
		return opt_double("--fill", arg, 0, 1, &p->fill);
	if (!strcmp(name, "seed"))
		return opt_u64("--seed", arg, 1, UINT64_MAX, &p->seed);
	die_msg("--%s is not a synth guest option (caller bug)", name);
	return -1;
}

/* The knob "key=value" names, or NULL when it names none. */
static const struct hmig_knob *knob_of(const char *kv)
{
	const struct hmig_knob *k;
	size_t n = strcspn(kv, "=");

	for (unsigned i = 0; (k = hmig_config_knob(i)); i++)
		if (strlen(k->key) == n && !strncmp(k->key, kv, n))
			return k;
	return NULL;
}

static int set_knob(struct mig_opts *o, enum mig_role role, const char *kv)
{
	char key[64], err[256];
	const char *eq = strchr(kv, '=');
	const struct hmig_knob *k = knob_of(kv);

	if (!eq || eq == kv || (size_t)(eq - kv) >= sizeof(key)) {
		die_msg("bad -o '%s': use -o key=value", kv);
		return -1;
	}
	memcpy(key, kv, (size_t)(eq - kv));
	key[eq - kv] = '\0';
	/* A knob of the other side would be silently ignored here. */
	if (k && !(k->sides & role_sides(role))) {
		if (role == ROLE_RECV)
			die_msg("-o %s is the source's knob: the destination takes it from the source (set it on 'hmig send')",
				key);
		else
			die_msg("-o %s is the destination's knob: set it on 'hmig recv'", key);
		return -1;
	}
	if (hmig_config_set(&o->cfg, key, eq + 1, err)) {
		bool known = false;

		for (unsigned i = 0; hmig_config_knob_name(i); i++)
			known |= !strcmp(hmig_config_knob_name(i), key);
		if (known) {
			die_msg("%s", err);
			return -1;
		}
		/* The whole list, however long: a terminal has room for it. */
		fprintf(stderr, "hmig: unknown knob '%s': use one of ", key);
		for (unsigned i = 0; hmig_config_knob_name(i); i++)
			fprintf(stderr, "%s%s", i ? ", " : "", hmig_config_knob_name(i));
		fprintf(stderr, " (hmig send --help says what each does)\n");
		return -1;
	}
	return 0;
}

static int apply(struct mig_opts *o, const char *name, const char *arg)
{
	uint64_t u;
	char err[256];

	if (!strcmp(name, "to"))
		o->to = arg;
	else if (!strcmp(name, "listen"))
		o->listen = arg;
	else if (!strcmp(name, "guest")) {
		if (guest_spec_parse(arg, &o->guest, err)) {
			die_msg("%s", err);
			return -1;
		}
	} else if (!strcmp(name, "warmup"))
		return opt_double("--warmup", arg, 0, 3600, &o->warmup);
	else if (!strcmp(name, "run-after"))
		return opt_double("--run-after", arg, 0, 3600, &o->run_after);
	else if (!strcmp(name, "mode")) {
		if (hmig_mode_parse(arg, &o->cfg.mode)) {
			die_msg("bad value for --mode: '%s' (use precopy, postcopy or hybrid)", arg);
			return -1;
		}
	} else if (!strcmp(name, "json"))
		o->json = arg;
	else if (!strcmp(name, "tls-creds"))
		o->cfg.tls_creds = arg;
	else if (!strcmp(name, "tls-psk"))
		o->cfg.tls_psk = arg;
	else if (!strcmp(name, "insecure"))
		o->cfg.insecure = true;
	else if (!strcmp(name, "max-mem"))
		return opt_size("--max-mem", arg, &o->cfg.max_mem);
	else if (!strcmp(name, "ready-fd")) {
		if (opt_u64("--ready-fd", arg, 3, 1 << 20, &u))
			return -1;
		o->ready_fd = (int)u;
	} else if (!strcmp(name, "quiet"))
		o->quiet = true;
	else if (!strcmp(name, "no-progress"))
		o->no_progress = true;
	else if (!strcmp(name, "control"))
		o->control = arg;
	return 0;
}

/* Bad usage is exit 2 before any guest is built: what the library would
 * refuse later (an address, the guest's make-up, the knobs together) is
 * asked of it now, through the checks it offers for this. */
static int check_before_guest(const struct mig_opts *o, enum mig_role role)
{
	char err[256];

	if ((o->to && hmig_addr_check(o->to, true, err)) ||
	    (o->listen && hmig_addr_check(o->listen, false, err)) ||
	    hmig_config_check(&o->cfg, err) ||
	    (role != ROLE_RECV && guest_check_source(&o->guest, err))) {
		die_msg("%s", err);
		return -1;
	}
	return 0;
}

int mig_parse(int argc, char **argv, enum mig_role role, struct mig_opts *o)
{
	struct option longopts[NOPTS + 1];
	const struct mig_opt *group_opt = NULL; /* the first backend option given */
	int n = 0, c, idx;

	memset(o, 0, sizeof(*o));
	o->json_out.fd = -1;
	o->guest.backend = GUEST_SYNTH;
	synth_opts_default(&o->guest.synth);
	hmig_config_init(&o->cfg);
	/* The demo shows a guest pre-copy alone struggles with: it writes
	 * 500k pages/s, about the rate pass 0 sends them here. */
	if (role == ROLE_DEMO)
		o->guest.synth.workload = "uniform:rate=500000";
	o->warmup = 1;
	o->run_after = 1;
	o->ready_fd = -1;
	for (size_t i = 0; i < NOPTS; i++) {
		if (!(table[i].roles & (int)role))
			continue;
		longopts[n++] = (struct option){ table[i].name, table[i].has_arg, NULL,
						 (int)i + 256 };
	}
	longopts[n] = (struct option){ 0 };
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "o:", longopts, &idx)) != -1) {
		const struct mig_opt *opt;
		int rc;

		/* -o, or --o as getopt_long also takes it */
		if (c == 'o' || (c >= 256 && c < 256 + (int)NOPTS && !strcmp(table[c - 256].name, "o"))) {
			if (set_knob(o, role, optarg))
				return -1;
			continue;
		}
		if (c < 256 || c >= 256 + (int)NOPTS) {
			die_msg("unknown or incomplete option '%s': run 'hmig %s --help'",
				argv[optind - 1], argv[0]);
			return -1;
		}
		opt = &table[c - 256];
		switch (opt->group) {
		case GROUP_SYNTH:
			rc = synth_opt_set(&o->guest.synth, opt->name, optarg);
			break;
		default:
			rc = apply(o, opt->name, optarg);
			break;
		}
		if (rc)
			return -1;
		if (opt->group != GROUP_MIG && !group_opt)
			group_opt = opt;
	}
	/* Checked once all are read: --guest may come after --mem. */
	if (group_opt && groups[group_opt->group].backend != o->guest.backend) {
		die_msg("--%s is an option of the %s, not of this --guest", group_opt->name,
			groups[group_opt->group].title);
		return -1;
	}
	if (optind < argc) {
		die_msg("unexpected argument '%s': run 'hmig %s --help'", argv[optind], argv[0]);
		return -1;
	}
	if (role == ROLE_DEMO && o->guest.backend != GUEST_SYNTH) {
		die_msg("demo moves the built-in guest only: move a Xen domain with 'hmig send' and 'hmig recv' (docs/xen.md)");
		return -1;
	}
	if (role == ROLE_SEND && !o->to) {
		die_msg("send needs --to ADDR (where 'hmig recv --listen ADDR' runs)");
		return -1;
	}
	if (role == ROLE_RECV && !o->listen) {
		die_msg("recv needs --listen ADDR (e.g. --listen :4444)");
		return -1;
	}
	if (check_before_guest(o, role) || outfile_open(&o->json_out, o->json))
		return -1;
	/* Secure by default: the library refuses too, but here the remedy
	 * can name the options.  demo makes its own key (local.c).  Last, so
	 * that a bad address or path is named first. */
	int creds = !!o->cfg.tls_creds + !!o->cfg.tls_psk + o->cfg.insecure;
	if (creds > 1 || (role != ROLE_DEMO && !creds)) {
		if (creds > 1)
			die_msg("give one of --tls-creds, --tls-psk and --insecure");
		else
			die_msg("%s needs credentials: --tls-psk FILE or --tls-creds DIR (make them with 'hmig keygen'), or --insecure to migrate in plaintext to anyone who reaches the port",
				role == ROLE_SEND ? "send" : "recv");
		outfile_drop(&o->json_out);
		return -1;
	}
	return 0;
}
