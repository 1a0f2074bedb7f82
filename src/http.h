/*
 * http.h - the HTTP/1.1 server layer on libuv + http-parser, shared by
 * fnrun and fnrun-worker.
 *
 * A server owns a listening socket and its connections. Each request is
 * matched against a route table; the route's handler receives a struct
 * http_req and must answer it exactly once, either before returning or
 * later from another callback (a request stays valid until it is answered).
 * If the client disconnects first, the reply is discarded and the request
 * freed then; handlers need not care.
 *
 * Limits are enforced before a handler runs: header bytes (431), body size
 * (413, answered before the body is read, also for Expect: 100-continue),
 * connection count (503), header and idle timeouts. Keep-alive and
 * pipelining are supported; responses go out in request order.
 *
 * Streaming: a handler may turn the request into an open-ended stream
 * (Server-Sent Events, a file) or upgrade it to a WebSocket (see ws.h).
 *
 * http-parser is used only inside http.c so it can be swapped.
 */
#ifndef FNRUN_HTTP_H
#define FNRUN_HTTP_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "err.h"

struct json_object;
struct http_server;
struct http_req;
struct http_stream;

typedef void (*http_handler_fn)(struct http_req *req);

/* Route flags. */
#define HTTP_ROUTE_PREFIX 0x1 /* pattern matches as a prefix; rest in http_req_param() */

struct http_route {
	const char *method;  /* "GET", "POST", ...; "*" matches any */
	const char *pattern; /* "/prompt", or "/history/" with HTTP_ROUTE_PREFIX */
	http_handler_fn fn;
	unsigned flags;      /* HTTP_ROUTE_* */
	size_t max_body;     /* bytes; 0 means the server's max_body */
};

struct http_config {
	const char *host;                /* e.g. "127.0.0.1" */
	int port;                        /* 0 picks a free port */
	const struct http_route *routes; /* borrowed; must outlive the server */
	size_t nroutes;
	/*
	 * When set (ComfyUI: "/api"), a path that starts with this prefix
	 * followed by '/' is routed as if the prefix were absent, unless the
	 * full path matches a route first.
	 */
	const char *alias_prefix;
	size_t max_header_bytes;  /* 0: 64 KiB */
	size_t max_body;          /* 0: 1 MiB */
	size_t max_conns;         /* 0: 10000 */
	uint64_t header_timeout_ms; /* 0: 10 s; time to receive a full request head */
	uint64_t idle_timeout_ms;   /* 0: 60 s; keep-alive idle time */
	void *data;               /* user pointer, see http_req_data() */
	/*
	 * Optional: the body (static text) of the answers the layer makes
	 * itself (404, 405, 413, 431, 400, 503), with its content type. NULL
	 * or a NULL result: aiohttp's plain "404: Not Found".
	 */
	const char *(*error_body)(int status, const char **content_type);
	/*
	 * ComfyUI's default origin middleware. When set, a request carrying
	 * both Host and Origin, whose Host names a loopback address (127/8,
	 * ::1, localhost) and whose Origin host differs from it (ports
	 * compared only when both carry one), gets 403 with an empty body
	 * before routing; and any OPTIONS request is answered 200 with an
	 * empty body, as that middleware does.
	 */
	int origin_guard;
	/*
	 * Optional: when set, a request whose Host header (port removed) this
	 * refuses gets 403 before routing. Against DNS rebinding: a page on a
	 * name the attacker controls, resolved to our address.
	 */
	int (*host_ok)(const char *host, size_t len);
};

/* Per-connection output and message caps; 0 keeps the default. */
struct http_limits {
	size_t stream_max_queued; /* bytes; 1 MiB: http_stream_write() gives -1 */
	size_t ws_max_queued;     /* bytes; 4 MiB: ws_send_*() give -1 */
	size_t ws_max_message;    /* bytes; 16 MiB: larger messages close 1009 */
};

/*
 * Binds and listens. Returns the server, or NULL with err set (bind failure,
 * bad address); after a failure the loop must run once more to release the
 * listening handle. The server keeps pointers into cfg->routes only.
 */
