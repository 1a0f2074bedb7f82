/*
 * json.h - json-c helpers: bounded parsing and Python-style output.
 *
 * Parsing keeps 64-bit integers exact (ComfyUI seeds reach 2^64-1).
 * Output matches Python's json.dumps defaults, as ComfyUI writes it:
 * ", " and ": " separators, non-ASCII as \uXXXX, keys in insertion order,
 * floats in repr form (5.0, 1e-05).
 */
#ifndef FNRUN_JSON_H
#define FNRUN_JSON_H

#include <json-c/json.h>
#include <stdint.h>

#include "buf.h"
#include "err.h"

#define JSON_MAX_DEPTH 64

/*
 * Parses exactly one JSON value from s[0..len). Fails with ERR_INVALID when
 * the text is not JSON, has trailing garbage or nests deeper than max_depth.
 * Caller owns *out; release with json_object_put().
 */
int json_parse(const char *s, size_t len, int max_depth,
	       struct json_object **out, struct err *err);

/*
 * json_parse() for text from users (json_strict.c): also refuses, with
 * ERR_INVALID and the path of the field ("params.prompt: ..."), a string
 * with a NUL character (\u0000 or a raw NUL byte), invalid UTF-8 or a lone
 * surrogate, and an object with the same key twice. Nothing half-accepted.
 */
int json_parse_strict(const char *s, size_t len, int max_depth, struct json_object **out,
		      struct err *err);

/* Appends o in Python json.dumps form. Returns -1 when b is full. */
int json_dump(struct buf *b, const struct json_object *o);
/* Python json.dumps form, NUL-terminated. Caller frees. */
char *json_dumps(const struct json_object *o);
/* Appends s as a JSON string literal with Python's escaping. */
int json_dump_string(struct buf *b, const char *s, size_t len);

/* Borrowed lookups; NULL (or def) when missing or of another type. */
struct json_object *json_get(const struct json_object *o, const char *key);
const char *json_get_str(const struct json_object *o, const char *key);
struct json_object *json_get_obj(const struct json_object *o, const char *key);
struct json_object *json_get_arr(const struct json_object *o, const char *key);
int64_t json_get_int(const struct json_object *o, const char *key, int64_t def);
int json_get_bool(const struct json_object *o, const char *key, int def);

/* Shorthands that build objects; the result is owned by the caller. */
struct json_object *json_str(const char *s);
struct json_object *json_int(int64_t v);
/* Adds v to o under key; takes ownership of v. */
void json_put(struct json_object *o, const char *key, struct json_object *v);

#endif
