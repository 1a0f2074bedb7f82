/*
 * test_prewarm.c - the pre-warm and autoscale policy (prewarm.h) asked of
 * hand-made snapshots: the benefit/cost boundary, keeping warm past the
 * idle time and stopping early (with the band between), scale up, the
 * hysteresis of scale down over a simulated run, and the guarantee that
 * no stop ever names a busy, starting or external runner or a runner of a
 * model with jobs waiting (10,000 random snapshots). Pure: no process.
 * Then the registry keys, and one gateway whose `prewarm` model stops its
 * idle runner early when no demand is predicted (the scheduler's side,
 * sched_prewarm.c, end to end).
 */
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "err.h"
#include "gwtest.h"
#include "prewarm.h"
#include "registry.h"
#include "testutil.h"

#define GIB (1024LL * 1024 * 1024)
#define NOW 10000000LL

static struct pw_config config(void)
{
	return (struct pw_config){.now_ms = NOW, .free_bytes = 80 * GIB, .price = 0.005,
				  .hold_ms = PW_HOLD_MS, .down_ratio = PW_DOWN_RATIO,
				  .min_idle_ms = PW_MIN_IDLE_MS};
}

/* Priced at 0.005 (not PW_PRICE, which is tuned): 10 GiB over a 100 s horizon costs 5 job-s; cold start 20 s. */
static struct pw_model model(const struct pw_runner *r, size_t n, double predicted)
{
	return (struct pw_model){.id = "m", .runners = r, .nrunners = n, .predicted = predicted,
				 .horizon_ms = 100000, .cold_start_s = 20, .run_s = 5,
				 .gpu_memory = 10 * GIB, .min_instances = 0, .max_instances = 4,
				 .idle_timeout_ms = 300000, .prewarm = 1, .startable = 1};
}

/* benefit >= cost at 1 - e^-p >= 0.25, p >= 0.2877. */
START_TEST(prewarm_boundary)
{
	struct pw_config c = config();
	struct pw_decision d[PW_MAX_DECISIONS];
	struct pw_model m = model(NULL, 0, 0.29);
	double b, cost;

	pw_value(&m, &c, &b, &cost);
	ck_assert_msg(fabs(cost - 5.0) < 1e-9, "cost %.4f", cost);
	ck_assert_int_eq(pw_decide(&m, &c, d, PW_MAX_DECISIONS), 1);
	ck_assert_int_eq(d[0].kind, PW_PREWARM);
	ck_assert_int_eq(d[0].action, PW_START);
	ck_assert_msg(strstr(d[0].reason, "cost 5.0") != NULL, "reason: %s", d[0].reason);
	m.predicted = 0.28;
	ck_assert_int_eq(pw_decide(&m, &c, d, PW_MAX_DECISIONS), 0);
}
END_TEST

/* No pre-warm: jobs queued (the pump starts), a runner there, no room, off, at max. */
START_TEST(prewarm_not_when)
{
	struct pw_config c = config();
	struct pw_decision d[PW_MAX_DECISIONS];
	struct pw_runner busy = {PW_R_BUSY, 0, 0, 0, 0}, stopping = {PW_R_STOPPING, 0, 0, 0, 0};
	struct pw_model m = model(NULL, 0, 5);

	m.queued = 1;
	ck_assert_int_eq(pw_decide(&m, &c, d, PW_MAX_DECISIONS), 0);
	m = model(&busy, 1, 5);
	ck_assert_int_eq(pw_decide(&m, &c, d, PW_MAX_DECISIONS), 0);
	m = model(NULL, 0, 5);
	c.free_bytes = 9 * GIB;
	ck_assert_int_eq(pw_decide(&m, &c, d, PW_MAX_DECISIONS), 0);
	c = config();
	m.prewarm = 0;
	ck_assert_int_eq(pw_decide(&m, &c, d, PW_MAX_DECISIONS), 0);
	m = model(NULL, 0, 5);
	m.startable = 0;
	ck_assert_int_eq(pw_decide(&m, &c, d, PW_MAX_DECISIONS), 0);
	/* A stopping runner counts for nothing: the model is cold. */
	m = model(&stopping, 1, 5);
	ck_assert_int_eq(pw_decide(&m, &c, d, PW_MAX_DECISIONS), 1);
	ck_assert_int_eq(d[0].kind, PW_PREWARM);
}
END_TEST

