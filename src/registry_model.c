/*
 * registry_model.c - the models section of the registry: each model's
 * function and quality, its runtime keys (command, image, url or urls,
 * env), its workflow file, the binds of params into it and the params
 * it leaves unbound on purpose (`unbound:`, read by `fnrun check --deep`);
 * then the fallbacks, which need every model: resolved by id, kept within one
 * function, and checked for cycles (registry.h, invariants 1-3, 5).
 *
 * Model server URLs go through url_parse_model_server() (url.c), the parser
 * the runtimes use too, so `fnrun check` accepts exactly what they can
 * reach.
 *
 * Like the rest of the parse, errors never stop the walk; a model that
 * failed is still recorded under its id. The key tables and value readers
 * are in registry_yaml.c (registry_internal.h).
 */
#include <ctype.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "json.h"
#include "registry.h"
#include "registry_internal.h"
#include "url.h"
#include "util.h"

#define REG_MAX_WORKFLOW (16 << 20) /* one workflow JSON, bytes */

static const char *const runtime_names[] = {"process", "docker", "external", NULL};

static const struct key_spec resources_keys[] = {
	{.name = "gpu_memory", .type = KEY_SIZE, .min = 0, .max = SIZE_MAX_BYTES,
	 .off = offsetof(struct reg_model, gpu_memory)},
	{.name = "priority", .type = KEY_INT, .min = 0, .max = 1000, .def = 100,
	 .off = offsetof(struct reg_model, priority)},
	{NULL},
};

static const struct key_spec free_keys[] = {
	{.name = "unload_models", .type = KEY_BOOL,
	 .off = offsetof(struct reg_model, free_unload_models)},
	{.name = "free_memory", .type = KEY_BOOL, .off = offsetof(struct reg_model, free_memory)},
	{NULL},
};

/*
 * `free_after_job: true`, ComfyUI's {"unload_models": true, "free_memory":
 * true}, or a map of the two; the runner sends it in POST /free after each
 * job its model server ran.
 */
static void parse_free_after_job(struct pctx *c, yaml_node_t *v, void *obj)
{
	struct reg_model *m = obj;
	int on = 0;

	if (registry__is_map(v)) {
		registry__parse_map(c, v, free_keys, m);
		return;
	}
	if (v->type != YAML_SCALAR_NODE) {
		registry__perr(c, v, "must be true, false or a map {unload_models: BOOL, "
			       "free_memory: BOOL}");
		return;
	}
	if (registry__read_bool(c, v, &on) == 0)
		m->free_unload_models = m->free_memory = on;
}

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
	{.name = "urls", .type = KEY_LATER},
	{.name = "env", .type = KEY_LATER},
	{.name = "workflow", .type = KEY_LATER, .required = 1,
	 .help = "give a ComfyUI API-format workflow JSON, relative to this file"},
	{.name = "bind", .type = KEY_LATER},
	{.name = "unbound", .type = KEY_LATER},
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
	{.name = "version", .type = KEY_STR, .off = offsetof(struct reg_model, version)},
	{.name = "rollout", .type = KEY_LATER},
	{.name = "free_after_job", .type = KEY_FN, .fn = parse_free_after_job},
	{.name = "prewarm", .type = KEY_BOOL, .off = offsetof(struct reg_model, prewarm)},
	{.name = "target_wait", .type = KEY_DURATION, .min = 0, .max = 86400000,
	 .off = offsetof(struct reg_model, target_wait_ms)},
	{NULL},
};

static void model_function(struct pctx *c, yaml_node_t *n, struct reg_model *m)
{
	yaml_node_t *v = registry__map_get(c, n, "function");
	const char *s = registry__scalar(v);
	struct strlist l = {0};
	size_t old;

	if (v == NULL)
		return;
	m->function = s ? registry_function(c->r, s) : NULL;
	if (m->function == NULL) {
		for (size_t i = 0; i < c->r->nfunctions; i++)
			registry__sl_add(&l, c->r->functions[i].name);
		old = registry__path_push(c, "function");
		registry__perr(c, v, "unknown function \"%s\"; defined functions: %s", s ? s : "",
			       l.len ? l.s : "none");
		registry__path_pop(c, old);
		return;
	}
	v = registry__map_get(c, n, "quality");
	s = registry__scalar(v);
	if (v == NULL)
		return;
	m->quality = s ? registry_quality_index(m->function, s) : -1;
	if (s != NULL && strcmp(s, "auto") == 0)
		m->quality = REG_QUALITY_AUTO;
	else if (m->quality < 0) {
		registry__quality_keys_list(m->function, &l);
		old = registry__path_push(c, "quality");
		registry__perr(c, v, "unknown quality \"%s\" of function %s; allowed: %s, auto", s ? s : "",
			       m->function->name, l.s);
		registry__path_pop(c, old);
	}
}

