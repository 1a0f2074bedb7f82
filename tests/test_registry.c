/*
 * test_registry.c - the registry: loading, every error class with its
 * file:line:col, param validation, binding and the public catalog.
 *
 * Error tests write a small registry into a temp dir: BASE below plus the
 * lines under test, so the line numbers in the expected messages can be
 * counted from BASE (14 lines); EXT adds an external model (lines 15-19).
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "json.h"
#include "registry.h"
#include "testutil.h"
#include "util.h"

#define VALID "tests/fixtures/registry/valid.yaml"

static const char BASE[] =
	"functions:\n"                                          /* 1 */
	"  F:\n"                                                /* 2 */
	"    params:\n"                                         /* 3 */
	"      prompt: {type: string, required: true}\n"       /* 4 */
	"      seed: {type: int, default: random}\n"            /* 5 */
	"    qualities:\n"                                      /* 6 */
	"      low: {label: Low, typical_seconds: [1, 2]}\n"    /* 7 */
	"      high: {label: High, typical_seconds: [2, 4]}\n"  /* 8 */
	"models:\n"                                             /* 9 */
	"  m:\n"                                                /* 10 */
	"    function: F\n"                                     /* 11 */
	"    quality: low\n"                                    /* 12 */
	"    command: [w, \"{port}\"]\n"                        /* 13 */
	"    workflow: wf.json\n";                              /* 14 */

/* An external model without url or urls, for the lines under test (from 20). */
static const char EXT[] =
	"  e:\n"                                                /* 15 */
	"    function: F\n"                                     /* 16 */
	"    quality: high\n"                                   /* 17 */
	"    runtime: external\n"                               /* 18 */
	"    workflow: wf.json\n";                              /* 19 */

static const char WORKFLOW[] =
	"{\"3\": {\"class_type\": \"KSampler\", \"inputs\": {\"seed\": 1, \"steps\": 4}},\n"
	" \"6\": {\"class_type\": \"CLIPTextEncode\", \"inputs\": {\"text\": \"x\"}}}\n";

static char reg_path[512];

static void teardown(void)
{
	tu_rmrf(tu_tmpdir());
}

static void write_tmp(const char *name, const char *data)
{
	char path[512];

	snprintf(path, sizeof path, "%s/%s", tu_tmpdir(), name);
	ck_assert_int_eq(tu_write_file(path, data, strlen(data)), 0);
}

/* Writes BASE + extra as reg.yaml (or extra alone when base is 0). */
static const char *write_reg(int base, const char *extra)
{
	char *yaml = xasprintf("%s%s", base ? BASE : "", extra);

	write_tmp("wf.json", WORKFLOW);
	write_tmp("reg.yaml", yaml);
	free(yaml);
	snprintf(reg_path, sizeof reg_path, "%s/reg.yaml", tu_tmpdir());
	return reg_path;
}

/* registry_check's output for the registry, and its count in *n. Caller frees. */
static char *check_output(int base, const char *extra, int *n)
{
	char *out = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&out, &len);

	*n = registry_check(write_reg(base, extra), f);
	fclose(f);
	return out;
}

/*
 * Loads BASE + extra, expects failure, and checks the first error: it must
 * start with "TMP/reg.yaml:" + where_what (cut to what fits in err.msg).
 */
static void expect_error(const char *extra, const char *where_what)
{
	struct err e = {0};
	struct registry *r = registry_load(write_reg(1, extra), &e);
	char *want = xasprintf("%s:%s", reg_path, where_what);

	ck_assert_ptr_null(r);
	ck_assert_int_eq(e.code, ERR_INVALID);
	/* want is a prefix of the message, or the message is want cut at its size. */
	ck_assert_msg(strncmp(e.msg, want, strlen(want)) == 0 ||
			      (strlen(e.msg) == sizeof e.msg - 1 && strncmp(e.msg, want, strlen(e.msg)) == 0),
		      "got  %s\nwant %s", e.msg, want);
	free(want);
}

static struct registry *load_valid(void)
{
	struct err e = {0};
	struct registry *r = registry_load(VALID, &e);

	ck_assert_msg(r != NULL, "%s", e.msg);
	return r;
}

/* ---- loading ---- */

