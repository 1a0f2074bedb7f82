/*
 * sched_cluster.c - this node's part when several nodes share a
 * PostgreSQL store (store.h, "Several nodes"; docs/design.md §8).
 *
 * A submit that this node has room to start soon is claimed at its insert
 * and runs here, as on one machine. One it has no room for is inserted
 * unclaimed (its reply says queued) and left to whichever node has room
 * first: the pump claims, for each tier with room, as many unclaimed jobs
 * as it could start (sched__cluster_claim), when there may be some: a
 * note "new" from any node, a lapsed lease swept back, and once a second
 * in case a note was missed. Claimed jobs enter the tier's queue as jobs
 * restored at start do.
 *
 * This node renews the leases of the jobs it holds every third of the
 * lease, and sweeps lapsed ones of any node back to the queue every
 * second. A commit of this node's changes notes the jobs it changed
 * ("job ID ..."): a node with watchers of one reads its view from the
 * store and tells them, so events reach a watcher on any node. A cancel
 * of a job another node holds is marked in the store and noted ("cancel
 * ID"); the node holding it cancels it. An update the store refuses
 * because this node's claim lapsed drops the job here (sched_commit.c):
 * another node has it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "log.h"
#include "runner.h"
#include "scheduler_internal.h"
#include "server.h"
#include "store.h"
#include "util.h"

#define SWEEP_MS 1000   /* lapsed leases swept, and the pool looked at, this often */
#define NOTE_MAX 7800   /* bytes of one note */

static struct {
	int on;               /* the store is shared */
	int pool;             /* unclaimed jobs may be waiting: the next pump claims */
	int poll_fd;          /* the fd polled, -1 when none */
	uv_poll_t poll;
	int poll_open;
	uv_timer_t renew, sweep;
	struct buf changed;   /* "job ID ID ..." of this turn's changes */
	int news;             /* an unclaimed job was inserted this turn */
} cl = {.poll_fd = -1};

int sched__cluster_on(void)
{
	return cl.on;
}

/* ---- room, hand-off, claims ---- */

/* Jobs tier t could start soon here: idle runners, and runners it may still start. */
static int room(const struct tier *t)
{
	int64_t n = 0, now = util_now_ms();

	for (size_t i = 0; i < t->nmodels; i++) {
		const struct mstate *m = t->models[i];

		if (m->held || m->retired || m->cooldown_until_ms > now || !sched__routable(m))
			continue;
		for (const struct srunner *sr = m->runners; sr; sr = sr->next)
			n += sr->job == NULL && (sr->r->state == RUNNER_READY ||
						 sr->r->state == RUNNER_STARTING);
		if (m->nrunners < m->model->max_instances)
			n += m->model->max_instances - m->nrunners;
		n -= (int64_t)m->q.n;
	}
	n -= (int64_t)t->q.n;
	return n > 1000 ? 1000 : n > 0 ? (int)n : 0;
}

int sched__cluster_hand_off(struct sjob *sj, struct tier *t, struct mstate *pin)
{
	/* t NULL: no model of this node serves it now (none, or all held). */
	if (!cl.on || (t && room(t) > 0) || (t && pin && pin->tier == NULL))
		return 0;
	sj->job->lease_gen = STORE_UNCLAIMED;
	job_set_str(&sj->job->model_id, NULL); /* the claiming node routes it */
	cl.news = 1;
	return 1;
}

