/*
 * sched_variants.c - A/B variants of a tier: each model's share of the
 * tier's jobs (its weight: the registry's, or an operator's, stored), what
 * it did (outcomes over a ring of its last jobs, run times for p50/p90),
 * and its rollout rule (registry.h, struct reg_rollout): a variant whose
 * failure rate passes its baseline's by more than the margin is rolled
 * back at once: weight 0 (stored), runners drained, its queued jobs moved
 * to the baseline, an operator event with the numbers.
 *
 * Failures counted here are a model's own: failed by its server, out of
 * memory, crashed or hung (timed out). A job that fails on a variant goes
 * to its fallback, or its rollout baseline when it has no fallback, so no
 * user's job fails because a variant is bad.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "log.h"
#include "metrics.h"
#include "registry.h"
#include "runner.h"
#include "scheduler_internal.h"
#include "server.h"
#include "util.h"

void sched__variant_restore(struct mstate *m)
{
	const char *w = sched__meta_get("weight", m->model->id);
	const char *note = sched__meta_get("rollback", m->model->id);

	m->var.weight = w ? atoll(w) : -1;
	if (note) {
		m->var.rolled_back = 1;
		snprintf(m->var.rollback_note, sizeof m->var.rollback_note, "%s", note);
	}
}

int64_t sched__weight(const struct mstate *m)
{
	return m->var.weight >= 0 ? m->var.weight : m->model->weight;
}

int sched__weight_set(const struct mstate *m)
{
	return m->var.weight >= 0 || m->model->weight_set;
}

int sched__routable(const struct mstate *m)
{
	if (sched__weight(m) > 0 || m->tier == NULL)
		return 1;
	for (size_t i = 0; i < m->tier->nmodels; i++)
		if (sched__weight_set(m->tier->models[i]))
			return 0; /* weights are in use, and its share is 0 */
	return 1;
}

void sched__set_weight(struct mstate *m, int64_t w)
{
	char text[32];

	m->var.weight = w;
	snprintf(text, sizeof text, "%lld", (long long)w);
	sched__meta_set("weight", m->model->id, text);
	if (w > 0 && m->var.rolled_back) {
		/* Back in the split: it is judged afresh, not on the jobs that rolled it back. */
		m->var.rolled_back = 0;
		m->var.rollback_note[0] = '\0';
		m->var.nring = m->var.at = 0;
		sched__meta_set("rollback", m->model->id, NULL);
	}
	log_info("model weight model=%s weight=%lld", m->model->id, (long long)w);
	sched__pump();
}

struct mstate *sched__fallback_state(const struct reg_model *m)
{
	const struct reg_model *f = m->fallback;

	if (f == NULL && m->rollout)
		f = m->rollout->baseline;
	return f ? sched__mstate_of(f->id) : NULL;
}

/* Failures among the last (at most) window outcomes; *n of them were counted. */
static double failure_rate(const struct variant *v, int64_t window, int64_t *n)
{
	int64_t k = v->nring < window ? v->nring : window, failed = 0;

	for (int64_t i = 0; i < k; i++)
		failed += v->ring[(v->at - 1 - i + VAR_RING) % VAR_RING];
	*n = k;
	return k ? (double)failed / (double)k : 0.0;
}

void sched__rollback(struct mstate *m, const char *why)
{
	const struct reg_rollout *ro = m->model->rollout;
	struct mstate *base = ro ? sched__mstate_of(ro->baseline->id) : NULL;

	m->var.weight = 0;
	sched__meta_set("weight", m->model->id, "0");
	m->var.rolled_back = 1;
	snprintf(m->var.rollback_note, sizeof m->var.rollback_note, "%s", why);
	sched__meta_set("rollback", m->model->id, why);
	log_warn("variant rolled back model=%s version=%s baseline=%s why=%s", m->model->id,
		 m->model->version ? m->model->version : "", base ? base->model->id : "",
		 log_q(why));
	metrics_event("rollback", m->model->id, base ? base->model->id : NULL);
	for (struct srunner *sr = m->runners, *next; sr; sr = next) {
		next = sr->next;
		runner_drain(sr->r, "rolled back");
	}
	/* Its queued jobs go to the baseline (or where their tier routes now). */
	while (m->q.head)
		sched__move(m->q.head, base && base != m ? base : NULL, "variant rolled back");
	sched__pump();
}

