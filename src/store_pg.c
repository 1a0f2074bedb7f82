/*
 * store_pg.c - the job store on PostgreSQL (libpq), behind store.h: what
 * several nodes share (docs/design.md §8). `server.store:
 * postgres://...` or $FNRUN_STORE_URL selects it; store.c picks it by the
 * URL's scheme.
 *
 * The same tables as the SQLite store (store_sqlite.c), in PostgreSQL's
 * types: jobs (seq an identity column: the queue order), runners (scoped
 * to this machine's node name, so that one node's orphan cleanup never
 * touches another's processes), meta. The schema's version is the one row
 * of fnrun_schema; store_open() migrates under an advisory lock, so nodes
 * that start at once do not both create the tables.
 *
 * Invariants:
 * 1. One connection, used from the loop thread only, synchronously: each
 *    call is one round trip (a local socket: tens of microseconds), and
 *    the scheduler pays one BEGIN ... COMMIT per loop turn for all it
 *    wrote (store.h). Statements are prepared once per session.
 * 2. base.depth counts store_begin() calls not yet matched: 0 is
 *    autocommit, 1 a BEGIN, each level above a SAVEPOINT "nest".
 * 3. A failed statement aborts PostgreSQL's transaction (unlike SQLite's):
 *    nothing expected to fail inside a batch may raise an error. So an
 *    insert is ON CONFLICT DO NOTHING (a conflict is learned from the
 *    missing row), and an update of an unknown id changes no row.
 * 4. A lost connection is reset at the next call outside a transaction,
 *    at most once a second (the scheduler's store probe drives this after
 *    a failed commit), and the statements are prepared again.
 * 5. Values travel as parameters in text format; SQL text is constant.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "store.h"
#include "store_internal.h"
#include "store_pg_internal.h"
#include "util.h"

#define PG_SCHEMA_VERSION 1
#define PG_RESET_EVERY_MS 1000
#define PG_MIGRATE_LOCK 0x666e72756e /* advisory lock key: "fnrun" */

static const char schema_v1[] =
	"CREATE TABLE jobs ("
	" seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
	" id text NOT NULL UNIQUE,"
	" function text NOT NULL,"
	" quality text NOT NULL,"
	" params_json text NOT NULL,"
	" idempotency_key text UNIQUE,"
	" created_at bigint NOT NULL,"
	" owner text,"
	" route_key text,"
	" status text NOT NULL CHECK (status IN ('queued', 'preparing',"
	"  'running', 'completed', 'failed', 'cancelled')),"
	" priority integer NOT NULL,"
	" attempt integer NOT NULL,"
	" max_attempts integer NOT NULL,"
	" model_id text,"
	" model_version text,"
	" runner_id text,"
	" remote_prompt_id text,"
	" remote_url text,"
	" progress integer NOT NULL,"
	" message text NOT NULL,"
	" error_code text,"
	" error_message text,"
	" error_suggestion text,"
	" error_action text,"
	" error_detail text,"
	" outputs_json text NOT NULL,"
	" tried_json text NOT NULL,"
	" started_at bigint NOT NULL,"
	" finished_at bigint NOT NULL,"
	" updated_at bigint NOT NULL,"
	/* Several nodes: who holds the job, until when, under which claim. */
	" node text,"
	" lease_until bigint NOT NULL DEFAULT 0,"
	" lease_gen bigint NOT NULL DEFAULT 0,"
	" cancel_requested boolean NOT NULL DEFAULT false);"
	"CREATE INDEX jobs_created ON jobs (created_at, seq);"
	"CREATE INDEX jobs_status_created ON jobs (status, created_at, seq);"
	"CREATE INDEX jobs_owner_created ON jobs (owner, created_at, seq);"
	"CREATE INDEX jobs_unclaimed ON jobs (function, quality, priority DESC, seq)"
	" WHERE node IS NULL AND status = 'queued';"
	"CREATE INDEX jobs_held ON jobs (node, lease_until)"
	" WHERE status IN ('queued', 'preparing', 'running');"
	"CREATE TABLE runners ("
	" node text NOT NULL,"
	" id text NOT NULL,"
	" model_id text NOT NULL,"
	" pid integer NOT NULL,"
	" port integer NOT NULL,"
	" container_id text,"
	" started_at bigint NOT NULL,"
	" PRIMARY KEY (node, id));"
	"CREATE TABLE meta (key text PRIMARY KEY, value text NOT NULL);";

