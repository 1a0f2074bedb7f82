/*
 * trace_gen.c - a realistic usage trace, deterministic from a seed
 * (trace.h). Sessions arrive as a Poisson process whose rate follows the
 * time of day, the day of the week and bursts (thinning: candidates at
 * the peak rate, each kept with rate(t) / peak); each session plays out
 * one user's few jobs. Jobs are sorted by time before they are written.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "trace.h"

#define HOUR_MS 3600000LL
#define DAY_MS (24 * HOUR_MS)
#define MIN_MS 60000LL
#define BURSTS_PER_DAY 3
#define BURST_MS (10 * MIN_MS)
#define BURST_FACTOR 4.0
#define USERS 400

const struct trace_fn trace_functions[TRACE_NFN] = {
	{"Create Image", "low", "img_low", 6, 20, 6},
	{"Create Image", "high", "img_high", 12, 30, 15},
	{"Create Video", "low", "video", 16, 45, 20},
	{"Create Speech", "low", "speech", 2, 10, 3},
};

struct gen {
	uint64_t s;
	struct trace_job *v;
	size_t n, cap;
	int64_t bursts[64];
	int nbursts;
};

static double uni(struct gen *g)
{
	g->s ^= g->s << 13;
	g->s ^= g->s >> 7;
	g->s ^= g->s << 17;
	return ((double)(g->s >> 11) + 0.5) / 9007199254740992.0;
}

static double expo(struct gen *g, double mean)
{
	return -log(uni(g)) * mean;
}

static void add(struct gen *g, int64_t at, int fn, int user)
{
	if (g->n == g->cap) {
		g->cap = g->cap ? 2 * g->cap : 1024;
		g->v = realloc(g->v, g->cap * sizeof *g->v);
		if (g->v == NULL)
			abort();
	}
	g->v[g->n++] = (struct trace_job){at, fn, user};
}

/* The session rate's shape at t (0..1 on weekdays): a night trough, a 15:00 peak. */
static double shape(const struct gen *g, int64_t t)
{
	double hour = (double)(t % DAY_MS) / (double)HOUR_MS;
	int day = (int)(t / DAY_MS) % 7; /* the trace starts on a Monday */
	double s = 0.03 + 0.97 * pow(0.5 + 0.5 * cos((hour - 15.0) / 24.0 * 2 * M_PI), 3);

	if (day >= 5)
		s *= 0.6;
	for (int i = 0; i < g->nbursts; i++)
		if (t >= g->bursts[i] && t < g->bursts[i] + BURST_MS)
			s *= BURST_FACTOR;
	return s;
}

/* One user's session from t: what they make, and how it follows on. */
static void session(struct gen *g, int64_t t, int user)
{
	double r = uni(g);

	if (r < 0.22) { /* speech: 1 to 3 lines a minute or so apart */
		int n = 1 + (int)(uni(g) * 3);
		for (int i = 0; i < n; i++, t += (int64_t)expo(g, 70000))
			add(g, t, 3, user);
		return;
	}
	if (r < 0.32) { /* one image at Maximum Detail */
		add(g, t, 1, user);
		return;
	}
	add(g, t, 0, user);
	while (uni(g) < 0.45) { /* another preview */
		t += 30000 + (int64_t)expo(g, 90000);
		add(g, t, 0, user);
	}
	if (uni(g) < 0.5) /* then a video of it: image -> video */
		add(g, t + 60000 + (int64_t)expo(g, 150000), 2, user);
}

static int by_time(const void *a, const void *b)
{
	const struct trace_job *x = a, *y = b;

	return x->at_ms < y->at_ms ? -1 : x->at_ms > y->at_ms;
}

long trace_gen(uint64_t seed, int days, double sessions_per_day, FILE *out)
{
	struct gen g = {.s = seed ? seed : 1};
	int64_t end = (int64_t)days * DAY_MS, t = 0;
	/* shape() averages about 0.33 over a weekday and is at most BURST_FACTOR: candidates at that peak, thinned. */
	double peak_per_ms = sessions_per_day / 0.33 / (double)DAY_MS * BURST_FACTOR;

	for (int d = 0; d < days; d++)
		for (int b = 0; b < BURSTS_PER_DAY && g.nbursts < 64; b++)
			g.bursts[g.nbursts++] = d * DAY_MS + 8 * HOUR_MS + (int64_t)(uni(&g) * 14 * HOUR_MS);
	for (;;) {
		t += (int64_t)expo(&g, 1.0 / peak_per_ms);
		if (t >= end)
			break;
		if (uni(&g) * BURST_FACTOR < shape(&g, t))
			session(&g, t, (int)(uni(&g) * USERS));
	}
	qsort(g.v, g.n, sizeof *g.v, by_time);
	for (size_t i = 0; i < g.n; i++)
		if (g.v[i].at_ms < end)
			fprintf(out, "%lld %d %s u%d\n", (long long)g.v[i].at_ms, g.v[i].fn,
				trace_functions[g.v[i].fn].quality, g.v[i].user);
	free(g.v);
	return (long)g.n;
}

long trace_read(const char *path, struct trace_job **out)
{
	FILE *f = fopen(path, "r");
	struct trace_job *v = NULL;
	size_t n = 0, cap = 0;
	long long at;
	int fn, user;
	char q[64];

	*out = NULL;
	if (f == NULL)
		return -1;
	while (fscanf(f, "%lld %d %63s u%d", &at, &fn, q, &user) == 4) {
		if (fn < 0 || fn >= TRACE_NFN)
			continue;
		if (n == cap) {
			cap = cap ? 2 * cap : 1024;
			v = realloc(v, cap * sizeof *v);
			if (v == NULL)
				abort();
		}
		v[n++] = (struct trace_job){at, fn, user};
	}
	fclose(f);
	*out = v;
	return (long)n;
}
