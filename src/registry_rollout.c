/*
 * registry_rollout.c - a model's `rollout:` rule (registry.h, struct
 * reg_rollout): {baseline: MODEL_ID, max_failure_rate_delta: 0.05,
 * min_jobs: 20, window: 200}. Parsed once every model is known, since the
 * baseline is named by id.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "registry.h"
#include "registry_internal.h"
#include "util.h"

static const char *const rollout_keys[] = {"baseline", "max_failure_rate_delta", "min_jobs",
					   "window"};

static int known(const char *k)
{
	for (size_t i = 0; i < sizeof rollout_keys / sizeof rollout_keys[0]; i++)
		if (strcmp(k, rollout_keys[i]) == 0)
			return 1;
	return 0;
}

/* An integer under key in [lo, hi] into *out (unchanged when absent). */
static void int_key(struct pctx *c, yaml_node_t *n, const char *key, int64_t lo, int64_t hi,
		    int64_t *out)
{
	yaml_node_t *v = registry__map_get(c, n, key);
	size_t old;
	int64_t x;

	if (v == NULL)
		return;
	old = registry__path_push(c, key);
	if (registry__scalar_int(v, &x) < 0 || x < lo || x > hi)
		registry__perr(c, v, "must be an integer from %lld to %lld", (long long)lo,
			       (long long)hi);
	else
		*out = x;
	registry__path_pop(c, old);
}

static void baseline(struct pctx *c, yaml_node_t *n, struct reg_model *m, struct reg_rollout *ro)
{
	yaml_node_t *v = registry__map_get(c, n, "baseline");
	const char *s = registry__scalar(v);
	const struct reg_model *b = s ? registry_model(c->r, s) : NULL;
	size_t old;

	if (v == NULL) {
		registry__perr(c, n, "baseline: is required: the model this one is compared with, "
			       "e.g. baseline: create_image_std_v1");
		return;
	}
	old = registry__path_push(c, "baseline");
	if (b == NULL)
		registry__perr(c, v, "unknown model \"%s\"; name the model this one is compared with",
			       s ? s : "");
	else if (b == m)
		registry__perr(c, v, "a model cannot be its own baseline");
	else if (m->function != NULL && b->function != m->function)
		registry__perr(c, v, "model %s serves function %s; a baseline must serve the same "
			       "function (%s)", b->id, b->function ? b->function->name : "?",
			       m->function->name);
	else
		ro->baseline = b;
	registry__path_pop(c, old);
}

void registry__parse_rollout(struct pctx *c, yaml_node_t *n, struct reg_model *m)
{
	struct reg_rollout *ro;
	yaml_node_t *v;
	size_t old;
	double d;

	if (!registry__is_map(n)) {
		registry__perr(c, n, "must be a map such as {baseline: MODEL_ID, "
			       "max_failure_rate_delta: 0.05, min_jobs: 20, window: 200}");
		return;
	}
	for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
		yaml_node_t *k = registry__get_node(c, p->key);
		const char *name = registry__scalar(k);
		if (name == NULL || !known(name)) {
			old = registry__path_push(c, name ? name : "?");
			registry__perr(c, k, "unknown key; allowed keys: baseline, "
				       "max_failure_rate_delta, min_jobs, window");
			registry__path_pop(c, old);
		}
	}
	ro = xcalloc(1, sizeof *ro);
	ro->max_delta = 0.05;
	ro->min_jobs = 20;
	ro->window = 200;
	baseline(c, n, m, ro);
	if ((v = registry__map_get(c, n, "max_failure_rate_delta")) != NULL) {
		old = registry__path_push(c, "max_failure_rate_delta");
		if (registry__scalar_num(v, &d) < 0 || d < 0 || d > 1)
			registry__perr(c, v, "must be a number from 0 to 1 (a share of jobs: 0.05 is "
				       "5 points)");
		else
			ro->max_delta = d;
		registry__path_pop(c, old);
	}
	int_key(c, n, "min_jobs", 1, 4096, &ro->min_jobs);
	int_key(c, n, "window", 10, 4096, &ro->window);
	if (ro->min_jobs > ro->window) {
		old = registry__path_push(c, "min_jobs");
		registry__perr(c, n, "must not exceed window (%lld)", (long long)ro->window);
		registry__path_pop(c, old);
	}
	free(m->rollout);
	m->rollout = ro;
}
