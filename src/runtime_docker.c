/*
 * runtime_docker.c - the docker runtime: one container per runner through
 * the Docker Engine API (dockerd or podman) on a unix socket, with libcurl
 * on the loop (httpc). See runtime_docker.h for the lifecycle; the create
 * request's body is built in runtime_docker_create.c.
 *
 * Invariants:
 * 1. A container (struct docker_ctr) has at most one step call (create,
 *    start, inspect, stop, remove) in flight, plus the wait and logs calls
 *    once it has started. Each call's callback clears its pointer first.
 * 2. The final callback (on_exit or on_failed) runs from the `tick` timer,
 *    never inside docker_start/docker_stop or an engine call's callback
 *    chain that the caller started; `reported` makes it run once.
 * 3. A container is freed in tick's close callback, after its calls are
 *    cancelled; dk_users counts containers and cleanups holding dk_http,
 *    which is freed when the count reaches zero (so a loop with no
 *    containers has no handles of ours).
 */
#include <assert.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "httpc.h"
#include "json.h"
#include "log.h"
#include "registry.h"
#include "runtime.h"
#include "runtime_docker.h"
#include "server.h"
#include "util.h"

#define API_TIMEOUT_MS 60000                     /* create, start, inspect, remove */
#define STREAM_TIMEOUT_MS (100LL * 24 * 3600 * 1000) /* wait and logs: the container's life */
#define TAIL_MAX 4096                            /* bytes of recent output kept */
#define TAIL_SHOWN 360                           /* bytes of those, at most */
#define LOGS_DRAIN_MS 2000                       /* after removal, for the last output */
#define DEFAULT_SOCKET "/var/run/docker.sock"

enum ctr_state {
	CTR_CREATING,   /* POST /containers/create */
	CTR_STARTING,   /* POST /start */
	CTR_INSPECTING, /* GET /json: the host port */
	CTR_RUNNING,    /* on_started done; wait and logs open */
	CTR_STOPPING,   /* POST /stop */
	CTR_STOPPED,    /* stopped; the wait call brings its exit code, then remove */
	CTR_REMOVING,   /* DELETE */
	CTR_DONE,       /* removed (or never created); the final callback is due */
};

struct docker_ctr {
	struct docker_cbs cb;
	void *ud;
	char name[96];               /* fnrun-<runner>-<instance> */
	char id[80];                 /* engine id; "" until created */
	char runner[32];             /* runner id, for log lines */
	int state;                   /* enum ctr_state */
	int started;                 /* on_started was called */
	int stop_asked;              /* docker_stop was called */
	int failed;                  /* never started: on_failed is the final callback */
	int reported;                /* the final callback ran */
	int show_tail;               /* log the last output lines once it has all come */
	int draining;                /* removed; waiting LOGS_DRAIN_MS for the logs to end */
	uint64_t grace_ms;           /* from docker_stop */
	int64_t status;              /* exit code from wait; -1 unknown */
	char why[256];               /* the final callback's reason */
	struct httpc_call *step;     /* the one step in flight */
	struct httpc_call *wait;     /* POST /wait while running */
	struct httpc_call *logs;     /* GET /logs?follow while running */
	int logfd;                   /* the runner's log file, or -1 */
	unsigned char hdr[8];        /* multiplex header being read */
	size_t nhdr;                 /* bytes of hdr so far */
	uint32_t left;               /* payload bytes of the current frame still due */
	int raw;                     /* the stream has no multiplex headers (a TTY) */
	char tail[TAIL_MAX];         /* the last output bytes */
	size_t ntail;
	uv_timer_t tick;             /* runs the final callback; freed on its close */
};

static struct httpc *dk_http;  /* engine client, while dk_users > 0 */
static int dk_users;
static int dk_live;            /* containers not yet freed */
static char dk_sock[PATH_MAX]; /* socket path of the current client */
static char dk_instance[33];   /* fnrun.instance of this process */

/* ---- the engine client ---- */

