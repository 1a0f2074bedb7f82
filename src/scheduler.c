/*
 * scheduler.c - queues, dispatch, and every job state change.
 *
 * Each registry model has a queue (priority desc, then seq asc) and its
 * runners. A job waits in the queue of the model the router chose; when a
 * runner of that model is ready it is dispatched. A job whose runner
 * crashed goes back to its queue with attempt + 1; when a model fails to
 * start, its waiting jobs move to its fallback model with the same
 * validated params (bound into the fallback's own workflow at dispatch).
 *
 * Invariant: a job state change is committed to the store (job_commit)
 * before anything acts on it, then published to watchers.
 */
#include <stdio.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>

#include "estimate.h"
#include "events.h"
#include "job.h"
#include "json.h"
#include "log.h"
#include "registry.h"
#include "runner.h"
#include "runtime_docker.h"
#include "scheduler.h"
#include "server.h"
#include "store.h"
#include "thumb.h"
#include "util.h"
#include "vram.h"

#define HBUCKETS 65536
#define FAILURES_MAX 3         /* consecutive failures before a model rests */
#define COOLDOWN_MS 30000      /* a model that keeps failing rests this long */
#define AGING_MS 30000         /* a job waiting this long may evict a busy model's idle runner */
#define DRAIN_MS 60000         /* shutdown waits this long for running jobs */

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

static struct mstate *models;
static size_t nmodels;
static struct sjob *table[HBUCKETS];
static size_t nlive, nqueued_total;
static uv_timer_t pump_timer;
static int reconciling;          /* startup fetches still running */
static uv_timer_t drain_timer;   /* shutdown: stop what is still running */
static void (*stop_done)(void);
static struct job *idem_hit;     /* a finished job returned for its idempotency key */

static void pump(void);
static const struct reg_model *route(const struct reg_function *fn, int quality);
static void start_failure(struct mstate *m, const char *why);
static void fall_back(struct mstate *m, const char *why);
static void note_fallback(struct sjob *sj, const struct reg_model *from, const struct reg_model *to);
static void measure(struct runner *r, struct mstate *m);

/* ---- the id table ---- */

static unsigned hash(const char *id)
{
	unsigned h = 2166136261u;

	for (; *id; id++)
		h = (h ^ (unsigned char)*id) * 16777619u;
	return h % HBUCKETS;
}

const struct sjob *sched_find(const char *id)
{
	for (struct sjob *s = table[hash(id)]; s; s = s->hnext)
		if (strcmp(s->job->id, id) == 0)
			return s;
	return NULL;
}

static void table_add(struct sjob *sj)
{
	unsigned h = hash(sj->job->id);

	sj->hnext = table[h];
	table[h] = sj;
	nlive++;
}

static void table_remove(struct sjob *sj)
{
	for (struct sjob **pp = &table[hash(sj->job->id)]; *pp; pp = &(*pp)->hnext)
		if (*pp == sj) {
			*pp = sj->hnext;
			nlive--;
			return;
		}
}

static void sjob_free(struct sjob *sj)
{
	free(sj->notice);
	job_free(sj->job);
	json_object_put(sj->params);
	free(sj);
}

static struct mstate *mstate_of(const char *model_id)
{
	for (size_t i = 0; model_id && i < nmodels; i++)
		if (models[i].model && strcmp(models[i].model->id, model_id) == 0)
			return &models[i];
	return NULL;
}

/* ---- queues ---- */

static int before(const struct sjob *a, const struct sjob *b)
{
	if (a->job->priority != b->job->priority)
		return a->job->priority > b->job->priority;
	return a->job->seq < b->job->seq;
}

static void queue_push(struct mstate *m, struct sjob *sj)
{
	struct sjob **pp = &m->head;

	sj->queued_at_ms = util_now_ms();
	if (m->tail && !before(sj, m->tail)) {
		pp = &m->tail->next; /* the common case: append */
	} else {
		while (*pp && !before(sj, *pp))
			pp = &(*pp)->next;
	}
	sj->next = *pp;
	*pp = sj;
	if (sj->next == NULL)
		m->tail = sj;
	m->nqueued++;
	nqueued_total++;
}

static void queue_remove(struct mstate *m, struct sjob *sj)
{
	struct sjob *prev = NULL;

	for (struct sjob *s = m->head; s; prev = s, s = s->next) {
		if (s != sj)
			continue;
		if (prev)
			prev->next = s->next;
		else
			m->head = s->next;
		if (m->tail == s)
			m->tail = prev;
		s->next = NULL;
		m->nqueued--;
		nqueued_total--;
		if (m->head) {
			m->positions_dirty = 1;
			pump();
		}
		return;
	}
}

size_t sched_queued(void)
{
	return nqueued_total;
}

int64_t sched_position(const struct sjob *sj)
{
	struct mstate *m;
	int64_t n = 0;

	if (sj->job->status != JOB_QUEUED)
		return -1;
	m = mstate_of(sj->job->model_id);
	for (struct sjob *s = m ? m->head : NULL; s; s = s->next, n++)
		if (s == sj)
			return n;
	return -1;
}

/* Seconds of one run of this job: learned, else the middle of the quality's typical range. */
static double run_seconds(const struct sjob *sj, const struct mstate *m)
{
	const struct reg_quality *q = &sj->fn->qualities[sj->quality];
	double typical = (double)(q->typical_lo_s + q->typical_hi_s) / 2.0;

	return m ? estimate_run_s(&m->est, estimate_cost(sj->fn, sj->params), typical) : typical;
}

/* A runner of the model is there or coming: no start to wait for. */
static int has_runner(const struct mstate *m)
{
	return m && m->nrunners > 0;
}

