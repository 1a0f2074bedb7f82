/*
 * demand.c - the demand model (demand.h): decayed arrival rates, an
 * hour-of-week profile and user transitions per function x quality.
 *
 * Decay is done two ways. The two rates keep a count decayed to the time
 * of their last update (a multiply per job). The profile and the
 * transitions, which have many cells per key, keep counts scaled up by a
 * growth factor 2^((t - ref) / half) instead, so that adding at time t is
 * one add and ratios (count over exposure, pair over source) need no
 * decay at all; when the factor passes 2^GROWTH_RENORM every cell is
 * scaled back once (amortised O(1), invariant 1 of demand.h).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "demand.h"
#include "util.h"

#define HOUR_MS 3600000LL
#define WEEK_MS (168 * HOUR_MS)
#define GROWTH_RENORM 30.0          /* doublings before the scaled cells are renormalised */
#define PROFILE_CONF_S 3600.0       /* seconds observed in a bucket for half confidence */
#define PROFILE_WEIGHT 0.6          /* the profile's share at full confidence */
#define DAY_POOL_CONF 0.5           /* an hour of other days counts half its own hour's */
#define FAST_SHARE 0.6              /* of the rest: the 5-min rate's share, the 1-h rate has 0.4 */
#define MIN_CORRECTION 0.1          /* the start-up correction never divides by less */
#define NAME_MAX_LEN 160

struct dkey {
	char fn[NAME_MAX_LEN], q[NAME_MAX_LEN];
	double fast, slow;            /* decayed counts at rate_t */
	int64_t rate_t;
	double prof[DEMAND_HOURS];    /* arrivals per hour of week, growth-scaled (profile clock) */
	double n;                     /* arrivals, growth-scaled (transition clock) */
	double trans_in;              /* arrivals that followed another job of their user, same */
	double next[DEMAND_MAX_KEYS]; /* jobs of this key followed by key b, same */
	double lag[DEMAND_MAX_KEYS];  /* their delays summed, seconds, same: mean = lag / next */
};

struct duser {
	uint64_t hash;  /* 0: empty */
	int key;
	int64_t t;      /* its last job */
};

/* A growth clock: cells are scaled by 2^((t - ref) / half). */
struct growth {
	int64_t ref;
	int64_t half_ms;
	int set;
};

struct demand {
	int64_t window_ms;
	int64_t t0;         /* first time observed; 0: not yet */
	int64_t seen;       /* the profile's exposure runs up to here */
	struct growth gp, gt; /* profile, transitions */
	double expo[DEMAND_HOURS]; /* seconds observed per bucket, growth-scaled (profile clock) */
	struct dkey keys[DEMAND_MAX_KEYS];
	size_t nkeys;
	struct duser users[DEMAND_USERS];
};

/* ---- clocks ---- */

static double g_at(const struct growth *g, int64_t t)
{
	return exp2((double)(t - g->ref) / (double)g->half_ms);
}

static double decay(int64_t dt_ms, int64_t half_ms)
{
	return dt_ms <= 0 ? 1.0 : exp2(-(double)dt_ms / (double)half_ms);
}

static void renorm_profile(struct demand *d, double f)
{
	for (int h = 0; h < DEMAND_HOURS; h++)
		d->expo[h] *= f;
	for (size_t k = 0; k < d->nkeys; k++)
		for (int h = 0; h < DEMAND_HOURS; h++)
			d->keys[k].prof[h] *= f;
}

static void renorm_trans(struct demand *d, double f)
{
	for (size_t k = 0; k < d->nkeys; k++) {
		struct dkey *e = &d->keys[k];
		e->n *= f;
		e->trans_in *= f;
		for (size_t b = 0; b < d->nkeys; b++) {
			e->next[b] *= f;
			e->lag[b] *= f;
		}
	}
}

