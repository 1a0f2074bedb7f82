/*
 * scheduler.c - the live jobs: the id table, the queues, every job state
 * change, submit, cancel and views, and what runners report about jobs.
 *
 * A job waits in its tier's queue (any model of the function and quality
 * may run it) or pinned to one model's queue (a weighted A/B choice, or a
 * fallback chosen for it). The pump (sched_runners.c) hands queued jobs to
 * idle runners. Every change is marked for the next group commit and what
 * it shows goes to the outbox (sched_commit.c), so nothing is seen before
 * it is durable. Invariants: scheduler_internal.h.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "comfy.h"
#include "estimate.h"
#include "job.h"
#include "json.h"
#include "log.h"
#include "metrics.h"
#include "placement.h"
#include "registry.h"
#include "runner.h"
#include "scheduler.h"
#include "scheduler_internal.h"
#include "server.h"
#include "store.h"
#include "util.h"
#include "view.h"

#define HBUCKETS 65536

struct sched sched__s;
static struct sjob *table[HBUCKETS];

/* ---- the id table ---- */

static unsigned hash(const char *id)
{
	unsigned h = 2166136261u;

	for (; *id; id++)
		h = (h ^ (unsigned char)*id) * 16777619u;
	return h % HBUCKETS;
}

struct sjob *sched__find(const char *id)
{
	for (struct sjob *s = table[hash(id)]; s; s = s->hnext)
		if (strcmp(s->job->id, id) == 0)
			return s;
	return NULL;
}

void sched__free_jobs(void)
{
	for (size_t i = 0; i < HBUCKETS; i++)
		while (table[i]) {
			struct sjob *sj = table[i];
			table[i] = sj->hnext;
			comfy_fetch_cancel(sj->fetch);
			sched__sjob_free(sj);
		}
	sched__s.nlive = sched__s.nqueued = 0;
}

void sched__table_add(struct sjob *sj)
{
	unsigned h = hash(sj->job->id);

	sj->hnext = table[h];
	table[h] = sj;
	sched__s.nlive++;
	sched__quota_live(sj->job, 1);
}

void sched__table_remove(struct sjob *sj)
{
	for (struct sjob **pp = &table[hash(sj->job->id)]; *pp; pp = &(*pp)->hnext)
		if (*pp == sj) {
			*pp = sj->hnext;
			sched__s.nlive--;
			sched__quota_live(sj->job, -1);
			return;
		}
}

struct sjob *sched__sjob_new(struct job *j, struct registry *reg, const struct reg_function *fn,
			     int quality, struct json_object *params)
{
	struct sjob *sj = xcalloc(1, sizeof *sj);

	sj->job = j;
	sj->reg = registry_ref(reg);
	sj->fn = fn;
	sj->quality = quality;
	sj->params = params;
	sj->order = j->seq > 0 ? j->seq : ++sched__s.next_order;
	if (j->seq >= sched__s.next_order)
		sched__s.next_order = j->seq + 1;
	return sj;
}

void sched__sjob_free(struct sjob *sj)
{
	free(sj->notice);
	job_free(sj->job);
	json_object_put(sj->params);
	registry_unref(sj->reg);
	free(sj);
}

struct mstate *sched__mstate_of(const char *model_id)
{
	for (size_t i = 0; model_id && i < sched__s.nmodels; i++)
		if (!sched__s.models[i]->retired && strcmp(sched__s.models[i]->model->id, model_id) == 0)
			return sched__s.models[i];
	return NULL;
}

struct tier *sched__tier_of(const struct reg_function *fn, int quality)
{
	for (size_t i = 0; fn && i < sched__s.ntiers; i++) {
		struct tier *t = sched__s.tiers[i];
		if (strcmp(t->fn->name, fn->name) == 0 &&
		    strcmp(t->fn->qualities[t->quality].key, fn->qualities[quality].key) == 0)
			return t;
	}
	return NULL;
}

/* ---- queues ---- */

static int before(const struct sjob *a, const struct sjob *b)
{
	if (a->job->priority != b->job->priority)
		return a->job->priority > b->job->priority;
	return a->order < b->order;
}

