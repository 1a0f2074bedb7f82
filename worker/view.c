/*
 * view.c - GET /view: files from the output, input and temp directories,
 * with ComfyUI's path rules: no filename -> 404; a name starting with '/'
 * or containing ".." -> 400; an unknown type -> 400; a subfolder escaping
 * the directory -> 403; a missing file -> 404 with an empty body. A
 * filename ending in " [output]", " [input]" or " [temp]" picks the
 * directory. Files are streamed from disk. Unlike ComfyUI, a file that is a
 * symbolic link is served only when it resolves inside its folder (403).
 *
 * Not implemented: re-encoding (preview=webp;q, channel=rgb|a); the file is
 * served as stored, which is what a gateway copying results wants.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "http.h"
#include "log.h"
#include "worker.h"

extern const char *api_input_dir;

/* As Python's mimetypes answers for aiohttp, which ComfyUI uses. */
static const char *mime_type(const char *name)
{
	const char *dot = strrchr(name, '.');

	if (dot && strcasecmp(dot, ".wav") == 0)
		return "audio/x-wav";
	return http_content_type(name);
}

static const char *type_dir(const char *type)
{
	if (strcmp(type, "output") == 0)
		return worker.settings.output_dir;
	if (strcmp(type, "temp") == 0)
		return worker.settings.temp_dir;
	if (strcmp(type, "input") == 0)
		return api_input_dir;
	return NULL;
}

/* Strips a " [type]" annotation into type; returns the plain name length. */
static size_t annotation(const char *name, const char **type)
{
	static const char *const types[] = {"output", "input", "temp"};
	size_t n = strlen(name);

	for (size_t i = 0; i < 3; i++) {
		char tag[16];
		size_t tl = (size_t)snprintf(tag, sizeof tag, " [%s]", types[i]);
		if (n > tl && strcmp(name + n - tl, tag) == 0) {
			*type = types[i];
			return n - tl;
		}
	}
	return n;
}

/* Lexical containment of dir/sub in dir, as os.path.commonpath decides it. */
static int resolve_sub(const char *dir, const char *sub, char *out, size_t outlen)
{
	char tmp[PATH_MAX];
	size_t dl = strlen(dir);

	if (snprintf(tmp, sizeof tmp, "%s/%s", dir, sub) >= (int)sizeof tmp)
		return -1;
	if (realpath(tmp, out) == NULL) {
		/* A subfolder that does not exist: judge the text itself. */
		if (strstr(sub, "..") || sub[0] == '/')
			return -1;
		snprintf(out, outlen, "%s", tmp);
		return 0;
	}
	return strncmp(out, dir, dl) == 0 && (out[dl] == '\0' || out[dl] == '/') ? 0 : -1;
}

/* 1 when path (resolved) is inside dir (resolved here). */
static int inside(const char *dir, const char *path)
{
	char d[PATH_MAX];
	size_t dl;

	if (realpath(dir, d) == NULL)
		return 0;
	dl = strlen(d);
	return strncmp(path, d, dl) == 0 && (path[dl] == '/' || (dl == 1 && d[0] == '/'));
}

void api_view(struct http_req *req)
{
	const char *fn = http_req_query(req, "filename");
	const char *type = http_req_query(req, "type");
	const char *sub = http_req_query(req, "subfolder");
	char name[NAME_MAX + 1], full[PATH_MAX], path[PATH_MAX + NAME_MAX + 2], real[PATH_MAX];
	const char *dir, *base;
	struct err e = {0};
	struct stat st;
	size_t n;

	if (fn == NULL || *fn == '\0') {
		http_reply(req, 404, NULL, "", 0);
		return;
	}
	if (type == NULL || *type == '\0')
		type = "output";
	n = annotation(fn, &type);
	if (n > NAME_MAX) {
		http_reply(req, 400, NULL, "", 0);
		return;
	}
	snprintf(name, sizeof name, "%.*s", (int)n, fn);
	dir = type_dir(type);
	if (name[0] == '/' || strstr(name, "..") || dir == NULL) {
		http_reply(req, 400, NULL, "", 0);
		return;
	}
	if (resolve_sub(dir, sub ? sub : "", full, sizeof full) < 0) {
		http_reply(req, 403, NULL, "", 0);
		return;
	}
	base = strrchr(name, '/') ? strrchr(name, '/') + 1 : name;
	snprintf(path, sizeof path, "%s/%s", full, base);
	/*
	 * The file itself may be a link placed in the folder: what is served is
	 * what it resolves to, and only when that is inside the folder too.
	 */
	if (realpath(path, real) == NULL || stat(real, &st) < 0 || !S_ISREG(st.st_mode)) {
		log_debug("view missing path=%s", log_q(path));
		http_reply(req, 404, NULL, "", 0);
		return;
	}
	if (!inside(dir, real)) {
		log_warn("view refused path=%s resolves=%s", log_q(path), log_q(real));
		http_reply(req, 403, NULL, "", 0);
		return;
	}
	snprintf(full, sizeof full, "filename=\"%s\"", base);
	http_reply_header(req, "Content-Disposition", full);
	if (http_reply_file(req, 200, real, mime_type(base), &e) < 0)
		http_reply(req, 404, NULL, "", 0);
}
