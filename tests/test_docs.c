/*
 * test_docs.c - docs from metadata: what a model server's /object_info
 * says of the inputs a registry binds but does not describe reaches GET
 * /api/functions and `fnrun functions` (nodeinfo.c, modelinfo.c), is kept
 * across a restart, and `fnrun docs` writes the users' and operators'
 * pages from it (cli_docs.c). A server whose answer is malformed or too
 * large changes nothing. The rules that merge several models' inputs are
 * unit-tested on hand-made summaries.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "gwtest.h"
#include "json.h"
#include "log.h"
#include "nodeinfo.h"
#include "registry.h"
#include "testutil.h"

#define WAIT_MS 30000

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

/* ---- the merge rules, on hand-made summaries ---- */

static struct json_object *summaries[3]; /* models ma, mb, mc */

static struct json_object *lookup(const char *id, void *ud)
{
	return id[0] == 'm' && id[1] >= 'a' && id[1] <= 'c' && id[2] == '\0' ? summaries[id[1] - 'a']
									       : NULL;
}

static void write_in(const char *name, const char *text)
{
	char path[512];

	snprintf(path, sizeof path, "%s/%s", tu_tmpdir(), name);
	ck_assert_int_eq(tu_write_file(path, text, strlen(text)), 0);
}

static struct json_object *parse(const char *text)
{
	struct json_object *o = NULL;
	struct err e = {0};

	ck_assert_msg(json_parse(text, strlen(text), 32, &o, &e) == 0, "%s", e.msg);
	return o;
}

#define MODEL(id, wf, extra)                                                                   \
	"  " id ":\n    function: F\n    quality: low\n    command: [x, \"{port}\"]\n"          \
	"    workflow: " wf "\n    bind: {steps: \"1.inputs.steps\", mode: \"1.inputs.mode\","   \
	" cfg: \"1.inputs.cfg\"" extra "}\n"

