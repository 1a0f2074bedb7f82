/*
 * cli_docs.c - `fnrun docs --out DIR [--format md|html] [--server URL]`:
 * reference pages written from a running gateway.
 *
 * Users' pages come from GET /api/functions: DIR/index.EXT lists the
 * functions, and DIR/<function>.EXT says what one does, its params (type,
 * whether required, default, allowed values, description) and its
 * qualities with their labels and typical times (measured when its jobs
 * have run, else what the registry expects). They never name a model,
 * since the catalog does not. Operators' pages come from GET
 * /api/admin/models and GET /api/admin/models/{id}/nodes, which need an
 * operator key in $FNRUN_KEY: DIR/models/index.EXT, and DIR/models/<id>.EXT
 * with the model's function, quality, version, runtime and state, the node
 * classes its workflow uses with their inputs (the bound ones marked), and
 * the classes its server offers. Without an operator key they are left
 * out, and a note says so.
 *
 * Invariants:
 * 1. Every page is built in memory before any file is written.
 * 2. A file that exists and does not start with DOCS_MARK (it was not
 *    written by fnrun docs) is never replaced: then nothing is written and
 *    the exit status is 1.
 * 3. Each file is written under a temporary name and renamed, so a
 *    reader never sees half a page; each path written is printed on
 *    standard output.
 */
#include <curl/curl.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "cli.h"
#include "cli_docs.h"
#include "json.h"
#include "outputs.h"
#include "util.h"

#define DOCS_MARK "<!-- written by fnrun docs; its next run replaces this file -->"
#define DOCS_MAX_PAGE (16u << 20) /* bytes of one page */
#define DOCS_NAME_MAX 120         /* bytes of a page's file name */

/* ---- the two formats ---- */

/* One way of writing a page: every call escapes its text. */
struct fmt {
	const char *name, *ext;
	void (*begin)(struct buf *b, const char *title);
	void (*end)(struct buf *b);
	void (*heading)(struct buf *b, int level, const char *text);
	void (*para)(struct buf *b, const char *text);
	void (*code)(struct buf *b, const char *text);
	void (*row)(struct buf *b, const char *const *cells, size_t n, int head);
	void (*table_end)(struct buf *b);
	void (*list)(struct buf *b);
	void (*item)(struct buf *b, const char *href, const char *text, const char *note);
	void (*list_end)(struct buf *b);
};

/* Markdown: the characters that would format, behind a backslash; lines joined. */
static void md_esc(struct buf *b, const char *s)
{
	for (; *s; s++) {
		if (strchr("\\`*_[]<>|#", *s))
			buf_putc(b, '\\');
		buf_putc(b, *s == '\n' || *s == '\r' ? ' ' : *s);
	}
}

static void md_begin(struct buf *b, const char *title)
{
	buf_puts(b, DOCS_MARK "\n\n");
}

static void md_nothing(struct buf *b)
{
}

static void md_heading(struct buf *b, int level, const char *text)
{
	buf_printf(b, "%.*s ", level, "######");
	md_esc(b, text);
	buf_puts(b, "\n\n");
}

static void md_para(struct buf *b, const char *text)
{
	md_esc(b, text);
	buf_puts(b, "\n\n");
}

static void md_code(struct buf *b, const char *text)
{
	buf_printf(b, "```\n%s\n```\n\n", text);
}

static void md_row(struct buf *b, const char *const *cells, size_t n, int head)
{
	for (size_t i = 0; i < n; i++) {
		buf_puts(b, "| ");
		md_esc(b, cells[i]);
		buf_putc(b, ' ');
	}
	buf_puts(b, "|\n");
	for (size_t i = 0; head && i < n; i++)
		buf_puts(b, i + 1 < n ? "|---" : "|---|\n");
}

static void md_block_end(struct buf *b)
{
	buf_putc(b, '\n');
}

static void md_item(struct buf *b, const char *href, const char *text, const char *note)
{
	buf_puts(b, "- [");
	md_esc(b, text);
	buf_printf(b, "](%s)", href);
	if (note != NULL && note[0] != '\0') {
		buf_puts(b, ": ");
		md_esc(b, note);
	}
	buf_putc(b, '\n');
}

