/*
 * sched_reports.c - what runners report about jobs, and what follows:
 * running, progress, done (thumbnails, then completed), and errors (a
 * retry, a fallback, one quality down after out-of-memory, or a failure).
 *
 * Every report carries the ticket of the attempt it is about; one that
 * does not match the job the runner holds now is stale and dropped
 * (scheduler_internal.h, invariant 4).
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
#include "outputs.h"
#include "registry.h"
#include "runner.h"
#include "scheduler_internal.h"
#include "server.h"
#include "thumb.h"
#include "thumb_video.h"
#include "util.h"

#define THUMB_SIDE 256
#define POSTER_TIMEOUT_MS 20000 /* ffmpeg's budget for a video's poster */

/* The job the report is about, or NULL (logged) when the report is stale. */
static struct sjob *job_of(struct srunner *sr, uint64_t ticket, const char *what)
{
	struct sjob *sj = sr->job;

	if (sj && sj->ticket == ticket && sj->runner == sr)
		return sj;
	log_debug("stale report dropped runner=%s report=%s ticket=%llu", sr->r->id, what,
		  (unsigned long long)ticket);
	return NULL;
}

/* The job leaves its runner (it is done, failed or moves on). */
static void detach(struct sjob *sj)
{
	if (sj->runner && sj->runner->job == sj)
		sj->runner->job = NULL;
	sj->runner = NULL;
	sj->ticket = 0;
	sched__pump(); /* the runner is free for another */
}

void sched__on_running(struct runner *r, uint64_t ticket, void *ud)
{
	struct sjob *sj = job_of(ud, ticket, "running");

	if (sj == NULL || sj->job->status != JOB_PREPARING)
		return;
	sched__set_state(sj, JOB_RUNNING);
	if (sj->cancel_requested)
		runner_interrupt(r);
}

void sched__on_progress(struct runner *r, uint64_t ticket, double value, double max, void *ud)
{
	struct sjob *sj = job_of(ud, ticket, "progress");
	int pct = max > 0 ? (int)(5 + 90 * value / max) : 5;

	if (sj == NULL || pct <= sj->job->progress || sj->job->status != JOB_RUNNING)
		return;
	sj->job->progress = pct > 95 ? 95 : pct;
	sched__publish(sj, "progress");
}

/* ---- done: thumbnails, then completed ---- */

enum { THUMB_NONE, THUMB_MADE, THUMB_SELF };

struct thumbs {
	uv_work_t req;
	struct sjob *sj;
	struct json_object *outputs; /* [{path, filename, kind, width?, height?}] */
	char **src, **dst;           /* per output; NULL where none is made */
	char **rel;                  /* the thumbnail's public name, per output */
	char **why;                  /* why no poster was made, per video output; logged on the loop */
	int *ok;                     /* enum above, per output */
	int *video;                  /* 1: a video, whose thumbnail is a poster (ffmpeg) */
	size_t n, work;              /* outputs, and those that need the thread pool */
};

/*
 * On the thread pool: big images are scaled down, videos get a poster of
 * their first frame; the rest were settled before.
 */
static void thumbs_work(uv_work_t *req)
{
	struct thumbs *t = req->data;

	for (size_t i = 0; i < t->n; i++) {
		struct err e = {0};
		int w, h;

		if (t->src[i] == NULL || t->ok[i] != THUMB_NONE)
			continue;
		if (t->video[i]) {
			if (thumb_video_poster(t->src[i], t->dst[i], THUMB_SIDE, POSTER_TIMEOUT_MS, &e) == 0)
				t->ok[i] = THUMB_MADE;
			else
				t->why[i] = xstrdup(e.msg);
		} else if (thumb_png_size(t->src[i], &w, &h, &e) == 0 && w <= THUMB_SIDE && h <= THUMB_SIDE)
			t->ok[i] = THUMB_SELF;
		else if (thumb_png(t->src[i], t->dst[i], THUMB_SIDE, &e) == 0)
			t->ok[i] = THUMB_MADE;
	}
}

static void thumbs_free(struct thumbs *t)
{
	for (size_t i = 0; i < t->n; i++) {
		free(t->src[i]);
		free(t->dst[i]);
		free(t->rel[i]);
		free(t->why[i]);
	}
	json_object_put(t->outputs);
	free(t->src);
	free(t->dst);
	free(t->rel);
	free(t->why);
	free(t->ok);
	free(t->video);
	free(t);
}

static void thumbs_done(uv_work_t *req, int status)
{
	struct thumbs *t = req->data;
	struct sjob *sj = t->sj;

	for (size_t i = 0; i < t->n; i++) {
		struct json_object *o = json_object_array_get_idx(t->outputs, i);

		if (t->ok[i] == THUMB_SELF)
			json_put(o, "thumbnail", json_str(json_get_str(o, "path")));
		else if (t->ok[i] == THUMB_MADE)
			json_put(o, "thumbnail", json_str(t->rel[i]));
		else if (t->why[i] != NULL)
			log_warn("no poster for a video job=%s file=%s error=%s", sj->job->id,
				 log_q(json_get_str(o, "filename")), log_q(t->why[i]));
	}
	free(sj->job->outputs_json);
	sj->job->outputs_json = json_dumps(t->outputs);
	thumbs_free(t);
	sj->finishing = 0;
	sj->job->progress = 100;
	sched__finish(sj, JOB_COMPLETED);
}