/* The socket: server.docker.socket, $DOCKER_HOST, the default; unix only. */
static int socket_path(char *out, size_t n, struct err *err)
{
	const struct reg_server *s = server.reg ? registry_server(server.reg) : NULL;
	const char *v = getenv("DOCKER_HOST");

	if (s && s->docker_socket)
		v = s->docker_socket;
	else if (v == NULL || *v == '\0')
		v = DEFAULT_SOCKET;
	if (strncmp(v, "unix://", 7) == 0)
		v += 7;
	if (*v != '/') {
		err_set(err, ERR_INVALID, "docker socket %s: give a unix socket, unix:///path", log_q(v));
		return -1;
	}
	snprintf(out, n, "%s", v);
	return 0;
}

static int dk_acquire(struct err *err)
{
	if (dk_http == NULL) {
		if (socket_path(dk_sock, sizeof dk_sock, err) < 0)
			return -1;
		dk_http = httpc_new(server.loop, err);
		if (dk_http == NULL)
			return -1;
		/* Each container keeps two streams open; never queue behind them. */
		httpc_set_max_host_connections(dk_http, 0);
	}
	if (dk_instance[0] == '\0')
		util_uuid4_hex(dk_instance);
	dk_users++;
	return 0;
}

static void dk_release(void)
{
	assert(dk_users > 0);
	if (--dk_users == 0) {
		httpc_free(dk_http, NULL, NULL);
		dk_http = NULL;
	}
}

/* One engine request; path is under DOCKER_API. NULL with err on failure. */
static struct httpc_call *api(const char *method, const char *path, const char *body,
			      uint64_t timeout_ms, httpc_cb cb, void *ud,
			      void (*on_chunk)(const char *, size_t, void *), struct err *err)
{
	char url[1024];
	struct httpc_opts o = {.method = method, .url = url, .unix_socket = dk_sock,
			       .timeout_ms = timeout_ms, .on_chunk = on_chunk};

	snprintf(url, sizeof url, "http://localhost" DOCKER_API "%s", path);
	if (body) {
		o.body = body;
		o.body_len = strlen(body);
		o.content_type = "application/json";
	}
	return httpc_request(dk_http, &o, cb, ud, err);
}

/* The engine's message from an error response, or the transport error. */
static void resp_why(const struct httpc_resp *resp, const char *step, char *out, size_t n)
{
	struct json_object *o = NULL;
	struct err e = {0};
	const char *msg = NULL;

	if (resp->status == 0) {
		snprintf(out, n, "%s: container engine unreachable at %.100s: %.100s", step, dk_sock,
			 resp->err.msg);
		return;
	}
	if (json_parse(resp->body, resp->len, 8, &o, &e) == 0)
		msg = json_get_str(o, "message");
	snprintf(out, n, "%s: %d %s", step, resp->status, msg ? msg : resp->body);
	json_object_put(o);
}

/* ---- the container's output ---- */

static void tail_add(struct docker_ctr *c, const char *p, size_t n)
{
	c->ntail = util_tail_keep(c->tail, c->ntail, TAIL_MAX, p, n);
}

static void out_write(struct docker_ctr *c, const char *p, size_t n)
{
	tail_add(c, p, n);
	while (c->logfd >= 0 && n > 0) {
		ssize_t w = write(c->logfd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			log_warn("container log not written runner=%s err=%s", c->runner, strerror(errno));
			close(c->logfd);
			c->logfd = -1;
			return;
		}
		p += w;
		n -= (size_t)w;
	}
}

/*
 * The logs stream, chunk by chunk: frames of an 8-byte header (stream 0-2,
 * three zero bytes, big-endian payload length) and the payload. Headers and
 * payloads may be split anywhere between chunks.
 */
