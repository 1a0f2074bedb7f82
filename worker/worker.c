/*
 * worker.c - the queue, the history and the WebSocket fan-out of
 * fnrun-worker.
 *
 * Routing follows ComfyUI: status goes to every socket; messages for a
 * prompt go to its owner (the socket whose clientId is the prompt's
 * client_id). A client id connected twice keeps the newest socket; unlike
 * ComfyUI, closing the older socket does not unsubscribe the newer one.
 */
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <unistd.h>

#include "buf.h"
#include "json.h"
#include "log.h"
#include "util.h"
#include "worker.h"
#include "http.h"
#include "ws.h"

struct worker worker;

void qitem_free(struct qitem *item)
{
	if (item == NULL)
		return;
	json_object_put(item->number);
	free(item->prompt_id);
	json_object_put(item->prompt);
	json_object_put(item->extra_data);
	json_object_put(item->outputs);
	free(item->client_id);
	free(item);
}

static int qitem_before(const struct qitem *a, const struct qitem *b)
{
	if (a->order != b->order)
		return a->order < b->order;
	return strcmp(a->prompt_id, b->prompt_id) < 0;
}

void worker_enqueue(struct qitem *item)
{
	size_t i;

	if (worker.npending == worker.cappending) {
		worker.cappending = worker.cappending ? worker.cappending * 2 : 16;
		worker.pending = xrealloc(worker.pending, worker.cappending * sizeof *worker.pending);
	}
	for (i = worker.npending; i > 0 && qitem_before(item, worker.pending[i - 1]); i--)
		worker.pending[i] = worker.pending[i - 1];
	worker.pending[i] = item;
	worker.npending++;
	worker_send_status();
	worker_kick();
}

int worker_queue_delete(const char *prompt_id)
{
	for (size_t i = 0; i < worker.npending; i++) {
		if (strcmp(worker.pending[i]->prompt_id, prompt_id) != 0)
			continue;
		qitem_free(worker.pending[i]);
		memmove(&worker.pending[i], &worker.pending[i + 1],
			(worker.npending - i - 1) * sizeof *worker.pending);
		worker.npending--;
		worker_send_status();
		/* ComfyUI broadcasts a second time when the last pending item goes. */
		if (worker.npending == 0)
			worker_send_status();
		return 1;
	}
	return 0;
}

void worker_queue_clear(void)
{
	for (size_t i = 0; i < worker.npending; i++)
		qitem_free(worker.pending[i]);
	worker.npending = 0;
	worker_send_status();
}

size_t worker_queue_remaining(void)
{
	return worker.npending + (worker.running ? 1 : 0);
}

/*
 * --fail-once: the failure mode holds until a job has used it, across
 * restarts of the worker (the marker file survives them).
 */
static void apply_fail_once(void)
{
	FILE *f;

	if (worker.fail_once == NULL || strcmp(worker.fail_mode, "none") == 0)
		return;
	if (access(worker.fail_once, F_OK) == 0) {
		worker.settings.fail_mode = "none";
		return;
	}
	worker.settings.fail_mode = worker.fail_mode;
	f = fopen(worker.fail_once, "w");
	if (f)
		fclose(f);
}

static void on_kick(uv_timer_t *t)
{
	struct qitem *item;

	if (worker.running || worker.npending == 0 || worker.state == WORKER_STARTING)
		return;
	item = worker.pending[0];
	memmove(&worker.pending[0], &worker.pending[1],
		(worker.npending - 1) * sizeof *worker.pending);
	worker.npending--;
	worker.running = item;
	worker.state = WORKER_BUSY;
	apply_fail_once();
	worker.interrupt = 0;
	worker.vram_used = worker.settings.vram_bytes; /* the model is (re)loaded */
	log_info("prompt start prompt=%s number=%g", item->prompt_id, item->order);
	worker_send_status();
	run_start(item);
}

/*
 * Starts the next prompt on the next loop turn, so that a POST /prompt is
 * answered before its execution begins (ComfyUI runs it on another thread).
 */
