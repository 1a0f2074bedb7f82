/*
 * test_worker.c - fnrun-worker against the recorded ComfyUI 0.3.64
 * session (tests/fixtures/comfyui/comfy-transcript.jsonl) and the
 * behaviour docs/comfyui.md describes.
 *
 * Each test starts its own worker on a free port in its own temp dir and
 * drives it as a ComfyUI client does: /ws?clientId=X first, then POST
 * /prompt with client_id X, frames until executing{node: null}, then
 * /history and /view. Where the transcript has the exchange, the worker's
 * bytes are compared with it: frame by frame, with key order, after
 * normalising only what differs between runs (timestamps, PreviewImage's
 * random file name, and the lists ComfyUI builds from Python sets).
 * Nothing waits by sleeping: every wait is for a WebSocket message or an
 * HTTP answer, with a deadline.
 */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "comfy_client.h"
#include "util.h"

/* The capture's client and prompt ids: reusing them makes bytes comparable. */
#define CID "fr-capture-70d32088"
#define PID1 "0598528b-1f7c-4eb6-aa3d-f57268a55e5d" /* seq 41: the first run */
#define PID2 "81942b6a-6bf3-4476-a445-301dedba737f" /* seq 89: the cached run */
#define RUN_MS 20000                                /* deadline of one run */

static struct cc_worker w;

static void setup(void)
{
	signal(SIGPIPE, SIG_IGN);
	memset(&w, 0, sizeof w);
}

static void teardown(void)
{
	cc_stop(&w);
	tu_rmrf(tu_tmpdir());
}

/* ---- helpers ---- */

/* s with every `from` replaced by `to`; caller frees. */
static char *replace_all(const char *s, const char *from, const char *to)
{
	size_t fl = strlen(from), tl = strlen(to), n = 0;
	char *out, *o;

	for (const char *p = strstr(s, from); p; p = strstr(p + fl, from))
		n++;
	out = o = xmalloc(strlen(s) + n * (tl > fl ? tl - fl : 0) + 1);
	for (const char *p = s;;) {
		const char *hit = strstr(p, from);

		if (hit == NULL) {
			strcpy(o, p);
			break;
		}
		memcpy(o, p, (size_t)(hit - p));
		o += hit - p;
		memcpy(o, to, tl);
		o += tl;
		p = hit + fl;
	}
	return out;
}

/* The weightless workflow as the capture posted it, with our prompt_id. */
static struct json_object *wl_body(const char *pid)
{
	struct json_object *b = cc_request(cc_weightless(), CID);

	if (pid)
		json_put(b, "prompt_id", json_str(pid));
	return b;
}

/* POSTs body (takes it), collects the owner's frames until done; returns the id. */
static char *run(struct tws *t, struct json_object *body, struct cc_log *log)
{
	char *id = cc_submit_ok(w.port, body);

	json_object_put(body);
	cc_collect(t, id, RUN_MS, log);
	return id;
}

/* Seqs of the frames the transcript's `client` received within [from, to]. */
static size_t tr_frames(const char *client, int from, int to, int *seqs, size_t max)
{
	size_t n = 0;

	for (int s = from; s <= to && n < max; s++) {
		struct json_object *r = cc_tr(s);
		const char *kind = json_get_str(r, "kind"), *c = json_get_str(r, "client");
		const char *dir = json_get_str(r, "dir");

		if (kind && strcmp(kind, "ws") == 0 && c && strcmp(c, client) == 0 && dir &&
		    strcmp(dir, "recv") == 0)
			seqs[n++] = s;
	}
	return n;
}

/* A transcript frame's bytes: its text, or a binary frame rebuilt from "decoded". */
static char *tr_payload(int seq, size_t *len, int *opcode)
{
	struct json_object *r = cc_tr(seq), *d;
	const char *node, *text;
	unsigned char *p;
	size_t nl, tl;
	char hex[17];

	if (strcmp(cc_tr_str(seq, "frame"), "text") == 0) {
		*opcode = TWS_TEXT;
		*len = strlen(cc_tr_str(seq, "text"));
		return xstrdup(cc_tr_str(seq, "text"));
	}
	d = json_get_obj(r, "decoded");
	node = json_get_str(d, "node_id");
	text = json_get_str(d, "text");
	ck_assert_msg(node && text, "transcript binary frame %d not decoded", seq);
	nl = strlen(node);
	tl = strlen(text);
	*len = 8 + nl + tl;
	p = xmalloc(*len + 1);
	for (int i = 0; i < 4; i++) {
		p[i] = (unsigned char)(json_get_int(d, "event_type", 0) >> (24 - 8 * i));
		p[4 + i] = (unsigned char)(nl >> (24 - 8 * i));
	}
	memcpy(p + 8, node, nl);
	memcpy(p + 8 + nl, text, tl);
	p[*len] = 0;
	/* The rebuilt frame must be the recorded one. */
	ck_assert_int_eq(json_get_int(r, "length", -1), (int64_t)*len);
	for (int i = 0; i < 8; i++)
		snprintf(hex + 2 * i, 3, "%02x", p[i]);
	ck_assert_str_eq(hex, cc_tr_str(seq, "head8_hex"));
	*opcode = TWS_BINARY;
	return (char *)p;
}

/* m must be transcript frame seq, after cc_norm() on both. */
static void expect_frame(const struct cc_msg *m, int seq, const char *what, size_t idx)
{
	size_t len;
	int op;
	char *want = tr_payload(seq, &len, &op);

	if (op == TWS_BINARY) {
		ck_assert_msg(m->opcode == TWS_BINARY && m->len == len && memcmp(m->raw, want, len) == 0,
			      "%s[%zu]: expected the binary TEXT frame of transcript seq %d, got %s %.200s",
			      what, idx, seq, m->opcode == TWS_BINARY ? "binary" : "text", m->raw);
	} else {
		char *a, *b;

		ck_assert_msg(m->opcode == TWS_TEXT, "%s[%zu]: binary frame, expected seq %d: %s",
			      what, idx, seq, want);
		cc_assert_pyjson(m->raw);
		a = cc_norm(m->raw);
		b = cc_norm(want);
		ck_assert_msg(strcmp(a, b) == 0, "%s[%zu] differs from transcript seq %d:\n got: %s\nwant: %s",
			      what, idx, seq, a, b);
		free(a);
		free(b);
	}
	free(want);
}

/* log[from..] must be exactly the frames `client` got in transcript [s0, s1]. */
static void expect_frames(const struct cc_log *log, size_t from, const char *client, int s0, int s1)
{
	int seqs[256];
	size_t n = tr_frames(client, s0, s1, seqs, 256);

	ck_assert_msg(log->n - from == n, "%zu frames, the transcript has %zu; got: %s", log->n - from,
		      n, cc_log_types(log));
	for (size_t i = 0; i < n; i++)
		expect_frame(&log->v[from + i], seqs[i], client, from + i);
}

/* The ids of executing{node} frames, comma-separated (static). */
static const char *executing_order(const struct cc_log *log)
{
	static char s[1024];
	size_t off = 0;

	s[0] = '\0';
	for (size_t i = 0; i < log->n && off < sizeof s - 32; i++)
		if (strcmp(log->v[i].type, "executing") == 0 && cc_node(&log->v[i]))
			off += (size_t)snprintf(s + off, sizeof s - off, "%s%s", off ? "," : "",
						cc_node(&log->v[i]));
	return s;
}

/*
 * History text in comparable form: cc_norm(), then the lists ComfyUI
 * builds from Python sets sorted (prompt[4], the outputs to execute).
 */
static char *canon_history(const char *text)
{
	char *n = cc_norm(text), *out;
	struct json_object *o = cc_parse(n, strlen(n));

	json_object_object_foreach(o, id, entry) {
		(void)id;
		cc_sort_strings(json_object_array_get_idx(json_get_arr(entry, "prompt"), 4));
	}
	out = cc_dump(o);
	json_object_put(o);
	free(n);
	return out;
}

/* Validation replies in comparable form: dependent_outputs come from a set. */
static char *canon_errors(const char *text, int drop_traceback)
{
	struct json_object *o = cc_parse(text, strlen(text));
	struct json_object *ne = json_get_obj(o, "node_errors");
	char *out;

	ck_assert_msg(ne != NULL, "no node_errors: %s", text);
	json_object_object_foreach(ne, id, err) {
		struct json_object *errs = json_get_arr(err, "errors");

		(void)id;
		cc_sort_strings(json_get_arr(err, "dependent_outputs"));
		for (size_t i = 0; drop_traceback && errs && i < json_object_array_length(errs); i++) {
			struct json_object *x = json_get_obj(json_object_array_get_idx(errs, i),
							     "extra_info");
			struct json_object *tb = json_get_arr(x, "traceback");

			if (tb == NULL)
				continue;
			for (size_t k = 0; k < json_object_array_length(tb); k++)
				ck_assert(json_object_is_type(json_object_array_get_idx(tb, k),
							      json_type_string));
			json_object_object_del(x, "traceback");
		}
	}
	if (json_get(o, "prompt_id")) {
		/* A 200: only node_errors is comparable. */
		struct json_object *keep = json_object_get(ne);

		json_object_put(o);
		o = keep;
	}
	out = cc_dump(o);
	json_object_put(o);
	return out;
}

static struct json_object *history_entry(const char *pid, struct json_object **root)
{
	char path[256];

	snprintf(path, sizeof path, "/history/%s", pid);
	*root = cc_get_json(w.port, path);
	ck_assert_msg(json_get_obj(*root, pid) != NULL, "no history for %s", pid);
	return json_get_obj(*root, pid);
}

static const char *history_status(const char *pid, int *completed, const char **last_msg)
{
	static char s[64];
	struct json_object *root, *e = history_entry(pid, &root);
	struct json_object *st = json_get_obj(e, "status");
	struct json_object *msgs = json_get_arr(st, "messages");
	static char last[64];

	snprintf(s, sizeof s, "%s", json_get_str(st, "status_str"));
	*completed = json_get_bool(st, "completed", -1);
	snprintf(last, sizeof last, "%s",
		 json_object_get_string(json_object_array_get_idx(
			 json_object_array_get_idx(msgs, json_object_array_length(msgs) - 1), 0)));
	*last_msg = last;
	json_object_put(root);
	return s;
}

/* The file name of the first image a node put in history. */
static char *history_image(const char *pid, const char *node)
{
	struct json_object *root, *e = history_entry(pid, &root);
	struct json_object *imgs = json_get_arr(json_get_obj(json_get_obj(e, "outputs"), node),
						"images");
	const char *f = json_get_str(json_object_array_get_idx(imgs, 0), "filename");
	char *out;

	ck_assert_msg(f != NULL, "prompt %s: no image from node %s", pid, node);
	out = xstrdup(f);
	json_object_put(root);
	return out;
}

