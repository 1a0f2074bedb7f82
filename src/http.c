/*
 * http.c - the HTTP/1.1 server layer: listening, connections, request
 * parsing (http-parser), routing, replies, files and chunked streams.
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
 *    the current state (conn_arm_timer()).
 */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <http_parser.h>
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

#define READ_CHUNK (64 * 1024)       /* bytes per read */
#define FILE_CHUNK (64 * 1024)       /* bytes per file write */
#define IN_SOFT_CAP (256 * 1024)     /* stop reading above this many unparsed bytes */
#define WRITE_SOFT_CAP (1024 * 1024) /* hold pipelined requests above this backlog */
#define LINGER_MS 2000               /* read and discard after our FIN, at most */
#define MAX_HEADERS 256
#define EXTRA_MAX (64 * 1024)        /* bytes of http_reply_header() lines */
#define HEAD_MAX (EXTRA_MAX + 8192)
#define JSON_REPLY_MAX ((size_t)1 << 30)

enum conn_state {
	CONN_READING,  /* parsing requests */
	CONN_HANDLING, /* c->req is with its handler */
	CONN_FILE,     /* sending a file body */
	CONN_TAKEN,    /* owned by c->ops: a stream or a WebSocket */
	CONN_SHUTDOWN, /* flushing, then reading and discarding until EOF */
};

enum hdr_state { HS_NONE, HS_NAME, HS_VALUE };
enum conn_hdr { CONN_HDR_NONE, CONN_HDR_CLOSE, CONN_HDR_KEEP };

struct http_pair {
	char *name;  /* owned */
	char *value; /* owned */
};

struct http_req {
	struct http_conn *conn; /* NULL once detached (the connection died) */
	uv_loop_t *loop;        /* for streams started on a detached request */
	void *data;             /* the server's cfg->data */
	const char *method;     /* static, from http-parser */
	struct buf url;         /* the request target as received */
	char *raw_path;         /* owned; undecoded, without query */
	char *path;             /* owned; decoded, alias prefix removed */
	const char *param;      /* into path, or "" */
	struct http_pair *hdrs; /* owned, nhdrs used */
	size_t nhdrs;
	struct buf hname, hvalue; /* the header being parsed */
	enum hdr_state hstate;
	struct http_pair *query; /* owned, nquery used */
	size_t nquery;
	struct buf body;
	struct buf extra; /* "Name: value\r\n" lines for the response */
	const struct http_route *route;
	int preset;        /* nonzero: the status answered without a handler */
	size_t head_bytes; /* URL, header names and values seen */
	unsigned is_head : 1, keep_alive : 1, upgrade : 1, http10 : 1;
	char peer[48];
};

struct http_conn {
	uv_tcp_t tcp;
	uv_timer_t timer;
	uv_shutdown_t sreq;
	struct http_server *srv;
	struct http_conn *prev, *next; /* in srv->conns */
	http_parser parser;
	struct buf in;         /* received, not yet parsed (or not yet given to ops) */
	struct http_req *req;  /* owned while parsing; with the handler when HANDLING */
	enum conn_state state;
	const struct http_conn_ops *ops; /* set when CONN_TAKEN */
	void *ops_ud;
	int file_fd;           /* -1 unless CONN_FILE */
	uint64_t file_off;     /* bytes */
	uint64_t file_left;    /* bytes */
	uint64_t deadline;     /* loop ms when a taken connection closes; 0: none */
	unsigned nreq;         /* requests dispatched */
	int pending_closes;    /* handle close callbacks still to come */
	int err_status;        /* answer when the parser stops on our error */
	unsigned closing : 1, reading : 1, processing : 1, kick : 1, close_soon : 1,
		peer_eof : 1, shut_done : 1, in_message : 1, in_body : 1, keep_alive : 1,
		counted : 1, wait_drain : 1;
	char peer[48];
};

struct http_server {
	uv_loop_t *loop;
	uv_tcp_t listener;
	struct http_config cfg;    /* defaults filled in; routes borrowed */
	struct http_limits limits; /* defaults filled in */
	char *host;                /* owned; cfg.host points here */
	char *alias;               /* owned or NULL; cfg.alias_prefix */
	int port;
	struct http_conn *conns;   /* every connection not yet freed */
	size_t nconns;             /* counted (not rejected) connections */
	int closing;
	int listener_closed;
	void (*done)(void *arg);
	void *done_arg;
	char rbuf[READ_CHUNK]; /* shared: each read is consumed before the next */
	char fbuf[FILE_CHUNK]; /* file chunks; copied by http_conn_write if queued */
};

