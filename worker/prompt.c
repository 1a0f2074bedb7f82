/*
 * prompt.c - ComfyUI-compatible prompt validation.
 *
 * Pass 1 checks every node has a known class_type and collects the output
 * nodes; pass 2 rejects a prompt without outputs; pass 3 validates each
 * output recursively through its links, memoising per node. A node whose
 * upstream is invalid is invalid without an error of its own. Errors are
 * then aggregated into node_errors the way ComfyUI does, which appends every
 * failing output to every node that has reasons (so dependent_outputs may
 * list outputs that do not depend on the node; the transcript shows this).
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "json.h"
#include "node.h"
#include "prompt.h"
#include "util.h"

#define VALIDATE_MAX_DEPTH 512

struct memo {
	char *id;
	int state;                 /* 0 in progress, 1 done */
	int valid;
	struct json_object *errors; /* array */
};

struct vstate {
	struct json_object *prompt;
	struct memo *memo;
	size_t nmemo, cap;
};

/* A Python exception raised while validating: type and str(ex). */
struct pyexc {
	const char *type;
	char msg[512];
};

char *prompt_py_repr(const char *s)
{
	struct buf b;
	int dq = strchr(s, '\'') && !strchr(s, '"');

	buf_init(&b, 1 << 20);
	buf_putc(&b, dq ? '"' : '\'');
	for (; *s; s++) {
		if (*s == '\\')
			buf_puts(&b, "\\\\");
		else if (*s == '\n')
			buf_puts(&b, "\\n");
		else if (*s == '\'' && !dq)
			buf_puts(&b, "\\'");
		else
			buf_putc(&b, *s);
	}
	buf_putc(&b, dq ? '"' : '\'');
	return buf_steal(&b);
}

/* str() of a JSON value as Python prints the dict/list it parses to. */
static void py_repr_json(struct buf *b, const struct json_object *v)
{
	char *t;
	int first = 1;

	switch (json_object_get_type(v)) {
	case json_type_null:
		buf_puts(b, "None");
		return;
	case json_type_boolean:
		buf_puts(b, json_object_get_boolean(v) ? "True" : "False");
		return;
	case json_type_string:
		t = prompt_py_repr(json_object_get_string((struct json_object *)v));
		buf_puts(b, t);
		free(t);
		return;
	case json_type_array:
		buf_putc(b, '[');
		for (size_t i = 0; i < json_object_array_length(v); i++) {
			if (i)
				buf_puts(b, ", ");
			py_repr_json(b, json_object_array_get_idx(v, i));
		}
		buf_putc(b, ']');
		return;
	case json_type_object:
		buf_putc(b, '{');
		json_object_object_foreach((struct json_object *)v, k, e) {
			if (!first)
				buf_puts(b, ", ");
			first = 0;
			t = prompt_py_repr(k);
			buf_puts(b, t);
			free(t);
			buf_puts(b, ": ");
			py_repr_json(b, e);
		}
		buf_putc(b, '}');
		return;
	default:
		json_dump(b, v);
		return;
	}
}

char *prompt_py_str(const struct json_object *v)
{
	struct buf b;

	buf_init(&b, (size_t)64 << 20);
	py_repr_json(&b, v);
	return buf_steal(&b);
}

struct json_object *prompt_error_body(const char *type, const char *message,
				      const char *details, struct json_object *node_errors)
{
	struct json_object *body = json_object_new_object();
	struct json_object *e = json_object_new_object();

	json_put(e, "type", json_str(type));
	json_put(e, "message", json_str(message));
	json_put(e, "details", json_str(details));
	json_put(e, "extra_info", json_object_new_object());
	json_put(body, "error", e);
	json_put(body, "node_errors", node_errors ? node_errors : json_object_new_object());
	return body;
}

void prompt_result_cleanup(struct prompt_result *res)
{
	json_object_put(res->outputs);
	json_object_put(res->node_errors);
	json_object_put(res->error);
	memset(res, 0, sizeof *res);
}

static struct memo *memo_find(struct vstate *st, const char *id)
{
	for (size_t i = 0; i < st->nmemo; i++)
		if (strcmp(st->memo[i].id, id) == 0)
			return &st->memo[i];
	return NULL;
}

