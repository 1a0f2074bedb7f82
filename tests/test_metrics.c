/*
 * test_metrics.c - /metrics, checked by the real tools.
 *
 * "unit": metrics.c directly: label escaping, counters, cumulative
 * histogram buckets, the series limit, the events ring, the bounded buffer.
 * "promtool": a real `fnrun serve` runs jobs (completed, an out-of-memory
 * retry one quality down, evictions under a 3 GB budget, a cancel); its
 * scrape passes `promtool check metrics`, shows what happened and never a
 * job id; the admin token guards /metrics and /admin; the alerting rules
 * of examples/prometheus/ pass `promtool check rules` and `promtool test
 * rules`.
 * "admin_page": tests/browser/admin.test.mjs drives /admin/ in Debian's
 * headless Chromium (playwright-core) against a gateway with an admin
 * token: refused without it, then live charts and operator events as jobs
 * run; screenshots go to $FNRUN_ARTIFACTS (default tests/browser/artifacts).
 * "prometheus": a real Prometheus (Debian's, on a free loopback port with
 * a temp storage dir) scrapes the gateway every second while jobs run;
 * rate(fnrun_jobs_completed_total[1m]) > 0 comes back through its HTTP
 * API, every query of examples/grafana/fnrun-dashboard.json answers
 * "success", and every alerting rule evaluates with health "ok".
 *
 * Check's fork mode runs no checked teardown after a failed assertion, so
 * each case's directories live under `base`, made by Check's parent; after
 * each case the parent kills every process working there or naming it on
 * its command line (fnrun, its model servers, Prometheus) and removes it.
 */
#include <check.h>
#include <json-c/json.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "buf.h"
#include "gwtest.h"
#include "metrics.h"
#include "testutil.h"
#include "util.h"

#define PROMETHEUS "/usr/bin/prometheus"
#define PROMTOOL "/usr/bin/promtool"
#define JOB_MS 30000

static char base[128];
static struct gw g;

/* ---- unit ---- */

static char *render(void)
{
	struct buf b;

	buf_init(&b, 16u << 20);
	ck_assert_int_eq(metrics_render(&b), 0);
	return buf_steal(&b);
}

START_TEST(escape)
{
	struct buf b;

	buf_init(&b, 1024);
	ck_assert_int_eq(metrics_escape(&b, "a\"b\\c\nd"), 0);
	ck_assert_str_eq(b.data, "a\\\"b\\\\c\\nd");
	buf_cleanup(&b);
	buf_init(&b, 1024);
	const char *kv[] = {"model", "x\"y", "gpu", "", "state", "ready"};
	ck_assert_int_eq(metrics_sample(&b, "m", kv, 3, 2), 0);
	ck_assert_str_eq(b.data, "m{model=\"x\\\"y\",state=\"ready\"} 2\n");
	buf_cleanup(&b);
}
END_TEST

START_TEST(counters)
{
	struct metrics_labels l = {.function = "Create \"Image\"", .quality = "low", .model = "m1",
				   .code = "IGNORED: not a label of this family"};
	char *text;

	metrics_reset();
	metrics_inc(MC_JOBS_SUBMITTED, &l, 1);
	metrics_inc(MC_JOBS_SUBMITTED, &l, 2);
	metrics_inc(MC_JOBS_COMPLETED, &l, 1);
	metrics_inc(MC_JOBS_FAILED, &(struct metrics_labels){.function = "F", .quality = "low",
							    .code = "OUT_OF_MEMORY"}, 1);
	ck_assert_uint_eq(metrics_value(MC_JOBS_SUBMITTED, &l), 3);
	ck_assert_uint_eq(metrics_value(MC_JOBS_CANCELLED, &l), 0);
	text = render();
	ck_assert_ptr_nonnull(strstr(text, "# TYPE fnrun_jobs_submitted_total counter\n"
					   "fnrun_jobs_submitted_total{function=\"Create \\\"Image\\\"\","
					   "quality=\"low\"} 3\n"));
	ck_assert_ptr_nonnull(strstr(text, "fnrun_jobs_completed_total{function=\"Create \\\"Image\\\"\","
					   "quality=\"low\",model=\"m1\"} 1\n"));
	/* An absent model leaves the label out. */
	ck_assert_ptr_nonnull(strstr(text, "fnrun_jobs_failed_total{function=\"F\",quality=\"low\","
					   "code=\"OUT_OF_MEMORY\"} 1\n"));
	ck_assert_ptr_nonnull(strstr(text, "\nfnrun_store_commits_total 0\n"));
	ck_assert_ptr_null(strstr(text, "IGNORED"));
	ck_assert_ptr_null(strstr(text, "fnrun_jobs_cancelled_total"));
	free(text);
}
END_TEST