int64_t sched_eta(const struct sjob *sj)
{
	struct mstate *m = mstate_of(sj->job->model_id);
	double run = run_seconds(sj, m), left, start = m ? estimate_start_s(&m->est) : 0;
	int64_t pos;

	switch (sj->job->status) {
	case JOB_QUEUED:
		pos = sched_position(sj);
		left = run * (double)(pos + 1) /
		       (double)(m && m->model->max_instances > 0 ? m->model->max_instances : 1);
		if (!has_runner(m))
			left += start;
		break;
	case JOB_PREPARING:
		left = run + (sj->runner && sj->runner->state == RUNNER_STARTING ? start : 0);
		break;
	case JOB_RUNNING:
		left = run - (double)(util_now_ms() - sj->job->started_at) / 1000.0;
		if (left < run * (100 - sj->job->progress) / 200.0)
			left = run * (100 - sj->job->progress) / 200.0; /* running long: stay honest */
		break;
	default:
		return 0;
	}
	/* Nearest whole second, at least 1 while the job is live. */
	return left < 1.5 ? 1 : (int64_t)(left + 0.5);
}

/* ---- state changes ---- */

static const char *phase_text(const struct sjob *sj, int phase)
{
	static const char *const defaults[] = {
		[REG_PHASE_QUEUED] = "Waiting",
		[REG_PHASE_PREPARING] = "Getting ready...",
		[REG_PHASE_RUNNING] = "Working on it...",
		[REG_PHASE_FINISHING] = "Adding final touches...",
		[REG_PHASE_DONE] = "Done",
		[REG_PHASE_FAILED] = "Something went wrong",
		[REG_PHASE_CANCELLED] = "Cancelled",
	};
	const char *t = registry_message(sj->fn, phase);

	return t ? t : defaults[phase];
}

static const int status_phase[] = {
	[JOB_QUEUED] = REG_PHASE_QUEUED, [JOB_PREPARING] = REG_PHASE_PREPARING,
	[JOB_RUNNING] = REG_PHASE_RUNNING, [JOB_COMPLETED] = REG_PHASE_DONE,
	[JOB_FAILED] = REG_PHASE_FAILED, [JOB_CANCELLED] = REG_PHASE_CANCELLED,
};

/*
 * The job's plain-language message for its status now: "Waiting — 3 jobs
 * ahead of yours", "Creating your image... 40%", "Adding final touches...".
 * A job retried at a lower quality keeps saying so until it runs.
 */
static void refresh_message(struct sjob *sj)
{
	char text[600];
	const char *base;
	int64_t pos;

	switch (sj->job->status) {
	case JOB_QUEUED:
		base = sj->notice ? sj->notice : phase_text(sj, REG_PHASE_QUEUED);
		pos = sched_position(sj);
		if (pos <= 0)
			snprintf(text, sizeof text, "%s — you're next", base);
		else
			snprintf(text, sizeof text, "%s — %lld job%s ahead of yours", base,
				 (long long)pos, pos == 1 ? "" : "s");
		break;
	case JOB_RUNNING:
		base = phase_text(sj, REG_PHASE_RUNNING);
		if (sj->job->progress > 0)
			snprintf(text, sizeof text, "%s %d%%", base, sj->job->progress);
		else
			snprintf(text, sizeof text, "%s", base);
		break;
	case JOB_COMPLETED:
		if (sj->notice) {
			snprintf(text, sizeof text, "%s — made at %s quality",
				 phase_text(sj, REG_PHASE_DONE), sj->fn->qualities[sj->quality].label);
			break;
		}
		/* fall through */
	default:
		snprintf(text, sizeof text, "%s", phase_text(sj, status_phase[sj->job->status]));
		break;
	}
	job_set_str(&sj->job->message, text);
}

static void publish(struct sjob *sj, const char *type)
{
	struct json_object *view = events_job_view(sj->job, sj);

	events_publish(sj->job->id, type, view);
	json_object_put(view);
}

/* Writes the job; on a store failure the change stands in memory and is logged. */
static void job_commit(struct sjob *sj)
{
	struct err e = {0};

	sj->job->updated_at = util_now_ms();
	if (store_job_update(server.store, sj->job, &e) < 0)
		log_error("store update failed job=%s err=%s", sj->job->id, log_q(e.msg));
}


/* The one place a live job's status changes: check, commit, log, publish. */
static void set_state(struct sjob *sj, int to)
{
	int from = sj->job->status;

	if (from != to && !job_transition_ok(from, to)) {
		log_error("illegal job transition job=%s from=%s to=%s", sj->job->id,
			  job_status_name(from), job_status_name(to));
		return;
	}
	if (from != to) /* queued again on another model keeps its status */
		job_set_status(sj->job, to, util_now_ms());
	refresh_message(sj);
	job_commit(sj);
	publish(sj, "state");
}

/* Ends a live job: it leaves memory after its final state is committed. */
static void finish(struct sjob *sj, int status)
{
	if (sj->job->status == JOB_QUEUED) {
		struct mstate *m = mstate_of(sj->job->model_id);
		if (m)
			queue_remove(m, sj);
	}
	set_state(sj, status);
	if (status == JOB_COMPLETED)
		server.jobs_completed++;
	else if (status == JOB_FAILED)
		server.jobs_failed++;
	else
		server.jobs_cancelled++;
	table_remove(sj);
	sjob_free(sj);
}

static void fail_job(struct sjob *sj, const char *code, const char *message,
		     const char *suggestion, const char *action, const char *detail)
{
	job_set_str(&sj->job->error_code, code);
	job_set_str(&sj->job->error_message, message);
	job_set_str(&sj->job->error_suggestion, suggestion);
	job_set_str(&sj->job->error_action, action);
	job_set_str(&sj->job->error_detail, detail);
	log_warn("job failed job=%s code=%s detail=%s", sj->job->id, code, log_q(detail));
	finish(sj, JOB_FAILED);
}