START_TEST(several_models_merge_field_by_field)
{
	struct err e = {0};
	struct registry *r;
	struct json_object *cat, *ps, *p;
	char path[512];

	write_in("wa.json", "{\"1\": {\"class_type\": \"S\", \"inputs\": {\"steps\": 8, \"mode\": \"b\","
			    " \"cfg\": 7.5, \"k\": 9}}}");
	write_in("wb.json", "{\"1\": {\"class_type\": \"S\", \"inputs\": {\"steps\": 12, \"mode\": \"b\","
			    " \"cfg\": 7.5}}}");
	write_in("reg.yaml", "functions:\n  F:\n    params:\n"
			     "      steps: {type: int}\n      mode: {type: string}\n"
			     "      cfg: {type: float}\n"
			     "      kept: {type: int, min: 3, max: 50, description: Ours}\n"
			     "    qualities:\n      low: {label: Low, typical_seconds: [1, 2]}\n"
			     "models:\n" MODEL("ma", "wa.json", ", kept: \"1.inputs.k\"")
				     MODEL("mb", "wb.json", "") MODEL("mc", "wb.json", "")
			     "    enabled: false\n");
	snprintf(path, sizeof path, "%s/reg.yaml", tu_tmpdir());
	r = registry_load(path, &e);
	ck_assert_msg(r != NULL, "%s", e.msg);
	summaries[0] = parse("{\"used\": {\"S\": {\"inputs\": {"
			     "\"steps\": {\"type\": \"INT\", \"min\": 1, \"max\": 100, \"tooltip\": \"How many steps.\"},"
			     "\"mode\": {\"type\": \"COMBO\", \"options\": [\"a\", \"b\", \"mb\", \"c\", \"x/y.safetensors\"],"
			     " \"tooltip\": \"Reads model.safetensors\"},"
			     "\"cfg\": {\"type\": \"FLOAT\", \"min\": 0.5, \"max\": 30, \"default\": 7.5},"
			     "\"k\": {\"type\": \"INT\", \"min\": 1, \"max\": 100, \"tooltip\": \"K.\"}}}}}");
	summaries[1] = parse("{\"used\": {\"S\": {\"inputs\": {"
			     "\"steps\": {\"type\": \"INT\", \"min\": 5, \"max\": 200, \"tooltip\": \"Steps of b.\"},"
			     "\"mode\": {\"type\": \"COMBO\", \"options\": [\"b\", \"c\", \"mb\", \"d\"]},"
			     "\"cfg\": {\"type\": \"FLOAT\", \"min\": 1, \"max\": 20}}}}}");
	/* mc is disabled: its narrower range does not count. */
	summaries[2] = parse("{\"used\": {\"S\": {\"inputs\": {"
			     "\"steps\": {\"type\": \"INT\", \"min\": 50, \"max\": 60}}}}}");
	cat = registry_catalog(r);
	nodeinfo_enrich(cat, r, lookup, NULL);
	ps = json_get_obj(json_object_array_get_idx(json_get_arr(cat, "functions"), 0), "params");

	p = json_get_obj(ps, "steps");
	/* The first model's words; the range every enabled model takes; no default (8 or 12). */
	ck_assert_str_eq(json_get_str(p, "description"), "How many steps.");
	ck_assert_int_eq(json_get_int(p, "min", -1), 5);
	ck_assert_int_eq(json_get_int(p, "max", -1), 100);
	ck_assert_ptr_null(json_get(p, "default"));

	/*
	 * The choices both accept, but a model's name (mb) or a path; a tooltip naming a
	 * file is no description.
	 */
	p = json_get_obj(ps, "mode");
	ck_assert_str_eq(json_object_to_json_string_ext(json_get(p, "options"), JSON_C_TO_STRING_PLAIN),
			 "[\"b\",\"c\"]");
	ck_assert_ptr_null(json_get(p, "description"));
	ck_assert_str_eq(json_get_str(p, "default"), "b");

	/* What runs when it is not given: both workflows' 7.5. */
	p = json_get_obj(ps, "cfg");
	ck_assert(json_object_get_double(json_get(p, "default")) == 7.5);
	ck_assert(json_object_get_double(json_get(p, "min")) == 1.0);
	ck_assert(json_object_get_double(json_get(p, "max")) == 20.0);

	/* The registry's own fields stay; only the default it leaves empty comes from ma. */
	p = json_get_obj(ps, "kept");
	ck_assert_str_eq(json_get_str(p, "description"), "Ours");
	ck_assert_int_eq(json_get_int(p, "min", -1), 3);
	ck_assert_int_eq(json_get_int(p, "max", -1), 50);
	ck_assert_int_eq(json_get_int(p, "default", -1), 9);

	json_object_put(cat);
	for (int i = 0; i < 3; i++)
		json_object_put(summaries[i]);
	registry_unref(r);
}
END_TEST

/* A hostile answer is cut down: long texts, many choices, non-finite bounds, many classes. */
START_TEST(summary_keeps_what_is_needed_and_bounded)
{
	struct buf b;
	struct json_object *answer = NULL, *s, *in;
	struct err e = {0};
	const char *used[] = {"Big", "Big", "Gone"};

	buf_init(&b, 64u << 20);
	buf_puts(&b, "{\"Big\": {\"display_name\": \"Big One\", \"input\": {\"required\": {\"x\": [[");
	for (int i = 0; i < 300; i++)
		buf_printf(&b, "%s\"o%d\"", i ? ", " : "", i);
	buf_puts(&b, "], {\"tooltip\": \"");
	for (int i = 0; i < 3000; i++)
		buf_puts(&b, "ab");
	buf_puts(&b, "\"}]}, \"optional\": {\"y\": [\"FLOAT\", {\"min\": -Infinity, \"max\": NaN,"
		     " \"step\": 0.5}], \"z\": \"IMAGE\"}}}");
	for (int i = 0; i < NODEINFO_MAX_NAMES + 5; i++)
		buf_printf(&b, ", \"C%d\": {}", i);
	buf_puts(&b, "}");
	ck_assert_msg(nodeinfo_parse(b.data, b.len, &answer, &e) == 0, "%s", e.msg);
	s = nodeinfo_summary(answer, used, 3);
	ck_assert_int_eq(json_get_int(s, "classes", 0), NODEINFO_MAX_NAMES + 6);
	ck_assert_uint_eq(json_object_array_length(json_get_arr(s, "names")), NODEINFO_MAX_NAMES);
	ck_assert(json_get_bool(s, "names_cut", 0));
	ck_assert_str_eq(json_object_to_json_string_ext(json_get(s, "missing"), JSON_C_TO_STRING_PLAIN),
			 "[\"Gone\"]");
	in = nodeinfo_summary_input(s, "Big", "x");
	ck_assert_str_eq(json_get_str(in, "type"), "COMBO");
	ck_assert_uint_eq(strlen(json_get_str(in, "tooltip")), NODEINFO_MAX_TEXT);
	ck_assert_uint_eq(json_object_array_length(json_get_arr(in, "options")), NODEINFO_MAX_OPTIONS);
	ck_assert(json_get_bool(in, "options_cut", 0));
	in = nodeinfo_summary_input(s, "Big", "y");
	ck_assert_int_eq(json_get_bool(in, "required", 1), 0);
	ck_assert_ptr_null(json_get(in, "min"));
	ck_assert_ptr_null(json_get(in, "max"));
	ck_assert(json_object_get_double(json_get(in, "step")) == 0.5);
	ck_assert_str_eq(json_get_str(nodeinfo_summary_input(s, "Big", "z"), "type"), "IMAGE");
	/* Not JSON, or not an object: refused. */
	json_object_put(answer);
	ck_assert_int_eq(nodeinfo_parse("{\"a\": ", 6, &answer, &e), -1);
	ck_assert_int_eq(nodeinfo_parse("[1]", 3, &answer, &e), -1);
	ck_assert_ptr_null(answer);
	json_object_put(s);
	buf_cleanup(&b);
}
END_TEST