/* Reports a {name} placeholder other than {port}, {bindir} and {configdir}. */
static void check_placeholders(struct pctx *c, yaml_node_t *v, const char *arg,
			       const struct reg_model *m)
{
	for (const char *p = strchr(arg, '{'); p != NULL; p = strchr(p + 1, '{')) {
		size_t n = strspn(p + 1, "abcdefghijklmnopqrstuvwxyz_");

		if (n == 0 || p[1 + n] != '}')
			continue; /* not a placeholder: literal braces */
		if ((n == 4 && strncmp(p + 1, "port", 4) == 0) ||
		    (n == 6 && strncmp(p + 1, "bindir", 6) == 0) ||
		    (n == 9 && strncmp(p + 1, "configdir", 9) == 0))
			continue;
		if (n == 6 && strncmp(p + 1, "outdir", 6) == 0) {
			if (m->runtime != REG_RUNTIME_PROCESS)
				registry__perr(c, v, "{outdir} applies only to runtime process (a "
					       "directory fnrun shares with the model server)");
			continue;
		}
		registry__perr(c, v, "unknown placeholder {%.*s}; allowed: {port}, {bindir}, "
			       "{configdir}, {outdir}", (int)n, p + 1);
	}
}

static void parse_command(struct pctx *c, yaml_node_t *v, struct reg_model *m)
{
	int has_port = 0, bad = 0;

	if (!registry__is_seq(v) || registry__seq_len(v) == 0) {
		registry__perr(c, v,
			       "must be a list of arguments, e.g. [bin/fnrun-worker, --port, \"{port}\"]");
		return;
	}
	m->command = xcalloc(registry__seq_len(v) + 1, sizeof *m->command);
	for (size_t i = 0; i < registry__seq_len(v); i++) {
		yaml_node_t *a = registry__get_node(c, v->data.sequence.items.start[i]);
		size_t old = registry__path_push_index(c, i);
		const char *s = registry__scalar(a);

		bad |= s == NULL;
		if (s == NULL)
			registry__perr(c, a, "must be a string; quote placeholders, e.g. \"{port}\"");
		else
			check_placeholders(c, a, s, m);
		has_port |= s != NULL && strstr(s, "{port}") != NULL;
		m->command_outdir |= s != NULL && strstr(s, "{outdir}") != NULL;
		m->command[m->ncommand++] = xstrdup(s ? s : "");
		registry__path_pop(c, old);
	}
	/* A bad argument was reported already; it may be an unquoted {port}. */
	if (m->runtime == REG_RUNTIME_PROCESS && !has_port && !bad)
		registry__perr(c, v, "must pass {port} to the model server, e.g. "
			   "[bin/fnrun-worker, --model, sim, --port, \"{port}\"]");
}

/*
 * One model server URL at node v, checked by url_parse_model_server();
 * reports at v and returns -1, or fills *u.
 */
static int read_url(struct pctx *c, yaml_node_t *v, struct url *u)
{
	struct err e = {0};

	if (v->type != YAML_SCALAR_NODE) {
		registry__perr(c, v, "must be a string: an http:// URL with a host and an optional "
			       "port, e.g. http://127.0.0.1:8188");
		return -1;
	}
	if (url_parse_model_server(registry__scalar(v), u, &e) == 0)
		return 0;
	registry__perr(c, v, "%s", e.msg);
	return -1;
}

/* Appends base to m->urls, whose array has room. */
static void add_url(struct reg_model *m, const char *base)
{
	m->urls[m->nurls++] = xstrdup(base);
	if (m->url == NULL)
		m->url = xstrdup(base);
}

static void parse_url(struct pctx *c, yaml_node_t *v, struct reg_model *m)
{
	struct url u;

	if (read_url(c, v, &u) < 0)
		return;
	m->urls = xcalloc(1, sizeof *m->urls);
	add_url(m, u.base);
}

/* The index in m->urls of base, or -1. */
static long url_index(const struct reg_model *m, const char *base)
{
	for (size_t i = 0; i < m->nurls; i++)
		if (strcmp(m->urls[i], base) == 0)
			return (long)i;
	return -1;
}

