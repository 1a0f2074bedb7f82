/*
 * test_comfyui.c - fnrun in front of a ComfyUI, as a real one answers,
 * through a real `fnrun serve` and fnrun-worker: no GET /health (404)
 * while it starts, serves, is cancelled and is killed mid-job; progress
 * from progress_state frames alone; outputs of each kind kept byte for
 * byte, previews and text left out; POST /free after each job (the model
 * key free_after_job), before the next prompt; out-of-memory errors in
 * PyTorch's own words. Then examples/registry-comfyui.yaml passes `fnrun
 * check` and its workflows use ComfyUI 0.3.64's node classes and inputs,
 * and scripts/comfyui-check runs against a fake ComfyUI directory whose
 * main.py is fnrun-worker. (The client's pure steps: test_comfy.c.)
 */
#include <glob.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "gwtest.h"
#include "json.h"
#include "registry.h"
#include "testutil.h"

#define WAIT_MS 30000
/* The command of a model served by fnrun-worker's exec model with oom.yaml. */
#define EXEC_OOM \
	"    command: [\"{bindir}/fnrun-worker\", --model, exec, --config, \"{configdir}/oom.yaml\"," \
	" --port, \"{port}\"]\n"

static struct gw g;

static void setup(void)
{
	gw_init(&g);
}

static void teardown(void)
{
	gw_cleanup(&g);
}

static void unit_teardown(void)
{
	tu_rmrf(tu_tmpdir());
}

/* Writes text to dir/name. */
static void put(const char *dir, const char *name, const char *text)
{
	char path[600];

	snprintf(path, sizeof path, "%s/%s", dir, name);
	ck_assert_int_eq(tu_write_file(path, text, strlen(text)), 0);
}

/* Loads a one-model registry whose model ends with `extra`; NULL with e. */
static struct registry *load_with(const char *extra, struct err *e)
{
	const char *dir = tu_tmpdir();
	char text[2048], path[600];

	put(dir, "wf.json", "{\"1\": {\"class_type\": \"EmptyImage\", \"inputs\": {\"width\": 8}}}");
	snprintf(text, sizeof text,
		 "functions:\n  F:\n    qualities: {low: {label: L, typical_seconds: [1, 2]}}\n"
		 "models:\n  m:\n    function: F\n    quality: low\n    runtime: external\n"
		 "    url: http://127.0.0.1:8188\n    workflow: wf.json\n%s", extra);
	put(dir, "r.yaml", text);
	snprintf(path, sizeof path, "%s/r.yaml", dir);
	memset(e, 0, sizeof *e);
	return registry_load(path, e);
}

START_TEST(free_after_job_key)
{
	static const struct {
		const char *yaml;
		int unload, memory;
	} ok[] = {
		{"", 0, 0},
		{"    free_after_job: true\n", 1, 1},
		{"    free_after_job: false\n", 0, 0},
		{"    free_after_job: {unload_models: true}\n", 1, 0},
		{"    free_after_job: {free_memory: true}\n", 0, 1},
		{"    free_after_job: {unload_models: true, free_memory: true}\n", 1, 1},
	};
	static const char *const bad[][2] = {
		{"    free_after_job: yes\n", "r.yaml:11:21: models.m.free_after_job: must be true or false"},
		{"    free_after_job: [true]\n", "models.m.free_after_job: must be true, false or a map "
		 "{unload_models: BOOL, free_memory: BOOL}"},
		{"    free_after_job: {unload: true}\n", "models.m.free_after_job.unload: unknown key; "
		 "allowed keys: unload_models, free_memory"},
		{"    free_after_job: {free_memory: 1}\n", "models.m.free_after_job.free_memory: must be "
		 "true or false"},
	};
	struct registry *r;
	struct err e;

	for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
		r = load_with(ok[i].yaml, &e);
		ck_assert_msg(r != NULL, "%s: %s", ok[i].yaml, e.msg);
		ck_assert_int_eq(registry_model(r, "m")->free_unload_models, ok[i].unload);
		ck_assert_int_eq(registry_model(r, "m")->free_memory, ok[i].memory);
		registry_unref(r);
	}
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		r = load_with(bad[i][0], &e);
		ck_assert_ptr_null(r);
		ck_assert_msg(strstr(e.msg, bad[i][1]) != NULL, "%s: %s", bad[i][0], e.msg);
	}
}
END_TEST

/* ---- through fnrun serve ---- */

/* Create Image at three qualities; `other` adds Create Other (no OOM retry) at two. */
static void registry_with(int other, const char *models)
{
	static const char fn[] = "    params: {prompt: {type: string, required: true}}\n"
				 "    qualities:\n"
				 "      low: {label: Fast Preview, typical_seconds: [1, 2]}\n"
				 "      standard: {label: Balanced, typical_seconds: [1, 2]}\n";
	char text[8192];

	snprintf(text, sizeof text,
		 "functions:\n  Create Image:\n    reduce_quality_on_oom: true\n%s"
		 "      high: {label: Maximum Detail, typical_seconds: [1, 2]}\n%s%s"
		 "models:\n%s",
		 fn, other ? "  Create Other:\n" : "", other ? fn : "", models);
	gw_write_registry(&g, text);
}

