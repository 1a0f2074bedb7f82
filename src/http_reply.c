/*
 * http_reply.c - the answers: status texts and response heads, writes to a
 * connection (http_conn_write(), queued when the socket is full), the
 * replies of http.h (a body, JSON, a file sent in chunks as the peer
 * reads), and connections taken over after the head: chunked streams here,
 * WebSockets in ws.c (http_req_takeover()).
 *
 * An answer frees its request and hands the connection back to http.c
 * (http__conn_reply_done()), which shuts it down or reads the next request.
 * http_conn_write() never closes synchronously (http.c, invariant 4).
 */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "http.h"
#include "http_internal.h"
#include "json.h"
#include "log.h"
#include "util.h"

#define HEAD_MAX (EXTRA_MAX + 8192)
#define JSON_REPLY_MAX ((size_t)1 << 30)

struct wreq {
	uv_write_t req;
	char data[]; /* the bytes being written */
};

static void file_pump(struct http_conn *c);

/* ---- small helpers ---- */

static const struct {
	int code;
	const char *text;
} status_texts[] = {
	{100, "Continue"}, {101, "Switching Protocols"}, {200, "OK"},
	{201, "Created"}, {202, "Accepted"}, {204, "No Content"},
	{206, "Partial Content"}, {301, "Moved Permanently"}, {302, "Found"},
	{303, "See Other"}, {304, "Not Modified"}, {307, "Temporary Redirect"},
	{308, "Permanent Redirect"}, {400, "Bad Request"}, {401, "Unauthorized"},
	{403, "Forbidden"}, {404, "Not Found"}, {405, "Method Not Allowed"},
	{406, "Not Acceptable"}, {408, "Request Timeout"}, {409, "Conflict"},
	{410, "Gone"}, {411, "Length Required"},
	{413, "Request Entity Too Large"}, {414, "Request-URI Too Long"},
	{415, "Unsupported Media Type"}, {416, "Requested Range Not Satisfiable"},
	{417, "Expectation Failed"}, {422, "Unprocessable Entity"},
	{426, "Upgrade Required"}, {429, "Too Many Requests"},
	{431, "Request Header Fields Too Large"}, {500, "Internal Server Error"},
	{501, "Not Implemented"}, {502, "Bad Gateway"},
	{503, "Service Unavailable"}, {504, "Gateway Timeout"},
};

const char *http_status_text(int status)
{
	for (size_t i = 0; i < sizeof status_texts / sizeof status_texts[0]; i++)
		if (status_texts[i].code == status)
			return status_texts[i].text;
	return "Unknown";
}

/* IMF-fixdate of now; cached per second and per thread. */
static const char *date_now(void)
{
	static _Thread_local char text[40];
	static _Thread_local time_t last;
	time_t now = time(NULL);
	struct tm tm;

	if (now != last || text[0] == '\0') {
		gmtime_r(&now, &tm);
		strftime(text, sizeof text, "%a, %d %b %Y %H:%M:%S GMT", &tm);
		last = now;
	}
	return text;
}


/* ---- responses: heads and writes ---- */

static void head_build(struct buf *b, const struct http_req *r, int status,
		       const char *ctype, const char *fixed, enum conn_hdr ch)
{
	buf_printf(b, "HTTP/1.1 %d %s\r\n", status, http_status_text(status));
	if (ctype)
		buf_printf(b, "Content-Type: %s\r\n", ctype);
	if (fixed)
		buf_puts(b, fixed);
	buf_printf(b, "Date: %s\r\nServer: fnrun\r\n", date_now());
	if (r && r->extra.len)
		buf_append(b, r->extra.data, r->extra.len);
	if (ch == CONN_HDR_CLOSE)
		buf_puts(b, "Connection: close\r\n");
	else if (ch == CONN_HDR_KEEP)
		buf_puts(b, "Connection: keep-alive\r\n");
	buf_puts(b, "\r\n");
}

