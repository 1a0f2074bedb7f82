/*
 * comfy_client.c - see comfy_client.h.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <png.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "comfy_client.h"
#include "util.h"

#define CC_START_MS 20000
#define CC_MAX_ARGS 48
#define CC_TR_MAX 4096 /* records in the transcript */

static int nworkers; /* started by this test process; names their dirs */

static void dir_for(char *out, size_t n, const char *name)
{
	if (nworkers <= 1)
		snprintf(out, n, "%s/%s", tu_tmpdir(), name);
	else
		snprintf(out, n, "%s/%s-%d", tu_tmpdir(), name, nworkers);
}

void cc_spawn(struct cc_worker *w, const char *const *args)
{
	static const char *const sim[] = {"--model", "sim", NULL};
	char port[16];
	char *argv[CC_MAX_ARGS];
	int argc = 0;
	pid_t parent = getpid(), pid;

	memset(w, 0, sizeof *w);
	nworkers++;
	dir_for(w->out, sizeof w->out, "out");
	dir_for(w->temp, sizeof w->temp, "temp");
	dir_for(w->in, sizeof w->in, "in");
	dir_for(w->log, sizeof w->log, "worker.log");
	w->port = tu_free_port();
	ck_assert_int_gt(w->port, 0);
	snprintf(port, sizeof port, "%d", w->port);
	argv[argc++] = (char *)tu_bin("fnrun-worker");
	for (const char *const *a = args ? args : sim; *a && argc < CC_MAX_ARGS - 10; a++)
		argv[argc++] = (char *)*a;
	argv[argc++] = "--port";
	argv[argc++] = port;
	argv[argc++] = "--output-directory";
	argv[argc++] = w->out;
	argv[argc++] = "--temp-directory";
	argv[argc++] = w->temp;
	argv[argc++] = "--input-directory";
	argv[argc++] = w->in;
	argv[argc] = NULL;
	ck_assert_msg(access(argv[0], X_OK) == 0, "%s is not built", argv[0]);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		int fd = open(w->log, O_WRONLY | O_CREAT | O_APPEND, 0644);

		setpgid(0, 0);
		/* Check skips the teardown of a failed test: die with it. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(127);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
			close(fd);
		}
		execv(argv[0], argv);
		_exit(127);
	}
	setpgid(pid, pid);
	w->pid = pid;
}

void cc_start(struct cc_worker *w, const char *const *args)
{
	cc_spawn(w, args);
	ck_assert_msg(tu_wait_http(w->port, "/health", 200, CC_START_MS) == 0,
		      "fnrun-worker did not answer GET /health within %d ms; log:\n%s",
		      CC_START_MS, cc_log_tail(w));
}

int cc_stop(struct cc_worker *w)
{
	int status;

	if (w->pid <= 0)
		return -1;
	kill(w->pid, SIGTERM);
	status = tu_wait_exit(w->pid, 5000);
	if (status == -1)
		status = tu_stop(w->pid, 1000);
	w->pid = 0;
	return status;
}

void cc_stop_clean(struct cc_worker *w)
{
	int status = cc_stop(w);

	ck_assert_msg(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0,
		      "fnrun-worker did not exit cleanly on SIGTERM (status 0x%x); log:\n%s",
		      (unsigned)status, cc_log_tail(w));
}

const char *cc_log_tail(const struct cc_worker *w)
{
	static char tail[4097];
	size_t len = 0;
	char *s = tu_read_file(w->log, &len);

	tail[0] = '\0';
	if (s) {
		snprintf(tail, sizeof tail, "%s", len > 4096 ? s + len - 4096 : s);
		free(s);
	}
	return tail;
}

/* ---- HTTP ---- */

/* Reads the answer on fd until EOF (5 s without a byte ends it too). */
static int read_answer(int fd, struct tu_resp *resp)
{
	struct timeval tv = {5, 0};

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	return tu_read_response(fd, resp);
}

int cc_http(int port, const char *method, const char *path, const char *headers,
	    const char *body, size_t len, struct tu_resp *resp)
{
	char *head;
	int fd, rc;

	memset(resp, 0, sizeof *resp);
	fd = tu_connect(port);
	if (fd < 0)
		return -1;
	head = xasprintf("%s %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n"
			 "%s%sContent-Length: %zu\r\n\r\n",
			 method, path, port, headers ? headers : "",
			 body ? "Content-Type: application/json\r\n" : "", body ? len : 0);
	/* A refused body may be cut short by the server: still read its answer. */
	if (tu_write_all(fd, head, strlen(head)) == 0 && body)
		tu_write_all(fd, body, len);
	free(head);
	rc = read_answer(fd, resp);
	close(fd);
	return rc;
}

struct json_object *cc_parse(const char *text, size_t len)
{
	struct json_object *o = NULL;
	struct err e = {0};

	ck_assert_msg(text != NULL, "no text to parse");
	ck_assert_msg(json_parse(text, len, JSON_MAX_DEPTH, &o, &e) == 0, "not JSON (%s): %.400s",
		      e.msg, text);
	return o;
}

char *cc_get_text(int port, const char *path)
{
	struct tu_resp r;
	char *body;

	ck_assert_msg(cc_http(port, "GET", path, NULL, NULL, 0, &r) == 0, "GET %s: no answer", path);
	ck_assert_msg(r.status == 200, "GET %s: status %d, body %.300s", path, r.status, r.body);
	body = xstrdup(r.body);
	tu_resp_free(&r);
	return body;
}

struct json_object *cc_get_json(int port, const char *path)
{
	char *text = cc_get_text(port, path);
	struct json_object *o = cc_parse(text, strlen(text));

	free(text);
	return o;
}

void cc_post_empty(int port, const char *path, const char *body, int status)
{
	struct tu_resp r;

	ck_assert_msg(cc_http(port, "POST", path, NULL, body, strlen(body), &r) == 0,
		      "POST %s: no answer", path);
	ck_assert_msg(r.status == status, "POST %s %s: status %d, expected %d; body %.300s", path,
		      body, r.status, status, r.body);
	ck_assert_msg(r.len == 0, "POST %s %s: expected an empty body, got %.300s", path, body,
		      r.body);
	tu_resp_free(&r);
}

/* ---- transcript ---- */

static struct json_object *records[CC_TR_MAX];

static void tr_load(void)
{
	char path[1024];
	char *text, *line, *save = NULL;

	if (records[1] != NULL)
		return;
	snprintf(path, sizeof path, "%s/fixtures/comfyui/comfy-transcript.jsonl", tu_shared());
	text = tu_read_file(path, NULL);
	ck_assert_msg(text != NULL, "cannot read the ComfyUI transcript %s", path);
	for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		struct json_object *o = cc_parse(line, strlen(line));
		int64_t seq = json_get_int(o, "seq", -1);

		ck_assert_msg(seq > 0 && seq < CC_TR_MAX, "transcript record without seq");
		records[seq] = o;
	}
	free(text);
}

