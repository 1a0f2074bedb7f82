/*
 * auth.h - who sent a request: API keys (store_keys.h) and the operator
 * token, and what each may reach.
 *
 * Until the store holds a key that is not revoked, the API is open (the
 * demo on loopback; `fnrun serve` refuses a non-loopback address then,
 * unless --insecure). From the first key on, every route but /health,
 * /ready, the page's files and POST /api/session needs one: a user key
 * reaches the user API and only its own jobs; an operator key reaches
 * everything: all jobs, the admin API, /admin and /metrics.
 * FNRUN_ADMIN_TOKEN, when set, is one more operator credential.
 *
 * A key travels as "Authorization: Bearer KEY", as the password of HTTP
 * Basic (the browser's prompt for /admin), or in the cookie fnrun_key
 * that POST /api/session sets for the web page (HttpOnly, SameSite=Strict:
 * images, EventSource and WebSocket cannot send headers).
 */
#ifndef FNRUN_AUTH_H
#define FNRUN_AUTH_H

#include "store_keys.h"

struct http_req;

enum auth_kind {
	AUTH_OPEN,     /* no keys in the store: anyone, as an operator */
	AUTH_NONE,     /* keys exist; this request has no valid one */
	AUTH_USER,
	AUTH_OPERATOR,
};

struct auth {
	int kind;                   /* enum auth_kind */
	char key_id[KEY_ID_LEN + 1]; /* the key's id; "" for open, none or the token */
	char name[65];              /* the key's name; "" when none */
};

/* Who sent req (reads the key cache, refreshed from the store at most once a second). */
void auth_who(struct http_req *req, struct auth *who);
/* Who holds this key text (or the operator token); NULL: nobody. */
void auth_key(const char *text, struct auth *who);
/* 1 when keys exist (a key is needed). */
int auth_keys_active(void);

/*
 * For user routes: 0 with *who filled when the request may go on; else
 * answers 401 UNAUTHORIZED (with WWW-Authenticate) and returns -1.
 */
int auth_user_or_reply(struct http_req *req, struct auth *who);
/*
 * For operator routes: 1 when allowed; else answers 401 (no valid
 * credential; with a Basic challenge when challenge is 1, for the /admin
 * page) or 403 (a user key) and returns 0.
 */
int auth_operator_or_reply(struct http_req *req, int challenge);

/* 1 when who may see a job owned by owner ("" or NULL: made without a key). */
int auth_sees(const struct auth *who, const char *owner);

/* Drops the key cache (tests, shutdown). */
void auth_reset(void);

#endif
