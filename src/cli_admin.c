/*
 * cli_admin.c - `fnrun admin`: the operator API from the command line.
 *
 *   fnrun admin models|runners|keys|status|events [--server URL]
 *   fnrun admin start|stop|drain|promote|rollback|calibrate MODEL [--server URL]
 *   fnrun admin weight MODEL N [--server URL]
 *
 * The key is $FNRUN_KEY (an operator key, or the operator token), sent as
 * a Bearer token; the server is --server, else $FNRUN_SERVER, else
 * CLI_DEFAULT_SERVER. The answer is printed as JSON on standard output.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "cli.h"
#include "cli_admin.h"
#include "json.h"
#include "util.h"

static const char usage[] =
	"usage: fnrun admin models|runners|keys|status|events [--server URL]\n"
	"       fnrun admin start|stop|drain|promote|rollback|calibrate MODEL [--server URL]\n"
	"       fnrun admin weight MODEL N [--server URL]\n"
	"  The key is $FNRUN_KEY (an operator key or token). promote gives MODEL its tier's\n"
	"  traffic (the others' weight 0); rollback sets its weight to 0 and moves its queued\n"
	"  jobs to its rollout baseline; weight sets its share (0-1000000). Weights are kept\n"
	"  across restarts and reloads. calibrate measures a model of quality auto again and\n"
	"  places it in the tier it matches (see its \"calibration\" in `fnrun admin models`).\n";

static const char *const views[] = {"models", "runners", "keys", "status", "events"};
static const char *const actions[] = {"start", "stop", "drain", "promote", "rollback",
					    "calibrate"};

static int among(const char *s, const char *const *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(s, v[i]) == 0)
			return 1;
	return 0;
}

static int run(const char *url, const char *method, struct json_object *body)
{
	struct json_object *out = NULL, *e;
	struct err err = {0};
	long status = 0;

	if (cli_request(url, method, body, &status, &out, &err) < 0) {
		fprintf(stderr, "fnrun admin: %s\n", err.msg);
		return 1;
	}
	if (status >= 400) {
		e = json_get_obj(out, "error");
		fprintf(stderr, "fnrun admin: HTTP %ld: %s%s%s\n", status,
			e && json_get_str(e, "message") ? json_get_str(e, "message") : "refused",
			status == 401 ? " (set FNRUN_KEY to an operator key)" : "",
			status == 403 ? " (FNRUN_KEY is not an operator key)" : "");
		json_object_put(out);
		return 1;
	}
	printf("%s\n", json_object_to_json_string_ext(out, JSON_C_TO_STRING_PRETTY |
						       JSON_C_TO_STRING_NOSLASHESCAPE));
	json_object_put(out);
	return 0;
}

int cli_admin(int argc, char **argv)
{
	const char *server = NULL, *pos[3] = {0}, *base;
	char *url = NULL, *esc;
	size_t npos = 0;
	int rc;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			fputs(usage, stdout);
			return 0;
		}
		if (strcmp(argv[i], "--server") == 0 && i + 1 < argc) {
			server = argv[++i];
		} else if (argv[i][0] != '-' && npos < 3) {
			pos[npos++] = argv[i];
		} else {
			fputs(usage, stderr);
			return 2;
		}
	}
	base = cli_server_base(server);
	if (npos == 1 && among(pos[0], views, sizeof views / sizeof views[0])) {
		url = xasprintf("%s/api/admin/%s", base, pos[0]);
		rc = run(url, "GET", NULL);
		free(url);
		return rc;
	}
	if (npos == 2 && among(pos[0], actions, sizeof actions / sizeof actions[0])) {
		esc = curl_easy_escape(NULL, pos[1], 0);
		url = xasprintf("%s/api/admin/models/%s/%s", base, esc, pos[0]);
		curl_free(esc);
		rc = run(url, "POST", NULL);
		free(url);
		return rc;
	}
	if (npos == 3 && strcmp(pos[0], "weight") == 0) {
		char *end;
		long long w = strtoll(pos[2], &end, 10);
		struct json_object *body;
		if (*end || end == pos[2] || w < 0 || w > 1000000) {
			fprintf(stderr, "fnrun admin weight: N must be an integer from 0 to 1000000\n");
			return 2;
		}
		esc = curl_easy_escape(NULL, pos[1], 0);
		url = xasprintf("%s/api/admin/models/%s/weight", base, esc);
		curl_free(esc);
		body = json_object_new_object();
		json_put(body, "weight", json_int(w));
		rc = run(url, "POST", body);
		json_object_put(body);
		free(url);
		return rc;
	}
	fputs(usage, stderr);
	return 2;
}
