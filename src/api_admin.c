/*
 * api_admin.c - the operator API: models and runners with their state,
 * GPU memory reserved and measured, current job, last use and restarts;
 * start, stop and drain a model; a job with the model that served it. Operators see model ids and technical
 * causes here; users never do.
 *
 * When FNRUN_ADMIN_TOKEN is set, every admin request must carry
 * "Authorization: Bearer <token>", or HTTP Basic credentials whose password
 * is the token (any user name: what a browser sends for the /admin page);
 * without it the API relies on binding to loopback (and the origin guard
 * against browsers on other origins).
 */
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "errors.h"
#include "http.h"
#include "json.h"
#include "reload.h"
#include "scheduler.h"

/* 1 when a and b are equal; the time taken does not depend on where they differ. */
static int same_secret(const char *a, size_t alen, const char *b)
{
	size_t blen = strlen(b);

	return alen == blen && CRYPTO_memcmp(a, b, blen) == 0;
}

/* 1 when "Basic base64(user:password)" carries password == token. */
static int basic_ok(const char *b64, const char *token)
{
	unsigned char plain[400];
	size_t n = strlen(b64);
	int len;
	const char *colon;

	if (n == 0 || n > 4 * (sizeof plain / 3) - 4 || n % 4 != 0)
		return 0;
	len = EVP_DecodeBlock(plain, (const unsigned char *)b64, (int)n);
	if (len < 0)
		return 0;
	/* EVP_DecodeBlock counts the padding as zero bytes. */
	for (size_t i = n; i > 0 && b64[i - 1] == '='; i--)
		len--;
	plain[len] = '\0';
	colon = memchr(plain, ':', (size_t)len);
	if (colon == NULL)
		return 0;
	colon++;
	return same_secret(colon, (size_t)len - (size_t)(colon - (const char *)plain), token);
}

int api_admin_authorized(struct http_req *req, int challenge)
{
	const char *token = getenv("FNRUN_ADMIN_TOKEN");
	const char *auth = http_req_header(req, "Authorization");

	if (token == NULL || *token == '\0')
		return 1;
	if (auth && strncmp(auth, "Bearer ", 7) == 0 && same_secret(auth + 7, strlen(auth + 7), token))
		return 1;
	if (auth && strncmp(auth, "Basic ", 6) == 0 && basic_ok(auth + 6, token))
		return 1;
	if (challenge) {
		http_reply_header(req, "WWW-Authenticate", "Basic realm=\"fnrun admin\", charset=\"UTF-8\"");
		http_reply_error(req, 401, "FORBIDDEN", "The admin page needs the operator token.",
				 NULL);
		return 0;
	}
	http_reply_error(req, 403, "FORBIDDEN", "The admin API needs the operator token.", NULL);
	return 0;
}

static int authorized(struct http_req *req)
{
	return api_admin_authorized(req, 0);
}

static void reply_owned(struct http_req *req, struct json_object *o)
{
	http_reply_json(req, 200, o);
	json_object_put(o);
}

void api_admin_runners(struct http_req *req)
{
	if (authorized(req))
		reply_owned(req, sched_admin_runners());
}

void api_admin_models(struct http_req *req)
{
	if (authorized(req))
		reply_owned(req, sched_admin_models());
}

/* POST /api/admin/models/{id}/start|stop|drain */
void api_admin_model_action(struct http_req *req)
{
	const char *rest = http_req_param(req), *slash = strrchr(rest, '/');
	char id[256];
	struct err e = {0};

	if (!authorized(req))
		return;
	if (slash == NULL || slash == rest || (size_t)(slash - rest) >= sizeof id) {
		http_reply_error(req, 404, "NOT_FOUND", NULL, NULL);
		return;
	}
	memcpy(id, rest, (size_t)(slash - rest));
	id[slash - rest] = '\0';
	if (sched_admin_action(id, slash + 1, &e) < 0) {
		http_reply_error(req, err_http_status(e.code),
				 e.code == ERR_NOT_FOUND ? "NOT_FOUND" : "INVALID_INPUT", e.msg, "action");
		return;
	}
	reply_owned(req, sched_admin_models());
}

/* GET /api/admin/jobs/{id} */
void api_admin_job(struct http_req *req)
{
	const char *id = http_req_param(req);
	struct json_object *o;
	struct err e = {0};

	if (!authorized(req))
		return;
	if (*id == '\0' || strlen(id) > 64 || strchr(id, '/')) {
		http_reply_error(req, 404, "NOT_FOUND", NULL, NULL);
		return;
	}
	o = sched_admin_job(id, &e);
	if (o == NULL) {
		http_reply_err(req, &e);
		return;
	}
	reply_owned(req, o);
}

/* GET /api/admin/registry: the registry file, its last load, and why a change was refused. */
void api_admin_registry(struct http_req *req)
{
	if (authorized(req))
		reply_owned(req, reload_status());
}