static void html_esc(struct buf *b, const char *s)
{
	for (; *s; s++) {
		const char *e = *s == '&' ? "&amp;" : *s == '<' ? "&lt;" : *s == '>' ? "&gt;"
			      : *s == '"' ? "&quot;" : *s == '\'' ? "&#39;" : NULL;

		if (e != NULL)
			buf_puts(b, e);
		else
			buf_putc(b, *s);
	}
}

static void html_begin(struct buf *b, const char *title)
{
	buf_puts(b, DOCS_MARK "\n<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n"
		    "<meta charset=\"utf-8\">\n<title>");
	html_esc(b, title);
	buf_puts(b, "</title>\n<style>body{font-family:sans-serif;max-width:60rem;margin:2rem auto;"
		    "padding:0 1rem}table{border-collapse:collapse}th,td{border:1px solid #ccc;"
		    "padding:.3rem .5rem;text-align:left;vertical-align:top}</style>\n"
		    "</head>\n<body>\n");
}

static void html_end(struct buf *b)
{
	buf_puts(b, "</body>\n</html>\n");
}

static void html_heading(struct buf *b, int level, const char *text)
{
	buf_printf(b, "<h%d>", level);
	html_esc(b, text);
	buf_printf(b, "</h%d>\n", level);
}

static void html_wrap(struct buf *b, const char *open, const char *text, const char *close)
{
	buf_puts(b, open);
	html_esc(b, text);
	buf_puts(b, close);
}

static void html_para(struct buf *b, const char *text)
{
	html_wrap(b, "<p>", text, "</p>\n");
}

static void html_code(struct buf *b, const char *text)
{
	html_wrap(b, "<pre><code>", text, "</code></pre>\n");
}

static void html_row(struct buf *b, const char *const *cells, size_t n, int head)
{
	buf_puts(b, head ? "<table>\n<tr>" : "<tr>");
	for (size_t i = 0; i < n; i++)
		html_wrap(b, head ? "<th>" : "<td>", cells[i], head ? "</th>" : "</td>");
	buf_puts(b, "</tr>\n");
}

static void html_table_end(struct buf *b)
{
	buf_puts(b, "</table>\n");
}

static void html_list(struct buf *b)
{
	buf_puts(b, "<ul>\n");
}

static void html_item(struct buf *b, const char *href, const char *text, const char *note)
{
	html_wrap(b, "<li><a href=\"", href, "\">");
	html_esc(b, text);
	buf_puts(b, "</a>");
	if (note != NULL && note[0] != '\0')
		html_wrap(b, ": ", note, "");
	buf_puts(b, "</li>\n");
}

static void html_list_end(struct buf *b)
{
	buf_puts(b, "</ul>\n");
}

static const struct fmt fmts[] = {
	{"md", "md", md_begin, md_nothing, md_heading, md_para, md_code, md_row, md_block_end,
	 md_nothing, md_item, md_block_end},
	{"html", "html", html_begin, html_end, html_heading, html_para, html_code, html_row,
	 html_table_end, html_list, html_item, html_list_end},
};

/* ---- pages ---- */

struct page {
	const struct fmt *f;
	struct buf b;
	char rel[DOCS_NAME_MAX + 16]; /* its path under DIR */
};

struct pages {
	struct page **v; /* each page is its own allocation: pointers stay valid */
	size_t n;
};

/* A new page rel.EXT (rel under DIR, no extension) begun with title; ps owns it. */
static struct page *page_new(struct pages *ps, const struct fmt *f, const char *rel,
			     const char *title)
{
	struct page *p = xcalloc(1, sizeof *p);

	ps->v = xrealloc(ps->v, (ps->n + 1) * sizeof *ps->v);
	ps->v[ps->n++] = p;
	p->f = f;
	buf_init(&p->b, DOCS_MAX_PAGE);
	snprintf(p->rel, sizeof p->rel, "%s.%s", rel, f->ext);
	f->begin(&p->b, title);
	return p;
}

static void pages_free(struct pages *ps)
{
	for (size_t i = 0; i < ps->n; i++) {
		buf_cleanup(&ps->v[i]->b);
		free(ps->v[i]);
	}
	free(ps->v);
}

/* A JSON value as text: a string as is, anything else as JSON. Borrowed from v. */
static const char *value_text(struct json_object *v)
{
	if (v == NULL)
		return "";
	if (json_object_is_type(v, json_type_string))
		return json_object_get_string(v);
	return json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN);
}

