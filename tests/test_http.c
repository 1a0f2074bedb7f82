/*
 * test_http.c - the HTTP server layer and server-side WebSocket.
 *
 * Each test runs a server on port 0 on a libuv loop in its own thread, talks
 * to it with blocking sockets (tu_http, raw requests, tws), and ends with
 * srv_stop(), which closes the server and asserts uv_loop_close() == 0.
 * The loop thread reports events (a request held, a stream closed) through
 * a pipe; tests wait on them with deadlines, never with sleeps.
 */
#include <check.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>

#include "http.h"
#include "json.h"
#include "testutil.h"
#include "tws.h"
#include "ws.h"

#define WAIT_MS 5000
#define FILE_SIZE (3 * 1024 * 1024)

/* ---- the server thread ---- */

enum { CMD_STOP = 1, CMD_RELEASE = 2 };

static struct {
	uv_loop_t loop;
	uv_async_t async;          /* wakes the loop for commands */
	pthread_t thread;
	pthread_mutex_t mu;
	int cmds;                  /* CMD_* bits, under mu */
	struct http_server *srv;
	int port;
	int loop_close_rc;
	int done_called;
	int ev[2];                 /* pipe: loop thread -> test thread; 0 until made */
	struct http_req *held;     /* loop thread only */
	char file[512];            /* the file /file serves */
	uv_timer_t sse_timer;      /* ticks for /sse; loop thread only */
	int sse_timer_open;
	struct http_stream *sse;
	int sse_n;
} T;

static int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

static void ev_post(char c)
{
	if (write(T.ev[1], &c, 1) != 1)
		abort();
}

/* Waits until event c arrives; others that come first are kept for later. */
static int ev_wait(char c, int ms)
{
	static int seen[256]; /* events read but not yet waited for */
	int64_t deadline = mono_ms() + ms;

	for (;;) {
		struct pollfd pfd = {.fd = T.ev[0], .events = POLLIN};
		int64_t now = mono_ms();
		unsigned char got;

		if (seen[(unsigned char)c] > 0) {
			seen[(unsigned char)c]--;
			return 0;
		}
		if (poll(&pfd, 1, now < deadline ? (int)(deadline - now) : 0) <= 0)
			return -1;
		if (read(T.ev[0], &got, 1) != 1)
			return -1;
		seen[got]++;
	}
}

static void on_server_done(void *arg)
{
	(void)arg;
	T.done_called = 1;
}

static void on_sse_timer_closed(uv_handle_t *h)
{
	(void)h;
	T.sse_timer_open = 0;
}

static void on_async(uv_async_t *a)
{
	int cmds;

	pthread_mutex_lock(&T.mu);
	cmds = T.cmds;
	T.cmds = 0;
	pthread_mutex_unlock(&T.mu);
	if ((cmds & CMD_RELEASE) && T.held) {
		struct http_req *r = T.held;

		T.held = NULL;
		http_reply(r, 200, "text/plain", "late", 4);
		ev_post('R');
	}
	if (cmds & CMD_STOP) {
		http_server_close(T.srv, on_server_done, NULL);
		if (T.held) {
			/* Its connection is gone: the answer only frees it. */
			http_reply(T.held, 200, NULL, "", 0);
			T.held = NULL;
		}
		if (T.sse_timer_open)
			uv_close((uv_handle_t *)&T.sse_timer, on_sse_timer_closed);
		uv_close((uv_handle_t *)a, NULL);
	}
}

static void send_cmd(int cmd)
{
	pthread_mutex_lock(&T.mu);
	T.cmds |= cmd;
	pthread_mutex_unlock(&T.mu);
	uv_async_send(&T.async);
}

static void *loop_main(void *arg)
{
	(void)arg;
	uv_run(&T.loop, UV_RUN_DEFAULT);
	T.loop_close_rc = uv_loop_close(&T.loop);
	return NULL;
}

/* ---- handlers (loop thread) ---- */

static void h_hello(struct http_req *r)
{
	http_reply(r, 200, "text/plain; charset=utf-8", "hello", 5);
}

static void h_echo(struct http_req *r)
{
	size_t n;
	const char *b = http_req_body(r, &n);

	http_reply(r, 200, "application/octet-stream", b, n);
}

static void h_info(struct http_req *r)
{
	char out[1024];
	int n = snprintf(out, sizeof out, "method=%s path=%s raw=%s param=%s",
			 http_req_method(r), http_req_path(r), http_req_raw_path(r),
			 http_req_param(r));

	http_reply(r, 200, "text/plain", out, (size_t)n);
}

static void h_query(struct http_req *r)
{
	char out[512];
	const char *a = http_req_query(r, "a"), *b = http_req_query(r, "b");
	const char *c = http_req_query(r, "c"), *d = http_req_query(r, "d");
	int n = snprintf(out, sizeof out, "a=[%s] b=[%s] c=[%s] d=[%s]", a ? a : "NULL",
			 b ? b : "NULL", c ? c : "NULL", d ? d : "NULL");

	http_reply(r, 200, "text/plain", out, (size_t)n);
}

static void h_hold(struct http_req *r)
{
	T.held = r;
	ev_post('H');
}

static void h_file(struct http_req *r)
{
	struct err err = {0};

	if (http_reply_file(r, 200, T.file, "application/octet-stream", &err) < 0)
		http_reply(r, 500, "text/plain", err.msg, strlen(err.msg));
}

static void h_missing(struct http_req *r)
{
	struct err err = {0};
	int rc = http_reply_file(r, 200, "/nonexistent/fnrun-test", NULL, &err);

	if (rc == -1 && err.code == ERR_NOT_FOUND)
		http_reply(r, 404, "text/plain", "missing", 7);
	else if (rc == -1)
		http_reply(r, 500, "text/plain", "wrong error", 11);
}

static void h_json(struct http_req *r)
{
	struct json_object *o = json_object_new_object();

	json_put(o, "a", json_int(1));
	json_put(o, "b", json_str("x\xc3\xa9"));
	http_reply_json(r, 201, o);
	json_object_put(o);
}

static void h_nobody(struct http_req *r)
{
	http_reply_header(r, "X-Test", "yes");
	http_reply_header(r, "X-Bad", "a\r\nInjected: 1");
	http_reply(r, 200, NULL, "x", 1);
}

static void h_conns(struct http_req *r)
{
	char out[32];
	int n = snprintf(out, sizeof out, "%zu", http_server_conns(T.srv));

	http_reply(r, 200, "text/plain", out, (size_t)n);
}

static void on_sse_close(struct http_stream *s, void *ud)
{
	(void)s;
	ev_post(*(const char *)ud);
	if (T.sse == s)
		T.sse = NULL;
}

static void on_sse_tick(uv_timer_t *t)
{
	char ev[32];
	int n;

	if (T.sse == NULL)
		return;
	n = snprintf(ev, sizeof ev, "data: %d\n\n", ++T.sse_n);
	if (http_stream_write(T.sse, ev, (size_t)n) < 0)
		ev_post('E');
	if (T.sse_n == 3) {
		http_stream_end(T.sse);
		uv_timer_stop(t);
	}
}

