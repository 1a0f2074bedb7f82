/*
 * prewarm.c - the pre-warm and autoscale policy (prewarm.h), a pure
 * function of one model's snapshot: no clock (now_ms comes in the
 * config), no allocation, no global.
 *
 * Invariants:
 * 1. A PW_STOP decision names a runner in state PW_R_IDLE, not external,
 *    of a model with nothing queued (never_stop() is the one check).
 * 2. A runner gets at most one decision.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "prewarm.h"

#define GIB (1024.0 * 1024.0 * 1024.0)

static const char *const kind_names[] = {
	[PW_PREWARM] = "prewarm",       [PW_KEEP_WARM] = "keep_warm",
	[PW_EARLY_STOP] = "early_stop", [PW_SCALE_UP] = "scale_up",
	[PW_SCALE_HOLD] = "scale_hold", [PW_SCALE_DOWN] = "scale_down",
};

const char *pw_kind_name(int kind)
{
	if (kind < 0 || kind >= (int)(sizeof kind_names / sizeof kind_names[0]))
		return "?";
	return kind_names[kind];
}

void pw_value(const struct pw_model *m, const struct pw_config *c, double *benefit, double *cost)
{
	double h_s = (double)m->horizon_ms / 1000.0, p = m->predicted > 0 ? m->predicted : 0;

	*benefit = (1 - exp(-p)) * (m->cold_start_s + c->cold_penalty_s);
	*cost = c->price * (double)m->gpu_memory / GIB * h_s;
}

/* 1 when holding one warm runner over the horizon pays. */
static int worth(const struct pw_model *m, double b, double cost)
{
	return m->predicted >= PW_MIN_JOBS && b >= cost;
}

static int count(const struct pw_model *m, int state)
{
	int n = 0;

	for (size_t i = 0; i < m->nrunners; i++)
		n += m->runners[i].state == state;
	return n;
}

static int live(const struct pw_model *m)
{
	return (int)m->nrunners - count(m, PW_R_STOPPING);
}

/* Invariant 1: the only runners a stop may name. */
static int may_stop(const struct pw_model *m, size_t i)
{
	return m->queued == 0 && m->runners[i].state == PW_R_IDLE && !m->runners[i].external;
}

static int64_t idle_ms(const struct pw_model *m, const struct pw_config *c, size_t i)
{
	return c->now_ms - m->runners[i].idle_since_ms;
}

/* Adds a decision when there is room; returns it (or NULL). */
static struct pw_decision *add(struct pw_decision *out, size_t max, size_t *n, int kind, int action,
			       int runner, double b, double cost)
{
	struct pw_decision *d;

	if (*n >= max)
		return NULL;
	d = &out[(*n)++];
	*d = (struct pw_decision){.kind = kind, .action = action, .runner = runner,
				  .benefit_s = b, .cost_s = cost};
	return d;
}

static void say_value(struct pw_decision *d, const struct pw_model *m, const struct pw_config *c,
		      const char *verdict)
{
	if (d == NULL)
		return;
	snprintf(d->reason, sizeof d->reason,
		 "%.2f jobs expected in %.0f s: benefit %.1f job-s (P(any) %.2f x (cold start "
		 "%.1f s + %.0f s)) %s cost %.1f (%.4f x %.1f GiB x %.0f s)",
		 m->predicted, (double)m->horizon_ms / 1000.0, d->benefit_s,
		 1 - exp(-(m->predicted > 0 ? m->predicted : 0)), m->cold_start_s, c->cold_penalty_s,
		 verdict,
		 d->cost_s, c->price, (double)m->gpu_memory / GIB, (double)m->horizon_ms / 1000.0);
}

/* 1 when runner i is due for the idle stop. */
static int due(const struct pw_model *m, const struct pw_config *c, size_t i)
{
	return m->runners[i].due || idle_ms(m, c, i) >= m->idle_timeout_ms;
}

/* The idle runners due for the idle stop: keep at most one when demand says so. */
static void keep_or_stop(const struct pw_model *m, const struct pw_config *c, double b,
			 double cost, struct pw_decision *out, size_t max, size_t *n)
{
	int kept = 0, alive = live(m);
	size_t best = m->nrunners;

	/* Keep the one used last: it has waited least. */
	for (size_t i = 0; i < m->nrunners; i++)
		if (may_stop(m, i) && due(m, c, i) &&
		    (best == m->nrunners || m->runners[i].idle_since_ms > m->runners[best].idle_since_ms))
			best = i;
	if (best < m->nrunners && worth(m, b, cost)) {
		say_value(add(out, max, n, PW_KEEP_WARM, PW_KEEP, (int)best, b, cost), m, c, ">=");
		kept = 1;
	}
	for (size_t i = 0; !kept && i < m->nrunners; i++) {
		int64_t idle = idle_ms(m, c, i);
		int unused = m->runners[i].unused;
		if (!may_stop(m, i) || idle < c->min_idle_ms || due(m, c, i) ||
		    alive <= m->min_instances || b * 2 >= cost)
			continue;
		say_value(add(out, max, n, PW_EARLY_STOP, PW_STOP, (int)i, b, cost), m, c,
			  unused ? "< half (a pre-warm, no job yet) the" : "< half the");
		alive--;
	}
}

