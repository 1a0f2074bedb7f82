/*
 * test_lifecycle.c - runner lifecycle and GPU memory through real
 * processes: swapping models that cannot fit together, never evicting a
 * busy runner, idle stop, crash and hang recovery, cooldown to a fallback,
 * the operator API, and a draining shutdown.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "gwtest.h"
#include "testutil.h"

static struct gw g;

static void setup(void)
{
	memset(&g, 0, sizeof g);
	snprintf(g.dir, sizeof g.dir, "%s", tu_tmpdir());
	gw_write_workflow(&g, "wf", "none");
}

static void teardown(void)
{
	if (g.pid > 0)
		gw_stop(&g, 8000);
	tu_rmrf(g.dir);
}

/* Two tiers; each model's extra YAML lines follow its common ones. */
static void registry(const char *server, const char *low_cmd, const char *low_extra,
		     const char *std_cmd, const char *std_extra)
{
	char text[8192];

	snprintf(text, sizeof text,
		 "%s"
		 "functions:\n"
		 "  Create Image:\n"
		 "    params:\n"
		 "      prompt: {type: string, required: true}\n"
		 "    qualities:\n"
		 "      low: {label: Fast Preview, typical_seconds: [1, 2]}\n"
		 "      standard: {label: Balanced, typical_seconds: [1, 3]}\n"
		 "models:\n"
		 "  img_low:\n"
		 "    function: Create Image\n"
		 "    quality: low\n"
		 "    command: [\"{bindir}/fnrun-worker\", --model, sim, %s, --port, \"{port}\"]\n"
		 "    workflow: wf.json\n"
		 "    bind: {prompt: \"1.inputs.text\"}\n"
		 "%s"
		 "  img_std:\n"
		 "    function: Create Image\n"
		 "    quality: standard\n"
		 "    command: [\"{bindir}/fnrun-worker\", --model, sim, %s, --port, \"{port}\"]\n"
		 "    workflow: wf.json\n"
		 "    bind: {prompt: \"1.inputs.text\"}\n"
		 "%s",
		 server, low_cmd, low_extra, std_cmd, std_extra);
	gw_write_registry(&g, text);
}

START_TEST(models_that_cannot_fit_together_are_swapped)
{
	struct json_object *o;
	char *a, *b;

	registry("server: {gpu: {vram: 8GB}}\n", "--step-ms, \"5\"", "    resources: {gpu_memory: 6GB}\n",
		 "--step-ms, \"5\"", "    resources: {gpu_memory: 6GB}\n");
	gw_start(&g);
	for (int round = 0; round < 2; round++) {
		a = gw_submit(&g, "low", "a");
		json_object_put(gw_wait_status(&g, a, "completed", 15000));
		ck_assert_int_eq(gw_runner_count(&g, "img_low"), 1);
		b = gw_submit(&g, "standard", "b");
		json_object_put(gw_wait_status(&g, b, "completed", 15000));
		/* img_low's idle runner was evicted to make room: never both at once. */
		ck_assert_int_eq(gw_runner_count(&g, "img_low"), 0);
		ck_assert_int_eq(gw_runner_count(&g, "img_std"), 1);
		free(a);
		free(b);
	}
	o = gw_json(&g, "GET", "/api/admin/models", NULL, NULL);
	ck_assert_ptr_nonnull(strstr(json_object_to_json_string(o), "\"reserved\": 6442450944"));
	json_object_put(o);
}
END_TEST

START_TEST(busy_runner_is_never_evicted)
{
	struct json_object *o;
	char *slow, *other, path[128];
	int saw_wait = 0;

	registry("server: {gpu: {vram: 8GB}}\n", "--step-ms, \"250\"", "    resources: {gpu_memory: 6GB}\n",
		 "--step-ms, \"5\"", "    resources: {gpu_memory: 6GB}\n");
	gw_start(&g);
	slow = gw_submit(&g, "low", "slow");
	json_object_put(gw_wait_status(&g, slow, "running", 10000));
	other = gw_submit(&g, "standard", "other");
	snprintf(path, sizeof path, "/api/jobs/%s", other);
	for (int i = 0; i < 50 && !saw_wait; i++) {
		o = gw_json(&g, "GET", path, NULL, NULL);
		ck_assert_str_eq(gw_str(o, "status"), "queued");
		saw_wait = strstr(gw_str(o, "message"), "resources") != NULL;
		json_object_put(o);
		gw_sleep_ms(20);
	}
	ck_assert_msg(saw_wait, "the waiting job never said it waits for resources");
	ck_assert_int_eq(gw_runner_count(&g, "img_std"), 0);
	o = gw_wait_status(&g, slow, "completed,failed,queued", 15000);
	ck_assert_str_eq(gw_str(o, "status"), "completed");
	json_object_put(o);
	json_object_put(gw_wait_status(&g, other, "completed", 15000));
	free(slow);
	free(other);
}
END_TEST

