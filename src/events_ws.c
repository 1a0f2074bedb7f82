/*
 * events_ws.c - the WebSocket transport of job events (events_ws): a
 * client subscribes and unsubscribes with JSON text messages and gets the
 * same events as an SSE stream, framed as JSON.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "errors.h"
#include "events.h"
#include "events_internal.h"
#include "http.h"
#include "job.h"
#include "json.h"
#include "log.h"
#include "server.h"
#include "util.h"
#include "ws.h"

#define EV_WS_DEPTH 8               /* JSON nesting of a client message */
#define EV_WS_USAGE "send text messages of JSON such as {\"subscribe\": [\"JOB_ID\"]}"

/* Sends {"event": "error", "data": {code, message, suggestion, action, field?, job_id?}}. */
static void ws_send_error(struct watcher *w, const char *code, const char *message,
			  const char *field, const char *job_id)
{
	struct json_object *o = json_object_new_object();
	struct json_object *e = errors_json(code, message, field);
	struct buf b;

	if (job_id != NULL)
		json_put(e, "job_id", json_str(job_id));
	json_put(o, "event", json_str("error"));
	json_put(o, "data", e);
	buf_init(&b, EV_MAX_EVENT);
	if (json_dump(&b, o) == 0)
		events__watcher_send(w, b.data, b.len);
	buf_cleanup(&b);
	json_object_put(o);
}

/* 1 when ids[i] (strings) repeats an earlier one. */
static int id_repeats(struct json_object *ids, size_t i)
{
	const char *id = json_object_get_string(json_object_array_get_idx(ids, i));

	for (size_t k = 0; k < i; k++)
		if (strcmp(json_object_get_string(json_object_array_get_idx(ids, k)), id) == 0)
			return 1;
	return 0;
}

/*
 * The view of id for a subscription, or NULL after telling the peer why:
 * an unknown job, or one more live job than a WebSocket may follow.
 * *added counts the live jobs this message adds. Caller owns the view.
 */
static struct json_object *ws_view(struct watcher *w, const char *id, size_t *added)
{
	struct err err = {0};
	struct json_object *v = events__view_find(id, w->owner[0] ? w->owner : NULL, &err);

	if (v == NULL) {
		ws_send_error(w, err.code == ERR_NOT_FOUND ? "NOT_FOUND" : "INTERNAL", NULL, NULL,
			      id);
		return NULL;
	}
	if (events__view_terminal(v) || events__sub_find(w, events__job_lookup(id)) != NULL)
		return v;
	if (w->nsubs + *added >= EVENTS_WS_MAX_JOBS) {
		ws_send_error(w, "INVALID_INPUT",
			      "subscribe: a connection follows at most 1000 jobs at once; "
			      "unsubscribe from some first",
			      "subscribe", id);
		json_object_put(v);
		return NULL;
	}
	(*added)++;
	return v;
}

/* Follows each job of ids (a checked array of strings); see events.h. */
static void ws_subscribe(struct watcher *w, struct json_object *ids, uint64_t after)
{
	size_t n = json_object_array_length(ids), nv = 0, added = 0;
	struct json_object **views;

	if (n > EVENTS_WS_MAX_JOBS) {
		ws_send_error(w, "INVALID_INPUT",
			      "subscribe: give at most 1000 job ids in one message", "subscribe",
			      NULL);
		return;
	}
	views = xcalloc(n ? n : 1, sizeof *views);
	for (size_t i = 0; i < n && !w->ending; i++) {
		const char *id = json_object_get_string(json_object_array_get_idx(ids, i));
		struct json_object *v = id_repeats(ids, i) ? NULL : ws_view(w, id, &added);

		if (v != NULL)
			views[nv++] = v;
	}
	if (!w->ending)
		events__watcher_begin(w, views, nv, after);
	events__views_free(views, nv);
}

/* Stops following each job of ids; ids it does not follow are ignored. */
static void ws_unsubscribe(struct watcher *w, struct json_object *ids)
{
	for (size_t i = 0; i < json_object_array_length(ids); i++) {
		const char *id = json_object_get_string(json_object_array_get_idx(ids, i));
		struct ev_sub *s = events__sub_find(w, events__job_lookup(id));

		if (s != NULL)
			events__sub_remove(s);
	}
}

/* 1 when v is an array of at most EVENTS_WS_MAX_JOBS strings. */
static int id_array_ok(struct json_object *v)
{
	size_t n;

	if (!json_object_is_type(v, json_type_array))
		return 0;
	n = json_object_array_length(v);
	for (size_t i = 0; i < n; i++)
		if (!json_object_is_type(json_object_array_get_idx(v, i), json_type_string))
			return 0;
	return n <= EVENTS_WS_MAX_JOBS;
}

