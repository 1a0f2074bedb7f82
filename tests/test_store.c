/*
 * test_store.c - the job object, its state machine, and the store: one set
 * of cases run against both backends (TCase "db" on a SQLite file in a
 * temp dir, TCase "pg" on a private PostgreSQL with a new database per
 * case), then what only one backend has (a file's guard, pragmas and
 * lock; PostgreSQL's reconnect after a restart). Each test runs in its own
 * process.
 */
#include <check.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "job.h"
#include "json.h" /* -I/usr/include/json-c has a json.h too */
#include "log.h"
#include "pgtest.h"
#include "store.h"
#include "testutil.h"
#include "util.h"

static char db_path[512];

static void setup(void)
{
	log_init(LOG_WARN, NULL);
	snprintf(db_path, sizeof db_path, "%s/jobs.db", tu_tmpdir());
}

static void quiet(void)
{
	log_init(LOG_WARN, NULL);
}

static void teardown(void)
{
	tu_rmrf(tu_tmpdir());
}

/* TCase "pg": one server for the case, started in the parent; a database per test. */
static struct pgtest pgs;

static void pg_up(void)
{
	pg_start(&pgs);
}

static void pg_down(void)
{
	pg_stop(&pgs);
}

static void setup_pg(void)
{
	log_init(LOG_WARN, NULL);
	pg_test_db(&pgs, db_path, sizeof db_path);
}

static struct store *open_ok(void)
{
	struct err err = {0};
	struct store *s = store_open(db_path, &err);

	ck_assert_msg(s != NULL, "store_open: %s", err.msg);
	return s;
}

/* A job with every field set to something other than its default. */
static struct job *full_job(const char *idem)
{
	struct job *j = job_new();

	job_set_str(&j->function, "Create Image");
	job_set_str(&j->quality, "high");
	job_set_str(&j->params_json,
		    "{\"prompt\": \"a lighthouse at dusk\", "
		    "\"seed\": 18446744073709551615, \"big\": 9007199254740993}");
	job_set_str(&j->idempotency_key, idem);
	j->priority = 7;
	j->attempt = 2;
	j->max_attempts = 5;
	job_set_str(&j->model_id, "create_image_high");
	job_set_str(&j->runner_id, "r-1");
	job_set_str(&j->remote_prompt_id, "p-42");
	job_set_str(&j->remote_url, "http://127.0.0.1:9001");
	j->progress = 55;
	job_set_str(&j->message, "Creating your image... \xc3\xa9");
	job_set_str(&j->error_code, "OUT_OF_MEMORY");
	job_set_str(&j->error_message, "Needs more resources");
	job_set_str(&j->error_suggestion, "Try Standard quality");
	job_set_str(&j->error_action, "REDUCE_QUALITY");
	job_set_str(&j->error_detail, "CUDA out of memory; it's 'quoted'");
	job_set_str(&j->outputs_json, "[{\"url\": \"/api/outputs/a.png\"}]");
	job_set_str(&j->tried_json, "[\"create_image_low\"]");
	j->status = JOB_RUNNING;
	j->created_at = 1700000000001;
	j->started_at = 1700000000002;
	j->finished_at = 1700000000003;
	j->updated_at = 1700000000004;
	return j;
}

static void assert_jobs_equal(const struct job *a, const struct job *b)
{
	ck_assert_str_eq(a->id, b->id);
	ck_assert_str_eq(a->function, b->function);
	ck_assert_str_eq(a->quality, b->quality);
	ck_assert_str_eq(a->params_json, b->params_json);
	ck_assert_pstr_eq(a->idempotency_key, b->idempotency_key);
	ck_assert_int_eq(a->seq, b->seq);
	ck_assert_int_eq(a->created_at, b->created_at);
	ck_assert_int_eq(a->status, b->status);
	ck_assert_int_eq(a->priority, b->priority);
	ck_assert_int_eq(a->attempt, b->attempt);
	ck_assert_int_eq(a->max_attempts, b->max_attempts);
	ck_assert_pstr_eq(a->model_id, b->model_id);
	ck_assert_pstr_eq(a->runner_id, b->runner_id);
	ck_assert_pstr_eq(a->remote_prompt_id, b->remote_prompt_id);
	ck_assert_pstr_eq(a->remote_url, b->remote_url);
	ck_assert_int_eq(a->progress, b->progress);
	ck_assert_str_eq(a->message, b->message);
	ck_assert_pstr_eq(a->error_code, b->error_code);
	ck_assert_pstr_eq(a->error_message, b->error_message);
	ck_assert_pstr_eq(a->error_suggestion, b->error_suggestion);
	ck_assert_pstr_eq(a->error_action, b->error_action);
	ck_assert_pstr_eq(a->error_detail, b->error_detail);
	ck_assert_str_eq(a->outputs_json, b->outputs_json);
	ck_assert_str_eq(a->tried_json, b->tried_json);
	ck_assert_int_eq(a->started_at, b->started_at);
	ck_assert_int_eq(a->finished_at, b->finished_at);
	ck_assert_int_eq(a->updated_at, b->updated_at);
}

static void insert_ok(struct store *s, struct job *j)
{
	struct err err = {0};

	ck_assert_msg(store_job_insert(s, j, &err) == 0, "insert: %s", err.msg);
}

static int64_t count(struct store *s, int status)
{
	struct err err = {0};
	int64_t n = -1;

	ck_assert_msg(store_job_count(s, status, &n, &err) == 0, "count: %s",
		      err.msg);
	return n;
}

static struct job *get_ok(struct store *s, const char *id)
{
	struct err err = {0};
	struct job *j = NULL;

	ck_assert_msg(store_job_get(s, id, &j, &err) == 0, "get %s: %s", id,
		      err.msg);
	return j;
}

START_TEST(test_job_new_defaults)
{
	struct job *j = job_new(), *k = job_new(), *c;

	ck_assert_uint_eq(strlen(j->id), JOB_ID_LEN);
	ck_assert_uint_eq(strspn(j->id, "0123456789abcdef"), JOB_ID_LEN);
	ck_assert_str_ne(j->id, k->id);
	ck_assert_int_eq(j->status, JOB_QUEUED);
	ck_assert_int_eq(j->attempt, 0);
	ck_assert_str_eq(j->outputs_json, "[]");
	ck_assert_str_eq(j->tried_json, "[]");
	ck_assert_ptr_null(j->idempotency_key);
	ck_assert_ptr_null(j->error_code);
	ck_assert_int_gt(j->created_at, 0);
	ck_assert(job_check(j));

	job_set_str(&j->model_id, "m");
	c = job_dup(j);
	ck_assert_ptr_ne(c->model_id, j->model_id);
	ck_assert_str_eq(c->model_id, "m");
	ck_assert_str_eq(c->id, j->id);
	job_free(c);
	job_free(j);
	job_free(k);
	job_free(NULL);
}
END_TEST

