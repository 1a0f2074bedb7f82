/*
 * cli_model.c - `fnrun new-model` (cli_model.h): the command line, the
 * command's words and placeholders, and the inputs they become.
 *
 * new-model puts a command-line generator behind a function with
 * fnrun-worker's exec model (worker/model_exec.c, top comment). From
 * `--command 'sox -n {output} synth {seconds} sine {note}'` it makes one
 * exec node class whose inputs are the placeholders (first use first), the
 * workflow that runs it (node "1", default inputs), and the registry
 * entries: the model binding each input as "1.inputs.NAME", and the
 * function with one param per input when the registry lacks it. Each
 * input's type is, in this order: its --input, the type of the function's
 * param of that name, STRING. This file fills a struct nm
 * (cli_model_internal.h) with all that; cli_model_emit.c writes the files.
 *
 * Invariants:
 * 1. new-model never overwrites a file: the exec config and the workflow
 *    are created with O_EXCL, and the registry is replaced (rename(2)) only
 *    by a merged copy that registry_check() passed. On any failure the
 *    files it created are removed and the registry is as it was.
 * 2. The command is split as a shell splits words, but what only a shell
 *    would act on (| & ; < > ( ) $ ` * ? and a leading # or ~) is refused
 *    unless quoted: fnrun-worker runs no shell.
 * 3. stdout carries the result: the YAML to paste (then notes go to
 *    stderr), or what was added to --registry and what to do next; errors
 *    always go to stderr.
 *
 * The registry is checked with registry_check(), as `fnrun check` does. The
 * exec config is not loaded here: fnrun does not link fnrun-worker's loader
 * (libworker.a); `fnrun check --deep`, the next step printed, reads it.
 */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "buf.h"
#include "cli_model.h"
#include "cli_model_internal.h"
#include "json.h"
#include "registry.h"
#include "util.h"

#define NM_MAX_ARG (128u << 10)  /* bytes of one command word (fnrun-worker's EXEC_MAX_ARG) */
#define NM_MAX_LENGTH 1000       /* max_length given to a new STRING input */
#define NM_RANDOM_MAX "9007199254740991" /* 2^53 - 1: the top of a random default */

static const char new_model_usage[] =
	"usage: fnrun new-model ID --function NAME --command 'PROGRAM ARGS {output} {name}...'\n"
	"         [--input NAME=TYPE[:...]]... [--output image|audio|video] [--ext EXT]\n"
	"         [--quality Q] [--dir DIR] [--registry FILE]\n"
	"  writes DIR/worker-ID.yaml (an exec config for fnrun-worker) and DIR/workflows/ID.json,\n"
	"  then prints the registry entries to paste, or adds them to --registry FILE\n"
	"  --command   split into words as a shell would (quotes respected), never run by one;\n"
	"              {output} is the file it writes, each other {name} an input and a param\n"
	"  --input     NAME=STRING[:default]   NAME=INT[:min[:max[:default|random]]]\n"
	"              NAME=FLOAT[:min[:max[:default]]]   NAME=BOOLEAN[:default]\n"
	"              NAME=COMBO:a|b|c[:default]   (else the function's param type, else STRING)\n"
	"  --output    what the command makes (default: from --ext or the function's name)\n"
	"  --ext       the output file's extension (default png, wav or mp4)\n"
	"  --quality   the model's quality (default standard)\n"
	"  --dir       where the two files go (default: the registry's directory, else .)\n";

static const struct flag nm_flags[] = {
	{"function", offsetof(struct nm_opts, function), 0},
	{"command", offsetof(struct nm_opts, command), 0},
	{"input", offsetof(struct nm_opts, inputs), 1},
	{"output", offsetof(struct nm_opts, output), 0},
	{"ext", offsetof(struct nm_opts, ext), 0},
	{"quality", offsetof(struct nm_opts, quality), 0},
	{"dir", offsetof(struct nm_opts, dir), 0},
	{"registry", offsetof(struct nm_opts, registry), 0},
	{NULL, 0, 0},
};

