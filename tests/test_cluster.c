/*
 * test_cluster.c - several `fnrun serve` nodes on one PostgreSQL store
 * (tests/pgtest.c starts a private PostgreSQL 15 per test), sharing one
 * data directory for outputs: jobs submitted on one node run on whichever
 * node has room, any node answers for any job and serves its outputs, a
 * cancel reaches the node that holds the job; and 3 nodes with 2,000 jobs,
 * one node killed with SIGKILL and PostgreSQL restarted mid-run, finish
 * every job exactly once.
 */
#include <libpq-fe.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "gwtest.h"
#include "pgtest.h"
#include "testutil.h"

#define NODES 3

static struct pgtest pg;
static struct gw node[NODES];
static char url[512], shared[300];

static void setup(void)
{
	pg_start(&pg);
	pg_test_db(&pg, url, sizeof url);
	snprintf(shared, sizeof shared, "%s/shared", tu_tmpdir());
	mkdir(shared, 0755);
	for (int i = 0; i < NODES; i++) {
		memset(&node[i], 0, sizeof node[i]);
		snprintf(node[i].dir, sizeof node[i].dir, "%s/n%d", tu_tmpdir(), i);
		mkdir(node[i].dir, 0755);
		gw_write_workflow(&node[i], "wf", "none");
		snprintf(node[i].extra, sizeof node[i].extra, "--data %s --store %s --node n%d",
			 shared, url, i);
	}
}

static void teardown(void)
{
	for (int i = 0; i < NODES; i++)
		if (node[i].pid > 0)
			gw_stop(&node[i], 8000);
	tu_kill_users_of(tu_tmpdir());
	pg_stop(&pg);
	tu_rmrf(tu_tmpdir());
}

/* Every node the same registry: one sim model, step_ms a step (8 a run). */
static void registry(int step_ms, int instances)
{
	char text[2048];

	snprintf(text, sizeof text,
		 "server: {lease: 2s}\n"
		 "functions:\n"
		 "  Create Image:\n"
		 "    params:\n"
		 "      prompt: {type: string, required: true}\n"
		 "    qualities:\n"
		 "      standard: {label: Balanced, typical_seconds: [1, 2]}\n"
		 "models:\n"
		 "  img:\n"
		 "    function: Create Image\n"
		 "    quality: standard\n"
		 "    command: [\"{bindir}/fnrun-worker\", --model, sim, --step-ms, \"%d\", --port, "
		 "\"{port}\"]\n"
		 "    workflow: wf.json\n"
		 "    bind: {prompt: \"1.inputs.text\"}\n"
		 "    max_instances: %d\n"
		 "    idle_timeout: 60s\n",
		 step_ms, instances);
	for (int i = 0; i < NODES; i++)
		gw_write_registry(&node[i], text);
}

/* One number from the shared store (one connection, made again after a restart). */
static long long sql_count(const char *sql)
{
	static PGconn *c;
	PGresult *r = NULL;
	long long n;

	for (int tries = 0; tries < 2; tries++) {
		if (c == NULL || PQstatus(c) != CONNECTION_OK) {
			PQfinish(c);
			c = PQconnectdb(url);
		}
		r = PQexec(c, sql);
		if (PQresultStatus(r) == PGRES_TUPLES_OK)
			break;
		PQclear(r);
		r = NULL;
		PQfinish(c);
		c = NULL;
	}
	ck_assert_msg(r != NULL, "%s: the store does not answer", sql);
	n = atoll(PQgetvalue(r, 0, 0));
	PQclear(r);
	return n;
}

/* Times needle appears in node i's log. */
static int in_log(int i, const char *needle)
{
	return gw_log_count(&node[i], needle);
}

