/*
 * sched_runners.c - the pump and the runners: hands queued jobs to idle
 * runners, starts runners where placement says (placement.h), stops idle
 * ones to make room or after their idle time, moves jobs to a fallback,
 * and keeps count of failures (backoff, then a rest) from what runners
 * report about themselves (ready, gone).
 *
 * The pump runs once per loop turn when something changed (sched__pump),
 * before the turn's commit, and when pump_timer fires (a backoff, an
 * idle deadline or the pre-warm policy's tick is due). The policy
 * (sched_prewarm.c) runs first in the pump, so that a runner it keeps is
 * not stopped for idleness in the same turn.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "estimate.h"
#include "job.h"
#include "log.h"
#include "metrics.h"
#include "modelinfo.h"
#include "placement.h"
#include "registry.h"
#include "runner.h"
#include "scheduler_internal.h"
#include "server.h"
#include "util.h"
#include "vram.h"

#define COOLDOWN_MS 30000 /* a model that keeps failing rests this long */
#define AGING_MS 30000    /* a job waiting this long may evict a busy model's idle runner */
#define WAIT_TEXT "Waiting for resources to free up"
#define RETRY_TEXT "Getting a server ready after a problem"

const char sched__paused_text[] =
	"This quality is paused for now. Your request starts when it is back; you can also "
	"cancel it and pick another quality.";
#define POSITIONS_MS 200  /* queue places are told at most this often per queue */

static int64_t scaled(int64_t ms)
{
	return (int64_t)((double)ms * server.cfg.time_scale);
}

int64_t sched__need(const struct mstate *m)
{
	return m->measured > 0 ? m->measured : m->model->gpu_memory;
}

/* ---- the placement snapshot ---- */

struct snap {
	struct pl_snapshot s;
	struct pl_model *models;
	struct pl_runner *runners;
	struct srunner **srs;      /* runners[i] is srs[i] */
	struct pl_gpu gpus[VRAM_MAX_GPUS];
};

static int startable(const struct mstate *m, int64_t now)
{
	return m->model->enabled && !m->held && !m->retired && !server.stopping &&
	       now >= m->retry_at_ms;
}

static size_t waiting_for(const struct mstate *m, int64_t *oldest)
{
	size_t n = m->q.n;

	*oldest = m->q.head ? m->q.head->queued_at_ms : 0;
	if (m->tier && m->tier->q.head) {
		n += m->tier->q.n;
		if (*oldest == 0 || m->tier->q.head->queued_at_ms < *oldest)
			*oldest = m->tier->q.head->queued_at_ms;
	}
	return n;
}

static int pl_state(const struct srunner *sr)
{
	switch (sr->r->state) {
	case RUNNER_STARTING:
		return PL_STARTING;
	case RUNNER_READY:
		return sr->job ? PL_BUSY : PL_IDLE;
	case RUNNER_STOPPING:
	case RUNNER_FAILED:
		return PL_STOPPING;
	default:
		return PL_BUSY;
	}
}

static void model_entry(struct pl_model *pm, const struct mstate *m, int64_t now)
{
	const struct reg_model *rm = m->model;

	pm->need = sched__need(m);
	pm->priority = rm->priority;
	pm->min_instances = rm->min_instances;
	pm->max_instances = rm->max_instances;
	pm->startable = startable(m, now);
	pm->resting = m->cooldown_until_ms > now || m->held || !sched__routable(m);
	pm->waiting = waiting_for(m, &pm->oldest_wait_ms);
	pm->weight = sched__weight(m);
	pm->weight_set = sched__weight_set(m);
	pm->fallback = -1;
	{
		/* Its fallback, else (a variant on trial) its rollout baseline. */
		struct mstate *f = sched__fallback_state(rm);
		pm->fallback = f ? f->index : -1;
	}
}

