/*
 * json.c - bounded JSON parsing and Python-compatible serialization.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "util.h"

int json_parse(const char *s, size_t len, int max_depth,
	       struct json_object **out, struct err *err)
{
	struct json_tokener *tok;
	struct json_object *o;
	enum json_tokener_error jerr;
	size_t off;

	*out = NULL;
	if (len > (size_t)INT32_MAX) {
		err_set(err, ERR_TOO_LARGE, "JSON body too large");
		return -1;
	}
	tok = json_tokener_new_ex(max_depth);
	if (tok == NULL) {
		err_set(err, ERR_INTERNAL, "out of memory");
		return -1;
	}
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
	o = json_tokener_parse_ex(tok, s, (int)len);
	jerr = json_tokener_get_error(tok);
	off = json_tokener_get_parse_end(tok);
	if (jerr == json_tokener_continue) {
		/* Top-level numbers need a terminator to complete. */
		o = json_tokener_parse_ex(tok, "", 1);
		jerr = json_tokener_get_error(tok);
		off = len;
	}
	json_tokener_free(tok);
	if (jerr != json_tokener_success) {
		json_object_put(o);
		if (jerr == json_tokener_error_depth)
			err_set(err, ERR_INVALID,
				"JSON nests deeper than %d levels", max_depth);
		else
			err_set(err, ERR_INVALID, "malformed JSON: %s",
				json_tokener_error_desc(jerr));
		return -1;
	}
	while (off < len && strchr(" \t\r\n", s[off]) && s[off])
		off++;
	if (off < len) {
		json_object_put(o);
		err_set(err, ERR_INVALID,
			"malformed JSON: unexpected text after the value");
		return -1;
	}
	*out = o;
	return 0;
}

/* Decodes one UTF-8 sequence; returns its length, or 0 when invalid. */
static size_t utf8_decode(const unsigned char *p, size_t n, uint32_t *cp)
{
	if (p[0] < 0x80) {
		*cp = p[0];
		return 1;
	}
	if ((p[0] & 0xe0) == 0xc0 && n >= 2 && (p[1] & 0xc0) == 0x80) {
		*cp = ((uint32_t)(p[0] & 0x1f) << 6) | (p[1] & 0x3f);
		return 2;
	}
	if ((p[0] & 0xf0) == 0xe0 && n >= 3 && (p[1] & 0xc0) == 0x80 &&
	    (p[2] & 0xc0) == 0x80) {
		*cp = ((uint32_t)(p[0] & 0x0f) << 12) |
		      ((uint32_t)(p[1] & 0x3f) << 6) | (p[2] & 0x3f);
		return 3;
	}
	if ((p[0] & 0xf8) == 0xf0 && n >= 4 && (p[1] & 0xc0) == 0x80 &&
	    (p[2] & 0xc0) == 0x80 && (p[3] & 0xc0) == 0x80) {
		*cp = ((uint32_t)(p[0] & 0x07) << 18) |
		      ((uint32_t)(p[1] & 0x3f) << 12) |
		      ((uint32_t)(p[2] & 0x3f) << 6) | (p[3] & 0x3f);
		return 4;
	}
	return 0;
}

int json_dump_string(struct buf *b, const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s;
	int rc = buf_putc(b, '"');

	for (size_t i = 0; i < len && rc == 0;) {
		uint32_t cp;
		size_t n;

		switch (p[i]) {
		case '"': rc = buf_puts(b, "\\\""); i++; continue;
		case '\\': rc = buf_puts(b, "\\\\"); i++; continue;
		case '\n': rc = buf_puts(b, "\\n"); i++; continue;
		case '\r': rc = buf_puts(b, "\\r"); i++; continue;
		case '\t': rc = buf_puts(b, "\\t"); i++; continue;
		case '\b': rc = buf_puts(b, "\\b"); i++; continue;
		case '\f': rc = buf_puts(b, "\\f"); i++; continue;
		default: break;
		}
		if (p[i] >= 0x20 && p[i] < 0x7f) {
			rc = buf_putc(b, (char)p[i++]);
			continue;
		}
		n = utf8_decode(p + i, len - i, &cp);
		if (n == 0) {
			cp = 0xfffd; /* invalid byte: replacement character */
			n = 1;
		}
		i += n;
		if (cp >= 0x10000) {
			cp -= 0x10000;
			rc = buf_printf(b, "\\u%04x\\u%04x", 0xd800 + (cp >> 10),
					0xdc00 + (cp & 0x3ff));
		} else {
			rc = buf_printf(b, "\\u%04x", cp);
		}
	}
	return rc ? rc : buf_putc(b, '"');
}

/*
 * Python repr() of a float: the shortest digits that read back the same,
 * in fixed notation when the decimal exponent is in [-4, 16), else as
 * d.ddde+XX; integral values keep ".0".
 */
