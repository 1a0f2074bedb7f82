/*
 * comfy.c - the ComfyUI client (comfy.h): POST /prompt, /interrupt,
 * /health, the /ws session, and the result fetch (/history, then /view
 * for each output file, written into the output store).
 *
 * Each call is a small struct holding the caller's callback, ud and tag
 * and the httpc call under it; cancelling it cancels the HTTP call and
 * frees the struct, so no callback can run after.
 */
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
	comfy_submit_fn on_submit; /* one of these two */
	comfy_health_fn on_health;
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

/*
 * A frame not worth parsing: ComfyUI writes {"type": "<t>", ...} with the
 * type first, and of a prompt's dozen or more frames most are status,
 * progress_state and executing of a node, which say only "still going"
 * (the final executing, with node null, is parsed). Returns 1 and, for
 * the two that name a prompt, its id (into pid, "" when absent); 0 for a
 * frame to parse.
 */
static int uninteresting(const char *msg, size_t len, char *pid, size_t n)
{
	static const char head[] = "{\"type\": \"", key[] = "\"prompt_id\": \"";
	static const char *const skip[] = {"status\"", "progress_state\"", "executing\""};
	size_t hl = sizeof head - 1, kl = sizeof key - 1;
	const char *p, *end;

	pid[0] = '\0';
	if (len < hl || memcmp(msg, head, hl) != 0)
		return 0;
	for (size_t i = 0; i < sizeof skip / sizeof skip[0]; i++) {
		size_t sl = strlen(skip[i]);
		if (len - hl < sl || memcmp(msg + hl, skip[i], sl) != 0)
			continue;
		if (i == 2 && memmem(msg, len, "\"node\": null", sizeof "\"node\": null" - 1) != NULL)
			return 0; /* the end of a prompt */
		p = memmem(msg, len, key, kl);
		end = p ? memchr(p + kl, '"', len - (size_t)(p + kl - msg)) : NULL;
		if (end && (size_t)(end - p - kl) < n)
			snprintf(pid, n, "%.*s", (int)(end - p - kl), p + kl);
		return 1;
	}
	return 0;
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
	ev->value = json_object_get_double(json_get(data, "value"));
	ev->max = json_object_get_double(json_get(data, "max"));
	ev->output = json_get_obj(data, "output");
	ev->exc_type = json_get_str(data, "exception_type");
	ev->exc_msg = json_get_str(data, "exception_message");
	*doc = o;
	return 1;
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
