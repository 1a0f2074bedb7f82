/*
 * store_pg_internal.h - between store_pg.c (the tables, jobs, runners,
 * meta) and store_pg_cluster.c (claims, leases, notes between nodes).
 */
#ifndef FNRUN_STORE_PG_INTERNAL_H
#define FNRUN_STORE_PG_INTERNAL_H

#include <libpq-fe.h>

#include "store_internal.h"

/* The database's clock, in ms since the epoch (leases are measured on it). */
#define PG_NOW_MS "(extract(epoch from clock_timestamp()) * 1000)::bigint"

struct store_pg {
	struct store base; /* first: a struct store * is one of these */
	PGconn *conn;
	char *url;         /* to connect again */
	char *where;       /* the URL without its password, for messages */
	char node[256];    /* this node: runners rows and claims are its own */
	int64_t lease_ms;  /* a claim's lease */
	int ready;         /* statements prepared and LISTEN sent on this session */
	int64_t reset_at;  /* no reset before (ms) */
};

static inline struct store_pg *store__pg(struct store *s)
{
	return (struct store_pg *)s;
}

/* Sets ERR_IO with the result's (or the connection's) message; returns -1. */
int store__pg_fail(struct store_pg *s, const PGresult *r, const char *what, struct err *err);
/* Runs constant SQL for its effect. */
int store__pg_exec(struct store_pg *s, const char *sql, const char *what, struct err *err);
/*
 * Runs the prepared statement `name` with n text parameters (NULL: SQL
 * NULL), reconnecting first when the session was lost. The result, which
 * the caller clears, or NULL with err.
 */
PGresult *store__pg_run(struct store_pg *s, const char *name, int n, const char *const *values,
			const char *what, struct err *err);
/* Prepares sql[0..n) as prefix0, prefix1, ... */
int store__pg_prepare(struct store_pg *s, const char *prefix, const char *const *sql, int n,
		      struct err *err);
/*
 * The rows of r as jobs: STORE__JOB_COLS, then (with_claim) lease_gen and
 * cancel_requested. Caller owns *out.
 */
int store__pg_jobs(struct store_pg *s, const PGresult *r, int with_claim, struct job ***out,
		   size_t *n, struct err *err);

/* store_pg_cluster.c */
extern const struct store__cluster_ops store__pg_cluster;
/* Prepares the cluster statements and LISTENs (each new session). */
int store__pg_cluster_session(struct store_pg *s, struct err *err);

#endif