/* ---- through a real gateway ---- */

/*
 * Create Image with params the registry leaves undescribed, bound to the
 * sim's SimSampler (its tooltips, ranges and fail choices in /object_info),
 * at two qualities; models is the models section.
 */
static void registry_with(const char *models)
{
	char text[8192];

	snprintf(text, sizeof text,
		 "functions:\n"
		 "  Create Image:\n"
		 "    description: Make a picture from a text description.\n"
		 "    output: image\n"
		 "    params:\n"
		 "      prompt: {type: string, required: true, description: What to draw}\n"
		 "      seed: {type: int}\n"
		 "      pause: {type: int}\n"
		 "      mode: {type: string}\n"
		 "      size: {type: int, max: 1024, description: Width and height in pixels}\n"
		 "    qualities:\n"
		 "      low: {label: Fast Preview, typical_seconds: [1, 3]}\n"
		 "      high: {label: Maximum Detail, typical_seconds: [4, 10]}\n"
		 "models:\n%s", models);
	gw_write_registry(&g, text);
}

#define BINDS                                                                                  \
	"    workflow: wf.json\n"                                                               \
	"    bind: {prompt: \"1.inputs.text\", seed: \"2.inputs.seed\", pause: \"2.inputs.step_ms\",\n" \
	"           mode: \"2.inputs.fail\", size: [\"2.inputs.width\", \"2.inputs.height\"]}\n"
#define SIM_MODEL(id, quality)                                                                 \
	"  " id ":\n    function: Create Image\n    quality: " quality "\n"                     \
	"    command: [\"{bindir}/fnrun-worker\", --model, sim, --step-ms, \"0\", --port, \"{port}\"]\n" BINDS

static struct json_object *catalog_params(void)
{
	struct json_object *cat = gw_json(&g, "GET", "/api/functions", NULL, NULL), *p, *copy = NULL;

	ck_assert_ptr_nonnull(cat);
	p = json_get_obj(json_object_array_get_idx(json_get_arr(cat, "functions"), 0), "params");
	ck_assert_ptr_nonnull(p);
	json_object_deep_copy(p, &copy, NULL);
	json_object_put(cat);
	return copy;
}

/* Waits until the gateway's log holds needle more than `before` times. */
static void wait_log(const char *needle, int before)
{
	int64_t deadline = tu_now_ms() + WAIT_MS;

	while (gw_log_count(&g, needle) <= before) {
		if (tu_now_ms() > deadline) {
			char *text = gw_log(&g);
			size_t n = strlen(text);

			ck_abort_msg("no \"%s\" in the log: ...%s", needle, text + (n > 1500 ? n - 1500 : 0));
		}
		gw_sleep_ms(20);
	}
}