START_TEST(test_job_set_status_stamps)
{
	struct job *j = job_new();

	job_set_status(j, JOB_PREPARING, 10);
	ck_assert_int_eq(j->updated_at, 10);
	ck_assert_int_eq(j->started_at, 0);
	job_set_status(j, JOB_RUNNING, 20);
	ck_assert_int_eq(j->started_at, 20);
	job_set_status(j, JOB_QUEUED, 30);
	ck_assert_int_eq(j->started_at, 0);
	ck_assert_int_eq(j->finished_at, 0);
	job_set_status(j, JOB_PREPARING, 40);
	job_set_status(j, JOB_RUNNING, 50);
	job_set_status(j, JOB_COMPLETED, 60);
	ck_assert_int_eq(j->status, JOB_COMPLETED);
	ck_assert_int_eq(j->started_at, 50);
	ck_assert_int_eq(j->finished_at, 60);
	ck_assert_int_eq(j->updated_at, 60);
	job_free(j);
}
END_TEST

START_TEST(test_transition_table)
{
	/* legal[from][to], straight from docs/design.md §4. */
	static const int legal[JOB_STATUS_COUNT][JOB_STATUS_COUNT] = {
		/* to: Q  P  R  C  F  X */
		[JOB_QUEUED] = {0, 1, 0, 0, 1, 1},
		[JOB_PREPARING] = {1, 0, 1, 0, 1, 1},
		[JOB_RUNNING] = {1, 0, 0, 1, 1, 1},
		[JOB_COMPLETED] = {0, 0, 0, 0, 0, 0},
		[JOB_FAILED] = {0, 0, 0, 0, 0, 0},
		[JOB_CANCELLED] = {0, 0, 0, 0, 0, 0},
	};

	for (int from = 0; from < JOB_STATUS_COUNT; from++) {
		for (int to = 0; to < JOB_STATUS_COUNT; to++)
			ck_assert_msg(job_transition_ok(from, to) ==
					      legal[from][to],
				      "%s -> %s", job_status_name(from),
				      job_status_name(to));
		ck_assert_int_eq(job_status_terminal(from), from >= JOB_COMPLETED);
		ck_assert_int_eq(job_status_parse(job_status_name(from)), from);
	}
	ck_assert(!job_transition_ok(-1, JOB_QUEUED));
	ck_assert(!job_transition_ok(JOB_QUEUED, JOB_STATUS_COUNT));
	ck_assert_str_eq(job_status_name(JOB_CANCELLED), "cancelled");
	ck_assert_str_eq(job_status_name(99), "unknown");
	ck_assert_int_eq(job_status_parse("Queued"), -1);
	ck_assert_int_eq(job_status_parse(NULL), -1);
}
END_TEST

START_TEST(test_roundtrip_every_field)
{
	struct store *s = open_ok();
	struct job *j = full_job("idem-1"), *got;
	struct json_object *params = NULL;
	struct err err = {0};

	insert_ok(s, j);
	ck_assert_int_gt(j->seq, 0);
	got = get_ok(s, j->id);
	assert_jobs_equal(j, got);
	ck_assert(job_check(got));

	/* The 64-bit seed survives as exact text and as a parsed value. */
	ck_assert_int_eq(json_parse(got->params_json, strlen(got->params_json),
				    JSON_MAX_DEPTH, &params, &err),
			 0);
	ck_assert_uint_eq(json_object_get_uint64(json_get(params, "seed")),
			  UINT64_MAX);
	ck_assert_int_eq(json_get_int(params, "big", 0), 9007199254740993LL);
	json_object_put(params);
	job_free(got);

	/* Nullable fields come back NULL. */
	job_free(j);
	j = job_new();
	job_set_str(&j->function, "Create Image");
	job_set_str(&j->quality, "low");
	insert_ok(s, j);
	got = get_ok(s, j->id);
	assert_jobs_equal(j, got);
	ck_assert_ptr_null(got->idempotency_key);
	ck_assert_ptr_null(got->error_detail);
	job_free(got);
	job_free(j);
	store_close(s);
}
END_TEST

START_TEST(test_idempotency_conflict)
{
	struct store *s = open_ok();
	struct job *a = full_job("same-key"), *b = full_job("same-key"), *got;
	struct err err = {0};

	insert_ok(s, a);
	ck_assert_int_eq(store_job_insert(s, b, &err), -1);
	ck_assert_int_eq(err.code, ERR_CONFLICT);
	ck_assert_ptr_nonnull(strstr(err.msg, a->id));
	ck_assert_int_eq(count(s, -1), 1);

	err_clear(&err);
	ck_assert_int_eq(store_job_by_idem(s, "same-key", &got, &err), 0);
	ck_assert_str_eq(got->id, a->id);
	job_free(got);
	ck_assert_int_eq(store_job_by_idem(s, "other", &got, &err), -1);
	ck_assert_int_eq(err.code, ERR_NOT_FOUND);
	ck_assert_ptr_null(got);

	/* Inside a batch the conflict leaves the batch usable. */
	err_clear(&err);
	ck_assert_int_eq(store_begin(s, &err), 0);
	ck_assert_int_eq(store_job_insert(s, b, &err), -1);
	ck_assert_int_eq(err.code, ERR_CONFLICT);
	job_set_str(&b->idempotency_key, "new-key");
	err_clear(&err);
	ck_assert_int_eq(store_job_insert(s, b, &err), 0);
	ck_assert_int_eq(store_commit(s, &err), 0);
	ck_assert_int_eq(count(s, -1), 2);

	/* The same id twice is a conflict too. */
	ck_assert_int_eq(store_job_insert(s, b, &err), -1);
	ck_assert_int_eq(err.code, ERR_CONFLICT);
	ck_assert_int_eq(count(s, -1), 2);
	job_free(a);
	job_free(b);
	store_close(s);
}
END_TEST

