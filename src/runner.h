/*
 * runner.h - one running instance of a model: its model server (a child
 * process, or an external URL), its health probe, its WebSocket to the
 * model server, and the ComfyUI client calls for the job it holds.
 *
 * Runner lifecycle (one function per transition):
 *
 *   STARTING --probe ok + ws open (on_ws_open)--> READY <--> BUSY (runner_assign / runner_release)
 *   READY/BUSY --runner_drain--> DRAINING (finishes its job, takes none) --runner_stop--> STOPPING
 *   STARTING --exit or start timeout (runner_fail)--> FAILED --> freed
 *   READY/BUSY/DRAINING --exit, hang, failed health probes (runner_fail)--> FAILED --> freed
 *   READY --idle timeout, eviction, shutdown (runner_stop)--> STOPPING --exit--> freed
 *
 * Every transition goes through runner_set_state(), which logs it.
 *
 * The scheduler owns the decisions; a runner reports through the sched_on_*
 * callbacks in sched.c. A runner is freed only after its process has exited
 * and every handle is closed.
 */
#ifndef FNRUN_RUNNER_H
#define FNRUN_RUNNER_H

#include <stdint.h>
#include <uv.h>

struct reg_model;
struct sjob;
struct wsc;
struct httpc_call;
struct json_object;
struct fetch;
struct docker_ctr;

/* Results of runner_fetch_result. */
enum runner_result {
	RESULT_OK,          /* outputs copied */
	RESULT_ERROR,       /* execution_error: exc_type, msg */
	RESULT_INTERRUPTED,
	RESULT_OUTPUT_LOST, /* the history said success, a file could not be copied */
	RESULT_MISSING,     /* the model server does not know the prompt */
	RESULT_UNREACHABLE, /* no answer */
};
/* outputs: owned by the callee, NULL unless RESULT_OK. */
typedef void (*runner_result_fn)(void *ud, int result, struct json_object *outputs,
				 const char *exc_type, const char *msg);

enum runner_state {
	RUNNER_STARTING,
	RUNNER_READY,
	RUNNER_BUSY,
	RUNNER_STOPPING,
	RUNNER_FAILED,
	RUNNER_DRAINING,
};

struct runner {
	char id[32];                  /* "r-<seq>-<pid of fnrun>" */
	char *model_id;               /* registry model id */
	const struct reg_model *model; /* borrowed from server.reg */
	int state;                    /* enum runner_state */
	int external;                 /* runtime external: never spawned or stopped */
	int port;
	char host[64];
	char base_url[128];           /* http://127.0.0.1:PORT */
	char client_id[40];           /* the clientId its prompts are sent with */
	uv_process_t proc;
	int pid;                      /* 0 when no process */
	int proc_open;                /* proc handle not yet closed */
	struct docker_ctr *ctr;       /* docker runtime: its container until on_exit, else NULL */
	struct wsc *ws;
	uv_timer_t timer;             /* probe, start timeout, idle stop */
	uv_timer_t watchdog;          /* no message while busy for step_timeout */
	uv_timer_t health;            /* periodic probe while ready */
	int health_failures;          /* consecutive failed probes */
	int probes;                   /* start probes so far */
	int gpu;                      /* GPU index it is pinned to */
	int64_t reserved;             /* bytes of GPU memory it holds in the budget */
	int64_t measured;             /* bytes NVML saw it use; 0 unknown */
	int timers_open;              /* timer handles not yet closed */
	struct httpc_call *call;      /* in-flight probe or submit */
	struct fetch *fetch;          /* in-flight result fetch */
	struct sjob *job;             /* while BUSY */
	int64_t started_ms, ready_ms, last_used_ms; /* wall clock */
	char *fail_reason;            /* operator text for FAILED */
	struct runner *next;          /* in the scheduler's list */
};

/*
 * Starts a runner for model pinned to gpu (CUDA_VISIBLE_DEVICES for a
 * process); NULL with a logged reason when it cannot spawn.
 */
struct runner *runner_start(const struct reg_model *model, int gpu);
/* The one writer of r->state; logs the transition. */
void runner_set_state(struct runner *r, int to);
/* Takes no new job; stops once its current job (if any) has ended. */
void runner_drain(struct runner *r, const char *why);
/* Submits the job's bound workflow; the runner becomes BUSY. */
void runner_assign(struct runner *r, struct sjob *sj);
/* Asks the model server to stop the job's prompt. */
void runner_interrupt(struct runner *r);
/* Stops the process (SIGTERM to its group, SIGKILL after the grace time). */
void runner_stop(struct runner *r, const char *why);
/*
 * Reads /history/{remote_pid} from a model server and, on success, copies
 * each output through /view into outputs/<job_id>/. Used for a runner's job
 * and to reconcile jobs after a restart. NULL when the request cannot start
 * (cb is then never called).
 */
struct fetch *runner_fetch_result(const char *base_url, const char *remote_pid, const char *job_id,
				  runner_result_fn cb, void *ud);
void runner_fetch_cancel(struct fetch *f);
/* Kills a process group left by an earlier fnrun (orphan cleanup). */
void runner_kill_orphan(int pid);
const char *runner_state_name(int state);

#endif
