/*
 * events.c - job events to watchers over Server-Sent Events and WebSocket:
 * a hash of watched jobs, each with its watchers and a short replay ring,
 * and one heartbeat timer shared by every watcher.
 *
 * A watcher is one SSE stream (its jobs fixed when it opens; it ends after
 * their final states) or one WebSocket (its jobs change with its subscribe
 * and unsubscribe messages; it stays open). Both get the same events; only
 * the framing differs (msg_text()).
 *
 * Events fans out the views it is handed (events_publish) and asks the
 * lookup it was handed (events_set_lookup) for a job's first view; it
 * knows nothing of the scheduler or the store.
 *
 * Invariants:
 *  1. A struct ev_job exists only for a job that a watcher watches or
 *     watched less than EV_LINGER_MS ago; publishing to any other job is
 *     one failed hash lookup.
 *  2. Every event published for an ev_job since its creation (seq >
 *     since_seq) is in its ring, or was evicted and then dropped_seq >= its
 *     seq, or was a progress event replaced by a later progress event
 *     (which supersedes it). So a replay after event id L is complete when
 *     the entry existed before the replay began, since_seq <= L and
 *     dropped_seq <= L.
 *  3. A watcher watches each job at most once. Each of its subs is linked
 *     into its job's list and into the watcher's own list, and is freed as
 *     it is unlinked from both (unsubscribe, a WebSocket's job finishing,
 *     the watcher ending). A watcher is freed only in its transport's
 *     on_close, and has no sub once it is ending.
 *  4. ev.seq only grows: ids seen by one watcher increase.
 *  5. A WebSocket follows at most EVENTS_WS_MAX_JOBS jobs, none finished.
 *
 * The WebSocket transport (events_ws) is in events_ws.c; what the two
 * files share is in events_internal.h.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "errors.h"
#include "events.h"
#include "events_internal.h"
#include "http.h"
#include "job.h"
#include "json.h"
#include "log.h"
#include "server.h"
#include "util.h"
#include "ws.h"

#define EV_LINGER_MS 60000          /* ring kept after the last watcher left */
#define EV_MAX_FRAMING 128          /* bytes an event's framing adds to its view */
#define EV_RETRY "retry: 2000\n\n"
#define EV_PING ": ping\n\n"
#define EV_WS_PING "{\"event\": \"ping\"}"
#define EV_WS_GOING_AWAY 1001       /* close codes (RFC 6455 7.4.1) */
#define EV_WS_POLICY 1008

/* One event, framed for each transport at most once. */
struct ev_msg {
	uint64_t seq;
	const char *type;   /* "state" or "progress"; static */
	const char *data;   /* the view; borrowed */
	size_t len;
	struct buf text[2]; /* by enum ev_kind; empty until first needed */
};

