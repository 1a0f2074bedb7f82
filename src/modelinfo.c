/*
 * modelinfo.c - each model's node classes, read from its server and kept
 * (modelinfo.h).
 *
 * One read is a struct fetch: GET /object_info on the loop (httpc), then
 * on the thread pool the parse, the summary (nodeinfo_summary()) and the
 * text of its file, then back on the loop the file is written and the
 * summary replaces the model's entry.
 *
 * Invariants:
 * 1. mi (the entries, the reads under way) is touched on the loop thread
 *    only. A fetch's work on the thread pool reads and writes only its own
 *    fields: the classes its workflow uses are copied before it starts,
 *    never read from the registry there.
 * 2. An entry's summary and its file change only when the newest read of
 *    that model succeeds (entry->pending is that read's definition); an
 *    older read that ends later is dropped.
 * 3. Every fetch under way is on mi.fetches until it ends, so one the
 *    shutdown cut short (httpc cancels its call, or the loop stops before
 *    its work is back) is still reachable, not leaked.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "httpc.h"
#include "json.h"
#include "log.h"
#include "modelinfo.h"
#include "nodeinfo.h"
#include "registry.h"
#include "server.h"
#include "util.h"

#define MODELINFO_DIR "nodes" /* under the data directory */

/* What is known of one model id. */
struct entry {
	char *id;
	struct json_object *summary; /* owned; NULL until read */
	int64_t fetched_at;          /* ms since the epoch, when read */
	uint64_t done;               /* definition read in this run; 0: none */
	uint64_t pending;            /* definition of the newest read under way; 0: none */
	struct entry *next;
};

/* One read of a model's server. */
struct fetch {
	char *id;
	uint64_t definition;
	char **used;                 /* class types of its workflow, copied */
	size_t nused;
	char *body;                  /* the answer, copied for the thread pool */
	size_t len;
	char dir[4096];              /* where its file goes */
	struct json_object *summary; /* made on the thread pool */
	char *text;                  /* the file it is saved as, made there too */
	int64_t fetched_at;
	struct err err;
	uv_work_t work;
	struct fetch *next;          /* in mi.fetches */
};

static struct {
	struct entry *entries;
	struct fetch *fetches; /* under way (invariant 3) */
	int loaded;            /* the saved summaries were read */
} mi;

static const char *const runtime_names[] = {"process", "docker", "external"};

static struct entry *entry_find(const char *id)
{
	for (struct entry *e = mi.entries; e != NULL; e = e->next)
		if (strcmp(e->id, id) == 0)
			return e;
	return NULL;
}

static struct entry *entry_get(const char *id)
{
	struct entry *e = entry_find(id);

	if (e != NULL)
		return e;
	e = xcalloc(1, sizeof *e);
	e->id = xstrdup(id);
	e->next = mi.entries;
	mi.entries = e;
	return e;
}

/* ---- saved summaries ---- */

/* One saved file: {"model", "fetched_at", "summary"}. */
static void load_file(const char *path)
{
	struct stat st;
	struct json_object *o = NULL, *summary;
	const char *id;
	struct entry *e;

	if (stat(path, &st) == 0 && S_ISREG(st.st_mode) && (size_t)st.st_size <= MODELINFO_MAX_FILE)
		o = json_object_from_file(path);
	id = json_get_str(o, "model");
	summary = json_get_obj(o, "summary");
	if (id == NULL || summary == NULL) {
		log_warn("model nodes file skipped path=%s why=%s", log_q(path),
			 "not a saved summary of at most 16 MiB");
		json_object_put(o);
		return;
	}
	e = entry_get(id);
	json_object_put(e->summary);
	e->summary = json_object_get(summary);
	e->fetched_at = json_get_int(o, "fetched_at", 0);
	json_object_put(o);
}

/* Reads DATA/nodes/ once, at the first use after a start. */
static void ensure_loaded(void)
{
	const char *dir;
	DIR *d;
	struct dirent *de;

	if (mi.loaded)
		return;
	mi.loaded = 1;
	dir = server_path(MODELINFO_DIR);
	d = opendir(dir);
	if (d == NULL)
		return; /* nothing read yet */
	while ((de = readdir(d)) != NULL) {
		char path[4352];

		if (de->d_name[0] == '.' || !util_ends_with(de->d_name, ".json"))
			continue;
		snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
		load_file(path);
	}
	closedir(d);
}

/* Thread pool: the file f's summary is saved as. */
static void save_text(struct fetch *f)
{
	struct json_object *o = json_object_new_object();

	json_put(o, "model", json_str(f->id));
	json_put(o, "fetched_at", json_int(f->fetched_at));
	json_put(o, "summary", json_object_get(f->summary));
	f->text = xstrdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
	json_object_put(o);
}

/*
 * Loop: writes the newest read's file, DIR/<id>.json, through a temporary
 * file (a few hundred KB at most; an older read never overwrites it).
 */
