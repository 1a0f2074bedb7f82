/*
 * test_api_unit.c - the gateway's pure pieces: the user error catalog and
 * its mapping, POST /api/generate parsing, output paths, job views, SSE
 * formatting, and the CLI's param conversion, SSE parser and progress line.
 * The end-to-end tests through real processes live elsewhere.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api.h"
#include "cli.h"
#include "errors.h"
#include "events.h"
#include "job.h"
#include "json.h" /* -I/usr/include/json-c has a json.h too */
#include "log.h"
#include "outputs.h"
#include "registry.h"
#include "testutil.h"
#include "util.h"
#include "view.h"

static const char REGISTRY[] =
	"functions:\n"
	"  Create Image:\n"
	"    params:\n"
	"      prompt: {type: string, required: true, max_length: 50}\n"
	"      width: {type: int, default: 1024, min: 256, max: 2048}\n"
	"      seed: {type: int, default: random}\n"
	"      cfg: {type: float, default: 7.5, min: 1, max: 20}\n"
	"      tiled: {type: bool, default: false}\n"
	"      sampler: {type: enum, options: [euler, ddim], default: euler}\n"
	"    qualities:\n"
	"      low: {label: Fast Preview, typical_seconds: [10, 30]}\n"
	"      standard: {label: Balanced, typical_seconds: [30, 60]}\n"
	"      high: {label: Maximum Detail, typical_seconds: [60, 180]}\n"
	"    default_quality: standard\n"
	"  Make Music:\n"
	"    params:\n"
	"      length: {type: int, default: 10, min: 1, max: 60}\n"
	"    qualities:\n"
	"      draft: {label: Draft, typical_seconds: [5, 10]}\n"
	"models:\n"
	"  m:\n"
	"    function: Create Image\n"
	"    quality: low\n"
	"    command: [w, \"{port}\"]\n"
	"    workflow: wf.json\n"
	"    bind: {prompt: \"6.inputs.text\"}\n";

static const char WORKFLOW[] =
	"{\"6\": {\"class_type\": \"CLIPTextEncode\", \"inputs\": {\"text\": \"x\"}}}\n";

static struct registry *reg;

static void write_tmp(const char *name, const char *data)
{
	char path[512];

	snprintf(path, sizeof path, "%s/%s", tu_tmpdir(), name);
	ck_assert_int_eq(tu_write_file(path, data, strlen(data)), 0);
}

static void setup(void)
{
	char path[512];
	struct err err = {0};

	log_init(LOG_ERROR, NULL);
	write_tmp("reg.yaml", REGISTRY);
	write_tmp("wf.json", WORKFLOW);
	snprintf(path, sizeof path, "%s/reg.yaml", tu_tmpdir());
	reg = registry_load(path, &err);
	ck_assert_msg(reg != NULL, "registry_load: %s", err.msg);
}

static void teardown(void)
{
	registry_free(reg);
	reg = NULL;
	tu_rmrf(tu_tmpdir());
}

/* ---- the error catalog ---- */

static const char *const CODES[] = {
	"OUT_OF_MEMORY", "MODEL_UNAVAILABLE", "TIMEOUT", "INVALID_INPUT", "CANCELLED",
	"OUTPUT_LOST", "INTERNAL", "QUEUE_FULL", "NOT_FOUND", "TOO_LARGE", "ALREADY_FINISHED",
};

static int has_word(const char *s, const char *w)
{
	return strcasestr(s, w) != NULL;
}

START_TEST(catalog_complete_and_plain)
{
	static const char *const actions[] = {"REDUCE_QUALITY", "RETRY", "WAIT", "EDIT_INPUT",
					      "NONE"};
	static const char *const banned[] = {"model", "runner", "cuda", "stack", "command",
					     "container", "traceback", "gpu"};

	for (size_t i = 0; i < sizeof CODES / sizeof CODES[0]; i++) {
		const struct user_error *e = errors_find(CODES[i]);
		int ok = 0;

		ck_assert_msg(e != NULL, "%s missing", CODES[i]);
		ck_assert_str_eq(e->code, CODES[i]);
		ck_assert(strlen(e->message) > 10 && strlen(e->suggestion) > 5);
		for (size_t a = 0; a < 5; a++)
			ok |= strcmp(e->action, actions[a]) == 0;
		ck_assert_msg(ok, "%s: action %s", CODES[i], e->action);
		for (size_t b = 0; b < sizeof banned / sizeof banned[0]; b++)
			ck_assert_msg(!has_word(e->message, banned[b]) &&
					      !has_word(e->suggestion, banned[b]),
				      "%s names %s", CODES[i], banned[b]);
	}
	ck_assert_str_eq(errors_find("OUT_OF_MEMORY")->action, "REDUCE_QUALITY");
	ck_assert_str_eq(errors_find("QUEUE_FULL")->action, "WAIT");
	ck_assert_str_eq(errors_find("INVALID_INPUT")->action, "EDIT_INPUT");
	ck_assert_ptr_null(errors_find("NOPE"));
	ck_assert_ptr_null(errors_find(NULL));
}
END_TEST