/* What a param or an input allows, from its min, max, max_length and options, into b. */
static void allowed_text(struct json_object *p, struct buf *b)
{
	struct json_object *min = json_get(p, "min"), *max = json_get(p, "max");
	struct json_object *opts = json_get_arr(p, "options");

	if (opts != NULL) {
		buf_puts(b, "one of: ");
		for (size_t i = 0; i < json_object_array_length(opts); i++)
			buf_printf(b, "%s%s", i ? ", " : "",
				   value_text(json_object_array_get_idx(opts, i)));
	} else if (min != NULL && max != NULL) {
		buf_printf(b, "%s to ", value_text(min));
		buf_puts(b, value_text(max));
	} else if (min != NULL || max != NULL) {
		buf_printf(b, "%s %s", min ? "at least" : "at most", value_text(min ? min : max));
	}
	if (json_get(p, "max_length") != NULL)
		buf_printf(b, "%sup to %lld characters", b->len ? "; " : "",
			   (long long)json_get_int(p, "max_length", 0));
	if (b->len == 0)
		buf_puts(b, "any");
}

/* ---- users' pages ---- */

/* A quality's typical time: measured when its jobs ran, else the registry's. */
static void time_text(struct json_object *q, char *out, size_t n)
{
	struct json_object *t = json_get_arr(q, "typical_seconds");

	if (json_get(q, "measured_seconds") != NULL)
		snprintf(out, n, "about %.1f s (measured)",
			 json_object_get_double(json_get(q, "measured_seconds")));
	else if (t != NULL && json_object_array_length(t) == 2)
		snprintf(out, n, "%lld to %lld s (expected)",
			 (long long)json_object_get_int64(json_object_array_get_idx(t, 0)),
			 (long long)json_object_get_int64(json_object_array_get_idx(t, 1)));
	else
		snprintf(out, n, "not known");
}

static void qualities_table(struct page *pg, struct json_object *f)
{
	static const char *const head[] = {"quality", "key", "typical time", "note"};
	struct json_object *qs = json_get_arr(f, "qualities");
	const char *def = json_get_str(f, "default_quality");

	pg->f->heading(&pg->b, 2, "Qualities");
	pg->f->row(&pg->b, head, 4, 1);
	for (size_t i = 0; qs != NULL && i < json_object_array_length(qs); i++) {
		struct json_object *q = json_object_array_get_idx(qs, i);
		const char *key = json_get_str(q, "key") ? json_get_str(q, "key") : "";
		char time[64], note[64];
		const char *cells[4] = {json_get_str(q, "label") ? json_get_str(q, "label") : key, key,
					time, note};

		time_text(q, time, sizeof time);
		snprintf(note, sizeof note, "%s%s", def && strcmp(def, key) == 0 ? "the default" : "",
			 json_get_bool(q, "available", 1) ? "" : " (paused now)");
		pg->f->row(&pg->b, cells, 4, 0);
	}
	pg->f->table_end(&pg->b);
}

static void param_row(struct page *pg, const char *name, struct json_object *p)
{
	struct buf allowed;
	const char *def = json_get_bool(p, "random", 0)       ? "random"
			  : json_get(p, "default") != NULL    ? value_text(json_get(p, "default"))
			  : json_get_bool(p, "required", 0) ? ""
							    : "none";
	const char *cells[6] = {name, json_get_str(p, "type") ? json_get_str(p, "type") : "",
				json_get_bool(p, "required", 0) ? "yes" : "no", def, NULL,
				json_get_str(p, "description") ? json_get_str(p, "description") : ""};

	buf_init(&allowed, 64 * 1024);
	allowed_text(p, &allowed);
	cells[4] = allowed.data;
	pg->f->row(&pg->b, cells, 6, 0);
	buf_cleanup(&allowed);
}

