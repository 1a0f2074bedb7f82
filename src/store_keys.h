/*
 * store_keys.h - API keys, in their own file beside the job store
 * (DATA/keys.db, table api_keys: `fnrun keys` writes it while the gateway
 * runs and reads it), and what each key used (from the job store).
 *
 * A key is shown once, when made: "fnr_" + 16 hex digits of id + 48 hex
 * digits of secret. The store keeps the id, a name, a scope and the
 * SHA-256 of the whole key (hex), never the key itself.
 */
#ifndef FNRUN_STORE_KEYS_H
#define FNRUN_STORE_KEYS_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

struct store;
struct keystore;

/* Opens (or makes) the key file at path. NULL with ERR_IO. */
struct keystore *keystore_open(const char *path, struct err *err);
void keystore_close(struct keystore *k);

enum key_scope { KEY_USER, KEY_OPERATOR };

#define KEY_ID_LEN 16     /* hex digits */
#define KEY_TEXT_LEN 68   /* "fnr_" + id + 48 hex digits of secret */

struct key_row {
	char id[KEY_ID_LEN + 1];
	char name[65];
	int scope;            /* enum key_scope */
	char hash[65];        /* SHA-256 of the key text, lower-case hex */
	int64_t created_at;   /* ms since the epoch */
	int64_t revoked_at;   /* 0 while it works */
};

/* "user" / "operator"; -1 for anything else. */
int key_scope_parse(const char *s);
const char *key_scope_name(int scope);

/* SHA-256 of text as lower-case hex into out[65]. */
void key_hash(const char *text, char out[65]);
/*
 * The id of a well-formed key text into id[KEY_ID_LEN + 1]; -1 when text
 * is not one.
 */
int key_id_of(const char *text, char id[KEY_ID_LEN + 1]);

/*
 * Makes a key with a new random id and secret, stores its row, and
 * writes the key text (shown once) into text[KEY_TEXT_LEN + 1]. name must
 * be unique: 1-64 of [A-Za-z0-9._-]. ERR_INVALID for a bad or taken name.
 */
int store_key_create(struct keystore *s, const char *name, int scope, char text[KEY_TEXT_LEN + 1],
		     struct key_row *row, struct err *err);
/* Every key, oldest first (revoked ones too). Caller frees *out. */
int store_key_list(struct keystore *s, struct key_row **out, size_t *n, struct err *err);
/* Revokes the key with that id or name; ERR_NOT_FOUND when none. */
int store_key_revoke(struct keystore *s, const char *id_or_name, struct err *err);

#endif
