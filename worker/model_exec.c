/*
 * model_exec.c - node classes that run a command-line generator.
 *
 * A YAML config declares node classes; each fills an argv template with
 * its inputs, runs it (never through a shell) and returns the file the
 * command wrote through the node's UI result, hence /history and /view.
 *
 *   nodes:                          # required: class_type -> node
 *     EspeakTTS:                    # [A-Za-z0-9_.-]{1,64}, unique in the worker
 *       display_name: Speak         # default: the class name
 *       category: audio             # default: "exec"
 *       description: text           # default: ""
 *       inputs:                     # in UI order; names [A-Za-z_][A-Za-z0-9_]*
 *         text:  {type: STRING, multiline: true, max_length: 5000}
 *         voice: {type: COMBO, options: [en, de], default: en}
 *         speed: {type: INT, default: 175, min: 80, max: 450, step: 5}
 *       command: [espeak-ng, -v, "{voice}", -s, "{speed}", -w, "{output}", --stdin]
 *       stdin: "{text}"             # optional: written to stdin, then closed
 *       output: {kind: audio, ext: wav, prefix: speech}
 *       expected_seconds: 2         # default 10: elapsed-time progress scale
 *       timeout_seconds: 120        # default 600
 *
 * Input keys: type (INT, FLOAT, STRING, BOOLEAN, COMBO; required), required
 * (default true; false puts it under "optional"), default, tooltip; INT and
 * FLOAT: min, max, step; INT: control_after_generate; STRING: multiline,
 * max_length (characters, checked before the command runs); COMBO: options
 * (required). Output kind: image, audio or video (UI key "images", "audio",
 * "video"); ext defaults to png, wav, mp4; prefix to the class name.
 *
 * Templates (command entries and stdin): {output} is the file the command
 * must write, {<input>} an input's value, {{ and }} literal braces. A
 * placeholder may be a whole argument or part of one ("--rate={speed}");
 * each command entry stays exactly one argv entry whatever the value holds.
 * Values as text: INT decimal, FLOAT as Python prints it, BOOLEAN
 * true/false, STRING and COMBO verbatim; an absent optional input gives its
 * default, else "". Write "--" before a free-text argument if the program
 * could take it for an option.
 *
 * Running: the command starts in its own process group with stdin, stdout
 * and stderr on pipe(2)s (so /dev/stdin works; stdin is /dev/null without
 * `stdin:`). "PROGRESS n/m" lines on stdout report progress; without them,
 * progress is elapsed / expected_seconds, capped at 95%. The last 20 lines
 * of stderr (8 KiB at most) end any failure message. Past timeout_seconds,
 * or on interrupt, the group gets SIGTERM, then SIGKILL 2 s later.
 *
 * Invariants:
 * 1. A loaded class has been checked whole: every placeholder names an
 *    input or output, the program (command[0]) has none, and some command
 *    entry holds {output}. A config with any error registers nothing.
 * 2. The command writes a hidden partial file (".fnrun_<hex>.partial.<ext>"
 *    in the output directory); only exit 0 with a non-empty regular file
 *    renames it to the ComfyUI name; every other ending removes it.
 * 3. A job frees itself when its process handle, pipes and timers have all
 *    closed (pending == 0), never earlier, and calls on_end exactly once,
 *    after the process has exited.
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

#include "buf.h"
#include "json.h" /* not json-c's json.h, found first on the path */
#include "log.h"
#include "model_exec.h"
#include "util.h"

#define EXEC_MAX_CONFIG (1024 * 1024) /* bytes of YAML */
#define EXEC_MAX_ARG (128 * 1024)     /* bytes of one argv entry (MAX_ARG_STRLEN) */
#define EXEC_MAX_STDIN (4 * 1024 * 1024)
#define EXEC_TICK_MS 100
#define EXEC_GRACE_MS 2000
#define EXEC_TAIL_LINES 20
#define KEY_MAX 256 /* bytes of a key path in messages */
#define EXEC_PYMODULE "custom_nodes.fnrun_exec"

/* One piece of a template: literal text, {output} or an input. */
enum { SEG_TEXT = -2, SEG_OUTPUT = -1 };
struct seg {
	int ref;    /* SEG_TEXT, SEG_OUTPUT, or an index into the inputs */
	char *text; /* SEG_TEXT: owned */
};

struct tmpl {
	struct seg *segs; /* owned */
	size_t nsegs;
};

/* What a node_input does not hold; strings owned, node_input borrows them. */
struct exec_input {
	char *name;
	char *def;      /* JSON text for /object_info; NULL: none */
	char *def_text; /* the default as command-line text; NULL: none */
	char *tooltip;
	char **options; /* COMBO: NULL-terminated */
	size_t max_length; /* STRING: characters; 0: no limit */
};

