/*
 * store_sqlite.c - the job store on SQLite (one file, one connection): the
 * single-machine default behind store.h (store.c picks the backend).
 *
 * Schema, version 1 (PRAGMA user_version):
 *   jobs     one row per job. seq is the rowid, AUTOINCREMENT so it is never
 *            reused, even after old rows are deleted: it is the queue order.
 *            status is stored by name ("queued"), so the file does not
 *            depend on the order of enum job_status.
 *   runners  runners fnrun started, for orphan cleanup after a kill -9.
 * Version 2 adds:
 *   meta     small named values; the row "probe" is rewritten to learn
 *            whether the file takes writes again after a failed commit.
 * A new version appends an entry to migrations[]; store_open() applies the
 * missing ones in one transaction and refuses a file from a newer build.
 *
 * Invariants:
 * 1. Every statement is prepared in store_open(), finalized in store_close()
 *    and reset right after each use, so none holds a read open between calls
 *    (ROLLBACK and checkpoints are never blocked by a forgotten statement).
 * 2. s->base.depth counts store_begin() calls not yet matched. depth 0: SQLite is
 *    in autocommit mode. depth 1: one BEGIN IMMEDIATE transaction. Each level
 *    above 1 is one savepoint named "nest" (SQLite resolves a repeated name
 *    to the innermost one, which is the one we mean).
 * 3. The column and parameter lists of the job statements follow
 *    job_fields[]; store_open() checks this, so the table is the one list to
 *    change when struct job grows.
 * 4. SQL text is constant. Values only ever travel as bound parameters.
 */
#include <sqlite3.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "store.h"
#include "store_guard.h"
#include "store_internal.h"
#include "util.h"

#define STORE_BUSY_TIMEOUT_MS 5000 /* wait for another process's lock */

#define JOB_COLS STORE__JOB_COLS

static const char schema_v1[] =
	"CREATE TABLE jobs ("
	" seq INTEGER PRIMARY KEY AUTOINCREMENT,"
	" id TEXT NOT NULL UNIQUE,"
	" function TEXT NOT NULL,"
	" quality TEXT NOT NULL,"
	" params_json TEXT NOT NULL,"
	" idempotency_key TEXT UNIQUE,"
	" created_at INTEGER NOT NULL,"
	" status TEXT NOT NULL CHECK (status IN ('queued', 'preparing',"
	"  'running', 'completed', 'failed', 'cancelled')),"
	" priority INTEGER NOT NULL,"
	" attempt INTEGER NOT NULL,"
	" max_attempts INTEGER NOT NULL,"
	" model_id TEXT,"
	" runner_id TEXT,"
	" remote_prompt_id TEXT,"
	" remote_url TEXT,"
	" progress INTEGER NOT NULL,"
	" message TEXT NOT NULL,"
	" error_code TEXT,"
	" error_message TEXT,"
	" error_suggestion TEXT,"
	" error_action TEXT,"
	" error_detail TEXT,"
	" outputs_json TEXT NOT NULL,"
	" tried_json TEXT NOT NULL,"
	" started_at INTEGER NOT NULL,"
	" finished_at INTEGER NOT NULL,"
	" updated_at INTEGER NOT NULL);"
	/*
	 * Listing newest first, filtering by status, counting; the rowid
	 * (seq) is each index's implicit last key. The active jobs come from
	 * jobs_status_created too, sorted once at startup: a partial index on
	 * live jobs cost 60% more per status update (measured).
	 */
	"CREATE INDEX jobs_created ON jobs (created_at);"
	"CREATE INDEX jobs_status_created ON jobs (status, created_at);"
	"CREATE TABLE runners ("
	" id TEXT PRIMARY KEY,"
	" model_id TEXT NOT NULL,"
	" pid INTEGER NOT NULL,"
	" port INTEGER NOT NULL,"
	" container_id TEXT,"
	" started_at INTEGER NOT NULL);"
	"PRAGMA user_version = 1;";

/*
 * The schema's history. Entry i brings the file from version i to
 * version i + 1: sql runs first, then fn (a code migration; NULL when
 * none). sql must end by setting PRAGMA user_version to `version`.
 */
static const struct migration {
	int version;
	const char *sql;
	int (*fn)(sqlite3 *db, struct err *err);
} migrations[] = {
	{1, schema_v1, NULL},
	{2, "CREATE TABLE meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);"
	    "PRAGMA user_version = 2;", NULL},
	/* The API key that made each job (the keys live in keys.db: store_keys.c). */
	{3, "ALTER TABLE jobs ADD COLUMN owner TEXT;"
	    "CREATE INDEX jobs_owner_created ON jobs (owner, created_at);"
	    "PRAGMA user_version = 3;", NULL},
	/* A/B: what a job sticks to, and the version of the model that served it. */
	{4, "ALTER TABLE jobs ADD COLUMN route_key TEXT;"
	    "ALTER TABLE jobs ADD COLUMN model_version TEXT;"
	    "PRAGMA user_version = 4;", NULL},
};

