/*
 * test_diskfull.c - the job store on a full disk, end to end: `fnrun serve`
 * with its data directory on a 4 MiB tmpfs (registry and workflows outside
 * it), real sim model servers, and a filler file that takes every free page
 * of the tmpfs, then is deleted.
 *
 * The contract (job changes are committed in groups before anything shows):
 * - while commits fail, POST /api/generate answers 503 with Retry-After and
 *   error.code SERVICE_UNAVAILABLE, /ready answers 503, and a refused submit
 *   leaves no job (its idempotency key is still free afterwards);
 * - a running job goes on: its model server finishes while the disk is
 *   full, and the job ends completed once there is room again;
 * - a final status a client saw (by GET or event) never changes, even after
 *   fnrun and its model servers are SIGKILLed (the restart cannot take
 *   results back from them); then every 202'd job exists, and no other.
 *
 * Why the refusal is deterministic (SQLite 3.40, WAL, synchronous=NORMAL,
 * measured on tmpfs):
 * 1. A commit that changes a page appends WAL frames of 24 + 4096 bytes;
 *    the WAL's last tmpfs page has less slack than that, so with no free
 *    page COMMIT fails with SQLITE_FULL and the whole transaction rolls back.
 * 2. Only a WAL restarted by a complete checkpoint is reused in place, and a
 *    checkpoint fails on a full disk once the database file must grow: a
 *    new job row (~200 bytes) needs a new page within ~20 rows. Then each
 *    accepted submit takes a frame of the WAL's existing space, so at most
 *    (WAL frames) + SLACK_SUBMITS are accepted. With the default
 *    wal_autocheckpoint (1000 frames) the few dozen frames written before
 *    the fill were never checkpointed: the first submit is refused.
 * 3. The filler is topped up to ENOSPC before every submit, so pages fnrun
 *    frees (a WAL cut by journal_size_limit, a deleted file) are taken back.
 *
 * It needs root (mount). The mount, and killing what still holds it, are an
 * unchecked fixture run by the runner process itself, so they happen even
 * when the test fails or times out (Check then skips checked teardowns).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "gwtest.h"
#include "testutil.h"

#define DATA_SIZE "size=4m" /* the tmpfs under fnrun's data directory */
#define WAL_FRAME 4120      /* bytes: a 24-byte frame header + one 4096-byte page */
#define SLACK_SUBMITS 32    /* job rows that fit in the table's last page, and more */
#define MAX_JOBS 199        /* jobs listed in one page (limit=200) */
#define WARM_JOBS 3         /* fast jobs completed before the disk fills */
#define SLOW_STEPS 80       /* the running job: 80 steps of 50 ms, no file written */
#define DEADLINE_MS 30000
#define OBSERVE_MS 1000     /* how long a job that finished on a full disk is watched */

static char root[256];  /* temp dir made by the parent: registry, workflows, gateway.log */
static char data[300];  /* root/data: the tmpfs, fnrun's --data */
static int mount_errno; /* why the parent could not mount; 0 when mounted */
static struct gw g;
static int filler = -1; /* data/filler, open while the disk is full */

/* Every job that got a 202, and the final status a client saw of it. */
static struct seen {
	char id[64];
	char final[16]; /* "" while none was seen */
} jobs[MAX_JOBS];
static int njobs;
static int nkeys; /* idempotency keys handed out */

/* ---- the tmpfs and the processes holding it (parent process) ---- */

/* 1 when the /proc symlink at path points at dir or under it. */
static int link_under(const char *path, const char *dir)
{
	char link[1024];
	ssize_t n = readlink(path, link, sizeof link - 1);
	size_t len = strlen(dir);

	if (n <= 0)
		return 0;
	link[n] = '\0';
	return strncmp(link, dir, len) == 0 &&
	       (link[len] == '\0' || link[len] == '/' || link[len] == ' ');
}

