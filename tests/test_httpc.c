/*
 * test_httpc.c - the libcurl-on-libuv client against a canned HTTP server.
 *
 * The server is a forked child (its own process group, killed at the end
 * and by PR_SET_PDEATHSIG if the test dies) that forks once per connection
 * and answers by path; see srv_route(). Every response has Connection:
 * close. The client runs on a real libuv loop in the test process.
 */
#include <arpa/inet.h>
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

#include "httpc.h"
#include "testutil.h"

/* ---- the canned server ---------------------------------------------- */

struct srv {
	pid_t pid;
	int port;           /* TCP port, or 0 */
	char path[100];     /* unix socket path, or "" (fits sun_path) */
};

static int write_all(int fd, const void *p, size_t n)
{
	const char *c = p;

	while (n > 0) {
		ssize_t w = write(fd, c, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		c += w;
		n -= (size_t)w;
	}
	return 0;
}

static void on_chunk_ignore(const char *p, size_t n, void *ud)
{
}

/* Blocks until the client closes: a response that never comes. */
static void drain_until_eof(int fd)
{
	char b[4096];

	while (read(fd, b, sizeof b) > 0)
		;
}

static void respond(int fd, int status, const char *ctype, const char *body, size_t len)
{
	char head[512];
	int n = snprintf(head, sizeof head,
			 "HTTP/1.1 %d X\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
			 "Connection: close\r\n\r\n",
			 status, ctype, len);

	write_all(fd, head, (size_t)n);
	write_all(fd, body, len);
}

struct req {
	char method[16], path[256], ctype[128];
	int expect; /* an Expect header came */
	char *body;
	size_t len;
};

static const char *hdr(const char *head, const char *name)
{
	static char v[256];
	const char *p = strcasestr(head, name);

	if (p == NULL)
		return NULL;
	p += strlen(name);
	p += strspn(p, " ");
	snprintf(v, sizeof v, "%.*s", (int)strcspn(p, "\r\n"), p);
	return v;
}

/* Reads one request (head and Content-Length body). Returns 0 or -1. */
static int read_req(int fd, struct req *r)
{
	static char buf[8 << 20];
	size_t got = 0, hlen;
	char *end = NULL;
	const char *v;

	memset(r, 0, sizeof *r);
	while (end == NULL) {
		ssize_t n = read(fd, buf + got, 65536 - got - 1);
		if (n <= 0)
			return -1;
		got += (size_t)n;
		buf[got] = '\0';
		end = strstr(buf, "\r\n\r\n");
	}
	hlen = (size_t)(end + 4 - buf);
	end[2] = '\0';
	sscanf(buf, "%15s %255s", r->method, r->path);
	v = hdr(buf, "\r\nContent-Type:");
	snprintf(r->ctype, sizeof r->ctype, "%s", v ? v : "");
	r->expect = hdr(buf, "\r\nExpect:") != NULL;
	v = hdr(buf, "\r\nContent-Length:");
	r->len = v ? strtoul(v, NULL, 10) : 0;
	if (r->len > sizeof buf - hlen)
		return -1;
	r->body = buf + hlen;
	while (got - hlen < r->len) {
		ssize_t n = read(fd, buf + got, hlen + r->len - got);
		if (n <= 0)
			return -1;
		got += (size_t)n;
	}
	return 0;
}

static void srv_route(int fd)
{
	struct req r;
	char text[128];

	if (read_req(fd, &r) < 0)
		return;
	if (strcmp(r.path, "/hello") == 0) {
		respond(fd, 200, "text/plain", "hello world", 11);
	} else if (strcmp(r.path, "/echo") == 0) {
		respond(fd, 200, r.ctype, r.body, r.len);
	} else if (strcmp(r.path, "/expect") == 0) {
		int n = snprintf(text, sizeof text, "%s expect=%s len=%zu", r.method,
				 r.expect ? "yes" : "no", r.len);
		respond(fd, 200, "text/plain", text, (size_t)n);
	} else if (strcmp(r.path, "/slow") == 0) {
		drain_until_eof(fd);
	} else if (strcmp(r.path, "/trickle") == 0) {
		const char *head = "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nx";
		write_all(fd, head, strlen(head));
		drain_until_eof(fd);
	} else if (strcmp(r.path, "/cut") == 0) {
		const char *head = "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nx";
		write_all(fd, head, strlen(head)); /* then the connection closes */
	} else if (strcmp(r.path, "/big") == 0) {
		char *big = malloc(1 << 20);
		memset(big, 'a', 1 << 20);
		respond(fd, 200, "application/octet-stream", big, 1 << 20);
		free(big);
	} else if (strcmp(r.path, "/file") == 0) {
		respond(fd, 200, "text/plain", "file contents\n", 14);
	} else if (strcmp(r.path, "/fail") == 0) {
		respond(fd, 500, "text/plain", "server broke", 12);
	} else if (strncmp(r.path, "/n/", 3) == 0) {
		respond(fd, 200, "text/plain", r.path + 3, strlen(r.path + 3));
	} else {
		respond(fd, 404, "text/plain", "no such thing", 13);
	}
}

/* Dies with its parent, so a failed test leaves no server behind. */
static void die_with_parent(pid_t parent)
{
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != parent)
		_exit(0);
}

