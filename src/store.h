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

/*
 * ---- Several nodes on one store (PostgreSQL only) ----
 *
 * On a shared store a job is run by the node that claimed it: a submit
 * inserts it unclaimed; a node with room for its function and quality
 * claims it (store_job_claim) under a lease it renews (store_lease_renew);
 * a lease that runs out (the node died) puts the job back in the queue
 * (store_lease_sweep, run by every node), a running attempt counted as
 * spent. Each claim bumps the job's lease generation, and every update a
 * node writes names the generation it holds: a node that lost the job
 * (its lease ran out and another claimed it) has its update refused
 * (ERR_CONFLICT), so it cannot finish a job twice. Times are the
 * database's clock. The SQLite store is one node's own: store_shared()
 * says 0 and the functions below fail with ERR_INVALID.
 */
int store_shared(const struct store *s);
/*
 * On a shared store, store_job_insert() claims the job for this node at
 * once (its lease_gen becomes 1), unless j->lease_gen is STORE_UNCLAIMED:
 * then any node may claim it.
 */
#define STORE_UNCLAIMED (-1)
#define STORE_LEASE_MS 10000 /* a claim's lease unless store_set_node() says otherwise */
/* This node's name (runners and claims are scoped by it) and lease length. */
void store_set_node(struct store *s, const char *node, int64_t lease_ms);
/*
 * Claims at most n unclaimed queued jobs of function at quality, by
 * priority then queue order, skipping rows another node is claiming.
 * Caller owns *out (jobs with lease_gen set); free with store_jobs_free().
 */
int store_job_claim(struct store *s, const char *function, const char *quality, int n,
		    struct job ***out, size_t *nout, struct err *err);
/* Extends the lease of every live job this node holds. */
int store_lease_renew(struct store *s, struct err *err);
/* Jobs of any node whose lease ran out go back to the queue; *n of them. */
int store_lease_sweep(struct store *s, int64_t *n, struct err *err);
/*
 * Cancels a job this node does not hold: one nobody claimed is cancelled
 * now (*state 1); one another node holds is marked, for that node (or the
 * next to claim it) to cancel (*state 2; notify it); else *state 0 (no
 * such live job).
 */
int store_job_cancel_remote(struct store *s, const char *id, int *state, struct err *err);
/*
 * Notes between nodes: store_notify queues payload (at most 7,900 bytes)
 * for every listening node, sent when the current transaction commits (at
 * once outside one). store_listen_fd is the connection's socket to poll
 * for readability (-1 when none; it changes after a reconnect), and
 * store_notes calls fn for every note received so far (this node's own
 * included). Both start listening on first use and after a reconnect.
 */
int store_notify(struct store *s, const char *payload, struct err *err);
int store_listen_fd(struct store *s);
typedef void (*store_note_fn)(const char *payload, void *ud);
int store_notes(struct store *s, store_note_fn fn, void *ud, struct err *err);

#endif