START_TEST(jobs_run_where_there_is_room_and_any_node_answers_for_any_job)
{
	enum { N = 12 };
	char *ids[N], path[160], *on1 = NULL;
	struct json_object *o, *outs;
	int status = 0;

	registry(40, 1);
	gw_start(&node[0]);
	gw_start(&node[1]);
	for (int i = 0; i < N; i++)
		ids[i] = gw_submit(&node[0], "standard", "cluster");
	for (int i = 0; i < N; i++) {
		o = gw_wait_status(&node[1], ids[i], "completed,failed,cancelled", 60000);
		ck_assert_str_eq(gw_str(o, "status"), "completed");
		json_object_put(o);
	}
	/* Node 1 had room: it claimed some of node 0's submits. */
	ck_assert_int_gt(in_log(1, "job claimed"), 0);
	for (int i = 0; i < N && on1 == NULL; i++) {
		char needle[80];
		snprintf(needle, sizeof needle, "job claimed job=%s", ids[i]);
		if (in_log(1, needle))
			on1 = ids[i];
	}
	ck_assert_ptr_nonnull(on1);
	/* Node 0 answers for the job node 1 ran, and serves its output (shared storage). */
	snprintf(path, sizeof path, "/api/jobs/%s", on1);
	o = gw_json(&node[0], "GET", path, NULL, &status);
	ck_assert_int_eq(status, 200);
	ck_assert_str_eq(gw_str(o, "status"), "completed");
	ck_assert(json_object_object_get_ex(o, "outputs", &outs));
	ck_assert_int_ge(json_object_array_length(outs), 1);
	{
		const char *u = gw_str(json_object_array_get_idx(outs, 0), "url");
		struct tu_resp r;
		ck_assert_ptr_nonnull(u);
		ck_assert_int_eq(tu_http(node[0].port, "GET", u, NULL, NULL, 0, &r), 0);
		ck_assert_int_eq(r.status, 200);
		ck_assert_int_gt((int)r.len, 0);
		tu_resp_free(&r);
	}
	json_object_put(o);
	ck_assert_int_eq(sql_count("SELECT count(*) FROM jobs WHERE status = 'completed'"), N);
	for (int i = 0; i < N; i++)
		free(ids[i]);
}
END_TEST

/* Reads the SSE stream of job id on node i until its text has want; 1 when it did. */
static int sse_sees(int i, const char *id, const char *want, int ms)
{
	char req[256], buf[65536];
	size_t len = 0;
	int fd = tu_connect(node[i].port), seen = 0;
	int64_t deadline = tu_now_ms() + ms;

	ck_assert_int_ge(fd, 0);
	snprintf(req, sizeof req, "GET /api/jobs/%s/events HTTP/1.1\r\nHost: 127.0.0.1\r\n"
		 "Accept: text/event-stream\r\n\r\n", id);
	ck_assert_int_eq(tu_write_all(fd, req, strlen(req)), 0);
	while (!seen && tu_now_ms() < deadline && len < sizeof buf - 1) {
		struct pollfd p = {fd, POLLIN, 0};
		ssize_t n;
		if (poll(&p, 1, 100) <= 0)
			continue;
		n = read(fd, buf + len, sizeof buf - 1 - len);
		if (n <= 0)
			break;
		len += (size_t)n;
		buf[len] = '\0';
		seen = strstr(buf, want) != NULL;
	}
	close(fd);
	return seen;
}

/* A watcher on one node follows a job that another node runs, to its end. */
START_TEST(a_watcher_on_any_node_hears_a_job_run_elsewhere)
{
	char *id;
	struct json_object *o;
	int status = 0;

	registry(150, 1); /* 1.2 s a run */
	gw_start(&node[0]);
	gw_start(&node[1]);
	/* Node 0 cannot run it (held): node 1 claims it; a watcher on node 0 hears it end. */
	o = gw_json(&node[0], "POST", "/api/admin/models/img/drain", "{}", &status);
	ck_assert_int_eq(status, 200);
	json_object_put(o);
	id = gw_submit(&node[0], "standard", "watched");
	ck_assert_msg(sse_sees(0, id, "\"completed\"", 30000), "no completed event on node 0");
	ck_assert_int_gt(in_log(1, "job claimed"), 0);
	free(id);
}
END_TEST

