/*
 * test_gateway.c - fnrun serve end to end, through real processes: the
 * gateway spawns real fnrun-worker model servers on demand, and the tests
 * speak HTTP and Server-Sent Events to it as a client would.
 */
#include <dirent.h>
#include <json-c/json.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utime.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"

static pid_t gw;       /* fnrun serve */
static int gw_port;
static char dir[256];  /* temp dir: registry, workflow, data */

static const char workflow[] =
	"{\"1\": {\"class_type\": \"SimTextEncode\", \"inputs\": {\"text\": \"x\"}},"
	" \"2\": {\"class_type\": \"SimSampler\", \"inputs\": {\"conditioning\": [\"1\", 0],"
	" \"seed\": 1, \"steps\": 8, \"width\": 64, \"height\": 64, \"step_ms\": -1, \"fail\": \"none\"}},"
	" \"3\": {\"class_type\": \"SaveImage\", \"inputs\": {\"images\": [\"2\", 0], \"filename_prefix\": \"gw\"}}}";

/* One sim model per tier; extra lets a test add models or change steps. */
static void write_registry(const char *step_ms_std, const char *extra_models, const char *std_fallback)
{
	char path[512], text[8192];

	snprintf(path, sizeof path, "%s/wf.json", dir);
	ck_assert_int_eq(tu_write_file(path, workflow, strlen(workflow)), 0);
	snprintf(text, sizeof text,
		 "functions:\n"
		 "  Create Image:\n"
		 "    params:\n"
		 "      prompt: {type: string, required: true, max_length: 200}\n"
		 "      width: {type: int, default: 64, min: 16, max: 256}\n"
		 "      seed: {type: int, default: random}\n"
		 "    qualities:\n"
		 "      low: {label: Fast Preview, typical_seconds: [1, 2]}\n"
		 "      standard: {label: Balanced, typical_seconds: [1, 3]}\n"
		 "models:\n"
		 "  img_low:\n"
		 "    function: Create Image\n"
		 "    quality: low\n"
		 "    runtime: process\n"
		 "    command: [\"{bindir}/fnrun-worker\", --model, sim, --step-ms, \"5\", --port, \"{port}\"]\n"
		 "    workflow: wf.json\n"
		 "    bind: {prompt: \"1.inputs.text\", width: \"2.inputs.width\", seed: \"2.inputs.seed\"}\n"
		 "    idle_timeout: 60s\n"
		 "    start_timeout: 20s\n"
		 "  img_std:\n"
		 "    function: Create Image\n"
		 "    quality: standard\n"
		 "    runtime: process\n"
		 "    command: [\"{bindir}/fnrun-worker\", --model, sim, --step-ms, \"%s\", --port, \"{port}\"]\n"
		 "    workflow: wf.json\n"
		 "    bind: {prompt: \"1.inputs.text\", width: \"2.inputs.width\", seed: \"2.inputs.seed\"}\n"
		 "    idle_timeout: 60s\n"
		 "    start_timeout: 20s\n"
		 "%s"
		 "%s",
		 step_ms_std, std_fallback ? std_fallback : "", extra_models ? extra_models : "");
	snprintf(path, sizeof path, "%s/registry.yaml", dir);
	ck_assert_int_eq(tu_write_file(path, text, strlen(text)), 0);
}

static void start_gateway(void)
{
	char cfg[512], listen[64], data[512], log[512];
	char *argv[] = {(char *)tu_bin("fnrun"), "serve", "--config", cfg, "--listen", listen,
			"--data", data, NULL};
	static char bin[1024];

	snprintf(bin, sizeof bin, "%s", tu_bin("fnrun"));
	argv[0] = bin;
	snprintf(cfg, sizeof cfg, "%s/registry.yaml", dir);
	if (gw_port == 0)
		gw_port = tu_free_port();
	snprintf(listen, sizeof listen, "127.0.0.1:%d", gw_port);
	snprintf(data, sizeof data, "%s/data", dir);
	snprintf(log, sizeof log, "%s/gateway.log", dir);
	gw = tu_spawn(argv, log);
	ck_assert_int_gt(gw, 0);
	ck_assert_msg(tu_wait_http(gw_port, "/health", 200, 10000) == 0, "gateway did not start");
}

