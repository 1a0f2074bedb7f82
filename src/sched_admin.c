/*
 * sched_admin.c - the operator views and actions (the admin API: runners,
 * models, start/stop/drain) and the registry: building the model states
 * and tiers for a registry, and switching to a reloaded one.
 *
 * Registry versions are reference-counted: the scheduler holds the
 * current one; each live job holds the one its function came from and
 * each runner the one its model came from, so an old version lives
 * exactly as long as something still uses it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "estimate.h"
#include "job.h"
#include "json.h"
#include "log.h"
#include "placement.h"
#include "registry.h"
#include "runner.h"
#include "scheduler_internal.h"
#include "server.h"
#include "store.h"
#include "util.h"
#include "view.h"
#include "vram.h"

/* ---- operator views ---- */

static void put_time(struct json_object *o, const char *key, int64_t ms)
{
	char t[32];

	view_iso8601(ms, t);
	t[19] = 'Z'; /* whole seconds for operators */
	t[20] = '\0';
	json_put(o, key, json_str(t));
}

/* A stored JSON text as JSON; null when it does not parse. */
static struct json_object *parsed(const char *text)
{
	struct json_object *o = NULL;
	struct err e = {0};

	if (text == NULL || json_parse(text, strlen(text), 32, &o, &e) < 0)
		return NULL;
	return o;
}

struct json_object *sched_admin_job(const char *id, struct err *err)
{
	struct json_object *o = sched_view(id, err);
	struct job *j = NULL;

	if (o == NULL)
		return NULL;
	/* sched_view committed what was pending: the store has the job as shown. */
	if (store_job_get(server.store, id, &j, err) < 0) {
		json_object_put(o);
		return NULL;
	}
	json_put(o, "model", j->model_id ? json_str(j->model_id) : NULL);
	json_put(o, "model_version", j->model_version ? json_str(j->model_version) : NULL);
	json_put(o, "owner", j->owner ? json_str(j->owner) : NULL);
	json_put(o, "route_key", j->route_key ? json_str(j->route_key) : NULL);
	json_put(o, "runner", j->runner_id ? json_str(j->runner_id) : NULL);
	json_put(o, "model_server_url", j->remote_url ? json_str(j->remote_url) : NULL);
	json_put(o, "prompt_id", j->remote_prompt_id ? json_str(j->remote_prompt_id) : NULL);
	json_put(o, "attempt", json_int(j->attempt));
	json_put(o, "max_attempts", json_int(j->max_attempts));
	json_put(o, "tried", parsed(j->tried_json));
	json_put(o, "error_detail", j->error_detail ? json_str(j->error_detail) : NULL);
	json_put(o, "stored_outputs", parsed(j->outputs_json));
	job_free(j);
	return o;
}

static struct json_object *runner_json(const struct srunner *sr)
{
	const struct runner *r = sr->r;
	struct json_object *o = json_object_new_object();

	json_put(o, "id", json_str(r->id));
	json_put(o, "model", json_str(r->model->id));
	json_put(o, "state", json_str(sr->job && r->state == RUNNER_READY ? "busy"
					: runner_state_name(r->state)));
	json_put(o, "gpu", json_int(sr->gpu));
	json_put(o, "memory_reserved", json_int(sr->reserved));
	json_put(o, "memory_measured", sr->measured > 0 ? json_int(sr->measured) : NULL);
	json_put(o, "job", sr->job ? json_str(sr->job->job->id) : NULL);
	json_put(o, "pid", r->pid ? json_int(r->pid) : NULL);
	json_put(o, "url", json_str(r->base_url));
	json_put(o, "log", json_str(r->log_path));
	put_time(o, "started_at", r->started_ms);
	put_time(o, "last_used", r->last_used_ms ? r->last_used_ms : r->started_ms);
	json_put(o, "restarts", json_int(sr->m->restarts));
	return o;
}

