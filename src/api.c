/*
 * api.c - the user API's routes and handlers (docs/design.md §5).
 *
 * Each handler answers its request exactly once. Every error goes through
 * http_reply_error()/http_reply_err() (errors.c); a bad request queues
 * nothing. Views of jobs come from the scheduler (view.c builds them), the
 * same object the event streams carry, so the API never shows a model, runner or
 * technical cause.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "api.h"
#include "auth.h"
#include "errors.h"
#include "events.h"
#include "http.h"
#include "job.h"
#include "json.h"
#include "log.h"
#include "modelinfo.h"
#include "outputs.h"
#include "registry.h"
#include "scheduler.h"
#include "static.h"
#include "server.h"
#include "store.h"
#include "util.h"

#define API_LIST_DEFAULT 50
#define API_LIST_MAX 200
#define API_ID_MAX 64 /* bytes of a job id we look up at all */

static void api_generate(struct http_req *req);
static void api_job_get(struct http_req *req);
static void api_job_post(struct http_req *req);
static void api_jobs_list(struct http_req *req);
static void api_events(struct http_req *req);
static void api_functions(struct http_req *req);
static void api_outputs(struct http_req *req);
static void api_health(struct http_req *req);
static void api_ready(struct http_req *req);
static void api_session_get(struct http_req *req);
static void api_ws(struct http_req *req);
static void api_session_post(struct http_req *req);
static void api_session_delete(struct http_req *req);

/* max_body 0: the server's, server.cfg.max_body (set in api_start). */
static const struct http_route routes[] = {
	{"POST", "/api/generate", api_generate, 0, 0},
	{"GET", "/api/jobs", api_jobs_list, 0, 0},
	{"GET", "/api/jobs/", api_job_get, HTTP_ROUTE_PREFIX, 0},   /* {id}, {id}/events */
	{"POST", "/api/jobs/", api_job_post, HTTP_ROUTE_PREFIX, 0}, /* {id}/cancel */
	{"GET", "/api/events", api_events, 0, 0},
	{"GET", "/api/ws", api_ws, 0, 0},
	{"GET", "/api/functions", api_functions, 0, 0},
	{"GET", "/api/session", api_session_get, 0, 0},
	{"POST", "/api/session", api_session_post, 0, 0},
	{"DELETE", "/api/session", api_session_delete, 0, 0},
	{"GET", "/api/outputs/", api_outputs, HTTP_ROUTE_PREFIX, 0},
	{"GET", "/health", api_health, 0, 0},
	{"GET", "/ready", api_ready, 0, 0},
	{"GET", "/metrics", api_metrics, 0, 0},
	{"GET", "/api/admin/runners", api_admin_runners, 0, 0},
	{"GET", "/api/admin/models", api_admin_models, 0, 0},
	{"POST", "/api/admin/models/", api_admin_model_action, HTTP_ROUTE_PREFIX, 0}, /* {id}/start|stop|drain */
	{"GET", "/api/admin/models/", api_admin_model_get, HTTP_ROUTE_PREFIX, 0}, /* {id}/nodes */
	{"GET", "/api/admin/jobs/", api_admin_job, HTTP_ROUTE_PREFIX, 0}, /* {id} */
	{"GET", "/api/admin/events", api_admin_events, 0, 0},
	{"GET", "/admin", api_admin_page, HTTP_ROUTE_PREFIX, 0}, /* the operator page: api_metrics.c */
	{"GET", "/api/admin/registry", api_admin_registry, 0, 0},
	{"GET", "/api/admin/keys", api_admin_keys, 0, 0},
	{"GET", "/api/admin/status", api_admin_status, 0, 0},
	{"GET", "/", static_web, HTTP_ROUTE_PREFIX, 0}, /* web/: the page; keep it last */
};

/* Host names the API answers to: the current registry decides (a reload applies). */
static int host_ok(const char *host, size_t len)
{
	return registry_host_ok(server.reg, host, len);
}

struct http_server *api_start(struct err *err)
{
	struct http_config cfg = {
		.host = server.cfg.listen_host,
		.port = server.cfg.listen_port,
		.routes = routes,
		.nroutes = sizeof routes / sizeof routes[0],
		.max_body = server.cfg.max_body > 0 ? (size_t)server.cfg.max_body : 0,
		/*
		 * A web page on another origin must not drive a daemon on
		 * loopback from the user's browser (CSRF, DNS rebinding).
		 */
		.origin_guard = 1,
		.host_ok = host_ok,
		.error_body = errors_http_body,
	};

