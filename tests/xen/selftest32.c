/* selftest32: hmigt_layout.h's digests computed by 32-bit code.
 *
 * A freestanding i386 program (no libc: hmigt is built the same way, and the
 * machine need not have 32-bit libraries).  It prints "name hex" per digest
 * on stdout through the int 0x80 system calls and exits 0; the Criterion
 * test in test_hmigt_layout.c compares the lines with its own 64-bit digests.
 */
#include <stdint.h>

#include "hmigt_digest.h"

static uint32_t page[HMIGT_PAGE_U32];
static uint32_t versions[DIGEST_REPLAY_PAGES];

static void sys_write(const char *buf, uint32_t len)
{
	int32_t ret;

	__asm__ volatile("int $0x80" : "=a"(ret) : "0"(4), "b"(1), "c"(buf), "d"(len) : "memory");
	(void)ret;
}

static __attribute__((noreturn)) void sys_exit(int code)
{
	for (;;)
		__asm__ volatile("int $0x80" : : "a"(1), "b"(code));
}

void _start(void)
{
	uint64_t d[DIGEST_COUNT];
	char line[64];
	int i;

	hmigt_digests(d, page, versions);
	for (i = 0; i < DIGEST_COUNT; i++) {
		const char *n = digest_names[i];
		uint32_t len = 0;
		int s;

		while (*n)
			line[len++] = *n++;
		line[len++] = ' ';
		for (s = 60; s >= 0; s -= 4)
			line[len++] = "0123456789abcdef"[(d[i] >> s) & 0xf];
		line[len++] = '\n';
		sys_write(line, len);
	}
	sys_exit(0);
}