struct exec_kind {
	const char *name;    /* output.kind in the config */
	const char *ui_key;  /* key of the node's UI dict */
	const char *def_ext; /* extension when output.ext is absent */
};

static const struct exec_kind exec_kinds[] = {
	{"image", "images", "png"},
	{"audio", "audio", "wav"},
	{"video", "video", "mp4"},
};

struct exec_class {
	struct node_class nc;  /* nc.data points back here */
	char *name, *display_name, *category, *description;
	struct node_input *inputs; /* nc.inputs; strings borrowed from xin */
	struct exec_input *xin;
	size_t ninputs;
	struct tmpl *argv; /* one template per command entry */
	size_t argc;
	struct tmpl stdin_t;
	int has_stdin;
	const struct exec_kind *kind;
	char *ext, *prefix;
	uint64_t expected_ms, timeout_ms;
	struct exec_class *next; /* model_exec_load() list */
};

/* Every class registered so far (model_exec_unload() frees them). */
static struct exec_class *loaded;

static void exec_run(struct node_ctx *ctx);
static void exec_cancel(struct node_ctx *ctx);

/* ------------------------------------------------------------------ */
/* Templates                                                          */

static void tmpl_cleanup(struct tmpl *t)
{
	for (size_t i = 0; i < t->nsegs; i++)
		free(t->segs[i].text);
	free(t->segs);
	t->segs = NULL;
	t->nsegs = 0;
}

static void tmpl_add(struct tmpl *t, int ref, struct buf *lit)
{
	if (ref == SEG_TEXT && lit->len == 0)
		return;
	t->segs = xrealloc(t->segs, (t->nsegs + 1) * sizeof *t->segs);
	t->segs[t->nsegs].ref = ref;
	t->segs[t->nsegs].text = ref == SEG_TEXT ? buf_steal(lit) : NULL;
	t->nsegs++;
}

/* The input index of name, SEG_OUTPUT, or SEG_TEXT when unknown. */
static int tmpl_ref(const struct exec_input *in, size_t n, const char *name, size_t len)
{
	if (len == 6 && memcmp(name, "output", 6) == 0)
		return SEG_OUTPUT;
	for (size_t i = 0; i < n; i++)
		if (strlen(in[i].name) == len && memcmp(in[i].name, name, len) == 0)
			return (int)i;
	return SEG_TEXT;
}

static void tmpl_unknown(const char *s, size_t len, const struct exec_input *in, size_t n,
			 char *why, size_t whylen)
{
	char allowed[160];
	size_t k = (size_t)snprintf(allowed, sizeof allowed, "{output}");

	for (size_t i = 0; i < n && k < sizeof allowed; i++)
		k += (size_t)snprintf(allowed + k, sizeof allowed - k, ", {%s}", in[i].name);
	snprintf(why, whylen, "unknown placeholder \"%.*s\"; allowed: %s", len > 64 ? 64 : (int)len,
		 s, allowed);
}

/*
 * Compiles s into t. On error returns -1 with a reason in why (t is
 * cleaned up). The caller adds the location.
 */
static int tmpl_parse(struct tmpl *t, const char *s, const struct exec_input *in, size_t n,
		      char *why, size_t whylen)
{
	struct buf lit;

	buf_init(&lit, EXEC_MAX_CONFIG);
	memset(t, 0, sizeof *t);
	while (*s) {
		const char *close;
		int ref;

		if ((s[0] == '{' && s[1] == '{') || (s[0] == '}' && s[1] == '}')) {
			buf_putc(&lit, *s);
			s += 2;
			continue;
		}
		if (*s == '}') {
			snprintf(why, whylen, "unmatched \"}\"; write \"}}\" for a literal brace");
			goto fail;
		}
		if (*s != '{') {
			buf_putc(&lit, *s++);
			continue;
		}
		close = strchr(s, '}');
		if (close == NULL) {
			snprintf(why, whylen, "unclosed \"{\"; write \"{{\" for a literal brace");
			goto fail;
		}
		ref = tmpl_ref(in, n, s + 1, (size_t)(close - s - 1));
		if (ref == SEG_TEXT) {
			tmpl_unknown(s, (size_t)(close - s + 1), in, n, why, whylen);
			goto fail;
		}
		tmpl_add(t, SEG_TEXT, &lit);
		tmpl_add(t, ref, &lit);
		s = close + 1;
	}
	tmpl_add(t, SEG_TEXT, &lit);
	buf_cleanup(&lit);
	return 0;
fail:
	buf_cleanup(&lit);
	tmpl_cleanup(t);
	return -1;
}

static int tmpl_has(const struct tmpl *t, int ref)
{
	for (size_t i = 0; i < t->nsegs; i++)
		if (t->segs[i].ref == ref)
			return 1;
	return 0;
}

/*
 * Expands t with texts[i] for input i (already defaulted) and output.
 * Caller frees the result; NULL with err set when over max bytes.
 */
