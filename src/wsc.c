/*
 * wsc.c - WebSocket client: our own opening handshake, then wslay frames
 * over a uv_tcp_t (docs/stack.md §4).
 *
 * States, each entered only through set_state():
 *
 *   CONNECTING --on_connect--> HANDSHAKE --handshake_done--> OPEN
 *   OPEN --begin_shutdown (both close frames done)--> SHUTDOWN
 *   any --finish (error, timeout, EOF, shutdown done, early wsc_close)--> CLOSED
 *
 * Invariants:
 * 1. At most one uv_write is in flight (w->writing); the frame pieces wslay
 *    hands to on_wslay_send are gathered in w->out and flushed with one
 *    write, so a header and its payload share a segment.
 * 2. w->pending counts open handles (tcp, timer) and requests in flight
 *    (connect, write, shutdown). The struct is freed, after on_close, only
 *    in CLOSED with pending == 0 (maybe_free).
 * 3. w->why holds the first error; code 0 at the end means a clean close.
 */
#include <assert.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <wslay/wslay.h>

#include "buf.h"
#include "log.h"
#include "util.h"
#include "wsc.h"

#define WSC_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define WSC_OUT_MAX (256u << 10) /* bytes gathered for one uv_write */
#define WSC_MAX_PATH 4096

enum wsc_state { WSC_CONNECTING, WSC_HANDSHAKE, WSC_OPEN, WSC_SHUTDOWN, WSC_CLOSED };

struct wsc {
	uv_loop_t *loop; /* borrowed */
	uv_tcp_t tcp;
	uv_timer_t timer; /* connect + handshake deadline, later the close deadline */
	uv_connect_t connect_req;
	uv_write_t write_req;
	uv_shutdown_t shutdown_req;
	wslay_event_context_ptr ctx;
	struct wsc_callbacks cb;
	void *ud;
	enum wsc_state state; /* written only by set_state() */
	int pending;          /* see invariant 2 */
	int writing;          /* write_req in flight, its buffer in wdata */
	char *wdata;
	int user_closed; /* wsc_close() was called */
	int in_recv;     /* inside wslay_event_recv(): do not send from callbacks */
	int silent;      /* wsc_connect() failed: no on_close */
	uint64_t timeout_ms;
	struct err why;          /* see invariant 3 */
	char addr[80];           /* "host:port" for messages */
	char accept[32];         /* the Sec-WebSocket-Accept we expect */
	struct buf head;         /* handshake response so far */
	struct buf out;          /* frame pieces for the next write */
	const uint8_t *rptr;     /* bytes being fed to wslay_event_recv() */
	size_t rlen;
	char rbuf[64 * 1024];    /* libuv reads here */
};

static void set_state(struct wsc *w, enum wsc_state s)
{
	assert(s > w->state);
	w->state = s;
}

/* ---- teardown --------------------------------------------------------- */

static void maybe_free(struct wsc *w)
{
	if (w->state != WSC_CLOSED || w->pending > 0)
		return;
	if (!w->silent && w->cb.on_close)
		w->cb.on_close(w, &w->why, w->ud);
	log_debug("wsc closed addr=%s err=%s", w->addr, log_q(w->why.msg));
	wslay_event_context_free(w->ctx);
	buf_cleanup(&w->head);
	buf_cleanup(&w->out);
	free(w->wdata);
	free(w);
}

static void on_closed(uv_handle_t *h)
{
	struct wsc *w = h->data;

	w->pending--;
	maybe_free(w);
}

/* Closes both handles; on_close follows once everything in flight returned. */
static void finish(struct wsc *w)
{
	if (w->state == WSC_CLOSED)
		return;
	set_state(w, WSC_CLOSED);
	uv_close((uv_handle_t *)&w->timer, on_closed);
	uv_close((uv_handle_t *)&w->tcp, on_closed);
}

/* Why a connection whose close frames were exchanged ended; see wsc.h. */
static void set_outcome(struct wsc *w)
{
	uint16_t code;

	if (wslay_event_get_close_received(w->ctx)) {
		code = wslay_event_get_status_code_received(w->ctx);
		if (w->user_closed || code == WSLAY_CODE_NORMAL_CLOSURE ||
		    code == WSLAY_CODE_GOING_AWAY || code == WSLAY_CODE_NO_STATUS_RCVD)
			return;
		err_set(&w->why, ERR_UNAVAILABLE, "%s closed with status %u", w->addr, code);
		return;
	}
	if (w->user_closed)
		return;
	/* wslay closed on its own: a protocol error or an oversized message. */
	code = wslay_event_get_status_code_sent(w->ctx);
	if (code == WSLAY_CODE_MESSAGE_TOO_BIG)
		err_set(&w->why, ERR_TOO_LARGE, "%s sent a message over %u bytes", w->addr,
			WSC_MAX_MESSAGE);
	else
		err_set(&w->why, ERR_UNAVAILABLE, "%s broke the protocol (closed with %u)", w->addr,
			code);
}

