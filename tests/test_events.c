/*
 * test_events.c - job events end to end, through a real `fnrun serve` and
 * real sim model servers: the SSE stream of one job and of several, replay
 * after Last-Event-ID, the WebSocket /api/ws protocol, and what the events
 * say: the function's plain-language messages (or the defaults), the live
 * queue position, cancellation, out of memory (retried one quality down,
 * or a failure that suggests it) and the time estimates.
 *
 * Every wait has a deadline; the tests never sleep to synchronise. No event
 * may name a model, a runner, a command or CUDA.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "gwtest.h"
#include "testutil.h"
#include "tws.h"

#define MAX_EVENTS 512
#define WAIT_MS 20000 /* deadline for a job to get somewhere */

static struct gw g;

/* One event, from SSE or WebSocket. */
struct evt {
	unsigned long long id;   /* 0: none (a WebSocket error) */
	char type[16];           /* state, progress, error */
	struct json_object *data; /* owned */
	char *raw;               /* the event as received; owned */
};

struct evlist {
	struct evt v[MAX_EVENTS];
	size_t n;
};

/* The messages of Create Image in the registry below. */
#define M_QUEUED "Waiting for a free canvas"
#define M_PREPARING "Preparing your canvas..."
#define M_RUNNING "Creating your image..."
#define M_FINISHING "Adding final touches to your image..."
#define M_DONE "Your image is ready"
#define M_CANCELLED "Stopped as you asked"

/* The defaults, for Create Sketch, which has no messages. */
static const char *const default_msgs[] = {
	"Waiting", "Getting ready...", "Working on it...", "Adding final touches...", "Done",
	"Cancelled",
};
static const char *const image_msgs[] = {
	M_QUEUED, M_PREPARING, M_RUNNING, M_FINISHING, M_DONE, M_CANCELLED,
};
enum { MSG_QUEUED, MSG_PREPARING, MSG_RUNNING, MSG_FINISHING, MSG_DONE, MSG_CANCELLED };

/*
 * A failed check ends the test process at once, without teardown, and
 * Check kills its process group. The reaper, in a group of its own, gets
 * the gateway's pid through a pipe and stops it when the pipe's other end
 * closes with the test, so a failure leaves no server behind.
 */
static int reaper_fd = -1;

static void reaper_run(int fd)
{
	pid_t pid = 0, next;

	while (read(fd, &next, sizeof next) == (ssize_t)sizeof next)
		pid = next;
	if (pid <= 0)
		_exit(0);
	kill(pid, SIGTERM);
	for (int i = 0; i < 200 && kill(pid, 0) == 0; i++)
		gw_sleep_ms(50); /* cleanup after a failure, not synchronisation */
	kill(pid, SIGKILL);
	_exit(0);
}

static void reaper_start(void)
{
	int p[2];
	pid_t pid;

	ck_assert_int_eq(pipe(p), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		setpgid(0, 0);
		close(p[1]);
		reaper_run(p[0]);
	}
	close(p[0]);
	reaper_fd = p[1];
}

/* Tells the reaper which gateway to stop; 0: none. */
static void reaper_watch(pid_t pid)
{
	ck_assert_int_eq(write(reaper_fd, &pid, sizeof pid), (ssize_t)sizeof pid);
}

static void setup(void)
{
	memset(&g, 0, sizeof g);
	snprintf(g.dir, sizeof g.dir, "%s", tu_tmpdir());
	/* Bigger than a thumbnail, so that "Adding final touches" has a phase to name. */
	gw_write_workflow_size(&g, "wf", "none", 320);
	gw_write_workflow(&g, "wf-oom", "oom");
	reaper_start();
}

static void start(void)
{
	gw_start(&g);
	reaper_watch(g.pid);
}

/* Stops the gateway; its exit status must be 0 (a sanitizer report is not). */
static void stop(void)
{
	int status = gw_stop(&g, 8000);

	reaper_watch(0);
	ck_assert_msg(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0,
		      "fnrun serve did not exit cleanly (status %d); see %s/gateway.log", status,
		      g.dir);
}