/* The module's state; loop thread only. */
static struct {
	struct ev_job **buckets; /* hash table of watched jobs */
	size_t nbuckets;         /* power of two, or 0 before first use */
	size_t njobs;
	struct watcher *watchers; /* every open SSE stream and WebSocket */
	size_t nwatchers;
	size_t nws;              /* of them, WebSockets */
	uint64_t seq;            /* last event id given out */
	uv_timer_t ping;         /* heartbeat and sweep */
	int ping_init, ping_on, shut;
	events_lookup_fn lookup; /* a job's view, for the snapshot a watcher starts with */
	void *lookup_ud;
} ev;

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
int events__view_terminal(const struct json_object *view)
{
	const char *status = json_get_str(view, "status");
	int st = job_status_parse(status ? status : "?");

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

struct ev_job *events__job_lookup(const char *id)
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

/* The entry for id (a job id from a view), created when missing. Owned by the table. */
static struct ev_job *job_get(const char *id)
{
	struct ev_job *je = events__job_lookup(id);
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
		free(je->ring[(je->head + i) % EVENTS_RING].data);
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

/*
 * Keeps an event for replay; takes ownership of data. Returns its entry,
 * borrowed until the next push to je.
 */
static const struct ev_entry *ring_push(struct ev_job *je, uint64_t seq, char *data,
					size_t len, int progress)
{
	struct ev_entry *last;

	if (je->ring == NULL)
		je->ring = xcalloc(EVENTS_RING, sizeof *je->ring);
	last = je->count ? &je->ring[(je->head + je->count - 1) % EVENTS_RING] : NULL;
	if (progress && last != NULL && last->progress) {
		/* A newer progress event supersedes the last one (invariant 2). */
		free(last->data);
		*last = (struct ev_entry){seq, data, len, 1};
		return last;
	}
	if (je->count == EVENTS_RING) {
		struct ev_entry *old = &je->ring[je->head];

		je->dropped_seq = old->seq;
		free(old->data);
		je->head = (je->head + 1) % EVENTS_RING;
		je->count--;
	}
	last = &je->ring[(je->head + je->count) % EVENTS_RING];
	*last = (struct ev_entry){seq, data, len, progress};
	je->count++;
	return last;
}

/* ---- framing ---- */

/* data (borrowed) must outlive m; release m with msg_cleanup(). */
static void msg_init(struct ev_msg *m, uint64_t seq, int progress, const char *data, size_t len)
{
	m->seq = seq;
	m->type = progress ? "progress" : "state";
	m->data = data;
	m->len = len;
	buf_init(&m->text[EV_SSE], EV_MAX_EVENT + EV_MAX_FRAMING);
	buf_init(&m->text[EV_WS], EV_MAX_EVENT + EV_MAX_FRAMING);
}

static void msg_cleanup(struct ev_msg *m)
{
	buf_cleanup(&m->text[EV_SSE]);
	buf_cleanup(&m->text[EV_WS]);
}

/*
 * m as kind frames it: SSE "id: N\nevent: T\ndata: VIEW\n\n", WebSocket
 * {"event": T, "id": N, "data": VIEW}. Borrowed from m.
 */
static const struct buf *msg_text(struct ev_msg *m, enum ev_kind kind)
{
	struct buf *b = &m->text[kind];
	unsigned long long seq = (unsigned long long)m->seq;

	if (b->len > 0)
		return b;
	if (kind == EV_SSE)
		buf_printf(b, "id: %llu\nevent: %s\ndata: ", seq, m->type);
	else
		buf_printf(b, "{\"event\": \"%s\", \"id\": %llu, \"data\": ", m->type, seq);
	/* Cannot fail: the view is at most EV_MAX_EVENT bytes. */
	buf_append(b, m->data, m->len);
	buf_puts(b, kind == EV_SSE ? "\n\n" : "}");
	return b;
}

/* ---- watchers ---- */

/* A new sub of w following je; owned by w (invariant 3). */
static struct ev_sub *sub_add(struct watcher *w, struct ev_job *je)
{
	struct ev_sub *s = xcalloc(1, sizeof *s);

	s->w = w;
	s->job = je;
	s->next = je->subs;
	if (je->subs != NULL)
		je->subs->prev = s;
	je->subs = s;
	je->nsubs++;
	s->wnext = w->subs;
	if (w->subs != NULL)
		w->subs->wprev = s;
	w->subs = s;
	w->nsubs++;
	return s;
}

/* Unlinks s from its job and its watcher, and frees it. */
void events__sub_remove(struct ev_sub *s)
{
	struct ev_job *je = s->job;
	struct watcher *w = s->w;

	if (s->prev != NULL)
		s->prev->next = s->next;
	else
		je->subs = s->next;
	if (s->next != NULL)
		s->next->prev = s->prev;
	if (--je->nsubs == 0)
		je->idle_since_ms = util_mono_ms();
	if (s->wprev != NULL)
		s->wprev->wnext = s->wnext;
	else
		w->subs = s->wnext;
	if (s->wnext != NULL)
		s->wnext->wprev = s->wprev;
	w->nsubs--;
	free(s);
}

/* w's sub of je, or NULL; walks the shorter of the two lists. */
struct ev_sub *events__sub_find(const struct watcher *w, const struct ev_job *je)
{
	struct ev_sub *s;

	if (je == NULL)
		return NULL;
	if (je->nsubs < w->nsubs) {
		s = je->subs;
		while (s != NULL && s->w != w)
			s = s->next;
	} else {
		s = w->subs;
		while (s != NULL && s->job != je)
			s = s->wnext;
	}
	return s;
}

/*
 * Ends w: it stops watching at once (so it costs publishers nothing) and
 * is freed in its on_close once the HTTP layer is done. code is the
 * WebSocket close code.
 */
void events__watcher_end(struct watcher *w, uint16_t code)
{
	if (w->ending)
		return;
	w->ending = 1;
	while (w->subs != NULL)
		events__sub_remove(w->subs);
	if (w->kind == EV_SSE)
		http_stream_end(w->stream);
	else
		ws_close(w->ws, code);
}

static size_t watcher_queued(const struct watcher *w)
{
	return w->kind == EV_SSE ? http_stream_queued(w->stream) : ws_queued(w->ws);
}

/*
 * Queues bytes (copied) on w, or drops w when its peer does not keep up:
 * over EVENTS_MAX_QUEUED unsent bytes, checked before a burst rather than
 * during it. Returns -1 when w is ending (its subs are gone), else 0.
 */
int events__watcher_send(struct watcher *w, const char *p, size_t n)
{
	size_t queued;
	int rc;

	if (w->ending)
		return -1;
	queued = watcher_queued(w);
	if (!w->burst && queued + n > EVENTS_MAX_QUEUED)
		rc = -1;
	else if (w->kind == EV_SSE)
		rc = http_stream_write(w->stream, p, n);
	else
		rc = ws_send_text(w->ws, p, n);
	if (rc < 0) {
		log_info("%s watcher dropped reason=backpressure queued=%zu",
			 w->kind == EV_SSE ? "sse" : "ws", queued);
		events__watcher_end(w, EV_WS_POLICY);
		return -1;
	}
	return 0;
}

static int msg_send(struct watcher *w, struct ev_msg *m)
{
	const struct buf *t = msg_text(m, w->kind);

	return events__watcher_send(w, t->data, t->len);
}

/*
 * Starts answering w's peer (a stream opening, a subscribe message):
 * drops w when its backlog is already over the cap, else lets the answer
 * through whole. Returns -1 when w is ending.
 */
int events__burst_begin(struct watcher *w)
{
	if (w->ending)
		return -1;
	if (watcher_queued(w) > EVENTS_MAX_QUEUED) {
		log_info("%s watcher dropped reason=backpressure queued=%zu",
			 w->kind == EV_SSE ? "sse" : "ws", watcher_queued(w));
		events__watcher_end(w, EV_WS_POLICY);
		return -1;
	}
	w->burst = 1;
	return 0;
}

/*
 * After s's job sent its final state: a WebSocket forgets the job; an SSE
 * stream marks it and ends once no job is left.
 */
static void sub_finish(struct ev_sub *s)
{
	struct watcher *w = s->w;

	if (w->kind == EV_WS) {
		events__sub_remove(s);
		return;
	}
	if (s->done)
		return;
	s->done = 1;
	if (--w->left == 0)
		events__watcher_end(w, 0);
}

struct watcher *events__watcher_new(enum ev_kind kind)
{
	struct watcher *w = xcalloc(1, sizeof *w);

	w->kind = kind;
	return w;
}

void events__watcher_link(struct watcher *w)
{
	w->next = ev.watchers;
	if (ev.watchers != NULL)
		ev.watchers->prev = w;
	ev.watchers = w;
	ev.nwatchers++;
	ev.nws += w->kind == EV_WS;
}

/* The transport closed: w goes. */
void events__watcher_free(struct watcher *w)
{
	while (w->subs != NULL)
		events__sub_remove(w->subs);
	if (w->prev != NULL)
		w->prev->next = w->next;
	else
		ev.watchers = w->next;
	if (w->next != NULL)
		w->next->prev = w->prev;
	ev.nwatchers--;
	ev.nws -= w->kind == EV_WS;
	free(w);
	events__ping_update();
}

static void on_stream_close(struct http_stream *st, void *ud)
{
	(void)st;
	events__watcher_free(ud);
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

		if (w->kind == EV_SSE)
			events__watcher_send(w, EV_PING, strlen(EV_PING));
		else
			events__watcher_send(w, EV_WS_PING, strlen(EV_WS_PING));
		w = next;
	}
	sweep(util_mono_ms());
	events__ping_update();
	/* Writing to thousands of streams takes a while; do not drift. */
	uv_update_time(t->loop);
}

/* Runs the timer while anything needs it, so an idle loop can end. */
void events__ping_update(void)
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

/* ---- beginning to follow jobs ---- */

/* The view of job id, from the lookup the server handed us. */
struct json_object *events__view_find(const char *id, const char *owner, struct err *err)
{
	if (ev.lookup == NULL) {
		err_set(err, ERR_NOT_FOUND, "no job with id %s", id);
		return NULL;
	}
	return ev.lookup(id, owner, err, ev.lookup_ud);
}

void events_set_lookup(events_lookup_fn fn, void *ud)
{
	ev.lookup = fn;
	ev.lookup_ud = ud;
}

/* An event id (Last-Event-ID, ?after=) as a number; 0 when absent or not a plain decimal. */
uint64_t events__parse_seq(const char *h)
{
	char *end;
	unsigned long long v;

	if (h == NULL || h[0] < '0' || h[0] > '9')
		return 0;
	v = strtoull(h, &end, 10);
	return *end == '\0' ? (uint64_t)v : 0;
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
	struct ev_msg m;

	buf_init(&b, EV_MAX_EVENT);
	if (json_dump(&b, view) == 0) {
		msg_init(&m, ++ev.seq, 0, b.data, b.len);
		msg_send(w, &m);
		msg_cleanup(&m);
	}
	buf_cleanup(&b);
}

/*
 * Makes w follow job id, whose view says whether it has finished. An SSE
 * stream follows every job it names, finished or not; a WebSocket only
 * jobs still live, once each (invariants 3 and 5).
 */
static void watcher_follow(struct watcher *w, const char *id, int finished)
{
	struct ev_job *je;
	struct ev_sub *s;

	if (w->kind == EV_WS && finished)
		return;
	je = job_get(id);
	if (events__sub_find(w, je) != NULL)
		return;
	s = sub_add(w, je);
	s->done = finished;
	if (w->kind == EV_SSE)
		w->left += !finished;
}

/*
 * Follows each viewed job, then sends the missed events of the jobs whose
 * ring holds them all, in id order, then the current view of the others.
 * views are borrowed. Call between burst_begin() and w->burst = 0.
 */
void events__watcher_begin(struct watcher *w, struct json_object **views, size_t nv,
			  uint64_t last)
{
	const struct ev_entry **replay = NULL;
	size_t nr = 0;
	int *snap = xcalloc(nv ? nv : 1, sizeof *snap);

	for (size_t i = 0; i < nv; i++) {
		const char *id = json_get_str(views[i], "job_id");
		const struct ev_job *je = events__job_lookup(id);

		/* An entry made just now knows nothing of what came before. */
		if (je != NULL && can_replay(je, last))
			replay_collect(je, last, &replay, &nr);
		else
			snap[i] = 1;
		watcher_follow(w, id, events__view_terminal(views[i]));
	}
	if (nr > 1)
		qsort(replay, nr, sizeof *replay, entry_cmp);
	for (size_t i = 0; i < nr; i++) {
		struct ev_msg m;

		msg_init(&m, replay[i]->seq, replay[i]->progress, replay[i]->data, replay[i]->len);
		msg_send(w, &m);
		msg_cleanup(&m);
	}
	for (size_t i = 0; i < nv; i++)
		if (snap[i])
			send_snapshot(w, views[i]);
	free(replay);
	free(snap);
}

/* 1, after answering 503, when no watcher may open now. */
int events__watchers_full(struct http_req *req)
{
	if (!ev.shut && (server.cfg.max_watchers <= 0 ||
			 ev.nwatchers < (size_t)server.cfg.max_watchers))
		return 0;
	http_reply_error(req, 503, "QUEUE_FULL", "Too many pages are following jobs right now.",
			 NULL);
	return 1;
}

/* ---- Server-Sent Events ---- */

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
		views[*nv] = events__view_find(ids[i], NULL, err);
		if (views[*nv] == NULL)
			return -1;
		(*nv)++;
	}
	return 0;
}

