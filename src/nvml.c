/*
 * nvml.c - NVML through dlopen. See nvml.h.
 *
 * The NVML types are declared here with the layouts of the public nvml.h
 * (CUDA 12), so no NVIDIA header is needed to build. Invariants:
 *  1. nv.lib != NULL  <=>  every required function is resolved and
 *     nvmlInit_v2 succeeded; nvml_shutdown() undoes both and zeroes nv.
 *  2. nv.proc_size is the entry size of the process function resolved:
 *     _v3 and _v2 take 24-byte entries, the unversioned symbol keeps the
 *     old 16-byte layout (nvml.h maps the plain name to _v3 only at compile
 *     time; the exported plain symbol is the v1 ABI).
 */
#include <dlfcn.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nvml.h"
#include "util.h"

/* nvmlReturn_t values we act on (nvml.h). */
#define NVML_SUCCESS 0
#define NVML_ERROR_INVALID_ARGUMENT 2
#define NVML_ERROR_NOT_FOUND 6
#define NVML_ERROR_INSUFFICIENT_SIZE 7
/* usedGpuMemory when the driver cannot say (nvml.h NVML_VALUE_NOT_AVAILABLE). */
#define NVML_VALUE_NOT_AVAILABLE 0xFFFFFFFFFFFFFFFFULL

#define NVML_PROC_FIRST 16   /* entries in the first process buffer */
#define NVML_PROC_LIMIT 4096 /* entries at most: a bigger list is an error */
#define NVML_PROC_TRIES 4    /* "insufficient size" answers before giving up */

typedef void *nvml_device_t; /* nvmlDevice_t: an opaque pointer */

struct nvml_memory { /* nvmlMemory_t (v1) */
	unsigned long long total, free, used; /* bytes */
};

struct nvml_proc_v1 { /* nvmlProcessInfo_v1_t */
	unsigned int pid;
	unsigned long long usedGpuMemory; /* bytes or NVML_VALUE_NOT_AVAILABLE */
};

struct nvml_proc_v2 { /* nvmlProcessInfo_v2_t, and nvmlProcessInfo_t for _v3 */
	unsigned int pid;
	unsigned long long usedGpuMemory;
	unsigned int gpuInstanceId;
	unsigned int computeInstanceId;
};

/* Entries are read through the v1 prefix, which both layouts share. */
_Static_assert(offsetof(struct nvml_proc_v2, usedGpuMemory) ==
		       offsetof(struct nvml_proc_v1, usedGpuMemory),
	       "NVML process layouts share their first two fields");

static struct nvml_lib {
	void *lib; /* dlopen handle; NULL when closed */
	int (*init)(void);
	int (*shutdown)(void);
	int (*count)(unsigned int *n);
	int (*handle)(unsigned int i, nvml_device_t *dev);
	int (*name)(nvml_device_t dev, char *buf, unsigned int len);
	int (*uuid)(nvml_device_t dev, char *buf, unsigned int len);
	int (*memory)(nvml_device_t dev, struct nvml_memory *mem);
	int (*procs)(nvml_device_t dev, unsigned int *n, void *infos);
	const char *(*error_string)(int rc); /* optional */
	size_t proc_size; /* bytes per entry of procs' array */
} nv;

/* Each function and the symbols tried for it, newest first. */
static const struct nvml_sym {
	size_t offset;          /* of the pointer in nv */
	const char *names[3];   /* NULL-terminated */
	int optional;
} syms[] = {
	{offsetof(struct nvml_lib, init), {"nvmlInit_v2", NULL}, 0},
	{offsetof(struct nvml_lib, shutdown), {"nvmlShutdown", NULL}, 0},
	{offsetof(struct nvml_lib, count), {"nvmlDeviceGetCount_v2", "nvmlDeviceGetCount", NULL}, 0},
	{offsetof(struct nvml_lib, handle),
	 {"nvmlDeviceGetHandleByIndex_v2", "nvmlDeviceGetHandleByIndex", NULL}, 0},
	{offsetof(struct nvml_lib, name), {"nvmlDeviceGetName", NULL}, 0},
	{offsetof(struct nvml_lib, uuid), {"nvmlDeviceGetUUID", NULL}, 0},
	{offsetof(struct nvml_lib, memory), {"nvmlDeviceGetMemoryInfo", NULL}, 0},
	{offsetof(struct nvml_lib, error_string), {"nvmlErrorString", NULL}, 1},
};

