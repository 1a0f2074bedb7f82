/*
 * http.c - the HTTP/1.1 server layer: listening, accepting, and each
 * connection's life (reading, timers, shutdown, close) and dispatch of the
 * requests parsed from it. Request parsing (http-parser callbacks) and
 * routing are in http_request.c; replies, files and chunked streams in
 * http_reply.c. The structs they share are in http_internal.h.
 *
 * Invariants:
 * 1. A connection has at most one request out of the parser (c->req after
 *    dispatch). The parser is paused from on_message_complete until that
 *    request is answered, so responses go out in request order; pipelined
 *    bytes wait in c->in.
 * 2. The tcp and timer handles live in struct http_conn, which is freed
 *    only when both close callbacks have run.
 * 3. A dispatched request whose connection dies is detached (req->conn ==
 *    NULL) and freed when its handler answers; it never touches the server.
 * 4. http_conn_write() never closes synchronously: a failed write closes
 *    from the next loop iteration, so user callbacks (stream and WebSocket
 *    on_close) only run from libuv callbacks or http_server_close().
 * 5. The one timer per connection serves, by priority: close-soon, kick
 *    (process buffered bytes on the next iteration), then the timeout of
 *    the current state (http__conn_arm_timer()).
 */
#include <assert.h>
#include <http_parser.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "buf.h"
#include "http.h"
#include "http_internal.h"
#include "log.h"
#include "util.h"

#define IN_SOFT_CAP (256 * 1024)     /* stop reading above this many unparsed bytes */
#define LINGER_MS 2000               /* read and discard after our FIN, at most */

static void conn_process(struct http_conn *c);
static void on_timer(uv_timer_t *t);

/* ---- connection lifecycle ---- */

static void server_maybe_done(struct http_server *s);
static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *b);

/* Starts or stops the timer for the state's timeout (invariant 5). */
void http__conn_arm_timer(struct http_conn *c)
{
	const struct http_config *cfg = &c->srv->cfg;
	uint64_t ms = 0, now = uv_now(c->tcp.loop);

	if (c->closing || c->close_soon || c->kick || c->state == CONN_SHUTDOWN)
		return;
	if (c->state == CONN_READING && c->in_body)
		ms = cfg->idle_timeout_ms;
	else if (c->state == CONN_READING && (c->in_message || c->nreq == 0))
		ms = cfg->header_timeout_ms;
	else if (c->state == CONN_READING || c->state == CONN_FILE)
		ms = cfg->idle_timeout_ms; /* FILE: restarted on each chunk written */
	else if (c->state == CONN_TAKEN && c->deadline)
		ms = c->deadline > now ? c->deadline - now : 1;
	if (ms)
		uv_timer_start(&c->timer, on_timer, ms, 0);
	else
		uv_timer_stop(&c->timer);
}

/* Processes buffered bytes from the next loop iteration. */
void http__conn_kick(struct http_conn *c)
{
	if (c->closing || c->close_soon)
		return;
	c->kick = 1;
	uv_timer_start(&c->timer, on_timer, 0, 0);
}

void http_conn_close_soon(struct http_conn *c)
{
	if (c->closing || c->close_soon)
		return;
	c->close_soon = 1;
	uv_timer_start(&c->timer, on_timer, 0, 0);
}

void http_conn_set_deadline(struct http_conn *c, uint64_t ms)
{
	c->deadline = uv_now(c->tcp.loop) + ms;
	http__conn_arm_timer(c);
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
	struct http_conn *c = h->data;

	(void)hint;
	*b = uv_buf_init(c->srv->rbuf, sizeof c->srv->rbuf);
}

/* Reads while there is room for pipelined bytes; always when taken over. */
void http__conn_update_reading(struct http_conn *c)
{
	int want = !c->peer_eof &&
		   (c->state == CONN_TAKEN || c->state == CONN_SHUTDOWN ||
		    c->in.len < IN_SOFT_CAP);

	if (c->closing)
		return; /* uv_close() stopped reading */
	if (want && !c->reading) {
		if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0) {
			http_conn_close_soon(c);
			return;
		}
		c->reading = 1;
	} else if (!want && c->reading) {
		uv_read_stop((uv_stream_t *)&c->tcp);
		c->reading = 0;
	}
}

static void on_conn_closed(uv_handle_t *h)
{
	struct http_conn *c = h->data;
	struct http_server *s = c->srv;

	if (--c->pending_closes > 0)
		return;
	if (c->prev)
		c->prev->next = c->next;
	else
		s->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	if (c->counted)
		s->nconns--;
	buf_cleanup(&c->in);
	free(c);
	server_maybe_done(s);
}

