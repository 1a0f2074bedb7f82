/*
 * comfy.c - the ComfyUI client (comfy.h): POST /prompt, /interrupt,
 * /free, /health, PyTorch's out-of-memory texts, the /ws session and a
 * prompt's progress from its frames; the result fetch (/history, then
 * /view for each output file) is in comfy_fetch.c.
 *
 * Each call is a small struct holding the caller's callback, ud and tag
 * and the httpc call under it; cancelling it cancels the HTTP call and
 * frees the struct, so no callback can run after.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "comfy.h"
#include "httpc.h"
#include "json.h"
#include "log.h"
#include "server.h"
#include "util.h"
#include "wsc.h"

#define SUBMIT_TIMEOUT_MS 30000
#define WS_CONNECT_MS 5000

struct comfy_call {
	struct httpc_call *http;
	uint64_t tag;
	void *ud;
	comfy_submit_fn on_submit; /* one of these three */
	comfy_health_fn on_health;
	comfy_status_fn on_status;
};

static struct comfy_call *call_new(uint64_t tag, void *ud)
{
	struct comfy_call *c = xcalloc(1, sizeof *c);

	c->tag = tag;
	c->ud = ud;
	return c;
}

void comfy_cancel(struct comfy_call *c)
{
	if (c == NULL)
		return;
	httpc_cancel(c->http);
	free(c);
}

/* ---- POST /prompt ---- */

static void on_submitted(const struct httpc_resp *resp, void *ud)
{
	struct comfy_call *c = ud;
	struct json_object *o = NULL;
	struct err e = {0};
	const char *pid = NULL, *detail = NULL;
	int status = resp->status;

	if (status == 0)
		detail = resp->err.msg;
	else if (status != 200 || json_parse(resp->body, resp->len, 64, &o, &e) < 0 ||
		 (pid = json_get_str(o, "prompt_id")) == NULL)
		detail = resp->body;
	if (status == 200 && pid == NULL)
		status = 502; /* a 200 without a prompt id is no acceptance */
	c->on_submit(c->ud, c->tag, status, pid, detail);
	json_object_put(o);
	free(c);
}

struct comfy_call *comfy_submit(const char *base_url, const char *client_id,
				const char *prompt_id, const struct json_object *workflow,
				uint64_t tag, comfy_submit_fn cb, void *ud, struct err *err)
{
	struct httpc_opts o = {.method = "POST", .content_type = "application/json",
			       .timeout_ms = SUBMIT_TIMEOUT_MS};
	struct comfy_call *c = call_new(tag, ud);
	struct buf b;
	char url[300];

	/* {"prompt": ..., "client_id": ..., "prompt_id": ...}, written once. */
	buf_init(&b, 64u << 20);
	buf_puts(&b, "{\"prompt\": ");
	json_dump(&b, workflow);
	buf_puts(&b, ", \"client_id\": ");
	json_dump_string(&b, client_id, strlen(client_id));
	buf_puts(&b, ", \"prompt_id\": ");
	json_dump_string(&b, prompt_id, strlen(prompt_id));
	if (buf_puts(&b, "}") < 0) {
		err_set(err, ERR_TOO_LARGE, "workflow too large to send");
		buf_cleanup(&b);
		free(c);
		return NULL;
	}
	snprintf(url, sizeof url, "%s/prompt", base_url);
	o.url = url;
	o.body = b.data;
	o.body_len = b.len;
	c->on_submit = cb;
	c->http = httpc_request(server.httpc, &o, on_submitted, c, err);
	buf_cleanup(&b);
	if (c->http == NULL) {
		free(c);
		return NULL;
	}
	return c;
}

/* ---- POST /interrupt ---- */

static void on_interrupted(const struct httpc_resp *resp, void *ud)
{
	if (resp->status != 200)
		log_warn("interrupt not accepted url=%s status=%d", log_q((const char *)ud), resp->status);
	free(ud);
}