/* Indexed by enum reg_type: the exec config's type, the registry's. */
const char *const cli_model__exec_types[5] = {"STRING", "INT", "FLOAT", "BOOLEAN", "COMBO"};
const char *const cli_model__reg_types[5] = {"string", "int", "float", "bool", "enum"};

/* The three usual qualities of a new function. */
const struct nm_quality cli_model__qualities[3] = {
	{"low", "Fast Preview", "[1, 5]"},
	{"standard", "Balanced", "[2, 10]"},
	{"high", "Maximum Detail", "[5, 30]"},
};

/* Output kinds, by enum reg_output: the name, the default extension, words that suggest it. */
static const struct nm_kind nm_kinds[] = {
	{"image", "png", "image images picture pictures photo drawing icon png jpg jpeg webp gif"},
	{"audio", "wav", "sound sounds audio speech voice music tone song wav mp3 ogg flac"},
	{"video", "mp4", "video videos clip movie animation film mp4 webm mkv mov"},
};
#define NM_NKINDS (sizeof nm_kinds / sizeof nm_kinds[0])

/* ---- flags: --name VALUE or --name=VALUE, from a table ---- */

static const struct flag *flag_find(const struct flag *t, const char *name, size_t n)
{
	for (; t->name != NULL; t++)
		if (strlen(t->name) == n && strncmp(t->name, name, n) == 0)
			return t;
	return NULL;
}

static void flag_set(const struct flag *f, void *obj, const char *value)
{
	struct strv *l = (struct strv *)((char *)obj + f->off);

	if (!f->repeat) {
		*(const char **)((char *)obj + f->off) = value;
		return;
	}
	l->v = xrealloc(l->v, (l->n + 1) * sizeof *l->v);
	l->v[l->n++] = value;
}

/* The flag parser of both subcommands (cli_model_internal.h). */
int cli_model__flags_parse(int argc, char **argv, const struct flag *t, void *obj,
			   const char **pos)
{
	*pos = NULL;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *eq = strchr(a, '='), *value;
		const struct flag *f;

		if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0)
			return 1;
		if (strncmp(a, "--", 2) != 0 && *pos == NULL) {
			*pos = a;
			continue;
		}
		f = NULL;
		if (strncmp(a, "--", 2) == 0)
			f = flag_find(t, a + 2, eq ? (size_t)(eq - a - 2) : strlen(a + 2));
		value = eq ? eq + 1 : i + 1 < argc ? argv[++i] : NULL;
		if (f == NULL || value == NULL) {
			fprintf(stderr, "fnrun %s: %s \"%s\"\n", argv[0],
				f == NULL ? "unexpected argument" : "a value is missing after", a);
			return -1;
		}
		flag_set(f, obj, value);
	}
	return 0;
}

/* 1 when s (n bytes) is a word of the blank-separated list (cli_model_internal.h). */
int cli_model__word_in(const char *list, const char *s, size_t n)
{
	while (*list) {
		size_t k = strcspn(list, " ");

		if (k == n && strncasecmp(list, s, n) == 0)
			return 1;
		list += k + (list[k] == ' ');
	}
	return 0;
}

static void input_free(struct nm_input *in)
{
	free(in->name);
	free(in->min);
	free(in->max);
	free(in->def);
	for (char **o = in->options; o && *o; o++)
		free(*o);
	free(in->options);
}

static void nm_cleanup(struct nm *nm)
{
	for (size_t i = 0; i < nm->nwords; i++)
		free(nm->words[i]);
	free(nm->words);
	for (size_t i = 0; i < nm->nin; i++)
		input_free(&nm->in[i]);
	free(nm->in);
	registry_unref(nm->reg);
	free(nm->o.inputs.v);
	free(nm->dir);
	free(nm->reg_path);
	free(nm->cfg_path);
	free(nm->wf_path);
	free(nm->cfg_ref);
	free(nm->wf_ref);
	free(nm->text);
}

