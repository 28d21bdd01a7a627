#include <errno.h>
#include "common/err.h"
#include "guest/synth/synth.h"
int synth_open(const struct hmig_synth_params *params, struct hmig_guest **out, char *errbuf)
{
	(void)params; (void)out;
	return err_setf(errbuf, -ENOSYS, "synth: not yet");
}