void comfy_interrupt(const char *base_url, const char *prompt_id)
{
	struct httpc_opts o = {.method = "POST", .content_type = "application/json",
			       .timeout_ms = 5000};
	struct err e = {0};
	struct buf b;
	char *url = xasprintf("%s/interrupt", base_url);

	buf_init(&b, 4096);
	buf_puts(&b, "{");
	if (prompt_id) {
		buf_puts(&b, "\"prompt_id\": ");
		json_dump_string(&b, prompt_id, strlen(prompt_id));
	}
	buf_puts(&b, "}");
	o.url = url;
	o.body = b.data;
	o.body_len = b.len;
	if (httpc_request(server.httpc, &o, on_interrupted, url, &e) == NULL) {
		log_warn("interrupt not sent url=%s err=%s", log_q(url), log_q(e.msg));
		free(url);
	}
	buf_cleanup(&b);
}

/* ---- POST /free ---- */

static void on_freed(const struct httpc_resp *resp, void *ud)
{
	struct comfy_call *c = ud;

	c->on_status(c->ud, c->tag, resp->status);
	free(c);
}

struct comfy_call *comfy_free(const char *base_url, int unload_models, int free_memory,
			      uint64_t timeout_ms, uint64_t tag, comfy_status_fn cb, void *ud,
			      struct err *err)
{
	struct httpc_opts o = {.method = "POST", .content_type = "application/json",
			       .timeout_ms = timeout_ms, .max_response = 64 * 1024};
	struct comfy_call *c = call_new(tag, ud);
	char url[300], body[64];

	snprintf(url, sizeof url, "%s/free", base_url);
	snprintf(body, sizeof body, "{\"unload_models\": %s, \"free_memory\": %s}",
		 unload_models ? "true" : "false", free_memory ? "true" : "false");
	o.url = url;
	o.body = body;
	o.body_len = strlen(body);
	c->on_status = cb;
	c->http = httpc_request(server.httpc, &o, on_freed, c, err);
	if (c->http == NULL) {
		free(c);
		return NULL;
	}
	return c;
}

/*
 * How PyTorch and ComfyUI say the GPU ran out of memory. The exception's
 * type, as ComfyUI writes it (module and class): "torch.OutOfMemoryError"
 * (torch 2.5 on), "torch.cuda.OutOfMemoryError" (before). Its message,
 * case ignored: the caching allocator's "CUDA out of memory. Tried to
 * allocate ...", cudaMallocAsync's (ComfyUI's default allocator) "Allocation
 * on device 0 would exceed allowed memory. (out of memory)", a kernel's
 * "CUDA error: out of memory" (a RuntimeError, or torch.AcceleratorError),
 * "HIP out of memory", "MPS backend out of memory", ComfyUI's tip "This
 * error means you ran out of memory on your GPU", and the CUDA libraries'
 * CUBLAS_STATUS_ALLOC_FAILED, CUDNN_STATUS_ALLOC_FAILED, CUFFT_ALLOC_FAILED.
 */
static const char *const oom_types[] = {"OutOfMemory"};
static const char *const oom_texts[] = {"out of memory", "_ALLOC_FAILED"};

int comfy_is_oom(const char *exc_type, const char *msg)
{
	for (size_t i = 0; exc_type && i < sizeof oom_types / sizeof oom_types[0]; i++)
		if (strstr(exc_type, oom_types[i]))
			return 1;
	for (size_t i = 0; msg && i < sizeof oom_texts / sizeof oom_texts[0]; i++)
		if (strcasestr(msg, oom_texts[i]))
			return 1;
	return 0;
}

/* ---- GET /health ---- */

static void on_health(const struct httpc_resp *resp, void *ud)
{
	struct comfy_call *c = ud;
	int h = COMFY_DOWN;

	if (resp->status == 404)
		h = COMFY_UP;
	else if (resp->status == 200)
		h = strstr(resp->body, "\"starting\"") ? COMFY_STARTING : COMFY_UP;
	c->on_health(c->ud, c->tag, h);
	free(c);
}

