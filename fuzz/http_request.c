/*
 * http_request.c - libFuzzer target: raw bytes as one connection's input
 * to the real HTTP server (src/http*.c on http-parser): request heads,
 * header and body limits, chunked bodies, 100-continue, pipelining,
 * keep-alive, routing with an alias prefix and ComfyUI's origin guard,
 * handlers that answer at once, later (a request held across loop turns,
 * possibly detached by then), with a chunked stream, or by upgrading to a
 * WebSocket whose frames (ws.c, wslay) follow in the same input.
 *
 * One server listens on 127.0.0.1 on the target's own libuv loop, set up
 * once. For each input a client on the same loop connects, writes the
 * bytes, shuts its write side and reads until the server closes; the
 * input is done when the client is closed and the server has freed every
 * connection and held request, so each run starts from the same state. A
 * run that needs the server's timeouts to end (header or idle timeout)
 * shows up as a libFuzzer timeout: the peer's EOF must end every state.
 *
 * Checks beside the sanitizers: whatever the server writes starts with a
 * status line.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "fuzz_util.h"
#include "http.h"
#include "ws.h"

static uv_loop_t loop;
static struct http_server *srv;
static int pending_later; /* held requests whose timer has not closed yet */

/* ---- the server's handlers ---- */

static void on_echo(struct http_req *req)
{
	size_t len;
	const char *body = http_req_body(req, &len);
	const char *q = http_req_query(req, "q"), *h = http_req_header(req, "X-Echo");

	if (q)
		http_reply_header(req, "X-Query", q);
	if (h)
		http_reply_header(req, "X-Echo", h);
	http_reply(req, 200, "application/octet-stream", body, len);
}

static void on_param(struct http_req *req)
{
	const char *p = http_req_param(req);

	http_reply(req, p[0] ? 200 : 404, "text/plain", p, strlen(p));
}

struct later {
	uv_timer_t timer;
	struct http_req *req;
};

static void on_later_closed(uv_handle_t *h)
{
	free(h->data);
	pending_later--;
}

static void on_later_timer(uv_timer_t *t)
{
	struct later *l = t->data;

	http_reply(l->req, 202, "text/plain", "later", 5);
	uv_close((uv_handle_t *)&l->timer, on_later_closed);
}

/* Answers from the next loop turn: the connection may be gone by then. */
static void on_later(struct http_req *req)
{
	struct later *l = calloc(1, sizeof *l);

	l->req = req;
	uv_timer_init(&loop, &l->timer);
	l->timer.data = l;
	uv_timer_start(&l->timer, on_later_timer, 0, 0);
	pending_later++;
}

static void on_stream_closed(struct http_stream *s, void *ud)
{
}

static void on_stream(struct http_req *req)
{
	struct http_stream *s = http_stream_start(req, 200, "text/event-stream", on_stream_closed,
						  NULL);

	http_stream_write(s, "data: 1\n\n", 9);
	http_stream_end(s);
}

static void on_ws_text(struct ws_conn *ws, const char *msg, size_t len, void *ud)
{
	if (len >= 5 && memcmp(msg, "close", 5) == 0)
		ws_close(ws, 1000);
	else
		ws_send_text(ws, msg, len);
}

static void on_ws_binary(struct ws_conn *ws, const void *msg, size_t len, void *ud)
{
	ws_send_binary(ws, msg, len);
}

static void on_ws_close(struct ws_conn *ws, void *ud)
{
}

static void on_ws(struct http_req *req)
{
	static const struct ws_callbacks cb = {
		.on_text = on_ws_text, .on_binary = on_ws_binary, .on_close = on_ws_close,
	};

	http_ws_accept(req, &cb, NULL);
}

static const struct http_route routes[] = {
	{"POST", "/echo", on_echo, 0, 0},
	{"PUT", "/small", on_echo, 0, 16},
	{"GET", "/files/", on_param, HTTP_ROUTE_PREFIX, 0},
	{"*", "/later", on_later, 0, 0},
	{"GET", "/stream", on_stream, 0, 0},
	{"GET", "/ws", on_ws, 0, 0},
};

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct http_config cfg = {
		.host = "127.0.0.1",
		.routes = routes,
		.nroutes = sizeof routes / sizeof routes[0],
		.alias_prefix = "/api",
		.max_header_bytes = 2048,
		.max_body = 4096,
		.origin_guard = 1,
	};
	struct http_limits lim = {.ws_max_message = 1024};
	struct err err = {0};

	fuzz_quiet();
	uv_loop_init(&loop);
	srv = http_server_new(&loop, &cfg, &err);
	if (srv == NULL)
		fuzz_fail(err.msg);
	http_server_set_limits(srv, &lim);
	return 0;
}

/* ---- the client: one connection per input ---- */

struct client {
	uv_tcp_t tcp;
	uv_connect_t conn;
	uv_write_t wr;
	uv_shutdown_t sh;
	uv_buf_t out;
	int closed;
	char head[9]; /* the first bytes received */
	size_t nhead; /* of head */
	size_t got;   /* bytes received */
};

static void on_client_closed(uv_handle_t *h)
{
	struct client *c = h->data;

	c->closed = 1;
}

static void on_client_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
	static char rbuf[64 * 1024];

	*b = uv_buf_init(rbuf, sizeof rbuf);
}

static void on_client_read(uv_stream_t *st, ssize_t n, const uv_buf_t *b)
{
	struct client *c = st->data;

	if (n < 0) {
		uv_close((uv_handle_t *)&c->tcp, on_client_closed);
		return;
	}
	for (ssize_t i = 0; i < n && c->nhead < sizeof c->head; i++)
		c->head[c->nhead++] = b->base[i];
	c->got += (size_t)n;
}

static void on_client_written(uv_write_t *w, int status)
{
}

static void on_client_shut(uv_shutdown_t *s, int status)
{
}

static void on_client_connected(uv_connect_t *req, int status)
{
	struct client *c = req->data;
	uv_stream_t *st = (uv_stream_t *)&c->tcp;

	if (status < 0)
		fuzz_fail("connect to the server");
	uv_read_start(st, on_client_alloc, on_client_read);
	if (c->out.len)
		uv_write(&c->wr, st, &c->out, 1, on_client_written);
	uv_shutdown(&c->sh, st, on_client_shut);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct client c = {.out = uv_buf_init((char *)data, (unsigned)size)};
	struct sockaddr_in sa;

	uv_ip4_addr("127.0.0.1", http_server_port(srv), &sa);
	uv_tcp_init(&loop, &c.tcp);
	c.tcp.data = &c;
	c.conn.data = &c;
	if (uv_tcp_connect(&c.conn, &c.tcp, (struct sockaddr *)&sa, on_client_connected) != 0)
		fuzz_fail("uv_tcp_connect");
	while (!c.closed || http_server_conns(srv) > 0 || pending_later > 0)
		uv_run(&loop, UV_RUN_ONCE);
	if (c.got > 0 && (c.nhead < sizeof c.head || memcmp(c.head, "HTTP/1.1 ", sizeof c.head) != 0))
		fuzz_fail("the server wrote something other than a status line first");
	return 0;
}