static void snap_build(struct snap *sn)
{
	int64_t now = util_now_ms();
	size_t nr = 0, k = 0;

	memset(sn, 0, sizeof *sn);
	for (size_t i = 0; i < sched__s.nmodels; i++)
		nr += (size_t)sched__s.models[i]->nrunners;
	sn->models = xcalloc(sched__s.nmodels + 1, sizeof *sn->models);
	sn->runners = xcalloc(nr + 1, sizeof *sn->runners);
	sn->srs = xcalloc(nr + 1, sizeof *sn->srs);
	for (size_t i = 0; i < sched__s.nmodels; i++) {
		struct mstate *m = sched__s.models[i];
		m->index = (int)i;
		model_entry(&sn->models[i], m, now);
		for (struct srunner *sr = m->runners; sr && k < nr; sr = sr->next, k++) {
			sn->runners[k] = (struct pl_runner){
				.model = (int)i, .gpu = sr->gpu, .state = pl_state(sr),
				.reserved = sr->reserved, .last_used_ms = sr->r->last_used_ms,
				.external = sr->m->model->runtime == REG_RUNTIME_EXTERNAL};
			sn->srs[k] = sr;
		}
	}
	for (int g = 0; g < vram_count() && g < VRAM_MAX_GPUS; g++)
		sn->gpus[g] = (struct pl_gpu){vram_gpu(g)->budget, vram_gpu(g)->reserved};
	sn->s = (struct pl_snapshot){sn->models, sched__s.nmodels, sn->runners, k, sn->gpus,
				     vram_count(), now, scaled(AGING_MS)};
}

static void snap_free(struct snap *sn)
{
	free(sn->models);
	free(sn->runners);
	free(sn->srs);
}

/* ---- dispatch ---- */

/* The idle runner of m that waited longest, or NULL. */
static struct srunner *idle_runner(struct mstate *m)
{
	struct srunner *best = NULL;

	for (struct srunner *sr = m->runners; sr; sr = sr->next)
		if (sr->job == NULL && runner_idle(sr->r) &&
		    (best == NULL || sr->r->last_used_ms < best->r->last_used_ms))
			best = sr;
	return best;
}

/* The job m should take next: its own queue's head or its tier's, whichever is first. */
static struct sjob *next_job(struct mstate *m)
{
	struct sjob *a = m->q.head, *b = m->tier ? m->tier->q.head : NULL;

	if (a == NULL || b == NULL)
		return a ? a : b;
	if (a->job->priority != b->job->priority)
		return a->job->priority > b->job->priority ? a : b;
	return a->order < b->order ? a : b;
}

/* Hands queued jobs to idle runners, round robin over the tier's models. */
static void dispatch_tier(struct tier *t)
{
	int progress = 1;
	int64_t now = util_now_ms();

	while (progress && t->nmodels > 0) {
		progress = 0;
		for (size_t k = 0; k < t->nmodels; k++) {
			struct mstate *m = t->models[(t->rr + k) % t->nmodels];
			struct srunner *sr = m->cooldown_until_ms > now ? NULL : idle_runner(m);
			/* A model out of the split (weight 0) still runs the jobs pinned to it. */
			struct sjob *sj = sr == NULL		? NULL
					  : sched__routable(m) ? next_job(m)
							       : m->q.head;
			if (sj == NULL)
				continue;
			sched__prewarm_dispatched(m, sj);
			sched__dispatch(sj, sr);
			progress = 1;
		}
		t->rr++;
	}
}

/* Models outside any tier (quality auto) serve only jobs pinned to them. */
static void dispatch_untiered(struct mstate *m)
{
	struct srunner *sr;

	while (m->q.head && (sr = idle_runner(m)) != NULL) {
		sched__prewarm_dispatched(m, m->q.head);
		sched__dispatch(m->q.head, sr);
	}
}

static struct mstate *fallback_of(struct mstate *m);
static void cannot_run(struct mstate *m, const char *why);
static void fall_back_queue(struct mstate *m, struct squeue *q, struct mstate *fb,
			    const char *why);

/* ---- starting runners ---- */

static const char *configdir(char *out, size_t n)
{
	const char *slash;

	snprintf(out, n, "%s", server.cfg.config_path ? server.cfg.config_path : ".");
	slash = strrchr(out, '/');
	if (slash)
		out[slash - out] = '\0';
	else
		snprintf(out, n, ".");
	return out;
}

/* The first of the model's URLs no runner of it uses (external), or -1. */
static int free_url(const struct mstate *m)
{
	for (size_t i = 0; i < m->model->nurls; i++) {
		int used = 0;
		for (const struct srunner *sr = m->runners; sr; sr = sr->next)
			used |= sr->url == (int)i;
		if (!used)
			return (int)i;
	}
	return -1;
}