static void srv_loop(int lfd, pid_t parent)
{
	die_with_parent(parent);
	signal(SIGCHLD, SIG_IGN); /* connection children reap themselves */
	for (;;) {
		int fd = accept(lfd, NULL, NULL);
		pid_t me = getpid();
		if (fd < 0)
			continue;
		if (fork() == 0) {
			die_with_parent(me);
			close(lfd);
			srv_route(fd);
			close(fd);
			_exit(0);
		}
		close(fd);
	}
}

static void srv_fork(struct srv *s, int lfd)
{
	pid_t parent = getpid();

	ck_assert_int_eq(listen(lfd, 512), 0);
	s->pid = fork();
	ck_assert_int_ge(s->pid, 0);
	if (s->pid == 0) {
		setpgid(0, 0);
		srv_loop(lfd, parent);
	}
	setpgid(s->pid, s->pid); /* as the child does: no race with kill(-pid) */
	close(lfd);
}

static struct srv srv_start_tcp(void)
{
	struct sockaddr_in sa = {.sin_family = AF_INET};
	socklen_t sl = sizeof sa;
	struct srv s = {0};
	int one = 1, fd = socket(AF_INET, SOCK_STREAM, 0);

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
	ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
	s.port = ntohs(sa.sin_port);
	srv_fork(&s, fd);
	return s;
}

static struct srv srv_start_unix(void)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct srv s = {0};
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);

	snprintf(s.path, sizeof s.path, "%s/srv.sock", tu_tmpdir());
	memcpy(sa.sun_path, s.path, sizeof s.path);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
	srv_fork(&s, fd);
	return s;
}

static void srv_stop(struct srv *s)
{
	kill(-s->pid, SIGKILL);
	kill(s->pid, SIGKILL);
	waitpid(s->pid, NULL, 0);
}

/* ---- the client side ---------------------------------------------------- */

static uv_loop_t loop;
static struct httpc *client;
static int left;  /* callbacks still expected before the client is freed */
static int freed; /* httpc_free's done ran */

struct got {
	int calls;
	int status;
	char *body;
	size_t len;
	char ctype[128];
	struct err err;
	uint64_t elapsed_us;
};

static void on_freed(void *arg)
{
	(*(int *)arg)++;
}

static void done_one(void)
{
	if (--left == 0)
		httpc_free(client, on_freed, &freed);
}

