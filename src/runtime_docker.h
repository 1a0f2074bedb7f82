/*
 * runtime_docker.h - model servers in containers, through the Docker Engine
 * API (dockerd or podman) over a unix socket, on the daemon's loop.
 *
 * The socket is the registry's server.docker.socket, else $DOCKER_HOST
 * (unix:///path), else /var/run/docker.sock.
 *
 * A container of a model: the model's image, its command (or the image's
 * own) with these placeholders replaced:
 *   {port}       DOCKER_PORT, the port inside the container; it is published
 *                on 127.0.0.1 only, on a free host port the engine picks
 *   {bindir}     /usr/local/bin, where fnrun's images keep fnrun-worker
 *   {configdir}  the registry's directory, bind-mounted read-only at the
 *                same path (only when the command names it)
 * its env plus CUDA_VISIBLE_DEVICES, and labels fnrun=1, fnrun.model,
 * fnrun.runner, fnrun.node (hostname), fnrun.data (data dir) and
 * fnrun.instance (this fnrun process). The registry's server.models_dir is
 * mounted read-only and server.cache_dir read-write, each at its own path.
 * On a machine with NVIDIA GPUs (NVML) the container gets its GPU through
 * HostConfig.DeviceRequests, and sees it as device 0.
 *
 * Hardening, always: no-new-privileges, every capability dropped, a
 * read-only root with a 2 GB tmpfs on /tmp, a memory limit of 3/4 of the
 * host's memory, at most 4096 pids, and the bridge network with the one
 * port published on 127.0.0.1.
 *
 * Lifecycle of one struct docker_ctr (each arrow one HTTP call):
 *
 *   create --> start --> inspect (host port) --> on_started
 *                                 + wait (exit) and logs (follow) kept open
 *   wait returns --> on_exit --> remove (in the background)
 *   docker_stop --> stop?t=grace (+ the wait's exit code) --> remove --> on_exit
 *   docker_stop with grace 0 --> remove (forced: a kill) --> on_exit
 *   any step fails before on_started --> remove --> on_failed
 *
 * Exactly one of on_exit and on_failed is called, always later from the
 * loop (never from inside docker_start or docker_stop); after it the
 * handle is invalid. The container's output (the 8-byte multiplexed
 * stream, parsed as it arrives) is appended to the log file; its last lines
 * go to the operator log ("container output ... last_output=") when a
 * container fails to start, exits unasked or is killed (docker_stop with
 * grace 0), once the engine has sent all of it.
 */
#ifndef FNRUN_RUNTIME_DOCKER_H
#define FNRUN_RUNTIME_DOCKER_H

#include <stdint.h>

#include "err.h"

#define DOCKER_PORT 8188          /* {port} inside the container */
#define DOCKER_BINDIR "/usr/local/bin" /* {bindir} inside the container */
#define DOCKER_API "/v1.41"       /* Docker Engine API version we speak */

struct reg_model;
struct docker_ctr;

struct docker_cbs {
	/* Running, port published; the health probe may start. */
	void (*on_started)(void *ud, int host_port);
	/* The container stopped (asked or not). status: its exit code, -1 unknown. */
	void (*on_exit)(void *ud, int64_t status, const char *why);
	/* It never started; why names the step and the engine's message. */
	void (*on_failed)(void *ud, const char *why);
};

/*
 * Creates and starts a container for model m (runtime docker) as runner
 * runner_id, pinned to GPU gpu, its output appended to log_path. cb is
 * copied; ud is passed back. Returns the handle, owned by this module (it
 * frees it after the final callback), or NULL with err filled when the
 * request cannot even be made (no image, bad socket setting); then no
 * callback is ever called.
 */
struct docker_ctr *docker_start(const struct reg_model *m, const char *runner_id, int gpu,
				const char *log_path, const struct docker_cbs *cb, void *ud,
				struct err *err);

/*
 * Stops the container (SIGTERM, SIGKILL after grace_ms rounded up to whole
 * seconds; 0 kills at once) and removes it; on_exit follows, also when it
 * was still being created. A second call does nothing.
 */
void docker_stop(struct docker_ctr *c, uint64_t grace_ms);

/* The engine's container id; "" until created. Borrowed, valid with c. */
const char *docker_id(const struct docker_ctr *c);

/*
 * Removes the containers an earlier fnrun left on this node for this data
 * directory (labels fnrun=1, fnrun.node, fnrun.data; any fnrun.instance but
 * ours). Asynchronous; logs what it removed. Nothing happens when the
 * engine cannot be reached (logged at debug: most setups have no docker).
 */
void docker_cleanup_orphans(void);

/* Containers this process has running or being created or removed. */
int docker_live(void);

/* Private to runtime_docker*.c. */

/*
 * The JSON body of POST /containers/create for model m as runner_id on gpu,
 * labelled with this process's instance id. Caller frees. NULL with err
 * when a configured directory to mount does not exist.
 */
char *docker__create_body(const struct reg_model *m, const char *runner_id, int gpu,
			  const char *instance, struct err *err);
/* This node's name (the hostname), the fnrun.node label. Static buffer. */
const char *docker__node(void);

#endif
