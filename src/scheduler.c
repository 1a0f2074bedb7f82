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
#include <stdlib.h>
#include <string.h>

#include "events.h"
#include "job.h"
#include "json.h"
#include "log.h"
#include "registry.h"
#include "runner.h"
#include "scheduler.h"
#include "server.h"
#include "store.h"
#include "util.h"

#define HBUCKETS 65536
#define START_FAILURES_MAX 3   /* consecutive start failures before giving up */
#define COOLDOWN_MS 30000      /* a model that keeps failing rests this long */

struct mstate {
	const struct reg_model *model;
	struct sjob *head, *tail;    /* the queue */
	size_t nqueued;
	struct runner *runners;
	int nrunners, nstarting;
	int start_failures;          /* consecutive */
	int64_t retry_at_ms;         /* no new start before (backoff or cooldown) */
	double avg_run_ms;           /* learned run time; 0 until a job completes */
};

static struct mstate *models;
static size_t nmodels;
static struct sjob *table[HBUCKETS];
static size_t nlive, nqueued_total;
static uv_timer_t pump_timer;
static int reconciling;          /* startup fetches still running */
static void (*stop_done)(void);
static struct job *idem_hit;     /* a finished job returned for its idempotency key */

static void pump(void);

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
	job_free(sj->job);
	json_object_put(sj->params);
	free(sj);
}