/* How to run it: fnrun submit with its required params, and the same as an API request. */
static void example(struct page *pg, struct json_object *f, const char *base)
{
	struct json_object *params = json_get_obj(f, "params"), *body = json_object_new_object();
	struct json_object *given = json_object_new_object();
	struct buf b;

	buf_init(&b, 64 * 1024);
	buf_printf(&b, "fnrun submit \"%s\"", json_get_str(f, "name"));
	if (strcmp(base, CLI_DEFAULT_SERVER) != 0)
		buf_printf(&b, " --server %s", base);
	json_put(body, "function", json_str(json_get_str(f, "name")));
	json_object_object_foreach(params, name, p) {
		if (!json_get_bool(p, "required", 0))
			continue;
		buf_printf(&b, " --param %s=...", name);
		json_put(given, name, json_str("..."));
	}
	json_put(body, "params", given);
	buf_printf(&b, "\n\ncurl -s %s/api/generate -d '%s'", base,
		   json_object_to_json_string_ext(body, JSON_C_TO_STRING_SPACED |
							JSON_C_TO_STRING_NOSLASHESCAPE));
	pg->f->heading(&pg->b, 2, "Example");
	pg->f->code(&pg->b, b.data);
	buf_cleanup(&b);
	json_object_put(body);
}

static void function_page(struct page *pg, struct json_object *f, const char *base)
{
	static const char *const head[] = {"param", "type", "required", "default", "allowed",
					   "description"};
	struct json_object *params = json_get_obj(f, "params");
	const char *desc = json_get_str(f, "description"), *out = json_get_str(f, "output");
	char gives[64];

	pg->f->heading(&pg->b, 1, json_get_str(f, "name"));
	pg->f->para(&pg->b, desc ? desc : "No description yet.");
	if (out != NULL) {
		snprintf(gives, sizeof gives, "It makes %s.", strcmp(out, "image") == 0   ? "an image"
							      : strcmp(out, "video") == 0 ? "a video"
											  : out);
		pg->f->para(&pg->b, gives);
	}
	qualities_table(pg, f);
	pg->f->heading(&pg->b, 2, "Parameters");
	if (params == NULL || json_object_object_length(params) == 0) {
		pg->f->para(&pg->b, "It takes no parameters.");
	} else {
		pg->f->row(&pg->b, head, 6, 1);
		json_object_object_foreach(params, name, p)
			param_row(pg, name, p);
		pg->f->table_end(&pg->b);
	}
	example(pg, f, base);
}

/* A file name for name under DIR: the function's words, as output files are named. */
static void slug(const char *name, char *out, size_t n, struct pages *ps, const char *dir)
{
	char base[DOCS_NAME_MAX];
	size_t len;

	outputs_stem(base, sizeof base, name, "");
	len = strlen(base);
	while (len > 0 && base[len - 1] == '-')
		base[--len] = '\0';
	if (len == 0 || strcmp(base, "job") == 0)
		snprintf(base, sizeof base, "function");
	for (int k = 1;; k++) {
		int taken = 0;

		snprintf(out, n, k == 1 ? "%s%s" : "%s%s-%d", dir, base, k);
		for (size_t i = 0; i < ps->n && !taken; i++)
			taken = strncmp(ps->v[i]->rel, out, strlen(out)) == 0 &&
				ps->v[i]->rel[strlen(out)] == '.';
		if (!taken && strcmp(out + strlen(dir), "index") != 0)
			return;
	}
}

static void user_pages(struct pages *ps, const struct fmt *fm, struct json_object *cat,
		       const char *base)
{
	struct json_object *fs = json_get_arr(cat, "functions");
	struct page *list = page_new(ps, fm, "index", "Functions");

	fm->heading(&list->b, 1, "Functions");
	fm->list(&list->b);
	for (size_t i = 0; fs != NULL && i < json_object_array_length(fs); i++) {
		struct json_object *f = json_object_array_get_idx(fs, i);
		const char *name = json_get_str(f, "name");
		char rel[DOCS_NAME_MAX + 8], href[DOCS_NAME_MAX + 16];
		struct page *pg;

		if (name == NULL)
			continue;
		slug(name, rel, sizeof rel, ps, "");
		pg = page_new(ps, fm, rel, name);
		function_page(pg, f, base);
		fm->end(&pg->b);
		snprintf(href, sizeof href, "%s.%s", rel, fm->ext);
		fm->item(&list->b, href, name, json_get_str(f, "description"));
	}
	fm->list_end(&list->b);
	fm->end(&list->b);
}

/* ---- operators' pages ---- */

/* The params bound to input name of a node view, "a, b", into b. */
static void bound_text(struct json_object *node, const char *name, struct buf *b)
{
	struct json_object *binds = json_get_arr(node, "binds");

	for (size_t i = 0; binds != NULL && i < json_object_array_length(binds); i++) {
		struct json_object *bd = json_object_array_get_idx(binds, i);
		const char *input = json_get_str(bd, "input");

		if (input != NULL && strcmp(input, name) == 0)
			buf_printf(b, "%s%s", b->len ? ", " : "", json_get_str(bd, "param"));
	}
}

