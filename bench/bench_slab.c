/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * bench_slab.c: the slab allocator on a 64 MiB pool. (a) churn: 10,000 live
 * blocks, each step frees a random one and allocates a new block of a
 * uniformly random size in 8..2048 in its place, 5 million steps, the pool's
 * lock taken on every call, against glibc malloc/free on the same sequence,
 * taken apart into the allocator alone (the lock held once around the loop)
 * and the lock alone (taken and released twice per step, with the store
 * but no allocation: the floor under the churn), and the same with the
 * process cache on (shk_slab_cache: the lock taken once per half
 * magazine); (b) the same churn in 2 processes on one pool
 * (with caches: three rounds alternating with the one-process baseline,
 * the median of each reported),
 * and a producer/consumer run where one process allocates and the other
 * frees, against one process, with the process cache (the design's answer
 * to sharing) and without it (every call takes the lock);
 * (c) utilization: an empty pool filled with the same size mix until the
 * first failure, bytes requested / pool size, against what power-of-two
 * classes would fit (a model computed on the same sizes); (d) the largest
 * block that can still be allocated after (a).
 *
 * Every block is written once when it is allocated, in the warm-up fill as
 * in the timed loop, for glibc and the pool alike, so that neither side
 * pays its first page faults inside the timed loop.
 */
#include "shmkit.h"
#include "util_bench.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define POOL (64u << 20)
#define LIVE 10000
#define STEPS 5000000L

static uint64_t rng = 0x243f6a8885a308d3ull;
static uint64_t next_rand(void)
{
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return rng * 0x2545f4914f6cdd1dull;
}

static uint16_t *sizes;   /* per step */
static uint16_t *victims; /* per step: which live block is replaced */

static void make_sequence(void)
{
    sizes = malloc(STEPS * sizeof *sizes);
    victims = malloc(STEPS * sizeof *victims);
    for (long i = 0; i < STEPS; i++) {
        sizes[i] = (uint16_t)(8 + next_rand() % 2041);
        victims[i] = (uint16_t)(next_rand() % LIVE);
    }
}

static double churn_glibc(void)
{
    void **live = calloc(LIVE, sizeof *live);
    for (int i = 0; i < LIVE; i++) {
        live[i] = malloc(8 + next_rand() % 2041);
        *(volatile char *)live[i] = 1;
    }
    uint64_t t0 = ub_now_ns();
    for (long s = 0; s < STEPS; s++) {
        free(live[victims[s]]);
        live[victims[s]] = malloc(sizes[s]);
        *(volatile char *)live[victims[s]] = 1;
    }
    double ns = (double)(ub_now_ns() - t0) / STEPS;
    for (int i = 0; i < LIVE; i++)
        free(live[i]);
    free(live);
    return ns;
}

/* How (a) takes the pool's lock. */
enum {
    LOCK_EACH, /* shk_slab_alloc/free: the lock on every call (the target's figure) */
    LOCK_ONCE, /* the lock held once around the loop, the _locked calls: the allocator alone */
    LOCK_ONLY  /* per step the lock taken and released twice and the store, no allocator */
};

/* (a) on pool s: fills live[0..LIVE), then times the churn taking the lock
 * as `how` says. The blocks stay live (the caller frees them). Returns ns
 * per step. LOCK_ONLY keeps the blocks of the fill and writes into the
 * victim's block every step, so its stores spread over the same ~10 MB as
 * the churn's: it is what the lock and the store cost by themselves, a
 * floor for LOCK_EACH. */
