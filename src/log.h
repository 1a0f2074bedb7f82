/*
 * log.h - one line per event, key=value fields, to stderr or a file.
 *
 * error: an operator must act. warn: degraded but handled.
 * info: lifecycle (listen, job state, process start and exit).
 * debug: per request.
 * Untrusted text goes through log_q(), which quotes and escapes it.
 */
#ifndef FNRUN_LOG_H
#define FNRUN_LOG_H

#include <stdio.h>

enum log_level { LOG_ERROR, LOG_WARN, LOG_INFO, LOG_DEBUG };

/* Threshold and destination; out NULL means stderr. Borrowed. */
void log_init(int level, FILE *out);
int log_level_parse(const char *name); /* -1 when unknown */
int log_enabled(int level);
void log_write(int level, const char *file, int line, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
/*
 * Quotes and escapes s for a log line. Returns a static buffer from a small
 * ring of eight, so up to eight may appear in one log call. Loop thread only.
 */
const char *log_q(const char *s);

#define log_error(...) log_write(LOG_ERROR, __FILE__, __LINE__, __VA_ARGS__)
#define log_warn(...) log_write(LOG_WARN, __FILE__, __LINE__, __VA_ARGS__)
#define log_info(...) log_write(LOG_INFO, __FILE__, __LINE__, __VA_ARGS__)
#define log_debug(...)                                                       \
	do {                                                                 \
		if (log_enabled(LOG_DEBUG))                                  \
			log_write(LOG_DEBUG, __FILE__, __LINE__, __VA_ARGS__); \
	} while (0)

#endif