static void setup(void)
{
	snprintf(dir, sizeof dir, "%s", tu_tmpdir());
	gw_port = 0;
	gw = 0;
}

/* Kills every process group the gateway started (model servers), then it. */
static void teardown(void)
{
	if (gw > 0)
		tu_stop(gw, 8000);
	tu_rmrf(dir);
}

static struct json_object *http_json(const char *method, const char *path, const char *body,
				     int *status)
{
	struct tu_resp r;
	struct json_object *o;

	ck_assert_int_eq(tu_http(gw_port, method, path, body ? "application/json" : NULL, body,
				 body ? strlen(body) : 0, &r), 0);
	*status = r.status;
	o = json_tokener_parse(r.body);
	tu_resp_free(&r);
	return o;
}

static const char *jstr(struct json_object *o, const char *k)
{
	struct json_object *v;

	return json_object_object_get_ex(o, k, &v) ? json_object_get_string(v) : NULL;
}

static char *submit(const char *quality, const char *prompt)
{
	char body[512];
	struct json_object *o;
	int status;
	char *id;

	snprintf(body, sizeof body,
		 "{\"function\": \"Create Image\", \"quality\": \"%s\", \"params\": {\"prompt\": \"%s\"}}",
		 quality, prompt);
	o = http_json("POST", "/api/generate", body, &status);
	ck_assert_msg(status == 202, "submit answered %d", status);
	ck_assert_ptr_nonnull(jstr(o, "job_id"));
	id = strdup(jstr(o, "job_id"));
	json_object_put(o);
	return id;
}

/* The model server's own name of the job's first output (admin API); caller frees. */
static char *admin_output_source(const char *id)
{
	char path[160];
	struct json_object *o, *outs = NULL;
	const char *src;
	char *out;
	int status;

	snprintf(path, sizeof path, "/api/admin/jobs/%s", id);
	o = http_json("GET", path, NULL, &status);
	ck_assert_msg(status == 200, "GET %s: %d", path, status);
	ck_assert_str_eq(jstr(o, "model"), "img_std");
	json_object_object_get_ex(o, "stored_outputs", &outs);
	src = jstr(json_object_array_get_idx(outs, 0), "source");
	ck_assert_ptr_nonnull(src);
	out = strdup(src);
	json_object_put(o);
	return out;
}

static void sleep_ms(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};

	nanosleep(&ts, NULL);
}

/* Polls the job until its status is one of want (comma list) or ms pass. */
static struct json_object *wait_status(const char *id, const char *want, int ms)
{
	char path[128];

	snprintf(path, sizeof path, "/api/jobs/%s", id);
	for (int waited = 0; waited <= ms; waited += 20) {
		int status;
		struct json_object *o = http_json("GET", path, NULL, &status);
		const char *s = o ? jstr(o, "status") : NULL;
		if (s && strstr(want, s))
			return o;
		json_object_put(o);
		sleep_ms(20);
	}
	ck_abort_msg("job %s never reached %s", id, want);
	return NULL;
}

/* Reads the SSE stream of a job to its end (the stream ends after the final state). */
static char *events_of(const char *id)
{
	char path[128];
	struct tu_resp r;
	char *body;

	snprintf(path, sizeof path, "/api/jobs/%s/events", id);
	ck_assert_int_eq(tu_http(gw_port, "GET", path, NULL, NULL, 0, &r), 0);
	ck_assert_int_eq(r.status, 200);
	ck_assert_ptr_nonnull(strstr(r.headers, "text/event-stream"));
	body = strdup(r.body);
	tu_resp_free(&r);
	return body;
}