static void parse_urls(struct pctx *c, yaml_node_t *v, struct reg_model *m)
{
	size_t n = registry__is_seq(v) ? registry__seq_len(v) : 0;

	if (m->urls != NULL)
		return; /* url was given too; external_urls() reports it */
	if (n == 0 || n > REG_MAX_URLS) {
		registry__perr(c, v, "must be a list of 1 to %d model server URLs, one runner each, e.g. "
			       "[http://10.0.0.5:8188, http://10.0.0.6:8188]", REG_MAX_URLS);
		return;
	}
	m->urls = xcalloc(n, sizeof *m->urls);
	for (size_t i = 0; i < n; i++) {
		yaml_node_t *a = registry__get_node(c, v->data.sequence.items.start[i]);
		size_t old = registry__path_push_index(c, i);
		struct url u;
		long dup;

		if (read_url(c, a, &u) == 0) {
			dup = url_index(m, u.base);
			if (dup >= 0)
				registry__perr(c, a, "%s is already urls[%ld]; list each model server once",
					       u.base, dup);
			else
				add_url(m, u.base);
		}
		registry__path_pop(c, old);
	}
}

static void parse_env(struct pctx *c, yaml_node_t *v, struct reg_model *m)
{
	if (!registry__is_map(v)) {
		registry__perr(c, v, "must be a map of variable name to value, e.g. {HF_HOME: /models}");
		return;
	}
	m->env = xcalloc(registry__map_len(v) + 1, sizeof *m->env);
	for (yaml_node_pair_t *p = v->data.mapping.pairs.start; p < v->data.mapping.pairs.top; p++) {
		yaml_node_t *k = registry__get_node(c, p->key), *val = registry__get_node(c, p->value);
		const char *name = registry__read_name(c, k, "_", "a variable name");
		size_t old, len;

		if (name == NULL)
			continue;
		old = registry__path_push(c, name);
		len = strlen(name);
		for (size_t i = 0; i < m->nenv; i++)
			if (strncmp(m->env[i], name, len) == 0 && m->env[i][len] == '=')
				registry__perr(c, k, "duplicate variable; give it once");
		if (isdigit((unsigned char)name[0]))
			registry__perr(c, k, "a variable name must not start with a digit");
		else if (val->type != YAML_SCALAR_NODE)
			registry__perr(c, val, "must be a string");
		else
			m->env[m->nenv++] = xasprintf("%s=%s", name,
						      registry__scalar(val) ? registry__scalar(val) : "");
		registry__path_pop(c, old);
	}
}

static void parse_image(struct pctx *c, yaml_node_t *v, struct reg_model *m)
{
	registry__read_str(c, v, &m->image);
}

#define RT_PROCESS (1u << REG_RUNTIME_PROCESS)
#define RT_DOCKER (1u << REG_RUNTIME_DOCKER)
#define RT_EXTERNAL (1u << REG_RUNTIME_EXTERNAL)

/*
 * Which runtimes take each key, and which need it (bits of 1 << runtime).
 * url and urls are not marked required: external_urls() wants exactly one
 * of the two.
 */
static const struct {
	const char *key;
	unsigned allowed, required;
	const char *help;
	void (*parse)(struct pctx *c, yaml_node_t *v, struct reg_model *m);
} runtime_keys[] = {
	{"command", RT_PROCESS | RT_DOCKER, RT_PROCESS,
	 "give the model server's argv, e.g. [bin/fnrun-worker, --port, \"{port}\"]", parse_command},
	{"image", RT_DOCKER, RT_DOCKER, "give the model server's image, e.g. studio/flux-schnell:latest",
	 parse_image},
	{"url", RT_EXTERNAL, 0, NULL, parse_url},
	{"urls", RT_EXTERNAL, 0, NULL, parse_urls},
	{"env", RT_PROCESS | RT_DOCKER, 0, NULL, parse_env},
};

static void runtime_key(struct pctx *c, yaml_node_t *n, struct reg_model *m, size_t i)
{
	yaml_node_t *v = registry__map_get(c, n, runtime_keys[i].key);
	unsigned bit = 1u << m->runtime;
	struct strlist l = {0};
	size_t old = registry__path_push(c, runtime_keys[i].key);

	for (int j = 0; runtime_names[j] != NULL; j++)
		if (runtime_keys[i].allowed & (1u << j))
			registry__sl_add(&l, runtime_names[j]);
	if (v == NULL && (runtime_keys[i].required & bit))
		registry__perr(c, n, "is required for runtime %s; %s", runtime_names[m->runtime],
			       runtime_keys[i].help);
	else if (v != NULL && !(runtime_keys[i].allowed & bit))
		registry__perr(c, v, "applies only to runtime %s; this model's runtime is %s", l.s,
			       runtime_names[m->runtime]);
	else if (v != NULL)
		runtime_keys[i].parse(c, v, m);
	registry__path_pop(c, old);
}

