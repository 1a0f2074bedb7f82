/*
 * scheduler.h - the scheduler (prefix sched_; the file is not sched.h, which
 * would shadow the system header): one queue of jobs per model, the jobs in memory,
 * dispatch to runners, and every job state change (each committed to the
 * store before it is acted on, then published to watchers).
 *
 * Job lifecycle (DESIGN.md §2), each transition performed by one function:
 *
 *   queued --sched_dispatch--> preparing --on_submitted--> running
 *      |                           |                          |
 *      |                           +-- sched_requeue ---------+--> queued (attempt+1,
 *      |                                                           maybe the fallback model)
 *      +--sched_cancel--> cancelled          running --sched_complete--> completed
 *                                            any live --sched_fail--> failed
 */
#ifndef FNRUN_SCHEDULER_H
#define FNRUN_SCHEDULER_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

struct job;
struct json_object;
struct reg_function;

/* A job held in memory while it is live (queued, preparing, running). */
struct sjob {
	struct job *job;           /* owned */
	const struct reg_function *fn;
	struct json_object *params; /* validated params */
	int quality;               /* index into fn->qualities */
	int64_t queued_at_ms;      /* when it last entered the queue */
	int64_t eta_s;             /* honest estimate of seconds left, -1 unknown */
	int cancel_requested;
	char *notice;              /* plain words on a change the user should know (owned) */
	struct runner *runner;     /* while preparing/running */
	struct sjob *next;         /* in its model's queue */
	struct sjob *hnext;        /* private: in the id table */
	struct fetch *fetch;       /* private: startup reconciliation */
};

/* Loads live jobs from the store and reconciles in-flight ones. */
int sched_init(struct err *err);
/*
 * Switches to a newly loaded registry (takes ownership of next). Runners
 * whose model changed or left drain: they finish their job on the version
 * it started on, then stop; new runners use the new definition. Queued jobs
 * of a removed model go to the new route of their tier. Earlier registries
 * stay alive until sched_free_old_registries() at exit.
 */
struct registry;
int sched_reload(struct registry *next);
void sched_free_old_registries(void);
/* Stops every runner; done() once all have exited. */
void sched_stop(void (*done)(void));
void sched_shutdown(void);

/*
 * Creates a job for a validated request. idem may be NULL. On an existing
 * idempotency key, *out is the existing job and *existed is 1. Fails with
 * ERR_FULL when the queue is full, ERR_UNAVAILABLE when no model serves
 * the tier. Caller owns nothing; *out is borrowed until the next call.
 */
int sched_submit(const struct reg_function *fn, int quality, struct json_object *params,
		 int priority, const char *idem, const struct job **out, int *existed,
		 struct err *err);
/* Cancels a job: queued ones at once, running ones via the model server. */
int sched_cancel(const char *id, struct err *err);
/* A live job, or NULL. */
const struct sjob *sched_find(const char *id);
/* Jobs ahead of this one in its queue (0 = next), or -1 when not queued. */
int64_t sched_position(const struct sjob *sj);
/* Queued jobs in total. */
size_t sched_queued(void);
/* The estimate of seconds left for a job, -1 when unknown. */
int64_t sched_eta(const struct sjob *sj);


/* Operator views (GET /api/admin/runners, /models); caller owns the result. */
struct json_object *sched_admin_runners(void);
struct json_object *sched_admin_models(void);
/*
 * start: allow and start one runner now; drain: runners finish their job,
 * take no new one, then stop, and none starts until `start`; stop: the
 * same, and starting runners stop at once.
 */
int sched_admin_action(const char *model_id, const char *action, struct err *err);

/* ---- Reports from runners (runner.c); the scheduler decides what follows. ---- */
struct runner;

enum sched_joberr {
	JOBERR_MODEL,       /* execution_error from the model server */
	JOBERR_REJECTED,    /* the model server refused the workflow (400) */
	JOBERR_TRANSPORT,   /* the model server could not be reached */
	JOBERR_INTERRUPTED, /* execution_interrupted */
	JOBERR_OUTPUT,      /* an output could not be copied */
};

/* The runner passed its health probe and its WebSocket is open. */
void sched_on_ready(struct runner *r);
/* POST /prompt was accepted under remote prompt id pid. */
void sched_on_submitted(struct runner *r, struct sjob *sj, const char *pid);
void sched_on_progress(struct runner *r, struct sjob *sj, double value, double max);
/* The prompt finished and its outputs were copied; takes ownership of outputs. */
void sched_on_done(struct runner *r, struct sjob *sj, struct json_object *outputs);
void sched_on_job_error(struct runner *r, struct sjob *sj, int kind, const char *exc_type,
			const char *detail);
/*
 * The runner is gone (exited, failed its start, hung, or stopped). Called
 * once, just before the runner is freed; during_start is 1 when it never
 * became ready.
 */
void sched_on_runner_gone(struct runner *r, const char *why, int during_start);
/* Bound params of a job, for runner_assign. Borrowed. */
const struct json_object *sched_job_params(const struct sjob *sj);

#endif
