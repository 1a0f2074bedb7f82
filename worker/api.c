/*
 * api.c - fnrun-worker's HTTP routes: the ComfyUI server API as ComfyUI
 * 0.3.64 answers it (every route also under /api), plus GET /health.
 *
 * Where ComfyUI crashes inside a handler (a body that is not JSON on
 * /prompt, /queue, /free or /history) it answers aiohttp's 500 text page;
 * we answer the same so clients written for ComfyUI see no difference.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysinfo.h>

#include "http.h"
#include "json.h"
#include "log.h"
#include "prompt.h"
#include "util.h"
#include "worker.h"

#define PROMPT_MAX_DEPTH 64

static const char *const model_folders[] = {
	"checkpoints", "configs", "loras", "vae", "text_encoders", "diffusion_models",
	"clip_vision", "style_models", "embeddings", "diffusers", "vae_approx", "controlnet",
	"gligen", "upscale_models", "custom_nodes", "hypernetworks", "photomaker",
	"classifiers", "model_patches", "audio_encoders", NULL,
};

const char *api_input_dir; /* --input-directory, absolute */

static void reply_500(struct http_req *req)
{
	static const char page[] = "500 Internal Server Error\n\nServer got itself in trouble";

	http_reply(req, 500, "text/plain; charset=utf-8", page, sizeof page - 1);
}

static void reply_empty(struct http_req *req, int status)
{
	http_reply(req, status, NULL, "", 0);
}

static void reply_owned(struct http_req *req, int status, struct json_object *o)
{
	http_reply_json(req, status, o);
	json_object_put(o);
}

/* The body as JSON, or NULL after answering 500 (ComfyUI's crash page). */
static struct json_object *body_json(struct http_req *req)
{
	size_t len;
	const char *body = http_req_body(req, &len);
	struct json_object *o = NULL;
	struct err e = {0};

	if (json_parse(body, len, PROMPT_MAX_DEPTH, &o, &e) < 0) {
		log_debug("bad JSON body path=%s err=%s", log_q(http_req_path(req)), log_q(e.msg));
		reply_500(req);
		return NULL;
	}
	return o;
}

static void on_root(struct http_req *req)
{
	static const char page[] =
		"<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>fnrun-worker</title>"
		"</head>\n<body>fnrun-worker: a ComfyUI-compatible model server.</body></html>\n";

	http_reply_header(req, "Cache-Control", "no-cache");
	http_reply(req, 200, "text/html", page, sizeof page - 1);
}

static void on_options(struct http_req *req)
{
	reply_empty(req, 200);
}

static const char *state_name(void)
{
	switch (worker.state) {
	case WORKER_STARTING: return "starting";
	case WORKER_BUSY: return "busy";
	default: return "idle";
	}
}

/*
 * FNRUN_WORKER_NO_HEALTH (any value) in the environment: no GET /health,
 * which answers 404 as on a real ComfyUI (it has no such route), so that
 * the gateway's start and health probes can be tested as ComfyUI meets
 * them. Read once, when the routes start.
 */
static int no_health;

static void on_health(struct http_req *req)
{
	static const char not_found[] = "404: Not Found";
	struct json_object *o;

	if (no_health) {
		http_reply(req, 404, "text/plain; charset=utf-8", not_found, sizeof not_found - 1);
		return;
	}
	o = json_object_new_object();

	json_put(o, "status", json_str(state_name()));
	json_put(o, "model", json_str(worker.model));
	json_put(o, "queue_remaining", json_int((int64_t)worker_queue_remaining()));
	json_put(o, "running", worker.running ? json_str(worker.running->prompt_id) : NULL);
	json_put(o, "vram_used", json_int((int64_t)worker.vram_used));
	json_put(o, "uptime_ms", json_int((int64_t)(util_mono_ms() - worker.started_ms)));
	reply_owned(req, 200, o);
}

static struct json_object *device_entry(void)
{
	struct json_object *d = json_object_new_object();
	struct sysinfo si;

