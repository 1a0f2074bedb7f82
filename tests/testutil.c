/*
 * testutil.c - see testutil.h.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"

static char tmpdir[256];

const char *tu_bindir(void)
{
	const char *d = getenv("FNRUN_BIN");

	return d && *d ? d : "bin";
}

const char *tu_bin(const char *name)
{
	static char path[1024];

	snprintf(path, sizeof path, "%s/%s", tu_bindir(), name);
	return path;
}

const char *tu_shared(void)
{
	const char *d = getenv("FNRUN_SHARED");

	static char here[PATH_MAX];

	if (d && *d)
		return d;
	/* The recordings are kept in the repository (tests/fixtures/comfyui/README.md). */
	if (here[0] == '\0' && realpath("tests", here) == NULL)
		snprintf(here, sizeof here, "tests");
	return here;
}

const char *tu_tmpdir(void)
{
	if (tmpdir[0] == '\0') {
		const char *base = getenv("TMPDIR");

		snprintf(tmpdir, sizeof tmpdir, "%s/fnrun-test-XXXXXX",
			 base && base[0] == '/' ? base : "/tmp");
		if (mkdtemp(tmpdir) == NULL)
			ck_abort_msg("mkdtemp: %s", strerror(errno));
	}
	return tmpdir;
}

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *f)
{
	(void)st;
	(void)flag;
	(void)f;
	return remove(p);
}

void tu_rmrf(const char *path)
{
	nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

char *tu_read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *data;
	long n;

	if (f == NULL)
		return NULL;
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	data = malloc((size_t)n + 1);
	if (fread(data, 1, (size_t)n, f) != (size_t)n) {
		free(data);
		fclose(f);
		return NULL;
	}
	data[n] = '\0';
	fclose(f);
	if (len)
		*len = (size_t)n;
	return data;
}

int tu_write_file(const char *path, const char *data, size_t len)
{
	FILE *f = fopen(path, "wb");

	if (f == NULL)
		return -1;
	if (fwrite(data, 1, len, f) != len) {
		fclose(f);
		return -1;
	}
	return fclose(f);
}

pid_t tu_spawn(char *const argv[], const char *logpath)
{
	pid_t pid = fork();

	if (pid < 0)
		return -1;
	if (pid == 0) {
		setpgid(0, 0);
		/* A test that dies without its teardown still stops what it started. */
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		if (logpath) {
			int fd = open(logpath, O_WRONLY | O_CREAT | O_APPEND, 0644);
			if (fd >= 0) {
				dup2(fd, 1);
				dup2(fd, 2);
				close(fd);
			}
		}
		execv(argv[0], argv);
		_exit(127);
	}
	setpgid(pid, pid);
	return pid;
}

static void sleep_ms(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};

	nanosleep(&ts, NULL);
}

int tu_wait_exit(pid_t pid, int ms)
{
	int status;

	/* Poll with short naps: there is no portable wait-with-timeout. */
	for (int waited = 0; waited <= ms; waited += 5) {
		pid_t r = waitpid(pid, &status, WNOHANG);
		if (r == pid)
			return status;
		if (r < 0)
			return -1;
		sleep_ms(5);
	}
	return -1;
}

int tu_stop(pid_t pid, int grace_ms)
{
	int status;

	if (pid <= 0)
		return -1;
	kill(-pid, SIGTERM);
	kill(pid, SIGTERM);
	status = tu_wait_exit(pid, grace_ms);
	if (status == -1) {
		kill(-pid, SIGKILL);
		kill(pid, SIGKILL);
		waitpid(pid, &status, 0);
	}
	kill(-pid, SIGKILL); /* leftovers in the group */
	return status;
}

int tu_free_port(void)
{
	struct sockaddr_in sa = {.sin_family = AF_INET};
	socklen_t sl = sizeof sa;
	int fd = socket(AF_INET, SOCK_STREAM, 0), port;

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 ||
	    getsockname(fd, (struct sockaddr *)&sa, &sl) < 0) {
		close(fd);
		return -1;
	}
	port = ntohs(sa.sin_port);
	close(fd);
	return port;
}

