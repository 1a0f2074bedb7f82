/*
 * auth.c - who sent a request, and what they may reach (auth.h).
 *
 * The keys are read from the store into a small cache at most once a
 * second, so `fnrun keys create|revoke` (another process) takes effect
 * within a second, and a request costs one SHA-256 and a scan of a
 * handful of rows, no SQL.
 */
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "errors.h"
#include "http.h"
#include "log.h"
#include "server.h"
#include "store.h"
#include "store_keys.h"
#include "util.h"

#define REFRESH_MS 1000

static struct {
	struct key_row *rows;
	size_t n;
	int64_t read_ms;   /* when the cache was filled; 0: never */
} cache;

void auth_reset(void)
{
	free(cache.rows);
	memset(&cache, 0, sizeof cache);
}

static void refresh(void)
{
	int64_t now = util_now_ms();
	struct key_row *rows;
	size_t n;
	struct err e = {0};

	if (cache.read_ms && now - cache.read_ms < REFRESH_MS)
		return;
	if (server.keys == NULL || store_key_list(server.keys, &rows, &n, &e) < 0) {
		if (e.code)
			log_warn("api keys not read; keeping the last ones err=%s", log_q(e.msg));
		cache.read_ms = now;
		return;
	}
	free(cache.rows);
	cache.rows = rows;
	cache.n = n;
	cache.read_ms = now;
}

int auth_keys_active(void)
{
	refresh();
	for (size_t i = 0; i < cache.n; i++)
		if (cache.rows[i].revoked_at == 0)
			return 1;
	/*
	 * A gateway others can reach stays closed when its last key is
	 * revoked: it started because it had keys (or was told --insecure).
	 */
	return !util_loopback_host(server.cfg.listen_host) && !server.cfg.insecure && cache.n > 0;
}

/* 1 when a and b are equal; the time taken does not depend on where they differ. */
static int same_secret(const char *a, size_t alen, const char *b)
{
	size_t blen = strlen(b);

	return alen == blen && CRYPTO_memcmp(a, b, blen) == 0;
}

/* The password of "Basic base64(user:password)" into out; -1 when malformed. */
static int basic_password(const char *b64, char *out, size_t outn)
{
	unsigned char plain[400];
	size_t n = strlen(b64);
	int len;
	const char *colon;

	if (n == 0 || n > 4 * (sizeof plain / 3) - 4 || n % 4 != 0)
		return -1;
	len = EVP_DecodeBlock(plain, (const unsigned char *)b64, (int)n);
	if (len < 0)
		return -1;
	/* EVP_DecodeBlock counts the padding as zero bytes. */
	for (size_t i = n; i > 0 && b64[i - 1] == '='; i--)
		len--;
	plain[len] = '\0';
	colon = memchr(plain, ':', (size_t)len);
	if (colon == NULL || (size_t)len - (size_t)(colon + 1 - (const char *)plain) >= outn)
		return -1;
	snprintf(out, outn, "%s", colon + 1);
	return 0;
}

/* The value of cookie name in a Cookie header into out; -1 when absent. */
static int cookie(const char *header, const char *name, char *out, size_t outn)
{
	size_t nl = strlen(name);

	for (const char *p = header; p && *p;) {
		while (*p == ' ' || *p == ';')
			p++;
		if (strncmp(p, name, nl) == 0 && p[nl] == '=') {
			size_t v = strcspn(p + nl + 1, ";");
			if (v >= outn)
				return -1;
			memcpy(out, p + nl + 1, v);
			out[v] = '\0';
			return 0;
		}
		p = strchr(p, ';');
	}
	return -1;
}

/* The credential the request carries (Bearer, Basic password, or cookie) into out. */
static int credential(struct http_req *req, char *out, size_t n)
{
	const char *a = http_req_header(req, "Authorization");
	const char *c = http_req_header(req, "Cookie");

	if (a && strncmp(a, "Bearer ", 7) == 0 && strlen(a + 7) < n) {
		snprintf(out, n, "%s", a + 7);
		return 0;
	}
	if (a && strncmp(a, "Basic ", 6) == 0 && basic_password(a + 6, out, n) == 0)
		return 0;
	if (c && cookie(c, "fnrun_key", out, n) == 0)
		return 0;
	return -1;
}

/* The live key row whose text this is, or NULL. */
static const struct key_row *key_of(const char *text)
{
	char id[KEY_ID_LEN + 1], hash[65];

	if (key_id_of(text, id) < 0)
		return NULL;
	refresh();
	for (size_t i = 0; i < cache.n; i++) {
		const struct key_row *r = &cache.rows[i];
		if (strcmp(r->id, id) != 0 || r->revoked_at != 0)
			continue;
		key_hash(text, hash);
		return same_secret(hash, strlen(hash), r->hash) ? r : NULL;
	}
	return NULL;
}

void auth_key(const char *text, struct auth *who)
{
	const char *token = getenv("FNRUN_ADMIN_TOKEN");
	const struct key_row *r;

	memset(who, 0, sizeof *who);
	if (text && token && *token && same_secret(text, strlen(text), token)) {
		who->kind = AUTH_OPERATOR;
		return;
	}
	if (text && (r = key_of(text)) != NULL) {
		who->kind = r->scope == KEY_OPERATOR ? AUTH_OPERATOR : AUTH_USER;
		snprintf(who->key_id, sizeof who->key_id, "%s", r->id);
		snprintf(who->name, sizeof who->name, "%s", r->name);
		return;
	}
	who->kind = auth_keys_active() ? AUTH_NONE : AUTH_OPEN;
}

void auth_who(struct http_req *req, struct auth *who)
{
	char text[256];

	auth_key(credential(req, text, sizeof text) == 0 ? text : NULL, who);
}

int auth_user_or_reply(struct http_req *req, struct auth *who)
{
	auth_who(req, who);
	if (who->kind != AUTH_NONE)
		return 0;
	http_reply_header(req, "WWW-Authenticate", "Bearer realm=\"fnrun\"");
	http_reply_error(req, 401, "UNAUTHORIZED", NULL, NULL);
	return -1;
}

int auth_operator_or_reply(struct http_req *req, int challenge)
{
	const char *token = getenv("FNRUN_ADMIN_TOKEN");
	struct auth who;

	auth_who(req, &who);
	if (who.kind == AUTH_OPERATOR || (who.kind == AUTH_OPEN && !(token && *token)))
		return 1;
	if (who.kind == AUTH_USER) {
		http_reply_error(req, 403, "FORBIDDEN", "This needs an operator key.", NULL);
		return 0;
	}
	if (challenge)
		http_reply_header(req, "WWW-Authenticate", "Basic realm=\"fnrun admin\", charset=\"UTF-8\"");
	else
		http_reply_header(req, "WWW-Authenticate", "Bearer realm=\"fnrun admin\"");
	http_reply_error(req, 401, "UNAUTHORIZED", "This needs an operator key.", NULL);
	return 0;
}

int auth_sees(const struct auth *who, const char *owner)
{
	if (who->kind == AUTH_OPEN || who->kind == AUTH_OPERATOR)
		return 1;
	return who->kind == AUTH_USER && owner != NULL && strcmp(owner, who->key_id) == 0;
}