static double churn_plain(shk_slab_t *s, void **live, int how)
{
    for (int i = 0; i < LIVE; i++) {
        live[i] = shk_slab_alloc(s, 8 + next_rand() % 2041);
        *(volatile char *)live[i] = 1;
    }
    uint64_t t0 = ub_now_ns();
    if (how == LOCK_EACH) {
        for (long k = 0; k < STEPS; k++) {
            shk_slab_free(s, live[victims[k]]);
            live[victims[k]] = shk_slab_alloc(s, sizes[k]);
            *(volatile char *)live[victims[k]] = 1;
        }
    } else if (how == LOCK_ONCE) {
        shk_slab_lock(s);
        for (long k = 0; k < STEPS; k++) {
            shk_slab_free_locked(s, live[victims[k]]);
            live[victims[k]] = shk_slab_alloc_locked(s, sizes[k]);
            *(volatile char *)live[victims[k]] = 1;
        }
        shk_slab_unlock(s);
    } else {
        for (long k = 0; k < STEPS; k++) {
            shk_slab_lock(s);
            shk_slab_unlock(s);
            shk_slab_lock(s);
            shk_slab_unlock(s);
            *(volatile char *)live[victims[k]] = 1;
        }
    }
    return (double)(ub_now_ns() - t0) / STEPS;
}

static void free_all(shk_slab_t *s, void **live)
{
    for (int i = 0; i < LIVE; i++)
        shk_slab_free(s, live[i]);
}

/* The producer/consumer ring of (b'): head and tail on lines of their own,
 * each side rereads the other's index only when its last view runs out,
 * and publishes its own every XBATCH items (and at the end), so the ring
 * costs about 10 ns per block here instead of about 50 and the figure is
 * mostly the allocator's. */
#define XBATCH 16
typedef struct {
    _Alignas(64) _Atomic uint64_t head; /* blocks the consumer is done with */
    _Alignas(64) _Atomic uint64_t tail; /* blocks the producer has put in */
    _Alignas(64) uint64_t ring[1 << 16];
} xring_t;

/* Start line for the processes of (b): each fills its blocks, then waits
 * here, so the timed loops run side by side. */
typedef struct {
    _Atomic int ready;
    _Atomic uint64_t start, end[2];
} gate_t;

static gate_t *gate;
static int gate_n; /* processes to wait for; 0: no gate */

/* Churn on the pool with `live` blocks over steps [from, to), with or
 * without the process cache (given back to the pool afterwards). Returns
 * ns per step of the timed loop. */
static double churn_slab(shk_slab_t *s, int live_n, long from, long to, int cache)
{
    void **live = calloc((size_t)live_n, sizeof *live);
    shk_slab_cache(s, cache);
    for (int i = 0; i < live_n; i++) {
        live[i] = shk_slab_alloc(s, 8 + next_rand() % 2041);
        *(volatile char *)live[i] = 1;
    }
    if (gate_n) {
        /* seq_cst: a plain counter barrier, off the timed path */
        if (atomic_fetch_add(&gate->ready, 1) + 1 == gate_n)
            atomic_store(&gate->start, ub_now_ns());
        while (atomic_load(&gate->start) == 0)
            shk_cpu_relax();
    }
    uint64_t t0 = gate_n ? atomic_load(&gate->start) : ub_now_ns();
    for (long k = from; k < to; k++) {
        int v = victims[k] % live_n;
        shk_slab_free(s, live[v]);
        live[v] = shk_slab_alloc(s, sizes[k]);
        if (!live[v]) {
            fprintf(stderr, "bench_slab: pool full during churn\n");
            exit(1);
        }
        *(volatile char *)live[v] = 1;
    }
    uint64_t t1 = ub_now_ns();
    double ns = (double)(t1 - t0) / (double)(to - from);
    if (gate_n)
        atomic_store(&gate->end[from ? 1 : 0], t1);
    for (int i = 0; i < live_n; i++)
        shk_slab_free(s, live[i]);
    shk_slab_cache(s, 0);
    free(live);
    return ns;
}

/* (b): two processes churn, each with half the live blocks and half the
 * steps, the first on pool s0 and the second on s1 (the same pool, or for
 * the machine's own ceiling two pools), their timed loops started
 * together; returns their combined steps per second, over the time until
 * the slower one is done (as the one-process figure, the fill and the frees
 * after are not timed). */