static struct memo *memo_add(struct vstate *st, const char *id)
{
	if (st->nmemo == st->cap) {
		st->cap = st->cap ? st->cap * 2 : 16;
		st->memo = xrealloc(st->memo, st->cap * sizeof *st->memo);
	}
	st->memo[st->nmemo] = (struct memo){xstrdup(id), 0, 1, json_object_new_array()};
	return &st->memo[st->nmemo++];
}

static struct json_object *make_error(const char *type, const char *message,
				      const char *details, struct json_object *extra)
{
	struct json_object *e = json_object_new_object();

	json_put(e, "type", json_str(type));
	json_put(e, "message", json_str(message));
	json_put(e, "details", json_str(details));
	json_put(e, "extra_info", extra ? extra : json_object_new_object());
	return e;
}

static struct json_object *extra_input(const struct node_input *in,
				       const struct json_object *received)
{
	struct json_object *x = json_object_new_object();

	json_put(x, "input_name", json_str(in->name));
	json_put(x, "input_config", nodes_input_spec(in));
	if (received)
		json_put(x, "received_value", json_object_get((struct json_object *)received));
	return x;
}

static const char *json_type_pyname(const struct json_object *v)
{
	switch (json_object_get_type(v)) {
	case json_type_null: return "NoneType";
	case json_type_array: return "list";
	case json_type_object: return "dict";
	case json_type_string: return "str";
	case json_type_double: return "float";
	case json_type_boolean: return "bool";
	default: return "int";
	}
}

/*
 * int(d) of a finite double. Python's is exact at any size; ours saturates
 * past the 64-bit range as the string path's strtoll() does, since a cast
 * of a double out of int64_t's range is undefined (UBSan, fuzz/worker_prompt).
 */
static struct json_object *int_of_double(double d)
{
	double t = trunc(d);

	if (t >= 18446744073709551616.0) /* 2^64 */
		return json_int(INT64_MAX);
	if (t >= 9223372036854775808.0) /* 2^63: exact as an unsigned */
		return json_object_new_uint64((uint64_t)t);
	if (t < -9223372036854775808.0)
		return json_int(INT64_MIN);
	return json_int((int64_t)t);
}

/* int(x) as Python does it; -1 with the exception text on failure. */
static int coerce_int(const struct json_object *v, struct json_object **out, char *msg,
		      size_t msglen)
{
	const char *s, *p;
	char clean[64];
	size_t n = 0;

	switch (json_object_get_type(v)) {
	case json_type_int:
		*out = json_object_get((struct json_object *)v);
		return 0;
	case json_type_boolean:
		*out = json_int(json_object_get_boolean(v));
		return 0;
	case json_type_double: {
		double d = json_object_get_double(v);
		if (!isfinite(d)) {
			snprintf(msg, msglen, "cannot convert float %s to integer",
				 isnan(d) ? "NaN" : "infinity");
			return -1;
		}
		*out = int_of_double(d);
		return 0;
	}
	case json_type_string:
		break;
	default:
		snprintf(msg, msglen,
			 "int() argument must be a string, a bytes-like object or a real "
			 "number, not '%s'", json_type_pyname(v));
		return -1;
	}
	s = json_object_get_string((struct json_object *)v);
	p = s;
	while (*p == ' ' || *p == '\t' || *p == '\n')
		p++;
	if (*p == '+' || *p == '-')
		clean[n++] = *p++;
	for (; *p && n < sizeof clean - 1; p++) {
		if (*p >= '0' && *p <= '9')
			clean[n++] = *p;
		else if (*p == '_' && p[1] >= '0' && p[1] <= '9' && p > s && p[-1] >= '0' && p[-1] <= '9')
			continue;
		else
			break;
	}
	while (*p == ' ' || *p == '\t' || *p == '\n')
		p++;
	clean[n] = '\0';
	if (*p || n == 0 || (n == 1 && (clean[0] == '+' || clean[0] == '-'))) {
		char *r = prompt_py_repr(s);
		snprintf(msg, msglen, "invalid literal for int() with base 10: %s", r);
		free(r);
		return -1;
	}
	errno = 0;
	if (clean[0] != '-') {
		unsigned long long u = strtoull(clean, NULL, 10);
		if (errno == 0 && u > INT64_MAX) {
			*out = json_object_new_uint64(u);
			return 0;
		}
	}
	*out = json_int(strtoll(clean, NULL, 10));
	return 0;
}