static void h_sse(struct http_req *r)
{
	http_reply_header(r, "Cache-Control", "no-cache");
	T.sse = http_stream_start(r, 200, "text/event-stream", on_sse_close, "S");
	T.sse_n = 0;
	if (!T.sse_timer_open) {
		uv_timer_init(&T.loop, &T.sse_timer);
		T.sse_timer_open = 1;
	}
	uv_timer_start(&T.sse_timer, on_sse_tick, 5, 5);
}

static void h_sse_hold(struct http_req *r)
{
	struct http_stream *s = http_stream_start(r, 200, "text/event-stream",
						  on_sse_close, "C");

	if (http_stream_write(s, "data: hi\n\n", 10) != 0)
		ev_post('E');
}

static void ws_on_text(struct ws_conn *ws, const char *msg, size_t len, void *ud)
{
	(void)ud;
	if (strlen(msg) != len)
		abort(); /* NUL-terminated, no embedded NUL in these tests */
	if (strcmp(msg, "close-me") == 0) {
		ws_close(ws, 1000);
		return;
	}
	ws_send_text(ws, msg, len);
}

static void ws_on_binary(struct ws_conn *ws, const void *msg, size_t len, void *ud)
{
	(void)ud;
	ws_send_binary(ws, msg, len);
}

static void ws_on_close(struct ws_conn *ws, void *ud)
{
	(void)ws;
	(void)ud;
	ev_post('W');
}

static const struct ws_callbacks ws_cbs = {ws_on_text, ws_on_binary, ws_on_close};

static void h_hdr(struct http_req *r)
{
	const char *v = http_req_header(r, "x-long-header-name");

	http_reply(r, 200, "text/plain", v ? v : "NULL", strlen(v ? v : "NULL"));
}

#define FLOOD_CAP (256 * 1024) /* the backlog caps set by test_backpressure */

/* Writes 64 KiB until refused; 'B' when refused within the cap. */
static void h_flood(struct http_req *r)
{
	static char chunk[65536];
	struct http_stream *s = http_stream_start(r, 200, "application/octet-stream",
						  on_sse_close, "F");
	int i = 0;

	while (i < 1024 && http_stream_write(s, chunk, sizeof chunk) == 0)
		i++;
	ev_post(i < 1024 && http_stream_queued(s) <= FLOOD_CAP ? 'B' : 'N');
}

static void h_ws_flood(struct http_req *r)
{
	static char chunk[65536];
	struct ws_conn *ws = http_ws_accept(r, &ws_cbs, NULL);
	int i = 0;

	if (ws == NULL)
		return;
	while (i < 1024 && ws_send_binary(ws, chunk, sizeof chunk) == 0)
		i++;
	ev_post(i < 1024 && ws_queued(ws) <= FLOOD_CAP ? 'B' : 'N');
}

static void h_ws(struct http_req *r)
{
	if (http_ws_accept(r, &ws_cbs, NULL) == NULL)
		ev_post('X');
}

static const struct http_route routes[] = {
	{"GET", "/hello", h_hello, 0, 0},
	{"POST", "/echo", h_echo, 0, 1024},
	{"GET", "/api/special", h_info, 0, 0},
	{"GET", "/info", h_info, 0, 0},
	{"GET", "/items/", h_info, HTTP_ROUTE_PREFIX, 0},
	{"GET", "/query", h_query, 0, 0},
	{"*", "/any", h_info, 0, 0},
	{"PUT", "/only-put", h_hello, 0, 0},
	{"GET", "/hold", h_hold, 0, 0},
	{"GET", "/file", h_file, 0, 0},
	{"GET", "/missing", h_missing, 0, 0},
	{"GET", "/json", h_json, 0, 0},
	{"GET", "/nobody", h_nobody, 0, 0},
	{"GET", "/conns", h_conns, 0, 0},
	{"GET", "/sse", h_sse, 0, 0},
	{"GET", "/sse-hold", h_sse_hold, 0, 0},
	{"GET", "/ws", h_ws, 0, 0},
	{"GET", "/hdr", h_hdr, 0, 0},
	{"GET", "/flood", h_flood, 0, 0},
	{"GET", "/ws-flood", h_ws_flood, 0, 0},
};
static const size_t nroutes = sizeof routes / sizeof routes[0];

/* Starts a server; cfg may be NULL, or carry non-default limits. */
static void srv_start_ex(const struct http_config *over, const struct http_limits *lim)
{
	struct http_config cfg = {0};
	struct err err = {0};

	/* As fnrun's main does: a peer that goes away must not kill us. */
	signal(SIGPIPE, SIG_IGN);
	if (over)
		cfg = *over;
	cfg.host = "127.0.0.1";
	cfg.port = 0;
	cfg.routes = routes;
	cfg.nroutes = nroutes;
	cfg.alias_prefix = "/api";
	/* The pipe and mutex live as long as the test process. */
	if (T.ev[1] == 0) {
		ck_assert_int_eq(pipe(T.ev), 0);
		pthread_mutex_init(&T.mu, NULL);
	}
	T.done_called = 0;
	T.loop_close_rc = -1;
	ck_assert_int_eq(uv_loop_init(&T.loop), 0);
	ck_assert_int_eq(uv_async_init(&T.loop, &T.async, on_async), 0);
	T.srv = http_server_new(&T.loop, &cfg, &err);
	ck_assert_msg(T.srv != NULL, "server: %s", err.msg);
	if (lim)
		http_server_set_limits(T.srv, lim);
	T.port = http_server_port(T.srv);
	ck_assert_int_gt(T.port, 0);
	ck_assert_int_eq(pthread_create(&T.thread, NULL, loop_main, NULL), 0);
}

static void srv_start(const struct http_config *over)
{
	srv_start_ex(over, NULL);
}

static void srv_stop(void)
{
	send_cmd(CMD_STOP);
	ck_assert_int_eq(pthread_join(T.thread, NULL), 0);
	ck_assert_int_eq(T.done_called, 1);
	ck_assert_int_eq(T.loop_close_rc, 0);
}

/* ---- a raw client that reads responses one at a time ---- */

struct rconn {
	int fd;
	char *buf; /* received, not yet consumed */
	size_t len, cap;
};

struct rresp {
	int status;
	char head[16384]; /* status line and headers */
	char *body;       /* malloc'd, NUL-terminated */
	size_t len;
};

static void rc_open(struct rconn *rc)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)T.port)};

	memset(rc, 0, sizeof *rc);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	rc->fd = socket(AF_INET, SOCK_STREAM, 0);
	ck_assert_int_ge(rc->fd, 0);
	ck_assert_int_eq(connect(rc->fd, (struct sockaddr *)&sa, sizeof sa), 0);
}

static void rc_close(struct rconn *rc)
{
	if (rc->fd >= 0)
		close(rc->fd);
	rc->fd = -1;
	free(rc->buf);
	rc->buf = NULL;
}

static int rc_send(struct rconn *rc, const void *p, size_t n)
{
	const char *c = p;

	while (n > 0) {
		ssize_t w = send(rc->fd, c, n, MSG_NOSIGNAL);

		if (w <= 0)
			return -1;
		c += w;
		n -= (size_t)w;
	}
	return 0;
}

static int rc_sends(struct rconn *rc, const char *s)
{
	return rc_send(rc, s, strlen(s));
}