struct srunner *sched__start_runner(struct mstate *m, int gpu, int64_t bytes)
{
	struct srunner *sr = xcalloc(1, sizeof *sr);
	char logs[4096], runs[4096], outs[4096], conf[4096];
	struct runner_env env = {.logs_dir = logs, .runs_dir = runs, .out_root = outs,
				 .bindir = server.cfg.bindir, .configdir = configdir(conf, sizeof conf),
				 .time_scale = server.cfg.time_scale,
				 .stop_grace_ms = server.cfg.stop_grace_ms};
	struct err e = {0};
	int url = m->model->runtime == REG_RUNTIME_EXTERNAL ? free_url(m) : -1;

	snprintf(logs, sizeof logs, "%s", server_path("logs"));
	snprintf(runs, sizeof runs, "%s", server_path("runs"));
	snprintf(outs, sizeof outs, "%s", server_path("outputs"));
	sr->m = m;
	sr->gpu = gpu;
	sr->url = url;
	sr->r = runner_start(m->model, gpu, url >= 0 ? m->model->urls[url] : NULL, &env,
			     &sched__runner_cbs, sr, &e);
	if (sr->r == NULL) {
		free(sr);
		metrics_inc(MC_RUNNER_START_FAILS, &(struct metrics_labels){.model = m->model->id}, 1);
		metrics_event("start_failure", m->model->id, NULL);
		cannot_run(m, e.msg);
		return NULL;
	}
	sr->reg = registry_ref(sched__s.reg);
	sr->reserved = bytes;
	vram_reserve(gpu, bytes);
	sr->next = m->runners;
	m->runners = sr;
	m->nrunners++;
	m->nstarting++;
	sr->starting = 1;
	server.runners_started++;
	metrics_inc(MC_RUNNERS_STARTED, &(struct metrics_labels){.model = m->model->id}, 1);
	return sr;
}

/* Tells a job why it waits (published once per change). */
static void say(struct sjob *sj, const char *text)
{
	if (sj == NULL || sj->waiting == text)
		return;
	sj->waiting = text;
	sched__publish(sj, "state");
}

static void say_waiting(struct sjob *sj)
{
	if (sj != NULL && sj->waiting == NULL)
		say(sj, WAIT_TEXT);
}

/* Every job of q hears that what it asked for is paused. */
static void say_paused(struct squeue *q)
{
	for (struct sjob *sj = q->head; sj; sj = sj->next)
		say(sj, sched__paused_text);
}

void sched__unpause(struct squeue *q)
{
	for (struct sjob *sj = q->head; sj; sj = sj->next)
		if (sj->waiting == sched__paused_text)
			say(sj, NULL);
}

int sched__tier_paused(const struct tier *t)
{
	for (size_t i = 0; i < t->nmodels; i++)
		if (!t->models[i]->held)
			return 0;
	return t->nmodels > 0;
}

/* The head job of m moves to the fallback f, which can serve it now. */
static void move_head_to(struct mstate *m, struct sjob *sj, struct mstate *f)
{
	sched__add_tried(sj->job, m->model->id, 0);
	sched__note_fallback(sj, m->model->id, f->model);
	log_info("job moved to a fallback that fits job=%s from=%s to=%s", sj->job->id,
		 m->model->id, f->model->id);
	sched__move(sj, f, "fallback that fits");
}

/*
 * Acts on placement's plan for one more runner of m. Returns 1 when a
 * runner starts or room is being made, 0 when nothing more can be done.
 */
static int apply(struct snap *sn, struct mstate *m, struct sjob *head)
{
	struct pl_plan p;

	pl_plan(&sn->s, m->index, &p);
	switch (p.action) {
	case PL_START:
		return sched__start_runner(m, p.gpu, sched__need(m)) != NULL;
	case PL_EVICT:
		for (size_t i = 0; i < p.nvictims; i++) {
			struct srunner *v = sn->srs[p.victims[i]];
			log_info("evicting runner=%s model=%s for model=%s need_mb=%lld", v->r->id,
				 v->m->model->id, m->model->id, (long long)(sched__need(m) >> 20));
			metrics_inc(MC_EVICTIONS, &(struct metrics_labels){.model = v->m->model->id}, 1);
			metrics_event("eviction", v->m->model->id, m->model->id);
			runner_stop(v->r, "evicted to make room");
		}
		return 0; /* m starts when the memory is back (on_gone pumps) */
	case PL_FALLBACK:
		if (head)
			move_head_to(m, head, sched__s.models[p.fallback]);
		return 0;
	case PL_NEVER:
		sched__fall_back(m, "needs more GPU memory than any GPU has");
		return 0;
	default:
		say_waiting(head);
		return 0;
	}
}


