/*
 * prompt.h - validation of an API-format workflow ("prompt") exactly as
 * ComfyUI 0.3.64's validate_prompt does it: the same checks, in the same
 * order, with the same error types, messages and node_errors aggregation.
 */
#ifndef FNRUN_PROMPT_H
#define FNRUN_PROMPT_H

struct json_object;

struct prompt_result {
	struct json_object *outputs;     /* ids of the output nodes to execute */
	struct json_object *node_errors; /* {id: {errors, dependent_outputs, class_type}} */
	struct json_object *error;       /* NULL when some output is valid */
};

/*
 * Validates prompt and coerces its literal inputs in place (INT via int(),
 * "__value__" unwrapped, ...). partial_targets, when not NULL, is an array
 * of output node ids to restrict to. Returns 0 when at least one output is
 * valid (res->node_errors may still list the invalid ones), -1 otherwise
 * (res->error set). Either way the caller owns res's objects; release them
 * with prompt_result_cleanup().
 */
int prompt_validate(struct json_object *prompt, const struct json_object *partial_targets,
		    struct prompt_result *res);
void prompt_result_cleanup(struct prompt_result *res);
/* {"error": ..., "node_errors": ...}, the 400 body; caller owns it. */
struct json_object *prompt_error_body(const char *type, const char *message,
				      const char *details, struct json_object *node_errors);
/* str() of a JSON value as Python prints it ({'a': True}). Caller frees. */
char *prompt_py_str(const struct json_object *v);
/* Python's repr() of a string: 'text'. Caller frees. */
char *prompt_py_repr(const char *s);

#endif
