/*
 * gwtest.h - helpers for suites that drive a real `fnrun serve`: write a
 * registry into a temp dir, start and stop the gateway, submit jobs, read
 * job views and the admin API, wait with deadlines.
 */
#ifndef FNRUN_GWTEST_H
#define FNRUN_GWTEST_H

#include <json-c/json.h>
#include <sys/types.h>

struct gw {
	char dir[256];  /* temp dir: registry, workflows, data */
	int port;
	pid_t pid;
	char extra[1024]; /* extra flags for fnrun serve, space separated */
};

/* Writes dir/wf.json (a sim workflow; fail input "none") and dir/wf-<name>.json variants. */
void gw_write_workflow(struct gw *g, const char *name, const char *fail);
/* The same with side x side images (over 256 px, a thumbnail is made). */
void gw_write_workflow_size(struct gw *g, const char *name, const char *fail, int side);
/* Writes dir/registry.yaml with the given text. */
void gw_write_registry(struct gw *g, const char *text);
/* A fresh g in a new temp dir with the sim workflow wf.json: a suite's setup. */
void gw_init(struct gw *g);
/* Stops the gateway, kills what still uses the dir, removes it: a suite's teardown. */
void gw_cleanup(struct gw *g);
void gw_start(struct gw *g);
/* Times needle appears in the gateway's log so far. */
int gw_log_count(struct gw *g, const char *needle);
/* Model id's entry in GET /api/admin/models (borrowed from *root, which the caller puts). */
struct json_object *gw_model(struct gw *g, const char *id, struct json_object **root);
/* The gateway's log so far ("" when none); caller frees. */
char *gw_log(struct gw *g);
/* SIGTERM and wait up to ms; returns the wait status (-1 on timeout, then SIGKILL). */
int gw_stop(struct gw *g, int ms);
struct json_object *gw_json(struct gw *g, const char *method, const char *path,
			    const char *body, int *status);
char *gw_submit(struct gw *g, const char *quality, const char *prompt);
/* Polls the job until its status is in `want` (comma list); aborts the test after ms. */
struct json_object *gw_wait_status(struct gw *g, const char *id, const char *want, int ms);
const char *gw_str(struct json_object *o, const char *key);
/*
 * The model server's own name of the job's output i (admin API: users see
 * names made of the function and the job); caller frees; NULL when none.
 */
char *gw_output_source(struct gw *g, const char *id, size_t i);
int64_t gw_int(struct json_object *o, const char *key);
/* Runners (admin API) of model, or all when model is NULL. */
int gw_runner_count(struct gw *g, const char *model);
void gw_sleep_ms(int ms);

#endif
