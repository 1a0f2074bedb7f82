/*
 * check_deep_internal.h - what the files of `fnrun check --deep` share; not
 * part of its interface (check_deep.h).
 *
 * check_deep.c walks the models and keeps the findings and the registry's
 * YAML (for positions); check_deep_server.c gets a model server's node
 * classes (GET /object_info), starting a process model's server for it;
 * check_deep_nodes.c compares them with the model's workflow and binds.
 */
#ifndef FNRUN_CHECK_DEEP_INTERNAL_H
#define FNRUN_CHECK_DEEP_INTERNAL_H

#include <json-c/json.h>
#include <stddef.h>
#include <yaml.h>

#include "registry.h"

/* One line of the report. */
struct check_deep__finding {
	size_t line, col; /* 1-based; 0 when unknown */
	size_t seq;       /* order found, to keep the sort stable */
	int note;         /* 1: not an error (docker: not started) */
	char *msg;        /* the whole line, owned */
};

/* One run of the check. */
struct check_deep {
	const char *file;     /* the registry path, as given; borrowed */
	struct registry *r;   /* loaded; one reference held */
	yaml_document_t doc;  /* the same file, for positions */
	char *bindir;         /* for {bindir}: the directory of this binary; owned */
	char *configdir;      /* for {configdir}: the registry's, absolute; owned */
	struct check_deep__finding *v; /* owned */
	size_t n;
};

/*
 * Records "FILE:LINE:COL: what" at node at (NULL: 0:0); note 1 for a line
 * that is not an error. what starts with the key path, e.g.
 * "models.m.bind.seed: ...".
 */
__attribute__((format(printf, 4, 5))) void check_deep__add(struct check_deep *d,
							   const yaml_node_t *at, int note,
							   const char *fmt, ...);

/* Positions in the registry's YAML; all borrowed from d->doc, NULL when absent. */
yaml_node_t *check_deep__node(struct check_deep *d, int i);
/* The value of key in map n; its key node in *k (k may be NULL). */
yaml_node_t *check_deep__map(struct check_deep *d, const yaml_node_t *n, const char *key,
			     yaml_node_t **k);
/* Item i of list n. */
yaml_node_t *check_deep__seq(struct check_deep *d, const yaml_node_t *n, size_t i);
/* A scalar's text; "" for anything else. */
const char *check_deep__text(const yaml_node_t *n);
/* Model id's map; its key node in *k (k may be NULL). */
yaml_node_t *check_deep__model(struct check_deep *d, const char *id, yaml_node_t **k);
/* The key node of key in model id's map; the model's own key when key is NULL or absent. */
yaml_node_t *check_deep__model_key(struct check_deep *d, const char *id, const char *key);

/* A whole file of at most max bytes, NUL-terminated; NULL on error. Caller frees. */
char *check_deep__read_file(const char *path, size_t max, size_t *len);
/* The signal (SIGINT, SIGTERM, SIGHUP) that asked the check to stop, or 0. */
int check_deep__interrupted(void);

/*
 * check_deep_server.c: model m's node classes, from its server's GET
 * /object_info (the JSON object of class name to description; caller owns,
 * json_object_put), or NULL after recording why not. A process model's
 * command is checked first (its program, the files it names, an
 * fnrun-worker exec config), then its server started once and stopped.
 */
struct json_object *check_deep__server_info(struct check_deep *d, const struct reg_model *m);

/*
 * check_deep_nodes.c: records where m's workflow and binds do not fit the
 * node classes in info: unknown class types, inputs a node lacks, param
 * types and ranges the inputs do not take.
 */
void check_deep__nodes(struct check_deep *d, const struct reg_model *m, struct json_object *info);

#endif
