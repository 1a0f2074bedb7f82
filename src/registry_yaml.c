/*
 * registry_yaml.c - the machinery every part of the registry parse shares:
 * the error list and the dotted key path of messages, YAML node helpers,
 * scalars (integers, numbers, booleans, durations, sizes), value readers
 * that report their own errors, and key tables (parse_map(): one table of
 * name, type, required, min/max, default and field offset applied to one
 * YAML map). Declared in registry_internal.h.
 */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yaml.h>

#include "buf.h"
#include "registry.h"
#include "registry_internal.h"
#include "util.h"

void registry__sl_add(struct strlist *l, const char *item)
{
	size_t need = strlen(item) + (l->len ? 2 : 0);

	if (l->cut)
		return;
	if (l->len + need + 5 >= sizeof l->s) {
		strcpy(l->s + l->len, l->len ? ", ..." : "...");
		l->cut = 1;
		return;
	}
	l->len += (size_t)sprintf(l->s + l->len, "%s%s", l->len ? ", " : "", item);
}

/* ---- errors and the key path ---- */

void registry__add_error(struct registry__errors *e, int code, size_t line, size_t col,
			 char *msg)
{
	e->v = xrealloc(e->v, (e->n + 1) * sizeof *e->v);
	e->v[e->n] = (struct registry__error){line, col, e->n, code, msg};
	e->n++;
}

/* Records "FILE:LINE:COL: path: what" at node n. */
void registry__perr(struct pctx *c, const yaml_node_t *n, const char *fmt, ...)
{
	char what[1024];
	size_t line = n->start_mark.line + 1, col = n->start_mark.column + 1;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof what, fmt, ap);
	va_end(ap);
	registry__add_error(c->errs, ERR_INVALID, line, col,
			    xasprintf("%s:%zu:%zu: %s: %s", c->file, line, col,
				      c->plen ? c->path : "top level", what));
}

/* Appends ".key" to the path; returns what registry__path_pop() needs. */
size_t registry__path_push(struct pctx *c, const char *key)
{
	size_t old = c->plen;

	snprintf(c->path + old, sizeof c->path - old, "%s%s", old ? "." : "", key);
	c->plen = strlen(c->path);
	return old;
}

size_t registry__path_push_index(struct pctx *c, size_t i)
{
	size_t old = c->plen;

	snprintf(c->path + old, sizeof c->path - old, "[%zu]", i);
	c->plen = strlen(c->path);
	return old;
}

void registry__path_pop(struct pctx *c, size_t old)
{
	c->plen = old;
	c->path[old] = '\0';
}

/* ---- YAML nodes ---- */

yaml_node_t *registry__get_node(struct pctx *c, int i)
{
	return yaml_document_get_node(&c->doc, i);
}

int registry__is_map(const yaml_node_t *n)
{
	return n != NULL && n->type == YAML_MAPPING_NODE;
}

int registry__is_seq(const yaml_node_t *n)
{
	return n != NULL && n->type == YAML_SEQUENCE_NODE;
}

static int is_plain(const yaml_node_t *n)
{
	return n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
}

/* A plain scalar that YAML reads as null: "", "~", "null". */
static int is_null(const yaml_node_t *n)
{
	static const char *const nulls[] = {"", "~", "null", "Null", "NULL"};
	const char *s = (const char *)n->data.scalar.value;

	if (n->type != YAML_SCALAR_NODE || !is_plain(n))
		return 0;
	for (size_t i = 0; i < sizeof nulls / sizeof nulls[0]; i++)
		if (strcmp(s, nulls[i]) == 0)
			return 1;
	return 0;
}

/* The text of a scalar that is not null, else NULL. Borrowed. */
const char *registry__scalar(const yaml_node_t *n)
{
	if (n == NULL || n->type != YAML_SCALAR_NODE || is_null(n))
		return NULL;
	return (const char *)n->data.scalar.value;
}

/* The value under key in map n, or NULL. */
yaml_node_t *registry__map_get(struct pctx *c, const yaml_node_t *n, const char *key)
{
	if (!registry__is_map(n))
		return NULL;
	for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
		const char *k = registry__scalar(registry__get_node(c, p->key));

		if (k != NULL && strcmp(k, key) == 0)
			return registry__get_node(c, p->value);
	}
	return NULL;
}