	struct http_server *s = http_server_new(server.loop, &cfg, err);

	/* Clients send only small subscribe messages: refuse big ones early. */
	if (s)
		http_server_set_limits(s, &(struct http_limits){.ws_max_message = EVENTS_WS_MAX_MESSAGE});
	return s;
}

/* ---- POST /api/generate: parsing ---- */

static const char *const generate_fields[] = {
	"function", "quality", "params", "priority", "idempotency_key", "user",
};

static int check_fields(struct json_object *o, struct err *err)
{
	json_object_object_foreach(o, key, val) {
		int known = 0;

		(void)val;
		for (size_t i = 0; i < sizeof generate_fields / sizeof generate_fields[0]; i++)
			known |= strcmp(key, generate_fields[i]) == 0;
		if (!known) {
			err_set(err, ERR_INVALID,
				"%.64s: unknown field; allowed: function, quality, params, "
				"priority, idempotency_key, user",
				key);
			return -1;
		}
	}
	return 0;
}

/* "a, b, c" of the catalog's function names into b. */
static void function_names(const struct registry *reg, struct buf *b)
{
	for (size_t i = 0; i < registry_function_count(reg); i++)
		buf_printf(b, "%s%s", i ? ", " : "", registry_function_at(reg, i)->name);
}

static void quality_keys(const struct reg_function *f, struct buf *b)
{
	for (size_t i = 0; i < f->nqualities; i++)
		buf_printf(b, "%s%s", i ? ", " : "", f->qualities[i].key);
}

static int parse_function(const struct registry *reg, struct json_object *o,
			  struct api_generate *out, struct err *err)
{
	struct json_object *v = json_get(o, "function");
	const char *name = json_object_is_type(v, json_type_string) ? json_object_get_string(v)
								    : NULL;
	struct buf names;

	out->fn = name ? registry_function(reg, name) : NULL;
	if (out->fn != NULL)
		return 0;
	buf_init(&names, 4096);
	function_names(reg, &names);
	if (v == NULL) /* absent or JSON null */
		err_set(err, ERR_INVALID, "function: is required; available: %s",
			names.data ? names.data : "none");
	else if (name == NULL)
		err_set(err, ERR_INVALID, "function: must be a string; available: %s",
			names.data ? names.data : "none");
	else
		err_set(err, ERR_INVALID, "function: unknown function \"%.80s\"; available: %s",
			name, names.data ? names.data : "none");
	buf_cleanup(&names);
	return -1;
}

static int parse_quality(struct json_object *o, struct api_generate *out, struct err *err)
{
	struct json_object *v = json_get(o, "quality"); /* NULL also for JSON null */
	const char *key = NULL;
	struct buf keys;
	int rc = -1;

	buf_init(&keys, 1024);
	quality_keys(out->fn, &keys);
	if (v != NULL && !json_object_is_type(v, json_type_string)) {
		err_set(err, ERR_INVALID, "quality: must be a string; allowed: %s", keys.data);
		goto out;
	}
	key = v ? json_object_get_string(v) : NULL;
	out->quality = registry_quality_index(out->fn, key);
	if (out->quality < 0)
		err_set(err, ERR_INVALID, "quality: unknown quality \"%.40s\" of %s; allowed: %s",
			key, out->fn->name, keys.data);
	else
		rc = 0;
out:
	buf_cleanup(&keys);
	return rc;
}

static int parse_priority(struct json_object *o, struct api_generate *out, struct err *err)
{
	struct json_object *v = json_get(o, "priority");
	int64_t p;

	out->priority = API_PRIORITY_DEFAULT;
	if (v == NULL)
		return 0; /* absent or JSON null */
	p = json_object_is_type(v, json_type_int) ? json_object_get_int64(v) : -1;
	if (p < 0 || p > API_PRIORITY_MAX) {
		err_set(err, ERR_INVALID, "priority: must be an integer from 0 to %d",
			API_PRIORITY_MAX);
		return -1;
	}
	out->priority = (int)p;
	return 0;
}