int tu_connect(int port)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

int tu_write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Decodes a chunked body in place; returns the new length. */
size_t tu_dechunk(char *body, size_t len)
{
	size_t in = 0, out = 0;

	while (in < len) {
		char *end;
		unsigned long n = strtoul(body + in, &end, 16);
		char *crlf = strstr(end, "\r\n");
		if (crlf == NULL || n == 0)
			break;
		in = (size_t)(crlf + 2 - body);
		if (in + n > len)
			n = len - in;
		memmove(body + out, body + in, n);
		out += n;
		in += n + 2;
	}
	body[out] = '\0';
	return out;
}

int tu_http(int port, const char *method, const char *path, const char *ctype,
	    const char *body, size_t len, struct tu_resp *resp)
{
	char head[2048];
	int fd, rc;

	memset(resp, 0, sizeof *resp);
	fd = tu_connect(port);
	if (fd < 0)
		return -1;
	snprintf(head, sizeof head,
		 "%s %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n"
		 "%s%s%sContent-Length: %zu\r\n\r\n",
		 method, path, port, ctype ? "Content-Type: " : "", ctype ? ctype : "",
		 ctype ? "\r\n" : "", body ? len : 0);
	if (tu_write_all(fd, head, strlen(head)) < 0 ||
	    (body && tu_write_all(fd, body, len) < 0)) {
		close(fd);
		return -1;
	}
	rc = tu_read_response(fd, resp);
	close(fd);
	return rc;
}

int tu_read_response(int fd, struct tu_resp *resp)
{
	char *raw = NULL, *sep;
	size_t rlen = 0, rcap = 0;

	for (;;) {
		ssize_t r;
		if (rcap - rlen < 65536) {
			rcap = rcap ? rcap * 2 : 131072;
			raw = realloc(raw, rcap + 1);
		}
		r = read(fd, raw + rlen, rcap - rlen);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		rlen += (size_t)r;
	}
	if (raw == NULL)
		return -1;
	raw[rlen] = '\0';
	sep = strstr(raw, "\r\n\r\n");
	if (sep == NULL || sscanf(raw, "HTTP/1.%*d %d", &resp->status) != 1) {
		free(raw);
		return -1;
	}
	*sep = '\0';
	for (char *p = raw; *p; p++)
		if (*p >= 'A' && *p <= 'Z')
			*p = (char)(*p - 'A' + 'a');
	resp->headers = strdup(raw);
	resp->len = rlen - (size_t)(sep + 4 - raw);
	resp->body = malloc(resp->len + 1);
	memcpy(resp->body, sep + 4, resp->len);
	resp->body[resp->len] = '\0';
	if (strstr(resp->headers, "transfer-encoding: chunked"))
		resp->len = tu_dechunk(resp->body, resp->len);
	free(raw);
	return 0;
}

void tu_resp_free(struct tu_resp *r)
{
	free(r->headers);
	free(r->body);
	memset(r, 0, sizeof *r);
}

const char *tu_resp_header(const struct tu_resp *r, const char *name)
{
	static char val[1024];
	char key[128];
	const char *p;

	snprintf(key, sizeof key, "\n%s:", name);
	for (char *k = key; *k; k++)
		if (*k >= 'A' && *k <= 'Z')
			*k = (char)(*k - 'A' + 'a');
	p = r->headers ? strstr(r->headers, key) : NULL;
	if (p == NULL)
		return NULL;
	p += strlen(key);
	while (*p == ' ')
		p++;
	size_t n = strcspn(p, "\r\n");
	if (n >= sizeof val)
		n = sizeof val - 1;
	memcpy(val, p, n);
	val[n] = '\0';
	return val;
}

