/*
 * scheduler.h - the scheduler (prefix sched_; the file is not sched.h,
 * which would shadow the system header): the live jobs, their queues, the
 * runners of every model, and every job state change. It is the only
 * writer of the store, and commits changes in groups, one transaction per
 * loop turn, before anything about them is visible outside (a reply, a
 * POST /prompt, an event).
 *
 * Job lifecycle (docs/design.md §4), each transition performed by one function
 * of scheduler.c:
 *
 *   queued --dispatch--> preparing --on_running--> running --complete--> completed
 *      |                     |                        |
 *      |                     +------- requeue --------+--> queued (attempt+1,
 *      |                                                    maybe a fallback model)
 *      +--cancel--> cancelled              any live --fail--> failed
 *
 * Loop thread only.
 */
#ifndef FNRUN_SCHEDULER_H
#define FNRUN_SCHEDULER_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

struct json_object;
struct reg_function;
struct registry;

/* Where the scheduler's events go (the server wires them to events.c). */
struct sched_hooks {
	/* Fans a job's view out to its watchers; view is borrowed. */
	void (*publish)(const char *job_id, const char *type, struct json_object *view);
	/* 1 when an event of the job would be kept or sent (else its view is not built). */
	int (*wanted)(const char *job_id);
	/* 1 when someone watches the job now (live queue places go to those only). */
	int (*watched)(const char *job_id);
	/* 1 when anyone watches any job. */
	int (*watching)(void);
};

/*
 * Loads the live jobs from the store, reconciles those that were in flight
 * (reads their results from the model servers still there) and stops what
 * an earlier fnrun left. Uses server.reg (a reference is taken) and
 * server.store. hooks is copied.
 */
int sched_init(const struct sched_hooks *hooks, struct err *err);

/*
 * Switches to a newly loaded registry (takes its own reference).
 * Runners whose model changed or left drain: they finish their job on the
 * version it started on, then stop; new runners use the new definition.
 * Queued jobs of a removed model go to their tier's other models. A
 * registry version lives while a job or runner still uses it.
 */
void sched_reload(struct registry *next);

/* Stops every runner (running jobs finish first, up to a drain time); done() once all exited. */
void sched_stop(void (*done)(void));
/* Frees everything; after sched_stop's done, before the loop closes. */
void sched_shutdown(void);

/* A validated request. Borrowed for sched_submit. */
struct sched_request {
	const struct reg_function *fn; /* of server.reg */
	int quality;                   /* index into fn->qualities */
	struct json_object *params;    /* validated; the scheduler takes a reference */
	int priority;                  /* 0..10 */
	const char *idem;              /* idempotency key, or NULL */
	const struct json_object *sent; /* params as the request gave them, or NULL */
	const char *owner;             /* the API key id that sends it, or NULL */
	const char *owner_name;        /* that key's name (for its quotas), or NULL */
	int *retry_after_s;            /* out, or NULL: the wait an ERR_QUOTA asks for */
	const char *user;              /* who it is for: A/B variants stick to it, or NULL */
};

/*
 * Answers a submit, once its job is committed (or known): status 202 for a
 * new job, 200 for the job an idempotency key already named, with view
 * {job_id, status, queue_position, eta_seconds} (borrowed); or view NULL
 * and err (the commit failed: ERR_UNAVAILABLE).
 */
typedef void (*sched_submit_fn)(void *ud, int status, const struct json_object *view,
				const struct err *err);

/*
 * Creates a job. Returns 0, and cb(ud, ...) runs once from the loop after
 * the job is committed; or -1 with err and no callback: ERR_FULL (the
 * queue is full), ERR_UNAVAILABLE (no model serves the tier, the server is
 * stopping, or the store cannot be written now), ERR_DUPLICATE (the
 * idempotency key names a job made by a different request: another function,
 * quality, priority or params; a param left to its random default matches).
 */
int sched_submit(const struct sched_request *rq, sched_submit_fn cb, void *ud, struct err *err);

/*
 * Cancels a job: a queued one at once, a running one through the model
 * server. ERR_NOT_FOUND for an unknown id, ERR_CONFLICT for a finished one.
 */
int sched_cancel(const char *id, struct err *err);

/*
 * The API key id that made job id into owner ("" when none), from the
 * live job or the store. -1 with ERR_NOT_FOUND (or a store error).
 */
int sched_job_owner(const char *id, char *owner, size_t n, struct err *err);
/*
 * The public view of job id (view.h): a live job as it is now, a finished
 * one from the store. Only committed states are shown: a change not yet
 * committed is committed first, and while the store cannot be written the
 * stored state is shown. NULL with err (ERR_NOT_FOUND, ERR_IO). Caller
 * owns the result.
 */
struct json_object *sched_view(const char *id, struct err *err);

/*
 * The view of a job read from the store (a list): as it is live when it is
 * live and its state committed, else as stored. Caller owns the result.
 */
struct job;
struct json_object *sched_view_stored(const struct job *j);

struct buf;
/*
 * The scheduler's gauges in the Prometheus text format (sched_metrics.c):
 * queued jobs, runners by state, models resting, GPU memory. 0, or -1
 * when b reached its limit.
 */
int sched_metrics(struct buf *b);

/* Jobs waiting in queues. */
size_t sched_queued(void);
/* NULL when new jobs can be taken, else why not (for /ready). */
/*
 * Whether the API key owner (named name; owner NULL: no key) may submit
 * one more job now: 0, or -1 with ERR_QUOTA, a sentence for the user in
 * err->msg and the seconds to wait in *retry_after_s.
 */
int sched_quota_check(const char *owner, const char *name, int *retry_after_s, struct err *err);
/* {running, last_minute, gpu_seconds_today, quota: {...}} of one key. Caller owns it. */
struct json_object *sched_quota_json(const char *owner, const char *name);

/* {writable, error, down_seconds, commits, failures}: the job store, for operators. */
struct json_object *sched_store_status(void);
/*
 * An operator's weight for a model (0..1000000; stored, so it outlives a
 * restart and a reload): its share of its tier's jobs. 0 takes it out of
 * routing. ERR_NOT_FOUND, ERR_INVALID.
 */
int sched_admin_weight(const char *model_id, int64_t weight, struct err *err);

/*
 * 1 when the operators hold every model of that function's quality and no
 * fallback serves it: a submit is refused (ERR_PAUSED) and the catalog
 * says it is not available. 0 otherwise, also for unknown names.
 */
int sched_quality_paused(const char *function, const char *quality);
/* 1 when some model serves that quality now (a measured model of quality auto included). */
int sched_quality_served(const char *function, const char *quality);
const char *sched_not_ready(void);

/* Operator views (GET /api/admin/runners, /models); caller owns the result. */
struct json_object *sched_admin_runners(void);
struct json_object *sched_admin_models(void);
/*
 * One job as operators see it (GET /api/admin/jobs/{id}): the user's view
 * plus the model that served its latest attempt, the runner, the model
 * server's URL and prompt id (its /history entry), attempts, the
 * models tried, the technical cause of a failure, and each output's name on
 * the model server. NULL with err (ERR_NOT_FOUND) when there is no such job.
 */
struct json_object *sched_admin_job(const char *id, struct err *err);
/*
 * start: allow and start one runner now; drain: runners finish their job,
 * take no new one, then stop, and none starts until `start`; stop: the
 * same, and starting runners stop at once.
 */
int sched_admin_action(const char *model_id, const char *action, struct err *err);

#endif
