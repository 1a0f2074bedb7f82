/*
 * errors.c - the user-facing error catalog and error replies.
 *
 * Invariants: every catalog text is plain language a user can act on; none
 * names a model, runner, command, GPU library or stack trace. This file is
 * the only place that formats an error reply body.
 */
#include <string.h>

#include "errors.h"
#include "http.h"
#include "json.h"
#include "log.h"

static const struct user_error catalog[] = {
	{"OUT_OF_MEMORY", "This quality setting needs more resources than are free right now.",
	 "Try a lower quality, or try again in a few minutes.", "REDUCE_QUALITY", 503},
	{"MODEL_UNAVAILABLE", "This function can't run right now.",
	 "Try again in a few minutes, or pick another quality.", "RETRY", 503},
	{"TIMEOUT", "This took too long and was stopped.",
	 "Try again, or pick a faster quality.", "RETRY", 504},
	{"INVALID_INPUT", "Some of the input isn't valid.",
	 "Check the field named in the message and try again.", "EDIT_INPUT", 400},
	{"CANCELLED", "The job was cancelled.", "Start it again whenever you like.", "NONE",
	 200},
	{"OUTPUT_LOST", "The result was made but could not be saved.", "Please run it again.",
	 "RETRY", 500},
	{"INTERNAL", "Something went wrong on our side.",
	 "Please try again. If it keeps happening, tell the operator.", "RETRY", 500},
	{"QUEUE_FULL", "Too many requests are waiting right now.",
	 "Wait a moment and try again.", "WAIT", 503},
	{"NOT_FOUND", "We couldn't find that.", "Check the link or the job id.", "NONE", 404},
	{"TOO_LARGE", "The request is too large.", "Use a shorter input or a smaller file.",
	 "EDIT_INPUT", 413},
	{"ALREADY_FINISHED", "This job has already finished, so it can't be cancelled.",
	 "Start a new job if you want to run it again.", "NONE", 409},
	{"FORBIDDEN", "That isn't allowed.", "Check the link.", "NONE", 403},
	{"UNAUTHORIZED", "This needs a key.",
	 "Sign in with the key your operator gave you (Authorization: Bearer KEY).", "SIGN_IN", 401},
	{"DUPLICATE_REQUEST", "This idempotency key was already used for a different request.",
	 "Send a new request with a new idempotency_key, or the first one again unchanged.",
	 "EDIT_INPUT", 409},
	{"QUOTA_EXCEEDED", "You have reached a limit of your key.",
	 "Wait a little, then try again.", "WAIT", 429},
	{"QUALITY_PAUSED", "This quality is paused for now.",
	 "Pick another quality, or try again later.", "CHANGE_QUALITY", 503},
	{"SERVICE_UNAVAILABLE", "We can't take new requests right now.",
	 "Try again in a minute; nothing you sent was kept.", "RETRY", 503},
};

/* struct err codes to catalog codes; codes missing here are INTERNAL. */
static const struct {
	int err;
	const char *code;
	int status;
	int pass_message; /* 1: e->msg is written for users and is sent */
} err_map[] = {
	{ERR_INVALID, "INVALID_INPUT", 400, 1},
	{ERR_NOT_FOUND, "NOT_FOUND", 404, 1},
	{ERR_FORBIDDEN, "FORBIDDEN", 403, 1},
	{ERR_TOO_LARGE, "TOO_LARGE", 413, 1},
	{ERR_CONFLICT, "ALREADY_FINISHED", 409, 0},
	{ERR_FULL, "QUEUE_FULL", 503, 0},
	{ERR_UNAVAILABLE, "MODEL_UNAVAILABLE", 503, 0},
	{ERR_TIMEOUT, "TIMEOUT", 504, 0},
	{ERR_STORE, "SERVICE_UNAVAILABLE", 503, 0},
	{ERR_DUPLICATE, "DUPLICATE_REQUEST", 409, 1},
	{ERR_PAUSED, "QUALITY_PAUSED", 503, 0},
	{ERR_QUOTA, "QUOTA_EXCEEDED", 429, 1},
};

