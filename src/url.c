/*
 * url.c - model server URLs through libcurl's URL API (url.h has the
 * rules).
 *
 * curl_url_set() does the parsing (scheme, authority, IPv4 forms such as
 * 127.1, IPv6 literals, port range); the checks below then hold each part
 * against what the runtimes can use, one small function per part, in the
 * order a reader fixes them: scheme, user, port, path, query, fragment,
 * host. Invariant: on success every field of struct url is set and base
 * is "http://" + host (bracketed when IPv6) + ":" + port.
 */
#include <arpa/inet.h>
#include <curl/curl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "url.h"

/* What every message ends with unless it says something more precise. */
#define URL_ALLOWED \
	"must be an http:// URL with a host and an optional port, e.g. http://127.0.0.1:8188"
#define URL_BASE_ONLY "give only http://HOST:PORT, e.g. http://127.0.0.1:8188"

static int invalid(struct err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int invalid(struct err *err, const char *fmt, ...)
{
	char what[sizeof err->msg];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof what, fmt, ap);
	va_end(ap);
	err_set(err, ERR_INVALID, "%s", what);
	return -1;
}

/* Part `which` of u, or NULL when u has none. Caller frees with curl_free(). */
static char *part(CURLU *u, CURLUPart which)
{
	char *s = NULL;

	if (curl_url_get(u, which, &s, 0) != CURLUE_OK)
		return NULL;
	return s;
}

static int check_scheme(CURLU *u, struct url *out, struct err *err)
{
	char *s = part(u, CURLUPART_SCHEME); /* curl lower-cases it */
	int rc = 0;

	if (s != NULL && strcmp(s, "http") == 0)
		snprintf(out->scheme, sizeof out->scheme, "%s", s);
	else if (s != NULL && strcmp(s, "https") == 0)
		rc = invalid(err, "https is not supported: model servers are reached over plain HTTP "
				  "on a trusted network (no TLS to them); give http://HOST:PORT, "
				  "e.g. http://127.0.0.1:8188");
	else
		rc = invalid(err, "scheme \"%.20s\" is not supported; " URL_ALLOWED, s ? s : "");
	curl_free(s);
	return rc;
}

static int check_user(CURLU *u, struct url *out, struct err *err)
{
	char *user = part(u, CURLUPART_USER), *password = part(u, CURLUPART_PASSWORD);
	int rc = 0;

	if (user != NULL || password != NULL)
		rc = invalid(err, "must not carry a user name or password; " URL_BASE_ONLY);
	curl_free(user);
	curl_free(password);
	return rc;
}

static int check_port(CURLU *u, struct url *out, struct err *err)
{
	char *s = part(u, CURLUPART_PORT); /* NULL when the text gives none */

	/* curl has already refused anything but a decimal number up to 65535. */
	out->port = s ? atoi(s) : 80;
	curl_free(s);
	if (out->port >= 1)
		return 0;
	return invalid(err, "has port 0; give a port from 1 to 65535, e.g. http://127.0.0.1:8188");
}

/* The path, query and fragment: the runtimes append their own routes to base. */
static int check_rest(CURLU *u, struct url *out, struct err *err)
{
	char *path = part(u, CURLUPART_PATH), *query = part(u, CURLUPART_QUERY);
	char *fragment = part(u, CURLUPART_FRAGMENT);
	int rc = 0;

	if (path != NULL && path[0] != '\0' && strcmp(path, "/") != 0)
		rc = invalid(err, "has a path (\"%.40s\"); fnrun adds /prompt, /ws and the other "
				  "routes itself: " URL_BASE_ONLY, path);
	else if (query != NULL)
		rc = invalid(err, "has a query (\"?%.40s\"); " URL_BASE_ONLY, query);
	else if (fragment != NULL)
		rc = invalid(err, "has a fragment (\"#%.40s\"); " URL_BASE_ONLY, fragment);
	curl_free(path);
	curl_free(query);
	curl_free(fragment);
	return rc;
}

