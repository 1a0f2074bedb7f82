/*
 * api_metrics.c - what operators watch: GET /metrics in the Prometheus
 * text format (the counters and histograms of metrics.c, the scheduler's
 * gauges, connections and watchers), the operator page under /admin/
 * (web/admin/, with the data it polls under /admin/data/), and
 * GET /api/admin/events.
 *
 * Model names show here, never in the user API. When FNRUN_ADMIN_TOKEN is
 * set, each of these needs it (api_admin_authorized()); the page asks the
 * browser for it with a Basic challenge.
 */
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include <json-c/json.h>

#include "api.h"
#include "buf.h"
#include "errors.h"
#include "events.h"
#include "http.h"
#include "json.h"
#include "metrics.h"
#include "scheduler.h"
#include "server.h"
#include "static.h"
#include "util.h"

#define METRICS_MAX_BYTES (16u << 20) /* a scrape's hard limit */
#define METRICS_CTYPE "text/plain; version=0.0.4; charset=utf-8"
#define EVENTS_MAX 200

static int gauge(struct buf *b, const char *name, const char *help, const char *const *kv,
		 size_t nkv, double v)
{
	if (metrics_family(b, name, "gauge", help) < 0)
		return -1;
	return metrics_sample(b, name, kv, nkv, v);
}

/* The gateway's own gauges: connections, watchers, uptime. */
static int render_gateway(struct buf *b)
{
	size_t ws = events_watchers_ws(), all = events_watchers();
	const char *sse[] = {"transport", "sse"}, *wsk[] = {"transport", "ws"};
	double up = server.started_ms ? (double)(util_mono_ms() - server.started_ms) / 1000.0 : 0;

	if (gauge(b, "fnrun_http_connections", "Open HTTP connections.", NULL, 0,
		  server.http ? (double)http_server_conns(server.http) : 0) < 0)
		return -1;
	if (gauge(b, "fnrun_watchers", "Open job event streams, by transport.", sse, 1,
		  (double)(all - ws)) < 0 ||
	    metrics_sample(b, "fnrun_watchers", wsk, 1, (double)ws) < 0)
		return -1;
	return gauge(b, "fnrun_uptime_seconds", "Seconds since the gateway started.", NULL, 0, up);
}

/* Every family, into b; NULL when the limit was reached. */
static int render_all(struct buf *b)
{
	if (metrics_render(b) < 0 || sched_metrics(b) < 0 || render_gateway(b) < 0)
		return -1;
	return 0;
}

static void reply_metrics(struct http_req *req)
{
	struct buf b;

	buf_init(&b, METRICS_MAX_BYTES);
	if (render_all(&b) < 0) {
		http_reply_error(req, 500, "INTERNAL", "The metrics are larger than the limit.",
				 NULL);
	} else {
		http_reply_header(req, "Cache-Control", "no-store");
		http_reply(req, 200, METRICS_CTYPE, b.data ? b.data : "", b.len);
	}
	buf_cleanup(&b);
}

void api_metrics(struct http_req *req)
{
	if (api_admin_authorized(req, 0))
		reply_metrics(req);
}

static void reply_events(struct http_req *req)
{
	struct json_object *o = json_object_new_object();

	json_put(o, "events", metrics_events_json(EVENTS_MAX));
	json_put(o, "now_ms", json_int(util_now_ms()));
	http_reply_header(req, "Cache-Control", "no-store");
	http_reply_json(req, 200, o);
	json_object_put(o);
}

void api_admin_events(struct http_req *req)
{
	if (api_admin_authorized(req, 0))
		reply_events(req);
}

static void reply_owned(struct http_req *req, struct json_object *o)
{
	http_reply_header(req, "Cache-Control", "no-store");
	http_reply_json(req, 200, o);
	json_object_put(o);
}

/*
 * GET /admin/...: "" redirects to /admin/; data/metrics, data/events,
 * data/models and data/runners are what the page polls (under /admin/, so
 * the browser sends the credentials it was challenged for); anything else
 * is a file of web/admin/.
 */
void api_admin_page(struct http_req *req)
{
	const char *rest = http_req_param(req);
	char root[PATH_MAX], dir[PATH_MAX + 8];

	if (rest[0] != '\0' && rest[0] != '/') { /* "/administrator" is not ours */
		http_reply_error(req, 404, "NOT_FOUND", NULL, NULL);
		return;
	}
	if (!api_admin_authorized(req, 1))
		return;
	if (rest[0] == '\0') {
		http_reply_header(req, "Location", "/admin/");
		http_reply(req, 308, "text/plain; charset=utf-8", "", 0);
	} else if (strcmp(rest, "/data/metrics") == 0) {
		reply_metrics(req);
	} else if (strcmp(rest, "/data/events") == 0) {
		reply_events(req);
	} else if (strcmp(rest, "/data/models") == 0) {
		reply_owned(req, sched_admin_models());
	} else if (strcmp(rest, "/data/runners") == 0) {
		reply_owned(req, sched_admin_runners());
	} else {
		static_root(root, sizeof root);
		snprintf(dir, sizeof dir, "%s/admin", root);
		static_serve(req, dir, rest + 1);
	}
}
