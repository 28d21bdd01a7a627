#include "common/esc.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/utf8.h"

/* Length of the printable character at s (n bytes left), or 0 when the byte
 * at s must be escaped. */
static size_t printable(const uint8_t *s, size_t n)
{
	size_t l;

	if (s[0] >= 0x20 && s[0] < 0x7f)
		return 1;
	if (s[0] < 0x80)
		return 0;   /* C0 controls and DEL */
	l = utf8_len(s, n);
	/* U+0080..U+009F are C1 controls: 0xc2 0x80..0x9f. */
	if (l == 2 && s[0] == 0xc2 && s[1] < 0xa0)
		return 0;
	return l;
}

size_t esc_text(char *dst, size_t dstlen, const char *src, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	const uint8_t *s = (const uint8_t *)src;
	size_t o = 0;

	if (!dstlen)
		return 0;
	for (size_t i = 0; i < n;) {
		size_t l = printable(s + i, n - i);

		if (l) {
			if (o + l >= dstlen)
				break;
			memcpy(dst + o, s + i, l);
			o += l;
			i += l;
			continue;
		}
		if (o + 4 >= dstlen)
			break;
		dst[o++] = '\\';
		dst[o++] = 'x';
		dst[o++] = hex[s[i] >> 4];
		dst[o++] = hex[s[i] & 15];
		i++;
	}
	dst[o] = '\0';
	return o;
}

bool esc_is_clean(const char *s, size_t n)
{
	for (size_t i = 0; i < n;) {
		size_t l = printable((const uint8_t *)s + i, n - i);

		if (!l)
			return false;
		i += l;
	}
	return true;
}

void esc_inplace(char *buf, size_t len)
{
	size_t n = strnlen(buf, len);
	char *tmp;

	if (esc_is_clean(buf, n))
		return;
	tmp = malloc(ESC_MAX(n) + 1);
	if (!tmp) {
		/* No memory for the long form: blank what is unsafe instead. */
		for (size_t i = 0; i < n; i++)
			if ((unsigned char)buf[i] < 0x20 || (unsigned char)buf[i] >= 0x7f)
				buf[i] = '?';
		return;
	}
	esc_text(tmp, ESC_MAX(n) + 1, buf, n);
	esc_text(buf, len, tmp, strlen(tmp));
	free(tmp);
}
