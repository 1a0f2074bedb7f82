/*
 * comfy_history.c - libFuzzer target: a GET /history/{prompt_id} answer
 * through comfy_history_read() (the prompt's entry, its status, the
 * execution_error or interruption in its messages, and the saved outputs
 * of every node).
 *
 * The input is the prompt id, a newline, then the body, so that the
 * fuzzer (and the corpus, taken from the recorded transcript) can make
 * the entry match. Checks beside the sanitizers: every result has a
 * message or outputs, and each output has a file name without '/' and a
 * kind.
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

static void check_items(struct json_object *items)
{
	if (!json_object_is_type(items, json_type_array))
		fuzz_fail("COMFY_OK without an items array");
	for (size_t i = 0; i < json_object_array_length(items); i++) {
		struct json_object *it = json_object_array_get_idx(items, i);
		const char *fn = json_get_str(it, "filename");

		if (fn == NULL || fn[0] == '\0' || strchr(fn, '/') || !json_get_str(it, "kind") ||
		    !json_get_str(it, "subfolder"))
			fuzz_fail("an output without a plain file name, subfolder or kind");
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *nl = memchr(data, '\n', size);
	struct json_object *doc, *items;
	const char *type, *msg;
	char *pid, *body;
	size_t plen, blen;
	int r;

	if (nl == NULL)
		return 0;
	plen = (size_t)(nl - (const char *)data);
	blen = size - plen - 1;
	pid = strndup((const char *)data, plen); /* stops at a NUL, as a C string would */
	body = malloc(blen ? blen : 1);          /* exactly the body: overreads are caught */
	memcpy(body, nl + 1, blen);
	r = comfy_history_read(body, blen, pid, &doc, &items, &type, &msg);
	if (r == COMFY_OK)
		check_items(items);
	else if (msg == NULL || items != NULL)
		fuzz_fail("a failure without a message, or with items");
	json_object_put(items);
	json_object_put(doc);
	free(body);
	free(pid);
	return 0;
}
