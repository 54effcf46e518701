/*
 * test_shmtx.c: the process-shared mutex: mutual exclusion across forked
 * processes and threads, trylock, force_unlock, dead-owner recovery with no
 * master, timed lock, a no-lost-wakeup stress, kills at random points inside
 * the critical section, and misuse reporting.
 */
#include "shk_shmtx.h"
#include "util_test.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/wait.h>

typedef struct {
    shk_shmtx_sh_t lock;
    uint64_t counter; /* plain, non-atomic: protected by the lock */
    _Atomic uint64_t progress;
    _Atomic uint64_t kill_ns;
    _Atomic int status;
    _Atomic uint64_t took_ms;
    _Atomic uint32_t recoveries;
} shared_t;

static shared_t *sh;

static void setup(void)
{
    sh = tu_shared(sizeof(*sh));
}

static void teardown(void)
{
    tu_unshare(sh, sizeof(*sh));
}

static void handle(shk_shmtx_t *m)
{
    int rc = shk_shmtx_create(m, &sh->lock, "test");
    if (rc != SHK_OK) {
        fprintf(stderr, "shk_shmtx_create: %s\n", shk_last_errmsg());
        _exit(2);
    }
}

/* ---- mutual exclusion ------------------------------------------------------ */

static long iters;

static int adder(void *arg)
{
    shk_shmtx_t m;
    int nospin = arg != NULL;
    handle(&m);
    if (nospin)
        m.spin = 0; /* force the sleeping path */
    for (long i = 0; i < iters; i++) {
        int rc = shk_shmtx_lock(&m);
        TU_CHECK(rc == SHK_OK, "lock: %d", rc);
        sh->counter++;
        if (nospin && (i & 7) == 0)
            sched_yield(); /* hold it across a yield: others must sleep */
        rc = shk_shmtx_unlock(&m);
        TU_CHECK(rc == SHK_OK, "unlock: %d", rc);
    }
    return 0;
}

START_TEST(mutual_exclusion_4_processes)
{
    pid_t pids[4];
    shk_shmtx_stats_t st;

    iters = 200000;
    for (int i = 0; i < 4; i++)
        pids[i] = tu_fork(adder, NULL);
    for (int i = 0; i < 4; i++)
        tu_wait_ok(pids[i]);
    ck_assert_uint_eq(sh->counter, 4 * (uint64_t)iters);
    shk_shmtx_stats(&sh->lock, &st);
    ck_assert_uint_eq(st.acquired, 4 * (uint64_t)iters);
    ck_assert_int_eq(st.owner, 0);
    ck_assert_uint_eq(st.waiters, 0);
    ck_assert_uint_le(st.contended, st.acquired);
    ck_assert_uint_eq(st.recovered, 0);
}
END_TEST

START_TEST(no_lost_wakeup_stress)
{
    pid_t pids[4];
    shk_shmtx_stats_t st;

    /* No spinning and a yield inside every 8th critical section: nearly
     * every contended acquisition goes through FUTEX_WAIT, so a lost wake-up
     * would hang here (the tcase timeout turns that into a failure). */
    iters = tu_scale(20000, 4);
    for (int i = 0; i < 4; i++)
        pids[i] = tu_fork(adder, (void *)1);
    for (int i = 0; i < 4; i++)
        tu_wait_ok(pids[i]);
    ck_assert_uint_eq(sh->counter, 4 * (uint64_t)iters);
    shk_shmtx_stats(&sh->lock, &st);
    ck_assert_uint_gt(st.sleeps, 0);
    ck_assert_uint_eq(st.waiters, 0);
    ck_assert_int_eq(st.owner, 0);
}
END_TEST

static shk_shmtx_t thread_mtx;

static void *thread_adder(void *arg)
{
    long n = (long)arg;
    for (long i = 0; i < n; i++) {
        shk_shmtx_lock(&thread_mtx);
        sh->counter++;
        shk_shmtx_unlock(&thread_mtx);
    }
    return NULL;
}

START_TEST(mutual_exclusion_threads)
{
    pthread_t t[4];
    long n = tu_scale(100000, 10);
    ck_assert_int_eq(shk_shmtx_create(&thread_mtx, &sh->lock, "threads"), SHK_OK);
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(pthread_create(&t[i], NULL, thread_adder, (void *)n), 0);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    ck_assert_uint_eq(sh->counter, 4 * (uint64_t)n);
}
END_TEST

/* ---- trylock, force_unlock, misuse ------------------------------------------ */

