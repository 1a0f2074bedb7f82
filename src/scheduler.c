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
 *
 * Runner starting, GPU memory fitting and eviction live in
 * sched_runners.c; the operator views and registry reload in
 * sched_admin.c (shared declarations: scheduler_internal.h).
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
#include "scheduler_internal.h"
#include "server.h"
#include "store.h"
#include "thumb.h"
#include "util.h"
#include "vram.h"

#define HBUCKETS 65536
#define DRAIN_MS 60000         /* shutdown waits this long for running jobs */

struct mstate *sched__models;
size_t sched__nmodels;
static struct sjob *table[HBUCKETS];
static size_t nlive, nqueued_total;
uv_timer_t sched__pump_timer;
static int reconciling;          /* startup fetches still running */
static uv_timer_t drain_timer;   /* shutdown: stop what is still running */
static void (*stop_done)(void);
static struct job *idem_hit;     /* a finished job returned for its idempotency key */

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

struct mstate *sched__mstate_of(const char *model_id)
{
	for (size_t i = 0; model_id && i < sched__nmodels; i++)
		if (sched__models[i].model && strcmp(sched__models[i].model->id, model_id) == 0)
			return &sched__models[i];
	return NULL;
}

/* ---- queues ---- */

static int before(const struct sjob *a, const struct sjob *b)
{
	if (a->job->priority != b->job->priority)
		return a->job->priority > b->job->priority;
	return a->job->seq < b->job->seq;
}

void sched__queue_push(struct mstate *m, struct sjob *sj)
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

void sched__queue_remove(struct mstate *m, struct sjob *sj)
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
			sched__pump();
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
	m = sched__mstate_of(sj->job->model_id);
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
	struct mstate *m = sched__mstate_of(sj->job->model_id);
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

void sched__publish(struct sjob *sj, const char *type)
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
void sched__set_state(struct sjob *sj, int to)
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
	sched__publish(sj, "state");
}

/* Ends a live job: it leaves memory after its final state is committed. */
static void finish(struct sjob *sj, int status)
{
	if (sj->job->status == JOB_QUEUED) {
		struct mstate *m = sched__mstate_of(sj->job->model_id);
		if (m)
			sched__queue_remove(m, sj);
	}
	sched__set_state(sj, status);
	if (status == JOB_COMPLETED)
		server.jobs_completed++;
	else if (status == JOB_FAILED)
		server.jobs_failed++;
	else
		server.jobs_cancelled++;
	table_remove(sj);
	sjob_free(sj);
}

void sched__fail_job(struct sjob *sj, const char *code, const char *message,
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

void sched__add_tried(struct job *j, const char *model_id)
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
void sched__requeue(struct sjob *sj, const struct reg_model *to, const char *why)
{
	struct mstate *m = sched__mstate_of(to->id);

	sj->runner = NULL;
	if (sj->cancel_requested) {
		finish(sj, JOB_CANCELLED);
		return;
	}
	/* The attempt limit is per model: a fallback always gets its own try. */
	if (sj->job->attempt + 1 >= sj->job->max_attempts &&
	    (sj->job->model_id == NULL || strcmp(sj->job->model_id, to->id) == 0 ||
	     tried(sj->job, to->id))) {
		sched__fail_job(sj, "MODEL_UNAVAILABLE", NULL, NULL, NULL, why);
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
	sched__queue_push(m, sj);
	sched__set_state(sj, JOB_QUEUED);
}


/* A start failure or a crash: back off, and rest the model after several. */
static int runners_alive(void)
{
	int n = 0;

	for (size_t i = 0; i < sched__nmodels; i++)
		n += sched__models[i].nrunners;
	return n;
}

void sched__check_stopped(void)
{
	if (stop_done && runners_alive() == 0) {
		uv_timer_stop(&drain_timer);
		void (*done)(void) = stop_done;
		stop_done = NULL;
		done();
	}
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
		sched__publish(sj, "state");
	}
}

void sched__on_pump(uv_timer_t *t)
{
	if (reconciling)
		return;
	for (size_t i = 0; i < sched__nmodels; i++) {
		sched__pump_model(&sched__models[i]);
		if (sched__models[i].positions_dirty)
			publish_positions(&sched__models[i]);
	}
}

/* Runs the dispatch loop on the next loop turn (coalesces many changes). */
void sched__pump(void)
{
	if (!uv_is_active((uv_handle_t *)&sched__pump_timer))
		uv_timer_start(&sched__pump_timer, sched__on_pump, 0, 0);
}


void sched_on_submitted(struct runner *r, struct sjob *sj, const char *pid)
{
	job_set_str(&sj->job->remote_prompt_id, pid);
	sched__set_state(sj, JOB_RUNNING);
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
	sched__publish(sj, "progress");
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
	sched__publish(sj, "state");
	if (uv_queue_work(server.loop, &t->req, thumbs_work, thumbs_done) != 0)
		thumbs_done(&t->req, 0);
}

void sched_on_done(struct runner *r, struct sjob *sj, struct json_object *outputs)
{
	struct mstate *m = sched__mstate_of(r->model_id);
	double ms = (double)(util_now_ms() - sj->job->started_at);

	estimate_learn_run(&m->est, estimate_cost(sj->fn, sj->params), ms);
	m->failures = 0;
	sj->runner = NULL;
	r->job = NULL;
	sched__measure(r, m);
	sched__release(r);
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
	const struct reg_model *to = lower >= 0 && fn->reduce_quality_on_oom ? sched__route(fn, lower) : NULL;
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
		sched__add_tried(sj->job, model->id);
		sched__requeue(sj, to, tech);
		return;
	}
	if (lower >= 0)
		snprintf(text, sizeof text, "Try %s quality", fn->qualities[lower].label);
	else
		snprintf(text, sizeof text, "Try again in a few minutes");
	sched__fail_job(sj, "OUT_OF_MEMORY", "This quality setting needs more resources than are free right now",
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
			sched__requeue(sj, model, tech);
		break;
	case JOBERR_MODEL:
		if (is_oom(exc_type, detail)) {
			oom(sj, model, tech);
		} else if (model->fallback) {
			sched__add_tried(sj->job, model->id);
			sched__note_fallback(sj, model, model->fallback);
			sched__requeue(sj, model->fallback, tech);
		} else {
			sched__fail_job(sj, "INTERNAL", "Something went wrong while creating your result",
				 "Try again; if it keeps happening, try another quality", "RETRY", tech);
		}
		break;
	case JOBERR_REJECTED:
		sched__fail_job(sj, "INTERNAL", "Something went wrong while preparing your request",
			 "Try another quality", "RETRY", tech);
		break;
	default: /* transport, lost output: another attempt */
		sched__requeue(sj, model, tech);
		break;
	}
	if (kind == JOBERR_TRANSPORT && (r->state == RUNNER_BUSY || r->state == RUNNER_DRAINING)) {
		runner_stop(r, "model server unreachable");
		return;
	}
	sched__release(r);
}