static void expect_text(int port, const char *path, const char *want)
{
	char *got = cc_get_text(port, path);

	ck_assert_msg(strcmp(got, want) == 0, "GET %s:\n got: %.600s\nwant: %.600s", path, got, want);
	free(got);
}

/* ---- 1. message types, fields and order of a normal run ---- */

START_TEST(weightless_frames_match_transcript)
{
	struct cc_log log = {0}, olog = {0};
	struct tws *owner, *obs;
	struct tu_resp r;
	struct cc_msg m;
	char *first, *id, *sid_text;
	const char *sid;
	struct json_object *body;

	cc_start(&w, NULL);
	owner = cc_ws_open(w.port, "", CID, &first);
	ck_assert_str_eq(first, cc_tr_str(8, "text"));
	free(first);

	/* The capture's observer: no clientId, then feature_flags. */
	obs = tws_connect(w.port, "/ws", 5000);
	ck_assert_ptr_nonnull(obs);
	ck_assert_int_eq(tws_send_text(obs, cc_tr_str(10, "text")), 0);
	cc_next(obs, 5000, &m);
	sid = json_get_str(m.data, "sid");
	ck_assert_msg(sid && strlen(sid) == 32 && strspn(sid, "0123456789abcdef") == 32,
		      "generated sid is not 32 hex digits: %s", m.raw);
	sid_text = replace_all(m.raw, sid, "82134bacd3aa460887a7c3ea7d1aa7bf");
	ck_assert_str_eq(sid_text, cc_tr_str(11, "text"));
	free(sid_text);
	cc_msg_free(&m);
	cc_next(obs, 5000, &m);
	ck_assert_str_eq(m.raw, cc_tr_str(12, "text"));
	cc_msg_free(&m);

	body = wl_body(PID1);
	id = cc_submit(w.port, body, &r);
	json_object_put(body);
	ck_assert_int_eq(r.status, 200);
	ck_assert_str_eq(r.body, cc_tr_str(41, "resp_text"));
	ck_assert_str_eq(tu_resp_header(&r, "Content-Type"), "application/json; charset=utf-8");
	tu_resp_free(&r);
	cc_collect(owner, id, RUN_MS, &log);
	ck_assert_str_eq(executing_order(&log), "1,2,6,3,4,5,7,8");
	expect_frames(&log, 0, "X", 42, 79);

	/* The observer sees only the broadcasts: status and the TEXT frame. */
	for (int i = 0; i < 4; i++) {
		struct cc_msg o;

		cc_next(obs, 5000, &o);
		olog.v = xrealloc(olog.v, (olog.n + 1) * sizeof o);
		olog.v[olog.n++] = o;
	}
	expect_frames(&olog, 0, "observer", 43, 81);
	cc_fence(w.port, obs, 0);
	cc_expect_status(owner, 0);
	cc_log_free(&log);
	cc_log_free(&olog);
	free(id);
	tws_close(owner);
	tws_close(obs);
	cc_stop_clean(&w);
}
END_TEST

/* ---- 2. an identical resubmission is fully cached ---- */

/* A transcript frame's message, parsed; caller puts. */
static struct json_object *tr_json(int seq)
{
	const char *text = cc_tr_str(seq, "text");

	return cc_parse(text, strlen(text));
}

/* The transcript's executed frame (seq 97, 99 or 101) for this node. */
static int cached_executed_seq(const char *node)
{
	static const int seqs[] = {97, 99, 101};

	for (int i = 0; i < 3; i++) {
		struct json_object *o = tr_json(seqs[i]);
		int same = strcmp(json_get_str(json_get_obj(o, "data"), "node"), node) == 0;

		json_object_put(o);
		if (same)
			return seqs[i];
	}
	ck_abort_msg("executed for node %s, which the cached run does not replay", node);
	return 0;
}

START_TEST(identical_resubmission_is_cached)
{
	struct cc_log l1 = {0}, l2 = {0};
	struct tws *t;
	struct tu_resp r;
	struct json_object *root1, *root2, *last_ps, *body;
	char *id1, *id2, *o1, *o2, *h, *got, *want;
	int nout, ntemp;
	const char *types;

	cc_start(&w, NULL);
	t = cc_ws_open(w.port, "", CID, NULL);
	id1 = run(t, wl_body(PID1), &l1);
	nout = cc_count_files(w.out);
	ntemp = cc_count_files(w.temp);
	ck_assert_int_eq(nout, 1);
	ck_assert_int_eq(ntemp, 1);

	body = wl_body(PID2);
	id2 = cc_submit(w.port, body, &r);
	json_object_put(body);
	ck_assert_str_eq(r.body, cc_tr_str(89, "resp_text"));
	tu_resp_free(&r);
	cc_collect(t, id2, RUN_MS, &l2);
	types = cc_log_types(&l2);
	/* No executing{node}: nothing runs; executed is re-sent for each output. */
	ck_assert_msg(l2.n == 13 && strcmp(executing_order(&l2), "") == 0, "cached run: %s", types);
	expect_frame(&l2.v[0], 90, "cached", 0);
	expect_frame(&l2.v[1], 92, "cached", 1);
	expect_frame(&l2.v[2], 94, "cached", 2);
	expect_frame(&l2.v[3], 95, "cached", 3);
	/* ComfyUI replays the outputs in Python set order: compare node by node. */
	last_ps = tr_json(102);
	for (int k = 0; k < 3; k++) {
		const struct cc_msg *ex = &l2.v[4 + 2 * k], *ps = &l2.v[5 + 2 * k];
		struct json_object *nodes = json_get_obj(ps->data, "nodes");
		struct json_object *want_nodes = json_get_obj(json_get_obj(last_ps, "data"), "nodes");

		ck_assert_msg(strcmp(ex->type, "executed") == 0, "cached run: %s", types);
		expect_frame(ex, cached_executed_seq(cc_node(ex)), "cached", 4 + 2 * k);
		ck_assert_msg(strcmp(ps->type, "progress_state") == 0, "cached run: %s", types);
		ck_assert_str_eq(json_get_str(ps->data, "prompt_id"), PID2);
		ck_assert_int_eq(json_object_object_length(nodes), k + 1);
		json_object_object_foreach(nodes, nid, entry) {
			/* Cached nodes report value and max 1 as ints, as ComfyUI does. */
			got = cc_dump(entry);
			want = cc_dump(json_get_obj(want_nodes, nid));
			ck_assert_msg(strcmp(got, want) == 0, "progress_state entry %s:\n got: %s\nwant: %s",
				      nid, got, want);
			free(got);
			free(want);
		}
	}
	json_object_put(last_ps);
	expect_frame(&l2.v[10], 103, "cached", 10);
	expect_frame(&l2.v[11], 104, "cached", 11);
	expect_frame(&l2.v[12], 105, "cached", 12);

	/* No new files; history points at the first run's files. */
	ck_assert_int_eq(cc_count_files(w.out), nout);
	ck_assert_int_eq(cc_count_files(w.temp), ntemp);
	o1 = cc_dump(json_get_obj(history_entry(id1, &root1), "outputs"));
	o2 = cc_dump(json_get_obj(history_entry(id2, &root2), "outputs"));
	ck_assert_str_eq(o1, o2);
	h = cc_get_text(w.port, "/history/" PID2);
	cc_assert_pyjson(h);
	got = canon_history(h);
	want = canon_history(cc_tr_str(108, "resp_text"));
	ck_assert_msg(strcmp(got, want) == 0, "cached history:\n got: %s\nwant: %s", got, want);
	json_object_put(root1);
	json_object_put(root2);
	free(o1);
	free(o2);
	free(h);
	free(got);
	free(want);
	free(id1);
	free(id2);
	cc_log_free(&l1);
	cc_log_free(&l2);
	tws_close(t);
	cc_stop_clean(&w);
}
END_TEST

/* ---- 3. history ---- */

START_TEST(history_entry_and_queries)
{
	struct cc_log log = {0};
	struct tws *t;
	struct json_object *o, *b;
	char *id1, *id2, *h, *got, *want, *keys;

	cc_start(&w, NULL);
	t = cc_ws_open(w.port, "", CID, NULL);
	id1 = run(t, wl_body(PID1), &log);
	h = cc_get_text(w.port, "/history/" PID1);
	cc_assert_pyjson(h);
	got = canon_history(h);
	want = canon_history(cc_tr_str(83, "resp_text"));
	ck_assert_msg(strcmp(got, want) == 0, "history entry:\n got: %s\nwant: %s", got, want);
	free(got);
	free(want);
	expect_text(w.port, "/api/history/" PID1, h);
	free(h);
	expect_text(w.port, "/history/does-not-exist", cc_tr_str(23, "resp_text"));

	/* A second, different prompt (the capture's "no client_id" colour). */
	b = wl_body("fr-second");
	json_object_object_foreach(json_get_obj(b, "prompt"), nid, node) {
		if (strcmp(nid, "1") == 0)
			json_put(json_get_obj(node, "inputs"), "color", json_int(1193046));
	}
	id2 = run(t, b, &log);
	o = cc_get_json(w.port, "/history?max_items=1");
	keys = cc_keys(o);
	ck_assert_str_eq(keys, "fr-second");
	free(keys);
	json_object_put(o);
	o = cc_get_json(w.port, "/history?max_items=1&offset=0");
	keys = cc_keys(o);
	ck_assert_str_eq(keys, PID1);
	free(keys);
	json_object_put(o);
	o = cc_get_json(w.port, "/history");
	keys = cc_keys(o);
	ck_assert_str_eq(keys, PID1 ",fr-second"); /* completion order */
	free(keys);
	json_object_put(o);

	cc_post_empty(w.port, "/history", "{\"delete\": [\"" PID1 "\"]}", 200);
	expect_text(w.port, "/history/" PID1, "{}");
	o = cc_get_json(w.port, "/history");
	keys = cc_keys(o);
	ck_assert_str_eq(keys, "fr-second");
	free(keys);
	json_object_put(o);
	cc_post_empty(w.port, "/api/history", "{\"clear\": true}", 200);
	expect_text(w.port, "/history", cc_tr_str(804, "resp_text"));
	free(id1);
	free(id2);
	cc_log_free(&log);
	tws_close(t);
	cc_stop_clean(&w);
}
END_TEST

/* ---- 4. /view ---- */