/* Characters (UTF-8 code points) in s. */
static size_t utf8_chars(const char *s)
{
	size_t n = 0;

	for (; *s; s++)
		n += ((unsigned char)*s & 0xc0) != 0x80;
	return n;
}

/* An optional string field of 1 to max characters into *out (owned); NULL when absent. */
static int parse_short_string(struct json_object *o, const char *field, int max, char **out,
			      struct err *err)
{
	struct json_object *v = json_get(o, field);
	const char *s;
	size_t n;

	if (v == NULL)
		return 0; /* absent or JSON null */
	s = json_object_is_type(v, json_type_string) ? json_object_get_string(v) : NULL;
	n = s ? utf8_chars(s) : 0;
	if (s == NULL || n < 1 || n > (size_t)max ||
	    strlen(s) != (size_t)json_object_get_string_len(v)) {
		err_set(err, ERR_INVALID, "%s: must be a string of 1 to %d characters", field, max);
		return -1;
	}
	*out = xstrdup(s);
	return 0;
}

static int parse_idem(struct json_object *o, struct api_generate *out, struct err *err)
{
	return parse_short_string(o, "idempotency_key", API_IDEM_MAX, &out->idem, err);
}

static int parse_body(const struct registry *reg, struct json_object *o,
		      struct api_generate *out, struct err *err)
{
	if (!json_object_is_type(o, json_type_object)) {
		err_set(err, ERR_INVALID,
			"the request body must be a JSON object such as "
			"{\"function\": \"...\", \"params\": {...}}");
		return -1;
	}
	if (check_fields(o, err) < 0 || parse_function(reg, o, out, err) < 0 ||
	    parse_quality(o, out, err) < 0)
		return -1;
	if (registry_validate_params(out->fn, json_get(o, "params"), &out->params, err) < 0)
		return -1;
	out->sent = json_object_get(json_get(o, "params"));
	if (parse_priority(o, out, err) < 0 || parse_idem(o, out, err) < 0 ||
	    parse_short_string(o, "user", API_USER_MAX, &out->user, err) < 0)
		return -1;
	return 0;
}

int api_generate_parse(const struct registry *reg, const char *body, size_t len,
		       int max_depth, struct api_generate *out, struct err *err)
{
	struct json_object *o = NULL;
	int rc;

	memset(out, 0, sizeof *out);
	if (json_parse_strict(body, len, max_depth > 0 ? max_depth : JSON_MAX_DEPTH, &o, err) < 0)
		return -1;
	rc = parse_body(reg, o, out, err);
	json_object_put(o);
	if (rc < 0)
		api_generate_cleanup(out);
	return rc;
}

void api_generate_cleanup(struct api_generate *g)
{
	json_object_put(g->params);
	json_object_put(g->sent);
	free(g->idem);
	free(g->user);
	memset(g, 0, sizeof *g);
}

/* ---- POST /api/generate ---- */

/* 0 when the registry and store are there; else answers 503 and -1. */
static int api_ready_or_reply(struct http_req *req)
{
	struct err err = {0};

	if (server.reg != NULL && server.store != NULL)
		return 0;
	err_set(&err, ERR_UNAVAILABLE, "registry or job store not loaded");
	http_reply_err(req, &err);
	return -1;
}

/* The submit's answer, once its job is committed (sched_submit_fn). */
static void on_submitted(void *ud, int status, const struct json_object *view,
			 const struct err *err)
{
	struct http_req *req = ud;

	if (view == NULL) {
		http_reply_err(req, err);
		return;
	}
	http_reply_json(req, status, view);
}