static void save(struct fetch *f)
{
	char *path = xasprintf("%s/%s.json", f->dir, f->id);
	char *tmp = xasprintf("%s.tmp", path);
	FILE *out = util_mkdirs(f->dir) == 0 ? fopen(tmp, "w") : NULL;
	int ok = out != NULL && fputs(f->text, out) >= 0;

	ok = (out != NULL && fclose(out) == 0) && ok && rename(tmp, path) == 0;
	if (!ok) {
		log_warn("model nodes not saved model=%s path=%s why=%s", f->id, log_q(path),
			 strerror(errno));
		unlink(tmp);
	}
	free(tmp);
	free(path);
}

/* ---- one read ---- */

static void fetch_free(struct fetch *f)
{
	for (struct fetch **pp = &mi.fetches; *pp != NULL; pp = &(*pp)->next)
		if (*pp == f) {
			*pp = f->next;
			break;
		}
	for (size_t i = 0; i < f->nused; i++)
		free(f->used[i]);
	free(f->used);
	free(f->body);
	free(f->text);
	json_object_put(f->summary);
	free(f->id);
	free(f);
}

/* The newest read of its model ended (invariant 2); 1 when f is it. */
static int fetch_ended(struct fetch *f)
{
	struct entry *e = entry_get(f->id);

	if (e->pending != f->definition)
		return 0;
	e->pending = 0;
	return 1;
}

static void on_parsed(uv_work_t *w, int status)
{
	struct fetch *f = w->data;
	struct entry *e = entry_get(f->id);
	int newest = fetch_ended(f);

	if (f->summary == NULL || !newest) {
		if (f->summary == NULL)
			log_warn("model server nodes not read model=%s why=%s", f->id,
				 log_q(f->err.msg));
		fetch_free(f);
		return;
	}
	save(f);
	json_object_put(e->summary);
	e->summary = json_object_get(f->summary);
	e->fetched_at = f->fetched_at;
	e->done = f->definition;
	log_info("model server nodes read model=%s classes=%lld bytes=%zu", f->id,
		 (long long)json_get_int(f->summary, "classes", 0), f->len);
	fetch_free(f);
}

/* Thread pool: the answer parsed, cut to its summary, and its file's text (invariant 1). */
static void parse_work(uv_work_t *w)
{
	struct fetch *f = w->data;
	struct json_object *answer = NULL;

	if (nodeinfo_parse(f->body, f->len, &answer, &f->err) < 0)
		return;
	f->summary = nodeinfo_summary(answer, (const char *const *)f->used, f->nused);
	json_object_put(answer);
	free(f->body);
	f->body = NULL;
	save_text(f);
}

static void on_answer(const struct httpc_resp *resp, void *ud)
{
	struct fetch *f = ud;

	if (resp->status != 200 || resp->err.code != 0) {
		if (resp->err.code != 0)
			err_set(&f->err, resp->err.code, "%s", resp->err.msg);
		else
			err_set(&f->err, ERR_UNAVAILABLE, "GET /object_info answered %d", resp->status);
		fetch_ended(f);
		log_warn("model server nodes not read model=%s why=%s", f->id, log_q(f->err.msg));
		fetch_free(f);
		return;
	}
	f->fetched_at = util_now_ms();
	f->len = resp->len;
	f->body = xmalloc(resp->len + 1);
	memcpy(f->body, resp->body, resp->len + 1);
	f->work.data = f;
	if (uv_queue_work(server.loop, &f->work, parse_work, on_parsed) != 0) {
		fetch_ended(f);
		log_warn("model server nodes not read model=%s why=%s", f->id, "no thread pool");
		fetch_free(f);
	}
}

/* What a runner of m runs and reads: a changed one is read again. */
static uint64_t definition(const struct reg_model *m)
{
	struct json_object *a = json_object_new_array();
	char *text, *wf = json_dumps(m->workflow); /* read only: the registry is shared */
	uint64_t h;

	json_object_array_add(a, json_int(m->runtime));
	json_object_array_add(a, json_str(m->image ? m->image : ""));
	for (size_t i = 0; i < m->ncommand; i++)
		json_object_array_add(a, json_str(m->command[i]));
	for (size_t i = 0; i < m->nurls; i++)
		json_object_array_add(a, json_str(m->urls[i]));
	for (size_t i = 0; i < m->nenv; i++)
		json_object_array_add(a, json_str(m->env[i]));
	text = json_dumps(a);
	h = util_hash64(text) * 1000003u ^ util_hash64(wf);
	free(text);
	free(wf);
	json_object_put(a);
	return h ? h : 1; /* 0 means none */
}

static struct fetch *fetch_new(const struct reg_model *m, uint64_t def)
{
	struct fetch *f = xcalloc(1, sizeof *f);
	size_t n = (size_t)json_object_object_length(m->workflow);