static void add_tried(struct job *j, const char *model_id)
{
	struct json_object *a = NULL;
	struct err e = {0};

	if (json_parse(j->tried_json, strlen(j->tried_json), 4, &a, &e) < 0 ||
	    !json_object_is_type(a, json_type_array)) {
		json_object_put(a);
		a = json_object_new_array();
	}
	json_object_array_add(a, json_str(model_id));
	free(j->tried_json);
	j->tried_json = json_dumps(a);
	json_object_put(a);
}

/* 1 when the job already ran on model_id (its tried list names it). */
static int tried(const struct job *j, const char *model_id)
{
	char quoted[300];

	snprintf(quoted, sizeof quoted, "\"%s\"", model_id);
	return strstr(j->tried_json, quoted) != NULL;
}

/* Back to a queue: the same model, or another (a fallback). */
static void requeue(struct sjob *sj, const struct reg_model *to, const char *why)
{
	struct mstate *m = mstate_of(to->id);

	sj->runner = NULL;
	if (sj->cancel_requested) {
		finish(sj, JOB_CANCELLED);
		return;
	}
	/* The attempt limit is per model: a fallback always gets its own try. */
	if (sj->job->attempt + 1 >= sj->job->max_attempts &&
	    (sj->job->model_id == NULL || strcmp(sj->job->model_id, to->id) == 0 ||
	     tried(sj->job, to->id))) {
		fail_job(sj, "MODEL_UNAVAILABLE", NULL, NULL, NULL, why);
		return;
	}
	sj->job->attempt++;
	server.jobs_retried++;
	job_set_str(&sj->job->model_id, to->id);
	job_set_str(&sj->job->runner_id, NULL);
	job_set_str(&sj->job->remote_prompt_id, NULL);
	job_set_str(&sj->job->remote_url, NULL);
	sj->job->progress = 0;
	log_info("job requeued job=%s model=%s reason=%s", sj->job->id, to->id, log_q(why));
	queue_push(m, sj);
	set_state(sj, JOB_QUEUED);
}

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
	struct mstate *m = mstate_of(r->model_id);

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

	queue_remove(m, sj);
	sj->runner = r;
	snprintf(pid, sizeof pid, "%s-%d", sj->job->id, sj->job->attempt);
	job_set_str(&sj->job->runner_id, r->id);
	job_set_str(&sj->job->remote_prompt_id, pid);
	job_set_str(&sj->job->remote_url, r->base_url);
	set_state(sj, JOB_PREPARING);
	runner_assign(r, sj);
}

/* A start failure or a crash: back off, and rest the model after several. */
static int runners_alive(void)
{
	int n = 0;

	for (size_t i = 0; i < nmodels; i++)
		n += models[i].nrunners;
	return n;
}

static void check_stopped(void)
{
	if (stop_done && runners_alive() == 0) {
		uv_timer_stop(&drain_timer);
		void (*done)(void) = stop_done;
		stop_done = NULL;
		done();
	}
}

static int64_t need(const struct mstate *m)
{
	return m->measured > 0 ? m->measured : m->model->gpu_memory;
}

static void start_runner(struct mstate *m, int gpu, int64_t bytes)
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
	publish(sj, "state");
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

	for (size_t i = 0; i < nmodels; i++)
		for (struct runner *r = models[i].runners; r; r = r->next)
			if (r->gpu == gpu && r->state == RUNNER_STOPPING)
				n += r->reserved;
	return n;
}

/* Victims on gpu g, lowest model priority first, then least recently used. */
static size_t victims_on(int g, const struct mstate *m, int aged, struct runner **v, size_t max)
{
	size_t nv = 0;

	for (size_t i = 0; i < nmodels; i++)
		for (struct runner *r = models[i].runners; r && nv < max; r = r->next)
			if (&models[i] != m && r->gpu == g && evictable(r, &models[i], aged))
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
	struct mstate *f = fb ? mstate_of(fb->id) : NULL;
	struct sjob *sj = m->head;

	if (f == NULL || sj == NULL || m->nrunners > 0 ||
	    (vram_pick(need(f)) < 0 && idle_runner(f) == NULL))
		return 0;
	queue_remove(m, sj);
	add_tried(sj->job, m->model->id);
	note_fallback(sj, m->model, fb);
	job_set_str(&sj->job->model_id, fb->id);
	log_info("job moved to a fallback that fits job=%s from=%s to=%s", sj->job->id,
		 m->model->id, fb->id);
	queue_push(f, sj);
	set_state(sj, JOB_QUEUED);
	pump();
	return 1;
}

static void pump_model(struct mstate *m)
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
	bytes = need(m);
	if (!vram_could_fit(bytes)) {
		fall_back(m, "needs more GPU memory than any GPU has");
		return;
	}
	gpu = vram_pick(bytes);
	if (gpu >= 0) {
		start_runner(m, gpu, bytes);
		return;
	}
	if (!make_room(m, bytes) && !fallback_fits(m))
		waiting_for(m, "Waiting for resources to free up");
}

#define POSITIONS_MAX 10000 /* queued jobs told their new place per change */

/* Jobs behind one that left moved up: watched ones hear their new place. */
static void publish_positions(struct mstate *m)
{
	size_t n = 0;

	m->positions_dirty = 0;
	for (struct sjob *sj = m->head; sj && n < POSITIONS_MAX; sj = sj->next, n++) {
		if (!events_watched(sj->job->id))
			continue;
		refresh_message(sj);
		publish(sj, "state");
	}
}

static void on_pump(uv_timer_t *t)
{
	if (reconciling)
		return;
	for (size_t i = 0; i < nmodels; i++) {
		pump_model(&models[i]);
		if (models[i].positions_dirty)
			publish_positions(&models[i]);
	}
}

/* Runs the dispatch loop on the next loop turn (coalesces many changes). */
static void pump(void)
{
	if (!uv_is_active((uv_handle_t *)&pump_timer))
		uv_timer_start(&pump_timer, on_pump, 0, 0);
}