static void api_generate(struct http_req *req)
{
	struct api_generate g;
	struct sched_request rq;
	struct err err = {0};
	struct auth who;
	const char *body;
	char idem[400];
	size_t len;
	int retry_after = 0;

	if (auth_user_or_reply(req, &who) < 0 || api_ready_or_reply(req) < 0)
		return;
	body = http_req_body(req, &len);
	if (api_generate_parse(server.reg, body, len, server.cfg.max_json_depth, &g, &err) < 0) {
		http_reply_err(req, &err);
		return;
	}
	rq = (struct sched_request){g.fn, g.quality, g.params, g.priority, g.idem, g.sent,
				    who.key_id[0] ? who.key_id : NULL, who.name, &retry_after, g.user};
	/* Each key has its own idempotency keys: another's never names our job. */
	if (g.idem && rq.owner) {
		snprintf(idem, sizeof idem, "%s:%s", rq.owner, g.idem);
		rq.idem = idem;
	}
	/* params stay ours: the scheduler keeps its own reference. */
	if (sched_submit(&rq, on_submitted, req, &err) < 0) {
		if (err.code == ERR_QUOTA && retry_after > 0) {
			char wait[16];
			snprintf(wait, sizeof wait, "%d", retry_after);
			http_reply_header(req, "Retry-After", wait);
		}
		http_reply_err(req, &err);
	}
	api_generate_cleanup(&g);
}

/* ---- /api/jobs/{id}[/...] ---- */

/*
 * Splits "ID" or "ID/ACTION" into id and *action (borrowed from rest; ""
 * when none). Returns -1 for an empty or over-long id.
 */
static int split_job_path(const char *rest, char id[API_ID_MAX + 1], const char **action)
{
	const char *slash = strchr(rest, '/');
	size_t n = slash ? (size_t)(slash - rest) : strlen(rest);

	*action = slash ? slash + 1 : "";
	if (n == 0 || n > API_ID_MAX)
		return -1;
	memcpy(id, rest, n);
	id[n] = '\0';
	return 0;
}

static void reply_not_found(struct http_req *req)
{
	http_reply_error(req, 404, "NOT_FOUND", NULL, NULL);
}

/*
 * 0 when who may see job id; else answers 404 (the same as for a job that
 * does not exist: a user key cannot learn which ids others have) and -1.
 */
static int visible_or_reply(struct http_req *req, const struct auth *who, const char *id)
{
	char owner[KEY_ID_LEN + 1];
	struct err err = {0};

	if (who->kind == AUTH_OPEN || who->kind == AUTH_OPERATOR)
		return 0;
	if (sched_job_owner(id, owner, sizeof owner, &err) == 0 && auth_sees(who, owner))
		return 0;
	if (err.code && err.code != ERR_NOT_FOUND) {
		http_reply_err(req, &err);
		return -1;
	}
	reply_not_found(req);
	return -1;
}

/* Answers with the job's view, or its lookup error. */
static void reply_view(struct http_req *req, int status, const char *id)
{
	struct err err = {0};
	struct json_object *view = sched_view(id, &err);

	if (view == NULL) {
		http_reply_err(req, &err);
		return;
	}
	http_reply_json(req, status, view);
	json_object_put(view);
}

static void api_job_get(struct http_req *req)
{
	char id[API_ID_MAX + 1];
	const char *action, *ids[1];
	struct auth who;

	if (split_job_path(http_req_param(req), id, &action) < 0) {
		reply_not_found(req);
		return;
	}
	if (auth_user_or_reply(req, &who) < 0 || api_ready_or_reply(req) < 0 ||
	    visible_or_reply(req, &who, id) < 0)
		return;
	if (action[0] == '\0') {
		reply_view(req, 200, id);
		return;
	}
	if (strcmp(action, "events") != 0) {
		reply_not_found(req);
		return;
	}
	ids[0] = id;
	events_open(req, ids, 1);
}

static void api_job_post(struct http_req *req)
{
	char id[API_ID_MAX + 1];
	const char *action;
	struct err err = {0};
	struct auth who;

	if (split_job_path(http_req_param(req), id, &action) < 0 ||
	    strcmp(action, "cancel") != 0) {
		reply_not_found(req);
		return;
	}
	if (auth_user_or_reply(req, &who) < 0 || api_ready_or_reply(req) < 0 ||
	    visible_or_reply(req, &who, id) < 0)
		return;
	/* A finished job is ERR_CONFLICT: 409 ALREADY_FINISHED. */
	if (sched_cancel(id, &err) < 0) {
		http_reply_err(req, &err);
		return;
	}
	reply_view(req, 200, id);
}

/* ---- GET /api/jobs ---- */

/* A decimal integer in [lo, hi] into *v; -1 when s is anything else. */
static int parse_int_range(const char *s, long lo, long hi, long *v)
{
	char *end;

	if (s == NULL || s[0] < '0' || s[0] > '9' || strlen(s) > 9)
		return -1;
	*v = strtol(s, &end, 10);
	return *end == '\0' && *v >= lo && *v <= hi ? 0 : -1;
}

