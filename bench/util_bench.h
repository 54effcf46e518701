/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * util_bench.h: helpers shared by the benchmarks: clocks, shared memory,
 * forking workers that start together, and the BENCH line format.
 */
#ifndef UTIL_BENCH_H
#define UTIL_BENCH_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Monotonic nanoseconds. */
uint64_t ub_now_ns(void);

/* Anonymous shared memory (zeroed); exits on failure. */
void *ub_shared(size_t size);

/* Print one figure:
 * BENCH <name> <value> <unit> baseline=<bname> <bvalue> ratio=<value/bvalue> */
void ub_report(const char *name, double value, const char *unit, const char *bname,
               double bvalue);

/* A start gate for forked workers: ub_gate_wait() blocks until
 * ub_gate_open() is called (a pipe). */
typedef struct { int rd, wr; } ub_gate_t;
void ub_gate_init(ub_gate_t *g);
void ub_gate_wait(ub_gate_t *g);
void ub_gate_open(ub_gate_t *g, int n);

/* Fork n children running fn(i, arg); returns after all exited (0 if all
 * exited 0). */
int ub_run_children(int n, int (*fn)(int i, void *arg), void *arg);

/* A counter of the calling thread's system calls (the raw_syscalls:sys_enter
 * tracepoint, through perf_event_open), counting from now: its fd, or -1
 * when the kernel does not allow it (no tracefs, or perf_event_paranoid
 * without the privilege). ub_syscalls_stop() returns the count (-1 on
 * error; its own read() is counted) and closes it. */
int ub_syscalls_start(void);
long long ub_syscalls_stop(int fd);

/* Compare doubles for qsort. */
int ub_cmp_double(const void *a, const void *b);

/* The median of v[0..n) (n > 0); sorts v in place. */
double ub_median(double *v, size_t n);

#endif