typedef struct {
    tu_pipe_t to_child, to_parent;
} chan_t;

static chan_t ch;

/* Take the lock, tell the parent, wait for its go, then unlock and report the
 * unlock status in sh->status. */
static int holder(void *arg)
{
    shk_shmtx_t m;
    (void)arg;
    handle(&m);
    TU_CHECK(shk_shmtx_lock(&m) == SHK_OK, "lock");
    tu_signal(&ch.to_parent);
    tu_await(&ch.to_child);
    atomic_store(&sh->status, shk_shmtx_unlock(&m));
    tu_signal(&ch.to_parent);
    return 0;
}

static int try_once(void *arg)
{
    shk_shmtx_t m;
    handle(&m);
    int got = shk_shmtx_trylock(&m);
    if (got)
        shk_shmtx_unlock(&m);
    return got == (int)(intptr_t)arg ? 0 : 1;
}

START_TEST(trylock_fails_while_held)
{
    shk_shmtx_t m;
    shk_shmtx_stats_t before, after;
    handle(&m);
    tu_pipe(&ch.to_child);
    tu_pipe(&ch.to_parent);

    pid_t h = tu_fork(holder, NULL);
    ck_assert_int_eq(tu_await(&ch.to_parent), 0);
    ck_assert_int_eq(shk_shmtx_owner(&m), h);

    shk_shmtx_stats(&sh->lock, &before);
    ck_assert_int_eq(shk_shmtx_trylock(&m), 0);                 /* held by another process */
    tu_wait_ok(tu_fork(try_once, (void *)(intptr_t)0));          /* and from a third one */
    shk_shmtx_stats(&sh->lock, &after);
    ck_assert_uint_eq(after.acquired, before.acquired);          /* failures count nothing */
    ck_assert_int_eq(shk_shmtx_owner(&m), h);

    tu_signal(&ch.to_child);
    ck_assert_int_eq(tu_await(&ch.to_parent), 0);
    ck_assert_int_eq(atomic_load(&sh->status), SHK_OK);
    tu_wait_ok(h);

    ck_assert_int_eq(shk_shmtx_trylock(&m), 1);
    ck_assert_int_eq(shk_shmtx_owner(&m), getpid());
    ck_assert_int_eq(shk_shmtx_trylock(&m), 0); /* not recursive */
    ck_assert_int_eq(shk_shmtx_unlock(&m), SHK_OK);
    tu_wait_ok(tu_fork(try_once, (void *)(intptr_t)1));
    tu_pipe_close(&ch.to_child);
    tu_pipe_close(&ch.to_parent);
}
END_TEST

/* Wait on the lock until killed. */
static int sleeper(void *arg)
{
    shk_shmtx_t m;
    (void)arg;
    handle(&m);
    m.spin = 0; /* straight to the futex */
    shk_shmtx_lock(&m);
    return 1; /* never reached: the parent holds the lock until we are dead */
}

static uint32_t waiters_now(void)
{
    shk_shmtx_stats_t st;
    shk_shmtx_stats(&sh->lock, &st);
    return st.waiters;
}

/* Regression: a waiter killed in its sleep stayed on the waiter count for
 * good, so every later release made a futex call (3 killed sleepers: 5 ns
 * -> 600 ns per uncontended lock and unlock). The count heals within two
 * releases that wake nobody. */
START_TEST(killed_sleepers_leave_no_phantom_waiters)
{
    shk_shmtx_t m;
    uint32_t phantoms = 0;
    handle(&m);
    ck_assert_int_eq(shk_shmtx_lock(&m), SHK_OK);
    /* A sleeper may be between two slices (off the count) when it is killed;
     * try again until the kills leave phantoms to heal. */
    for (int round = 0; round < 20 && phantoms == 0; round++) {
        pid_t p[3];
        for (int i = 0; i < 3; i++)
            p[i] = tu_fork(sleeper, NULL);
        uint64_t deadline = shk_time_ms() + 10000;
        while (waiters_now() < 3 && shk_time_ms() < deadline)
            sched_yield();
        ck_assert_uint_eq(waiters_now(), 3);
        for (int i = 0; i < 3; i++)
            kill(p[i], SIGKILL);
        for (int i = 0; i < 3; i++)
            ck_assert_int_eq(tu_wait(p[i]), 128 + SIGKILL);
        phantoms = waiters_now();
    }
    ck_assert_uint_gt(phantoms, 0);
    ck_assert_int_eq(shk_shmtx_unlock(&m), SHK_OK); /* wakes nobody: 1 */
    ck_assert_int_eq(shk_shmtx_lock(&m), SHK_OK);
    ck_assert_int_eq(shk_shmtx_unlock(&m), SHK_OK); /* wakes nobody: 2, healed */
    ck_assert_uint_eq(waiters_now(), 0);
    for (int i = 0; i < 100; i++) {
        ck_assert_int_eq(shk_shmtx_lock(&m), SHK_OK);
        ck_assert_int_eq(shk_shmtx_unlock(&m), SHK_OK);
    }
    ck_assert_uint_eq(waiters_now(), 0);

    /* The same through force_unlock and wakeup, the other release paths. */
    sh->lock.waiters = 2; /* as if two sleepers had died */
    shk_shmtx_wakeup(&m);
    shk_shmtx_wakeup(&m);
    ck_assert_uint_eq(waiters_now(), 0);
}
END_TEST