/* Reads ?status=&limit=&before=; answers 400 and returns -1 when bad. */
static int list_query(struct http_req *req, int *status, long *limit, const char **before)
{
	const char *st = http_req_query(req, "status");
	const char *lim = http_req_query(req, "limit");

	*status = -1;
	*limit = API_LIST_DEFAULT;
	*before = http_req_query(req, "before");
	if (*before != NULL && (*before)[0] == '\0')
		*before = NULL;
	if (st != NULL && st[0] != '\0')
		*status = job_status_parse(st);
	if (st != NULL && st[0] != '\0' && *status < 0) {
		http_reply_error(req, 400, "INVALID_INPUT",
				 "status: unknown status; allowed: queued, preparing, running, "
				 "completed, failed, cancelled",
				 "status");
		return -1;
	}
	if (lim != NULL && parse_int_range(lim, 1, API_LIST_MAX, limit) < 0) {
		http_reply_error(req, 400, "INVALID_INPUT",
				 "limit: must be an integer from 1 to 200", "limit");
		return -1;
	}
	return 0;
}

static void api_jobs_list(struct http_req *req)
{
	struct err err = {0};
	struct job **v = NULL;
	struct json_object *o, *arr;
	const char *before;
	size_t n = 0;
	long limit;
	int status;
	struct auth who;

	if (auth_user_or_reply(req, &who) < 0 || api_ready_or_reply(req) < 0 ||
	    list_query(req, &status, &limit, &before) < 0)
		return;
	if (before && visible_or_reply(req, &who, before) < 0)
		return;
	/* One more than asked tells whether a next page exists; a user key lists its own. */
	if (store_job_list_of(server.store, who.kind == AUTH_USER ? who.key_id : NULL, status,
			      (int)limit + 1, before, &v, &n, &err) < 0) {
		http_reply_err(req, &err);
		return;
	}
	o = json_object_new_object();
	arr = json_object_new_array();
	for (size_t i = 0; i < n && i < (size_t)limit; i++)
		json_object_array_add(arr, sched_view_stored(v[i]));
	json_put(o, "jobs", arr);
	json_put(o, "next", n > (size_t)limit ? json_str(v[limit - 1]->id) : NULL);
	store_jobs_free(v, n);
	http_reply_json(req, 200, o);
	json_object_put(o);
}

/* ---- GET /api/events?jobs=a,b ---- */

static void api_events(struct http_req *req)
{
	const char *q = http_req_query(req, "jobs");
	const char *ids[EVENTS_MAX_JOBS + 1];
	char *copy, *save = NULL;
	size_t n = 0;
	struct auth who;

	if (auth_user_or_reply(req, &who) < 0 || api_ready_or_reply(req) < 0)
		return;
	copy = xstrdup(q ? q : "");
	for (char *t = strtok_r(copy, ",", &save); t != NULL && n <= EVENTS_MAX_JOBS;
	     t = strtok_r(NULL, ",", &save)) {
		if (strlen(t) <= API_ID_MAX && visible_or_reply(req, &who, t) < 0) {
			free(copy);
			return;
		}
		ids[n++] = t;
	}
	/* n > EVENTS_MAX_JOBS or 0 is refused by events_open(). */
	events_open(req, ids, n);
	free(copy);
}

/* ---- GET /api/ws: a user key's socket follows its own jobs only ---- */

static void api_ws(struct http_req *req)
{
	struct auth who;

	if (auth_user_or_reply(req, &who) < 0)
		return;
	events_ws(req, who.kind == AUTH_USER ? who.key_id : NULL);
}

/* ---- GET /api/functions ---- */

/*
 * Qualities the operators paused (with no fallback) are not available now;
 * one that a model of quality auto was measured into is.
 */
static void mark_paused(struct json_object *cat)
{
	struct json_object *fs = json_get_arr(cat, "functions");

	for (size_t i = 0; fs && i < json_object_array_length(fs); i++) {
		struct json_object *f = json_object_array_get_idx(fs, i);
		struct json_object *qs = json_get_arr(f, "qualities");
		const char *name = json_get_str(f, "name");
		for (size_t k = 0; qs && k < json_object_array_length(qs); k++) {
			struct json_object *q = json_object_array_get_idx(qs, k);
			if (sched_quality_paused(name, json_get_str(q, "key")))
				json_put(q, "available", json_object_new_boolean(0));
			else if (sched_quality_served(name, json_get_str(q, "key")))
				json_put(q, "available", json_object_new_boolean(1)); /* a measured model */
		}
	}
}

