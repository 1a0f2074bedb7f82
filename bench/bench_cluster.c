/*
 * bench_cluster.c - `make bench`: several nodes on one PostgreSQL store
 * beside one node on SQLite, on this machine (every node and PostgreSQL
 * share its cores, so more nodes show the store's cost, not more GPUs).
 *
 * 1. Completed zero-time sim jobs per second, 2 runners a node, with 1, 2
 *    and 3 nodes on PostgreSQL and 1 node on SQLite; 4 threads submit,
 *    spread over the nodes.
 * 2. Submit latency (POST /api/generate answered, the row committed), one
 *    client, on 1 node on PostgreSQL and on SQLite.
 * 3. Claim latency: a submit to a node with no room for it (its model is
 *    held by an operator), until another node has claimed it and it runs.
 *
 * PostgreSQL is Debian's, in a temp dir of its own, on a Unix socket, started and
 * stopped here (as the postgres user when root). Prints; asserts nothing.
 */
#include <libpq-fe.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bench.h"
#include "testutil.h"

#define JOBS 3000
#define MAX_NODES 3

static char root[512], pgdir[600], url[800];
static const char *pgbin;

static const char registry[] =
	"server: {limits: {max_queue: 200000}}\n"
	"functions:\n"
	"  Create Image:\n"
	"    params:\n"
	"      prompt: {type: string, required: true}\n"
	"    qualities:\n"
	"      standard: {label: Balanced, typical_seconds: [1, 2]}\n"
	"models:\n"
	"  img:\n"
	"    function: Create Image\n"
	"    quality: standard\n"
	"    command: [\"{bindir}/fnrun-worker\", --model, sim, --step-ms, \"0\", --cache-none,"
	" --log-level, warn, --port, \"{port}\"]\n"
	"    workflow: wf.json\n"
	"    bind: {prompt: \"1.inputs.text\"}\n"
	"    min_instances: 2\n"
	"    max_instances: 2\n";

static int sh(const char *cmd)
{
	return system(cmd);
}

/* A fresh PostgreSQL on a socket in root/pg; 0 when it runs. */
static int pg_up(void)
{
	static char bin[256];
	char cmd[4800];
	FILE *f = popen("ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1", "r");
	const char *as = geteuid() == 0 ? "runuser -u postgres -- " : "";

	if (f == NULL || fgets(bin, sizeof bin, f) == NULL) {
		if (f)
			pclose(f);
		return -1;
	}
	pclose(f);
	bin[strcspn(bin, "\n")] = '\0';
	pgbin = bin;
	/* Its own dir: the postgres user cannot enter the bench's private temp dir. */
	snprintf(pgdir, sizeof pgdir, "/tmp/fnrun-bench-pg-XXXXXX");
	if (mkdtemp(pgdir) == NULL)
		return -1;
	snprintf(cmd, sizeof cmd,
		 "mkdir -p %s && { [ $(id -u) -ne 0 ] || chown postgres: %s; } && "
		 "%s%s/initdb -D %s -U fnrun -A trust -E UTF8 --locale=C --no-sync >/dev/null 2>&1 && "
		 "%s%s/pg_ctl -D %s -l %s/server.log -w -o \"-k %s -c listen_addresses= "
		 "-c max_connections=100\" start >/dev/null",
		 pgdir, pgdir, as, pgbin, pgdir, as, pgbin, pgdir, pgdir, pgdir);
	if (sh(cmd) != 0)
		return -1;
	snprintf(url, sizeof url, "postgresql://fnrun@/postgres?host=%s", pgdir);
	return 0;
}

static void pg_down(void)
{
	char cmd[1400];

	snprintf(cmd, sizeof cmd, "%s%s/pg_ctl -D %s -m immediate -w stop >/dev/null 2>&1",
		 geteuid() == 0 ? "runuser -u postgres -- " : "", pgbin, pgdir);
	sh(cmd);
	tu_rmrf(pgdir);
}