/* The one file a runner wrote under data/runs/<runner>/output/. */
static char *find_worker_output(const char *name)
{
	char runs[600], path[1400];
	DIR *d;
	struct dirent *e;

	snprintf(runs, sizeof runs, "%s/data/runs", dir);
	d = opendir(runs);
	ck_assert_ptr_nonnull(d);
	while ((e = readdir(d)) != NULL) {
		size_t len;
		char *data;
		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof path, "%s/%s/output/%s", runs, e->d_name, name);
		data = tu_read_file(path, &len);
		if (data) {
			closedir(d);
			return data;
		}
	}
	closedir(d);
	return NULL;
}

START_TEST(submit_runs_on_demand_and_outputs_match)
{
	struct json_object *job, *outs, *first, *v;
	struct tu_resp r;
	char *id, *events, *orig, *src, want[64];
	const char *url, *fn;
	int status;

	write_registry("5", NULL, NULL);
	start_gateway();
	id = submit("standard", "a lighthouse at dusk");
	events = events_of(id);
	ck_assert_msg(strstr(events, "\"queued\""), "no queued event: %s", events);
	ck_assert_msg(strstr(events, "\"running\""), "no running event: %s", events);
	ck_assert_msg(strstr(events, "Creating") || strstr(events, "progress"), "no progress: %s", events);
	ck_assert_msg(strstr(events, "\"completed\""), "no completed event: %s", events);
	ck_assert_ptr_null(strstr(events, "img_std"));
	job = wait_status(id, "completed", 5000);
	ck_assert(json_object_object_get_ex(job, "outputs", &outs));
	ck_assert_int_eq(json_object_array_length(outs), 1);
	first = json_object_array_get_idx(outs, 0);
	url = jstr(first, "url");
	ck_assert_ptr_nonnull(url);
	ck_assert(json_object_object_get_ex(job, "progress", &v));
	ck_assert_int_eq(json_object_get_int(v), 100);
	ck_assert_ptr_null(strstr(json_object_to_json_string(job), "img_std"));
	ck_assert_int_eq(tu_http(gw_port, "GET", url, NULL, NULL, 0, &r), 0);
	ck_assert_int_eq(r.status, 200);
	fn = jstr(first, "filename");
	ck_assert_ptr_nonnull(fn);
	snprintf(want, sizeof want, "create-image-%.8s.png", id);
	ck_assert_str_eq(fn, want); /* the function and the job, never the model */
	src = admin_output_source(id);
	orig = find_worker_output(src);
	ck_assert_msg(orig != NULL, "model server file %s not found", src);
	free(src);
	ck_assert_int_eq(memcmp(r.body, "\x89PNG", 4), 0);
	ck_assert_int_eq(memcmp(r.body, orig, r.len), 0);
	(void)status;
	free(orig);
	tu_resp_free(&r);
	json_object_put(job);
	free(events);
	free(id);
}
END_TEST

START_TEST(fallback_when_model_fails_to_start)
{
	static const char broken[] =
		"  img_high:\n"
		"    function: Create Image\n"
		"    quality: standard\n"
		"    runtime: process\n"
		"    command: [\"/nonexistent/model-server\", --port, \"{port}\"]\n"
		"    workflow: wf.json\n"
		"    bind: {prompt: \"1.inputs.text\"}\n"
		"    start_timeout: 5s\n"
		"    fallback: img_low\n";
	struct json_object *job;
	char *id;

	/* The standard tier's only enabled model is broken; img_std is off. */
	write_registry("5", broken, "    enabled: false\n");
	start_gateway();
	id = submit("standard", "fallback please");
	job = wait_status(id, "completed,failed", 15000);
	ck_assert_str_eq(jstr(job, "status"), "completed");
	ck_assert_ptr_null(strstr(json_object_to_json_string(job), "img_"));
	json_object_put(job);
	free(id);
}
END_TEST