#define SCHEMA_VERSION ((int)(sizeof migrations / sizeof migrations[0]))

enum stmt {
	ST_BEGIN,
	ST_COMMIT,
	ST_ROLLBACK,
	ST_SAVEPOINT,
	ST_RELEASE,
	ST_ROLLBACK_TO,
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
	ST_PROBE,
	ST_META_PUT,
	ST_META_DELETE,
	ST_META_LIST,
	ST_COUNT
};

static const char *const stmt_sql[ST_COUNT] = {
	[ST_BEGIN] = "BEGIN IMMEDIATE",
	[ST_COMMIT] = "COMMIT",
	[ST_ROLLBACK] = "ROLLBACK",
	[ST_SAVEPOINT] = "SAVEPOINT nest",
	[ST_RELEASE] = "RELEASE nest",
	[ST_ROLLBACK_TO] = "ROLLBACK TO nest",
	[ST_JOB_INSERT] =
		"INSERT INTO jobs (id, function, params_json,"
		" idempotency_key, created_at, owner, route_key, quality, status, priority,"
		" attempt, max_attempts, model_id, model_version, runner_id, remote_prompt_id,"
		" remote_url, progress, message, error_code, error_message,"
		" error_suggestion, error_action, error_detail, outputs_json,"
		" tried_json, started_at, finished_at, updated_at)"
		" VALUES (:id, :function, :params_json,"
		" :idempotency_key, :created_at, :owner, :route_key, :quality, :status, :priority,"
		" :attempt, :max_attempts, :model_id, :model_version, :runner_id, :remote_prompt_id,"
		" :remote_url, :progress, :message, :error_code, :error_message,"
		" :error_suggestion, :error_action, :error_detail, :outputs_json,"
		" :tried_json, :started_at, :finished_at, :updated_at)",
	[ST_JOB_UPDATE] =
		"UPDATE jobs SET quality = :quality, status = :status, priority = :priority,"
		" attempt = :attempt, max_attempts = :max_attempts,"
		" model_id = :model_id, model_version = :model_version, runner_id = :runner_id,"
		" remote_prompt_id = :remote_prompt_id, remote_url = :remote_url,"
		" progress = :progress, message = :message,"
		" error_code = :error_code, error_message = :error_message,"
		" error_suggestion = :error_suggestion,"
		" error_action = :error_action, error_detail = :error_detail,"
		" outputs_json = :outputs_json, tried_json = :tried_json,"
		" started_at = :started_at, finished_at = :finished_at,"
		" updated_at = :updated_at WHERE id = :id",
	[ST_JOB_GET] = "SELECT " JOB_COLS " FROM jobs WHERE id = ?1",
	[ST_JOB_BY_IDEM] =
		"SELECT " JOB_COLS " FROM jobs WHERE idempotency_key = ?1",
	[ST_JOB_CURSOR] = "SELECT created_at, seq FROM jobs WHERE id = ?1",
	[ST_JOB_LIST] = "SELECT " JOB_COLS " FROM jobs"
			" WHERE (created_at, seq) < (?1, ?2)"
			" ORDER BY created_at DESC, seq DESC LIMIT ?3",
	[ST_JOB_LIST_STATUS] = "SELECT " JOB_COLS " FROM jobs"
			       " WHERE status = ?4 AND (created_at, seq) < (?1, ?2)"
			       " ORDER BY created_at DESC, seq DESC LIMIT ?3",
	[ST_JOB_LIST_OWNER] = "SELECT " JOB_COLS " FROM jobs"
			      " WHERE owner = ?5 AND (created_at, seq) < (?1, ?2)"
			      " ORDER BY created_at DESC, seq DESC LIMIT ?3",
	[ST_JOB_LIST_OWNER_STATUS] = "SELECT " JOB_COLS " FROM jobs"
				     " WHERE owner = ?5 AND status = ?4"
				     " AND (created_at, seq) < (?1, ?2)"
				     " ORDER BY created_at DESC, seq DESC LIMIT ?3",
	[ST_JOB_ACTIVE] = "SELECT " JOB_COLS " FROM jobs"
			  " WHERE status IN ('queued', 'preparing', 'running')"
			  " ORDER BY priority DESC, seq",
	[ST_JOB_COUNT] = "SELECT count(*) FROM jobs",
	[ST_JOB_COUNT_STATUS] = "SELECT count(*) FROM jobs WHERE status = ?1",
	[ST_RUNNER_PUT] = "INSERT OR REPLACE INTO runners (id, model_id, pid,"
			  " port, container_id, started_at)"
			  " VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
	[ST_RUNNER_DELETE] = "DELETE FROM runners WHERE id = ?1",
	[ST_RUNNER_LIST] = ("SELECT id, model_id, pid, port, container_id,"
			    " started_at FROM runners ORDER BY started_at, id"),
	[ST_PROBE] = "INSERT OR REPLACE INTO meta (key, value) VALUES ('probe', ?1)",
	[ST_META_PUT] = "INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)",
	[ST_META_DELETE] = "DELETE FROM meta WHERE key = ?1",
	[ST_META_LIST] = "SELECT key, value FROM meta WHERE substr(key, 1, length(?1)) = ?1"
			 " ORDER BY key",
};

