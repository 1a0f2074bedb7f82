/*
 * comfy_client.h - a ComfyUI client for the fnrun-worker suites
 * (test_worker.c, test_speech.c).
 *
 * It starts the real fnrun-worker in the test's temp dir, speaks HTTP and
 * the /ws protocol as a ComfyUI client does (socket first, then POST
 * /prompt, then frames until executing{node: null}), and reads the
 * recorded ComfyUI 0.3.64 session (tests/fixtures/comfyui/
 * comfy-transcript.jsonl) that the suites compare against.
 *
 * Every wait has a deadline; a failure aborts the test with a message that
 * says what was expected and what came. Workers are started with
 * PR_SET_PDEATHSIG, so a test that fails or times out (Check then skips
 * the teardown) leaves no server behind.
 */
#ifndef FNRUN_COMFY_CLIENT_H
#define FNRUN_COMFY_CLIENT_H

#include <stddef.h>
#include <sys/types.h>

#include "json.h" /* ours (src/json.h): Python-style dumps; includes json-c */
#include "testutil.h"
#include "tws.h"

/* A running fnrun-worker. */
struct cc_worker {
	pid_t pid;      /* 0 once stopped */
	int port;
	char out[512];  /* --output-directory */
	char temp[512]; /* --temp-directory */
	char in[512];   /* --input-directory */
	char log[512];  /* its stdout and stderr */
};

/*
 * Starts `fnrun-worker --port P --output-directory TMP/out --temp-directory
 * TMP/temp --input-directory TMP/in` followed by `args` (NULL-terminated;
 * NULL: none, which means --model sim) and waits up to 20 s for GET
 * /health to answer 200. Aborts the test (with the log's tail) on failure.
 */
void cc_start(struct cc_worker *w, const char *const *args);
/* The same without waiting for /health (for --load-ms checks). */
void cc_spawn(struct cc_worker *w, const char *const *args);
/* SIGTERM, then SIGKILL after 5 s; returns the wait status (-1: none). */
int cc_stop(struct cc_worker *w);
/* Stops the worker and asserts it exited 0 (ASan found no leak). */
void cc_stop_clean(struct cc_worker *w);
/* The last bytes of the worker's log, for failure messages (static). */
const char *cc_log_tail(const struct cc_worker *w);

/*
 * One HTTP/1.1 exchange, Connection: close, with `headers` ("Name: v\r\n"
 * lines, or NULL) added. Returns 0 or -1 (no answer); free with
 * tu_resp_free().
 */
int cc_http(int port, const char *method, const char *path, const char *headers,
	    const char *body, size_t len, struct tu_resp *resp);
/* Parses JSON (our bounded parser); aborts the test when it is not JSON. */
struct json_object *cc_parse(const char *text, size_t len);
/* GET path: asserts 200 and a JSON body; caller puts the result. */
struct json_object *cc_get_json(int port, const char *path);
/* The body of GET path, which must answer 200; caller frees. */
char *cc_get_text(int port, const char *path);
/* POSTs body (a JSON text) to path and asserts the answer: `status`, empty body. */
void cc_post_empty(int port, const char *path, const char *body, int status);

/* ---- The recorded ComfyUI session ---- */

/* The record with this "seq" (borrowed, loaded once); aborts when missing. */
struct json_object *cc_tr(int seq);
/* A string field of record seq (borrowed); aborts when missing. */
const char *cc_tr_str(int seq, const char *field);
/* The JSON body that record seq sent, as text (caller frees). */
char *cc_tr_request(int seq);

/* ---- Workflows ---- */

/* The weightless workflow of the capture, parsed; caller puts. */
struct json_object *cc_weightless(void);
/*
 * SimTextEncode "1" -> SimSampler "2" -> SaveImage "3" (prefix "sim"),
 * size x size pixels; caller puts.
 */
struct json_object *cc_sim_prompt(long long seed, int steps, int step_ms, const char *fail,
				  int size);
