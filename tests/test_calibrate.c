/*
 * test_calibrate.c - models of quality `auto`, through a real `fnrun
 * serve` and sim model servers of different step times: each is measured
 * with the function's calibration request and lands in the tier it must
 * (by the learned run times of the fixed models, or by typical_seconds
 * when the function has none), serves that tier's jobs, keeps its place
 * across a restart without a new measure, is measured again on `fnrun
 * admin calibrate`, and stays out of every tier when its runs fail.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>

#include "gwtest.h"
#include "registry.h"
#include "testutil.h"

static struct gw g;

static void setup(void)
{
	gw_init(&g);
	gw_write_workflow(&g, "wf-err", "error");
}

static void teardown(void)
{
	gw_cleanup(&g);
}

/* `fnrun check` of the registry in g's dir, in process: its exit code, its text in out. */
static int check(char *out, size_t n)
{
	char path[512], *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	int rc;

	snprintf(path, sizeof path, "%s/registry.yaml", g.dir);
	rc = registry_check(path, f);
	fclose(f);
	snprintf(out, n, "%s", text ? text : "");
	free(text);
	return rc;
}

/* A sim model of `quality` whose sampler step takes step_ms (8 steps a run). */
static void model(char *text, size_t n, const char *id, const char *quality, int step_ms,
		  const char *wf, const char *extra)
{
	size_t at = strlen(text);

	snprintf(text + at, n - at,
		 "  %s:\n"
		 "    function: Create Image\n"
		 "    quality: %s\n"
		 "    command: [\"{bindir}/fnrun-worker\", --model, sim, --step-ms, \"%d\", --port, "
		 "\"{port}\"]\n"
		 "    workflow: %s.json\n"
		 "    bind: {prompt: \"1.inputs.text\", seed: \"2.inputs.seed\"}\n"
		 "%s",
		 id, quality, step_ms, wf, extra ? extra : "");
}

static const char head[] =
	"server: {gpu: {vram: 24GB}}\n"
	"functions:\n"
	"  Create Image:\n"
	"    params:\n"
	"      prompt: {type: string, required: true}\n"
	"      seed: {type: int, min: 0, default: random}\n"
	"    qualities:\n"
	"      low: {label: Fast Preview, typical_seconds: [1, 2]}\n"
	"      standard: {label: Balanced, typical_seconds: [1, 2]}\n"
	"      high: {label: Maximum Detail, typical_seconds: [1, 2]}\n"
	"    calibration: {params: {prompt: a lighthouse at dusk}, runs: 3}\n"
	"models:\n";

/* The fixed ladder: 8, 96 and 480 ms a run. */
static void fixed(char *text, size_t n)
{
	snprintf(text, n, "%s", head);
	model(text, n, "img_low", "low", 1, "wf", "    resources: {gpu_memory: 1GB}\n");
	model(text, n, "img_std", "standard", 12, "wf", "    resources: {gpu_memory: 2GB}\n");
	model(text, n, "img_high", "high", 60, "wf", "    resources: {gpu_memory: 4GB}\n");
}

static void run_one(const char *quality)
{
	char *id = gw_submit(&g, quality, "warm up");
	struct json_object *o = gw_wait_status(&g, id, "completed,failed,cancelled", 60000);

	ck_assert_str_eq(gw_str(o, "status"), "completed");
	json_object_put(o);
	free(id);
}

/* The model's "calibration" once its state is not "running" (a new reference; put it). */
static struct json_object *calibrated(const char *id, int ms)
{
	int64_t deadline = tu_now_ms() + ms;

	for (;;) {
		struct json_object *root, *m = gw_model(&g, id, &root), *c = NULL;
		const char *state;

		ck_assert_msg(m != NULL, "no model %s in the admin API", id);
		ck_assert_msg(json_object_object_get_ex(m, "calibration", &c),
			      "model %s has no calibration: %s", id, json_object_to_json_string(m));
		state = gw_str(c, "state");
		if (state && strcmp(state, "running") != 0 && strcmp(state, "none") != 0) {
			json_object_get(c);
			json_object_put(root);
			return c;
		}
		json_object_put(root);
		ck_assert_msg(tu_now_ms() < deadline, "model %s still calibrating after %d ms", id, ms);
		gw_sleep_ms(50);
	}
}