START_TEST(view_serves_files_with_comfyui_rules)
{
	/* The capture's /view requests, replayed: same statuses. */
	static const int seqs[] = {84, 587, 588, 589, 590, 591, 592, 593, 594};
	struct cc_log log = {0};
	struct tws *t;
	struct tu_resp r;
	char path[1024], *disk, *temp_name, *temp_disk;
	size_t disk_len, temp_len;
	int width, height, ctype;

	cc_start(&w, NULL);
	t = cc_ws_open(w.port, "", CID, NULL);
	free(run(t, wl_body(PID1), &log));
	snprintf(path, sizeof path, "%s/fr_weightless_00001_.png", w.out);
	disk = tu_read_file(path, &disk_len);
	ck_assert_msg(disk != NULL, "SaveImage wrote no %s", path);

	for (size_t i = 0; i < sizeof seqs / sizeof seqs[0]; i++) {
		const char *p = cc_tr_str(seqs[i], "path");
		int want = (int)json_get_int(cc_tr(seqs[i]), "status", -1);

		ck_assert_int_eq(cc_http(w.port, "GET", p, NULL, NULL, 0, &r), 0);
		ck_assert_msg(r.status == want, "GET %s: %d, the capture got %d", p, r.status, want);
		if (want == 200) {
			ck_assert_msg(r.len == disk_len && memcmp(r.body, disk, disk_len) == 0,
				      "GET %s: not the bytes of %s", p, path);
			ck_assert_str_eq(tu_resp_header(&r, "Content-Type"), "image/png");
			ck_assert_str_eq(tu_resp_header(&r, "Content-Disposition"),
					 "filename=\"fr_weightless_00001_.png\"");
		} else {
			ck_assert_msg(r.len == 0, "GET %s: %d with a body: %s", p, r.status, r.body);
		}
		tu_resp_free(&r);
	}
	/* The PNG decodes, 128x96 8-bit RGB, with the prompt in a tEXt chunk. */
	ck_assert_int_eq(cc_png_decode(disk, disk_len, &width, &height, &ctype), 0);
	ck_assert_int_eq(width, 128);
	ck_assert_int_eq(height, 96);
	ck_assert_int_eq(ctype, 2);
	ck_assert_msg(memmem(disk, disk_len, "tEXtprompt", 10) != NULL, "no tEXt prompt chunk");

	/* PreviewImage's file, through type=temp. */
	temp_name = history_image(PID1, "6");
	snprintf(path, sizeof path, "/view?filename=%s&subfolder=&type=temp", temp_name);
	ck_assert_int_eq(cc_http(w.port, "GET", path, NULL, NULL, 0, &r), 0);
	ck_assert_int_eq(r.status, 200);
	snprintf(path, sizeof path, "%s/%s", w.temp, temp_name);
	temp_disk = tu_read_file(path, &temp_len);
	ck_assert_msg(temp_disk && r.len == temp_len && memcmp(r.body, temp_disk, temp_len) == 0,
		      "temp file differs from %s", path);
	ck_assert_int_eq(cc_png_decode(r.body, r.len, &width, &height, &ctype), 0);
	ck_assert_int_eq(width, 256);
	ck_assert_int_eq(height, 256);
	tu_resp_free(&r);
	/* Not in output: the type picks the directory. */
	snprintf(path, sizeof path, "/view?filename=%s&type=output", temp_name);
	ck_assert_int_eq(cc_http(w.port, "GET", path, NULL, NULL, 0, &r), 0);
	ck_assert_int_eq(r.status, 404);
	tu_resp_free(&r);
	/* Only the basename of filename counts; "/x" is refused. */
	ck_assert_int_eq(cc_http(w.port, "GET", "/view?filename=%2Fetc%2Fpasswd", NULL, NULL, 0, &r), 0);
	ck_assert_int_eq(r.status, 400);
	tu_resp_free(&r);
	/* A link placed in the folder is served only when it stays inside it. */
	snprintf(path, sizeof path, "%s/leak.txt", w.out);
	ck_assert_int_eq(symlink("/etc/passwd", path), 0);
	ck_assert_int_eq(cc_http(w.port, "GET", "/view?filename=leak.txt", NULL, NULL, 0, &r), 0);
	ck_assert_int_eq(r.status, 403);
	ck_assert_ptr_null(memmem(r.body, r.len, "root:", 5));
	tu_resp_free(&r);
	snprintf(path, sizeof path, "%s/alias.png", w.out);
	ck_assert_int_eq(symlink("fr_weightless_00001_.png", path), 0);
	ck_assert_int_eq(cc_http(w.port, "GET", "/view?filename=alias.png", NULL, NULL, 0, &r), 0);
	ck_assert_int_eq(r.status, 200);
	ck_assert(r.len == disk_len && memcmp(r.body, disk, disk_len) == 0);
	tu_resp_free(&r);
	free(temp_name);
	free(temp_disk);
	free(disk);
	cc_log_free(&log);
	tws_close(t);
	cc_stop_clean(&w);
}
END_TEST

/* ---- 5. validation ---- */

/* POSTs the capture's request seq; the answer must be the capture's. */
static void replay_rejected(int seq)
{
	char *req = cc_tr_request(seq), *got, *want;
	struct tu_resp r;

	ck_assert_int_eq(cc_http(w.port, "POST", "/prompt", NULL, req, strlen(req), &r), 0);
	ck_assert_msg(r.status == 400, "seq %d: status %d: %s", seq, r.status, r.body);
	ck_assert_str_eq(tu_resp_header(&r, "Content-Type"), "application/json; charset=utf-8");
	cc_assert_pyjson(r.body);
	got = canon_errors(r.body, 0);
	want = canon_errors(cc_tr_str(seq, "resp_text"), 0);
	ck_assert_msg(strcmp(got, want) == 0, "seq %d (%s):\n got: %s\nwant: %s", seq,
		      cc_tr_str(seq, "label"), got, want);
	free(got);
	free(want);
	free(req);
	tu_resp_free(&r);
}

START_TEST(rejected_prompts_answer_400_as_comfyui)
{
	/*
	 * Unknown class_type, missing input upstream, value below min, value
	 * not an INT, no output node, node without class_type, no prompt.
	 */
	static const int seqs[] = {111, 124, 128, 129, 160, 161, 162};
	struct tws *t;

	cc_start(&w, NULL);
	t = cc_ws_open(w.port, "", CID, NULL);
	for (size_t i = 0; i < sizeof seqs / sizeof seqs[0]; i++)
		replay_rejected(seqs[i]);
	/* Nothing was queued: no WebSocket traffic at all. */
	cc_fence(w.port, t, 0);
	expect_text(w.port, "/queue", cc_tr_str(21, "resp_text"));
	expect_text(w.port, "/history", "{}");
	tws_close(t);
	cc_stop_clean(&w);
}
END_TEST

START_TEST(partially_valid_prompts_run_with_node_errors)
{
	/* seq: the capture's request; the outputs that must still run. */
	static const struct {
		int seq;
		const char *outputs;
	} cases[] = {
		{112, "[\"6\", \"8\"]"}, /* SaveImage without images */
		{130, "[\"6\"]"},        /* combo value not in list */
		{135, "[\"6\", \"8\"]"}, /* INT linked into IMAGE */
		{154, "[\"6\", \"8\"]"}, /* link to node "42" */
		{157, "[\"6\", \"8\"]"}, /* 3-element link */
		{204, "[\"5\", \"6\", \"8\"]"}, /* an extra SaveImage "9" without images */
	};
	struct cc_log log = {0};
	struct tws *t;

	cc_start(&w, NULL);
	t = cc_ws_open(w.port, "", CID, NULL);
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char *req = cc_tr_request(cases[i].seq), *got, *want, *id, *outs;
		struct json_object *body = cc_parse(req, strlen(req)), *root, *e, *o;
		struct tu_resp r;

		id = cc_submit(w.port, body, &r);
		ck_assert_msg(id != NULL, "seq %d: status %d: %s", cases[i].seq, r.status, r.body);
		cc_assert_pyjson(r.body);
		o = cc_parse(r.body, r.len);
		got = cc_keys(o);
		ck_assert_str_eq(got, "prompt_id,number,node_errors");
		free(got);
		json_object_put(o);
		/* KeyError's traceback names Python files: only its shape is compared. */
		got = canon_errors(r.body, 1);
		want = canon_errors(cc_tr_str(cases[i].seq, "resp_text"), 1);
		ck_assert_msg(strcmp(got, want) == 0, "seq %d (%s):\n got: %s\nwant: %s", cases[i].seq,
			      cc_tr_str(cases[i].seq, "label"), got, want);
		cc_collect(t, id, RUN_MS, &log);
		e = history_entry(id, &root);
		ck_assert_str_eq(json_get_str(json_get_obj(e, "status"), "status_str"), "success");
		o = json_object_array_get_idx(json_get_arr(e, "prompt"), 4);
		cc_sort_strings(o);
		outs = cc_dump(o);
		ck_assert_msg(strcmp(outs, cases[i].outputs) == 0, "seq %d ran outputs %s, expected %s",
			      cases[i].seq, outs, cases[i].outputs);
		free(outs);
		json_object_put(root);
		json_object_put(body);
		tu_resp_free(&r);
		free(got);
		free(want);
		free(req);
		free(id);
	}
	cc_log_free(&log);
	tws_close(t);
	cc_stop_clean(&w);
}
END_TEST

/*
 * The capture's POST /prompt sequence, replayed on a fresh worker: every
 * status, and every number (rejected prompts consume numbers too).
 */