START_TEST(valid_registry_loads)
{
	struct registry *r = load_valid();
	const struct reg_function *f = registry_function(r, "Create Image");
	const struct reg_model *m = registry_model(r, "create_image_low");
	const struct reg_server *s = registry_server(r);

	ck_assert_ptr_nonnull(f);
	ck_assert_uint_eq(registry_function_count(r), 2);
	ck_assert_uint_eq(registry_model_count(r), 6);
	ck_assert_str_eq(registry_function_at(r, 1)->name, "Make Music");
	ck_assert_str_eq(registry_model_at(r, 5)->id, "music_final");
	ck_assert_ptr_null(registry_model_at(r, 6));
	ck_assert_ptr_null(registry_function(r, "Nope"));
	/* Function. */
	ck_assert_int_eq(f->output, REG_OUTPUT_IMAGE);
	ck_assert_uint_eq(f->nparams, 7);
	ck_assert_str_eq(f->params[1].name, "width");
	ck_assert_int_eq(f->params[1].type, REG_INT);
	ck_assert_int_eq(f->params[1].min_int, 256);
	ck_assert_int_eq(f->params[0].max_length, 20);
	ck_assert_int_eq(f->params[2].random, 1);
	ck_assert_str_eq(registry_message(f, REG_PHASE_RUNNING), "Creating your image...");
	ck_assert_ptr_null(registry_message(f, REG_PHASE_DONE));
	ck_assert_str_eq(f->qualities[2].label, "Maximum Detail");
	ck_assert_int_eq(f->qualities[2].typical_hi_s, 180);
	/* Model. */
	ck_assert_ptr_eq(m->function, f);
	ck_assert_int_eq(m->quality, 0);
	ck_assert_int_eq(m->runtime, REG_RUNTIME_PROCESS);
	ck_assert_uint_eq(m->ncommand, 5);
	ck_assert_str_eq(m->command[0], "{bindir}/fnrun-worker");
	ck_assert_ptr_null(m->command[5]);
	ck_assert_str_eq(m->env[0], "SIM_DELAY_MS=5");
	ck_assert_int_eq(m->gpu_memory, 12LL << 30);
	ck_assert_int_eq(m->priority, 50);
	ck_assert_int_eq(m->idle_timeout_ms, 300000);
	ck_assert_int_eq(m->start_timeout_ms, 120000);
	ck_assert_int_eq(m->step_timeout_ms, 250);
	ck_assert_int_eq(m->max_instances, 2);
	ck_assert_int_eq(m->weight, 100);
	ck_assert_int_eq(m->weight_set, 0);
	ck_assert_ptr_null(m->url);
	ck_assert_ptr_null(m->urls);
	ck_assert_uint_eq(m->nurls, 0);
	ck_assert_ptr_eq(m->fallback, registry_model(r, "create_image_standard"));
	ck_assert_ptr_nonnull(strstr(m->workflow_path, "fixtures/registry/workflows/sim-image.json"));
	ck_assert_str_eq(json_get_str(json_get(m->workflow, "6"), "class_type"), "CLIPTextEncode");
	ck_assert_uint_eq(m->nbinds, 4);
	m = registry_model(r, "create_image_standard");
	ck_assert_int_eq(m->runtime, REG_RUNTIME_DOCKER);
	ck_assert_str_eq(m->image, "studio/flux-schnell:latest");
	ck_assert_int_eq(m->gpu_memory, 512LL << 20);
	ck_assert_int_eq(m->priority, 100);
	ck_assert_int_eq(m->weight, 30);
	ck_assert_int_eq(m->weight_set, 1);
	ck_assert_int_eq(m->enabled, 1);
	ck_assert_uint_eq(m->nbinds, 3);
	/* One url: also a list of one, and one runner. */
	m = registry_model(r, "create_image_standard_b");
	ck_assert_str_eq(m->url, "http://127.0.0.1:8188");
	ck_assert_uint_eq(m->nurls, 1);
	ck_assert_str_eq(m->urls[0], "http://127.0.0.1:8188");
	ck_assert_int_eq(m->max_instances, 1);
	ck_assert_int_eq(m->weight_set, 1);
	ck_assert_int_eq(registry_model(r, "create_image_auto")->quality, REG_QUALITY_AUTO);
	/* Calibration: as given, each run validated afresh (defaults, a new seed). */
	{
		const struct reg_function *ci = registry_function(r, "Create Image");
		struct json_object *a = registry_calibration_params(ci);
		struct json_object *b = registry_calibration_params(ci);
		ck_assert_int_eq(ci->calibration.runs, 2);
		ck_assert_str_eq(json_object_get_string(json_object_object_get(a, "prompt")),
				 "a lighthouse");
		ck_assert_int_eq(json_object_get_int(json_object_object_get(a, "width")), 512);
		ck_assert_int_eq(json_object_get_int(json_object_object_get(a, "tiled")), 0);
		ck_assert_msg(json_object_get_int64(json_object_object_get(a, "seed")) !=
				      json_object_get_int64(json_object_object_get(b, "seed")),
			      "two runs drew the same seed");
		json_object_put(a);
		json_object_put(b);
		ck_assert_int_eq(registry_function(r, "Make Music")->calibration.runs, 3);
	}
	/* Server. */
	ck_assert_str_eq(s->listen, "127.0.0.1:9000");
	ck_assert_str_eq(s->data, "./data");
	ck_assert_int_eq(s->log_level, 3);
	ck_assert_int_eq(s->gpu_vram, 24LL << 30);
	ck_assert_int_eq(s->gpu_devices, 2);
	ck_assert_str_eq(s->docker_socket, "/run/podman/podman.sock");
	ck_assert_int_eq(s->max_queue, 500);
	ck_assert_int_eq(s->max_body, 2 << 20);
	ck_assert_int_eq(s->max_json_depth, 32);
	ck_assert_int_eq(s->max_watchers, 10000);
	ck_assert_int_eq(registry_check(VALID, NULL), 0);
	registry_free(r);
	registry_free(NULL);
}
END_TEST

START_TEST(defaults_without_server_section)
{
	struct err e = {0};
	struct registry *r = registry_load(write_reg(1, ""), &e);
	const struct reg_model *m;

	ck_assert_msg(r != NULL, "%s", e.msg);
	m = registry_model(r, "m");
	ck_assert_str_eq(registry_server(r)->listen, "127.0.0.1:8180");
	ck_assert_int_eq(registry_server(r)->max_queue, 10000);
	ck_assert_int_eq(registry_server(r)->max_body, 1 << 20);
	ck_assert_int_eq(m->idle_timeout_ms, 300000);
	ck_assert_int_eq(m->start_timeout_ms, 120000);
	ck_assert_int_eq(m->step_timeout_ms, 60000);
	ck_assert_int_eq(m->min_instances, 0);
	ck_assert_int_eq(m->max_instances, 1);
	ck_assert_int_eq(m->weight, 100);
	ck_assert_int_eq(m->weight_set, 0);
	ck_assert_int_eq(m->priority, 100);
	ck_assert_int_eq(m->enabled, 1);
	ck_assert_ptr_null(m->fallback);
	/* Two qualities: the default is the cheaper middle one. */
	ck_assert_int_eq(registry_function(r, "F")->default_quality, 0);
	registry_free(r);
}
END_TEST

START_TEST(weight_given_explicitly)
{
	struct err e = {0};
	struct registry *r = registry_load(write_reg(1, "    weight: 100\n"), &e);

	/* The default's value, but given: weight_set tells them apart. */
	ck_assert_msg(r != NULL, "%s", e.msg);
	ck_assert_int_eq(registry_model(r, "m")->weight, 100);
	ck_assert_int_eq(registry_model(r, "m")->weight_set, 1);
	registry_unref(r);
	r = registry_load(write_reg(1, "    weight: 0\n"), &e);
	ck_assert_msg(r != NULL, "%s", e.msg);
	ck_assert_int_eq(registry_model(r, "m")->weight, 0);
	ck_assert_int_eq(registry_model(r, "m")->weight_set, 1);
	registry_unref(r);
}
END_TEST

/* Loads BASE + EXT + extra, which must be valid. Caller unrefs. */
static struct registry *load_ext(const char *extra)
{
	char *yaml = xasprintf("%s%s", EXT, extra);
	struct err e = {0};
	struct registry *r = registry_load(write_reg(1, yaml), &e);

	free(yaml);
	ck_assert_msg(r != NULL, "%s", e.msg);
	return r;
}

/* expect_error() for BASE + EXT + extra. */
static void expect_ext_error(const char *extra, const char *where_what)
{
	char *yaml = xasprintf("%s%s", EXT, extra);

	expect_error(yaml, where_what);
	free(yaml);
}

START_TEST(external_url_is_normalised)
{
	struct registry *r = load_ext("    url: http://localhost\n");
	const struct reg_model *m = registry_model(r, "e");

	/* No port means 80, and the registry says so: the runtime uses what was checked. */
	ck_assert_str_eq(m->url, "http://127.0.0.1:80");
	ck_assert_uint_eq(m->nurls, 1);
	ck_assert_str_eq(m->urls[0], "http://127.0.0.1:80");
	ck_assert_int_eq(m->max_instances, 1);
	registry_unref(r);
	r = load_ext("    url: \"http://[::1]:8188/\"\n");
	ck_assert_str_eq(registry_model(r, "e")->url, "http://[::1]:8188");
	registry_unref(r);
}
END_TEST

