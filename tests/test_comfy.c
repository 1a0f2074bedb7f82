/*
 * test_comfy.c - the ComfyUI client's pure steps (comfy.h) against the
 * shapes a real ComfyUI 0.3.64 sends: out-of-memory errors in PyTorch's
 * own words (comfy_is_oom), progress_state frames from the recording
 * (read without parsing and parsed in full, to the same share of nodes
 * done; comfy_progress_note), and the outputs of every kind its nodes
 * list in /history and in `executed` frames (comfy_history_read,
 * comfy_outputs_add): images, animated images, videos, audio,
 * VideoHelperSuite's gifs; previews and text left out.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "comfy.h"
#include "json.h"
#include "testutil.h"

START_TEST(oom_recognised_from_pytorch_texts)
{
	static const struct {
		const char *type, *msg;
		int oom;
	} cases[] = {
		{"torch.OutOfMemoryError", "CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a "
		 "total capacity of 79.11 GiB of which 1.06 GiB is free.\nThis error means you ran out "
		 "of memory on your GPU.", 1},
		{"torch.cuda.OutOfMemoryError", "CUDA out of memory. Tried to allocate 20.00 MiB", 1},
		{"torch.OutOfMemoryError", "Allocation on device 0 would exceed allowed memory. (out of "
		 "memory)\nCurrently allocated     : 78.12 GiB\n", 1},
		{NULL, "Allocation on device 0 would exceed allowed memory. (out of memory)", 1},
		{"torch.cuda.OutOfMemoryError", NULL, 1},
		{"RuntimeError", "CUDA error: out of memory\nCUDA kernel errors might be asynchronously "
		 "reported at some other API call", 1},
		{"torch.AcceleratorError", "CUDA error: out of memory", 1},
		{"RuntimeError", "CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`", 1},
		{"RuntimeError", "HIP out of memory. Tried to allocate 1.50 GiB", 1},
		{"RuntimeError", "MPS backend out of memory (MPS allocated: 17.00 GB)", 1},
		{"RuntimeError", "Out Of Memory while decoding", 1},
		{"ValueError", "height out of range: 9000", 0},
		{"RuntimeError", "Expected all tensors to be on the same device, but found cuda:0 and cpu", 0},
		{"RuntimeError", "sim sampler failed at step 1 of 8", 0},
		{"Exception", "memory_format is not supported", 0},
		{NULL, NULL, 0},
	};

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
		ck_assert_msg(comfy_is_oom(cases[i].type, cases[i].msg) == cases[i].oom,
			      "case %zu: %s / %s", i, cases[i].type ? cases[i].type : "-",
			      cases[i].msg ? cases[i].msg : "-");
}
END_TEST

/* What a progress_state's nodes add up to, counted here from its parse. */
static void nodes_expected(struct json_object *nodes, double *finished, double *running,
			   double *count)
{
	*finished = *running = *count = 0;
	json_object_object_foreach(nodes, id, e) {
		const char *st = json_get_str(e, "state");
		double v = json_object_get_double(json_get(e, "value"));
		double m = json_object_get_double(json_get(e, "max"));

		(void)id;
		*count += 1;
		if (strcmp(st, "finished") == 0)
			*finished += 1;
		else if (strcmp(st, "running") == 0 && m > 0)
			*running += v / m;
	}
}

/* Decodes text, as sent and re-written compactly; both paths must agree with the parse. */
static void check_state_frame(const char *text)
{
	struct json_object *o = json_tokener_parse(text), *data, *doc;
	const char *compact;
	struct comfy_event ev;
	double finished, running, count;
	char pid[160];

	ck_assert_ptr_nonnull(o);
	data = json_get_obj(o, "data");
	nodes_expected(json_get_obj(data, "nodes"), &finished, &running, &count);
	ck_assert_int_eq(comfy_ws_decode(text, strlen(text), pid, sizeof pid, &ev, &doc), 1);
	ck_assert_ptr_null(doc); /* json.dumps's layout: read without parsing */
	ck_assert_int_eq(ev.type, COMFY_EV_NODES);
	ck_assert_str_eq(ev.prompt_id, json_get_str(data, "prompt_id"));
	ck_assert(ev.value == finished && fabs(ev.running - running) < 1e-9 && ev.max == count);
	compact = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
	ck_assert_int_eq(comfy_ws_decode(compact, strlen(compact), pid, sizeof pid, &ev, &doc), 1);
	ck_assert_ptr_nonnull(doc); /* another layout: parsed in full, same result */
	ck_assert_int_eq(ev.type, COMFY_EV_NODES);
	ck_assert(ev.value == finished && fabs(ev.running - running) < 1e-9 && ev.max == count);
	json_object_put(doc);
	json_object_put(o);
}