START_TEST(error_json_shape)
{
	struct json_object *o = errors_json("INVALID_INPUT", "params.width: too big", "params.width");
	char *s = json_dumps(o);

	ck_assert_str_eq(s, "{\"code\": \"INVALID_INPUT\", \"message\": \"params.width: too big\", "
			    "\"suggestion\": \"Check the field named in the message and try "
			    "again.\", \"action\": \"EDIT_INPUT\", \"field\": \"params.width\"}");
	free(s);
	json_object_put(o);

	o = errors_json("QUEUE_FULL", NULL, NULL);
	ck_assert_str_eq(json_get_str(o, "message"), errors_find("QUEUE_FULL")->message);
	ck_assert_ptr_null(json_get(o, "field"));
	json_object_put(o);

	/* An unknown code keeps its name and gets generic texts. */
	o = errors_json("WEIRD", NULL, "");
	ck_assert_str_eq(json_get_str(o, "code"), "WEIRD");
	ck_assert_str_eq(json_get_str(o, "message"), errors_find("INTERNAL")->message);
	ck_assert_ptr_null(json_get(o, "field"));
	json_object_put(o);
}
END_TEST

static void expect_map(int code, const char *msg, int status, const char *ucode,
		       const char *umsg, const char *field)
{
	struct err e = {0};
	struct errors_reply r;

	err_set(&e, code, "%s", msg);
	errors_from_err(&e, &r);
	ck_assert_int_eq(r.status, status);
	ck_assert_str_eq(r.code, ucode);
	if (umsg == NULL)
		ck_assert_ptr_null(r.message);
	else
		ck_assert_str_eq(r.message, umsg);
	ck_assert_str_eq(r.field, field);
}

START_TEST(err_mapping)
{
	expect_map(ERR_INVALID, "params.width: must be an integer from 256 to 2048", 400,
		   "INVALID_INPUT", "params.width: must be an integer from 256 to 2048",
		   "params.width");
	expect_map(ERR_INVALID, "malformed JSON: unexpected end of data", 400, "INVALID_INPUT",
		   "malformed JSON: unexpected end of data", "");
	expect_map(ERR_NOT_FOUND, "no job with id abc", 404, "NOT_FOUND", "no job with id abc", "");
	expect_map(ERR_TOO_LARGE, "body: over 1048576 bytes", 413, "TOO_LARGE",
		   "body: over 1048576 bytes", "body");
	expect_map(ERR_CONFLICT, "the job has already finished", 409, "ALREADY_FINISHED", NULL,
		   "");
	/* 5xx never carries the technical text. */
	expect_map(ERR_FULL, "queue full: 10000 jobs", 503, "QUEUE_FULL", NULL, "");
	expect_map(ERR_UNAVAILABLE, "no model serves create_image_high", 503,
		   "MODEL_UNAVAILABLE", NULL, "");
	expect_map(ERR_TIMEOUT, "runner r1 hung", 504, "TIMEOUT", NULL, "");
	expect_map(ERR_IO, "job store /x/fnrun.db: disk I/O error", 500, "INTERNAL", NULL, "");
	expect_map(ERR_INTERNAL, "assertion in sched.c", 500, "INTERNAL", NULL, "");
}
END_TEST

/* ---- POST /api/generate ---- */

static int parse(const char *body, struct api_generate *g, struct err *err)
{
	return api_generate_parse(reg, body, strlen(body), 32, g, err);
}

/* Asserts body is refused with a message containing want. */
static void expect_refused(const char *body, const char *want)
{
	struct api_generate g;
	struct err err = {0};

	ck_assert_int_eq(parse(body, &g, &err), -1);
	ck_assert_int_eq(err.code, ERR_INVALID);
	ck_assert_msg(strstr(err.msg, want) != NULL, "%s: got \"%s\", want \"%s\"", body,
		      err.msg, want);
	ck_assert_ptr_null(g.params);
	ck_assert_ptr_null(g.idem);
}

START_TEST(generate_minimal_defaults)
{
	struct api_generate g;
	struct err err = {0};

	ck_assert_int_eq(parse("{\"function\": \"Create Image\", \"params\": {\"prompt\": \"a "
			       "lighthouse\"}}",
			       &g, &err),
			 0);
	ck_assert_str_eq(g.fn->name, "Create Image");
	ck_assert_str_eq(g.fn->qualities[g.quality].key, "standard");
	ck_assert_int_eq(g.priority, 5);
	ck_assert_ptr_null(g.idem);
	ck_assert_int_eq(json_get_int(g.params, "width", 0), 1024);
	ck_assert_str_eq(json_get_str(g.params, "prompt"), "a lighthouse");
	api_generate_cleanup(&g);
}
END_TEST

