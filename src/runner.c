/*
 * runner.c - one instance of a model (runner.h): its model server through
 * the runtime interface, the start probe and the periodic health probe,
 * the /ws session, the hang watchdog, and the ComfyUI calls of its job.
 *
 * Invariants:
 * 1. r->gen changes whenever a job is handed over or ends; every comfy
 *    call and every frame is checked against it (current()), so nothing
 *    from an earlier job reaches the owner.
 * 2. A job ends exactly once (end_job): the owner gets one of on_done and
 *    on_job_error, and the job's fields are cleared before it does.
 * 3. The runner is freed when the runtime instance has exited, the /ws
 *    session has closed and the three timers have closed (maybe_free);
 *    on_gone has run by then.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "comfy.h"
#include "json.h"
#include "log.h"
#include "registry.h"
#include "runner.h"
#include "runtime.h"
#include "server.h"
#include "util.h"

#define PROBE_INTERVAL_MS 25
#define PROBE_TIMEOUT_MS 2000
#define HEALTH_INTERVAL_MS 5000
#define HEALTH_FAILURES_MAX 3
#define FREE_TIMEOUT_MS 10000 /* POST /free: ComfyUI only sets a flag, at once */
#define WS_LOST_MS 5000 /* a closed /ws without an exit fails the runner after this (not scaled: engines report exits at their pace) */

static unsigned runner_seq;

/*
 * What the /ws session said of the job's prompt, from its execution_start:
 * when it saw the whole run, the result is known without GET /history.
 */
struct runner_seen {
	int started;                 /* execution_start arrived */
	int success;                 /* execution_success arrived */
	int interrupted;             /* execution_interrupted arrived */
	int incomplete;              /* an executed frame without its output (cached) */
	char *exc_type, *exc_msg;    /* execution_error, when one stopped the run */
	struct json_object *items;   /* the output files executed frames named */
	struct comfy_progress progress; /* from progress and progress_state frames */
};

static void seen_free(struct runner_seen *v)
{
	if (v == NULL)
		return;
	free(v->exc_type);
	free(v->exc_msg);
	json_object_put(v->items);
	free(v);
}

/* Notes a frame of the job's prompt. */
static void seen_note(struct runner_seen *v, const struct comfy_event *ev)
{
	switch (ev->type) {
	case COMFY_EV_STARTED:
		v->started = 1;
		break;
	case COMFY_EV_EXECUTED:
		if (ev->output == NULL)
			v->incomplete = 1;
		comfy_outputs_add(v->items, ev->output);
		break;
	case COMFY_EV_SUCCESS:
		v->success = 1;
		break;
	case COMFY_EV_INTERRUPTED:
		v->interrupted = 1;
		break;
	case COMFY_EV_ERROR:
		/* A blocked node reports itself this way and the run goes on. */
		if (ev->exc_type && strcmp(ev->exc_type, "ExecutionBlocked") == 0)
			break;
		free(v->exc_type);
		free(v->exc_msg);
		v->exc_type = ev->exc_type ? xstrdup(ev->exc_type) : NULL;
		v->exc_msg = xstrdup(ev->exc_msg ? ev->exc_msg : "unknown error");
		break;
	default:
		break;
	}
}

static void runner_fail(struct runner *r, const char *why);

const char *runner_state_name(int state)
{
	static const char *const names[] = {"starting", "ready", "busy", "stopping", "failed",
					    "draining"};

	return state >= 0 && state <= RUNNER_DRAINING ? names[state] : "?";
}

static void set_state(struct runner *r, int to)
{
	int per_job = (r->state == RUNNER_READY && to == RUNNER_BUSY) ||
		      (r->state == RUNNER_BUSY && to == RUNNER_READY);

	if (r->state == to)
		return;
	/* Taking and ending jobs is in the job's own lines; the rest is lifecycle. */
	if (per_job)
		log_debug("runner state runner=%s model=%s from=%s to=%s", r->id, r->model->id,
			  runner_state_name(r->state), runner_state_name(to));
	else
		log_info("runner state runner=%s model=%s from=%s to=%s", r->id, r->model->id,
			 runner_state_name(r->state), runner_state_name(to));
	r->state = to;
}