static char *submit(const char *function, const char *quality, const char *prompt)
{
	char body[512];
	struct json_object *o;
	int status;
	char *id;

	snprintf(body, sizeof body,
		 "{\"function\": \"%s\", \"quality\": \"%s\", \"params\": {\"prompt\": \"%s\"}}",
		 function, quality, prompt);
	o = gw_json(&g, "POST", "/api/generate", body, &status);
	ck_assert_msg(status == 202, "submit answered %d", status);
	id = strdup(gw_str(o, "job_id"));
	json_object_put(o);
	return id;
}

/* Field key of model's first runner (admin API); caller frees; NULL when none. */
static char *runner_field(const char *model, const char *key)
{
	struct json_object *o = gw_json(&g, "GET", "/api/admin/runners", NULL, NULL), *a, *r;
	char *out = NULL;

	ck_assert(json_object_object_get_ex(o, "runners", &a));
	for (size_t i = 0; out == NULL && i < json_object_array_length(a); i++) {
		r = json_object_array_get_idx(a, i);
		if (strcmp(gw_str(r, "model"), model) == 0 && json_get(r, key))
			out = strdup(json_object_get_string(json_get(r, key)));
	}
	json_object_put(o);
	return out;
}

/* GET path on the model server at url ("http://127.0.0.1:PORT"); its status, body in r. */
static int server_get(const char *url, const char *path, struct tu_resp *r)
{
	ck_assert_int_eq(tu_http(atoi(strrchr(url, ':') + 1), "GET", path, NULL, NULL, 0, r), 0);
	return r->status;
}

/* The model server's /history entry of job id, as text; caller frees. */
static char *job_history(const char *id)
{
	char path[300], *text;
	struct json_object *o;
	struct tu_resp r;

	snprintf(path, sizeof path, "/api/admin/jobs/%s", id);
	o = gw_json(&g, "GET", path, NULL, NULL);
	snprintf(path, sizeof path, "/history/%s", gw_str(o, "prompt_id"));
	ck_assert_int_eq(server_get(gw_str(o, "model_server_url"), path, &r), 200);
	text = strdup(r.body);
	tu_resp_free(&r);
	json_object_put(o);
	return text;
}

/* Times needle occurs in the file at path. */
static int count_in(const char *path, const char *needle)
{
	char *text = tu_read_file(path, NULL), *p = text;
	int n = 0;

	while (p && (p = strstr(p, needle)) != NULL && ++n)
		p++;
	free(text);
	return n;
}

/* Waits up to ms for needle to occur n times in the file at path; returns the count. */
static int wait_count(const char *path, const char *needle, int n, int ms)
{
	int64_t end = tu_now_ms() + ms;

	while (count_in(path, needle) < n && tu_now_ms() < end)
		gw_sleep_ms(20);
	return count_in(path, needle);
}

static void expect_status(const char *id, const char *want)
{
	struct json_object *o = gw_wait_status(&g, id, "completed,failed,cancelled", WAIT_MS);

	ck_assert_msg(strcmp(gw_str(o, "status"), want) == 0, "job %s: %s, not %s: %s", id,
		      gw_str(o, "status"), want, json_object_to_json_string(o));
	json_object_put(o);
}

/*
 * A model server without GET /health, as ComfyUI (404): it starts on
 * demand, runs a job, a cancel interrupts its prompt there, and a kill -9
 * mid-job restarts it and the job completes.
 */