static void teardown(void)
{
	if (g.pid > 0)
		stop();
	tu_rmrf(g.dir);
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * Create Image (with messages; fn_extra adds keys) on img_low and img_std,
 * Create Sketch (no messages) on sketch. *_cmd are extra worker flags,
 * *_extra extra model keys.
 */
static void registry(const char *fn_extra, const char *std_typical, const char *low_cmd,
		     const char *std_cmd, const char *std_wf, const char *std_extra)
{
	char text[8192];

	snprintf(text, sizeof text,
		 "functions:\n"
		 "  Create Image:\n"
		 "    params:\n"
		 "      prompt: {type: string, required: true}\n"
		 "    messages:\n"
		 "      queued: " M_QUEUED "\n"
		 "      preparing: " M_PREPARING "\n"
		 "      running: " M_RUNNING "\n"
		 "      finishing: " M_FINISHING "\n"
		 "      done: " M_DONE "\n"
		 "      cancelled: " M_CANCELLED "\n"
		 "%s"
		 "    qualities:\n"
		 "      low: {label: Fast Preview, typical_seconds: [1, 2]}\n"
		 "      standard: {label: Balanced, typical_seconds: %s}\n"
		 "  Create Sketch:\n"
		 "    params:\n"
		 "      prompt: {type: string, required: true}\n"
		 "    qualities:\n"
		 "      low: {label: Fast Preview, typical_seconds: [1, 2]}\n"
		 "models:\n"
		 "  img_low:\n"
		 "    function: Create Image\n"
		 "    quality: low\n"
		 "    command: [\"{bindir}/fnrun-worker\", --model, sim, %s, --port, \"{port}\"]\n"
		 "    workflow: wf.json\n"
		 "    bind: {prompt: \"1.inputs.text\"}\n"
		 "  img_std:\n"
		 "    function: Create Image\n"
		 "    quality: standard\n"
		 "    command: [\"{bindir}/fnrun-worker\", --model, sim, %s, --port, \"{port}\"]\n"
		 "    workflow: %s\n"
		 "    bind: {prompt: \"1.inputs.text\"}\n"
		 "%s"
		 "  sketch:\n"
		 "    function: Create Sketch\n"
		 "    quality: low\n"
		 "    command: [\"{bindir}/fnrun-worker\", --model, sim, --step-ms, \"60\", --port, \"{port}\"]\n"
		 "    workflow: wf.json\n"
		 "    bind: {prompt: \"1.inputs.text\"}\n",
		 fn_extra, std_typical, low_cmd, std_cmd, std_wf, std_extra);
	gw_write_registry(&g, text);
}

/* The usual fixture: img_std takes 8 steps of 100 ms, img_low of 20 ms. */
static void start_default(void)
{
	registry("", "[1, 3]", "--step-ms, \"20\"", "--step-ms, \"100\"", "wf.json", "");
	start();
}

/*
 * Submits a job with a prompt of its own (the model server would answer a
 * repeated prompt from its cache, at once). *reply (if not NULL) gets the
 * answer; caller owns it and the id.
 */
static char *submit(const char *function, const char *quality, struct json_object **reply)
{
	static int n;
	char body[512];
	struct json_object *o;
	int status;
	char *id;

	snprintf(body, sizeof body,
		 "{\"function\": \"%s\", \"quality\": \"%s\", \"params\": {\"prompt\": \"job %d\"}}",
		 function, quality, ++n);
	o = gw_json(&g, "POST", "/api/generate", body, &status);
	ck_assert_msg(status == 202, "submit answered %d", status);
	id = strdup(gw_str(o, "job_id"));
	if (reply != NULL)
		*reply = o;
	else
		json_object_put(o);
	return id;
}

static void cancel(const char *id)
{
	char path[128];
	int status;

	snprintf(path, sizeof path, "/api/jobs/%s/cancel", id);
	json_object_put(gw_json(&g, "POST", path, "", &status));
	ck_assert_int_eq(status, 200);
}

static struct json_object *obj(struct json_object *o, const char *key)
{
	struct json_object *v = NULL;

	json_object_object_get_ex(o, key, &v);
	return v;
}

/* No event may name a model, a runner, a command or CUDA. */
static void assert_plain(const char *raw)
{
	static const char *const banned[] = {
		"img_low", "img_std", "sketch\"", "fnrun-worker", "runner", "CUDA", "cuda",
		"OutOfMemory", "--model", "step-ms", "model_id",
	};

	for (size_t i = 0; i < sizeof banned / sizeof banned[0]; i++)
		ck_assert_msg(strstr(raw, banned[i]) == NULL, "an event names \"%s\": %s", banned[i],
			      raw);
}

static void evlist_free(struct evlist *l)
{
	for (size_t i = 0; i < l->n; i++) {
		json_object_put(l->v[i].data);
		free(l->v[i].raw);
	}
	l->n = 0;
}

static struct evt *evlist_add(struct evlist *l)
{
	ck_assert_uint_lt(l->n, MAX_EVENTS);
	memset(&l->v[l->n], 0, sizeof l->v[0]);
	return &l->v[l->n++];
}

/* ---- a blocking SSE client with deadlines ---- */

struct sse {
	int fd;
	struct buf raw;  /* bytes read, not yet de-chunked */
	struct buf text; /* the body, not yet parsed into events */
	int ended;       /* the last chunk or EOF came */
};

/* Reads what arrives before the deadline into raw. 0, or -1 on timeout. */
static int sse_fill(struct sse *s, int64_t deadline)
{
	struct pollfd p = {.fd = s->fd, .events = POLLIN};
	int64_t left = deadline - now_ms();
	char chunk[16384];
	ssize_t n;

	if (poll(&p, 1, left > 0 ? (int)left : 0) <= 0)
		return -1;
	n = read(s->fd, chunk, sizeof chunk);
	if (n <= 0) {
		s->ended = 1;
		return 0;
	}
	ck_assert_int_eq(buf_append(&s->raw, chunk, (size_t)n), 0);
	return 0;
}

/* Moves whole chunks from raw to text (chunked transfer coding). */
static void sse_dechunk(struct sse *s)
{
	while (s->raw.len > 0) {
		char *crlf = memmem(s->raw.data, s->raw.len, "\r\n", 2);
		size_t size, head;

		if (crlf == NULL)
			return;
		size = strtoul(s->raw.data, NULL, 16);
		head = (size_t)(crlf - s->raw.data) + 2;
		if (size == 0) {
			s->ended = 1;
			buf_consume(&s->raw, s->raw.len);
			return;
		}
		if (s->raw.len < head + size + 2)
			return;
		ck_assert_int_eq(buf_append(&s->text, s->raw.data + head, size), 0);
		buf_consume(&s->raw, head + size + 2);
	}
}

/* Opens GET path as an event stream; last_id may be NULL. */
static struct sse *sse_open(const char *path, const char *last_id)
{
	struct sse *s = calloc(1, sizeof *s);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)g.port)};
	int64_t deadline = now_ms() + 5000;
	char req[1024], *end;

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	buf_init(&s->raw, 16 << 20);
	buf_init(&s->text, 16 << 20);
	s->fd = socket(AF_INET, SOCK_STREAM, 0);
	ck_assert_int_eq(connect(s->fd, (struct sockaddr *)&a, sizeof a), 0);
	snprintf(req, sizeof req,
		 "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n%s%s%s\r\n",
		 path, last_id ? "Last-Event-ID: " : "", last_id ? last_id : "",
		 last_id ? "\r\n" : "");
	ck_assert_int_eq(write(s->fd, req, strlen(req)), (ssize_t)strlen(req));
	while ((s->raw.len == 0 || memmem(s->raw.data, s->raw.len, "\r\n\r\n", 4) == NULL) &&
	       !s->ended)
		ck_assert_msg(sse_fill(s, deadline) == 0, "no answer to GET %s", path);
	ck_assert_msg(s->raw.len > 0 && strncmp(s->raw.data, "HTTP/1.1 200", 12) == 0,
		      "GET %s: %s", path, s->raw.data ? s->raw.data : "(nothing)");
	ck_assert_ptr_nonnull(strstr(s->raw.data, "text/event-stream"));
	end = memmem(s->raw.data, s->raw.len, "\r\n\r\n", 4);
	buf_consume(&s->raw, (size_t)(end - s->raw.data) + 4);
	return s;
}