START_TEST(external_urls_list)
{
	struct registry *r = load_ext("    urls: [http://127.0.0.1:8188, \"http://[::1]:8189/\", "
				      "http://localhost]\n"
				      "    weight: 0\n");
	const struct reg_model *m = registry_model(r, "e");

	ck_assert_uint_eq(m->nurls, 3);
	ck_assert_str_eq(m->urls[0], "http://127.0.0.1:8188");
	ck_assert_str_eq(m->urls[1], "http://[::1]:8189");
	ck_assert_str_eq(m->urls[2], "http://127.0.0.1:80");
	ck_assert_str_eq(m->url, m->urls[0]);
	/* One runner per URL. */
	ck_assert_int_eq(m->max_instances, 3);
	ck_assert_int_eq(m->min_instances, 0);
	ck_assert_int_eq(m->weight, 0);
	ck_assert_int_eq(m->weight_set, 1);
	registry_unref(r);
	/* Fewer runners than URLs, and some kept warm. */
	r = load_ext("    urls:\n      - http://127.0.0.1:1\n      - http://127.0.0.1:2\n"
		     "      - http://127.0.0.1:3\n"
		     "    max_instances: 2\n    min_instances: 2\n");
	m = registry_model(r, "e");
	ck_assert_uint_eq(m->nurls, 3);
	ck_assert_int_eq(m->max_instances, 2);
	ck_assert_int_eq(m->min_instances, 2);
	registry_unref(r);
}
END_TEST

START_TEST(external_urls_at_the_limit)
{
	struct buf b;
	struct registry *r;

	buf_init(&b, 1 << 16);
	buf_puts(&b, "    urls:\n");
	for (int i = 0; i < REG_MAX_URLS; i++)
		buf_printf(&b, "      - http://127.0.0.1:%d\n", 9000 + i);
	r = load_ext(b.data);
	ck_assert_uint_eq(registry_model(r, "e")->nurls, REG_MAX_URLS);
	ck_assert_int_eq(registry_model(r, "e")->max_instances, REG_MAX_URLS);
	ck_assert_str_eq(registry_model(r, "e")->urls[REG_MAX_URLS - 1], "http://127.0.0.1:9063");
	registry_unref(r);
	/* One more is refused. */
	buf_printf(&b, "      - http://127.0.0.1:%d\n", 9000 + REG_MAX_URLS);
	expect_ext_error(b.data, "21:7: models.e.urls: must be a list of 1 to 64 model server URLs, "
				 "one runner each, e.g. [http://10.0.0.5:8188, http://10.0.0.6:8188]");
	buf_cleanup(&b);
}
END_TEST

START_TEST(error_external_url)
{
	/* What the runtime cannot reach is refused by the check. */
	expect_ext_error("    url: https://127.0.0.1:8188\n",
			 "20:10: models.e.url: https is not supported: model servers are reached over "
			 "plain HTTP on a trusted network (no TLS to them); give http://HOST:PORT, "
			 "e.g. http://127.0.0.1:8188");
	expect_ext_error("    url: http://gpu-box:8188\n",
			 "20:10: models.e.url: host \"gpu-box\" is a name, and fnrun connects to "
			 "model servers by address");
	expect_ext_error("    url: http://127.0.0.1:8188/prompt\n",
			 "20:10: models.e.url: has a path (\"/prompt\"); fnrun adds /prompt, /ws and "
			 "the other routes itself");
	expect_ext_error("    url: http://127.0.0.1:0\n",
			 "20:10: models.e.url: has port 0; give a port from 1 to 65535");
	expect_ext_error("    url: 127.0.0.1:8188\n",
			 "20:10: models.e.url: has no http:// scheme; must be an http:// URL with a "
			 "host and an optional port, e.g. http://127.0.0.1:8188");
	expect_ext_error("    url: \"\"\n", "20:10: models.e.url: is empty; must be an http:// URL");
	expect_ext_error("    url: [http://127.0.0.1:1]\n",
			 "20:10: models.e.url: must be a string: an http:// URL with a host and an "
			 "optional port, e.g. http://127.0.0.1:8188");
	/* url and urls are for external models only. */
	expect_error("    url: http://127.0.0.1:1\n",
		     "15:10: models.m.url: applies only to runtime external; this model's runtime "
		     "is process");
	expect_error("    urls: [http://127.0.0.1:1]\n",
		     "15:11: models.m.urls: applies only to runtime external; this model's runtime "
		     "is process");
}
END_TEST

START_TEST(error_external_urls)
{
	expect_ext_error("", "16:5: models.e.url: is required for runtime external; give the model "
			     "server's URL, e.g. url: http://127.0.0.1:8188, or several as urls: [...]");
	expect_ext_error("    url: http://127.0.0.1:1\n    urls: [http://127.0.0.1:2]\n",
			 "21:11: models.e.urls: give either url (one model server) or urls "
			 "(several), not both");
	expect_ext_error("    urls: []\n",
			 "20:11: models.e.urls: must be a list of 1 to 64 model server URLs");
	expect_ext_error("    urls: http://127.0.0.1:1\n",
			 "20:11: models.e.urls: must be a list of 1 to 64 model server URLs");
	expect_ext_error("    urls: [http://127.0.0.1:1, https://10.0.0.1]\n",
			 "20:32: models.e.urls[1]: https is not supported");
	/* Duplicates are found after normalising. */
	expect_ext_error("    urls: [http://127.0.0.1:8188, http://localhost:8188/]\n",
			 "20:35: models.e.urls[1]: http://127.0.0.1:8188 is already urls[0]; list "
			 "each model server once");
	expect_ext_error("    urls: [http://127.0.0.1, http://127.0.0.1:80]\n",
			 "20:30: models.e.urls[1]: http://127.0.0.1:80 is already urls[0]");
}
END_TEST

START_TEST(error_external_instances)
{
	expect_ext_error("    urls: [http://127.0.0.1:1, http://127.0.0.1:2]\n    max_instances: 3\n",
			 "21:20: models.e.max_instances: is 3, but an external model runs one runner "
			 "per URL; give at most 2 or add URLs");
	expect_ext_error("    url: http://127.0.0.1:1\n    max_instances: 2\n",
			 "21:20: models.e.max_instances: is 2, but an external model runs one runner "
			 "per URL; give at most 1 or add URLs");
	/* min_instances is held against the default of one per URL. */
	expect_ext_error("    urls: [http://127.0.0.1:1, http://127.0.0.1:2]\n    min_instances: 3\n",
			 "21:20: models.e.min_instances: must not exceed max_instances (2)");
}
END_TEST