/*
 * What output i needs: nothing (neither a PNG nor a video), nothing more
 * (a PNG that already fits: its own thumbnail), or a scaled copy or a
 * video's poster, made on the thread pool.
 */
static void thumb_plan(struct thumbs *t, size_t i, const char *root)
{
	struct json_object *o = json_object_array_get_idx(t->outputs, i);
	const char *path = json_get_str(o, "path"), *fn = json_get_str(o, "filename");
	const char *kind = json_get_str(o, "kind");
	int64_t w = json_get_int(o, "width", 0), h = json_get_int(o, "height", 0);
	char src[4096], dst[4096], name[600], job[128];
	struct err e = {0};

	if (!path || !fn)
		return;
	t->video[i] = kind != NULL && strcmp(kind, "video") == 0;
	if (!t->video[i] && !util_ends_with(fn, ".png"))
		return;
	if (!t->video[i] && w > 0 && h > 0 && w <= THUMB_SIDE && h <= THUMB_SIDE) {
		t->ok[i] = THUMB_SELF;
		return;
	}
	snprintf(job, sizeof job, "%.*s", (int)strcspn(path, "/"), path);
	snprintf(name, sizeof name, "thumb-%s.png", fn);
	if (outputs_resolve(root, path, src, sizeof src, &e) < 0 ||
	    outputs_write_path(root, job, name, dst, sizeof dst, &e) < 0)
		return;
	t->src[i] = xstrdup(src);
	t->dst[i] = xstrdup(dst);
	t->rel[i] = xasprintf("%s/%s", job, name);
	t->work++;
}

/* Thumbnails of the PNG outputs and posters of the videos; the job completes after them. */
static void complete_with_thumbs(struct sjob *sj, struct json_object *outputs)
{
	struct thumbs *t = xcalloc(1, sizeof *t);
	const char *root = server_path("outputs");
	size_t n = json_object_array_length(outputs);

	t->sj = sj;
	t->outputs = outputs;
	t->n = n;
	t->src = xcalloc(n ? n : 1, sizeof *t->src);
	t->dst = xcalloc(n ? n : 1, sizeof *t->dst);
	t->rel = xcalloc(n ? n : 1, sizeof *t->rel);
	t->why = xcalloc(n ? n : 1, sizeof *t->why);
	t->ok = xcalloc(n ? n : 1, sizeof *t->ok);
	t->video = xcalloc(n ? n : 1, sizeof *t->video);
	for (size_t i = 0; i < n; i++)
		thumb_plan(t, i, root);
	t->req.data = t;
	/* Small images (the usual preview) complete now, without a trip to the pool. */
	if (t->work == 0 || uv_queue_work(server.loop, &t->req, thumbs_work, thumbs_done) != 0) {
		thumbs_done(&t->req, 0);
		return;
	}
	sj->finishing = 1;
	sched__publish(sj, "state");
}

void sched__on_done(struct runner *r, uint64_t ticket, struct json_object *outputs, void *ud)
{
	struct srunner *sr = ud;
	struct sjob *sj = job_of(sr, ticket, "done");

	if (sj == NULL) {
		json_object_put(outputs);
		return;
	}
	if (sj->job->status == JOB_PREPARING)
		sched__set_state(sj, JOB_RUNNING); /* the result came before the prompt's reply */
	estimate_learn_run(&sr->m->est, estimate_cost(sj->fn, sj->params),
			   (double)(util_now_ms() - sj->job->started_at));
	sr->m->failures = 0;
	sched__outcome(sr->m, 0, 0, (double)(util_now_ms() - sj->job->started_at));
	sched__measure(sr);
	sched__calib_sample(sr->m, sj, (double)(util_now_ms() - sj->job->started_at));
	detach(sj);
	complete_with_thumbs(sj, outputs);
}

/* ---- errors ---- */


/*
 * Out of memory: one quality down when the function allows it (the user is
 * told), else a failure that suggests the lower quality.
 */