/* Calls ops->on_close once and forgets ops. */
static void conn_release_ops(struct http_conn *c)
{
	const struct http_conn_ops *ops = c->ops;

	if (ops == NULL)
		return;
	c->ops = NULL;
	ops->on_close(c->ops_ud);
}

void http__conn_file_close(struct http_conn *c)
{
	if (c->file_fd >= 0)
		close(c->file_fd);
	c->file_fd = -1;
}

/* Closes at once: queued writes are dropped; a held request is detached. */
void http__conn_close(struct http_conn *c)
{
	if (c->closing)
		return;
	c->closing = 1;
	if (c->req && c->state == CONN_HANDLING)
		c->req->conn = NULL; /* its handler frees it when it answers */
	else
		http__req_free(c->req);
	c->req = NULL;
	http__conn_file_close(c);
	conn_release_ops(c);
	uv_close((uv_handle_t *)&c->timer, on_conn_closed);
	uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
	struct http_conn *c = req->handle->data;

	if (c->closing)
		return; /* UV_ECANCELED: closed meanwhile */
	c->shut_done = 1;
	conn_release_ops(c);
	if (c->closing)
		return;
	if (status < 0 || c->peer_eof) {
		http__conn_close(c);
		return;
	}
	/* Linger: read and discard so our reply is not cut by a reset. */
	if (!c->close_soon)
		uv_timer_start(&c->timer, on_timer, LINGER_MS, 0);
}

void http_conn_shutdown(struct http_conn *c)
{
	if (c->closing || c->state == CONN_SHUTDOWN)
		return;
	assert(c->req == NULL);
	http__conn_file_close(c);
	c->state = CONN_SHUTDOWN;
	c->kick = 0;
	if (uv_shutdown(&c->sreq, (uv_stream_t *)&c->tcp, on_shutdown) != 0) {
		http_conn_close_soon(c);
		return;
	}
	/* Bounds the flush when the peer stops reading. */
	if (!c->close_soon)
		uv_timer_start(&c->timer, on_timer, c->srv->cfg.idle_timeout_ms, 0);
	http__conn_update_reading(c);
}

/* Gives bytes to the owner of a taken-over connection, buffered ones first. */
static void conn_feed_ops(struct http_conn *c, const char *p, size_t n)
{
	char *data;
	size_t len;

	if (c->in.len == 0) {
		c->ops->on_read(c->ops_ud, p, n);
		return;
	}
	if (buf_append(&c->in, p, n) < 0) {
		http__conn_close(c);
		return;
	}
	len = c->in.len;
	data = buf_steal(&c->in);
	c->ops->on_read(c->ops_ud, data, len);
	free(data);
}

static void conn_run_pending(struct http_conn *c)
{
	if (c->state == CONN_TAKEN && c->in.len > 0)
		conn_feed_ops(c, NULL, 0);
	else if (c->state == CONN_READING)
		conn_process(c);
	if (c->closing)
		return;
	if ((c->state == CONN_READING && !c->in_message) || c->state == CONN_TAKEN)
		http__conn_arm_timer(c);
	http__conn_update_reading(c);
}

static void on_timer(uv_timer_t *t)
{
	struct http_conn *c = t->data;

	if (c->close_soon) {
		http__conn_close(c);
		return;
	}
	if (c->kick) {
		c->kick = 0;
		conn_run_pending(c);
		return;
	}
	if (c->state != CONN_SHUTDOWN)
		log_debug("http timeout peer=%s state=%d", c->peer, (int)c->state);
	http__conn_close(c);
}

static void conn_on_eof(struct http_conn *c, int err)
{
	if (c->closing)
		return;
	c->peer_eof = 1;
	http__conn_update_reading(c);
	if (err != UV_EOF) {
		http__conn_close(c);
		return;
	}
	if (c->state == CONN_FILE)
		return; /* the reply goes on, then the connection shuts down */
	if (c->state == CONN_SHUTDOWN && !c->shut_done)
		return; /* on_shutdown closes */
	if (c->state == CONN_READING && !c->in_message && c->in.len == 0 &&
	    c->tcp.write_queue_size > 0) {
		http_conn_shutdown(c);
		return;
	}
	http__conn_close(c);
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *b)
{
	struct http_conn *c = st->data;

	if (nread < 0) {
		conn_on_eof(c, (int)nread);
		return;
	}
	if (nread == 0 || c->closing || c->state == CONN_SHUTDOWN)
		return;
	if (c->state == CONN_TAKEN) {
		conn_feed_ops(c, b->base, (size_t)nread);
		return;
	}
	if (buf_append(&c->in, b->base, (size_t)nread) < 0) {
		http__conn_close(c);
		return;
	}
	if (c->state == CONN_READING) {
		conn_process(c);
		if (c->state == CONN_READING && c->in_body)
			http__conn_arm_timer(c); /* the body's idle timeout restarts */
	}
	http__conn_update_reading(c);
}

