/*
 * view.c - the public view of a job and its plain-language message: pure
 * functions of their arguments (view.h). The scheduler builds a view with
 * what it knows of a live job (place in the queue, estimate, notice);
 * a finished job's view comes from its stored row alone.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "buf.h"
#include "errors.h"
#include "job.h"
#include "json.h"
#include "registry.h"
#include "view.h"

void view_iso8601(int64_t ms, char out[32])
{
	time_t s;
	struct tm tm;
	size_t n;

	if (ms < 0)
		ms = 0;
	s = (time_t)(ms / 1000);
	gmtime_r(&s, &tm);
	n = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(out + n, 32 - n, ".%03uZ", (unsigned)(ms % 1000));
}

static void put_time(struct json_object *o, const char *key, int64_t ms)
{
	char t[32];

	view_iso8601(ms, t);
	json_put(o, key, json_str(t));
}

/* "/api/outputs/" + path with each byte outside [A-Za-z0-9-._~/] escaped. */
static struct json_object *output_url(const char *path)
{
	static const char hex[] = "0123456789ABCDEF";
	struct buf b;
	struct json_object *s;

	buf_init(&b, 16 * 1024);
	buf_puts(&b, "/api/outputs/");
	for (const unsigned char *p = (const unsigned char *)path; *p; p++) {
		if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		    (*p >= '0' && *p <= '9') || strchr("-._~/", *p))
			buf_putc(&b, (char)*p);
		else
			buf_printf(&b, "%%%c%c", hex[*p >> 4], hex[*p & 15]);
	}
	s = json_str(b.data);
	buf_cleanup(&b);
	return s;
}

/* One stored output {path, kind, filename, thumbnail?} as the public shape. */
static struct json_object *view_output(const struct json_object *in)
{
	const char *path = json_get_str(in, "path");
	const char *kind = json_get_str(in, "kind");
	const char *name = json_get_str(in, "filename");
	const char *thumb = json_get_str(in, "thumbnail");
	struct json_object *o;

	if (path == NULL)
		return NULL;
	if (name == NULL)
		name = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
	o = json_object_new_object();
	json_put(o, "url", output_url(path));
	json_put(o, "kind", json_str(kind ? kind : "image"));
	json_put(o, "filename", json_str(name));
	if (thumb != NULL)
		json_put(o, "thumbnail_url", output_url(thumb));
	return o;
}

static struct json_object *view_outputs(const char *outputs_json)
{
	struct json_object *arr = json_object_new_array();
	struct json_object *in = json_tokener_parse(outputs_json ? outputs_json : "[]");

	if (!json_object_is_type(in, json_type_array)) {
		json_object_put(in);
		return arr;
	}
	for (size_t i = 0; i < json_object_array_length(in); i++) {
		struct json_object *o = view_output(json_object_array_get_idx(in, i));

		if (o != NULL)
			json_object_array_add(arr, o);
	}
	json_object_put(in);
	return arr;
}

static const char *nonempty(const char *s, const char *def)
{
	return s != NULL && s[0] != '\0' ? s : def;
}

/*
 * What the server tried, in plain words, from the job's tried list
 * ({"model", "runs"} entries; a plain id in older rows is one run):
 * "We tried 3 times, on 2 different servers."
 */
static void tried_sentence(const struct job *j, char *text, size_t n)
{
	struct json_object *tried = NULL;
	struct err e = {0};
	int attempts = 0, servers = 0;

	if (j->tried_json && json_parse(j->tried_json, strlen(j->tried_json), 4, &tried, &e) == 0 &&
	    json_object_is_type(tried, json_type_array)) {
		for (size_t i = 0; i < json_object_array_length(tried); i++) {
			struct json_object *x = json_object_array_get_idx(tried, i);
			int runs = json_object_is_type(x, json_type_string)
					   ? 1 : (int)json_get_int(x, "runs", 0);
			attempts += runs;
			servers += runs > 0;
		}
	}
	json_object_put(tried);
	if (attempts == 0 && j->error_code && strcmp(j->error_code, "MODEL_UNAVAILABLE") == 0)
		snprintf(text, n, "We could not start a server for it.");
	else if (attempts == 0)
		snprintf(text, n, "It had not started yet.");
	else if (attempts == 1)
		snprintf(text, n, "We tried once.");
	else if (servers > 1)
		snprintf(text, n, "We tried %d times, on %d different servers.", attempts, servers);
	else
		snprintf(text, n, "We tried %d times.", attempts);
}

/* {code, message, suggestion, action, tried}: the job's texts, the catalog's if unset. */
static struct json_object *view_error(const struct job *j)
{
	const struct user_error *ue = errors_find(j->error_code);
	struct json_object *o = json_object_new_object();
	char tried[128];

	if (ue == NULL)
		ue = errors_find("INTERNAL");
	tried_sentence(j, tried, sizeof tried);
	json_put(o, "code", json_str(j->error_code));
	json_put(o, "message", json_str(nonempty(j->error_message, ue->message)));
	json_put(o, "suggestion", json_str(nonempty(j->error_suggestion, ue->suggestion)));
	json_put(o, "action", json_str(nonempty(j->error_action, ue->action)));
	json_put(o, "tried", json_str(tried));
	return o;
}

