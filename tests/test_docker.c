/*
 * test_docker.c - the docker runtime (runtime_docker.c).
 *
 * unit:    the module on its own loop against a fake engine on a unix socket
 *          (create/start/inspect/logs/wait/remove in order, the 8-byte log
 *          frames split across reads, a stop while creating, a missing image).
 * engine:  the module against the real engine at $DOCKER_HOST (podman in CI,
 *          scripts/podman-setup): the container's hardening and labels.
 * gateway: a real `fnrun serve` with runtime docker: a job end to end, a
 *          killed container restarted, idle stop, orphans after kill -9 of
 *          fnrun, one registry entry under both runtimes, a container that
 *          never becomes healthy.
 *
 * The worker-sim image is built once per run from $FNRUN_BIN (containers/build)
 * under a tag of its own, so a release `make images` is never overwritten.
 */
#include <errno.h>
#include <json-c/json.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "gwtest.h"
#include "registry.h"
#include "runtime_docker.h"
#include "server.h"
#include "testutil.h"
#include "vram.h"

static char image[160];  /* the test's worker-sim tag */
static char build_err[512]; /* why the image could not be built, or "" */
/*
 * The engine and gateway tests work under run_dir, made by the parent
 * process (unchecked fixture). Check does not run a failed test's
 * teardown, so the parent's sweep() stops the gateways those tests started
 * (run_dir/pids) and removes every container labelled with a data dir
 * under run_dir.
 */
static char run_dir[256];

/* ---- a blocking client for the engine (HTTP/1.0 over its unix socket) ---- */

static const char *engine_sock(void)
{
	static char path[512];
	const char *h = getenv("DOCKER_HOST");

	snprintf(path, sizeof path, "%s", h && strncmp(h, "unix://", 7) == 0 ? h + 7 : "/var/run/docker.sock");
	return path;
}

/* One request; returns the body (caller frees) and the status in *status. */
static char *engine(const char *method, const char *path, const char *body, int *status)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	char head[1024], *buf = NULL, *sep;
	size_t len = 0, cap = 0;

	*status = 0;
	snprintf(sa.sun_path, sizeof sa.sun_path, "%s", engine_sock());
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
		if (fd >= 0)
			close(fd);
		return strdup("");
	}
	snprintf(head, sizeof head, "%s " DOCKER_API "%s HTTP/1.0\r\nHost: localhost\r\n"
		 "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
		 method, path, body ? strlen(body) : 0);
	if (write(fd, head, strlen(head)) < 0 || (body && write(fd, body, strlen(body)) < 0))
		ck_abort_msg("write to the engine failed");
	for (;;) {
		ssize_t r;
		if (cap - len < 4096) {
			cap = cap ? cap * 2 : 65536;
			buf = realloc(buf, cap + 1);
		}
		r = read(fd, buf + len, cap - len);
		if (r <= 0)
			break;
		len += (size_t)r;
	}
	close(fd);
	if (buf == NULL)
		return strdup("");
	buf[len] = '\0';
	sscanf(buf, "HTTP/1.%*d %d", status);
	sep = strstr(buf, "\r\n\r\n");
	memmove(buf, sep ? sep + 4 : buf + len, strlen(sep ? sep + 4 : buf + len) + 1);
	return buf;
}

static struct json_object *engine_json(const char *method, const char *path, int *status)
{
	char *b = engine(method, path, NULL, status);
	struct json_object *o = json_tokener_parse(b);

	free(b);
	return o;
}

/* The containers (running or not) labelled with this data directory. */
static struct json_object *containers_of(const char *data_dir)
{
	char filter[768], path[1024];
	char *esc;
	int status;
	struct json_object *o;

	snprintf(filter, sizeof filter, "{\"label\": [\"fnrun.data=%s\"]}", data_dir);
	esc = malloc(strlen(filter) * 3 + 1);
	for (size_t i = 0, k = 0;; i++) {
		unsigned char ch = (unsigned char)filter[i];
		if (ch == '\0') {
			esc[k] = '\0';
			break;
		}
		if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
		    strchr("-_.~/", ch))
			esc[k++] = (char)ch;
		else
			k += (size_t)sprintf(esc + k, "%%%02X", ch);
	}
	snprintf(path, sizeof path, "/containers/json?all=1&filters=%s", esc);
	free(esc);
	o = engine_json("GET", path, &status);
	ck_assert_msg(status == 200 && json_object_is_type(o, json_type_array),
		      "cannot list containers at %s (status %d)", engine_sock(), status);
	return o;
}

static int count_containers(const char *data_dir)
{
	struct json_object *o = containers_of(data_dir);
	int n = (int)json_object_array_length(o);

	json_object_put(o);
	return n;
}

/* The id of the one running container of data_dir, into out; "" when none. */
static void running_container(const char *data_dir, char *out, size_t n)
{
	struct json_object *o = containers_of(data_dir);

	out[0] = '\0';
	for (size_t i = 0; i < json_object_array_length(o); i++) {
		struct json_object *c = json_object_array_get_idx(o, i);
		if (strcmp(gw_str(c, "State"), "running") == 0)
			snprintf(out, n, "%s", gw_str(c, "Id"));
	}
	json_object_put(o);
}

/* Polls until data_dir has want containers; fails the test after ms. */
static void wait_containers(const char *data_dir, int want, int ms)
{
	int n = -1;

	for (int waited = 0; waited <= ms; waited += 50) {
		n = count_containers(data_dir);
		if (n == want)
			return;
		gw_sleep_ms(50);
	}
	ck_abort_msg("%d containers for %s, wanted %d", n, data_dir, want);
}

/* ---- the image, once per run (an unchecked fixture: the parent process) ---- */

