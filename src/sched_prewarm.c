/*
 * sched_prewarm.c - the scheduler's side of pre-warming and autoscaling:
 * every job's arrival goes into the demand model (demand.h), and at each
 * tick a snapshot of every model that asks for it (`prewarm: true` or a
 * `target_wait`) goes to the policy (prewarm.h), whose decisions are
 * applied here: a runner started, kept past its idle time, or stopped.
 *
 * Clocks: the demand model runs on the demand clock, the wall clock
 * divided by --time-scale, so that a trace replayed in compressed time
 * looks like real hours and days to it (and hours of the week are UTC).
 * The policy gets demand-clock times and durations too; what it decides
 * is applied on the wall clock.
 *
 * Invariants:
 * 1. Only the policy's PW_STOP decisions stop a runner here, and the
 *    runner is checked idle again just before (runner_idle, no job).
 * 2. The demand state is saved into meta rows "demand/<row>" every
 *    PREWARM_SAVE_MS and at shutdown; at the first tick it is read back
 *    from them, or, when there are none, rebuilt from the newest
 *    PREWARM_REBUILD_JOBS jobs of the store.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "demand.h"
#include "job.h"
#include "json.h"
#include "log.h"
#include "prewarm.h"
#include "registry.h"
#include "runner.h"
#include "scheduler_internal.h"
#include "server.h"
#include "store.h"
#include "util.h"
#include "vram.h"

#define PREWARM_TICK_MS 5000       /* the policy runs this often (scaled by --time-scale) */
#define PREWARM_SAVE_MS 60000      /* the demand state is saved this often (wall clock) */
#define PREWARM_REBUILD_JOBS 5000  /* jobs read back when there is no saved state */
#define PREWARM_MIN_HORIZON_MS 60000  /* demand clock */
#define PREWARM_MAX_HORIZON_MS 600000 /* demand clock */
#define PREWARM_DEFAULT_START_S 30.0  /* a cold start before one was measured (demand clock) */
#define WAIT_DECAY 0.2             /* weight of the newest job in the mean wait */

static struct {
	struct demand *d;      /* NULL until the first arrival or tick */
	int loaded;            /* the saved state was read (or rebuilt) */
	int64_t next_tick_ms;  /* wall clock */
	int64_t last_tick_ms;  /* wall clock of the last tick that ran */
	int64_t saved_ms;      /* wall clock */
} pw;

static double scale(void)
{
	return server.cfg.time_scale > 0 ? server.cfg.time_scale : 1.0;
}

/* Wall clock ms to the demand clock. */
static int64_t dclock(int64_t wall_ms)
{
	return (int64_t)((double)wall_ms / scale());
}

static int uses_policy(const struct mstate *m)
{
	return !m->retired && (m->model->prewarm || m->model->target_wait_ms > 0);
}

static int any_policy(void)
{
	for (size_t i = 0; i < sched__s.nmodels; i++)
		if (uses_policy(sched__s.models[i]))
			return 1;
	return 0;
}

/* ---- the demand state: load, rebuild, save ---- */

static void rebuild_from_jobs(void)
{
	struct job **v = NULL;
	size_t n = 0;
	struct err e = {0};

	if (store_job_list(server.store, -1, PREWARM_REBUILD_JOBS, NULL, &v, &n, &e) < 0) {
		log_warn("demand: the job history could not be read err=%s", log_q(e.msg));
		return;
	}
	for (size_t i = n; i-- > 0;) /* oldest first */
		demand_record(pw.d, dclock(v[i]->created_at), v[i]->function, v[i]->quality,
			      v[i]->route_key);
	log_info("demand rebuilt from the job history jobs=%zu", n);
	store_jobs_free(v, n);
}

static int load_row(const char *name)
{
	const char *v = sched__meta_get("demand", name);

	return v && demand_load_row(pw.d, name, v) == 0;
}

/* Saved rows for the current registry's tiers; none at all: the job history. */
static void load(void)
{
	char name[300];
	int rows = load_row("e");

	for (size_t i = 0; i < sched__s.ntiers; i++) {
		const struct tier *t = sched__s.tiers[i];
		const char *q = t->fn->qualities[t->quality].key;
		snprintf(name, sizeof name, "r:%s|%s", t->fn->name, q);
		rows += load_row(name);
		snprintf(name, sizeof name, "t:%s|%s", t->fn->name, q);
		rows += load_row(name);
	}
	if (rows == 0)
		rebuild_from_jobs();
	else
		log_info("demand state read back rows=%d", rows);
	pw.loaded = 1;
}