/* 1: bytes, 0: EOF, -1: timeout or error. */
static int rc_fill(struct rconn *rc, int64_t deadline)
{
	struct pollfd pfd = {.fd = rc->fd, .events = POLLIN};
	int64_t left = deadline - mono_ms();
	ssize_t r;

	if (left <= 0 || poll(&pfd, 1, (int)left) <= 0)
		return -1;
	if (rc->cap - rc->len < 65536) {
		rc->cap = rc->cap ? rc->cap * 2 : 131072;
		rc->buf = realloc(rc->buf, rc->cap + 1);
	}
	r = recv(rc->fd, rc->buf + rc->len, rc->cap - rc->len, 0);
	if (r < 0)
		return -1;
	rc->len += (size_t)r;
	return r > 0;
}

static int rc_need(struct rconn *rc, size_t n, int64_t deadline)
{
	while (rc->len < n)
		if (rc_fill(rc, deadline) <= 0)
			return -1;
	return 0;
}

static void rc_take(struct rconn *rc, size_t n, char *out)
{
	if (out) {
		memcpy(out, rc->buf, n);
		out[n] = '\0';
	}
	memmove(rc->buf, rc->buf + n, rc->len - n);
	rc->len -= n;
}

static const char *rr_header(const struct rresp *r, const char *name)
{
	static char val[1024];
	size_t n = strlen(name);
	const char *p = strstr(r->head, "\r\n");

	while (p && p[2]) {
		const char *line = p + 2, *end = strstr(line, "\r\n");

		if (end == NULL)
			end = line + strlen(line);
		if (strncasecmp(line, name, n) == 0 && line[n] == ':') {
			const char *v = line + n + 1 + strspn(line + n + 1, " ");

			snprintf(val, sizeof val, "%.*s", (int)(end - v), v);
			return val;
		}
		p = *end ? end : NULL;
	}
	return NULL;
}

static int rc_chunked(struct rconn *rc, struct rresp *out, int64_t deadline)
{
	for (;;) {
		char *crlf;
		size_t size;

		crlf = memmem(rc->buf, rc->len, "\r\n", 2);
		while (crlf == NULL) {
			if (rc_fill(rc, deadline) <= 0)
				return -1;
			crlf = memmem(rc->buf, rc->len, "\r\n", 2);
		}
		size = strtoul(rc->buf, NULL, 16);
		rc_take(rc, (size_t)(crlf + 2 - rc->buf), NULL);
		if (rc_need(rc, size + 2, deadline) < 0)
			return -1;
		out->body = realloc(out->body, out->len + size + 1);
		memcpy(out->body + out->len, rc->buf, size);
		out->len += size;
		out->body[out->len] = '\0';
		rc_take(rc, size + 2, NULL);
		if (size == 0)
			return 0;
	}
}

/* Reads one response; HEAD responses (is_head) have no body bytes. */
static int rc_response(struct rconn *rc, struct rresp *out, int is_head, int ms)
{
	int64_t deadline = mono_ms() + ms;
	char *end = NULL;
	const char *cl, *te;
	size_t hlen;

	memset(out, 0, sizeof *out);
	out->body = calloc(1, 1);
	for (;;) {
		end = rc->len ? memmem(rc->buf, rc->len, "\r\n\r\n", 4) : NULL;
		if (end)
			break;
		if (rc_fill(rc, deadline) <= 0)
			return -1;
	}
	hlen = (size_t)(end + 4 - rc->buf);
	ck_assert_uint_lt(hlen, sizeof out->head);
	rc_take(rc, hlen, out->head);
	if (sscanf(out->head, "HTTP/1.1 %d", &out->status) != 1)
		return -1;
	cl = rr_header(out, "Content-Length");
	te = rr_header(out, "Transfer-Encoding");
	if (is_head || out->status < 200)
		return 0;
	if (te && strcasecmp(te, "chunked") == 0)
		return rc_chunked(rc, out, deadline);
	out->len = cl ? strtoul(cl, NULL, 10) : 0;
	if (rc_need(rc, out->len, deadline) < 0)
		return -1;
	out->body = realloc(out->body, out->len + 1);
	rc_take(rc, out->len, out->body);
	return 0;
}

/* 0 when the server closes the connection within ms (nothing else arrives). */
static int rc_wait_eof(struct rconn *rc, int ms)
{
	int64_t deadline = mono_ms() + ms;
	size_t before = rc->len;
	int r;

	do
		r = rc_fill(rc, deadline);
	while (r == 1 && rc->len == before);
	return r == 0 && rc->len == before ? 0 : -1;
}

static void rr_free(struct rresp *r)
{
	free(r->body);
	r->body = NULL;
}

/* One request on a fresh connection; the response must arrive. */
static void raw_once(const char *req, struct rresp *out)
{
	struct rconn rc;

	rc_open(&rc);
	ck_assert_int_eq(rc_sends(&rc, req), 0);
	ck_assert_int_eq(rc_response(&rc, out, 0, WAIT_MS), 0);
	rc_close(&rc);
}

/* Polls GET /conns until the server counts n connections (this one included). */
static int wait_conns(const char *n, int ms)
{
	for (int64_t deadline = mono_ms() + ms; mono_ms() < deadline;) {
		struct tu_resp r;
		int ok = tu_http(T.port, "GET", "/conns", NULL, NULL, 0, &r) == 0 &&
			 strcmp(r.body, n) == 0;

		tu_resp_free(&r);
		if (ok)
			return 0;
		poll(NULL, 0, 5);
	}
	return -1;
}

static void get_expect(const char *path, int status, const char *body)
{
	struct tu_resp r;

	ck_assert_int_eq(tu_http(T.port, "GET", path, NULL, NULL, 0, &r), 0);
	ck_assert_int_eq(r.status, status);
	if (body)
		ck_assert_str_eq(r.body, body);
	tu_resp_free(&r);
}

static char *make_file(void)
{
	char *data = malloc(FILE_SIZE);
	uint32_t x = 12345;

	for (size_t i = 0; i < FILE_SIZE; i++) {
		x = x * 1103515245u + 12345u;
		data[i] = (char)(x >> 16);
	}
	snprintf(T.file, sizeof T.file, "%s/big.bin", tu_tmpdir());
	ck_assert_int_eq(tu_write_file(T.file, data, FILE_SIZE), 0);
	return data;
}

/* ---- routing ---- */

START_TEST(test_routes)
{
	struct tu_resp r;

	srv_start(NULL);
	ck_assert_int_eq(tu_http(T.port, "GET", "/hello", NULL, NULL, 0, &r), 0);
	ck_assert_int_eq(r.status, 200);
	ck_assert_str_eq(r.body, "hello");
	ck_assert_str_eq(tu_resp_header(&r, "Content-Length"), "5");
	ck_assert_str_eq(tu_resp_header(&r, "Content-Type"), "text/plain; charset=utf-8");
	ck_assert_str_eq(tu_resp_header(&r, "Server"), "fnrun");
	ck_assert_ptr_nonnull(strstr(tu_resp_header(&r, "Date"), " gmt")); /* lower-cased */
	tu_resp_free(&r);
	get_expect("/items/a%20b/c%2Fd", 200,
		   "method=GET path=/items/a b/c/d raw=/items/a%20b/c%2Fd param=a b/c/d");
	get_expect("/items/", 200, "method=GET path=/items/ raw=/items/ param=");
	get_expect("/info", 200, "method=GET path=/info raw=/info param=");
	get_expect("/items", 404, "404: Not Found");
	ck_assert_int_eq(tu_http(T.port, "DELETE", "/any", NULL, NULL, 0, &r), 0);
	ck_assert_str_eq(r.body, "method=DELETE path=/any raw=/any param=");
	tu_resp_free(&r);
	srv_stop();
}
END_TEST

