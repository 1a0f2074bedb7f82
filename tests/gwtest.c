/*
 * gwtest.c - see gwtest.h.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>

#include "gwtest.h"
#include "testutil.h"

void gw_sleep_ms(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};

	nanosleep(&ts, NULL);
}

void gw_write_workflow(struct gw *g, const char *name, const char *fail)
{
	gw_write_workflow_size(g, name, fail, 64);
}

void gw_write_workflow_size(struct gw *g, const char *name, const char *fail, int side)
{
	char path[512], text[1024];

	snprintf(text, sizeof text,
		 "{\"1\": {\"class_type\": \"SimTextEncode\", \"inputs\": {\"text\": \"x\"}},"
		 " \"2\": {\"class_type\": \"SimSampler\", \"inputs\": {\"conditioning\": [\"1\", 0],"
		 " \"seed\": 1, \"steps\": 8, \"width\": %d, \"height\": %d, \"step_ms\": -1, \"fail\": \"%s\"}},"
		 " \"3\": {\"class_type\": \"SaveImage\", \"inputs\": {\"images\": [\"2\", 0], \"filename_prefix\": \"gw\"}}}",
		 side, side, fail);
	snprintf(path, sizeof path, "%s/%s.json", g->dir, name);
	ck_assert_int_eq(tu_write_file(path, text, strlen(text)), 0);
}

void gw_write_registry(struct gw *g, const char *text)
{
	char path[512], tmp[520];

	/* As editors save: a new file renamed over the old, never read half written. */
	snprintf(path, sizeof path, "%s/registry.yaml", g->dir);
	snprintf(tmp, sizeof tmp, "%s.new", path);
	ck_assert_int_eq(tu_write_file(tmp, text, strlen(text)), 0);
	ck_assert_int_eq(rename(tmp, path), 0);
}

void gw_init(struct gw *g)
{
	memset(g, 0, sizeof *g);
	snprintf(g->dir, sizeof g->dir, "%s", tu_tmpdir());
	gw_write_workflow(g, "wf", "none");
}

void gw_cleanup(struct gw *g)
{
	if (g->pid > 0)
		gw_stop(g, 8000);
	tu_kill_users_of(g->dir);
	tu_rmrf(g->dir);
}

void gw_start(struct gw *g)
{
	static char bin[1024];
	char cfg[512], listen[64], data[512], log[512], extra[1024];
	char *argv[16] = {bin, "serve", "--config", cfg, "--listen", listen, "--data", data};
	int argc = 8;

	snprintf(bin, sizeof bin, "%s", tu_bin("fnrun"));
	snprintf(cfg, sizeof cfg, "%s/registry.yaml", g->dir);
	if (g->port == 0)
		g->port = tu_free_port();
	snprintf(listen, sizeof listen, "127.0.0.1:%d", g->port);
	snprintf(data, sizeof data, "%s/data", g->dir);
	snprintf(log, sizeof log, "%s/gateway.log", g->dir);
	snprintf(extra, sizeof extra, "%s", g->extra);
	for (char *t = strtok(extra, " "); t && argc < 15; t = strtok(NULL, " "))
		argv[argc++] = t;
	argv[argc] = NULL;
	g->pid = tu_spawn(argv, log);
	ck_assert_int_gt(g->pid, 0);
	if (tu_wait_http(g->port, "/health", 200, 10000) != 0) {
		char *text = gw_log(g);
		size_t n = strlen(text);
		ck_abort_msg("gateway did not start; its log ends: %s", text + (n > 600 ? n - 600 : 0));
	}
}

char *gw_log(struct gw *g)
{
	char path[512];
	char *text;

	snprintf(path, sizeof path, "%s/gateway.log", g->dir);
	text = tu_read_file(path, NULL);
	return text ? text : strdup("");
}

int gw_stop(struct gw *g, int ms)
{
	int status;

	if (g->pid <= 0)
		return -1;
	kill(g->pid, SIGTERM);
	status = tu_wait_exit(g->pid, ms);
	if (status == -1) {
		kill(g->pid, SIGKILL);
		waitpid(g->pid, NULL, 0);
	}
	g->pid = 0;
	return status;
}