static void run_one_job(const char *quality)
{
	char *id = gw_submit(&g, quality, "a lighthouse");

	json_object_put(gw_wait_status(&g, id, "completed", WAIT_MS));
	free(id);
}

/* What the sim's /object_info says, as the catalog shows it. */
static void assert_described(struct json_object *ps)
{
	struct json_object *p = json_get_obj(ps, "seed");

	ck_assert_str_eq(json_get_str(p, "description") ? json_get_str(p, "description") : "(none)",
			 "The random seed used for creating the picture.");
	ck_assert_int_eq(json_get_int(p, "min", -7), 0);
	ck_assert_ptr_null(json_get(p, "max")); /* 2^64-1 is no int the API takes */
	ck_assert_int_eq(json_get_int(p, "default", -7), 1); /* what wf.json runs */
	p = json_get_obj(ps, "pause");
	ck_assert_int_eq(json_get_int(p, "min", 0), -1);
	ck_assert_int_eq(json_get_int(p, "max", 0), 600000);
	ck_assert_ptr_nonnull(strstr(json_get_str(p, "description"), "Milliseconds per step"));
	p = json_get_obj(ps, "mode");
	ck_assert_str_eq(json_object_to_json_string_ext(json_get(p, "options"), JSON_C_TO_STRING_PLAIN),
			 "[\"none\",\"oom\",\"error\",\"crash\",\"hang\"]");
	ck_assert_ptr_null(json_get(p, "description")); /* its tooltip names CUDA */
	p = json_get_obj(ps, "size");
	ck_assert_int_eq(json_get_int(p, "min", 0), 16);
	ck_assert_int_eq(json_get_int(p, "max", 0), 1024);
	ck_assert_str_eq(json_get_str(p, "description"), "Width and height in pixels");
}

/* The registry's own words only. */
static void assert_undescribed(struct json_object *ps)
{
	static const char *const names[] = {"seed", "pause", "mode"};

	for (size_t i = 0; i < 3; i++) {
		struct json_object *p = json_get_obj(ps, names[i]);

		ck_assert_msg(json_object_object_length(p) == 2, "params.%s: %s", names[i],
			      json_object_to_json_string(p));
	}
	ck_assert_ptr_null(json_get(json_get_obj(ps, "size"), "min"));
}

static char *run_cli(const char *const *args, int *status)
{
	char server[64], out[512];
	char *argv[12] = {(char *)tu_bin("fnrun")};
	int n = 1, st;
	pid_t pid;
	char *text;

	for (; args[n - 1] != NULL && n < 9; n++)
		argv[n] = (char *)args[n - 1];
	snprintf(server, sizeof server, "http://127.0.0.1:%d", g.port);
	argv[n++] = "--server";
	argv[n++] = server;
	argv[n] = NULL;
	snprintf(out, sizeof out, "%s/cli.out", g.dir);
	unlink(out);
	pid = tu_spawn(argv, out);
	ck_assert_int_gt(pid, 0);
	st = tu_wait_exit(pid, WAIT_MS);
	*status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
	text = tu_read_file(out, NULL);
	return text ? text : strdup("");
}

START_TEST(catalog_takes_what_registry_leaves_and_keeps_it_across_restart)
{
	struct json_object *ps, *cat;
	const char *functions[] = {"functions", NULL};
	char *text;
	int status;

	registry_with(SIM_MODEL("img_low", "low") SIM_MODEL("img_high", "high"));
	gw_start(&g);
	/* Before any model server was read, the registry's words only. */
	ps = catalog_params();
	assert_undescribed(ps);
	json_object_put(ps);
	run_one_job("low");
	wait_log("model server nodes read model=img_low", 0);
	ps = catalog_params();
	assert_described(ps);
	json_object_put(ps);
	/* Users see no model, class or server; low has a measured time, high not yet. */
	cat = gw_json(&g, "GET", "/api/functions", NULL, NULL);
	text = strdup(json_object_to_json_string(cat));
	ck_assert_msg(!strstr(text, "img_") && !strstr(text, "Sim") &&
		      !strstr(text, "fnrun-worker") && !strstr(text, "CUDA"), "%s", text);
	ck_assert_msg(strstr(text, "\"key\": \"low\"") && strstr(text, "\"measured_seconds\": null"),
		      "%s", text);
	free(text);
	json_object_put(cat);
	text = run_cli(functions, &status);
	ck_assert_msg(status == 0 && strstr(text, "-1..600000") &&
		      strstr(text, "The random seed used for creating the picture.") &&
		      strstr(text, "one of: none, oom, error, crash, hang") && strstr(text, "about "),
		      "fnrun functions (%d):\n%s", status, text);
	free(text);

	/* A restart: there before any runner starts. */
	ck_assert_int_eq(gw_stop(&g, 15000), 0);
	gw_start(&g);
	ck_assert_int_eq(gw_runner_count(&g, NULL), 0);
	ps = catalog_params();
	assert_described(ps);
	json_object_put(ps);
	ck_assert_int_eq(gw_runner_count(&g, NULL), 0);
}
END_TEST

