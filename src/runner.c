/*
 * runner.c - model server instances: the process runtime (spawn with a free
 * port in its own process group, log captured to a file, SIGTERM then
 * SIGKILL), the external runtime (a URL, never started or stopped), the
 * health probe, and the ComfyUI client for the job a runner holds: POST
 * /prompt with the runner's client id, follow /ws, read /history when the
 * final `executing {node: null}` arrives, copy outputs through /view.
 *
 * Handles: proc (process runtime), timer, watchdog, and the WebSocket. A
 * runner is freed when all are closed (pending counts them).
 */
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "buf.h"
#include "httpc.h"
#include "job.h"
#include "json.h"
#include "log.h"
#include "registry.h"
#include "runner.h"
#include "runtime_docker.h"
#include "scheduler.h"
#include "server.h"
#include "store.h"
#include "util.h"
#include "wsc.h"

#define PROBE_INTERVAL_MS 25
#define PROBE_TIMEOUT_MS 2000

extern char **environ;

static unsigned runner_seq;


static void runner_fail(struct runner *r, const char *why);
static void start_health(struct runner *r);

const char *runner_state_name(int state)
{
	static const char *const names[] = {"starting", "ready", "busy", "stopping", "failed",
					    "draining"};

	return state >= 0 && state <= RUNNER_DRAINING ? names[state] : "?";
}

void runner_set_state(struct runner *r, int to)
{
	if (r->state == to)
		return;
	log_info("runner state runner=%s model=%s from=%s to=%s", r->id, r->model_id,
		 runner_state_name(r->state), runner_state_name(to));
	r->state = to;
}

static int free_port(void)
{
	struct sockaddr_in sa = {.sin_family = AF_INET};
	socklen_t sl = sizeof sa;
	int fd = socket(AF_INET, SOCK_STREAM, 0), port = -1;

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0 &&
	    getsockname(fd, (struct sockaddr *)&sa, &sl) == 0)
		port = ntohs(sa.sin_port);
	if (fd >= 0)
		close(fd);
	return port;
}

/* ---- teardown ---- */

static void maybe_free(struct runner *r)
{
	if (r->proc_open || r->timers_open || r->ws || r->ctr)
		return;
	free(r->model_id);
	free(r->fail_reason);
	free(r);
}

static void on_timer_closed(uv_handle_t *h)
{
	struct runner *r = h->data;

	r->timers_open--;
	maybe_free(r);
}

/* Reports the runner gone and releases its handles; frees it when all closed. */
static void runner_destroy(struct runner *r, const char *why)
{
	sched_on_runner_gone(r, why, r->ready_ms == 0);
	if (r->call) {
		httpc_cancel(r->call);
		r->call = NULL;
	}
	runner_fetch_cancel(r->fetch);
	r->fetch = NULL;
	if (!r->external && r->pid == 0) {
		struct err e = {0};
		store_runner_delete(server.store, r->id, &e);
	}
	uv_close((uv_handle_t *)&r->timer, on_timer_closed);
	uv_close((uv_handle_t *)&r->watchdog, on_timer_closed);
	uv_close((uv_handle_t *)&r->health, on_timer_closed);
	if (r->ws)
		wsc_close(r->ws);
	maybe_free(r);
}

/* ---- process runtime ---- */

static void on_proc_closed(uv_handle_t *h)
{
	struct runner *r = h->data;

	r->proc_open = 0;
	maybe_free(r);
}

/* The model server is gone (its process or its container exited). */
static void server_gone(struct runner *r, const char *why)
{
	int state = r->state;

	if (state == RUNNER_FAILED) {
		maybe_free(r);
		return; /* runner_fail already reported it */
	}
	if (state == RUNNER_STOPPING) {
		runner_destroy(r, "stopped");
		return;
	}
	if (state == RUNNER_BUSY || state == RUNNER_DRAINING)
		server.runners_crashed++;
	runner_set_state(r, RUNNER_FAILED);
	runner_destroy(r, why);
}