START_TEST(cancel_queued_and_running)
{
	struct json_object *o;
	char *slow, *queued, path[128];
	int status;

	write_registry("200", NULL, NULL); /* 8 steps of 200 ms */
	start_gateway();
	slow = submit("standard", "slow");
	queued = submit("standard", "behind");
	o = wait_status(slow, "running", 10000);
	json_object_put(o);
	snprintf(path, sizeof path, "/api/jobs/%s/cancel", queued);
	o = http_json("POST", path, "", &status);
	ck_assert_int_eq(status, 200);
	json_object_put(o);
	o = wait_status(queued, "cancelled", 1000);
	json_object_put(o);
	snprintf(path, sizeof path, "/api/jobs/%s/cancel", slow);
	o = http_json("POST", path, "", &status);
	ck_assert_int_eq(status, 200);
	json_object_put(o);
	o = wait_status(slow, "cancelled", 5000);
	json_object_put(o);
	/* Finished jobs cannot be cancelled again. */
	o = http_json("POST", path, "", &status);
	ck_assert_int_eq(status, 409);
	json_object_put(o);
	free(slow);
	free(queued);
}
END_TEST

/* Pids of fnrun-worker processes whose parent is ppid. */
static int worker_children(pid_t ppid, pid_t *out, int max)
{
	DIR *d = opendir("/proc");
	struct dirent *e;
	int n = 0;

	while (d && (e = readdir(d)) != NULL && n < max) {
		char path[300], buf[1024];
		FILE *f;
		int pid = atoi(e->d_name), pp = 0;
		if (pid <= 0)
			continue;
		snprintf(path, sizeof path, "/proc/%d/stat", pid);
		f = fopen(path, "r");
		if (f == NULL)
			continue;
		if (fgets(buf, sizeof buf, f) && strrchr(buf, ')'))
			sscanf(strrchr(buf, ')') + 2, "%*c %d", &pp);
		fclose(f);
		snprintf(path, sizeof path, "/proc/%d/cmdline", pid);
		f = fopen(path, "r");
		buf[0] = '\0';
		if (f) {
			size_t k = fread(buf, 1, sizeof buf - 1, f);
			buf[k] = '\0';
			fclose(f);
		}
		if (pp == ppid && strstr(buf, "fnrun-worker"))
			out[n++] = pid;
	}
	if (d)
		closedir(d);
	return n;
}

START_TEST(model_server_kill9_requeues_job)
{
	struct json_object *o;
	pid_t kids[8];
	char *id;
	int n = 0;

	write_registry("150", NULL, NULL);
	start_gateway();
	id = submit("standard", "survive a crash");
	o = wait_status(id, "running", 10000);
	json_object_put(o);
	for (int waited = 0; waited < 5000 && n == 0; waited += 20) {
		n = worker_children(gw, kids, 8);
		if (n == 0)
			sleep_ms(20);
	}
	ck_assert_int_eq(n, 1);
	kill(kids[0], SIGKILL);
	o = wait_status(id, "completed,failed", 20000);
	ck_assert_str_eq(jstr(o, "status"), "completed");
	json_object_put(o);
	free(id);
}
END_TEST

/* Waits until the gateway's log has text; fails the test after ms. */
static void wait_log(const char *text, int ms)
{
	char path[600];

	snprintf(path, sizeof path, "%s/gateway.log", dir);
	for (int waited = 0; waited <= ms; waited += 20) {
		char *log = tu_read_file(path, NULL);
		int found = log && strstr(log, text);

		free(log);
		if (found)
			return;
		sleep_ms(20);
	}
	ck_abort_msg("the gateway never logged \"%s\"", text);
}