static void on_write(uv_write_t *w, int status)
{
	struct http_conn *c = w->handle->data;

	free(w);
	if (status < 0) {
		/* UV_ECANCELED when we closed it ourselves. */
		http__conn_close(c);
		return;
	}
	if (c->closing)
		return;
	if (c->state == CONN_FILE && c->tcp.write_queue_size == 0) {
		file_pump(c);
		return;
	}
	if (c->wait_drain && c->tcp.write_queue_size < WRITE_SOFT_CAP) {
		c->wait_drain = 0;
		http__conn_kick(c);
	}
}

/* Copies what uv_try_write left (bufs minus the first `done` bytes). */
static int conn_queue_rest(struct http_conn *c, const uv_buf_t *bufs,
			   unsigned n, size_t done, size_t total)
{
	struct wreq *w = xmalloc(sizeof *w + (total - done));
	size_t off = 0;
	uv_buf_t b;

	for (unsigned i = 0; i < n; i++) {
		size_t len = bufs[i].len, skip = done < len ? done : len;

		memcpy(w->data + off, bufs[i].base + skip, len - skip);
		off += len - skip;
		done -= skip;
	}
	b = uv_buf_init(w->data, (unsigned)off);
	if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, on_write) != 0) {
		free(w);
		http_conn_close_soon(c);
		return -1;
	}
	return 1;
}

int http_conn_write(struct http_conn *c, const uv_buf_t *bufs, unsigned n)
{
	size_t total = 0;
	int r;

	if (c->closing || c->close_soon || c->state == CONN_SHUTDOWN)
		return -1;
	for (unsigned i = 0; i < n; i++)
		total += bufs[i].len;
	if (total == 0)
		return 0;
	r = uv_try_write((uv_stream_t *)&c->tcp, bufs, n);
	if (r == UV_EAGAIN || r == UV_ENOSYS)
		r = 0;
	if (r < 0) {
		log_debug("http write failed peer=%s err=%s", c->peer, uv_strerror(r));
		http_conn_close_soon(c);
		return -1;
	}
	if ((size_t)r == total)
		return 0;
	return conn_queue_rest(c, bufs, n, (size_t)r, total);
}

size_t http_conn_queued(const struct http_conn *c)
{
	return c->tcp.write_queue_size;
}

const struct http_limits *http_conn_limits(const struct http_conn *c)
{
	return &c->srv->limits;
}

/* Writes a whole response with a text body and no request behind it. */
/*
 * The body of an answer the layer makes itself (404, 405, 413, 431, ...):
 * the server's error_body hook when set, else aiohttp's "404: Not Found".
 */
const char *http__preset_body(const struct http_server *s, int status, char *buf,
			      size_t size, const char **ctype)
{
	const char *b = s->cfg.error_body ? s->cfg.error_body(status, ctype) : NULL;

	if (b)
		return b;
	*ctype = "text/plain; charset=utf-8";
	snprintf(buf, size, "%d: %s", status, http_status_text(status));
	return buf;
}

void http__conn_send_simple(struct http_conn *c, int status)
{
	char tmp[96], fixed[64];
	const char *ctype, *body = http__preset_body(c->srv, status, tmp, sizeof tmp, &ctype);
	struct buf head;
	uv_buf_t b[2];

	snprintf(fixed, sizeof fixed, "Content-Length: %zu\r\n", strlen(body));
	buf_init(&head, HEAD_MAX);
	head_build(&head, NULL, status, ctype, fixed, CONN_HDR_CLOSE);
	b[0] = uv_buf_init(head.data, (unsigned)head.len);
	b[1] = uv_buf_init((char *)body, (unsigned)strlen(body));
	http_conn_write(c, b, 2);
	buf_cleanup(&head);
}


/* ---- replies ---- */

static int status_has_body(int status)
{
	return status >= 200 && status != 204 && status != 304;
}