START_TEST(idle_runner_stops_after_its_timeout)
{
	char *id;

	registry("", "--step-ms, \"5\"", "    idle_timeout: 300ms\n", "--step-ms, \"5\"", "");
	gw_start(&g);
	id = gw_submit(&g, "low", "idle");
	json_object_put(gw_wait_status(&g, id, "completed", 10000));
	for (int i = 0; i < 250 && gw_runner_count(&g, "img_low") > 0; i++)
		gw_sleep_ms(20);
	ck_assert_int_eq(gw_runner_count(&g, "img_low"), 0);
	free(id);
}
END_TEST

START_TEST(crash_once_then_the_job_completes_on_a_replacement)
{
	char cmd[600], *id;
	struct json_object *o;

	snprintf(cmd, sizeof cmd, "--step-ms, \"20\", --fail, crash, --fail-once, \"%s/crashed\"", g.dir);
	registry("", cmd, "", "--step-ms, \"5\"", "");
	gw_start(&g);
	id = gw_submit(&g, "low", "crash");
	o = gw_wait_status(&g, id, "completed,failed", 20000);
	ck_assert_str_eq(gw_str(o, "status"), "completed");
	json_object_put(o);
	o = gw_json(&g, "GET", "/api/admin/models", NULL, NULL);
	ck_assert_ptr_nonnull(strstr(json_object_to_json_string(o), "\"restarts\": 1"));
	json_object_put(o);
	free(id);
}
END_TEST

START_TEST(hang_is_caught_by_the_watchdog_and_the_job_completes)
{
	char cmd[600], *id;
	struct json_object *o;

	snprintf(cmd, sizeof cmd, "--step-ms, \"20\", --fail, hang, --fail-once, \"%s/hung\"", g.dir);
	registry("", cmd, "    step_timeout: 600ms\n", "--step-ms, \"5\"", "");
	gw_start(&g);
	id = gw_submit(&g, "low", "hang");
	o = gw_wait_status(&g, id, "completed,failed", 20000);
	ck_assert_str_eq(gw_str(o, "status"), "completed");
	json_object_put(o);
	free(id);
}
END_TEST

START_TEST(repeated_failure_rests_the_model_and_uses_its_fallback)
{
	struct json_object *o;
	char *id, *id2;

	registry("", "--step-ms, \"5\"", "",
		 "--step-ms, \"5\", --fail, crash", "    fallback: img_low\n");
	gw_start(&g);
	id = gw_submit(&g, "standard", "unlucky");
	o = gw_wait_status(&g, id, "completed,failed", 30000);
	ck_assert_str_eq(gw_str(o, "status"), "completed");
	json_object_put(o);
	o = gw_json(&g, "GET", "/api/admin/models", NULL, NULL);
	ck_assert_ptr_nonnull(strstr(json_object_to_json_string(o), "\"cooldown\""));
	json_object_put(o);
	/* While it rests, new jobs of its tier go straight to the fallback. */
	id2 = gw_submit(&g, "standard", "next");
	o = gw_wait_status(&g, id2, "completed,failed", 15000);
	ck_assert_str_eq(gw_str(o, "status"), "completed");
	json_object_put(o);
	ck_assert_int_eq(gw_runner_count(&g, "img_std"), 0);
	free(id);
	free(id2);
}
END_TEST

