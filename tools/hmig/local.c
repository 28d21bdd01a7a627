/* A migration between two local processes: 'hmig recv' as a child on a
 * loopback port, the source in this process.  Used by demo and bench.
 *
 * Nothing outlives it: the reports go to memory files (memfd) that both
 * processes reach by /proc/self/fd paths, not to a temporary directory,
 * and the child dies with this process (PR_SET_PDEATHSIG) even when this
 * one is killed outright. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cmd.h"
#include "keygen.h"
#include "local.h"

static char *slurp(int fd, size_t *len)
{
	FILE *f = fd >= 0 ? fdopen(dup(fd), "r") : NULL;
	char *buf = NULL;

	*len = 0;
	if (!f)
		return NULL;
	if (fseek(f, 0, SEEK_END) == 0) {
		long n = ftell(f);

		rewind(f);
		buf = n >= 0 ? malloc((size_t)n + 1) : NULL;
		if (buf) {
			*len = fread(buf, 1, (size_t)n, f);
			buf[*len] = '\0';
		}
	}
	fclose(f);
	return buf;
}

/* Starts the destination: this binary's 'recv --quiet' on 127.0.0.1, any
 * port; returns the address it bound (read from a pipe). */
static pid_t start_dest(const struct mig_opts *o, const char *json_path, char *addr,
			size_t addr_len)
{
	int pfd[2];
	char run_after[32];

	if (pipe2(pfd, O_CLOEXEC))
		return -1;
	pid_t pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		char *args[64];
		int n = 0;

		/* A demo killed outright must not leave its recv listening. */
		if (prctl(PR_SET_PDEATHSIG, SIGKILL) || getppid() == 1)
			_exit(1);

		snprintf(run_after, sizeof(run_after), "%g", o->run_after);
		args[n++] = "hmig";
		args[n++] = "recv";
		args[n++] = "--listen";
		args[n++] = "127.0.0.1:0";
		args[n++] = "--ready-fd";
		args[n++] = "3";
		args[n++] = "--json";
		args[n++] = (char *)json_path;
		args[n++] = "--run-after";
		args[n++] = run_after;
		/* The caller prints what it wants of the report; errors still
		 * reach this process's stderr. */
		args[n++] = "--quiet";
		/* The pair's security, as the source has it (local_migrate made
		 * an ephemeral key unless told otherwise). */
		if (o->cfg.insecure) {
			args[n++] = "--insecure";
		} else if (o->cfg.tls_psk) {
			args[n++] = "--tls-psk";
			args[n++] = (char *)o->cfg.tls_psk;
		} else if (o->cfg.tls_creds) {
			args[n++] = "--tls-creds";
			args[n++] = (char *)o->cfg.tls_creds;
		}
		/* The destination's knobs, as this side parsed them: 'recv'
		 * refuses the source's (the source sends what it needs). */
		char knobs[24][96];
		const struct hmig_knob *k;
		unsigned nk = 0;

		for (unsigned i = 0; (k = hmig_config_knob(i)) && nk < 24; i++) {
			char val[64];

			if (!(k->sides & HMIG_SIDE_DEST) ||
			    hmig_config_get(&o->cfg, k->key, val, sizeof(val)))
				continue;
			snprintf(knobs[nk], sizeof(knobs[nk]), "%s=%s", k->key, val);
			args[n++] = "-o";
			args[n++] = knobs[nk++];
		}
		args[n] = NULL;
		if (dup2(pfd[1], 3) < 0)
			_exit(1);
		execv("/proc/self/exe", args);
		_exit(127);
	}
	close(pfd[1]);
	struct pollfd p = { .fd = pfd[0], .events = POLLIN };
	ssize_t got = 0;
	/* 10 s covers a loaded machine; the child only has to bind a socket. */
	if (poll(&p, 1, 10000) == 1)
		got = read(pfd[0], addr, addr_len - 1);
	close(pfd[0]);
	if (got <= 0) {
		addr[0] = '\0';
		return pid; /* the caller reaps it and reports */
	}
	addr[got] = '\0';
	addr[strcspn(addr, "\n")] = '\0';
	return pid;
}


/* A memory file for a report or an output, and the path another process
 * opens it by. */
static int memfile(const char *name, char *path, size_t len)
{
	int fd = memfd_create(name, 0); /* no CLOEXEC: the child opens it too */

	if (fd >= 0)
		snprintf(path, len, "/proc/%ld/fd/%d", (long)getpid(), fd);
	return fd;
}

int local_migrate(const struct mig_opts *o, struct local_run *lr)
{
	char dst_json[64], src_json[64], addr[128], psk[64], err[256];
	int fd_dj, fd_sj, fd_psk = -1;
	struct mig_opts lo = *o;

	memset(lr, 0, sizeof(*lr));
	fd_dj = memfile("hmig-dest.json", dst_json, sizeof(dst_json));
	fd_sj = memfile("hmig-source.json", src_json, sizeof(src_json));
	if (fd_dj < 0 || fd_sj < 0) {
		die_msg("cannot make memory files for the reports: %s", strerror(errno));
		return 1;
	}
	/* No credentials given: a fresh key for this pair only, in a memory
	 * file the child inherits, gone when the run ends. */
	if (!lo.cfg.insecure && !lo.cfg.tls_psk && !lo.cfg.tls_creds) {
		fd_psk = memfile("hmig-pair.psk", psk, sizeof(psk));
		if (fd_psk < 0 || keygen_psk(psk, "hmig-local", err)) {
			die_msg("%s", fd_psk < 0 ? strerror(errno) : err);
			close(fd_dj), close(fd_sj);
			if (fd_psk >= 0)
				close(fd_psk);
			return 1;
		}
		lo.cfg.tls_psk = psk;
	}
	o = &lo;

	pid_t pid = start_dest(o, dst_json, addr, sizeof(addr));
	if (pid < 0) {
		die_msg("cannot start the destination process: %s", strerror(errno));
		close(fd_dj), close(fd_sj);
		if (fd_psk >= 0)
			close(fd_psk);
		return 1;
	}
	int src_status = 1;
	if (addr[0]) {
		struct mig_opts so = *o;

		so.json = src_json;
		so.no_summary = true;
		src_status = outfile_open(&so.json_out, src_json) ? 1 : run_source(&so, addr);
	}
	int wst = 0;
	if (!addr[0] || src_status)
		kill(pid, SIGTERM); /* a destination left waiting would wait forever */
	waitpid(pid, &wst, 0);
	int dst_status = WIFEXITED(wst) ? WEXITSTATUS(wst) : 1;
	if (!addr[0])
		die_msg("the destination process did not start listening (status %d)", dst_status);

	lr->src_json = slurp(fd_sj, &lr->src_len);
	lr->dst_json = slurp(fd_dj, &lr->dst_len);
	close(fd_dj);
	close(fd_sj);
	if (fd_psk >= 0)
		close(fd_psk);
	return src_status || dst_status ? 1 : 0;
}

void local_run_free(struct local_run *lr)
{
	free(lr->src_json);
	free(lr->dst_json);
	memset(lr, 0, sizeof(*lr));
}
