/*
 * vram.h - the GPU memory budget: one budget per GPU, reservations by
 * runners, and the choice of a GPU for a new runner.
 *
 * Budgets come from NVML (each GPU's total), from config (gpu.vram), or
 * stay unlimited on a machine without GPUs where nothing was configured;
 * VRAM_LIMIT (MB) caps every budget. A reservation is held from the moment
 * a runner is started until it has exited, so nothing is oversubscribed.
 * Where a runner goes and what is evicted are placement's decisions
 * (placement.h); vram keeps the books.
 */
#ifndef FNRUN_VRAM_H
#define FNRUN_VRAM_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

#define VRAM_MAX_GPUS 16
#define VRAM_UNLIMITED INT64_MAX

struct vram_gpu {
	int index;
	char name[96];
	int64_t budget;   /* bytes this GPU may hand out; VRAM_UNLIMITED when unknown */
	int64_t reserved; /* bytes held by runners now */
	int from_nvml;    /* the budget came from the device */
};

/*
 * Sets up the budgets: config_bytes (gpu.vram, 0: none) and config_count
 * (gpu.devices, 0: detect) are used when NVML has no GPU; limit_mb (from
 * VRAM_LIMIT, 0: none) caps every budget. Never fails: without any source
 * there is one unlimited virtual GPU. Logs what it found.
 */
void vram_init(int64_t config_bytes, int64_t config_count, int64_t limit_mb);
int vram_count(void);
const struct vram_gpu *vram_gpu(int i);
void vram_reserve(int gpu, int64_t bytes);
void vram_release(int gpu, int64_t bytes);
/* Per-process GPU memory of pid and its descendants through NVML, or -1. */
int64_t vram_measure(int gpu, int pid);

#endif
