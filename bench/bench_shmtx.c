/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * bench_shmtx.c: the shared mutex against two baselines measured in the same
 * run: a process-shared robust pthread mutex, and a spin-then-semaphore lock
 * in the style nginx publishes (a pid in an atomic word, growing rounds of
 * pause, then a process-shared POSIX semaphore). Figures: uncontended
 * lock+unlock, 2 processes on short critical sections, recovery after the
 * holder is killed (1000 rounds), and system calls made by 10 million
 * uncontended operations (counted with strace).
 */
#include "shmkit.h"
#include "util_bench.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- baseline: spin then semaphore ------------------------------------------- */

typedef struct {
    _Atomic uint32_t lock;
    _Atomic uint32_t wait;
    sem_t sem;
} spin_sem_t;

static void ss_init(spin_sem_t *s)
{
    atomic_store(&s->lock, 0);
    atomic_store(&s->wait, 0);
    sem_init(&s->sem, 1, 0);
}

static void ss_lock(spin_sem_t *s, uint32_t pid)
{
    for (;;) {
        uint32_t z = 0;
        if (atomic_load_explicit(&s->lock, memory_order_relaxed) == 0 &&
            atomic_compare_exchange_strong(&s->lock, &z, pid))
            return;
        for (unsigned n = 1; n < 2048; n <<= 1) {
            for (unsigned i = 0; i < n; i++)
                shk_cpu_relax();
            z = 0;
            if (atomic_load_explicit(&s->lock, memory_order_relaxed) == 0 &&
                atomic_compare_exchange_strong(&s->lock, &z, pid))
                return;
        }
        atomic_fetch_add(&s->wait, 1);
        z = 0;
        if (atomic_compare_exchange_strong(&s->lock, &z, pid)) {
            atomic_fetch_sub(&s->wait, 1);
            return;
        }
        while (sem_wait(&s->sem) == -1 && errno == EINTR)
            ;
    }
}

static void ss_unlock(spin_sem_t *s, uint32_t pid)
{
    uint32_t me = pid;
    atomic_compare_exchange_strong(&s->lock, &me, 0);
    for (;;) {
        uint32_t w = atomic_load(&s->wait);
        if ((int32_t)w <= 0)
            return;
        if (atomic_compare_exchange_strong(&s->wait, &w, w - 1)) {
            sem_post(&s->sem);
            return;
        }
    }
}

/* ---- baseline: robust pthread mutex ----------------------------------------------- */

static void pm_init(pthread_mutex_t *m)
{
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
    pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
    pthread_mutex_init(m, &a);
    pthread_mutexattr_destroy(&a);
}

static int pm_lock(pthread_mutex_t *m)
{
    int rc = pthread_mutex_lock(m);
    if (rc == EOWNERDEAD) {
        pthread_mutex_consistent(m);
        return 1;
    }
    return 0;
}

/* ---- shared state ------------------------------------------------------------------- */

typedef struct {
    shk_shmtx_sh_t sh;
    pthread_mutex_t pm;
    spin_sem_t ss;
    _Atomic int go, stop;
    uint64_t counter;
    uint64_t ops[2];
} shared_t;

static shared_t *S;
enum { K_SHMTX, K_PTHREAD, K_SPINSEM };

static void do_lock(int kind, shk_shmtx_t *m, uint32_t pid)
{
    if (kind == K_SHMTX)
        shk_shmtx_lock(m);
    else if (kind == K_PTHREAD)
        pm_lock(&S->pm);
    else
        ss_lock(&S->ss, pid);
}

static void do_unlock(int kind, shk_shmtx_t *m, uint32_t pid)
{
    if (kind == K_SHMTX)
        shk_shmtx_unlock(m);
    else if (kind == K_PTHREAD)
        pthread_mutex_unlock(&S->pm);
    else
        ss_unlock(&S->ss, pid);
}

static double uncontended(int kind, long n)
{
    shk_shmtx_t m;
    uint32_t pid = (uint32_t)getpid();
    shk_shmtx_create(&m, &S->sh, "bench");
    uint64_t t0 = ub_now_ns();
    for (long i = 0; i < n; i++) {
        do_lock(kind, &m, pid);
        S->counter++;
        do_unlock(kind, &m, pid);
    }
    return (double)(ub_now_ns() - t0) / (double)n;
}

static int contend_child(int idx, void *arg)
{
    int kind = *(int *)arg;
    shk_shmtx_t m;
    uint32_t pid = (uint32_t)getpid();
    uint64_t n = 0;
    shk_shmtx_create(&m, &S->sh, "bench");
    while (!atomic_load(&S->go))
        shk_cpu_relax();
    while (!atomic_load_explicit(&S->stop, memory_order_relaxed)) {
        do_lock(kind, &m, pid);
        S->counter++;
        do_unlock(kind, &m, pid);
        n++;
        for (int k = 0; k < 100; k++) /* work outside the lock */
            shk_cpu_relax();
    }
    S->ops[idx] = n;
    return 0;
}

static double contended(int kind, double seconds)
{
    pid_t pids[2];
    S->go = S->stop = 0;
    S->ops[0] = S->ops[1] = 0;
    fflush(NULL);
    for (int i = 0; i < 2; i++) {
        pids[i] = fork();
        if (pids[i] == 0)
            _exit(contend_child(i, &kind));
    }
    uint64_t t0 = ub_now_ns();
    atomic_store(&S->go, 1);
    while (ub_now_ns() - t0 < (uint64_t)(seconds * 1e9))
        usleep(10000);
    atomic_store(&S->stop, 1);
    uint64_t t1 = ub_now_ns();
    for (int i = 0; i < 2; i++)
        waitpid(pids[i], NULL, 0);
    return (double)(S->ops[0] + S->ops[1]) / ((double)(t1 - t0) / 1e9);
}