START_TEST(gateway_kill9_then_restart_completes_each_job_once)
{
	char *ids[4], path[128], tmp[600], kept[600];
	struct json_object *o, *jobs;
	int status, completed = 0;

	write_registry("100", NULL, NULL);
	start_gateway();
	for (int i = 0; i < 4; i++)
		ids[i] = submit("standard", "durable");
	o = wait_status(ids[0], "running", 10000);
	json_object_put(o);
	kill(gw, SIGKILL);
	waitpid(gw, NULL, 0);
	gw = 0;
	/* What a thumbnail being written when the kill came leaves, and an output. */
	snprintf(tmp, sizeof tmp, "%s/data/outputs/ab", dir);
	mkdir(tmp, 0755);
	snprintf(tmp, sizeof tmp, "%s/data/outputs/ab/.thumb-Xy12Zq", dir);
	ck_assert_int_eq(tu_write_file(tmp, "half", 4), 0);
	ck_assert_int_eq(utime(tmp, &(struct utimbuf){1000, 1000}), 0);
	snprintf(kept, sizeof kept, "%s/data/outputs/ab/ab12-create-image-ab12.png", dir);
	ck_assert_int_eq(tu_write_file(kept, "png", 3), 0);
	ck_assert_int_eq(utime(kept, &(struct utimbuf){1000, 1000}), 0);
	start_gateway();
	wait_log("temporary files removed count=1", 10000);
	ck_assert_int_eq(access(tmp, F_OK), -1);
	ck_assert_int_eq(access(kept, F_OK), 0);
	for (int i = 0; i < 4; i++) {
		o = wait_status(ids[i], "completed,failed", 30000);
		ck_assert_str_eq(jstr(o, "status"), "completed");
		json_object_put(o);
	}
	o = http_json("GET", "/api/jobs?limit=50", NULL, &status);
	ck_assert_int_eq(status, 200);
	ck_assert(json_object_object_get_ex(o, "jobs", &jobs));
	ck_assert_int_eq(json_object_array_length(jobs), 4);
	for (size_t i = 0; i < json_object_array_length(jobs); i++)
		completed += strcmp(jstr(json_object_array_get_idx(jobs, i), "status"), "completed") == 0;
	ck_assert_int_eq(completed, 4);
	json_object_put(o);
	/* No orphan of the first run is left: only the new run's model servers. */
	snprintf(path, sizeof path, "/api/jobs/%s", ids[0]);
	for (int i = 0; i < 4; i++)
		free(ids[i]);
}
END_TEST

/* Answers status and error.code, and checks the message names `field`. */
static void expect_bad(const char *body, int want_status, const char *field)
{
	struct json_object *o, *err;
	int status;
	const char *msg;

	o = http_json("POST", "/api/generate", body, &status);
	ck_assert_msg(status == want_status, "%s -> %d", body, status);
	ck_assert_ptr_nonnull(o);
	ck_assert(json_object_object_get_ex(o, "error", &err));
	ck_assert_ptr_nonnull(jstr(err, "code"));
	msg = jstr(err, "message");
	ck_assert_ptr_nonnull(msg);
	if (field)
		ck_assert_msg(strstr(msg, field) || (jstr(err, "field") && strstr(jstr(err, "field"), field)),
			      "message \"%s\" does not name %s", msg, field);
	ck_assert_ptr_null(strstr(json_object_to_json_string(o), "img_"));
	json_object_put(o);
}