static void sse_close(struct sse *s)
{
	close(s->fd);
	buf_cleanup(&s->raw);
	buf_cleanup(&s->text);
	free(s);
}

static struct json_object *parse_line(const char *p, size_t n)
{
	char *line = strndup(p, n);
	struct json_object *o = json_tokener_parse(line);

	free(line);
	return o;
}

/* Parses one block of lines into e; 0 when it is only a comment or retry:. */
static int sse_parse(const char *block, struct evt *e)
{
	int ndata = 0;

	for (const char *p = block; *p;) {
		size_t n = strcspn(p, "\n");

		if (strncmp(p, "id: ", 4) == 0)
			e->id = strtoull(p + 4, NULL, 10);
		else if (strncmp(p, "event: ", 7) == 0)
			snprintf(e->type, sizeof e->type, "%.*s", (int)n - 7, p + 7);
		else if (strncmp(p, "data: ", 6) == 0 && ndata++ == 0)
			e->data = parse_line(p + 6, n - 6);
		else if (strncmp(p, "data: ", 6) == 0)
			; /* a second data line: counted, refused below */
		else
			ck_assert_msg(p[0] == ':' || strncmp(p, "retry: ", 7) == 0,
				      "unexpected line in %s", block);
		p += n + (p[n] == '\n');
	}
	ck_assert_msg(ndata <= 1, "data is not a single line: %s", block);
	if (ndata == 0)
		return 0;
	ck_assert_msg(e->data != NULL && e->id > 0 && e->type[0], "bad event: %s", block);
	e->raw = strdup(block);
	assert_plain(block);
	return 1;
}

/* The next event into a new entry of l: 0, or 1 when the stream ended, -1 on timeout. */
static int sse_next(struct sse *s, struct evlist *l, int timeout_ms)
{
	int64_t deadline = now_ms() + timeout_ms;

	for (;;) {
		char *sep;

		sse_dechunk(s);
		sep = s->text.len ? memmem(s->text.data, s->text.len, "\n\n", 2) : NULL;
		if (sep != NULL) {
			char *block = strndup(s->text.data, (size_t)(sep - s->text.data));
			struct evt e = {0};
			int got = sse_parse(block, &e);

			buf_consume(&s->text, (size_t)(sep - s->text.data) + 2);
			free(block);
			if (got) {
				*evlist_add(l) = e;
				return 0;
			}
			continue;
		}
		if (s->ended)
			return 1;
		if (sse_fill(s, deadline) < 0)
			return -1;
	}
}

/* Reads the stream to its end (it ends after its jobs' final states). */
static void sse_read_all(struct sse *s, struct evlist *l)
{
	int r;

	do
		r = sse_next(s, l, WAIT_MS);
	while (r == 0);
	ck_assert_msg(r == 1, "the stream did not end");
}

/* ---- the WebSocket client's side ---- */

/*
 * The next message that is not a ping, into a new entry of l; 0, 1 when
 * the server closed the socket, -1 on timeout.
 */
static int ws_next(struct tws *t, struct evlist *l, int timeout_ms)
{
	int64_t deadline = now_ms() + timeout_ms;

	for (;;) {
		int64_t left = deadline - now_ms();
		char *data = NULL;
		size_t len;
		int op, r = tws_recv(t, left > 0 ? (int)left : 0, &op, &data, &len);
		struct json_object *o, *v;
		struct evt *e;

		if (r != 0)
			return r;
		ck_assert_int_eq(op, TWS_TEXT);
		o = json_tokener_parse(data);
		ck_assert_msg(o != NULL && gw_str(o, "event") != NULL, "not an event: %s", data);
		if (strcmp(gw_str(o, "event"), "ping") == 0) {
			json_object_put(o);
			free(data);
			continue;
		}
		assert_plain(data);
		e = evlist_add(l);
		snprintf(e->type, sizeof e->type, "%s", gw_str(o, "event"));
		if (json_object_object_get_ex(o, "id", &v))
			e->id = (unsigned long long)json_object_get_int64(v);
		e->data = json_object_get(obj(o, "data"));
		e->raw = data;
		ck_assert_ptr_nonnull(e->data);
		json_object_put(o);
		return 0;
	}
}

static const char *ev_job(const struct evt *e)
{
	return gw_str(e->data, "job_id");
}

static int ev_terminal(const struct evt *e)
{
	const char *s = gw_str(e->data, "status");

	return strcmp(e->type, "state") == 0 && s != NULL &&
	       (strcmp(s, "completed") == 0 || strcmp(s, "failed") == 0 ||
		strcmp(s, "cancelled") == 0);
}

/* Reads WebSocket events until job id sends its final state. */
static void ws_read_until_final(struct tws *t, struct evlist *l, const char *id)
{
	for (;;) {
		ck_assert_msg(ws_next(t, l, WAIT_MS) == 0, "job %s never finished on the socket", id);
		if (ev_job(&l->v[l->n - 1]) && strcmp(ev_job(&l->v[l->n - 1]), id) == 0 &&
		    ev_terminal(&l->v[l->n - 1]))
			return;
	}
}