struct json_object *cc_tr(int seq)
{
	tr_load();
	ck_assert_msg(seq > 0 && seq < CC_TR_MAX && records[seq], "no transcript record %d", seq);
	return records[seq];
}

const char *cc_tr_str(int seq, const char *field)
{
	const char *s = json_get_str(cc_tr(seq), field);

	ck_assert_msg(s != NULL, "transcript record %d has no \"%s\"", seq, field);
	return s;
}

char *cc_tr_request(int seq)
{
	struct json_object *req = json_get(cc_tr(seq), "req_json");

	ck_assert_msg(req != NULL, "transcript record %d has no req_json", seq);
	return cc_dump(req);
}

/* ---- workflows ---- */

struct json_object *cc_weightless(void)
{
	char path[1024], *text;
	size_t len;
	struct json_object *o;

	snprintf(path, sizeof path, "%s/fixtures/comfyui/weightless-workflow.json", tu_shared());
	text = tu_read_file(path, &len);
	ck_assert_msg(text != NULL, "cannot read %s", path);
	o = cc_parse(text, len);
	free(text);
	return o;
}

struct json_object *cc_sim_prompt(long long seed, int steps, int step_ms, const char *fail,
				  int size)
{
	char *text = xasprintf(
		"{\"1\": {\"class_type\": \"SimTextEncode\", \"inputs\": {\"text\": \"a lighthouse\"}},"
		" \"2\": {\"class_type\": \"SimSampler\", \"inputs\": {\"conditioning\": [\"1\", 0],"
		" \"seed\": %lld, \"steps\": %d, \"width\": %d, \"height\": %d, \"step_ms\": %d,"
		" \"fail\": \"%s\"}},"
		" \"3\": {\"class_type\": \"SaveImage\", \"inputs\": {\"images\": [\"2\", 0],"
		" \"filename_prefix\": \"sim\"}}}",
		seed, steps, size, size, step_ms, fail);
	struct json_object *o = cc_parse(text, strlen(text));

	free(text);
	return o;
}

