/*
 * sched_commit.c - group commits (scheduler_internal.h, invariant 3).
 *
 * A job state change marks the job dirty; what the change shows the
 * outside (the submit's reply, the POST /prompt, an event) goes to the
 * outbox. Once per loop turn (a check handle after I/O callbacks, and a
 * prepare handle after timers) the pump runs, then every dirty job and
 * runner record is written in one transaction, then the effects queued
 * before the commit run in order. So one commit serves every change of a
 * turn, and nothing is seen before it is durable.
 *
 * When a commit fails (disk full, I/O error) it is rolled back and the
 * store is "down": jobs whose insert failed are dropped and their submits
 * answered 503 (they were never accepted); every other change stays
 * dirty in memory and its effects stay held, so nobody sees a state that
 * may be lost; no job is dispatched and new submits get 503 with
 * Retry-After. The commit is retried with backoff; once it succeeds the
 * held effects run in order and work resumes.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "job.h"
#include "json.h"
#include "log.h"
#include "metrics.h"
#include "outputs.h"
#include "runner.h"
#include "scheduler_internal.h"
#include "server.h"
#include "store.h"
#include "util.h"
#include "view.h"

#define RETRY_MIN_MS 50     /* first retry after a failed commit */
#define RETRY_MAX_MS 2000   /* retries back off up to this */

struct effect {
	int type;                /* enum sched_effect, or -1 once dropped */
	struct sjob *sj;
	uint64_t ticket;         /* EFF_ASSIGN: the attempt it was made for */
	const char *event;       /* EFF_PUBLISH: "state" or "progress" */
	struct json_object *view; /* EFF_PUBLISH, EFF_REPLY of a stored job */
	int status;              /* EFF_REPLY: 202 or 200 */
	sched_submit_fn cb;      /* EFF_REPLY */
	void *ud;
};

struct record {
	int put;                 /* 1: put, 0: delete */
	int meta;                /* 1: a meta row: model_id is its key, container_id its value */
	char id[32];
	char *model_id;
	int pid, port;
	char *container_id;
	int64_t started_at;
};

static struct {
	struct sjob *dhead, *dtail; /* dirty jobs, in order of first change */
	size_t ndirty;
	struct record *recs;       /* runner rows to write */
	size_t nrecs, caprecs;
	struct effect *fx;         /* the outbox */
	size_t nfx, capfx;
	int store_ok;              /* 0 after a failed commit, until one succeeds */
	char store_error[256];     /* the last failed commit's cause, while store_ok is 0 */
	int64_t store_down_ms;     /* when the store stopped taking writes */
	int flushing;              /* inside sched__flush: no nested flush */
	uint64_t retry_ms;         /* the next retry's delay */
	uv_check_t check;
	uv_prepare_t prepare;
	uv_timer_t retry;
	int inited;
} cm;

int sched__store_ok(void)
{
	return cm.store_ok;
}

struct sjob *sched__dirty_head(void)
{
	return cm.dhead;
}

void sched__pump(void)
{
	sched__s.pump_wanted = 1;
}

void sched__dirty(struct sjob *sj)
{
	sj->job->updated_at = util_now_ms();
	if (sj->dirty)
		return;
	sched__cluster_changed(sj);
	sj->dirty = 1;
	sj->dnext = NULL;
	if (cm.dtail)
		cm.dtail->dnext = sj;
	else
		cm.dhead = sj;
	cm.dtail = sj;
	cm.ndirty++;
}

static struct effect *push(int type, struct sjob *sj)
{
	struct effect *e;

	if (cm.nfx == cm.capfx) {
		cm.capfx = cm.capfx ? cm.capfx * 2 : 256;
		cm.fx = xrealloc(cm.fx, cm.capfx * sizeof *cm.fx);
	}
	e = &cm.fx[cm.nfx++];
	memset(e, 0, sizeof *e);
	e->type = type;
	e->sj = sj;
	return e;
}

void sched__effect(int type, struct sjob *sj, const char *event)
{
	struct effect *e = push(type, sj);

	e->ticket = sj->ticket;
	e->event = event;
	/* An event shows the job as it is now: built at the change, sent after the commit. */
	if (type == EFF_PUBLISH)
		e->view = sched__effect_view(sj);
}