/* ---- dispatch ---- */

static void conn_fail(struct http_conn *c, enum http_errno e)
{
	int status = c->err_status ? c->err_status
				   : e == HPE_HEADER_OVERFLOW ? 431 : 400;

	log_debug("http bad request peer=%s status=%d err=%s", c->peer, status,
		  http_errno_name(e));
	http__req_free(c->req);
	c->req = NULL;
	c->in_message = 0;
	c->in_body = 0;
	buf_reset(&c->in);
	http__conn_send_simple(c, status);
	http_conn_shutdown(c);
}

static void reply_preset(struct http_req *r)
{
	char tmp[96];
	const char *ctype, *body;

	if (r->preset != 404 && r->preset != 405) {
		http_reply(r, r->preset, NULL, "", 0);
		return;
	}
	body = http__preset_body(r->conn->srv, r->preset, tmp, sizeof tmp, &ctype);
	http_reply(r, r->preset, ctype, body, strlen(body));
}

static void conn_dispatch(struct http_conn *c)
{
	struct http_req *r = c->req;

	c->state = CONN_HANDLING;
	c->nreq++;
	http__conn_arm_timer(c);
	log_debug("http request peer=%s method=%s path=%s", c->peer, r->method,
		  log_q(r->raw_path));
	if (r->preset)
		reply_preset(r);
	else
		r->route->fn(r);
}

/* Parses buffered bytes and dispatches each complete request in turn. */
static void conn_process(struct http_conn *c)
{
	c->processing = 1;
	while (!c->closing && !c->close_soon && !c->wait_drain &&
	       c->state == CONN_READING && c->in.len > 0) {
		size_t n = http_parser_execute(&c->parser, &http__parser_settings,
					       c->in.data, c->in.len);
		enum http_errno e = HTTP_PARSER_ERRNO(&c->parser);

		buf_consume(&c->in, n);
		if (e == HPE_PAUSED) {
			conn_dispatch(c);
		} else if (e != HPE_OK) {
			conn_fail(c, e);
			break;
		} else if (n == 0) {
			break;
		}
	}
	c->processing = 0;
	http__conn_update_reading(c);
}

/* After an answer: shut down, or go on with the next request. */
void http__conn_reply_done(struct http_conn *c)
{
	c->req = NULL;
	if (c->closing)
		return;
	if (!c->keep_alive || c->peer_eof) {
		http_conn_shutdown(c);
		return;
	}
	c->state = CONN_READING;
	http_parser_pause(&c->parser, 0);
	if (c->tcp.write_queue_size >= WRITE_SOFT_CAP)
		c->wait_drain = 1; /* a pipelining peer that does not read */
	http__conn_arm_timer(c);
	http__conn_update_reading(c);
	if (!c->processing && !c->wait_drain && c->in.len > 0)
		http__conn_kick(c);
}


/* ---- the server ---- */

static void server_maybe_done(struct http_server *s)
{
	void (*done)(void *arg) = s->done;
	void *arg = s->done_arg;

	if (!s->closing || !s->listener_closed || s->conns != NULL)
		return;
	free(s->host);
	free(s->alias);
	free(s);
	if (done)
		done(arg);
}

static void on_listener_closed(uv_handle_t *h)
{
	struct http_server *s = h->data;

	s->listener_closed = 1;
	server_maybe_done(s);
}

static struct http_conn *conn_new(struct http_server *s)
{
	struct http_conn *c = xcalloc(1, sizeof *c);

	c->srv = s;
	c->file_fd = -1;
	c->pending_closes = 2;
	buf_init(&c->in, IN_SOFT_CAP + 2 * READ_CHUNK);
	uv_tcp_init(s->loop, &c->tcp);
	uv_timer_init(s->loop, &c->timer);
	c->tcp.data = c;
	c->timer.data = c;
	c->next = s->conns;
	if (s->conns)
		s->conns->prev = c;
	s->conns = c;
	http_parser_init(&c->parser, HTTP_REQUEST);
	c->parser.data = c;
	snprintf(c->peer, sizeof c->peer, "-");
	return c;
}

static void conn_set_peer(struct http_conn *c)
{
	struct sockaddr_storage sa;
	int len = sizeof sa;

	if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&sa, &len) != 0)
		return;
	if (sa.ss_family == AF_INET)
		uv_ip4_name((struct sockaddr_in *)&sa, c->peer, sizeof c->peer);
	else if (sa.ss_family == AF_INET6)
		uv_ip6_name((struct sockaddr_in6 *)&sa, c->peer, sizeof c->peer);
}

