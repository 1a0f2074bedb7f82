/*
 * cli_gpus.c - `fnrun gpus`: what NVML sees on this machine.
 *
 *   GPU 0  NVIDIA H200  GPU-1699d92c-f69e-d70f-1e94-060fcf710205
 *     memory  total 143771 MiB  used 615 MiB  free 143156 MiB
 *     pid 542  8802 MiB  python3 hold.py
 *
 * One block per GPU, then one line per compute process with its command
 * line from /proc/PID/cmdline. NVML may report PIDs of another PID
 * namespace (a container without the host's PIDs); then the command line
 * shown is whatever that PID is here, or "(not readable)".
 *
 * Without NVML it prints the reason on stderr and exits 1.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "nvml.h"

#define GPUS_MAX_PROCS 256 /* processes listed per GPU */
#define GPUS_CMDLINE 160   /* bytes of a command line shown */

/* Bytes to MiB, rounded to nearest as nvidia-smi does. */
static unsigned long long mib(uint64_t bytes)
{
	return (unsigned long long)((bytes + (1u << 19)) >> 20);
}

/* The command line of pid, NULs as spaces, non-printables as '?'. */
static void cmdline_of(unsigned pid, char *out, size_t size)
{
	char path[64];
	size_t n = 0;
	FILE *f;

	snprintf(path, sizeof path, "/proc/%u/cmdline", pid);
	f = fopen(path, "r");
	if (f) {
		n = fread(out, 1, size - 1, f);
		fclose(f);
	}
	while (n > 0 && out[n - 1] == '\0')
		n--;
	if (n == 0) {
		snprintf(out, size, "(not readable)");
		return;
	}
	out[n] = '\0';
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)out[i];

		if (c == '\0')
			out[i] = ' ';
		else if (c < 0x20 || c == 0x7f)
			out[i] = '?';
	}
	if (n == size - 1 && size > 4)
		memcpy(out + size - 4, "...", 4);
}

static void print_procs(int i)
{
	struct gpu_proc procs[GPUS_MAX_PROCS];
	struct err e = {0};
	char cmd[GPUS_CMDLINE + 1];
	size_t n = 0;

	if (nvml_processes(i, procs, GPUS_MAX_PROCS, &n, &e) < 0) {
		printf("  processes: unknown (%s)\n", e.msg);
		return;
	}
	if (n == 0)
		printf("  no compute processes\n");
	for (size_t k = 0; k < n; k++) {
		cmdline_of(procs[k].pid, cmd, sizeof cmd);
		if (procs[k].used)
			printf("  pid %u  %llu MiB  %s\n", procs[k].pid,
			       mib(procs[k].used), cmd);
		else
			printf("  pid %u  ? MiB  %s\n", procs[k].pid, cmd);
	}
	if (n == GPUS_MAX_PROCS)
		printf("  (only the first %d processes are listed)\n", GPUS_MAX_PROCS);
}

/* Prints GPU i; returns 0, or -1 when NVML could not describe it. */
static int print_gpu(int i)
{
	struct gpu_info g;
	struct err e = {0};

	if (nvml_device(i, &g, &e) < 0) {
		fprintf(stderr, "fnrun gpus: %s\n", e.msg);
		return -1;
	}
	printf("GPU %d  %s  %s\n", g.index, g.name, g.uuid);
	printf("  memory  total %llu MiB  used %llu MiB  free %llu MiB\n",
	       mib(g.total), mib(g.used), mib(g.free));
	print_procs(i);
	return 0;
}

int cli_gpus(int argc, char **argv)
{
	struct err e = {0};
	int n, rc = 0;

	if (argc > 1) {
		fprintf(stderr, "usage: fnrun gpus\n");
		return 2;
	}
	if (nvml_init(&e) < 0) {
		fprintf(stderr, "fnrun gpus: %s\n", e.msg);
		return 1;
	}
	n = nvml_count();
	for (int i = 0; i < n; i++)
		if (print_gpu(i) < 0)
			rc = 1;
	nvml_shutdown();
	fflush(stdout);
	return rc;
}