START_TEST(comfyui_without_health_serves_cancels_and_restarts)
{
	char *id, *url, *pid, *pid2, *hist, path[200];
	struct json_object *root, *m, *o;
	struct tu_resp r;
	int status;

	put(g.dir, "slow.json",
	    "{\"1\": {\"class_type\": \"SimTextEncode\", \"inputs\": {\"text\": \"x\"}},"
	    " \"2\": {\"class_type\": \"SimSampler\", \"inputs\": {\"conditioning\": [\"1\", 0], \"seed\": 1,"
	    " \"steps\": 60, \"width\": 32, \"height\": 32, \"step_ms\": -1, \"fail\": \"none\"}},"
	    " \"3\": {\"class_type\": \"SaveImage\", \"inputs\": {\"images\": [\"2\", 0], \"filename_prefix\": \"c\"}}}");
	registry_with(0, "  comfy:\n    function: Create Image\n    quality: low\n"
		 "    command: [\"{bindir}/fnrun-worker\", --model, sim, --step-ms, \"40\", --port, \"{port}\"]\n"
		 "    env: {FNRUN_WORKER_NO_HEALTH: \"1\"}\n"
		 "    workflow: slow.json\n    bind: {prompt: \"1.inputs.text\"}\n");
	gw_start(&g);
	id = submit("Create Image", "low", "first");
	expect_status(id, "completed");
	free(id);
	url = runner_field("comfy", "url");
	ck_assert_ptr_nonnull(url);
	ck_assert_int_eq(server_get(url, "/health", &r), 404); /* as ComfyUI: no such route */
	tu_resp_free(&r);
	ck_assert_int_eq(server_get(url, "/system_stats", &r), 200);
	tu_resp_free(&r);

	id = submit("Create Image", "low", "cancel me");
	json_object_put(gw_wait_status(&g, id, "running", WAIT_MS));
	snprintf(path, sizeof path, "/api/jobs/%s/cancel", id);
	o = gw_json(&g, "POST", path, NULL, &status);
	ck_assert_int_eq(status, 200);
	json_object_put(o);
	expect_status(id, "cancelled");
	hist = job_history(id);
	ck_assert_msg(strstr(hist, "execution_interrupted") != NULL, "%s", hist);
	free(hist);
	free(id);

	id = submit("Create Image", "low", "kill its server");
	json_object_put(gw_wait_status(&g, id, "running", WAIT_MS));
	pid = runner_field("comfy", "pid");
	ck_assert_ptr_nonnull(pid);
	ck_assert_int_eq(kill(atoi(pid), SIGKILL), 0);
	expect_status(id, "completed");
	pid2 = runner_field("comfy", "pid");
	ck_assert_msg(pid2 && strcmp(pid, pid2) != 0, "no new server: %s", pid2 ? pid2 : "none");
	m = gw_model(&g, "comfy", &root);
	ck_assert_int_eq(gw_int(m, "restarts"), 1);
	json_object_put(root);
	ck_assert_int_eq(gw_log_count(&g, "health probe failed"), 0);
	free(pid);
	free(pid2);
	free(url);
	free(id);
}
END_TEST

/*
 * ComfyUI's built-in image nodes report no steps: progress_state, sent at
 * each node's start and end, is all there is. A watcher of the job hears
 * its progress between its start and its end.
 */
START_TEST(progress_from_progress_state_alone)
{
	char *id, path[200], *p;
	struct tu_resp r;
	int between = 0;

	put(g.dir, "blur.json",
	    "{\"1\": {\"class_type\": \"EmptyImage\", \"inputs\": {\"width\": 1536, \"height\": 1536,"
	    " \"batch_size\": 1, \"color\": 3368652}},"
	    " \"2\": {\"class_type\": \"ImageInvert\", \"inputs\": {\"image\": [\"1\", 0]}},"
	    " \"3\": {\"class_type\": \"ImageBlur\", \"inputs\": {\"image\": [\"2\", 0], \"blur_radius\": 31, \"sigma\": 8.0}},"
	    " \"4\": {\"class_type\": \"ImageScale\", \"inputs\": {\"image\": [\"3\", 0], \"upscale_method\": \"bilinear\","
	    " \"width\": 64, \"height\": 64, \"crop\": \"disabled\"}},"
	    " \"5\": {\"class_type\": \"SaveImage\", \"inputs\": {\"images\": [\"4\", 0], \"filename_prefix\": \"blur\"}}}");
	registry_with(0, "  comfy:\n    function: Create Image\n    quality: low\n"
		 "    command: [\"{bindir}/fnrun-worker\", --model, sim, --port, \"{port}\"]\n"
		 "    workflow: blur.json\n");
	gw_start(&g);
	id = submit("Create Image", "low", "unused");
	/* The stream ends after the job's final state; the blur leaves time to open it. */
	snprintf(path, sizeof path, "/api/jobs/%s/events", id);
	ck_assert_int_eq(tu_http(g.port, "GET", path, NULL, NULL, 0, &r), 0);
	for (p = strstr(r.body, "event: progress\n"); p; p = strstr(p + 1, "event: progress\n")) {
		const char *v = strstr(p, "\"progress\": ");
		int pct = v ? atoi(v + 12) : 0;
		between += pct > 5 && pct < 100;
	}
	ck_assert_msg(between >= 2, "progress events between start and end: %d in %s", between,
		      r.body);
	ck_assert_ptr_nonnull(strstr(r.body, "\"status\": \"completed\""));
	tu_resp_free(&r);
	expect_status(id, "completed");
	free(id);
}
END_TEST

/*
 * Job id completed with exactly n outputs: want[i] = {kind, file under
 * outdir}, matched in any order by kind and extension, byte for byte
 * (GET from the gateway against the model server's file).
 */
