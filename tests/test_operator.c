/*
 * test_operator.c - what an operator adding a model runs into, through a
 * real `fnrun serve` and real model servers: a command that cannot run, a
 * model server that exits at start or fails every job, models held with
 * stop or drain (paused, never promised, kept across a restart), the
 * cause of a failure in the gateway's log and in logs/<model>/, exact
 * `tried` texts, and a stress of reloads that swap a model's command
 * between a working and a missing binary while jobs run.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "gwtest.h"
#include "testutil.h"

static struct gw g;

static void setup(void)
{
	gw_init(&g);
}

static void teardown(void)
{
	gw_cleanup(&g);
}

#define SIM "[\"{bindir}/fnrun-worker\", --model, sim, --step-ms, \"%s\", --port, \"{port}\"]"

/* img_low (sim) and img_std; std's command and extra lines are given. */
static void registry(const char *low_step, const char *std_cmd, const char *std_extra)
{
	char text[8192], low[256];

	snprintf(low, sizeof low, SIM, low_step);
	snprintf(text, sizeof text,
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
		 "    command: %s\n"
		 "    workflow: wf.json\n"
		 "    bind: {prompt: \"1.inputs.text\"}\n"
		 "  img_std:\n"
		 "    function: Create Image\n"
		 "    quality: standard\n"
		 "    command: %s\n"
		 "    workflow: %s\n"
		 "    bind: {prompt: \"1.inputs.text\"}\n"
		 "%s",
		 low, std_cmd, strstr(std_cmd, "--model, exec") ? "wf-exec.json" : "wf.json", std_extra);
	gw_write_registry(&g, text);
}

/* The tried list of a job, as JSON text (admin API). Caller frees. */
static char *tried_of(const char *id)
{
	char path[128], *text;
	struct json_object *o, *t;

	snprintf(path, sizeof path, "/api/admin/jobs/%s", id);
	o = gw_json(&g, "GET", path, NULL, NULL);
	ck_assert(json_object_object_get_ex(o, "tried", &t));
	text = strdup(json_object_to_json_string_ext(t, JSON_C_TO_STRING_PLAIN));
	json_object_put(o);
	return text;
}

static const char *error_field(struct json_object *job, const char *key)
{
	struct json_object *e;

	ck_assert_msg(json_object_object_get_ex(job, "error", &e), "no error in %s",
		      json_object_to_json_string(job));
	return gw_str(e, key);
}

static int action(const char *model_id, const char *what)
{
	char path[160];
	int status = 0;

	snprintf(path, sizeof path, "/api/admin/models/%s/%s", model_id, what);
	json_object_put(gw_json(&g, "POST", path, "", &status));
	return status;
}

/* ---- a model that cannot start ---- */

START_TEST(a_command_that_cannot_run_sends_its_jobs_to_the_fallback_at_once)
{
	struct json_object *o, *root, *m;
	char *id, *tried;

	registry("5", "[\"/nonexistent/bin/fnrun-worker-missing\", --port, \"{port}\"]",
		 "    fallback: img_low\n");
	gw_start(&g);
	id = gw_submit(&g, "standard", "a cat");
	o = gw_wait_status(&g, id, "completed,failed", 15000);
	ck_assert_str_eq(gw_str(o, "status"), "completed");
	ck_assert_str_eq(gw_str(o, "quality"), "low");
	json_object_put(o);
	/* One failed spawn was enough: retrying a missing binary cannot help. */
	ck_assert_int_eq(gw_log_count(&g, "runner not started"), 1);
	m = gw_model(&g, "img_std", &root);
	ck_assert_str_eq(gw_str(m, "state"), "cooldown");
	ck_assert_ptr_nonnull(strstr(gw_str(m, "last_error"), "cannot run"));
	ck_assert_ptr_nonnull(strstr(gw_str(m, "last_error"), "fnrun-worker-missing"));
	json_object_put(root);
	tried = tried_of(id);
	ck_assert_str_eq(tried, "[{\"model\":\"img_std\",\"runs\":0},{\"model\":\"img_low\",\"runs\":1}]");
	free(tried);
	free(id);
}
END_TEST

