/*
 * bench_adoption.c - `make bench`: how fast a model is adopted and a bad
 * variant dropped, with a real `fnrun serve` and sim model servers.
 *
 * 1. Registry edit -> the new model serving its first job: the registry
 *    file is rewritten with a new quality served by a new model (the
 *    gateway sees the save through inotify); from the write, a submit
 *    for that quality is retried until it is taken, and then waited on
 *    to completion (reload, a cold start of the new model server, one
 *    job).
 * 2. A bad variant's first failure -> its rollback: v2 (sim --fail error,
 *    rollout against v1) takes nearly all of the tier; from the submit of
 *    one job: the time until the admin API shows v2 rolled back, and until
 *    that job completed on v1 (the user never saw the failure).
 * Prints; asserts nothing.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"
#include "testutil.h"

#define ROUNDS 5

static const char head[] =
	"functions:\n"
	"  Create Image:\n"
	"    params:\n"
	"      prompt: {type: string, required: true}\n"
	"    qualities:\n"
	"      low: {label: Fast Preview, typical_seconds: [1, 2]}\n"
	"%s"
	"models:\n"
	"  img_low:\n"
	"    function: Create Image\n"
	"    quality: low\n"
	"    command: [\"{bindir}/fnrun-worker\", --model, sim, --step-ms, \"0\", --log-level, warn,"
	" --port, \"{port}\"]\n"
	"    workflow: wf.json\n"
	"    bind: {prompt: \"1.inputs.text\"}\n"
	"%s";

static void print(const char *what, double *v, int n)
{
	bench_sort(v, n);
	printf("%-58s p50 %7.1f ms  max %7.1f ms  (n=%d)\n", what, v[n / 2], v[n - 1], n);
}

static int post(int port, const char *path, const char *body, char *id, size_t n)
{
	struct tu_resp r;
	int status;
	const char *p;

	if (tu_http(port, "POST", path, "application/json", body, strlen(body), &r) != 0)
		return 0;
	status = r.status;
	if (id && (p = strstr(r.body, "\"job_id\": \"")) != NULL)
		snprintf(id, n, "%.32s", p + 11);
	tu_resp_free(&r);
	return status;
}

static pid_t gateway(const char *dir, const char *cfg, int port)
{
	char data[700];

	snprintf(data, sizeof data, "%s/adopt-data", dir);
	return bench_serve(cfg, port, data);
}

static void write_registry(const char *cfg, const char *qualities, const char *models)
{
	char text[8192];

	snprintf(text, sizeof text, head, qualities, models);
	tu_write_file(cfg, text, strlen(text));
}

/* 1. Each round adds quality qN served by a new model, and times its first job. */
static void edit_to_first_job(const char *dir)
{
	char cfg[700], qs[2048] = "", ms[4096] = "", body[256], id[40], path[96];
	double t[ROUNDS];
	int port = tu_free_port();
	pid_t g;

	snprintf(cfg, sizeof cfg, "%s/adopt.yaml", dir);
	write_registry(cfg, qs, ms);
	g = gateway(dir, cfg, port);
	for (int i = 0; i < ROUNDS; i++) {
		double t0;
		size_t ql = strlen(qs), ml = strlen(ms);

		snprintf(qs + ql, sizeof qs - ql, "      q%d: {label: New %d, typical_seconds: [1, 2]}\n",
			 i, i);
		snprintf(ms + ml, sizeof ms - ml,
			 "  img_new_%d:\n    function: Create Image\n    quality: q%d\n"
			 "    command: [\"{bindir}/fnrun-worker\", --model, sim, --step-ms, \"0\","
			 " --log-level, warn, --port, \"{port}\"]\n"
			 "    workflow: wf.json\n    bind: {prompt: \"1.inputs.text\"}\n", i, i);
		snprintf(body, sizeof body, "{\"function\": \"Create Image\", \"quality\": \"q%d\","
			 " \"params\": {\"prompt\": \"new\"}}", i);
		t0 = bench_now_ms();
		write_registry(cfg, qs, ms);
		while (post(port, "/api/generate", body, id, sizeof id) != 202 &&
		       bench_now_ms() - t0 < 10000)
			usleep(500);
		snprintf(path, sizeof path, "/api/jobs/%s", id);
		bench_poll(port, path, "\"completed\"", 20000);
		t[i] = bench_now_ms() - t0;
	}
	print("registry edit -> the new model's first job completed", t, ROUNDS);
	tu_stop(g, 5000);
}

