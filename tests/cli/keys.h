/* Keys documented against keys written: the tables of docs/report.md and
 * docs/control.md (first cell `key`, second the documents that write it:
 * letters, each followed by '?' when the key is conditional there) and the
 * key paths of a JSON document ("bytes.total", "passes[].ms": a container
 * and each of its members; rows of an array are read together). */
#ifndef HMIG_TESTS_KEYS_H
#define HMIG_TESTS_KEYS_H

#include <criterion/criterion.h>
#include <criterion/new/assert.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#define KEYS_MAX 256

struct keys {
	int n;
	char key[KEYS_MAX][160];
	char written[KEYS_MAX][16]; /* documented: "S D M?" as in the table */
};

static inline bool keys_has(const struct keys *k, const char *key)
{
	for (int i = 0; i < k->n; i++)
		if (!strcmp(k->key[i], key))
			return true;
	return false;
}

static inline void keys_add(struct keys *k, const char *key, const char *written)
{
	if (keys_has(k, key))
		return;
	cr_assert(k->n < KEYS_MAX, "more than %d keys", KEYS_MAX);
	cr_assert(lt(int, snprintf(k->key[k->n], sizeof(k->key[0]), "%s", key),
		     (int)sizeof(k->key[0])), "key too long: %s", key);
	snprintf(k->written[k->n], sizeof(k->written[0]), "%s", written ? written : "");
	k->n++;
}

/* The documented keys of the markdown file at $HMIG_DOCS/name. */
static inline void keys_documented(struct keys *k, const char *name)
{
	const char *docs = getenv("HMIG_DOCS");
	char path[512], line[1024];
	FILE *f;

	cr_assert(docs != NULL, "HMIG_DOCS is not set: run this test through meson test");
	snprintf(path, sizeof(path), "%s/%s", docs, name);
	f = fopen(path, "r");
	cr_assert(f != NULL, "cannot read %s", path);
	k->n = 0;
	while (fgets(line, sizeof(line), f)) {
		char key[160], written[16];

		if (sscanf(line, "| `%159[^`]` | %15[^|]|", key, written) == 2)
			keys_add(k, key, written);
	}
	fclose(f);
	cr_assert(k->n > 0, "no key table in %s", path);
}

/* Whether the documented key is in the document of kind `side` (a
 * letter), and whether always. */
static inline bool keys_written_in(const char *written, char side, bool *always)
{
	for (const char *p = written; *p; p++) {
		if (*p == side) {
			*always = p[1] != '?';
			return true;
		}
	}
	return false;
}

/* Every key path of v under prefix. */
static inline void keys_walk(struct keys *k, const json_t *v, const char *prefix)
{
	const char *key;
	json_t *m;
	size_t i;
	char path[160];

	if (json_is_object(v)) {
		json_object_foreach((json_t *)v, key, m) {
			cr_assert(lt(int, snprintf(path, sizeof(path), "%s%s%s", prefix,
						   *prefix ? "." : "", key), (int)sizeof(path)));
			keys_add(k, path, NULL);
			keys_walk(k, m, path);
		}
	} else if (json_is_array(v)) {
		cr_assert(lt(int, snprintf(path, sizeof(path), "%s[]", prefix), (int)sizeof(path)));
		json_array_foreach((json_t *)v, i, m) {
			if (!json_is_object(m))
				return; /* an array of numbers is one value */
			json_object_foreach(m, key, v) {
				char sub[160];

				cr_assert(lt(int, snprintf(sub, sizeof(sub), "%s.%s", path, key),
					     (int)sizeof(sub)));
				keys_add(k, sub, NULL);
				keys_walk(k, v, sub);
			}
		}
	}
}

/* The documented name of a written key: the merged document's copies of
 * the destination's timeline rows and security object are documented as
 * timeline[]'s and security's. */
static inline const char *keys_doc_name(const char *key, char *buf, size_t len)
{
	static const struct { const char *merged, *doc; } as[] = {
		{ "timeline_destination[].", "timeline[]." },
		{ "security_destination.", "security." },
	};

	for (size_t i = 0; i < sizeof(as) / sizeof(as[0]); i++) {
		size_t n = strlen(as[i].merged);

		if (!strncmp(key, as[i].merged, n)) {
			snprintf(buf, len, "%s%s", as[i].doc, key + n);
			return buf;
		}
	}
	return key;
}

/* Every key of doc is documented for `side`; when `complete`, every key
 * documented as always there for `side` is in doc. */
static inline void keys_check(const struct keys *documented, const json_t *doc, char side,
			      bool complete, const char *what)
{
	struct keys w = { 0 };
	char buf[128];
	bool always;

	keys_walk(&w, doc, "");
	for (int i = 0; i < w.n; i++) {
		const char *name = keys_doc_name(w.key[i], buf, sizeof(buf));
		int j;

		for (j = 0; j < documented->n && strcmp(documented->key[j], name); j++)
			;
		cr_assert(j < documented->n, "%s writes '%s', which the docs do not list", what,
			  w.key[i]);
		cr_assert(keys_written_in(documented->written[j], side, &always),
			  "%s writes '%s', which the docs say only %s write", what, w.key[i],
			  documented->written[j]);
	}
	for (int j = 0; complete && j < documented->n; j++) {
		if (keys_written_in(documented->written[j], side, &always) && always)
			cr_assert(keys_has(&w, documented->key[j]),
				  "the docs say %s always writes '%s', but it did not", what,
				  documented->key[j]);
	}
}

#endif