START_TEST(generate_all_fields)
{
	struct api_generate g;
	struct err err = {0};

	ck_assert_int_eq(parse("{\"function\": \"Create Image\", \"quality\": \"high\", "
			       "\"params\": {\"prompt\": \"x\", \"width\": 512}, \"priority\": 10, "
			       "\"idempotency_key\": \"k-1\"}",
			       &g, &err),
			 0);
	ck_assert_str_eq(g.fn->qualities[g.quality].key, "high");
	ck_assert_int_eq(g.priority, 10);
	ck_assert_str_eq(g.idem, "k-1");
	ck_assert_int_eq(json_get_int(g.params, "width", 0), 512);
	api_generate_cleanup(&g);

	/* JSON null counts as not given. */
	ck_assert_int_eq(parse("{\"function\": \"Make Music\", \"quality\": null, \"params\": "
			       "null, \"priority\": null, \"idempotency_key\": null}",
			       &g, &err),
			 0);
	ck_assert_str_eq(g.fn->qualities[g.quality].key, "draft");
	ck_assert_int_eq(g.priority, 5);
	ck_assert_int_eq(json_get_int(g.params, "length", 0), 10);
	api_generate_cleanup(&g);
}
END_TEST

START_TEST(generate_refusals_name_the_field)
{
	expect_refused("{\"function\": \"Create Image\", \"params\": {\"prompt\": \"x\"}, "
		       "\"model\": \"m\"}",
		       "model: unknown field; allowed: function, quality, params, priority, "
		       "idempotency_key");
	expect_refused("{\"params\": {}}",
		       "function: is required; available: Create Image, Make Music");
	expect_refused("{\"function\": \"Paint\"}",
		       "function: unknown function \"Paint\"; available: Create Image, Make Music");
	expect_refused("{\"function\": 3}", "function: must be a string");
	expect_refused("{\"function\": \"Create Image\", \"quality\": \"ultra\", \"params\": "
		       "{\"prompt\": \"x\"}}",
		       "quality: unknown quality \"ultra\" of Create Image; allowed: low, standard, "
		       "high");
	expect_refused("{\"function\": \"Create Image\", \"quality\": 2}",
		       "quality: must be a string; allowed: low, standard, high");
	expect_refused("{\"function\": \"Create Image\", \"params\": {\"prompt\": \"x\", "
		       "\"width\": \"wide\"}}",
		       "params.width:");
	expect_refused("{\"function\": \"Create Image\", \"params\": {}}", "params.prompt:");
	expect_refused("{\"function\": \"Create Image\", \"params\": [1]}", "params:");
	expect_refused("{\"function\": \"Create Image\", \"params\": {\"prompt\": \"x\"}, "
		       "\"priority\": 11}",
		       "priority: must be an integer from 0 to 10");
	expect_refused("{\"function\": \"Create Image\", \"params\": {\"prompt\": \"x\"}, "
		       "\"priority\": 2.5}",
		       "priority: must be an integer");
	expect_refused("{\"function\": \"Create Image\", \"params\": {\"prompt\": \"x\"}, "
		       "\"priority\": -1}",
		       "priority:");
	expect_refused("{\"function\": \"Create Image\", \"params\": {\"prompt\": \"x\"}, "
		       "\"idempotency_key\": \"\"}",
		       "idempotency_key: must be a string of 1 to 200 characters");
	expect_refused("{\"function\": \"Create Image\", \"params\": {\"prompt\": \"x\"}, "
		       "\"idempotency_key\": 7}",
		       "idempotency_key:");
}
END_TEST

START_TEST(generate_body_shape)
{
	char deep[200] = "";
	char body[600];

	expect_refused("[1, 2]", "the request body must be a JSON object");
	expect_refused("null", "the request body must be a JSON object");
	expect_refused("{\"function\": ", "malformed JSON");
	expect_refused("{} {}", "malformed JSON");
	/* json-c takes a key in single quotes; the strict walk refuses it (fuzz/generate). */
	expect_refused("{'function': \"Create Image\"}",
		       "malformed JSON: a key must be a string in double quotes");
	expect_refused("{\"params\": {'':\"o\"}}", "malformed JSON: params: a key must be");
	for (int i = 0; i < 40; i++)
		strcat(deep, "[");
	snprintf(body, sizeof body, "{\"function\": \"Create Image\", \"params\": {\"prompt\": %s",
		 deep);
	expect_refused(body, "JSON nests deeper than 32 levels");
}
END_TEST

START_TEST(generate_idem_length)
{
	struct api_generate g;
	struct err err = {0};
	char key[202], body[400];

	memset(key, 'k', 200);
	key[200] = '\0';
	snprintf(body, sizeof body,
		 "{\"function\": \"Make Music\", \"idempotency_key\": \"%s\"}", key);
	ck_assert_int_eq(parse(body, &g, &err), 0);
	ck_assert_uint_eq(strlen(g.idem), 200);
	api_generate_cleanup(&g);
	/* 200 characters of two bytes each are fine too. */
	{
		char wide[420] = "", b2[600];

		for (int i = 0; i < 200; i++)
			strcat(wide, "\xc3\xa9");
		snprintf(b2, sizeof b2,
			 "{\"function\": \"Make Music\", \"idempotency_key\": \"%s\"}", wide);
		ck_assert_int_eq(parse(b2, &g, &err), 0);
		api_generate_cleanup(&g);
	}
	key[200] = 'k';
	key[201] = '\0';
	snprintf(body, sizeof body,
		 "{\"function\": \"Make Music\", \"idempotency_key\": \"%s\"}", key);
	expect_refused(body, "idempotency_key: must be a string of 1 to 200 characters");
}
END_TEST

