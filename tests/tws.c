/*
 * tws.c - see tws.h. Frames are parsed from t->buf, which holds bytes read
 * and not yet consumed (starting with any that came with the 101).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "tws.h"

#define TWS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define TWS_MAX_MESSAGE ((uint64_t)256 << 20) /* bytes */
#define TWS_MAX_HEAD (64 * 1024)              /* bytes of the 101 head */
#define TWS_SEND_TIMEOUT_S 10

struct tws {
	int fd;
	unsigned char *buf; /* read, not yet consumed */
	size_t len, cap;
	int close_code;     /* from the server's close frame; 0 before it */
	int close_sent;
	int closed;         /* the server's close frame arrived */
};

struct tws_hdr {
	int fin, opcode, masked;
	uint64_t plen;
	size_t hlen;
	unsigned char mask[4];
};

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int send_all(int fd, const void *p, size_t n)
{
	const char *c = p;

	while (n > 0) {
		ssize_t w = send(fd, c, n, MSG_NOSIGNAL);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		c += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Reads what is there within the deadline. 1: got bytes, 0: EOF, -1: timeout or error. */
static int fill(struct tws *t, int64_t deadline)
{
	struct pollfd pfd = {.fd = t->fd, .events = POLLIN};
	int64_t left = deadline - now_ms();
	ssize_t r;

	if (left < 0)
		left = 0;
	if (poll(&pfd, 1, (int)left) <= 0)
		return -1;
	if (t->cap - t->len < 65536) {
		t->cap = t->cap ? t->cap * 2 : 131072;
		t->buf = realloc(t->buf, t->cap);
	}
	r = recv(t->fd, t->buf + t->len, t->cap - t->len, 0);
	if (r < 0)
		return errno == EINTR ? 1 : -1;
	t->len += (size_t)r;
	return r > 0;
}

static int need(struct tws *t, size_t n, int64_t deadline)
{
	while (t->len < n)
		if (fill(t, deadline) <= 0)
			return -1;
	return 0;
}

static void consume(struct tws *t, size_t n)
{
	memmove(t->buf, t->buf + n, t->len - n);
	t->len -= n;
}

size_t tws_frame(uint8_t **out, int opcode, int fin, const void *p, size_t n)
{
	uint8_t *f = malloc(n + 14), mask[4];
	const uint8_t *src = p;
	size_t h = 0;

	f[h++] = (uint8_t)((fin ? 0x80 : 0) | (opcode & 0x0f));
	if (n < 126) {
		f[h++] = (uint8_t)(0x80 | n);
	} else if (n < 65536) {
		f[h++] = 0x80 | 126;
		f[h++] = (uint8_t)(n >> 8);
		f[h++] = (uint8_t)n;
	} else {
		f[h++] = 0x80 | 127;
		for (int i = 7; i >= 0; i--)
			f[h++] = (uint8_t)((uint64_t)n >> (8 * i));
	}
	if (getrandom(mask, sizeof mask, 0) != (ssize_t)sizeof mask)
		memset(mask, 0x5a, sizeof mask);
	memcpy(f + h, mask, 4);
	h += 4;
	for (size_t i = 0; i < n; i++)
		f[h + i] = src[i] ^ mask[i % 4];
	*out = f;
	return h + n;
}

int tws_send_frame(struct tws *t, int opcode, int fin, const void *p, size_t n)
{
	uint8_t *f;
	size_t len = tws_frame(&f, opcode, fin, p, n);
	int r = send_all(t->fd, f, len);

	free(f);
	return r;
}

int tws_send_text(struct tws *t, const char *text)
{
	return tws_send_frame(t, TWS_TEXT, 1, text, strlen(text));
}

int tws_send_binary(struct tws *t, const void *p, size_t n)
{
	return tws_send_frame(t, TWS_BINARY, 1, p, n);
}

int tws_send_close(struct tws *t, int code)
{
	unsigned char c[2] = {(unsigned char)(code >> 8), (unsigned char)code};

	t->close_sent = 1;
	return tws_send_frame(t, TWS_CLOSE, 1, c, code ? 2 : 0);
}

/* Parses a frame header at the start of t->buf. */
static int read_hdr(struct tws *t, int64_t deadline, struct tws_hdr *h)
{
	size_t ext;

	if (need(t, 2, deadline) < 0 || (t->buf[0] & 0x70))
		return -1; /* no extension was negotiated: RSV must be 0 */
	h->fin = t->buf[0] >> 7;
	h->opcode = t->buf[0] & 0x0f;
	h->masked = t->buf[1] >> 7;
	h->plen = t->buf[1] & 0x7f;
	ext = h->plen == 126 ? 2 : h->plen == 127 ? 8 : 0;
	h->hlen = 2 + ext + (h->masked ? 4 : 0);
	if (need(t, h->hlen, deadline) < 0)
		return -1;
	if (ext)
		h->plen = 0;
	for (size_t i = 0; i < ext; i++)
		h->plen = (h->plen << 8) | t->buf[2 + i];
	if (h->masked)
		memcpy(h->mask, t->buf + 2 + ext, 4);
	return h->plen > TWS_MAX_MESSAGE ? -1 : 0;
}

/* Reads one frame; *payload is malloc'd and NUL-terminated. */
static int read_frame(struct tws *t, int64_t deadline, struct tws_hdr *h,
		      unsigned char **payload)
{
	unsigned char *p;

	if (read_hdr(t, deadline, h) < 0 || need(t, h->hlen + h->plen, deadline) < 0)
		return -1;
	p = malloc(h->plen + 1);
	memcpy(p, t->buf + h->hlen, h->plen);
	for (size_t i = 0; h->masked && i < h->plen; i++)
		p[i] ^= h->mask[i % 4];
	p[h->plen] = '\0';
	consume(t, h->hlen + h->plen);
	*payload = p;
	return 0;
}

/* Handles a control frame. 1: the server closed; 0: go on; -1: error. */
static int control(struct tws *t, const struct tws_hdr *h, const unsigned char *p)
{
	if (!h->fin || h->plen > 125)
		return -1;
	if (h->opcode == TWS_PING)
		return tws_send_frame(t, TWS_PONG, 1, p, h->plen) < 0 ? -1 : 0;
	if (h->opcode == TWS_PONG)
		return 0;
	if (h->opcode != TWS_CLOSE)
		return -1;
	t->closed = 1;
	t->close_code = h->plen >= 2 ? (p[0] << 8) | p[1] : 1005;
	if (!t->close_sent) {
		t->close_sent = 1;
		tws_send_frame(t, TWS_CLOSE, 1, p, h->plen >= 2 ? 2 : 0);
	}
	return 1;
}

/* Appends a data frame to the message being assembled. -1: protocol error. */
static int assemble(const struct tws_hdr *h, const unsigned char *p,
		    unsigned char **msg, size_t *mlen, int *mop)
{
	if ((h->opcode == TWS_CONT) != (*mop >= 0))
		return -1; /* a continuation without a start, or a start inside one */
	if (h->opcode != TWS_CONT && h->opcode != TWS_TEXT && h->opcode != TWS_BINARY)
		return -1;
	if (*mop < 0)
		*mop = h->opcode;
	if (*mlen + h->plen > TWS_MAX_MESSAGE)
		return -1;
	*msg = realloc(*msg, *mlen + h->plen + 1);
	memcpy(*msg + *mlen, p, h->plen);
	*mlen += h->plen;
	(*msg)[*mlen] = '\0';
	return 0;
}

static void deliver(unsigned char *msg, size_t mlen, int mop, int *opcode,
		    char **data, size_t *len)
{
	if (msg == NULL)
		msg = calloc(1, 1);
	if (opcode)
		*opcode = mop;
	if (len)
		*len = mlen;
	if (data)
		*data = (char *)msg;
	else
		free(msg);
}

int tws_recv(struct tws *t, int timeout_ms, int *opcode, char **data, size_t *len)
{
	int64_t deadline = now_ms() + timeout_ms;
	unsigned char *msg = NULL, *p;
	size_t mlen = 0;
	int mop = -1, r;
	struct tws_hdr h;

	if (t->closed)
		return 1;
	for (;;) {
		if (read_frame(t, deadline, &h, &p) < 0)
			break;
		if (h.opcode >= 8)
			r = control(t, &h, p);
		else
			r = assemble(&h, p, &msg, &mlen, &mop);
		free(p);
		if (r != 0) {
			free(msg);
			return r;
		}
		if (h.opcode < 8 && h.fin) {
			deliver(msg, mlen, mop, opcode, data, len);
			return 0;
		}
	}
	free(msg);
	return -1;
}

int tws_close_code(const struct tws *t)
{
	return t->close_code;
}

int tws_fd(const struct tws *t)
{
	return t->fd;
}

static void accept_key(const char *key, char out[32])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	char cat[128];
	int n = snprintf(cat, sizeof cat, "%s%s", key, TWS_GUID);

	EVP_Digest(cat, (size_t)n, md, &mdlen, EVP_sha1(), NULL);
	EVP_EncodeBlock((unsigned char *)out, md, (int)mdlen);
}

static int connect_port(int port)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	struct timeval tv = {.tv_sec = TWS_SEND_TIMEOUT_S};
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0)
		return -1;
	if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
		close(fd);
		return -1;
	}
	/* A server that stops reading must not block a test forever. */
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
	return fd;
}

