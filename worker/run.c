/*
 * run.c - executes one validated prompt, node by node, as ComfyUI's
 * PromptExecutor does, and sends the same WebSocket messages in the same
 * order.
 *
 * Execution list: nodes are added from each output backwards through their
 * links (a node before its inputs); a link from a cached node adds nothing.
 * A node is ready when all its inputs have run; among ready nodes an output
 * node goes first, then one feeding an output, then one two steps from an
 * output, else the first added (ComfyUI's ux_friendly_pick_node).
 *
 * Cache (ComfyUI "classic"): a node's outputs are kept under a key built
 * from its class and inputs, recursively through its links. Entries not
 * used by the latest prompt are dropped when it ends.
 *
 * Invariants: at most one run exists (worker.run); a node ends exactly once
 * (node_ctx_done/fail/interrupted); messages for the owner go to
 * item->client_id only.
 */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "buf.h"
#include "image.h"
#include "json.h"
#include "log.h"
#include "node.h"
#include "prompt.h"
#include "util.h"
#include "worker.h"

struct rnode {
	const char *id;                /* borrowed from the prompt */
	const struct node_class *cls;
	struct json_object *inputs;    /* borrowed */
	char *key;                     /* cache key, computed lazily */
	int listed;                    /* in the execution list */
	int done;
	int cached;
	int nblock;                    /* unfinished nodes this waits for */
	struct rnode **blocking;       /* nodes waiting for this one */
	size_t nblocking;
	size_t order;                  /* position in the execution list */
	struct value *out;             /* cls->noutputs values once done */
	struct json_object *ui;        /* UI result, or NULL */
};

struct node_ctx {
	struct run *run;
	struct rnode *node;
	struct value *in;              /* one per declared input */
	void *state;
	int ended;
};

enum run_end { END_NONE, END_OK, END_ERROR, END_INTERRUPT };

struct run {
	struct qitem *item;
	struct rnode *nodes;
	size_t n, nlisted;
	struct json_object *executed;  /* ids run by this prompt */
	struct json_object *messages;  /* history status.messages */
	struct json_object *pstate;    /* progress_state nodes */
	struct rnode *current;
	struct node_ctx *ctx;
	int stepping;                  /* inside run_next */
	int end;                       /* enum run_end */
	uv_timer_t kick;               /* continues after async node ends */
};

struct centry {
	char *key;
	struct value *out;
	size_t nout;
	struct json_object *ui;
	int used;                      /* by the current prompt */
	struct centry *next;
};

static struct centry *cache;

static const struct worker_settings *settings(void)
{
	return &worker.settings;
}

const struct worker_settings *node_settings(void)
{
	return settings();
}

/* ---- cache ---- */

static struct centry *cache_find(const char *key)
{
	for (struct centry *c = cache; c; c = c->next)
		if (strcmp(c->key, key) == 0)
			return c;
	return NULL;
}

static void centry_free(struct centry *c)
{
	for (size_t i = 0; i < c->nout; i++)
		value_clear(&c->out[i]);
	free(c->out);
	json_object_put(c->ui);
	free(c->key);
	free(c);
}

void run_cache_clear(void)
{
	while (cache) {
		struct centry *next = cache->next;
		centry_free(cache);
		cache = next;
	}
}

/* Drops the entries the last prompt did not use (HierarchicalCache.clean_unused). */
static void cache_clean_unused(void)
{
	struct centry **pp = &cache;

	while (*pp) {
		struct centry *c = *pp;
		if (!c->used) {
			*pp = c->next;
			centry_free(c);
			continue;
		}
		c->used = 0;
		pp = &c->next;
	}
}

static void cache_store(struct rnode *n)
{
	struct centry *c;

	if (worker.cache_none || n->key == NULL || cache_find(n->key))
		return;
	c = xcalloc(1, sizeof *c);
	c->key = xstrdup(n->key);
	c->nout = n->cls->noutputs;
	c->out = xcalloc(c->nout ? c->nout : 1, sizeof *c->out);
	for (size_t i = 0; i < c->nout; i++)
		value_copy(&c->out[i], &n->out[i]);
	c->ui = n->ui ? json_object_get(n->ui) : NULL;
	c->used = 1;
	c->next = cache;
	cache = c;
}