static char *tmpl_expand(const struct tmpl *t, const char *const *texts, const char *output,
			 size_t max, const char *what, struct err *err)
{
	struct buf b;

	buf_init(&b, max);
	for (size_t i = 0; i < t->nsegs; i++) {
		const struct seg *sg = &t->segs[i];
		const char *s = sg->ref == SEG_TEXT ? sg->text
				: sg->ref == SEG_OUTPUT ? output : texts[sg->ref];

		if (buf_puts(&b, s) < 0) {
			buf_cleanup(&b);
			err_set(err, ERR_TOO_LARGE, "%s is longer than %zu bytes", what, max);
			return NULL;
		}
	}
	return buf_steal(&b);
}

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

/* Python len(): code points of a UTF-8 string. */
static size_t utf8_chars(const char *s)
{
	size_t n = 0;

	for (; *s; s++)
		n += ((unsigned char)*s & 0xc0) != 0x80;
	return n;
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
	if (x->max_length && utf8_chars(s) > x->max_length)
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
	if (tmpl_parse(t, s, xc->xin, xc->ninputs, why, sizeof why) < 0)
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
		has_output |= tmpl_has(&xc->argv[i], SEG_OUTPUT);
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
		.run = exec_run, .cancel = exec_cancel, .data = xc,
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
		tmpl_cleanup(&xc->argv[i]);
	tmpl_cleanup(&xc->stdin_t);
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
/* argv                                                               */

void model_exec_free_argv(char **argv)
{
	for (char **a = argv; a && *a; a++)
		free(*a);
	free(argv);
}

/*
 * texts[i]: input i as text or NULL. NULL becomes the default; without one,
 * "" for an optional input and an error for a required one.
 */
static int fill_defaults(const struct exec_class *xc, const char **texts, struct err *err)
{
	for (size_t i = 0; i < xc->ninputs; i++) {
		if (texts[i] != NULL)
			continue;
		if (xc->inputs[i].required && xc->xin[i].def_text == NULL) {
			err_set(err, ERR_INVALID, "input \"%s\" has no value", xc->xin[i].name);
			return -1;
		}
		texts[i] = xc->xin[i].def_text ? xc->xin[i].def_text : "";
	}
	return 0;
}

static int build_argv(const struct exec_class *xc, const char **texts, const char *output,
		      char ***argv_out, struct err *err)
{
	char **argv;

	*argv_out = NULL;
	if (fill_defaults(xc, texts, err) < 0)
		return -1;
	argv = xcalloc(xc->argc + 1, sizeof *argv);
	for (size_t i = 0; i < xc->argc; i++) {
		argv[i] = tmpl_expand(&xc->argv[i], texts, output, EXEC_MAX_ARG, "an argument", err);
		if (argv[i] == NULL) {
			model_exec_free_argv(argv);
			return -1;
		}
	}
	*argv_out = argv;
	return 0;
}

/* Input texts of c by name, in input order; NULL when c is not ours. */
static const char **texts_by_name(const struct node_class *c, const struct model_exec_value *vals,
				  size_t nvals, struct err *err)
{
	const struct exec_class *xc = c->data;
	const char **texts;

	if (c->run != exec_run) {
		err_set(err, ERR_INVALID, "%s is not an exec node class", c->name);
		return NULL;
	}
	texts = xcalloc(xc->ninputs + 1, sizeof *texts);
	for (size_t i = 0; i < nvals; i++)
		for (size_t k = 0; k < xc->ninputs; k++)
			if (strcmp(vals[i].name, xc->xin[k].name) == 0)
				texts[k] = vals[i].text;
	return texts;
}

int model_exec_build_argv(const struct node_class *c, const struct model_exec_value *vals,
			  size_t nvals, const char *output_path, char ***argv_out, struct err *err)
{
	const char **texts = texts_by_name(c, vals, nvals, err);
	int rc;

	*argv_out = NULL;
	if (texts == NULL)
		return -1;
	rc = build_argv(c->data, texts, output_path, argv_out, err);
	free(texts);
	return rc;
}

int model_exec_build_stdin(const struct node_class *c, const struct model_exec_value *vals,
			   size_t nvals, const char *output_path, char **out, struct err *err)
{
	const struct exec_class *xc = c->data;
	const char **texts = texts_by_name(c, vals, nvals, err);
	int rc = -1;

	*out = NULL;
	if (texts == NULL)
		return -1;
	if (fill_defaults(xc, texts, err) == 0) {
		*out = xc->has_stdin ? tmpl_expand(&xc->stdin_t, texts, output_path, EXEC_MAX_STDIN,
						   "stdin", err)
				     : NULL;
		rc = xc->has_stdin && *out == NULL ? -1 : 0;
	}
	free(texts);
	return rc;
}

/* ------------------------------------------------------------------ */
/* The job: one command run                                           */

/* The last EXEC_TAIL_LINES lines of stderr, bounded in bytes. */
struct tail {
	char text[8192]; /* complete lines, each ending in '\n' */
	size_t len;
	int nlines;
	char cur[1024]; /* the line being read; longer ones are cut */
	size_t curlen;
};

struct model_exec_job {
	uv_loop_t *loop;
	uv_process_t proc;
	uv_pipe_t in, out, err;
	uv_timer_t tick;  /* every EXEC_TICK_MS: elapsed progress, timeout */
	uv_timer_t grace; /* SIGKILL after SIGTERM; stop waiting for pipes after exit */
	uv_write_t wreq;
	int pending;      /* handles initialised and not yet closed */
	int pid;
	char *stdin_text; /* owned; must outlive the write */
	size_t stdin_len;
	char *output;     /* owned */
	uint64_t start_ms, expected_ms, timeout_ms, grace_ms; /* loop time, ms */
	uint64_t progress_ms; /* loop time of the last command progress sent */
	int last_pct;         /* last elapsed-time percent sent */
	int has_stdin, out_eof, err_eof, exited, finished, term_sent, cancelled, timed_out;
	int cmd_progress;     /* the command printed a PROGRESS line */
	int64_t exit_status;
	int term_signal;
	char line[256];       /* the stdout line being read */
	size_t linelen;
	int line_long;        /* the current stdout line overflowed: ignored */
	struct tail tail;
	char rbuf[4096];
	void (*on_progress)(void *arg, double value, double max);
	void (*on_end)(void *arg, int outcome, const char *message);
	void *arg;
};

/* Length of the valid UTF-8 sequence at s (n bytes left), 0 if invalid. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
	size_t len = s[0] < 0x80 ? 1 : (s[0] & 0xe0) == 0xc0 ? 2 : (s[0] & 0xf0) == 0xe0 ? 3
		     : (s[0] & 0xf8) == 0xf0 ? 4 : 0;

	if (len == 0 || len > n || (len == 2 && s[0] < 0xc2))
		return 0;
	for (size_t i = 1; i < len; i++)
		if ((s[i] & 0xc0) != 0x80)
			return 0;
	return len;
}

/* Appends the current line, control bytes and bad UTF-8 as '?'. */
static void tail_push(struct tail *t)
{
	char line[sizeof t->cur + 1];
	size_t n = 0;

	while (t->curlen && (t->cur[t->curlen - 1] == '\r' || t->cur[t->curlen - 1] == ' '))
		t->curlen--;
	for (size_t i = 0; i < t->curlen;) {
		const unsigned char *c = (const unsigned char *)t->cur + i;
		size_t k = utf8_seq(c, t->curlen - i);

		if (k == 0 || (k == 1 && (c[0] < 0x20 || c[0] == 0x7f) && c[0] != '\t')) {
			line[n++] = '?';
			i++;
			continue;
		}
		memcpy(line + n, c, k);
		n += k;
		i += k;
	}
	t->curlen = 0;
	if (n == 0)
		return;
	while (t->nlines >= EXEC_TAIL_LINES || t->len + n + 1 > sizeof t->text) {
		char *nl = memchr(t->text, '\n', t->len);
		size_t drop = (size_t)(nl - t->text) + 1;

		memmove(t->text, t->text + drop, t->len - drop);
		t->len -= drop;
		t->nlines--;
	}
	memcpy(t->text + t->len, line, n);
	t->len += n;
	t->text[t->len++] = '\n';
	t->nlines++;
}

static void tail_feed(struct tail *t, const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (p[i] == '\n')
			tail_push(t);
		else if (t->curlen < sizeof t->cur)
			t->cur[t->curlen++] = p[i];
	}
}

