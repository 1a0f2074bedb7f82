/*
 * nodeinfo.c - ComfyUI's node class descriptions (nodeinfo.h): one
 * input's spec, the summary of a whole /object_info answer that the docs
 * keep, and the catalog's params filled in from the summaries.
 *
 * Invariants:
 * 1. Pure: no globals, no clock, no I/O; a summary is built on the thread
 *    pool (modelinfo.c) from objects no other thread sees.
 * 2. A summary holds only finite numbers, and strings and lists cut to the
 *    NODEINFO_MAX_* sizes, whatever the answer held: it is stored, and
 *    shown to users through GET /api/functions.
 * 3. nodeinfo_enrich() never changes a field the registry gives, and shows
 *    users no text that names a file, CUDA or a model (safe_text()).
 */
#include <ctype.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "json.h"
#include "nodeinfo.h"
#include "registry.h"
#include "util.h"

/* ---- one input ---- */

int nodeinfo_input(struct json_object *cls, const char *name, struct nodeinfo_input *in)
{
	static const char *const kinds[] = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"};
	struct json_object *input = json_get_obj(cls, "input"), *spec, *first;

	in->required = 1;
	spec = json_get(json_get_obj(input, "required"), name);
	if (spec == NULL) {
		in->required = 0;
		spec = json_get(json_get_obj(input, "optional"), name);
	}
	if (spec == NULL)
		return -1;
	/* [TYPE, {options}] or [[option, ...], {options}]; a bare TYPE is taken too. */
	if (json_object_is_type(spec, json_type_array)) {
		first = json_object_array_get_idx(spec, 0);
		in->opts = json_object_array_get_idx(spec, 1);
	} else {
		first = spec;
		in->opts = NULL;
	}
	in->opts = json_object_is_type(in->opts, json_type_object) ? in->opts : NULL;
	in->options = json_object_is_type(first, json_type_array) ? first
								  : json_get_arr(in->opts, "options");
	in->type = json_object_is_type(first, json_type_array)    ? "COMBO"
		   : json_object_is_type(first, json_type_string) ? json_object_get_string(first)
								  : "?";
	in->kind = NODEINFO_LINK;
	for (int i = 0; i < 5; i++)
		if (strcmp(in->type, kinds[i]) == 0)
			in->kind = i;
	return 0;
}

int nodeinfo_parse(const char *text, size_t len, struct json_object **out, struct err *err)
{
	struct json_tokener *tok = json_tokener_new_ex(NODEINFO_MAX_DEPTH);
	struct json_object *o;

	*out = NULL;
	if (tok == NULL || len > (size_t)INT32_MAX) {
		json_tokener_free(tok);
		err_set(err, ERR_INVALID, "an answer of %zu bytes is too large to read", len);
		return -1;
	}
	o = json_tokener_parse_ex(tok, text, (int)len);
	if (json_tokener_get_error(tok) != json_tokener_success ||
	    !json_object_is_type(o, json_type_object)) {
		err_set(err, ERR_INVALID, "not a JSON object of node classes (%s)",
			o ? "another JSON value" : json_tokener_error_desc(json_tokener_get_error(tok)));
		json_object_put(o);
		json_tokener_free(tok);
		return -1;
	}
	json_tokener_free(tok);
	*out = o;
	return 0;
}

/* ---- the summary ---- */

/* s cut to at most max bytes, at a UTF-8 character boundary. */
static struct json_object *cut_str(const char *s, size_t max)
{
	size_t n = strlen(s);

	if (n <= max)
		return json_str(s);
	n = max;
	while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
		n--;
	return json_object_new_string_len(s, (int)n);
}

/* A copy of a number of the answer when it is finite, or NULL. */
static struct json_object *number_copy(struct json_object *v)
{
	struct json_object *c = NULL;

	if (json_object_is_type(v, json_type_int)) {
		json_object_deep_copy(v, &c, NULL); /* keeps a uint64 exact */
		return c;
	}
	if (json_object_is_type(v, json_type_double) && isfinite(json_object_get_double(v)))
		return json_object_new_double(json_object_get_double(v));
	return NULL;
}

/* A copy of a scalar of the answer (a string cut, a number finite), or NULL. */
static struct json_object *scalar_copy(struct json_object *v)
{
	if (json_object_is_type(v, json_type_string))
		return cut_str(json_object_get_string(v), NODEINFO_MAX_TEXT);
	if (json_object_is_type(v, json_type_boolean))
		return json_object_new_boolean(json_object_get_boolean(v));
	return number_copy(v);
}

