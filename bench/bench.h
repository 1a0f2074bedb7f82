/*
 * bench.h - what the parts of make bench share (bench.c): a monotonic
 * clock in milliseconds and a sort of samples, and the parts themselves.
 */
#ifndef FNRUN_BENCH_H
#define FNRUN_BENCH_H

/* Monotonic milliseconds. */
double bench_now_ms(void);
/* Sorts v[0..n) ascending (percentiles are then v[(n - 1) * p]). */
void bench_sort(double *v, int n);

void bench_docker(void);  /* bench_docker.c */
void bench_metrics(void); /* bench_metrics.c */
void bench_adoption(void); /* bench_adoption.c */

#endif
