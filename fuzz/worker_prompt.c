/*
 * worker_prompt.c - libFuzzer target: a POST /prompt body of fnrun-worker
 * as on_post_prompt() (worker/api.c) takes it, JSON of at most 64 levels,
 * an object, its "prompt" an object, then prompt_validate() with
 * "partial_execution_targets" (class lookups, links followed
 * recursively, every literal input coerced and checked as ComfyUI 0.3.64
 * does), and the reply it would send, written out.
 *
 * The node classes are the sim model's (SimTextEncode, SimSampler, the
 * built-in image nodes, SimVideoSampler, CreateVideo, SaveVideo) plus an
 * exec config with every input type, registered once. Checks beside the
 * sanitizers: a refused prompt has an error object, an accepted one a
 * non-empty array of outputs.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "json.h"
#include "model_exec.h"
#include "model_sim.h"
#include "prompt.h"

#define PROMPT_MAX_DEPTH 64 /* as worker/api.c */

static const char exec_yaml[] =
	"nodes:\n"
	"  FuzzGen:\n"
	"    inputs:\n"
	"      text:  {type: STRING, multiline: true, default: hello, max_length: 100}\n"
	"      mode:  {type: COMBO, options: [ok, fail, \"1\", \"\"], default: ok}\n"
	"      steps: {type: INT, default: 3, min: -4, max: 100, step: 2}\n"
	"      scale: {type: FLOAT, default: 0.5, min: 0.0, max: 1.0, step: 0.01}\n"
	"      loud:  {type: BOOLEAN, default: false}\n"
	"      note:  {type: STRING, required: false}\n"
	"    command: [/bin/true, \"{mode}\", \"{steps}\", \"{scale}\", \"{loud}\", \"{output}\"]\n"
	"    stdin: \"{text}{note}\"\n"
	"    output: {kind: audio, ext: txt, prefix: fuzz}\n";

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char *dir = fuzz_tmpdir();
	char path[512];
	struct err err = {0};

	fuzz_quiet();
	model_sim_register();
	fuzz_write(dir, "exec.yaml", exec_yaml, sizeof exec_yaml - 1);
	snprintf(path, sizeof path, "%s/exec.yaml", dir);
	if (model_exec_load(path, &err) < 0)
		fuzz_fail(err.msg);
	return 0;
}

/* The 400 or 200 body on_post_prompt() would write. */
static void reply(int rc, const struct prompt_result *res)
{
	struct json_object *o = json_object_new_object();
	char *text;

	if (rc < 0) {
		json_put(o, "error", json_object_get(json_get(res->error, "error")));
	} else {
		json_put(o, "prompt_id", json_str("fuzz"));
		json_put(o, "outputs", json_object_get(res->outputs));
	}
	json_put(o, "node_errors", json_object_get(res->node_errors));
	text = json_dumps(o);
	free(text);
	json_object_put(o);
}

static void validate(struct json_object *body, struct json_object *prompt)
{
	struct prompt_result res;
	int rc = prompt_validate(prompt, json_get_arr(body, "partial_execution_targets"), &res);

	if (rc < 0 && !json_object_is_type(json_get(res.error, "error"), json_type_object))
		fuzz_fail("refused without an error object");
	if (rc == 0 && (!json_object_is_type(res.outputs, json_type_array) ||
			json_object_array_length(res.outputs) == 0))
		fuzz_fail("accepted without outputs");
	reply(rc, &res);
	prompt_result_cleanup(&res);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct json_object *body = NULL, *prompt;
	struct err err = {0};

	if (json_parse((const char *)data, size, PROMPT_MAX_DEPTH, &body, &err) < 0)
		return 0; /* the worker answers 500, as ComfyUI does */
	prompt = json_get(body, "prompt");
	if (json_object_is_type(body, json_type_object) &&
	    json_object_is_type(prompt, json_type_object))
		validate(body, prompt);
	json_object_put(body);
	return 0;
}