START_TEST(registry_references)
{
	struct registry *r = load_valid();

	/* Two holders: the first unref leaves it alive for the second. */
	ck_assert_ptr_eq(registry_ref(r), r);
	registry_unref(r);
	ck_assert_str_eq(registry_model(r, "create_image_low")->id, "create_image_low");
	registry_unref(r); /* the last: freed (ASan reports a leak or a double free otherwise) */
	/* registry_free() is the same as unref for an old-style holder. */
	r = load_valid();
	registry_ref(r);
	registry_free(r);
	ck_assert_ptr_nonnull(registry_model(r, "music_final")->workflow);
	registry_unref(r);
	r = load_valid();
	registry_free(r);
	ck_assert_ptr_null(registry_ref(NULL));
	registry_unref(NULL);
	registry_free(NULL);
}
END_TEST

START_TEST(quality_ladder_and_routes)
{
	struct registry *r = load_valid();
	const struct reg_function *f = registry_function(r, "Create Image");
	const struct reg_function *music = registry_function(r, "Make Music");
	const struct reg_model *const *ms;

	ck_assert_int_eq(registry_quality_index(f, "low"), 0);
	ck_assert_int_eq(registry_quality_index(f, "high"), 2);
	ck_assert_int_eq(registry_quality_index(f, "ultra"), -1);
	ck_assert_int_eq(registry_quality_index(f, NULL), 1); /* the middle */
	ck_assert_int_eq(registry_quality_index(music, NULL), 1); /* default_quality: final */
	ck_assert_int_eq(registry_quality_lower(f, 2), 1);
	ck_assert_int_eq(registry_quality_lower(f, 1), 0);
	ck_assert_int_eq(registry_quality_lower(f, 0), -1);
	ck_assert_int_eq(registry_quality_lower(f, 3), -1);
	/* Enabled models of the tier, file order; disabled and auto ones left out. */
	ck_assert_uint_eq(registry_route(r, f, 1, &ms), 2);
	ck_assert_str_eq(ms[0]->id, "create_image_standard");
	ck_assert_str_eq(ms[1]->id, "create_image_standard_b");
	ck_assert_uint_eq(registry_route(r, f, 0, &ms), 1);
	ck_assert_str_eq(ms[0]->id, "create_image_low");
	ck_assert_uint_eq(registry_route(r, f, 2, &ms), 0);
	ck_assert_uint_eq(registry_route(r, f, 3, &ms), 0);
	ck_assert_uint_eq(registry_route(r, f, -1, &ms), 0);
	registry_free(r);
}
END_TEST

/* ---- error classes, each with file:line:col ---- */

START_TEST(error_unknown_key)
{
	int n;
	char *out = check_output(1, "    imagee: x\n", &n);

	ck_assert_int_eq(n, 1);
	ck_assert_ptr_nonnull(strstr(out, "reg.yaml:15:5: models.m.imagee: unknown key; allowed keys: "
					  "function, quality, runtime, command, image, url, urls, env, "
					  "workflow, bind, unbound, resources, idle_timeout, start_timeout, "
					  "step_timeout, min_instances, max_instances, fallback, "
					  "weight, enabled, version, rollout, free_after_job, prewarm, "
					  "target_wait\n"));
	free(out);
	expect_error("    resources: {gpu: 1}\n",
		     "15:17: models.m.resources.gpu: unknown key; allowed keys: gpu_memory, priority");
	expect_error("    quality: low\n", "15:5: models.m.quality: duplicate key; give it once");
}
END_TEST

START_TEST(error_bad_type)
{
	expect_error("    max_instances: many\n",
		     "15:20: models.m.max_instances: must be an integer from 1 to 64");
	expect_error("    max_instances: \"2\"\n",
		     "15:20: models.m.max_instances: must be an integer from 1 to 64");
	expect_error("    resources: {priority: 1001}\n",
		     "15:27: models.m.resources.priority: must be an integer from 0 to 1000");
	expect_error("    enabled: yes\n", "15:14: models.m.enabled: must be true or false");
	expect_error("    runtime: podman\n",
		     "15:14: models.m.runtime: must be one of process, docker, external");
	expect_error("    min_instances: 3\n",
		     "15:20: models.m.min_instances: must not exceed max_instances (1)");
	expect_error("    image: x\n",
		     "15:12: models.m.image: applies only to runtime docker; this model's runtime "
		     "is process");
}
END_TEST

START_TEST(error_bad_param)
{
	char yaml[1024];

	snprintf(yaml, sizeof yaml, "%s",
		 "functions:\n"
		 "  F:\n"
		 "    params:\n"
		 "      a: {type: int, min: abc}\n"
		 "      b: {type: text}\n"
		 "      c: {type: int, default: 5000, max: 10}\n"
		 "      d: {type: string, min: 1}\n"
		 "      e: {type: enum}\n"
		 "      f: {type: bool, required: true, default: true}\n"
		 "    qualities: {low: {label: L, typical_seconds: [3, 1]}}\n");
	{
		int n;
		char *out = check_output(0, yaml, &n);

		ck_assert_int_eq(n, 7);
		ck_assert_ptr_nonnull(strstr(out, "reg.yaml:4:27: functions.F.params.a.min: must be an integer\n"));
		ck_assert_ptr_nonnull(strstr(out, "reg.yaml:5:17: functions.F.params.b.type: must be one of string, int, float, bool, enum\n"));
		ck_assert_ptr_nonnull(strstr(out, "reg.yaml:6:31: functions.F.params.c.default: must be an integer of at most 10 (the param's own limits)\n"));
		ck_assert_ptr_nonnull(strstr(out, "reg.yaml:7:30: functions.F.params.d.min: applies only to int and float params; this param's type is string\n"));
		ck_assert_ptr_nonnull(strstr(out, "reg.yaml:8:10: functions.F.params.e.options: is required for an enum param"));
		ck_assert_ptr_nonnull(strstr(out, "reg.yaml:9:48: functions.F.params.f.default: a required param takes no default"));
		ck_assert_ptr_nonnull(strstr(out, "reg.yaml:10:50: functions.F.qualities.low.typical_seconds: must be [lo, hi] with lo <= hi\n"));
		free(out);
	}
}
END_TEST

