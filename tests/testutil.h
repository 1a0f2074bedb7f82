/*
 * testutil.h - helpers shared by the test suites: temp dirs, spawning the
 * real binaries, waiting on conditions with a deadline, and a tiny blocking
 * HTTP client over loopback.
 */
#ifndef FNRUN_TESTUTIL_H
#define FNRUN_TESTUTIL_H

#include <check.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* The directory holding fnrun and fnrun-worker ($FNRUN_BIN or "bin"). */
const char *tu_bindir(void);
/* Full path of a binary in tu_bindir(); static buffer. */
const char *tu_bin(const char *name);
/* Where fixtures/comfyui/ is: "tests" (the recordings kept in the repository) or $FNRUN_SHARED. */
const char *tu_shared(void);
/* A fresh temp directory, removed by tu_cleanup() (call in teardown). */
const char *tu_tmpdir(void);
void tu_rmrf(const char *path);
/* Reads a whole file; caller frees; NULL when missing. */
char *tu_read_file(const char *path, size_t *len);
/* Writes a file; returns 0 or -1. */
int tu_write_file(const char *path, const char *data, size_t len);

/*
 * Starts argv in its own process group with stdout/stderr to logpath (NULL:
 * inherit). Returns the pid or -1.
 */
pid_t tu_spawn(char *const argv[], const char *logpath);
/* SIGTERM then SIGKILL after grace_ms to the group; reaps. Returns status. */
int tu_stop(pid_t pid, int grace_ms);
/* Waits for pid to exit within ms; returns the wait status or -1 on timeout. */
int tu_wait_exit(pid_t pid, int ms);

/* A connected TCP socket to 127.0.0.1:port, or -1. */
int tu_connect(int port);
/* Writes all n bytes (no SIGPIPE); 0 or -1. */
int tu_write_all(int fd, const char *p, size_t n);
/* Decodes a chunked HTTP body in place; returns its new length. */
size_t tu_dechunk(char *body, size_t len);
/* A free TCP port on 127.0.0.1 (bound then released). */
int tu_free_port(void);

struct tu_resp {
	int status;     /* 0 when the connection failed */
	char *headers;  /* raw header block, lower-cased names */
	char *body;     /* NUL-terminated */
	size_t len;
};
/*
 * One HTTP/1.1 request to 127.0.0.1:port with Connection: close. body may
 * be NULL. Fills resp (free with tu_resp_free). Returns 0 or -1.
 */
int tu_http(int port, const char *method, const char *path, const char *ctype,
	    const char *body, size_t len, struct tu_resp *resp);
void tu_resp_free(struct tu_resp *r);
/* Reads an HTTP response on fd until EOF into resp (lower-cased headers, dechunked body). 0 or -1. */
int tu_read_response(int fd, struct tu_resp *resp);
/* Value of a response header (case-insensitive), static buffer or NULL. */
const char *tu_resp_header(const struct tu_resp *r, const char *name);
/* Polls GET path until it answers `status`, up to ms. Returns 0 or -1. */
int tu_wait_http(int port, const char *path, int status, int ms);
/*
 * One HTTP/1.1 request on fd, a connection kept alive (from tu_connect),
 * whose answer has a Content-Length. body (JSON) may be NULL. Fills resp
 * (free with tu_resp_free). Returns 0, or -1 when the connection failed
 * (then unusable).
 */
int tu_http_keep(int fd, const char *method, const char *path, const char *body,
		 struct tu_resp *resp);
/*
 * SIGKILLs every process (but this one) whose cwd is under dir or whose
 * command line names dir, round after round until a round finds none: a
 * crashed gateway's model servers live on in process groups of their own.
 */
void tu_kill_users_of(const char *dir);
/* Milliseconds on the monotonic clock, for deadlines. */
int64_t tu_now_ms(void);

#endif
