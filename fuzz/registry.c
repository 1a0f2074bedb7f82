/*
 * registry.c - libFuzzer target: registry YAML through registry_load()
 * (libyaml, the key tables, every section's readers and their error
 * paths, bind paths, fallbacks, URLs), and on success the lookups the
 * gateway makes of a loaded registry: the catalog, routes, messages,
 * command expansion and param validation with defaults.
 *
 * The input is written to registry.yaml in a private directory that also
 * holds wf.json, a small API-format workflow, so models may name a
 * workflow that loads. Checks beside the sanitizers: registry_load()
 * fails exactly when registry_check() finds errors, and a failure carries
 * a message.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "json.h"
#include "registry.h"

static const char workflow_json[] =
	"{\"3\": {\"class_type\": \"KSampler\", \"inputs\": {\"seed\": 0, \"steps\": 4}},\n"
	" \"6\": {\"class_type\": \"CLIPTextEncode\", \"inputs\": {\"text\": \"\"}},\n"
	" \"9\": {\"class_type\": \"SaveImage\", \"inputs\": {\"images\": [\"3\", 0]}}}\n";

static const char *dir;
static char path[512];
static FILE *devnull;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	fuzz_quiet();
	dir = fuzz_tmpdir();
	fuzz_write(dir, "wf.json", workflow_json, sizeof workflow_json - 1);
	snprintf(path, sizeof path, "%s/registry.yaml", dir);
	devnull = fopen("/dev/null", "w");
	if (devnull == NULL)
		fuzz_fail("/dev/null");
	return 0;
}

/* The lookups of a loaded registry, each quality of each function. */
static void use(const struct registry *r)
{
	struct json_object *cat = registry_catalog(r), *out = NULL;
	struct err err = {0};
	char *text = json_dumps(cat);

	free(text);
	json_object_put(cat);
	for (size_t i = 0; i < registry_function_count(r); i++) {
		const struct reg_function *f = registry_function_at(r, i);
		const struct reg_model *const *models;

		for (int q = 0; q < (int)f->nqualities; q++) {
			(void)registry_route(r, f, q, &models);
			(void)registry_quality_lower(f, q);
		}
		for (int p = 0; p < REG_PHASE_COUNT; p++)
			(void)registry_message(f, p);
		if (registry_validate_params(f, NULL, &out, &err) == 0)
			json_object_put(out); /* every param optional: the defaults */
	}
	for (size_t i = 0; i < registry_model_count(r); i++) {
		const struct reg_model *m = registry_model_at(r, i);

		for (size_t a = 0; a < m->ncommand; a++)
			free(registry_expand(m->command[a], 8188, "/bin", dir, "/out"));
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct err err = {0};
	struct registry *r;

	fuzz_write(dir, "registry.yaml", data, size);
	r = registry_load(path, &err);
	if (r != NULL) {
		use(r);
		if (registry_check(path, devnull) != 0)
			fuzz_fail("loaded, yet registry_check finds errors");
		registry_unref(r);
	} else {
		if (err.msg[0] == '\0')
			fuzz_fail("refused without a message");
		if (registry_check(path, devnull) == 0)
			fuzz_fail("refused, yet registry_check finds no error");
	}
	return 0;
}