#define job_fields store__job_fields
#define NFIELDS STORE__NFIELDS
#define FIRST_MUTABLE STORE__FIRST_MUTABLE
struct store_lite {
	struct store base;          /* first: a struct store * is one of these */
	sqlite3 *db;                /* the one connection */
	sqlite3_stmt *st[ST_COUNT]; /* prepared at open, by enum stmt */
	char *path;                 /* the file, for messages */
};

static struct store_lite *lite(struct store *s)
{
	return (struct store_lite *)s;
}

static const struct store__ops lite_ops;

sqlite3 *store__db(struct store *s)
{
	return s->ops == &lite_ops ? lite(s)->db : NULL;
}

/* Sets ERR_IO from the connection's last error. Returns -1. */
static int db_fail(struct store_lite *s, const char *what, struct err *err)
{
	err_set(err, ERR_IO, "job store %s: %s: %s", s->path, what,
		sqlite3_errmsg(s->db));
	return -1;
}

/* Runs st to its end (no rows expected) and resets it. */
static int step_done(struct store_lite *s, sqlite3_stmt *st, const char *what,
		     struct err *err)
{
	int rc = sqlite3_step(st);

	if (rc != SQLITE_DONE)
		db_fail(s, what, err);
	sqlite3_reset(st);
	return rc == SQLITE_DONE ? 0 : -1;
}

static int exec_sql(struct store_lite *s, const char *sql, const char *what,
		    struct err *err)
{
	if (sqlite3_exec(s->db, sql, NULL, NULL, NULL) != SQLITE_OK)
		return db_fail(s, what, err);
	return 0;
}

/* Reads one integer from a one-row statement such as a pragma. */
static int query_int(struct store_lite *s, sqlite3_stmt *st, const char *what,
		     int64_t *out, struct err *err)
{
	int rc = sqlite3_step(st);

	if (rc == SQLITE_ROW)
		*out = sqlite3_column_int64(st, 0);
	else
		db_fail(s, what, err);
	sqlite3_reset(st);
	return rc == SQLITE_ROW ? 0 : -1;
}

/* Reads one integer from constant SQL, preparing it for this one use. */
static int pragma_int(struct store_lite *s, const char *sql, int64_t *out,
		      struct err *err)
{
	sqlite3_stmt *st;
	int rc;

	if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK)
		return db_fail(s, sql, err);
	rc = query_int(s, st, sql, out, err);
	sqlite3_finalize(st);
	return rc;
}

/* journal_mode answers with the mode it ended up in, which may not be WAL. */
static int set_wal(struct store_lite *s, struct err *err)
{
	sqlite3_stmt *st;
	const char *mode;
	int ok;

	if (sqlite3_prepare_v2(s->db, "PRAGMA journal_mode = WAL", -1, &st,
			       NULL) != SQLITE_OK)
		return db_fail(s, "set journal mode", err);
	if (sqlite3_step(st) != SQLITE_ROW) {
		db_fail(s, "set journal mode", err);
		sqlite3_finalize(st);
		return -1;
	}
	mode = (const char *)sqlite3_column_text(st, 0);
	ok = mode != NULL && strcmp(mode, "wal") == 0;
	if (!ok)
		err_set(err, ERR_IO, "job store %s: cannot use WAL (mode is %s)",
			s->path, mode ? mode : "unknown");
	sqlite3_finalize(st);
	return ok ? 0 : -1;
}

static int configure(struct store_lite *s, struct err *err)
{
	sqlite3_busy_timeout(s->db, STORE_BUSY_TIMEOUT_MS);
	/*
	 * One process owns the file: exclusive locking takes the file lock
	 * once instead of a lock and an unlock per transaction (measured: a
	 * third of the store's system calls per job), keeps the WAL index in
	 * memory (no -shm file), and makes a second fnrun on the same data
	 * directory fail at start instead of sharing it. Set before WAL, so
	 * that the shared-memory index is never used.
	 */
	if (exec_sql(s, "PRAGMA locking_mode = EXCLUSIVE", "set locking mode", err) < 0)
		return -1;
	/* The first statement takes the lock: busy means another process holds the file. */
	if ((sqlite3_exec(s->db, "BEGIN IMMEDIATE; COMMIT", NULL, NULL, NULL) & 0xff) ==
	    SQLITE_BUSY) {
		err_set(err, ERR_IO, "job store %s is in use by another process (is another fnrun "
			"serving this data directory?)", s->path);
		return -1;
	}
	if (set_wal(s, err) < 0)
		return -1;
	/*
	 * NORMAL in WAL mode: a commit is an append without fsync; it
	 * survives a crash of this process, and the WAL is synced at
	 * checkpoints.
	 */
	return exec_sql(s, "PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON",
			"set pragmas", err);
}

