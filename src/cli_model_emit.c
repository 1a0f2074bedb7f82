/*
 * cli_model_emit.c - the files `fnrun new-model` writes (cli_model.c reads
 * the command line): where they go, the exec config DIR/worker-ID.yaml, the
 * workflow DIR/workflows/ID.json, and the registry entries, merged into
 * --registry or printed to paste; then what to do next.
 *
 * The texts are built from the struct nm that cli_model.c filled
 * (cli_model_internal.h). YAML scalars are written plain only where block
 * and flow context read them alike, else double-quoted (yq()). The merge
 * appends each entry at the end of its top-level block section (or adds
 * the section), leaving every other byte of the registry as it was.
 *
 * Invariant 1 of cli_model.c is kept here: the two files are created with
 * O_EXCL, the registry is replaced only by a renamed copy that
 * registry_check() passed, and on failure what this run created is removed.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "buf.h"
#include "cli_model_internal.h"
#include "json.h"
#include "registry.h"
#include "util.h"

/* ---- YAML and JSON text ---- */

/* 1 when s can be a plain YAML scalar in block and flow context alike. */
static int yaml_plain(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || s[n - 1] == ' ' || isdigit((unsigned char)s[0]) ||
	    cli_model__word_in("true false yes no on off null y n", s, n))
		return 0;
	if (!isalpha((unsigned char)s[0]) && !strchr("_/.", s[0]) &&
	    !(s[0] == '-' && n > 1 && s[1] != ' '))
		return 0;
	return strspn(s, ALNUM " _./+=@%-") == n;
}

/* Appends s as a YAML scalar: plain when that is safe, else double-quoted. */
static void yq(struct buf *b, const char *s)
{
	if (yaml_plain(s)) {
		buf_puts(b, s);
		return;
	}
	buf_putc(b, '"');
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			buf_printf(b, "\\%c", *s);
		else if ((unsigned char)*s < 0x20 || *s == 0x7f)
			buf_printf(b, "\\x%02x", (unsigned char)*s);
		else
			buf_putc(b, *s);
	}
	buf_putc(b, '"');
}

static int json_nests(struct json_object *o)
{
	return json_object_is_type(o, json_type_object) || json_object_is_type(o, json_type_array);
}

/* ",\n" and the indent of an item at depth (no comma before the first). */
static void json_item(struct buf *b, size_t i, int depth)
{
	buf_printf(b, "%s\n%*s", i ? "," : "", 2 * depth, "");
}

/* Indented JSON, for the workflow file and dry-run (cli_model_internal.h). */
void cli_model__json_pretty(struct buf *b, struct json_object *o, int depth)
{
	size_t n = json_object_is_type(o, json_type_array) ? json_object_array_length(o) : 0, i = 0;
	int nested = 0;

	for (size_t k = 0; k < n; k++)
		nested |= json_nests(json_object_array_get_idx(o, k));
	if (json_object_is_type(o, json_type_object) && json_object_object_length(o) > 0) {
		buf_putc(b, '{');
		json_object_object_foreach(o, k, v) {
			json_item(b, i++, depth + 1);
			json_dump_string(b, k, strlen(k));
			buf_puts(b, ": ");
			cli_model__json_pretty(b, v, depth + 1);
		}
		buf_printf(b, "\n%*s}", 2 * depth, "");
	} else if (nested) {
		buf_putc(b, '[');
		for (i = 0; i < n; i++) {
			json_item(b, i, depth + 1);
			cli_model__json_pretty(b, json_object_array_get_idx(o, i), depth + 1);
		}
		buf_printf(b, "\n%*s]", 2 * depth, "");
	} else {
		json_dump(b, o);
	}
}

/* ---- where the files go ---- */

/*
 * The files' paths, and their names in the model entry: relative to the
 * registry's directory ({configdir} for the command) when DIR is in it,
 * else absolute. Without --registry, the registry is to live in DIR.
 */
