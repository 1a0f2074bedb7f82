/*
 * view.h - what users see of a job: its public view (GET /api/jobs/{id},
 * every event) and its plain-language message. Pure functions: the output
 * depends only on the arguments, so the scheduler builds views and events
 * fans them out, and both are unit-tested without a server.
 *
 * A view never names a model, runner, container or technical cause.
 */
#ifndef FNRUN_VIEW_H
#define FNRUN_VIEW_H

#include <stddef.h>
#include <stdint.h>

struct job;
struct json_object;
struct reg_function;

/* What only the scheduler knows of a live job. */
struct view_live {
	int64_t queue_position; /* jobs ahead of it (0: next); -1 when not queued */
	int64_t eta_s;          /* honest estimate of seconds left; -1 unknown */
	const char *notice;     /* a change the user should know of, or NULL */
	const char *message;    /* the live message, replacing j->message; or NULL */
};

/*
 * The public view of j: {job_id, function, quality, quality_label, status,
 * progress, message, queue_position (null unless queued), eta_seconds (null
 * when unknown), outputs: [{url, kind, filename, thumbnail_url?}], notice?,
 * error?: {code, message, suggestion, action, tried}, created_at,
 * started_at?, finished_at?} with ISO 8601 UTC timestamps. fn (may be
 * NULL) gives the quality's label; live is NULL for a job read from the
 * store (no position, the estimate 0 once finished). Caller owns the result
 * (json_object_put).
 */
struct json_object *view_job(const struct job *j, const struct reg_function *fn,
			     const struct view_live *live);

/*
 * The answer to a submit: {job_id, status, queue_position, eta_seconds},
 * each of the last two null when -1. Caller owns the result.
 */
struct json_object *view_submit(const struct job *j, int64_t position, int64_t eta_s);

/* What a job's message is made of. */
struct view_msg {
	int status;             /* enum job_status */
	int progress;           /* percent, while running */
	int64_t position;       /* while queued: jobs ahead (0: next); -1 unknown */
	int finishing;          /* 1: its outputs are being finished */
	const char *waiting;    /* while queued: why it cannot start, or NULL */
	const char *notice;     /* a quality change the user was told of, or NULL */
	const char *made_at;    /* quality label it was made at, with a notice */
};

/*
 * The plain-language message into out (n bytes): "Waiting — 3 jobs ahead
 * of yours", "Getting ready...", "Creating your image... 40%", "Adding
 * final touches...", "Done — made at Balanced quality". The function's
 * `messages:` replace the default texts. fn may be NULL.
 */
void view_message(const struct reg_function *fn, const struct view_msg *m, char *out, size_t n);

/* "2024-05-01T12:34:56.789Z" for ms since the epoch, into out. */
void view_iso8601(int64_t ms, char out[32]);

#endif
