/*
 * http_internal.h - what ws.c needs from http.c: taking a connection over
 * after a request is answered with a head (101 or a chunked stream),
 * writing to it, and shutting it down. Not part of the public interface.
 *
 * A taken-over connection hands every byte it reads to ops->on_read, in
 * order (including bytes that arrived together with the request head), and
 * calls ops->on_close exactly once: when a graceful shutdown has flushed
 * the last write, or when the connection closes (peer gone, error, timeout,
 * http_server_close), whichever comes first. ops->on_close is never called
 * from inside http_conn_write(), http_conn_shutdown() or
 * http_conn_close_soon().
 */
#ifndef FNRUN_HTTP_INTERNAL_H
#define FNRUN_HTTP_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "http.h"

struct http_conn;

struct http_conn_ops {
	/* Bytes from the peer; data is borrowed for the call. */
	void (*on_read)(void *ud, const char *data, size_t len);
	/* Once; http.c never uses ud afterwards. */
	void (*on_close)(void *ud);
};

/*
 * Answers req with `status`, an optional Content-Type, `fixed` (preformatted
 * "Name: value\r\n" lines, may be NULL), Date, Server and the headers added
 * with http_reply_header(), then gives the connection to ops. The request is
 * freed. Returns the connection (borrowed; valid until ops->on_close), or
 * NULL when the request's connection is already gone (ops is then unused).
 */
struct http_conn *http_req_takeover(struct http_req *req, int status,
				    const char *content_type, const char *fixed,
				    const struct http_conn_ops *ops, void *ud);
/*
 * Writes bufs in order (copied when they cannot be written at once).
 * Returns 0 when all went out now, 1 when some was queued, -1 when the
 * connection is closing or the write failed (it then closes soon).
 */
int http_conn_write(struct http_conn *c, const uv_buf_t *bufs, unsigned n);
/* Bytes queued on the socket and not yet written. */
size_t http_conn_queued(const struct http_conn *c);
/* Flushes what is queued, shuts the write side down, then ops->on_close. */
void http_conn_shutdown(struct http_conn *c);
/* Closes the connection from the next loop iteration. */
void http_conn_close_soon(struct http_conn *c);
/* Closes a taken-over connection if it is still open after ms. */
void http_conn_set_deadline(struct http_conn *c, uint64_t ms);
/* The server's limits (defaults filled in); borrowed. */
const struct http_limits *http_conn_limits(const struct http_conn *c);

#endif
