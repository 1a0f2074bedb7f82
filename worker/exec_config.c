/*
 * exec_config.c - the exec model's YAML config: each mapping checked
 * against a table of keys (name, kind, required), then typed checks of
 * every value, building one struct exec_class per declared node and
 * registering them (model_exec_load(), model_exec_unload()). The format is
 * in model_exec.c's top comment.
 *
 * Errors name "path:line:col: key.path: what is wrong; allowed: ...". A
 * config with any error registers nothing (model_exec.c, invariant 1).
 *
 * model_exec_check() (`fnrun-worker --check`) parses the same way without
 * registering, then checks that each node's program can be run.
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

#include "exec_internal.h"
#include "json.h" /* not json-c's json.h, found first on the path */
#include "log.h"
#include "model_exec.h"
#include "util.h"

#define KEY_MAX 256 /* bytes of a key path in messages */
#define EXEC_PYMODULE "custom_nodes.fnrun_exec"

static const struct exec_kind exec_kinds[] = {
	{"image", "images", "png"},
	{"audio", "audio", "wav"},
	{"video", "video", "mp4"},
};

/* Every class registered so far (model_exec_unload() frees them). */
static struct exec_class *loaded;

/* ------------------------------------------------------------------ */
/* Loading: structure of each mapping as tables, then typed checks.   */

struct load {
	const char *path;
	yaml_document_t *doc;
	struct err *err;
};

/* One key a mapping may hold. */
struct field {
	const char *name;
	yaml_node_type_t type; /* the node kind its value must be */
	int required;
};

enum { ROOT_NODES, ROOT_NFIELDS };
static const struct field root_fields[ROOT_NFIELDS] = {
	[ROOT_NODES] = {"nodes", YAML_MAPPING_NODE, 1},
};

enum {
	NODE_DISPLAY_NAME, NODE_CATEGORY, NODE_DESCRIPTION, NODE_INPUTS, NODE_COMMAND,
	NODE_STDIN, NODE_OUTPUT, NODE_EXPECTED, NODE_TIMEOUT, NODE_NFIELDS
};
static const struct field node_fields[NODE_NFIELDS] = {
	[NODE_DISPLAY_NAME] = {"display_name", YAML_SCALAR_NODE, 0},
	[NODE_CATEGORY] = {"category", YAML_SCALAR_NODE, 0},
	[NODE_DESCRIPTION] = {"description", YAML_SCALAR_NODE, 0},
	[NODE_INPUTS] = {"inputs", YAML_MAPPING_NODE, 0},
	[NODE_COMMAND] = {"command", YAML_SEQUENCE_NODE, 1},
	[NODE_STDIN] = {"stdin", YAML_SCALAR_NODE, 0},
	[NODE_OUTPUT] = {"output", YAML_MAPPING_NODE, 1},
	[NODE_EXPECTED] = {"expected_seconds", YAML_SCALAR_NODE, 0},
	[NODE_TIMEOUT] = {"timeout_seconds", YAML_SCALAR_NODE, 0},
};

enum { OUT_KIND, OUT_EXT, OUT_PREFIX, OUT_NFIELDS };
static const struct field output_fields[OUT_NFIELDS] = {
	[OUT_KIND] = {"kind", YAML_SCALAR_NODE, 1},
	[OUT_EXT] = {"ext", YAML_SCALAR_NODE, 0},
	[OUT_PREFIX] = {"prefix", YAML_SCALAR_NODE, 0},
};

enum {
	IN_TYPE, IN_REQUIRED, IN_DEFAULT, IN_TOOLTIP, IN_MIN, IN_MAX, IN_STEP, IN_CONTROL,
	IN_MULTILINE, IN_MAX_LENGTH, IN_OPTIONS, IN_NFIELDS
};
static const struct field input_fields[IN_NFIELDS] = {
	[IN_TYPE] = {"type", YAML_SCALAR_NODE, 1},
	[IN_REQUIRED] = {"required", YAML_SCALAR_NODE, 0},
	[IN_DEFAULT] = {"default", YAML_SCALAR_NODE, 0},
	[IN_TOOLTIP] = {"tooltip", YAML_SCALAR_NODE, 0},
	[IN_MIN] = {"min", YAML_SCALAR_NODE, 0},
	[IN_MAX] = {"max", YAML_SCALAR_NODE, 0},
	[IN_STEP] = {"step", YAML_SCALAR_NODE, 0},
	[IN_CONTROL] = {"control_after_generate", YAML_SCALAR_NODE, 0},
	[IN_MULTILINE] = {"multiline", YAML_SCALAR_NODE, 0},
	[IN_MAX_LENGTH] = {"max_length", YAML_SCALAR_NODE, 0},
	[IN_OPTIONS] = {"options", YAML_SEQUENCE_NODE, 0},
};