/* Sets the clocks' origin at the first time seen, and moves it when the factor grows too big. */
static void clocks_at(struct demand *d, int64_t t)
{
	if (!d->gp.set) {
		d->gp.ref = d->gt.ref = t;
		d->gp.set = d->gt.set = 1;
	}
	if ((double)(t - d->gp.ref) / (double)d->gp.half_ms > GROWTH_RENORM) {
		renorm_profile(d, 1.0 / g_at(&d->gp, t));
		d->gp.ref = t;
	}
	if ((double)(t - d->gt.ref) / (double)d->gt.half_ms > GROWTH_RENORM) {
		renorm_trans(d, 1.0 / g_at(&d->gt, t));
		d->gt.ref = t;
	}
}

/* ---- keys and users ---- */

static int key_find(const struct demand *d, const char *fn, const char *q)
{
	for (size_t k = 0; k < d->nkeys; k++)
		if (strcmp(d->keys[k].fn, fn) == 0 && strcmp(d->keys[k].q, q) == 0)
			return (int)k;
	return -1;
}

static int key_get(struct demand *d, const char *fn, const char *q)
{
	int k = key_find(d, fn, q);
	struct dkey *e;

	if (k >= 0 || d->nkeys >= DEMAND_MAX_KEYS || strlen(fn) >= NAME_MAX_LEN ||
	    strlen(q) >= NAME_MAX_LEN)
		return k;
	e = &d->keys[d->nkeys];
	memset(e, 0, sizeof *e);
	snprintf(e->fn, sizeof e->fn, "%s", fn);
	snprintf(e->q, sizeof e->q, "%s", q);
	return (int)d->nkeys++;
}

static uint64_t hash_str(const char *s)
{
	uint64_t h = 1469598103934665603ull; /* FNV-1a */

	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ull;
	return h ? h : 1;
}

/* The user's slot: its own, else the emptier or older of its two candidates. */
static struct duser *user_slot(struct demand *d, uint64_t h, int *found)
{
	struct duser *a = &d->users[h % DEMAND_USERS];
	struct duser *b = &d->users[(h / DEMAND_USERS + h + 1) % DEMAND_USERS];

	*found = 1;
	if (a->hash == h)
		return a;
	if (b->hash == h)
		return b;
	*found = 0;
	if (a->hash == 0 || (b->hash != 0 && a->t <= b->t))
		return a;
	return b;
}

/* ---- public ---- */

struct demand *demand_new(int64_t window_ms)
{
	struct demand *d = xcalloc(1, sizeof *d);

	d->window_ms = window_ms > 0 ? window_ms : DEMAND_WINDOW_MS;
	d->gp.half_ms = DEMAND_PROFILE_HALF_MS;
	d->gt.half_ms = DEMAND_TRANS_HALF_MS;
	return d;
}

void demand_free(struct demand *d)
{
	free(d);
}

int demand_hour_of_week(int64_t t_ms)
{
	int64_t h = t_ms / HOUR_MS;

	if (t_ms < 0 && t_ms % HOUR_MS)
		h--;
	/* 1970-01-01 was a Thursday: 72 hours after a Monday 00:00. */
	return (int)(((h + 72) % 168 + 168) % 168);
}

void demand_advance(struct demand *d, int64_t now)
{
	if (d->t0 == 0 || now < d->t0)
		d->t0 = now;
	if (d->seen == 0 || now < d->seen) {
		d->seen = d->seen == 0 ? now : d->seen;
		return;
	}
	clocks_at(d, now);
	if (now - d->seen > 2 * WEEK_MS)
		d->seen = now - 2 * WEEK_MS; /* invariant 1: at most 2 weeks of buckets per call */
	while (d->seen < now) {
		int64_t end = (d->seen / HOUR_MS + 1) * HOUR_MS;
		if (end > now)
			end = now;
		d->expo[demand_hour_of_week(d->seen)] +=
			(double)d->gp.half_ms / 1000.0 / M_LN2 * (g_at(&d->gp, end) - g_at(&d->gp, d->seen));
		d->seen = end;
	}
}

/* Adds one arrival at t to the key's two decayed counts. */
static void count_rates(struct dkey *e, int64_t t)
{
	if (t >= e->rate_t) {
		e->fast = e->fast * decay(t - e->rate_t, DEMAND_FAST_HALF_MS) + 1;
		e->slow = e->slow * decay(t - e->rate_t, DEMAND_SLOW_HALF_MS) + 1;
		e->rate_t = t;
		return;
	}
	e->fast += decay(e->rate_t - t, DEMAND_FAST_HALF_MS);
	e->slow += decay(e->rate_t - t, DEMAND_SLOW_HALF_MS);
}

