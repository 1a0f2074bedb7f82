/*
 * test_tier.c - several models behind one function and quality share its
 * jobs, through real processes: an external model with two URLs (two
 * running fnrun-workers, one runner each) uses both; two external models
 * in one tier both serve; two process models in one tier both serve; and
 * weights split a tier's traffic.
 *
 * Which model served a job is read from its output's file name: each
 * model's workflow saves with its own filename_prefix.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gwtest.h"
#include "testutil.h"

static struct gw g;
static pid_t workers[2];
static int wports[2];

/* A sim workflow saving with prefix, step_ms per step (the model's flag wins at -1). */
static void workflow(const char *name, const char *prefix)
{
	char path[512], text[1024];

	snprintf(text, sizeof text,
		 "{\"1\": {\"class_type\": \"SimTextEncode\", \"inputs\": {\"text\": \"x\"}},"
		 " \"2\": {\"class_type\": \"SimSampler\", \"inputs\": {\"conditioning\": [\"1\", 0],"
		 " \"seed\": 1, \"steps\": 4, \"width\": 32, \"height\": 32, \"step_ms\": -1, \"fail\": \"none\"}},"
		 " \"3\": {\"class_type\": \"SaveImage\", \"inputs\": {\"images\": [\"2\", 0], \"filename_prefix\": \"%s\"}}}",
		 prefix);
	snprintf(path, sizeof path, "%s/%s.json", g.dir, name);
	ck_assert_int_eq(tu_write_file(path, text, strlen(text)), 0);
}

static void setup(void)
{
	memset(&g, 0, sizeof g);
	memset(workers, 0, sizeof workers);
	snprintf(g.dir, sizeof g.dir, "%s", tu_tmpdir());
	workflow("wf-a", "a");
	workflow("wf-b", "b");
}

static void teardown(void)
{
	if (g.pid > 0)
		gw_stop(&g, 8000);
	for (int i = 0; i < 2; i++)
		if (workers[i] > 0)
			tu_stop(workers[i], 3000);
	tu_rmrf(g.dir);
}

/* Two fnrun-workers of our own, as servers that were already running. */
static void start_workers(const char *step_ms)
{
	for (int i = 0; i < 2; i++) {
		char port[16], out[512], tmp[512], log[512], bin[1024];
		char *argv[] = {bin, "--model", "sim", "--step-ms", (char *)step_ms, "--port", port,
				"--output-directory", out, "--temp-directory", tmp, NULL};

		snprintf(bin, sizeof bin, "%s", tu_bin("fnrun-worker"));
		wports[i] = tu_free_port();
		snprintf(port, sizeof port, "%d", wports[i]);
		snprintf(out, sizeof out, "%s/w%d-out", g.dir, i);
		snprintf(tmp, sizeof tmp, "%s/w%d-tmp", g.dir, i);
		snprintf(log, sizeof log, "%s/w%d.log", g.dir, i);
		workers[i] = tu_spawn(argv, log);
		ck_assert_int_gt(workers[i], 0);
		ck_assert_int_eq(tu_wait_http(wports[i], "/health", 200, 10000), 0);
	}
}

static const char head[] =
	"functions:\n"
	"  Create Image:\n"
	"    params:\n"
	"      prompt: {type: string, required: true}\n"
	"    qualities:\n"
	"      low: {label: Fast Preview, typical_seconds: [1, 2]}\n"
	"models:\n";

/* Submits n jobs at once, waits for all, and counts outputs by prefix "a" and "b". */
static void run_jobs(int n, int *a, int *b)
{
	char **ids = calloc((size_t)n, sizeof *ids);

	*a = *b = 0;
	for (int i = 0; i < n; i++)
		ids[i] = gw_submit(&g, "low", "spread");
	for (int i = 0; i < n; i++) {
		struct json_object *o = gw_wait_status(&g, ids[i], "completed,failed,cancelled", 60000);
		struct json_object *outs, *first;
		char *fn, want[64];

		ck_assert_str_eq(gw_str(o, "status"), "completed");
		ck_assert(json_object_object_get_ex(o, "outputs", &outs));
		ck_assert_int_ge(json_object_array_length(outs), 1);
		first = json_object_array_get_idx(outs, 0);
		/* Users see the function and the job; the admin API, the server's name. */
		snprintf(want, sizeof want, "create-image-%.8s.png", ids[i]);
		ck_assert_str_eq(gw_str(first, "filename"), want);
		fn = gw_output_source(&g, ids[i], 0);
		ck_assert_ptr_nonnull(fn);
		*a += fn[0] == 'a';
		*b += fn[0] == 'b';
		free(fn);
		json_object_put(o);
		free(ids[i]);
	}
	free(ids);
}

/* The jobs one of our own workers ran: its /history's entries. */
static int history_count(int port)
{
	struct tu_resp r;
	struct json_object *o;
	int n;

	ck_assert_int_eq(tu_http(port, "GET", "/history", NULL, NULL, 0, &r), 0);
	o = json_tokener_parse(r.body);
	tu_resp_free(&r);
	ck_assert_ptr_nonnull(o);
	n = json_object_object_length(o);
	json_object_put(o);
	return n;
}

