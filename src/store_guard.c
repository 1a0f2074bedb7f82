/*
 * store_guard.c - a job store that is damaged, or gone where jobs were, is
 * refused at start, loudly, with what to do; never silently replaced.
 *
 * SQLite creates a missing database file and takes an empty one as a new
 * database: deleted or truncated by accident, the store would start empty
 * and every earlier job would vanish without a word. A marker file beside
 * the store (<store>.marker) records that it held jobs; while the marker
 * is there, a missing or empty store is refused. The marker is written the
 * first time a store opens cleanly (it holds its schema from then on).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "store_guard.h"

static const char marker_text[] =
	"This file marks that the job store beside it holds jobs.\n"
	"fnrun refuses to start while the store is missing or empty and this file\n"
	"is here, so that an accident never starts it empty without a word.\n"
	"To start with an empty store on purpose, delete this file too.\n";

static void marker_path(const char *path, char *out, size_t n)
{
	snprintf(out, n, "%s.marker", path);
}

int store_guard_present(const char *path, struct err *err)
{
	char marker[PATH_MAX];
	struct stat st;
	int missing;

	marker_path(path, marker, sizeof marker);
	if (access(marker, F_OK) != 0)
		return 0;
	missing = stat(path, &st) < 0;
	if (!missing && st.st_size > 0)
		return 0;
	err_set(err, ERR_STORE,
		"job store %s is %s, but it held jobs (%s says so): restore it from a backup; "
		"to start with an empty store on purpose, delete %s",
		path, missing ? "missing" : "empty (0 bytes)", marker, marker);
	return -1;
}

int store_guard_intact(sqlite3 *db, const char *path, struct err *err)
{
	sqlite3_stmt *st = NULL;
	char first[200] = "";
	int rc = sqlite3_prepare_v2(db, "PRAGMA quick_check(3)", -1, &st, NULL);

	while (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		const char *line = (const char *)sqlite3_column_text(st, 0);
		if (first[0] == '\0' && line)
			snprintf(first, sizeof first, "%s", line);
		rc = SQLITE_OK;
	}
	sqlite3_finalize(st);
	if (rc == SQLITE_DONE && strcmp(first, "ok") == 0)
		return 0;
	if (first[0] == '\0')
		snprintf(first, sizeof first, "%s", sqlite3_errmsg(db));
	store_guard_damaged(path, first, err);
	return -1;
}

void store_guard_damaged(const char *path, const char *why, struct err *err)
{
	err_clear(err);
	err_set(err, ERR_STORE,
		"job store %s is damaged (%s): stop here and restore it from a backup; or move "
		"it and its -wal file aside to start with an empty store (the jobs in it are "
		"then lost to fnrun)",
		path, why);
}

void store_guard_mark(const char *path)
{
	char marker[PATH_MAX];
	int fd;

	marker_path(path, marker, sizeof marker);
	if (access(marker, F_OK) == 0)
		return;
	fd = open(marker, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (fd < 0 || write(fd, marker_text, sizeof marker_text - 1) < 0 || fsync(fd) < 0)
		log_warn("store marker not written path=%s err=%s", marker, strerror(errno));
	if (fd >= 0)
		close(fd);
}