/*
 * Jobs pinned to a model the operators hold go to its fallback, or to
 * another model of its tier, or wait knowing that it is paused.
 */
static void pinned_to_held(struct mstate *m)
{
	struct mstate *fb = fallback_of(m);

	if (fb) {
		fall_back_queue(m, &m->q, fb, "paused by an operator");
	} else if (m->tier && !sched__tier_paused(m->tier)) {
		while (m->q.head)
			sched__move(m->q.head, NULL, "paused by an operator");
	} else {
		say_paused(&m->q);
	}
}

/* Runners for the jobs pinned to m. */
static void start_pinned(struct mstate *m)
{
	struct snap sn;

	if (m->held && !m->retired && m->q.head) {
		pinned_to_held(m);
		return;
	}
	while (m->q.n > (size_t)m->nstarting && m->nrunners < m->model->max_instances &&
	       startable(m, util_now_ms())) {
		int more;
		snap_build(&sn);
		more = apply(&sn, m, m->q.head);
		snap_free(&sn);
		if (!more)
			return;
	}
}

/* Starting runners of t's models not claimed by their pinned jobs. */
static size_t spare_starting(const struct tier *t)
{
	size_t n = 0;

	for (size_t i = 0; i < t->nmodels; i++)
		if ((size_t)t->models[i]->nstarting > t->models[i]->q.n)
			n += (size_t)t->models[i]->nstarting - t->models[i]->q.n;
	return n;
}

/* 1 when no model of t can ever take its jobs now (all resting, or too big). */
static int tier_dead(const struct snap *sn, const struct tier *t)
{
	for (size_t i = 0; i < t->nmodels; i++) {
		const struct pl_model *pm = &sn->models[t->models[i]->index];
		if (!pm->resting && pl_could_fit(&sn->s, pm->need) && t->models[i]->model->enabled)
			return 0;
	}
	return 1;
}

/* Runners for the jobs any model of t may run. */
static void start_unpinned(struct tier *t)
{
	while (t->q.n > spare_starting(t)) {
		struct snap sn;
		int idx[64], m, more;
		size_t n = 0;

		snap_build(&sn);
		for (size_t i = 0; i < t->nmodels && n < 64; i++)
			idx[n++] = t->models[i]->index;
		if (tier_dead(&sn, t)) {
			snap_free(&sn);
			if (sched__tier_paused(t) && fallback_of(t->models[0]) == NULL)
				say_paused(&t->q);
			else
				sched__fall_back(t->models[0], "no model of this quality can run now");
			return;
		}
		m = pl_pick_start(&sn.s, idx, n);
		more = m >= 0 && apply(&sn, sched__s.models[m], t->q.head);
		snap_free(&sn);
		if (!more)
			return;
	}
}

int sched__place(int64_t bytes)
{
	struct snap sn;
	int gpu;

	snap_build(&sn);
	gpu = pl_place(&sn.s, bytes);
	snap_free(&sn);
	return gpu;
}

/* min_instances: runners kept warm without jobs. */
static void keep_minimum(struct mstate *m)
{
	while (m->nrunners < m->model->min_instances && startable(m, util_now_ms())) {
		int gpu = sched__place(sched__need(m));

		if (gpu < 0 || sched__start_runner(m, gpu, sched__need(m)) == NULL)
			return;
	}
}

/* ---- live queue places ---- */

/*
 * Watchers of queued jobs hear their new place when jobs ahead leave: at
 * most every POSITIONS_MS per queue, since telling costs a walk of the
 * queue (and nothing when nobody watches anything).
 */