/* file under g.dir/out as text ("" when missing); caller frees. */
static char *out_file(const char *rel)
{
	char path[600];
	char *text;

	snprintf(path, sizeof path, "%s/%s", g.dir, rel);
	text = tu_read_file(path, NULL);
	return text ? text : strdup("");
}

static void assert_has(const char *what, const char *text, const char *const *want, int present)
{
	for (size_t i = 0; want[i] != NULL; i++)
		ck_assert_msg((strstr(text, want[i]) != NULL) == present, "%s %s \"%s\":\n%s", what,
			      present ? "lacks" : "has", want[i], text);
}

START_TEST(docs_writes_function_and_model_pages)
{
	static const char *const user_has[] = {
		"# Create Image", "Make a picture from a text description.", "Fast Preview",
		"Maximum Detail", "(measured)", "4 to 10 s (expected)", "-1 to 600000", "16 to 1024",
		"one of: none, oom, error, crash, hang", "The random seed used for creating the picture.",
		"fnrun submit \"Create Image\"", NULL};
	static const char *const user_lacks[] = {"img\\_low", "img_low", "img_high", "Sim",
						 "fnrun-worker", "CUDA", NULL};
	static const char *const model_has[] = {
		"# Model img\\_low", "SimTextEncode", "SimSampler (Sim Sampler)", "SaveImage",
		"| width | INT | yes | 16 to 4096 | 512 | size |", "Classes its server offers (13)",
		"EmptyImage", "runtime | process", NULL};
	const char *md[] = {"docs", "--out", NULL, NULL}, *html[] = {"docs", "--out", NULL, "--format",
								     "html", NULL};
	char out[600], out_html[600], foreign[700];
	char *text;
	int status;

	registry_with(SIM_MODEL("img_low", "low") SIM_MODEL("img_high", "high"));
	gw_start(&g);
	run_one_job("low");
	wait_log("model server nodes read model=img_low", 0);
	snprintf(out, sizeof out, "%s/out", g.dir);
	snprintf(out_html, sizeof out_html, "%s/out-html", g.dir);
	md[2] = out;
	html[2] = out_html;
	text = run_cli(md, &status);
	ck_assert_msg(status == 0 && strstr(text, "out/create-image.md") &&
		      strstr(text, "out/models/img_low.md") && strstr(text, "out/index.md"),
		      "fnrun docs (%d):\n%s", status, text);
	free(text);
	text = out_file("out/create-image.md");
	assert_has("create-image.md", text, user_has, 1);
	assert_has("create-image.md", text, user_lacks, 0);
	free(text);
	text = out_file("out/index.md");
	ck_assert_msg(strstr(text, "[Create Image](create-image.md)") && !strstr(text, "img_"), "%s",
		      text);
	free(text);
	text = out_file("out/models/img_low.md");
	assert_has("models/img_low.md", text, model_has, 1);
	free(text);
	/* A model whose server was never read says so. */
	text = out_file("out/models/img_high.md");
	ck_assert_msg(strstr(text, "not yet: when its first runner is ready"), "%s", text);
	free(text);

	text = run_cli(html, &status);
	ck_assert_int_eq(status, 0);
	free(text);
	text = out_file("out-html/create-image.html");
	ck_assert_msg(strstr(text, "<!DOCTYPE html>") && strstr(text, "<td>Fast Preview</td>") &&
		      strstr(text, "<td>-1 to 600000</td>") && !strstr(text, "img_"), "%s", text);
	free(text);

	/* Its own pages are replaced; another file is not, and then nothing is written. */
	snprintf(foreign, sizeof foreign, "%s/create-image.md", out);
	ck_assert_int_eq(tu_write_file(foreign, "my notes\n", 9), 0);
	snprintf(foreign, sizeof foreign, "%s/index.md", out);
	ck_assert_int_eq(unlink(foreign), 0);
	text = run_cli(md, &status);
	ck_assert_msg(status == 1 && strstr(text, "was not written by fnrun docs"), "(%d) %s", status,
		      text);
	free(text);
	text = out_file("out/create-image.md");
	ck_assert_str_eq(text, "my notes\n");
	free(text);
	ck_assert_int_eq(access(foreign, F_OK), -1);
	text = run_cli(html, &status);
	ck_assert_int_eq(status, 0);
	free(text);
}
END_TEST