static struct squeue *queue_of(struct sjob *sj)
{
	return sj->pin ? &sj->pin->q : &sj->tier->q;
}

void sched__enqueue(struct sjob *sj, struct tier *t, struct mstate *pin)
{
	struct squeue *q;
	struct sjob *at;

	sj->tier = t;
	sj->pin = pin;
	sj->queued_at_ms = util_now_ms();
	sj->waiting = NULL;
	q = queue_of(sj);
	/* The common case appends; a higher priority walks back from the tail. */
	for (at = q->tail; at && before(sj, at); at = at->prev)
		;
	sj->prev = at;
	sj->next = at ? at->next : q->head;
	if (sj->next)
		sj->next->prev = sj;
	else
		q->tail = sj;
	if (at)
		at->next = sj;
	else
		q->head = sj;
	q->n++;
	sched__s.nqueued++;
	sched__pump();
}

void sched__dequeue(struct sjob *sj)
{
	struct squeue *q;

	if (sj->tier == NULL && sj->pin == NULL)
		return;
	q = queue_of(sj);
	if (sj->prev)
		sj->prev->next = sj->next;
	else
		q->head = sj->next;
	if (sj->next)
		sj->next->prev = sj->prev;
	else
		q->tail = sj->prev;
	q->n--;
	sched__s.nqueued--;
	if (q->head) {
		if (sj->pin)
			sj->pin->positions_dirty = 1;
		else
			sj->tier->positions_dirty = 1;
		sched__pump();
	}
	sj->next = sj->prev = NULL;
	sj->tier = NULL;
	sj->pin = NULL;
	sj->waiting = NULL;
}

size_t sched_queued(void)
{
	return sched__s.nqueued;
}

/*
 * Jobs ahead of sj in its queue. Walks from both ends at once, so a job
 * near either end (a new one at the tail, the next one at the head) costs
 * O(1), and none costs more than half the queue.
 */
static int64_t position(const struct sjob *sj)
{
	const struct sjob *ahead, *behind;
	int64_t n = 0;

	if (sj->job->status != JOB_QUEUED || (sj->tier == NULL && sj->pin == NULL))
		return -1;
	for (ahead = sj->prev, behind = sj->next; ahead && behind; n++) {
		ahead = ahead->prev;
		behind = behind->next;
	}
	if (ahead == NULL)
		return n;
	/* Fewer behind than ahead: count from the tail. */
	return (int64_t)queue_of((struct sjob *)sj)->n - 1 - n;
}

/* ---- estimates and views ---- */

static struct mstate *model_of(const struct sjob *sj)
{
	if (sj->runner)
		return sj->runner->m;
	if (sj->pin)
		return sj->pin;
	if (sj->tier && sj->tier->nmodels)
		return sj->tier->models[0];
	return NULL;
}

/* Runners that can take this job at once, and whether one is there or coming. */
static int64_t instances(const struct sjob *sj, int *has_runner)
{
	int64_t n = 0;

	*has_runner = 0;
	if (sj->pin || sj->tier == NULL) {
		struct mstate *m = model_of(sj);
		*has_runner = m && m->nrunners > 0;
		return m ? m->model->max_instances : 1;
	}
	for (size_t i = 0; i < sj->tier->nmodels; i++) {
		n += sj->tier->models[i]->model->max_instances;
		*has_runner |= sj->tier->models[i]->nrunners > 0;
	}
	return n;
}

/* Seconds until the job is done, or -1 when nobody can say (it waits for an operator). */
static int64_t eta(const struct sjob *sj, int64_t pos)
{
	const struct reg_quality *q = &sj->fn->qualities[sj->quality];
	double typical = (double)(q->typical_lo_s + q->typical_hi_s) / 2.0;
	struct mstate *m = model_of(sj);
	struct pl_eta in = {.status = sj->job->status, .position = pos, .run_s = typical};

	if (sj->waiting == sched__paused_text)
		return -1;
	if (m) {
		in.run_s = estimate_run_s(&m->est, estimate_cost(sj->fn, sj->params), typical);
		in.start_s = estimate_start_s(&m->est);
	}
	in.instances = instances(sj, &in.has_runner);
	in.starting = sj->runner && sj->runner->r->state == RUNNER_STARTING;
	in.elapsed_s = (double)(util_now_ms() - sj->job->started_at) / 1000.0;
	in.progress = sj->job->progress;
	return pl_estimate(&in);
}