/* The user's session: a follow-up within the window counts for the pair. */
static void count_session(struct demand *d, int k, int64_t t, const char *user)
{
	int found;
	uint64_t h;
	struct duser *u;

	if (user == NULL || *user == '\0')
		return;
	h = hash_str(user);
	u = user_slot(d, h, &found);
	if (found && u->t <= t && t - u->t <= d->window_ms) {
		d->keys[u->key].next[k] += g_at(&d->gt, u->t);
		d->keys[u->key].lag[k] += g_at(&d->gt, u->t) * (double)(t - u->t) / 1000.0;
		d->keys[k].trans_in += g_at(&d->gt, t);
	}
	if (!found || t >= u->t)
		*u = (struct duser){h, k, t};
}

int demand_record(struct demand *d, int64_t t, const char *fn, const char *q, const char *user)
{
	int k = key_get(d, fn ? fn : "", q ? q : "");
	struct dkey *e;

	if (k < 0)
		return -1;
	demand_advance(d, t);
	clocks_at(d, t);
	e = &d->keys[k];
	count_rates(e, t);
	e->prof[demand_hour_of_week(t)] += g_at(&d->gp, t);
	e->n += g_at(&d->gt, t);
	count_session(d, k, t, user);
	return 0;
}

/* ---- prediction ---- */

/* jobs/s from a decayed count at `at`, seen from now. */
static double rate_of(const struct demand *d, double c, int64_t at, int64_t now, int64_t half)
{
	double corr = 1.0 - decay(now - d->t0, half);

	if (corr < MIN_CORRECTION)
		corr = MIN_CORRECTION;
	return c * decay(now - at, half) * M_LN2 / ((double)half / 1000.0) / corr;
}

/* Seconds the bucket was observed, decayed to now (the growth factor taken out). */
static double expo_real(const struct demand *d, int h, int64_t now)
{
	return d->gp.set ? d->expo[h] / g_at(&d->gp, now) : 0;
}

/*
 * The profile in hour h of the week: its own bucket when it was observed,
 * else the same hour of the other days of the week pooled (yesterday at
 * this hour says more than nothing: a trace of two days, a new week day),
 * their exposure counted at DAY_POOL_CONF. *rate gets jobs/s, *seen_s the
 * seconds that back it (decayed to now); returns -1 when neither was seen.
 */
static int bucket_rate(const struct demand *d, const struct dkey *e, int h, int64_t now,
		       double *rate, double *seen_s)
{
	double n = 0, x = 0, real = 0;

	if (d->expo[h] > 0) {
		*rate = e->prof[h] / d->expo[h];
		*seen_s = expo_real(d, h, now);
		return 0;
	}
	for (int b = h % 24; b < DEMAND_HOURS; b += 24) {
		n += e->prof[b];
		x += d->expo[b];
		real += expo_real(d, b, now);
	}
	if (x <= 0)
		return -1;
	*rate = n / x;
	*seen_s = real * DAY_POOL_CONF;
	return 0;
}

/*
 * The profile's rate over [now, now + horizon): the buckets it crosses,
 * each by its share of the horizon (bucket_rate()); hours never observed
 * are skipped. *conf gets the confidence (0..1) of what was used.
 */
static double profile_over(const struct demand *d, const struct dkey *e, int64_t now,
			   int64_t horizon, double *conf)
{
	double sum = 0, weight = 0, seen = 0, r, s;
	int64_t t = now, end = now + (horizon > 0 ? horizon : 1);

	*conf = 0;
	for (int i = 0; t < end && i < DEMAND_HOURS; i++) {
		int64_t next = (t / HOUR_MS + 1) * HOUR_MS;
		double w = (double)((next < end ? next : end) - t);
		if (bucket_rate(d, e, demand_hour_of_week(t), now, &r, &s) == 0) {
			sum += w * r;
			weight += w;
			seen += w * s;
		}
		t = next;
	}
	if (weight <= 0)
		return -1;
	seen /= weight;
	*conf = seen / (seen + PROFILE_CONF_S);
	return sum / weight;
}