/* float(x) as Python does it. */
static int coerce_float(const struct json_object *v, struct json_object **out, char *msg,
			size_t msglen)
{
	const char *s;
	char *end;
	double d;

	switch (json_object_get_type(v)) {
	case json_type_double:
		*out = json_object_get((struct json_object *)v);
		return 0;
	case json_type_int:
		*out = json_object_new_double((double)json_object_get_int64(v));
		return 0;
	case json_type_boolean:
		*out = json_object_new_double(json_object_get_boolean(v));
		return 0;
	case json_type_string:
		break;
	default:
		snprintf(msg, msglen, "float() argument must be a string or a real number, not '%s'",
			 json_type_pyname(v));
		return -1;
	}
	s = json_object_get_string((struct json_object *)v);
	errno = 0;
	d = strtod(s, &end);
	while (*end == ' ' || *end == '\t' || *end == '\n')
		end++;
	if (end == s || *end) {
		char *r = prompt_py_repr(s);
		snprintf(msg, msglen, "could not convert string to float: %s", r);
		free(r);
		return -1;
	}
	*out = json_object_new_double(d);
	return 0;
}

/* str(x) as Python does it. */
static struct json_object *coerce_string(const struct json_object *v)
{
	switch (json_object_get_type(v)) {
	case json_type_string:
		return json_object_get((struct json_object *)v);
	case json_type_null:
		return json_str("None");
	case json_type_boolean:
		return json_str(json_object_get_boolean(v) ? "True" : "False");
	default: {
		char *s = json_dumps(v);
		struct json_object *o = json_str(s);
		free(s);
		return o;
	}
	}
}

/* bool(x): Python truthiness, so "false" is True. */
static struct json_object *coerce_bool(const struct json_object *v)
{
	switch (json_object_get_type(v)) {
	case json_type_null: return json_object_new_boolean(0);
	case json_type_boolean: return json_object_get((struct json_object *)v);
	case json_type_int: return json_object_new_boolean(json_object_get_int64(v) != 0);
	case json_type_double: return json_object_new_boolean(json_object_get_double(v) != 0);
	case json_type_string: return json_object_new_boolean(json_object_get_string_len(v) > 0);
	case json_type_array: return json_object_new_boolean(json_object_array_length(v) > 0);
	default: return json_object_new_boolean(json_object_object_length(v) > 0);
	}
}

static int is_type(const struct node_input *in, const char *t)
{
	return strcmp(in->type, t) == 0;
}

/* Types are comma-separated sets that must intersect; "*" matches all. */
static int types_match(const char *received, const char *wanted)
{
	char a[256], b[256], *sa, *sb, *ta, *tb;

	if (strcmp(received, "*") == 0 || strcmp(wanted, "*") == 0)
		return 1;
	snprintf(a, sizeof a, "%s", received);
	for (ta = strtok_r(a, ",", &sa); ta; ta = strtok_r(NULL, ",", &sa)) {
		snprintf(b, sizeof b, "%s", wanted);
		for (tb = strtok_r(b, ",", &sb); tb; tb = strtok_r(NULL, ",", &sb))
			if (strcmp(ta, tb) == 0)
				return 1;
	}
	return 0;
}

static void number_text(char *out, size_t n, const struct json_object *v)
{
	char *s = json_dumps(v);

	snprintf(out, n, "%s", s);
	free(s);
}

static double json_num(const struct json_object *v)
{
	if (json_object_is_type(v, json_type_double))
		return json_object_get_double(v);
	if (json_object_get_int64(v) == INT64_MAX)
		return (double)json_object_get_uint64(v);
	return (double)json_object_get_int64(v);
}

/* min/max checks; adds an error and returns -1 when out of range. */
static int check_range(const struct node_input *in, const struct json_object *v,
		       struct json_object *errors)
{
	char val[64], lim[64], msg[192];
	double d = json_num(v);
	int fl = is_type(in, "FLOAT");

