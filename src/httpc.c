/*
 * httpc.c - libcurl multi on libuv (docs/stack.md §2).
 *
 * libcurl tells us which sockets to watch (on_curl_socket: one uv_poll_t
 * per socket, stored with curl_multi_assign) and when to call it back
 * (on_curl_timer: one uv_timer_t). Events from both go to
 * curl_multi_socket_action, after which finished transfers are collected
 * (collect_done).
 *
 * Invariants:
 * 1. curl_multi_socket_action, curl_multi_remove_handle and
 *    curl_multi_cleanup are never called from inside a libcurl callback
 *    (socket, timer, write). Work that a callback asks for (a cancel from
 *    on_chunk, httpc_free) is deferred to the 0 ms `sweep` timer.
 * 2. Every call in c->calls has its easy handle in c->multi. A cancelled
 *    call stays there, with cb/on_chunk cleared, until sweep or
 *    collect_done removes and frees it.
 * 3. c->pending counts open uv handles (two timers and the socket polls);
 *    the struct is freed in the close callback that brings it to zero, and
 *    only after httpc_free().
 */
#include <assert.h>
#include <curl/curl.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "buf.h"
#include "httpc.h"
#include "log.h"
#include "util.h"

#define HTTPC_METHOD_MAX 16 /* bytes, with the NUL */
#define HTTPC_POOL 16       /* idle easy handles kept for reuse */

struct httpc {
	uv_loop_t *loop;          /* borrowed */
	CURLM *multi;             /* NULL once cleaned up */
	uv_timer_t timer;         /* libcurl's single timeout */
	uv_timer_t sweep;         /* 0 ms: deferred removals and teardown */
	struct httpc_call *calls; /* every call with a handle in multi */
	struct httpc_sock *socks; /* every open socket poll */
	size_t active;            /* calls whose callback is still due */
	int pending;              /* open uv handles; see invariant 3 */
	int freeing;              /* httpc_free() was called */
	void (*done)(void *arg);  /* from httpc_free() */
	void *done_arg;
	CURL *idle[HTTPC_POOL];   /* finished easy handles, reset, for the next calls */
	int nidle;
};

/* One socket libcurl asked us to watch; freed in its close callback. */
struct httpc_sock {
	uv_poll_t poll;
	struct httpc *c;
	curl_socket_t fd;
	struct httpc_sock *prev, *next;
};

struct httpc_call {
	struct httpc *c;
	struct httpc_call *prev, *next;
	CURL *easy;
	struct curl_slist *headers;
	httpc_cb cb; /* NULL once cancelled */
	void *ud;
	void (*on_chunk)(const char *p, size_t n, void *ud);
	struct buf body;   /* in-memory body, capped at max_response */
	FILE *out;         /* temp file for out_path, or NULL */
	char *out_path;    /* final name */
	char *tmp_path;    /* temp name; NULL once renamed or removed */
	size_t out_len;    /* bytes written to out */
	int status;        /* HTTP status seen by on_write; 0 until known */
	int cancelled;     /* cb will not be called; sweep frees it */
	int in_cb;         /* cb is running */
	struct err err;    /* local failure (too large, write error) */
	char method[HTTPC_METHOD_MAX];
	uint64_t start_ns; /* util_mono_ns() at httpc_request() */
	char errbuf[CURL_ERROR_SIZE];
};

static void handle_released(struct httpc *c);

/* ---- sockets and timers libcurl asks for ---------------------------- */

static void on_sock_closed(uv_handle_t *h)
{
	struct httpc_sock *s = h->data;
	struct httpc *c = s->c;

	free(s);
	handle_released(c);
}

static void sock_close(struct httpc_sock *s)
{
	struct httpc *c = s->c;

	if (s->prev)
		s->prev->next = s->next;
	else
		c->socks = s->next;
	if (s->next)
		s->next->prev = s->prev;
	uv_poll_stop(&s->poll);
	uv_close((uv_handle_t *)&s->poll, on_sock_closed);
}