/* A COMBO's choices as text, at most NODEINFO_MAX_OPTIONS of them. */
static void put_options(struct json_object *o, struct json_object *options)
{
	struct json_object *a = json_object_new_array();
	size_t n = json_object_array_length(options);

	for (size_t i = 0; i < n && i < NODEINFO_MAX_OPTIONS; i++) {
		struct json_object *v = json_object_array_get_idx(options, i);
		const char *text = json_object_is_type(v, json_type_string)
					   ? json_object_get_string(v)
					   : json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN);
		json_object_array_add(a, cut_str(text, NODEINFO_MAX_TEXT));
	}
	json_put(o, "options", a);
	if (n > NODEINFO_MAX_OPTIONS)
		json_put(o, "options_cut", json_object_new_boolean(1));
}

static struct json_object *summary_input(const struct nodeinfo_input *in)
{
	static const char *const numbers[] = {"min", "max", "step"};
	struct json_object *o = json_object_new_object(), *v;
	const char *tip = json_get_str(in->opts, "tooltip");

	json_put(o, "type", cut_str(in->type, 200));
	json_put(o, "required", json_object_new_boolean(in->required));
	v = scalar_copy(json_get(in->opts, "default"));
	if (v != NULL)
		json_put(o, "default", v);
	for (size_t i = 0; i < sizeof numbers / sizeof numbers[0]; i++) {
		v = number_copy(json_get(in->opts, numbers[i]));
		if (v != NULL)
			json_put(o, numbers[i], v);
	}
	if (tip != NULL)
		json_put(o, "tooltip", cut_str(tip, NODEINFO_MAX_TEXT));
	if (in->kind == NODEINFO_COMBO && in->options != NULL)
		put_options(o, in->options);
	return o;
}

/* The inputs of one group ("required", "optional") of class cls into inputs. */
static void summary_group(struct json_object *cls, const char *group, struct json_object *inputs)
{
	struct json_object *g = json_get_obj(json_get_obj(cls, "input"), group);

	if (g == NULL)
		return;
	json_object_object_foreach(g, name, unused) {
		struct nodeinfo_input in;

		(void)unused;
		if (json_get(inputs, name) == NULL && nodeinfo_input(cls, name, &in) == 0)
			json_put(inputs, name, summary_input(&in));
	}
}

static struct json_object *summary_class(struct json_object *cls)
{
	static const char *const texts[] = {"display_name", "category", "description"};
	struct json_object *o = json_object_new_object(), *inputs = json_object_new_object();

	for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
		const char *s = json_get_str(cls, texts[i]);

		if (s != NULL && s[0] != '\0')
			json_put(o, texts[i], cut_str(s, NODEINFO_MAX_TEXT));
	}
	summary_group(cls, "required", inputs);
	summary_group(cls, "optional", inputs);
	json_put(o, "inputs", inputs);
	return o;
}

static int array_has(struct json_object *a, const char *s)
{
	for (size_t i = 0; i < json_object_array_length(a); i++)
		if (strcmp(json_object_get_string(json_object_array_get_idx(a, i)), s) == 0)
			return 1;
	return 0;
}

struct json_object *nodeinfo_summary(struct json_object *answer, const char *const *used,
				     size_t nused)
{
	struct json_object *o = json_object_new_object(), *names = json_object_new_array();
	struct json_object *u = json_object_new_object(), *missing = json_object_new_array();
	int n = json_object_object_length(answer);

	json_object_object_foreach(answer, name, unused) {
		(void)unused;
		if (json_object_array_length(names) < NODEINFO_MAX_NAMES)
			json_object_array_add(names, cut_str(name, 200));
	}
	for (size_t i = 0; i < nused; i++) {
		struct json_object *cls = json_get_obj(answer, used[i]);

		if (json_get(u, used[i]) != NULL || array_has(missing, used[i]))
			continue;
		if (cls != NULL)
			json_put(u, used[i], summary_class(cls));
		else
			json_object_array_add(missing, json_str(used[i]));
	}
	json_put(o, "classes", json_int(n));
	json_put(o, "names", names);
	json_put(o, "names_cut", json_object_new_boolean(n > NODEINFO_MAX_NAMES));
	json_put(o, "used", u);
	json_put(o, "missing", missing);
	return o;
}

struct json_object *nodeinfo_summary_input(struct json_object *summary, const char *cls,
					   const char *name)
{
	if (cls == NULL || name == NULL)
		return NULL;
	return json_get_obj(json_get_obj(json_get_obj(json_get_obj(summary, "used"), cls),
					 "inputs"),
			    name);
}

/* ---- the catalog ---- */

/*
 * Words that mark text users must not see (invariant 3): the files a
 * model is made of, and the machine under it.
 */
static const char *const unsafe_words[] = {
	"cuda", ".safetensors", ".ckpt", ".pt", ".bin", ".gguf", ".onnx", ".sft",
};