static struct rnode *rnode_find(struct run *r, const char *id)
{
	for (size_t i = 0; i < r->n; i++)
		if (strcmp(r->nodes[i].id, id) == 0)
			return &r->nodes[i];
	return NULL;
}

static int link_of(struct json_object *v, const char **src, int64_t *slot)
{
	if (!json_object_is_type(v, json_type_array) || json_object_array_length(v) != 2)
		return 0;
	if (!json_object_is_type(json_object_array_get_idx(v, 0), json_type_string))
		return 0;
	*src = json_object_get_string(json_object_array_get_idx(v, 0));
	*slot = json_object_get_int64(json_object_array_get_idx(v, 1));
	return 1;
}

/* The cache key: class and inputs, with links replaced by their source's key. */
static const char *node_key(struct run *r, struct rnode *n, int depth)
{
	struct buf b;

	if (n->key || depth > 512)
		return n->key ? n->key : "";
	buf_init(&b, (size_t)64 << 20);
	buf_printf(&b, "%s(", n->cls->name);
	json_object_object_foreach(n->inputs, k, v) {
		const char *src;
		int64_t slot;
		struct rnode *s;

		buf_printf(&b, "%s=", k);
		if (link_of(v, &src, &slot) && (s = rnode_find(r, src)) != NULL)
			buf_printf(&b, "<%s>[%lld]", node_key(r, s, depth + 1), (long long)slot);
		else
			json_dump(&b, v);
		buf_putc(&b, ';');
	}
	buf_putc(&b, ')');
	n->key = buf_steal(&b);
	return n->key;
}

/* ---- execution list ---- */

static void add_node(struct run *r, struct rnode *n)
{
	if (n->listed)
		return;
	n->listed = 1;
	n->order = r->nlisted++;
	json_object_object_foreach(n->inputs, k, v) {
		const char *src;
		int64_t slot;
		struct rnode *s;

		(void)k;
		if (!link_of(v, &src, &slot) || (s = rnode_find(r, src)) == NULL || s->cached)
			continue;
		add_node(r, s);
		n->nblock++;
		s->blocking = xrealloc(s->blocking, (s->nblocking + 1) * sizeof *s->blocking);
		s->blocking[s->nblocking++] = n;
	}
}

static int feeds_output(const struct rnode *n, int depth)
{
	for (size_t i = 0; i < n->nblocking; i++) {
		if (depth == 0 && n->blocking[i]->cls->output_node)
			return 1;
		if (depth > 0 && feeds_output(n->blocking[i], depth - 1))
			return 1;
	}
	return 0;
}

/* ComfyUI's ux_friendly_pick_node over the ready nodes, in list order. */
static struct rnode *pick_node(struct run *r)
{
	struct rnode *ready[1024];
	size_t nready = 0;

	for (size_t pos = 0; pos < r->nlisted && nready < 1024; pos++)
		for (size_t i = 0; i < r->n; i++) {
			struct rnode *n = &r->nodes[i];
			if (n->listed && n->order == pos && !n->done && n->nblock == 0)
				ready[nready++] = n;
		}
	if (nready == 0)
		return NULL;
	for (size_t i = 0; i < nready; i++)
		if (ready[i]->cls->output_node)
			return ready[i];
	for (int depth = 0; depth < 2; depth++)
		for (size_t i = 0; i < nready; i++)
			if (feeds_output(ready[i], depth))
				return ready[i];
	return ready[0];
}

/* ---- messages ---- */

static struct json_object *stamp(struct run *r)
{
	struct json_object *d = json_object_new_object();

	json_put(d, "prompt_id", json_str(r->item->prompt_id));
	json_put(d, "timestamp", json_int(util_now_ms()));
	return d;
}

/* Sends to the owner only; nothing when the prompt had no client_id. */
static void to_owner(struct run *r, const char *type, struct json_object *data)
{
	if (r->item->client_id)
		worker_send(type, data, r->item->client_id);
	else
		json_object_put(data);
}