static void collect_done(struct httpc *c);

static void on_poll(uv_poll_t *h, int status, int events)
{
	struct httpc_sock *s = h->data;
	struct httpc *c = s->c;
	int flags = 0, running;

	if (status < 0)
		flags = CURL_CSELECT_ERR;
	if (events & UV_READABLE)
		flags |= CURL_CSELECT_IN;
	if (events & UV_WRITABLE)
		flags |= CURL_CSELECT_OUT;
	/* May remove this very socket: do not touch s afterwards. */
	curl_multi_socket_action(c->multi, s->fd, flags, &running);
	collect_done(c);
}

static struct httpc_sock *sock_open(struct httpc *c, curl_socket_t fd)
{
	struct httpc_sock *s = xcalloc(1, sizeof *s);

	if (uv_poll_init_socket(c->loop, &s->poll, fd) != 0) {
		free(s);
		return NULL;
	}
	s->poll.data = s;
	s->c = c;
	s->fd = fd;
	s->next = c->socks;
	if (c->socks)
		c->socks->prev = s;
	c->socks = s;
	c->pending++;
	curl_multi_assign(c->multi, fd, s);
	return s;
}

/* Our poll for fd, should curl_multi_assign() not have stored it. */
static struct httpc_sock *sock_find(struct httpc *c, curl_socket_t fd)
{
	struct httpc_sock *s = c->socks;

	while (s && s->fd != fd)
		s = s->next;
	return s;
}

/* CURLMOPT_SOCKETFUNCTION: watch fd for `what`. Never calls into curl_multi_socket_action. */
static int on_curl_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *sockp)
{
	struct httpc *c = userp;
	struct httpc_sock *s = sockp ? sockp : sock_find(c, fd);
	int events = 0;

	if (what == CURL_POLL_REMOVE) {
		if (s) {
			sock_close(s);
			curl_multi_assign(c->multi, fd, NULL);
		}
		return 0;
	}
	if (s == NULL)
		s = sock_open(c, fd);
	if (s == NULL)
		return -1;
	if (what & CURL_POLL_IN)
		events |= UV_READABLE;
	if (what & CURL_POLL_OUT)
		events |= UV_WRITABLE;
	return uv_poll_start(&s->poll, events, on_poll) == 0 ? 0 : -1;
}

