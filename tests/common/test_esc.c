/* The peer-text escape (src/common/esc.h): every byte value, alone and in
 * context; multibyte UTF-8; C1 controls; idempotence; cutting. */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>

#include <stdio.h>
#include <string.h>

#include "common/esc.h"

/* Each of the 256 byte values on its own: printable ASCII stays, every
 * other byte (controls, DEL, and any lone byte >= 0x80, which is never
 * well-formed UTF-8 by itself) becomes \xNN. */
Test(esc, every_byte_value_alone)
{
	for (int b = 0; b < 256; b++) {
		char in[1] = { (char)b }, out[16], want[16];

		esc_text(out, sizeof(out), in, 1);
		if (b >= 0x20 && b < 0x7f)
			snprintf(want, sizeof(want), "%c", b);
		else
			snprintf(want, sizeof(want), "\\x%02x", b);
		cr_assert(eq(str, out, want), "byte 0x%02x", b);
		cr_assert(eq(int, esc_is_clean(in, 1), b >= 0x20 && b < 0x7f), "byte 0x%02x", b);
	}
}

/* Each byte value between printable neighbours, as a peer would embed it,
 * and then no byte below 0x20, no DEL and no C1 control survives. */
Test(esc, every_byte_value_in_context_leaves_nothing_unsafe)
{
	for (int b = 0; b < 256; b++) {
		char in[3] = { 'a', (char)b, 'z' }, out[32];
		size_t n = esc_text(out, sizeof(out), in, 3);

		cr_assert(eq(sz, n, strlen(out)));
		for (size_t i = 0; i < n; i++) {
			unsigned char c = (unsigned char)out[i];

			cr_assert(c >= 0x20 && c != 0x7f, "byte 0x%02x left 0x%02x", b, c);
			cr_assert(c < 0x80, "byte 0x%02x alone left a non-ASCII byte", b);
		}
		cr_assert(out[0] == 'a' && out[n - 1] == 'z');
	}
}

Test(esc, terminal_sequences_are_defused)
{
	/* OSC 0 (window title), ESC [2J (clear), an 8-bit CSI as UTF-8 C1 */
	const char *in = "\x1b]0;pwned\x07\x1b[2J\xc2\x9b" "31m";
	char out[128];

	esc_text(out, sizeof(out), in, strlen(in));
	cr_assert(eq(str, out, "\\x1b]0;pwned\\x07\\x1b[2J\\xc2\\x9b31m"));
}

Test(esc, printable_utf8_and_backslash_pass_and_escaping_is_idempotent)
{
	const char *in = "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 a\\b \xc2\xa0";
	char once[128], twice[128];

	cr_assert(esc_is_clean(in, strlen(in)));
	esc_text(once, sizeof(once), in, strlen(in));
	cr_assert(eq(str, once, (char *)in));
	esc_text(once, sizeof(once), "\x01\xff", 2);
	esc_text(twice, sizeof(twice), once, strlen(once));
	cr_assert(eq(str, once, twice));
}

Test(esc, malformed_utf8_is_escaped_byte_by_byte)
{
	char out[64];

	/* overlong '/', a surrogate, a truncated 3-byte sequence */
	esc_text(out, sizeof(out), "\xc0\xaf\xed\xa0\x80\xe2\x82", 7);
	cr_assert(eq(str, out, "\\xc0\\xaf\\xed\\xa0\\x80\\xe2\\x82"));
}

Test(esc, cut_on_a_character_boundary)
{
	char out[6];

	/* "ab" + \x01 needs 2 + 4 + NUL = 7: the escape does not fit whole */
	cr_assert(eq(sz, esc_text(out, sizeof(out), "ab\x01", 3), 2));
	cr_assert(eq(str, out, "ab"));
	cr_assert(eq(sz, esc_text(out, 4, "\xc3\xa9\xc3\xa9", 4), 2));
	cr_assert(eq(str, out, "\xc3\xa9"));
}

Test(esc, in_place_keeps_clean_text_and_escapes_the_rest)
{
	char buf[32] = "the source failed: ok";

	esc_inplace(buf, sizeof(buf));
	cr_assert(eq(str, buf, "the source failed: ok"));
	snprintf(buf, sizeof(buf), "peer: \x1b[2J!");
	esc_inplace(buf, sizeof(buf));
	cr_assert(eq(str, buf, "peer: \\x1b[2J!"));
}