/* 1 when process pid has its cwd or an open file under dir. */
static int holds(const char *pid, const char *dir)
{
	char path[300];
	struct dirent *e;
	DIR *d;
	int found;

	snprintf(path, sizeof path, "/proc/%s/cwd", pid);
	found = link_under(path, dir);
	snprintf(path, sizeof path, "/proc/%s/fd", pid);
	d = found ? NULL : opendir(path);
	while (d && !found && (e = readdir(d)) != NULL) {
		snprintf(path, sizeof path, "/proc/%s/fd/%s", pid, e->d_name);
		found = link_under(path, dir);
	}
	if (d)
		closedir(d);
	return found;
}

/*
 * SIGKILLs, by pid, every process holding dir (fnrun, its model servers)
 * until none is left, for up to 5 s. Returns how many were left.
 */
static int kill_holders(const char *dir)
{
	int left = 1;

	for (int waited = 0; left > 0 && waited <= 5000; waited += 20) {
		DIR *d = opendir("/proc");
		struct dirent *e;

		left = 0;
		while (d && (e = readdir(d)) != NULL) {
			int pid = atoi(e->d_name);
			if (pid > 0 && pid != getpid() && holds(e->d_name, dir))
				left += kill(pid, SIGKILL) == 0;
		}
		if (d)
			closedir(d);
		if (left > 0)
			gw_sleep_ms(20);
	}
	return left;
}

static void mount_data(void)
{
	snprintf(root, sizeof root, "/tmp/fnrun-diskfull-XXXXXX");
	if (mkdtemp(root) == NULL) {
		mount_errno = errno;
		root[0] = '\0';
		return;
	}
	snprintf(data, sizeof data, "%s/data", root);
	mount_errno = mkdir(data, 0755) < 0 ? errno : 0;
	if (mount_errno == 0 && mount("tmpfs", data, "tmpfs", 0, DATA_SIZE) < 0)
		mount_errno = errno;
}

/* Kills what holds the tmpfs, unmounts it (retrying while busy), removes root. */
static void release_data(void)
{
	if (root[0] == '\0')
		return;
	if (kill_holders(data) > 0)
		fprintf(stderr, "diskfull: processes still hold %s\n", data);
	for (int waited = 0; mount_errno == 0 && umount(data) < 0; waited += 20) {
		if (errno != EBUSY || waited >= 5000) {
			fprintf(stderr, "diskfull: umount %s: %s\n", data, strerror(errno));
			umount2(data, MNT_DETACH);
			break;
		}
		gw_sleep_ms(20);
	}
	tu_rmrf(root);
	root[0] = '\0';
}

/* ---- the disk (test process) ---- */

static long free_bytes(void)
{
	struct statvfs v;

	ck_assert_int_eq(statvfs(data, &v), 0);
	return (long)(v.f_bavail * v.f_frsize);
}

/* Appends to data/filler until ENOSPC: afterwards no byte is free. */
static void fill_disk(void)
{
	static char buf[65536];
	char path[400];

	if (filler < 0) {
		snprintf(path, sizeof path, "%s/filler", data);
		filler = open(path, O_WRONLY | O_CREAT | O_APPEND, 0600);
		ck_assert_msg(filler >= 0, "filler: %s", strerror(errno));
		memset(buf, 'F', sizeof buf);
	}
	/* Again while a page is free: something may be deleted meanwhile. */
	for (int round = 0; round < 100 && (round == 0 || free_bytes() > 0); round++)
		for (size_t chunk = sizeof buf; chunk > 0; chunk /= 2) {
			ssize_t w = write(filler, buf, chunk);
			while (w > 0)
				w = write(filler, buf, chunk);
			ck_assert_msg(w == 0 || errno == ENOSPC, "filler: %s", strerror(errno));
		}
	ck_assert_int_eq(free_bytes(), 0);
}

/*
 * The store's WAL: its size into *bytes, and its checkpoint sequence number
 * (header bytes 12-15, big-endian), which stays 0 until the WAL is first
 * restarted: until then every commit appended to it. -1 without a header.
 */
static long wal_state(long *bytes)
{
	unsigned char h[16];
	char path[400];
	FILE *f;
	long n = -1;

	snprintf(path, sizeof path, "%s/fnrun.db-wal", data);
	f = fopen(path, "rb");
	*bytes = 0;
	if (f && fread(h, 1, sizeof h, f) == sizeof h) {
		n = (long)h[12] << 24 | (long)h[13] << 16 | (long)h[14] << 8 | (long)h[15];
		fseek(f, 0, SEEK_END);
		*bytes = ftell(f);
	}
	if (f)
		fclose(f);
	return n;
}

