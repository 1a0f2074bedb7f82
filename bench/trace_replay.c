/*
 * trace_replay.c - make trace-bench: a usage trace (trace_gen.c) replayed
 * in compressed time against three gateways at once, one per policy:
 *
 *   idle_stop   on demand, stopped after idle_timeout (5 min), the default
 *   always_warm min_instances: 1 for every model
 *   predictive  prewarm: true and target_wait: 30s (prewarm.h)
 *
 * Each gateway runs `fnrun serve --time-scale 1/SPEEDUP`, its models sim
 * model servers whose load time (--load-ms) and run time (--step-ms) are
 * the trace's (trace.h) divided by SPEEDUP; all times reported are trace
 * time (real time x SPEEDUP). A job "waited for a cold start" when it
 * waited at least half its model's load time from submit to start (the
 * sim runs are short, and max_instances 2 leaves little queueing).
 * GPU-memory-seconds: the gateway's reserved GPU memory
 * (GET /api/admin/models, "gpus") polled every POLL_MS, integrated.
 *
 * Usage: trace bench            (TRACE_DAYS, TRACE_SPEEDUP, TRACE_SEED, TRACE_SESSIONS)
 *        trace gen SEED DAYS FILE
 */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"
#include "trace.h"

#define POLL_MS 50
#define GB (1024.0 * 1024 * 1024)

enum { IDLE_STOP, ALWAYS_WARM, PREDICTIVE, NPOLICIES };
static const char *const policy_names[NPOLICIES] = {"idle_stop", "always_warm", "predictive"};

struct result {
	long jobs, done, failed, cold;
	double p50_s, p95_s, gpu_gb_s;
	double day_last_cold_share; /* the last day alone */
};

static double speedup = 360;
static char dir[512];

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1000 + (double)ts.tv_nsec / 1e6;
}

static void sleep_until(double t)
{
	double d = t - now_ms();

	if (d > 0)
		usleep((useconds_t)(d * 1000));
}

/* ---- the gateway of one policy ---- */

static void write_registry(int policy, const char *path)
{
	FILE *f = fopen(path, "w");

	if (f == NULL) {
		perror(path);
		exit(1);
	}
	fprintf(f, "server: {gpu: {vram: 64GB}, limits: {max_queue: 100000}}\n"
		   "functions:\n");
	fprintf(f, "  Create Image:\n    params: {prompt: {type: string, required: true}}\n"
		   "    qualities:\n      low: {label: Fast Preview, typical_seconds: [5, 10]}\n"
		   "      high: {label: Maximum Detail, typical_seconds: [10, 20]}\n");
	fprintf(f, "  Create Video:\n    params: {prompt: {type: string, required: true}}\n"
		   "    qualities:\n      low: {label: Fast Preview, typical_seconds: [10, 30]}\n");
	fprintf(f, "  Create Speech:\n    params: {prompt: {type: string, required: true}}\n"
		   "    qualities:\n      low: {label: Fast Preview, typical_seconds: [2, 5]}\n");
	fprintf(f, "models:\n");
	for (int i = 0; i < TRACE_NFN; i++) {
		const struct trace_fn *t = &trace_functions[i];
		fprintf(f,
			"  %s:\n    function: %s\n    quality: %s\n    workflow: wf.json\n"
			"    bind: {prompt: \"1.inputs.text\"}\n"
			"    command: [\"{bindir}/fnrun-worker\", --model, sim, --load-ms, \"%d\", "
			"--step-ms, \"%d\", --log-level, warn, --port, \"{port}\"]\n"
			"    resources: {gpu_memory: %dGB}\n    idle_timeout: 5m\n"
			"    start_timeout: 2h\n    step_timeout: 2h\n    max_instances: 2\n",
			t->model, t->name, t->quality, (int)(t->load_s * 1000 / speedup) + 1,
			(int)(t->run_s * 1000 / speedup / 4) + 1, t->gpu_gb);
		if (policy == ALWAYS_WARM)
			fprintf(f, "    min_instances: 1\n");
		if (policy == PREDICTIVE)
			fprintf(f, "    prewarm: true\n    target_wait: 30s\n");
	}
	fclose(f);
}

