/*
 * server.c - `fnrun serve`: loads the registry, opens the store, starts
 * the scheduler and the API on one libuv loop, and shuts down on SIGTERM or
 * SIGINT (stop accepting, stop model servers, close the store).
 */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "api.h"
#include "store_keys.h"
#include "auth.h"
#include "events.h"
#include "http.h"
#include "httpc.h"
#include "log.h"
#include "outputs.h"
#include "registry.h"
#include "reload.h"
#include "scheduler.h"
#include "server.h"
#include "store.h"
#include "util.h"

struct server server;

const char *server_path(const char *sub)
{
	static char path[PATH_MAX];

	snprintf(path, sizeof path, "%s/%s", server.cfg.data_dir, sub);
	return path;
}

static void on_httpc_freed(void *arg)
{
	uv_stop(server.loop);
}

static void on_http_closed(void *arg)
{
	server.http = NULL;
}

static void on_runners_stopped(void)
{
	log_info("model servers stopped");
	events_shutdown();
	if (server.http)
		http_server_close(server.http, on_http_closed, NULL);
	httpc_free(server.httpc, on_httpc_freed, NULL);
}

static void on_signal(uv_signal_t *s, int signum)
{
	if (server.stopping)
		return; /* a second signal while shutting down changes nothing */
	log_info("shutting down signal=%d", signum);
	reload_stop();
	sched_stop(on_runners_stopped);
}

static int make_dirs(struct err *err)
{
	static const char *const subs[] = {"", "outputs", "logs", "runs"};

	for (size_t i = 0; i < 4; i++)
		if (util_mkdirs(server_path(subs[i])) < 0) {
			err_set(err, ERR_IO, "cannot create %s: %s", server_path(subs[i]),
				strerror(errno));
			return -1;
		}
	return 0;
}

/* The scheduler's events go to the watchers; a watcher's first view comes from the scheduler. */
static int watching(void)
{
	return events_watchers() > 0;
}

static const struct sched_hooks hooks = {events_publish, events_wanted, events_watched, watching};

static struct json_object *lookup_view(const char *id, const char *owner, struct err *err,
				       void *ud)
{
	char who[64];

	if (owner && (sched_job_owner(id, who, sizeof who, err) < 0 || strcmp(who, owner) != 0)) {
		err_clear(err);
		err_set(err, ERR_NOT_FOUND, "no job with id %s", id);
		return NULL;
	}
	return sched_view(id, err);
}

/*
 * A gateway others can reach needs keys: without any (and without the
 * operator token), anyone on the network could run jobs and read every
 * result. --insecure is the operator saying that the network is trusted.
 */
static int open_to_network_ok(struct err *err)
{
	const char *token = getenv("FNRUN_ADMIN_TOKEN");

	if (util_loopback_host(server.cfg.listen_host) || server.cfg.insecure || auth_keys_active())
		return 0;
	if (token && *token) {
		log_warn("listening on %s with the operator token only: the user API is open to "
			 "the network; make user keys (fnrun keys create --scope user)",
			 server.cfg.listen_host);
		return 0;
	}
	err_set(err, ERR_INVALID,
		"listening on %s without API keys would let anyone on the network run jobs and "
		"read every result: make a key first (fnrun keys create --scope operator "
		"--data %s), or pass --insecure if this network is trusted",
		server.cfg.listen_host, server.cfg.data_dir);
	return -1;
}

/* Temporary files a killed process left in the output store, swept on the thread pool. */
static struct {
	uv_work_t req;
	char root[PATH_MAX]; /* copied: server_path()'s buffer is the loop's */
	int64_t before;
	size_t removed;
} sweep;

static void sweep_work(uv_work_t *req)
{
	sweep.removed = outputs_sweep_temp(sweep.root, sweep.before);
}

static void sweep_done(uv_work_t *req, int status)
{
	if (sweep.removed > 0)
		log_info("temporary files removed count=%zu dir=%s", sweep.removed,
			 log_q(sweep.root));
}

static int start(struct err *err)
{
	server.reg = registry_load(server.cfg.config_path, err);
	if (server.reg == NULL || make_dirs(err) < 0)
		return -1;
	server.store = store_open(server.cfg.store_url ? server.cfg.store_url
						       : server_path("fnrun.db"), err);
	if (server.store == NULL)
		return -1;
	store_set_node(server.store, server.cfg.node, server.cfg.lease_ms);
	server.keys = keystore_open(server_path("keys.db"), err);
	if (server.keys == NULL || open_to_network_ok(err) < 0)
		return -1;
	snprintf(sweep.root, sizeof sweep.root, "%s", server_path("outputs"));
	sweep.before = (int64_t)time(NULL);
	if (uv_queue_work(server.loop, &sweep.req, sweep_work, sweep_done) != 0)
		log_warn("temporary files not swept");
	server.httpc = httpc_new(server.loop, err);
	if (server.httpc == NULL || sched_init(&hooks, err) < 0)
		return -1;
	events_set_lookup(lookup_view, NULL);
	server.http = api_start(err);
	return server.http ? 0 : -1;
}

int server_run(void)
{
	struct err e = {0};

	signal(SIGPIPE, SIG_IGN);
	server.loop = uv_default_loop();
	server.started_ms = util_mono_ms();
	if (start(&e) < 0) {
		fprintf(stderr, "fnrun: %s\n", e.msg);
		return 1;
	}
	log_info("listening addr=%s port=%d data=%s registry=%s", server.cfg.listen_host,
		 http_server_port(server.http), log_q(server.cfg.data_dir),
		 log_q(server.cfg.config_path));
	uv_signal_init(server.loop, &server.sigterm);
	uv_signal_init(server.loop, &server.sigint);
	uv_signal_start(&server.sigterm, on_signal, SIGTERM);
	uv_signal_start(&server.sigint, on_signal, SIGINT);
	reload_start();
	uv_run(server.loop, UV_RUN_DEFAULT);
	sched_shutdown();
	store_close(server.store);
	keystore_close(server.keys);
	server.keys = NULL;
	auth_reset();
	registry_unref(server.reg);
	log_info("stopped");
	return 0;
}
