/*
 * runtime.c - the runtime interface (runtime.h): the choice of runtime
 * for a model, the wrappers the runner calls, and the pieces the
 * runtimes share (the HTTP health probe, the tail of a log file).
 */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "registry.h"
#include "runtime.h"

#define TAIL_READ 4096 /* bytes read from the end of a log file */
#define TAIL_LINES 8   /* lines of it shown */

const struct runtime *runtime_of(int reg_runtime)
{
	switch (reg_runtime) {
	case REG_RUNTIME_DOCKER:
		return &runtime_docker;
	case REG_RUNTIME_EXTERNAL:
		return &runtime_external;
	default:
		return &runtime_process;
	}
}

struct runtime_inst *runtime_start(const struct runtime_spec *spec, const struct runtime_cbs *cb,
				   void *ud, struct err *err)
{
	return runtime_of(spec->model->runtime)->start(spec, cb, ud, err);
}

void runtime_stop(struct runtime_inst *inst, uint64_t grace_ms)
{
	inst->rt->stop(inst, grace_ms);
}

struct comfy_call *runtime_health(struct runtime_inst *inst, uint64_t timeout_ms, uint64_t tag,
				  comfy_health_fn cb, void *ud, struct err *err)
{
	return inst->rt->health(inst, timeout_ms, tag, cb, ud, err);
}

void runtime_log_tail(struct runtime_inst *inst, char *out, size_t n)
{
	out[0] = '\0';
	if (inst->rt->log_tail)
		inst->rt->log_tail(inst, out, n);
}

void runtime__base_url(const struct runtime_inst *inst, char *out, size_t n)
{
	if (strchr(inst->host, ':'))
		snprintf(out, n, "http://[%s]:%d", inst->host, inst->port); /* IPv6 */
	else
		snprintf(out, n, "http://%s:%d", inst->host, inst->port);
}

struct comfy_call *runtime__health_http(struct runtime_inst *inst, uint64_t timeout_ms,
					uint64_t tag, comfy_health_fn cb, void *ud,
					struct err *err)
{
	char base[160];

	runtime__base_url(inst, base, sizeof base);
	return comfy_health(base, timeout_ms, tag, cb, ud, err);
}

void runtime__last_lines(const char *buf, size_t len, char *out, size_t n)
{
	size_t start, lines = 0;

	while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
		len--;
	for (start = len; start > 0; start--)
		if (buf[start - 1] == '\n' && ++lines == TAIL_LINES)
			break;
	snprintf(out, n, "%.*s", (int)(len - start), buf + start);
}

void runtime__file_tail(const char *path, char *out, size_t n)
{
	char buf[TAIL_READ];
	struct stat st;
	ssize_t got;
	int fd = path ? open(path, O_RDONLY | O_CLOEXEC) : -1;

	out[0] = '\0';
	if (fd < 0)
		return;
	if (fstat(fd, &st) == 0 && st.st_size > TAIL_READ)
		lseek(fd, st.st_size - TAIL_READ, SEEK_SET);
	got = read(fd, buf, sizeof buf);
	close(fd);
	if (got > 0)
		runtime__last_lines(buf, (size_t)got, out, n);
}