START_TEST(external_model_with_two_urls_uses_both)
{
	char text[2048];
	int a, b;

	start_workers("60");
	snprintf(text, sizeof text,
		 "%s  comfy:\n    function: Create Image\n    quality: low\n    runtime: external\n"
		 "    urls: [\"http://127.0.0.1:%d\", \"http://127.0.0.1:%d\"]\n"
		 "    workflow: wf-a.json\n    bind: {prompt: \"1.inputs.text\"}\n",
		 head, wports[0], wports[1]);
	gw_write_registry(&g, text);
	gw_start(&g);
	run_jobs(10, &a, &b);
	ck_assert_int_eq(a, 10);
	ck_assert_int_eq(gw_runner_count(&g, "comfy"), 2);
	ck_assert_msg(history_count(wports[0]) >= 2 && history_count(wports[1]) >= 2,
		      "jobs were not shared: %d and %d", history_count(wports[0]),
		      history_count(wports[1]));
	ck_assert_int_eq(history_count(wports[0]) + history_count(wports[1]), 10);
}
END_TEST

START_TEST(two_comfyui_servers_behind_one_quality_are_both_used)
{
	char text[2048];
	int a, b;

	start_workers("60");
	snprintf(text, sizeof text,
		 "%s  comfy_a:\n    function: Create Image\n    quality: low\n    runtime: external\n"
		 "    url: \"http://127.0.0.1:%d\"\n    workflow: wf-a.json\n    bind: {prompt: \"1.inputs.text\"}\n"
		 "  comfy_b:\n    function: Create Image\n    quality: low\n    runtime: external\n"
		 "    url: \"http://127.0.0.1:%d\"\n    workflow: wf-b.json\n    bind: {prompt: \"1.inputs.text\"}\n",
		 head, wports[0], wports[1]);
	gw_write_registry(&g, text);
	gw_start(&g);
	run_jobs(10, &a, &b);
	ck_assert_msg(a >= 2 && b >= 2, "jobs were not shared: a=%d b=%d", a, b);
	ck_assert_int_eq(a + b, 10);
	ck_assert_int_eq(history_count(wports[0]), a);
	ck_assert_int_eq(history_count(wports[1]), b);
}
END_TEST

static void process_models(const char *step, const char *wa, const char *wb)
{
	char text[4096];

	snprintf(text, sizeof text,
		 "%s  img_a:\n    function: Create Image\n    quality: low\n"
		 "    command: [\"{bindir}/fnrun-worker\", --model, sim, --step-ms, \"%s\", --port, \"{port}\"]\n"
		 "    workflow: wf-a.json\n    bind: {prompt: \"1.inputs.text\"}\n%s"
		 "  img_b:\n    function: Create Image\n    quality: low\n"
		 "    command: [\"{bindir}/fnrun-worker\", --model, sim, --step-ms, \"%s\", --port, \"{port}\"]\n"
		 "    workflow: wf-b.json\n    bind: {prompt: \"1.inputs.text\"}\n%s",
		 head, step, wa, step, wb);
	gw_write_registry(&g, text);
}

/* Starts a runner of model and waits until it is ready (so a slow start under load is not the test). */
static void start_ready(const char *model)
{
	char path[128];
	int status;

	snprintf(path, sizeof path, "/api/admin/models/%s/start", model);
	json_object_put(gw_json(&g, "POST", path, "", &status));
	ck_assert_int_eq(status, 200);
	for (int waited = 0;; waited += 20) {
		struct json_object *o = gw_json(&g, "GET", "/api/admin/runners", NULL, NULL);
		struct json_object *rs;
		int ready = 0;
		if (json_object_object_get_ex(o, "runners", &rs))
			for (size_t i = 0; i < json_object_array_length(rs); i++) {
				struct json_object *r = json_object_array_get_idx(rs, i);
				ready |= strcmp(gw_str(r, "model"), model) == 0 &&
					 strcmp(gw_str(r, "state"), "ready") == 0;
			}
		json_object_put(o);
		if (ready)
			return;
		ck_assert_msg(waited < 20000, "%s never became ready", model);
		gw_sleep_ms(20);
	}
}

START_TEST(two_process_models_in_one_tier_share_the_jobs)
{
	int a, b;

	process_models("40", "", "");
	gw_start(&g);
	/* Both ready first: the split is the scheduler's, not a race between two starts. */
	start_ready("img_a");
	start_ready("img_b");
	run_jobs(12, &a, &b);
	ck_assert_msg(a >= 2 && b >= 2, "jobs were not shared: a=%d b=%d", a, b);
	ck_assert_int_eq(a + b, 12);
	ck_assert_int_eq(gw_runner_count(&g, "img_a"), 1);
	ck_assert_int_eq(gw_runner_count(&g, "img_b"), 1);
}
END_TEST

START_TEST(weights_split_a_tier_by_share)
{
	int a, b;

	process_models("0", "    weight: 90\n", "    weight: 10\n");
	gw_start(&g);
	run_jobs(300, &a, &b);
	ck_assert_int_eq(a + b, 300);
	/* Binomial(300, 0.1): mean 30, sd 5.2; these bounds are over 3 sd away. */
	ck_assert_msg(b >= 12 && b <= 50, "weight 10 of 100 took %d of 300 jobs", b);
}
END_TEST

START_TEST(weight_zero_takes_no_jobs)
{
	int a, b;

	process_models("0", "    weight: 1\n", "    weight: 0\n");
	gw_start(&g);
	run_jobs(40, &a, &b);
	ck_assert_int_eq(a, 40);
	ck_assert_int_eq(b, 0);
}
END_TEST

Suite *suite_tier(void)
{
	Suite *s = suite_create("tier");
	TCase *tc = tcase_create("spread");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, external_model_with_two_urls_uses_both);
	tcase_add_test(tc, two_comfyui_servers_behind_one_quality_are_both_used);
	tcase_add_test(tc, two_process_models_in_one_tier_share_the_jobs);
	tcase_add_test(tc, weights_split_a_tier_by_share);
	tcase_add_test(tc, weight_zero_takes_no_jobs);
	suite_add_tcase(s, tc);
	return s;
}
