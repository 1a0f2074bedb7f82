/*
 * bench_docker.c - `make bench`: the cold start of a sim container to a
 * ready runner (runtime docker), through a real `fnrun serve` and the engine
 * at $DOCKER_HOST (default: podman's socket from scripts/podman-setup).
 * Builds the worker-sim image from the benchmarked fnrun-worker first.
 * Prints; asserts nothing; says why when there is no engine.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "testutil.h"


#define PODMAN_SOCK "/run/podman/podman.sock"
#define RUNS 5


/* 1 when the engine's socket accepts a connection. */
static int engine_up(const char *sock)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int fd = socket(AF_UNIX, SOCK_STREAM, 0), ok;

	snprintf(sa.sun_path, sizeof sa.sun_path, "%s", sock);
	ok = fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
	if (fd >= 0)
		close(fd);
	return ok;
}

static char *body_of(int port, const char *method, const char *path)
{
	struct tu_resp r;
	char *b;

	if (tu_http(port, method, path, method[0] == 'P' ? "application/json" : NULL,
		    method[0] == 'P' ? "" : NULL, 0, &r) != 0)
		return strdup("");
	b = strdup(r.body);
	tu_resp_free(&r);
	return b;
}

/* Polls GET path until its body contains want, up to ms. Returns 0 or -1. */
static int wait_for(int port, const char *path, const char *want, double ms)
{
	for (double t0 = bench_now_ms(); bench_now_ms() - t0 < ms;) {
		char *b = body_of(port, "GET", path);
		int hit = strstr(b, want) != NULL;
		free(b);
		if (hit)
			return 0;
		usleep(500);
	}
	return -1;
}

static pid_t serve(const char *dir, int port)
{
	static char bin[1024], cfg[600], listen[64], data[600];
	char *argv[] = {bin, "serve", "--config", cfg, "--listen", listen, "--data", data,
			"--log-level", "warn", NULL};
	char log[600];

	snprintf(bin, sizeof bin, "%s", tu_bin("fnrun"));
	snprintf(cfg, sizeof cfg, "%.500s/registry.yaml", dir);
	snprintf(listen, sizeof listen, "127.0.0.1:%d", port);
	snprintf(data, sizeof data, "%.500s/data", dir);
	snprintf(log, sizeof log, "%.500s/gateway.log", dir);
	return tu_spawn(argv, log);
}

static int build_image(const char *image, const char *dir)
{
	char cmd[2048];

	snprintf(cmd, sizeof cmd, "containers/build worker-sim %s %s %s/images >/dev/null 2>&1",
		 tu_bindir(), image, dir);
	return system(cmd) == 0 ? 0 : -1;
}

static void write_registry(const char *dir, const char *image)
{
	static const char wf[] =
		"{\"1\": {\"class_type\": \"SimTextEncode\", \"inputs\": {\"text\": \"x\"}},"
		" \"2\": {\"class_type\": \"SimSampler\", \"inputs\": {\"conditioning\": [\"1\", 0],"
		" \"seed\": 1, \"steps\": 1, \"width\": 64, \"height\": 64, \"step_ms\": 0, \"fail\": \"none\"}},"
		" \"3\": {\"class_type\": \"SaveImage\", \"inputs\": {\"images\": [\"2\", 0], \"filename_prefix\": \"b\"}}}";
	char path[600], reg[2048];

	snprintf(reg, sizeof reg,
		 "functions:\n"
		 "  Create Image:\n"
		 "    params:\n"
		 "      prompt: {type: string, required: true}\n"
		 "    qualities:\n"
		 "      low: {label: Fast Preview, typical_seconds: [1, 2]}\n"
		 "models:\n"
		 "  c:\n"
		 "    function: Create Image\n"
		 "    quality: low\n"
		 "    runtime: docker\n"
		 "    image: %s\n"
		 "    command: [\"{bindir}/fnrun-worker\", --model, sim, --step-ms, \"0\", --log-level, warn, --port, \"{port}\"]\n"
		 "    workflow: wf.json\n"
		 "    bind: {prompt: \"1.inputs.text\"}\n",
		 image);
	snprintf(path, sizeof path, "%.500s/registry.yaml", dir);
	tu_write_file(path, reg, strlen(reg));
	snprintf(path, sizeof path, "%.500s/wf.json", dir);
	tu_write_file(path, wf, strlen(wf));
}

void bench_docker(void)
{
	const char *host = getenv("DOCKER_HOST");
	const char *sock = host && strncmp(host, "unix://", 7) == 0 ? host + 7 : PODMAN_SOCK;
	char dir[600], env[700];
	static const char image[] = "localhost/fnrun/worker-sim:bench";
	double cold[RUNS];
	int port = tu_free_port(), n = 0;
	pid_t g;

	if (!engine_up(sock)) {
		printf("%-58s skipped: no container engine at %s (scripts/podman-setup)\n",
		       "docker runner (sim container) cold start", sock);
		return;
	}
	snprintf(env, sizeof env, "unix://%s", sock);
	setenv("DOCKER_HOST", env, 1);
	snprintf(dir, sizeof dir, "%s/docker", tu_tmpdir());
	mkdir(dir, 0755);
	if (build_image(image, dir) < 0) {
		printf("%-58s skipped: the worker-sim image did not build\n",
		       "docker runner (sim container) cold start");
		tu_rmrf(dir);
		return;
	}
	write_registry(dir, image);
	g = serve(dir, port);
	if (tu_wait_http(port, "/health", 200, 10000) != 0) {
		printf("docker bench: the gateway did not start (see %s/gateway.log)\n", dir);
		tu_stop(g, 5000);
		return;
	}
	/* POST start -> runner ready: create, start, inspect, /health, /ws. */
	for (int i = 0; i < RUNS; i++) {
		double t0 = bench_now_ms();
		free(body_of(port, "POST", "/api/admin/models/c/start"));
		if (wait_for(port, "/api/admin/runners", "\"state\": \"ready\"", 30000) < 0)
			break;
		cold[n++] = bench_now_ms() - t0;
		free(body_of(port, "POST", "/api/admin/models/c/drain"));
		wait_for(port, "/api/admin/runners", "\"runners\": []", 30000);
	}
	tu_stop(g, 15000);
	tu_rmrf(dir);
	if (n == 0) {
		printf("docker bench: no runner became ready\n");
		return;
	}
	bench_sort(cold, n);
	printf("%-58s p50 %7.3f ms  p99 %7.3f ms  (n=%d)\n",
	       "docker runner (sim container) cold start: start -> ready", cold[n / 2], cold[n - 1], n);
}