static int pick_paths(struct nm *nm, struct err *err)
{
	char *regdir = nm->reg_path ? xstrdup(nm->reg_path) : NULL, *rel;
	const char *dir = nm->o.dir;
	size_t n;

	if (regdir)
		*strrchr(regdir, '/') = '\0';
	if (dir == NULL)
		dir = regdir ? regdir : ".";
	if (util_mkdirs(dir) < 0 || (nm->dir = realpath(dir, NULL)) == NULL) {
		err_set(err, ERR_IO, "--dir %s: %s", dir, strerror(errno));
		free(regdir);
		return -1;
	}
	n = regdir ? strlen(regdir) : 0;
	if (regdir == NULL || strcmp(nm->dir, regdir) == 0)
		rel = xstrdup("");
	else if (strncmp(nm->dir, regdir, n) == 0 && nm->dir[n] == '/')
		rel = xasprintf("%s/", nm->dir + n + 1);
	else
		rel = xasprintf("%s/", nm->dir);
	nm->cfg_path = xasprintf("%s/worker-%s.yaml", nm->dir, nm->o.id);
	nm->wf_path = xasprintf("%s/workflows/%s.json", nm->dir, nm->o.id);
	nm->cfg_ref = rel[0] == '/' ? xasprintf("%sworker-%s.yaml", rel, nm->o.id)
				    : xasprintf("{configdir}/%sworker-%s.yaml", rel, nm->o.id);
	nm->wf_ref = xasprintf("%sworkflows/%s.json", rel, nm->o.id);
	free(rel);
	free(regdir);
	return 0;
}

/* Says on stderr what is there already; -1 when anything is. */
static int refuse_existing(const struct nm *nm, struct err *err)
{
	const char *paths[] = {nm->cfg_path, nm->wf_path};
	int n = 0;

	for (size_t i = 0; i < 2; i++) {
		if (access(paths[i], F_OK) != 0)
			continue;
		fprintf(stderr, "fnrun new-model: %s already exists; not overwriting it\n",
			paths[i]);
		n++;
	}
	if (nm->reg && registry_model(nm->reg, nm->o.id)) {
		fprintf(stderr, "fnrun new-model: model %s is already in %s\n", nm->o.id,
			nm->reg_path);
		n++;
	}
	if (n > 0)
		err_set(err, ERR_CONFLICT, "nothing written: remove %s, or pick another ID",
			n > 1 ? "those" : "that");
	return n > 0 ? -1 : 0;
}

/* ---- the texts ---- */

/* "{type: INT, default: 1, min: 0, max: 9}": an exec input, or a registry param. */
static void emit_input(struct buf *b, const struct nm_input *in, int registry)
{
	buf_printf(b, "{type: %s",
		   registry ? cli_model__reg_types[in->type] : cli_model__exec_types[in->type]);
	if (registry && in->type == REG_STRING && in->def == NULL)
		buf_puts(b, ", required: true");
	if (in->type == REG_ENUM) {
		buf_puts(b, ", options: [");
		for (char **o = in->options; *o; o++) {
			buf_puts(b, o == in->options ? "" : ", ");
			yq(b, *o);
		}
		buf_putc(b, ']');
	}
	if (registry && in->random) {
		buf_puts(b, ", default: random");
	} else if (in->def && (in->type == REG_STRING || in->type == REG_ENUM)) {
		buf_puts(b, ", default: ");
		yq(b, in->def);
	} else if (in->def) { /* a number or true/false, checked: plain, as YAML reads them */
		buf_printf(b, ", default: %s", in->def);
	}
	if (in->min)
		buf_printf(b, ", min: %s", in->min);
	if (in->max)
		buf_printf(b, ", max: %s", in->max);
	if (in->max_length > 0)
		buf_printf(b, ", max_length: %lld", (long long)in->max_length);
	buf_puts(b, "}");
}

