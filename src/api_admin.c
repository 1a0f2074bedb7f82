/*
 * api_admin.c - the operator API: models and runners with their state,
 * GPU memory reserved and measured, current job, last use and restarts;
 * start, stop and drain a model; a job with the model that served it. Operators see model ids and technical
 * causes here; users never do.
 *
 * Every admin request needs an operator credential (auth.h): an operator
 * key, or FNRUN_ADMIN_TOKEN, as a Bearer token or the password of HTTP
 * Basic (what a browser sends for the /admin page). With neither keys nor
 * a token, the API relies on binding to loopback (and the origin guard
 * against browsers on other origins).
 */
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "auth.h"
#include "errors.h"
#include "http.h"
#include "json.h"
#include "modelinfo.h"
#include "reload.h"
#include "scheduler.h"
#include "server.h"
#include "store_keys.h"

int api_admin_authorized(struct http_req *req, int challenge)
{
	return auth_operator_or_reply(req, challenge);
}

static int authorized(struct http_req *req)
{
	return api_admin_authorized(req, 0);
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

/*
 * The {id}/WHAT after /api/admin/models/: the id into id (n bytes), and
 * WHAT; NULL when the path is not of that form.
 */
static const char *model_path(struct http_req *req, char *id, size_t n)
{
	const char *rest = http_req_param(req), *slash = strrchr(rest, '/');

	if (slash == NULL || slash == rest || (size_t)(slash - rest) >= n)
		return NULL;
	memcpy(id, rest, (size_t)(slash - rest));
	id[slash - rest] = '\0';
	return slash + 1;
}

/* {"weight": N} of a request into *w; answers 400 and returns -1 when it is not one. */
static int weight_of(struct http_req *req, int64_t *w)
{
	size_t len;
	const char *body = http_req_body(req, &len);
	struct json_object *o = NULL, *v;
	struct err e = {0};
	int ok;

	ok = json_parse(body ? body : "", body ? len : 0, 4, &o, &e) == 0 &&
	     json_object_is_type(o, json_type_object) && json_object_object_length(o) == 1 &&
	     (v = json_get(o, "weight")) != NULL && json_object_is_type(v, json_type_int);
	if (ok)
		*w = json_object_get_int64(json_get(o, "weight"));
	json_object_put(o);
	if (!ok || *w < 0 || *w > 1000000) {
		http_reply_error(req, 400, "INVALID_INPUT",
				 "weight: send {\"weight\": N}, an integer from 0 to 1000000", "weight");
		return -1;
	}
	return 0;
}

/*
 * POST /api/admin/models/{id}/start|stop|drain|promote|rollback|calibrate,
 * and {id}/weight {"weight": N}
 */
void api_admin_model_action(struct http_req *req)
{
	char id[256];
	const char *action = model_path(req, id, sizeof id);
	struct err e = {0};
	int64_t weight = 0;

	if (!authorized(req))
		return;
	if (action == NULL) {
		http_reply_error(req, 404, "NOT_FOUND", NULL, NULL);
		return;
	}
	if (strcmp(action, "weight") == 0) {
		if (weight_of(req, &weight) < 0)
			return;
		if (sched_admin_weight(id, weight, &e) < 0) {
			http_reply_error(req, err_http_status(e.code),
					 e.code == ERR_NOT_FOUND ? "NOT_FOUND" : "INVALID_INPUT", e.msg,
					 "weight");
			return;
		}
	} else if (sched_admin_action(id, action, &e) < 0) {
		http_reply_error(req, err_http_status(e.code),
				 e.code == ERR_NOT_FOUND ? "NOT_FOUND" :
				 e.code == ERR_CONFLICT ? "CONFLICT" : "INVALID_INPUT", e.msg, "action");
		return;
	}
	reply_owned(req, sched_admin_models());
}

/* GET /api/admin/models/{id}/nodes */
void api_admin_model_get(struct http_req *req)
{
	char id[256];
	const char *what = model_path(req, id, sizeof id);
	struct json_object *o = NULL;

	if (!authorized(req))
		return;
	if (what != NULL && strcmp(what, "nodes") == 0)
		o = modelinfo_nodes_view(server.reg, id);
	if (o == NULL) {
		http_reply_error(req, 404, "NOT_FOUND", NULL, NULL);
		return;
	}
	reply_owned(req, o);
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

/* GET /api/admin/keys: every API key (never the key itself) with its use and quotas. */
void api_admin_keys(struct http_req *req)
{
	struct key_row *v = NULL;
	size_t n = 0;
	struct err err = {0};
	struct json_object *o, *a;

	if (!authorized(req))
		return;
	if (store_key_list(server.keys, &v, &n, &err) < 0) {
		http_reply_err(req, &err);
		return;
	}
	a = json_object_new_array();
	for (size_t i = 0; i < n; i++) {
		struct json_object *k = sched_quota_json(v[i].id, v[i].name);
		json_put(k, "id", json_str(v[i].id));
		json_put(k, "name", json_str(v[i].name));
		json_put(k, "scope", json_str(key_scope_name(v[i].scope)));
		json_put(k, "created_at", json_int(v[i].created_at));
		json_put(k, "revoked_at", v[i].revoked_at ? json_int(v[i].revoked_at) : NULL);
		json_object_array_add(a, k);
	}
	free(v);
	o = json_object_new_object();
	json_put(o, "keys", a);
	json_put(o, "keys_required", json_object_new_boolean(auth_keys_active()));
	reply_owned(req, o);
}

/* GET /api/admin/status: whether the gateway takes jobs, and why not; the store's state. */
void api_admin_status(struct http_req *req)
{
	struct json_object *o;
	const char *why;

	if (!authorized(req))
		return;
	why = sched_not_ready();
	o = json_object_new_object();
	json_put(o, "ready", json_object_new_boolean(why == NULL));
	json_put(o, "reason", why ? json_str(why) : NULL);
	json_put(o, "store", sched_store_status());
	json_put(o, "queued", json_int((int64_t)sched_queued()));
	reply_owned(req, o);
}