static void build_image(void)
{
	char cmd[2048], work[600], bindir[512];
	unsigned h = 5381;
	int status;
	char *b;

	if (run_dir[0] == '\0') {
		snprintf(run_dir, sizeof run_dir, "/tmp/fnrun-docker-XXXXXX");
		if (mkdtemp(run_dir) == NULL)
			snprintf(run_dir, sizeof run_dir, "/tmp");
	}
	if (image[0] != '\0')
		return; /* built for an earlier test case of this run */
	snprintf(bindir, sizeof bindir, "%s", tu_bindir());
	for (const char *p = bindir; *p; p++)
		h = h * 33 + (unsigned char)*p;
	snprintf(image, sizeof image, "localhost/fnrun/worker-sim:check-%08x", h);
	b = engine("GET", "/_ping", NULL, &status);
	free(b);
	if (status != 200) {
		snprintf(build_err, sizeof build_err,
			 "no container engine answers at %s (DOCKER_HOST); run scripts/podman-setup",
			 engine_sock());
		return;
	}
	snprintf(work, sizeof work, "%.300s/images", run_dir); /* swept with run_dir */
	snprintf(cmd, sizeof cmd, "containers/build worker-sim %s %s %s >%s/build.log 2>&1", bindir,
		 image, work, bindir);
	if (system(cmd) != 0)
		snprintf(build_err, sizeof build_err, "image build failed: see %.400s/build.log", bindir);
}

static void need_image(void)
{
	ck_assert_msg(build_err[0] == '\0', "%s", build_err);
}

/* A fresh directory under run_dir into out (a test's own). */
static void run_subdir(char *out, size_t n)
{
	snprintf(out, n, "%.200s/tXXXXXX", run_dir);
	ck_assert_ptr_nonnull(mkdtemp(out));
}

/* Records a gateway pid for sweep(). */
static void note_pid(pid_t pid)
{
	char path[300], line[32];
	FILE *f;

	snprintf(path, sizeof path, "%.200s/pids", run_dir);
	f = fopen(path, "a");
	ck_assert_ptr_nonnull(f);
	snprintf(line, sizeof line, "%d\n", (int)pid);
	fputs(line, f);
	fclose(f);
}

/* 1 while pid runs a command line naming run_dir (so never a reused pid). */
static int ours(int pid)
{
	char path[64], cmd[1024] = "";
	FILE *f;
	size_t n;

	snprintf(path, sizeof path, "/proc/%d/cmdline", pid);
	f = fopen(path, "r");
	if (f == NULL)
		return 0;
	n = fread(cmd, 1, sizeof cmd - 1, f);
	fclose(f);
	for (size_t i = 0; i < n; i++)
		if (cmd[i] == '\0')
			cmd[i] = ' ';
	return strstr(cmd, run_dir) != NULL;
}

static void stop_noted_gateways(void)
{
	char path[300];
	FILE *f;
	int pid;

	snprintf(path, sizeof path, "%.200s/pids", run_dir);
	f = fopen(path, "r");
	while (f && fscanf(f, "%d", &pid) == 1) {
		if (!ours(pid))
			continue;
		kill(pid, SIGTERM); /* it stops and removes its own containers */
		for (int waited = 0; ours(pid) && waited < 15000; waited += 20)
			gw_sleep_ms(20);
		if (ours(pid))
			kill(pid, SIGKILL);
	}
	if (f)
		fclose(f);
}

/* Unchecked teardown (the parent): whatever failed tests left behind. */
static void sweep(void)
{
	struct json_object *o;
	int status;

	if (run_dir[0] == '\0' || strcmp(run_dir, "/tmp") == 0)
		return;
	stop_noted_gateways();
	o = engine_json("GET", "/containers/json?all=1&filters=%7B%22label%22%3A%5B%22fnrun%3D1%22%5D%7D",
			&status);
	for (size_t i = 0; status == 200 && i < json_object_array_length(o); i++) {
		struct json_object *c = json_object_array_get_idx(o, i);
		const char *data = gw_str(json_object_object_get(c, "Labels"), "fnrun.data");
		char path[200];
		if (data == NULL || strncmp(data, run_dir, strlen(run_dir)) != 0)
			continue;
		snprintf(path, sizeof path, "/containers/%.80s?force=1", gw_str(c, "Id"));
		free(engine("DELETE", path, NULL, &status));
		status = 200;
	}
	json_object_put(o);
	tu_rmrf(run_dir);
	run_dir[0] = '\0';
}

/* ---- unit: the module against a fake engine ---- */

enum { FAKE_OK, FAKE_NO_IMAGE };

static char udir[256];
static uv_loop_t loop;

struct rec {
	int port;        /* from on_started, 0 before */
	int exits, fails;
	int64_t status;
	char why[256];
	struct docker_ctr *c;
	char id[80];     /* the engine's id, once started */
};

static void on_started(void *ud, int port)
{
	((struct rec *)ud)->port = port;
}

static void on_exit_cb(void *ud, int64_t status, const char *why)
{
	struct rec *r = ud;

	r->exits++;
	r->status = status;
	snprintf(r->why, sizeof r->why, "%s", why);
}

static void on_failed(void *ud, const char *why)
{
	struct rec *r = ud;

	r->fails++;
	snprintf(r->why, sizeof r->why, "%s", why);
}

static const struct docker_cbs cbs = {on_started, on_exit_cb, on_failed};

static void reply(int fd, int status, const char *body)
{
	char head[256];

	snprintf(head, sizeof head, "HTTP/1.1 %d X\r\nContent-Type: application/json\r\n"
		 "Content-Length: %zu\r\nConnection: close\r\n\r\n", status, strlen(body));
	if (write(fd, head, strlen(head)) < 0 || write(fd, body, strlen(body)) < 0)
		_exit(1);
}

