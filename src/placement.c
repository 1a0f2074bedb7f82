/*
 * placement.c - the scheduler's decisions (placement.h), pure functions of
 * a snapshot. No allocation, no globals, no clocks: now_ms comes in the
 * snapshot.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "job.h"
#include "placement.h"

int pl_count(const struct pl_snapshot *s, int m, int state)
{
	int n = 0;

	for (size_t i = 0; i < s->nrunners; i++)
		if (s->runners[i].model == m && (state < 0 || s->runners[i].state == state))
			n++;
	return n;
}

static int64_t gpu_free(const struct pl_snapshot *s, int g)
{
	const struct pl_gpu *v = &s->gpus[g];

	if (v->budget == INT64_MAX)
		return INT64_MAX;
	return v->budget - v->reserved;
}

int pl_place(const struct pl_snapshot *s, int64_t bytes)
{
	int best = -1;

	if (bytes <= 0)
		return s->ngpus > 0 ? 0 : -1;
	for (int g = 0; g < s->ngpus; g++)
		if (gpu_free(s, g) >= bytes && (best < 0 || gpu_free(s, g) > gpu_free(s, best)))
			best = g;
	return best;
}

int pl_could_fit(const struct pl_snapshot *s, int64_t bytes)
{
	for (int g = 0; g < s->ngpus; g++)
		if (s->gpus[g].budget >= bytes)
			return 1;
	return 0;
}

/* ---- route ---- */