/* ---- output paths ---- */

START_TEST(output_paths)
{
	char root[512], path[4096], file[600], outside[600], link[600], want[4096];
	struct err err = {0};

	snprintf(root, sizeof root, "%s/outputs", tu_tmpdir());
	ck_assert_int_eq(util_mkdirs(root), 0);
	snprintf(file, sizeof file, "%s/job1", root);
	ck_assert_int_eq(util_mkdirs(file), 0);
	write_tmp("outputs/job1/a b.png", "png");
	write_tmp("secret.txt", "secret");
	snprintf(outside, sizeof outside, "%s/secret.txt", tu_tmpdir());
	snprintf(link, sizeof link, "%s/job1/evil.png", root);
	ck_assert_int_eq(symlink(outside, link), 0);

	ck_assert_int_eq(outputs_resolve(root, "job1/a b.png", path, sizeof path, &err), 0);
	ck_assert_ptr_nonnull(realpath(root, want));
	strcat(want, "/job1/a b.png");
	ck_assert_str_eq(path, want);

	static const char *const bad[] = {"", "/etc/passwd", "../secret.txt", "job1/../../secret.txt",
					  "job1//a b.png", "./job1/a b.png", "job1/", "..", "job1/."};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		err_clear(&err);
		ck_assert_int_eq(outputs_resolve(root, bad[i], path, sizeof path, &err), -1);
		ck_assert_msg(err.code == ERR_INVALID, "%s: code %d", bad[i], err.code);
	}
	static const char *const missing[] = {"job1/evil.png", "job1/none.png", "job1", "job2/x"};
	for (size_t i = 0; i < sizeof missing / sizeof missing[0]; i++) {
		err_clear(&err);
		ck_assert_int_eq(outputs_resolve(root, missing[i], path, sizeof path, &err), -1);
		ck_assert_msg(err.code == ERR_NOT_FOUND, "%s: code %d", missing[i], err.code);
	}
	/* The current layout: one shard directory per two leading characters, no job directory. */
	err_clear(&err);
	ck_assert_int_eq(outputs_write_path(root, "ab12cd", "0-x.png", file, sizeof file, &err), 0);
	snprintf(want, sizeof want, "%s/ab/ab12cd-0-x.png", root);
	ck_assert_str_eq(file, want);
	ck_assert_int_eq(tu_write_file(file, "png", 3), 0);
	ck_assert_int_eq(outputs_resolve(root, "ab12cd/0-x.png", path, sizeof path, &err), 0);
	ck_assert_ptr_nonnull(realpath(file, want));
	ck_assert_str_eq(path, want);
	ck_assert_int_eq(outputs_write_path(root, "ab12cd", "a/b", file, sizeof file, &err), -1);
	ck_assert_int_eq(err.code, ERR_INVALID);
}
END_TEST

/* Users download what they asked for: the function and the job, never the model. */
START_TEST(output_names)
{
	static const char *const cases[][5] = {
		/* function, server name, index, want stem, want name */
		{"Create Image", "sim_00001_.png", "0", "create-image-3f2a9c1d", "create-image-3f2a9c1d.png"},
		{"Create Image", "sim_00002_.PNG", "1", "create-image-3f2a9c1d", "create-image-3f2a9c1d-2.png"},
		{"Create  Speech!", "flite_00001_.wav", "0", "create-speech-3f2a9c1d", "create-speech-3f2a9c1d.wav"},
		{"Vidéo 2", "clip.mp4", "0", "vid-o-2-3f2a9c1d", "vid-o-2-3f2a9c1d.mp4"},
		{"", "noext", "0", "job-3f2a9c1d", "job-3f2a9c1d.bin"},
		{"x", "a.tar.verylongext", "0", "x-3f2a9c1d", "x-3f2a9c1d.bin"},
		{"x", "a.p/ng", "0", "x-3f2a9c1d", "x-3f2a9c1d.bin"},
	};
	char stem[96], name[160];

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		outputs_stem(stem, sizeof stem, cases[i][0], "3f2a9c1d4e5f60718293a4b5c6d7e8f9");
		ck_assert_str_eq(stem, cases[i][3]);
		outputs_name(name, sizeof name, stem, (size_t)atoi(cases[i][2]), cases[i][1]);
		ck_assert_str_eq(name, cases[i][4]);
	}
}
END_TEST