static void input_row(struct page *pg, struct json_object *node, const char *name,
		      struct json_object *in)
{
	struct buf allowed, bound;
	const char *type = json_get_str(in, "type") ? json_get_str(in, "type") : "";
	int value = strcmp(type, "INT") == 0 || strcmp(type, "FLOAT") == 0 ||
		    strcmp(type, "STRING") == 0 || strcmp(type, "BOOLEAN") == 0 ||
		    strcmp(type, "COMBO") == 0;
	const char *cells[7] = {name, type, json_get_bool(in, "required", 0) ? "yes" : "no", NULL,
				value_text(json_get(in, "default")), NULL,
				json_get_str(in, "tooltip") ? json_get_str(in, "tooltip") : ""};

	buf_init(&allowed, 256 * 1024);
	buf_init(&bound, 64 * 1024);
	if (value)
		allowed_text(in, &allowed);
	bound_text(node, name, &bound);
	cells[3] = allowed.data ? allowed.data : "a link from another node";
	cells[5] = bound.data ? bound.data : "";
	pg->f->row(&pg->b, cells, 7, 0);
	buf_cleanup(&allowed);
	buf_cleanup(&bound);
}

static void node_section(struct page *pg, struct json_object *node)
{
	static const char *const head[] = {"input", "type", "required", "allowed", "default",
					   "bound to param", "description"};
	const char *cls = json_get_str(node, "class_type"), *disp = json_get_str(node, "display_name");
	struct json_object *inputs = json_get_obj(node, "inputs"), *known = json_get(node, "known");
	char title[600];

	snprintf(title, sizeof title, "Node %s: %s%s%s%s", json_get_str(node, "node"), cls,
		 disp ? " (" : "", disp ? disp : "", disp ? ")" : "");
	pg->f->heading(&pg->b, 3, title);
	if (json_get_str(node, "description") != NULL)
		pg->f->para(&pg->b, json_get_str(node, "description"));
	if (known != NULL && !json_object_get_boolean(known)) {
		snprintf(title, sizeof title, "Its server has no class %s.", cls);
		pg->f->para(&pg->b, title);
	}
	if (inputs == NULL || json_object_object_length(inputs) == 0)
		return;
	pg->f->row(&pg->b, head, 7, 1);
	json_object_object_foreach(inputs, name, in)
		input_row(pg, node, name, in);
	pg->f->table_end(&pg->b);
}

/* Seconds since the epoch in ms as "2024-05-01 12:00:00 UTC". */
static void when_text(int64_t ms, char *out, size_t n)
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(out, n, "%Y-%m-%d %H:%M:%S UTC", &tm);
}

static void model_facts(struct page *pg, struct json_object *m, struct json_object *nodes)
{
	static const char *const head[] = {"", ""};
	static const char *const keys[] = {"function", "quality", "version", "runtime"};
	char read[64] = "not yet: when its first runner is ready";

	pg->f->row(&pg->b, head, 2, 1);
	for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
		struct json_object *v = json_get(nodes ? nodes : m, keys[i]);
		const char *cells[2] = {keys[i], v ? value_text(v) : "none"};

		pg->f->row(&pg->b, cells, 2, 0);
	}
	pg->f->row(&pg->b, (const char *const[]){"state", value_text(json_get(m, "state"))}, 2, 0);
	if (json_get(nodes, "fetched_at") != NULL)
		when_text(json_get_int(nodes, "fetched_at", 0), read, sizeof read);
	pg->f->row(&pg->b, (const char *const[]){"node classes read", read}, 2, 0);
	pg->f->table_end(&pg->b);
}

/* The classes the server offers, as one paragraph. */
static void class_names(struct page *pg, struct json_object *nodes)
{
	struct json_object *names = json_get_arr(nodes, "names");
	char title[80];
	struct buf b;

	if (names == NULL)
		return;
	snprintf(title, sizeof title, "Classes its server offers (%lld)",
		 (long long)json_get_int(nodes, "classes", 0));
	pg->f->heading(&pg->b, 2, title);
	buf_init(&b, DOCS_MAX_PAGE / 2);
	for (size_t i = 0; i < json_object_array_length(names); i++)
		buf_printf(&b, "%s%s", i ? ", " : "", value_text(json_object_array_get_idx(names, i)));
	if (json_get_bool(nodes, "names_cut", 0))
		buf_puts(&b, ", and more");
	pg->f->para(&pg->b, b.data ? b.data : "none");
	buf_cleanup(&b);
}