static struct tws *ws_open(const char *query)
{
	char path[4096];
	struct tws *t;

	snprintf(path, sizeof path, "/api/ws%s", query);
	t = tws_connect(g.port, path, 5000);
	ck_assert_msg(t != NULL, "no WebSocket at %s", path);
	return t;
}

static void ws_say(struct tws *t, const char *text)
{
	ck_assert_int_eq(tws_send_text(t, text), 0);
}

/* ---- what the events must say ---- */

static int status_rank(const char *s)
{
	static const char *const order[] = {"queued", "preparing", "running", "completed"};

	for (int i = 0; i < 4; i++)
		if (strcmp(s, order[i]) == 0)
			return i;
	return -1;
}

/*
 * N from "<base> — N jobs ahead of yours", 0 from "<base> — you're next",
 * -1 when msg is neither.
 */
static int ahead_in(const char *msg, const char *base)
{
	size_t n = strlen(base), dash = strlen(" — ");
	const char *rest = msg + n + dash;
	int k = 0, used = 0;

	if (strncmp(msg, base, n) != 0 || strncmp(msg + n, " — ", dash) != 0)
		return -1;
	if (strcmp(rest, "you're next") == 0)
		return 0;
	if (sscanf(rest, "%d job%n", &k, &used) != 1 || k < 1 || used == 0)
		return -1;
	if (strcmp(rest + used, "s ahead of yours") == 0 ||
	    (k == 1 && strcmp(rest + used, " ahead of yours") == 0))
		return k;
	return -1;
}

/* 1 when msg is "<running> NN%" with NN == progress. */
static int running_pct(const char *msg, const char *running, int progress)
{
	char want[256];

	snprintf(want, sizeof want, "%s %d%%", running, progress);
	return strcmp(msg, want) == 0;
}

/*
 * The events of job id in l (other jobs' are skipped) go queued ->
 * preparing -> running -> completed, each seen, with progress events of
 * rising percent in between, each message the function's (msgs), and ids
 * rising. Returns the final view (borrowed from l).
 */
static struct json_object *check_normal_job(struct evlist *l, const char *id,
					    const char *const *msgs)
{
	int rank = -1, seen[4] = {0}, last_pct = -1, pcts = 0, finishing = 0;
	unsigned long long last_id = 0;
	struct json_object *final = NULL;

	for (size_t i = 0; i < l->n; i++) {
		const struct evt *e = &l->v[i];
		const char *st = gw_str(e->data, "status"), *msg = gw_str(e->data, "message");
		int r, pct = (int)gw_int(e->data, "progress");

		ck_assert_msg(e->id > last_id, "event ids do not rise: %llu after %llu", e->id, last_id);
		last_id = e->id;
		if (ev_job(e) == NULL || strcmp(ev_job(e), id) != 0)
			continue;
		r = status_rank(st);
		ck_assert_msg(r >= 0, "the job %s: %s", st, e->raw);
		ck_assert_msg(r >= rank, "status went back to %s: %s", st, e->raw);
		rank = r;
		seen[r] = 1;
		if (strcmp(e->type, "progress") == 0) {
			ck_assert_str_eq(st, "running");
			ck_assert_msg(pct >= last_pct, "progress fell: %s", e->raw);
			ck_assert_msg(running_pct(msg, msgs[MSG_RUNNING], pct), "progress says %s", msg);
			pcts += pct > last_pct && pct > 0;
			last_pct = pct;
			continue;
		}
		ck_assert_str_eq(e->type, "state");
		if (r == 0)
			ck_assert_msg(ahead_in(msg, msgs[MSG_QUEUED]) >= 0, "queued says %s", msg);
		else if (r == 1)
			ck_assert_str_eq(msg, msgs[MSG_PREPARING]);
		else if (r == 2 && strcmp(msg, msgs[MSG_FINISHING]) == 0)
			finishing = 1;
		else if (r == 2)
			ck_assert_msg(strcmp(msg, msgs[MSG_RUNNING]) == 0 ||
				      running_pct(msg, msgs[MSG_RUNNING], pct), "running says %s", msg);
		else
			final = e->data;
	}
	ck_assert_msg(seen[0] && seen[1] && seen[2] && seen[3],
		      "not every state was seen: queued %d preparing %d running %d completed %d",
		      seen[0], seen[1], seen[2], seen[3]);
	ck_assert_msg(pcts >= 2, "progress did not rise over steps (%d rises)", pcts);
	ck_assert_msg(finishing, "no \"%s\" while thumbnails were made", msgs[MSG_FINISHING]);
	ck_assert_str_eq(gw_str(final, "message"), msgs[MSG_DONE]);
	ck_assert_int_eq(gw_int(final, "progress"), 100);
	ck_assert_uint_eq(json_object_array_length(obj(final, "outputs")), 1);
	return final;
}

/* The view of job id now; caller owns it. */
static struct json_object *view_of(const char *id)
{
	char path[128];

	snprintf(path, sizeof path, "/api/jobs/%s", id);
	return gw_json(&g, "GET", path, NULL, NULL);
}

/* ---- SSE ---- */

START_TEST(sse_normal_job_speaks_plain_language)
{
	struct evlist *l = calloc(1, sizeof *l);
	char *blocker, *id, path[128];
	struct json_object *final;
	struct sse *s;

	start_default();
	/* The blocker holds the one img_std runner, so `id` is seen waiting. */
	blocker = submit("Create Image", "standard", NULL);
	id = submit("Create Image", "standard", NULL);
	snprintf(path, sizeof path, "/api/jobs/%s/events", id);
	s = sse_open(path, NULL);
	sse_read_all(s, l);
	ck_assert_str_eq(gw_str(l->v[0].data, "status"), "queued");
	final = check_normal_job(l, id, image_msgs);
	ck_assert_ptr_nonnull(gw_str(json_object_array_get_idx(obj(final, "outputs"), 0),
				     "thumbnail_url"));
	ck_assert_str_eq(gw_str(final, "quality_label"), "Balanced");
	sse_close(s);
	evlist_free(l);
	free(l);
	free(blocker);
	free(id);
}
END_TEST