START_TEST(progress_state_frames_give_the_share_of_nodes_done)
{
	char path[600], *text, *line, *save;
	struct comfy_progress p = {.nodes = 8};
	struct comfy_event ev = {0};
	int frames = 0;

	snprintf(path, sizeof path, "%s/fixtures/comfyui/comfy-transcript.jsonl", tu_shared());
	text = tu_read_file(path, NULL);
	ck_assert_ptr_nonnull(text);
	for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		struct json_object *o;

		if (!strstr(line, "\"msg_type\": \"progress_state\""))
			continue;
		o = json_tokener_parse(line);
		check_state_frame(json_get_str(o, "text"));
		json_object_put(o);
		frames++;
	}
	free(text);
	ck_assert_int_ge(frames, 8);
	/* A sampler at step 5 of 20 beside two finished nodes. */
	check_state_frame("{\"type\": \"progress_state\", \"data\": {\"prompt_id\": \"p\", \"nodes\": {"
			  "\"1\": {\"value\": 1, \"max\": 1, \"state\": \"finished\", \"node_id\": \"1\"},"
			  " \"2\": {\"value\": 1.0, \"max\": 1.0, \"state\": \"finished\", \"node_id\": \"2\"},"
			  " \"3\": {\"value\": 5.0, \"max\": 20.0, \"state\": \"running\", \"node_id\": \"3\"}}}}");
	/* Nodes done; then a sampler's steps carry the rest; never above 1. */
	ev.type = COMFY_EV_NODES, ev.value = 1, ev.running = 0, ev.max = 2;
	ck_assert(fabs(comfy_progress_note(&p, &ev) - 0.125) < 1e-9);
	ev.running = 0.5;
	ck_assert(fabs(comfy_progress_note(&p, &ev) - 0.1875) < 1e-9);
	ev.type = COMFY_EV_PROGRESS, ev.value = 10, ev.max = 20;
	ck_assert(fabs(comfy_progress_note(&p, &ev) - (0.125 + 0.875 * 0.5)) < 1e-9);
	ev.type = COMFY_EV_NODES, ev.value = 6, ev.running = 0, ev.max = 7;
	ck_assert(fabs(comfy_progress_note(&p, &ev) - 0.75) < 1e-9);
	ev.type = COMFY_EV_NODES, ev.value = 10, ev.max = 10; /* expanded: more nodes than listed */
	ck_assert(fabs(comfy_progress_note(&p, &ev) - 1.0) < 1e-9);
	ev.type = COMFY_EV_EXECUTED;
	ck_assert(comfy_progress_note(&p, &ev) < 0);
}
END_TEST

/* The UI dicts of ComfyUI 0.3.64's output nodes (and VideoHelperSuite's), by node id. */
static const char every_kind[] =
	"{\"9\": {\"images\": [{\"filename\": \"ComfyUI_00001_.png\", \"subfolder\": \"\", \"type\": \"output\"}]},"
	" \"10\": {\"images\": [{\"filename\": \"ComfyUI_temp_abcde_00001_.png\", \"subfolder\": \"\", \"type\": \"temp\"}], \"animated\": [false]},"
	" \"11\": {\"images\": [{\"filename\": \"anim_00001_.webp\", \"subfolder\": \"\", \"type\": \"output\"}], \"animated\": [true]},"
	" \"12\": {\"images\": [{\"filename\": \"anim_00001_.png\", \"subfolder\": \"\", \"type\": \"output\"}], \"animated\": [true]},"
	" \"13\": {\"images\": [{\"filename\": \"ComfyUI_00001_.mp4\", \"subfolder\": \"video\", \"type\": \"output\"}], \"animated\": [true]},"
	" \"14\": {\"images\": [{\"filename\": \"ComfyUI_00001_.webm\", \"subfolder\": \"\", \"type\": \"output\"}], \"animated\": [true]},"
	" \"15\": {\"audio\": [{\"filename\": \"ComfyUI_00001_.flac\", \"subfolder\": \"audio\", \"type\": \"output\"}]},"
	" \"16\": {\"audio\": [{\"filename\": \"ComfyUI_temp_xyz_00001_.flac\", \"subfolder\": \"\", \"type\": \"temp\"}]},"
	" \"17\": {\"gifs\": [{\"filename\": \"AnimateDiff_00001.mp4\", \"subfolder\": \"\", \"type\": \"output\","
	" \"format\": \"video/h264-mp4\", \"frame_rate\": 8.0, \"workflow\": \"AnimateDiff_00001.png\"}]},"
	" \"18\": {\"gifs\": [{\"filename\": \"AnimateDiff_00002.gif\", \"subfolder\": \"\", \"type\": \"output\","
	" \"format\": \"image/gif\", \"frame_rate\": 8.0}]},"
	" \"19\": {\"text\": [\"(128, 96, 1)\"]},"
	" \"20\": {\"audio\": [{\"filename\": \"speech_00001_.mp3\", \"subfolder\": \"audio\", \"type\": \"output\"}]}}";

