/*
 * http_internal.h - not part of the public interface (http.h). Two parts:
 *
 * First, what ws.c needs from the HTTP layer: taking a connection over
 * after a request is answered with a head (101 or a chunked stream),
 * writing to it, and shutting it down.
 *
 * A taken-over connection hands every byte it reads to ops->on_read, in
 * order (including bytes that arrived together with the request head), and
 * calls ops->on_close exactly once: when a graceful shutdown has flushed
 * the last write, or when the connection closes (peer gone, error, timeout,
 * http_server_close), whichever comes first. ops->on_close is never called
 * from inside http_conn_write(), http_conn_shutdown() or
 * http_conn_close_soon().
 *
 * Second, what the files of the HTTP layer share among themselves: the
 * server, connection and request structs and the http__ functions, for
 * http.c (server, connections, dispatch), http_request.c (parsing,
 * routing) and http_reply.c (replies, files, streams) only.
 */
#ifndef FNRUN_HTTP_INTERNAL_H
#define FNRUN_HTTP_INTERNAL_H

#include <http_parser.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "buf.h"
#include "http.h"

struct http_conn;

struct http_conn_ops {
	/* Bytes from the peer; data is borrowed for the call. */
	void (*on_read)(void *ud, const char *data, size_t len);
	/* Once; http.c never uses ud afterwards. */
	void (*on_close)(void *ud);
};

/*
 * Answers req with `status`, an optional Content-Type, `fixed` (preformatted
 * "Name: value\r\n" lines, may be NULL), Date, Server and the headers added
 * with http_reply_header(), then gives the connection to ops. The request is
 * freed. Returns the connection (borrowed; valid until ops->on_close), or
 * NULL when the request's connection is already gone (ops is then unused).
 */
struct http_conn *http_req_takeover(struct http_req *req, int status,
				    const char *content_type, const char *fixed,
				    const struct http_conn_ops *ops, void *ud);
/*
 * Writes bufs in order (copied when they cannot be written at once).
 * Returns 0 when all went out now, 1 when some was queued, -1 when the
 * connection is closing or the write failed (it then closes soon).
 */
int http_conn_write(struct http_conn *c, const uv_buf_t *bufs, unsigned n);
/* Bytes queued on the socket and not yet written. */
size_t http_conn_queued(const struct http_conn *c);
/* Flushes what is queued, shuts the write side down, then ops->on_close. */
void http_conn_shutdown(struct http_conn *c);
/* Closes the connection from the next loop iteration. */
void http_conn_close_soon(struct http_conn *c);
/* Closes a taken-over connection if it is still open after ms. */
void http_conn_set_deadline(struct http_conn *c, uint64_t ms);
/* The server's limits (defaults filled in); borrowed. */
const struct http_limits *http_conn_limits(const struct http_conn *c);

/* ---- shared by http.c, http_request.c and http_reply.c only ---- */

#define READ_CHUNK (64 * 1024)       /* bytes per read */
#define FILE_CHUNK (64 * 1024)       /* bytes per file write */
#define WRITE_SOFT_CAP (1024 * 1024) /* hold pipelined requests above this backlog */
#define EXTRA_MAX (64 * 1024)        /* bytes of http_reply_header() lines */

enum conn_state {
	CONN_READING,  /* parsing requests */
	CONN_HANDLING, /* c->req is with its handler */
	CONN_FILE,     /* sending a file body */
	CONN_TAKEN,    /* owned by c->ops: a stream or a WebSocket */
	CONN_SHUTDOWN, /* flushing, then reading and discarding until EOF */
};

enum hdr_state { HS_NONE, HS_NAME, HS_VALUE };
enum conn_hdr { CONN_HDR_NONE, CONN_HDR_CLOSE, CONN_HDR_KEEP };

struct http_pair {
	char *name;  /* owned */
	char *value; /* owned */
};

