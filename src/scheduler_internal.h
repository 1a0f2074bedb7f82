/*
 * scheduler_internal.h - what the files of the scheduler share; not part
 * of its public interface (scheduler.h).
 *
 *   scheduler.c      the job table, queues, every job state change, the
 *                    runners' reports about jobs, submit and cancel
 *   sched_commit.c   group commits: the dirty jobs, the outbox of effects
 *                    run after a commit, the store-failure mode
 *   sched_runners.c  the pump: dispatch, starting runners where placement
 *                    says, eviction, fallback, failures and cooldown
 *   sched_admin.c    the operator views and actions, registry reload
 *   sched_restore.c  startup (restore, reconcile, orphans) and shutdown
 *
 * Invariants:
 * 1. A live job is in the id table from its submit until its terminal
 *    state is committed (then the outbox frees it: EFF_RETIRE).
 * 2. A queued job is in exactly one queue: its pin's (a model it must run
 *    on) or its tier's (any model of the tier). A preparing or running job
 *    is in none and has a runner (sj->runner, and runner->job == sj).
 * 3. A change is visible outside only after it is committed: replies,
 *    POST /prompt and events are effects, run by the outbox after the
 *    commit of the changes made before them.
 * 4. sj->ticket changes whenever the job is handed to a runner or leaves
 *    it; a runner's report is acted on only with the current ticket.
 */
#ifndef FNRUN_SCHEDULER_INTERNAL_H
#define FNRUN_SCHEDULER_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "estimate.h"
#include "placement.h"
#include "registry.h"
#include "runner.h"
#include "scheduler.h"

struct sjob;
struct mstate;

#define SCHED_FAILURES_MAX 3 /* consecutive failures before a model rests */

/* A queue of jobs, priority descending, then order ascending. */
struct squeue {
	struct sjob *head, *tail;
	size_t n;
};

/* One function x quality: its models (the current registry's route) and unpinned queue. */
struct tier {
	const struct reg_function *fn; /* current registry */
	int quality;
	struct squeue q;               /* jobs any of its models may run */
	struct mstate **models;        /* route order */
	size_t nmodels;
	size_t rr;                     /* round robin start for dispatch */
	int positions_dirty;           /* a job left: watchers hear their new place */
};

/* A scheduler-side runner: the runner and what the scheduler keeps of it. */
struct srunner {
	struct runner *r;
	struct mstate *m;
	struct registry *reg;  /* a reference: r->model lives in it */
	struct sjob *job;      /* preparing/running on it */
	int gpu;
	int64_t reserved;      /* bytes of GPU memory it holds in the budget */
	int64_t measured;      /* bytes NVML saw it use; 0 unknown */
	int url;               /* external: index into the model's urls; -1 otherwise */
	int starting;          /* counted in m->nstarting until ready or gone */
	struct srunner *next;  /* in m->runners */
};

/* What an A/B variant did, and the operators' say on its share (sched_variants.c). */
#define VAR_RING 4096    /* outcomes kept: the longest rollout window */
#define VAR_TIMES 512    /* run times kept for p50 / p90 */
struct variant {
	int64_t weight;            /* operator's weight (stored), or -1: the registry's */
	int64_t jobs, failures, ooms; /* since start: finished here, failed here, out of memory */
	unsigned char ring[VAR_RING]; /* 1: failed, 0: done; the last `nring` outcomes */
	int64_t nring, at;
	double times[VAR_TIMES];   /* run times (ms) of done jobs, the last ntimes */
	int64_t ntimes;
	int rolled_back;           /* rolled back (automatically or by hand); stored */
	char rollback_note[300];   /* the numbers of the rollback, for operators */
};