/* User JSON is valid or refused, naming the field; never half-accepted. */
START_TEST(strict_json)
{
	static const char *const good[] = {
		"{\"p\": \"caf\xc3\xa9 \\u00e9 \\ud83d\\ude00 \xf0\x9f\x98\x80 \\\" \\\\ \\/ \\n\"}",
		"{\"a\": {\"b\": 1}, \"b\": {\"b\": 2}, \"c\": [{\"x\": 1}, {\"x\": 2}]}",
		"[\"\\u0001\", 1.5e3, true, false, null, {}]",
		"\"\\uffff\"",
	};
	static const char *const bad[][2] = {
		{"{\"function\": \"Create Image\\u0000x\"}", "function: the text has a NUL"},
		{"{\"a\": {\"b\": [1, {\"c\": \"\\ud800\"}]}}", "a.b[1].c: the text has a lone surrogate"},
		{"{\"a\": \"\\udc00\\ud800\"}", "a: the text has a lone surrogate"},
		{"{\"a\": \"\\ud800x\"}", "a: the text has a lone surrogate"},
		{"{\"a\": \"\xff\"}", "a: the text is not valid UTF-8"},
		{"{\"a\": \"\xc0\xaf\"}", "a: the text is not valid UTF-8"},     /* overlong '/' */
		{"{\"a\": \"\xed\xa0\x80\"}", "a: the text is not valid UTF-8"}, /* a surrogate */
		{"{\"a\": \"\xf4\x90\x80\x80\"}", "a: the text is not valid UTF-8"}, /* > U+10FFFF */
		{"{\"a\": \"\xe2\x82\"}", "a: the text is not valid UTF-8"},    /* cut short */
		{"{\"a\": 1, \"b\": 2, \"a\": 3}", "a: given twice"},
		{"{\"x\": {\"k\": 1, \"\\u006b\": 2}}", "x.k: given twice"},
	};
	struct json_object *o;
	struct err err = {0};

	for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
		err_clear(&err);
		ck_assert_msg(json_parse_strict(good[i], strlen(good[i]), 16, &o, &err) == 0, "%s: %s",
			      good[i], err.msg);
		json_object_put(o);
	}
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		err_clear(&err);
		o = (struct json_object *)1;
		ck_assert_int_eq(json_parse_strict(bad[i][0], strlen(bad[i][0]), 16, &o, &err), -1);
		ck_assert_ptr_null(o);
		ck_assert_int_eq(err.code, ERR_INVALID);
		ck_assert_msg(strncmp(err.msg, bad[i][1], strlen(bad[i][1])) == 0, "%s: %s",
			      bad[i][0], err.msg);
	}
	/* A raw NUL byte inside the body, which json-c would stop at. */
	err_clear(&err);
	ck_assert_int_eq(json_parse_strict("{\"a\": \"x\0y\"}", 13, 16, &o, &err), -1);
	ck_assert_int_eq(err.code, ERR_INVALID);
}
END_TEST

/* The last cap bytes of a stream, whatever the sizes it comes in. */
START_TEST(tail_keeps_the_last_bytes)
{
	char t[9];
	size_t n = 0;

	n = util_tail_keep(t, n, 8, "abc", 3);
	ck_assert(n == 3 && memcmp(t, "abc", 3) == 0);
	n = util_tail_keep(t, n, 8, "defghij", 7);
	ck_assert(n == 8 && memcmp(t, "cdefghij", 8) == 0);
	n = util_tail_keep(t, n, 8, "0123456789abcdefghij", 20);
	ck_assert(n == 8 && memcmp(t, "cdefghij", 8) == 0);
	n = util_tail_keep(t, n, 8, "", 0);
	ck_assert(n == 8 && memcmp(t, "cdefghij", 8) == 0);
	n = util_tail_keep(t, n, 8, "Z", 1);
	ck_assert(n == 8 && memcmp(t, "defghijZ", 8) == 0);
}
END_TEST

START_TEST(content_types)
{
	ck_assert_str_eq(api_content_type("/x/a.png"), "image/png");
	ck_assert_str_eq(api_content_type("a.JPG"), "image/jpeg");
	ck_assert_str_eq(api_content_type("b.wav"), "audio/wav");
	ck_assert_str_eq(api_content_type("c.mp4"), "video/mp4");
	ck_assert_str_eq(api_content_type("noext"), "application/octet-stream");
	ck_assert_str_eq(api_content_type("dir.png/file"), "application/octet-stream");
}
END_TEST

/* ---- job views and events ---- */

static struct job *sample_job(void)
{
	struct job *j = job_new();

	snprintf(j->id, sizeof j->id, "%s", "0123456789abcdef0123456789abcdef");
	job_set_str(&j->function, "Create Image");
	job_set_str(&j->quality, "high");
	job_set_str(&j->message, "Creating your image...\nline two");
	job_set_str(&j->model_id, "secret_model_xl");
	job_set_str(&j->runner_id, "runner-7");
	job_set_str(&j->remote_url, "http://127.0.0.1:9999");
	job_set_str(&j->error_detail, "CUDA out of memory at layer 3");
	j->created_at = 1714566896789LL; /* 2024-05-01T12:34:56.789Z */
	j->progress = 40;
	return j;
}