#define F(x) (1u << (x))
#define IN_COMMON (F(IN_TYPE) | F(IN_REQUIRED) | F(IN_DEFAULT) | F(IN_TOOLTIP))

/* Input types and the keys each allows beyond the common ones. */
static const struct {
	const char *name;
	unsigned fields;
} input_types[] = {
	{"INT", F(IN_MIN) | F(IN_MAX) | F(IN_STEP) | F(IN_CONTROL)},
	{"FLOAT", F(IN_MIN) | F(IN_MAX) | F(IN_STEP)},
	{"STRING", F(IN_MULTILINE) | F(IN_MAX_LENGTH)},
	{"BOOLEAN", 0},
	{"COMBO", F(IN_OPTIONS)},
};
#define NTYPES (sizeof input_types / sizeof input_types[0])

__attribute__((format(printf, 4, 5))) static int ld_fail(struct load *ld, const yaml_node_t *n,
							  const char *where, const char *fmt, ...)
{
	char msg[224];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	where = *where ? where : "top level";
	if (n == NULL)
		err_set(ld->err, ERR_INVALID, "%s: %s: %s", ld->path, where, msg);
	else
		err_set(ld->err, ERR_INVALID, "%s:%zu:%zu: %s: %s", ld->path, n->start_mark.line + 1,
			n->start_mark.column + 1, where, msg);
	return -1;
}

static const char *type_word(yaml_node_type_t t)
{
	return t == YAML_MAPPING_NODE ? "a mapping" : t == YAML_SEQUENCE_NODE ? "a list" : "a single value";
}

/* where.key into out, for messages: long parts are cut, never overflow. */
static const char *key_at(char out[KEY_MAX], const char *where, const char *key)
{
	size_t a = strnlen(where, KEY_MAX / 2), b = strnlen(key, KEY_MAX / 2 - 2), n = a;

	memcpy(out, where, a);
	if (a > 0)
		out[n++] = '.';
	memcpy(out + n, key, b);
	out[n + b] = '\0';
	return out;
}

static yaml_node_t *ld_node(struct load *ld, int idx)
{
	return yaml_document_get_node(ld->doc, idx);
}

static const char *scalar(const yaml_node_t *n)
{
	return (const char *)n->data.scalar.value;
}

static int field_find(const struct field *f, size_t nf, const char *name)
{
	for (size_t i = 0; i < nf; i++)
		if (strcmp(f[i].name, name) == 0)
			return (int)i;
	return -1;
}

static int ld_unknown_key(struct load *ld, const yaml_node_t *k, const char *where,
			  const struct field *f, size_t nf)
{
	char allowed[160];
	size_t n = 0;

	allowed[0] = '\0';
	for (size_t i = 0; i < nf && n < sizeof allowed; i++)
		n += (size_t)snprintf(allowed + n, sizeof allowed - n, "%s%s", i ? ", " : "", f[i].name);
	return ld_fail(ld, k, where, "unknown key \"%.40s\"; allowed: %s", scalar(k), allowed);
}

/*
 * Checks map against the field table: scalar keys, known, not repeated,
 * values of the declared kind, required ones present. Fills vals[i] with
 * the value node of field i (NULL when absent). where is map's key path.
 */
static int ld_walk(struct load *ld, yaml_node_t *map, const char *where, const struct field *f,
		   size_t nf, yaml_node_t **vals)
{
	char sub[KEY_MAX];

	for (size_t i = 0; i < nf; i++)
		vals[i] = NULL;
	for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
		yaml_node_t *k = ld_node(ld, p->key), *v = ld_node(ld, p->value);
		int i;

		if (k->type != YAML_SCALAR_NODE)
			return ld_fail(ld, k, where, "keys must be plain names");
		i = field_find(f, nf, scalar(k));
		if (i < 0)
			return ld_unknown_key(ld, k, where, f, nf);
		key_at(sub, where, f[i].name);
		if (vals[i] != NULL)
			return ld_fail(ld, k, sub, "duplicate key");
		if (v->type != f[i].type)
			return ld_fail(ld, v, sub, "expected %s", type_word(f[i].type));
		vals[i] = v;
	}
	for (size_t i = 0; i < nf; i++)
		if (f[i].required && vals[i] == NULL)
			return ld_fail(ld, map, where, "missing key \"%s\"", f[i].name);
	return 0;
}