/* A model of quality auto: its measure and the tier it got (sched_calibrate.c). */
#define CAL_OWNER "fnrun:calibration" /* the owner of calibration jobs: no user key's */
enum cal_state { CAL_NONE, CAL_RUNNING, CAL_DONE, CAL_FAILED };
struct calib {
	int state;                 /* enum cal_state: of the last round */
	int placed;                /* 1: serves the tier `quality` (measured before) */
	int due;                   /* a round should start (sched__calib_run_due) */
	char quality[64];          /* the tier's quality key, when placed */
	uint64_t definition;       /* fingerprint of the definition measured */
	int64_t runs, ok, failed;  /* this round: runs asked, completed, failed */
	double times[REG_CALIBRATION_MAX_RUNS]; /* run ms of the completed runs */
	double run_ms;             /* their median */
	int64_t memory;            /* bytes: NVML's measure, else the declared gpu_memory */
	int memory_measured;       /* 1: NVML measured it */
	int64_t started_ms, at_ms; /* the round's start, its end */
	char how[300];             /* operators: how the tier was picked, or why it failed */
};

/* What the pre-warm policy keeps of a model (sched_prewarm.c). */
struct mprewarm {
	double predicted;              /* jobs expected in the horizon, at the last tick */
	double horizon_s;              /* that horizon, seconds of the demand clock */
	double rate_per_min;           /* predicted / horizon, per minute */
	double wait_ms;                /* its jobs' queue wait, decayed mean, demand-clock ms */
	int64_t last_prewarm_ms;       /* wall clock of the last pre-warm start; 0 none */
	int64_t last_change_ms;        /* wall clock of the last scale change (start or stop) */
	int64_t hits, misses;          /* pre-warmed runners that took a job / stopped without one */
	char prewarmed[32];            /* the runner id of the pending pre-warm, or "" */
	char kept[32];                 /* the runner id kept past its idle time, or "" */
	int64_t kept_until_ms;         /* wall clock: the keep lapses unless renewed */
	char last[300];                /* the last decision: kind and reason */
};

/* One registry model: its runners and the jobs pinned to it. */
struct mstate {
	const struct reg_model *model; /* current registry (or the last one, retired) */
	struct tier *tier;             /* NULL: quality auto, or retired */
	struct squeue q;               /* jobs only it may run */
	struct srunner *runners;
	int nrunners, nstarting;
	int failures;                  /* consecutive start failures, crashes and job errors */
	int errors;                    /* jobs its model server failed (not OOM), in all */
	char last_error[300];          /* operators: the last failure's cause, or "" */
	int restarts;                  /* runners started to replace a failed one */
	int held;                      /* operator stop/drain (or a retired model): start no runner */
	int retired;                   /* gone from the registry: kept until its runners exit */
	int64_t retry_at_ms;           /* no new start before (backoff or cooldown) */
	int64_t cooldown_until_ms;     /* resting after repeated failures */
	int64_t measured;              /* bytes of GPU memory last measured; 0 unknown */
	struct estimate est;           /* learned run and start times */
	struct variant var;            /* A/B: weight, outcomes, rollout (sched_variants.c) */
	struct calib cal;              /* quality auto: measure and tier (sched_calibrate.c) */
	int positions_dirty;
	int index;                     /* in sched__models, for placement snapshots */
	struct mprewarm pw;            /* predicted demand, pre-warm and autoscale (sched_prewarm.c) */
};

/* A job held in memory while it is live. */
struct sjob {
	struct job *job;               /* owned */
	struct registry *reg;          /* a reference: fn lives in it */
	const struct reg_function *fn;
	struct json_object *params;    /* validated params (a reference) */
	int quality;                   /* index into fn->qualities */
	struct tier *tier;             /* queued: where it waits, with pin */
	struct mstate *pin;            /* queued: the one model it may run on; NULL: any of tier */
	int64_t order;                 /* queue order among equal priorities */
	int64_t queued_at_ms;          /* when it last entered a queue */
	uint64_t ticket;               /* the attempt on a runner; 0 when none */
	struct srunner *runner;        /* preparing/running */
	int cancel_requested;
	int finishing;                 /* outputs being finished (thumbnails) */
	char *notice;                  /* plain words on a change the user should know (owned) */
	const char *waiting;           /* static: why it cannot start now, or NULL */
	struct sjob *next, *prev;      /* in its queue */
	struct sjob *hnext;            /* in the id table */
	struct comfy_fetch *fetch;     /* startup reconciliation */
	/* sched_commit.c */
	int is_new;                    /* its insert is not committed yet */
	int dirty;                     /* in the dirty list */
	int retiring;                  /* terminal: freed once committed */
	int rejected;                  /* the store refused its row (not an I/O error) */
	int handed_off;                /* shared store: inserted unclaimed, another node may run it */
	struct sjob *dnext;            /* in the dirty list */
	sched_submit_fn reply;         /* the submit waiting for its commit */
	void *reply_ud;
};

