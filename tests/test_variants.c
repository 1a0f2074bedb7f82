/*
 * test_variants.c - versions of one model side by side and A/B splits,
 * through a real `fnrun serve` and sim model servers: weights honoured
 * over 1,000 zero-time jobs, a user who sticks to one variant, a variant
 * made to fail rolled back automatically with no user job failed, and an
 * operator's weight, promote and rollback (API and `fnrun admin`), kept
 * across a restart.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

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

/* Two versions of one model in one tier; v2's extra flags and lines are given. */
static void registry(int w1, int w2, const char *v2_flags, const char *v2_extra)
{
	char text[4096];

	snprintf(text, sizeof text,
		 "functions:\n"
		 "  Create Image:\n"
		 "    params:\n"
		 "      prompt: {type: string, required: true}\n"
		 "    qualities:\n"
		 "      standard: {label: Balanced, typical_seconds: [1, 2]}\n"
		 "models:\n"
		 "  img_v1:\n"
		 "    function: Create Image\n"
		 "    quality: standard\n"
		 "    version: \"1.0\"\n"
		 "    command: [\"{bindir}/fnrun-worker\", --model, sim, --step-ms, \"0\", --port, \"{port}\"]\n"
		 "    workflow: wf.json\n"
		 "    bind: {prompt: \"1.inputs.text\"}\n"
		 "    weight: %d\n"
		 "  img_v2:\n"
		 "    function: Create Image\n"
		 "    quality: standard\n"
		 "    version: \"2.0\"\n"
		 "    command: [\"{bindir}/fnrun-worker\", --model, sim, --step-ms, \"0\"%s, --port, \"{port}\"]\n"
		 "    workflow: wf.json\n"
		 "    bind: {prompt: \"1.inputs.text\"}\n"
		 "    weight: %d\n"
		 "%s",
		 w1, v2_flags, w2, v2_extra);
	gw_write_registry(&g, text);
}

static char *submit_as(const char *user)
{
	char body[256];
	int status = 0;
	struct json_object *o;
	char *id;

	if (user)
		snprintf(body, sizeof body, "{\"function\": \"Create Image\", \"params\": {\"prompt\": "
			 "\"x\"}, \"user\": \"%s\"}", user);
	else
		snprintf(body, sizeof body, "{\"function\": \"Create Image\", \"params\": {\"prompt\": "
			 "\"x\"}}");
	o = gw_json(&g, "POST", "/api/generate", body, &status);
	ck_assert_msg(status == 202, "submit answered %d", status);
	id = strdup(gw_str(o, "job_id"));
	json_object_put(o);
	return id;
}

static int64_t model_int(const char *id, const char *key)
{
	struct json_object *root, *m = gw_model(&g, id, &root);
	int64_t v = gw_int(m, key);

	json_object_put(root);
	return v;
}

/* The model (and version) that served a job, from the admin API. Caller frees. */
static char *served_by(const char *job, char *version, size_t n)
{
	char path[128];
	struct json_object *o;
	char *m;

	snprintf(path, sizeof path, "/api/admin/jobs/%s", job);
	o = gw_json(&g, "GET", path, NULL, NULL);
	m = strdup(gw_str(o, "model") ? gw_str(o, "model") : "");
	if (version)
		snprintf(version, n, "%s", gw_str(o, "model_version") ? gw_str(o, "model_version") : "");
	json_object_put(o);
	return m;
}

static void wait_done(char **ids, int n)
{
	for (int i = 0; i < n; i++) {
		struct json_object *o = gw_wait_status(&g, ids[i], "completed,failed,cancelled", 60000);
		ck_assert_msg(strcmp(gw_str(o, "status"), "completed") == 0, "job %s %s: %s", ids[i],
			      gw_str(o, "status"), json_object_to_json_string(o));
		json_object_put(o);
	}
}