static void on_connection(uv_stream_t *l, int status)
{
	struct http_server *s = l->data;
	struct http_conn *c;

	if (status < 0) {
		log_warn("http accept failed err=%s", uv_strerror(status));
		return;
	}
	c = conn_new(s);
	if (uv_accept(l, (uv_stream_t *)&c->tcp) != 0) {
		http__conn_close(c);
		return;
	}
	uv_tcp_nodelay(&c->tcp, 1);
	conn_set_peer(c);
	if (s->nconns >= s->cfg.max_conns) {
		log_warn("http connection refused peer=%s max_conns=%zu", c->peer,
			 s->cfg.max_conns);
		http__conn_send_simple(c, 503);
		http_conn_shutdown(c);
		return;
	}
	c->counted = 1;
	s->nconns++;
	http__conn_arm_timer(c);
	http__conn_update_reading(c);
}

void http_server_set_limits(struct http_server *s, const struct http_limits *l)
{
	s->limits.stream_max_queued = l->stream_max_queued ? l->stream_max_queued
							   : (size_t)1 << 20;
	s->limits.ws_max_queued = l->ws_max_queued ? l->ws_max_queued : (size_t)4 << 20;
	s->limits.ws_max_message = l->ws_max_message ? l->ws_max_message
						     : (size_t)16 << 20;
}

static void server_configure(struct http_server *s, const struct http_config *cfg)
{
	static const struct http_limits defaults;
	const char *host = cfg->host && cfg->host[0] ? cfg->host : "127.0.0.1";

	s->cfg = *cfg;
	s->host = xstrdup(strcmp(host, "localhost") == 0 ? "127.0.0.1" : host);
	s->cfg.host = s->host;
	if (cfg->alias_prefix && cfg->alias_prefix[0])
		s->alias = xstrdup(cfg->alias_prefix);
	s->cfg.alias_prefix = s->alias;
	if (s->cfg.max_header_bytes == 0)
		s->cfg.max_header_bytes = 64 * 1024;
	if (s->cfg.max_body == 0)
		s->cfg.max_body = 1024 * 1024;
	if (s->cfg.max_conns == 0)
		s->cfg.max_conns = 10000;
	if (s->cfg.header_timeout_ms == 0)
		s->cfg.header_timeout_ms = 10000;
	if (s->cfg.idle_timeout_ms == 0)
		s->cfg.idle_timeout_ms = 60000;
	http_server_set_limits(s, &defaults);
}

static int server_listen(struct http_server *s, struct err *err)
{
	struct sockaddr_storage sa;
	int len = sizeof sa, r;

	if (strchr(s->host, ':'))
		r = uv_ip6_addr(s->host, s->cfg.port, (struct sockaddr_in6 *)&sa);
	else
		r = uv_ip4_addr(s->host, s->cfg.port, (struct sockaddr_in *)&sa);
	if (r == 0)
		r = uv_tcp_bind(&s->listener, (struct sockaddr *)&sa, 0);
	if (r == 0)
		r = uv_listen((uv_stream_t *)&s->listener, 511, on_connection);
	if (r == 0)
		r = uv_tcp_getsockname(&s->listener, (struct sockaddr *)&sa, &len);
	if (r < 0) {
		err_set(err, ERR_IO, "listen %s:%d: %s", s->host, s->cfg.port,
			uv_strerror(r));
		return -1;
	}
	s->port = sa.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&sa)->sin6_port)
					   : ntohs(((struct sockaddr_in *)&sa)->sin_port);
	return 0;
}

struct http_server *http_server_new(uv_loop_t *loop, const struct http_config *cfg,
				    struct err *err)
{
	struct http_server *s = xcalloc(1, sizeof *s);

	s->loop = loop;
	server_configure(s, cfg);
	uv_tcp_init(loop, &s->listener);
	s->listener.data = s;
	if (server_listen(s, err) < 0) {
		s->closing = 1; /* freed by on_listener_closed */
		uv_close((uv_handle_t *)&s->listener, on_listener_closed);
		return NULL;
	}
	log_info("http listening host=%s port=%d", s->host, s->port);
	return s;
}

int http_server_port(const struct http_server *s)
{
	return s->port;
}

size_t http_server_conns(const struct http_server *s)
{
	return s->nconns;
}

void http_server_close(struct http_server *s, void (*done)(void *arg), void *arg)
{
	struct http_conn *c, *next;

	if (s->closing)
		return;
	s->closing = 1;
	s->done = done;
	s->done_arg = arg;
	uv_close((uv_handle_t *)&s->listener, on_listener_closed);
	/* Closing never frees synchronously, so `next` stays valid. */
	for (c = s->conns; c; c = next) {
		next = c->next;
		http__conn_close(c);
	}
}