double demand_transition(const struct demand *d, const char *fa, const char *qa, const char *fb,
			 const char *qb)
{
	int a = key_find(d, fa, qa), b = key_find(d, fb, qb);

	if (a < 0 || b < 0 || d->keys[a].n <= 0)
		return 0;
	return d->keys[a].next[b] / d->keys[a].n;
}

/*
 * The share of a follow-up's delays below x seconds: an exponential of
 * the pair's mean delay, cut at the window (delays past it are not
 * follow-ups).
 */
static double lag_cdf(double x, double mean_s, double window_s)
{
	if (x <= 0)
		return 0;
	if (x >= window_s)
		return 1;
	return (1 - exp(-x / mean_s)) / (1 - exp(-window_s / mean_s));
}

/*
 * Follow-ups of key b expected in [now, now + horizon) from the users
 * active now: a user whose last job, of key a, was e seconds ago brings
 * one with P(a -> b) x the share of the pair's delays in [e, e + horizon),
 * given that none came in the first e seconds.
 */
static double follow_ups(const struct demand *d, int b, int64_t now, int64_t horizon)
{
	double sum = 0, w = (double)d->window_ms / 1000.0;

	for (size_t i = 0; i < DEMAND_USERS; i++) {
		const struct duser *u = &d->users[i];
		const struct dkey *a;
		double p, mean, e, before, in;
		if (u->hash == 0 || u->t + d->window_ms <= now)
			continue;
		a = &d->keys[u->key];
		if (a->n <= 0 || a->next[b] <= 0)
			continue;
		p = a->next[b] / a->n;
		mean = a->lag[b] / a->next[b];
		if (mean < 1)
			mean = 1;
		e = now > u->t ? (double)(now - u->t) / 1000.0 : 0;
		before = lag_cdf(e, mean, w);
		in = lag_cdf(e + (double)horizon / 1000.0, mean, w) - before;
		if (in > 0 && p * before < 1)
			sum += p * in / (1 - p * before);
	}
	return sum;
}

double demand_predict(const struct demand *d, const char *fn, const char *q, int64_t now,
		      int64_t horizon, struct demand_estimate *out)
{
	struct demand_estimate x = {.rate_profile = -1};
	int k = key_find(d, fn, q);
	const struct dkey *e;
	double conf = 0, wp, rate;

	if (out)
		*out = x;
	if (k < 0 || horizon <= 0)
		return 0;
	e = &d->keys[k];
	x.rate_fast = rate_of(d, e->fast, e->rate_t, now, DEMAND_FAST_HALF_MS);
	x.rate_slow = rate_of(d, e->slow, e->rate_t, now, DEMAND_SLOW_HALF_MS);
	x.rate_profile = profile_over(d, e, now, horizon, &conf);
	wp = x.rate_profile >= 0 ? PROFILE_WEIGHT * conf : 0;
	rate = wp * (x.rate_profile > 0 ? x.rate_profile : 0) +
	       (1 - wp) * (FAST_SHARE * x.rate_fast + (1 - FAST_SHARE) * x.rate_slow);
	x.trans_share = e->n > 0 ? e->trans_in / e->n : 0;
	x.recent = rate * (double)horizon / 1000.0 * (1 - x.trans_share);
	x.transitions = follow_ups(d, k, now, horizon);
	x.total = x.recent + x.transitions;
	if (out)
		*out = x;
	return x.total;
}

double demand_profile_rate(const struct demand *d, const char *fn, const char *q, int64_t t)
{
	int k = key_find(d, fn, q);
	double r, s;

	if (k < 0 || bucket_rate(d, &d->keys[k], demand_hour_of_week(t), t, &r, &s) < 0)
		return -1;
	return r;
}