START_TEST(histogram)
{
	struct metrics_labels l = {.model = "m"};
	char *text;

	metrics_reset();
	metrics_observe(MH_COLD_START, &l, 0.003);
	metrics_observe(MH_COLD_START, &l, 0.5);
	metrics_observe(MH_COLD_START, &l, 5000);
	metrics_observe(MH_COLD_START, &l, -1); /* a clock step: 0 */
	text = render();
	ck_assert_ptr_nonnull(strstr(text, "# TYPE fnrun_runner_cold_start_seconds histogram\n"));
	ck_assert_ptr_nonnull(strstr(text, "fnrun_runner_cold_start_seconds_bucket{model=\"m\",le=\"0.0001\"} 1\n"));
	ck_assert_ptr_nonnull(strstr(text, "fnrun_runner_cold_start_seconds_bucket{model=\"m\",le=\"0.0025\"} 1\n"));
	ck_assert_ptr_nonnull(strstr(text, "fnrun_runner_cold_start_seconds_bucket{model=\"m\",le=\"0.005\"} 2\n"));
	ck_assert_ptr_nonnull(strstr(text, "fnrun_runner_cold_start_seconds_bucket{model=\"m\",le=\"0.5\"} 3\n"));
	ck_assert_ptr_nonnull(strstr(text, "fnrun_runner_cold_start_seconds_bucket{model=\"m\",le=\"1800\"} 3\n"));
	ck_assert_ptr_nonnull(strstr(text, "fnrun_runner_cold_start_seconds_bucket{model=\"m\",le=\"+Inf\"} 4\n"));
	ck_assert_ptr_nonnull(strstr(text, "fnrun_runner_cold_start_seconds_sum{model=\"m\"} 5000.503\n"));
	ck_assert_ptr_nonnull(strstr(text, "fnrun_runner_cold_start_seconds_count{model=\"m\"} 4\n"));
	ck_assert_ptr_nonnull(strstr(text, "fnrun_store_commit_duration_seconds_bucket{le=\"+Inf\"} 0\n"));
	free(text);
}
END_TEST

START_TEST(series_limit)
{
	char model[32], want[80], *text;
	size_t before;

	metrics_reset();
	before = metrics_series();
	for (int i = 0; i < METRICS_MAX_SERIES + 10; i++) {
		snprintf(model, sizeof model, "m%d", i);
		metrics_inc(MC_EVICTIONS, &(struct metrics_labels){.model = model}, 1);
	}
	ck_assert_uint_eq(metrics_series(), METRICS_MAX_SERIES);
	ck_assert_uint_eq(metrics_value(MC_EVICTIONS, &(struct metrics_labels){.model = "m7"}), 1);
	/* The unlabelled series were there before: as many more updates were dropped. */
	snprintf(want, sizeof want, "\nfnrun_metrics_series_dropped_total %zu\n", 10 + before);
	text = render();
	ck_assert_ptr_nonnull(strstr(text, want));
	free(text);
}
END_TEST

START_TEST(events_ring)
{
	char model[32];
	struct json_object *a;

	metrics_reset();
	for (int i = 0; i < METRICS_EVENTS + 50; i++) {
		snprintf(model, sizeof model, "m%d", i);
		metrics_event(i % 2 ? "eviction" : "fallback", model, i % 2 ? NULL : "fb");
	}
	a = metrics_events_json(1000);
	ck_assert_uint_eq(json_object_array_length(a), METRICS_EVENTS);
	ck_assert_str_eq(gw_str(json_object_array_get_idx(a, 0), "model"), "m249");
	ck_assert_str_eq(gw_str(json_object_array_get_idx(a, 0), "kind"), "eviction");
	ck_assert_ptr_null(gw_str(json_object_array_get_idx(a, 0), "other"));
	ck_assert_str_eq(gw_str(json_object_array_get_idx(a, 1), "other"), "fb");
	json_object_put(a);
	a = metrics_events_json(3);
	ck_assert_uint_eq(json_object_array_length(a), 3);
	json_object_put(a);
}
END_TEST

