/*
 * api_admin.c - the operator API: models and runners with their state,
 * GPU memory reserved and measured, current job, last use and restarts;
 * start, stop and drain a model; a job with the model that served it. Operators see model ids and technical
 * causes here; users never do.
 *
 * When FNRUN_ADMIN_TOKEN is set, every admin request must carry
 * "Authorization: Bearer <token>"; without it the API relies on binding to
 * loopback (and the origin guard against browsers on other origins).
 */
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "errors.h"
#include "http.h"
#include "json.h"
#include "reload.h"
#include "scheduler.h"

static int authorized(struct http_req *req)
{
	const char *token = getenv("FNRUN_ADMIN_TOKEN");
	const char *auth = http_req_header(req, "Authorization");

	if (token == NULL || *token == '\0')
		return 1;
	if (auth && strncmp(auth, "Bearer ", 7) == 0 && strcmp(auth + 7, token) == 0)
		return 1;
	http_reply_error(req, 403, "FORBIDDEN", "The admin API needs the operator token.", NULL);
	return 0;
}

static void reply_owned(struct http_req *req, struct json_object *o)
{
	http_reply_json(req, 200, o);
	json_object_put(o);
}

void api_admin_runners(struct http_req *req)
{
	if (authorized(req))
		reply_owned(req, sched_admin_runners());
}

void api_admin_models(struct http_req *req)
{
	if (authorized(req))
		reply_owned(req, sched_admin_models());
}

/* POST /api/admin/models/{id}/start|stop|drain */
void api_admin_model_action(struct http_req *req)
{
	const char *rest = http_req_param(req), *slash = strrchr(rest, '/');
	char id[256];
	struct err e = {0};

	if (!authorized(req))
		return;
	if (slash == NULL || slash == rest || (size_t)(slash - rest) >= sizeof id) {
		http_reply_error(req, 404, "NOT_FOUND", NULL, NULL);
		return;
	}
	memcpy(id, rest, (size_t)(slash - rest));
	id[slash - rest] = '\0';
	if (sched_admin_action(id, slash + 1, &e) < 0) {
		http_reply_error(req, err_http_status(e.code),
				 e.code == ERR_NOT_FOUND ? "NOT_FOUND" : "INVALID_INPUT", e.msg, "action");
		return;
	}
	reply_owned(req, sched_admin_models());
}

/* GET /api/admin/jobs/{id} */
void api_admin_job(struct http_req *req)
{
	const char *id = http_req_param(req);
	struct json_object *o;
	struct err e = {0};

	if (!authorized(req))
		return;
	if (*id == '\0' || strlen(id) > 64 || strchr(id, '/')) {
		http_reply_error(req, 404, "NOT_FOUND", NULL, NULL);
		return;
	}
	o = sched_admin_job(id, &e);
	if (o == NULL) {
		http_reply_err(req, &e);
		return;
	}
	reply_owned(req, o);
}

/* GET /api/admin/registry: the registry file, its last load, and why a change was refused. */
void api_admin_registry(struct http_req *req)
{
	if (authorized(req))
		reply_owned(req, reload_status());
}