int runner_idle(const struct runner *r)
{
	return r->state == RUNNER_READY && r->ticket == 0;
}

static uint64_t scaled(const struct runner *r, int64_t ms)
{
	double v = (double)ms * r->env.time_scale;

	return v < 1 ? 1 : (uint64_t)v;
}

/* ---- teardown ---- */

static void env_free(struct runner_env *e)
{
	free((char *)e->logs_dir);
	free((char *)e->runs_dir);
	free((char *)e->out_root);
	free((char *)e->bindir);
	free((char *)e->configdir);
}

static void maybe_free(struct runner *r)
{
	if (r->inst || r->ws || r->timers_open)
		return;
	env_free(&r->env);
	free(r->prompt_id);
	free(r->local_out);
	seen_free(r->seen);
	json_object_put(r->deferred);
	free(r);
}

static void on_timer_closed(uv_handle_t *h)
{
	struct runner *r = h->data;

	r->timers_open--;
	maybe_free(r);
}

/* ---- the job ---- */

/* 1 when tag belongs to the job the runner holds now. */
static int current(const struct runner *r, uint64_t tag, const char *what)
{
	if (r->ticket != 0 && tag == r->gen)
		return 1;
	log_debug("stale answer dropped runner=%s what=%s", r->id, what);
	return 0;
}

static void send_prompt(struct runner *r, struct json_object *workflow);

/* The answer to POST /free: the job waiting for it (if any) sends its prompt now. */
static void on_freed(void *ud, uint64_t tag, int status)
{
	struct runner *r = ud;
	struct json_object *workflow = r->deferred;

	r->freeing = NULL;
	r->deferred = NULL;
	if (status != 200)
		log_warn("free not accepted runner=%s model=%s status=%d", r->id, r->model->id,
			 status);
	if (workflow && (r->state == RUNNER_BUSY || r->state == RUNNER_DRAINING))
		send_prompt(r, workflow);
	else
		json_object_put(workflow); /* stopping: its job goes back to the queue at the exit */
}

/* free_after_job: after a job the server ran, not a refused one, nor when the runner goes. */
static void free_after_job(struct runner *r, int kind)
{
	struct err e = {0};

	if ((!r->model->free_unload_models && !r->model->free_memory) || r->freeing ||
	    r->state != RUNNER_READY || kind == RUNNER_ERR_REJECTED ||
	    kind == RUNNER_ERR_TRANSPORT || kind == RUNNER_ERR_LOST)
		return;
	r->freeing = comfy_free(r->base_url, r->model->free_unload_models, r->model->free_memory,
				FREE_TIMEOUT_MS, 0, on_freed, r, &e);
	if (r->freeing == NULL)
		log_warn("free not sent runner=%s model=%s err=%s", r->id, r->model->id,
			 log_q(e.msg));
}

/*
 * The job is over: clear it (a new generation), go back to READY (or stop
 * when draining), then report. outputs are passed on with RUNNER_ERR_*
 * -1 meaning done.
 */
static void end_job(struct runner *r, int kind, struct json_object *outputs, const char *exc_type,
		    const char *detail)
{
	uint64_t ticket = r->ticket;

	r->ticket = 0;
	r->gen++;
	r->job_id[0] = '\0';
	free(r->prompt_id);
	r->prompt_id = NULL;
	r->reported_running = r->fetching = 0;
	seen_free(r->seen);
	r->seen = NULL;
	/*
	 * A prompt can end before its POST's reply is read. Cancelling the
	 * call would close the kept-alive connection; it is kept until its
	 * reply comes (and is dropped as stale), only the newest such.
	 */
	if (r->submit) {
		comfy_cancel(r->stale);
		r->stale = r->submit;
		r->stale_gen = r->gen - 1; /* the generation it was sent with */
		r->submit = NULL;
	}
	comfy_fetch_cancel(r->fetch);
	r->fetch = NULL;
	json_object_put(r->deferred);
	r->deferred = NULL;
	uv_timer_stop(&r->watchdog);
	r->last_used_ms = util_now_ms();
	if (r->state == RUNNER_BUSY)
		set_state(r, RUNNER_READY);
	else if (r->state == RUNNER_DRAINING)
		runner_stop(r, "drained");
	free_after_job(r, kind);
	if (kind < 0)
		r->cb.on_done(r, ticket, outputs, r->ud);
	else
		r->cb.on_job_error(r, ticket, kind, exc_type, detail, r->ud);
}

