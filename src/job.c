/*
 * job.c - the job object and its state machine (docs/design.md §4).
 *
 *                   +------------- retry (attempt + 1) -------------+
 *                   v                                               |
 *   submit ----> queued -------> preparing -------> running --------+
 *                 |  ^             |    |             |
 *                 |  +-- retry ----+    |             +----> completed
 *                 |                     |             +----> failed
 *                 +--> failed           +--> failed   +----> cancelled
 *                 +--> cancelled        +--> cancelled
 *
 *   queued    -> preparing  scheduler picked a runner
 *   queued    -> cancelled  user cancelled while waiting
 *   queued    -> failed     no model can serve it, attempts used up
 *   preparing -> running    the prompt reached the model server
 *   preparing -> queued     the runner failed to start; retry
 *   preparing -> failed     no retry left
 *   preparing -> cancelled  user cancelled while the runner started
 *   running   -> completed  outputs copied
 *   running   -> failed     error that no retry can fix, or no retry left
 *   running   -> cancelled  interrupted on the model server
 *   running   -> queued     runner died or hung, or a retryable error
 *   completed, failed, cancelled: final, no way out.
 *
 * Every change goes through job_set_status(), which asserts the edge is in
 * the table below; the scheduler owns the decisions, this file the rules.
 *
 * Invariants: the strings marked "never NULL" in job.h are never NULL; id
 * is 32 hex digits; status is a valid enum value; progress is 0-100.
 */
#include <assert.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "job.h"
#include "log.h"
#include "util.h"

#define BIT(s) (1u << (s))

static const char *const status_names[JOB_STATUS_COUNT] = {
	[JOB_QUEUED] = "queued",
	[JOB_PREPARING] = "preparing",
	[JOB_RUNNING] = "running",
	[JOB_COMPLETED] = "completed",
	[JOB_FAILED] = "failed",
	[JOB_CANCELLED] = "cancelled",
};

/* transitions[from] is the set of states `from` may move to. */
static const unsigned transitions[JOB_STATUS_COUNT] = {
	[JOB_QUEUED] = BIT(JOB_PREPARING) | BIT(JOB_CANCELLED) | BIT(JOB_FAILED),
	[JOB_PREPARING] = BIT(JOB_RUNNING) | BIT(JOB_QUEUED) | BIT(JOB_FAILED) |
			  BIT(JOB_CANCELLED),
	[JOB_RUNNING] = BIT(JOB_COMPLETED) | BIT(JOB_FAILED) |
			BIT(JOB_CANCELLED) | BIT(JOB_QUEUED),
	[JOB_COMPLETED] = 0,
	[JOB_FAILED] = 0,
	[JOB_CANCELLED] = 0,
};

static int status_valid(int status)
{
	return status >= 0 && status < JOB_STATUS_COUNT;
}

struct job *job_new(void)
{
	struct job *j = xcalloc(1, sizeof *j);

	util_uuid4_hex(j->id);
	j->function = xstrdup("");
	j->quality = xstrdup("");
	j->params_json = xstrdup("{}");
	j->message = xstrdup("");
	j->outputs_json = xstrdup("[]");
	j->tried_json = xstrdup("[]");
	j->status = JOB_QUEUED;
	j->max_attempts = 3;
	j->created_at = util_now_ms();
	j->updated_at = j->created_at;
	return j;
}

/*
 * Offsets of the string fields, so free and copy walk one list. A new
 * string field in job.h must be added here too.
 */
static const size_t string_offs[] = {
	offsetof(struct job, function),
	offsetof(struct job, quality),
	offsetof(struct job, params_json),
	offsetof(struct job, idempotency_key),
	offsetof(struct job, owner),
	offsetof(struct job, route_key),
	offsetof(struct job, model_version),
	offsetof(struct job, model_id),
	offsetof(struct job, runner_id),
	offsetof(struct job, remote_prompt_id),
	offsetof(struct job, remote_url),
	offsetof(struct job, message),
	offsetof(struct job, error_code),
	offsetof(struct job, error_message),
	offsetof(struct job, error_suggestion),
	offsetof(struct job, error_action),
	offsetof(struct job, error_detail),
	offsetof(struct job, outputs_json),
	offsetof(struct job, tried_json),
};

#define STRING_FIELDS (sizeof string_offs / sizeof string_offs[0])

/* The address of the i-th string field of j. */
static char **string_field(struct job *j, size_t i)
{
	return (char **)(void *)((char *)j + string_offs[i]);
}

void job_free(struct job *j)
{
	if (j == NULL)
		return;
	for (size_t i = 0; i < STRING_FIELDS; i++)
		free(*string_field(j, i));
	free(j);
}

struct job *job_dup(const struct job *j)
{
	struct job *c = xmalloc(sizeof *c);

	*c = *j;
	for (size_t i = 0; i < STRING_FIELDS; i++) {
		char **f = string_field(c, i);

		if (*f != NULL)
			*f = xstrdup(*f);
	}
	return c;
}

void job_set_str(char **field, const char *value)
{
	char *copy = value ? xstrdup(value) : NULL;

	free(*field);
	*field = copy;
}

const char *job_status_name(int status)
{
	return status_valid(status) ? status_names[status] : "unknown";
}

int job_status_parse(const char *name)
{
	if (name == NULL)
		return -1;
	for (int i = 0; i < JOB_STATUS_COUNT; i++)
		if (strcmp(name, status_names[i]) == 0)
			return i;
	return -1;
}

int job_status_terminal(int status)
{
	return status == JOB_COMPLETED || status == JOB_FAILED ||
	       status == JOB_CANCELLED;
}

int job_transition_ok(int from, int to)
{
	if (!status_valid(from) || !status_valid(to))
		return 0;
	return (transitions[from] & BIT(to)) != 0;
}

void job_set_status(struct job *j, int to, int64_t now_ms)
{
	int from = j->status;

	assert(job_transition_ok(from, to));
	j->status = to;
	j->updated_at = now_ms;
	if (to == JOB_RUNNING)
		j->started_at = now_ms;
	else if (to == JOB_QUEUED)
		j->started_at = 0;
	if (job_status_terminal(to))
		j->finished_at = now_ms;
	log_info("job=%s status=%s from=%s attempt=%d", j->id,
		 status_names[to], status_names[from], j->attempt);
}

int job_check(const struct job *j)
{
	if (strlen(j->id) != JOB_ID_LEN || !status_valid(j->status))
		return 0;
	if (j->progress < 0 || j->progress > 100 || j->attempt < 0)
		return 0;
	return j->function && j->quality && j->params_json && j->message &&
	       j->outputs_json && j->tried_json;
}
