/*
 * store_keys.c - API keys (store_keys.h): their own SQLite file in the
 * data directory, keys.db, beside the job store. The job store is held
 * by one process (exclusive locking, for speed); the keys file is not,
 * so `fnrun keys` can write while the gateway runs and reads it.
 *
 * These statements are rare (`fnrun keys`, and the gateway's refresh of
 * its key cache at most once a second), so each is prepared when used.
 */
#include <ctype.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store.h"
#include "store_guard.h"
#include "store_keys.h"
#include "util.h"

static const char *const scope_names[] = {[KEY_USER] = "user", [KEY_OPERATOR] = "operator"};

int key_scope_parse(const char *s)
{
	for (int i = 0; s && i < 2; i++)
		if (strcmp(s, scope_names[i]) == 0)
			return i;
	return -1;
}

const char *key_scope_name(int scope)
{
	return scope == KEY_OPERATOR ? "operator" : "user";
}

static void hex(const unsigned char *b, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[b[i] >> 4];
		out[2 * i + 1] = digits[b[i] & 15];
	}
	out[2 * n] = '\0';
}

void key_hash(const char *text, char out[65])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int n = 0;

	EVP_Digest(text, strlen(text), md, &n, EVP_sha256(), NULL);
	hex(md, n > 32 ? 32 : n, out);
}

int key_id_of(const char *text, char id[KEY_ID_LEN + 1])
{
	if (text == NULL || strlen(text) != KEY_TEXT_LEN || strncmp(text, "fnr_", 4) != 0)
		return -1;
	for (const char *p = text + 4; *p; p++)
		if (!isxdigit((unsigned char)*p) || isupper((unsigned char)*p))
			return -1;
	memcpy(id, text + 4, KEY_ID_LEN);
	id[KEY_ID_LEN] = '\0';
	return 0;
}

struct keystore {
	sqlite3 *db;
	char *path;
};

static int fail_db(sqlite3 *db, const char *path, const char *what, struct err *err)
{
	err_set(err, ERR_IO, "key store %s: %s: %s", path, what, sqlite3_errmsg(db));
	return -1;
}

static int fail(struct keystore *k, const char *what, struct err *err)
{
	return fail_db(k->db, k->path, what, err);
}

static const char keys_schema[] =
	"PRAGMA journal_mode = WAL;"
	"CREATE TABLE IF NOT EXISTS api_keys ("
	" id TEXT PRIMARY KEY,"
	" name TEXT NOT NULL UNIQUE,"
	" scope TEXT NOT NULL CHECK (scope IN ('user', 'operator')),"
	" hash TEXT NOT NULL,"
	" created_at INTEGER NOT NULL,"
	" revoked_at INTEGER NOT NULL DEFAULT 0);";

struct keystore *keystore_open(const char *path, struct err *err)
{
	struct keystore *k;

	/*
	 * A key file deleted or emptied by accident would open the API to
	 * anyone: once it has held a key (its marker is there), a missing or
	 * empty one is refused, as the job store is (store_guard.h).
	 */
	if (store_guard_present(path, err) < 0)
		return NULL;
	k = xcalloc(1, sizeof *k);
	k->path = xstrdup(path);
	if (sqlite3_open_v2(path, &k->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) !=
		    SQLITE_OK ||
	    sqlite3_busy_timeout(k->db, 5000) != SQLITE_OK ||
	    sqlite3_exec(k->db, keys_schema, NULL, NULL, NULL) != SQLITE_OK) {
		fail(k, "open", err);
		keystore_close(k);
		return NULL;
	}
	return k;
}

void keystore_close(struct keystore *k)
{
	if (k == NULL)
		return;
	sqlite3_close(k->db);
	free(k->path);
	free(k);
}

static int name_ok(const char *name)
{
	size_t n = name ? strlen(name) : 0;

	if (n == 0 || n > 64)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)name[i]) && !strchr("._-", name[i]))
			return 0;
	return 1;
}

