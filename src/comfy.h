/*
 * comfy.h - the ComfyUI client: what the gateway says to a model server
 * (docs/comfyui.md). POST /prompt, POST /interrupt, POST /free, GET
 * /health, the /ws session that reports a prompt's progress (and how far
 * it got: comfy_progress_note), a result fetch (GET /history/{id}, then
 * GET /view for each output, copied into the output store), and what an
 * out-of-memory error looks like (comfy_is_oom).
 *
 * Every call carries a tag, an opaque number the caller chooses (the
 * runner passes the attempt it made the call for), and hands it back in
 * the callback, so the caller can drop an answer that belongs to an
 * attempt that is over. A call's callback runs exactly once, later, from
 * the loop, unless the call is cancelled first; a function that fails to
 * start a call returns NULL and never calls back.
 *
 * Loop thread only. Uses server.httpc and server.loop.
 */
#ifndef FNRUN_COMFY_H
#define FNRUN_COMFY_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

struct json_object;
struct comfy_call;
struct comfy_ws;
struct comfy_fetch;

/* ---- POST /prompt, POST /interrupt, POST /free, GET /health ---- */

/*
 * The answer to POST /prompt: status 200 with the prompt id (borrowed for
 * the call), or status != 200 (0: no answer; detail says why, borrowed).
 */
typedef void (*comfy_submit_fn)(void *ud, uint64_t tag, int status, const char *prompt_id,
				const char *detail);
/*
 * Queues workflow (borrowed; serialised now) under prompt_id with the
 * session's client_id on the server at base_url ("http://host:port").
 * Returns the call, owned by comfy until its callback; NULL with err.
 */
struct comfy_call *comfy_submit(const char *base_url, const char *client_id,
				const char *prompt_id, const struct json_object *workflow,
				uint64_t tag, comfy_submit_fn cb, void *ud, struct err *err);

/* Asks the server to stop prompt_id (or whatever runs, when NULL). Fire and forget. */
void comfy_interrupt(const char *base_url, const char *prompt_id);

enum comfy_health {
	COMFY_UP,       /* answering and ready (a ComfyUI without /health counts) */
	COMFY_STARTING, /* answering, still loading */
	COMFY_DOWN,     /* no answer, or an error status */
};
typedef void (*comfy_health_fn)(void *ud, uint64_t tag, int health);
/*
 * GET base_url/health within timeout_ms. fnrun-worker answers {"status":
 * "starting"|"idle"|"busy"}; a real ComfyUI has no /health and answers 404,
 * which still proves it is serving.
 */
struct comfy_call *comfy_health(const char *base_url, uint64_t timeout_ms, uint64_t tag,
				comfy_health_fn cb, void *ud, struct err *err);

/*
 * POST base_url/free {"unload_models": u, "free_memory": f}, ComfyUI's own
 * body: the server unloads its models (and with free_memory drops its
 * execution cache too) once the prompt it runs, if any, is over. cb gets
 * the HTTP status, 0 when no answer came within timeout_ms.
 */
typedef void (*comfy_status_fn)(void *ud, uint64_t tag, int status);
struct comfy_call *comfy_free(const char *base_url, int unload_models, int free_memory,
			      uint64_t timeout_ms, uint64_t tag, comfy_status_fn cb, void *ud,
			      struct err *err);

/* Cancels a call: its callback never runs. NULL does nothing. */
void comfy_cancel(struct comfy_call *c);

/*
 * 1 when an execution_error (exception type and message, either NULL) is
 * the GPU running out of memory, as PyTorch and ComfyUI word it (the texts
 * are listed in comfy.c); 0 otherwise.
 */
int comfy_is_oom(const char *exc_type, const char *msg);

/* ---- the /ws session ---- */

enum comfy_event_type {
	COMFY_EV_OTHER,       /* a message that concerns a prompt, of no interest */
	COMFY_EV_STARTED,     /* execution_start */
	COMFY_EV_PROGRESS,    /* progress: value of max (the steps of the node running) */
	COMFY_EV_NODES,       /* progress_state: value = nodes finished, running = the
				 running nodes' value/max added, max = nodes listed */
	COMFY_EV_EXECUTED,    /* executed: an output node's UI dict (output) */
	COMFY_EV_SUCCESS,     /* execution_success */
	COMFY_EV_FINISHED,    /* executing with node null: the prompt is over */
	COMFY_EV_ERROR,       /* execution_error: exc_type, exc_msg */
	COMFY_EV_INTERRUPTED, /* execution_interrupted */
};

/* One decoded frame about a prompt; borrowed for the callback. */
struct comfy_event {
	int type;                  /* enum comfy_event_type */
	const char *prompt_id;     /* never NULL */
	double value, max;         /* COMFY_EV_PROGRESS, COMFY_EV_NODES */
	double running;            /* COMFY_EV_NODES */
	struct json_object *output; /* COMFY_EV_EXECUTED: the UI dict; NULL when the server sent null */
	const char *exc_type, *exc_msg; /* COMFY_EV_ERROR; may be NULL */
};

/*
 * Appends the saved output files of one node's UI dict ({"images": [{filename,
 * subfolder, type}], "audio": [...], ...}; type "output" only, not previews)
 * to items as {filename, subfolder, kind}. ui may be NULL.
 */
void comfy_outputs_add(struct json_object *items, struct json_object *ui);

