/*
 * sched_restore.c - the scheduler's start and end. At start: rebuild the
 * live jobs from the store (queued ones go back to their queues in their
 * order; those that were preparing or running are reconciled: a result
 * the model server still has completes them, else they run again), then
 * stop the model servers an earlier fnrun left. At the end: a graceful
 * stop (running jobs finish first, up to a drain time) and the frees.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "comfy.h"
#include "job.h"
#include "json.h"
#include "log.h"
#include "outputs.h"
#include "registry.h"
#include "runner.h"
#include "runtime_docker.h"
#include "runtime_process.h"
#include "scheduler_internal.h"
#include "server.h"
#include "store.h"
#include "util.h"
#include "vram.h"

#define DRAIN_MS 60000 /* shutdown waits this long for running jobs */

static struct sjob *revive(struct job *j)
{
	const struct reg_function *fn = registry_function(sched__s.reg, j->function);
	struct json_object *params = NULL;
	struct err e = {0};
	int q = fn ? registry_quality_index(fn, j->quality) : -1;

	if (q < 0 || json_parse(j->params_json, strlen(j->params_json), 64, &params, &e) < 0) {
		json_object_put(params);
		return NULL;
	}
	return sched__sjob_new(j, sched__s.reg, fn, q, params);
}

/* Results are in: stop what the previous run left behind, then start work. */
static void reconcile_done(void)
{
	struct store_runner *v = NULL;
	size_t n = 0;
	struct err e = {0};

	if (--sched__s.reconciling > 0)
		return;
	if (store_runner_list(server.store, &v, &n, &e) == 0) {
		for (size_t i = 0; i < n; i++) {
			if (v[i].pid > 0)
				runtime_process_kill_orphan(v[i].pid);
			sched__record_runner_delete(v[i].id);
		}
		store_runners_free(v, n);
	}
	docker_cleanup_orphans();
	sched__pump();
}

static void on_reconciled(void *ud, uint64_t tag, int result, struct json_object *outputs,
			  const char *exc_type, const char *msg)
{
	struct sjob *sj = ud;

	sj->fetch = NULL;
	if (result == COMFY_OK) {
		log_info("job reconciled as completed job=%s", sj->job->id);
		free(sj->job->outputs_json);
		sj->job->outputs_json = json_dumps(outputs);
		json_object_put(outputs);
		sj->job->progress = 100;
		if (sj->job->status == JOB_PREPARING)
			sched__set_state(sj, JOB_RUNNING);
		sched__finish(sj, JOB_COMPLETED);
	} else {
		/* Not the job's fault: the same attempt runs again. */
		sj->job->attempt--;
		sched__requeue(sj, NULL, msg ? msg : "restart");
	}
	reconcile_done();
}

/* A job that was preparing or running when fnrun stopped. */
static void reconcile(struct sjob *sj)
{
	struct job *j = sj->job;
	struct err e = {0};
	char stem[96];

	if (j->remote_url && j->remote_prompt_id) {
		outputs_stem(stem, sizeof stem, j->function, j->id);
		sj->fetch = comfy_fetch_result(j->remote_url, j->remote_prompt_id,
					       server_path("outputs"), j->id, stem, 0, on_reconciled,
					       sj, &e);
		if (sj->fetch) {
			sched__s.reconciling++;
			return;
		}
	}
	j->attempt--;
	sched__requeue(sj, NULL, "restart");
}

static void restore(struct job *j)
{
	struct sjob *sj = revive(j);
	struct tier *t;
	struct mstate *pin;

	if (sj == NULL) {
		log_error("job cannot be restored job=%s function=%s", j->id, j->function);
		job_free(j); /* left as it is in the store */
		return;
	}
	sched__table_add(sj);
	if (j->status != JOB_QUEUED) {
		reconcile(sj);
		return;
	}
	pin = j->model_id ? sched__mstate_of(j->model_id) : NULL;
	t = pin && pin->tier ? pin->tier : sched__tier_of(sj->fn, sj->quality);
	if (t == NULL && pin == NULL && sched__route(sj->fn, sj->quality, sched__route_key(j), &t, &pin) < 0) {
		sched__fail_job(sj, "MODEL_UNAVAILABLE", NULL, NULL, NULL,
				"model no longer in the registry");
		return;
	}
	sched__enqueue(sj, t ? t : sched__tier_of(sj->fn, sj->quality), pin);
}

int sched_init(const struct sched_hooks *hooks, struct err *err)
{
	const struct reg_server *cfg = registry_server(server.reg);
	const char *limit = getenv("VRAM_LIMIT");
	struct job **v = NULL;
	size_t n = 0;

	memset(&sched__s, 0, sizeof sched__s);
	sched__s.hooks = *hooks;
	sched__s.reg = registry_ref(server.reg);
	if (sched__meta_load(err) < 0)
		return -1;
	vram_init(cfg->gpu_vram, cfg->gpu_devices, limit ? atoll(limit) : 0);
	sched__build_models(sched__s.reg);
	uv_timer_init(server.loop, &sched__s.pump_timer);
	uv_timer_init(server.loop, &sched__s.drain_timer);
	sched__commit_init();
	if (sched__quota_load(err) < 0)
		return -1;
	if (store_job_active(server.store, &v, &n, err) < 0)
		return -1;
	sched__s.reconciling = 1;
	for (size_t i = 0; i < n; i++)
		restore(v[i]);
	free(v);
	log_info("scheduler ready live=%zu queued=%zu reconciling=%d", sched__s.nlive,
		 sched__s.nqueued, sched__s.reconciling - 1);
	reconcile_done();
	sched__calib_run_due();
	sched__cluster_init();
	return 0;
}

static void on_drain_timeout(uv_timer_t *t)
{
	log_warn("shutdown: jobs still running after the drain time; stopping their model servers");
	sched__stop_runners("shutdown (drain time over)", 0);
}

/*
 * Graceful shutdown: no new jobs, idle runners stop now, busy ones finish
 * their job first (at most DRAIN_MS); done() once every runner has exited.
 * Queued jobs stay queued in the store for the next start.
 */
void sched_stop(void (*done)(void))
{
	server.stopping = 1;
	sched__s.stop_done = done;
	sched__stop_runners("shutdown", 1);
	uv_timer_start(&sched__s.drain_timer, on_drain_timeout,
		       (uint64_t)(DRAIN_MS * server.cfg.time_scale), 0);
	sched__check_stopped();
}

void sched_shutdown(void)
{
	sched__cluster_shutdown();
	sched__prewarm_shutdown();
	sched__commit_shutdown();
	sched__free_jobs();
	sched__free_models();
	registry_unref(sched__s.reg);
	sched__quota_free();
	sched__meta_free();
	sched__s.reg = NULL;
	uv_close((uv_handle_t *)&sched__s.pump_timer, NULL);
	uv_close((uv_handle_t *)&sched__s.drain_timer, NULL);
}
