/*
 * demand.h - how many jobs a function x quality will get soon, learned
 * from the jobs that arrived (docs/design.md §3, "Pre-warming").
 *
 * Pure: no clock, no I/O, no global. Times are ms on whatever clock the
 * caller uses (the scheduler passes its clock divided by --time-scale, so
 * that a compressed trace looks like real days); hours of the week are
 * counted in UTC, 0 = Monday 00:00-01:00.
 *
 * Per key (a function and a quality, DEMAND_MAX_KEYS of them):
 *  - two decayed arrival counts, half-lives DEMAND_FAST_HALF_MS (5 min)
 *    and DEMAND_SLOW_HALF_MS (1 h); rate = ln 2 / half-life x count,
 *    corrected for the time observed so far (1 - 2^(-observed / half));
 *  - a 168-bucket hour-of-week profile: decayed arrivals per bucket over
 *    the decayed time observed in that bucket (both with half-life
 *    DEMAND_PROFILE_HALF_MS); an hour of the week never seen takes the
 *    same hour of the other days pooled, at half the confidence, and an
 *    hour seen on no day says nothing;
 *  - transitions: for each pair (A, B), the decayed count of jobs of A
 *    whose user's next job, within window_ms, was of B; P(A -> B) is
 *    that over A's decayed count (half-life DEMAND_TRANS_HALF_MS), and
 *    their delays' decayed sum, whose mean shapes when B is expected. The
 *    last key and time of DEMAND_USERS recent users are kept in a fixed
 *    table (users are hashed; a new user evicts the older of two slots).
 *
 * Invariants:
 * 1. demand_record() is O(1): no loop over users, keys or pairs, and the
 *    profile's exposure walk crosses each hour once (at most 2 weeks of
 *    buckets per call).
 * 2. Memory is fixed at demand_new(): nothing grows with jobs or users.
 * 3. demand_predict() changes nothing.
 */
#ifndef FNRUN_DEMAND_H
#define FNRUN_DEMAND_H

#include <stddef.h>
#include <stdint.h>

#define DEMAND_MAX_KEYS 32                     /* function x quality pairs tracked */
#define DEMAND_USERS 1024                      /* recent users remembered */
#define DEMAND_HOURS 168                       /* buckets of the hour-of-week profile */
#define DEMAND_FAST_HALF_MS (5LL * 60000)      /* the recent rate's half-life */
#define DEMAND_SLOW_HALF_MS (60LL * 60000)     /* the hourly rate's half-life */
#define DEMAND_PROFILE_HALF_MS (14LL * 86400000) /* the profile's half-life */
#define DEMAND_TRANS_HALF_MS (86400000LL)      /* the transitions' half-life */
#define DEMAND_WINDOW_MS (10LL * 60000)        /* default transition window */
#define DEMAND_ROW_MAX 1024                    /* bytes of one saved row, NUL included */

struct demand;

/* What a prediction is made of (all for the horizon asked, in jobs). */
struct demand_estimate {
	double total;       /* expected arrivals in the horizon */
	double recent;      /* the mix of recent, hourly and profile rates x horizon */
	double transitions; /* expected follow-ups of users active now */
	double rate_fast;   /* jobs/s, half-life 5 min */
	double rate_slow;   /* jobs/s, half-life 1 h */
	double rate_profile; /* jobs/s the profile gives over the horizon; -1 unknown */
	double trans_share; /* share of the key's arrivals that were follow-ups */
};

/* Caller owns the result; free with demand_free(). window_ms <= 0: DEMAND_WINDOW_MS. */
struct demand *demand_new(int64_t window_ms);
void demand_free(struct demand *d);

/* The hour of the week of t_ms (UTC, 0 = Monday 00:00). */
int demand_hour_of_week(int64_t t_ms);

/*
 * One job of function x quality arrived at t_ms for user (NULL or "": no
 * session, no transition). Times may come out of order (a rebuild);
 * an arrival older than the key's newest counts with its decayed weight.
 * A new key past DEMAND_MAX_KEYS is not tracked (returns -1), else 0.
 */
int demand_record(struct demand *d, int64_t t_ms, const char *function, const char *quality,
		  const char *user);

/* Time observed: the profile's exposure runs up to now_ms (the scheduler's tick). */
void demand_advance(struct demand *d, int64_t now_ms);

/*
 * Expected arrivals of function x quality in [now_ms, now_ms + horizon_ms):
 * the rate mix (profile 0.6 x its confidence, the rest 60/40 between the
 * 5-min and 1-h rates) times the horizon, less the share of arrivals that
 * were follow-ups, plus the follow-ups expected from users active now
 * (P(A -> B) x the chance that the delay, exponential of the pair's mean
 * and cut at the window, lands in the horizon given it did not land yet).
 * 0 for an unknown key. out (may be NULL) gets the parts.
 */
double demand_predict(const struct demand *d, const char *function, const char *quality,
		      int64_t now_ms, int64_t horizon_ms, struct demand_estimate *out);

/* P(next job of the same user within the window is B | a job of A); 0 when unknown. */
double demand_transition(const struct demand *d, const char *fa, const char *qa, const char *fb,
			 const char *qb);

/* Jobs/s the profile says for the hour of t_ms (else that hour on other days); -1: never seen. */
double demand_profile_rate(const struct demand *d, const char *function, const char *quality,
			   int64_t t_ms);

/*
 * Saving: the state is a list of rows, each a name (at most 200 bytes)
 * and a value (under DEMAND_ROW_MAX bytes, so each fits a store meta row).
 * demand_rows() says how many; demand_row() writes row i at save time
 * now_ms (-1 when i is out of range). Recent users are not saved.
 * demand_load_row() takes a row back (-1 when it is not one of ours or
 * is damaged: then nothing of it is kept).
 */
size_t demand_rows(const struct demand *d);
int demand_row(const struct demand *d, size_t i, int64_t now_ms, char *name, size_t nname,
	       char *value, size_t nvalue);
int demand_load_row(struct demand *d, const char *name, const char *value);

#endif
