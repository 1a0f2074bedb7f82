/*
 * comfy_fetch.c - the result of a prompt (comfy.h): GET /history/{id}
 * (skipped when the /ws session already named the outputs); on success,
 * GET /view for each output file, streamed into the output store
 * (outputs.h) under the public name <job id>/<n>-<filename>; on failure,
 * the exception from the history.
 *
 * A file is written in place, not through a temp file and a rename: the
 * job refers to it only once its completion is committed, after the copy,
 * so a partial file (a crash mid-copy) is never shown and the next attempt
 * overwrites it. A PNG's width and height are read from its first bytes
 * as they pass, so that small images need no thumbnail pass.
 */
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "comfy.h"
#include "httpc.h"
#include "json.h"
#include "outputs.h"
#include "server.h"
#include "thumb.h"
#include "util.h"

#define HISTORY_TIMEOUT_MS 10000
#define VIEW_TIMEOUT_MS 120000
#define HISTORY_MAX_BYTES ((size_t)64 << 20)

struct comfy_fetch {
	char base_url[300];
	char *prompt_id;
	char *out_root;
	char job_id[64];
	char stem[96];               /* output names: outputs_name() */
	uint64_t tag;
	comfy_result_fn cb;
	void *ud;
	struct httpc_call *call;
	struct json_object *items;   /* [{filename, subfolder, kind}] */
	size_t next;
	struct json_object *outputs; /* copied: [{path, filename, kind, width?, height?}] */
	int fd;                      /* the file being written, or -1 */
	char path[4096];             /* its path */
	unsigned char head[THUMB_HEADER]; /* its first bytes: a PNG's size */
	size_t nhead;
	int write_failed;            /* errno of a failed write, 0 */
};

static void file_close(struct comfy_fetch *f, int keep);

static void fetch_free(struct comfy_fetch *f)
{
	file_close(f, 0);
	json_object_put(f->items);
	json_object_put(f->outputs);
	free(f->prompt_id);
	free(f->out_root);
	free(f);
}

static void fetch_end(struct comfy_fetch *f, int result, const char *exc_type, const char *msg)
{
	struct json_object *outs = result == COMFY_OK ? json_object_get(f->outputs) : NULL;

	f->call = NULL;
	f->cb(f->ud, f->tag, result, outs, exc_type, msg);
	fetch_free(f);
}

void comfy_fetch_cancel(struct comfy_fetch *f)
{
	if (f == NULL)
		return;
	httpc_cancel(f->call);
	fetch_free(f);
}

/*
 * The kind of a saved file, by its extension first: ComfyUI's SaveVideo and
 * SaveWEBM list their video under "images" (with "animated": [true]),
 * SaveAnimatedWEBP and SaveAnimatedPNG their animation under "images" too,
 * and VideoHelperSuite its MP4, GIF or WEBP under "gifs". An animated
 * image stays an image (a page shows it in <img>).
 */
static const struct {
	const char *ext, *kind;
} ext_kinds[] = {
	{".mp4", "video"}, {".webm", "video"}, {".mov", "video"}, {".mkv", "video"},
	{".m4v", "video"}, {".avi", "video"},
	{".flac", "audio"}, {".mp3", "audio"}, {".opus", "audio"}, {".wav", "audio"},
	{".ogg", "audio"}, {".m4a", "audio"},
	{".png", "image"}, {".webp", "image"}, {".gif", "image"}, {".jpg", "image"},
	{".jpeg", "image"},
};

static const char *kind_of(const char *key, const char *filename)
{
	size_t n = strlen(filename);

	for (size_t i = 0; i < sizeof ext_kinds / sizeof ext_kinds[0]; i++) {
		size_t e = strlen(ext_kinds[i].ext);
		if (n > e && strcasecmp(filename + n - e, ext_kinds[i].ext) == 0)
			return ext_kinds[i].kind;
	}
	if (strcmp(key, "audio") == 0)
		return "audio";
	if (strcmp(key, "video") == 0 || strcmp(key, "gifs") == 0)
		return "video";
	return "image";
}

/* One output file of a node's UI dict, or NULL when it is not a saved output. */
static struct json_object *output_item(const char *key, struct json_object *f)
{
	const char *fn = json_get_str(f, "filename");
	const char *type = json_get_str(f, "type");
	const char *sub = json_get_str(f, "subfolder");
	struct json_object *it;

	if (fn == NULL || fn[0] == '\0' || strchr(fn, '/') || (type && strcmp(type, "output") != 0))
		return NULL;
	it = json_object_new_object();
	json_put(it, "filename", json_str(fn));
	json_put(it, "subfolder", json_str(sub ? sub : ""));
	json_put(it, "kind", json_str(kind_of(key, fn)));
	return it;
}