static void job_on_closed(uv_handle_t *h)
{
	struct model_exec_job *j = h->data;

	if (--j->pending > 0)
		return;
	free(j->stdin_text);
	free(j->output);
	free(j);
}

static void job_close(struct model_exec_job *j, uv_handle_t *h)
{
	if (!uv_is_closing(h))
		uv_close(h, job_on_closed);
}

static void job_handle(struct model_exec_job *j, uv_handle_t *h)
{
	h->data = j;
	j->pending++;
}

static void job_finish(struct model_exec_job *j);

/*
 * After SIGTERM: SIGKILL. After exit: a grandchild holds the pipes open;
 * kill the group and end without the rest of its output.
 */
static void job_on_grace(uv_timer_t *t)
{
	struct model_exec_job *j = t->data;

	kill(-j->pid, SIGKILL);
	if (j->exited)
		job_finish(j);
}

/* SIGTERM to the process group; SIGKILL follows after grace_ms. */
static void job_terminate(struct model_exec_job *j)
{
	if (j->term_sent || j->exited)
		return;
	j->term_sent = 1;
	kill(-j->pid, SIGTERM);
	uv_timer_start(&j->grace, job_on_grace, j->grace_ms, 0);
}

/* "PROGRESS n/m" on stdout; other lines are ignored. */
static void job_stdout_line(struct model_exec_job *j, const char *s)
{
	double n, m;
	char *end;
	uint64_t now = uv_now(j->loop);

	if (strncmp(s, "PROGRESS ", 9) != 0)
		return;
	n = strtod(s + 9, &end);
	if (end == s + 9 || *end != '/')
		return;
	s = end + 1;
	m = strtod(s, &end);
	while (end != s && isspace((unsigned char)*end))
		end++;
	if (end == s || *end != '\0' || !isfinite(n) || !isfinite(m) || m <= 0 || n < 0)
		return;
	n = n > m ? m : n;
	/* At most one message per 50 ms, but always the last step. */
	if (j->cmd_progress && n < m && now - j->progress_ms < 50)
		return;
	j->cmd_progress = 1;
	j->progress_ms = now;
	j->on_progress(j->arg, n, m);
}

