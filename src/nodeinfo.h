/*
 * nodeinfo.h - ComfyUI's node class descriptions (GET /object_info), read
 * for `fnrun check --deep` (check_deep_nodes.c) and for what users and
 * operators are told about a model's inputs (modelinfo.c, the catalog and
 * `fnrun docs`). Pure: no globals, no clock, no I/O; any thread.
 *
 * /object_info is {CLASS: {"input": {"required": {NAME: SPEC}, "optional":
 * {...}}, "display_name", "description", "category", ...}}, where SPEC is
 * [TYPE, {default, min, max, step, tooltip, options, ...}] or, for a legacy
 * combo, [[choice, ...], {...}]. A real ComfyUI's answer is several MB;
 * nodeinfo_summary() keeps only what the docs need, with every string and
 * list cut to a fixed size (docs/style.md §10).
 *
 * The summary (stored in the job store's model_nodes table, so its form is
 * a contract with older files: add keys, never rename them):
 *
 *   {"classes": N,                  how many classes the server has
 *    "names": [CLASS, ...],         their names, answer order (at most NODEINFO_MAX_NAMES)
 *    "names_cut": true|false,       1: more than that
 *    "used": {CLASS: {display_name?, category?, description?,
 *                     inputs: {NAME: INPUT}}},   each class the workflow uses that the server has
 *    "missing": [CLASS, ...]}       classes the workflow uses that the server does not have
 *
 * where INPUT is {type ("INT", "COMBO", "IMAGE"...), required, default?,
 * min?, max?, step? (finite numbers only), tooltip?, options? (a COMBO's
 * choices, as text), options_cut?}.
 */
#ifndef FNRUN_NODEINFO_H
#define FNRUN_NODEINFO_H

#include <json-c/json.h>
#include <stddef.h>

#include "err.h"

struct registry;

#define NODEINFO_MAX_NAMES 20000  /* class names kept in a summary */
#define NODEINFO_MAX_TEXT 1000    /* bytes of a tooltip, description or default string */
#define NODEINFO_MAX_OPTIONS 256  /* choices kept per COMBO input */
#define NODEINFO_MAX_DEPTH 64     /* JSON nesting accepted in an answer */

/* What kind of value an input takes. */
enum nodeinfo_kind {
	NODEINFO_INT,
	NODEINFO_FLOAT,
	NODEINFO_STRING,
	NODEINFO_BOOL,
	NODEINFO_COMBO,
	NODEINFO_LINK, /* anything else: a link from another node (IMAGE, MODEL...) */
};

/* One input of a class, as /object_info describes it. Borrowed from the answer. */
struct nodeinfo_input {
	int kind;                    /* enum nodeinfo_kind */
	const char *type;            /* as the server names it: "INT", "COMBO", "IMAGE", ... */
	int required;                /* 1: under "required"; 0: "optional" */
	struct json_object *opts;    /* {default, min, max, tooltip, options, ...}, or NULL */
	struct json_object *options; /* COMBO: the values it accepts, or NULL */
};

/*
 * Input name of class cls (one value of /object_info, or of a summary's
 * "used") into *in. Returns 0, or -1 when the class has no such input.
 */
int nodeinfo_input(struct json_object *cls, const char *name, struct nodeinfo_input *in);

/*
 * Parses a whole /object_info answer of len bytes. Not strict: Python's
 * json.dumps writes Infinity and NaN, and ComfyUI's answer may hold them.
 * Caller owns *out (json_object_put). -1 with ERR_INVALID when the text is
 * not a JSON object.
 */
int nodeinfo_parse(const char *text, size_t len, struct json_object **out, struct err *err);

/*
 * The summary above, of answer (a parsed /object_info) for a workflow that
 * uses the classes used[0..nused) (duplicates allowed). A new object;
 * caller owns it.
 */
struct json_object *nodeinfo_summary(struct json_object *answer, const char *const *used,
				     size_t nused);

/* The summary's description of input name of class cls, or NULL. Borrowed from summary. */
struct json_object *nodeinfo_summary_input(struct json_object *summary, const char *cls,
					   const char *name);

/* A model's summary, or NULL when none is known. Borrowed until the next change of the cache. */
typedef struct json_object *(*nodeinfo_lookup_fn)(const char *model_id, void *ud);

/*
 * Fills in what r's registry leaves empty in catalog (registry_catalog(r))
 * from the summaries of the models that bind each param (get(id, ud)),
 * field by field: a param's description is the first tooltip (models in
 * file order) that names no file, CUDA or model; min and max (int and
 * float params) the narrowest range every model's input accepts; a
 * string param's options the choices every COMBO it is bound to accepts;
 * the default (optional params without a random default) what runs when
 * the param is not given: the workflow's own value at the input, else the
 * input's default, and only when every model agrees. A field the registry
 * gives is never changed. Models without a summary are left out.
 */
void nodeinfo_enrich(struct json_object *catalog, const struct registry *r, nodeinfo_lookup_fn get,
		     void *ud);

#endif