/* ---- the command: words and placeholders ---- */

struct splitter {
	char **words; /* owned until handed over */
	size_t n;
	struct buf w; /* the word being read */
	int in_word;  /* 1: w holds a word, maybe empty ("") */
	char quote;   /* 0, '\'' or '"' */
};

static void split_push(struct splitter *sp)
{
	if (!sp->in_word)
		return;
	sp->words = xrealloc(sp->words, (sp->n + 1) * sizeof *sp->words);
	sp->words[sp->n++] = sp->w.data ? buf_steal(&sp->w) : xstrdup("");
	sp->in_word = 0;
}

/* Reads the character(s) at s[*i] inside "...": \" \\ \$ \` \newline escape. */
static int split_dquoted(struct splitter *sp, const char *s, size_t *i, struct err *err)
{
	char c = s[*i];

	if (c == '"') {
		sp->quote = 0;
	} else if (c == '$' || c == '`') {
		err_set(err, ERR_INVALID, "--command: \"%c\" at column %zu needs a shell, and "
			"fnrun-worker runs none; write '%c' to mean the character", c, *i + 1, c);
		return -1;
	} else if (c == '\\' && s[*i + 1] && strchr("\"\\$`\n", s[*i + 1])) {
		(*i)++;
		if (s[*i] != '\n')
			buf_putc(&sp->w, s[*i]);
	} else {
		buf_putc(&sp->w, c);
	}
	return 0;
}

/* Reads the character(s) at s[*i] outside quotes. */
static int split_plain(struct splitter *sp, const char *s, size_t *i, struct err *err)
{
	char c = s[*i];

	if (c == ' ' || c == '\t' || c == '\n') {
		split_push(sp);
		return 0;
	}
	if (strchr("|&;<>()$`*?", c) || (!sp->in_word && (c == '#' || c == '~'))) {
		err_set(err, ERR_INVALID, "--command: \"%c\" at column %zu needs a shell, and "
			"fnrun-worker runs none: quote it, or put the pipeline in a script and "
			"run that", c, *i + 1);
		return -1;
	}
	sp->in_word = 1;
	if (c == '\'' || c == '"')
		sp->quote = c;
	else if (c == '\\' && s[*i + 1] == '\n')
		(*i)++; /* a line continuation */
	else if (c == '\\' && s[*i + 1])
		buf_putc(&sp->w, s[++*i]);
	else
		buf_putc(&sp->w, c);
	return 0;
}

/* Splits the command into nm->words (invariant 2). */
static int split_words(struct nm *nm, const char *s, struct err *err)
{
	struct splitter sp = {0};
	int rc = 0;

	buf_init(&sp.w, NM_MAX_ARG);
	for (size_t i = 0; s[i] && rc == 0; i++) {
		if (sp.quote == '\'' && s[i] == '\'')
			sp.quote = 0;
		else if (sp.quote == '\'')
			buf_putc(&sp.w, s[i]);
		else if (sp.quote)
			rc = split_dquoted(&sp, s, &i, err);
		else
			rc = split_plain(&sp, s, &i, err);
	}
	split_push(&sp);
	if (rc == 0 && (sp.quote || sp.n == 0)) {
		err_set(err, ERR_INVALID, "--command: %s", sp.quote ? "a quote is not closed"
					  : "is empty; give the program and its arguments");
		rc = -1;
	}
	buf_cleanup(&sp.w);
	nm->words = sp.words;
	nm->nwords = sp.n;
	return rc;
}

static struct nm_input *input_find(const struct nm *nm, const char *name, size_t n)
{
	for (size_t i = 0; i < nm->nin; i++)
		if (strlen(nm->in[i].name) == n && strncmp(nm->in[i].name, name, n) == 0)
			return &nm->in[i];
	return NULL;
}

