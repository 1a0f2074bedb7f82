/*
 * json_strict.c - JSON from users is valid or refused, never half-accepted.
 *
 * json-c accepts what a user never meant and we must not store: a string
 * with "\u0000" (cut there by every C string function after it), invalid
 * UTF-8 and lone surrogates (stored, then passed to a model server), and a
 * key given twice (the last one silently wins). json_parse_strict() parses
 * with json_parse(), then walks the text once more, now known to be
 * well-formed and within the depth limit, and refuses the first such thing
 * with the path of the field it is in ("params.prompt").
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "util.h"

/* One object's keys, decoded, to find one given twice. */
struct keys {
	char **v;
	size_t *len;
	size_t n, cap;
};

struct walk {
	const unsigned char *p, *end;
	char path[256]; /* the field being read: "params.prompt", "images[2]" */
	struct err *err;
};

static int hex4(const unsigned char *p)
{
	int v = 0;

	for (int i = 0; i < 4; i++) {
		int c = p[i];
		v = v * 16 + (c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10);
	}
	return v;
}

/* Appends code point cp as UTF-8 to out (room for 4 bytes). */
static size_t utf8_put(char *out, uint32_t cp)
{
	if (cp < 0x80) {
		out[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		out[0] = (char)(0xc0 | cp >> 6);
		out[1] = (char)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp < 0x10000) {
		out[0] = (char)(0xe0 | cp >> 12);
		out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		out[2] = (char)(0x80 | (cp & 0x3f));
		return 3;
	}
	out[0] = (char)(0xf0 | cp >> 18);
	out[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
	out[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
	out[3] = (char)(0x80 | (cp & 0x3f));
	return 4;
}

/* Length of one strict UTF-8 sequence at p (no overlong, no surrogate, <= U+10FFFF); 0 if none. */
static size_t utf8_strict(const unsigned char *p, const unsigned char *end)
{
	size_t n = (size_t)(end - p);

	if (p[0] >= 0xc2 && p[0] <= 0xdf)
		return n >= 2 && (p[1] & 0xc0) == 0x80 ? 2 : 0;
	if (p[0] >= 0xe0 && p[0] <= 0xef) {
		if (n < 3 || (p[1] & 0xc0) != 0x80 || (p[2] & 0xc0) != 0x80)
			return 0;
		if ((p[0] == 0xe0 && p[1] < 0xa0) || (p[0] == 0xed && p[1] >= 0xa0))
			return 0; /* overlong, or a surrogate in UTF-8 */
		return 3;
	}
	if (p[0] >= 0xf0 && p[0] <= 0xf4) {
		if (n < 4 || (p[1] & 0xc0) != 0x80 || (p[2] & 0xc0) != 0x80 ||
		    (p[3] & 0xc0) != 0x80)
			return 0;
		if ((p[0] == 0xf0 && p[1] < 0x90) || (p[0] == 0xf4 && p[1] >= 0x90))
			return 0; /* overlong, or past U+10FFFF */
		return 4;
	}
	return 0;
}

static int bad_text(struct walk *w, const char *what)
{
	err_set(w->err, ERR_INVALID, "%s: %s; send text as valid UTF-8, without NUL characters",
		w->path[0] ? w->path : "body", what);
	return -1;
}

static int malformed(struct walk *w, const char *what)
{
	err_set(w->err, ERR_INVALID, "malformed JSON: %s%s%s", w->path[0] ? w->path : "",
		w->path[0] ? ": " : "", what);
	return -1;
}

/*
 * Reads the string at w->p (at its opening quote), leaving w->p after it.
 * With out, the decoded bytes are stored there (malloc'd) with their length.
 */
static int string(struct walk *w, char **out, size_t *outlen)
{
	const unsigned char *p = w->p + 1;
	char *d = NULL;
	size_t n = 0;

	if (out) {
		const unsigned char *q = p;
		while (q < w->end && *q != '"')
			q += *q == '\\' ? 2 : 1;
		if (q >= w->end)
			return malformed(w, "a string has no end"); /* never past the text */
		d = xmalloc((size_t)(q - p) + 1); /* decoding never grows the text */
	}
	while (p < w->end && *p != '"') {
		char tmp[4];
		size_t k;

		if (*p == '\\') {
			uint32_t cp;
			if (p[1] != 'u') {
				static const char esc[] = "\"\"\\\\//b\bf\fn\nr\rt\t";
				const char *e = strchr(esc, p[1]);
				tmp[0] = e ? e[1] : (char)p[1];
				k = 1;
				p += 2;
			} else {
				cp = (uint32_t)hex4(p + 2);
				p += 6;
				if (cp == 0) {
					free(d);
					return bad_text(w, "the text has a NUL character (\\u0000)");
				}
				if (cp >= 0xdc00 && cp <= 0xdfff) {
					free(d);
					return bad_text(w, "the text has a lone surrogate (\\udc00-\\udfff)");
				}
				if (cp >= 0xd800 && cp <= 0xdbff) {
					uint32_t lo = p[0] == '\\' && p[1] == 'u' ? (uint32_t)hex4(p + 2) : 0;
					if (lo < 0xdc00 || lo > 0xdfff) {
						free(d);
						return bad_text(w, "the text has a lone surrogate (\\ud800-\\udbff)");
					}
					cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
					p += 6;
				}
				k = utf8_put(tmp, cp);
			}
		} else if (*p < 0x80) {
			tmp[0] = (char)*p++;
			k = 1;
		} else {
			k = utf8_strict(p, w->end);
			if (k == 0) {
				free(d);
				return bad_text(w, "the text is not valid UTF-8");
			}
			memcpy(tmp, p, k);
			p += k;
		}
		if (d) {
			memcpy(d + n, tmp, k);
			n += k;
		}
	}
	if (p >= w->end) {
		free(d);
		return malformed(w, "a string has no end");
	}
	w->p = p + 1;
	if (out) {
		d[n] = '\0';
		*out = d;
		*outlen = n;
	}
	return 0;
}

static void skip_ws(struct walk *w)
{
	while (w->p < w->end && strchr(" \t\r\n", *w->p) && *w->p)
		w->p++;
}

static int value(struct walk *w);

/* Sets the path to parent + ".key" or parent + "[i]"; returns the parent's length. */
static size_t path_push(struct walk *w, const char *key, size_t keylen, long index)
{
	size_t at = strlen(w->path), room = sizeof w->path - at;

	if (key)
		snprintf(w->path + at, room, "%s%.*s", at ? "." : "", (int)(keylen > 64 ? 64 : keylen),
			 key);
	else
		snprintf(w->path + at, room, "[%ld]", index);
	return at;
}

static int key_cmp(const void *a, const void *b)
{
	const char *const *x = a, *const *y = b;

	return strcmp(*x, *y);
}

static void keys_free(struct keys *k)
{
	for (size_t i = 0; i < k->n; i++)
		free(k->v[i]);
	free(k->v);
	free(k->len);
}

/* A key given twice (NUL-free by now, so strcmp compares them whole). */
static const char *twice(struct keys *k)
{
	if (k->n < 2)
		return NULL;
	qsort(k->v, k->n, sizeof *k->v, key_cmp);
	for (size_t i = 1; i < k->n; i++)
		if (strcmp(k->v[i - 1], k->v[i]) == 0)
			return k->v[i];
	return NULL;
}

static int object(struct walk *w)
{
	struct keys k = {0};
	const char *dup;
	int rc = 0;

	w->p++; /* { */
	skip_ws(w);
	while (rc == 0 && *w->p != '}') {
		char *key;
		size_t keylen, at;

		/*
		 * json-c's strict mode still takes a key in single quotes,
		 * {'a': 1}, which JSON (and Python) refuse; read as a string,
		 * it sent this walk past the end of the text (fuzz/generate).
		 */
		if (*w->p != '"') {
			rc = malformed(w, "a key must be a string in double quotes");
			break;
		}
		if ((rc = string(w, &key, &keylen)) < 0)
			break;
		if (k.n == k.cap) {
			k.cap = k.cap ? k.cap * 2 : 8;
			k.v = xrealloc(k.v, k.cap * sizeof *k.v);
			k.len = xrealloc(k.len, k.cap * sizeof *k.len);
		}
		k.v[k.n] = key;
		k.len[k.n++] = keylen;
		skip_ws(w);
		w->p++; /* : */
		skip_ws(w);
		at = path_push(w, key, keylen, 0);
		rc = value(w);
		if (rc == 0)
			w->path[at] = '\0';
		skip_ws(w);
		if (*w->p == ',') {
			w->p++;
			skip_ws(w);
		}
	}
	if (rc == 0 && (dup = twice(&k)) != NULL) {
		size_t at = path_push(w, dup, strlen(dup), 0);
		err_set(w->err, ERR_INVALID, "%s: given twice; send each field once", w->path);
		w->path[at] = '\0';
		rc = -1;
	}
	keys_free(&k);
	if (rc == 0)
		w->p++; /* } */
	return rc;
}

static int array(struct walk *w)
{
	long i = 0;

	w->p++; /* [ */
	skip_ws(w);
	while (*w->p != ']') {
		size_t at = path_push(w, NULL, 0, i++);
		if (value(w) < 0)
			return -1;
		w->path[at] = '\0';
		skip_ws(w);
		if (*w->p == ',') {
			w->p++;
			skip_ws(w);
		}
	}
	w->p++;
	return 0;
}

/* One value of well-formed JSON at w->p; leaves w->p after it. */
static int value(struct walk *w)
{
	skip_ws(w);
	switch (*w->p) {
	case '{': return object(w);
	case '[': return array(w);
	case '"': return string(w, NULL, NULL);
	default:
		/* a number, true, false or null: up to the next delimiter */
		while (w->p < w->end && !strchr(",]} \t\r\n", *w->p))
			w->p++;
		return 0;
	}
}

int json_parse_strict(const char *s, size_t len, int max_depth, struct json_object **out,
		      struct err *err)
{
	struct walk w = {.p = (const unsigned char *)s, .end = (const unsigned char *)s + len,
			 .err = err};

	if (json_parse(s, len, max_depth, out, err) < 0)
		return -1;
	/* json-c stops at a NUL byte; the walk must not run past it. */
	if (memchr(s, '\0', len) != NULL || value(&w) < 0) {
		if (w.err->code == 0)
			err_set(err, ERR_INVALID, "body: has a NUL byte; send text as valid UTF-8");
		json_object_put(*out);
		*out = NULL;
		return -1;
	}
	return 0;
}
