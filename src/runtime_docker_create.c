/*
 * runtime_docker_create.c - the body of POST /containers/create for a
 * model's container (runtime_docker.h says what goes in): the image and its
 * command with the placeholders a container needs, env, labels, and the
 * HostConfig with the published port, the mounts, the GPU and the hardening.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "buf.h"
#include "json.h"
#include "log.h"
#include "registry.h"
#include "runtime_docker.h"
#include "server.h"
#include "util.h"
#include "vram.h"

#define PIDS_LIMIT 4096
#define TMPFS_OPTS "rw,nosuid,nodev,size=2g,mode=1777" /* /tmp: scratch and outputs */

/* The registry's directory, absolute, into out; "" when unknown. */
static void config_dir(char *out, size_t n)
{
	char path[PATH_MAX];
	char *slash;

	out[0] = '\0';
	if (server.cfg.config_path == NULL || realpath(server.cfg.config_path, path) == NULL)
		return;
	slash = strrchr(path, '/');
	if (slash)
		*slash = '\0';
	snprintf(out, n, "%s", path);
}

static struct json_object *str_array(const char *const *v, size_t n)
{
	struct json_object *a = json_object_new_array();

	for (size_t i = 0; i < n; i++)
		json_object_array_add(a, json_str(v[i]));
	return a;
}

/* A bind mount of an existing host directory at the same path. */
static int add_bind(struct json_object *binds, const char *key, const char *dir,
		    const char *mode, struct err *err)
{
	char path[PATH_MAX], *spec;

	if (dir == NULL)
		return 0;
	if (realpath(dir, path) == NULL) {
		err_set(err, ERR_INVALID, "server.%s %s: %s", key, log_q(dir), strerror(errno));
		return -1;
	}
	spec = xasprintf("%s:%s:%s", path, path, mode);
	json_object_array_add(binds, json_str(spec));
	free(spec);
	return 0;
}

static struct json_object *device_requests(int gpu)
{
	struct json_object *req = json_object_new_object(), *caps = json_object_new_array();
	struct json_object *ids = json_object_new_array(), *all = json_object_new_array();
	char idx[16];

	snprintf(idx, sizeof idx, "%d", gpu);
	json_object_array_add(ids, json_str(idx));
	json_object_array_add(caps, json_str("gpu"));
	json_object_array_add(all, caps);
	json_put(req, "Driver", json_str("nvidia"));
	json_put(req, "DeviceIDs", ids);
	json_put(req, "Capabilities", all);
	caps = json_object_new_array();
	json_object_array_add(caps, req);
	return caps;
}

static int has_nvidia(int gpu)
{
	const struct vram_gpu *g = gpu >= 0 && gpu < vram_count() ? vram_gpu(gpu) : NULL;

	return g != NULL && g->from_nvml;
}

/* HostConfig: the published port, mounts, GPU, hardening. */
static struct json_object *host_config(int gpu, const char *confdir, struct err *err)
{
	const struct reg_server *s = server.reg ? registry_server(server.reg) : NULL;
	struct json_object *hc = json_object_new_object(), *binds = json_object_new_array();
	struct json_object *pb = json_object_new_object(), *bind = json_object_new_object();
	struct json_object *list = json_object_new_array(), *tmpfs = json_object_new_object();
	static const char *const secopt[] = {"no-new-privileges"}, *const capdrop[] = {"ALL"};
	char key[32];

