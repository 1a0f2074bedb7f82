/*
 * store_guard.h - refusing a damaged job store, or an empty one where jobs
 * were (store_guard.c). Used by store_open() and keystore_open().
 */
#ifndef FNRUN_STORE_GUARD_H
#define FNRUN_STORE_GUARD_H

#include <sqlite3.h>

#include "err.h"

/* -1 with ERR_STORE when the store at path is missing or empty but its marker is there. */
int store_guard_present(const char *path, struct err *err);
/* SQLite's quick_check of an open store: 0 when "ok", else -1 with ERR_STORE and what to do. */
int store_guard_intact(sqlite3 *db, const char *path, struct err *err);
/* Replaces err with "damaged (why)" and what to do. */
void store_guard_damaged(const char *path, const char *why, struct err *err);
/* Writes the marker beside the store, once (a failure is logged). */
void store_guard_mark(const char *path);

#endif
