/*
 * ws.c - server-side WebSocket (RFC 6455) on an HTTP connection, framed by
 * wslay.
 *
 * After http_ws_accept() the connection belongs to a ws_conn (see
 * http_internal.h). Bytes read go to wslay_event_recv(); the frames wslay
 * produces are gathered in ws->out by ws_send_cb and flushed with one write
 * (docs/stack.md §4). wslay answers pings and close frames itself.
 *
 * Invariants:
 * 1. Flushes never run inside wslay_event_recv() (ws->in_recv): messages
 *    queued by on_text/on_binary go out when it returns.
 * 2. When wslay wants neither to read nor to write, the close handshake is
 *    over and the connection shuts down gracefully; on_close follows when
 *    the last byte is flushed, or at once when the connection closes.
 * 3. on_close runs exactly once; the ws_conn is freed right after it, or,
 *    if it ran inside wslay_event_recv(), when that returns.
 * 4. Messages sent from a callback are written together at the end of the
 *    loop turn (a check and a prepare handle flush every socket with
 *    something queued): a model server's dozen frames about one prompt go
 *    out in one write, not twelve. A socket is in the pending list at most
 *    once, and leaves it before it is freed.
 */
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <wslay/wslay.h>

#include "buf.h"
#include "http.h"
#include "http_internal.h"
#include "log.h"
#include "util.h"
#include "ws.h"

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define WS_CLOSE_TIMEOUT_MS 5000 /* wait for the peer's close frame */
#define WS_OUT_KEEP (64 * 1024)  /* keep the gather buffer up to this size */
#define WS_BATCH_MAX (16 * 1024) /* bytes of messages held for the end-of-turn write */
#define WS_OUT_MAX ((size_t)1 << 30)

struct ws_conn {
	struct http_conn *conn;      /* borrowed; NULL once the connection let go */
	wslay_event_context_ptr ctx; /* owned */
	const struct ws_callbacks *cb; /* borrowed */
	void *ud;
	struct buf out;        /* frame bytes gathered for one write */
	const char *in;        /* bytes being fed to wslay; borrowed for the call */
	size_t in_len;
	size_t max_queued;     /* bytes */
	unsigned in_recv : 1;  /* inside wslay_event_recv() */
	unsigned closing : 1;  /* ws_close() was called */
	unsigned dead : 1;     /* on_close ran */
	unsigned pending : 1;  /* in the list of sockets to flush (invariant 4) */
	uv_loop_t *loop;
	struct ws_conn *pnext; /* in that list */
};

/* The end-of-turn flush (invariant 4), on the loop of the sockets alive. */
static struct {
	uv_loop_t *loop;         /* NULL when no socket is alive */
	uv_check_t check;
	uv_prepare_t prepare;
	size_t nws;              /* sockets alive on loop */
	struct ws_conn *pending; /* sockets with messages to write */
} wf;

static ssize_t ws_recv_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len,
			  int flags, void *ud)
{
	struct ws_conn *ws = ud;
	size_t n = ws->in_len < len ? ws->in_len : len;

	(void)flags;
	if (n == 0) {
		wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
		return -1;
	}
	memcpy(buf, ws->in, n);
	ws->in += n;
	ws->in_len -= n;
	return (ssize_t)n;
}

static ssize_t ws_send_cb(wslay_event_context_ptr ctx, const uint8_t *data,
			  size_t len, int flags, void *ud)
{
	struct ws_conn *ws = ud;

	(void)flags;
	if (buf_append(&ws->out, data, len) < 0) {
		wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
		return -1;
	}
	return (ssize_t)len;
}

static void ws_on_msg(wslay_event_context_ptr ctx,
		      const struct wslay_event_on_msg_recv_arg *a, void *ud)
{
	struct ws_conn *ws = ud;
	char *text;

	(void)ctx;
	if (ws->dead)
		return;
	if (a->opcode == WSLAY_TEXT_FRAME) {
		/* Copied to add the NUL the callback promises. */
		text = xmalloc(a->msg_length + 1);
		if (a->msg_length)
			memcpy(text, a->msg, a->msg_length);
		text[a->msg_length] = '\0';
		ws->cb->on_text(ws, text, a->msg_length, ws->ud);
		free(text);
	} else if (a->opcode == WSLAY_BINARY_FRAME && ws->cb->on_binary) {
		ws->cb->on_binary(ws, a->msg_length ? (const void *)a->msg : "",
				  a->msg_length, ws->ud);
	}
}

static const struct wslay_event_callbacks ws_wslay_callbacks = {
	.recv_callback = ws_recv_cb,
	.send_callback = ws_send_cb,
	.on_msg_recv_callback = ws_on_msg,
};