static void job_stdout(struct model_exec_job *j, const char *p, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		if (p[i] != '\n' && j->linelen < sizeof j->line - 1) {
			j->line[j->linelen++] = p[i];
		} else if (p[i] != '\n') {
			j->line_long = 1;
		} else {
			j->line[j->linelen] = '\0';
			if (!j->line_long)
				job_stdout_line(j, j->line);
			j->linelen = 0;
			j->line_long = 0;
		}
	}
}

static void job_on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
	struct model_exec_job *j = h->data;

	*b = uv_buf_init(j->rbuf, sizeof j->rbuf);
}

static void job_on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b)
{
	struct model_exec_job *j = s->data;
	int is_out = s == (uv_stream_t *)&j->out;

	if (nread > 0 && is_out)
		job_stdout(j, b->base, (size_t)nread);
	else if (nread > 0)
		tail_feed(&j->tail, b->base, (size_t)nread);
	if (nread >= 0)
		return;
	/* EOF or a read error: this stream is done. */
	if (!is_out)
		tail_push(&j->tail);
	*(is_out ? &j->out_eof : &j->err_eof) = 1;
	job_close(j, (uv_handle_t *)s);
	if (j->exited && j->out_eof && j->err_eof)
		job_finish(j);
}

static void job_on_exit(uv_process_t *p, int64_t status, int sig)
{
	struct model_exec_job *j = p->data;

	j->exited = 1;
	j->exit_status = status;
	j->term_signal = sig;
	job_close(j, (uv_handle_t *)p);
	log_info("exec exit pid=%d status=%" PRId64 " signal=%d ms=%" PRIu64, j->pid, status, sig,
		 uv_now(j->loop) - j->start_ms);
	if (j->out_eof && j->err_eof) {
		job_finish(j);
		return;
	}
	/* exit_cb may come before the last output: wait for EOF, bounded. */
	uv_timer_start(&j->grace, job_on_grace, j->grace_ms, 0);
}

static void job_on_tick(uv_timer_t *t)
{
	struct model_exec_job *j = t->data;
	uint64_t elapsed = uv_now(j->loop) - j->start_ms;
	int pct;

	if (j->exited || j->term_sent)
		return;
	if (j->timeout_ms && elapsed >= j->timeout_ms) {
		j->timed_out = 1;
		log_warn("exec timeout pid=%d ms=%" PRIu64, j->pid, elapsed);
		job_terminate(j);
		return;
	}
	if (j->cmd_progress || j->expected_ms == 0)
		return;
	pct = (int)(elapsed * 100 / j->expected_ms);
	pct = pct > 95 ? 95 : pct;
	if (pct > j->last_pct) {
		j->last_pct = pct;
		j->on_progress(j->arg, pct, 100);
	}
}

static void job_on_written(uv_write_t *w, int status)
{
	struct model_exec_job *j = w->data;

	if (status < 0 && status != UV_ECANCELED)
		log_debug("exec stdin pid=%d error=%s", j->pid, uv_strerror(status));
	job_close(j, (uv_handle_t *)&j->in);
}

/* Why the run failed, or NULL when the output file is good. Caller frees. */
static char *job_failure(struct model_exec_job *j)
{
	struct stat st;

	if (j->timed_out)
		return xasprintf("command timed out after %.1f s and was killed",
				 (double)j->timeout_ms / 1000);
	if (j->term_signal)
		return xasprintf("command was killed by signal %d (%s)", j->term_signal,
				 strsignal(j->term_signal));
	if (j->exit_status != 0)
		return xasprintf("command exited with status %" PRId64, j->exit_status);
	if (lstat(j->output, &st) < 0)
		return xstrdup("command exited with status 0 but wrote no output file");
	if (!S_ISREG(st.st_mode))
		return xstrdup("command exited with status 0 but its output is not a regular file");
	if (st.st_size == 0)
		return xstrdup("command exited with status 0 but wrote an empty output file");
	return NULL;
}

