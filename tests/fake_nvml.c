/*
 * fake_nvml.c - a fake libnvidia-ml.so.1 for the tests (built with -shared,
 * never linked into the runner; src/nvml.c dlopens it via $FNRUN_NVML_LIB).
 *
 * Its GPUs and processes come from the text file named by $FAKE_NVML_STATE,
 * re-read on every call so that a test can change it between calls:
 *
 *   # comment
 *   gpu INDEX NAME UUID TOTAL USED      (bytes; free = TOTAL - USED)
 *   proc GPU PID USED                   (bytes, or "na": not available)
 *   fail FUNC RC                        (FUNC init|count|handle|name|uuid|
 *                                        memory|procs returns nvmlReturn RC)
 *
 * GPUs are numbered by their INDEX (0..n-1, in any order). A missing file
 * makes nvmlInit fail with NVML_ERROR_DRIVER_NOT_LOADED. When
 * $FAKE_NVML_LOG is set, each process query appends one line to it:
 * "procs FUNC gpu=G in=N out=M rc=R", so a test can see the retries.
 *
 * Layouts follow the public nvml.h: _v3/_v2 process entries are 24 bytes,
 * the unversioned function keeps the 16-byte v1 entry.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NVML_SUCCESS 0
#define NVML_ERROR_UNINITIALIZED 1
#define NVML_ERROR_INVALID_ARGUMENT 2
#define NVML_ERROR_INSUFFICIENT_SIZE 7
#define NVML_ERROR_DRIVER_NOT_LOADED 9
#define NVML_ERROR_UNKNOWN 999
#define NVML_VALUE_NOT_AVAILABLE 0xFFFFFFFFFFFFFFFFULL

#define FAKE_MAX_GPUS 16
#define FAKE_MAX_PROCS 8192
#define FAKE_MAX_FAILS 16

typedef void *nvmlDevice_t;

typedef struct {
	unsigned long long total, free, used;
} nvmlMemory_t;

typedef struct {
	unsigned int pid;
	unsigned long long usedGpuMemory;
} nvmlProcessInfo_v1_t;

typedef struct {
	unsigned int pid;
	unsigned long long usedGpuMemory;
	unsigned int gpuInstanceId;
	unsigned int computeInstanceId;
} nvmlProcessInfo_t;

struct fake_gpu {
	int present;
	char name[128], uuid[128];
	unsigned long long total, used; /* bytes */
};

struct fake_proc {
	int gpu;
	unsigned int pid;
	unsigned long long used; /* bytes or NVML_VALUE_NOT_AVAILABLE */
};

struct fake_fail {
	char func[128];
	int rc;
};

static struct {
	struct fake_gpu gpus[FAKE_MAX_GPUS];
	int ngpus;
	struct fake_proc procs[FAKE_MAX_PROCS];
	int nprocs;
	struct fake_fail fails[FAKE_MAX_FAILS];
	int nfails;
} st;

static int inited;                /* nvmlInit calls minus nvmlShutdown calls */
static int handles[FAKE_MAX_GPUS]; /* a device handle points at its slot */

