/*
 * api.h - the gateway's user API (docs/design.md §5): the routes table and its
 * handlers, served on server.cfg.listen_host:listen_port.
 *
 * How to add a route: one line in `routes[]` in api.c plus one handler
 * `static void api_<name>(struct http_req *req)` that answers exactly once,
 * with http_reply_json() or, for every error, http_reply_error() or
 * http_reply_err() (errors.h).
 */
#ifndef FNRUN_API_H
#define FNRUN_API_H

#include <stddef.h>

#include "err.h"

struct http_server;
struct json_object;
struct reg_function;
struct registry;

/*
 * Binds server.cfg.listen_host:listen_port on server.loop and serves the
 * routes. Returns the server (stored by the caller in server.http), or NULL
 * with err set. Close with http_server_close().
 */
struct http_server *api_start(struct err *err);

/* A POST /api/generate body, checked against the catalog. */
struct api_generate {
	const struct reg_function *fn; /* borrowed from the registry */
	int quality;                   /* index into fn->qualities */
	struct json_object *params;    /* validated with defaults; owned */
	int priority;                  /* 0..10, default 5 */
	char *idem;                    /* idempotency key, or NULL; owned */
	char *user;                    /* who the request is for (A/B stickiness), or NULL; owned */
	struct json_object *sent;      /* params as sent, before defaults; owned */
};

#define API_PRIORITY_DEFAULT 5
#define API_PRIORITY_MAX 10
#define API_IDEM_MAX 200 /* characters in an idempotency key */
#define API_USER_MAX 128 /* characters in a user */

/*
 * Parses and validates a generate body of len bytes against reg: a JSON
 * object nesting at most max_depth levels, with only the fields function,
 * quality, params, priority and idempotency_key (a JSON null counts as not
 * given). On success fills *out (free with api_generate_cleanup()). On
 * failure returns -1 with ERR_INVALID and a message "FIELD: what is wrong;
 * what is allowed" (the unknown function, quality or field named, the
 * allowed ones listed), and *out holds nothing.
 */
int api_generate_parse(const struct registry *reg, const char *body, size_t len,
		       int max_depth, struct api_generate *out, struct err *err);
/* Frees what g owns; g may be reused. */
void api_generate_cleanup(struct api_generate *g);

/* The Content-Type for a file name, by extension; a static string. */
const char *api_content_type(const char *name);

struct http_req;

/*
 * The operator API (api_admin.c). api_admin_authorized: 1 when the request
 * may see operator data (no FNRUN_ADMIN_TOKEN set, or its Bearer token or
 * Basic password is the token); else it answers req (403, or with
 * challenge 401 and a Basic challenge, for browsers) and returns 0.
 */
int api_admin_authorized(struct http_req *req, int challenge);
void api_admin_runners(struct http_req *req);
void api_admin_models(struct http_req *req);
void api_admin_model_action(struct http_req *req);
/* GET /api/admin/models/{id}/nodes: the node classes of its server (modelinfo.h). */
void api_admin_model_get(struct http_req *req);
void api_admin_job(struct http_req *req);
/*
 * api_metrics.c: GET /metrics (Prometheus text; operator token when set),
 * GET /admin/... (the operator page and the data it polls), and
 * GET /api/admin/events (recent operator events).
 */
void api_metrics(struct http_req *req);
void api_admin_page(struct http_req *req);
void api_admin_events(struct http_req *req);
void api_admin_keys(struct http_req *req);
void api_admin_status(struct http_req *req);
void api_admin_registry(struct http_req *req);

#endif