static void on_resp(const struct httpc_resp *r, void *ud)
{
	struct got *g = ud;

	g->calls++;
	g->status = r->status;
	g->len = r->len;
	g->body = malloc(r->len + 1);
	memcpy(g->body, r->body, strlen(r->body) + 1);
	snprintf(g->ctype, sizeof g->ctype, "%s", r->content_type ? r->content_type : "");
	g->err = r->err;
	g->elapsed_us = r->elapsed_us;
	done_one();
}

static void setup(void)
{
	struct err err = {0};

	ck_assert_int_eq(uv_loop_init(&loop), 0);
	client = httpc_new(&loop, &err);
	ck_assert_ptr_nonnull(client);
	freed = 0;
	left = 0;
}

static void teardown(void)
{
	tu_rmrf(tu_tmpdir());
}

static char *url(const struct srv *s, const char *path)
{
	static char u[8][256];
	static int i;

	i = (i + 1) % 8;
	snprintf(u[i], sizeof u[i], "http://127.0.0.1:%d%s", s->port, path);
	return u[i];
}

static struct httpc_call *start(const struct httpc_opts *o, struct got *g)
{
	struct err err = {0};
	struct httpc_call *call = httpc_request(client, o, on_resp, g, &err);

	ck_assert_msg(call != NULL, "httpc_request: %s", err.msg);
	left++;
	return call;
}

/* Runs the loop until everything closed; asserts the client went away cleanly. */
static void run_and_close(void)
{
	ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
	ck_assert_int_eq(freed, 1);
	ck_assert_int_eq(uv_loop_close(&loop), 0);
}

static int count_tmp_files(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int n = 0;

	ck_assert_ptr_nonnull(d);
	for (;;) {
		e = readdir(d);
		if (e == NULL)
			break;
		n += strstr(e->d_name, ".tmp.") != NULL;
	}
	closedir(d);
	return n;
}

/* ---- tests -------------------------------------------------------------- */

START_TEST(test_get_200)
{
	struct srv s = srv_start_tcp();
	struct got g = {0};
	struct httpc_opts o = {.url = url(&s, "/hello")};

	start(&o, &g);
	ck_assert_uint_eq(httpc_active(client), 1);
	run_and_close();
	ck_assert_int_eq(g.calls, 1);
	ck_assert_int_eq(g.err.code, 0);
	ck_assert_int_eq(g.status, 200);
	ck_assert_str_eq(g.body, "hello world");
	ck_assert_uint_eq(g.len, 11);
	ck_assert_str_eq(g.ctype, "text/plain");
	ck_assert_uint_gt(g.elapsed_us, 0);
	free(g.body);
	srv_stop(&s);
}
END_TEST

START_TEST(test_post_echo)
{
	struct srv s = srv_start_tcp();
	struct got g = {0};
	const char *hdrs[] = {"X-Trace: 1", NULL};
	struct httpc_opts o = {.method = "POST",
			       .url = url(&s, "/echo"),
			       .body = "{\"a\":1}",
			       .body_len = 7,
			       .content_type = "application/json",
			       .headers = hdrs};

	start(&o, &g);
	run_and_close();
	ck_assert_int_eq(g.err.code, 0);
	ck_assert_int_eq(g.status, 200);
	ck_assert_str_eq(g.body, "{\"a\":1}");
	ck_assert_str_eq(g.ctype, "application/json");
	free(g.body);
	srv_stop(&s);
}
END_TEST

/* A body over 1 MiB goes out at once: no Expect: 100-continue, no 1 s stall. */
START_TEST(test_large_post_no_expect)
{
	struct srv s = srv_start_tcp();
	struct got g = {0};
	size_t n = 2u << 20;
	char *body = malloc(n);
	struct httpc_opts o = {.method = "PUT", .url = url(&s, "/expect"), .body = body,
			       .body_len = n, .content_type = "application/octet-stream"};

	memset(body, 'z', n);
	start(&o, &g);
	free(body); /* copied by httpc_request */
	run_and_close();
	ck_assert_int_eq(g.err.code, 0);
	ck_assert_str_eq(g.body, "PUT expect=no len=2097152");
	ck_assert_uint_lt(g.elapsed_us, 900000);
	free(g.body);
	srv_stop(&s);
}
END_TEST