static pid_t serve(int policy, int port)
{
	char sub[600], cfg[700], data[700], wf[700], listen[64], scale[32], logp[700];
	static const char workflow[] =
		"{\"1\": {\"class_type\": \"SimTextEncode\", \"inputs\": {\"text\": \"x\"}},"
		" \"2\": {\"class_type\": \"SimSampler\", \"inputs\": {\"conditioning\": [\"1\", 0],"
		" \"seed\": 1, \"steps\": 4, \"width\": 64, \"height\": 64, \"step_ms\": -1,"
		" \"fail\": \"none\"}},"
		" \"3\": {\"class_type\": \"SaveImage\", \"inputs\": {\"images\": [\"2\", 0],"
		" \"filename_prefix\": \"t\"}}}";
	pid_t pid;

	snprintf(sub, sizeof sub, "%s/%s", dir, policy_names[policy]);
	mkdir(sub, 0755);
	snprintf(cfg, sizeof cfg, "%s/registry.yaml", sub);
	snprintf(wf, sizeof wf, "%s/wf.json", sub);
	snprintf(data, sizeof data, "%s/data", sub);
	snprintf(logp, sizeof logp, "%s/fnrun.log", sub);
	snprintf(listen, sizeof listen, "127.0.0.1:%d", port);
	snprintf(scale, sizeof scale, "%.9f", 1.0 / speedup);
	tu_write_file(wf, workflow, strlen(workflow));
	write_registry(policy, cfg);
	{
		char *argv[] = {(char *)tu_bin("fnrun"), "serve", "--config", cfg, "--listen", listen,
				"--data", data, "--time-scale", scale, "--log-level", "info", NULL};
		pid = tu_spawn(argv, logp);
	}
	if (tu_wait_http(port, "/health", 200, 20000) != 0) {
		fprintf(stderr, "trace: fnrun serve did not start (%s)\n", logp);
		exit(1);
	}
	return pid;
}

/* ---- GPU memory held, polled ---- */

struct poller {
	int port;
	volatile int stop;
	double gb_s; /* trace-time GB-seconds */
};

static double reserved_gb(int port)
{
	struct tu_resp r;
	double sum = 0;
	const char *p;

	if (tu_http(port, "GET", "/api/admin/models", NULL, NULL, 0, &r) != 0 || r.status != 200) {
		tu_resp_free(&r);
		return -1;
	}
	p = strstr(r.body, "\"gpus\"");
	while (p && (p = strstr(p, "\"reserved\":")) != NULL) {
		p += strlen("\"reserved\":");
		sum += strtod(p, NULL);
	}
	tu_resp_free(&r);
	return sum / GB;
}

static void *poll_loop(void *arg)
{
	struct poller *pl = arg;
	double last = now_ms(), gb = 0;

	while (!pl->stop) {
		double g = reserved_gb(pl->port), t;
		usleep(POLL_MS * 1000);
		t = now_ms();
		if (g >= 0)
			gb = g;
		pl->gb_s += gb * (t - last) / 1000.0 * speedup;
		last = t;
	}
	return NULL;
}

/* ---- replay and measure ---- */

static int submit(int port, const struct trace_job *j, char id[40])
{
	const struct trace_fn *t = &trace_functions[j->fn];
	char body[512];
	struct tu_resp r;
	const char *p;
	int ok;

	snprintf(body, sizeof body,
		 "{\"function\": \"%s\", \"quality\": \"%s\", \"params\": {\"prompt\": \"trace\"}, "
		 "\"user\": \"u%d\"}", t->name, t->quality, j->user);
	if (tu_http(port, "POST", "/api/generate", "application/json", body, strlen(body), &r) != 0)
		return -1;
	p = r.status == 202 ? strstr(r.body, "\"job_id\":") : NULL;
	ok = p && sscanf(p, "\"job_id\": \"%32[0-9a-f]\"", id) == 1;
	if (!ok && p)
		ok = sscanf(p, "\"job_id\":\"%32[0-9a-f]\"", id) == 1;
	tu_resp_free(&r);
	return ok ? 0 : -1;
}