struct comfy_call *comfy_health(const char *base_url, uint64_t timeout_ms, uint64_t tag,
				comfy_health_fn cb, void *ud, struct err *err)
{
	struct httpc_opts o = {.timeout_ms = timeout_ms, .connect_timeout_ms = 500,
			       .max_response = 64 * 1024};
	struct comfy_call *c = call_new(tag, ud);
	char url[300];

	snprintf(url, sizeof url, "%s/health", base_url);
	o.url = url;
	c->on_health = cb;
	c->http = httpc_request(server.httpc, &o, on_health, c, err);
	if (c->http == NULL) {
		free(c);
		return NULL;
	}
	return c;
}

/* ---- /ws ---- */

struct comfy_ws {
	struct wsc *w;
	struct comfy_ws_cbs cb;
	void *ud;
};

static const struct {
	const char *name;
	int type;
} event_types[] = {
	{"execution_start", COMFY_EV_STARTED},
	{"progress", COMFY_EV_PROGRESS},
	{"progress_state", COMFY_EV_NODES},
	{"executed", COMFY_EV_EXECUTED},
	{"execution_success", COMFY_EV_SUCCESS},
	{"execution_error", COMFY_EV_ERROR},
	{"execution_interrupted", COMFY_EV_INTERRUPTED},
};

static int event_type(const char *type, struct json_object *data)
{
	for (size_t i = 0; i < sizeof event_types / sizeof event_types[0]; i++)
		if (strcmp(type, event_types[i].name) == 0)
			return event_types[i].type;
	if (strcmp(type, "executing") == 0 && json_object_object_get_ex(data, "node", NULL) &&
	    json_get(data, "node") == NULL)
		return COMFY_EV_FINISHED;
	return COMFY_EV_OTHER;
}

static void on_ws_open(struct wsc *w, void *ud)
{
	struct comfy_ws *s = ud;

	if (s->cb.on_open)
		s->cb.on_open(s->ud);
}

/* A frame's prompt id (its first "prompt_id", json.dumps's layout) into pid; "" when none fits. */
static void copy_pid(const char *msg, size_t len, char *pid, size_t n)
{
	static const char key[] = "\"prompt_id\": \"";
	size_t kl = sizeof key - 1;
	const char *p = memmem(msg, len, key, kl);
	const char *end = p ? memchr(p + kl, '"', len - (size_t)(p + kl - msg)) : NULL;

	pid[0] = '\0';
	if (end && (size_t)(end - p - kl) < n)
		snprintf(pid, n, "%.*s", (int)(end - p - kl), p + kl);
}

/*
 * A frame not worth parsing: ComfyUI writes {"type": "<t>", ...} with the
 * type first, and of a prompt's dozen or more frames most are status,
 * progress_state and executing of a node; status and executing say only
 * "still going" (the final executing, with node null, is parsed). Returns
 * 1 and, for executing, its prompt id (into pid, "" when absent); 0 for a
 * frame to read further.
 */
static int uninteresting(const char *msg, size_t len, char *pid, size_t n)
{
	static const char head[] = "{\"type\": \"";
	static const char *const skip[] = {"status\"", "executing\""};
	size_t hl = sizeof head - 1;

	pid[0] = '\0';
	if (len < hl || memcmp(msg, head, hl) != 0)
		return 0;
	for (size_t i = 0; i < sizeof skip / sizeof skip[0]; i++) {
		size_t sl = strlen(skip[i]);
		if (len - hl < sl || memcmp(msg + hl, skip[i], sl) != 0)
			continue;
		if (i == 1 && memmem(msg, len, "\"node\": null", sizeof "\"node\": null" - 1) != NULL)
			return 0; /* the end of a prompt */
		copy_pid(msg, len, pid, n);
		return 1;
	}
	return 0;
}