START_TEST(operator_api_shows_and_controls_runners)
{
	struct json_object *o, *a, *r;
	int status;

	registry("", "--step-ms, \"5\"", "", "--step-ms, \"5\"", "");
	gw_start(&g);
	o = gw_json(&g, "POST", "/api/admin/models/img_low/start", "", &status);
	ck_assert_int_eq(status, 200);
	json_object_put(o);
	for (int i = 0; i < 250; i++) {
		o = gw_json(&g, "GET", "/api/admin/runners", NULL, NULL);
		ck_assert(json_object_object_get_ex(o, "runners", &a));
		r = json_object_array_length(a) ? json_object_array_get_idx(a, 0) : NULL;
		if (r && strcmp(gw_str(r, "state"), "ready") == 0)
			break;
		json_object_put(o);
		o = NULL;
		gw_sleep_ms(20);
	}
	ck_assert_ptr_nonnull(o);
	ck_assert_str_eq(gw_str(r, "model"), "img_low");
	ck_assert_int_gt(gw_int(r, "pid"), 0);
	ck_assert_ptr_nonnull(gw_str(r, "last_used"));
	json_object_put(o);
	o = gw_json(&g, "POST", "/api/admin/models/img_low/drain", "", &status);
	ck_assert_int_eq(status, 200);
	json_object_put(o);
	for (int i = 0; i < 250 && gw_runner_count(&g, "img_low") > 0; i++)
		gw_sleep_ms(20);
	ck_assert_int_eq(gw_runner_count(&g, "img_low"), 0);
	o = gw_json(&g, "POST", "/api/admin/models/nope/start", "", &status);
	ck_assert_int_eq(status, 404);
	json_object_put(o);
	o = gw_json(&g, "POST", "/api/admin/models/img_low/explode", "", &status);
	ck_assert_int_eq(status, 400);
	json_object_put(o);
}
END_TEST

START_TEST(sigterm_drains_running_jobs)
{
	struct json_object *o;
	char *id;
	int status;

	registry("", "--step-ms, \"100\"", "", "--step-ms, \"5\"", "");
	gw_start(&g);
	id = gw_submit(&g, "low", "finish me");
	json_object_put(gw_wait_status(&g, id, "running", 10000));
	status = gw_stop(&g, 15000);
	ck_assert_msg(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0,
		      "fnrun did not exit cleanly: %d", status);
	gw_start(&g);
	o = gw_wait_status(&g, id, "completed,failed,queued,running,preparing", 5000);
	/* It finished before the shutdown completed: it is not run again. */
	ck_assert_str_eq(gw_str(o, "status"), "completed");
	json_object_put(o);
	free(id);
}
END_TEST

START_TEST(reload_drains_changed_models_and_keeps_serving)
{
	struct json_object *o;
	char *a, *b, *c;

	registry("", "--step-ms, \"5\"", "", "--step-ms, \"5\"", "");
	gw_start(&g);
	a = gw_submit(&g, "low", "before");
	json_object_put(gw_wait_status(&g, a, "completed", 10000));
	ck_assert_int_eq(gw_runner_count(&g, "img_low"), 1);
	/* A broken file is refused and the running registry stays. */
	gw_write_registry(&g, "functions: [\n");
	kill(g.pid, SIGHUP);
	b = gw_submit(&g, "low", "still served");
	json_object_put(gw_wait_status(&g, b, "completed", 10000));
	/* img_low's command changes: its idle runner drains away. */
	registry("", "--step-ms, \"6\"", "", "--step-ms, \"5\"", "");
	kill(g.pid, SIGHUP);
	for (int i = 0; i < 250 && gw_runner_count(&g, "img_low") > 0; i++)
		gw_sleep_ms(20);
	ck_assert_int_eq(gw_runner_count(&g, "img_low"), 0);
	c = gw_submit(&g, "low", "after");
	o = gw_wait_status(&g, c, "completed,failed", 10000);
	ck_assert_str_eq(gw_str(o, "status"), "completed");
	json_object_put(o);
	free(a);
	free(b);
	free(c);
}
END_TEST

/* GET /api/admin/registry until its field `key` is `want` (ms at most); returns it. */
static struct json_object *wait_registry(const char *key, const char *want, int ms)
{
	for (int waited = 0;; waited += 20) {
		int status;
		struct json_object *o = gw_json(&g, "GET", "/api/admin/registry", NULL, &status);
		const char *v = gw_str(o, key);

		ck_assert_int_eq(status, 200);
		if (v && strcmp(v, want) == 0)
			return o;
		ck_assert_msg(waited < ms, "registry %s is %s, not %s: %s", key, v ? v : "null",
			      want, json_object_to_json_string(o));
		json_object_put(o);
		gw_sleep_ms(20);
	}
}

/*
 * Hot deploy: saving the registry file is enough (no SIGHUP). A valid edit
 * applies while a job runs, which completes; an invalid one is refused with
 * file:line:col in the admin API and the old registry keeps serving.
 */
