#include "stats/json.h"

#include "common/err.h"

#include <errno.h>
#include <inttypes.h>
#include <locale.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

/* ---- UTF-8 -------------------------------------------------------------- */

/* Length (1-4) of the valid UTF-8 sequence at s[0..n), or 0 if it is not one:
 * overlong forms, UTF-16 surrogates and code points above U+10FFFF are
 * invalid (RFC 3629 table 3-7). */
static size_t utf8_seq_len(const unsigned char *s, size_t n)
{
	unsigned char c = s[0];
	size_t len, i;
	unsigned char lo = 0x80, hi = 0xbf;

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		len = 2;
	else if (c >= 0xe0 && c <= 0xef)
		len = 3;
	else if (c >= 0xf0 && c <= 0xf4)
		len = 4;
	else
		return 0;
	if (n < len)
		return 0;
	if (c == 0xe0)
		lo = 0xa0;
	else if (c == 0xed)
		hi = 0x9f;
	else if (c == 0xf0)
		lo = 0x90;
	else if (c == 0xf4)
		hi = 0x8f;
	if (s[1] < lo || s[1] > hi)
		return 0;
	for (i = 2; i < len; i++)
		if (s[i] < 0x80 || s[i] > 0xbf)
			return 0;
	return len;
}

static size_t utf8_encode(uint32_t cp, char *out)
{
	if (cp < 0x80) {
		out[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		out[0] = (char)(0xc0 | (cp >> 6));
		out[1] = (char)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp < 0x10000) {
		out[0] = (char)(0xe0 | (cp >> 12));
		out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		out[2] = (char)(0x80 | (cp & 0x3f));
		return 3;
	}
	out[0] = (char)(0xf0 | (cp >> 18));
	out[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
	out[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
	out[3] = (char)(0x80 | (cp & 0x3f));
	return 4;
}

/* ---- the writer --------------------------------------------------------- */

void json_writer_init(struct json_writer *w, FILE *f, unsigned pretty)
{
	memset(w, 0, sizeof(*w));
	w->f = f;
	w->pretty = pretty;
}

void json_writer_free(struct json_writer *w)
{
	free(w->buf);
	w->buf = NULL;
	w->len = w->cap = 0;
}

static int wr_fail(struct json_writer *w, int rc)
{
	if (!w->err)
		w->err = rc;
	return w->err;
}

static void emit(struct json_writer *w, const char *s, size_t n)
{
	if (w->err || n == 0)
		return;
	if (w->f) {
		if (fwrite(s, 1, n, w->f) != n)
			wr_fail(w, errno ? -errno : -EIO);
		return;
	}
	if (w->len + n + 1 > w->cap) {
		size_t cap = w->cap ? w->cap : 256;
		char *nb;

		while (cap < w->len + n + 1)
			cap *= 2;
		nb = realloc(w->buf, cap);
		if (!nb) {
			wr_fail(w, -ENOMEM);
			return;
		}
		w->buf = nb;
		w->cap = cap;
	}
	memcpy(w->buf + w->len, s, n);
	w->len += n;
	w->buf[w->len] = '\0';
}

static void emit_s(struct json_writer *w, const char *s)
{
	emit(w, s, strlen(s));
}

static void newline_indent(struct json_writer *w, unsigned depth)
{
	static const char spaces[] = "                                ";
	unsigned n = depth * 2;

	emit(w, "\n", 1);
	while (n) {
		unsigned k = n < sizeof(spaces) - 1 ? n : sizeof(spaces) - 1;

		emit(w, spaces, k);
		n -= k;
	}
}

/* Before an array item or an object key: the comma, then a new line on the
 * pretty levels or (pretty, deeper levels) a space. */
static void separate(struct json_writer *w)
{
	bool first = w->level[w->depth - 1].n++ == 0;

	if (!first)
		emit(w, ",", 1);
	if (w->depth <= w->pretty)
		newline_indent(w, w->depth);
	else if (w->pretty && !first)
		emit(w, " ", 1);
}

/* Everything that starts a value (scalar or container) goes through here: it
 * checks the value is allowed where it is and writes the separator. */
static int value_begin(struct json_writer *w)
{
	if (w->err)
		return w->err;
	if (w->depth == 0) {
		if (w->done)
			return wr_fail(w, -EINVAL);	/* second top-level value */
		return 0;
	}
	if (w->level[w->depth - 1].close == '}') {
		if (!w->key_pending)
			return wr_fail(w, -EINVAL);	/* object value without key */
		w->key_pending = false;
		return 0;
	}
	separate(w);
	return w->err;
}

static int value_end(struct json_writer *w)
{
	if (w->depth == 0)
		w->done = true;
	return w->err;
}

static int container_begin(struct json_writer *w, char open, char close)
{
	if (value_begin(w))
		return w->err;
	if (w->depth == JSON_WRITER_MAX_DEPTH)
		return wr_fail(w, -EINVAL);
	emit(w, &open, 1);
	w->level[w->depth].close = close;
	w->level[w->depth].n = 0;
	w->depth++;
	return w->err;
}

static int container_end(struct json_writer *w, char close)
{
	if (w->err)
		return w->err;
	if (w->depth == 0 || w->level[w->depth - 1].close != close ||
	    w->key_pending)
		return wr_fail(w, -EINVAL);
	w->depth--;
	if (w->level[w->depth].n && w->depth < w->pretty)
		newline_indent(w, w->depth);
	emit(w, &close, 1);
	return value_end(w);
}

int json_obj_begin(struct json_writer *w)
{
	return container_begin(w, '{', '}');
}

int json_obj_end(struct json_writer *w)
{
	return container_end(w, '}');
}

int json_arr_begin(struct json_writer *w)
{
	return container_begin(w, '[', ']');
}

int json_arr_end(struct json_writer *w)
{
	return container_end(w, ']');
}

static void emit_escaped(struct json_writer *w, const char *s, size_t n)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0, run = 0;
	char esc[8];

	emit(w, "\"", 1);
	while (i < n) {
		unsigned char c = p[i];
		const char *rep = NULL;
		size_t k;

		if (c >= 0x20 && c != '"' && c != '\\' && c < 0x80) {
			i++;
			run++;
			continue;
		}
		if (c >= 0x80) {
			k = utf8_seq_len(p + i, n - i);
			if (k) {
				i += k;
				run += k;
				continue;
			}
		}
		/* Flush the plain run before the byte that needs work. */
		emit(w, (const char *)p + i - run, run);
		run = 0;
		switch (c) {
		case '"': rep = "\\\""; break;
		case '\\': rep = "\\\\"; break;
		case '\b': rep = "\\b"; break;
		case '\f': rep = "\\f"; break;
		case '\n': rep = "\\n"; break;
		case '\r': rep = "\\r"; break;
		case '\t': rep = "\\t"; break;
		default:
			if (c < 0x20) {
				snprintf(esc, sizeof(esc), "\\u%04x", c);
				rep = esc;
			} else {
				rep = "\xef\xbf\xbd";	/* U+FFFD for a bad byte */
			}
		}
		emit_s(w, rep);
		i++;
	}
	emit(w, (const char *)p + i - run, run);
	emit(w, "\"", 1);
}

int json_key(struct json_writer *w, const char *key)
{
	if (w->err)
		return w->err;
	if (w->depth == 0 || w->level[w->depth - 1].close != '}' ||
	    w->key_pending)
		return wr_fail(w, -EINVAL);
	separate(w);
	emit_escaped(w, key, strlen(key));
	emit_s(w, w->pretty ? ": " : ":");
	w->key_pending = true;
	return w->err;
}

int json_put_strn(struct json_writer *w, const char *s, size_t n)
{
	if (value_begin(w))
		return w->err;
	emit_escaped(w, s, n);
	return value_end(w);
}

int json_put_str(struct json_writer *w, const char *s)
{
	return json_put_strn(w, s, strlen(s));
}

static int put_raw(struct json_writer *w, const char *text)
{
	if (value_begin(w))
		return w->err;
	emit_s(w, text);
	return value_end(w);
}

int json_put_u64(struct json_writer *w, uint64_t v)
{
	char b[24];

	snprintf(b, sizeof(b), "%" PRIu64, v);
	return put_raw(w, b);
}

int json_put_i64(struct json_writer *w, int64_t v)
{
	char b[24];

	snprintf(b, sizeof(b), "%" PRId64, v);
	return put_raw(w, b);
}

int json_put_double(struct json_writer *w, double v)
{
	char b[40], out[40];
	size_t i, o = 0;
	int prec;

	if (!isfinite(v))
		return put_raw(w, "null");
	/* Shortest precision that reads back identically: 0.1 stays "0.1"
	 * instead of %.17g's "0.10000000000000001".  snprintf and strtod use
	 * the same locale, so the round-trip check holds in any locale. */
	for (prec = 15; prec < 17; prec++) {
		snprintf(b, sizeof(b), "%.*g", prec, v);
		if (strtod(b, NULL) == v)
			break;
	}
	if (prec == 17)
		snprintf(b, sizeof(b), "%.17g", v);
	/* %g output is digits, sign, 'e' and the locale's decimal point, which
	 * may be "," or even multi-byte: replace whatever it is with '.'. */
	for (i = 0; b[i]; ) {
		char c = b[i];

		if ((c >= '0' && c <= '9') || c == '-' || c == '+' || c == 'e') {
			out[o++] = c;
			i++;
			continue;
		}
		out[o++] = '.';
		while (b[i] && !(b[i] >= '0' && b[i] <= '9'))
			i++;
	}
	out[o] = '\0';
	return put_raw(w, out);
}

int json_put_bool(struct json_writer *w, bool v)
{
	return put_raw(w, v ? "true" : "false");
}

int json_put_null(struct json_writer *w)
{
	return put_raw(w, "null");
}

int json_put_val(struct json_writer *w, const struct json_val *v)
{
	size_t i;

	if (!v)
		return json_put_null(w);
	switch (v->type) {
	case JSON_NULL:
		return json_put_null(w);
	case JSON_BOOL:
		return json_put_bool(w, v->b);
	case JSON_NUM:
		if (v->num.exact & JSON_EXACT_U64)
			return json_put_u64(w, v->num.u);
		if (v->num.exact & JSON_EXACT_I64)
			return json_put_i64(w, v->num.i);
		return json_put_double(w, v->num.d);
	case JSON_STR:
		return json_put_strn(w, v->str.s, v->str.len);
	case JSON_ARR:
		json_arr_begin(w);
		for (i = 0; i < v->arr.n; i++)
			json_put_val(w, &v->arr.items[i]);
		return json_arr_end(w);
	case JSON_OBJ:
		json_obj_begin(w);
		for (i = 0; i < v->obj.n; i++) {
			json_key(w, v->obj.m[i].key);
			json_put_val(w, &v->obj.m[i].val);
		}
		return json_obj_end(w);
	}
	return wr_fail(w, -EINVAL);
}

int json_writer_finish(struct json_writer *w)
{
	if (w->err)
		return w->err;
	if (!w->done || w->depth)
		return wr_fail(w, -EINVAL);
	if (w->pretty)
		emit(w, "\n", 1);
	return w->err;
}

int json_kv_str(struct json_writer *w, const char *key, const char *s)
{
	json_key(w, key);
	return json_put_str(w, s);
}

int json_kv_u64(struct json_writer *w, const char *key, uint64_t v)
{
	json_key(w, key);
	return json_put_u64(w, v);
}

int json_kv_i64(struct json_writer *w, const char *key, int64_t v)
{
	json_key(w, key);
	return json_put_i64(w, v);
}

int json_kv_double(struct json_writer *w, const char *key, double v)
{
	json_key(w, key);
	return json_put_double(w, v);
}

int json_kv_bool(struct json_writer *w, const char *key, bool v)
{
	json_key(w, key);
	return json_put_bool(w, v);
}

/* ---- the parser --------------------------------------------------------- */

struct parser {
	const unsigned char *s;
	size_t len;
	size_t pos;
	unsigned depth;
	unsigned max_depth;
	size_t values;
	size_t max_values;
	locale_t cloc;	/* "C" numeric locale for strtod_l */
	char *err;
};

static int perr(struct parser *p, int rc, size_t at, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static int perr(struct parser *p, int rc, size_t at, const char *fmt, ...)
{
	char what[160];
	unsigned line = 1, col = 1;
	size_t i;
	va_list ap;

	for (i = 0; i < at && i < p->len; i++) {
		if (p->s[i] == '\n') {
			line++;
			col = 1;
		} else if ((p->s[i] & 0xc0) != 0x80) {	/* count characters */
			col++;
		}
	}
	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	return err_setf(p->err, rc, "invalid JSON at byte %zu (line %u, column %u): %s",
			at, line, col, what);
}

/* What the byte at pos looks like, for messages. */
static const char *show(struct parser *p, size_t pos, char *b, size_t n)
{
	unsigned char c;

	if (pos >= p->len)
		return "end of input";
	c = p->s[pos];
	if (c > 0x20 && c < 0x7f)
		snprintf(b, n, "'%c'", c);
	else
		snprintf(b, n, "byte 0x%02x", c);
	return b;
}

static void skip_ws(struct parser *p)
{
	while (p->pos < p->len) {
		unsigned char c = p->s[p->pos];

		if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
			break;
		p->pos++;
	}
}

static int parse_value(struct parser *p, struct json_val *v);

static int hex4(struct parser *p, size_t at, uint32_t *out)
{
	uint32_t cp = 0;
	size_t i;

	if (at + 4 > p->len)
		return perr(p, -EINVAL, at, "\\u needs four hex digits");
	for (i = 0; i < 4; i++) {
		unsigned char c = p->s[at + i];

		cp <<= 4;
		if (c >= '0' && c <= '9')
			cp |= c - '0';
		else if (c >= 'a' && c <= 'f')
			cp |= c - 'a' + 10;
		else if (c >= 'A' && c <= 'F')
			cp |= c - 'A' + 10;
		else
			return perr(p, -EINVAL, at + i, "\\u needs four hex digits");
	}
	*out = cp;
	return 0;
}

/* Parses the string starting at the opening quote into a malloc'd,
 * NUL-terminated buffer.  The decoded text is never longer than the raw text
 * (\uXXXX is 6 bytes for at most 3 of UTF-8, a surrogate pair 12 for 4), so one
 * allocation of the raw length is enough. */
static int parse_string(struct parser *p, char **out, size_t *out_len)
{
	size_t start = ++p->pos, end = start, o = 0;
	char *buf;
	int rc;

	while (end < p->len && p->s[end] != '"')
		end += p->s[end] == '\\' ? 2 : 1;
	if (end >= p->len)
		return perr(p, -EINVAL, start - 1, "unterminated string");
	buf = malloc(end - start + 1);
	if (!buf)
		return -ENOMEM;
	while (p->pos < end) {
		unsigned char c = p->s[p->pos];
		size_t k;
		uint32_t cp, lo;

		if (c < 0x20) {
			rc = perr(p, -EINVAL, p->pos,
				  "control character 0x%02x in string (escape it)", c);
			goto fail;
		}
		if (c >= 0x80) {
			k = utf8_seq_len(p->s + p->pos, end - p->pos);
			if (!k) {
				rc = perr(p, -EINVAL, p->pos, "invalid UTF-8 in string");
				goto fail;
			}
			memcpy(buf + o, p->s + p->pos, k);
			o += k;
			p->pos += k;
			continue;
		}
		if (c != '\\') {
			buf[o++] = (char)c;
			p->pos++;
			continue;
		}
		c = p->s[p->pos + 1];
		switch (c) {
		case '"': case '\\': case '/':
			buf[o++] = (char)c;
			break;
		case 'b': buf[o++] = '\b'; break;
		case 'f': buf[o++] = '\f'; break;
		case 'n': buf[o++] = '\n'; break;
		case 'r': buf[o++] = '\r'; break;
		case 't': buf[o++] = '\t'; break;
		case 'u':
			rc = hex4(p, p->pos + 2, &cp);
			if (rc)
				goto fail;
			if (cp >= 0xdc00 && cp <= 0xdfff) {
				rc = perr(p, -EINVAL, p->pos,
					  "lone low surrogate \\u%04x", cp);
				goto fail;
			}
			if (cp >= 0xd800 && cp <= 0xdbff) {
				if (p->pos + 12 > end || p->s[p->pos + 6] != '\\' ||
				    p->s[p->pos + 7] != 'u') {
					rc = perr(p, -EINVAL, p->pos,
						  "high surrogate \\u%04x not followed by a low one", cp);
					goto fail;
				}
				rc = hex4(p, p->pos + 8, &lo);
				if (rc)
					goto fail;
				if (lo < 0xdc00 || lo > 0xdfff) {
					rc = perr(p, -EINVAL, p->pos + 6,
						  "\\u%04x is not a low surrogate", lo);
					goto fail;
				}
				cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
				p->pos += 6;
			}
			o += utf8_encode(cp, buf + o);
			p->pos += 4;
			break;
		default:
			rc = perr(p, -EINVAL, p->pos, "invalid escape '\\%c'",
				  c >= 0x20 && c < 0x7f ? c : '?');
			goto fail;
		}
		p->pos += 2;
	}
	buf[o] = '\0';
	p->pos = end + 1;
	*out = buf;
	*out_len = o;
	return 0;
fail:
	free(buf);
	return rc;
}

static bool is_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

static int parse_number(struct parser *p, struct json_val *v)
{
	size_t start = p->pos, i = p->pos, n;
	bool neg = false, integral_text = true;
	uint64_t mag = 0;
	bool mag_ok = true;
	char small[64], *txt = small;
	double d;
	char b[16];

	if (i < p->len && p->s[i] == '-') {
		neg = true;
		i++;
	}
	if (i >= p->len || !is_digit(p->s[i]))
		return perr(p, -EINVAL, i, "expected a digit, found %s",
			    show(p, i, b, sizeof(b)));
	if (p->s[i] == '0' && i + 1 < p->len && is_digit(p->s[i + 1]))
		return perr(p, -EINVAL, i, "leading zero in number");
	for (; i < p->len && is_digit(p->s[i]); i++) {
		unsigned dgt = p->s[i] - '0';

		if (mag > (UINT64_MAX - dgt) / 10)
			mag_ok = false;
		else
			mag = mag * 10 + dgt;
	}
	if (i < p->len && p->s[i] == '.') {
		integral_text = false;
		if (++i >= p->len || !is_digit(p->s[i]))
			return perr(p, -EINVAL, i, "expected a digit after '.'");
		while (i < p->len && is_digit(p->s[i]))
			i++;
	}
	if (i < p->len && (p->s[i] == 'e' || p->s[i] == 'E')) {
		integral_text = false;
		i++;
		if (i < p->len && (p->s[i] == '+' || p->s[i] == '-'))
			i++;
		if (i >= p->len || !is_digit(p->s[i]))
			return perr(p, -EINVAL, i, "expected a digit in exponent");
		while (i < p->len && is_digit(p->s[i]))
			i++;
	}
	/* The input need not be NUL-terminated, so strtod gets a copy. */
	n = i - start;
	if (n >= sizeof(small)) {
		txt = malloc(n + 1);
		if (!txt)
			return -ENOMEM;
	}
	memcpy(txt, p->s + start, n);
	txt[n] = '\0';
	d = strtod_l(txt, NULL, p->cloc);
	if (txt != small)
		free(txt);
	if (isinf(d))
		return perr(p, -EINVAL, start, "number out of range of a double");

	v->type = JSON_NUM;
	v->num.d = d;
	v->num.u = 0;
	v->num.i = 0;
	v->num.exact = 0;
	if (integral_text && mag_ok) {
		/* Digit strings are taken exactly, not via the double: 2^64-1 has
		 * no double. */
		if (!neg) {
			v->num.u = mag;
			v->num.exact |= JSON_EXACT_U64;
			if (mag <= INT64_MAX) {
				v->num.i = (int64_t)mag;
				v->num.exact |= JSON_EXACT_I64;
			}
		} else if (mag <= (uint64_t)INT64_MAX + 1) {
			v->num.i = mag == (uint64_t)INT64_MAX + 1 ?
				   INT64_MIN : -(int64_t)mag;
			v->num.exact |= JSON_EXACT_I64;
			if (mag == 0) {
				v->num.u = 0;
				v->num.exact |= JSON_EXACT_U64;
			}
		}
	} else if (!integral_text && d == floor(d)) {
		/* 1e3 or 5.0: the double is exact, so is its integer. */
		if (d >= 0 && d < 18446744073709551616.0) {
			v->num.u = (uint64_t)d;
			v->num.exact |= JSON_EXACT_U64;
		}
		if (d >= -9223372036854775808.0 && d < 9223372036854775808.0) {
			v->num.i = (int64_t)d;
			v->num.exact |= JSON_EXACT_I64;
		}
	}
	p->pos = i;
	return 0;
}

static int parse_literal(struct parser *p, struct json_val *v)
{
	static const struct {
		const char *text;
		enum json_type type;
		bool b;
	} lits[] = {
		{ "true", JSON_BOOL, true },
		{ "false", JSON_BOOL, false },
		{ "null", JSON_NULL, false },
	};
	size_t i, n;

	for (i = 0; i < sizeof(lits) / sizeof(lits[0]); i++) {
		n = strlen(lits[i].text);
		if (p->len - p->pos >= n &&
		    memcmp(p->s + p->pos, lits[i].text, n) == 0) {
			v->type = lits[i].type;
			v->b = lits[i].b;
			p->pos += n;
			return 0;
		}
	}
	return perr(p, -EINVAL, p->pos, "invalid literal (expected true, false or null)");
}

/* Makes room for element n of a DOM array holding n elements.  The capacity
 * is not stored: it is the next power of two >= n, so realloc runs only when n
 * is a power of two and the DOM stays small (an array or object is parsed
 * once and never grows afterwards).  NULL on failure, arr still valid. */
static void *grow(void *arr, size_t n, size_t size)
{
	if (n && (n & (n - 1)))	/* not a power of two: room left */
		return arr;
	return realloc(arr, (n ? 2 * n : 1) * size);
}

static int enter(struct parser *p)
{
	if (++p->depth > p->max_depth)
		return perr(p, -E2BIG, p->pos,
			    "nesting deeper than the limit of %u", p->max_depth);
	return 0;
}

static int parse_array(struct parser *p, struct json_val *v)
{
	char b[16];
	int rc;

	v->type = JSON_ARR;
	v->arr.items = NULL;
	v->arr.n = 0;
	rc = enter(p);
	if (rc)
		return rc;
	p->pos++;
	skip_ws(p);
	if (p->pos < p->len && p->s[p->pos] == ']') {
		p->pos++;
		p->depth--;
		return 0;
	}
	for (;;) {
		struct json_val *items = grow(v->arr.items, v->arr.n,
					      sizeof(*items));

		if (!items)
			return -ENOMEM;
		v->arr.items = items;
		memset(&items[v->arr.n], 0, sizeof(*items));
		rc = parse_value(p, &items[v->arr.n++]);
		if (rc)
			return rc;
		skip_ws(p);
		if (p->pos < p->len && p->s[p->pos] == ',') {
			p->pos++;
			skip_ws(p);
			if (p->pos < p->len && p->s[p->pos] == ']')
				return perr(p, -EINVAL, p->pos,
					    "trailing comma before ']'");
			continue;
		}
		if (p->pos < p->len && p->s[p->pos] == ']')
			break;
		return perr(p, -EINVAL, p->pos, "expected ',' or ']' in array, found %s",
			    show(p, p->pos, b, sizeof(b)));
	}
	p->pos++;
	p->depth--;
	return 0;
}

static int parse_object(struct parser *p, struct json_val *v)
{
	char b[16];
	int rc;

	v->type = JSON_OBJ;
	v->obj.m = NULL;
	v->obj.n = 0;
	rc = enter(p);
	if (rc)
		return rc;
	p->pos++;
	skip_ws(p);
	if (p->pos < p->len && p->s[p->pos] == '}') {
		p->pos++;
		p->depth--;
		return 0;
	}
	for (;;) {
		struct json_member *m;

		if (p->pos >= p->len || p->s[p->pos] != '"')
			return perr(p, -EINVAL, p->pos,
				    "expected a string key, found %s",
				    show(p, p->pos, b, sizeof(b)));
		m = grow(v->obj.m, v->obj.n, sizeof(*m));
		if (!m)
			return -ENOMEM;
		v->obj.m = m;
		m = &v->obj.m[v->obj.n];
		memset(m, 0, sizeof(*m));
		rc = parse_string(p, &m->key, &m->key_len);
		if (rc)
			return rc;
		v->obj.n++;	/* the key is owned by the tree from here */
		skip_ws(p);
		if (p->pos >= p->len || p->s[p->pos] != ':')
			return perr(p, -EINVAL, p->pos,
				    "expected ':' after object key, found %s",
				    show(p, p->pos, b, sizeof(b)));
		p->pos++;
		rc = parse_value(p, &m->val);
		if (rc)
			return rc;
		skip_ws(p);
		if (p->pos < p->len && p->s[p->pos] == ',') {
			p->pos++;
			skip_ws(p);
			if (p->pos < p->len && p->s[p->pos] == '}')
				return perr(p, -EINVAL, p->pos,
					    "trailing comma before '}'");
			continue;
		}
		if (p->pos < p->len && p->s[p->pos] == '}')
			break;
		return perr(p, -EINVAL, p->pos,
			    "expected ',' or '}' in object, found %s",
			    show(p, p->pos, b, sizeof(b)));
	}
	p->pos++;
	p->depth--;
	return 0;
}

static int parse_value(struct parser *p, struct json_val *v)
{
	char b[16];
	int rc;

	skip_ws(p);
	if (p->pos >= p->len)
		return perr(p, -EINVAL, p->pos, "unexpected end of input, expected a value");
	if (++p->values > p->max_values)
		return perr(p, -E2BIG, p->pos, "more than %zu values", p->max_values);
	switch (p->s[p->pos]) {
	case '{':
		return parse_object(p, v);
	case '[':
		return parse_array(p, v);
	case '"':
		rc = parse_string(p, &v->str.s, &v->str.len);
		if (rc == 0)
			v->type = JSON_STR;
		return rc;
	case 't': case 'f': case 'n':
		return parse_literal(p, v);
	case '-': case '0': case '1': case '2': case '3': case '4':
	case '5': case '6': case '7': case '8': case '9':
		return parse_number(p, v);
	}
	return perr(p, -EINVAL, p->pos, "unexpected %s, expected a value",
		    show(p, p->pos, b, sizeof(b)));
}

int json_parse(const char *text, size_t len, const struct json_limits *lim,
	       struct json_val *out, char *err)
{
	struct parser p = {
		.s = (const unsigned char *)text,
		.len = len,
		.max_depth = lim && lim->max_depth ? lim->max_depth :
			     JSON_DEFAULT_MAX_DEPTH,
		.max_values = lim && lim->max_values ? lim->max_values :
			      JSON_DEFAULT_MAX_VALUES,
		.err = err,
	};
	size_t max_len = lim && lim->max_len ? lim->max_len : JSON_DEFAULT_MAX_LEN;
	char b[16];
	int rc;

	memset(out, 0, sizeof(*out));
	if (len > max_len)
		return perr(&p, -E2BIG, max_len,
			    "document is %zu bytes, over the limit of %zu", len, max_len);
	p.cloc = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0);
	if (p.cloc == (locale_t)0)
		return err_setf(err, -ENOMEM, "out of memory creating the C locale");
	if (len >= 3 && memcmp(text, "\xef\xbb\xbf", 3) == 0)
		p.pos = 3;
	rc = parse_value(&p, out);
	if (rc == 0) {
		skip_ws(&p);
		if (p.pos < p.len)
			rc = perr(&p, -EINVAL, p.pos,
				  "unexpected %s after the document",
				  show(&p, p.pos, b, sizeof(b)));
	}
	if (rc == -ENOMEM)
		err_setf(err, rc, "out of memory parsing JSON at byte %zu", p.pos);
	freelocale(p.cloc);
	if (rc)
		json_val_free(out);
	return rc;
}

void json_val_free(struct json_val *v)
{
	size_t i;

	if (!v)
		return;
	switch (v->type) {
	case JSON_STR:
		free(v->str.s);
		break;
	case JSON_ARR:
		for (i = 0; i < v->arr.n; i++)
			json_val_free(&v->arr.items[i]);
		free(v->arr.items);
		break;
	case JSON_OBJ:
		for (i = 0; i < v->obj.n; i++) {
			free(v->obj.m[i].key);
			json_val_free(&v->obj.m[i].val);
		}
		free(v->obj.m);
		break;
	default:
		break;
	}
	memset(v, 0, sizeof(*v));
}

/* ---- lookups ------------------------------------------------------------ */

static const struct json_val *get_n(const struct json_val *obj,
				    const char *key, size_t n)
{
	size_t i;

	if (!obj || obj->type != JSON_OBJ)
		return NULL;
	for (i = obj->obj.n; i-- > 0; ) {
		const struct json_member *m = &obj->obj.m[i];

		if (m->key_len == n && memcmp(m->key, key, n) == 0)
			return &m->val;
	}
	return NULL;
}

const struct json_val *json_get(const struct json_val *obj, const char *key)
{
	return get_n(obj, key, strlen(key));
}

const struct json_val *json_at(const struct json_val *arr, size_t i)
{
	if (!arr || arr->type != JSON_ARR || i >= arr->arr.n)
		return NULL;
	return &arr->arr.items[i];
}

size_t json_len(const struct json_val *v)
{
	if (!v)
		return 0;
	if (v->type == JSON_ARR)
		return v->arr.n;
	if (v->type == JSON_OBJ)
		return v->obj.n;
	return 0;
}

/* Parses the digits s[0..n) as an index; false if they are not all digits or
 * too large. */
static bool parse_index(const char *s, size_t n, size_t *out)
{
	size_t i, v = 0;

	if (n == 0)
		return false;
	for (i = 0; i < n; i++) {
		if (!is_digit((unsigned char)s[i]) || v > (SIZE_MAX - 9) / 10)
			return false;
		v = v * 10 + (size_t)(s[i] - '0');
	}
	*out = v;
	return true;
}

const struct json_val *json_path(const struct json_val *root, const char *path)
{
	const struct json_val *v = root;
	const char *s = path;
	size_t n, idx;

	while (v && *s) {
		if (*s == '[') {
			n = strcspn(s + 1, "]");
			if (s[1 + n] != ']' || !parse_index(s + 1, n, &idx))
				return NULL;
			v = json_at(v, idx);
			s += n + 2;
		} else {
			n = strcspn(s, ".[");
			if (n == 0)
				return NULL;
			if (v->type == JSON_ARR && parse_index(s, n, &idx))
				v = json_at(v, idx);
			else
				v = get_n(v, s, n);
			s += n;
		}
		if (*s == '.') {
			s++;
			if (!*s)
				return NULL;
		}
	}
	return v;
}

static int num_of(const struct json_val *v)
{
	if (!v)
		return -ENOENT;
	if (v->type == JSON_NULL)
		return -ENODATA;
	return v->type == JSON_NUM ? 0 : -EINVAL;
}

int json_val_u64(const struct json_val *v, uint64_t *out)
{
	int rc = num_of(v);

	if (rc)
		return rc;
	if (!(v->num.exact & JSON_EXACT_U64))
		return -ERANGE;
	*out = v->num.u;
	return 0;
}

int json_val_i64(const struct json_val *v, int64_t *out)
{
	int rc = num_of(v);

	if (rc)
		return rc;
	if (!(v->num.exact & JSON_EXACT_I64))
		return -ERANGE;
	*out = v->num.i;
	return 0;
}

int json_val_double(const struct json_val *v, double *out)
{
	int rc = num_of(v);

	if (rc)
		return rc;
	*out = v->num.d;
	return 0;
}

int json_val_bool(const struct json_val *v, bool *out)
{
	if (!v)
		return -ENOENT;
	if (v->type == JSON_NULL)
		return -ENODATA;
	if (v->type != JSON_BOOL)
		return -EINVAL;
	*out = v->b;
	return 0;
}

const char *json_val_str(const struct json_val *v)
{
	return v && v->type == JSON_STR ? v->str.s : NULL;
}

int json_path_u64(const struct json_val *root, const char *path, uint64_t *out)
{
	return json_val_u64(json_path(root, path), out);
}

int json_path_double(const struct json_val *root, const char *path, double *out)
{
	return json_val_double(json_path(root, path), out);
}

const char *json_path_str(const struct json_val *root, const char *path)
{
	return json_val_str(json_path(root, path));
}
