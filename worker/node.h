/*
 * node.h - the contract between the executor (run.c) and node classes
 * (nodes_image.c, model_sim.c, model_exec.c).
 *
 * A node class declares its inputs (as ComfyUI's INPUT_TYPES does), its
 * outputs and whether it is an output node, and a run function. The
 * executor validates and coerces inputs before run() is called, so a class
 * reads typed values with node_ctx_input() and never sees bad types.
 *
 * run() may finish synchronously or start asynchronous work on the loop
 * (timers, child processes). Either way it ends by calling exactly one of
 * node_ctx_done(), node_ctx_fail() or node_ctx_interrupted(). When the
 * prompt is interrupted while a node runs, the executor calls the class's
 * cancel() (if any), which must stop the work and then end the node with
 * node_ctx_interrupted(). Classes without cancel() are interrupted at the
 * next node boundary, as ComfyUI does.
 */
#ifndef FNRUN_NODE_H
#define FNRUN_NODE_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct json_object;
struct image;
struct node_ctx;

enum val_type {
	VAL_NONE = 0,
	VAL_INT,
	VAL_FLOAT,
	VAL_STRING,
	VAL_BOOL,
	VAL_IMAGE,  /* img: shared, reference-counted (image_ref/image_unref) */
	VAL_OPAQUE, /* any other link type (CONDITIONING, LATENT, AUDIO, ...) as text in s */
	VAL_VIDEO,  /* VIDEO: img the frames (as VAL_IMAGE), f the frames per second */
};

/* A value flowing into or out of a node. */
struct value {
	int type;          /* enum val_type */
	int64_t i;         /* VAL_INT; VAL_BOOL as 0/1 */
	double f;          /* VAL_FLOAT */
	char *s;           /* VAL_STRING, VAL_OPAQUE: owned, NUL-terminated */
	struct image *img; /* VAL_IMAGE, VAL_VIDEO: one reference owned by the value */
};

/* Frees what v owns and sets it to VAL_NONE. */
void value_clear(struct value *v);
/* A deep-enough copy: strings duplicated, images referenced. */
void value_copy(struct value *dst, const struct value *src);
/* str() of the value as Python would print it ("128", "1.5", "True"). */
char *value_to_text(const struct value *v);

/*
 * One declared input, as in INPUT_TYPES. type is "INT", "FLOAT", "STRING",
 * "BOOLEAN", "COMBO" (legacy list combo: options checked at submit), or a
 * link type such as "IMAGE", "CONDITIONING", "LATENT", "AUDIO" or "*".
 */
struct node_input {
	const char *name;
	const char *type;
	int required;               /* 1: in "required", 0: in "optional" */
	const char *def;            /* default as JSON text ("512", "\"x\"", "true"); NULL: none */
	int has_min, has_max;
	double min, max, step;      /* step 0: not declared */
	const char *const *options; /* COMBO: NULL-terminated list */
	int multiline;              /* STRING shown as a text area */
	int control_after_generate; /* INT seeds: the UI's "control_after_generate" */
	const char *tooltip;        /* may be NULL */
	const char *display;        /* UI hint such as "color"; may be NULL */
};

struct node_class {
	const char *name;         /* class_type, e.g. "SaveImage" */
	const char *display_name; /* NULL: null in /object_info, as ComfyUI's V3 nodes */
	const char *category;     /* e.g. "image" */
	const char *description;
	const char *python_module; /* what /object_info shows, e.g. "nodes" */
	const struct node_input *inputs;
	size_t ninputs;
	const char *const *outputs;      /* output types, e.g. {"IMAGE"} */
	const char *const *output_names; /* NULL: same as outputs */
	size_t noutputs;
	int output_node;                 /* OUTPUT_NODE = True */
	/*
	 * Hidden inputs ComfyUI passes without a link ("prompt",
	 * "extra_pnginfo", "unique_id"), NULL-terminated; NULL: none.
	 */
	const char *const *hidden;
	int v3;                          /* a V3 node: /object_info adds its extra keys */
	/* Starts the node; see the file comment. Never NULL. */
	void (*run)(struct node_ctx *ctx);
	/* Stops asynchronous work; ends with node_ctx_interrupted(). May be NULL. */
	void (*cancel)(struct node_ctx *ctx);
	void *data; /* class-specific, e.g. an exec command template */
};