/* Sends to the owner, or to every socket when the prompt had no client_id. */
static void to_owner_or_all(struct run *r, const char *type, struct json_object *data)
{
	worker_send(type, data, r->item->client_id);
}

static void history_message(struct run *r, const char *type, struct json_object *data)
{
	struct json_object *m = json_object_new_array();

	json_object_array_add(m, json_str(type));
	json_object_array_add(m, json_object_get(data));
	json_object_array_add(r->messages, m);
}

static void send_pstate(struct run *r, struct rnode *n, const char *state, double value,
			double max, int ints)
{
	struct json_object *e = json_object_new_object(), *d = json_object_new_object();

	json_put(e, "value", ints ? json_int((int64_t)value) : json_object_new_double(value));
	json_put(e, "max", ints ? json_int((int64_t)max) : json_object_new_double(max));
	json_put(e, "state", json_str(state));
	json_put(e, "node_id", json_str(n->id));
	json_put(e, "prompt_id", json_str(r->item->prompt_id));
	json_put(e, "display_node_id", json_str(n->id));
	json_put(e, "parent_node_id", NULL);
	json_put(e, "real_node_id", json_str(n->id));
	json_put(r->pstate, n->id, e);
	json_put(d, "prompt_id", json_str(r->item->prompt_id));
	json_put(d, "nodes", json_object_get(r->pstate));
	to_owner_or_all(r, "progress_state", d);
}

static void send_executed(struct run *r, struct rnode *n)
{
	struct json_object *d = json_object_new_object();

	json_put(d, "node", json_str(n->id));
	json_put(d, "display_node", json_str(n->id));
	json_put(d, "output", n->ui ? json_object_get(n->ui) : NULL);
	json_put(d, "prompt_id", json_str(r->item->prompt_id));
	to_owner(r, "executed", d);
}

/* ---- node inputs ---- */

static void literal_value(const struct node_input *in, struct json_object *v, struct value *out)
{
	memset(out, 0, sizeof *out);
	if (strcmp(in->type, "INT") == 0) {
		out->type = VAL_INT;
		out->i = json_object_get_int64(v);
		if (out->i == INT64_MAX)
			out->i = (int64_t)json_object_get_uint64(v);
	} else if (strcmp(in->type, "FLOAT") == 0) {
		out->type = VAL_FLOAT;
		out->f = json_object_get_double(v);
	} else if (strcmp(in->type, "BOOLEAN") == 0) {
		out->type = VAL_BOOL;
		out->i = json_object_get_boolean(v);
	} else if (json_object_is_type(v, json_type_string)) {
		out->type = VAL_STRING;
		out->s = xstrdup(json_object_get_string(v));
	} else {
		out->type = VAL_OPAQUE;
		out->s = json_dumps(v);
	}
}

static struct node_ctx *ctx_new(struct run *r, struct rnode *n)
{
	struct node_ctx *ctx = xcalloc(1, sizeof *ctx);

	ctx->run = r;
	ctx->node = n;
	ctx->in = xcalloc(n->cls->ninputs ? n->cls->ninputs : 1, sizeof *ctx->in);
	for (size_t i = 0; i < n->cls->ninputs; i++) {
		const struct node_input *in = &n->cls->inputs[i];
		struct json_object *v = json_get(n->inputs, in->name);
		const char *src;
		int64_t slot;
		struct rnode *s;

		if (v == NULL)
			continue;
		if (link_of(v, &src, &slot) && (s = rnode_find(r, src)) != NULL && s->out &&
		    slot >= 0 && (size_t)slot < s->cls->noutputs)
			value_copy(&ctx->in[i], &s->out[slot]);
		else
			literal_value(in, v, &ctx->in[i]);
	}
	n->out = xcalloc(n->cls->noutputs ? n->cls->noutputs : 1, sizeof *n->out);
	return ctx;
}

static void ctx_free(struct node_ctx *ctx)
{
	if (ctx == NULL)
		return;
	for (size_t i = 0; i < ctx->node->cls->ninputs; i++)
		value_clear(&ctx->in[i]);
	free(ctx->in);
	free(ctx);
}

/* ---- lifecycle ---- */

static void run_next(struct run *r);
static void run_finish(struct run *r);

