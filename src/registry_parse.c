/*
 * registry_parse.c - builds a struct registry from YAML, checking every key.
 *
 * Each YAML map is described by a table of keys (name, type, required,
 * min/max, default, field offset); parse_map() applies a table to one map
 * node: it reports unknown, duplicate and missing keys and parses the simple
 * values in place. Keys whose meaning depends on other keys (a model's
 * function, quality, workflow, bind; a param's default) are KEY_LATER in
 * the table and parsed by their owner afterwards, through map_get().
 *
 * Errors never stop the walk: each is recorded with its position, so
 * `fnrun check` lists them all. A part that failed is still recorded under
 * its name (function, param, quality, model), so one mistake does not
 * cascade into "unknown function" errors elsewhere.
 *
 * Order of work, whatever the order in the file: functions; models (they
 * name functions); fallbacks (they name models); the server section.
 */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yaml.h>

#include "json.h"
#include "log.h"
#include "registry.h"
#include "util.h"

#define REG_MAX_FILE (4 << 20)      /* registry YAML, bytes */
#define REG_MAX_WORKFLOW (16 << 20) /* one workflow JSON, bytes */
#define SIZE_MAX_BYTES (1LL << 50)  /* largest size a registry may give: 1 PiB */
#define WEEK_S 604800               /* seconds */

struct pctx {
	const char *file;                /* the registry path, for messages */
	char *dir;                       /* its directory, for workflow paths */
	yaml_document_t doc;
	struct registry *r;              /* being built */
	struct registry__errors *errs;   /* where errors go */
	yaml_node_t **model_nodes;       /* each model's map, as r->models */
	char path[512];                  /* dotted path of the key in hand */
	size_t plen;
};

enum key_type {
	KEY_STR,      /* non-empty string -> char * */
	KEY_INT,      /* integer in [min, max] -> int64_t */
	KEY_BOOL,     /* true | false -> int */
	KEY_DURATION, /* "300s", "5m", "250ms", "1h" in [min, max] ms -> int64_t */
	KEY_SIZE,     /* "12GB", "512MB", a byte count in [min, max] -> int64_t */
	KEY_ENUM,     /* one of options -> int, the option's index */
	KEY_MAP,      /* a nested table `sub`, fields in the same object */
	KEY_FN,       /* parsed by fn(c, value, object) */
	KEY_LATER,    /* allowed here; parsed by the table's owner afterwards */
};

struct key_spec {
	const char *name;
	int type;                   /* enum key_type */
	int required;
	int64_t min, max;           /* KEY_INT, KEY_DURATION (ms), KEY_SIZE (bytes) */
	int64_t def;                /* default of a number, bool or enum */
	const char *sdef;           /* default of a KEY_STR, or NULL */
	size_t off;                 /* the field's offset in the object */
	const char *const *options; /* KEY_ENUM, NULL-terminated */
	const struct key_spec *sub; /* KEY_MAP */
	void (*fn)(struct pctx *c, yaml_node_t *v, void *obj); /* KEY_FN */
	const char *help;           /* what to write, for "is required" */
};

/* A comma-separated list for messages, cut with "..." when long. */
struct strlist {
	char s[320];
	size_t len;
	int cut;
};

static void sl_add(struct strlist *l, const char *item)
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

static void add_error(struct registry__errors *e, int code, size_t line, size_t col,
		      char *msg)
{
	e->v = xrealloc(e->v, (e->n + 1) * sizeof *e->v);
	e->v[e->n] = (struct registry__error){line, col, e->n, code, msg};
	e->n++;
}

/* Records "FILE:LINE:COL: path: what" at node n. */
__attribute__((format(printf, 3, 4))) static void perr(struct pctx *c, const yaml_node_t *n,
						       const char *fmt, ...)
{
	char what[1024];
	size_t line = n->start_mark.line + 1, col = n->start_mark.column + 1;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof what, fmt, ap);
	va_end(ap);
	add_error(c->errs, ERR_INVALID, line, col,
		  xasprintf("%s:%zu:%zu: %s: %s", c->file, line, col,
			    c->plen ? c->path : "top level", what));
}

/* Appends ".key" to the path; returns what path_pop() needs. */
static size_t path_push(struct pctx *c, const char *key)
{
	size_t old = c->plen;

	snprintf(c->path + old, sizeof c->path - old, "%s%s", old ? "." : "", key);
	c->plen = strlen(c->path);
	return old;
}

static size_t path_push_index(struct pctx *c, size_t i)
{
	size_t old = c->plen;

	snprintf(c->path + old, sizeof c->path - old, "[%zu]", i);
	c->plen = strlen(c->path);
	return old;
}

static void path_pop(struct pctx *c, size_t old)
{
	c->plen = old;
	c->path[old] = '\0';
}

/* ---- YAML nodes ---- */

static yaml_node_t *get_node(struct pctx *c, int i)
{
	return yaml_document_get_node(&c->doc, i);
}

static int is_map(const yaml_node_t *n)
{
	return n != NULL && n->type == YAML_MAPPING_NODE;
}

static int is_seq(const yaml_node_t *n)
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
static const char *scalar(const yaml_node_t *n)
{
	if (n == NULL || n->type != YAML_SCALAR_NODE || is_null(n))
		return NULL;
	return (const char *)n->data.scalar.value;
}

/* The value under key in map n, or NULL. */
static yaml_node_t *map_get(struct pctx *c, const yaml_node_t *n, const char *key)
{
	if (!is_map(n))
		return NULL;
	for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
		const char *k = scalar(get_node(c, p->key));

		if (k != NULL && strcmp(k, key) == 0)
			return get_node(c, p->value);
	}
	return NULL;
}