/* 2. Each round gives v2 the tier again and times its rollback. */
static void failure_to_rollback(const char *dir)
{
	static const char variants[] =
		"  img_v1:\n    function: Create Image\n    quality: standard\n    version: \"1\"\n"
		"    command: [\"{bindir}/fnrun-worker\", --model, sim, --step-ms, \"0\", --log-level, warn,"
		" --port, \"{port}\"]\n"
		"    workflow: wf.json\n    bind: {prompt: \"1.inputs.text\"}\n    weight: 1\n"
		"  img_v2:\n    function: Create Image\n    quality: standard\n    version: \"2\"\n"
		"    command: [\"{bindir}/fnrun-worker\", --model, sim, --step-ms, \"0\", --fail, error,"
		" --log-level, warn, --port, \"{port}\"]\n"
		"    workflow: wf.json\n    bind: {prompt: \"1.inputs.text\"}\n    weight: 1000000\n"
		"    rollout: {baseline: img_v1, max_failure_rate_delta: 0.05, min_jobs: 1, window: 10}\n";
	char cfg[700], body[256], id[40], path[96];
	double rb[ROUNDS], done[ROUNDS];
	int port = tu_free_port();
	pid_t g;

	snprintf(cfg, sizeof cfg, "%s/rollout.yaml", dir);
	write_registry(cfg, "      standard: {label: Balanced, typical_seconds: [1, 2]}\n", variants);
	g = gateway(dir, cfg, port);
	/* Both model servers warm, so the figure is the rollback's, not a cold start's. */
	post(port, "/api/admin/models/img_v1/start", "", NULL, 0);
	post(port, "/api/admin/models/img_v2/start", "", NULL, 0);
	bench_poll(port, "/api/admin/runners", "\"state\": \"ready\"", 10000);
	usleep(200000);
	for (int i = 0; i < ROUNDS; i++) {
		double t0;

		post(port, "/api/admin/models/img_v2/weight", "{\"weight\": 1000000}", NULL, 0);
		if (i > 0) { /* the rollback drained it: warm again */
			post(port, "/api/admin/models/img_v2/start", "", NULL, 0);
			usleep(300000);
		}
		snprintf(body, sizeof body, "{\"function\": \"Create Image\", \"quality\":"
			 " \"standard\", \"params\": {\"prompt\": \"x\"}, \"user\": \"round-%d\"}", i);
		t0 = bench_now_ms();
		post(port, "/api/generate", body, id, sizeof id);
		bench_poll(port, "/api/admin/models", "\"state\": \"rolled_back\"", 10000);
		rb[i] = bench_now_ms() - t0;
		snprintf(path, sizeof path, "/api/jobs/%s", id);
		bench_poll(port, path, "\"completed\"", 10000);
		done[i] = bench_now_ms() - t0;
	}
	print("bad variant: submit -> rolled back (first failure)", rb, ROUNDS);
	print("bad variant: submit -> that job completed on the baseline", done, ROUNDS);
	tu_stop(g, 5000);
}

void bench_adoption(void)
{
	char dir[600];

	snprintf(dir, sizeof dir, "%s", tu_tmpdir());
	{
		char wf[700];
		static const char workflow[] =
			"{\"1\": {\"class_type\": \"SimTextEncode\", \"inputs\": {\"text\": \"x\"}},"
			" \"2\": {\"class_type\": \"SimSampler\", \"inputs\": {\"conditioning\": [\"1\", 0],"
			" \"seed\": 1, \"steps\": 1, \"width\": 64, \"height\": 64, \"step_ms\": 0,"
			" \"fail\": \"none\"}},"
			" \"3\": {\"class_type\": \"SaveImage\", \"inputs\": {\"images\": [\"2\", 0],"
			" \"filename_prefix\": \"b\"}}}";
		snprintf(wf, sizeof wf, "%s/wf.json", dir);
		tu_write_file(wf, workflow, strlen(workflow));
	}
	edit_to_first_job(dir);
	failure_to_rollback(dir);
}