/* The scalar as a string without NUL bytes; max 0: no length limit. */
static int ld_str(struct load *ld, const yaml_node_t *n, const char *where, size_t max,
		  const char **out)
{
	if (strlen(scalar(n)) != n->data.scalar.length)
		return ld_fail(ld, n, where, "contains a NUL byte");
	if (max && n->data.scalar.length > max)
		return ld_fail(ld, n, where, "longer than %zu bytes", max);
	*out = scalar(n);
	return 0;
}

static int ld_bool(struct load *ld, const yaml_node_t *n, const char *where, int *out)
{
	static const char *const yes[] = {"true", "yes", "on"}, *const no[] = {"false", "no", "off"};

	for (size_t i = 0; i < 3; i++) {
		if (strcasecmp(scalar(n), yes[i]) == 0)
			return *out = 1, 0;
		if (strcasecmp(scalar(n), no[i]) == 0)
			return *out = 0, 0;
	}
	return ld_fail(ld, n, where, "expected true or false, got \"%.40s\"", scalar(n));
}

static int ld_num(struct load *ld, const yaml_node_t *n, const char *where, double *out)
{
	char *end;

	errno = 0;
	*out = strtod(scalar(n), &end);
	if (end == scalar(n) || *end != '\0' || !isfinite(*out) || isspace((unsigned char)*scalar(n)))
		return ld_fail(ld, n, where, "expected a number, got \"%.40s\"", scalar(n));
	return 0;
}

static int ld_int(struct load *ld, const yaml_node_t *n, const char *where, int64_t *out)
{
	char *end;

	errno = 0;
	*out = strtoll(scalar(n), &end, 10);
	if (end == scalar(n) || *end != '\0' || errno != 0 || isspace((unsigned char)*scalar(n)))
		return ld_fail(ld, n, where, "expected a whole number, got \"%.40s\"", scalar(n));
	return 0;
}

/* 1..max bytes of letters, digits, _ and the extra characters. */
static int chars_ok(const char *s, const char *extra, size_t max)
{
	size_t n = strlen(s);

	if (n == 0 || n > max)
		return 0;
	for (; *s; s++)
		if (!isalnum((unsigned char)*s) && *s != '_' && !strchr(extra, *s))
			return 0;
	return 1;
}

/* Also not starting with a digit: input and class names. */
static int name_ok(const char *s, const char *extra, size_t max)
{
	return chars_ok(s, extra, max) && !isdigit((unsigned char)s[0]);
}

/* A relative path that stays inside the output directory. */
static int prefix_ok(const char *s)
{
	return chars_ok(s, "-./", 128) && s[0] != '/' && strstr(s, "..") == NULL &&
	       strstr(s, "//") == NULL && s[strlen(s) - 1] != '/';
}

/* ------------------------------------------------------------------ */
/* Loading: inputs                                                    */

static int in_type(struct load *ld, yaml_node_t *n, const char *where, int *t)
{
	char sub[KEY_MAX];

	key_at(sub, where, "type");
	for (size_t i = 0; i < NTYPES; i++)
		if (strcmp(scalar(n), input_types[i].name) == 0)
			return *t = (int)i, 0;
	return ld_fail(ld, n, sub, "unknown type \"%.40s\"; allowed: INT, FLOAT, STRING, BOOLEAN, COMBO",
		       scalar(n));
}

static int in_options(struct load *ld, yaml_node_t *seq, const char *where, struct exec_input *x)
{
	size_t n = (size_t)(seq->data.sequence.items.top - seq->data.sequence.items.start), i = 0;

	if (n == 0)
		return ld_fail(ld, seq, where, "needs at least one option");
	x->options = xcalloc(n + 1, sizeof *x->options);
	for (yaml_node_item_t *it = seq->data.sequence.items.start; it < seq->data.sequence.items.top;
	     it++) {
		yaml_node_t *o = ld_node(ld, *it);
		const char *s = NULL;

		if (o->type != YAML_SCALAR_NODE)
			return ld_fail(ld, o, where, "each option must be a single value");
		if (ld_str(ld, o, where, 1024, &s) < 0)
			return -1;
		x->options[i++] = xstrdup(s);
	}
	return 0;
}

static int in_in_options(const struct exec_input *x, const char *s)
{
	for (char **o = x->options; o && *o; o++)
		if (strcmp(*o, s) == 0)
			return 1;
	return 0;
}

static char *json_text(struct json_object *o)
{
	char *s = json_dumps(o);

	json_object_put(o);
	return s;
}

