/*
 * store.c - the job store's front (store.h): picks the backend at open (a
 * postgres:// URL: PostgreSQL, store_pg.c; anything else: a SQLite file,
 * store_sqlite.c), checks what both would check, and calls the backend
 * through its struct store__ops (store_internal.h). The job columns both
 * backends bind and read are defined here once.
 */
#include <stdlib.h>
#include <string.h>

#include "store.h"
#include "store_internal.h"
#include "util.h"

const struct store__field store__job_fields[] = {
#define FIELD(name, type) {#name, type, offsetof(struct job, name)}
	/* Immutable: written by insert only. */
	FIELD(id, F_ID),
	FIELD(function, F_TEXT),
	FIELD(params_json, F_TEXT),
	FIELD(idempotency_key, F_NTEXT),
	FIELD(created_at, F_I64),
	FIELD(owner, F_NTEXT),
	FIELD(route_key, F_NTEXT),
	/* Mutable, from STORE__FIRST_MUTABLE on: written by update too. */
	FIELD(quality, F_TEXT), /* lowered when an out-of-memory job retries */
	FIELD(status, F_STATUS),
	FIELD(priority, F_INT),
	FIELD(attempt, F_INT),
	FIELD(max_attempts, F_INT),
	FIELD(model_id, F_NTEXT),
	FIELD(model_version, F_NTEXT),
	FIELD(runner_id, F_NTEXT),
	FIELD(remote_prompt_id, F_NTEXT),
	FIELD(remote_url, F_NTEXT),
	FIELD(progress, F_INT),
	FIELD(message, F_TEXT),
	FIELD(error_code, F_NTEXT),
	FIELD(error_message, F_NTEXT),
	FIELD(error_suggestion, F_NTEXT),
	FIELD(error_action, F_NTEXT),
	FIELD(error_detail, F_NTEXT),
	FIELD(outputs_json, F_TEXT),
	FIELD(tried_json, F_TEXT),
	FIELD(started_at, F_I64),
	FIELD(finished_at, F_I64),
	FIELD(updated_at, F_I64),
#undef FIELD
};

_Static_assert(sizeof store__job_fields / sizeof store__job_fields[0] == STORE__NFIELDS,
	       "STORE__NFIELDS counts store__job_fields[]");

int store__is_pg_url(const char *s)
{
	return s != NULL &&
	       (strncmp(s, "postgres://", 11) == 0 || strncmp(s, "postgresql://", 13) == 0);
}

struct store *store_open(const char *where, struct err *err)
{
	return store__is_pg_url(where) ? store__pg_open(where, err)
				       : store__sqlite_open(where, err);
}

void store_close(struct store *s)
{
	if (s != NULL)
		s->ops->close(s);
}

int store_schema_version(void)
{
	return store__sqlite_schema_version();
}

int store_begin(struct store *s, struct err *err)
{
	return s->ops->begin(s, err);
}

int store_commit(struct store *s, struct err *err)
{
	if (s->depth == 0) {
		err_set(err, ERR_INTERNAL, "job store: commit without begin");
		return -1;
	}
	return s->ops->commit(s, err);
}

int store_rollback(struct store *s, struct err *err)
{
	if (s->depth == 0) {
		err_set(err, ERR_INTERNAL, "job store: rollback without begin");
		return -1;
	}
	return s->ops->rollback(s, err);
}

int store_depth(const struct store *s)
{
	return s->depth;
}

int store_job_insert(struct store *s, struct job *j, struct err *err)
{
	if (j->created_at == 0)
		j->created_at = util_now_ms();
	return s->ops->job_insert(s, j, err);
}

int store_job_update(struct store *s, const struct job *j, struct err *err)
{
	return s->ops->job_update(s, j, err);
}

/* The one job a unique key names, or ERR_NOT_FOUND (also for a NULL key). */
static int check_key(const char *key, const char *what, struct job **out, struct err *err)
{
	*out = NULL;
	if (key != NULL)
		return 0;
	err_set(err, ERR_NOT_FOUND, "no job with %s (null)", what);
	return -1;
}

int store_job_get(struct store *s, const char *id, struct job **out, struct err *err)
{
	if (check_key(id, "id", out, err) < 0)
		return -1;
	return s->ops->job_get(s, id, out, err);
}

int store_job_by_idem(struct store *s, const char *key, struct job **out, struct err *err)
{
	if (check_key(key, "idempotency key", out, err) < 0)
		return -1;
	return s->ops->job_by_idem(s, key, out, err);
}

static int check_status(int status, struct err *err)
{
	if (status == -1 || (status >= 0 && status < JOB_STATUS_COUNT))
		return 0;
	err_set(err, ERR_INVALID, "unknown job status %d", status);
	return -1;
}