START_TEST(error_bad_duration)
{
	expect_error("    idle_timeout: 5\n",
		     "15:19: models.m.idle_timeout: must be a duration from 0s to 720h, such as "
		     "300s, 5m or 250ms");
	expect_error("    step_timeout: 5 minutes\n",
		     "15:19: models.m.step_timeout: must be a duration from 100ms to 24h");
	expect_error("    start_timeout: 10ms\n",
		     "15:20: models.m.start_timeout: must be a duration from 100ms to 24h");
}
END_TEST

START_TEST(error_bad_size)
{
	expect_error("    resources: {gpu_memory: 12XB}\n",
		     "15:29: models.m.resources.gpu_memory: must be a size from 0 bytes to "
		     "1024TB, such as 12GB, 512MB or a byte count");
	expect_error("server: {limits: {max_body: 10}}\n",
		     "15:29: server.limits.max_body: must be a size from 1KB to 1GB");
	expect_error("server: {listen: localhost}\n",
		     "15:18: server.listen: must be HOST:PORT with a port from 0 to 65535");
}
END_TEST

/* server.store, node, lease: several nodes on one PostgreSQL store. */
START_TEST(server_store_node_lease)
{
	struct err e = {0};
	struct registry *r;

	expect_error("server: {store: /var/lib/fnrun.db}\n",
		     "15:17: server.store: must be a PostgreSQL URL");
	expect_error("server: {node: \"gpu a\"}\n",
		     "15:16: server.node: must be 1 to 64 letters, digits");
	expect_error("server: {lease: 10ms}\n", "15:17: server.lease: must be a duration from 1s");
	r = registry_load(write_reg(1, "server: {store: \"postgresql:///fnrun?host=/run/pg\", "
				       "node: gpu-a.1, lease: 30s}\n"), &e);
	ck_assert_msg(r != NULL, "%s", e.msg);
	ck_assert_str_eq(registry_server(r)->store, "postgresql:///fnrun?host=/run/pg");
	ck_assert_str_eq(registry_server(r)->node, "gpu-a.1");
	ck_assert_int_eq(registry_server(r)->lease_ms, 30000);
	registry_free(r);
	r = registry_load(write_reg(1, ""), &e);
	ck_assert_ptr_null(registry_server(r)->store);
	ck_assert_int_eq(registry_server(r)->lease_ms, 10000);
	registry_free(r);
}
END_TEST

/* server.hosts: names the API answers to (DNS rebinding); anything else is refused. */
START_TEST(server_hosts)
{
	static const char *const yes[] = {"127.0.0.1", "[::1]", "[fe80::1]", "localhost",
					  "LocalHost", "10.1.2.3", "gpu-box.lan", "GPU-Box.LAN",
					  "fnrun.example.com"};
	static const char *const no[] = {"evil.example", "127.0.0.1.evil.example", "gpu-box",
					 "", "[::1", "localhost.", "1.2.3", "box.lan.evil"};
	struct err e = {0};
	struct registry *r;

	r = registry_load(write_reg(1, "server: {hosts: [gpu-box.lan, fnrun.example.com]}\n"), &e);
	ck_assert_msg(r != NULL, "%s", e.msg);
	for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++)
		ck_assert_msg(registry_host_ok(r, yes[i], strlen(yes[i])), "%s refused", yes[i]);
	for (size_t i = 0; i < sizeof no / sizeof no[0]; i++)
		ck_assert_msg(!registry_host_ok(r, no[i], strlen(no[i])), "%s taken", no[i]);
	registry_unref(r);
	expect_error("server: {hosts: [gpu-box.lan:8180]}\n",
		     "15:18: server.hosts[0]: must be a host name without a port");
	expect_error("server: {hosts: []}\n",
		     "15:17: server.hosts: must be a list of 1 to 32 host names");
	expect_error("server: {hosts: gpu-box.lan}\n",
		     "15:17: server.hosts: must be a list of 1 to 32 host names");
}
END_TEST

START_TEST(error_missing_function)
{
	expect_error("  m2:\n    function: Make Video\n    quality: low\n"
		     "    command: [w, \"{port}\"]\n    workflow: wf.json\n",
		     "16:15: models.m2.function: unknown function \"Make Video\"; defined "
		     "functions: F");
	expect_error("  m2: {quality: low, command: [w, \"{port}\"], workflow: wf.json}\n",
		     "15:7: models.m2.function: is required; name a function defined under "
		     "functions");
}
END_TEST

START_TEST(error_bad_quality)
{
	expect_error("  m2: {function: F, quality: ultra, command: [w, \"{port}\"], "
		     "workflow: wf.json}\n",
		     "15:30: models.m2.quality: unknown quality \"ultra\" of function F; "
		     "allowed: low, high, auto");
}
END_TEST

START_TEST(error_fallback_unknown)
{
	expect_error("    fallback: m9\n",
		     "15:15: models.m.fallback: unknown model \"m9\"; name another model of "
		     "function F");
	expect_error("    fallback: m\n",
		     "15:15: models.m.fallback: a model cannot fall back to itself");
}
END_TEST

START_TEST(error_fallback_cycle)
{
	int n;
	char *out = check_output(1,
				 "    fallback: m2\n"
				 "  m2: {function: F, quality: high, fallback: m3, command: [w, \"{port}\"], workflow: wf.json}\n"
				 "  m3: {function: F, quality: high, fallback: m, command: [w, \"{port}\"], workflow: wf.json}\n",
				 &n);

	/* One cycle, reported once, at its first model. */
	ck_assert_int_eq(n, 1);
	ck_assert_ptr_nonnull(strstr(out, "reg.yaml:15:15: models.m.fallback: fallback chain "
					  "m -> m2 -> m3 -> m is a cycle"));
	free(out);
}
END_TEST

START_TEST(error_bind_unknown_param)
{
	expect_error("    bind: {prompt: \"6.inputs.text\", steps: \"3.inputs.steps\"}\n",
		     "15:37: models.m.bind.steps: unknown param \"steps\" of function F; its "
		     "params: prompt, seed");
}
END_TEST

START_TEST(error_bind_path)
{
	expect_error("    bind: {prompt: \"7.inputs.text\"}\n",
		     "15:20: models.m.bind.prompt: the workflow has no node \"7\" with inputs; "
		     "its nodes: 3, 6");
	expect_error("    bind: {prompt: \"6.text\"}\n",
		     "15:20: models.m.bind.prompt: must be a workflow path NODE.inputs.NAME, "
		     "e.g. \"6.inputs.text\"");
	expect_error("    bind: {prompt: \"6.inputs.text\", seed: \"6.inputs.text\"}\n",
		     "15:43: models.m.bind.seed: 6.inputs.text is already bound to param prompt");
}
END_TEST

