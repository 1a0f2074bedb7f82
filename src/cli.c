/*
 * cli.c - the command-line client (`fnrun submit|jobs|job|cancel|functions`;
 * `docs` is cli_docs.c).
 *
 * Blocking libcurl easy requests to the user API. `submit` follows the
 * job's event stream, redrawing one progress line on stderr, downloads the
 * outputs on completion and prints their paths on stdout. Ctrl-C during
 * `submit` cancels the job and exits 130.
 *
 * Invariants: stdout carries only results (saved paths, tables, job
 * details); progress and errors go to stderr. Every response body read is
 * capped (CLI_MAX_BODY).
 */
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "cli_docs.h"
#include "json.h"
#include "util.h"

#define CLI_MAX_BODY (16u << 20)     /* bytes of one JSON answer */
#define CLI_MAX_LINE (1u << 20)      /* bytes of one SSE line or event */
#define CLI_BAR 30                   /* progress bar cells */
#define CLI_MESSAGE_MAX 48           /* bytes of the message on the progress line */
#define CLI_RECONNECTS 30            /* stream reconnects without news before giving up */
#define CLI_STALL_S 45L              /* no byte (not even a ping) for this long: reconnect */

static volatile sig_atomic_t interrupted; /* set by SIGINT during submit */

/* ---- options ---- */

struct opts {
	const char *server, *quality, *out, *status, *limit;
	const char **params; /* --param values, in order; owned array */
	size_t nparams;
	const char *pos[2];  /* positional arguments */
	size_t npos;
};

/* 1 when name (n bytes) is in the comma-separated list allowed. */
static int flag_allowed(const char *allowed, const char *name, size_t n)
{
	const char *p = allowed;

	while (*p) {
		size_t k = strcspn(p, ",");

		if (k == n && strncmp(p, name, n) == 0)
			return 1;
		p += k + (p[k] == ',');
	}
	return 0;
}

static void opt_set(struct opts *o, const char *name, size_t n, const char *value)
{
	if (n == 5 && strncmp(name, "param", 5) == 0)
		o->params[o->nparams++] = value;
	else if (n == 6 && strncmp(name, "server", 6) == 0)
		o->server = value;
	else if (n == 7 && strncmp(name, "quality", 7) == 0)
		o->quality = value;
	else if (n == 3 && strncmp(name, "out", 3) == 0)
		o->out = value;
	else if (n == 6 && strncmp(name, "status", 6) == 0)
		o->status = value;
	else if (n == 5 && strncmp(name, "limit", 5) == 0)
		o->limit = value;
}

/*
 * Parses `--name VALUE`, `--name=VALUE` (names from allowed) and exactly
 * npos positional arguments. Returns 0, or -1 for a usage error. Free
 * o->params with opts_cleanup().
 */
static int opts_parse(int argc, char **argv, const char *allowed, size_t npos, struct opts *o)
{
	memset(o, 0, sizeof *o);
	o->params = xcalloc((size_t)argc + 1, sizeof *o->params);
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *name = a + 2, *eq, *value;
		size_t n;

		if (strncmp(a, "--", 2) != 0 || a[2] == '\0') {
			if (o->npos >= npos)
				return -1;
			o->pos[o->npos++] = a;
			continue;
		}
		eq = strchr(name, '=');
		n = eq ? (size_t)(eq - name) : strlen(name);
		if (!flag_allowed(allowed, name, n))
			return -1;
		value = eq ? eq + 1 : (i + 1 < argc ? argv[++i] : NULL);
		if (value == NULL)
			return -1;
		opt_set(o, name, n, value);
	}
	return o->npos == npos ? 0 : -1;
}

static void opts_cleanup(struct opts *o)
{
	free(o->params);
	o->params = NULL;
}

/* The server's base URL without a trailing slash; static buffer. */
const char *cli_server_base(const char *flag)
{
	static char base[1024];
	const char *s = flag ? flag : getenv("FNRUN_SERVER");
	size_t n;

	snprintf(base, sizeof base, "%s", s && s[0] ? s : CLI_DEFAULT_SERVER);
	n = strlen(base);
	while (n > 0 && base[n - 1] == '/')
		base[--n] = '\0';
	return base;
}

/* ---- HTTP ---- */

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
	return buf_append(ud, p, size * n) < 0 ? 0 : size * n;
}

/* Progress callback for every transfer: Ctrl-C aborts it. */
static int on_abortable(void *ud, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un)
{
	return interrupted ? 1 : 0;
}

/* A handle for url with the options every request shares. Caller cleans up. */
static CURL *curl_for(const char *url)
{
	CURL *c = curl_easy_init();

	if (c == NULL)
		return NULL;
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
	curl_easy_setopt(c, CURLOPT_USERAGENT, "fnrun-cli");
	curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_abortable);
	/* An API key, when the gateway needs one: $FNRUN_KEY, sent as a Bearer token. */
	if (getenv("FNRUN_KEY") && *getenv("FNRUN_KEY")) {
		curl_easy_setopt(c, CURLOPT_HTTPAUTH, CURLAUTH_BEARER);
		curl_easy_setopt(c, CURLOPT_XOAUTH2_BEARER, getenv("FNRUN_KEY"));
	}
	return c;
}

/* base + path with each byte of seg (one path segment) escaped; caller frees. */
static char *url_with(const char *base, const char *fmt, const char *seg)
{
	char *esc = curl_easy_escape(NULL, seg ? seg : "", 0);
	char *url = xasprintf(fmt, base, esc ? esc : "");

	curl_free(esc);
	return url;
}