/*
 * A job moving to a fallback of another quality: the user is told, and the
 * job shows the quality it is really made at.
 */
static void note_fallback(struct sjob *sj, const struct reg_model *from, const struct reg_model *to)
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
		queue_remove(m, sj);
		add_tried(sj->job, m->model->id);
		if (fb && mstate_of(fb->id)) {
			note_fallback(sj, m->model, fb);
			job_set_str(&sj->job->model_id, fb->id);
			log_info("job moved to fallback job=%s from=%s to=%s", sj->job->id,
				 m->model->id, fb->id);
			queue_push(mstate_of(fb->id), sj);
			set_state(sj, JOB_QUEUED);
		} else {
			fail_job(sj, "MODEL_UNAVAILABLE", NULL, NULL, NULL, why);
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
		uv_timer_start(&pump_timer, on_pump, (uint64_t)(m->retry_at_ms - now) + 1, 0);
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
	pump();
}

void sched_on_ready(struct runner *r)
{
	struct mstate *m = mstate_of(r->model_id);

	m->nstarting--;
	estimate_learn_start(&m->est, (double)(r->ready_ms - r->started_ms));
	measure(r, m);
	arm_idle(r);
	pump();
}

void sched_on_runner_gone(struct runner *r, const char *why, int during_start)
{
	struct mstate *m = mstate_of(r->model_id);
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
		if (mstate_of(sj->job->model_id) == m && m->cooldown_until_ms > util_now_ms() && m->model->fallback) {
			add_tried(sj->job, m->model->id);
			note_fallback(sj, m->model, m->model->fallback);
			requeue(sj, m->model->fallback, why);
		} else {
			requeue(sj, m->model, why);
		}
	}
	if (server.stopping)
		check_stopped();
	pump();
}

/* The runner is free again (its job ended one way or another). */
static void release(struct runner *r)
{
	r->job = NULL;
	r->last_used_ms = util_now_ms();
	if (r->state == RUNNER_DRAINING) {
		runner_stop(r, "drained");
	} else if (r->state == RUNNER_BUSY) {
		runner_set_state(r, RUNNER_READY);
		arm_idle(r);
	}
	pump();
}

/* Records what NVML saw the runner use; later placements use it. */
static void measure(struct runner *r, struct mstate *m)
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

void sched_on_submitted(struct runner *r, struct sjob *sj, const char *pid)
{
	job_set_str(&sj->job->remote_prompt_id, pid);
	set_state(sj, JOB_RUNNING);
	if (sj->cancel_requested)
		runner_interrupt(r);
}

void sched_on_progress(struct runner *r, struct sjob *sj, double value, double max)
{
	int pct = max > 0 ? (int)(5 + 90 * value / max) : 5;

	if (pct <= sj->job->progress || sj->job->status != JOB_RUNNING)
		return;
	sj->job->progress = pct > 95 ? 95 : pct;
	refresh_message(sj);
	publish(sj, "progress");
}

/* Thumbnails are made on the thread pool, once, when a job completes. */
#define THUMB_SIDE 256

struct thumbs {
	uv_work_t req;
	struct sjob *sj;
	struct json_object *outputs; /* [{path, filename, kind}] */
	char **src, **dst;           /* per output; NULL where none is made */
	int *ok;
	size_t n;
};

static void thumbs_work(uv_work_t *req)
{
	struct thumbs *t = req->data;

	for (size_t i = 0; i < t->n; i++) {
		struct err e = {0};
		if (t->src[i] == NULL)
			continue;
		t->ok[i] = thumb_png(t->src[i], t->dst[i], THUMB_SIDE, &e) == 0;
	}
}

static void thumbs_done(uv_work_t *req, int status)
{
	struct thumbs *t = req->data;
	struct sjob *sj = t->sj;

	for (size_t i = 0; i < t->n; i++) {
		if (t->ok[i]) {
			struct json_object *o = json_object_array_get_idx(t->outputs, i);
			const char *path = json_get_str(o, "path");
			char *thumb = xasprintf("%.*s/thumb-%s.png", (int)strcspn(path, "/"), path,
						json_get_str(o, "filename"));
			json_put(o, "thumbnail", json_str(thumb));
			free(thumb);
		}
		free(t->src[i]);
		free(t->dst[i]);
	}
	free(sj->job->outputs_json);
	sj->job->outputs_json = json_dumps(t->outputs);
	json_object_put(t->outputs);
	free(t->src);
	free(t->dst);
	free(t->ok);
	free(t);
	sj->job->progress = 100;
	finish(sj, JOB_COMPLETED);
}

/* Starts the thumbnails of the PNG outputs; the job completes after them. */
static void complete_with_thumbs(struct sjob *sj, struct json_object *outputs)
{
	struct thumbs *t = xcalloc(1, sizeof *t);
	char root[4096];

	snprintf(root, sizeof root, "%s", server_path("outputs"));
	t->sj = sj;
	t->outputs = outputs;
	t->n = json_object_array_length(outputs);
	t->src = xcalloc(t->n ? t->n : 1, sizeof *t->src);
	t->dst = xcalloc(t->n ? t->n : 1, sizeof *t->dst);
	t->ok = xcalloc(t->n ? t->n : 1, sizeof *t->ok);
	for (size_t i = 0; i < t->n; i++) {
		struct json_object *o = json_object_array_get_idx(outputs, i);
		const char *path = json_get_str(o, "path"), *fn = json_get_str(o, "filename");
		if (!path || !fn || !util_ends_with(fn, ".png"))
			continue;
		t->src[i] = xasprintf("%s/%s", root, path);
		t->dst[i] = xasprintf("%s/%.*s/thumb-%s.png", root, (int)strcspn(path, "/"), path, fn);
	}
	t->req.data = t;
	job_set_str(&sj->job->message, phase_text(sj, REG_PHASE_FINISHING));
	publish(sj, "state");
	if (uv_queue_work(server.loop, &t->req, thumbs_work, thumbs_done) != 0)
		thumbs_done(&t->req, 0);
}