static void start_node(struct run *r, struct rnode *n)
{
	struct json_object *d;

	r->current = n;
	send_pstate(r, n, "running", 0.0, 1.0, 0);
	d = json_object_new_object();
	json_put(d, "node", json_str(n->id));
	json_put(d, "display_node", json_str(n->id));
	json_put(d, "prompt_id", json_str(r->item->prompt_id));
	to_owner(r, "executing", d);
	r->ctx = ctx_new(r, n);
	if (worker.interrupt) {
		node_ctx_interrupted(r->ctx);
		return;
	}
	n->cls->run(r->ctx);
}

/* A cached output node: re-send its UI without executing it. */
static void replay_cached(struct run *r, struct rnode *n)
{
	struct centry *c = cache_find(n->key);

	n->done = 1;
	if (c) {
		c->used = 1;
		n->ui = c->ui ? json_object_get(c->ui) : NULL;
	}
	if (n->ui)
		send_executed(r, n);
	send_pstate(r, n, "finished", 1, 1, 1);
	for (size_t i = 0; i < n->nblocking; i++)
		n->blocking[i]->nblock--;
}

static void run_next(struct run *r)
{
	r->stepping = 1;
	while (r->end == END_NONE && r->current == NULL) {
		struct rnode *n = pick_node(r);
		if (n == NULL) {
			r->end = END_OK;
			break;
		}
		if (n->cached)
			replay_cached(r, n);
		else
			start_node(r, n);
	}
	r->stepping = 0;
	if (r->end != END_NONE)
		run_finish(r);
}

static void on_kick(uv_timer_t *t)
{
	run_next(t->data);
}

/* Continues the run after a node ended: in place, or on the next loop turn. */
static void node_ended(struct node_ctx *ctx)
{
	struct run *r = ctx->run;

	ctx->ended = 1;
	r->current = NULL;
	ctx_free(r->ctx);
	r->ctx = NULL;
	if (!r->stepping)
		uv_timer_start(&r->kick, on_kick, 0, 0);
}

static struct json_object *inputs_snapshot(struct node_ctx *ctx)
{
	struct json_object *o = json_object_new_object();
	const struct node_class *c = ctx->node->cls;

	for (size_t i = 0; i < c->ninputs; i++) {
		const struct value *v = &ctx->in[i];
		struct json_object *l;

		if (v->type == VAL_NONE)
			continue; /* an optional input left out */
		l = json_object_new_array();
		if (v->type == VAL_INT)
			json_object_array_add(l, json_int(v->i));
		else if (v->type == VAL_FLOAT)
			json_object_array_add(l, json_object_new_double(v->f));
		else {
			char *s = value_to_text(v);
			json_object_array_add(l, json_str(s));
			free(s);
		}
		json_put(o, c->inputs[i].name, l);
	}
	/* Hidden inputs, as ComfyUI lists them: the prompt as Python prints it. */
	for (size_t i = 0; c->hidden && c->hidden[i]; i++) {
		struct json_object *l = json_object_new_array();
		if (strcmp(c->hidden[i], "prompt") == 0) {
			char *text = prompt_py_str(ctx->run->item->prompt);
			json_object_array_add(l, json_str(text));
			free(text);
		} else if (strcmp(c->hidden[i], "extra_pnginfo") == 0) {
			struct json_object *x = json_get(ctx->run->item->extra_data, "extra_pnginfo");
			json_object_array_add(l, x ? json_object_get(x) : NULL);
		} else {
			json_object_array_add(l, json_str(ctx->node->id));
		}
		json_put(o, c->hidden[i], l);
	}
	return o;
}

void node_ctx_done(struct node_ctx *ctx)
{
	struct run *r = ctx->run;
	struct rnode *n = ctx->node;

	if (ctx->ended)
		return;
	n->done = 1;
	json_object_array_add(r->executed, json_str(n->id));
	if (n->ui)
		send_executed(r, n);
	send_pstate(r, n, "finished", 1.0, 1.0, 0);
	cache_store(n);
	for (size_t i = 0; i < n->nblocking; i++)
		n->blocking[i]->nblock--;
	node_ended(ctx);
}

