/*
 * registry_parse.c - builds a struct registry from YAML, checking every key:
 * the walk of the file (registry__parse()), the functions section with its
 * params, messages and qualities, and the server section. Models, binds and
 * fallbacks are in registry_model.c; the key tables, the value readers and
 * the error list they share are in registry_yaml.c (registry_internal.h).
 *
 * Each YAML map is described by a table of keys (name, type, required,
 * min/max, default, field offset); registry__parse_map() applies a table to one map
 * node: it reports unknown, duplicate and missing keys and parses the simple
 * values in place. Keys whose meaning depends on other keys (a model's
 * function, quality, workflow, bind; a param's default) are KEY_LATER in
 * the table and parsed by their owner afterwards, through registry__map_get().
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
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "json.h"
#include "log.h"
#include "registry.h"
#include "registry_internal.h"
#include "util.h"

#define REG_MAX_FILE (4 << 20)      /* registry YAML, bytes */
#define WEEK_S 604800               /* seconds */

/* ---- functions: params ---- */

static const char *const type_names[] = {"string", "int", "float", "bool", "enum", NULL};
static const char *const output_names[] = {"image", "audio", "video", NULL};
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
	yaml_node_t *v = registry__map_get(c, n, key);
	size_t old;

	if (v == NULL || ok)
		return v != NULL;
	old = registry__path_push(c, key);
	registry__perr(c, v, "applies only to %s params; this param's type is %s", types, type_names[p->type]);
	registry__path_pop(c, old);
	return 0;
}

static int read_bound(struct pctx *c, yaml_node_t *v, const struct reg_param *p, int64_t *i,
		      double *d)
{
	if (p->type == REG_INT)
		return registry__read_int(c, v, INT64_MIN, INT64_MAX, i);
	if (registry__scalar_num(v, d) == 0)
		return 0;
	registry__perr(c, v, "must be a number");
	return -1;
}

static void param_bounds(struct pctx *c, yaml_node_t *n, struct reg_param *p)
{
	int num = p->type == REG_INT || p->type == REG_FLOAT;
	size_t old;

	if (only_for(c, n, "min", num, "int and float", p)) {
		old = registry__path_push(c, "min");
		p->has_min = read_bound(c, registry__map_get(c, n, "min"), p, &p->min_int, &p->min_num) == 0;
		registry__path_pop(c, old);
	}
	if (only_for(c, n, "max", num, "int and float", p)) {
		old = registry__path_push(c, "max");
		p->has_max = read_bound(c, registry__map_get(c, n, "max"), p, &p->max_int, &p->max_num) == 0;
		registry__path_pop(c, old);
	}
	if (p->has_min && p->has_max &&
	    (p->type == REG_INT ? p->min_int > p->max_int : p->min_num > p->max_num)) {
		old = registry__path_push(c, "max");
		registry__perr(c, registry__map_get(c, n, "max"), "must not be below min");
		registry__path_pop(c, old);
	}
	if (only_for(c, n, "max_length", p->type == REG_STRING, "string", p)) {
		old = registry__path_push(c, "max_length");
		registry__read_int(c, registry__map_get(c, n, "max_length"), 1, 100000000, &p->max_length);
		registry__path_pop(c, old);
	}
}

static void param_options(struct pctx *c, yaml_node_t *n, struct reg_param *p)
{
	yaml_node_t *v;
	size_t old;

	if (!only_for(c, n, "options", p->type == REG_ENUM, "enum", p) && p->type != REG_ENUM)
		return;
	old = registry__path_push(c, "options");
	v = registry__map_get(c, n, "options");
	if (v == NULL)
		registry__perr(c, n,
			       "is required for an enum param; list the allowed values, e.g. [euler, ddim]");
	else if (!registry__is_seq(v) || registry__seq_len(v) == 0)
		registry__perr(c, v, "must be a non-empty list of values, e.g. [euler, ddim]");
	else
		p->options = xcalloc(registry__seq_len(v) + 1, sizeof *p->options);
	for (size_t i = 0; p->options != NULL && i < registry__seq_len(v); i++) {
		yaml_node_t *o = registry__get_node(c, v->data.sequence.items.start[i]);
		size_t o2 = registry__path_push_index(c, i);
		char *s = NULL;

		if (registry__read_str(c, o, &s) < 0) {
			registry__path_pop(c, o2);
			continue;
		}
		for (size_t j = 0; j < p->noptions; j++)
			if (strcmp(p->options[j], s) == 0)
				registry__perr(c, o, "duplicate option \"%s\"", s);
		p->options[p->noptions++] = s;
		registry__path_pop(c, o2);
	}
	registry__path_pop(c, old);
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
	registry__perr(c, v, "%s (the param's own limits)", rule);
	return NULL;
}

