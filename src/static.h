/*
 * static.h - the web page's files (web/) over HTTP.
 *
 * Serves regular files under one root directory, read from disk on each
 * request (edit the page, reload the browser). Only paths made of plain
 * segments are looked up: no "..", no absolute path, no segment starting
 * with '.', and a symlink whose target leaves the root is as missing.
 */
#ifndef FNRUN_STATIC_H
#define FNRUN_STATIC_H

#include <stddef.h>

struct http_req;

/*
 * Answers req with the file rel (relative to root, as the route's
 * http_req_param() gives it; "" or a trailing '/' mean index.html) and its
 * content type, or 404 in the API's error shape when there is no such file
 * or rel is refused. The request is consumed. root and rel are borrowed.
 */
void static_serve(struct http_req *req, const char *root, const char *rel);

/*
 * The route handler for GET / (HTTP_ROUTE_PREFIX): static_serve() from the
 * directory $FNRUN_WEB names, else <bindir>/../web (bin/fnrun beside web/
 * in a checkout).
 */
void static_web(struct http_req *req);
/* The web root static_web() serves, into out (size bytes). */
void static_root(char *out, size_t size);

/*
 * The absolute, symlink-free path of rel under root into out (size bytes),
 * with the same rules as static_serve(). Returns 0, or -1 when the file is
 * missing, not a regular file, outside root, or rel is refused.
 */
int static_path(const char *root, const char *rel, char *out, size_t size);

/* The Content-Type for a file name by its extension; static storage. */
const char *static_content_type(const char *name);

#endif
