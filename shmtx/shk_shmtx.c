/*
 * shk_shmtx.c: the process-shared mutex: a pid in a futex word, a waiter
 * count, and take-over of a dead owner's lock.
 *
 * Protocol (docs/shmtx.md has the long form):
 *   lock word   0 = free, otherwise the owner's pid
 *   waiters     number of processes that announced they may sleep
 *   acquire     CAS 0 -> pid (acquire order)
 *   release     CAS pid -> 0 (seq_cst), then read waiters (seq_cst) and
 *               FUTEX_WAKE one only when it is non-zero
 *   sleep       waiters += 1 (seq_cst), re-read the word (seq_cst), and
 *               FUTEX_WAIT on the value read, for a timed slice; waiters
 *               -= 1 after waking (never below 0)
 *   heal        two releases in a row whose FUTEX_WAKE finds nobody,
 *               with the same count, reset waiters to 0: a sleeper killed
 *               in its sleep leaves no phantom for good
 * The release and the sleeper's announcement form a Dekker pair: both sides
 * store, then load the other side's variable, all seq_cst. In the single
 * total order of seq_cst operations one of the two stores comes first, so
 * either the releaser sees waiters != 0 and wakes, or the sleeper sees the
 * word changed and does not sleep (FUTEX_WAIT itself re-checks the word in
 * the kernel, so a release between the re-read and the sleep is caught
 * too). No wake-up can be lost.
 */
#include "shk_shmtx.h"
#include "shk_atomic_internal.h"
#include "shk_internal.h"
#include "shk_shmtx_internal.h"

#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define SLICE_MIN_MS 1u
#define SLICE_MAX_MS 64u

static int futex_wait(_Atomic uint32_t *word, uint32_t val, unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    /* Shared (not FUTEX_PRIVATE_FLAG): waiter and waker are different
     * processes, so the kernel must key the futex on the physical page. */
    if (syscall(SYS_futex, (uint32_t *)word, FUTEX_WAIT, val, &ts, NULL, 0) == -1)
        return errno;
    return 0;
}

static long futex_wake(_Atomic uint32_t *word, int n)
{
    return syscall(SYS_futex, (uint32_t *)word, FUTEX_WAKE, n, NULL, NULL, 0);
}

/* A sleeper's "I am awake again": take it off the waiter count, never below
 * zero (a release that found nobody may have reset the count under it, see
 * shk_shmtx_wake_one). relaxed: the count is a hint for the releaser; a waiter that
 * is no longer in the kernel's queue cannot lose a wake by it. */
static void waiter_leaves(shk_shmtx_sh_t *sh)
{
    uint32_t w = SHK_READ_ONCE(sh->waiters);
    while (w != 0 && !SHK_CAS(sh->waiters, &w, w - 1, relaxed, relaxed))
        ;
}

/*
 * Wake one sleeper of a released lock; `seen` is the waiter count the
 * releaser read (non-zero). A waiter killed while asleep never takes itself
 * off the count, so the count is only a hint, healed here: when two wakes in
 * a row find nobody in the kernel's queue with the same count seen, the
 * count is reset (from exactly that value, so a waiter that announced itself
 * since is kept). One empty wake is not enough: a live waiter between its
 * announcement and its FUTEX_WAIT is counted but not yet queued, and is
 * queued by the next release. Should a waiter stay in that window across
 * two releases (descheduled there) and be dropped, it still cannot hang:
 * its sleep is a timed slice, after which it looks at the word again and
 * announces itself anew. Without the heal, dead waiters would make every
 * later release pay a futex call for good.
 */
void shk_shmtx_wake_one(shk_shmtx_sh_t *sh, uint32_t seen)
{
    /* relaxed throughout: heal and the reset are hints like the count
     * itself (see above); the lock word's own orders are not involved. */
    if (futex_wake(&sh->lock, 1) != 0) {
        if (SHK_READ_ONCE(sh->heal) != 0)
            SHK_WRITE_ONCE(sh->heal, 0);
        return;
    }
    if (SHK_READ_ONCE(sh->heal) != seen) {
        SHK_WRITE_ONCE(sh->heal, seen);
        return;
    }
    SHK_CAS(sh->waiters, &seen, 0, relaxed, relaxed);
    SHK_WRITE_ONCE(sh->heal, 0);
}

int shk_shmtx_create(shk_shmtx_t *mtx, shk_shmtx_sh_t *sh, const char *name)
{
    if (!mtx || !sh)
        return shk_error(SHK_EINVAL, "shmtx: NULL handle or shared lock");
    if (((uintptr_t)sh & 63) != 0)
        return shk_error(SHK_EINVAL, "shmtx: shared lock at %p is not 64-byte aligned", (void *)sh);
    if (!name)
        name = "shmtx";
    if (shk_strlcpy_exact(mtx->name, sizeof(mtx->name), name) != SHK_OK)
        return shk_error(SHK_ERANGE, "shmtx: name \"%.32s...\" longer than %d bytes", name,
                         SHK_SHMTX_NAME_MAX);
    mtx->sh = sh;
    mtx->spin = shk_ncpu() > 1 ? shk_spin_per_us() : 0;
    return SHK_OK;
}

