#include "common/err.h"

#include <stdarg.h>
#include <stdio.h>

int err_setf(char *buf, int rc, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, ERR_LEN, fmt, ap);
	va_end(ap);
	return rc;
}

int err_keepf(char *buf, int rc, const char *fmt, ...)
{
	va_list ap;

	if (buf[0])
		return rc;
	va_start(ap, fmt);
	vsnprintf(buf, ERR_LEN, fmt, ap);
	va_end(ap);
	return rc;
}