static void expect_outputs(const char *id, const char *outdir, const char *const want[][2],
			   size_t n)
{
	struct json_object *o = gw_wait_status(&g, id, "completed,failed", WAIT_MS), *outs;
	char path[700], *file;
	struct tu_resp r;
	size_t len = 0;

	ck_assert_msg(strcmp(gw_str(o, "status"), "completed") == 0, "%s",
		      json_object_to_json_string(o));
	ck_assert(json_object_object_get_ex(o, "outputs", &outs));
	ck_assert_msg(json_object_array_length(outs) == n, "%s", json_object_to_json_string(outs));
	for (size_t i = 0; i < n; i++) {
		const char *ext = strrchr(want[i][1], '.');
		struct json_object *hit = NULL;

		for (size_t k = 0; hit == NULL && k < n; k++) {
			struct json_object *out = json_object_array_get_idx(outs, k);
			const char *fn = gw_str(out, "filename");
			if (strcmp(gw_str(out, "kind"), want[i][0]) == 0 &&
			    strcmp(strrchr(fn, '.'), ext) == 0)
				hit = out;
		}
		ck_assert_msg(hit != NULL, "no %s output %s: %s", want[i][0], want[i][1],
			      json_object_to_json_string(outs));
		snprintf(path, sizeof path, "%s/%s", outdir, want[i][1]);
		file = tu_read_file(path, &len);
		ck_assert_int_eq(tu_http(g.port, "GET", gw_str(hit, "url"), NULL, NULL, 0, &r), 0);
		ck_assert_msg(r.status == 200 && file && r.len == len && memcmp(r.body, file, len) == 0,
			      "%s is not %s", gw_str(hit, "url"), path);
		tu_resp_free(&r);
		free(file);
	}
	json_object_put(o);
}

static const char kinds_workflow[] =
	"{\"1\": {\"class_type\": \"SimTextEncode\", \"inputs\": {\"text\": \"x\"}},"
	" \"2\": {\"class_type\": \"SimVideoSampler\", \"inputs\": {\"conditioning\": [\"1\", 0], \"seed\": 7,"
	" \"seconds\": 1.0, \"fps\": 8.0, \"width\": 64, \"height\": 48, \"step_ms\": 0, \"fail\": \"none\"}},"
	" \"3\": {\"class_type\": \"CreateVideo\", \"inputs\": {\"images\": [\"2\", 0], \"fps\": 8.0}},"
	" \"4\": {\"class_type\": \"SaveVideo\", \"inputs\": {\"video\": [\"3\", 0], \"filename_prefix\": \"video/clip\","
	" \"format\": \"auto\", \"codec\": \"auto\"}},"
	" \"5\": {\"class_type\": \"SimSampler\", \"inputs\": {\"conditioning\": [\"1\", 0], \"seed\": 1, \"steps\": 2,"
	" \"width\": 32, \"height\": 32, \"step_ms\": 0, \"fail\": \"none\"}},"
	" \"6\": {\"class_type\": \"SaveImage\", \"inputs\": {\"images\": [\"5\", 0], \"filename_prefix\": \"still\"}},"
	" \"7\": {\"class_type\": \"PreviewImage\", \"inputs\": {\"images\": [\"5\", 0]}},"
	" \"8\": {\"class_type\": \"GetImageSize\", \"inputs\": {\"image\": [\"5\", 0]}},"
	" \"9\": {\"class_type\": \"PreviewAny\", \"inputs\": {\"source\": [\"8\", 0]}}}";

/* A 1x1 GIF; bytes standing for a WAV and a WebM. */
static const char gif[] = "GIF89a\x01\x00\x01\x00\x80\x00\x00\xff\xff\xff\x00\x00\x00!\xf9\x04"
			  "\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;";

/*
 * One job saves a PNG, an MP4 (SaveVideo: "images" with "animated":
 * [true], in a subfolder), a preview and a text; another saves audio, an
 * animated GIF and a WebM as custom nodes report them. Each job keeps
 * exactly its saved files, of the right kind, copied byte for byte through
 * /view; previews and text are left out.
 */