/* Entry i brings the database from version i to i + 1. */
static const char *const migrations[PG_SCHEMA_VERSION] = {schema_v1};

enum stmt {
	ST_JOB_INSERT,
	ST_JOB_UPDATE,
	ST_JOB_GET,
	ST_JOB_BY_IDEM,
	ST_JOB_CURSOR,
	ST_JOB_LIST,
	ST_JOB_LIST_STATUS,
	ST_JOB_LIST_OWNER,
	ST_JOB_LIST_OWNER_STATUS,
	ST_JOB_ACTIVE,
	ST_JOB_COUNT,
	ST_JOB_COUNT_STATUS,
	ST_RUNNER_PUT,
	ST_RUNNER_DELETE,
	ST_RUNNER_LIST,
	ST_META_PUT,
	ST_META_DELETE,
	ST_META_LIST,
	ST_KEY_USAGE,
	ST_COUNT
};

#define LIST_ORDER " ORDER BY created_at DESC, seq DESC LIMIT $3"

static const char *const stmt_sql[ST_COUNT] = {
	[ST_JOB_INSERT] =
		"INSERT INTO jobs (id, function, params_json,"
		" idempotency_key, created_at, owner, route_key, quality, status, priority,"
		" attempt, max_attempts, model_id, model_version, runner_id, remote_prompt_id,"
		" remote_url, progress, message, error_code, error_message,"
		" error_suggestion, error_action, error_detail, outputs_json,"
		" tried_json, started_at, finished_at, updated_at, node, lease_gen, lease_until)"
		" VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15,"
		" $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26, $27, $28, $29,"
		" $30, CASE WHEN $30::text IS NULL THEN 0 ELSE 1 END, " PG_NOW_MS " + $31)"
		" ON CONFLICT DO NOTHING RETURNING seq, lease_gen",
	[ST_JOB_UPDATE] =
		"UPDATE jobs SET quality = $1, status = $2, priority = $3, attempt = $4,"
		" max_attempts = $5, model_id = $6, model_version = $7, runner_id = $8,"
		" remote_prompt_id = $9, remote_url = $10, progress = $11, message = $12,"
		" error_code = $13, error_message = $14, error_suggestion = $15,"
		" error_action = $16, error_detail = $17, outputs_json = $18, tried_json = $19,"
		" started_at = $20, finished_at = $21, updated_at = $22"
		" WHERE id = $23 AND node = $24 AND lease_gen = $25",
	[ST_JOB_GET] = "SELECT " STORE__JOB_COLS " FROM jobs WHERE id = $1",
	[ST_JOB_BY_IDEM] = "SELECT " STORE__JOB_COLS " FROM jobs WHERE idempotency_key = $1",
	[ST_JOB_CURSOR] = "SELECT created_at, seq FROM jobs WHERE id = $1",
	[ST_JOB_LIST] = "SELECT " STORE__JOB_COLS " FROM jobs"
			" WHERE (created_at, seq) < ($1, $2)" LIST_ORDER,
	[ST_JOB_LIST_STATUS] = "SELECT " STORE__JOB_COLS " FROM jobs"
			       " WHERE status = $4 AND (created_at, seq) < ($1, $2)" LIST_ORDER,
	[ST_JOB_LIST_OWNER] = "SELECT " STORE__JOB_COLS " FROM jobs"
			      " WHERE owner = $4 AND (created_at, seq) < ($1, $2)" LIST_ORDER,
	[ST_JOB_LIST_OWNER_STATUS] = "SELECT " STORE__JOB_COLS " FROM jobs"
				     " WHERE owner = $4 AND status = $5"
				     " AND (created_at, seq) < ($1, $2)" LIST_ORDER,
	/* A node restores the live jobs it holds (the others are other nodes' or unclaimed). */
	[ST_JOB_ACTIVE] = "SELECT " STORE__JOB_COLS ", lease_gen, cancel_requested FROM jobs"
			  " WHERE node = $1 AND status IN ('queued', 'preparing', 'running')"
			  " ORDER BY priority DESC, seq",
	[ST_JOB_COUNT] = "SELECT count(*) FROM jobs",
	[ST_JOB_COUNT_STATUS] = "SELECT count(*) FROM jobs WHERE status = $1",
	[ST_RUNNER_PUT] = "INSERT INTO runners (node, id, model_id, pid, port, container_id,"
			  " started_at) VALUES ($1, $2, $3, $4, $5, $6, $7)"
			  " ON CONFLICT (node, id) DO UPDATE SET model_id = EXCLUDED.model_id,"
			  " pid = EXCLUDED.pid, port = EXCLUDED.port,"
			  " container_id = EXCLUDED.container_id, started_at = EXCLUDED.started_at",
	[ST_RUNNER_DELETE] = "DELETE FROM runners WHERE node = $1 AND id = $2",
	[ST_RUNNER_LIST] = "SELECT id, model_id, pid, port, container_id, started_at"
			   " FROM runners WHERE node = $1 ORDER BY started_at, id",
	[ST_META_PUT] = "INSERT INTO meta (key, value) VALUES ($1, $2)"
			" ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
	[ST_META_DELETE] = "DELETE FROM meta WHERE key = $1",
	[ST_META_LIST] = "SELECT key, value FROM meta WHERE starts_with(key, $1)"
			 " ORDER BY key COLLATE \"C\"",
	[ST_KEY_USAGE] = "SELECT owner, model_id, sum(finished_at - started_at) FROM jobs"
			 " WHERE owner IS NOT NULL AND model_id IS NOT NULL"
			 " AND finished_at >= $1 AND started_at > 0"
			 " GROUP BY owner, model_id",
};

