/*
 * fuzz_util.h - what the libFuzzer targets in fuzz/ share: a private temp
 * directory, writing a file, and the log sent to /dev/null.
 *
 * Each target is one fuzz/<name>.c defining LLVMFuzzerTestOneInput (and
 * LLVMFuzzerInitialize when it sets up state once); the Makefile links it
 * with this file and the sanitized libraries (make fuzz, make fuzz-replay).
 */
#ifndef FNRUN_FUZZ_UTIL_H
#define FNRUN_FUZZ_UTIL_H

#include <stddef.h>
#include <stdint.h>

/*
 * A fresh directory under $TMPDIR (or /tmp), removed with its files when
 * the process exits. Borrowed; the same one for every call. Dies when it
 * cannot be made.
 */
const char *fuzz_tmpdir(void);
/* Writes n bytes to dir/name (replacing it). Dies on failure. */
void fuzz_write(const char *dir, const char *name, const void *p, size_t n);
/*
 * Sends the log, at debug level (so its escaping of untrusted bytes runs
 * too), to /dev/null, and ignores SIGPIPE.
 */
void fuzz_quiet(void);
/* Aborts with a message: a harness's own check failed (a finding). */
void fuzz_fail(const char *what) __attribute__((noreturn));

#endif
