/*
 * placement.h - the scheduler's decisions as pure functions over a
 * snapshot of models, runners and GPU budgets (docs/design.md §3): which model
 * of a tier a job goes to (route), which GPU a new runner goes on (place),
 * which idle runners stop to make room (evict), what serves when a model
 * cannot (fall back), what to do for a model that needs one more runner
 * (plan), and how long a job will take (estimate).
 *
 * Nothing here touches a process, a timer or a global: the scheduler
 * builds the snapshot, asks, and acts; the table-driven tests in
 * tests/test_placement.c ask the same questions of hand-made snapshots.
 *
 * Rules (the same as the README's "How model servers live"):
 *  - A runner is placed on the GPU with the most free memory that fits it.
 *  - Eviction stops idle runners of other models only: lowest priority
 *    first, then least recently used. Never a busy, starting or external
 *    runner. A model with jobs waiting keeps its idle runners (and one
 *    that keeps min_instances keeps those) unless the asking model's
 *    oldest job has waited aging_ms (anti-thrash aging).
 *  - Memory held by stopping runners counts as coming back.
 *  - A job of a tier goes, by weight, to a variant when weights are set
 *    (sticky for one key); otherwise toward free capacity: an idle runner
 *    first, then room to start one.
 */
#ifndef FNRUN_PLACEMENT_H
#define FNRUN_PLACEMENT_H

#include <stddef.h>
#include <stdint.h>

#define PL_MAX_VICTIMS 64
#define PL_MAX_GPUS 16    /* GPUs a snapshot may have */

enum pl_runner_state {
	PL_STARTING, /* spawned, not yet ready */
	PL_IDLE,     /* ready, no job */
	PL_BUSY,     /* holds a job (or is draining one) */
	PL_STOPPING, /* on its way out; its memory comes back */
};

struct pl_gpu {
	int64_t budget;   /* bytes; INT64_MAX when unlimited */
	int64_t reserved; /* bytes held by runners */
};

struct pl_runner {
	int model;            /* index into the snapshot's models */
	int gpu;
	int state;            /* enum pl_runner_state */
	int64_t reserved;     /* bytes it holds */
	int64_t last_used_ms; /* when it last ended a job (or became ready) */
	int external;         /* never stopped to make room */
};

struct pl_model {
	int64_t need;          /* bytes a new runner reserves */
	int64_t priority;      /* lower is evicted first */
	int64_t min_instances, max_instances;
	int startable;         /* enabled, not held, not resting, not backing off */
	int resting;           /* cooling down after repeated failures */
	size_t waiting;        /* jobs waiting for it (pinned, or its share of the tier) */
	int64_t oldest_wait_ms; /* when its oldest waiting job started waiting; 0: none */
	int64_t weight;        /* share of its tier's traffic */
	int weight_set;        /* the registry gave a weight */
	int fallback;          /* index of its fallback model, -1 none */
};

struct pl_snapshot {
	const struct pl_model *models;
	size_t nmodels;
	const struct pl_runner *runners;
	size_t nrunners;
	const struct pl_gpu *gpus;
	int ngpus;
	int64_t now_ms;
	int64_t aging_ms; /* a job waiting this long may evict a busy model's idle runner */
};

/* Runners of model m in state (enum pl_runner_state), or in any state when state is -1. */
int pl_count(const struct pl_snapshot *s, int m, int state);

/*
 * The model of a tier (models[tier[0..n)]) a new job should wait for.
 * When any of them has weight_set, a weighted choice among those not
 * resting, the same for the same key (a user, a job); else -1: the job
 * may go to any of them (toward free capacity, see pl_pick_start).
 */
int pl_route(const struct pl_snapshot *s, const int *tier, size_t n, uint64_t key);

/*
 * Of a tier's models, the one that should start a runner for a waiting
 * job: startable and under max_instances; one that fits now on a GPU
 * first, then one that could fit after eviction, then any (pl_plan says
 * what it can do); fewer runners first, then tier order. -1 when none is
 * startable under max_instances.
 */
int pl_pick_start(const struct pl_snapshot *s, const int *tier, size_t n);

