/*
 * runner.h - one running instance of a model: its model server (through
 * the runtime interface, runtime.h), its health, its /ws session, and the
 * ComfyUI calls for the one job it holds (comfy.h). The runner decides
 * nothing about jobs: it reports to its owner through the callbacks it was
 * given at start, and the owner (the scheduler) decides what follows.
 *
 * Runner lifecycle (one function per transition, each through set_state,
 * which logs it):
 *
 *   STARTING --probe ok, /ws open (on_ws_open)--> READY <--> BUSY
 *              (runner_assign / the job's end: end_job)
 *   READY/BUSY --runner_drain--> DRAINING (ends its job, takes none) --> STOPPING
 *   READY/STARTING --runner_stop (idle, evicted, shutdown)--> STOPPING --exit--> gone
 *   any --exit, start timeout, hang, failed probes (runner_fail)--> FAILED --exit--> gone
 *
 * Attempts: every job handed over carries a ticket (the scheduler's
 * attempt number) that comes back with every report about it; inside,
 * every call to the model server carries the runner's generation, bumped
 * at each assignment and at each job's end, so an answer that arrives
 * after its job ended (a late POST /prompt reply, a frame, a /history) is
 * dropped with a debug line and never reported.
 *
 * With the model's free_after_job, each job the model server ran is
 * followed by POST /free; the next job's prompt waits for its answer, so
 * the server has the request before the next prompt.
 *
 * Reports, in order for one job: on_running (once), on_progress (any),
 * then exactly one of on_done and on_job_error; on_job_error with
 * RUNNER_ERR_LOST when the runner fails while it holds the job. on_gone
 * comes once, after the model server has exited (its GPU memory is free);
 * the runner is freed soon after and must not be used once on_gone ran.
 */
#ifndef FNRUN_RUNNER_H
#define FNRUN_RUNNER_H

#include <stdint.h>
#include <uv.h>

#include "err.h"

struct reg_model;
struct json_object;
struct runner;
struct runtime_inst;
struct comfy_ws;
struct comfy_call;
struct comfy_fetch;
struct runner_seen;

enum runner_state {
	RUNNER_STARTING,
	RUNNER_READY,
	RUNNER_BUSY,
	RUNNER_STOPPING,
	RUNNER_FAILED,
	RUNNER_DRAINING,
};

enum runner_err {
	RUNNER_ERR_MODEL,       /* execution_error from the model server */
	RUNNER_ERR_REJECTED,    /* the model server refused the workflow (4xx) */
	RUNNER_ERR_TRANSPORT,   /* the model server could not be reached */
	RUNNER_ERR_INTERRUPTED, /* execution_interrupted */
	RUNNER_ERR_OUTPUT,      /* an output could not be copied */
	RUNNER_ERR_LOST,        /* the runner failed (exit, hang, probes) holding the job */
};

struct runner_cbs {
	/*
	 * The model server runs (pid or container known): record it for orphan
	 * cleanup. For a process this runs inside runner_start, right after
	 * the spawn; for a container once the engine named it.
	 */
	void (*on_spawned)(struct runner *r, void *ud);
	/* The probe passed and the /ws session is open: it takes jobs. */
	void (*on_ready)(struct runner *r, void *ud);
	/* The model server accepted the job's prompt (or reported on it). */
	void (*on_running)(struct runner *r, uint64_t ticket, void *ud);
	void (*on_progress)(struct runner *r, uint64_t ticket, double value, double max, void *ud);
	/* The prompt finished and its outputs were copied; takes ownership of outputs. */
	void (*on_done)(struct runner *r, uint64_t ticket, struct json_object *outputs, void *ud);
	/* The job ended without a result (enum runner_err); texts borrowed. */
	void (*on_job_error)(struct runner *r, uint64_t ticket, int kind, const char *exc_type,
			     const char *detail, void *ud);
	/*
	 * The model server is gone. failed: 1 when it crashed, hung or failed
	 * its start or probes; 0 when it was stopped. during_start: it never
	 * became ready. why is borrowed.
	 */
	void (*on_gone)(struct runner *r, const char *why, int failed, int during_start, void *ud);
};