START_TEST(a_command_that_cannot_run_without_a_fallback_fails_plainly)
{
	struct json_object *o;
	const char *text;
	char *a, *b;

	registry("5", "[\"/nonexistent/bin/fnrun-worker-missing\", --port, \"{port}\"]", "");
	gw_start(&g);
	a = gw_submit(&g, "standard", "first");
	o = gw_wait_status(&g, a, "completed,failed", 10000);
	ck_assert_str_eq(gw_str(o, "status"), "failed");
	ck_assert_str_eq(error_field(o, "code"), "MODEL_UNAVAILABLE");
	ck_assert_str_eq(error_field(o, "tried"), "We could not start a server for it.");
	text = json_object_to_json_string(o);
	ck_assert_msg(strstr(text, "nonexistent") == NULL && strstr(text, "img_std") == NULL,
		      "the user sees a path or a model: %s", text);
	json_object_put(o);
	/* While it rests, the next job is told at once, not after a wait. */
	b = gw_submit(&g, "standard", "second");
	o = gw_wait_status(&g, b, "completed,failed", 5000);
	ck_assert_str_eq(gw_str(o, "status"), "failed");
	json_object_put(o);
	ck_assert_int_eq(gw_log_count(&g, "runner not started"), 1);
	free(a);
	free(b);
}
END_TEST

START_TEST(a_server_that_exits_at_start_moves_jobs_and_logs_its_last_words)
{
	static const char wf_x[] = "{\"1\": {\"class_type\": \"X\", \"inputs\": {\"text\": \"\"}}}";
	struct json_object *o, *root, *m;
	char *id, dir[512];
	struct stat st;

	registry("5",
		 "[\"{bindir}/fnrun-worker\", --model, exec, --config, \"{configdir}/worker-sx.yaml\","
		 " --port, \"{port}\"]",
		 "    fallback: img_low\n");
	snprintf(dir, sizeof dir, "%s/wf-exec.json", g.dir);
	tu_write_file(dir, wf_x, sizeof wf_x - 1);
	gw_start(&g);
	id = gw_submit(&g, "standard", "a dog");
	o = gw_wait_status(&g, id, "completed,failed", 15000);
	ck_assert_str_eq(gw_str(o, "status"), "completed");
	json_object_put(o);
	/* One start that exited was enough to move the job (the fallback served it). */
	ck_assert_int_eq(gw_log_count(&g, "model=img_std pid="), 1);
	/* The cause is in the gateway's own log line, not only in the runner's log. */
	if (gw_log_count(&g, "worker-sx.yaml: No such file or directory") < 1) {
		char *text = gw_log(&g);
		ck_abort_msg("the cause is not in the gateway's log:\n%s",
			     strlen(text) > 3000 ? text + strlen(text) - 3000 : text);
	}
	m = gw_model(&g, "img_std", &root);
	ck_assert_ptr_nonnull(strstr(gw_str(m, "last_error"), "worker-sx.yaml: No such file"));
	json_object_put(root);
	/* Logs are found per model. */
	snprintf(dir, sizeof dir, "%s/data/logs/img_std", g.dir);
	ck_assert_int_eq(stat(dir, &st), 0);
	ck_assert(S_ISDIR(st.st_mode));
	free(id);
}
END_TEST

/* ---- a model whose own command fails ---- */

