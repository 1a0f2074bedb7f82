/*
 * http_request.c - requests as they come off a connection: the struct
 * http_req, the http-parser callbacks that fill it (head limits, headers,
 * the body limit and "100 Continue"), the target split into path and
 * query, routing (alias prefix, 404 and 405) with ComfyUI's origin guard,
 * and the request accessors of http.h.
 *
 * The callbacks get the connection as p->data; on_message_complete pauses
 * the parser until the request is answered (http.c, invariant 1). A limit
 * broken while parsing sets c->err_status and stops the parser; http.c
 * answers with that status.
 */
#include <assert.h>
#include <http_parser.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "buf.h"
#include "http.h"
#include "http_internal.h"
#include "util.h"

#define MAX_HEADERS 256

/* ---- small helpers ---- */

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

void http__req_free(struct http_req *r)
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

/* The Host header's name without its port; 1 when cfg.host_ok accepts it (or none is sent). */
static int host_allowed(const struct http_server *s, const char *host)
{
	const char *end;

	if (s->cfg.host_ok == NULL || host == NULL)
		return 1;
	if (host[0] == '[') { /* an IPv6 literal, port after "]" */
		end = strchr(host, ']');
		return end ? s->cfg.host_ok(host, (size_t)(end + 1 - host)) : 0;
	}
	end = strchr(host, ':');
	return s->cfg.host_ok(host, end ? (size_t)(end - host) : strlen(host));
}

static void req_decide(const struct http_server *s, struct http_req *r, int method)
{
	if (!host_allowed(s, http_req_header(r, "Host"))) {
		r->preset = 403;
		return;
	}
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
	http__conn_arm_timer(c);
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

/* 1 when every byte is a tchar (RFC 9110 5.6.2), as a header name must be. */
static int is_token(const char *s, size_t n)
{
	static const char extra[] = "!#$%&'*+-.^_`|~";

	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)s[i];
		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		      (ch >= '0' && ch <= '9') || (ch && memchr(extra, ch, sizeof extra - 1))))
			return 0;
	}
	return 1;
}

static int on_header_field(http_parser *p, const char *at, size_t n)
{
	struct http_conn *c = p->data;
	struct http_req *r = c->req;

	if (head_count(c, n) < 0)
		return -1;
	if (!is_token(at, n)) {
		c->err_status = 400; /* "Ho st: x": refused, not read as some other header */
		return -1;
	}
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
	http__conn_arm_timer(c);
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

const http_parser_settings http__parser_settings = {
	.on_message_begin = on_message_begin,
	.on_url = on_url,
	.on_header_field = on_header_field,
	.on_header_value = on_header_value,
	.on_headers_complete = on_headers_complete,
	.on_body = on_body,
	.on_message_complete = on_message_complete,
};

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