static struct store_pg *pg(struct store *s)
{
	return store__pg(s);
}

int store__pg_fail(struct store_pg *s, const PGresult *r, const char *what, struct err *err)
{
	const char *msg = r ? PQresultErrorMessage(r) : NULL;
	char text[200];

	if (msg == NULL || *msg == '\0')
		msg = PQerrorMessage(s->conn);
	snprintf(text, sizeof text, "%s", msg && *msg ? msg : "no answer");
	text[strcspn(text, "\n")] = '\0';
	err_set(err, ERR_IO, "job store %s: %s: %s", s->where, what, text);
	return -1;
}

/* The URL with any password replaced, for logs and errors. */
static char *redact(const char *url)
{
	const char *at = strchr(url, '@'), *scheme = strstr(url, "://");
	const char *colon;

	if (at == NULL || scheme == NULL)
		return xstrdup(url);
	colon = memchr(scheme + 3, ':', (size_t)(at - (scheme + 3)));
	if (colon == NULL)
		return xstrdup(url);
	return xasprintf("%.*s:***%s", (int)(colon - url), url, at);
}

int store__pg_exec(struct store_pg *s, const char *sql, const char *what, struct err *err)
{
	PGresult *r = PQexec(s->conn, sql);
	int ok = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK;

	if (!ok)
		store__pg_fail(s, r, what, err);
	PQclear(r);
	return ok ? 0 : -1;
}

int store__pg_prepare(struct store_pg *s, const char *prefix, const char *const *sql, int n,
		      struct err *err)
{
	char name[16];

	for (int i = 0; i < n; i++) {
		PGresult *r;

		snprintf(name, sizeof name, "%s%d", prefix, i);
		r = PQprepare(s->conn, name, sql[i], 0, NULL);
		if (PQresultStatus(r) != PGRES_COMMAND_OK) {
			store__pg_fail(s, r, "prepare", err);
			PQclear(r);
			return -1;
		}
		PQclear(r);
	}
	return 0;
}

/* A new session: every statement prepared, LISTEN sent. */
static int prepare_all(struct store_pg *s, struct err *err)
{
	if (store__pg_prepare(s, "s", stmt_sql, ST_COUNT, err) < 0 ||
	    store__pg_cluster_session(s, err) < 0)
		return -1;
	s->ready = 1;
	return 0;
}