void sched_on_done(struct runner *r, struct sjob *sj, struct json_object *outputs)
{
	struct mstate *m = mstate_of(r->model_id);
	double ms = (double)(util_now_ms() - sj->job->started_at);

	estimate_learn_run(&m->est, estimate_cost(sj->fn, sj->params), ms);
	m->failures = 0;
	sj->runner = NULL;
	r->job = NULL;
	measure(r, m);
	release(r);
	complete_with_thumbs(sj, outputs);
}

static int is_oom(const char *exc_type, const char *detail)
{
	return (exc_type && strstr(exc_type, "OutOfMemory")) ||
	       (detail && strstr(detail, "out of memory"));
}

/*
 * Out of memory: one quality down when the function allows it (the user is
 * told), else a failure that suggests the lower quality.
 */
static void oom(struct sjob *sj, const struct reg_model *model, const char *tech)
{
	const struct reg_function *fn = sj->fn;
	int lower = registry_quality_lower(fn, sj->quality);
	const struct reg_model *to = lower >= 0 && fn->reduce_quality_on_oom ? route(fn, lower) : NULL;
	char text[300];

	if (to) {
		snprintf(text, sizeof text, "Not enough memory for %s — trying %s instead",
			 fn->qualities[sj->quality].label, fn->qualities[lower].label);
		free(sj->notice);
		sj->notice = xstrdup(text);
		log_info("out of memory, one quality down job=%s from=%s to=%s", sj->job->id,
			 fn->qualities[sj->quality].key, fn->qualities[lower].key);
		sj->quality = lower;
		job_set_str(&sj->job->quality, fn->qualities[lower].key);
		add_tried(sj->job, model->id);
		requeue(sj, to, tech);
		return;
	}
	if (lower >= 0)
		snprintf(text, sizeof text, "Try %s quality", fn->qualities[lower].label);
	else
		snprintf(text, sizeof text, "Try again in a few minutes");
	fail_job(sj, "OUT_OF_MEMORY", "This quality setting needs more resources than are free right now",
		 text, lower >= 0 ? "REDUCE_QUALITY" : "RETRY", tech);
}

void sched_on_job_error(struct runner *r, struct sjob *sj, int kind, const char *exc_type,
			const char *detail)
{
	const struct reg_model *model = r->model;
	char tech[1024];

	snprintf(tech, sizeof tech, "model=%s runner=%s %s%s%s", r->model_id, r->id,
		 exc_type ? exc_type : "", exc_type ? ": " : "", detail ? detail : "");
	r->job = NULL;
	sj->runner = NULL;
	switch (kind) {
	case JOBERR_INTERRUPTED:
		if (sj->cancel_requested)
			finish(sj, JOB_CANCELLED);
		else
			requeue(sj, model, tech);
		break;
	case JOBERR_MODEL:
		if (is_oom(exc_type, detail)) {
			oom(sj, model, tech);
		} else if (model->fallback) {
			add_tried(sj->job, model->id);
			note_fallback(sj, model, model->fallback);
			requeue(sj, model->fallback, tech);
		} else {
			fail_job(sj, "INTERNAL", "Something went wrong while creating your result",
				 "Try again; if it keeps happening, try another quality", "RETRY", tech);
		}
		break;
	case JOBERR_REJECTED:
		fail_job(sj, "INTERNAL", "Something went wrong while preparing your request",
			 "Try another quality", "RETRY", tech);
		break;
	default: /* transport, lost output: another attempt */
		requeue(sj, model, tech);
		break;
	}
	if (kind == JOBERR_TRANSPORT && (r->state == RUNNER_BUSY || r->state == RUNNER_DRAINING)) {
		runner_stop(r, "model server unreachable");
		return;
	}
	release(r);
}

const struct json_object *sched_job_params(const struct sjob *sj)
{
	return sj->params;
}

/* ---- submit and cancel ---- */

static const struct reg_model *route(const struct reg_function *fn, int quality)
{
	const struct reg_model *const *v;
	size_t n = registry_route(server.reg, fn, quality, &v);
	int64_t now = util_now_ms();

	for (size_t i = 0; i < n; i++) {
		struct mstate *m = mstate_of(v[i]->id);
		if (m && now >= m->cooldown_until_ms)
			return v[i];
	}
	for (size_t i = 0; i < n; i++)
		if (v[i]->fallback)
			return v[i]->fallback; /* the tier is resting: its fallback serves */
	return n ? v[0] : NULL;
}

static struct sjob *sjob_new(struct job *j, const struct reg_function *fn, int quality,
			     struct json_object *params)
{
	struct sjob *sj = xcalloc(1, sizeof *sj);

	sj->job = j;
	sj->fn = fn;
	sj->quality = quality;
	sj->params = params;
	sj->eta_s = -1;
	return sj;
}

int sched_submit(const struct reg_function *fn, int quality, struct json_object *params,
		 int priority, const char *idem, const struct job **out, int *existed,
		 struct err *err)
{
	const struct reg_model *m;
	struct job *j;
	struct sjob *sj;

