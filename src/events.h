/*
 * events.h - job events to watchers, over Server-Sent Events and WebSocket
 * (docs/stack.md §3).
 *
 * Server-Sent Events. A watcher is one SSE stream watching one or more
 * jobs. On open it gets `retry: 2000`, then the current state of each job
 * (or, after a reconnect carrying Last-Event-ID, the events it missed when
 * they are all still kept), then one event per change the scheduler
 * publishes:
 *
 *   id: <monotonic seq>\nevent: state|progress\ndata: <one-line JSON view>\n\n
 *
 * A stream ends after every job it watches has sent a terminal state
 * (completed, failed, cancelled).
 *
 * WebSocket (GET /api/ws[?jobs=a,b[&after=N]]). The same events, one text
 * message each:
 *
 *   {"event": "state"|"progress", "id": <seq>, "data": <the same view>}
 *
 * The client sends text messages of JSON (at most EVENTS_WS_MAX_MESSAGE
 * bytes; a larger one closes the socket with 1009):
 *
 *   {"subscribe": ["id", ...]}               follow these jobs
 *   {"subscribe": ["id", ...], "after": N}   and replay what followed event N
 *   {"unsubscribe": ["id", ...]}             stop following them
 *
 * ?jobs=a,b[&after=N] on the upgrade is the same as a first subscribe.
 * Each subscribed job at once gets its current view as a "state" event,
 * or, with `after`, the events after N when they are all still kept (as
 * Last-Event-ID does), then every change. A job's subscription ends by
 * itself after its final state (completed, failed, cancelled); the socket
 * stays open for more. Subscribing again to a job already followed sends
 * its view again and nothing more. A socket follows at most
 * EVENTS_WS_MAX_JOBS live jobs at once; unsubscribing an id it does not
 * follow does nothing.
 * Problems are answered, and the socket stays open:
 *
 *   {"event": "error", "data": {"code", "message", "suggestion", "action",
 *    "field"?, "job_id"?}}
 *
 * with code NOT_FOUND and job_id for an unknown job, INVALID_INPUT (the
 * message names the field) for a malformed message, a list over 1000 ids,
 * or a subscription over the limit (job_id: the first refused). Binary
 * messages get INVALID_INPUT too. Every EVENTS_PING_MS the socket gets
 * {"event": "ping"}, which clients ignore.
 *
 * Both transports: ids are one global sequence, so one Last-Event-ID (or
 * `after`) resumes a watcher of several jobs. One shared timer sends the
 * heartbeat (`: ping` on SSE). A watcher whose unsent bytes pass
 * EVENTS_MAX_QUEUED is dropped (a consumer too slow to keep up; WebSocket
 * close code 1008); the answer to the peer's own request (a stream's
 * opening, a subscribe) is checked once, before it is sent. At shutdown
 * sockets close with 1001.
 *
 * Publishing costs one hash lookup plus one write per watcher of that job,
 * whatever the number of other watchers. A job with no watcher keeps no
 * state here. Loop thread only.
 */
#ifndef FNRUN_EVENTS_H
#define FNRUN_EVENTS_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "err.h"

struct http_req;
struct json_object;
struct job;

#define EVENTS_RING 32                /* events kept per watched job for replay */
#define EVENTS_MAX_QUEUED (64 * 1024) /* bytes unsent before a stream is dropped */
#define EVENTS_PING_MS 15000          /* heartbeat period */
#define EVENTS_MAX_JOBS 100           /* jobs one SSE stream may watch */
#define EVENTS_WS_MAX_JOBS 1000       /* live jobs one WebSocket may follow */
#define EVENTS_WS_MAX_MESSAGE (64 * 1024) /* bytes of one client message */

/*
 * Opens an SSE stream on req watching job_ids (1..EVENTS_MAX_JOBS ids,
 * borrowed for the call). Each job's view comes from the lookup
 * (events_set_lookup). Always answers req: returns 0 when the stream is open, or -1 after
 * replying with an error (unknown job: 404 naming it; too many watchers:
 * 503; bad id list: 400).
 */
int events_open(struct http_req *req, const char *const *job_ids, size_t n);

/*
 * Sends an event to every watcher of job_id and keeps it for replay. type
 * is "state" or "progress"; view (borrowed) is view_job()'s object.
 * A view whose status is terminal ends the streams that have nothing else
 * left to watch. Does nothing when nobody watches the job.
 */
void events_publish(const char *job_id, const char *type, struct json_object *view);

/*
 * Upgrades GET /api/ws to a WebSocket that follows jobs (the protocol is
 * above). Always answers req: 101, or 503 when too many watchers are open
 * or the server is stopping, or 400 for a request that is not a valid
 * upgrade. owner (copied), when not NULL, restricts the socket to the jobs
 * of that API key: any other id is answered as unknown.
 */
void events_ws(struct http_req *req, const char *owner);

/*
 * 1 when an SSE stream or a WebSocket follows job_id now, else 0 (the
 * scheduler sends live queue positions only to watched jobs).
 */
int events_watched(const char *job_id);

/*
 * 1 when an event for job_id would be kept or sent: someone watches it, or
 * watched it lately and may come back for a replay. Publishing for a job
 * that is not wanted does nothing, so the caller may skip building its view.
 */
int events_wanted(const char *job_id);

/* SSE streams and WebSockets open now. */
size_t events_watchers(void);
/* Of them, WebSockets. */
size_t events_watchers_ws(void);

/*
 * Ends every stream, closes every WebSocket (1001), closes the heartbeat
 * timer and frees the replay rings. Call once at shutdown, before the
 * loop's last run (the timer's close needs it). Streams' and sockets'
 * on_close still come from the HTTP layer afterwards and are harmless.
 */
void events_shutdown(void);

/*
 * Where a job's view comes from when a watcher starts following it: the
 * view of job id (caller owns it, json_object_put), or NULL with err set
 * (ERR_NOT_FOUND for an unknown id, or one whose owner is not owner, when
 * owner is not NULL: a watcher restricted to one API key's jobs). The
 * server hands the scheduler's
 * lookup here at start; events never calls the scheduler itself.
 */
typedef struct json_object *(*events_lookup_fn)(const char *id, const char *owner,
						 struct err *err, void *ud);
void events_set_lookup(events_lookup_fn fn, void *ud);

/*
 * Appends one event in the wire format above to b. Returns 0, or -1 when b
 * is full. Exposed for tests.
 */
int events_format(struct buf *b, uint64_t seq, const char *type,
		  const struct json_object *view);

#endif