static double churn_two(shk_slab_t *s0, shk_slab_t *s1, int cache)
{
    if (!gate)
        gate = ub_shared(sizeof *gate);
    memset(gate, 0, sizeof *gate);
    fflush(NULL);
    for (int p = 0; p < 2; p++)
        if (fork() == 0) {
            gate_n = 2;
            churn_slab(p ? s1 : s0, LIVE / 2, p * (STEPS / 2), (p + 1) * (STEPS / 2), cache);
            _exit(0);
        }
    while (wait(NULL) > 0)
        ;
    uint64_t end = gate->end[0] > gate->end[1] ? gate->end[0] : gate->end[1];
    return (double)(STEPS / 2 * 2) / ((double)(end - gate->start) / 1e9);
}

/* (b'): this process allocates, a child frees what it receives through a
 * ring; returns blocks per second. */
static double xmalloc_two(shk_slab_t *s, xring_t *x, int cache)
{
    long n = STEPS / 2;
    atomic_store(&x->head, 0);
    atomic_store(&x->tail, 0);
    fflush(NULL);
    uint64_t t0 = ub_now_ns();
    if (fork() == 0) {
        uint64_t seen = 0;
        shk_slab_cache(s, cache);
        for (long k = 0; k < n; k++) {
            /* acquire: pairs with the producer's release of tail, so the
             * slots below it are written */
            while (seen <= (uint64_t)k) {
                seen = atomic_load_explicit(&x->tail, memory_order_acquire);
                if (seen <= (uint64_t)k)
                    shk_cpu_relax();
            }
            shk_slab_free(s, shk_slab_ptr(s, x->ring[k & 0xffff]));
            /* release: the slots are read before the producer may reuse them */
            if ((k + 1) % XBATCH == 0 || k + 1 == n)
                atomic_store_explicit(&x->head, (uint64_t)k + 1, memory_order_release);
        }
        shk_slab_cache(s, 0);
        _exit(0);
    }
    shk_slab_cache(s, cache);
    uint64_t done = 0;
    for (long k = 0; k < n; k++) {
        /* acquire: pairs with the consumer's release of head */
        while ((uint64_t)k - done >= 4096) {
            done = atomic_load_explicit(&x->head, memory_order_acquire);
            if ((uint64_t)k - done >= 4096)
                shk_cpu_relax();
        }
        void *b;
        while (!(b = shk_slab_alloc(s, sizes[k])))
            shk_cpu_relax();
        x->ring[k & 0xffff] = shk_slab_off(s, b);
        /* release: the slots below the new tail are written */
        if ((k + 1) % XBATCH == 0 || k + 1 == n)
            atomic_store_explicit(&x->tail, (uint64_t)k + 1, memory_order_release);
    }
    wait(NULL);
    shk_slab_cache(s, 0);
    return (double)n / ((double)(ub_now_ns() - t0) / 1e9);
}

static void discard(void *ctx, int level, const char *msg)
{
    (void)ctx, (void)level, (void)msg;
}