static int apply_migrations(struct store_lite *s, int64_t from, struct err *err)
{
	for (int i = (int)from; i < SCHEMA_VERSION; i++) {
		const struct migration *m = &migrations[i];

		if (exec_sql(s, m->sql, "migrate schema", err) < 0)
			return -1;
		if (m->fn != NULL && m->fn(s->db, err) < 0)
			return -1;
		log_info("store migrated path=%s version=%d", s->path,
			 m->version);
	}
	return 0;
}

/*
 * Brings the schema up to SCHEMA_VERSION. The version is read inside the
 * write transaction, so two processes opening a new file at once cannot
 * both create the tables.
 */
static int migrate(struct store_lite *s, struct err *err)
{
	int64_t version = 0;

	if (exec_sql(s, "BEGIN IMMEDIATE", "begin migration", err) < 0)
		return -1;
	if (pragma_int(s, "PRAGMA user_version", &version, err) < 0)
		goto fail;
	if (version > SCHEMA_VERSION || version < 0) {
		err_set(err, ERR_IO,
			"job store %s: schema version %lld is newer than this "
			"build's %d; upgrade fnrun",
			s->path, (long long)version, SCHEMA_VERSION);
		goto fail;
	}
	if (apply_migrations(s, version, err) < 0)
		goto fail;
	if (exec_sql(s, "COMMIT", "commit migration", err) < 0)
		goto fail;
	return 0;
fail:
	sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
	return -1;
}

/* 1 when the n names match job_fields[from..] with the given prefix. */
static int names_match(const char *(*name)(sqlite3_stmt *, int),
		       sqlite3_stmt *st, int first, int from, int n,
		       const char *prefix)
{
	size_t plen = strlen(prefix);

	for (int i = 0; i < n; i++) {
		const char *got = name(st, first + i);

		if (got == NULL || strncmp(got, prefix, plen) != 0 ||
		    strcmp(got + plen, job_fields[from + i].name) != 0)
			return 0;
	}
	return 1;
}

/* Invariant 3: the job statements agree with job_fields[]. */
static int check_job_stmts(struct store_lite *s, struct err *err)
{
	sqlite3_stmt *get = s->st[ST_JOB_GET], *ins = s->st[ST_JOB_INSERT];
	sqlite3_stmt *upd = s->st[ST_JOB_UPDATE];
	int nmut = NFIELDS - FIRST_MUTABLE;
	int ok = names_match(sqlite3_column_name, get, 0, 0, NFIELDS, "") &&
		 sqlite3_column_count(get) == NFIELDS + 1 &&
		 names_match(sqlite3_bind_parameter_name, ins, 1, 0, NFIELDS,
			     ":") &&
		 sqlite3_bind_parameter_count(ins) == NFIELDS &&
		 names_match(sqlite3_bind_parameter_name, upd, 1, FIRST_MUTABLE,
			     nmut, ":") &&
		 names_match(sqlite3_bind_parameter_name, upd, nmut + 1, 0, 1,
			     ":") &&
		 sqlite3_bind_parameter_count(upd) == nmut + 1;

	if (!ok)
		err_set(err, ERR_INTERNAL,
			"job store: statements do not match job_fields[]");
	return ok ? 0 : -1;
}

static int prepare_all(struct store_lite *s, struct err *err)
{
	for (int i = 0; i < ST_COUNT; i++) {
		if (sqlite3_prepare_v3(s->db, stmt_sql[i], -1,
				       SQLITE_PREPARE_PERSISTENT, &s->st[i],
				       NULL) != SQLITE_OK)
			return db_fail(s, "prepare", err);
	}
	return check_job_stmts(s, err);
}

static void open_fail(struct store_lite *s, int rc, struct err *err)
{
	int eno = s->db ? sqlite3_system_errno(s->db) : 0;

	err_set(err, ERR_IO, "cannot open job store %s: %s%s%s%s", s->path,
		s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc),
		eno ? " (" : "", eno ? strerror(eno) : "", eno ? ")" : "");
}

struct store *store__sqlite_open(const char *path, struct err *err)
{
	struct store_lite *s = xcalloc(1, sizeof *s);
	int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
		    SQLITE_OPEN_FULLMUTEX | SQLITE_OPEN_EXRESCODE;
	int rc;

