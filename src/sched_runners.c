/*
 * sched_runners.c - the scheduler's runners: starting them, fitting them
 * into GPU memory, evicting idle ones to make room, moving waiting jobs to
 * a fallback, failures and cooldown, and the runner callbacks (ready,
 * gone), release, measure and idle timers.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "estimate.h"
#include "job.h"
#include "json.h"
#include "log.h"
#include "registry.h"
#include "runner.h"
#include "scheduler.h"
#include "scheduler_internal.h"
#include "server.h"
#include "util.h"
#include "vram.h"

#define FAILURES_MAX 3         /* consecutive failures before a model rests */
#define COOLDOWN_MS 30000      /* a model that keeps failing rests this long */
#define AGING_MS 30000         /* a job waiting this long may evict a busy model's idle runner */

static void start_failure(struct mstate *m, const char *why);
static void fall_back(struct mstate *m, const char *why);

/* ---- runners ---- */

static struct runner *idle_runner(struct mstate *m)
{
	for (struct runner *r = m->runners; r; r = r->next)
		if (r->state == RUNNER_READY && r->job == NULL)
			return r;
	return NULL;
}

static void on_idle_timeout(uv_timer_t *t)
{
	struct runner *r = t->data;
	struct mstate *m = sched__mstate_of(r->model_id);

	if (r->state == RUNNER_READY && r->job == NULL && m && m->nrunners > m->model->min_instances)
		runner_stop(r, "idle");
}

static void arm_idle(struct runner *r)
{
	uint64_t ms = (uint64_t)(r->model->idle_timeout_ms * server.cfg.time_scale);

	if (!r->external)
		uv_timer_start(&r->timer, on_idle_timeout, ms ? ms : 1, 0);
}

static void dispatch(struct mstate *m, struct runner *r)
{
	struct sjob *sj = m->head;
	char pid[96];

	sched__queue_remove(m, sj);
	sj->runner = r;
	snprintf(pid, sizeof pid, "%s-%d", sj->job->id, sj->job->attempt);
	job_set_str(&sj->job->runner_id, r->id);
	job_set_str(&sj->job->remote_prompt_id, pid);
	job_set_str(&sj->job->remote_url, r->base_url);
	sched__set_state(sj, JOB_PREPARING);
	runner_assign(r, sj);
}

int64_t sched__need(const struct mstate *m)
{
	return m->measured > 0 ? m->measured : m->model->gpu_memory;
}

void sched__start_runner(struct mstate *m, int gpu, int64_t bytes)
{
	struct runner *r = runner_start(m->model, gpu);

	if (r == NULL) {
		start_failure(m, "the model server could not be started");
		return;
	}
	vram_reserve(gpu, bytes);
	r->reserved = bytes;
	r->next = m->runners;
	m->runners = r;
	m->nrunners++;
	m->nstarting++;
}

/* Tells the head job why it waits (published once per change). */
static void waiting_for(struct mstate *m, const char *why)
{
	struct sjob *sj = m->head;

	if (sj == NULL || (sj->job->message && strcmp(sj->job->message, why) == 0))
		return;
	job_set_str(&sj->job->message, why);
	sched__publish(sj, "state");
}

/* An idle runner of another model that may be stopped to make room. */
static int evictable(const struct runner *r, const struct mstate *owner, int aged)
{
	if (r->state != RUNNER_READY || r->job != NULL || r->external)
		return 0;
	/* Anti-thrash: a model with work waiting keeps its runner unless we aged. */
	return aged || (owner->head == NULL && owner->nrunners > owner->model->min_instances);
}

/* GPU memory held by runners that are stopping: it comes back soon. */
static int64_t returning(int gpu)
{
	int64_t n = 0;

	for (size_t i = 0; i < sched__nmodels; i++)
		for (struct runner *r = sched__models[i].runners; r; r = r->next)
			if (r->gpu == gpu && r->state == RUNNER_STOPPING)
				n += r->reserved;
	return n;
}

/* Victims on gpu g, lowest model priority first, then least recently used. */
static size_t victims_on(int g, const struct mstate *m, int aged, struct runner **v, size_t max)
{
	size_t nv = 0;

	for (size_t i = 0; i < sched__nmodels; i++)
		for (struct runner *r = sched__models[i].runners; r && nv < max; r = r->next)
			if (&sched__models[i] != m && r->gpu == g && evictable(r, &sched__models[i], aged))
				v[nv++] = r;
	for (size_t i = 1; i < nv; i++)
		for (size_t k = i; k > 0; k--) {
			struct runner *a = v[k - 1], *b = v[k];
			if (a->model->priority < b->model->priority ||
			    (a->model->priority == b->model->priority && a->last_used_ms <= b->last_used_ms))
				break;
			v[k - 1] = b;
			v[k] = a;
		}
	return nv;
}