/* ---- a model server whose /object_info answer is spoiled on the way ---- */

enum { PX_PASS, PX_MALFORMED, PX_HUGE };

#define PX_HUGE_BYTES (40u << 20) /* over MODELINFO_MAX_BYTES */

struct proxy {
	int lfd, port, upstream;
	volatile int mode;
	pthread_t accept_thread;
};

struct px_conn {
	struct proxy *p;
	int fd;
};

static void px_answer(int fd, int mode)
{
	static const char bad[] = "{\"SimSampler\": {\"input\": {\"required\": ";
	char head[256], chunk[65536];

	snprintf(head, sizeof head, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
		 "Content-Length: %zu\r\nConnection: close\r\n\r\n",
		 mode == PX_HUGE ? (size_t)PX_HUGE_BYTES : sizeof bad - 1);
	if (tu_write_all(fd, head, strlen(head)) < 0)
		return;
	if (mode == PX_MALFORMED) {
		tu_write_all(fd, bad, sizeof bad - 1);
		return;
	}
	memset(chunk, ' ', sizeof chunk);
	for (size_t sent = 0; sent < PX_HUGE_BYTES; sent += sizeof chunk)
		if (tu_write_all(fd, chunk, sizeof chunk) < 0)
			return; /* the gateway stopped reading: what it should do */
}

/* Passes bytes both ways; a request for /object_info is answered here when the mode says. */
static void *px_serve(void *arg)
{
	struct px_conn *c = arg;
	int up = -1;
	char buf[65536];

	for (;;) {
		struct pollfd fds[2] = {{c->fd, POLLIN, 0}, {up, POLLIN, 0}};
		ssize_t n;

		if (poll(fds, up >= 0 ? 2 : 1, -1) < 0 && errno != EINTR)
			break;
		if (fds[0].revents) {
			n = recv(c->fd, buf, sizeof buf, 0);
			if (n <= 0)
				break;
			if (c->p->mode != PX_PASS && n >= 16 && memcmp(buf, "GET /object_info", 16) == 0) {
				px_answer(c->fd, c->p->mode);
				break;
			}
			if (up < 0)
				up = tu_connect(c->p->upstream);
			if (up < 0 || tu_write_all(up, buf, (size_t)n) < 0)
				break;
		}
		if (up >= 0 && fds[1].revents) {
			n = recv(up, buf, sizeof buf, 0);
			if (n <= 0 || tu_write_all(c->fd, buf, (size_t)n) < 0)
				break;
		}
	}
	if (up >= 0)
		close(up);
	close(c->fd);
	free(c);
	return NULL;
}

static void *px_accept(void *arg)
{
	struct proxy *p = arg;

	for (;;) {
		int fd = accept(p->lfd, NULL, NULL);
		struct px_conn *c;
		pthread_t t;

		if (fd < 0)
			return NULL; /* closed: px_stop() */
		c = malloc(sizeof *c);
		c->p = p;
		c->fd = fd;
		if (pthread_create(&t, NULL, px_serve, c) != 0) {
			close(fd);
			free(c);
			continue;
		}
		pthread_detach(t);
	}
}

