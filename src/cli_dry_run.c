/*
 * cli_dry_run.c - `fnrun dry-run` (cli_model.h): the workflow each model
 * that could run a job would get, printed without a server.
 *
 * dry-run asks api_generate_parse(), the code behind POST /api/generate,
 * to validate the request (the --param values converted to the catalog's
 * types as `fnrun submit` converts them), then binds the validated params
 * into each candidate model's workflow with registry_bind(), as the
 * scheduler does before POST /prompt. The candidates are the quality's
 * enabled models in file order, then their fallback chains, each model
 * once. Nothing is written; the workflows go to stdout, errors to stderr.
 *
 * It shares new-model's flag parser and JSON printer
 * (cli_model_internal.h).
 */
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api.h"
#include "buf.h"
#include "cli.h"
#include "cli_model.h"
#include "cli_model_internal.h"
#include "json.h"
#include "registry.h"
#include "util.h"

static const char dry_run_usage[] =
	"usage: fnrun dry-run FUNCTION [--quality Q] [--param NAME=VALUE]... [--config FILE]\n"
	"  validates the params as POST /api/generate does, then prints for each model that\n"
	"  could run the job (the quality's models, then their fallbacks) the workflow it\n"
	"  would get as the prompt of POST /prompt\n"
	"  --config FILE   the registry (default: examples/registry.yaml beside the binary)\n";

struct dr_opts {
	const char *function, *quality, *config;
	struct strv params; /* --param NAME=VALUE */
};

static const struct flag dr_flags[] = {
	{"quality", offsetof(struct dr_opts, quality), 0},
	{"param", offsetof(struct dr_opts, params), 1},
	{"config", offsetof(struct dr_opts, config), 0},
	{NULL, 0, 0},
};

/* Indexed by enum reg_runtime. */
static const char *const runtime_names[] = {"process", "docker", "external"};

/*
 * The request as POST /api/generate gets it, each --param converted to its
 * param's type as `fnrun submit` converts it, through api_generate_parse().
 * Fills *g (free with api_generate_cleanup()).
 */
static int dr_request(const struct registry *reg, const struct dr_opts *o, struct api_generate *g,
		      struct err *err)
{
	struct json_object *cat = registry_catalog(reg), *body = json_object_new_object();
	struct json_object *params = json_object_new_object();
	const struct json_object *fn = cli_catalog_function(cat, o->function);
	char *text;
	int rc = 0;

	for (size_t i = 0; fn && rc == 0 && i < o->params.n; i++)
		rc = cli_param_convert(fn, o->params.v[i], params, err);
	json_put(body, "function", json_str(o->function));
	if (o->quality)
		json_put(body, "quality", json_str(o->quality));
	json_put(body, "params", params);
	text = json_dumps(body);
	if (rc == 0)
		rc = api_generate_parse(reg, text, strlen(text),
					(int)registry_server(reg)->max_json_depth, g, err);
	free(text);
	json_object_put(body);
	json_object_put(cat);
	return rc;
}

/*
 * The models that could run a job of f at quality q, in the order they
 * would be tried: the tier's enabled models in file order, then each one's
 * fallback chain. from[i] is the model whose fallback out[i] is, or NULL.
 * out and from hold registry_model_count(r) entries. Returns the count.
 */
static size_t dr_candidates(const struct registry *r, const struct reg_function *f, int q,
			    const struct reg_model **out, const struct reg_model **from)
{
	const struct reg_model *const *tier;
	size_t nt = registry_route(r, f, q, &tier), n = 0, max = registry_model_count(r);

	for (size_t i = 0; i < nt; i++, n++) {
		out[n] = tier[i];
		from[n] = NULL;
	}
	for (size_t i = 0; i < nt; i++) {
		const struct reg_model *prev = tier[i], *m = prev->fallback;

		for (size_t hops = 0; m != NULL && hops < max; hops++, prev = m, m = m->fallback) {
			size_t k = 0;

			while (k < n && out[k] != m)
				k++;
			if (k < n || !m->enabled)
				continue;
			out[n] = m;
			from[n++] = prev;
		}
	}
	return n;
}

/* The comment lines above the workflows: the request, and any value drawn at random. */
static void dr_summary(const struct api_generate *g, size_t n)
{
	const struct reg_quality *q = &g->fn->qualities[g->quality];
	char *params = json_dumps(g->params);

	printf("# %s at quality %s (%s): %zu model%s could run it, in this order\n# params: %s\n",
	       g->fn->name, q->key, q->label, n, n == 1 ? "" : "s", params);
	for (size_t i = 0; i < g->fn->nparams; i++) {
		const struct reg_param *p = &g->fn->params[i];
		struct json_object *v = json_get(g->params, p->name);

		long long x = (long long)json_object_get_int64(v);

		if (!p->random || v == NULL || json_get(g->sent, p->name) != NULL)
			continue;
		printf("# %s: %lld, drawn at random (--param %s=%lld draws the same)\n", p->name, x,
		       p->name, x);
	}
	free(params);
}

static int dr_print(const struct registry *reg, const struct api_generate *g, struct err *err)
{
	size_t max = registry_model_count(reg), n;
	const struct reg_model **ms = xcalloc(max + 1, sizeof *ms);
	const struct reg_model **from = xcalloc(max + 1, sizeof *from);
	struct buf b;
	int rc = 0;

	n = dr_candidates(reg, g->fn, g->quality, ms, from);
	if (n == 0) {
		err_set(err, ERR_UNAVAILABLE, "quality: no model serves %s at %s", g->fn->name,
			g->fn->qualities[g->quality].key);
		rc = -1;
	} else {
		dr_summary(g, n);
	}
	buf_init(&b, 64u << 20);
	for (size_t i = 0; i < n && rc == 0; i++) {
		const struct reg_model *m = ms[i];
		struct json_object *wf = NULL;

		rc = registry_bind(m, g->params, &wf, err);
		buf_reset(&b);
		if (rc == 0)
			cli_model__json_pretty(&b, wf, 0);
		printf("# model %s (quality %s, runtime %s, weight %lld)\n", m->id,
		       m->quality >= 0 ? m->function->qualities[m->quality].key : "auto",
		       runtime_names[m->runtime], (long long)m->weight);
		if (from[i])
			printf("# the fallback of %s\n", from[i]->id);
		if (rc == 0)
			printf("%s\n", b.data);
		json_object_put(wf);
	}
	buf_cleanup(&b);
	free(ms);
	free(from);
	return rc;
}

int cli_dry_run(int argc, char **argv)
{
	struct dr_opts o = {0};
	struct api_generate g = {0};
	struct err err = {0};
	struct registry *reg = NULL;
	char *config;
	int rc = cli_model__flags_parse(argc, argv, dr_flags, &o, &o.function);

	if (rc != 0 || o.function == NULL) {
		if (rc == 0)
			fprintf(stderr, "fnrun dry-run: give the FUNCTION\n");
		fputs(dry_run_usage, rc == 1 ? stdout : stderr);
		free(o.params.v);
		return rc == 1 ? 0 : 2;
	}
	config = o.config ? xstrdup(o.config) : registry_default_path();
	reg = registry_load(config, &err);
	rc = reg && dr_request(reg, &o, &g, &err) == 0 && dr_print(reg, &g, &err) == 0 ? 0 : 1;
	if (rc != 0)
		fprintf(stderr, "fnrun dry-run: %s\n", err.msg);
	api_generate_cleanup(&g);
	registry_unref(reg);
	free(config);
	free(o.params.v);
	return rc;
}