/* A well-mixed 64-bit hash of key (splitmix64's finaliser). */
static uint64_t mix(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

int pl_route(const struct pl_snapshot *s, const int *tier, size_t n, uint64_t key)
{
	uint64_t total = 0, at;
	int weighted = 0;

	for (size_t i = 0; i < n; i++)
		weighted |= s->models[tier[i]].weight_set;
	if (!weighted)
		return -1;
	for (size_t i = 0; i < n; i++)
		if (!s->models[tier[i]].resting && s->models[tier[i]].weight > 0)
			total += (uint64_t)s->models[tier[i]].weight;
	if (total == 0)
		return -1;
	at = mix(key) % total;
	for (size_t i = 0; i < n; i++) {
		const struct pl_model *m = &s->models[tier[i]];
		if (m->resting || m->weight <= 0)
			continue;
		if (at < (uint64_t)m->weight)
			return tier[i];
		at -= (uint64_t)m->weight;
	}
	return -1;
}

/* ---- evict ---- */

/* How many of taken[0..n) are on GPU g. */
static int pl_count_on(const struct pl_snapshot *s, const int *taken, size_t n, int g)
{
	int k = 0;

	for (size_t i = 0; i < n; i++)
		k += s->runners[taken[i]].gpu == g;
	return k;
}

#define PL_MAX_CANDIDATES 1024 /* idle runners considered for one eviction */

/* a + b, saturating at INT64_MAX (an unlimited budget stays unlimited). */
static int64_t sat_add(int64_t a, int64_t b)
{
	return a > INT64_MAX - b ? INT64_MAX : a + b;
}

/* Runners of m that are not on their way out. */
static int live_runners(const struct pl_snapshot *s, int m)
{
	return pl_count(s, m, -1) - pl_count(s, m, PL_STOPPING);
}

/* May r be stopped to make room for model m? */
static int evictable(const struct pl_snapshot *s, const struct pl_runner *r, int m, int aged)
{
	const struct pl_model *owner = &s->models[r->model];

	if (r->state != PL_IDLE || r->external || r->model == m)
		return 0;
	/* Anti-thrash: a model with work waiting keeps its runner unless we aged. */
	return aged || owner->waiting == 0;
}

/* Lower priority first, then least recently used. */
static int before(const struct pl_snapshot *s, int a, int b)
{
	const struct pl_runner *ra = &s->runners[a], *rb = &s->runners[b];
	int64_t pa = s->models[ra->model].priority, pb = s->models[rb->model].priority;

	if (pa != pb)
		return pa < pb;
	return ra->last_used_ms < rb->last_used_ms;
}

/* Every idle runner that may stop for m, in stopping order (all GPUs). */
static size_t candidates(const struct pl_snapshot *s, int m, int aged, int *v)
{
	size_t nv = 0;

	for (size_t i = 0; i < s->nrunners && nv < PL_MAX_CANDIDATES; i++)
		if (evictable(s, &s->runners[i], m, aged))
			v[nv++] = (int)i;
	for (size_t i = 1; i < nv; i++)
		for (size_t k = i; k > 0 && before(s, v[k], v[k - 1]); k--) {
			int t = v[k];
			v[k] = v[k - 1];
			v[k - 1] = t;
		}
	return nv;
}

/* Memory on GPU g: free now plus what stopping runners give back soon. */
static int64_t coming(const struct pl_snapshot *s, int g)
{
	int64_t n = gpu_free(s, g);

	for (size_t i = 0; i < s->nrunners; i++)
		if (s->runners[i].gpu == g && s->runners[i].state == PL_STOPPING)
			n = sat_add(n, s->runners[i].reserved);
	return n;
}

/*
 * A victim that would leave its owner below min_instances is skipped
 * (unless aged): taken counts the owner's runners already chosen.
 */
static int keeps_minimum(const struct pl_snapshot *s, const int *chosen, size_t n, int v, int aged)
{
	int owner = s->runners[v].model, left = live_runners(s, owner);

	for (size_t j = 0; j < n; j++)
		left -= s->runners[chosen[j]].model == owner;
	return aged || left > s->models[owner].min_instances;
}

/*
 * Walks every candidate in stopping order, adding its memory to its GPU's;
 * the first GPU to reach the need wins, with the candidates taken on it.
 * So the runners stopped are the lowest in priority, then the least
 * recently used, across all GPUs, and just enough of them.
 */
int pl_evict(const struct pl_snapshot *s, int m, int *victims, size_t max, size_t *nv)
{
	const struct pl_model *pm = &s->models[m];
	int aged = pm->oldest_wait_ms > 0 && s->now_ms - pm->oldest_wait_ms >= s->aging_ms;
	int cand[PL_MAX_CANDIDATES], taken[PL_MAX_CANDIDATES];
	int64_t avail[PL_MAX_GPUS];
	size_t nc, nt = 0;
	int ngpus = s->ngpus < PL_MAX_GPUS ? s->ngpus : PL_MAX_GPUS;

	*nv = 0;
	for (int g = 0; g < ngpus; g++) {
		avail[g] = coming(s, g);
		if (avail[g] >= pm->need)
			return g; /* room is coming back already: nothing to stop */
	}
	nc = candidates(s, m, aged, cand);
	for (size_t i = 0; i < nc; i++) {
		int g = s->runners[cand[i]].gpu;
		if (g < 0 || g >= ngpus || !keeps_minimum(s, taken, nt, cand[i], aged))
			continue;
		taken[nt++] = cand[i];
		avail[g] = sat_add(avail[g], s->runners[cand[i]].reserved);
		if (avail[g] < pm->need)
			continue;
		for (size_t k = 0; k < nt; k++)
			if (s->runners[taken[k]].gpu == g && *nv < max)
				victims[(*nv)++] = taken[k];
		if (*nv == (size_t)pl_count_on(s, taken, nt, g))
			return g;
		*nv = 0; /* more victims than max: no room this way */
		return -1;
	}
	return -1;
}

/* ---- fall back, plan, pick ---- */

int pl_fallback(const struct pl_snapshot *s, int m, int need_fit)
{
	int f = s->models[m].fallback;

	/* Registry invariant: chains do not cycle; the bound guards anyway. */
	for (size_t hops = 0; f >= 0 && hops < s->nmodels; hops++, f = s->models[f].fallback) {
		const struct pl_model *pf = &s->models[f];
		if (pf->resting)
			continue;
		if (!need_fit || pl_count(s, f, PL_IDLE) > 0 ||
		    (pf->startable && pl_place(s, pf->need) >= 0))
			return f;
	}
	return -1;
}

void pl_plan(const struct pl_snapshot *s, int m, struct pl_plan *out)
{
	int64_t need = s->models[m].need;

	memset(out, 0, sizeof *out);
	out->gpu = out->fallback = -1;
	if (!pl_could_fit(s, need)) {
		out->action = PL_NEVER;
		out->fallback = pl_fallback(s, m, 0);
		return;
	}
	out->gpu = pl_place(s, need);
	if (out->gpu >= 0) {
		out->action = PL_START;
		return;
	}
	out->gpu = pl_evict(s, m, out->victims, PL_MAX_VICTIMS, &out->nvictims);
	if (out->gpu >= 0) {
		out->action = PL_EVICT;
		return;
	}
	/* With a runner of its own (busy, starting), m serves soon: no move. */
	out->fallback = live_runners(s, m) == 0 ? pl_fallback(s, m, 1) : -1;
	out->action = out->fallback >= 0 ? PL_FALLBACK : PL_WAIT;
}

static int has_room(const struct pl_snapshot *s, int m)
{
	return s->models[m].startable && pl_count(s, m, -1) < s->models[m].max_instances;
}

int pl_pick_start(const struct pl_snapshot *s, const int *tier, size_t n)
{
	int best = -1, best_rank = 3;

	for (size_t i = 0; i < n; i++) {
		int m = tier[i], rank, victims[PL_MAX_VICTIMS];
		size_t nv;

		if (!has_room(s, m))
			continue;
		if (pl_place(s, s->models[m].need) >= 0)
			rank = 0;
		else if (pl_evict(s, m, victims, PL_MAX_VICTIMS, &nv) >= 0)
			rank = 1;
		else
			rank = 2;
		if (rank < best_rank ||
		    (rank == best_rank && pl_count(s, m, -1) < pl_count(s, best, -1))) {
			best = m;
			best_rank = rank;
		}
	}
	return best;
}

/* ---- estimate ---- */

int64_t pl_estimate(const struct pl_eta *in)
{
	double left, floor, done;

	switch (in->status) {
	case JOB_QUEUED:
		left = in->run_s * (double)(in->position + 1) /
		       (double)(in->instances > 0 ? in->instances : 1);
		if (!in->has_runner)
			left += in->start_s;
		break;
	case JOB_PREPARING:
		left = in->run_s + (in->starting ? in->start_s : 0);
		break;
	case JOB_RUNNING:
		left = in->run_s - in->elapsed_s;
		floor = in->run_s * (100 - in->progress) / 200.0; /* running long: stay honest */
		if (left < floor)
			left = floor;
		/* Progress reported: 5 % at the start of a run, 95 % at its end. */
		done = (in->progress - 5) / 90.0;
		if (done > 0 && in->elapsed_s > 0) {
			if (done > 1)
				done = 1;
			left = (1 - done) * left + done * (in->elapsed_s * (1 - done) / done);
		}
		break;
	default:
		return 0;
	}
	/* Nearest whole second, at least 1 while the job is live. */
	return left < 1.5 ? 1 : (int64_t)(left + 0.5);
}

int pl_pick_tier(const struct pl_tier_ref *refs, size_t n, double run_ms, int64_t memory,
		 double *distance)
{
	double best_d = 0;
	int best = -1;

	if (run_ms <= 0)
		return -1;
	for (size_t i = 0; i < n; i++) {
		double d;

		if (refs[i].run_ms <= 0)
			continue;
		d = fabs(log(run_ms / refs[i].run_ms));
		if (memory > 0 && refs[i].memory > 0)
			d += fabs(log((double)memory / (double)refs[i].memory));
		if (best < 0 || d < best_d) {
			best = (int)i;
			best_d = d;
		}
	}
	if (distance)
		*distance = best_d;
	return best;
}
