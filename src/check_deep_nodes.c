/*
 * check_deep_nodes.c - a model's workflow and binds against its server's
 * node classes, for `fnrun check --deep` (check_deep__nodes(),
 * check_deep_internal.h).
 *
 * The classes are /object_info's answer in ComfyUI's format, each input
 * read by nodeinfo_input() (nodeinfo.h). Checked: every workflow node's
 * class_type is a class; every bind's node has the input; the param's
 * type fits it (int: INT or FLOAT; float: FLOAT; string: STRING; bool:
 * BOOLEAN; enum: a COMBO that lists each of its options, or a STRING); an
 * int or float param's min..max lies within the input's (a param without
 * a bound is wider than a bounded input).
 */
#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "check_deep_internal.h"
#include "json.h"
#include "nodeinfo.h"
#include "registry.h"
#include "util.h"

#define DEEP_LIST 400 /* bytes of a list in a message, then "..." */

/* Appends item to the ", "-separated list b; a full list ends in "...". */
static void list_add(struct buf *b, const char *item)
{
	if (b->len >= DEEP_LIST)
		return;
	if (b->len + strlen(item) + 2 >= DEEP_LIST)
		buf_puts(b, b->len ? ", ..." : "...");
	else
		buf_printf(b, "%s%s", b->len ? ", " : "", item);
}

/* Adds the keys of object o (NULL: none) to list b. */
static void list_keys(struct json_object *o, struct buf *b)
{
	if (o == NULL)
		return;
	json_object_object_foreach(o, key, unused) {
		(void)unused;
		list_add(b, key);
	}
}

/* Edit distance of a and b, letter case ignored; SIZE_MAX when either is long. */
static size_t distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b), row[65];

	if (la > 64 || lb > 64)
		return SIZE_MAX;
	for (size_t j = 0; j <= lb; j++)
		row[j] = j;
	for (size_t i = 1; i <= la; i++) {
		size_t diag = row[0];

		row[0] = i;
		for (size_t j = 1; j <= lb; j++) {
			size_t up = row[j], best = diag + (tolower((unsigned char)a[i - 1]) !=
							    tolower((unsigned char)b[j - 1]));

			best = up + 1 < best ? up + 1 : best;
			row[j] = row[j - 1] + 1 < best ? row[j - 1] + 1 : best;
			diag = up;
		}
	}
	return row[lb];
}

/* What to say of an unknown class name: the closest one, or some the server has. */
static void suggest_class(struct json_object *info, const char *name, struct buf *b)
{
	const char *best = NULL;
	size_t bd = SIZE_MAX, limit = strlen(name) / 4 > 2 ? strlen(name) / 4 : 2;
	struct buf l;

	json_object_object_foreach(info, cls, unused) {
		size_t dist = distance(name, cls);

		(void)unused;
		if (dist < bd) {
			bd = dist;
			best = cls;
		}
	}
	if (best != NULL && bd <= limit) {
		buf_printf(b, "did you mean \"%s\"?", best);
		return;
	}
	buf_init(&l, DEEP_LIST + 8);
	list_keys(info, &l);
	buf_printf(b, "its %d classes: %s", json_object_object_length(info),
		   l.data ? l.data : "none");
	buf_cleanup(&l);
}

/* Every workflow node's class_type is one the server has. */
static void check_classes(struct check_deep *d, const struct reg_model *m,
			  struct json_object *info)
{
	yaml_node_t *k = NULL, *model = check_deep__model(d, m->id, NULL);
	yaml_node_t *v = check_deep__map(d, model, "workflow", &k);

	json_object_object_foreach(m->workflow, id, node) {
		const char *cls = json_get_str(node, "class_type");
		struct buf b;

		if (cls == NULL || json_get_obj(info, cls) != NULL)
			continue;
		buf_init(&b, 1024);
		suggest_class(info, cls, &b);
		check_deep__add(d, k, 0, "models.%s.workflow: node %s of %s has class_type \"%s\", "
				"which the model server does not have; %s", m->id, id,
				check_deep__text(v), cls, b.data);
		buf_cleanup(&b);
	}
}