/*
 * One request to url; body (may be NULL) is sent as JSON. The answer's
 * JSON goes to *out (caller owns; NULL for an empty answer), the status to
 * *status. -1 with err set when the server cannot be reached or answers
 * something that is not JSON.
 */
int cli_request(const char *url, const char *method, const struct json_object *body,
		long *status, struct json_object **out, struct err *err)
{
	struct curl_slist *h = curl_slist_append(NULL, "Accept: application/json");
	CURL *c = curl_for(url);
	char *text = body ? json_dumps(body) : NULL;
	struct buf resp;
	CURLcode rc;
	int ret = 0;

	*out = NULL;
	buf_init(&resp, CLI_MAX_BODY);
	if (text != NULL)
		h = curl_slist_append(h, "Content-Type: application/json");
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	if (strcmp(method, "POST") == 0)
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, text ? text : "");
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 60000L);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &resp);
	rc = curl_easy_perform(c);
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
	if (rc != CURLE_OK) {
		err_set(err, ERR_UNAVAILABLE, "cannot reach the server at %s: %s", url,
			curl_easy_strerror(rc));
		ret = -1;
	} else if (resp.len > 0 && json_parse(resp.data, resp.len, 64, out, err) < 0) {
		err_clear(err);
		err_set(err, ERR_INVALID, "the server sent an unexpected answer (HTTP %ld)",
			*status);
		ret = -1;
	}
	buf_cleanup(&resp);
	free(text);
	curl_slist_free_all(h);
	curl_easy_cleanup(c);
	return ret;
}

/* Prints an API error answer {"error": {message, suggestion}} to stderr. */
static void print_api_error(const struct json_object *o, long status)
{
	const struct json_object *e = json_get_obj(o, "error");
	const char *msg = json_get_str(e, "message");
	const char *sugg = json_get_str(e, "suggestion");

	if (msg == NULL) {
		fprintf(stderr, "error: the server answered HTTP %ld\n", status);
		return;
	}
	fprintf(stderr, "error: %s\n", msg);
	if (sugg != NULL && sugg[0] != '\0')
		fprintf(stderr, "%s\n", sugg);
}

/* A 2xx answer's JSON (caller owns), or NULL after printing why not. */
static struct json_object *api_ok(const char *url, const char *method,
				  const struct json_object *body)
{
	struct err err = {0};
	struct json_object *o = NULL;
	long status = 0;

	if (cli_request(url, method, body, &status, &o, &err) < 0) {
		fprintf(stderr, "error: %s\n", err.msg);
		return NULL;
	}
	if (status >= 200 && status < 300)
		return o;
	print_api_error(o, status);
	json_object_put(o);
	return NULL;
}

/* ---- the catalog and params ---- */

const struct json_object *cli_catalog_function(const struct json_object *catalog,
					       const char *name)
{
	const struct json_object *fs = json_get_arr(catalog, "functions");

	for (size_t i = 0; fs != NULL && i < json_object_array_length(fs); i++) {
		const struct json_object *f = json_object_array_get_idx(fs, i);
		const char *n = json_get_str(f, "name");

		if (n != NULL && strcmp(n, name) == 0)
			return f;
	}
	return NULL;
}

/* "a, b, c": the keys of object o (or the strings of array o) into b. */
static void list_names(const struct json_object *o, struct buf *b)
{
	size_t i = 0;

	if (json_object_is_type(o, json_type_array)) {
		for (i = 0; i < json_object_array_length(o); i++)
			buf_printf(b, "%s%s", i ? ", " : "",
				   json_object_get_string(json_object_array_get_idx(o, i)));
		return;
	}
	if (!json_object_is_type(o, json_type_object))
		return;
	json_object_object_foreach((struct json_object *)o, k, v) {
		(void)v;
		buf_printf(b, "%s%s", i++ ? ", " : "", k);
	}
}

static int bool_word(const char *s, int *v)
{
	static const char *const yes[] = {"true", "yes", "on", "1"};
	static const char *const no[] = {"false", "no", "off", "0"};

	for (size_t i = 0; i < 4; i++) {
		if (strcasecmp(s, yes[i]) == 0 || strcasecmp(s, no[i]) == 0) {
			*v = strcasecmp(s, yes[i]) == 0;
			return 0;
		}
	}
	return -1;
}

static struct json_object *to_int(const char *name, const char *s, struct err *err)
{
	char *end;
	long long v;

	errno = 0;
	v = strtoll(s, &end, 10);
	if (s[0] == '\0' || *end != '\0' || errno == ERANGE) {
		err_set(err, ERR_INVALID, "--param %s: must be an integer, not \"%.40s\"", name, s);
		return NULL;
	}
	return json_int(v);
}

static struct json_object *to_float(const char *name, const char *s, struct err *err)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (s[0] == '\0' || *end != '\0' || errno == ERANGE || !isfinite(v)) {
		err_set(err, ERR_INVALID, "--param %s: must be a number, not \"%.40s\"", name, s);
		return NULL;
	}
	return json_object_new_double(v);
}

static struct json_object *to_enum(const char *name, const struct json_object *p, const char *s,
				   struct err *err)
{
	const struct json_object *opts = json_get_arr(p, "options");
	struct buf names;

	for (size_t i = 0; opts != NULL && i < json_object_array_length(opts); i++)
		if (strcmp(json_object_get_string(json_object_array_get_idx(opts, i)), s) == 0)
			return json_str(s);
	buf_init(&names, 4096);
	list_names(opts, &names);
	err_set(err, ERR_INVALID, "--param %s: must be one of %s, not \"%.40s\"", name,
		names.data ? names.data : "(none)", s);
	buf_cleanup(&names);
	return NULL;
}