/* Due for the idle stop: kept while it pays (the one used last), else left to stop. */
START_TEST(keep_warm_past_idle)
{
	struct pw_config c = config();
	struct pw_decision d[PW_MAX_DECISIONS];
	struct pw_runner r[2] = {{PW_R_IDLE, NOW - 400000, 0, 0, 0}, {PW_R_IDLE, NOW - 350000, 0, 0, 0}};
	struct pw_model m = model(r, 2, 1.0);

	ck_assert_int_eq(pw_decide(&m, &c, d, PW_MAX_DECISIONS), 1);
	ck_assert_int_eq(d[0].kind, PW_KEEP_WARM);
	ck_assert_int_eq(d[0].runner, 1);
	m.predicted = 0.1; /* benefit 1.9 < 5: the idle stop goes ahead, nothing said */
	ck_assert_int_eq(pw_decide(&m, &c, d, PW_MAX_DECISIONS), 0);
	/* Due by the scheduler's clock (a tick a moment after the timeout): kept just the same. */
	m.predicted = 1.0;
	r[0].idle_since_ms = r[1].idle_since_ms = NOW - 299990;
	ck_assert_int_eq(pw_decide(&m, &c, d, PW_MAX_DECISIONS), 0);
	r[0].due = 1;
	ck_assert_int_eq(pw_decide(&m, &c, d, PW_MAX_DECISIONS), 1);
	ck_assert_int_eq(d[0].kind, PW_KEEP_WARM);
	ck_assert_int_eq(d[0].runner, 0);
}
END_TEST

/* Early stop below half the cost; the band between half and the whole changes nothing. */
START_TEST(early_stop_band)
{
	struct pw_config c = config();
	struct pw_decision d[PW_MAX_DECISIONS];
	struct pw_runner r[1] = {{PW_R_IDLE, NOW - 90000, 0, 0, 0}};
	struct pw_model m = model(r, 1, 0.1); /* benefit 1.90 < 2.5 */

	ck_assert_int_eq(pw_decide(&m, &c, d, PW_MAX_DECISIONS), 1);
	ck_assert_int_eq(d[0].kind, PW_EARLY_STOP);
	ck_assert_int_eq(d[0].action, PW_STOP);
	m.predicted = 0.2; /* benefit 3.63: between 2.5 and 5 */
	ck_assert_int_eq(pw_decide(&m, &c, d, PW_MAX_DECISIONS), 0);
	r[0].unused = 1; /* a pre-warm that took no job yet: the same band (no stop-start flapping) */
	ck_assert_int_eq(pw_decide(&m, &c, d, PW_MAX_DECISIONS), 0);
	m.predicted = 0.1; /* below half: it goes, said to be a pre-warm that missed */
	ck_assert_int_eq(pw_decide(&m, &c, d, PW_MAX_DECISIONS), 1);
	ck_assert_int_eq(d[0].kind, PW_EARLY_STOP);
	ck_assert_msg(strstr(d[0].reason, "no job yet") != NULL, "%s", d[0].reason);
	r[0].unused = 0;
	m.predicted = 0.1;
	m.min_instances = 1; /* kept for min_instances */
	ck_assert_int_eq(pw_decide(&m, &c, d, PW_MAX_DECISIONS), 0);
	m.min_instances = 0;
	r[0].idle_since_ms = NOW - 30000; /* not idle long enough */
	ck_assert_int_eq(pw_decide(&m, &c, d, PW_MAX_DECISIONS), 0);
}
END_TEST

START_TEST(scale_up_above_target)
{
	struct pw_config c = config();
	struct pw_decision d[PW_MAX_DECISIONS];
	struct pw_runner r[2] = {{PW_R_BUSY, 0, 0, 0, 0}, {PW_R_STARTING, 0, 0, 0, 0}};
	struct pw_model m = model(r, 1, 3);

	m.prewarm = 0;
	m.target_wait_ms = 5000;
	m.queued = 3;
	m.oldest_wait_ms = 4000;
	ck_assert_int_eq(pw_decide(&m, &c, d, PW_MAX_DECISIONS), 0);
	m.oldest_wait_ms = 6000;
	ck_assert_int_eq(pw_decide(&m, &c, d, PW_MAX_DECISIONS), 1);
	ck_assert_int_eq(d[0].kind, PW_SCALE_UP);
	ck_assert_msg(strstr(d[0].reason, "above the target 5.0 s") != NULL, "%s", d[0].reason);
	m.nrunners = 2; /* one already starting: wait for it */
	ck_assert_int_eq(pw_decide(&m, &c, d, PW_MAX_DECISIONS), 0);
	r[1].state = PW_R_BUSY;
	m.max_instances = 2;
	ck_assert_int_eq(pw_decide(&m, &c, d, PW_MAX_DECISIONS), 0);
}
END_TEST