struct captured {
    int errors;
    char last[512];
};

static void capture(void *ctx, int level, const char *msg)
{
    struct captured *c = ctx;
    if (level == SHK_LOG_ERR)
        c->errors++;
    snprintf(c->last, sizeof(c->last), "%s", msg);
}

START_TEST(force_unlock_only_for_owner)
{
    shk_shmtx_t m;
    shk_shmtx_stats_t st;
    struct captured cap = {0};
    handle(&m);
    tu_pipe(&ch.to_child);
    tu_pipe(&ch.to_parent);

    pid_t h = tu_fork(holder, NULL);
    ck_assert_int_eq(tu_await(&ch.to_parent), 0);
    ck_assert_int_eq(shk_shmtx_force_unlock(&m, getpid()), 0);
    ck_assert_int_eq(shk_shmtx_force_unlock(&m, h + 1), 0);
    ck_assert_int_eq(shk_shmtx_force_unlock(&m, 0), 0);
    ck_assert_int_eq(shk_shmtx_owner(&m), h);
    ck_assert_int_eq(shk_shmtx_force_unlock(&m, h), 1);
    ck_assert_int_eq(shk_shmtx_owner(&m), 0);
    ck_assert_int_eq(shk_shmtx_force_unlock(&m, h), 0); /* once only */
    shk_shmtx_stats(&sh->lock, &st);
    ck_assert_uint_eq(st.forced, 1);

    /* Now the former holder's unlock is a misuse: reported, no effect. We
     * take the lock first so we can see it is untouched. */
    ck_assert_int_eq(shk_shmtx_trylock(&m), 1);
    tu_signal(&ch.to_child);
    ck_assert_int_eq(tu_await(&ch.to_parent), 0);
    ck_assert_int_eq(atomic_load(&sh->status), SHK_EPERM);
    ck_assert_int_eq(shk_shmtx_owner(&m), getpid());
    tu_wait_ok(h);

    /* Unlock of a free lock, in this process, with the log captured. */
    ck_assert_int_eq(shk_shmtx_unlock(&m), SHK_OK);
    shk_log_set(capture, &cap, SHK_LOG_ERR);
    ck_assert_int_eq(shk_shmtx_unlock(&m), SHK_EPERM);
    shk_log_set(NULL, NULL, SHK_LOG_ERR);
    ck_assert_int_eq(shk_last_error(), SHK_EPERM);
    ck_assert_int_eq(cap.errors, 1);
    ck_assert_msg(strstr(cap.last, "not locked") != NULL, "log line: %s", cap.last);
    ck_assert_int_eq(shk_shmtx_owner(&m), 0);
    tu_pipe_close(&ch.to_child);
    tu_pipe_close(&ch.to_parent);
}
END_TEST

START_TEST(create_rejects_bad_input)
{
    shk_shmtx_t m;
    char name[SHK_SHMTX_NAME_MAX + 2];

    ck_assert_int_eq(shk_shmtx_create(NULL, &sh->lock, "x"), SHK_EINVAL);
    ck_assert_int_eq(shk_shmtx_create(&m, NULL, "x"), SHK_EINVAL);
    ck_assert_int_eq(shk_shmtx_create(&m, (shk_shmtx_sh_t *)((char *)&sh->lock + 8), "x"),
                     SHK_EINVAL);
    memset(name, 'n', sizeof(name) - 1);
    name[sizeof(name) - 1] = '\0';
    ck_assert_int_eq(shk_shmtx_create(&m, &sh->lock, name), SHK_ERANGE);
    name[SHK_SHMTX_NAME_MAX] = '\0'; /* exactly the limit */
    ck_assert_int_eq(shk_shmtx_create(&m, &sh->lock, name), SHK_OK);
    ck_assert_str_eq(m.name, name);
    ck_assert_int_eq(shk_shmtx_create(&m, &sh->lock, NULL), SHK_OK);
    ck_assert_str_eq(m.name, "shmtx");
    ck_assert_uint_eq(sizeof(shk_shmtx_sh_t), 64);
}
END_TEST