static size_t seq_len(const yaml_node_t *n)
{
	return (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
}

static size_t map_len(const yaml_node_t *n)
{
	return (size_t)(n->data.mapping.pairs.top - n->data.mapping.pairs.start);
}

/* ---- scalars ---- */

static int scalar_int(const yaml_node_t *n, int64_t *v)
{
	const char *s = scalar(n);
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

static int scalar_num(const yaml_node_t *n, double *v)
{
	const char *s = scalar(n);
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
	const char *s = scalar(n);

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

static int read_str(struct pctx *c, yaml_node_t *n, char **out)
{
	const char *s = scalar(n);

	if (s == NULL || *s == '\0') {
		perr(c, n, "must be a non-empty string");
		return -1;
	}
	free(*out);
	*out = xstrdup(s);
	return 0;
}

static int read_int(struct pctx *c, yaml_node_t *n, int64_t min, int64_t max, int64_t *out)
{
	int64_t v;

	if (scalar_int(n, &v) == 0 && v >= min && v <= max) {
		*out = v;
		return 0;
	}
	if (min == INT64_MIN && max == INT64_MAX)
		perr(c, n, "must be an integer");
	else
		perr(c, n, "must be an integer from %lld to %lld", (long long)min, (long long)max);
	return -1;
}

static int read_bool(struct pctx *c, yaml_node_t *n, int *out)
{
	if (scalar_bool(n, out) == 0)
		return 0;
	perr(c, n, "must be true or false");
	return -1;
}

static int read_duration(struct pctx *c, yaml_node_t *n, int64_t min, int64_t max, int64_t *out)
{
	char lo[32], hi[32];
	int64_t v;

	if (parse_duration(scalar(n), &v) == 0 && v >= min && v <= max) {
		*out = v;
		return 0;
	}
	fmt_ms(lo, sizeof lo, min);
	fmt_ms(hi, sizeof hi, max);
	perr(c, n, "must be a duration from %s to %s, such as 300s, 5m or 250ms (units ms, s, m, h)",
	     lo, hi);
	return -1;
}

static int read_size(struct pctx *c, yaml_node_t *n, int64_t min, int64_t max, int64_t *out)
{
	char lo[32], hi[32];
	int64_t v;

	if (parse_size(scalar(n), &v) == 0 && v >= min && v <= max) {
		*out = v;
		return 0;
	}
	fmt_size(lo, sizeof lo, min);
	fmt_size(hi, sizeof hi, max);
	perr(c, n, "must be a size from %s to %s, such as 12GB, 512MB or a byte count", lo, hi);
	return -1;
}

static int read_enum(struct pctx *c, yaml_node_t *n, const char *const *options, int *out)
{
	const char *s = scalar(n);
	struct strlist l = {0};

	for (int i = 0; options[i] != NULL; i++) {
		if (s != NULL && strcmp(s, options[i]) == 0) {
			*out = i;
			return 0;
		}
		sl_add(&l, options[i]);
	}
	perr(c, n, "must be one of %s", l.s);
	return -1;
}

/* A map key naming something: non-empty, letters, digits and `extra`. */
static const char *read_name(struct pctx *c, yaml_node_t *k, const char *extra, const char *what)
{
	const char *s = scalar(k);

	if (s == NULL || *s == '\0') {
		perr(c, k, "%s must be a non-empty string", what);
		return NULL;
	}
	for (const char *p = s; extra != NULL && *p; p++) {
		if (!isalnum((unsigned char)*p) && strchr(extra, *p) == NULL) {
			perr(c, k, "%s \"%s\" may use only letters, digits and %s", what, s, extra);
			return NULL;
		}
	}
	return s;
}

/* ---- tables ---- */

static void apply_defaults(const struct key_spec *t, void *obj)
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
			apply_defaults(t->sub, obj);
	}
}

static void key_list(const struct key_spec *t, struct strlist *l)
{
	for (; t->name != NULL; t++)
		sl_add(l, t->name);
}

static void parse_value(struct pctx *c, yaml_node_t *v, const struct key_spec *k, void *obj);

static void parse_map(struct pctx *c, yaml_node_t *n, const struct key_spec *t, void *obj)
{
	struct strlist keys = {0};
	uint64_t seen = 0;
	size_t old;

	key_list(t, &keys);
	if (!is_map(n)) {
		perr(c, n, "must be a map with keys %s", keys.s);
		return;
	}
	for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
		yaml_node_t *k = get_node(c, p->key);
		const char *name = scalar(k);
		size_t i = 0;

		while (t[i].name != NULL && (name == NULL || strcmp(t[i].name, name) != 0))
			i++;
		old = path_push(c, name ? name : "?");
		if (t[i].name == NULL)
			perr(c, k, "unknown key; allowed keys: %s", keys.s);
		else if (seen & (1ULL << i))
			perr(c, k, "duplicate key; give it once");
		else
			parse_value(c, get_node(c, p->value), &t[i], obj);
		if (t[i].name != NULL)
			seen |= 1ULL << i;
		path_pop(c, old);
	}
	for (size_t i = 0; t[i].name != NULL; i++) {
		if (!t[i].required || (seen & (1ULL << i)))
			continue;
		old = path_push(c, t[i].name);
		perr(c, n, "is required; %s", t[i].help ? t[i].help : "add it");
		path_pop(c, old);
	}
}

static void parse_value(struct pctx *c, yaml_node_t *v, const struct key_spec *k, void *obj)
{
	char *field = (char *)obj + k->off;

	switch (k->type) {
	case KEY_STR: read_str(c, v, (char **)field); break;
	case KEY_INT: read_int(c, v, k->min, k->max, (int64_t *)field); break;
	case KEY_BOOL: read_bool(c, v, (int *)field); break;
	case KEY_DURATION: read_duration(c, v, k->min, k->max, (int64_t *)field); break;
	case KEY_SIZE: read_size(c, v, k->min, k->max, (int64_t *)field); break;
	case KEY_ENUM: read_enum(c, v, k->options, (int *)field); break;
	case KEY_MAP: parse_map(c, v, k->sub, obj); break;
	case KEY_FN: k->fn(c, v, obj); break;
	default: break; /* KEY_LATER */
	}
}

/* ---- functions: params ---- */

static const char *const type_names[] = {"string", "int", "float", "bool", "enum", NULL};
static const char *const output_names[] = {"image", "audio", "video", NULL};
static const char *const runtime_names[] = {"process", "docker", "external", NULL};
static const char *const level_names[] = {"error", "warn", "info", "debug", NULL};

static const struct key_spec param_keys[] = {
	{.name = "type", .type = KEY_ENUM, .required = 1, .def = -1, .options = type_names,
	 .off = offsetof(struct reg_param, type), .help = "one of string, int, float, bool, enum"},
	{.name = "required", .type = KEY_BOOL, .off = offsetof(struct reg_param, required)},
	{.name = "default", .type = KEY_LATER},
	{.name = "min", .type = KEY_LATER},
	{.name = "max", .type = KEY_LATER},
	{.name = "max_length", .type = KEY_LATER},
	{.name = "options", .type = KEY_LATER},
	{.name = "description", .type = KEY_STR, .off = offsetof(struct reg_param, description)},
	{NULL},
};

/* Reports key of param map n when present but not for this type. */
static int only_for(struct pctx *c, yaml_node_t *n, const char *key, int ok, const char *types,
		    const struct reg_param *p)
{
	yaml_node_t *v = map_get(c, n, key);
	size_t old;

	if (v == NULL || ok)
		return v != NULL;
	old = path_push(c, key);
	perr(c, v, "applies only to %s params; this param's type is %s", types, type_names[p->type]);
	path_pop(c, old);
	return 0;
}