START_TEST(jobs_failed_by_the_model_itself_are_counted_and_rest_it)
{
	static const char config[] =
		"nodes:\n"
		"  BrokenNode:\n"
		"    inputs:\n"
		"      text: {type: STRING, default: x}\n"
		"    command: [/nonexistent/espeak-ng-broken, \"{output}\"]\n"
		"    output: {kind: image, ext: png, prefix: img}\n";
	static const char wf[] = "{\"1\": {\"class_type\": \"BrokenNode\", \"inputs\": {\"text\": \"\"}}}";
	struct json_object *o, *root, *m;
	char path[512], *ids[4], *tried;

	snprintf(path, sizeof path, "%s/worker-broken.yaml", g.dir);
	tu_write_file(path, config, sizeof config - 1);
	snprintf(path, sizeof path, "%s/wf-exec.json", g.dir);
	tu_write_file(path, wf, sizeof wf - 1);
	registry("5",
		 "[\"{bindir}/fnrun-worker\", --model, exec, --config, "
		 "\"{configdir}/worker-broken.yaml\", --port, \"{port}\"]",
		 "    fallback: img_low\n");
	gw_start(&g);
	for (int i = 0; i < 4; i++) {
		ids[i] = gw_submit(&g, "standard", "sing");
		o = gw_wait_status(&g, ids[i], "completed,failed", 20000);
		ck_assert_str_eq(gw_str(o, "status"), "completed");
		json_object_put(o);
	}
	m = gw_model(&g, "img_std", &root);
	ck_assert_int_eq(gw_int(m, "errors"), 3);
	ck_assert_str_eq(gw_str(m, "state"), "cooldown");
	ck_assert_ptr_nonnull(strstr(gw_str(m, "last_error"), "espeak-ng-broken"));
	json_object_put(root);
	/* Resting, it is not tried again: the fourth job went to the fallback directly. */
	tried = tried_of(ids[3]);
	ck_assert_str_eq(tried, "[{\"model\":\"img_low\",\"runs\":1}]");
	free(tried);
	tried = tried_of(ids[0]);
	ck_assert_str_eq(tried, "[{\"model\":\"img_std\",\"runs\":1},{\"model\":\"img_low\",\"runs\":1}]");
	free(tried);
	for (int i = 0; i < 4; i++)
		free(ids[i]);
}
END_TEST

/* ---- held models ---- */

static int catalog_available(const char *quality)
{
	struct json_object *o = gw_json(&g, "GET", "/api/functions", NULL, NULL), *fs, *qs;
	int available = -1;

	ck_assert(json_object_object_get_ex(o, "functions", &fs));
	ck_assert(json_object_object_get_ex(json_object_array_get_idx(fs, 0), "qualities", &qs));
	for (size_t i = 0; i < json_object_array_length(qs); i++) {
		struct json_object *q = json_object_array_get_idx(qs, i), *a;
		if (strcmp(gw_str(q, "key"), quality) == 0 && json_object_object_get_ex(q, "available", &a))
			available = json_object_get_boolean(a);
	}
	json_object_put(o);
	return available;
}

/* Waits until the queued job says its quality is paused; returns its view. */
static struct json_object *wait_paused(const char *id)
{
	char path[128];

	snprintf(path, sizeof path, "/api/jobs/%s", id);
	for (int waited = 0; waited < 10000; waited += 20) {
		struct json_object *o = gw_json(&g, "GET", path, NULL, NULL);
		if (strcmp(gw_str(o, "status"), "queued") == 0 && gw_str(o, "message") &&
		    strstr(gw_str(o, "message"), "paused"))
			return o;
		json_object_put(o);
		gw_sleep_ms(20);
	}
	ck_abort_msg("job %s never said that its quality is paused", id);
	return NULL;
}