/* value converted to p's catalog type, or NULL with err set. Caller owns. */
static struct json_object *param_value(const char *name, const struct json_object *p,
				       const char *value, struct err *err)
{
	const char *type = json_get_str(p, "type");
	int b;

	if (type == NULL || strcmp(type, "string") == 0)
		return json_str(value);
	if (strcmp(type, "int") == 0)
		return to_int(name, value, err);
	if (strcmp(type, "float") == 0)
		return to_float(name, value, err);
	if (strcmp(type, "enum") == 0)
		return to_enum(name, p, value, err);
	if (strcmp(type, "bool") == 0 && bool_word(value, &b) == 0)
		return json_object_new_boolean(b);
	if (strcmp(type, "bool") == 0)
		err_set(err, ERR_INVALID, "--param %s: must be true or false, not \"%.40s\"", name,
			value);
	else
		return json_str(value); /* a type this client does not know: let the server judge */
	return NULL;
}

int cli_param_convert(const struct json_object *fn, const char *kv, struct json_object *params,
		      struct err *err)
{
	const struct json_object *ps = json_get_obj(fn, "params");
	const char *eq = strchr(kv, '=');
	const struct json_object *p;
	struct json_object *v;
	char name[128];

	if (eq == NULL || eq == kv || (size_t)(eq - kv) >= sizeof name) {
		err_set(err, ERR_INVALID, "--param %.60s: expected NAME=VALUE", kv);
		return -1;
	}
	snprintf(name, sizeof name, "%.*s", (int)(eq - kv), kv);
	p = json_get_obj(ps, name);
	if (p == NULL) {
		struct buf names;

		buf_init(&names, 4096);
		list_names(ps, &names);
		err_set(err, ERR_INVALID, "--param %s: %s has no such param; its params: %s", name,
			json_get_str(fn, "name"), names.data ? names.data : "(none)");
		buf_cleanup(&names);
		return -1;
	}
	if (strcmp(eq + 1, "random") == 0 && json_get_bool(p, "random", 0)) {
		json_object_object_del(params, name);
		return 0;
	}
	v = param_value(name, p, eq + 1, err);
	if (v == NULL)
		return -1;
	json_put(params, name, v);
	return 0;
}

/* ---- Server-Sent Events ---- */

void cli_sse_init(struct cli_sse *p)
{
	memset(p, 0, sizeof *p);
	buf_init(&p->line, CLI_MAX_LINE);
	buf_init(&p->data, CLI_MAX_LINE);
}

void cli_sse_cleanup(struct cli_sse *p)
{
	buf_cleanup(&p->line);
	buf_cleanup(&p->data);
}

/* Ends an event at a blank line; returns fn's verdict. */
static int sse_dispatch(struct cli_sse *p, cli_sse_fn fn, void *ud)
{
	int rc = 0;

	if (p->data.len > 0) {
		p->data.data[--p->data.len] = '\0'; /* the last line's '\n' */
		rc = fn(ud, p->event[0] ? p->event : "message", p->data.data);
	}
	buf_reset(&p->data);
	p->event[0] = '\0';
	return rc;
}

/* One complete line (without its end); -1 when fn says stop or data overflows. */
static int sse_line(struct cli_sse *p, char *line, size_t n, cli_sse_fn fn, void *ud)
{
	char *colon, *value;

	if (n > 0 && line[n - 1] == '\r')
		line[--n] = '\0';
	if (n == 0)
		return sse_dispatch(p, fn, ud) ? -1 : 0;
	if (line[0] == ':')
		return 0; /* a comment, e.g. the server's ": ping" */
	colon = strchr(line, ':');
	value = colon ? colon + 1 : line + n;
	if (colon != NULL)
		*colon = '\0';
	if (*value == ' ')
		value++;
	if (strcmp(line, "data") == 0)
		return buf_puts(&p->data, value) < 0 || buf_putc(&p->data, '\n') < 0 ? -1 : 0;
	if (strcmp(line, "event") == 0)
		snprintf(p->event, sizeof p->event, "%s", value);
	else if (strcmp(line, "id") == 0)
		snprintf(p->last_id, sizeof p->last_id, "%s", value);
	return 0;
}

int cli_sse_feed(struct cli_sse *p, const char *bytes, size_t n, cli_sse_fn fn, void *ud)
{
	while (n > 0) {
		const char *nl = memchr(bytes, '\n', n);
		size_t k = nl ? (size_t)(nl - bytes) : n;

		if (buf_append(&p->line, bytes, k) < 0)
			return -1;
		bytes += k;
		n -= k;
		if (nl == NULL)
			break;
		bytes++;
		n--;
		if (sse_line(p, p->line.data ? p->line.data : (char *)"", p->line.len, fn, ud) < 0) {
			buf_reset(&p->line);
			return -1;
		}
		buf_reset(&p->line);
	}
	return 0;
}

/* ---- the progress line ---- */

static int status_terminal(const char *s)
{
	return s != NULL && (strcmp(s, "completed") == 0 || strcmp(s, "failed") == 0 ||
			     strcmp(s, "cancelled") == 0);
}