static void on_timer(uv_timer_t *t);

static void on_shutdown(uv_shutdown_t *req, int status)
{
	struct wsc *w = req->data;

	w->pending--;
	finish(w);
	maybe_free(w);
}

/* Both close frames are done (or wslay gave up): FIN after the last write. */
static void begin_shutdown(struct wsc *w)
{
	set_outcome(w);
	set_state(w, WSC_SHUTDOWN);
	uv_read_stop((uv_stream_t *)&w->tcp);
	if (!uv_is_active((uv_handle_t *)&w->timer))
		uv_timer_start(&w->timer, on_timer, w->timeout_ms, 0);
	w->shutdown_req.data = w;
	if (uv_shutdown(&w->shutdown_req, (uv_stream_t *)&w->tcp, on_shutdown) != 0) {
		finish(w);
		return;
	}
	w->pending++;
}

static void on_timer(uv_timer_t *t)
{
	struct wsc *w = t->data;

	if (w->state < WSC_OPEN)
		err_set(&w->why, ERR_TIMEOUT, "websocket %s: no handshake within %llu ms", w->addr,
			(unsigned long long)w->timeout_ms);
	else if (w->state == WSC_OPEN)
		err_set(&w->why, ERR_TIMEOUT, "websocket %s: no close within %llu ms", w->addr,
			(unsigned long long)w->timeout_ms);
	/* In SHUTDOWN the close frames were exchanged: only the FIN is stuck. */
	finish(w);
}

/* ---- writing ---------------------------------------------------------- */

static void pump(struct wsc *w);

static void on_write(uv_write_t *req, int status)
{
	struct wsc *w = req->data;

	w->pending--;
	w->writing = 0;
	free(w->wdata);
	w->wdata = NULL;
	if (status < 0 && w->state != WSC_CLOSED) {
		err_set(&w->why, ERR_UNAVAILABLE, "websocket %s: write: %s", w->addr,
			uv_strerror(status));
		finish(w);
	}
	if (w->state == WSC_CLOSED) {
		maybe_free(w);
		return;
	}
	pump(w);
}

/* Writes data (taking ownership) as the one write in flight. */
static void write_owned(struct wsc *w, char *data, size_t len)
{
	uv_buf_t b = uv_buf_init(data, (unsigned)len);
	int rc;

	assert(!w->writing);
	w->wdata = data;
	w->write_req.data = w;
	rc = uv_write(&w->write_req, (uv_stream_t *)&w->tcp, &b, 1, on_write);
	if (rc != 0) {
		err_set(&w->why, ERR_UNAVAILABLE, "websocket %s: write: %s", w->addr, uv_strerror(rc));
		finish(w);
		return;
	}
	w->writing = 1;
	w->pending++;
}

/* Flushes what wslay has queued; starts the shutdown once both sides closed. */
static void pump(struct wsc *w)
{
	if (w->state != WSC_OPEN || w->in_recv)
		return;
	if (!w->writing && wslay_event_want_write(w->ctx)) {
		if (wslay_event_send(w->ctx) != 0) {
			err_set(&w->why, ERR_IO, "websocket %s: send failed", w->addr);
			finish(w);
			return;
		}
		if (w->out.len > 0) {
			size_t len = w->out.len;
			write_owned(w, buf_steal(&w->out), len);
		}
	}
	if (w->state == WSC_OPEN && !w->writing && !wslay_event_want_read(w->ctx) &&
	    !wslay_event_want_write(w->ctx))
		begin_shutdown(w);
}

/* ---- wslay callbacks -------------------------------------------------- */

static ssize_t on_wslay_recv(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags,
			     void *ud)
{
	struct wsc *w = ud;
	size_t n = len < w->rlen ? len : w->rlen;

	if (n == 0) {
		wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
		return -1;
	}
	memcpy(buf, w->rptr, n);
	w->rptr += n;
	w->rlen -= n;
	return (ssize_t)n;
}

static ssize_t on_wslay_send(wslay_event_context_ptr ctx, const uint8_t *data, size_t len,
			     int flags, void *ud)
{
	struct wsc *w = ud;
	size_t room = WSC_OUT_MAX - w->out.len;
	size_t n = len < room ? len : room;

	if (n == 0) {
		wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
		return -1;
	}
	if (buf_append(&w->out, data, n) < 0) {
		wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
		return -1;
	}
	return (ssize_t)n;
}

