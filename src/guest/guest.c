/* What every backend shares: the names of the dirty logging modes.  Each
 * backend's openers live with it (synth/synth.c); choosing one by name is the
 * program's business (include/hmig/guest.h). */
#include <errno.h>
#include <string.h>

#include <hmig/guest.h>

const char *hmig_dirty_mode_name(enum hmig_dirty_mode m)
{
	switch (m) {
	case HMIG_DIRTY_AUTO: return "auto";
	case HMIG_DIRTY_WP_ASYNC: return "uffd-wp-async+pagemap-scan";
	case HMIG_DIRTY_WP_SYNC: return "uffd-wp-sync";
	case HMIG_DIRTY_BACKEND: return "backend";
	}
	return "?";
}

int hmig_dirty_mode_parse(const char *s, enum hmig_dirty_mode *m)
{
	if (!strcmp(s, "auto"))
		*m = HMIG_DIRTY_AUTO;
	else if (!strcmp(s, "async"))
		*m = HMIG_DIRTY_WP_ASYNC;
	else if (!strcmp(s, "sync"))
		*m = HMIG_DIRTY_WP_SYNC;
	else
		return -EINVAL;
	return 0;
}