/* The scheduler's state (one per process; loop thread only). */
struct sched {
	struct sched_hooks hooks;
	struct registry *reg;          /* a reference to the current registry */
	struct mstate **models;        /* every model, retired ones last */
	size_t nmodels;
	struct tier **tiers;
	size_t ntiers;
	size_t nlive, nqueued;
	int64_t next_order;
	int reconciling;               /* startup fetches still running */
	uv_timer_t pump_timer;         /* backoff and idle deadlines */
	uv_timer_t drain_timer;        /* shutdown: stop what is still running */
	void (*stop_done)(void);
	int pump_wanted;
	int64_t positions_ms;          /* when queue places were last told */
};

extern struct sched sched__s;

/* ---- scheduler.c ---- */

struct sjob *sched__find(const char *id);
/* Frees every live job, queued or not (shutdown: the queues go with them). */
void sched__free_jobs(void);
void sched__table_add(struct sjob *sj);
void sched__table_remove(struct sjob *sj);
struct sjob *sched__sjob_new(struct job *j, struct registry *reg, const struct reg_function *fn,
			     int quality, struct json_object *params);
void sched__sjob_free(struct sjob *sj);
struct mstate *sched__mstate_of(const char *model_id);
struct tier *sched__tier_of(const struct reg_function *fn, int quality);
/* Queues sj in tier t, pinned to pin (NULL: any model of t). */
void sched__enqueue(struct sjob *sj, struct tier *t, struct mstate *pin);
void sched__dequeue(struct sjob *sj);
/* The one place a live job's status changes: check, mark for commit, publish after it. */
void sched__set_state(struct sjob *sj, int to);
void sched__publish(struct sjob *sj, const char *type);
void sched__fail_job(struct sjob *sj, const char *code, const char *message,
		     const char *suggestion, const char *action, const char *detail);
void sched__finish(struct sjob *sj, int status);
/*
 * The job's tried list (tried_json, shown to operators): one entry per
 * model it was sent to or waited for, {"model": ID, "runs": N}; runs are
 * the times it was sent there (0: it only waited: the model did not start,
 * was paused or did not fit). Adds runs (may be negative) to model_id's.
 */
void sched__add_tried(struct job *j, const char *model_id, int runs);
void sched__note_fallback(struct sjob *sj, const char *from, const struct reg_model *to);
/* Back to a queue: its tier (any model), or pinned to `to` (a fallback). */
void sched__requeue(struct sjob *sj, struct mstate *to, const char *why);
/* Queued for another model: moved now, the attempt unchanged. */
void sched__move(struct sjob *sj, struct mstate *to, const char *why);
/* Hands queued sj to the idle runner sr: preparing now, its POST /prompt after the commit. */
void sched__dispatch(struct sjob *sj, struct srunner *sr);
/* What a job's A/B variant sticks to: the request's user, else its API key, else its id. */
const char *sched__route_key(const struct job *j);
/*
 * Where a job of fn x quality waits: its tier, pinned when the tier's
 * weights choose one model for key (sticky), or to a fallback when the
 * whole tier rests. -1 when no model serves the tier.
 */
int sched__route(const struct reg_function *fn, int quality, const char *key, struct tier **t,
		 struct mstate **pin);
/* Views: of a job for its watchers, and the answer to a submit. Caller owns them. */
struct json_object *sched__effect_view(struct sjob *sj);
struct json_object *sched__submit_view(struct sjob *sj);
void sched__publish_positions(struct squeue *q);
extern const struct runner_cbs sched__runner_cbs;

/* ---- sched_reports.c: the runner callbacks about jobs ---- */

void sched__on_running(struct runner *r, uint64_t ticket, void *ud);
void sched__on_progress(struct runner *r, uint64_t ticket, double value, double max, void *ud);
void sched__on_done(struct runner *r, uint64_t ticket, struct json_object *outputs, void *ud);
void sched__on_job_error(struct runner *r, uint64_t ticket, int kind, const char *exc_type,
			 const char *detail, void *ud);