static int dump_double(struct buf *b, double d)
{
	char sci[40], digits[24], out[64];
	int prec, exp, nd = 0;

	if (isnan(d))
		return buf_puts(b, "NaN");
	if (isinf(d))
		return buf_puts(b, d > 0 ? "Infinity" : "-Infinity");
	for (prec = 1; prec <= 17; prec++) {
		snprintf(sci, sizeof sci, "%.*e", prec - 1, d);
		if (strtod(sci, NULL) == d)
			break;
	}
	/* sci is [-]D[.DDD]e[+-]XX: collect the digits and the exponent. */
	for (const char *p = sci; *p && *p != 'e'; p++)
		if (*p >= '0' && *p <= '9')
			digits[nd++] = *p;
	digits[nd] = '\0';
	exp = atoi(strchr(sci, 'e') + 1);
	if (exp < -4 || exp >= 16) {
		snprintf(out, sizeof out, "%s%c%s%s%se%c%02d", d < 0 ? "-" : "", digits[0],
			 nd > 1 ? "." : "", nd > 1 ? digits + 1 : "", "", exp < 0 ? '-' : '+',
			 exp < 0 ? -exp : exp);
		return buf_puts(b, out);
	}
	snprintf(out, sizeof out, "%.*f", nd - 1 - exp > 0 ? nd - 1 - exp : 0, d);
	if (strchr(out, '.') == NULL)
		strcat(out, ".0");
	return buf_puts(b, out);
}

static int dump_int(struct buf *b, const struct json_object *o)
{
	int64_t v = json_object_get_int64(o);

	if (v == INT64_MAX) {
		uint64_t u = json_object_get_uint64(o);
		return buf_printf(b, "%llu", (unsigned long long)u);
	}
	return buf_printf(b, "%lld", (long long)v);
}

int json_dump(struct buf *b, const struct json_object *o)
{
	int rc = 0, first = 1;

	switch (json_object_get_type(o)) {
	case json_type_null:
		return buf_puts(b, "null");
	case json_type_boolean:
		return buf_puts(b, json_object_get_boolean(o) ? "true" : "false");
	case json_type_int:
		return dump_int(b, o);
	case json_type_double:
		return dump_double(b, json_object_get_double(o));
	case json_type_string:
		return json_dump_string(b, json_object_get_string((struct json_object *)o),
					(size_t)json_object_get_string_len(o));
	case json_type_array:
		rc = buf_putc(b, '[');
		for (size_t i = 0; rc == 0 && i < json_object_array_length(o); i++) {
			if (i)
				rc = buf_puts(b, ", ");
			if (rc == 0)
				rc = json_dump(b, json_object_array_get_idx(o, i));
		}
		return rc ? rc : buf_putc(b, ']');
	case json_type_object:
		rc = buf_putc(b, '{');
		json_object_object_foreach((struct json_object *)o, k, v) {
			if (rc)
				break;
			if (!first)
				rc = buf_puts(b, ", ");
			first = 0;
			if (rc == 0)
				rc = json_dump_string(b, k, strlen(k));
			if (rc == 0)
				rc = buf_puts(b, ": ");
			if (rc == 0)
				rc = json_dump(b, v);
		}
		return rc ? rc : buf_putc(b, '}');
	}
	return -1;
}

char *json_dumps(const struct json_object *o)
{
	struct buf b;

	buf_init(&b, (size_t)1 << 31);
	json_dump(&b, o);
	return buf_steal(&b);
}

struct json_object *json_get(const struct json_object *o, const char *key)
{
	struct json_object *v = NULL;

	if (o == NULL || !json_object_is_type(o, json_type_object))
		return NULL;
	if (!json_object_object_get_ex(o, key, &v))
		return NULL;
	return v;
}

const char *json_get_str(const struct json_object *o, const char *key)
{
	struct json_object *v = json_get(o, key);

	return json_object_is_type(v, json_type_string) ? json_object_get_string(v) : NULL;
}

struct json_object *json_get_obj(const struct json_object *o, const char *key)
{
	struct json_object *v = json_get(o, key);

	return json_object_is_type(v, json_type_object) ? v : NULL;
}

struct json_object *json_get_arr(const struct json_object *o, const char *key)
{
	struct json_object *v = json_get(o, key);

	return json_object_is_type(v, json_type_array) ? v : NULL;
}

int64_t json_get_int(const struct json_object *o, const char *key, int64_t def)
{
	struct json_object *v = json_get(o, key);

	return json_object_is_type(v, json_type_int) ? json_object_get_int64(v) : def;
}

int json_get_bool(const struct json_object *o, const char *key, int def)
{
	struct json_object *v = json_get(o, key);

	return json_object_is_type(v, json_type_boolean) ? json_object_get_boolean(v) : def;
}

struct json_object *json_str(const char *s)
{
	return json_object_new_string(s);
}

struct json_object *json_int(int64_t v)
{
	return json_object_new_int64(v);
}

void json_put(struct json_object *o, const char *key, struct json_object *v)
{
	json_object_object_add(o, key, v);
}