int store_key_create(struct keystore *s, const char *name, int scope, char text[KEY_TEXT_LEN + 1],
		     struct key_row *row, struct err *err)
{
	unsigned char raw[8 + 24];
	sqlite3_stmt *st = NULL;
	int rc;

	if (!name_ok(name)) {
		err_set(err, ERR_INVALID, "--name: 1 to 64 letters, digits, '.', '_' or '-'");
		return -1;
	}
	if (scope != KEY_USER && scope != KEY_OPERATOR) {
		err_set(err, ERR_INVALID, "--scope: expected user or operator");
		return -1;
	}
	util_random(raw, sizeof raw);
	memset(row, 0, sizeof *row);
	hex(raw, 8, row->id);
	memcpy(text, "fnr_", 4);
	hex(raw, sizeof raw, text + 4);
	snprintf(row->name, sizeof row->name, "%s", name);
	row->scope = scope;
	row->created_at = util_now_ms();
	key_hash(text, row->hash);
	OPENSSL_cleanse(raw, sizeof raw);
	if (sqlite3_prepare_v2(s->db,
			       "INSERT INTO api_keys (id, name, scope, hash, created_at)"
			       " VALUES (?1, ?2, ?3, ?4, ?5)", -1, &st, NULL) != SQLITE_OK)
		return fail(s, "add key", err);
	sqlite3_bind_text(st, 1, row->id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, row->name, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, key_scope_name(scope), -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, row->hash, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 5, row->created_at);
	rc = sqlite3_step(st);
	sqlite3_finalize(st);
	if (rc == SQLITE_DONE)
		store_guard_mark(s->path);
	if (rc == SQLITE_CONSTRAINT) {
		err_set(err, ERR_INVALID, "--name: a key named \"%s\" exists; names are unique", name);
		return -1;
	}
	return rc == SQLITE_DONE ? 0 : fail(s, "add key", err);
}

int store_key_list(struct keystore *s, struct key_row **out, size_t *n, struct err *err)
{
	sqlite3_stmt *st = NULL;
	size_t cap = 0;
	int rc;

	*out = NULL;
	*n = 0;
	if (sqlite3_prepare_v2(s->db,
			       "SELECT id, name, scope, hash, created_at, revoked_at FROM api_keys"
			       " ORDER BY created_at, id", -1, &st, NULL) != SQLITE_OK)
		return fail(s, "list keys", err);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct key_row *r;
		if (*n == cap) {
			cap = cap ? cap * 2 : 8;
			*out = xrealloc(*out, cap * sizeof **out);
		}
		r = &(*out)[(*n)++];
		memset(r, 0, sizeof *r);
		snprintf(r->id, sizeof r->id, "%s", (const char *)sqlite3_column_text(st, 0));
		snprintf(r->name, sizeof r->name, "%s", (const char *)sqlite3_column_text(st, 1));
		r->scope = key_scope_parse((const char *)sqlite3_column_text(st, 2));
		snprintf(r->hash, sizeof r->hash, "%s", (const char *)sqlite3_column_text(st, 3));
		r->created_at = sqlite3_column_int64(st, 4);
		r->revoked_at = sqlite3_column_int64(st, 5);
	}
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE) {
		free(*out);
		*out = NULL;
		*n = 0;
		return fail(s, "list keys", err);
	}
	return 0;
}

int store_key_revoke(struct keystore *s, const char *id_or_name, struct err *err)
{
	sqlite3_stmt *st = NULL;
	int rc, changed;

	if (sqlite3_prepare_v2(s->db,
			       "UPDATE api_keys SET revoked_at = ?2"
			       " WHERE (id = ?1 OR name = ?1) AND revoked_at = 0", -1, &st,
			       NULL) != SQLITE_OK)
		return fail(s, "revoke key", err);
	sqlite3_bind_text(st, 1, id_or_name, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, util_now_ms());
	rc = sqlite3_step(st);
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE)
		return fail(s, "revoke key", err);
	changed = sqlite3_changes(s->db);
	if (changed == 0) {
		err_set(err, ERR_NOT_FOUND, "no key with the id or name \"%s\" that is not revoked",
			id_or_name);
		return -1;
	}
	return 0;
}