struct http_server *http_server_new(uv_loop_t *loop, const struct http_config *cfg,
				    struct err *err);
/*
 * Overrides the limits for connections and upgrades made from now on.
 * l is copied.
 */
void http_server_set_limits(struct http_server *s, const struct http_limits *l);
/* The bound port (useful after port 0). */
int http_server_port(const struct http_server *s);
/* Connections open now. */
size_t http_server_conns(const struct http_server *s);
/*
 * Stops listening, closes every connection, stream and WebSocket, and frees
 * the server once all handles are closed; then calls done(arg) if not NULL.
 * Pending requests are answered with nothing (their connections close).
 * Stream and WebSocket on_close callbacks run before this returns.
 */
void http_server_close(struct http_server *s, void (*done)(void *arg), void *arg);

/* Request accessors. Strings are borrowed; valid until the reply. */
const char *http_req_method(const struct http_req *req);
/* The decoded path without the query string, alias prefix removed. */
const char *http_req_path(const struct http_req *req);
/* The raw path as received (with any alias prefix, without query). */
const char *http_req_raw_path(const struct http_req *req);
/* For a PREFIX route: the decoded remainder after the pattern. Else "". */
const char *http_req_param(const struct http_req *req);
/* A decoded query parameter's value, or NULL. First occurrence wins. */
const char *http_req_query(const struct http_req *req, const char *name);
/* A request header (case-insensitive name), or NULL. */
const char *http_req_header(const struct http_req *req, const char *name);
/* The body; never NULL (empty string when absent). NUL-terminated. */
const char *http_req_body(const struct http_req *req, size_t *len);
/* The server's cfg->data. */
void *http_req_data(const struct http_req *req);
/* Peer address as text, e.g. "127.0.0.1". */
const char *http_req_peer(const struct http_req *req);

/* Adds a response header; call before replying. Copies name and value. */
void http_reply_header(struct http_req *req, const char *name, const char *value);
/*
 * Answers with status, content type and a body (copied). content_type NULL
 * sends no Content-Type. The request is freed; do not use it afterwards.
 */
void http_reply(struct http_req *req, int status, const char *content_type,
		const void *body, size_t len);
/*
 * Answers with o written as Python json.dumps writes it, and
 * "application/json; charset=utf-8". Does not take ownership of o.
 */
void http_reply_json(struct http_req *req, int status, const struct json_object *o);
/*
 * Answers with a file's bytes, read in chunks from disk as the socket drains
 * (never the whole file in memory). Returns -1 with err set (ERR_NOT_FOUND,
 * ERR_IO) and leaves req unanswered when the file cannot be opened.
 */
int http_reply_file(struct http_req *req, int status, const char *path,
		    const char *content_type, struct err *err);

/*
 * Turns the request into an open-ended response: sends the status line and
 * headers (plus those added with http_reply_header), no Content-Length, and
 * the body as chunked transfer encoding. Returns the stream; the request is
 * consumed. on_close runs exactly once, when the peer goes away, a write
 * fails, or after http_stream_end(); the stream is invalid after it.
 */
struct http_stream *http_stream_start(struct http_req *req, int status,
				      const char *content_type,
				      void (*on_close)(struct http_stream *s, void *ud),
				      void *ud);
/*
 * Queues bytes on the stream (copied). Returns -1 when the peer's unsent
 * backlog is over max_queued bytes (the caller decides: drop or end).
 */
int http_stream_write(struct http_stream *s, const void *p, size_t n);
size_t http_stream_queued(const struct http_stream *s);
void *http_stream_data(const struct http_stream *s);
/* Finishes the response after queued bytes are sent, then on_close. */
void http_stream_end(struct http_stream *s);

/* The Content-Type for a file name by its extension; application/octet-stream when unknown. */
const char *http_content_type(const char *name);

/* The reason phrase for a status code ("Not Found"). */
const char *http_status_text(int status);

#endif