/* Creates or migrates the tables, one node at a time (an advisory lock). */
static int migrate(struct store_pg *s, struct err *err)
{
	PGresult *r = NULL;
	long version = 0;
	char sql[96];

	if (store__pg_exec(s, "BEGIN", "begin migration", err) < 0)
		return -1;
	snprintf(sql, sizeof sql, "SELECT pg_advisory_xact_lock(%lld)", (long long)PG_MIGRATE_LOCK);
	if (store__pg_exec(s, sql, "lock for migration", err) < 0 ||
	    store__pg_exec(s, "CREATE TABLE IF NOT EXISTS fnrun_schema (version integer NOT NULL)",
		     "create fnrun_schema", err) < 0)
		goto fail;
	r = PQexec(s->conn, "SELECT version FROM fnrun_schema");
	if (PQresultStatus(r) != PGRES_TUPLES_OK) {
		store__pg_fail(s, r, "read the schema version", err);
		goto fail;
	}
	if (PQntuples(r) > 0)
		version = strtol(PQgetvalue(r, 0, 0), NULL, 10);
	else if (store__pg_exec(s, "INSERT INTO fnrun_schema VALUES (0)", "schema version", err) < 0)
		goto fail;
	if (version > PG_SCHEMA_VERSION || version < 0) {
		err_set(err, ERR_IO, "job store %s: schema version %ld is newer than this build's %d; "
			"upgrade fnrun", s->where, version, PG_SCHEMA_VERSION);
		goto fail;
	}
	for (long v = version; v < PG_SCHEMA_VERSION; v++) {
		snprintf(sql, sizeof sql, "UPDATE fnrun_schema SET version = %ld", v + 1);
		if (store__pg_exec(s, migrations[v], "migrate schema", err) < 0 ||
		    store__pg_exec(s, sql, "migrate schema", err) < 0)
			goto fail;
		log_info("store migrated url=%s version=%ld", s->where, v + 1);
	}
	PQclear(r);
	return store__pg_exec(s, "COMMIT", "commit migration", err);
fail:
	PQclear(r);
	store__pg_exec(s, "ROLLBACK", "rollback migration", NULL);
	return -1;
}

/* Connected, and the statements prepared: else one reset, at most once a second. */
static int usable(struct store_pg *s, struct err *err)
{
	int64_t now;

	if (PQstatus(s->conn) == CONNECTION_OK && s->ready)
		return 0;
	now = util_now_ms();
	if (s->base.depth > 0 || now < s->reset_at)
		return store__pg_fail(s, NULL, "connection lost", err);
	s->reset_at = now + PG_RESET_EVERY_MS;
	s->ready = 0;
	PQreset(s->conn);
	if (PQstatus(s->conn) != CONNECTION_OK)
		return store__pg_fail(s, NULL, "connect again", err);
	log_info("store reconnected url=%s", s->where);
	return prepare_all(s, err);
}

PGresult *store__pg_run(struct store_pg *s, const char *name, int n, const char *const *values,
			const char *what, struct err *err)
{
	PGresult *r;
	int st;

	if (usable(s, err) < 0)
		return NULL;
	r = PQexecPrepared(s->conn, name, n, values, NULL, NULL, 0);
	st = PQresultStatus(r);
	if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK)
		return r;
	store__pg_fail(s, r, what, err);
	PQclear(r);
	if (PQstatus(s->conn) != CONNECTION_OK)
		s->ready = 0;
	return NULL;
}

/* Runs statement i of stmt_sql[]. Caller clears the result. */
static PGresult *run(struct store_pg *s, int i, int n, const char *const *values,
		     const char *what, struct err *err)
{
	char name[16];

	snprintf(name, sizeof name, "s%d", i);
	return store__pg_run(s, name, n, values, what, err);
}

/* Runs statement i for its effect only. */
static int run_cmd(struct store_pg *s, int i, int n, const char *const *values,
		   const char *what, struct err *err)
{
	PGresult *r = run(s, i, n, values, what, err);

	PQclear(r);
	return r ? 0 : -1;
}

static const char *node_name(char *buf, size_t n)
{
	const char *env = getenv("FNRUN_NODE");

	if (env && *env)
		snprintf(buf, n, "%s", env);
	else if (gethostname(buf, n) != 0 || buf[0] == '\0')
		snprintf(buf, n, "localhost");
	buf[n - 1] = '\0';
	return buf;
}

static const struct store__ops pg_ops;

struct store *store__pg_open(const char *url, struct err *err)
{
	struct store_pg *s = xcalloc(1, sizeof *s);

	s->base.ops = &pg_ops;
	s->url = xstrdup(url);
	s->where = redact(url);
	node_name(s->node, sizeof s->node);
	s->lease_ms = STORE_LEASE_MS;
	s->conn = PQconnectdb(url);
	if (PQstatus(s->conn) != CONNECTION_OK) {
		store__pg_fail(s, NULL, "connect", err);
		store_close(&s->base);
		return NULL;
	}
	if (store__pg_exec(s, "SET client_min_messages = warning", "configure", err) < 0 ||
	    migrate(s, err) < 0 || prepare_all(s, err) < 0) {
		store_close(&s->base);
		return NULL;
	}
	log_info("store open url=%s version=%d node=%s", s->where, PG_SCHEMA_VERSION, s->node);
	return &s->base;
}