static struct json_object *default_string(struct pctx *c, yaml_node_t *v, struct reg_param *p)
{
	const char *s = registry__scalar(v);

	if (s == NULL) {
		registry__perr(c, v, "must be a string");
		return NULL;
	}
	if (p->max_length > 0 && registry__utf8_len(s) > (size_t)p->max_length)
		return bad_default(c, v, p);
	return json_object_new_string(s);
}

static struct json_object *default_int(struct pctx *c, yaml_node_t *v, struct reg_param *p)
{
	const char *s = registry__scalar(v);
	int64_t x;

	if (s != NULL && strcmp(s, "random") == 0) {
		p->random = 1;
		return NULL;
	}
	if (registry__scalar_int(v, &x) < 0) {
		registry__perr(c, v, "must be an integer, or random");
		return NULL;
	}
	if ((p->has_min && x < p->min_int) || (p->has_max && x > p->max_int))
		return bad_default(c, v, p);
	return json_object_new_int64(x);
}

static struct json_object *default_float(struct pctx *c, yaml_node_t *v, struct reg_param *p)
{
	double x;

	if (registry__scalar_num(v, &x) < 0) {
		registry__perr(c, v, "must be a number");
		return NULL;
	}
	if ((p->has_min && x < p->min_num) || (p->has_max && x > p->max_num))
		return bad_default(c, v, p);
	return json_object_new_double(x);
}

static struct json_object *default_bool(struct pctx *c, yaml_node_t *v, struct reg_param *p)
{
	int b;

	return registry__read_bool(c, v, &b) == 0 ? json_object_new_boolean(b) : NULL;
}

static struct json_object *default_enum(struct pctx *c, yaml_node_t *v, struct reg_param *p)
{
	const char *s = registry__scalar(v);

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
	yaml_node_t *v = registry__map_get(c, n, "default");
	size_t old;

	if (v == NULL)
		return;
	old = registry__path_push(c, "default");
	if (p->required)
		registry__perr(c, v, "a required param takes no default; drop one of them");
	else
		p->def = default_readers[p->type](c, v, p);
	registry__path_pop(c, old);
}

static void parse_param(struct pctx *c, yaml_node_t *n, struct reg_param *p)
{
	registry__apply_defaults(param_keys, p);
	registry__parse_map(c, n, param_keys, p);
	if (p->type < 0 || !registry__is_map(n))
		return;
	param_bounds(c, n, p);
	param_options(c, n, p);
	param_default(c, n, p);
}

const struct reg_param *registry__find_param(const struct reg_function *f, const char *name)
{
	for (size_t i = 0; i < f->nparams; i++)
		if (strcmp(f->params[i].name, name) == 0)
			return &f->params[i];
	return NULL;
}

static void parse_params(struct pctx *c, yaml_node_t *n, void *obj)
{
	struct reg_function *f = obj;

	if (!registry__is_map(n)) {
		registry__perr(c, n, "must be a map of param name to {type, ...}, e.g. prompt: {type: string}");
		return;
	}
	f->params = xcalloc(registry__map_len(n), sizeof *f->params);
	for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
		yaml_node_t *k = registry__get_node(c, p->key);
		const char *name = registry__read_name(c, k, "_-", "a param name");
		struct reg_param *prm;
		size_t old;

		if (name == NULL)
			continue;
		old = registry__path_push(c, name);
		if (registry__find_param(f, name) != NULL) {
			registry__perr(c, k, "duplicate param; give it once");
		} else {
			prm = &f->params[f->nparams++];
			prm->name = xstrdup(name);
			parse_param(c, registry__get_node(c, p->value), prm);
		}
		registry__path_pop(c, old);
	}
}

/* ---- functions: messages, qualities ---- */

static void parse_messages(struct pctx *c, yaml_node_t *n, void *obj)
{
	struct reg_function *f = obj;
	struct strlist phases = {0};

	for (int i = 0; i < REG_PHASE_COUNT; i++)
		registry__sl_add(&phases, registry_phase_name(i));
	if (!registry__is_map(n)) {
		registry__perr(c, n, "must be a map of phase to text; phases: %s", phases.s);
		return;
	}
	for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
		yaml_node_t *k = registry__get_node(c, p->key);
		const char *name = registry__scalar(k);
		size_t old = registry__path_push(c, name ? name : "?");
		int i = 0;

		while (i < REG_PHASE_COUNT && (name == NULL || strcmp(name, registry_phase_name(i))))
			i++;
		if (i == REG_PHASE_COUNT)
			registry__perr(c, k, "unknown phase; allowed phases: %s", phases.s);
		else if (f->messages[i] != NULL)
			registry__perr(c, k, "duplicate phase; give it once");
		else
			registry__read_str(c, registry__get_node(c, p->value), &f->messages[i]);
		registry__path_pop(c, old);
	}
}