static struct demand *model_get(void)
{
	if (pw.d == NULL)
		pw.d = demand_new(0);
	if (!pw.loaded && server.store)
		load();
	return pw.d;
}

static void save(int64_t now)
{
	char name[256], val[DEMAND_ROW_MAX];

	pw.saved_ms = now;
	if (pw.d == NULL || !sched__store_ok())
		return;
	for (size_t i = 0; i < demand_rows(pw.d); i++)
		if (demand_row(pw.d, i, dclock(now), name, sizeof name, val, sizeof val) == 0 &&
		    strcmp(name, "-") != 0)
			sched__meta_set("demand", name, val);
}

void sched__prewarm_shutdown(void)
{
	if (pw.d && pw.loaded)
		save(util_now_ms());
	demand_free(pw.d);
	memset(&pw, 0, sizeof pw);
}

/* ---- what happens to jobs ---- */

void sched__prewarm_arrival(const struct sjob *sj)
{
	const struct job *j = sj->job;

	/* Nothing uses it (yet): the history is read back when something does. */
	if (pw.d == NULL && !any_policy())
		return;
	demand_record(model_get(), dclock(j->created_at), j->function, j->quality, j->route_key);
}

void sched__prewarm_dispatched(struct mstate *m, const struct sjob *sj)
{
	double w = (double)(util_now_ms() - sj->job->created_at) / scale();

	m->pw.wait_ms = m->pw.wait_ms * (1 - WAIT_DECAY) + w * WAIT_DECAY;
}

/* ---- the snapshot of one model ---- */

/* When sr is due for its idle stop by idle_timeout alone (wall clock). */
static int64_t idle_due(const struct srunner *sr)
{
	return sr->r->last_used_ms +
	       (int64_t)((double)sr->m->model->idle_timeout_ms * server.cfg.time_scale);
}

static int pw_state(const struct srunner *sr)
{
	switch (sr->r->state) {
	case RUNNER_STARTING:
		return PW_R_STARTING;
	case RUNNER_READY:
		return sr->job ? PW_R_BUSY : PW_R_IDLE;
	case RUNNER_STOPPING:
	case RUNNER_FAILED:
		return PW_R_STOPPING;
	default:
		return PW_R_BUSY;
	}
}

/* Jobs that m may run waiting now, and how long the oldest has (demand-clock ms). */
static size_t queued_for(const struct mstate *m, int64_t now, int64_t *oldest)
{
	size_t n = m->q.n;
	int64_t first = m->q.head ? m->q.head->job->created_at : 0;

	if (m->tier && m->tier->q.head) {
		n += m->tier->q.n;
		if (first == 0 || m->tier->q.head->job->created_at < first)
			first = m->tier->q.head->job->created_at;
	}
	*oldest = first ? dclock(now - first) : 0;
	return n;
}

/* The model's share of its tier's predicted demand: split among the models that take jobs. */
static double predicted_for(const struct mstate *m, int64_t now, int64_t horizon_ms)
{
	size_t share = 0;
	double all;

	if (m->tier == NULL)
		return 0;
	for (size_t i = 0; i < m->tier->nmodels; i++)
		share += sched__routable(m->tier->models[i]) && !m->tier->models[i]->held;
	all = demand_predict(pw.d, m->tier->fn->name, m->tier->fn->qualities[m->tier->quality].key,
			     dclock(now), horizon_ms, NULL);
	return share ? all / (double)share : 0;
}

static double cold_start_s(const struct mstate *m)
{
	double s = estimate_start_s(&m->est);

	return s > 0 ? s / scale() : PREWARM_DEFAULT_START_S;
}

static int64_t horizon_of(double cold_s)
{
	int64_t h = (int64_t)(3 * cold_s * 1000);

	return h < PREWARM_MIN_HORIZON_MS	? PREWARM_MIN_HORIZON_MS
	       : h > PREWARM_MAX_HORIZON_MS ? PREWARM_MAX_HORIZON_MS
					    : h;
}

/* The roomiest GPU's free bytes. */
static int64_t free_bytes(void)
{
	int64_t best = 0;

	for (int g = 0; g < vram_count(); g++) {
		const struct vram_gpu *v = vram_gpu(g);
		int64_t f = v->budget == INT64_MAX ? INT64_MAX : v->budget - v->reserved;
		if (f > best)
			best = f;
	}
	return best;
}

