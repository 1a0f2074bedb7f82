/*
 * errors.h - the user-facing error catalog, and the one function that
 * formats error replies (docs/style.md §4).
 *
 * Every code has a plain-language message, a suggestion and an action a
 * user interface can offer (REDUCE_QUALITY, RETRY, WAIT, EDIT_INPUT, NONE).
 * Catalog texts never name a model, runner, command, CUDA or a stack trace;
 * technical causes go to the log, the admin API and metrics.
 *
 * Error replies are {"error": {"code", "message", "suggestion", "action",
 * "field"?}}. Handlers never format errors themselves: they call
 * http_reply_error() or http_reply_err().
 */
#ifndef FNRUN_ERRORS_H
#define FNRUN_ERRORS_H

#include <stddef.h>

#include "err.h"

struct http_req;
struct json_object;

struct user_error {
	const char *code;       /* stable, upper case: "OUT_OF_MEMORY" */
	const char *message;    /* what happened, one plain sentence */
	const char *suggestion; /* what the user can do about it */
	const char *action;     /* REDUCE_QUALITY, RETRY, WAIT, EDIT_INPUT, NONE */
	int status;             /* the HTTP status it usually goes with */
};

/* The catalog entry for code, or NULL when unknown. Static; never freed. */
const struct user_error *errors_find(const char *code);

/*
 * The inner error object {code, message, suggestion, action, field?}.
 * message NULL takes the catalog's; field NULL or "" is left out. An
 * unknown code keeps its name but takes INTERNAL's texts. Caller owns the
 * result (json_object_put).
 */
struct json_object *errors_json(const char *code, const char *message, const char *field);

/* How a struct err is answered; see errors_from_err(). */
struct errors_reply {
	int status;          /* HTTP status */
	const char *code;    /* catalog code; static */
	const char *message; /* borrowed from the err, or NULL: the catalog's */
	char field[64];      /* the field the message names, or "" */
};

/*
 * Maps e to a reply: ERR_INVALID -> 400 INVALID_INPUT, ERR_NOT_FOUND -> 404
 * NOT_FOUND, ERR_TOO_LARGE -> 413 TOO_LARGE, ERR_CONFLICT -> 409
 * ALREADY_FINISHED, ERR_FORBIDDEN -> 403 FORBIDDEN, ERR_FULL -> 503
 * QUEUE_FULL, ERR_UNAVAILABLE -> 503 MODEL_UNAVAILABLE, ERR_TIMEOUT -> 504
 * TIMEOUT, anything else -> 500 INTERNAL. 400, 403, 404 and 413 replies
 * carry e->msg (input validation text, written for users); the others use
 * the catalog's message. A message starting "name: " (name made of letters, digits, '_',
 * '.', '[', ']', '-') names that field. out->message borrows from e.
 */
void errors_from_err(const struct err *e, struct errors_reply *out);

/*
 * Answers req with status and {"error": errors_json(code, message, field)}.
 * 503 replies carry Retry-After: 5. The request is consumed.
 */
void http_reply_error(struct http_req *req, int status, const char *code,
		      const char *message, const char *field);

/*
 * Answers req for e as errors_from_err() maps it. 5xx causes are logged
 * (the technical text never reaches the client). The request is consumed.
 */
void http_reply_err(struct http_req *req, const struct err *e);
/*
 * The body of a reply the HTTP layer makes itself (404, 405, 413, ...), in
 * the error shape; static storage. NULL for other statuses. For
 * http_config.error_body.
 */
const char *errors_http_body(int status, const char **content_type);

#endif