START_TEST(default_messages_when_the_function_has_none)
{
	struct evlist *l = calloc(1, sizeof *l);
	char *blocker, *id, path[128];
	struct sse *s;

	start_default();
	blocker = submit("Create Sketch", "low", NULL);
	id = submit("Create Sketch", "low", NULL);
	snprintf(path, sizeof path, "/api/jobs/%s/events", id);
	s = sse_open(path, NULL);
	sse_read_all(s, l);
	check_normal_job(l, id, default_msgs);
	sse_close(s);
	evlist_free(l);
	free(l);
	free(blocker);
	free(id);
}
END_TEST

START_TEST(queue_position_counts_down_live)
{
	struct evlist *l = calloc(1, sizeof *l);
	char *ids[4], path[128];
	int last = -1, seen_two = 0, seen_next = 0;
	struct sse *s;

	start_default();
	for (int i = 0; i < 4; i++)
		ids[i] = submit("Create Image", "standard", NULL);
	snprintf(path, sizeof path, "/api/jobs/%s/events", ids[3]);
	s = sse_open(path, NULL);
	sse_read_all(s, l);
	for (size_t i = 0; i < l->n; i++) {
		const char *st = gw_str(l->v[i].data, "status");
		int n;

		if (strcmp(st, "queued") != 0)
			continue;
		n = ahead_in(gw_str(l->v[i].data, "message"), M_QUEUED);
		ck_assert_msg(n >= 0, "queued says %s", gw_str(l->v[i].data, "message"));
		ck_assert_int_eq(gw_int(l->v[i].data, "queue_position"), n);
		ck_assert_msg(last < 0 || n <= last, "the place went up: %d after %d", n, last);
		seen_two |= n == 2;
		seen_next |= n == 0;
		last = n;
	}
	/* Two jobs were ahead in line (the first was running); both left. */
	ck_assert_msg(seen_two, "never said 2 jobs ahead");
	ck_assert_msg(seen_next, "never said it was next: the watcher was not told live");
	sse_close(s);
	evlist_free(l);
	free(l);
	for (int i = 0; i < 4; i++)
		free(ids[i]);
}
END_TEST

START_TEST(sse_replays_after_last_event_id)
{
	struct evlist *first = calloc(1, sizeof *first), *rest = calloc(1, sizeof *rest);
	char *blocker, *id, path[128], last[32];
	int seen_preparing = 0;
	struct sse *s;

	start_default();
	blocker = submit("Create Image", "standard", NULL);
	id = submit("Create Image", "standard", NULL);
	snprintf(path, sizeof path, "/api/jobs/%s/events", id);
	s = sse_open(path, NULL);
	ck_assert_int_eq(sse_next(s, first, WAIT_MS), 0);
	ck_assert_str_eq(gw_str(first->v[0].data, "status"), "queued");
	sse_close(s); /* the page goes away while the job waits */
	json_object_put(gw_wait_status(&g, id, "completed", WAIT_MS));
	snprintf(last, sizeof last, "%llu", first->v[0].id);
	s = sse_open(path, last);
	sse_read_all(s, rest);
	/* What happened meanwhile, in order, not just where the job is now. */
	ck_assert_uint_gt(rest->n, 2);
	for (size_t i = 0; i < rest->n; i++) {
		ck_assert_uint_gt(rest->v[i].id, first->v[0].id);
		ck_assert(i == 0 || rest->v[i].id > rest->v[i - 1].id);
		seen_preparing |= strcmp(gw_str(rest->v[i].data, "status"), "preparing") == 0;
	}
	ck_assert_msg(seen_preparing, "the replay lacks the preparing state");
	ck_assert_str_eq(gw_str(rest->v[rest->n - 1].data, "status"), "completed");
	sse_close(s);
	evlist_free(first);
	evlist_free(rest);
	free(first);
	free(rest);
	free(blocker);
	free(id);
}
END_TEST

START_TEST(one_stream_for_several_jobs)
{
	struct evlist *l = calloc(1, sizeof *l);
	char *a, *b, path[256];
	int done_a = 0, done_b = 0;
	struct sse *s;

	start_default();
	a = submit("Create Image", "low", NULL);
	b = submit("Create Image", "standard", NULL);
	snprintf(path, sizeof path, "/api/events?jobs=%s,%s", a, b);
	s = sse_open(path, NULL);
	sse_read_all(s, l);
	for (size_t i = 0; i < l->n; i++) {
		ck_assert(i == 0 || l->v[i].id > l->v[i - 1].id);
		if (!ev_terminal(&l->v[i]))
			continue;
		ck_assert_str_eq(gw_str(l->v[i].data, "status"), "completed");
		done_a += strcmp(ev_job(&l->v[i]), a) == 0;
		done_b += strcmp(ev_job(&l->v[i]), b) == 0;
	}
	/* The stream ended after both, each finishing once. */
	ck_assert_int_eq(done_a, 1);
	ck_assert_int_eq(done_b, 1);
	sse_close(s);
	evlist_free(l);
	free(l);
	free(a);
	free(b);
}
END_TEST