static void on_logs_chunk(const char *p, size_t n, void *ud)
{
	struct docker_ctr *c = ud;

	while (n > 0) {
		if (c->raw) {
			out_write(c, p, n);
			return;
		}
		if (c->left == 0) {
			c->hdr[c->nhdr++] = (unsigned char)*p++;
			n--;
			if (c->nhdr == 1 && c->hdr[0] > 2) {
				c->raw = 1; /* not multiplexed: the container has a TTY */
				out_write(c, (const char *)c->hdr, 1);
			} else if (c->nhdr == 8) {
				c->left = (uint32_t)c->hdr[4] << 24 | (uint32_t)c->hdr[5] << 16 |
					  (uint32_t)c->hdr[6] << 8 | c->hdr[7];
				c->nhdr = 0;
			}
			continue;
		}
		size_t k = n < c->left ? n : c->left;
		out_write(c, p, k);
		p += k;
		n -= k;
		c->left -= (uint32_t)k;
	}
}

/* The last lines of output, newlines kept, at most TAIL_SHOWN bytes; static buffer. */
static const char *tail_lines(struct docker_ctr *c)
{
	static char out[TAIL_MAX + 1];
	size_t n;

	runtime__last_lines(c->tail, c->ntail, out, sizeof out);
	n = strlen(out);
	return n > TAIL_SHOWN ? out + n - TAIL_SHOWN : out; /* the end matters most */
}

static void on_tick(uv_timer_t *t);

static void on_logs(const struct httpc_resp *resp, void *ud)
{
	struct docker_ctr *c = ud;

	c->logs = NULL;
	if (resp->status != 200)
		log_debug("container logs ended runner=%s status=%d", c->runner, resp->status);
	if (c->draining)
		uv_timer_start(&c->tick, on_tick, 0, 0); /* all output is in: finish now */
}

/* ---- the final callback and teardown ---- */

static void on_tick_closed(uv_handle_t *h)
{
	struct docker_ctr *c = h->data;

	if (c->logfd >= 0)
		close(c->logfd);
	free(c);
	dk_live--;
	dk_release();
}

/* Reports once; frees when the container is gone. */
static void on_tick(uv_timer_t *t)
{
	struct docker_ctr *c = t->data;

	if (!c->reported) {
		c->reported = 1;
		if (c->failed)
			c->cb.on_failed(c->ud, c->why);
		else
			c->cb.on_exit(c->ud, c->status, c->why);
	}
	if (c->state != CTR_DONE)
		return;
	/* The engine sends the last output lines late; wait for the stream's end. */
	if (c->logs && !c->draining) {
		c->draining = 1;
		uv_timer_start(&c->tick, on_tick, LOGS_DRAIN_MS, 0);
		return;
	}
	if (c->show_tail && c->ntail > 0)
		log_warn("container output runner=%s id=%.12s last_output=%s", c->runner, c->id,
			 log_q(tail_lines(c)));
	httpc_cancel(c->wait);
	httpc_cancel(c->logs);
	c->wait = c->logs = NULL;
	uv_close((uv_handle_t *)&c->tick, on_tick_closed);
}

/* Schedules the final callback with this reason (the first one given wins). */
static void report(struct docker_ctr *c, int failed, const char *why)
{
	if (c->why[0] == '\0') {
		c->failed = failed;
		snprintf(c->why, sizeof c->why, "%.*s", (int)sizeof c->why - 1, why);
	}
	uv_timer_start(&c->tick, on_tick, 0, 0);
}

static void on_removed(const struct httpc_resp *resp, void *ud)
{
	struct docker_ctr *c = ud;
	char why[300];

	c->step = NULL;
	if (resp->status == 204 || resp->status == 200 || resp->status == 404) {
		log_info("container removed runner=%s id=%.12s", c->runner, c->id);
	} else {
		resp_why(resp, "remove", why, sizeof why);
		log_warn("container not removed (the next start removes it) runner=%s id=%.12s err=%s",
			 c->runner, c->id, log_q(why));
	}
	c->state = CTR_DONE;
	report(c, 0, c->stop_asked ? "stopped" : "removed");
}