static size_t snapshot(const struct mstate *m, int64_t now, struct pw_model *pm,
		       struct pw_runner *rs, struct srunner **srs, size_t max)
{
	size_t n = 0;
	double cold = cold_start_s(m);

	for (struct srunner *sr = m->runners; sr && n < max; sr = sr->next, n++) {
		rs[n] = (struct pw_runner){pw_state(sr), dclock(sr->r->last_used_ms),
					   m->model->runtime == REG_RUNTIME_EXTERNAL,
					   sr->r->ready_ms > 0 && sr->job == NULL &&
						   sr->r->last_used_ms <= sr->r->ready_ms,
					   now >= idle_due(sr)};
		srs[n] = sr;
	}
	*pm = (struct pw_model){
		.id = m->model->id, .runners = rs, .nrunners = n, .cold_start_s = cold,
		.horizon_ms = horizon_of(cold), .run_s = estimate_mean_ms(&m->est) / 1000.0 / scale(),
		.gpu_memory = sched__need(m), .min_instances = m->model->min_instances,
		.max_instances = m->model->max_instances,
		.idle_timeout_ms = m->model->idle_timeout_ms,
		.target_wait_ms = m->model->target_wait_ms, .wait_ms = m->pw.wait_ms,
		.last_change_ms = m->pw.last_change_ms ? dclock(m->pw.last_change_ms) : 0,
		.prewarm = m->model->prewarm,
		.startable = m->model->enabled && !m->held && now >= m->retry_at_ms &&
			     m->cooldown_until_ms <= now && !server.stopping};
	pm->queued = queued_for(m, now, &pm->oldest_wait_ms);
	pm->predicted = predicted_for(m, now, pm->horizon_ms);
	return n;
}

/* ---- applying decisions ---- */

static void note(struct mstate *m, const struct pw_decision *d, int changed)
{
	char line[sizeof m->pw.last];

	snprintf(line, sizeof line, "%s: %s", pw_kind_name(d->kind), d->reason);
	/* Keeps and holds repeat each tick: logged when they start, not each time. */
	if (changed || strncmp(m->pw.last, line, strlen(pw_kind_name(d->kind)) + 1) != 0)
		log_info("prewarm decision model=%s kind=%s why=%s", m->model->id,
			 pw_kind_name(d->kind), log_q(d->reason));
	snprintf(m->pw.last, sizeof m->pw.last, "%s", line);
}

static void apply_start(struct mstate *m, const struct pw_decision *d, int64_t now)
{
	int gpu = sched__place(sched__need(m));
	struct srunner *sr = gpu >= 0 ? sched__start_runner(m, gpu, sched__need(m)) : NULL;

	if (sr == NULL)
		return;
	m->pw.last_change_ms = now;
	if (d->kind == PW_PREWARM) {
		m->pw.last_prewarm_ms = now;
		snprintf(m->pw.prewarmed, sizeof m->pw.prewarmed, "%s", sr->r->id);
	}
	note(m, d, 1);
}

static void apply_stop(struct mstate *m, struct srunner *sr, const struct pw_decision *d,
		       int64_t now)
{
	char why[320];

	if (sr->job || !runner_idle(sr->r)) /* invariant 1 */
		return;
	snprintf(why, sizeof why, "%s: %s", pw_kind_name(d->kind), d->reason);
	m->pw.last_change_ms = now;
	note(m, d, 1);
	runner_stop(sr->r, why);
}

static void apply(struct mstate *m, const struct pw_decision *d, struct srunner **srs, int64_t now)
{
	switch (d->action) {
	case PW_START:
		apply_start(m, d, now);
		break;
	case PW_STOP:
		apply_stop(m, srs[d->runner], d, now);
		break;
	default:
		snprintf(m->pw.kept, sizeof m->pw.kept, "%s", srs[d->runner]->r->id);
		m->pw.kept_until_ms = now + 2 * (int64_t)(PREWARM_TICK_MS * scale()) + 1;
		note(m, d, 0);
	}
}

/* The pending pre-warm: a hit once its runner took a job, a miss when it went without one. */
static void score(struct mstate *m)
{
	if (m->pw.prewarmed[0] == '\0')
		return;
	for (const struct srunner *sr = m->runners; sr; sr = sr->next) {
		if (strcmp(sr->r->id, m->pw.prewarmed) != 0)
			continue;
		if (sr->job == NULL && sr->r->last_used_ms <= sr->r->ready_ms)
			return; /* still waiting for its first job */
		if (sr->job != NULL || sr->r->last_used_ms > sr->r->ready_ms) {
			m->pw.hits++;
			m->pw.prewarmed[0] = '\0';
			return;
		}
	}
	m->pw.misses++;
	m->pw.prewarmed[0] = '\0';
}