START_TEST(test_update_and_reread)
{
	struct store *s = open_ok();
	struct job *j = job_new(), *got;
	struct err err = {0};

	job_set_str(&j->function, "Create Image");
	job_set_str(&j->quality, "standard");
	insert_ok(s, j);

	job_set_status(j, JOB_PREPARING, 1000);
	j->attempt = 1;
	j->priority = 3;
	j->max_attempts = 4;
	job_set_str(&j->model_id, "m1");
	job_set_str(&j->runner_id, "r1");
	job_set_status(j, JOB_RUNNING, 2000);
	job_set_str(&j->remote_prompt_id, "prompt-1");
	job_set_str(&j->remote_url, "http://127.0.0.1:1234");
	j->progress = 100;
	job_set_str(&j->message, "Done");
	job_set_str(&j->error_code, "E");
	job_set_str(&j->error_message, "M");
	job_set_str(&j->error_suggestion, "S");
	job_set_str(&j->error_action, "A");
	job_set_str(&j->error_detail, "D");
	job_set_str(&j->outputs_json, "[\"x\"]");
	job_set_str(&j->tried_json, "[\"m0\", \"m1\"]");
	job_set_status(j, JOB_FAILED, 3000);
	ck_assert_int_eq(store_job_update(s, j, &err), 0);
	got = get_ok(s, j->id);
	assert_jobs_equal(j, got);
	job_free(got);

	/* Nullable fields can be cleared again. */
	job_set_str(&j->error_detail, NULL);
	job_set_str(&j->runner_id, NULL);
	ck_assert_int_eq(store_job_update(s, j, &err), 0);
	got = get_ok(s, j->id);
	ck_assert_ptr_null(got->error_detail);
	ck_assert_ptr_null(got->runner_id);
	job_free(got);

	/* Immutable fields are not written by update. */
	job_set_str(&j->function, "Other");
	job_set_str(&j->params_json, "{\"changed\": true}");
	ck_assert_int_eq(store_job_update(s, j, &err), 0);
	got = get_ok(s, j->id);
	ck_assert_str_eq(got->function, "Create Image");
	ck_assert_str_eq(got->params_json, "{}");
	job_free(got);
	job_free(j);
	store_close(s);
}
END_TEST

START_TEST(test_unknown_id_not_found)
{
	struct store *s = open_ok();
	struct job *j = job_new(), *got = (struct job *)1;
	struct err err = {0};

	ck_assert_int_eq(store_job_get(s, "0123456789abcdef0123456789abcdef",
				       &got, &err),
			 -1);
	ck_assert_int_eq(err.code, ERR_NOT_FOUND);
	ck_assert_ptr_nonnull(strstr(err.msg, "0123456789abcdef"));
	ck_assert_ptr_null(got);

	err_clear(&err);
	job_set_str(&j->function, "f");
	ck_assert_int_eq(store_job_update(s, j, &err), -1);
	ck_assert_int_eq(err.code, ERR_NOT_FOUND);
	ck_assert_int_eq(count(s, -1), 0);
	job_free(j);
	store_close(s);
}
END_TEST

/* Inserts a job created at `created` with the given status and priority. */
static struct job *add(struct store *s, int64_t created, int status,
		       int priority)
{
	struct job *j = job_new();

	job_set_str(&j->function, "f");
	job_set_str(&j->quality, "q");
	j->created_at = created;
	j->status = status;
	j->priority = priority;
	insert_ok(s, j);
	return j;
}

static void assert_ids(struct job **got, size_t n, struct job **want,
		       const int *idx, size_t nwant)
{
	ck_assert_uint_eq(n, nwant);
	for (size_t i = 0; i < n; i++)
		ck_assert_msg(strcmp(got[i]->id, want[idx[i]]->id) == 0,
			      "position %zu: want job %d", i, idx[i]);
}

START_TEST(test_list_newest_first)
{
	struct store *s = open_ok();
	struct job *j[8], **v;
	size_t n;
	struct err err = {0};
	/* Jobs 2 and 3 share created_at: seq breaks the tie. */
	static const int64_t created[8] = {100, 200, 300, 300, 400, 500, 600, 700};
	static const int status[8] = {JOB_COMPLETED, JOB_QUEUED, JOB_FAILED,
				      JOB_QUEUED, JOB_RUNNING, JOB_QUEUED,
				      JOB_COMPLETED, JOB_QUEUED};
	static const int all[] = {7, 6, 5, 4, 3, 2, 1, 0};
	static const int queued[] = {7, 5, 3, 1};

	for (int i = 0; i < 8; i++)
		j[i] = add(s, created[i], status[i], 0);

	ck_assert_int_eq(store_job_list(s, -1, 0, NULL, &v, &n, &err), 0);
	assert_ids(v, n, j, all, 8);
	store_jobs_free(v, n);
	ck_assert_int_eq(store_job_list(s, JOB_QUEUED, 0, NULL, &v, &n, &err), 0);
	assert_ids(v, n, j, queued, 4);
	store_jobs_free(v, n);

	/* Pages of 3, each starting after the last of the one before. */
	ck_assert_int_eq(store_job_list(s, -1, 3, NULL, &v, &n, &err), 0);
	assert_ids(v, n, j, all, 3);
	store_jobs_free(v, n);
	ck_assert_int_eq(store_job_list(s, -1, 3, j[5]->id, &v, &n, &err), 0);
	assert_ids(v, n, j, all + 3, 3);
	store_jobs_free(v, n);
	ck_assert_int_eq(store_job_list(s, -1, 3, j[2]->id, &v, &n, &err), 0);
	assert_ids(v, n, j, all + 6, 2);
	store_jobs_free(v, n);
	/* A page edge between the two jobs created at the same ms. */
	ck_assert_int_eq(store_job_list(s, -1, 1, j[3]->id, &v, &n, &err), 0);
	assert_ids(v, n, j, all + 5, 1);
	store_jobs_free(v, n);
	ck_assert_int_eq(store_job_list(s, -1, 3, j[0]->id, &v, &n, &err), 0);
	ck_assert_uint_eq(n, 0);
	ck_assert_ptr_null(v);
	ck_assert_int_eq(store_job_list(s, JOB_QUEUED, 2, j[5]->id, &v, &n, &err), 0);
	assert_ids(v, n, j, queued + 2, 2);
	store_jobs_free(v, n);

	ck_assert_int_eq(store_job_list(s, -1, 3, "nope", &v, &n, &err), -1);
	ck_assert_int_eq(err.code, ERR_INVALID);
	err_clear(&err);
	ck_assert_int_eq(store_job_list(s, 42, 3, NULL, &v, &n, &err), -1);
	ck_assert_int_eq(err.code, ERR_INVALID);

	ck_assert_int_eq(count(s, -1), 8);
	ck_assert_int_eq(count(s, JOB_QUEUED), 4);
	ck_assert_int_eq(count(s, JOB_COMPLETED), 2);
	ck_assert_int_eq(count(s, JOB_CANCELLED), 0);
	for (int i = 0; i < 8; i++)
		job_free(j[i]);
	store_close(s);
}
END_TEST