	*existed = 0;
	if (idem) {
		const struct sjob *live;
		struct job *old = NULL;
		if (store_job_by_idem(server.store, idem, &old, NULL) == 0) {
			live = sched_find(old->id);
			*out = live ? live->job : old;
			*existed = 1;
			if (live) {
				job_free(old);
			} else {
				job_free(idem_hit); /* borrowed until the next submit */
				idem_hit = old;
			}
			return 0;
		}
	}
	if (server.stopping) {
		err_set(err, ERR_UNAVAILABLE, "the server is shutting down");
		return -1;
	}
	if ((int64_t)nqueued_total >= server.cfg.max_queue) {
		err_set(err, ERR_FULL, "the queue is full (%lld jobs)", (long long)server.cfg.max_queue);
		return -1;
	}
	m = route(fn, quality);
	if (m == NULL) {
		err_set(err, ERR_UNAVAILABLE, "quality: no model serves %s at %s", fn->name,
			fn->qualities[quality].key);
		return -1;
	}
	j = job_new();
	job_set_str(&j->function, fn->name);
	job_set_str(&j->quality, fn->qualities[quality].key);
	free(j->params_json);
	j->params_json = json_dumps(params);
	job_set_str(&j->idempotency_key, idem);
	job_set_str(&j->model_id, m->id);
	j->priority = priority;
	j->max_attempts = server.cfg.max_attempts;
	j->created_at = j->updated_at = util_now_ms();
	sj = sjob_new(j, fn, quality, json_object_get(params));
	job_set_str(&j->message, phase_text(sj, REG_PHASE_QUEUED));
	if (store_job_insert(server.store, j, err) < 0) {
		sjob_free(sj);
		return -1;
	}
	server.jobs_submitted++;
	table_add(sj);
	queue_push(mstate_of(m->id), sj);
	refresh_message(sj); /* now that it has a place in the queue */
	log_info("job queued job=%s function=%s quality=%s model=%s", j->id, fn->name,
		 j->quality, m->id);
	publish(sj, "state");
	pump();
	*out = j;
	return 0;
}

int sched_cancel(const char *id, struct err *err)
{
	struct sjob *sj = (struct sjob *)sched_find(id);

	if (sj == NULL) {
		struct job *j = NULL;
		if (store_job_get(server.store, id, &j, err) < 0)
			return -1;
		job_free(j);
		err_set(err, ERR_CONFLICT, "the job has already finished");
		return -1;
	}
	if (sj->job->status == JOB_QUEUED) {
		finish(sj, JOB_CANCELLED);
		return 0;
	}
	sj->cancel_requested = 1;
	if (sj->job->status == JOB_RUNNING && sj->runner)
		runner_interrupt(sj->runner);
	return 0;
}

/* ---- startup and shutdown ---- */

static struct sjob *revive(struct job *j)
{
	const struct reg_function *fn = registry_function(server.reg, j->function);
	struct json_object *params = NULL;
	struct err e = {0};
	int q;

	if (fn == NULL || (q = registry_quality_index(fn, j->quality)) < 0 ||
	    json_parse(j->params_json, strlen(j->params_json), 64, &params, &e) < 0) {
		log_error("job cannot be restored job=%s function=%s", j->id, j->function);
		json_object_put(params);
		return NULL;
	}
	return sjob_new(j, fn, q, params);
}

static void reconcile_done(void)
{
	struct store_runner *v = NULL;
	size_t n = 0;
	struct err e = {0};

	if (--reconciling > 0)
		return;
	/* Results are in; now stop what the previous run left behind. */
	if (store_runner_list(server.store, &v, &n, &e) == 0) {
		for (size_t i = 0; i < n; i++) {
			runner_kill_orphan(v[i].pid);
			store_runner_delete(server.store, v[i].id, &e);
		}
		store_runners_free(v, n);
	}
	docker_cleanup_orphans();
	pump();
}

static void on_reconciled(void *ud, int result, struct json_object *outputs, const char *exc_type,
			  const char *msg)
{
	struct sjob *sj = ud;
	struct mstate *m = mstate_of(sj->job->model_id);

	sj->fetch = NULL;
	if (result == RESULT_OK) {
		log_info("job reconciled as completed job=%s", sj->job->id);
		free(sj->job->outputs_json);
		sj->job->outputs_json = json_dumps(outputs);
		json_object_put(outputs);
		sj->job->progress = 100;
		if (sj->job->status == JOB_PREPARING) {
			set_state(sj, JOB_RUNNING);
		}
		finish(sj, JOB_COMPLETED);
	} else {
		/* Not the job's fault: the same attempt runs again. */
		sj->job->attempt--;
		requeue(sj, m->model, msg ? msg : "restart");
	}
	reconcile_done();
}

static void restore(struct job *j)
{
	struct sjob *sj = revive(j);
	struct mstate *m;

	if (sj == NULL) {
		job_free(j);
		return;
	}
	m = mstate_of(j->model_id);
	if (m == NULL) {
		const struct reg_model *rm = route(sj->fn, sj->quality);
		m = rm ? mstate_of(rm->id) : NULL;
		if (m == NULL) {
			table_add(sj);
			fail_job(sj, "MODEL_UNAVAILABLE", NULL, NULL, NULL, "model no longer in the registry");
			return;
		}
		job_set_str(&j->model_id, m->model->id);
	}
	table_add(sj);
	if (j->status == JOB_QUEUED) {
		queue_push(m, sj);
		return;
	}
	if (j->remote_url && j->remote_prompt_id) {
		sj->fetch = runner_fetch_result(j->remote_url, j->remote_prompt_id, j->id, on_reconciled, sj);
		if (sj->fetch) {
			reconciling++;
			return;
		}
	}
	j->attempt--;
	requeue(sj, m->model, "restart");
}

int sched_init(struct err *err)
{
	struct job **v = NULL;
	size_t n = 0;

	const struct reg_server *cfg = registry_server(server.reg);
	const char *limit = getenv("VRAM_LIMIT");

	vram_init(cfg->gpu_vram, cfg->gpu_devices, limit ? atoll(limit) : 0);
	nmodels = registry_model_count(server.reg);
	models = xcalloc(nmodels ? nmodels : 1, sizeof *models);
	for (size_t i = 0; i < nmodels; i++)
		models[i].model = registry_model_at(server.reg, i);
	uv_timer_init(server.loop, &pump_timer);
	uv_timer_init(server.loop, &drain_timer);
	if (store_job_active(server.store, &v, &n, err) < 0)
		return -1;
	reconciling = 1;
	for (size_t i = 0; i < n; i++)
		restore(v[i]);
	free(v);
	log_info("scheduler ready live=%zu queued=%zu reconciling=%d", nlive, nqueued_total,
		 reconciling - 1);
	reconcile_done();
	return 0;
}