START_TEST(numbers_follow_the_capture)
{
	static const int seqs[] = {41,  89,  111, 112, 124, 128, 129, 130, 135,
				   154, 157, 160, 161, 162, 163, 202, 204};
	char *ids[32];
	size_t nids = 0;
	struct tws *t;
	struct tu_resp r;
	struct json_object *o, *b;
	struct cc_msg m;

	cc_start(&w, NULL);
	t = cc_ws_open(w.port, "", CID, NULL);
	for (size_t i = 0; i < sizeof seqs / sizeof seqs[0]; i++) {
		struct json_object *rec = cc_tr(seqs[i]);
		const char *raw = json_get_str(rec, "req_raw");
		char *req = raw ? xstrdup(raw) : cc_tr_request(seqs[i]);
		const char *hdr = seqs[i] == 202 ? "Origin: http://evil.example\r\n" : NULL;
		int want = (int)json_get_int(rec, "status", -1);

		ck_assert_int_eq(cc_http(w.port, "POST", "/prompt", hdr, req, strlen(req), &r), 0);
		ck_assert_msg(r.status == want, "seq %d (%s): %d, the capture got %d: %s", seqs[i],
			      cc_tr_str(seqs[i], "label"), r.status, want, r.body);
		if (want == 200) {
			o = cc_parse(r.body, r.len);
			ck_assert_msg(json_object_is_type(json_get(o, "number"), json_type_int),
				      "number is not an int: %s", r.body);
			ck_assert_msg(json_get_int(o, "number", -1) ==
					      json_get_int(json_get_obj(rec, "resp_json"), "number", -2),
				      "seq %d: number %s, the capture's reply %s", seqs[i], r.body,
				      cc_tr_str(seqs[i], "resp_text"));
			ids[nids++] = xstrdup(json_get_str(o, "prompt_id"));
			json_object_put(o);
		} else if (want == 500) {
			ck_assert_str_eq(r.body, cc_tr_str(seqs[i], "resp_text"));
			ck_assert_str_eq(tu_resp_header(&r, "Content-Type"), "text/plain; charset=utf-8");
		} else if (want == 403) {
			ck_assert_msg(r.len == 0, "403 with a body: %s", r.body);
		}
		tu_resp_free(&r);
		free(req);
	}
	/* front: -counter; an explicit number: float(number), counter untouched. */
	b = wl_body(NULL);
	json_put(b, "front", json_object_new_boolean(1));
	ids[nids++] = cc_submit(w.port, b, &r);
	ck_assert_msg(strstr(r.body, "\"number\": -15,") != NULL, "front: %s", r.body);
	tu_resp_free(&r);
	json_object_put(b);
	b = wl_body(NULL);
	json_put(b, "number", json_int(5));
	ids[nids++] = cc_submit(w.port, b, &r);
	ck_assert_msg(strstr(r.body, "\"number\": 5.0,") != NULL, "number 5: %s", r.body);
	tu_resp_free(&r);
	json_object_put(b);
	b = wl_body("fr-own-98298e10");
	ids[nids++] = cc_submit(w.port, b, &r);
	ck_assert_str_eq(r.body, "{\"prompt_id\": \"fr-own-98298e10\", \"number\": 16, \"node_errors\": {}}");
	tu_resp_free(&r);
	json_object_put(b);
	/* Every accepted prompt ends (each sends executing null to its owner). */
	for (size_t left = nids; left > 0;) {
		cc_wait_type(t, "executing", RUN_MS, &m);
		for (size_t i = 0; i < nids; i++)
			if (ids[i] && cc_is_done(&m, ids[i])) {
				free(ids[i]);
				ids[i] = NULL;
				left--;
			}
		cc_msg_free(&m);
	}
	tws_close(t);
	cc_stop_clean(&w);
}
END_TEST

START_TEST(bad_bodies_routes_and_origin)
{
	static const char page[] = "500 Internal Server Error\n\nServer got itself in trouble";
	static const struct {
		const char *path, *body;
	} crash[] = {
		{"/queue", "{not json"}, {"/free", ""}, {"/free", "nope"}, {"/history", "[1,"},
		{"/prompt", "this is not json"}, {"/api/queue", "}"},
	};
	struct tu_resp r;
	char hdr[128], *free_body;

	cc_start(&w, NULL);
	for (size_t i = 0; i < sizeof crash / sizeof crash[0]; i++) {
		ck_assert_int_eq(cc_http(w.port, "POST", crash[i].path, NULL, crash[i].body,
					 strlen(crash[i].body), &r),
				 0);
		ck_assert_msg(r.status == 500 && strcmp(r.body, page) == 0, "POST %s \"%s\": %d %s",
			      crash[i].path, crash[i].body, r.status, r.body);
		ck_assert_str_eq(tu_resp_header(&r, "Content-Type"), "text/plain; charset=utf-8");
		tu_resp_free(&r);
	}
	/* /interrupt tolerates a body that is not JSON. */
	cc_post_empty(w.port, "/interrupt", "not json", 200);
	free_body = cc_tr_request(796);
	cc_post_empty(w.port, "/free", free_body, 200);
	free(free_body);
	ck_assert_int_eq(cc_http(w.port, "GET", "/no/such/route", NULL, NULL, 0, &r), 0);
	ck_assert_int_eq(r.status, 404);
	tu_resp_free(&r);
	ck_assert_int_eq(cc_http(w.port, "GET", "/models/nonexistent-folder", NULL, NULL, 0, &r), 0);
	ck_assert_int_eq(r.status, 404);
	ck_assert_uint_eq(r.len, 0);
	tu_resp_free(&r);
	ck_assert_int_eq(cc_http(w.port, "OPTIONS", "/prompt", NULL, NULL, 0, &r), 0);
	ck_assert_int_eq(r.status, 200);
	ck_assert_uint_eq(r.len, 0);
	tu_resp_free(&r);
	/* The origin guard: a foreign Origin on a loopback Host. */
	ck_assert_int_eq(cc_http(w.port, "GET", "/system_stats", "Origin: http://evil.example\r\n",
				 NULL, 0, &r),
			 0);
	ck_assert_int_eq(r.status, 403);
	ck_assert_uint_eq(r.len, 0);
	tu_resp_free(&r);
	snprintf(hdr, sizeof hdr, "Origin: http://127.0.0.1:%d\r\n", w.port);
	ck_assert_int_eq(cc_http(w.port, "GET", "/system_stats", hdr, NULL, 0, &r), 0);
	ck_assert_int_eq(r.status, 200);
	tu_resp_free(&r);
	expect_text(w.port, "/queue", cc_tr_str(21, "resp_text"));
	cc_stop_clean(&w);
}
END_TEST

/* ---- 6. queue and interrupt ---- */

#define QCID "fr-queue"

/* A sim prompt owned by QCID: SimSampler "2" runs steps x step_ms. */
static struct json_object *sim_body(long long seed, int steps, int step_ms, const char *fail)
{
	return cc_request(cc_sim_prompt(seed, steps, step_ms, fail, 64), QCID);
}

/* The next progress frame of the sampler; returns its value. */
static int64_t next_progress(struct tws *t)
{
	struct cc_msg m;
	int64_t v;
	char *keys;

	cc_wait_type(t, "progress", 5000, &m);
	keys = cc_keys(m.data);
	ck_assert_str_eq(keys, "value,max,prompt_id,node");
	ck_assert_str_eq(json_get_str(m.data, "node"), "2");
	v = json_get_int(m.data, "value", -1);
	free(keys);
	cc_msg_free(&m);
	return v;
}

static void expect_health(const char *status, const char *running)
{
	struct json_object *h = cc_get_json(w.port, "/health");
	const char *r = json_get_str(h, "running");

	ck_assert_str_eq(json_get_str(h, "status"), status);
	if (running)
		ck_assert_msg(r && strcmp(r, running) == 0, "/health running: %s", r ? r : "null");
	json_object_put(h);
}

static void expect_remaining(int n)
{
	char want[64];

	snprintf(want, sizeof want, "{\"exec_info\": {\"queue_remaining\": %d}}", n);
	expect_text(w.port, "/prompt", want);
}

/*
 * After an interrupt: only progress frames, then execution_interrupted on
 * node "2" (fields in the capture's order), status, executing null.
 */
static void expect_interrupted(struct tws *t, const char *id)
{
	struct cc_log log = {0};
	const struct cc_msg *m;
	struct json_object *tr = tr_json(321);
	char *keys, *want_keys, done[256];
	int completed;
	const char *last;

	cc_collect(t, id, RUN_MS, &log);
	ck_assert_msg(log.n >= 3, "after interrupt: %s", cc_log_types(&log));
	for (size_t i = 0; i + 3 < log.n; i++)
		ck_assert_msg(strncmp(log.v[i].type, "progress", 8) == 0 ||
				      strcmp(log.v[i].type, "status") == 0,
			      "after interrupt: %s", cc_log_types(&log));
	m = &log.v[log.n - 3];
	ck_assert_msg(strcmp(m->type, "execution_interrupted") == 0, "after interrupt: %s",
		      cc_log_types(&log));
	keys = cc_keys(m->data);
	want_keys = cc_keys(json_get_obj(tr, "data"));
	ck_assert_str_eq(keys, want_keys);
	ck_assert_str_eq(json_get_str(m->data, "prompt_id"), id);
	ck_assert_str_eq(json_get_str(m->data, "node_id"), "2");
	ck_assert_str_eq(json_get_str(m->data, "node_type"), "SimSampler");
	ck_assert_str_eq(json_object_to_json_string(json_get_arr(m->data, "executed")), "[ \"1\" ]");
	ck_assert(json_object_is_type(json_get(m->data, "timestamp"), json_type_int));
	ck_assert_str_eq(log.v[log.n - 2].raw,
			 "{\"type\": \"status\", \"data\": {\"status\": {\"exec_info\": "
			 "{\"queue_remaining\": 0}}}}");
	snprintf(done, sizeof done,
		 "{\"type\": \"executing\", \"data\": {\"node\": null, \"prompt_id\": \"%s\"}}", id);
	ck_assert_str_eq(log.v[log.n - 1].raw, done);
	ck_assert_str_eq(history_status(id, &completed, &last), "error");
	ck_assert_int_eq(completed, 0);
	ck_assert_str_eq(last, "execution_interrupted");
	free(keys);
	free(want_keys);
	json_object_put(tr);
	cc_log_free(&log);
}

START_TEST(queue_pending_delete_and_targeted_interrupt)
{
	struct json_object *b1, *b2, *q, *item;
	struct tws *t;
	char *id1, *id2, *a, *b, path[256];
	int64_t v;

	cc_start(&w, NULL);
	t = cc_ws_open(w.port, "", QCID, NULL);
	b1 = sim_body(1, 50, 200, "none");
	id1 = cc_submit_ok(w.port, b1);
	v = next_progress(t);
	b2 = sim_body(2, 1, 0, "none");
	id2 = cc_submit_ok(w.port, b2);

	q = cc_get_json(w.port, "/queue");
	a = cc_keys(q);
	ck_assert_str_eq(a, "queue_running,queue_pending");
	free(a);
	ck_assert_uint_eq(json_object_array_length(json_get_arr(q, "queue_running")), 1);
	item = json_object_array_get_idx(json_get_arr(q, "queue_running"), 0);
	ck_assert_uint_eq(json_object_array_length(item), 5);
	ck_assert(json_object_is_type(json_object_array_get_idx(item, 0), json_type_int));
	ck_assert_int_eq(json_object_get_int64(json_object_array_get_idx(item, 0)), 0);
	ck_assert_str_eq(json_object_get_string(json_object_array_get_idx(item, 1)), id1);
	a = cc_dump(json_object_array_get_idx(item, 2));
	b = cc_dump(json_get(b1, "prompt"));
	ck_assert_str_eq(a, b);
	free(a);
	free(b);
	a = cc_dump(json_object_array_get_idx(item, 3));
	ck_assert_str_eq(a, "{\"client_id\": \"" QCID "\"}");
	free(a);
	a = cc_dump(json_object_array_get_idx(item, 4));
	ck_assert_str_eq(a, "[\"3\"]");
	free(a);
	ck_assert_uint_eq(json_object_array_length(json_get_arr(q, "queue_pending")), 1);
	item = json_object_array_get_idx(json_get_arr(q, "queue_pending"), 0);
	ck_assert_uint_eq(json_object_array_length(item), 5);
	ck_assert_int_eq(json_object_get_int64(json_object_array_get_idx(item, 0)), 1);
	ck_assert_str_eq(json_object_get_string(json_object_array_get_idx(item, 1)), id2);
	json_object_put(q);
	expect_remaining(2);
	expect_health("busy", id1);

	cc_post_empty(w.port, "/queue", "{\"delete\": [\"not-queued\"]}", 200);
	snprintf(path, sizeof path, "{\"delete\": [\"%s\"]}", id2);
	cc_post_empty(w.port, "/queue", path, 200);
	q = cc_get_json(w.port, "/queue");
	ck_assert_uint_eq(json_object_array_length(json_get_arr(q, "queue_running")), 1);
	ck_assert_uint_eq(json_object_array_length(json_get_arr(q, "queue_pending")), 0);
	json_object_put(q);
	expect_remaining(1);

	/* Aimed at another prompt: ignored, the sampler goes on. */
	a = cc_tr_request(301);
	cc_post_empty(w.port, "/interrupt", a, 200);
	free(a);
	ck_assert_int_gt(next_progress(t), v);
	snprintf(path, sizeof path, "{\"prompt_id\": \"%s\"}", id1);
	cc_post_empty(w.port, "/interrupt", path, 200);
	expect_interrupted(t, id1);
	snprintf(path, sizeof path, "/history/%s", id2);
	expect_text(w.port, path, "{}"); /* deleted before it ran */
	expect_health("idle", NULL);
	json_object_put(b1);
	json_object_put(b2);
	free(id1);
	free(id2);
	tws_close(t);
	cc_stop_clean(&w);
}
END_TEST

