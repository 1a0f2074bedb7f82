/*
 * nvml.h - the machine's NVIDIA GPUs through NVML: names, memory, and the
 * compute processes on each GPU with their memory use.
 *
 * libnvidia-ml.so.1 is opened at run time with dlopen and never linked, so
 * fnrun runs on machines without NVIDIA; $FNRUN_NVML_LIB names another file
 * (the tests point it at a fake). Counts and figures are read from NVML on
 * every call, never cached. Not thread-safe: call from the loop thread.
 */
#ifndef FNRUN_NVML_H
#define FNRUN_NVML_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

#define NVML_LIB_DEFAULT "libnvidia-ml.so.1"

struct gpu_info {
	int index;      /* NVML device index */
	char name[96];  /* "NVIDIA H200" */
	char uuid[96];  /* "GPU-1699d92c-..." */
	uint64_t total; /* bytes of device memory */
	uint64_t free;  /* bytes */
	uint64_t used;  /* bytes, as NVML counts them (driver reservation included) */
};

struct gpu_proc {
	unsigned pid;  /* as NVML reports it */
	uint64_t used; /* bytes; 0 when NVML cannot say (e.g. under MIG or without rights) */
};

/*
 * Opens the library, resolves its functions and initialises NVML. A second
 * call while open does nothing and returns 0. Fails with ERR_UNAVAILABLE and
 * a message naming the reason: the library cannot be opened ("no NVIDIA
 * library: cannot open libnvidia-ml.so.1 (...)"), a function is missing, the
 * driver is not loaded, or there is no GPU. On failure nothing stays open.
 */
int nvml_init(struct err *err);
/* The number of GPUs now; 0 when not initialised or NVML fails. */
int nvml_count(void);
/*
 * Fills out for GPU i (0 <= i < nvml_count()). Fails with ERR_UNAVAILABLE
 * when not initialised, ERR_NOT_FOUND for an index NVML rejects, or the
 * NVML error otherwise.
 */
int nvml_device(int i, struct gpu_info *out, struct err *err);
/*
 * The compute processes on GPU i: copies at most max entries into out and
 * sets *n to the number copied (a longer list is truncated to max). Grows
 * its own buffer when NVML answers "insufficient size", a bounded number of
 * times. Errors as nvml_device().
 */
int nvml_processes(int i, struct gpu_proc *out, size_t max, size_t *n, struct err *err);
/* Shuts NVML down and closes the library; a no-op when not initialised. */
void nvml_shutdown(void);

/*
 * `fnrun gpus` (argv[0] is "gpus"): each GPU with its memory in MiB and its
 * compute processes (pid, MiB, command line from /proc when readable).
 * Returns the exit status: 0, 1 without NVML (the reason on stderr), 2 for
 * a usage error.
 */
int cli_gpus(int argc, char **argv);

#endif