START_TEST(bad_input_gets_4xx_naming_the_field_and_queues_nothing)
{
	char deep[400], big[2 * 1024 * 1024 + 64];
	struct json_object *o, *jobs;
	int status;

	write_registry("5", NULL, NULL);
	start_gateway();
	expect_bad("{\"function\": \"Create Sculpture\", \"params\": {}}", 400, "function");
	expect_bad("{\"function\": \"Create Image\", \"quality\": \"ultra\", \"params\": {\"prompt\": \"x\"}}", 400, "quality");
	expect_bad("{\"function\": \"Create Image\", \"params\": {}}", 400, "prompt");
	expect_bad("{\"function\": \"Create Image\", \"params\": {\"prompt\": 12}}", 400, "prompt");
	expect_bad("{\"function\": \"Create Image\", \"params\": {\"prompt\": \"x\", \"width\": 99999}}", 400, "width");
	expect_bad("{\"function\": \"Create Image\", \"params\": {\"prompt\": \"x\", \"width\": \"wide\"}}", 400, "width");
	expect_bad("{\"function\": \"Create Image\", \"params\": {\"prompt\": \"x\", \"colour\": 1}}", 400, "colour");
	expect_bad("{\"function\": \"Create Image\", \"params\": {\"prompt\": \"x\"}, \"priority\": \"high\"}", 400, "priority");
	expect_bad("{\"function\": \"Create Image\", \"params\": {\"prompt\": \"x\"}, \"bogus\": 1}", 400, "bogus");
	/* Never half-accepted: NUL, bad UTF-8, lone surrogates, a key twice. */
	expect_bad("{\"function\": \"Create Image\\u0000x\", \"params\": {\"prompt\": \"x\"}}", 400, "function");
	expect_bad("{\"function\": \"Create Image\", \"quality\": \"low\\u0000zzz\", \"params\": {\"prompt\": \"x\"}}", 400, "quality");
	expect_bad("{\"function\": \"Create Image\", \"params\": {\"prompt\": \"a \xff\xfe b\"}}", 400, "params.prompt");
	expect_bad("{\"function\": \"Create Image\", \"params\": {\"prompt\": \"a \\ud800 b\"}}", 400, "params.prompt");
	expect_bad("{\"function\": \"Create Image\", \"params\": {\"prompt\": \"a \xed\xa0\x80 b\"}}", 400, "params.prompt");
	expect_bad("{\"function\": \"Create Image\", \"params\": {\"prompt\": \"x\", \"prompt\": \"y\"}}", 400, "params.prompt");
	expect_bad("{\"function\": \"Create Image\", \"function\": \"Create Image\", \"params\": {\"prompt\": \"x\"}}", 400, "function");
	expect_bad("{\"function\": \"Create Image\", \"params\": ", 400, NULL);
	expect_bad("[1, 2]", 400, NULL);
	memset(deep, '[', 200);
	memset(deep + 200, ']', 200);
	deep[399] = '\0';
	deep[199] = '1';
	expect_bad(deep, 400, NULL);
	memset(big, ' ', sizeof big - 1);
	big[sizeof big - 1] = '\0';
	memcpy(big, "{\"function\": \"Create Image\", \"params\": {\"prompt\": \"", 51);
	expect_bad(big, 413, NULL);
	o = http_json("GET", "/api/jobs/0123456789abcdef0123456789abcdef", NULL, &status);
	ck_assert_int_eq(status, 404);
	json_object_put(o);
	o = http_json("GET", "/api/jobs", NULL, &status);
	ck_assert(json_object_object_get_ex(o, "jobs", &jobs));
	ck_assert_int_eq(json_object_array_length(jobs), 0);
	json_object_put(o);
}
END_TEST

/* POSTs body; returns the status and the job id (or the error code) in out. */
static int post_generate(const char *body, char *out, size_t n)
{
	struct json_object *o, *e;
	int status;

	o = http_json("POST", "/api/generate", body, &status);
	ck_assert_ptr_nonnull(o);
	if (json_object_object_get_ex(o, "error", &e))
		snprintf(out, n, "%s %s", jstr(e, "code"), jstr(e, "message"));
	else
		snprintf(out, n, "%s", jstr(o, "job_id"));
	json_object_put(o);
	return status;
}

/*
 * The same idempotency key: the same request gets the first job (a seed
 * left to its random default matches); a different one gets 409 and
 * nothing is queued for it.
 */