static void report_running(struct runner *r)
{
	if (r->reported_running)
		return;
	r->reported_running = 1;
	r->cb.on_running(r, r->ticket, r->ud);
}

static void on_submitted(void *ud, uint64_t tag, int status, const char *pid, const char *detail)
{
	struct runner *r = ud;

	if (r->stale && tag == r->stale_gen) {
		r->stale = NULL; /* the reply of a prompt that already ended */
		log_debug("stale answer dropped runner=%s what=prompt reply", r->id);
		return;
	}
	if (!current(r, tag, "prompt reply"))
		return;
	r->submit = NULL;
	if (status == 200) {
		report_running(r);
		return;
	}
	if (r->fetching)
		return; /* the prompt ran already: its result decides */
	if (status == 0) {
		end_job(r, RUNNER_ERR_TRANSPORT, NULL, NULL, detail);
		runner_fail(r, "model server unreachable");
		return;
	}
	end_job(r, RUNNER_ERR_REJECTED, NULL, NULL, detail);
}

static void on_watchdog(uv_timer_t *t)
{
	struct runner *r = t->data;

	log_warn("runner hung runner=%s model=%s window_ms=%lld", r->id, r->model->id,
		 (long long)r->model->step_timeout_ms);
	runner_fail(r, "model server stopped making progress (hang watchdog)");
}

/* POST /prompt of the job the runner holds; takes workflow. */
static void send_prompt(struct runner *r, struct json_object *workflow)
{
	struct err e = {0};

	r->submit = comfy_submit(r->base_url, r->id, r->prompt_id, workflow, r->gen, on_submitted,
				 r, &e);
	json_object_put(workflow);
	if (r->submit == NULL) {
		end_job(r, RUNNER_ERR_TRANSPORT, NULL, NULL, e.msg);
		runner_fail(r, "model server unreachable");
	}
}

void runner_assign(struct runner *r, const struct runner_job *job)
{
	r->ticket = job->ticket;
	r->gen++;
	snprintf(r->job_id, sizeof r->job_id, "%s", job->job_id);
	snprintf(r->out_stem, sizeof r->out_stem, "%s", job->stem);
	free(r->prompt_id);
	r->prompt_id = xstrdup(job->prompt_id);
	r->reported_running = r->fetching = 0;
	seen_free(r->seen);
	r->seen = xcalloc(1, sizeof *r->seen);
	r->seen->items = json_object_new_array();
	r->seen->progress.nodes = (double)json_object_object_length(job->workflow);
	r->last_used_ms = util_now_ms();
	set_state(r, RUNNER_BUSY);
	if (r->model->step_timeout_ms > 0) {
		uint64_t w = scaled(r, r->model->step_timeout_ms);
		uv_timer_start(&r->watchdog, on_watchdog, w, w);
	}
	if (r->freeing)
		r->deferred = job->workflow; /* sent when POST /free has answered */
	else
		send_prompt(r, job->workflow);
}

void runner_interrupt(struct runner *r)
{
	if (r->ticket != 0 && r->prompt_id)
		comfy_interrupt(r->base_url, r->prompt_id);
}

static const int result_kind[] = {
	[COMFY_ERROR] = RUNNER_ERR_MODEL, [COMFY_INTERRUPTED] = RUNNER_ERR_INTERRUPTED,
	[COMFY_OUTPUT_LOST] = RUNNER_ERR_OUTPUT, [COMFY_MISSING] = RUNNER_ERR_TRANSPORT,
	[COMFY_UNREACHABLE] = RUNNER_ERR_TRANSPORT,
};

static void on_result(void *ud, uint64_t tag, int result, struct json_object *outputs,
		      const char *exc_type, const char *msg)
{
	struct runner *r = ud;

	if (!current(r, tag, "result")) {
		json_object_put(outputs);
		return;
	}
	r->fetch = NULL;
	if (result == COMFY_OK)
		end_job(r, -1, outputs, NULL, NULL);
	else
		end_job(r, result_kind[result], NULL, exc_type, msg);
}

