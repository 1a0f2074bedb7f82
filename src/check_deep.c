/*
 * check_deep.c - `fnrun check --deep FILE` (check_deep.h): registry_check()
 * first (a registry that does not load is reported as it is, and nothing
 * starts), then, for each enabled model, what only its model server knows.
 *
 * Per model: every param of its function is bound, or listed under
 * `unbound:`. A `docker` model is checked against the registry only (a
 * note, not an error). Otherwise its node classes come from its server's
 * GET /object_info (check_deep_server.c: a `process` model's command is
 * checked and its server started once; an `external` model's first URL is
 * asked) and are compared with its workflow and binds (check_deep_nodes.c).
 *
 * Findings are "FILE:LINE:COL: key.path: what is wrong; what is allowed",
 * at the registry key to change (a bind entry, the model, its command,
 * workflow or url); they are collected, then printed in file order. The
 * registry is parsed a second time, with libyaml, for those positions.
 *
 * SIGINT, SIGTERM and SIGHUP are caught while model servers may run: the
 * check stops after the model in hand, whose server is stopped first
 * (check_deep_server.c, invariant 1).
 */
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <curl/curl.h>
#include <yaml.h>

#include "buf.h"
#include "check_deep.h"
#include "check_deep_internal.h"
#include "registry.h"
#include "util.h"

#define DEEP_MAX_FILE (4 << 20) /* bytes of the registry, as registry_parse.c reads it */

static volatile sig_atomic_t interrupted; /* the signal that asked us to stop, or 0 */

static void on_signal(int sig)
{
	interrupted = sig;
}

int check_deep__interrupted(void)
{
	return interrupted;
}

/* ---- findings ---- */

void check_deep__add(struct check_deep *d, const yaml_node_t *at, int note, const char *fmt, ...)
{
	size_t line = at ? at->start_mark.line + 1 : 0, col = at ? at->start_mark.column + 1 : 0;
	char what[2048];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof what, fmt, ap);
	va_end(ap);
	d->v = xrealloc(d->v, (d->n + 1) * sizeof *d->v);
	d->v[d->n] = (struct check_deep__finding){
		line, col, d->n, note,
		at ? xasprintf("%s:%zu:%zu: %s", d->file, line, col, what)
		   : xasprintf("%s: %s", d->file, what)};
	d->n++;
}

static int finding_cmp(const void *a, const void *b)
{
	const struct check_deep__finding *x = a, *y = b;

	if (x->line != y->line)
		return x->line < y->line ? -1 : 1;
	if (x->col != y->col)
		return x->col < y->col ? -1 : 1;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Prints the findings in file order and frees them; returns the errors. */
static int flush(struct check_deep *d, FILE *out)
{
	int errors = 0;

	if (d->n > 0)
		qsort(d->v, d->n, sizeof *d->v, finding_cmp);
	for (size_t i = 0; i < d->n; i++) {
		if (out != NULL)
			fprintf(out, "%s\n", d->v[i].msg);
		errors += !d->v[i].note;
		free(d->v[i].msg);
	}
	free(d->v);
	return errors;
}

/* ---- positions in the registry's YAML ---- */

yaml_node_t *check_deep__node(struct check_deep *d, int i)
{
	return yaml_document_get_node(&d->doc, i);
}

yaml_node_t *check_deep__map(struct check_deep *d, const yaml_node_t *n, const char *key,
			     yaml_node_t **k)
{
	if (n == NULL || n->type != YAML_MAPPING_NODE)
		return NULL;
	for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
		yaml_node_t *kn = check_deep__node(d, p->key);

		if (kn->type != YAML_SCALAR_NODE || strcmp((char *)kn->data.scalar.value, key) != 0)
			continue;
		if (k != NULL)
			*k = kn;
		return check_deep__node(d, p->value);
	}
	return NULL;
}

yaml_node_t *check_deep__seq(struct check_deep *d, const yaml_node_t *n, size_t i)
{
	if (n == NULL || n->type != YAML_SEQUENCE_NODE ||
	    i >= (size_t)(n->data.sequence.items.top - n->data.sequence.items.start))
		return NULL;
	return check_deep__node(d, n->data.sequence.items.start[i]);
}

const char *check_deep__text(const yaml_node_t *n)
{
	return n != NULL && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : "";
}

yaml_node_t *check_deep__model(struct check_deep *d, const char *id, yaml_node_t **k)
{
	yaml_node_t *models = check_deep__map(d, yaml_document_get_root_node(&d->doc), "models", NULL);

	return check_deep__map(d, models, id, k);
}

yaml_node_t *check_deep__model_key(struct check_deep *d, const char *id, const char *key)
{
	yaml_node_t *k = NULL, *m = check_deep__model(d, id, &k);

	if (key != NULL)
		check_deep__map(d, m, key, &k);
	return k;
}

char *check_deep__read_file(const char *path, size_t max, size_t *len)
{
	FILE *f = fopen(path, "rb");
	struct buf b;
	char chunk[16384];
	size_t n;
	int bad = 0;

	if (f == NULL)
		return NULL;
	buf_init(&b, max);
	for (n = 1; !bad && n > 0;) {
		n = fread(chunk, 1, sizeof chunk, f);
		bad = buf_append(&b, chunk, n) < 0;
	}
	bad |= ferror(f);
	fclose(f);
	*len = b.len;
	if (bad || b.data == NULL) {
		buf_cleanup(&b);
		return bad ? NULL : xstrdup("");
	}
	return buf_steal(&b);
}