void shk_shmtx_destroy(shk_shmtx_t *mtx)
{
    if (mtx) {
        mtx->sh = NULL;
        mtx->spin = 0;
    }
}

void shk_shmtx_sh_init(shk_shmtx_sh_t *sh)
{
    memset(sh, 0, sizeof(*sh));
}

int shk_shmtx_trylock(shk_shmtx_t *mtx)
{
    return shk_shmtx_take(mtx->sh);
}

/* The slow path shared by lock and timedlock. timeout_ms < 0: no limit. */
static int lock_wait(shk_shmtx_t *mtx, long timeout_ms)
{
    shk_shmtx_sh_t *sh = mtx->sh;
    const uint32_t me = (uint32_t)SHK_PID();
    uint64_t deadline = 0, sleeps = 0;
    unsigned slice = SLICE_MIN_MS;
    uint32_t v;
    int status = SHK_OK;

    if (timeout_ms >= 0)
        deadline = shk_time_ms() + (uint64_t)timeout_ms;

    for (unsigned i = 0; i < mtx->spin; i++) {
        shk_cpu_relax();
        if (SHK_READ_ONCE(sh->lock) == 0 &&
            shk_shmtx_try_take(sh, 0, me))
            goto taken;
    }

    for (;;) {
        unsigned wait_ms = slice;
        int err;

        if (deadline) {
            uint64_t now = shk_time_ms();
            if (now >= deadline) {
                /* Before giving up, one look at the owner: a caller with a
                 * deadline must not time out behind a dead process. */
                v = SHK_READ_ONCE(sh->lock);
                if (v == 0 && shk_shmtx_try_take(sh, 0, me))
                    goto taken;
                if (v != 0 && v != me && !shk_pid_alive((pid_t)v) &&
                    shk_shmtx_try_take(sh, v, me)) {
                    status = SHK_EOWNERDEAD;
                    goto taken;
                }
                SHK_ADD_RELAXED(sh->sleeps, sleeps);
                return SHK_ETIMEDOUT;
            }
            if (deadline - now < wait_ms)
                wait_ms = (unsigned)(deadline - now);
        }

        /* seq_cst on both: see the Dekker argument at the top of the file. */
        SHK_FETCH_ADD(sh->waiters, 1, seq_cst);
        v = SHK_LOAD_SC(sh->lock);
        if (v == 0) {
            waiter_leaves(sh);
            if (shk_shmtx_try_take(sh, 0, me))
                goto taken;
            continue;
        }
        if (!sleeps && v != me && !shk_pid_alive((pid_t)v)) {
            /* Before the first sleep, one look at the holder: if it is gone
             * (reaped or a zombie), take over now rather than after a
             * slice. */
            waiter_leaves(sh);
            if (shk_shmtx_try_take(sh, v, me)) {
                status = SHK_EOWNERDEAD;
                goto taken;
            }
            continue;
        }
        err = futex_wait(&sh->lock, v, wait_ms);
        sleeps++;
        waiter_leaves(sh);

        v = SHK_READ_ONCE(sh->lock);
        if (v == 0 && shk_shmtx_try_take(sh, 0, me))
            goto taken;
        if (err != ETIMEDOUT) {
            /* Woken: the lock was released, maybe taken again at once by
             * its last owner. Spin again before going back to sleep. */
            for (unsigned i = 0; i < mtx->spin; i++) {
                shk_cpu_relax();
                if (SHK_READ_ONCE(sh->lock) == 0 &&
                    shk_shmtx_try_take(sh, 0, me))
                    goto taken;
            }
            continue;
        }
        if (v == 0)
            continue;
        {
            /* A whole slice passed with the lock held: is the holder alive?
             * The CAS from exactly v makes the take-over safe against a
             * concurrent release or another waiter's take-over. */
            if (v != me && !shk_pid_alive((pid_t)v) && shk_shmtx_try_take(sh, v, me)) {
                status = SHK_EOWNERDEAD;
                goto taken;
            }
            if (slice < SLICE_MAX_MS)
                slice *= 2;
        }
    }

taken:
    shk_shmtx_owner_count(&sh->acquired, 1);
    shk_shmtx_owner_count(&sh->contended, 1);
    if (sleeps)
        shk_shmtx_owner_count(&sh->sleeps, sleeps);
    if (status == SHK_EOWNERDEAD) {
        /* a takeover reports the death itself: a mark a racing force_unlock
         * left goes with it (relaxed: we hold the lock) */
        SHK_WRITE_ONCE(sh->orphaned, 0);
        shk_shmtx_owner_count(&sh->recovered, 1);
        shk_logf(SHK_LOG_WARN, "shmtx \"%s\": owner %u died holding it; taken over by %u",
                 mtx->name, v, me);
        return status;
    }
    return shk_shmtx_taken_status(mtx);
}

