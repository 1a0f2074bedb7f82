/*
 * err.h - one error value passed down the call chain.
 *
 * A fallible function returns 0 or -1 and fills the `struct err *` passed
 * last. The first error set wins, so the innermost reason survives as the
 * error travels up (err_set() ignores later calls once code != 0).
 */
#ifndef FNRUN_ERR_H
#define FNRUN_ERR_H

enum err_code {
	ERR_OK = 0,
	ERR_INVALID,     /* bad input from a client or a file: 400 */
	ERR_NOT_FOUND,   /* no such thing: 404 */
	ERR_FORBIDDEN,   /* path escapes, origin: 403 */
	ERR_TOO_LARGE,   /* body or buffer over its limit: 413 */
	ERR_CONFLICT,    /* state does not allow it: 409 */
	ERR_FULL,        /* queue or connection table full: 503 */
	ERR_UNAVAILABLE, /* a dependency is down: 503 */
	ERR_TIMEOUT,     /* a deadline passed: 504 */
	ERR_IO,          /* file system or socket: 500 */
	ERR_INTERNAL,    /* a bug or an impossible state: 500 */
	ERR_STORE,       /* the job store cannot be written now: 503, retry later */
	ERR_DUPLICATE,   /* an idempotency key already names another request: 409 */
	ERR_PAUSED,      /* the operators paused what was asked for: 503 */
	ERR_QUOTA,       /* over a quota of the caller's key: 429 */
};

struct err {
	int code;      /* enum err_code; 0 means no error */
	char msg[256]; /* human text, no trailing newline */
};

/* Sets code and message unless an error is already set. Accepts NULL. */
void err_set(struct err *e, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void err_clear(struct err *e);
/* The HTTP status that matches e->code (500 for unknown codes). */
int err_http_status(int code);
/* A stable upper-case name for a code, e.g. "INVALID_INPUT". */
const char *err_code_name(int code);

#endif