	if (strcmp(worker.model, "sim") == 0) {
		json_put(d, "name", json_str("cuda:0 fnrun-worker sim : native"));
		json_put(d, "type", json_str("cuda"));
		json_put(d, "index", json_int(0));
		json_put(d, "vram_total", json_int((int64_t)worker.vram_total));
		json_put(d, "vram_free", json_int((int64_t)(worker.vram_total - worker.vram_used)));
		json_put(d, "torch_vram_total", json_int((int64_t)worker.vram_used));
		json_put(d, "torch_vram_free", json_int(0));
		return d;
	}
	sysinfo(&si);
	json_put(d, "name", json_str("cpu"));
	json_put(d, "type", json_str("cpu"));
	json_put(d, "index", NULL);
	json_put(d, "vram_total", json_int((int64_t)si.totalram * si.mem_unit));
	json_put(d, "vram_free", json_int((int64_t)si.freeram * si.mem_unit));
	json_put(d, "torch_vram_total", json_int((int64_t)si.totalram * si.mem_unit));
	json_put(d, "torch_vram_free", json_int((int64_t)si.freeram * si.mem_unit));
	return d;
}

static void on_system_stats(struct http_req *req)
{
	struct json_object *o = json_object_new_object(), *sys = json_object_new_object();
	struct json_object *argv = json_object_new_array(), *devs = json_object_new_array();
	struct sysinfo si;

	sysinfo(&si);
	for (int i = 0; i < worker.argc; i++)
		json_object_array_add(argv, json_str(worker.argv[i]));
	json_put(sys, "os", json_str("posix"));
	json_put(sys, "ram_total", json_int((int64_t)si.totalram * si.mem_unit));
	json_put(sys, "ram_free", json_int((int64_t)(si.freeram + si.bufferram) * si.mem_unit));
	json_put(sys, "comfyui_version", json_str("0.3.64"));
	json_put(sys, "required_frontend_version", json_str("1.27.10"));
	json_put(sys, "installed_templates_version", NULL);
	json_put(sys, "required_templates_version", json_str("0.1.95"));
	json_put(sys, "python_version", json_str("fnrun-worker (C)"));
	json_put(sys, "pytorch_version", json_str("none"));
	json_put(sys, "embedded_python", json_object_new_boolean(0));
	json_put(sys, "argv", argv);
	json_object_array_add(devs, device_entry());
	json_put(o, "system", sys);
	json_put(o, "devices", devs);
	reply_owned(req, 200, o);
}

static void on_features(struct http_req *req)
{
	struct json_object *o = json_object_new_object();

	json_put(o, "supports_preview_metadata", json_object_new_boolean(1));
	json_put(o, "max_upload_size", json_int((int64_t)worker.max_upload));
	reply_owned(req, 200, o);
}

static void on_get_prompt(struct http_req *req)
{
	struct json_object *o = json_object_new_object(), *ei = json_object_new_object();

	json_put(ei, "queue_remaining", json_int((int64_t)worker_queue_remaining()));
	json_put(o, "exec_info", ei);
	reply_owned(req, 200, o);
}

/* number: float(number) when sent, else the counter (negated for front). */
static struct json_object *take_number(struct json_object *body, double *order)
{
	struct json_object *n = json_get(body, "number");

	if (n && (json_object_is_type(n, json_type_int) || json_object_is_type(n, json_type_double))) {
		*order = json_object_get_double(n);
		return json_object_new_double(*order);
	}
	*order = (double)(json_get_bool(body, "front", 0) ? -worker.counter : worker.counter);
	worker.counter++;
	return json_int((int64_t)*order);
}

