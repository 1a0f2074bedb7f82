/*
 * prewarm.h - the pre-warm and autoscale policy (docs/design.md §3,
 * "Pre-warming and autoscaling"), a pure function of one model's snapshot,
 * as placement.h is for placement: the scheduler (sched_prewarm.c) builds
 * the snapshot, asks pw_decide(), and applies the answer.
 *
 * The rule of benefit against cost. Over the horizon H (seconds), with p
 * the jobs the demand model expects (demand.h):
 *     benefit = (1 - e^-p) x (cold_start_s + penalty)
 *                                              what the first arrival is spared by a
 *                                              warm runner: the cold start's seconds,
 *                                              and a fixed PW_COLD_PENALTY_S for having
 *                                              to wait at all (a user watching "starting
 *                                              up" feels a 10 s start as more than a
 *                                              quarter of a 40 s one)
 *     cost    = price x GiB x H                GPU memory held for H, priced in
 *                                              job-seconds per GiB-second
 * One warm runner is worth holding when benefit >= cost and p >= PW_MIN_JOBS.
 *
 * Decisions (each with a reason and its numbers):
 *  - PW_PREWARM: a `prewarm` model with nothing queued and no runner
 *    (starting, idle or busy) starts one when it is worth holding, under
 *    max_instances and in free GPU memory (a pre-warm never evicts).
 *  - PW_KEEP_WARM: its idle runner due for the idle stop (idle_timeout) is
 *    kept while it is worth holding (at most one per model).
 *  - PW_EARLY_STOP: its idle runner, idle at least min_idle_ms, above
 *    min_instances, stops before idle_timeout when benefit < cost / 2
 *    (the half is the hysteresis between keeping and stopping; a pre-warm
 *    that has taken no job yet included: stopped at the first dip below
 *    the cost, it would be started again at the next rise, cold).
 *  - PW_SCALE_UP (target_wait_ms > 0): jobs queued and the oldest has
 *    waited, or recent jobs waited on average, more than the target: one
 *    more runner (none starting, under max_instances, in free memory).
 *  - PW_SCALE_HOLD: a runner of an autoscaled model due for the idle stop
 *    is kept while the recent wait is at or above down_ratio x target or
 *    the last scale change is younger than hold_ms; never the model's last
 *    runner (the wait of a model with few jobs is mostly cold starts, not
 *    a lack of runners).
 *  - PW_SCALE_DOWN: nothing queued, recent wait below down_ratio x
 *    target, hold_ms since the last scale change, and more runners than
 *    min_instances, one, and the concurrency the demand needs (p x run_s /
 *    H, rounded up): the longest idle runner stops.
 *
 * Guarantees (tests/test_prewarm.c): a stop names an idle runner, never
 * a busy, starting or external one, and never one of a model with jobs
 * queued; between two scale changes of a model at least hold_ms pass
 * unless the wait is above target (scale up).
 */
#ifndef FNRUN_PREWARM_H
#define FNRUN_PREWARM_H

#include <stddef.h>
#include <stdint.h>

#define PW_PRICE 0.004        /* job-seconds of waiting one GiB-second of GPU memory is worth */
#define PW_COLD_PENALTY_S 20.0 /* what waiting for a start at all weighs, beyond its seconds */
#define PW_MIN_JOBS 0.05      /* expected jobs in the horizon below which nothing is held */
#define PW_HOLD_MS 60000      /* least time between scale changes (hysteresis) */
#define PW_DOWN_RATIO 0.5     /* scale down only below this share of the target */
#define PW_MIN_IDLE_MS 60000  /* an early stop needs this much idle time */
#define PW_MAX_DECISIONS 16   /* decisions pw_decide() gives at most per model */

enum pw_runner_state {
	PW_R_STARTING,
	PW_R_IDLE,
	PW_R_BUSY,     /* holds a job, or is draining */
	PW_R_STOPPING, /* on its way out: counts for nothing */
};

struct pw_runner {
	int state;             /* enum pw_runner_state */
	int64_t idle_since_ms; /* idle: when it last ended a job (or became ready) */
	int external;          /* never stopped */
	int unused;            /* ready, and has taken no job yet */
	int due;               /* its idle stop is due (idle_timeout on the scheduler's clock) */
};

struct pw_model {
	const char *id;           /* for the reasons (borrowed) */
	const struct pw_runner *runners;
	size_t nrunners;
	size_t queued;            /* jobs waiting that it may run */
	int64_t oldest_wait_ms;   /* how long the oldest of them has waited */
	double predicted;         /* jobs expected in the horizon */
	int64_t horizon_ms;
	double cold_start_s;      /* a runner's start to ready */
	double run_s;             /* one job's run */
	int64_t gpu_memory;       /* bytes one runner holds */
	int64_t min_instances, max_instances;
	int64_t idle_timeout_ms;
	int64_t target_wait_ms;   /* autoscale target; 0: no autoscale */
	double wait_ms;           /* recent jobs' queue wait (decayed mean), ms */
	int64_t last_change_ms;   /* the last scale change; 0: none */
	int prewarm;              /* the registry allows pre-warming */
	int startable;            /* enabled, not held, not resting */
};

struct pw_config {
	int64_t now_ms;
	int64_t free_bytes;       /* GPU memory that fits a runner now (the roomiest GPU) */
	double price;             /* PW_PRICE */
	double cold_penalty_s;    /* PW_COLD_PENALTY_S */
	int64_t hold_ms;          /* PW_HOLD_MS */
	double down_ratio;        /* PW_DOWN_RATIO */
	int64_t min_idle_ms;      /* PW_MIN_IDLE_MS */
};

enum pw_kind {
	PW_PREWARM,
	PW_KEEP_WARM,
	PW_EARLY_STOP,
	PW_SCALE_UP,
	PW_SCALE_HOLD,
	PW_SCALE_DOWN,
};

enum pw_action { PW_START, PW_KEEP, PW_STOP };

struct pw_decision {
	int kind;           /* enum pw_kind */
	int action;         /* enum pw_action */
	int runner;         /* keep, stop: index into the model's runners; start: -1 */
	double benefit_s;   /* job-seconds of waiting saved over the horizon */
	double cost_s;      /* the GPU memory held over it, priced */
	char reason[240];   /* plain numbers for the log and the admin view */
};

/* The kind's name ("prewarm", "keep_warm", ...). */
const char *pw_kind_name(int kind);

/* benefit and cost of holding one warm runner over the model's horizon (seconds). */
void pw_value(const struct pw_model *m, const struct pw_config *c, double *benefit, double *cost);

/*
 * The decisions for model m, at most max of them, into out; returns how
 * many. Starts come as one decision each. Nothing is decided for a model
 * that is not startable except stops, keeps and holds.
 */
size_t pw_decide(const struct pw_model *m, const struct pw_config *c, struct pw_decision *out,
		 size_t max);

#endif