static void on_timeout(uv_timer_t *t)
{
	struct httpc *c = t->data;
	int running;

	curl_multi_socket_action(c->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	collect_done(c);
}

/* CURLMOPT_TIMERFUNCTION: 0 runs on the next loop iteration, -1 stops. */
static int on_curl_timer(CURLM *multi, long timeout_ms, void *userp)
{
	struct httpc *c = userp;

	if (timeout_ms < 0)
		uv_timer_stop(&c->timer);
	else
		uv_timer_start(&c->timer, on_timeout, (uint64_t)timeout_ms, 0);
	return 0;
}

/* ---- calls ------------------------------------------------------------ */

static int status_is_2xx(int status)
{
	return status >= 200 && status < 300;
}

/* A 2xx body chunk for on_chunk or out_path. Returns bytes taken (0 aborts). */
static size_t sink_ok(struct httpc_call *call, const char *p, size_t n)
{
	if (call->on_chunk) {
		call->on_chunk(p, n, call->ud);
		return call->cancelled ? 0 : n; /* httpc_cancel()/free() from on_chunk */
	}
	if (fwrite(p, 1, n, call->out) != n) {
		err_set(&call->err, ERR_IO, "write %s: %s", call->tmp_path, strerror(errno));
		return 0;
	}
	call->out_len += n;
	return n;
}

/* CURLOPT_WRITEFUNCTION. Runs inside libcurl. */
static size_t on_write(char *p, size_t size, size_t nmemb, void *arg)
{
	struct httpc_call *call = arg;
	size_t n = size * nmemb;
	long status = 0;

	if (call->cancelled)
		return 0;
	if (call->status == 0) {
		curl_easy_getinfo(call->easy, CURLINFO_RESPONSE_CODE, &status);
		call->status = (int)status;
	}
	if (status_is_2xx(call->status) && (call->on_chunk || call->out))
		return sink_ok(call, p, n);
	if (buf_append(&call->body, p, n) < 0) {
		err_set(&call->err, ERR_TOO_LARGE, "%s response over %zu bytes", call->method,
			call->body.max);
		return 0;
	}
	return n;
}

static void call_unlink(struct httpc_call *call)
{
	struct httpc *c = call->c;

	if (call->prev)
		call->prev->next = call->next;
	else
		c->calls = call->next;
	if (call->next)
		call->next->prev = call->prev;
}

/*
 * Frees a call that is neither linked nor in the multi; removes its temp
 * file. Its easy handle goes back to the pool (a reset handle keeps its
 * buffers, so a request does not allocate them again).
 */
static void call_release(struct httpc_call *call)
{
	struct httpc *c = call->c;

	if (call->easy && c && !c->freeing && c->nidle < HTTPC_POOL) {
		curl_easy_reset(call->easy);
		c->idle[c->nidle++] = call->easy;
	} else {
		curl_easy_cleanup(call->easy);
	}
	curl_slist_free_all(call->headers);
	if (call->out)
		fclose(call->out);
	if (call->tmp_path)
		unlink(call->tmp_path);
	free(call->tmp_path);
	free(call->out_path);
	buf_cleanup(&call->body);
	free(call);
}

/* Removes the handle from the multi and frees the call. Never inside a curl callback. */
static void call_free(struct httpc_call *call)
{
	curl_multi_remove_handle(call->c->multi, call->easy);
	call_unlink(call);
	call_release(call);
}

static const struct {
	CURLcode rc;
	int code;
} curl_errs[] = {
	{CURLE_OPERATION_TIMEDOUT, ERR_TIMEOUT},
	{CURLE_COULDNT_CONNECT, ERR_UNAVAILABLE},
	{CURLE_COULDNT_RESOLVE_HOST, ERR_UNAVAILABLE},
	{CURLE_GOT_NOTHING, ERR_UNAVAILABLE},
	{CURLE_SEND_ERROR, ERR_UNAVAILABLE},
	{CURLE_RECV_ERROR, ERR_UNAVAILABLE},
	{CURLE_PARTIAL_FILE, ERR_UNAVAILABLE},
	{CURLE_URL_MALFORMAT, ERR_INVALID},
	{CURLE_UNSUPPORTED_PROTOCOL, ERR_INVALID},
};

static void call_set_curl_err(struct httpc_call *call, CURLcode rc)
{
	const char *url = NULL;
	int code = ERR_IO;

	for (size_t i = 0; i < sizeof curl_errs / sizeof curl_errs[0]; i++)
		if (curl_errs[i].rc == rc)
			code = curl_errs[i].code;
	curl_easy_getinfo(call->easy, CURLINFO_EFFECTIVE_URL, &url);
	err_set(&call->err, code, "%s %s: %s", call->method, url ? url : "?",
		call->errbuf[0] ? call->errbuf : curl_easy_strerror(rc));
}

/* Moves the temp file into place, or removes it. Returns 0 or -1 (err set). */
static int call_finish_file(struct httpc_call *call, int ok)
{
	int rc = fclose(call->out);

	call->out = NULL;
	if (rc != 0)
		err_set(&call->err, ERR_IO, "write %s: %s", call->tmp_path, strerror(errno));
	if (!ok || rc != 0)
		return -1;
	if (rename(call->tmp_path, call->out_path) != 0) {
		err_set(&call->err, ERR_IO, "rename %s: %s", call->out_path, strerror(errno));
		return -1;
	}
	free(call->tmp_path);
	call->tmp_path = NULL;
	return 0;
}

/* A transfer finished with rc: answer the callback (unless cancelled) and free. */
static void call_complete(struct httpc_call *call, CURLcode rc)
{
	struct httpc_resp resp = {.body = ""};
	long status = 0;
	char *ctype = NULL;

	if (call->cancelled) {
		call_free(call);
		return;
	}
	curl_easy_getinfo(call->easy, CURLINFO_RESPONSE_CODE, &status);
	curl_easy_getinfo(call->easy, CURLINFO_CONTENT_TYPE, &ctype);
	if (rc != CURLE_OK)
		call_set_curl_err(call, rc);
	/*
	 * A status line followed by a body cut short (the server died) is no
	 * response: callers that test for 200 must not take half a file.
	 */
	resp.status = rc == CURLE_OK ? (int)status : 0;
	if (call->out)
		call_finish_file(call, call->err.code == 0 && status_is_2xx(resp.status));
	resp.err = call->err;
	resp.content_type = ctype;
	resp.body = call->body.data ? call->body.data : "";
	resp.len = call->body.data ? call->body.len : call->out_len;
	resp.elapsed_us = (util_mono_ns() - call->start_ns) / 1000;
	log_debug("httpc method=%s status=%d elapsed_us=%llu err=%s", call->method, resp.status,
		  (unsigned long long)resp.elapsed_us, log_q(resp.err.msg));
	call->c->active--;
	call->in_cb = 1;
	call->cb(&resp, call->ud);
	call_free(call);
}

/* Collects finished transfers; called after each curl_multi_socket_action. */
static void collect_done(struct httpc *c)
{
	for (;;) {
		int left;
		CURLMsg *msg = curl_multi_info_read(c->multi, &left);
		struct httpc_call *call = NULL;
		CURLcode rc;

		if (msg == NULL)
			break;
		if (msg->msg != CURLMSG_DONE)
			continue;
		/* The message is invalid after remove_handle: read it first. */
		rc = msg->data.result;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&call);
		call_complete(call, rc);
	}
}