START_TEST(a_cancel_reaches_the_job_wherever_it_waits)
{
	char *busy[2], *waiting, path[160];
	struct json_object *o;
	int status = 0;

	registry(400, 1); /* 3.2 s a run: the runners stay busy */
	gw_start(&node[0]);
	gw_start(&node[1]);
	busy[0] = gw_submit(&node[0], "standard", "a");
	busy[1] = gw_submit(&node[1], "standard", "b");
	o = gw_wait_status(&node[0], busy[0], "running,completed", 30000);
	json_object_put(o);
	o = gw_wait_status(&node[1], busy[1], "running,completed", 30000);
	json_object_put(o);
	/* No room anywhere: this one waits unclaimed; node 1 cancels it. */
	waiting = gw_submit(&node[0], "standard", "c");
	snprintf(path, sizeof path, "/api/jobs/%s/cancel", waiting);
	o = gw_json(&node[1], "POST", path, NULL, &status);
	ck_assert_msg(status == 200 || status == 202, "cancel answered %d", status);
	json_object_put(o);
	o = gw_wait_status(&node[0], waiting, "cancelled,completed,failed", 30000);
	ck_assert_str_eq(gw_str(o, "status"), "cancelled");
	json_object_put(o);
	/* A running job on node 0, cancelled from node 1: node 0 interrupts it. */
	snprintf(path, sizeof path, "/api/jobs/%s/cancel", busy[0]);
	o = gw_json(&node[1], "POST", path, NULL, &status);
	json_object_put(o);
	o = gw_wait_status(&node[1], busy[0], "cancelled,completed,failed", 30000);
	ck_assert_str_eq(gw_str(o, "status"), "cancelled");
	json_object_put(o);
	free(busy[0]);
	free(busy[1]);
	free(waiting);
}
END_TEST

/* Submits on node i, again while the store is away (503 with Retry-After). */
static char *submit_retrying(int i)
{
	const char *body = "{\"function\": \"Create Image\", \"params\": {\"prompt\": \"x\"}}";
	int64_t deadline = tu_now_ms() + 60000;

	for (;;) {
		struct tu_resp r;
		struct json_object *o;
		int status;
		char *id;

		if (tu_http(node[i].port, "POST", "/api/generate", "application/json", body,
			    strlen(body), &r) != 0) {
			char *text = gw_log(&node[i]);
			size_t n = strlen(text);
			ck_abort_msg("node %d does not answer; its log ends: %s", i,
				     text + (n > 1500 ? n - 1500 : 0));
		}
		status = r.status;
		o = json_tokener_parse(r.body);
		tu_resp_free(&r);
		id = status == 202 ? strdup(gw_str(o, "job_id")) : NULL;
		json_object_put(o);
		if (id)
			return id;
		ck_assert_msg(status == 503, "submit answered %d", status);
		ck_assert_msg(tu_now_ms() < deadline, "the store did not come back");
		gw_sleep_ms(100); /* as Retry-After asks */
	}
}