/* Letters, digits and _, not starting with a digit, 1..64: an exec input name. */
static int name_ok(const char *s, size_t n)
{
	size_t k = 0;

	while (k < n && (isalnum((unsigned char)s[k]) || s[k] == '_'))
		k++;
	return n > 0 && n <= NM_MAX_NAME && k == n && !isdigit((unsigned char)s[0]);
}

/* One {name} of a word: {output} noted, any other added as an input. */
static int scan_placeholder(struct nm *nm, const char *name, size_t n, int *has_output,
			    struct err *err)
{
	if (n == 6 && strncmp(name, "output", 6) == 0) {
		*has_output = 1;
		return 0;
	}
	if (!name_ok(name, n)) {
		err_set(err, ERR_INVALID, "--command: {%.*s}: a placeholder is a name of letters, "
			"digits and _ (not starting with a digit); {{ and }} are literal braces",
			n > 40 ? 40 : (int)n, name);
		return -1;
	}
	if (input_find(nm, name, n) != NULL)
		return 0;
	nm->in = xrealloc(nm->in, (nm->nin + 1) * sizeof *nm->in);
	memset(&nm->in[nm->nin], 0, sizeof *nm->in);
	nm->in[nm->nin++].name = xstrndup(name, n);
	return 0;
}

/* The placeholders of word w (the template syntax of worker/model_exec.c). */
static int scan_word(struct nm *nm, const char *w, int first, int *has_output, struct err *err)
{
	for (const char *p = w; *p; p++) {
		const char *close;

		if ((p[0] == '{' && p[1] == '{') || (p[0] == '}' && p[1] == '}')) {
			p++;
			continue;
		}
		if (*p != '{' && *p != '}')
			continue;
		close = *p == '{' ? strchr(p + 1, '}') : NULL;
		if (close == NULL || first) {
			err_set(err, ERR_INVALID, "--command: %s in \"%.60s\"",
				close ? "the program cannot hold a placeholder"
				      : "an unmatched brace; write {{ or }} for a literal one", w);
			return -1;
		}
		if (scan_placeholder(nm, p + 1, (size_t)(close - p - 1), has_output, err) < 0)
			return -1;
		p = close;
	}
	return 0;
}

static int scan_command(struct nm *nm, struct err *err)
{
	int has_output = 0;

	for (size_t i = 0; i < nm->nwords; i++)
		if (scan_word(nm, nm->words[i], i == 0, &has_output, err) < 0)
			return -1;
	if (!has_output) {
		err_set(err, ERR_INVALID, "--command: has no {output}; put it where the program "
			"takes the file to write, e.g. 'sox -n {output} synth 1 sine 440'");
		return -1;
	}
	return 0;
}

/* ---- inputs: --input specs, the function's params, defaults ---- */

/* 0 when s is a number of the input's type; *d its value. */
static int number_ok(const struct nm_input *in, const char *s, double *d)
{
	char *end;

	errno = 0;
	*d = in->type == REG_INT ? (double)strtoll(s, &end, 10) : strtod(s, &end);
	if (*s == '\0' || isspace((unsigned char)*s) || *end != '\0' || errno != 0)
		return -1;
	return isfinite(*d) ? 0 : -1;
}

/* Part i (0 min, 1 max, 2 default) of an INT or FLOAT spec, when given: into in, *v. */
static int spec_part(struct nm_input *in, const char *s, size_t i, double *v, struct err *err)
{
	char **field = i == 0 ? &in->min : i == 1 ? &in->max : &in->def;

	if (s == NULL || *s == '\0' || (i == 2 && in->random))
		return 0;
	if (number_ok(in, s, v) < 0) {
		err_set(err, ERR_INVALID, "--input %s: \"%.40s\" is not %s", in->name, s,
			in->type == REG_INT ? "a whole number" : "a number");
		return -1;
	}
	*field = xstrdup(s);
	return 0;
}