START_TEST(error_workflow_file)
{
	char *yaml = xasprintf("%s", BASE);
	char *p = strstr(yaml, "wf.json");

	memcpy(p, "no.json", 7);
	{
		int n;
		char *out = check_output(0, yaml, &n);

		ck_assert_int_eq(n, 1);
		ck_assert_ptr_nonnull(strstr(out, "reg.yaml:14:15: models.m.workflow: cannot read "
						  "no.json: No such file or directory; give a path "
						  "relative to the registry file's directory\n"));
		free(out);
	}
	write_reg(0, yaml);
	write_tmp("no.json", "{\"3\": {\"class_type\": \"KSampler\", inputs: {}}}");
	{
		struct err e = {0};

		ck_assert_ptr_null(registry_load(reg_path, &e));
		ck_assert_ptr_nonnull(strstr(e.msg, "reg.yaml:14:15: models.m.workflow: no.json is "
						    "not JSON (malformed JSON"));
	}
	write_tmp("no.json", "{\"3\": {\"inputs\": {}}}");
	{
		struct err e = {0};

		ck_assert_ptr_null(registry_load(reg_path, &e));
		ck_assert_ptr_nonnull(strstr(e.msg, "reg.yaml:14:15: models.m.workflow: no.json is "
						    "not a ComfyUI API-format workflow: node \"3\""));
	}
	free(yaml);
}
END_TEST

START_TEST(error_yaml_syntax)
{
	struct err e = {0};
	char *want;

	ck_assert_ptr_null(registry_load(write_reg(0, "functions:\n  F: {a: 1\n  b: 2\n"), &e));
	want = xasprintf("%s:3:4: YAML syntax error: ", reg_path);
	ck_assert_msg(strncmp(e.msg, want, strlen(want)) == 0, "%s", e.msg);
	free(want);
	ck_assert_ptr_null(registry_load(write_reg(0, ""), &e));
}
END_TEST

START_TEST(error_unreadable_registry)
{
	struct err e = {0};
	char *out = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&out, &len);

	ck_assert_ptr_null(registry_load("/nonexistent/reg.yaml", &e));
	ck_assert_int_eq(e.code, ERR_IO);
	ck_assert_str_eq(e.msg, "/nonexistent/reg.yaml: cannot read: No such file or directory");
	ck_assert_int_eq(registry_check("/nonexistent/reg.yaml", f), 1);
	fclose(f);
	ck_assert_str_eq(out, "/nonexistent/reg.yaml: cannot read: No such file or directory\n");
	free(out);
}
END_TEST

START_TEST(failed_reload_keeps_old)
{
	struct registry *old = load_valid();
	struct err e = {0};

	ck_assert_ptr_null(registry_load(write_reg(1, "    weight: -1\n"), &e));
	ck_assert_ptr_nonnull(strstr(e.msg, "models.m.weight: must be an integer from 0 to 1000000"));
	ck_assert_str_eq(registry_function_at(old, 0)->name, "Create Image");
	ck_assert_ptr_nonnull(registry_model(old, "create_image_low")->workflow);
	registry_free(old);
}
END_TEST

START_TEST(error_placeholders)
{
	expect_error("  m2: {function: F, quality: low, command: [w, --port, \"{port}\", \"{prt}\"], "
		     "workflow: wf.json}\n",
		     "15:66: models.m2.command[3]: unknown placeholder {prt}; allowed: {port}, "
		     "{bindir}");
	/* Unquoted {port} is a YAML map, not a string. */
	expect_error("  m2: {function: F, quality: low, command: [w, {port}], workflow: wf.json}\n",
		     "15:48: models.m2.command[1]: must be a string; quote placeholders");
	/* {outdir} is a directory fnrun shares with a process; a container has none. */
	expect_error("  m2: {function: F, quality: low, runtime: docker, image: x, "
		     "command: [w, \"{outdir}\"], workflow: wf.json}\n",
		     "15:75: models.m2.command[1]: {outdir} applies only to runtime process");
}
END_TEST

START_TEST(outdir_placeholder)
{
	struct registry *r;
	struct err e = {0};
	char *a;

	r = registry_load(write_reg(1, "  m3: {function: F, quality: high, command: [w, --port, "
				    "\"{port}\", --output-directory, \"{outdir}\"], workflow: wf.json}\n"),
			  &e);
	ck_assert_msg(r != NULL, "%s", e.msg);
	ck_assert_int_eq(registry_model(r, "m3")->command_outdir, 1);
	ck_assert_int_eq(registry_model(r, "m")->command_outdir, 0);
	a = registry_expand("{outdir}/x-{port}", 9, "/b", "/c", "/runs/r1/output");
	ck_assert_str_eq(a, "/runs/r1/output/x-9");
	free(a);
	registry_free(r);
}
END_TEST

START_TEST(check_counts_every_error)
{
	int n;
	char *out = check_output(1,
				 "    idle_timeout: soon\n"           /* 15 */
				 "    resources: {gpu_memory: lots}\n" /* 16 */
				 "    bogus: 1\n"                      /* 17 */
				 "  m2:\n"                             /* 18 */
				 "    function: G\n"                   /* 19 */
				 "    quality: low\n"                  /* 20 */
				 "    command: [w]\n"                  /* 21 */
				 "    workflow: wf.json\n"             /* 22 */
				 "    fallback: m\n",                  /* 23 */
				 &n);
	char *lines[8];
	int nl = 0;

	ck_assert_int_eq(n, 5);
	for (char *p = strtok(out, "\n"); p != NULL && nl < 8; p = strtok(NULL, "\n"))
		lines[nl++] = strstr(p, "reg.yaml:");
	ck_assert_int_eq(nl, 5);
	/* One per line, in file order. */
	ck_assert_ptr_nonnull(strstr(lines[0], "reg.yaml:15:19: models.m.idle_timeout:"));
	ck_assert_ptr_nonnull(strstr(lines[1], "reg.yaml:16:29: models.m.resources.gpu_memory:"));
	ck_assert_ptr_nonnull(strstr(lines[2], "reg.yaml:17:5: models.m.bogus: unknown key"));
	ck_assert_ptr_nonnull(strstr(lines[3], "reg.yaml:19:15: models.m2.function: unknown function \"G\""));
	ck_assert_ptr_nonnull(strstr(lines[4], "reg.yaml:21:14: models.m2.command: must pass {port}"));
	free(out);
}
END_TEST

/* ---- params ---- */

static int validate(const struct registry *r, const char *json, struct json_object **out,
		    struct err *e)
{
	struct json_object *in = json_tokener_parse(json);
	int rc;

	ck_assert_ptr_nonnull(in);
	rc = registry_validate_params(registry_function(r, "Create Image"), in, out, e);
	json_object_put(in);
	return rc;
}