static void publish_positions(int64_t now)
{
	int watching = sched__s.hooks.watching && sched__s.hooks.watching();

	if (now - sched__s.positions_ms < POSITIONS_MS)
		return;
	sched__s.positions_ms = now;
	for (size_t i = 0; i < sched__s.ntiers; i++) {
		struct tier *t = sched__s.tiers[i];
		if (t->positions_dirty && watching)
			sched__publish_positions(&t->q);
		t->positions_dirty = 0;
	}
	for (size_t i = 0; i < sched__s.nmodels; i++) {
		struct mstate *m = sched__s.models[i];
		if (m->positions_dirty && watching)
			sched__publish_positions(&m->q);
		m->positions_dirty = 0;
	}
}

static int positions_due(void)
{
	for (size_t i = 0; i < sched__s.ntiers; i++)
		if (sched__s.tiers[i]->positions_dirty)
			return 1;
	for (size_t i = 0; i < sched__s.nmodels; i++)
		if (sched__s.models[i]->positions_dirty)
			return 1;
	return 0;
}

/* ---- idle stops and the timer ---- */

/*
 * Stops runners idle past their model's idle_timeout, above min_instances;
 * a runner the pre-warm policy keeps (demand is predicted) stays.
 */
static void stop_idle(struct mstate *m, int64_t now)
{
	int live = m->nrunners;

	for (struct srunner *sr = m->runners; sr; sr = sr->next) {
		if (live <= m->model->min_instances)
			return;
		if (sr->job || !runner_idle(sr->r) || m->model->runtime == REG_RUNTIME_EXTERNAL ||
		    sched__prewarm_idle_at(sr) > now)
			continue;
		runner_stop(sr->r, "idle");
		live--;
	}
}

/* The next moment the pump has something to do by itself, or -1. */
static int64_t next_deadline(void)
{
	int64_t next = positions_due() ? sched__s.positions_ms + POSITIONS_MS : -1;
	int64_t tick = sched__prewarm_next();

	if (tick >= 0 && (next < 0 || tick < next))
		next = tick;

	for (size_t i = 0; i < sched__s.nmodels; i++) {
		const struct mstate *m = sched__s.models[i];
		int64_t oldest;
		if (waiting_for(m, &oldest) > 0 && m->retry_at_ms > 0 &&
		    (next < 0 || m->retry_at_ms < next))
			next = m->retry_at_ms;
		if (m->model->runtime == REG_RUNTIME_EXTERNAL || m->nrunners <= m->model->min_instances)
			continue;
		for (const struct srunner *sr = m->runners; sr; sr = sr->next)
			if (sr->job == NULL && runner_idle(sr->r) &&
			    (next < 0 || sched__prewarm_idle_at(sr) < next))
				next = sched__prewarm_idle_at(sr);
	}
	return next;
}

static void on_pump_timer(uv_timer_t *t)
{
	sched__pump();
}

static void arm_timer(void)
{
	int64_t next = next_deadline(), now = util_now_ms();

	if (next < 0) {
		uv_timer_stop(&sched__s.pump_timer);
		return;
	}
	uv_timer_start(&sched__s.pump_timer, on_pump_timer,
		       next > now ? (uint64_t)(next - now) + 1 : 1, 0);
}

void sched__run_pump(void)
{
	int64_t now = util_now_ms();

	if (sched__s.reconciling)
		return;
	sched__cluster_read_notes();
	sched__cluster_claim();
	for (size_t i = 0; i < sched__s.ntiers; i++)
		dispatch_tier(sched__s.tiers[i]);
	for (size_t i = 0; i < sched__s.nmodels; i++)
		if (sched__s.models[i]->tier == NULL)
			dispatch_untiered(sched__s.models[i]);
	sched__prewarm_tick(); /* before the idle stops: it may keep a runner */
	for (size_t i = 0; i < sched__s.nmodels; i++)
		stop_idle(sched__s.models[i], now);
	for (size_t i = 0; !server.stopping && i < sched__s.nmodels; i++)
		start_pinned(sched__s.models[i]);
	for (size_t i = 0; !server.stopping && i < sched__s.ntiers; i++)
		start_unpinned(sched__s.tiers[i]);
	for (size_t i = 0; !server.stopping && i < sched__s.nmodels; i++)
		keep_minimum(sched__s.models[i]);
	publish_positions(now);
	arm_timer();
}

/* ---- falling back, failures, cooldown ---- */

/* The fallback of m that serves now, as a model state, or NULL. */
static struct mstate *fallback_of(struct mstate *m)
{
	struct snap sn;
	int f;