START_TEST(test_404_passed_through)
{
	struct srv s = srv_start_tcp();
	struct got g = {0};
	struct httpc_opts o = {.url = url(&s, "/missing")};

	start(&o, &g);
	run_and_close();
	ck_assert_int_eq(g.err.code, 0);
	ck_assert_int_eq(g.status, 404);
	ck_assert_str_eq(g.body, "no such thing");
	free(g.body);
	srv_stop(&s);
}
END_TEST

START_TEST(test_connection_refused)
{
	struct srv s = {.port = tu_free_port()}; /* nothing listens there */
	struct got g = {0};
	struct httpc_opts o = {.url = url(&s, "/hello")};

	start(&o, &g);
	run_and_close();
	ck_assert_int_eq(g.calls, 1);
	ck_assert_int_eq(g.status, 0);
	ck_assert_int_eq(g.err.code, ERR_UNAVAILABLE);
	ck_assert_ptr_nonnull(strstr(g.err.msg, "/hello"));
	free(g.body);
}
END_TEST

START_TEST(test_timeout)
{
	struct srv s = srv_start_tcp();
	struct got g = {0};
	struct httpc_opts o = {.url = url(&s, "/slow"), .timeout_ms = 300};

	start(&o, &g);
	run_and_close();
	ck_assert_int_eq(g.calls, 1);
	ck_assert_int_eq(g.status, 0);
	ck_assert_int_eq(g.err.code, ERR_TIMEOUT);
	ck_assert_uint_ge(g.elapsed_us, 250000);
	ck_assert_uint_lt(g.elapsed_us, 5000000);
	free(g.body);
	srv_stop(&s);
}
END_TEST

/* A 200 whose body is cut short (the model server killed mid-file) is no 200. */
START_TEST(test_body_cut_short)
{
	struct srv s = srv_start_tcp();
	struct got g = {0};
	struct httpc_opts o = {.url = url(&s, "/cut"), .on_chunk = on_chunk_ignore};

	start(&o, &g);
	run_and_close();
	ck_assert_int_eq(g.calls, 1);
	ck_assert_int_eq(g.status, 0);
	ck_assert_int_ne(g.err.code, 0);
	free(g.body);
	srv_stop(&s);
}
END_TEST

START_TEST(test_max_response)
{
	struct srv s = srv_start_tcp();
	struct got g = {0};
	struct httpc_opts o = {.url = url(&s, "/big"), .max_response = 1000};

	start(&o, &g);
	run_and_close();
	ck_assert_int_eq(g.err.code, ERR_TOO_LARGE);
	ck_assert_uint_le(g.len, 1000);
	free(g.body);
	srv_stop(&s);
}
END_TEST

static size_t streamed;
static int chunks;

static void on_chunk_count(const char *p, size_t n, void *ud)
{
	for (size_t i = 0; i < n; i++)
		ck_assert_int_eq(p[i], 'a');
	streamed += n;
	chunks++;
}

START_TEST(test_on_chunk_streams)
{
	struct srv s = srv_start_tcp();
	struct got g = {0};
	struct httpc_opts o = {.url = url(&s, "/big"), .max_response = 1000,
			       .on_chunk = on_chunk_count};

	start(&o, &g);
	run_and_close();
	ck_assert_int_eq(g.err.code, 0);
	ck_assert_int_eq(g.status, 200);
	ck_assert_uint_eq(streamed, 1u << 20);
	ck_assert_int_gt(chunks, 1);
	ck_assert_str_eq(g.body, ""); /* nothing kept */
	free(g.body);
	srv_stop(&s);
}
END_TEST

