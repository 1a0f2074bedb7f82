/*
 * model_exec.c - node classes that run a command-line generator: the
 * argv/stdin templates, building a command from a node's inputs, and the
 * node class's run() and cancel(). The config loader is exec_config.c, the
 * process runner exec_job.c; their shared types are in exec_internal.h.
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
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "buf.h"
#include "exec_internal.h"
#include "json.h" /* not json-c's json.h, found first on the path */
#include "model_exec.h"
#include "util.h"

/* ------------------------------------------------------------------ */
/* Templates                                                          */

void model_exec__tmpl_cleanup(struct tmpl *t)
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
int model_exec__tmpl_parse(struct tmpl *t, const char *s, const struct exec_input *in, size_t n,
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
	model_exec__tmpl_cleanup(t);
	return -1;
}

int model_exec__tmpl_has(const struct tmpl *t, int ref)
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

/* Python len(): code points of a UTF-8 string. */
size_t model_exec__utf8_chars(const char *s)
{
	size_t n = 0;

	for (; *s; s++)
		n += ((unsigned char)*s & 0xc0) != 0x80;
	return n;
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

	if (c->run != model_exec__run) {
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

	return c && c->run == model_exec__run ? c->data : NULL;
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
		n = model_exec__utf8_chars(texts[i]);
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

void model_exec__run(struct node_ctx *ctx)
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

void model_exec__cancel(struct node_ctx *ctx)
{
	struct exec_node *n = node_ctx_state(ctx);

	if (n != NULL)
		model_exec_job_cancel(n->job);
}