START_TEST(a_drained_model_pauses_its_quality_across_a_restart)
{
	struct json_object *o, *root, *m, *eta;
	char *running, *waiting;
	int status;

	registry("5", "[\"{bindir}/fnrun-worker\", --model, sim, --step-ms, \"150\", --port, \"{port}\"]",
		 "");
	gw_start(&g);
	ck_assert_int_eq(catalog_available("standard"), 1);
	running = gw_submit(&g, "standard", "finishes");
	json_object_put(gw_wait_status(&g, running, "running", 10000));
	waiting = gw_submit(&g, "standard", "waits");
	ck_assert_int_eq(action("img_std", "drain"), 200);
	/* drain: the running job finishes; the queued one waits, told why, with no estimate. */
	o = gw_wait_status(&g, running, "completed,failed", 15000);
	ck_assert_str_eq(gw_str(o, "status"), "completed");
	json_object_put(o);
	o = wait_paused(waiting);
	ck_assert(json_object_object_get_ex(o, "eta_seconds", &eta));
	ck_assert_ptr_null(eta);
	json_object_put(o);
	ck_assert_int_eq(catalog_available("standard"), 0);
	ck_assert_int_eq(catalog_available("low"), 1);
	o = gw_json(&g, "POST", "/api/generate",
		    "{\"function\": \"Create Image\", \"quality\": \"standard\", \"params\": {\"prompt\": \"x\"}}",
		    &status);
	ck_assert_int_eq(status, 503);
	ck_assert_ptr_nonnull(strstr(json_object_to_json_string(o), "QUALITY_PAUSED"));
	json_object_put(o);
	/* The hold is kept in the store: a restart does not lift it. */
	ck_assert_int_eq(gw_stop(&g, 10000), 0);
	gw_start(&g);
	m = gw_model(&g, "img_std", &root);
	ck_assert_str_eq(gw_str(m, "state"), "held");
	ck_assert_str_eq(gw_str(m, "hold"), "drain");
	json_object_put(root);
	json_object_put(wait_paused(waiting));
	ck_assert_int_eq(catalog_available("standard"), 0);
	ck_assert_int_eq(gw_runner_count(&g, "img_std"), 0);
	/* start lifts it: the waiting job runs. */
	ck_assert_int_eq(action("img_std", "start"), 200);
	o = gw_wait_status(&g, waiting, "completed,failed", 15000);
	ck_assert_str_eq(gw_str(o, "status"), "completed");
	json_object_put(o);
	ck_assert_int_eq(catalog_available("standard"), 1);
	free(running);
	free(waiting);
}
END_TEST

START_TEST(stop_ends_a_running_job_which_runs_again_without_losing_an_attempt)
{
	struct json_object *o;
	char *id, *tried;

	registry("5", "[\"{bindir}/fnrun-worker\", --model, sim, --step-ms, \"300\", --port, \"{port}\"]",
		 "");
	gw_start(&g);
	id = gw_submit(&g, "standard", "stopped midway");
	json_object_put(gw_wait_status(&g, id, "running", 10000));
	ck_assert_int_eq(action("img_std", "stop"), 200);
	json_object_put(wait_paused(id));
	for (int waited = 0; gw_runner_count(&g, "img_std") > 0; waited += 20) {
		ck_assert_msg(waited < 10000, "stop did not stop the runner");
		gw_sleep_ms(20);
	}
	ck_assert_int_eq(action("img_std", "start"), 200);
	o = gw_wait_status(&g, id, "completed,failed", 20000);
	ck_assert_str_eq(gw_str(o, "status"), "completed");
	json_object_put(o);
	tried = tried_of(id);
	ck_assert_str_eq(tried, "[{\"model\":\"img_std\",\"runs\":2}]");
	free(tried);
	free(id);
}
END_TEST

START_TEST(a_held_model_with_a_fallback_sends_its_jobs_there)
{
	struct json_object *o;
	char *id;

	registry("5", "[\"{bindir}/fnrun-worker\", --model, sim, --step-ms, \"5\", --port, \"{port}\"]",
		 "    fallback: img_low\n");
	gw_start(&g);
	ck_assert_int_eq(action("img_std", "stop"), 200);
	ck_assert_int_eq(catalog_available("standard"), 1);
	id = gw_submit(&g, "standard", "elsewhere");
	o = gw_wait_status(&g, id, "completed,failed", 10000);
	ck_assert_str_eq(gw_str(o, "status"), "completed");
	ck_assert_str_eq(gw_str(o, "quality"), "low");
	json_object_put(o);
	ck_assert_int_eq(gw_runner_count(&g, "img_std"), 0);
	free(id);
}
END_TEST