START_TEST(global_interrupt_then_next_prompt_runs)
{
	struct cc_log log = {0};
	struct json_object *b;
	struct tws *t;
	char *id;
	int completed;
	const char *last;

	cc_start(&w, NULL);
	t = cc_ws_open(w.port, "", QCID, NULL);
	b = sim_body(1, 50, 200, "none");
	id = cc_submit_ok(w.port, b);
	json_object_put(b);
	next_progress(t);
	cc_post_empty(w.port, "/interrupt", "", 200);
	expect_interrupted(t, id);
	free(id);
	/* While idle an interrupt is harmless: the flag is cleared at start. */
	cc_post_empty(w.port, "/api/interrupt", "{}", 200);
	id = run(t, sim_body(2, 2, 0, "none"), &log);
	ck_assert_str_eq(history_status(id, &completed, &last), "success");
	ck_assert_int_eq(completed, 1);
	ck_assert_str_eq(last, "execution_success");
	free(id);
	cc_log_free(&log);
	tws_close(t);
	cc_stop_clean(&w);
}
END_TEST

START_TEST(queue_runs_by_number_front_first)
{
	static const char *const order[] = {"front", "a", "b", "explicit-2.5", "c"};
	struct json_object *b;
	struct tws *t;
	struct tu_resp r;
	char *id;
	size_t got = 0;

	cc_start(&w, NULL);
	t = cc_ws_open(w.port, "", QCID, NULL);
	b = sim_body(1, 50, 200, "none");
	json_put(b, "prompt_id", json_str("slow"));
	free(cc_submit_ok(w.port, b));
	json_object_put(b);
	next_progress(t);
	for (int i = 0; i < 5; i++) {
		static const char *const ids[] = {"a", "b", "c", "front", "explicit-2.5"};
		static const char *const numbers[] = {"1", "2", "3", "-4", "2.5"};
		char want[128];

		b = sim_body(10 + i, 1, 0, "none");
		json_put(b, "prompt_id", json_str(ids[i]));
		if (i == 3)
			json_put(b, "front", json_object_new_boolean(1));
		if (i == 4)
			json_put(b, "number", json_object_new_double(2.5));
		id = cc_submit(w.port, b, &r);
		snprintf(want, sizeof want, "{\"prompt_id\": \"%s\", \"number\": %s, \"node_errors\": {}}",
			 ids[i], numbers[i]);
		ck_assert_str_eq(r.body, want);
		tu_resp_free(&r);
		json_object_put(b);
		free(id);
	}
	expect_remaining(6);
	cc_post_empty(w.port, "/interrupt", "", 200);
	/* execution_start frames come in the order the prompts run. */
	while (got < 5) {
		struct cc_msg m;

		cc_wait_type(t, "execution_start", RUN_MS, &m);
		ck_assert_msg(strcmp(json_get_str(m.data, "prompt_id"), order[got]) == 0,
			      "prompt %zu to run is %s, expected %s", got,
			      json_get_str(m.data, "prompt_id"), order[got]);
		got++;
		cc_msg_free(&m);
	}
	tws_close(t);
	cc_stop_clean(&w);
}
END_TEST

/*
 * ComfyUI's delete_queue_item wipes the queue when it removes the last
 * pending item, and both steps broadcast status (capture seq 296-297).
 */
START_TEST(deleting_last_pending_item_broadcasts_status_twice)
{
	static const char *const args[] = {"--model", "sim", "--load-ms", "60000", NULL};
	struct json_object *b;
	struct tws *t;
	char *id, del[128];

	cc_start(&w, args); /* still loading: the prompt stays pending */
	t = cc_ws_open(w.port, "", QCID, NULL);
	b = sim_body(1, 1, 0, "none");
	id = cc_submit_ok(w.port, b);
	json_object_put(b);
	cc_expect_status(t, 1);
	snprintf(del, sizeof del, "{\"delete\": [\"%s\"]}", id);
	cc_post_empty(w.port, "/queue", del, 200);
	cc_expect_status(t, 0);
	cc_expect_status(t, 0);
	free(id);
	tws_close(t);
}
END_TEST

/* ---- 7. faults of the sim model ---- */

START_TEST(fail_oom_sends_execution_error_like_comfyui)
{
	struct cc_log log = {0};
	struct json_object *tr = tr_json(243), *root, *e, *msgs, *last;
	const struct cc_msg *m;
	struct tws *t;
	char *id, *keys, *want_keys, *a, *b, done[256];
	const char *msg;

	cc_start(&w, NULL);
	t = cc_ws_open(w.port, "", QCID, NULL);
	id = run(t, sim_body(3, 5, 10, "oom"), &log);
	ck_assert_msg(log.n >= 3 && strcmp(log.v[log.n - 3].type, "execution_error") == 0,
		      "oom run: %s", cc_log_types(&log));
	ck_assert_msg(strstr(cc_log_types(&log), "execution_success") == NULL, "oom run: %s",
		      cc_log_types(&log));
	m = &log.v[log.n - 3];
	keys = cc_keys(m->data);
	want_keys = cc_keys(json_get_obj(tr, "data"));
	ck_assert_str_eq(keys, want_keys);
	ck_assert_str_eq(json_get_str(m->data, "prompt_id"), id);
	ck_assert_str_eq(json_get_str(m->data, "node_id"), "2");
	ck_assert_str_eq(json_get_str(m->data, "node_type"), "SimSampler");
	ck_assert_str_eq(json_get_str(m->data, "exception_type"), "torch.OutOfMemoryError");
	msg = json_get_str(m->data, "exception_message");
	ck_assert_msg(strncmp(msg, "CUDA out of memory. Tried to allocate", 37) == 0 &&
			      msg[strlen(msg) - 1] == '\n',
		      "exception_message: %s", msg);
	a = cc_dump(json_get_arr(m->data, "executed"));
	ck_assert_str_eq(a, "[\"1\"]");
	free(a);
	ck_assert_int_gt(json_object_array_length(json_get_arr(m->data, "traceback")), 0);
	ck_assert(json_object_is_type(json_object_array_get_idx(json_get_arr(m->data, "traceback"), 0),
				      json_type_string));
	ck_assert_msg(json_get_arr(json_get_obj(m->data, "current_inputs"), "seed") != NULL,
		      "current_inputs: %s", m->raw);
	ck_assert_msg(json_get_arr(m->data, "current_outputs") != NULL, "current_outputs: %s", m->raw);
	ck_assert(json_object_is_type(json_get(m->data, "timestamp"), json_type_int));
	ck_assert_str_eq(log.v[log.n - 2].raw,
			 "{\"type\": \"status\", \"data\": {\"status\": {\"exec_info\": "
			 "{\"queue_remaining\": 0}}}}");
	snprintf(done, sizeof done,
		 "{\"type\": \"executing\", \"data\": {\"node\": null, \"prompt_id\": \"%s\"}}", id);
	ck_assert_str_eq(log.v[log.n - 1].raw, done);
	/* History: error, not completed, and the same message last. */
	e = history_entry(id, &root);
	ck_assert_str_eq(json_get_str(json_get_obj(e, "status"), "status_str"), "error");
	ck_assert_int_eq(json_get_bool(json_get_obj(e, "status"), "completed", -1), 0);
	msgs = json_get_arr(json_get_obj(e, "status"), "messages");
	last = json_object_array_get_idx(msgs, json_object_array_length(msgs) - 1);
	ck_assert_str_eq(json_object_get_string(json_object_array_get_idx(last, 0)), "execution_error");
	a = cc_dump(json_object_array_get_idx(last, 1));
	b = cc_dump(m->data);
	ck_assert_str_eq(a, b);
	free(a);
	free(b);
	json_object_put(root);
	json_object_put(tr);
	free(keys);
	free(want_keys);
	free(id);
	cc_log_free(&log);
	tws_close(t);
	cc_stop_clean(&w);
}
END_TEST

/* The worker dies mid-job after some progress; returns the progress count. */
static int expect_crash(const char *fail_input)
{
	struct json_object *b;
	struct tws *t;
	struct cc_msg m;
	int progress = 0, status;
	char *id;

	t = cc_ws_open(w.port, "", QCID, NULL);
	b = sim_body(4, 10, 20, fail_input);
	id = cc_submit_ok(w.port, b);
	json_object_put(b);
	while (cc_recv(t, 10000, &m) == 0) {
		ck_assert_msg(strcmp(m.type, "execution_success") && strcmp(m.type, "execution_error"),
			      "the crashing run ended with %s", m.type);
		progress += strcmp(m.type, "progress") == 0;
		cc_msg_free(&m);
	}
	status = tu_wait_exit(w.pid, 10000);
	ck_assert_msg(status != -1 && WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
		      "fail=crash: the worker did not die of SIGKILL (status 0x%x)", (unsigned)status);
	w.pid = 0;
	ck_assert_msg(progress >= 1 && progress < 10, "%d progress frames before the crash", progress);
	free(id);
	tws_close(t);
	return progress;
}

START_TEST(fail_crash_kills_the_process_mid_job)
{
	static const char *const args[] = {"--model", "sim", "--fail", "crash", NULL};

	cc_start(&w, args); /* --fail wins over the input */
	expect_crash("none");
	cc_start(&w, NULL);
	expect_crash("crash");
}
END_TEST