static int read_bound(struct pctx *c, yaml_node_t *v, const struct reg_param *p, int64_t *i,
		      double *d)
{
	if (p->type == REG_INT)
		return read_int(c, v, INT64_MIN, INT64_MAX, i);
	if (scalar_num(v, d) == 0)
		return 0;
	perr(c, v, "must be a number");
	return -1;
}

static void param_bounds(struct pctx *c, yaml_node_t *n, struct reg_param *p)
{
	int num = p->type == REG_INT || p->type == REG_FLOAT;
	size_t old;

	if (only_for(c, n, "min", num, "int and float", p)) {
		old = path_push(c, "min");
		p->has_min = read_bound(c, map_get(c, n, "min"), p, &p->min_int, &p->min_num) == 0;
		path_pop(c, old);
	}
	if (only_for(c, n, "max", num, "int and float", p)) {
		old = path_push(c, "max");
		p->has_max = read_bound(c, map_get(c, n, "max"), p, &p->max_int, &p->max_num) == 0;
		path_pop(c, old);
	}
	if (p->has_min && p->has_max &&
	    (p->type == REG_INT ? p->min_int > p->max_int : p->min_num > p->max_num)) {
		old = path_push(c, "max");
		perr(c, map_get(c, n, "max"), "must not be below min");
		path_pop(c, old);
	}
	if (only_for(c, n, "max_length", p->type == REG_STRING, "string", p)) {
		old = path_push(c, "max_length");
		read_int(c, map_get(c, n, "max_length"), 1, 100000000, &p->max_length);
		path_pop(c, old);
	}
}

static void param_options(struct pctx *c, yaml_node_t *n, struct reg_param *p)
{
	yaml_node_t *v;
	size_t old;

	if (!only_for(c, n, "options", p->type == REG_ENUM, "enum", p) && p->type != REG_ENUM)
		return;
	old = path_push(c, "options");
	v = map_get(c, n, "options");
	if (v == NULL)
		perr(c, n, "is required for an enum param; list the allowed values, e.g. [euler, ddim]");
	else if (!is_seq(v) || seq_len(v) == 0)
		perr(c, v, "must be a non-empty list of values, e.g. [euler, ddim]");
	else
		p->options = xcalloc(seq_len(v) + 1, sizeof *p->options);
	for (size_t i = 0; p->options != NULL && i < seq_len(v); i++) {
		yaml_node_t *o = get_node(c, v->data.sequence.items.start[i]);
		size_t o2 = path_push_index(c, i);
		char *s = NULL;

		if (read_str(c, o, &s) < 0) {
			path_pop(c, o2);
			continue;
		}
		for (size_t j = 0; j < p->noptions; j++)
			if (strcmp(p->options[j], s) == 0)
				perr(c, o, "duplicate option \"%s\"", s);
		p->options[p->noptions++] = s;
		path_pop(c, o2);
	}
	path_pop(c, old);
}

static int in_options(const struct reg_param *p, const char *s)
{
	for (size_t i = 0; i < p->noptions; i++)
		if (strcmp(p->options[i], s) == 0)
			return 1;
	return 0;
}

/* Reports a default that breaks the param's own rule; returns NULL. */
static struct json_object *bad_default(struct pctx *c, yaml_node_t *v, const struct reg_param *p)
{
	char rule[256];

	registry__describe(p, rule, sizeof rule);
	perr(c, v, "%s (the param's own limits)", rule);
	return NULL;
}

static struct json_object *default_string(struct pctx *c, yaml_node_t *v, struct reg_param *p)
{
	const char *s = scalar(v);

	if (s == NULL) {
		perr(c, v, "must be a string");
		return NULL;
	}
	if (p->max_length > 0 && registry__utf8_len(s) > (size_t)p->max_length)
		return bad_default(c, v, p);
	return json_object_new_string(s);
}

static struct json_object *default_int(struct pctx *c, yaml_node_t *v, struct reg_param *p)
{
	const char *s = scalar(v);
	int64_t x;

	if (s != NULL && strcmp(s, "random") == 0) {
		p->random = 1;
		return NULL;
	}
	if (scalar_int(v, &x) < 0) {
		perr(c, v, "must be an integer, or random");
		return NULL;
	}
	if ((p->has_min && x < p->min_int) || (p->has_max && x > p->max_int))
		return bad_default(c, v, p);
	return json_object_new_int64(x);
}

static struct json_object *default_float(struct pctx *c, yaml_node_t *v, struct reg_param *p)
{
	double x;

	if (scalar_num(v, &x) < 0) {
		perr(c, v, "must be a number");
		return NULL;
	}
	if ((p->has_min && x < p->min_num) || (p->has_max && x > p->max_num))
		return bad_default(c, v, p);
	return json_object_new_double(x);
}

static struct json_object *default_bool(struct pctx *c, yaml_node_t *v, struct reg_param *p)
{
	int b;

	return read_bool(c, v, &b) == 0 ? json_object_new_boolean(b) : NULL;
}

static struct json_object *default_enum(struct pctx *c, yaml_node_t *v, struct reg_param *p)
{
	const char *s = scalar(v);

	if (s == NULL || !in_options(p, s))
		return bad_default(c, v, p);
	return json_object_new_string(s);
}

/* Indexed by enum reg_type. */
static struct json_object *(*const default_readers[])(struct pctx *, yaml_node_t *,
						       struct reg_param *) = {
	default_string, default_int, default_float, default_bool, default_enum,
};

static void param_default(struct pctx *c, yaml_node_t *n, struct reg_param *p)
{
	yaml_node_t *v = map_get(c, n, "default");
	size_t old;

	if (v == NULL)
		return;
	old = path_push(c, "default");
	if (p->required)
		perr(c, v, "a required param takes no default; drop one of them");
	else
		p->def = default_readers[p->type](c, v, p);
	path_pop(c, old);
}

static void parse_param(struct pctx *c, yaml_node_t *n, struct reg_param *p)
{
	apply_defaults(param_keys, p);
	parse_map(c, n, param_keys, p);
	if (p->type < 0 || !is_map(n))
		return;
	param_bounds(c, n, p);
	param_options(c, n, p);
	param_default(c, n, p);
}

static const struct reg_param *find_param(const struct reg_function *f, const char *name)
{
	for (size_t i = 0; i < f->nparams; i++)
		if (strcmp(f->params[i].name, name) == 0)
			return &f->params[i];
	return NULL;
}

