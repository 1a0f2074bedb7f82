/*
 * model_exec.h - the exec model: node classes that run a command-line
 * generator declared in a YAML config (format: model_exec.c, top comment;
 * examples/worker-espeak.yaml).
 *
 * model_exec_load() registers one output node class per declared node. Its
 * run() fills an argv template with the node's inputs (never a shell
 * string), runs the command in its own process group and returns the file
 * it wrote through the node's UI result ("images", "audio" or "video").
 *
 * The argv builder and the process runner are exported so tests can reach
 * them without an executor.
 */
#ifndef FNRUN_MODEL_EXEC_H
#define FNRUN_MODEL_EXEC_H

#include <stdint.h>
#include <stdio.h>
#include <uv.h>

#include "err.h"
#include "node.h"

/*
 * Parses and validates the config at path, then registers its classes with
 * nodes_register(). Errors are ERR_INVALID (or ERR_IO when the file cannot
 * be read) with a message "path:line:col: key.path: what is wrong; allowed:
 * ...". On error nothing is registered and nothing is kept. May be called
 * more than once (several configs); class names must stay unique.
 */
int model_exec_load(const char *path, struct err *err);

/*
 * `fnrun-worker --check PATH`: parses and validates the config at path as
 * model_exec_load() does, registering nothing, then checks that each
 * node's program can be run (a path: an executable file; a bare name:
 * found on PATH). Writes each error to out as
 * "path:line:col: key.path: what is wrong; ..." and returns their count
 * (0: valid). The parse stops at its first error, as loading does.
 */
int model_exec_check(const char *path, FILE *out);

/* Frees every loaded class. Call once the registry no longer uses them. */
void model_exec_unload(void);

/* One input value as command-line text, for model_exec_build_argv(). */
struct model_exec_value {
	const char *name; /* input name as declared */
	const char *text; /* the value as text; NULL: absent */
};

/*
 * Builds the argv of class c (one registered by model_exec_load()): each
 * template entry with {output} replaced by output_path and {<input>} by the
 * matching vals[i].text. An absent input gives its default; without one,
 * "" when it is optional and ERR_INVALID when it is required. Every entry
 * stays exactly one argument: no shell, no splitting. Also fails with
 * ERR_INVALID when c is not an exec class. Caller owns *argv_out (NULL-terminated); free with
 * model_exec_free_argv().
 */
int model_exec_build_argv(const struct node_class *c, const struct model_exec_value *vals,
			  size_t nvals, const char *output_path, char ***argv_out,
			  struct err *err);
void model_exec_free_argv(char **argv);

/*
 * The stdin text of class c, filled as model_exec_build_argv() fills argv.
 * *out is NULL when the class declares no stdin. Caller frees *out.
 */
int model_exec_build_stdin(const struct node_class *c, const struct model_exec_value *vals,
			   size_t nvals, const char *output_path, char **out, struct err *err);

/* --- The process runner behind run(); exported for tests. --- */

enum model_exec_outcome {
	MODEL_EXEC_OK,          /* exit 0 and a non-empty regular output file */
	MODEL_EXEC_FAILED,      /* message says what happened; output removed */
	MODEL_EXEC_INTERRUPTED, /* model_exec_job_cancel(); output removed */
};

struct model_exec_job_opts {
	char *const *argv;      /* borrowed for the call; argv[0] is the program */
	const char *stdin_text; /* copied; NULL: stdin is /dev/null */
	const char *output;     /* the file the command writes; copied */
	uint64_t expected_ms;   /* elapsed-time progress scale; 0: none */
	uint64_t timeout_ms;    /* kill after this long; 0: never */
	uint64_t grace_ms;      /* SIGTERM to SIGKILL, and exit to pipe drain */
	/* Progress: from "PROGRESS n/m" lines on stdout, else elapsed time. */
	void (*on_progress)(void *arg, double value, double max);
	/* Called exactly once; message is NULL for MODEL_EXEC_OK. Borrowed. */
	void (*on_end)(void *arg, int outcome, const char *message);
	void *arg;
};

struct model_exec_job;

/*
 * Spawns argv in a new process group on loop. Returns the job, valid until
 * on_end has been called (the job frees itself once its handles close), or
 * NULL with err set when the spawn fails; then on_end is never called.
 */
struct model_exec_job *model_exec_job_start(uv_loop_t *loop, const struct model_exec_job_opts *o,
					    struct err *err);
/*
 * SIGTERM to the group, SIGKILL after grace_ms; ends the job with
 * MODEL_EXEC_INTERRUPTED once the process has exited.
 */
void model_exec_job_cancel(struct model_exec_job *j);

#endif