static void model_page(struct page *pg, struct json_object *m, struct json_object *nodes)
{
	struct json_object *ns = json_get_arr(nodes, "nodes");
	char title[300];

	snprintf(title, sizeof title, "Model %s", json_get_str(m, "id"));
	pg->f->heading(&pg->b, 1, title);
	model_facts(pg, m, nodes);
	if (nodes == NULL) {
		pg->f->para(&pg->b, "What its server offers could not be read from the gateway.");
		return;
	}
	pg->f->heading(&pg->b, 2, "Nodes of its workflow");
	for (size_t i = 0; ns != NULL && i < json_object_array_length(ns); i++)
		node_section(pg, json_object_array_get_idx(ns, i));
	class_names(pg, nodes);
}

/* ---- HTTP ---- */

/*
 * GET base + path: a 2xx answer's JSON (caller owns), or NULL with why in
 * err (its HTTP status in *status, 0 when none came).
 */
static struct json_object *get_json(const char *base, const char *path, long *status,
				    struct err *err)
{
	char *url = xasprintf("%s%s", base, path);
	struct json_object *o = NULL, *e;

	*status = 0;
	if (cli_request(url, "GET", NULL, status, &o, err) == 0 && *status >= 200 && *status < 300) {
		free(url);
		return o;
	}
	e = json_get_obj(o, "error");
	if (err->code == 0)
		err_set(err, ERR_UNAVAILABLE, "GET %s: HTTP %ld: %s%s", path, *status,
			json_get_str(e, "message") ? json_get_str(e, "message") : "refused",
			*status == 401 || *status == 403 ? " (FNRUN_KEY is not an operator key)" : "");
	json_object_put(o);
	free(url);
	return NULL;
}

/* The nodes view of model id, or NULL after a note on stderr. */
static struct json_object *model_nodes(const char *base, const char *id)
{
	char *esc = curl_easy_escape(NULL, id, 0), *path = xasprintf("/api/admin/models/%s/nodes", esc);
	struct err err = {0};
	long status;
	struct json_object *o = get_json(base, path, &status, &err);

	if (o == NULL)
		fprintf(stderr, "fnrun docs: model %s: %s\n", id, err.msg);
	free(path);
	curl_free(esc);
	return o;
}

/* A model id as a file name: as it is, unless it could hide or name the index. */
static void model_rel(const char *id, char *out, size_t n)
{
	snprintf(out, n, "models/%s%s", id[0] == '.' || strcmp(id, "index") == 0 ? "model-" : "", id);
}

static void operator_pages(struct pages *ps, const struct fmt *fm, const char *base,
			   struct json_object *admin)
{
	struct json_object *ms = json_get_arr(admin, "models");
	struct page *list = page_new(ps, fm, "models/index", "Models");

	fm->heading(&list->b, 1, "Models");
	fm->para(&list->b, "For operators: what serves each function, and the node classes of its "
			   "model server.");
	fm->list(&list->b);
	for (size_t i = 0; ms != NULL && i < json_object_array_length(ms); i++) {
		struct json_object *m = json_object_array_get_idx(ms, i), *nodes;
		const char *id = json_get_str(m, "id");
		char rel[DOCS_NAME_MAX + 16], note[300];
		struct page *pg;

		if (id == NULL || strlen(id) > DOCS_NAME_MAX)
			continue;
		model_rel(id, rel, sizeof rel);
		nodes = model_nodes(base, id);
		pg = page_new(ps, fm, rel, id);
		model_page(pg, m, nodes);
		fm->end(&pg->b);
		json_object_put(nodes);
		snprintf(note, sizeof note, "%s, %s, %s", value_text(json_get(m, "function")),
			 value_text(json_get(m, "quality")), value_text(json_get(m, "state")));
		fm->item(&list->b, strchr(pg->rel, '/') + 1, id, note);
	}
	fm->list_end(&list->b);
	fm->end(&list->b);
}

/* ---- files ---- */