static void parse_typical(struct pctx *c, yaml_node_t *n, void *obj)
{
	struct reg_quality *q = obj;
	int64_t v[2];

	if (!registry__is_seq(n) || registry__seq_len(n) != 2) {
		registry__perr(c, n, "must be [lo, hi] in seconds, e.g. [10, 30]");
		return;
	}
	for (size_t i = 0; i < 2; i++) {
		size_t old = registry__path_push_index(c, i);
		int rc = registry__read_int(c, registry__get_node(c, n->data.sequence.items.start[i]), 0,
					    WEEK_S, &v[i]);

		registry__path_pop(c, old);
		if (rc < 0)
			return;
	}
	if (v[0] > v[1]) {
		registry__perr(c, n, "must be [lo, hi] with lo <= hi");
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

	if (!registry__is_map(n) || registry__map_len(n) == 0) {
		registry__perr(c, n,
			       "must be a map of quality key to {label, typical_seconds}, cheapest first");
		return;
	}
	f->qualities = xcalloc(registry__map_len(n), sizeof *f->qualities);
	for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
		yaml_node_t *k = registry__get_node(c, p->key);
		const char *key = registry__read_name(c, k, "_-", "a quality key");
		struct reg_quality *q;
		size_t old;

		if (key == NULL)
			continue;
		old = registry__path_push(c, key);
		if (strcmp(key, "auto") == 0) {
			registry__perr(c, k,
				       "auto is reserved for models whose tier is measured; pick another key");
		} else if (registry_quality_index(f, key) >= 0) {
			registry__perr(c, k, "duplicate quality; give it once");
		} else {
			q = &f->qualities[f->nqualities++];
			q->key = xstrdup(key);
			registry__apply_defaults(quality_keys, q);
			registry__parse_map(c, registry__get_node(c, p->value), quality_keys, q);
		}
		registry__path_pop(c, old);
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
	{.name = "reduce_quality_on_oom", .type = KEY_BOOL,
	 .off = offsetof(struct reg_function, reduce_quality_on_oom)},
	{.name = "calibration", .type = KEY_LATER},
	{NULL},
};

void registry__quality_keys_list(const struct reg_function *f, struct strlist *l)
{
	for (size_t i = 0; i < f->nqualities; i++)
		registry__sl_add(l, f->qualities[i].key);
}

static void set_default_quality(struct pctx *c, yaml_node_t *n, struct reg_function *f)
{
	yaml_node_t *v = registry__map_get(c, n, "default_quality");
	struct strlist l = {0};
	const char *s;
	size_t old;
	int i;

	/* Without one, the middle of the ladder (the cheaper of two middles). */
	f->default_quality = f->nqualities ? (int)(f->nqualities - 1) / 2 : 0;
	if (v == NULL || f->nqualities == 0)
		return;
	s = registry__scalar(v);
	i = s ? registry_quality_index(f, s) : -1;
	if (i >= 0) {
		f->default_quality = i;
		return;
	}
	registry__quality_keys_list(f, &l);
	old = registry__path_push(c, "default_quality");
	registry__perr(c, v, "must be one of this function's qualities: %s", l.s);
	registry__path_pop(c, old);
}

static void parse_functions(struct pctx *c, yaml_node_t *n)
{
	struct registry *r = c->r;

	if (!registry__is_map(n)) {
		registry__perr(c, n, "must be a map of function name to definition, e.g. "
			   "Create Image: {params: ..., qualities: ...}");
		return;
	}
	r->functions = xcalloc(registry__map_len(n), sizeof *r->functions);
	for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
		yaml_node_t *k = registry__get_node(c, p->key), *v = registry__get_node(c, p->value);
		const char *name = registry__read_name(c, k, NULL, "a function name");
		struct reg_function *f;
		size_t old;

		if (name == NULL)
			continue;
		old = registry__path_push(c, name);
		if (registry_function(r, name) != NULL) {
			registry__perr(c, k, "duplicate function; give it once");
		} else {
			f = &r->functions[r->nfunctions++];
			f->name = xstrdup(name);
			registry__apply_defaults(function_keys, f);
			registry__parse_map(c, v, function_keys, f);
			set_default_quality(c, v, f);
			registry__parse_calibration(c, v, f);
		}
		registry__path_pop(c, old);
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

static const struct key_spec quota_keys[] = {
	{.name = "running", .type = KEY_INT, .min = 0, .max = 1000000,
	 .off = offsetof(struct reg_quota, running)},
	{.name = "per_minute", .type = KEY_INT, .min = 0, .max = 1000000,
	 .off = offsetof(struct reg_quota, per_minute)},
	{.name = "gpu_seconds_per_day", .type = KEY_INT, .min = 0, .max = 86400LL * 64,
	 .off = offsetof(struct reg_quota, gpu_seconds_per_day)},
	{.name = "keys", .type = KEY_LATER},
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
	{.name = "store", .type = KEY_STR, .off = offsetof(struct reg_server, store)},
	{.name = "node", .type = KEY_STR, .off = offsetof(struct reg_server, node)},
	{.name = "lease", .type = KEY_DURATION, .min = 1000, .max = 3600000, .def = 10000,
	 .off = offsetof(struct reg_server, lease_ms)},
	{.name = "limits", .type = KEY_MAP, .sub = limits_keys},
	{.name = "hosts", .type = KEY_LATER},
	{.name = "quotas", .type = KEY_LATER},
	{NULL},
};

#define REG_MAX_HOSTS 32

/* A DNS name: labels of letters, digits and '-', joined by dots; no port. */
static int valid_host_name(const char *s)
{
	size_t label = 0, n = strlen(s);

	if (n == 0 || n > 253)
		return 0;
	for (const char *p = s; *p; p++) {
		if (*p == '.') {
			if (label == 0)
				return 0;
			label = 0;
		} else if (isalnum((unsigned char)*p) || (*p == '-' && label > 0)) {
			if (++label > 63)
				return 0;
		} else {
			return 0;
		}
	}
	return label > 0;
}

/* server.hosts: the names, besides IP literals and localhost, that the API answers to. */
static void parse_hosts(struct pctx *c, yaml_node_t *v)
{
	struct reg_server *s = &c->r->server;
	size_t n = registry__is_seq(v) ? registry__seq_len(v) : 0, old;

	old = registry__path_push(c, "hosts");
	if (n == 0 || n > REG_MAX_HOSTS) {
		registry__perr(c, v, "must be a list of 1 to %d host names the API is reached by, "
			       "e.g. [gpu-box.lan, fnrun.example.com]", REG_MAX_HOSTS);
		registry__path_pop(c, old);
		return;
	}
	s->hosts = xcalloc(n, sizeof *s->hosts);
	for (size_t i = 0; i < n; i++) {
		yaml_node_t *a = registry__get_node(c, v->data.sequence.items.start[i]);
		const char *name = registry__scalar(a);
		size_t o = registry__path_push_index(c, i);

		if (name == NULL || !valid_host_name(name))
			registry__perr(c, a, "must be a host name without a port (letters, digits, '-' "
				       "and dots), e.g. gpu-box.lan");
		else
			s->hosts[s->nhosts++] = xstrdup(name);
		registry__path_pop(c, o);
	}
	registry__path_pop(c, old);
}

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

/*
 * server.quotas: {running, per_minute, gpu_seconds_per_day} for every key,
 * and keys: {NAME: {the same}} overriding them for one key.
 */
static void parse_quotas(struct pctx *c, yaml_node_t *v)
{
	struct reg_server *s = &c->r->server;
	yaml_node_t *keys;
	size_t old = registry__path_push(c, "quotas"), o, n;

	registry__parse_map(c, v, quota_keys, &s->quota);
	keys = registry__is_map(v) ? registry__map_get(c, v, "keys") : NULL;
	if (keys == NULL) {
		registry__path_pop(c, old);
		return;
	}
	o = registry__path_push(c, "keys");
	if (!registry__is_map(keys) ||
	    (n = (size_t)(keys->data.mapping.pairs.top - keys->data.mapping.pairs.start)) == 0) {
		registry__perr(c, keys, "must map key names to their quotas, e.g. "
			       "keys: {alice: {running: 10}}");
		registry__path_pop(c, o);
		registry__path_pop(c, old);
		return;
	}
	s->key_quotas = xcalloc(n, sizeof *s->key_quotas);
	for (yaml_node_pair_t *p = keys->data.mapping.pairs.start; p < keys->data.mapping.pairs.top;
	     p++) {
		const char *name = registry__scalar(registry__get_node(c, p->key));
		struct reg_key_quota *kq = &s->key_quotas[s->nkey_quotas];
		size_t k = registry__path_push(c, name ? name : "?");

		kq->q = (struct reg_quota){-1, -1, -1};
		registry__parse_map(c, registry__get_node(c, p->value), quota_keys, &kq->q);
		if (registry__map_get(c, registry__get_node(c, p->value), "keys") != NULL)
			registry__perr(c, registry__get_node(c, p->value),
				       "keys: only server.quotas has keys");
		if (name) {
			kq->name = xstrdup(name);
			s->nkey_quotas++;
		}
		registry__path_pop(c, k);
	}
	registry__path_pop(c, o);
	registry__path_pop(c, old);
}

static int store_url_ok(const char *s)
{
	return strncmp(s, "postgres://", 11) == 0 || strncmp(s, "postgresql://", 13) == 0;
}

int registry_node_name_ok(const char *s)
{
	size_t n = strlen(s);

	return n >= 1 && n <= 64 && strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
					    "0123456789._-") == n;
}

static void parse_server(struct pctx *c, yaml_node_t *n)
{
	yaml_node_t *v;
	size_t old;

	registry__parse_map(c, n, server_keys, &c->r->server);
	if ((v = registry__map_get(c, n, "hosts")) != NULL)
		parse_hosts(c, v);
	if ((v = registry__map_get(c, n, "quotas")) != NULL)
		parse_quotas(c, v);
	v = registry__map_get(c, n, "store");
	if (v != NULL && registry__scalar(v) != NULL && !store_url_ok(registry__scalar(v))) {
		old = registry__path_push(c, "store");
		registry__perr(c, v, "must be a PostgreSQL URL, postgres://USER@HOST[:PORT]/DB or "
			       "postgresql:///DB?host=/socket/dir (without it, the store is DATA/fnrun.db)");
		registry__path_pop(c, old);
	}
	v = registry__map_get(c, n, "node");
	if (v != NULL && registry__scalar(v) != NULL && !registry_node_name_ok(registry__scalar(v))) {
		old = registry__path_push(c, "node");
		registry__perr(c, v, "must be 1 to 64 letters, digits, '.', '_' or '-'");
		registry__path_pop(c, old);
	}
	v = registry__map_get(c, n, "listen");
	if (v == NULL || registry__scalar(v) == NULL || valid_listen(registry__scalar(v)))
		return;
	old = registry__path_push(c, "listen");
	registry__perr(c, v, "must be HOST:PORT with a port from 0 to 65535, e.g. 127.0.0.1:8180");
	registry__path_pop(c, old);
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
		{"models", registry__parse_models},
		{"server", parse_server},
	};

	registry__parse_map(c, root, root_keys, NULL);
	for (size_t i = 0; i < sizeof sections / sizeof sections[0]; i++) {
		yaml_node_t *v = registry__map_get(c, root, sections[i].key);
		size_t old;

		if (v == NULL)
			continue;
		old = registry__path_push(c, sections[i].key);
		sections[i].parse(c, v);
		registry__path_pop(c, old);
	}
	registry__parse_fallbacks(c);
	registry__check_auto(c);
}