void comfy_outputs_add(struct json_object *items, struct json_object *ui)
{
	if (!json_object_is_type(ui, json_type_object))
		return;
	json_object_object_foreach(ui, key, list) {
		size_t n = json_object_is_type(list, json_type_array) ? json_object_array_length(list)
								       : 0;
		for (size_t i = 0; i < n; i++) {
			struct json_object *it = output_item(key, json_object_array_get_idx(list, i));
			if (it)
				json_object_array_add(items, it);
		}
	}
}

/* Output files in a history entry's outputs, type "output" only (not previews). */
static struct json_object *collect_outputs(struct json_object *outputs)
{
	struct json_object *items = json_object_new_array();

	if (json_object_is_type(outputs, json_type_object)) {
		json_object_object_foreach(outputs, node, ui) {
			(void)node;
			comfy_outputs_add(items, ui);
		}
	}
	return items;
}

/* The file being copied: written in place, its PNG size read from its first bytes. */
static void file_close(struct comfy_fetch *f, int keep)
{
	if (f->fd < 0)
		return;
	close(f->fd);
	f->fd = -1;
	if (!keep)
		unlink(f->path);
}

static void on_chunk(const char *p, size_t n, void *ud)
{
	struct comfy_fetch *f = ud;

	if (f->nhead < sizeof f->head) {
		size_t k = n < sizeof f->head - f->nhead ? n : sizeof f->head - f->nhead;
		memcpy(f->head + f->nhead, p, k);
		f->nhead += k;
	}
	while (n > 0 && !f->write_failed) {
		ssize_t w = write(f->fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			f->write_failed = errno ? errno : EIO;
			break;
		}
		p += w;
		n -= (size_t)w;
	}
}

/* Records a PNG's size, read from its first bytes, in its output entry. */
static void note_size(struct json_object *out, const unsigned char *head, size_t n)
{
	int w, h;

	if (thumb_png_header(head, n, &w, &h) == 0) {
		json_put(out, "width", json_int(w));
		json_put(out, "height", json_int(h));
	}
}

/*
 * A stored output: where it is, the name users see, its kind, and the
 * model server's own name (source, for operators only).
 */
static struct json_object *output_entry(struct json_object *it, const char *rel, const char *file)
{
	struct json_object *out = json_object_new_object();

	json_put(out, "path", json_str(rel));
	json_put(out, "filename", json_str(file));
	json_put(out, "kind", json_str(json_get_str(it, "kind")));
	json_put(out, "source", json_str(json_get_str(it, "filename")));
	return out;
}

static int download_one(struct comfy_fetch *f, struct err *err);

static void on_downloaded(const struct httpc_resp *resp, void *ud)
{
	struct comfy_fetch *f = ud;
	struct json_object *out = json_object_array_get_idx(f->outputs, f->next);
	struct err e = {0};

	f->call = NULL;
	if (resp->status != 200 || f->write_failed) {
		file_close(f, 0);
		fetch_end(f, COMFY_OUTPUT_LOST, NULL,
			  f->write_failed ? strerror(f->write_failed)
			  : resp->status ? "GET /view failed" : resp->err.msg);
		return;
	}
	file_close(f, 1);
	note_size(out, f->head, f->nhead);
	f->next++;
	if (f->next == json_object_array_length(f->items)) {
		fetch_end(f, COMFY_OK, NULL, NULL);
		return;
	}
	if (download_one(f, &e) < 0)
		fetch_end(f, COMFY_OUTPUT_LOST, NULL, e.msg);
}

/*
 * Starts copying output f->next to the output store: written in place (a
 * job refers to its files only once its completion is committed, so a
 * partial file from a crash is never shown, and a retry replaces it).
 * Returns -1 with err when it cannot start.
 */