static struct qitem *make_item(struct json_object *body, struct json_object *number,
			       double order, struct prompt_result *res)
{
	struct qitem *item = xcalloc(1, sizeof *item);
	struct json_object *pid = json_get(body, "prompt_id");
	struct json_object *extra = json_get_obj(body, "extra_data");
	const char *cid = json_get_str(body, "client_id");
	char uuid[37];

	item->order = order;
	item->number = number;
	if (pid && json_object_is_type(pid, json_type_string)) {
		item->prompt_id = xstrdup(json_object_get_string(pid));
	} else if (pid && !json_object_is_type(pid, json_type_null)) {
		item->prompt_id = json_dumps(pid);
	} else {
		util_uuid4(uuid);
		item->prompt_id = xstrdup(uuid);
	}
	item->prompt = json_object_get(json_get(body, "prompt"));
	item->extra_data = extra ? json_object_get(extra) : json_object_new_object();
	if (cid) {
		json_put(item->extra_data, "client_id", json_str(cid));
		item->client_id = xstrdup(cid);
	}
	item->outputs = json_object_get(res->outputs);
	return item;
}

static void on_post_prompt(struct http_req *req)
{
	struct json_object *body = body_json(req), *prompt, *number, *reply;
	struct prompt_result res;
	struct qitem *item;
	double order;

	if (body == NULL)
		return;
	if (!json_object_is_type(body, json_type_object)) {
		json_object_put(body);
		reply_500(req);
		return;
	}
	number = take_number(body, &order);
	prompt = json_get(body, "prompt");
	if (prompt == NULL) {
		json_object_put(number);
		json_object_put(body);
		reply_owned(req, 400, prompt_error_body("no_prompt", "No prompt provided",
							 "No prompt provided", NULL));
		return;
	}
	if (!json_object_is_type(prompt, json_type_object)) {
		json_object_put(number);
		json_object_put(body);
		reply_500(req);
		return;
	}
	if (prompt_validate(prompt, json_get_arr(body, "partial_execution_targets"), &res) < 0) {
		reply = json_object_new_object();
		json_put(reply, "error", json_object_get(json_get(res.error, "error")));
		json_put(reply, "node_errors", json_object_get(res.node_errors));
		log_info("prompt rejected type=%s", json_get_str(json_get(res.error, "error"), "type"));
		reply_owned(req, 400, reply);
		json_object_put(number);
		prompt_result_cleanup(&res);
		json_object_put(body);
		return;
	}
	item = make_item(body, number, order, &res);
	reply = json_object_new_object();
	json_put(reply, "prompt_id", json_str(item->prompt_id));
	json_put(reply, "number", json_object_get(item->number));
	json_put(reply, "node_errors", json_object_get(res.node_errors));
	prompt_result_cleanup(&res);
	json_object_put(body);
	worker_enqueue(item);
	reply_owned(req, 200, reply);
}

static struct json_object *item_json(const struct qitem *it)
{
	struct json_object *a = json_object_new_array();

	json_object_array_add(a, json_object_get(it->number));
	json_object_array_add(a, json_str(it->prompt_id));
	json_object_array_add(a, json_object_get(it->prompt));
	json_object_array_add(a, json_object_get(it->extra_data));
	json_object_array_add(a, json_object_get(it->outputs));
	return a;
}

static void on_get_queue(struct http_req *req)
{
	struct json_object *o = json_object_new_object();
	struct json_object *running = json_object_new_array(), *pending = json_object_new_array();

	if (worker.running)
		json_object_array_add(running, item_json(worker.running));
	for (size_t i = 0; i < worker.npending; i++)
		json_object_array_add(pending, item_json(worker.pending[i]));
	json_put(o, "queue_running", running);
	json_put(o, "queue_pending", pending);
	reply_owned(req, 200, o);
}

/* {"clear": true} and/or {"delete": [ids]} for /queue and /history. */
static void clear_delete(struct http_req *req, void (*clear)(void),
			 void (*del)(const char *id))
{
	struct json_object *body = body_json(req), *ids;

	if (body == NULL)
		return;
	if (json_get_bool(body, "clear", 0))
		clear();
	ids = json_get_arr(body, "delete");
	for (size_t i = 0; ids && i < json_object_array_length(ids); i++) {
		const char *id = json_object_get_string(json_object_array_get_idx(ids, i));
		if (id)
			del(id);
	}
	json_object_put(body);
	reply_empty(req, 200);
}