/* A claimed job waits here as a job restored at start does. */
static void adopt(struct job *j)
{
	const struct reg_function *fn = registry_function(sched__s.reg, j->function);
	int q = fn ? registry_quality_index(fn, j->quality) : -1;
	struct json_object *params = NULL;
	struct err e = {0};
	struct tier *t;
	struct mstate *pin;
	struct sjob *sj;

	if (q < 0 || json_parse(j->params_json, strlen(j->params_json), 64, &params, &e) < 0) {
		log_error("claimed job cannot run here job=%s function=%s", j->id,
			  log_q(j->function));
		json_object_put(params);
		job_free(j);
		return;
	}
	sj = sched__sjob_new(j, sched__s.reg, fn, q, params);
	sched__table_add(sj);
	if (j->cancel_asked) {
		sched__finish(sj, JOB_CANCELLED);
		return;
	}
	if (sched__route(fn, q, sched__route_key(j), &t, &pin) < 0 || t == NULL) {
		sched__fail_job(sj, "MODEL_UNAVAILABLE", NULL, NULL, NULL,
				"claimed by a node without a model for it");
		return;
	}
	job_set_str(&j->model_id, pin ? pin->model->id : NULL);
	sched__enqueue(sj, t, pin);
	sched__set_state(sj, JOB_QUEUED); /* written: the claim is this node's now */
	log_info("job claimed job=%s function=%s quality=%s node=%s", j->id, log_q(j->function),
		 j->quality, server.cfg.node);
}

void sched__cluster_claim(void)
{
	int asked = 0, got = 0;

	if (!cl.on || !cl.pool || server.stopping || !sched__store_ok() ||
	    store_depth(server.store) > 0)
		return;
	/* The pool is known empty only after a claim that got fewer jobs than it asked for. */
	for (size_t i = 0; i < sched__s.ntiers; i++) {
		struct tier *t = sched__s.tiers[i];
		int n = room(t);
		struct job **v = NULL;
		size_t nv = 0;
		struct err e = {0};

		if (n == 0)
			continue;
		asked += n;
		if (store_job_claim(server.store, t->fn->name, t->fn->qualities[t->quality].key, n, &v,
				    &nv, &e) < 0) {
			log_warn("claim failed function=%s err=%s", log_q(t->fn->name), log_q(e.msg));
			return;
		}
		got += (int)nv;
		if ((int)nv < n)
			cl.pool = 0; /* until a note or the sweep says there may be more */
		for (size_t k = 0; k < nv; k++)
			adopt(v[k]);
		free(v);
	}
	if (got > 0)
		log_debug("claimed jobs=%d room=%d", got, asked);
}

/* ---- notes ---- */

void sched__cluster_changed(const struct sjob *sj)
{
	if (!cl.on || sj->job->lease_gen == STORE_UNCLAIMED)
		return;
	if (cl.changed.len == 0)
		buf_append(&cl.changed, "job", 3);
	buf_printf(&cl.changed, " %s", sj->job->id);
}

/* Inside the commit's transaction: sent when it commits. */
int sched__cluster_commit_notes(struct err *err)
{
	int rc = 0;

	if (!cl.on)
		return 0;
	if (cl.news)
		rc = store_notify(server.store, "new", err);
	/* Split at ids: a note holds at most NOTE_MAX bytes. */
	for (size_t at = 0; rc == 0 && at < cl.changed.len;) {
		size_t n = cl.changed.len - at;
		char *note;

		if (n > NOTE_MAX) {
			n = NOTE_MAX;
			while (n > 0 && cl.changed.data[at + n] != ' ')
				n--;
		}
		note = at == 0 ? xstrndup(cl.changed.data, n)
			       : xasprintf("job%.*s", (int)n, cl.changed.data + at);
		rc = store_notify(server.store, note, err);
		free(note);
		at += n;
	}
	return rc;
}

void sched__cluster_committed(void)
{
	cl.news = 0;
	buf_reset(&cl.changed);
}

/* A job another node changed: tell this node's watchers of it. */
static void remote_changed(const char *id)
{
	struct json_object *v;

	if (sched__find(id) != NULL || sched__s.hooks.watched == NULL ||
	    !sched__s.hooks.watched(id))
		return;
	v = sched_view(id, NULL);
	if (v == NULL)
		return;
	if (sched__s.hooks.publish)
		sched__s.hooks.publish(id, "state", v);
	json_object_put(v);
}