/* Empties the shared store between runs. */
static void pg_reset(void)
{
	PGconn *c = PQconnectdb(url);

	PQclear(PQexec(c, "SET client_min_messages = warning"));
	PQclear(PQexec(c, "DROP TABLE IF EXISTS jobs, runners, meta, fnrun_schema"));
	PQfinish(c);
}

static pid_t node(int i, int port, const char *store, const char *data)
{
	char cfg[700], listen[64], name[16];
	char *argv[16] = {(char *)tu_bin("fnrun"), "serve", "--config", cfg, "--listen", listen,
			  "--data", (char *)data, "--log-level", "warn", NULL};

	snprintf(cfg, sizeof cfg, "%s/cluster.yaml", root);
	snprintf(listen, sizeof listen, "127.0.0.1:%d", port);
	snprintf(name, sizeof name, "n%d", i);
	if (store) {
		argv[10] = "--store";
		argv[11] = (char *)store;
		argv[12] = "--node";
		argv[13] = name;
	}
	return tu_spawn(argv, "/dev/null");
}

static int submit(int port, char *id, size_t n)
{
	static const char body[] = "{\"function\": \"Create Image\", \"params\": {\"prompt\": \"b\"}}";
	struct tu_resp r;
	int status;
	const char *p;

	if (tu_http(port, "POST", "/api/generate", "application/json", body, strlen(body), &r) != 0)
		return 0;
	status = r.status;
	if (id && (p = strstr(r.body, "\"job_id\": \"")) != NULL)
		snprintf(id, n, "%.32s", p + 11);
	tu_resp_free(&r);
	return status;
}

static long completed(const int *ports, int n)
{
	static const char name[] = "fnrun_jobs_completed_total";
	long sum = 0;

	for (int i = 0; i < n; i++) {
		struct tu_resp r;

		if (tu_http(ports[i], "GET", "/metrics", NULL, NULL, 0, &r) != 0)
			continue;
		for (char *p = r.body; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
			const char *v;
			if (strncmp(p, name, sizeof name - 1) != 0)
				continue;
			v = p[sizeof name - 1] == '{' ? strstr(p, "} ") : p + sizeof name - 1;
			if (v && (v[0] == ' ' || v[0] == '}'))
				sum += atol(v + (v[0] == '}' ? 2 : 1));
		}
		tu_resp_free(&r);
	}
	return sum;
}

struct feeder {
	const int *ports;
	int nports, count, first;
};

static void *feed(void *arg)
{
	struct feeder *f = arg;

	for (int i = 0; i < f->count; i++)
		submit(f->ports[(f->first + i) % f->nports], NULL, 0);
	return NULL;
}

/* Jobs/s with n nodes (store NULL: one node on SQLite). */
static void throughput(int n, const char *store)
{
	int ports[MAX_NODES];
	pid_t pids[MAX_NODES];
	pthread_t th[4];
	struct feeder f[4];
	char data[700];
	double t0, t1;
	long base, done;

	snprintf(data, sizeof data, "%s/%s-data-%d", root, store ? "pg" : "sqlite", n);
	for (int i = 0; i < n; i++) {
		ports[i] = tu_free_port();
		pids[i] = node(i, ports[i], store, data);
		if (tu_wait_http(ports[i], "/health", 200, 15000) != 0) {
			printf("bench cluster: node %d did not start\n", i);
			goto out;
		}
	}
	/* Warm: every runner up and a job through each node. */
	for (int i = 0; i < n * 4; i++)
		submit(ports[i % n], NULL, 0);
	while (completed(ports, n) < n * 4)
		usleep(2000);
	base = completed(ports, n);
	t0 = bench_now_ms();
	for (int i = 0; i < 4; i++) {
		f[i] = (struct feeder){ports, n, JOBS / 4, i};
		pthread_create(&th[i], NULL, feed, &f[i]);
	}
	for (int i = 0; i < 4; i++)
		pthread_join(th[i], NULL);
	while ((done = completed(ports, n) - base) < JOBS && bench_now_ms() - t0 < 120000)
		usleep(5000);
	t1 = bench_now_ms();
	printf("cluster throughput, zero-time sim jobs, %d node%s x 2 runners, %-10s %6.0f jobs/s "
	       "(%ld in %.0f ms)\n", n, n > 1 ? "s" : " ", store ? "PostgreSQL:" : "SQLite:",
	       done * 1000.0 / (t1 - t0), done, t1 - t0);
out:
	for (int i = 0; i < n; i++)
		tu_stop(pids[i], 8000);
}