START_TEST(test_active_priority_then_seq)
{
	struct store *s = open_ok();
	struct job *j[7], **v;
	size_t n;
	struct err err = {0};
	static const int status[7] = {JOB_QUEUED, JOB_RUNNING, JOB_COMPLETED,
				      JOB_QUEUED, JOB_PREPARING, JOB_CANCELLED,
				      JOB_QUEUED};
	static const int prio[7] = {0, 5, 9, 5, 0, 9, 10};
	static const int want[] = {6, 1, 3, 0, 4};

	for (int i = 0; i < 7; i++)
		j[i] = add(s, 1000 + i, status[i], prio[i]);
	ck_assert_int_eq(store_job_active(s, &v, &n, &err), 0);
	assert_ids(v, n, j, want, 5);
	for (size_t i = 1; i < n; i++)
		ck_assert(v[i - 1]->priority > v[i]->priority ||
			  v[i - 1]->seq < v[i]->seq);
	store_jobs_free(v, n);
	for (int i = 0; i < 7; i++)
		job_free(j[i]);
	store_close(s);
}
END_TEST

START_TEST(test_persists_across_reopen)
{
	struct store *s = open_ok();
	struct job *a = full_job("k"), *b = job_new(), *got;
	struct err err = {0};

	job_set_str(&b->function, "f");
	job_set_str(&b->quality, "q");
	insert_ok(s, a);
	insert_ok(s, b);
	job_set_str(&a->message, "after update");
	a->progress = 80;
	ck_assert_int_eq(store_job_update(s, a, &err), 0);
	store_close(s);

	s = open_ok();
	got = get_ok(s, a->id);
	assert_jobs_equal(a, got);
	job_free(got);
	got = get_ok(s, b->id);
	assert_jobs_equal(b, got);
	job_free(got);
	ck_assert_int_eq(count(s, -1), 2);
	/* seq keeps growing after a reopen. */
	job_free(b);
	b = job_new();
	job_set_str(&b->function, "f");
	insert_ok(s, b);
	ck_assert_int_gt(b->seq, a->seq);
	job_free(a);
	job_free(b);
	store_close(s);
}
END_TEST

START_TEST(test_group_commit_1000)
{
	struct store *s = open_ok();
	struct err err = {0};
	char first[JOB_ID_LEN + 1] = "";

	ck_assert_int_eq(store_begin(s, &err), 0);
	ck_assert_int_eq(store_depth(s), 1);
	for (int i = 0; i < 1000; i++) {
		struct job *j = add(s, 1000 + i, JOB_QUEUED, 0);

		if (i == 0)
			memcpy(first, j->id, sizeof first);
		job_free(j);
	}
	ck_assert_int_eq(store_commit(s, &err), 0);
	ck_assert_int_eq(store_depth(s), 0);
	store_close(s);

	s = open_ok();
	ck_assert_int_eq(count(s, -1), 1000);
	job_free(get_ok(s, first));
	store_close(s);
}
END_TEST

START_TEST(test_nested_rollback)
{
	struct store *s = open_ok();
	struct err err = {0};
	struct job *a, *b, *c, *got = NULL;

	/* A rolled back batch leaves nothing. */
	ck_assert_int_eq(store_begin(s, &err), 0);
	a = add(s, 1, JOB_QUEUED, 0);
	ck_assert_int_eq(store_rollback(s, &err), 0);
	ck_assert_int_eq(count(s, -1), 0);

	/* An inner rollback undoes the inner level only. */
	ck_assert_int_eq(store_begin(s, &err), 0);
	b = add(s, 2, JOB_QUEUED, 0);
	ck_assert_int_eq(store_begin(s, &err), 0);
	ck_assert_int_eq(store_depth(s), 2);
	c = add(s, 3, JOB_QUEUED, 0);
	ck_assert_int_eq(store_rollback(s, &err), 0);
	ck_assert_int_eq(store_begin(s, &err), 0);
	job_set_str(&b->message, "inner commit");
	ck_assert_int_eq(store_job_update(s, b, &err), 0);
	ck_assert_int_eq(store_commit(s, &err), 0);
	ck_assert_int_eq(store_commit(s, &err), 0);
	ck_assert_int_eq(store_depth(s), 0);

	ck_assert_int_eq(count(s, -1), 1);
	got = get_ok(s, b->id);
	ck_assert_str_eq(got->message, "inner commit");
	job_free(got);
	ck_assert_int_eq(store_job_get(s, c->id, &got, &err), -1);

	err_clear(&err);
	ck_assert_int_eq(store_commit(s, &err), -1);
	ck_assert_int_eq(err.code, ERR_INTERNAL);
	job_free(a);
	job_free(b);
	job_free(c);
	store_close(s);
}
END_TEST

/*
 * In a child: n jobs, each committed on its own, then a batch left open,
 * then SIGKILL. Exits 2 on any store error so the parent can tell.
 */
static void crash_child(struct job **jobs, int n, struct job *uncommitted)
{
	struct err err = {0};
	struct store *s = store_open(db_path, &err);

	if (s == NULL)
		_exit(2);
	for (int i = 0; i < n; i++)
		if (store_job_insert(s, jobs[i], &err) < 0)
			_exit(2);
	if (store_begin(s, &err) < 0 ||
	    store_job_insert(s, uncommitted, &err) < 0)
		_exit(2);
	raise(SIGKILL);
	_exit(3);
}

START_TEST(test_crash_keeps_committed)
{
	enum { N = 200 };
	struct job *jobs[N], *lost = job_new(), *got;
	struct store *s;
	struct err err = {0};
	int status;
	pid_t pid;

	for (int i = 0; i < N; i++) {
		jobs[i] = job_new();
		job_set_str(&jobs[i]->function, "f");
	}
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0)
		crash_child(jobs, N, lost);
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
		      "child did not die by SIGKILL: status %d", status);

	s = open_ok();
	ck_assert_int_eq(count(s, -1), N);
	for (int i = 0; i < N; i++) {
		got = get_ok(s, jobs[i]->id);
		ck_assert_int_gt(got->seq, 0);
		job_free(got);
		job_free(jobs[i]);
	}
	ck_assert_int_eq(store_job_get(s, lost->id, &got, &err), -1);
	ck_assert_int_eq(err.code, ERR_NOT_FOUND);
	job_free(lost);
	store_close(s);
}
END_TEST