START_TEST(fail_hang_stops_progress_but_serves)
{
	struct json_object *b, *q;
	struct tws *t;
	struct cc_msg m;
	char *id, *id2;

	cc_start(&w, NULL);
	t = cc_ws_open(w.port, "", QCID, NULL);
	b = sim_body(5, 10, 30, "hang");
	id = cc_submit_ok(w.port, b);
	json_object_put(b);
	for (int64_t v = 0; v < 5;)
		v = next_progress(t);
	/* Ten steps' worth of silence: the sampler hangs at half its steps. */
	ck_assert_msg(cc_recv(t, 300, &m) < 0, "a hung node sent %s", m.raw);
	expect_health("busy", id);
	b = sim_body(6, 1, 0, "none");
	id2 = cc_submit_ok(w.port, b);
	json_object_put(b);
	q = cc_get_json(w.port, "/queue");
	ck_assert_uint_eq(json_object_array_length(json_get_arr(q, "queue_running")), 1);
	ck_assert_uint_eq(json_object_array_length(json_get_arr(q, "queue_pending")), 1);
	json_object_put(q);
	expect_remaining(2);
	json_object_put(cc_get_json(w.port, "/system_stats"));
	free(id);
	free(id2);
	tws_close(t);
}
END_TEST

START_TEST(load_ms_reports_starting_then_runs_queued_prompt)
{
	static const char *const args[] = {"--model", "sim", "--load-ms", "1000", NULL};
	struct cc_log log = {0};
	struct json_object *b, *q;
	struct tws *t;
	int64_t t0 = util_now_ms(), started = 0;
	char *id;
	int completed;
	const char *last;

	cc_spawn(&w, args);
	ck_assert_int_eq(tu_wait_http(w.port, "/health", 200, 20000), 0);
	expect_health("starting", NULL);
	t = cc_ws_open(w.port, "", CID, NULL);
	b = wl_body(NULL);
	id = cc_submit_ok(w.port, b);
	json_object_put(b);
	expect_health("starting", NULL);
	q = cc_get_json(w.port, "/queue");
	ck_assert_uint_eq(json_object_array_length(json_get_arr(q, "queue_running")), 0);
	ck_assert_uint_eq(json_object_array_length(json_get_arr(q, "queue_pending")), 1);
	json_object_put(q);
	cc_collect(t, id, RUN_MS, &log);
	for (size_t i = 0; i < log.n; i++)
		if (strcmp(log.v[i].type, "execution_start") == 0)
			started = json_get_int(log.v[i].data, "timestamp", 0);
	ck_assert_msg(started - t0 >= 1000 - 20, "execution started %lld ms after the spawn",
		      (long long)(started - t0));
	ck_assert_str_eq(history_status(id, &completed, &last), "success");
	expect_health("idle", NULL);
	free(id);
	cc_log_free(&log);
	tws_close(t);
	cc_stop_clean(&w);
}
END_TEST

/* ---- 8. robustness ---- */

START_TEST(body_over_max_upload_size_is_413)
{
	static const char *const args[] = {"--model", "sim", "--max-upload-size", "1", NULL};
	size_t n = 3 << 19; /* 1.5 MB */
	char *big = xmalloc(n + 64);
	struct json_object *f, *b;
	struct tws *t;
	struct tu_resp r;

	cc_start(&w, args);
	t = cc_ws_open(w.port, "", CID, NULL);
	f = cc_get_json(w.port, "/features");
	ck_assert_int_eq(json_get_int(f, "max_upload_size", -1), 1 << 20);
	json_object_put(f);
	memcpy(big, "{\"prompt\": {}, \"pad\": \"", 23);
	memset(big + 23, 'a', n);
	memcpy(big + 23 + n, "\"}", 3);
	ck_assert_int_eq(cc_http(w.port, "POST", "/prompt", NULL, big, strlen(big), &r), 0);
	ck_assert_int_eq(r.status, 413);
	tu_resp_free(&r);
	free(big);
	/* Nothing queued, no number taken, no status broadcast. */
	cc_fence(w.port, t, 0);
	expect_text(w.port, "/queue", cc_tr_str(21, "resp_text"));
	b = wl_body("after-413");
	free(cc_submit(w.port, b, &r));
	ck_assert_str_eq(r.body, "{\"prompt_id\": \"after-413\", \"number\": 0, \"node_errors\": {}}");
	tu_resp_free(&r);
	json_object_put(b);
	tws_close(t);
	cc_stop_clean(&w);
}
END_TEST

/* Closes a WebSocket without a close frame, as a crashed client does. */
static void vanish(struct tws *t)
{
	struct linger l = {1, 0};

	setsockopt(tws_fd(t), SOL_SOCKET, SO_LINGER, &l, sizeof l);
	shutdown(tws_fd(t), SHUT_RDWR);
	tws_close(t); /* its close frame cannot go out any more */
}

static int raw_connect(int port, const char *bytes)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_int_eq(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
	ck_assert_int_eq(send(fd, bytes, strlen(bytes), MSG_NOSIGNAL), (ssize_t)strlen(bytes));
	return fd;
}

START_TEST(broken_clients_do_not_disturb_others)
{
	struct cc_log log = {0};
	struct json_object *b;
	struct tws *ta, *tb;
	char *ida, *idb;
	int half, idle, completed;
	const char *last;

	cc_start(&w, NULL);
	tb = cc_ws_open(w.port, "", CID, NULL);
	ta = cc_ws_open(w.port, "", QCID, NULL);
	/* Half a request, then gone; and one that stays half-sent. */
	half = raw_connect(w.port, "POST /prompt HTTP/1.1\r\nHost: 127.0.0.1\r\n"
				   "Content-Type: application/json\r\nContent-Length: 5000\r\n\r\n"
				   "{\"prompt\": {\"1\": ");
	close(half);
	idle = raw_connect(w.port, "GET /system_st");
	b = sim_body(7, 6, 30, "none");
	ida = cc_submit_ok(w.port, b);
	json_object_put(b);
	b = wl_body(NULL);
	idb = cc_submit_ok(w.port, b);
	json_object_put(b);
	next_progress(ta);
	vanish(ta); /* the owner of the running prompt vanishes mid-run */
	cc_collect(tb, idb, RUN_MS, &log);
	ck_assert_msg(strstr(cc_log_types(&log), "execution_success") != NULL, "B's run: %s",
		      cc_log_types(&log));
	ck_assert_str_eq(history_status(ida, &completed, &last), "success");
	ck_assert_str_eq(history_status(idb, &completed, &last), "success");
	expect_health("idle", NULL);
	close(idle);
	free(ida);
	free(idb);
	cc_log_free(&log);
	tws_close(tb);
	cc_stop_clean(&w);
}
END_TEST

#define NCONC 50

struct poster {
	int port;
	char *body;
	struct tu_resp resp;
	int rc;
};

static void *post_one(void *arg)
{
	struct poster *p = arg;

	p->rc = cc_http(p->port, "POST", "/prompt", NULL, p->body, strlen(p->body), &p->resp);
	return NULL;
}

START_TEST(fifty_concurrent_prompts_complete_with_unique_files)
{
	static struct poster posts[NCONC];
	pthread_t th[NCONC];
	char *ids[NCONC], *files[NCONC];
	struct tws *t;
	size_t left = NCONC;

	cc_start(&w, NULL);
	t = cc_ws_open(w.port, "", QCID, NULL);
	for (int i = 0; i < NCONC; i++) {
		struct json_object *b = cc_request(cc_sim_prompt(1000 + i, 1, 0, "none", 16), QCID);

		posts[i].port = w.port;
		posts[i].body = cc_dump(b);
		json_object_put(b);
	}
	for (int i = 0; i < NCONC; i++)
		ck_assert_int_eq(pthread_create(&th[i], NULL, post_one, &posts[i]), 0);
	for (int i = 0; i < NCONC; i++)
		pthread_join(th[i], NULL);
	for (int i = 0; i < NCONC; i++) {
		struct json_object *o;

		ck_assert_msg(posts[i].rc == 0 && posts[i].resp.status == 200, "POST %d: %d %s", i,
			      posts[i].resp.status, posts[i].resp.body);
		o = cc_parse(posts[i].resp.body, posts[i].resp.len);
		ids[i] = xstrdup(json_get_str(o, "prompt_id"));
		json_object_put(o);
		for (int k = 0; k < i; k++)
			ck_assert_str_ne(ids[k], ids[i]);
		tu_resp_free(&posts[i].resp);
		free(posts[i].body);
	}
	while (left > 0) {
		struct cc_msg m;

		cc_wait_type(t, "executing", 30000, &m);
		for (int i = 0; i < NCONC; i++)
			left -= cc_is_done(&m, ids[i]);
		cc_msg_free(&m);
	}
	for (int i = 0; i < NCONC; i++) {
		int completed;
		const char *last;

		ck_assert_str_eq(history_status(ids[i], &completed, &last), "success");
		files[i] = history_image(ids[i], "3");
		for (int k = 0; k < i; k++)
			ck_assert_str_ne(files[k], files[i]);
	}
	ck_assert_int_eq(cc_count_files(w.out), NCONC);
	for (int i = 0; i < NCONC; i++) {
		free(ids[i]);
		free(files[i]);
	}
	tws_close(t);
	cc_stop_clean(&w);
}
END_TEST

/* ---- 9. info routes ---- */

START_TEST(system_stats_object_info_and_health)
{
	static const char *const args[] = {"--model", "sim", "--vram", "1000", "--vram-total", "8000",
					   NULL};
	static const char *const classes[] = {"EmptyImage", "ImageInvert", "ImageBlur",
					      "ImageScale", "SaveImage", "PreviewImage",
					      "GetImageSize", "PreviewAny", "SimTextEncode",
					      "SimSampler", "SimVideoSampler", "CreateVideo",
					      "SaveVideo"};
	struct json_object *s, *tr, *devs, *d, *oi;
	char *a, *b;

	cc_start(&w, args);
	s = cc_get_json(w.port, "/system_stats");
	tr = cc_parse(cc_tr_str(17, "resp_text"), strlen(cc_tr_str(17, "resp_text")));
	a = cc_keys(s);
	ck_assert_str_eq(a, "system,devices");
	free(a);
	a = cc_keys(json_get_obj(s, "system"));
	b = cc_keys(json_get_obj(tr, "system"));
	ck_assert_str_eq(a, b);
	free(a);
	free(b);
	devs = json_get_arr(s, "devices");
	ck_assert_uint_eq(json_object_array_length(devs), 1);
	d = json_object_array_get_idx(devs, 0);
	a = cc_keys(d);
	b = cc_keys(json_object_array_get_idx(json_get_arr(tr, "devices"), 0));
	ck_assert_str_eq(a, b);
	free(a);
	free(b);
	ck_assert_int_eq(json_get_int(d, "vram_total", -1), (int64_t)8000 << 20);
	ck_assert_int_eq(json_get_int(d, "vram_free", -1), (int64_t)7000 << 20);
	json_object_put(s);
	json_object_put(tr);

	oi = cc_get_json(w.port, "/object_info");
	ck_assert_int_eq(json_object_object_length(oi), sizeof classes / sizeof classes[0]);
	for (size_t i = 0; i < sizeof classes / sizeof classes[0]; i++)
		ck_assert_msg(json_get_obj(oi, classes[i]) != NULL, "/object_info has no %s",
			      classes[i]);
	/* EmptyImage's entry is ComfyUI's, byte for byte. */
	expect_text(w.port, "/object_info/EmptyImage", cc_tr_str(28, "resp_text"));
	expect_text(w.port, "/api/object_info/EmptyImage", cc_tr_str(28, "resp_text"));
	a = cc_dump(json_get_obj(oi, "EmptyImage"));
	ck_assert_msg(strstr(cc_tr_str(28, "resp_text"), a) != NULL, "/object_info's EmptyImage: %s", a);
	free(a);
	json_object_put(oi);
	expect_text(w.port, "/object_info/NoSuchNode", cc_tr_str(30, "resp_text"));
	expect_health("idle", NULL);
	cc_stop_clean(&w);
}
END_TEST