/* The log frames: header (stream, 0, 0, 0, length BE32) + payload each. */
static size_t log_frames(char *out, char *payloads)
{
	static const struct { int stream; const char *text; } f[] = {
		{1, "hello\n"}, {2, "warn: something\n"}, {1, NULL}, {1, "last line\n"}};
	char big[5002];
	size_t n = 0;

	memset(big, 'x', 5000);
	big[5000] = '\n';
	big[5001] = '\0';
	payloads[0] = '\0';
	for (size_t i = 0; i < 4; i++) {
		const char *t = f[i].text ? f[i].text : big;
		size_t len = strlen(t);
		unsigned char h[8] = {(unsigned char)f[i].stream, 0, 0, 0, (unsigned char)(len >> 24),
				      (unsigned char)(len >> 16), (unsigned char)(len >> 8), (unsigned char)len};
		memcpy(out + n, h, 8);
		memcpy(out + n + 8, t, len);
		n += 8 + len;
		strcat(payloads, t);
	}
	return n;
}

/* Writes the frames in pieces of 1 to 13 bytes, so headers split across reads. */
static void send_logs(int fd)
{
	static const char head[] = "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.docker.raw-stream\r\n"
				   "Connection: close\r\n\r\n";
	char frames[8192], payloads[8192];
	size_t n = log_frames(frames, payloads), off = 0, piece = 1;
	struct timespec ts = {0, 100000};

	if (write(fd, head, sizeof head - 1) < 0)
		_exit(1);
	while (off < n) {
		size_t k = piece < n - off ? piece : n - off;
		if (write(fd, frames + off, k) < 0)
			_exit(1);
		off += k;
		piece = piece % 13 + 1;
		if (off < 200 || n - off < 200)
			nanosleep(&ts, NULL); /* pacing, so the client reads the pieces apart */
		else
			piece = 512;
	}
}

/* Reads the rest of the request body and saves it as udir/create.json. */
static void save_body(int fd, char *req, size_t len)
{
	const char *cl = strcasestr(req, "content-length:"), *end = strstr(req, "\r\n\r\n");
	size_t want = cl ? (size_t)atol(cl + 15) : 0, have = end ? len - (size_t)(end + 4 - req) : 0;
	char *body = malloc(want + 1), path[300];

	memcpy(body, end + 4, have);
	while (have < want) {
		ssize_t r = read(fd, body + have, want - have);
		if (r <= 0)
			break;
		have += (size_t)r;
	}
	snprintf(path, sizeof path, "%s/create.json", udir);
	tu_write_file(path, body, have);
	free(body);
}

static void fake_serve(int fd, int mode, int logs_done[2])
{
	char req[8192], method[16] = "", path[1024] = "", line[1100], reqlog[300];
	size_t len = 0;
	ssize_t r;
	FILE *f;

	while (len < sizeof req - 1 && (r = read(fd, req + len, sizeof req - 1 - len)) > 0) {
		len += (size_t)r;
		req[len] = '\0';
		if (strstr(req, "\r\n\r\n"))
			break;
	}
	req[len] = '\0';
	sscanf(req, "%15s %1023s", method, path);
	if (strstr(path, "/containers/create"))
		save_body(fd, req, len);
	snprintf(reqlog, sizeof reqlog, "%s/requests.log", udir);
	f = fopen(reqlog, "a");
	snprintf(line, sizeof line, "%s %s\n", method, path);
	fputs(line, f);
	fclose(f);
	if (strstr(path, "/containers/create"))
		reply(fd, mode == FAKE_NO_IMAGE ? 404 : 201,
		      mode == FAKE_NO_IMAGE ? "{\"cause\": \"no such image\", \"message\": \"no such image: "
					      "localhost/none: image not known\", \"response\": 404}"
					    : "{\"Id\": \"fake1\", \"Warnings\": []}");
	else if (strstr(path, "/start") || strstr(path, "/stop") || strcmp(method, "DELETE") == 0)
		reply(fd, 204, "");
	else if (strstr(path, "/fake1/json")) {
		reply(fd, 200, "{\"State\": {\"Running\": true}, \"NetworkSettings\": {\"Ports\": "
			       "{\"8188/tcp\": [{\"HostIp\": \"127.0.0.1\", \"HostPort\": \"4242\"}]}}}");
		if (write(logs_done[1], "i", 1) < 0)
			_exit(1);
	} else if (strstr(path, "/json"))
		reply(fd, 200, "[]");
	else if (strstr(path, "/logs")) {
		send_logs(fd);
		if (write(logs_done[1], "x", 1) < 0)
			_exit(1);
	} else if (strstr(path, "/wait")) {
		char ch[2];
		/*
		 * The exit comes after the last output and after the inspect has
		 * been answered: a container that had started, then exited.
		 */
		for (int got = 0; got < 2;)
			if (read(logs_done[0], ch, 1) == 1)
				got++;
			else
				_exit(1);
		reply(fd, 200, "{\"StatusCode\": 7, \"Error\": null}");
	} else
		reply(fd, 404, "{\"message\": \"no route\"}");
}

/* A fake engine on udir/engine.sock: one process per connection. */
static pid_t fake_start(int mode)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int lfd = socket(AF_UNIX, SOCK_STREAM, 0), logs_done[2];
	char env[300];
	pid_t pid;

	snprintf(sa.sun_path, sizeof sa.sun_path, "%.90s/engine.sock", udir);
	ck_assert_int_eq(bind(lfd, (struct sockaddr *)&sa, sizeof sa), 0);
	ck_assert_int_eq(listen(lfd, 16), 0);
	ck_assert_int_eq(pipe(logs_done), 0);
	pid = fork();
	if (pid == 0) {
		signal(SIGCHLD, SIG_IGN);
		for (;;) {
			int c = accept(lfd, NULL, NULL);
			if (c < 0)
				continue;
			if (fork() == 0) {
				fake_serve(c, mode, logs_done);
				close(c);
				_exit(0);
			}
			close(c);
		}
	}
	close(lfd);
	close(logs_done[0]);
	close(logs_done[1]);
	snprintf(env, sizeof env, "unix://%s/engine.sock", udir);
	setenv("DOCKER_HOST", env, 1);
	return pid;
}

