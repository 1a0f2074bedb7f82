/*
 * cli_model_internal.h - what the files of `fnrun new-model` and `fnrun
 * dry-run` share; not part of their public interface (cli_model.h).
 *
 * cli_model.c reads new-model's command line into a struct nm, splits the
 * command and types the inputs, then hands the struct to
 * cli_model__write() (cli_model_emit.c), which places, writes and checks
 * the exec config, the workflow and the registry text. cli_dry_run.c is
 * dry-run; it borrows the flag parser and the JSON printer. The invariants
 * of new-model are listed at the top of cli_model.c.
 *
 * Ownership: a struct nm owns every pointer in it unless its field says
 * borrowed; cli_model.c zeroes it and frees it (nm_cleanup()). The other
 * files fill fields of it, never free it.
 */
#ifndef FNRUN_CLI_MODEL_INTERNAL_H
#define FNRUN_CLI_MODEL_INTERNAL_H

#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "buf.h"
#include "err.h"
#include "json.h"
#include "registry.h"

#define NM_MAX_TEXT (4u << 20) /* bytes of a file read or written (the registry's own cap) */
#define NM_MAX_NAME 64         /* characters of a model id, an input name */
#define ALNUM "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

/* ---- flags: --name VALUE or --name=VALUE, from a table (cli_model.c) ---- */

struct strv {
	const char **v; /* borrowed strings; the array is owned */
	size_t n;
};

struct flag {
	const char *name;
	size_t off; /* of a const char * field, or of a struct strv when repeat */
	int repeat;
};

/*
 * Fills obj from argv (argv[0] the subcommand) and the one positional
 * argument into *pos. Returns 0, 1 for --help, or -1 after saying what is
 * wrong on stderr. The values stored are borrowed from argv; a repeated
 * flag's array is the caller's to free (free(strv.v)).
 */
int cli_model__flags_parse(int argc, char **argv, const struct flag *t, void *obj,
			   const char **pos);

/* 1 when s (n bytes) is a word of the blank-separated list (cli_model.c). */
int cli_model__word_in(const char *list, const char *s, size_t n);

/*
 * Appends o as JSON, two spaces per level, a list of scalars on one line
 * (["1", 0]); values as json_dump() writes them, hence as they are sent
 * (cli_model_emit.c). o is borrowed.
 */
void cli_model__json_pretty(struct buf *b, struct json_object *o, int depth);

/* ---- new-model's state (filled by cli_model.c, then cli_model_emit.c) ---- */

struct nm_opts {
	const char *id, *function, *command, *output, *ext, *quality, *dir, *registry;
	struct strv inputs; /* --input specs */
};

/* One placeholder: an exec input and, when bound, a param. */
struct nm_input {
	char *name;
	int type;         /* enum reg_type: STRING, INT, FLOAT, BOOLEAN (bool), COMBO (enum) */
	int given;        /* 1: typed by --input */
	char *min, *max;  /* INT, FLOAT: bounds as text, or NULL */
	char *def;        /* the default as text; NULL: none (STRING only: then required) */
	int random;       /* INT: the registry draws the default (def is the exec one) */
	char **options;   /* COMBO: NULL-terminated */
	int64_t max_length; /* STRING: characters; 0: none */
	int bound;        /* 1: a param of the function, bound to "1.inputs.NAME" */
};

/* An output kind: the name, the default extension, words that suggest it. */
struct nm_kind {
	const char *name, *ext, *words;
};

/* One of the three usual qualities of a new function. */
struct nm_quality {
	const char *key, *label, *typical;
};

struct nm {
	struct nm_opts o;
	char **words;            /* the command's argv; owned */
	size_t nwords;
	struct nm_input *in;     /* one per placeholder, first use first; owned */
	size_t nin;
	struct registry *reg;    /* --registry, loaded; or NULL */
	const struct reg_function *fn; /* the function when reg has it (borrowed) */
	const char *quality;     /* the model's quality key */
	const struct nm_kind *kind;
	const char *ext;
	char cls[NM_MAX_NAME + 8]; /* the node class */
	char *dir;               /* where the files go */
	char *reg_path;          /* --registry, resolved; or NULL */
	char *cfg_path, *wf_path; /* the two files */
	char *cfg_ref, *wf_ref;  /* their names in the model entry */
	int wrote_cfg, wrote_wf, made_wfdir; /* 1: created by this run (removed on failure) */
	char *text;              /* the registry with the entries, or the entries to paste */
	mode_t mode;             /* the registry file's */
};

/* Indexed by enum reg_type: the exec config's type, the registry's (cli_model.c). */
extern const char *const cli_model__exec_types[5];
extern const char *const cli_model__reg_types[5];
/* low, standard, high (cli_model.c). */
extern const struct nm_quality cli_model__qualities[3];

/*
 * After cli_model.c typed the inputs: picks the files' paths (making DIR),
 * refuses to overwrite anything, then writes the exec config and the
 * workflow and merges the registry (or prints the entries to paste).
 * Returns 0, or -1 with err set and every file this run created removed
 * (cli_model.c, invariant 1). Fills nm's paths, text and wrote_* fields.
 */
int cli_model__write(struct nm *nm, struct err *err);

/* What was done, and the commands to go on with, to out (cli_model_emit.c). */
void cli_model__print_next(const struct nm *nm, FILE *out);

#endif
