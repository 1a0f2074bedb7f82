/*
 * events_internal.h - what the files of the events module share; not part
 * of its public interface (events.h).
 *
 * events.c holds the job index, the rings, publishing, the job view and the
 * Server-Sent Events transport; events_ws.c the WebSocket transport. The
 * invariants are listed at the top of events.c.
 */
#ifndef FNRUN_EVENTS_INTERNAL_H
#define FNRUN_EVENTS_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "http.h"
#include "job.h"
#include "json.h"
#include "ws.h"

#define EV_MAX_EVENT (256 * 1024)   /* bytes of one event's view */
#define EV_WS_TOO_BIG 1009          /* close code (RFC 6455 7.4.1) */

enum ev_kind { EV_SSE, EV_WS };

struct ev_entry {
	uint64_t seq;
	char *data;   /* the view, one line of JSON; owned */
	size_t len;
	int progress; /* 1: a "progress" event, replaced by the next one; 0: "state" */
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

/* One watcher following one job; owned by the watcher (invariant 3). */
struct ev_sub {
	struct watcher *w;
	struct ev_job *job;
	struct ev_sub *prev, *next;   /* in job->subs */
	struct ev_sub *wprev, *wnext; /* in w->subs */
	int done;                     /* SSE: its terminal state was sent */
};

struct watcher {
	enum ev_kind kind;
	struct http_stream *stream; /* EV_SSE: valid until on_close */
	struct ws_conn *ws;         /* EV_WS: valid until on_close */
	struct watcher *prev, *next;
	struct ev_sub *subs;        /* the jobs it follows */
	size_t nsubs;
	size_t left;                /* EV_SSE: subs not yet done */
	int ending;                 /* stream ended or close begun; no subs left */
	int burst;                  /* answering its peer: backlog checked once, before */
	char owner[24];             /* EV_WS: only this API key's jobs; "" for any */
};

/* ---- events.c ---- */

int events__view_terminal(const struct json_object *view);
struct ev_job *events__job_lookup(const char *id);
void events__sub_remove(struct ev_sub *s);
struct ev_sub *events__sub_find(const struct watcher *w, const struct ev_job *je);
void events__watcher_end(struct watcher *w, uint16_t code);
int events__watcher_send(struct watcher *w, const char *p, size_t n);
int events__burst_begin(struct watcher *w);
struct watcher *events__watcher_new(enum ev_kind kind);
void events__watcher_link(struct watcher *w);
void events__watcher_free(struct watcher *w);
void events__ping_update(void);
uint64_t events__parse_seq(const char *h);
void events__watcher_begin(struct watcher *w, struct json_object **views, size_t nv,
			   uint64_t last);
int events__watchers_full(struct http_req *req);
void events__views_free(struct json_object **views, size_t nv);
/* The view of a job through the lookup (events_set_lookup); caller owns it. */
struct json_object *events__view_find(const char *id, const char *owner, struct err *err);

#endif