/* ---- teardown ----------------------------------------------------------- */

/* One of c->pending handles closed; the last one frees c. */
static void handle_released(struct httpc *c)
{
	void (*done)(void *arg) = c->done;
	void *arg = c->done_arg;

	assert(c->pending > 0);
	if (--c->pending > 0 || !c->freeing)
		return;
	free(c);
	curl_global_cleanup();
	if (done)
		done(arg);
}

static void on_handle_closed(uv_handle_t *h)
{
	handle_released(h->data);
}

static void teardown(struct httpc *c)
{
	while (c->nidle > 0)
		curl_easy_cleanup(c->idle[--c->nidle]);
	/* May call on_curl_socket with CURL_POLL_REMOVE for cached connections. */
	curl_multi_cleanup(c->multi);
	c->multi = NULL;
	while (c->socks)
		sock_close(c->socks);
	uv_close((uv_handle_t *)&c->timer, on_handle_closed);
	uv_close((uv_handle_t *)&c->sweep, on_handle_closed);
}

/* The 0 ms timer: frees cancelled calls, then tears down after httpc_free(). */
static void on_sweep(uv_timer_t *t)
{
	struct httpc *c = t->data;
	struct httpc_call *call = c->calls, *next;

	for (; call; call = next) {
		next = call->next;
		if (call->cancelled)
			call_free(call);
	}
	if (c->freeing && c->calls == NULL)
		teardown(c);
}

struct httpc *httpc_new(uv_loop_t *loop, struct err *err)
{
	struct httpc *c;

	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		err_set(err, ERR_INTERNAL, "curl_global_init failed");
		return NULL;
	}
	c = xcalloc(1, sizeof *c);
	c->loop = loop;
	c->multi = curl_multi_init();
	if (c->multi == NULL) {
		err_set(err, ERR_INTERNAL, "curl_multi_init failed");
		free(c);
		return NULL;
	}
	uv_timer_init(loop, &c->timer);
	uv_timer_init(loop, &c->sweep);
	c->timer.data = c;
	c->sweep.data = c;
	c->pending = 2;
	curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket);
	curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c);
	curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer);
	curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c);
	httpc_set_max_host_connections(c, HTTPC_MAX_HOST_CONNECTIONS);
	return c;
}

