/*
 * job.h - one generation request and its lifecycle (docs/design.md §4).
 *
 * A struct job is a plain heap object: the store reads and writes it, the
 * scheduler changes it through job_set_status(), the API renders it. Every
 * string field is owned by the job and freed by job_free(); replace one with
 * job_set_str(). Fields marked "never NULL" hold at least "" after job_new().
 */
#ifndef FNRUN_JOB_H
#define FNRUN_JOB_H

#include <stdint.h>

enum job_status {
	JOB_QUEUED,    /* waiting in the queue for a runner */
	JOB_PREPARING, /* a runner was chosen and is starting or loading */
	JOB_RUNNING,   /* the prompt is on the model server */
	JOB_COMPLETED, /* terminal: outputs copied to the output store */
	JOB_FAILED,    /* terminal: error_* say why */
	JOB_CANCELLED, /* terminal: the user cancelled it */
	JOB_STATUS_COUNT
};

#define JOB_ID_LEN 32 /* hex digits in a job id */

struct job {
	/*
	 * Timestamps are ms since the epoch, 0 when unset.
	 * Set once, when the job is created; never updated in the store.
	 */
	char id[JOB_ID_LEN + 1]; /* 32 lower-case hex digits (UUID4) */
	char *function;          /* catalog function name; never NULL */
	char *quality;           /* quality name, e.g. "standard"; never NULL */
	char *params_json;       /* validated params, JSON text; never NULL */
	char *idempotency_key;   /* client's key, unique per store; nullable */
	char *owner;             /* id of the API key that made it; NULL: no key */
	char *route_key;         /* A/B variants stick to it: the request's user, else owner;
				  * NULL: the job's own id */
	int64_t seq;             /* queue order, set by store_job_insert() */
	int64_t created_at;      /* ms since the epoch */
	int64_t lease_gen;       /* shared store: the claim this node holds (fencing); 0: none */
	int cancel_asked;        /* shared store: another node asked to cancel it */

	/* Mutable: written by store_job_update(). */
	int status;              /* enum job_status; see job_set_status() */
	int priority;            /* higher runs first; equal: lower seq first */
	int attempt;             /* attempts started so far; 0 at first */
	int max_attempts;        /* attempts allowed before the job fails */
	char *model_id;          /* model of the current attempt; nullable */
	char *model_version;     /* that model's `version:` when it was sent; nullable */
	char *runner_id;         /* runner holding the job; nullable */
	char *remote_prompt_id;  /* the model server's prompt id; nullable */
	char *remote_url;        /* that model server's base URL; nullable */
	int progress;            /* percent done, 0-100 */
	char *message;           /* plain-language, for users; never NULL */
	char *error_code;        /* user-facing: "OUT_OF_MEMORY"; nullable */
	char *error_message;     /* user-facing sentence; nullable */
	char *error_suggestion;  /* user-facing advice; nullable */
	char *error_action;      /* user-facing: "REDUCE_QUALITY"; nullable */
	char *error_detail;      /* operator-only technical cause; nullable */
	char *outputs_json;      /* JSON array of outputs; never NULL, "[]" */
	char *tried_json;        /* JSON array of model ids tried; never NULL */
	int64_t started_at;      /* ms since the epoch; this attempt's start */
	int64_t finished_at;     /* ms since the epoch; end (terminal state) */
	int64_t updated_at;      /* ms since the epoch of the last change */
};

/*
 * A queued job with a fresh id, created_at = updated_at = now, priority 0,
 * max_attempts 3, outputs and tried "[]", params "{}", other strings "" or
 * NULL as marked above. Caller owns the result; free with job_free().
 */
struct job *job_new(void);
/* Frees j and every string it owns. job_free(NULL) does nothing. */
void job_free(struct job *j);
/* A deep copy. Caller owns the result; free with job_free(). */
struct job *job_dup(const struct job *j);
/*
 * Replaces the string in *field (a field of a job) with a copy of value,
 * freeing the old one. value may be NULL; it is copied, not taken.
 */
void job_set_str(char **field, const char *value);

/* "queued", "preparing", ...; "unknown" outside the enum. Static strings. */
const char *job_status_name(int status);
/* The enum value for a name from job_status_name(), or -1. */
int job_status_parse(const char *name);
/* 1 for completed, failed and cancelled. */
int job_status_terminal(int status);
/* 1 when docs/design.md §4 allows from -> to (see the diagram in job.c). */
int job_transition_ok(int from, int to);
/*
 * The one writer of j->status. Asserts the transition is legal (check with
 * job_transition_ok() first when it depends on input), logs it, and stamps
 * updated_at = now_ms; started_at = now_ms on entering running (cleared on
 * going back to queued); finished_at = now_ms on entering a terminal state.
 * Only memory changes; persist with store_job_update().
 */
void job_set_status(struct job *j, int to, int64_t now_ms);
/* Invariants, for assert(job_check(j)). */
int job_check(const struct job *j);

#endif