/* ---- timed lock ------------------------------------------------------------- */

START_TEST(timedlock_times_out_behind_live_owner)
{
    shk_shmtx_t m;
    handle(&m);
    tu_pipe(&ch.to_child);
    tu_pipe(&ch.to_parent);
    pid_t h = tu_fork(holder, NULL);
    ck_assert_int_eq(tu_await(&ch.to_parent), 0);

    ck_assert_int_eq(shk_shmtx_timedlock(&m, 0), SHK_ETIMEDOUT);
    uint64_t t0 = shk_time_ms();
    ck_assert_int_eq(shk_shmtx_timedlock(&m, 120), SHK_ETIMEDOUT);
    uint64_t dt = shk_time_ms() - t0;
    ck_assert_uint_ge(dt, 120);
    ck_assert_uint_lt(dt, 5000);
    ck_assert_int_eq(shk_shmtx_owner(&m), h);

    tu_signal(&ch.to_child);
    ck_assert_int_eq(tu_await(&ch.to_parent), 0);
    tu_wait_ok(h);
    ck_assert_int_eq(shk_shmtx_timedlock(&m, 120), SHK_OK);
    ck_assert_int_eq(shk_shmtx_unlock(&m), SHK_OK);
    tu_pipe_close(&ch.to_child);
    tu_pipe_close(&ch.to_parent);
}
END_TEST

/* ---- dead owners -------------------------------------------------------------- */

static int hold_forever(void *arg)
{
    shk_shmtx_t m;
    (void)arg;
    handle(&m);
    TU_CHECK(shk_shmtx_lock(&m) == SHK_OK, "lock");
    tu_signal(&ch.to_parent);
    for (;;)
        tu_await(&ch.to_child);
}

/* Lock (timed if arg != 0), record status and how long after the kill the
 * lock came back. */
static int waiter(void *arg)
{
    shk_shmtx_t m;
    unsigned timeout = (unsigned)(uintptr_t)arg;
    handle(&m);
    int rc = timeout ? shk_shmtx_timedlock(&m, timeout) : shk_shmtx_lock(&m);
    uint64_t now = shk_time_ns();
    uint64_t k = atomic_load(&sh->kill_ns);
    atomic_store(&sh->took_ms, k ? (now - k) / 1000000u : 0);
    atomic_store(&sh->status, rc);
    TU_CHECK(shk_shmtx_owner(&m) == getpid(), "owner %d", shk_shmtx_owner(&m));
    TU_CHECK(shk_shmtx_unlock(&m) == SHK_OK, "unlock");
    return 0;
}

static void wait_for_sleepers(uint32_t n)
{
    /* Busy-wait with yields for the waiter to announce itself: this is a
     * synchronisation on shared state, not a timed sleep. */
    while (atomic_load(&sh->lock.waiters) < n)
        sched_yield();
}

/* A master that reaps a worker killed inside a critical section releases
 * its lock with force_unlock; the next process that takes the lock must
 * still be told the section was left half done (SHK_EOWNERDEAD), whether it
 * takes it afterwards or was asleep on it, and only that one. trylock never
 * recovers: it takes the lock, and the report waits for the next lock. (The
 * master's release used to hand the next taker SHK_OK, and the dirty
 * section went unnoticed: the soak counted them.) */