/* ---- saving: rows of text ---- */

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* v >= 0 in two characters: 0, or 2^((q - 1) / 64 - 10), about 1.1% apart. */
static void enc(double v, char out[2])
{
	int q = 0;

	if (v >= exp2(-10)) {
		q = (int)lround((log2(v) + 10) * 64) + 1;
		q = q < 1 ? 1 : q > 4095 ? 4095 : q;
	}
	out[0] = b64[q >> 6];
	out[1] = b64[q & 63];
}

static int dec(const char *s, double *v)
{
	const char *a = s[0] ? strchr(b64, s[0]) : NULL, *b = s[1] && a ? strchr(b64, s[1]) : NULL;
	int q;

	if (a == NULL || b == NULL)
		return -1;
	q = (int)(a - b64) * 64 + (int)(b - b64);
	*v = q == 0 ? 0 : exp2((double)(q - 1) / 64.0 - 10);
	return 0;
}

static int savable(const char *s)
{
	return strpbrk(s, "|;=\n") == NULL;
}

/* Row 0: the exposure; then per key its rates and profile ("r:"), and its transitions ("t:"). */
size_t demand_rows(const struct demand *d)
{
	return 1 + 2 * d->nkeys;
}

static int row_exposure(const struct demand *d, int64_t now, char *val, size_t nval)
{
	char cells[2 * DEMAND_HOURS + 1];

	for (int h = 0; h < DEMAND_HOURS; h++)
		enc(expo_real(d, h, now), cells + 2 * h);
	cells[2 * DEMAND_HOURS] = '\0';
	return snprintf(val, nval, "1 %lld %lld %lld %s", (long long)now, (long long)d->t0,
			(long long)d->seen, cells) < (int)nval ? 0 : -1;
}

static int row_rates(const struct demand *d, const struct dkey *e, int64_t now, char *val,
		     size_t nval)
{
	char cells[2 * DEMAND_HOURS + 1];
	double gp = d->gp.set ? g_at(&d->gp, now) : 1, gt = d->gt.set ? g_at(&d->gt, now) : 1;

	for (int h = 0; h < DEMAND_HOURS; h++)
		enc(e->prof[h] / gp, cells + 2 * h);
	cells[2 * DEMAND_HOURS] = '\0';
	return snprintf(val, nval, "1 %lld %.6g %.6g %.6g %.6g %s", (long long)now,
			e->fast * decay(now - e->rate_t, DEMAND_FAST_HALF_MS),
			e->slow * decay(now - e->rate_t, DEMAND_SLOW_HALF_MS), e->n / gt,
			e->trans_in / gt, cells) < (int)nval ? 0 : -1;
}

/* The largest pairs first would need a sort; pairs that do not fit are left out. */
static int row_trans(const struct demand *d, const struct dkey *e, int64_t now, char *val,
		     size_t nval)
{
	double gt = d->gt.set ? g_at(&d->gt, now) : 1;
	size_t len = (size_t)snprintf(val, nval, "1 %lld ", (long long)now);

	for (size_t b = 0; b < d->nkeys && len < nval; b++) {
		const struct dkey *to = &d->keys[b];
		char cell[2 * NAME_MAX_LEN + 40];
		int n;
		if (e->next[b] <= 0 || !savable(to->fn) || !savable(to->q))
			continue;
		n = snprintf(cell, sizeof cell, "%s|%s=%.4g:%.4g;", to->fn, to->q, e->next[b] / gt,
			     e->lag[b] / gt);
		if (n < 0 || len + (size_t)n >= nval)
			break;
		memcpy(val + len, cell, (size_t)n + 1);
		len += (size_t)n;
	}
	return 0;
}

int demand_row(const struct demand *d, size_t i, int64_t now, char *name, size_t nname,
	       char *val, size_t nval)
{
	const struct dkey *e;

	if (i >= demand_rows(d) || nval == 0)
		return -1;
	if (i == 0) {
		snprintf(name, nname, "e");
		return row_exposure(d, now, val, nval);
	}
	e = &d->keys[(i - 1) / 2];
	if (!savable(e->fn) || !savable(e->q)) {
		snprintf(name, nname, "-");
		val[0] = '\0';
		return 0;
	}
	snprintf(name, nname, "%s:%s|%s", (i - 1) % 2 ? "t" : "r", e->fn, e->q);
	return (i - 1) % 2 ? row_trans(d, e, now, val, nval) : row_rates(d, e, now, val, nval);
}

