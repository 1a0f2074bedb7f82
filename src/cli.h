/*
 * cli.h - the command-line client: `fnrun submit|jobs|job|cancel|functions|docs`
 * (docs/design.md §1), speaking the user API over HTTP with libcurl's easy
 * interface (blocking is fine in a client).
 *
 * main.c dispatches `serve` and `check` itself and hands every other
 * command to cli_main(), which returns -1 for a name it does not know.
 * Commands are a table of {name, usage, fn} (docs/style.md §5); a usage error
 * prints the entry's usage string and exits 2.
 *
 * Exit statuses: 0 done, 1 failed (the job or the request), 2 usage,
 * 130 interrupted by Ctrl-C (submit cancels its job first).
 */
#ifndef FNRUN_CLI_H
#define FNRUN_CLI_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "buf.h"
#include "err.h"

struct json_object;

#define CLI_DEFAULT_SERVER "http://127.0.0.1:8180" /* $FNRUN_SERVER overrides */

struct cli_command {
	const char *name;  /* "submit" */
	const char *usage; /* "fnrun submit FUNCTION [--quality Q] ..." */
	int (*fn)(int argc, char **argv); /* argv[0] is the name; returns the exit status */
};

/* The client command called name, or NULL. Static; never freed. */
const struct cli_command *cli_find(const char *name);
/* Writes every client command's usage line to out. */
void cli_usage(FILE *out);
/* The server's base URL, without a trailing '/': flag, else $FNRUN_SERVER, else CLI_DEFAULT_SERVER. Static buffer. */
const char *cli_server_base(const char *flag);
/*
 * One request to url with body (may be NULL) sent as JSON, and $FNRUN_KEY
 * as a Bearer token when set. The answer's JSON goes to *out (caller
 * owns; NULL for an empty answer), the status to *status. -1 with err set
 * when the server cannot be reached or answers something that is not JSON.
 */
int cli_request(const char *url, const char *method, const struct json_object *body,
		long *status, struct json_object **out, struct err *err);
/*
 * Runs `fnrun NAME ARGS...` (argv[0] the program, argv[1] NAME). Returns the
 * exit status, or -1 when argc < 2 or NAME is not a client command.
 */
int cli_main(int argc, char **argv);

/* ---- pieces exposed for tests ---- */

/* The function called name in a GET /api/functions answer, or NULL. Borrowed. */
const struct json_object *cli_catalog_function(const struct json_object *catalog,
					       const char *name);
/*
 * Converts one `--param NAME=VALUE` to the param's catalog type (int,
 * float, bool, string, enum) and adds it to params (an object; a repeated
 * NAME replaces the earlier value). `NAME=random` for a param with a random
 * default leaves it out, so the server draws it. Fails with ERR_INVALID and
 * a message naming the param ("--param width: must be an integer, not
 * \"wide\"").
 */
int cli_param_convert(const struct json_object *fn, const char *kv, struct json_object *params,
		      struct err *err);

/* An incremental Server-Sent Events parser (fields id, event, data). */
struct cli_sse {
	struct buf line;   /* the partial line; capped */
	struct buf data;   /* data lines of the event being read */
	char event[64];    /* its type; "" means "message" */
	char last_id[64];  /* the last id seen, for Last-Event-ID */
};

typedef int (*cli_sse_fn)(void *ud, const char *event, const char *data);

void cli_sse_init(struct cli_sse *p);
void cli_sse_cleanup(struct cli_sse *p);
/*
 * Feeds n bytes; calls fn(ud, event, data) for each complete event (data
 * borrowed for the call, its lines joined by '\n'). Returns 0, or -1 when
 * fn returned non-zero (the caller stops reading) or a line is over 1 MiB.
 */
int cli_sse_feed(struct cli_sse *p, const char *bytes, size_t n, cli_sse_fn fn, void *ud);

/*
 * The one-line progress display for a job view, without \r or newline:
 * a 30-character bar, the percent, the message, then "about 2 min left",
 * or "3 jobs ahead" while queued. eta_s >= 0 overrides the view's
 * eta_seconds (a local countdown). Truncated to size - 1 bytes.
 */
void cli_progress_line(const struct json_object *view, int64_t eta_s, char *out, size_t size);

#endif