/* Parses the registry file again into d->doc, for positions. 0 or -1. */
static int load_yaml(struct check_deep *d)
{
	yaml_parser_t parser;
	size_t len = 0;
	char *data = check_deep__read_file(d->file, DEEP_MAX_FILE, &len);
	int ok;

	if (data == NULL)
		return -1;
	yaml_parser_initialize(&parser);
	yaml_parser_set_input_string(&parser, (const unsigned char *)data, len);
	ok = yaml_parser_load(&parser, &d->doc);
	yaml_parser_delete(&parser);
	free(data);
	if (ok && yaml_document_get_root_node(&d->doc) == NULL) {
		yaml_document_delete(&d->doc);
		ok = 0;
	}
	return ok ? 0 : -1;
}

/* ---- params the model leaves unbound ---- */

static int is_bound(const struct reg_model *m, const char *param)
{
	for (size_t i = 0; i < m->nbinds; i++)
		if (strcmp(m->binds[i].param, param) == 0)
			return 1;
	return 0;
}

/* 1 when m lists param under `unbound:`. */
static int listed_unbound(struct check_deep *d, const struct reg_model *m, const char *param)
{
	yaml_node_t *v = check_deep__map(d, check_deep__model(d, m->id, NULL), "unbound", NULL);

	for (size_t i = 0; check_deep__seq(d, v, i) != NULL; i++)
		if (strcmp(check_deep__text(check_deep__seq(d, v, i)), param) == 0)
			return 1;
	return 0;
}

/* Every param of the function is bound, or listed under `unbound:`. */
static void check_unbound(struct check_deep *d, const struct reg_model *m)
{
	for (size_t i = 0; i < m->function->nparams; i++) {
		const char *p = m->function->params[i].name;

		if (is_bound(m, p) || listed_unbound(d, m, p))
			continue;
		check_deep__add(d, check_deep__model_key(d, m->id, NULL), 0,
				"models.%s: param %s of function %s is bound nowhere, so a request's "
				"value for it is ignored; bind it to a node input (bind: {%s: "
				"\"NODE.inputs.NAME\"}), or list it under unbound: [%s] if the model has "
				"no use for it", m->id, p, m->function->name, p, p);
	}
}

/* ---- the walk ---- */

static void check_model(struct check_deep *d, const struct reg_model *m)
{
	struct json_object *info;

	if (!m->enabled)
		return;
	check_unbound(d, m);
	if (m->runtime == REG_RUNTIME_DOCKER) {
		check_deep__add(d, check_deep__model_key(d, m->id, NULL), 1,
				"models.%s: not started (docker): checked against the registry only",
				m->id);
		return;
	}
	info = check_deep__server_info(d, m);
	if (info == NULL)
		return;
	check_deep__nodes(d, m, info);
	json_object_put(info);
}

/* {bindir}: the directory of this binary; {configdir}: the registry's, absolute. */
static void find_dirs(struct check_deep *d)
{
	char buf[PATH_MAX], *slash;

	d->bindir = util_exe_dir();
	slash = strrchr(d->file, '/');
	snprintf(buf, sizeof buf, "%.*s", slash ? (int)(slash - d->file) : 1, slash ? d->file : ".");
	if (slash == d->file)
		snprintf(buf, sizeof buf, "/");
	d->configdir = realpath(buf, NULL);
	if (d->configdir == NULL)
		d->configdir = xstrdup(buf);
}

/* Catches SIGINT, SIGTERM and SIGHUP while servers may run (old: 3 saved actions). */
static void signals_catch(struct sigaction *old)
{
	static const int sigs[] = {SIGINT, SIGTERM, SIGHUP};
	struct sigaction sa = {0};

	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	for (int i = 0; i < 3; i++)
		sigaction(sigs[i], &sa, &old[i]);
}

static void signals_restore(const struct sigaction *old)
{
	static const int sigs[] = {SIGINT, SIGTERM, SIGHUP};

	for (int i = 0; i < 3; i++)
		sigaction(sigs[i], &old[i], NULL);
}

/* The deep checks of every enabled model, into d's findings. */
static void check_models(struct check_deep *d)
{
	struct sigaction old[3];

	curl_global_init(CURL_GLOBAL_DEFAULT);
	signals_catch(old);
	for (size_t i = 0; i < registry_model_count(d->r) && !interrupted; i++)
		check_model(d, registry_model_at(d->r, i));
	if (interrupted)
		check_deep__add(d, NULL, 0, "interrupted by signal %d: the models after this point "
				"were not checked; every model server started was stopped",
				(int)interrupted);
	signals_restore(old);
	curl_global_cleanup();
}

int check_deep(const char *path, FILE *out)
{
	struct check_deep d = {.file = path};
	struct err e = {0};
	int n = registry_check(path, out);

	if (n > 0)
		return n;
	d.r = registry_load(path, &e);
	if (d.r == NULL || load_yaml(&d) < 0) {
		/* The file changed since registry_check() read it. */
		if (out != NULL && d.r == NULL)
			fprintf(out, "%s\n", e.msg);
		else if (out != NULL)
			fprintf(out, "%s: cannot read it again\n", path);
		registry_unref(d.r);
		return 1;
	}
	find_dirs(&d);
	check_models(&d);
	n = flush(&d, out);
	yaml_document_delete(&d.doc);
	registry_unref(d.r);
	free(d.bindir);
	free(d.configdir);
	return n;
}