/* Once the process has exited and its pipes are done (or given up). */
static void job_finish(struct model_exec_job *j)
{
	struct buf msg;
	char *why = NULL;
	int outcome = MODEL_EXEC_OK;

	if (j->finished)
		return;
	j->finished = 1;
	job_close(j, (uv_handle_t *)&j->out);
	job_close(j, (uv_handle_t *)&j->err);
	job_close(j, (uv_handle_t *)&j->tick);
	job_close(j, (uv_handle_t *)&j->grace);
	if (j->has_stdin)
		job_close(j, (uv_handle_t *)&j->in);
	if (j->cancelled)
		outcome = MODEL_EXEC_INTERRUPTED;
	else if ((why = job_failure(j)) != NULL)
		outcome = MODEL_EXEC_FAILED;
	if (outcome != MODEL_EXEC_OK)
		unlink(j->output);
	buf_init(&msg, 512 + sizeof j->tail.text);
	if (why != NULL) {
		buf_puts(&msg, why);
		if (j->tail.len > 0)
			buf_printf(&msg, ": %.*s", (int)j->tail.len - 1, j->tail.text);
	}
	j->on_end(j->arg, outcome, why ? msg.data : NULL);
	buf_cleanup(&msg);
	free(why);
}

/*
 * A pipe(2) between p and the child's descriptor, where libuv's
 * UV_CREATE_PIPE would make a socketpair: programs that open /dev/stdin or
 * /dev/stderr (flite -f /dev/stdin, text2wave, shell scripts) cannot open
 * a socket. Fills c with the child's end, which the caller closes after
 * the spawn.
 */
static int job_pipe(struct model_exec_job *j, uv_pipe_t *p, int child_reads,
		    uv_stdio_container_t *c)
{
	uv_file fds[2];
	int rc;

	uv_pipe_init(j->loop, p, 0);
	job_handle(j, (uv_handle_t *)p);
	c->flags = UV_INHERIT_FD;
	c->data.fd = -1;
	rc = uv_pipe(fds, 0, 0);
	if (rc < 0)
		return rc;
	c->data.fd = fds[child_reads ? 0 : 1];
	rc = uv_pipe_open(p, fds[child_reads ? 1 : 0]);
	if (rc < 0)
		close(fds[child_reads ? 1 : 0]);
	return rc;
}

/* Timers and the three pipes; stdio gets the child's ends. */
static int job_init_handles(struct model_exec_job *j, uv_stdio_container_t *stdio)
{
	int rc = 0;

	uv_timer_init(j->loop, &j->tick);
	job_handle(j, (uv_handle_t *)&j->tick);
	uv_timer_init(j->loop, &j->grace);
	job_handle(j, (uv_handle_t *)&j->grace);
	j->wreq.data = j;
	memset(stdio, 0, 3 * sizeof *stdio);
	stdio[0].flags = UV_IGNORE; /* /dev/null */
	rc = job_pipe(j, &j->out, 0, &stdio[1]);
	if (rc == 0)
		rc = job_pipe(j, &j->err, 0, &stdio[2]);
	if (rc == 0 && j->has_stdin)
		rc = job_pipe(j, &j->in, 1, &stdio[0]);
	return rc;
}

static void job_close_child_ends(uv_stdio_container_t *stdio)
{
	for (int i = 0; i < 3; i++)
		if (stdio[i].flags == UV_INHERIT_FD && stdio[i].data.fd >= 0)
			close(stdio[i].data.fd);
}

/* Closes what start initialised, after a failed start. */
static void job_abandon(struct model_exec_job *j, int spawned)
{
	j->finished = 1;
	if (spawned)
		job_close(j, (uv_handle_t *)&j->proc);
	job_close(j, (uv_handle_t *)&j->tick);
	job_close(j, (uv_handle_t *)&j->grace);
	if (j->out.loop != NULL)
		job_close(j, (uv_handle_t *)&j->out);
	if (j->err.loop != NULL)
		job_close(j, (uv_handle_t *)&j->err);
	if (j->in.loop != NULL)
		job_close(j, (uv_handle_t *)&j->in);
}

static int job_spawn(struct model_exec_job *j, char *const *argv, uv_stdio_container_t *stdio)
{
	uv_process_options_t po;

	memset(&po, 0, sizeof po);
	po.file = argv[0];
	po.args = (char **)argv;
	po.exit_cb = job_on_exit;
	po.flags = UV_PROCESS_DETACHED; /* own group: kill(-pid) reaches grandchildren */
	po.stdio = stdio;
	po.stdio_count = 3;
	return uv_spawn(j->loop, &j->proc, &po);
}