static void queue_delete(const char *id)
{
	worker_queue_delete(id);
}

static void on_post_queue(struct http_req *req)
{
	clear_delete(req, worker_queue_clear, queue_delete);
}

static void on_post_history(struct http_req *req)
{
	clear_delete(req, worker_history_clear, worker_history_delete);
}

static void on_interrupt(struct http_req *req)
{
	size_t len;
	const char *body = http_req_body(req, &len);
	struct json_object *o = NULL;
	struct err e = {0};
	const char *target = NULL;

	if (len && json_parse(body, len, 16, &o, &e) == 0)
		target = json_get_str(o, "prompt_id");
	if (worker.running && (target == NULL || strcmp(target, worker.running->prompt_id) == 0)) {
		log_info("interrupt prompt=%s", worker.running->prompt_id);
		worker.interrupt = 1;
		run_interrupt();
	}
	json_object_put(o);
	reply_empty(req, 200);
}

/*
 * POST /free as ComfyUI takes it: the flags are set and acted on when no
 * prompt runs, at once or after the running one (ComfyUI's prompt worker
 * reads them between queue items). unload_models drops what the model
 * holds (vram_used, loaded again by the next prompt); free_memory unloads
 * too and drops the execution cache (ComfyUI: flags.get("unload_models",
 * free_memory), then e.reset()).
 */
static struct {
	uv_check_t check; /* after each loop turn while flags wait on a running prompt */
	int check_open;
	int unload, memory;
} frees;

static void free_apply(void)
{
	log_info("free unload_models=%d free_memory=%d", frees.unload, frees.memory);
	worker.vram_used = 0;
	if (frees.memory)
		run_cache_clear();
	frees.unload = frees.memory = 0;
}

static void on_free_check(uv_check_t *h)
{
	if (worker.running != NULL)
		return;
	uv_check_stop(h);
	free_apply();
}

static void on_free(struct http_req *req)
{
	struct json_object *body = body_json(req);

	if (body == NULL)
		return;
	frees.unload |= json_get_bool(body, "unload_models", 0);
	frees.memory |= json_get_bool(body, "free_memory", 0);
	json_object_put(body);
	if ((frees.unload || frees.memory) && worker.running == NULL) {
		free_apply();
	} else if (frees.unload || frees.memory) {
		if (!frees.check_open)
			uv_check_init(worker.loop, &frees.check);
		frees.check_open = 1;
		uv_check_start(&frees.check, on_free_check);
	}
	reply_empty(req, 200);
}

/* Python int() of a query value; -1 when it is not a number. */
static int query_int(struct http_req *req, const char *name, long *out, int *present)
{
	const char *v = http_req_query(req, name);
	char *end;

	*present = v != NULL;
	if (v == NULL)
		return 0;
	*out = strtol(v, &end, 10);
	return (end == v || *end) ? -1 : 0;
}

static void on_get_history(struct http_req *req)
{
	struct json_object *o = json_object_new_object();
	long max = 0, off = -1;
	int has_max, has_off;

	if (query_int(req, "max_items", &max, &has_max) < 0 ||
	    query_int(req, "offset", &off, &has_off) < 0) {
		json_object_put(o);
		reply_500(req);
		return;
	}
	if (!has_max)
		max = (long)worker.nhistory;
	if (off < 0)
		off = (long)worker.nhistory - max;
	for (long i = off < 0 ? 0 : off; i < (long)worker.nhistory && max > 0; i++, max--)
		json_put(o, worker.history[i].prompt_id, json_object_get(worker.history[i].entry));
	reply_owned(req, 200, o);
}

static void on_get_history_id(struct http_req *req)
{
	struct json_object *o = json_object_new_object();
	const char *id = http_req_param(req);
	const struct json_object *e = worker_history_find(id);

	if (e)
		json_put(o, id, json_object_get((struct json_object *)e));
	reply_owned(req, 200, o);
}