/* DELETE ?force=1 kills it if it still runs; then the final callback. */
static void remove_ctr(struct docker_ctr *c)
{
	char path[160];
	struct err e = {0};

	httpc_cancel(c->step);
	c->step = NULL;
	c->state = CTR_REMOVING;
	if (c->id[0] == '\0') {
		c->state = CTR_DONE;
		report(c, 0, "stopped before it was created");
		return;
	}
	snprintf(path, sizeof path, "/containers/%s?force=1&v=1", c->id);
	c->step = api("DELETE", path, NULL, API_TIMEOUT_MS, on_removed, c, NULL, &e);
	if (c->step == NULL) {
		log_error("container not removed runner=%s id=%.12s err=%s", c->runner, c->id, e.msg);
		c->state = CTR_DONE;
		report(c, 0, e.msg);
	}
}

/* A step failed before on_started: log it with the output so far, remove, on_failed. */
static void fail_start(struct docker_ctr *c, const char *why)
{
	log_warn("container failed to start runner=%s id=%.12s reason=%s", c->runner, c->id,
		 log_q(why));
	c->show_tail = 1;
	if (c->why[0] == '\0') {
		c->failed = 1;
		snprintf(c->why, sizeof c->why, "%.*s", (int)sizeof c->why - 1, why);
	}
	remove_ctr(c);
}

/* ---- running: wait for the exit ---- */

static void on_wait(const struct httpc_resp *resp, void *ud)
{
	struct docker_ctr *c = ud;
	struct json_object *o = NULL;
	struct err e = {0};
	char why[300];

	c->wait = NULL;
	if (resp->status == 200 && json_parse(resp->body, resp->len, 8, &o, &e) == 0)
		c->status = json_get_int(o, "StatusCode", -1);
	json_object_put(o);
	if (c->state == CTR_STOPPED) {
		remove_ctr(c);
		return;
	}
	if (c->stop_asked || c->state >= CTR_STOPPING)
		return; /* the stop or remove in flight reports */
	if (resp->status == 200)
		snprintf(why, sizeof why, "container exited (status %lld)", (long long)c->status);
	else
		resp_why(resp, "wait", why, sizeof why);
	if (!c->started) {
		fail_start(c, why);
		return;
	}
	log_warn("container exited runner=%s id=%.12s status=%lld", c->runner, c->id,
		 (long long)c->status);
	c->show_tail = 1;
	/* The runner hears it at once; the removal follows in the background. */
	report(c, 0, why);
	remove_ctr(c);
}

static void on_inspected(const struct httpc_resp *resp, void *ud)
{
	struct docker_ctr *c = ud;
	struct json_object *o = NULL, *ports, *b, *state;
	struct err e = {0};
	char why[300], key[32];
	const char *hp = NULL;

	c->step = NULL;
	if (resp->status != 200 || json_parse(resp->body, resp->len, 32, &o, &e) < 0) {
		resp_why(resp, "inspect", why, sizeof why);
		fail_start(c, why);
		return;
	}
	snprintf(key, sizeof key, "%d/tcp", DOCKER_PORT);
	ports = json_get_obj(json_get_obj(o, "NetworkSettings"), "Ports");
	b = json_get_arr(ports, key);
	/* No binding (a container that already exited): json-c asserts on an index into NULL. */
	b = b ? json_object_array_get_idx(b, 0) : NULL;
	hp = json_get_str(b, "HostPort");
	state = json_get_obj(o, "State");
	if (!json_get_bool(state, "Running", 0) || hp == NULL || atoi(hp) <= 0) {
		snprintf(why, sizeof why, "container %s during start (status %lld, port %s)",
			 json_get_bool(state, "Running", 0) ? "published no port" : "exited",
			 (long long)json_get_int(state, "ExitCode", -1), hp ? hp : "none");
		json_object_put(o);
		fail_start(c, why);
		return;
	}
	c->state = CTR_RUNNING;
	c->started = 1;
	log_info("container running runner=%s id=%.12s host_port=%s", c->runner, c->id, hp);
	c->cb.on_started(c->ud, atoi(hp));
	json_object_put(o);
}