static const char *quality_label(const struct job *j, const struct reg_function *fn)
{
	int q = fn ? registry_quality_index(fn, j->quality) : -1;

	return q >= 0 ? fn->qualities[q].label : j->quality;
}

static struct json_object *int_or_null(int64_t v)
{
	return v >= 0 ? json_int(v) : NULL;
}

struct json_object *view_job(const struct job *j, const struct reg_function *fn,
			     const struct view_live *live)
{
	struct json_object *o = json_object_new_object();
	int terminal = job_status_terminal(j->status);
	int64_t pos = -1, eta = terminal ? 0 : -1;
	const char *message = j->message ? j->message : "";

	if (live != NULL) {
		pos = j->status == JOB_QUEUED ? live->queue_position : -1;
		eta = terminal ? 0 : live->eta_s;
		message = live->message ? live->message : message;
	}
	json_put(o, "job_id", json_str(j->id));
	json_put(o, "function", json_str(j->function));
	json_put(o, "quality", json_str(j->quality));
	json_put(o, "quality_label", json_str(quality_label(j, fn)));
	json_put(o, "status", json_str(job_status_name(j->status)));
	json_put(o, "progress", json_int(j->progress));
	json_put(o, "message", json_str(message));
	json_put(o, "queue_position", int_or_null(pos));
	json_put(o, "eta_seconds", int_or_null(eta));
	json_put(o, "outputs", view_outputs(j->outputs_json));
	if (live != NULL && live->notice != NULL)
		json_put(o, "notice", json_str(live->notice));
	if ((j->status == JOB_FAILED || j->status == JOB_CANCELLED) &&
	    nonempty(j->error_code, NULL) != NULL)
		json_put(o, "error", view_error(j));
	put_time(o, "created_at", j->created_at);
	if (j->started_at > 0)
		put_time(o, "started_at", j->started_at);
	if (j->finished_at > 0)
		put_time(o, "finished_at", j->finished_at);
	return o;
}

struct json_object *view_submit(const struct job *j, int64_t position, int64_t eta_s)
{
	struct json_object *o = json_object_new_object();

	json_put(o, "job_id", json_str(j->id));
	json_put(o, "status", json_str(job_status_name(j->status)));
	json_put(o, "queue_position", int_or_null(position));
	json_put(o, "eta_seconds", int_or_null(eta_s));
	return o;
}

/* ---- messages ---- */

static const char *phase_text(const struct reg_function *fn, int phase)
{
	static const char *const defaults[] = {
		[REG_PHASE_QUEUED] = "Waiting",
		[REG_PHASE_PREPARING] = "Getting ready...",
		[REG_PHASE_RUNNING] = "Working on it...",
		[REG_PHASE_FINISHING] = "Adding final touches...",
		[REG_PHASE_DONE] = "Done",
		[REG_PHASE_FAILED] = "Something went wrong",
		[REG_PHASE_CANCELLED] = "Cancelled",
	};
	const char *t = fn ? registry_message(fn, phase) : NULL;

	return t ? t : defaults[phase];
}

static const int status_phase[] = {
	[JOB_QUEUED] = REG_PHASE_QUEUED, [JOB_PREPARING] = REG_PHASE_PREPARING,
	[JOB_RUNNING] = REG_PHASE_RUNNING, [JOB_COMPLETED] = REG_PHASE_DONE,
	[JOB_FAILED] = REG_PHASE_FAILED, [JOB_CANCELLED] = REG_PHASE_CANCELLED,
};

static void queued_message(const struct reg_function *fn, const struct view_msg *m, char *out,
			   size_t n)
{
	const char *base = m->notice ? m->notice : phase_text(fn, REG_PHASE_QUEUED);

	if (m->waiting != NULL)
		snprintf(out, n, "%s", m->waiting);
	else if (m->position <= 0)
		snprintf(out, n, "%s — you're next", base);
	else
		snprintf(out, n, "%s — %lld job%s ahead of yours", base, (long long)m->position,
			 m->position == 1 ? "" : "s");
}

void view_message(const struct reg_function *fn, const struct view_msg *m, char *out, size_t n)
{
	const char *base;

	if (m->status < 0 || m->status >= JOB_STATUS_COUNT) {
		snprintf(out, n, "%s", phase_text(fn, REG_PHASE_FAILED));
		return;
	}
	switch (m->status) {
	case JOB_QUEUED:
		queued_message(fn, m, out, n);
		return;
	case JOB_RUNNING:
		if (m->finishing) {
			snprintf(out, n, "%s", phase_text(fn, REG_PHASE_FINISHING));
			return;
		}
		base = phase_text(fn, REG_PHASE_RUNNING);
		if (m->progress > 0)
			snprintf(out, n, "%s %d%%", base, m->progress);
		else
			snprintf(out, n, "%s", base);
		return;
	case JOB_COMPLETED:
		if (m->notice && m->made_at) {
			snprintf(out, n, "%s — made at %s quality", phase_text(fn, REG_PHASE_DONE),
				 m->made_at);
			return;
		}
		break;
	default:
		break;
	}
	snprintf(out, n, "%s", phase_text(fn, status_phase[m->status]));
}