void sched__effect_reply(struct sjob *sj, int status, sched_submit_fn cb, void *ud)
{
	struct effect *e = push(EFF_REPLY, sj);

	e->status = status;
	e->cb = cb;
	e->ud = ud;
}

void sched__effect_reply_stored(struct job *j, sched_submit_fn cb, void *ud)
{
	struct effect *e = push(EFF_REPLY, NULL);

	e->view = view_submit(j, -1, job_status_terminal(j->status) ? 0 : -1);
	e->status = 200;
	e->cb = cb;
	e->ud = ud;
	job_free(j);
}

static struct record *record_new(int put, const char *id)
{
	struct record *rec;

	if (cm.nrecs == cm.caprecs) {
		cm.caprecs = cm.caprecs ? cm.caprecs * 2 : 16;
		cm.recs = xrealloc(cm.recs, cm.caprecs * sizeof *cm.recs);
	}
	rec = &cm.recs[cm.nrecs++];
	memset(rec, 0, sizeof *rec);
	rec->put = put;
	snprintf(rec->id, sizeof rec->id, "%s", id);
	return rec;
}

void sched__record_runner_put(const struct runner *r)
{
	struct record *rec = record_new(1, r->id);

	rec->model_id = xstrdup(r->model->id);
	rec->pid = r->pid;
	rec->port = r->port;
	rec->container_id = r->container_id[0] ? xstrdup(r->container_id) : NULL;
	rec->started_at = r->started_ms;
}

void sched__record_runner_delete(const char *id)
{
	record_new(0, id);
}

static void record_meta(const char *key, const char *value)
{
	struct record *rec = record_new(value != NULL, "");

	rec->meta = 1;
	rec->model_id = xstrdup(key);
	rec->container_id = value ? xstrdup(value) : NULL;
	sched__pump();
}

static void records_clear(void)
{
	for (size_t i = 0; i < cm.nrecs; i++) {
		free(cm.recs[i].model_id);
		free(cm.recs[i].container_id);
	}
	cm.nrecs = 0;
}

/* ---- the commit ---- */

static int write_job(struct sjob *sj, struct err *err)
{
	if (sj->is_new)
		return store_job_insert(server.store, sj->job, err);
	return store_job_update(server.store, sj->job, err);
}

static int write_records(struct err *err)
{
	for (size_t i = 0; i < cm.nrecs; i++) {
		const struct record *r = &cm.recs[i];
		int rc;

		if (r->meta) {
			rc = r->put ? store_meta_put(server.store, r->model_id, r->container_id, err)
				    : store_meta_delete(server.store, r->model_id, err);
			if (rc < 0)
				return -1;
			continue;
		}
		rc = r->put ? store_runner_put(server.store, r->id, r->model_id, r->pid, r->port,
						   r->container_id, r->started_at, err)
				: store_runner_delete(server.store, r->id, err);
		if (rc < 0)
			return -1;
	}
	return 0;
}

/*
 * One transaction for every dirty job and runner row. A row that cannot
 * be written for a reason other than I/O (a job row gone, a duplicate
 * idempotency key from another writer) is logged and left out, so that
 * one bad row cannot hold the store down; an I/O error fails the batch.
 */
static int commit(struct err *err)
{
	uint64_t t0 = util_mono_ns();
	int rc;

	if (store_begin(server.store, err) < 0)
		return -1;
	for (struct sjob *sj = cm.dhead; sj; sj = sj->dnext) {
		struct err e = {0};
		if (write_job(sj, &e) == 0)
			continue;
		if (e.code == ERR_IO || e.code == ERR_INTERNAL) {
			err_set(err, e.code, "%s", e.msg);
			goto fail;
		}
		log_error("job row not written job=%s err=%s", sj->job->id, log_q(e.msg));
		sj->rejected = 1;
	}
	if (write_records(err) < 0 || sched__cluster_commit_notes(err) < 0)
		goto fail;
	rc = store_commit(server.store, err);
	if (rc == 0) {
		sched__cluster_committed();
		server.store_commits++;
		server.store_rows += cm.ndirty;
		metrics_inc(MC_STORE_COMMITS, NULL, 1);
		metrics_inc(MC_STORE_ROWS, NULL, cm.ndirty);
		metrics_observe(MH_STORE_COMMIT, NULL, (double)(util_mono_ns() - t0) / 1e9);
	} else {
		server.store_failures++;
		metrics_inc(MC_STORE_FAILURES, NULL, 1);
	}
	return rc;
fail:
	store_rollback(server.store, NULL);
	server.store_failures++;
	metrics_inc(MC_STORE_FAILURES, NULL, 1);
	return -1;
}