struct wreq {
	uv_write_t req;
	char data[]; /* the bytes being written */
};

static void conn_close(struct http_conn *c);
static void conn_kick(struct http_conn *c);
static void conn_arm_timer(struct http_conn *c);
static void conn_process(struct http_conn *c);
static void conn_reply_done(struct http_conn *c);
static void on_timer(uv_timer_t *t);
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

static int hexval(char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

/*
 * Percent-decodes s[0..n) ('+' as space when plus). Invalid escapes stay
 * as they are. Caller frees the result; *outlen excludes the NUL.
 */
static char *pct_decode(const char *s, size_t n, int plus, size_t *outlen)
{
	char *out = xmalloc(n + 1);
	size_t o = 0;

	for (size_t i = 0; i < n; i++) {
		if (s[i] == '%' && i + 2 < n && hexval(s[i + 1]) >= 0 &&
		    hexval(s[i + 2]) >= 0) {
			out[o++] = (char)(hexval(s[i + 1]) * 16 + hexval(s[i + 2]));
			i += 2;
		} else if (plus && s[i] == '+') {
			out[o++] = ' ';
		} else {
			out[o++] = s[i];
		}
	}
	out[o] = '\0';
	if (outlen)
		*outlen = o;
	return out;
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
		conn_close(c);
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
		conn_kick(c);
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
static const char *preset_body(const struct http_server *s, int status, char *buf,
			       size_t size, const char **ctype)
{
	const char *b = s->cfg.error_body ? s->cfg.error_body(status, ctype) : NULL;

	if (b)
		return b;
	*ctype = "text/plain; charset=utf-8";
	snprintf(buf, size, "%d: %s", status, http_status_text(status));
	return buf;
}

static void conn_send_simple(struct http_conn *c, int status)
{
	char tmp[96], fixed[64];
	const char *ctype, *body = preset_body(c->srv, status, tmp, sizeof tmp, &ctype);
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

/* ---- requests ---- */

static struct http_req *req_new(struct http_conn *c)
{
	struct http_req *r = xcalloc(1, sizeof *r);
	size_t hmax = c->srv->cfg.max_header_bytes;

	r->conn = c;
	r->loop = c->tcp.loop;
	r->data = c->srv->cfg.data;
	r->method = "GET";
	r->param = "";
	buf_init(&r->url, hmax);
	buf_init(&r->hname, hmax);
	buf_init(&r->hvalue, hmax);
	buf_init(&r->body, 0);
	buf_init(&r->extra, EXTRA_MAX);
	memcpy(r->peer, c->peer, sizeof r->peer);
	return r;
}

static void pairs_free(struct http_pair *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(p[i].name);
		free(p[i].value);
	}
	free(p);
}

static void req_free(struct http_req *r)
{
	if (r == NULL)
		return;
	buf_cleanup(&r->url);
	free(r->raw_path);
	free(r->path);
	pairs_free(r->hdrs, r->nhdrs);
	buf_cleanup(&r->hname);
	buf_cleanup(&r->hvalue);
	pairs_free(r->query, r->nquery);
	buf_cleanup(&r->body);
	buf_cleanup(&r->extra);
	free(r);
}

/* Appends a pair; takes ownership of name and value. */
static void pairs_add(struct http_pair **p, size_t *n, char *name, char *value)
{
	/* Grow in powers of two: the count is a power of two when full. */
	if ((*n & (*n - 1)) == 0)
		*p = xrealloc(*p, (*n ? *n * 2 : 4) * sizeof **p);
	(*p)[*n].name = name;
	(*p)[*n].value = value;
	(*n)++;
}

static void req_add_query(struct http_req *r, const char *q, size_t n)
{
	const char *eq = memchr(q, '=', n);
	size_t nlen = eq ? (size_t)(eq - q) : n;
	char *name = pct_decode(q, nlen, 1, NULL);
	char *value = eq ? pct_decode(eq + 1, n - nlen - 1, 1, NULL) : xstrdup("");

	pairs_add(&r->query, &r->nquery, name, value);
}

static void req_parse_query(struct http_req *r, const char *q, size_t n)
{
	while (n > 0) {
		const char *amp = memchr(q, '&', n);
		size_t len = amp ? (size_t)(amp - q) : n;

		if (len > 0)
			req_add_query(r, q, len);
		if (amp == NULL)
			break;
		n -= len + 1;
		q = amp + 1;
	}
}

/* Splits the target into raw_path, path and query. -1: not a valid target. */
static int req_parse_target(struct http_req *r, int is_connect)
{
	struct http_parser_url u;
	const char *url = r->url.data ? r->url.data : "";
	size_t dlen;

	http_parser_url_init(&u);
	if (http_parser_parse_url(url, r->url.len, is_connect, &u) != 0)
		return -1;
	if (u.field_set & (1 << UF_PATH))
		r->raw_path = xstrndup(url + u.field_data[UF_PATH].off,
				       u.field_data[UF_PATH].len);
	else
		r->raw_path = xstrdup("/");
	r->path = pct_decode(r->raw_path, strlen(r->raw_path), 0, &dlen);
	if (dlen != strlen(r->path))
		return -1; /* an encoded NUL */
	if (u.field_set & (1 << UF_QUERY))
		req_parse_query(r, url + u.field_data[UF_QUERY].off,
				u.field_data[UF_QUERY].len);
	return 0;
}

/* ---- routing ---- */

static int method_ok(const char *want, const char *method, int is_head)
{
	if (strcmp(want, "*") == 0 || strcmp(want, method) == 0)
		return 1;
	return is_head && strcmp(want, "GET") == 0;
}

/*
 * The first route whose pattern and method match path, with *param_off the
 * offset of the remainder in path; NULL when none. *hit is set when some
 * pattern matched whatever the method.
 */
static const struct http_route *route_find(const struct http_server *s,
					   const char *path, const struct http_req *r,
					   int *hit, size_t *param_off)
{
	for (size_t i = 0; i < s->cfg.nroutes; i++) {
		const struct http_route *rt = &s->cfg.routes[i];
		size_t plen = strlen(rt->pattern);

		if (rt->flags & HTTP_ROUTE_PREFIX) {
			if (strncmp(path, rt->pattern, plen) != 0)
				continue;
		} else if (strcmp(path, rt->pattern) != 0) {
			continue;
		}
		*hit = 1;
		if (method_ok(rt->method, r->method, r->is_head)) {
			*param_off = (rt->flags & HTTP_ROUTE_PREFIX) ? plen : strlen(path);
			return rt;
		}
	}
	return NULL;
}

/* Routes on the full path, then with the alias prefix removed. */
static void req_route(const struct http_server *s, struct http_req *r)
{
	const char *alias = s->alias;
	size_t alen = alias ? strlen(alias) : 0, off = 0;
	int hit = 0;

	r->route = route_find(s, r->path, r, &hit, &off);
	if (r->route == NULL && alen && strncmp(r->path, alias, alen) == 0 &&
	    r->path[alen] == '/') {
		r->route = route_find(s, r->path + alen, r, &hit, &off);
		if (r->route)
			memmove(r->path, r->path + alen, strlen(r->path + alen) + 1);
	}
	if (r->route)
		r->param = r->path + off;
	else
		r->preset = hit ? 405 : 404;
}

/* Splits "host[:port]" or "[v6][:port]" (lower-cased) into its parts. */
static void split_host(const char *in, char *host, size_t hsz, char *port,
		       size_t psz)
{
	const char *end = in[0] == '[' ? strchr(in, ']') : NULL;
	const char *colon = strchr(in, ':');

	port[0] = '\0';
	if (end) {
		snprintf(host, hsz, "%.*s", (int)(end - in - 1), in + 1);
		if (end[1] == ':')
			snprintf(port, psz, "%s", end + 2);
	} else if (colon && strchr(colon + 1, ':') == NULL) {
		snprintf(host, hsz, "%.*s", (int)(colon - in), in);
		snprintf(port, psz, "%s", colon + 1);
	} else {
		snprintf(host, hsz, "%s", in);
	}
	for (char *p = host; *p; p++)
		if (*p >= 'A' && *p <= 'Z')
			*p = (char)(*p - 'A' + 'a');
}

static int host_is_loopback(const char *h)
{
	unsigned a, b, c, d;
	char tail;

	if (strcmp(h, "localhost") == 0 || strcmp(h, "::1") == 0)
		return 1;
	return sscanf(h, "%u.%u.%u.%u%c", &a, &b, &c, &d, &tail) == 4 && a == 127 &&
	       b < 256 && c < 256 && d < 256;
}

/* The netloc of an Origin URL ("scheme://netloc/..."), or "" without one. */
static void origin_netloc(const char *origin, char *out, size_t sz)
{
	const char *p = strstr(origin, "://"), *at;
	size_t n;

	out[0] = '\0';
	if (p == NULL)
		return;
	p += 3;
	n = strcspn(p, "/?#");
	at = memchr(p, '@', n); /* userinfo is not part of the host */
	if (at) {
		n -= (size_t)(at + 1 - p);
		p = at + 1;
	}
	snprintf(out, sz, "%.*s", (int)n, p);
}

/* ComfyUI's origin_only_middleware decision: 1 when the request is refused. */
static int origin_blocked(const char *host_hdr, const char *origin_hdr)
{
	char netloc[256], hh[256], hp[16], oh[256], op[16];

	if (host_hdr == NULL || origin_hdr == NULL || host_hdr[0] == '\0')
		return 0;
	split_host(host_hdr, hh, sizeof hh, hp, sizeof hp);
	if (!host_is_loopback(hh))
		return 0;
	origin_netloc(origin_hdr, netloc, sizeof netloc);
	if (netloc[0] == '\0')
		return 0;
	split_host(netloc, oh, sizeof oh, op, sizeof op);
	if (strcmp(hh, oh) != 0)
		return 1;
	return hp[0] && op[0] && strcmp(hp, op) != 0;
}

static void req_decide(const struct http_server *s, struct http_req *r, int method)
{
	if (s->cfg.origin_guard &&
	    origin_blocked(http_req_header(r, "Host"), http_req_header(r, "Origin"))) {
		r->preset = 403;
		return;
	}
	if (s->cfg.origin_guard && method == HTTP_OPTIONS) {
		r->preset = 200;
		return;
	}
	req_route(s, r);
}

/* ---- parsing (http-parser callbacks; p->data is the connection) ---- */

static int head_count(struct http_conn *c, size_t n)
{
	struct http_req *r = c->req;

	r->head_bytes += n;
	if (r->head_bytes <= c->srv->cfg.max_header_bytes)
		return 0;
	c->err_status = 431;
	return -1;
}

static int on_message_begin(http_parser *p)
{
	struct http_conn *c = p->data;

	assert(c->req == NULL);
	c->req = req_new(c);
	c->in_message = 1;
	c->err_status = 0;
	conn_arm_timer(c);
	return 0;
}

static int on_url(http_parser *p, const char *at, size_t n)
{
	struct http_conn *c = p->data;

	if (head_count(c, n) < 0)
		return -1;
	return buf_append(&c->req->url, at, n);
}

static int req_push_header(struct http_conn *c)
{
	struct http_req *r = c->req;

	if (r->nhdrs >= MAX_HEADERS) {
		c->err_status = 431;
		return -1;
	}
	pairs_add(&r->hdrs, &r->nhdrs, buf_steal(&r->hname), buf_steal(&r->hvalue));
	r->hstate = HS_NONE;
	return 0;
}

static int on_header_field(http_parser *p, const char *at, size_t n)
{
	struct http_conn *c = p->data;
	struct http_req *r = c->req;

	if (head_count(c, n) < 0)
		return -1;
	if (r->hstate == HS_VALUE && req_push_header(c) < 0)
		return -1;
	r->hstate = HS_NAME;
	return buf_append(&r->hname, at, n);
}

static int on_header_value(http_parser *p, const char *at, size_t n)
{
	struct http_conn *c = p->data;
	struct http_req *r = c->req;

	if (head_count(c, n) < 0)
		return -1;
	r->hstate = HS_VALUE;
	return buf_append(&r->hvalue, at, n);
}

/*
 * The body limit is decided here, before any body byte is read: 413 from
 * Content-Length, else "100 Continue" when the client waits for it.
 */
static int req_check_body(struct http_conn *c)
{
	static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
	http_parser *p = &c->parser;
	struct http_req *r = c->req;
	size_t max = r->route && r->route->max_body ? r->route->max_body
						    : c->srv->cfg.max_body;
	const char *expect = http_req_header(r, "Expect");
	int has_len = (p->flags & F_CONTENTLENGTH) != 0;
	uv_buf_t b = uv_buf_init((char *)cont, sizeof cont - 1);

	buf_init(&r->body, max);
	if (has_len && p->content_length > max) {
		c->err_status = 413;
		return -1;
	}
	if (expect && strcasecmp(expect, "100-continue") == 0 && !r->http10 &&
	    ((p->flags & F_CHUNKED) || (has_len && p->content_length > 0)))
		http_conn_write(c, &b, 1);
	return 0;
}

static int on_headers_complete(http_parser *p)
{
	struct http_conn *c = p->data;
	struct http_req *r = c->req;

	if (r->hstate == HS_VALUE && req_push_header(c) < 0)
		return -1;
	r->method = http_method_str((enum http_method)p->method);
	r->is_head = p->method == HTTP_HEAD;
	r->upgrade = p->upgrade;
	r->http10 = p->http_major == 1 && p->http_minor == 0;
	if (p->http_major != 1 || req_parse_target(r, p->method == HTTP_CONNECT) < 0) {
		c->err_status = 400;
		return -1;
	}
	req_decide(c->srv, r, p->method);
	c->in_body = 1;
	conn_arm_timer(c);
	return req_check_body(c);
}

static int on_body(http_parser *p, const char *at, size_t n)
{
	struct http_conn *c = p->data;

	if (buf_append(&c->req->body, at, n) == 0)
		return 0;
	c->err_status = 413; /* a chunked body grew past the limit */
	return -1;
}

/* Pauses the parser: the request goes to its handler (invariant 1). */
static int on_message_complete(http_parser *p)
{
	struct http_conn *c = p->data;

	c->req->keep_alive = http_should_keep_alive(p) != 0;
	c->in_message = 0;
	c->in_body = 0;
	http_parser_pause(p, 1);
	return 0;
}

static const http_parser_settings parser_settings = {
	.on_message_begin = on_message_begin,
	.on_url = on_url,
	.on_header_field = on_header_field,
	.on_header_value = on_header_value,
	.on_headers_complete = on_headers_complete,
	.on_body = on_body,
	.on_message_complete = on_message_complete,
};

/* ---- connection lifecycle ---- */

static void server_maybe_done(struct http_server *s);
static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *b);

/* Starts or stops the timer for the state's timeout (invariant 5). */
static void conn_arm_timer(struct http_conn *c)
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
static void conn_kick(struct http_conn *c)
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
	conn_arm_timer(c);
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
	struct http_conn *c = h->data;

	(void)hint;
	*b = uv_buf_init(c->srv->rbuf, sizeof c->srv->rbuf);
}