size_t registry__seq_len(const yaml_node_t *n)
{
	return (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
}

size_t registry__map_len(const yaml_node_t *n)
{
	return (size_t)(n->data.mapping.pairs.top - n->data.mapping.pairs.start);
}

/* ---- scalars ---- */

int registry__scalar_int(const yaml_node_t *n, int64_t *v)
{
	const char *s = registry__scalar(n);
	const char *d;
	char *end;
	long long x;

	if (s == NULL || !is_plain(n))
		return -1;
	d = (*s == '-' || *s == '+') ? s + 1 : s;
	if (!isdigit((unsigned char)*d))
		return -1;
	errno = 0;
	x = strtoll(s, &end, 10);
	if (errno != 0 || *end != '\0')
		return -1;
	*v = x;
	return 0;
}

int registry__scalar_num(const yaml_node_t *n, double *v)
{
	const char *s = registry__scalar(n);
	const char *d;
	char *end;
	double x;

	if (s == NULL || !is_plain(n))
		return -1;
	d = (*s == '-' || *s == '+') ? s + 1 : s;
	if (!isdigit((unsigned char)*d) && !(*d == '.' && isdigit((unsigned char)d[1])))
		return -1;
	if (strpbrk(s, "xXpP") != NULL)
		return -1; /* no hexadecimal floats */
	errno = 0;
	x = strtod(s, &end);
	if (errno != 0 || *end != '\0' || !isfinite(x))
		return -1;
	*v = x;
	return 0;
}

static int scalar_bool(const yaml_node_t *n, int *v)
{
	static const char *const yes[] = {"true", "True", "TRUE"};
	static const char *const no[] = {"false", "False", "FALSE"};
	const char *s = registry__scalar(n);

	if (s == NULL || !is_plain(n))
		return -1;
	for (size_t i = 0; i < 3; i++) {
		if (strcmp(s, yes[i]) == 0 || strcmp(s, no[i]) == 0) {
			*v = strcmp(s, yes[i]) == 0;
			return 0;
		}
	}
	return -1;
}

static int parse_duration(const char *s, int64_t *ms)
{
	static const struct {
		const char *unit;
		int64_t ms;
	} units[] = {{"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}};
	char *end;
	long long v;

	if (s == NULL || !isdigit((unsigned char)*s))
		return -1;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno != 0)
		return -1;
	for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
		if (strcmp(end, units[i].unit) != 0)
			continue;
		if (v > INT64_MAX / units[i].ms)
			return -1;
		*ms = v * units[i].ms;
		return 0;
	}
	return -1;
}

/* "12GB", "1.5GiB", "512MB", "4096": K, M, G, T are powers of 1024. */
static int parse_size(const char *s, int64_t *bytes)
{
	static const char *const units[] = {"b", "k", "m", "g", "t"};
	const char *p = s;
	char *end;
	double v;

	if (s == NULL || !isdigit((unsigned char)*s))
		return -1;
	while (isdigit((unsigned char)*p))
		p++;
	if (*p == '.' && isdigit((unsigned char)p[1]))
		for (p++; isdigit((unsigned char)*p);)
			p++;
	v = strtod(s, &end);
	if (end != p)
		return -1;
	for (int i = 0; i < 5; i++) {
		size_t n = strlen(p);
		int unit = n > 0 && tolower((unsigned char)p[0]) == units[i][0] &&
			   (n == 1 || strcasecmp(p + 1, "b") == 0 ||
			    (i > 0 && strcasecmp(p + 1, "ib") == 0));

		if (*p == '\0' && i == 0)
			unit = 1;
		if (!unit)
			continue;
		v = ldexp(v, 10 * i);
		if (v >= (double)SIZE_MAX_BYTES * 2 || (i == 0 && v != floor(v)))
			return -1;
		*bytes = (int64_t)llround(v);
		return 0;
	}
	return -1;
}

static void fmt_ms(char *out, size_t n, int64_t ms)
{
	if (ms != 0 && ms % 3600000 == 0)
		snprintf(out, n, "%lldh", (long long)(ms / 3600000));
	else if (ms != 0 && ms % 60000 == 0)
		snprintf(out, n, "%lldm", (long long)(ms / 60000));
	else if (ms % 1000 == 0)
		snprintf(out, n, "%llds", (long long)(ms / 1000));
	else
		snprintf(out, n, "%lldms", (long long)ms);
}

static void fmt_size(char *out, size_t n, int64_t b)
{
	static const char *const units[] = {"TB", "GB", "MB", "KB"};

	for (int i = 0; i < 4; i++) {
		int shift = 10 * (4 - i);

		if (b != 0 && b % (1LL << shift) == 0) {
			snprintf(out, n, "%lld%s", (long long)(b >> shift), units[i]);
			return;
		}
	}
	snprintf(out, n, "%lld bytes", (long long)b);
}

/* ---- value readers: each reports its own error and returns -1 ---- */

int registry__read_str(struct pctx *c, yaml_node_t *n, char **out)
{
	const char *s = registry__scalar(n);

	if (s == NULL || *s == '\0') {
		registry__perr(c, n, "must be a non-empty string");
		return -1;
	}
	free(*out);
	*out = xstrdup(s);
	return 0;
}

int registry__read_int(struct pctx *c, yaml_node_t *n, int64_t min, int64_t max, int64_t *out)
{
	int64_t v;

	if (registry__scalar_int(n, &v) == 0 && v >= min && v <= max) {
		*out = v;
		return 0;
	}
	if (min == INT64_MIN && max == INT64_MAX)
		registry__perr(c, n, "must be an integer");
	else
		registry__perr(c, n, "must be an integer from %lld to %lld", (long long)min, (long long)max);
	return -1;
}

int registry__read_bool(struct pctx *c, yaml_node_t *n, int *out)
{
	if (scalar_bool(n, out) == 0)
		return 0;
	registry__perr(c, n, "must be true or false");
	return -1;
}

static int read_duration(struct pctx *c, yaml_node_t *n, int64_t min, int64_t max, int64_t *out)
{
	char lo[32], hi[32];
	int64_t v;

	if (parse_duration(registry__scalar(n), &v) == 0 && v >= min && v <= max) {
		*out = v;
		return 0;
	}
	fmt_ms(lo, sizeof lo, min);
	fmt_ms(hi, sizeof hi, max);
	registry__perr(c, n, "must be a duration from %s to %s, such as 300s, 5m or 250ms (units ms, s, m, h)",
		       lo, hi);
	return -1;
}

static int read_size(struct pctx *c, yaml_node_t *n, int64_t min, int64_t max, int64_t *out)
{
	char lo[32], hi[32];
	int64_t v;

	if (parse_size(registry__scalar(n), &v) == 0 && v >= min && v <= max) {
		*out = v;
		return 0;
	}
	fmt_size(lo, sizeof lo, min);
	fmt_size(hi, sizeof hi, max);
	registry__perr(c, n, "must be a size from %s to %s, such as 12GB, 512MB or a byte count", lo, hi);
	return -1;
}

static int read_enum(struct pctx *c, yaml_node_t *n, const char *const *options, int *out)
{
	const char *s = registry__scalar(n);
	struct strlist l = {0};

	for (int i = 0; options[i] != NULL; i++) {
		if (s != NULL && strcmp(s, options[i]) == 0) {
			*out = i;
			return 0;
		}
		registry__sl_add(&l, options[i]);
	}
	registry__perr(c, n, "must be one of %s", l.s);
	return -1;
}

/* A map key naming something: non-empty, letters, digits and `extra`. */
const char *registry__read_name(struct pctx *c, yaml_node_t *k, const char *extra, const char *what)
{
	const char *s = registry__scalar(k);

	if (s == NULL || *s == '\0') {
		registry__perr(c, k, "%s must be a non-empty string", what);
		return NULL;
	}
	for (const char *p = s; extra != NULL && *p; p++) {
		if (!isalnum((unsigned char)*p) && strchr(extra, *p) == NULL) {
			registry__perr(c, k, "%s \"%s\" may use only letters, digits and %s", what, s, extra);
			return NULL;
		}
	}
	return s;
}

/* ---- tables ---- */

void registry__apply_defaults(const struct key_spec *t, void *obj)
{
	for (; t->name != NULL; t++) {
		char *field = (char *)obj + t->off;

		if (t->type == KEY_INT || t->type == KEY_DURATION || t->type == KEY_SIZE)
			*(int64_t *)field = t->def;
		else if (t->type == KEY_BOOL || t->type == KEY_ENUM)
			*(int *)field = (int)t->def;
		else if (t->type == KEY_STR && t->sdef != NULL)
			*(char **)field = xstrdup(t->sdef);
		else if (t->type == KEY_MAP)
			registry__apply_defaults(t->sub, obj);
	}
}

static void key_list(const struct key_spec *t, struct strlist *l)
{
	for (; t->name != NULL; t++)
		registry__sl_add(l, t->name);
}

static void parse_value(struct pctx *c, yaml_node_t *v, const struct key_spec *k, void *obj);

void registry__parse_map(struct pctx *c, yaml_node_t *n, const struct key_spec *t, void *obj)
{
	struct strlist keys = {0};
	uint64_t seen = 0;
	size_t old;

	key_list(t, &keys);
	if (!registry__is_map(n)) {
		registry__perr(c, n, "must be a map with keys %s", keys.s);
		return;
	}
	for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
		yaml_node_t *k = registry__get_node(c, p->key);
		const char *name = registry__scalar(k);
		size_t i = 0;

		while (t[i].name != NULL && (name == NULL || strcmp(t[i].name, name) != 0))
			i++;
		old = registry__path_push(c, name ? name : "?");
		if (t[i].name == NULL)
			registry__perr(c, k, "unknown key; allowed keys: %s", keys.s);
		else if (seen & (1ULL << i))
			registry__perr(c, k, "duplicate key; give it once");
		else
			parse_value(c, registry__get_node(c, p->value), &t[i], obj);
		if (t[i].name != NULL)
			seen |= 1ULL << i;
		registry__path_pop(c, old);
	}
	for (size_t i = 0; t[i].name != NULL; i++) {
		if (!t[i].required || (seen & (1ULL << i)))
			continue;
		old = registry__path_push(c, t[i].name);
		registry__perr(c, n, "is required; %s", t[i].help ? t[i].help : "add it");
		registry__path_pop(c, old);
	}
}