/* The command as one line, control characters shown as spaces. */
static void emit_command_comment(struct buf *b, const struct nm *nm)
{
	for (const char *p = nm->o.command; *p; p++)
		buf_putc(b, (unsigned char)*p < 0x20 ? ' ' : *p);
}

/* The exec config DIR/worker-ID.yaml. Caller frees. */
static char *exec_config_text(const struct nm *nm)
{
	struct buf b;
	const char *slash = strrchr(nm->words[0], '/');
	char *title = xasprintf("%s (%s)", nm->o.function, slash ? slash + 1 : nm->words[0]);

	buf_init(&b, NM_MAX_TEXT);
	buf_printf(&b, "# worker-%s.yaml: written by `fnrun new-model %s` from\n#   ", nm->o.id,
		   nm->o.id);
	emit_command_comment(&b, nm);
	buf_printf(&b, "\n#\n#   fnrun-worker --model exec --config worker-%s.yaml --port 8189\n#\n"
		   "# One node class, its inputs the placeholders; the format is the top comment\n"
		   "# of worker/model_exec.c (README: \"Wrapping a new command\").\nnodes:\n  %s:\n"
		   "    display_name: ", nm->o.id, nm->cls);
	yq(&b, title);
	buf_puts(&b, "\n    category: fnrun\n    inputs:\n");
	for (size_t i = 0; i < nm->nin; i++) {
		buf_printf(&b, "      %s: ", nm->in[i].name);
		emit_input(&b, &nm->in[i], 0);
		buf_putc(&b, '\n');
	}
	buf_puts(&b, "    command: [");
	for (size_t i = 0; i < nm->nwords; i++) {
		buf_puts(&b, i ? ", " : "");
		yq(&b, nm->words[i]);
	}
	buf_printf(&b, "]\n    output: {kind: %s, ext: %s, prefix: %s}\n    expected_seconds: 10\n"
		   "    timeout_seconds: 600\n", nm->kind->name, nm->ext, nm->o.id);
	free(title);
	return buf_steal(&b);
}

/* The JSON value of an input's default, of its type. Caller owns. */
static struct json_object *default_json(const struct nm_input *in)
{
	if (in->type == REG_INT)
		return json_object_new_int64(strtoll(in->def, NULL, 10));
	if (in->type == REG_FLOAT)
		return json_object_new_double(strtod(in->def, NULL));
	if (in->type == REG_BOOL)
		return json_object_new_boolean(strcmp(in->def, "true") == 0);
	return json_str(in->def ? in->def : "");
}

/* The workflow DIR/workflows/ID.json: node "1" of the class, default inputs. Caller frees. */
static char *workflow_text(const struct nm *nm)
{
	struct json_object *wf = json_object_new_object(), *node = json_object_new_object();
	struct json_object *inputs = json_object_new_object(), *meta = json_object_new_object();
	struct buf b;

	for (size_t i = 0; i < nm->nin; i++)
		json_put(inputs, nm->in[i].name, default_json(&nm->in[i]));
	json_put(node, "class_type", json_str(nm->cls));
	json_put(node, "inputs", inputs);
	json_put(meta, "title", json_str(nm->o.function));
	json_put(node, "_meta", meta);
	json_put(wf, "1", node);
	buf_init(&b, NM_MAX_TEXT);
	cli_model__json_pretty(&b, wf, 0);
	buf_putc(&b, '\n');
	json_object_put(wf);
	return buf_steal(&b);
}

/* The line "bind: {a: \"1.inputs.a\", ...}", when any input is bound. */
static void emit_bind(struct buf *b, const struct nm *nm, int k)
{
	int nb = 0;

	for (size_t i = 0; i < nm->nin; i++) {
		if (!nm->in[i].bound)
			continue;
		if (nb++ == 0)
			buf_printf(b, "%*sbind: {", k, "");
		else
			buf_puts(b, ", ");
		buf_printf(b, "%s: \"1.inputs.%s\"", nm->in[i].name, nm->in[i].name);
	}
	if (nb > 0)
		buf_puts(b, "}\n");
}