/* The scheduler's pattern: insert, then three updates, batches of 100. */
START_TEST(test_batched_lifecycle_10k)
{
	enum { JOBS = 10000, BATCH = 100 };
	struct store *s = open_ok();
	struct err err = {0};
	struct job *j = job_new();

	job_set_str(&j->function, "f");
	for (int b = 0; b < JOBS / BATCH; b++) {
		ck_assert_int_eq(store_begin(s, &err), 0);
		for (int i = 0; i < BATCH; i++) {
			util_uuid4_hex(j->id);
			j->status = JOB_QUEUED;
			ck_assert_int_eq(store_job_insert(s, j, &err), 0);
			job_set_status(j, JOB_PREPARING, 1);
			ck_assert_int_eq(store_job_update(s, j, &err), 0);
			job_set_status(j, JOB_RUNNING, 2);
			ck_assert_int_eq(store_job_update(s, j, &err), 0);
			job_set_status(j, JOB_COMPLETED, 3);
			ck_assert_int_eq(store_job_update(s, j, &err), 0);
		}
		ck_assert_msg(store_commit(s, &err) == 0, "%s", err.msg);
	}
	ck_assert_int_eq(count(s, JOB_COMPLETED), JOBS);
	job_free(j);
	store_close(s);
}
END_TEST

START_TEST(test_runner_table)
{
	struct store *s = open_ok();
	struct store_runner *v;
	size_t n;
	struct err err = {0};

	ck_assert_int_eq(store_runner_list(s, &v, &n, &err), 0);
	ck_assert_uint_eq(n, 0);
	ck_assert_int_eq(store_runner_put(s, "r2", "m2", 0, 0, "c0ffee", 20, &err), 0);
	ck_assert_int_eq(store_runner_put(s, "r1", "m1", 4242, 9001, NULL, 10, &err), 0);
	ck_assert_int_eq(store_runner_list(s, &v, &n, &err), 0);
	ck_assert_uint_eq(n, 2);
	ck_assert_str_eq(v[0].id, "r1");
	ck_assert_str_eq(v[0].model_id, "m1");
	ck_assert_int_eq(v[0].pid, 4242);
	ck_assert_int_eq(v[0].port, 9001);
	ck_assert_ptr_null(v[0].container_id);
	ck_assert_int_eq(v[0].started_at, 10);
	ck_assert_str_eq(v[1].container_id, "c0ffee");
	store_runners_free(v, n);

	/* put replaces; delete forgets; deleting twice is fine. */
	ck_assert_int_eq(store_runner_put(s, "r1", "m1", 4343, 9002, NULL, 30, &err), 0);
	ck_assert_int_eq(store_runner_delete(s, "r2", &err), 0);
	ck_assert_int_eq(store_runner_delete(s, "r2", &err), 0);
	store_close(s);

	s = open_ok();
	ck_assert_int_eq(store_runner_list(s, &v, &n, &err), 0);
	ck_assert_uint_eq(n, 1);
	ck_assert_int_eq(v[0].pid, 4343);
	ck_assert_int_eq(v[0].port, 9002);
	store_runners_free(v, n);
	store_close(s);
}
END_TEST

static void assert_open_fails_code(const char *path, const char *why, int code)
{
	struct err err = {0};

	ck_assert_ptr_null(store_open(path, &err));
	ck_assert_int_eq(err.code, code);
	ck_assert_msg(strstr(err.msg, path) != NULL, "no path in: %s", err.msg);
	ck_assert_msg(strstr(err.msg, why) != NULL, "want '%s' in: %s", why,
		      err.msg);
}

static void assert_open_fails(const char *path, const char *why)
{
	assert_open_fails_code(path, why, ERR_IO);
}

START_TEST(test_open_bad_directory)
{
	char path[600];

	snprintf(path, sizeof path, "%s/missing/dir/jobs.db", tu_tmpdir());
	assert_open_fails(path, "No such file or directory");

	/* A regular file where the directory should be. */
	snprintf(path, sizeof path, "%s/file", tu_tmpdir());
	ck_assert_int_eq(tu_write_file(path, "x", 1), 0);
	snprintf(path, sizeof path, "%s/file/jobs.db", tu_tmpdir());
	assert_open_fails(path, "Not a directory");

	/* Permissions do not stop root, so only other users test them. */
	if (geteuid() != 0) {
		snprintf(path, sizeof path, "%s/ro", tu_tmpdir());
		ck_assert_int_eq(mkdir(path, 0500), 0);
		snprintf(path, sizeof path, "%s/ro/jobs.db", tu_tmpdir());
		assert_open_fails(path, "Permission denied");
	}

	/* A file that is not a database. */
	{
		static const char junk[] = "not sqlite at all, and long enough "
					   "to be read as a header: 0123456789";

		ck_assert_int_eq(tu_write_file(db_path, junk, sizeof junk - 1), 0);
	}
	/* Refused as damaged, with what to do. */
	assert_open_fails_code(db_path, "damaged (file is not a database)", ERR_STORE);
}
END_TEST

START_TEST(test_newer_schema_refused)
{
	struct store *s = open_ok();
	sqlite3 *db;

	store_close(s);
	ck_assert_int_eq(sqlite3_open(db_path, &db), SQLITE_OK);
	ck_assert_int_eq(sqlite3_exec(db, "PRAGMA user_version = 99", NULL,
				      NULL, NULL),
			 SQLITE_OK);
	sqlite3_close(db);
	assert_open_fails(db_path, "newer");
}
END_TEST

START_TEST(test_one_process_owns_the_file)
{
	struct store *s = open_ok(), *again;
	struct err err = {0};

	/* A second opener (another fnrun on the same data directory) is refused, clearly. */
	again = store_open(db_path, &err);
	ck_assert_ptr_null(again);
	ck_assert_int_eq(err.code, ERR_IO);
	ck_assert_msg(strstr(err.msg, "in use by another process") != NULL, "%s", err.msg);
	store_close(s);
	/* Once the owner closed it, it opens. */
	store_close(open_ok());
}
END_TEST

/* Bytes in the store's write-ahead log now. */
static long long wal_size(void)
{
	char path[600];
	struct stat st;

	snprintf(path, sizeof path, "%s-wal", db_path);
	return stat(path, &st) == 0 ? (long long)st.st_size : -1;
}