START_TEST(three_nodes_2000_jobs_a_node_killed_and_postgres_restarted)
{
	enum { N = 2000 };
	static char *ids[N];
	int64_t deadline;
	long long done, n2_live = 0;
	char *logs[NODES];

	registry(25, 2); /* jobs queue up, and node 2 holds some when it dies */
	for (int i = 0; i < NODES; i++)
		gw_start(&node[i]);
	for (int i = 0, alive = NODES; i < N; i++) {
		ids[i] = submit_retrying(i % alive);
		/* A third of the way in, node 2 dies hard holding work: the others finish it. */
		if (alive == NODES && i >= N / 3 && i % NODES == 2 &&
		    (n2_live = sql_count("SELECT count(*) FROM jobs WHERE node = 'n2' AND "
					 "status IN ('queued', 'preparing', 'running')")) > 0) {
			kill(node[2].pid, SIGKILL);
			waitpid(node[2].pid, NULL, 0);
			node[2].pid = 0;
			alive = NODES - 1;
		}
		if (i == 2 * N / 3)
			pg_restart(&pg); /* the store goes away once, mid-run */
	}
	ck_assert_int_eq(node[2].pid, 0);
	deadline = tu_now_ms() + 180000;
	while ((done = sql_count("SELECT count(*) FROM jobs WHERE status = 'completed'")) < N) {
		ck_assert_msg(tu_now_ms() < deadline, "%lld of %d jobs completed; live: %lld", done, N,
			      sql_count("SELECT count(*) FROM jobs WHERE status IN ('queued', "
					"'preparing', 'running')"));
		gw_sleep_ms(100);
	}
	ck_assert_int_eq(sql_count("SELECT count(*) FROM jobs"), N);
	/* Exactly once: no job's end was committed by two nodes. */
	for (int i = 0; i < NODES; i++)
		logs[i] = gw_log(&node[i]);
	for (int k = 0; k < N; k++) {
		char needle[96];
		int seen = 0;
		snprintf(needle, sizeof needle, "job ended job=%s status=completed", ids[k]);
		for (int i = 0; i < NODES; i++)
			for (const char *p = logs[i]; (p = strstr(p, needle)) != NULL; p++)
				seen++;
		ck_assert_msg(seen <= 1, "job %s ended %d times", ids[k], seen);
		free(ids[k]);
	}
	for (int i = 0; i < NODES; i++)
		free(logs[i]);
	/* Nodes with room took others' submits, and node 2's claims came back to the queue. */
	ck_assert_int_gt(in_log(0, "job claimed") + in_log(1, "job claimed"), 0);
	ck_assert_int_gt(in_log(0, "lease lapsed") + in_log(1, "lease lapsed"), 0);
}
END_TEST

/* The store and node come from flags, then the environment, then the registry. */
START_TEST(store_and_node_from_the_environment)
{
	char log[400], cfg[400], *text;
	char *argv[] = {(char *)tu_bin("fnrun"), "serve", "--config", cfg, "--listen",
			"127.0.0.1:0", "--data", shared, NULL};
	int st;

	registry(0, 1);
	snprintf(cfg, sizeof cfg, "%s/registry.yaml", node[0].dir);
	snprintf(log, sizeof log, "%s/env.log", tu_tmpdir());
	setenv("FNRUN_STORE_URL", "/var/lib/fnrun.db", 1);
	st = tu_wait_exit(tu_spawn(argv, log), 10000);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) != 0, "a bad $FNRUN_STORE_URL was taken");
	text = tu_read_file(log, NULL);
	ck_assert_msg(text && strstr(text, "--store: expected a postgres:// URL"), "%s", text);
	free(text);
	/* A good one, and $FNRUN_NODE: the node runs on the shared store under that name. */
	setenv("FNRUN_STORE_URL", url, 1);
	setenv("FNRUN_NODE", "from-env", 1);
	snprintf(node[1].extra, sizeof node[1].extra, "--data %s", shared);
	gw_start(&node[1]);
	ck_assert_int_eq(gw_log_count(&node[1], "node on a shared store node=from-env"), 1);
	unsetenv("FNRUN_STORE_URL");
	unsetenv("FNRUN_NODE");
}
END_TEST

Suite *suite_cluster(void)
{
	Suite *s = suite_create("cluster");
	TCase *tc = tcase_create("cluster");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 240);
	tcase_add_test(tc, jobs_run_where_there_is_room_and_any_node_answers_for_any_job);
	tcase_add_test(tc, a_cancel_reaches_the_job_wherever_it_waits);
	tcase_add_test(tc, a_watcher_on_any_node_hears_a_job_run_elsewhere);
	tcase_add_test(tc, three_nodes_2000_jobs_a_node_killed_and_postgres_restarted);
	tcase_add_test(tc, store_and_node_from_the_environment);
	suite_add_tcase(s, tc);
	return s;
}
