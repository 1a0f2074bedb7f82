/*
 * runtime_process.h - what the process runtime offers beyond the runtime
 * interface (runtime.h): stopping a model server an earlier fnrun left.
 */
#ifndef FNRUN_RUNTIME_PROCESS_H
#define FNRUN_RUNTIME_PROCESS_H

struct reg_model;

/*
 * Kills the process group of pid, recorded by an earlier fnrun that died
 * (kill -9), when that process still exists. Logs what it stops.
 */
void runtime_process_kill_orphan(int pid);

/*
 * The environment a process model server gets: ours, then cuda (e.g.
 * "CUDA_VISIBLE_DEVICES=0"; NULL: none), then the model's env entries, a
 * later name replacing an earlier one. Borrowed strings: free the array only.
 */
char **runtime_process_env(const struct reg_model *m, const char *cuda);

#endif