/* A buffer too small holds whole families only. */
START_TEST(bounded)
{
	struct buf b;

	metrics_reset();
	metrics_observe(MH_RUN, &(struct metrics_labels){.function = "F", .quality = "q", .model = "m"}, 1);
	buf_init(&b, 600);
	ck_assert_int_eq(metrics_render(&b), -1);
	ck_assert(b.len <= 600);
	ck_assert(b.len == 0 || b.data[b.len - 1] == '\n');
	ck_assert_ptr_null(strstr(b.data ? b.data : "", "fnrun_job_run_seconds_bucket"));
	buf_cleanup(&b);
}
END_TEST

/* ---- fixtures for the real processes ---- */

static void base_make(void)
{
	snprintf(base, sizeof base, "/tmp/fnrun-metrics-XXXXXX");
	if (mkdtemp(base) == NULL)
		base[0] = '\0';
}

static void base_clean(void)
{
	if (base[0] == '\0')
		return;
	tu_kill_users_of(base);
	tu_rmrf(base);
}

static void setup(void)
{
	signal(SIGPIPE, SIG_IGN);
	memset(&g, 0, sizeof g);
	ck_assert_msg(base[0] != '\0', "no base directory");
	snprintf(g.dir, sizeof g.dir, "%s/t-XXXXXX", base);
	ck_assert_ptr_nonnull(mkdtemp(g.dir));
}

static void teardown(void)
{
	if (g.pid > 0)
		gw_stop(&g, 8000);
	unsetenv("FNRUN_ADMIN_TOKEN");
}

static void need(const char *path, const char *what)
{
	ck_assert_msg(access(path, X_OK) == 0, "%s missing (%s): run scripts/install-deps", what,
		      path);
}

/*
 * Two tiers of Create Image on a 3 GB budget, 2 GB each: one evicts the
 * other. Balanced's workflow fails with a CUDA out-of-memory error, and
 * the function retries such a job one quality down.
 */
static const char registry[] =
	"server: {gpu: {vram: 3GB}}\n"
	"functions:\n"
	"  Create Image:\n"
	"    reduce_quality_on_oom: true\n"
	"    params:\n"
	"      prompt: {type: string, required: true, max_length: 200}\n"
	"      seed: {type: int, default: random}\n"
	"    qualities:\n"
	"      low: {label: Fast Preview, typical_seconds: [1, 2]}\n"
	"      standard: {label: Balanced, typical_seconds: [1, 2]}\n"
	"models:\n"
	"  img_low:\n"
	"    function: Create Image\n"
	"    quality: low\n"
	"    command: [\"{bindir}/fnrun-worker\", --model, sim, --step-ms, \"1\", --port, \"{port}\"]\n"
	"    workflow: wf.json\n"
	"    bind: {prompt: \"1.inputs.text\", seed: \"2.inputs.seed\"}\n"
	"    resources: {gpu_memory: 2GB, priority: 100}\n"
	"  img_std:\n"
	"    function: Create Image\n"
	"    quality: standard\n"
	"    command: [\"{bindir}/fnrun-worker\", --model, sim, --step-ms, \"1\", --port, \"{port}\"]\n"
	"    workflow: wf-oom.json\n"
	"    bind: {prompt: \"1.inputs.text\", seed: \"2.inputs.seed\"}\n"
	"    resources: {gpu_memory: 2GB, priority: 100}\n";

static void start_gateway(void)
{
	gw_write_workflow(&g, "wf", "none");
	gw_write_workflow(&g, "wf-oom", "oom");
	gw_write_registry(&g, registry);
	gw_start(&g);
}

/* One job at quality q, waited for; its final status must be in want. */
static void run_job(const char *q, const char *want)
{
	char *id = gw_submit(&g, q, "a lighthouse");
	struct json_object *o = gw_wait_status(&g, id, want, JOB_MS);

	json_object_put(o);
	free(id);
}