/* INT or FLOAT: "min:max:default", each part optional; default may be random (INT). */
static int spec_number(struct nm_input *in, const char *rest, struct err *err)
{
	char *copy = xstrdup(rest ? rest : ""), *p = rest ? copy : NULL, *parts[4] = {0};
	double v[3] = {0, 0, 0};
	int rc = 0;

	for (size_t k = 0; p != NULL && k < 4; k++)
		parts[k] = strsep(&p, ":");
	in->random = in->type == REG_INT && parts[2] && strcmp(parts[2], "random") == 0;
	if (parts[3] != NULL) {
		err_set(err, ERR_INVALID, "--input %s: expected %s:min:max:default", in->name,
			cli_model__exec_types[in->type]);
		rc = -1;
	}
	for (size_t i = 0; i < 3 && rc == 0; i++)
		rc = spec_part(in, parts[i], i, &v[i], err);
	if (rc == 0 && ((in->min && in->max && v[0] > v[1]) ||
			(in->def && ((in->min && v[2] < v[0]) || (in->max && v[2] > v[1]))))) {
		err_set(err, ERR_INVALID, "--input %s: min <= default <= max does not hold",
			in->name);
		rc = -1;
	}
	free(copy);
	return rc;
}

static int spec_string(struct nm_input *in, const char *rest, struct err *err)
{
	in->def = rest ? xstrdup(rest) : NULL;
	in->max_length = NM_MAX_LENGTH;
	if (in->def && strlen(in->def) > NM_MAX_LENGTH)
		in->max_length = (int64_t)strlen(in->def);
	return 0;
}

static int spec_bool(struct nm_input *in, const char *rest, struct err *err)
{
	if (rest == NULL)
		return 0;
	if (!cli_model__word_in("true false yes no on off", rest, strlen(rest))) {
		err_set(err, ERR_INVALID, "--input %s: the default is true or false, not \"%.40s\"",
			in->name, rest);
		return -1;
	}
	in->def = xstrdup(cli_model__word_in("true yes on", rest, strlen(rest)) ? "true" : "false");
	return 0;
}

/* COMBO: "a|b|c[:default]". */
static int spec_combo(struct nm_input *in, const char *rest, struct err *err)
{
	const char *colon = rest ? strchr(rest, ':') : NULL;
	char *list = rest ? xstrndup(rest, colon ? (size_t)(colon - rest) : strlen(rest)) : NULL;
	size_t n = 0;
	int rc = 0, found = colon == NULL;

	in->options = xcalloc(list ? strlen(list) + 2 : 1, sizeof *in->options);
	for (char *p = list; p != NULL && rc == 0;) {
		char *o = strsep(&p, "|");

		for (size_t i = 0; i < n; i++)
			rc |= strcmp(in->options[i], o) == 0;
		rc |= *o == '\0';
		found |= colon && strcmp(o, colon + 1) == 0;
		in->options[n++] = xstrdup(o);
	}
	if (list == NULL || rc != 0 || !found)
		err_set(err, ERR_INVALID, "--input %s: expected COMBO:a|b|c[:default], distinct "
			"non-empty options%s", in->name, found ? "" : ", the default one of them");
	in->def = colon && found ? xstrdup(colon + 1) : NULL;
	free(list);
	return list == NULL || rc != 0 || !found ? -1 : 0;
}

/* Indexed by enum reg_type. */
static int (*const spec_parsers[])(struct nm_input *, const char *, struct err *) = {
	spec_string, spec_number, spec_number, spec_bool, spec_combo,
};

