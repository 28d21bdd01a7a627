/* Migrates a running synth guest through hmig's public API, source and
 * destination in one process (the destination on a second thread, over
 * loopback TCP), then asks the destination guest's oracle whether every
 * byte arrived.
 *
 *   cc migrate.c $(pkg-config --cflags --libs hmig) -pthread -o migrate
 *   ./migrate [MODE]        MODE: hybrid (default), precopy or postcopy
 *
 * Exit status 0 when the migration succeeded and the oracle said ok.
 */
#define _POSIX_C_SOURCE 200809L /* nanosleep */

#include <pthread.h>
#include <stdio.h>
#include <time.h>

#include <hmig/hmig.h>
#include <hmig/synth.h>

struct dest_side {
	struct hmig_dest *dst;
	int rc;
};

static void *dest_main(void *arg)
{
	struct dest_side *d = arg;

	d->rc = hmig_dest_run(d->dst);
	return NULL;
}

int main(int argc, char **argv)
{
	struct hmig_synth_params params = {
		.mem_bytes = 64 << 20, .vcpus = 2, .workload = "uniform:rate=20000", .fill = 1.0,
	};
	struct timespec warmup = { .tv_nsec = 200 * 1000 * 1000 };
	struct hmig_guest *src_guest = NULL, *dst_guest = NULL;
	struct hmig_source *src = NULL;
	struct dest_side d = { 0 };
	struct hmig_config cfg;
	pthread_t thread;
	char err[256];
	int rc, status = 1;

	hmig_config_init(&cfg);
	if (argc > 1 && hmig_config_set(&cfg, "mode", argv[1], err)) {
		fprintf(stderr, "migrate: %s\n", err);
		return 2;
	}
	cfg.accept_timeout_ms = 10000; /* never wait forever for a source */
	/* Both ends are threads of this process on loopback: no one else can
	 * get in between.  Across hosts, set cfg.tls_psk or cfg.tls_creds
	 * instead (README, "Trust model"). */
	cfg.insecure = true;

	/* The destination: an empty guest, listening on a port the kernel picks. */
	if (hmig_synth_open_dest(&dst_guest, err) ||
	    hmig_dest_new(&cfg, dst_guest, "127.0.0.1:0", &d.dst, err)) {
		fprintf(stderr, "migrate: destination: %s\n", err);
		goto out;
	}
	/* The source: a running guest writing 20k pages/s. */
	if (hmig_synth_open(&params, &src_guest, err)) {
		fprintf(stderr, "migrate: source guest: %s\n", err);
		goto out;
	}
	if ((rc = src_guest->ops->run(src_guest))) {
		fprintf(stderr, "migrate: source guest: %s\n", hmig_guest_error(src_guest));
		goto out;
	}
	nanosleep(&warmup, NULL);
	if (hmig_source_new(&cfg, src_guest, &src, err)) {
		fprintf(stderr, "migrate: source: %s\n", err);
		goto out;
	}

	if (pthread_create(&thread, NULL, dest_main, &d)) {
		fprintf(stderr, "migrate: cannot start the destination thread\n");
		goto out;
	}
	rc = hmig_source_run(src, hmig_dest_address(d.dst));
	pthread_join(thread, NULL);
	if (rc)
		fprintf(stderr, "migrate: source: %s\n", hmig_source_error(src));
	if (d.rc)
		fprintf(stderr, "migrate: destination: %s\n", hmig_dest_error(d.dst));
	if (rc || d.rc)
		goto out;

	/* The guest now runs on the destination: pause it and ask the oracle. */
	dst_guest->ops->pause(dst_guest);
	rc = dst_guest->ops->verify(dst_guest);
	printf("%s migration: integrity %s%s%s\n", hmig_mode_name(cfg.mode),
	       rc ? "mismatch" : "ok", rc ? ": " : "", rc ? hmig_guest_error(dst_guest) : "");
	status = rc ? 1 : 0;
out:
	hmig_source_free(src);
	if (src_guest)
		src_guest->ops->destroy(src_guest);
	hmig_dest_free(d.dst);
	if (dst_guest)
		dst_guest->ops->destroy(dst_guest);
	return status;
}