/* A small world: the policy's decisions applied, ticks of 1 s, the wait signal given. */
struct world {
	struct pw_runner r[8];
	size_t n;
	int64_t last_change, now;
	int ups, downs;
	int64_t down_at[64];
};

static void world_tick(struct world *w, double wait_ms, size_t queued)
{
	struct pw_config c = config();
	struct pw_decision d[PW_MAX_DECISIONS];
	struct pw_model m = model(w->r, w->n, 0.5);
	size_t nd;

	c.now_ms = w->now;
	m.prewarm = 0;
	m.target_wait_ms = 10000;
	m.wait_ms = wait_ms;
	m.queued = queued;
	m.oldest_wait_ms = queued ? (int64_t)wait_ms : 0;
	m.last_change_ms = w->last_change;
	m.max_instances = 8;
	m.idle_timeout_ms = 600000;
	for (size_t i = 0; i < w->n; i++)
		if (w->r[i].state == PW_R_STARTING)
			w->r[i] = (struct pw_runner){PW_R_IDLE, w->now, 0, 0, 0};
	nd = pw_decide(&m, &c, d, PW_MAX_DECISIONS);
	for (size_t i = 0; i < nd; i++) {
		if (d[i].kind == PW_SCALE_UP) {
			w->r[w->n++] = (struct pw_runner){PW_R_STARTING, 0, 0, 0, 0};
			w->ups++;
			w->last_change = w->now;
		} else if (d[i].kind == PW_SCALE_DOWN) {
			ck_assert_msg(w->downs < 64, "too many downs");
			w->down_at[w->downs++] = w->now;
			w->r[d[i].runner] = w->r[--w->n];
			w->last_change = w->now;
		}
	}
	w->now += 1000;
}

/*
 * The wait swings between 0.6x and 1.4x the target with jobs queued for 5
 * minutes: it scales up but never down (0.6 > the lower threshold 0.5).
 * Then calm (wait 1 s, nothing queued): one runner at a time goes,
 * hold_ms apart, down to what the demand needs.
 */
START_TEST(hysteresis_no_flap)
{
	struct world w = {.now = NOW};

	w.r[w.n++] = (struct pw_runner){PW_R_IDLE, NOW, 0, 0, 0};
	for (int i = 0; i < 300; i++)
		world_tick(&w, i % 2 ? 14000 : 6000, i % 2 ? 2 : 0);
	ck_assert_msg(w.ups >= 2, "ups %d", w.ups);
	ck_assert_int_eq(w.downs, 0);
	for (int i = 0; i < 600; i++)
		world_tick(&w, 1000, 0);
	ck_assert_msg(w.downs >= 1, "downs %d", w.downs);
	ck_assert_int_eq((int)w.n, 1);
	for (int i = 1; i < w.downs; i++)
		ck_assert_msg(w.down_at[i] - w.down_at[i - 1] >= PW_HOLD_MS, "downs %lld ms apart",
			      (long long)(w.down_at[i] - w.down_at[i - 1]));
}
END_TEST