/* Decides keep-alive for the answer to r; returns the Connection header. */
static enum conn_hdr conn_decide_keep(struct http_conn *c, const struct http_req *r)
{
	c->keep_alive = r->keep_alive && !r->upgrade && !c->srv->closing &&
			!c->peer_eof;
	if (!c->keep_alive)
		return CONN_HDR_CLOSE;
	return r->http10 ? CONN_HDR_KEEP : CONN_HDR_NONE;
}

/* Writes the head (Content-Length clen) and, unless HEAD, body[0..len). */
static void reply_write(struct http_conn *c, const struct http_req *r, int status,
			const char *ctype, uint64_t clen, const void *body, size_t len)
{
	char fixed[64] = "";
	enum conn_hdr ch = conn_decide_keep(c, r);
	struct buf head;
	uv_buf_t b[2];
	int with_body = status_has_body(status) && !r->is_head && len > 0;

	if (status_has_body(status))
		snprintf(fixed, sizeof fixed, "Content-Length: %llu\r\n",
			 (unsigned long long)clen);
	buf_init(&head, HEAD_MAX);
	head_build(&head, r, status, ctype, fixed, ch);
	b[0] = uv_buf_init(head.data, (unsigned)head.len);
	b[1] = uv_buf_init((char *)body, (unsigned)len);
	http_conn_write(c, b, with_body ? 2 : 1);
	buf_cleanup(&head);
}

void http_reply(struct http_req *req, int status, const char *content_type,
		const void *body, size_t len)
{
	struct http_conn *c = req->conn;

	if (c == NULL) {
		http__req_free(req); /* detached: the connection died */
		return;
	}
	assert(c->req == req && c->state == CONN_HANDLING);
	reply_write(c, req, status, content_type, len, body, len);
	c->req = NULL;
	http__req_free(req);
	http__conn_reply_done(c);
}

void http_reply_json(struct http_req *req, int status, const struct json_object *o)
{
	static const char oops[] = "500: Internal Server Error";
	struct buf b;

	buf_init(&b, JSON_REPLY_MAX);
	if (json_dump(&b, o) < 0) {
		log_error("http json reply over %zu bytes path=%s", JSON_REPLY_MAX,
			  log_q(req->raw_path));
		http_reply(req, 500, "text/plain; charset=utf-8", oops, sizeof oops - 1);
	} else {
		http_reply(req, status, "application/json; charset=utf-8",
			   b.data ? b.data : "", b.len);
	}
	buf_cleanup(&b);
}

void http_reply_header(struct http_req *req, const char *name, const char *value)
{
	if (strpbrk(name, "\r\n:") || strpbrk(value, "\r\n")) {
		log_warn("http header dropped: bad characters name=%s", log_q(name));
		return;
	}
	if (buf_printf(&req->extra, "%s: %s\r\n", name, value) < 0)
		log_warn("http header dropped: over %d bytes name=%s", EXTRA_MAX,
			 log_q(name));
}

/* ---- files ---- */

/* Opens a regular file. Returns the fd and its size, or -1 with err set. */
static int file_open(const char *path, uint64_t *size, struct err *err)
{
	struct stat st;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0) {
		err_set(err, errno == ENOENT || errno == ENOTDIR ? ERR_NOT_FOUND : ERR_IO,
			"open %s: %s", path, strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) < 0) {
		err_set(err, ERR_IO, "stat %s: %s", path, strerror(errno));
		close(fd);
		return -1;
	}
	if (!S_ISREG(st.st_mode)) {
		err_set(err, ERR_NOT_FOUND, "%s: not a regular file", path);
		close(fd);
		return -1;
	}
	*size = (uint64_t)st.st_size;
	return fd;
}