/* ComfyUI's --listen: the address as the next argument, or none (every address). */
START_TEST(listen_takes_its_address_as_comfyui_does)
{
	static const char *const given[] = {"--listen", "127.0.0.1", "--model", "sim", NULL};
	static const char *const bare[] = {"--listen", "--model", "sim", NULL};

	cc_start(&w, given);
	ck_assert_msg(strstr(cc_log_tail(&w), "addr=127.0.0.1 ") != NULL, "log:\n%s", cc_log_tail(&w));
	cc_stop_clean(&w);
	cc_start(&w, bare);
	ck_assert_msg(strstr(cc_log_tail(&w), "addr=0.0.0.0 ") != NULL, "log:\n%s", cc_log_tail(&w));
	cc_stop_clean(&w);
}
END_TEST

START_TEST(api_prefix_serves_every_route)
{
	static const char *const paths[] = {
		"/prompt", "/queue", "/history", "/history/none", "/features", "/embeddings",
		"/extensions", "/models", "/models/checkpoints", "/object_info/EmptyImage",
		"/object_info/NoSuchNode", "/object_info",
	};
	static const char *const status_only[] = {"/", "/health", "/system_stats",
						  "/view?filename=nope.png", "/view",
						  "/models/nonexistent-folder"};
	struct cc_log log = {0};
	struct tws *t;
	struct tu_resp r1, r2;
	char api[256], *id, *text;
	struct json_object *b;

	cc_start(&w, NULL);
	t = cc_ws_open(w.port, "/api", CID, NULL);
	b = wl_body("via-api");
	text = cc_dump(b);
	ck_assert_int_eq(cc_http(w.port, "POST", "/api/prompt", NULL, text, strlen(text), &r1), 0);
	ck_assert_int_eq(r1.status, 200);
	tu_resp_free(&r1);
	free(text);
	json_object_put(b);
	id = xstrdup("via-api");
	cc_collect(t, id, RUN_MS, &log);
	for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
		snprintf(api, sizeof api, "/api%s", paths[i]);
		ck_assert_int_eq(cc_http(w.port, "GET", paths[i], NULL, NULL, 0, &r1), 0);
		ck_assert_int_eq(cc_http(w.port, "GET", api, NULL, NULL, 0, &r2), 0);
		ck_assert_msg(r1.status == 200 && r2.status == 200 && strcmp(r1.body, r2.body) == 0,
			      "GET %s (%d) and %s (%d) differ", paths[i], r1.status, api, r2.status);
		tu_resp_free(&r1);
		tu_resp_free(&r2);
	}
	for (size_t i = 0; i < sizeof status_only / sizeof status_only[0]; i++) {
		snprintf(api, sizeof api, "/api%s", status_only[i]);
		ck_assert_int_eq(cc_http(w.port, "GET", status_only[i], NULL, NULL, 0, &r1), 0);
		ck_assert_int_eq(cc_http(w.port, "GET", api, NULL, NULL, 0, &r2), 0);
		ck_assert_msg(r1.status == r2.status, "GET %s (%d) and %s (%d) differ", status_only[i],
			      r1.status, api, r2.status);
		tu_resp_free(&r1);
		tu_resp_free(&r2);
	}
	snprintf(api, sizeof api, "/api/history/%s", id);
	json_object_put(cc_get_json(w.port, api));
	cc_post_empty(w.port, "/api/free", "{\"free_memory\": true}", 200);
	cc_post_empty(w.port, "/api/history", "{\"clear\": true}", 200);
	expect_text(w.port, "/api/history", "{}");
	cc_post_empty(w.port, "/api/interrupt", "", 200);
	cc_fence(w.port, t, 0); /* via /queue; /api/queue below */
	cc_post_empty(w.port, "/api/queue", "{\"clear\": true}", 200);
	cc_expect_status(t, 0);
	free(id);
	cc_log_free(&log);
	tws_close(t);
	cc_stop_clean(&w);
}
END_TEST

START_TEST(free_memory_and_cache_none_rerun_everything)
{
	static const char *const none[] = {"--model", "sim", "--cache-none", NULL};
	struct cc_log log = {0};
	struct tws *t;

	for (int pass = 0; pass < 2; pass++) {
		cc_start(&w, pass ? none : NULL);
		t = cc_ws_open(w.port, "", CID, NULL);
		free(run(t, wl_body(NULL), &log));
		cc_log_free(&log);
		if (pass == 0)
			cc_post_empty(w.port, "/free", "{\"unload_models\": true, \"free_memory\": true}",
				      200);
		free(run(t, wl_body(NULL), &log));
		/* Nothing cached: every node runs again and writes a new file. */
		ck_assert_str_eq(log.v[3].type, "execution_cached");
		ck_assert_uint_eq(json_object_array_length(json_get_arr(log.v[3].data, "nodes")), 0);
		ck_assert_str_eq(executing_order(&log), "1,2,6,3,4,5,7,8");
		ck_assert_int_eq(cc_count_files(w.out), 2);
		cc_log_free(&log);
		tws_close(t);
		cc_stop_clean(&w);
	}
}
END_TEST

/* ---- more of the capture: runtime errors, float numbers, V3 info, routing ---- */

/*
 * The capture's SaveImage with prefix "../escape/fr_bad" after a first run
 * (seq 229): the upstream nodes are cached, node 5 fails at run time.
 * Returns the execution_error message (free with cc_msg_free()).
 */
static void save_escape_error(struct tws *t, char **id, struct cc_msg *err)
{
	struct cc_log log = {0};
	char *req;
	struct json_object *b;
	size_t i;

	free(run(t, wl_body(PID1), &log));
	cc_log_free(&log);
	req = cc_tr_request(229);
	b = cc_parse(req, strlen(req));
	json_put(b, "prompt_id", json_str("4b432cdc-097d-4233-8922-1605afeb02c1"));
	*id = run(t, b, &log);
	free(req);
	ck_assert_msg(log.n > 6, "escape run: %s", cc_log_types(&log));
	expect_frame(&log.v[3], 235, "escape", 3); /* execution_cached: all but 5 */
	for (i = 0; i < log.n && strcmp(log.v[i].type, "execution_error"); i++)
		;
	ck_assert_msg(i + 3 == log.n && strcmp(log.v[i - 1].type, "executing") == 0 &&
			      strcmp(cc_node(&log.v[i - 1]), "5") == 0,
		      "escape run: %s", cc_log_types(&log));
	ck_assert_msg(strstr(cc_log_types(&log), "execution_success") == NULL, "escape run: %s",
		      cc_log_types(&log));
	expect_frame(&log.v[log.n - 2], 244, "escape", log.n - 2);
	*err = log.v[i];
	memset(&log.v[i], 0, sizeof log.v[i]);
	cc_log_free(&log);
}

START_TEST(save_path_escape_fails_like_comfyui)
{
	struct json_object *tr = tr_json(243), *root, *e, *msgs;
	struct tws *t;
	struct cc_msg m;
	char *id, *keys, *want_keys, *a, *want, real[4096], path[4200];
	int completed;
	const char *last;

	cc_start(&w, NULL);
	t = cc_ws_open(w.port, "", CID, NULL);
	save_escape_error(t, &id, &m);
	keys = cc_keys(m.data);
	want_keys = cc_keys(json_get_obj(tr, "data"));
	ck_assert_str_eq(keys, want_keys);
	ck_assert_str_eq(json_get_str(m.data, "node_id"), "5");
	ck_assert_str_eq(json_get_str(m.data, "node_type"), "SaveImage");
	ck_assert_str_eq(json_get_str(m.data, "exception_type"), "Exception");
	a = cc_dump(json_get_arr(m.data, "executed"));
	ck_assert_str_eq(a, "[]"); /* everything else was cached */
	free(a);
	/* ComfyUI's text, with our directories for BASE_DIR/output. */
	ck_assert_ptr_nonnull(realpath(tu_tmpdir(), real));
	want = xasprintf("**** ERROR: Saving image outside the output folder is not allowed.\n"
			 " full_output_folder: %s/escape\n         output_dir: %s/out\n"
			 "         commonpath: %s\n",
			 real, real, real);
	ck_assert_str_eq(json_get_str(m.data, "exception_message"), want);
	ck_assert_int_gt(json_object_array_length(json_get_arr(m.data, "traceback")), 0);
	ck_assert_str_eq(history_status(id, &completed, &last), "error");
	ck_assert_int_eq(completed, 0);
	ck_assert_str_eq(last, "execution_error");
	e = history_entry(id, &root);
	msgs = json_get_arr(json_get_obj(e, "status"), "messages");
	ck_assert_uint_eq(json_object_array_length(msgs), 3);
	json_object_put(root);
	snprintf(path, sizeof path, "%s/escape", real);
	ck_assert_msg(cc_count_files(path) <= 0, "a file was written outside the output folder");
	ck_assert_int_eq(cc_count_files(w.out), 1);
	free(want);
	free(keys);
	free(want_keys);
	free(id);
	cc_msg_free(&m);
	json_object_put(tr);
	tws_close(t);
	cc_stop_clean(&w);
}
END_TEST

/*
 * execution_error.current_outputs: the capture lists every node of the
 * prompt (seq 243: all of 1-8 with 1-4, 6-8 cached; seq 266: 1-4 where 3
 * failed and 4 never ran), in set order.
 */