int shk_shmtx_orphan_taken(shk_shmtx_t *mtx)
{
    /* relaxed: we hold the lock; the next owner's acquire orders it */
    SHK_WRITE_ONCE(mtx->sh->orphaned, 0);
    shk_shmtx_owner_count(&mtx->sh->recovered, 1);
    shk_logf(SHK_LOG_WARN, "shmtx \"%s\": its owner died holding it (released by the master); "
             "taken by %ld", mtx->name, (long)SHK_PID());
    return SHK_EOWNERDEAD;
}

int shk_shmtx_lock(shk_shmtx_t *mtx)
{
    if (SHK_LIKELY(shk_shmtx_take(mtx->sh)))
        return shk_shmtx_taken_status(mtx);
    return lock_wait(mtx, -1);
}

int shk_shmtx_timedlock(shk_shmtx_t *mtx, unsigned timeout_ms)
{
    if (shk_shmtx_trylock(mtx))
        return shk_shmtx_taken_status(mtx);
    return lock_wait(mtx, (long)timeout_ms);
}

int shk_shmtx_unlock_refused(shk_shmtx_t *mtx, uint32_t holder)
{
    if (holder)
        shk_error(SHK_EPERM, "shmtx \"%s\": unlock by %ld, but it is held by %u", mtx->name,
                  (long)SHK_PID(), holder);
    else
        shk_error(SHK_EPERM, "shmtx \"%s\": unlock by %ld, but it is not locked", mtx->name,
                  (long)SHK_PID());
    shk_log(SHK_LOG_ERR, "%s", shk_last_errmsg());
    return SHK_EPERM;
}

int shk_shmtx_unlock(shk_shmtx_t *mtx)
{
    return shk_shmtx_unlock_fast(mtx);
}

int shk_shmtx_force_unlock(shk_shmtx_t *mtx, pid_t pid)
{
    shk_shmtx_sh_t *sh = mtx->sh;
    uint32_t expect = (uint32_t)pid;

    if (pid <= 0 || SHK_READ_ONCE(sh->lock) != expect)
        return 0;
    /* The mark first: the next taker's acquire CAS pairs with the release
     * (part of seq_cst) of our CAS below, so it sees the mark (relaxed is
     * enough for the store itself). */
    SHK_WRITE_ONCE(sh->orphaned, 1);
    /* seq_cst for the same reason as in unlock. */
    if (!SHK_CAS(sh->lock, &expect, 0, seq_cst, relaxed)) {
        /* a waiter took it over from the dead owner meanwhile and reports
         * it itself; a taker after it may still see the mark (a report too
         * many, harmless) */
        SHK_WRITE_ONCE(sh->orphaned, 0);
        return 0;
    }
    /* relaxed: a statistic; the lock was released by the CAS above, so this
     * process no longer owns the counters and must use an atomic add. */
    SHK_ADD_RELAXED(sh->forced, 1);
    uint32_t w = SHK_LOAD_SC(sh->waiters);
    if (w != 0)
        shk_shmtx_wake_one(sh, w);
    return 1;
}

void shk_shmtx_wakeup(shk_shmtx_t *mtx)
{
    uint32_t w = SHK_LOAD_SC(mtx->sh->waiters);
    if (w != 0)
        shk_shmtx_wake_one(mtx->sh, w);
}

pid_t shk_shmtx_owner(const shk_shmtx_t *mtx)
{
    return (pid_t)SHK_READ_ONCE(mtx->sh->lock);
}

void shk_shmtx_stats(const shk_shmtx_sh_t *sh, shk_shmtx_stats_t *st)
{
    /* relaxed throughout: a statistics snapshot, no ordering implied. The
     * cast drops const because C11 atomic loads take non-const pointers in
     * older compilers; nothing is written. */
    shk_shmtx_sh_t *s = (shk_shmtx_sh_t *)sh;
    st->owner = (pid_t)SHK_READ_ONCE(s->lock);
    st->waiters = SHK_READ_ONCE(s->waiters);
    st->acquired = SHK_READ_ONCE(s->acquired);
    st->contended = SHK_READ_ONCE(s->contended);
    st->sleeps = SHK_READ_ONCE(s->sleeps);
    st->recovered = SHK_READ_ONCE(s->recovered);
    st->forced = SHK_READ_ONCE(s->forced);
}
