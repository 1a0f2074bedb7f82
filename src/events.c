/*
 * events.c - job events to SSE watchers: a hash of watched jobs, each with
 * its watchers and a short replay ring, and one heartbeat timer.
 *
 * Invariants:
 *  1. A struct ev_job exists only for a job that a watcher watches or
 *     watched less than EV_LINGER_MS ago; publishing to any other job is
 *     one failed hash lookup.
 *  2. Every event published for an ev_job since its creation (seq >
 *     since_seq) is in its ring, or was evicted and then dropped_seq >= its
 *     seq, or was a progress event replaced by a later progress event
 *     (which supersedes it). So a replay after Last-Event-ID L is complete
 *     when since_seq <= L and dropped_seq <= L.
 *  3. A watcher watches each job once; its subs are linked into their
 *     jobs' lists until the watcher starts ending, and it is freed only in
 *     the stream's on_close.
 *  4. ev.seq only grows: ids within one stream increase.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "errors.h"
#include "events.h"
#include "http.h"
#include "job.h"
#include "json.h"
#include "log.h"
#include "registry.h"
#include "scheduler.h"
#include "server.h"
#include "store.h"
#include "util.h"

#define EV_LINGER_MS 60000          /* ring kept after the last watcher left */
#define EV_MAX_EVENT (256 * 1024)   /* bytes of one formatted event */
#define EV_RETRY "retry: 2000\n\n"
#define EV_PING ": ping\n\n"

struct ev_entry {
	uint64_t seq;
	char *text; /* the formatted event; owned */
	size_t len;
	int progress; /* 1: a progress event, replaced by the next one */
};

struct ev_sub;

struct ev_job {
	char id[JOB_ID_LEN + 1];
	struct ev_job *hnext;    /* hash chain */
	struct ev_sub *subs;     /* watchers of this job, doubly linked */
	size_t nsubs;
	struct ev_entry *ring;   /* EVENTS_RING entries, allocated on first event */
	size_t head, count;      /* oldest entry at ring[head] */
	uint64_t since_seq;      /* ev.seq when this entry was created */
	uint64_t dropped_seq;    /* newest seq evicted from the ring; 0: none */
	uint64_t idle_since_ms;  /* monotonic; when nsubs last became 0 */
};

struct watcher;

struct ev_sub {
	struct watcher *w;
	struct ev_job *job;      /* NULL once unlinked */
	struct ev_sub *prev, *next;
	int done;                /* its terminal state was sent */
};

struct watcher {
	struct http_stream *stream; /* valid until on_close */
	struct watcher *prev, *next;
	size_t nsubs;
	size_t left;                /* subs not yet done */
	int ending;                 /* http_stream_end() called */
	struct ev_sub subs[];
};

/* The module's state; loop thread only. */
static struct {
	struct ev_job **buckets; /* hash table of watched jobs */
	size_t nbuckets;         /* power of two, or 0 before first use */
	size_t njobs;
	struct watcher *watchers; /* every open stream */
	size_t nwatchers;
	uint64_t seq;            /* last event id given out */
	uv_timer_t ping;         /* heartbeat and sweep */
	int ping_init, ping_on, shut;
} ev;

/* ---- the job view ---- */

void events_iso8601(int64_t ms, char out[32])
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

	events_iso8601(ms, t);
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

/* {code, message, suggestion, action}: the job's texts, the catalog's if unset. */
static struct json_object *view_error(const struct job *j)
{
	const struct user_error *ue = errors_find(j->error_code);
	struct json_object *o = json_object_new_object();

	if (ue == NULL)
		ue = errors_find("INTERNAL");
	json_put(o, "code", json_str(j->error_code));
	json_put(o, "message", json_str(nonempty(j->error_message, ue->message)));
	json_put(o, "suggestion", json_str(nonempty(j->error_suggestion, ue->suggestion)));
	json_put(o, "action", json_str(nonempty(j->error_action, ue->action)));
	return o;
}

static const char *quality_label(const struct job *j, const struct sjob *sj)
{
	const struct reg_function *f = sj ? sj->fn : NULL;
	int q;

	if (f == NULL && server.reg != NULL)
		f = registry_function(server.reg, j->function);
	q = f ? registry_quality_index(f, j->quality) : -1;
	return q >= 0 ? f->qualities[q].label : j->quality;
}