static void on_proc_exit(uv_process_t *p, int64_t status, int sig)
{
	struct runner *r = p->data;
	char why[160];
	struct err e = {0};

	log_info("runner exited runner=%s model=%s pid=%d status=%lld signal=%d state=%s",
		 r->id, r->model_id, r->pid, (long long)status, sig, runner_state_name(r->state));
	r->pid = 0;
	store_runner_delete(server.store, r->id, &e);
	uv_close((uv_handle_t *)p, on_proc_closed);
	snprintf(why, sizeof why, "model server exited (status %lld, signal %d)",
		 (long long)status, sig);
	server_gone(r, why);
}

/* Replaces {port}, {bindir} and {configdir} in one argument. Caller frees. */
static char *subst(const char *arg, int port)
{
	char confdir[4096];
	const char *slash;

	snprintf(confdir, sizeof confdir, "%s", server.cfg.config_path ? server.cfg.config_path : ".");
	slash = strrchr(confdir, '/');
	if (slash)
		confdir[slash - confdir] = '\0';
	else
		snprintf(confdir, sizeof confdir, ".");
	return registry_expand(arg, port, server.cfg.bindir, confdir);
}

/*
 * The environment of the child: ours, CUDA_VISIBLE_DEVICES pinning it to
 * its GPU, then the model's env entries (which may override it).
 */
static char **child_env(const struct reg_model *m, const char *cuda)
{
	size_t n = 0, k = 0;
	char **env;

	while (environ[n])
		n++;
	env = xcalloc(n + m->nenv + 2, sizeof *env);
	for (size_t i = 0; i < n; i++)
		if (strncmp(environ[i], "CUDA_VISIBLE_DEVICES=", 21) != 0)
			env[k++] = environ[i];
	env[k++] = (char *)cuda;
	for (size_t i = 0; i < m->nenv; i++)
		env[k++] = m->env[i];
	return env;
}

