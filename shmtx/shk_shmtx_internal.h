/*
 * shk_shmtx_internal.h: the shmtx fast paths (take a free lock, release one
 * nobody waits for) as inline functions, for the library's own hot paths
 * (the slab pool's lock on every call). Never installed; the protocol is
 * the one at the top of shk_shmtx.c.
 */
#ifndef SHK_SHMTX_INTERNAL_H
#define SHK_SHMTX_INTERNAL_H

#include "shk_atomic_internal.h"
#include "shk_internal.h"
#include "shk_shmtx.h"


/* Wake one sleeper of a lock just released (the futex call of the release
 * path); `seen` is the non-zero waiter count the releaser read. A wake that
 * finds nobody resets the count (dead sleepers never take themselves off). */
SHK_HIDDEN void shk_shmtx_wake_one(shk_shmtx_sh_t *sh, uint32_t seen);

/* An unlock by a process that does not hold the lock (holder: the pid in the
 * word, 0 if free): reports it and returns SHK_EPERM. */
SHK_HIDDEN int shk_shmtx_unlock_refused(shk_shmtx_t *mtx, uint32_t holder);

/* Counter updates made by the owner while it holds the lock: a relaxed load
 * and store, no locked instruction. The next owner's acquire (which pairs
 * with our release) makes them visible in order. */
static inline void shk_shmtx_owner_count(_Atomic uint64_t *c, uint64_t n)
{
    SHK_ADD_SOLE(*c, n);
}

/* Change the lock word from expect (0: free, or a dead owner's pid) to
 * pid: 1 done, 0 the word was something else. */
static inline int shk_shmtx_try_take(shk_shmtx_sh_t *sh, uint32_t expect, uint32_t pid)
{
    /* acquire: the critical section must not be hoisted above the take, and
     * it must see everything the previous owner wrote before its release. */
    return SHK_CAS(sh->lock, &expect, pid, acquire, relaxed);
}

/* Take the lock if it is free: 1 taken, 0 not. */
static inline int shk_shmtx_take(shk_shmtx_sh_t *sh)
{
    /* Read first: a failed attempt must not pull the line in exclusive
     * state away from the owner; relaxed is enough, the CAS decides. */
    if (SHK_READ_ONCE(sh->lock) != 0 ||
        !shk_shmtx_try_take(sh, 0, (uint32_t)SHK_PID()))
        return 0;
    shk_shmtx_owner_count(&sh->acquired, 1);
    return 1;
}

/* Taken, and a force_unlock had released it for a dead owner: clear the
 * mark, count and log a recovery. Returns SHK_EOWNERDEAD. */
SHK_HIDDEN int shk_shmtx_orphan_taken(shk_shmtx_t *mtx);

/* Holding the lock: SHK_EOWNERDEAD if it was the first taking since a
 * force_unlock for a dead owner, else SHK_OK. The mark is read after our
 * acquire CAS, which pairs with force_unlock's (release) CAS that followed
 * its store of the mark; relaxed is enough, and the line is ours already. */
static inline int shk_shmtx_taken_status(shk_shmtx_t *mtx)
{
    return SHK_LIKELY(!SHK_READ_ONCE(mtx->sh->orphaned)) ? SHK_OK : shk_shmtx_orphan_taken(mtx);
}

/* shk_shmtx_lock with its uncontended case inline. */
static inline int shk_shmtx_lock_fast(shk_shmtx_t *mtx)
{
    return SHK_LIKELY(shk_shmtx_take(mtx->sh)) ? shk_shmtx_taken_status(mtx)
                                               : shk_shmtx_lock(mtx);
}

/* shk_shmtx_unlock, inline (it is the whole of it). */
static inline int shk_shmtx_unlock_fast(shk_shmtx_t *mtx)
{
    shk_shmtx_sh_t *sh = mtx->sh;
    uint32_t expect = (uint32_t)SHK_PID();
    /* seq_cst, not just release: the waiters load below must not be ordered
     * before this store, or a sleeper that announced itself could be missed
     * (see the top of shk_shmtx.c). */
    if (SHK_UNLIKELY(!SHK_CAS(sh->lock, &expect, 0, seq_cst, relaxed)))
        return shk_shmtx_unlock_refused(mtx, expect);
    uint32_t w = SHK_LOAD_SC(sh->waiters);
    if (w != 0)
        shk_shmtx_wake_one(sh, w);
    return SHK_OK;
}

#endif /* SHK_SHMTX_INTERNAL_H */