/* Writes file chunks until one is queued; on_write calls again when drained. */
static void file_pump(struct http_conn *c)
{
	while (c->state == CONN_FILE && c->file_left > 0) {
		size_t want = c->file_left < FILE_CHUNK ? (size_t)c->file_left : FILE_CHUNK;
		ssize_t n = pread(c->file_fd, c->srv->fbuf, want, (off_t)c->file_off);
		uv_buf_t b;

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			/* Content-Length is promised: only closing can end it. */
			log_warn("http file read failed peer=%s err=%s", c->peer,
				 n < 0 ? strerror(errno) : "file shrank");
			http_conn_close_soon(c);
			return;
		}
		c->file_off += (uint64_t)n;
		c->file_left -= (uint64_t)n;
		b = uv_buf_init(c->srv->fbuf, (unsigned)n);
		http__conn_arm_timer(c); /* the peer reads: progress */
		if (http_conn_write(c, &b, 1) != 0)
			return;
	}
	if (c->state == CONN_FILE && c->tcp.write_queue_size == 0) {
		http__conn_file_close(c);
		http__conn_reply_done(c);
	}
}

int http_reply_file(struct http_req *req, int status, const char *path,
		    const char *content_type, struct err *err)
{
	struct http_conn *c = req->conn;
	uint64_t size;
	int fd = file_open(path, &size, err);

	if (fd < 0)
		return -1;
	if (c == NULL) {
		close(fd);
		http__req_free(req);
		return 0;
	}
	reply_write(c, req, status, content_type, size, NULL, 0);
	c->req = NULL;
	if (req->is_head || size == 0 || !status_has_body(status)) {
		close(fd);
		http__req_free(req);
		http__conn_reply_done(c);
		return 0;
	}
	http__req_free(req);
	c->state = CONN_FILE;
	c->file_fd = fd;
	c->file_off = 0;
	c->file_left = size;
	file_pump(c);
	return 0;
}

/* ---- taking a connection over: streams and WebSockets ---- */

struct http_conn *http_req_takeover(struct http_req *req, int status,
				    const char *content_type, const char *fixed,
				    const struct http_conn_ops *ops, void *ud)
{
	struct http_conn *c = req->conn;
	struct buf head;
	uv_buf_t b;

	if (c == NULL) {
		http__req_free(req);
		return NULL;
	}
	assert(c->req == req && c->state == CONN_HANDLING);
	buf_init(&head, HEAD_MAX);
	head_build(&head, req, status, content_type, fixed, CONN_HDR_NONE);
	b = uv_buf_init(head.data, (unsigned)head.len);
	http_conn_write(c, &b, 1);
	buf_cleanup(&head);
	c->req = NULL;
	http__req_free(req);
	c->state = CONN_TAKEN;
	c->ops = ops;
	c->ops_ud = ud;
	c->keep_alive = 0;
	http__conn_arm_timer(c);
	http__conn_update_reading(c);
	if (c->in.len > 0)
		http__conn_kick(c); /* bytes that came with the head, next iteration */
	return c;
}

struct http_stream {
	struct http_conn *conn; /* borrowed; NULL once closed or when started dead */
	uv_timer_t dead;        /* started dead: on_close from the next iteration */
	void (*on_close)(struct http_stream *s, void *ud);
	void *ud;
	size_t max_queued; /* bytes */
	unsigned head : 1, raw : 1, ended : 1, closed : 1;
};

static void stream_on_read(void *ud, const char *p, size_t n)
{
	/* Read only to notice the peer's EOF (docs/stack.md §3); bytes are dropped. */
	(void)ud;
	(void)p;
	(void)n;
}

static void stream_on_close(void *ud)
{
	struct http_stream *s = ud;

	s->conn = NULL;
	s->closed = 1;
	s->on_close(s, s->ud);
	free(s);
}

static const struct http_conn_ops stream_ops = {stream_on_read, stream_on_close};

static void stream_dead_closed(uv_handle_t *h)
{
	free(h->data);
}

static void stream_on_dead(uv_timer_t *t)
{
	struct http_stream *s = t->data;

	s->closed = 1;
	s->on_close(s, s->ud);
	uv_close((uv_handle_t *)&s->dead, stream_dead_closed);
}