	snap_build(&sn);
	f = pl_fallback(&sn.s, m->index, 0);
	snap_free(&sn);
	return f >= 0 ? sched__s.models[f] : NULL;
}

/* Moves (or fails) every job of q that waits for m. */
static void fall_back_queue(struct mstate *m, struct squeue *q, struct mstate *fb, const char *why)
{
	while (q->head) {
		struct sjob *sj = q->head;
		sched__add_tried(sj->job, m->model->id, 0);
		if (fb == NULL) {
			sched__dequeue(sj);
			sched__fail_job(sj, "MODEL_UNAVAILABLE", NULL, NULL, NULL, why);
			continue;
		}
		sched__note_fallback(sj, m->model->id, fb->model);
		log_info("job moved to fallback job=%s from=%s to=%s", sj->job->id, m->model->id,
			 fb->model->id);
		sched__move(sj, fb, why);
	}
}

/*
 * m cannot serve (it rests, or never fits): the jobs pinned to it move to
 * its fallback or fail; so do its tier's jobs when no other model of the
 * tier can serve them.
 */
void sched__fall_back(struct mstate *m, const char *why)
{
	struct mstate *fb = fallback_of(m);
	struct tier *t = m->tier;
	struct snap sn;
	int dead = 0;

	fall_back_queue(m, &m->q, fb, why);
	if (t == NULL || t->q.n == 0)
		return;
	snap_build(&sn);
	dead = tier_dead(&sn, t);
	snap_free(&sn);
	if (dead)
		fall_back_queue(m, &t->q, fb && fb->tier != t ? fb : NULL, why);
}

/* Jobs of m that wait through its retries hear why. */
static void say_retrying(struct mstate *m)
{
	struct squeue *qs[2] = {&m->q, m->tier ? &m->tier->q : NULL};

	for (int i = 0; i < 2; i++)
		for (struct sjob *sj = qs[i] ? qs[i]->head : NULL; sj; sj = sj->next)
			if (sj->waiting != sched__paused_text)
				say(sj, RETRY_TEXT);
}

static void model_failed(struct mstate *m, const char *why)
{
	int64_t now = util_now_ms();

	m->failures++;
	snprintf(m->last_error, sizeof m->last_error, "%s", why);
	log_warn("model failure model=%s failures=%d reason=%s", m->model->id, m->failures,
		 log_q(why));
	if (m->failures >= SCHED_FAILURES_MAX) {
		m->cooldown_until_ms = now + scaled(COOLDOWN_MS);
		m->retry_at_ms = m->cooldown_until_ms;
		log_warn("model resting model=%s cooldown_ms=%lld", m->model->id,
			 (long long)(m->cooldown_until_ms - now));
		metrics_inc(MC_COOLDOWNS, &(struct metrics_labels){.model = m->model->id}, 1);
		metrics_event("cooldown", m->model->id, NULL);
		sched__fall_back(m, why);
		return;
	}
	/* The first failure restarts at once, the second after 500 ms; the third rests the model. */
	m->retry_at_ms = now + (m->failures > 1 ? scaled(125LL << m->failures) : 0);
	say_retrying(m);
}

/*
 * A runner of m did not start (it exited, or never answered). When a
 * fallback serves now, m rests for its backoff and its jobs move there at
 * once; without one, they wait through at most SCHED_FAILURES_MAX tries,
 * told why, then fail.
 */
void sched__start_failed(struct mstate *m, const char *why)
{
	if (fallback_of(m) != NULL && m->failures + 1 < SCHED_FAILURES_MAX) {
		m->failures++;
		snprintf(m->last_error, sizeof m->last_error, "%s", why);
		m->retry_at_ms = m->cooldown_until_ms = util_now_ms() + scaled(250LL << m->failures);
		log_warn("model failed to start model=%s failures=%d reason=%s", m->model->id,
			 m->failures, log_q(why));
		sched__fall_back(m, why);
	} else {
		model_failed(m, why);
	}
	sched__pump();
}

/* m's command cannot be run at all (missing, not executable): retrying cannot help. */
static void cannot_run(struct mstate *m, const char *why)
{
	if (m->failures < SCHED_FAILURES_MAX - 1)
		m->failures = SCHED_FAILURES_MAX - 1;
	model_failed(m, why);
	sched__pump();
}