struct json_object *gw_json(struct gw *g, const char *method, const char *path,
			    const char *body, int *status)
{
	struct tu_resp r;
	struct json_object *o;

	ck_assert_int_eq(tu_http(g->port, method, path, body ? "application/json" : NULL, body,
				 body ? strlen(body) : 0, &r), 0);
	if (status)
		*status = r.status;
	o = json_tokener_parse(r.body);
	tu_resp_free(&r);
	return o;
}

const char *gw_str(struct json_object *o, const char *key)
{
	struct json_object *v;

	return json_object_object_get_ex(o, key, &v) ? json_object_get_string(v) : NULL;
}

char *gw_output_source(struct gw *g, const char *id, size_t i)
{
	char path[160];
	struct json_object *o, *outs;
	const char *src;
	char *out;
	int status;

	snprintf(path, sizeof path, "/api/admin/jobs/%s", id);
	o = gw_json(g, "GET", path, NULL, &status);
	ck_assert_msg(status == 200, "GET %s: %d", path, status);
	outs = json_object_object_get_ex(o, "stored_outputs", &outs) ? outs : NULL;
	src = gw_str(json_object_array_get_idx(outs, i), "source");
	out = src ? strdup(src) : NULL;
	json_object_put(o);
	return out;
}

int64_t gw_int(struct json_object *o, const char *key)
{
	struct json_object *v;

	return json_object_object_get_ex(o, key, &v) ? json_object_get_int64(v) : -1;
}

char *gw_submit(struct gw *g, const char *quality, const char *prompt)
{
	char body[512];
	struct json_object *o;
	int status;
	char *id;

	snprintf(body, sizeof body,
		 "{\"function\": \"Create Image\", \"quality\": \"%s\", \"params\": {\"prompt\": \"%s\"}}",
		 quality, prompt);
	o = gw_json(g, "POST", "/api/generate", body, &status);
	ck_assert_msg(status == 202, "submit answered %d", status);
	id = strdup(gw_str(o, "job_id"));
	json_object_put(o);
	return id;
}

struct json_object *gw_wait_status(struct gw *g, const char *id, const char *want, int ms)
{
	char path[128];

	snprintf(path, sizeof path, "/api/jobs/%s", id);
	for (int waited = 0; waited <= ms; waited += 20) {
		struct json_object *o = gw_json(g, "GET", path, NULL, NULL);
		const char *s = o ? gw_str(o, "status") : NULL;
		if (s && strstr(want, s))
			return o;
		json_object_put(o);
		gw_sleep_ms(20);
	}
	ck_abort_msg("job %s never reached %s", id, want);
	return NULL;
}

int gw_runner_count(struct gw *g, const char *model)
{
	struct json_object *o = gw_json(g, "GET", "/api/admin/runners", NULL, NULL), *a;
	int n = 0;

	ck_assert_ptr_nonnull(o);
	ck_assert(json_object_object_get_ex(o, "runners", &a));
	for (size_t i = 0; i < json_object_array_length(a); i++) {
		const char *m = gw_str(json_object_array_get_idx(a, i), "model");
		if (model == NULL || strcmp(m, model) == 0)
			n++;
	}
	json_object_put(o);
	return n;
}

int gw_log_count(struct gw *g, const char *needle)
{
	char *text = gw_log(g), *p;
	int n = 0;

	for (p = text; (p = strstr(p, needle)) != NULL; p++)
		n++;
	free(text);
	return n;
}

struct json_object *gw_model(struct gw *g, const char *id, struct json_object **root)
{
	struct json_object *a;

	*root = gw_json(g, "GET", "/api/admin/models", NULL, NULL);
	ck_assert(json_object_object_get_ex(*root, "models", &a));
	for (size_t i = 0; i < json_object_array_length(a); i++)
		if (strcmp(gw_str(json_object_array_get_idx(a, i), "id"), id) == 0)
			return json_object_array_get_idx(a, i);
	ck_abort_msg("no model %s", id);
	return NULL;
}