/* Normalises a numeric host into out->host; -1 when it is not one. */
static int numeric_host(const char *h, struct url *out, int *unspecified)
{
	static const unsigned char zero[16];
	unsigned char a[16];
	size_t len = strlen(h);
	int af = AF_INET;
	char inner[INET6_ADDRSTRLEN + 2];

	if (h[0] == '[' && len >= 2 && len - 2 < sizeof inner) {
		/* curl keeps the brackets of an IPv6 literal. */
		memcpy(inner, h + 1, len - 2);
		inner[len - 2] = '\0';
		h = inner;
		af = AF_INET6;
	}
	if (inet_pton(af, h, a) != 1 || inet_ntop(af, a, out->host, sizeof out->host) == NULL)
		return -1;
	*unspecified = memcmp(a, zero, af == AF_INET ? 4 : 16) == 0;
	return 0;
}

/*
 * The host must be numeric (or localhost): wsc_connect() takes an address
 * and resolves no names, and curl would otherwise resolve what wsc cannot.
 */
static int check_host(CURLU *u, struct url *out, struct err *err)
{
	char *h = part(u, CURLUPART_HOST), *zone = part(u, CURLUPART_ZONEID);
	int rc = 0, unspecified = 0;

	if (h == NULL)
		rc = invalid(err, "has no host; " URL_ALLOWED);
	else if (zone != NULL)
		rc = invalid(err, "has an IPv6 zone id (%%%.20s), which fnrun cannot use; give an "
				  "address without one, e.g. http://[fd00::5]:8188", zone);
	else if (strcasecmp(h, "localhost") == 0)
		snprintf(out->host, sizeof out->host, "127.0.0.1"); /* as wsc.c maps it */
	else if (numeric_host(h, out, &unspecified) < 0)
		rc = invalid(err, "host \"%.60s\" is a name, and fnrun connects to model servers by "
				  "address: give an IPv4 address, an [IPv6] one or localhost, e.g. "
				  "http://10.0.0.5:8188", h);
	else if (unspecified)
		rc = invalid(err, "host %s is the unspecified address; give the address the server is "
				  "reached at, e.g. http://127.0.0.1:8188", out->host);
	curl_free(h);
	curl_free(zone);
	return rc;
}

/* Parses text with curl; NULL (and err filled) when curl refuses it. */
static CURLU *curl_parse(const char *text, struct err *err)
{
	CURLU *u = curl_url();
	CURLUcode rc;

	if (u == NULL) {
		err_set(err, ERR_INTERNAL, "out of memory parsing a URL");
		return NULL;
	}
	/* Any scheme parses, so that check_scheme() can say which one was wrong. */
	rc = curl_url_set(u, CURLUPART_URL, text, CURLU_NON_SUPPORT_SCHEME);
	if (rc == CURLUE_OK)
		return u;
	curl_url_cleanup(u);
	if (rc == CURLUE_BAD_PORT_NUMBER)
		invalid(err, "has a port that is not a number from 1 to 65535; " URL_ALLOWED);
	else if (rc == CURLUE_NO_HOST)
		invalid(err, "has no host; " URL_ALLOWED);
	else
		invalid(err, "is not a valid URL (%s); " URL_ALLOWED, curl_url_strerror(rc));
	return NULL;
}

int url_parse_model_server(const char *text, struct url *out, struct err *err)
{
	static int (*const checks[])(CURLU *u, struct url *out, struct err *err) = {
		check_scheme, check_user, check_port, check_rest, check_host,
	};
	int v6, rc = 0;
	CURLU *u;

	memset(out, 0, sizeof *out);
	if (text == NULL || text[0] == '\0')
		return invalid(err, "is empty; " URL_ALLOWED);
	if (strlen(text) > URL_MAX_TEXT)
		return invalid(err, "is longer than %d characters; " URL_ALLOWED, URL_MAX_TEXT);
	/* curl would read "127.0.0.1:8188" as a scheme and a path; say what it lacks. */
	if (strstr(text, "://") == NULL)
		return invalid(err, "has no http:// scheme; " URL_ALLOWED);
	u = curl_parse(text, err);
	if (u == NULL)
		return -1;
	for (size_t i = 0; rc == 0 && i < sizeof checks / sizeof checks[0]; i++)
		rc = checks[i](u, out, err);
	curl_url_cleanup(u);
	if (rc < 0) {
		memset(out, 0, sizeof *out);
		return -1;
	}
	v6 = strchr(out->host, ':') != NULL;
	snprintf(out->base, sizeof out->base, "http://%s%s%s:%d", v6 ? "[" : "", out->host,
		 v6 ? "]" : "", out->port);
	return 0;
}