	s->base.ops = &lite_ops;
	s->path = xstrdup(path);
	if (store_guard_present(path, err) < 0) {
		store_close(&s->base);
		return NULL;
	}
	rc = sqlite3_open_v2(path, &s->db, flags, NULL);
	if (rc != SQLITE_OK) {
		open_fail(s, rc, err);
		store_close(&s->base);
		return NULL;
	}
	if (configure(s, err) < 0 || store_guard_intact(s->db, path, err) < 0 ||
	    migrate(s, err) < 0 || prepare_all(s, err) < 0) {
		rc = sqlite3_errcode(s->db);
		if (rc == SQLITE_CORRUPT || rc == SQLITE_NOTADB)
			store_guard_damaged(path, sqlite3_errmsg(s->db), err);
		store_close(&s->base);
		return NULL;
	}
	store_guard_mark(path);
	log_info("store open path=%s version=%d", s->path, SCHEMA_VERSION);
	return &s->base;
}

int store__sqlite_schema_version(void)
{
	return SCHEMA_VERSION;
}

static void lite_close(struct store *base)
{
	struct store_lite *s = lite(base);

	for (int i = 0; i < ST_COUNT; i++)
		sqlite3_finalize(s->st[i]);
	if (s->db != NULL && !sqlite3_get_autocommit(s->db)) {
		log_warn("store close path=%s: rolling back an open transaction",
			 s->path);
		sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
	}
	sqlite3_close_v2(s->db);
	free(s->path);
	free(s);
}

/*
 * 1 when store_begin() opened a transaction that SQLite has since rolled
 * back on its own (it does so on some I/O and memory errors).
 */
static int txn_lost(const struct store_lite *s)
{
	return s->base.depth > 0 && sqlite3_get_autocommit(s->db);
}

static int lost_fail(struct store_lite *s, struct err *err)
{
	err_set(err, ERR_IO,
		"job store %s: the transaction was rolled back after an "
		"earlier error",
		s->path);
	return -1;
}

static int lite_begin(struct store *base, struct err *err)
{
	struct store_lite *s = lite(base);
	if (txn_lost(s))
		return lost_fail(s, err);
	if (step_done(s, s->st[s->base.depth == 0 ? ST_BEGIN : ST_SAVEPOINT],
		      "begin", err) < 0)
		return -1;
	s->base.depth++;
	return 0;
}

static int lite_commit(struct store *base, struct err *err)
{
	struct store_lite *s = lite(base);
	int lost = txn_lost(s);

	s->base.depth--;
	if (lost)
		return lost_fail(s, err);
	if (s->base.depth > 0)
		return step_done(s, s->st[ST_RELEASE], "release savepoint", err);
	if (step_done(s, s->st[ST_COMMIT], "commit", err) == 0)
		return 0;
	/* A COMMIT that failed (SQLITE_BUSY) leaves the transaction open. */
	if (!sqlite3_get_autocommit(s->db))
		step_done(s, s->st[ST_ROLLBACK], "rollback", NULL);
	return -1;
}

static int lite_rollback(struct store *base, struct err *err)
{
	struct store_lite *s = lite(base);
	int lost = txn_lost(s);

	s->base.depth--;
	if (lost)
		return 0; /* SQLite already undid everything */
	if (s->base.depth == 0)
		return step_done(s, s->st[ST_ROLLBACK], "rollback", err);
	/* ROLLBACK TO keeps the savepoint open; RELEASE pops it. */
	if (step_done(s, s->st[ST_ROLLBACK_TO], "rollback savepoint", err) < 0)
		return -1;
	return step_done(s, s->st[ST_RELEASE], "release savepoint", err);
}

/* Binds job_fields[from..from+n) of j to parameters first.. of st. */
static int bind_fields(sqlite3_stmt *st, int first, const struct job *j,
		       int from, int n)
{
	for (int i = 0; i < n; i++) {
		const struct store__field *f = &job_fields[from + i];
		const char *p = (const char *)j + f->off;
		const char *text = NULL;
		int idx = first + i, rc;

		if (f->type == F_INT)
			rc = sqlite3_bind_int(st, idx, *(const int *)(const void *)p);
		else if (f->type == F_I64)
			rc = sqlite3_bind_int64(st, idx,
						*(const int64_t *)(const void *)p);
		else {
			if (f->type == F_ID)
				text = p;
			else if (f->type == F_STATUS)
				text = job_status_name(j->status);
			else
				text = *(char *const *)(const void *)p;
			rc = sqlite3_bind_text(st, idx, text, -1, SQLITE_STATIC);
		}
		if (rc != SQLITE_OK)
			return -1;
	}
	return 0;
}