void node_ctx_fail(struct node_ctx *ctx, const char *exc_type, const char *message,
		   const char *const *traceback, size_t ntraceback)
{
	struct run *r = ctx->run;
	struct json_object *d, *tb = json_object_new_array(), *cur = json_object_new_array();
	char *msg;

	if (ctx->ended)
		return;
	for (size_t i = 0; i < ntraceback; i++)
		json_object_array_add(tb, json_str(traceback[i]));
	/* The recording lists every node of the prompt here, run or not. */
	for (size_t i = 0; i < r->n; i++)
		json_object_array_add(cur, json_str(r->nodes[i].id));
	msg = xasprintf("%s\n", message);
	d = json_object_new_object();
	json_put(d, "prompt_id", json_str(r->item->prompt_id));
	json_put(d, "node_id", json_str(ctx->node->id));
	json_put(d, "node_type", json_str(ctx->node->cls->name));
	json_put(d, "executed", json_object_get(r->executed));
	json_put(d, "exception_message", json_str(msg));
	json_put(d, "exception_type", json_str(exc_type));
	json_put(d, "traceback", tb);
	json_put(d, "current_inputs", inputs_snapshot(ctx));
	json_put(d, "current_outputs", cur);
	json_put(d, "timestamp", json_int(util_now_ms()));
	free(msg);
	log_info("node failed prompt=%s node=%s class=%s type=%s", r->item->prompt_id,
		 ctx->node->id, ctx->node->cls->name, exc_type);
	history_message(r, "execution_error", d);
	to_owner(r, "execution_error", d);
	r->end = END_ERROR;
	node_ended(ctx);
}

void node_ctx_interrupted(struct node_ctx *ctx)
{
	struct run *r = ctx->run;
	struct json_object *d;

	if (ctx->ended)
		return;
	d = json_object_new_object();
	json_put(d, "prompt_id", json_str(r->item->prompt_id));
	json_put(d, "node_id", json_str(ctx->node->id));
	json_put(d, "node_type", json_str(ctx->node->cls->name));
	json_put(d, "executed", json_object_get(r->executed));
	json_put(d, "timestamp", json_int(util_now_ms()));
	history_message(r, "execution_interrupted", d);
	to_owner_or_all(r, "execution_interrupted", d);
	r->end = END_INTERRUPT;
	node_ended(ctx);
}

static struct json_object *history_entry(struct run *r)
{
	struct json_object *e = json_object_new_object(), *p = json_object_new_array();
	struct json_object *outs = json_object_new_object(), *meta = json_object_new_object();
	struct json_object *st = json_object_new_object(), *extra;

	json_object_array_add(p, json_object_get(r->item->number));
	json_object_array_add(p, json_str(r->item->prompt_id));
	json_object_array_add(p, json_object_get(r->item->prompt));
	extra = json_object_new_object();
	json_object_object_foreach(r->item->extra_data, k, v) {
		if (strcmp(k, "auth_token_comfy_org") && strcmp(k, "api_key_comfy_org"))
			json_put(extra, k, json_object_get(v));
	}
	json_object_array_add(p, extra);
	json_object_array_add(p, json_object_get(r->item->outputs));
	for (size_t i = 0; i < r->n; i++) {
		struct rnode *n = &r->nodes[i];
		struct json_object *m;
		if (n->ui == NULL)
			continue;
		json_put(outs, n->id, json_object_get(n->ui));
		m = json_object_new_object();
		json_put(m, "node_id", json_str(n->id));
		json_put(m, "display_node", json_str(n->id));
		json_put(m, "parent_node", NULL);
		json_put(m, "real_node_id", json_str(n->id));
		json_put(meta, n->id, m);
	}
	json_put(st, "status_str", json_str(r->end == END_OK ? "success" : "error"));
	json_put(st, "completed", json_object_new_boolean(r->end == END_OK));
	json_put(st, "messages", json_object_get(r->messages));
	json_put(e, "prompt", p);
	json_put(e, "outputs", outs);
	json_put(e, "status", st);
	json_put(e, "meta", meta);
	return e;
}