START_TEST(iso_times)
{
	char t[32];

	view_iso8601(1714566896789LL, t);
	ck_assert_str_eq(t, "2024-05-01T12:34:56.789Z");
	view_iso8601(0, t);
	ck_assert_str_eq(t, "1970-01-01T00:00:00.000Z");
	view_iso8601(5, t);
	ck_assert_str_eq(t, "1970-01-01T00:00:00.005Z");
}
END_TEST

START_TEST(view_queued_shape)
{
	struct job *j = sample_job();
	struct json_object *v = view_job(j, NULL, NULL);
	char *s = json_dumps(v);

	ck_assert_str_eq(json_get_str(v, "job_id"), j->id);
	ck_assert_str_eq(json_get_str(v, "status"), "queued");
	ck_assert_int_eq(json_get_int(v, "progress", -1), 40);
	ck_assert_str_eq(json_get_str(v, "created_at"), "2024-05-01T12:34:56.789Z");
	ck_assert(json_object_object_get_ex(v, "queue_position", NULL));
	ck_assert_ptr_null(json_get(v, "queue_position"));
	ck_assert_ptr_null(json_get(v, "eta_seconds"));
	ck_assert_ptr_null(json_get(v, "error"));
	ck_assert(!json_object_object_get_ex(v, "started_at", NULL));
	ck_assert(!json_object_object_get_ex(v, "finished_at", NULL));
	ck_assert_uint_eq(json_object_array_length(json_get_arr(v, "outputs")), 0);
	/* Operators' fields never reach users. */
	ck_assert_ptr_null(strstr(s, "secret_model_xl"));
	ck_assert_ptr_null(strstr(s, "runner-7"));
	ck_assert_ptr_null(strstr(s, "9999"));
	ck_assert_ptr_null(strstr(s, "CUDA"));
	ck_assert_ptr_null(strstr(s, "model_id"));
	free(s);
	json_object_put(v);
	job_free(j);
}
END_TEST

START_TEST(view_completed_outputs)
{
	struct job *j = sample_job();
	struct json_object *v, *outs, *o;

	job_set_status(j, JOB_PREPARING, 1714566897000LL);
	job_set_status(j, JOB_RUNNING, 1714566898000LL);
	job_set_status(j, JOB_COMPLETED, 1714566899000LL);
	job_set_str(&j->outputs_json,
		    "[{\"path\": \"0123456789abcdef0123456789abcdef/out 1.png\", \"kind\": "
		    "\"image\", \"filename\": \"out 1.png\", \"thumbnail\": "
		    "\"0123456789abcdef0123456789abcdef/thumb.jpg\"}, {\"path\": \"j/b.wav\", "
		    "\"kind\": \"audio\"}]");
	v = view_job(j, NULL, NULL);
	outs = json_get_arr(v, "outputs");
	ck_assert_uint_eq(json_object_array_length(outs), 2);
	o = json_object_array_get_idx(outs, 0);
	ck_assert_str_eq(json_get_str(o, "url"),
			 "/api/outputs/0123456789abcdef0123456789abcdef/out%201.png");
	ck_assert_str_eq(json_get_str(o, "kind"), "image");
	ck_assert_str_eq(json_get_str(o, "filename"), "out 1.png");
	ck_assert_str_eq(json_get_str(o, "thumbnail_url"),
			 "/api/outputs/0123456789abcdef0123456789abcdef/thumb.jpg");
	o = json_object_array_get_idx(outs, 1);
	ck_assert_str_eq(json_get_str(o, "filename"), "b.wav");
	ck_assert_ptr_null(json_get(o, "thumbnail_url"));
	ck_assert_str_eq(json_get_str(v, "status"), "completed");
	ck_assert_int_eq(json_get_int(v, "eta_seconds", -1), 0);
	ck_assert_str_eq(json_get_str(v, "started_at"), "2024-05-01T12:34:58.000Z");
	ck_assert_str_eq(json_get_str(v, "finished_at"), "2024-05-01T12:34:59.000Z");
	json_object_put(v);
	job_free(j);
}
END_TEST

START_TEST(view_failed_error)
{
	struct job *j = sample_job();
	struct json_object *v, *e;

	job_set_status(j, JOB_FAILED, 1714566899000LL);
	job_set_str(&j->error_code, "OUT_OF_MEMORY");
	job_set_str(&j->error_suggestion, "Try Balanced quality");
	v = view_job(j, NULL, NULL);
	e = json_get_obj(v, "error");
	ck_assert_ptr_nonnull(e);
	ck_assert_str_eq(json_get_str(e, "code"), "OUT_OF_MEMORY");
	ck_assert_str_eq(json_get_str(e, "message"), errors_find("OUT_OF_MEMORY")->message);
	ck_assert_str_eq(json_get_str(e, "suggestion"), "Try Balanced quality");
	ck_assert_str_eq(json_get_str(e, "action"), "REDUCE_QUALITY");
	ck_assert_ptr_null(json_get(e, "detail"));
	json_object_put(v);
	job_free(j);
}
END_TEST