START_TEST(test_out_path_atomic)
{
	struct srv s = srv_start_tcp();
	struct got ok = {0}, bad = {0};
	char good_path[512], bad_path[512];
	struct httpc_opts o1 = {.url = url(&s, "/file"), .out_path = good_path};
	struct httpc_opts o2 = {.url = url(&s, "/fail"), .out_path = bad_path};
	struct stat st;
	char *data;
	size_t len;

	snprintf(good_path, sizeof good_path, "%s/out.txt", tu_tmpdir());
	snprintf(bad_path, sizeof bad_path, "%s/never.txt", tu_tmpdir());
	start(&o1, &ok);
	start(&o2, &bad);
	ck_assert_int_eq(count_tmp_files(tu_tmpdir()), 2); /* both temps exist meanwhile */
	ck_assert_int_ne(stat(good_path, &st), 0);         /* not before success */
	run_and_close();
	ck_assert_int_eq(ok.err.code, 0);
	ck_assert_int_eq(ok.status, 200);
	ck_assert_uint_eq(ok.len, 14);
	data = tu_read_file(good_path, &len);
	ck_assert_ptr_nonnull(data);
	ck_assert_str_eq(data, "file contents\n");
	free(data);
	ck_assert_int_eq(bad.status, 500);
	ck_assert_str_eq(bad.body, "server broke"); /* error bodies stay in memory */
	ck_assert_int_ne(stat(bad_path, &st), 0);
	ck_assert_int_eq(count_tmp_files(tu_tmpdir()), 0);
	free(ok.body);
	free(bad.body);
	srv_stop(&s);
}
END_TEST

START_TEST(test_100_concurrent)
{
	struct srv s = srv_start_tcp();
	static struct got g[100];
	char path[32], want[16];

	for (int i = 0; i < 100; i++) {
		snprintf(path, sizeof path, "/n/%d", i);
		struct httpc_opts o = {.url = url(&s, path)};
		start(&o, &g[i]);
	}
	ck_assert_uint_eq(httpc_active(client), 100);
	run_and_close();
	for (int i = 0; i < 100; i++) {
		snprintf(want, sizeof want, "%d", i);
		ck_assert_int_eq(g[i].calls, 1);
		ck_assert_msg(g[i].err.code == 0, "request %d: %s", i, g[i].err.msg);
		ck_assert_int_eq(g[i].status, 200);
		ck_assert_str_eq(g[i].body, want);
		free(g[i].body);
	}
	srv_stop(&s);
}
END_TEST

static struct httpc_call *trickle_call;
static int trickle_chunks, other_done;

static void maybe_free_client(void)
{
	if (trickle_chunks > 0 && other_done) {
		ck_assert_uint_eq(httpc_active(client), 0);
		httpc_free(client, on_freed, &freed);
	}
}

static void on_chunk_cancel(const char *p, size_t n, void *ud)
{
	trickle_chunks++;
	httpc_cancel(trickle_call); /* from inside libcurl */
	maybe_free_client();
}

static void on_resp_other(const struct httpc_resp *r, void *ud)
{
	ck_assert_int_eq(r->status, 200);
	other_done = 1;
	maybe_free_client();
}

static void on_resp_never(const struct httpc_resp *r, void *ud)
{
	ck_abort_msg("callback of a cancelled call ran");
}

START_TEST(test_cancel)
{
	struct srv s = srv_start_tcp();
	struct err err = {0};
	struct httpc_opts now = {.url = url(&s, "/hello")};
	struct httpc_opts trickle = {.url = url(&s, "/trickle"), .on_chunk = on_chunk_cancel};
	struct httpc_opts other = {.url = url(&s, "/n/7")};
	struct httpc_call *c1;

	c1 = httpc_request(client, &now, on_resp_never, NULL, &err);
	ck_assert_ptr_nonnull(c1);
	httpc_cancel(c1); /* before any I/O */
	trickle_call = httpc_request(client, &trickle, on_resp_never, NULL, &err);
	ck_assert_ptr_nonnull(trickle_call);
	ck_assert_ptr_nonnull(httpc_request(client, &other, on_resp_other, NULL, &err));
	ck_assert_uint_eq(httpc_active(client), 2);
	run_and_close();
	ck_assert_int_eq(trickle_chunks, 1);
	ck_assert_int_eq(other_done, 1);
	srv_stop(&s);
}
END_TEST