/* Reads while there is room for pipelined bytes; always when taken over. */
static void conn_update_reading(struct http_conn *c)
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

static void conn_file_close(struct http_conn *c)
{
	if (c->file_fd >= 0)
		close(c->file_fd);
	c->file_fd = -1;
}

/* Closes at once: queued writes are dropped; a held request is detached. */
static void conn_close(struct http_conn *c)
{
	if (c->closing)
		return;
	c->closing = 1;
	if (c->req && c->state == CONN_HANDLING)
		c->req->conn = NULL; /* its handler frees it when it answers */
	else
		req_free(c->req);
	c->req = NULL;
	conn_file_close(c);
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
		conn_close(c);
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
	conn_file_close(c);
	c->state = CONN_SHUTDOWN;
	c->kick = 0;
	if (uv_shutdown(&c->sreq, (uv_stream_t *)&c->tcp, on_shutdown) != 0) {
		http_conn_close_soon(c);
		return;
	}
	/* Bounds the flush when the peer stops reading. */
	if (!c->close_soon)
		uv_timer_start(&c->timer, on_timer, c->srv->cfg.idle_timeout_ms, 0);
	conn_update_reading(c);
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
		conn_close(c);
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
		conn_arm_timer(c);
	conn_update_reading(c);
}

static void on_timer(uv_timer_t *t)
{
	struct http_conn *c = t->data;

	if (c->close_soon) {
		conn_close(c);
		return;
	}
	if (c->kick) {
		c->kick = 0;
		conn_run_pending(c);
		return;
	}
	if (c->state != CONN_SHUTDOWN)
		log_debug("http timeout peer=%s state=%d", c->peer, (int)c->state);
	conn_close(c);
}