/* Masking keys must be unpredictable (RFC 6455 §5.3). */
static int on_wslay_genmask(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, void *ud)
{
	return RAND_bytes(buf, (int)len) == 1 ? 0 : -1;
}

static void on_wslay_msg(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *arg,
			 void *ud)
{
	struct wsc *w = ud;
	char *text;

	if (w->user_closed)
		return;
	if (arg->opcode == WSLAY_TEXT_FRAME && w->cb.on_text) {
		/* wslay's copy is not NUL-terminated. */
		text = xmalloc(arg->msg_length + 1);
		memcpy(text, arg->msg, arg->msg_length);
		text[arg->msg_length] = '\0';
		w->cb.on_text(w, text, arg->msg_length, w->ud);
		free(text);
	} else if (arg->opcode == WSLAY_BINARY_FRAME && w->cb.on_binary) {
		w->cb.on_binary(w, arg->msg, arg->msg_length, w->ud);
	}
}

static const struct wslay_event_callbacks wslay_callbacks = {
	.recv_callback = on_wslay_recv,
	.send_callback = on_wslay_send,
	.genmask_callback = on_wslay_genmask,
	.on_msg_recv_callback = on_wslay_msg,
};

/* ---- reading ---------------------------------------------------------- */

/* Feeds received bytes to wslay, which calls on_wslay_msg for each message. */
static void frames_feed(struct wsc *w, const char *p, size_t n)
{
	int rc;

	w->rptr = (const uint8_t *)p;
	w->rlen = n;
	w->in_recv = 1;
	rc = wslay_event_recv(w->ctx);
	w->in_recv = 0;
	w->rlen = 0; /* after a close frame wslay stops reading: drop the rest */
	if (rc != 0) {
		err_set(&w->why, ERR_IO, "websocket %s: receive failed (%d)", w->addr, rc);
		finish(w);
		return;
	}
	pump(w);
}

/*
 * Value of header `name` in a response head (NUL-terminated, CRLF lines),
 * trimmed, into out. Returns 0, or -1 when absent.
 */
static int head_value(const char *head, const char *name, char *out, size_t outsz)
{
	size_t nlen = strlen(name);
	const char *line = strstr(head, "\r\n");

	while (line && line[2] != '\0') {
		const char *p = line + 2, *end = strstr(p, "\r\n");
		line = end;
		if (end == NULL || strncasecmp(p, name, nlen) != 0 || p[nlen] != ':')
			continue;
		p += nlen + 1;
		p += strspn(p, " \t");
		while (end > p && (end[-1] == ' ' || end[-1] == '\t'))
			end--;
		snprintf(out, outsz, "%.*s", (int)(end - p), p);
		return 0;
	}
	return -1;
}

/* Checks a complete response head (RFC 6455 §4.1). Returns 0 or -1 with w->why set. */
static int check_response(struct wsc *w, const char *head)
{
	char v[256];
	int status = 0;

	if (sscanf(head, "HTTP/1.1 %d", &status) != 1 || status != 101) {
		err_set(&w->why, ERR_UNAVAILABLE, "websocket %s: handshake answered %d", w->addr,
			status);
		return -1;
	}
	if (head_value(head, "Upgrade", v, sizeof v) < 0 || strcasecmp(v, "websocket") != 0 ||
	    head_value(head, "Connection", v, sizeof v) < 0 || strcasestr(v, "upgrade") == NULL) {
		err_set(&w->why, ERR_UNAVAILABLE, "websocket %s: 101 without Upgrade", w->addr);
		return -1;
	}
	if (head_value(head, "Sec-WebSocket-Accept", v, sizeof v) < 0 || strcmp(v, w->accept) != 0) {
		err_set(&w->why, ERR_UNAVAILABLE, "websocket %s: bad Sec-WebSocket-Accept", w->addr);
		return -1;
	}
	if (head_value(head, "Sec-WebSocket-Extensions", v, sizeof v) == 0) {
		err_set(&w->why, ERR_UNAVAILABLE, "websocket %s: unrequested extension %s", w->addr,
			log_q(v));
		return -1;
	}
	return 0;
}

