/* Assertions on report documents by path, shared by the tests that read
 * reports (tests/cli, tests/stats, tests/engine): doc.h's lookups, failing
 * the test with the path when a value is absent or of another type. */
#ifndef HMIG_TESTS_DOC_CHECK_H
#define HMIG_TESTS_DOC_CHECK_H

#include <criterion/criterion.h>
#include <criterion/new/assert.h>

#include "doc.h"

static inline json_t *doc_check_parse(const char *text)
{
	char err[DOC_ERR_LEN] = "";
	json_t *v = NULL;
	int rc = doc_parse(text, strlen(text), &v, err);

	cr_assert(eq(int, rc, 0), "%s\n--- in ---\n%s", err, text);
	return v;
}

static inline uint64_t doc_check_u64(const json_t *root, const char *path)
{
	uint64_t v = 0;
	int rc = doc_u64(root, path, &v);

	cr_assert(eq(int, rc, 0), "%s: rc %d", path, rc);
	return v;
}

static inline double doc_check_dbl(const json_t *root, const char *path)
{
	double v = 0;
	int rc = doc_double(root, path, &v);

	cr_assert(eq(int, rc, 0), "%s: rc %d", path, rc);
	return v;
}

static inline void doc_check_str(const json_t *root, const char *path, const char *want)
{
	const char *s = doc_str(root, path);

	cr_assert(not(eq(ptr, (void *)s, NULL)), "%s missing or not a string", path);
	cr_assert(eq(str, (char *)s, (char *)want), "%s", path);
}

#endif