/* One --input NAME=TYPE[:...]. */
static int apply_spec(struct nm *nm, const char *spec, struct err *err)
{
	const char *eq = strchr(spec, '='), *colon;
	struct nm_input *in = eq ? input_find(nm, spec, (size_t)(eq - spec)) : NULL;
	size_t tlen;

	if (eq == NULL || in == NULL) {
		err_set(err, ERR_INVALID, "--input %.60s: expected NAME=TYPE[:...] where {NAME} "
			"is a placeholder of the command", spec);
		return -1;
	}
	if (in->given) {
		err_set(err, ERR_INVALID, "--input %s: given twice", in->name);
		return -1;
	}
	colon = strchr(eq + 1, ':');
	tlen = colon ? (size_t)(colon - eq - 1) : strlen(eq + 1);
	in->type = -1;
	for (int t = 0; t < 5; t++)
		if (strlen(cli_model__exec_types[t]) == tlen &&
		    strncasecmp(cli_model__exec_types[t], eq + 1, tlen) == 0)
			in->type = t;
	if (in->type < 0) {
		err_set(err, ERR_INVALID, "--input %s: unknown type \"%.*s\"; allowed: STRING, "
			"INT, FLOAT, BOOLEAN, COMBO", in->name, tlen > 20 ? 20 : (int)tlen, eq + 1);
		return -1;
	}
	in->given = 1;
	return spec_parsers[in->type](in, colon ? colon + 1 : NULL, err);
}

/* A bound of p as text. Caller frees. */
static char *bound_text(const struct reg_param *p, int64_t i, double d)
{
	struct json_object *o =
		p->type == REG_INT ? json_object_new_int64(i) : json_object_new_double(d);
	char *s = json_dumps(o);

	json_object_put(o);
	return s;
}

/* The input mirrors the function's param p. */
static void input_from_param(struct nm_input *in, const struct reg_param *p)
{
	in->type = p->type;
	in->random = p->random;
	in->max_length = p->max_length;
	in->min = p->has_min ? bound_text(p, p->min_int, p->min_num) : NULL;
	in->max = p->has_max ? bound_text(p, p->max_int, p->max_num) : NULL;
	if (p->def != NULL)
		in->def = p->type == REG_STRING || p->type == REG_ENUM
				  ? xstrdup(json_object_get_string(p->def))
				  : json_dumps(p->def);
	if (p->type != REG_ENUM)
		return;
	in->options = xcalloc(p->noptions + 1, sizeof *in->options);
	for (size_t i = 0; i < p->noptions; i++)
		in->options[i] = xstrdup(p->options[i]);
}

/*
 * The defaults an input without one gets, so node "1" always has a valid
 * value: min (else 0, else max), the first option, false. A random INT
 * spans 0 .. 2^53-1, as the registry draws it. STRING stays without one.
 */
static int input_defaults(struct nm_input *in, struct err *err)
{
	if (in->random && in->given && !in->min)
		in->min = xstrdup("0");
	if (in->random && in->given && !in->max)
		in->max = xstrdup(NM_RANDOM_MAX);
	if (in->random && in->given &&
	    (strtoll(in->min, NULL, 10) > 0 ||
	     strtoll(in->max, NULL, 10) < strtoll(NM_RANDOM_MAX, NULL, 10))) {
		err_set(err, ERR_INVALID, "--input %s: a random default is drawn from 0 to %s; "
			"leave min and max out, or make them span that", in->name, NM_RANDOM_MAX);
		return -1;
	}
	if (in->def != NULL || in->type == REG_STRING)
		return 0;
	if (in->type == REG_ENUM)
		in->def = xstrdup(in->options[0]);
	else if (in->type == REG_BOOL)
		in->def = xstrdup("false");
	else if (in->min)
		in->def = xstrdup(in->min);
	else
		in->def = xstrdup(in->max && strtod(in->max, NULL) < 0 ? in->max : "0");
	return 0;
}