struct json_object *sched_admin_runners(void)
{
	struct json_object *a = json_object_new_array(), *o = json_object_new_object();

	for (size_t i = 0; i < sched__s.nmodels; i++)
		for (const struct srunner *sr = sched__s.models[i]->runners; sr; sr = sr->next)
			json_object_array_add(a, runner_json(sr));
	json_put(o, "runners", a);
	return o;
}

static const char *model_state(const struct mstate *m)
{
	if (m->retired)
		return "retired";
	if (!m->model->enabled)
		return "disabled";
	if (m->held)
		return "held";
	if (m->cooldown_until_ms > util_now_ms())
		return "cooldown";
	return m->nrunners > 0 ? "running" : "stopped";
}

static struct json_object *model_json(const struct mstate *m)
{
	const struct reg_model *rm = m->model;
	struct json_object *e = json_object_new_object();

	json_put(e, "id", json_str(rm->id));
	json_put(e, "function", json_str(rm->function->name));
	json_put(e, "quality", json_str(rm->quality >= 0 ? rm->function->qualities[rm->quality].key
							  : "auto"));
	json_put(e, "state", json_str(model_state(m)));
	json_put(e, "runners", json_int(m->nrunners));
	json_put(e, "starting", json_int(m->nstarting));
	json_put(e, "queued", json_int((int64_t)(m->q.n + (m->tier ? m->tier->q.n : 0))));
	json_put(e, "min_instances", json_int(rm->min_instances));
	json_put(e, "max_instances", json_int(rm->max_instances));
	json_put(e, "gpu_memory", json_int(rm->gpu_memory));
	json_put(e, "memory_measured", m->measured > 0 ? json_int(m->measured) : NULL);
	json_put(e, "failures", json_int(m->failures));
	json_put(e, "errors", json_int(m->errors));
	json_put(e, "last_error", m->last_error[0] ? json_str(m->last_error) : NULL);
	json_put(e, "hold", m->held && !m->retired && sched__meta_get("hold", rm->id)
				    ? json_str(sched__meta_get("hold", rm->id)) : NULL);
	json_put(e, "cooldown_seconds",
		 m->cooldown_until_ms > util_now_ms()
			 ? json_int((m->cooldown_until_ms - util_now_ms() + 999) / 1000) : NULL);
	json_put(e, "restarts", json_int(m->restarts));
	json_put(e, "avg_run_ms", json_int((int64_t)estimate_mean_ms(&m->est)));
	json_put(e, "avg_start_ms", json_int((int64_t)(estimate_start_s(&m->est) * 1000)));
	json_put(e, "fallback", rm->fallback ? json_str(rm->fallback->id) : NULL);
	sched__variant_into(m, e);
	sched__calib_into(m, e);
	sched__prewarm_admin_json(m, e);
	return e;
}

struct json_object *sched_admin_models(void)
{
	struct json_object *a = json_object_new_array(), *o = json_object_new_object(), *g;