static void run_free_cb(uv_handle_t *h)
{
	struct run *r = h->data;

	for (size_t i = 0; i < r->n; i++) {
		struct rnode *n = &r->nodes[i];
		for (size_t k = 0; n->out && k < n->cls->noutputs; k++)
			value_clear(&n->out[k]);
		free(n->out);
		free(n->blocking);
		free(n->key);
		json_object_put(n->ui);
	}
	free(r->nodes);
	json_object_put(r->executed);
	json_object_put(r->messages);
	json_object_put(r->pstate);
	free(r);
}

static void run_finish(struct run *r)
{
	struct json_object *entry;

	if (r->end == END_OK) {
		struct json_object *d = stamp(r);
		history_message(r, "execution_success", d);
		to_owner(r, "execution_success", d);
	}
	if (!worker.cache_none)
		cache_clean_unused();
	else
		run_cache_clear();
	entry = history_entry(r);
	log_info("prompt done prompt=%s status=%s", r->item->prompt_id,
		 r->end == END_OK ? "success" : r->end == END_ERROR ? "error" : "interrupted");
	worker.run = NULL;
	uv_close((uv_handle_t *)&r->kick, run_free_cb);
	worker_prompt_done(entry);
}

static void build_nodes(struct run *r)
{
	size_t i = 0;

	r->n = (size_t)json_object_object_length(r->item->prompt);
	r->nodes = xcalloc(r->n ? r->n : 1, sizeof *r->nodes);
	json_object_object_foreach(r->item->prompt, id, node) {
		struct rnode *n = &r->nodes[i++];
		n->id = id;
		n->cls = nodes_find(json_get_str(node, "class_type"));
		n->inputs = json_get_obj(node, "inputs");
	}
}

/* execution_cached lists every node of the prompt whose key is cached. */
static struct json_object *mark_cached(struct run *r)
{
	struct json_object *ids = json_object_new_array();

	for (size_t i = 0; i < r->n; i++) {
		struct rnode *n = &r->nodes[i];
		struct centry *c;
		if (n->cls == NULL || n->inputs == NULL)
			continue;
		c = worker.cache_none ? NULL : cache_find(node_key(r, n, 0));
		if (c == NULL)
			continue;
		n->cached = 1;
		c->used = 1;
		n->out = xcalloc(c->nout ? c->nout : 1, sizeof *n->out);
		for (size_t k = 0; k < c->nout; k++)
			value_copy(&n->out[k], &c->out[k]);
		json_object_array_add(ids, json_str(n->id));
	}
	return ids;
}

void run_start(struct qitem *item)
{
	struct run *r = xcalloc(1, sizeof *r);
	struct json_object *d, *cached;

	r->item = item;
	r->executed = json_object_new_array();
	r->messages = json_object_new_array();
	r->pstate = json_object_new_object();
	uv_timer_init(worker.loop, &r->kick);
	r->kick.data = r;
	worker.run = r;
	build_nodes(r);
	d = stamp(r);
	history_message(r, "execution_start", d);
	to_owner(r, "execution_start", d);
	cached = mark_cached(r);
	d = json_object_new_object();
	json_put(d, "nodes", cached);
	json_put(d, "prompt_id", json_str(item->prompt_id));
	json_put(d, "timestamp", json_int(util_now_ms()));
	history_message(r, "execution_cached", d);
	to_owner(r, "execution_cached", d);
	for (size_t i = 0; i < json_object_array_length(item->outputs); i++) {
		struct rnode *n = rnode_find(r, json_object_get_string(
							 json_object_array_get_idx(item->outputs, i)));
		if (n)
			add_node(r, n);
	}
	run_next(r);
}

void run_interrupt(void)
{
	struct run *r = worker.run;

	if (r == NULL || r->ctx == NULL || r->ctx->ended)
		return;
	if (r->current->cls->cancel)
		r->current->cls->cancel(r->ctx);
}

const char *run_current_node(void)
{
	return worker.run && worker.run->current ? worker.run->current->id : NULL;
}

/* ---- node_ctx services ---- */

const struct value *node_ctx_input(struct node_ctx *ctx, const char *name)
{
	for (size_t i = 0; i < ctx->node->cls->ninputs; i++)
		if (strcmp(ctx->node->cls->inputs[i].name, name) == 0)
			return ctx->in[i].type == VAL_NONE ? NULL : &ctx->in[i];
	return NULL;
}