/* Runners the demand needs at once: arrivals per second x run time, at least 1. */
static int needed(const struct pw_model *m)
{
	double rate = m->horizon_ms > 0 ? m->predicted / ((double)m->horizon_ms / 1000.0) : 0;
	int k = (int)ceil(rate * m->run_s);

	return k < 1 ? 1 : k;
}

static void scale_up(const struct pw_model *m, const struct pw_config *c, struct pw_decision *out,
		     size_t max, size_t *n)
{
	struct pw_decision *d;
	double over = (double)m->oldest_wait_ms > m->wait_ms ? (double)m->oldest_wait_ms : m->wait_ms;

	if (m->queued == 0 || over <= (double)m->target_wait_ms || !m->startable ||
	    count(m, PW_R_STARTING) > 0 || live(m) >= m->max_instances ||
	    c->free_bytes < m->gpu_memory)
		return;
	d = add(out, max, n, PW_SCALE_UP, PW_START, -1, 0, 0);
	if (d)
		snprintf(d->reason, sizeof d->reason,
			 "%zu queued, wait %.1f s above the target %.1f s: runner %d of at most %lld",
			 m->queued, over / 1000.0, (double)m->target_wait_ms / 1000.0, live(m) + 1,
			 (long long)m->max_instances);
}

/* 1 when the model may scale down now (below the lower threshold, after the hold). */
static int calm(const struct pw_model *m, const struct pw_config *c)
{
	return m->queued == 0 && m->wait_ms < c->down_ratio * (double)m->target_wait_ms &&
	       c->now_ms - m->last_change_ms >= c->hold_ms;
}

/* Autoscaled model: hold runners due for the idle stop while not calm, else give one back. */
static void scale_down(const struct pw_model *m, const struct pw_config *c,
		       struct pw_decision *out, size_t max, size_t *n)
{
	int alive = live(m), floor = needed(m), held = 0;
	size_t longest = m->nrunners;
	struct pw_decision *d;

	if (floor < m->min_instances)
		floor = (int)m->min_instances;
	for (size_t i = 0; i < m->nrunners; i++) {
		if (!may_stop(m, i))
			continue;
		if (longest == m->nrunners || m->runners[i].idle_since_ms < m->runners[longest].idle_since_ms)
			longest = i;
		/*
		 * Hold what scaling added, not the last runner: its idle stop is
		 * the plain idle_timeout's (or the pre-warm policy's), or a model
		 * whose few jobs waited for cold starts would keep it for hours.
		 */
		if (!calm(m, c) && due(m, c, i) && held < alive - 1) {
			held++;
			d = add(out, max, n, PW_SCALE_HOLD, PW_KEEP, (int)i, 0, 0);
			if (d)
				snprintf(d->reason, sizeof d->reason,
					 "recent wait %.1f s, down below %.1f s and %lld s after the last change",
					 m->wait_ms / 1000.0, c->down_ratio * (double)m->target_wait_ms / 1000.0,
					 (long long)(c->hold_ms / 1000));
		}
	}
	if (!calm(m, c) || longest == m->nrunners || alive <= floor || alive <= 1 ||
	    idle_ms(m, c, longest) < c->min_idle_ms)
		return;
	d = add(out, max, n, PW_SCALE_DOWN, PW_STOP, (int)longest, 0, 0);
	if (d)
		snprintf(d->reason, sizeof d->reason,
			 "recent wait %.1f s below %.1f s for %lld s: %d runners, %d needed",
			 m->wait_ms / 1000.0, c->down_ratio * (double)m->target_wait_ms / 1000.0,
			 (long long)((c->now_ms - m->last_change_ms) / 1000), alive, floor);
}

static void prewarm(const struct pw_model *m, const struct pw_config *c, double b, double cost,
		    struct pw_decision *out, size_t max, size_t *n)
{
	if (m->queued > 0 || !m->startable || live(m) > 0 || live(m) >= m->max_instances ||
	    c->free_bytes < m->gpu_memory || !worth(m, b, cost))
		return;
	say_value(add(out, max, n, PW_PREWARM, PW_START, -1, b, cost), m, c, ">=");
}

size_t pw_decide(const struct pw_model *m, const struct pw_config *c, struct pw_decision *out,
		 size_t max)
{
	size_t n = 0;
	double b, cost;

	pw_value(m, c, &b, &cost);
	if (m->target_wait_ms > 0) {
		scale_up(m, c, out, max, &n);
		scale_down(m, c, out, max, &n);
	}
	if (!m->prewarm)
		return n;
	prewarm(m, c, b, cost, out, max, &n);
	if (n == 0 || m->target_wait_ms <= 0)
		keep_or_stop(m, c, b, cost, out, max, &n);
	return n;
}