	snprintf(key, sizeof key, "%d/tcp", DOCKER_PORT);
	json_put(bind, "HostIp", json_str("127.0.0.1"));
	json_put(bind, "HostPort", json_str("")); /* the engine picks a free one */
	json_object_array_add(list, bind);
	json_put(pb, key, list);
	json_put(hc, "PortBindings", pb);
	json_put(tmpfs, "/tmp", json_str(TMPFS_OPTS));
	json_put(hc, "Tmpfs", tmpfs);
	json_put(hc, "ReadonlyRootfs", json_object_new_boolean(1));
	json_put(hc, "SecurityOpt", str_array(secopt, 1));
	json_put(hc, "CapDrop", str_array(capdrop, 1));
	json_put(hc, "Memory", json_int((int64_t)(uv_get_total_memory() / 4 * 3)));
	json_put(hc, "PidsLimit", json_int(PIDS_LIMIT));
	json_put(hc, "Binds", binds);
	if (has_nvidia(gpu))
		json_put(hc, "DeviceRequests", device_requests(gpu));
	if (add_bind(binds, "models_dir", s ? s->models_dir : NULL, "ro", err) < 0 ||
	    add_bind(binds, "cache_dir", s ? s->cache_dir : NULL, "rw", err) < 0 ||
	    (confdir[0] && add_bind(binds, "configdir", confdir, "ro", err) < 0)) {
		json_object_put(hc);
		return NULL;
	}
	return hc;
}

const char *docker__node(void)
{
	static char host[256];

	if (host[0] == '\0' && gethostname(host, sizeof host - 1) != 0)
		snprintf(host, sizeof host, "localhost");
	return host;
}

static struct json_object *labels(const struct reg_model *m, const char *runner_id,
				  const char *instance)
{
	struct json_object *l = json_object_new_object();

	json_put(l, "fnrun", json_str("1"));
	json_put(l, "fnrun.model", json_str(m->id));
	json_put(l, "fnrun.runner", json_str(runner_id));
	json_put(l, "fnrun.node", json_str(docker__node()));
	json_put(l, "fnrun.data", json_str(server.cfg.data_dir ? server.cfg.data_dir : ""));
	json_put(l, "fnrun.instance", json_str(instance));
	return l;
}

/*
 * CUDA_VISIBLE_DEVICES, then the model's env (which may override it). With
 * DeviceRequests the container sees only its GPU, as device 0.
 */
static struct json_object *env_of(const struct reg_model *m, int gpu)
{
	struct json_object *env = json_object_new_array();
	char cuda[48];

	snprintf(cuda, sizeof cuda, "CUDA_VISIBLE_DEVICES=%d", has_nvidia(gpu) ? 0 : gpu);
	json_object_array_add(env, json_str(cuda));
	for (size_t i = 0; i < m->nenv; i++)
		json_object_array_add(env, json_str(m->env[i]));
	return env;
}

char *docker__create_body(const struct reg_model *m, const char *runner_id, int gpu,
			  const char *instance, struct err *err)
{
	struct json_object *o = json_object_new_object(), *hc, *cmd, *ports;
	char confdir[PATH_MAX] = "", key[32];
	int uses_confdir = 0;
	char *text;

	for (size_t i = 0; i < m->ncommand; i++)
		uses_confdir |= strstr(m->command[i], "{configdir}") != NULL;
	if (uses_confdir)
		config_dir(confdir, sizeof confdir);
	hc = host_config(gpu, confdir, err);
	if (hc == NULL) {
		json_object_put(o);
		return NULL;
	}
	json_put(o, "Image", json_str(m->image));
	if (m->ncommand > 0) {
		cmd = json_object_new_array();
		for (size_t i = 0; i < m->ncommand; i++) {
			char *a = registry_expand(m->command[i], DOCKER_PORT, DOCKER_BINDIR, confdir, NULL);
			json_object_array_add(cmd, json_str(a));
			free(a);
		}
		json_put(o, "Cmd", cmd);
	}
	json_put(o, "Env", env_of(m, gpu));
	json_put(o, "Labels", labels(m, runner_id, instance));
	snprintf(key, sizeof key, "%d/tcp", DOCKER_PORT);
	ports = json_object_new_object();
	json_put(ports, key, json_object_new_object());
	json_put(o, "ExposedPorts", ports);
	json_put(o, "Tty", json_object_new_boolean(0));
	json_put(o, "HostConfig", hc);
	text = json_dumps(o);
	json_object_put(o);
	return text;
}