	number_text(val, sizeof val, v);
	if (in->has_min && d < in->min) {
		if (fl)
			snprintf(lim, sizeof lim, "%g", in->min);
		else
			snprintf(lim, sizeof lim, "%lld", (long long)in->min);
		snprintf(msg, sizeof msg, "Value %s smaller than min of %s", val, lim);
		json_object_array_add(errors, make_error("value_smaller_than_min", msg, in->name,
							 extra_input(in, v)));
		return -1;
	}
	if (in->has_max && d > in->max) {
		if (fl)
			snprintf(lim, sizeof lim, "%g", in->max);
		else if (in->max >= 9.2e18)
			snprintf(lim, sizeof lim, "18446744073709551615");
		else
			snprintf(lim, sizeof lim, "%lld", (long long)in->max);
		snprintf(msg, sizeof msg, "Value %s bigger than max of %s", val, lim);
		json_object_array_add(errors, make_error("value_bigger_than_max", msg, in->name,
							 extra_input(in, v)));
		return -1;
	}
	return 0;
}

static int check_combo(const struct node_input *in, const struct json_object *v,
		       struct json_object *errors)
{
	struct buf b;
	size_t n = 0;
	const char *s = json_object_is_type(v, json_type_string) ? json_object_get_string((struct json_object *)v) : NULL;
	struct json_object *extra;
	char *r;

	for (; in->options[n]; n++)
		if (s && strcmp(s, in->options[n]) == 0)
			return 0;
	buf_init(&b, 1 << 16);
	r = s ? prompt_py_repr(s) : json_dumps(v);
	buf_printf(&b, "%s: %s not in ", in->name, r);
	free(r);
	if (n > 20) {
		buf_printf(&b, "(list of length %zu)", n);
	} else {
		buf_putc(&b, '[');
		for (size_t i = 0; i < n; i++) {
			r = prompt_py_repr(in->options[i]);
			buf_printf(&b, "%s%s", i ? ", " : "", r);
			free(r);
		}
		buf_putc(&b, ']');
	}
	extra = extra_input(in, v);
	if (n > 20)
		json_put(extra, "input_config", NULL);
	json_object_array_add(errors, make_error("value_not_in_list", "Value not in list", b.data,
						 extra));
	buf_cleanup(&b);
	return -1;
}

/* Coerces one literal by its declared type; writes it back into inputs. */
static int check_literal(const struct node_input *in, struct json_object *inputs,
			 struct json_object *v, struct json_object *errors)
{
	struct json_object *inner = json_get(v, "__value__"), *c = NULL;
	char msg[512];
	int rc = 0;

	if (json_object_is_type(v, json_type_object) && inner)
		v = inner;
	if (is_type(in, "INT"))
		rc = coerce_int(v, &c, msg, sizeof msg);
	else if (is_type(in, "FLOAT"))
		rc = coerce_float(v, &c, msg, sizeof msg);
	else if (is_type(in, "STRING"))
		c = coerce_string(v);
	else if (is_type(in, "BOOLEAN"))
		c = coerce_bool(v);
	else
		c = json_object_get(v);
	if (rc < 0) {
		char details[768], tmsg[64], *val = json_dumps(v);
		struct json_object *extra = extra_input(in, v);
		if (json_object_is_type(v, json_type_string)) {
			free(val);
			val = xstrdup(json_object_get_string(v));
		}
		snprintf(details, sizeof details, "%s, %s, %s", in->name, val, msg);
		snprintf(tmsg, sizeof tmsg, "Failed to convert an input value to a %s value", in->type);
		json_put(extra, "exception_message", json_str(msg));
		json_object_array_add(errors, make_error("invalid_input_type", tmsg, details, extra));
		free(val);
		return -1;
	}
	json_put(inputs, in->name, c);
	if (is_type(in, "INT") || is_type(in, "FLOAT"))
		return check_range(in, c, errors);
	if (is_type(in, "COMBO") && in->options)
		return check_combo(in, c, errors);
	return 0;
}

static int validate_node(struct vstate *st, const char *id, int depth, struct pyexc *ex);

/* A linked input: shape, source type, then the source node itself. */
static int check_link(struct vstate *st, const struct node_input *in,
		      struct json_object *link, struct json_object *errors, int depth,
		      struct pyexc *ex)
{
	struct json_object *src_id = json_object_array_get_idx(link, 0);
	struct json_object *slot = json_object_array_get_idx(link, 1);
	const struct node_class *src;
	const char *sid;
	struct pyexc inner = {0};
	int64_t k;