/* --- The node registry (nodes.c). Classes are borrowed; they must outlive
 * the registry (static tables, or freed by their module at exit). --- */
void nodes_register(const struct node_class *c);
const struct node_class *nodes_find(const char *name);
size_t nodes_count(void);
const struct node_class *nodes_at(size_t i); /* registration order */
/* /object_info's entry for one class. Caller owns the result. */
struct json_object *nodes_object_info(const struct node_class *c);
void nodes_reset(void);
/* One input's spec as /object_info shows it: [TYPE, {options}]. Caller owns it. */
struct json_object *nodes_input_spec(const struct node_input *in);

/* --- Services the executor gives a running node (run.c). --- */

/* The coerced value of a declared input, or NULL when an optional input is absent. */
const struct value *node_ctx_input(struct node_ctx *ctx, const char *name);
/* Shorthands: the typed value, or def when absent. Strings are borrowed. */
int64_t node_ctx_int(struct node_ctx *ctx, const char *name, int64_t def);
double node_ctx_float(struct node_ctx *ctx, const char *name, double def);
const char *node_ctx_str(struct node_ctx *ctx, const char *name, const char *def);
/* Sets output slot idx; takes ownership of what v holds. */
void node_ctx_set_output(struct node_ctx *ctx, size_t idx, struct value *v);
/* Sets the node's UI result ({"images": [...]}); takes ownership. */
void node_ctx_set_ui(struct node_ctx *ctx, struct json_object *ui);
/* Sends a `progress` message (value of max) for this node. */
void node_ctx_progress(struct node_ctx *ctx, double value, double max);
/* Sends a binary TEXT frame (type 3) keyed by this node's id to every socket. */
void node_ctx_text(struct node_ctx *ctx, const char *text);
/* Ends the node successfully. */
void node_ctx_done(struct node_ctx *ctx);
/*
 * Ends the node with an execution_error. exc_type is the Python-style class
 * name ("torch.OutOfMemoryError", "RuntimeError"); message the exception
 * text; traceback lines may be NULL. Copies its arguments.
 */
void node_ctx_fail(struct node_ctx *ctx, const char *exc_type, const char *message,
		   const char *const *traceback, size_t ntraceback);
/* Ends the node because of an interrupt (execution_interrupted). */
void node_ctx_interrupted(struct node_ctx *ctx);
/* 1 once the running prompt has been asked to stop. */
int node_ctx_interrupt_requested(struct node_ctx *ctx);

uv_loop_t *node_ctx_loop(struct node_ctx *ctx);
const char *node_ctx_node_id(struct node_ctx *ctx);
const char *node_ctx_prompt_id(struct node_ctx *ctx);
/* The whole validated prompt (for PNG metadata). Borrowed. */
const struct json_object *node_ctx_prompt(struct node_ctx *ctx);
/* Per-node scratch for asynchronous classes; the class frees it before ending. */
void *node_ctx_state(struct node_ctx *ctx);
void node_ctx_set_state(struct node_ctx *ctx, void *state);

/*
 * Picks the next free file name as ComfyUI's get_save_image_path does:
 * prefix "a/b" saves in subfolder "a" as "b_00001_.<ext>", the counter being
 * 1 + the highest existing one. temp selects the temp directory (type
 * "temp") instead of the output directory. Creates the subfolder. Fills
 * path (full path), filename and subfolder. Returns 0, or -1 with a message
 * in errbuf when the prefix escapes the directory.
 */
struct save_path {
	char path[4096];
	char filename[256];
	char subfolder[1024];
	const char *type; /* "output" or "temp" */
};
int node_ctx_save_path(struct node_ctx *ctx, const char *prefix, const char *ext,
		       int temp, struct save_path *out, char *errbuf, size_t errlen);

/* Worker settings a node may read (worker.c fills them from flags). */
struct worker_settings {
	const char *output_dir; /* absolute */
	const char *temp_dir;   /* absolute */
	unsigned step_ms;       /* sim: default time per sampler step, ms */
	const char *fail_mode;  /* sim: "none", "oom", "crash", "hang" for every job */
	uint64_t vram_bytes;    /* sim: GPU memory it claims to use */
};
const struct worker_settings *node_settings(void);

#endif