START_TEST(sse_format)
{
	struct job *j = sample_job();
	struct json_object *v = view_job(j, NULL, NULL);
	struct buf b;
	char *data;

	buf_init(&b, 1 << 20);
	ck_assert_int_eq(events_format(&b, 42, "progress", v), 0);
	ck_assert(strncmp(b.data, "id: 42\nevent: progress\ndata: {\"job_id\": ", 40) == 0);
	ck_assert(util_ends_with(b.data, "}\n\n"));
	/* The data is one line: the message's newline is escaped. */
	data = strstr(b.data, "data: ");
	ck_assert_ptr_eq(strchr(data, '\n'), data + strlen(data) - 2);
	ck_assert_ptr_nonnull(strstr(b.data, "Creating your image...\\nline two"));
	buf_cleanup(&b);
	buf_init(&b, 16);
	ck_assert_int_eq(events_format(&b, 1, "state", v), -1);
	buf_cleanup(&b);
	json_object_put(v);
	job_free(j);
}
END_TEST

START_TEST(publish_without_watchers)
{
	struct job *j = sample_job();
	struct json_object *v = view_job(j, NULL, NULL);

	/* Nobody watches: nothing kept, nothing sent, no timer started. */
	events_publish(j->id, "state", v);
	ck_assert_uint_eq(events_watchers(), 0);
	events_shutdown();
	json_object_put(v);
	job_free(j);
}
END_TEST

/* ---- the CLI ---- */

static struct json_object *catalog(void)
{
	return registry_catalog(reg);
}

static void expect_param(const char *kv, const char *json)
{
	struct json_object *cat = catalog(), *params = json_object_new_object();
	const struct json_object *fn = cli_catalog_function(cat, "Create Image");
	struct err err = {0};
	char *s;

	ck_assert_ptr_nonnull(fn);
	ck_assert_msg(cli_param_convert(fn, kv, params, &err) == 0, "%s: %s", kv, err.msg);
	s = json_dumps(params);
	ck_assert_str_eq(s, json);
	free(s);
	json_object_put(params);
	json_object_put(cat);
}

static void expect_param_error(const char *kv, const char *want)
{
	struct json_object *cat = catalog(), *params = json_object_new_object();
	const struct json_object *fn = cli_catalog_function(cat, "Create Image");
	struct err err = {0};

	ck_assert_int_eq(cli_param_convert(fn, kv, params, &err), -1);
	ck_assert_int_eq(err.code, ERR_INVALID);
	ck_assert_msg(strstr(err.msg, want) != NULL, "%s: got \"%s\"", kv, err.msg);
	ck_assert_int_eq(json_object_object_length(params), 0);
	json_object_put(params);
	json_object_put(cat);
}

START_TEST(cli_params_typed)
{
	expect_param("width=512", "{\"width\": 512}");
	expect_param("width=-3", "{\"width\": -3}"); /* the range is the server's to judge */
	expect_param("cfg=7", "{\"cfg\": 7.0}");
	expect_param("cfg=2.5", "{\"cfg\": 2.5}");
	expect_param("tiled=yes", "{\"tiled\": true}");
	expect_param("tiled=False", "{\"tiled\": false}");
	expect_param("sampler=ddim", "{\"sampler\": \"ddim\"}");
	expect_param("prompt=a=b c", "{\"prompt\": \"a=b c\"}");
	expect_param("prompt=", "{\"prompt\": \"\"}");
	expect_param("seed=random", "{}");
	expect_param("seed=18", "{\"seed\": 18}");
	{
		struct json_object *cat = catalog();

		ck_assert_ptr_null(cli_catalog_function(cat, "Paint"));
		ck_assert_ptr_nonnull(cli_catalog_function(cat, "Make Music"));
		json_object_put(cat);
	}
}
END_TEST

START_TEST(cli_params_errors)
{
	expect_param_error("width=wide", "--param width: must be an integer, not \"wide\"");
	expect_param_error("width=1.5", "--param width: must be an integer");
	expect_param_error("width=99999999999999999999", "--param width: must be an integer");
	expect_param_error("cfg=abc", "--param cfg: must be a number");
	expect_param_error("cfg=nan", "--param cfg: must be a number");
	expect_param_error("tiled=maybe", "--param tiled: must be true or false");
	expect_param_error("sampler=heun", "--param sampler: must be one of euler, ddim");
	expect_param_error("size=3", "--param size: Create Image has no such param; its params: "
				     "prompt, width, seed, cfg, tiled, sampler");
	expect_param_error("width", "--param width: expected NAME=VALUE");
	expect_param_error("=3", "expected NAME=VALUE");
}
END_TEST

struct got {
	char events[8][32];
	char data[8][256];
	int n;
	int stop_at; /* 1-based event to stop at; 0: never */
};

static int on_got(void *ud, const char *event, const char *data)
{
	struct got *g = ud;

	snprintf(g->events[g->n], sizeof g->events[0], "%s", event);
	snprintf(g->data[g->n], sizeof g->data[0], "%s", data);
	g->n++;
	return g->stop_at == g->n;
}