/* GET path on port, with an Authorization header value or none; caller frees. */
static char *get_auth(int port, const char *path, const char *auth, int *status, char *hdrs,
		      size_t nhdrs)
{
	char req[1024];
	struct tu_resp r;
	int fd = tu_connect(port);
	char *body;

	ck_assert_int_ge(fd, 0);
	snprintf(req, sizeof req,
		 "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n%s%s%sConnection: close\r\n\r\n", path,
		 auth ? "Authorization: " : "", auth ? auth : "", auth ? "\r\n" : "");
	ck_assert_int_eq(tu_write_all(fd, req, strlen(req)), 0);
	ck_assert_int_eq(tu_read_response(fd, &r), 0);
	close(fd);
	*status = r.status;
	if (hdrs)
		snprintf(hdrs, nhdrs, "%s", r.headers ? r.headers : "");
	body = strdup(r.body ? r.body : "");
	tu_resp_free(&r);
	return body;
}

static char *scrape(void)
{
	int status;
	char *text = get_auth(g.port, "/metrics", NULL, &status, NULL, 0);

	ck_assert_int_eq(status, 200);
	return text;
}

/* Runs sh -c cmd; returns its exit status, its output into out (caller frees). */
static int sh(const char *cmd, char **out)
{
	char log[600];
	char *argv[] = {"/bin/sh", "-c", (char *)cmd, NULL};
	pid_t pid;
	int status;

	snprintf(log, sizeof log, "%s/sh.log", g.dir);
	pid = tu_spawn(argv, log);
	ck_assert_int_gt(pid, 0);
	status = tu_wait_exit(pid, 60000);
	if (status == -1)
		tu_stop(pid, 1000);
	*out = tu_read_file(log, NULL);
	if (*out == NULL)
		*out = strdup("");
	return status != -1 && WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

START_TEST(promtool_check_metrics)
{
	char path[600], cmd[1400], *text, *out, *ids[4];
	struct json_object *ev;
	const char *evs;
	int rc;

	need(PROMTOOL, "Debian prometheus");
	start_gateway();
	for (int i = 0; i < 3; i++)
		run_job("low", "completed");
	/* Balanced evicts Fast Preview, fails out of memory, and is retried one quality down. */
	run_job("standard", "completed");
	ids[0] = gw_submit(&g, "low", "cancel me");
	snprintf(path, sizeof path, "/api/jobs/%s/cancel", ids[0]);
	json_object_put(gw_json(&g, "POST", path, NULL, NULL));
	json_object_put(gw_wait_status(&g, ids[0], "cancelled,completed", JOB_MS));

	text = scrape();
	snprintf(path, sizeof path, "%s/scrape.txt", g.dir);
	ck_assert_int_eq(tu_write_file(path, text, strlen(text)), 0);
	snprintf(cmd, sizeof cmd, PROMTOOL " check metrics < '%s' 2>&1", path);
	rc = sh(cmd, &out);
	ck_assert_msg(rc == 0 && out[0] == '\0', "promtool check metrics: exit %d:\n%s", rc, out);
	free(out);

	ck_assert_ptr_nonnull(strstr(text, "fnrun_jobs_submitted_total{function=\"Create Image\",quality=\"low\"} 4\n"));
	ck_assert_ptr_nonnull(strstr(text, "fnrun_jobs_completed_total{function=\"Create Image\",quality=\"low\",model=\"img_low\"} "));
	ck_assert_ptr_nonnull(strstr(text, "fnrun_oom_retries_total{function=\"Create Image\",quality=\"standard\",model=\"img_std\"} 1\n"));
	ck_assert_ptr_nonnull(strstr(text, "fnrun_jobs_retried_total{function=\"Create Image\",quality=\"low\",model=\"img_std\"} 1\n"));
	ck_assert_ptr_nonnull(strstr(text, "fnrun_evictions_total{model=\"img_low\"} "));
	ck_assert_ptr_nonnull(strstr(text, "fnrun_runner_cold_start_seconds_count{model=\"img_std\"} 1\n"));
	ck_assert_ptr_nonnull(strstr(text, "fnrun_job_end_to_end_seconds_count{function=\"Create Image\",quality=\"low\",status=\"completed\"} "));
	ck_assert_ptr_nonnull(strstr(text, "fnrun_gpu_memory_budget_bytes{gpu=\"0\"} 3221225472\n"));
	ck_assert_ptr_nonnull(strstr(text, "fnrun_runners{model=\"img_low\",state=\"ready\"} 1\n"));
	ck_assert_ptr_nonnull(strstr(text, "fnrun_jobs_queued{function=\"Create Image\",quality=\"standard\"} 0\n"));
	ck_assert_ptr_nonnull(strstr(text, "fnrun_watchers{transport=\"ws\"} 0\n"));
	ck_assert_msg(strstr(text, ids[0]) == NULL, "a job id in the scrape");
	free(ids[0]);
	free(text);

	ev = gw_json(&g, "GET", "/api/admin/events", NULL, NULL);
	evs = json_object_to_json_string(ev);
	ck_assert_msg(strstr(evs, "\"kind\": \"eviction\"") || strstr(evs, "\"kind\":\"eviction\""),
		      "no eviction event: %s", evs);
	ck_assert_msg(strstr(evs, "oom_retry"), "no oom_retry event: %s", evs);
	json_object_put(ev);
}
END_TEST

/* "Basic base64(user:pass)" for the token "s3cret", user "operator". */
#define BASIC_OK "Basic b3BlcmF0b3I6czNjcmV0"
#define BASIC_BAD "Basic b3BlcmF0b3I6d3Jvbmc=" /* operator:wrong */

START_TEST(admin_token)
{
	char hdrs[4096], *body;
	int status;

	setenv("FNRUN_ADMIN_TOKEN", "s3cret", 1);
	start_gateway();
	/* No credential, or a wrong one: 401 (a user key would get 403: tests/test_keys.c). */
	body = get_auth(g.port, "/metrics", NULL, &status, NULL, 0);
	ck_assert_int_eq(status, 401);
	free(body);
	body = get_auth(g.port, "/metrics", "Bearer s3cret", &status, NULL, 0);
	ck_assert_int_eq(status, 200);
	ck_assert_ptr_nonnull(strstr(body, "# TYPE fnrun_jobs_queued gauge"));
	free(body);
	body = get_auth(g.port, "/metrics", BASIC_BAD, &status, NULL, 0);
	ck_assert_int_eq(status, 401);
	free(body);
	/* The page challenges the browser; the data it polls needs the token too. */
	body = get_auth(g.port, "/admin/", NULL, &status, hdrs, sizeof hdrs);
	ck_assert_int_eq(status, 401);
	ck_assert_msg(strcasestr(hdrs, "www-authenticate: Basic realm=\"fnrun admin\""), "%s", hdrs);
	free(body);
	body = get_auth(g.port, "/admin/data/metrics", BASIC_BAD, &status, NULL, 0);
	ck_assert_int_eq(status, 401);
	free(body);
	body = get_auth(g.port, "/admin/data/metrics", BASIC_OK, &status, NULL, 0);
	ck_assert_int_eq(status, 200);
	ck_assert_ptr_nonnull(strstr(body, "fnrun_gpu_memory_reserved_bytes"));
	free(body);
	body = get_auth(g.port, "/admin", BASIC_OK, &status, hdrs, sizeof hdrs);
	ck_assert_int_eq(status, 308);
	ck_assert_msg(strcasestr(hdrs, "location: /admin/"), "%s", hdrs);
	free(body);
	body = get_auth(g.port, "/administrator", BASIC_OK, &status, NULL, 0);
	ck_assert_int_eq(status, 404);
	free(body);
	body = get_auth(g.port, "/api/admin/events", "Bearer s3cret", &status, NULL, 0);
	ck_assert_int_eq(status, 200);
	ck_assert_ptr_nonnull(strstr(body, "\"events\""));
	free(body);
	body = get_auth(g.port, "/api/admin/events", NULL, &status, NULL, 0);
	ck_assert_int_eq(status, 401);
	free(body);
	/* The user API stays open. */
	body = get_auth(g.port, "/api/functions", NULL, &status, NULL, 0);
	ck_assert_int_eq(status, 200);
	free(body);
}
END_TEST

START_TEST(promtool_rules)
{
	char *out;
	int rc;

	need(PROMTOOL, "Debian prometheus");
	rc = sh(PROMTOOL " check rules examples/prometheus/fnrun-alerts.yml 2>&1", &out);
	ck_assert_msg(rc == 0 && strstr(out, "SUCCESS: 5 rules found"), "check rules: %d\n%s", rc,
		      out);
	free(out);
	rc = sh("cd examples/prometheus && " PROMTOOL " test rules fnrun-alerts.test.yml 2>&1", &out);
	ck_assert_msg(rc == 0 && strstr(out, "SUCCESS"), "test rules: %d\n%s", rc, out);
	free(out);
	rc = sh(PROMTOOL " check config examples/prometheus/prometheus.yml 2>&1", &out);
	ck_assert_msg(rc == 0, "check config: %d\n%s", rc, out);
	free(out);
}
END_TEST

/* ---- a real Prometheus ---- */

static void urlencode(const char *s, char *out, size_t size)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t n = 0;

	for (; *s && n + 4 < size; s++) {
		unsigned char c = (unsigned char)*s;
		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		    c == '-' || c == '_' || c == '.' || c == '~') {
			out[n++] = (char)c;
		} else {
			out[n++] = '%';
			out[n++] = hex[c >> 4];
			out[n++] = hex[c & 15];
		}
	}
	ck_assert_msg(*s == '\0', "query too long");
	out[n] = '\0';
}