static void job_begin_io(struct model_exec_job *j)
{
	uv_buf_t b = uv_buf_init(j->stdin_text, (unsigned)j->stdin_len);

	uv_read_start((uv_stream_t *)&j->out, job_on_alloc, job_on_read);
	uv_read_start((uv_stream_t *)&j->err, job_on_alloc, job_on_read);
	if (j->has_stdin && uv_write(&j->wreq, (uv_stream_t *)&j->in, &b, 1, job_on_written) < 0)
		job_close(j, (uv_handle_t *)&j->in);
	uv_timer_start(&j->tick, job_on_tick, EXEC_TICK_MS, EXEC_TICK_MS);
}

static struct model_exec_job *job_new(uv_loop_t *loop, const struct model_exec_job_opts *o)
{
	struct model_exec_job *j = xcalloc(1, sizeof *j);

	j->loop = loop;
	j->has_stdin = o->stdin_text != NULL;
	j->stdin_text = xstrdup(o->stdin_text ? o->stdin_text : "");
	j->stdin_len = strlen(j->stdin_text);
	j->output = xstrdup(o->output);
	j->expected_ms = o->expected_ms;
	j->timeout_ms = o->timeout_ms;
	j->grace_ms = o->grace_ms ? o->grace_ms : EXEC_GRACE_MS;
	j->on_progress = o->on_progress;
	j->on_end = o->on_end;
	j->arg = o->arg;
	return j;
}

struct model_exec_job *model_exec_job_start(uv_loop_t *loop, const struct model_exec_job_opts *o,
					    struct err *err)
{
	struct model_exec_job *j = job_new(loop, o);
	uv_stdio_container_t stdio[3];
	int rc = job_init_handles(j, stdio);

	if (rc < 0) {
		err_set(err, ERR_UNAVAILABLE, "cannot create pipes: %s", uv_strerror(rc));
		job_close_child_ends(stdio);
		job_abandon(j, 0);
		return NULL;
	}
	rc = job_spawn(j, o->argv, stdio);
	job_handle(j, (uv_handle_t *)&j->proc); /* initialised even when the spawn fails */
	job_close_child_ends(stdio);
	if (rc < 0) {
		err_set(err, ERR_UNAVAILABLE, "cannot run \"%s\": %s", o->argv[0], uv_strerror(rc));
		log_warn("exec spawn program=%s error=%s", log_q(o->argv[0]), uv_strerror(rc));
		job_abandon(j, 1);
		return NULL;
	}
	j->pid = j->proc.pid;
	j->start_ms = uv_now(loop);
	log_info("exec start pid=%d program=%s", j->pid, log_q(o->argv[0]));
	job_begin_io(j);
	return j;
}

void model_exec_job_cancel(struct model_exec_job *j)
{
	if (j->finished || j->cancelled)
		return;
	j->cancelled = 1;
	log_info("exec cancel pid=%d", j->pid);
	job_terminate(j);
}

/* ------------------------------------------------------------------ */
/* The node class: run() and cancel()                                 */

/* A running exec node; node_ctx_state() while the job runs. */
struct exec_node {
	struct node_ctx *ctx;
	const struct exec_class *xc;
	struct model_exec_job *job;
	char partial[4096]; /* the file the command writes */
};

/*
 * node.h gives run() no class, so find it from the prompt: the class_type
 * of this node id, looked up in the registry.
 */
static const struct exec_class *exec_class_of(struct node_ctx *ctx)
{
	const struct json_object *node = json_get_obj(node_ctx_prompt(ctx), node_ctx_node_id(ctx));
	const char *ct = node ? json_get_str(node, "class_type") : NULL;
	const struct node_class *c = ct ? nodes_find(ct) : NULL;

	return c && c->run == exec_run ? c->data : NULL;
}

/* The input as command-line text (see the file comment). Caller frees. */
static char *value_text(const struct value *v)
{
	if (v->type == VAL_INT)
		return xasprintf("%" PRId64, v->i);
	if (v->type == VAL_BOOL)
		return xstrdup(v->i ? "true" : "false");
	if (v->type == VAL_STRING || v->type == VAL_OPAQUE)
		return xstrdup(v->s ? v->s : "");
	return value_to_text(v);
}

/* Fills texts[i] (owned; NULL when absent) and enforces max_length. */
static int exec_texts(struct node_ctx *ctx, const struct exec_class *xc, char **texts,
		      struct err *err)
{
	for (size_t i = 0; i < xc->ninputs; i++) {
		const struct value *v = node_ctx_input(ctx, xc->xin[i].name);
		size_t n;

		texts[i] = v ? value_text(v) : NULL;
		if (texts[i] == NULL || xc->xin[i].max_length == 0)
			continue;
		n = utf8_chars(texts[i]);
		if (n > xc->xin[i].max_length) {
			err_set(err, ERR_INVALID, "input \"%s\" is %zu characters long; max_length is %zu",
				xc->xin[i].name, n, xc->xin[i].max_length);
			return -1;
		}
	}
	return 0;
}