void httpc_set_max_host_connections(struct httpc *c, long n)
{
	curl_multi_setopt(c->multi, CURLMOPT_MAX_HOST_CONNECTIONS, n);
}

void httpc_free(struct httpc *c, void (*done)(void *arg), void *arg)
{
	if (c == NULL)
		return;
	assert(!c->freeing);
	c->freeing = 1;
	c->done = done;
	c->done_arg = arg;
	for (struct httpc_call *call = c->calls; call; call = call->next)
		httpc_cancel(call);
	/* We may be inside a curl callback (on_chunk): tear down later. */
	uv_timer_start(&c->sweep, on_sweep, 0, 0);
}

void httpc_cancel(struct httpc_call *call)
{
	if (call == NULL || call->in_cb || call->cancelled)
		return;
	call->cancelled = 1;
	call->cb = NULL;
	call->on_chunk = NULL;
	call->ud = NULL;
	call->c->active--;
	/* Possibly inside on_chunk, that is inside libcurl: remove later. */
	uv_timer_start(&call->c->sweep, on_sweep, 0, 0);
}

size_t httpc_active(const struct httpc *c)
{
	return c->active;
}

/* ---- building a request ----------------------------------------------- */

static int valid_header(const char *h)
{
	return strpbrk(h, "\r\n") == NULL && strchr(h, ':') != NULL;
}

static int add_header(struct httpc_call *call, const char *h)
{
	struct curl_slist *l = curl_slist_append(call->headers, h);

	if (l == NULL)
		return -1;
	call->headers = l;
	return 0;
}

static int set_headers(struct httpc_call *call, const struct httpc_opts *o, struct err *err)
{
	int rc = 0;

	for (size_t i = 0; o->headers && o->headers[i]; i++) {
		if (!valid_header(o->headers[i])) {
			err_set(err, ERR_INVALID, "bad request header %s", log_q(o->headers[i]));
			return -1;
		}
		rc |= add_header(call, o->headers[i]);
	}
	if (o->content_type) {
		char *h = xasprintf("Content-Type: %s", o->content_type);
		rc |= valid_header(h) ? add_header(call, h) : -1;
		free(h);
	}
	/* curl waits up to 1 s for a 100 Continue on bodies over 1 MiB. */
	rc |= add_header(call, "Expect:");
	if (rc != 0) {
		err_set(err, ERR_INVALID, "bad request headers");
		return -1;
	}
	return curl_easy_setopt(call->easy, CURLOPT_HTTPHEADER, call->headers) == CURLE_OK ? 0 : -1;
}

static int set_method(struct httpc_call *call, const struct httpc_opts *o)
{
	CURL *e = call->easy;
	int rc = 0;

	if (o->body || strcmp(call->method, "POST") == 0) {
		rc |= curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)o->body_len);
		rc |= curl_easy_setopt(e, CURLOPT_COPYPOSTFIELDS, o->body ? o->body : "");
	} else if (strcmp(call->method, "HEAD") == 0) {
		rc |= curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
	} else {
		rc |= curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
	}
	if (strcmp(call->method, "GET") != 0 && strcmp(call->method, "POST") != 0 &&
	    strcmp(call->method, "HEAD") != 0)
		rc |= curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, call->method);
	return rc == 0 ? 0 : -1;
}