START_TEST(test_probe_writes_new_bytes)
{
	struct store *s = open_ok();
	struct err err = {0};
	long long a, b, c;

	/* Each probe is a real write (a no-op would succeed on a full disk): the log grows. */
	a = wal_size();
	ck_assert_int_eq(store_probe(s, &err), 0);
	b = wal_size();
	ck_assert_int_eq(store_probe(s, &err), 0);
	c = wal_size();
	ck_assert_msg(b > a && c > b, "the log did not grow: %lld, %lld, %lld", a, b, c);
	store_close(s);
}
END_TEST

START_TEST(test_schema_and_pragmas)
{
	struct store *s = open_ok();
	sqlite3 *db;
	sqlite3_stmt *st;

	store_close(s);
	/* Reopening an up-to-date file migrates nothing and works. */
	store_close(open_ok());
	ck_assert_int_eq(sqlite3_open(db_path, &db), SQLITE_OK);
	ck_assert_int_eq(sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st,
					    NULL),
			 SQLITE_OK);
	ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
	ck_assert_int_eq(sqlite3_column_int(st, 0), store_schema_version());
	sqlite3_finalize(st);
	/* WAL is a property of the file, so a plain connection sees it. */
	ck_assert_int_eq(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &st,
					    NULL),
			 SQLITE_OK);
	ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
	ck_assert_str_eq((const char *)sqlite3_column_text(st, 0), "wal");
	sqlite3_finalize(st);
	sqlite3_close(db);
}
END_TEST

/* A store that held jobs and is then deleted or emptied is refused, not made anew. */
START_TEST(test_missing_or_empty_store_refused)
{
	char marker[600];
	struct err err = {0};
	struct store *s = open_ok();
	struct job *j = full_job("m-1");

	ck_assert_int_eq(store_job_insert(s, j, &err), 0);
	job_free(j);
	store_close(s);
	snprintf(marker, sizeof marker, "%s.marker", db_path);
	ck_assert_int_eq(access(marker, F_OK), 0);

	ck_assert_int_eq(truncate(db_path, 0), 0);
	ck_assert_ptr_null(store_open(db_path, &err));
	ck_assert_int_eq(err.code, ERR_STORE);
	ck_assert_msg(strstr(err.msg, "is empty (0 bytes), but it held jobs") &&
			      strstr(err.msg, "restore it from a backup") && strstr(err.msg, marker),
		      "%s", err.msg);
	ck_assert_int_eq(unlink(db_path), 0);
	err_clear(&err);
	ck_assert_ptr_null(store_open(db_path, &err));
	ck_assert_msg(strstr(err.msg, "is missing, but it held jobs"), "%s", err.msg);
	ck_assert_int_eq(access(db_path, F_OK), -1); /* nothing created */
	/* Deleting the marker too is how to start empty on purpose. */
	ck_assert_int_eq(unlink(marker), 0);
	s = open_ok();
	store_close(s);
}
END_TEST

/* One damaged page: refused at open with what to do, never served. */
START_TEST(test_damaged_store_refused)
{
	struct err err = {0};
	struct store *s = open_ok();
	char junk[4096];
	int fd;

	for (int i = 0; i < 300; i++) {
		char key[32];
		struct job *j = full_job(NULL);

		snprintf(key, sizeof key, "k-%d", i);
		job_set_str(&j->idempotency_key, key);
		ck_assert_int_eq(store_job_insert(s, j, &err), 0);
		job_free(j);
	}
	store_close(s); /* checkpoints: the pages are in the main file */
	memset(junk, 0x5a, sizeof junk);
	fd = open(db_path, O_WRONLY);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(pwrite(fd, junk, sizeof junk, 3 * 4096), (ssize_t)sizeof junk);
	close(fd);
	ck_assert_ptr_null(store_open(db_path, &err));
	ck_assert_int_eq(err.code, ERR_STORE);
	ck_assert_msg(strstr(err.msg, "is damaged (") && strstr(err.msg, "restore it from a backup"),
		      "%s", err.msg);
}
END_TEST

static void meta_row(const char *key, const char *value, void *ud)
{
	char *out = ud;
	size_t at = strlen(out);

	snprintf(out + at, 256 - at, "%s=%s;", key, value);
}

/* Meta rows: put replaces, list by prefix in key order, delete forgets. */
START_TEST(test_meta_rows)
{
	struct store *s = open_ok();
	struct err err = {0};
	char seen[256] = "";

	ck_assert_int_eq(store_meta_put(s, "weight/b", "10", &err), 0);
	ck_assert_int_eq(store_meta_put(s, "weight/a", "5", &err), 0);
	ck_assert_int_eq(store_meta_put(s, "hold/a", "stop", &err), 0);
	ck_assert_int_eq(store_meta_put(s, "weight/a", "7", &err), 0);
	ck_assert_int_eq(store_meta_delete(s, "weight/b", &err), 0);
	ck_assert_int_eq(store_meta_put(s, "weight/c", "1", &err), 0);
	store_close(s);
	s = open_ok();
	ck_assert_int_eq(store_meta_list(s, "weight/", meta_row, seen, &err), 0);
	ck_assert_str_eq(seen, "weight/a=7;weight/c=1;");
	ck_assert_int_eq(store_probe(s, &err), 0);
	store_close(s);
}
END_TEST

/* A conflicting insert inside a batch is refused alone: the batch commits the rest. */
START_TEST(test_conflict_inside_a_batch)
{
	struct store *s = open_ok();
	struct job *a = full_job("same"), *b = full_job("same"), *c = job_new();
	struct err err = {0};

	ck_assert_int_eq(store_begin(s, &err), 0);
	insert_ok(s, a);
	ck_assert_int_eq(store_job_insert(s, b, &err), -1);
	ck_assert_int_eq(err.code, ERR_CONFLICT);
	ck_assert_msg(strstr(err.msg, a->id) != NULL, "%s", err.msg);
	err_clear(&err);
	ck_assert_int_eq(store_job_insert(s, a, &err), -1); /* the same id */
	ck_assert_int_eq(err.code, ERR_CONFLICT);
	err_clear(&err);
	job_set_str(&c->function, "f");
	insert_ok(s, c);
	ck_assert_msg(store_commit(s, &err) == 0, "commit: %s", err.msg);
	ck_assert_int_eq(count(s, -1), 2);
	job_free(a);
	job_free(b);
	job_free(c);
	store_close(s);
}
END_TEST

/* GPU time per key and model since a moment, from finished jobs. */
static void usage_row(const char *owner, const char *model, int64_t ms, void *ud)
{
	char *out = ud;
	size_t at = strlen(out);

	snprintf(out + at, 256 - at, "%s/%s=%lld;", owner, model, (long long)ms);
}