START_TEST(outputs_of_every_kind_are_kept)
{
	static const char *const sim_want[][2] = {
		{"image", "still_00001_.png"}, {"video", "video/clip_00001_.mp4"}};
	static const char *const exec_want[][2] = {
		{"audio", "audio/speech_00001_.wav"}, {"image", "anim_00001_.gif"},
		{"video", "clip_00001_.webm"}};
	char text[2048], outdir[600];
	char *a, *b;

	put(g.dir, "kinds.json", kinds_workflow);
	ck_assert_int_eq(tu_write_file(strcat(strcpy(text, g.dir), "/src.gif"), gif, sizeof gif - 1), 0);
	put(g.dir, "src.wav", "RIFF stands for a WAV");
	put(g.dir, "src.webm", "\x1a\x45\xdf\xa3 stands for a WebM");
	snprintf(text, sizeof text,
		 "nodes:\n"
		 "  SaveSpeech:\n    command: [cp, %s/src.wav, \"{output}\"]\n"
		 "    output: {kind: audio, ext: wav, prefix: audio/speech}\n"
		 "  SaveGif:\n    command: [cp, %s/src.gif, \"{output}\"]\n"
		 "    output: {kind: image, ext: gif, prefix: anim}\n"
		 "  SaveClip:\n    command: [cp, %s/src.webm, \"{output}\"]\n"
		 "    output: {kind: video, ext: webm, prefix: clip}\n",
		 g.dir, g.dir, g.dir);
	put(g.dir, "files.yaml", text);
	put(g.dir, "files.json",
	    "{\"1\": {\"class_type\": \"SaveSpeech\", \"inputs\": {}},"
	    " \"2\": {\"class_type\": \"SaveGif\", \"inputs\": {}},"
	    " \"3\": {\"class_type\": \"SaveClip\", \"inputs\": {}}}");
	registry_with(0, "  sim:\n    function: Create Image\n    quality: low\n"
		 "    command: [\"{bindir}/fnrun-worker\", --model, sim, --port, \"{port}\","
		 " --output-directory, \"{configdir}/sim-out\"]\n"
		 "    workflow: kinds.json\n"
		 "  files:\n    function: Create Image\n    quality: standard\n"
		 "    command: [\"{bindir}/fnrun-worker\", --model, exec, --config, \"{configdir}/files.yaml\","
		 " --port, \"{port}\", --output-directory, \"{configdir}/exec-out\"]\n"
		 "    workflow: files.json\n");
	gw_start(&g);
	a = submit("Create Image", "low", "kinds");
	b = submit("Create Image", "standard", "files");
	snprintf(outdir, sizeof outdir, "%s/sim-out", g.dir);
	expect_outputs(a, outdir, sim_want, 2);
	snprintf(outdir, sizeof outdir, "%s/exec-out", g.dir);
	expect_outputs(b, outdir, exec_want, 3);
	free(a);
	free(b);
}
END_TEST

/* Runs two identical jobs on quality q; the second one's /history entry (caller frees). */
static char *twice(const char *q)
{
	char *a = submit("Create Image", q, "same"), *b, *hist;

	expect_status(a, "completed");
	b = submit("Create Image", q, "same");
	expect_status(b, "completed");
	hist = job_history(b);
	free(a);
	free(b);
	return hist;
}

/* vram_used in the /health of model's server. */
static int64_t vram_used(const char *model)
{
	char *url = runner_field(model, "url");
	struct json_object *o;
	struct tu_resp r;
	int64_t v;

	ck_assert_int_eq(server_get(url, "/health", &r), 200);
	o = json_tokener_parse(r.body);
	v = gw_int(o, "vram_used");
	json_object_put(o);
	tu_resp_free(&r);
	free(url);
	return v;
}

/*
 * free_after_job: POST /free after each job, with ComfyUI's body, before
 * the next prompt goes: with free_memory the server's cache is gone, so
 * the same prompt runs again in full; unloading alone keeps the cache; a
 * model without the key sends none.
 */
START_TEST(free_after_job_posts_free_before_the_next_prompt)
{
	static const char *const all_cached = "\"nodes\": [\"1\", \"2\", \"3\"]";
	char *hist, *log;

	registry_with(0, "  freed:\n    function: Create Image\n    quality: low\n"
		 "    command: [\"{bindir}/fnrun-worker\", --model, sim, --vram, \"1000\", --port, \"{port}\"]\n"
		 "    workflow: wf.json\n    bind: {prompt: \"1.inputs.text\"}\n"
		 "    free_after_job: true\n"
		 "  kept:\n    function: Create Image\n    quality: standard\n"
		 "    command: [\"{bindir}/fnrun-worker\", --model, sim, --vram, \"1000\", --port, \"{port}\"]\n"
		 "    workflow: wf.json\n    bind: {prompt: \"1.inputs.text\"}\n"
		 "  unload:\n    function: Create Image\n    quality: high\n"
		 "    command: [\"{bindir}/fnrun-worker\", --model, sim, --vram, \"1000\", --port, \"{port}\"]\n"
		 "    workflow: wf.json\n    bind: {prompt: \"1.inputs.text\"}\n"
		 "    free_after_job: {unload_models: true}\n");
	gw_start(&g);

	hist = twice("low");
	ck_assert_msg(strstr(hist, "\"execution_cached\", {\"nodes\": [], ") != NULL, "%s", hist);
	free(hist);
	log = runner_field("freed", "log");
	ck_assert_int_eq(wait_count(log, "free unload_models=1 free_memory=1", 2, WAIT_MS), 2);
	ck_assert_int_eq(vram_used("freed"), 0);
	free(log);

	hist = twice("standard");
	ck_assert_msg(strstr(hist, all_cached) != NULL, "%s", hist);
	free(hist);
	log = runner_field("kept", "log");
	ck_assert_int_eq(count_in(log, "free unload_models"), 0);
	ck_assert_int_eq(vram_used("kept"), 1000LL << 20);
	free(log);

	hist = twice("high");
	ck_assert_msg(strstr(hist, all_cached) != NULL, "%s", hist);
	free(hist);
	log = runner_field("unload", "log");
	ck_assert_int_eq(wait_count(log, "free unload_models=1 free_memory=0", 2, WAIT_MS), 2);
	ck_assert_int_eq(vram_used("unload"), 0);
	free(log);
}
END_TEST