/*
 * Finds a GPU where stopping idle runners frees `bytes`, and stops just
 * enough of them. Returns 1 when room is being made, 0 when nothing can be
 * evicted now (busy runners are never touched).
 */
static int make_room(struct mstate *m, int64_t bytes)
{
	int aged = m->head && util_now_ms() - m->head->queued_at_ms >=
				      (int64_t)(AGING_MS * server.cfg.time_scale);

	for (int g = 0; g < vram_count(); g++) {
		struct runner *v[64];
		size_t nv = victims_on(g, m, aged, v, 64);
		int64_t avail = vram_free(g) + returning(g), could = avail;

		for (size_t i = 0; i < nv; i++)
			could += v[i]->reserved;
		if (could < bytes)
			continue;
		for (size_t i = 0; i < nv && avail < bytes; i++) {
			log_info("evicting runner=%s model=%s for model=%s need_mb=%lld", v[i]->id,
				 v[i]->model_id, m->model->id, (long long)(bytes >> 20));
			avail += v[i]->reserved;
			runner_stop(v[i], "evicted to make room");
		}
		return 1;
	}
	return 0;
}

/* The head job moves to the fallback when that fits now and this model cannot. */
static int fallback_fits(struct mstate *m)
{
	const struct reg_model *fb = m->model->fallback;
	struct mstate *f = fb ? sched__mstate_of(fb->id) : NULL;
	struct sjob *sj = m->head;

	if (f == NULL || sj == NULL || m->nrunners > 0 ||
	    (vram_pick(sched__need(f)) < 0 && idle_runner(f) == NULL))
		return 0;
	sched__queue_remove(m, sj);
	sched__add_tried(sj->job, m->model->id);
	sched__note_fallback(sj, m->model, fb);
	job_set_str(&sj->job->model_id, fb->id);
	log_info("job moved to a fallback that fits job=%s from=%s to=%s", sj->job->id,
		 m->model->id, fb->id);
	sched__queue_push(f, sj);
	sched__set_state(sj, JOB_QUEUED);
	sched__pump();
	return 1;
}

void sched__pump_model(struct mstate *m)
{
	struct runner *r;
	int64_t bytes;
	int want, gpu;

	while (m->head && (r = idle_runner(m)) != NULL)
		dispatch(m, r);
	if (server.stopping || m->held || !m->model->enabled || util_now_ms() < m->retry_at_ms)
		return;
	want = m->nrunners < m->model->min_instances ||
	       ((int64_t)m->nqueued > m->nstarting && m->nrunners < m->model->max_instances);
	if (!want)
		return;
	bytes = sched__need(m);
	if (!vram_could_fit(bytes)) {
		fall_back(m, "needs more GPU memory than any GPU has");
		return;
	}
	gpu = vram_pick(bytes);
	if (gpu >= 0) {
		sched__start_runner(m, gpu, bytes);
		return;
	}
	if (!make_room(m, bytes) && !fallback_fits(m))
		waiting_for(m, "Waiting for resources to free up");
}

/*
 * A job moving to a fallback of another quality: the user is told, and the
 * job shows the quality it is really made at.
 */
void sched__note_fallback(struct sjob *sj, const struct reg_model *from, const struct reg_model *to)
{
	char text[300];

	if (to->quality < 0 || to->quality == sj->quality || to->function != sj->fn)
		return;
	snprintf(text, sizeof text, "%s is not available right now — using %s instead",
		 sj->fn->qualities[sj->quality].label, sj->fn->qualities[to->quality].label);
	free(sj->notice);
	sj->notice = xstrdup(text);
	sj->quality = to->quality;
	job_set_str(&sj->job->quality, sj->fn->qualities[to->quality].key);
	(void)from;
}