/* Stores column col of st into the field f of j. Returns -1 on a bad row. */
static int read_field(sqlite3_stmt *st, int col, struct job *j,
		      const struct store__field *f)
{
	char *p = (char *)j + f->off;
	const char *text;

	/* Integers first: column_text() would convert them in place. */
	if (f->type == F_INT) {
		*(int *)(void *)p = sqlite3_column_int(st, col);
		return 0;
	}
	if (f->type == F_I64) {
		*(int64_t *)(void *)p = sqlite3_column_int64(st, col);
		return 0;
	}
	text = (const char *)sqlite3_column_text(st, col);
	switch (f->type) {
	case F_ID:
		snprintf(j->id, sizeof j->id, "%s", text ? text : "");
		return 0;
	case F_STATUS:
		j->status = job_status_parse(text);
		return j->status < 0 ? -1 : 0;
	case F_TEXT:
		*(char **)(void *)p = xstrdup(text ? text : "");
		return 0;
	default: /* F_NTEXT */
		*(char **)(void *)p = text ? xstrdup(text) : NULL;
		return 0;
	}
}

/* The job in the current row of st. Caller owns *out. */
static int read_job(struct store_lite *s, sqlite3_stmt *st, struct job **out,
		    struct err *err)
{
	struct job *j = xcalloc(1, sizeof *j);

	for (int i = 0; i < NFIELDS; i++) {
		if (read_field(st, i, j, &job_fields[i]) < 0) {
			err_set(err, ERR_IO, "job store %s: job %s has a bad %s",
				s->path, j->id, job_fields[i].name);
			job_free(j);
			return -1;
		}
	}
	j->seq = sqlite3_column_int64(st, NFIELDS);
	*out = j;
	return 0;
}

/*
 * Steps the bound statement st through all its rows into a new array.
 * Resets st. Caller owns *out; free with store_jobs_free().
 */
static int query_jobs(struct store_lite *s, sqlite3_stmt *st, const char *what,
		      struct job ***out, size_t *n, struct err *err)
{
	struct job **v = NULL;
	size_t len = 0, cap = 0;
	int rc = sqlite3_step(st);

	for (; rc == SQLITE_ROW; rc = sqlite3_step(st)) {
		if (len == cap) {
			cap = cap ? cap * 2 : 16;
			v = xrealloc(v, cap * sizeof *v);
		}
		if (read_job(s, st, &v[len], err) < 0)
			break;
		len++;
	}
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		db_fail(s, what, err);
	sqlite3_reset(st);
	if (rc != SQLITE_DONE) {
		store_jobs_free(v, len);
		return -1;
	}
	*out = v;
	*n = len;
	return 0;
}

/* The one job that st (with ?1 bound to key) finds, or ERR_NOT_FOUND. */
static int query_one(struct store_lite *s, enum stmt which, const char *key,
		     const char *what, struct job **out, struct err *err)
{
	sqlite3_stmt *st = s->st[which];
	struct job **v;
	size_t n;

	sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
	if (query_jobs(s, st, "get job", &v, &n, err) < 0)
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

static int lite_job_get(struct store *base, const char *id, struct job **out,
		  struct err *err)
{
	struct store_lite *s = lite(base);
	return query_one(s, ST_JOB_GET, id, "id", out, err);
}

static int lite_job_by_idem(struct store *base, const char *key, struct job **out,
		      struct err *err)
{
	struct store_lite *s = lite(base);
	return query_one(s, ST_JOB_BY_IDEM, key, "idempotency key", out, err);
}

/* A UNIQUE constraint failed: say which, as ERR_CONFLICT. */
static int insert_conflict(struct store_lite *s, const struct job *j,
			   struct err *err)
{
	struct job *other = NULL;

	if (j->idempotency_key != NULL &&
	    lite_job_by_idem(&s->base, j->idempotency_key, &other, NULL) == 0) {
		err_set(err, ERR_CONFLICT,
			"idempotency key already used by job %s", other->id);
		job_free(other);
		return -1;
	}
	err_set(err, ERR_CONFLICT, "job %s already exists", j->id);
	return -1;
}

static int lite_job_insert(struct store *base, struct job *j, struct err *err)
{
	struct store_lite *s = lite(base);
	sqlite3_stmt *st = s->st[ST_JOB_INSERT];
	int rc;

	if (bind_fields(st, 1, j, 0, NFIELDS) < 0) {
		db_fail(s, "bind job", err);
		sqlite3_reset(st);
		return -1;
	}
	rc = sqlite3_step(st);
	if (rc == SQLITE_DONE)
		j->seq = sqlite3_last_insert_rowid(s->db);
	else if (rc != SQLITE_CONSTRAINT_UNIQUE)
		db_fail(s, "insert job", err);
	sqlite3_reset(st);
	if (rc == SQLITE_CONSTRAINT_UNIQUE)
		return insert_conflict(s, j, err);
	return rc == SQLITE_DONE ? 0 : -1;
}

static int lite_job_update(struct store *base, const struct job *j, struct err *err)
{
	struct store_lite *s = lite(base);
	sqlite3_stmt *st = s->st[ST_JOB_UPDATE];
	int nmut = NFIELDS - FIRST_MUTABLE;

	if (bind_fields(st, 1, j, FIRST_MUTABLE, nmut) < 0 ||
	    bind_fields(st, nmut + 1, j, 0, 1) < 0) {
		db_fail(s, "bind job", err);
		sqlite3_reset(st);
		return -1;
	}
	if (step_done(s, st, "update job", err) < 0)
		return -1;
	if (sqlite3_changes(s->db) == 0) {
		err_set(err, ERR_NOT_FOUND, "no job with id %s", j->id);
		return -1;
	}
	return 0;
}

/* The (created_at, seq) of job id, where a page that follows it starts. */
static int list_cursor(struct store_lite *s, const char *id, int64_t *created,
		       int64_t *seq, struct err *err)
{
	sqlite3_stmt *st = s->st[ST_JOB_CURSOR];
	int rc;

	sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		*created = sqlite3_column_int64(st, 0);
		*seq = sqlite3_column_int64(st, 1);
	} else if (rc == SQLITE_DONE) {
		err_set(err, ERR_INVALID, "before: no job with id %s", id);
	} else {
		db_fail(s, "list jobs", err);
	}
	sqlite3_reset(st);
	return rc == SQLITE_ROW ? 0 : -1;
}