/*
 * External models: exactly one of url and urls (runtime_key() parsed them,
 * url first; given both, urls is read only when url failed). One runner
 * runs per URL, so max_instances defaults to the URL count and may not
 * exceed it.
 */
static void external_urls(struct pctx *c, yaml_node_t *n, struct reg_model *m)
{
	yaml_node_t *url = registry__map_get(c, n, "url"), *urls = registry__map_get(c, n, "urls");
	yaml_node_t *max = registry__map_get(c, n, "max_instances");
	size_t old;

	if (m->runtime != REG_RUNTIME_EXTERNAL)
		return;
	if (url == NULL && urls == NULL) {
		old = registry__path_push(c, "url");
		registry__perr(c, n, "is required for runtime external; give the model server's URL, "
			       "e.g. url: http://127.0.0.1:8188, or several as urls: [...]");
		registry__path_pop(c, old);
	} else if (url != NULL && urls != NULL) {
		old = registry__path_push(c, "urls");
		registry__perr(c, urls, "give either url (one model server) or urls (several), not both");
		registry__path_pop(c, old);
	}
	if (m->nurls == 0)
		return; /* reported above or by the URL itself */
	if (max == NULL) {
		m->max_instances = (int64_t)m->nurls;
	} else if (m->max_instances > (int64_t)m->nurls) {
		old = registry__path_push(c, "max_instances");
		registry__perr(c, max, "is %lld, but an external model runs one runner per URL; give at "
			       "most %zu or add URLs", (long long)m->max_instances, m->nurls);
		registry__path_pop(c, old);
	}
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
	char *data = registry__read_file(m->workflow_path, REG_MAX_WORKFLOW, &len);

	if (data == NULL) {
		registry__perr(c, v,
			       "cannot read %s: %s; give a path relative to the registry file's directory",
			       rel, errno == EFBIG ? "larger than 16MB" : strerror(errno));
		return;
	}
	if (json_parse(data, len, JSON_MAX_DEPTH, &o, &e) < 0) {
		registry__perr(c, v, "%s is not JSON (%s); export the workflow in ComfyUI's API format", rel,
			       e.msg);
	} else if ((problem = workflow_problem(o, buf, sizeof buf)) != NULL) {
		registry__perr(c, v, "%s is not a ComfyUI API-format workflow: %s", rel, problem);
		json_object_put(o);
	} else {
		m->workflow = o;
	}
	free(data);
}

static void model_workflow(struct pctx *c, yaml_node_t *n, struct reg_model *m)
{
	yaml_node_t *v = registry__map_get(c, n, "workflow");
	char *rel = NULL;
	size_t old;

	if (v == NULL)
		return;
	old = registry__path_push(c, "workflow");
	if (registry__read_str(c, v, &rel) == 0) {
		m->workflow_path = rel[0] == '/' ? xstrdup(rel) : xasprintf("%s/%s", c->dir, rel);
		load_workflow(c, v, m, rel);
	}
	free(rel);
	registry__path_pop(c, old);
}

/* Checks one "NODE.inputs.NAME" path v for param and adds the bind. */
static void add_bind(struct pctx *c, yaml_node_t *v, struct reg_model *m, const char *param)
{
	const char *s = registry__scalar(v);
	const char *mid = s ? strstr(s, ".inputs.") : NULL;
	struct strlist l = {0};
	struct reg_bind *b;
	char *node;

	if (mid == NULL || mid == s || mid[8] == '\0' || strchr(mid + 8, '.') != NULL) {
		registry__perr(c, v, "must be a workflow path NODE.inputs.NAME, e.g. \"6.inputs.text\"");
		return;
	}
	node = xstrndup(s, (size_t)(mid - s));
	if (m->workflow != NULL && json_get_obj(json_get(m->workflow, node), "inputs") == NULL) {
		json_object_object_foreach(m->workflow, id, unused) {
			(void)unused;
			registry__sl_add(&l, id);
		}
		registry__perr(c, v, "the workflow has no node \"%s\" with inputs; its nodes: %s", node, l.s);
	}
	for (size_t i = 0; i < m->nbinds; i++)
		if (strcmp(m->binds[i].node, node) == 0 && strcmp(m->binds[i].input, mid + 8) == 0)
			registry__perr(c, v, "%s is already bound to param %s; bind each input once", s,
				       m->binds[i].param);
	m->binds = xrealloc(m->binds, (m->nbinds + 1) * sizeof *m->binds);
	b = &m->binds[m->nbinds++];
	b->param = xstrdup(param);
	b->node = node;
	b->input = xstrdup(mid + 8);
}