static void stop_all(const char *why)
{
	for (size_t i = 0; i < nmodels; i++)
		for (struct runner *r = models[i].runners, *next; r; r = next) {
			next = r->next;
			runner_stop(r, why);
		}
}

static void on_drain_timeout(uv_timer_t *t)
{
	log_warn("shutdown: jobs still running after the drain time; stopping their model servers");
	stop_all("shutdown (drain time over)");
}

/*
 * Graceful shutdown: no new jobs, idle runners stop now, busy ones finish
 * their job first (at most DRAIN_MS); done() once every runner has exited.
 * Queued jobs stay queued in the store for the next start.
 */
void sched_stop(void (*done)(void))
{
	server.stopping = 1;
	stop_done = done;
	for (size_t i = 0; i < nmodels; i++)
		for (struct runner *r = models[i].runners, *next; r; r = next) {
			next = r->next;
			if (r->state == RUNNER_BUSY || r->state == RUNNER_DRAINING)
				runner_drain(r, "shutdown");
			else
				runner_stop(r, "shutdown");
		}
	uv_timer_start(&drain_timer, on_drain_timeout, (uint64_t)(DRAIN_MS * server.cfg.time_scale), 0);
	check_stopped();
}

void sched_shutdown(void)
{
	for (size_t i = 0; i < HBUCKETS; i++)
		while (table[i]) {
			struct sjob *sj = table[i];
			table[i] = sj->hnext;
			runner_fetch_cancel(sj->fetch);
			sjob_free(sj);
		}
	job_free(idem_hit);
	idem_hit = NULL;
	free(models);
	models = NULL;
	nmodels = 0;
	uv_close((uv_handle_t *)&pump_timer, NULL);
	uv_close((uv_handle_t *)&drain_timer, NULL);
}

/* ---- operator views and actions (the admin API) ---- */

static void iso(int64_t ms, char out[32])
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static struct json_object *runner_json(const struct runner *r)
{
	struct json_object *o = json_object_new_object();
	char t[32];

	json_put(o, "id", json_str(r->id));
	json_put(o, "model", json_str(r->model_id));
	json_put(o, "state", json_str(r->job && r->state == RUNNER_BUSY ? "busy" : runner_state_name(r->state)));
	json_put(o, "gpu", json_int(r->gpu));
	json_put(o, "memory_reserved", json_int(r->reserved));
	json_put(o, "memory_measured", r->measured > 0 ? json_int(r->measured) : NULL);
	json_put(o, "job", r->job ? json_str(r->job->job->id) : NULL);
	json_put(o, "pid", r->pid ? json_int(r->pid) : NULL);
	json_put(o, "url", json_str(r->base_url));
	iso(r->started_ms, t);
	json_put(o, "started_at", json_str(t));
	iso(r->last_used_ms ? r->last_used_ms : r->started_ms, t);
	json_put(o, "last_used", json_str(t));
	json_put(o, "restarts", json_int(mstate_of(r->model_id) ? mstate_of(r->model_id)->restarts : 0));
	return o;
}

struct json_object *sched_admin_runners(void)
{
	struct json_object *a = json_object_new_array(), *o = json_object_new_object();

	for (size_t i = 0; i < nmodels; i++)
		for (const struct runner *r = models[i].runners; r; r = r->next)
			json_object_array_add(a, runner_json(r));
	json_put(o, "runners", a);
	return o;
}

static const char *model_state(const struct mstate *m)
{
	if (!m->model->enabled)
		return "disabled";
	if (m->cooldown_until_ms > util_now_ms())
		return "cooldown";
	if (m->held)
		return "held";
	return m->nrunners > 0 ? "running" : "stopped";
}

struct json_object *sched_admin_models(void)
{
	struct json_object *a = json_object_new_array(), *o = json_object_new_object(), *g;

	for (size_t i = 0; i < nmodels; i++) {
		const struct mstate *m = &models[i];
		struct json_object *e = json_object_new_object();
		json_put(e, "id", json_str(m->model->id));
		json_put(e, "function", json_str(m->model->function->name));
		json_put(e, "quality", json_str(m->model->quality >= 0 ? m->model->function->qualities[m->model->quality].key : "auto"));
		json_put(e, "state", json_str(model_state(m)));
		json_put(e, "runners", json_int(m->nrunners));
		json_put(e, "starting", json_int(m->nstarting));
		json_put(e, "queued", json_int((int64_t)m->nqueued));
		json_put(e, "min_instances", json_int(m->model->min_instances));
		json_put(e, "max_instances", json_int(m->model->max_instances));
		json_put(e, "gpu_memory", json_int(m->model->gpu_memory));
		json_put(e, "memory_measured", m->measured > 0 ? json_int(m->measured) : NULL);
		json_put(e, "failures", json_int(m->failures));
		json_put(e, "restarts", json_int(m->restarts));
		json_put(e, "avg_run_ms", json_int((int64_t)estimate_mean_ms(&m->est)));
		json_put(e, "avg_start_ms", json_int((int64_t)(estimate_start_s(&m->est) * 1000)));
		json_put(e, "fallback", m->model->fallback ? json_str(m->model->fallback->id) : NULL);
		json_object_array_add(a, e);
	}
	json_put(o, "models", a);
	g = json_object_new_array();
	for (int i = 0; i < vram_count(); i++) {
		const struct vram_gpu *v = vram_gpu(i);
		struct json_object *e = json_object_new_object();
		json_put(e, "index", json_int(v->index));
		json_put(e, "name", json_str(v->name));
		json_put(e, "budget", v->budget == VRAM_UNLIMITED ? NULL : json_int(v->budget));
		json_put(e, "reserved", json_int(v->reserved));
		json_object_array_add(g, e);
	}
	json_put(o, "gpus", g);
	return o;
}

