/*
 * test_speech.c - the three speech engines behind `fnrun-worker --model
 * exec` (examples/worker-{espeak,flite,festival}.yaml), driven as a
 * ComfyUI client drives them: /ws, POST /prompt, executing{node: null},
 * /history, /view. The WAV that comes back must be a valid PCM file whose
 * duration fits the text; an interrupt must kill the command's whole
 * process group; a failing command must surface its stderr in
 * execution_error.
 *
 * A missing engine fails its test with the package to install: nothing is
 * skipped silently.
 */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "comfy_client.h"
#include "util.h"

#define SCID "fr-speech"
#define RUN_MS 30000
#define SENTENCE "The quick brown fox jumps today."

struct engine {
	const char *config;  /* in examples/ */
	const char *cls;     /* its node class */
	const char *program; /* command[0] */
	const char *install; /* what to install when it is missing */
	const char *inputs;  /* the other inputs, JSON members */
};

static const struct engine espeak = {
	"examples/worker-espeak.yaml", "EspeakTTS", "espeak-ng",
	"apt-get install espeak-ng", "\"voice\": \"en\", \"speed\": 175, \"pitch\": 50"};
static const struct engine flite = {
	"examples/worker-flite.yaml", "FliteTTS", "flite", "apt-get install flite",
	"\"voice\": \"slt\", \"stretch\": 1.0"};
static const struct engine festival = {
	"examples/worker-festival.yaml", "FestivalTTS", "text2wave",
	"apt-get install festival festvox-kallpc16k", "\"stretch\": 1.0, \"volume\": 1.0"};

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

/* Fails (never skips) when the engine's program is not on PATH. */
static void require(const struct engine *e)
{
	const char *path = getenv("PATH");
	char *dirs = xstrdup(path ? path : "/usr/bin:/bin"), *save = NULL;
	int found = 0;

	for (char *d = strtok_r(dirs, ":", &save); d && !found; d = strtok_r(NULL, ":", &save)) {
		char p[4096];

		snprintf(p, sizeof p, "%s/%s", d, e->program);
		found = access(p, X_OK) == 0;
	}
	free(dirs);
	ck_assert_msg(found, "%s is not installed; the speech suite needs it: %s", e->program,
		      e->install);
}

static void start_exec(const char *config)
{
	const char *args[] = {"--model", "exec", "--config", config, NULL};

	cc_start(&w, args);
}

/* {"prompt": {"1": {class, inputs: {text, extra}}}, "client_id": SCID}; caller puts. */
static struct json_object *speech_body(const char *cls, const char *text, const char *extra)
{
	struct json_object *inputs = json_object_new_object(), *node = json_object_new_object();
	struct json_object *prompt = json_object_new_object();
	char *more = xasprintf("{%s}", extra ? extra : "");
	struct json_object *x = cc_parse(more, strlen(more));

	json_put(inputs, "text", json_str(text));
	json_object_object_foreach(x, k, v) json_put(inputs, k, json_object_get(v));
	json_object_put(x);
	free(more);
	json_put(node, "class_type", json_str(cls));
	json_put(node, "inputs", inputs);
	json_put(prompt, "1", node);
	return cc_request(prompt, SCID);
}

/* The run's last three frames: `what`, status{0}, executing null. */
static const struct cc_msg *run_end(const struct cc_log *log, const char *what)
{
	ck_assert_msg(log->n >= 3 && strcmp(log->v[log->n - 3].type, what) == 0 &&
			      strcmp(log->v[log->n - 2].type, "status") == 0,
		      "expected %s, status, executing null at the end; got %s", what,
		      cc_log_types(log));
	return &log->v[log->n - 3];
}

struct wav {
	unsigned format, channels, bits, block_align;
	uint32_t rate, byte_rate, data_len;
};