static void bind_param(struct pctx *c, yaml_node_t *k, yaml_node_t *v, struct reg_model *m)
{
	const char *name = registry__scalar(k);
	struct strlist l = {0};

	if (name == NULL) {
		registry__perr(c, k, "must name a param of the function");
		return;
	}
	if (m->function != NULL && registry__find_param(m->function, name) == NULL) {
		for (size_t i = 0; i < m->function->nparams; i++)
			registry__sl_add(&l, m->function->params[i].name);
		registry__perr(c, k, "unknown param \"%s\" of function %s; its params: %s", name,
			       m->function->name, l.len ? l.s : "none");
	}
	if (!registry__is_seq(v)) {
		add_bind(c, v, m, name);
		return;
	}
	for (size_t i = 0; i < registry__seq_len(v); i++) {
		size_t old = registry__path_push_index(c, i);

		add_bind(c, registry__get_node(c, v->data.sequence.items.start[i]), m, name);
		registry__path_pop(c, old);
	}
}

static void model_binds(struct pctx *c, yaml_node_t *n, struct reg_model *m)
{
	yaml_node_t *v = registry__map_get(c, n, "bind");
	size_t old;

	if (v == NULL)
		return;
	old = registry__path_push(c, "bind");
	if (!registry__is_map(v))
		registry__perr(c, v,
			       "must be a map of param to workflow path, e.g. {prompt: \"6.inputs.text\"}");
	for (yaml_node_pair_t *p = registry__is_map(v) ? v->data.mapping.pairs.start : NULL;
	     p != NULL && p < v->data.mapping.pairs.top; p++) {
		yaml_node_t *k = registry__get_node(c, p->key);
		size_t o2 = registry__path_push(c, registry__scalar(k) ? registry__scalar(k) : "?");

		bind_param(c, k, registry__get_node(c, p->value), m);
		registry__path_pop(c, o2);
	}
	registry__path_pop(c, old);
}

/* 1 when m binds param somewhere. */
static int is_bound(const struct reg_model *m, const char *param)
{
	for (size_t i = 0; i < m->nbinds; i++)
		if (strcmp(m->binds[i].param, param) == 0)
			return 1;
	return 0;
}

/* The text of item i of list n, or "" when it is not a scalar. Borrowed. */
static const char *item_text(struct pctx *c, const yaml_node_t *n, size_t i)
{
	const char *s = registry__scalar(registry__get_node(c, n->data.sequence.items.start[i]));

	return s ? s : "";
}

/* Item i of `unbound:` list n: a param of m's function, listed once, not bound. */
static void unbound_name(struct pctx *c, yaml_node_t *n, size_t i, struct reg_model *m)
{
	yaml_node_t *v = registry__get_node(c, n->data.sequence.items.start[i]);
	const char *s = registry__scalar(v);
	struct strlist l = {0};

	if (s == NULL) {
		registry__perr(c, v, "must name a param of the function");
		return;
	}
	for (size_t j = 0; j < i; j++) {
		if (strcmp(s, item_text(c, n, j)) == 0) {
			registry__perr(c, v, "duplicate param; list it once");
			return;
		}
	}
	if (registry__find_param(m->function, s) == NULL) {
		for (size_t j = 0; j < m->function->nparams; j++)
			registry__sl_add(&l, m->function->params[j].name);
		registry__perr(c, v, "unknown param \"%s\" of function %s; its params: %s", s,
			       m->function->name, l.len ? l.s : "none");
	} else if (is_bound(m, s)) {
		registry__perr(c, v, "param %s is bound (bind.%s); list under unbound only params "
			       "the model leaves unused", s, s);
	}
}

/*
 * `unbound: [param, ...]`: params of the function this model leaves unused
 * on purpose. `fnrun check --deep` reports any other param the model does
 * not bind; nothing else reads the list.
 */