/* Types every input: --input, the function's param, else STRING. */
static int type_inputs(struct nm *nm, struct err *err)
{
	for (size_t i = 0; i < nm->o.inputs.n; i++)
		if (apply_spec(nm, nm->o.inputs.v[i], err) < 0)
			return -1;
	for (size_t i = 0; i < nm->nin; i++) {
		struct nm_input *in = &nm->in[i];
		const struct reg_param *p = NULL;

		for (size_t k = 0; nm->fn && k < nm->fn->nparams; k++)
			if (strcmp(nm->fn->params[k].name, in->name) == 0)
				p = &nm->fn->params[k];
		in->bound = nm->fn == NULL || p != NULL;
		if (p && in->given && p->type != in->type) {
			err_set(err, ERR_INVALID, "--input %s: %s's param %s is of type %s; "
				"declare it %s", in->name, nm->fn->name, in->name,
				cli_model__reg_types[p->type], cli_model__exec_types[p->type]);
			return -1;
		}
		if (p && !in->given)
			input_from_param(in, p);
		else if (!in->given)
			spec_string(in, NULL, err);
		if (input_defaults(in, err) < 0)
			return -1;
		if (!in->bound && in->def == NULL) {
			err_set(err, ERR_INVALID, "{%s}: %s has no param %s, so it needs a "
				"default: --input %s=STRING:VALUE (or add the param to the "
				"function)", in->name, nm->fn->name, in->name, in->name);
			return -1;
		}
	}
	return 0;
}

/* ---- the model: id, registry, quality, output ---- */

static int check_id(const char *id, struct err *err)
{
	size_t n = strlen(id);

	if (n == 0 || n > NM_MAX_NAME || !isalnum((unsigned char)id[0]) || strstr(id, "..") ||
	    strspn(id, ALNUM "_.-") != n) {
		err_set(err, ERR_INVALID, "ID \"%.70s\": a model id is 1 to %d letters, digits, "
			"_ - and ., starting with a letter or digit", id, NM_MAX_NAME);
		return -1;
	}
	return 0;
}

/* The node class: the id in CamelCase ("create_sound" -> "CreateSound"). */
static void class_name(const char *id, char *out, size_t size)
{
	size_t k = 0;
	int up = 1;

	if (isdigit((unsigned char)id[0]))
		k = (size_t)snprintf(out, size, "Exec");
	for (; *id && k + 1 < size; id++) {
		if (strchr("_-.", *id)) {
			up = 1;
			continue;
		}
		out[k++] = up ? (char)toupper((unsigned char)*id) : *id;
		up = 0;
	}
	out[k] = '\0';
}

static int load_registry(struct nm *nm, struct err *err)
{
	if (nm->o.registry == NULL)
		return 0;
	nm->reg_path = realpath(nm->o.registry, NULL);
	if (nm->reg_path == NULL) {
		err_set(err, ERR_IO, "--registry %s: %s", nm->o.registry, strerror(errno));
		return -1;
	}
	nm->reg = registry_load(nm->reg_path, err);
	if (nm->reg == NULL)
		return -1;
	nm->fn = registry_function(nm->reg, nm->o.function);
	return 0;
}

static int pick_quality(struct nm *nm, struct err *err)
{
	struct buf keys;
	int ok = 0;

	nm->quality = nm->o.quality ? nm->o.quality : "standard";
	buf_init(&keys, 4096);
	for (size_t i = 0; nm->fn && i < nm->fn->nqualities; i++) {
		buf_printf(&keys, "%s%s", i ? ", " : "", nm->fn->qualities[i].key);
		ok |= strcmp(nm->fn->qualities[i].key, nm->quality) == 0;
	}
	for (size_t i = 0; !nm->fn && i < 3; i++) {
		buf_printf(&keys, "%s%s", i ? ", " : "", cli_model__qualities[i].key);
		ok |= strcmp(cli_model__qualities[i].key, nm->quality) == 0;
	}
	if (!ok)
		err_set(err, ERR_INVALID, "--quality %.40s: allowed: %s%s", nm->quality, keys.data,
			nm->fn ? "" : " (a new function gets these three)");
	buf_cleanup(&keys);
	return ok ? 0 : -1;
}

/* The kind called name, or (words 1) the kind a word suggests; NULL: none. */
static const struct nm_kind *kind_of(const char *name, size_t n, int words)
{
	for (size_t k = 0; k < NM_NKINDS; k++) {
		const char *kn = nm_kinds[k].name;

		if (words ? cli_model__word_in(nm_kinds[k].words, name, n)
			  : strlen(kn) == n && strncmp(kn, name, n) == 0)
			return &nm_kinds[k];
	}
	return NULL;
}