/* Parses the file into c->doc. Returns 0, or -1 after recording the error. */
static int load_yaml(struct pctx *c)
{
	yaml_parser_t parser;
	size_t len = 0;
	char *data = registry__read_file(c->file, REG_MAX_FILE, &len);
	int ok;

	if (data == NULL) {
		registry__add_error(c->errs, ERR_IO, 0, 0,
				    xasprintf("%s: cannot read: %s", c->file,
					      errno == EFBIG ? "larger than 4MB" : strerror(errno)));
		return -1;
	}
	yaml_parser_initialize(&parser);
	yaml_parser_set_input_string(&parser, (const unsigned char *)data, len);
	ok = yaml_parser_load(&parser, &c->doc);
	if (!ok) {
		size_t line = parser.problem_mark.line + 1, col = parser.problem_mark.column + 1;

		registry__add_error(c->errs, ERR_INVALID, line, col,
				    xasprintf("%s:%zu:%zu: YAML syntax error: %s%s%s; fix the YAML", c->file,
					      line, col, parser.problem ? parser.problem : "unreadable",
					      parser.context ? " " : "", parser.context ? parser.context : ""));
	} else if (yaml_document_get_root_node(&c->doc) == NULL) {
		registry__add_error(c->errs, ERR_INVALID, 1, 1,
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
	registry__apply_defaults(server_keys, &r->server);
	c.dir = slash ? xstrndup(path, slash == path ? 1 : (size_t)(slash - path)) : xstrdup(".");
	if (load_yaml(&c) == 0) {
		walk(&c, yaml_document_get_root_node(&c.doc));
		yaml_document_delete(&c.doc);
	}
	free(c.model_nodes);
	free(c.dir);
	return errs->n;
}
