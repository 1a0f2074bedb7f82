/*
 * log.c - timestamped key=value lines. Writes are unbuffered line by line so
 * a crash loses nothing that was logged before it.
 */
#include <stdarg.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>

#include "log.h"

static int log_threshold = LOG_INFO; /* highest level that is written */
static FILE *log_out;                /* NULL: stderr */

static const char *const level_names[] = {"error", "warn", "info", "debug"};

void log_init(int level, FILE *out)
{
	log_threshold = level;
	log_out = out;
}

int log_level_parse(const char *name)
{
	for (int i = 0; i < 4; i++)
		if (strcasecmp(name, level_names[i]) == 0)
			return i;
	return -1;
}

int log_enabled(int level)
{
	return level <= log_threshold;
}

void log_write(int level, const char *file, int line, const char *fmt, ...)
{
	char ts[32], msg[2048];
	struct timeval tv;
	struct tm tm;
	va_list ap;
	FILE *out = log_out ? log_out : stderr;

	if (level > log_threshold)
		return;
	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	if (level == LOG_DEBUG)
		fprintf(out, "%s.%03ldZ level=%s %s src=%s:%d\n", ts,
			(long)tv.tv_usec / 1000, level_names[level], msg, file,
			line);
	else
		fprintf(out, "%s.%03ldZ level=%s %s\n", ts,
			(long)tv.tv_usec / 1000, level_names[level], msg);
	fflush(out);
}

const char *log_q(const char *s)
{
	static char ring[8][512];
	static unsigned next;
	char *b = ring[next++ % 8];
	size_t n = 0, cap = sizeof ring[0] - 8;

	if (s == NULL)
		return "-";
	b[n++] = '"';
	for (; *s && n < cap; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\') {
			b[n++] = '\\';
			b[n++] = (char)c;
		} else if (c < 0x20 || c == 0x7f) {
			n += (size_t)snprintf(b + n, 8, "\\x%02x", c);
		} else {
			b[n++] = (char)c;
		}
	}
	if (*s)
		b[n++] = '~'; /* truncated */
	b[n++] = '"';
	b[n] = '\0';
	return b;
}