static int def_number(struct load *ld, yaml_node_t *n, const char *where, int is_int,
		      const struct node_input *in, struct exec_input *x)
{
	int64_t i = 0;
	double d = 0;

	if (is_int && ld_int(ld, n, where, &i) < 0)
		return -1;
	if (!is_int && ld_num(ld, n, where, &d) < 0)
		return -1;
	if (is_int)
		d = (double)i;
	if ((in->has_min && d < in->min) || (in->has_max && d > in->max))
		return ld_fail(ld, n, where, "%.40s is outside min..max", scalar(n));
	x->def = is_int ? xasprintf("%" PRId64, i) : json_text(json_object_new_double(d));
	x->def_text = xstrdup(x->def);
	return 0;
}

static int def_string(struct load *ld, yaml_node_t *n, const char *where, struct exec_input *x)
{
	const char *s = NULL;

	if (ld_str(ld, n, where, EXEC_MAX_ARG, &s) < 0)
		return -1;
	if (x->options && !in_in_options(x, s))
		return ld_fail(ld, n, where, "\"%.40s\" is not one of the options", s);
	if (x->max_length && model_exec__utf8_chars(s) > x->max_length)
		return ld_fail(ld, n, where, "longer than max_length %zu", x->max_length);
	x->def = json_text(json_object_new_string(s));
	x->def_text = xstrdup(s);
	return 0;
}

/* The default, checked against type, range, length and options. */
static int in_default(struct load *ld, yaml_node_t *n, const char *where, int t,
		      const struct node_input *in, struct exec_input *x)
{
	const char *tn = input_types[t].name;
	int b = 0;

	if (strcmp(tn, "INT") == 0 || strcmp(tn, "FLOAT") == 0)
		return def_number(ld, n, where, tn[0] == 'I', in, x);
	if (strcmp(tn, "BOOLEAN") != 0)
		return def_string(ld, n, where, x);
	if (ld_bool(ld, n, where, &b) < 0)
		return -1;
	x->def = xstrdup(b ? "true" : "false");
	x->def_text = xstrdup(x->def);
	return 0;
}

/* Keys this type does not take are errors, not silently ignored. */
static int in_check_keys(struct load *ld, yaml_node_t **v, const char *where, int t)
{
	char sub[KEY_MAX];

	for (int i = 0; i < IN_NFIELDS; i++) {
		if (v[i] == NULL || ((IN_COMMON | input_types[t].fields) & F(i)))
			continue;
		key_at(sub, where, input_fields[i].name);
		return ld_fail(ld, v[i], sub, "not allowed for type %s", input_types[t].name);
	}
	if (strcmp(input_types[t].name, "COMBO") == 0 && v[IN_OPTIONS] == NULL)
		return ld_fail(ld, v[IN_TYPE], where, "type COMBO needs \"options\"");
	return 0;
}

/* min, max, step and max_length, each when set. */
static int in_number_fields(struct load *ld, yaml_node_t **v, const char *where,
			    struct node_input *in, struct exec_input *x)
{
	char sub[KEY_MAX];
	double step = 0;
	int64_t maxlen = 0;

	key_at(sub, where, "min");
	if (v[IN_MIN] && ld_num(ld, v[IN_MIN], sub, &in->min) < 0)
		return -1;
	key_at(sub, where, "max");
	if (v[IN_MAX] && ld_num(ld, v[IN_MAX], sub, &in->max) < 0)
		return -1;
	in->has_min = v[IN_MIN] != NULL;
	in->has_max = v[IN_MAX] != NULL;
	if (in->has_min && in->has_max && in->min > in->max)
		return ld_fail(ld, v[IN_MAX], sub, "max is less than min");
	key_at(sub, where, "step");
	if (v[IN_STEP] && (ld_num(ld, v[IN_STEP], sub, &step) < 0 || step <= 0))
		return ld_fail(ld, v[IN_STEP], sub, "expected a number above 0");
	in->step = step;
	key_at(sub, where, "max_length");
	if (v[IN_MAX_LENGTH] && (ld_int(ld, v[IN_MAX_LENGTH], sub, &maxlen) < 0 || maxlen < 1))
		return ld_fail(ld, v[IN_MAX_LENGTH], sub, "expected a whole number above 0");
	x->max_length = (size_t)maxlen;
	return 0;
}

static int in_flags(struct load *ld, yaml_node_t **v, const char *where, struct node_input *in,
		    struct exec_input *x)
{
	char sub[KEY_MAX];
	const char *s = NULL;

	in->required = 1;
	key_at(sub, where, "required");
	if (v[IN_REQUIRED] && ld_bool(ld, v[IN_REQUIRED], sub, &in->required) < 0)
		return -1;
	key_at(sub, where, "multiline");
	if (v[IN_MULTILINE] && ld_bool(ld, v[IN_MULTILINE], sub, &in->multiline) < 0)
		return -1;
	key_at(sub, where, "control_after_generate");
	if (v[IN_CONTROL] && ld_bool(ld, v[IN_CONTROL], sub, &in->control_after_generate) < 0)
		return -1;
	key_at(sub, where, "tooltip");
	if (v[IN_TOOLTIP] && ld_str(ld, v[IN_TOOLTIP], sub, 1024, &s) < 0)
		return -1;
	x->tooltip = v[IN_TOOLTIP] ? xstrdup(s) : NULL;
	return 0;
}