/* Prometheus' answer to GET path, parsed; aborts on no answer. */
static struct json_object *prom_get(int port, const char *path, int *status)
{
	struct tu_resp r;
	struct json_object *o;

	ck_assert_int_eq(tu_http(port, "GET", path, NULL, NULL, 0, &r), 0);
	*status = r.status;
	o = json_tokener_parse(r.body);
	tu_resp_free(&r);
	ck_assert_msg(o != NULL, "Prometheus answered %s with no JSON", path);
	return o;
}

/* An instant query; returns the number of results, fails on an error. */
static int prom_query(int port, const char *expr)
{
	char enc[8192], path[8400];
	struct json_object *o, *data, *res;
	int status, n;

	urlencode(expr, enc, sizeof enc);
	snprintf(path, sizeof path, "/api/v1/query?query=%s", enc);
	o = prom_get(port, path, &status);
	ck_assert_msg(status == 200 && gw_str(o, "status") && strcmp(gw_str(o, "status"), "success") == 0,
		      "query %s: %d %s", expr, status, json_object_to_json_string(o));
	ck_assert(json_object_object_get_ex(o, "data", &data));
	n = json_object_object_get_ex(data, "result", &res) && json_object_is_type(res, json_type_array)
		    ? (int)json_object_array_length(res) : 0;
	json_object_put(o);
	return n;
}