START_TEST(test_unix_socket)
{
	struct srv s = srv_start_unix();
	struct got g = {0};
	struct httpc_opts o = {.url = "http://localhost/hello", .unix_socket = s.path};

	start(&o, &g);
	run_and_close();
	ck_assert_msg(g.err.code == 0, "%s", g.err.msg);
	ck_assert_int_eq(g.status, 200);
	ck_assert_str_eq(g.body, "hello world");
	free(g.body);
	srv_stop(&s);
}
END_TEST

static int started_chunks;

static void on_chunk_then_free(const char *p, size_t n, void *ud)
{
	/* Once all five streams are mid-body, free the client from inside libcurl. */
	if (++started_chunks == 5)
		httpc_free(client, on_freed, &freed);
}

START_TEST(test_free_in_flight)
{
	struct srv s = srv_start_tcp();
	struct err err = {0};
	struct httpc_opts trickle = {.url = url(&s, "/trickle"), .on_chunk = on_chunk_then_free};
	struct httpc_opts slow = {.url = url(&s, "/slow")};

	for (int i = 0; i < 5; i++)
		ck_assert_ptr_nonnull(httpc_request(client, &trickle, on_resp_never, NULL, &err));
	for (int i = 0; i < 3; i++)
		ck_assert_ptr_nonnull(httpc_request(client, &slow, on_resp_never, NULL, &err));
	ck_assert_uint_eq(httpc_active(client), 8);
	run_and_close(); /* asserts done ran once and uv_loop_close() == 0 */
	ck_assert_int_eq(started_chunks, 5);
	srv_stop(&s);
}
END_TEST

START_TEST(test_bad_options)
{
	struct err err = {0};
	struct httpc_opts no_url = {.url = NULL};
	struct httpc_opts bad_method = {.method = "GE T", .url = "http://127.0.0.1:1/"};
	const char *inject[] = {"X-A: 1\r\nX-B: 2", NULL};
	struct httpc_opts bad_header = {.url = "http://127.0.0.1:1/", .headers = inject};

	ck_assert_ptr_null(httpc_request(client, &no_url, on_resp_never, NULL, &err));
	ck_assert_int_eq(err.code, ERR_INVALID);
	err_clear(&err);
	ck_assert_ptr_null(httpc_request(client, &bad_method, on_resp_never, NULL, &err));
	ck_assert_int_eq(err.code, ERR_INVALID);
	err_clear(&err);
	ck_assert_ptr_null(httpc_request(client, &bad_header, on_resp_never, NULL, &err));
	ck_assert_int_eq(err.code, ERR_INVALID);
	ck_assert_uint_eq(httpc_active(client), 0);
	httpc_free(client, on_freed, &freed);
	run_and_close();
}
END_TEST

Suite *suite_httpc(void)
{
	Suite *s = suite_create("httpc");
	TCase *tc = tcase_create("httpc");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_get_200);
	tcase_add_test(tc, test_post_echo);
	tcase_add_test(tc, test_large_post_no_expect);
	tcase_add_test(tc, test_404_passed_through);
	tcase_add_test(tc, test_connection_refused);
	tcase_add_test(tc, test_timeout);
	tcase_add_test(tc, test_body_cut_short);
	tcase_add_test(tc, test_max_response);
	tcase_add_test(tc, test_on_chunk_streams);
	tcase_add_test(tc, test_out_path_atomic);
	tcase_add_test(tc, test_100_concurrent);
	tcase_add_test(tc, test_cancel);
	tcase_add_test(tc, test_unix_socket);
	tcase_add_test(tc, test_free_in_flight);
	tcase_add_test(tc, test_bad_options);
	suite_add_tcase(s, tc);
	return s;
}