START_TEST(weights_are_honoured_over_1000_zero_time_jobs)
{
	enum { N = 1000 };
	char **ids = calloc(N, sizeof *ids), version[32];
	int64_t v1, v2;
	char *m;

	registry(90, 10, "", "");
	gw_start(&g);
	for (int i = 0; i < N; i++)
		ids[i] = submit_as(NULL); /* no user: each job draws on its own */
	wait_done(ids, N);
	v1 = model_int("img_v1", "jobs");
	v2 = model_int("img_v2", "jobs");
	ck_assert_int_eq(v1 + v2, N);
	/* 10% of 1,000: 100 expected, 3 sigma is about 28. */
	ck_assert_msg(v2 >= 70 && v2 <= 130, "img_v2 served %lld of %d jobs, expected 100 +- 30",
		      (long long)v2, N);
	/* Each job records the model and version that served it. */
	m = served_by(ids[0], version, sizeof version);
	ck_assert_msg((strcmp(m, "img_v1") == 0 && strcmp(version, "1.0") == 0) ||
			      (strcmp(m, "img_v2") == 0 && strcmp(version, "2.0") == 0),
		      "%s %s", m, version);
	free(m);
	for (int i = 0; i < N; i++)
		free(ids[i]);
	free(ids);
}
END_TEST

START_TEST(a_user_sticks_to_one_variant)
{
	enum { USERS = 12, EACH = 4 };
	char *ids[USERS][EACH], user[32];
	int on_v2 = 0;

	registry(50, 50, "", "");
	gw_start(&g);
	for (int u = 0; u < USERS; u++) {
		snprintf(user, sizeof user, "user-%d", u);
		for (int k = 0; k < EACH; k++)
			ids[u][k] = submit_as(user);
	}
	for (int u = 0; u < USERS; u++) {
		char *first;
		wait_done(ids[u], EACH);
		first = served_by(ids[u][0], NULL, 0);
		for (int k = 1; k < EACH; k++) {
			char *m = served_by(ids[u][k], NULL, 0);
			ck_assert_msg(strcmp(m, first) == 0, "user-%d saw %s and %s", u, first, m);
			free(m);
		}
		on_v2 += strcmp(first, "img_v2") == 0;
		free(first);
		for (int k = 0; k < EACH; k++)
			free(ids[u][k]);
	}
	ck_assert_msg(on_v2 > 0 && on_v2 < USERS, "%d of %d users on img_v2: no split", on_v2,
		      USERS);
}
END_TEST

START_TEST(a_failing_variant_is_rolled_back_and_no_user_job_fails)
{
	enum { N = 40 };
	char *ids[N], user[32], *log;
	struct json_object *root, *m, *ro, *ev;
	int64_t v2_jobs;

	registry(50, 50, ", --fail, error",
		 "    rollout: {baseline: img_v1, max_failure_rate_delta: 0.05, min_jobs: 3, window: 50}\n");
	gw_start(&g);
	for (int i = 0; i < N; i++) {
		snprintf(user, sizeof user, "u%d", i);
		ids[i] = submit_as(user);
	}
	wait_done(ids, N); /* every one completed: the failed tries went to the baseline */
	m = gw_model(&g, "img_v2", &root);
	ck_assert(json_object_object_get_ex(m, "rollout", &ro));
	ck_assert_str_eq(gw_str(ro, "state"), "rolled_back");
	ck_assert_msg(strstr(gw_str(ro, "note"), "failure rate 100.0%") != NULL, "%s",
		      gw_str(ro, "note"));
	ck_assert_int_eq(gw_int(m, "weight"), 0);
	v2_jobs = gw_int(m, "jobs");
	json_object_put(root);
	ev = gw_json(&g, "GET", "/api/admin/events", NULL, NULL);
	ck_assert_ptr_nonnull(strstr(json_object_to_json_string(ev), "\"rollback\""));
	json_object_put(ev);
	log = gw_log(&g);
	ck_assert_ptr_nonnull(strstr(log, "variant rolled back model=img_v2 version=2.0"));
	free(log);
	/* From now on it gets nothing. */
	for (int i = 0; i < N; i++)
		free(ids[i]);
	for (int i = 0; i < 10; i++) {
		snprintf(user, sizeof user, "u%d", i);
		ids[i] = submit_as(user);
	}
	wait_done(ids, 10);
	ck_assert_int_eq(model_int("img_v2", "jobs"), v2_jobs);
	for (int i = 0; i < 10; i++)
		free(ids[i]);
}
END_TEST