/* Expects job id to fail with code. */
static void expect_failed(const char *id, const char *code)
{
	struct json_object *o = gw_wait_status(&g, id, "completed,failed,cancelled", WAIT_MS);
	struct json_object *e = json_get_obj(o, "error");

	ck_assert_msg(strcmp(gw_str(o, "status"), "failed") == 0 && e &&
			      strcmp(gw_str(e, "code"), code) == 0,
		      "not %s: %s", code, json_object_to_json_string(o));
	json_object_put(o);
}

/*
 * Out of memory as PyTorch words it, in a node's error: cudaMallocAsync's
 * "Allocation on device" moves the job one quality down (the function
 * allows it), cuBLAS's allocation failure fails it as OUT_OF_MEMORY, and
 * another error fails it as INTERNAL.
 */
START_TEST(oom_errors_in_pytorch_words)
{
	struct json_object *o;
	char *a, *b, *c;

	put(g.dir, "oom.yaml",
	    "nodes:\n"
	    "  AllocAsync:\n    command: [sh, -c, 'echo \"torch.OutOfMemoryError: Allocation on device 0"
	    " would exceed allowed memory. (out of memory)\" >&2; exit 1', \"{output}\"]\n"
	    "    output: {kind: image}\n"
	    "  Cublas:\n    command: [sh, -c, 'echo \"RuntimeError: CUDA error: CUBLAS_STATUS_ALLOC_FAILED"
	    " when calling cublasCreate(handle)\" >&2; exit 1', \"{output}\"]\n"
	    "    output: {kind: image}\n"
	    "  BadValue:\n    command: [sh, -c, 'echo \"ValueError: height out of range\" >&2; exit 1',"
	    " \"{output}\"]\n    output: {kind: image}\n");
	put(g.dir, "async.json", "{\"1\": {\"class_type\": \"AllocAsync\", \"inputs\": {}}}");
	put(g.dir, "cublas.json", "{\"1\": {\"class_type\": \"Cublas\", \"inputs\": {}}}");
	put(g.dir, "value.json", "{\"1\": {\"class_type\": \"BadValue\", \"inputs\": {}}}");
	registry_with(1,
		 "  ok:\n    function: Create Image\n    quality: low\n"
		 "    command: [\"{bindir}/fnrun-worker\", --model, sim, --port, \"{port}\"]\n"
		 "    workflow: wf.json\n    bind: {prompt: \"1.inputs.text\"}\n"
		 "  alloc_async:\n    function: Create Image\n    quality: standard\n"
		 EXEC_OOM "    workflow: async.json\n"
		 "  cublas:\n    function: Create Other\n    quality: low\n"
		 EXEC_OOM "    workflow: cublas.json\n"
		 "  bad_value:\n    function: Create Other\n    quality: standard\n"
		 EXEC_OOM "    workflow: value.json\n");
	gw_start(&g);
	a = submit("Create Image", "standard", "oom then lower");
	b = submit("Create Other", "low", "cublas");
	c = submit("Create Other", "standard", "value");
	o = gw_wait_status(&g, a, "completed,failed", WAIT_MS);
	ck_assert_msg(strcmp(gw_str(o, "status"), "completed") == 0 &&
			      strstr(gw_str(o, "message"), "made at Fast Preview quality"),
		      "%s", json_object_to_json_string(o));
	json_object_put(o);
	ck_assert_int_eq(gw_log_count(&g, "out of memory, one quality down"), 1);
	expect_failed(b, "OUT_OF_MEMORY");
	expect_failed(c, "INTERNAL");
	free(a);
	free(b);
	free(c);
}
END_TEST

/* ---- examples/registry-comfyui.yaml ---- */

/*
 * The inputs of the node classes the example workflows use, as ComfyUI
 * 0.3.64 defines them (nodes.py, comfy_extras/nodes_custom_sampler.py,
 * nodes_flux.py, nodes_sd3.py, nodes_model_advanced.py): required, then
 * optional, each a space-separated list.
 */
static const struct {
	const char *cls, *required, *optional;
} comfy_classes[] = {
	{"CheckpointLoaderSimple", "ckpt_name", ""},
	{"CLIPTextEncode", "text clip", ""},
	{"EmptyLatentImage", "width height batch_size", ""},
	{"EmptySD3LatentImage", "width height batch_size", ""},
	{"KSampler", "model seed steps cfg sampler_name scheduler positive negative latent_image denoise", ""},
	{"VAEDecode", "samples vae", ""},
	{"SaveImage", "images filename_prefix", ""},
	{"UNETLoader", "unet_name weight_dtype", ""},
	{"DualCLIPLoader", "clip_name1 clip_name2 type", "device"},
	{"VAELoader", "vae_name", ""},
	{"FluxGuidance", "conditioning guidance", ""},
	{"ModelSamplingFlux", "model max_shift base_shift width height", ""},
	{"RandomNoise", "noise_seed", ""},
	{"KSamplerSelect", "sampler_name", ""},
	{"BasicScheduler", "model scheduler steps denoise", ""},
	{"BasicGuider", "model conditioning", ""},
	{"SamplerCustomAdvanced", "noise guider sampler sigmas latent_image", ""},
};