/* What fnrun keeps of them: filename, subfolder, kind; previews and text left out. */
static const char *const every_kind_items[][3] = {
	{"ComfyUI_00001_.png", "", "image"},     {"anim_00001_.webp", "", "image"},
	{"anim_00001_.png", "", "image"},        {"ComfyUI_00001_.mp4", "video", "video"},
	{"ComfyUI_00001_.webm", "", "video"},    {"ComfyUI_00001_.flac", "audio", "audio"},
	{"AnimateDiff_00001.mp4", "", "video"},  {"AnimateDiff_00002.gif", "", "image"},
	{"speech_00001_.mp3", "audio", "audio"},
};

static void check_items(struct json_object *items)
{
	size_t n = sizeof every_kind_items / sizeof every_kind_items[0];

	ck_assert_uint_eq(json_object_array_length(items), n);
	for (size_t i = 0; i < n; i++) {
		struct json_object *it = json_object_array_get_idx(items, i);
		ck_assert_str_eq(json_get_str(it, "filename"), every_kind_items[i][0]);
		ck_assert_str_eq(json_get_str(it, "subfolder"), every_kind_items[i][1]);
		ck_assert_msg(strcmp(json_get_str(it, "kind"), every_kind_items[i][2]) == 0,
			      "%s: kind %s", every_kind_items[i][0], json_get_str(it, "kind"));
	}
}

START_TEST(outputs_of_every_kind_from_history_and_executed)
{
	struct json_object *outputs = json_tokener_parse(every_kind), *doc, *items, *ws_items;
	const char *type, *msg;
	char body[8192], frame[2048], pid[160];
	struct comfy_event ev;

	ck_assert_ptr_nonnull(outputs);
	snprintf(body, sizeof body,
		 "{\"p1\": {\"prompt\": [0, \"p1\", {}, {\"client_id\": \"c\"}, []], \"outputs\": %s,"
		 " \"status\": {\"status_str\": \"success\", \"completed\": true, \"messages\":"
		 " [[\"execution_start\", {\"prompt_id\": \"p1\", \"timestamp\": 1}],"
		 " [\"execution_cached\", {\"nodes\": [], \"prompt_id\": \"p1\", \"timestamp\": 1}],"
		 " [\"execution_success\", {\"prompt_id\": \"p1\", \"timestamp\": 2}]]}, \"meta\": {}}}",
		 every_kind);
	ck_assert_int_eq(comfy_history_read(body, strlen(body), "p1", &doc, &items, &type, &msg),
			 COMFY_OK);
	check_items(items);
	json_object_put(items);
	json_object_put(doc);
	/* The same UI dicts as the executed frames of the /ws session name them. */
	ws_items = json_object_new_array();
	json_object_object_foreach(outputs, node, ui) {
		snprintf(frame, sizeof frame,
			 "{\"type\": \"executed\", \"data\": {\"node\": \"%s\", \"display_node\": \"%s\","
			 " \"output\": %s, \"prompt_id\": \"p1\"}}",
			 node, node, json_object_to_json_string_ext(ui, JSON_C_TO_STRING_SPACED));
		ck_assert_int_eq(comfy_ws_decode(frame, strlen(frame), pid, sizeof pid, &ev, &doc), 1);
		ck_assert_int_eq(ev.type, COMFY_EV_EXECUTED);
		comfy_outputs_add(ws_items, ev.output);
		json_object_put(doc);
	}
	check_items(ws_items);
	json_object_put(ws_items);
	json_object_put(outputs);
}
END_TEST

Suite *suite_comfy(void)
{
	Suite *s = suite_create("comfy");
	TCase *tc = tcase_create("client");

	tcase_add_test(tc, oom_recognised_from_pytorch_texts);
	tcase_add_test(tc, progress_state_frames_give_the_share_of_nodes_done);
	tcase_add_test(tc, outputs_of_every_kind_from_history_and_executed);
	suite_add_tcase(s, tc);
	return s;
}
