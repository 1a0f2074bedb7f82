/*
 * reload.c - hot deploy: the registry file is reloaded when it changes on
 * disk (inotify, through uv_fs_event) and on SIGHUP.
 *
 * The watch is on the file's directory, not the file: editors save by
 * writing a new file and renaming it over the old one, which a watch on
 * the old inode would never see again. Events for other names in that
 * directory are ignored. A burst of events (write, then rename, then
 * attributes) settles for RELOAD_SETTLE_MS before one reload, and a file
 * whose bytes did not change (a touch) is not reloaded.
 *
 * A valid file is handed to sched_reload(), which drains changed models
 * and starts new ones without dropping a job. An invalid one is refused:
 * the old registry keeps serving, and the error, with file:line:col, goes
 * to the log and to GET /api/admin/registry until a good file replaces it.
 */
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "log.h"
#include "registry.h"
#include "reload.h"
#include "scheduler.h"
#include "server.h"
#include "util.h"
#include "view.h"

#define RELOAD_SETTLE_MS 150
#define RELOAD_MAX_FILE (16u << 20) /* registry bytes hashed; larger: always reloaded */

static struct {
	uv_fs_event_t watch;
	uv_timer_t settle;
	uv_signal_t sighup;
	char dir[PATH_MAX], base[256];
	int watching;
	uint64_t hash;       /* FNV-1a of the bytes last loaded */
	int64_t loaded_at;   /* wall clock ms of the last good load */
	int64_t failed_at;   /* of the last refused file; 0 when the current file is loaded */
	char error[512];     /* why it was refused */
	uint64_t reloads, refusals;
} rl;

/* FNV-1a of the file's bytes; 0 when it cannot be read or is too large. */
static uint64_t file_hash(const char *path)
{
	FILE *f = fopen(path, "rb");
	uint64_t h = 1469598103934665603ULL;
	size_t total = 0;
	char buf[8192];
	size_t n;

	if (f == NULL)
		return 0;
	while ((n = fread(buf, 1, sizeof buf, f)) > 0 && (total += n) <= RELOAD_MAX_FILE)
		for (size_t i = 0; i < n; i++)
			h = (h ^ (unsigned char)buf[i]) * 1099511628211ULL;
	fclose(f);
	return total > RELOAD_MAX_FILE ? 0 : (h ? h : 1);
}

void reload_now(const char *why)
{
	struct err e = {0};
	uint64_t h = file_hash(server.cfg.config_path);
	struct registry *next;

	if (strcmp(why, "file changed") == 0 && h != 0 && h == rl.hash)
		return; /* touched, or saved unchanged */
	next = registry_load(server.cfg.config_path, &e);
	if (next == NULL) {
		rl.refusals++;
		rl.failed_at = util_now_ms();
		snprintf(rl.error, sizeof rl.error, "%s", e.msg);
		log_error("registry reload refused, keeping the current one reason=%s err=%s", why,
			  log_q(e.msg));
		return;
	}
	rl.hash = h;
	rl.reloads++;
	rl.loaded_at = util_now_ms();
	rl.failed_at = 0;
	rl.error[0] = '\0';
	log_info("registry reload reason=%s", why);
	sched_reload(next);
	registry_unref(server.reg);
	server.reg = next;
}

static void on_settled(uv_timer_t *t)
{
	reload_now("file changed");
}

static void on_change(uv_fs_event_t *h, const char *filename, int events, int status)
{
	if (status < 0) {
		log_warn("registry watch error=%s", uv_strerror(status));
		return;
	}
	if (filename == NULL || strcmp(filename, rl.base) != 0)
		return;
	uv_timer_start(&rl.settle, on_settled, RELOAD_SETTLE_MS, 0);
}

static void on_sighup(uv_signal_t *s, int signum)
{
	reload_now("SIGHUP");
}

void reload_start(void)
{
	const char *path = server.cfg.config_path, *slash = strrchr(path, '/');
	int rc;

	rl.hash = file_hash(path);
	rl.loaded_at = util_now_ms();
	snprintf(rl.dir, sizeof rl.dir, "%.*s", slash ? (int)(slash - path) : 1, slash ? path : ".");
	if (rl.dir[0] == '\0')
		snprintf(rl.dir, sizeof rl.dir, "/");
	snprintf(rl.base, sizeof rl.base, "%s", slash ? slash + 1 : path);
	uv_signal_init(server.loop, &rl.sighup);
	uv_signal_start(&rl.sighup, on_sighup, SIGHUP);
	uv_timer_init(server.loop, &rl.settle);
	uv_fs_event_init(server.loop, &rl.watch);
	rc = uv_fs_event_start(&rl.watch, on_change, rl.dir, 0);
	rl.watching = rc == 0;
	if (rc < 0)
		log_warn("registry not watched, SIGHUP reloads it dir=%s err=%s", log_q(rl.dir),
			 uv_strerror(rc));
}

void reload_stop(void)
{
	if (!uv_is_closing((uv_handle_t *)&rl.settle)) {
		uv_close((uv_handle_t *)&rl.settle, NULL);
		uv_close((uv_handle_t *)&rl.watch, NULL);
		uv_close((uv_handle_t *)&rl.sighup, NULL);
	}
}

/* Wall clock ms as ISO 8601, or JSON null for 0. */
static struct json_object *when(int64_t ms)
{
	char t[32];

	if (ms == 0)
		return NULL;
	view_iso8601(ms, t);
	return json_str(t);
}

struct json_object *reload_status(void)
{
	struct json_object *o = json_object_new_object();

	json_put(o, "path", json_str(server.cfg.config_path));
	json_put(o, "watched", json_object_new_boolean(rl.watching));
	json_put(o, "loaded_at", when(rl.loaded_at));
	json_put(o, "reloads", json_int((int64_t)rl.reloads));
	json_put(o, "refusals", json_int((int64_t)rl.refusals));
	json_put(o, "status", json_str(rl.failed_at ? "refused" : "loaded"));
	json_put(o, "refused_at", when(rl.failed_at));
	json_put(o, "error", rl.failed_at ? json_str(rl.error) : NULL);
	return o;
}
