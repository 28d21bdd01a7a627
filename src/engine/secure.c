/* Who may migrate, and what protects the stream: the engine's side of
 * transport security (README, "Trust model"; src/net/tls.h does TLS). */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "common/crc32c.h"
#include "common/err.h"
#include "engine/engine.h"

int eng_tls_load(const struct hmig_config *cfg, bool server, struct net_tls **out, char *err)
{
	struct net_tls_config tc = { .creds_dir = cfg->tls_creds, .psk_file = cfg->tls_psk };

	*out = NULL;
	if (cfg->tls_creds && cfg->tls_psk)
		return err_setf(err, -EINVAL, "both an X.509 credentials directory and a pre-shared key given: use one (--tls-creds DIR or --tls-psk FILE)");
	if (!cfg->tls_creds && !cfg->tls_psk) {
		if (cfg->insecure)
			return 0;
		return err_setf(err, -EINVAL, "no credentials: give --tls-creds DIR or --tls-psk FILE (make them with 'hmig keygen'), or --insecure to migrate in plaintext to anyone who reaches the port");
	}
	if (cfg->insecure)
		return err_setf(err, -EINVAL, "--insecure and credentials both given: drop one");
	return net_tls_new(out, &tc, server, err);
}

void eng_report_security(struct stats_report *rep, const struct net_chan *bulk)
{
	struct net_tls_info i;

	net_chan_security(bulk, &i);
	rep->security.known = true;
	rep->security.encrypted = i.encrypted;
	rep->security.ktls = i.ktls;
	rep->security.ktls_available = i.ktls_available;
	snprintf(rep->security.auth, sizeof(rep->security.auth), "%s", i.auth);
	snprintf(rep->security.cipher, sizeof(rep->security.cipher), "%s", i.cipher);
	snprintf(rep->security.peer, sizeof(rep->security.peer), "%s", i.peer);
	snprintf(rep->security.integrity, sizeof(rep->security.integrity), "%s",
		 i.encrypted ? "aead" : crc32c_hw() ? "crc32c-sse4.2" : "crc32c-table");
}

/* MemAvailable from /proc/meminfo, bytes; 0 when it cannot be read. */
static uint64_t mem_available(void)
{
	char line[128];
	unsigned long long kib = 0;
	FILE *f = fopen("/proc/meminfo", "re");

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "MemAvailable: %llu kB", &kib) == 1)
			break;
	fclose(f);
	return (uint64_t)kib * 1024;
}

int eng_mem_allowed(const struct hmig_guest_geometry *geo, uint64_t max_mem, char *err)
{
	/* npages <= 2^40 and page_size <= 2^21 (proto): no overflow. */
	uint64_t bytes = geo->npages * geo->page_size, avail;

	if (max_mem) {
		if (bytes > max_mem)
			return err_setf(err, -EFBIG, "the source's guest of %llu MiB is larger than this destination's limit of %llu MiB (raise --max-mem / max_mem if that is meant)",
					(unsigned long long)(bytes >> 20), (unsigned long long)(max_mem >> 20));
		return 0;
	}
	avail = mem_available();
	if (avail && bytes > avail)
		return err_setf(err, -ENOMEM, "the source's guest of %llu MiB is larger than this host's available memory (%llu MiB); free memory, or set --max-mem to take it anyway",
				(unsigned long long)(bytes >> 20), (unsigned long long)(avail >> 20));
	return 0;
}