static void drop_new_job(struct sjob *sj, const struct err *why);
static void lose_job(struct sjob *sj);

/* After a commit: the jobs are clean; a new one whose row was refused was never accepted. */
static void dirty_clear(void)
{
	struct err why = {0};

	err_set(&why, ERR_CONFLICT, "the job could not be recorded");
	for (struct sjob *sj = cm.dhead, *next; sj; sj = next) {
		next = sj->dnext;
		sj->dirty = 0;
		sj->dnext = NULL;
		if (sj->is_new && sj->rejected)
			drop_new_job(sj, &why);
		else if (sj->rejected && sched__cluster_on())
			lose_job(sj);
		else
			sj->is_new = sj->rejected = 0;
	}
	cm.dhead = cm.dtail = NULL;
	cm.ndirty = 0;
	records_clear();
}

/* ---- the outbox ---- */

static void run_assign(struct effect *e)
{
	struct sjob *sj = e->sj;
	struct json_object *wf = NULL;
	struct err err = {0};
	struct runner_job job;
	char stem[96];

	/* The attempt may be over already (its runner died in the same turn). */
	if (sj->ticket != e->ticket || sj->runner == NULL || sj->job->status != JOB_PREPARING)
		return;
	/* Its runner is being stopped: the job waits again once it is gone (on_gone). */
	if (sj->runner->r->state != RUNNER_READY)
		return;
	if (registry_bind(sj->runner->r->model, sj->params, &wf, &err) < 0) {
		log_error("workflow not bound job=%s err=%s", sj->job->id, log_q(err.msg));
		sched__fail_job(sj, "INTERNAL", NULL, NULL, NULL, err.msg);
		return;
	}
	job.ticket = sj->ticket;
	job.job_id = sj->job->id;
	outputs_stem(stem, sizeof stem, sj->job->function, sj->job->id);
	job.stem = stem;
	job.prompt_id = sj->job->remote_prompt_id;
	job.workflow = wf;
	if (sj->job->attempt == 0) /* the first POST /prompt of the job */
		sched__observe(MH_SUBMIT_DISPATCH, sj, util_now_ms() - sj->job->created_at);
	runner_assign(sj->runner->r, &job);
}

static void run_reply(struct effect *e)
{
	struct json_object *v = e->view ? json_object_get(e->view) : sched__submit_view(e->sj);

	if (e->status == 202 && e->sj)
		sched__count(MC_JOBS_SUBMITTED, e->sj);

	e->cb(e->ud, e->status, v, NULL);
	json_object_put(v);
}

static void run_retire(struct sjob *sj)
{
	if (sj->handed_off) { /* submitted here, to be run by any node: counted where it ends */
		sched__table_remove(sj);
		sched__sjob_free(sj);
		return;
	}
	log_info("job ended job=%s status=%s node=%s", sj->job->id, job_status_name(sj->job->status),
		 server.cfg.node ? server.cfg.node : "-");
	if (sj->job->status == JOB_COMPLETED)
		server.jobs_completed++;
	else if (sj->job->status == JOB_FAILED)
		server.jobs_failed++;
	else
		server.jobs_cancelled++;
	sched__metrics_retire(sj);
	sched__table_remove(sj);
	sched__sjob_free(sj);
}

static void run_effect(struct effect *e)
{
	switch (e->type) {
	case EFF_PUBLISH:
		if (sched__s.hooks.publish)
			sched__s.hooks.publish(e->sj->job->id, e->event, e->view);
		break;
	case EFF_REPLY:
		run_reply(e);
		break;
	case EFF_ASSIGN:
		run_assign(e);
		break;
	case EFF_RETIRE:
		run_retire(e->sj);
		break;
	default:
		break;
	}
	json_object_put(e->view);
}

/* Runs the n effects queued before the commit; later ones wait for theirs. */
static void run_effects(size_t n)
{
	size_t rest;

	for (size_t i = 0; i < n; i++) {
		struct effect e = cm.fx[i];
		cm.fx[i].type = -1;
		cm.fx[i].view = NULL;
		run_effect(&e);
	}
	rest = cm.nfx - n;
	if (rest > 0 && n > 0)
		memmove(cm.fx, cm.fx + n, rest * sizeof *cm.fx);
	cm.nfx = rest;
}

