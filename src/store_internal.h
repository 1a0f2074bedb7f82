/*
 * store_internal.h - between the store's own files only (store*.c): the
 * backend interface behind store.h, and the job columns both backends
 * share. store.c is the front: it checks arguments, picks the backend at
 * open, and calls it through struct store__ops; store_sqlite.c (the
 * embedded default) and store_pg.c (PostgreSQL, for several nodes) each
 * embed a struct store as the first member of their own.
 */
#ifndef FNRUN_STORE_INTERNAL_H
#define FNRUN_STORE_INTERNAL_H

#include <sqlite3.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "job.h"
#include "store.h"

/* How a column of jobs is kept in struct job. */
enum store__ftype {
	F_ID,     /* char[JOB_ID_LEN + 1] */
	F_TEXT,   /* char *, never NULL */
	F_NTEXT,  /* char *, nullable */
	F_INT,    /* int */
	F_I64,    /* int64_t */
	F_STATUS, /* int enum job_status, stored by name */
};

struct store__field {
	const char *name;
	int type;   /* enum store__ftype */
	size_t off; /* in struct job */
};

/*
 * The columns of jobs in the order both backends bind and read them:
 * immutable ones (written by insert only) first, then from
 * STORE__FIRST_MUTABLE on those an update writes too. seq follows them in
 * every SELECT.
 */
extern const struct store__field store__job_fields[];
#define STORE__NFIELDS 29
#define STORE__FIRST_MUTABLE 7
/* The columns as SQL, in that order, then seq. */
#define STORE__JOB_COLS                                                       \
	"id, function, params_json, idempotency_key, created_at, owner, "     \
	"route_key, quality, "                                                \
	"status, priority, attempt, max_attempts, model_id, model_version, "  \
	"runner_id, "                                                         \
	"remote_prompt_id, remote_url, progress, message, error_code, "       \
	"error_message, error_suggestion, error_action, error_detail, "       \
	"outputs_json, tried_json, started_at, finished_at, updated_at, seq"

/*
 * One backend. Arguments are checked by store.c (a known status, a job's
 * created_at set) before a call; the contracts are store.h's.
 */
struct store__ops {
	void (*close)(struct store *s);
	int (*begin)(struct store *s, struct err *err);
	int (*commit)(struct store *s, struct err *err);
	int (*rollback)(struct store *s, struct err *err);
	int (*job_insert)(struct store *s, struct job *j, struct err *err);
	int (*job_update)(struct store *s, const struct job *j, struct err *err);
	int (*job_get)(struct store *s, const char *id, struct job **out, struct err *err);
	int (*job_by_idem)(struct store *s, const char *key, struct job **out, struct err *err);
	int (*job_list)(struct store *s, const char *owner, int status, int limit,
			const char *before_id, struct job ***out, size_t *n, struct err *err);
	int (*job_active)(struct store *s, struct job ***out, size_t *n, struct err *err);
	int (*job_count)(struct store *s, int status, int64_t *n, struct err *err);
	int (*runner_put)(struct store *s, const char *id, const char *model_id, int pid, int port,
			  const char *container_id, int64_t started_at, struct err *err);
	int (*runner_delete)(struct store *s, const char *id, struct err *err);
	int (*runner_list)(struct store *s, struct store_runner **out, size_t *n, struct err *err);
	int (*probe)(struct store *s, struct err *err);
	int (*meta_put)(struct store *s, const char *key, const char *value, struct err *err);
	int (*meta_delete)(struct store *s, const char *key, struct err *err);
	int (*meta_list)(struct store *s, const char *prefix, store_meta_fn fn, void *ud,
			 struct err *err);
	int (*key_usage)(struct store *s, int64_t since_ms, store_usage_fn fn, void *ud,
			 struct err *err);
	/* Several nodes: NULL in a backend that is one node's own. */
	const struct store__cluster_ops *cluster;
};

/* What a shared backend adds (store.h, "Several nodes"). */
struct store__cluster_ops {
	void (*set_node)(struct store *s, const char *node, int64_t lease_ms);
	int (*claim)(struct store *s, const char *function, const char *quality, int n,
		     struct job ***out, size_t *nout, struct err *err);
	int (*renew)(struct store *s, struct err *err);
	int (*sweep)(struct store *s, int64_t *n, struct err *err);
	int (*cancel_remote)(struct store *s, const char *id, int *state, struct err *err);
	int (*notify)(struct store *s, const char *payload, struct err *err);
	int (*listen_fd)(struct store *s);
	int (*notes)(struct store *s, store_note_fn fn, void *ud, struct err *err);
};

/* What every backend's store starts with. */
struct store {
	const struct store__ops *ops;
	int depth; /* unmatched store_begin() calls; the backend keeps it */
};

/* store_sqlite.c: the SQLite connection, or NULL when s is another backend's. Borrowed. */
sqlite3 *store__db(struct store *s);
/* store_sqlite.c: the file at path (store_open's contract). */
struct store *store__sqlite_open(const char *path, struct err *err);
int store__sqlite_schema_version(void);
/* store_pg.c: the PostgreSQL database at a postgres:// URL. */
struct store *store__pg_open(const char *url, struct err *err);
/* 1 when s names a PostgreSQL database (postgres:// or postgresql://). */
int store__is_pg_url(const char *s);

#endif