/*
 * The pure step of the /ws session: decodes one text message (msg, len
 * bytes) as the session does before calling on_event. Returns 1 with *ev
 * filled when the message concerns a prompt, 0 when it is to be ignored
 * (not JSON, no data, no string prompt_id, ...). ev's strings and output
 * are borrowed from *doc, or from pid (n bytes of the caller's) for a
 * frame recognised without parsing. *doc is the parsed message or NULL;
 * the caller puts it (json_object_put) once done with ev, whatever the
 * return value.
 */
int comfy_ws_decode(const char *msg, size_t len, char *pid, size_t n, struct comfy_event *ev,
		    struct json_object **doc);

/*
 * What the frames of one prompt said of its progress: the share of its
 * nodes done (`progress_state`), and the steps of the node that reports
 * them (`progress`), which carry the rest of the way from the nodes
 * finished before it. Zeroed, then nodes set, for each prompt.
 */
struct comfy_progress {
	double nodes; /* the prompt's node count (the workflow's) */
	double base;  /* share of the nodes finished, at the last progress_state */
	double done;  /* the same with the running nodes' share of their work */
	double steps; /* at the last progress: base + (1 - base) x value / max */
};
/*
 * Notes ev; returns the prompt's progress, 0..1 (the larger of done and
 * steps), when ev is a progress or progress_state frame; -1 otherwise.
 */
double comfy_progress_note(struct comfy_progress *p, const struct comfy_event *ev);

struct comfy_ws_cbs {
	void (*on_open)(void *ud);
	/* Only frames whose data carries a string prompt_id. */
	void (*on_event)(void *ud, const struct comfy_event *ev);
	/* Exactly once, after on_open or instead of it; why is borrowed ("" when clean). */
	void (*on_close)(void *ud, const char *why);
};

/*
 * Opens ws://host:port/ws?clientId=client_id. cb is copied. Returns the
 * session, freed by comfy after on_close; NULL with err (no callback).
 */
struct comfy_ws *comfy_ws_open(const char *host, int port, const char *client_id,
			       const struct comfy_ws_cbs *cb, void *ud, struct err *err);
/* Closes the session; on_close follows from the loop. */
void comfy_ws_close(struct comfy_ws *s);

/* ---- the result of a prompt ---- */

enum comfy_result {
	COMFY_OK,          /* outputs copied */
	COMFY_ERROR,       /* execution_error: exc_type, msg */
	COMFY_INTERRUPTED,
	COMFY_OUTPUT_LOST, /* the history said success, a file could not be copied */
	COMFY_MISSING,     /* the model server does not know the prompt */
	COMFY_UNREACHABLE, /* no answer */
};

/*
 * outputs (owned by the callee, NULL unless COMFY_OK): [{path, filename,
 * kind}] where path is relative to the output root. exc_type and msg are
 * borrowed for the call.
 */
typedef void (*comfy_result_fn)(void *ud, uint64_t tag, int result, struct json_object *outputs,
				const char *exc_type, const char *msg);

/*
 * The pure step of reading GET /history/{prompt_id}: body (len bytes) of
 * a 200 answer. Returns COMFY_OK with *items, the saved outputs as
 * comfy_outputs_add() lists them (caller owns); COMFY_ERROR with the
 * execution_error's *exc_type (may be NULL) and *msg; COMFY_INTERRUPTED,
 * COMFY_MISSING (no entry for prompt_id), or COMFY_UNREACHABLE when body
 * is not JSON. *msg is then never NULL. Strings are borrowed from *doc,
 * the parsed body (NULL when not JSON), or static; the caller puts *doc
 * (json_object_put) once done with them.
 */
int comfy_history_read(const char *body, size_t len, const char *prompt_id,
		       struct json_object **doc, struct json_object **items, const char **exc_type,
		       const char **msg);
/*
 * Reads /history/{prompt_id} from base_url and, on success, copies each
 * output (type "output") through /view to out_root/job_id/, named by
 * outputs_name() from stem; each entry keeps the server's name as source.
 * Returns the fetch, owned by comfy until its callback; NULL with err when
 * the request cannot start (no callback).
 */
struct comfy_fetch *comfy_fetch_result(const char *base_url, const char *prompt_id,
				       const char *out_root, const char *job_id, const char *stem,
				       uint64_t tag, comfy_result_fn cb, void *ud, struct err *err);
/*
 * The same, for a prompt whose outputs the /ws session already named
 * (items from comfy_outputs_add; taken): no /history, only the /view
 * copies. NULL with err when the request cannot start (no callback).
 */
struct comfy_fetch *comfy_fetch_files(const char *base_url, struct json_object *items,
				      const char *out_root, const char *job_id, const char *stem,
				      uint64_t tag, comfy_result_fn cb, void *ud, struct err *err);
/* Cancels a fetch: its callback never runs. NULL does nothing. */
void comfy_fetch_cancel(struct comfy_fetch *f);

/*
 * For a model server that writes its outputs into local_dir, a directory
 * on our file system (a process runtime given {outdir}): hard-links each
 * of items ([{filename, subfolder, kind}], borrowed) into the output store
 * as comfy_fetch_* would copy it, with no HTTP and no copy of the bytes.
 * Returns 0 with *outputs (caller owns), or -1 with err when any cannot be
 * linked (another file system, a name that leaves local_dir, a missing
 * file); then the caller fetches them through /view.
 */
int comfy_link_outputs(const char *local_dir, struct json_object *items, const char *out_root,
		       const char *job_id, const char *stem, struct json_object **outputs,
		       struct err *err);

#endif