static char *model_cmd[] = {"{bindir}/fnrun-worker", "--model", "sim", "--port", "{port}", NULL};
static struct reg_model model = {.id = "m", .image = "localhost/none", .command = model_cmd,
				 .ncommand = 5};

static void unit_setup(void)
{
	snprintf(udir, sizeof udir, "%s", tu_tmpdir());
	ck_assert_int_eq(uv_loop_init(&loop), 0);
	server.loop = &loop;
	server.cfg.data_dir = udir;
	server.reg = NULL;
}

static void unit_teardown(void)
{
	tu_rmrf(udir);
}

static void engine_setup(void)
{
	run_subdir(udir, sizeof udir);
	ck_assert_int_eq(uv_loop_init(&loop), 0);
	server.loop = &loop;
	server.cfg.data_dir = udir;
	server.reg = NULL;
}

static char *requests(void)
{
	char path[300];
	char *t;

	snprintf(path, sizeof path, "%s/requests.log", udir);
	t = tu_read_file(path, NULL);
	return t ? t : strdup("");
}

START_TEST(unit_lifecycle_and_log_frames)
{
	struct rec rec = {0};
	struct err e = {0};
	char logpath[300], frames[8192], payloads[8192], *log, *reqs;
	pid_t fake = fake_start(FAKE_OK);

	snprintf(logpath, sizeof logpath, "%s/r1.log", udir);
	rec.c = docker_start(&model, "r1-1", 0, logpath, &cbs, &rec, &e);
	ck_assert_msg(rec.c != NULL, "%s", e.msg);
	ck_assert_int_eq(rec.exits + rec.fails + rec.port, 0); /* never called from docker_start */
	ck_assert_int_eq(docker_live(), 1);
	uv_run(&loop, UV_RUN_DEFAULT);
	ck_assert_int_eq(rec.port, 4242);
	ck_assert_int_eq(rec.exits, 1);
	ck_assert_int_eq(rec.fails, 0);
	ck_assert_int_eq(rec.status, 7);
	ck_assert_str_eq(rec.why, "container exited (status 7)");
	ck_assert_int_eq(docker_live(), 0);
	ck_assert_int_eq(uv_loop_close(&loop), 0); /* every handle of the module closed */
	log_frames(frames, payloads);
	log = tu_read_file(logpath, NULL);
	ck_assert_ptr_nonnull(log);
	ck_assert_str_eq(log, payloads); /* headers stripped, stdout and stderr in order */
	reqs = requests();
	ck_assert_msg(strstr(reqs, "POST " DOCKER_API "/containers/create?name=fnrun-r1-1-") == reqs, "%s", reqs);
	ck_assert_ptr_nonnull(strstr(reqs, "POST " DOCKER_API "/containers/fake1/start"));
	ck_assert_ptr_nonnull(strstr(reqs, "GET " DOCKER_API "/containers/fake1/logs?follow=1&stdout=1&stderr=1"));
	ck_assert_ptr_nonnull(strstr(reqs, "POST " DOCKER_API "/containers/fake1/wait"));
	ck_assert_ptr_nonnull(strstr(reqs, "DELETE " DOCKER_API "/containers/fake1?force=1"));
	free(log);
	free(reqs);
	kill(fake, SIGKILL);
	waitpid(fake, NULL, 0);
}
END_TEST

START_TEST(unit_stop_while_creating_gives_exit)
{
	struct rec rec = {0};
	struct err e = {0};
	char *reqs;
	pid_t fake = fake_start(FAKE_OK);

	rec.c = docker_start(&model, "r2-1", 0, NULL, &cbs, &rec, &e);
	ck_assert_ptr_nonnull(rec.c);
	docker_stop(rec.c, 1000);
	docker_stop(rec.c, 1000); /* a second call does nothing */
	ck_assert_int_eq(rec.exits, 0);
	uv_run(&loop, UV_RUN_DEFAULT);
	ck_assert_int_eq(rec.exits, 1);
	ck_assert_int_eq(rec.fails, 0);
	ck_assert_int_eq(rec.port, 0);
	ck_assert_int_eq(uv_loop_close(&loop), 0);
	reqs = requests();
	/* Created, then removed; never started. */
	ck_assert_ptr_null(strstr(reqs, "/start"));
	ck_assert_ptr_nonnull(strstr(reqs, "DELETE " DOCKER_API "/containers/fake1?force=1"));
	free(reqs);
	kill(fake, SIGKILL);
	waitpid(fake, NULL, 0);
}
END_TEST

START_TEST(unit_missing_image_fails_start)
{
	struct rec rec = {0};
	struct err e = {0};
	pid_t fake = fake_start(FAKE_NO_IMAGE);

	rec.c = docker_start(&model, "r3-1", 0, NULL, &cbs, &rec, &e);
	ck_assert_ptr_nonnull(rec.c);
	uv_run(&loop, UV_RUN_DEFAULT);
	ck_assert_int_eq(rec.fails, 1);
	ck_assert_int_eq(rec.exits, 0);
	ck_assert_msg(strstr(rec.why, "create: 404 no such image") != NULL, "%s", rec.why);
	ck_assert_int_eq(uv_loop_close(&loop), 0);
	kill(fake, SIGKILL);
	waitpid(fake, NULL, 0);
}
END_TEST

/* The create body: GPU request with NVML, mounts from the registry's server section. */
static struct json_object *created_with(const char *nvml_state, int gpu)
{
	char path[400], yaml[1200], lib[600];
	struct rec rec = {0};
	struct err e = {0};
	struct json_object *o;
	char *t;
	pid_t fake = fake_start(FAKE_NO_IMAGE);