/* 1 when path may be written: it is missing, or fnrun docs wrote it (invariant 2). */
static int ours(const char *path)
{
	FILE *f = fopen(path, "r");
	char line[sizeof DOCS_MARK + 2] = "";
	int ok;

	if (f == NULL)
		return errno == ENOENT;
	ok = fgets(line, sizeof line, f) != NULL && strncmp(line, DOCS_MARK, strlen(DOCS_MARK)) == 0;
	fclose(f);
	return ok;
}

static int write_page(const char *dir, const struct page *p)
{
	char *path = xasprintf("%s/%s", dir, p->rel), *tmp = xasprintf("%s.tmp", path);
	FILE *f = fopen(tmp, "w");
	int ok = f != NULL && fwrite(p->b.data, 1, p->b.len, f) == p->b.len;

	ok = (f != NULL && fclose(f) == 0) && ok && rename(tmp, path) == 0;
	if (!ok) {
		fprintf(stderr, "fnrun docs: cannot write %s: %s\n", path, strerror(errno));
		unlink(tmp);
	} else {
		printf("%s\n", path);
	}
	free(tmp);
	free(path);
	return ok ? 0 : -1;
}

static int write_all(const char *dir, struct pages *ps)
{
	char *models = xasprintf("%s/models", dir);
	int rc = 0;

	for (size_t i = 0; i < ps->n; i++) {
		char *path = xasprintf("%s/%s", dir, ps->v[i]->rel);

		if (!ours(path)) {
			fprintf(stderr, "fnrun docs: %s exists and was not written by fnrun docs; move "
				"it, or give another --out (nothing was written)\n", path);
			rc = -1;
		}
		free(path);
	}
	if (rc == 0 && (util_mkdirs(dir) < 0 || util_mkdirs(models) < 0)) {
		fprintf(stderr, "fnrun docs: cannot create %s: %s\n", models, strerror(errno));
		rc = -1;
	}
	for (size_t i = 0; rc == 0 && i < ps->n; i++)
		rc = write_page(dir, ps->v[i]);
	free(models);
	return rc;
}

/* ---- the command ---- */

struct docs_opts {
	const char *out, *server;
	const struct fmt *f;
};

/* --out DIR, --format md|html, --server URL (each also as --name=VALUE). -1: a usage error. */
static int docs_opts(int argc, char **argv, struct docs_opts *o)
{
	static const char *const names[] = {"--out", "--format", "--server"};
	const char *v[3] = {NULL, "md", NULL};

	for (int i = 1; i < argc; i++) {
		size_t k = 0, n;

		for (; k < 3; k++) {
			n = strlen(names[k]);
			if (strncmp(argv[i], names[k], n) == 0 && (argv[i][n] == '\0' || argv[i][n] == '='))
				break;
		}
		if (k == 3 || (argv[i][n] == '\0' && i + 1 >= argc))
			return -1;
		v[k] = argv[i][n] == '=' ? argv[i] + n + 1 : argv[++i];
	}
	o->out = v[0];
	o->server = v[2];
	o->f = NULL;
	for (size_t k = 0; k < sizeof fmts / sizeof fmts[0]; k++)
		if (strcmp(fmts[k].name, v[1]) == 0)
			o->f = &fmts[k];
	return o->out != NULL && o->out[0] != '\0' && o->f != NULL ? 0 : -1;
}

int cli_docs(int argc, char **argv)
{
	struct docs_opts o;
	struct pages ps = {0};
	struct json_object *cat, *admin;
	struct err err = {0};
	const char *base;
	long status;
	int rc;

	if (docs_opts(argc, argv, &o) < 0) {
		fprintf(stderr, "usage: %s\n", cli_find("docs")->usage);
		return 2;
	}
	base = cli_server_base(o.server);
	cat = get_json(base, "/api/functions", &status, &err);
	if (cat == NULL) {
		fprintf(stderr, "fnrun docs: %s\n", err.msg);
		return 1;
	}
	user_pages(&ps, o.f, cat, base);
	err_clear(&err);
	admin = get_json(base, "/api/admin/models", &status, &err);
	if (admin != NULL)
		operator_pages(&ps, o.f, base, admin);
	else
		fprintf(stderr, "fnrun docs: the operators' pages are left out: %s\n", err.msg);
	rc = write_all(o.out, &ps);
	pages_free(&ps);
	json_object_put(admin);
	json_object_put(cat);
	return rc == 0 ? 0 : 1;
}