/* ---- reloads that break and fix a model while jobs run ---- */

START_TEST(reloads_swapping_a_missing_binary_never_crash_or_strand_a_job)
{
	static const char good[] =
		"[\"{bindir}/fnrun-worker\", --model, sim, --step-ms, \"2\", --port, \"{port}\"]";
	static const char bad[] = "[\"/nonexistent/bin/fnrun-worker-gone\", --port, \"{port}\"]";
	struct tu_resp health = {0};
	char *ids[60];
	int n = 0, completed = 0, reloads = 0;

	registry("2", good, "    fallback: img_low\n");
	gw_start(&g);
	for (int round = 0; round < 30; round++) {
		registry("2", round % 2 ? good : bad, round % 3 ? "    fallback: img_low\n" : "");
		kill(g.pid, SIGHUP);
		reloads++;
		for (int waited = 0; gw_log_count(&g, "registry reloaded") < reloads; waited += 5) {
			ck_assert_msg(waited < 5000, "reload %d was not done", reloads);
			gw_sleep_ms(5);
		}
		ids[n++] = gw_submit(&g, "standard", "during reloads");
		ids[n++] = gw_submit(&g, "low", "beside");
	}
	for (int i = 0; i < n; i++) {
		struct json_object *o = gw_wait_status(&g, ids[i], "completed,failed,cancelled", 30000);
		completed += strcmp(gw_str(o, "status"), "completed") == 0;
		if (strcmp(gw_str(o, "status"), "failed") == 0)
			ck_assert_str_eq(error_field(o, "code"), "MODEL_UNAVAILABLE");
		json_object_put(o);
		free(ids[i]);
	}
	ck_assert_int_ge(completed, n / 2);
	/* Alive, and it stops cleanly (ASan would have aborted it on a bad handle). */
	ck_assert_int_eq(tu_http(g.port, "GET", "/health", NULL, NULL, 0, &health), 0);
	ck_assert_int_eq(health.status, 200);
	tu_resp_free(&health);
	ck_assert_int_eq(gw_stop(&g, 10000), 0);
}
END_TEST

/* ---- the model's env ---- */

START_TEST(a_models_env_overrides_the_gateways_own)
{
	struct json_object *o;
	char path[512], *text, *id;

	/* The gateway inherits these; the model's env must win in its server. */
	setenv("FNRUN_TEST_ENV", "from the gateway", 1);
	setenv("CUDA_VISIBLE_DEVICES", "5", 1);
	registry("5",
		 "[/bin/sh, -c, \"echo \\\"$FNRUN_TEST_ENV|$CUDA_VISIBLE_DEVICES\\\" > {configdir}/env.txt; "
		 "exec {bindir}/fnrun-worker --model sim --step-ms 5 --port {port}\"]",
		 "    env: {FNRUN_TEST_ENV: from the model, CUDA_VISIBLE_DEVICES: \"7\"}\n");
	gw_start(&g);
	unsetenv("FNRUN_TEST_ENV");
	unsetenv("CUDA_VISIBLE_DEVICES");
	id = gw_submit(&g, "standard", "env");
	o = gw_wait_status(&g, id, "completed,failed", 15000);
	ck_assert_str_eq(gw_str(o, "status"), "completed");
	json_object_put(o);
	snprintf(path, sizeof path, "%s/env.txt", g.dir);
	text = tu_read_file(path, NULL);
	ck_assert_ptr_nonnull(text);
	ck_assert_str_eq(text, "from the model|7\n");
	free(text);
	free(id);
}
END_TEST

/* ---- server settings an operator writes ---- */