static void expect_tier(const char *id, const char *quality)
{
	struct json_object *c = calibrated(id, 60000);

	ck_assert_msg(strcmp(gw_str(c, "state"), "done") == 0 && gw_str(c, "quality") &&
			      strcmp(gw_str(c, "quality"), quality) == 0,
		      "%s: expected tier %s, got %s", id, quality, json_object_to_json_string(c));
	ck_assert_int_eq(gw_int(c, "runs_done"), 3);
	ck_assert_msg(gw_int(c, "run_ms") > 0, "no run time: %s", json_object_to_json_string(c));
	json_object_put(c);
}

/* The model that served a job (admin API); caller frees. */
static char *served_by(const char *job)
{
	char path[128];
	struct json_object *o;
	char *m;

	snprintf(path, sizeof path, "/api/admin/jobs/%s", job);
	o = gw_json(&g, "GET", path, NULL, NULL);
	m = strdup(gw_str(o, "model") ? gw_str(o, "model") : "");
	json_object_put(o);
	return m;
}

static void wait_reload(int before)
{
	int64_t deadline = tu_now_ms() + 20000;

	while (gw_log_count(&g, "registry reloaded") <= before) {
		ck_assert_msg(tu_now_ms() < deadline, "the registry was not reloaded");
		gw_sleep_ms(20);
	}
}

START_TEST(auto_models_land_in_the_tier_they_match_and_serve_it)
{
	char text[8192];
	int reloads;
	char *id, *who;
	int status = 0;
	struct json_object *o;

	fixed(text, sizeof text);
	gw_write_registry(&g, text);
	gw_start(&g);
	/* The fixed models learn what the request takes on them. */
	run_one("low");
	run_one("standard");
	run_one("high");

	/* A hot deploy of three models of quality auto: 16, 80 and 560 ms a run. */
	model(text, sizeof text, "auto_fast", "auto", 2, "wf", "    resources: {gpu_memory: 1GB}\n");
	model(text, sizeof text, "auto_mid", "auto", 10, "wf", "    resources: {gpu_memory: 2GB}\n");
	model(text, sizeof text, "auto_slow", "auto", 70, "wf", "    resources: {gpu_memory: 4GB}\n");
	reloads = gw_log_count(&g, "registry reloaded");
	gw_write_registry(&g, text);
	wait_reload(reloads);
	expect_tier("auto_fast", "low");
	expect_tier("auto_mid", "standard");
	expect_tier("auto_slow", "high");
	ck_assert_int_eq(gw_log_count(&g, "calibration started"), 3);

	/* Calibration runs are the operators' jobs, not a user's. */
	o = gw_json(&g, "GET", "/api/admin/models", NULL, &status);
	ck_assert_int_eq(status, 200);
	json_object_put(o);

	/* With the fixed low model drained, a low job can only go to auto_fast. */
	o = gw_json(&g, "POST", "/api/admin/models/img_low/drain", "{}", &status);
	ck_assert_int_eq(status, 200);
	json_object_put(o);
	id = gw_submit(&g, "low", "served by the measured model");
	o = gw_wait_status(&g, id, "completed,failed,cancelled", 60000);
	ck_assert_str_eq(gw_str(o, "status"), "completed");
	json_object_put(o);
	who = served_by(id);
	ck_assert_str_eq(who, "auto_fast");
	free(who);
	free(id);

	/* A restart places them from the store: no new measure. */
	ck_assert_int_eq(gw_stop(&g, 15000) >= 0, 1);
	gw_start(&g);
	expect_tier("auto_slow", "high");
	ck_assert_int_eq(gw_log_count(&g, "calibration started"), 3);

	/* An operator measures one again (CLI); a fixed model is refused. */
	{
		char server[64], log[512];
		char *argv[] = {(char *)tu_bin("fnrun"), "admin", "calibrate", "auto_mid", "--server",
				server, NULL};
		int st;
		snprintf(server, sizeof server, "http://127.0.0.1:%d", g.port);
		snprintf(log, sizeof log, "%s/admin.out", g.dir);
		st = tu_wait_exit(tu_spawn(argv, log), 10000);
		ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "fnrun admin calibrate: %d", st);
	}
	o = gw_json(&g, "POST", "/api/admin/models/img_std/calibrate", "{}", &status);
	ck_assert_int_eq(status, 409);
	ck_assert_msg(strstr(json_object_to_json_string(o), "only models of quality auto"), "%s",
		      json_object_to_json_string(o));
	json_object_put(o);
	expect_tier("auto_mid", "standard");
	ck_assert_int_eq(gw_log_count(&g, "calibration started"), 4);
}
END_TEST