/* Grafana's variables, as a dashboard with "All" selected would send them. */
static void grafana_expand(const char *in, char *out, size_t size)
{
	static const struct { const char *var, *val; } vars[] = {
		{"$__rate_interval", "1m"}, {"$__interval", "5s"}, {"$function", ".*"}};
	size_t n = 0;

	while (*in && n + 16 < size) {
		size_t i;
		for (i = 0; i < sizeof vars / sizeof vars[0]; i++)
			if (strncmp(in, vars[i].var, strlen(vars[i].var)) == 0)
				break;
		if (i < sizeof vars / sizeof vars[0]) {
			n += (size_t)snprintf(out + n, size - n, "%s", vars[i].val);
			in += strlen(vars[i].var);
		} else {
			out[n++] = *in++;
		}
	}
	out[n] = '\0';
}

/* Runs every target of every panel; returns how many. */
static int dashboard_queries(int pport)
{
	struct json_object *d = json_object_from_file("examples/grafana/fnrun-dashboard.json"), *panels;
	char expr[4096];
	int n = 0;

	ck_assert_msg(d != NULL, "examples/grafana/fnrun-dashboard.json is not JSON");
	ck_assert(json_object_object_get_ex(d, "panels", &panels));
	for (size_t i = 0; i < json_object_array_length(panels); i++) {
		struct json_object *p = json_object_array_get_idx(panels, i), *targets;
		if (!json_object_object_get_ex(p, "targets", &targets))
			continue;
		for (size_t k = 0; k < json_object_array_length(targets); k++) {
			const char *e = gw_str(json_object_array_get_idx(targets, k), "expr");
			ck_assert_ptr_nonnull(e);
			grafana_expand(e, expr, sizeof expr);
			prom_query(pport, expr);
			n++;
		}
	}
	json_object_put(d);
	return n;
}

