/*
 * estimate.c - learned run and start times. See estimate.h.
 */
#include <string.h>

#include "estimate.h"
#include "json.h"
#include "registry.h"

#define DECAY 0.9 /* weight of the past at each new observation */

static const char *const size_params[] = {"width", "height", "steps", "frames", "fps", "duration",
					  "seconds", NULL};

double estimate_cost(const struct reg_function *fn, const struct json_object *params)
{
	double cost = 1;

	if (fn->output == REG_OUTPUT_AUDIO) {
		double chars = 0;
		json_object_object_foreach((struct json_object *)params, k, v) {
			(void)k;
			if (json_object_is_type(v, json_type_string))
				chars += json_object_get_string_len(v);
		}
		return chars > 0 ? chars : 1;
	}
	for (size_t i = 0; size_params[i]; i++) {
		struct json_object *v = json_get(params, size_params[i]);
		double d = v ? json_object_get_double(v) : 0;
		if (d > 0)
			cost *= d;
	}
	return cost;
}

void estimate_learn_run(struct estimate *e, double cost, double run_ms)
{
	e->n = e->n * DECAY + 1;
	e->sx = e->sx * DECAY + cost;
	e->sy = e->sy * DECAY + run_ms;
	e->sxx = e->sxx * DECAY + cost * cost;
	e->sxy = e->sxy * DECAY + cost * run_ms;
}

void estimate_learn_start(struct estimate *e, double start_ms)
{
	e->start_ms = e->starts ? e->start_ms * DECAY + start_ms * (1 - DECAY) : start_ms;
	e->starts++;
}

double estimate_mean_ms(const struct estimate *e)
{
	return e->n > 0 ? e->sy / e->n : 0;
}

double estimate_run_s(const struct estimate *e, double cost, double fallback_s)
{
	double mx, my, var, b, y;

	if (e->n <= 0)
		return fallback_s;
	mx = e->sx / e->n;
	my = e->sy / e->n;
	var = e->sxx / e->n - mx * mx;
	if (e->n < 2 || var <= mx * mx * 1e-6)
		return my / 1000.0; /* one size seen so far: its mean */
	b = (e->sxy / e->n - mx * my) / var;
	if (b < 0)
		b = 0;
	y = my + b * (cost - mx);
	/* Never below a tenth of the mean: extrapolating down is the least sure. */
	return (y > my * 0.1 ? y : my * 0.1) / 1000.0;
}

double estimate_start_s(const struct estimate *e)
{
	return e->starts ? e->start_ms / 1000.0 : 0;
}