/* One recovery round: a child takes the lock and is killed holding it; we
 * measure how long the next lock takes and whether it reported the death. */
static int recover_round(int kind, double *us)
{
    int p[2];
    char c;
    shk_shmtx_t m;
    if (pipe(p) != 0)
        return 0;
    shk_shmtx_create(&m, &S->sh, "bench");
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        shk_pid_refresh();
        do_lock(kind, &m, (uint32_t)getpid());
        if (write(p[1], "x", 1) != 1)
            _exit(1);
        for (;;)
            pause();
    }
    close(p[1]);
    if (read(p[0], &c, 1) != 1)
        return 0;
    close(p[0]);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    uint64_t t0 = ub_now_ns();
    int ok;
    if (kind == K_SHMTX) {
        ok = shk_shmtx_lock(&m) == SHK_EOWNERDEAD;
        shk_shmtx_unlock(&m);
    } else {
        ok = pm_lock(&S->pm) == 1;
        pthread_mutex_unlock(&S->pm);
    }
    *us = (double)(ub_now_ns() - t0) / 1000.0;
    return ok;
}

static int recovery(int kind, int rounds, double *mean_us, double *p99_us)
{
    double *t = calloc((size_t)rounds, sizeof *t);
    int ok = 0;
    double sum = 0;
    for (int i = 0; i < rounds; i++) {
        ok += recover_round(kind, &t[i]);
        sum += t[i];
    }
    qsort(t, (size_t)rounds, sizeof *t, ub_cmp_double);
    *mean_us = sum / rounds;
    *p99_us = t[(rounds * 99) / 100];
    free(t);
    return ok;
}

/* System calls made by the process while it runs `n` uncontended ops,
 * counted by strace: a run with n ops minus a run with none. -1 when strace
 * is not available. */
static long count_syscalls(const char *self, int kind, long n)
{
    long counts[2];
    for (int k = 0; k < 2; k++) {
        char cmd[1024], out[64];
        snprintf(out, sizeof out, "/tmp/shk_bench_strace.%d", (int)getpid());
        snprintf(cmd, sizeof cmd, "strace -f -c -o %s %s --loop %d %ld >/dev/null 2>&1", out,
                 self, kind, k ? n : 0L);
        if (system(cmd) != 0)
            return -1;
        FILE *f = fopen(out, "r");
        if (!f)
            return -1;
        char line[512];
        long total = -1;
        while (fgets(line, sizeof line, f)) {
            /* "100.00    0.000123   1   95    3 total" */
            if (strstr(line, "total")) {
                double pct, secs;
                long usecs, calls;
                if (sscanf(line, "%lf %lf %ld %ld", &pct, &secs, &usecs, &calls) == 4)
                    total = calls;
                else if (sscanf(line, "%lf %lf %ld", &pct, &secs, &calls) == 3)
                    total = calls;
            }
        }
        fclose(f);
        unlink(out);
        if (total < 0)
            return -1;
        counts[k] = total;
    }
    return counts[1] - counts[0];
}

int main(int argc, char **argv)
{
    S = ub_shared(sizeof *S);
    shk_shmtx_sh_init(&S->sh);
    pm_init(&S->pm);
    ss_init(&S->ss);

    if (argc == 4 && strcmp(argv[1], "--loop") == 0) {
        uncontended(atoi(argv[2]), atol(argv[3]));
        return 0;
    }

    long n = 10000000;
    double u_shk = uncontended(K_SHMTX, n), u_pm = uncontended(K_PTHREAD, n),
           u_ss = uncontended(K_SPINSEM, n);
    ub_report("shmtx.uncontended", u_shk, "ns/op", "pthread_robust", u_pm);
    ub_report("shmtx.uncontended_vs_spin_sem", u_shk, "ns/op", "spin_sem", u_ss);

    double c_shk = contended(K_SHMTX, 1.5), c_pm = contended(K_PTHREAD, 1.5),
           c_ss = contended(K_SPINSEM, 1.5);
    ub_report("shmtx.contended", c_shk, "ops/s", "pthread_robust", c_pm);
    ub_report("shmtx.contended_sem", c_shk, "ops/s", "spin_sem", c_ss);

    int rounds = 1000;
    double m_shk, p_shk, m_pm, p_pm;
    int r_shk = recovery(K_SHMTX, rounds, &m_shk, &p_shk);
    int r_pm = recovery(K_PTHREAD, rounds, &m_pm, &p_pm);
    ub_report("shmtx.recovered", r_shk, "rounds/1000", "pthread_robust", r_pm);
    ub_report("shmtx.recover_mean", m_shk, "us", "pthread_robust", m_pm);
    ub_report("shmtx.recover_p99", p_shk, "us", "pthread_robust", p_pm);

    char self[4096];
    ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
    if (len > 0) {
        self[len] = '\0';
        long s_shk = count_syscalls(self, K_SHMTX, n), s_pm = count_syscalls(self, K_PTHREAD, n);
        if (s_shk < 0 || s_pm < 0)
            printf("# shmtx.uncontended_syscalls skipped: strace is not available\n");
        else
            ub_report("shmtx.uncontended_syscalls", (double)s_shk, "calls/10M_ops",
                      "pthread_robust", (double)s_pm);
    }
    return 0;
}