static void parse_params(struct pctx *c, yaml_node_t *n, void *obj)
{
	struct reg_function *f = obj;

	if (!is_map(n)) {
		perr(c, n, "must be a map of param name to {type, ...}, e.g. prompt: {type: string}");
		return;
	}
	f->params = xcalloc(map_len(n), sizeof *f->params);
	for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
		yaml_node_t *k = get_node(c, p->key);
		const char *name = read_name(c, k, "_-", "a param name");
		struct reg_param *prm;
		size_t old;

		if (name == NULL)
			continue;
		old = path_push(c, name);
		if (find_param(f, name) != NULL) {
			perr(c, k, "duplicate param; give it once");
		} else {
			prm = &f->params[f->nparams++];
			prm->name = xstrdup(name);
			parse_param(c, get_node(c, p->value), prm);
		}
		path_pop(c, old);
	}
}

/* ---- functions: messages, qualities ---- */

static void parse_messages(struct pctx *c, yaml_node_t *n, void *obj)
{
	struct reg_function *f = obj;
	struct strlist phases = {0};

	for (int i = 0; i < REG_PHASE_COUNT; i++)
		sl_add(&phases, registry_phase_name(i));
	if (!is_map(n)) {
		perr(c, n, "must be a map of phase to text; phases: %s", phases.s);
		return;
	}
	for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
		yaml_node_t *k = get_node(c, p->key);
		const char *name = scalar(k);
		size_t old = path_push(c, name ? name : "?");
		int i = 0;

		while (i < REG_PHASE_COUNT && (name == NULL || strcmp(name, registry_phase_name(i))))
			i++;
		if (i == REG_PHASE_COUNT)
			perr(c, k, "unknown phase; allowed phases: %s", phases.s);
		else if (f->messages[i] != NULL)
			perr(c, k, "duplicate phase; give it once");
		else
			read_str(c, get_node(c, p->value), &f->messages[i]);
		path_pop(c, old);
	}
}

static void parse_typical(struct pctx *c, yaml_node_t *n, void *obj)
{
	struct reg_quality *q = obj;
	int64_t v[2];

	if (!is_seq(n) || seq_len(n) != 2) {
		perr(c, n, "must be [lo, hi] in seconds, e.g. [10, 30]");
		return;
	}
	for (size_t i = 0; i < 2; i++) {
		size_t old = path_push_index(c, i);
		int rc = read_int(c, get_node(c, n->data.sequence.items.start[i]), 0, WEEK_S, &v[i]);

		path_pop(c, old);
		if (rc < 0)
			return;
	}
	if (v[0] > v[1]) {
		perr(c, n, "must be [lo, hi] with lo <= hi");
		return;
	}
	q->typical_lo_s = v[0];
	q->typical_hi_s = v[1];
}

static const struct key_spec quality_keys[] = {
	{.name = "label", .type = KEY_STR, .required = 1, .off = offsetof(struct reg_quality, label),
	 .help = "the name users see, e.g. label: Fast Preview"},
	{.name = "typical_seconds", .type = KEY_FN, .required = 1, .fn = parse_typical,
	 .help = "the usual run time [lo, hi] in seconds, e.g. typical_seconds: [10, 30]"},
	{.name = "description", .type = KEY_STR,
	 .off = offsetof(struct reg_quality, description)},
	{NULL},
};

static void parse_qualities(struct pctx *c, yaml_node_t *n, void *obj)
{
	struct reg_function *f = obj;

	if (!is_map(n) || map_len(n) == 0) {
		perr(c, n, "must be a map of quality key to {label, typical_seconds}, cheapest first");
		return;
	}
	f->qualities = xcalloc(map_len(n), sizeof *f->qualities);
	for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
		yaml_node_t *k = get_node(c, p->key);
		const char *key = read_name(c, k, "_-", "a quality key");
		struct reg_quality *q;
		size_t old;

		if (key == NULL)
			continue;
		old = path_push(c, key);
		if (strcmp(key, "auto") == 0) {
			perr(c, k, "auto is reserved for models whose tier is measured; pick another key");
		} else if (registry_quality_index(f, key) >= 0) {
			perr(c, k, "duplicate quality; give it once");
		} else {
			q = &f->qualities[f->nqualities++];
			q->key = xstrdup(key);
			apply_defaults(quality_keys, q);
			parse_map(c, get_node(c, p->value), quality_keys, q);
		}
		path_pop(c, old);
	}
}

static const struct key_spec function_keys[] = {
	{.name = "description", .type = KEY_STR, .off = offsetof(struct reg_function, description)},
	{.name = "params", .type = KEY_FN, .fn = parse_params},
	{.name = "messages", .type = KEY_FN, .fn = parse_messages},
	{.name = "qualities", .type = KEY_FN, .required = 1, .fn = parse_qualities,
	 .help = "list the tiers cheapest first, e.g. low: {label: Fast Preview, "
		 "typical_seconds: [10, 30]}"},
	{.name = "default_quality", .type = KEY_LATER},
	{.name = "output", .type = KEY_ENUM, .def = -1, .options = output_names,
	 .off = offsetof(struct reg_function, output)},
	{NULL},
};

static void quality_keys_list(const struct reg_function *f, struct strlist *l)
{
	for (size_t i = 0; i < f->nqualities; i++)
		sl_add(l, f->qualities[i].key);
}

static void set_default_quality(struct pctx *c, yaml_node_t *n, struct reg_function *f)
{
	yaml_node_t *v = map_get(c, n, "default_quality");
	struct strlist l = {0};
	const char *s;
	size_t old;
	int i;

	/* Without one, the middle of the ladder (the cheaper of two middles). */
	f->default_quality = f->nqualities ? (int)(f->nqualities - 1) / 2 : 0;
	if (v == NULL || f->nqualities == 0)
		return;
	s = scalar(v);
	i = s ? registry_quality_index(f, s) : -1;
	if (i >= 0) {
		f->default_quality = i;
		return;
	}
	quality_keys_list(f, &l);
	old = path_push(c, "default_quality");
	perr(c, v, "must be one of this function's qualities: %s", l.s);
	path_pop(c, old);
}

static void parse_functions(struct pctx *c, yaml_node_t *n)
{
	struct registry *r = c->r;

	if (!is_map(n)) {
		perr(c, n, "must be a map of function name to definition, e.g. "
			   "Create Image: {params: ..., qualities: ...}");
		return;
	}
	r->functions = xcalloc(map_len(n), sizeof *r->functions);
	for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
		yaml_node_t *k = get_node(c, p->key), *v = get_node(c, p->value);
		const char *name = read_name(c, k, NULL, "a function name");
		struct reg_function *f;
		size_t old;

		if (name == NULL)
			continue;
		old = path_push(c, name);
		if (registry_function(r, name) != NULL) {
			perr(c, k, "duplicate function; give it once");
		} else {
			f = &r->functions[r->nfunctions++];
			f->name = xstrdup(name);
			apply_defaults(function_keys, f);
			parse_map(c, v, function_keys, f);
			set_default_quality(c, v, f);
		}
		path_pop(c, old);
	}
}