	snprintf(lib, sizeof lib, "%s/../tests/libnvidia-ml.so.1", tu_bindir());
	setenv("FNRUN_NVML_LIB", getenv("FNRUN_FAKE_NVML") ? getenv("FNRUN_FAKE_NVML") : lib, 1);
	snprintf(path, sizeof path, "%s/nvml-state", udir);
	setenv("FAKE_NVML_STATE", path, 1);
	if (nvml_state)
		ck_assert_int_eq(tu_write_file(path, nvml_state, strlen(nvml_state)), 0);
	vram_init(0, 0, 0);
	snprintf(yaml, sizeof yaml,
		 "server: {models_dir: %s, cache_dir: %s}\n"
		 "functions:\n  F:\n    params: {p: {type: string}}\n"
		 "    qualities: {low: {label: L, typical_seconds: [1, 2]}}\n"
		 "models:\n  m:\n    function: F\n    quality: low\n    runtime: docker\n"
		 "    image: localhost/none\n    env: {HF_HOME: /cache/hf}\n"
		 "    workflow: wf.json\n    bind: {p: \"1.inputs.text\"}\n",
		 udir, udir);
	snprintf(path, sizeof path, "%s/wf.json", udir);
	{
		static const char wf[] = "{\"1\": {\"class_type\": \"X\", \"inputs\": {\"text\": \"\"}}}";
		tu_write_file(path, wf, strlen(wf));
	}
	snprintf(path, sizeof path, "%s/registry.yaml", udir);
	tu_write_file(path, yaml, strlen(yaml));
	server.reg = registry_load(path, &e);
	ck_assert_msg(server.reg != NULL, "%s", e.msg);
	rec.c = docker_start(registry_model(server.reg, "m"), "r5-1", gpu, NULL, &cbs, &rec, &e);
	ck_assert_msg(rec.c != NULL, "%s", e.msg);
	uv_run(&loop, UV_RUN_DEFAULT);
	ck_assert_int_eq(rec.fails, 1);
	ck_assert_int_eq(uv_loop_close(&loop), 0);
	snprintf(path, sizeof path, "%s/create.json", udir);
	t = tu_read_file(path, NULL);
	ck_assert_ptr_nonnull(t);
	o = json_tokener_parse(t);
	free(t);
	ck_assert_ptr_nonnull(o);
	kill(fake, SIGKILL);
	waitpid(fake, NULL, 0);
	registry_free(server.reg);
	server.reg = NULL;
	return o;
}

static const char *jstr(struct json_object *o)
{
	return json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
}

START_TEST(unit_gpu_request_and_mounts)
{
	struct json_object *o = created_with("gpu 0 A GPU-a 100000000000 1\ngpu 1 B GPU-b 100000000000 1\n", 1);
	struct json_object *hc = json_object_object_get(o, "HostConfig");
	char want[1100];

	/* The GPU the memory manager chose, through the nvidia driver; seen as device 0. */
	ck_assert_str_eq(jstr(json_object_object_get(hc, "DeviceRequests")),
			 "[{\"Driver\":\"nvidia\",\"DeviceIDs\":[\"1\"],\"Capabilities\":[[\"gpu\"]]}]");
	ck_assert_str_eq(jstr(json_object_object_get(o, "Env")),
			 "[\"CUDA_VISIBLE_DEVICES=0\",\"HF_HOME=/cache/hf\"]");
	snprintf(want, sizeof want, "[\"%s:%s:ro\",\"%s:%s:rw\"]", udir, udir, udir, udir);
	ck_assert_str_eq(jstr(json_object_object_get(hc, "Binds")), want);
	ck_assert_str_eq(jstr(json_object_object_get(o, "Cmd")), "null"); /* the image's own */
	json_object_put(o);
}
END_TEST

START_TEST(unit_no_gpu_request_without_nvidia)
{
	struct json_object *o = created_with(NULL, 0); /* no NVML state: no driver */
	struct json_object *hc = json_object_object_get(o, "HostConfig");

	ck_assert_ptr_null(json_object_object_get(hc, "DeviceRequests"));
	ck_assert_str_eq(jstr(json_object_object_get(o, "Env")),
			 "[\"CUDA_VISIBLE_DEVICES=0\",\"HF_HOME=/cache/hf\"]");
	json_object_put(o);
}
END_TEST

START_TEST(unit_bad_docker_host_is_an_error)
{
	struct rec rec = {0};
	struct err e = {0};

	setenv("DOCKER_HOST", "tcp://127.0.0.1:2375", 1);
	ck_assert_ptr_null(docker_start(&model, "r4-1", 0, NULL, &cbs, &rec, &e));
	ck_assert_msg(strstr(e.msg, "unix:///path") != NULL, "%s", e.msg);
	ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
	ck_assert_int_eq(uv_loop_close(&loop), 0);
}
END_TEST

/* ---- engine: the module against the real engine ---- */