	for (size_t i = 0; i < sched__s.nmodels; i++)
		json_object_array_add(a, model_json(sched__s.models[i]));
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

int sched_admin_weight(const char *model_id, int64_t weight, struct err *err)
{
	struct mstate *m = sched__mstate_of(model_id);

	if (m == NULL) {
		err_set(err, ERR_NOT_FOUND, "no model \"%s\"", model_id);
		return -1;
	}
	if (weight < 0 || weight > 1000000) {
		err_set(err, ERR_INVALID, "weight: must be an integer from 0 to 1000000");
		return -1;
	}
	log_info("operator action=weight model=%s weight=%lld", model_id, (long long)weight);
	sched__set_weight(m, weight);
	return 0;
}

int sched_quality_paused(const char *function, const char *quality)
{
	const struct reg_function *fn = function ? registry_function(sched__s.reg, function) : NULL;
	int q = fn && quality ? registry_quality_index(fn, quality) : -1;
	struct tier *t = q >= 0 ? sched__tier_of(fn, q) : NULL, *to;
	struct mstate *pin;

	if (t == NULL || !sched__tier_paused(t))
		return 0;
	return !(sched__route(fn, q, "catalog", &to, &pin) == 0 && pin != NULL);
}

int sched_quality_served(const char *function, const char *quality)
{
	const struct reg_function *fn = function ? registry_function(sched__s.reg, function) : NULL;
	int q = fn && quality ? registry_quality_index(fn, quality) : -1;
	struct tier *t = q >= 0 ? sched__tier_of(fn, q) : NULL;

	return t != NULL && t->nmodels > 0;
}

/* ---- operator actions ---- */

/* The operators' hold of a model, kept in the store so that it survives a restart. */
static void set_hold(struct mstate *m, const char *kind)
{
	m->held = kind != NULL;
	sched__meta_set("hold", m->model->id, kind);
}

static int admin_start(struct mstate *m, struct err *err)
{
	int gpu;

	if (m->held) {
		set_hold(m, NULL);
		sched__unpause(&m->q);
		if (m->tier)
			sched__unpause(&m->tier->q);
	}
	m->cooldown_until_ms = m->retry_at_ms = 0;
	m->failures = 0;
	sched__pump();
	if (m->nrunners >= m->model->max_instances)
		return 0;
	gpu = sched__place(sched__need(m));
	if (gpu < 0) {
		err_set(err, ERR_FULL, "not enough free GPU memory for %s", m->model->id);
		return -1;
	}
	sched__start_runner(m, gpu, sched__need(m));
	return 0;
}

int sched_admin_action(const char *model_id, const char *action, struct err *err)
{
	struct mstate *m = sched__mstate_of(model_id);
	int stop;

	if (m == NULL) {
		err_set(err, ERR_NOT_FOUND, "no model \"%s\"", model_id);
		return -1;
	}
	log_info("operator action=%s model=%s", action, model_id);
	if (strcmp(action, "start") == 0)
		return admin_start(m, err);
	if (strcmp(action, "promote") == 0) {
		sched__promote(m);
		return 0;
	}
	if (strcmp(action, "rollback") == 0) {
		sched__rollback(m, "rolled back by an operator");
		return 0;
	}
	if (strcmp(action, "calibrate") == 0)
		return sched__calib_start(m, "asked by an operator", err);
	if (strcmp(action, "stop") != 0 && strcmp(action, "drain") != 0) {
		err_set(err, ERR_INVALID, "action: expected start, stop, drain, promote, rollback, "
			"calibrate or weight");
		return -1;
	}
	/*
	 * Both hold the model until `start`, across restarts: its queued jobs go
	 * to its fallback or wait, told that the quality is paused. stop ends
	 * its runners now (a job they were running is queued again, with no
	 * attempt lost); drain lets running jobs finish first.
	 */
	stop = strcmp(action, "stop") == 0;
	set_hold(m, action);
	for (struct srunner *sr = m->runners, *next; sr; sr = next) {
		next = sr->next;
		if (stop)
			runner_stop(sr->r, "operator stop");
		else
			runner_drain(sr->r, "operator drain");
	}
	sched__pump();
	return 0;
}

/* ---- the registry: model states and tiers ---- */

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
	return same && a->runtime == b->runtime && same_strv(a->urls, a->nurls, b->urls, b->nurls) &&
	       same_str(a->image, b->image) && a->gpu_memory == b->gpu_memory &&
	       same_strv(a->command, a->ncommand, b->command, b->ncommand) &&
	       same_strv(a->env, a->nenv, b->env, b->nenv);
}

static void drain_all(struct mstate *m, const char *why)
{
	for (struct srunner *sr = m->runners, *next; sr; sr = next) {
		next = sr->next;
		runner_drain(sr->r, why);
	}
}

static struct mstate *find_state(struct mstate **v, size_t n, const char *id)
{
	for (size_t i = 0; i < n; i++)
		if (v[i] && !v[i]->retired && strcmp(v[i]->model->id, id) == 0)
			return v[i];
	return NULL;
}