static void on_note(const char *payload, void *ud)
{
	char id[64];
	const char *p;

	if (strcmp(payload, "new") == 0) {
		cl.pool = 1;
		sched__pump();
	} else if (strncmp(payload, "cancel ", 7) == 0) {
		struct sjob *sj = sched__find(payload + 7);
		if (sj != NULL && !sj->retiring)
			sched_cancel(sj->job->id, &(struct err){0});
	} else if (strncmp(payload, "job ", 4) == 0) {
		for (p = payload + 3; *p == ' ';) {
			size_t n = strcspn(p + 1, " ");
			snprintf(id, sizeof id, "%.*s", (int)(n < sizeof id ? n : sizeof id - 1), p + 1);
			remote_changed(id);
			p += 1 + n;
		}
	}
}

static void poll_stop(void);

void sched__cluster_read_notes(void)
{
	struct err e = {0};

	if (!cl.on)
		return;
	if (store_notes(server.store, on_note, NULL, &e) < 0)
		poll_stop(); /* the session is gone; polled again after a reconnect */
}

static void on_readable(uv_poll_t *h, int status, int events)
{
	sched__cluster_read_notes();
}

static void poll_closed(uv_handle_t *h)
{
	(void)h;
}

static void poll_stop(void)
{
	if (cl.poll_open) {
		uv_poll_stop(&cl.poll);
		uv_close((uv_handle_t *)&cl.poll, poll_closed);
		cl.poll_open = 0;
	}
	cl.poll_fd = -1;
}

/* Polls the store's socket (again after a reconnect: it may be a new one). */
static void poll_refresh(void)
{
	int fd = store_listen_fd(server.store);

	if (fd == cl.poll_fd && cl.poll_open)
		return;
	poll_stop();
	if (fd < 0 || uv_poll_init(server.loop, &cl.poll, fd) != 0)
		return;
	cl.poll_open = 1;
	cl.poll_fd = fd;
	uv_poll_start(&cl.poll, UV_READABLE, on_readable);
}

/* ---- leases ---- */

static void on_renew(uv_timer_t *t)
{
	struct err e = {0};

	if (store_depth(server.store) == 0 && store_lease_renew(server.store, &e) < 0)
		log_warn("leases not renewed node=%s err=%s", server.cfg.node, log_q(e.msg));
}

static void on_sweep(uv_timer_t *t)
{
	struct err e = {0};
	int64_t n = 0;

	if (store_depth(server.store) == 0 && store_lease_sweep(server.store, &n, &e) < 0) {
		log_warn("leases not swept err=%s", log_q(e.msg));
		return;
	}
	poll_refresh();
	sched__cluster_read_notes();
	cl.pool = 1; /* a note may have been missed; a swept job waits */
	if (n > 0)
		store_notify(server.store, "new", &e);
	sched__pump();
}

/* ---- cancel ---- */

int sched__cluster_cancel(const char *id, struct err *err)
{
	int state = 0;
	char note[80];

	if (store_job_cancel_remote(server.store, id, &state, err) < 0)
		return -1;
	if (state == 0) {
		err_set(err, ERR_CONFLICT, "the job has already finished");
		return -1;
	}
	snprintf(note, sizeof note, state == 1 ? "job %s" : "cancel %s", id);
	store_notify(server.store, note, NULL);
	return 0;
}

/* ---- start, stop ---- */

void sched__cluster_init(void)
{
	uint64_t renew = (uint64_t)(server.cfg.lease_ms > 0 ? server.cfg.lease_ms : 10000) / 3;

	cl.on = store_shared(server.store);
	if (!cl.on)
		return;
	buf_init(&cl.changed, 1 << 20);
	cl.pool = 1;
	uv_timer_init(server.loop, &cl.renew);
	uv_timer_init(server.loop, &cl.sweep);
	uv_timer_start(&cl.renew, on_renew, renew, renew);
	uv_timer_start(&cl.sweep, on_sweep, SWEEP_MS, SWEEP_MS);
	poll_refresh();
	log_info("node on a shared store node=%s lease_ms=%lld", server.cfg.node,
		 (long long)server.cfg.lease_ms);
	sched__pump();
}

void sched__cluster_shutdown(void)
{
	if (!cl.on)
		return;
	poll_stop();
	uv_close((uv_handle_t *)&cl.renew, NULL);
	uv_close((uv_handle_t *)&cl.sweep, NULL);
	buf_cleanup(&cl.changed);
	cl.on = 0;
}