/*
 * Checks a client message {subscribe?, unsubscribe?, after?}. Returns 0,
 * or -1 with why (naming the field) and *field filled.
 */
static int ws_message_check(struct json_object *o, char why[160], const char **field)
{
	struct json_object *after = json_get(o, "after");

	json_object_object_foreach(o, key, val) {
		int list = strcmp(key, "subscribe") == 0 || strcmp(key, "unsubscribe") == 0;

		*field = key;
		if (!list && strcmp(key, "after") != 0) {
			snprintf(why, 160,
				 "%.40s: unknown field; allowed: subscribe, unsubscribe, after", key);
			return -1;
		}
		if (list && !id_array_ok(val)) {
			snprintf(why, 160, "%s: must be an array of at most 1000 job ids", key);
			return -1;
		}
	}
	*field = "after";
	if (after != NULL && (!json_object_is_type(after, json_type_int) ||
			      json_object_get_int64(after) < 0)) {
		snprintf(why, 160, "after: must be an event id, a whole number");
		return -1;
	}
	*field = "subscribe";
	if (json_get(o, "subscribe") == NULL && json_get(o, "unsubscribe") == NULL) {
		snprintf(why, 160, "subscribe: is required, e.g. {\"subscribe\": [\"JOB_ID\"]}");
		return -1;
	}
	return 0;
}

/* Does what a checked client message asks: unsubscribe first, then subscribe. */
static void ws_message(struct watcher *w, struct json_object *o)
{
	struct json_object *after = json_get(o, "after");

	if (json_get(o, "unsubscribe") != NULL)
		ws_unsubscribe(w, json_get(o, "unsubscribe"));
	if (json_get(o, "subscribe") != NULL)
		ws_subscribe(w, json_get(o, "subscribe"),
			     after ? (uint64_t)json_object_get_int64(after) : 0);
}

static void ws_on_text(struct ws_conn *ws, const char *msg, size_t len, void *ud)
{
	struct watcher *w = ud;
	struct json_object *o = NULL;
	struct err err = {0};
	const char *field = NULL;
	char why[160];

	(void)ws;
	if (len > EVENTS_WS_MAX_MESSAGE) {
		log_info("ws watcher dropped reason=message_too_big bytes=%zu", len);
		events__watcher_end(w, EV_WS_TOO_BIG);
		return;
	}
	if (events__burst_begin(w) < 0)
		return;
	if (json_parse_strict(msg, len, EV_WS_DEPTH, &o, &err) < 0 ||
	    !json_object_is_type(o, json_type_object))
		ws_send_error(w, "INVALID_INPUT", EV_WS_USAGE, NULL, NULL);
	else if (ws_message_check(o, why, &field) < 0)
		ws_send_error(w, "INVALID_INPUT", why, field, NULL);
	else
		ws_message(w, o);
	w->burst = 0;
	json_object_put(o);
}

static void ws_on_binary(struct ws_conn *ws, const void *msg, size_t len, void *ud)
{
	(void)ws;
	(void)msg;
	(void)len;
	ws_send_error(ud, "INVALID_INPUT", EV_WS_USAGE, NULL, NULL);
}

static void ws_on_close(struct ws_conn *ws, void *ud)
{
	(void)ws;
	events__watcher_free(ud);
}

static const struct ws_callbacks ws_callbacks = {ws_on_text, ws_on_binary, ws_on_close};

/* "a,b" as a JSON array of its non-empty parts. Caller owns the result. */
static struct json_object *id_list(const char *csv)
{
	struct json_object *a = json_object_new_array();
	char *copy = xstrdup(csv), *save = NULL;

	for (char *t = strtok_r(copy, ",", &save); t != NULL; t = strtok_r(NULL, ",", &save))
		json_object_array_add(a, json_str(t));
	free(copy);
	return a;
}

void events_ws(struct http_req *req, const char *owner)
{
	const char *q = http_req_query(req, "jobs");
	uint64_t after = events__parse_seq(http_req_query(req, "after"));
	struct json_object *ids;
	struct watcher *w;

	if (events__watchers_full(req))
		return;
	/* The request's strings go with it once the upgrade consumes it. */
	ids = id_list(q ? q : "");
	w = events__watcher_new(EV_WS);
	snprintf(w->owner, sizeof w->owner, "%s", owner ? owner : "");
	w->ws = http_ws_accept(req, &ws_callbacks, w);
	if (w->ws == NULL) {
		free(w); /* its callbacks are never called */
		json_object_put(ids);
		return;
	}
	events__watcher_link(w);
	if (json_object_array_length(ids) > 0 && events__burst_begin(w) == 0) {
		ws_subscribe(w, ids, after);
		w->burst = 0;
	}
	json_object_put(ids);
	events__ping_update();
}