static int spawn(struct runner *r)
{
	const struct reg_model *m = r->model;
	uv_process_options_t o = {0};
	uv_stdio_container_t stdio[3];
	char **argv = xcalloc(m->ncommand + 1, sizeof *argv);
	char logpath[4096], cwd[4096], cuda[48];
	char **env;
	int fd, rc;

	snprintf(cuda, sizeof cuda, "CUDA_VISIBLE_DEVICES=%d", r->gpu);
	env = child_env(m, cuda);
	for (size_t i = 0; i < m->ncommand; i++)
		argv[i] = subst(m->command[i], r->port);
	snprintf(logpath, sizeof logpath, "%s/%s.log", server_path("logs"), r->id);
	snprintf(cwd, sizeof cwd, "%s/%s", server_path("runs"), r->id);
	util_mkdirs(cwd);
	fd = open(logpath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	stdio[0].flags = UV_IGNORE;
	stdio[1].flags = fd >= 0 ? UV_INHERIT_FD : UV_IGNORE;
	stdio[1].data.fd = fd;
	stdio[2] = stdio[1];
	o.file = argv[0];
	o.args = argv;
	o.env = env;
	o.cwd = cwd;
	o.flags = UV_PROCESS_DETACHED;
	o.stdio_count = 3;
	o.stdio = stdio;
	o.exit_cb = on_proc_exit;
	r->proc.data = r;
	rc = uv_spawn(server.loop, &r->proc, &o);
	if (fd >= 0)
		close(fd);
	if (rc == 0) {
		r->pid = r->proc.pid;
		r->proc_open = 1;
		log_info("runner spawned runner=%s model=%s pid=%d port=%d cmd=%s log=%s", r->id,
			 r->model_id, r->pid, r->port, log_q(argv[0]), log_q(logpath));
	} else {
		log_error("runner spawn failed runner=%s model=%s cmd=%s err=%s", r->id, r->model_id,
			  log_q(argv[0]), uv_strerror(rc));
		uv_close((uv_handle_t *)&r->proc, NULL);
	}
	for (size_t i = 0; i < m->ncommand; i++)
		free(argv[i]);
	free(argv);
	free(env);
	return rc == 0 ? 0 : -1;
}

void runner_kill_orphan(int pid)
{
	char path[64], cmd[256] = "";
	FILE *f;

	/* Only a process group we started: its leader runs our command line. */
	snprintf(path, sizeof path, "/proc/%d/cmdline", pid);
	f = fopen(path, "r");
	if (f == NULL)
		return;
	if (fread(cmd, 1, sizeof cmd - 1, f) == 0)
		cmd[0] = '\0';
	fclose(f);
	log_warn("stopping orphan model server pid=%d cmd=%s", pid, log_q(cmd));
	kill(-pid, SIGKILL);
	kill(pid, SIGKILL);
}

/* ---- WebSocket ---- */

static void on_ws_open(struct wsc *w, void *ud)
{
	struct runner *r = ud;

	uv_timer_stop(&r->timer);
	runner_set_state(r, RUNNER_READY);
	start_health(r);
	r->ready_ms = util_now_ms();
	r->last_used_ms = r->ready_ms;
	log_info("runner ready runner=%s model=%s start_ms=%lld", r->id, r->model_id,
		 (long long)(r->ready_ms - r->started_ms));
	sched_on_ready(r);
}

static void fetch_history(struct runner *r);

static const char *prompt_of(struct json_object *data)
{
	return json_get_str(data, "prompt_id");
}

static int is_mine(struct runner *r, struct json_object *data)
{
	const char *pid = prompt_of(data);

	return r->job && (r->state == RUNNER_BUSY || r->state == RUNNER_DRAINING) && pid &&
	       json_object_is_type(json_get(data, "prompt_id"), json_type_string) &&
	       r->job && r->job->job->remote_prompt_id &&
	       strcmp(pid, r->job->job->remote_prompt_id) == 0;
}

static void on_ws_text(struct wsc *w, const char *msg, size_t len, void *ud)
{
	struct runner *r = ud;
	struct json_object *o = NULL, *data;
	struct err e = {0};
	const char *type;

	if (json_parse(msg, len, 64, &o, &e) < 0)
		return;
	type = json_get_str(o, "type");
	data = json_get_obj(o, "data");
	if (type && data && is_mine(r, data)) {
		if (r->model->step_timeout_ms > 0)
			uv_timer_again(&r->watchdog);
		if (strcmp(type, "progress") == 0)
			sched_on_progress(r, r->job, json_object_get_double(json_get(data, "value")),
					  json_object_get_double(json_get(data, "max")));
		else if (strcmp(type, "executing") == 0 && json_get(data, "node") == NULL)
			fetch_history(r);
	}
	json_object_put(o);
}

static void on_ws_close(struct wsc *w, const struct err *why, void *ud)
{
	struct runner *r = ud;
	int state = r->state;

	r->ws = NULL;
	if (state == RUNNER_READY || state == RUNNER_BUSY || state == RUNNER_DRAINING) {
		/* A process or container exit follows; an external one is gone now. */
		if (r->external || (r->pid == 0 && r->ctr == NULL))
			runner_fail(r, why->code ? why->msg : "websocket closed");
		return;
	}
	maybe_free(r);
}

static const struct wsc_callbacks ws_cbs = {
	.on_open = on_ws_open,
	.on_text = on_ws_text,
	.on_close = on_ws_close,
};

static void connect_ws(struct runner *r)
{
	char path[128];
	struct err e = {0};

	snprintf(path, sizeof path, "/ws?clientId=%s", r->client_id);
	r->ws = wsc_connect(server.loop, r->host, r->port, path, &ws_cbs, r, 5000, &e);
	if (r->ws == NULL)
		runner_fail(r, e.msg);
}

/* ---- health probe and start timeout ---- */

static void probe(struct runner *r);

static void on_probe_timer(uv_timer_t *t)
{
	struct runner *r = t->data;

	if (util_now_ms() - r->started_ms > r->model->start_timeout_ms * server.cfg.time_scale) {
		runner_fail(r, "model server did not become healthy within its start timeout");
		return;
	}
	probe(r);
}

static void on_probe(const struct httpc_resp *resp, void *ud)
{
	struct runner *r = ud;
	int up = resp->status == 200 && !strstr(resp->body, "\"starting\"");

	r->call = NULL;
	if (up || resp->status == 404) {
		connect_ws(r);
		return;
	}
	/* Probe often at first (a sim starts in ~2 ms), then every 25 ms. */
	r->probes++;
	uv_timer_start(&r->timer, on_probe_timer,
		       r->probes < 5 ? (uint64_t)1 << r->probes : PROBE_INTERVAL_MS, 0);
}

static void probe(struct runner *r)
{
	char url[192];
	struct httpc_opts o = {.url = url, .timeout_ms = PROBE_TIMEOUT_MS, .connect_timeout_ms = 500};
	struct err e = {0};

	snprintf(url, sizeof url, "%s/health", r->base_url);
	r->call = httpc_request(server.httpc, &o, on_probe, r, &e);
	if (r->call == NULL)
		uv_timer_start(&r->timer, on_probe_timer, PROBE_INTERVAL_MS, 0);
}

#define HEALTH_INTERVAL_MS 5000
#define HEALTH_FAILURES_MAX 3

static void on_health(const struct httpc_resp *resp, void *ud)
{
	struct runner *r = ud;

	r->call = NULL;
	if (resp->status == 200 || resp->status == 404) {
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
	char url[192];
	struct httpc_opts o = {.url = url, .timeout_ms = PROBE_TIMEOUT_MS, .connect_timeout_ms = 1000};
	struct err e = {0};

	if (r->state != RUNNER_READY || r->call)
		return;
	snprintf(url, sizeof url, "%s/health", r->base_url);
	r->call = httpc_request(server.httpc, &o, on_health, r, &e);
}

static void start_health(struct runner *r)
{
	uint64_t ms = (uint64_t)(HEALTH_INTERVAL_MS * server.cfg.time_scale);

	uv_timer_start(&r->health, on_health_timer, ms ? ms : 1, ms ? ms : 1);
}

void runner_drain(struct runner *r, const char *why)
{
	if (r->state == RUNNER_READY && r->job == NULL) {
		runner_stop(r, why);
		return;
	}
	if (r->state == RUNNER_BUSY || r->state == RUNNER_READY) {
		log_info("runner draining runner=%s model=%s reason=%s", r->id, r->model_id, why);
		runner_set_state(r, RUNNER_DRAINING);
	}
}

static void on_watchdog(uv_timer_t *t)
{
	struct runner *r = t->data;

	log_warn("runner hung runner=%s model=%s window_ms=%lld", r->id, r->model_id,
		 (long long)r->model->step_timeout_ms);
	runner_fail(r, "model server stopped making progress (hang watchdog)");
}

static int parse_url(struct runner *r, const char *url)
{
	if (sscanf(url, "http://%63[^:/]:%d", r->host, &r->port) != 2)
		return -1;
	snprintf(r->base_url, sizeof r->base_url, "http://%s:%d", r->host, r->port);
	return 0;
}

/* ---- docker runtime (runtime_docker.c) ---- */

static void on_ctr_started(void *ud, int host_port)
{
	struct runner *r = ud;
	struct err e = {0};

	r->port = host_port;
	snprintf(r->base_url, sizeof r->base_url, "http://127.0.0.1:%d", r->port);
	store_runner_put(server.store, r->id, r->model_id, 0, r->port, docker_id(r->ctr),
			 r->started_ms, &e);
	probe(r);
}

static void on_ctr_exit(void *ud, int64_t status, const char *why)
{
	struct runner *r = ud;

	log_info("runner exited runner=%s model=%s container_status=%lld state=%s", r->id,
		 r->model_id, (long long)status, runner_state_name(r->state));
	r->ctr = NULL;
	server_gone(r, why);
}

static void on_ctr_failed(void *ud, const char *why)
{
	on_ctr_exit(ud, -1, why);
}

static int start_container(struct runner *r)
{
	static const struct docker_cbs cbs = {on_ctr_started, on_ctr_exit, on_ctr_failed};
	char logpath[4096];
	struct err e = {0};

	snprintf(r->host, sizeof r->host, "127.0.0.1");
	snprintf(logpath, sizeof logpath, "%s/%s.log", server_path("logs"), r->id);
	r->ctr = docker_start(r->model, r->id, r->gpu, logpath, &cbs, r, &e);
	if (r->ctr == NULL)
		log_error("container not started runner=%s model=%s err=%s", r->id, r->model_id,
			  log_q(e.msg));
	return r->ctr ? 0 : -1;
}

struct runner *runner_start(const struct reg_model *m, int gpu)
{
	struct runner *r = xcalloc(1, sizeof *r);
	struct err e = {0};

	snprintf(r->id, sizeof r->id, "r%u-%d", ++runner_seq, (int)getpid());
	util_uuid4_hex(r->client_id);
	r->model_id = xstrdup(m->id);
	r->model = m;
	r->state = RUNNER_STARTING;
	r->gpu = gpu;
	r->started_ms = util_now_ms();
	if (m->runtime == REG_RUNTIME_EXTERNAL) {
		r->external = 1;
		if (parse_url(r, m->url) < 0)
			goto fail;
	} else if (m->runtime == REG_RUNTIME_PROCESS) {
		snprintf(r->host, sizeof r->host, "127.0.0.1");
		r->port = free_port();
		snprintf(r->base_url, sizeof r->base_url, "http://127.0.0.1:%d", r->port);
		if (r->port < 0 || spawn(r) < 0)
			goto fail;
		store_runner_put(server.store, r->id, m->id, r->pid, r->port, NULL, r->started_ms, &e);
	} else if (start_container(r) < 0) {
		goto fail;
	}
	server.runners_started++;
	uv_timer_init(server.loop, &r->timer);
	uv_timer_init(server.loop, &r->watchdog);
	uv_timer_init(server.loop, &r->health);
	r->timer.data = r;
	r->watchdog.data = r;
	r->health.data = r;
	r->timers_open = 3;
	if (r->ctr == NULL)
		probe(r); /* a container's probe starts once it runs (on_ctr_started) */
	return r;
fail:
	free(r->model_id);
	free(r);
	return NULL;
}

/* Kills the runner after a failure; its exit (or at once, external) frees it. */
static void runner_fail(struct runner *r, const char *why)
{
	int state = r->state;

	if (state == RUNNER_FAILED || state == RUNNER_STOPPING)
		return;
	log_warn("runner failed runner=%s model=%s state=%s reason=%s", r->id, r->model_id,
		 runner_state_name(state), log_q(why));
	runner_set_state(r, RUNNER_FAILED);
	if (r->pid > 0) {
		kill(-r->pid, SIGKILL);
		kill(r->pid, SIGKILL);
	}
	if (r->ctr)
		docker_stop(r->ctr, 0);
	runner_destroy(r, why);
}

static void on_grace(uv_timer_t *t)
{
	struct runner *r = t->data;

	if (r->pid > 0) {
		log_warn("runner ignored SIGTERM, killing runner=%s pid=%d", r->id, r->pid);
		kill(-r->pid, SIGKILL);
		kill(r->pid, SIGKILL);
	}
}

void runner_stop(struct runner *r, const char *why)
{
	if (r->state == RUNNER_STOPPING || r->state == RUNNER_FAILED)
		return;
	log_info("runner stopping runner=%s model=%s reason=%s", r->id, r->model_id, why);
	runner_set_state(r, RUNNER_STOPPING);
	uv_timer_stop(&r->watchdog);
	uv_timer_stop(&r->health);
	if (r->ctr) {
		docker_stop(r->ctr, (uint64_t)server.cfg.stop_grace_ms);
		return;
	}
	if (r->external || r->pid == 0) {
		runner_destroy(r, why);
		return;
	}
	kill(-r->pid, SIGTERM);
	uv_timer_start(&r->timer, on_grace, (uint64_t)server.cfg.stop_grace_ms, 0);
}

/* ---- the job on this runner ---- */

static void on_submitted(const struct httpc_resp *resp, void *ud)
{
	struct runner *r = ud;
	struct sjob *sj = r->job;
	struct json_object *o = NULL;
	struct err e = {0};

	r->call = NULL;
	if (resp->status == 0) {
		sched_on_job_error(r, sj, JOBERR_TRANSPORT, NULL, resp->err.msg);
		return;
	}
	if (resp->status != 200 || json_parse(resp->body, resp->len, 64, &o, &e) < 0 ||
	    json_get_str(o, "prompt_id") == NULL) {
		sched_on_job_error(r, sj, JOBERR_REJECTED, NULL, resp->body);
		json_object_put(o);
		return;
	}
	sched_on_submitted(r, sj, json_get_str(o, "prompt_id"));
	json_object_put(o);
}

void runner_assign(struct runner *r, struct sjob *sj)
{
	struct json_object *wf = NULL, *body = json_object_new_object();
	struct httpc_opts o = {.method = "POST", .content_type = "application/json", .timeout_ms = 30000};
	struct err e = {0};
	char url[192], *text;

	r->job = sj;
	runner_set_state(r, RUNNER_BUSY);
	r->last_used_ms = util_now_ms();
	uv_timer_stop(&r->timer);
	if (registry_bind(r->model, sched_job_params(sj), &wf, &e) < 0) {
		json_object_put(body);
		sched_on_job_error(r, sj, JOBERR_REJECTED, NULL, e.msg);
		return;
	}
	json_put(body, "prompt", wf);
	json_put(body, "client_id", json_str(r->client_id));
	json_put(body, "prompt_id", json_str(sj->job->remote_prompt_id));
	text = json_dumps(body);
	json_object_put(body);
	snprintf(url, sizeof url, "%s/prompt", r->base_url);
	o.url = url;
	o.body = text;
	o.body_len = strlen(text);
	if (r->model->step_timeout_ms > 0) {
		uint64_t w = (uint64_t)(r->model->step_timeout_ms * server.cfg.time_scale);
		uv_timer_start(&r->watchdog, on_watchdog, w, w);
	}
	r->call = httpc_request(server.httpc, &o, on_submitted, r, &e);
	free(text);
	if (r->call == NULL)
		sched_on_job_error(r, sj, JOBERR_TRANSPORT, NULL, e.msg);
}

static void on_interrupted(const struct httpc_resp *resp, void *ud)
{
	struct runner *r = ud;

	r->call = NULL;
	if (resp->status != 200)
		log_warn("interrupt not accepted runner=%s status=%d", r->id, resp->status);
}

void runner_interrupt(struct runner *r)
{
	char url[192], body[160];
	struct httpc_opts o = {.method = "POST", .content_type = "application/json", .timeout_ms = 5000};
	struct err e = {0};

	if (r->job == NULL || r->job->job->remote_prompt_id == NULL)
		return;
	snprintf(url, sizeof url, "%s/interrupt", r->base_url);
	snprintf(body, sizeof body, "{\"prompt_id\": \"%s\"}", r->job->job->remote_prompt_id);
	o.url = url;
	o.body = body;
	o.body_len = strlen(body);
	if (r->call == NULL)
		r->call = httpc_request(server.httpc, &o, on_interrupted, r, &e);
}

static const char *kind_of(const char *key, const char *filename)
{
	if (strcmp(key, "audio") == 0)
		return "audio";
	if (strcmp(key, "video") == 0 || strcmp(key, "gifs") == 0 ||
	    util_ends_with(filename, ".mp4") || util_ends_with(filename, ".webm"))
		return "video";
	return "image";
}

/* Output files in a history entry, type "output" only (not previews). */
static struct json_object *collect_outputs(struct json_object *outputs)
{
	struct json_object *items = json_object_new_array();

	json_object_object_foreach(outputs, node, ui) {
		(void)node;
		json_object_object_foreach(ui, key, list) {
			for (size_t i = 0; json_object_is_type(list, json_type_array) &&
					   i < json_object_array_length(list); i++) {
				struct json_object *f = json_object_array_get_idx(list, i);
				const char *fn = json_get_str(f, "filename");
				const char *type = json_get_str(f, "type");
				struct json_object *it;
				if (fn == NULL || strchr(fn, '/') || (type && strcmp(type, "output") != 0))
					continue;
				it = json_object_new_object();
				json_put(it, "filename", json_str(fn));
				json_put(it, "subfolder", json_str(json_get_str(f, "subfolder") ? json_get_str(f, "subfolder") : ""));
				json_put(it, "kind", json_str(kind_of(key, fn)));
				json_object_array_add(items, it);
			}
		}
	}
	return items;
}

struct fetch {
	char base_url[128];
	char *pid;                   /* remote prompt id */
	char job_id[64];
	runner_result_fn cb;
	void *ud;
	struct httpc_call *call;
	struct json_object *items;   /* [{filename, subfolder, kind}] */
	size_t next;
	struct json_object *outputs; /* copied: [{path, filename, kind}] */
};

static void fetch_end(struct fetch *f, int result, const char *exc_type, const char *msg)
{
	struct json_object *outs = result == RESULT_OK ? json_object_get(f->outputs) : NULL;

	f->call = NULL;
	f->cb(f->ud, result, outs, exc_type, msg);
	json_object_put(f->items);
	json_object_put(f->outputs);
	free(f->pid);
	free(f);
}

static void download_next(struct fetch *f);

static void on_downloaded(const struct httpc_resp *resp, void *ud)
{
	struct fetch *f = ud;

	if (resp->status != 200) {
		fetch_end(f, RESULT_OUTPUT_LOST, NULL, resp->status ? "GET /view failed" : resp->err.msg);
		return;
	}
	f->next++;
	download_next(f);
}

static void download_next(struct fetch *f)
{
	struct json_object *it = json_object_array_get_idx(f->items, f->next), *out;
	char url[1024], rel[512], path[4096];
	struct httpc_opts o = {.timeout_ms = 120000};
	struct err e = {0};
	char *fn, *sub;

	if (it == NULL) {
		fetch_end(f, RESULT_OK, NULL, NULL);
		return;
	}
	fn = curl_easy_escape(NULL, json_get_str(it, "filename"), 0);
	sub = curl_easy_escape(NULL, json_get_str(it, "subfolder"), 0);
	snprintf(url, sizeof url, "%s/view?filename=%s&subfolder=%s&type=output", f->base_url, fn, sub);
	curl_free(fn);
	curl_free(sub);
	snprintf(rel, sizeof rel, "%s/%zu-%s", f->job_id, f->next, json_get_str(it, "filename"));
	snprintf(path, sizeof path, "%s/%s", server_path("outputs"), f->job_id);
	util_mkdirs(path);
	snprintf(path, sizeof path, "%s/%s", server_path("outputs"), rel);
	out = json_object_new_object();
	json_put(out, "path", json_str(rel));
	json_put(out, "filename", json_str(json_get_str(it, "filename")));
	json_put(out, "kind", json_str(json_get_str(it, "kind")));
	json_object_array_add(f->outputs, out);
	o.url = url;
	o.out_path = path;
	f->call = httpc_request(server.httpc, &o, on_downloaded, f, &e);
	if (f->call == NULL)
		fetch_end(f, RESULT_OUTPUT_LOST, NULL, e.msg);
}

/* The exception of an execution_error in the history's status messages. */
static void history_error(struct json_object *status, const char **type, const char **msg,
			  int *interrupted)
{
	struct json_object *msgs = json_get_arr(status, "messages");

	for (size_t i = 0; msgs && i < json_object_array_length(msgs); i++) {
		struct json_object *m = json_object_array_get_idx(msgs, i);
		const char *t = json_object_get_string(json_object_array_get_idx(m, 0));
		struct json_object *d = json_object_array_get_idx(m, 1);
		if (t && strcmp(t, "execution_error") == 0) {
			*type = json_get_str(d, "exception_type");
			*msg = json_get_str(d, "exception_message");
		} else if (t && strcmp(t, "execution_interrupted") == 0) {
			*interrupted = 1;
		}
	}
}

static void on_history(const struct httpc_resp *resp, void *ud)
{
	struct fetch *f = ud;
	struct json_object *o = NULL, *entry, *status;
	struct err e = {0};
	const char *type = NULL, *msg = NULL, *st;
	int interrupted = 0;

	f->call = NULL;
	if (resp->status != 200 || json_parse(resp->body, resp->len, 128, &o, &e) < 0) {
		fetch_end(f, RESULT_UNREACHABLE, NULL, resp->status ? "cannot read /history" : resp->err.msg);
		json_object_put(o);
		return;
	}
	entry = json_get_obj(o, f->pid);
	status = json_get_obj(entry, "status");
	st = json_get_str(status, "status_str");
	if (entry == NULL) {
		fetch_end(f, RESULT_MISSING, NULL, "no such prompt in the model server's history");
	} else if (st && strcmp(st, "success") == 0) {
		f->items = collect_outputs(json_get_obj(entry, "outputs"));
		f->outputs = json_object_new_array();
		download_next(f);
	} else {
		history_error(status, &type, &msg, &interrupted);
		if (interrupted)
			fetch_end(f, RESULT_INTERRUPTED, NULL, "interrupted");
		else
			fetch_end(f, RESULT_ERROR, type, msg ? msg : "unknown error");
	}
	json_object_put(o);
}

struct fetch *runner_fetch_result(const char *base_url, const char *remote_pid, const char *job_id,
				  runner_result_fn cb, void *ud)
{
	struct fetch *f = xcalloc(1, sizeof *f);
	struct httpc_opts o = {.timeout_ms = 10000, .max_response = (size_t)64 << 20,
			       .connect_timeout_ms = 1000};
	struct err e = {0};
	char url[512];
	char *pid = curl_easy_escape(NULL, remote_pid, 0);

	snprintf(f->base_url, sizeof f->base_url, "%s", base_url);
	snprintf(f->job_id, sizeof f->job_id, "%s", job_id);
	f->pid = xstrdup(remote_pid);
	f->cb = cb;
	f->ud = ud;
	snprintf(url, sizeof url, "%s/history/%s", base_url, pid);
	curl_free(pid);
	o.url = url;
	f->call = httpc_request(server.httpc, &o, on_history, f, &e);
	if (f->call == NULL) {
		free(f->pid);
		free(f);
		return NULL;
	}
	return f;
}

void runner_fetch_cancel(struct fetch *f)
{
	if (f == NULL)
		return;
	if (f->call)
		httpc_cancel(f->call);
	json_object_put(f->items);
	json_object_put(f->outputs);
	free(f->pid);
	free(f);
}

static void on_result(void *ud, int result, struct json_object *outputs, const char *exc_type,
		      const char *msg)
{
	struct runner *r = ud;
	static const int joberr[] = {
		[RESULT_ERROR] = JOBERR_MODEL, [RESULT_INTERRUPTED] = JOBERR_INTERRUPTED,
		[RESULT_OUTPUT_LOST] = JOBERR_OUTPUT, [RESULT_MISSING] = JOBERR_TRANSPORT,
		[RESULT_UNREACHABLE] = JOBERR_TRANSPORT,
	};

	r->fetch = NULL;
	if (result == RESULT_OK)
		sched_on_done(r, r->job, outputs);
	else
		sched_on_job_error(r, r->job, joberr[result], exc_type, msg);
}

static void fetch_history(struct runner *r)
{
	uv_timer_stop(&r->watchdog);
	r->fetch = runner_fetch_result(r->base_url, r->job->job->remote_prompt_id, r->job->job->id,
				       on_result, r);
	if (r->fetch == NULL)
		sched_on_job_error(r, r->job, JOBERR_TRANSPORT, NULL, "cannot reach the model server");
}