START_TEST(idempotency_key_same_request_or_409)
{
	static const char *const other[] = {
		"{\"function\": \"Create Image\", \"quality\": \"low\", \"params\": {\"prompt\": \"y\"}, \"idempotency_key\": \"k1\"}",
		"{\"function\": \"Create Image\", \"quality\": \"standard\", \"params\": {\"prompt\": \"x\"}, \"idempotency_key\": \"k1\"}",
		"{\"function\": \"Create Image\", \"quality\": \"low\", \"params\": {\"prompt\": \"x\", \"width\": 32}, \"idempotency_key\": \"k1\"}",
		"{\"function\": \"Create Image\", \"quality\": \"low\", \"params\": {\"prompt\": \"x\", \"seed\": 7}, \"idempotency_key\": \"k1\"}",
		"{\"function\": \"Create Image\", \"quality\": \"low\", \"params\": {\"prompt\": \"x\"}, \"priority\": 9, \"idempotency_key\": \"k1\"}",
	};
	const char *first = "{\"function\": \"Create Image\", \"quality\": \"low\", \"params\": {\"prompt\": \"x\"}, \"idempotency_key\": \"k1\"}";
	const char *same = "{\"idempotency_key\": \"k1\", \"params\": {\"width\": 64, \"prompt\": \"x\"}, \"quality\": \"low\", \"function\": \"Create Image\"}";
	char id[300], got[300];
	struct json_object *o, *jobs;
	int status;

	write_registry("5", NULL, NULL);
	start_gateway();
	ck_assert_int_eq(post_generate(first, id, sizeof id), 202);
	ck_assert_int_eq(post_generate(first, got, sizeof got), 200);
	ck_assert_str_eq(got, id);
	/* The same request written otherwise: keys reordered, a default spelled out. */
	ck_assert_int_eq(post_generate(same, got, sizeof got), 200);
	ck_assert_str_eq(got, id);
	for (size_t i = 0; i < sizeof other / sizeof other[0]; i++) {
		ck_assert_msg(post_generate(other[i], got, sizeof got) == 409, "%s: %s", other[i], got);
		ck_assert_msg(strncmp(got, "DUPLICATE_REQUEST idempotency_key:", 34) == 0, "%s", got);
	}
	o = http_json("GET", "/api/jobs", NULL, &status);
	ck_assert(json_object_object_get_ex(o, "jobs", &jobs));
	ck_assert_int_eq(json_object_array_length(jobs), 1);
	json_object_put(o);
}
END_TEST

/* GET path with this Host header; returns the status. */
static int get_with_host(const char *path, const char *host)
{
	char req[512];
	struct tu_resp r;
	int fd = tu_connect(gw_port), status;

	ck_assert_int_ge(fd, 0);
	snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n",
		 path, host);
	ck_assert_int_eq(tu_write_all(fd, req, strlen(req)), 0);
	ck_assert_int_eq(tu_read_response(fd, &r), 0);
	status = r.status;
	tu_resp_free(&r);
	close(fd);
	return status;
}

/*
 * DNS rebinding: a page on a name the attacker controls, resolved to
 * 127.0.0.1, sends that name as Host. Only IP literals, localhost and the
 * registry's server.hosts are answered.
 */
START_TEST(host_header_checked_against_dns_rebinding)
{
	char host[64];

	write_registry("5", "server: {hosts: [gpu-box.lan]}\n", NULL);
	start_gateway();
	snprintf(host, sizeof host, "127.0.0.1:%d", gw_port);
	ck_assert_int_eq(get_with_host("/api/functions", host), 200);
	ck_assert_int_eq(get_with_host("/api/functions", "localhost"), 200);
	ck_assert_int_eq(get_with_host("/api/admin/models", "gpu-box.lan:8180"), 200);
	ck_assert_int_eq(get_with_host("/api/admin/models", "attacker.example:8180"), 403);
	ck_assert_int_eq(get_with_host("/api/jobs", "attacker.example"), 403);
	ck_assert_int_eq(get_with_host("/", "127.0.0.1.attacker.example"), 403);
}
END_TEST

/* GETs a job's first output; its bytes (caller frees) and length. */
static char *first_output(struct json_object *job, size_t *len)
{
	struct json_object *outs;
	struct tu_resp r;
	char *copy;

	ck_assert(json_object_object_get_ex(job, "outputs", &outs));
	ck_assert_int_eq(json_object_array_length(outs), 1);
	ck_assert_int_eq(tu_http(gw_port, "GET", jstr(json_object_array_get_idx(outs, 0), "url"), NULL,
				 NULL, 0, &r), 0);
	ck_assert_int_eq(r.status, 200);
	copy = malloc(r.len);
	memcpy(copy, r.body, r.len);
	*len = r.len;
	tu_resp_free(&r);
	return copy;
}

/*
 * The same request twice on one model server: ComfyUI (and fnrun-worker)
 * runs nothing the second time, every node from its cache
 * (execution_cached), and replays the output node's result. The job still
 * completes with its own output, the same picture.
 */
