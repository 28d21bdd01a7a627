#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cmd.h"

uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void die_msg(const char *fmt, ...)
{
	va_list ap;

	fputs("hmig: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

int opt_size(const char *opt, const char *s, uint64_t *out)
{
	char *end;
	uint64_t mult = 1;

	errno = 0;
	double v = strtod(s, &end);
	if (end == s || errno || v < 0 || !isfinite(v))
		goto bad;
	switch (*end) {
	case 'k': case 'K': mult = 1ull << 10; end++; break;
	case 'm': case 'M': mult = 1ull << 20; end++; break;
	case 'g': case 'G': mult = 1ull << 30; end++; break;
	case 't': case 'T': mult = 1ull << 40; end++; break;
	}
	if (*end == 'i' && end[-1] != *s)
		end++;
	if (*end == 'B' || *end == 'b')
		end++;
	if (*end || v * (double)mult > 1e18)
		goto bad;
	*out = (uint64_t)(v * (double)mult);
	return 0;
bad:
	die_msg("bad size for %s: '%s' (use a number with an optional K, M, G or T suffix, e.g. 1G)",
		opt, s);
	return -1;
}

int opt_u64(const char *opt, const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
	char *end;

	errno = 0;
	unsigned long long v = strtoull(s, &end, 0);
	if (end == s || *end || errno || *s == '-' || v < min || v > max) {
		die_msg("bad value for %s: '%s' (expected an integer from %" PRIu64 " to %" PRIu64 ")",
			opt, s, min, max);
		return -1;
	}
	*out = v;
	return 0;
}

int opt_double(const char *opt, const char *s, double min, double max, double *out)
{
	char *end;

	errno = 0;
	double v = strtod(s, &end);
	if (end == s || *end || errno || !(v >= min && v <= max)) {
		die_msg("bad value for %s: '%s' (expected a number from %g to %g)",
			opt, s, min, max);
		return -1;
	}
	*out = v;
	return 0;
}

int outfile_open(struct outfile *f, const char *path)
{
	*f = (struct outfile){ .path = path, .fd = -1 };
	if (!path)
		return 0;
	f->fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	f->created = f->fd >= 0;
	if (f->fd < 0 && errno == EEXIST)
		f->fd = open(path, O_WRONLY | O_CLOEXEC);
	if (f->fd < 0) {
		die_msg("cannot write %s: %s (choose a writable path)", path, strerror(errno));
		return -1;
	}
	return 0;
}

int outfile_write(struct outfile *f, const char *text, size_t len)
{
	int rc = 0;

	if (f->fd < 0)
		return 0;
	if (ftruncate(f->fd, 0))
		rc = -errno;
	for (size_t off = 0; !rc && off < len;) {
		ssize_t n = pwrite(f->fd, text + off, len - off, (off_t)off);

		if (n < 0 && errno != EINTR)
			rc = -errno;
		off += n > 0 ? (size_t)n : 0;
	}
	if (close(f->fd) && !rc)
		rc = -errno;
	f->fd = -1;
	if (rc) {
		die_msg("cannot write %s: %s", f->path, strerror(-rc));
		return -1;
	}
	return 0;
}

void outfile_drop(struct outfile *f)
{
	if (f->fd < 0)
		return;
	close(f->fd);
	f->fd = -1;
	if (f->created)
		unlink(f->path);
}
