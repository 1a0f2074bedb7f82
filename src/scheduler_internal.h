/*
 * scheduler_internal.h - what the files of the scheduler share; not part of
 * its public interface (scheduler.h).
 *
 * scheduler.c holds the job table, the queues, every job state change and
 * startup/shutdown; sched_runners.c starts, fits, evicts and retires
 * runners; sched_admin.c has the operator views and actions and the
 * registry reload.
 */
#ifndef FNRUN_SCHEDULER_INTERNAL_H
#define FNRUN_SCHEDULER_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "estimate.h"
#include "registry.h"
#include "runner.h"
#include "scheduler.h"

/* One registry model: its queue and its runners. */
struct mstate {
	const struct reg_model *model;
	struct sjob *head, *tail;    /* the queue */
	size_t nqueued;
	struct runner *runners;
	int nrunners, nstarting;
	int failures;                /* consecutive start failures and crashes */
	int restarts;                /* runners started to replace a failed one */
	int held;                    /* operator stop/drain: start no runner until start */
	int retired;                 /* gone from the registry: kept until its runners exit */
	int64_t retry_at_ms;         /* no new start before (backoff or cooldown) */
	int64_t cooldown_until_ms;   /* resting after repeated failures */
	int64_t measured;            /* bytes of GPU memory last measured; 0 unknown */
	struct estimate est;         /* learned run and start times */
	int positions_dirty;         /* a job left the queue: tell watchers their new place */
};

extern struct mstate *sched__models;
extern size_t sched__nmodels;
extern uv_timer_t sched__pump_timer;

/* ---- scheduler.c ---- */

struct mstate *sched__mstate_of(const char *model_id);
void sched__queue_push(struct mstate *m, struct sjob *sj);
void sched__queue_remove(struct mstate *m, struct sjob *sj);
void sched__publish(struct sjob *sj, const char *type);
void sched__set_state(struct sjob *sj, int to);
void sched__fail_job(struct sjob *sj, const char *code, const char *message,
		     const char *suggestion, const char *action, const char *detail);
void sched__add_tried(struct job *j, const char *model_id);
/* Back to a queue: the same model, or another (a fallback). */
void sched__requeue(struct sjob *sj, const struct reg_model *to, const char *why);
void sched__check_stopped(void);
void sched__on_pump(uv_timer_t *t);
/* Runs the dispatch loop on the next loop turn (coalesces many changes). */
void sched__pump(void);
const struct reg_model *sched__route(const struct reg_function *fn, int quality);

/* ---- sched_runners.c ---- */

int64_t sched__need(const struct mstate *m);
void sched__start_runner(struct mstate *m, int gpu, int64_t bytes);
void sched__pump_model(struct mstate *m);
void sched__note_fallback(struct sjob *sj, const struct reg_model *from, const struct reg_model *to);
/* The runner is free again (its job ended one way or another). */
void sched__release(struct runner *r);
/* Records what NVML saw the runner use; later placements use it. */
void sched__measure(struct runner *r, struct mstate *m);

#endif