/* "fn|q" into the key (created). */
static int key_named(struct demand *d, const char *s, size_t len)
{
	char fn[NAME_MAX_LEN], q[NAME_MAX_LEN];
	const char *bar = memchr(s, '|', len);

	if (bar == NULL || (size_t)(bar - s) >= sizeof fn || len - (size_t)(bar - s) - 1 >= sizeof q)
		return -1;
	snprintf(fn, sizeof fn, "%.*s", (int)(bar - s), s);
	snprintf(q, sizeof q, "%.*s", (int)(len - (size_t)(bar - s) - 1), bar + 1);
	return key_get(d, fn, q);
}

static int cells_in(const char *s, double *out)
{
	if (strlen(s) != 2 * DEMAND_HOURS)
		return -1;
	for (int h = 0; h < DEMAND_HOURS; h++)
		if (dec(s + 2 * h, &out[h]) < 0)
			return -1;
	return 0;
}

static int load_exposure(struct demand *d, const char *val)
{
	long long at, t0, seen;
	char cells[2 * DEMAND_HOURS + 2];
	double v[DEMAND_HOURS];

	if (sscanf(val, "1 %lld %lld %lld %337s", &at, &t0, &seen, cells) != 4 ||
	    cells_in(cells, v) < 0)
		return -1;
	clocks_at(d, at);
	for (int h = 0; h < DEMAND_HOURS; h++)
		d->expo[h] += v[h] * g_at(&d->gp, at);
	if (d->t0 == 0 || t0 < d->t0)
		d->t0 = t0;
	if (seen > d->seen)
		d->seen = seen;
	return 0;
}

static int load_rates(struct demand *d, int k, const char *val)
{
	long long at;
	double fast, slow, n, tin, v[DEMAND_HOURS];
	char cells[2 * DEMAND_HOURS + 2];
	struct dkey *e = &d->keys[k];

	if (sscanf(val, "1 %lld %lf %lf %lf %lf %337s", &at, &fast, &slow, &n, &tin, cells) != 6 ||
	    cells_in(cells, v) < 0)
		return -1;
	clocks_at(d, at);
	e->fast = fast;
	e->slow = slow;
	e->rate_t = at;
	e->n = n * g_at(&d->gt, at);
	e->trans_in = tin * g_at(&d->gt, at);
	for (int h = 0; h < DEMAND_HOURS; h++)
		e->prof[h] = v[h] * g_at(&d->gp, at);
	return 0;
}

static int load_trans(struct demand *d, int k, const char *val)
{
	long long at;
	int off = 0;
	const char *p;

	if (sscanf(val, "1 %lld %n", &at, &off) != 1 || off == 0)
		return -1;
	clocks_at(d, at);
	for (p = val + off; *p;) {
		const char *eq = strchr(p, '='), *semi = eq ? strchr(eq, ';') : NULL;
		int b;
		if (semi == NULL)
			return -1;
		b = key_named(d, p, (size_t)(eq - p));
		if (b >= 0) {
			char *colon;
			double n = strtod(eq + 1, &colon);
			/* "N:L", the count and its delays; a row without delays: half the window */
			double lag = *colon == ':' ? strtod(colon + 1, NULL)
						   : n * (double)d->window_ms / 2000.0;
			d->keys[k].next[b] = n * g_at(&d->gt, at);
			d->keys[k].lag[b] = lag * g_at(&d->gt, at);
		}
		p = semi + 1;
	}
	return 0;
}

int demand_load_row(struct demand *d, const char *name, const char *val)
{
	int k;

	if (strcmp(name, "e") == 0)
		return load_exposure(d, val);
	if ((name[0] != 'r' && name[0] != 't') || name[1] != ':')
		return -1;
	k = key_named(d, name + 2, strlen(name + 2));
	if (k < 0)
		return -1;
	return name[0] == 'r' ? load_rates(d, k, val) : load_trans(d, k, val);
}