/* ---- models ---- */

static const struct key_spec resources_keys[] = {
	{.name = "gpu_memory", .type = KEY_SIZE, .min = 0, .max = SIZE_MAX_BYTES,
	 .off = offsetof(struct reg_model, gpu_memory)},
	{.name = "priority", .type = KEY_INT, .min = 0, .max = 1000, .def = 100,
	 .off = offsetof(struct reg_model, priority)},
	{NULL},
};

static const struct key_spec model_keys[] = {
	{.name = "function", .type = KEY_LATER, .required = 1,
	 .help = "name a function defined under functions"},
	{.name = "quality", .type = KEY_LATER, .required = 1,
	 .help = "name a quality of the function, or auto"},
	{.name = "runtime", .type = KEY_ENUM, .options = runtime_names,
	 .off = offsetof(struct reg_model, runtime)},
	{.name = "command", .type = KEY_LATER},
	{.name = "image", .type = KEY_LATER},
	{.name = "url", .type = KEY_LATER},
	{.name = "env", .type = KEY_LATER},
	{.name = "workflow", .type = KEY_LATER, .required = 1,
	 .help = "give a ComfyUI API-format workflow JSON, relative to this file"},
	{.name = "bind", .type = KEY_LATER},
	{.name = "resources", .type = KEY_MAP, .sub = resources_keys},
	{.name = "idle_timeout", .type = KEY_DURATION, .min = 0, .max = 30LL * 86400000,
	 .def = 300000, .off = offsetof(struct reg_model, idle_timeout_ms)},
	{.name = "start_timeout", .type = KEY_DURATION, .min = 100, .max = 86400000,
	 .def = 120000, .off = offsetof(struct reg_model, start_timeout_ms)},
	{.name = "step_timeout", .type = KEY_DURATION, .min = 100, .max = 86400000,
	 .def = 60000, .off = offsetof(struct reg_model, step_timeout_ms)},
	{.name = "min_instances", .type = KEY_INT, .min = 0, .max = 64,
	 .off = offsetof(struct reg_model, min_instances)},
	{.name = "max_instances", .type = KEY_INT, .min = 1, .max = 64, .def = 1,
	 .off = offsetof(struct reg_model, max_instances)},
	{.name = "fallback", .type = KEY_LATER},
	{.name = "weight", .type = KEY_INT, .min = 0, .max = 1000000, .def = 100,
	 .off = offsetof(struct reg_model, weight)},
	{.name = "enabled", .type = KEY_BOOL, .def = 1, .off = offsetof(struct reg_model, enabled)},
	{NULL},
};

static void model_function(struct pctx *c, yaml_node_t *n, struct reg_model *m)
{
	yaml_node_t *v = map_get(c, n, "function");
	const char *s = scalar(v);
	struct strlist l = {0};
	size_t old;

	if (v == NULL)
		return;
	m->function = s ? registry_function(c->r, s) : NULL;
	if (m->function == NULL) {
		for (size_t i = 0; i < c->r->nfunctions; i++)
			sl_add(&l, c->r->functions[i].name);
		old = path_push(c, "function");
		perr(c, v, "unknown function \"%s\"; defined functions: %s", s ? s : "",
		     l.len ? l.s : "none");
		path_pop(c, old);
		return;
	}
	v = map_get(c, n, "quality");
	s = scalar(v);
	if (v == NULL)
		return;
	m->quality = s ? registry_quality_index(m->function, s) : -1;
	if (s != NULL && strcmp(s, "auto") == 0)
		m->quality = REG_QUALITY_AUTO;
	else if (m->quality < 0) {
		quality_keys_list(m->function, &l);
		old = path_push(c, "quality");
		perr(c, v, "unknown quality \"%s\" of function %s; allowed: %s, auto", s ? s : "",
		     m->function->name, l.s);
		path_pop(c, old);
	}
}

/* Reports a {name} placeholder other than {port}, {bindir} and {configdir}. */
static void check_placeholders(struct pctx *c, yaml_node_t *v, const char *arg)
{
	for (const char *p = strchr(arg, '{'); p != NULL; p = strchr(p + 1, '{')) {
		size_t n = strspn(p + 1, "abcdefghijklmnopqrstuvwxyz_");

		if (n == 0 || p[1 + n] != '}')
			continue; /* not a placeholder: literal braces */
		if ((n == 4 && strncmp(p + 1, "port", 4) == 0) ||
		    (n == 6 && strncmp(p + 1, "bindir", 6) == 0) ||
		    (n == 9 && strncmp(p + 1, "configdir", 9) == 0))
			continue;
		perr(c, v, "unknown placeholder {%.*s}; allowed: {port}, {bindir}, {configdir}", (int)n, p + 1);
	}
}

static void parse_command(struct pctx *c, yaml_node_t *v, struct reg_model *m)
{
	int has_port = 0, bad = 0;

	if (!is_seq(v) || seq_len(v) == 0) {
		perr(c, v, "must be a list of arguments, e.g. [bin/fnrun-worker, --port, \"{port}\"]");
		return;
	}
	m->command = xcalloc(seq_len(v) + 1, sizeof *m->command);
	for (size_t i = 0; i < seq_len(v); i++) {
		yaml_node_t *a = get_node(c, v->data.sequence.items.start[i]);
		size_t old = path_push_index(c, i);
		const char *s = scalar(a);

		bad |= s == NULL;
		if (s == NULL)
			perr(c, a, "must be a string; quote placeholders, e.g. \"{port}\"");
		else
			check_placeholders(c, a, s);
		has_port |= s != NULL && strstr(s, "{port}") != NULL;
		m->command[m->ncommand++] = xstrdup(s ? s : "");
		path_pop(c, old);
	}
	/* A bad argument was reported already; it may be an unquoted {port}. */
	if (m->runtime == REG_RUNTIME_PROCESS && !has_port && !bad)
		perr(c, v, "must pass {port} to the model server, e.g. "
			   "[bin/fnrun-worker, --model, sim, --port, \"{port}\"]");
}

static void parse_url(struct pctx *c, yaml_node_t *v, struct reg_model *m)
{
	const char *s = scalar(v);

	if (s != NULL && ((strncmp(s, "http://", 7) == 0 && s[7] != '\0') ||
			  (strncmp(s, "https://", 8) == 0 && s[8] != '\0'))) {
		m->url = xstrdup(s);
		return;
	}
	perr(c, v, "must be an http:// or https:// URL, e.g. http://127.0.0.1:8188");
}

