/*
 * test_wsc.c - the WebSocket client against a minimal WebSocket server.
 *
 * The server is a forked child (own process group, PR_SET_PDEATHSIG) that
 * forks per connection, completes the handshake with plain blocking
 * sockets and plays a script chosen by the request path (srv_route). What
 * the server observes (masking, close codes, FIN) is written as lines to a
 * report pipe that the test reads with a deadline.
 */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

#include "testutil.h"
#include "util.h"
#include "wsc.h"

#define BIG_LEN 70000 /* needs the 64-bit length form */

/* ---- the server ----------------------------------------------------------- */

static int rep[2]; /* report pipe: server writes, test reads */

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

static int read_full(int fd, void *p, size_t n)
{
	char *c = p;

	while (n > 0) {
		ssize_t r = read(fd, c, n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		c += r;
		n -= (size_t)r;
	}
	return 0;
}

static void report(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void report(const char *fmt, ...)
{
	char line[256];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof line - 1, fmt, ap);
	va_end(ap);
	line[n++] = '\n';
	write_all(rep[1], line, (size_t)n); /* one write under PIPE_BUF: atomic */
}

/* Appends one unmasked frame header + payload to out; returns its length. */
static size_t frame(char *out, int fin, int opcode, const void *payload, size_t len)
{
	size_t h = 2;

	out[0] = (char)((fin ? 0x80 : 0) | opcode);
	if (len < 126) {
		out[1] = (char)len;
	} else if (len < 65536) {
		out[1] = 126;
		out[2] = (char)(len >> 8);
		out[3] = (char)len;
		h = 4;
	} else {
		out[1] = 127;
		for (int i = 0; i < 8; i++)
			out[2 + i] = (char)((uint64_t)len >> (56 - 8 * i));
		h = 10;
	}
	memcpy(out + h, payload, len);
	return h + len;
}

static void send_frame(int fd, int fin, int opcode, const void *payload, size_t len)
{
	char *out = malloc(len + 14);
	size_t n = frame(out, fin, opcode, payload, len);

	write_all(fd, out, n);
	free(out);
}

static void send_close(int fd, int code, const char *reason)
{
	char p[128] = {(char)(code >> 8), (char)code};
	size_t n = strlen(reason);

	memcpy(p + 2, reason, n);
	send_frame(fd, 1, 8, p, n + 2);
}

/* Reads one client frame; returns the payload (caller frees) or NULL on EOF. */
static char *read_frame(int fd, int *opcode, size_t *len, int *masked)
{
	unsigned char h[2], ext[8], key[4];
	uint64_t n;
	char *p;

	if (read_full(fd, h, 2) < 0)
		return NULL;
	*opcode = h[0] & 0x0f;
	*masked = (h[1] & 0x80) != 0;
	n = h[1] & 0x7f;
	if (n == 126 || n == 127) {
		size_t k = n == 126 ? 2 : 8;
		if (read_full(fd, ext, k) < 0)
			return NULL;
		n = 0;
		for (size_t i = 0; i < k; i++)
			n = n << 8 | ext[i];
	}
	if (*masked && read_full(fd, key, 4) < 0)
		return NULL;
	p = malloc(n + 1);
	if (read_full(fd, p, n) < 0) {
		free(p);
		return NULL;
	}
	for (uint64_t i = 0; *masked && i < n; i++)
		p[i] ^= (char)key[i % 4];
	p[n] = '\0';
	*len = n;
	return p;
}

/* Reads the upgrade request; fills path and the accept value. Returns 0 or -1. */
static int read_upgrade(int fd, char *path, size_t pathsz, char accept[32])
{
	char head[8192] = "", concat[128], key[64] = "";
	unsigned char digest[EVP_MAX_MD_SIZE];
	unsigned dlen;
	size_t got = 0;
	const char *k;

	while (strstr(head, "\r\n\r\n") == NULL) {
		ssize_t r = read(fd, head + got, sizeof head - got - 1);
		if (r <= 0)
			return -1;
		got += (size_t)r;
		head[got] = '\0';
	}
	sscanf(head, "GET %255s", path);
	path[pathsz - 1] = '\0';
	k = strcasestr(head, "\r\nSec-WebSocket-Key: ");
	if (k == NULL)
		return -1;
	sscanf(k + 21, "%63s", key);
	snprintf(concat, sizeof concat, "%s258EAFA5-E914-47DA-95CA-C5AB0DC85B11", key);
	EVP_Digest(concat, strlen(concat), digest, &dlen, EVP_sha1(), NULL);
	EVP_EncodeBlock((unsigned char *)accept, digest, (int)dlen);
	return 0;
}

static int head_101(char *out, const char *accept)
{
	return sprintf(out,
		       "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
		       "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
		       accept);
}

static void send_101(int fd, const char *accept)
{
	char out[512];

	write_all(fd, out, (size_t)head_101(out, accept));
}

static void drain_until_eof(int fd)
{
	char b[4096];

	while (read(fd, b, sizeof b) > 0)
		;
}

/* Reads the client's close frame and reports its code, then waits for FIN. */
static void expect_close(int fd)
{
	int op = 0, masked;
	size_t len;
	char *p;

	for (;;) {
		p = read_frame(fd, &op, &len, &masked);
		if (p == NULL || op == 8)
			break;
		free(p);
	}
	if (p == NULL) {
		report("no close");
		return;
	}
	report("close:%d:%s", len >= 2 ? ((unsigned char)p[0] << 8 | (unsigned char)p[1]) : 0,
	       masked ? "masked" : "unmasked");
	free(p);
	drain_until_eof(fd);
	report("eof");
}

/* 101 with a text frame in the same write, binary, fragmented text with a ping between. */
static void script_stream(int fd, const char *accept)
{
	char out[1024];
	const unsigned char bin[] = {0, 1, 2, 255};
	int op, masked;
	size_t n = (size_t)head_101(out, accept), len;
	char *p;

	n += frame(out + n, 1, 1, "hello", 5);
	write_all(fd, out, n);
	send_frame(fd, 1, 2, bin, sizeof bin);
	send_frame(fd, 0, 1, "frag", 4);
	send_frame(fd, 1, 9, "p", 1); /* a ping between fragments */
	send_frame(fd, 1, 0, "ment", 4);
	p = read_frame(fd, &op, &len, &masked);
	report("pong:%d:%s:%s", op, p ? p : "", masked ? "masked" : "unmasked");
	free(p);
	send_frame(fd, 1, 1, "after-ping", 10);
	send_close(fd, 1000, "bye");
	expect_close(fd);
}

/* Echoes text as "echo:" + text until the client closes. */
static void script_echo(int fd, const char *accept)
{
	int op, masked;
	size_t len;
	char *p, *reply;

	send_101(fd, accept);
	for (;;) {
		p = read_frame(fd, &op, &len, &masked);
		if (p == NULL)
			return;
		if (!masked)
			report("unmasked frame");
		if (op == 8) {
			report("close:%d", len >= 2 ? ((unsigned char)p[0] << 8 | (unsigned char)p[1]) : 0);
			send_frame(fd, 1, 8, p, len);
			free(p);
			drain_until_eof(fd);
			report("eof");
			return;
		}
		report("text:%zu", len);
		reply = malloc(len + 6);
		memcpy(reply, "echo:", 5);
		memcpy(reply + 5, p, len);
		send_frame(fd, 1, 1, reply, len + 5);
		free(reply);
		free(p);
	}
}

static void script_too_big(int fd, const char *accept)
{
	unsigned char h[10 + 1000] = {0x82, 127};
	uint64_t n = (17u << 20);

	send_101(fd, accept);
	for (int i = 0; i < 8; i++)
		h[2 + i] = (unsigned char)(n >> (56 - 8 * i));
	/* The header and a little payload; the client must refuse the rest. */
	write_all(fd, h, sizeof h);
	expect_close(fd);
}

static void srv_route(int fd)
{
	char path[256] = "", accept[32];

	if (read_upgrade(fd, path, sizeof path, accept) < 0)
		return;
	if (strcmp(path, "/stream") == 0) {
		script_stream(fd, accept);
	} else if (strcmp(path, "/echo") == 0) {
		script_echo(fd, accept);
	} else if (strcmp(path, "/badaccept") == 0) {
		send_101(fd, "dGhlIHNhbXBsZSBub25jZQ==");
		drain_until_eof(fd);
	} else if (strcmp(path, "/silent") == 0) {
		drain_until_eof(fd);
	} else if (strcmp(path, "/peerclose") == 0) {
		send_101(fd, accept);
		send_close(fd, 1001, "going away");
		expect_close(fd);
	} else if (strcmp(path, "/error") == 0) {
		send_101(fd, accept);
		send_close(fd, 1011, "oops");
		expect_close(fd);
	} else if (strcmp(path, "/toobig") == 0) {
		script_too_big(fd, accept);
	} else if (strcmp(path, "/eof") == 0) {
		send_101(fd, accept);
	}
}

static void die_with_parent(pid_t parent)
{
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != parent)
		_exit(0);
}