START_TEST(saved_registry_applies_without_sighup)
{
	struct json_object *o;
	char *slow, *b, *c, want[600];
	const char *err;

	registry("", "--step-ms, \"5\"", "", "--step-ms, \"150\"", "");
	gw_start(&g);
	o = wait_registry("status", "loaded", 1000);
	ck_assert(json_object_get_boolean(json_object_object_get(o, "watched")));
	json_object_put(o);
	slow = gw_submit(&g, "standard", "running through the edit");
	json_object_put(gw_wait_status(&g, slow, "running", 10000));
	/* img_low's command changes and a third model comes: applied at once. */
	registry("", "--step-ms, \"6\"", "", "--step-ms, \"150\"",
		 "  img_new:\n    function: Create Image\n    quality: low\n    weight: 0\n"
		 "    command: [\"{bindir}/fnrun-worker\", --model, sim, --port, \"{port}\"]\n"
		 "    workflow: wf.json\n    bind: {prompt: \"1.inputs.text\"}\n");
	o = wait_registry("reloads", "1", 5000);
	json_object_put(o);
	o = gw_json(&g, "GET", "/api/admin/models", NULL, NULL);
	ck_assert_msg(strstr(json_object_to_json_string(o), "img_new"), "%s",
		      json_object_to_json_string(o));
	json_object_put(o);
	/* A broken save: refused, said where, and the running registry stays. */
	gw_write_registry(&g, "functions:\n  Create Image: {params: [\n");
	o = wait_registry("status", "refused", 5000);
	err = gw_str(o, "error");
	snprintf(want, sizeof want, "%s/registry.yaml:", g.dir);
	ck_assert_msg(err && strncmp(err, want, strlen(want)) == 0, "error: %s", err ? err : "");
	ck_assert_msg(err && strspn(err + strlen(want), "0123456789:") >= 4, "no line:col in %s", err);
	json_object_put(o);
	b = gw_submit(&g, "low", "served by the registry that stayed");
	o = gw_wait_status(&g, b, "completed,failed", 10000);
	ck_assert_str_eq(gw_str(o, "status"), "completed");
	json_object_put(o);
	o = gw_wait_status(&g, slow, "completed,failed", 20000);
	ck_assert_str_eq(gw_str(o, "status"), "completed"); /* the edit dropped nothing */
	json_object_put(o);
	/* A good save again: loaded, the error gone. */
	registry("", "--step-ms, \"5\"", "", "--step-ms, \"5\"", "");
	o = wait_registry("status", "loaded", 5000);
	ck_assert_ptr_null(gw_str(o, "error"));
	json_object_put(o);
	c = gw_submit(&g, "standard", "after");
	o = gw_wait_status(&g, c, "completed,failed", 10000);
	ck_assert_str_eq(gw_str(o, "status"), "completed");
	json_object_put(o);
	free(slow);
	free(b);
	free(c);
}
END_TEST

/* The one file under dir/runs/<runner>/output, into out; 0 when found. */
static int worker_output(char *out, size_t n)
{
	char cmd[700];
	FILE *f;
	int ok;

	snprintf(cmd, sizeof cmd, "find %s/data/runs -path '*/output/*.png' -type f", g.dir);
	f = popen(cmd, "r");
	ok = f && fgets(out, (int)n, f) != NULL;
	if (f)
		pclose(f);
	out[strcspn(out, "\n")] = '\0';
	return ok ? 0 : -1;
}

START_TEST(outputs_written_to_outdir_are_linked_not_copied)
{
	struct json_object *o, *outs;
	struct stat a, b;
	char *id, mine[1024], ours[1024];
	const char *url;

	registry("", "--step-ms, \"5\", --output-directory, \"{outdir}\"", "", "--step-ms, \"5\"", "");
	gw_start(&g);
	id = gw_submit(&g, "low", "linked");
	o = gw_wait_status(&g, id, "completed,failed", 15000);
	ck_assert_str_eq(gw_str(o, "status"), "completed");
	ck_assert(json_object_object_get_ex(o, "outputs", &outs));
	url = gw_str(json_object_array_get_idx(outs, 0), "url");
	ck_assert_ptr_nonnull(url);
	/* /api/outputs/<id>/<file> is <data>/outputs/<2 chars>/<id>-<file> on disk. */
	snprintf(ours, sizeof ours, "%s/data/outputs/%.2s/%s-%s", g.dir, id, id,
		 strrchr(url, '/') + 1);
	ck_assert_int_eq(worker_output(mine, sizeof mine), 0);
	ck_assert_int_eq(stat(mine, &a), 0);
	ck_assert_int_eq(stat(ours, &b), 0);
	/* The same file, not a copy: the model server's bytes, no HTTP transfer. */
	ck_assert_msg(a.st_ino == b.st_ino && a.st_dev == b.st_dev, "%s is a copy of %s", ours, mine);
	ck_assert_int_ge(b.st_nlink, 2);
	json_object_put(o);
	free(id);
}
END_TEST