static void px_start(struct proxy *p, int upstream)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof a;

	p->upstream = upstream;
	p->lfd = socket(AF_INET, SOCK_STREAM, 0);
	ck_assert_int_ge(p->lfd, 0);
	ck_assert_int_eq(bind(p->lfd, (struct sockaddr *)&a, sizeof a), 0);
	ck_assert_int_eq(listen(p->lfd, 64), 0);
	ck_assert_int_eq(getsockname(p->lfd, (struct sockaddr *)&a, &len), 0);
	p->port = ntohs(a.sin_port);
	ck_assert_int_eq(pthread_create(&p->accept_thread, NULL, px_accept, p), 0);
}

static void px_stop(struct proxy *p)
{
	shutdown(p->lfd, SHUT_RDWR);
	close(p->lfd);
	pthread_join(p->accept_thread, NULL);
}

START_TEST(spoiled_object_info_changes_nothing)
{
	const char *not_read = "model server nodes not read model=ext";
	struct proxy px = {0};
	char port[16], log[600], models[2048], saved[600], out[600], tmp[600];
	/* Its output and temp directories in the test's own, not in the working directory. */
	char *argv[] = {(char *)tu_bin("fnrun-worker"), "--model", "sim", "--step-ms", "0", "--port",
			port, "--output-directory", out, "--temp-directory", tmp, NULL};
	struct json_object *ps;
	pid_t worker;
	char *text;
	int n;

	snprintf(port, sizeof port, "%d", tu_free_port());
	snprintf(log, sizeof log, "%s/worker.log", g.dir);
	snprintf(out, sizeof out, "%s/ext-output", g.dir);
	snprintf(tmp, sizeof tmp, "%s/ext-temp", g.dir);
	argv[0] = strdup(argv[0]);
	worker = tu_spawn(argv, log);
	ck_assert_int_gt(worker, 0);
	ck_assert_int_eq(tu_wait_http(atoi(port), "/health", 200, WAIT_MS), 0);
	px_start(&px, atoi(port));
	snprintf(models, sizeof models, "  ext:\n    function: Create Image\n    quality: low\n"
		 "    runtime: external\n    url: http://127.0.0.1:%d\n" BINDS, px.port);
	registry_with(models);

	/* Read once as it is. */
	gw_start(&g);
	run_one_job("low");
	wait_log("model server nodes read model=ext", 0);
	ck_assert_int_eq(gw_stop(&g, 15000), 0);

	/* Malformed: what was known stays, and jobs run. */
	px.mode = PX_MALFORMED;
	gw_start(&g);
	run_one_job("low");
	wait_log(not_read, 0);
	text = gw_log(&g);
	ck_assert_msg(strstr(text, "not a JSON object"), "%s", text);
	free(text);
	ps = catalog_params();
	assert_described(ps);
	json_object_put(ps);
	ck_assert_int_eq(gw_stop(&g, 15000), 0);

	/* Too large, with nothing known before: the registry's own words. */
	px.mode = PX_HUGE;
	snprintf(saved, sizeof saved, "%s/data/nodes/ext.json", g.dir);
	ck_assert_int_eq(unlink(saved), 0);
	n = gw_log_count(&g, not_read);
	gw_start(&g);
	run_one_job("low");
	wait_log(not_read, n);
	text = gw_log(&g);
	ck_assert_msg(strstr(text, "response over 33554432 bytes"), "%s", text);
	free(text);
	ps = catalog_params();
	assert_undescribed(ps);
	json_object_put(ps);
	run_one_job("low");
	ck_assert_int_eq(gw_stop(&g, 15000), 0);
	px_stop(&px);
	tu_stop(worker, 5000);
	free(argv[0]);
}
END_TEST

Suite *suite_docs(void)
{
	Suite *s = suite_create("docs");
	TCase *unit = tcase_create("merge");
	TCase *e2e = tcase_create("e2e");

	tcase_add_checked_fixture(unit, NULL, unit_teardown);
	tcase_add_test(unit, several_models_merge_field_by_field);
	tcase_add_test(unit, summary_keeps_what_is_needed_and_bounded);
	suite_add_tcase(s, unit);
	tcase_add_checked_fixture(e2e, setup, teardown);
	tcase_set_timeout(e2e, 180);
	tcase_add_test(e2e, catalog_takes_what_registry_leaves_and_keeps_it_across_restart);
	tcase_add_test(e2e, docs_writes_function_and_model_pages);
	tcase_add_test(e2e, spoiled_object_info_changes_nothing);
	suite_add_tcase(s, e2e);
	return s;
}
