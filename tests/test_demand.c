/*
 * test_demand.c - the demand model (demand.h) on synthetic series whose
 * answer is known: a constant rate (regular, and Poisson from a fixed
 * seed), a daily profile with a known peak hour, a transition probability
 * of 0.6 from a scripted sequence, the follow-ups it predicts, bounded
 * memory with many users, and a save/load round trip that fits meta rows.
 * Pure: no process, no clock.
 */
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "demand.h"

#define MIN_MS 60000LL
#define HOUR_MS 3600000LL
#define DAY_MS (24 * HOUR_MS)
#define MONDAY 1704067200000LL /* 2024-01-01 00:00 UTC, a Monday */

static uint64_t rng = 88172645463325252ull;

static double uniform(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (double)(rng >> 11) / 9007199254740992.0;
}

static double near(double got, double want, double tol)
{
	return fabs(got - want) <= tol * want;
}

START_TEST(hour_of_week_utc)
{
	ck_assert_int_eq(demand_hour_of_week(MONDAY), 0);
	ck_assert_int_eq(demand_hour_of_week(MONDAY + 14 * HOUR_MS + 59 * MIN_MS), 14);
	ck_assert_int_eq(demand_hour_of_week(MONDAY + 6 * DAY_MS + 23 * HOUR_MS), 167);
	ck_assert_int_eq(demand_hour_of_week(0), 72); /* 1970-01-01 was a Thursday */
}
END_TEST

/* One job every 10 s for 3 hours: 0.1 jobs/s, 6 in the next minute. */
START_TEST(constant_rate_regular)
{
	struct demand *d = demand_new(0);
	struct demand_estimate e;
	int64_t t = MONDAY, end = MONDAY + 3 * HOUR_MS;
	double got;

	for (; t < end; t += 10000)
		demand_record(d, t, "Create Image", "low", NULL);
	got = demand_predict(d, "Create Image", "low", t, MIN_MS, &e);
	ck_assert_msg(near(e.rate_fast, 0.1, 0.05), "fast rate %.4f, want 0.1 +-5%%", e.rate_fast);
	ck_assert_msg(near(e.rate_slow, 0.1, 0.05), "slow rate %.4f, want 0.1 +-5%%", e.rate_slow);
	ck_assert_msg(near(got, 6.0, 0.05), "predicted %.3f jobs in 60 s, want 6 +-5%%", got);
	ck_assert_msg(e.transitions == 0, "no user, no follow-up: %.3f", e.transitions);
	ck_assert(demand_predict(d, "Create Video", "low", t, MIN_MS, NULL) == 0);
	demand_free(d);
}
END_TEST

/* Exponential gaps of mean 20 s (seeded) over 4 hours: the 1-h rate within 12%. */
START_TEST(constant_rate_poisson)
{
	struct demand *d = demand_new(0);
	struct demand_estimate e;
	int64_t t = MONDAY, end = MONDAY + 4 * HOUR_MS;

	while (t < end) {
		t += (int64_t)(-log(1 - uniform()) * 20000.0);
		demand_record(d, t, "Create Speech", "high", NULL);
	}
	demand_predict(d, "Create Speech", "high", t, 10 * MIN_MS, &e);
	ck_assert_msg(near(e.rate_slow, 0.05, 0.12), "slow rate %.4f, want 0.05 +-12%%", e.rate_slow);
	ck_assert_msg(near(e.total, 30.0, 0.3), "predicted %.2f in 10 min, want 30 +-30%%", e.total);
	demand_free(d);
}
END_TEST

/* Two weeks: hour 14 UTC gets 60 jobs, every other hour 6; the profile says so. */
START_TEST(profile_peak_hour)
{
	struct demand *d = demand_new(0);
	int64_t t = MONDAY, end = MONDAY + 14 * DAY_MS;
	double peak, quiet;
	int best = -1;
	double bestv = -1;

	for (int64_t h = t; h < end; h += HOUR_MS) {
		int n = demand_hour_of_week(h) % 24 == 14 ? 60 : 6;
		for (int i = 0; i < n; i++)
			demand_record(d, h + (HOUR_MS * i) / n, "Create Image", "low", NULL);
	}
	demand_advance(d, end);
	peak = demand_profile_rate(d, "Create Image", "low", end + 14 * HOUR_MS + 30 * MIN_MS);
	quiet = demand_profile_rate(d, "Create Image", "low", end + 3 * HOUR_MS);
	ck_assert_msg(near(peak, 60.0 / 3600, 0.1), "peak %.5f/s, want %.5f", peak, 60.0 / 3600);
	ck_assert_msg(near(quiet, 6.0 / 3600, 0.1), "quiet %.5f/s, want %.5f", quiet, 6.0 / 3600);
	for (int h = 0; h < 24; h++) {
		double v = demand_profile_rate(d, "Create Image", "low", end + h * HOUR_MS);
		if (v > bestv) {
			bestv = v;
			best = h;
		}
	}
	ck_assert_int_eq(best, 14);
	/* At 13:30, the next hour's prediction leans on the coming peak. */
	{
		struct demand_estimate e;
		demand_predict(d, "Create Image", "low", end + 13 * HOUR_MS + 30 * MIN_MS, HOUR_MS, &e);
		ck_assert_msg(e.rate_profile > 5.0 / 3600 * 4, "profile over the next hour %.5f",
			      e.rate_profile);
	}
	demand_free(d);
}
END_TEST