/* The model entry, its id indented by ind spaces and its keys by 2 * ind. */
static void emit_model(struct buf *b, const struct nm *nm, int ind)
{
	int k = 2 * ind;

	buf_printf(b, "%*s%s:\n%*s# fnrun new-model: ", ind, "", nm->o.id, k, "");
	emit_command_comment(b, nm);
	buf_printf(b, "\n%*sfunction: ", k, "");
	yq(b, nm->o.function);
	buf_printf(b, "\n%*squality: %s\n%*sruntime: process\n", k, "", nm->quality, k, "");
	buf_printf(b, "%*scommand: [\"{bindir}/fnrun-worker\", --model, exec, --config, ", k, "");
	yq(b, nm->cfg_ref);
	buf_printf(b, ", --port, \"{port}\", --output-directory, \"{outdir}\"]\n");
	buf_printf(b, "%*sworkflow: ", k, "");
	yq(b, nm->wf_ref);
	buf_putc(b, '\n');
	emit_bind(b, nm, k);
	buf_printf(b, "%*sresources: {gpu_memory: 0}\n%*sidle_timeout: 300s\n", k, "", k, "");
}

/* The function entry: one param per bound input, the three usual qualities. */
static void emit_function(struct buf *b, const struct nm *nm, int ind)
{
	int k = 2 * ind;

	buf_printf(b, "%*s", ind, "");
	yq(b, nm->o.function);
	buf_printf(b, ":\n%*s# description: what it makes, in the users' words\n", k, "");
	buf_printf(b, "%*soutput: %s\n%*sparams:%s\n", k, "", nm->kind->name, k, "",
		   nm->nin ? "" : " {}");
	for (size_t i = 0; i < nm->nin; i++) {
		buf_printf(b, "%*s%s: ", 3 * ind, "", nm->in[i].name);
		emit_input(b, &nm->in[i], 1);
		buf_putc(b, '\n');
	}
	buf_printf(b, "%*squalities:\n", k, "");
	for (size_t i = 0; i < 3; i++) {
		const struct nm_quality *q = &cli_model__qualities[i];

		buf_printf(b, "%*s%s: {label: %s, typical_seconds: %s}\n", 3 * ind, "", q->key,
			   q->label, q->typical);
	}
	buf_printf(b, "%*sdefault_quality: %s\n", k, "", nm->quality);
}

/* ---- writing ---- */

/* Writes all of data to fd and closes it. Returns 0, or -1 with errno set. */
static int write_close(int fd, const char *data)
{
	size_t n = strlen(data), off = 0;
	int saved;

	while (off < n) {
		ssize_t w = write(fd, data + off, n - off);

		if (w < 0 && errno != EINTR)
			break;
		off += w > 0 ? (size_t)w : 0;
	}
	saved = off < n ? errno : 0;
	if (close(fd) < 0 && saved == 0)
		saved = errno;
	errno = saved;
	return saved ? -1 : 0;
}

/* Creates path with data; never replaces a file (O_EXCL). */
static int write_new(const char *path, const char *data, struct err *err)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);

	if (fd < 0 || write_close(fd, data) < 0) {
		err_set(err, ERR_IO, "%s: %s", path, strerror(errno));
		if (fd >= 0)
			unlink(path);
		return -1;
	}
	return 0;
}

static int write_files(struct nm *nm, struct err *err)
{
	char *cfg = exec_config_text(nm), *wf = workflow_text(nm), *wfdir = xstrdup(nm->wf_path);
	int rc = 0;

	*strrchr(wfdir, '/') = '\0';
	nm->made_wfdir = mkdir(wfdir, 0755) == 0;
	if (!nm->made_wfdir && errno != EEXIST) {
		err_set(err, ERR_IO, "%s: %s", wfdir, strerror(errno));
		rc = -1;
	}
	if (rc == 0)
		rc = write_new(nm->cfg_path, cfg, err);
	nm->wrote_cfg = rc == 0;
	if (rc == 0)
		rc = write_new(nm->wf_path, wf, err);
	nm->wrote_wf = rc == 0;
	free(cfg);
	free(wf);
	free(wfdir);
	return rc;
}