struct http_stream *http_stream_start(struct http_req *req, int status,
				      const char *content_type,
				      void (*on_close)(struct http_stream *s, void *ud),
				      void *ud)
{
	struct http_stream *s = xcalloc(1, sizeof *s);

	s->on_close = on_close;
	s->ud = ud;
	s->head = req->is_head;
	s->raw = req->http10; /* HTTP/1.0 has no chunks: the body ends at close */
	if (req->conn == NULL) {
		uv_timer_init(req->loop, &s->dead);
		s->dead.data = s;
		uv_timer_start(&s->dead, stream_on_dead, 0, 0);
		http__req_free(req);
		return s;
	}
	s->max_queued = req->conn->srv->limits.stream_max_queued;
	s->conn = http_req_takeover(req, status, content_type,
				    s->raw ? NULL : "Transfer-Encoding: chunked\r\n",
				    &stream_ops, s);
	return s;
}

int http_stream_write(struct http_stream *s, const void *p, size_t n)
{
	char size[24];
	uv_buf_t b[3];
	size_t q;

	if (s->conn == NULL || s->ended || s->closed)
		return -1;
	if (n == 0 || s->head)
		return 0; /* a zero-length chunk would end the body */
	q = http_conn_queued(s->conn);
	if (q > 0 && q + n > s->max_queued)
		return -1;
	if (s->raw) {
		b[0] = uv_buf_init((char *)p, (unsigned)n);
		return http_conn_write(s->conn, b, 1) < 0 ? -1 : 0;
	}
	snprintf(size, sizeof size, "%zx\r\n", n);
	b[0] = uv_buf_init(size, (unsigned)strlen(size));
	b[1] = uv_buf_init((char *)p, (unsigned)n);
	b[2] = uv_buf_init("\r\n", 2);
	return http_conn_write(s->conn, b, 3) < 0 ? -1 : 0;
}

size_t http_stream_queued(const struct http_stream *s)
{
	return s->conn ? http_conn_queued(s->conn) : 0;
}

void *http_stream_data(const struct http_stream *s)
{
	return s->ud;
}

void http_stream_end(struct http_stream *s)
{
	uv_buf_t b = uv_buf_init("0\r\n\r\n", 5);

	if (s->ended || s->closed)
		return;
	s->ended = 1;
	if (s->conn == NULL)
		return; /* started dead: on_close is already on its way */
	if (!s->head && !s->raw)
		http_conn_write(s->conn, &b, 1);
	http_conn_shutdown(s->conn);
}

static const struct {
	const char *ext;
	const char *type;
} content_types[] = {
	{".html", "text/html; charset=utf-8"}, {".js", "text/javascript; charset=utf-8"},
	{".mjs", "text/javascript; charset=utf-8"}, {".css", "text/css; charset=utf-8"},
	{".json", "application/json"}, {".txt", "text/plain; charset=utf-8"},
	{".png", "image/png"}, {".jpg", "image/jpeg"}, {".jpeg", "image/jpeg"},
	{".webp", "image/webp"}, {".gif", "image/gif"}, {".svg", "image/svg+xml"},
	{".ico", "image/x-icon"}, {".wav", "audio/wav"}, {".mp3", "audio/mpeg"},
	{".flac", "audio/flac"}, {".ogg", "audio/ogg"}, {".mp4", "video/mp4"},
	{".webm", "video/webm"},
};

const char *http_content_type(const char *name)
{
	const char *dot = strrchr(name, '.');

	if (dot == NULL || strchr(dot, '/') != NULL)
		return "application/octet-stream";
	for (size_t i = 0; i < sizeof content_types / sizeof content_types[0]; i++)
		if (strcasecmp(dot, content_types[i].ext) == 0)
			return content_types[i].type;
	return "application/octet-stream";
}