/* The value of header `name` in the head [0..n), copied into out. */
static int head_value(const char *head, const char *name, char *out, size_t sz)
{
	size_t nlen = strlen(name);
	const char *p = strstr(head, "\r\n");

	while (p && p[2] != '\r') {
		const char *line = p + 2, *end = strstr(line, "\r\n");

		if (end && strncasecmp(line, name, nlen) == 0 && line[nlen] == ':') {
			const char *v = line + nlen + 1;

			v += strspn(v, " \t");
			snprintf(out, sz, "%.*s", (int)(end - v), v);
			return 0;
		}
		p = end;
	}
	return -1;
}

/* Reads the answer head; returns its status and leaves later bytes in t->buf. */
static int read_answer(struct tws *t, const char *expect, int64_t deadline)
{
	char *head, got[64];
	unsigned char *end = NULL;
	int status = 0;

	while (end == NULL) {
		if (t->len > TWS_MAX_HEAD || fill(t, deadline) <= 0)
			return 0;
		end = memmem(t->buf, t->len, "\r\n\r\n", 4);
	}
	head = strndup((char *)t->buf, (size_t)(end + 4 - t->buf));
	consume(t, (size_t)(end + 4 - t->buf));
	if (sscanf(head, "HTTP/1.%*d %d", &status) != 1)
		status = 0;
	if (status == 101 && (head_value(head, "Sec-WebSocket-Accept", got, sizeof got) < 0 ||
			      strcmp(got, expect) != 0))
		status = -101; /* a 101 with a wrong key is no upgrade */
	free(head);
	return status;
}