/* Removes what this run created (invariant 1 of cli_model.c). */
static void undo_files(const struct nm *nm)
{
	if (nm->wrote_cfg)
		unlink(nm->cfg_path);
	if (nm->wrote_wf)
		unlink(nm->wf_path);
	if (nm->made_wfdir) {
		char *dir = xstrdup(nm->wf_path);

		*strrchr(dir, '/') = '\0';
		rmdir(dir);
		free(dir);
	}
}

/*
 * registry_check() on text written to a temp file beside path (so relative
 * workflow paths resolve as they will), with mode. Returns the temp file's
 * name (the caller renames or unlinks the file, and frees the name), or
 * NULL with every error on stderr and no file left.
 */
static char *check_text(const char *path, const char *text, mode_t mode, struct err *err)
{
	char *tmp = xasprintf("%s.new-model.XXXXXX", path), *msgs = NULL;
	size_t len = 0;
	FILE *m;
	int fd = mkstemp(tmp), n;

	if (fd < 0 || fchmod(fd, mode & 07777) < 0 || write_close(fd, text) < 0) {
		err_set(err, ERR_IO, "%s: %s", tmp, strerror(errno));
		if (fd >= 0)
			unlink(tmp);
		free(tmp);
		return NULL;
	}
	m = open_memstream(&msgs, &len);
	n = registry_check(tmp, m);
	fclose(m);
	if (n > 0) {
		fprintf(stderr, "%s", msgs);
		err_set(err, ERR_INVALID, "the result would not load (%d error%s above); nothing "
			"written", n, n == 1 ? "" : "s");
	}
	free(msgs);
	if (n != 0) {
		unlink(tmp);
		free(tmp);
		return NULL;
	}
	return tmp;
}

/* The next line of text, or its end. */
static const char *next_line(const char *p)
{
	const char *nl = strchr(p, '\n');

	return nl ? nl + 1 : p + strlen(p);
}

/*
 * Finds the top-level block section `key:` of text: *at is the offset just
 * after its last indented line, *indent the indent of its entries (0 when
 * it has none). Returns 1, 0 when text has no such section, -1 when the
 * section has a value on its own line (flow style: {...}).
 */
static int section_find(const char *text, const char *key, size_t *at, int *indent)
{
	size_t klen = strlen(key);
	const char *p = text, *rest;

	while (*p && !(strncmp(p, key, klen) == 0 && p[klen] == ':'))
		p = next_line(p);
	if (*p == '\0')
		return 0;
	rest = p + klen + 1 + strspn(p + klen + 1, " ");
	if (*rest != '\n' && *rest != '\0' && *rest != '#')
		return -1;
	*indent = 0;
	*at = (size_t)(next_line(p) - text);
	for (p = next_line(p); *p; p = next_line(p)) {
		size_t sp = strspn(p, " ");

		if (p[sp] == '\n' || p[sp] == '\0' || p[0] == '#')
			continue; /* blank lines and top-level comments do not end it */
		if (sp == 0)
			break;
		if (*indent == 0 && p[sp] != '#')
			*indent = (int)sp;
		*at = (size_t)(next_line(p) - text);
	}
	return 1;
}

typedef void (*emit_fn)(struct buf *b, const struct nm *nm, int ind);

/*
 * text with emit's entry added at the end of section key (the section
 * appended when missing). Caller frees; NULL with err set.
 */
static char *merge_section(const char *text, const char *key, emit_fn emit, const struct nm *nm,
			   struct err *err)
{
	size_t at = 0;
	int indent = 0, rc = section_find(text, key, &at, &indent);
	struct buf b;

