/*
 * generate.c - libFuzzer target: a POST /api/generate body through
 * api_generate_parse() (strict JSON, the fields, the function and quality,
 * every param type's checks and defaults), against a fixed registry loaded
 * once; an accepted request is then bound into its model's workflow as the
 * scheduler does (registry_bind) and written out (json_dumps).
 *
 * Checks beside the sanitizers: a refusal is ERR_INVALID with a message and
 * leaves nothing in *out; an acceptance has a function, a quality of it, a
 * priority in 0..10 and validated params.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "fuzz_util.h"
#include "json.h"
#include "registry.h"

/* Every param type, bound paths, two functions, a fallback and a disabled model. */
static const char registry_yaml[] =
	"functions:\n"
	"  Create Image:\n"
	"    output: image\n"
	"    params:\n"
	"      prompt: {type: string, required: true, max_length: 20}\n"
	"      width:  {type: int, default: 1024, min: 256, max: 2048}\n"
	"      seed:   {type: int, default: random}\n"
	"      cfg:    {type: float, default: 7.5, min: 1, max: 20}\n"
	"      tiled:  {type: bool, default: false}\n"
	"      sampler: {type: enum, options: [euler, ddim, \"é\"], default: euler}\n"
	"      style:  {type: string, description: An optional style}\n"
	"    qualities:\n"
	"      low:      {label: Fast Preview,   typical_seconds: [10, 30]}\n"
	"      standard: {label: Balanced,       typical_seconds: [30, 60]}\n"
	"      high:     {label: Maximum Detail, typical_seconds: [60, 180]}\n"
	"  Make Music:\n"
	"    output: audio\n"
	"    params:\n"
	"      length: {type: int, default: 10, min: -5, max: 60}\n"
	"      gain:   {type: float, min: -1.5, max: 1e3}\n"
	"    qualities:\n"
	"      draft: {label: Draft, typical_seconds: [5, 10]}\n"
	"      final: {label: Final, typical_seconds: [20, 40]}\n"
	"    default_quality: final\n"
	"models:\n"
	"  image_low:\n"
	"    function: Create Image\n"
	"    quality: low\n"
	"    command: [fnrun-worker, --port, \"{port}\"]\n"
	"    workflow: wf.json\n"
	"    bind: {prompt: \"6.inputs.text\", width: [\"5.inputs.width\", \"5.inputs.height\"],\n"
	"           seed: \"3.inputs.seed\", cfg: \"3.inputs.cfg\", tiled: \"3.inputs.tiled\",\n"
	"           sampler: \"3.inputs.sampler\", style: \"6.inputs.style\"}\n"
	"    fallback: image_off\n"
	"  image_off:\n"
	"    function: Create Image\n"
	"    quality: high\n"
	"    command: [fnrun-worker, --port, \"{port}\"]\n"
	"    workflow: wf.json\n"
	"    enabled: false\n"
	"  image_standard:\n"
	"    function: Create Image\n"
	"    quality: standard\n"
	"    runtime: external\n"
	"    url: http://127.0.0.1:8188\n"
	"    workflow: wf.json\n"
	"  music_final:\n"
	"    function: Make Music\n"
	"    quality: final\n"
	"    command: [fnrun-worker, --port, \"{port}\"]\n"
	"    workflow: wf.json\n"
	"    bind: {length: \"3.inputs.steps\", gain: \"3.inputs.cfg\"}\n";

static const char workflow_json[] =
	"{\"3\": {\"class_type\": \"KSampler\", \"inputs\": {\"seed\": 0, \"steps\": 4, "
	"\"cfg\": 7.0, \"model\": [\"4\", 0]}},\n"
	" \"4\": {\"class_type\": \"CheckpointLoaderSimple\", \"inputs\": {\"ckpt_name\": "
	"\"sim.safetensors\"}},\n"
	" \"5\": {\"class_type\": \"EmptyLatentImage\", \"inputs\": {\"width\": 512, "
	"\"height\": 512, \"batch_size\": 1}},\n"
	" \"6\": {\"class_type\": \"CLIPTextEncode\", \"inputs\": {\"text\": \"\", "
	"\"clip\": [\"4\", 1]}},\n"
	" \"9\": {\"class_type\": \"SaveImage\", \"inputs\": {\"images\": [\"3\", 0], "
	"\"filename_prefix\": \"fr\"}}}\n";

static struct registry *reg;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char *dir = fuzz_tmpdir();
	char path[512];
	struct err err = {0};

	fuzz_quiet();
	fuzz_write(dir, "wf.json", workflow_json, sizeof workflow_json - 1);
	fuzz_write(dir, "registry.yaml", registry_yaml, sizeof registry_yaml - 1);
	snprintf(path, sizeof path, "%s/registry.yaml", dir);
	reg = registry_load(path, &err);
	if (reg == NULL)
		fuzz_fail(err.msg);
	return 0;
}

/* What the scheduler does with an accepted request: bind it into each model's workflow. */
static void bind_all(const struct api_generate *g)
{
	const struct reg_model *const *models;
	size_t n = registry_route(reg, g->fn, g->quality, &models);
	struct err err = {0};

	for (size_t i = 0; i < n; i++) {
		struct json_object *wf = NULL;
		char *text;

		if (registry_bind(models[i], g->params, &wf, &err) < 0)
			fuzz_fail("registry_bind refused validated params");
		text = json_dumps(wf);
		free(text);
		json_object_put(wf);
	}
}

static void check_accepted(const struct api_generate *g)
{
	char *text;

	if (g->fn == NULL || g->quality < 0 || (size_t)g->quality >= g->fn->nqualities)
		fuzz_fail("accepted without a function and quality");
	if (g->priority < 0 || g->priority > API_PRIORITY_MAX || g->params == NULL)
		fuzz_fail("accepted with a bad priority or no params");
	if (g->idem && (g->idem[0] == '\0' || strlen(g->idem) > 4 * API_IDEM_MAX))
		fuzz_fail("accepted a bad idempotency key");
	text = json_dumps(g->params);
	free(text);
	bind_all(g);
}

static void check_refused(const struct api_generate *g, const struct err *err)
{
	if (err->code != ERR_INVALID || err->msg[0] == '\0')
		fuzz_fail("refused without ERR_INVALID and a message");
	if (g->fn || g->params || g->sent || g->idem)
		fuzz_fail("refused but *out holds something");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct api_generate g;
	struct err err = {0};

	if (api_generate_parse(reg, (const char *)data, size, 32, &g, &err) == 0) {
		check_accepted(&g);
		api_generate_cleanup(&g);
	} else {
		check_refused(&g, &err);
	}
	return 0;
}