/* ---- a failed commit ---- */

static void drop_effects_of(struct sjob *sj, const struct err *why)
{
	for (size_t i = 0; i < cm.nfx; i++) {
		struct effect *e = &cm.fx[i];
		if (e->sj != sj || e->type < 0)
			continue;
		if (e->type == EFF_REPLY)
			e->cb(e->ud, 0, NULL, why);
		json_object_put(e->view);
		e->view = NULL;
		e->type = -1;
	}
}

/* A job whose insert failed was never accepted: forget it, answer 503. */
static void drop_new_job(struct sjob *sj, const struct err *why)
{
	if (sj->runner && sj->runner->job == sj) {
		sj->runner->job = NULL; /* dispatched this turn: nothing was sent */
		sched__pump();
	}
	sched__dequeue(sj);
	sched__table_remove(sj);
	drop_effects_of(sj, why);
	server.jobs_submitted--;
	sched__sjob_free(sj);
}

/*
 * Shared store: this node's claim on the job lapsed and another node holds
 * it now (the store refused the update). It leaves this node without a
 * word: what it does next is the other node's to say. A prompt already
 * sent is interrupted; the runner's late reports no longer find the job.
 */
static void lose_job(struct sjob *sj)
{
	struct err why = {0};

	err_set(&why, ERR_CONFLICT, "another node holds the job");
	log_warn("job taken over by another node job=%s node=%s", sj->job->id, server.cfg.node);
	if (sj->runner && sj->runner->job == sj) {
		if (sj->job->status == JOB_RUNNING || sj->job->status == JOB_PREPARING)
			runner_interrupt(sj->runner->r);
		sj->runner->job = NULL;
		sched__pump();
	}
	sj->runner = NULL;
	sched__dequeue(sj);
	sched__table_remove(sj);
	drop_effects_of(sj, &why);
	sched__sjob_free(sj);
}

static void drop_new_jobs(const struct err *why)
{
	struct sjob *keep_head = NULL, *keep_tail = NULL;

	for (struct sjob *sj = cm.dhead, *next; sj; sj = next) {
		next = sj->dnext;
		sj->dnext = NULL;
		if (sj->is_new) {
			cm.ndirty--;
			drop_new_job(sj, why);
			continue;
		}
		if (keep_tail)
			keep_tail->dnext = sj;
		else
			keep_head = sj;
		keep_tail = sj;
	}
	cm.dhead = keep_head;
	cm.dtail = keep_tail;
}

static void on_retry(uv_timer_t *t);

static void store_down(const struct err *cause)
{
	struct err why = {0};

	err_set(&why, ERR_STORE, "the job store cannot be written now");
	if (cm.store_ok) {
		log_error("job store write failed; holding changes and refusing new jobs "
			  "until it works err=%s", log_q(cause->msg));
		cm.store_down_ms = util_now_ms();
	}
	snprintf(cm.store_error, sizeof cm.store_error, "%s", cause->msg);
	cm.store_ok = 0;
	drop_new_jobs(&why);
	uv_timer_start(&cm.retry, on_retry, cm.retry_ms, 0);
	cm.retry_ms = cm.retry_ms * 2 > RETRY_MAX_MS ? RETRY_MAX_MS : cm.retry_ms * 2;
}

static void on_retry(uv_timer_t *t)
{
	struct err e = {0};
	int rc;

	/*
	 * What is held is written now; with nothing held, a probe write must
	 * change bytes, or a full disk would look writable (a commit that
	 * changes nothing succeeds there).
	 */
	rc = cm.ndirty > 0 || cm.nrecs > 0 ? commit(&e) : store_probe(server.store, &e);
	if (rc < 0) {
		store_down(&e);
		return;
	}
	dirty_clear();
	log_info("job store writable again; resuming down_ms=%lld",
		 (long long)(util_now_ms() - cm.store_down_ms));
	cm.store_ok = 1;
	cm.store_error[0] = '\0';
	cm.retry_ms = RETRY_MIN_MS;
	sched__flush();
	sched__pump();
}