	if (rc < 0) {
		err_set(err, ERR_INVALID, "%s: the %s section is written in flow style ({...}); "
			"new-model adds to block sections only: paste the entries instead",
			nm->reg_path, key);
		return NULL;
	}
	buf_init(&b, NM_MAX_TEXT);
	buf_append(&b, text, rc ? at : strlen(text));
	if (b.len > 0 && b.data[b.len - 1] != '\n')
		buf_putc(&b, '\n');
	if (rc == 0)
		buf_printf(&b, "\n%s:\n", key);
	else if (indent > 0)
		buf_putc(&b, '\n'); /* a blank line between entries */
	emit(&b, nm, indent ? indent : 2);
	if (rc && buf_puts(&b, text + at) < 0) {
		err_set(err, ERR_TOO_LARGE, "%s: over %u bytes with the new entries", nm->reg_path,
			NM_MAX_TEXT);
		buf_cleanup(&b);
		return NULL;
	}
	return buf_steal(&b);
}

/* The registry's text with the entries added, into nm->text and nm->mode. */
static int merge_registry(struct nm *nm, struct err *err)
{
	char *text = NULL, *with_fn = NULL;
	struct stat st;
	size_t len;
	FILE *f = fopen(nm->reg_path, "r");

	if (f == NULL || fstat(fileno(f), &st) < 0 || st.st_size > (off_t)NM_MAX_TEXT) {
		err_set(err, ERR_IO, "%s: %s", nm->reg_path, f ? "too large" : strerror(errno));
		if (f)
			fclose(f);
		return -1;
	}
	text = xcalloc((size_t)st.st_size + 1, 1);
	len = fread(text, 1, (size_t)st.st_size, f);
	text[len] = '\0';
	fclose(f);
	nm->mode = st.st_mode;
	with_fn = nm->fn ? xstrdup(text) : merge_section(text, "functions", emit_function, nm, err);
	nm->text = with_fn ? merge_section(with_fn, "models", emit_model, nm, err) : NULL;
	free(text);
	free(with_fn);
	return nm->text ? 0 : -1;
}

/* Without --registry: the entries to paste, a registry of their own in DIR. */
static void paste_text(struct nm *nm)
{
	struct buf b;

	buf_init(&b, NM_MAX_TEXT);
	buf_printf(&b, "# fnrun new-model %s: the registry entries, for a registry in %s\n"
		   "# (paths are relative to it). Keep the function entry only if the registry\n"
		   "# has no \"%s\" yet.\nfunctions:\n", nm->o.id, nm->dir, nm->o.function);
	emit_function(&b, nm, 2);
	buf_puts(&b, "\nmodels:\n");
	emit_model(&b, nm, 2);
	nm->text = buf_steal(&b);
	nm->mode = 0644;
}

/*
 * Checks nm->text as `fnrun check` would, from a temp file beside the
 * registry (so relative paths resolve), then renames it over the registry,
 * or prints it to paste.
 */
static int install_text(struct nm *nm, struct err *err)
{
	char *base = nm->reg_path ? xstrdup(nm->reg_path) : xasprintf("%s/.%s", nm->dir, nm->o.id);
	char *tmp = check_text(base, nm->text, nm->mode, err);
	int rc = tmp ? 0 : -1;

	if (tmp && nm->reg_path && rename(tmp, nm->reg_path) < 0) {
		err_set(err, ERR_IO, "%s: %s", nm->reg_path, strerror(errno));
		rc = -1;
	}
	if (tmp && !nm->reg_path)
		fputs(nm->text, stdout);
	if (tmp && (rc < 0 || !nm->reg_path))
		unlink(tmp);
	free(tmp);
	free(base);
	return rc;
}