static int download_one(struct comfy_fetch *f, struct err *err)
{
	struct json_object *it = json_object_array_get_idx(f->items, f->next);
	struct httpc_opts o = {.timeout_ms = VIEW_TIMEOUT_MS, .on_chunk = on_chunk};
	const char *name = json_get_str(it, "filename");
	char url[1024], file[512], rel[600];
	char *fn, *sub;

	outputs_name(file, sizeof file, f->stem, f->next, name);
	if (outputs_write_path(f->out_root, f->job_id, file, f->path, sizeof f->path, err) < 0)
		return -1;
	/*
	 * A new file, never a truncated one: an earlier attempt of this job may
	 * have hard-linked this name to the model server's own file (which
	 * O_TRUNC would empty, and /view would then serve empty).
	 */
	if (unlink(f->path) < 0 && errno != ENOENT) {
		err_set(err, ERR_IO, "cannot replace %s: %s", f->path, strerror(errno));
		return -1;
	}
	f->fd = open(f->path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (f->fd < 0) {
		err_set(err, ERR_IO, "cannot write %s: %s", f->path, strerror(errno));
		return -1;
	}
	f->nhead = 0;
	f->write_failed = 0;
	fn = curl_easy_escape(NULL, name, 0);
	sub = curl_easy_escape(NULL, json_get_str(it, "subfolder"), 0);
	snprintf(url, sizeof url, "%s/view?filename=%s&subfolder=%s&type=output", f->base_url, fn,
		 sub);
	curl_free(fn);
	curl_free(sub);
	snprintf(rel, sizeof rel, "%s/%s", f->job_id, file);
	json_object_array_add(f->outputs, output_entry(it, rel, file));
	o.url = url;
	f->call = httpc_request(server.httpc, &o, on_downloaded, f, err);
	if (f->call == NULL) {
		file_close(f, 0);
		return -1;
	}
	return 0;
}

/* Copies every item, then the callback; with no item, at once. */
static void download_all(struct comfy_fetch *f)
{
	struct err e = {0};

	if (json_object_array_length(f->items) == 0) {
		fetch_end(f, COMFY_OK, NULL, NULL);
		return;
	}
	if (download_one(f, &e) < 0)
		fetch_end(f, COMFY_OUTPUT_LOST, NULL, e.msg);
}

/* The exception of an execution_error in the history's status messages. */
static void history_error(struct json_object *status, const char **type, const char **msg,
			  int *interrupted)
{
	struct json_object *msgs = json_get_arr(status, "messages");

	for (size_t i = 0; msgs && i < json_object_array_length(msgs); i++) {
		struct json_object *m = json_object_array_get_idx(msgs, i);
		const char *t;
		struct json_object *d;

		/*
		 * A message is [type, data]; json-c asserts (aborts the gateway)
		 * on an index into anything else, and this is the model server's
		 * text (fuzz/comfy_history).
		 */
		if (!json_object_is_type(m, json_type_array))
			continue;
		t = json_object_get_string(json_object_array_get_idx(m, 0));
		d = json_object_array_get_idx(m, 1);
		if (t && strcmp(t, "execution_error") == 0) {
			*type = json_get_str(d, "exception_type");
			*msg = json_get_str(d, "exception_message");
		} else if (t && strcmp(t, "execution_interrupted") == 0) {
			*interrupted = 1;
		}
	}
}

int comfy_history_read(const char *body, size_t len, const char *prompt_id,
		       struct json_object **doc, struct json_object **items, const char **exc_type,
		       const char **msg)
{
	struct json_object *entry, *status;
	struct err e = {0};
	const char *st;
	int interrupted = 0;

	*doc = NULL;
	*items = NULL;
	*exc_type = NULL;
	*msg = NULL;
	if (json_parse(body, len, 128, doc, &e) < 0) {
		json_object_put(*doc);
		*doc = NULL;
		*msg = "cannot read /history";
		return COMFY_UNREACHABLE;
	}
	entry = json_get_obj(*doc, prompt_id);
	status = json_get_obj(entry, "status");
	st = json_get_str(status, "status_str");
	if (entry == NULL) {
		*msg = "no such prompt in the model server's history";
		return COMFY_MISSING;
	}
	if (st && strcmp(st, "success") == 0) {
		*items = collect_outputs(json_get_obj(entry, "outputs"));
		return COMFY_OK;
	}
	history_error(status, exc_type, msg, &interrupted);
	if (interrupted) {
		*exc_type = NULL;
		*msg = "interrupted";
		return COMFY_INTERRUPTED;
	}
	if (*msg == NULL)
		*msg = "unknown error";
	return COMFY_ERROR;
}

static void on_history(const struct httpc_resp *resp, void *ud)
{
	struct comfy_fetch *f = ud;
	struct json_object *o = NULL;
	const char *type, *msg;
	int result;

	f->call = NULL;
	if (resp->status != 200) {
		fetch_end(f, COMFY_UNREACHABLE, NULL,
			  resp->status ? "cannot read /history" : resp->err.msg);
		return;
	}
	result = comfy_history_read(resp->body, resp->len, f->prompt_id, &o, &f->items, &type,
				    &msg);
	if (result == COMFY_OK) {
		f->outputs = json_object_new_array();
		download_all(f);
	} else {
		fetch_end(f, result, type, msg);
	}
	json_object_put(o);
}

struct comfy_fetch *comfy_fetch_result(const char *base_url, const char *prompt_id,
				       const char *out_root, const char *job_id, const char *stem,
				       uint64_t tag, comfy_result_fn cb, void *ud, struct err *err)
{
	struct comfy_fetch *f = xcalloc(1, sizeof *f);
	struct httpc_opts o = {.timeout_ms = HISTORY_TIMEOUT_MS, .max_response = HISTORY_MAX_BYTES,
			       .connect_timeout_ms = 1000};
	char url[600];
	char *pid = curl_easy_escape(NULL, prompt_id, 0);

	f->fd = -1;
	snprintf(f->base_url, sizeof f->base_url, "%s", base_url);
	snprintf(f->job_id, sizeof f->job_id, "%s", job_id);
	snprintf(f->stem, sizeof f->stem, "%s", stem);
	f->prompt_id = xstrdup(prompt_id);
	f->out_root = xstrdup(out_root);
	f->tag = tag;
	f->cb = cb;
	f->ud = ud;
	snprintf(url, sizeof url, "%s/history/%s", base_url, pid);
	curl_free(pid);
	o.url = url;
	f->call = httpc_request(server.httpc, &o, on_history, f, err);
	if (f->call == NULL) {
		fetch_free(f);
		return NULL;
	}
	return f;
}

struct comfy_fetch *comfy_fetch_files(const char *base_url, struct json_object *items,
				      const char *out_root, const char *job_id, const char *stem,
				      uint64_t tag, comfy_result_fn cb, void *ud, struct err *err)
{
	struct comfy_fetch *f = xcalloc(1, sizeof *f);

	f->fd = -1;

	snprintf(f->base_url, sizeof f->base_url, "%s", base_url);
	snprintf(f->job_id, sizeof f->job_id, "%s", job_id);
	snprintf(f->stem, sizeof f->stem, "%s", stem);
	f->prompt_id = xstrdup("");
	f->out_root = xstrdup(out_root);
	f->tag = tag;
	f->cb = cb;
	f->ud = ud;
	f->items = items;
	f->outputs = json_object_new_array();
	if (json_object_array_length(items) == 0) {
		err_set(err, ERR_INVALID, "no output to copy");
		fetch_free(f);
		return NULL;
	}
	if (download_one(f, err) < 0) {
		fetch_free(f);
		return NULL;
	}
	return f;
}

/* Links one output; its entry in outputs. */
static int link_one(const char *local_dir, struct json_object *it, size_t i, const char *out_root,
		    const char *job_id, const char *stem, struct json_object *outputs,
		    struct err *err)
{
	const char *name = json_get_str(it, "filename"), *sub = json_get_str(it, "subfolder");
	char src[4096], dst[4096], file[512], rel[600];
	unsigned char head[THUMB_HEADER];
	struct json_object *out;
	ssize_t got;
	int fd;

	/* The model server names the file; it must stay inside its directory. */
	if (name == NULL || strchr(name, '/') || !outputs_rel_ok(name) ||
	    (sub && sub[0] && !outputs_rel_ok(sub))) {
		err_set(err, ERR_INVALID, "output name leaves the model server's directory");
		return -1;
	}
	snprintf(src, sizeof src, "%s/%s%s%s", local_dir, sub ? sub : "", sub && sub[0] ? "/" : "",
		 name);
	outputs_name(file, sizeof file, stem, i, name);
	if (outputs_write_path(out_root, job_id, file, dst, sizeof dst, err) < 0)
		return -1;
	if (link(src, dst) < 0 && !(errno == EEXIST && unlink(dst) == 0 && link(src, dst) == 0)) {
		err_set(err, ERR_IO, "link %s: %s", src, strerror(errno));
		return -1;
	}
	fd = open(dst, O_RDONLY | O_CLOEXEC);
	got = fd >= 0 ? read(fd, head, sizeof head) : -1;
	if (fd >= 0)
		close(fd);
	snprintf(rel, sizeof rel, "%s/%s", job_id, file);
	out = output_entry(it, rel, file);
	note_size(out, head, got > 0 ? (size_t)got : 0);
	json_object_array_add(outputs, out);
	return 0;
}

int comfy_link_outputs(const char *local_dir, struct json_object *items, const char *out_root,
		       const char *job_id, const char *stem, struct json_object **outputs,
		       struct err *err)
{
	struct json_object *v = json_object_new_array();

	for (size_t i = 0; i < json_object_array_length(items); i++)
		if (link_one(local_dir, json_object_array_get_idx(items, i), i, out_root, job_id, stem,
			     v, err) < 0) {
			json_object_put(v);
			return -1;
		}
	*outputs = v;
	return 0;
}