static int ld_input(struct load *ld, yaml_node_t *k, yaml_node_t *map, const char *where,
		    struct node_input *in, struct exec_input *x)
{
	yaml_node_t *v[IN_NFIELDS];
	char sub[KEY_MAX];
	int t = 0;

	if (!name_ok(scalar(k), "", 64))
		return ld_fail(ld, k, where, "input names are letters, digits and _, not starting with a digit");
	if (strcmp(scalar(k), "output") == 0)
		return ld_fail(ld, k, where, "the name \"output\" is reserved for the {output} placeholder");
	if (map->type != YAML_MAPPING_NODE)
		return ld_fail(ld, map, where, "expected a mapping such as {type: STRING}");
	x->name = xstrdup(scalar(k));
	if (ld_walk(ld, map, where, input_fields, IN_NFIELDS, v) < 0 || in_type(ld, v[IN_TYPE], where, &t) < 0 ||
	    in_check_keys(ld, v, where, t) < 0 || in_number_fields(ld, v, where, in, x) < 0 ||
	    in_flags(ld, v, where, in, x) < 0)
		return -1;
	key_at(sub, where, "options");
	if (v[IN_OPTIONS] && in_options(ld, v[IN_OPTIONS], sub, x) < 0)
		return -1;
	key_at(sub, where, "default");
	if (v[IN_DEFAULT] && in_default(ld, v[IN_DEFAULT], sub, t, in, x) < 0)
		return -1;
	in->name = x->name;
	in->type = input_types[t].name;
	in->def = x->def;
	in->tooltip = x->tooltip;
	in->options = (const char *const *)x->options;
	return 0;
}

static int ld_inputs(struct load *ld, yaml_node_t *map, const char *where, struct exec_class *xc)
{
	size_t n = (size_t)(map->data.mapping.pairs.top - map->data.mapping.pairs.start);
	char sub[KEY_MAX];

	xc->inputs = xcalloc(n ? n : 1, sizeof *xc->inputs);
	xc->xin = xcalloc(n ? n : 1, sizeof *xc->xin);
	for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
		yaml_node_t *k = ld_node(ld, p->key);

		if (k->type != YAML_SCALAR_NODE)
			return ld_fail(ld, k, where, "keys must be plain names");
		key_at(sub, where, scalar(k));
		for (size_t i = 0; i < xc->ninputs; i++)
			if (strcmp(xc->xin[i].name, scalar(k)) == 0)
				return ld_fail(ld, k, sub, "duplicate input");
		xc->ninputs++; /* counted first so a half-built input is freed */
		if (ld_input(ld, k, ld_node(ld, p->value), sub, &xc->inputs[xc->ninputs - 1],
			     &xc->xin[xc->ninputs - 1]) < 0)
			return -1;
	}
	return 0;
}

/* ------------------------------------------------------------------ */
/* Loading: command, output, the node                                 */

static int ld_tmpl(struct load *ld, yaml_node_t *n, const char *where, const struct exec_class *xc,
		   struct tmpl *t)
{
	char why[200];
	const char *s = NULL;

	if (n->type != YAML_SCALAR_NODE)
		return ld_fail(ld, n, where, "expected a single value");
	if (ld_str(ld, n, where, EXEC_MAX_ARG, &s) < 0)
		return -1;
	if (model_exec__tmpl_parse(t, s, xc->xin, xc->ninputs, why, sizeof why) < 0)
		return ld_fail(ld, n, where, "%s", why);
	return 0;
}

static int ld_command(struct load *ld, yaml_node_t *seq, const char *where, struct exec_class *xc)
{
	size_t n = (size_t)(seq->data.sequence.items.top - seq->data.sequence.items.start);
	int has_output = 0;
	char sub[KEY_MAX + 24];

	if (n == 0)
		return ld_fail(ld, seq, where, "needs at least the program to run");
	xc->argv = xcalloc(n, sizeof *xc->argv);
	for (size_t i = 0; i < n; i++) {
		yaml_node_t *a = ld_node(ld, seq->data.sequence.items.start[i]);

		snprintf(sub, sizeof sub, "%s[%zu]", where, i);
		if (ld_tmpl(ld, a, sub, xc, &xc->argv[i]) < 0)
			return -1;
		xc->argc++;
		if (i == 0 && (xc->argv[0].nsegs != 1 || xc->argv[0].segs[0].ref != SEG_TEXT))
			return ld_fail(ld, a, sub, "the program must be a fixed, non-empty name");
		has_output |= model_exec__tmpl_has(&xc->argv[i], SEG_OUTPUT);
	}
	if (!has_output)
		return ld_fail(ld, seq, where, "no entry holds {output}, the file the command must write");
	return 0;
}

