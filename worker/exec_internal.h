/*
 * exec_internal.h - what the files of the exec model share: the compiled
 * templates and the class built from a config (exec_config.c builds it,
 * model_exec.c runs it). Not part of the public interface (model_exec.h).
 */
#ifndef FNRUN_EXEC_INTERNAL_H
#define FNRUN_EXEC_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "node.h"

#define EXEC_MAX_CONFIG (1024 * 1024) /* bytes of YAML */
#define EXEC_MAX_ARG (128 * 1024)     /* bytes of one argv entry (MAX_ARG_STRLEN) */
#define EXEC_MAX_STDIN (4 * 1024 * 1024)

/* One piece of a template: literal text, {output} or an input. */
enum { SEG_TEXT = -2, SEG_OUTPUT = -1 };
struct seg {
	int ref;    /* SEG_TEXT, SEG_OUTPUT, or an index into the inputs */
	char *text; /* SEG_TEXT: owned */
};

struct tmpl {
	struct seg *segs; /* owned */
	size_t nsegs;
};

/* What a node_input does not hold; strings owned, node_input borrows them. */
struct exec_input {
	char *name;
	char *def;      /* JSON text for /object_info; NULL: none */
	char *def_text; /* the default as command-line text; NULL: none */
	char *tooltip;
	char **options; /* COMBO: NULL-terminated */
	size_t max_length; /* STRING: characters; 0: no limit */
};

struct exec_kind {
	const char *name;    /* output.kind in the config */
	const char *ui_key;  /* key of the node's UI dict */
	const char *def_ext; /* extension when output.ext is absent */
};

struct exec_class {
	struct node_class nc;  /* nc.data points back here */
	char *name, *display_name, *category, *description;
	struct node_input *inputs; /* nc.inputs; strings borrowed from xin */
	struct exec_input *xin;
	size_t ninputs;
	struct tmpl *argv; /* one template per command entry */
	size_t argc;
	struct tmpl stdin_t;
	int has_stdin;
	const struct exec_kind *kind;
	char *ext, *prefix;
	uint64_t expected_ms, timeout_ms;
	struct exec_class *next; /* model_exec_load() list */
};

/*
 * Compiles the template s, whose placeholders are {output} and the names of
 * the n inputs in, into t. On error returns -1 with a reason in why (t is
 * cleaned up); the caller adds the location.
 */
int model_exec__tmpl_parse(struct tmpl *t, const char *s, const struct exec_input *in, size_t n,
			   char *why, size_t whylen);
/* Whether t holds the segment ref (SEG_OUTPUT or an input index). */
int model_exec__tmpl_has(const struct tmpl *t, int ref);
/* Frees what t owns and empties it. */
void model_exec__tmpl_cleanup(struct tmpl *t);

/* Python len(): code points of a UTF-8 string. */
size_t model_exec__utf8_chars(const char *s);

/* The node class's run() and cancel(); nc.run and nc.cancel of each class. */
void model_exec__run(struct node_ctx *ctx);
void model_exec__cancel(struct node_ctx *ctx);

#endif