/* Where a runner lives; strings borrowed for runner_start. */
struct runner_env {
	const char *logs_dir;   /* <logs_dir>/<runner id>.log */
	const char *runs_dir;   /* process: <runs_dir>/<runner id> is its working dir */
	const char *out_root;   /* outputs are copied under <out_root>/<job id>/ */
	const char *bindir;
	const char *configdir;
	double time_scale;      /* multiplies timeouts (tests) */
	int64_t stop_grace_ms;  /* SIGTERM to SIGKILL */
};

/* A job handed to a runner. */
struct runner_job {
	uint64_t ticket;              /* comes back with every report */
	const char *job_id;           /* copied */
	const char *stem;             /* its output files' names: outputs_stem(); copied */
	const char *prompt_id;        /* the model server's id for this attempt; copied */
	struct json_object *workflow; /* the bound workflow; taken */
};

/* Read-only for callers. */
struct runner {
	char id[32];                   /* "r<seq>-<pid of fnrun>" */
	const struct reg_model *model; /* borrowed: its registry outlives the runner */
	int state;                     /* enum runner_state */
	int gpu;                       /* GPU index it is pinned to */
	char base_url[160];            /* http://host:port, once started */
	int port;                      /* where the model server listens, once known; else 0 */
	int pid;                       /* process runtime: the model server's pid; else 0 */
	char container_id[80];         /* docker runtime: the container; else "" */
	char url[300];                 /* external: the URL it stands for; else "" */
	char log_path[4096];           /* where its model server's output goes (logs/<model>/<id>.log) */
	int64_t started_ms, ready_ms, last_used_ms; /* wall clock; 0 when not yet */
	char job_id[64];               /* the job it holds, "" when none */
	char out_stem[96];             /* that job's output names: outputs_stem() */
	/* private */
	uint64_t ticket;               /* the job's ticket while it holds one */
	uint64_t gen;                  /* bumped at each assignment and job end */
	char *prompt_id;               /* of the job it holds */
	int reported_running, fetching;
	struct runner_seen *seen;      /* what the /ws session told of the job's prompt */
	struct runner_cbs cb;
	void *ud;
	struct runner_env env;         /* copied strings */
	char *local_out;               /* {outdir}: its outputs are linked from here; or NULL */
	struct runtime_inst *inst;     /* until the runtime's on_exit */
	struct comfy_ws *ws;           /* until its on_close */
	struct comfy_call *probe, *submit;
	struct comfy_call *stale;      /* a POST whose prompt ended before its reply */
	uint64_t stale_gen;
	struct comfy_fetch *fetch;
	struct comfy_call *freeing;    /* POST /free after the last job (free_after_job) */
	struct json_object *deferred;  /* the job's bound workflow, sent once that answered */
	uv_timer_t timer;              /* start probes and start timeout */
	uv_timer_t watchdog;           /* no message while busy for step_timeout */
	uv_timer_t health;             /* periodic probe while ready */
	int timers_open;
	int probes, health_failures;
	int gone;                      /* on_gone ran */
	char fail_reason[600];
};

/*
 * Starts a runner for model pinned to gpu; url is the external server it
 * stands for (external runtime; NULL otherwise). cb is copied; ud comes
 * back with every callback. Returns NULL, with err, when the runtime
 * refuses (then no callback is ever called). The runner is freed by this
 * module after on_gone.
 */
struct runner *runner_start(const struct reg_model *model, int gpu, const char *url,
			    const struct runner_env *env, const struct runner_cbs *cb, void *ud,
			    struct err *err);
/* Hands job to a READY runner, which becomes BUSY and submits its prompt. */
void runner_assign(struct runner *r, const struct runner_job *job);
/* Asks the model server to stop the job's prompt (a cancel); nothing when idle. */
void runner_interrupt(struct runner *r);
/* Takes no new job; stops once its job (if any) has ended. */
void runner_drain(struct runner *r, const char *why);
/* Stops the model server (SIGTERM to its group, SIGKILL after the grace time). */
void runner_stop(struct runner *r, const char *why);
/* READY without a job. */
int runner_idle(const struct runner *r);
const char *runner_state_name(int state);

#endif