static int set_options(struct httpc_call *call, const struct httpc_opts *o, struct err *err)
{
	CURL *e = call->easy;
	uint64_t timeout = o->timeout_ms ? o->timeout_ms : HTTPC_TIMEOUT_MS;
	uint64_t ctimeout = o->connect_timeout_ms ? o->connect_timeout_ms : HTTPC_CONNECT_TIMEOUT_MS;
	int rc = 0;

	rc |= curl_easy_setopt(e, CURLOPT_URL, o->url);
	rc |= curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
	rc |= curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	rc |= curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)timeout);
	rc |= curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)ctimeout);
	rc |= curl_easy_setopt(e, CURLOPT_PRIVATE, (char *)call);
	rc |= curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
	rc |= curl_easy_setopt(e, CURLOPT_WRITEDATA, call);
	rc |= curl_easy_setopt(e, CURLOPT_ERRORBUFFER, call->errbuf);
	if (o->unix_socket)
		rc |= curl_easy_setopt(e, CURLOPT_UNIX_SOCKET_PATH, o->unix_socket);
	if (rc != 0 || set_method(call, o) < 0) {
		err_set(err, ERR_INVALID, "bad request options for %s", log_q(o->url));
		return -1;
	}
	return set_headers(call, o, err);
}

/* Creates the temp file beside out_path. */
static int open_out(struct httpc_call *call, const char *path, struct err *err)
{
	int fd;

	call->out_path = xstrdup(path);
	call->tmp_path = xasprintf("%s.tmp.XXXXXX", path);
	fd = mkstemp(call->tmp_path);
	if (fd < 0) {
		err_set(err, ERR_IO, "create %s: %s", call->tmp_path, strerror(errno));
		free(call->tmp_path);
		call->tmp_path = NULL;
		return -1;
	}
	call->out = fdopen(fd, "wb");
	if (call->out == NULL) {
		err_set(err, ERR_IO, "fdopen %s: %s", call->tmp_path, strerror(errno));
		close(fd);
		return -1;
	}
	return 0;
}

static int valid_opts(const struct httpc *c, const struct httpc_opts *o, httpc_cb cb,
		      struct err *err)
{
	const char *m = o->method ? o->method : "GET";

	if (c->freeing) {
		err_set(err, ERR_UNAVAILABLE, "http client is closing");
		return -1;
	}
	if (o->url == NULL || cb == NULL || (o->out_path && o->on_chunk)) {
		err_set(err, ERR_INVALID, "httpc_request: url and cb required, out_path excludes on_chunk");
		return -1;
	}
	if (*m == '\0' || strlen(m) >= HTTPC_METHOD_MAX ||
	    strspn(m, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") != strlen(m)) {
		err_set(err, ERR_INVALID, "bad HTTP method %s", log_q(m));
		return -1;
	}
	return 0;
}

static struct httpc_call *call_new(struct httpc *c, const struct httpc_opts *o, httpc_cb cb,
				   void *ud)
{
	struct httpc_call *call = xcalloc(1, sizeof *call);

	call->c = c;
	call->cb = cb;
	call->ud = ud;
	call->on_chunk = o->on_chunk;
	snprintf(call->method, sizeof call->method, "%s", o->method ? o->method : "GET");
	buf_init(&call->body, o->max_response ? o->max_response : HTTPC_MAX_RESPONSE);
	call->start_ns = util_mono_ns();
	return call;
}

struct httpc_call *httpc_request(struct httpc *c, const struct httpc_opts *o, httpc_cb cb,
				 void *ud, struct err *err)
{
	struct httpc_call *call;
	CURLMcode mrc;

	if (valid_opts(c, o, cb, err) < 0)
		return NULL;
	call = call_new(c, o, cb, ud);
	call->easy = c->nidle > 0 ? c->idle[--c->nidle] : curl_easy_init();
	if (call->easy == NULL) {
		err_set(err, ERR_INTERNAL, "curl_easy_init failed");
		goto fail;
	}
	if (set_options(call, o, err) < 0)
		goto fail;
	if (o->out_path && open_out(call, o->out_path, err) < 0)
		goto fail;
	mrc = curl_multi_add_handle(c->multi, call->easy);
	if (mrc != CURLM_OK) {
		err_set(err, ERR_INTERNAL, "curl_multi_add_handle: %s", curl_multi_strerror(mrc));
		goto fail;
	}
	call->next = c->calls;
	if (c->calls)
		c->calls->prev = call;
	c->calls = call;
	c->active++;
	return call;
fail:
	call_release(call);
	return NULL;
}
