/*
 * httpc.h - an asynchronous HTTP client on the daemon's libuv loop: libcurl's
 * multi interface driven by curl_multi_socket_action (docs/stack.md §2).
 *
 * One struct httpc per loop, used only from the loop thread. Each request is
 * a struct httpc_call whose callback runs exactly once, from the loop,
 * unless the call is cancelled (httpc_cancel, httpc_free) first. Requests go
 * over TCP or over a unix socket (the Docker/podman API).
 *
 * A response body goes, for 2xx answers, to memory (capped by max_response),
 * to a file written atomically (out_path), or to a streaming callback
 * (on_chunk). Bodies of other statuses always go to memory, so an error text
 * from the server reaches the callback.
 */
#ifndef FNRUN_HTTPC_H
#define FNRUN_HTTPC_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "err.h"

#define HTTPC_TIMEOUT_MS 30000           /* default for httpc_opts.timeout_ms */
#define HTTPC_CONNECT_TIMEOUT_MS 5000    /* default for connect_timeout_ms */
#define HTTPC_MAX_RESPONSE (16u << 20)   /* default for max_response, bytes */
#define HTTPC_MAX_HOST_CONNECTIONS 32    /* default per host:port; more queue */

struct httpc;
struct httpc_call;

/* What to send. Everything is copied by httpc_request(). */
struct httpc_opts {
	const char *method;         /* "GET" when NULL */
	const char *url;            /* required; with unix_socket e.g. "http://localhost/v1.41/version" */
	const char *unix_socket;    /* path of a unix socket; NULL: TCP */
	const char *body;           /* request body, body_len bytes; NULL: none */
	size_t body_len;
	const char *content_type;   /* Content-Type of body; NULL: none */
	const char *const *headers; /* "Name: value" strings, NULL-terminated; may be NULL */
	uint64_t timeout_ms;        /* whole transfer; 0: HTTPC_TIMEOUT_MS */
	uint64_t connect_timeout_ms; /* 0: HTTPC_CONNECT_TIMEOUT_MS */
	size_t max_response;        /* bytes kept in memory; more is ERR_TOO_LARGE; 0: HTTPC_MAX_RESPONSE */
	/*
	 * Writes a 2xx body to this file instead of memory: to a temp file in
	 * the same directory, renamed over out_path when the transfer succeeds
	 * and removed otherwise. Not with on_chunk.
	 */
	const char *out_path;
	/*
	 * Streams a 2xx body: called with each chunk as it arrives (borrowed
	 * for the call), nothing is kept. It runs inside libcurl: it may call
	 * httpc_cancel() and httpc_free(), but not httpc_request().
	 */
	void (*on_chunk)(const char *p, size_t n, void *ud);
};

/* The outcome of a call; borrowed, valid only during the callback. */
struct httpc_resp {
	int status;               /* HTTP status; 0 when no whole response arrived */
	const char *body;         /* in-memory body, NUL-terminated ("" when none) */
	size_t len;               /* bytes in body, or bytes written to out_path */
	const char *content_type; /* NULL when the server sent none */
	struct err err;           /* code != 0 on a transport or local error */
	uint64_t elapsed_us;      /* from httpc_request() to completion */
};

typedef void (*httpc_cb)(const struct httpc_resp *resp, void *ud);

/*
 * Creates a client on loop. Returns NULL and fills err on failure. Caller
 * owns the result; free it with httpc_free().
 */
struct httpc *httpc_new(uv_loop_t *loop, struct err *err);

/*
 * Cancels every call (their callbacks are never called) and closes the
 * client's handles. done(arg), if not NULL, runs from the loop once all of
 * them are closed and the memory is freed. Safe from any callback of this
 * client. httpc_free(NULL, ...) does nothing.
 */
void httpc_free(struct httpc *c, void (*done)(void *arg), void *arg);

/* Limits connections to one host:port (default HTTPC_MAX_HOST_CONNECTIONS). */
void httpc_set_max_host_connections(struct httpc *c, long n);

/*
 * Starts a request. cb(resp, ud) runs exactly once, later, from the loop,
 * unless the call is cancelled first. Returns the call, valid until cb
 * returns or httpc_cancel(); the client owns it. Returns NULL and fills err
 * (then cb is never called) on bad options, a temp file that cannot be
 * created, or a client being freed. Must not be called from on_chunk.
 */
struct httpc_call *httpc_request(struct httpc *c, const struct httpc_opts *o, httpc_cb cb,
				 void *ud, struct err *err);

/*
 * Cancels a pending call: neither cb nor on_chunk is called afterwards and a
 * temp file is removed. Does nothing for NULL or from inside the call's own
 * callback. The call is invalid afterwards.
 */
void httpc_cancel(struct httpc_call *call);

/* Calls whose callback is still due. */
size_t httpc_active(const struct httpc *c);

#endif