/* Counts a node of a progress_state: *finished += 1, or *running += its value/max. */
static void node_add(const char *state, size_t n, double value, double max, double *finished,
		     double *running)
{
	if (n == 8 && memcmp(state, "finished", 8) == 0)
		*finished += 1;
	else if (n == 7 && memcmp(state, "running", 7) == 0 && isfinite(value) && isfinite(max) &&
		 max > 0 && value > 0)
		*running += value >= max ? 1 : value / max;
}

/* The nodes of a parsed progress_state into ev: finished, running, listed. */
static void nodes_sum(struct json_object *nodes, struct comfy_event *ev)
{
	if (!json_object_is_type(nodes, json_type_object))
		return;
	json_object_object_foreach(nodes, id, e) {
		const char *st = json_get_str(e, "state");
		double v = json_object_get_double(json_get(e, "value"));
		double m = json_object_get_double(json_get(e, "max"));

		(void)id;
		ev->max += 1;
		if (st)
			node_add(st, strlen(st), v, m, &ev->value, &ev->running);
	}
}

/* Skips the literal lit at *p (before end); -1 when it is not there. */
static int expect(const char **p, const char *end, const char *lit)
{
	size_t l = strlen(lit);

	if ((size_t)(end - *p) < l || memcmp(*p, lit, l) != 0)
		return -1;
	*p += l;
	return 0;
}

/* A JSON number of at most 39 characters at *p (before end), skipped; -1 when none. */
static int scan_num(const char **p, const char *end, double *v)
{
	static const char chars[] = "+-.0123456789eE";
	char buf[40], *stop;
	size_t k = 0;

	while (*p + k < end && k < sizeof buf - 1 && memchr(chars, (*p)[k], sizeof chars - 1))
		k++;
	if (k == 0)
		return -1;
	memcpy(buf, *p, k);
	buf[k] = '\0';
	*v = strtod(buf, &stop);
	if (stop != buf + k)
		return -1;
	*p += k;
	return 0;
}

/*
 * progress_state, as json.dumps writes it, read without parsing: each
 * node's {"value": V, "max": M, "state": "S", ...} in turn (a frame lists
 * every node that started, and comes at each node's start and end and at
 * each step). Returns 1 with ev filled (COMFY_EV_NODES, its prompt id in
 * pid); 0 for another frame, or one written otherwise (parsed in full).
 */
static int nodes_fast(const char *msg, size_t len, char *pid, size_t n, struct comfy_event *ev)
{
	static const char head[] = "{\"type\": \"progress_state\", \"data\": {";
	static const char entry[] = "{\"value\": ";
	const char *end = msg + len, *p, *st;
	double finished = 0, running = 0, count = 0, v, m;

	if (len < sizeof head - 1 || memcmp(msg, head, sizeof head - 1) != 0)
		return 0;
	copy_pid(msg, len, pid, n);
	if (pid[0] == '\0' || memmem(msg, len, "\"nodes\": {", 10) == NULL)
		return 0;
	for (p = memmem(msg, len, entry, sizeof entry - 1); p != NULL;
	     p = memmem(p, (size_t)(end - p), entry, sizeof entry - 1)) {
		p += sizeof entry - 1;
		if (scan_num(&p, end, &v) < 0 || expect(&p, end, ", \"max\": ") < 0 ||
		    scan_num(&p, end, &m) < 0 || expect(&p, end, ", \"state\": \"") < 0)
			return 0;
		st = p;
		p = memchr(p, '"', (size_t)(end - p));
		if (p == NULL)
			return 0;
		node_add(st, (size_t)(p - st), v, m, &finished, &running);
		count++;
	}
	ev->type = COMFY_EV_NODES;
	ev->prompt_id = pid;
	ev->value = finished;
	ev->running = running;
	ev->max = count;
	return 1;
}

int comfy_ws_decode(const char *msg, size_t len, char *pid, size_t n, struct comfy_event *ev,
		    struct json_object **doc)
{
	struct json_object *o = NULL, *data;
	struct err e = {0};
	const char *type;