/* Started: follow its output and its exit, and read the published port. */
static void on_started_resp(const struct httpc_resp *resp, void *ud)
{
	struct docker_ctr *c = ud;
	char path[200], why[300];
	struct err e = {0};

	c->step = NULL;
	if (resp->status != 204 && resp->status != 304) {
		resp_why(resp, "start", why, sizeof why);
		fail_start(c, why);
		return;
	}
	snprintf(path, sizeof path, "/containers/%s/logs?follow=1&stdout=1&stderr=1", c->id);
	c->logs = api("GET", path, NULL, STREAM_TIMEOUT_MS, on_logs, c, on_logs_chunk, &e);
	snprintf(path, sizeof path, "/containers/%s/wait", c->id);
	c->wait = api("POST", path, NULL, STREAM_TIMEOUT_MS, on_wait, c, NULL, &e);
	snprintf(path, sizeof path, "/containers/%s/json", c->id);
	c->state = CTR_INSPECTING;
	c->step = api("GET", path, NULL, API_TIMEOUT_MS, on_inspected, c, NULL, &e);
	if (c->wait == NULL || c->step == NULL)
		fail_start(c, e.msg);
}

static void on_created(const struct httpc_resp *resp, void *ud)
{
	struct docker_ctr *c = ud;
	struct json_object *o = NULL;
	struct err e = {0};
	char path[160], why[300];

	c->step = NULL;
	if (resp->status == 201 && json_parse(resp->body, resp->len, 8, &o, &e) == 0 &&
	    json_get_str(o, "Id"))
		snprintf(c->id, sizeof c->id, "%s", json_get_str(o, "Id"));
	json_object_put(o);
	if (c->stop_asked) {
		remove_ctr(c); /* with no id, just the final callback */
		return;
	}
	if (c->id[0] == '\0') {
		resp_why(resp, "create", why, sizeof why);
		fail_start(c, why);
		return;
	}
	log_info("container created runner=%s id=%.12s name=%s", c->runner, c->id, c->name);
	snprintf(path, sizeof path, "/containers/%s/start", c->id);
	c->state = CTR_STARTING;
	c->step = api("POST", path, NULL, API_TIMEOUT_MS, on_started_resp, c, NULL, &e);
	if (c->step == NULL)
		fail_start(c, e.msg);
}

/* ---- the interface ---- */

struct docker_ctr *docker_start(const struct reg_model *m, const char *runner_id, int gpu,
				const char *log_path, const struct docker_cbs *cb, void *ud,
				struct err *err)
{
	struct docker_ctr *c;
	char path[256], *body;

	if (m->image == NULL) {
		err_set(err, ERR_INVALID, "model %s has no image", m->id);
		return NULL;
	}
	if (dk_acquire(err) < 0)
		return NULL;
	body = docker__create_body(m, runner_id, gpu, dk_instance, err);
	if (body == NULL) {
		dk_release();
		return NULL;
	}
	c = xcalloc(1, sizeof *c);
	c->cb = *cb;
	c->ud = ud;
	c->status = -1;
	snprintf(c->runner, sizeof c->runner, "%s", runner_id);
	snprintf(c->name, sizeof c->name, "fnrun-%s-%.8s", runner_id, dk_instance);
	c->logfd = log_path ? open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644) : -1;
	snprintf(path, sizeof path, "/containers/create?name=%s", c->name);
	c->step = api("POST", path, body, API_TIMEOUT_MS, on_created, c, NULL, err);
	free(body);
	if (c->step == NULL) {
		if (c->logfd >= 0)
			close(c->logfd);
		free(c);
		dk_release();
		return NULL;
	}
	uv_timer_init(server.loop, &c->tick);
	c->tick.data = c;
	dk_live++;
	log_info("container creating runner=%s model=%s image=%s socket=%s", c->runner, m->id,
		 log_q(m->image), log_q(dk_sock));
	return c;
}