/* Runs `fnrun admin A1 [A2 [A3]]` against g; returns its exit status. */
static int admin(const char *a1, const char *a2, const char *a3)
{
	char server[64], log[512];
	char *argv[8] = {(char *)tu_bin("fnrun"), "admin", (char *)a1};
	int argc = 3, status;
	pid_t pid;

	if (a2)
		argv[argc++] = (char *)a2;
	if (a2 && a3)
		argv[argc++] = (char *)a3;
	snprintf(server, sizeof server, "http://127.0.0.1:%d", g.port);
	argv[argc++] = "--server";
	argv[argc++] = server;
	argv[argc] = NULL;
	snprintf(log, sizeof log, "%s/admin.out", g.dir);
	pid = tu_spawn(argv, log);
	status = tu_wait_exit(pid, 10000);
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

START_TEST(operators_weigh_promote_and_roll_back_and_it_outlives_a_restart)
{
	char *ids[10];
	int status;
	struct json_object *o;

	registry(50, 50, "", "");
	gw_start(&g);
	ck_assert_int_eq(admin("weight", "img_v2", "0"), 0);
	for (int i = 0; i < 10; i++)
		ids[i] = submit_as(NULL);
	wait_done(ids, 10);
	ck_assert_int_eq(model_int("img_v2", "jobs"), 0);
	for (int i = 0; i < 10; i++)
		free(ids[i]);
	/* Bad input names the field; an unknown model is 404. */
	o = gw_json(&g, "POST", "/api/admin/models/img_v2/weight", "{\"weight\": -1}", &status);
	ck_assert_int_eq(status, 400);
	json_object_put(o);
	o = gw_json(&g, "POST", "/api/admin/models/nope/weight", "{\"weight\": 5}", &status);
	ck_assert_int_eq(status, 404);
	json_object_put(o);
	ck_assert_int_eq(admin("weight", "img_v2", "lots"), 2);
	/* The weight is kept in the store. */
	ck_assert_int_eq(gw_stop(&g, 10000), 0);
	gw_start(&g);
	ck_assert_int_eq(model_int("img_v2", "weight"), 0);
	/* promote: all of the tier's jobs to img_v2. */
	ck_assert_int_eq(admin("promote", "img_v2", NULL), 0);
	ck_assert_int_eq(model_int("img_v1", "weight"), 0);
	ck_assert_int_gt(model_int("img_v2", "weight"), 0);
	for (int i = 0; i < 10; i++)
		ids[i] = submit_as(NULL);
	wait_done(ids, 10);
	ck_assert_int_eq(model_int("img_v2", "jobs"), 10);
	for (int i = 0; i < 10; i++)
		free(ids[i]);
	/* rollback by hand: weight 0, and it says so. */
	ck_assert_int_eq(admin("rollback", "img_v2", NULL), 0);
	{
		struct json_object *root, *m = gw_model(&g, "img_v2", &root), *ro;
		ck_assert_int_eq(gw_int(m, "weight"), 0);
		ck_assert(json_object_object_get_ex(m, "rollout", &ro));
		ck_assert_str_eq(gw_str(ro, "state"), "rolled_back");
		json_object_put(root);
	}
	ck_assert_int_eq(admin("weight", "img_v1", "100"), 0);
	ids[0] = submit_as(NULL);
	wait_done(ids, 1);
	free(ids[0]);
	ck_assert_int_eq(admin("models", NULL, NULL), 0);
}
END_TEST

START_TEST(a_registry_saved_under_load_adds_a_variant_without_dropping_a_job)
{
	enum { N = 200 };
	char **ids = calloc(N, sizeof *ids), path[512];
	int added = 0;

	/* v1 alone first (v2 disabled), then the file is saved with v2 in the split. */
	registry(50, 50, "", "    enabled: false\n");
	gw_start(&g);
	for (int i = 0; i < N; i++) {
		ids[i] = submit_as(NULL);
		if (i == N / 4) {
			registry(50, 50, "", "");
			added = 1;
		}
	}
	ck_assert(added);
	wait_done(ids, N); /* none failed: the reload dropped nothing */
	/* The save was seen (inotify, no SIGHUP) and the new variant served. */
	for (int waited = 0; model_int("img_v2", "jobs") == 0; waited += 20) {
		char *id;
		ck_assert_msg(waited < 10000, "the saved registry never put img_v2 in the split");
		id = submit_as(NULL);
		wait_done(&id, 1);
		free(id);
	}
	snprintf(path, sizeof path, "%s/gateway.log", g.dir);
	{
		char *log = tu_read_file(path, NULL);
		ck_assert_ptr_nonnull(strstr(log, "registry reload reason=file changed"));
		free(log);
	}
	for (int i = 0; i < N; i++)
		free(ids[i]);
	free(ids);
}
END_TEST

START_TEST(a_variant_out_of_memory_or_crashing_sends_its_jobs_to_the_baseline)
{
	enum { N = 12 };
	char *ids[N], user[32];

	for (int pass = 0; pass < 2; pass++) {
		/* pass 0: out of memory; pass 1: the model server dies mid-job. */
		registry(50, 50, pass == 0 ? ", --fail, oom" : ", --fail, crash",
			 "    rollout: {baseline: img_v1, max_failure_rate_delta: 0.05, min_jobs: 50,"
			 " window: 50}\n");
		gw_start(&g);
		for (int i = 0; i < N; i++) {
			snprintf(user, sizeof user, "p%d-u%d", pass, i);
			ids[i] = submit_as(user);
		}
		wait_done(ids, N); /* all completed, at the quality asked, on the baseline */
		for (int i = 0; i < N; i++) {
			char path[128];
			struct json_object *o;
			snprintf(path, sizeof path, "/api/jobs/%s", ids[i]);
			o = gw_json(&g, "GET", path, NULL, NULL);
			ck_assert_str_eq(gw_str(o, "quality"), "standard");
			json_object_put(o);
			free(ids[i]);
		}
		ck_assert_int_gt(model_int("img_v2", "failed_jobs"), 0);
		if (pass == 0)
			ck_assert_int_gt(model_int("img_v2", "ooms"), 0);
		ck_assert_int_eq(gw_stop(&g, 10000), 0);
		tu_kill_users_of(g.dir);
	}
}
END_TEST

START_TEST(a_variant_within_the_margin_is_not_rolled_back)
{
	enum { N = 20 };
	char *ids[N], user[32];
	struct json_object *root, *m, *ro;

	/* A margin of 1.0 (100 points): even a variant that always fails stays. */
	registry(50, 50, ", --fail, error",
		 "    rollout: {baseline: img_v1, max_failure_rate_delta: 1.0, min_jobs: 3, window: 50}\n");
	gw_start(&g);
	for (int i = 0; i < N; i++) {
		snprintf(user, sizeof user, "m%d", i);
		ids[i] = submit_as(user);
	}
	wait_done(ids, N);
	m = gw_model(&g, "img_v2", &root);
	ck_assert_int_ge(gw_int(m, "failed_jobs"), 3);
	ck_assert(json_object_object_get_ex(m, "rollout", &ro));
	ck_assert_str_eq(gw_str(ro, "state"), "watching");
	ck_assert_int_eq(gw_int(m, "weight"), 50);
	json_object_put(root);
	for (int i = 0; i < N; i++)
		free(ids[i]);
}
END_TEST

/*
 * A variant that served 24 jobs well, then runs out of memory on its next
 * 10 (a reload made it; out of memory does not rest a model, so each
 * comes to it): judged over a window of 10 it is rolled back, over a
 * window of 200 (10 failures in 34) it stays. Either way no user job fails.
 */
static const char *state_after_a_bad_turn(int window, int64_t *failed)
{
	enum { GOOD = 24, BAD = 10 };
	char *ids[GOOD], rule[160], user[32];
	struct json_object *root, *m, *ro;
	static char state[32];
	int reloads;

	snprintf(rule, sizeof rule,
		 "    rollout: {baseline: img_v1, max_failure_rate_delta: 0.5, min_jobs: 10, "
		 "window: %d}\n", window);
	registry(0, 100, "", rule);
	gw_start(&g);
	for (int i = 0; i < GOOD; i++) {
		snprintf(user, sizeof user, "g%d", i);
		ids[i] = submit_as(user);
	}
	wait_done(ids, GOOD);
	for (int i = 0; i < GOOD; i++)
		free(ids[i]);
	ck_assert_int_eq(model_int("img_v2", "jobs"), GOOD);
	reloads = gw_log_count(&g, "registry reloaded");
	registry(0, 100, ", --fail, oom", rule);
	while (gw_log_count(&g, "registry reloaded") == reloads)
		gw_sleep_ms(20); /* the test's timeout bounds this wait */
	for (int i = 0; i < BAD; i++) {
		snprintf(user, sizeof user, "b%d", i);
		ids[i] = submit_as(user);
		wait_done(&ids[i], 1); /* its failed try on img_v2 went to the baseline */
		free(ids[i]);
	}
	m = gw_model(&g, "img_v2", &root);
	*failed = gw_int(m, "failed_jobs");
	ck_assert(json_object_object_get_ex(m, "rollout", &ro));
	snprintf(state, sizeof state, "%s", gw_str(ro, "state"));
	json_object_put(root);
	return state;
}

START_TEST(the_rollout_window_decides_which_jobs_count)
{
	char data[300];
	int64_t failed = 0;

	/* 6 failures in the last 10 pass 0 % + 50 points: rolled back there, the rest to v1. */
	ck_assert_str_eq(state_after_a_bad_turn(10, &failed), "rolled_back");
	ck_assert_int_eq(failed, 6);
	/* Again from an empty store (the rollback is kept there). */
	ck_assert_int_ge(gw_stop(&g, 15000), 0);
	snprintf(data, sizeof data, "%s/data", g.dir);
	tu_rmrf(data);
	ck_assert_str_eq(state_after_a_bad_turn(200, &failed), "watching");
	ck_assert_int_eq(failed, 10);
}
END_TEST

/* All the traffic on a variant that rests (3 errors in a row): its baseline takes the jobs. */
START_TEST(a_resting_variant_sends_new_jobs_to_its_baseline)
{
	char *id, user[32];

	registry(0, 100, ", --fail, error",
		 "    rollout: {baseline: img_v1, max_failure_rate_delta: 1.0, min_jobs: 100, "
		 "window: 200}\n");
	gw_start(&g);
	for (int i = 0; i < 8; i++) {
		snprintf(user, sizeof user, "r%d", i);
		id = submit_as(user);
		wait_done(&id, 1);
		free(id);
	}
	ck_assert_int_eq(model_int("img_v2", "failed_jobs"), 3);
}
END_TEST

Suite *suite_variants(void)
{
	Suite *s = suite_create("variants");
	TCase *tc = tcase_create("variants");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 180);
	tcase_add_test(tc, weights_are_honoured_over_1000_zero_time_jobs);
	tcase_add_test(tc, a_user_sticks_to_one_variant);
	tcase_add_test(tc, a_failing_variant_is_rolled_back_and_no_user_job_fails);
	tcase_add_test(tc, operators_weigh_promote_and_roll_back_and_it_outlives_a_restart);
	tcase_add_test(tc, a_registry_saved_under_load_adds_a_variant_without_dropping_a_job);
	tcase_add_test(tc, a_variant_out_of_memory_or_crashing_sends_its_jobs_to_the_baseline);
	tcase_add_test(tc, a_variant_within_the_margin_is_not_rolled_back);
	tcase_add_test(tc, the_rollout_window_decides_which_jobs_count);
	tcase_add_test(tc, a_resting_variant_sends_new_jobs_to_its_baseline);
	suite_add_tcase(s, tc);
	return s;
}
