/*
 * worker.h - fnrun-worker's process-wide state: the queue, the history, the
 * WebSocket clients and the settings. One mutable global, `worker`.
 *
 * Queue (ComfyUI's PromptQueue): pending items ordered by (number,
 * prompt_id); one item runs at a time (worker.running). History keeps at
 * most WORKER_HISTORY_MAX entries in completion order, oldest dropped.
 */
#ifndef FNRUN_WORKER_H
#define FNRUN_WORKER_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "node.h"

struct json_object;
struct http_server;
struct ws_conn;
struct run;

#define WORKER_HISTORY_MAX 10000

enum worker_state { WORKER_STARTING, WORKER_IDLE, WORKER_BUSY };

/* One queued or running prompt. */
struct qitem {
	double order;                   /* number as a float, for ordering */
	struct json_object *number;     /* int, or float when the client sent one */
	char *prompt_id;
	struct json_object *prompt;     /* validated and coerced */
	struct json_object *extra_data; /* includes client_id */
	struct json_object *outputs;    /* output node ids to execute */
	char *client_id;                /* NULL when the POST had none */
};

struct hentry {
	char *prompt_id;
	struct json_object *entry; /* {prompt, outputs, status, meta} */
};

struct wsclient {
	struct ws_conn *ws;
	char *sid;
	int got_first;       /* a first message was received */
	struct wsclient *next;
};

struct worker {
	uv_loop_t *loop;
	struct http_server *http;
	struct worker_settings settings; /* what nodes may read */
	const char *model;               /* "sim" or "exec" */
	char **argv;                     /* for /system_stats */
	int argc;
	int state;                       /* enum worker_state */
	int cache_none;                  /* --cache-none */
	const char *fail_once;           /* --fail-once PATH, or NULL */
	const char *fail_mode;           /* --fail as given */
	uint64_t vram_total;             /* bytes reported as the device total */
	uint64_t vram_used;              /* bytes the loaded model holds now */
	size_t max_upload;               /* bytes, --max-upload-size */
	uint64_t started_ms;             /* monotonic, at startup */

	struct qitem **pending;          /* sorted by (order, prompt_id) */
	size_t npending, cappending;
	struct qitem *running;           /* NULL when idle */
	struct run *run;                 /* the execution of `running` */
	int64_t counter;                 /* next number */
	int interrupt;                   /* cleared when a prompt starts */

	struct hentry *history;          /* completion order */
	size_t nhistory, caphistory;
	struct json_object *history_index; /* prompt id -> entry: finds without a scan */

	struct wsclient *clients;
	uv_timer_t load_timer;           /* --load-ms: simulated model load */
	uv_timer_t kick_timer;           /* starts the next prompt on the next loop turn */
	uv_signal_t sigterm, sigint;
};

extern struct worker worker;

/* Queue. worker_enqueue takes ownership of item. */
void worker_enqueue(struct qitem *item);
void qitem_free(struct qitem *item);
int worker_queue_delete(const char *prompt_id);
void worker_queue_clear(void);
size_t worker_queue_remaining(void);
/* Starts the next pending prompt when idle and loaded. */
void worker_kick(void);
/* Called by run.c when the running prompt ended; takes the history entry. */
void worker_prompt_done(struct json_object *entry);

/* History. */
const struct json_object *worker_history_find(const char *prompt_id);
void worker_history_delete(const char *prompt_id);
void worker_history_clear(void);

/*
 * Sends {"type": type, "data": data} (takes ownership of data). to: a
 * client id, or NULL for every socket.
 */
void worker_send(const char *type, struct json_object *data, const char *to);
/* Sends a binary frame to every socket. */
void worker_send_binary_all(const void *p, size_t n);
/* Broadcasts status with queue_remaining. */
void worker_send_status(void);
/* 1 when a socket with this client id is connected. */
int worker_client_connected(const char *client_id);

/* Routes (api.c). */
struct http_server *worker_http_start(const char *host, int port, struct err *err);

/* Execution (run.c). */
void run_start(struct qitem *item);
void run_interrupt(void);
/* The node id executing now, or NULL. */
const char *run_current_node(void);
void run_cache_clear(void);

#endif