static void expect_invalid(const struct registry *r, const char *json, const char *msg)
{
	struct json_object *out = (struct json_object *)1;
	struct err e = {0};

	ck_assert_int_eq(validate(r, json, &out, &e), -1);
	ck_assert_ptr_null(out);
	ck_assert_int_eq(e.code, ERR_INVALID);
	ck_assert_str_eq(e.msg, msg);
}

START_TEST(params_rejects_bad_input)
{
	struct registry *r = load_valid();
	struct err e = {0};
	struct json_object *out, *arr = json_object_new_array();

	ck_assert_int_eq(registry_validate_params(registry_function(r, "Create Image"), arr, &out, &e),
			 -1);
	ck_assert_str_eq(e.msg, "params: must be an object");
	json_object_put(arr);
	expect_invalid(r, "{}", "params.prompt: is required");
	expect_invalid(r, "{\"prompt\": null}", "params.prompt: is required");
	expect_invalid(r, "{\"prompt\": \"a\", \"steps\": 4}",
		       "params.steps: unknown param of Create Image; allowed: prompt, width, seed, "
		       "cfg, tiled, sampler, style");
	expect_invalid(r, "{\"prompt\": 5}", "params.prompt: must be a string of at most 20 characters");
	expect_invalid(r, "{\"prompt\": \"aaaaaaaaaaaaaaaaaaaaa\"}",
		       "params.prompt: must be a string of at most 20 characters");
	expect_invalid(r, "{\"prompt\": \"a\", \"width\": \"512\"}",
		       "params.width: must be an integer from 256 to 2048");
	expect_invalid(r, "{\"prompt\": \"a\", \"width\": 512.5}",
		       "params.width: must be an integer from 256 to 2048");
	expect_invalid(r, "{\"prompt\": \"a\", \"width\": 4096}",
		       "params.width: must be an integer from 256 to 2048");
	expect_invalid(r, "{\"prompt\": \"a\", \"width\": 255}",
		       "params.width: must be an integer from 256 to 2048");
	expect_invalid(r, "{\"prompt\": \"a\", \"seed\": 1.0}", "params.seed: must be an integer");
	expect_invalid(r, "{\"prompt\": \"a\", \"cfg\": 20.5}", "params.cfg: must be a number from 1 to 20");
	expect_invalid(r, "{\"prompt\": \"a\", \"cfg\": \"7\"}", "params.cfg: must be a number from 1 to 20");
	expect_invalid(r, "{\"prompt\": \"a\", \"tiled\": 1}", "params.tiled: must be true or false");
	expect_invalid(r, "{\"prompt\": \"a\", \"sampler\": \"heun\"}",
		       "params.sampler: must be one of euler, ddim");
	registry_free(r);
}
END_TEST

START_TEST(params_fills_defaults)
{
	struct registry *r = load_valid();
	struct json_object *out = NULL;
	struct err e = {0};
	int64_t seed;

	/* 20 characters of UTF-8 (40 bytes) fit max_length 20. */
	ck_assert_int_eq(validate(r, "{\"prompt\": \"\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9"
				     "\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9"
				     "\\u00e9\\u00e9\\u00e9\\u00e9\", \"cfg\": 3, \"style\": null}",
				  &out, &e),
			 0);
	ck_assert_int_eq(json_get_int(out, "width", 0), 1024);
	ck_assert_int_eq(json_object_get_type(json_get(out, "cfg")), json_type_double);
	ck_assert_double_eq(json_object_get_double(json_get(out, "cfg")), 3.0);
	ck_assert_int_eq(json_get_bool(out, "tiled", 1), 0);
	ck_assert_str_eq(json_get_str(out, "sampler"), "euler");
	ck_assert_ptr_null(json_get(out, "style")); /* no default: absent */
	seed = json_get_int(out, "seed", -1);
	ck_assert_int_ge(seed, 0);
	ck_assert_int_lt(seed, 1LL << 53);
	/* In param order. */
	{
		const char *order[] = {"prompt", "width", "seed", "cfg", "tiled", "sampler"};
		int i = 0;

		json_object_object_foreach(out, k, v) {
			(void)v;
			ck_assert_str_eq(k, order[i++]);
		}
		ck_assert_int_eq(i, 6);
	}
	json_object_put(out);
	/* Given values win; a big uint64 seed stays exact. */
	ck_assert_int_eq(validate(r, "{\"prompt\": \"a\", \"width\": 2048, \"seed\": 18446744073709551615, "
				     "\"cfg\": 1.5, \"tiled\": true, \"sampler\": \"ddim\"}",
				  &out, &e),
			 0);
	ck_assert_int_eq(json_get_int(out, "width", 0), 2048);
	ck_assert_uint_eq(json_object_get_uint64(json_get(out, "seed")), UINT64_MAX);
	ck_assert_double_eq(json_object_get_double(json_get(out, "cfg")), 1.5);
	ck_assert_str_eq(json_get_str(out, "sampler"), "ddim");
	json_object_put(out);
	/* Random seeds differ between requests. */
	{
		struct json_object *a, *b;

		ck_assert_int_eq(validate(r, "{\"prompt\": \"a\"}", &a, &e), 0);
		ck_assert_int_eq(validate(r, "{\"prompt\": \"a\"}", &b, &e), 0);
		ck_assert_int_ne(json_get_int(a, "seed", 0), json_get_int(b, "seed", 0));
		json_object_put(a);
		json_object_put(b);
	}
	/* NULL params count as {}. */
	ck_assert_int_eq(registry_validate_params(registry_function(r, "Make Music"), NULL, &out, &e), 0);
	ck_assert_int_eq(json_get_int(out, "length", 0), 10);
	json_object_put(out);
	registry_free(r);
}
END_TEST

/* ---- bind ---- */

