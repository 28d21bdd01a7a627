/* libFuzzer target: the destination's whole record loop (src/engine/dest.c,
 * pages.c, rec.c and the decoders under them), fed the input as what the
 * source sends.  The channels are fake_net.c's (bulk, then after
 * "HMIGURGT" urgent), the guest is fake_guest.c's: everything else is the
 * real engine, run by hmig_dest_run as 'hmig recv' runs it, insecure (so
 * every PAGES record carries CRC32Cs the input must get right) and limited
 * to 16 MiB guests. */
#include <stdint.h>
#include <stdio.h>

#include <hmig/hmig.h>

#include "fake.h"

#define MAX_PAGES 4096

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *bulk, *urgent;
	size_t nb, nu;
	struct hmig_config cfg;
	struct hmig_guest *g = fake_guest_dest(MAX_PAGES);
	struct hmig_dest *d;
	char err[256];

	fake_split(data, size, &bulk, &nb, &urgent, &nu);
	fake_net_feed(bulk, nb, urgent, nu, 0);
	hmig_config_init(&cfg);
	cfg.insecure = true;
	cfg.max_mem = (uint64_t)MAX_PAGES * 4096;
	if (hmig_dest_new(&cfg, g, "fuzz", &d, err) == 0) {
		hmig_dest_run(d);
		hmig_dest_free(d);
	}
	g->ops->destroy(g);
	return 0;
}