START_TEST(server_log_level_and_an_ipv6_listen_address_do_what_they_say)
{
	char text[4096], cfg[512], data[512], log[512], *out;
	char *argv[] = {(char *)tu_bin("fnrun"), "serve", "--config", cfg, "--data", data, NULL};
	int port = tu_free_port(), fd;

	snprintf(text, sizeof text,
		 "server: {listen: \"[::1]:%d\", log_level: warn}\n"
		 "functions:\n"
		 "  Create Image:\n"
		 "    params: {prompt: {type: string, required: true}}\n"
		 "    qualities: {low: {label: Fast Preview, typical_seconds: [1, 2]}}\n",
		 port);
	snprintf(cfg, sizeof cfg, "%s/v6.yaml", g.dir);
	snprintf(data, sizeof data, "%s/data", g.dir);
	snprintf(log, sizeof log, "%s/v6.log", g.dir);
	tu_write_file(cfg, text, strlen(text));
	g.pid = tu_spawn(argv, log);
	ck_assert_int_gt(g.pid, 0);
	/* It listens on ::1 (a connect to it succeeds), and logs warnings only. */
	for (int waited = 0;; waited += 20) {
		struct sockaddr_in6 sa = {.sin6_family = AF_INET6, .sin6_port = htons((uint16_t)port),
					  .sin6_addr = IN6ADDR_LOOPBACK_INIT};
		fd = socket(AF_INET6, SOCK_STREAM, 0);
		if (connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0)
			break;
		close(fd);
		ck_assert_msg(waited < 10000, "fnrun did not listen on [::1]:%d", port);
		gw_sleep_ms(20);
	}
	close(fd);
	ck_assert_int_eq(tu_stop(g.pid, 5000), 0);
	g.pid = 0;
	out = tu_read_file(log, NULL);
	ck_assert_ptr_nonnull(out);
	ck_assert_msg(strstr(out, "level=info") == NULL, "server.log_level: warn, yet:\n%s", out);
	free(out);
}
END_TEST

/* ---- help ---- */

START_TEST(help_lists_every_subcommand)
{
	char log[512], *text;
	char *argv[] = {(char *)tu_bin("fnrun"), "--help", NULL};
	pid_t pid;
	int status;

	snprintf(log, sizeof log, "%s/help.txt", g.dir);
	pid = tu_spawn(argv, log);
	status = tu_wait_exit(pid, 10000);
	ck_assert(WIFEXITED(status));
	ck_assert_int_eq(WEXITSTATUS(status), 0);
	text = tu_read_file(log, NULL);
	ck_assert_ptr_nonnull(text);
	for (const char *const *c = (const char *const[]){"serve", "check [--deep]", "new-model",
							    "dry-run", "gpus", "submit", "jobs",
							    "job ID", "cancel", "functions", NULL};
	     *c; c++)
		ck_assert_msg(strstr(text, *c) != NULL, "--help does not list %s:\n%s", *c, text);
	free(text);
}
END_TEST

Suite *suite_operator(void)
{
	Suite *s = suite_create("operator");
	TCase *tc = tcase_create("operator");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, a_command_that_cannot_run_sends_its_jobs_to_the_fallback_at_once);
	tcase_add_test(tc, a_command_that_cannot_run_without_a_fallback_fails_plainly);
	tcase_add_test(tc, a_server_that_exits_at_start_moves_jobs_and_logs_its_last_words);
	tcase_add_test(tc, jobs_failed_by_the_model_itself_are_counted_and_rest_it);
	tcase_add_test(tc, a_drained_model_pauses_its_quality_across_a_restart);
	tcase_add_test(tc, stop_ends_a_running_job_which_runs_again_without_losing_an_attempt);
	tcase_add_test(tc, a_held_model_with_a_fallback_sends_its_jobs_there);
	tcase_add_test(tc, reloads_swapping_a_missing_binary_never_crash_or_strand_a_job);
	tcase_add_test(tc, a_models_env_overrides_the_gateways_own);
	tcase_add_test(tc, server_log_level_and_an_ipv6_listen_address_do_what_they_say);
	tcase_add_test(tc, help_lists_every_subcommand);
	suite_add_tcase(s, tc);
	return s;
}
