/*
 * util.h - allocation that dies on out-of-memory, strings, clocks, ids.
 */
#ifndef FNRUN_UTIL_H
#define FNRUN_UTIL_H

#include <stddef.h>
#include <stdint.h>

/* Never return NULL: on out-of-memory they log and abort (tmux xmalloc). */
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
/* Caller frees the result. */
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Milliseconds since the Unix epoch (wall clock). */
int64_t util_now_ms(void);
/* Monotonic milliseconds and nanoseconds, for durations. */
uint64_t util_mono_ms(void);
uint64_t util_mono_ns(void);
/* A 64-bit FNV-1a hash of s (stable across runs: sticky choices use it). */
uint64_t util_hash64(const char *s);
/* Fills buf with n unpredictable bytes (getrandom). */
void util_random(void *buf, size_t n);
/* A UUID4 string with dashes into out[37]. */
void util_uuid4(char out[37]);
/* 32 lower-case hex digits (a UUID4 without dashes) into out[33]. */
void util_uuid4_hex(char out[33]);
/* 1 when s ends with suffix. */
int util_ends_with(const char *s, const char *suffix);
/*
 * Creates dir and its parents (mode 0755). Returns 0 or -1 with errno set.
 */
int util_mkdirs(const char *dir);

/*
 * Appends p[0..n) to the tail buffer tail (len bytes now, cap at most),
 * dropping its oldest bytes so that only the last cap stay. Returns the new
 * length. A child's stderr or a container's output, kept for a message.
 */
size_t util_tail_keep(char *tail, size_t len, size_t cap, const char *p, size_t n);

/* A TCP port free on 127.0.0.1 now (bound, then released), or -1. */
int util_free_port(void);

/* The directory of this executable ("." when unknown). Caller frees. */
char *util_exe_dir(void);
/* 1 when path is a regular file this process may execute. */
int util_runnable(const char *path);
/*
 * A bare program name looked up on path (a PATH value; NULL or "": the
 * default search path), as execvp() would: the first runnable match
 * (caller frees), or NULL.
 */
char *util_which(const char *prog, const char *path);
/* 1 for an address only this machine reaches: 127.x, ::1, localhost (NULL too). */
int util_loopback_host(const char *host);

#endif