/*
 * The session saw the whole run: its result is known, and only the output
 * files remain to copy (no GET /history). Returns 0 when it decided.
 */
static int result_from_ws(struct runner *r)
{
	struct runner_seen *v = r->seen;
	struct json_object *items;
	struct err e = {0};

	if (v == NULL || !v->started || v->incomplete)
		return -1;
	if (v->interrupted) {
		end_job(r, RUNNER_ERR_INTERRUPTED, NULL, NULL, "interrupted");
		return 0;
	}
	if (v->exc_msg) {
		char *type = v->exc_type ? xstrdup(v->exc_type) : NULL, *msg = xstrdup(v->exc_msg);
		end_job(r, RUNNER_ERR_MODEL, NULL, type, msg);
		free(type);
		free(msg);
		return 0;
	}
	if (!v->success)
		return -1;
	if (json_object_array_length(v->items) == 0) {
		end_job(r, -1, json_object_new_array(), NULL, NULL);
		return 0;
	}
	/* Written where we can reach it: linked, no HTTP, no copy. */
	if (r->local_out && comfy_link_outputs(r->local_out, v->items, r->env.out_root, r->job_id,
					       r->out_stem, &items, &e) == 0) {
		end_job(r, -1, items, NULL, NULL);
		return 0;
	}
	if (r->local_out)
		log_warn("outputs not linked, fetched instead runner=%s err=%s", r->id, log_q(e.msg));
	err_clear(&e);
	items = json_object_get(v->items);
	r->fetch = comfy_fetch_files(r->base_url, items, r->env.out_root, r->job_id, r->out_stem,
				     r->gen, on_result, r, &e);
	if (r->fetch == NULL)
		end_job(r, RUNNER_ERR_OUTPUT, NULL, NULL, e.msg);
	return 0;
}

/* The prompt is over on the model server: read its result. */
static void fetch_result(struct runner *r)
{
	struct err e = {0};

	if (r->fetching)
		return;
	r->fetching = 1;
	report_running(r);
	if (r->ticket == 0)
		return; /* the report ended the job (a cancel decided elsewhere) */
	uv_timer_stop(&r->watchdog);
	if (result_from_ws(r) == 0)
		return;
	r->fetch = comfy_fetch_result(r->base_url, r->prompt_id, r->env.out_root, r->job_id,
				      r->out_stem, r->gen, on_result, r, &e);
	if (r->fetch == NULL)
		end_job(r, RUNNER_ERR_TRANSPORT, NULL, NULL, e.msg);
}

/* ---- /ws ---- */

static void on_ws_event(void *ud, const struct comfy_event *ev)
{
	struct runner *r = ud;
	double frac;

	if (r->ticket == 0 || r->prompt_id == NULL || strcmp(ev->prompt_id, r->prompt_id) != 0)
		return; /* another client's prompt, or one of an earlier job */
	if (r->model->step_timeout_ms > 0 && !r->fetching)
		uv_timer_again(&r->watchdog);
	if (r->seen)
		seen_note(r->seen, ev);
	if (ev->type == COMFY_EV_FINISHED) {
		fetch_result(r);
		return;
	}
	report_running(r);
	frac = r->seen ? comfy_progress_note(&r->seen->progress, ev) : -1;
	if (frac >= 0 && r->ticket != 0)
		r->cb.on_progress(r, r->ticket, frac, 1, r->ud);
}

static void start_health(struct runner *r);

static void on_ws_open(void *ud)
{
	struct runner *r = ud;

	uv_timer_stop(&r->timer);
	set_state(r, RUNNER_READY);
	r->ready_ms = util_now_ms();
	r->last_used_ms = r->ready_ms;
	log_info("runner ready runner=%s model=%s start_ms=%lld", r->id, r->model->id,
		 (long long)(r->ready_ms - r->started_ms));
	start_health(r);
	r->cb.on_ready(r, r->ud);
}

/* The session closed and no exit followed: the server is alive but deaf to us. */
static void on_ws_lost(uv_timer_t *t)
{
	struct runner *r = t->data;

	runner_fail(r, "websocket closed");
}