START_TEST(test_key_usage_since)
{
	struct store *s = open_ok();
	struct err err = {0};
	char seen[256] = "";

	for (int i = 0; i < 3; i++) {
		struct job *j = job_new();
		job_set_str(&j->function, "f");
		job_set_str(&j->owner, "k1");
		job_set_str(&j->model_id, "m");
		j->started_at = 1000 + i;
		j->finished_at = i == 2 ? 500 : 1100 + i; /* the last finished too early */
		insert_ok(s, j);
		job_free(j);
	}
	ck_assert_int_eq(store_key_usage_since(s, 900, usage_row, seen, &err), 0);
	ck_assert_str_eq(seen, "k1/m=200;");
	store_close(s);
}
END_TEST

/* PostgreSQL restarted under an open store: calls fail, then work again after a reset. */
static struct pgtest own;

static void own_up(void)
{
	log_init(LOG_WARN, NULL);
	pg_start(&own);
	pg_test_db(&own, db_path, sizeof db_path);
}

static void own_down(void)
{
	pg_stop(&own);
}

START_TEST(test_pg_reconnects_after_a_restart)
{
	struct store *s = open_ok();
	struct job *a = job_new(), *b = job_new(), *got;
	struct err err = {0};
	int64_t deadline;

	job_set_str(&a->function, "f");
	job_set_str(&b->function, "f");
	insert_ok(s, a);
	pg_restart(&own);
	/* The first call learns the session is gone; the next one (a second on) resets it. */
	deadline = tu_now_ms() + 15000;
	while (store_probe(s, &err) < 0) {
		ck_assert_msg(tu_now_ms() < deadline, "no reconnect: %s", err.msg);
		ck_assert_int_eq(err.code, ERR_IO);
		err_clear(&err);
		usleep(50000); /* the store resets at most once a second */
	}
	insert_ok(s, b);
	got = get_ok(s, a->id);
	ck_assert_int_eq(got->seq, a->seq);
	job_free(got);
	ck_assert_int_eq(count(s, -1), 2);
	job_free(a);
	job_free(b);
	store_close(s);
}
END_TEST

/* ---- several nodes on one PostgreSQL store ---- */

static struct store *node_open(const char *name, int64_t lease_ms)
{
	struct store *s = open_ok();

	ck_assert_int_eq(store_shared(s), 1);
	store_set_node(s, name, lease_ms);
	return s;
}

static struct job *unclaimed(struct store *s, int priority)
{
	struct job *j = job_new();

	job_set_str(&j->function, "Create Image");
	job_set_str(&j->quality, "standard");
	j->priority = priority;
	j->lease_gen = STORE_UNCLAIMED;
	insert_ok(s, j);
	ck_assert_int_eq(j->lease_gen, 0);
	return j;
}

static size_t claim_ok(struct store *s, int n, struct job ***out)
{
	struct err err = {0};
	size_t got = 0;

	ck_assert_msg(store_job_claim(s, "Create Image", "standard", n, out, &got, &err) == 0,
		      "claim: %s", err.msg);
	return got;
}

START_TEST(test_claims_split_the_queue_by_priority)
{
	struct store *a = node_open("a", 10000), *b = node_open("b", 10000);
	struct job **va, **vb, **mine;
	size_t na, nb, nmine;
	struct err err = {0};
	char seen[8][JOB_ID_LEN + 1];

	for (int i = 0; i < 8; i++) {
		struct job *j = unclaimed(a, i == 5 ? 9 : 0);
		memcpy(seen[i], j->id, sizeof seen[i]);
		job_free(j);
	}
	na = claim_ok(a, 3, &va);
	ck_assert_uint_eq(na, 3);
	nb = claim_ok(b, 100, &vb);
	ck_assert_uint_eq(nb, 5);
	/* The high-priority job went to the first claim; no job went twice. */
	ck_assert_msg(strcmp(va[0]->id, seen[5]) == 0 || strcmp(va[1]->id, seen[5]) == 0 ||
			      strcmp(va[2]->id, seen[5]) == 0, "priority job not claimed first");
	for (size_t i = 0; i < na; i++)
		for (size_t k = 0; k < nb; k++)
			ck_assert_str_ne(va[i]->id, vb[k]->id);
	ck_assert_int_eq(va[0]->lease_gen, 1);
	ck_assert_uint_eq(claim_ok(b, 10, &mine), 0);
	store_jobs_free(mine, 0);
	/* Each node restores only what it holds. */
	ck_assert_int_eq(store_job_active(a, &mine, &nmine, &err), 0);
	ck_assert_uint_eq(nmine, 3);
	ck_assert_int_eq(mine[0]->lease_gen, 1);
	store_jobs_free(mine, nmine);
	/* A node updates what it holds, not another's. */
	job_set_status(va[0], JOB_PREPARING, 5);
	ck_assert_msg(store_job_update(a, va[0], &err) == 0, "%s", err.msg);
	ck_assert_int_eq(store_job_update(b, va[1], &err), -1);
	ck_assert_int_eq(err.code, ERR_CONFLICT);
	store_jobs_free(va, na);
	store_jobs_free(vb, nb);
	store_close(a);
	store_close(b);
}
END_TEST

START_TEST(test_a_lapsed_lease_moves_the_job_and_fences_the_old_node)
{
	struct store *a = node_open("a", 200), *b = node_open("b", 10000);
	struct job *j, **va, **vb;
	struct err err = {0};
	int64_t n = 0, deadline = tu_now_ms() + 10000;

	j = unclaimed(a, 0);
	ck_assert_uint_eq(claim_ok(a, 1, &va), 1);
	job_set_status(va[0], JOB_PREPARING, 1);
	ck_assert_int_eq(store_job_update(a, va[0], &err), 0);
	/* a stops renewing (it died): b's sweep hands the job back, one attempt spent. */
	while (n == 0) {
		ck_assert_int_eq(store_lease_sweep(b, &n, &err), 0);
		ck_assert_msg(tu_now_ms() < deadline, "the lease never lapsed");
		usleep(20000); /* the lease is on the database's clock */
	}
	ck_assert_int_eq(n, 1);
	ck_assert_uint_eq(claim_ok(b, 1, &vb), 1);
	ck_assert_str_eq(vb[0]->id, j->id);
	ck_assert_int_eq(vb[0]->status, JOB_QUEUED);
	ck_assert_int_eq(vb[0]->attempt, 1);
	ck_assert_int_eq(vb[0]->lease_gen, 3); /* claimed, swept, claimed */
	/* a comes back and tries to go on with it: refused. */
	job_set_status(va[0], JOB_RUNNING, 2);
	ck_assert_int_eq(store_job_update(a, va[0], &err), -1);
	ck_assert_int_eq(err.code, ERR_CONFLICT);
	err_clear(&err);
	job_set_status(vb[0], JOB_PREPARING, 3);
	ck_assert_msg(store_job_update(b, vb[0], &err) == 0, "%s", err.msg);
	job_free(j);
	store_jobs_free(va, 1);
	store_jobs_free(vb, 1);
	store_close(a);
	store_close(b);
}
END_TEST

