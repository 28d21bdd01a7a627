/* The spellings of enum hmig_mode, the one mode type: the engine's knobs,
 * the HELLO record (its values are the wire values) and the report all use
 * it, so its names live at the bottom where every layer may call them. */
#include <errno.h>
#include <string.h>

#include <hmig/hmig.h>

int hmig_mode_parse(const char *s, enum hmig_mode *m)
{
	if (!strcmp(s, "precopy"))
		*m = HMIG_MODE_PRECOPY;
	else if (!strcmp(s, "postcopy"))
		*m = HMIG_MODE_POSTCOPY;
	else if (!strcmp(s, "hybrid"))
		*m = HMIG_MODE_HYBRID;
	else
		return -EINVAL;
	return 0;
}

const char *hmig_mode_name(enum hmig_mode m)
{
	switch (m) {
	case HMIG_MODE_PRECOPY: return "precopy";
	case HMIG_MODE_POSTCOPY: return "postcopy";
	case HMIG_MODE_HYBRID: return "hybrid";
	}
	return "?";
}