/* "about 40 s left", "about 3 min left"; "" when unknown. */
static void eta_text(int64_t s, char *out, size_t size)
{
	if (s < 0)
		snprintf(out, size, "%s", "");
	else if (s < 60)
		snprintf(out, size, "about %lld s left", (long long)s);
	else if (s < 3600)
		snprintf(out, size, "about %lld min left", (long long)((s + 59) / 60));
	else
		snprintf(out, size, "about %lld h left", (long long)((s + 1799) / 3600));
}

/* At most max bytes of s, cut on a UTF-8 character boundary. */
static int utf8_cut(const char *s, int max)
{
	int n = (int)strlen(s);

	if (n <= max)
		return n;
	while (max > 0 && ((unsigned char)s[max] & 0xc0) == 0x80)
		max--;
	return max;
}

void cli_progress_line(const struct json_object *view, int64_t eta_s, char *out, size_t size)
{
	int64_t pct = json_get_int(view, "progress", 0);
	int64_t pos = json_get_int(view, "queue_position", -1);
	const char *status = json_get_str(view, "status");
	const char *msg = json_get_str(view, "message");
	char bar[CLI_BAR + 1], tail[64];
	int fill;

	pct = pct < 0 ? 0 : pct > 100 ? 100 : pct;
	fill = (int)(pct * CLI_BAR / 100);
	memset(bar, '#', (size_t)fill);
	memset(bar + fill, '-', (size_t)(CLI_BAR - fill));
	bar[CLI_BAR] = '\0';
	if (msg == NULL || msg[0] == '\0')
		msg = status ? status : "";
	if (eta_s < 0)
		eta_s = json_get_int(view, "eta_seconds", -1);
	if (status_terminal(status))
		eta_s = -1; /* nothing left to wait for */
	if (status != NULL && strcmp(status, "queued") == 0 && pos == 0)
		snprintf(tail, sizeof tail, "next in line");
	else if (status != NULL && strcmp(status, "queued") == 0 && pos > 0)
		snprintf(tail, sizeof tail, "%lld job%s ahead", (long long)pos, pos == 1 ? "" : "s");
	else
		eta_text(eta_s, tail, sizeof tail);
	snprintf(out, size, "[%s] %3lld%%  %.*s%s%s", bar, (long long)pct,
		 utf8_cut(msg, CLI_MESSAGE_MAX), msg, tail[0] ? "  " : "", tail);
}

/* ---- following a job ---- */

struct follow {
	struct cli_sse sse;
	struct json_object *view; /* the latest view; owned */
	int terminal;             /* the view is completed, failed or cancelled */
	int news;                 /* an event arrived on this connection */
	CURL *curl;
	long status;              /* HTTP status of the stream, 0 before the first byte */
	struct buf errbody;       /* the body of a non-200 answer */
	int tty;                  /* stderr is a terminal: redraw with \r */
	int drawn;                /* a progress line is on the screen */
	int64_t eta;              /* eta_seconds of the latest view, -1 unknown */
	uint64_t eta_at_ms;       /* monotonic time it arrived */
	uint64_t drawn_ms;        /* monotonic time of the last redraw */
	char shown[256];          /* non-tty: status and message last printed */
};

static void draw(struct follow *f)
{
	char line[512], key[256];
	int64_t left = -1;

	if (f->view == NULL)
		return;
	if (f->eta >= 0) {
		left = f->eta - (int64_t)((util_mono_ms() - f->eta_at_ms) / 1000);
		left = left < 0 ? 0 : left;
	}
	cli_progress_line(f->view, left, line, sizeof line);
	f->drawn_ms = util_mono_ms();
	if (f->tty) {
		fprintf(stderr, "\r%s\033[K", line);
		f->drawn = 1;
		return;
	}
	/* Not a terminal: one line per change of state or message, no redraws. */
	snprintf(key, sizeof key, "%s|%s", json_get_str(f->view, "status"),
		 json_get_str(f->view, "message"));
	if (strcmp(key, f->shown) != 0)
		fprintf(stderr, "%s\n", line);
	snprintf(f->shown, sizeof f->shown, "%s", key);
}

static int on_event(void *ud, const char *event, const char *data)
{
	struct follow *f = ud;
	struct json_object *v = NULL;

	if (strcmp(event, "state") != 0 && strcmp(event, "progress") != 0)
		return 0;
	if (json_parse(data, strlen(data), 64, &v, NULL) < 0 || json_get_str(v, "status") == NULL) {
		json_object_put(v);
		return 0;
	}
	json_object_put(f->view);
	f->view = v;
	f->news = 1;
	f->eta = json_get_int(v, "eta_seconds", -1);
	f->eta_at_ms = util_mono_ms();
	f->terminal = status_terminal(json_get_str(v, "status"));
	draw(f);
	return f->terminal; /* stop reading after the last state */
}

static size_t on_stream_bytes(char *p, size_t size, size_t n, void *ud)
{
	struct follow *f = ud;

	if (f->status == 0)
		curl_easy_getinfo(f->curl, CURLINFO_RESPONSE_CODE, &f->status);
	if (f->status != 200)
		return buf_append(&f->errbody, p, size * n) < 0 ? 0 : size * n;
	return cli_sse_feed(&f->sse, p, size * n, on_event, f) < 0 ? 0 : size * n;
}

/* Ctrl-C aborts; the countdown redraws once a second on a terminal. */
static int on_stream_tick(void *ud, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un)
{
	struct follow *f = ud;

	if (interrupted)
		return 1;
	if (f->tty && util_mono_ms() - f->drawn_ms >= 1000)
		draw(f);
	return 0;
}

