/*
 * nodes.c - the node class registry, /object_info entries, and the value
 * helpers of node.h.
 *
 * Classes are registered once at startup, in the order /object_info lists
 * them. The registry only borrows them.
 */
#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "image.h"
#include "json.h"
#include "node.h"
#include "util.h"

#define NODES_MAX 512

static const struct node_class *classes[NODES_MAX]; /* registration order */
static size_t nclasses;

void nodes_register(const struct node_class *c)
{
	if (nodes_find(c->name) != NULL || nclasses == NODES_MAX)
		return;
	classes[nclasses++] = c;
}

const struct node_class *nodes_find(const char *name)
{
	for (size_t i = 0; i < nclasses; i++)
		if (strcmp(classes[i]->name, name) == 0)
			return classes[i];
	return NULL;
}

size_t nodes_count(void)
{
	return nclasses;
}

const struct node_class *nodes_at(size_t i)
{
	return i < nclasses ? classes[i] : NULL;
}

void nodes_reset(void)
{
	nclasses = 0;
}

/* The options object of one input: default, min, max, step, ... */
static struct json_object *input_options(const struct node_input *in)
{
	struct json_object *o = json_object_new_object();

	if (in->def) {
		struct json_object *d = NULL;
		struct err e = {0};
		if (json_parse(in->def, strlen(in->def), 8, &d, &e) == 0)
			json_put(o, "default", d);
	}
	if (strcmp(in->type, "FLOAT") == 0) {
		if (in->has_min)
			json_put(o, "min", json_object_new_double(in->min));
		if (in->has_max)
			json_put(o, "max", json_object_new_double(in->max));
		if (in->step > 0)
			json_put(o, "step", json_object_new_double(in->step));
	} else {
		if (in->has_min)
			json_put(o, "min", json_int((int64_t)in->min));
		if (in->has_max) {
			if (in->max >= 9.2e18)
				json_put(o, "max", json_object_new_uint64(UINT64_MAX));
			else
				json_put(o, "max", json_int((int64_t)in->max));
		}
		if (in->step > 0)
			json_put(o, "step", json_int((int64_t)in->step));
	}
	if (in->multiline)
		json_put(o, "multiline", json_object_new_boolean(1));
	if (in->control_after_generate)
		json_put(o, "control_after_generate", json_object_new_boolean(1));
	if (in->display)
		json_put(o, "display", json_str(in->display));
	if (in->tooltip)
		json_put(o, "tooltip", json_str(in->tooltip));
	return o;
}

/* [TYPE, {options}], or [[option, ...], {options}] for a legacy combo. */
struct json_object *nodes_input_spec(const struct node_input *in)
{
	struct json_object *spec = json_object_new_array();

	if (strcmp(in->type, "COMBO") == 0 && in->options) {
		struct json_object *opts = json_object_new_array();
		for (size_t i = 0; in->options[i]; i++)
			json_object_array_add(opts, json_str(in->options[i]));
		json_object_array_add(spec, opts);
	} else {
		json_object_array_add(spec, json_str(in->type));
	}
	json_object_array_add(spec, input_options(in));
	return spec;
}

static void add_inputs(struct json_object *input, struct json_object *order,
		       const struct node_class *c, int required)
{
	struct json_object *group = NULL, *names = NULL;

	for (size_t i = 0; i < c->ninputs; i++) {
		const struct node_input *in = &c->inputs[i];
		if (in->required != required)
			continue;
		if (group == NULL) {
			group = json_object_new_object();
			names = json_object_new_array();
		}
		json_put(group, in->name, nodes_input_spec(in));
		json_object_array_add(names, json_str(in->name));
	}
	if (group) {
		json_put(input, required ? "required" : "optional", group);
		json_put(order, required ? "required" : "optional", names);
	}
}

