/*
 * wsc.h - a WebSocket client (RFC 6455) to model servers, wslay over a
 * uv_tcp_t with our own opening handshake (docs/stack.md §4).
 *
 * Lifecycle: wsc_connect() -> on_open -> on_text/on_binary ... -> on_close.
 * on_close runs exactly once on every path (refused, timeout, bad
 * handshake, peer close, wsc_close), from the loop and never from inside a
 * wsc_* call, after every handle is closed; the struct is freed when it
 * returns. One loop thread only.
 */
#ifndef FNRUN_WSC_H
#define FNRUN_WSC_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "err.h"

#define WSC_MAX_MESSAGE (16u << 20)  /* bytes; a bigger message closes with 1009 */
#define WSC_MAX_HEAD 16384           /* bytes of handshake response head */
#define WSC_MAX_QUEUED (64u << 20)   /* bytes waiting to be sent; wsc_send_text fails over it */
#define WSC_TIMEOUT_MS 10000         /* default connect + handshake, and close, timeout */

struct wsc;

/* All callbacks may be NULL. Messages are borrowed for the call. */
struct wsc_callbacks {
	void (*on_open)(struct wsc *w, void *ud);
	/* A complete text message, NUL-terminated. */
	void (*on_text)(struct wsc *w, const char *msg, size_t len, void *ud);
	void (*on_binary)(struct wsc *w, const void *msg, size_t len, void *ud);
	/*
	 * why->code is 0 after a clean close (close frames exchanged with status
	 * 1000, 1001 or none, or after wsc_close()). Otherwise: ERR_UNAVAILABLE
	 * (refused, reset, bad handshake, peer's error status), ERR_TIMEOUT,
	 * ERR_TOO_LARGE (message over WSC_MAX_MESSAGE), ERR_IO. why is borrowed.
	 */
	void (*on_close)(struct wsc *w, const struct err *why, void *ud);
};

/*
 * Connects to ws://host:port/path_and_query. host is a numeric IPv4 or IPv6
 * address or "localhost". timeout_ms bounds connect + handshake and, later,
 * the close handshake (0: WSC_TIMEOUT_MS). cb is copied. Returns the client,
 * owned by wsc and freed after on_close; or NULL with err filled on bad
 * arguments, in which case no callback is ever called.
 */
struct wsc *wsc_connect(uv_loop_t *loop, const char *host, int port, const char *path_and_query,
			const struct wsc_callbacks *cb, void *ud, uint64_t timeout_ms,
			struct err *err);

/*
 * Queues a text message (copied) and flushes it. Returns 0, or -1 when not
 * open, closing, or over WSC_MAX_QUEUED bytes waiting.
 */
int wsc_send_text(struct wsc *w, const char *msg, size_t len);

/*
 * Starts the close handshake (status 1000), or aborts a connection not yet
 * open. No message callback follows; on_close does, exactly once. Calling
 * it again, or from on_close, does nothing. w is invalid after on_close.
 */
void wsc_close(struct wsc *w);

/* The status code of the peer's close frame (1005 without one, 0 none yet); for on_close. */
int wsc_close_status(const struct wsc *w);

#endif