/* {"prompt": prompt, "client_id": cid} (cid may be NULL); takes prompt. */
struct json_object *cc_request(struct json_object *prompt, const char *client_id);

/*
 * POSTs body to /prompt. Returns the answer (free with tu_resp_free) in
 * resp and, when it is 200, the prompt_id (caller frees); else NULL.
 */
char *cc_submit(int port, const struct json_object *body, struct tu_resp *resp);
/* cc_submit that must answer 200; returns the prompt_id (caller frees). */
char *cc_submit_ok(int port, const struct json_object *body);

/* ---- WebSocket ---- */

struct cc_msg {
	int opcode;               /* TWS_TEXT or TWS_BINARY */
	char *raw;                /* the frame's payload, NUL-terminated */
	size_t len;
	struct json_object *json; /* text frames: the message */
	const char *type;         /* its "type"; "" for binary frames */
	struct json_object *data; /* its "data" (borrowed from json) */
};

/*
 * Connects to `prefix`/ws?clientId=cid (cid NULL: no clientId) and reads
 * the first frame, which must be status with "sid" (cid when given).
 * *first (if not NULL) gets that frame's text (caller frees).
 */
struct tws *cc_ws_open(int port, const char *prefix, const char *cid, char **first);
/* The next message within ms: 0, or -1 on timeout or close. */
int cc_recv(struct tws *t, int ms, struct cc_msg *m);
/* The next message, which must come within ms (aborts otherwise). */
void cc_next(struct tws *t, int ms, struct cc_msg *m);
void cc_msg_free(struct cc_msg *m);
/* 1 when m is executing{node: null, prompt_id: pid}. */
int cc_is_done(const struct cc_msg *m, const char *pid);
/* data.node of an executing/executed message, or NULL. */
const char *cc_node(const struct cc_msg *m);

struct cc_log {
	struct cc_msg *v;
	size_t n, cap;
};
/*
 * Appends every message until executing{node: null, prompt_id: pid}
 * (included) within ms in all; aborts on timeout, listing what came.
 */
void cc_collect(struct tws *t, const char *pid, int ms, struct cc_log *log);
/* Skips messages until one of `type` comes (appended to log if not NULL). */
void cc_wait_type(struct tws *t, const char *type, int ms, struct cc_msg *m);
void cc_log_free(struct cc_log *log);
/* The types of the logged messages, comma-separated ("binary" for those); static. */
const char *cc_log_types(const struct cc_log *log);

/*
 * Proves a socket got nothing since its last message: POSTs /queue
 * {"clear": true}, which broadcasts status; the next message on t must be
 * that status with queue_remaining q.
 */
void cc_fence(int port, struct tws *t, int q);
/* The next message on t must be status with queue_remaining q (and no sid). */
void cc_expect_status(struct tws *t, int q);

/* ---- Comparing with the transcript ---- */

/*
 * Normalises what differs between runs: every "timestamp": N becomes 0
 * (asserting N is an integer) and PreviewImage's random
 * "ComfyUI_temp_abcde_" becomes "ComfyUI_temp_xxxxx_". Caller frees.
 */
char *cc_norm(const char *text);
/* Asserts text is what Python's json.dumps would write for its value. */
void cc_assert_pyjson(const char *text);
/* The keys of object o in order, comma-separated; caller frees. */
char *cc_keys(const struct json_object *o);
/* Sorts an array of strings in place (set-ordered lists in ComfyUI). */
void cc_sort_strings(struct json_object *arr);
/* json_dumps, aborting on NULL; caller frees. */
char *cc_dump(const struct json_object *o);

/* Decodes a PNG with libpng: 0 with its size, or -1. */
int cc_png_decode(const void *data, size_t len, int *width, int *height, int *color_type);
/* Number of entries in a directory (not . and ..); -1 when missing. */
int cc_count_files(const char *dir);

#endif