int tu_wait_http(int port, const char *path, int status, int ms)
{
	for (int waited = 0; waited <= ms; waited += 10) {
		struct tu_resp r;
		if (tu_http(port, "GET", path, NULL, NULL, 0, &r) == 0) {
			int got = r.status;
			tu_resp_free(&r);
			if (got == status)
				return 0;
		}
		sleep_ms(10);
	}
	return -1;
}

/* The end of the response in raw (head + Content-Length), or 0 while the head is incomplete. */
static size_t response_end(const char *raw)
{
	const char *sep = strstr(raw, "\r\n\r\n"), *cl;

	if (sep == NULL)
		return 0;
	cl = strcasestr(raw, "\r\ncontent-length:");
	return (size_t)(sep + 4 - raw) + (cl && cl < sep ? strtoul(cl + 17, NULL, 10) : 0);
}

/* Reads one response with a Content-Length into resp, as tu_read_response fills it. */
static int read_one_response(int fd, struct tu_resp *resp)
{
	size_t len = 0, cap = 16384, end = 0;
	char *raw = malloc(cap + 1), *sep;

	while (end == 0 || len < end) {
		ssize_t n;
		if (len == cap) {
			cap *= 2;
			raw = realloc(raw, cap + 1);
		}
		n = read(fd, raw + len, cap - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			free(raw);
			return -1;
		}
		len += (size_t)n;
		raw[len] = '\0';
		if (end == 0)
			end = response_end(raw);
	}
	sep = strstr(raw, "\r\n\r\n");
	*sep = '\0';
	sscanf(raw, "HTTP/1.%*d %d", &resp->status);
	resp->headers = strdup(raw);
	resp->len = end - (size_t)(sep + 4 - raw);
	resp->body = malloc(resp->len + 1);
	memcpy(resp->body, sep + 4, resp->len);
	resp->body[resp->len] = '\0';
	free(raw);
	return 0;
}

int tu_http_keep(int fd, const char *method, const char *path, const char *body,
		 struct tu_resp *resp)
{
	char head[1024];
	size_t blen = body ? strlen(body) : 0;

	memset(resp, 0, sizeof *resp);
	snprintf(head, sizeof head, "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\n%sContent-Length: %zu\r\n\r\n",
		 method, path, body ? "Content-Type: application/json\r\n" : "", blen);
	if (tu_write_all(fd, head, strlen(head)) < 0 || (blen && tu_write_all(fd, body, blen) < 0))
		return -1;
	return read_one_response(fd, resp);
}

/* 1 when pid works under dir or names it in its command line. */
static int uses_dir(int pid, const char *dir)
{
	char path[64], buf[4096];
	ssize_t n;
	size_t k = 0;
	FILE *f;

	snprintf(path, sizeof path, "/proc/%d/cwd", pid);
	n = readlink(path, buf, sizeof buf - 1);
	if (n > 0) {
		buf[n] = '\0';
		if (strncmp(buf, dir, strlen(dir)) == 0)
			return 1;
	}
	snprintf(path, sizeof path, "/proc/%d/cmdline", pid);
	f = fopen(path, "r");
	if (f) {
		k = fread(buf, 1, sizeof buf - 1, f);
		fclose(f);
	}
	for (size_t i = 0; i < k; i++)
		buf[i] = buf[i] ? buf[i] : ' ';
	buf[k] = '\0';
	return strstr(buf, dir) != NULL;
}

void tu_kill_users_of(const char *dir)
{
	for (int round = 0, found = 1; found && round < 20; round++) {
		DIR *d = opendir("/proc");
		struct dirent *e;

		found = 0;
		while (d && (e = readdir(d)) != NULL) {
			int pid = atoi(e->d_name);
			if (pid > 0 && pid != getpid() && uses_dir(pid, dir) && kill(pid, SIGKILL) == 0)
				found++;
		}
		if (d)
			closedir(d);
	}
}

int64_t tu_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