int64_t node_ctx_int(struct node_ctx *ctx, const char *name, int64_t def)
{
	const struct value *v = node_ctx_input(ctx, name);

	return v && (v->type == VAL_INT || v->type == VAL_BOOL) ? v->i : def;
}

double node_ctx_float(struct node_ctx *ctx, const char *name, double def)
{
	const struct value *v = node_ctx_input(ctx, name);

	if (v && v->type == VAL_FLOAT)
		return v->f;
	return v && v->type == VAL_INT ? (double)v->i : def;
}

const char *node_ctx_str(struct node_ctx *ctx, const char *name, const char *def)
{
	const struct value *v = node_ctx_input(ctx, name);

	return v && v->s ? v->s : def;
}

void node_ctx_set_output(struct node_ctx *ctx, size_t idx, struct value *v)
{
	struct rnode *n = ctx->node;

	if (idx >= n->cls->noutputs) {
		value_clear(v);
		return;
	}
	value_clear(&n->out[idx]);
	n->out[idx] = *v;
	memset(v, 0, sizeof *v);
}

void node_ctx_set_ui(struct node_ctx *ctx, struct json_object *ui)
{
	json_object_put(ctx->node->ui);
	ctx->node->ui = ui;
}

void node_ctx_progress(struct node_ctx *ctx, double value, double max)
{
	struct run *r = ctx->run;
	struct json_object *d = json_object_new_object();

	if (ctx->ended)
		return;
	send_pstate(r, ctx->node, "running", value, max, 0);
	json_put(d, "value", json_int((int64_t)value));
	json_put(d, "max", json_int((int64_t)max));
	json_put(d, "prompt_id", json_str(r->item->prompt_id));
	json_put(d, "node", json_str(ctx->node->id));
	to_owner_or_all(r, "progress", d);
}

void node_ctx_text(struct node_ctx *ctx, const char *text)
{
	size_t idlen = strlen(ctx->node->id), tlen = strlen(text), n = 8 + idlen + tlen;
	unsigned char *p = xmalloc(n);

	p[0] = 0, p[1] = 0, p[2] = 0, p[3] = 3;
	p[4] = (unsigned char)(idlen >> 24), p[5] = (unsigned char)(idlen >> 16);
	p[6] = (unsigned char)(idlen >> 8), p[7] = (unsigned char)idlen;
	memcpy(p + 8, ctx->node->id, idlen);
	memcpy(p + 8 + idlen, text, tlen);
	worker_send_binary_all(p, n);
	free(p);
}

int node_ctx_interrupt_requested(struct node_ctx *ctx)
{
	return worker.interrupt;
}

uv_loop_t *node_ctx_loop(struct node_ctx *ctx)
{
	return worker.loop;
}

const char *node_ctx_node_id(struct node_ctx *ctx)
{
	return ctx->node->id;
}

const char *node_ctx_prompt_id(struct node_ctx *ctx)
{
	return ctx->run->item->prompt_id;
}

const struct json_object *node_ctx_prompt(struct node_ctx *ctx)
{
	return ctx->run->item->prompt;
}

void *node_ctx_state(struct node_ctx *ctx)
{
	return ctx->state;
}

void node_ctx_set_state(struct node_ctx *ctx, void *state)
{
	ctx->state = state;
}

/* Collapses ".", ".." and repeated slashes of an absolute path in place. */
static void path_normalize(char *p)
{
	char *out = p, *seg = p;

	while (*seg) {
		char *end;
		size_t len;
		while (*seg == '/')
			seg++;
		end = strchr(seg, '/');
		len = end ? (size_t)(end - seg) : strlen(seg);
		if (len == 0)
			break;
		if (len == 1 && seg[0] == '.') {
			/* skip */
		} else if (len == 2 && seg[0] == '.' && seg[1] == '.') {
			while (out > p && *--out != '/')
				;
		} else {
			*out++ = '/';
			memmove(out, seg, len);
			out += len;
		}
		seg += len;
	}
	if (out == p)
		*out++ = '/';
	*out = '\0';
}