static void unpend(struct ws_conn *ws)
{
	/*
	 * Stop at ws: once it is unlinked *pp may be NULL, and stepping on to
	 * &(*pp)->pnext would be undefined (UBSan, found by fuzz/http_request).
	 */
	for (struct ws_conn **pp = &wf.pending; ws->pending && *pp; pp = &(*pp)->pnext) {
		if (*pp == ws) {
			*pp = ws->pnext;
			ws->pending = 0;
			break;
		}
	}
}

static void ws_free(struct ws_conn *ws)
{
	unpend(ws);
	if (ws->loop && ws->loop == wf.loop && --wf.nws == 0) {
		uv_close((uv_handle_t *)&wf.check, NULL);
		uv_close((uv_handle_t *)&wf.prepare, NULL);
		wf.loop = NULL;
	}
	wslay_event_context_free(ws->ctx);
	buf_cleanup(&ws->out);
	free(ws);
}

/* Sends what wslay has queued as one write; shuts down after the handshake. */
static void ws_flush(struct ws_conn *ws)
{
	uv_buf_t b;

	if (ws->in_recv || ws->dead || ws->conn == NULL)
		return;
	if (wslay_event_send(ws->ctx) != 0) {
		http_conn_close_soon(ws->conn);
		return;
	}
	if (ws->out.len) {
		b = uv_buf_init(ws->out.data, (unsigned)ws->out.len);
		http_conn_write(ws->conn, &b, 1);
		if (ws->out.cap > WS_OUT_KEEP)
			buf_cleanup(&ws->out);
		else
			buf_reset(&ws->out);
	}
	if (!wslay_event_want_read(ws->ctx) && !wslay_event_want_write(ws->ctx))
		http_conn_shutdown(ws->conn);
}

static void ws_on_read(void *ud, const char *data, size_t len)
{
	struct ws_conn *ws = ud;
	int r;

	ws->in = data;
	ws->in_len = len;
	ws->in_recv = 1;
	r = wslay_event_recv(ws->ctx);
	ws->in_recv = 0;
	ws->in = NULL;
	ws->in_len = 0;
	if (ws->dead) {
		ws_free(ws); /* on_close ran inside a callback (invariant 3) */
		return;
	}
	if (r != 0) {
		log_debug("ws recv failed err=%d", r);
		http_conn_close_soon(ws->conn);
		return;
	}
	ws_flush(ws);
}

static void flush_pending(void)
{
	while (wf.pending) {
		struct ws_conn *ws = wf.pending;

		wf.pending = ws->pnext;
		ws->pending = 0;
		ws_flush(ws);
	}
}

static void on_check(uv_check_t *h)
{
	flush_pending();
}

static void on_prepare(uv_prepare_t *h)
{
	flush_pending();
}

/* Counts a new socket on loop; the flush handles start with the first. */
static void ws_attach(struct ws_conn *ws, uv_loop_t *loop)
{
	if (wf.loop == NULL) {
		wf.loop = loop;
		uv_check_init(loop, &wf.check);
		uv_prepare_init(loop, &wf.prepare);
		uv_check_start(&wf.check, on_check);
		uv_prepare_start(&wf.prepare, on_prepare);
		/* The sockets keep the loop alive, never these. */
		uv_unref((uv_handle_t *)&wf.check);
		uv_unref((uv_handle_t *)&wf.prepare);
	}
	if (wf.loop == loop) {
		ws->loop = loop;
		wf.nws++;
	}
}

/* Writes ws's messages at the end of the turn (at once on another loop). */
static void flush_later(struct ws_conn *ws)
{
	/* A burst is written as it passes WS_BATCH_MAX, so that what waits stays small. */
	if (ws->loop == NULL || ws->loop != wf.loop ||
	    wslay_event_get_queued_msg_length(ws->ctx) >= WS_BATCH_MAX) {
		ws_flush(ws);
		return;
	}
	if (ws->pending)
		return;
	ws->pending = 1;
	ws->pnext = wf.pending;
	wf.pending = ws;
}

static void ws_on_conn_close(void *ud)
{
	struct ws_conn *ws = ud;

	ws->conn = NULL;
	ws->dead = 1;
	ws->cb->on_close(ws, ws->ud);
	if (!ws->in_recv)
		ws_free(ws);
}

static const struct http_conn_ops ws_ops = {ws_on_read, ws_on_conn_close};

/* 1 when the comma-separated header value v holds tok (case-insensitive). */
static int has_token(const char *v, const char *tok)
{
	size_t tlen = strlen(tok);

	while (v && *v) {
		size_t n;

		v += strspn(v, " \t,");
		n = strcspn(v, ",");
		while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t'))
			n--;
		if (n == tlen && strncasecmp(v, tok, n) == 0)
			return 1;
		v += strcspn(v, ",");
	}
	return 0;
}