struct json_object *cc_request(struct json_object *prompt, const char *client_id)
{
	struct json_object *b = json_object_new_object();

	json_put(b, "prompt", prompt);
	if (client_id)
		json_put(b, "client_id", json_str(client_id));
	return b;
}

char *cc_submit(int port, const struct json_object *body, struct tu_resp *resp)
{
	char *text = cc_dump(body), *id = NULL;

	ck_assert_msg(cc_http(port, "POST", "/prompt", NULL, text, strlen(text), resp) == 0,
		      "POST /prompt: no answer");
	free(text);
	if (resp->status == 200) {
		struct json_object *o = cc_parse(resp->body, resp->len);
		const char *s = json_get_str(o, "prompt_id");

		ck_assert_msg(s != NULL, "200 without prompt_id: %s", resp->body);
		id = xstrdup(s);
		json_object_put(o);
	}
	return id;
}

char *cc_submit_ok(int port, const struct json_object *body)
{
	struct tu_resp r;
	char *id = cc_submit(port, body, &r);

	ck_assert_msg(id != NULL, "POST /prompt: status %d, body %.600s", r.status, r.body);
	tu_resp_free(&r);
	return id;
}

/* ---- WebSocket ---- */

int cc_recv(struct tws *t, int ms, struct cc_msg *m)
{
	memset(m, 0, sizeof *m);
	if (tws_recv(t, ms, &m->opcode, &m->raw, &m->len) != 0) {
		free(m->raw);
		m->raw = NULL;
		return -1;
	}
	m->type = "";
	if (m->opcode == TWS_TEXT) {
		m->json = cc_parse(m->raw, m->len);
		m->type = json_get_str(m->json, "type");
		m->data = json_get_obj(m->json, "data");
		ck_assert_msg(m->type && m->data, "frame without type or data: %s", m->raw);
	}
	return 0;
}

void cc_next(struct tws *t, int ms, struct cc_msg *m)
{
	ck_assert_msg(cc_recv(t, ms, m) == 0, "no WebSocket message within %d ms", ms);
}

void cc_msg_free(struct cc_msg *m)
{
	json_object_put(m->json);
	free(m->raw);
	memset(m, 0, sizeof *m);
}

struct tws *cc_ws_open(int port, const char *prefix, const char *cid, char **first)
{
	char path[512];
	struct tws *t;
	struct cc_msg m;
	struct json_object *sid;

