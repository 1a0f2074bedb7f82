/*
 * bench.c - `make bench`: the figures of docs/design.md §9, measured on real
 * processes over loopback. Prints; asserts nothing.
 *
 *   worker:  exec -> first 200 on /health; POST /prompt round trip;
 *            POST /prompt -> execution_start on the WebSocket
 *   gateway: submit -> the model server receives the prompt (warm runner);
 *            completed jobs/s with zero-time sim jobs on several runners;
 *            RSS idle and with 10,000 queued jobs
 *   metrics: the cost of a /metrics scrape with 100 models and 10,000
 *            jobs (bench_metrics.c)
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"
#include "tws.h"
#include "bench.h"


static char dir[256];

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

double bench_now_ms(void)
{
	return now_ms();
}

void bench_sort(double *v, int n)
{
	qsort(v, (size_t)n, sizeof *v, cmp_double);
}

static double pct(double *v, int n, double p)
{
	qsort(v, (size_t)n, sizeof *v, cmp_double);
	return v[(int)((n - 1) * p + 0.5)];
}

static void report(const char *what, double *v, int n)
{
	printf("%-58s p50 %7.3f ms  p99 %7.3f ms  (n=%d)\n", what, pct(v, n, 0.5), pct(v, n, 0.99), n);
}

/* ---- a keep-alive HTTP/1.1 client on one socket ---- */

