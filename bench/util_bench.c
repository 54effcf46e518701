/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * util_bench.c: helpers shared by the benchmarks (see util_bench.h).
 */
#include "util_bench.h"

#include <linux/perf_event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

uint64_t ub_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void *ub_shared(size_t size)
{
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        perror("mmap");
        exit(2);
    }
    return p;
}

void ub_report(const char *name, double value, const char *unit, const char *bname, double bvalue)
{
    printf("BENCH %s %.6g %s baseline=%s %.6g ratio=%.4f\n", name, value, unit, bname, bvalue,
           bvalue != 0 ? value / bvalue : 0.0);
    fflush(stdout);
}

void ub_gate_init(ub_gate_t *g)
{
    int fd[2];
    if (pipe(fd) != 0) {
        perror("pipe");
        exit(2);
    }
    g->rd = fd[0];
    g->wr = fd[1];
}

void ub_gate_wait(ub_gate_t *g)
{
    char c;
    if (read(g->rd, &c, 1) != 1)
        exit(3);
}

void ub_gate_open(ub_gate_t *g, int n)
{
    for (int i = 0; i < n; i++)
        if (write(g->wr, "g", 1) != 1)
            exit(3);
}

int ub_run_children(int n, int (*fn)(int i, void *arg), void *arg)
{
    pid_t pids[64];
    int bad = 0;
    fflush(NULL);
    for (int i = 0; i < n; i++) {
        pids[i] = fork();
        if (pids[i] == 0)
            _exit(fn(i, arg));
    }
    for (int i = 0; i < n; i++) {
        int st;
        waitpid(pids[i], &st, 0);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
            bad = 1;
    }
    return bad;
}

int ub_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

double ub_median(double *v, size_t n)
{
    qsort(v, n, sizeof *v, ub_cmp_double);
    return v[n / 2];
}

int ub_syscalls_start(void)
{
    static const char *ids[] = {"/sys/kernel/tracing/events/raw_syscalls/sys_enter/id",
                                "/sys/kernel/debug/tracing/events/raw_syscalls/sys_enter/id"};
    unsigned long long id = 0;
    for (size_t i = 0; i < sizeof ids / sizeof ids[0] && !id; i++) {
        FILE *f = fopen(ids[i], "r");
        if (f) {
            if (fscanf(f, "%llu", &id) != 1)
                id = 0;
            fclose(f);
        }
    }
    if (!id)
        return -1;
    struct perf_event_attr a;
    memset(&a, 0, sizeof a);
    a.type = PERF_TYPE_TRACEPOINT;
    a.size = sizeof a;
    a.config = id;
    return (int)syscall(SYS_perf_event_open, &a, 0, -1, -1, 0);
}

long long ub_syscalls_stop(int fd)
{
    long long n = -1;
    if (fd < 0)
        return -1;
    if (read(fd, &n, sizeof n) != (ssize_t)sizeof n)
        n = -1;
    close(fd);
    return n;
}