static struct json_object *int_or_null(int64_t v)
{
	return v >= 0 ? json_int(v) : NULL;
}

struct json_object *events_job_view(const struct job *j, const struct sjob *sj)
{
	struct json_object *o = json_object_new_object();
	int terminal = job_status_terminal(j->status);
	int64_t pos = -1, eta = terminal ? 0 : -1;

	if (sj != NULL && j->status == JOB_QUEUED)
		pos = sched_position(sj);
	if (sj != NULL && !terminal)
		eta = sched_eta(sj);
	json_put(o, "job_id", json_str(j->id));
	json_put(o, "function", json_str(j->function));
	json_put(o, "quality", json_str(j->quality));
	json_put(o, "quality_label", json_str(quality_label(j, sj)));
	json_put(o, "status", json_str(job_status_name(j->status)));
	json_put(o, "progress", json_int(j->progress));
	json_put(o, "message", json_str(j->message ? j->message : ""));
	json_put(o, "queue_position", int_or_null(pos));
	json_put(o, "eta_seconds", int_or_null(eta));
	json_put(o, "outputs", view_outputs(j->outputs_json));
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

int events_format(struct buf *b, uint64_t seq, const char *type,
		  const struct json_object *view)
{
	if (buf_printf(b, "id: %llu\nevent: %s\ndata: ", (unsigned long long)seq, type) < 0)
		return -1;
	if (json_dump(b, view) < 0)
		return -1;
	return buf_puts(b, "\n\n");
}

/* 1 when a view's status is completed, failed or cancelled. */
static int view_terminal(const struct json_object *view)
{
	int st = job_status_parse(nonempty(json_get_str(view, "status"), "?"));

	return st >= 0 && job_status_terminal(st);
}

/* ---- the table of watched jobs ---- */

static size_t id_hash(const char *id)
{
	uint64_t h = 1469598103934665603ull; /* FNV-1a */

	for (; *id; id++)
		h = (h ^ (unsigned char)*id) * 1099511628211ull;
	return (size_t)h;
}

static struct ev_job *job_lookup(const char *id)
{
	struct ev_job *je;

	if (ev.nbuckets == 0)
		return NULL;
	je = ev.buckets[id_hash(id) & (ev.nbuckets - 1)];
	while (je != NULL && strcmp(je->id, id) != 0)
		je = je->hnext;
	return je;
}

static void table_grow(void)
{
	size_t n = ev.nbuckets ? ev.nbuckets * 2 : 64;
	struct ev_job **b = xcalloc(n, sizeof *b);

	for (size_t i = 0; i < ev.nbuckets; i++) {
		struct ev_job *je = ev.buckets[i];

		while (je != NULL) {
			struct ev_job *next = je->hnext;
			size_t k = id_hash(je->id) & (n - 1);

			je->hnext = b[k];
			b[k] = je;
			je = next;
		}
	}
	free(ev.buckets);
	ev.buckets = b;
	ev.nbuckets = n;
}

/* The entry for id, created when missing. Owned by the table. */
static struct ev_job *job_get(const char *id)
{
	struct ev_job *je = job_lookup(id);
	size_t k;