/*
 * One Monday: hour 14 gets 60 jobs, every other hour 6. On Tuesday (its
 * hours of the week never seen) the profile takes Monday's hours.
 */
START_TEST(profile_from_other_days)
{
	struct demand *d = demand_new(0);
	int64_t end = MONDAY + DAY_MS, tue = end;
	struct demand_estimate e;

	for (int64_t h = MONDAY; h < end; h += HOUR_MS) {
		int n = demand_hour_of_week(h) == 14 ? 60 : 6;
		for (int i = 0; i < n; i++)
			demand_record(d, h + (HOUR_MS * i) / n, "Create Image", "low", NULL);
	}
	demand_advance(d, end);
	ck_assert_msg(near(demand_profile_rate(d, "Create Image", "low", tue + 14 * HOUR_MS),
			   60.0 / 3600, 0.1), "Tuesday 14:00 from Monday's");
	ck_assert_msg(near(demand_profile_rate(d, "Create Image", "low", tue + 3 * HOUR_MS),
			   6.0 / 3600, 0.1), "Tuesday 03:00 from Monday's");
	demand_predict(d, "Create Image", "low", tue + 14 * HOUR_MS, 10 * MIN_MS, &e);
	ck_assert_msg(near(e.rate_profile, 60.0 / 3600, 0.1), "profile over 14:00-14:10 %.5f",
		      e.rate_profile);
	demand_free(d);
}
END_TEST

/* A bucket never observed, on any day, says nothing. */
START_TEST(profile_unknown_hour)
{
	struct demand *d = demand_new(0);

	demand_record(d, MONDAY + 10 * HOUR_MS, "f", "q", NULL);
	demand_advance(d, MONDAY + 11 * HOUR_MS);
	ck_assert(demand_profile_rate(d, "f", "q", MONDAY + 20 * HOUR_MS) < 0);
	ck_assert(demand_profile_rate(d, "f", "q", MONDAY + 10 * HOUR_MS) > 0);
	demand_free(d);
}
END_TEST

/*
 * 200 users make an image 30 s apart; three in five make a video 2 min
 * later (inside the 10-min window), the others nothing: P = 0.6.
 */
static void scripted_sessions(struct demand *d, int64_t t0)
{
	char user[32];

	for (int i = 0; i < 200; i++) {
		int64_t t = t0 + i * 30000LL;
		snprintf(user, sizeof user, "user-%d", i);
		demand_record(d, t, "Create Image", "high", user);
		if (i % 5 < 3)
			demand_record(d, t + 2 * MIN_MS, "Create Video", "high", user);
	}
}

START_TEST(transition_probability)
{
	struct demand *d = demand_new(10 * MIN_MS);
	double p;

	scripted_sessions(d, MONDAY);
	p = demand_transition(d, "Create Image", "high", "Create Video", "high");
	ck_assert_msg(fabs(p - 0.6) < 0.02, "P(image -> video) %.4f, want 0.6 +-0.02", p);
	p = demand_transition(d, "Create Video", "high", "Create Image", "high");
	ck_assert_msg(p == 0, "P(video -> image) %.4f, want 0", p);
	demand_free(d);
}
END_TEST

/*
 * A new user's image now: P = P(image -> video) (0.6, a little less with
 * the newcomer's own image counted) videos expected within the window;
 * the delays' mean is 2 min, so in its first 5 min P x F(5), F(x) =
 * (1 - e^-x/2) / (1 - e^-5); 3 min on, none yet, in the next 2 min
 * P x (F(5) - F(3)) / (1 - P x F(3)).
 */
START_TEST(transition_predicts_follow_up)
{
	struct demand *d = demand_new(10 * MIN_MS);
	int64_t later = MONDAY + 3 * DAY_MS; /* every scripted user's window is long over */
	struct demand_estimate full, half;
	double f5 = (1 - exp(-2.5)) / (1 - exp(-5)), f3 = (1 - exp(-1.5)) / (1 - exp(-5)), p, want;

	scripted_sessions(d, MONDAY);
	demand_record(d, later, "Create Image", "high", "newcomer");
	demand_predict(d, "Create Video", "high", later, 10 * MIN_MS, &full);
	demand_predict(d, "Create Video", "high", later, 5 * MIN_MS, &half);
	ck_assert_msg(fabs(full.transitions - 0.6) < 0.03, "follow-ups %.4f, want 0.6",
		      full.transitions);
	p = demand_transition(d, "Create Image", "high", "Create Video", "high");
	want = p * f5;
	ck_assert_msg(fabs(half.transitions - want) < 0.002, "follow-ups %.4f, want %.4f",
		      half.transitions, want);
	demand_predict(d, "Create Video", "high", later + 3 * MIN_MS, 2 * MIN_MS, &half);
	want = p * (f5 - f3) / (1 - p * f3);
	ck_assert_msg(fabs(half.transitions - want) < 0.002, "follow-ups 3 min on %.4f, want %.4f",
		      half.transitions, want);
	/* Every video was a follow-up: its base rate is not counted twice. */
	ck_assert_msg(full.trans_share > 0.99, "share %.3f", full.trans_share);
	ck_assert_msg(full.recent < 0.01, "recent %.4f", full.recent);
	/* After the window, nothing more is expected from that user. */
	demand_predict(d, "Create Video", "high", later + 11 * MIN_MS, 10 * MIN_MS, &full);
	ck_assert_msg(full.transitions == 0, "follow-ups after the window %.4f", full.transitions);
	demand_free(d);
}
END_TEST