static pid_t start_prometheus(int pport)
{
	char cfg[600], text[PATH_MAX + 512], rules[PATH_MAX], a_cfg[700], a_db[700], a_listen[64], log[600];
	char *argv[] = {PROMETHEUS, a_cfg, a_db, a_listen, "--log.level=warn",
			"--storage.tsdb.retention.time=1h", NULL};
	pid_t pid;

	ck_assert_ptr_nonnull(realpath("examples/prometheus/fnrun-alerts.yml", rules));
	snprintf(text, sizeof text,
		 "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
		 "rule_files: ['%s']\n"
		 "scrape_configs:\n"
		 "  - job_name: fnrun\n"
		 "    static_configs: [{targets: ['127.0.0.1:%d']}]\n",
		 rules, g.port);
	snprintf(cfg, sizeof cfg, "%s/prometheus.yml", g.dir);
	ck_assert_int_eq(tu_write_file(cfg, text, strlen(text)), 0);
	snprintf(a_cfg, sizeof a_cfg, "--config.file=%s", cfg);
	snprintf(a_db, sizeof a_db, "--storage.tsdb.path=%s/prometheus-data", g.dir);
	snprintf(a_listen, sizeof a_listen, "--web.listen-address=127.0.0.1:%d", pport);
	snprintf(log, sizeof log, "%s/prometheus.log", g.dir);
	pid = tu_spawn(argv, log);
	ck_assert_int_gt(pid, 0);
	ck_assert_msg(tu_wait_http(pport, "/-/ready", 200, 30000) == 0, "Prometheus did not start");
	return pid;
}

/* 1 when every rule Prometheus loaded has been evaluated with health "ok". */
static int rules_ok(int pport, int *nrules)
{
	int status;
	struct json_object *o = prom_get(pport, "/api/v1/rules", &status);
	const char *s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
	int ok = 0, bad = strstr(s, "\"health\":\"err\"") != NULL;

	*nrules = 0;
	for (const char *p = s; (p = strstr(p, "\"health\":\"ok\"")) != NULL; p++)
		ok++;
	for (const char *p = s; (p = strstr(p, "\"type\":\"alerting\"")) != NULL; p++)
		(*nrules)++;
	ck_assert_msg(!bad, "a rule failed: %s", s);
	json_object_put(o);
	return *nrules > 0 && ok >= *nrules;
}

START_TEST(prometheus_scrapes)
{
	int pport = tu_free_port(), found = 0, nrules = 0, n, status;
	int64_t deadline;
	pid_t prom;
	struct json_object *o;

	need(PROMETHEUS, "Debian prometheus");
	start_gateway();
	prom = start_prometheus(pport);
	/* Jobs keep completing until Prometheus has seen the counter grow. */
	deadline = (int64_t)util_mono_ms() + 60000;
	while (!found && (int64_t)util_mono_ms() < deadline) {
		run_job("low", "completed");
		found = prom_query(pport, "rate(fnrun_jobs_completed_total[1m]) > 0") > 0;
	}
	ck_assert_msg(found, "rate(fnrun_jobs_completed_total[1m]) > 0 stayed empty for 60 s");
	ck_assert_int_gt(prom_query(pport, "fnrun_jobs_submitted_total{function=\"Create Image\"}"), 0);
	ck_assert_int_gt(prom_query(pport, "histogram_quantile(0.95, sum by (le) "
					  "(rate(fnrun_job_end_to_end_seconds_bucket[1m])))"), 0);
	ck_assert_int_eq(prom_query(pport, "up{job=\"fnrun\"} == 1"), 1);
	n = dashboard_queries(pport);
	ck_assert_int_ge(n, 20);
	o = prom_get(pport, "/api/v1/label/function/values?match%5B%5D=fnrun_jobs_submitted_total",
		     &status);
	ck_assert_ptr_nonnull(strstr(json_object_to_json_string(o), "Create Image"));
	json_object_put(o);
	/* Rules evaluate every second; wait for one round of all of them. */
	while (!rules_ok(pport, &nrules) && (int64_t)util_mono_ms() < deadline + 30000)
		gw_sleep_ms(200);
	ck_assert_msg(nrules == 5, "Prometheus loaded %d alerting rules", nrules);
	ck_assert_msg(rules_ok(pport, &nrules), "the rules were not all evaluated");
	status = tu_stop(prom, 5000);
	ck_assert_msg(status != -1, "Prometheus did not stop");
}
END_TEST