/* "hidden": {"prompt": "PROMPT", ...} and its order, as ComfyUI lists them. */
static void add_hidden(struct json_object *input, struct json_object *order,
		       const struct node_class *c)
{
	struct json_object *group, *names;

	if (c->hidden == NULL || c->hidden[0] == NULL)
		return;
	group = json_object_new_object();
	names = json_object_new_array();
	for (size_t i = 0; c->hidden[i]; i++) {
		char type[64];
		size_t k = 0;
		for (; c->hidden[i][k] && k < sizeof type - 1; k++)
			type[k] = (char)toupper((unsigned char)c->hidden[i][k]);
		type[k] = '\0';
		json_put(group, c->hidden[i], json_str(type));
		json_object_array_add(names, json_str(c->hidden[i]));
	}
	json_put(input, "hidden", group);
	json_put(order, "hidden", names);
}

struct json_object *nodes_object_info(const struct node_class *c)
{
	struct json_object *o = json_object_new_object();
	struct json_object *input = json_object_new_object();
	struct json_object *order = json_object_new_object();
	struct json_object *out = json_object_new_array(), *islist = json_object_new_array();
	struct json_object *names = json_object_new_array();

	add_inputs(input, order, c, 1);
	add_inputs(input, order, c, 0);
	add_hidden(input, order, c);
	for (size_t i = 0; i < c->noutputs; i++) {
		json_object_array_add(out, json_str(c->outputs[i]));
		json_object_array_add(islist, json_object_new_boolean(0));
		json_object_array_add(names, json_str(c->output_names ? c->output_names[i]
								      : c->outputs[i]));
	}
	json_put(o, "input", input);
	json_put(o, "input_order", order);
	json_put(o, "output", out);
	json_put(o, "output_is_list", islist);
	json_put(o, "output_name", names);
	if (c->v3) {
		struct json_object *tips = json_object_new_array();
		for (size_t i = 0; i < c->noutputs; i++)
			json_object_array_add(tips, NULL);
		json_put(o, "output_tooltips", tips);
	}
	json_put(o, "name", json_str(c->name));
	json_put(o, "display_name", c->display_name ? json_str(c->display_name) : NULL);
	json_put(o, "description", json_str(c->description ? c->description : ""));
	json_put(o, "python_module", json_str(c->python_module ? c->python_module : "nodes"));
	json_put(o, "category", json_str(c->category ? c->category : ""));
	json_put(o, "output_node", json_object_new_boolean(c->output_node));
	if (c->v3) {
		json_put(o, "deprecated", json_object_new_boolean(0));
		json_put(o, "experimental", json_object_new_boolean(0));
		json_put(o, "api_node", json_object_new_boolean(0));
	}
	return o;
}

void value_clear(struct value *v)
{
	free(v->s);
	image_unref(v->img);
	memset(v, 0, sizeof *v);
}

void value_copy(struct value *dst, const struct value *src)
{
	*dst = *src;
	dst->s = src->s ? xstrdup(src->s) : NULL;
	dst->img = src->img ? image_ref(src->img) : NULL;
}

char *value_to_text(const struct value *v)
{
	switch (v->type) {
	case VAL_INT:
		return xasprintf("%" PRId64, v->i);
	case VAL_FLOAT: {
		struct json_object *d = json_object_new_double(v->f);
		char *s = json_dumps(d);
		json_object_put(d);
		return s;
	}
	case VAL_BOOL:
		return xstrdup(v->i ? "True" : "False");
	case VAL_STRING:
	case VAL_OPAQUE:
		return xstrdup(v->s ? v->s : "");
	case VAL_IMAGE:
		if (v->img)
			return xasprintf("tensor of shape [%d, %d, %d, 3]", v->img->n,
					 v->img->h, v->img->w);
		return xstrdup("None");
	case VAL_VIDEO:
		return xasprintf("VideoFromComponents(%d frames at %g fps)", v->img ? v->img->n : 0,
				 v->f);
	default:
		return xstrdup("None");
	}
}
