/*
 * tws.h - a small blocking WebSocket client for tests (plain sockets, no
 * libuv), speaking to 127.0.0.1.
 *
 * It does the RFC 6455 handshake and checks Sec-WebSocket-Accept, masks
 * every frame it sends with a fresh random key, reassembles fragmented
 * messages, answers pings, and answers the server's close frame. Every
 * wait has a deadline; nothing blocks forever. Not thread-safe: one
 * struct tws per thread.
 */
#ifndef FNRUN_TWS_H
#define FNRUN_TWS_H

#include <stddef.h>
#include <stdint.h>

#define TWS_CONT 0x0
#define TWS_TEXT 0x1
#define TWS_BINARY 0x2
#define TWS_CLOSE 0x8
#define TWS_PING 0x9
#define TWS_PONG 0xa

struct tws;

/*
 * Connects to 127.0.0.1:port and upgrades `path_and_query` (e.g.
 * "/ws?clientId=abc"). Returns the client (free with tws_close), or NULL
 * when the connection, the handshake or the accept key fails.
 */
struct tws *tws_connect(int port, const char *path_and_query, int timeout_ms);
/*
 * The same with `extra_headers` ("Name: value\r\n" lines, or NULL) added to
 * the request, and `early` bytes (or NULL) sent in the same write right
 * after the request head (e.g. a frame built with tws_frame()). *status (if
 * not NULL) gets the HTTP status of the answer, 0 when there was none; any
 * answer but a valid 101 gives NULL.
 */
struct tws *tws_connect_ex(int port, const char *path_and_query,
			   const char *extra_headers, const void *early,
			   size_t early_len, int timeout_ms, int *status);

/* Send one whole message. Return 0, or -1 when the socket fails. */
int tws_send_text(struct tws *t, const char *text);
int tws_send_binary(struct tws *t, const void *p, size_t n);
/*
 * Sends one frame: opcode TWS_*, fin 0 for all but the last fragment
 * (continuations use TWS_CONT). Returns 0 or -1.
 */
int tws_send_frame(struct tws *t, int opcode, int fin, const void *p, size_t n);
/* Sends a close frame with `code` (0: no code). Returns 0 or -1. */
int tws_send_close(struct tws *t, int code);
/*
 * Builds one masked client frame. Returns its length; *out is malloc'd
 * (caller frees).
 */
size_t tws_frame(uint8_t **out, int opcode, int fin, const void *p, size_t n);

/*
 * Waits up to timeout_ms for the next text or binary message. Returns 0 with
 * *opcode (TWS_TEXT or TWS_BINARY), *data (malloc'd, NUL-terminated; caller
 * frees) and *len; 1 when the server closed the WebSocket with a close frame
 * (answered; see tws_close_code()); -1 on timeout, EOF without a close
 * frame, or a protocol error. Pings are answered and pongs skipped.
 */
int tws_recv(struct tws *t, int timeout_ms, int *opcode, char **data, size_t *len);
/* The code of the server's close frame: 0 before one, 1005 when it had none. */
int tws_close_code(const struct tws *t);
/* The socket, e.g. to poll it or to test an abrupt disconnect. */
int tws_fd(const struct tws *t);
/*
 * Sends a close frame (1000) unless one was sent, waits up to one second
 * for the server's close, closes the socket and frees t. NULL is a no-op.
 */
void tws_close(struct tws *t);

#endif