static void on_object_info(struct http_req *req)
{
	struct json_object *o = json_object_new_object();

	for (size_t i = 0; i < nodes_count(); i++)
		json_put(o, nodes_at(i)->name, nodes_object_info(nodes_at(i)));
	reply_owned(req, 200, o);
}

static void on_object_info_class(struct http_req *req)
{
	struct json_object *o = json_object_new_object();
	const struct node_class *c = nodes_find(http_req_param(req));

	if (c)
		json_put(o, c->name, nodes_object_info(c));
	reply_owned(req, 200, o);
}

static void on_empty_list(struct http_req *req)
{
	reply_owned(req, 200, json_object_new_array());
}

static void on_models(struct http_req *req)
{
	struct json_object *a = json_object_new_array();

	for (size_t i = 0; model_folders[i]; i++)
		json_object_array_add(a, json_str(model_folders[i]));
	reply_owned(req, 200, a);
}

static void on_models_folder(struct http_req *req)
{
	for (size_t i = 0; model_folders[i]; i++)
		if (strcmp(model_folders[i], http_req_param(req)) == 0) {
			reply_owned(req, 200, json_object_new_array());
			return;
		}
	reply_empty(req, 404);
}

void worker_ws_open(struct http_req *req);
void api_view(struct http_req *req);

static const struct http_route routes[] = {
	{"GET", "/", on_root, 0, 0},
	{"GET", "/health", on_health, 0, 0},
	{"GET", "/ws", worker_ws_open, 0, 0},
	{"GET", "/system_stats", on_system_stats, 0, 0},
	{"GET", "/features", on_features, 0, 0},
	{"GET", "/prompt", on_get_prompt, 0, 0},
	{"POST", "/prompt", on_post_prompt, 0, 0},
	{"GET", "/queue", on_get_queue, 0, 0},
	{"POST", "/queue", on_post_queue, 0, 0},
	{"POST", "/interrupt", on_interrupt, 0, 0},
	{"POST", "/free", on_free, 0, 0},
	{"GET", "/history", on_get_history, 0, 0},
	{"POST", "/history", on_post_history, 0, 0},
	{"GET", "/history/", on_get_history_id, HTTP_ROUTE_PREFIX, 0},
	{"GET", "/view", api_view, 0, 0},
	{"GET", "/object_info", on_object_info, 0, 0},
	{"GET", "/object_info/", on_object_info_class, HTTP_ROUTE_PREFIX, 0},
	{"GET", "/embeddings", on_empty_list, 0, 0},
	{"GET", "/extensions", on_empty_list, 0, 0},
	{"GET", "/models", on_models, 0, 0},
	{"GET", "/models/", on_models_folder, HTTP_ROUTE_PREFIX, 0},
	/* ComfyUI's origin middleware answers OPTIONS with 200 and no body. */
	{"OPTIONS", "/prompt", on_options, 0, 0},
	{"OPTIONS", "/queue", on_options, 0, 0},
	{"OPTIONS", "/history", on_options, 0, 0},
	{"OPTIONS", "/interrupt", on_options, 0, 0},
	{"OPTIONS", "/free", on_options, 0, 0},
	{"OPTIONS", "/view", on_options, 0, 0},
	{"OPTIONS", "/system_stats", on_options, 0, 0},
	{"OPTIONS", "/object_info", on_options, 0, 0},
};

struct http_server *worker_http_start(const char *host, int port, struct err *err)
{
	struct http_config cfg = {
		.host = host,
		.port = port,
		.routes = routes,
		.nroutes = sizeof routes / sizeof routes[0],
		.alias_prefix = "/api",
		.max_body = worker.max_upload,
		.origin_guard = 1,
	};

	no_health = getenv("FNRUN_WORKER_NO_HEALTH") != NULL;
	return http_server_new(worker.loop, &cfg, err);
}
