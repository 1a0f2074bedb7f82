/*
 * runtime_process.h - what the process runtime offers beyond the runtime
 * interface (runtime.h): stopping a model server an earlier fnrun left.
 */
#ifndef FNRUN_RUNTIME_PROCESS_H
#define FNRUN_RUNTIME_PROCESS_H

/*
 * Kills the process group of pid, recorded by an earlier fnrun that died
 * (kill -9), when that process still exists. Logs what it stops.
 */
void runtime_process_kill_orphan(int pid);

#endif