const struct json_object *sched_job_params(const struct sjob *sj)
{
	return sj->params;
}

/* ---- submit and cancel ---- */

const struct reg_model *sched__route(const struct reg_function *fn, int quality)
{
	const struct reg_model *const *v;
	size_t n = registry_route(server.reg, fn, quality, &v);
	int64_t now = util_now_ms();

	for (size_t i = 0; i < n; i++) {
		struct mstate *m = sched__mstate_of(v[i]->id);
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
	m = sched__route(fn, quality);
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
	sched__queue_push(sched__mstate_of(m->id), sj);
	refresh_message(sj); /* now that it has a place in the queue */
	log_info("job queued job=%s function=%s quality=%s model=%s", j->id, fn->name,
		 j->quality, m->id);
	sched__publish(sj, "state");
	sched__pump();
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
	sched__pump();
}

static void on_reconciled(void *ud, int result, struct json_object *outputs, const char *exc_type,
			  const char *msg)
{
	struct sjob *sj = ud;
	struct mstate *m = sched__mstate_of(sj->job->model_id);

	sj->fetch = NULL;
	if (result == RESULT_OK) {
		log_info("job reconciled as completed job=%s", sj->job->id);
		free(sj->job->outputs_json);
		sj->job->outputs_json = json_dumps(outputs);
		json_object_put(outputs);
		sj->job->progress = 100;
		if (sj->job->status == JOB_PREPARING) {
			sched__set_state(sj, JOB_RUNNING);
		}
		finish(sj, JOB_COMPLETED);
	} else {
		/* Not the job's fault: the same attempt runs again. */
		sj->job->attempt--;
		sched__requeue(sj, m->model, msg ? msg : "restart");
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
	m = sched__mstate_of(j->model_id);
	if (m == NULL) {
		const struct reg_model *rm = sched__route(sj->fn, sj->quality);
		m = rm ? sched__mstate_of(rm->id) : NULL;
		if (m == NULL) {
			table_add(sj);
			sched__fail_job(sj, "MODEL_UNAVAILABLE", NULL, NULL, NULL, "model no longer in the registry");
			return;
		}
		job_set_str(&j->model_id, m->model->id);
	}
	table_add(sj);
	if (j->status == JOB_QUEUED) {
		sched__queue_push(m, sj);
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
	sched__requeue(sj, m->model, "restart");
}

int sched_init(struct err *err)
{
	struct job **v = NULL;
	size_t n = 0;

	const struct reg_server *cfg = registry_server(server.reg);
	const char *limit = getenv("VRAM_LIMIT");

	vram_init(cfg->gpu_vram, cfg->gpu_devices, limit ? atoll(limit) : 0);
	sched__nmodels = registry_model_count(server.reg);
	sched__models = xcalloc(sched__nmodels ? sched__nmodels : 1, sizeof *sched__models);
	for (size_t i = 0; i < sched__nmodels; i++)
		sched__models[i].model = registry_model_at(server.reg, i);
	uv_timer_init(server.loop, &sched__pump_timer);
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
	for (size_t i = 0; i < sched__nmodels; i++)
		for (struct runner *r = sched__models[i].runners, *next; r; r = next) {
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
	for (size_t i = 0; i < sched__nmodels; i++)
		for (struct runner *r = sched__models[i].runners, *next; r; r = next) {
			next = r->next;
			if (r->state == RUNNER_BUSY || r->state == RUNNER_DRAINING)
				runner_drain(r, "shutdown");
			else
				runner_stop(r, "shutdown");
		}
	uv_timer_start(&drain_timer, on_drain_timeout, (uint64_t)(DRAIN_MS * server.cfg.time_scale), 0);
	sched__check_stopped();
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
	free(sched__models);
	sched__models = NULL;
	sched__nmodels = 0;
	uv_close((uv_handle_t *)&sched__pump_timer, NULL);
	uv_close((uv_handle_t *)&drain_timer, NULL);
}