static void srv_loop(int lfd, pid_t parent)
{
	die_with_parent(parent);
	signal(SIGCHLD, SIG_IGN);
	signal(SIGPIPE, SIG_IGN);
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

static pid_t srv_pid;
static int srv_port;

static void srv_start(void)
{
	struct sockaddr_in sa = {.sin_family = AF_INET};
	socklen_t sl = sizeof sa;
	pid_t parent = getpid();
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
	ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
	ck_assert_int_eq(listen(fd, 64), 0);
	srv_port = ntohs(sa.sin_port);
	ck_assert_int_eq(pipe(rep), 0);
	srv_pid = fork();
	ck_assert_int_ge(srv_pid, 0);
	if (srv_pid == 0) {
		setpgid(0, 0);
		close(rep[0]);
		srv_loop(fd, parent);
	}
	setpgid(srv_pid, srv_pid); /* as the child does: no race with kill(-pid) */
	close(fd);
	close(rep[1]);
}

static void srv_stop(void)
{
	kill(-srv_pid, SIGKILL);
	kill(srv_pid, SIGKILL);
	waitpid(srv_pid, NULL, 0);
	close(rep[0]);
}

/* Waits up to 3 s for the server to report `want` (skipping other lines). */
static void expect_report(const char *want)
{
	static char lines[65536];
	static size_t len;
	uint64_t deadline = util_mono_ms() + 3000;

	for (;;) {
		char *nl = memchr(lines, '\n', len);
		if (nl) {
			size_t n = (size_t)(nl - lines);
			int match = strlen(want) == n && memcmp(lines, want, n) == 0;
			memmove(lines, nl + 1, len - n - 1);
			len -= n + 1;
			if (match)
				return;
			continue;
		}
		uint64_t now = util_mono_ms();
		struct pollfd pfd = {.fd = rep[0], .events = POLLIN};
		ck_assert_msg(now < deadline, "server never reported '%s'", want);
		if (poll(&pfd, 1, (int)(deadline - now)) <= 0)
			continue;
		ssize_t r = read(rep[0], lines + len, sizeof lines - len);
		ck_assert_msg(r > 0, "server never reported '%s'", want);
		len += (size_t)r;
	}
}

/* ---- the client side ---------------------------------------------------- */

static uv_loop_t loop;
static char events[1 << 20]; /* "open|text:..|close:0" */
static int opens, closes, close_status;
static struct err close_why;
static int echoes;

static void event(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void event(const char *fmt, ...)
{
	size_t n = strlen(events);
	va_list ap;

	if (n)
		events[n++] = '|';
	va_start(ap, fmt);
	vsnprintf(events + n, sizeof events - n, fmt, ap);
	va_end(ap);
}

static void on_open(struct wsc *w, void *ud)
{
	opens++;
	event("open");
}

static void on_text(struct wsc *w, const char *msg, size_t len, void *ud)
{
	ck_assert_uint_eq(strlen(msg), len); /* NUL-terminated */
	if (len > 64)
		event("text:%zu", len);
	else
		event("text:%s", msg);
}

static void on_binary(struct wsc *w, const void *msg, size_t len, void *ud)
{
	const unsigned char *b = msg;
	char hex[64] = "";

	for (size_t i = 0; i < len && i < 16; i++)
		snprintf(hex + 2 * i, 3, "%02x", b[i]);
	event("bin:%zu:%s", len, hex);
}

static void on_close(struct wsc *w, const struct err *why, void *ud)
{
	closes++;
	close_why = *why;
	close_status = wsc_close_status(w);
	event("close:%d", why->code);
	wsc_close(w); /* harmless here */
	ck_assert_int_eq(wsc_send_text(w, "x", 1), -1);
}

static const struct wsc_callbacks callbacks = {on_open, on_text, on_binary, on_close};

static void setup(void)
{
	ck_assert_int_eq(uv_loop_init(&loop), 0);
	srv_start();
}

static void teardown(void)
{
	srv_stop();
}

static struct wsc *connect_path(const char *path, const struct wsc_callbacks *cb,
				uint64_t timeout_ms)
{
	struct err err = {0};
	struct wsc *w = wsc_connect(&loop, "127.0.0.1", srv_port, path, cb, NULL, timeout_ms, &err);

	ck_assert_msg(w != NULL, "wsc_connect: %s", err.msg);
	return w;
}

static void run_and_close(void)
{
	ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
	ck_assert_int_eq(closes, 1);
	ck_assert_int_eq(uv_loop_close(&loop), 0);
}

/* ---- tests -------------------------------------------------------------- */

START_TEST(test_receive_in_order)
{
	connect_path("/stream", &callbacks, 0);
	run_and_close();
	ck_assert_str_eq(events, "open|text:hello|bin:4:000102ff|text:fragment|text:after-ping|"
				 "close:0");
	ck_assert_int_eq(close_status, 1000);
	expect_report("pong:10:p:masked"); /* wslay answered the ping, masked */
	expect_report("close:1000:masked"); /* and the close */
	expect_report("eof");               /* then sent FIN */
}
END_TEST

static char big[BIG_LEN];

static void on_open_send(struct wsc *w, void *ud)
{
	on_open(w, ud);
	for (size_t i = 0; i < sizeof big; i++)
		big[i] = (char)('a' + i % 26);
	ck_assert_int_eq(wsc_send_text(w, "hi there", 8), 0);
	ck_assert_int_eq(wsc_send_text(w, big, sizeof big), 0);
}

static void on_text_echo(struct wsc *w, const char *msg, size_t len, void *ud)
{
	on_text(w, msg, len, ud);
	if (len > 64) {
		ck_assert_uint_eq(len, BIG_LEN + 5);
		ck_assert_int_eq(memcmp(msg + 5, big, BIG_LEN), 0);
	}
	if (++echoes == 2) {
		wsc_close(w);
		ck_assert_int_eq(wsc_send_text(w, "late", 4), -1);
	}
}

START_TEST(test_send_and_close)
{
	struct wsc_callbacks cb = callbacks;

	cb.on_open = on_open_send;
	cb.on_text = on_text_echo;
	connect_path("/echo", &cb, 0);
	run_and_close();
	ck_assert_str_eq(events, "open|text:echo:hi there|text:70005|close:0");
	expect_report("text:8");
	expect_report("text:70000");
	expect_report("close:1000");
	expect_report("eof");
}
END_TEST

START_TEST(test_bad_accept)
{
	connect_path("/badaccept", &callbacks, 0);
	run_and_close();
	ck_assert_int_eq(opens, 0);
	ck_assert_int_eq(close_why.code, ERR_UNAVAILABLE);
	ck_assert_ptr_nonnull(strstr(close_why.msg, "Sec-WebSocket-Accept"));
}
END_TEST

START_TEST(test_connection_refused)
{
	struct err err = {0};
	struct wsc *w = wsc_connect(&loop, "localhost", tu_free_port(), "/", &callbacks, NULL, 0,
				    &err);

	ck_assert_ptr_nonnull(w);
	run_and_close();
	ck_assert_int_eq(opens, 0);
	ck_assert_int_eq(close_why.code, ERR_UNAVAILABLE);
}
END_TEST

START_TEST(test_handshake_timeout)
{
	uint64_t t0 = util_mono_ms(), dt;

	connect_path("/silent", &callbacks, 300);
	run_and_close();
	dt = util_mono_ms() - t0;
	ck_assert_int_eq(opens, 0);
	ck_assert_int_eq(close_why.code, ERR_TIMEOUT);
	ck_assert_uint_ge(dt, 250);
	ck_assert_uint_lt(dt, 3000);
}
END_TEST

START_TEST(test_peer_close)
{
	connect_path("/peerclose", &callbacks, 0);
	run_and_close();
	ck_assert_str_eq(events, "open|close:0");
	ck_assert_int_eq(close_status, 1001);
	expect_report("close:1001:masked"); /* the close was echoed */
	expect_report("eof");
}
END_TEST

START_TEST(test_peer_error_status)
{
	connect_path("/error", &callbacks, 0);
	run_and_close();
	ck_assert_int_eq(close_why.code, ERR_UNAVAILABLE);
	ck_assert_int_eq(close_status, 1011);
	expect_report("close:1011:masked");
}
END_TEST

START_TEST(test_message_too_big)
{
	connect_path("/toobig", &callbacks, 0);
	run_and_close();
	ck_assert_str_eq(events, "open|close:4"); /* ERR_TOO_LARGE */
	ck_assert_int_eq(close_why.code, ERR_TOO_LARGE);
	expect_report("close:1009:masked");
}
END_TEST

START_TEST(test_eof_without_close)
{
	connect_path("/eof", &callbacks, 0);
	run_and_close();
	ck_assert_int_eq(opens, 1);
	ck_assert_int_eq(close_why.code, ERR_UNAVAILABLE);
}
END_TEST

START_TEST(test_close_before_open)
{
	struct wsc *w = connect_path("/silent", &callbacks, 0);

	wsc_close(w);
	wsc_close(w); /* twice is harmless */
	ck_assert_int_eq(closes, 0); /* never from inside wsc_close */
	run_and_close();
	ck_assert_int_eq(opens, 0);
	ck_assert_int_eq(close_why.code, 0);
}
END_TEST

START_TEST(test_bad_arguments)
{
	struct err err = {0};

	ck_assert_ptr_null(
		wsc_connect(&loop, "example.com", srv_port, "/", &callbacks, NULL, 0, &err));
	ck_assert_int_eq(err.code, ERR_INVALID);
	err_clear(&err);
	ck_assert_ptr_null(
		wsc_connect(&loop, "127.0.0.1", srv_port, "no-slash", &callbacks, NULL, 0, &err));
	ck_assert_int_eq(err.code, ERR_INVALID);
	err_clear(&err);
	ck_assert_ptr_null(
		wsc_connect(&loop, "127.0.0.1", srv_port, "/a b", &callbacks, NULL, 0, &err));
	ck_assert_int_eq(err.code, ERR_INVALID);
	ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
	ck_assert_int_eq(closes, 0);
	ck_assert_int_eq(uv_loop_close(&loop), 0);
}
END_TEST

Suite *suite_wsc(void)
{
	Suite *s = suite_create("wsc");
	TCase *tc = tcase_create("wsc");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 20);
	tcase_add_test(tc, test_receive_in_order);
	tcase_add_test(tc, test_send_and_close);
	tcase_add_test(tc, test_bad_accept);
	tcase_add_test(tc, test_connection_refused);
	tcase_add_test(tc, test_handshake_timeout);
	tcase_add_test(tc, test_peer_close);
	tcase_add_test(tc, test_peer_error_status);
	tcase_add_test(tc, test_message_too_big);
	tcase_add_test(tc, test_eof_without_close);
	tcase_add_test(tc, test_close_before_open);
	tcase_add_test(tc, test_bad_arguments);
	suite_add_tcase(s, tc);
	return s;
}