void events__views_free(struct json_object **views, size_t nv)
{
	for (size_t i = 0; i < nv; i++)
		json_object_put(views[i]);
	free(views);
}

int events_open(struct http_req *req, const char *const *job_ids, size_t n)
{
	uint64_t last = events__parse_seq(http_req_header(req, "Last-Event-ID"));
	struct json_object **views;
	struct watcher *w;
	struct err err = {0};
	size_t nv = 0;

	if (n == 0 || n > EVENTS_MAX_JOBS) {
		http_reply_error(req, 400, "INVALID_INPUT",
				 "jobs: give from 1 to 100 job ids, separated by commas", "jobs");
		return -1;
	}
	if (events__watchers_full(req))
		return -1;
	views = xcalloc(n, sizeof *views);
	if (views_find(job_ids, n, views, &nv, &err) < 0) {
		events__views_free(views, nv);
		http_reply_err(req, &err);
		return -1;
	}
	w = events__watcher_new(EV_SSE);
	events__watcher_link(w);
	http_reply_header(req, "Cache-Control", "no-cache");
	http_reply_header(req, "X-Accel-Buffering", "no");
	w->stream = http_stream_start(req, 200, "text/event-stream", on_stream_close, w);
	events__watcher_send(w, EV_RETRY, strlen(EV_RETRY));
	if (events__burst_begin(w) == 0) {
		events__watcher_begin(w, views, nv, last);
		w->burst = 0;
		if (w->left == 0)
			events__watcher_end(w, 0);
	}
	events__views_free(views, nv);
	events__ping_update();
	return 0;
}