/*
 * A model's learned mean run time (ms) in the operators' view, weighted
 * by its jobs, adds to *sum and *weight when it serves function's quality.
 */
static void add_measured(struct json_object *m, const char *function, const char *quality,
			 double *sum, double *weight)
{
	const char *mf = json_get_str(m, "function"), *mq = json_get_str(m, "quality");
	int64_t ms = json_get_int(m, "avg_run_ms", 0), jobs = json_get_int(m, "jobs", 0);

	if (mf == NULL || mq == NULL || strcmp(mf, function) != 0 || strcmp(mq, quality) != 0 ||
	    ms <= 0)
		return;
	*sum += (double)ms * (double)(jobs > 0 ? jobs : 1);
	*weight += (double)(jobs > 0 ? jobs : 1);
}

/* ms as seconds to a tenth, at least 0.1: a job that ran took some time. */
static struct json_object *tenths(double ms)
{
	int64_t t = (int64_t)(ms / 100.0 + 0.5);

	return json_object_new_double((double)(t > 0 ? t : 1) / 10.0);
}

/*
 * Each quality's measured_seconds: what its models' jobs took, as they
 * learned it (the run time eta_seconds uses), to a tenth of a second;
 * null before any of them completed a job.
 */
static void mark_measured(struct json_object *cat)
{
	struct json_object *view = sched_admin_models(), *ms = json_get_arr(view, "models");
	struct json_object *fs = json_get_arr(cat, "functions");

	for (size_t i = 0; fs && i < json_object_array_length(fs); i++) {
		struct json_object *f = json_object_array_get_idx(fs, i);
		struct json_object *qs = json_get_arr(f, "qualities");

		for (size_t k = 0; qs && k < json_object_array_length(qs); k++) {
			struct json_object *q = json_object_array_get_idx(qs, k);
			double sum = 0, weight = 0;

			for (size_t j = 0; ms && j < json_object_array_length(ms); j++)
				add_measured(json_object_array_get_idx(ms, j), json_get_str(f, "name"),
					     json_get_str(q, "key"), &sum, &weight);
			json_put(q, "measured_seconds", weight > 0 ? tenths(sum / weight) : NULL);
		}
	}
	json_object_put(view);
}

static void api_functions(struct http_req *req)
{
	struct json_object *cat;
	struct auth who;

	if (auth_user_or_reply(req, &who) < 0 || api_ready_or_reply(req) < 0)
		return;
	cat = registry_catalog(server.reg);
	modelinfo_enrich(cat, server.reg);
	mark_paused(cat);
	mark_measured(cat);
	http_reply_json(req, 200, cat);
	json_object_put(cat);
}

/* ---- /api/session: the web page's sign-in ---- */

static struct json_object *session_json(const struct auth *who)
{
	struct json_object *o = json_object_new_object();

	json_put(o, "keys_required", json_object_new_boolean(who->kind != AUTH_OPEN));
	json_put(o, "signed_in", json_object_new_boolean(who->kind == AUTH_USER ||
							 who->kind == AUTH_OPERATOR));
	json_put(o, "name", who->name[0] ? json_str(who->name) : NULL);
	json_put(o, "scope", who->kind == AUTH_USER       ? json_str("user")
			     : who->kind == AUTH_OPERATOR ? json_str("operator")
							  : NULL);
	return o;
}

static void api_session_get(struct http_req *req)
{
	struct auth who;
	struct json_object *o;

	auth_who(req, &who);
	o = session_json(&who);
	http_reply_json(req, 200, o);
	json_object_put(o);
}

/*
 * {"key": KEY} (or the key as a Bearer token): when it is a working key,
 * the answer sets the cookie fnrun_key, which the page's requests, images,
 * EventSource and WebSocket then carry. HttpOnly: scripts cannot read it;
 * SameSite=Strict: no other site's page sends it.
 */