static void parse_line(const char *line)
{
	char w[6][128];
	int k = sscanf(line, "%127s %127s %127s %127s %127s %127s", w[0], w[1], w[2], w[3], w[4],
		       w[5]);
	int i;

	if (k >= 6 && strcmp(w[0], "gpu") == 0) {
		i = atoi(w[1]);
		if (i < 0 || i >= FAKE_MAX_GPUS)
			return;
		st.gpus[i].present = 1;
		snprintf(st.gpus[i].name, sizeof st.gpus[i].name, "%s", w[2]);
		snprintf(st.gpus[i].uuid, sizeof st.gpus[i].uuid, "%s", w[3]);
		st.gpus[i].total = strtoull(w[4], NULL, 10);
		st.gpus[i].used = strtoull(w[5], NULL, 10);
		if (i + 1 > st.ngpus)
			st.ngpus = i + 1;
	} else if (k >= 4 && strcmp(w[0], "proc") == 0 && st.nprocs < FAKE_MAX_PROCS) {
		struct fake_proc *p = &st.procs[st.nprocs++];

		p->gpu = atoi(w[1]);
		p->pid = (unsigned int)strtoul(w[2], NULL, 10);
		p->used = strcmp(w[3], "na") == 0 ? NVML_VALUE_NOT_AVAILABLE
						  : strtoull(w[3], NULL, 10);
	} else if (k >= 3 && strcmp(w[0], "fail") == 0 && st.nfails < FAKE_MAX_FAILS) {
		snprintf(st.fails[st.nfails].func, sizeof st.fails[0].func, "%s", w[1]);
		st.fails[st.nfails++].rc = atoi(w[2]);
	}
}

/* Re-reads the state file. Returns 0, or -1 when it is missing. */
static int load(void)
{
	const char *path = getenv("FAKE_NVML_STATE");
	char line[512];
	FILE *f;

	memset(&st, 0, sizeof st);
	f = path ? fopen(path, "r") : NULL;
	if (f == NULL)
		return -1;
	while (fgets(line, sizeof line, f))
		if (line[0] != '#')
			parse_line(line);
	fclose(f);
	return 0;
}

/* The state is loaded and func has no "fail" line: NVML_SUCCESS, else why not. */
static int enter(const char *func)
{
	if (load() < 0)
		return NVML_ERROR_DRIVER_NOT_LOADED;
	if (strcmp(func, "init") != 0 && inited <= 0)
		return NVML_ERROR_UNINITIALIZED;
	for (int i = 0; i < st.nfails; i++)
		if (strcmp(st.fails[i].func, func) == 0)
			return st.fails[i].rc;
	return NVML_SUCCESS;
}

static struct fake_gpu *gpu_of(nvmlDevice_t dev)
{
	int *slot = dev;

	if (slot < handles || slot >= handles + FAKE_MAX_GPUS || !st.gpus[slot - handles].present)
		return NULL;
	return &st.gpus[slot - handles];
}

static int copy_str(char *buf, unsigned int len, const char *s)
{
	if (buf == NULL || strlen(s) + 1 > len)
		return NVML_ERROR_INSUFFICIENT_SIZE;
	memcpy(buf, s, strlen(s) + 1);
	return NVML_SUCCESS;
}

static void log_procs(const char *func, int gpu, unsigned int in, unsigned int out, int rc)
{
	const char *path = getenv("FAKE_NVML_LOG");
	FILE *f = path ? fopen(path, "a") : NULL;

	if (f == NULL)
		return;
	fprintf(f, "procs %s gpu=%d in=%u out=%u rc=%d\n", func, gpu, in, out, rc);
	fclose(f);
}

/* Fills infos (entries of size bytes) with the processes of dev. */
static int procs(const char *func, nvmlDevice_t dev, unsigned int *count, void *infos,
		 size_t size)
{
	int rc = enter("procs");
	unsigned int in = count ? *count : 0, n = 0;
	struct fake_gpu *g = gpu_of(dev);

	if (rc == NVML_SUCCESS && (g == NULL || count == NULL))
		rc = NVML_ERROR_INVALID_ARGUMENT;
	for (int i = 0; rc == NVML_SUCCESS && i < st.nprocs; i++) {
		nvmlProcessInfo_t p = {st.procs[i].pid, st.procs[i].used, 0xFFFFFFFF, 0xFFFFFFFF};

		if (st.procs[i].gpu != g - st.gpus)
			continue;
		if (n < in && infos)
			memcpy((char *)infos + n * size, &p, size);
		n++;
	}
	if (rc == NVML_SUCCESS) {
		rc = n > in ? NVML_ERROR_INSUFFICIENT_SIZE : NVML_SUCCESS;
		*count = n;
	}
	log_procs(func, g ? (int)(g - st.gpus) : -1, in, n, rc);
	return rc;
}