static int send_request(int fd, int port, const char *path, const char *key,
			const char *extra, const void *early, size_t early_len)
{
	char *req = NULL;
	size_t n;
	int r = asprintf(&req,
			 "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
			 "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
			 "Sec-WebSocket-Version: 13\r\n%s\r\n",
			 path, port, key, extra ? extra : "");

	if (r < 0)
		return -1;
	n = (size_t)r;
	if (early_len) {
		req = realloc(req, n + early_len);
		memcpy(req + n, early, early_len);
		n += early_len;
	}
	r = send_all(fd, req, n);
	free(req);
	return r;
}

struct tws *tws_connect_ex(int port, const char *path_and_query,
			   const char *extra_headers, const void *early,
			   size_t early_len, int timeout_ms, int *status)
{
	unsigned char rnd[16];
	char key[32], expect[32];
	struct tws *t;
	int st, fd;

	if (status)
		*status = 0;
	if (getrandom(rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd)
		return NULL;
	EVP_EncodeBlock((unsigned char *)key, rnd, sizeof rnd);
	accept_key(key, expect);
	fd = connect_port(port);
	if (fd < 0)
		return NULL;
	t = calloc(1, sizeof *t);
	t->fd = fd;
	if (send_request(fd, port, path_and_query, key, extra_headers, early, early_len) < 0) {
		tws_close(t);
		return NULL;
	}
	st = read_answer(t, expect, now_ms() + timeout_ms);
	if (status)
		*status = st < 0 ? -st : st;
	if (st != 101) {
		t->close_sent = t->closed = 1; /* nothing to say goodbye to */
		tws_close(t);
		return NULL;
	}
	return t;
}

struct tws *tws_connect(int port, const char *path_and_query, int timeout_ms)
{
	return tws_connect_ex(port, path_and_query, NULL, NULL, 0, timeout_ms, NULL);
}

void tws_close(struct tws *t)
{
	int64_t deadline;

	if (t == NULL)
		return;
	if (!t->close_sent)
		tws_send_close(t, 1000);
	deadline = now_ms() + 1000;
	while (!t->closed) {
		int64_t left = deadline - now_ms();
		char *data = NULL;

		if (left <= 0 || tws_recv(t, (int)left, NULL, &data, NULL) < 0) {
			free(data);
			break;
		}
		free(data);
	}
	close(t->fd);
	free(t->buf);
	free(t);
}