static void model_unbound(struct pctx *c, yaml_node_t *n, struct reg_model *m)
{
	yaml_node_t *v = registry__map_get(c, n, "unbound");
	size_t old;

	if (v == NULL || m->function == NULL)
		return;
	old = registry__path_push(c, "unbound");
	if (!registry__is_seq(v))
		registry__perr(c, v, "must be a list of params the model leaves unused, e.g. [seed]");
	for (size_t i = 0; registry__is_seq(v) && i < registry__seq_len(v); i++) {
		size_t o2 = registry__path_push_index(c, i);

		unbound_name(c, v, i, m);
		registry__path_pop(c, o2);
	}
	registry__path_pop(c, old);
}

static void parse_model(struct pctx *c, yaml_node_t *n, struct reg_model *m)
{
	size_t old;

	registry__apply_defaults(model_keys, m);
	registry__parse_map(c, n, model_keys, m);
	if (!registry__is_map(n))
		return;
	model_function(c, n, m);
	m->weight_set = registry__map_get(c, n, "weight") != NULL;
	for (size_t i = 0; i < sizeof runtime_keys / sizeof runtime_keys[0]; i++)
		runtime_key(c, n, m, i);
	external_urls(c, n, m);
	model_workflow(c, n, m);
	model_binds(c, n, m);
	model_unbound(c, n, m);
	if (m->min_instances > m->max_instances) {
		old = registry__path_push(c, "min_instances");
		registry__perr(c, registry__map_get(c, n, "min_instances"),
			       "must not exceed max_instances (%lld)", (long long)m->max_instances);
		registry__path_pop(c, old);
	}
}

void registry__parse_models(struct pctx *c, yaml_node_t *n)
{
	struct registry *r = c->r;

	if (!registry__is_map(n)) {
		registry__perr(c, n, "must be a map of model id to definition");
		return;
	}
	r->models = xcalloc(registry__map_len(n), sizeof *r->models);
	c->model_nodes = xcalloc(registry__map_len(n), sizeof *c->model_nodes);
	for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
		yaml_node_t *k = registry__get_node(c, p->key), *v = registry__get_node(c, p->value);
		const char *id = registry__read_name(c, k, "_-.", "a model id");
		struct reg_model *m;
		size_t old;

		if (id == NULL)
			continue;
		old = registry__path_push(c, id);
		if (registry_model(r, id) != NULL) {
			registry__perr(c, k, "duplicate model; give it once");
		} else {
			c->model_nodes[r->nmodels] = v;
			m = &r->models[r->nmodels++];
			m->id = xstrdup(id);
			parse_model(c, v, m);
		}
		registry__path_pop(c, old);
	}
}

/* ---- fallbacks ---- */

static void resolve_fallback(struct pctx *c, yaml_node_t *v, struct reg_model *m)
{
	const char *s = registry__scalar(v);
	const struct reg_model *t = s ? registry_model(c->r, s) : NULL;

	if (t == NULL)
		registry__perr(c, v, "unknown model \"%s\"; name another model of function %s", s ? s : "",
			       m->function ? m->function->name : "?");
	else if (t == m)
		registry__perr(c, v, "a model cannot fall back to itself");
	else if (m->function != NULL && t->function != m->function)
		registry__perr(c, v,
			       "model %s serves function %s; a fallback must serve the same function (%s)",
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
	registry__perr(c, v, "fallback chain %s is a cycle; a chain must end at a model without fallback",
		       chain);
}

void registry__parse_fallbacks(struct pctx *c)
{
	struct registry *r = c->r;

	for (int pass = 0; pass < 2; pass++) {
		for (size_t i = 0; i < r->nmodels; i++) {
			yaml_node_t *v = registry__map_get(c, c->model_nodes[i], "fallback");
			size_t old;

			if (v == NULL)
				continue;
			old = registry__path_push(c, "models");
			registry__path_push(c, r->models[i].id);
			registry__path_push(c, "fallback");
			if (pass == 0)
				resolve_fallback(c, v, &r->models[i]);
			else
				check_cycle(c, v, &r->models[i]);
			registry__path_pop(c, old);
		}
	}
	for (size_t i = 0; i < r->nmodels; i++) {
		yaml_node_t *v = registry__map_get(c, c->model_nodes[i], "rollout");
		size_t old;

		if (v == NULL)
			continue;
		old = registry__path_push(c, "models");
		registry__path_push(c, r->models[i].id);
		registry__path_push(c, "rollout");
		registry__parse_rollout(c, v, &r->models[i]);
		registry__path_pop(c, old);
	}
}