static void exec_on_progress(void *arg, double value, double max)
{
	struct exec_node *n = arg;

	node_ctx_progress(n->ctx, value, max);
}

/* Renames the partial file to its ComfyUI name and sets the UI. */
static int exec_publish(struct exec_node *n, struct err *err)
{
	struct save_path sp;
	struct json_object *ui, *files, *file;
	char why[256] = "";

	if (node_ctx_save_path(n->ctx, n->xc->prefix, n->xc->ext, 0, &sp, why, sizeof why) < 0) {
		err_set(err, ERR_IO, "cannot name the output: %s", why);
		return -1;
	}
	if (rename(n->partial, sp.path) < 0) {
		err_set(err, ERR_IO, "cannot move the output to %s: %s", sp.filename, strerror(errno));
		return -1;
	}
	file = json_object_new_object();
	json_put(file, "filename", json_str(sp.filename));
	json_put(file, "subfolder", json_str(sp.subfolder));
	json_put(file, "type", json_str(sp.type ? sp.type : "output"));
	files = json_object_new_array();
	json_object_array_add(files, file);
	ui = json_object_new_object();
	json_put(ui, n->xc->kind->ui_key, files);
	node_ctx_set_ui(n->ctx, ui);
	return 0;
}

static void exec_on_end(void *arg, int outcome, const char *message)
{
	struct exec_node *n = arg;
	struct node_ctx *ctx = n->ctx;
	struct err err = {0};

	node_ctx_set_state(ctx, NULL);
	if (outcome == MODEL_EXEC_OK && exec_publish(n, &err) < 0) {
		unlink(n->partial);
		outcome = MODEL_EXEC_FAILED;
		message = err.msg;
	}
	if (outcome == MODEL_EXEC_OK)
		node_ctx_done(ctx);
	else if (outcome == MODEL_EXEC_INTERRUPTED)
		node_ctx_interrupted(ctx);
	else
		node_ctx_fail(ctx, "RuntimeError", message, NULL, 0);
	free(n);
}

/* Builds argv and stdin from the inputs and starts the job. */
static int exec_start(struct exec_node *n, struct err *err)
{
	const struct exec_class *xc = n->xc;
	const char *dir = node_settings()->output_dir;
	char **owned = xcalloc(xc->ninputs + 1, sizeof *owned), **argv = NULL, *in = NULL, hex[33];
	const char **texts = xcalloc(xc->ninputs + 1, sizeof *texts);
	struct model_exec_job_opts o = {
		.expected_ms = xc->expected_ms, .timeout_ms = xc->timeout_ms, .output = n->partial,
		.on_progress = exec_on_progress, .on_end = exec_on_end, .arg = n,
	};

	util_uuid4_hex(hex);
	snprintf(n->partial, sizeof n->partial, "%s/.fnrun_%s.partial.%s", dir, hex, xc->ext);
	if (util_mkdirs(dir) < 0)
		err_set(err, ERR_IO, "cannot create %s: %s", dir, strerror(errno));
	else if (exec_texts(n->ctx, xc, owned, err) == 0) {
		memcpy(texts, owned, xc->ninputs * sizeof *texts);
		if (build_argv(xc, texts, n->partial, &argv, err) == 0 && xc->has_stdin)
			in = tmpl_expand(&xc->stdin_t, texts, n->partial, EXEC_MAX_STDIN, "stdin", err);
	}
	o.argv = argv;
	o.stdin_text = in;
	if (argv != NULL && (in != NULL || !xc->has_stdin))
		n->job = model_exec_job_start(node_ctx_loop(n->ctx), &o, err);
	for (size_t i = 0; i < xc->ninputs; i++)
		free(owned[i]);
	free(owned);
	free(texts);
	free(in);
	model_exec_free_argv(argv);
	return n->job ? 0 : -1;
}

static void exec_run(struct node_ctx *ctx)
{
	const struct exec_class *xc = exec_class_of(ctx);
	struct exec_node *n;
	struct err err = {0};

	if (xc == NULL) {
		node_ctx_fail(ctx, "RuntimeError", "exec: this node's class is not loaded", NULL, 0);
		return;
	}
	n = xcalloc(1, sizeof *n);
	n->ctx = ctx;
	n->xc = xc;
	if (exec_start(n, &err) < 0) {
		node_ctx_fail(ctx, err.code == ERR_INVALID ? "ValueError" : "RuntimeError", err.msg,
			      NULL, 0);
		free(n);
		return;
	}
	node_ctx_set_state(ctx, n);
}

static void exec_cancel(struct node_ctx *ctx)
{
	struct exec_node *n = node_ctx_state(ctx);

	if (n != NULL)
		model_exec_job_cancel(n->job);
}
