/*
 * sched_quota.c - what each API key uses, against the quotas of the
 * registry's server.quotas (registry_quota): its jobs queued or running
 * at once, its submits in the last 60 s, and the run time of its jobs on
 * GPU models (gpu_memory > 0) this UTC day.
 *
 * Jobs at once follow the live job table (restored jobs count); submits
 * are counted per second over a 60 s ring; GPU time is added when a job
 * ends, and read back from the store at start (store_key_usage_since),
 * so a restart forgets nothing of the day.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "job.h"
#include "json.h"
#include "log.h"
#include "registry.h"
#include "scheduler_internal.h"
#include "server.h"
#include "store.h"
#include "store_keys.h"
#include "util.h"

#define DAY_MS 86400000LL

struct usage {
	char owner[KEY_ID_LEN + 1];
	int64_t active;          /* its jobs in the live table */
	int64_t second[60];      /* the second each slot counts, since the epoch */
	int64_t count[60];       /* submits in that second */
	int64_t day;             /* the UTC day gpu_ms belongs to */
	int64_t gpu_ms;
};

static struct {
	struct usage *v;
	size_t n, cap;
} q;

static struct usage *usage_of(const char *owner, int make)
{
	for (size_t i = 0; i < q.n; i++)
		if (strcmp(q.v[i].owner, owner) == 0)
			return &q.v[i];
	if (!make)
		return NULL;
	if (q.n == q.cap) {
		q.cap = q.cap ? q.cap * 2 : 16;
		q.v = xrealloc(q.v, q.cap * sizeof *q.v);
	}
	memset(&q.v[q.n], 0, sizeof q.v[q.n]);
	snprintf(q.v[q.n].owner, sizeof q.v[q.n].owner, "%s", owner);
	return &q.v[q.n++];
}

static int64_t today(void)
{
	return util_now_ms() / DAY_MS;
}

static int64_t gpu_ms_today(struct usage *u)
{
	if (u->day != today()) {
		u->day = today();
		u->gpu_ms = 0;
	}
	return u->gpu_ms;
}

static int64_t last_minute(const struct usage *u, int64_t *oldest)
{
	int64_t now = util_now_ms() / 1000, n = 0;

	*oldest = now;
	for (int i = 0; i < 60; i++)
		if (u->count[i] > 0 && now - u->second[i] < 60) {
			n += u->count[i];
			if (u->second[i] < *oldest)
				*oldest = u->second[i];
		}
	return n;
}

void sched__quota_live(const struct job *j, int delta)
{
	struct usage *u;

	if (j->owner == NULL)
		return;
	u = usage_of(j->owner, 1);
	u->active += delta;
}

void sched__quota_submitted(const struct job *j)
{
	int64_t now = util_now_ms() / 1000;
	struct usage *u;
	int slot = (int)(now % 60);

	if (j->owner == NULL)
		return;
	u = usage_of(j->owner, 1);
	if (u->second[slot] != now) {
		u->second[slot] = now;
		u->count[slot] = 0;
	}
	u->count[slot]++;
}

static int on_gpu(const char *model_id)
{
	struct mstate *m = model_id ? sched__mstate_of(model_id) : NULL;

	return m != NULL && m->model->gpu_memory > 0;
}

void sched__quota_finished(const struct job *j)
{
	struct usage *u;

	if (j->owner == NULL || j->started_at <= 0 || j->finished_at < j->started_at ||
	    !on_gpu(j->model_id))
		return;
	u = usage_of(j->owner, 1);
	gpu_ms_today(u);
	u->gpu_ms += j->finished_at - j->started_at;
}

static void on_usage_row(const char *owner, const char *model_id, int64_t ms, void *ud)
{
	struct usage *u;

	if (!on_gpu(model_id))
		return;
	u = usage_of(owner, 1);
	gpu_ms_today(u);
	u->gpu_ms += ms;
}

int sched__quota_load(struct err *err)
{
	return store_key_usage_since(server.store, today() * DAY_MS, on_usage_row, NULL, err);
}

void sched__quota_free(void)
{
	free(q.v);
	memset(&q, 0, sizeof q);
}

int sched_quota_check(const char *owner, const char *name, int *retry_after_s, struct err *err)
{
	struct reg_quota lim;
	struct usage *u;
	int64_t oldest, n;

	*retry_after_s = 0;
	if (owner == NULL || sched__s.reg == NULL)
		return 0;
	lim = registry_quota(sched__s.reg, name);
	u = usage_of(owner, 0);
	if (u == NULL)
		return 0;
	if (lim.running > 0 && u->active >= lim.running) {
		*retry_after_s = 10;
		err_set(err, ERR_QUOTA,
			"You have %lld creation%s waiting or running; the next can start when one "
			"finishes.", (long long)u->active, u->active == 1 ? "" : "s");
		return -1;
	}
	if (lim.per_minute > 0 && (n = last_minute(u, &oldest)) >= lim.per_minute) {
		*retry_after_s = (int)(oldest + 60 - util_now_ms() / 1000);
		if (*retry_after_s < 1)
			*retry_after_s = 1;
		err_set(err, ERR_QUOTA,
			"You have made %lld requests in the last minute, the most allowed; try again "
			"in %d seconds.", (long long)n, *retry_after_s);
		return -1;
	}
	if (lim.gpu_seconds_per_day > 0 && gpu_ms_today(u) >= lim.gpu_seconds_per_day * 1000) {
		*retry_after_s = (int)(((today() + 1) * DAY_MS - util_now_ms()) / 1000) + 1;
		err_set(err, ERR_QUOTA,
			"You have used today's creation time (%lld seconds); it renews at midnight "
			"UTC.", (long long)lim.gpu_seconds_per_day);
		return -1;
	}
	return 0;
}

struct json_object *sched_quota_json(const char *owner, const char *name)
{
	struct json_object *o = json_object_new_object(), *lim = json_object_new_object();
	struct usage *u = usage_of(owner, 0);
	struct reg_quota l = sched__s.reg ? registry_quota(sched__s.reg, name)
					 : (struct reg_quota){0, 0, 0};
	int64_t oldest;

	json_put(o, "running", json_int(u ? u->active : 0));
	json_put(o, "last_minute", json_int(u ? last_minute(u, &oldest) : 0));
	json_put(o, "gpu_seconds_today", json_int(u ? gpu_ms_today(u) / 1000 : 0));
	json_put(lim, "running", l.running ? json_int(l.running) : NULL);
	json_put(lim, "per_minute", l.per_minute ? json_int(l.per_minute) : NULL);
	json_put(lim, "gpu_seconds_per_day", l.gpu_seconds_per_day ? json_int(l.gpu_seconds_per_day)
								   : NULL);
	json_put(o, "quota", lim);
	return o;
}