/* 1 when text holds word as a whole word (letters, digits and '_' around it end it). */
static int has_word(const char *text, const char *word)
{
	size_t n = strlen(word);

	for (const char *p = strcasestr(text, word); p; p = strcasestr(p + 1, word)) {
		int before = p > text && (isalnum((unsigned char)p[-1]) || p[-1] == '_');
		int after = isalnum((unsigned char)p[n]) || p[n] == '_';

		if (!before && !after)
			return 1;
	}
	return 0;
}

/* 1 when text may be shown to users: no file, CUDA or model id in it. */
static int safe_text(const struct registry *r, const char *text, int is_value)
{
	if (is_value && (strchr(text, '/') || strchr(text, '\\')))
		return 0; /* a path */
	for (size_t i = 0; i < sizeof unsafe_words / sizeof unsafe_words[0]; i++)
		if (strcasestr(text, unsafe_words[i]))
			return 0;
	for (size_t i = 0; i < registry_model_count(r); i++)
		if (has_word(text, registry_model_at(r, i)->id))
			return 0;
	return 1;
}

/* What the models that bind one param say of it, gathered bind by bind. */
struct acc {
	const char *description;    /* borrowed from a summary */
	int has_min, has_max;
	double min, max;            /* the narrowest range */
	struct json_object *def;    /* owned; the value every bind agrees on */
	int def_conflict;           /* 1: two binds disagree */
	struct json_object *choices; /* owned array of strings: what every COMBO accepts */
};

/* An integral number v as an int param's value, or NULL. A new object. */
static struct json_object *fit_int(struct json_object *v)
{
	double d = json_object_get_double(v);

	if (!isfinite(d) || d != floor(d) || fabs(d) >= 9.2e18)
		return NULL;
	return json_int(json_object_is_type(v, json_type_int) ? json_object_get_int64(v)
							      : (int64_t)d);
}

/* v as a value of p's type, or NULL. A new object. */
static struct json_object *fit(const struct reg_param *p, struct json_object *v)
{
	int num = json_object_is_type(v, json_type_int) || json_object_is_type(v, json_type_double);
	int str = json_object_is_type(v, json_type_string);

	switch (p->type) {
	case REG_INT:
		return num ? fit_int(v) : NULL;
	case REG_FLOAT:
		return num && isfinite(json_object_get_double(v))
			       ? json_object_new_double(json_object_get_double(v))
			       : NULL;
	case REG_BOOL:
		return json_object_is_type(v, json_type_boolean)
			       ? json_object_new_boolean(json_object_get_boolean(v))
			       : NULL;
	case REG_ENUM:
		for (size_t i = 0; str && i < p->noptions; i++)
			if (strcmp(p->options[i], json_object_get_string(v)) == 0)
				return json_str(p->options[i]);
		return NULL;
	default:
		return str ? json_str(json_object_get_string(v)) : NULL;
	}
}

/* One bound input's default: the workflow's own value there, else the input's default. */
static void acc_default(struct acc *a, const struct reg_param *p, const struct reg_model *m,
			const struct reg_bind *b, struct json_object *in)
{
	struct json_object *wf = json_get(json_get_obj(json_get(m->workflow, b->node), "inputs"),
					  b->input);
	struct json_object *v;

	if (wf != NULL && json_object_is_type(wf, json_type_array))
		return; /* a link: the value comes from another node */
	v = fit(p, wf != NULL ? wf : json_get(in, "default"));
	if (v == NULL)
		return;
	if (a->def == NULL) {
		a->def = v;
		return;
	}
	if (!json_object_equal(a->def, v))
		a->def_conflict = 1;
	json_object_put(v);
}

/* Keeps of a->choices those in in's options (all of them, the first time). */
static void acc_choices(struct acc *a, const struct registry *r, struct json_object *in)
{
	struct json_object *opts = json_get_arr(in, "options"), *keep;

	if (opts == NULL || strcmp(json_get_str(in, "type") ? json_get_str(in, "type") : "",
				   "COMBO") != 0)
		return; /* a free input accepts every choice */
	keep = json_object_new_array();
	for (size_t i = 0; i < json_object_array_length(opts); i++) {
		const char *s = json_object_get_string(json_object_array_get_idx(opts, i));

		if (safe_text(r, s, 1) && (a->choices == NULL || array_has(a->choices, s)) &&
		    !array_has(keep, s))
			json_object_array_add(keep, json_str(s));
	}
	json_object_put(a->choices);
	a->choices = keep;
}

