/* libFuzzer target: the source's handling of what the destination sends
 * (src/engine/source.c, sender.c: the HELLO echo, SYNC answers, RESUMED,
 * DONE, ERROR on bulk, and REQUESTs on urgent in post-copy).  The input is
 * the destination's side of the stream: bulk, then after "HMIGURGT" urgent.
 * Its first record's session id is replaced by the real one (fake.h).  The
 * mode comes from the input's first byte, so each state is reachable. */
#include <stdint.h>
#include <stdio.h>

#include <hmig/hmig.h>

#include "fake.h"

#define NPAGES 64

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *bulk, *urgent;
	size_t nb, nu;
	struct hmig_config cfg;
	struct hmig_source *s;
	struct hmig_guest *g;
	char err[256];

	if (size < 1)
		return 0;
	hmig_config_init(&cfg);
	cfg.insecure = true;
	cfg.mode = (enum hmig_mode)(data[0] % 3);
	cfg.max_passes = 2;
	cfg.batch_pages = 16;
	data++;
	size--;
	fake_split(data, size, &bulk, &nb, &urgent, &nu);
	fake_net_feed(bulk, nb, urgent, nu, 1);
	g = fake_guest_source(NPAGES);
	if (hmig_source_new(&cfg, g, &s, err) == 0) {
		hmig_source_run(s, "fuzz");
		hmig_source_free(s);
	}
	g->ops->destroy(g);
	return 0;
}