static void parse_env(struct pctx *c, yaml_node_t *v, struct reg_model *m)
{
	if (!is_map(v)) {
		perr(c, v, "must be a map of variable name to value, e.g. {HF_HOME: /models}");
		return;
	}
	m->env = xcalloc(map_len(v) + 1, sizeof *m->env);
	for (yaml_node_pair_t *p = v->data.mapping.pairs.start; p < v->data.mapping.pairs.top; p++) {
		yaml_node_t *k = get_node(c, p->key), *val = get_node(c, p->value);
		const char *name = read_name(c, k, "_", "a variable name");
		size_t old, len;

		if (name == NULL)
			continue;
		old = path_push(c, name);
		len = strlen(name);
		for (size_t i = 0; i < m->nenv; i++)
			if (strncmp(m->env[i], name, len) == 0 && m->env[i][len] == '=')
				perr(c, k, "duplicate variable; give it once");
		if (isdigit((unsigned char)name[0]))
			perr(c, k, "a variable name must not start with a digit");
		else if (val->type != YAML_SCALAR_NODE)
			perr(c, val, "must be a string");
		else
			m->env[m->nenv++] = xasprintf("%s=%s", name, scalar(val) ? scalar(val) : "");
		path_pop(c, old);
	}
}

/* Which runtimes take each key, and which need it (bits of 1 << runtime). */
static const struct {
	const char *key;
	unsigned allowed, required;
	const char *help;
} runtime_keys[] = {
	{"command", 1u << REG_RUNTIME_PROCESS | 1u << REG_RUNTIME_DOCKER, 1u << REG_RUNTIME_PROCESS,
	 "give the model server's argv, e.g. [bin/fnrun-worker, --port, \"{port}\"]"},
	{"image", 1u << REG_RUNTIME_DOCKER, 1u << REG_RUNTIME_DOCKER,
	 "give the model server's image, e.g. studio/flux-schnell:latest"},
	{"url", 1u << REG_RUNTIME_EXTERNAL, 1u << REG_RUNTIME_EXTERNAL,
	 "give the model server's URL, e.g. http://127.0.0.1:8188"},
	{"env", 1u << REG_RUNTIME_PROCESS | 1u << REG_RUNTIME_DOCKER, 0, NULL},
};

static void runtime_key(struct pctx *c, yaml_node_t *n, struct reg_model *m, size_t i)
{
	yaml_node_t *v = map_get(c, n, runtime_keys[i].key);
	unsigned bit = 1u << m->runtime;
	struct strlist l = {0};
	size_t old = path_push(c, runtime_keys[i].key);

	for (int j = 0; runtime_names[j] != NULL; j++)
		if (runtime_keys[i].allowed & (1u << j))
			sl_add(&l, runtime_names[j]);
	if (v == NULL && (runtime_keys[i].required & bit))
		perr(c, n, "is required for runtime %s; %s", runtime_names[m->runtime],
		     runtime_keys[i].help);
	else if (v != NULL && !(runtime_keys[i].allowed & bit))
		perr(c, v, "applies only to runtime %s; this model's runtime is %s", l.s,
		     runtime_names[m->runtime]);
	else if (v != NULL && i == 0)
		parse_command(c, v, m);
	else if (v != NULL && i == 1)
		read_str(c, v, &m->image);
	else if (v != NULL && i == 2)
		parse_url(c, v, m);
	else if (v != NULL && i == 3)
		parse_env(c, v, m);
	path_pop(c, old);
}

/* Reads a whole file of at most max bytes; NULL with errno set. Caller frees. */
static char *read_file(const char *path, size_t max, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *data;
	size_t n;
	int e;

	if (f == NULL)
		return NULL;
	data = xmalloc(max + 1);
	n = fread(data, 1, max + 1, f);
	e = ferror(f) ? errno : n > max ? EFBIG : 0;
	fclose(f);
	if (e != 0) {
		free(data);
		errno = e;
		return NULL;
	}
	data[n] = '\0';
	*len = n;
	return data;
}

/* NULL when o is a ComfyUI API-format workflow, else what is wrong. */
static const char *workflow_problem(struct json_object *o, char *buf, size_t size)
{
	if (!json_object_is_type(o, json_type_object) || json_object_object_length(o) == 0)
		return "it must be a non-empty object of node id to node";
	json_object_object_foreach(o, id, node) {
		if (json_get_str(node, "class_type") != NULL && json_get_obj(node, "inputs") != NULL)
			continue;
		snprintf(buf, size, "node \"%s\" lacks a class_type string or an inputs object", id);
		return buf;
	}
	return NULL;
}

static void load_workflow(struct pctx *c, yaml_node_t *v, struct reg_model *m, const char *rel)
{
	struct err e = {0};
	struct json_object *o;
	const char *problem;
	char buf[200];
	size_t len = 0;
	char *data = read_file(m->workflow_path, REG_MAX_WORKFLOW, &len);

	if (data == NULL) {
		perr(c, v, "cannot read %s: %s; give a path relative to the registry file's directory",
		     rel, errno == EFBIG ? "larger than 16MB" : strerror(errno));
		return;
	}
	if (json_parse(data, len, JSON_MAX_DEPTH, &o, &e) < 0) {
		perr(c, v, "%s is not JSON (%s); export the workflow in ComfyUI's API format", rel,
		     e.msg);
	} else if ((problem = workflow_problem(o, buf, sizeof buf)) != NULL) {
		perr(c, v, "%s is not a ComfyUI API-format workflow: %s", rel, problem);
		json_object_put(o);
	} else {
		m->workflow = o;
	}
	free(data);
}

static void model_workflow(struct pctx *c, yaml_node_t *n, struct reg_model *m)
{
	yaml_node_t *v = map_get(c, n, "workflow");
	char *rel = NULL;
	size_t old;

	if (v == NULL)
		return;
	old = path_push(c, "workflow");
	if (read_str(c, v, &rel) == 0) {
		m->workflow_path = rel[0] == '/' ? xstrdup(rel) : xasprintf("%s/%s", c->dir, rel);
		load_workflow(c, v, m, rel);
	}
	free(rel);
	path_pop(c, old);
}