START_TEST(force_unlock_reports_the_death_to_the_next_taker)
{
    shk_shmtx_t m;
    shk_shmtx_stats_t st;
    handle(&m);
    for (int round = 0; round < 3; round++) {
        tu_pipe(&ch.to_child);
        tu_pipe(&ch.to_parent);
        atomic_store(&sh->status, 1);
        pid_t h = tu_fork(hold_forever, NULL);
        ck_assert_int_eq(tu_await(&ch.to_parent), 0);
        pid_t w = 0;
        if (round == 1) { /* a waiter asleep on it when the master releases it */
            w = tu_fork(waiter, NULL);
            wait_for_sleepers(1);
        }
        kill(h, SIGKILL);
        siginfo_t si; /* as the supervisor does: a zombie, released, then reaped */
        ck_assert_int_eq(waitid(P_PID, h, &si, WEXITED | WNOWAIT), 0);
        ck_assert_int_eq(shk_shmtx_force_unlock(&m, h), 1);
        ck_assert_int_eq(shk_shmtx_owner(&m), 0);
        ck_assert_int_eq(tu_wait(h), 128 + SIGKILL);
        if (round == 0) {
            ck_assert_int_eq(shk_shmtx_lock(&m), SHK_EOWNERDEAD);
            ck_assert_int_eq(shk_shmtx_unlock(&m), SHK_OK);
        } else if (round == 1) {
            tu_wait_ok(w);
            ck_assert_int_eq(atomic_load(&sh->status), SHK_EOWNERDEAD);
        } else {
            ck_assert_int_eq(shk_shmtx_trylock(&m), 1);
            ck_assert_int_eq(shk_shmtx_unlock(&m), SHK_OK);
            ck_assert_int_eq(shk_shmtx_timedlock(&m, 0), SHK_EOWNERDEAD);
            ck_assert_int_eq(shk_shmtx_unlock(&m), SHK_OK);
        }
        /* told once: the next one takes a clean lock */
        ck_assert_int_eq(shk_shmtx_lock(&m), SHK_OK);
        ck_assert_int_eq(shk_shmtx_unlock(&m), SHK_OK);
        tu_pipe_close(&ch.to_child);
        tu_pipe_close(&ch.to_parent);
    }
    shk_shmtx_stats(&sh->lock, &st);
    ck_assert_uint_eq(st.forced, 3);
    ck_assert_uint_eq(st.recovered, 3);
}
END_TEST

static void owner_dead_case(int reap_first, int waiter_sleeps_first, unsigned timeout)
{
    shk_shmtx_stats_t st;
    tu_pipe(&ch.to_child);
    tu_pipe(&ch.to_parent);
    atomic_store(&sh->status, 1);

    pid_t h = tu_fork(hold_forever, NULL);
    ck_assert_int_eq(tu_await(&ch.to_parent), 0);
    pid_t w = 0;
    if (waiter_sleeps_first) {
        w = tu_fork(waiter, (void *)(uintptr_t)timeout);
        wait_for_sleepers(1);
    }
    atomic_store(&sh->kill_ns, shk_time_ns());
    kill(h, SIGKILL);
    if (reap_first)
        ck_assert_int_eq(tu_wait(h), 128 + SIGKILL);
    else {
        siginfo_t si; /* a zombie: dead, not reaped, no master watching */
        ck_assert_int_eq(waitid(P_PID, h, &si, WEXITED | WNOWAIT), 0);
    }
    if (!waiter_sleeps_first)
        w = tu_fork(waiter, (void *)(uintptr_t)timeout);
    tu_wait_ok(w);
    if (!reap_first)
        ck_assert_int_eq(tu_wait(h), 128 + SIGKILL);

    ck_assert_int_eq(atomic_load(&sh->status), SHK_EOWNERDEAD);
    ck_assert_uint_lt(atomic_load(&sh->took_ms), tu_valgrind() ? 5000 : 1000);
    shk_shmtx_stats(&sh->lock, &st);
    ck_assert_uint_eq(st.recovered, 1);
    ck_assert_int_eq(st.owner, 0);
    tu_pipe_close(&ch.to_child);
    tu_pipe_close(&ch.to_parent);
}

START_TEST(owner_killed_waiter_asleep_zombie)
{
    owner_dead_case(0, 1, 0);
}
END_TEST

START_TEST(owner_killed_waiter_asleep_reaped)
{
    owner_dead_case(1, 1, 0);
}
END_TEST

START_TEST(owner_killed_before_waiter_came)
{
    owner_dead_case(0, 0, 0);
}
END_TEST

START_TEST(owner_killed_timedlock_recovers)
{
    owner_dead_case(0, 1, 10000);
}
END_TEST

START_TEST(owner_killed_short_timedlock_recovers_at_deadline)
{
    /* A deadline shorter than the first liveness slice still recovers. */
    owner_dead_case(1, 0, 1);
}
END_TEST

/* Workers hammer the lock; a victim doing the same is killed at a random
 * point, often inside its critical section. Survivors must all finish, and
 * whenever the victim died holding the lock exactly one of them reports
 * SHK_EOWNERDEAD. */