START_TEST(execution_error_current_outputs_lists_the_prompt_nodes)
{
	struct cc_log log = {0};
	struct json_object *cur;
	struct tws *t;
	struct cc_msg m;
	char *id, *a;

	cc_start(&w, NULL);
	t = cc_ws_open(w.port, "", CID, NULL);
	save_escape_error(t, &id, &m);
	cur = json_get_arr(m.data, "current_outputs");
	cc_sort_strings(cur);
	a = cc_dump(cur);
	ck_assert_msg(strcmp(a, "[\"1\", \"2\", \"3\", \"4\", \"5\", \"6\", \"7\", \"8\"]") == 0,
		      "SaveImage escape: current_outputs %s, the capture (seq 243) lists all 8 nodes", a);
	free(a);
	free(id);
	cc_msg_free(&m);
	/* A fresh prompt failing in its middle node (like seq 266). */
	id = run(t, cc_request(cc_sim_prompt(9, 3, 0, "oom", 64), CID), &log);
	cur = json_get_arr(log.v[log.n - 3].data, "current_outputs");
	cc_sort_strings(cur);
	a = cc_dump(cur);
	ck_assert_msg(strcmp(a, "[\"1\", \"2\", \"3\"]") == 0,
		      "oom in node 2: current_outputs %s, expected the prompt's nodes 1, 2, 3", a);
	free(a);
	free(id);
	cc_log_free(&log);
	tws_close(t);
	cc_stop_clean(&w);
}
END_TEST

/* current_inputs carries the hidden inputs too (seq 243: prompt, extra_pnginfo). */
START_TEST(execution_error_current_inputs_include_hidden_inputs)
{
	struct tws *t;
	struct cc_msg m;
	struct json_object *ci, *tr = tr_json(243);
	char *id, *keys, *want;

	cc_start(&w, NULL);
	t = cc_ws_open(w.port, "", CID, NULL);
	save_escape_error(t, &id, &m);
	ci = json_get_obj(m.data, "current_inputs");
	keys = cc_keys(ci);
	want = cc_keys(json_get_obj(json_get_obj(tr, "data"), "current_inputs"));
	ck_assert_msg(strcmp(keys, want) == 0, "current_inputs keys: %s, the capture: %s", keys, want);
	free(keys);
	free(want);
	want = cc_dump(json_get(ci, "extra_pnginfo"));
	ck_assert_str_eq(want, "[null]");
	free(want);
	free(id);
	cc_msg_free(&m);
	json_object_put(tr);
	tws_close(t);
	cc_stop_clean(&w);
}
END_TEST

/* Python prints floats with repr(): 20.0, 10.0, 1500.0, 0.0001, 1e+16. */
START_TEST(float_numbers_are_written_as_python_repr)
{
	static const struct {
		double v;
		const char *text;
	} cases[] = {
		{5, "5.0"}, {20, "20.0"}, {10, "10.0"}, {1500, "1500.0"}, {0.5, "0.5"},
		{0.0001, "0.0001"}, {1e16, "1e+16"}, {1e-05, "1e-05"}, {123456789012345.0, "123456789012345.0"},
	};
	struct tu_resp r;

	cc_start(&w, NULL);
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct json_object *b = wl_body(NULL);
		char want[128];
		char *id;

		json_put(b, "number", json_object_new_double(cases[i].v));
		id = cc_submit(w.port, b, &r);
		snprintf(want, sizeof want, "\"number\": %s,", cases[i].text);
		ck_assert_msg(strstr(r.body, want) != NULL, "number %g: %s; Python writes %s", cases[i].v,
			      r.body, want);
		tu_resp_free(&r);
		json_object_put(b);
		free(id);
	}
	cc_stop(&w);
}
END_TEST

/* A V3 node's entry (seq 29): every V3 key, floats as Python writes them. */
START_TEST(object_info_v3_node_matches_capture)
{
	cc_start(&w, NULL);
	expect_text(w.port, "/object_info/ImageBlur", cc_tr_str(29, "resp_text"));
	cc_stop_clean(&w);
}
END_TEST

/*
 * SaveImage as the capture's full /object_info has it (seq 37's sample):
 * its hidden inputs, prompt and extra_pnginfo, are declared under
 * "hidden" in input and input_order.
 */
START_TEST(object_info_save_image_declares_hidden_inputs)
{
	struct json_object *want = json_object_new_object();
	struct json_object *sample = json_get_obj(json_get_obj(cc_tr(37), "sample_nodes"), "SaveImage");
	char *text;

	json_put(want, "SaveImage", json_object_get(json_get_obj(sample, "info")));
	text = cc_dump(want);
	cc_start(&w, NULL);
	expect_text(w.port, "/object_info/SaveImage", text);
	free(text);
	json_object_put(want);
	cc_stop_clean(&w);
}
END_TEST

/*
 * A prompt without client_id (seq 735): every socket gets only the
 * broadcasts - status, progress_state and the TEXT frame - and nothing
 * that names the prompt's owner.
 */
START_TEST(prompt_without_client_id_reaches_sockets_as_broadcasts)
{
	static const char *const clients[] = {"X", "observer"};
	struct cc_log logs[2] = {{0}};
	struct tws *t[2];
	struct json_object *b;
	char *req, *id;

	cc_start(&w, NULL);
	t[0] = cc_ws_open(w.port, "", CID, NULL);
	t[1] = cc_ws_open(w.port, "", NULL, NULL);
	req = cc_tr_request(735);
	b = cc_parse(req, strlen(req));
	json_put(b, "prompt_id", json_str("37fe61a1-ddfd-4626-8ac2-f76c2cfebbba"));
	id = cc_submit_ok(w.port, b);
	for (int k = 0; k < 2; k++) {
		/* The run is over for a socket with status{queue_remaining: 0}. */
		for (;;) {
			struct cc_msg m;

			cc_next(t[k], RUN_MS, &m);
			logs[k].v = xrealloc(logs[k].v, (logs[k].n + 1) * sizeof m);
			logs[k].v[logs[k].n++] = m;
			if (strcmp(m.type, "status") == 0 &&
			    json_get_int(json_get_obj(json_get_obj(m.data, "status"), "exec_info"),
					 "queue_remaining", -1) == 0)
				break;
		}
		expect_frames(&logs[k], 0, clients[k], 736, 776);
		cc_log_free(&logs[k]);
	}
	free(req);
	req = history_image(id, "5");
	ck_assert_str_eq(req, "fr_weightless_00001_.png");
	free(req);
	free(id);
	json_object_put(b);
	tws_close(t[0]);
	tws_close(t[1]);
	cc_stop_clean(&w);
}
END_TEST

/* Reconnecting mid-run: status with sid, then executing{node} without prompt_id. */
START_TEST(reconnect_mid_run_gets_the_current_node)
{
	struct json_object *b;
	struct tws *t, *t2;
	struct cc_msg m;
	char *id, *first;

	cc_start(&w, NULL);
	t = cc_ws_open(w.port, "", QCID, NULL);
	b = sim_body(1, 50, 200, "none");
	id = cc_submit_ok(w.port, b);
	json_object_put(b);
	next_progress(t);
	tws_close(t); /* close the old socket first, as docs/comfyui.md advises */
	t2 = cc_ws_open(w.port, "", QCID, &first);
	ck_assert_str_eq(first, "{\"type\": \"status\", \"data\": {\"status\": {\"exec_info\": "
				"{\"queue_remaining\": 1}}, \"sid\": \"" QCID "\"}}");
	cc_next(t2, 5000, &m);
	ck_assert_str_eq(m.raw, "{\"type\": \"executing\", \"data\": {\"node\": \"2\"}}");
	cc_msg_free(&m);
	/* The new socket is the owner now. */
	cc_post_empty(w.port, "/interrupt", "", 200);
	expect_interrupted(t2, id);
	free(first);
	free(id);
	tws_close(t2);
	cc_stop_clean(&w);
}
END_TEST

Suite *suite_worker(void)
{
	Suite *s = suite_create("worker");
	TCase *conf = tcase_create("conformance");
	TCase *queue = tcase_create("queue");
	TCase *faults = tcase_create("faults");
	TCase *robust = tcase_create("robust");

	tcase_add_checked_fixture(conf, setup, teardown);
	tcase_set_timeout(conf, 30);
	tcase_add_test(conf, weightless_frames_match_transcript);
	tcase_add_test(conf, identical_resubmission_is_cached);
	tcase_add_test(conf, history_entry_and_queries);
	tcase_add_test(conf, view_serves_files_with_comfyui_rules);
	tcase_add_test(conf, rejected_prompts_answer_400_as_comfyui);
	tcase_add_test(conf, partially_valid_prompts_run_with_node_errors);
	tcase_add_test(conf, numbers_follow_the_capture);
	tcase_add_test(conf, bad_bodies_routes_and_origin);
	tcase_add_test(conf, system_stats_object_info_and_health);
	tcase_add_test(conf, listen_takes_its_address_as_comfyui_does);
	tcase_add_test(conf, api_prefix_serves_every_route);
	tcase_add_test(conf, free_memory_and_cache_none_rerun_everything);
	tcase_add_test(conf, save_path_escape_fails_like_comfyui);
	tcase_add_test(conf, execution_error_current_outputs_lists_the_prompt_nodes);
	tcase_add_test(conf, execution_error_current_inputs_include_hidden_inputs);
	tcase_add_test(conf, float_numbers_are_written_as_python_repr);
	tcase_add_test(conf, object_info_v3_node_matches_capture);
	tcase_add_test(conf, object_info_save_image_declares_hidden_inputs);
	tcase_add_test(conf, prompt_without_client_id_reaches_sockets_as_broadcasts);
	suite_add_tcase(s, conf);

	tcase_add_checked_fixture(queue, setup, teardown);
	tcase_set_timeout(queue, 60);
	tcase_add_test(queue, queue_pending_delete_and_targeted_interrupt);
	tcase_add_test(queue, global_interrupt_then_next_prompt_runs);
	tcase_add_test(queue, queue_runs_by_number_front_first);
	tcase_add_test(queue, deleting_last_pending_item_broadcasts_status_twice);
	tcase_add_test(queue, reconnect_mid_run_gets_the_current_node);
	suite_add_tcase(s, queue);

	tcase_add_checked_fixture(faults, setup, teardown);
	tcase_set_timeout(faults, 60);
	tcase_add_test(faults, fail_oom_sends_execution_error_like_comfyui);
	tcase_add_test(faults, fail_crash_kills_the_process_mid_job);
	tcase_add_test(faults, fail_hang_stops_progress_but_serves);
	tcase_add_test(faults, load_ms_reports_starting_then_runs_queued_prompt);
	suite_add_tcase(s, faults);

	tcase_add_checked_fixture(robust, setup, teardown);
	tcase_set_timeout(robust, 60);
	tcase_add_test(robust, body_over_max_upload_size_is_413);
	tcase_add_test(robust, broken_clients_do_not_disturb_others);
	tcase_add_test(robust, fifty_concurrent_prompts_complete_with_unique_files);
	suite_add_tcase(s, robust);
	return s;
}