static void on_stopped(const struct httpc_resp *resp, void *ud)
{
	struct docker_ctr *c = ud;
	char why[300];

	c->step = NULL;
	if (resp->status != 204 && resp->status != 304 && resp->status != 404) {
		resp_why(resp, "stop", why, sizeof why);
		log_warn("container stop failed, removing it runner=%s err=%s", c->runner, log_q(why));
	} else if (c->wait) {
		c->state = CTR_STOPPED; /* on_wait removes it once it has the exit code */
		return;
	}
	remove_ctr(c);
}

void docker_stop(struct docker_ctr *c, uint64_t grace_ms)
{
	char path[200];
	struct err e = {0};

	if (c->stop_asked || c->state >= CTR_STOPPING)
		return;
	c->stop_asked = 1;
	c->grace_ms = grace_ms;
	log_info("container stopping runner=%s id=%.12s grace_ms=%llu", c->runner, c->id,
		 (unsigned long long)grace_ms);
	c->show_tail = grace_ms == 0; /* killed: something went wrong, show its output */
	if (c->state == CTR_CREATING)
		return; /* on_created removes it */
	if (grace_ms == 0) {
		remove_ctr(c);
		return;
	}
	httpc_cancel(c->step);
	c->step = NULL;
	c->state = CTR_STOPPING;
	snprintf(path, sizeof path, "/containers/%s/stop?t=%llu", c->id,
		 (unsigned long long)((grace_ms + 999) / 1000));
	c->step = api("POST", path, NULL, grace_ms + API_TIMEOUT_MS, on_stopped, c, NULL, &e);
	if (c->step == NULL)
		remove_ctr(c);
}

const char *docker_id(const struct docker_ctr *c)
{
	return c->id;
}

int docker_live(void)
{
	return dk_live;
}

/* ---- orphans ---- */

struct cleanup {
	int pending; /* list or delete calls in flight */
};

static void cleanup_step_done(struct cleanup *cl)
{
	if (--cl->pending > 0)
		return;
	free(cl);
	dk_release();
}

static void on_orphan_removed(const struct httpc_resp *resp, void *ud)
{
	if (resp->status != 204 && resp->status != 200 && resp->status != 404)
		log_warn("orphan container not removed status=%d body=%s", resp->status,
			 log_q(resp->body));
	cleanup_step_done(ud);
}

static void remove_orphan(struct cleanup *cl, struct json_object *ctr)
{
	struct json_object *l = json_get_obj(ctr, "Labels");
	const char *id = json_get_str(ctr, "Id"), *inst = json_get_str(l, "fnrun.instance");
	char path[200];
	struct err e = {0};

	if (id == NULL || strlen(id) > 80 || (inst && strcmp(inst, dk_instance) == 0))
		return;
	log_warn("removing orphan container id=%.12s model=%s runner=%s state=%s", id,
		 log_q(json_get_str(l, "fnrun.model")), log_q(json_get_str(l, "fnrun.runner")),
		 log_q(json_get_str(ctr, "State")));
	snprintf(path, sizeof path, "/containers/%s?force=1&v=1", id);
	if (api("DELETE", path, NULL, API_TIMEOUT_MS, on_orphan_removed, cl, NULL, &e))
		cl->pending++;
}

static void on_orphans_listed(const struct httpc_resp *resp, void *ud)
{
	struct cleanup *cl = ud;
	struct json_object *o = NULL;
	struct err e = {0};

	if (resp->status != 200 || json_parse(resp->body, resp->len, 32, &o, &e) < 0 ||
	    !json_object_is_type(o, json_type_array)) {
		log_warn("cannot list containers for orphan cleanup status=%d err=%s", resp->status,
			 log_q(resp->status ? resp->body : resp->err.msg));
	} else {
		for (size_t i = 0; i < json_object_array_length(o); i++)
			remove_orphan(cl, json_object_array_get_idx(o, i));
	}
	json_object_put(o);
	cleanup_step_done(cl);
}