/* Occurrences of needle in the gateway's log. */
START_TEST(many_reloads_while_jobs_run_never_wear_out)
{
	struct json_object *o;
	char *slow, *after;

	/* Registry versions are kept for jobs in flight: once a fixed table of 64. */
	registry("", "--step-ms, \"60\"", "", "--step-ms, \"5\"", "");
	gw_start(&g);
	slow = gw_submit(&g, "low", "held across every reload");
	json_object_put(gw_wait_status(&g, slow, "running", 10000));
	for (int i = 1; i <= 70; i++) {
		kill(g.pid, SIGHUP);
		for (int waited = 0; gw_log_count(&g, "registry reloaded") < i; waited += 5) {
			ck_assert_msg(waited < 5000, "reload %d was not done", i);
			gw_sleep_ms(5);
		}
	}
	ck_assert_int_eq(gw_log_count(&g, "reload refused"), 0);
	o = gw_wait_status(&g, slow, "completed,failed", 20000);
	ck_assert_str_eq(gw_str(o, "status"), "completed");
	json_object_put(o);
	after = gw_submit(&g, "standard", "after 70 reloads");
	o = gw_wait_status(&g, after, "completed,failed", 20000);
	ck_assert_str_eq(gw_str(o, "status"), "completed");
	json_object_put(o);
	free(slow);
	free(after);
}
END_TEST

START_TEST(full_queue_answers_503_with_retry_after)
{
	struct tu_resp r;
	const char body[] = "{\"function\": \"Create Image\", \"quality\": \"low\", \"params\": {\"prompt\": \"x\"}}";
	char *a;

	/* A model that never becomes ready keeps its one job queued. */
	registry("server: {limits: {max_queue: 1}}\n", "--load-ms, \"600000\"", "    start_timeout: 1h\n",
		 "--step-ms, \"5\"", "");
	gw_start(&g);
	a = gw_submit(&g, "low", "fills the queue");
	ck_assert_int_eq(tu_http(g.port, "POST", "/api/generate", "application/json", body, strlen(body), &r), 0);
	ck_assert_int_eq(r.status, 503);
	ck_assert_ptr_nonnull(tu_resp_header(&r, "Retry-After"));
	ck_assert_ptr_nonnull(strstr(r.body, "QUEUE_FULL"));
	tu_resp_free(&r);
	free(a);
}
END_TEST

Suite *suite_lifecycle(void)
{
	Suite *s = suite_create("lifecycle");
	TCase *tc = tcase_create("runners");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 90);
	tcase_add_test(tc, models_that_cannot_fit_together_are_swapped);
	tcase_add_test(tc, busy_runner_is_never_evicted);
	tcase_add_test(tc, idle_runner_stops_after_its_timeout);
	tcase_add_test(tc, crash_once_then_the_job_completes_on_a_replacement);
	tcase_add_test(tc, hang_is_caught_by_the_watchdog_and_the_job_completes);
	tcase_add_test(tc, operator_api_shows_and_controls_runners);
	tcase_add_test(tc, sigterm_drains_running_jobs);
	tcase_add_test(tc, reload_drains_changed_models_and_keeps_serving);
	tcase_add_test(tc, saved_registry_applies_without_sighup);
	tcase_add_test(tc, full_queue_answers_503_with_retry_after);
	tcase_add_test(tc, many_reloads_while_jobs_run_never_wear_out);
	tcase_add_test(tc, outputs_written_to_outdir_are_linked_not_copied);
	suite_add_tcase(s, tc);
	/* Its own case: make test-fallback runs every case named "fallback". */
	tc = tcase_create("fallback");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 90);
	tcase_add_test(tc, repeated_failure_rests_the_model_and_uses_its_fallback);
	suite_add_tcase(s, tc);
	return s;
}