void worker_kick(void)
{
	if (worker.running || worker.npending == 0 || worker.state == WORKER_STARTING)
		return;
	uv_timer_start(&worker.kick_timer, on_kick, 0, 0);
}

/*
 * The history is an array in completion order (GET /history lists it so)
 * plus an index by prompt id, so that finding an entry, and learning that
 * an id is new, costs no scan of up to WORKER_HISTORY_MAX entries.
 */
static struct json_object *index_of(void)
{
	if (worker.history_index == NULL)
		worker.history_index = json_object_new_object();
	return worker.history_index;
}

static void history_add(const char *prompt_id, struct json_object *entry)
{
	worker_history_delete(prompt_id); /* a duplicate id overwrites */
	if (worker.nhistory == WORKER_HISTORY_MAX) {
		json_object_object_del(index_of(), worker.history[0].prompt_id);
		free(worker.history[0].prompt_id);
		json_object_put(worker.history[0].entry);
		memmove(&worker.history[0], &worker.history[1],
			(worker.nhistory - 1) * sizeof *worker.history);
		worker.nhistory--;
	}
	json_object_object_add(index_of(), prompt_id, json_object_get(entry));
	if (worker.nhistory == worker.caphistory) {
		worker.caphistory = worker.caphistory ? worker.caphistory * 2 : 64;
		worker.history = xrealloc(worker.history, worker.caphistory * sizeof *worker.history);
	}
	worker.history[worker.nhistory].prompt_id = xstrdup(prompt_id);
	worker.history[worker.nhistory].entry = entry;
	worker.nhistory++;
}

void worker_prompt_done(struct json_object *entry)
{
	struct qitem *item = worker.running;
	struct json_object *d;

	history_add(item->prompt_id, entry);
	worker.running = NULL;
	worker.state = WORKER_IDLE;
	worker_send_status();
	if (item->client_id) {
		d = json_object_new_object();
		json_put(d, "node", NULL);
		json_put(d, "prompt_id", json_str(item->prompt_id));
		worker_send("executing", d, item->client_id);
	}
	qitem_free(item);
	worker_kick();
}

const struct json_object *worker_history_find(const char *prompt_id)
{
	struct json_object *e = NULL;

	json_object_object_get_ex(index_of(), prompt_id, &e);
	return e;
}

void worker_history_delete(const char *prompt_id)
{
	if (!json_object_object_get_ex(index_of(), prompt_id, NULL))
		return;
	json_object_object_del(index_of(), prompt_id);
	for (size_t i = 0; i < worker.nhistory; i++) {
		if (strcmp(worker.history[i].prompt_id, prompt_id) != 0)
			continue;
		free(worker.history[i].prompt_id);
		json_object_put(worker.history[i].entry);
		memmove(&worker.history[i], &worker.history[i + 1],
			(worker.nhistory - i - 1) * sizeof *worker.history);
		worker.nhistory--;
		return;
	}
}

void worker_history_clear(void)
{
	for (size_t i = 0; i < worker.nhistory; i++) {
		free(worker.history[i].prompt_id);
		json_object_put(worker.history[i].entry);
	}
	worker.nhistory = 0;
	json_object_put(worker.history_index);
	worker.history_index = NULL;
}

/* The newest socket registered under this id. */
static struct wsclient *client_find(const char *sid)
{
	for (struct wsclient *c = worker.clients; c; c = c->next)
		if (strcmp(c->sid, sid) == 0)
			return c;
	return NULL;
}

int worker_client_connected(const char *client_id)
{
	return client_find(client_id) != NULL;
}

/* {"type": type, "data": data} as text; takes ownership of data. */
static void message_text(struct buf *b, const char *type, struct json_object *data)
{
	struct json_object *msg = json_object_new_object();

	json_put(msg, "type", json_str(type));
	json_put(msg, "data", data);
	buf_init(b, (size_t)64 << 20);
	json_dump(b, msg);
	json_object_put(msg);
}