	if (json_object_array_length(link) != 2) {
		json_object_array_add(errors, make_error("bad_linked_input",
			"Bad linked input, must be a length-2 list of [node_id, slot_index]",
			in->name, extra_input(in, link)));
		return -1;
	}
	sid = json_object_is_type(src_id, json_type_string) ? json_object_get_string(src_id) : NULL;
	if (sid == NULL || json_get_obj(st->prompt, sid) == NULL) {
		char *key = sid ? prompt_py_repr(sid) : json_dumps(src_id);
		ex->type = "KeyError";
		snprintf(ex->msg, sizeof ex->msg, "%s", key);
		free(key);
		return -2;
	}
	src = nodes_find(json_get_str(json_get_obj(st->prompt, sid), "class_type"));
	if (!json_object_is_type(slot, json_type_int)) {
		ex->type = "TypeError";
		snprintf(ex->msg, sizeof ex->msg, "tuple indices must be integers or slices, not %s",
			 json_type_pyname(slot));
		return -2;
	}
	k = json_object_get_int64(slot);
	if (src == NULL || k < 0 || (size_t)k >= src->noutputs) {
		ex->type = "IndexError";
		snprintf(ex->msg, sizeof ex->msg, "tuple index out of range");
		return -2;
	}
	if (!types_match(src->outputs[k], in->type)) {
		char details[512];
		struct json_object *extra = extra_input(in, NULL);
		snprintf(details, sizeof details, "%s, received_type(%s) mismatch input_type(%s)",
			 in->name, src->outputs[k], in->type);
		json_put(extra, "received_type", json_str(src->outputs[k]));
		json_put(extra, "linked_node", json_object_get(link));
		json_object_array_add(errors, make_error("return_type_mismatch",
			"Return type mismatch between linked nodes", details, extra));
		return -1;
	}
	switch (validate_node(st, sid, depth + 1, &inner)) {
	case 0:
		return 0;
	case -1:
		return -1;
	default: {
		struct json_object *extra = extra_input(in, NULL);
		json_put(extra, "exception_message", json_str(inner.msg));
		json_put(extra, "exception_type", json_str(inner.type));
		json_put(extra, "traceback", json_object_new_array());
		json_put(extra, "linked_node", json_object_get(link));
		json_object_array_add(errors, make_error("exception_during_inner_validation",
			"Exception when validating inner node", inner.msg, extra));
		return -1;
	}
	}
}

/*
 * Returns 0 when the node is valid, -1 when it is not (its reasons, if it
 * has its own, are in its memo), -2 when an exception was raised (ex set).
 */
static int validate_node(struct vstate *st, const char *id, int depth, struct pyexc *ex)
{
	struct json_object *node = json_get_obj(st->prompt, id);
	struct json_object *inputs = json_get_obj(node, "inputs");
	const struct node_class *c = nodes_find(json_get_str(node, "class_type"));
	struct memo *m = memo_find(st, id);
	size_t idx;
	int valid = 1;

	if (m && m->state == 1)
		return m->valid ? 0 : -1;
	if (m || depth > VALIDATE_MAX_DEPTH || c == NULL) {
		ex->type = "RecursionError";
		snprintf(ex->msg, sizeof ex->msg, "maximum recursion depth exceeded");
		return -2;
	}
	m = memo_add(st, id);
	idx = (size_t)(m - st->memo);
	if (inputs == NULL) {
		inputs = json_object_new_object();
		json_put(node, "inputs", inputs);
	}
	for (size_t i = 0; i < c->ninputs; i++) {
		const struct node_input *in = &c->inputs[i];
		struct json_object *v = json_get(inputs, in->name);
		struct json_object *errs = st->memo[idx].errors;
		int rc;

		if (v == NULL) {
			if (in->required) {
				struct json_object *x = json_object_new_object();
				json_put(x, "input_name", json_str(in->name));
				json_object_array_add(errs, make_error("required_input_missing",
					"Required input is missing", in->name, x));
				valid = 0;
			}
			continue;
		}
		if (json_object_is_type(v, json_type_array))
			rc = check_link(st, in, v, errs, depth, ex);
		else
			rc = check_literal(in, inputs, v, errs);
		if (rc == -2) {
			/* The exception leaves this node unfinished, as in Python. */
			st->memo[idx].state = 1;
			st->memo[idx].valid = 0;
			return -2;
		}
		if (rc < 0)
			valid = 0;
	}
	st->memo[idx].state = 1;
	st->memo[idx].valid = valid;
	return valid ? 0 : -1;
}

