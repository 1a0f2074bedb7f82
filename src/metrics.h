/*
 * metrics.h - the gateway's metrics in the Prometheus text exposition
 * format (version 0.0.4): labelled counters and fixed-bucket histograms,
 * updated in O(1) where things already happen (the scheduler, its commits,
 * the runners' reports), rendered into a bounded buffer on each scrape;
 * and a ring of recent operator events (evictions, restarts, cooldowns,
 * fallbacks, out-of-memory retries) for the /admin page.
 *
 * A leaf module: it knows nothing of the scheduler, which calls it. Gauges
 * that describe the scheduler's state now (queues, runners, GPU memory) are
 * rendered by the scheduler at scrape time with metrics_family() and
 * metrics_sample() (sched_metrics.c).
 *
 * Invariants:
 * 1. Label values are registry names (function, quality key, model id),
 *    error codes of the catalog, and fixed words: never a job id or text
 *    a user sent. Series are bounded: past METRICS_MAX_SERIES an update is
 *    dropped and counted in fnrun_metrics_series_dropped_total.
 * 2. A NULL or empty label value leaves the label out (Prometheus treats
 *    an empty label as an absent one).
 * 3. Counters only grow. Loop thread only.
 */
#ifndef FNRUN_METRICS_H
#define FNRUN_METRICS_H

#include <stddef.h>
#include <stdint.h>

struct buf;
struct json_object;

#define METRICS_MAX_SERIES 20000
#define METRICS_EVENTS 200 /* operator events kept */

enum metrics_counter {
	MC_JOBS_SUBMITTED,     /* {function, quality} */
	MC_JOBS_COMPLETED,     /* {function, quality, model} */
	MC_JOBS_FAILED,        /* {function, quality, model, code} */
	MC_JOBS_CANCELLED,     /* {function, quality} */
	MC_JOBS_RETRIED,       /* {function, quality, model}: the model that failed it */
	MC_RUNNERS_STARTED,    /* {model} */
	MC_RUNNER_RESTARTS,    /* {model}: a ready runner failed (exit, hang, probes) */
	MC_RUNNER_START_FAILS, /* {model}: a runner never became ready */
	MC_RUNNERS_CRASHED,    /* {model}: a runner failed holding a job */
	MC_COOLDOWNS,          /* {model}: rested after repeated failures */
	MC_FALLBACKS,          /* {function, quality, model, fallback} */
	MC_OOM_RETRIES,        /* {function, quality, model}: retried one quality down */
	MC_EVICTIONS,          /* {model}: the idle runner stopped to make room */
	MC_STORE_COMMITS,      /* {} */
	MC_STORE_ROWS,         /* {} */
	MC_STORE_FAILURES,     /* {} */
	MC_COUNT
};

enum metrics_hist {
	MH_QUEUE_WAIT,         /* {function, quality}: queued to handed to a runner, each attempt */
	MH_SUBMIT_DISPATCH,    /* {function, quality}: submit to POST /prompt sent, first attempt */
	MH_COLD_START,         /* {model}: runner started to ready */
	MH_RUN,                /* {function, quality, model}: running to completed */
	MH_END_TO_END,         /* {function, quality, status}: submit to the final state */
	MH_STORE_COMMIT,       /* {}: one group commit of the job store */
	MH_COUNT
};

/* Label values of one update; NULL leaves a label out. Borrowed for the call. */
struct metrics_labels {
	const char *function; /* catalog name */
	const char *quality;  /* quality key: low, standard, high */
	const char *model;    /* registry model id */
	const char *code;     /* error code of the catalog (errors.c) */
	const char *status;   /* completed, failed, cancelled */
	const char *fallback; /* the model a job moved to */
};

/* Drops every series and event (tests; start-up). */
void metrics_reset(void);
void metrics_inc(int counter, const struct metrics_labels *l, uint64_t by);
/* One observation, in seconds (negative ones count as 0). */
void metrics_observe(int hist, const struct metrics_labels *l, double seconds);
/* A counter's value for those labels exactly; 0 when it has no such series. */
uint64_t metrics_value(int counter, const struct metrics_labels *l);
/* Series held now (every counter and histogram). */
size_t metrics_series(void);

/*
 * Appends every counter and histogram family to b. Returns 0, or -1 when
 * b reached its limit (b then ends at the last whole family).
 */
int metrics_render(struct buf *b);

/* For gauges rendered by others: # HELP and # TYPE of one family. */
int metrics_family(struct buf *b, const char *name, const char *type, const char *help);
/*
 * One sample: name{k1="v1",...} value. kv holds nkv names and values
 * alternately (values escaped here; a NULL or empty value leaves its
 * label out). Returns 0 or -1 (the limit of b).
 */
int metrics_sample(struct buf *b, const char *name, const char *const *kv, size_t nkv,
		   double value);
/* Appends v escaped as a label value (backslash, double quote, newline). */
int metrics_escape(struct buf *b, const char *v);

/* ---- operator events ---- */

/*
 * Records an operator event: kind is a static word (eviction, restart,
 * cooldown, fallback, oom_retry, start_failure); model and other are
 * registry ids (copied, cut at 127 bytes), other may be NULL.
 */
void metrics_event(const char *kind, const char *model, const char *other);
/*
 * The events newest first, at most limit: [{time_ms, kind, model, other?}].
 * Caller owns the result.
 */
struct json_object *metrics_events_json(size_t limit);

#endif