/* One connection to the job's event stream, until it ends or aborts. */
static void stream_once(const char *base, const char *id, struct follow *f)
{
	char *url = url_with(base, "%s/api/jobs/%s/events", id);
	struct curl_slist *h = curl_slist_append(NULL, "Accept: text/event-stream");
	char last[128];

	if (f->sse.last_id[0] != '\0') {
		snprintf(last, sizeof last, "Last-Event-ID: %s", f->sse.last_id);
		h = curl_slist_append(h, last);
	}
	f->curl = curl_for(url);
	f->status = 0;
	f->news = 0;
	buf_reset(&f->errbody);
	buf_reset(&f->sse.line);
	buf_reset(&f->sse.data);
	curl_easy_setopt(f->curl, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(f->curl, CURLOPT_WRITEFUNCTION, on_stream_bytes);
	curl_easy_setopt(f->curl, CURLOPT_WRITEDATA, f);
	curl_easy_setopt(f->curl, CURLOPT_XFERINFOFUNCTION, on_stream_tick);
	curl_easy_setopt(f->curl, CURLOPT_XFERINFODATA, f);
	/* The server pings every 15 s; silence for longer means a dead link. */
	curl_easy_setopt(f->curl, CURLOPT_LOW_SPEED_LIMIT, 1L);
	curl_easy_setopt(f->curl, CURLOPT_LOW_SPEED_TIME, CLI_STALL_S);
	curl_easy_perform(f->curl);
	if (f->status == 0)
		curl_easy_getinfo(f->curl, CURLINFO_RESPONSE_CODE, &f->status);
	curl_easy_cleanup(f->curl);
	f->curl = NULL;
	curl_slist_free_all(h);
	free(url);
}

/* Sleeps ms unless Ctrl-C comes first. */
static void pause_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

	while (!interrupted && nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/*
 * Follows job id until a terminal state (returns 0; f->view holds it),
 * Ctrl-C (returns 130) or a failure (returns 1 after saying why).
 * Reconnects with Last-Event-ID when the stream breaks.
 */
static int follow_job(const char *base, const char *id, struct follow *f)
{
	int quiet = 0; /* reconnects in a row without news */

	while (!f->terminal && !interrupted) {
		stream_once(base, id, f);
		if (f->terminal || interrupted)
			break;
		if (f->status >= 400) {
			struct json_object *o = NULL;

			json_parse(f->errbody.data ? f->errbody.data : "", f->errbody.len, 64, &o,
				   NULL);
			print_api_error(o, f->status);
			json_object_put(o);
			return 1;
		}
		quiet = f->news ? 0 : quiet + 1;
		if (quiet > CLI_RECONNECTS) {
			fprintf(stderr, "\nerror: lost contact with the server at %s; the job goes "
					"on: see `fnrun job %s`\n", base, id);
			return 1;
		}
		pause_ms(1000);
	}
	return interrupted ? 130 : 0;
}

/* ---- downloading outputs ---- */

/* A file name safe to create in the output directory. */
static void safe_name(const char *in, char *out, size_t size)
{
	size_t n = 0;

	while (*in == '.')
		in++;
	for (; *in && n + 1 < size; in++)
		out[n++] = (*in == '/' || *in == '\\' || (unsigned char)*in < 0x20) ? '_' : *in;
	out[n] = '\0';
	if (n == 0)
		snprintf(out, size, "output");
}

/* Creates dir/name, or dir/name-1.ext, ... when it exists; path into out. */
static int open_unique(const char *dir, const char *name, char *out, size_t size)
{
	const char *dot = strrchr(name, '.');
	int stem = dot && dot != name ? (int)(dot - name) : (int)strlen(name);

	for (int i = 0; i < 1000; i++) {
		int fd;

		if (i == 0)
			snprintf(out, size, "%s/%s", dir, name);
		else
			snprintf(out, size, "%s/%.*s-%d%s", dir, stem, name, i, name + stem);
		fd = open(out, O_WRONLY | O_CREAT | O_EXCL, 0644);
		if (fd >= 0 || errno != EEXIST)
			return fd;
	}
	return -1;
}

/* Saves one output {url, filename} into dir and prints its path. */
static int download(const char *base, const struct json_object *o, const char *dir)
{
	const char *url = json_get_str(o, "url"), *fname = json_get_str(o, "filename");
	char name[256], path[4096], *full;
	FILE *fp;
	CURL *c;
	CURLcode rc;
	int fd;

	if (url == NULL)
		return 0;
	safe_name(fname ? fname : (strrchr(url, '/') ? strrchr(url, '/') + 1 : url), name,
		  sizeof name);
	fd = open_unique(dir, name, path, sizeof path);
	fp = fd >= 0 ? fdopen(fd, "wb") : NULL;
	if (fp == NULL) {
		fprintf(stderr, "error: cannot create %s: %s\n", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	full = xasprintf("%s%s", base, url);
	c = curl_for(full);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, fp);
	curl_easy_setopt(c, CURLOPT_FAILONERROR, 1L);
	rc = curl_easy_perform(c);
	curl_easy_cleanup(c);
	free(full);
	if (fclose(fp) != 0 && rc == CURLE_OK)
		rc = CURLE_WRITE_ERROR;
	if (rc != CURLE_OK) {
		fprintf(stderr, "error: cannot download %s: %s\n", name, curl_easy_strerror(rc));
		unlink(path);
		return -1;
	}
	printf("%s\n", path);
	return 0;
}

static int download_all(const char *base, const struct json_object *view, const char *dir)
{
	const struct json_object *outs = json_get_arr(view, "outputs");
	int rc = 0;

	if (util_mkdirs(dir) < 0) {
		fprintf(stderr, "error: cannot create %s: %s\n", dir, strerror(errno));
		return 1;
	}
	for (size_t i = 0; outs != NULL && i < json_object_array_length(outs); i++)
		if (download(base, json_object_array_get_idx(outs, i), dir) < 0)
			rc = 1;
	fflush(stdout);
	return interrupted ? 130 : rc;
}

/* ---- submit ---- */

static int usage(const char *name);

/* The POST /api/generate body from the options, or NULL after saying why. */
static struct json_object *submit_body(const struct json_object *catalog, const struct opts *o)
{
	const struct json_object *fn = cli_catalog_function(catalog, o->pos[0]);
	struct json_object *body, *params;
	struct err err = {0};
	char key[33];

	if (fn == NULL) {
		struct buf names;

		buf_init(&names, 4096);
		for (size_t i = 0; i < json_object_array_length(json_get_arr(catalog, "functions"));
		     i++)
			buf_printf(&names, "%s\"%s\"", i ? ", " : "",
				   json_get_str(json_object_array_get_idx(
						json_get_arr(catalog, "functions"), i), "name"));
		fprintf(stderr, "error: unknown function \"%s\"; available: %s\n", o->pos[0],
			names.data ? names.data : "none");
		buf_cleanup(&names);
		return NULL;
	}
	params = json_object_new_object();
	for (size_t i = 0; i < o->nparams; i++) {
		if (cli_param_convert(fn, o->params[i], params, &err) < 0) {
			fprintf(stderr, "error: %s\n", err.msg);
			json_object_put(params);
			return NULL;
		}
	}
	body = json_object_new_object();
	json_put(body, "function", json_str(o->pos[0]));
	if (o->quality != NULL)
		json_put(body, "quality", json_str(o->quality));
	json_put(body, "params", params);
	/* Lets a retried POST find the job the first one may have made. */
	util_uuid4_hex(key);
	json_put(body, "idempotency_key", json_str(key));
	return body;
}

/* POSTs body, retrying once when the server could not be reached. */
static struct json_object *submit_post(const char *base, const struct json_object *body)
{
	char *url = xasprintf("%s/api/generate", base);
	struct json_object *o = NULL;
	struct err err = {0};
	long status = 0;
	int rc = cli_request(url, "POST", body, &status, &o, &err);

	if (rc < 0 && err.code == ERR_UNAVAILABLE && !interrupted) {
		err_clear(&err);
		pause_ms(500);
		rc = cli_request(url, "POST", body, &status, &o, &err);
	}
	free(url);
	if (rc < 0) {
		fprintf(stderr, "error: %s\n", err.msg);
		return NULL;
	}
	if (status >= 200 && status < 300 && json_get_str(o, "job_id") != NULL)
		return o;
	print_api_error(o, status);
	json_object_put(o);
	return NULL;
}

static void on_sigint(int sig)
{
	(void)sig;
	interrupted = 1;
}

static int cancel_after_interrupt(const char *base, const char *id)
{
	char *url = url_with(base, "%s/api/jobs/%s/cancel", id);
	struct json_object *o;

	interrupted = 0; /* let the cancel request itself through */
	o = api_ok(url, "POST", NULL);
	free(url);
	if (o != NULL && status_terminal(json_get_str(o, "status")))
		fprintf(stderr, "Cancelled job %s.\n", id);
	else if (o != NULL)
		fprintf(stderr, "Cancelling job %s: it stops in a moment.\n", id);
	json_object_put(o);
	return 130;
}

/* After the job ended: outputs saved, or the error explained. */
static int submit_finish(const char *base, const struct follow *f, const char *dir)
{
	const char *status = json_get_str(f->view, "status");
	const struct json_object *e = json_get_obj(f->view, "error");

	if (strcmp(status, "completed") == 0)
		return download_all(base, f->view, dir);
	if (strcmp(status, "cancelled") == 0 && e == NULL) {
		fprintf(stderr, "The job was cancelled.\n");
		return 1;
	}
	fprintf(stderr, "error: %s\n", json_get_str(e, "message") ? json_get_str(e, "message")
								 : "the job failed");
	if (json_get_str(e, "suggestion") != NULL)
		fprintf(stderr, "%s\n", json_get_str(e, "suggestion"));
	return 1;
}

static int submit_run(const char *base, const char *id, const char *dir)
{
	struct follow f;
	int rc;

	memset(&f, 0, sizeof f);
	cli_sse_init(&f.sse);
	buf_init(&f.errbody, 64 * 1024);
	f.tty = isatty(STDERR_FILENO);
	f.eta = -1;
	rc = follow_job(base, id, &f);
	if (f.drawn)
		fputc('\n', stderr);
	if (rc == 130)
		rc = cancel_after_interrupt(base, id);
	else if (rc == 0)
		rc = submit_finish(base, &f, dir);
	json_object_put(f.view);
	buf_cleanup(&f.errbody);
	cli_sse_cleanup(&f.sse);
	return rc;
}

static int cmd_submit(int argc, char **argv)
{
	struct sigaction sa, old;
	struct json_object *catalog, *body, *resp;
	struct opts o;
	const char *base;
	char *url, id[64];
	int rc = 1;

	if (opts_parse(argc, argv, "quality,param,out,server", 1, &o) < 0) {
		opts_cleanup(&o);
		return usage("submit");
	}
	base = cli_server_base(o.server);
	url = xasprintf("%s/api/functions", base);
	catalog = api_ok(url, "GET", NULL);
	free(url);
	body = catalog ? submit_body(catalog, &o) : NULL;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_sigint;
	sigaction(SIGINT, &sa, &old);
	resp = body ? submit_post(base, body) : NULL;
	if (resp != NULL) {
		snprintf(id, sizeof id, "%s", json_get_str(resp, "job_id"));
		fprintf(stderr, "Job %s\n", id);
		rc = interrupted ? cancel_after_interrupt(base, id)
				 : submit_run(base, id, o.out ? o.out : ".");
	} else if (catalog != NULL && body == NULL) {
		rc = 2; /* a param or the function name is wrong: nothing was sent */
	}
	sigaction(SIGINT, &old, NULL);
	json_object_put(resp);
	json_object_put(body);
	json_object_put(catalog);
	opts_cleanup(&o);
	return rc;
}

/* ---- jobs, job, cancel ---- */

/* "2024-05-01 12:34:56" of an ISO 8601 time, into out. */
static void short_time(const char *iso, char *out, size_t size)
{
	snprintf(out, size, "%.19s", iso ? iso : "");
	if (strlen(out) > 10 && out[10] == 'T')
		out[10] = ' ';
}

static int cmd_jobs(int argc, char **argv)
{
	struct json_object *o, *jobs;
	struct opts opt;
	char *url, *st, when[32];

	if (opts_parse(argc, argv, "status,limit,server", 0, &opt) < 0) {
		opts_cleanup(&opt);
		return usage("jobs");
	}
	st = curl_easy_escape(NULL, opt.status ? opt.status : "", 0);
	url = xasprintf("%s/api/jobs?limit=%s&status=%s", cli_server_base(opt.server),
			opt.limit ? opt.limit : "50", st ? st : "");
	curl_free(st);
	o = api_ok(url, "GET", NULL);
	free(url);
	opts_cleanup(&opt);
	if (o == NULL)
		return 1;
	jobs = json_get_arr(o, "jobs");
	printf("%-32s  %-9s  %4s  %-19s  %-20s  %s\n", "JOB", "STATUS", "DONE", "CREATED",
	       "FUNCTION", "QUALITY");
	for (size_t i = 0; jobs != NULL && i < json_object_array_length(jobs); i++) {
		const struct json_object *j = json_object_array_get_idx(jobs, i);

		short_time(json_get_str(j, "created_at"), when, sizeof when);
		printf("%-32s  %-9s  %3lld%%  %-19s  %-20.20s  %s\n", json_get_str(j, "job_id"),
		       json_get_str(j, "status"), (long long)json_get_int(j, "progress", 0), when,
		       json_get_str(j, "function"), json_get_str(j, "quality_label"));
	}
	json_object_put(o);
	return 0;
}

static void print_field(const char *name, const char *value)
{
	if (value != NULL && value[0] != '\0')
		printf("%-10s %s\n", name, value);
}

static void print_job(const char *base, const struct json_object *j)
{
	const struct json_object *outs = json_get_arr(j, "outputs");
	const struct json_object *e = json_get_obj(j, "error");
	char line[512];

	print_field("Job", json_get_str(j, "job_id"));
	snprintf(line, sizeof line, "%s, %s", json_get_str(j, "function"),
		 json_get_str(j, "quality_label"));
	print_field("Function", line);
	snprintf(line, sizeof line, "%s, %lld%%", json_get_str(j, "status"),
		 (long long)json_get_int(j, "progress", 0));
	print_field("Status", line);
	print_field("Message", json_get_str(j, "message"));
	if (!status_terminal(json_get_str(j, "status"))) {
		cli_progress_line(j, -1, line, sizeof line);
		print_field("Progress", line);
	}
	print_field("Created", json_get_str(j, "created_at"));
	print_field("Started", json_get_str(j, "started_at"));
	print_field("Finished", json_get_str(j, "finished_at"));
	for (size_t i = 0; outs != NULL && i < json_object_array_length(outs); i++) {
		snprintf(line, sizeof line, "%s%s", base,
			 json_get_str(json_object_array_get_idx(outs, i), "url"));
		print_field("Output", line);
	}
	print_field("Error", json_get_str(e, "message"));
	print_field("Advice", json_get_str(e, "suggestion"));
}

/* GET or POST base/api/jobs/ID[suffix]; prints the job; 0 or 1. */
static int job_request(int argc, char **argv, const char *name, const char *method,
		       const char *fmt)
{
	struct json_object *o;
	struct opts opt;
	const char *base;
	char *url;

	if (opts_parse(argc, argv, "server", 1, &opt) < 0) {
		opts_cleanup(&opt);
		return usage(name);
	}
	base = cli_server_base(opt.server);
	url = url_with(base, fmt, opt.pos[0]);
	o = api_ok(url, method, NULL);
	free(url);
	if (o != NULL)
		print_job(base, o);
	opts_cleanup(&opt);
	json_object_put(o);
	return o ? 0 : 1;
}

static int cmd_job(int argc, char **argv)
{
	return job_request(argc, argv, "job", "GET", "%s/api/jobs/%s");
}

static int cmd_cancel(int argc, char **argv)
{
	return job_request(argc, argv, "cancel", "POST", "%s/api/jobs/%s/cancel");
}

/* ---- functions ---- */

static void print_quality(const struct json_object *q, const char *def)
{
	const struct json_object *t = json_get_arr(q, "typical_seconds");
	struct json_object *measured = json_get(q, "measured_seconds");
	const char *key = json_get_str(q, "key");
	char typical[64] = "";

	/* What its jobs took, once they ran; what the registry expects before. */
	if (measured != NULL)
		snprintf(typical, sizeof typical, "about %.1f s",
			 json_object_get_double(measured));
	else if (t != NULL && json_object_array_length(t) == 2)
		snprintf(typical, sizeof typical, "%lld-%lld s",
			 (long long)json_object_get_int64(json_object_array_get_idx(t, 0)),
			 (long long)json_object_get_int64(json_object_array_get_idx(t, 1)));
	printf("    %-12s %-18s %-12s%s%s\n", key, json_get_str(q, "label"), typical,
	       def && key && strcmp(def, key) == 0 ? " (default)" : "",
	       json_get_bool(q, "available", 1) ? "" : " (unavailable)");
}

/* "int, default 1024, 256..2048" and the like, into b. */
static void param_text(const struct json_object *p, struct buf *b)
{
	const struct json_object *def = json_get(p, "default");
	const struct json_object *opts = json_get_arr(p, "options");

	buf_printf(b, "%s", json_get_str(p, "type"));
	if (json_get_bool(p, "required", 0))
		buf_puts(b, ", required");
	if (json_get_bool(p, "random", 0))
		buf_puts(b, ", default random");
	else if (def != NULL)
		buf_printf(b, ", default %s", json_object_get_string((struct json_object *)def));
	if (json_get(p, "min") != NULL || json_get(p, "max") != NULL)
		buf_printf(b, ", %s..%s",
			   json_get(p, "min") ? json_object_get_string(json_get(p, "min")) : "",
			   json_get(p, "max") ? json_object_get_string(json_get(p, "max")) : "");
	if (json_get(p, "max_length") != NULL)
		buf_printf(b, ", at most %lld characters",
			   (long long)json_get_int(p, "max_length", 0));
	if (opts != NULL) {
		buf_puts(b, ", one of: ");
		list_names(opts, b);
	}
}

static void print_function(const struct json_object *f)
{
	const struct json_object *qs = json_get_arr(f, "qualities");
	const struct json_object *ps = json_get_obj(f, "params");
	const char *desc = json_get_str(f, "description");

	printf("%s%s%s\n", json_get_str(f, "name"), desc ? ": " : "", desc ? desc : "");
	printf("  qualities:\n");
	for (size_t i = 0; qs != NULL && i < json_object_array_length(qs); i++)
		print_quality(json_object_array_get_idx(qs, i), json_get_str(f, "default_quality"));
	printf("  params:\n");
	if (ps == NULL)
		return;
	json_object_object_foreach((struct json_object *)ps, name, p) {
		struct buf b;

		buf_init(&b, 4096);
		param_text(p, &b);
		printf("    %-12s %s\n", name, b.data ? b.data : "");
		if (json_get_str(p, "description") != NULL)
			printf("    %-12s %s\n", "", json_get_str(p, "description"));
		buf_cleanup(&b);
	}
}

static int cmd_functions(int argc, char **argv)
{
	struct json_object *o, *fs;
	struct opts opt;
	char *url;

	if (opts_parse(argc, argv, "server", 0, &opt) < 0) {
		opts_cleanup(&opt);
		return usage("functions");
	}
	url = xasprintf("%s/api/functions", cli_server_base(opt.server));
	o = api_ok(url, "GET", NULL);
	free(url);
	opts_cleanup(&opt);
	if (o == NULL)
		return 1;
	fs = json_get_arr(o, "functions");
	for (size_t i = 0; fs != NULL && i < json_object_array_length(fs); i++) {
		if (i > 0)
			printf("\n");
		print_function(json_object_array_get_idx(fs, i));
	}
	json_object_put(o);
	return 0;
}

/* ---- the table ---- */

static const struct cli_command commands[] = {
	{"submit",
	 "fnrun submit FUNCTION [--quality Q] [--param NAME=VALUE]... [--out DIR] [--server URL]",
	 cmd_submit},
	{"jobs", "fnrun jobs [--status S] [--limit N] [--server URL]", cmd_jobs},
	{"job", "fnrun job ID [--server URL]", cmd_job},
	{"cancel", "fnrun cancel ID [--server URL]", cmd_cancel},
	{"functions", "fnrun functions [--server URL]", cmd_functions},
	{"docs", "fnrun docs --out DIR [--format md|html] [--server URL]", cli_docs},
};

const struct cli_command *cli_find(const char *name)
{
	for (size_t i = 0; name != NULL && i < sizeof commands / sizeof commands[0]; i++)
		if (strcmp(commands[i].name, name) == 0)
			return &commands[i];
	return NULL;
}

void cli_usage(FILE *out)
{
	for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
		fprintf(out, "       %s\n", commands[i].usage);
}

static int usage(const char *name)
{
	fprintf(stderr, "usage: %s\n", cli_find(name)->usage);
	return 2;
}

static int wants_help(int argc, char **argv)
{
	for (int i = 1; i < argc; i++)
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
			return 1;
	return 0;
}

int cli_main(int argc, char **argv)
{
	const struct cli_command *cmd = argc >= 2 ? cli_find(argv[1]) : NULL;
	int rc;

	if (cmd == NULL)
		return -1;
	if (wants_help(argc - 1, argv + 1)) {
		printf("usage: %s\n", cmd->usage);
		return 0;
	}
	curl_global_init(CURL_GLOBAL_DEFAULT);
	rc = cmd->fn(argc - 1, argv + 1);
	curl_global_cleanup();
	return rc;
}