static void check_hardening(const char *id)
{
	char path[256];
	int status;
	struct json_object *o, *hc, *v, *labels;
	const char *s;

	snprintf(path, sizeof path, "/containers/%s/json", id);
	o = engine_json("GET", path, &status);
	ck_assert_int_eq(status, 200);
	hc = json_object_object_get(o, "HostConfig");
	ck_assert(json_object_get_boolean(json_object_object_get(hc, "ReadonlyRootfs")));
	s = json_object_to_json_string(json_object_object_get(hc, "SecurityOpt"));
	ck_assert_msg(strstr(s, "no-new-privileges") != NULL, "%s", s);
	ck_assert_int_eq(gw_int(hc, "PidsLimit"), 4096);
	ck_assert_int_gt(gw_int(hc, "Memory"), 0);
	s = json_object_to_json_string(json_object_object_get(hc, "Tmpfs"));
	ck_assert_msg(strstr(s, "\"\\/tmp\"") != NULL, "%s", s);
	/* Every capability dropped: the container's effective set is empty. */
	v = json_object_object_get(json_object_object_get(o, "State"), "Pid");
	ck_assert_int_gt(json_object_get_int(v), 0);
	{
		char statpath[64], st[8192];
		FILE *f;
		size_t n;
		snprintf(statpath, sizeof statpath, "/proc/%d/status", json_object_get_int(v));
		f = fopen(statpath, "r"); /* procfs files have no size: read, not stat */
		ck_assert_ptr_nonnull(f);
		n = fread(st, 1, sizeof st - 1, f);
		st[n] = '\0';
		fclose(f);
		ck_assert_msg(strstr(st, "CapEff:\t0000000000000000") != NULL, "%.120s",
			      strstr(st, "CapInh") ? strstr(st, "CapInh") : st);
		ck_assert_msg(strstr(st, "NoNewPrivs:\t1") != NULL, "no NoNewPrivs");
	}
	v = json_object_object_get(json_object_object_get(hc, "PortBindings"), "8188/tcp");
	ck_assert_int_eq(json_object_array_length(v), 1); /* one port, on loopback only */
	ck_assert_str_eq(gw_str(json_object_array_get_idx(v, 0), "HostIp"), "127.0.0.1");
	labels = json_object_object_get(json_object_object_get(o, "Config"), "Labels");
	ck_assert_str_eq(gw_str(labels, "fnrun"), "1");
	ck_assert_str_eq(gw_str(labels, "fnrun.model"), "m");
	ck_assert_str_eq(gw_str(labels, "fnrun.runner"), "r9-1");
	ck_assert_str_eq(gw_str(labels, "fnrun.data"), udir);
	ck_assert_ptr_nonnull(gw_str(labels, "fnrun.node"));
	s = json_object_to_json_string(json_object_object_get(json_object_object_get(o, "Config"), "Env"));
	ck_assert_msg(strstr(s, "CUDA_VISIBLE_DEVICES=0") != NULL, "%s", s);
	json_object_put(o);
}

static void on_real_started(void *ud, int port)
{
	struct rec *r = ud;

	r->port = port;
	/* The worker answers on 127.0.0.1:port; /health may say starting at first. */
	ck_assert_int_eq(tu_wait_http(port, "/health", 200, 10000), 0);
	snprintf(r->id, sizeof r->id, "%s", docker_id(r->c));
	check_hardening(r->id);
	docker_stop(r->c, 2000);
}

START_TEST(engine_container_is_hardened_and_removed)
{
	static const struct docker_cbs real = {on_real_started, on_exit_cb, on_failed};
	struct rec rec = {0};
	struct err e = {0};
	char path[160], *b;
	int status;
	struct reg_model m = model;

	need_image();
	m.image = image;
	rec.c = docker_start(&m, "r9-1", 0, NULL, &real, &rec, &e);
	ck_assert_msg(rec.c != NULL, "%s", e.msg);
	uv_run(&loop, UV_RUN_DEFAULT);
	ck_assert_int_gt(rec.port, 0);
	ck_assert_int_eq(rec.exits, 1);
	ck_assert_str_eq(rec.why, "stopped");
	ck_assert_int_eq(rec.status, 0); /* the worker exited on SIGTERM, within the grace */
	ck_assert_int_eq(uv_loop_close(&loop), 0);
	ck_assert_int_eq(count_containers(udir), 0);
	snprintf(path, sizeof path, "/containers/%s/json", rec.id);
	b = engine("GET", path, NULL, &status);
	free(b);
	ck_assert_int_eq(status, 404);
}
END_TEST

/* ---- gateway: fnrun serve with runtime docker ---- */

static struct gw g;
static char data_dir[300];

static void gw_setup(void)
{
	memset(&g, 0, sizeof g);
	run_subdir(g.dir, sizeof g.dir);
	snprintf(data_dir, sizeof data_dir, "%s/data", g.dir);
	gw_write_workflow(&g, "wf", "none");
	need_image();
}

static void gw_teardown(void)
{
	if (g.pid > 0)
		gw_stop(&g, 15000);
	/* Nothing may outlive a test, whatever it did. */
	if (build_err[0] == '\0') {
		struct json_object *o = containers_of(data_dir);
		for (size_t i = 0; i < json_object_array_length(o); i++) {
			char path[200];
			int status;
			snprintf(path, sizeof path, "/containers/%s?force=1",
				 gw_str(json_object_array_get_idx(o, i), "Id"));
			free(engine("DELETE", path, NULL, &status));
		}
		json_object_put(o);
	}
	tu_rmrf(g.dir);
}

/*
 * One model, img, serving "low". runtime is "process" or "docker"; the
 * command is the same for both (the image's fnrun-worker listens where the
 * container's published port arrives, containers/worker-shim.c).
 */
static void registry(const char *runtime, const char *worker_args, const char *extra)
{
	char text[4096], img[256] = "";

	if (strcmp(runtime, "docker") == 0)
		snprintf(img, sizeof img, "    image: %s\n", image);
	snprintf(text, sizeof text,
		 "functions:\n"
		 "  Create Image:\n"
		 "    params:\n"
		 "      prompt: {type: string, required: true}\n"
		 "    qualities:\n"
		 "      low: {label: Fast Preview, typical_seconds: [1, 2]}\n"
		 "models:\n"
		 "  img:\n"
		 "    function: Create Image\n"
		 "    quality: low\n"
		 "    runtime: %s\n"
		 "%s"
		 "    command: [\"{bindir}/fnrun-worker\", --model, sim, %s, --port, \"{port}\"]\n"
		 "    workflow: wf.json\n"
		 "    bind: {prompt: \"1.inputs.text\"}\n"
		 "%s",
		 runtime, img, worker_args, extra ? extra : "");
	gw_write_registry(&g, text);
}

static void start_gw(void)
{
	gw_start(&g);
	note_pid(g.pid);
}