int sched__flush(void)
{
	struct err e = {0};

	if (cm.flushing || !cm.store_ok)
		return cm.store_ok ? 0 : -1;
	cm.flushing = 1;
	if (cm.ndirty > 0 || cm.nrecs > 0) {
		if (commit(&e) < 0) {
			store_down(&e);
			cm.flushing = 0;
			return -1;
		}
		dirty_clear();
	}
	run_effects(cm.nfx);
	cm.flushing = 0;
	return 0;
}

/* The end of a loop turn: dispatch what can go, then commit and show it. */
static void turn(void)
{
	if (!cm.store_ok)
		return;
	if (sched__s.pump_wanted) {
		sched__s.pump_wanted = 0;
		sched__run_pump();
	}
	if (cm.ndirty > 0 || cm.nrecs > 0 || cm.nfx > 0)
		sched__flush();
}

static void on_check(uv_check_t *h)
{
	turn();
}

static void on_prepare(uv_prepare_t *h)
{
	turn();
}

void sched__commit_init(void)
{
	cm.store_ok = 1;
	cm.retry_ms = RETRY_MIN_MS;
	uv_check_init(server.loop, &cm.check);
	uv_prepare_init(server.loop, &cm.prepare);
	uv_timer_init(server.loop, &cm.retry);
	uv_check_start(&cm.check, on_check);
	uv_prepare_start(&cm.prepare, on_prepare);
	/* They run every turn but must not keep the loop alive by themselves. */
	uv_unref((uv_handle_t *)&cm.check);
	uv_unref((uv_handle_t *)&cm.prepare);
	uv_unref((uv_handle_t *)&cm.retry);
	cm.inited = 1;
}

void sched__commit_shutdown(void)
{
	if (!cm.inited)
		return;
	if (cm.store_ok)
		sched__flush();
	if (cm.ndirty > 0)
		log_error("job store: %zu job changes could not be written before exit; "
			  "they are reconciled at the next start", cm.ndirty);
	for (size_t i = 0; i < cm.nfx; i++) {
		if (cm.fx[i].type == EFF_REPLY)
			cm.fx[i].cb(cm.fx[i].ud, 0, NULL, &(struct err){ERR_UNAVAILABLE, "stopping"});
		json_object_put(cm.fx[i].view);
	}
	free(cm.fx);
	records_clear();
	free(cm.recs);
	cm.dhead = cm.dtail = NULL;
	uv_close((uv_handle_t *)&cm.check, NULL);
	uv_close((uv_handle_t *)&cm.prepare, NULL);
	uv_close((uv_handle_t *)&cm.retry, NULL);
	memset(&cm, 0, sizeof cm);
}

struct json_object *sched_store_status(void)
{
	struct json_object *o = json_object_new_object();

	json_put(o, "writable", json_object_new_boolean(cm.store_ok));
	json_put(o, "error", cm.store_ok ? NULL : json_str(cm.store_error));
	json_put(o, "down_seconds",
		 cm.store_ok ? NULL : json_int((util_now_ms() - cm.store_down_ms) / 1000));
	json_put(o, "commits", json_int((int64_t)server.store_commits));
	json_put(o, "failures", json_int((int64_t)server.store_failures));
	return o;
}

/* ---- stored operator settings: the meta rows the scheduler keeps ---- */

static struct json_object *meta; /* "prefix/id" -> value, as stored */

static void on_meta_row(const char *key, const char *value, void *ud)
{
	json_put(meta, key, json_str(value));
}

int sched__meta_load(struct err *err)
{
	static const char *const prefixes[] = {"hold/", "weight/", "rollback/", "tier/",
						 "demand/"};

	json_object_put(meta);
	meta = json_object_new_object();
	for (size_t i = 0; i < sizeof prefixes / sizeof prefixes[0]; i++)
		if (store_meta_list(server.store, prefixes[i], on_meta_row, NULL, err) < 0)
			return -1;
	return 0;
}

void sched__meta_free(void)
{
	json_object_put(meta);
	meta = NULL;
}

const char *sched__meta_get(const char *prefix, const char *id)
{
	char key[300];

	snprintf(key, sizeof key, "%s/%s", prefix, id);
	return meta ? json_get_str(meta, key) : NULL;
}

void sched__meta_set(const char *prefix, const char *id, const char *value)
{
	char key[300];

	snprintf(key, sizeof key, "%s/%s", prefix, id);
	if (value)
		json_put(meta, key, json_str(value));
	else
		json_object_object_del(meta, key);
	record_meta(key, value);
}