static int lite_job_list_of(struct store *base, const char *owner, int status, int limit,
		      const char *before_id, struct job ***out, size_t *n,
		      struct err *err)
{
	struct store_lite *s = lite(base);
	int64_t created = INT64_MAX, seq = INT64_MAX;
	sqlite3_stmt *st;

	*out = NULL;
	*n = 0;
	if (before_id != NULL &&
	    list_cursor(s, before_id, &created, &seq, err) < 0)
		return -1;
	if (owner)
		st = s->st[status == -1 ? ST_JOB_LIST_OWNER : ST_JOB_LIST_OWNER_STATUS];
	else
		st = s->st[status == -1 ? ST_JOB_LIST : ST_JOB_LIST_STATUS];
	if (owner)
		sqlite3_bind_text(st, 5, owner, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 1, created);
	sqlite3_bind_int64(st, 2, seq);
	sqlite3_bind_int(st, 3, limit > 0 ? limit : -1);
	if (status != -1)
		sqlite3_bind_text(st, 4, job_status_name(status), -1,
				  SQLITE_STATIC);
	return query_jobs(s, st, "list jobs", out, n, err);
}

static int lite_job_active(struct store *base, struct job ***out, size_t *n,
		     struct err *err)
{
	struct store_lite *s = lite(base);
	*out = NULL;
	*n = 0;
	return query_jobs(s, s->st[ST_JOB_ACTIVE], "list active jobs", out, n,
			  err);
}

static int lite_job_count(struct store *base, int status, int64_t *n, struct err *err)
{
	struct store_lite *s = lite(base);
	sqlite3_stmt *st;

	st = s->st[status == -1 ? ST_JOB_COUNT : ST_JOB_COUNT_STATUS];
	if (status != -1)
		sqlite3_bind_text(st, 1, job_status_name(status), -1,
				  SQLITE_STATIC);
	return query_int(s, st, "count jobs", n, err);
}

static int lite_runner_put(struct store *base, const char *id, const char *model_id,
		     int pid, int port, const char *container_id,
		     int64_t started_at, struct err *err)
{
	struct store_lite *s = lite(base);
	sqlite3_stmt *st = s->st[ST_RUNNER_PUT];

	sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, model_id, -1, SQLITE_STATIC);
	sqlite3_bind_int(st, 3, pid);
	sqlite3_bind_int(st, 4, port);
	sqlite3_bind_text(st, 5, container_id, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 6, started_at);
	return step_done(s, st, "put runner", err);
}

static int lite_runner_delete(struct store *base, const char *id, struct err *err)
{
	struct store_lite *s = lite(base);
	sqlite3_stmt *st = s->st[ST_RUNNER_DELETE];

	sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
	return step_done(s, st, "delete runner", err);
}

static char *column_strdup(sqlite3_stmt *st, int col)
{
	const char *text = (const char *)sqlite3_column_text(st, col);

	return text ? xstrdup(text) : NULL;
}

static int lite_runner_list(struct store *base, struct store_runner **out, size_t *n,
		      struct err *err)
{
	struct store_lite *s = lite(base);
	sqlite3_stmt *st = s->st[ST_RUNNER_LIST];
	struct store_runner *v = NULL;
	size_t len = 0, cap = 0;
	int rc = sqlite3_step(st);