	memset(ev, 0, sizeof *ev);
	*doc = NULL;
	if (uninteresting(msg, len, pid, n)) {
		ev->prompt_id = pid; /* COMFY_EV_OTHER: the prompt goes on */
		return pid[0] != '\0';
	}
	if (nodes_fast(msg, len, pid, n, ev))
		return 1;
	if (json_parse(msg, len, 64, &o, &e) < 0)
		return 0;
	type = json_get_str(o, "type");
	data = json_get_obj(o, "data");
	if (!type || !data || !json_object_is_type(json_get(data, "prompt_id"), json_type_string)) {
		json_object_put(o);
		return 0;
	}
	ev->type = event_type(type, data);
	ev->prompt_id = json_get_str(data, "prompt_id");
	if (ev->type == COMFY_EV_NODES) {
		nodes_sum(json_get_obj(data, "nodes"), ev);
	} else {
		ev->value = json_object_get_double(json_get(data, "value"));
		ev->max = json_object_get_double(json_get(data, "max"));
	}
	ev->output = json_get_obj(data, "output");
	ev->exc_type = json_get_str(data, "exception_type");
	ev->exc_msg = json_get_str(data, "exception_message");
	*doc = o;
	return 1;
}

/* v within [0, 1]; 0 for NaN. */
static double unit(double v)
{
	return v > 0 ? (v < 1 ? v : 1) : 0;
}

double comfy_progress_note(struct comfy_progress *p, const struct comfy_event *ev)
{
	double nodes;

	if (ev->type == COMFY_EV_PROGRESS) {
		/*
		 * A sampler's steps are most of a prompt's time: they carry the
		 * bar from the nodes finished before it to the end, where its
		 * one node's share would move it by 1 / nodes.
		 */
		if (ev->max > 0)
			p->steps = p->base + (1 - p->base) * unit(ev->value / ev->max);
	} else if (ev->type == COMFY_EV_NODES) {
		/* A node that expands into a subgraph adds nodes the workflow did not list. */
		nodes = ev->max > p->nodes ? ev->max : p->nodes;
		p->base = nodes > 0 ? unit(ev->value / nodes) : 0;
		p->done = nodes > 0 ? unit((ev->value + ev->running) / nodes) : 0;
	} else {
		return -1;
	}
	return p->steps > p->done ? p->steps : p->done;
}

static void on_ws_text(struct wsc *w, const char *msg, size_t len, void *ud)
{
	struct comfy_ws *s = ud;
	struct json_object *doc;
	struct comfy_event ev;
	char pid[160];

	if (comfy_ws_decode(msg, len, pid, sizeof pid, &ev, &doc) && s->cb.on_event)
		s->cb.on_event(s->ud, &ev);
	json_object_put(doc);
}

static void on_ws_close(struct wsc *w, const struct err *why, void *ud)
{
	struct comfy_ws *s = ud;

	if (s->cb.on_close)
		s->cb.on_close(s->ud, why->code ? why->msg : "");
	free(s);
}

struct comfy_ws *comfy_ws_open(const char *host, int port, const char *client_id,
			       const struct comfy_ws_cbs *cb, void *ud, struct err *err)
{
	static const struct wsc_callbacks wcb = {
		.on_open = on_ws_open, .on_text = on_ws_text, .on_close = on_ws_close,
	};
	struct comfy_ws *s = xcalloc(1, sizeof *s);
	char path[128];

	s->cb = *cb;
	s->ud = ud;
	snprintf(path, sizeof path, "/ws?clientId=%s", client_id);
	s->w = wsc_connect(server.loop, host, port, path, &wcb, s, WS_CONNECT_MS, err);
	if (s->w == NULL) {
		free(s);
		return NULL;
	}
	return s;
}

void comfy_ws_close(struct comfy_ws *s)
{
	if (s)
		wsc_close(s->w);
}