	f->id = xstrdup(m->id);
	f->definition = def;
	f->used = xcalloc(n + 1, sizeof *f->used);
	json_object_object_foreach(m->workflow, node, v) {
		const char *cls = json_get_str(v, "class_type");

		(void)node;
		if (cls != NULL && f->nused < n)
			f->used[f->nused++] = xstrdup(cls);
	}
	snprintf(f->dir, sizeof f->dir, "%s", server_path(MODELINFO_DIR));
	f->next = mi.fetches;
	mi.fetches = f;
	return f;
}

void modelinfo_runner_ready(const struct reg_model *m, const char *base_url)
{
	uint64_t def = definition(m);
	struct entry *e;
	struct fetch *f;
	struct httpc_opts o = {.timeout_ms = MODELINFO_TIMEOUT_MS,
			       .max_response = MODELINFO_MAX_BYTES};
	char url[300];
	struct err err = {0};

	ensure_loaded();
	e = entry_get(m->id);
	if (e->done == def || e->pending == def || server.httpc == NULL)
		return;
	f = fetch_new(m, def);
	snprintf(url, sizeof url, "%s/object_info", base_url);
	o.url = url;
	if (httpc_request(server.httpc, &o, on_answer, f, &err) == NULL) {
		log_warn("model server nodes not read model=%s why=%s", m->id, log_q(err.msg));
		fetch_free(f);
		return;
	}
	e->pending = def;
}

/* ---- what is known, shown ---- */

static struct json_object *lookup(const char *id, void *ud)
{
	struct entry *e = entry_find(id);

	return e ? e->summary : NULL;
}

void modelinfo_enrich(struct json_object *catalog, const struct registry *r)
{
	ensure_loaded();
	nodeinfo_enrich(catalog, r, lookup, NULL);
}

/* A copy of summary's key, or JSON null. */
static struct json_object *copy_of(struct json_object *summary, const char *key)
{
	struct json_object *c = NULL;

	if (json_get(summary, key) != NULL)
		json_object_deep_copy(json_get(summary, key), &c, NULL);
	return c;
}

/* The params m binds to inputs of node. */
static struct json_object *node_binds(const struct reg_model *m, const char *node)
{
	struct json_object *a = json_object_new_array();

	for (size_t i = 0; i < m->nbinds; i++) {
		struct json_object *b;

		if (strcmp(m->binds[i].node, node) != 0)
			continue;
		b = json_object_new_object();
		json_put(b, "param", json_str(m->binds[i].param));
		json_put(b, "input", json_str(m->binds[i].input));
		json_object_array_add(a, b);
	}
	return a;
}

static struct json_object *node_view(const struct reg_model *m, const char *node,
				     const char *cls, struct json_object *summary)
{
	static const char *const texts[] = {"display_name", "category", "description"};
	struct json_object *o = json_object_new_object();
	struct json_object *known = json_get_obj(json_get_obj(summary, "used"), cls);
	struct json_object *inputs = NULL;

	json_put(o, "node", json_str(node));
	json_put(o, "class_type", json_str(cls));
	json_put(o, "known", summary ? json_object_new_boolean(known != NULL) : NULL);
	for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++)
		if (json_get_str(known, texts[i]) != NULL)
			json_put(o, texts[i], json_str(json_get_str(known, texts[i])));
	json_object_deep_copy(json_get_obj(known, "inputs"), &inputs, NULL);
	json_put(o, "inputs", inputs ? inputs : json_object_new_object());
	json_put(o, "binds", node_binds(m, node));
	return o;
}

struct json_object *modelinfo_nodes_view(const struct registry *r, const char *id)
{
	const struct reg_model *m = registry_model(r, id);
	struct entry *e;
	struct json_object *o, *nodes;

	if (m == NULL)
		return NULL;
	ensure_loaded();
	e = entry_find(id);
	o = json_object_new_object();
	nodes = json_object_new_array();
	json_put(o, "model", json_str(m->id));
	json_put(o, "function", json_str(m->function->name));
	json_put(o, "quality", json_str(m->quality == REG_QUALITY_AUTO
						? "auto"
						: m->function->qualities[m->quality].key));
	json_put(o, "version", m->version ? json_str(m->version) : NULL);
	json_put(o, "runtime", json_str(runtime_names[m->runtime]));
	json_put(o, "enabled", json_object_new_boolean(m->enabled));
	json_put(o, "fetched_at", e && e->summary ? json_int(e->fetched_at) : NULL);
	json_put(o, "classes", copy_of(e ? e->summary : NULL, "classes"));
	json_put(o, "names", copy_of(e ? e->summary : NULL, "names"));
	json_put(o, "names_cut", json_object_new_boolean(
					 json_get_bool(e ? e->summary : NULL, "names_cut", 0)));
	json_put(o, "missing", copy_of(e ? e->summary : NULL, "missing"));
	json_object_object_foreach(m->workflow, node, v) {
		const char *cls = json_get_str(v, "class_type");

		if (cls != NULL)
			json_object_array_add(nodes, node_view(m, node, cls, e ? e->summary : NULL));
	}
	json_put(o, "nodes", nodes);
	return o;
}