/* ---- what clients see ---- */

static long mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int is_final(const char *status)
{
	return status[0] != '\0' && strstr("completed,failed,cancelled", status) != NULL;
}

/* Records a status a client saw; a final one must never change after. */
static void observe(struct seen *s, const char *status)
{
	ck_assert_msg(s->final[0] == '\0' || strcmp(s->final, status) == 0,
		      "job %s was seen %s, now it is %s", s->id, s->final, status);
	if (s->final[0] == '\0' && is_final(status))
		snprintf(s->final, sizeof s->final, "%s", status);
}

/* GET /api/jobs/{id}: the job must exist. Returns its status (static). */
static const char *job_status(struct seen *s)
{
	static char status[16];
	char path[128];
	struct json_object *o;
	int http;

	snprintf(path, sizeof path, "/api/jobs/%s", s->id);
	o = gw_json(&g, "GET", path, NULL, &http);
	ck_assert_msg(http == 200 && gw_str(o, "status"), "job %s: GET answered %d", s->id, http);
	snprintf(status, sizeof status, "%s", gw_str(o, "status"));
	json_object_put(o);
	observe(s, status);
	return status;
}

/* Polls the job until its status is in want (comma list). */
static void wait_job(struct seen *s, const char *want, int ms)
{
	const char *status = "";

	for (int waited = 0; waited <= ms; waited += 20) {
		status = job_status(s);
		if (strstr(want, status))
			return;
		gw_sleep_ms(20);
	}
	ck_abort_msg("job %s is %s after %d ms, want %s", s->id, status, ms, want);
}

/* Every job is read again: each exists, and final statuses hold (observe). */
static void recheck_all(void)
{
	for (int i = 0; i < njobs; i++)
		job_status(&jobs[i]);
}

/* Opens the job's event stream (Server-Sent Events); returns the socket. */
static int open_events(const struct seen *s)
{
	char req[256];
	int fd = tu_connect(g.port);

	ck_assert_int_ge(fd, 0);
	snprintf(req, sizeof req, "GET /api/jobs/%s/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
		 s->id);
	ck_assert_int_eq(tu_write_all(fd, req, strlen(req)), 0);
	return fd;
}

/*
 * Reads what the event stream has within ms; each status in a complete
 * event counts as seen, in order.
 */
static void read_events(int fd, struct seen *s, int ms)
{
	static const char key[] = "\"status\": \"";
	static char buf[16384];
	static size_t len;
	struct pollfd p = {.fd = fd, .events = POLLIN};
	char *end = NULL, status[16], quote;
	ssize_t n;

	if (poll(&p, 1, ms) <= 0)
		return;
	n = read(fd, buf + len, sizeof buf - 1 - len);
	if (n <= 0) { /* the stream ended: it does after a final state */
		gw_sleep_ms(ms);
		return;
	}
	len += (size_t)n;
	buf[len] = '\0';
	for (char *q = strstr(buf, "\n\n"); q; q = strstr(q + 2, "\n\n"))
		end = q + 2; /* events end with a blank line */
	for (char *q = strstr(buf, key); end && q && q < end; q = strstr(q + 1, key))
		if (sscanf(q + strlen(key), "%15[a-z]%c", status, &quote) == 2 && quote == '"')
			observe(s, status);
	if (end) {
		len -= (size_t)(end - buf);
		memmove(buf, end, len + 1);
	}
}

/* POST /api/generate with idempotency key key; records a 202. Fills r. */
static int post_submit(const char *quality, const char *key, struct tu_resp *r)
{
	char body[256];
	struct json_object *o;

	snprintf(body, sizeof body,
		 "{\"function\": \"Create Image\", \"quality\": \"%s\", \"params\": {\"prompt\":"
		 " \"disk\"}, \"idempotency_key\": \"%s\"}",
		 quality, key);
	ck_assert_int_eq(tu_http(g.port, "POST", "/api/generate", "application/json", body,
				 strlen(body), r), 0);
	ck_assert_msg(r->status != 200, "key %s answered 200: a job with it already exists: %s",
		      key, r->body);
	if (r->status != 202)
		return r->status;
	o = json_tokener_parse(r->body);
	ck_assert_msg(o && gw_str(o, "job_id"), "202 without a job_id: %s", r->body);
	ck_assert_int_lt(njobs, MAX_JOBS);
	snprintf(jobs[njobs].id, sizeof jobs[njobs].id, "%s", gw_str(o, "job_id"));
	jobs[njobs++].final[0] = '\0';
	json_object_put(o);
	return 202;
}