static void pg_close(struct store *base)
{
	struct store_pg *s = pg(base);

	if (s->conn != NULL && PQtransactionStatus(s->conn) != PQTRANS_IDLE &&
	    PQstatus(s->conn) == CONNECTION_OK) {
		log_warn("store close url=%s: rolling back an open transaction", s->where);
		store__pg_exec(s, "ROLLBACK", "rollback", NULL);
	}
	PQfinish(s->conn);
	free(s->url);
	free(s->where);
	free(s);
}

/* ---- transactions ---- */

static int pg_begin(struct store *base, struct err *err)
{
	struct store_pg *s = pg(base);

	if (usable(s, err) < 0 ||
	    store__pg_exec(s, base->depth == 0 ? "BEGIN" : "SAVEPOINT nest", "begin", err) < 0)
		return -1;
	base->depth++;
	return 0;
}

static int pg_commit(struct store *base, struct err *err)
{
	struct store_pg *s = pg(base);
	PGresult *r;
	int ok;

	base->depth--;
	if (base->depth > 0)
		return store__pg_exec(s, "RELEASE SAVEPOINT nest", "release savepoint", err);
	r = PQexec(s->conn, "COMMIT");
	/* COMMIT of a transaction an error aborted answers ROLLBACK, without an error. */
	ok = PQresultStatus(r) == PGRES_COMMAND_OK && strcmp(PQcmdStatus(r), "COMMIT") == 0;
	if (!ok && PQresultStatus(r) == PGRES_COMMAND_OK)
		err_set(err, ERR_IO, "job store %s: the transaction was rolled back after an "
			"earlier error", s->where);
	else if (!ok)
		store__pg_fail(s, r, "commit", err);
	PQclear(r);
	if (!ok && PQstatus(s->conn) == CONNECTION_OK &&
	    PQtransactionStatus(s->conn) != PQTRANS_IDLE)
		store__pg_exec(s, "ROLLBACK", "rollback", NULL);
	if (PQstatus(s->conn) != CONNECTION_OK)
		s->ready = 0;
	return ok ? 0 : -1;
}

static int pg_rollback(struct store *base, struct err *err)
{
	struct store_pg *s = pg(base);

	base->depth--;
	if (PQstatus(s->conn) != CONNECTION_OK) {
		s->ready = 0;
		return 0; /* the server undid it when the session ended */
	}
	if (base->depth == 0)
		return store__pg_exec(s, "ROLLBACK", "rollback", err);
	return store__pg_exec(s, "ROLLBACK TO SAVEPOINT nest; RELEASE SAVEPOINT nest",
			"rollback savepoint", err);
}

/* ---- jobs ---- */

/* Text of job_fields[from..from+n) of j into v (NULL for SQL NULL); numbers in buf. */
static void job_values(const struct job *j, int from, int n, const char **v,
		       char (*buf)[24])
{
	for (int i = 0; i < n; i++) {
		const struct store__field *f = &store__job_fields[from + i];
		const char *p = (const char *)j + f->off;

		switch (f->type) {
		case F_INT:
			snprintf(buf[i], sizeof buf[i], "%d", *(const int *)(const void *)p);
			v[i] = buf[i];
			break;
		case F_I64:
			snprintf(buf[i], sizeof buf[i], "%lld",
				 (long long)*(const int64_t *)(const void *)p);
			v[i] = buf[i];
			break;
		case F_ID:
			v[i] = p;
			break;
		case F_STATUS:
			v[i] = job_status_name(j->status);
			break;
		default:
			v[i] = *(char *const *)(const void *)p;
			break;
		}
	}
}

/* Row `row` of r into a new job; -1 on a bad row. */
static int read_job(struct store_pg *s, const PGresult *r, int row, struct job **out,
		    struct err *err)
{
	struct job *j = xcalloc(1, sizeof *j);