static void acc_bound(struct json_object *in, const char *key, int lower, int *has, double *v)
{
	struct json_object *o = json_get(in, key);
	double d = json_object_get_double(o);

	if (o == NULL || json_object_is_type(o, json_type_string) || !isfinite(d))
		return;
	if (!*has || (lower ? d > *v : d < *v))
		*v = d;
	*has = 1;
}

static void acc_add(struct acc *a, const struct registry *r, const struct reg_param *p,
		    const struct reg_model *m, const struct reg_bind *b, struct json_object *in)
{
	const char *tip = json_get_str(in, "tooltip");

	if (a->description == NULL && tip != NULL && tip[0] && safe_text(r, tip, 0))
		a->description = tip;
	if (p->type == REG_INT || p->type == REG_FLOAT) {
		acc_bound(in, "min", 1, &a->has_min, &a->min);
		acc_bound(in, "max", 0, &a->has_max, &a->max);
	}
	acc_default(a, p, m, b, in);
	if (p->type == REG_STRING)
		acc_choices(a, r, in);
}

/* One end of an int or float param's range as JSON; NULL when an int's end is out of range. */
static struct json_object *bound_json(const struct reg_param *p, double v, int lower)
{
	double d = p->type == REG_INT ? (lower ? ceil(v) : floor(v)) : v;

	if (p->type != REG_INT)
		return json_object_new_double(d);
	return fabs(d) < 9.2e18 ? json_int((int64_t)d) : NULL;
}

/* min and max of the models, where the registry gives none and the range stays whole. */
static void apply_range(struct json_object *cp, const struct reg_param *p, const struct acc *a)
{
	double rmin = p->type == REG_INT ? (double)p->min_int : p->min_num;
	double rmax = p->type == REG_INT ? (double)p->max_int : p->max_num;
	int has_lo = p->has_min || a->has_min, has_hi = p->has_max || a->has_max;
	double lo = p->has_min ? rmin : a->min, hi = p->has_max ? rmax : a->max;
	struct json_object *v;

	if (has_lo && has_hi && lo > hi)
		return; /* the models and the registry disagree: say nothing more */
	v = !p->has_min && a->has_min ? bound_json(p, a->min, 1) : NULL;
	if (v != NULL)
		json_put(cp, "min", v);
	v = !p->has_max && a->has_max ? bound_json(p, a->max, 0) : NULL;
	if (v != NULL)
		json_put(cp, "max", v);
}

static void apply(struct json_object *cp, const struct reg_param *p, struct acc *a)
{
	if (p->description == NULL && a->description != NULL)
		json_put(cp, "description", json_str(a->description));
	if (p->type == REG_INT || p->type == REG_FLOAT)
		apply_range(cp, p, a);
	if (p->def == NULL && !p->random && !p->required && a->def != NULL && !a->def_conflict) {
		json_put(cp, "default", a->def);
		a->def = NULL;
	}
	if (p->type == REG_STRING && a->choices != NULL && json_object_array_length(a->choices) > 0) {
		json_put(cp, "options", a->choices);
		a->choices = NULL;
	}
}

static void enrich_param(struct json_object *cp, const struct registry *r,
			 const struct reg_function *f, const struct reg_param *p,
			 nodeinfo_lookup_fn get, void *ud)
{
	struct acc a = {0};

	for (size_t i = 0; i < registry_model_count(r); i++) {
		const struct reg_model *m = registry_model_at(r, i);
		struct json_object *summary;

		if (m->function != f || !m->enabled)
			continue;
		summary = get(m->id, ud);
		for (size_t k = 0; summary != NULL && k < m->nbinds; k++) {
			const struct reg_bind *b = &m->binds[k];
			const char *cls = json_get_str(json_get(m->workflow, b->node), "class_type");
			struct json_object *in = nodeinfo_summary_input(summary, cls, b->input);

			if (in != NULL && strcmp(b->param, p->name) == 0)
				acc_add(&a, r, p, m, b, in);
		}
	}
	apply(cp, p, &a);
	json_object_put(a.def);
	json_object_put(a.choices);
}

void nodeinfo_enrich(struct json_object *catalog, const struct registry *r, nodeinfo_lookup_fn get,
		     void *ud)
{
	struct json_object *fs = json_get_arr(catalog, "functions");

	for (size_t i = 0; fs != NULL && i < json_object_array_length(fs); i++) {
		struct json_object *cf = json_object_array_get_idx(fs, i);
		const struct reg_function *f = registry_function(r, json_get_str(cf, "name"));
		struct json_object *params = json_get_obj(cf, "params");

		for (size_t k = 0; f != NULL && k < f->nparams; k++) {
			struct json_object *cp = json_get_obj(params, f->params[k].name);

			if (cp != NULL)
				enrich_param(cp, r, f, &f->params[k], get, ud);
		}
	}
}