/* --output, else --ext, else the function's output, else a word of its name, else image. */
static int pick_output(struct nm *nm, struct err *err)
{
	const char *w = nm->o.function;

	if (nm->o.output)
		nm->kind = kind_of(nm->o.output, strlen(nm->o.output), 0);
	else if (nm->o.ext)
		nm->kind = kind_of(nm->o.ext, strlen(nm->o.ext), 1);
	if (nm->o.output && nm->kind == NULL) {
		err_set(err, ERR_INVALID, "--output %.40s: allowed: image, audio, video",
			nm->o.output);
		return -1;
	}
	if (nm->kind == NULL && nm->fn && nm->fn->output >= 0)
		nm->kind = &nm_kinds[nm->fn->output];
	while (nm->kind == NULL && *w) {
		size_t n = strcspn(w, " ");

		nm->kind = kind_of(w, n, 1);
		w += n + (w[n] == ' ');
	}
	nm->kind = nm->kind ? nm->kind : &nm_kinds[0];
	if (nm->fn && nm->fn->output >= 0 && &nm_kinds[nm->fn->output] != nm->kind) {
		err_set(err, ERR_INVALID, "--output %s: %s makes %s", nm->kind->name, nm->fn->name,
			nm_kinds[nm->fn->output].name);
		return -1;
	}
	nm->ext = nm->o.ext ? nm->o.ext : nm->kind->ext;
	if (*nm->ext == '\0' || strlen(nm->ext) > 16 ||
	    strspn(nm->ext, ALNUM) != strlen(nm->ext)) {
		err_set(err, ERR_INVALID, "--ext %.40s: 1 to 16 letters and digits, such as wav",
			nm->ext);
		return -1;
	}
	return 0;
}
/* Fills nm from its options; the files' paths are cli_model__write()'s. */
static int nm_prepare(struct nm *nm, struct err *err)
{
	if (check_id(nm->o.id, err) < 0 || split_words(nm, nm->o.command, err) < 0 ||
	    scan_command(nm, err) < 0 || load_registry(nm, err) < 0 || type_inputs(nm, err) < 0 ||
	    pick_quality(nm, err) < 0 || pick_output(nm, err) < 0)
		return -1;
	class_name(nm->o.id, nm->cls, sizeof nm->cls);
	return 0;
}

/*
 * Every step of new-model: the inputs here, then the files (cli_model_emit.c);
 * on failure, what it created is removed (invariant 1).
 */
static int nm_run(struct nm *nm, struct err *err)
{
	if (nm_prepare(nm, err) < 0)
		return -1;
	return cli_model__write(nm, err);
}

int cli_new_model(int argc, char **argv)
{
	struct nm nm;
	struct err err = {0};
	int rc;

	memset(&nm, 0, sizeof nm);
	rc = cli_model__flags_parse(argc, argv, nm_flags, &nm.o, &nm.o.id);
	if (rc != 0 || !nm.o.id || !nm.o.function || !nm.o.command) {
		if (rc == 0)
			fprintf(stderr, "fnrun new-model: give the ID, --function and --command\n");
		fputs(new_model_usage, rc == 1 ? stdout : stderr);
		nm_cleanup(&nm);
		return rc == 1 ? 0 : 2;
	}
	rc = nm_run(&nm, &err);
	if (rc < 0)
		fprintf(stderr, "fnrun new-model: %s\n", err.msg);
	else if (nm.reg_path && registry_check(nm.reg_path, stderr) != 0)
		rc = -1; /* `fnrun check` on the file as it is now: changed since the merge */
	else
		cli_model__print_next(&nm, nm.reg_path ? stdout : stderr);
	nm_cleanup(&nm);
	return rc < 0 ? 1 : 0;
}
