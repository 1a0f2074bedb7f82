/*
 * registry_internal.h - what the files of the registry share; not part of
 * its public interface (registry.h).
 *
 * registry.c loads a registry with registry__parse() (registry_parse.c),
 * which walks the YAML with the key tables and value readers of
 * registry_yaml.c and hands the models section to registry_model.c. Every
 * reader reports its own error at the node in hand, under the dotted key
 * path in pctx, and the walk goes on (so `fnrun check` lists them all).
 */
#ifndef FNRUN_REGISTRY_INTERNAL_H
#define FNRUN_REGISTRY_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <yaml.h>

#include "registry.h"

/*
 * Parses path into the zeroed r, appending every error to the list in
 * *errs. Returns the error count.
 */
struct registry__errors {
	struct registry__error {
		size_t line, col; /* 1-based; 0 when the file has no position */
		size_t seq;       /* order found, to keep the sort stable */
		int code;         /* enum err_code */
		char *msg;        /* full "FILE:LINE:COL: ..." text */
	} *v;
	size_t n;
};
size_t registry__parse(struct registry *r, const char *path, struct registry__errors *errs);
/* What p accepts, e.g. "must be an integer from 256 to 2048". */
void registry__describe(const struct reg_param *p, char *buf, size_t size);
/* Characters (UTF-8 code points) in s. */
size_t registry__utf8_len(const char *s);

/* ---- the parse (registry_yaml.c unless said otherwise) ---- */

#define SIZE_MAX_BYTES (1LL << 50)  /* largest size a registry may give: 1 PiB */

struct pctx {
	const char *file;                /* the registry path, for messages */
	char *dir;                       /* its directory, for workflow paths */
	yaml_document_t doc;
	struct registry *r;              /* being built */
	struct registry__errors *errs;   /* where errors go */
	yaml_node_t **model_nodes;       /* each model's map, as r->models */
	char path[512];                  /* dotted path of the key in hand */
	size_t plen;
};

enum key_type {
	KEY_STR,      /* non-empty string -> char * */
	KEY_INT,      /* integer in [min, max] -> int64_t */
	KEY_BOOL,     /* true | false -> int */
	KEY_DURATION, /* "300s", "5m", "250ms", "1h" in [min, max] ms -> int64_t */
	KEY_SIZE,     /* "12GB", "512MB", a byte count in [min, max] -> int64_t */
	KEY_ENUM,     /* one of options -> int, the option's index */
	KEY_MAP,      /* a nested table `sub`, fields in the same object */
	KEY_FN,       /* parsed by fn(c, value, object) */
	KEY_LATER,    /* allowed here; parsed by the table's owner afterwards */
};

struct key_spec {
	const char *name;
	int type;                   /* enum key_type */
	int required;
	int64_t min, max;           /* KEY_INT, KEY_DURATION (ms), KEY_SIZE (bytes) */
	int64_t def;                /* default of a number, bool or enum */
	const char *sdef;           /* default of a KEY_STR, or NULL */
	size_t off;                 /* the field's offset in the object */
	const char *const *options; /* KEY_ENUM, NULL-terminated */
	const struct key_spec *sub; /* KEY_MAP */
	void (*fn)(struct pctx *c, yaml_node_t *v, void *obj); /* KEY_FN */
	const char *help;           /* what to write, for "is required" */
};

/* A comma-separated list for messages, cut with "..." when long. */
struct strlist {
	char s[320];
	size_t len;
	int cut;
};


void registry__sl_add(struct strlist *l, const char *item);

/* Appends an error; takes ownership of msg. */
void registry__add_error(struct registry__errors *e, int code, size_t line, size_t col,
			 char *msg);
/* Records "FILE:LINE:COL: path: what" at node n. */
__attribute__((format(printf, 3, 4))) void registry__perr(struct pctx *c, const yaml_node_t *n,
							  const char *fmt, ...);
/* Appends ".key" to the path; returns what registry__path_pop() needs. */
size_t registry__path_push(struct pctx *c, const char *key);
/* Appends "[i]" to the path; returns what registry__path_pop() needs. */
size_t registry__path_push_index(struct pctx *c, size_t i);
void registry__path_pop(struct pctx *c, size_t old);

yaml_node_t *registry__get_node(struct pctx *c, int i);
int registry__is_map(const yaml_node_t *n);
int registry__is_seq(const yaml_node_t *n);
/* The text of a scalar that is not null, else NULL. Borrowed. */
const char *registry__scalar(const yaml_node_t *n);
/* The value under key in map n, or NULL. */
yaml_node_t *registry__map_get(struct pctx *c, const yaml_node_t *n, const char *key);
size_t registry__seq_len(const yaml_node_t *n);
size_t registry__map_len(const yaml_node_t *n);
/* A plain integer or number scalar into *v; -1 (nothing reported) if not one. */
int registry__scalar_int(const yaml_node_t *n, int64_t *v);
int registry__scalar_num(const yaml_node_t *n, double *v);

/* Value readers: each reports its own error and returns -1. */
int registry__read_str(struct pctx *c, yaml_node_t *n, char **out);
int registry__read_int(struct pctx *c, yaml_node_t *n, int64_t min, int64_t max, int64_t *out);
int registry__read_bool(struct pctx *c, yaml_node_t *n, int *out);
/* A map key naming something: non-empty, letters, digits and `extra`. */
const char *registry__read_name(struct pctx *c, yaml_node_t *k, const char *extra,
				const char *what);

/* Sets every field of table t in obj to its default (KEY_STR: a copy). */
void registry__apply_defaults(const struct key_spec *t, void *obj);
/*
 * Applies table t to map n: reports unknown, duplicate and missing keys and
 * parses the simple values into obj; KEY_LATER keys are left to the caller.
 */
void registry__parse_map(struct pctx *c, yaml_node_t *n, const struct key_spec *t, void *obj);
/* registry_calibrate.c: a function's calibration (its params are parsed by then). */
void registry__parse_calibration(struct pctx *c, yaml_node_t *fnode, struct reg_function *f);
/* registry_calibrate.c: each model of quality auto can be calibrated (all models known). */
void registry__check_auto(struct pctx *c);
/* registry_rollout.c: a model's rollout rule (every model is parsed by then). */
void registry__parse_rollout(struct pctx *c, yaml_node_t *n, struct reg_model *m);
/* Reads a whole file of at most max bytes; NULL with errno set. Caller frees. */
char *registry__read_file(const char *path, size_t max, size_t *len);

/* registry_parse.c: the param of f called name, or NULL. */
const struct reg_param *registry__find_param(const struct reg_function *f, const char *name);
/* registry_parse.c: f's quality keys, for messages. */
void registry__quality_keys_list(const struct reg_function *f, struct strlist *l);

/* registry_model.c: the models section, then (once all are known) fallbacks. */
void registry__parse_models(struct pctx *c, yaml_node_t *n);
void registry__parse_fallbacks(struct pctx *c);

#endif
