/*
 * trace.h - the usage trace of make trace-bench (docs/design.md §9,
 * "Pre-warming, judged on a trace"): a generator (trace_gen.c) and the
 * replayer (trace_replay.c, the binary's main).
 *
 * A trace file is text, one job a line, in time order:
 *     OFFSET_MS FUNCTION_INDEX QUALITY USER
 * OFFSET_MS from the trace's start (a Monday 00:00 UTC, trace time), the
 * function an index into trace_functions[], QUALITY its key, USER a name.
 */
#ifndef FNRUN_TRACE_H
#define FNRUN_TRACE_H

#include <stdint.h>
#include <stdio.h>

struct trace_fn {
	const char *name;     /* the function in the registry */
	const char *quality;
	const char *model;    /* its one sim model's id */
	int gpu_gb;           /* gpu_memory of a runner, GB */
	int load_s;           /* the model server's load time, trace seconds */
	int run_s;            /* one job's run, trace seconds */
};

#define TRACE_NFN 4
extern const struct trace_fn trace_functions[TRACE_NFN];

struct trace_job {
	int64_t at_ms;        /* trace time from the start */
	int fn;               /* index into trace_functions */
	int user;
};

/*
 * Writes a trace of `days` days from seed (the same seed, the same
 * trace) to out; returns the number of jobs. Sessions start at a rate
 * that follows a daily cycle (quiet at night, a peak at 15:00 UTC,
 * weekends at 60%) with a few bursts a day (ten minutes at 4x); each
 * session is one user's: Create Image (often again, and then often a
 * Create Video of it a few minutes later), or Create Speech, or a
 * Create Image at Maximum Detail.
 */
long trace_gen(uint64_t seed, int days, double sessions_per_day, FILE *out);

/* Reads a trace written by trace_gen: *out (caller frees) and the count, or -1. */
long trace_read(const char *path, struct trace_job **out);

#endif
