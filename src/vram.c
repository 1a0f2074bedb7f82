/*
 * vram.c - GPU memory budgets and reservations. See vram.h.
 *
 * Invariant: for every GPU, 0 <= reserved <= budget (reservations are made
 * only after placement said they fit; a measured footprint may exceed a
 * declared one, and then reserved may pass the budget until it is freed).
 */
#include <stdio.h>
#include <string.h>

#include "log.h"
#include "nvml.h"
#include "vram.h"

static struct vram_gpu gpus[VRAM_MAX_GPUS];
static int ngpus;

static void add_gpu(const char *name, int64_t budget, int from_nvml)
{
	struct vram_gpu *g = &gpus[ngpus];

	g->index = ngpus;
	snprintf(g->name, sizeof g->name, "%s", name);
	g->budget = budget;
	g->reserved = 0;
	g->from_nvml = from_nvml;
	ngpus++;
}

static int from_nvml(void)
{
	struct err e = {0};
	int n;

	if (nvml_init(&e) < 0) {
		log_info("gpu: no NVML (%s)", e.msg);
		return 0;
	}
	n = nvml_count();
	for (int i = 0; i < n && ngpus < VRAM_MAX_GPUS; i++) {
		struct gpu_info info;
		if (nvml_device(i, &info, &e) < 0) {
			log_warn("gpu: cannot read device %d: %s", i, e.msg);
			continue;
		}
		add_gpu(info.name, (int64_t)info.total, 1);
	}
	return ngpus;
}

void vram_init(int64_t config_bytes, int64_t config_count, int64_t limit_mb)
{
	ngpus = 0;
	if (config_bytes <= 0 && from_nvml() > 0) {
		/* measured totals */
	} else {
		int64_t n = config_count > 0 ? config_count : 1;
		for (int64_t i = 0; i < n && ngpus < VRAM_MAX_GPUS; i++)
			add_gpu(config_bytes > 0 ? "configured" : "unlimited",
				config_bytes > 0 ? config_bytes : VRAM_UNLIMITED, 0);
	}
	for (int i = 0; i < ngpus && limit_mb > 0; i++)
		if (gpus[i].budget > limit_mb * 1024 * 1024)
			gpus[i].budget = limit_mb * 1024 * 1024;
	for (int i = 0; i < ngpus; i++) {
		if (gpus[i].budget == VRAM_UNLIMITED)
			log_info("gpu index=%d name=%s budget=unlimited", i, log_q(gpus[i].name));
		else
			log_info("gpu index=%d name=%s budget_mb=%lld", i, log_q(gpus[i].name),
				 (long long)(gpus[i].budget >> 20));
	}
}

int vram_count(void)
{
	return ngpus;
}

const struct vram_gpu *vram_gpu(int i)
{
	return i >= 0 && i < ngpus ? &gpus[i] : NULL;
}




void vram_reserve(int gpu, int64_t bytes)
{
	if (gpu >= 0 && gpu < ngpus)
		gpus[gpu].reserved += bytes;
}

void vram_release(int gpu, int64_t bytes)
{
	if (gpu < 0 || gpu >= ngpus)
		return;
	gpus[gpu].reserved -= bytes;
	if (gpus[gpu].reserved < 0)
		gpus[gpu].reserved = 0;
}

/* The process group of pid, from /proc (field 5 of stat), or -1. */
static int pgrp_of(unsigned pid)
{
	char path[64], buf[512], *p;
	int pgrp = -1;
	FILE *f;

	snprintf(path, sizeof path, "/proc/%u/stat", pid);
	f = fopen(path, "r");
	if (f == NULL)
		return -1;
	if (fgets(buf, sizeof buf, f) && (p = strrchr(buf, ')')) != NULL)
		sscanf(p + 2, "%*c %*d %d", &pgrp);
	fclose(f);
	return pgrp;
}

int64_t vram_measure(int gpu, int pid)
{
	struct gpu_proc procs[256];
	struct err e = {0};
	size_t n = 0;
	int64_t sum = 0;

	if (gpu < 0 || gpu >= ngpus || !gpus[gpu].from_nvml)
		return -1;
	if (nvml_processes(gpu, procs, 256, &n, &e) < 0)
		return -1;
	/* A runner is a process group (spawned detached): count all of it. */
	for (size_t i = 0; i < n; i++)
		if ((int)procs[i].pid == pid || pgrp_of(procs[i].pid) == pid)
			sum += (int64_t)procs[i].used;
	return sum;
}