/* Submits one job that must be accepted; returns its record. */
static struct seen *submit_ok(const char *quality)
{
	struct tu_resp r;
	char key[32];
	int status;

	snprintf(key, sizeof key, "diskfull-%d", nkeys++);
	status = post_submit(quality, key, &r);

	ck_assert_msg(status == 202, "submit answered %d: %s", status, r.body);
	tu_resp_free(&r);
	return &jobs[njobs - 1];
}

/* The refusal the contract asks for: 503, Retry-After, SERVICE_UNAVAILABLE. */
static void assert_unavailable(const struct tu_resp *r)
{
	struct json_object *o = json_tokener_parse(r->body), *e = NULL;

	ck_assert_msg(r->status == 503, "submit answered %d: %s", r->status, r->body);
	ck_assert_msg(tu_resp_header(r, "Retry-After") != NULL, "503 without Retry-After");
	ck_assert_msg(o && json_object_object_get_ex(o, "error", &e), "no error body: %s", r->body);
	ck_assert_pstr_eq(gw_str(e, "code"), "SERVICE_UNAVAILABLE");
	ck_assert_ptr_nonnull(gw_str(e, "message"));
	json_object_put(o);
}

/* The port of model's model server, from its url in the admin API. */
static int model_port(const char *model)
{
	struct json_object *o = gw_json(&g, "GET", "/api/admin/runners", NULL, NULL), *a;
	int port = 0;

	ck_assert(o && json_object_object_get_ex(o, "runners", &a));
	for (size_t i = 0; i < json_object_array_length(a) && port == 0; i++) {
		struct json_object *r = json_object_array_get_idx(a, i);
		const char *url = gw_str(r, "url");
		if (strcmp(gw_str(r, "model"), model) == 0 && url && strrchr(url, ':'))
			port = atoi(strrchr(url, ':') + 1);
	}
	json_object_put(o);
	ck_assert_int_gt(port, 0);
	return port;
}

/* 1 when the model server on port runs nothing (its own /health). */
static int server_idle(int port)
{
	struct tu_resp r;
	int idle;

	ck_assert_int_eq(tu_http(port, "GET", "/health", NULL, NULL, 0, &r), 0);
	idle = strstr(r.body, "\"status\": \"idle\"") && strstr(r.body, "\"running\": null");
	tu_resp_free(&r);
	return idle;
}

/* ---- the phases ---- */

static void write_registry(void)
{
	static const char model[] =
		"  %s:\n    function: Create Image\n    quality: %s\n    idle_timeout: 300s\n"
		"    command: [\"{bindir}/fnrun-worker\", --model, sim, --step-ms, \"%d\", --port,"
		" \"{port}\"]\n    workflow: %s\n    bind: {prompt: \"1.inputs.text\"}\n";
	char path[400], text[2048], wf[1024];
	int n;

	n = snprintf(text, sizeof text,
		     "functions:\n  Create Image:\n    params:\n"
		     "      prompt: {type: string, required: true, max_length: 200}\n"
		     "    qualities:\n      low: {label: Fast Preview, typical_seconds: [1, 2]}\n"
		     "      standard: {label: Balanced, typical_seconds: [5, 10]}\nmodels:\n");
	n += snprintf(text + n, sizeof text - (size_t)n, model, "img_low", "low", 5, "wf.json");
	snprintf(text + n, sizeof text - (size_t)n, model, "img_slow", "standard", 50,
		 "wf-slow.json");
	gw_write_workflow(&g, "wf", "none");
	/* No SaveImage: the slow job writes no file, so it can finish on a full disk. */
	snprintf(wf, sizeof wf,
		 "{\"1\": {\"class_type\": \"SimTextEncode\", \"inputs\": {\"text\": \"x\"}},"
		 " \"2\": {\"class_type\": \"SimSampler\", \"inputs\": {"
		 "\"conditioning\": [\"1\", 0], \"seed\": 1, \"steps\": %d, \"width\": 64,"
		 " \"height\": 64, \"step_ms\": -1, \"fail\": \"none\"}},"
		 " \"3\": {\"class_type\": \"GetImageSize\", \"inputs\": {\"image\": [\"2\", 0]}},"
		 " \"4\": {\"class_type\": \"PreviewAny\", \"inputs\": {\"source\": [\"3\", 0]}}}",
		 SLOW_STEPS);
	snprintf(path, sizeof path, "%s/wf-slow.json", g.dir);
	ck_assert_int_eq(tu_write_file(path, wf, strlen(wf)), 0);
	gw_write_registry(&g, text);
}