/* What params fit each kind of input (bits 1 << enum reg_type), and in words. */
static const struct {
	unsigned params;
	const char *takes;
} fits[] = {
	[NODEINFO_INT] = {1u << REG_INT, "an int param"},
	[NODEINFO_FLOAT] = {1u << REG_INT | 1u << REG_FLOAT, "an int or float param"},
	[NODEINFO_STRING] = {1u << REG_STRING | 1u << REG_ENUM, "a string or enum param"},
	[NODEINFO_BOOL] = {1u << REG_BOOL, "a bool param"},
	[NODEINFO_COMBO] = {1u << REG_ENUM, "an enum param whose options it lists"},
	[NODEINFO_LINK] = {0, "a link from another node, not a param"},
};
static const char *const type_words[] = {"a string", "an int", "a float", "a bool", "an enum"};

/* The inputs of cls, required then optional, as a list for messages. */
static void input_names(struct json_object *cls, struct buf *b)
{
	list_keys(json_get_obj(json_get_obj(cls, "input"), "required"), b);
	list_keys(json_get_obj(json_get_obj(cls, "input"), "optional"), b);
	if (b->len == 0)
		buf_puts(b, "none");
}

/* Where bind b of m is in the file; its key path goes to path. */
static yaml_node_t *bind_at(struct check_deep *d, const struct reg_model *m,
			    const struct reg_bind *b, char *path, size_t n)
{
	yaml_node_t *bind = check_deep__map(d, check_deep__model(d, m->id, NULL), "bind", NULL);
	yaml_node_t *k = NULL, *v = check_deep__map(d, bind, b->param, &k);
	char *want = xasprintf("%s.inputs.%s", b->node, b->input);
	size_t len = (size_t)snprintf(path, n, "models.%s.bind.%s", m->id, b->param);

	for (size_t i = 0; check_deep__seq(d, v, i) != NULL; i++) {
		if (strcmp(check_deep__text(check_deep__seq(d, v, i)), want) != 0)
			continue;
		snprintf(path + len, len < n ? n - len : 0, "[%zu]", i);
		k = check_deep__seq(d, v, i);
		break;
	}
	free(want);
	return k;
}

/* A param's or an input's min..max, with each end as text for messages. */
struct bounds {
	int has_min, has_max;
	double min, max;
	char lo[48], hi[48];
};

static void param_bounds(const struct reg_param *p, struct bounds *b)
{
	b->has_min = p->has_min;
	b->has_max = p->has_max;
	b->min = p->type == REG_INT ? (double)p->min_int : p->min_num;
	b->max = p->type == REG_INT ? (double)p->max_int : p->max_num;
	if (p->type == REG_INT) {
		snprintf(b->lo, sizeof b->lo, "%lld", (long long)p->min_int);
		snprintf(b->hi, sizeof b->hi, "%lld", (long long)p->max_int);
	} else {
		snprintf(b->lo, sizeof b->lo, "%.15g", p->min_num);
		snprintf(b->hi, sizeof b->hi, "%.15g", p->max_num);
	}
}

