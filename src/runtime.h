/*
 * runtime.h - one interface for the ways a model server runs (docs/registry.md,
 * "runtime"): `process` (a child process in its own process group), `docker` (a
 * container through the Docker Engine API) and `external` (a server that
 * is already running at a URL, never started or stopped by us). The
 * runner uses only this interface; each runtime is one file.
 *
 * An instance's life, the same for every runtime:
 *
 *   runtime_start --> on_started (host, port: probe it now) --> ... --> on_exit
 *   runtime_start --> on_exit (it never came up; info.started stays 0)
 *   runtime_stop (SIGTERM, then SIGKILL after grace; 0: at once) --> on_exit
 *
 * on_exit runs exactly once for every instance runtime_start returned,
 * always later from the loop (never inside runtime_start or runtime_stop);
 * the instance is freed when it returns. runtime_start returning NULL
 * calls nothing.
 *
 * Health: runtime_health probes the instance's model server (the ComfyUI
 * client's GET /health; a runtime may probe otherwise). Logs: the model
 * server's output goes to spec.log_path; runtime_log_tail gives its last
 * lines for the operator log when an instance fails.
 */
#ifndef FNRUN_RUNTIME_H
#define FNRUN_RUNTIME_H

#include <stddef.h>
#include <stdint.h>

#include "comfy.h"
#include "err.h"

struct reg_model;
struct runtime_inst;

/* What to start. Strings are borrowed for the call. */
struct runtime_spec {
	const struct reg_model *model;
	const char *runner_id;  /* names the instance in logs and labels */
	int gpu;                /* GPU index to pin it to */
	const char *log_path;   /* its output is appended here (process, docker) */
	const char *run_dir;    /* process: its working directory (made if missing) */
	const char *out_dir;    /* process: {outdir}, where it writes outputs we take by link */
	const char *url;        /* external: the server this instance stands for */
	const char *bindir;     /* {bindir} in a process command */
	const char *configdir;  /* {configdir} */
};

struct runtime_cbs {
	/* Up: inst->host and inst->port are set; the caller probes it now. */
	void (*on_started)(struct runtime_inst *inst, void *ud);
	/*
	 * Gone, or never up. status: the exit code, -1 unknown; why: operator
	 * text, borrowed for the call. The instance is freed after it returns.
	 */
	void (*on_exit)(struct runtime_inst *inst, int64_t status, const char *why, void *ud);
};

struct runtime;

/* The part every runtime's instance shares; read-only for callers. */
struct runtime_inst {
	const struct runtime *rt;
	struct runtime_cbs cb;      /* private */
	void *ud;                   /* private */
	char host[64];              /* where the model server listens, once started */
	int port;
	int pid;                    /* process group leader; 0 when none */
	char container_id[80];      /* docker: the engine's id; "" otherwise */
	int started;                /* on_started ran */
};

/* A runtime: its functions. Private: call the runtime_* wrappers. */
struct runtime {
	const char *name;
	struct runtime_inst *(*start)(const struct runtime_spec *spec, const struct runtime_cbs *cb,
				      void *ud, struct err *err);
	void (*stop)(struct runtime_inst *inst, uint64_t grace_ms);
	struct comfy_call *(*health)(struct runtime_inst *inst, uint64_t timeout_ms, uint64_t tag,
				     comfy_health_fn cb, void *ud, struct err *err);
	void (*log_tail)(struct runtime_inst *inst, char *out, size_t n);
};

extern const struct runtime runtime_process;
extern const struct runtime runtime_docker;
extern const struct runtime runtime_external;

/* The runtime of a registry model (enum reg_runtime). */
const struct runtime *runtime_of(int reg_runtime);

/*
 * Starts an instance of spec.model's runtime. cb is copied. Returns the
 * instance (owned by the runtime until on_exit returns), or NULL with err
 * filled; then no callback is ever called.
 */
struct runtime_inst *runtime_start(const struct runtime_spec *spec, const struct runtime_cbs *cb,
				   void *ud, struct err *err);
/* Stops it: grace_ms for a clean exit, 0 kills at once. on_exit follows. Again: nothing. */
void runtime_stop(struct runtime_inst *inst, uint64_t grace_ms);
/* Probes its model server (see comfy_health). */
struct comfy_call *runtime_health(struct runtime_inst *inst, uint64_t timeout_ms, uint64_t tag,
				  comfy_health_fn cb, void *ud, struct err *err);
/* The last lines of its output into out ("" when none are known). */
void runtime_log_tail(struct runtime_inst *inst, char *out, size_t n);

/* ---- shared by the runtimes (runtime.c) ---- */

/* "http://host:port" of an instance. */
void runtime__base_url(const struct runtime_inst *inst, char *out, size_t n);
/* GET /health of the instance's base URL: the usual health op. */
struct comfy_call *runtime__health_http(struct runtime_inst *inst, uint64_t timeout_ms,
					uint64_t tag, comfy_health_fn cb, void *ud,
					struct err *err);
/* The last 8 lines of buf (len bytes) into out, newlines kept (log_q escapes them). */
void runtime__last_lines(const char *buf, size_t len, char *out, size_t n);
/* The last lines of the file at path, into out; "" when it cannot be read. */
void runtime__file_tail(const char *path, char *out, size_t n);

#endif
