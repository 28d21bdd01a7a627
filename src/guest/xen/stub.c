/* hmig built without Xen (meson found no libxen-dev): the openers of
 * include/hmig/xen.h still exist, so the export list does not depend on the
 * build, and say how to get the real ones. */
#include <errno.h>

#include <hmig/xen.h>

#include "common/err.h"

static int not_built(char *errbuf)
{
	return err_setf(errbuf, -EOPNOTSUPP,
			"hmig was built without Xen: install libxen-dev and rebuild (meson setup -Dxen=enabled)");
}

int hmig_xen_open(uint32_t domid, const struct hmig_xen_options *opts, struct hmig_guest **out,
		  char *errbuf)
{
	(void)domid;
	(void)opts;
	*out = 0;
	return not_built(errbuf);
}

int hmig_xen_open_dest(uint32_t domid, const struct hmig_xen_options *opts,
		       struct hmig_guest **out, char *errbuf)
{
	(void)domid;
	(void)opts;
	*out = 0;
	return not_built(errbuf);
}

/* No guest of this build is a Xen one. */
int hmig_xen_stats(struct hmig_guest *g, struct hmig_xen_stats *st)
{
	*st = (struct hmig_xen_stats){ 0 };
	return err_setf(g->err, -EINVAL, "hmig_xen_stats: this is a '%s' guest, not a Xen one",
			g->ops->name);
}