/* ---- sched_commit.c ---- */

/* Writes sj's row in the next commit. */
void sched__dirty(struct sjob *sj);
/* The first dirty job (then ->dnext): jobs changed since the last commit. */
struct sjob *sched__dirty_head(void);
enum sched_effect {
	EFF_PUBLISH, /* the job's view to its watchers */
	EFF_REPLY,   /* answer the submit */
	EFF_ASSIGN,  /* hand the job to its runner (POST /prompt) */
	EFF_RETIRE,  /* the terminal state is committed: free the job */
};
/* Runs after the changes made so far are committed. */
void sched__effect(int type, struct sjob *sj, const char *event);
/* Answers a submit after the commit: status 202 (new) or 200 (its key named it). */
void sched__effect_reply(struct sjob *sj, int status, sched_submit_fn cb, void *ud);
/* Answers a submit whose key names a finished job (takes j). */
void sched__effect_reply_stored(struct job *j, sched_submit_fn cb, void *ud);
/* Runner rows for orphan cleanup: written in the next commit. */
void sched__record_runner_put(const struct runner *r);
void sched__record_runner_delete(const char *id);
/*
 * The operators' stored settings (meta rows "hold/<id>", "weight/<id>",
 * "rollback/<id>"): read at start into memory; a set is kept at once and
 * written in the next commit (value NULL deletes it).
 */
int sched__meta_load(struct err *err);
void sched__meta_free(void);
const char *sched__meta_get(const char *prefix, const char *id);
void sched__meta_set(const char *prefix, const char *id, const char *value);
/* sched_quota.c: each key's use (jobs live, submits, GPU time today). */
void sched__quota_live(const struct job *j, int delta);
void sched__quota_submitted(const struct job *j);
void sched__quota_finished(const struct job *j);
int sched__quota_load(struct err *err);
void sched__quota_free(void);
/* sched_variants.c: A/B variants. */
int64_t sched__weight(const struct mstate *m);   /* the weight routing uses now */
int sched__weight_set(const struct mstate *m);   /* 1: a weight was given (file or operator) */
int sched__routable(const struct mstate *m);     /* 0: weights are in use and its share is 0 */
void sched__outcome(struct mstate *m, int failed, int oom, double run_ms);
struct mstate *sched__fallback_state(const struct reg_model *m); /* fallback, else rollout baseline */
void sched__variant_restore(struct mstate *m);   /* a new model state takes its stored weight */
void sched__variant_into(const struct mstate *m, struct json_object *e); /* admin: into a model's view */
void sched__rollback(struct mstate *m, const char *why);
void sched__promote(struct mstate *m);
void sched__set_weight(struct mstate *m, int64_t w);
/* sched_cluster.c: several nodes on a shared store (store.h, "Several nodes"). */
void sched__cluster_init(void);                  /* after the jobs are restored */
void sched__cluster_shutdown(void);
int sched__cluster_on(void);                     /* 1: the store is shared */
/* A submit this node has no room for: left unclaimed (1), the caller retires it here. */
int sched__cluster_hand_off(struct sjob *sj, struct tier *t, struct mstate *pin);
void sched__cluster_claim(void);                 /* the pump: claim what there is room for */
void sched__cluster_read_notes(void);
void sched__cluster_changed(const struct sjob *sj);    /* a job row this turn writes */
int sched__cluster_commit_notes(struct err *err);     /* inside the commit */
void sched__cluster_committed(void);                  /* after it succeeded */
int sched__cluster_cancel(const char *id, struct err *err); /* a job this node does not hold */
/* sched_calibrate.c: models of quality auto. */
int sched__calib_job(const struct sjob *sj);       /* 1: a calibration run (CAL_OWNER) */
/* After the tiers are built: a measured model joins its tier; one without a measure is due. */
void sched__calib_place(struct mstate *m);
void sched__calib_run_due(void);                   /* starts the rounds that are due */
/* Queues a round of calibration runs (why: for the log); -1 with err when m is not auto. */
int sched__calib_start(struct mstate *m, const char *why, struct err *err);
void sched__calib_sample(struct mstate *m, const struct sjob *sj, double run_ms); /* a run done */
void sched__calib_end(struct sjob *sj);            /* a calibration job ended (any state) */
void sched__calib_into(const struct mstate *m, struct json_object *e); /* admin view */
/* Commits what is pending and runs the effects now; -1 when the store failed. */
int sched__flush(void);
/* 1 while the store takes writes. */
int sched__store_ok(void);
/* The pump runs at the end of this loop turn. */
void sched__pump(void);
void sched__commit_init(void);
/* Last commit at shutdown; frees what is left. */
void sched__commit_shutdown(void);