static struct mstate *mstate_of(const char *model_id)
{
	for (size_t i = 0; model_id && i < nmodels; i++)
		if (strcmp(models[i].model->id, model_id) == 0)
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

/* Seconds of one run: learned, else the middle of the quality's typical range. */
static double run_seconds(const struct sjob *sj, const struct mstate *m)
{
	const struct reg_quality *q = &sj->fn->qualities[sj->quality];

	if (m && m->avg_run_ms > 0)
		return m->avg_run_ms / 1000.0;
	return (double)(q->typical_lo_s + q->typical_hi_s) / 2.0;
}

int64_t sched_eta(const struct sjob *sj)
{
	struct mstate *m = mstate_of(sj->job->model_id);
	double run = run_seconds(sj, m), left;
	int64_t pos;

	switch (sj->job->status) {
	case JOB_QUEUED:
		pos = sched_position(sj);
		left = run * (double)(pos + 1) /
		       (double)(m && m->model->max_instances > 0 ? m->model->max_instances : 1);
		break;
	case JOB_PREPARING:
		left = run;
		break;
	case JOB_RUNNING:
		left = run * (100 - sj->job->progress) / 100.0;
		break;
	default:
		return 0;
	}
	return (int64_t)(left + 0.999);
}

/* ---- state changes ---- */

static const char *phase_text(const struct sjob *sj, int phase)
{
	static const char *const defaults[] = {
		[REG_PHASE_QUEUED] = "Waiting in line",
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

static const int status_phase[] = {
	[JOB_QUEUED] = REG_PHASE_QUEUED, [JOB_PREPARING] = REG_PHASE_PREPARING,
	[JOB_RUNNING] = REG_PHASE_RUNNING, [JOB_COMPLETED] = REG_PHASE_DONE,
	[JOB_FAILED] = REG_PHASE_FAILED, [JOB_CANCELLED] = REG_PHASE_CANCELLED,
};

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
	job_set_str(&sj->job->message, phase_text(sj, status_phase[to]));
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

/* Back to a queue: the same model, or another (a fallback). */
static void requeue(struct sjob *sj, const struct reg_model *to, const char *why)
{
	struct mstate *m = mstate_of(to->id);

	sj->runner = NULL;
	if (sj->cancel_requested) {
		finish(sj, JOB_CANCELLED);
		return;
	}
	if (sj->job->attempt + 1 >= sj->job->max_attempts) {
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
	set_state(sj, JOB_QUEUED);
	queue_push(m, sj);
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

static void start_failure(struct mstate *m, const char *why);

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
		void (*done)(void) = stop_done;
		stop_done = NULL;
		done();
	}
}

static void pump_model(struct mstate *m)
{
	struct runner *r;
	int64_t now = util_now_ms();

	while (m->head && (r = idle_runner(m)) != NULL)
		dispatch(m, r);
	if (server.stopping || now < m->retry_at_ms)
		return;
	if ((m->head == NULL || m->nstarting > 0 || m->nrunners >= m->model->max_instances) &&
	    m->nrunners >= m->model->min_instances)
		return;
	if (m->nrunners >= m->model->max_instances || !m->model->enabled)
		return;
	r = runner_start(m->model);
	if (r == NULL) {
		start_failure(m, "the model server could not be started");
		return;
	}
	r->next = m->runners;
	m->runners = r;
	m->nrunners++;
	m->nstarting++;
}

static void on_pump(uv_timer_t *t)
{
	if (reconciling)
		return;
	for (size_t i = 0; i < nmodels; i++)
		pump_model(&models[i]);
}

/* Runs the dispatch loop on the next loop turn (coalesces many changes). */
static void pump(void)
{
	if (!uv_is_active((uv_handle_t *)&pump_timer))
		uv_timer_start(&pump_timer, on_pump, 0, 0);
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
			job_set_str(&sj->job->model_id, fb->id);
			log_info("job moved to fallback job=%s from=%s to=%s", sj->job->id,
				 m->model->id, fb->id);
			set_state(sj, JOB_QUEUED);
			queue_push(mstate_of(fb->id), sj);
		} else {
			fail_job(sj, "MODEL_UNAVAILABLE", NULL, NULL, NULL, why);
		}
	}
}

static void start_failure(struct mstate *m, const char *why)
{
	m->start_failures++;
	log_warn("model start failed model=%s failures=%d reason=%s", m->model->id,
		 m->start_failures, log_q(why));
	if (m->model->fallback || m->start_failures >= START_FAILURES_MAX) {
		m->retry_at_ms = util_now_ms() + (int64_t)(COOLDOWN_MS * server.cfg.time_scale);
		fall_back(m, why);
	} else {
		m->retry_at_ms = util_now_ms() + (int64_t)((250 << m->start_failures) * server.cfg.time_scale);
		uv_timer_start(&pump_timer, on_pump, (uint64_t)(m->retry_at_ms - util_now_ms()) + 1, 0);
	}
	pump();
}

void sched_on_ready(struct runner *r)
{
	struct mstate *m = mstate_of(r->model_id);

	m->nstarting--;
	m->start_failures = 0;
	arm_idle(r);
	pump();
}

void sched_on_runner_gone(struct runner *r, const char *why, int during_start)
{
	struct mstate *m = mstate_of(r->model_id);
	struct sjob *sj = r->job;

	for (struct runner **pp = &m->runners; *pp; pp = &(*pp)->next)
		if (*pp == r) {
			*pp = r->next;
			break;
		}
	m->nrunners--;
	r->job = NULL;
	if (during_start) {
		m->nstarting--;
		if (!server.stopping)
			start_failure(m, why);
	}
	if (sj && !server.stopping)
		requeue(sj, m->model, why);
	if (server.stopping)
		check_stopped();
	pump();
}

/* The runner is free again (its job ended one way or another). */
static void release(struct runner *r)
{
	r->job = NULL;
	if (r->state == RUNNER_BUSY) {
		r->state = RUNNER_READY;
		r->last_used_ms = util_now_ms();
		arm_idle(r);
	}
	pump();
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
	publish(sj, "progress");
}

void sched_on_done(struct runner *r, struct sjob *sj, struct json_object *outputs)
{
	struct mstate *m = mstate_of(r->model_id);
	double ms = (double)(util_now_ms() - sj->job->started_at);

	/* Learn the run time: an exponentially weighted mean of recent runs. */
	m->avg_run_ms = m->avg_run_ms > 0 ? 0.8 * m->avg_run_ms + 0.2 * ms : ms;
	free(sj->job->outputs_json);
	sj->job->outputs_json = json_dumps(outputs);
	json_object_put(outputs);
	sj->job->progress = 100;
	finish(sj, JOB_COMPLETED);
	release(r);
}

static int is_oom(const char *exc_type, const char *detail)
{
	return (exc_type && strstr(exc_type, "OutOfMemory")) ||
	       (detail && strstr(detail, "out of memory"));
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
			int lower = registry_quality_lower(sj->fn, sj->quality);
			char sug[160];
			if (lower >= 0)
				snprintf(sug, sizeof sug, "Try %s quality", sj->fn->qualities[lower].label);
			else
				snprintf(sug, sizeof sug, "Try again in a few minutes");
			fail_job(sj, "OUT_OF_MEMORY",
				 "This quality setting needs more resources than are free right now",
				 sug, lower >= 0 ? "REDUCE_QUALITY" : "RETRY", tech);
		} else if (model->fallback) {
			add_tried(sj->job, model->id);
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
	if (kind == JOBERR_TRANSPORT && r->state == RUNNER_BUSY) {
		r->state = RUNNER_READY;
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
		if (m && now >= m->retry_at_ms)
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

	nmodels = registry_model_count(server.reg);
	models = xcalloc(nmodels ? nmodels : 1, sizeof *models);
	for (size_t i = 0; i < nmodels; i++)
		models[i].model = registry_model_at(server.reg, i);
	uv_timer_init(server.loop, &pump_timer);
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

void sched_stop(void (*done)(void))
{
	server.stopping = 1;
	stop_done = done;
	for (size_t i = 0; i < nmodels; i++)
		for (struct runner *r = models[i].runners; r; r = r->next)
			runner_stop(r, "shutdown");
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
}