const struct user_error *errors_find(const char *code)
{
	if (code == NULL)
		return NULL;
	for (size_t i = 0; i < sizeof catalog / sizeof catalog[0]; i++)
		if (strcmp(catalog[i].code, code) == 0)
			return &catalog[i];
	return NULL;
}

struct json_object *errors_json(const char *code, const char *message, const char *field)
{
	const struct user_error *ue = errors_find(code);
	struct json_object *o = json_object_new_object();

	if (ue == NULL)
		ue = errors_find("INTERNAL");
	json_put(o, "code", json_str(code ? code : ue->code));
	json_put(o, "message", json_str(message && message[0] ? message : ue->message));
	json_put(o, "suggestion", json_str(ue->suggestion));
	json_put(o, "action", json_str(ue->action));
	if (field != NULL && field[0] != '\0')
		json_put(o, "field", json_str(field));
	return o;
}

static int field_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '_' || c == '.' || c == '[' || c == ']' || c == '-';
}

/* The "name" of a message "name: ...", into field (empty when none). */
static void field_from_message(const char *msg, char *field, size_t size)
{
	size_t n = 0;

	field[0] = '\0';
	while (field_char(msg[n]))
		n++;
	if (n == 0 || n >= size || msg[n] != ':' || msg[n + 1] != ' ')
		return;
	memcpy(field, msg, n);
	field[n] = '\0';
}

void errors_from_err(const struct err *e, struct errors_reply *out)
{
	out->status = 500;
	out->code = "INTERNAL";
	out->message = NULL;
	out->field[0] = '\0';
	for (size_t i = 0; i < sizeof err_map / sizeof err_map[0]; i++) {
		if (err_map[i].err != e->code)
			continue;
		out->status = err_map[i].status;
		out->code = err_map[i].code;
		if (err_map[i].pass_message && e->msg[0] != '\0') {
			out->message = e->msg;
			field_from_message(e->msg, out->field, sizeof out->field);
		}
		return;
	}
}

void http_reply_error(struct http_req *req, int status, const char *code,
		      const char *message, const char *field)
{
	struct json_object *body = json_object_new_object();

	json_put(body, "error", errors_json(code, message, field));
	if (status == 503)
		http_reply_header(req, "Retry-After", "5");
	http_reply_json(req, status, body);
	json_object_put(body);
}

void http_reply_err(struct http_req *req, const struct err *e)
{
	struct errors_reply r;

	errors_from_err(e, &r);
	if (r.status >= 500)
		log_warn("request failed method=%s path=%s code=%s cause=%s",
			 http_req_method(req), log_q(http_req_path(req)), r.code, log_q(e->msg));
	else
		log_debug("request refused method=%s path=%s code=%s cause=%s",
			  http_req_method(req), log_q(http_req_path(req)), r.code, log_q(e->msg));
	http_reply_error(req, r.status, r.code, r.message, r.field[0] ? r.field : NULL);
}

/*
 * Bodies for the answers the HTTP layer makes before any handler runs, in
 * the same error shape as every other reply. Built once per status.
 */
const char *errors_http_body(int status, const char **content_type)
{
	static const struct {
		int status;
		const char *code, *message;
	} map[] = {
		{400, "INVALID_INPUT", "The request could not be read as HTTP."},
		{404, "NOT_FOUND", "There is nothing at this address."},
		{405, "INVALID_INPUT", "This address does not accept that method."},
		{413, "TOO_LARGE", "The request body is larger than the server accepts."},
		{431, "TOO_LARGE", "The request headers are too large."},
		{503, "QUEUE_FULL", "The server is too busy to take this connection."},
	};
	static char *bodies[sizeof map / sizeof map[0]];

	for (size_t i = 0; i < sizeof map / sizeof map[0]; i++) {
		if (map[i].status != status)
			continue;
		if (bodies[i] == NULL) {
			struct json_object *o = json_object_new_object();
			json_object_object_add(o, "error", errors_json(map[i].code, map[i].message, NULL));
			bodies[i] = json_dumps(o);
			json_object_put(o);
		}
		*content_type = "application/json; charset=utf-8";
		return bodies[i];
	}
	return NULL;
}