/* Pass 1: class_type present and known; collect the output nodes. */
static int check_classes(struct json_object *prompt, const struct json_object *targets,
			 struct json_object *outputs, struct prompt_result *res)
{
	char details[600];

	json_object_object_foreach(prompt, id, node) {
		const char *ct = json_get_str(node, "class_type");
		const struct node_class *c;
		int wanted = targets == NULL;

		snprintf(details, sizeof details, "Node ID '#%s'", id);
		if (ct == NULL) {
			res->error = prompt_error_body("invalid_prompt",
				"Cannot execute because a node is missing the class_type property.",
				details, NULL);
			return -1;
		}
		c = nodes_find(ct);
		if (c == NULL) {
			char msg[600];
			snprintf(msg, sizeof msg, "Cannot execute because node %s does not exist.", ct);
			res->error = prompt_error_body("invalid_prompt", msg, details, NULL);
			return -1;
		}
		for (size_t i = 0; targets && i < json_object_array_length(targets); i++) {
			const char *t = json_object_get_string(json_object_array_get_idx(targets, i));
			if (t && strcmp(t, id) == 0)
				wanted = 1;
		}
		if (c->output_node && wanted)
			json_object_array_add(outputs, json_str(id));
	}
	return 0;
}

static void record_exception(struct vstate *st, const char *o, const struct pyexc *ex)
{
	struct memo *m = memo_find(st, o);
	struct json_object *x = json_object_new_object();

	if (m == NULL)
		m = memo_add(st, o);
	json_put(x, "exception_type", json_str(ex->type));
	json_put(x, "traceback", json_object_new_array());
	json_object_array_add(m->errors, make_error("exception_during_validation",
		"Exception when validating node", ex->msg, x));
	m->state = 1;
	m->valid = 0;
}

static void add_node_errors(struct vstate *st, const char *o, struct json_object *node_errors)
{
	for (size_t i = 0; i < st->nmemo; i++) {
		struct memo *m = &st->memo[i];
		struct json_object *ne;

		if (m->valid || json_object_array_length(m->errors) == 0)
			continue;
		ne = json_get_obj(node_errors, m->id);
		if (ne == NULL) {
			ne = json_object_new_object();
			json_put(ne, "errors", json_object_get(m->errors));
			json_put(ne, "dependent_outputs", json_object_new_array());
			json_put(ne, "class_type", json_str(json_get_str(json_get_obj(st->prompt, m->id), "class_type")));
			json_put(node_errors, m->id, ne);
		}
		json_object_array_add(json_get_arr(ne, "dependent_outputs"), json_str(o));
	}
}

int prompt_validate(struct json_object *prompt, const struct json_object *partial_targets,
		    struct prompt_result *res)
{
	struct vstate st = {.prompt = prompt};
	struct json_object *outputs = json_object_new_array(), *good = json_object_new_array();
	int rc = 0;

	memset(res, 0, sizeof *res);
	res->node_errors = json_object_new_object();
	if (check_classes(prompt, partial_targets, outputs, res) < 0) {
		rc = -1;
		goto out;
	}
	if (json_object_array_length(outputs) == 0) {
		res->error = prompt_error_body("prompt_no_outputs", "Prompt has no outputs", "", NULL);
		rc = -1;
		goto out;
	}
	for (size_t i = 0; i < json_object_array_length(outputs); i++) {
		const char *o = json_object_get_string(json_object_array_get_idx(outputs, i));
		struct pyexc ex = {0};
		int v = validate_node(&st, o, 0, &ex);

		if (v == -2)
			record_exception(&st, o, &ex);
		if (v == 0)
			json_object_array_add(good, json_str(o));
		else
			add_node_errors(&st, o, res->node_errors);
	}
	if (json_object_array_length(good) == 0) {
		res->error = prompt_error_body("prompt_outputs_failed_validation",
			"Prompt outputs failed validation", "", NULL);
		rc = -1;
	}
out:
	for (size_t i = 0; i < st.nmemo; i++) {
		free(st.memo[i].id);
		json_object_put(st.memo[i].errors);
	}
	free(st.memo);
	json_object_put(outputs);
	res->outputs = good;
	return rc;
}