static void api_session_post(struct http_req *req)
{
	struct json_object *body = NULL, *o;
	struct err err = {0};
	const char *text = NULL;
	char cookie[200];
	size_t len;
	const char *raw = http_req_body(req, &len);
	struct auth who;

	if (len > 0 && json_parse(raw, len, 4, &body, &err) == 0)
		text = json_get_str(body, "key");
	if (len > 0 && text == NULL) {
		json_object_put(body);
		http_reply_error(req, 400, "INVALID_INPUT", "key: give your key as {\"key\": \"fnr_...\"}",
				 "key");
		return;
	}
	if (text)
		auth_key(text, &who);
	else
		auth_who(req, &who);
	if (who.kind != AUTH_USER && who.kind != AUTH_OPERATOR) {
		json_object_put(body);
		http_reply_header(req, "WWW-Authenticate", "Bearer realm=\"fnrun\"");
		http_reply_error(req, 401, "UNAUTHORIZED",
				 "That key does not work. Check it, or ask your operator for a new one.",
				 NULL);
		return;
	}
	/* Only a well-formed key (hex after "fnr_") is ever put in a header. */
	if (text && key_id_of(text, (char[KEY_ID_LEN + 1]){0}) == 0) {
		snprintf(cookie, sizeof cookie,
			 "fnrun_key=%s; Path=/; HttpOnly; SameSite=Strict; Max-Age=2592000", text);
		http_reply_header(req, "Set-Cookie", cookie);
	}
	json_object_put(body);
	o = session_json(&who);
	http_reply_json(req, 200, o);
	json_object_put(o);
}

static void api_session_delete(struct http_req *req)
{
	struct json_object *o = json_object_new_object();

	http_reply_header(req, "Set-Cookie", "fnrun_key=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0");
	/* Results the browser cached while signed in are not for the next person at it. */
	http_reply_header(req, "Clear-Site-Data", "\"cache\"");
	json_put(o, "signed_in", json_object_new_boolean(0));
	http_reply_json(req, 200, o);
	json_object_put(o);
}

/* ---- GET /api/outputs/<job_id>/<file> ---- */

const char *api_content_type(const char *name)
{
	return http_content_type(name);
}

static void api_outputs(struct http_req *req)
{
	char root[PATH_MAX], path[PATH_MAX], id[API_ID_MAX + 1];
	const char *file;
	struct err err = {0};
	struct auth who;

	if (auth_user_or_reply(req, &who) < 0)
		return;
	/* <job_id>/<file>: a user key reaches its own jobs' files only. */
	if (split_job_path(http_req_param(req), id, &file) < 0) {
		reply_not_found(req);
		return;
	}
	if (visible_or_reply(req, &who, id) < 0)
		return;
	snprintf(root, sizeof root, "%s", server_path("outputs"));
	if (outputs_resolve(root, http_req_param(req), path, sizeof path, &err) < 0) {
		http_reply_err(req, &err);
		return;
	}
	http_reply_header(req, "X-Content-Type-Options", "nosniff");
	/* An output never changes once written. */
	http_reply_header(req, "Cache-Control", "private, max-age=86400");
	if (http_reply_file(req, 200, path, api_content_type(path), &err) < 0)
		http_reply_err(req, &err);
}

/* ---- health, readiness, metrics ---- */

static void reply_status(struct http_req *req, int status, const char *state,
			 const char *reason)
{
	struct json_object *o = json_object_new_object();

	json_put(o, "status", json_str(state));
	if (reason != NULL)
		json_put(o, "reason", json_str(reason));
	if (status == 503)
		http_reply_header(req, "Retry-After", "5");
	http_reply_json(req, status, o);
	json_object_put(o);
}

static void api_health(struct http_req *req)
{
	reply_status(req, 200, "ok", NULL);
}

/* Why the gateway cannot take jobs now, or NULL when it can. */
static const char *not_ready_reason(void)
{
	if (server.store == NULL)
		return "the job store is not open";
	if (server.reg == NULL)
		return "no registry is loaded";
	return sched_not_ready();
}

static void api_ready(struct http_req *req)
{
	const char *reason = not_ready_reason();

	if (reason != NULL)
		reply_status(req, 503, "not_ready", reason);
	else
		reply_status(req, 200, "ready", NULL);
}
