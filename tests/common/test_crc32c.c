/* CRC32C (src/common/crc32c.h): known answers, the CPU's path against the
 * table, and the copying variant. */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>

#include <stdlib.h>
#include <string.h>

#include "common/crc32c.h"

Test(crc32c, known_answers)
{
	uint8_t zeros[32] = { 0 }, ones[32];

	memset(ones, 0xff, sizeof(ones));
	/* "123456789" and RFC 3720 B.4's 32 zero bytes and 32 0xff bytes */
	cr_assert(eq(u32, crc32c("123456789", 9), 0xe3069283));
	cr_assert(eq(u32, crc32c_sw("123456789", 9), 0xe3069283));
	cr_assert(eq(u32, crc32c(zeros, 32), 0x8a9136aa));
	cr_assert(eq(u32, crc32c(ones, 32), 0x62a8ab43));
	cr_assert(eq(u32, crc32c("", 0), 0));
}

Test(crc32c, every_length_and_alignment_agrees_with_the_table)
{
	uint8_t *buf = malloc(4096 + 16), *copy = malloc(4096 + 16);

	cr_assert(buf && copy);
	for (size_t i = 0; i < 4096 + 16; i++)
		buf[i] = (uint8_t)(i * 131 + 7);
	if (!crc32c_hw())
		cr_log_info("no SSE4.2 here: both paths are the table");
	for (size_t off = 0; off < 8; off++) {
		for (size_t n = 0; n <= 64; n++)
			cr_assert(eq(u32, crc32c(buf + off, n), crc32c_sw(buf + off, n)),
				  "off %zu len %zu", off, n);
		cr_assert(eq(u32, crc32c(buf + off, 4096), crc32c_sw(buf + off, 4096)));
		cr_assert(eq(u32, crc32c_copy(copy + off, buf + off, 4096), crc32c_sw(buf + off, 4096)));
		cr_assert(eq(int, memcmp(copy + off, buf + off, 4096), 0));
	}
	free(buf);
	free(copy);
}

Test(crc32c, one_flipped_bit_changes_it)
{
	uint8_t page[4096];

	for (size_t i = 0; i < sizeof(page); i++)
		page[i] = (uint8_t)i;
	uint32_t good = crc32c(page, sizeof(page));
	for (size_t bit = 0; bit < 8 * sizeof(page); bit += 97) {
		page[bit / 8] ^= (uint8_t)(1u << (bit % 8));
		cr_assert(ne(u32, crc32c(page, sizeof(page)), good), "bit %zu", bit);
		page[bit / 8] ^= (uint8_t)(1u << (bit % 8));
	}
}