	if (cid)
		snprintf(path, sizeof path, "%s/ws?clientId=%s", prefix, cid);
	else
		snprintf(path, sizeof path, "%s/ws", prefix);
	t = tws_connect(port, path, 5000);
	ck_assert_msg(t != NULL, "WebSocket %s: no 101", path);
	cc_next(t, 5000, &m);
	ck_assert_msg(strcmp(m.type, "status") == 0, "first frame is not status: %s", m.raw);
	sid = json_get(m.data, "sid");
	ck_assert_msg(sid && json_object_is_type(sid, json_type_string), "first status has no sid: %s",
		      m.raw);
	if (cid)
		ck_assert_str_eq(json_object_get_string(sid), cid);
	if (first)
		*first = xstrdup(m.raw);
	cc_msg_free(&m);
	return t;
}

int cc_is_done(const struct cc_msg *m, const char *pid)
{
	struct json_object *node;
	const char *p;

	if (strcmp(m->type, "executing") != 0)
		return 0;
	if (!json_object_object_get_ex(m->data, "node", &node) || node != NULL)
		return 0;
	p = json_get_str(m->data, "prompt_id");
	return p && strcmp(p, pid) == 0;
}

const char *cc_node(const struct cc_msg *m)
{
	return m->data ? json_get_str(m->data, "node") : NULL;
}

static void log_push(struct cc_log *log, struct cc_msg *m)
{
	if (log->n == log->cap) {
		log->cap = log->cap ? log->cap * 2 : 64;
		log->v = xrealloc(log->v, log->cap * sizeof *log->v);
	}
	log->v[log->n++] = *m;
	memset(m, 0, sizeof *m);
}

static int64_t mono_ms(void)
{
	return (int64_t)util_mono_ms();
}

void cc_collect(struct tws *t, const char *pid, int ms, struct cc_log *log)
{
	int64_t deadline = mono_ms() + ms;

	for (;;) {
		struct cc_msg m;
		int64_t left = deadline - mono_ms();
		int done;

		ck_assert_msg(left > 0 && cc_recv(t, (int)left, &m) == 0,
			      "prompt %s: no executing{node: null} within %d ms; got: %s", pid, ms,
			      cc_log_types(log));
		done = cc_is_done(&m, pid);
		log_push(log, &m);
		if (done)
			return;
	}
}

void cc_wait_type(struct tws *t, const char *type, int ms, struct cc_msg *m)
{
	int64_t deadline = mono_ms() + ms;

	for (;;) {
		int64_t left = deadline - mono_ms();

		ck_assert_msg(left > 0 && cc_recv(t, (int)left, m) == 0,
			      "no \"%s\" message within %d ms", type, ms);
		if (strcmp(m->type, type) == 0)
			return;
		cc_msg_free(m);
	}
}

void cc_log_free(struct cc_log *log)
{
	for (size_t i = 0; i < log->n; i++)
		cc_msg_free(&log->v[i]);
	free(log->v);
	memset(log, 0, sizeof *log);
}

const char *cc_log_types(const struct cc_log *log)
{
	static char s[8192];
	size_t off = 0;

	s[0] = '\0';
	for (size_t i = 0; log && i < log->n && off < sizeof s - 64; i++) {
		const struct cc_msg *m = &log->v[i];
		const char *node = cc_node(m);

		off += (size_t)snprintf(s + off, sizeof s - off, "%s%s%s%s", i ? "," : "",
					m->opcode == TWS_BINARY ? "binary" : m->type,
					node ? ":" : "", node ? node : "");
	}
	return s;
}

void cc_fence(int port, struct tws *t, int q)
{
	cc_post_empty(port, "/queue", "{\"clear\": true}", 200);
	cc_expect_status(t, q);
}

void cc_expect_status(struct tws *t, int q)
{
	struct cc_msg m;
	char want[128];

	cc_next(t, 5000, &m);
	snprintf(want, sizeof want,
		 "{\"type\": \"status\", \"data\": {\"status\": {\"exec_info\": "
		 "{\"queue_remaining\": %d}}}}",
		 q);
	ck_assert_msg(strcmp(m.raw, want) == 0,
		      "expected only a status frame (queue_remaining %d), got: %.600s", q, m.raw);
	cc_msg_free(&m);
}