struct http_req {
	struct http_conn *conn; /* NULL once detached (the connection died) */
	uv_loop_t *loop;        /* for streams started on a detached request */
	void *data;             /* the server's cfg->data */
	const char *method;     /* static, from http-parser */
	struct buf url;         /* the request target as received */
	char *raw_path;         /* owned; undecoded, without query */
	char *path;             /* owned; decoded, alias prefix removed */
	const char *param;      /* into path, or "" */
	struct http_pair *hdrs; /* owned, nhdrs used */
	size_t nhdrs;
	struct buf hname, hvalue; /* the header being parsed */
	enum hdr_state hstate;
	struct http_pair *query; /* owned, nquery used */
	size_t nquery;
	struct buf body;
	struct buf extra; /* "Name: value\r\n" lines for the response */
	const struct http_route *route;
	int preset;        /* nonzero: the status answered without a handler */
	size_t head_bytes; /* URL, header names and values seen */
	unsigned is_head : 1, keep_alive : 1, upgrade : 1, http10 : 1;
	char peer[48];
};

struct http_conn {
	uv_tcp_t tcp;
	uv_timer_t timer;
	uv_shutdown_t sreq;
	struct http_server *srv;
	struct http_conn *prev, *next; /* in srv->conns */
	http_parser parser;
	struct buf in;         /* received, not yet parsed (or not yet given to ops) */
	struct http_req *req;  /* owned while parsing; with the handler when HANDLING */
	enum conn_state state;
	const struct http_conn_ops *ops; /* set when CONN_TAKEN */
	void *ops_ud;
	int file_fd;           /* -1 unless CONN_FILE */
	uint64_t file_off;     /* bytes */
	uint64_t file_left;    /* bytes */
	uint64_t deadline;     /* loop ms when a taken connection closes; 0: none */
	unsigned nreq;         /* requests dispatched */
	int pending_closes;    /* handle close callbacks still to come */
	int err_status;        /* answer when the parser stops on our error */
	unsigned closing : 1, reading : 1, processing : 1, kick : 1, close_soon : 1,
		peer_eof : 1, shut_done : 1, in_message : 1, in_body : 1, keep_alive : 1,
		counted : 1, wait_drain : 1;
	char peer[48];
};

struct http_server {
	uv_loop_t *loop;
	uv_tcp_t listener;
	struct http_config cfg;    /* defaults filled in; routes borrowed */
	struct http_limits limits; /* defaults filled in */
	char *host;                /* owned; cfg.host points here */
	char *alias;               /* owned or NULL; cfg.alias_prefix */
	int port;
	struct http_conn *conns;   /* every connection not yet freed */
	size_t nconns;             /* counted (not rejected) connections */
	int closing;
	int listener_closed;
	void (*done)(void *arg);
	void *done_arg;
	char rbuf[READ_CHUNK]; /* shared: each read is consumed before the next */
	char fbuf[FILE_CHUNK]; /* file chunks; copied by http_conn_write if queued */
};

/* http.c: connection state changes. */
/* Starts or stops the timer for the state's timeout (http.c, invariant 5). */
void http__conn_arm_timer(struct http_conn *c);
/* Processes buffered bytes from the next loop iteration. */
void http__conn_kick(struct http_conn *c);
/* Reads while there is room for pipelined bytes; always when taken over. */
void http__conn_update_reading(struct http_conn *c);
void http__conn_file_close(struct http_conn *c);
/* Closes at once: queued writes are dropped; a held request is detached. */
void http__conn_close(struct http_conn *c);
/* After an answer: shut down, or go on with the next request. */
void http__conn_reply_done(struct http_conn *c);

/* http_request.c: the parser callbacks (p->data is the connection). */
extern const http_parser_settings http__parser_settings;
/* Frees r and all it owns; NULL is a no-op. */
void http__req_free(struct http_req *r);

/* http_reply.c */
/*
 * The body of an answer the layer makes itself (404, 405, 413, 431, ...):
 * the server's error_body hook when set, else aiohttp's "404: Not Found".
 * Sets *ctype; the result is borrowed (buf, or the hook's).
 */
const char *http__preset_body(const struct http_server *s, int status, char *buf,
			      size_t size, const char **ctype);
/* Writes a whole response with a text body and no request behind it. */
void http__conn_send_simple(struct http_conn *c, int status);

#endif