/* A runner due for its idle stop is held while the autoscaled model is not calm. */
START_TEST(scale_hold)
{
	struct pw_config c = config();
	struct pw_decision d[PW_MAX_DECISIONS];
	struct pw_runner r[2] = {{PW_R_IDLE, NOW - 400000, 0, 0, 0}, {PW_R_BUSY, 0, 0, 0, 0}};
	struct pw_model m = model(r, 2, 0.5);

	m.prewarm = 0;
	m.target_wait_ms = 10000;
	m.wait_ms = 7000;
	m.last_change_ms = NOW - 1000000;
	ck_assert_int_eq(pw_decide(&m, &c, d, PW_MAX_DECISIONS), 1);
	ck_assert_int_eq(d[0].kind, PW_SCALE_HOLD);
	m.wait_ms = 1000; /* calm: the idle one goes */
	ck_assert_int_eq(pw_decide(&m, &c, d, PW_MAX_DECISIONS), 1);
	ck_assert_int_eq(d[0].kind, PW_SCALE_DOWN);
	ck_assert_int_eq(d[0].runner, 0);
	m.wait_ms = 7000; /* not calm, but the idle one is the last: not held, the idle stop goes ahead */
	m.nrunners = 1;
	ck_assert_int_eq(pw_decide(&m, &c, d, PW_MAX_DECISIONS), 0);
}
END_TEST

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint64_t next(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

/* Random snapshots: a stop is only ever of an idle, own runner of a model with nothing waiting. */
START_TEST(never_stops_busy_or_waited_for)
{
	int stops = 0;

	for (int k = 0; k < 10000; k++) {
		struct pw_runner r[6];
		struct pw_decision d[PW_MAX_DECISIONS];
		struct pw_config c = config();
		size_t n = next() % 7, nd;
		int seen[6] = {0};
		struct pw_model m;

		for (size_t i = 0; i < n; i++)
			r[i] = (struct pw_runner){(int)(next() % 4),
						  NOW - (int64_t)(next() % 1000000), (int)(next() % 5 == 0),
						  (int)(next() % 2), (int)(next() % 3 == 0)};
		m = model(r, n, (double)(next() % 400) / 100.0);
		m.queued = next() % 3 == 0 ? next() % 4 : 0;
		m.oldest_wait_ms = m.queued ? (int64_t)(next() % 30000) : 0;
		m.prewarm = (int)(next() % 2);
		m.target_wait_ms = next() % 2 ? 10000 : 0;
		m.wait_ms = (double)(next() % 20000);
		m.last_change_ms = NOW - (int64_t)(next() % 200000);
		m.min_instances = (int64_t)(next() % 2);
		m.gpu_memory = (int64_t)(next() % 40) * GIB;
		nd = pw_decide(&m, &c, d, PW_MAX_DECISIONS);
		for (size_t i = 0; i < nd; i++) {
			if (d[i].runner >= 0) {
				ck_assert_msg(!seen[d[i].runner]++, "case %d: runner %d decided twice", k,
					      d[i].runner);
			}
			if (d[i].action != PW_STOP)
				continue;
			stops++;
			ck_assert_msg(m.queued == 0, "case %d: a stop with %zu queued", k, m.queued);
			ck_assert_msg(r[d[i].runner].state == PW_R_IDLE, "case %d: stopped state %d", k,
				      r[d[i].runner].state);
			ck_assert_msg(!r[d[i].runner].external, "case %d: stopped an external", k);
		}
	}
	ck_assert_msg(stops > 100, "the random cases stopped only %d runners", stops);
}
END_TEST

/* The registry keys `prewarm` and `target_wait` (docs/registry.md). */
static struct registry *load_model(const char *extra, struct err *e)
{
	char path[600], yaml[2048];
	static const char wf[] = "{\"1\": {\"class_type\": \"SimTextEncode\", \"inputs\": {\"text\": \"x\"}}}";

	snprintf(path, sizeof path, "%s/wf.json", tu_tmpdir());
	tu_write_file(path, wf, strlen(wf));
	snprintf(yaml, sizeof yaml,
		 "functions:\n  F:\n    params: {prompt: {type: string}}\n"
		 "    qualities: {low: {label: L, typical_seconds: [1, 2]}}\n"
		 "models:\n  m:\n    function: F\n    quality: low\n    workflow: wf.json\n"
		 "    command: [/bin/true, \"{port}\"]\n%s", extra);
	snprintf(path, sizeof path, "%s/reg.yaml", tu_tmpdir());
	tu_write_file(path, yaml, strlen(yaml));
	return registry_load(path, e);
}

START_TEST(registry_keys)
{
	struct err e = {0};
	struct registry *r = load_model("", &e);

	ck_assert_msg(r != NULL, "%s", e.msg);
	ck_assert_int_eq(registry_model(r, "m")->prewarm, 0);
	ck_assert_int_eq(registry_model(r, "m")->target_wait_ms, 0);
	registry_unref(r);
	r = load_model("    prewarm: true\n    target_wait: 30s\n", &e);
	ck_assert_msg(r != NULL, "%s", e.msg);
	ck_assert_int_eq(registry_model(r, "m")->prewarm, 1);
	ck_assert_int_eq(registry_model(r, "m")->target_wait_ms, 30000);
	registry_unref(r);
	r = load_model("    target_wait: 2d\n", &e);
	ck_assert_ptr_null(r);
	ck_assert_msg(strstr(e.msg, "target_wait") != NULL, "%s", e.msg);
	memset(&e, 0, sizeof e);
	r = load_model("    prewarm: maybe\n", &e);
	ck_assert_ptr_null(r);
	ck_assert_msg(strstr(e.msg, "prewarm") != NULL, "%s", e.msg);
}
END_TEST

/*
 * A `prewarm` model holding 60 GB, idle_timeout 1 h: after its one job,
 * nothing more is expected, holding it costs more than twice what it
 * could save, and its runner stops early (a minute of idle time, scaled
 * by 0.01), long before the idle stop; the gateway then exits cleanly.
 */
START_TEST(gateway_stops_early_without_demand)
{
	struct gw g;
	char *id, *log;
	struct json_object *o;
	int64_t deadline;

	gw_init(&g);
	gw_write_registry(&g, "server: {gpu: {vram: 64GB}}\n"
			      "functions:\n  Create Image:\n    params: {prompt: {type: string, required: true}}\n"
			      "    qualities: {low: {label: Fast Preview, typical_seconds: [1, 2]}}\n"
			      "models:\n  img:\n    function: Create Image\n    quality: low\n"
			      "    command: [\"{bindir}/fnrun-worker\", --model, sim, --step-ms, \"5\", --port, \"{port}\"]\n"
			      "    workflow: wf.json\n    bind: {prompt: \"1.inputs.text\"}\n"
			      "    resources: {gpu_memory: 60GB}\n    idle_timeout: 1h\n    prewarm: true\n");
	snprintf(g.extra, sizeof g.extra, "--time-scale 0.01");
	gw_start(&g);
	id = gw_submit(&g, "low", "a lighthouse");
	o = gw_wait_status(&g, id, "completed", 20000);
	json_object_put(o);
	deadline = tu_now_ms() + 20000;
	while (gw_runner_count(&g, "img") > 0 && tu_now_ms() < deadline)
		gw_sleep_ms(50);
	ck_assert_int_eq(gw_runner_count(&g, "img"), 0);
	log = gw_log(&g);
	ck_assert_msg(strstr(log, "kind=early_stop") != NULL, "no early stop in the log");
	free(log);
	{
		int st = gw_stop(&g, 10000);
		ck_assert_msg(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0, "exit status %d", st);
	}
	free(id);
	gw_cleanup(&g);
}
END_TEST

/*
 * A cheap `prewarm` model (1 GB) with jobs coming steadily: when its idle
 * time runs out, the policy, not the idle timer, decides; it keeps the
 * runner warm (kind=keep_warm), the same runner, never stopped for
 * idleness and started again. idle_timeout 2 min at --time-scale 0.01:
 * 1.2 s; the policy's tick every 50 ms.
 */
START_TEST(gateway_keeps_warm_past_idle_timeout)
{
	struct gw g;
	struct json_object *o;
	int64_t deadline;
	char *log;

	gw_init(&g);
	gw_write_registry(&g, "server: {gpu: {vram: 64GB}}\n"
			      "functions:\n  Create Image:\n    params: {prompt: {type: string, required: true}}\n"
			      "    qualities: {low: {label: Fast Preview, typical_seconds: [1, 2]}}\n"
			      "models:\n  img:\n    function: Create Image\n    quality: low\n"
			      "    command: [\"{bindir}/fnrun-worker\", --model, sim, --step-ms, \"1\", --port, \"{port}\"]\n"
			      "    workflow: wf.json\n    bind: {prompt: \"1.inputs.text\"}\n"
			      "    resources: {gpu_memory: 1GB}\n    idle_timeout: 2m\n    prewarm: true\n");
	snprintf(g.extra, sizeof g.extra, "--time-scale 0.01");
	gw_start(&g);
	for (int i = 0; i < 20; i++) {
		char *id = gw_submit(&g, "low", "a lighthouse");
		o = gw_wait_status(&g, id, "completed", 20000);
		json_object_put(o);
		free(id);
	}
	deadline = tu_now_ms() + 20000;
	while (gw_log_count(&g, "kind=keep_warm") == 0 && tu_now_ms() < deadline)
		gw_sleep_ms(20);
	ck_assert_int_eq(gw_log_count(&g, "kind=keep_warm"), 1);
	ck_assert_int_eq(gw_runner_count(&g, "img"), 1);
	log = gw_log(&g);
	ck_assert_msg(strstr(log, "reason=idle") == NULL,
		      "the runner was stopped for idleness before the policy's tick saw it due");
	free(log);
	ck_assert_int_eq(gw_log_count(&g, "model server spawned"), 1);
	gw_stop(&g, 10000);
	gw_cleanup(&g);
}
END_TEST

Suite *suite_prewarm(void)
{
	Suite *s = suite_create("prewarm");
	TCase *tc = tcase_create("prewarm");

	tcase_add_test(tc, prewarm_boundary);
	tcase_add_test(tc, prewarm_not_when);
	tcase_add_test(tc, keep_warm_past_idle);
	tcase_add_test(tc, early_stop_band);
	tcase_add_test(tc, scale_up_above_target);
	tcase_add_test(tc, hysteresis_no_flap);
	tcase_add_test(tc, scale_hold);
	tcase_add_test(tc, never_stops_busy_or_waited_for);
	tcase_add_test(tc, registry_keys);
	suite_add_tcase(s, tc);
	tc = tcase_create("prewarm_gateway");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, gateway_stops_early_without_demand);
	tcase_add_test(tc, gateway_keeps_warm_past_idle_timeout);
	suite_add_tcase(s, tc);
	return s;
}
