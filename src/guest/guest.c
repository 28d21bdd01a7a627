/* The one place a guest backend is chosen. */
#include <errno.h>
#include <string.h>

#include <hmig/guest.h>

#include "common/err.h"
#include "guest/synth/synth.h"

int hmig_guest_open(const char *backend, const void *params,
		    struct hmig_guest **out, char *errbuf)
{
	*out = NULL;
	errbuf[0] = '\0';
	if (!backend || !strcmp(backend, "synth"))
		return synth_open(params, out, errbuf);
	if (!strcmp(backend, "xen"))
		return err_setf(errbuf, -EOPNOTSUPP,
				"guest backend 'xen' is not built in: install libxen-dev and rebuild (meson -Dxen=enabled)");
	return err_setf(errbuf, -EINVAL,
			"unknown guest backend '%s': use 'synth'", backend);
}

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