void sched__promote(struct mstate *m)
{
	int64_t w = m->model->weight > 0 ? m->model->weight : 100;

	for (size_t i = 0; m->tier && i < m->tier->nmodels; i++)
		if (m->tier->models[i] != m)
			sched__set_weight(m->tier->models[i], 0);
	sched__set_weight(m, w);
	metrics_event("promote", m->model->id, NULL);
	log_warn("variant promoted model=%s version=%s weight=%lld", m->model->id,
		 m->model->version ? m->model->version : "", (long long)w);
}

static void check_rollout(struct mstate *m)
{
	const struct reg_rollout *ro = m->model->rollout;
	struct mstate *base = sched__mstate_of(ro->baseline->id);
	int64_t n, bn = 0;
	double r = failure_rate(&m->var, ro->window, &n), br;
	char why[300];

	if (n < ro->min_jobs)
		return;
	br = base ? failure_rate(&base->var, ro->window, &bn) : 0.0;
	if (r - br <= ro->max_delta)
		return;
	snprintf(why, sizeof why,
		 "failure rate %.1f%% over its last %lld jobs against %.1f%% for %s over %lld; "
		 "the margin is %.1f points",
		 100 * r, (long long)n, 100 * br, ro->baseline->id, (long long)bn, 100 * ro->max_delta);
	sched__rollback(m, why);
}

void sched__outcome(struct mstate *m, int failed, int oom, double run_ms)
{
	struct variant *v = &m->var;

	v->jobs++;
	v->failures += failed != 0;
	v->ooms += oom != 0;
	v->ring[v->at] = failed != 0;
	v->at = (v->at + 1) % VAR_RING;
	if (v->nring < VAR_RING)
		v->nring++;
	if (!failed && run_ms >= 0)
		v->times[v->ntimes++ % VAR_TIMES] = run_ms;
	if (m->model->rollout && !v->rolled_back)
		check_rollout(m);
}

static int by_value(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

void sched__variant_into(const struct mstate *m, struct json_object *e)
{
	const struct variant *v = &m->var;
	int64_t n = v->ntimes < VAR_TIMES ? v->ntimes : VAR_TIMES, k;
	double sorted[VAR_TIMES], rate = failure_rate(v, VAR_RING, &k);
	const struct reg_rollout *ro = m->model->rollout;

	memcpy(sorted, v->times, (size_t)n * sizeof *sorted);
	qsort(sorted, (size_t)n, sizeof *sorted, by_value);
	json_put(e, "version", m->model->version ? json_str(m->model->version) : NULL);
	json_put(e, "weight", json_int(sched__weight(m)));
	json_put(e, "weight_from", json_str(v->weight >= 0 ? "operator" : "registry"));
	json_put(e, "jobs", json_int(v->jobs));
	json_put(e, "failed_jobs", json_int(v->failures));
	json_put(e, "failure_rate", json_object_new_double(rate));
	json_put(e, "ooms", json_int(v->ooms));
	json_put(e, "p50_run_ms", n ? json_int((int64_t)sorted[n / 2]) : NULL);
	json_put(e, "p90_run_ms", n ? json_int((int64_t)sorted[(n * 9) / 10]) : NULL);
	if (ro || v->rolled_back) {
		struct json_object *r = json_object_new_object();
		json_put(r, "baseline", ro ? json_str(ro->baseline->id) : NULL);
		json_put(r, "state", json_str(v->rolled_back ? "rolled_back" : "watching"));
		json_put(r, "note", v->rolled_back ? json_str(v->rollback_note) : NULL);
		if (ro) {
			json_put(r, "max_failure_rate_delta", json_object_new_double(ro->max_delta));
			json_put(r, "min_jobs", json_int(ro->min_jobs));
			json_put(r, "window", json_int(ro->window));
		}
		json_put(e, "rollout", r);
	}
}