START_TEST(fully_cached_prompt_completes_with_its_outputs)
{
	const char *body = "{\"function\": \"Create Image\", \"quality\": \"low\", \"params\": "
			   "{\"prompt\": \"again\", \"seed\": 5}}";
	struct json_object *a, *b, *o;
	char ida[300], idb[300], *pa, *pb, path[600];
	const char *url, *hist;
	struct tu_resp r;
	size_t la, lb;
	int status;

	write_registry("5", NULL, NULL);
	start_gateway();
	ck_assert_int_eq(post_generate(body, ida, sizeof ida), 202);
	a = wait_status(ida, "completed,failed", 15000);
	ck_assert_str_eq(jstr(a, "status"), "completed");
	ck_assert_int_eq(post_generate(body, idb, sizeof idb), 202);
	b = wait_status(idb, "completed,failed", 15000);
	ck_assert_str_eq(jstr(b, "status"), "completed");
	pa = first_output(a, &la);
	pb = first_output(b, &lb);
	ck_assert(la == lb && memcmp(pa, pb, la) == 0);
	/* The model server ran nothing the second time: every node came from its cache. */
	snprintf(path, sizeof path, "/api/admin/jobs/%s", idb);
	o = http_json("GET", path, NULL, &status);
	ck_assert_int_eq(status, 200);
	url = jstr(o, "model_server_url");
	ck_assert_ptr_nonnull(url);
	snprintf(path, sizeof path, "/history/%s", jstr(o, "prompt_id"));
	ck_assert_int_eq(tu_http(atoi(strrchr(url, ':') + 1), "GET", path, NULL, NULL, 0, &r), 0);
	ck_assert_int_eq(r.status, 200);
	hist = strstr(r.body, "execution_cached");
	ck_assert_msg(hist && strstr(hist, "\"1\", \"2\", \"3\""), "not all cached: %s", r.body);
	tu_resp_free(&r);
	json_object_put(o);
	free(pa);
	free(pb);
	json_object_put(a);
	json_object_put(b);
}
END_TEST

START_TEST(catalog_and_check)
{
	struct json_object *o;
	const char *text;
	int status;
	char cmd[1024];

	write_registry("5", NULL, NULL);
	start_gateway();
	o = http_json("GET", "/api/functions", NULL, &status);
	ck_assert_int_eq(status, 200);
	text = json_object_to_json_string(o);
	ck_assert_ptr_nonnull(strstr(text, "Create Image"));
	ck_assert_ptr_nonnull(strstr(text, "Fast Preview"));
	ck_assert_ptr_null(strstr(text, "img_low"));
	ck_assert_ptr_null(strstr(text, "fnrun-worker"));
	json_object_put(o);
	snprintf(cmd, sizeof cmd, "%s check %s/registry.yaml >/dev/null 2>&1", tu_bin("fnrun"), dir);
	ck_assert_int_eq(WEXITSTATUS(system(cmd)), 0);
}
END_TEST

Suite *suite_gateway(void)
{
	Suite *s = suite_create("gateway");
	TCase *tc = tcase_create("e2e");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 90);
	tcase_add_test(tc, submit_runs_on_demand_and_outputs_match);
	tcase_add_test(tc, cancel_queued_and_running);
	tcase_add_test(tc, model_server_kill9_requeues_job);
	tcase_add_test(tc, gateway_kill9_then_restart_completes_each_job_once);
	tcase_add_test(tc, bad_input_gets_4xx_naming_the_field_and_queues_nothing);
	tcase_add_test(tc, catalog_and_check);
	tcase_add_test(tc, idempotency_key_same_request_or_409);
	tcase_add_test(tc, host_header_checked_against_dns_rebinding);
	tcase_add_test(tc, fully_cached_prompt_completes_with_its_outputs);
	suite_add_tcase(s, tc);
	/* Its own case: make test-fallback runs every case named "fallback". */
	tc = tcase_create("fallback");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 90);
	tcase_add_test(tc, fallback_when_model_fails_to_start);
	suite_add_tcase(s, tc);
	return s;
}