/* 1 when word is one of the space-separated list. */
static int listed(const char *list, const char *word)
{
	size_t n = strlen(word);

	for (const char *p = strstr(list, word); p; p = strstr(p + 1, word))
		if ((p == list || p[-1] == ' ') && (p[n] == ' ' || p[n] == '\0'))
			return 1;
	return 0;
}

/* Node id of wf (file): a known class, its inputs only, all required ones, links to nodes of wf. */
static void check_node(struct json_object *wf, const char *id, struct json_object *node,
		       const char *file)
{
	const char *cls = json_get_str(node, "class_type");
	struct json_object *in = json_get_obj(node, "inputs");
	size_t k = 0, n = sizeof comfy_classes / sizeof comfy_classes[0];
	char req[200], *w, *save;

	while (k < n && strcmp(comfy_classes[k].cls, cls) != 0)
		k++;
	ck_assert_msg(k < n, "%s: node %s: %s is not a class this test knows", file, id, cls);
	json_object_object_foreach(in, name, v) {
		ck_assert_msg(listed(comfy_classes[k].required, name) ||
				      listed(comfy_classes[k].optional, name),
			      "%s: node %s (%s) has no input %s", file, id, cls, name);
		if (json_object_is_type(v, json_type_array))
			ck_assert_msg(json_get(wf, json_object_get_string(json_object_array_get_idx(v, 0))),
				      "%s: node %s links to a missing node", file, id);
	}
	snprintf(req, sizeof req, "%s", comfy_classes[k].required);
	for (w = strtok_r(req, " ", &save); w; w = strtok_r(NULL, " ", &save))
		ck_assert_msg(json_get(in, w) != NULL, "%s: node %s (%s) lacks %s", file, id, cls, w);
}

/* One model of the example: its workflow's nodes, its binds onto inputs the template has. */
static void check_model(const struct reg_model *m)
{
	const char *file = strrchr(m->workflow_path, '/') + 1;

	json_object_object_foreach(m->workflow, id, node)
		check_node(m->workflow, id, node, file);
	for (size_t i = 0; i < m->nbinds; i++)
		ck_assert_msg(json_get(json_get_obj(json_get(m->workflow, m->binds[i].node), "inputs"),
				       m->binds[i].input) != NULL,
			      "%s: bind %s: node %s has no input %s in its template", m->id,
			      m->binds[i].param, m->binds[i].node, m->binds[i].input);
	for (size_t i = 0; i + 1 < m->ncommand; i++) {
		char *path;
		if (strcmp(m->command[i], "--extra-model-paths-config") != 0)
			continue;
		path = registry_expand(m->command[i + 1], 0, NULL, "examples", NULL);
		ck_assert_msg(access(path, R_OK) == 0, "%s: no %s", m->id, path);
		free(path);
	}
}

/*
 * Every examples/registry*.yaml passes `fnrun check`, registry-comfyui.yaml
 * among them; each of its models' workflows is made of ComfyUI's classes
 * with their own inputs, each bind lands on an input the template has, and
 * every examples/workflows/comfyui-*.json is used.
 */
START_TEST(registry_comfyui_example)
{
	glob_t gl;
	char cmd[1024], used[2048] = "";
	struct registry *r;
	struct err e = {0};
	int found = 0;

	ck_assert_int_eq(glob("examples/registry*.yaml", 0, NULL, &gl), 0);
	for (size_t i = 0; i < gl.gl_pathc; i++) {
		snprintf(cmd, sizeof cmd, "%s check %s >/dev/null 2>&1", tu_bin("fnrun"), gl.gl_pathv[i]);
		ck_assert_msg(WEXITSTATUS(system(cmd)) == 0, "fnrun check %s failed", gl.gl_pathv[i]);
		found |= strcmp(gl.gl_pathv[i], "examples/registry-comfyui.yaml") == 0;
	}
	globfree(&gl);
	ck_assert(found);
	r = registry_load("examples/registry-comfyui.yaml", &e);
	ck_assert_msg(r != NULL, "%s", e.msg);
	for (size_t i = 0; i < registry_model_count(r); i++) {
		const struct reg_model *m = registry_model_at(r, i);
		check_model(m);
		strncat(used, strrchr(m->workflow_path, '/') + 1, sizeof used - strlen(used) - 2);
		strcat(used, " ");
	}
	ck_assert_int_eq(glob("examples/workflows/comfyui-*.json", 0, NULL, &gl), 0);
	ck_assert_uint_ge(gl.gl_pathc, 4);
	for (size_t i = 0; i < gl.gl_pathc; i++)
		ck_assert_msg(listed(used, strrchr(gl.gl_pathv[i], '/') + 1), "%s is used by no model",
			      gl.gl_pathv[i]);
	globfree(&gl);
	registry_unref(r);
}
END_TEST