START_TEST(cancelled_jobs_say_so)
{
	struct evlist *l = calloc(1, sizeof *l);
	char *running, *queued, path[256];
	int cancelled = 0;
	struct sse *s;

	start_default();
	running = submit("Create Image", "standard", NULL);
	queued = submit("Create Image", "standard", NULL);
	snprintf(path, sizeof path, "/api/events?jobs=%s,%s", running, queued);
	s = sse_open(path, NULL);
	do
		ck_assert_msg(sse_next(s, l, WAIT_MS) == 0, "the first job never ran");
	while (strcmp(ev_job(&l->v[l->n - 1]), running) != 0 ||
	       strcmp(gw_str(l->v[l->n - 1].data, "status"), "running") != 0);
	cancel(queued);
	cancel(running);
	sse_read_all(s, l);
	for (size_t i = 0; i < l->n; i++) {
		if (!ev_terminal(&l->v[i]))
			continue;
		ck_assert_str_eq(gw_str(l->v[i].data, "status"), "cancelled");
		ck_assert_str_eq(gw_str(l->v[i].data, "message"), M_CANCELLED);
		cancelled++;
	}
	ck_assert_int_eq(cancelled, 2);
	sse_close(s);
	evlist_free(l);
	free(l);
	free(running);
	free(queued);
}
END_TEST

/* ---- WebSocket ---- */

START_TEST(ws_follows_jobs_like_sse_and_stays_open)
{
	struct evlist *l = calloc(1, sizeof *l), *more = calloc(1, sizeof *more);
	char *blocker, *id, q[128], msg[256];
	unsigned long long first_id;
	int seen_preparing = 0;
	struct tws *t;

	start_default();
	blocker = submit("Create Image", "standard", NULL);
	id = submit("Create Image", "standard", NULL);
	snprintf(q, sizeof q, "?jobs=%s", id);
	t = ws_open(q);
	ws_read_until_final(t, l, id);
	ck_assert_str_eq(gw_str(l->v[0].data, "status"), "queued");
	check_normal_job(l, id, image_msgs);
	first_id = l->v[0].id;
	/* Finished, the socket stays: a new subscription gets the final view. */
	snprintf(msg, sizeof msg, "{\"subscribe\": [\"%s\"]}", id);
	ws_say(t, msg);
	ck_assert_int_eq(ws_next(t, more, WAIT_MS), 0);
	ck_assert_str_eq(more->v[0].type, "state");
	ck_assert_str_eq(gw_str(more->v[0].data, "status"), "completed");
	ck_assert_uint_gt(more->v[0].id, l->v[l->n - 1].id);
	evlist_free(more);
	/* With "after", the events that followed it, from the ring. */
	snprintf(msg, sizeof msg, "{\"subscribe\": [\"%s\"], \"after\": %llu}", id, first_id);
	ws_say(t, msg);
	do {
		ck_assert_int_eq(ws_next(t, more, WAIT_MS), 0);
		ck_assert_uint_gt(more->v[more->n - 1].id, first_id);
		seen_preparing |=
			strcmp(gw_str(more->v[more->n - 1].data, "status"), "preparing") == 0;
	} while (!ev_terminal(&more->v[more->n - 1]));
	ck_assert_msg(seen_preparing, "the replay lacks the preparing state");
	ck_assert_str_eq(gw_str(more->v[more->n - 1].data, "status"), "completed");
	tws_close(t);
	evlist_free(l);
	evlist_free(more);
	free(l);
	free(more);
	free(blocker);
	free(id);
}
END_TEST

/* Sends text and expects one error event with code (and job_id when not NULL). */
static void expect_ws_error(struct tws *t, const char *text, const char *code, const char *job_id)
{
	struct evlist *l = calloc(1, sizeof *l);

	ws_say(t, text);
	ck_assert_msg(ws_next(t, l, WAIT_MS) == 0, "no answer to %.80s", text);
	ck_assert_str_eq(l->v[0].type, "error");
	ck_assert_str_eq(gw_str(l->v[0].data, "code"), code);
	ck_assert_ptr_nonnull(gw_str(l->v[0].data, "message"));
	if (job_id != NULL)
		ck_assert_str_eq(gw_str(l->v[0].data, "job_id"), job_id);
	evlist_free(l);
	free(l);
}

START_TEST(ws_answers_bad_messages_and_closes_on_huge_ones)
{
	struct buf b;
	char *big, *data = NULL;
	size_t len;
	int op;
	struct tws *t;

	start_default();
	t = ws_open("");
	expect_ws_error(t, "{\"subscribe\": [\"0123456789abcdef0123456789abcdef\"]}", "NOT_FOUND",
			"0123456789abcdef0123456789abcdef");
	expect_ws_error(t, "not json", "INVALID_INPUT", NULL);
	expect_ws_error(t, "[\"a\"]", "INVALID_INPUT", NULL);
	expect_ws_error(t, "{\"subscribe\": \"a\"}", "INVALID_INPUT", NULL);
	expect_ws_error(t, "{\"subscribe\": [1]}", "INVALID_INPUT", NULL);
	expect_ws_error(t, "{\"watch\": [\"a\"]}", "INVALID_INPUT", NULL);
	expect_ws_error(t, "{\"subscribe\": [\"a\"], \"after\": -1}", "INVALID_INPUT", NULL);
	/* More ids than a socket may follow, in one message: refused whole. */
	buf_init(&b, 1 << 20);
	buf_puts(&b, "{\"subscribe\": [");
	for (int i = 0; i < 1001; i++)
		buf_printf(&b, "%s\"%d\"", i ? ", " : "", i);
	buf_puts(&b, "]}");
	expect_ws_error(t, b.data, "INVALID_INPUT", NULL);
	buf_cleanup(&b);
	ck_assert_int_eq(tws_send_binary(t, "\x01", 1), 0);
	{
		struct evlist *l = calloc(1, sizeof *l);

		ck_assert_int_eq(ws_next(t, l, WAIT_MS), 0);
		ck_assert_str_eq(gw_str(l->v[0].data, "code"), "INVALID_INPUT");
		evlist_free(l);
		free(l);
	}
	/* A message over 64 KiB closes the socket with 1009. */
	big = malloc(64 * 1024 + 2);
	memset(big, ' ', 64 * 1024 + 1);
	big[64 * 1024 + 1] = '\0';
	ws_say(t, big);
	ck_assert_int_eq(tws_recv(t, WAIT_MS, &op, &data, &len), 1);
	ck_assert_int_eq(tws_close_code(t), 1009);
	free(big);
	tws_close(t);
}
END_TEST

