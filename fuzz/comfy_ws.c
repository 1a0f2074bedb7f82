/*
 * comfy_ws.c - libFuzzer target: one text message of a ComfyUI /ws
 * session through comfy_ws_decode(), the step between the WebSocket
 * client and the runner (the fast path that skips status, progress_state
 * and executing frames unparsed, then the JSON), and, for an executed
 * event, its UI dict through comfy_outputs_add() as the runner does.
 *
 * Checks beside the sanitizers: a decoded event has a prompt id and a
 * known type; a prompt id copied by the fast path is NUL-terminated
 * within its buffer.
 */
#include <stdlib.h>
#include <string.h>

#include "comfy.h"
#include "fuzz_util.h"
#include "json.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	fuzz_quiet();
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct json_object *doc = NULL, *items;
	struct comfy_event ev;
	char pid[160];

	/* A copy of exactly size bytes, so a read past the message is caught. */
	char *msg = malloc(size ? size : 1);

	memcpy(msg, data, size);
	if (comfy_ws_decode(msg, size, pid, sizeof pid, &ev, &doc)) {
		if (ev.prompt_id == NULL || ev.type < COMFY_EV_OTHER ||
		    ev.type > COMFY_EV_INTERRUPTED)
			fuzz_fail("an event without a prompt id or with an unknown type");
		if (doc == NULL && memchr(pid, '\0', sizeof pid) == NULL)
			fuzz_fail("the fast path's prompt id is not terminated");
		(void)strlen(ev.prompt_id);
		if (ev.type == COMFY_EV_EXECUTED) {
			items = json_object_new_array();
			comfy_outputs_add(items, ev.output);
			json_object_put(items);
		}
	}
	json_object_put(doc);
	free(msg);
	return 0;
}