/* Sends to one socket (not to whichever socket holds its id). */
static void client_send(struct wsclient *c, const char *type, struct json_object *data)
{
	struct buf b;

	message_text(&b, type, data);
	ws_send_text(c->ws, b.data, b.len);
	buf_cleanup(&b);
}

void worker_send(const char *type, struct json_object *data, const char *to)
{
	struct buf b;

	message_text(&b, type, data);
	if (to) {
		struct wsclient *c = client_find(to);
		if (c)
			ws_send_text(c->ws, b.data, b.len);
	} else {
		for (struct wsclient *c = worker.clients; c; c = c->next)
			ws_send_text(c->ws, b.data, b.len);
	}
	buf_cleanup(&b);
}

void worker_send_binary_all(const void *p, size_t n)
{
	for (struct wsclient *c = worker.clients; c; c = c->next)
		ws_send_binary(c->ws, p, n);
}

static struct json_object *status_data(const char *sid)
{
	struct json_object *d = json_object_new_object(), *st = json_object_new_object();
	struct json_object *ei = json_object_new_object();

	json_put(ei, "queue_remaining", json_int((int64_t)worker_queue_remaining()));
	json_put(st, "exec_info", ei);
	json_put(d, "status", st);
	if (sid)
		json_put(d, "sid", json_str(sid));
	return d;
}

void worker_send_status(void)
{
	worker_send("status", status_data(NULL), NULL);
}

/* ---- WebSocket clients ---- */

static void on_ws_text(struct ws_conn *ws, const char *msg, size_t len, void *ud)
{
	struct wsclient *c = ud;
	struct json_object *o = NULL, *d;
	struct err e = {0};
	const char *type;

	if (c->got_first)
		return; /* ComfyUI acts on the first message only */
	c->got_first = 1;
	if (json_parse(msg, len, 16, &o, &e) < 0) {
		log_warn("ws message is not JSON sid=%s", log_q(c->sid));
		return;
	}
	type = json_get_str(o, "type");
	if (type && strcmp(type, "feature_flags") == 0) {
		d = json_object_new_object();
		json_put(d, "supports_preview_metadata", json_object_new_boolean(1));
		json_put(d, "max_upload_size", json_int((int64_t)worker.max_upload));
		client_send(c, "feature_flags", d);
	}
	json_object_put(o);
}

static void on_ws_close(struct ws_conn *ws, void *ud)
{
	struct wsclient *c = ud, **pp;

	for (pp = &worker.clients; *pp; pp = &(*pp)->next) {
		if (*pp == c) {
			*pp = c->next;
			break;
		}
	}
	log_debug("ws closed sid=%s", log_q(c->sid));
	free(c->sid);
	free(c);
}

static const struct ws_callbacks ws_cbs = {
	.on_text = on_ws_text,
	.on_close = on_ws_close,
};

/* GET /ws?clientId=...: register the socket, then status (with sid). */
void worker_ws_open(struct http_req *req);
void worker_ws_open(struct http_req *req)
{
	const char *cid = http_req_query(req, "clientId");
	struct wsclient *c = xcalloc(1, sizeof *c);
	char hex[33];
	const char *node;

	if (cid == NULL || *cid == '\0') {
		util_uuid4_hex(hex);
		cid = hex;
	}
	c->sid = xstrdup(cid);
	c->ws = http_ws_accept(req, &ws_cbs, c);
	if (c->ws == NULL) {
		free(c->sid);
		free(c);
		return;
	}
	c->next = worker.clients; /* newest first, so client_find sees it first */
	worker.clients = c;
	client_send(c, "status", status_data(c->sid));
	node = run_current_node();
	if (node && worker.running && worker.running->client_id &&
	    strcmp(worker.running->client_id, c->sid) == 0) {
		struct json_object *d = json_object_new_object();
		json_put(d, "node", json_str(node));
		client_send(c, "executing", d);
	}
}
