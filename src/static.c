/*
 * static.c - the web page's files (web/) over HTTP; see static.h.
 *
 * Invariants:
 * 1. A path is checked twice: its text (plain segments only), then where
 *    it really leads (realpath of root and file, the file inside the root),
 *    so neither "../" nor a symlink reaches outside the root.
 * 2. Every answer the browser gets is either a file under the root or the
 *    API's error shape from http_reply_error().
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "err.h"
#include "errors.h"
#include "http.h"
#include "server.h"
#include "static.h"

/*
 * The page loads nothing from elsewhere, runs no inline script, and may not
 * be framed: the browser enforces what the files already promise.
 */
#define STATIC_CSP                                                                        \
	"default-src 'self'; img-src 'self' data:; media-src 'self'; object-src 'none'; " \
	"base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

const char *static_content_type(const char *name)
{
	return http_content_type(name);
}

/* 1 when rel is empty or plain segments joined by '/' (a trailing '/' allowed). */
static int rel_ok(const char *rel)
{
	const char *p = rel;

	if (rel[0] == '/')
		return 0;
	while (*p) {
		size_t n = strcspn(p, "/");

		/* Empty ("a//b"), ".", ".." and hidden names are all refused. */
		if (n == 0 || p[0] == '.')
			return 0;
		p += n;
		if (*p == '/')
			p++;
	}
	return 1;
}

int static_path(const char *root, const char *rel, char *out, size_t size)
{
	char full[PATH_MAX], rroot[PATH_MAX], rfull[PATH_MAX];
	size_t len = strlen(rel), rn;
	const char *index = len == 0 || rel[len - 1] == '/' ? "index.html" : "";
	struct stat st;

	if (!rel_ok(rel))
		return -1;
	if (snprintf(full, sizeof full, "%s/%s%s", root, rel, index) >= (int)sizeof full)
		return -1;
	if (realpath(root, rroot) == NULL || realpath(full, rfull) == NULL)
		return -1;
	if (stat(rfull, &st) < 0 || !S_ISREG(st.st_mode))
		return -1;
	rn = strlen(rroot);
	/* A symlink may point anywhere: the resolved path must stay inside. */
	if (strncmp(rfull, rroot, rn) != 0 || (rfull[rn] != '/' && rroot[rn - 1] != '/'))
		return -1;
	if (strlen(rfull) >= size)
		return -1;
	memcpy(out, rfull, strlen(rfull) + 1);
	return 0;
}

void static_serve(struct http_req *req, const char *root, const char *rel)
{
	char path[PATH_MAX];
	struct err err = {0};

	if (static_path(root, rel, path, sizeof path) < 0) {
		http_reply_error(req, 404, "NOT_FOUND", NULL, NULL);
		return;
	}
	http_reply_header(req, "X-Content-Type-Options", "nosniff");
	http_reply_header(req, "Content-Security-Policy", STATIC_CSP);
	http_reply_header(req, "Referrer-Policy", "no-referrer");
	/* Small files that change with each release: revalidate every time. */
	http_reply_header(req, "Cache-Control", "no-cache");
	if (http_reply_file(req, 200, path, static_content_type(path), &err) < 0)
		http_reply_err(req, &err);
}

void static_root(char *out, size_t size)
{
	const char *root = getenv("FNRUN_WEB");

	if (root != NULL && root[0] != '\0')
		snprintf(out, size, "%s", root);
	else
		snprintf(out, size, "%s/../web", server.cfg.bindir ? server.cfg.bindir : ".");
}

void static_web(struct http_req *req)
{
	char root[PATH_MAX];

	static_root(root, sizeof root);
	static_serve(req, root, http_req_param(req));
}