/* The steps after the inputs (cli_model_internal.h); invariant 1 of cli_model.c. */
int cli_model__write(struct nm *nm, struct err *err)
{
	if (pick_paths(nm, err) < 0 || refuse_existing(nm, err) < 0)
		return -1;
	if (nm->reg_path == NULL)
		paste_text(nm);
	else if (merge_registry(nm, err) < 0)
		return -1;
	if (write_files(nm, err) < 0 || install_text(nm, err) < 0) {
		undo_files(nm);
		return -1;
	}
	return 0;
}

/* ---- what to do next ---- */

/* A request's params: each bound input's default, or a sample string. Caller owns. */
static struct json_object *sample_params(const struct nm *nm)
{
	struct json_object *p = json_object_new_object();

	for (size_t i = 0; i < nm->nin; i++)
		if (nm->in[i].bound && !nm->in[i].random) /* random: the gateway draws it */
			json_put(p, nm->in[i].name,
				 nm->in[i].def ? default_json(&nm->in[i]) : json_str("hello"));
	return p;
}

/* s quoted for a POSIX shell. */
static void shell_quote(struct buf *b, const char *s)
{
	buf_putc(b, '\'');
	for (; *s; s++)
		buf_puts(b, *s == '\'' ? "'\\''" : (char[]){*s, '\0'});
	buf_putc(b, '\'');
}

/* " --param 'NAME=VALUE'" for each member of params, into b. */
static void param_flags(struct buf *b, struct json_object *params)
{
	json_object_object_foreach(params, k, v) {
		char *text = json_object_is_type(v, json_type_string)
				     ? xstrdup(json_object_get_string(v))
				     : json_dumps(v);
		char *kv = xasprintf("%s=%s", k, text);

		buf_puts(b, " --param ");
		shell_quote(b, kv);
		free(kv);
		free(text);
	}
}

/* What was done, and the commands to go on with (with sample params). */
void cli_model__print_next(const struct nm *nm, FILE *out)
{
	struct json_object *body = json_object_new_object(), *params = sample_params(nm);
	struct buf fn, reg, flags, curl;
	char *json;

	buf_init(&fn, NM_MAX_TEXT);
	buf_init(&reg, NM_MAX_TEXT);
	buf_init(&flags, NM_MAX_TEXT);
	buf_init(&curl, NM_MAX_TEXT);
	shell_quote(&fn, nm->o.function);
	if (nm->reg_path)
		shell_quote(&reg, nm->reg_path);
	else
		buf_puts(&reg, "REGISTRY");
	param_flags(&flags, params);
	json_put(body, "function", json_str(nm->o.function));
	json_put(body, "quality", json_str(nm->quality));
	json_put(body, "params", params);
	json = json_dumps(body);
	shell_quote(&curl, json);
	fprintf(out, "wrote %s (node class %s) and %s\n", nm->cfg_path, nm->cls, nm->wf_path);
	if (nm->reg_path)
		fprintf(out, "added model %s%s%s%s to %s\n%s: ok\n", nm->o.id,
			nm->fn ? "" : " and function \"", nm->fn ? "" : nm->o.function,
			nm->fn ? "" : "\"", nm->reg_path, nm->reg_path);
	else
		fprintf(out, "the entries above load as a registry in %s (fnrun check: ok)\n",
			nm->dir);
	fprintf(out, "\nNext:\n  fnrun check --deep %s\n"
		"      starts the model server once and checks the workflow against it\n"
		"  a running `fnrun serve --config %s` reloads the file when it is saved;\n"
		"      else tell it: kill -HUP <its pid>\n"
		"  fnrun dry-run %s --quality %s --config %s%s\n"
		"      prints the workflow the model server will get\n"
		"  curl -s localhost:8180/api/generate -d %s\n",
		reg.data, reg.data, fn.data, nm->quality, reg.data, flags.data ? flags.data : "",
		curl.data);
	free(json);
	json_object_put(body);
	buf_cleanup(&fn);
	buf_cleanup(&reg);
	buf_cleanup(&flags);
	buf_cleanup(&curl);
}