START_TEST(ws_unsubscribe_stops_the_events)
{
	struct evlist *l = calloc(1, sizeof *l);
	char *blocker, *dropped, *kept, msg[256];
	struct tws *t;

	start_default();
	blocker = submit("Create Image", "standard", NULL);
	dropped = submit("Create Image", "standard", NULL);
	kept = submit("Create Image", "standard", NULL);
	t = ws_open("");
	snprintf(msg, sizeof msg, "{\"subscribe\": [\"%s\"]}", dropped);
	ws_say(t, msg);
	ck_assert_int_eq(ws_next(t, l, WAIT_MS), 0);
	ck_assert_str_eq(ev_job(&l->v[0]), dropped);
	snprintf(msg, sizeof msg, "{\"unsubscribe\": [\"%s\"], \"subscribe\": [\"%s\"]}", dropped,
		 kept);
	ws_say(t, msg);
	/* `dropped` runs and finishes before `kept`: none of it may arrive. */
	ws_read_until_final(t, l, kept);
	for (size_t i = 1; i < l->n; i++)
		ck_assert_msg(strcmp(ev_job(&l->v[i]), dropped) != 0, "event after unsubscribe: %s",
			      l->v[i].raw);
	ck_assert_str_eq(gw_str(l->v[l->n - 1].data, "status"), "completed");
	tws_close(t);
	evlist_free(l);
	free(l);
	free(blocker);
	free(dropped);
	free(kept);
}
END_TEST

START_TEST(ws_follows_at_most_1000_jobs)
{
	struct evlist *l = calloc(1, sizeof *l);
	struct buf b;
	char *ids[1001], msg[256];
	struct tws *t;

	/* img_std never becomes ready: every job but the first stays queued. */
	registry("", "[1, 3]", "--step-ms, \"20\"", "--load-ms, \"600000\"", "wf.json",
		 "    start_timeout: 1h\n");
	start();
	for (int i = 0; i < 1001; i++)
		ids[i] = submit("Create Image", "standard", NULL);
	t = ws_open("");
	buf_init(&b, 1 << 20);
	buf_puts(&b, "{\"subscribe\": [");
	for (int i = 0; i < 1000; i++)
		buf_printf(&b, "%s\"%s\"", i ? ", " : "", ids[i]);
	buf_puts(&b, "]}");
	ws_say(t, b.data);
	buf_cleanup(&b);
	/* Every view comes at once, even far over the backlog cap. */
	for (int i = 0; i < 1000; i++) {
		ck_assert_int_eq(ws_next(t, l, WAIT_MS), 0);
		ck_assert_str_eq(l->v[0].type, "state");
		evlist_free(l);
	}
	snprintf(msg, sizeof msg, "{\"subscribe\": [\"%s\"]}", ids[1000]);
	expect_ws_error(t, msg, "INVALID_INPUT", ids[1000]);
	/* Room again after an unsubscribe. */
	snprintf(msg, sizeof msg, "{\"unsubscribe\": [\"%s\"], \"subscribe\": [\"%s\"]}", ids[0],
		 ids[1000]);
	ws_say(t, msg);
	ck_assert_int_eq(ws_next(t, l, WAIT_MS), 0);
	ck_assert_str_eq(l->v[0].type, "state");
	ck_assert_str_eq(ev_job(&l->v[0]), ids[1000]);
	tws_close(t);
	evlist_free(l);
	free(l);
	for (int i = 0; i < 1001; i++)
		free(ids[i]);
}
END_TEST

START_TEST(ws_closes_with_going_away_at_shutdown)
{
	struct evlist *l = calloc(1, sizeof *l);
	char *id, q[128];
	struct tws *t;

	start_default();
	id = submit("Create Image", "low", NULL);
	json_object_put(gw_wait_status(&g, id, "completed", WAIT_MS));
	snprintf(q, sizeof q, "?jobs=%s", id);
	t = ws_open(q);
	ck_assert_int_eq(ws_next(t, l, WAIT_MS), 0);
	ck_assert_str_eq(gw_str(l->v[0].data, "status"), "completed");
	kill(g.pid, SIGTERM);
	ck_assert_int_eq(ws_next(t, l, WAIT_MS), 1);
	ck_assert_int_eq(tws_close_code(t), 1001);
	tws_close(t);
	stop(); /* reaps it */
	evlist_free(l);
	free(l);
	free(id);
}
END_TEST

/* ---- out of memory ---- */

START_TEST(out_of_memory_retries_one_quality_down)
{
	struct evlist *l = calloc(1, sizeof *l);
	struct json_object *final = NULL;
	int told = 0;
	char *id, q[128];
	struct tws *t;

	/* Balanced runs out of memory; the function allows a lower quality. */
	registry("    reduce_quality_on_oom: true\n", "[1, 3]", "--step-ms, \"20\"",
		 "--step-ms, \"20\", --load-ms, \"300\"", "wf-oom.json", "");
	start();
	id = submit("Create Image", "standard", NULL);
	snprintf(q, sizeof q, "?jobs=%s", id);
	t = ws_open(q);
	ws_read_until_final(t, l, id);
	for (size_t i = 0; i < l->n; i++) {
		const char *msg = gw_str(l->v[i].data, "message");

		if (strcmp(gw_str(l->v[i].data, "status"), "queued") != 0 ||
		    strcmp(gw_str(l->v[i].data, "quality"), "low") != 0)
			continue;
		ck_assert_msg(strstr(msg, "Fast Preview") && strstr(msg, "memory"),
			      "the retry says %s", msg);
		told = 1;
	}
	ck_assert_msg(told, "the user was never told of the retry at Fast Preview");
	final = l->v[l->n - 1].data;
	ck_assert_str_eq(gw_str(final, "status"), "completed");
	ck_assert_str_eq(gw_str(final, "quality"), "low");
	ck_assert_str_eq(gw_str(final, "quality_label"), "Fast Preview");
	ck_assert_msg(gw_str(final, "notice") && strstr(gw_str(final, "notice"), "Fast Preview"),
		      "the final view has no notice of the lower quality: %s", l->v[l->n - 1].raw);
	tws_close(t);
	evlist_free(l);
	free(l);
	free(id);
}
END_TEST