/* Checks one "NODE.inputs.NAME" path v for param and adds the bind. */
static void add_bind(struct pctx *c, yaml_node_t *v, struct reg_model *m, const char *param)
{
	const char *s = scalar(v);
	const char *mid = s ? strstr(s, ".inputs.") : NULL;
	struct strlist l = {0};
	struct reg_bind *b;
	char *node;

	if (mid == NULL || mid == s || mid[8] == '\0' || strchr(mid + 8, '.') != NULL) {
		perr(c, v, "must be a workflow path NODE.inputs.NAME, e.g. \"6.inputs.text\"");
		return;
	}
	node = xstrndup(s, (size_t)(mid - s));
	if (m->workflow != NULL && json_get_obj(json_get(m->workflow, node), "inputs") == NULL) {
		json_object_object_foreach(m->workflow, id, unused) {
			(void)unused;
			sl_add(&l, id);
		}
		perr(c, v, "the workflow has no node \"%s\" with inputs; its nodes: %s", node, l.s);
	}
	for (size_t i = 0; i < m->nbinds; i++)
		if (strcmp(m->binds[i].node, node) == 0 && strcmp(m->binds[i].input, mid + 8) == 0)
			perr(c, v, "%s is already bound to param %s; bind each input once", s,
			     m->binds[i].param);
	m->binds = xrealloc(m->binds, (m->nbinds + 1) * sizeof *m->binds);
	b = &m->binds[m->nbinds++];
	b->param = xstrdup(param);
	b->node = node;
	b->input = xstrdup(mid + 8);
}

static void bind_param(struct pctx *c, yaml_node_t *k, yaml_node_t *v, struct reg_model *m)
{
	const char *name = scalar(k);
	struct strlist l = {0};

	if (name == NULL) {
		perr(c, k, "must name a param of the function");
		return;
	}
	if (m->function != NULL && find_param(m->function, name) == NULL) {
		for (size_t i = 0; i < m->function->nparams; i++)
			sl_add(&l, m->function->params[i].name);
		perr(c, k, "unknown param \"%s\" of function %s; its params: %s", name,
		     m->function->name, l.len ? l.s : "none");
	}
	if (!is_seq(v)) {
		add_bind(c, v, m, name);
		return;
	}
	for (size_t i = 0; i < seq_len(v); i++) {
		size_t old = path_push_index(c, i);

		add_bind(c, get_node(c, v->data.sequence.items.start[i]), m, name);
		path_pop(c, old);
	}
}

static void model_binds(struct pctx *c, yaml_node_t *n, struct reg_model *m)
{
	yaml_node_t *v = map_get(c, n, "bind");
	size_t old;

	if (v == NULL)
		return;
	old = path_push(c, "bind");
	if (!is_map(v))
		perr(c, v, "must be a map of param to workflow path, e.g. {prompt: \"6.inputs.text\"}");
	for (yaml_node_pair_t *p = is_map(v) ? v->data.mapping.pairs.start : NULL;
	     p != NULL && p < v->data.mapping.pairs.top; p++) {
		yaml_node_t *k = get_node(c, p->key);
		size_t o2 = path_push(c, scalar(k) ? scalar(k) : "?");

		bind_param(c, k, get_node(c, p->value), m);
		path_pop(c, o2);
	}
	path_pop(c, old);
}

static void parse_model(struct pctx *c, yaml_node_t *n, struct reg_model *m)
{
	size_t old;

	apply_defaults(model_keys, m);
	parse_map(c, n, model_keys, m);
	if (!is_map(n))
		return;
	model_function(c, n, m);
	for (size_t i = 0; i < sizeof runtime_keys / sizeof runtime_keys[0]; i++)
		runtime_key(c, n, m, i);
	model_workflow(c, n, m);
	model_binds(c, n, m);
	if (m->min_instances > m->max_instances) {
		old = path_push(c, "min_instances");
		perr(c, map_get(c, n, "min_instances"), "must not exceed max_instances (%lld)",
		     (long long)m->max_instances);
		path_pop(c, old);
	}
}

static void parse_models(struct pctx *c, yaml_node_t *n)
{
	struct registry *r = c->r;

	if (!is_map(n)) {
		perr(c, n, "must be a map of model id to definition");
		return;
	}
	r->models = xcalloc(map_len(n), sizeof *r->models);
	c->model_nodes = xcalloc(map_len(n), sizeof *c->model_nodes);
	for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
		yaml_node_t *k = get_node(c, p->key), *v = get_node(c, p->value);
		const char *id = read_name(c, k, "_-.", "a model id");
		struct reg_model *m;
		size_t old;

		if (id == NULL)
			continue;
		old = path_push(c, id);
		if (registry_model(r, id) != NULL) {
			perr(c, k, "duplicate model; give it once");
		} else {
			c->model_nodes[r->nmodels] = v;
			m = &r->models[r->nmodels++];
			m->id = xstrdup(id);
			parse_model(c, v, m);
		}
		path_pop(c, old);
	}
}

/* ---- fallbacks ---- */

static void resolve_fallback(struct pctx *c, yaml_node_t *v, struct reg_model *m)
{
	const char *s = scalar(v);
	const struct reg_model *t = s ? registry_model(c->r, s) : NULL;

	if (t == NULL)
		perr(c, v, "unknown model \"%s\"; name another model of function %s", s ? s : "",
		     m->function ? m->function->name : "?");
	else if (t == m)
		perr(c, v, "a model cannot fall back to itself");
	else if (m->function != NULL && t->function != m->function)
		perr(c, v, "model %s serves function %s; a fallback must serve the same function (%s)",
		     t->id, t->function ? t->function->name : "?", m->function->name);
	else
		m->fallback = t;
}

/* Reports a fallback cycle once, at its first model in file order. */
static void check_cycle(struct pctx *c, yaml_node_t *v, const struct reg_model *m)
{
	const struct reg_model *t = m->fallback;
	char chain[400];
	size_t n = 0, len;

	for (; t != NULL && t != m && n < c->r->nmodels; t = t->fallback, n++)
		if (t < m)
			return;
	if (t != m)
		return;
	len = (size_t)snprintf(chain, sizeof chain, "%s", m->id);
	for (t = m->fallback; len < sizeof chain; t = t->fallback) {
		len += (size_t)snprintf(chain + len, sizeof chain - len, " -> %s", t->id);
		if (t == m)
			break;
	}
	perr(c, v, "fallback chain %s is a cycle; a chain must end at a model without fallback",
	     chain);
}

static void parse_fallbacks(struct pctx *c)
{
	struct registry *r = c->r;

	for (int pass = 0; pass < 2; pass++) {
		for (size_t i = 0; i < r->nmodels; i++) {
			yaml_node_t *v = map_get(c, c->model_nodes[i], "fallback");
			size_t old;

			if (v == NULL)
				continue;
			old = path_push(c, "models");
			path_push(c, r->models[i].id);
			path_push(c, "fallback");
			if (pass == 0)
				resolve_fallback(c, v, &r->models[i]);
			else
				check_cycle(c, v, &r->models[i]);
			path_pop(c, old);
		}
	}
}

