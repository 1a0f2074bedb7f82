/*
 * ws.h - WebSocket (RFC 6455) on the HTTP server's connections, with wslay.
 *
 * http_ws_accept() answers a GET that asks to upgrade with 101 and hands the
 * connection to a ws_conn. Frames are gathered and flushed with one write
 * each, TCP_NODELAY is set (docs/stack.md §4). wslay answers pings and close
 * frames itself. Messages over max_message bytes close the connection (1009).
 */
#ifndef FNRUN_WS_H
#define FNRUN_WS_H

#include <stddef.h>
#include <stdint.h>

struct http_req;
struct ws_conn;

struct ws_callbacks {
	/* A complete text message (NUL-terminated; valid during the call). */
	void (*on_text)(struct ws_conn *ws, const char *msg, size_t len, void *ud);
	/* A complete binary message. May be NULL. */
	void (*on_binary)(struct ws_conn *ws, const void *msg, size_t len, void *ud);
	/* Exactly once; the ws_conn is invalid after it returns. */
	void (*on_close)(struct ws_conn *ws, void *ud);
};

/*
 * Completes the upgrade. Returns NULL and answers 400 itself when the
 * request is not a valid WebSocket upgrade (the callbacks are then never
 * called). The request is consumed either way. cb is borrowed and must
 * outlive the connection.
 */
struct ws_conn *http_ws_accept(struct http_req *req, const struct ws_callbacks *cb,
			       void *ud);
/* Queue a message (copied). -1 when closing or over the send backlog cap. */
int ws_send_text(struct ws_conn *ws, const char *msg, size_t len);
int ws_send_binary(struct ws_conn *ws, const void *msg, size_t len);
/* Starts the close handshake; on_close follows. */
void ws_close(struct ws_conn *ws, uint16_t code);
void *ws_data(const struct ws_conn *ws);
void ws_set_data(struct ws_conn *ws, void *ud);
/* Bytes queued and not yet written to the socket. */
size_t ws_queued(const struct ws_conn *ws);

#endif