static double iso_ms(const char *body, const char *key)
{
	char pat[64];
	const char *p;
	struct tm tm = {0};
	int ms = 0;

	snprintf(pat, sizeof pat, "\"%s\":", key);
	p = strstr(body, pat);
	if (p == NULL)
		return -1;
	p += strlen(pat);
	while (*p == ' ' || *p == '"')
		p++;
	if (sscanf(p, "%d-%d-%dT%d:%d:%d.%dZ", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
		   &tm.tm_min, &tm.tm_sec, &ms) < 6)
		return -1;
	tm.tm_year -= 1900;
	tm.tm_mon -= 1;
	return (double)timegm(&tm) * 1000 + ms;
}

/* The job's wait from submit to start, trace seconds; -1 when it did not complete. */
static double job_wait_s(int port, const char *id, int *failed)
{
	char path[128];
	struct tu_resp r;
	double w = -1;
	double deadline = now_ms() + 120000;

	*failed = 0;
	snprintf(path, sizeof path, "/api/jobs/%s", id);
	for (;;) {
		if (tu_http(port, "GET", path, NULL, NULL, 0, &r) != 0)
			return -1;
		if (strstr(r.body, "\"completed\"") || strstr(r.body, "\"failed\"") ||
		    strstr(r.body, "\"cancelled\"") || now_ms() > deadline)
			break;
		tu_resp_free(&r);
		usleep(20000);
	}
	if (strstr(r.body, "\"status\": \"completed\"") || strstr(r.body, "\"status\":\"completed\"")) {
		double c = iso_ms(r.body, "created_at"), s = iso_ms(r.body, "started_at");
		if (c > 0 && s > 0)
			w = (s - c) / 1000.0 * speedup;
	} else {
		*failed = 1;
	}
	tu_resp_free(&r);
	return w;
}

static int cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static void replay(int policy, const struct trace_job *v, long n, struct result *res)
{
	int port = tu_free_port();
	pid_t g = serve(policy, port);
	struct poller pl = {.port = port};
	pthread_t th;
	char (*ids)[40] = calloc((size_t)n, 40);
	double *waits = calloc((size_t)n, sizeof *waits), t0;
	int64_t last_day = (v[n - 1].at_ms / 86400000) * 86400000;
	long last_n = 0, last_cold = 0;

	memset(res, 0, sizeof *res);
	pthread_create(&th, NULL, poll_loop, &pl);
	t0 = now_ms();
	for (long i = 0; i < n; i++) {
		sleep_until(t0 + (double)v[i].at_ms / speedup);
		if (submit(port, &v[i], ids[i]) < 0)
			ids[i][0] = '\0';
	}
	for (long i = 0; i < n; i++) {
		int failed = 0;
		double w = ids[i][0] ? job_wait_s(port, ids[i], &failed) : -1;
		const struct trace_fn *t = &trace_functions[v[i].fn];
		res->jobs++;
		if (w < 0) {
			res->failed++;
			continue;
		}
		waits[res->done++] = w;
		if (w >= 0.5 * t->load_s) {
			res->cold++;
			last_cold += v[i].at_ms >= last_day;
		}
		last_n += v[i].at_ms >= last_day;
	}
	pl.stop = 1;
	pthread_join(th, NULL);
	res->gpu_gb_s = pl.gb_s;
	qsort(waits, (size_t)res->done, sizeof *waits, cmp_d);
	if (res->done > 0) {
		res->p50_s = waits[(res->done - 1) / 2];
		res->p95_s = waits[(long)((double)(res->done - 1) * 0.95)];
	}
	res->day_last_cold_share = last_n ? (double)last_cold / (double)last_n : 0;
	tu_stop(g, 10000);
	free(ids);
	free(waits);
}