/* The message of a live job now (position pos when queued). */
static void live_message(const struct sjob *sj, int64_t pos, char *out, size_t n)
{
	struct view_msg m = {
		.status = sj->job->status, .progress = sj->job->progress, .position = pos,
		.finishing = sj->finishing, .waiting = sj->waiting, .notice = sj->notice,
		.made_at = sj->fn->qualities[sj->quality].label,
	};

	view_message(sj->fn, &m, out, n);
}

static struct json_object *live_view(const struct sjob *sj, int64_t pos)
{
	char msg[600];
	struct view_live l = {.queue_position = pos, .notice = sj->notice, .message = msg};

	live_message(sj, pos, msg, sizeof msg);
	l.eta_s = job_status_terminal(sj->job->status) ? 0 : eta(sj, pos);
	return view_job(sj->job, sj->fn, &l);
}

void sched__publish(struct sjob *sj, const char *type)
{
	if (sched__s.hooks.wanted && sched__s.hooks.wanted(sj->job->id))
		sched__effect(EFF_PUBLISH, sj, type);
}

/* The view an EFF_PUBLISH effect sends: built at the change, sent after the commit. */
struct json_object *sched__effect_view(struct sjob *sj)
{
	return live_view(sj, position(sj));
}

/* {job_id, status, queue_position, eta_seconds}: the answer to a submit. */
struct json_object *sched__submit_view(struct sjob *sj)
{
	int64_t pos = position(sj);

	return view_submit(sj->job, pos, job_status_terminal(sj->job->status) ? 0 : eta(sj, pos));
}

/* Queued jobs that moved up hear their new place (watched ones only). */
void sched__publish_positions(struct squeue *q)
{
	size_t n = 0;

	for (struct sjob *sj = q->head; sj && n < 10000; sj = sj->next, n++)
		if (sched__s.hooks.watched && sched__s.hooks.watched(sj->job->id))
			sched__effect(EFF_PUBLISH, sj, "state");
}

static struct json_object *stored_view(const char *id, struct err *err)
{
	struct job *j = NULL;
	struct json_object *v;

	if (store_job_get(server.store, id, &j, err) < 0)
		return NULL;
	v = view_job(j, sched__s.reg ? registry_function(sched__s.reg, j->function) : NULL, NULL);
	job_free(j);
	return v;
}

int sched_job_owner(const char *id, char *owner, size_t n, struct err *err)
{
	struct sjob *sj = sched__find(id);
	struct job *j = NULL;

	if (sj) {
		snprintf(owner, n, "%s", sj->job->owner ? sj->job->owner : "");
		return 0;
	}
	if (store_job_get(server.store, id, &j, err) < 0)
		return -1;
	snprintf(owner, n, "%s", j->owner ? j->owner : "");
	job_free(j);
	return 0;
}

struct json_object *sched_view_stored(const struct job *j)
{
	struct sjob *sj = sched__find(j->id);

	if (sj && !sj->dirty && !sj->is_new && !sj->retiring)
		return live_view(sj, position(sj));
	return view_job(j, sched__s.reg ? registry_function(sched__s.reg, j->function) : NULL,
			NULL);
}

struct json_object *sched_view(const char *id, struct err *err)
{
	struct sjob *sj = sched__find(id);

	/* Invariant 3: a change not yet committed is committed before it is shown. */
	if (sj && (sj->dirty || sj->retiring) && sched__store_ok() && sched__flush() == 0)
		sj = sched__find(id);
	if (sj && !sj->dirty && !sj->is_new)
		return live_view(sj, position(sj));
	return stored_view(id, err);
}

/* ---- state changes ---- */

void sched__set_state(struct sjob *sj, int to)
{
	int from = sj->job->status;
	char msg[600];

	if (from != to && !job_transition_ok(from, to)) {
		log_error("illegal job transition job=%s from=%s to=%s", sj->job->id,
			  job_status_name(from), job_status_name(to));
		return;
	}
	if (from != to) /* queued again on another model keeps its status */
		job_set_status(sj->job, to, util_now_ms());
	live_message(sj, position(sj), msg, sizeof msg);
	job_set_str(&sj->job->message, msg);
	sched__dirty(sj);
	sched__publish(sj, "state");
}

