/*
 * sched_admin.c - the scheduler's operator views and actions (the admin
 * API: runners, models, start/stop/drain) and the registry reload.
 */
#include <time.h>
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
	json_put(o, "restarts", json_int(sched__mstate_of(r->model_id) ? sched__mstate_of(r->model_id)->restarts : 0));
	return o;
}

struct json_object *sched_admin_runners(void)
{
	struct json_object *a = json_object_new_array(), *o = json_object_new_object();

	for (size_t i = 0; i < sched__nmodels; i++)
		for (const struct runner *r = sched__models[i].runners; r; r = r->next)
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

	for (size_t i = 0; i < sched__nmodels; i++) {
		const struct mstate *m = &sched__models[i];
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
	struct mstate *m = sched__mstate_of(model_id);

	if (m == NULL) {
		err_set(err, ERR_NOT_FOUND, "no model \"%s\"", model_id);
		return -1;
	}
	log_info("operator action=%s model=%s", action, model_id);
	if (strcmp(action, "start") == 0) {
		int gpu = vram_pick(sched__need(m));
		m->held = 0;
		m->cooldown_until_ms = m->retry_at_ms = 0;
		m->failures = 0;
		if (m->nrunners >= m->model->max_instances)
			return 0;
		if (gpu < 0) {
			err_set(err, ERR_FULL, "not enough free GPU memory for %s", model_id);
			return -1;
		}
		sched__start_runner(m, gpu, sched__need(m));
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
		const struct reg_model *to = q >= 0 ? sched__route(fn, q) : NULL;

		sched__queue_remove(m, sj);
		if (to == NULL || sched__mstate_of(to->id) == NULL) {
			sched__fail_job(sj, "MODEL_UNAVAILABLE", NULL, NULL, NULL, "model removed by a reload");
			continue;
		}
		sj->fn = fn;
		sj->quality = q;
		job_set_str(&sj->job->model_id, to->id);
		sched__queue_push(sched__mstate_of(to->id), sj);
		sched__set_state(sj, JOB_QUEUED);
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
	for (size_t i = 0; i < sched__nmodels; i++)
		if (registry_model(next, sched__models[i].model->id) == NULL && sched__models[i].nrunners > 0)
			total++;
	nm = xcalloc(total ? total : 1, sizeof *nm);
	for (size_t i = 0; i < n; i++) {
		const struct reg_model *m = registry_model_at(next, i);
		struct mstate *old = sched__mstate_of(m->id);
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
	for (size_t i = 0, k = n; i < sched__nmodels; i++) {
		if (sched__models[i].model == NULL)
			continue;
		if (sched__models[i].nrunners > 0) {
			nm[k] = sched__models[i];
			nm[k].retired = nm[k].held = 1;
			drain_all(&nm[k], "model removed from the registry");
			k++;
		}
	}
	old_regs[nold++] = server.reg;
	server.reg = next;
	{
		struct mstate *gone = sched__models;
		size_t ngone = sched__nmodels;
		sched__models = nm;
		sched__nmodels = total;
		for (size_t i = 0; i < ngone; i++)
			if (gone[i].model && gone[i].head) {
				/* A removed model without runners: reroute its queue now. */
				struct mstate tmp = gone[i];
				reroute(&tmp);
			}
		free(gone);
	}
	for (size_t i = n; i < sched__nmodels; i++)
		reroute(&sched__models[i]);
	log_info("registry reloaded models=%zu retired=%zu", n, total - n);
	sched__pump();
	return 0;
}

void sched_free_old_registries(void)
{
	for (size_t i = 0; i < nold; i++)
		registry_free(old_regs[i]);
	nold = 0;
}