	for (int i = 0; i < STORE__NFIELDS; i++) {
		const struct store__field *f = &store__job_fields[i];
		char *p = (char *)j + f->off;
		const char *text = PQgetisnull(r, row, i) ? NULL : PQgetvalue(r, row, i);

		switch (f->type) {
		case F_INT:
			*(int *)(void *)p = text ? (int)strtol(text, NULL, 10) : 0;
			break;
		case F_I64:
			*(int64_t *)(void *)p = text ? strtoll(text, NULL, 10) : 0;
			break;
		case F_ID:
			snprintf(j->id, sizeof j->id, "%s", text ? text : "");
			break;
		case F_STATUS:
			j->status = job_status_parse(text);
			break;
		case F_TEXT:
			*(char **)(void *)p = xstrdup(text ? text : "");
			break;
		default:
			*(char **)(void *)p = text ? xstrdup(text) : NULL;
			break;
		}
		if (f->type == F_STATUS && j->status < 0) {
			err_set(err, ERR_IO, "job store %s: job %s has a bad %s", s->where, j->id,
				f->name);
			job_free(j);
			return -1;
		}
	}
	j->seq = strtoll(PQgetvalue(r, row, STORE__NFIELDS), NULL, 10);
	*out = j;
	return 0;
}

int store__pg_jobs(struct store_pg *s, const PGresult *r, int with_claim, struct job ***out,
		   size_t *n, struct err *err)
{
	size_t rows = (size_t)PQntuples(r);
	struct job **v = rows ? xcalloc(rows, sizeof *v) : NULL;

	for (size_t i = 0; i < rows; i++) {
		if (read_job(s, r, (int)i, &v[i], err) < 0) {
			store_jobs_free(v, i);
			return -1;
		}
		if (with_claim) {
			v[i]->lease_gen = strtoll(PQgetvalue(r, (int)i, STORE__NFIELDS + 1), NULL, 10);
			v[i]->cancel_asked = PQgetvalue(r, (int)i, STORE__NFIELDS + 2)[0] == 't';
		}
	}
	*out = v;
	*n = rows;
	return 0;
}

static int query_jobs(struct store_pg *s, int st, int n, const char *const *values,
		      const char *what, struct job ***out, size_t *len, struct err *err)
{
	PGresult *r = run(s, st, n, values, what, err);
	int rc;

	if (r == NULL)
		return -1;
	rc = store__pg_jobs(s, r, st == ST_JOB_ACTIVE, out, len, err);
	PQclear(r);
	return rc;
}

static int query_one(struct store_pg *s, int st, const char *key, const char *what,
		     struct job **out, struct err *err)
{
	struct job **v;
	size_t n;

	if (query_jobs(s, st, 1, &key, "get job", &v, &n, err) < 0)
		return -1;
	if (n == 0) {
		err_set(err, ERR_NOT_FOUND, "no job with %s %s", what, key);
		return -1;
	}
	*out = v[0];
	for (size_t i = 1; i < n; i++) /* unique keys: never, in fact */
		job_free(v[i]);
	free(v);
	return 0;
}

static int pg_job_get(struct store *base, const char *id, struct job **out, struct err *err)
{
	return query_one(pg(base), ST_JOB_GET, id, "id", out, err);
}

static int pg_job_by_idem(struct store *base, const char *key, struct job **out,
			  struct err *err)
{
	return query_one(pg(base), ST_JOB_BY_IDEM, key, "idempotency key", out, err);
}

static int pg_job_insert(struct store *base, struct job *j, struct err *err)
{
	struct store_pg *s = pg(base);
	const char *v[STORE__NFIELDS + 2];
	char buf[STORE__NFIELDS][24], lease[24];
	struct job *other = NULL;
	PGresult *r;

	job_values(j, 0, STORE__NFIELDS, v, buf);
	/* store.h: claimed by this node at once, unless the caller leaves it to any node. */
	v[STORE__NFIELDS] = j->lease_gen == STORE_UNCLAIMED ? NULL : s->node;
	snprintf(lease, sizeof lease, "%lld", (long long)s->lease_ms);
	v[STORE__NFIELDS + 1] = lease;
	r = run(s, ST_JOB_INSERT, STORE__NFIELDS + 2, v, "insert job", err);
	if (r == NULL)
		return -1;
	if (PQntuples(r) == 1) {
		j->seq = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
		j->lease_gen = strtoll(PQgetvalue(r, 0, 1), NULL, 10);
		PQclear(r);
		return 0;
	}
	PQclear(r);
	/* Invariant 3: no row means a unique key is taken. */
	if (j->idempotency_key != NULL &&
	    pg_job_by_idem(base, j->idempotency_key, &other, NULL) == 0) {
		err_set(err, ERR_CONFLICT, "idempotency key already used by job %s", other->id);
		job_free(other);
		return -1;
	}
	err_set(err, ERR_CONFLICT, "job %s already exists", j->id);
	return -1;
}