static int hammer(void *arg)
{
    shk_shmtx_t m;
    long n = (long)arg; /* < 0: forever (the victim) */
    handle(&m);
    for (long i = 0; n < 0 || i < n; i++) {
        int rc = shk_shmtx_lock(&m);
        TU_CHECK(rc == SHK_OK || rc == SHK_EOWNERDEAD, "lock: %d", rc);
        if (rc == SHK_EOWNERDEAD)
            atomic_fetch_add(&sh->recoveries, 1);
        sh->counter++;
        if (n < 0) /* the victim lingers inside: most kills land here */
            for (int k = 0; k < 2000; k++)
                shk_cpu_relax();
        atomic_fetch_add_explicit(&sh->progress, 1, memory_order_relaxed);
        TU_CHECK(shk_shmtx_unlock(&m) == SHK_OK, "unlock");
    }
    return 0;
}

START_TEST(kill_holder_at_random_points)
{
    uint64_t seed = tu_seed("kill_holder_at_random_points");
    int rounds = (int)tu_scale(40, 4);
    int died_holding = 0;
    shk_shmtx_stats_t st;

    for (int r = 0; r < rounds; r++) {
        pid_t s1 = tu_fork(hammer, (void *)tu_scale(20000, 10));
        pid_t victim = tu_fork(hammer, (void *)-1L);
        uint64_t start = atomic_load(&sh->progress);
        uint64_t until = start + 200 + tu_rand(&seed) % 5000;
        while (atomic_load_explicit(&sh->progress, memory_order_relaxed) < until)
            sched_yield();
        kill(victim, SIGKILL);
        ck_assert_int_eq(tu_wait(victim), 128 + SIGKILL);
        if (atomic_load(&sh->lock.lock) == (uint32_t)victim)
            died_holding++;
        /* A second survivor arrives after the death. */
        pid_t s2 = tu_fork(hammer, (void *)tu_scale(2000, 10));
        tu_wait_ok(s1);
        tu_wait_ok(s2);
        ck_assert_int_eq(atomic_load(&sh->lock.lock), 0);
    }
    shk_shmtx_stats(&sh->lock, &st);
    /* Every death inside the critical section was recovered exactly once;
     * a death observed outside it may still have been recovered if the
     * victim took the lock again before the SIGKILL landed. */
    ck_assert_uint_ge(atomic_load(&sh->recoveries), (uint32_t)died_holding);
    ck_assert_uint_le(atomic_load(&sh->recoveries), (uint32_t)rounds);
    ck_assert_uint_eq(st.recovered, atomic_load(&sh->recoveries));
    printf("kill_holder_at_random_points: %d rounds, %d died holding, %u recoveries\n", rounds,
           died_holding, atomic_load(&sh->recoveries));
}
END_TEST

int main(void)
{
    Suite *s = suite_create("shmtx");
    TCase *tc = tcase_create("exclusion");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    if (!getenv("SHK_TEST_ONLY_THREADS")) {
        tcase_add_test(tc, mutual_exclusion_4_processes);
        tcase_add_test(tc, no_lost_wakeup_stress);
    }
    tcase_add_test(tc, mutual_exclusion_threads);
    suite_add_tcase(s, tc);

    if (!getenv("SHK_TEST_ONLY_THREADS")) {
        tc = tcase_create("api");
        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_set_timeout(tc, 60);
        tcase_add_test(tc, trylock_fails_while_held);
        tcase_add_test(tc, force_unlock_only_for_owner);
        tcase_add_test(tc, create_rejects_bad_input);
        tcase_add_test(tc, timedlock_times_out_behind_live_owner);
        tcase_add_test(tc, killed_sleepers_leave_no_phantom_waiters);
        suite_add_tcase(s, tc);

        tc = tcase_create("owner_dead");
        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_set_timeout(tc, 120);
        tcase_add_test(tc, owner_killed_waiter_asleep_zombie);
        tcase_add_test(tc, owner_killed_waiter_asleep_reaped);
        tcase_add_test(tc, owner_killed_before_waiter_came);
        tcase_add_test(tc, owner_killed_timedlock_recovers);
        tcase_add_test(tc, owner_killed_short_timedlock_recovers_at_deadline);
        tcase_add_test(tc, force_unlock_reports_the_death_to_the_next_taker);
        tcase_add_test(tc, kill_holder_at_random_points);
        suite_add_tcase(s, tc);
    }
    return tu_run(s);
}
