/*
 * sched_metrics.c - the scheduler's state now, as Prometheus gauges (the
 * counters and histograms it updates as things happen live in metrics.c):
 * queued jobs per function and quality, runners per model and state, the
 * models resting, and GPU memory (budget, reserved, measured) per GPU and
 * per model.
 *
 * A scrape costs O(tiers + models + runners): queue lengths are kept by
 * the queues, nothing walks the jobs.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "job.h"
#include "metrics.h"
#include "scheduler_internal.h"
#include "util.h"
#include "vram.h"

#define NSTATES (RUNNER_DRAINING + 1)

static const char *quality_key(const struct reg_model *rm)
{
	return rm->quality >= 0 ? rm->function->qualities[rm->quality].key : "auto";
}

/* Jobs in a tier's queue and in the queues of the models pinned within it. */
static int render_queued(struct buf *b)
{
	int rc = metrics_family(b, "fnrun_jobs_queued", "gauge",
				"Jobs waiting in a queue, by the function and quality they wait for.");

	for (size_t i = 0; rc == 0 && i < sched__s.ntiers; i++) {
		const struct tier *t = sched__s.tiers[i];
		size_t n = t->q.n;
		const char *kv[] = {"function", t->fn->name, "quality",
				    t->fn->qualities[t->quality].key};

		for (size_t k = 0; k < t->nmodels; k++)
			if (t->models[k]->tier == t)
				n += t->models[k]->q.n;
		rc = metrics_sample(b, "fnrun_jobs_queued", kv, 2, (double)n);
	}
	/* Jobs pinned to a model outside any tier (quality auto, retired). */
	for (size_t i = 0; rc == 0 && i < sched__s.nmodels; i++) {
		const struct mstate *m = sched__s.models[i];
		const char *kv[] = {"function", m->model->function->name, "quality",
				    quality_key(m->model)};
		if (m->tier == NULL && m->q.n > 0)
			rc = metrics_sample(b, "fnrun_jobs_queued", kv, 2, (double)m->q.n);
	}
	return rc;
}

static int render_runners(struct buf *b)
{
	int rc = metrics_family(b, "fnrun_runners", "gauge",
				"Model server instances, by model and state.");

	for (size_t i = 0; rc == 0 && i < sched__s.nmodels; i++) {
		const struct mstate *m = sched__s.models[i];
		int n[NSTATES] = {0};

		for (const struct srunner *sr = m->runners; sr; sr = sr->next)
			if (sr->r->state >= 0 && sr->r->state < NSTATES)
				n[sr->r->state]++;
		for (int s = 0; rc == 0 && s < NSTATES; s++) {
			const char *kv[] = {"model", m->model->id, "state", runner_state_name(s)};
			rc = metrics_sample(b, "fnrun_runners", kv, 2, n[s]);
		}
	}
	return rc;
}

/*
 * fnrun_model_info carries what describes a model; `version` is left out
 * (the same as "") until the registry gives models a version.
 */
static int render_models(struct buf *b)
{
	int64_t now = util_now_ms();
	int rc = metrics_family(b, "fnrun_model_info", "gauge",
				"1 for each model of the registry, with its function and quality.");

	for (size_t i = 0; rc == 0 && i < sched__s.nmodels; i++) {
		const struct reg_model *rm = sched__s.models[i]->model;
		const char *kv[] = {"model", rm->id, "function", rm->function->name,
				    "quality", quality_key(rm), "version", ""};
		rc = metrics_sample(b, "fnrun_model_info", kv, 4, 1);
	}
	if (rc == 0)
		rc = metrics_family(b, "fnrun_model_resting", "gauge",
				    "1 while a model rests after repeated failures (its fallback serves).");
	for (size_t i = 0; rc == 0 && i < sched__s.nmodels; i++) {
		const struct mstate *m = sched__s.models[i];
		const char *kv[] = {"model", m->model->id};
		rc = metrics_sample(b, "fnrun_model_resting", kv, 1, m->cooldown_until_ms > now);
	}
	if (rc == 0)
		rc = metrics_family(b, "fnrun_model_consecutive_failures", "gauge",
				    "Failures of a model's runners in a row (3 rest it).");
	for (size_t i = 0; rc == 0 && i < sched__s.nmodels; i++) {
		const struct mstate *m = sched__s.models[i];
		const char *kv[] = {"model", m->model->id};
		rc = metrics_sample(b, "fnrun_model_consecutive_failures", kv, 1, m->failures);
	}
	return rc;
}

/* Sums of the runners' reservations and measurements per GPU, for one model or all. */
static void sum_gpu(const struct mstate *only, int64_t *reserved, int64_t *measured, int *n)
{
	memset(reserved, 0, VRAM_MAX_GPUS * sizeof *reserved);
	memset(measured, 0, VRAM_MAX_GPUS * sizeof *measured);
	memset(n, 0, VRAM_MAX_GPUS * sizeof *n);
	for (size_t i = 0; i < sched__s.nmodels; i++) {
		const struct mstate *m = sched__s.models[i];
		if (only && m != only)
			continue;
		for (const struct srunner *sr = m->runners; sr; sr = sr->next) {
			if (sr->gpu < 0 || sr->gpu >= VRAM_MAX_GPUS)
				continue;
			reserved[sr->gpu] += sr->reserved;
			measured[sr->gpu] += sr->measured;
			n[sr->gpu]++;
		}
	}
}

