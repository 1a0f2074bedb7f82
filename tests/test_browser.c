/*
 * test_browser.c - the web page (web/) and how it is served (static.c).
 *
 * "static": static_path() and static_content_type() directly, then
 * static_serve() behind a real HTTP server in a child process.
 * "page": a real `fnrun serve` with a small sim registry serves web/, and
 * tests/browser/page.test.mjs drives it in Debian's headless Chromium
 * (playwright-core): submit, live progress, a thumbnail, a reload, and the
 * friendly out-of-memory card whose button resubmits one quality lower, and
 * a Create Video card whose <video> shows its poster and really plays.
 * "page" also runs tests/browser/signin.test.mjs against a gateway with a
 * user key (made by `fnrun keys create` before it starts, given to the
 * script in FNRUN_PAGE_KEY): the sign-in form, a wrong key refused, the
 * right one signed in, an image made and shown through the cookie, sign-out.
 * Its screenshots go to $FNRUN_ARTIFACTS (default tests/browser/artifacts).
 */
#include <check.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

#include "gwtest.h"
#include "http.h"
#include "static.h"
#include "testutil.h"
#include "util.h"

#define PAGE_TEST "tests/browser/page.test.mjs"
#define SIGNIN_TEST "tests/browser/signin.test.mjs"
#define PAGE_TIMEOUT_MS 170000

static char root[600]; /* a web root made by the test */

static void put(const char *rel, const char *text)
{
	char path[900];

	snprintf(path, sizeof path, "%s/%s", root, rel);
	ck_assert_int_eq(tu_write_file(path, text, strlen(text)), 0);
}

/*
 * tmp/web: index.html, app.js, sub/index.html, .hidden, a symlink inside
 * and one leading out to tmp/secret.txt.
 */
static void static_setup(void)
{
	char path[900], target[900];

	snprintf(root, sizeof root, "%s/web", tu_tmpdir());
	ck_assert_int_eq(mkdir(root, 0755), 0);
	snprintf(path, sizeof path, "%s/sub", root);
	ck_assert_int_eq(mkdir(path, 0755), 0);
	put("index.html", "<!doctype html><title>t</title>");
	put("app.js", "'use strict';");
	put("sub/index.html", "sub");
	put(".hidden", "hidden");
	snprintf(path, sizeof path, "%s/secret.txt", tu_tmpdir());
	ck_assert_int_eq(tu_write_file(path, "secret", 6), 0);
	snprintf(target, sizeof target, "%s/out.txt", root);
	ck_assert_int_eq(symlink(path, target), 0);
	snprintf(target, sizeof target, "%s/in.js", root);
	ck_assert_int_eq(symlink("app.js", target), 0);
}

static void teardown(void)
{
	tu_rmrf(tu_tmpdir());
}

/* 1 when rel resolves under root to a path ending in want. */
static int resolves_to(const char *rel, const char *want)
{
	char out[PATH_MAX];

	if (static_path(root, rel, out, sizeof out) < 0)
		return 0;
	return util_ends_with(out, want);
}

START_TEST(content_types)
{
	ck_assert_str_eq(static_content_type("index.html"), "text/html; charset=utf-8");
	ck_assert_str_eq(static_content_type("a/app.js"), "text/javascript; charset=utf-8");
	ck_assert_str_eq(static_content_type("style.CSS"), "text/css; charset=utf-8");
	ck_assert_str_eq(static_content_type("x.png"), "image/png");
	ck_assert_str_eq(static_content_type("x.svg"), "image/svg+xml");
	ck_assert_str_eq(static_content_type("favicon.ico"), "image/x-icon");
	ck_assert_str_eq(static_content_type("m.json"), "application/json");
	ck_assert_str_eq(static_content_type("README"), "application/octet-stream");
	ck_assert_str_eq(static_content_type("a.d/file"), "application/octet-stream");
}
END_TEST

START_TEST(paths)
{
	char out[PATH_MAX];

	ck_assert(resolves_to("", "/web/index.html"));
	ck_assert(resolves_to("app.js", "/web/app.js"));
	ck_assert(resolves_to("sub/", "/web/sub/index.html"));
	ck_assert(resolves_to("in.js", "/web/app.js")); /* a symlink that stays inside */
	ck_assert_int_eq(static_path(root, "missing.js", out, sizeof out), -1);
	ck_assert_int_eq(static_path(root, "sub", out, sizeof out), -1); /* a directory */
	ck_assert_int_eq(static_path(root, "../secret.txt", out, sizeof out), -1);
	ck_assert_int_eq(static_path(root, "sub/../app.js", out, sizeof out), -1);
	ck_assert_int_eq(static_path(root, "/etc/passwd", out, sizeof out), -1);
	ck_assert_int_eq(static_path(root, "sub//index.html", out, sizeof out), -1);
	ck_assert_int_eq(static_path(root, "./app.js", out, sizeof out), -1);
	ck_assert_int_eq(static_path(root, ".hidden", out, sizeof out), -1);
	ck_assert_int_eq(static_path(root, "out.txt", out, sizeof out), -1); /* leaves root */
	ck_assert_int_eq(static_path(root, "app.js", out, 8), -1);           /* out too small */
}
END_TEST