static const char *proc_names[] = {
	"nvmlDeviceGetComputeRunningProcesses_v3",
	"nvmlDeviceGetComputeRunningProcesses_v2",
	"nvmlDeviceGetComputeRunningProcesses",
};

static const char *lib_path(void)
{
	const char *p = getenv("FNRUN_NVML_LIB");

	return p && *p ? p : NVML_LIB_DEFAULT;
}

/* NVML's text for rc; static storage. */
static const char *nvml_strerror(int rc)
{
	static char buf[48];
	const char *s = nv.error_string ? nv.error_string(rc) : NULL;

	if (s && *s)
		return s;
	snprintf(buf, sizeof buf, "NVML error %d", rc);
	return buf;
}

/* dlerror() without the leading "PATH: " it repeats. */
static const char *dl_reason(const char *path)
{
	const char *e = dlerror();
	size_t n = strlen(path);

	if (e == NULL)
		return "unknown reason";
	if (strncmp(e, path, n) == 0 && e[n] == ':' && e[n + 1] == ' ')
		return e + n + 2;
	return e;
}

static void *find_sym(const char *const *names, size_t count, size_t *which)
{
	for (size_t i = 0; i < count && names[i]; i++) {
		void *f = dlsym(nv.lib, names[i]);

		if (f) {
			*which = i;
			return f;
		}
	}
	return NULL;
}

static int resolve(const char *path, struct err *err)
{
	size_t which;
	void *f;

	for (size_t i = 0; i < sizeof syms / sizeof syms[0]; i++) {
		f = find_sym(syms[i].names, 3, &which);
		if (f == NULL && !syms[i].optional) {
			err_set(err, ERR_UNAVAILABLE, "%s lacks %s", path, syms[i].names[0]);
			return -1;
		}
		/* POSIX: a dlsym result may be stored as a function pointer. */
		memcpy((char *)&nv + syms[i].offset, &f, sizeof f);
	}
	f = find_sym(proc_names, 3, &which);
	if (f == NULL) {
		err_set(err, ERR_UNAVAILABLE, "%s lacks %s", path, proc_names[0]);
		return -1;
	}
	memcpy(&nv.procs, &f, sizeof f);
	nv.proc_size = which < 2 ? sizeof(struct nvml_proc_v2) : sizeof(struct nvml_proc_v1);
	return 0;
}

static void close_lib(int started)
{
	if (started)
		nv.shutdown();
	if (nv.lib)
		dlclose(nv.lib);
	memset(&nv, 0, sizeof nv);
}

int nvml_init(struct err *err)
{
	const char *path = lib_path();
	int rc;

	if (nv.lib)
		return 0;
	nv.lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (nv.lib == NULL) {
		err_set(err, ERR_UNAVAILABLE, "no NVIDIA library: cannot open %s: %s", path,
			dl_reason(path));
		return -1;
	}
	if (resolve(path, err) < 0) {
		close_lib(0);
		return -1;
	}
	rc = nv.init();
	if (rc != NVML_SUCCESS) {
		err_set(err, ERR_UNAVAILABLE, "NVML (%s) cannot start: %s", path, nvml_strerror(rc));
		close_lib(0);
		return -1;
	}
	if (nvml_count() == 0) {
		err_set(err, ERR_UNAVAILABLE, "no NVIDIA GPU: NVML (%s) reports none", path);
		close_lib(1);
		return -1;
	}
	return 0;
}

int nvml_count(void)
{
	unsigned int n = 0;

	if (nv.lib == NULL || nv.count(&n) != NVML_SUCCESS)
		return 0;
	return n > INT_MAX ? INT_MAX : (int)n;
}

