/*
 * store_internal.h - for the store's own files only (store*.c): the
 * connection, for tables that have their own file (store_keys.c).
 */
#ifndef FNRUN_STORE_INTERNAL_H
#define FNRUN_STORE_INTERNAL_H

#include <sqlite3.h>

struct store;

/* The store's one connection; borrowed. */
sqlite3 *store__db(struct store *s);

#endif