static void tick_model(struct mstate *m, const struct pw_config *c, int64_t now)
{
	struct pw_runner rs[64];
	struct srunner *srs[64];
	struct pw_model pm;
	struct pw_decision d[PW_MAX_DECISIONS];
	size_t nd;

	score(m);
	snapshot(m, now, &pm, rs, srs, 64);
	m->pw.predicted = pm.predicted;
	m->pw.horizon_s = (double)pm.horizon_ms / 1000.0;
	m->pw.rate_per_min = pm.predicted / m->pw.horizon_s * 60.0;
	nd = pw_decide(&pm, c, d, PW_MAX_DECISIONS);
	for (size_t i = 0; i < nd; i++)
		apply(m, &d[i], srs, now);
}

void sched__prewarm_tick(void)
{
	int64_t now = util_now_ms();
	struct pw_config c = {.now_ms = dclock(now), .price = PW_PRICE,
			      .cold_penalty_s = PW_COLD_PENALTY_S, .hold_ms = PW_HOLD_MS,
			      .down_ratio = PW_DOWN_RATIO, .min_idle_ms = PW_MIN_IDLE_MS};

	if (now < pw.next_tick_ms || server.stopping || !any_policy())
		return;
	pw.next_tick_ms = now + (int64_t)(PREWARM_TICK_MS * scale());
	pw.last_tick_ms = now;
	model_get();
	demand_advance(pw.d, dclock(now));
	for (size_t i = 0; i < sched__s.nmodels; i++) {
		if (!uses_policy(sched__s.models[i]))
			continue;
		c.free_bytes = free_bytes();
		tick_model(sched__s.models[i], &c, now);
	}
	if (now - pw.saved_ms >= PREWARM_SAVE_MS)
		save(now);
}

int64_t sched__prewarm_next(void)
{
	/* Stopping: no tick (it would do nothing, and a past deadline would spin the timer). */
	return !server.stopping && any_policy() ? pw.next_tick_ms : -1;
}

static int keeps(const struct srunner *sr, int64_t *until)
{
	const struct mstate *m = sr->m;

	if (m->pw.kept[0] == '\0' || strcmp(m->pw.kept, sr->r->id) != 0 ||
	    util_now_ms() >= m->pw.kept_until_ms)
		return 0;
	*until = m->pw.kept_until_ms;
	return 1;
}

int64_t sched__prewarm_idle_at(const struct srunner *sr)
{
	int64_t at = idle_due(sr), until;

	if (keeps(sr, &until) && until > at)
		return until;
	/*
	 * A `prewarm` model's runner that came due between two ticks waits
	 * for the next one: the policy decides whether it stays, instead of
	 * the timer stopping it a moment before a tick would have kept it
	 * (and the tick then starting another, cold).
	 */
	if (sr->m->model->prewarm && !sr->m->retired && !server.stopping && /* so the tick runs */
	    pw.last_tick_ms < at && pw.next_tick_ms > at)
		return pw.next_tick_ms;
	return at;
}

void sched__prewarm_admin_json(const struct mstate *m, struct json_object *o)
{
	struct json_object *p;

	if (!uses_policy(m))
		return;
	p = json_object_new_object();
	json_put(p, "enabled", json_object_new_boolean(m->model->prewarm));
	json_put(p, "target_wait_ms",
		 m->model->target_wait_ms ? json_int(m->model->target_wait_ms) : NULL);
	json_put(p, "predicted_jobs", json_object_new_double(m->pw.predicted));
	json_put(p, "horizon_seconds", json_object_new_double(m->pw.horizon_s));
	json_put(p, "predicted_rate_per_min", json_object_new_double(m->pw.rate_per_min));
	json_put(p, "wait_ms", json_object_new_double(m->pw.wait_ms));
	json_put(p, "last_prewarm_ms", m->pw.last_prewarm_ms ? json_int(m->pw.last_prewarm_ms) : NULL);
	json_put(p, "hits", json_int(m->pw.hits));
	json_put(p, "misses", json_int(m->pw.misses));
	json_put(p, "last_decision", m->pw.last[0] ? json_str(m->pw.last) : NULL);
	json_put(o, "prewarm", p);
}
