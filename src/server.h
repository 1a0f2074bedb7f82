/*
 * server.h - the gateway's one mutable global, `struct server server`
 * (docs/style.md §7): the loop, the registry, the store, the HTTP server, the
 * client to model servers, the limits, and the counters /metrics shows.
 */
#ifndef FNRUN_SERVER_H
#define FNRUN_SERVER_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "err.h"

struct registry;
struct store;
struct http_server;
struct httpc;

struct server_config {
	char *config_path;     /* registry file */
	char *listen_host;     /* e.g. "127.0.0.1" */
	int listen_port;       /* e.g. 8180; 0 picks a free port */
	char *data_dir;        /* absolute; holds fnrun.db, outputs/, logs/, runs/ */
	char *bindir;          /* directory of the fnrun binary ({bindir}) */
	int64_t max_queue;     /* queued jobs at once */
	int64_t max_body;      /* request body bytes */
	int max_json_depth;    /* request JSON nesting */
	int64_t max_watchers;  /* SSE + WebSocket streams */
	int64_t stop_grace_ms; /* SIGTERM to SIGKILL for model servers */
	int max_attempts;      /* attempts per job before it fails */
	double time_scale;     /* multiplies registry timeouts (tests: < 1) */
	int insecure;          /* --insecure: serve a non-loopback address without keys */
	char *store_url;       /* a shared PostgreSQL store, or NULL: data_dir/fnrun.db */
	char *node;            /* this node's name (never NULL once serving) */
	int64_t lease_ms;      /* a claim's lease on a shared store */
};

struct server {
	uv_loop_t *loop;
	struct server_config cfg;
	struct registry *reg;     /* current registry; jobs keep their model ids */
	struct store *store;      /* the job store; every state change is committed here */
	struct keystore *keys;    /* API keys (keys.db beside the store; store_keys.h) */
	struct http_server *http; /* the user and operator API */
	struct httpc *httpc;      /* HTTP client to model servers */
	uv_signal_t sigterm, sigint;
	int stopping;             /* shutdown in progress */
	uint64_t started_ms;      /* monotonic */

	/* Counters for /metrics. */
	uint64_t jobs_submitted;
	uint64_t jobs_completed;
	uint64_t jobs_failed;
	uint64_t jobs_cancelled;
	uint64_t jobs_retried;
	uint64_t runners_started;
	uint64_t runners_crashed;
	uint64_t store_commits;     /* group commits that succeeded */
	uint64_t store_rows;        /* job rows they wrote */
	uint64_t store_failures;    /* commits that failed (disk full, I/O) */
};

extern struct server server;

/* Paths under the data directory; static buffers, valid until the next call. */
const char *server_path(const char *sub);
/* Serves until SIGTERM or SIGINT; returns the exit status. */
int server_run(void);

#endif
