/*
 * test_video.c - Create Video, from the worker's nodes to the user's file.
 *
 * "worker": a real fnrun-worker runs SimTextEncode -> SimVideoSampler ->
 * CreateVideo -> SaveVideo as a ComfyUI client drives it; the MP4 must be
 * what ffprobe calls H.264 with the asked frames and size, progress must
 * come once per frame, an interrupt while ffmpeg encodes must kill it and
 * leave no file, and a missing ffmpeg must fail the node saying so.
 * "poster": thumb_video_poster() on real videos, and without ffmpeg.
 * "gateway": a real `fnrun serve` with the demo registry
 * (examples/registry.yaml) runs a Create Video job to one output of kind
 * video with a PNG poster, refuses params out of range naming the field,
 * completes a job without a poster when it has no ffmpeg, and
 * `fnrun submit` saves the video.
 *
 * ffmpeg and ffprobe are required (scripts/install-deps): a missing one
 * fails the test that needs it, nothing is skipped silently.
 */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "comfy.h"
#include "comfy_client.h"
#include "gwtest.h"
#include "thumb_video.h"
#include "util.h"

#define VCID "fr-video"
#define RUN_MS 60000

static struct cc_worker w;
static struct gw g;

/*
 * A failed assertion ends a test's process without its teardown: workers
 * die with it (PR_SET_PDEATHSIG), a gateway and its model servers would
 * not. Each test notes its temp dir in this file; the tcase's unchecked
 * teardown, in Check's parent process, kills whatever still uses them.
 */
static char reap_list[128];

static void reap_setup(void)
{
	snprintf(reap_list, sizeof reap_list, "/tmp/fnrun-video-reap-%d", (int)getpid());
	unlink(reap_list);
}

static void reap_teardown(void)
{
	char *text = tu_read_file(reap_list, NULL), *save = NULL;

	for (char *d = text ? strtok_r(text, "\n", &save) : NULL; d; d = strtok_r(NULL, "\n", &save)) {
		tu_kill_users_of(d);
		tu_rmrf(d);
	}
	free(text);
	unlink(reap_list);
}

static void setup(void)
{
	FILE *f = fopen(reap_list, "a");

	signal(SIGPIPE, SIG_IGN);
	memset(&w, 0, sizeof w);
	memset(&g, 0, sizeof g);
	snprintf(g.dir, sizeof g.dir, "%s", tu_tmpdir());
	ck_assert_ptr_nonnull(f);
	fprintf(f, "%s\n", g.dir);
	fclose(f);
}

static void teardown(void)
{
	cc_stop(&w);
	if (g.pid > 0)
		gw_stop(&g, 8000);
	tu_rmrf(tu_tmpdir());
}

static void require_program(const char *name)
{
	char path[64];

	snprintf(path, sizeof path, "/usr/bin/%s", name);
	ck_assert_msg(access(path, X_OK) == 0,
		      "%s is not installed; Create Video needs it: apt-get install ffmpeg", name);
}

/* ---- ffprobe ---- */

struct probe {
	char codec[32];
	int width, height, frames;
};