START_TEST(test_listen_errors)
{
	struct http_config cfg = {.host = "127.0.0.1", .routes = routes, .nroutes = 1};
	struct err err = {0};
	uv_loop_t loop;

	srv_start(NULL);
	ck_assert_int_eq(uv_loop_init(&loop), 0);
	cfg.port = T.port; /* taken */
	ck_assert_ptr_null(http_server_new(&loop, &cfg, &err));
	ck_assert_int_eq(err.code, ERR_IO);
	err_clear(&err);
	cfg.host = "not-an-address";
	cfg.port = 0;
	ck_assert_ptr_null(http_server_new(&loop, &cfg, &err));
	ck_assert_int_eq(err.code, ERR_IO);
	ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
	ck_assert_int_eq(uv_loop_close(&loop), 0);
	srv_stop();
}
END_TEST

START_TEST(test_alias_prefix)
{
	srv_start(NULL);
	get_expect("/api/info", 200, "method=GET path=/info raw=/api/info param=");
	get_expect("/api/items/x", 200, "method=GET path=/items/x raw=/api/items/x param=x");
	/* A full-path route wins over the alias. */
	get_expect("/api/special", 200,
		   "method=GET path=/api/special raw=/api/special param=");
	get_expect("/api", 404, "404: Not Found");
	get_expect("/apiinfo", 404, "404: Not Found");
	get_expect("/api/nope", 404, "404: Not Found");
	srv_stop();
}
END_TEST

START_TEST(test_404_405)
{
	struct tu_resp r;

	srv_start(NULL);
	ck_assert_int_eq(tu_http(T.port, "GET", "/nope", NULL, NULL, 0, &r), 0);
	ck_assert_int_eq(r.status, 404);
	ck_assert_str_eq(r.body, "404: Not Found");
	ck_assert_str_eq(tu_resp_header(&r, "Content-Type"), "text/plain; charset=utf-8");
	tu_resp_free(&r);
	ck_assert_int_eq(tu_http(T.port, "GET", "/only-put", NULL, NULL, 0, &r), 0);
	ck_assert_int_eq(r.status, 405);
	ck_assert_str_eq(r.body, "405: Method Not Allowed");
	ck_assert_str_eq(tu_resp_header(&r, "Content-Type"), "text/plain; charset=utf-8");
	tu_resp_free(&r);
	ck_assert_int_eq(tu_http(T.port, "POST", "/hello", NULL, "x", 1, &r), 0);
	ck_assert_int_eq(r.status, 405);
	tu_resp_free(&r);
	ck_assert_int_eq(tu_http(T.port, "POST", "/api/only-put", NULL, "x", 1, &r), 0);
	ck_assert_int_eq(r.status, 405);
	tu_resp_free(&r);
	srv_stop();
}
END_TEST

START_TEST(test_query)
{
	srv_start(NULL);
	get_expect("/query?a=1%202&b=x+y&a=dup&c&d=%zz%41", 200,
		   "a=[1 2] b=[x y] c=[] d=[%zzA]");
	get_expect("/query", 200, "a=[NULL] b=[NULL] c=[NULL] d=[NULL]");
	get_expect("/api/query?b=%2B", 200, "a=[NULL] b=[+] c=[NULL] d=[NULL]");
	srv_stop();
}
END_TEST

START_TEST(test_json_and_headers)
{
	struct tu_resp r;

	srv_start(NULL);
	ck_assert_int_eq(tu_http(T.port, "GET", "/json", NULL, NULL, 0, &r), 0);
	ck_assert_int_eq(r.status, 201);
	ck_assert_str_eq(r.body, "{\"a\": 1, \"b\": \"x\\u00e9\"}");
	ck_assert_str_eq(tu_resp_header(&r, "Content-Type"), "application/json; charset=utf-8");
	tu_resp_free(&r);
	ck_assert_int_eq(tu_http(T.port, "GET", "/nobody", NULL, NULL, 0, &r), 0);
	ck_assert_int_eq(r.status, 200);
	ck_assert_ptr_null(tu_resp_header(&r, "Content-Type"));
	ck_assert_str_eq(tu_resp_header(&r, "X-Test"), "yes");
	ck_assert_ptr_null(tu_resp_header(&r, "X-Bad"));
	ck_assert_ptr_null(tu_resp_header(&r, "Injected"));
	tu_resp_free(&r);
	srv_stop();
}
END_TEST

/* ---- connections ---- */