int main(void)
{
    void *mem = ub_shared(POOL);
    shk_slab_t *s;
    shk_slab_stats_t st;

    if (shk_slab_init(&s, mem, POOL, "bench") != SHK_OK) {
        fprintf(stderr, "%s\n", shk_last_errmsg());
        return 1;
    }
    make_sequence();

    /* (a) churn, and (d) what is left in one piece afterwards */
    double g = churn_glibc();
    void **keep = calloc(LIVE, sizeof *keep);
    ub_report("slab.churn", churn_plain(s, keep, LOCK_EACH), "ns/op", "glibc", g);
    shk_slab_stats(s, &st);
    ub_report("slab.largest_after_churn", (double)st.largest_free_run * (double)st.page_size,
              "bytes", "pool_size", (double)POOL);
    free_all(s, keep);
    /* (a) taken apart: the allocator without the lock, and the lock (with
     * the store) without the allocator; slab.churn cannot go below the
     * second */
    ub_report("slab.churn_one_lock", churn_plain(s, keep, LOCK_ONCE), "ns/op", "glibc", g);
    free_all(s, keep);
    ub_report("slab.churn_lock_floor", churn_plain(s, keep, LOCK_ONLY), "ns/op", "glibc", g);
    free_all(s, keep);
    free(keep);
    if (shk_slab_check(s) != SHK_OK) {
        fprintf(stderr, "bench_slab: %s\n", shk_last_errmsg());
        return 1;
    }
    /* (a') the same sequence through the process cache */
    ub_report("slab.churn_cached", churn_slab(s, LIVE, 0, STEPS, 1), "ns/op", "glibc", g);

    /* (b) two processes on one pool, each with half the live blocks. With
     * caches, three rounds alternating with the one-process baseline and
     * with two processes on two pools of their own (nothing shared: what
     * this VM's two vCPUs give at best), medians reported: where the host
     * puts the two vCPUs changes from run to run, and with it the scaling. */
    shk_slab_t *s2;
    if (shk_slab_init(&s2, ub_shared(POOL), POOL, "bench2") != SHK_OK) {
        fprintf(stderr, "%s\n", shk_last_errmsg());
        return 1;
    }
    double one_r[3], two_r[3], sep_r[3];
    for (int r = 0; r < 3; r++) {
        one_r[r] = 1e9 / churn_slab(s, LIVE / 2, 0, STEPS / 2, 1);
        two_r[r] = churn_two(s, s, 1);
        sep_r[r] = churn_two(s, s2, 1);
    }
    double one_c = ub_median(one_r, 3), two = ub_median(two_r, 3), sep = ub_median(sep_r, 3);
    ub_report("slab.churn2", two, "ops/s", "one_process", one_c);
    ub_report("slab.churn2_two_pools", sep, "ops/s", "one_process", one_c);
    ub_report("slab.churn2_vs_two_pools", two, "ops/s", "two_pools", sep);
    double one_l = 1e9 / churn_slab(s, LIVE / 2, 0, STEPS / 2, 0);
    ub_report("slab.churn2_locked", churn_two(s, s, 0), "ops/s", "one_process", one_l);

    /* (b') one process allocates, the other frees what it receives */
    xring_t *x = ub_shared(sizeof *x);
    ub_report("slab.xmalloc2", xmalloc_two(s, x, 1), "ops/s", "one_process", one_c);
    ub_report("slab.xmalloc2_locked", xmalloc_two(s, x, 0), "ops/s", "one_process", one_l);
    if (shk_slab_check(s) != SHK_OK) {
        fprintf(stderr, "bench_slab: %s\n", shk_last_errmsg());
        return 1;
    }
    shk_slab_stats(s, &st);
    if (st.pages_free != st.pages_total || st.caches) {
        fprintf(stderr, "bench_slab: %zu of %zu pages free, %u caches after the runs\n",
                st.pages_free, st.pages_total, st.caches);
        return 1;
    }

    /* (c) utilization */
    size_t req = 0;
    shk_log_set(discard, NULL, SHK_LOG_ERR); /* the expected out-of-memory line */
    rng = 0x9e3779b97f4a7c15ull;
    for (;;) {
        size_t sz = 8 + next_rand() % 2041;
        if (!shk_slab_alloc(s, sz))
            break;
        req += sz;
    }
    /* the model: how much of the same sequence power-of-two classes would
     * have fitted, ignoring their headers and page tails (in their favour) */
    double model = 0;
    {
        size_t used = 0, fit = 0;
        uint64_t save = rng;
        rng = 0x9e3779b97f4a7c15ull;
        for (;;) {
            size_t sz = 8 + next_rand() % 2041, p2 = 8;
            while (p2 < sz)
                p2 <<= 1;
            if (used + p2 > POOL)
                break;
            used += p2;
            fit += sz;
        }
        rng = save;
        model = (double)fit / POOL;
    }
    ub_report("slab.utilization", (double)req / POOL, "fraction", "pow2_classes_model", model);
    return 0;
}
