/*
 * bench.h - what the parts of make bench share (bench.c): a monotonic
 * clock in milliseconds and a sort of samples, and the parts themselves.
 */
#ifndef FNRUN_BENCH_H
#define FNRUN_BENCH_H

#include <sys/types.h>

/* Monotonic milliseconds. */
double bench_now_ms(void);
/* Sorts v[0..n) ascending (percentiles are then v[(n - 1) * p]). */
void bench_sort(double *v, int n);

/* fnrun serve --config cfg --data data on 127.0.0.1:port, once /health answers (exits if not). */
pid_t bench_serve(const char *cfg, int port, const char *data);
/* Polls GET path until its body contains want: ms waited, or -1 after limit_ms. */
double bench_poll(int port, const char *path, const char *want, double limit_ms);

void bench_docker(void);  /* bench_docker.c */
void bench_metrics(void); /* bench_metrics.c */
void bench_adoption(void); /* bench_adoption.c */
void bench_cluster(const char *dir); /* bench_cluster.c: dir holds wf.json */

#endif