static void conn_on_eof(struct http_conn *c, int err)
{
	if (c->closing)
		return;
	c->peer_eof = 1;
	conn_update_reading(c);
	if (err != UV_EOF) {
		conn_close(c);
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
	conn_close(c);
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
		conn_close(c);
		return;
	}
	if (c->state == CONN_READING) {
		conn_process(c);
		if (c->state == CONN_READING && c->in_body)
			conn_arm_timer(c); /* the body's idle timeout restarts */
	}
	conn_update_reading(c);
}

/* ---- dispatch ---- */

static void conn_fail(struct http_conn *c, enum http_errno e)
{
	int status = c->err_status ? c->err_status
				   : e == HPE_HEADER_OVERFLOW ? 431 : 400;

	log_debug("http bad request peer=%s status=%d err=%s", c->peer, status,
		  http_errno_name(e));
	req_free(c->req);
	c->req = NULL;
	c->in_message = 0;
	c->in_body = 0;
	buf_reset(&c->in);
	conn_send_simple(c, status);
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
	body = preset_body(r->conn->srv, r->preset, tmp, sizeof tmp, &ctype);
	http_reply(r, r->preset, ctype, body, strlen(body));
}

static void conn_dispatch(struct http_conn *c)
{
	struct http_req *r = c->req;

	c->state = CONN_HANDLING;
	c->nreq++;
	conn_arm_timer(c);
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
		size_t n = http_parser_execute(&c->parser, &parser_settings,
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
	conn_update_reading(c);
}

/* After an answer: shut down, or go on with the next request. */
static void conn_reply_done(struct http_conn *c)
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
	conn_arm_timer(c);
	conn_update_reading(c);
	if (!c->processing && !c->wait_drain && c->in.len > 0)
		conn_kick(c);
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
		req_free(req); /* detached: the connection died */
		return;
	}
	assert(c->req == req && c->state == CONN_HANDLING);
	reply_write(c, req, status, content_type, len, body, len);
	c->req = NULL;
	req_free(req);
	conn_reply_done(c);
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
		conn_arm_timer(c); /* the peer reads: progress */
		if (http_conn_write(c, &b, 1) != 0)
			return;
	}
	if (c->state == CONN_FILE && c->tcp.write_queue_size == 0) {
		conn_file_close(c);
		conn_reply_done(c);
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
		req_free(req);
		return 0;
	}
	reply_write(c, req, status, content_type, size, NULL, 0);
	c->req = NULL;
	if (req->is_head || size == 0 || !status_has_body(status)) {
		close(fd);
		req_free(req);
		conn_reply_done(c);
		return 0;
	}
	req_free(req);
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
		req_free(req);
		return NULL;
	}
	assert(c->req == req && c->state == CONN_HANDLING);
	buf_init(&head, HEAD_MAX);
	head_build(&head, req, status, content_type, fixed, CONN_HDR_NONE);
	b = uv_buf_init(head.data, (unsigned)head.len);
	http_conn_write(c, &b, 1);
	buf_cleanup(&head);
	c->req = NULL;
	req_free(req);
	c->state = CONN_TAKEN;
	c->ops = ops;
	c->ops_ud = ud;
	c->keep_alive = 0;
	conn_arm_timer(c);
	conn_update_reading(c);
	if (c->in.len > 0)
		conn_kick(c); /* bytes that came with the head, next iteration */
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
	/* Read only to notice the peer's EOF (STACK.md 3); bytes are dropped. */
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
		req_free(req);
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
		conn_close(c);
		return;
	}
	uv_tcp_nodelay(&c->tcp, 1);
	conn_set_peer(c);
	if (s->nconns >= s->cfg.max_conns) {
		log_warn("http connection refused peer=%s max_conns=%zu", c->peer,
			 s->cfg.max_conns);
		conn_send_simple(c, 503);
		http_conn_shutdown(c);
		return;
	}
	c->counted = 1;
	s->nconns++;
	conn_arm_timer(c);
	conn_update_reading(c);
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
		conn_close(c);
	}
}

/* ---- request accessors ---- */

const char *http_req_method(const struct http_req *req)
{
	return req->method;
}

const char *http_req_path(const struct http_req *req)
{
	return req->path ? req->path : "";
}

const char *http_req_raw_path(const struct http_req *req)
{
	return req->raw_path ? req->raw_path : "";
}

const char *http_req_param(const struct http_req *req)
{
	return req->param;
}

const char *http_req_query(const struct http_req *req, const char *name)
{
	for (size_t i = 0; i < req->nquery; i++)
		if (strcmp(req->query[i].name, name) == 0)
			return req->query[i].value;
	return NULL;
}

const char *http_req_header(const struct http_req *req, const char *name)
{
	for (size_t i = 0; i < req->nhdrs; i++)
		if (strcasecmp(req->hdrs[i].name, name) == 0)
			return req->hdrs[i].value;
	return NULL;
}

const char *http_req_body(const struct http_req *req, size_t *len)
{
	if (len)
		*len = req->body.len;
	return req->body.data ? req->body.data : "";
}

void *http_req_data(const struct http_req *req)
{
	return req->data;
}

const char *http_req_peer(const struct http_req *req)
{
	return req->peer;
}