START_TEST(a_function_without_fixed_models_is_mapped_by_typical_times)
{
	char text[4096];
	struct json_object *cat, *qs;

	snprintf(text, sizeof text,
		 "functions:\n"
		 "  Create Image:\n"
		 "    params:\n"
		 "      prompt: {type: string, default: a red apple}\n"
		 "      seed: {type: int, min: 0, default: random}\n"
		 "    qualities:\n"
		 "      low: {label: Fast Preview, typical_seconds: [0, 1]}\n"
		 "      standard: {label: Balanced, typical_seconds: [1, 3]}\n"
		 "      high: {label: Maximum Detail, typical_seconds: [5, 10]}\n"
		 "models:\n");
	/* No calibration: key: the defaults are the request. About 40 ms and 2 s a run. */
	model(text, sizeof text, "quick", "auto", 5, "wf", NULL);
	model(text, sizeof text, "careful", "auto", 250, "wf", NULL);
	gw_write_registry(&g, text);
	gw_start(&g);
	expect_tier("quick", "low");
	expect_tier("careful", "standard");
	/* The catalog now offers what they serve, and only that. */
	cat = gw_json(&g, "GET", "/api/functions", NULL, NULL);
	qs = json_object_object_get(json_object_array_get_idx(json_object_object_get(cat,
				"functions"), 0), "qualities");
	ck_assert_int_eq(json_object_array_length(qs), 3);
	ck_assert_int_eq(json_object_get_boolean(json_object_object_get(
				 json_object_array_get_idx(qs, 0), "available")), 1);
	ck_assert_int_eq(json_object_get_boolean(json_object_object_get(
				 json_object_array_get_idx(qs, 1), "available")), 1);
	ck_assert_int_eq(json_object_get_boolean(json_object_object_get(
				 json_object_array_get_idx(qs, 2), "available")), 0);
	json_object_put(cat);
	run_one("low");
	run_one("standard");
}
END_TEST

START_TEST(a_model_whose_runs_fail_stays_out_of_every_tier)
{
	char text[8192];
	struct json_object *c, *o;
	int status = 0;

	fixed(text, sizeof text);
	model(text, sizeof text, "auto_broken", "auto", 1, "wf-err", NULL);
	gw_write_registry(&g, text);
	gw_start(&g);
	c = calibrated("auto_broken", 60000);
	ck_assert_msg(strcmp(gw_str(c, "state"), "failed") == 0 && gw_str(c, "quality") == NULL,
		      "%s", json_object_to_json_string(c));
	ck_assert_int_eq(gw_int(c, "runs_failed"), 3);
	ck_assert_msg(gw_str(c, "how") && strstr(gw_str(c, "how"), "every calibration run failed"),
		      "%s", json_object_to_json_string(c));
	json_object_put(c);
	/* Users' jobs never meet it. */
	for (int i = 0; i < 6; i++) {
		char *id = gw_submit(&g, "low", "x"), *who;
		o = gw_wait_status(&g, id, "completed,failed,cancelled", 60000);
		ck_assert_str_eq(gw_str(o, "status"), "completed");
		json_object_put(o);
		who = served_by(id);
		ck_assert_str_eq(who, "img_low");
		free(who);
		free(id);
	}
	/* A user key would not see calibration runs; with no keys, the list is everyone's. */
	o = gw_json(&g, "GET", "/api/admin/models", NULL, &status);
	ck_assert_int_eq(status, 200);
	json_object_put(o);
}
END_TEST