/* The end of a long text, for a failure message (Check caps their size). */
static const char *tail_of(const char *s)
{
	size_t n = strlen(s);

	return n > 600 ? s + n - 600 : s;
}

/*
 * Polls the file until it holds every needle (NULL-terminated), up to ms;
 * the engine delivers container output with some delay. Returns the text
 * (caller frees); fails the test on timeout.
 */
static char *wait_file(const char *path, int ms, ...)
{
	for (int waited = 0;; waited += 50) {
		char *t = tu_read_file(path, NULL);
		const char *needle;
		int all = t != NULL;
		va_list ap;

		va_start(ap, ms);
		while (all && (needle = va_arg(ap, const char *)) != NULL)
			all = strstr(t, needle) != NULL;
		va_end(ap);
		if (all)
			return t;
		if (waited >= ms)
			ck_abort_msg("%s lacks what was expected: %s", path, t ? tail_of(t) : "(missing)");
		free(t);
		gw_sleep_ms(50);
	}
}

/* The bytes of the job's first output. Caller frees; *len set. */
static char *first_output(struct json_object *job, size_t *len)
{
	struct json_object *outs = json_object_object_get(job, "outputs");
	const char *url = gw_str(json_object_array_get_idx(outs, 0), "url");
	struct tu_resp r;
	char *b;

	ck_assert_ptr_nonnull(url);
	ck_assert_int_eq(tu_http(g.port, "GET", url, NULL, NULL, 0, &r), 0);
	ck_assert_int_eq(r.status, 200);
	b = malloc(r.len + 1);
	memcpy(b, r.body, r.len);
	*len = r.len;
	tu_resp_free(&r);
	return b;
}

START_TEST(job_end_to_end_in_a_container)
{
	struct json_object *job;
	char *id, *log, id1[80], path[400];
	size_t len;

	registry("docker", "--step-ms, \"5\"", "    idle_timeout: 1h\n");
	start_gw();
	id = gw_submit(&g, "low", "a fox");
	job = gw_wait_status(&g, id, "completed,failed", 30000);
	ck_assert_str_eq(gw_str(job, "status"), "completed");
	free(first_output(job, &len));
	ck_assert_int_gt(len, 100);
	json_object_put(job);
	/* The model server ran in the container; its output is in the runner's log. */
	running_container(data_dir, id1, sizeof id1);
	ck_assert_msg(id1[0] != '\0', "no running container for %s", data_dir);
	ck_assert_int_eq(gw_runner_count(&g, "img"), 1);
	log = gw_log(&g);
	ck_assert_msg(strstr(log, "container running runner=") != NULL, "%s", tail_of(log));
	free(log);
	{
		struct json_object *rs = gw_json(&g, "GET", "/api/admin/runners", NULL, NULL);
		const char *rid = gw_str(json_object_array_get_idx(json_object_object_get(rs, "runners"), 0), "id");
		ck_assert_ptr_nonnull(rid);
		snprintf(path, sizeof path, "%s/logs/img/%s.log", data_dir, rid);
		json_object_put(rs);
	}
	free(wait_file(path, 10000, "listening model=sim addr=0.0.0.0 port=8188", "prompt done",
		       (char *)NULL));
	/* Shutdown stops and removes it. */
	ck_assert_int_eq(gw_stop(&g, 15000), 0);
	ck_assert_int_eq(count_containers(data_dir), 0);
	free(id);
}
END_TEST

START_TEST(killed_container_restarts_and_the_job_completes)
{
	struct json_object *job;
	char *id, *log, killed[80], now[80], path[200];
	int status;

	/* 8 steps of 250 ms: time to kill it mid-job. */
	registry("docker", "--step-ms, \"250\"", "    idle_timeout: 1h\n");
	start_gw();
	id = gw_submit(&g, "low", "kill me");
	json_object_put(gw_wait_status(&g, id, "running", 30000));
	running_container(data_dir, killed, sizeof killed);
	ck_assert(killed[0] != '\0');
	snprintf(path, sizeof path, "/containers/%s/kill?signal=SIGKILL", killed);
	free(engine("POST", path, NULL, &status));
	ck_assert_int_eq(status, 204);
	job = gw_wait_status(&g, id, "completed,failed", 30000);
	ck_assert_str_eq(gw_str(job, "status"), "completed");
	json_object_put(job);
	/* A new container served it; the killed one is gone. */
	running_container(data_dir, now, sizeof now);
	ck_assert(now[0] != '\0');
	ck_assert_str_ne(now, killed);
	wait_containers(data_dir, 1, 10000);
	log = gw_log(&g);
	ck_assert_msg(strstr(log, "container exited") && strstr(log, "status=137"), "%s", tail_of(log));
	free(log);
	free(id);
}
END_TEST

START_TEST(idle_stop_removes_the_container)
{
	struct json_object *job;
	char *id;

	registry("docker", "--step-ms, \"5\"", "    idle_timeout: 1s\n");
	start_gw();
	id = gw_submit(&g, "low", "then idle");
	job = gw_wait_status(&g, id, "completed,failed", 30000);
	ck_assert_str_eq(gw_str(job, "status"), "completed");
	json_object_put(job);
	ck_assert_int_eq(count_containers(data_dir), 1);
	wait_containers(data_dir, 0, 10000);
	/* The runner goes when fnrun hears the removal: an event of its own. */
	for (int waited = 0; gw_runner_count(&g, "img") > 0; waited += 20) {
		ck_assert_msg(waited < 10000, "the runner outlived its container by 10 s");
		gw_sleep_ms(20);
	}
	free(id);
}
END_TEST