/* ---- publishing ---- */

void events_publish(const char *job_id, const char *type, struct json_object *view)
{
	struct ev_job *je = events__job_lookup(job_id);
	const struct ev_entry *e;
	struct ev_sub *s, *next;
	struct ev_msg m;
	struct buf b;
	char *data;
	size_t len;
	int terminal;

	if (je == NULL || ev.shut)
		return;
	buf_init(&b, EV_MAX_EVENT);
	if (json_dump(&b, view) < 0) {
		log_warn("event dropped job=%s reason=too_large", job_id);
		buf_cleanup(&b);
		return;
	}
	terminal = events__view_terminal(view);
	len = b.len;
	data = buf_steal(&b);
	e = ring_push(je, ++ev.seq, data, len, strcmp(type, "progress") == 0);
	msg_init(&m, e->seq, e->progress, e->data, e->len);
	/*
	 * Ending or finishing a watcher unlinks only its own sub from this
	 * list (a watcher watches a job once), so the saved next stays valid.
	 */
	for (s = je->subs; s != NULL; s = next) {
		next = s->next;
		if (s->done || msg_send(s->w, &m) < 0)
			continue;
		if (terminal)
			sub_finish(s);
	}
	msg_cleanup(&m);
}

int events_wanted(const char *job_id)
{
	return events__job_lookup(job_id) != NULL;
}

int events_watched(const char *job_id)
{
	const struct ev_job *je = events__job_lookup(job_id);

	return je != NULL && je->nsubs > 0;
}

size_t events_watchers(void)
{
	return ev.nwatchers;
}

size_t events_watchers_ws(void)
{
	return ev.nws;
}

void events_shutdown(void)
{
	struct watcher *w = ev.watchers;

	ev.shut = 1;
	while (w != NULL) {
		struct watcher *next = w->next;

		events__watcher_end(w, EV_WS_GOING_AWAY);
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