/* ---- sched_runners.c ---- */

void sched__run_pump(void);
/* A runner of m could not start: back off, move its jobs to a fallback, maybe rest. */
void sched__start_failed(struct mstate *m, const char *why);
/* A job failed by m's model server itself (its command, its workflow): counted as a failure. */
void sched__model_error(struct mstate *m, const char *why);
/* 1 when the operators hold every model of t (stop or drain). */
int sched__tier_paused(const struct tier *t);
/* Jobs of q told "paused" hear that it is back. */
void sched__unpause(struct squeue *q);
/* The waiting text of a job whose quality is paused (compared by address). */
extern const char sched__paused_text[];
int64_t sched__need(const struct mstate *m);
/* The GPU where bytes fits now (placement's answer), or -1. */
int sched__place(int64_t bytes);
struct srunner *sched__start_runner(struct mstate *m, int gpu, int64_t bytes);
void sched__release_gpu(struct srunner *sr);
/* Stops every runner (why), or drains the busy ones when drain is 1. */
void sched__stop_runners(const char *why, int drain);
int sched__runners_alive(void);
void sched__check_stopped(void);
/* Moves every job waiting only for m to its fallback, or fails them. */
void sched__fall_back(struct mstate *m, const char *why);
/* Records what NVML saw the runner use; later placements use it. */
void sched__measure(struct srunner *sr);

/* ---- sched_prewarm.c: demand, pre-warm and autoscale (prewarm.h, demand.h) ---- */

/* A job arrived (sched_submit): counted into the demand model. */
void sched__prewarm_arrival(const struct sjob *sj);
/* sj leaves its queue for a runner of m: its wait is measured. */
void sched__prewarm_dispatched(struct mstate *m, const struct sjob *sj);
/* The pump: the policy's tick, at most every PREWARM_TICK_MS (scaled). */
void sched__prewarm_tick(void);
/* The next moment the tick is due, or -1 when no model uses the policy. */
int64_t sched__prewarm_next(void);
/*
 * When sr stops for idleness: idle_timeout after its last use, later while
 * the policy keeps it, and for a `prewarm` model not before the policy's
 * tick has seen it due.
 */
int64_t sched__prewarm_idle_at(const struct srunner *sr);
/* The admin view's "prewarm" object of m, put into o. */
void sched__prewarm_admin_json(const struct mstate *m, struct json_object *o);
/* Shutdown: the demand model saved into the meta rows and freed. */
void sched__prewarm_shutdown(void);

/* ---- sched_metrics.c: labels and metrics of what happens to jobs ---- */

struct metrics_labels;
/* {function, quality, model} of the job now; borrowed from it. */
struct metrics_labels sched__labels(const struct sjob *sj);
/* Counts one for sj's labels (enum metrics_counter). */
void sched__count(int counter, const struct sjob *sj);
/* Observes ms for sj's labels (enum metrics_hist). */
void sched__observe(int hist, const struct sjob *sj, int64_t ms);
/* sj moves to the fallback `to` (its tried list ends with the model it leaves). */
void sched__metrics_fallback(const struct sjob *sj, const char *from, const struct reg_model *to);
/* sj's final state is committed: counted, and its times observed. */
void sched__metrics_retire(const struct sjob *sj);

/* ---- sched_admin.c ---- */

/* Builds tiers and model states for the current registry, keeping old states. */
void sched__build_models(struct registry *reg);
void sched__free_models(void);
/* Frees a retired model once it has no runner left. */
void sched__forget_model(struct mstate *m);

/* sched_restore.c holds sched_init, sched_stop and sched_shutdown (scheduler.h). */

#endif