void sched__model_error(struct mstate *m, const char *why)
{
	m->errors++;
	model_failed(m, why);
}

/* ---- what runners say about themselves ---- */

static void on_spawned(struct runner *r, void *ud)
{
	sched__record_runner_put(r);
}

static void on_ready(struct runner *r, void *ud)
{
	struct srunner *sr = ud;
	struct mstate *m = sr->m;

	if (sr->starting) {
		sr->starting = 0;
		m->nstarting--;
	}
	estimate_learn_start(&m->est, (double)(r->ready_ms - r->started_ms));
	metrics_observe(MH_COLD_START, &(struct metrics_labels){.model = m->model->id},
			(double)(r->ready_ms - r->started_ms) / 1000.0);
	sched__measure(sr);
	modelinfo_runner_ready(r->model, r->base_url); /* its node classes, for the docs */
	sched__pump();
}

void sched__release_gpu(struct srunner *sr)
{
	vram_release(sr->gpu, sr->reserved);
	sr->reserved = 0;
}

static void unlink_runner(struct srunner *sr)
{
	struct mstate *m = sr->m;

	for (struct srunner **pp = &m->runners; *pp; pp = &(*pp)->next)
		if (*pp == sr) {
			*pp = sr->next;
			break;
		}
	m->nrunners--;
	if (sr->starting)
		m->nstarting--;
}

static void on_gone(struct runner *r, const char *why, int failed, int during_start, void *ud)
{
	struct srunner *sr = ud;
	struct mstate *m = sr->m;
	struct sjob *sj = sr->job;

	unlink_runner(sr);
	sched__release_gpu(sr);
	sched__record_runner_delete(r->id);
	if (sj) {
		/*
		 * Handed over this turn and never sent, or running on a runner the
		 * operators stopped: it simply waits again, no attempt lost.
		 */
		sr->job = NULL;
		sj->job->attempt--;
		if (sj->job->status == JOB_PREPARING)
			sched__add_tried(sj->job, m->model->id, -1);
		sched__requeue(sj, NULL, why);
	}
	if (failed && !server.stopping) {
		metrics_inc(during_start ? MC_RUNNER_START_FAILS : MC_RUNNER_RESTARTS,
			    &(struct metrics_labels){.model = m->model->id}, 1);
		metrics_event(during_start ? "start_failure" : "restart", m->model->id, NULL);
		if (during_start) {
			sched__start_failed(m, why);
		} else {
			m->restarts++;
			model_failed(m, why);
		}
	}
	registry_unref(sr->reg);
	free(sr);
	sched__forget_model(m);
	sched__check_stopped();
	sched__pump();
}

const struct runner_cbs sched__runner_cbs = {
	.on_spawned = on_spawned,
	.on_ready = on_ready,
	.on_running = sched__on_running,
	.on_progress = sched__on_progress,
	.on_done = sched__on_done,
	.on_job_error = sched__on_job_error,
	.on_gone = on_gone,
};

void sched__measure(struct srunner *sr)
{
	int64_t used = sr->r->pid > 0 ? vram_measure(sr->gpu, sr->r->pid) : -1;

	if (used <= 0)
		return;
	sr->measured = used;
	sr->m->measured = used;
	if (used != sr->reserved) {
		vram_release(sr->gpu, sr->reserved);
		vram_reserve(sr->gpu, used);
		sr->reserved = used;
	}
}

/* ---- shutdown ---- */

int sched__runners_alive(void)
{
	int n = 0;

	for (size_t i = 0; i < sched__s.nmodels; i++)
		n += sched__s.models[i]->nrunners;
	return n;
}

void sched__stop_runners(const char *why, int drain)
{
	for (size_t i = 0; i < sched__s.nmodels; i++)
		for (struct srunner *sr = sched__s.models[i]->runners, *next; sr; sr = next) {
			next = sr->next;
			if (drain && (sr->job || sr->r->state == RUNNER_BUSY ||
				      sr->r->state == RUNNER_DRAINING))
				runner_drain(sr->r, why);
			else
				runner_stop(sr->r, why);
		}
}

void sched__check_stopped(void)
{
	void (*done)(void) = sched__s.stop_done;

	if (done == NULL || sched__runners_alive() > 0)
		return;
	uv_timer_stop(&sched__s.drain_timer);
	sched__s.stop_done = NULL;
	done();
}
