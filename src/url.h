/*
 * url.h - URLs of model servers, parsed once with libcurl's URL API
 * (CURLU), so that what `fnrun check` accepts is exactly what the runtimes
 * can reach.
 *
 * A model server URL is http://HOST[:PORT][/], where:
 *  - the scheme is http: the gateway reaches model servers over plain HTTP
 *    on a trusted network; its WebSocket client (wsc.c) has no TLS, so
 *    https:// is refused;
 *  - HOST is an IPv4 address, an IPv6 address in brackets, or localhost
 *    (taken as 127.0.0.1, as wsc.c does): wsc_connect() takes a numeric
 *    address and resolves no names, so other names are refused;
 *  - PORT is 1..65535, 80 when absent;
 *  - there is no user or password, no query, no fragment, and the path is
 *    empty or "/": the runtimes append /prompt, /ws, /history... to base.
 */
#ifndef FNRUN_URL_H
#define FNRUN_URL_H

#include <arpa/inet.h>

#include "err.h"

#define URL_MAX_TEXT 2048 /* longest URL text accepted, bytes */

/* A parsed model server URL; plain storage, nothing to free. */
struct url {
	char scheme[8];                /* "http" */
	char host[INET6_ADDRSTRLEN];   /* numeric, normalised, IPv6 without brackets:
					* "127.0.0.1", "::1"; what wsc_connect() takes */
	int port;                      /* 1..65535; 80 when the text gave none */
	char base[80];                 /* "http://127.0.0.1:8188", "http://[::1]:8188":
					* scheme, host and port, always with the port,
					* no trailing slash; append "/prompt" etc. */
};

/*
 * Parses text as a model server URL (the rules above) into *out. Two texts
 * naming the same server (http://localhost vs http://127.0.0.1:80) give
 * the same base. Returns 0, or -1 with ERR_INVALID and a message saying
 * what is wrong and what is allowed, e.g. "has no host; must be an http://
 * URL with a host and an optional port, e.g. http://127.0.0.1:8188" (no
 * prefix: the caller says where the URL came from). *out is zeroed on
 * failure. text may be NULL (reported as empty). Thread-safe.
 */
int url_parse_model_server(const char *text, struct url *out, struct err *err);

#endif