/* ---- comparing ---- */

char *cc_norm(const char *text)
{
	static const char ts[] = "\"timestamp\": ", tmp[] = "ComfyUI_temp_";
	size_t n = strlen(text), o = 0;
	char *out = xmalloc(n + 1);

	for (size_t i = 0; i < n;) {
		if (strncmp(text + i, ts, sizeof ts - 1) == 0) {
			size_t j = i + sizeof ts - 1, k = j;

			while (isdigit((unsigned char)text[k]))
				k++;
			ck_assert_msg(k > j && text[k] != '.' && text[k] != 'e',
				      "timestamp is not an integer: %.80s", text + i);
			memcpy(out + o, ts, sizeof ts - 1);
			o += sizeof ts - 1;
			out[o++] = '0';
			i = k;
			continue;
		}
		if (strncmp(text + i, tmp, sizeof tmp - 1) == 0 && n - i >= sizeof tmp + 5) {
			size_t j = i + sizeof tmp - 1;
			int letters = 1;

			for (size_t k = j; k < j + 5; k++)
				letters &= islower((unsigned char)text[k]) != 0;
			if (letters && text[j + 5] == '_') {
				memcpy(out + o, "ComfyUI_temp_xxxxx", 18);
				o += 18;
				i = j + 5;
				continue;
			}
		}
		out[o++] = text[i++];
	}
	out[o] = '\0';
	return out;
}

void cc_assert_pyjson(const char *text)
{
	struct json_object *o = cc_parse(text, strlen(text));
	char *again = cc_dump(o);

	ck_assert_msg(strcmp(again, text) == 0,
		      "not in Python json.dumps form:\n got: %.500s\nwant: %.500s", text, again);
	free(again);
	json_object_put(o);
}

char *cc_keys(const struct json_object *o)
{
	struct buf b;

	buf_init(&b, 1 << 20);
	if (o && json_object_is_type(o, json_type_object)) {
		json_object_object_foreach((struct json_object *)o, k, v) {
			(void)v;
			buf_printf(&b, "%s%s", b.len ? "," : "", k);
		}
	}
	if (b.data == NULL)
		return xstrdup("");
	return buf_steal(&b);
}

static int cmp_str(const void *a, const void *b)
{
	const char *x = json_object_get_string(*(struct json_object *const *)a);
	const char *y = json_object_get_string(*(struct json_object *const *)b);

	return strcmp(x ? x : "", y ? y : "");
}

void cc_sort_strings(struct json_object *arr)
{
	ck_assert_msg(arr && json_object_is_type(arr, json_type_array), "not an array");
	json_object_array_sort(arr, cmp_str);
}

char *cc_dump(const struct json_object *o)
{
	char *s = json_dumps(o);

	ck_assert_msg(s != NULL, "json_dumps failed");
	return s;
}

/* ---- files ---- */

int cc_png_decode(const void *data, size_t len, int *width, int *height, int *color_type)
{
	png_image img;
	void *pixels;
	int ok;

	if (len < 26 || memcmp(data, "\x89PNG\r\n\x1a\n", 8) != 0)
		return -1;
	*color_type = ((const unsigned char *)data)[25];
	memset(&img, 0, sizeof img);
	img.version = PNG_IMAGE_VERSION;
	if (!png_image_begin_read_from_memory(&img, data, len))
		return -1;
	img.format = PNG_FORMAT_RGB;
	pixels = malloc(PNG_IMAGE_SIZE(img));
	ok = pixels && png_image_finish_read(&img, NULL, pixels, 0, NULL);
	free(pixels);
	png_image_free(&img);
	if (!ok)
		return -1;
	*width = (int)img.width;
	*height = (int)img.height;
	return 0;
}

int cc_count_files(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int n = 0;

	if (d == NULL)
		return -1;
	while ((e = readdir(d)) != NULL)
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			n++;
	closedir(d);
	return n;
}
