/*
 * registry.c - the loaded registry: loading, lookups, routing, request
 * param validation, binding params into workflows, the public catalog.
 *
 * registry_parse.c builds the struct from YAML and collects every error;
 * this file sorts them into file order, and either returns a complete
 * registry or frees the partial one (so a failed reload leaves the caller's
 * old registry untouched). A complete registry starts with one reference;
 * the last registry_unref() frees it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <strings.h>
#include <arpa/inet.h>

#include "json.h"
#include "buf.h"
#include "registry.h"
#include "registry_internal.h"
#include "util.h"

static const char *const phase_names[REG_PHASE_COUNT] = {
	"queued", "preparing", "running", "finishing", "done", "failed", "cancelled",
};
static const char *const type_names[] = {"string", "int", "float", "bool", "enum"};
static const char *const output_names[] = {"image", "audio", "video"};

/* ---- loading ---- */

static int error_cmp(const void *a, const void *b)
{
	const struct registry__error *x = a, *y = b;

	if (x->line != y->line)
		return x->line < y->line ? -1 : 1;
	if (x->col != y->col)
		return x->col < y->col ? -1 : 1;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static void errors_free(struct registry__errors *e)
{
	for (size_t i = 0; i < e->n; i++)
		free(e->v[i].msg);
	free(e->v);
}

/* Each function's enabled models per quality, in file order. */
static void build_routes(struct registry *r)
{
	for (size_t i = 0; i < r->nfunctions; i++) {
		struct reg_function *f = &r->functions[i];

		f->routes = xcalloc(f->nqualities, sizeof *f->routes);
		for (size_t q = 0; q < f->nqualities; q++)
			f->routes[q].models = xcalloc(r->nmodels + 1, sizeof *f->routes[q].models);
	}
	for (size_t i = 0; i < r->nmodels; i++) {
		const struct reg_model *m = &r->models[i];
		struct reg_route *rt;

		if (!m->enabled || m->quality == REG_QUALITY_AUTO)
			continue;
		rt = &m->function->routes[m->quality];
		rt->models[rt->n++] = m;
	}
}

static void destroy(struct registry *r);

/* Parses path into a new registry; on errors frees it and returns NULL. */
static struct registry *load(const char *path, struct registry__errors *errs)
{
	struct registry *r = xcalloc(1, sizeof *r);

	if (registry__parse(r, path, errs) > 0) {
		qsort(errs->v, errs->n, sizeof *errs->v, error_cmp);
		destroy(r);
		return NULL;
	}
	build_routes(r);
	atomic_init(&r->refs, 1);
	return r;
}

struct registry *registry_load(const char *path, struct err *err)
{
	struct registry__errors errs = {0};
	struct registry *r = load(path, &errs);

	if (r == NULL)
		err_set(err, errs.v[0].code, "%s", errs.v[0].msg);
	errors_free(&errs);
	return r;
}

int registry_check(const char *path, FILE *out)
{
	struct registry__errors errs = {0};
	struct registry *r = load(path, &errs);
	int n = (int)errs.n;

	for (size_t i = 0; out != NULL && i < errs.n; i++)
		fprintf(out, "%s\n", errs.v[i].msg);
	errors_free(&errs);
	registry_free(r);
	return n;
}

static void strv_free(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

static void function_cleanup(struct reg_function *f)
{
	for (size_t i = 0; i < f->nparams; i++) {
		struct reg_param *p = &f->params[i];

		free(p->name);
		json_object_put(p->def);
		strv_free(p->options, p->noptions);
		free(p->description);
	}
	for (size_t i = 0; i < f->nqualities; i++) {
		free(f->qualities[i].key);
		free(f->qualities[i].label);
		free(f->qualities[i].description);
		if (f->routes != NULL)
			free(f->routes[i].models);
	}
	for (int i = 0; i < REG_PHASE_COUNT; i++)
		free(f->messages[i]);
	free(f->params);
	free(f->qualities);
	free(f->routes);
	json_object_put(f->calibration.params);
	free(f->name);
	free(f->description);
}

static void model_cleanup(struct reg_model *m)
{
	for (size_t i = 0; i < m->nbinds; i++) {
		free(m->binds[i].param);
		free(m->binds[i].node);
		free(m->binds[i].input);
	}
	free(m->binds);
	strv_free(m->command, m->ncommand);
	strv_free(m->env, m->nenv);
	strv_free(m->urls, m->nurls);
	json_object_put(m->workflow);
	free(m->workflow_path);
	free(m->version);
	free(m->rollout);
	free(m->image);
	free(m->url);
	free(m->id);
}

/* Frees r and everything it owns, whatever its count. */
static void destroy(struct registry *r)
{
	struct reg_server *s;

	for (size_t i = 0; i < r->nfunctions; i++)
		function_cleanup(&r->functions[i]);
	for (size_t i = 0; i < r->nmodels; i++)
		model_cleanup(&r->models[i]);
	s = &r->server;
	free(s->listen);
	free(s->data);
	free(s->docker_socket);
	free(s->models_dir);
	free(s->cache_dir);
	free(s->store);
	free(s->node);
	for (size_t i = 0; i < s->nhosts; i++)
		free(s->hosts[i]);
	free(s->hosts);
	for (size_t i = 0; i < s->nkey_quotas; i++)
		free(s->key_quotas[i].name);
	free(s->key_quotas);
	free(r->functions);
	free(r->models);
	free(r->path);
	free(r);
}

struct registry *registry_ref(struct registry *r)
{
	if (r != NULL)
		atomic_fetch_add(&r->refs, 1);
	return r;
}

void registry_unref(struct registry *r)
{
	if (r != NULL && atomic_fetch_sub(&r->refs, 1) == 1)
		destroy(r);
}

void registry_free(struct registry *r)
{
	registry_unref(r);
}

/* ---- lookups ---- */

const struct reg_function *registry_function(const struct registry *r, const char *name)
{
	for (size_t i = 0; name != NULL && i < r->nfunctions; i++)
		if (strcmp(r->functions[i].name, name) == 0)
			return &r->functions[i];
	return NULL;
}

const struct reg_model *registry_model(const struct registry *r, const char *id)
{
	for (size_t i = 0; id != NULL && i < r->nmodels; i++)
		if (strcmp(r->models[i].id, id) == 0)
			return &r->models[i];
	return NULL;
}

size_t registry_function_count(const struct registry *r)
{
	return r->nfunctions;
}

const struct reg_function *registry_function_at(const struct registry *r, size_t i)
{
	return i < r->nfunctions ? &r->functions[i] : NULL;
}

size_t registry_model_count(const struct registry *r)
{
	return r->nmodels;
}

const struct reg_model *registry_model_at(const struct registry *r, size_t i)
{
	return i < r->nmodels ? &r->models[i] : NULL;
}

const struct reg_server *registry_server(const struct registry *r)
{
	return &r->server;
}

int registry_quality_index(const struct reg_function *f, const char *key)
{
	if (key == NULL)
		return f->nqualities ? f->default_quality : -1;
	for (size_t i = 0; i < f->nqualities; i++)
		if (strcmp(f->qualities[i].key, key) == 0)
			return (int)i;
	return -1;
}

int registry_quality_lower(const struct reg_function *f, int q)
{
	return q > 0 && (size_t)q < f->nqualities ? q - 1 : -1;
}

size_t registry_route(const struct registry *r, const struct reg_function *f, int q,
		      const struct reg_model *const **models)
{
	*models = NULL;
	if (q < 0 || (size_t)q >= f->nqualities || f->routes == NULL)
		return 0;
	*models = f->routes[q].models;
	return f->routes[q].n;
}

const char *registry_message(const struct reg_function *f, int phase)
{
	return phase >= 0 && phase < REG_PHASE_COUNT ? f->messages[phase] : NULL;
}

const char *registry_phase_name(int phase)
{
	return phase >= 0 && phase < REG_PHASE_COUNT ? phase_names[phase] : NULL;
}

size_t registry__utf8_len(const char *s)
{
	size_t n = 0;

	for (; *s; s++)
		n += ((unsigned char)*s & 0xc0) != 0x80;
	return n;
}

/* ---- params ---- */

static void fmt_bound(const struct reg_param *p, char *buf, size_t size, int64_t i, double d)
{
	if (p->type == REG_INT)
		snprintf(buf, size, "%lld", (long long)i);
	else
		snprintf(buf, size, "%g", d);
}

void registry__describe(const struct reg_param *p, char *buf, size_t size)
{
	size_t n;

	if (p->type == REG_INT || p->type == REG_FLOAT) {
		const char *what = p->type == REG_INT ? "an integer" : "a number";
		char lo[40], hi[40];

		fmt_bound(p, lo, sizeof lo, p->min_int, p->min_num);
		fmt_bound(p, hi, sizeof hi, p->max_int, p->max_num);
		if (p->has_min && p->has_max)
			snprintf(buf, size, "must be %s from %s to %s", what, lo, hi);
		else if (p->has_min || p->has_max)
			snprintf(buf, size, "must be %s of at %s %s", what,
				 p->has_min ? "least" : "most", p->has_min ? lo : hi);
		else
			snprintf(buf, size, "must be %s", what);
	} else if (p->type == REG_STRING && p->max_length > 0) {
		snprintf(buf, size, "must be a string of at most %lld characters",
			 (long long)p->max_length);
	} else if (p->type == REG_STRING) {
		snprintf(buf, size, "must be a string");
	} else if (p->type == REG_BOOL) {
		snprintf(buf, size, "must be true or false");
	} else {
		n = (size_t)snprintf(buf, size, "must be one of");
		for (size_t i = 0; i < p->noptions && n < size; i++)
			n += (size_t)snprintf(buf + n, size - n, "%s %s", i ? "," : "",
					      p->options[i]);
	}
}

/*
 * Each checker returns the value to store (a new object) or NULL when v
 * does not fit p. Indexed by enum reg_type.
 */
static struct json_object *check_int(const struct reg_param *p, struct json_object *v)
{
	int64_t x = json_object_get_int64(v);
	/* json-c keeps integers above INT64_MAX as uint64 (ComfyUI seeds). */
	int big = x == INT64_MAX && json_object_get_uint64(v) > (uint64_t)INT64_MAX;

	if (!json_object_is_type(v, json_type_int))
		return NULL;
	if ((p->has_min && !big && x < p->min_int) || (p->has_max && (big || x > p->max_int)))
		return NULL;
	return big ? json_object_new_uint64(json_object_get_uint64(v)) : json_object_new_int64(x);
}

static struct json_object *check_float(const struct reg_param *p, struct json_object *v)
{
	double x = json_object_get_double(v);

	if (!json_object_is_type(v, json_type_double) && !json_object_is_type(v, json_type_int))
		return NULL;
	if ((p->has_min && x < p->min_num) || (p->has_max && x > p->max_num))
		return NULL;
	return json_object_new_double(x);
}

static struct json_object *check_string(const struct reg_param *p, struct json_object *v)
{
	const char *s = json_object_get_string(v);

	if (!json_object_is_type(v, json_type_string))
		return NULL;
	if (p->max_length > 0 && registry__utf8_len(s) > (size_t)p->max_length)
		return NULL;
	return json_object_new_string_len(s, json_object_get_string_len(v));
}

static struct json_object *check_bool(const struct reg_param *p, struct json_object *v)
{
	if (!json_object_is_type(v, json_type_boolean))
		return NULL;
	return json_object_new_boolean(json_object_get_boolean(v));
}

static struct json_object *check_enum(const struct reg_param *p, struct json_object *v)
{
	const char *s = json_object_get_string(v);

	if (!json_object_is_type(v, json_type_string))
		return NULL;
	for (size_t i = 0; i < p->noptions; i++)
		if (strcmp(p->options[i], s) == 0)
			return json_object_new_string(s);
	return NULL;
}

static struct json_object *(*const checkers[])(const struct reg_param *, struct json_object *) = {
	check_string, check_int, check_float, check_bool, check_enum,
};

static const struct reg_param *find_param(const struct reg_function *f, const char *name)
{
	for (size_t i = 0; i < f->nparams; i++)
		if (strcmp(f->params[i].name, name) == 0)
			return &f->params[i];
	return NULL;
}

static int unknown_param(const struct reg_function *f, const char *name, struct err *err)
{
	char list[200];
	size_t n = 0;

	list[0] = '\0';
	for (size_t i = 0; i < f->nparams && n < sizeof list; i++)
		n += (size_t)snprintf(list + n, sizeof list - n, "%s%s", i ? ", " : "",
				      f->params[i].name);
	err_set(err, ERR_INVALID, "params.%s: unknown param of %s; allowed: %s", name, f->name,
		f->nparams ? list : "none");
	return -1;
}

/* The value of p for the output: checked v, the default, or NULL (absent). */
static int param_value(const struct reg_param *p, struct json_object *v,
		       struct json_object **out, struct err *err)
{
	char rule[200];
	uint64_t seed;

	*out = NULL;
	if (v != NULL && !json_object_is_type(v, json_type_null)) {
		*out = checkers[p->type](p, v);
		if (*out != NULL)
			return 0;
		registry__describe(p, rule, sizeof rule);
		err_set(err, ERR_INVALID, "params.%s: %s", p->name, rule);
		return -1;
	}
	if (p->required) {
		err_set(err, ERR_INVALID, "params.%s: is required", p->name);
		return -1;
	}
	if (p->random) {
		util_random(&seed, sizeof seed);
		*out = json_object_new_int64((int64_t)(seed & ((1ULL << 53) - 1)));
	} else if (p->def != NULL && json_object_deep_copy(p->def, out, NULL) < 0) {
		err_set(err, ERR_INTERNAL, "cannot copy the default of params.%s", p->name);
		return -1;
	}
	return 0;
}

int registry_validate_params(const struct reg_function *f, const struct json_object *params,
			     struct json_object **out, struct err *err)
{
	struct json_object *res;

	*out = NULL;
	if (params != NULL && !json_object_is_type(params, json_type_object)) {
		err_set(err, ERR_INVALID, "params: must be an object");
		return -1;
	}
	if (params != NULL) {
		json_object_object_foreach((struct json_object *)params, k, unused) {
			(void)unused;
			if (find_param(f, k) == NULL)
				return unknown_param(f, k, err);
		}
	}
	res = json_object_new_object();
	for (size_t i = 0; i < f->nparams; i++) {
		struct json_object *v;

		if (param_value(&f->params[i], json_get(params, f->params[i].name), &v, err) < 0) {
			json_object_put(res);
			return -1;
		}
		if (v != NULL)
			json_object_object_add(res, f->params[i].name, v);
	}
	*out = res;
	return 0;
}

/* ---- binding ---- */

int registry_bind(const struct reg_model *m, const struct json_object *validated,
		  struct json_object **workflow, struct err *err)
{
	struct json_object *wf = NULL;

	*workflow = NULL;
	if (!json_object_is_type(validated, json_type_object)) {
		err_set(err, ERR_INVALID, "params: must be an object");
		return -1;
	}
	if (json_object_deep_copy(m->workflow, &wf, NULL) < 0) {
		err_set(err, ERR_INTERNAL, "cannot copy the workflow of model %s", m->id);
		return -1;
	}
	for (size_t i = 0; i < m->nbinds; i++) {
		const struct reg_bind *b = &m->binds[i];
		struct json_object *v = json_get(validated, b->param), *copy = NULL;
		struct json_object *inputs = json_get_obj(json_get(wf, b->node), "inputs");

		if (v == NULL)
			continue; /* not given and no default: the template's value stays */
		if (inputs == NULL || json_object_deep_copy(v, &copy, NULL) < 0) {
			json_object_put(wf);
			err_set(err, ERR_INTERNAL, "cannot bind %s into model %s", b->param, m->id);
			return -1;
		}
		json_object_object_add(inputs, b->input, copy);
	}
	*workflow = wf;
	return 0;
}

/* ---- catalog ---- */

static struct json_object *catalog_param(const struct reg_param *p)
{
	struct json_object *o = json_object_new_object(), *opts;

	json_put(o, "type", json_str(type_names[p->type]));
	json_put(o, "required", json_object_new_boolean(p->required));
	if (p->def != NULL) {
		struct json_object *def = NULL;

		json_object_deep_copy(p->def, &def, NULL);
		json_put(o, "default", def);
	}
	if (p->random)
		json_put(o, "random", json_object_new_boolean(1));
	if (p->has_min)
		json_put(o, "min", p->type == REG_INT ? json_int(p->min_int)
						      : json_object_new_double(p->min_num));
	if (p->has_max)
		json_put(o, "max", p->type == REG_INT ? json_int(p->max_int)
						      : json_object_new_double(p->max_num));
	if (p->max_length > 0)
		json_put(o, "max_length", json_int(p->max_length));
	if (p->type == REG_ENUM) {
		opts = json_object_new_array();
		for (size_t i = 0; i < p->noptions; i++)
			json_object_array_add(opts, json_str(p->options[i]));
		json_put(o, "options", opts);
	}
	if (p->description != NULL)
		json_put(o, "description", json_str(p->description));
	return o;
}

static struct json_object *catalog_quality(const struct reg_function *f, size_t i)
{
	const struct reg_quality *q = &f->qualities[i];
	struct json_object *o = json_object_new_object(), *t = json_object_new_array();

	json_object_array_add(t, json_int(q->typical_lo_s));
	json_object_array_add(t, json_int(q->typical_hi_s));
	json_put(o, "key", json_str(q->key));
	json_put(o, "label", json_str(q->label));
	json_put(o, "typical_seconds", t);
	if (q->description != NULL)
		json_put(o, "description", json_str(q->description));
	json_put(o, "available", json_object_new_boolean(f->routes && f->routes[i].n > 0));
	return o;
}

static struct json_object *catalog_function(const struct reg_function *f)
{
	struct json_object *o = json_object_new_object();
	struct json_object *params = json_object_new_object(), *qs = json_object_new_array();

	json_put(o, "name", json_str(f->name));
	if (f->description != NULL)
		json_put(o, "description", json_str(f->description));
	if (f->output >= 0)
		json_put(o, "output", json_str(output_names[f->output]));
	for (size_t i = 0; i < f->nparams; i++)
		json_put(params, f->params[i].name, catalog_param(&f->params[i]));
	for (size_t i = 0; i < f->nqualities; i++)
		json_object_array_add(qs, catalog_quality(f, i));
	json_put(o, "params", params);
	json_put(o, "qualities", qs);
	json_put(o, "default_quality", json_str(f->qualities[f->default_quality].key));
	return o;
}

struct json_object *registry_catalog(const struct registry *r)
{
	struct json_object *o = json_object_new_object(), *fs = json_object_new_array();

	for (size_t i = 0; i < r->nfunctions; i++)
		json_object_array_add(fs, catalog_function(&r->functions[i]));
	json_put(o, "functions", fs);
	return o;
}

char *registry_expand(const char *arg, int port, const char *bindir, const char *configdir,
		      const char *outdir)
{
	struct buf b;

	buf_init(&b, 1 << 16);
	while (*arg) {
		if (strncmp(arg, "{port}", 6) == 0) {
			buf_printf(&b, "%d", port);
			arg += 6;
		} else if (strncmp(arg, "{bindir}", 8) == 0) {
			buf_puts(&b, bindir);
			arg += 8;
		} else if (strncmp(arg, "{configdir}", 11) == 0) {
			buf_puts(&b, configdir);
			arg += 11;
		} else if (strncmp(arg, "{outdir}", 8) == 0) {
			buf_puts(&b, outdir ? outdir : "");
			arg += 8;
		} else {
			buf_putc(&b, *arg++);
		}
	}
	return buf_steal(&b);
}

int registry_host_ok(const struct registry *r, const char *host, size_t len)
{
	char name[256];
	unsigned char addr[16];

	if (len == 0 || len >= sizeof name)
		return 0;
	memcpy(name, host, len);
	name[len] = '\0';
	if (name[0] == '[' && name[len - 1] == ']') {
		name[len - 1] = '\0';
		return inet_pton(AF_INET6, name + 1, addr) == 1;
	}
	if (inet_pton(AF_INET, name, addr) == 1 || strcasecmp(name, "localhost") == 0)
		return 1;
	for (size_t i = 0; r && i < r->server.nhosts; i++)
		if (strcasecmp(name, r->server.hosts[i]) == 0)
			return 1;
	return 0;
}

struct reg_quota registry_quota(const struct registry *r, const char *name)
{
	struct reg_quota q = r->server.quota;

	for (size_t i = 0; name && i < r->server.nkey_quotas; i++) {
		const struct reg_key_quota *k = &r->server.key_quotas[i];
		if (strcmp(k->name, name) != 0)
			continue;
		if (k->q.running >= 0)
			q.running = k->q.running;
		if (k->q.per_minute >= 0)
			q.per_minute = k->q.per_minute;
		if (k->q.gpu_seconds_per_day >= 0)
			q.gpu_seconds_per_day = k->q.gpu_seconds_per_day;
	}
	return q;
}

char *registry_default_path(void)
{
	char *dir = util_exe_dir(), *path = xasprintf("%s/../examples/registry.yaml", dir);
	char *real;

	free(dir);
	real = access(path, R_OK) == 0 ? realpath(path, NULL) : NULL;
	free(path);
	return real ? real : xstrdup("examples/registry.yaml");
}