static int scan_counter(const char *dir, const char *base)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	size_t bl = strlen(base);
	int best = 0;

	if (d == NULL)
		return 0;
	while ((e = readdir(d)) != NULL) {
		if (strncmp(e->d_name, base, bl) == 0 && e->d_name[bl] == '_') {
			int c = atoi(e->d_name + bl + 1);
			if (c > best)
				best = c;
		}
	}
	closedir(d);
	return best;
}

/*
 * The counters of recent (directory, prefix) pairs. ComfyUI scans the
 * directory for the highest <prefix>_<n>_ at every save, which costs a
 * read of the whole directory per image: thousands of files, thousands of
 * entries read. Here the directory is scanned once per pair; later saves
 * take the next number after checking, with one stat, that nobody else
 * took it (then it scans again), so the numbers are the same as ComfyUI's.
 */
#define COUNTERS 16

static struct {
	char key[PATH_MAX + 256]; /* dir "\n" base */
	int last;
} counters[COUNTERS];
static unsigned counters_next;

static int next_counter(const char *dir, const char *base, const char *ext)
{
	char key[sizeof counters[0].key], path[PATH_MAX + 512];
	struct stat st;
	int slot = -1;

	int kn = snprintf(key, sizeof key, "%s\n%s", dir, base);

	if (kn < 0 || (size_t)kn >= sizeof key)
		return scan_counter(dir, base) + 1; /* too long to remember: ComfyUI's way */
	for (int i = 0; i < COUNTERS; i++)
		if (strcmp(counters[i].key, key) == 0)
			slot = i;
	if (slot >= 0) {
		int n = snprintf(path, sizeof path, "%s/%s_%05d_.%s", dir, base,
				 counters[slot].last + 1, ext);
		if (n > 0 && (size_t)n < sizeof path && stat(path, &st) < 0 && errno == ENOENT)
			return ++counters[slot].last;
	} else {
		slot = (int)(counters_next++ % COUNTERS);
		memcpy(counters[slot].key, key, (size_t)kn + 1);
	}
	counters[slot].last = scan_counter(dir, base) + 1;
	return counters[slot].last;
}

int node_ctx_save_path(struct node_ctx *ctx, const char *prefix, const char *ext, int temp,
		       struct save_path *out, char *errbuf, size_t errlen)
{
	const char *root = temp ? settings()->temp_dir : settings()->output_dir;
	const char *slash = strrchr(prefix, '/');
	const char *base = slash ? slash + 1 : prefix;
	char full[PATH_MAX + 1024];
	size_t rl = strlen(root);

	memset(out, 0, sizeof *out);
	if (prefix[0] == '/') {
		snprintf(errbuf, errlen,
			 "**** ERROR: Saving image outside the output folder is not allowed.\n"
			 " full_output_folder: %s\n         output_dir: %s\n", prefix, root);
		return -1;
	}
	snprintf(out->subfolder, sizeof out->subfolder, "%.*s",
		 slash ? (int)(slash - prefix) : 0, prefix);
	snprintf(full, sizeof full, "%s/%s", root, out->subfolder);
	path_normalize(full);
	if (strncmp(full, root, rl) != 0 || (full[rl] != '\0' && full[rl] != '/')) {
		snprintf(errbuf, errlen,
			 "**** ERROR: Saving image outside the output folder is not allowed.\n"
			 " full_output_folder: %s\n         output_dir: %s\n", full, root);
		return -1;
	}
	if (util_mkdirs(full) < 0) {
		snprintf(errbuf, errlen, "cannot create %s: %s", full, strerror(errno));
		return -1;
	}
	snprintf(out->subfolder, sizeof out->subfolder, "%s", full[rl] ? full + rl + 1 : "");
	snprintf(out->filename, sizeof out->filename, "%s_%05d_.%s", base,
		 next_counter(full, base, ext), ext);
	if (snprintf(out->path, sizeof out->path, "%s/%s", full, out->filename) >=
	    (int)sizeof out->path) {
		snprintf(errbuf, errlen, "file name too long");
		return -1;
	}
	out->type = temp ? "temp" : "output";
	return 0;
}