/* A few fast jobs to completed, then a slow one left running. */
static struct seen *run_jobs_before_fill(void)
{
	struct seen *slow;

	for (int i = 0; i < WARM_JOBS; i++)
		wait_job(submit_ok("low"), "completed", DEADLINE_MS);
	slow = submit_ok("standard");
	wait_job(slow, "running", DEADLINE_MS);
	return slow;
}

/*
 * Fills the disk, then submits (topping the filler up before each) until one
 * is refused and /ready then answers 503; at most (WAL frames) +
 * SLACK_SUBMITS are accepted (top comment, 2). Returns the refused key, and
 * the WAL's size after the refusal into *wal_bytes.
 */
static const char *refuse_while_full(struct seen *slow, long *wal_bytes)
{
	static char key[32];
	struct tu_resp r;
	int bound, refused = 0, not_ready = 0;

	fill_disk();
	wal_state(wal_bytes);
	bound = (int)(*wal_bytes / WAL_FRAME) + SLACK_SUBMITS;
	for (int i = 0; i <= bound && !not_ready; i++) {
		fill_disk();
		snprintf(key, sizeof key, "diskfull-%d", nkeys++);
		if (post_submit("low", key, &r) != 202) {
			assert_unavailable(&r);
			refused++;
			/* Ready again only if a commit got through since (WAL reuse). */
			not_ready = tu_wait_http(g.port, "/ready", 503, 0) == 0;
		}
		tu_resp_free(&r);
	}
	ck_assert_msg(refused > 0, "%d submits accepted on a full disk, whose WAL held %d frames",
		      bound + 1, bound - SLACK_SUBMITS);
	ck_assert_msg(not_ready, "/ready never answered 503 on a full disk");
	ck_assert_str_eq(job_status(slow), "running");
	recheck_all();
	wal_state(wal_bytes);
	return key;
}

/* Operators read why in the admin API: the store is not writable, and the cause. */
static void admin_says_store_down(void)
{
	struct tu_resp r;

	ck_assert_int_eq(tu_http(g.port, "GET", "/api/admin/status", NULL, NULL, 0, &r), 0);
	ck_assert_int_eq(r.status, 200);
	ck_assert_msg(strstr(r.body, "\"ready\": false") && strstr(r.body, "\"writable\": false") &&
			      strstr(r.body, "full"),
		      "%s", r.body);
	tu_resp_free(&r);
}

/*
 * The running job's model server finishes while the disk is still full.
 * The job is then watched (GET and its event stream) for OBSERVE_MS: not a
 * wait for some state, only the chance to see a completion that was not
 * committed. wal_bytes: the WAL's size when the refusal was seen.
 */