/* ---- scripts/comfyui-check ---- */

/*
 * The script against a fake ComfyUI directory: its main.py (run by sh) is
 * fnrun-worker, answering as ComfyUI does (no /health). Every check but
 * the GPU's passes; that one is skipped (exit 3) on a machine without one.
 */
START_TEST(comfyui_check_script_on_a_fake_comfyui)
{
	static const char *const passes[] = {
		"PASS: started on demand", "PASS: 5 jobs completed", "PASS: progress seen",
		"PASS: cancel interrupts", "PASS: kill -9", "PASS: idle stop", "PASS: latency"};
	char text[2048], cmd[2048], path[600], bin[PATH_MAX], *out, *tail;
	int rc;

	snprintf(path, sizeof path, "%s/ComfyUI", g.dir);
	ck_assert_int_eq(mkdir(path, 0755), 0);
	snprintf(text, sizeof text,
		 "#!/bin/sh\n# ComfyUI's main.py, played by fnrun-worker; other flags ignored.\n"
		 "port=8188; out=output; tmp=.\n"
		 "while [ $# -gt 0 ]; do\n  case $1 in\n"
		 "    --port) port=$2; shift ;;\n    --output-directory) out=$2; shift ;;\n"
		 "    --temp-directory) tmp=$2; shift ;;\n  esac\n  shift\ndone\n"
		 "FNRUN_WORKER_NO_HEALTH=1 exec %s --model sim --port \"$port\" --output-directory \"$out\""
		 " --temp-directory \"$tmp\"\n",
		 realpath(tu_bin("fnrun-worker"), bin));
	put(path, "main.py", text);
	/* fnrun-worker runs a prompt of built-in nodes in one go: the slow job is sim's, 2 s. */
	put(g.dir, "slow.json",
	    "{\"1\": {\"class_type\": \"SimTextEncode\", \"inputs\": {\"text\": \"slow\"}},"
	    " \"2\": {\"class_type\": \"SimSampler\", \"inputs\": {\"conditioning\": [\"1\", 0], \"seed\": 1,"
	    " \"steps\": 40, \"width\": 64, \"height\": 64, \"step_ms\": 50, \"fail\": \"none\"}},"
	    " \"3\": {\"class_type\": \"SaveImage\", \"inputs\": {\"images\": [\"2\", 0], \"filename_prefix\": \"s\"}}}");
	snprintf(cmd, sizeof cmd,
		 "FNRUN_BIN=%s COMFYUI_PYTHON=sh COMFYUI_CHECK_WORK=%s/work COMFYUI_CHECK_JOBS=5 "
		 "COMFYUI_CHECK_RUNS=3 COMFYUI_CHECK_IDLE=2 COMFYUI_CHECK_SLOW_WORKFLOW=%s/slow.json "
		 "COMFYUI_CHECK_SLOW_COLOR=2.inputs.seed scripts/comfyui-check %s >%s/check.txt 2>&1",
		 tu_bindir(), g.dir, g.dir, path, g.dir);
	rc = system(cmd);
	snprintf(path, sizeof path, "%s/check.txt", g.dir);
	out = tu_read_file(path, NULL);
	ck_assert_ptr_nonnull(out);
	tail = out + (strlen(out) > 2000 ? strlen(out) - 2000 : 0); /* Check's messages are short */
	ck_assert_msg(WIFEXITED(rc) && WEXITSTATUS(rc) == 3, "exit %d: %s", WEXITSTATUS(rc), tail);
	ck_assert_msg(strstr(out, "FAIL") == NULL, "%s", tail);
	for (size_t i = 0; i < sizeof passes / sizeof passes[0]; i++)
		ck_assert_msg(strstr(out, passes[i]) != NULL, "no \"%s\" in: %s", passes[i], tail);
	ck_assert_msg(strstr(out, "SKIP: idle stop frees GPU memory") != NULL, "%s", tail);
	free(out);
}
END_TEST

Suite *suite_comfyui(void)
{
	Suite *s = suite_create("comfyui");
	TCase *tc = tcase_create("gateway");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, comfyui_without_health_serves_cancels_and_restarts);
	tcase_add_test(tc, progress_from_progress_state_alone);
	tcase_add_test(tc, outputs_of_every_kind_are_kept);
	tcase_add_test(tc, free_after_job_posts_free_before_the_next_prompt);
	tcase_add_test(tc, oom_errors_in_pytorch_words);
	suite_add_tcase(s, tc);
	tc = tcase_create("registry");
	tcase_add_checked_fixture(tc, NULL, unit_teardown);
	tcase_add_test(tc, free_after_job_key);
	tcase_add_test(tc, registry_comfyui_example);
	suite_add_tcase(s, tc);
	tc = tcase_create("script");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 400);
	tcase_add_test(tc, comfyui_check_script_on_a_fake_comfyui);
	suite_add_tcase(s, tc);
	return s;
}
