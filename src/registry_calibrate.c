/*
 * registry_calibrate.c - a function's `calibration:` (registry.h, struct
 * reg_calibration): the request fnrun runs on a model of quality `auto`
 * to measure it, {params: {NAME: VALUE, ...}, runs: 3}. The params are
 * checked as a request's are (registry_validate_params), so a calibration
 * never sends what a user could not. Each run is validated afresh, so a
 * param whose default is `random` (a seed) differs from run to run: a
 * model server that caches (ComfyUI does, by node inputs) must not answer
 * the second run from its cache.
 *
 * Parsed after the function's params; then, once every model is known, a
 * model of quality auto whose function cannot be calibrated (a required
 * param with no calibration value) is reported at its `quality` key.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "registry.h"
#include "registry_internal.h"
#include "util.h"

/* One scalar as the JSON value of param p's type; NULL after reporting. */
static struct json_object *value_of(struct pctx *c, yaml_node_t *v, const struct reg_param *p)
{
	const char *s = registry__scalar(v);
	int64_t i;
	double d;
	int b;

	switch (p->type) {
	case REG_INT:
		if (registry__scalar_int(v, &i) == 0)
			return json_object_new_int64(i);
		registry__perr(c, v, "must be an integer");
		return NULL;
	case REG_FLOAT:
		if (registry__scalar_num(v, &d) == 0)
			return json_object_new_double(d);
		registry__perr(c, v, "must be a number");
		return NULL;
	case REG_BOOL:
		return registry__read_bool(c, v, &b) == 0 ? json_object_new_boolean(b) : NULL;
	default: /* string, enum: the validation below checks the rest */
		if (s != NULL)
			return json_object_new_string(s);
		registry__perr(c, v, "must be a string");
		return NULL;
	}
}

/* The params map into a request object; NULL when a value was reported. */
static struct json_object *read_params(struct pctx *c, yaml_node_t *n, const struct reg_function *f)
{
	struct json_object *o = json_object_new_object();
	int bad = 0;

	for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
		yaml_node_t *k = registry__get_node(c, p->key), *v = registry__get_node(c, p->value);
		const char *name = registry__scalar(k);
		const struct reg_param *rp = name ? registry__find_param(f, name) : NULL;
		struct json_object *x;
		size_t old = registry__path_push(c, name ? name : "?");

		if (rp == NULL) {
			struct strlist l = {0};
			for (size_t i = 0; i < f->nparams; i++)
				registry__sl_add(&l, f->params[i].name);
			registry__perr(c, k, "unknown param; this function's params: %s",
				       l.len ? l.s : "none");
			bad = 1;
		} else if ((x = value_of(c, v, rp)) == NULL) {
			bad = 1;
		} else {
			json_put(o, name, x);
		}
		registry__path_pop(c, old);
	}
	if (bad) {
		json_object_put(o);
		return NULL;
	}
	return o;
}

void registry__parse_calibration(struct pctx *c, yaml_node_t *fnode, struct reg_function *f)
{
	yaml_node_t *n = registry__map_get(c, fnode, "calibration"), *v;
	struct reg_calibration *cal = &f->calibration;
	struct json_object *given = NULL, *valid = NULL;
	struct err e = {0};
	size_t old;

	cal->runs = 3;
	if (n == NULL)
		return;
	old = registry__path_push(c, "calibration");
	cal->given = 1;
	if (!registry__is_map(n)) {
		registry__perr(c, n, "must be a map such as {params: {prompt: a lighthouse at dusk}, "
			       "runs: 3}");
		goto out;
	}
	for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
		yaml_node_t *k = registry__get_node(c, p->key);
		const char *key = registry__scalar(k);

		if (key == NULL || (strcmp(key, "params") != 0 && strcmp(key, "runs") != 0))
			registry__perr(c, k, "unknown key; allowed keys: params, runs");
	}
	if ((v = registry__map_get(c, n, "runs")) != NULL) {
		size_t o2 = registry__path_push(c, "runs");
		registry__read_int(c, v, 1, REG_CALIBRATION_MAX_RUNS, &cal->runs);
		registry__path_pop(c, o2);
	}
	v = registry__map_get(c, n, "params");
	if (v != NULL) {
		size_t o2 = registry__path_push(c, "params");
		if (!registry__is_map(v))
			registry__perr(c, v, "must be a map of param name to value, e.g. "
				       "{prompt: a lighthouse at dusk}");
		else
			given = read_params(c, v, f);
		registry__path_pop(c, o2);
		if (given == NULL)
			goto out;
	}
	/* Checked now as a request; validated again for each run (a fresh random seed). */
	if (registry_validate_params(f, given, &valid, &e) < 0) {
		registry__perr(c, v ? v : n, "%s", e.msg);
		goto out;
	}
	cal->params = given ? given : json_object_new_object();
	given = NULL;
out:
	json_object_put(valid);
	json_object_put(given);
	registry__path_pop(c, old);
}

void registry__check_auto(struct pctx *c)
{
	struct registry *r = c->r;

	for (size_t i = 0; i < r->nmodels; i++) {
		const struct reg_model *m = &r->models[i];
		const struct reg_function *f = m->function;
		yaml_node_t *q;
		size_t old;

		if (m->quality != REG_QUALITY_AUTO || f == NULL || f->calibration.params != NULL ||
		    f->calibration.given)
			continue; /* a given calibration that failed was reported already */
		q = registry__map_get(c, c->model_nodes[i], "quality");
		old = registry__path_push(c, "models");
		registry__path_push(c, m->id);
		registry__path_push(c, "quality");
		for (size_t k = 0; k < f->nparams; k++)
			if (f->params[k].required) {
				registry__perr(c, q, "auto measures the model with a request, and param %s "
					       "is required: give it under functions.%s.calibration.params",
					       f->params[k].name, f->name);
				break;
			}
		registry__path_pop(c, old);
	}
}

struct json_object *registry_calibration_params(const struct reg_function *f)
{
	struct json_object *out = NULL;
	struct err e = {0};

	if (f->calibration.given && f->calibration.params == NULL)
		return NULL; /* reported at load */
	/* Without a calibration: the defaults (registry__check_auto saw no required param). */
	if (registry_validate_params(f, f->calibration.params, &out, &e) < 0)
		return NULL;
	return out;
}