static void on_ws_close(void *ud, const char *why)
{
	struct runner *r = ud;
	int state = r->state;

	r->ws = NULL;
	if (state == RUNNER_STOPPING || state == RUNNER_FAILED || r->inst == NULL) {
		maybe_free(r);
		return;
	}
	if (state == RUNNER_STARTING || r->model->runtime == REG_RUNTIME_EXTERNAL) {
		runner_fail(r, why[0] ? why : "websocket closed");
		return;
	}
	/*
	 * A process or container that dies closes its socket first: its exit,
	 * with its status, follows at once. Fail only if it does not.
	 */
	uv_timer_start(&r->timer, on_ws_lost, WS_LOST_MS, 0);
}

static void connect_ws(struct runner *r, const struct runtime_inst *inst)
{
	static const struct comfy_ws_cbs cbs = {on_ws_open, on_ws_event, on_ws_close};
	struct err e = {0};

	r->ws = comfy_ws_open(inst->host, inst->port, r->id, &cbs, r, &e);
	if (r->ws == NULL)
		runner_fail(r, e.msg);
}

/* ---- start probe, health probe ---- */

static void probe(struct runner *r);

static void on_probe_timer(uv_timer_t *t)
{
	struct runner *r = t->data;

	if (util_now_ms() - r->started_ms > (int64_t)scaled(r, r->model->start_timeout_ms)) {
		runner_fail(r, "model server did not become healthy within its start timeout");
		return;
	}
	probe(r);
}

static void on_probe(void *ud, uint64_t tag, int health)
{
	struct runner *r = ud;

	r->probe = NULL;
	if (health == COMFY_UP) {
		connect_ws(r, r->inst);
		return;
	}
	/* Probe often at first (a sim starts in ~2 ms), then every 25 ms. */
	r->probes++;
	uv_timer_start(&r->timer, on_probe_timer,
		       r->probes < 5 ? (uint64_t)1 << r->probes : PROBE_INTERVAL_MS, 0);
}

static void probe(struct runner *r)
{
	struct err e = {0};

	if (r->inst == NULL || r->state != RUNNER_STARTING)
		return;
	r->probe = runtime_health(r->inst, PROBE_TIMEOUT_MS, 0, on_probe, r, &e);
	if (r->probe == NULL)
		uv_timer_start(&r->timer, on_probe_timer, PROBE_INTERVAL_MS, 0);
}

static void on_health(void *ud, uint64_t tag, int health)
{
	struct runner *r = ud;

	r->probe = NULL;
	if (health != COMFY_DOWN) {
		r->health_failures = 0;
		return;
	}
	if (++r->health_failures >= HEALTH_FAILURES_MAX)
		runner_fail(r, "health probe failed three times");
}

/* While ready and idle, a GET /health every few seconds catches a dead server. */
static void on_health_timer(uv_timer_t *t)
{
	struct runner *r = t->data;
	struct err e = {0};

	if (r->state != RUNNER_READY || r->probe || r->inst == NULL)
		return;
	r->probe = runtime_health(r->inst, PROBE_TIMEOUT_MS, 0, on_health, r, &e);
}

static void start_health(struct runner *r)
{
	uint64_t ms = scaled(r, HEALTH_INTERVAL_MS);

	uv_timer_start(&r->health, on_health_timer, ms, ms);
}

/* ---- the model server's instance ---- */

static void on_inst_started(struct runtime_inst *inst, void *ud)
{
	struct runner *r = ud;

	runtime__base_url(inst, r->base_url, sizeof r->base_url);
	r->port = inst->port;
	r->pid = inst->pid;
	snprintf(r->container_id, sizeof r->container_id, "%s", inst->container_id);
	if (r->container_id[0]) /* a process was reported at its spawn (runner_start) */
		r->cb.on_spawned(r, r->ud);
	if (r->state == RUNNER_STARTING)
		probe(r);
}