int sched_admin_action(const char *model_id, const char *action, struct err *err)
{
	struct mstate *m = mstate_of(model_id);

	if (m == NULL) {
		err_set(err, ERR_NOT_FOUND, "no model \"%s\"", model_id);
		return -1;
	}
	log_info("operator action=%s model=%s", action, model_id);
	if (strcmp(action, "start") == 0) {
		int gpu = vram_pick(need(m));
		m->held = 0;
		m->cooldown_until_ms = m->retry_at_ms = 0;
		m->failures = 0;
		if (m->nrunners >= m->model->max_instances)
			return 0;
		if (gpu < 0) {
			err_set(err, ERR_FULL, "not enough free GPU memory for %s", model_id);
			return -1;
		}
		start_runner(m, gpu, need(m));
		return 0;
	}
	if (strcmp(action, "stop") == 0 || strcmp(action, "drain") == 0) {
		m->held = 1;
		for (struct runner *r = m->runners, *next; r; r = next) {
			next = r->next;
			if (r->state == RUNNER_STARTING && strcmp(action, "stop") == 0)
				runner_stop(r, "operator stop");
			else
				runner_drain(r, strcmp(action, "stop") == 0 ? "operator stop" : "operator drain");
		}
		return 0;
	}
	err_set(err, ERR_INVALID, "action: expected start, stop or drain");
	return -1;
}

/* ---- registry reload ---- */

static struct registry *old_regs[64]; /* earlier versions: jobs in flight still use them */
static size_t nold;

static int same_strv(char **a, size_t na, char **b, size_t nb)
{
	if (na != nb)
		return 0;
	for (size_t i = 0; i < na; i++)
		if (strcmp(a[i], b[i]) != 0)
			return 0;
	return 1;
}

static int same_str(const char *a, const char *b)
{
	return (a == NULL && b == NULL) || (a && b && strcmp(a, b) == 0);
}

/* 1 when a runner started for a would run exactly what b describes. */
static int same_definition(const struct reg_model *a, const struct reg_model *b)
{
	char *wa = json_dumps(a->workflow), *wb = json_dumps(b->workflow);
	int same = strcmp(wa, wb) == 0;

	free(wa);
	free(wb);
	return same && a->runtime == b->runtime && same_str(a->url, b->url) &&
	       same_str(a->image, b->image) && a->gpu_memory == b->gpu_memory &&
	       same_strv(a->command, a->ncommand, b->command, b->ncommand) &&
	       same_strv(a->env, a->nenv, b->env, b->nenv);
}

static void drain_all(struct mstate *m, const char *why)
{
	for (struct runner *r = m->runners, *next; r; r = next) {
		next = r->next;
		runner_drain(r, why);
	}
}

/* Queued jobs of a model that left the registry go to the new route of their tier. */
static void reroute(struct mstate *m)
{
	while (m->head) {
		struct sjob *sj = m->head;
		const struct reg_function *fn = registry_function(server.reg, sj->fn->name);
		int q = fn ? registry_quality_index(fn, sj->job->quality) : -1;
		const struct reg_model *to = q >= 0 ? route(fn, q) : NULL;

		queue_remove(m, sj);
		if (to == NULL || mstate_of(to->id) == NULL) {
			fail_job(sj, "MODEL_UNAVAILABLE", NULL, NULL, NULL, "model removed by a reload");
			continue;
		}
		sj->fn = fn;
		sj->quality = q;
		job_set_str(&sj->job->model_id, to->id);
		queue_push(mstate_of(to->id), sj);
		set_state(sj, JOB_QUEUED);
	}
}

int sched_reload(struct registry *next)
{
	size_t n = registry_model_count(next), total = n;
	struct mstate *nm;

	if (nold == sizeof old_regs / sizeof old_regs[0]) {
		log_error("reload refused: too many registry versions still in use");
		return -1;
	}
	for (size_t i = 0; i < nmodels; i++)
		if (registry_model(next, models[i].model->id) == NULL && models[i].nrunners > 0)
			total++;
	nm = xcalloc(total ? total : 1, sizeof *nm);
	for (size_t i = 0; i < n; i++) {
		const struct reg_model *m = registry_model_at(next, i);
		struct mstate *old = mstate_of(m->id);
		if (old) {
			nm[i] = *old;
			if (!same_definition(old->model, m))
				drain_all(&nm[i], "the registry changed this model");
			old->model = NULL; /* taken */
		}
		nm[i].model = m;
		nm[i].retired = 0;
	}
	/* Models that left: their runners drain; they stay listed until gone. */
	for (size_t i = 0, k = n; i < nmodels; i++) {
		if (models[i].model == NULL)
			continue;
		if (models[i].nrunners > 0) {
			nm[k] = models[i];
			nm[k].retired = nm[k].held = 1;
			drain_all(&nm[k], "model removed from the registry");
			k++;
		}
	}
	old_regs[nold++] = server.reg;
	server.reg = next;
	{
		struct mstate *gone = models;
		size_t ngone = nmodels;
		models = nm;
		nmodels = total;
		for (size_t i = 0; i < ngone; i++)
			if (gone[i].model && gone[i].head) {
				/* A removed model without runners: reroute its queue now. */
				struct mstate tmp = gone[i];
				reroute(&tmp);
			}
		free(gone);
	}
	for (size_t i = n; i < nmodels; i++)
		reroute(&models[i]);
	log_info("registry reloaded models=%zu retired=%zu", n, total - n);
	pump();
	return 0;
}

void sched_free_old_registries(void)
{
	for (size_t i = 0; i < nold; i++)
		registry_free(old_regs[i]);
	nold = 0;
}