static struct tier *find_tier(struct tier **v, size_t n, const char *fn, const char *q)
{
	for (size_t i = 0; i < n; i++)
		if (v[i] && strcmp(v[i]->fn->name, fn) == 0 &&
		    strcmp(v[i]->fn->qualities[v[i]->quality].key, q) == 0)
			return v[i];
	return NULL;
}

/* The tiers of reg, reusing old ones (and their queues) by function and quality key. */
static void build_tiers(struct registry *reg, struct tier **old, size_t nold)
{
	size_t n = 0, cap = 0;

	sched__s.tiers = NULL;
	for (size_t f = 0; f < registry_function_count(reg); f++) {
		const struct reg_function *fn = registry_function_at(reg, f);
		for (size_t q = 0; q < fn->nqualities; q++) {
			struct tier *t = find_tier(old, nold, fn->name, fn->qualities[q].key);
			const struct reg_model *const *v;
			size_t nm = registry_route(reg, fn, (int)q, &v);

			for (size_t i = 0; t && i < nold; i++)
				if (old[i] == t)
					old[i] = NULL; /* taken */
			if (t == NULL)
				t = xcalloc(1, sizeof *t);
			t->fn = fn;
			t->quality = (int)q;
			free(t->models);
			t->models = xcalloc(nm ? nm : 1, sizeof *t->models);
			t->nmodels = 0;
			for (size_t i = 0; i < nm; i++) {
				struct mstate *m = sched__mstate_of(v[i]->id);
				if (m) {
					t->models[t->nmodels++] = m;
					m->tier = t;
				}
			}
			if (n == cap) {
				cap = cap ? cap * 2 : 8;
				sched__s.tiers = xrealloc(sched__s.tiers, cap * sizeof *sched__s.tiers);
			}
			sched__s.tiers[n++] = t;
		}
	}
	sched__s.ntiers = n;
}

/* The model states of reg: kept by id (drained when their definition changed), or new. */
static struct mstate **build_states(struct registry *reg, size_t *count)
{
	size_t n = registry_model_count(reg);
	struct mstate **v = xcalloc(n + sched__s.nmodels + 1, sizeof *v);

	for (size_t i = 0; i < n; i++) {
		const struct reg_model *rm = registry_model_at(reg, i);
		struct mstate *m = find_state(sched__s.models, sched__s.nmodels, rm->id);

		if (m == NULL) {
			m = xcalloc(1, sizeof *m);
			m->held = sched__meta_get("hold", rm->id) != NULL;
			m->model = rm;
			sched__variant_restore(m);
		} else {
			for (size_t k = 0; k < sched__s.nmodels; k++)
				if (sched__s.models[k] == m)
					sched__s.models[k] = NULL; /* taken */
			if (!same_definition(m->model, rm)) {
				drain_all(m, "the registry changed this model");
				/* A new definition starts with a clean slate (the fix may be in it). */
				m->failures = 0;
				m->cooldown_until_ms = m->retry_at_ms = 0;
			}
		}
		m->model = rm;
		m->tier = NULL;
		v[i] = m;
	}
	*count = n;
	return v;
}

/* Models that left the registry: kept (retired) while their runners drain. */
static void retire_left(struct mstate **v, size_t *count, struct mstate **old, size_t nold)
{
	for (size_t i = 0; i < nold; i++) {
		struct mstate *m = old[i];
		if (m == NULL)
			continue;
		if (m->nrunners == 0 && m->q.n == 0) {
			free(m);
			continue;
		}
		if (!m->retired)
			drain_all(m, "model removed from the registry");
		m->retired = m->held = 1;
		m->tier = NULL;
		v[(*count)++] = m;
	}
}