static void parse_value(struct pctx *c, yaml_node_t *v, const struct key_spec *k, void *obj)
{
	/* The top level's keys have no object (KEY_LATER): NULL + 0 is undefined in C. */
	char *field = obj ? (char *)obj + k->off : NULL;

	switch (k->type) {
	case KEY_STR: registry__read_str(c, v, (char **)field); break;
	case KEY_INT: registry__read_int(c, v, k->min, k->max, (int64_t *)field); break;
	case KEY_BOOL: registry__read_bool(c, v, (int *)field); break;
	case KEY_DURATION: read_duration(c, v, k->min, k->max, (int64_t *)field); break;
	case KEY_SIZE: read_size(c, v, k->min, k->max, (int64_t *)field); break;
	case KEY_ENUM: read_enum(c, v, k->options, (int *)field); break;
	case KEY_MAP: registry__parse_map(c, v, k->sub, obj); break;
	case KEY_FN: k->fn(c, v, obj); break;
	default: break; /* KEY_LATER */
	}
}

/*
 * Reads a whole file of at most max bytes; NULL with errno set. Caller frees.
 * The buffer grows with what is read, up to max: allocating max (16 MiB for
 * a workflow) up front for every file made each load slow under ASan.
 */
char *registry__read_file(const char *path, size_t max, size_t *len)
{
	FILE *f = fopen(path, "rb");
	struct buf b;
	char chunk[16384];
	size_t n;
	int e = 0;

	if (f == NULL)
		return NULL;
	buf_init(&b, max);
	for (;;) {
		n = fread(chunk, 1, sizeof chunk, f);
		if (n == 0)
			break;
		if (buf_append(&b, chunk, n) < 0) {
			e = EFBIG;
			break;
		}
	}
	if (e == 0 && ferror(f))
		e = errno;
	fclose(f);
	if (e != 0) {
		buf_cleanup(&b);
		errno = e;
		return NULL;
	}
	*len = b.len;
	return buf_steal(&b);
}