static void finish_while_full(struct seen *slow, int port, int events, long wal_bytes)
{
	long end = mono_ms() + DEADLINE_MS, now;

	while (!server_idle(port) && mono_ms() < end)
		read_events(events, slow, 20);
	ck_assert_msg(mono_ms() < end, "the running job never finished on its model server");
	for (end = mono_ms() + OBSERVE_MS; mono_ms() < end && !is_final(job_status(slow));)
		read_events(events, slow, 20);
	fill_disk(); /* still full: nothing was freed meanwhile */
	recheck_all();
	if (wal_state(&now) != 0 || now / 4096 != wal_bytes / 4096)
		return; /* the WAL was reused or grew: a commit may have got through */
	/* A commit since the refusal would have appended a page: none succeeded. */
	ck_assert_msg(slow->final[0] == '\0', "job %s shown %s before it could be committed",
		      slow->id, slow->final);
	ck_assert_msg(tu_wait_http(g.port, "/ready", 503, 0) == 0, "/ready is 200 on a full disk");
	admin_says_store_down();
}

/*
 * Gives the space back and resubmits with the refused key until it is
 * accepted: a 202 (not 200) shows that the refused insert did not stand.
 */
static void recover(const char *refused_key)
{
	struct tu_resp r;
	char path[400];
	int status = 0;

	snprintf(path, sizeof path, "%s/filler", data);
	close(filler);
	filler = -1;
	ck_assert_int_eq(unlink(path), 0);
	ck_assert_int_gt(free_bytes(), 1024 * 1024);
	for (int waited = 0; waited <= DEADLINE_MS && status != 202; waited += 50) {
		status = post_submit("low", refused_key, &r);
		if (status != 202)
			assert_unavailable(&r);
		tu_resp_free(&r);
		recheck_all();
		if (status != 202)
			gw_sleep_ms(50);
	}
	ck_assert_msg(status == 202, "submits still refused %d ms after space came back",
		      DEADLINE_MS);
	ck_assert_msg(tu_wait_http(g.port, "/ready", 200, DEADLINE_MS) == 0, "/ready stays 503");
}

/* Jobs in the store (MAX_JOBS fit in one page of the list). */
static int stored_jobs(void)
{
	struct json_object *o = gw_json(&g, "GET", "/api/jobs?limit=200", NULL, NULL), *arr;
	int n;

	ck_assert(o && json_object_object_get_ex(o, "jobs", &arr));
	ck_assert_ptr_null(gw_str(o, "next"));
	n = (int)json_object_array_length(arr);
	json_object_put(o);
	return n;
}

START_TEST(full_disk_refuses_submits_and_loses_nothing)
{
	struct seen *slow;
	const char *refused;
	int port, events;
	long wal_bytes;

	gw_start(&g);
	slow = run_jobs_before_fill();
	port = model_port("img_slow");
	events = open_events(slow);
	refused = refuse_while_full(slow, &wal_bytes);
	finish_while_full(slow, port, events, wal_bytes);
	recover(refused);
	for (int i = 0; i < njobs; i++) /* every accepted job ends */
		wait_job(&jobs[i], "completed,failed,cancelled", DEADLINE_MS);
	ck_assert_str_eq(slow->final, "completed"); /* it ran through the full disk */
	close(events);
	/* A crash of fnrun and its model servers: only the store knows what was done. */
	kill(g.pid, SIGKILL);
	waitpid(g.pid, NULL, 0);
	g.pid = 0;
	ck_assert_int_eq(kill_holders(data), 0);
	gw_start(&g);
	recheck_all(); /* every 202'd job exists and keeps the final status seen */
	ck_assert_int_eq(stored_jobs(), njobs);
}
END_TEST

/* ---- fixtures ---- */

/* Test process: the registry beside the tmpfs, fnrun's data on it. */
static void setup(void)
{
	ck_assert_msg(mount_errno == 0, "cannot mount a tmpfs on %s: %s (this test needs root)",
		      data, strerror(mount_errno));
	memset(&g, 0, sizeof g);
	snprintf(g.dir, sizeof g.dir, "%s", root);
	njobs = nkeys = 0;
	write_registry();
}

/* Test process, when the test passed: a graceful stop. */
static void teardown(void)
{
	if (filler >= 0)
		close(filler);
	if (g.pid > 0)
		gw_stop(&g, 8000);
}

Suite *suite_diskfull(void)
{
	Suite *s = suite_create("diskfull");
	TCase *tc = tcase_create("e2e");

	tcase_add_unchecked_fixture(tc, mount_data, release_data);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, full_disk_refuses_submits_and_loses_nothing);
	suite_add_tcase(s, tc);
	return s;
}
