/*
 * sched_calibrate.c - models of quality `auto`: measured, then placed in
 * the tier whose models they match best (docs/design.md §3).
 *
 * A round runs the function's calibration request (registry.h, struct
 * reg_calibration) `runs` times on the model, as ordinary jobs pinned to
 * it and owned by CAL_OWNER (no user key sees them; operators do). Each
 * completed run gives a run time (running to done, as the A/B figures
 * count it); the model's GPU memory is what NVML saw its runner use, else
 * what the registry declares. The median run time and the memory then
 * pick the tier (placement.h, pl_pick_tier) against each tier's typical
 * model: the median of what its models' learned estimates say the same
 * request takes, else the quality's typical_seconds. When no tier has a
 * reference yet (the function has no model of a fixed quality, or none has
 * run), the measured models of quality auto are ranked by run time and
 * spread over the ladder, the fastest on the cheapest quality.
 *
 * The result is stored (meta row "tier/<id>") with the fingerprint of the
 * definition measured, so a restart places the model at once, and a
 * reload that changes the model (command, image, workflow...) measures it
 * again. A round starts when such a model appears without a stored result
 * and when an operator asks (POST /api/admin/models/{id}/calibrate). While
 * it runs, a model measured before keeps serving its old tier. A run that
 * fails is not moved elsewhere: it fails, and a round whose runs all
 * failed leaves the model out of every tier, the cause in the admin API.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "estimate.h"
#include "job.h"
#include "json.h"
#include "log.h"
#include "metrics.h"
#include "placement.h"
#include "registry.h"
#include "scheduler_internal.h"
#include "server.h"
#include "util.h"

static const char *const state_names[] = {"none", "running", "done", "failed"};

int sched__calib_job(const struct sjob *sj)
{
	return sj->job->owner != NULL && strcmp(sj->job->owner, CAL_OWNER) == 0;
}

/* What a runner of m runs, as a number: a changed definition is measured again. */
static uint64_t fingerprint(const struct reg_model *m)
{
	struct buf b;
	char *wf = json_dumps(m->workflow);
	uint64_t h;

	buf_init(&b, 64 << 20); /* far more than any workflow */
	buf_printf(&b, "%d|%s|%s|%s|%lld|", m->runtime, m->image ? m->image : "",
		   m->version ? m->version : "", wf, (long long)m->gpu_memory);
	for (size_t i = 0; i < m->ncommand; i++)
		buf_printf(&b, "c:%s|", m->command[i]);
	for (size_t i = 0; i < m->nurls; i++)
		buf_printf(&b, "u:%s|", m->urls[i]);
	for (size_t i = 0; i < m->nenv; i++)
		buf_printf(&b, "e:%s|", m->env[i]);
	for (size_t i = 0; i < m->nbinds; i++)
		buf_printf(&b, "b:%s=%s.%s|", m->binds[i].param, m->binds[i].node, m->binds[i].input);
	h = util_hash64(b.data ? b.data : "");
	buf_cleanup(&b);
	free(wf);
	return h;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static double median(double *v, size_t n)
{
	if (n == 0)
		return 0;
	qsort(v, n, sizeof *v, cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* Adds m to its assigned tier's models (the tiers are rebuilt at each reload). */
static void join_tier(struct mstate *m)
{
	int q = registry_quality_index(m->model->function, m->cal.quality);
	struct tier *t = q >= 0 ? sched__tier_of(m->model->function, q) : NULL;

	if (t == NULL || m->retired || m->tier == t)
		return;
	for (size_t i = 0; i < t->nmodels; i++)
		if (t->models[i] == m)
			return;
	t->models = xrealloc(t->models, (t->nmodels + 1) * sizeof *t->models);
	t->models[t->nmodels++] = m;
	m->tier = t;
}

static void leave_tier(struct mstate *m)
{
	struct tier *t = m->tier;
	size_t k = 0;

	if (t == NULL)
		return;
	for (size_t i = 0; i < t->nmodels; i++)
		if (t->models[i] != m)
			t->models[k++] = t->models[i];
	t->nmodels = k;
	m->tier = NULL;
}

static void store_result(const struct mstate *m)
{
	struct json_object *o = json_object_new_object();
	char fp[24];
	char *s;

	snprintf(fp, sizeof fp, "%016llx", (unsigned long long)m->cal.definition);
	json_put(o, "quality", json_str(m->cal.quality));
	json_put(o, "run_ms", json_object_new_double(m->cal.run_ms));
	json_put(o, "gpu_memory", json_int(m->cal.memory));
	json_put(o, "memory_measured", json_object_new_boolean(m->cal.memory_measured));
	json_put(o, "runs", json_int(m->cal.ok));
	json_put(o, "failed", json_int(m->cal.failed));
	json_put(o, "at", json_int(m->cal.at_ms));
	json_put(o, "definition", json_str(fp));
	json_put(o, "how", json_str(m->cal.how));
	s = json_dumps(o);
	sched__meta_set("tier", m->model->id, s);
	free(s);
	json_object_put(o);
}

/* A stored result for this very definition: placed at once. */
static int restore(struct mstate *m, uint64_t fp)
{
	const char *s = sched__meta_get("tier", m->model->id), *q, *def, *how;
	struct json_object *o = NULL;
	struct err e = {0};
	char want[24];

	if (s == NULL || json_parse(s, strlen(s), 4, &o, &e) < 0)
		return 0;
	snprintf(want, sizeof want, "%016llx", (unsigned long long)fp);
	q = json_get_str(o, "quality");
	def = json_get_str(o, "definition");
	if (q == NULL || registry_quality_index(m->model->function, q) < 0 || def == NULL ||
	    strcmp(def, want) != 0) {
		json_object_put(o);
		return 0;
	}
	how = json_get_str(o, "how");
	m->cal.state = CAL_DONE;
	m->cal.placed = 1;
	snprintf(m->cal.quality, sizeof m->cal.quality, "%s", q);
	m->cal.definition = fp;
	m->cal.run_ms = json_object_get_double(json_get(o, "run_ms"));
	m->cal.memory = json_get_int(o, "gpu_memory", 0);
	m->cal.memory_measured = json_object_get_boolean(json_get(o, "memory_measured"));
	m->cal.ok = m->cal.runs = json_get_int(o, "runs", 0);
	m->cal.failed = json_get_int(o, "failed", 0);
	m->cal.at_ms = json_get_int(o, "at", 0);
	snprintf(m->cal.how, sizeof m->cal.how, "%s", how ? how : "");
	json_object_put(o);
	return 1;
}

/* Queues one run of the calibration request, pinned to m. */
static void queue_run(struct mstate *m)
{
	struct json_object *params = registry_calibration_params(m->model->function);
	const struct reg_function *fn = m->model->function;
	int q = fn->default_quality;
	struct job *j = job_new();
	struct sjob *sj;

	job_set_str(&j->function, fn->name);
	job_set_str(&j->quality, fn->qualities[q].key);
	free(j->params_json);
	j->params_json = json_dumps(params);
	job_set_str(&j->owner, CAL_OWNER);
	job_set_str(&j->model_id, m->model->id);
	j->max_attempts = server.cfg.max_attempts;
	j->created_at = j->updated_at = util_now_ms();
	sj = sched__sjob_new(j, sched__s.reg, fn, q, params); /* takes params */
	sj->is_new = 1;
	sched__table_add(sj);
	sched__enqueue(sj, sched__tier_of(fn, q), m);
	sched__set_state(sj, JOB_QUEUED);
}

/* Calibration runs of m queued or running now. */
static int64_t pending_runs(const struct mstate *m)
{
	int64_t n = 0;

	for (const struct sjob *sj = m->q.head; sj; sj = sj->next)
		n += sched__calib_job(sj);
	for (const struct srunner *sr = m->runners; sr; sr = sr->next)
		n += sr->job != NULL && sched__calib_job(sr->job);
	return n;
}

int sched__calib_start(struct mstate *m, const char *why, struct err *err)
{
	struct json_object *params;

	if (m->model->quality != REG_QUALITY_AUTO) {
		err_set(err, ERR_CONFLICT, "model %s has the fixed quality %s; only models of quality "
			"auto are calibrated", m->model->id,
			m->model->function->qualities[m->model->quality].key);
		return -1;
	}
	if (m->cal.state == CAL_RUNNING) {
		err_set(err, ERR_CONFLICT, "model %s is being calibrated already (%lld of %lld runs "
			"done)", m->model->id, (long long)(m->cal.ok + m->cal.failed),
			(long long)m->cal.runs);
		return -1;
	}
	params = registry_calibration_params(m->model->function);
	json_object_put(params);
	if (params == NULL) {
		err_set(err, ERR_INVALID, "function %s has no calibration request",
			m->model->function->name);
		return -1;
	}
	m->cal.state = CAL_RUNNING;
	m->cal.definition = fingerprint(m->model);
	m->cal.runs = m->model->function->calibration.runs;
	m->cal.ok = m->cal.failed = 0;
	m->cal.started_ms = util_now_ms();
	log_info("calibration started model=%s runs=%lld why=%s", m->model->id,
		 (long long)m->cal.runs, log_q(why));
	metrics_event("calibration_started", m->model->id, NULL);
	/* Runs left from before a restart count in this round. */
	for (int64_t i = pending_runs(m); i < m->cal.runs; i++)
		queue_run(m);
	return 0;
}

void sched__calib_place(struct mstate *m)
{
	uint64_t fp;

	m->cal.due = 0;
	if (m->retired)
		return;
	if (m->model->quality != REG_QUALITY_AUTO) {
		memset(&m->cal, 0, sizeof m->cal);
		return;
	}
	fp = fingerprint(m->model);
	if (m->cal.definition != fp || m->cal.state == CAL_NONE) {
		if (restore(m, fp)) {
			join_tier(m);
			return;
		}
		/* Measured before, in another definition: it serves there until measured again. */
		if (m->cal.state != CAL_RUNNING)
			m->cal.due = 1;
	}
	if (m->cal.placed)
		join_tier(m);
}

void sched__calib_run_due(void)
{
	for (size_t i = 0; i < sched__s.nmodels; i++) {
		struct mstate *m = sched__s.models[i];

		if (m->cal.due && !m->retired && !server.stopping)
			sched__calib_start(m, m->cal.placed ? "the registry changed the model"
							    : "a model of quality auto without a measure",
					   &(struct err){0});
		m->cal.due = 0;
	}
}

void sched__calib_sample(struct mstate *m, const struct sjob *sj, double run_ms)
{
	if (m->cal.state != CAL_RUNNING || !sched__calib_job(sj) || m->cal.ok >= m->cal.runs)
		return;
	m->cal.times[m->cal.ok++] = run_ms;
}

/* Each tier's typical model for the calibration request at cost. */
static void tier_refs(const struct reg_function *fn, double cost, struct pl_tier_ref *refs)
{
	for (size_t q = 0; q < fn->nqualities; q++) {
		const struct tier *t = sched__tier_of(fn, (int)q);
		double runs[64], mems[64];
		size_t nr = 0, nm = 0;

		memset(&refs[q], 0, sizeof refs[q]);
		for (size_t i = 0; t && i < t->nmodels && nr < 64; i++) {
			const struct mstate *x = t->models[i];
			int64_t mem = x->measured > 0 ? x->measured : x->model->gpu_memory;

			if (x->model->quality == REG_QUALITY_AUTO)
				continue; /* a reference is a model of a fixed quality */
			if (x->est.n > 0)
				runs[nr++] = estimate_run_s(&x->est, cost, 0) * 1000;
			if (mem > 0)
				mems[nm++] = (double)mem;
		}
		if (nr > 0)
			refs[q].run_ms = median(runs, nr);
		else if (fn->qualities[q].typical_hi_s > 0)
			refs[q].run_ms = (fn->qualities[q].typical_lo_s + fn->qualities[q].typical_hi_s) *
					 500.0;
		refs[q].memory = nm > 0 ? (int64_t)median(mems, nm) : 0;
	}
}

/* No tier has a reference: m's rank by run time among the measured auto models. */
static int by_rank(const struct mstate *m)
{
	const struct reg_function *fn = m->model->function;
	size_t faster = 0, n = 1;

	for (size_t i = 0; i < sched__s.nmodels; i++) {
		const struct mstate *x = sched__s.models[i];
		if (x == m || x->retired || x->model->function != fn || x->cal.state != CAL_DONE)
			continue;
		n++;
		faster += x->cal.run_ms < m->cal.run_ms;
	}
	if (n == 1)
		return fn->default_quality;
	return (int)((faster * (fn->nqualities - 1) + (n - 1) / 2) / (n - 1));
}

static void conclude(struct mstate *m)
{
	const struct reg_function *fn = m->model->function;
	struct pl_tier_ref refs[64];
	struct json_object *params = registry_calibration_params(fn);
	double cost = params ? estimate_cost(fn, params) : 0, d = 0;
	char mem[32];
	int q;

	json_object_put(params);
	m->cal.at_ms = util_now_ms();
	if (m->cal.ok == 0) {
		m->cal.state = CAL_FAILED;
		snprintf(m->cal.how, sizeof m->cal.how, "every calibration run failed; the last: %.240s",
			 m->last_error[0] ? m->last_error : "see the model's jobs");
		log_warn("calibration failed model=%s runs=%lld reason=%s", m->model->id,
			 (long long)m->cal.failed, log_q(m->cal.how));
		metrics_event("calibration_failed", m->model->id, NULL);
		m->cal.placed = 0;
		sched__meta_set("tier", m->model->id, NULL);
		leave_tier(m);
		return;
	}
	m->cal.run_ms = median(m->cal.times, (size_t)m->cal.ok);
	m->cal.memory_measured = m->measured > 0;
	m->cal.memory = m->measured > 0 ? m->measured : m->model->gpu_memory;
	tier_refs(fn, cost, refs);
	q = pl_pick_tier(refs, fn->nqualities < 64 ? fn->nqualities : 64, m->cal.run_ms,
			 m->cal.memory, &d);
	if (m->cal.memory > 0)
		snprintf(mem, sizeof mem, "%lld MiB", (long long)(m->cal.memory >> 20));
	else
		snprintf(mem, sizeof mem, "unknown");
	if (q >= 0) {
		snprintf(m->cal.how, sizeof m->cal.how,
			 "closest to tier %s (typical %.0f ms, %lld MiB): measured %.0f ms, memory %s, "
			 "distance %.2f", fn->qualities[q].key, refs[q].run_ms,
			 (long long)(refs[q].memory >> 20), m->cal.run_ms, mem, d);
	} else {
		q = by_rank(m);
		snprintf(m->cal.how, sizeof m->cal.how,
			 "no tier has a typical model yet: ranked by run time among this function's "
			 "auto models (measured %.0f ms, memory %s)", m->cal.run_ms, mem);
	}
	m->cal.state = CAL_DONE;
	m->cal.placed = 1;
	leave_tier(m);
	snprintf(m->cal.quality, sizeof m->cal.quality, "%s", fn->qualities[q].key);
	join_tier(m);
	store_result(m);
	log_info("calibrated model=%s quality=%s run_ms=%.0f memory=%lld how=%s", m->model->id,
		 fn->qualities[q].key, m->cal.run_ms, (long long)m->cal.memory, log_q(m->cal.how));
	metrics_event("calibrated", m->model->id, NULL);
	sched__pump();
}

void sched__calib_end(struct sjob *sj)
{
	struct mstate *m = sched__mstate_of(sj->job->model_id);

	if (!sched__calib_job(sj) || m == NULL || m->cal.state != CAL_RUNNING)
		return;
	if (sj->job->status != JOB_COMPLETED)
		m->cal.failed++;
	if (m->cal.ok + m->cal.failed >= m->cal.runs)
		conclude(m);
}

void sched__calib_into(const struct mstate *m, struct json_object *e)
{
	const struct reg_function *fn = m->model->function;
	struct json_object *o;

	if (m->model->quality != REG_QUALITY_AUTO)
		return;
	o = json_object_new_object();
	json_put(o, "state", json_str(state_names[m->cal.state]));
	json_put(o, "quality", m->cal.placed ? json_str(m->cal.quality) : NULL);
	json_put(o, "runs", json_int(m->cal.runs ? m->cal.runs : fn->calibration.runs));
	json_put(o, "runs_done", json_int(m->cal.ok));
	json_put(o, "runs_failed", json_int(m->cal.failed));
	json_put(o, "run_ms", m->cal.run_ms > 0 ? json_object_new_double(m->cal.run_ms) : NULL);
	json_put(o, "gpu_memory", m->cal.memory > 0 ? json_int(m->cal.memory) : NULL);
	json_put(o, "memory_measured", json_object_new_boolean(m->cal.memory_measured));
	json_put(o, "at", m->cal.at_ms ? json_int(m->cal.at_ms) : NULL);
	json_put(o, "how", m->cal.how[0] ? json_str(m->cal.how) : NULL);
	json_put(e, "calibration", o);
}