static int render_gpus(struct buf *b)
{
	int64_t res[VRAM_MAX_GPUS], mea[VRAM_MAX_GPUS];
	int n[VRAM_MAX_GPUS], rc;
	char gpu[16];

	rc = metrics_family(b, "fnrun_gpu_memory_budget_bytes", "gauge",
			    "GPU memory runners may reserve on a GPU (absent: unlimited).");
	for (int i = 0; rc == 0 && i < vram_count(); i++) {
		const struct vram_gpu *g = vram_gpu(i);
		const char *kv[] = {"gpu", gpu};
		snprintf(gpu, sizeof gpu, "%d", g->index);
		if (g->budget != VRAM_UNLIMITED)
			rc = metrics_sample(b, "fnrun_gpu_memory_budget_bytes", kv, 1,
					    (double)g->budget);
	}
	sum_gpu(NULL, res, mea, n);
	if (rc == 0)
		rc = metrics_family(b, "fnrun_gpu_memory_reserved_bytes", "gauge",
				    "GPU memory reserved by runners on a GPU.");
	for (int i = 0; rc == 0 && i < vram_count(); i++) {
		const char *kv[] = {"gpu", gpu};
		snprintf(gpu, sizeof gpu, "%d", vram_gpu(i)->index);
		rc = metrics_sample(b, "fnrun_gpu_memory_reserved_bytes", kv, 1,
				    (double)vram_gpu(i)->reserved);
	}
	if (rc == 0)
		rc = metrics_family(b, "fnrun_gpu_memory_measured_bytes", "gauge",
				    "GPU memory NVML measured the runners on a GPU use (0: not known).");
	for (int i = 0; rc == 0 && i < vram_count() && i < VRAM_MAX_GPUS; i++) {
		const char *kv[] = {"gpu", gpu};
		snprintf(gpu, sizeof gpu, "%d", vram_gpu(i)->index);
		rc = metrics_sample(b, "fnrun_gpu_memory_measured_bytes", kv, 1, (double)mea[i]);
	}
	return rc;
}

/* Per model and GPU, where the model has runners (bounded: models x GPUs). */
static int render_model_gpus(struct buf *b, const char *name, int measured)
{
	int64_t res[VRAM_MAX_GPUS], mea[VRAM_MAX_GPUS];
	int n[VRAM_MAX_GPUS], rc;
	char gpu[16];

	rc = metrics_family(b, name, "gauge",
			    measured ? "GPU memory NVML measured a model's runners use, per GPU."
				     : "GPU memory a model's runners reserve, per GPU.");
	for (size_t i = 0; rc == 0 && i < sched__s.nmodels; i++) {
		const struct mstate *m = sched__s.models[i];
		if (m->runners == NULL)
			continue;
		sum_gpu(m, res, mea, n);
		for (int g = 0; rc == 0 && g < VRAM_MAX_GPUS; g++) {
			const char *kv[] = {"model", m->model->id, "gpu", gpu};
			if (n[g] == 0)
				continue;
			snprintf(gpu, sizeof gpu, "%d", g < vram_count() ? vram_gpu(g)->index : g);
			rc = metrics_sample(b, name, kv, 2, (double)(measured ? mea[g] : res[g]));
		}
	}
	return rc;
}

int sched_metrics(struct buf *b)
{
	if (render_queued(b) < 0 || render_runners(b) < 0 || render_models(b) < 0 ||
	    render_gpus(b) < 0)
		return -1;
	if (render_model_gpus(b, "fnrun_model_gpu_memory_reserved_bytes", 0) < 0)
		return -1;
	return render_model_gpus(b, "fnrun_model_gpu_memory_measured_bytes", 1);
}

/* ---- hooks the scheduler's files call where things happen ---- */

struct metrics_labels sched__labels(const struct sjob *sj)
{
	return (struct metrics_labels){.function = sj->job->function,
				       .quality = sj->job->quality,
				       .model = sj->job->model_id};
}

void sched__count(int counter, const struct sjob *sj)
{
	struct metrics_labels l = sched__labels(sj);

	metrics_inc(counter, &l, 1);
}

void sched__observe(int hist, const struct sjob *sj, int64_t ms)
{
	struct metrics_labels l = sched__labels(sj);

	metrics_observe(hist, &l, (double)ms / 1000.0);
}

void sched__metrics_fallback(const struct sjob *sj, const char *from, const struct reg_model *to)
{
	struct metrics_labels l = sched__labels(sj);

	l.model = from;
	l.fallback = to->id;
	metrics_inc(MC_FALLBACKS, &l, 1);
	metrics_event("fallback", from, to->id);
}

void sched__metrics_retire(const struct sjob *sj)
{
	static const int counter[] = {[JOB_COMPLETED] = MC_JOBS_COMPLETED,
				      [JOB_FAILED] = MC_JOBS_FAILED,
				      [JOB_CANCELLED] = MC_JOBS_CANCELLED};
	const struct job *j = sj->job;
	struct metrics_labels l = sched__labels(sj);

	if (!job_status_terminal(j->status))
		return;
	l.code = j->error_code;
	metrics_inc(counter[j->status], &l, 1);
	if (j->status == JOB_COMPLETED && j->started_at > 0)
		metrics_observe(MH_RUN, &l, (double)(j->finished_at - j->started_at) / 1000.0);
	l.model = NULL;
	l.status = job_status_name(j->status);
	if (j->created_at > 0 && j->finished_at >= j->created_at)
		metrics_observe(MH_END_TO_END, &l, (double)(j->finished_at - j->created_at) / 1000.0);
}