START_TEST(orphans_removed_after_kill_9_of_fnrun)
{
	struct json_object *job;
	char *id, *log, orphan[80];

	registry("docker", "--step-ms, \"5\"", "    idle_timeout: 1h\n");
	start_gw();
	id = gw_submit(&g, "low", "left behind");
	job = gw_wait_status(&g, id, "completed,failed", 30000);
	ck_assert_str_eq(gw_str(job, "status"), "completed");
	json_object_put(job);
	running_container(data_dir, orphan, sizeof orphan);
	ck_assert(orphan[0] != '\0');
	kill(g.pid, SIGKILL);
	waitpid(g.pid, NULL, 0);
	g.pid = 0;
	ck_assert_int_eq(count_containers(data_dir), 1); /* it outlived fnrun */
	start_gw();
	wait_containers(data_dir, 0, 15000);
	log = gw_log(&g);
	ck_assert_msg(strstr(log, "removing orphan container") != NULL, "%s", tail_of(log));
	free(log);
	/* The new fnrun still serves. */
	free(id);
	id = gw_submit(&g, "low", "after");
	job = gw_wait_status(&g, id, "completed,failed", 30000);
	ck_assert_str_eq(gw_str(job, "status"), "completed");
	json_object_put(job);
	free(id);
}
END_TEST

/* Runs one job under runtime; returns its output bytes (caller frees). */
static char *one_job(const char *runtime, size_t *len)
{
	struct json_object *job;
	char *id, *out;

	registry(runtime, "--step-ms, \"5\"", "    idle_timeout: 1h\n");
	start_gw();
	id = gw_submit(&g, "low", "same everywhere");
	job = gw_wait_status(&g, id, "completed,failed", 30000);
	ck_assert_str_eq(gw_str(job, "status"), "completed");
	out = first_output(job, len);
	json_object_put(job);
	ck_assert_int_eq(count_containers(data_dir), strcmp(runtime, "docker") == 0 ? 1 : 0);
	ck_assert_int_eq(gw_stop(&g, 15000), 0);
	free(id);
	return out;
}

START_TEST(one_entry_serves_process_and_docker)
{
	size_t a_len, b_len;
	char *a = one_job("process", &a_len), *b = one_job("docker", &b_len);

	/* The same workflow, seed and model: the same image, byte for byte. */
	ck_assert_int_eq(a_len, b_len);
	ck_assert(memcmp(a, b, a_len) == 0);
	free(a);
	free(b);
}
END_TEST

START_TEST(never_healthy_fails_within_start_timeout)
{
	struct json_object *job, *err;
	char *id, *log;
	const char *text, *p;
	char path[300];
	int fails = 0;
	uint64_t t0;
	struct timespec ts;

	/* /health says "starting" for 10 minutes; the model allows 1 s. */
	registry("docker", "--load-ms, \"600000\"", "    start_timeout: 1s\n");
	start_gw();
	clock_gettime(CLOCK_MONOTONIC, &ts);
	t0 = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
	id = gw_submit(&g, "low", "never");
	job = gw_wait_status(&g, id, "completed,failed", 30000);
	clock_gettime(CLOCK_MONOTONIC, &ts);
	ck_assert_str_eq(gw_str(job, "status"), "failed");
	/* Three starts of 1 s each, plus container creation and backoff. */
	ck_assert_uint_lt((uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000 - t0, 10000);
	/* The user reads a plain message: no model, image or technical cause. */
	err = json_object_object_get(job, "error");
	ck_assert_str_eq(gw_str(err, "code"), "MODEL_UNAVAILABLE");
	text = json_object_to_json_string(job);
	ck_assert_msg(!strstr(text, "img") && !strstr(text, "container") && !strstr(text, "healthy") &&
			      !strstr(text, "worker-sim"),
		      "%s", text);
	json_object_put(job);
	/* The operator log has the reason and the container's last lines. */
	snprintf(path, sizeof path, "%s/gateway.log", g.dir);
	log = wait_file(path, 10000, "container output runner=", "last_output=", "listening model=sim",
			(char *)NULL);
	for (p = log; (p = strstr(p, "did not become healthy within its start timeout")); p++)
		fails++;
	ck_assert_msg(fails >= 3, "%s", tail_of(log));
	free(log);
	wait_containers(data_dir, 0, 10000);
	free(id);
}
END_TEST

Suite *suite_docker(void)
{
	Suite *s = suite_create("docker");
	TCase *unit = tcase_create("unit"), *eng = tcase_create("engine");
	TCase *gw = tcase_create("gateway");

	tcase_add_checked_fixture(unit, unit_setup, unit_teardown);
	tcase_add_test(unit, unit_lifecycle_and_log_frames);
	tcase_add_test(unit, unit_stop_while_creating_gives_exit);
	tcase_add_test(unit, unit_missing_image_fails_start);
	tcase_add_test(unit, unit_bad_docker_host_is_an_error);
	tcase_add_test(unit, unit_gpu_request_and_mounts);
	tcase_add_test(unit, unit_no_gpu_request_without_nvidia);
	tcase_set_timeout(unit, 20);
	suite_add_tcase(s, unit);

	tcase_add_unchecked_fixture(eng, build_image, sweep);
	tcase_add_checked_fixture(eng, engine_setup, unit_teardown);
	tcase_add_test(eng, engine_container_is_hardened_and_removed);
	tcase_set_timeout(eng, 60);
	suite_add_tcase(s, eng);

	tcase_add_unchecked_fixture(gw, build_image, sweep);
	tcase_add_checked_fixture(gw, gw_setup, gw_teardown);
	tcase_add_test(gw, job_end_to_end_in_a_container);
	tcase_add_test(gw, killed_container_restarts_and_the_job_completes);
	tcase_add_test(gw, idle_stop_removes_the_container);
	tcase_add_test(gw, orphans_removed_after_kill_9_of_fnrun);
	tcase_add_test(gw, one_entry_serves_process_and_docker);
	tcase_add_test(gw, never_healthy_fails_within_start_timeout);
	tcase_set_timeout(gw, 90);
	suite_add_tcase(s, gw);
	return s;
}