START_TEST(out_of_memory_without_the_flag_suggests_a_lower_quality)
{
	struct evlist *l = calloc(1, sizeof *l);
	struct json_object *final, *err;
	char *id, q[128];
	struct tws *t;

	registry("", "[1, 3]", "--step-ms, \"20\"", "--step-ms, \"20\", --load-ms, \"300\"",
		 "wf-oom.json", "");
	start();
	id = submit("Create Image", "standard", NULL);
	snprintf(q, sizeof q, "?jobs=%s", id);
	t = ws_open(q);
	ws_read_until_final(t, l, id);
	final = l->v[l->n - 1].data;
	ck_assert_str_eq(gw_str(final, "status"), "failed");
	ck_assert_str_eq(gw_str(final, "quality"), "standard");
	err = obj(final, "error");
	ck_assert_ptr_nonnull(err);
	ck_assert_str_eq(gw_str(err, "code"), "OUT_OF_MEMORY");
	ck_assert_str_eq(gw_str(err, "action"), "REDUCE_QUALITY");
	ck_assert_str_eq(gw_str(err, "suggestion"), "Try Fast Preview quality");
	ck_assert_msg(gw_str(err, "tried") && strlen(gw_str(err, "tried")) > 10,
		      "error.tried is not a sentence: %s", l->v[l->n - 1].raw);
	tws_close(t);
	evlist_free(l);
	free(l);
	free(id);
}
END_TEST

/* ---- estimates ---- */

START_TEST(estimate_falls_back_to_typical_seconds)
{
	struct json_object *reply, *v;
	char *ids[3];
	int64_t pos[3];

	/* No history, and img_std never becomes ready: its jobs stay in line. */
	registry("", "[10, 20]", "--step-ms, \"20\"", "--load-ms, \"600000\"", "wf.json",
		 "    start_timeout: 1h\n");
	start();
	for (int i = 0; i < 3; i++) {
		ids[i] = submit("Create Image", "standard", &reply);
		pos[i] = gw_int(reply, "queue_position");
		/* The midpoint of [10, 20] for each job up to and including its own. */
		if (i > 0)
			ck_assert_msg(gw_int(reply, "eta_seconds") == 15 * (pos[i] + 1),
				      "at place %lld: %s", (long long)pos[i],
				      json_object_to_json_string(reply));
		json_object_put(reply);
	}
	ck_assert_int_ge(pos[1], 0);
	ck_assert_int_eq(pos[2], pos[1] + 1);
	v = view_of(ids[2]);
	ck_assert_int_eq(gw_int(v, "queue_position"), pos[2]);
	ck_assert_int_eq(gw_int(v, "eta_seconds"), 15 * (pos[2] + 1));
	json_object_put(v);
	for (int i = 0; i < 3; i++)
		free(ids[i]);
}
END_TEST

START_TEST(estimate_learns_from_completed_jobs)
{
	struct json_object *reply, *v;
	char *ids[8], *id;
	int64_t eta;

	/* typical_seconds says 10 to 20; 8 steps of 50 ms take about 0.4 s. */
	registry("", "[10, 20]", "--step-ms, \"20\"", "--step-ms, \"50\"", "wf.json", "");
	start();
	for (int i = 0; i < 8; i++)
		ids[i] = submit("Create Image", "standard", NULL);
	for (int i = 0; i < 8; i++) {
		json_object_put(gw_wait_status(&g, ids[i], "completed", 60000));
		free(ids[i]);
	}
	id = submit("Create Image", "standard", &reply);
	eta = gw_int(reply, "eta_seconds");
	ck_assert_msg(eta >= 1 && eta <= 2, "learned estimate %lld s for a 0.4 s job",
		      (long long)eta);
	json_object_put(reply);
	/* The live view says the same (a finished job's estimate is 0). */
	v = view_of(id);
	ck_assert_msg(gw_int(v, "eta_seconds") <= 2, "view estimate: %s",
		      json_object_to_json_string(v));
	json_object_put(v);
	free(id);
}
END_TEST

Suite *suite_events(void)
{
	Suite *s = suite_create("events");
	TCase *tc = tcase_create("streams");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, sse_normal_job_speaks_plain_language);
	tcase_add_test(tc, default_messages_when_the_function_has_none);
	tcase_add_test(tc, queue_position_counts_down_live);
	tcase_add_test(tc, sse_replays_after_last_event_id);
	tcase_add_test(tc, one_stream_for_several_jobs);
	tcase_add_test(tc, cancelled_jobs_say_so);
	tcase_add_test(tc, ws_follows_jobs_like_sse_and_stays_open);
	tcase_add_test(tc, ws_answers_bad_messages_and_closes_on_huge_ones);
	tcase_add_test(tc, ws_unsubscribe_stops_the_events);
	tcase_add_test(tc, ws_follows_at_most_1000_jobs);
	tcase_add_test(tc, ws_closes_with_going_away_at_shutdown);
	tcase_add_test(tc, out_of_memory_retries_one_quality_down);
	tcase_add_test(tc, out_of_memory_without_the_flag_suggests_a_lower_quality);
	tcase_add_test(tc, estimate_falls_back_to_typical_seconds);
	tcase_add_test(tc, estimate_learns_from_completed_jobs);
	suite_add_tcase(s, tc);
	return s;
}