	if (je != NULL)
		return je;
	if (ev.njobs >= ev.nbuckets)
		table_grow();
	je = xcalloc(1, sizeof *je);
	snprintf(je->id, sizeof je->id, "%s", id);
	je->since_seq = ev.seq;
	je->idle_since_ms = util_mono_ms();
	k = id_hash(id) & (ev.nbuckets - 1);
	je->hnext = ev.buckets[k];
	ev.buckets[k] = je;
	ev.njobs++;
	return je;
}

static void job_free_entry(struct ev_job *je)
{
	for (size_t i = 0; je->ring != NULL && i < je->count; i++)
		free(je->ring[(je->head + i) % EVENTS_RING].text);
	free(je->ring);
	free(je);
}

/* Unlinks and frees je; it must have no watcher. */
static void job_remove(struct ev_job *je)
{
	struct ev_job **pp = &ev.buckets[id_hash(je->id) & (ev.nbuckets - 1)];

	while (*pp != je)
		pp = &(*pp)->hnext;
	*pp = je->hnext;
	ev.njobs--;
	job_free_entry(je);
}

/* Keeps an event for replay; takes ownership of text. */
static void ring_push(struct ev_job *je, uint64_t seq, char *text, size_t len, int progress)
{
	struct ev_entry *last;

	if (je->ring == NULL)
		je->ring = xcalloc(EVENTS_RING, sizeof *je->ring);
	last = je->count ? &je->ring[(je->head + je->count - 1) % EVENTS_RING] : NULL;
	if (progress && last != NULL && last->progress) {
		/* A newer progress event supersedes the last one (invariant 2). */
		free(last->text);
		*last = (struct ev_entry){seq, text, len, 1};
		return;
	}
	if (je->count == EVENTS_RING) {
		struct ev_entry *old = &je->ring[je->head];

		je->dropped_seq = old->seq;
		free(old->text);
		je->head = (je->head + 1) % EVENTS_RING;
		je->count--;
	}
	je->ring[(je->head + je->count) % EVENTS_RING] = (struct ev_entry){seq, text, len, progress};
	je->count++;
}

/* ---- watchers ---- */

static void ping_update(void);

static void sub_unlink(struct ev_sub *s)
{
	struct ev_job *je = s->job;

	if (je == NULL)
		return;
	if (s->prev != NULL)
		s->prev->next = s->next;
	else
		je->subs = s->next;
	if (s->next != NULL)
		s->next->prev = s->prev;
	s->job = NULL;
	s->prev = s->next = NULL;
	if (--je->nsubs == 0)
		je->idle_since_ms = util_mono_ms();
}

static void sub_link(struct watcher *w, struct ev_sub *s, struct ev_job *je)
{
	s->w = w;
	s->job = je;
	s->prev = NULL;
	s->next = je->subs;
	if (je->subs != NULL)
		je->subs->prev = s;
	je->subs = s;
	je->nsubs++;
}

/*
 * Ends w's stream: it stops watching at once (so it costs publishers
 * nothing) and is freed in on_close once the HTTP layer is done.
 */
static void watcher_end(struct watcher *w)
{
	if (w->ending)
		return;
	w->ending = 1;
	for (size_t i = 0; i < w->nsubs; i++)
		sub_unlink(&w->subs[i]);
	http_stream_end(w->stream);
}

/* Writes bytes to w, or drops w when its peer does not keep up. */
static void watcher_send(struct watcher *w, const char *p, size_t n)
{
	if (w->ending)
		return;
	if (http_stream_queued(w->stream) + n > EVENTS_MAX_QUEUED ||
	    http_stream_write(w->stream, p, n) < 0) {
		log_info("sse watcher dropped reason=backpressure queued=%zu",
			 http_stream_queued(w->stream));
		watcher_end(w);
	}
}

/* Marks w's sub done after its terminal event; ends w when none is left. */
static void sub_done(struct ev_sub *s)
{
	if (s->done)
		return;
	s->done = 1;
	if (--s->w->left == 0)
		watcher_end(s->w);
}

static void on_stream_close(struct http_stream *st, void *ud)
{
	struct watcher *w = ud;

	for (size_t i = 0; i < w->nsubs; i++)
		sub_unlink(&w->subs[i]);
	if (w->prev != NULL)
		w->prev->next = w->next;
	else
		ev.watchers = w->next;
	if (w->next != NULL)
		w->next->prev = w->prev;
	ev.nwatchers--;
	free(w);
	ping_update();
}

/* ---- heartbeat and sweep ---- */

/* Frees entries nobody has watched for EV_LINGER_MS. */
static void sweep(uint64_t now)
{
	for (size_t i = 0; i < ev.nbuckets; i++) {
		struct ev_job *je = ev.buckets[i];

		while (je != NULL) {
			struct ev_job *next = je->hnext;

			if (je->nsubs == 0 && now - je->idle_since_ms >= EV_LINGER_MS)
				job_remove(je);
			je = next;
		}
	}
}

static void on_ping(uv_timer_t *t)
{
	struct watcher *w = ev.watchers;

	while (w != NULL) {
		struct watcher *next = w->next;

		watcher_send(w, EV_PING, strlen(EV_PING));
		w = next;
	}
	sweep(util_mono_ms());
	ping_update();
	/* Writing to thousands of streams takes a while; do not drift. */
	uv_update_time(t->loop);
}

/* Runs the timer while anything needs it, so an idle loop can end. */
static void ping_update(void)
{
	int want = !ev.shut && (ev.nwatchers > 0 || ev.njobs > 0);

	if (want == ev.ping_on || server.loop == NULL)
		return;
	if (!ev.ping_init) {
		uv_timer_init(server.loop, &ev.ping);
		/* The streams keep the loop alive, never the heartbeat. */
		uv_unref((uv_handle_t *)&ev.ping);
		ev.ping_init = 1;
	}
	if (want)
		uv_timer_start(&ev.ping, on_ping, EVENTS_PING_MS, EVENTS_PING_MS);
	else
		uv_timer_stop(&ev.ping);
	ev.ping_on = want;
}

/* ---- opening a stream ---- */

struct json_object *events_view_find(const char *id, struct err *err)
{
	const struct sjob *sj = sched_find(id);
	struct job *j = NULL;
	struct json_object *view;