/* Everything but the instance is let go: calls, the session, the timers. */
static void release(struct runner *r)
{
	comfy_cancel(r->probe);
	r->probe = NULL;
	comfy_cancel(r->submit);
	r->submit = NULL;
	comfy_cancel(r->stale);
	r->stale = NULL;
	comfy_fetch_cancel(r->fetch);
	r->fetch = NULL;
	comfy_cancel(r->freeing); /* a job waiting on it has ended (end_job); maybe_free puts any */
	r->freeing = NULL;
	if (r->ws)
		comfy_ws_close(r->ws);
	if (!uv_is_closing((uv_handle_t *)&r->timer)) {
		uv_close((uv_handle_t *)&r->timer, on_timer_closed);
		uv_close((uv_handle_t *)&r->watchdog, on_timer_closed);
		uv_close((uv_handle_t *)&r->health, on_timer_closed);
	}
}

/*
 * The last lines of the model server's output, joined by " | ", into out:
 * the cause an operator needs ("worker.yaml: No such file or directory")
 * is usually there, not in the exit status.
 */
static void last_lines(const char *tail, char *out, size_t n)
{
	const char *end = tail + strlen(tail), *start = end;
	int lines = 0;
	size_t k = 0;

	while (start > tail && lines < 3) {
		start--;
		if (*start == '\n' && start + 1 < end && start[1] != '\n')
			lines++;
	}
	if (start > tail || *start == '\n')
		start++;
	for (const char *p = start; p < end && k + 4 < n; p++) {
		if (*p == '\n' || *p == '\r') {
			if (k > 0 && p + 1 < end && out[k - 1] != ' ') {
				memcpy(out + k, " | ", 3);
				k += 3;
			}
			continue;
		}
		out[k++] = (char)((unsigned char)*p < 0x20 ? ' ' : *p);
	}
	out[k] = '\0';
}

static void on_inst_exit(struct runtime_inst *inst, int64_t status, const char *why, void *ud)
{
	struct runner *r = ud;
	int failed = r->state != RUNNER_STOPPING, during_start = r->ready_ms == 0;
	char tail[400], last[300];

	r->inst = NULL;
	r->pid = 0;
	if (r->state != RUNNER_STOPPING && r->state != RUNNER_FAILED) {
		runtime_log_tail(inst, tail, sizeof tail);
		last_lines(tail, last, sizeof last);
		log_warn("runner exited unasked runner=%s model=%s state=%s reason=%s last_output=%s "
			 "log=%s",
			 r->id, r->model->id, runner_state_name(r->state), log_q(why), log_q(last),
			 log_q(r->log_path));
		if (last[0])
			snprintf(r->fail_reason, sizeof r->fail_reason, "%s; its last output: %s", why,
				 last);
		else
			snprintf(r->fail_reason, sizeof r->fail_reason, "%s", why);
		if (r->ticket)
			end_job(r, RUNNER_ERR_LOST, NULL, NULL, r->fail_reason);
		set_state(r, RUNNER_FAILED);
	} else if (r->state == RUNNER_FAILED && strstr(r->fail_reason, "; its last output: ") == NULL) {
		/* Killed after a failure (a start or step timeout): its last words still help. */
		size_t len = strlen(r->fail_reason);
		runtime_log_tail(inst, tail, sizeof tail);
		last_lines(tail, last, sizeof last);
		if (last[0] && len + 40 < sizeof r->fail_reason)
			snprintf(r->fail_reason + len, sizeof r->fail_reason - len,
				 "; its last output: %s", last);
		log_warn("runner failed runner=%s model=%s reason=%s log=%s", r->id, r->model->id,
			 log_q(r->fail_reason), log_q(r->log_path));
	}
	release(r);
	r->gone = 1;
	r->cb.on_gone(r, r->fail_reason[0] ? r->fail_reason : why, failed, during_start, r->ud);
	maybe_free(r);
}

struct runner *runner_start(const struct reg_model *m, int gpu, const char *url,
			    const struct runner_env *env, const struct runner_cbs *cb, void *ud,
			    struct err *err)
{
	static const struct runtime_cbs rcb = {on_inst_started, on_inst_exit};
	struct runner *r = xcalloc(1, sizeof *r);
	struct runtime_spec spec = {.model = m, .gpu = gpu, .url = url};
	char logpath[4096], rundir[4096], outdir[4200];