/* Sets *dev to the handle of GPU i. Returns 0, or -1 with err set. */
static int device_handle(int i, nvml_device_t *dev, struct err *err)
{
	int rc;

	if (nv.lib == NULL) {
		err_set(err, ERR_UNAVAILABLE, "NVML is not initialised");
		return -1;
	}
	if (i < 0) {
		err_set(err, ERR_NOT_FOUND, "no GPU %d", i);
		return -1;
	}
	rc = nv.handle((unsigned int)i, dev);
	if (rc == NVML_ERROR_INVALID_ARGUMENT || rc == NVML_ERROR_NOT_FOUND) {
		err_set(err, ERR_NOT_FOUND, "no GPU %d", i);
		return -1;
	}
	if (rc != NVML_SUCCESS) {
		err_set(err, ERR_UNAVAILABLE, "GPU %d: %s", i, nvml_strerror(rc));
		return -1;
	}
	return 0;
}

static int check(int rc, int i, const char *what, struct err *err)
{
	if (rc == NVML_SUCCESS)
		return 0;
	err_set(err, ERR_UNAVAILABLE, "GPU %d: %s: %s", i, what, nvml_strerror(rc));
	return -1;
}

int nvml_device(int i, struct gpu_info *out, struct err *err)
{
	struct nvml_memory mem = {0};
	nvml_device_t dev;

	memset(out, 0, sizeof *out);
	if (device_handle(i, &dev, err) < 0)
		return -1;
	if (check(nv.name(dev, out->name, sizeof out->name), i, "name", err) < 0 ||
	    check(nv.uuid(dev, out->uuid, sizeof out->uuid), i, "uuid", err) < 0 ||
	    check(nv.memory(dev, &mem), i, "memory", err) < 0)
		return -1;
	out->name[sizeof out->name - 1] = '\0';
	out->uuid[sizeof out->uuid - 1] = '\0';
	out->index = i;
	out->total = mem.total;
	out->free = mem.free;
	out->used = mem.used;
	return 0;
}

/* Copies up to max of the count entries in buf (nv.proc_size each). */
static size_t copy_procs(const unsigned char *buf, unsigned int count, struct gpu_proc *out,
			 size_t max)
{
	size_t n = count < max ? count : max;

	for (size_t k = 0; k < n; k++) {
		struct nvml_proc_v1 p;

		memcpy(&p, buf + k * nv.proc_size, sizeof p);
		out[k].pid = p.pid;
		out[k].used = p.usedGpuMemory == NVML_VALUE_NOT_AVAILABLE ? 0 : p.usedGpuMemory;
	}
	return n;
}

int nvml_processes(int i, struct gpu_proc *out, size_t max, size_t *n, struct err *err)
{
	unsigned int cap = NVML_PROC_FIRST;
	nvml_device_t dev;

	*n = 0;
	if (device_handle(i, &dev, err) < 0)
		return -1;
	for (int tries = 0; tries < NVML_PROC_TRIES; tries++) {
		unsigned char *buf = xcalloc(cap, nv.proc_size);
		unsigned int count = cap;
		int rc = nv.procs(dev, &count, buf);

		if (rc == NVML_SUCCESS)
			*n = copy_procs(buf, count < cap ? count : cap, out, max);
		free(buf);
		if (rc == NVML_SUCCESS)
			return 0;
		if (rc != NVML_ERROR_INSUFFICIENT_SIZE)
			return check(rc, i, "processes", err);
		if (count > NVML_PROC_LIMIT) {
			err_set(err, ERR_TOO_LARGE, "GPU %d: %u processes (limit %d)", i, count,
				NVML_PROC_LIMIT);
			return -1;
		}
		/* Room for processes that start before the next call. */
		cap = count + count / 4 + 4;
	}
	err_set(err, ERR_UNAVAILABLE, "GPU %d: the process list kept growing", i);
	return -1;
}

void nvml_shutdown(void)
{
	if (nv.lib)
		close_lib(1);
}