static int ld_output(struct load *ld, yaml_node_t *map, const char *where, struct exec_class *xc)
{
	yaml_node_t *v[OUT_NFIELDS];
	char sub[KEY_MAX];

	if (ld_walk(ld, map, where, output_fields, OUT_NFIELDS, v) < 0)
		return -1;
	for (size_t i = 0; i < sizeof exec_kinds / sizeof exec_kinds[0]; i++)
		if (strcmp(scalar(v[OUT_KIND]), exec_kinds[i].name) == 0)
			xc->kind = &exec_kinds[i];
	key_at(sub, where, "kind");
	if (xc->kind == NULL)
		return ld_fail(ld, v[OUT_KIND], sub, "unknown kind \"%.40s\"; allowed: image, audio, video",
			       scalar(v[OUT_KIND]));
	key_at(sub, where, "ext");
	if (v[OUT_EXT] && !chars_ok(scalar(v[OUT_EXT]), "", 16))
		return ld_fail(ld, v[OUT_EXT], sub, "expected letters and digits, such as wav");
	xc->ext = xstrdup(v[OUT_EXT] ? scalar(v[OUT_EXT]) : xc->kind->def_ext);
	key_at(sub, where, "prefix");
	if (v[OUT_PREFIX] && !prefix_ok(scalar(v[OUT_PREFIX])))
		return ld_fail(ld, v[OUT_PREFIX], sub,
			       "expected a relative path of letters, digits, _ - . and /, without \"..\"");
	xc->prefix = xstrdup(v[OUT_PREFIX] ? scalar(v[OUT_PREFIX]) : xc->name);
	return 0;
}

static int ld_seconds(struct load *ld, yaml_node_t *n, const char *where, const char *key,
		      double def, uint64_t *ms)
{
	char sub[KEY_MAX];
	double s = def;

	key_at(sub, where, key);
	if (n && (ld_num(ld, n, sub, &s) < 0 || s <= 0 || s > 86400 * 7))
		return ld_fail(ld, n, sub, "expected seconds above 0, at most a week");
	*ms = (uint64_t)(s * 1000);
	return 0;
}

static int ld_text(struct load *ld, yaml_node_t *n, const char *where, const char *key,
		   const char *def, char **out)
{
	char sub[KEY_MAX];
	const char *s = def;

	key_at(sub, where, key);
	if (n && ld_str(ld, n, sub, 1024, &s) < 0)
		return -1;
	*out = xstrdup(s);
	return 0;
}

static int ld_class(struct load *ld, yaml_node_t *map, const char *where, struct exec_class *xc)
{
	yaml_node_t *v[NODE_NFIELDS];
	char sub[KEY_MAX];

	if (ld_walk(ld, map, where, node_fields, NODE_NFIELDS, v) < 0 ||
	    ld_text(ld, v[NODE_DISPLAY_NAME], where, "display_name", xc->name, &xc->display_name) < 0 ||
	    ld_text(ld, v[NODE_CATEGORY], where, "category", "exec", &xc->category) < 0 ||
	    ld_text(ld, v[NODE_DESCRIPTION], where, "description", "", &xc->description) < 0)
		return -1;
	key_at(sub, where, "inputs");
	if (v[NODE_INPUTS] && ld_inputs(ld, v[NODE_INPUTS], sub, xc) < 0)
		return -1;
	key_at(sub, where, "command");
	if (ld_command(ld, v[NODE_COMMAND], sub, xc) < 0)
		return -1;
	key_at(sub, where, "stdin");
	if (v[NODE_STDIN] && ld_tmpl(ld, v[NODE_STDIN], sub, xc, &xc->stdin_t) < 0)
		return -1;
	xc->has_stdin = v[NODE_STDIN] != NULL;
	key_at(sub, where, "output");
	if (ld_output(ld, v[NODE_OUTPUT], sub, xc) < 0 ||
	    ld_seconds(ld, v[NODE_EXPECTED], where, "expected_seconds", 10, &xc->expected_ms) < 0 ||
	    ld_seconds(ld, v[NODE_TIMEOUT], where, "timeout_seconds", 600, &xc->timeout_ms) < 0)
		return -1;
	xc->nc = (struct node_class){
		.name = xc->name, .display_name = xc->display_name, .category = xc->category,
		.description = xc->description, .python_module = EXEC_PYMODULE,
		.inputs = xc->inputs, .ninputs = xc->ninputs, .output_node = 1,
		.run = model_exec__run, .cancel = model_exec__cancel, .data = xc,
	};
	return 0;
}

