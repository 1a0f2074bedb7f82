/*
 * estimate.h - honest time estimates, learned per model from completed jobs.
 *
 * Run time is fitted as a + b * cost by decayed least squares, where cost
 * is what drives a model's work, read from the job's params: the text
 * length for audio functions, else the product of the size params present
 * (width, height, steps, frames, duration, seconds). A model whose run time
 * does not depend on them learns b ~ 0. Start (spawn to ready) is learned
 * as a decayed mean. Before any history, the quality's typical_seconds
 * stand in.
 */
#ifndef FNRUN_ESTIMATE_H
#define FNRUN_ESTIMATE_H

struct json_object;
struct reg_function;

struct estimate {
	double n, sx, sy, sxx, sxy; /* decayed sums of (cost, run ms) */
	double start_ms;            /* decayed mean of start to ready, ms */
	int starts;                 /* starts observed */
};

double estimate_cost(const struct reg_function *fn, const struct json_object *params);
void estimate_learn_run(struct estimate *e, double cost, double run_ms);
void estimate_learn_start(struct estimate *e, double start_ms);
/* Seconds one run of `cost` takes; fallback_s until something was learned. */
double estimate_run_s(const struct estimate *e, double cost, double fallback_s);
/* Seconds a new runner takes to become ready (0 until learned). */
double estimate_start_s(const struct estimate *e);
/* The mean learned run time in ms, 0 without history. */
double estimate_mean_ms(const struct estimate *e);

#endif