/* ---- static_serve() behind a real server, in a child process ---- */

static void on_web(struct http_req *req)
{
	static_serve(req, root, http_req_param(req));
}

static const struct http_route web_routes[] = {
	{"GET", "/", on_web, HTTP_ROUTE_PREFIX, 0},
};

static pid_t serve_root(int port)
{
	pid_t pid = fork();

	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		uv_loop_t loop;
		struct err err = {0};
		struct http_config cfg = {.host = "127.0.0.1", .port = port, .routes = web_routes,
					  .nroutes = 1};

		/* It dies with the test, even one that failed before killing it. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		uv_loop_init(&loop);
		if (http_server_new(&loop, &cfg, &err) == NULL)
			_exit(3);
		uv_run(&loop, UV_RUN_DEFAULT);
		_exit(0);
	}
	return pid;
}

static void get(int port, const char *path, struct tu_resp *r)
{
	ck_assert_int_eq(tu_http(port, "GET", path, NULL, NULL, 0, r), 0);
}

static void assert_not_found(int port, const char *path)
{
	struct tu_resp r;

	get(port, path, &r);
	ck_assert_msg(r.status == 404, "%s answered %d", path, r.status);
	ck_assert_ptr_nonnull(strstr(r.body, "\"code\": \"NOT_FOUND\""));
	ck_assert_ptr_nonnull(strstr(tu_resp_header(&r, "content-type"), "application/json"));
	ck_assert_ptr_null(strstr(r.body, "secret"));
	tu_resp_free(&r);
}

START_TEST(serve)
{
	int port = tu_free_port();
	pid_t pid = serve_root(port);
	struct tu_resp r;

	ck_assert_int_eq(tu_wait_http(port, "/", 200, 5000), 0);
	get(port, "/", &r);
	ck_assert_int_eq(r.status, 200);
	ck_assert_str_eq(r.body, "<!doctype html><title>t</title>");
	ck_assert_str_eq(tu_resp_header(&r, "content-type"), "text/html; charset=utf-8");
	ck_assert_str_eq(tu_resp_header(&r, "x-content-type-options"), "nosniff");
	ck_assert_ptr_nonnull(strstr(tu_resp_header(&r, "content-security-policy"),
				     "default-src 'self'"));
	tu_resp_free(&r);

	get(port, "/app.js", &r);
	ck_assert_int_eq(r.status, 200);
	ck_assert_str_eq(tu_resp_header(&r, "content-type"), "text/javascript; charset=utf-8");
	tu_resp_free(&r);

	get(port, "/sub/", &r);
	ck_assert_str_eq(r.body, "sub");
	tu_resp_free(&r);

	assert_not_found(port, "/missing.css");
	assert_not_found(port, "/../secret.txt");
	assert_not_found(port, "/%2e%2e/secret.txt");
	assert_not_found(port, "/sub/%2e%2e/%2e%2e/secret.txt");
	assert_not_found(port, "//etc/passwd");
	assert_not_found(port, "/out.txt");
	assert_not_found(port, "/.hidden");
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
}
END_TEST

/* ---- the page in a browser ---- */

static struct gw g;

static const char page_registry[] =
	"functions:\n"
	"  Create Image:\n"
	"    description: Make a picture from a text description.\n"
	"    output: image\n"
	"    params:\n"
	"      prompt: {type: string, required: true, max_length: 200, description: What to draw}\n"
	"      width: {type: int, default: 192, min: 16, max: 512}\n"
	"      seed: {type: int, default: random}\n"
	"    messages: {preparing: Preparing your canvas..., running: Creating your image...,"
	" done: Your image is ready}\n"
	"    qualities:\n"
	"      low: {label: Fast Preview, typical_seconds: [1, 2]}\n"
	"      standard: {label: Balanced, typical_seconds: [2, 5]}\n"
	"    default_quality: low\n"
	"  Create Video:\n"
	"    description: Make a short video clip from a text description.\n"
	"    output: video\n"
	"    params:\n"
	"      prompt: {type: string, required: true, max_length: 200, description: What the video shows}\n"
	"      seconds: {type: int, default: 2, min: 1, max: 10}\n"
	"      fps: {type: int, default: 12, min: 8, max: 30}\n"
	"    messages: {running: Filming your video..., done: Your video is ready}\n"
	"    qualities:\n"
	"      low: {label: Fast Preview, typical_seconds: [1, 3]}\n"
	"models:\n"
	/* 10 steps of 150 ms: slow enough to be seen running. */
	"  img_low:\n"
	"    function: Create Image\n"
	"    quality: low\n"
	"    runtime: process\n"
	"    command: [\"{bindir}/fnrun-worker\", --model, sim, --step-ms, \"150\", --port, \"{port}\"]\n"
	"    workflow: wf-none.json\n"
	"    bind: {prompt: \"1.inputs.text\", width: \"2.inputs.width\", seed: \"2.inputs.seed\"}\n"
	"    idle_timeout: 60s\n"
	"    start_timeout: 20s\n"
	/* Its workflow makes SimSampler fail with a CUDA out-of-memory error. */
	"  img_std:\n"
	"    function: Create Image\n"
	"    quality: standard\n"
	"    runtime: process\n"
	"    command: [\"{bindir}/fnrun-worker\", --model, sim, --step-ms, \"20\", --port, \"{port}\"]\n"
	"    workflow: wf-oom.json\n"
	"    bind: {prompt: \"1.inputs.text\", width: \"2.inputs.width\", seed: \"2.inputs.seed\"}\n"
	"    idle_timeout: 60s\n"
	"    start_timeout: 20s\n"
	/* 192x108 frames, 20 ms each, then CreateVideo and SaveVideo (ffmpeg). */
	"  video_low:\n"
	"    function: Create Video\n"
	"    quality: low\n"
	"    runtime: process\n"
	"    command: [\"{bindir}/fnrun-worker\", --model, sim, --step-ms, \"20\", --port, \"{port}\"]\n"
	"    workflow: wf-video.json\n"
	"    bind: {prompt: \"1.inputs.text\", seconds: \"2.inputs.seconds\","
	" fps: [\"2.inputs.fps\", \"3.inputs.fps\"]}\n"
	"    idle_timeout: 60s\n"
	"    start_timeout: 20s\n";

/* dir/wf-video.json: examples/workflows/sim-video.json's layout, 192x108. */
static const char video_workflow[] =
	"{\"1\": {\"class_type\": \"SimTextEncode\", \"inputs\": {\"text\": \"x\"}},"
	" \"2\": {\"class_type\": \"SimVideoSampler\", \"inputs\": {\"conditioning\": [\"1\", 0],"
	" \"seed\": 3, \"seconds\": 2, \"fps\": 12, \"width\": 192, \"height\": 108,"
	" \"step_ms\": -1, \"fail\": \"none\"}},"
	" \"3\": {\"class_type\": \"CreateVideo\", \"inputs\": {\"images\": [\"2\", 0], \"fps\": 12}},"
	" \"4\": {\"class_type\": \"SaveVideo\", \"inputs\": {\"video\": [\"3\", 0],"
	" \"filename_prefix\": \"video\", \"format\": \"auto\", \"codec\": \"auto\"}}}";

/* dir/wf-<fail>.json: sim-image.json's layout, 192x192, SimSampler's fail input set. */
static void write_page_workflow(const char *fail)
{
	char path[512], text[1024];

	snprintf(text, sizeof text,
		 "{\"1\": {\"class_type\": \"SimTextEncode\", \"inputs\": {\"text\": \"x\"}},"
		 " \"2\": {\"class_type\": \"SimSampler\", \"inputs\": {\"conditioning\": [\"1\", 0],"
		 " \"seed\": 1, \"steps\": 10, \"width\": 192, \"height\": 192, \"step_ms\": -1,"
		 " \"fail\": \"%s\"}},"
		 " \"3\": {\"class_type\": \"SaveImage\", \"inputs\": {\"images\": [\"2\", 0],"
		 " \"filename_prefix\": \"web\"}}}",
		 fail);
	snprintf(path, sizeof path, "%s/wf-%s.json", g.dir, fail);
	ck_assert_int_eq(tu_write_file(path, text, strlen(text)), 0);
}

static void page_setup(void)
{
	memset(&g, 0, sizeof g);
	snprintf(g.dir, sizeof g.dir, "%s", tu_tmpdir());
}

static void page_teardown(void)
{
	if (g.pid > 0)
		gw_stop(&g, 8000);
	tu_rmrf(tu_tmpdir());
}

/* What the page test needs; a clear failure instead of a confusing one. */
static void need(const char *path, const char *what)
{
	ck_assert_msg(access(path, F_OK) == 0, "%s missing (%s): run scripts/install-deps", what,
		      path);
}

/* Prints a log to stderr, so a failure explains itself in the test output. */
static void print_log(const char *title, const char *path)
{
	char *text = tu_read_file(path, NULL);

	fprintf(stderr, "---- %s ----\n%s---- end ----\n", title, text ? text : "(no output)\n");
	free(text);
}

/* A new user key named name in g's data dir, made before the gateway starts; caller frees. */
static char *make_user_key(const char *name)
{
	char data[512], log[512];
	char *argv[] = {(char *)tu_bin("fnrun"), "keys", "create", "--scope", "user", "--name",
			(char *)name, "--data", data, NULL};
	char *out, *k, *key;
	pid_t pid;
	int status;

	snprintf(data, sizeof data, "%s/data", g.dir);
	snprintf(log, sizeof log, "%s/keys.out", g.dir);
	pid = tu_spawn(argv, log);
	ck_assert_int_gt(pid, 0);
	status = tu_wait_exit(pid, 10000);
	out = tu_read_file(log, NULL);
	ck_assert_msg(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0,
		      "fnrun keys create failed: %s", out ? out : "(no output)");
	k = out ? strstr(out, "fnr_") : NULL;
	ck_assert_msg(k != NULL, "fnrun keys create printed no key: %s", out ? out : "");
	key = strndup(k, strcspn(k, " \t\r\n"));
	free(out);
	return key;
}

/*
 * Starts a gateway on page_registry and runs script (node) against it, with
 * FNRUN_PAGE_KEY set to key when there is one.
 */
static void run_page_script(const char *script, const char *key)
{
	char web[PATH_MAX], url[64], log[512], gwlog[512], wf[512];
	char *argv[] = {"/usr/bin/env", "node", (char *)script, NULL};
	int status, gw_status;
	pid_t node;

	need("/usr/bin/chromium", "Debian chromium");
	need("tests/browser/node_modules/playwright-core/package.json", "npm playwright-core");
	ck_assert_ptr_nonnull(realpath("web", web));
	need("/usr/bin/ffmpeg", "Debian ffmpeg");
	write_page_workflow("none");
	write_page_workflow("oom");
	snprintf(wf, sizeof wf, "%s/wf-video.json", g.dir);
	ck_assert_int_eq(tu_write_file(wf, video_workflow, strlen(video_workflow)), 0);
	gw_write_registry(&g, page_registry);
	/* The gateway serves web/ of this checkout, wherever its binary is. */
	setenv("FNRUN_WEB", web, 1);
	gw_start(&g);
	snprintf(url, sizeof url, "http://127.0.0.1:%d/", g.port);
	setenv("FNRUN_URL", url, 1);
	if (key)
		setenv("FNRUN_PAGE_KEY", key, 1);
	snprintf(log, sizeof log, "%s/page-test.log", g.dir);
	snprintf(gwlog, sizeof gwlog, "%s/gateway.log", g.dir);
	node = tu_spawn(argv, log);
	ck_assert_int_gt(node, 0);
	status = tu_wait_exit(node, PAGE_TIMEOUT_MS);
	if (status == -1)
		tu_stop(node, 5000); /* SIGTERM first: playwright closes its browser */
	/*
	 * Everything stops before any assertion: a failed assertion ends this
	 * process without the teardown. Under ASan a leak or an error makes the
	 * gateway's exit status non-zero.
	 */
	gw_status = gw_stop(&g, 8000);
	print_log(script, log);
	if (gw_status == -1 || !WIFEXITED(gw_status) || WEXITSTATUS(gw_status) != 0)
		print_log("fnrun serve", gwlog);
	ck_assert_msg(status != -1, "%s did not finish in %d s", script, PAGE_TIMEOUT_MS / 1000);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		      "%s failed (exit status %d); its output is above", script,
		      WIFEXITED(status) ? WEXITSTATUS(status) : -1);
	ck_assert_msg(gw_status != -1 && WIFEXITED(gw_status) && WEXITSTATUS(gw_status) == 0,
		      "fnrun serve did not stop cleanly (status %d); its log is above", gw_status);
}

START_TEST(page_in_chromium)
{
	run_page_script(PAGE_TEST, NULL);
}
END_TEST

/* The same page behind a key: sign in, make an image, sign out. */
START_TEST(signin_in_chromium)
{
	char *key = make_user_key("alice");

	run_page_script(SIGNIN_TEST, key);
	free(key);
}
END_TEST

Suite *suite_browser(void)
{
	Suite *s = suite_create("browser");
	TCase *st = tcase_create("static");
	TCase *pg = tcase_create("page");

	tcase_add_checked_fixture(st, static_setup, teardown);
	tcase_set_timeout(st, 30);
	tcase_add_test(st, content_types);
	tcase_add_test(st, paths);
	tcase_add_test(st, serve);
	suite_add_tcase(s, st);

	tcase_add_checked_fixture(pg, page_setup, page_teardown);
	tcase_set_timeout(pg, PAGE_TIMEOUT_MS / 1000 + 30);
	tcase_add_test(pg, page_in_chromium);
	tcase_add_test(pg, signin_in_chromium);
	suite_add_tcase(s, pg);
	return s;
}