/* Memory the replaying children write their results into. */
static void *mmap_shared(size_t n)
{
	void *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED) {
		perror("mmap");
		exit(1);
	}
	memset(p, 0, n);
	return p;
}

static double env_num(const char *name, double def)
{
	const char *v = getenv(name);

	return v && *v ? atof(v) : def;
}

static void report(const struct result *r)
{
	printf("%-12s %6s %6s %8s %8s %8s %8s %14s\n", "policy", "jobs", "failed", "cold", "cold_d2",
	       "p50_s", "p95_s", "gpu_GB_s");
	for (int p = 0; p < NPOLICIES; p++)
		printf("%-12s %6ld %6ld %7.1f%% %7.1f%% %8.1f %8.1f %14.0f\n", policy_names[p],
		       r[p].jobs, r[p].failed, r[p].done ? 100.0 * r[p].cold / r[p].done : 0,
		       100.0 * r[p].day_last_cold_share, r[p].p50_s, r[p].p95_s, r[p].gpu_gb_s);
	if (r[IDLE_STOP].cold > 0 && r[IDLE_STOP].gpu_gb_s > 0)
		printf("predictive vs idle_stop: cold-start waits x%.2f (goal <= 0.5), "
		       "GPU-memory-seconds x%.2f (goal <= 1.3)\n",
		       (double)r[PREDICTIVE].cold / (double)r[IDLE_STOP].cold,
		       r[PREDICTIVE].gpu_gb_s / r[IDLE_STOP].gpu_gb_s);
}

static int bench(void)
{
	int days = (int)env_num("TRACE_DAYS", 2);
	uint64_t seed = (uint64_t)env_num("TRACE_SEED", 42);
	char path[600];
	struct trace_job *v;
	struct result *res;
	pid_t kids[NPOLICIES];
	long n;
	FILE *f;

	speedup = env_num("TRACE_SPEEDUP", 360);
	snprintf(dir, sizeof dir, "%s", tu_tmpdir());
	snprintf(path, sizeof path, "%s/trace.txt", dir);
	f = fopen(path, "w");
	trace_gen(seed, days, env_num("TRACE_SESSIONS", 300), f);
	fclose(f);
	n = trace_read(path, &v);
	if (n <= 0) {
		fprintf(stderr, "trace: empty trace\n");
		return 1;
	}
	printf("trace-bench: %ld jobs over %d days (seed %llu), replayed at %.0fx "
	       "(a day in %.0f s), three policies at once; times in trace seconds\n",
	       n, days, (unsigned long long)seed, speedup, 86400.0 / speedup);
	res = mmap_shared(NPOLICIES * sizeof *res);
	for (int p = 0; p < NPOLICIES; p++) {
		kids[p] = fork();
		if (kids[p] == 0) {
			replay(p, v, n, &res[p]);
			_exit(0);
		}
	}
	for (int p = 0; p < NPOLICIES; p++)
		waitpid(kids[p], NULL, 0);
	report(res);
	printf("logs: %s/<policy>/fnrun.log (kept when TRACE_KEEP=1)\n", dir);
	if (!getenv("TRACE_KEEP"))
		tu_rmrf(dir);
	free(v);
	return 0;
}

int main(int argc, char **argv)
{
	signal(SIGPIPE, SIG_IGN);
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc == 5 && strcmp(argv[1], "gen") == 0) {
		FILE *f = fopen(argv[4], "w");
		long n;
		if (f == NULL) {
			perror(argv[4]);
			return 1;
		}
		n = trace_gen(strtoull(argv[2], NULL, 10), atoi(argv[3]), env_num("TRACE_SESSIONS", 300), f);
		fclose(f);
		printf("%ld jobs written to %s\n", n, argv[4]);
		return 0;
	}
	if (argc == 2 && strcmp(argv[1], "bench") == 0)
		return bench();
	fprintf(stderr, "usage: trace bench | trace gen SEED DAYS FILE\n");
	return 2;
}
