/*
 * err.c - first-error-wins error values, and their HTTP mapping.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "err.h"

void err_set(struct err *e, int code, const char *fmt, ...)
{
	va_list ap;

	if (e == NULL || e->code != 0)
		return;
	e->code = code ? code : ERR_INTERNAL;
	va_start(ap, fmt);
	vsnprintf(e->msg, sizeof e->msg, fmt, ap);
	va_end(ap);
}

void err_clear(struct err *e)
{
	e->code = 0;
	e->msg[0] = '\0';
}

static const struct {
	int status;
	const char *name;
} err_table[] = {
	[ERR_OK] = {200, "OK"},
	[ERR_INVALID] = {400, "INVALID_INPUT"},
	[ERR_NOT_FOUND] = {404, "NOT_FOUND"},
	[ERR_FORBIDDEN] = {403, "FORBIDDEN"},
	[ERR_TOO_LARGE] = {413, "TOO_LARGE"},
	[ERR_CONFLICT] = {409, "CONFLICT"},
	[ERR_FULL] = {503, "QUEUE_FULL"},
	[ERR_UNAVAILABLE] = {503, "UNAVAILABLE"},
	[ERR_TIMEOUT] = {504, "TIMEOUT"},
	[ERR_IO] = {500, "INTERNAL"},
	[ERR_INTERNAL] = {500, "INTERNAL"},
	[ERR_STORE] = {503, "SERVICE_UNAVAILABLE"},
	[ERR_DUPLICATE] = {409, "DUPLICATE_REQUEST"},
	[ERR_PAUSED] = {503, "QUALITY_PAUSED"},
	[ERR_QUOTA] = {429, "QUOTA_EXCEEDED"},
};

int err_http_status(int code)
{
	if (code < 0 || (size_t)code >= sizeof err_table / sizeof err_table[0])
		return 500;
	return err_table[code].status;
}

const char *err_code_name(int code)
{
	if (code < 0 || (size_t)code >= sizeof err_table / sizeof err_table[0])
		return "INTERNAL";
	return err_table[code].name;
}
