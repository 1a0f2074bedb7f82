/*
 * store_pg_cluster.c - several nodes on one PostgreSQL store (store.h,
 * "Several nodes"): claims with FOR UPDATE SKIP LOCKED, leases on the
 * database's clock, the sweep that hands a dead node's jobs back, cancels
 * of jobs another node holds, and notes between nodes (LISTEN/NOTIFY on
 * the channel "fnrun").
 *
 * A claim bumps lease_gen; the update of store_pg.c names the node and the
 * generation it holds, so a node whose lease lapsed cannot write the job
 * again (fencing). The sweep bumps it too, so even a node that comes back
 * before anyone claims the job is refused.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "store.h"
#include "store_pg_internal.h"
#include "util.h"

#define LIVE "('queued', 'preparing', 'running')"

enum cstmt { C_CLAIM, C_RENEW, C_SWEEP, C_CANCEL_FREE, C_CANCEL_ASK, C_NOTIFY, C_COUNT };

static const char *const cstmt_sql[C_COUNT] = {
	[C_CLAIM] = "UPDATE jobs SET node = $1, lease_until = " PG_NOW_MS " + $2,"
		    " lease_gen = lease_gen + 1"
		    " WHERE seq IN (SELECT seq FROM jobs WHERE node IS NULL AND status = 'queued'"
		    "  AND function = $3 AND quality = $4 ORDER BY priority DESC, seq LIMIT $5"
		    "  FOR UPDATE SKIP LOCKED)"
		    " RETURNING " STORE__JOB_COLS ", lease_gen, cancel_requested",
	[C_RENEW] = "UPDATE jobs SET lease_until = " PG_NOW_MS " + $2"
		    " WHERE node = $1 AND status IN " LIVE,
	/* A running attempt on a dead node is spent; a queued one is not. */
	[C_SWEEP] = "UPDATE jobs SET node = NULL, lease_gen = lease_gen + 1,"
		    " attempt = CASE WHEN status = 'queued' THEN attempt ELSE attempt + 1 END,"
		    " status = 'queued', runner_id = NULL, remote_prompt_id = NULL,"
		    " remote_url = NULL, progress = 0, updated_at = " PG_NOW_MS
		    " WHERE node IS NOT NULL AND lease_until < " PG_NOW_MS " AND status IN " LIVE
		    " RETURNING id, function, quality",
	[C_CANCEL_FREE] = "UPDATE jobs SET status = 'cancelled', finished_at = " PG_NOW_MS ","
			  " updated_at = " PG_NOW_MS
			  " WHERE id = $1 AND node IS NULL AND status = 'queued' RETURNING id",
	[C_CANCEL_ASK] = "UPDATE jobs SET cancel_requested = true"
			 " WHERE id = $1 AND status IN " LIVE " RETURNING node",
	[C_NOTIFY] = "SELECT pg_notify('fnrun', $1)",
};

static PGresult *crun(struct store_pg *s, int i, int n, const char *const *v, const char *what,
		      struct err *err)
{
	char name[16];

	snprintf(name, sizeof name, "c%d", i);
	return store__pg_run(s, name, n, v, what, err);
}

int store__pg_cluster_session(struct store_pg *s, struct err *err)
{
	if (store__pg_prepare(s, "c", cstmt_sql, C_COUNT, err) < 0)
		return -1;
	return store__pg_exec(s, "LISTEN fnrun", "listen", err);
}

static void set_node(struct store *base, const char *node, int64_t lease_ms)
{
	struct store_pg *s = store__pg(base);

	if (node && *node)
		snprintf(s->node, sizeof s->node, "%s", node);
	if (lease_ms > 0)
		s->lease_ms = lease_ms;
}

static int claim(struct store *base, const char *function, const char *quality, int n,
		 struct job ***out, size_t *nout, struct err *err)
{
	struct store_pg *s = store__pg(base);
	char lease[24], lim[16];
	const char *v[5] = {s->node, lease, function, quality, lim};
	PGresult *r;
	int rc;

	if (n <= 0)
		return 0;
	snprintf(lease, sizeof lease, "%lld", (long long)s->lease_ms);
	snprintf(lim, sizeof lim, "%d", n);
	r = crun(s, C_CLAIM, 5, v, "claim jobs", err);
	if (r == NULL)
		return -1;
	rc = store__pg_jobs(s, r, 1, out, nout, err);
	PQclear(r);
	return rc;
}

static int renew(struct store *base, struct err *err)
{
	struct store_pg *s = store__pg(base);
	char lease[24];
	const char *v[2] = {s->node, lease};
	PGresult *r;

	snprintf(lease, sizeof lease, "%lld", (long long)s->lease_ms);
	r = crun(s, C_RENEW, 2, v, "renew leases", err);
	PQclear(r);
	return r ? 0 : -1;
}

static int sweep(struct store *base, int64_t *n, struct err *err)
{
	struct store_pg *s = store__pg(base);
	PGresult *r = crun(s, C_SWEEP, 0, NULL, "sweep leases", err);

	if (r == NULL)
		return -1;
	*n = PQntuples(r);
	for (int i = 0; i < PQntuples(r); i++)
		log_warn("lease lapsed, job back in the queue job=%s function=%s quality=%s",
			 PQgetvalue(r, i, 0), log_q(PQgetvalue(r, i, 1)), PQgetvalue(r, i, 2));
	PQclear(r);
	return 0;
}

static int cancel_remote(struct store *base, const char *id, int *state, struct err *err)
{
	struct store_pg *s = store__pg(base);
	PGresult *r = crun(s, C_CANCEL_FREE, 1, &id, "cancel job", err);

	if (r == NULL)
		return -1;
	if (PQntuples(r) == 1) {
		*state = 1;
		PQclear(r);
		return 0;
	}
	PQclear(r);
	r = crun(s, C_CANCEL_ASK, 1, &id, "cancel job", err);
	if (r == NULL)
		return -1;
	*state = PQntuples(r) == 1 ? 2 : 0;
	PQclear(r);
	return 0;
}

static int notify(struct store *base, const char *payload, struct err *err)
{
	struct store_pg *s = store__pg(base);
	PGresult *r;

	if (strlen(payload) > 7900) {
		err_set(err, ERR_INVALID, "note of %zu bytes: at most 7900", strlen(payload));
		return -1;
	}
	r = crun(s, C_NOTIFY, 1, &payload, "notify", err);
	PQclear(r);
	return r ? 0 : -1;
}

static int listen_fd(struct store *base)
{
	struct store_pg *s = store__pg(base);

	return PQstatus(s->conn) == CONNECTION_OK ? PQsocket(s->conn) : -1;
}

static int notes(struct store *base, store_note_fn fn, void *ud, struct err *err)
{
	struct store_pg *s = store__pg(base);
	PGnotify *n;

	if (PQstatus(s->conn) != CONNECTION_OK || !s->ready)
		return store__pg_fail(s, NULL, "notes", err);
	if (!PQconsumeInput(s->conn)) {
		s->ready = 0;
		return store__pg_fail(s, NULL, "notes", err);
	}
	while ((n = PQnotifies(s->conn)) != NULL) {
		fn(n->extra, ud);
		PQfreemem(n);
	}
	return 0;
}

const struct store__cluster_ops store__pg_cluster = {
	.set_node = set_node,
	.claim = claim,
	.renew = renew,
	.sweep = sweep,
	.cancel_remote = cancel_remote,
	.notify = notify,
	.listen_fd = listen_fd,
	.notes = notes,
};