int store_job_list(struct store *s, int status, int limit, const char *before_id,
		   struct job ***out, size_t *n, struct err *err)
{
	return store_job_list_of(s, NULL, status, limit, before_id, out, n, err);
}

int store_job_list_of(struct store *s, const char *owner, int status, int limit,
		      const char *before_id, struct job ***out, size_t *n, struct err *err)
{
	*out = NULL;
	*n = 0;
	if (check_status(status, err) < 0)
		return -1;
	return s->ops->job_list(s, owner, status, limit, before_id, out, n, err);
}

int store_job_active(struct store *s, struct job ***out, size_t *n, struct err *err)
{
	*out = NULL;
	*n = 0;
	return s->ops->job_active(s, out, n, err);
}

int store_job_count(struct store *s, int status, int64_t *n, struct err *err)
{
	if (check_status(status, err) < 0)
		return -1;
	return s->ops->job_count(s, status, n, err);
}

void store_jobs_free(struct job **v, size_t n)
{
	if (v == NULL)
		return;
	for (size_t i = 0; i < n; i++)
		job_free(v[i]);
	free(v);
}

int store_runner_put(struct store *s, const char *id, const char *model_id, int pid, int port,
		     const char *container_id, int64_t started_at, struct err *err)
{
	return s->ops->runner_put(s, id, model_id, pid, port, container_id, started_at, err);
}

int store_runner_delete(struct store *s, const char *id, struct err *err)
{
	return s->ops->runner_delete(s, id, err);
}

int store_runner_list(struct store *s, struct store_runner **out, size_t *n, struct err *err)
{
	*out = NULL;
	*n = 0;
	return s->ops->runner_list(s, out, n, err);
}

void store_runners_free(struct store_runner *v, size_t n)
{
	if (v == NULL)
		return;
	for (size_t i = 0; i < n; i++) {
		free(v[i].id);
		free(v[i].model_id);
		free(v[i].container_id);
	}
	free(v);
}

int store_probe(struct store *s, struct err *err)
{
	return s->ops->probe(s, err);
}

int store_meta_put(struct store *s, const char *key, const char *value, struct err *err)
{
	return s->ops->meta_put(s, key, value, err);
}

int store_meta_delete(struct store *s, const char *key, struct err *err)
{
	return s->ops->meta_delete(s, key, err);
}

int store_meta_list(struct store *s, const char *prefix, store_meta_fn fn, void *ud,
		    struct err *err)
{
	return s->ops->meta_list(s, prefix, fn, ud, err);
}

int store_key_usage_since(struct store *s, int64_t since_ms, store_usage_fn fn, void *ud,
			  struct err *err)
{
	return s->ops->key_usage(s, since_ms, fn, ud, err);
}

/* ---- several nodes ---- */

int store_shared(const struct store *s)
{
	return s->ops->cluster != NULL;
}

/* The shared backend's operations, or ERR_INVALID for one node's own. */
static const struct store__cluster_ops *shared(const struct store *s, struct err *err)
{
	if (s->ops->cluster == NULL)
		err_set(err, ERR_INVALID, "the job store is one node's own (SQLite); several nodes "
			"share a PostgreSQL store (server.store: postgres://...)");
	return s->ops->cluster;
}

void store_set_node(struct store *s, const char *node, int64_t lease_ms)
{
	if (s->ops->cluster)
		s->ops->cluster->set_node(s, node, lease_ms);
}

int store_job_claim(struct store *s, const char *function, const char *quality, int n,
		    struct job ***out, size_t *nout, struct err *err)
{
	const struct store__cluster_ops *c = shared(s, err);

	*out = NULL;
	*nout = 0;
	return c ? c->claim(s, function, quality, n, out, nout, err) : -1;
}

int store_lease_renew(struct store *s, struct err *err)
{
	const struct store__cluster_ops *c = shared(s, err);

	return c ? c->renew(s, err) : -1;
}

int store_lease_sweep(struct store *s, int64_t *n, struct err *err)
{
	const struct store__cluster_ops *c = shared(s, err);

	*n = 0;
	return c ? c->sweep(s, n, err) : -1;
}

int store_job_cancel_remote(struct store *s, const char *id, int *state, struct err *err)
{
	const struct store__cluster_ops *c = shared(s, err);

	*state = 0;
	return c ? c->cancel_remote(s, id, state, err) : -1;
}

int store_notify(struct store *s, const char *payload, struct err *err)
{
	const struct store__cluster_ops *c = shared(s, err);

	return c ? c->notify(s, payload, err) : -1;
}

int store_listen_fd(struct store *s)
{
	return s->ops->cluster ? s->ops->cluster->listen_fd(s) : -1;
}

int store_notes(struct store *s, store_note_fn fn, void *ud, struct err *err)
{
	const struct store__cluster_ops *c = shared(s, err);

	return c ? c->notes(s, fn, ud, err) : -1;
}