START_TEST(test_keepalive)
{
	struct rconn rc;
	struct rresp a, b, c;

	srv_start(NULL);
	rc_open(&rc);
	ck_assert_int_eq(rc_sends(&rc, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n"), 0);
	ck_assert_int_eq(rc_response(&rc, &a, 0, WAIT_MS), 0);
	ck_assert_int_eq(a.status, 200);
	ck_assert_ptr_null(rr_header(&a, "Connection"));
	ck_assert_int_eq(rc_sends(&rc, "GET /info HTTP/1.1\r\nHost: x\r\n\r\n"), 0);
	ck_assert_int_eq(rc_response(&rc, &b, 0, WAIT_MS), 0);
	ck_assert_str_eq(b.body, "method=GET path=/info raw=/info param=");
	/* Connection: close is honoured: the reply, then EOF. */
	ck_assert_int_eq(rc_sends(&rc, "GET /hello HTTP/1.1\r\nConnection: close\r\n\r\n"), 0);
	ck_assert_int_eq(rc_response(&rc, &c, 0, WAIT_MS), 0);
	ck_assert_str_eq(rr_header(&c, "Connection"), "close");
	ck_assert_int_eq(rc_wait_eof(&rc, WAIT_MS), 0);
	rr_free(&a);
	rr_free(&b);
	rr_free(&c);
	rc_close(&rc);
	/* HTTP/1.0: kept only when asked for. */
	rc_open(&rc);
	ck_assert_int_eq(rc_sends(&rc, "GET /hello HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"), 0);
	ck_assert_int_eq(rc_response(&rc, &a, 0, WAIT_MS), 0);
	ck_assert_str_eq(rr_header(&a, "Connection"), "keep-alive");
	ck_assert_int_eq(rc_sends(&rc, "GET /hello HTTP/1.0\r\n\r\n"), 0);
	ck_assert_int_eq(rc_response(&rc, &b, 0, WAIT_MS), 0);
	ck_assert_str_eq(b.body, "hello");
	ck_assert_int_eq(rc_wait_eof(&rc, WAIT_MS), 0);
	rr_free(&a);
	rr_free(&b);
	rc_close(&rc);
	srv_stop();
}
END_TEST

START_TEST(test_split_reads)
{
	static const char req[] = "GET /query?a=x%20y&b=1 HTTP/1.1\r\nHost: h\r\n"
				  "X-Long-Header-Name: some value\r\n\r\n"
				  "GET /hdr HTTP/1.1\r\nX-Long-Header-Name: v\r\n\r\n";
	struct rconn rc;
	struct rresp a;
	int one = 1;

	srv_start(NULL);
	rc_open(&rc);
	setsockopt(rc.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	/* One byte per segment: every parser callback is split across reads. */
	for (size_t i = 0; i < sizeof req - 1; i++)
		ck_assert_int_eq(rc_send(&rc, req + i, 1), 0);
	ck_assert_int_eq(rc_response(&rc, &a, 0, WAIT_MS), 0);
	ck_assert_str_eq(a.body, "a=[x y] b=[1] c=[NULL] d=[NULL]");
	rr_free(&a);
	ck_assert_int_eq(rc_response(&rc, &a, 0, WAIT_MS), 0);
	ck_assert_str_eq(a.body, "v");
	rr_free(&a);
	rc_close(&rc);
	srv_stop();
}
END_TEST

START_TEST(test_pipelining)
{
	struct rconn rc;
	struct rresp a, b, c;

	srv_start(NULL);
	rc_open(&rc);
	/* The first is answered late; the others must wait their turn. */
	ck_assert_int_eq(rc_sends(&rc, "GET /hold HTTP/1.1\r\n\r\n"
				       "GET /hello HTTP/1.1\r\n\r\n"
				       "POST /echo HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc"), 0);
	ck_assert_int_eq(ev_wait('H', WAIT_MS), 0);
	send_cmd(CMD_RELEASE);
	ck_assert_int_eq(rc_response(&rc, &a, 0, WAIT_MS), 0);
	ck_assert_int_eq(rc_response(&rc, &b, 0, WAIT_MS), 0);
	ck_assert_int_eq(rc_response(&rc, &c, 0, WAIT_MS), 0);
	ck_assert_str_eq(a.body, "late");
	ck_assert_str_eq(b.body, "hello");
	ck_assert_str_eq(c.body, "abc");
	rr_free(&a);
	rr_free(&b);
	rr_free(&c);
	rc_close(&rc);
	srv_stop();
}
END_TEST

START_TEST(test_413_content_length)
{
	struct rconn rc;
	struct rresp a;
	char body[1024];

	srv_start(NULL);
	memset(body, 'b', sizeof body);
	/* At the limit: accepted. */
	rc_open(&rc);
	ck_assert_int_eq(rc_sends(&rc, "POST /echo HTTP/1.1\r\nContent-Length: 1024\r\n\r\n"), 0);
	ck_assert_int_eq(rc_send(&rc, body, sizeof body), 0);
	ck_assert_int_eq(rc_response(&rc, &a, 0, WAIT_MS), 0);
	ck_assert_int_eq(a.status, 200);
	ck_assert_uint_eq(a.len, sizeof body);
	rr_free(&a);
	/* Over it: 413 from the header alone, then the connection closes. */
	ck_assert_int_eq(rc_sends(&rc, "POST /echo HTTP/1.1\r\nContent-Length: 1025\r\n\r\n"), 0);
	ck_assert_int_eq(rc_response(&rc, &a, 0, WAIT_MS), 0);
	ck_assert_int_eq(a.status, 413);
	ck_assert_int_eq(rc_wait_eof(&rc, WAIT_MS), 0);
	rr_free(&a);
	rc_close(&rc);
	srv_stop();
}
END_TEST

START_TEST(test_413_chunked)
{
	struct rconn rc;
	struct rresp a;
	char chunk[600];

	srv_start(NULL);
	memset(chunk, 'c', sizeof chunk);
	rc_open(&rc);
	ck_assert_int_eq(rc_sends(&rc, "POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
				       "3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"), 0);
	ck_assert_int_eq(rc_response(&rc, &a, 0, WAIT_MS), 0);
	ck_assert_str_eq(a.body, "abcde");
	rr_free(&a);
	ck_assert_int_eq(rc_sends(&rc, "POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"), 0);
	for (int i = 0; i < 2; i++) {
		ck_assert_int_eq(rc_sends(&rc, "258\r\n"), 0);
		ck_assert_int_eq(rc_send(&rc, chunk, sizeof chunk), 0);
		ck_assert_int_eq(rc_sends(&rc, "\r\n"), 0);
	}
	ck_assert_int_eq(rc_response(&rc, &a, 0, WAIT_MS), 0);
	ck_assert_int_eq(a.status, 413);
	ck_assert_int_eq(rc_wait_eof(&rc, WAIT_MS), 0);
	rr_free(&a);
	rc_close(&rc);
	srv_stop();
}
END_TEST

START_TEST(test_100_continue)
{
	struct rconn rc;
	struct rresp a;

	srv_start(NULL);
	rc_open(&rc);
	ck_assert_int_eq(rc_sends(&rc, "POST /echo HTTP/1.1\r\nExpect: 100-continue\r\n"
				       "Content-Length: 5\r\n\r\n"), 0);
	ck_assert_int_eq(rc_response(&rc, &a, 0, WAIT_MS), 0);
	ck_assert_int_eq(a.status, 100);
	rr_free(&a);
	ck_assert_int_eq(rc_sends(&rc, "abcde"), 0);
	ck_assert_int_eq(rc_response(&rc, &a, 0, WAIT_MS), 0);
	ck_assert_int_eq(a.status, 200);
	ck_assert_str_eq(a.body, "abcde");
	rr_free(&a);
	/* Too large: 413 instead of 100, before any body byte. */
	ck_assert_int_eq(rc_sends(&rc, "POST /echo HTTP/1.1\r\nExpect: 100-continue\r\n"
				       "Content-Length: 5000\r\n\r\n"), 0);
	ck_assert_int_eq(rc_response(&rc, &a, 0, WAIT_MS), 0);
	ck_assert_int_eq(a.status, 413);
	rr_free(&a);
	rc_close(&rc);
	srv_stop();
}
END_TEST

static void big_header(int size)
{
	struct rconn rc;
	struct rresp a;
	char *req = malloc((size_t)size + 128);
	int n = sprintf(req, "GET /hello HTTP/1.1\r\nX-Big: ");

	memset(req + n, 'h', (size_t)size);
	strcpy(req + n + size, "\r\n\r\n");
	rc_open(&rc);
	ck_assert_int_eq(rc_sends(&rc, req), 0);
	ck_assert_int_eq(rc_response(&rc, &a, 0, WAIT_MS), 0);
	ck_assert_int_eq(a.status, 431);
	ck_assert_str_eq(a.body, "431: Request Header Fields Too Large");
	ck_assert_int_eq(rc_wait_eof(&rc, WAIT_MS), 0);
	rr_free(&a);
	rc_close(&rc);
	free(req);
}

START_TEST(test_431)
{
	struct http_config cfg = {.max_header_bytes = 4096};

	srv_start(&cfg);
	big_header(5000);   /* over our limit */
	big_header(100000); /* over http-parser's own as well */
	get_expect("/hello", 200, "hello");
	srv_stop();
}
END_TEST

START_TEST(test_malformed_400)
{
	static const char *const bad[] = {
		"GET /hello HTTP/1.1\r\nNo colon here\r\n\r\n",
		"\x01\x02 garbage\r\n\r\n",
		"GET /hello HTTP/9.9\r\n\r\n",
		"GET /%00x HTTP/1.1\r\n\r\n",
		"POST /echo HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
		/* a header name is a token (RFC 9110 5.1): no space, no separator */
		"GET /hello HTTP/1.1\r\nHo st: x\r\n\r\n",
		"GET /hello HTTP/1.1\r\nHost(x): y\r\n\r\n",
		"GET /hello HTTP/1.1\r\nX\x80Y: z\r\n\r\n",
	};

	srv_start(NULL);
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		struct rconn rc;
		struct rresp a;

		rc_open(&rc);
		ck_assert_int_eq(rc_sends(&rc, bad[i]), 0);
		ck_assert_int_eq(rc_response(&rc, &a, 0, WAIT_MS), 0);
		ck_assert_msg(a.status == 400, "case %zu: status %d", i, a.status);
		ck_assert_int_eq(rc_wait_eof(&rc, WAIT_MS), 0);
		rr_free(&a);
		rc_close(&rc);
	}
	get_expect("/hello", 200, "hello");
	srv_stop();
}
END_TEST

START_TEST(test_disconnect_mid_body)
{
	struct rconn rc;
	char *data = make_file();

	srv_start(NULL);
	rc_open(&rc);
	ck_assert_int_eq(rc_sends(&rc, "POST /echo HTTP/1.1\r\nContent-Length: 100\r\n\r\n0123456789"), 0);
	rc_close(&rc);
	/* Mid-reply as well: a 3 MiB file whose reader goes away. */
	rc_open(&rc);
	ck_assert_int_eq(rc_sends(&rc, "GET /file HTTP/1.1\r\n\r\n"), 0);
	ck_assert_int_eq(rc_fill(&rc, mono_ms() + WAIT_MS), 1);
	rc_close(&rc);
	ck_assert_int_eq(wait_conns("1", WAIT_MS), 0);
	get_expect("/hello", 200, "hello");
	free(data);
	srv_stop();
	tu_rmrf(tu_tmpdir());
}
END_TEST

START_TEST(test_async_reply_after_disconnect)
{
	struct rconn rc;

	srv_start(NULL);
	rc_open(&rc);
	ck_assert_int_eq(rc_sends(&rc, "GET /hold HTTP/1.1\r\n\r\n"), 0);
	ck_assert_int_eq(ev_wait('H', WAIT_MS), 0);
	rc_close(&rc);
	ck_assert_int_eq(wait_conns("1", WAIT_MS), 0);
	/* The handler answers a request whose connection is gone: freed, no crash. */
	send_cmd(CMD_RELEASE);
	ck_assert_int_eq(ev_wait('R', WAIT_MS), 0);
	get_expect("/hello", 200, "hello");
	srv_stop();
}
END_TEST

START_TEST(test_max_conns)
{
	struct http_config cfg = {.max_conns = 1};
	struct rconn a, b;
	struct rresp r;

	srv_start(&cfg);
	rc_open(&a);
	ck_assert_int_eq(rc_sends(&a, "GET /hello HTTP/1.1\r\n\r\n"), 0);
	ck_assert_int_eq(rc_response(&a, &r, 0, WAIT_MS), 0);
	ck_assert_int_eq(r.status, 200);
	rr_free(&r);
	rc_open(&b);
	ck_assert_int_eq(rc_response(&b, &r, 0, WAIT_MS), 0);
	ck_assert_int_eq(r.status, 503);
	ck_assert_int_eq(rc_wait_eof(&b, WAIT_MS), 0);
	rr_free(&r);
	rc_close(&b);
	rc_close(&a);
	ck_assert_int_eq(wait_conns("1", WAIT_MS), 0);
	srv_stop();
}
END_TEST

START_TEST(test_header_timeout)
{
	struct http_config cfg = {.header_timeout_ms = 150, .idle_timeout_ms = 150};
	struct rconn rc;
	struct rresp r;

	srv_start(&cfg);
	rc_open(&rc);
	ck_assert_int_eq(rc_sends(&rc, "GET /hel"), 0);
	ck_assert_int_eq(rc_wait_eof(&rc, WAIT_MS), 0);
	rc_close(&rc);
	/* Idle keep-alive connections are closed too. */
	rc_open(&rc);
	ck_assert_int_eq(rc_sends(&rc, "GET /hello HTTP/1.1\r\n\r\n"), 0);
	ck_assert_int_eq(rc_response(&rc, &r, 0, WAIT_MS), 0);
	ck_assert_int_eq(r.status, 200);
	ck_assert_int_eq(rc_wait_eof(&rc, WAIT_MS), 0);
	rr_free(&r);
	rc_close(&rc);
	srv_stop();
}
END_TEST

/* ---- files and HEAD ---- */

START_TEST(test_file)
{
	struct tu_resp r;
	struct rconn rc;
	struct rresp a;
	char *data = make_file();

	srv_start(NULL);
	ck_assert_int_eq(tu_http(T.port, "GET", "/file", NULL, NULL, 0, &r), 0);
	ck_assert_int_eq(r.status, 200);
	ck_assert_str_eq(tu_resp_header(&r, "Content-Length"), "3145728");
	ck_assert_uint_eq(r.len, FILE_SIZE);
	ck_assert_int_eq(memcmp(r.body, data, FILE_SIZE), 0);
	tu_resp_free(&r);
	/* Twice on one connection: the file reply hands the connection back. */
	rc_open(&rc);
	ck_assert_int_eq(rc_sends(&rc, "GET /file HTTP/1.1\r\n\r\nGET /file HTTP/1.1\r\n\r\n"), 0);
	for (int i = 0; i < 2; i++) {
		ck_assert_int_eq(rc_response(&rc, &a, 0, WAIT_MS), 0);
		ck_assert_uint_eq(a.len, FILE_SIZE);
		ck_assert_int_eq(memcmp(a.body, data, FILE_SIZE), 0);
		rr_free(&a);
	}
	rc_close(&rc);
	get_expect("/missing", 404, "missing");
	free(data);
	srv_stop();
	tu_rmrf(tu_tmpdir());
}
END_TEST

START_TEST(test_head)
{
	struct rconn rc;
	struct rresp a;
	char *data = make_file();

	srv_start(NULL);
	rc_open(&rc);
	ck_assert_int_eq(rc_sends(&rc, "HEAD /hello HTTP/1.1\r\n\r\n"), 0);
	ck_assert_int_eq(rc_response(&rc, &a, 1, WAIT_MS), 0);
	ck_assert_int_eq(a.status, 200);
	ck_assert_str_eq(rr_header(&a, "Content-Length"), "5");
	rr_free(&a);
	ck_assert_int_eq(rc_sends(&rc, "HEAD /file HTTP/1.1\r\n\r\n"), 0);
	ck_assert_int_eq(rc_response(&rc, &a, 1, WAIT_MS), 0);
	ck_assert_str_eq(rr_header(&a, "Content-Length"), "3145728");
	rr_free(&a);
	/* No body bytes were sent: the next response starts right away. */
	ck_assert_int_eq(rc_sends(&rc, "GET /hello HTTP/1.1\r\n\r\n"), 0);
	ck_assert_int_eq(rc_response(&rc, &a, 0, WAIT_MS), 0);
	ck_assert_str_eq(a.body, "hello");
	rr_free(&a);
	rc_close(&rc);
	free(data);
	srv_stop();
	tu_rmrf(tu_tmpdir());
}
END_TEST

/* ---- streams ---- */

START_TEST(test_sse_stream)
{
	struct tu_resp r;
	struct rconn rc;
	struct rresp a;

	srv_start(NULL);
	ck_assert_int_eq(tu_http(T.port, "GET", "/sse", NULL, NULL, 0, &r), 0);
	ck_assert_int_eq(r.status, 200);
	ck_assert_str_eq(tu_resp_header(&r, "Content-Type"), "text/event-stream");
	ck_assert_str_eq(tu_resp_header(&r, "Transfer-Encoding"), "chunked");
	ck_assert_str_eq(tu_resp_header(&r, "Cache-Control"), "no-cache");
	ck_assert_ptr_null(tu_resp_header(&r, "Content-Length"));
	ck_assert_str_eq(r.body, "data: 1\n\ndata: 2\n\ndata: 3\n\n");
	tu_resp_free(&r);
	ck_assert_int_eq(ev_wait('S', WAIT_MS), 0);
	/* A peer that goes away is noticed: on_close runs. */
	rc_open(&rc);
	ck_assert_int_eq(rc_sends(&rc, "GET /sse-hold HTTP/1.1\r\n\r\n"), 0);
	ck_assert_int_eq(rc_response(&rc, &a, 1, WAIT_MS), 0);
	ck_assert_int_eq(a.status, 200);
	rr_free(&a);
	rc_close(&rc);
	ck_assert_int_eq(ev_wait('C', WAIT_MS), 0);
	srv_stop();
}
END_TEST

START_TEST(test_backpressure)
{
	struct http_limits lim = {.stream_max_queued = FLOOD_CAP, .ws_max_queued = FLOOD_CAP};
	struct rconn rc;
	struct tws *t;

	srv_start_ex(NULL, &lim);
	/* A reader that never reads: writes are refused once the cap is hit. */
	rc_open(&rc);
	ck_assert_int_eq(rc_sends(&rc, "GET /flood HTTP/1.1\r\n\r\n"), 0);
	ck_assert_int_eq(ev_wait('B', WAIT_MS), 0);
	rc_close(&rc);
	ck_assert_int_eq(ev_wait('F', WAIT_MS), 0);
	t = tws_connect(T.port, "/ws-flood", WAIT_MS);
	ck_assert_ptr_nonnull(t);
	ck_assert_int_eq(ev_wait('B', WAIT_MS), 0);
	tws_close(t);
	ck_assert_int_eq(ev_wait('W', WAIT_MS), 0);
	srv_stop();
}
END_TEST

/* ---- WebSocket ---- */

static void ws_expect(struct tws *t, int opcode, const char *data, size_t len)
{
	int op = -1;
	char *got = NULL;
	size_t n = 0;

	ck_assert_int_eq(tws_recv(t, WAIT_MS, &op, &got, &n), 0);
	ck_assert_int_eq(op, opcode);
	ck_assert_uint_eq(n, len);
	ck_assert_int_eq(memcmp(got, data, len), 0);
	free(got);
}

START_TEST(test_ws_echo)
{
	struct tws *t;
	char *big = malloc(70001);

	srv_start(NULL);
	t = tws_connect(T.port, "/ws?clientId=abc", WAIT_MS);
	ck_assert_ptr_nonnull(t);
	ck_assert_int_eq(tws_send_text(t, "hi"), 0);
	ws_expect(t, TWS_TEXT, "hi", 2);
	ck_assert_int_eq(tws_send_binary(t, "\x00\x01\xff", 3), 0);
	ws_expect(t, TWS_BINARY, "\x00\x01\xff", 3);
	ck_assert_int_eq(tws_send_frame(t, TWS_TEXT, 0, "hel", 3), 0);
	ck_assert_int_eq(tws_send_frame(t, TWS_PING, 1, "p", 1), 0);
	ck_assert_int_eq(tws_send_frame(t, TWS_CONT, 1, "lo", 2), 0);
	ws_expect(t, TWS_TEXT, "hello", 5);
	memset(big, 'z', 70000);
	big[70000] = '\0';
	ck_assert_int_eq(tws_send_text(t, big), 0);
	ws_expect(t, TWS_TEXT, big, 70000);
	/* The client closes; the server answers and reports on_close. */
	ck_assert_int_eq(tws_send_close(t, 1000), 0);
	ck_assert_int_eq(tws_recv(t, WAIT_MS, NULL, NULL, NULL), 1);
	ck_assert_int_eq(tws_close_code(t), 1000);
	ck_assert_int_eq(ev_wait('W', WAIT_MS), 0);
	tws_close(t);
	/* The alias prefix works for upgrades too. */
	t = tws_connect(T.port, "/api/ws", WAIT_MS);
	ck_assert_ptr_nonnull(t);
	tws_close(t);
	ck_assert_int_eq(ev_wait('W', WAIT_MS), 0);
	free(big);
	srv_stop();
}
END_TEST

START_TEST(test_ws_early_data_and_server_close)
{
	struct tws *t;
	uint8_t *f;
	size_t n = tws_frame(&f, TWS_TEXT, 1, "early", 5);
	int status = 0;

	srv_start(NULL);
	/* A frame sent in the same write as the handshake is not lost. */
	t = tws_connect_ex(T.port, "/ws", NULL, f, n, WAIT_MS, &status);
	free(f);
	ck_assert_int_eq(status, 101);
	ck_assert_ptr_nonnull(t);
	ws_expect(t, TWS_TEXT, "early", 5);
	ck_assert_int_eq(tws_send_text(t, "close-me"), 0);
	ck_assert_int_eq(tws_recv(t, WAIT_MS, NULL, NULL, NULL), 1);
	ck_assert_int_eq(tws_close_code(t), 1000);
	ck_assert_int_eq(ev_wait('W', WAIT_MS), 0);
	tws_close(t);
	srv_stop();
}
END_TEST

START_TEST(test_ws_too_big)
{
	struct http_limits lim = {.ws_max_message = 1024};
	struct tws *t;
	char msg[2001];

	srv_start_ex(NULL, &lim);
	t = tws_connect(T.port, "/ws", WAIT_MS);
	ck_assert_ptr_nonnull(t);
	memset(msg, 'm', 1024);
	msg[1024] = '\0';
	ck_assert_int_eq(tws_send_text(t, msg), 0);
	ws_expect(t, TWS_TEXT, msg, 1024);
	memset(msg, 'm', 2000);
	msg[2000] = '\0';
	ck_assert_int_eq(tws_send_text(t, msg), 0);
	ck_assert_int_eq(tws_recv(t, WAIT_MS, NULL, NULL, NULL), 1);
	ck_assert_int_eq(tws_close_code(t), 1009);
	ck_assert_int_eq(ev_wait('W', WAIT_MS), 0);
	tws_close(t);
	srv_stop();
}
END_TEST

START_TEST(test_ws_bad_upgrade)
{
	struct tu_resp r;
	struct rresp a;
	int status = 0;

	srv_start(NULL);
	ck_assert_int_eq(tu_http(T.port, "GET", "/ws", NULL, NULL, 0, &r), 0);
	ck_assert_int_eq(r.status, 400);
	tu_resp_free(&r);
	ck_assert_int_eq(ev_wait('X', WAIT_MS), 0);
	raw_once("GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n"
		 "Sec-WebSocket-Version: 8\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
		 &a);
	ck_assert_int_eq(a.status, 400);
	rr_free(&a);
	/* An upgrade to a plain route gets its answer, no switch. */
	ck_assert_ptr_null(tws_connect_ex(T.port, "/hello", NULL, NULL, 0, WAIT_MS, &status));
	ck_assert_int_eq(status, 200);
	srv_stop();
}
END_TEST

/* ---- origin guard and shutdown ---- */

static int origin_status(const char *host, const char *origin, const char *method)
{
	char req[512];
	struct rresp a;
	int status;

	snprintf(req, sizeof req, "%s /hello HTTP/1.1\r\n%s%s%s%s%s%s\r\n", method,
		 host ? "Host: " : "", host ? host : "", host ? "\r\n" : "",
		 origin ? "Origin: " : "", origin ? origin : "", origin ? "\r\n" : "");
	raw_once(req, &a);
	status = a.status;
	if (status == 403 || strcmp(method, "OPTIONS") == 0)
		ck_assert_uint_eq(a.len, 0);
	rr_free(&a);
	return status;
}

START_TEST(test_origin_guard)
{
	struct http_config cfg = {.origin_guard = 1};

	srv_start(&cfg);
	ck_assert_int_eq(origin_status("127.0.0.1:8188", "http://evil.example", "GET"), 403);
	ck_assert_int_eq(origin_status("localhost:8188", "http://evil.example:8188", "GET"), 403);
	ck_assert_int_eq(origin_status("127.0.0.1:8188", "http://localhost:8188", "GET"), 403);
	ck_assert_int_eq(origin_status("[::1]:8188", "http://evil.example", "GET"), 403);
	ck_assert_int_eq(origin_status("127.0.0.1:8188", "http://127.0.0.1:8189", "GET"), 403);
	ck_assert_int_eq(origin_status("127.0.0.1:8188", "http://127.0.0.1:8188", "GET"), 200);
	/* Ports are compared only when both carry one. */
	ck_assert_int_eq(origin_status("127.0.0.1:8188", "http://127.0.0.1", "GET"), 200);
	ck_assert_int_eq(origin_status("LOCALHOST", "http://localhost:3000", "GET"), 200);
	/* Not a loopback Host, no Origin, or no Host: not guarded. */
	ck_assert_int_eq(origin_status("example.com", "http://evil.example", "GET"), 200);
	ck_assert_int_eq(origin_status("127.0.0.1:8188", NULL, "GET"), 200);
	ck_assert_int_eq(origin_status(NULL, "http://evil.example", "GET"), 200);
	ck_assert_int_eq(origin_status("127.0.0.1:8188", "null", "GET"), 200);
	/* The middleware answers OPTIONS itself; a foreign origin still gets 403. */
	ck_assert_int_eq(origin_status("127.0.0.1:8188", NULL, "OPTIONS"), 200);
	ck_assert_int_eq(origin_status("127.0.0.1:8188", "http://evil.example", "OPTIONS"), 403);
	srv_stop();
	/* Off by default. */
	srv_start(NULL);
	ck_assert_int_eq(origin_status("127.0.0.1:8188", "http://evil.example", "GET"), 200);
	srv_stop();
}
END_TEST

START_TEST(test_shutdown_with_everything_open)
{
	struct rconn idle, sse, hold;
	struct rresp a;
	struct tws *t;

	srv_start(NULL);
	rc_open(&idle);
	ck_assert_int_eq(rc_sends(&idle, "GET /hello HTTP/1.1\r\n\r\n"), 0);
	ck_assert_int_eq(rc_response(&idle, &a, 0, WAIT_MS), 0);
	rr_free(&a);
	rc_open(&sse);
	ck_assert_int_eq(rc_sends(&sse, "GET /sse-hold HTTP/1.1\r\n\r\n"), 0);
	ck_assert_int_eq(rc_response(&sse, &a, 1, WAIT_MS), 0);
	rr_free(&a);
	rc_open(&hold);
	ck_assert_int_eq(rc_sends(&hold, "GET /hold HTTP/1.1\r\n\r\n"), 0);
	ck_assert_int_eq(ev_wait('H', WAIT_MS), 0);
	t = tws_connect(T.port, "/ws", WAIT_MS);
	ck_assert_ptr_nonnull(t);
	ck_assert_int_eq(tws_send_text(t, "x"), 0);
	ws_expect(t, TWS_TEXT, "x", 1);
	srv_stop(); /* asserts done() ran and uv_loop_close() == 0 */
	ck_assert_int_eq(ev_wait('C', 0), 0);
	ck_assert_int_eq(ev_wait('W', 0), 0);
	ck_assert_int_eq(rc_wait_eof(&idle, WAIT_MS), 0);
	ck_assert_int_eq(rc_wait_eof(&hold, WAIT_MS), 0);
	rc_close(&idle);
	rc_close(&sse);
	rc_close(&hold);
	tws_close(t);
}
END_TEST

Suite *suite_http(void)
{
	Suite *s = suite_create("http");
	TCase *tc = tcase_create("server");

	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_routes);
	tcase_add_test(tc, test_listen_errors);
	tcase_add_test(tc, test_alias_prefix);
	tcase_add_test(tc, test_404_405);
	tcase_add_test(tc, test_query);
	tcase_add_test(tc, test_json_and_headers);
	tcase_add_test(tc, test_keepalive);
	tcase_add_test(tc, test_split_reads);
	tcase_add_test(tc, test_pipelining);
	tcase_add_test(tc, test_413_content_length);
	tcase_add_test(tc, test_413_chunked);
	tcase_add_test(tc, test_100_continue);
	tcase_add_test(tc, test_431);
	tcase_add_test(tc, test_malformed_400);
	tcase_add_test(tc, test_disconnect_mid_body);
	tcase_add_test(tc, test_async_reply_after_disconnect);
	tcase_add_test(tc, test_max_conns);
	tcase_add_test(tc, test_header_timeout);
	tcase_add_test(tc, test_file);
	tcase_add_test(tc, test_head);
	tcase_add_test(tc, test_sse_stream);
	tcase_add_test(tc, test_backpressure);
	tcase_add_test(tc, test_ws_echo);
	tcase_add_test(tc, test_ws_early_data_and_server_close);
	tcase_add_test(tc, test_ws_too_big);
	tcase_add_test(tc, test_ws_bad_upgrade);
	tcase_add_test(tc, test_origin_guard);
	tcase_add_test(tc, test_shutdown_with_everything_open);
	suite_add_tcase(s, tc);
	return s;
}