/* 100,000 users pass through a table of DEMAND_USERS: the newest sessions still count. */
START_TEST(bounded_users)
{
	struct demand *d = demand_new(10 * MIN_MS);
	char user[32];
	int64_t t = MONDAY;
	double p;

	for (int i = 0; i < 100000; i++) {
		snprintf(user, sizeof user, "u%d", i);
		demand_record(d, t + i, "A", "q", user);
	}
	for (int i = 99990; i < 100000; i++) {
		snprintf(user, sizeof user, "u%d", i);
		demand_record(d, t + 100000 + i, "B", "q", user);
	}
	p = demand_transition(d, "A", "q", "B", "q");
	ck_assert_msg(p > 0.00009 && p < 0.00011, "P(A -> B) %.6f, want 10/100000", p);
	demand_free(d);
}
END_TEST

/* Rows fit a meta row (under 1024 bytes) and a model loaded from them predicts the same. */
START_TEST(save_load_round_trip)
{
	struct demand *d = demand_new(10 * MIN_MS), *r = demand_new(10 * MIN_MS);
	char name[256], val[DEMAND_ROW_MAX];
	int64_t now = MONDAY + 14 * DAY_MS;
	struct demand_estimate a, b;

	for (int64_t h = MONDAY; h < now - DAY_MS; h += 10 * MIN_MS)
		demand_record(d, h, "Create Image", demand_hour_of_week(h) % 24 == 9 ? "high" : "low",
			      NULL);
	scripted_sessions(d, now - DAY_MS);
	demand_advance(d, now);
	for (size_t i = 0; i < demand_rows(d); i++) {
		ck_assert_int_eq(demand_row(d, i, now, name, sizeof name, val, sizeof val), 0);
		ck_assert_msg(strlen(val) < 1024, "row %s: %zu bytes", name, strlen(val));
		if (strcmp(name, "-") != 0)
			ck_assert_msg(demand_load_row(r, name, val) == 0, "row %s refused: %s", name, val);
	}
	ck_assert_int_eq(demand_row(d, demand_rows(d), now, name, sizeof name, val, sizeof val), -1);
	ck_assert_int_eq(demand_load_row(r, "r:Create Image|low", "garbage"), -1);
	ck_assert_int_eq(demand_load_row(r, "zz", "1"), -1);
	for (int i = 0; i < 3; i++) {
		const char *q = i == 0 ? "low" : "high";
		const char *f = i == 2 ? "Create Video" : "Create Image";
		int64_t at = now + 9 * HOUR_MS;
		demand_predict(d, f, q, at, HOUR_MS, &a);
		demand_predict(r, f, q, at, HOUR_MS, &b);
		ck_assert_msg(fabs(a.recent - b.recent) <= 0.03 * a.recent + 1e-9,
			      "%s %s: %.4f saved, %.4f loaded", f, q, a.recent, b.recent);
	}
	ck_assert_msg(fabs(demand_transition(r, "Create Image", "high", "Create Video", "high") -
			   demand_transition(d, "Create Image", "high", "Create Video", "high")) <
			      0.01,
		      "the transition survives");
	/* and its delays: a newcomer's image predicts the same follow-ups */
	demand_record(d, now, "Create Image", "high", "newcomer");
	demand_record(r, now, "Create Image", "high", "newcomer");
	demand_predict(d, "Create Video", "high", now, 4 * MIN_MS, &a);
	demand_predict(r, "Create Video", "high", now, 4 * MIN_MS, &b);
	ck_assert_msg(a.transitions > 0.3 && fabs(a.transitions - b.transitions) < 0.01,
		      "follow-ups %.4f saved, %.4f loaded", a.transitions, b.transitions);
	demand_free(d);
	demand_free(r);
}
END_TEST

Suite *suite_demand(void)
{
	Suite *s = suite_create("demand");
	TCase *tc = tcase_create("demand");

	tcase_add_test(tc, hour_of_week_utc);
	tcase_add_test(tc, constant_rate_regular);
	tcase_add_test(tc, constant_rate_poisson);
	tcase_add_test(tc, profile_peak_hour);
	tcase_add_test(tc, profile_from_other_days);
	tcase_add_test(tc, profile_unknown_hour);
	tcase_add_test(tc, transition_probability);
	tcase_add_test(tc, transition_predicts_follow_up);
	tcase_add_test(tc, bounded_users);
	tcase_add_test(tc, save_load_round_trip);
	suite_add_tcase(s, tc);
	return s;
}