static void oom(struct sjob *sj, const struct reg_model *model, const char *tech)
{
	const struct reg_function *fn = sj->fn;
	int lower = registry_quality_lower(fn, sj->quality);
	struct tier *t = lower >= 0 && fn->reduce_quality_on_oom ? sched__tier_of(fn, lower) : NULL;
	char text[300];

	if (t && t->nmodels > 0) {
		snprintf(text, sizeof text, "Not enough memory for %s — trying %s instead",
			 fn->qualities[sj->quality].label, fn->qualities[lower].label);
		free(sj->notice);
		sj->notice = xstrdup(text);
		log_info("out of memory, one quality down job=%s from=%s to=%s", sj->job->id,
			 fn->qualities[sj->quality].key, fn->qualities[lower].key);
		metrics_inc(MC_OOM_RETRIES, &(struct metrics_labels){.function = fn->name,
			    .quality = fn->qualities[sj->quality].key, .model = model->id}, 1);
		metrics_event("oom_retry", model->id, NULL);
		sj->quality = lower;
		job_set_str(&sj->job->quality, fn->qualities[lower].key);
		sched__add_tried(sj->job, model->id, 0);
		sched__requeue(sj, NULL, tech);
		return;
	}
	if (lower >= 0)
		snprintf(text, sizeof text, "Try %s quality", fn->qualities[lower].label);
	else
		snprintf(text, sizeof text, "Try again in a few minutes");
	sched__fail_job(sj, "OUT_OF_MEMORY",
			"This quality setting needs more resources than are free right now", text,
			lower >= 0 ? "REDUCE_QUALITY" : "RETRY", tech);
}

/*
 * The model server failed the job itself: its command failed, or it
 * refused the workflow (rejected: the registry and the model server
 * disagree). Counted against the model; the job goes to the fallback, or
 * fails.
 */
static void model_error(struct srunner *sr, struct sjob *sj, const char *exc_type,
			const char *detail, const char *tech, int rejected)
{
	const struct reg_model *model = sr->r->model;
	struct mstate *fb = sched__fallback_state(model);

	if (sched__calib_job(sj)) { /* the measure failed: nothing to retry elsewhere */
		sched__fail_job(sj, comfy_is_oom(exc_type, detail) ? "OUT_OF_MEMORY" : "INTERNAL",
				"The calibration run failed", NULL, NULL, tech);
		sched__model_error(sr->m, tech);
		return;
	}
	/* Out of memory on a variant on trial: its baseline tries the same quality first. */
	if (!rejected && comfy_is_oom(exc_type, detail) && !(model->rollout && fb)) {
		oom(sj, model, tech);
		sched__outcome(sr->m, 1, 1, -1);
		return;
	}
	if (!rejected && comfy_is_oom(exc_type, detail)) {
		sched__outcome(sr->m, 1, 1, -1);
		sched__add_tried(sj->job, model->id, 0);
		sched__note_fallback(sj, model->id, fb->model);
		sched__requeue(sj, fb, tech);
		return;
	}
	sched__outcome(sr->m, 1, 0, -1);
	if (fb) {
		sched__add_tried(sj->job, model->id, 0);
		sched__note_fallback(sj, model->id, fb->model);
		sched__requeue(sj, fb, tech);
	} else if (rejected) {
		sched__fail_job(sj, "INTERNAL", "Something went wrong while preparing your request",
				"Try another quality", "RETRY", tech);
	} else {
		sched__fail_job(sj, "INTERNAL", "Something went wrong while creating your result",
				"Try again; if it keeps happening, try another quality", "RETRY",
				tech);
	}
	/* Counted after the job left: a model that rests now moves the others. */
	sched__model_error(sr->m, tech);
}

/*
 * The runner failed holding the job: another attempt. When this failure
 * is the one that rests the model (on_gone counts it), the attempt goes
 * to the fallback at once, which gets its own tries.
 */
static void lost(struct srunner *sr, struct sjob *sj, const char *tech)
{
	struct mstate *f = sched__fallback_state(sr->m->model);

	server.runners_crashed++;
	sched__outcome(sr->m, 1, 0, -1);
	metrics_inc(MC_RUNNERS_CRASHED, &(struct metrics_labels){.model = sr->m->model->id}, 1);
	/* To the fallback when this failure rests the model; a variant on trial, at once. */
	if (f && (sr->m->model->rollout || sr->m->failures + 1 >= SCHED_FAILURES_MAX)) {
		sched__add_tried(sj->job, sr->m->model->id, 0);
		sched__note_fallback(sj, sr->m->model->id, f->model);
		sched__requeue(sj, f, tech);
		return;
	}
	sched__requeue(sj, NULL, tech);
}

void sched__on_job_error(struct runner *r, uint64_t ticket, int kind, const char *exc_type,
			 const char *detail, void *ud)
{
	struct srunner *sr = ud;
	struct sjob *sj = job_of(sr, ticket, "error");
	char tech[1024];

	if (sj == NULL)
		return;
	snprintf(tech, sizeof tech, "model=%s runner=%s %s%s%s", r->model->id, r->id,
		 exc_type ? exc_type : "", exc_type ? ": " : "", detail ? detail : "");
	detach(sj);
	switch (kind) {
	case RUNNER_ERR_INTERRUPTED:
		if (sj->cancel_requested)
			sched__finish(sj, JOB_CANCELLED);
		else
			sched__requeue(sj, NULL, tech);
		break;
	case RUNNER_ERR_MODEL:
	case RUNNER_ERR_REJECTED:
		model_error(sr, sj, exc_type, detail, tech, kind == RUNNER_ERR_REJECTED);
		break;
	case RUNNER_ERR_LOST:
		lost(sr, sj, tech);
		break;
	default: /* transport, lost output: another attempt */
		sched__requeue(sj, NULL, tech);
		break;
	}
}