/* Ends a live job; it leaves memory once its final state is committed. */
void sched__finish(struct sjob *sj, int status)
{
	sched__dequeue(sj);
	sj->runner = NULL;
	sj->ticket = 0;
	sj->finishing = 0;
	sched__set_state(sj, status);
	sched__quota_finished(sj->job);
	sched__calib_end(sj);
	sj->retiring = 1;
	sched__effect(EFF_RETIRE, sj, NULL);
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
	sched__finish(sj, JOB_FAILED);
}

void sched__add_tried(struct job *j, const char *model_id, int runs)
{
	struct json_object *a = NULL, *entry = NULL;
	struct err e = {0};

	if (json_parse(j->tried_json, strlen(j->tried_json), 4, &a, &e) < 0 ||
	    !json_object_is_type(a, json_type_array)) {
		json_object_put(a);
		a = json_object_new_array();
	}
	for (size_t i = 0; i < json_object_array_length(a); i++) {
		struct json_object *x = json_object_array_get_idx(a, i);
		if (json_object_is_type(x, json_type_string) &&
		    strcmp(json_object_get_string(x), model_id) == 0) {
			/* An older row's plain id: it ran there once. */
			entry = json_object_new_object();
			json_put(entry, "model", json_str(model_id));
			json_put(entry, "runs", json_int(1));
			json_object_array_put_idx(a, i, entry);
			break;
		}
		if (json_object_is_type(x, json_type_object) && json_get_str(x, "model") &&
		    strcmp(json_get_str(x, "model"), model_id) == 0) {
			entry = x;
			break;
		}
	}
	if (entry == NULL) {
		entry = json_object_new_object();
		json_put(entry, "model", json_str(model_id));
		json_put(entry, "runs", json_int(0));
		json_object_array_add(a, entry);
	}
	runs += (int)json_get_int(entry, "runs", 0);
	json_put(entry, "runs", json_int(runs > 0 ? runs : 0));
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

/*
 * A job moving to a fallback of another quality: the user is told, and the
 * job shows the quality it is really made at.
 */
void sched__note_fallback(struct sjob *sj, const char *from, const struct reg_model *to)
{
	char text[300];
	int q;

	sched__metrics_fallback(sj, from, to);
	/* By name and key: the job may hold an older version of the registry than to. */
	if (to->quality < 0 || strcmp(to->function->name, sj->fn->name) != 0)
		return;
	q = registry_quality_index(sj->fn, to->function->qualities[to->quality].key);
	if (q < 0 || q == sj->quality)
		return;
	snprintf(text, sizeof text, "%s is not available right now — using %s instead",
		 sj->fn->qualities[sj->quality].label, sj->fn->qualities[q].label);
	free(sj->notice);
	sj->notice = xstrdup(text);
	sj->quality = q;
	job_set_str(&sj->job->quality, sj->fn->qualities[q].key);
}

/*
 * Queued again: pinned to `to` (waiting in to's tier, or the job's own
 * when to has none), or, with to NULL, wherever its tier routes it.
 */
void sched__move(struct sjob *sj, struct mstate *to, const char *why)
{
	struct tier *t = NULL;
	struct mstate *pin = to;

	if (sched__calib_job(sj)) {
		/* A calibration run measures its model: it never goes to another. */
		struct mstate *own = sched__mstate_of(sj->job->model_id);
		if (to == NULL)
			to = pin = own;
		if (own == NULL || to != own || own->model->quality != REG_QUALITY_AUTO) {
			sched__dequeue(sj);
			sched__fail_job(sj, "MODEL_UNAVAILABLE", NULL, NULL, NULL, why);
			return;
		}
	}
	sched__dequeue(sj);
	if (to)
		t = to->tier ? to->tier : sched__tier_of(sj->fn, sj->quality);
	else if (sched__route(sj->fn, sj->quality, sched__route_key(sj->job), &t, &pin) < 0)
		t = NULL;
	if (t == NULL) {
		sched__fail_job(sj, "MODEL_UNAVAILABLE", NULL, NULL, NULL, why);
		return;
	}
	job_set_str(&sj->job->model_id, pin ? pin->model->id : NULL);
	sched__enqueue(sj, t, pin);
	sched__set_state(sj, JOB_QUEUED);
}

void sched__requeue(struct sjob *sj, struct mstate *to, const char *why)
{
	const char *target = to ? to->model->id : sj->job->model_id;

	sj->runner = NULL;
	sj->ticket = 0;
	sj->finishing = 0;
	if (sj->cancel_requested) {
		sched__finish(sj, JOB_CANCELLED);
		return;
	}
	/* The attempt limit is per model: a fallback always gets its own try. */
	if (sj->job->attempt + 1 >= sj->job->max_attempts &&
	    (to == NULL || sj->job->model_id == NULL || strcmp(sj->job->model_id, target) == 0 ||
	     tried(sj->job, target))) {
		sched__fail_job(sj, "MODEL_UNAVAILABLE", NULL, NULL, NULL, why);
		return;
	}
	sj->job->attempt++;
	server.jobs_retried++;
	sched__count(MC_JOBS_RETRIED, sj);
	job_set_str(&sj->job->runner_id, NULL);
	job_set_str(&sj->job->remote_prompt_id, NULL);
	job_set_str(&sj->job->remote_url, NULL);
	sj->job->progress = 0;
	log_info("job requeued job=%s to=%s reason=%s", sj->job->id, to ? to->model->id : "tier",
		 log_q(why));
	sched__move(sj, to, why);
}

void sched__dispatch(struct sjob *sj, struct srunner *sr)
{
	static uint64_t tickets;
	char pid[96];

	sched__observe(MH_QUEUE_WAIT, sj, util_now_ms() - sj->queued_at_ms);
	sched__dequeue(sj);
	sj->runner = sr;
	sj->ticket = ++tickets;
	sr->job = sj;
	snprintf(pid, sizeof pid, "%s-%d", sj->job->id, sj->job->attempt);
	job_set_str(&sj->job->model_id, sr->m->model->id);
	job_set_str(&sj->job->model_version, sr->m->model->version);
	log_info("job sent job=%s model=%s version=%s runner=%s attempt=%d", sj->job->id,
		 sr->m->model->id, sr->m->model->version ? sr->m->model->version : "-", sr->r->id,
		 sj->job->attempt);
	sched__add_tried(sj->job, sr->m->model->id, 1);
	job_set_str(&sj->job->runner_id, sr->r->id);
	job_set_str(&sj->job->remote_prompt_id, pid);
	job_set_str(&sj->job->remote_url, sr->r->base_url);
	sched__set_state(sj, JOB_PREPARING);
	sched__effect(EFF_ASSIGN, sj, NULL);
}

/* ---- routing, submit and cancel ---- */

/*
 * Where a new (or rerouted) job of fn x quality waits: its tier, pinned to
 * one model when the tier's weights choose one (sticky per job id); when
 * every model of the tier rests, pinned to the first fallback that does
 * not. -1 when no model serves the tier.
 */
const char *sched__route_key(const struct job *j)
{
	return j->route_key ? j->route_key : j->id;
}

int sched__route(const struct reg_function *fn, int quality, const char *key, struct tier **t,
		 struct mstate **pin)
{
	struct pl_model pm[64];
	int idx[64];
	struct pl_snapshot s = {.models = pm};
	size_t n = 0;
	int64_t now = util_now_ms();
	int chosen;

	*t = sched__tier_of(fn, quality);
	*pin = NULL;
	if (*t == NULL || (*t)->nmodels == 0)
		return -1;
	for (size_t i = 0; i < (*t)->nmodels && n < 64; i++, n++) {
		const struct mstate *m = (*t)->models[i];
		pm[n] = (struct pl_model){.weight = sched__weight(m), .weight_set = sched__weight_set(m),
					  .resting = m->cooldown_until_ms > now || m->held ||
						     !sched__routable(m),
					  .fallback = -1};
		idx[n] = (int)n;
	}
	s.nmodels = n;
	chosen = pl_route(&s, idx, n, util_hash64(key));
	if (chosen >= 0) {
		*pin = (*t)->models[chosen];
		return 0;
	}
	for (size_t i = 0; i < n; i++)
		if (!pm[i].resting)
			return 0;
	/* The tier is resting: its fallback serves (a variant's: its rollout baseline). */
	for (size_t i = 0; i < n; i++) {
		struct mstate *f = sched__fallback_state((*t)->models[i]->model);
		if (f && f->cooldown_until_ms <= now && !f->held) {
			*pin = f;
			*t = f->tier ? f->tier : *t;
			return 0;
		}
	}
	return 0;
}

/* An idempotency key of a job submitted in this loop turn, not yet committed. */
static struct sjob *pending_by_idem(const char *idem)
{
	for (struct sjob *s = sched__dirty_head(); s; s = s->dnext)
		if (s->is_new && s->job->idempotency_key &&
		    strcmp(s->job->idempotency_key, idem) == 0)
			return s;
	return NULL;
}

/*
 * 1 when rq asks for what job j is: the same function, quality, priority
 * and params; a param the request left to a random default matches any.
 */
static int same_request(const struct sched_request *rq, const struct job *j)
{
	struct json_object *stored = NULL;
	struct err e = {0};
	int same;

	if (strcmp(j->function, rq->fn->name) != 0 ||
	    strcmp(j->quality, rq->fn->qualities[rq->quality].key) != 0 ||
	    j->priority != rq->priority ||
	    json_parse(j->params_json, strlen(j->params_json), 64, &stored, &e) < 0)
		return 0;
	same = json_object_object_length(stored) == json_object_object_length(rq->params);
	for (size_t i = 0; same && i < rq->fn->nparams; i++) {
		const struct reg_param *p = &rq->fn->params[i];

		if (p->random && json_get(rq->sent, p->name) == NULL)
			continue;
		same = json_object_equal(json_get(rq->params, p->name), json_get(stored, p->name));
	}
	json_object_put(stored);
	return same;
}

/*
 * The job an idempotency key names already: answered as it is now; -1 with
 * ERR_DUPLICATE when a different request made it; -1 (no error) for none.
 */
static int submit_existing(const struct sched_request *rq, sched_submit_fn cb, void *ud,
			   struct err *err)
{
	struct sjob *live = pending_by_idem(rq->idem);
	struct job *old = NULL;

	if (live == NULL && store_job_by_idem(server.store, rq->idem, &old, NULL) < 0)
		return -1;
	if (!same_request(rq, live ? live->job : old)) {
		job_free(old);
		err_set(err, ERR_DUPLICATE,
			"idempotency_key: already used for a different request; use a new key for "
			"a new request");
		return -1;
	}
	if (live == NULL)
		live = sched__find(old->id);
	if (live && !live->retiring) {
		job_free(old);
		sched__effect_reply(live, 200, cb, ud);
		return 0;
	}
	sched__effect_reply_stored(old, cb, ud); /* takes old */
	return 0;
}

static int submit_check(const struct sched_request *rq, struct err *err)
{
	if (server.stopping) {
		err_set(err, ERR_UNAVAILABLE, "the server is shutting down");
		return -1;
	}
	if (!sched__store_ok()) {
		err_set(err, ERR_STORE, "the job store cannot be written now");
		return -1;
	}
	if ((int64_t)sched__s.nqueued >= server.cfg.max_queue) {
		err_set(err, ERR_FULL, "the queue is full (%lld jobs)",
			(long long)server.cfg.max_queue);
		return -1;
	}
	return 0;
}

static struct job *job_for(const struct sched_request *rq)
{
	struct job *j = job_new();

	job_set_str(&j->function, rq->fn->name);
	job_set_str(&j->quality, rq->fn->qualities[rq->quality].key);
	free(j->params_json);
	j->params_json = json_dumps(rq->params);
	job_set_str(&j->idempotency_key, rq->idem);
	job_set_str(&j->owner, rq->owner);
	job_set_str(&j->route_key, rq->user ? rq->user : rq->owner);
	j->priority = rq->priority;
	j->max_attempts = server.cfg.max_attempts;
	j->created_at = j->updated_at = util_now_ms();
	return j;
}

int sched_submit(const struct sched_request *rq, sched_submit_fn cb, void *ud, struct err *err)
{
	struct tier *t, *asked = sched__tier_of(rq->fn, rq->quality);
	struct mstate *pin;
	struct sjob *sj;
	struct job *j;

	if (rq->idem && submit_existing(rq, cb, ud, err) == 0)
		return 0;
	if (err->code == ERR_DUPLICATE)
		return -1;
	if (submit_check(rq, err) < 0 ||
	    sched_quota_check(rq->owner, rq->owner_name, rq->retry_after_s ? rq->retry_after_s
									  : &(int){0},
			      err) < 0)
		return -1;
	j = job_for(rq);
	if (sched__route(rq->fn, rq->quality, sched__route_key(j), &t, &pin) < 0)
		t = NULL, pin = NULL;
	/* On a shared store another node may serve what this one cannot: it is handed off. */
	if (t == NULL && !sched__cluster_on()) {
		job_free(j);
		err_set(err, ERR_UNAVAILABLE, "quality: no model serves %s at %s", rq->fn->name,
			rq->fn->qualities[rq->quality].key);
		return -1;
	}
	if (t && pin == NULL && sched__tier_paused(t)) {
		if (sched__cluster_on()) {
			t = NULL;
		} else {
			job_free(j);
			err_set(err, ERR_PAUSED, "quality: %s is paused",
				rq->fn->qualities[rq->quality].key);
			return -1;
		}
	}
	job_set_str(&j->model_id, pin ? pin->model->id : NULL);
	sj = sched__sjob_new(j, sched__s.reg, rq->fn, rq->quality, json_object_get(rq->params));
	sj->is_new = 1;
	if (sched__cluster_hand_off(sj, t, pin)) {
		/* Recorded unclaimed: the node with room first runs it (sched_cluster.c). */
		server.jobs_submitted++;
		sched__table_add(sj);
		sched__quota_submitted(j);
		log_info("job queued job=%s function=%s quality=%s model=any node=any", j->id,
			 rq->fn->name, j->quality);
		sched__set_state(sj, JOB_QUEUED);
		sched__effect_reply(sj, 202, cb, ud);
		sj->handed_off = sj->retiring = 1;
		sched__effect(EFF_RETIRE, sj, NULL);
		return 0;
	}
	if (pin && t != asked) /* its quality rests or is paused: the user is told */
		sched__note_fallback(sj, asked && asked->nmodels ? asked->models[0]->model->id : "",
				     pin->model);
	server.jobs_submitted++;
	sched__table_add(sj);
	sched__quota_submitted(j);
	sched__enqueue(sj, t, pin);
	sched__prewarm_arrival(sj);
	log_info("job queued job=%s function=%s quality=%s model=%s", j->id, rq->fn->name,
		 j->quality, pin ? pin->model->id : "any");
	sched__set_state(sj, JOB_QUEUED);
	sched__effect_reply(sj, 202, cb, ud);
	return 0;
}

int sched_cancel(const char *id, struct err *err)
{
	struct sjob *sj = sched__find(id);

	if ((sj == NULL || sj->handed_off) && sched__cluster_on())
		return sched__cluster_cancel(id, err); /* unclaimed, or another node's */
	if (sj == NULL || sj->retiring) {
		struct job *j = NULL;
		if (store_job_get(server.store, id, &j, err) < 0 && sj == NULL)
			return -1;
		job_free(j);
		err_set(err, ERR_CONFLICT, "the job has already finished");
		return -1;
	}
	if (sj->job->status == JOB_QUEUED) {
		sched__finish(sj, JOB_CANCELLED);
		return 0;
	}
	sj->cancel_requested = 1;
	if (sj->job->status == JOB_RUNNING && sj->runner)
		runner_interrupt(sj->runner->r);
	return 0;
}

const char *sched_not_ready(void)
{
	if (server.stopping)
		return "shutting down";
	if (!sched__store_ok())
		return "the job store cannot be written";
	if (server.cfg.max_queue > 0 && sched__s.nqueued >= (size_t)server.cfg.max_queue)
		return "the job queue is full";
	return NULL;
}