START_TEST(cli_sse_parse_chunked)
{
	static const char stream[] = "retry: 2000\n\n: ping\n\nid: 7\nevent: state\ndata: {\"a\": "
				     "1}\n\nid: 8\r\nevent: progress\r\ndata: x\r\ndata:y\r\n\r\n"
				     "data: plain\n\n";
	/* Every split point gives the same events. */
	for (size_t cut = 0; cut <= strlen(stream); cut++) {
		struct cli_sse p;
		struct got g = {0};

		cli_sse_init(&p);
		ck_assert_int_eq(cli_sse_feed(&p, stream, cut, on_got, &g), 0);
		ck_assert_int_eq(cli_sse_feed(&p, stream + cut, strlen(stream) - cut, on_got, &g),
				 0);
		ck_assert_int_eq(g.n, 3);
		ck_assert_str_eq(g.events[0], "state");
		ck_assert_str_eq(g.data[0], "{\"a\": 1}");
		ck_assert_str_eq(g.events[1], "progress");
		ck_assert_str_eq(g.data[1], "x\ny");
		ck_assert_str_eq(g.events[2], "message");
		ck_assert_str_eq(g.data[2], "plain");
		ck_assert_str_eq(p.last_id, "8");
		cli_sse_cleanup(&p);
	}
}
END_TEST

START_TEST(cli_sse_stop_and_cap)
{
	struct cli_sse p;
	struct got g = {.stop_at = 1};
	char *big;

	cli_sse_init(&p);
	ck_assert_int_eq(cli_sse_feed(&p, "data: 1\n\ndata: 2\n\n", 18, on_got, &g), -1);
	ck_assert_int_eq(g.n, 1);
	cli_sse_cleanup(&p);

	cli_sse_init(&p);
	big = xmalloc((2u << 20) + 1);
	memset(big, 'a', 2u << 20);
	ck_assert_int_eq(cli_sse_feed(&p, big, 2u << 20, on_got, &g), -1);
	free(big);
	cli_sse_cleanup(&p);
}
END_TEST

static struct json_object *view_of(const char *json)
{
	struct json_object *o = NULL;

	ck_assert_int_eq(json_parse(json, strlen(json), 32, &o, NULL), 0);
	return o;
}

START_TEST(cli_progress)
{
	char line[256];
	struct json_object *v;

	v = view_of("{\"status\": \"running\", \"progress\": 50, \"message\": \"Creating your "
		    "image...\", \"queue_position\": null, \"eta_seconds\": 40}");
	cli_progress_line(v, -1, line, sizeof line);
	ck_assert_str_eq(line, "[###############---------------]  50%  Creating your image...  "
			       "about 40 s left");
	cli_progress_line(v, 150, line, sizeof line);
	ck_assert(util_ends_with(line, "about 3 min left"));
	json_object_put(v);

	v = view_of("{\"status\": \"queued\", \"progress\": 0, \"message\": \"Waiting\", "
		    "\"queue_position\": 3, \"eta_seconds\": null}");
	cli_progress_line(v, -1, line, sizeof line);
	ck_assert_str_eq(line, "[------------------------------]   0%  Waiting  3 jobs ahead");
	json_object_put(v);

	v = view_of("{\"status\": \"queued\", \"progress\": 0, \"message\": \"\", "
		    "\"queue_position\": 0}");
	cli_progress_line(v, -1, line, sizeof line);
	ck_assert_str_eq(line, "[------------------------------]   0%  queued  next in line");
	json_object_put(v);

	v = view_of("{\"status\": \"completed\", \"progress\": 100, \"message\": \"Done\"}");
	cli_progress_line(v, -1, line, sizeof line);
	ck_assert_str_eq(line, "[##############################] 100%  Done");
	json_object_put(v);
}
END_TEST

Suite *suite_api_unit(void)
{
	Suite *s = suite_create("api_unit");
	TCase *tc = tcase_create("api_unit");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, catalog_complete_and_plain);
	tcase_add_test(tc, error_json_shape);
	tcase_add_test(tc, err_mapping);
	tcase_add_test(tc, generate_minimal_defaults);
	tcase_add_test(tc, generate_all_fields);
	tcase_add_test(tc, generate_refusals_name_the_field);
	tcase_add_test(tc, generate_body_shape);
	tcase_add_test(tc, generate_idem_length);
	tcase_add_test(tc, output_paths);
	tcase_add_test(tc, output_names);
	tcase_add_test(tc, strict_json);
	tcase_add_test(tc, tail_keeps_the_last_bytes);
	tcase_add_test(tc, content_types);
	tcase_add_test(tc, iso_times);
	tcase_add_test(tc, view_queued_shape);
	tcase_add_test(tc, view_completed_outputs);
	tcase_add_test(tc, view_failed_error);
	tcase_add_test(tc, sse_format);
	tcase_add_test(tc, publish_without_watchers);
	tcase_add_test(tc, cli_params_typed);
	tcase_add_test(tc, cli_params_errors);
	tcase_add_test(tc, cli_sse_parse_chunked);
	tcase_add_test(tc, cli_sse_stop_and_cap);
	tcase_add_test(tc, cli_progress);
	suite_add_tcase(s, tc);
	return s;
}