static int kc_connect(int port)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* One request; the response body (malloc'd) in *body. Returns the status or -1. */
static int kc_request(int fd, const char *method, const char *path, const char *body, char **out)
{
	char head[512], *buf = NULL, *sep;
	size_t len = 0, cap = 0, blen = body ? strlen(body) : 0;
	long clen = -1;
	int status = -1;

	snprintf(head, sizeof head, "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
		 "Content-Length: %zu\r\n\r\n", method, path, blen);
	if (write(fd, head, strlen(head)) < 0 || (blen && write(fd, body, blen) < 0))
		return -1;
	for (;;) {
		ssize_t r;
		if (cap - len < 4096) {
			cap = cap ? cap * 2 : 16384;
			buf = realloc(buf, cap + 1);
		}
		r = read(fd, buf + len, cap - len);
		if (r <= 0)
			break;
		len += (size_t)r;
		buf[len] = '\0';
		sep = strstr(buf, "\r\n\r\n");
		if (sep && clen < 0) {
			char *cl = strcasestr(buf, "content-length:");
			clen = cl ? atol(cl + 15) : 0;
			sscanf(buf, "HTTP/1.1 %d", &status);
		}
		if (sep && (long)(len - (size_t)(sep + 4 - buf)) >= clen) {
			if (out)
				*out = strdup(sep + 4);
			break;
		}
	}
	free(buf);
	return status;
}

static const char *sim_prompt =
	"{\"1\": {\"class_type\": \"SimTextEncode\", \"inputs\": {\"text\": \"bench\"}},"
	" \"2\": {\"class_type\": \"SimSampler\", \"inputs\": {\"conditioning\": [\"1\", 0],"
	" \"seed\": %d, \"steps\": 1, \"width\": 64, \"height\": 64, \"step_ms\": 0, \"fail\": \"none\"}},"
	" \"3\": {\"class_type\": \"SaveImage\", \"inputs\": {\"images\": [\"2\", 0], \"filename_prefix\": \"b\"}}}";

static pid_t start_worker(int port, const char *sub)
{
	char p[16], out[512], tmp[512], in[512];
	char *argv[] = {strdup(tu_bin("fnrun-worker")), "--model", "sim", "--step-ms", "0", "--port", p,
			"--output-directory", out, "--temp-directory", tmp, "--input-directory", in,
			"--log-level", "warn", NULL};

	snprintf(p, sizeof p, "%d", port);
	snprintf(out, sizeof out, "%s/%s/out", dir, sub);
	snprintf(tmp, sizeof tmp, "%s/%s/tmp", dir, sub);
	snprintf(in, sizeof in, "%s/%s/in", dir, sub);
	return tu_spawn(argv, "/dev/null");
}

/* Waits on the socket for a text frame containing want. */
static int ws_wait(struct tws *ws, const char *want, int ms)
{
	for (;;) {
		int op;
		char *data = NULL;
		size_t n;
		if (tws_recv(ws, ms, &op, &data, &n) != 0)
			return -1;
		if (op == 1 && strstr(data, want)) {
			free(data);
			return 0;
		}
		free(data);
	}
}

/* One GET /health without the 10 ms naps of tu_wait_http. */
static int health_ok(int port)
{
	struct tu_resp r;
	int ok = tu_http(port, "GET", "/health", NULL, NULL, 0, &r) == 0 && r.status == 200;

	if (r.headers || r.body)
		tu_resp_free(&r);
	return ok;
}

static void bench_worker(void)
{
	double cold[5], rt[300], start[50];
	char body[2048], prompt[1024], *resp;
	int port = 0, fd;
	struct tws *ws;

	for (int i = 0; i < 5; i++) {
		double t0 = now_ms();
		pid_t pid;
		port = tu_free_port();
		pid = start_worker(port, "cold");
		while (!health_ok(port))
			usleep(200);
		cold[i] = now_ms() - t0;
		tu_stop(pid, 2000);
	}
	report("worker cold start: exec -> first 200 on /health", cold, 5);

	port = tu_free_port();
	pid_t pid = start_worker(port, "w");
	tu_wait_http(port, "/health", 200, 5000);
	fd = kc_connect(port);
	for (int i = 0; i < 300; i++) {
		double t0;
		snprintf(prompt, sizeof prompt, sim_prompt, i);
		snprintf(body, sizeof body, "{\"prompt\": %s}", prompt);
		t0 = now_ms();
		kc_request(fd, "POST", "/prompt", body, NULL);
		rt[i] = now_ms() - t0;
	}
	report("worker POST /prompt round trip (keep-alive)", rt, 300);
	ws = tws_connect(port, "/ws?clientId=bench", 2000);
	ws_wait(ws, "\"sid\"", 2000);
	for (int i = 0; i < 50; i++) {
		double t0;
		/* Let the queue drain so each prompt starts at once. */
		while (kc_request(fd, "GET", "/prompt", NULL, &resp) == 200 && !strstr(resp, "\"queue_remaining\": 0")) {
			free(resp);
			usleep(1000);
		}
		free(resp);
		snprintf(prompt, sizeof prompt, sim_prompt, 1000 + i);
		snprintf(body, sizeof body, "{\"prompt\": %s, \"client_id\": \"bench\"}", prompt);
		t0 = now_ms();
		kc_request(fd, "POST", "/prompt", body, NULL);
		ws_wait(ws, "execution_start", 5000);
		start[i] = now_ms() - t0;
		ws_wait(ws, "\"node\": null", 5000);
	}
	report("worker POST /prompt -> execution_start", start, 50);
	tws_close(ws);
	close(fd);
	tu_stop(pid, 2000);
}

pid_t bench_serve(const char *cfg, int port, const char *data)
{
	char listen[64];
	char *argv[] = {(char *)tu_bin("fnrun"), "serve", "--config", (char *)cfg, "--listen", listen,
			"--data", (char *)data, "--log-level", "warn", NULL};
	pid_t pid;

	snprintf(listen, sizeof listen, "127.0.0.1:%d", port);
	pid = tu_spawn(argv, "/dev/null");
	if (tu_wait_http(port, "/health", 200, 10000) != 0) {
		fprintf(stderr, "bench: fnrun serve did not start with %s\n", cfg);
		exit(1);
	}
	return pid;
}

static pid_t start_gateway(const char *registry, int port, const char *sub)
{
	char cfg[512], data[512];

	snprintf(cfg, sizeof cfg, "%s/%s.yaml", dir, sub);
	tu_write_file(cfg, registry, strlen(registry));
	snprintf(data, sizeof data, "%s/%s-data", dir, sub);
	return bench_serve(cfg, port, data);
}

static const char reg_head[] =
	"server: {limits: {max_queue: 200000}}\n"
	"functions:\n"
	"  Create Image:\n"
	"    params:\n"
	"      prompt: {type: string, required: true}\n"
	"      seed: {type: int, default: random}\n"
	"    qualities:\n"
	"      low: {label: Fast Preview, typical_seconds: [1, 2]}\n"
	"models:\n"
	"  img:\n"
	"    function: Create Image\n"
	"    quality: low\n"
	"    workflow: wf.json\n"
	"    bind: {prompt: \"1.inputs.text\", seed: \"2.inputs.seed\"}\n";

static const char submit_body[] =
	"{\"function\": \"Create Image\", \"params\": {\"prompt\": \"bench\"}}";

/* The sum of a metric's series (labelled or not), or -1 when it has none. */
static long metric(int port, const char *name)
{
	struct tu_resp r;
	long v = -1;
	size_t n = strlen(name);

	if (tu_http(port, "GET", "/metrics", NULL, NULL, 0, &r) == 0) {
		for (char *p = r.body; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
			char *sp;
			if (strncmp(p, name, n) != 0 || (p[n] != ' ' && p[n] != '{'))
				continue;
			sp = strchr(p, ' ');
			if (p[n] == '{')
				sp = strstr(p, "} ") ? strstr(p, "} ") + 1 : NULL;
			if (sp)
				v = (v < 0 ? 0 : v) + atol(sp + 1);
		}
		tu_resp_free(&r);
	}
	return v;
}

static long rss_kb(pid_t pid)
{
	char path[64], line[256];
	long kb = -1;
	FILE *f;

	snprintf(path, sizeof path, "/proc/%d/status", pid);
	f = fopen(path, "r");
	while (f && fgets(line, sizeof line, f))
		if (strncmp(line, "VmRSS:", 6) == 0)
			kb = atol(line + 6);
	if (f)
		fclose(f);
	return kb;
}

static void bench_latency(void)
{
	char reg[4096];
	double lat[200];
	int wport = tu_free_port(), gport = tu_free_port(), fd;
	pid_t w = start_worker(wport, "lat"), g;
	struct tws *obs;

	tu_wait_http(wport, "/health", 200, 5000);
	snprintf(reg, sizeof reg, "%s    runtime: external\n    url: http://127.0.0.1:%d\n", reg_head, wport);
	g = start_gateway(reg, gport, "lat");
	fd = kc_connect(gport);
	obs = tws_connect(wport, "/ws?clientId=observer", 2000);
	ws_wait(obs, "\"sid\"", 2000);
	for (int i = -5; i < 200; i++) {
		double t0 = now_ms();
		kc_request(fd, "POST", "/api/generate", submit_body, NULL);
		/* The worker broadcasts status as soon as it has queued the prompt. */
		ws_wait(obs, "\"queue_remaining\": 1", 5000);
		if (i >= 0)
			lat[i] = now_ms() - t0;
		ws_wait(obs, "\"queue_remaining\": 0", 5000);
		while (metric(gport, "fnrun_jobs_completed_total") < i + 6)
			usleep(200);
	}
	report("gateway submit -> model server has the prompt (warm)", lat, 200);
	tws_close(obs);
	close(fd);
	tu_stop(g, 5000);
	tu_stop(w, 2000);
}

struct submitter {
	int port, n;
};

static void *submit_loop(void *arg)
{
	struct submitter *s = arg;
	int fd = kc_connect(s->port);

	for (int i = 0; i < s->n; i++)
		kc_request(fd, "POST", "/api/generate", submit_body, NULL);
	close(fd);
	return NULL;
}

/* CPU seconds (user + system) the process has used so far, or -1. */
static double cpu_s(pid_t pid)
{
	char path[64], buf[1024], *p;
	unsigned long long ut = 0, st = 0;
	FILE *f;
	size_t n;

	snprintf(path, sizeof path, "/proc/%d/stat", pid);
	f = fopen(path, "r");
	if (f == NULL)
		return -1;
	n = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	buf[n] = '\0';
	p = strrchr(buf, ')'); /* the command may hold spaces; fields follow it */
	if (p == NULL || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu",
				&ut, &st) != 2)
		return -1;
	return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/*
 * Completed zero-time sim jobs per second through `runners` runners, with
 * a durable store, and fnrun's own CPU per job (from /proc: user + system
 * time, its threads included, over the measured window). linked: the
 * model servers write into {outdir}, so outputs are hard-linked into the
 * output store; else each is copied over HTTP (GET /view).
 */
static void bench_throughput(int runners, int jobs, int linked)
{
	char reg[4096], name[16];
	int gport = tu_free_port();
	pthread_t th[4];
	struct submitter s = {gport, jobs / 4};
	double t0, t1, c0, c1;
	const char *how = linked ? "outputs linked ({outdir})" : "outputs copied (GET /view)";
	pid_t g;
	long done;

	snprintf(reg, sizeof reg,
		 "%s    command: [\"{bindir}/fnrun-worker\", --model, sim, --step-ms, \"0\", --cache-none, --log-level, warn, --port, \"{port}\"%s]\n"
		 "    min_instances: %d\n    max_instances: %d\n", reg_head,
		 linked ? ", --output-directory, \"{outdir}\"" : "", runners, runners);
	snprintf(name, sizeof name, "tp%d%s", runners, linked ? "l" : "c");
	g = start_gateway(reg, gport, name);
	/* Warm: every runner started and one job through. */
	submit_loop(&(struct submitter){gport, runners});
	while (metric(gport, "fnrun_jobs_completed_total") < runners)
		usleep(1000);
	t0 = now_ms();
	c0 = cpu_s(g);
	for (int i = 0; i < 4; i++)
		pthread_create(&th[i], NULL, submit_loop, &s);
	for (int i = 0; i < 4; i++)
		pthread_join(th[i], NULL);
	t1 = now_ms();
	do {
		usleep(2000);
		done = metric(gport, "fnrun_jobs_completed_total");
	} while (done < runners + 4L * s.n && now_ms() - t0 < 120000);
	c1 = cpu_s(g);
	printf("gateway submit rate, %d runners: %d jobs in %.0f ms = %.0f submits/s\n", runners,
	       4 * s.n, t1 - t0, 4 * s.n * 1000.0 / (t1 - t0));
	printf("gateway throughput, zero-time sim jobs, %d runners, %s: %.0f jobs/s (%ld in %.0f ms), RSS %ld MB\n",
	       runners, how, (done - runners) * 1000.0 / (now_ms() - t0), done - runners,
	       now_ms() - t0, rss_kb(g) / 1024);
	printf("gateway CPU per job, %d runners, %s: %.3f ms (user + system, all threads)\n", runners,
	       how, (c1 - c0) * 1000.0 / (double)(done - runners));
	tu_stop(g, 5000);
}

static void bench_rss(int jobs)
{
	char reg[4096];
	int gport = tu_free_port();
	pthread_t th[4];
	struct submitter s = {gport, jobs / 4};
	pid_t g;
	long idle;

	/* A model that never becomes ready: every job stays queued. */
	snprintf(reg, sizeof reg, "%s    command: [/bin/sleep, \"3600\", \"{port}\"]\n    start_timeout: 1h\n",
		 reg_head);
	g = start_gateway(reg, gport, "rss");
	idle = rss_kb(g);
	for (int i = 0; i < 4; i++)
		pthread_create(&th[i], NULL, submit_loop, &s);
	for (int i = 0; i < 4; i++)
		pthread_join(th[i], NULL);
	printf("gateway RSS: idle %ld MB, with %ld queued jobs %ld MB\n", idle / 1024,
	       metric(gport, "fnrun_jobs_queued"), rss_kb(g) / 1024);
	tu_stop(g, 5000);
}

/* The value of "key": "..." in text after `from`, copied into out. */
static int field(const char *text, const char *key, char *out, size_t n)
{
	char pat[64];
	const char *p, *e;

	snprintf(pat, sizeof pat, "\"%s\": \"", key);
	p = strstr(text, pat);
	if (p == NULL)
		return -1;
	p += strlen(pat);
	e = strchr(p, '"');
	snprintf(out, n, "%.*s", (int)(e - p), p);
	return 0;
}

static char *get_body(int port, const char *path)
{
	struct tu_resp r;
	char *b;

	if (tu_http(port, "GET", path, NULL, NULL, 0, &r) != 0)
		return strdup("");
	b = strdup(r.body);
	tu_resp_free(&r);
	return b;
}

static char *post_body(int port, const char *path, const char *body)
{
	struct tu_resp r;
	char *b;

	if (tu_http(port, "POST", path, "application/json", body, strlen(body), &r) != 0)
		return strdup("");
	b = strdup(r.body);
	tu_resp_free(&r);
	return b;
}

/* Polls path until its body contains want; returns ms waited or -1. */
double bench_poll(int port, const char *path, const char *want, double limit_ms)
{
	double t0 = now_ms();

	while (now_ms() - t0 < limit_ms) {
		char *b = get_body(port, path);
		int hit = strstr(b, want) != NULL;
		free(b);
		if (hit)
			return now_ms() - t0;
		usleep(200);
	}
	return -1;
}

static const char two_models[] =
	"server: {gpu: {vram: 8GB}}\n"
	"functions:\n"
	"  Create Image:\n"
	"    params:\n"
	"      prompt: {type: string, required: true}\n"
	"      seed: {type: int, default: random}\n"
	"    qualities:\n"
	"      low: {label: Fast Preview, typical_seconds: [1, 2]}\n"
	"      high: {label: Maximum Detail, typical_seconds: [1, 2]}\n"
	"models:\n"
	"  a:\n"
	"    function: Create Image\n"
	"    quality: low\n"
	"    command: [\"{bindir}/fnrun-worker\", --model, sim, --step-ms, \"%s\", --log-level, warn, --port, \"{port}\"]\n"
	"    workflow: wf.json\n"
	"    bind: {prompt: \"1.inputs.text\", seed: \"2.inputs.seed\"}\n"
	"    resources: {gpu_memory: 6GB}\n"
	"  b:\n"
	"    function: Create Image\n"
	"    quality: high\n"
	"    command: [\"{bindir}/fnrun-worker\", --model, sim, --step-ms, \"0\", --log-level, warn, --port, \"{port}\"]\n"
	"    workflow: wf.json\n"
	"    bind: {prompt: \"1.inputs.text\", seed: \"2.inputs.seed\"}\n"
	"    resources: {gpu_memory: 6GB}\n";

static void bench_lifecycle(void)
{
	char reg[4096], id[64], path[128], pid[16], started[40], *b;
	double cold[5], crash[5], swap[5];
	int gport = tu_free_port();
	pid_t g;

	snprintf(reg, sizeof reg, two_models, "40");
	g = start_gateway(reg, gport, "life");
	/* Cold start of a process runner: POST start -> runner ready. */
	for (int i = 0; i < 5; i++) {
		double t0 = now_ms();
		free(post_body(gport, "/api/admin/models/b/start", ""));
		bench_poll(gport, "/api/admin/runners", "\"state\": \"ready\"", 10000);
		cold[i] = now_ms() - t0;
		free(post_body(gport, "/api/admin/models/b/drain", ""));
		bench_poll(gport, "/api/admin/runners", "\"runners\": []", 10000);
	}
	/* Leave b allowed again, with an idle runner for a's first job to evict. */
	free(post_body(gport, "/api/admin/models/b/start", ""));
	bench_poll(gport, "/api/admin/runners", "\"state\": \"ready\"", 10000);
	report("process runner (sim) cold start: start -> ready", cold, 5);
	/* Swap: a job for b while a holds the only room, a busy-free eviction. */
	for (int i = 0; i < 5; i++) {
		double t0;
		b = post_body(gport, "/api/generate", "{\"function\": \"Create Image\", \"quality\": \"low\", \"params\": {\"prompt\": \"a\"}}");
		field(b, "job_id", id, sizeof id);
		free(b);
		snprintf(path, sizeof path, "/api/jobs/%s", id);
		bench_poll(gport, path, "\"completed\"", 20000);
		t0 = now_ms();
		b = post_body(gport, "/api/generate", "{\"function\": \"Create Image\", \"quality\": \"high\", \"params\": {\"prompt\": \"b\"}}");
		field(b, "job_id", id, sizeof id);
		free(b);
		snprintf(path, sizeof path, "/api/jobs/%s", id);
		bench_poll(gport, path, "\"status\": \"running\"", 20000);
		swap[i] = now_ms() - t0;
		bench_poll(gport, path, "\"completed\"", 20000);
	}
	report("swap: submit for a model that must evict another -> running", swap, 5);
	/* Crash: kill -9 the model server mid-job -> the job running again. */
	for (int i = 0; i < 5; i++) {
		double t0;
		b = post_body(gport, "/api/generate", "{\"function\": \"Create Image\", \"quality\": \"low\", \"params\": {\"prompt\": \"c\"}}");
		field(b, "job_id", id, sizeof id);
		free(b);
		snprintf(path, sizeof path, "/api/jobs/%s", id);
		bench_poll(gport, path, "\"status\": \"running\"", 20000);
		b = get_body(gport, path);
		field(b, "started_at", started, sizeof started);
		free(b);
		b = get_body(gport, "/api/admin/runners");
		{
			char *p = strstr(b, "\"model\": \"a\"");
			char *q = p ? strstr(p, "\"pid\": ") : NULL;
			snprintf(pid, sizeof pid, "%d", q ? atoi(q + 7) : 0);
		}
		free(b);
		t0 = now_ms();
		if (atoi(pid) > 0)
			kill(atoi(pid), SIGKILL);
		for (;;) {
			char now_started[40] = "";
			b = get_body(gport, path);
			field(b, "started_at", now_started, sizeof now_started);
			int again = strstr(b, "\"status\": \"running\"") && strcmp(now_started, started) != 0;
			int done = strstr(b, "\"completed\"") != NULL || strstr(b, "\"failed\"") != NULL;
			free(b);
			if (again || done || now_ms() - t0 > 20000)
				break;
			usleep(200);
		}
		crash[i] = now_ms() - t0;
		bench_poll(gport, path, "\"completed\"", 20000);
	}
	report("crash: kill -9 of a busy model server -> job running again", crash, 5);
	tu_stop(g, 5000);
}

/*
 * Estimates on a mixed workload: image jobs on two tiers of different
 * speed and speech jobs of different lengths, one at a time. For each job
 * the eta_seconds answered at submit is compared with the time it took.
 */
static const char sim_est[] =
	"{\"1\": {\"class_type\": \"SimTextEncode\", \"inputs\": {\"text\": \"x\"}},"
	" \"2\": {\"class_type\": \"SimSampler\", \"inputs\": {\"conditioning\": [\"1\", 0],"
	" \"seed\": 1, \"steps\": 8, \"width\": 64, \"height\": 64, \"step_ms\": -1, \"fail\": \"none\"}},"
	" \"3\": {\"class_type\": \"SaveImage\", \"inputs\": {\"images\": [\"2\", 0], \"filename_prefix\": \"e\"}}}";

static const char speech_wf[] =
	"{\"1\": {\"class_type\": \"EspeakTTS\", \"inputs\": {\"text\": \"x\", \"voice\": \"en\","
	" \"speed\": 175, \"pitch\": 50}}}";

static void bench_estimates(void)
{
	char reg[4096], id[64], path[512], body[1024], *b;
	double err_first[8], err_later[24], rel[24];
	int gport = tu_free_port(), nf = 0, nl = 0, nr = 0;
	unsigned seed = 7;
	pid_t g;

	snprintf(reg, sizeof reg,
		 "functions:\n"
		 "  Create Image:\n"
		 "    params: {prompt: {type: string, required: true}, seed: {type: int, default: random}}\n"
		 "    qualities:\n"
		 "      low: {label: Fast Preview, typical_seconds: [1, 3]}\n"
		 "      high: {label: Maximum Detail, typical_seconds: [2, 6]}\n"
		 "  Create Speech:\n"
		 "    output: audio\n"
		 "    params: {text: {type: string, required: true}}\n"
		 "    qualities:\n"
		 "      low: {label: Fast Preview, typical_seconds: [1, 3]}\n"
		 "models:\n"
		 "  fast: {function: Create Image, quality: low, workflow: est.json, bind: {prompt: \"1.inputs.text\", seed: \"2.inputs.seed\"},\n"
		 "         command: [\"{bindir}/fnrun-worker\", --model, sim, --step-ms, \"150\", --log-level, warn, --port, \"{port}\"]}\n"
		 "  slow: {function: Create Image, quality: high, workflow: est.json, bind: {prompt: \"1.inputs.text\", seed: \"2.inputs.seed\"},\n"
		 "         command: [\"{bindir}/fnrun-worker\", --model, sim, --step-ms, \"400\", --log-level, warn, --port, \"{port}\"]}\n"
		 "  speech: {function: Create Speech, quality: low, workflow: speech.json, bind: {text: \"1.inputs.text\"},\n"
		 "           command: [\"{bindir}/fnrun-worker\", --model, exec, --config, \"%s/examples/worker-espeak.yaml\", --log-level, warn, --port, \"{port}\"]}\n",
		 getenv("FNRUN_ROOT") ? getenv("FNRUN_ROOT") : ".");
	snprintf(path, sizeof path, "%s/est.json", dir);
	tu_write_file(path, sim_est, strlen(sim_est));
	snprintf(path, sizeof path, "%s/speech.json", dir);
	tu_write_file(path, speech_wf, strlen(speech_wf));
	g = start_gateway(reg, gport, "est");
	for (int i = 0; i < 32; i++) {
		double t0, took, eta;
		int kind = (int)((seed = seed * 1103515245u + 12345u) >> 16) % 3;
		int words = 5 + (int)((seed >> 8) % 60);
		if (kind == 2) {
			char text[800];
			/* Unique texts: a repeated one would come from the model server's cache. */
			int n = snprintf(text, sizeof text, "job %d ", i);
			for (int w = 0; w < words && n < 700; w++)
				n += snprintf(text + n, sizeof text - (size_t)n, "lighthouse ");
			snprintf(body, sizeof body, "{\"function\": \"Create Speech\", \"params\": {\"text\": \"%s\"}}", text);
		} else {
			snprintf(body, sizeof body, "{\"function\": \"Create Image\", \"quality\": \"%s\", \"params\": {\"prompt\": \"p%d\"}}",
				 kind ? "high" : "low", i);
		}
		t0 = now_ms();
		b = post_body(gport, "/api/generate", body);
		field(b, "job_id", id, sizeof id);
		eta = strstr(b, "\"eta_seconds\": ") ? atof(strstr(b, "\"eta_seconds\": ") + 15) : -1;
		free(b);
		snprintf(path, sizeof path, "/api/jobs/%s", id);
		bench_poll(gport, path, "\"completed\"", 30000);
		took = (now_ms() - t0) / 1000.0;
		if (getenv("BENCH_VERBOSE"))
			fprintf(stderr, "job %d kind %d eta %.0f s took %.2f s\n", i, kind, eta, took);
		/* eta_seconds is whole seconds: compare in seconds, and in % for jobs over 1 s. */
		if (i < 8)
			err_first[nf++] = eta > took ? eta - took : took - eta;
		else
			err_later[nl++] = eta > took ? eta - took : took - eta;
		if (i >= 8 && took >= 1.0)
			rel[nr++] = 100.0 * (eta > took ? eta - took : took - eta) / took;
	}
	printf("%-58s p50 %5.2f s  p90 %5.2f s\n", "estimate error, first 8 jobs (typical_seconds)",
	       pct(err_first, nf, 0.5), pct(err_first, nf, 0.9));
	printf("%-58s p50 %5.2f s  p90 %5.2f s\n", "estimate error, next 24 jobs (learned)",
	       pct(err_later, nl, 0.5), pct(err_later, nl, 0.9));
	if (nr > 0)
		printf("%-58s p50 %5.0f %%  p90 %5.0f %%  (n=%d)\n", "estimate error, learned, jobs over 1 s",
		       pct(rel, nr, 0.5), pct(rel, nr, 0.9), nr);
	tu_stop(g, 5000);
}

/* BENCH=name,name runs only those parts (worker, latency, lifecycle, docker, estimates, throughput, rss, metrics, adoption, cluster). */
static int wanted(const char *name)
{
	const char *only = getenv("BENCH");

	return only == NULL || *only == '\0' || strstr(only, name) != NULL;
}

int main(void)
{
	char wf[512];
	static const char workflow[] =
		"{\"1\": {\"class_type\": \"SimTextEncode\", \"inputs\": {\"text\": \"x\"}},"
		" \"2\": {\"class_type\": \"SimSampler\", \"inputs\": {\"conditioning\": [\"1\", 0],"
		" \"seed\": 1, \"steps\": 1, \"width\": 64, \"height\": 64, \"step_ms\": 0, \"fail\": \"none\"}},"
		" \"3\": {\"class_type\": \"SaveImage\", \"inputs\": {\"images\": [\"2\", 0], \"filename_prefix\": \"b\"}}}";

	signal(SIGPIPE, SIG_IGN);
	setvbuf(stdout, NULL, _IOLBF, 0);
	snprintf(dir, sizeof dir, "%s", tu_tmpdir());
	snprintf(wf, sizeof wf, "%s/wf.json", dir);
	tu_write_file(wf, workflow, strlen(workflow));
	printf("fnrun bench (%s), %ld cores\n", tu_bindir(), sysconf(_SC_NPROCESSORS_ONLN));
	if (wanted("worker"))
		bench_worker();
	if (wanted("latency"))
		bench_latency();
	if (wanted("lifecycle"))
		bench_lifecycle();
	if (wanted("docker"))
		bench_docker();
	if (wanted("estimates"))
		bench_estimates();
	if (wanted("throughput")) {
		for (int linked = 0; linked < 2; linked++) {
			bench_throughput(2, 8000, linked);
			bench_throughput(4, 8000, linked);
		}
	}
	if (wanted("rss"))
		bench_rss(10000);
	if (wanted("metrics"))
		bench_metrics();
	if (wanted("adoption"))
		bench_adoption();
	if (wanted("cluster"))
		bench_cluster(dir);
	tu_rmrf(dir);
	return 0;
}