/* Moves every job waiting for m to its fallback, or fails them. */
static void fall_back(struct mstate *m, const char *why)
{
	const struct reg_model *fb = m->model->fallback;

	while (m->head) {
		struct sjob *sj = m->head;
		sched__queue_remove(m, sj);
		sched__add_tried(sj->job, m->model->id);
		if (fb && sched__mstate_of(fb->id)) {
			sched__note_fallback(sj, m->model, fb);
			job_set_str(&sj->job->model_id, fb->id);
			log_info("job moved to fallback job=%s from=%s to=%s", sj->job->id,
				 m->model->id, fb->id);
			sched__queue_push(sched__mstate_of(fb->id), sj);
			sched__set_state(sj, JOB_QUEUED);
		} else {
			sched__fail_job(sj, "MODEL_UNAVAILABLE", NULL, NULL, NULL, why);
		}
	}
}

static void model_failed(struct mstate *m, const char *why)
{
	int64_t now = util_now_ms();

	m->failures++;
	log_warn("model failure model=%s failures=%d reason=%s", m->model->id, m->failures, log_q(why));
	if (m->failures >= FAILURES_MAX) {
		m->cooldown_until_ms = now + (int64_t)(COOLDOWN_MS * server.cfg.time_scale);
		m->retry_at_ms = m->cooldown_until_ms;
		log_warn("model resting model=%s cooldown_ms=%lld", m->model->id,
			 (long long)(m->cooldown_until_ms - now));
		fall_back(m, why);
		return;
	}
	/* The first failure restarts at once; then 250 ms, 500 ms, ... */
	m->retry_at_ms = now + (m->failures > 1 ? (int64_t)((125 << m->failures) * server.cfg.time_scale) : 0);
	if (m->retry_at_ms > now)
		uv_timer_start(&sched__pump_timer, sched__on_pump, (uint64_t)(m->retry_at_ms - now) + 1, 0);
}

static void start_failure(struct mstate *m, const char *why)
{
	/* A model with a fallback does not keep its users waiting on retries. */
	if (m->model->fallback && m->failures + 1 < FAILURES_MAX) {
		m->failures++;
		m->retry_at_ms = util_now_ms() + (int64_t)((250 << m->failures) * server.cfg.time_scale);
		fall_back(m, why);
	} else {
		model_failed(m, why);
	}
	sched__pump();
}

void sched_on_ready(struct runner *r)
{
	struct mstate *m = sched__mstate_of(r->model_id);

	m->nstarting--;
	estimate_learn_start(&m->est, (double)(r->ready_ms - r->started_ms));
	sched__measure(r, m);
	arm_idle(r);
	sched__pump();
}

void sched_on_runner_gone(struct runner *r, const char *why, int during_start)
{
	struct mstate *m = sched__mstate_of(r->model_id);
	struct sjob *sj = r->job;
	int deliberate = r->state == RUNNER_STOPPING;

	for (struct runner **pp = &m->runners; *pp; pp = &(*pp)->next)
		if (*pp == r) {
			*pp = r->next;
			break;
		}
	m->nrunners--;
	vram_release(r->gpu, r->reserved);
	r->reserved = 0;
	r->job = NULL;
	if (during_start)
		m->nstarting--;
	if (!deliberate && !server.stopping) {
		if (during_start) {
			start_failure(m, why);
		} else {
			m->restarts++;
			model_failed(m, why);
		}
	}
	if (sj && !server.stopping) {
		if (sched__mstate_of(sj->job->model_id) == m && m->cooldown_until_ms > util_now_ms() && m->model->fallback) {
			sched__add_tried(sj->job, m->model->id);
			sched__note_fallback(sj, m->model, m->model->fallback);
			sched__requeue(sj, m->model->fallback, why);
		} else {
			sched__requeue(sj, m->model, why);
		}
	}
	if (server.stopping)
		sched__check_stopped();
	sched__pump();
}

/* The runner is free again (its job ended one way or another). */
void sched__release(struct runner *r)
{
	r->job = NULL;
	r->last_used_ms = util_now_ms();
	if (r->state == RUNNER_DRAINING) {
		runner_stop(r, "drained");
	} else if (r->state == RUNNER_BUSY) {
		runner_set_state(r, RUNNER_READY);
		arm_idle(r);
	}
	sched__pump();
}

/* Records what NVML saw the runner use; later placements use it. */
void sched__measure(struct runner *r, struct mstate *m)
{
	int64_t used = r->pid > 0 ? vram_measure(r->gpu, r->pid) : -1;

	if (used <= 0)
		return;
	r->measured = used;
	m->measured = used;
	if (used != r->reserved) {
		vram_release(r->gpu, r->reserved);
		vram_reserve(r->gpu, used);
		r->reserved = used;
	}
}