static int pg_job_update(struct store *base, const struct job *j, struct err *err)
{
	struct store_pg *s = pg(base);
	int nmut = STORE__NFIELDS - STORE__FIRST_MUTABLE;
	const char *v[STORE__NFIELDS + 2];
	char buf[STORE__NFIELDS][24], gen[24];
	struct job *now = NULL;
	PGresult *r;
	int changed;

	job_values(j, STORE__FIRST_MUTABLE, nmut, v, buf);
	v[nmut] = j->id;
	v[nmut + 1] = s->node;
	snprintf(gen, sizeof gen, "%lld", (long long)j->lease_gen);
	v[nmut + 2] = gen;
	r = run(s, ST_JOB_UPDATE, nmut + 3, v, "update job", err);
	if (r == NULL)
		return -1;
	changed = strcmp(PQcmdTuples(r), "0") != 0;
	PQclear(r);
	if (changed)
		return 0;
	/* Fenced: the row is there, but another claim holds it now. */
	if (pg_job_get(base, j->id, &now, NULL) == 0) {
		job_free(now);
		err_set(err, ERR_CONFLICT, "job %s: this node's claim on it has lapsed (another node "
			"holds it)", j->id);
		return -1;
	}
	err_set(err, ERR_NOT_FOUND, "no job with id %s", j->id);
	return -1;
}

static int pg_job_list(struct store *base, const char *owner, int status, int limit,
		       const char *before_id, struct job ***out, size_t *n, struct err *err)
{
	struct store_pg *s = pg(base);
	char created[24], seq[24], lim[24];
	const char *v[5] = {created, seq, limit > 0 ? lim : NULL, NULL, NULL};
	int st, nv = 3;

	snprintf(created, sizeof created, "%lld", (long long)INT64_MAX);
	snprintf(seq, sizeof seq, "%lld", (long long)INT64_MAX);
	snprintf(lim, sizeof lim, "%d", limit);
	if (before_id != NULL) {
		PGresult *r = run(s, ST_JOB_CURSOR, 1, &before_id, "list jobs", err);
		if (r == NULL)
			return -1;
		if (PQntuples(r) == 0) {
			PQclear(r);
			err_set(err, ERR_INVALID, "before: no job with id %s", before_id);
			return -1;
		}
		snprintf(created, sizeof created, "%s", PQgetvalue(r, 0, 0));
		snprintf(seq, sizeof seq, "%s", PQgetvalue(r, 0, 1));
		PQclear(r);
	}
	if (owner)
		v[nv++] = owner;
	if (status != -1)
		v[nv++] = job_status_name(status);
	if (owner)
		st = status == -1 ? ST_JOB_LIST_OWNER : ST_JOB_LIST_OWNER_STATUS;
	else
		st = status == -1 ? ST_JOB_LIST : ST_JOB_LIST_STATUS;
	return query_jobs(s, st, nv, v, "list jobs", out, n, err);
}

static int pg_job_active(struct store *base, struct job ***out, size_t *n, struct err *err)
{
	const char *node = pg(base)->node;

	return query_jobs(pg(base), ST_JOB_ACTIVE, 1, &node, "list active jobs", out, n, err);
}

static int pg_job_count(struct store *base, int status, int64_t *n, struct err *err)
{
	const char *name = status == -1 ? NULL : job_status_name(status);
	PGresult *r = run(pg(base), status == -1 ? ST_JOB_COUNT : ST_JOB_COUNT_STATUS,
			  status == -1 ? 0 : 1, &name, "count jobs", err);

	if (r == NULL)
		return -1;
	*n = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
	PQclear(r);
	return 0;
}

/* ---- runners, probe, meta, usage ---- */

static int pg_runner_put(struct store *base, const char *id, const char *model_id, int pid,
			 int port, const char *container_id, int64_t started_at,
			 struct err *err)
{
	struct store_pg *s = pg(base);
	char p[16], q[16], t[24];
	const char *v[7] = {s->node, id, model_id, p, q, container_id, t};

	snprintf(p, sizeof p, "%d", pid);
	snprintf(q, sizeof q, "%d", port);
	snprintf(t, sizeof t, "%lld", (long long)started_at);
	return run_cmd(s, ST_RUNNER_PUT, 7, v, "put runner", err);
}