/* Why req is not a valid upgrade, or NULL. */
static const char *ws_check(const struct http_req *req)
{
	const char *key = http_req_header(req, "Sec-WebSocket-Key");
	const char *version = http_req_header(req, "Sec-WebSocket-Version");

	if (strcmp(http_req_method(req), "GET") != 0)
		return "WebSocket upgrade needs GET";
	if (!has_token(http_req_header(req, "Upgrade"), "websocket"))
		return "No WebSocket UPGRADE hdr";
	if (!has_token(http_req_header(req, "Connection"), "upgrade"))
		return "No CONNECTION upgrade hdr";
	if (version == NULL || strcmp(version, "13") != 0)
		return "Unsupported Sec-WebSocket-Version";
	/* 16 random bytes in base64: 22 characters and "==". */
	if (key == NULL || strlen(key) != 24 || strcmp(key + 22, "==") != 0)
		return "Handshake error: bad Sec-WebSocket-Key";
	return NULL;
}

/* base64(SHA1(key + GUID)) into out[29]. */
static void ws_accept_key(const char *key, char out[29])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	char cat[64];
	int n = snprintf(cat, sizeof cat, "%s%s", key, WS_GUID);

	EVP_Digest(cat, (size_t)n, md, &mdlen, EVP_sha1(), NULL);
	EVP_EncodeBlock((unsigned char *)out, md, (int)mdlen);
}

static struct ws_conn *ws_new(const struct ws_callbacks *cb, void *ud)
{
	struct ws_conn *ws = xcalloc(1, sizeof *ws);

	ws->cb = cb;
	ws->ud = ud;
	buf_init(&ws->out, WS_OUT_MAX);
	if (wslay_event_context_server_init(&ws->ctx, &ws_wslay_callbacks, ws) != 0) {
		free(ws);
		return NULL;
	}
	return ws;
}

struct ws_conn *http_ws_accept(struct http_req *req, const struct ws_callbacks *cb,
			       void *ud)
{
	const char *why = ws_check(req);
	char accept[29], fixed[160];
	struct ws_conn *ws;
	const struct http_limits *lim;

	if (why) {
		log_debug("ws upgrade refused path=%s why=%s",
			  log_q(http_req_raw_path(req)), why);
		http_reply(req, 400, "text/plain; charset=utf-8", why, strlen(why));
		return NULL;
	}
	ws = ws_new(cb, ud);
	if (ws == NULL) {
		http_reply(req, 500, "text/plain; charset=utf-8", "", 0);
		return NULL;
	}
	ws_accept_key(http_req_header(req, "Sec-WebSocket-Key"), accept);
	snprintf(fixed, sizeof fixed,
		 "Upgrade: websocket\r\nConnection: Upgrade\r\n"
		 "Sec-WebSocket-Accept: %s\r\n", accept);
	ws->conn = http_req_takeover(req, 101, NULL, fixed, &ws_ops, ws);
	if (ws->conn == NULL) {
		ws_free(ws); /* the peer left before the upgrade */
		return NULL;
	}
	ws_attach(ws, ws->conn->tcp.loop);
	lim = http_conn_limits(ws->conn);
	ws->max_queued = lim->ws_max_queued;
	wslay_event_config_set_max_recv_msg_length(ws->ctx, lim->ws_max_message);
	return ws;
}

size_t ws_queued(const struct ws_conn *ws)
{
	if (ws->dead)
		return 0;
	return wslay_event_get_queued_msg_length(ws->ctx) + ws->out.len +
	       (ws->conn ? http_conn_queued(ws->conn) : 0);
}

static int ws_send(struct ws_conn *ws, uint8_t opcode, const void *msg, size_t len)
{
	struct wslay_event_msg m = {opcode, msg, len};
	size_t q;

	if (ws->dead || ws->closing || ws->conn == NULL)
		return -1;
	q = ws_queued(ws);
	if (q > 0 && q + len > ws->max_queued)
		return -1;
	if (wslay_event_queue_msg(ws->ctx, &m) != 0)
		return -1; /* a close frame is queued or was sent */
	flush_later(ws);
	return 0;
}

int ws_send_text(struct ws_conn *ws, const char *msg, size_t len)
{
	return ws_send(ws, WSLAY_TEXT_FRAME, msg, len);
}

int ws_send_binary(struct ws_conn *ws, const void *msg, size_t len)
{
	return ws_send(ws, WSLAY_BINARY_FRAME, msg, len);
}

void ws_close(struct ws_conn *ws, uint16_t code)
{
	if (ws->dead || ws->closing || ws->conn == NULL)
		return;
	ws->closing = 1;
	wslay_event_queue_close(ws->ctx, code, NULL, 0);
	http_conn_set_deadline(ws->conn, WS_CLOSE_TIMEOUT_MS);
	ws_flush(ws);
}

void *ws_data(const struct ws_conn *ws)
{
	return ws->ud;
}

void ws_set_data(struct ws_conn *ws, void *ud)
{
	ws->ud = ud;
}