static void class_free(struct exec_class *xc)
{
	for (size_t i = 0; i < xc->ninputs; i++) {
		struct exec_input *x = &xc->xin[i];

		free(x->name);
		free(x->def);
		free(x->def_text);
		free(x->tooltip);
		for (char **o = x->options; o && *o; o++)
			free(*o);
		free(x->options);
	}
	for (size_t i = 0; i < xc->argc; i++)
		model_exec__tmpl_cleanup(&xc->argv[i]);
	model_exec__tmpl_cleanup(&xc->stdin_t);
	free(xc->argv);
	free(xc->inputs);
	free(xc->xin);
	free(xc->name);
	free(xc->display_name);
	free(xc->category);
	free(xc->description);
	free(xc->ext);
	free(xc->prefix);
	free(xc);
}

static void class_list_free(struct exec_class *xc)
{
	while (xc) {
		struct exec_class *next = xc->next;

		class_free(xc);
		xc = next;
	}
}

/* Builds every class under "nodes" into *out (in file order). */
static int ld_nodes(struct load *ld, yaml_node_t *map, struct exec_class **out)
{
	struct exec_class **tail = out;
	char where[KEY_MAX];

	for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
		yaml_node_t *k = ld_node(ld, p->key), *v = ld_node(ld, p->value);
		struct exec_class *xc;

		if (k->type != YAML_SCALAR_NODE || !name_ok(scalar(k), "-.", 64))
			return ld_fail(ld, k, "nodes", "node names are 1-64 letters, digits, _ - and .");
		key_at(where, "nodes", scalar(k));
		for (xc = *out; xc; xc = xc->next)
			if (strcmp(xc->name, scalar(k)) == 0)
				return ld_fail(ld, k, where, "duplicate node");
		if (nodes_find(scalar(k)) != NULL)
			return ld_fail(ld, k, where, "a node class of that name is already registered");
		if (v->type != YAML_MAPPING_NODE)
			return ld_fail(ld, v, where, "expected a mapping");
		xc = xcalloc(1, sizeof *xc);
		xc->name = xstrdup(scalar(k));
		*tail = xc; /* linked first so an error frees it */
		tail = &xc->next;
		if (ld_class(ld, v, where, xc) < 0)
			return -1;
	}
	return 0;
}

static int ld_parse(struct load *ld, const char *text, size_t len, struct exec_class **out)
{
	yaml_parser_t parser;
	yaml_node_t *root, *v[ROOT_NFIELDS];
	int rc = -1;

	yaml_parser_initialize(&parser);
	yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
	if (!yaml_parser_load(&parser, ld->doc)) {
		err_set(ld->err, ERR_INVALID, "%s:%zu:%zu: YAML syntax error: %s%s%s", ld->path,
			parser.problem_mark.line + 1, parser.problem_mark.column + 1,
			parser.problem ? parser.problem : "unknown",
			parser.context ? " " : "", parser.context ? parser.context : "");
		yaml_parser_delete(&parser);
		return -1;
	}
	root = yaml_document_get_root_node(ld->doc);
	if (root == NULL)
		ld_fail(ld, NULL, "top level", "the file is empty; expected \"nodes:\"");
	else if (root->type != YAML_MAPPING_NODE)
		ld_fail(ld, root, "top level", "expected a mapping with the key \"nodes\"");
	else if (ld_walk(ld, root, "", root_fields, ROOT_NFIELDS, v) == 0)
		rc = ld_nodes(ld, v[ROOT_NODES], out);
	if (rc == 0 && *out == NULL)
		rc = ld_fail(ld, v[ROOT_NODES], "nodes", "declares no node");
	yaml_document_delete(ld->doc);
	yaml_parser_delete(&parser);
	return rc;
}

static char *read_config(const char *path, size_t *len, struct err *err)
{
	FILE *f = fopen(path, "rb");
	char *text;

	if (f == NULL) {
		err_set(err, ERR_IO, "%s: %s", path, strerror(errno));
		return NULL;
	}
	text = xmalloc(EXEC_MAX_CONFIG + 1);
	*len = fread(text, 1, EXEC_MAX_CONFIG + 1, f);
	if (ferror(f) || *len > EXEC_MAX_CONFIG) {
		err_set(err, ferror(f) ? ERR_IO : ERR_TOO_LARGE, "%s: %s", path,
			ferror(f) ? "read error" : "larger than 1 MiB");
		free(text);
		text = NULL;
	}
	fclose(f);
	return text;
}

