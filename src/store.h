/*
 * store.h - the durable job store: one SQLite file, the source of truth.
 *
 * Every state change is written here before it is acted on (docs/design.md §2).
 * One connection in WAL mode with synchronous=NORMAL: a committed
 * transaction survives a crash of the process (kill -9), not necessarily a
 * power loss. Statements are prepared once, at open.
 *
 * Loop thread only: a struct store is not safe to use from two threads at
 * once. Each call outside store_begin()/store_commit() is its own
 * transaction (one fsync-free WAL append, about 28 us). Wrap a batch of
 * changes in store_begin()/store_commit() to pay for one commit instead of
 * many: the scheduler opens one transaction per loop iteration.
 *
 * Errors: SQLite failures are ERR_IO with sqlite3_errmsg()'s text.
 */
#ifndef FNRUN_STORE_H
#define FNRUN_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "job.h"

struct store;

/* A runner as recorded for orphan cleanup after a crash of fnrun. */
struct store_runner {
	char *id;           /* runner id */
	char *model_id;     /* model it runs */
	int pid;            /* process id (process runtime); 0 when none */
	int port;           /* TCP port it listens on; 0 when none */
	char *container_id; /* docker runtime's container; nullable */
	int64_t started_at; /* ms since the epoch */
};

/*
 * Opens or creates the store at path, creates or migrates the schema
 * (PRAGMA user_version), and sets WAL, synchronous=NORMAL, busy_timeout and
 * foreign_keys. The directory must exist. Returns NULL with ERR_IO on
 * failure (including a file written by a newer schema). Caller owns the
 * result; close with store_close().
 */
struct store *store_open(const char *path, struct err *err);
/* Rolls back a transaction left open, then closes. NULL is a no-op. */
void store_close(struct store *s);
/* The schema version this build writes (PRAGMA user_version). */
int store_schema_version(void);

/*
 * Transactions nest. The outermost store_begin() starts a write
 * transaction; inner ones open savepoints. store_commit() ends the
 * innermost level, and only the outermost one makes the batch durable.
 * store_rollback() undoes the innermost level only: the outer batch goes
 * on. When the outermost COMMIT fails, the whole batch is rolled back and
 * -1 returned. Every successful store_begin() must be matched by exactly
 * one store_commit() or store_rollback(), even after errors.
 */
int store_begin(struct store *s, struct err *err);
int store_commit(struct store *s, struct err *err);
int store_rollback(struct store *s, struct err *err);
/* Nesting depth: 0 outside any transaction. */
int store_depth(const struct store *s);

/*
 * Inserts j (every field) and sets j->seq to its queue order (and
 * j->created_at to now when it is 0). Fails with
 * ERR_CONFLICT when j->idempotency_key is already used (fetch that job
 * with store_job_by_idem()) or j->id exists; the store is then unchanged.
 * j stays owned by the caller.
 */
int store_job_insert(struct store *s, struct job *j, struct err *err);
/*
 * Writes every mutable field of j (status, priority, attempt, max_attempts,
 * model and runner ids, remote ids, progress, message, error fields,
 * outputs, tried, started/finished/updated timestamps) to the row with
 * j->id. ERR_NOT_FOUND when no such job.
 */
int store_job_update(struct store *s, const struct job *j, struct err *err);
/* Caller owns *out; free with job_free(). ERR_NOT_FOUND when unknown. */
int store_job_get(struct store *s, const char *id, struct job **out,
		  struct err *err);
/* The job with that idempotency key. As store_job_get(). */
int store_job_by_idem(struct store *s, const char *key, struct job **out,
		      struct err *err);
/*
 * Jobs newest first (created_at, then seq, descending). status is an enum
 * job_status or -1 for any; limit <= 0 means no limit. before_id pages on:
 * only jobs older than that one are listed (NULL: from the newest); an
 * unknown before_id fails with ERR_INVALID. Caller owns *out (an array of
 * *n jobs, NULL when empty); free with store_jobs_free().
 */
int store_job_list(struct store *s, int status, int limit,
		   const char *before_id, struct job ***out, size_t *n,
		   struct err *err);
/* The same, only the jobs of one owner (an API key id); owner NULL: all. */
int store_job_list_of(struct store *s, const char *owner, int status, int limit,
		      const char *before_id, struct job ***out, size_t *n,
		      struct err *err);
/*
 * Every queued, preparing or running job in queue order (priority
 * descending, then seq ascending), to rebuild the queue at startup and
 * reconcile jobs that were in flight. Ownership as store_job_list().
 */
int store_job_active(struct store *s, struct job ***out, size_t *n,
		     struct err *err);
/* Number of jobs with that status (-1: all jobs) into *n. */
int store_job_count(struct store *s, int status, int64_t *n, struct err *err);
/* Frees n jobs and the array. NULL is a no-op. */
void store_jobs_free(struct job **v, size_t n);

/*
 * Records a runner that fnrun started, replacing any row with the same id.
 * Strings are copied; container_id may be NULL.
 */
int store_runner_put(struct store *s, const char *id, const char *model_id,
		     int pid, int port, const char *container_id,
		     int64_t started_at, struct err *err);
/* Forgets a runner; deleting an unknown id is not an error. */
int store_runner_delete(struct store *s, const char *id, struct err *err);
/*
 * Every recorded runner, oldest first. Caller owns *out (NULL when empty);
 * free with store_runners_free().
 */
int store_runner_list(struct store *s, struct store_runner **out, size_t *n,
		      struct err *err);
/* Frees n runners and the array. NULL is a no-op. */
void store_runners_free(struct store_runner *v, size_t n);

/*
 * Writes new bytes to the file (a row of the meta table), as its own
 * transaction or inside the caller's: whether the store takes writes now,
 * after a commit failed. Returns 0, or -1 with ERR_IO.
 */
int store_probe(struct store *s, struct err *err);

/*
 * Small named values that outlive a restart (the meta table): an
 * operator's hold of a model is "hold/<model id>". Values are text of at
 * most 1023 bytes (longer ones are cut when read). store_meta_list calls
 * fn for every key that starts with prefix, in key order; the strings are
 * valid during the call only.
 */
typedef void (*store_meta_fn)(const char *key, const char *value, void *ud);
int store_meta_put(struct store *s, const char *key, const char *value, struct err *err);
int store_meta_delete(struct store *s, const char *key, struct err *err);
int store_meta_list(struct store *s, const char *prefix, store_meta_fn fn, void *ud,
		    struct err *err);

/*
 * Run time of the jobs each owner (API key) ran since since_ms (finished
 * ones): fn(owner, model_id, ms, ud) once per (owner, model), for quotas
 * that count GPU time after a restart.
 */
typedef void (*store_usage_fn)(const char *owner, const char *model_id, int64_t ms, void *ud);
int store_key_usage_since(struct store *s, int64_t since_ms, store_usage_fn fn, void *ud,
			  struct err *err);

#endif
