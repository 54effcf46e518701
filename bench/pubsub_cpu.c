/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * pubsub_cpu.c: the CPU time a server spends over a run. ps_cpu_tree sums
 * the CPU time of the given pids and of every descendant alive at the time
 * (an nginx master and its workers), in seconds: each process's CPU-time
 * clock (clock_getcpuclockid: the scheduler's nanoseconds), or where that
 * clock cannot be read, utime + stime (/proc/<pid>/stat fields 14 and 15,
 * whole clock ticks: 10 ms, so a run of 1 s on 5 processes would be
 * uncertain by a few percent). A process that exits between two samples
 * takes its time with it; the benchmark's servers keep their workers for
 * the whole run.
 */
#include "pubsub.h"

#include <ctype.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct { int pid, ppid; unsigned long long ticks; } proc_t;

/* Reads pid's parent and CPU ticks; -1 if it is gone or unreadable. */
static int read_stat(int pid, proc_t *out)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    /* The command name may hold spaces and parentheses: fields start after the last ')'. */
    char *p = strrchr(buf, ')');
    if (!p)
        return -1;
    char state;
    int ppid;
    unsigned long long ut, st;
    if (sscanf(p + 1, " %c %d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &state, &ppid, &ut,
               &st) != 4)
        return -1;
    *out = (proc_t){pid, ppid, ut + st};
    return 0;
}

double ps_cpu_tree(const int *pids, uint32_t n)
{
    DIR *d = opendir("/proc");
    if (!d)
        return -1;
    size_t cap = 1024, cnt = 0;
    proc_t *all = malloc(cap * sizeof *all);
    struct dirent *de;
    while (all && (de = readdir(d))) {
        if (!isdigit((unsigned char)de->d_name[0]))
            continue;
        if (cnt == cap) {
            proc_t *m = realloc(all, cap * 2 * sizeof *all);
            if (!m) {
                free(all);
                all = NULL;
                break;
            }
            all = m;
            cap *= 2;
        }
        if (read_stat(atoi(de->d_name), &all[cnt]) == 0)
            cnt++;
    }
    closedir(d);
    if (!all)
        return -1;
    /* Mark the roots, then whoever has a marked parent, until nothing changes. */
    char *in = calloc(cnt ? cnt : 1, 1);
    if (!in) {
        free(all);
        return -1;
    }
    for (size_t i = 0; i < cnt; i++)
        for (uint32_t j = 0; j < n; j++)
            if (all[i].pid == pids[j])
                in[i] = 1;
    for (int changed = 1; changed;) {
        changed = 0;
        for (size_t i = 0; i < cnt; i++) {
            if (in[i])
                continue;
            for (size_t j = 0; j < cnt; j++)
                if (in[j] && all[j].pid == all[i].ppid) {
                    in[i] = 1;
                    changed = 1;
                    break;
                }
        }
    }
    long hz = sysconf(_SC_CLK_TCK);
    double secs = 0;
    for (size_t i = 0; i < cnt; i++) {
        if (!in[i])
            continue;
        clockid_t cid;
        struct timespec ts;
        if (clock_getcpuclockid(all[i].pid, &cid) == 0 && clock_gettime(cid, &ts) == 0)
            secs += (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
        else
            secs += (double)all[i].ticks / (double)(hz > 0 ? hz : 100);
    }
    free(in);
    free(all);
    return secs;
}