/* Queued jobs of gone models or tiers go where their tier now routes them. */
static void reroute_queue(struct squeue *q, const char *why)
{
	while (q->head) {
		struct sjob *sj = q->head;
		const struct reg_function *fn = registry_function(sched__s.reg, sj->fn->name);
		int qi = fn ? registry_quality_index(fn, sj->job->quality) : -1;

		if (qi < 0) {
			sched__dequeue(sj);
			sched__fail_job(sj, "MODEL_UNAVAILABLE", NULL, NULL, NULL, why);
			continue;
		}
		registry_unref(sj->reg);
		sj->reg = registry_ref(sched__s.reg);
		sj->fn = fn;
		sj->quality = qi;
		sched__move(sj, NULL, why);
	}
}

/* Queued jobs keep waiting where they are, now described by the new registry. */
static void adopt_queue(struct squeue *q)
{
	for (struct sjob *sj = q->head; sj; sj = sj->next) {
		const struct reg_function *fn = registry_function(sched__s.reg, sj->fn->name);
		int qi = fn ? registry_quality_index(fn, sj->job->quality) : -1;
		if (qi < 0)
			continue; /* rerouted below */
		registry_unref(sj->reg);
		sj->reg = registry_ref(sched__s.reg);
		sj->fn = fn;
		sj->quality = qi;
	}
}

void sched__build_models(struct registry *reg)
{
	struct mstate **old = sched__s.models, **v;
	struct tier **old_tiers = sched__s.tiers;
	size_t nold = sched__s.nmodels, ntiers_old = sched__s.ntiers, n;

	v = build_states(reg, &n);
	retire_left(v, &n, old, nold);
	free(old);
	sched__s.models = v;
	sched__s.nmodels = n;
	for (size_t i = 0; i < n; i++)
		v[i]->index = (int)i;
	build_tiers(reg, old_tiers, ntiers_old);
	for (size_t i = 0; i < n; i++)
		sched__calib_place(v[i]);
	for (size_t i = 0; i < sched__s.ntiers; i++)
		adopt_queue(&sched__s.tiers[i]->q);
	for (size_t i = 0; i < n; i++)
		adopt_queue(&v[i]->q);
	/* What waits for a model or tier that left goes where its tier routes now. */
	for (size_t i = 0; i < n; i++)
		if (v[i]->retired)
			reroute_queue(&v[i]->q, "model removed by a reload");
	for (size_t i = 0; i < ntiers_old; i++)
		if (old_tiers[i]) {
			reroute_queue(&old_tiers[i]->q, "quality removed by a reload");
			free(old_tiers[i]->models);
			free(old_tiers[i]);
		}
	free(old_tiers);
}

void sched_reload(struct registry *next)
{
	struct registry *prev = sched__s.reg;

	sched__s.reg = registry_ref(next);
	sched__build_models(next);
	sched__calib_run_due();
	registry_unref(prev);
	log_info("registry reloaded models=%zu", registry_model_count(next));
	sched__pump();
}

/* A retired model whose last runner is gone leaves (its registry may go with it). */
void sched__forget_model(struct mstate *m)
{
	size_t k = 0;

	if (!m->retired || m->nrunners > 0 || m->q.n > 0)
		return;
	for (size_t i = 0; i < sched__s.nmodels; i++)
		if (sched__s.models[i] != m)
			sched__s.models[k++] = sched__s.models[i];
	sched__s.nmodels = k;
	for (size_t i = 0; i < k; i++)
		sched__s.models[i]->index = (int)i;
	free(m);
}

void sched__free_models(void)
{
	for (size_t i = 0; i < sched__s.nmodels; i++)
		free(sched__s.models[i]);
	for (size_t i = 0; i < sched__s.ntiers; i++) {
		free(sched__s.tiers[i]->models);
		free(sched__s.tiers[i]);
	}
	free(sched__s.models);
	free(sched__s.tiers);
	sched__s.models = NULL;
	sched__s.tiers = NULL;
	sched__s.nmodels = sched__s.ntiers = 0;
}