/* Collects the response head; once complete, opens and feeds what followed it. */
static void handshake_feed(struct wsc *w, const char *p, size_t n)
{
	const char *end;
	char *head;
	size_t hlen;

	end = NULL;
	hlen = WSC_MAX_HEAD + 1;
	if (buf_append(&w->head, p, n) == 0) {
		end = memmem(w->head.data, w->head.len, "\r\n\r\n", 4);
		hlen = end ? (size_t)(end + 4 - w->head.data) : w->head.len;
	}
	if (hlen > WSC_MAX_HEAD) {
		err_set(&w->why, ERR_TOO_LARGE, "websocket %s: handshake response over %d bytes",
			w->addr, WSC_MAX_HEAD);
		finish(w);
		return;
	}
	if (end == NULL)
		return;
	head = xstrndup(w->head.data, hlen);
	if (check_response(w, head) < 0) {
		free(head);
		finish(w);
		return;
	}
	free(head);
	uv_timer_stop(&w->timer);
	set_state(w, WSC_OPEN);
	log_debug("wsc open addr=%s", w->addr);
	if (w->cb.on_open)
		w->cb.on_open(w, w->ud);
	/* Frames may have arrived together with the 101. */
	if (w->state == WSC_OPEN)
		frames_feed(w, w->head.data + hlen, w->head.len - hlen);
	buf_cleanup(&w->head);
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
	struct wsc *w = h->data;

	*b = uv_buf_init(w->rbuf, sizeof w->rbuf);
}

static void on_read_end(struct wsc *w, ssize_t nread)
{
	if (nread == UV_EOF && w->state == WSC_OPEN && wslay_event_get_close_received(w->ctx))
		set_outcome(w); /* the peer closed the TCP right after its close frame */
	else if (nread == UV_EOF && w->state == WSC_OPEN && w->user_closed)
		; /* we asked to close; a missing close frame does not matter */
	else if (nread == UV_EOF)
		err_set(&w->why, ERR_UNAVAILABLE, "websocket %s: connection closed by peer", w->addr);
	else
		err_set(&w->why, ERR_UNAVAILABLE, "websocket %s: read: %s", w->addr,
			uv_strerror((int)nread));
	finish(w);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b)
{
	struct wsc *w = s->data;

	if (nread < 0)
		on_read_end(w, nread);
	else if (nread > 0 && w->state == WSC_HANDSHAKE)
		handshake_feed(w, b->base, (size_t)nread);
	else if (nread > 0 && w->state == WSC_OPEN)
		frames_feed(w, b->base, (size_t)nread);
}

/* ---- connecting ------------------------------------------------------- */

static void on_connect(uv_connect_t *req, int status)
{
	struct wsc *w = req->data;
	char *request = w->wdata;

	w->pending--;
	w->wdata = NULL;
	if (w->state == WSC_CLOSED) {
		free(request);
		maybe_free(w);
		return;
	}
	if (status < 0) {
		free(request);
		err_set(&w->why, ERR_UNAVAILABLE, "websocket %s: connect: %s", w->addr,
			uv_strerror(status));
		finish(w);
		return;
	}
	uv_tcp_nodelay(&w->tcp, 1);
	set_state(w, WSC_HANDSHAKE);
	uv_read_start((uv_stream_t *)&w->tcp, on_alloc, on_read);
	write_owned(w, request, strlen(request));
}

/* Resolves host (numeric or "localhost") and fills w->addr. */
static int parse_addr(struct wsc *w, const char *host, int port, struct sockaddr_storage *sa,
		      struct err *err)
{
	if (port <= 0 || port > 65535) {
		err_set(err, ERR_INVALID, "websocket: bad port %d", port);
		return -1;
	}
	if (strcmp(host, "localhost") == 0)
		host = "127.0.0.1";
	if (uv_ip4_addr(host, port, (struct sockaddr_in *)sa) == 0) {
		snprintf(w->addr, sizeof w->addr, "%s:%d", host, port);
		return 0;
	}
	if (uv_ip6_addr(host, port, (struct sockaddr_in6 *)sa) == 0) {
		snprintf(w->addr, sizeof w->addr, "[%s]:%d", host, port);
		return 0;
	}
	err_set(err, ERR_INVALID, "websocket: host %s is not a numeric address", log_q(host));
	return -1;
}

static int valid_path(const char *path)
{
	if (path == NULL || path[0] != '/' || strlen(path) > WSC_MAX_PATH)
		return 0;
	for (const unsigned char *p = (const unsigned char *)path; *p; p++)
		if (*p <= ' ' || *p == 0x7f)
			return 0;
	return 1;
}

