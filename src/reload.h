/*
 * reload.h - hot deploy of the registry: on a change of its file (inotify)
 * and on SIGHUP (reload.c).
 */
#ifndef FNRUN_RELOAD_H
#define FNRUN_RELOAD_H

#include <json-c/json.h>

/* Watches the registry file's directory and takes SIGHUP; after the registry is loaded. */
void reload_start(void);
/* Stops watching (shutdown): no reload after this. */
void reload_stop(void);
/* Loads the registry file now; a refused file leaves the current one serving. */
void reload_now(const char *why);
/* GET /api/admin/registry: path, watched, loaded_at, reloads, refusals, status, error. */
struct json_object *reload_status(void);

#endif