	if (sj != NULL)
		return events_job_view(sj->job, sj);
	if (server.store == NULL) {
		err_set(err, ERR_NOT_FOUND, "no job with id %s", id);
		return NULL;
	}
	if (store_job_get(server.store, id, &j, err) < 0)
		return NULL;
	view = events_job_view(j, NULL);
	job_free(j);
	return view;
}

/* Last-Event-ID as a number; 0 when absent or not a plain decimal. */
static uint64_t last_event_id(const char *h)
{
	char *end;
	unsigned long long v;

	if (h == NULL || h[0] < '0' || h[0] > '9')
		return 0;
	v = strtoull(h, &end, 10);
	return *end == '\0' ? (uint64_t)v : 0;
}

/*
 * Views of the distinct jobs among ids into views (owned by the caller),
 * their count into *nv. -1 with err set when one is unknown.
 */
static int views_find(const char *const *ids, size_t n, struct json_object **views,
		      size_t *nv, struct err *err)
{
	*nv = 0;
	for (size_t i = 0; i < n; i++) {
		int dup = 0;

		for (size_t k = 0; k < i && !dup; k++)
			dup = strcmp(ids[k], ids[i]) == 0;
		if (dup)
			continue;
		views[*nv] = events_view_find(ids[i], err);
		if (views[*nv] == NULL)
			return -1;
		(*nv)++;
	}
	return 0;
}

static int entry_cmp(const void *a, const void *b)
{
	const struct ev_entry *x = *(const struct ev_entry *const *)a;
	const struct ev_entry *y = *(const struct ev_entry *const *)b;

	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* 1 when every event of je after last is still kept (invariant 2). */
static int can_replay(const struct ev_job *je, uint64_t last)
{
	return last > 0 && last <= ev.seq && je->since_seq <= last && je->dropped_seq <= last;
}

/* Appends je's events after last to *v (borrowed pointers). */
static void replay_collect(const struct ev_job *je, uint64_t last, const struct ev_entry ***v,
			   size_t *n)
{
	for (size_t i = 0; je->ring != NULL && i < je->count; i++) {
		const struct ev_entry *e = &je->ring[(je->head + i) % EVENTS_RING];

		if (e->seq <= last)
			continue;
		*v = xrealloc(*v, (*n + 1) * sizeof **v);
		(*v)[(*n)++] = e;
	}
}

/* Sends a view as a fresh "state" event (not kept for replay). */
static void send_snapshot(struct watcher *w, const struct json_object *view)
{
	struct buf b;

	buf_init(&b, EV_MAX_EVENT);
	if (events_format(&b, ++ev.seq, "state", view) == 0)
		watcher_send(w, b.data, b.len);
	buf_cleanup(&b);
}

/*
 * Subscribes w to each viewed job, then sends the missed events (when the
 * ring has them all) or the current state of each job, in id order.
 */
static void watcher_begin(struct watcher *w, struct json_object **views, size_t nv,
			  uint64_t last)
{
	const struct ev_entry **replay = NULL;
	size_t nr = 0;
	int *snap = xcalloc(nv, sizeof *snap);

	for (size_t i = 0; i < nv; i++) {
		struct ev_job *je = job_get(json_get_str(views[i], "job_id"));

		sub_link(w, &w->subs[i], je);
		w->subs[i].done = view_terminal(views[i]);
		w->left += !w->subs[i].done;
		if (can_replay(je, last))
			replay_collect(je, last, &replay, &nr);
		else
			snap[i] = 1;
	}
	if (nr > 1)
		qsort(replay, nr, sizeof *replay, entry_cmp);
	for (size_t i = 0; i < nr; i++)
		watcher_send(w, replay[i]->text, replay[i]->len);
	for (size_t i = 0; i < nv; i++)
		if (snap[i])
			send_snapshot(w, views[i]);
	free(replay);
	free(snap);
	if (w->left == 0)
		watcher_end(w);
}

static struct watcher *watcher_new(size_t nsubs)
{
	struct watcher *w = xcalloc(1, sizeof *w + nsubs * sizeof w->subs[0]);

	w->nsubs = nsubs;
	w->next = ev.watchers;
	if (ev.watchers != NULL)
		ev.watchers->prev = w;
	ev.watchers = w;
	ev.nwatchers++;
	return w;
}

/* Refuses the request when the stream cannot be opened; 0 when it can. */
static int open_check(struct http_req *req, size_t n)
{
	if (n == 0 || n > EVENTS_MAX_JOBS) {
		http_reply_error(req, 400, "INVALID_INPUT",
				 "jobs: give from 1 to 100 job ids, separated by commas", "jobs");
		return -1;
	}
	if (ev.shut || (server.cfg.max_watchers > 0 &&
			ev.nwatchers >= (size_t)server.cfg.max_watchers)) {
		http_reply_error(req, 503, "QUEUE_FULL",
				 "Too many pages are following jobs right now.", NULL);
		return -1;
	}
	return 0;
}

int events_open(struct http_req *req, const char *const *job_ids, size_t n)
{
	uint64_t last = last_event_id(http_req_header(req, "Last-Event-ID"));
	struct json_object **views;
	struct watcher *w;
	struct err err = {0};
	size_t nv = 0;

	if (open_check(req, n) < 0)
		return -1;
	views = xcalloc(n, sizeof *views);
	if (views_find(job_ids, n, views, &nv, &err) < 0) {
		for (size_t i = 0; i < nv; i++)
			json_object_put(views[i]);
		free(views);
		http_reply_err(req, &err);
		return -1;
	}
	w = watcher_new(nv);
	http_reply_header(req, "Cache-Control", "no-cache");
	http_reply_header(req, "X-Accel-Buffering", "no");
	w->stream = http_stream_start(req, 200, "text/event-stream", on_stream_close, w);
	watcher_send(w, EV_RETRY, strlen(EV_RETRY));
	watcher_begin(w, views, nv, last);
	for (size_t i = 0; i < nv; i++)
		json_object_put(views[i]);
	free(views);
	ping_update();
	return 0;
}

/* ---- publishing ---- */

void events_publish(const char *job_id, const char *type, struct json_object *view)
{
	struct ev_job *je = job_lookup(job_id);
	struct ev_sub *s, *next;
	struct buf b;
	char *text;
	size_t len;
	int terminal;

	if (je == NULL || ev.shut)
		return;
	buf_init(&b, EV_MAX_EVENT);
	if (events_format(&b, ev.seq + 1, type, view) < 0) {
		log_warn("sse event dropped job=%s reason=too_large", job_id);
		buf_cleanup(&b);
		return;
	}
	ev.seq++;
	terminal = view_terminal(view);
	len = b.len;
	text = buf_steal(&b);
	ring_push(je, ev.seq, text, len, strcmp(type, "progress") == 0);
	/*
	 * Ending a watcher unlinks only its own sub from this list (a watcher
	 * watches a job once), so the saved next stays valid.
	 */
	for (s = je->subs; s != NULL; s = next) {
		next = s->next;
		if (s->done)
			continue;
		watcher_send(s->w, text, len);
		if (terminal)
			sub_done(s);
	}
}

size_t events_watchers(void)
{
	return ev.nwatchers;
}

void events_shutdown(void)
{
	struct watcher *w = ev.watchers;

	ev.shut = 1;
	while (w != NULL) {
		struct watcher *next = w->next;

		watcher_end(w);
		w = next;
	}
	for (size_t i = 0; i < ev.nbuckets; i++) {
		while (ev.buckets[i] != NULL) {
			struct ev_job *je = ev.buckets[i];

			ev.buckets[i] = je->hnext;
			job_free_entry(je);
		}
	}
	free(ev.buckets);
	ev.buckets = NULL;
	ev.nbuckets = ev.njobs = 0;
	if (ev.ping_init)
		uv_close((uv_handle_t *)&ev.ping, NULL);
	ev.ping_init = ev.ping_on = 0;
}