/* A fresh key; stores the Sec-WebSocket-Accept it implies. Returns the request (caller frees). */
static char *make_request(struct wsc *w, const char *path)
{
	unsigned char nonce[16], digest[EVP_MAX_MD_SIZE];
	char key[32], concat[96];
	unsigned dlen = 0;

	if (RAND_bytes(nonce, sizeof nonce) != 1)
		util_random(nonce, sizeof nonce);
	EVP_EncodeBlock((unsigned char *)key, nonce, sizeof nonce);
	snprintf(concat, sizeof concat, "%s%s", key, WSC_GUID);
	if (EVP_Digest(concat, strlen(concat), digest, &dlen, EVP_sha1(), NULL) != 1)
		return NULL;
	EVP_EncodeBlock((unsigned char *)w->accept, digest, (int)dlen);
	return xasprintf("GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\n"
			 "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
			 "Sec-WebSocket-Version: 13\r\n\r\n",
			 path, w->addr, key);
}

static struct wsc *wsc_alloc(uv_loop_t *loop, const struct wsc_callbacks *cb, void *ud,
			     uint64_t timeout_ms)
{
	struct wsc *w = xcalloc(1, sizeof *w);

	w->loop = loop;
	if (cb)
		w->cb = *cb;
	w->ud = ud;
	w->timeout_ms = timeout_ms ? timeout_ms : WSC_TIMEOUT_MS;
	buf_init(&w->head, WSC_MAX_HEAD + sizeof w->rbuf);
	buf_init(&w->out, WSC_OUT_MAX);
	return w;
}

struct wsc *wsc_connect(uv_loop_t *loop, const char *host, int port, const char *path_and_query,
			const struct wsc_callbacks *cb, void *ud, uint64_t timeout_ms,
			struct err *err)
{
	struct sockaddr_storage sa;
	struct wsc *w;
	int rc;

	if (host == NULL || !valid_path(path_and_query)) {
		err_set(err, ERR_INVALID, "websocket: bad host or path");
		return NULL;
	}
	w = wsc_alloc(loop, cb, ud, timeout_ms);
	if (parse_addr(w, host, port, &sa, err) < 0) {
		free(w);
		return NULL;
	}
	if (wslay_event_context_client_init(&w->ctx, &wslay_callbacks, w) != 0) {
		err_set(err, ERR_INTERNAL, "websocket: wslay init failed");
		free(w);
		return NULL;
	}
	wslay_event_config_set_max_recv_msg_length(w->ctx, WSC_MAX_MESSAGE);
	w->wdata = make_request(w, path_and_query);
	uv_tcp_init(loop, &w->tcp);
	uv_timer_init(loop, &w->timer);
	w->tcp.data = w->timer.data = w->connect_req.data = w;
	w->pending = 2;
	uv_timer_start(&w->timer, on_timer, w->timeout_ms, 0);
	rc = w->wdata ? uv_tcp_connect(&w->connect_req, &w->tcp, (struct sockaddr *)&sa, on_connect)
		      : UV_ENOMEM;
	if (rc != 0) {
		/* Nothing was started: close silently; the callbacks are never called. */
		err_set(err, ERR_UNAVAILABLE, "websocket %s: connect: %s", w->addr, uv_strerror(rc));
		w->silent = 1;
		finish(w);
		return NULL;
	}
	w->pending++;
	return w;
}

int wsc_send_text(struct wsc *w, const char *msg, size_t len)
{
	struct wslay_event_msg m = {WSLAY_TEXT_FRAME, (const uint8_t *)msg, len};

	if (w == NULL || w->state != WSC_OPEN || w->user_closed ||
	    wslay_event_get_close_sent(w->ctx) || wslay_event_get_close_received(w->ctx))
		return -1;
	if (wslay_event_get_queued_msg_length(w->ctx) + len > WSC_MAX_QUEUED)
		return -1;
	if (wslay_event_queue_msg(w->ctx, &m) != 0)
		return -1;
	pump(w);
	return 0;
}

void wsc_close(struct wsc *w)
{
	if (w == NULL || w->user_closed || w->state == WSC_CLOSED)
		return;
	w->user_closed = 1;
	if (w->state < WSC_OPEN) {
		finish(w);
		return;
	}
	if (w->state != WSC_OPEN || wslay_event_get_close_received(w->ctx))
		return;
	wslay_event_queue_close(w->ctx, WSLAY_CODE_NORMAL_CLOSURE, NULL, 0);
	uv_timer_start(&w->timer, on_timer, w->timeout_ms, 0);
	pump(w);
}

int wsc_close_status(const struct wsc *w)
{
	if (!wslay_event_get_close_received(w->ctx))
		return 0;
	return wslay_event_get_status_code_received(w->ctx);
}