/* One end of an input's range: a JSON number in opts under key. */
static int input_bound(struct json_object *opts, const char *key, double *v, char *text, size_t n)
{
	struct json_object *o = json_get(opts, key);

	if (!json_object_is_type(o, json_type_int) && !json_object_is_type(o, json_type_double))
		return 0;
	*v = json_object_get_double(o);
	if (json_object_is_type(o, json_type_int))
		snprintf(text, n, "%s", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
	else
		snprintf(text, n, "%.15g", *v);
	return 1;
}

static void describe_bounds(const struct bounds *b, char *out, size_t n)
{
	if (b->has_min && b->has_max)
		snprintf(out, n, "%s to %s", b->lo, b->hi);
	else if (b->has_min)
		snprintf(out, n, "%s or more (no max)", b->lo);
	else if (b->has_max)
		snprintf(out, n, "up to %s (no min)", b->hi);
	else
		snprintf(out, n, "any value (no min or max)");
}

/* The param's min..max lies within the numeric input's. */
static void check_range(struct check_deep *d, const yaml_node_t *at, const char *path,
			const struct reg_model *m, const struct reg_param *p, const char *target,
			const struct nodeinfo_input *in)
{
	struct bounds pb, ib = {0};
	char want[128], have[128];

	param_bounds(p, &pb);
	ib.has_min = input_bound(in->opts, "min", &ib.min, ib.lo, sizeof ib.lo);
	ib.has_max = input_bound(in->opts, "max", &ib.max, ib.hi, sizeof ib.hi);
	if ((!ib.has_min || (pb.has_min && pb.min >= ib.min)) &&
	    (!ib.has_max || (pb.has_max && pb.max <= ib.max)))
		return;
	describe_bounds(&pb, have, sizeof have);
	describe_bounds(&ib, want, sizeof want);
	check_deep__add(d, at, 0, "%s: param %s allows %s, but %s takes %s; give functions.%s.params.%s "
			"a min and max within that range", path, p->name, have, target, want,
			m->function->name, p->name);
}

/* An option of a COMBO as text: a string as is, anything else as JSON. Borrowed from o. */
static const char *option_text(struct json_object *o)
{
	if (json_object_is_type(o, json_type_string))
		return json_object_get_string(o);
	return json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
}

/* 1 when the COMBO options (a JSON array) hold the string s. */
static int combo_has(struct json_object *options, const char *s)
{
	for (size_t i = 0; i < json_object_array_length(options); i++)
		if (strcmp(option_text(json_object_array_get_idx(options, i)), s) == 0)
			return 1;
	return 0;
}

/* Every option of the enum param is one the COMBO input accepts. */
static void check_options(struct check_deep *d, const yaml_node_t *at, const char *path,
			  const struct reg_param *p, const char *target,
			  const struct nodeinfo_input *in)
{
	struct buf missing, allowed;

	if (in->options == NULL)
		return; /* options the server does not list: nothing to compare */
	buf_init(&missing, DEEP_LIST + 8);
	buf_init(&allowed, DEEP_LIST + 8);
	for (size_t i = 0; i < json_object_array_length(in->options); i++)
		list_add(&allowed, option_text(json_object_array_get_idx(in->options, i)));
	for (size_t i = 0; i < p->noptions; i++)
		if (!combo_has(in->options, p->options[i]))
			list_add(&missing, p->options[i]);
	if (missing.len > 0)
		check_deep__add(d, at, 0, "%s: %s does not accept option%s %s of param %s; it accepts: %s",
				path, target, strchr(missing.data, ',') ? "s" : "", missing.data,
				p->name, allowed.data ? allowed.data : "none");
	buf_cleanup(&missing);
	buf_cleanup(&allowed);
}

static const struct reg_param *find_param(const struct reg_function *f, const char *name)
{
	for (size_t i = 0; i < f->nparams; i++)
		if (strcmp(f->params[i].name, name) == 0)
			return &f->params[i];
	return NULL;
}

/* Bind b of m: its node's class has the input, of a type and range the param fits. */
static void check_bind(struct check_deep *d, const struct reg_model *m, const struct reg_bind *b,
		       struct json_object *info)
{
	const char *cls_name = json_get_str(json_get(m->workflow, b->node), "class_type");
	struct json_object *cls = cls_name ? json_get_obj(info, cls_name) : NULL;
	const struct reg_param *p = find_param(m->function, b->param);
	char path[300], target[300];
	yaml_node_t *at = bind_at(d, m, b, path, sizeof path);
	struct nodeinfo_input in;
	struct buf names;

	if (cls == NULL || p == NULL)
		return; /* an unknown class is reported once, at the workflow */
	snprintf(target, sizeof target, "node %s (%s) input \"%s\"", b->node, cls_name, b->input);
	if (nodeinfo_input(cls, b->input, &in) < 0) {
		buf_init(&names, DEEP_LIST + 8);
		input_names(cls, &names);
		check_deep__add(d, at, 0, "%s: node %s (%s) has no input \"%s\"; its inputs: %s", path,
				b->node, cls_name, b->input, names.data);
		buf_cleanup(&names);
	} else if (!(fits[in.kind].params & (1u << p->type))) {
		check_deep__add(d, at, 0, "%s: param %s is %s, but %s is %s, which takes %s", path,
				p->name, type_words[p->type], target, in.type, fits[in.kind].takes);
	} else if (in.kind == NODEINFO_COMBO) {
		check_options(d, at, path, p, target, &in);
	} else if (in.kind == NODEINFO_INT || in.kind == NODEINFO_FLOAT) {
		check_range(d, at, path, m, p, target, &in);
	}
}

void check_deep__nodes(struct check_deep *d, const struct reg_model *m, struct json_object *info)
{
	check_classes(d, m, info);
	for (size_t i = 0; i < m->nbinds; i++)
		check_bind(d, m, &m->binds[i], info);
}
