/*
 * bench_metrics.c - `make bench`: what a /metrics scrape costs with 100
 * models and 10,000 jobs in the system (the target: under 5 ms).
 *
 * 1. A real `fnrun serve` with 100 models (50 functions x 2 qualities)
 *    whose model servers never become ready, and 10,000 queued jobs:
 *    GET /metrics, each on a new connection: connect and round trip.
 * 2. metrics_render() in this process with every counter and histogram
 *    family populated for 100 models (what the gateway holds after it has
 *    served them all: completions, failures by code, retries, fallbacks,
 *    evictions, five histograms per tier or model).
 * Prints; asserts nothing.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "metrics.h"
#include "bench.h"
#include "testutil.h"

#define MODELS 100
#define JOBS 10000
#define SCRAPES 200


static void print(const char *what, double *v, int n, size_t bytes)
{
	bench_sort(v, n);
	printf("%-58s p50 %7.3f ms  p99 %7.3f ms  (n=%d, %zu KB)\n", what, v[n / 2],
	       v[(int)((n - 1) * 0.99 + 0.5)], n, bytes / 1024);
}

/* 50 functions x qualities low and standard, one model each; the model never gets ready. */
static char *registry(void)
{
	struct buf b;

	buf_init(&b, 1u << 20);
	buf_puts(&b, "server: {limits: {max_queue: 200000}}\nfunctions:\n");
	for (int f = 0; f < MODELS / 2; f++)
		buf_printf(&b, "  F%02d:\n    params:\n      prompt: {type: string, required: true}\n"
			       "    qualities:\n      low: {label: Fast, typical_seconds: [1, 2]}\n"
			       "      standard: {label: Balanced, typical_seconds: [2, 4]}\n", f);
	buf_puts(&b, "models:\n");
	for (int m = 0; m < MODELS; m++)
		buf_printf(&b, "  model_%03d:\n    function: F%02d\n    quality: %s\n"
			       "    command: [/bin/sleep, \"3600\", \"{port}\"]\n    start_timeout: 1h\n"
			       "    workflow: wf.json\n    bind: {prompt: \"1.inputs.text\"}\n",
			   m, m / 2, m % 2 ? "standard" : "low");
	return buf_steal(&b);
}

static void bench_gateway(const char *dir) /* under 600 bytes */
{
	char cfg[700], data[700], listen[64], body[256], *reg = registry();
	char *argv[] = {strdup(tu_bin("fnrun")), "serve", "--config", cfg, "--listen", listen,
			"--data", data, "--log-level", "warn", NULL};
	static const char wf[] = "{\"1\": {\"class_type\": \"SimTextEncode\", \"inputs\": {\"text\": \"x\"}}}";
	double t[SCRAPES];
	size_t bytes = 0;
	int port = tu_free_port(), ok = 0;
	pid_t pid;

	snprintf(cfg, sizeof cfg, "%.600s/wf.json", dir);
	tu_write_file(cfg, wf, strlen(wf));
	snprintf(cfg, sizeof cfg, "%.600s/registry.yaml", dir);
	tu_write_file(cfg, reg, strlen(reg));
	free(reg);
	snprintf(data, sizeof data, "%.600s/data", dir);
	snprintf(listen, sizeof listen, "127.0.0.1:%d", port);
	pid = tu_spawn(argv, "/dev/null");
	if (tu_wait_http(port, "/health", 200, 10000) != 0) {
		fprintf(stderr, "bench: fnrun serve did not start with %s\n", cfg);
		tu_stop(pid, 2000);
		return;
	}
	for (int i = 0; i < JOBS; i++) {
		struct tu_resp r;
		snprintf(body, sizeof body,
			 "{\"function\": \"F%02d\", \"quality\": \"%s\", \"params\": {\"prompt\": \"b\"}}",
			 (i % MODELS) / 2, i % 2 ? "standard" : "low");
		if (tu_http(port, "POST", "/api/generate", "application/json", body, strlen(body),
			    &r) == 0) {
			ok += r.status == 202;
			tu_resp_free(&r);
		}
	}
	for (int i = 0; i < SCRAPES; i++) {
		struct tu_resp r;
		double t0 = bench_now_ms();
		if (tu_http(port, "GET", "/metrics", NULL, NULL, 0, &r) < 0)
			break;
		t[i] = bench_now_ms() - t0;
		bytes = r.len;
		tu_resp_free(&r);
	}
	printf("gateway: %d models, %d jobs queued\n", MODELS, ok);
	print("GET /metrics, 100 models, 10,000 jobs (connect + round trip)", t, SCRAPES, bytes);
	tu_stop(pid, 5000);
}

/* Every family populated for 100 models, as after a long day. */
static void populate(void)
{
	static const char *codes[] = {"OUT_OF_MEMORY", "MODEL_UNAVAILABLE", "INTERNAL"};
	static const char *statuses[] = {"completed", "failed", "cancelled"};
	char fn[16], model[16], fb[16];

	metrics_reset();
	for (int m = 0; m < MODELS; m++) {
		struct metrics_labels l = {.function = fn, .quality = m % 2 ? "standard" : "low",
					   .model = model, .fallback = fb};
		snprintf(fn, sizeof fn, "F%02d", m / 2);
		snprintf(model, sizeof model, "model_%03d", m);
		snprintf(fb, sizeof fb, "model_%03d", m ^ 1);
		for (int c = 0; c < MC_STORE_COMMITS; c++)
			metrics_inc(c, &l, 7);
		for (int i = 0; i < 3; i++) {
			l.code = codes[i];
			metrics_inc(MC_JOBS_FAILED, &l, 1);
			l.status = statuses[i];
			metrics_observe(MH_END_TO_END, &l, 0.5 * (i + 1));
		}
		for (int h = 0; h < MH_STORE_COMMIT; h++)
			metrics_observe(h, &l, 0.25);
	}
}

static void bench_render(void)
{
	double t[SCRAPES];
	struct buf b;
	size_t bytes = 0;

	populate();
	for (int i = 0; i < SCRAPES; i++) {
		double t0 = bench_now_ms();
		buf_init(&b, 16u << 20);
		metrics_render(&b);
		t[i] = bench_now_ms() - t0;
		bytes = b.len;
		buf_cleanup(&b);
	}
	printf("metrics.c: %zu series for %d models\n", metrics_series(), MODELS);
	print("metrics_render(), every family for 100 models", t, SCRAPES, bytes);
}

void bench_metrics(void)
{
	char dir[600];

	snprintf(dir, sizeof dir, "%s/metrics", tu_tmpdir());
	mkdir(dir, 0755);
	bench_gateway(dir);
	bench_render();
}