/* ffprobe's view of the first video stream of path (frames decoded and counted). */
static void probe(const char *path, struct probe *p)
{
	char log[600], *text, *save = NULL;
	char *argv[] = {"/usr/bin/ffprobe", "-v", "error", "-select_streams", "v:0", "-count_frames",
			"-show_entries", "stream=codec_name,width,height,nb_read_frames", "-of",
			"default=noprint_wrappers=1", (char *)path, NULL};
	pid_t pid;
	int status;

	require_program("ffprobe");
	memset(p, 0, sizeof *p);
	snprintf(log, sizeof log, "%s/ffprobe.log", tu_tmpdir());
	pid = tu_spawn(argv, log);
	ck_assert_int_gt(pid, 0);
	status = tu_wait_exit(pid, 30000);
	text = tu_read_file(log, NULL);
	ck_assert_msg(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0,
		      "ffprobe %s failed: %s", path, text ? text : "");
	for (char *l = strtok_r(text, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
		if (strncmp(l, "codec_name=", 11) == 0)
			snprintf(p->codec, sizeof p->codec, "%s", l + 11);
		else if (strncmp(l, "width=", 6) == 0)
			p->width = atoi(l + 6);
		else if (strncmp(l, "height=", 7) == 0)
			p->height = atoi(l + 7);
		else if (strncmp(l, "nb_read_frames=", 15) == 0)
			p->frames = atoi(l + 15);
	}
	free(text);
}

static void assert_video(const char *path, int width, int height, int frames)
{
	struct probe p;

	probe(path, &p);
	ck_assert_str_eq(p.codec, "h264");
	ck_assert_int_eq(p.width, width);
	ck_assert_int_eq(p.height, height);
	ck_assert_msg(p.frames == frames, "%s has %d frames, expected %d", path, p.frames, frames);
}

/* ---- the worker ---- */

/* sim-video.json's graph with these inputs; {"prompt", "client_id"}; caller puts. */
static struct json_object *video_body(double seconds, int fps, int width, int height,
				      const char *fail)
{
	char text[2048];
	struct json_object *prompt;

	snprintf(text, sizeof text,
		 "{\"1\": {\"class_type\": \"SimTextEncode\", \"inputs\": {\"text\": \"a fox\"}},"
		 " \"2\": {\"class_type\": \"SimVideoSampler\", \"inputs\": {\"conditioning\": [\"1\", 0],"
		 " \"seed\": 7, \"seconds\": %g, \"fps\": %d, \"width\": %d, \"height\": %d,"
		 " \"step_ms\": 0, \"fail\": \"%s\"}},"
		 " \"3\": {\"class_type\": \"CreateVideo\", \"inputs\": {\"images\": [\"2\", 0], \"fps\": %d}},"
		 " \"4\": {\"class_type\": \"SaveVideo\", \"inputs\": {\"video\": [\"3\", 0],"
		 " \"filename_prefix\": \"video\", \"format\": \"auto\", \"codec\": \"auto\"}}}",
		 seconds, fps, width, height, fail, fps);
	prompt = cc_parse(text, strlen(text));
	return cc_request(prompt, VCID);
}

/* The message of `type` in log, the last one when several; NULL when none. */
static const struct cc_msg *find_msg(const struct cc_log *log, const char *type)
{
	const struct cc_msg *m = NULL;

	for (size_t i = 0; i < log->n; i++)
		if (strcmp(log->v[i].type, type) == 0)
			m = &log->v[i];
	return m;
}

START_TEST(video_workflow_makes_an_h264_mp4)
{
	struct cc_log log = {0};
	struct json_object *b = video_body(1.5, 8, 160, 96, "none");
	const struct cc_msg *done;
	struct tws *t;
	char *id, path[1024], *ui;
	int progress = 0;

	require_program("ffmpeg");
	cc_start(&w, NULL);
	t = cc_ws_open(w.port, "", VCID, NULL);
	id = cc_submit_ok(w.port, b);
	json_object_put(b);
	cc_collect(t, id, RUN_MS, &log);
	ck_assert_msg(find_msg(&log, "execution_success") != NULL, "no success: %s",
		      cc_log_types(&log));
	/* One progress message per frame, 1..12 of 12, for the sampler. */
	for (size_t i = 0; i < log.n; i++) {
		const struct cc_msg *m = &log.v[i];

		if (strcmp(m->type, "progress") != 0)
			continue;
		ck_assert_str_eq(json_get_str(m->data, "node"), "2");
		ck_assert_int_eq(json_get_int(m->data, "max", 0), 12);
		ck_assert_int_eq(json_get_int(m->data, "value", 0), ++progress);
	}
	ck_assert_int_eq(progress, 12);
	/* SaveVideo's UI result is ComfyUI's ui.PreviewVideo. */
	done = find_msg(&log, "executed");
	ck_assert_ptr_nonnull(done);
	ck_assert_str_eq(json_get_str(done->data, "node"), "4");
	ui = cc_dump(json_get_obj(done->data, "output"));
	ck_assert_str_eq(ui, "{\"images\": [{\"filename\": \"video_00001_.mp4\", \"subfolder\": \"\","
			     " \"type\": \"output\"}], \"animated\": [true]}");
	free(ui);
	snprintf(path, sizeof path, "%s/video_00001_.mp4", w.out);
	assert_video(path, 160, 96, 12);
	ck_assert_int_eq(cc_count_files(w.out), 1); /* no temp file beside it */
	free(id);
	cc_log_free(&log);
	tws_close(t);
	cc_stop_clean(&w);
}
END_TEST

/* fnrun turns SaveVideo's "images" + "animated" entry into one output of kind video. */
START_TEST(save_video_ui_is_an_output_of_kind_video)
{
	const char *text = "{\"images\": [{\"filename\": \"video_00001_.mp4\", \"subfolder\": \"\","
			   " \"type\": \"output\"}], \"animated\": [true]}";
	struct json_object *ui = cc_parse(text, strlen(text));
	struct json_object *items = json_object_new_array();

	comfy_outputs_add(items, ui);
	ck_assert_uint_eq(json_object_array_length(items), 1);
	ck_assert_str_eq(json_get_str(json_object_array_get_idx(items, 0), "kind"), "video");
	ck_assert_str_eq(json_get_str(json_object_array_get_idx(items, 0), "filename"),
			 "video_00001_.mp4");
	json_object_put(items);
	json_object_put(ui);
}
END_TEST

/* Children of the worker that are live (not zombies); up to max. */
static size_t worker_children(pid_t parent, pid_t *out, size_t max)
{
	DIR *d = opendir("/proc");
	struct dirent *e;
	size_t n = 0;

	ck_assert_ptr_nonnull(d);
	while ((e = readdir(d)) != NULL && n < max) {
		char path[64], buf[512], *p, state;
		pid_t pid = (pid_t)atoi(e->d_name), ppid;
		FILE *f;
		size_t len;

		if (pid <= 0)
			continue;
		snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
		f = fopen(path, "r");
		if (f == NULL)
			continue;
		len = fread(buf, 1, sizeof buf - 1, f);
		fclose(f);
		buf[len] = '\0';
		p = strrchr(buf, ')');
		if (p != NULL && sscanf(p + 2, "%c %d", &state, &ppid) == 2 && ppid == parent &&
		    state != 'Z')
			out[n++] = pid;
	}
	closedir(d);
	return n;
}

/* Hidden files (a temp file is ".<name>.XXXXXX") in dir. */
static int hidden_files(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int n = 0;

	if (d == NULL)
		return 0;
	while ((e = readdir(d)) != NULL)
		n += e->d_name[0] == '.' && strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
	closedir(d);
	return n;
}

/* Waits on a pidfd up to ms for pid to end; 1 when it did. */
static int ends_within(pid_t pid, int ms)
{
	int fd = (int)syscall(SYS_pidfd_open, pid, 0);
	struct pollfd pfd = {.events = POLLIN};
	int r;

	if (fd < 0)
		return errno == ESRCH;
	pfd.fd = fd;
	r = poll(&pfd, 1, ms);
	close(fd);
	return r == 1;
}

/*
 * An `ffmpeg` first on PATH that runs the real one with -re (read the input
 * at its frame rate), so encoding a 6 s video takes 6 s: time to interrupt.
 */
static void slow_ffmpeg_on_path(void)
{
	static const char script[] = "#!/bin/sh\nexec /usr/bin/ffmpeg -re \"$@\"\n";
	char dir[600], path[700], *newpath;

	snprintf(dir, sizeof dir, "%s/slowbin", tu_tmpdir());
	ck_assert_int_eq(mkdir(dir, 0755), 0);
	snprintf(path, sizeof path, "%s/ffmpeg", dir);
	ck_assert_int_eq(tu_write_file(path, script, strlen(script)), 0);
	ck_assert_int_eq(chmod(path, 0755), 0);
	newpath = xasprintf("%s:%s", dir, getenv("PATH") ? getenv("PATH") : "/usr/bin:/bin");
	setenv("PATH", newpath, 1);
	free(newpath);
}

START_TEST(interrupt_kills_ffmpeg_and_leaves_no_temp_file)
{
	struct cc_log log = {0};
	struct json_object *b = video_body(6, 10, 64, 48, "none");
	struct tu_resp r;
	struct tws *t;
	struct cc_msg m;
	pid_t kids[8];
	size_t nkids = 0;
	char *id;
	int64_t t0;
	int saving;

	require_program("ffmpeg");
	slow_ffmpeg_on_path();
	cc_start(&w, NULL);
	t = cc_ws_open(w.port, "", VCID, NULL);
	id = cc_submit_ok(w.port, b);
	json_object_put(b);
	/* SaveVideo starts once the 60 frames are sampled. */
	do {
		cc_wait_type(t, "executing", RUN_MS, &m);
		ck_assert_ptr_nonnull(cc_node(&m));
		saving = strcmp(cc_node(&m), "4") == 0;
		cc_msg_free(&m);
	} while (!saving);
	/* ffmpeg runs and has its temp file: poll /proc with a deadline. */
	t0 = util_now_ms();
	while ((nkids = worker_children(w.pid, kids, 8)) == 0 || hidden_files(w.out) == 0) {
		ck_assert_msg(util_now_ms() - t0 < 10000, "no ffmpeg with a temp file under the worker");
		poll(NULL, 0, 10);
	}
	ck_assert_uint_eq(nkids, 1);
	/* The loop still answers while ffmpeg encodes. */
	t0 = util_now_ms();
	ck_assert_int_eq(cc_http(w.port, "GET", "/queue", NULL, NULL, 0, &r), 0);
	ck_assert_int_eq(r.status, 200);
	ck_assert_ptr_nonnull(strstr(r.body, id));
	tu_resp_free(&r);
	ck_assert_msg(util_now_ms() - t0 < 1000, "GET /queue took %lld ms during encoding",
		      (long long)(util_now_ms() - t0));

	cc_post_empty(w.port, "/interrupt", "", 200);
	cc_collect(t, id, RUN_MS, &log);
	ck_assert_msg(find_msg(&log, "execution_interrupted") != NULL, "not interrupted: %s",
		      cc_log_types(&log));
	ck_assert_msg(ends_within(kids[0], 5000), "ffmpeg %d survived the interrupt", (int)kids[0]);
	ck_assert_uint_eq(worker_children(w.pid, kids, 8), 0);
	ck_assert_int_eq(cc_count_files(w.out), 0); /* neither the video nor its temp file */
	free(id);
	cc_log_free(&log);
	tws_close(t);
	cc_stop_clean(&w);
}
END_TEST

START_TEST(missing_ffmpeg_fails_the_node_saying_so)
{
	struct cc_log log = {0};
	struct json_object *b = video_body(0.5, 8, 64, 48, "none");
	const struct cc_msg *err;
	struct tws *t;
	char *id;

	setenv("PATH", "/nonexistent", 1);
	cc_start(&w, NULL);
	t = cc_ws_open(w.port, "", VCID, NULL);
	id = cc_submit_ok(w.port, b);
	json_object_put(b);
	cc_collect(t, id, RUN_MS, &log);
	err = find_msg(&log, "execution_error");
	ck_assert_msg(err != NULL, "no execution_error: %s", cc_log_types(&log));
	ck_assert_str_eq(json_get_str(err->data, "node_type"), "SaveVideo");
	ck_assert_str_eq(json_get_str(err->data, "node_id"), "4");
	ck_assert_msg(strstr(json_get_str(err->data, "exception_message"),
			     "ffmpeg was not found") != NULL,
		      "unclear message: %s", json_get_str(err->data, "exception_message"));
	ck_assert_int_eq(cc_count_files(w.out), 0);
	free(id);
	cc_log_free(&log);
	tws_close(t);
	cc_stop_clean(&w);
}
END_TEST

START_TEST(video_sampler_fails_like_sim_sampler)
{
	struct cc_log log = {0};
	struct json_object *b = video_body(1, 8, 64, 48, "oom");
	const struct cc_msg *err;
	struct tws *t;
	char *id;

	cc_start(&w, NULL);
	t = cc_ws_open(w.port, "", VCID, NULL);
	id = cc_submit_ok(w.port, b);
	json_object_put(b);
	cc_collect(t, id, RUN_MS, &log);
	err = find_msg(&log, "execution_error");
	ck_assert_msg(err != NULL, "no execution_error: %s", cc_log_types(&log));
	ck_assert_str_eq(json_get_str(err->data, "node_type"), "SimVideoSampler");
	ck_assert_str_eq(json_get_str(err->data, "exception_type"), "torch.OutOfMemoryError");
	free(id);
	cc_log_free(&log);
	tws_close(t);
	cc_stop_clean(&w);
}
END_TEST

/* ---- posters ---- */

/* A w x h test-pattern video of n frames at path, made by ffmpeg. */
static void make_video(const char *path, int width, int height, int n)
{
	char src[128], frames[16], log[600];
	char *argv[] = {"/usr/bin/ffmpeg", "-v", "error", "-f", "lavfi", "-i", src, "-frames:v",
			frames, "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
			"-y", (char *)path, NULL};
	pid_t pid;
	int status;

	require_program("ffmpeg");
	snprintf(src, sizeof src, "testsrc2=size=%dx%d:rate=10", width, height);
	snprintf(frames, sizeof frames, "%d", n);
	snprintf(log, sizeof log, "%s/make-video.log", tu_tmpdir());
	pid = tu_spawn(argv, log);
	status = tu_wait_exit(pid, 30000);
	ck_assert_msg(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0,
		      "ffmpeg could not make %s", path);
}

static void assert_png(const char *path, int width, int height)
{
	size_t len;
	char *data = tu_read_file(path, &len);
	int pw = 0, ph = 0, ct;

	ck_assert_msg(data != NULL, "no file %s", path);
	ck_assert_int_eq(cc_png_decode(data, len, &pw, &ph, &ct), 0);
	ck_assert_int_eq(pw, width);
	ck_assert_int_eq(ph, height);
	free(data);
}

START_TEST(poster_is_the_first_frame_scaled_to_fit)
{
	char src[600], dst[600], small[600], sdst[600];
	struct err e = {0};

	snprintf(src, sizeof src, "%s/wide.mp4", tu_tmpdir());
	snprintf(dst, sizeof dst, "%s/wide.png", tu_tmpdir());
	make_video(src, 640, 360, 5);
	ck_assert_msg(thumb_video_poster(src, dst, 256, 20000, &e) == 0, "%s", e.msg);
	assert_png(dst, 256, 144);
	/* Never scaled up. */
	snprintf(small, sizeof small, "%s/small.mp4", tu_tmpdir());
	snprintf(sdst, sizeof sdst, "%s/small.png", tu_tmpdir());
	make_video(small, 160, 96, 3);
	ck_assert_msg(thumb_video_poster(small, sdst, 256, 20000, &e) == 0, "%s", e.msg);
	assert_png(sdst, 160, 96);
	ck_assert_int_eq(hidden_files(tu_tmpdir()), 0);
}
END_TEST

START_TEST(poster_failures_leave_nothing)
{
	char src[600], dst[600];
	struct err e = {0};

	snprintf(src, sizeof src, "%s/not-a-video.mp4", tu_tmpdir());
	snprintf(dst, sizeof dst, "%s/poster.png", tu_tmpdir());
	ck_assert_int_eq(tu_write_file(src, "hello", 5), 0);
	require_program("ffmpeg");
	ck_assert_int_eq(thumb_video_poster(src, dst, 256, 20000, &e), -1);
	ck_assert_int_eq(e.code, ERR_INVALID);
	ck_assert_int_eq(access(dst, F_OK), -1);
	/* No ffmpeg on PATH. */
	err_clear(&e);
	make_video(src, 64, 48, 2);
	setenv("PATH", "/nonexistent", 1);
	ck_assert_int_eq(thumb_video_poster(src, dst, 256, 20000, &e), -1);
	ck_assert_int_eq(e.code, ERR_NOT_FOUND);
	ck_assert_ptr_nonnull(strstr(e.msg, "ffmpeg"));
	ck_assert_int_eq(access(dst, F_OK), -1);
	ck_assert_int_eq(hidden_files(tu_tmpdir()), 0);
}
END_TEST

/* ---- through fnrun ---- */

/*
 * The demo registry in the test's dir (its workflows linked), with `from`
 * replaced by `to` in its text when from is not NULL.
 */
static void demo_registry(const char *from, const char *to)
{
	char *text = tu_read_file("examples/registry.yaml", NULL), *out, *at;
	char wf[PATH_MAX], link[600];

	ck_assert_ptr_nonnull(text);
	ck_assert_ptr_nonnull(realpath("examples/workflows", wf));
	snprintf(link, sizeof link, "%s/workflows", g.dir);
	ck_assert_int_eq(symlink(wf, link), 0);
	out = xstrdup(text);
	while (from != NULL && (at = strstr(out, from)) != NULL) {
		char *next = xasprintf("%.*s%s%s", (int)(at - out), out, to, at + strlen(from));

		free(out);
		out = next;
	}
	gw_write_registry(&g, out);
	free(out);
	free(text);
}

static char *submit_video(const char *params, int *status, struct json_object **reply)
{
	char *body = xasprintf("{\"function\": \"Create Video\", \"quality\": \"low\", "
			       "\"params\": {%s}}", params);
	struct json_object *o = gw_json(&g, "POST", "/api/generate", body, status);
	char *id = o && json_get_str(o, "job_id") ? xstrdup(json_get_str(o, "job_id")) : NULL;

	free(body);
	if (reply != NULL)
		*reply = o;
	else
		json_object_put(o);
	return id;
}

#define SMALL "\"prompt\": \"a fox at dawn\", \"seconds\": 1, \"fps\": 8, \"width\": 160, \"height\": 96"

/* GET url from the gateway into the test's dir as name; returns the path (static). */
static const char *fetch(const char *url, const char *name, const char *want_type)
{
	static char path[600];
	struct tu_resp r;

	ck_assert_int_eq(tu_http(g.port, "GET", url, NULL, NULL, 0, &r), 0);
	ck_assert_msg(r.status == 200, "GET %s answered %d", url, r.status);
	ck_assert_str_eq(tu_resp_header(&r, "content-type"), want_type);
	snprintf(path, sizeof path, "%s/%s", g.dir, name);
	ck_assert_int_eq(tu_write_file(path, r.body, r.len), 0);
	tu_resp_free(&r);
	return path;
}

START_TEST(create_video_job_completes_with_a_video_and_its_poster)
{
	struct json_object *v, *outs, *o;
	int status;
	char *id;

	require_program("ffmpeg");
	demo_registry(NULL, NULL);
	gw_start(&g);
	id = submit_video(SMALL, &status, NULL);
	ck_assert_msg(status == 202 && id != NULL, "submit answered %d", status);
	v = gw_wait_status(&g, id, "completed,failed", RUN_MS);
	ck_assert_str_eq(gw_str(v, "status"), "completed");
	outs = json_get_arr(v, "outputs");
	ck_assert_ptr_nonnull(outs);
	ck_assert_uint_eq(json_object_array_length(outs), 1);
	o = json_object_array_get_idx(outs, 0);
	ck_assert_str_eq(json_get_str(o, "kind"), "video");
	ck_assert(util_ends_with(json_get_str(o, "filename"), ".mp4"));
	ck_assert_msg(json_get_str(o, "thumbnail_url") != NULL, "no poster: %s", cc_dump(o));
	assert_video(fetch(json_get_str(o, "url"), "got.mp4", "video/mp4"), 160, 96, 8);
	assert_png(fetch(json_get_str(o, "thumbnail_url"), "poster.png", "image/png"), 160, 96);
	json_object_put(v);
	free(id);
	ck_assert_int_eq(gw_stop(&g, 8000), 0);
	g.pid = 0;
}
END_TEST

/* A param out of range is refused with a 4xx naming it, and nothing is queued. */
static void assert_refused(const char *params, const char *field)
{
	struct json_object *reply = NULL, *e;
	int status;
	char *id = submit_video(params, &status, &reply);

	ck_assert_msg(status >= 400 && status < 500, "%s answered %d", params, status);
	ck_assert_ptr_null(id);
	char want[64];

	snprintf(want, sizeof want, "params.%s", field);
	e = json_get_obj(reply, "error");
	ck_assert_ptr_nonnull(e);
	ck_assert_msg(json_get_str(e, "field") && strcmp(json_get_str(e, "field"), want) == 0,
		      "%s: the error names %s, not %s", params, json_get_str(e, "field"), want);
	ck_assert_msg(strstr(json_get_str(e, "message"), field) != NULL, "%s: message %s",
		      params, json_get_str(e, "message"));
	json_object_put(reply);
}

START_TEST(video_params_out_of_range_get_4xx_naming_the_field)
{
	struct json_object *jobs;
	int status;

	demo_registry(NULL, NULL);
	gw_start(&g);
	assert_refused("\"prompt\": \"x\", \"seconds\": 11", "seconds");
	assert_refused("\"prompt\": \"x\", \"seconds\": 0", "seconds");
	assert_refused("\"prompt\": \"x\", \"fps\": 60", "fps");
	assert_refused("\"prompt\": \"x\", \"fps\": 4", "fps");
	assert_refused("\"prompt\": \"x\", \"width\": 2000", "width");
	assert_refused("\"prompt\": \"x\", \"height\": 50", "height");
	assert_refused("\"prompt\": \"x\", \"seconds\": \"long\"", "seconds");
	assert_refused("\"seconds\": 2", "prompt");
	jobs = gw_json(&g, "GET", "/api/jobs", NULL, &status);
	ck_assert_int_eq(status, 200);
	ck_assert_uint_eq(json_object_array_length(json_get_arr(jobs, "jobs")), 0);
	json_object_put(jobs);
}
END_TEST

/*
 * fnrun without ffmpeg on its PATH (the model server has one, through
 * env): the job completes with its video, no poster, and the log says why.
 */
START_TEST(no_ffmpeg_for_the_poster_still_completes)
{
	const char *from = "[\"{bindir}/fnrun-worker\", --model, sim, --step-ms, \"10\"";
	char bin[600], link[700], to[800], *log;
	struct json_object *v, *o;
	int status;
	char *id;

	require_program("ffmpeg");
	snprintf(bin, sizeof bin, "%s/ffbin", g.dir);
	ck_assert_int_eq(mkdir(bin, 0755), 0);
	snprintf(link, sizeof link, "%s/ffmpeg", bin);
	ck_assert_int_eq(symlink("/usr/bin/ffmpeg", link), 0);
	snprintf(to, sizeof to, "[/usr/bin/env, \"PATH=%s\", \"{bindir}/fnrun-worker\", --model, sim,"
		 " --step-ms, \"10\"", bin);
	demo_registry(from, to);
	setenv("PATH", "/nonexistent", 1);
	gw_start(&g);
	id = submit_video(SMALL, &status, NULL);
	ck_assert_msg(status == 202 && id != NULL, "submit answered %d", status);
	v = gw_wait_status(&g, id, "completed,failed", RUN_MS);
	ck_assert_str_eq(gw_str(v, "status"), "completed");
	o = json_object_array_get_idx(json_get_arr(v, "outputs"), 0);
	ck_assert_str_eq(json_get_str(o, "kind"), "video");
	ck_assert_ptr_null(json_get_str(o, "thumbnail_url"));
	log = gw_log(&g);
	ck_assert_msg(strstr(log, "no poster for a video") && strstr(log, "ffmpeg was not found"),
		      "the log does not say why there is no poster");
	free(log);
	json_object_put(v);
	free(id);
}
END_TEST

START_TEST(cli_submit_saves_the_video)
{
	char server[64], out[600], log[600], *text, *line, *save = NULL, *saved = NULL;
	char *argv[] = {(char *)tu_bin("fnrun"), "submit", "Create Video", "--quality", "low",
			"--param", "prompt=a fox at dawn", "--param", "seconds=1", "--param", "fps=8",
			"--param", "width=160", "--param", "height=96", "--out", out, "--server",
			server, NULL};
	pid_t pid;
	int status;

	require_program("ffmpeg");
	demo_registry(NULL, NULL);
	gw_start(&g);
	snprintf(server, sizeof server, "http://127.0.0.1:%d", g.port);
	snprintf(out, sizeof out, "%s/results", g.dir);
	snprintf(log, sizeof log, "%s/cli.log", g.dir);
	pid = tu_spawn(argv, log);
	ck_assert_int_gt(pid, 0);
	status = tu_wait_exit(pid, RUN_MS);
	if (status == -1)
		tu_stop(pid, 2000);
	text = tu_read_file(log, NULL);
	ck_assert_msg(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0,
		      "fnrun submit failed: %s", text ? text : "");
	/* stdout carries the saved path (stderr, in the same log, the progress). */
	for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
		if (strncmp(line, out, strlen(out)) == 0 && util_ends_with(line, ".mp4"))
			saved = line;
	ck_assert_msg(saved != NULL, "no saved .mp4 path printed");
	assert_video(saved, 160, 96, 8);
	free(text);
}
END_TEST

Suite *suite_video(void)
{
	Suite *s = suite_create("video");
	TCase *wk = tcase_create("worker");
	TCase *po = tcase_create("poster");
	TCase *gwc = tcase_create("gateway");

	tcase_add_unchecked_fixture(wk, reap_setup, reap_teardown);
	tcase_add_checked_fixture(wk, setup, teardown);
	tcase_set_timeout(wk, 90);
	tcase_add_test(wk, video_workflow_makes_an_h264_mp4);
	tcase_add_test(wk, save_video_ui_is_an_output_of_kind_video);
	tcase_add_test(wk, interrupt_kills_ffmpeg_and_leaves_no_temp_file);
	tcase_add_test(wk, missing_ffmpeg_fails_the_node_saying_so);
	tcase_add_test(wk, video_sampler_fails_like_sim_sampler);
	suite_add_tcase(s, wk);

	tcase_add_unchecked_fixture(po, reap_setup, reap_teardown);
	tcase_add_checked_fixture(po, setup, teardown);
	tcase_set_timeout(po, 60);
	tcase_add_test(po, poster_is_the_first_frame_scaled_to_fit);
	tcase_add_test(po, poster_failures_leave_nothing);
	suite_add_tcase(s, po);

	tcase_add_unchecked_fixture(gwc, reap_setup, reap_teardown);
	tcase_add_checked_fixture(gwc, setup, teardown);
	tcase_set_timeout(gwc, 90);
	tcase_add_test(gwc, create_video_job_completes_with_a_video_and_its_poster);
	tcase_add_test(gwc, video_params_out_of_range_get_4xx_naming_the_field);
	tcase_add_test(gwc, no_ffmpeg_for_the_poster_still_completes);
	tcase_add_test(gwc, cli_submit_saves_the_video);
	suite_add_tcase(s, gwc);
	return s;
}