	snprintf(r->id, sizeof r->id, "r%u-%d", ++runner_seq, (int)getpid());
	r->model = m;
	r->state = RUNNER_STARTING;
	r->gpu = gpu;
	r->cb = *cb;
	r->ud = ud;
	r->gen = 1;
	r->started_ms = util_now_ms();
	r->env = *env;
	r->env.logs_dir = xstrdup(env->logs_dir);
	r->env.runs_dir = xstrdup(env->runs_dir);
	r->env.out_root = xstrdup(env->out_root);
	r->env.bindir = xstrdup(env->bindir);
	r->env.configdir = xstrdup(env->configdir);
	snprintf(r->url, sizeof r->url, "%s", url ? url : "");
	/* Each model's runners log under its own folder: logs/<model>/<runner>.log. */
	snprintf(logpath, sizeof logpath, "%s/%s", env->logs_dir, m->id);
	util_mkdirs(logpath);
	snprintf(r->log_path, sizeof r->log_path, "%s/%s/%s.log", env->logs_dir, m->id, r->id);
	snprintf(logpath, sizeof logpath, "%s", r->log_path);
	snprintf(rundir, sizeof rundir, "%s/%s", env->runs_dir, r->id);
	snprintf(outdir, sizeof outdir, "%s/output", rundir);
	spec.runner_id = r->id;
	spec.log_path = logpath;
	spec.run_dir = rundir;
	spec.out_dir = outdir;
	r->local_out = m->command_outdir ? xstrdup(outdir) : NULL;
	spec.bindir = env->bindir;
	spec.configdir = env->configdir;
	r->inst = runtime_start(&spec, &rcb, r, err);
	if (r->inst == NULL) {
		log_error("runner not started runner=%s model=%s err=%s", r->id, m->id,
			  log_q(err->msg));
		env_free(&r->env);
		free(r->local_out);
		free(r);
		return NULL;
	}
	uv_timer_init(server.loop, &r->timer);
	uv_timer_init(server.loop, &r->watchdog);
	uv_timer_init(server.loop, &r->health);
	r->timer.data = r->watchdog.data = r->health.data = r;
	/*
	 * A process is reported at once, so that its record (for cleaning up
	 * after a kill -9 of fnrun) is in the commit of this very turn.
	 */
	r->pid = r->inst->pid;
	r->port = r->inst->port;
	if (r->pid > 0)
		r->cb.on_spawned(r, r->ud);
	r->timers_open = 3;
	/* The start timeout runs from now, also while a container is created. */
	uv_timer_start(&r->timer, on_probe_timer, scaled(r, r->model->start_timeout_ms) + 1, 0);
	return r;
}

/* Kills the model server after a failure; its job is reported lost now. */
static void runner_fail(struct runner *r, const char *why)
{
	if (r->state == RUNNER_FAILED || r->state == RUNNER_STOPPING || r->inst == NULL)
		return;
	log_warn("runner failed runner=%s model=%s state=%s reason=%s", r->id, r->model->id,
		 runner_state_name(r->state), log_q(why));
	snprintf(r->fail_reason, sizeof r->fail_reason, "%s", why);
	if (r->ticket)
		end_job(r, RUNNER_ERR_LOST, NULL, NULL, why);
	set_state(r, RUNNER_FAILED);
	uv_timer_stop(&r->watchdog);
	uv_timer_stop(&r->health);
	runtime_stop(r->inst, 0);
}

void runner_drain(struct runner *r, const char *why)
{
	if (r->state == RUNNER_STARTING || runner_idle(r)) {
		runner_stop(r, why);
		return;
	}
	if (r->state == RUNNER_BUSY || r->state == RUNNER_READY) {
		log_info("runner draining runner=%s model=%s reason=%s", r->id, r->model->id, why);
		set_state(r, RUNNER_DRAINING);
	}
}

void runner_stop(struct runner *r, const char *why)
{
	if (r->state == RUNNER_STOPPING || r->state == RUNNER_FAILED || r->inst == NULL)
		return;
	log_info("runner stopping runner=%s model=%s reason=%s", r->id, r->model->id, why);
	set_state(r, RUNNER_STOPPING);
	uv_timer_stop(&r->watchdog);
	uv_timer_stop(&r->health);
	uv_timer_stop(&r->timer);
	runtime_stop(r->inst, (uint64_t)r->env.stop_grace_ms);
}