/* ---- server ---- */

static const struct key_spec gpu_keys[] = {
	{.name = "vram", .type = KEY_SIZE, .min = 0, .max = SIZE_MAX_BYTES,
	 .off = offsetof(struct reg_server, gpu_vram)},
	{.name = "devices", .type = KEY_INT, .min = 0, .max = 64,
	 .off = offsetof(struct reg_server, gpu_devices)},
	{NULL},
};

static const struct key_spec docker_keys[] = {
	{.name = "socket", .type = KEY_STR, .off = offsetof(struct reg_server, docker_socket)},
	{NULL},
};

static const struct key_spec limits_keys[] = {
	{.name = "max_queue", .type = KEY_INT, .min = 1, .max = 10000000, .def = 10000,
	 .off = offsetof(struct reg_server, max_queue)},
	{.name = "max_body", .type = KEY_SIZE, .min = 1024, .max = 1LL << 30, .def = 1 << 20,
	 .off = offsetof(struct reg_server, max_body)},
	{.name = "max_json_depth", .type = KEY_INT, .min = 1, .max = JSON_MAX_DEPTH, .def = 32,
	 .off = offsetof(struct reg_server, max_json_depth)},
	{.name = "max_watchers", .type = KEY_INT, .min = 1, .max = 1000000, .def = 10000,
	 .off = offsetof(struct reg_server, max_watchers)},
	{NULL},
};

static const struct key_spec server_keys[] = {
	{.name = "listen", .type = KEY_STR, .sdef = "127.0.0.1:8180",
	 .off = offsetof(struct reg_server, listen)},
	{.name = "data", .type = KEY_STR, .sdef = "./data", .off = offsetof(struct reg_server, data)},
	{.name = "log_level", .type = KEY_ENUM, .def = LOG_INFO, .options = level_names,
	 .off = offsetof(struct reg_server, log_level)},
	{.name = "gpu", .type = KEY_MAP, .sub = gpu_keys},
	{.name = "docker", .type = KEY_MAP, .sub = docker_keys},
	{.name = "models_dir", .type = KEY_STR, .off = offsetof(struct reg_server, models_dir)},
	{.name = "cache_dir", .type = KEY_STR, .off = offsetof(struct reg_server, cache_dir)},
	{.name = "limits", .type = KEY_MAP, .sub = limits_keys},
	{NULL},
};

/* "HOST:PORT" with a port from 0 to 65535; IPv6 hosts in brackets. */
static int valid_listen(const char *s)
{
	const char *colon = strrchr(s, ':');
	char *end;
	long port;

	if (colon == NULL || colon == s || !isdigit((unsigned char)colon[1]))
		return 0;
	if (s[0] == '[' ? colon[-1] != ']' : memchr(s, ':', (size_t)(colon - s)) != NULL)
		return 0;
	port = strtol(colon + 1, &end, 10);
	return *end == '\0' && port >= 0 && port <= 65535;
}

static void parse_server(struct pctx *c, yaml_node_t *n)
{
	yaml_node_t *v;
	size_t old;

	parse_map(c, n, server_keys, &c->r->server);
	v = map_get(c, n, "listen");
	if (v == NULL || scalar(v) == NULL || valid_listen(scalar(v)))
		return;
	old = path_push(c, "listen");
	perr(c, v, "must be HOST:PORT with a port from 0 to 65535, e.g. 127.0.0.1:8180");
	path_pop(c, old);
}

/* ---- the file ---- */

static const struct key_spec root_keys[] = {
	{.name = "functions", .type = KEY_LATER, .required = 1,
	 .help = "define the functions users call, e.g. functions: {Create Image: {...}}"},
	{.name = "models", .type = KEY_LATER},
	{.name = "server", .type = KEY_LATER},
	{NULL},
};

static void walk(struct pctx *c, yaml_node_t *root)
{
	static const struct {
		const char *key;
		void (*parse)(struct pctx *c, yaml_node_t *n);
	} sections[] = {
		{"functions", parse_functions},
		{"models", parse_models},
		{"server", parse_server},
	};

	parse_map(c, root, root_keys, NULL);
	for (size_t i = 0; i < sizeof sections / sizeof sections[0]; i++) {
		yaml_node_t *v = map_get(c, root, sections[i].key);
		size_t old;

		if (v == NULL)
			continue;
		old = path_push(c, sections[i].key);
		sections[i].parse(c, v);
		path_pop(c, old);
	}
	parse_fallbacks(c);
}

/* Parses the file into c->doc. Returns 0, or -1 after recording the error. */
static int load_yaml(struct pctx *c)
{
	yaml_parser_t parser;
	size_t len = 0;
	char *data = read_file(c->file, REG_MAX_FILE, &len);
	int ok;

	if (data == NULL) {
		add_error(c->errs, ERR_IO, 0, 0,
			  xasprintf("%s: cannot read: %s", c->file,
				    errno == EFBIG ? "larger than 4MB" : strerror(errno)));
		return -1;
	}
	yaml_parser_initialize(&parser);
	yaml_parser_set_input_string(&parser, (const unsigned char *)data, len);
	ok = yaml_parser_load(&parser, &c->doc);
	if (!ok) {
		size_t line = parser.problem_mark.line + 1, col = parser.problem_mark.column + 1;

		add_error(c->errs, ERR_INVALID, line, col,
			  xasprintf("%s:%zu:%zu: YAML syntax error: %s%s%s; fix the YAML", c->file,
				    line, col, parser.problem ? parser.problem : "unreadable",
				    parser.context ? " " : "", parser.context ? parser.context : ""));
	} else if (yaml_document_get_root_node(&c->doc) == NULL) {
		add_error(c->errs, ERR_INVALID, 1, 1,
			  xasprintf("%s:1:1: top level: the registry is empty; "
				    "define functions: and models:", c->file));
		yaml_document_delete(&c->doc);
		ok = 0;
	}
	yaml_parser_delete(&parser);
	free(data);
	return ok ? 0 : -1;
}

size_t registry__parse(struct registry *r, const char *path, struct registry__errors *errs)
{
	struct pctx c = {.file = path, .r = r, .errs = errs};
	const char *slash = strrchr(path, '/');

	r->path = xstrdup(path);
	apply_defaults(server_keys, &r->server);
	c.dir = slash ? xstrndup(path, slash == path ? 1 : (size_t)(slash - path)) : xstrdup(".");
	if (load_yaml(&c) == 0) {
		walk(&c, yaml_document_get_root_node(&c.doc));
		yaml_document_delete(&c.doc);
	}
	free(c.model_nodes);
	free(c.dir);
	return errs->n;
}
