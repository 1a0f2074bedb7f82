/*
 * test_keys.c - API keys, scopes and quotas through a real `fnrun serve`:
 * `fnrun keys create|list|revoke` on the store of its data directory, a
 * user key that sees, watches and cancels only its own jobs, operator
 * keys for the admin API and /metrics, the web page's cookie session,
 * quotas answered with 429 and Retry-After (nothing queued), each key's
 * use in the admin API, and a non-loopback address refused without keys.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

static void registry(const char *server, const char *step)
{
	char text[4096];

	snprintf(text, sizeof text,
		 "%s"
		 "functions:\n"
		 "  Create Image:\n"
		 "    params:\n"
		 "      prompt: {type: string, required: true}\n"
		 "    qualities:\n"
		 "      low: {label: Fast Preview, typical_seconds: [1, 2]}\n"
		 "models:\n"
		 "  img_low:\n"
		 "    function: Create Image\n"
		 "    quality: low\n"
		 "    command: [\"{bindir}/fnrun-worker\", --model, sim, --step-ms, \"%s\", --port, "
		 "\"{port}\"]\n"
		 "    workflow: wf.json\n"
		 "    bind: {prompt: \"1.inputs.text\"}\n"
		 "    resources: {gpu_memory: 1GB}\n",
		 server, step);
	gw_write_registry(&g, text);
}

/* Runs `fnrun keys ARGS...` on g's data dir; returns its exit status, output in *out. */
static int keys(char **out, const char *a1, const char *a2, const char *a3, const char *a4,
		const char *a5)
{
	char data[512], log[512];
	char *argv[12] = {(char *)tu_bin("fnrun"), "keys"};
	int argc = 2, status;
	pid_t pid;

	snprintf(data, sizeof data, "%s/data", g.dir);
	snprintf(log, sizeof log, "%s/keys.out", g.dir);
	for (const char *const *a = (const char *const[]){a1, a2, a3, a4, a5}; argc < 7; a++, argc++)
		if ((argv[argc] = (char *)*a) == NULL)
			break;
	argv[argc++] = "--data";
	argv[argc++] = data;
	argv[argc] = NULL;
	unlink(log);
	pid = tu_spawn(argv, log);
	status = tu_wait_exit(pid, 10000);
	if (out)
		*out = tu_read_file(log, NULL);
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* A new key of scope named name; caller frees. */
static char *make_key(const char *scope, const char *name)
{
	char *out, *k, *key;

	ck_assert_int_eq(keys(&out, "create", "--scope", scope, "--name", name), 0);
	k = strstr(out, "fnr_");
	ck_assert_ptr_nonnull(k);
	key = strndup(k, 68);
	ck_assert_uint_eq(strlen(key), 68);
	free(out);
	return key;
}

/* One request with headers; the body is parsed as JSON when it is. */
static struct json_object *req(const char *method, const char *path, const char *key,
			       const char *cookie, const char *body, int *status, char **headers)
{
	char head[2048];
	struct tu_resp r = {0};
	struct json_object *o;
	int fd = tu_connect(g.port);

	ck_assert_int_ge(fd, 0);
	snprintf(head, sizeof head,
		 "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n%s%s%s%s%s%s"
		 "Content-Length: %zu\r\n\r\n",
		 method, path, key ? "Authorization: Bearer " : "", key ? key : "", key ? "\r\n" : "",
		 cookie ? "Cookie: " : "", cookie ? cookie : "", cookie ? "\r\n" : "",
		 body ? strlen(body) : 0);
	ck_assert_int_eq(tu_write_all(fd, head, strlen(head)), 0);
	if (body)
		ck_assert_int_eq(tu_write_all(fd, body, strlen(body)), 0);
	ck_assert_int_eq(tu_read_response(fd, &r), 0);
	close(fd);
	if (status)
		*status = r.status;
	if (headers)
		*headers = strdup(r.headers ? r.headers : "");
	o = json_tokener_parse(r.body ? r.body : "");
	tu_resp_free(&r);
	return o;
}

/* Polls the job with key until its status is one of want (comma list). */
static void wait_job(const char *key, const char *id, const char *want)
{
	char path[160];

	snprintf(path, sizeof path, "/api/jobs/%s", id);
	for (int waited = 0;; waited += 20) {
		int status = 0;
		struct json_object *o = req("GET", path, key, NULL, NULL, &status, NULL);
		const char *st = status == 200 ? gw_str(o, "status") : NULL;
		int done = st && strstr(want, st) != NULL;

		json_object_put(o);
		if (done)
			return;
		ck_assert_msg(waited < 20000, "job %s never reached %s", id, want);
		gw_sleep_ms(20);
	}
}

static int status_of(const char *method, const char *path, const char *key, const char *body)
{
	int status = 0;

	json_object_put(req(method, path, key, NULL, body, &status, NULL));
	return status;
}

static char *submit(const char *key, const char *prompt)
{
	char body[256];
	int status = 0;
	struct json_object *o;
	char *id;

	snprintf(body, sizeof body,
		 "{\"function\": \"Create Image\", \"quality\": \"low\", \"params\": {\"prompt\": \"%s\"}}",
		 prompt);
	o = req("POST", "/api/generate", key, NULL, body, &status, NULL);
	ck_assert_msg(status == 202, "submit answered %d: %s", status, json_object_to_json_string(o));
	id = strdup(gw_str(o, "job_id"));
	json_object_put(o);
	return id;
}

START_TEST(the_keys_command_makes_lists_and_revokes_keys_stored_hashed)
{
	char *alice, *out, *db;
	size_t len;

	alice = make_key("user", "alice");
	ck_assert_int_eq(keys(&out, "list", NULL, NULL, NULL, NULL), 0);
	ck_assert_ptr_nonnull(strstr(out, "alice"));
	ck_assert_ptr_nonnull(strstr(out, "user"));
	ck_assert_msg(strstr(out, alice) == NULL, "list shows the key itself:\n%s", out);
	free(out);
	/* The store holds a hash, never the key. */
	{
		char path[512];
		snprintf(path, sizeof path, "%s/data/keys.db", g.dir);
		db = tu_read_file(path, &len);
		ck_assert_ptr_nonnull(db);
		ck_assert_ptr_null(memmem(db, len, alice + 4, 64));
		free(db);
	}
	/* A name is unique; a bad scope is refused. */
	ck_assert_int_eq(keys(NULL, "create", "--scope", "user", "--name", "alice"), 1);
	ck_assert_int_eq(keys(NULL, "create", "--scope", "root", "--name", "x"), 2);
	ck_assert_int_eq(keys(NULL, "revoke", "alice", NULL, NULL, NULL), 0);
	ck_assert_int_eq(keys(NULL, "revoke", "alice", NULL, NULL, NULL), 1);
	/* The key file cannot vanish unnoticed: a deleted one is refused (its marker stays). */
	{
		char path[512];
		snprintf(path, sizeof path, "%s/data/keys.db", g.dir);
		ck_assert_int_eq(unlink(path), 0);
		ck_assert_int_eq(keys(&out, "list", NULL, NULL, NULL, NULL), 1);
		ck_assert_msg(strstr(out, "keys.db") != NULL, "%s", out);
		free(out);
		snprintf(path, sizeof path, "%s/data/keys.db.marker", g.dir);
		ck_assert_int_eq(unlink(path), 0);
		ck_assert_int_eq(keys(NULL, "create", "--scope", "user", "--name", "alice"), 0);
		ck_assert_int_eq(keys(NULL, "revoke", "alice", NULL, NULL, NULL), 0);
	}
	ck_assert_int_eq(keys(&out, "list", NULL, NULL, NULL, NULL), 0);
	{
		/* alice's line now ends with the time it was revoked, not "-". */
		char *line = strstr(out, "alice"), *end = line ? strchr(line, '\n') : NULL;
		ck_assert_msg(line && end && end[-1] == 'Z', "%s", out);
	}
	free(out);
	free(alice);
}
END_TEST

START_TEST(a_user_key_sees_only_its_own_jobs_and_operators_see_all)
{
	char *alice, *bob, *ops, *a, *b, path[256];
	struct json_object *o, *jobs;
	int status;

	registry("", "5");
	alice = make_key("user", "alice");
	bob = make_key("user", "bob");
	ops = make_key("operator", "ops");
	gw_start(&g);
	/* With keys, nothing but health, readiness and the page's files is open. */
	ck_assert_int_eq(status_of("GET", "/api/functions", NULL, NULL), 401);
	ck_assert_int_eq(status_of("GET", "/health", NULL, NULL), 200);
	ck_assert_int_eq(status_of("GET", "/ready", NULL, NULL), 200);
	ck_assert_int_eq(status_of("GET", "/api/session", NULL, NULL), 200);
	ck_assert_int_eq(status_of("GET", "/api/functions", "fnr_0000000000000000"
				   "000000000000000000000000000000000000000000000000", NULL), 401);
	a = submit(alice, "alice's");
	b = submit(bob, "bob's");
	wait_job(alice, a, "completed");
	snprintf(path, sizeof path, "/api/jobs/%s", a);
	ck_assert_int_eq(status_of("GET", path, alice, NULL), 200);
	ck_assert_int_eq(status_of("GET", path, bob, NULL), 404);
	ck_assert_int_eq(status_of("GET", path, ops, NULL), 200);
	snprintf(path, sizeof path, "/api/jobs/%s/cancel", a);
	ck_assert_int_eq(status_of("POST", path, bob, ""), 404);
	snprintf(path, sizeof path, "/api/events?jobs=%s", a);
	ck_assert_int_eq(status_of("GET", path, bob, NULL), 404);
	/* Lists: a user key, its own; an operator key, all. */
	o = req("GET", "/api/jobs", alice, NULL, NULL, &status, NULL);
	ck_assert(json_object_object_get_ex(o, "jobs", &jobs));
	ck_assert_int_eq(json_object_array_length(jobs), 1);
	ck_assert_str_eq(gw_str(json_object_array_get_idx(jobs, 0), "job_id"), a);
	json_object_put(o);
	o = req("GET", "/api/jobs", ops, NULL, NULL, &status, NULL);
	ck_assert(json_object_object_get_ex(o, "jobs", &jobs));
	ck_assert_int_eq(json_object_array_length(jobs), 2);
	json_object_put(o);
	/* Operators only: the admin API and /metrics. */
	ck_assert_int_eq(status_of("GET", "/api/admin/models", alice, NULL), 403);
	ck_assert_int_eq(status_of("GET", "/metrics", alice, NULL), 403);
	ck_assert_int_eq(status_of("GET", "/api/admin/models", NULL, NULL), 401);
	ck_assert_int_eq(status_of("GET", "/api/admin/models", ops, NULL), 200);
	ck_assert_int_eq(status_of("GET", "/metrics", ops, NULL), 200);
	/* Another key's idempotency key never names our job. */
	{
		const char *body = "{\"function\": \"Create Image\", \"quality\": \"low\", "
				   "\"params\": {\"prompt\": \"same\"}, \"idempotency_key\": \"k1\"}";
		struct json_object *x = req("POST", "/api/generate", alice, NULL, body, &status, NULL);
		struct json_object *y;
		ck_assert_int_eq(status, 202);
		y = req("POST", "/api/generate", bob, NULL, body, &status, NULL);
		ck_assert_int_eq(status, 202);
		ck_assert_str_ne(gw_str(x, "job_id"), gw_str(y, "job_id"));
		json_object_put(x);
		json_object_put(y);
	}
	/* Revoked: refused within a second (the gateway rereads the keys). */
	ck_assert_int_eq(keys(NULL, "revoke", "alice", NULL, NULL, NULL), 0);
	for (int waited = 0; status_of("GET", "/api/functions", alice, NULL) != 401; waited += 50) {
		ck_assert_msg(waited < 5000, "a revoked key still works");
		gw_sleep_ms(50);
	}
	free(alice);
	free(bob);
	free(ops);
	free(a);
	free(b);
}
END_TEST

START_TEST(the_page_signs_in_with_a_cookie_that_images_and_streams_carry)
{
	char *alice, *headers, *a, cookie[128], path[256];
	struct json_object *o;
	int status;

	registry("", "5");
	alice = make_key("user", "alice");
	gw_start(&g);
	o = req("GET", "/api/session", NULL, NULL, NULL, &status, NULL);
	ck_assert_int_eq(status, 200);
	ck_assert(json_object_get_boolean(json_object_object_get(o, "keys_required")));
	ck_assert(!json_object_get_boolean(json_object_object_get(o, "signed_in")));
	json_object_put(o);
	o = req("POST", "/api/session", NULL, NULL, "{\"key\": \"fnr_nope\"}", &status, NULL);
	ck_assert_int_eq(status, 401);
	json_object_put(o);
	snprintf(cookie, sizeof cookie, "{\"key\": \"%s\"}", alice);
	o = req("POST", "/api/session", NULL, NULL, cookie, &status, &headers);
	ck_assert_int_eq(status, 200);
	ck_assert_str_eq(gw_str(o, "name"), "alice");
	/* (header blocks come lower-cased) */
	ck_assert_msg(strstr(headers, "set-cookie: fnrun_key=") && strstr(headers, "httponly") &&
			      strstr(headers, "samesite=strict"),
		      "%s", headers);
	json_object_put(o);
	free(headers);
	/* The cookie alone reaches the API, and the job's files. */
	snprintf(cookie, sizeof cookie, "fnrun_key=%s", alice);
	a = submit(alice, "with a cookie");
	wait_job(alice, a, "completed");
	snprintf(path, sizeof path, "/api/jobs/%s", a);
	o = req("GET", path, NULL, cookie, NULL, &status, NULL);
	ck_assert_int_eq(status, 200);
	{
		struct json_object *outs = json_object_object_get(o, "outputs");
		const char *url = gw_str(json_object_array_get_idx(outs, 0), "url");
		ck_assert_ptr_nonnull(url);
		json_object_put(req("GET", url, NULL, cookie, NULL, &status, NULL));
		ck_assert_int_eq(status, 200);
		json_object_put(req("GET", url, NULL, NULL, NULL, &status, NULL));
		ck_assert_int_eq(status, 401);
	}
	json_object_put(o);
	free(alice);
	free(a);
}
END_TEST

START_TEST(quotas_answer_429_with_retry_after_and_queue_nothing)
{
	char *alice, *bob, *ops, *headers, *ids[3];
	struct json_object *o, *ks;
	int status;
	const char *body = "{\"function\": \"Create Image\", \"quality\": \"low\", "
			   "\"params\": {\"prompt\": \"one too many\"}}";

	registry("server: {quotas: {running: 2, per_minute: 3, keys: {bob: {running: 0}}}}\n",
		 "300");
	alice = make_key("user", "alice");
	bob = make_key("user", "bob");
	ops = make_key("operator", "ops");
	gw_start(&g);
	ids[0] = submit(alice, "1");
	ids[1] = submit(alice, "2");
	o = req("POST", "/api/generate", alice, NULL, body, &status, &headers);
	ck_assert_int_eq(status, 429);
	ck_assert_str_eq(gw_str(json_object_object_get(o, "error"), "code"), "QUOTA_EXCEEDED");
	ck_assert_ptr_nonnull(strstr(gw_str(json_object_object_get(o, "error"), "message"),
				     "You have 2 creations"));
	ck_assert_msg(strstr(headers, "retry-after: ") != NULL, "%s", headers);
	json_object_put(o);
	free(headers);
	/* Nothing was queued: alice still has exactly two jobs. */
	o = req("GET", "/api/jobs", alice, NULL, NULL, &status, NULL);
	ck_assert_int_eq(json_object_array_length(json_object_object_get(o, "jobs")), 2);
	json_object_put(o);
	/* Per key: bob's override lifts the running limit; the per-minute one still holds. */
	for (int i = 0; i < 3; i++)
		free(submit(bob, "bob"));
	o = req("POST", "/api/generate", bob, NULL, body, &status, &headers);
	ck_assert_int_eq(status, 429);
	ck_assert_ptr_nonnull(strstr(gw_str(json_object_object_get(o, "error"), "message"),
				     "in the last minute"));
	json_object_put(o);
	free(headers);
	/* When one finishes, alice may submit again. */
	wait_job(alice, ids[0], "completed");
	for (int waited = 0; status_of("POST", "/api/generate", alice, body) != 202; waited += 50) {
		ck_assert_msg(waited < 10000, "the quota did not free up");
		gw_sleep_ms(50);
	}
	/* Operators see each key's use. */
	o = req("GET", "/api/admin/keys", ops, NULL, NULL, &status, NULL);
	ck_assert_int_eq(status, 200);
	ks = json_object_object_get(o, "keys");
	ck_assert_int_eq(json_object_array_length(ks), 3);
	for (size_t i = 0; i < 3; i++) {
		struct json_object *k = json_object_array_get_idx(ks, i);
		if (strcmp(gw_str(k, "name"), "bob") == 0) {
			ck_assert_int_eq(gw_int(k, "last_minute"), 3);
			ck_assert_ptr_null(json_object_object_get(json_object_object_get(k, "quota"),
								  "running"));
		}
		if (strcmp(gw_str(k, "name"), "alice") == 0)
			ck_assert_int_eq(gw_int(json_object_object_get(k, "quota"), "running"), 2);
	}
	json_object_put(o);
	free(ids[0]);
	free(ids[1]);
	free(alice);
	free(bob);
	free(ops);
}
END_TEST

START_TEST(a_network_address_without_keys_is_refused_unless_insecure)
{
	char cfg[512], data[512], log[512], listen[64], *text;
	char *argv[] = {(char *)tu_bin("fnrun"), "serve", "--config", cfg, "--data", data,
			"--listen", listen, NULL, NULL};
	pid_t pid;
	int status;

	registry("", "5");
	snprintf(cfg, sizeof cfg, "%s/registry.yaml", g.dir);
	snprintf(data, sizeof data, "%s/data", g.dir);
	snprintf(log, sizeof log, "%s/refused.log", g.dir);
	snprintf(listen, sizeof listen, "0.0.0.0:%d", tu_free_port());
	pid = tu_spawn(argv, log);
	status = tu_wait_exit(pid, 10000);
	ck_assert(WIFEXITED(status));
	ck_assert_int_ne(WEXITSTATUS(status), 0);
	text = tu_read_file(log, NULL);
	ck_assert_msg(strstr(text, "fnrun keys create") && strstr(text, "--insecure"), "%s", text);
	free(text);
	/* --insecure: the operator says the network is trusted. */
	argv[8] = "--insecure";
	g.port = atoi(strrchr(listen, ':') + 1);
	g.pid = tu_spawn(argv, log);
	ck_assert_int_eq(tu_wait_http(g.port, "/health", 200, 10000), 0);
	ck_assert_int_eq(gw_stop(&g, 8000), 0);
	/* With a key it starts without --insecure. */
	free(make_key("operator", "ops"));
	argv[8] = NULL;
	g.pid = tu_spawn(argv, log);
	ck_assert_int_eq(tu_wait_http(g.port, "/health", 200, 10000), 0);
}
END_TEST

START_TEST(gpu_time_per_day_is_a_quota_that_outlives_a_restart)
{
	char *alice, *headers, *a;
	struct json_object *o;
	int status;
	const char *body = "{\"function\": \"Create Image\", \"quality\": \"low\", "
			   "\"params\": {\"prompt\": \"more\"}}";

	/* 8 steps of 300 ms: one job uses more than the 2 GPU-seconds a day allows. */
	registry("server: {quotas: {gpu_seconds_per_day: 2}}\n", "300");
	alice = make_key("user", "alice");
	gw_start(&g);
	a = submit(alice, "first");
	wait_job(alice, a, "completed");
	o = req("POST", "/api/generate", alice, NULL, body, &status, &headers);
	ck_assert_int_eq(status, 429);
	ck_assert_ptr_nonnull(strstr(gw_str(json_object_object_get(o, "error"), "message"),
				     "today's creation time"));
	ck_assert_msg(strstr(headers, "retry-after: ") != NULL, "%s", headers);
	json_object_put(o);
	free(headers);
	/* Read back from the store at start: a restart does not give the day back. */
	ck_assert_int_eq(gw_stop(&g, 10000), 0);
	gw_start(&g);
	ck_assert_int_eq(status_of("POST", "/api/generate", alice, body), 429);
	free(alice);
	free(a);
}
END_TEST

START_TEST(the_command_line_client_sends_FNRUN_KEY)
{
	char *alice, server[64], log[512];
	char *argv[] = {(char *)tu_bin("fnrun"), "functions", "--server", server, NULL};
	int status;

	registry("", "5");
	alice = make_key("user", "alice");
	gw_start(&g);
	snprintf(server, sizeof server, "http://127.0.0.1:%d", g.port);
	snprintf(log, sizeof log, "%s/cli.out", g.dir);
	status = tu_wait_exit(tu_spawn(argv, log), 10000);
	ck_assert(WIFEXITED(status) && WEXITSTATUS(status) != 0); /* 401 without a key */
	setenv("FNRUN_KEY", alice, 1);
	status = tu_wait_exit(tu_spawn(argv, log), 10000);
	unsetenv("FNRUN_KEY");
	ck_assert(WIFEXITED(status));
	ck_assert_int_eq(WEXITSTATUS(status), 0);
	free(alice);
}
END_TEST

Suite *suite_keys(void)
{
	Suite *s = suite_create("keys");
	TCase *tc = tcase_create("keys");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 90);
	tcase_add_test(tc, the_keys_command_makes_lists_and_revokes_keys_stored_hashed);
	tcase_add_test(tc, a_user_key_sees_only_its_own_jobs_and_operators_see_all);
	tcase_add_test(tc, the_page_signs_in_with_a_cookie_that_images_and_streams_carry);
	tcase_add_test(tc, quotas_answer_429_with_retry_after_and_queue_nothing);
	tcase_add_test(tc, a_network_address_without_keys_is_refused_unless_insecure);
	tcase_add_test(tc, gpu_time_per_day_is_a_quota_that_outlives_a_restart);
	tcase_add_test(tc, the_command_line_client_sends_FNRUN_KEY);
	suite_add_tcase(s, tc);
	return s;
}