/* The GPU with the most free memory where bytes fits now, or -1. bytes 0 fits GPU 0. */
int pl_place(const struct pl_snapshot *s, int64_t bytes);
/* 1 when bytes is not larger than some GPU's whole budget. */
int pl_could_fit(const struct pl_snapshot *s, int64_t bytes);

/*
 * Room for model m's runner (m->need bytes) by stopping idle runners of
 * other models on one GPU: the runner indices into victims (at most max),
 * in stopping order, just enough of them; returns that GPU, or -1 when no
 * GPU can make room within max victims (then *nv is 0). A GPU where
 * stopping runners give back enough wins with no victim. Otherwise the
 * candidates of every GPU are taken lowest priority first, then least
 * recently used, and the first GPU they make room on wins. Runners on
 * their way out do not count toward an owner's min_instances.
 */
int pl_evict(const struct pl_snapshot *s, int m, int *victims, size_t max, size_t *nv);

/*
 * What serves model m's jobs when m cannot: the first model along its
 * fallback chain that is not resting and, when need_fit is 1, has an idle
 * runner, or is startable and fits on a GPU now. -1 when none.
 */
int pl_fallback(const struct pl_snapshot *s, int m, int need_fit);

enum pl_action {
	PL_WAIT,     /* nothing can be done now: the job waits */
	PL_START,    /* start a runner on gpu */
	PL_EVICT,    /* stop victims; m starts once their memory is back */
	PL_FALLBACK, /* move a waiting job to `fallback`, which fits */
	PL_NEVER,    /* m can never fit any GPU: its jobs go to `fallback` (or fail, -1) */
};

struct pl_plan {
	int action;   /* enum pl_action */
	int gpu;
	int fallback;
	int victims[PL_MAX_VICTIMS];
	size_t nvictims;
};

/*
 * One more runner for model m, which has jobs waiting and may start (the
 * caller checked startable and max_instances): start it where it fits,
 * else evict to make room, else move a job to a fallback that fits (only
 * when m has no live runner, since its own serves soon otherwise), else
 * wait.
 */
void pl_plan(const struct pl_snapshot *s, int m, struct pl_plan *out);

/* What an estimate is made of. */
struct pl_eta {
	int status;          /* enum job_status: queued, preparing or running */
	int64_t position;    /* queued: jobs ahead */
	double run_s;        /* one run of this job, learned or typical */
	double start_s;      /* a new runner's start, learned (0 unknown) */
	int64_t instances;   /* runners that can serve it at once (>= 1) */
	int has_runner;      /* queued: a runner of its model is there or coming */
	int starting;        /* preparing: its runner is still starting */
	double elapsed_s;    /* running: since it started */
	int progress;        /* running: percent */
};

/*
 * Seconds left for a live job, rounded to the nearest second, at least 1:
 * queued, run * (position + 1) / instances (+ start without a runner);
 * preparing, run (+ start while its runner starts); running, run minus
 * elapsed (never under run * (100 - progress) / 200), blended with what the
 * progress seen so far says (elapsed * (1 - f) / f, f the share of the run
 * done, progress 5..95 mapped to 0..1) with weight f: the nearer the end,
 * the more the time left follows the progress observed.
 */
int64_t pl_estimate(const struct pl_eta *in);

/* What a tier's models are like, to place a measured model (quality auto). */
struct pl_tier_ref {
	double run_ms;  /* typical run of the calibration request; 0 unknown */
	int64_t memory; /* typical GPU memory of one runner, bytes; 0 unknown */
};

/*
 * The tier (index into refs, the ladder cheapest first) whose models a
 * model measured at run_ms and memory matches best: the least distance
 * |ln(run_ms / ref.run_ms)| + |ln(memory / ref.memory)|, a term counted
 * only where both sides are known (memory 0: unknown); a tier with no
 * known run time is skipped; on a tie the cheaper tier. -1 when no tier
 * has a known run time. *distance (may be NULL) gets the winner's.
 */
int pl_pick_tier(const struct pl_tier_ref *refs, size_t n, double run_ms, int64_t memory,
		 double *distance);

#endif