static int pg_runner_delete(struct store *base, const char *id, struct err *err)
{
	struct store_pg *s = pg(base);
	const char *v[2] = {s->node, id};

	return run_cmd(s, ST_RUNNER_DELETE, 2, v, "delete runner", err);
}

static char *value_dup(const PGresult *r, int row, int col)
{
	return PQgetisnull(r, row, col) ? NULL : xstrdup(PQgetvalue(r, row, col));
}

static int pg_runner_list(struct store *base, struct store_runner **out, size_t *n,
			  struct err *err)
{
	struct store_pg *s = pg(base);
	const char *node = s->node;
	PGresult *r = run(s, ST_RUNNER_LIST, 1, &node, "list runners", err);
	size_t rows;

	if (r == NULL)
		return -1;
	rows = (size_t)PQntuples(r);
	*out = rows ? xcalloc(rows, sizeof **out) : NULL;
	for (size_t i = 0; i < rows; i++) {
		(*out)[i].id = value_dup(r, (int)i, 0);
		(*out)[i].model_id = value_dup(r, (int)i, 1);
		(*out)[i].pid = (int)strtol(PQgetvalue(r, (int)i, 2), NULL, 10);
		(*out)[i].port = (int)strtol(PQgetvalue(r, (int)i, 3), NULL, 10);
		(*out)[i].container_id = value_dup(r, (int)i, 4);
		(*out)[i].started_at = strtoll(PQgetvalue(r, (int)i, 5), NULL, 10);
	}
	*n = rows;
	PQclear(r);
	return 0;
}

static int pg_meta_put(struct store *base, const char *key, const char *value, struct err *err)
{
	const char *v[2] = {key, value};

	return run_cmd(pg(base), ST_META_PUT, 2, v, "meta put", err);
}

static int pg_probe(struct store *base, struct err *err)
{
	static uint64_t n;
	char value[64];

	/* New bytes each time: a write that changes nothing would prove nothing. */
	snprintf(value, sizeof value, "%llu %lld", (unsigned long long)++n,
		 (long long)util_now_ms());
	return pg_meta_put(base, "probe", value, err);
}

static int pg_meta_delete(struct store *base, const char *key, struct err *err)
{
	return run_cmd(pg(base), ST_META_DELETE, 1, &key, "meta delete", err);
}

static int pg_meta_list(struct store *base, const char *prefix, store_meta_fn fn, void *ud,
			struct err *err)
{
	PGresult *r = run(pg(base), ST_META_LIST, 1, &prefix, "meta list", err);

	if (r == NULL)
		return -1;
	for (int i = 0; i < PQntuples(r); i++) {
		char value[1024]; /* store.h: a longer value is cut, as SQLite's store does */

		snprintf(value, sizeof value, "%s", PQgetvalue(r, i, 1));
		fn(PQgetvalue(r, i, 0), value, ud);
	}
	PQclear(r);
	return 0;
}

static int pg_key_usage(struct store *base, int64_t since_ms, store_usage_fn fn, void *ud,
			struct err *err)
{
	char since[24];
	const char *v = since;
	PGresult *r;

	snprintf(since, sizeof since, "%lld", (long long)since_ms);
	r = run(pg(base), ST_KEY_USAGE, 1, &v, "key usage", err);
	if (r == NULL)
		return -1;
	for (int i = 0; i < PQntuples(r); i++)
		fn(PQgetvalue(r, i, 0), PQgetvalue(r, i, 1), strtoll(PQgetvalue(r, i, 2), NULL, 10),
		   ud);
	PQclear(r);
	return 0;
}

static const struct store__ops pg_ops = {
	.close = pg_close,
	.begin = pg_begin,
	.commit = pg_commit,
	.rollback = pg_rollback,
	.job_insert = pg_job_insert,
	.job_update = pg_job_update,
	.job_get = pg_job_get,
	.job_by_idem = pg_job_by_idem,
	.job_list = pg_job_list,
	.job_active = pg_job_active,
	.job_count = pg_job_count,
	.runner_put = pg_runner_put,
	.runner_delete = pg_runner_delete,
	.runner_list = pg_runner_list,
	.probe = pg_probe,
	.meta_put = pg_meta_put,
	.meta_delete = pg_meta_delete,
	.meta_list = pg_meta_list,
	.key_usage = pg_key_usage,
	.cluster = &store__pg_cluster,
};