/* ?all=1&filters={"label": [fnrun=1, fnrun.node=..., fnrun.data=...]}, escaped. */
static char *orphan_query(void)
{
	struct json_object *f = json_object_new_object(), *l = json_object_new_array();
	char *text, *esc, *q, *v;

	json_object_array_add(l, json_str("fnrun=1"));
	v = xasprintf("fnrun.node=%s", docker__node());
	json_object_array_add(l, json_str(v));
	free(v);
	v = xasprintf("fnrun.data=%s", server.cfg.data_dir ? server.cfg.data_dir : "");
	json_object_array_add(l, json_str(v));
	free(v);
	json_put(f, "label", l);
	text = json_dumps(f);
	esc = curl_easy_escape(NULL, text, 0);
	q = xasprintf("/containers/json?all=1&filters=%s", esc);
	curl_free(esc);
	free(text);
	json_object_put(f);
	return q;
}

void docker_cleanup_orphans(void)
{
	struct cleanup *cl;
	struct err e = {0};
	char sock[PATH_MAX], *q;

	if (socket_path(sock, sizeof sock, &e) < 0 || access(sock, W_OK) != 0) {
		log_debug("no container engine, no container orphans socket=%s", log_q(sock));
		return;
	}
	if (dk_acquire(&e) < 0) {
		log_warn("orphan cleanup not possible: %s", e.msg);
		return;
	}
	cl = xcalloc(1, sizeof *cl);
	q = orphan_query();
	if (api("GET", q, NULL, API_TIMEOUT_MS, on_orphans_listed, cl, NULL, &e) == NULL) {
		log_warn("orphan cleanup not possible: %s", e.msg);
		free(cl);
		dk_release();
	} else {
		cl->pending = 1;
	}
	free(q);
}

/* ---- the runtime interface (runtime.h) over docker_start/docker_stop ---- */

struct dk_inst {
	struct runtime_inst base; /* first: the runner sees only this */
	struct docker_ctr *ctr;   /* valid until on_exit */
};

static void inst_started(void *ud, int host_port)
{
	struct dk_inst *x = ud;

	snprintf(x->base.host, sizeof x->base.host, "127.0.0.1");
	x->base.port = host_port;
	snprintf(x->base.container_id, sizeof x->base.container_id, "%s", docker_id(x->ctr));
	x->base.started = 1;
	x->base.cb.on_started(&x->base, x->base.ud);
}

static void inst_exit(void *ud, int64_t status, const char *why)
{
	struct dk_inst *x = ud;

	x->base.cb.on_exit(&x->base, status, why, x->base.ud);
	free(x);
}

static void inst_failed(void *ud, const char *why)
{
	inst_exit(ud, -1, why);
}

static struct runtime_inst *inst_start(const struct runtime_spec *spec,
				       const struct runtime_cbs *cb, void *ud, struct err *err)
{
	static const struct docker_cbs cbs = {inst_started, inst_exit, inst_failed};
	struct dk_inst *x = xcalloc(1, sizeof *x);

	x->base.rt = &runtime_docker;
	x->base.cb = *cb;
	x->base.ud = ud;
	x->ctr = docker_start(spec->model, spec->runner_id, spec->gpu, spec->log_path, &cbs, x, err);
	if (x->ctr == NULL) {
		free(x);
		return NULL;
	}
	return &x->base;
}

static void inst_stop(struct runtime_inst *inst, uint64_t grace_ms)
{
	docker_stop(((struct dk_inst *)inst)->ctr, grace_ms);
}

static void inst_log_tail(struct runtime_inst *inst, char *out, size_t n)
{
	snprintf(out, n, "%s", tail_lines(((struct dk_inst *)inst)->ctr));
}

const struct runtime runtime_docker = {
	.name = "docker",
	.start = inst_start,
	.stop = inst_stop,
	.health = runtime__health_http,
	.log_tail = inst_log_tail,
};