int nvmlInit_v2(void)
{
	int rc = enter("init");

	if (rc == NVML_SUCCESS)
		inited++;
	return rc;
}

int nvmlShutdown(void)
{
	if (inited <= 0)
		return NVML_ERROR_UNINITIALIZED;
	inited--;
	return NVML_SUCCESS;
}

int nvmlDeviceGetCount_v2(unsigned int *n)
{
	int rc = enter("count");

	if (rc == NVML_SUCCESS)
		*n = (unsigned int)st.ngpus;
	return rc;
}

int nvmlDeviceGetHandleByIndex_v2(unsigned int i, nvmlDevice_t *dev)
{
	int rc = enter("handle");

	if (rc != NVML_SUCCESS)
		return rc;
	if (i >= FAKE_MAX_GPUS || !st.gpus[i].present)
		return NVML_ERROR_INVALID_ARGUMENT;
	*dev = &handles[i];
	return NVML_SUCCESS;
}

int nvmlDeviceGetName(nvmlDevice_t dev, char *name, unsigned int len)
{
	int rc = enter("name");
	struct fake_gpu *g = gpu_of(dev);

	if (rc != NVML_SUCCESS)
		return rc;
	return g ? copy_str(name, len, g->name) : NVML_ERROR_INVALID_ARGUMENT;
}

int nvmlDeviceGetUUID(nvmlDevice_t dev, char *uuid, unsigned int len)
{
	int rc = enter("uuid");
	struct fake_gpu *g = gpu_of(dev);

	if (rc != NVML_SUCCESS)
		return rc;
	return g ? copy_str(uuid, len, g->uuid) : NVML_ERROR_INVALID_ARGUMENT;
}

int nvmlDeviceGetMemoryInfo(nvmlDevice_t dev, nvmlMemory_t *mem)
{
	int rc = enter("memory");
	struct fake_gpu *g = gpu_of(dev);

	if (rc != NVML_SUCCESS)
		return rc;
	if (g == NULL || mem == NULL)
		return NVML_ERROR_INVALID_ARGUMENT;
	mem->total = g->total;
	mem->used = g->used;
	mem->free = g->total > g->used ? g->total - g->used : 0;
	return NVML_SUCCESS;
}

#ifndef FAKE_NVML_V1_ONLY /* -D it to test the unversioned fallback by hand */
int nvmlDeviceGetComputeRunningProcesses_v3(nvmlDevice_t dev, unsigned int *count,
					    nvmlProcessInfo_t *infos)
{
	return procs("v3", dev, count, infos, sizeof(nvmlProcessInfo_t));
}

int nvmlDeviceGetComputeRunningProcesses_v2(nvmlDevice_t dev, unsigned int *count,
					    nvmlProcessInfo_t *infos)
{
	return procs("v2", dev, count, infos, sizeof(nvmlProcessInfo_t));
}
#endif

int nvmlDeviceGetComputeRunningProcesses(nvmlDevice_t dev, unsigned int *count,
					 nvmlProcessInfo_v1_t *infos)
{
	return procs("v1", dev, count, infos, sizeof(nvmlProcessInfo_v1_t));
}

const char *nvmlErrorString(int rc)
{
	static const char *const names[] = {
		[NVML_SUCCESS] = "Success",
		[NVML_ERROR_UNINITIALIZED] = "Uninitialized",
		[NVML_ERROR_INVALID_ARGUMENT] = "Invalid Argument",
		[NVML_ERROR_INSUFFICIENT_SIZE] = "Insufficient Size",
		[NVML_ERROR_DRIVER_NOT_LOADED] = "Driver Not Loaded",
	};

	if (rc >= 0 && rc < (int)(sizeof names / sizeof names[0]) && names[rc])
		return names[rc];
	return "Unknown Error";
}