START_TEST(bind_writes_into_a_copy)
{
	struct registry *r = load_valid();
	const struct reg_model *m = registry_model(r, "create_image_standard");
	struct json_object *params, *wf = NULL;
	struct err e = {0};
	char *before = json_dumps(m->workflow), *after;

	ck_assert_int_eq(validate(r, "{\"prompt\": \"a lighthouse\", \"width\": 768}", &params, &e), 0);
	ck_assert_int_eq(registry_bind(m, params, &wf, &e), 0);
	ck_assert_ptr_ne(wf, m->workflow);
	ck_assert_str_eq(json_get_str(json_get_obj(json_get(wf, "6"), "inputs"), "text"),
			 "a lighthouse");
	ck_assert_int_eq(json_get_int(json_get_obj(json_get(wf, "5"), "inputs"), "width", 0), 768);
	ck_assert_int_eq(json_get_int(json_get_obj(json_get(wf, "5"), "inputs"), "height", 0), 768);
	/* Unbound inputs and links are kept. */
	ck_assert_int_eq(json_get_int(json_get_obj(json_get(wf, "3"), "inputs"), "steps", 0), 4);
	ck_assert_ptr_nonnull(json_get_arr(json_get_obj(json_get(wf, "6"), "inputs"), "clip"));
	/* The template is untouched. */
	after = json_dumps(m->workflow);
	ck_assert_str_eq(before, after);
	json_object_put(wf);
	free(after);
	/* Another model binds the seed too. */
	m = registry_model(r, "create_image_low");
	ck_assert_int_eq(registry_bind(m, params, &wf, &e), 0);
	ck_assert_int_eq(json_get_int(json_get_obj(json_get(wf, "3"), "inputs"), "seed", -1),
			 json_get_int(params, "seed", -2));
	ck_assert_double_eq(json_object_get_double(json_get(json_get_obj(json_get(wf, "3"), "inputs"), "cfg")), 7.5);
	json_object_put(wf);
	ck_assert_int_eq(registry_bind(m, NULL, &wf, &e), -1);
	ck_assert_ptr_null(wf);
	json_object_put(params);
	free(before);
	registry_free(r);
}
END_TEST

/* ---- catalog ---- */

START_TEST(catalog_is_public)
{
	struct registry *r = load_valid();
	struct json_object *cat = registry_catalog(r), *f, *qs, *params;
	char *text = json_dumps(cat);

	f = json_object_array_get_idx(json_get_arr(cat, "functions"), 0);
	ck_assert_str_eq(json_get_str(f, "name"), "Create Image");
	ck_assert_str_eq(json_get_str(f, "description"), "Makes a picture from a prompt");
	ck_assert_str_eq(json_get_str(f, "output"), "image");
	ck_assert_str_eq(json_get_str(f, "default_quality"), "standard");
	params = json_get_obj(f, "params");
	ck_assert_str_eq(json_get_str(json_get(params, "width"), "type"), "int");
	ck_assert_int_eq(json_get_int(json_get(params, "width"), "default", 0), 1024);
	ck_assert_int_eq(json_get_int(json_get(params, "width"), "min", 0), 256);
	ck_assert_int_eq(json_get_int(json_get(params, "width"), "max", 0), 2048);
	ck_assert_int_eq(json_get_bool(json_get(params, "prompt"), "required", 0), 1);
	ck_assert_int_eq(json_get_int(json_get(params, "prompt"), "max_length", 0), 20);
	ck_assert_int_eq(json_get_bool(json_get(params, "seed"), "random", 0), 1);
	ck_assert_uint_eq(json_object_array_length(json_get_arr(json_get(params, "sampler"), "options")), 2);
	qs = json_get_arr(f, "qualities");
	ck_assert_uint_eq(json_object_array_length(qs), 3);
	ck_assert_str_eq(json_get_str(json_object_array_get_idx(qs, 0), "key"), "low");
	ck_assert_str_eq(json_get_str(json_object_array_get_idx(qs, 2), "label"), "Maximum Detail");
	ck_assert_int_eq(json_object_get_int(json_object_array_get_idx(
				 json_get_arr(json_object_array_get_idx(qs, 2), "typical_seconds"), 1)),
			 180);
	ck_assert_int_eq(json_get_bool(json_object_array_get_idx(qs, 0), "available", 0), 1);
	ck_assert_int_eq(json_get_bool(json_object_array_get_idx(qs, 1), "available", 0), 1);
	/* Only a disabled model serves high. */
	ck_assert_int_eq(json_get_bool(json_object_array_get_idx(qs, 2), "available", 1), 0);
	/* Nothing about models reaches users. */
	for (size_t i = 0; i < registry_model_count(r); i++)
		ck_assert_ptr_null(strstr(text, registry_model_at(r, i)->id));
	ck_assert_ptr_null(strstr(text, "studio/flux"));
	ck_assert_ptr_null(strstr(text, "fnrun-worker"));
	ck_assert_ptr_null(strstr(text, "docker"));
	ck_assert_ptr_null(strstr(text, "process"));
	ck_assert_ptr_null(strstr(text, "external"));
	ck_assert_ptr_null(strstr(text, "127.0.0.1"));
	ck_assert_ptr_null(strstr(text, "workflow"));
	ck_assert_ptr_null(strstr(text, "runtime"));
	free(text);
	json_object_put(cat);
	registry_free(r);
}
END_TEST

Suite *suite_registry(void)
{
	Suite *s = suite_create("registry");
	TCase *tc = tcase_create("registry");

	/* Milliseconds alone, but seconds on a loaded machine under ASan. */
	tcase_set_timeout(tc, 30);

	tcase_add_checked_fixture(tc, NULL, teardown);
	tcase_add_test(tc, valid_registry_loads);
	tcase_add_test(tc, defaults_without_server_section);
	tcase_add_test(tc, weight_given_explicitly);
	tcase_add_test(tc, external_url_is_normalised);
	tcase_add_test(tc, external_urls_list);
	tcase_add_test(tc, external_urls_at_the_limit);
	tcase_add_test(tc, error_external_url);
	tcase_add_test(tc, error_external_urls);
	tcase_add_test(tc, error_external_instances);
	tcase_add_test(tc, registry_references);
	tcase_add_test(tc, quality_ladder_and_routes);
	tcase_add_test(tc, error_unknown_key);
	tcase_add_test(tc, error_bad_type);
	tcase_add_test(tc, error_bad_param);
	tcase_add_test(tc, error_bad_duration);
	tcase_add_test(tc, error_bad_size);
	tcase_add_test(tc, server_store_node_lease);
	tcase_add_test(tc, server_hosts);
	tcase_add_test(tc, error_missing_function);
	tcase_add_test(tc, error_bad_quality);
	tcase_add_test(tc, error_fallback_unknown);
	tcase_add_test(tc, error_fallback_cycle);
	tcase_add_test(tc, error_bind_unknown_param);
	tcase_add_test(tc, error_bind_path);
	tcase_add_test(tc, error_workflow_file);
	tcase_add_test(tc, error_yaml_syntax);
	tcase_add_test(tc, error_unreadable_registry);
	tcase_add_test(tc, error_placeholders);
	tcase_add_test(tc, outdir_placeholder);
	tcase_add_test(tc, failed_reload_keeps_old);
	tcase_add_test(tc, check_counts_every_error);
	tcase_add_test(tc, params_rejects_bad_input);
	tcase_add_test(tc, params_fills_defaults);
	tcase_add_test(tc, bind_writes_into_a_copy);
	tcase_add_test(tc, catalog_is_public);
	suite_add_tcase(s, tc);
	return s;
}