static uint32_t le32(const unsigned char *p)
{
	return p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static unsigned le16(const unsigned char *p)
{
	return p[0] | (unsigned)p[1] << 8;
}

/* Parses a RIFF/WAVE file: fmt must be PCM with plausible numbers, data non-empty. */
static void wav_parse(const unsigned char *p, size_t n, struct wav *wv)
{
	size_t off = 12;
	int have_fmt = 0, have_data = 0;

	memset(wv, 0, sizeof *wv);
	ck_assert_msg(n >= 44 && memcmp(p, "RIFF", 4) == 0 && memcmp(p + 8, "WAVE", 4) == 0,
		      "not a RIFF/WAVE file (%zu bytes)", n);
	ck_assert_msg(le32(p + 4) + 8 <= n, "RIFF size %u past the file's %zu bytes", le32(p + 4), n);
	while (off + 8 <= n && !have_data) {
		uint32_t len = le32(p + off + 4);

		if (memcmp(p + off, "fmt ", 4) == 0) {
			ck_assert_uint_ge(len, 16);
			wv->format = le16(p + off + 8);
			wv->channels = le16(p + off + 10);
			wv->rate = le32(p + off + 12);
			wv->byte_rate = le32(p + off + 16);
			wv->block_align = le16(p + off + 20);
			wv->bits = le16(p + off + 22);
			have_fmt = 1;
		} else if (memcmp(p + off, "data", 4) == 0) {
			wv->data_len = len;
			have_data = 1;
			ck_assert_msg(off + 8 + len <= n, "data chunk of %u bytes past the end", len);
		}
		off += 8 + len + (len & 1);
	}
	ck_assert_msg(have_fmt && have_data, "no fmt or no data chunk");
	ck_assert_msg(wv->format == 1, "fmt is not PCM (format %u)", wv->format);
	ck_assert_msg(wv->channels >= 1 && wv->channels <= 2, "%u channels", wv->channels);
	ck_assert_msg(wv->rate >= 8000 && wv->rate <= 48000, "sample rate %u", wv->rate);
	ck_assert_msg(wv->bits == 8 || wv->bits == 16 || wv->bits == 24 || wv->bits == 32,
		      "%u bits per sample", wv->bits);
	ck_assert_uint_eq(wv->block_align, wv->channels * wv->bits / 8);
	ck_assert_uint_eq(wv->byte_rate, wv->rate * wv->block_align);
	ck_assert_msg(wv->data_len > 0, "empty data chunk");
}

/*
 * Speaks text with engine e on the running worker; returns the duration
 * (seconds) of the WAV that /view serves, after checking it is the file
 * on disk and a valid PCM WAV.
 */
static double speak(struct tws *t, const struct engine *e, const char *text)
{
	struct cc_log log = {0};
	struct json_object *b = speech_body(e->cls, text, e->inputs), *root, *entry, *file;
	struct tu_resp r;
	struct wav wv;
	char *id, path[1024], disk_path[1024], *disk;
	size_t disk_len;
	const char *name, *sub;

	id = cc_submit_ok(w.port, b);
	json_object_put(b);
	cc_collect(t, id, RUN_MS, &log);
	run_end(&log, "execution_success");
	snprintf(path, sizeof path, "/history/%s", id);
	root = cc_get_json(w.port, path);
	entry = json_get_obj(root, id);
	file = json_object_array_get_idx(
		json_get_arr(json_get_obj(json_get_obj(entry, "outputs"), "1"), "audio"), 0);
	name = json_get_str(file, "filename");
	sub = json_get_str(file, "subfolder");
	ck_assert_msg(name && sub, "%s: no audio output in history", e->cls);
	ck_assert_str_eq(json_get_str(file, "type"), "output");
	ck_assert_msg(util_ends_with(name, ".wav"), "%s wrote %s", e->cls, name);
	snprintf(path, sizeof path, "/view?filename=%s&subfolder=%s&type=output", name, sub);
	ck_assert_int_eq(cc_http(w.port, "GET", path, NULL, NULL, 0, &r), 0);
	ck_assert_msg(r.status == 200, "GET %s: %d", path, r.status);
	snprintf(disk_path, sizeof disk_path, "%s/%s%s%s", w.out, sub, *sub ? "/" : "", name);
	disk = tu_read_file(disk_path, &disk_len);
	ck_assert_msg(disk && disk_len == r.len && memcmp(disk, r.body, r.len) == 0,
		      "/view did not serve the bytes of %s", disk_path);
	wav_parse((const unsigned char *)r.body, r.len, &wv);
	free(disk);
	tu_resp_free(&r);
	json_object_put(root);
	cc_log_free(&log);
	free(id);
	return (double)wv.data_len / wv.byte_rate;
}

/* A six-word sentence lasts 0.5 to 15 s; four of them last longer. */
static void speak_and_check(const struct engine *e)
{
	struct tws *t;
	double one, four;

	require(e);
	start_exec(e->config);
	t = cc_ws_open(w.port, "", SCID, NULL);
	one = speak(t, e, SENTENCE);
	ck_assert_msg(one >= 0.5 && one <= 15, "%s: %.2f s for a six-word sentence", e->cls, one);
	four = speak(t, e, SENTENCE " " SENTENCE " " SENTENCE " " SENTENCE);
	ck_assert_msg(four > one * 2, "%s: four sentences last %.2f s, one %.2f s", e->cls, four, one);
	tws_close(t);
	cc_stop_clean(&w);
}

START_TEST(espeak_speaks_a_valid_wav)
{
	speak_and_check(&espeak);
}
END_TEST

START_TEST(flite_speaks_a_valid_wav)
{
	speak_and_check(&flite);
}
END_TEST

START_TEST(festival_speaks_a_valid_wav)
{
	speak_and_check(&festival);
}
END_TEST

/* ---- interrupt ---- */

/* Fields 4 (ppid), 5 (pgrp) and 3 (state) of /proc/pid/stat; -1 when gone. */
static int proc_stat(pid_t pid, pid_t *ppid, pid_t *pgrp, char *state)
{
	char path[64], buf[1024], *p;
	FILE *f;
	size_t n;

	snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
	f = fopen(path, "r");
	if (f == NULL)
		return -1;
	n = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	buf[n] = '\0';
	p = strrchr(buf, ')'); /* the name may hold spaces */
	if (p == NULL || sscanf(p + 2, "%c %d %d", state, ppid, pgrp) != 3)
		return -1;
	return 0;
}

/* Live (not zombie) processes for which match(ppid, pgrp) holds; up to max. */
static size_t scan_proc(pid_t want_ppid, pid_t want_pgrp, pid_t *out, size_t max)
{
	DIR *d = opendir("/proc");
	struct dirent *e;
	size_t n = 0;

	ck_assert_ptr_nonnull(d);
	while ((e = readdir(d)) != NULL && n < max) {
		pid_t pid = (pid_t)atoi(e->d_name), ppid, pgrp;
		char state;

		if (pid <= 0 || proc_stat(pid, &ppid, &pgrp, &state) < 0 || state == 'Z')
			continue;
		if ((want_ppid > 0 && ppid == want_ppid) || (want_pgrp > 0 && pgrp == want_pgrp))
			out[n++] = pid;
	}
	closedir(d);
	return n;
}

/* Waits (on a pidfd, no polling) up to ms for pid to end; 1 when it did. */
static int ends_within(pid_t pid, int ms)
{
	int fd = (int)syscall(SYS_pidfd_open, pid, 0);
	struct pollfd pfd;
	pid_t ppid, pgrp;
	char state;
	int r;

	if (fd < 0)
		return errno == ESRCH;
	pfd.fd = fd;
	pfd.events = POLLIN;
	r = poll(&pfd, 1, ms);
	close(fd);
	/* Readable once it has exited (a zombie not yet reaped counts). */
	return r == 1 || proc_stat(pid, &ppid, &pgrp, &state) < 0 || state == 'Z';
}

/*
 * Speaks about five minutes of text (festival needs seconds for it),
 * interrupts once progress shows the command runs, and checks that every
 * process of the command's group ends and none is left under the worker.
 */
static void interrupt_and_check(const char *config, const char *cls, size_t min_group)
{
	struct cc_log log = {0};
	struct json_object *b;
	struct tws *t;
	struct cc_msg m;
	char text[5001], *id, state;
	pid_t kids[64], group[64], pgrp = 0, ppid;
	size_t nkids, ngroup = 0, n = 0;

	require(&festival);
	while (n + sizeof SENTENCE < sizeof text - 1) {
		memcpy(text + n, SENTENCE " ", sizeof SENTENCE);
		n += sizeof SENTENCE;
	}
	text[n] = '\0';
	start_exec(config);
	t = cc_ws_open(w.port, "", SCID, NULL);
	b = speech_body(cls, text, festival.inputs);
	id = cc_submit_ok(w.port, b);
	json_object_put(b);
	/*
	 * Progress ticks (every 100 ms) come once the command runs; they pace
	 * the look at its group until all its processes have started.
	 */
	for (int tick = 0; tick < 50; tick++) {
		cc_wait_type(t, "progress", 10000, &m);
		cc_msg_free(&m);
		nkids = scan_proc(w.pid, 0, kids, 64);
		ck_assert_msg(nkids == 1, "%zu children of the worker while the command runs", nkids);
		ck_assert_int_eq(proc_stat(kids[0], &ppid, &pgrp, &state), 0);
		ck_assert_msg(pgrp == kids[0], "the command is not the leader of its own process group");
		ngroup = scan_proc(0, pgrp, group, 64);
		if (ngroup >= min_group)
			break;
	}
	ck_assert_msg(ngroup >= min_group, "%zu processes in the command's group, expected %zu",
		      ngroup, min_group);

	cc_post_empty(w.port, "/interrupt", "", 200);
	cc_collect(t, id, RUN_MS, &log);
	run_end(&log, "execution_interrupted");
	for (size_t i = 0; i < ngroup; i++)
		ck_assert_msg(ends_within(group[i], 5000), "process %d of the command's group survived",
			      (int)group[i]);
	ck_assert_uint_eq(scan_proc(0, pgrp, group, 64), 0);
	ck_assert_uint_eq(scan_proc(w.pid, 0, kids, 64), 0);
	/* No WAV, and no partial file, is left behind. */
	ck_assert_int_eq(cc_count_files(w.out), 0);
	free(id);
	cc_log_free(&log);
	tws_close(t);
	cc_stop_clean(&w);
}

START_TEST(interrupt_kills_festival)
{
	interrupt_and_check(festival.config, festival.cls, 1);
}
END_TEST

/* The same through sh with festival in the background: the grandchild dies too. */
START_TEST(interrupt_kills_grandchildren_of_the_command)
{
	static const char yaml[] =
		"nodes:\n"
		"  ShFestival:\n"
		"    inputs:\n"
		"      text: {type: STRING, max_length: 5000}\n"
		"      stretch: {type: FLOAT, default: 1.0}\n"
		"      volume: {type: FLOAT, default: 1.0}\n"
		"    command: [sh, -c, 'text2wave -o \"$1\" <&0 & wait', sh, \"{output}\"]\n"
		"    stdin: \"{text}\"\n"
		"    output: {kind: audio}\n";
	char cfg[1024];

	snprintf(cfg, sizeof cfg, "%s/sh-festival.yaml", tu_tmpdir());
	ck_assert_int_eq(tu_write_file(cfg, yaml, strlen(yaml)), 0);
	interrupt_and_check(cfg, "ShFestival", 2);
}
END_TEST

/* ---- failures ---- */

static const char fail_config[] =
	"nodes:\n"
	"  FailTTS:\n"
	"    inputs:\n"
	"      text: {type: STRING}\n"
	"    command: [sh, -c, 'echo \"synth: no voice for $0\" >&2; exit 3', \"{text}\", \"{output}\"]\n"
	"    output: {kind: audio}\n"
	"  FalseTTS:\n"
	"    inputs:\n"
	"      text: {type: STRING}\n"
	"    command: [\"false\", \"{output}\"]\n"
	"    output: {kind: audio}\n";

/* Runs cls and returns its execution_error's exception_message (caller frees). */
static char *failure_message(struct tws *t, const char *cls)
{
	struct cc_log log = {0};
	struct json_object *b = speech_body(cls, "hello", NULL);
	const struct cc_msg *err;
	char *id = cc_submit_ok(w.port, b), *msg;

	json_object_put(b);
	cc_collect(t, id, RUN_MS, &log);
	err = run_end(&log, "execution_error");
	ck_assert_str_eq(json_get_str(err->data, "node_type"), cls);
	ck_assert_str_eq(json_get_str(err->data, "node_id"), "1");
	ck_assert_ptr_nonnull(json_get_str(err->data, "exception_type"));
	msg = xstrdup(json_get_str(err->data, "exception_message"));
	cc_log_free(&log);
	free(id);
	return msg;
}

START_TEST(failing_command_reports_its_stderr)
{
	char cfg[1024], *msg;
	struct tws *t;

	snprintf(cfg, sizeof cfg, "%s/fail.yaml", tu_tmpdir());
	ck_assert_int_eq(tu_write_file(cfg, fail_config, strlen(fail_config)), 0);
	start_exec(cfg);
	t = cc_ws_open(w.port, "", SCID, NULL);
	msg = failure_message(t, "FailTTS");
	ck_assert_msg(strstr(msg, "synth: no voice for hello") != NULL,
		      "exception_message lacks the command's stderr: %s", msg);
	ck_assert_msg(strstr(msg, "status 3") != NULL, "exception_message lacks the exit status: %s",
		      msg);
	free(msg);
	msg = failure_message(t, "FalseTTS");
	ck_assert_msg(strstr(msg, "status 1") != NULL, "false: %s", msg);
	free(msg);
	ck_assert_int_eq(cc_count_files(w.out), 0);
	tws_close(t);
	cc_stop_clean(&w);
}
END_TEST

Suite *suite_speech(void)
{
	Suite *s = suite_create("speech");
	TCase *tc = tcase_create("engines");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, espeak_speaks_a_valid_wav);
	tcase_add_test(tc, flite_speaks_a_valid_wav);
	tcase_add_test(tc, festival_speaks_a_valid_wav);
	tcase_add_test(tc, interrupt_kills_festival);
	tcase_add_test(tc, interrupt_kills_grandchildren_of_the_command);
	tcase_add_test(tc, failing_command_reports_its_stderr);
	suite_add_tcase(s, tc);
	return s;
}