/* ---- the operator page in a browser ---- */

#define ADMIN_TEST "tests/browser/admin.test.mjs"
#define ADMIN_TIMEOUT_MS 170000

static void print_log(const char *title, const char *path)
{
	char *text = tu_read_file(path, NULL);

	fprintf(stderr, "---- %s ----\n%s---- end ----\n", title, text ? text : "(no output)\n");
	free(text);
}

START_TEST(admin_page_in_chromium)
{
	char web[PATH_MAX], url[64], log[600], gwlog[600];
	char *argv[] = {"/usr/bin/env", "node", ADMIN_TEST, NULL};
	int status, gw_status;
	pid_t node;

	ck_assert_msg(access("/usr/bin/chromium", X_OK) == 0, "no /usr/bin/chromium: run scripts/install-deps");
	ck_assert_msg(access("tests/browser/node_modules/playwright-core/package.json", F_OK) == 0,
		      "no playwright-core: run scripts/install-deps");
	ck_assert_ptr_nonnull(realpath("web", web));
	setenv("FNRUN_WEB", web, 1);
	setenv("FNRUN_ADMIN_TOKEN", "operator-secret", 1);
	start_gateway();
	snprintf(url, sizeof url, "http://127.0.0.1:%d/", g.port);
	setenv("FNRUN_URL", url, 1);
	snprintf(log, sizeof log, "%s/admin-test.log", g.dir);
	snprintf(gwlog, sizeof gwlog, "%s/gateway.log", g.dir);
	node = tu_spawn(argv, log);
	ck_assert_int_gt(node, 0);
	status = tu_wait_exit(node, ADMIN_TIMEOUT_MS);
	if (status == -1)
		tu_stop(node, 5000); /* SIGTERM first: playwright closes its browser */
	/* Everything stops before any assertion (a failed one ends this process). */
	gw_status = gw_stop(&g, 8000);
	g.pid = 0;
	print_log(ADMIN_TEST, log);
	if (gw_status == -1 || !WIFEXITED(gw_status) || WEXITSTATUS(gw_status) != 0)
		print_log("fnrun serve", gwlog);
	ck_assert_msg(status != -1, "%s did not finish in %d s", ADMIN_TEST, ADMIN_TIMEOUT_MS / 1000);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		      "%s failed (exit status %d); its output is above", ADMIN_TEST,
		      WIFEXITED(status) ? WEXITSTATUS(status) : -1);
	ck_assert_msg(gw_status != -1 && WIFEXITED(gw_status) && WEXITSTATUS(gw_status) == 0,
		      "fnrun serve did not stop cleanly (status %d); its log is above", gw_status);
}
END_TEST

Suite *suite_metrics(void)
{
	Suite *s = suite_create("metrics");
	TCase *unit = tcase_create("unit");
	TCase *tool = tcase_create("promtool");
	TCase *prom = tcase_create("prometheus");
	TCase *page = tcase_create("admin_page");

	tcase_add_test(unit, escape);
	tcase_add_test(unit, counters);
	tcase_add_test(unit, histogram);
	tcase_add_test(unit, series_limit);
	tcase_add_test(unit, events_ring);
	tcase_add_test(unit, bounded);
	suite_add_tcase(s, unit);

	tcase_add_unchecked_fixture(tool, base_make, base_clean);
	tcase_add_checked_fixture(tool, setup, teardown);
	tcase_set_timeout(tool, 90);
	tcase_add_test(tool, promtool_check_metrics);
	tcase_add_test(tool, admin_token);
	tcase_add_test(tool, promtool_rules);
	suite_add_tcase(s, tool);

	tcase_add_unchecked_fixture(prom, base_make, base_clean);
	tcase_add_checked_fixture(prom, setup, teardown);
	tcase_set_timeout(prom, 150);
	tcase_add_test(prom, prometheus_scrapes);
	suite_add_tcase(s, prom);

	tcase_add_unchecked_fixture(page, base_make, base_clean);
	tcase_add_checked_fixture(page, setup, teardown);
	tcase_set_timeout(page, ADMIN_TIMEOUT_MS / 1000 + 30);
	tcase_add_test(page, admin_page_in_chromium);
	suite_add_tcase(s, page);
	return s;
}