START_TEST(test_a_renewed_lease_holds)
{
	struct store *a = node_open("a", 300), *b = node_open("b", 10000);
	struct job *j, **va;
	struct err err = {0};
	int64_t n = 0, until = tu_now_ms() + 1200;

	j = unclaimed(a, 0);
	ck_assert_uint_eq(claim_ok(a, 1, &va), 1);
	while (tu_now_ms() < until) {
		ck_assert_int_eq(store_lease_renew(a, &err), 0);
		ck_assert_int_eq(store_lease_sweep(b, &n, &err), 0);
		ck_assert_int_eq(n, 0);
		usleep(50000); /* a node renews on a timer; this is that timer */
	}
	job_free(j);
	store_jobs_free(va, 1);
	store_close(a);
	store_close(b);
}
END_TEST

static void note_seen(const char *payload, void *ud)
{
	char *out = ud;
	size_t at = strlen(out);

	snprintf(out + at, 256 - at, "%s;", payload);
}

START_TEST(test_cancels_and_notes_between_nodes)
{
	struct store *a = node_open("a", 10000), *b = node_open("b", 10000);
	struct job *free_job = unclaimed(a, 0), *held, **va, *got;
	struct err err = {0};
	char seen[256] = "";
	int state = -1;
	int64_t deadline = tu_now_ms() + 10000;

	held = unclaimed(a, 0);
	ck_assert_int_eq(store_job_cancel_remote(b, free_job->id, &state, &err), 0);
	ck_assert_int_eq(state, 1);
	got = get_ok(a, free_job->id);
	ck_assert_int_eq(got->status, JOB_CANCELLED);
	job_free(got);
	ck_assert_uint_eq(claim_ok(a, 1, &va), 1);
	ck_assert_int_eq(store_job_cancel_remote(b, held->id, &state, &err), 0);
	ck_assert_int_eq(state, 2);
	ck_assert_int_eq(store_job_cancel_remote(b, "nope", &state, &err), 0);
	ck_assert_int_eq(state, 0);
	/* A note reaches the other node (and, in PostgreSQL, the sender too). */
	ck_assert_int_ge(store_listen_fd(b), 0);
	ck_assert_int_eq(store_notify(b, "cancel x", &err), 0);
	while (strstr(seen, "cancel x") == NULL) {
		ck_assert_int_eq(store_notes(a, note_seen, seen, &err), 0);
		ck_assert_msg(tu_now_ms() < deadline, "no note: %s", seen);
		usleep(10000);
	}
	job_free(free_job);
	job_free(held);
	store_jobs_free(va, 1);
	store_close(a);
	store_close(b);
}
END_TEST

/* Cases that hold for both backends. */
static void add_common(TCase *tc)
{
	tcase_add_test(tc, test_roundtrip_every_field);
	tcase_add_test(tc, test_idempotency_conflict);
	tcase_add_test(tc, test_update_and_reread);
	tcase_add_test(tc, test_unknown_id_not_found);
	tcase_add_test(tc, test_list_newest_first);
	tcase_add_test(tc, test_active_priority_then_seq);
	tcase_add_test(tc, test_persists_across_reopen);
	tcase_add_test(tc, test_group_commit_1000);
	tcase_add_test(tc, test_nested_rollback);
	tcase_add_test(tc, test_crash_keeps_committed);
	tcase_add_test(tc, test_batched_lifecycle_10k);
	tcase_add_test(tc, test_runner_table);
	tcase_add_test(tc, test_meta_rows);
	tcase_add_test(tc, test_conflict_inside_a_batch);
	tcase_add_test(tc, test_key_usage_since);
}

Suite *suite_store(void)
{
	Suite *s = suite_create("store");
	TCase *job = tcase_create("job");
	TCase *db = tcase_create("db");
	TCase *pg = tcase_create("pg");
	TCase *pgown = tcase_create("pg-restart");
	TCase *nodes = tcase_create("pg-nodes");

	tcase_add_checked_fixture(job, quiet, NULL);
	tcase_add_test(job, test_job_new_defaults);
	tcase_add_test(job, test_job_set_status_stamps);
	tcase_add_test(job, test_transition_table);
	suite_add_tcase(s, job);

	tcase_add_checked_fixture(db, setup, teardown);
	tcase_set_timeout(db, 30);
	add_common(db);
	tcase_add_test(db, test_open_bad_directory);
	tcase_add_test(db, test_missing_or_empty_store_refused);
	tcase_add_test(db, test_damaged_store_refused);
	tcase_add_test(db, test_newer_schema_refused);
	tcase_add_test(db, test_schema_and_pragmas);
	tcase_add_test(db, test_one_process_owns_the_file);
	tcase_add_test(db, test_probe_writes_new_bytes);
	suite_add_tcase(s, db);

	tcase_add_unchecked_fixture(pg, pg_up, pg_down);
	tcase_add_checked_fixture(pg, setup_pg, NULL);
	tcase_set_timeout(pg, 60);
	add_common(pg);
	suite_add_tcase(s, pg);

	tcase_add_unchecked_fixture(nodes, pg_up, pg_down);
	tcase_add_checked_fixture(nodes, setup_pg, NULL);
	tcase_set_timeout(nodes, 60);
	tcase_add_test(nodes, test_claims_split_the_queue_by_priority);
	tcase_add_test(nodes, test_a_lapsed_lease_moves_the_job_and_fences_the_old_node);
	tcase_add_test(nodes, test_a_renewed_lease_holds);
	tcase_add_test(nodes, test_cancels_and_notes_between_nodes);
	suite_add_tcase(s, nodes);

	tcase_add_checked_fixture(pgown, own_up, own_down);
	tcase_set_timeout(pgown, 60);
	tcase_add_test(pgown, test_pg_reconnects_after_a_restart);
	suite_add_tcase(s, pgown);
	return s;
}