START_TEST(an_auto_model_needs_a_calibration_request_for_required_params)
{
	char text[4096], out[4096];

	snprintf(text, sizeof text,
		 "functions:\n"
		 "  Create Image:\n"
		 "    params:\n"
		 "      prompt: {type: string, required: true}\n"
		 "      seed: {type: int, min: 0, default: random}\n"
		 "      steps: {type: int, min: 1, max: 50, default: 20}\n"
		 "    qualities:\n"
		 "      low: {label: Fast Preview, typical_seconds: [1, 2]}\n"
		 "    calibration: {params: {steps: 80, colour: red}, runs: 0}\n"
		 "models:\n");
	model(text, sizeof text, "m", "auto", 1, "wf", NULL);
	gw_write_registry(&g, text);
	ck_assert_int_ne(check(out, sizeof out), 0);
	ck_assert_msg(strstr(out, "calibration.runs") && strstr(out, "from 1 to 20"), "%s", out);
	ck_assert_msg(strstr(out, "calibration.params.colour") && strstr(out, "unknown param"),
		      "%s", out);

	/* A value out of the param's range is refused as a request would be. */
	snprintf(text, sizeof text,
		 "functions:\n"
		 "  Create Image:\n"
		 "    params:\n"
		 "      prompt: {type: string, required: true}\n"
		 "      seed: {type: int, min: 0, default: random}\n"
		 "      steps: {type: int, min: 1, max: 50, default: 20}\n"
		 "    qualities:\n"
		 "      low: {label: Fast Preview, typical_seconds: [1, 2]}\n"
		 "    calibration: {params: {prompt: x, steps: 80}}\n"
		 "models:\n");
	model(text, sizeof text, "m", "auto", 1, "wf", NULL);
	gw_write_registry(&g, text);
	ck_assert_int_ne(check(out, sizeof out), 0);
	ck_assert_msg(strstr(out, "functions.Create Image.calibration") &&
			      strstr(out, "params.steps: must be an integer from 1 to 50"),
		      "%s", out);

	/* Without calibration: a required param makes quality auto unmeasurable. */
	snprintf(text, sizeof text,
		 "functions:\n"
		 "  Create Image:\n"
		 "    params:\n"
		 "      prompt: {type: string, required: true}\n"
		 "      seed: {type: int, min: 0, default: random}\n"
		 "    qualities:\n"
		 "      low: {label: Fast Preview, typical_seconds: [1, 2]}\n"
		 "models:\n");
	model(text, sizeof text, "m", "auto", 1, "wf", NULL);
	gw_write_registry(&g, text);
	ck_assert_int_ne(check(out, sizeof out), 0);
	ck_assert_msg(strstr(out, "models.m.quality") && strstr(out, "calibration.params") &&
			      strstr(out, "prompt"),
		      "%s", out);
}
END_TEST

Suite *suite_calibrate(void)
{
	Suite *s = suite_create("calibrate");
	TCase *tc = tcase_create("calibrate");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 180);
	tcase_add_test(tc, auto_models_land_in_the_tier_they_match_and_serve_it);
	tcase_add_test(tc, a_function_without_fixed_models_is_mapped_by_typical_times);
	tcase_add_test(tc, a_model_whose_runs_fail_stays_out_of_every_tier);
	tcase_add_test(tc, an_auto_model_needs_a_calibration_request_for_required_params);
	suite_add_tcase(s, tc);
	return s;
}