/* p50 and p90 of one client's submit round trips on one node. */
static void submit_latency(const char *store)
{
	enum { N = 300 };
	double v[N];
	char data[700];
	int port = tu_free_port();
	pid_t pid;

	snprintf(data, sizeof data, "%s/lat-%s", root, store ? "pg" : "sqlite");
	pid = node(0, port, store, data);
	if (tu_wait_http(port, "/health", 200, 15000) == 0) {
		for (int i = 0; i < N; i++) {
			double t = bench_now_ms();
			submit(port, NULL, 0);
			v[i] = bench_now_ms() - t;
		}
		bench_sort(v, N);
		printf("%-58s p50 %6.2f ms  p90 %6.2f ms  (n=%d)\n",
		       store ? "submit latency, 1 node, PostgreSQL" : "submit latency, 1 node, SQLite",
		       v[N / 2], v[N * 9 / 10], N);
	}
	tu_stop(pid, 8000);
}

/* Submit to a node without room (its model held) until another node runs the job. */
static void claim_latency(void)
{
	enum { N = 40 };
	double v[N];
	int ports[2] = {tu_free_port(), tu_free_port()}, k = 0;
	pid_t pids[2];
	char data[700], id[40], path[96];
	struct tu_resp r;

	snprintf(data, sizeof data, "%s/claim-data", root);
	for (int i = 0; i < 2; i++) {
		pids[i] = node(i, ports[i], url, data);
		if (tu_wait_http(ports[i], "/health", 200, 15000) != 0)
			goto out;
	}
	if (tu_http(ports[0], "POST", "/api/admin/models/img/drain", "application/json", "{}", 2,
		    &r) == 0)
		tu_resp_free(&r);
	for (int i = 0; i < N; i++) {
		double t = bench_now_ms();
		if (submit(ports[0], id, sizeof id) != 202)
			continue;
		snprintf(path, sizeof path, "/api/jobs/%s", id);
		if (bench_poll(ports[1], path, "\"status\": \"completed\"", 10000) < 0)
			continue;
		v[k++] = bench_now_ms() - t;
	}
	if (k > 0) {
		bench_sort(v, k);
		printf("%-58s p50 %6.1f ms  p90 %6.1f ms  (n=%d)\n",
		       "submit to a full node -> done on another (claim + run)", v[k / 2],
		       v[k * 9 / 10], k);
	}
out:
	for (int i = 0; i < 2; i++)
		tu_stop(pids[i], 8000);
}

void bench_cluster(const char *dir)
{
	char cfg[700];

	snprintf(root, sizeof root, "%s/cluster", dir);
	mkdir(root, 0755);
	snprintf(cfg, sizeof cfg, "%s/cluster.yaml", root);
	tu_write_file(cfg, registry, strlen(registry));
	{
		char wf[700], src[700], *text;
		snprintf(src, sizeof src, "%s/wf.json", dir);
		snprintf(wf, sizeof wf, "%s/wf.json", root);
		text = tu_read_file(src, NULL);
		if (text)
			tu_write_file(wf, text, strlen(text));
		free(text);
	}
	if (pg_up() != 0) {
		printf("bench cluster: PostgreSQL did not start (is postgresql-15 installed?)\n");
		return;
	}
	throughput(1, NULL);
	for (int n = 1; n <= MAX_NODES; n++) {
		pg_reset();
		throughput(n, url);
	}
	submit_latency(NULL);
	pg_reset();
	submit_latency(url);
	pg_reset();
	claim_latency();
	pg_down();
}