	for (; rc == SQLITE_ROW; rc = sqlite3_step(st)) {
		if (len == cap) {
			cap = cap ? cap * 2 : 8;
			v = xrealloc(v, cap * sizeof *v);
		}
		v[len].id = column_strdup(st, 0);
		v[len].model_id = column_strdup(st, 1);
		v[len].pid = sqlite3_column_int(st, 2);
		v[len].port = sqlite3_column_int(st, 3);
		v[len].container_id = column_strdup(st, 4);
		v[len].started_at = sqlite3_column_int64(st, 5);
		len++;
	}
	if (rc != SQLITE_DONE)
		db_fail(s, "list runners", err);
	sqlite3_reset(st);
	if (rc != SQLITE_DONE) {
		store_runners_free(v, len);
		v = NULL;
		len = 0;
	}
	*out = v;
	*n = len;
	return rc == SQLITE_DONE ? 0 : -1;
}

static int lite_probe(struct store *base, struct err *err)
{
	struct store_lite *s = lite(base);
	sqlite3_stmt *st = s->st[ST_PROBE];
	static uint64_t n;
	char value[512];

	/* New bytes each time: a write that changes nothing would prove nothing. */
	memset(value, 'p', sizeof value);
	snprintf(value, 64, "%llu %lld", (unsigned long long)++n, (long long)util_now_ms());
	sqlite3_bind_blob(st, 1, value, sizeof value, SQLITE_TRANSIENT);
	return step_done(s, st, "probe", err);
}

static int lite_meta_put(struct store *base, const char *key, const char *value, struct err *err)
{
	struct store_lite *s = lite(base);
	sqlite3_stmt *st = s->st[ST_META_PUT];

	sqlite3_bind_text(st, 1, key, -1, SQLITE_TRANSIENT);
	sqlite3_bind_blob(st, 2, value, (int)strlen(value), SQLITE_TRANSIENT);
	return step_done(s, st, "meta put", err);
}

static int lite_meta_delete(struct store *base, const char *key, struct err *err)
{
	struct store_lite *s = lite(base);
	sqlite3_stmt *st = s->st[ST_META_DELETE];

	sqlite3_bind_text(st, 1, key, -1, SQLITE_TRANSIENT);
	return step_done(s, st, "meta delete", err);
}

static int lite_meta_list(struct store *base, const char *prefix, store_meta_fn fn, void *ud,
		    struct err *err)
{
	struct store_lite *s = lite(base);
	sqlite3_stmt *st = s->st[ST_META_LIST];
	int rc;

	sqlite3_bind_text(st, 1, prefix, -1, SQLITE_TRANSIENT);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		const char *key = (const char *)sqlite3_column_text(st, 0);
		char value[1024];
		int n = sqlite3_column_bytes(st, 1);
		const void *b = sqlite3_column_blob(st, 1);

		if (n >= (int)sizeof value)
			n = (int)sizeof value - 1;
		if (n > 0)
			memcpy(value, b, (size_t)n);
		value[n > 0 ? n : 0] = '\0';
		fn(key, value, ud);
	}
	if (rc != SQLITE_DONE)
		db_fail(s, "meta list", err);
	sqlite3_reset(st);
	return rc == SQLITE_DONE ? 0 : -1;
}

/* The GPU time each key's jobs used since since_ms, per model (store_keys.h). */
static int lite_key_usage(struct store *base, int64_t since_ms, store_usage_fn fn, void *ud,
			  struct err *err)
{
	struct store_lite *s = lite(base);
	sqlite3_stmt *st = NULL;
	int rc;

	if (sqlite3_prepare_v2(s->db,
			       "SELECT owner, model_id, sum(finished_at - started_at) FROM jobs"
			       " WHERE owner IS NOT NULL AND model_id IS NOT NULL"
			       " AND finished_at >= ?1 AND started_at > 0"
			       " GROUP BY owner, model_id", -1, &st, NULL) != SQLITE_OK)
		return db_fail(s, "key usage", err);
	sqlite3_bind_int64(st, 1, since_ms);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW)
		fn((const char *)sqlite3_column_text(st, 0), (const char *)sqlite3_column_text(st, 1),
		   sqlite3_column_int64(st, 2), ud);
	if (rc != SQLITE_DONE)
		db_fail(s, "key usage", err);
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? 0 : -1;
}

static const struct store__ops lite_ops = {
	.close = lite_close,
	.begin = lite_begin,
	.commit = lite_commit,
	.rollback = lite_rollback,
	.job_insert = lite_job_insert,
	.job_update = lite_job_update,
	.job_get = lite_job_get,
	.job_by_idem = lite_job_by_idem,
	.job_list = lite_job_list_of,
	.job_active = lite_job_active,
	.job_count = lite_job_count,
	.runner_put = lite_runner_put,
	.runner_delete = lite_runner_delete,
	.runner_list = lite_runner_list,
	.probe = lite_probe,
	.meta_put = lite_meta_put,
	.meta_delete = lite_meta_delete,
	.meta_list = lite_meta_list,
	.key_usage = lite_key_usage,
};