int model_exec_load(const char *path, struct err *err)
{
	struct exec_class *list = NULL, *xc, *last = NULL;
	yaml_document_t doc;
	struct load ld = {.path = path, .doc = &doc, .err = err};
	size_t len = 0;
	char *text = read_config(path, &len, err);

	if (text == NULL)
		return -1;
	if (ld_parse(&ld, text, len, &list) < 0) {
		free(text);
		class_list_free(list);
		return -1;
	}
	free(text);
	for (xc = list; xc; xc = xc->next) {
		nodes_register(&xc->nc);
		log_info("exec class=%s program=%s config=%s", log_q(xc->name),
			 log_q(xc->argv[0].segs[0].text), log_q(path));
		last = xc;
	}
	last->next = loaded;
	loaded = list;
	return 0;
}

void model_exec_unload(void)
{
	class_list_free(loaded);
	loaded = NULL;
}

/* ------------------------------------------------------------------ */
/* Checking: `fnrun-worker --check CONFIG`                            */

/*
 * NULL when prog can be run as exec_job.c runs it (a path as is, a bare
 * name looked up on PATH), else why not, in buf.
 */
static const char *program_problem(const char *prog, char *buf, size_t n)
{
	struct stat st;
	char *full;

	if (strchr(prog, '/') != NULL) {
		if (util_runnable(prog))
			return NULL;
		snprintf(buf, n, "%s", stat(prog, &st) < 0 ? strerror(errno) : "not an executable file");
		return buf;
	}
	full = util_which(prog, getenv("PATH"));
	if (full != NULL) {
		free(full);
		return NULL;
	}
	snprintf(buf, n, "not found on PATH; install it or give its full path");
	return buf;
}

/* The value under key in mapping n of doc, or NULL. */
static yaml_node_t *doc_get(yaml_document_t *doc, const yaml_node_t *n, const char *key)
{
	if (n == NULL || n->type != YAML_MAPPING_NODE)
		return NULL;
	for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
		yaml_node_t *k = yaml_document_get_node(doc, p->key);

		if (k->type == YAML_SCALAR_NODE && strcmp(scalar(k), key) == 0)
			return yaml_document_get_node(doc, p->value);
	}
	return NULL;
}

/* The node of nodes.NAME.command[0] in doc, for its position; NULL if absent. */
static yaml_node_t *program_node(yaml_document_t *doc, const char *name)
{
	yaml_node_t *root = yaml_document_get_root_node(doc);
	yaml_node_t *cmd = doc_get(doc, doc_get(doc, doc_get(doc, root, "nodes"), name), "command");

	if (cmd == NULL || cmd->type != YAML_SEQUENCE_NODE ||
	    cmd->data.sequence.items.start == cmd->data.sequence.items.top)
		return NULL;
	return yaml_document_get_node(doc, cmd->data.sequence.items.start[0]);
}

/*
 * Writes a line for each class of list whose program cannot run; returns
 * their count. text (len bytes) is the config at path, parsed again for
 * the positions.
 */
static int check_programs(const char *path, const char *text, size_t len,
			  const struct exec_class *list, FILE *out)
{
	yaml_parser_t parser;
	yaml_document_t doc;
	int n = 0;

	yaml_parser_initialize(&parser);
	yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
	if (!yaml_parser_load(&parser, &doc)) {
		yaml_parser_delete(&parser);
		return 0; /* it parsed once already */
	}
	for (const struct exec_class *xc = list; xc; xc = xc->next) {
		const char *prog = xc->argv[0].segs[0].text;
		const yaml_node_t *at = program_node(&doc, xc->name);
		char why[160];

		if (program_problem(prog, why, sizeof why) == NULL)
			continue;
		n++;
		fprintf(out, "%s:%zu:%zu: nodes.%s.command[0]: cannot run \"%s\": %s\n", path,
			at ? at->start_mark.line + 1 : 0, at ? at->start_mark.column + 1 : 0, xc->name,
			prog, why);
	}
	yaml_document_delete(&doc);
	yaml_parser_delete(&parser);
	return n;
}

int model_exec_check(const char *path, FILE *out)
{
	struct exec_class *list = NULL;
	yaml_document_t doc;
	struct err e = {0};
	struct load ld = {.path = path, .doc = &doc, .err = &e};
	size_t len = 0;
	char *text = read_config(path, &len, &e);
	int n = 1;

	if (text != NULL && ld_parse(&ld, text, len, &list) == 0)
		n = check_programs(path, text, len, list, out);
	else
		fprintf(out, "%s\n", e.msg);
	class_list_free(list);
	free(text);
	return n;
}
