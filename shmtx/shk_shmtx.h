/*
 * shk_shmtx.h: a mutex for processes that share memory.
 *
 * The lock itself is a small struct in shared memory (shk_shmtx_sh_t); each
 * process reaches it through a process-local handle (shk_shmtx_t). The lock
 * word holds the owner's pid, so a lock whose owner died can be recognised
 * and taken back: by the master when it reaps the dead process
 * (shk_shmtx_force_unlock), or by a waiter that finds the owner gone
 * (SHK_EOWNERDEAD). Waiters sleep on a futex on the lock word; an unlock
 * with no sleepers makes no system call.
 *
 * The lock serialises processes, not threads: two threads of one process
 * hold it under the same pid. Mutual exclusion between them still holds
 * (taking the lock is a compare-and-swap from 0), but an unlock from the
 * wrong thread of the owning process cannot be told from the right one.
 *
 * See docs/shmtx.md for the waiter protocol and the
 * recovery rules, including the pid-reuse hazard.
 */
#ifndef SHK_SHMTX_H
#define SHK_SHMTX_H

#include <stdint.h>
#include <sys/types.h>

#include "shk_core.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * The shared part: place it in shared memory. All-zero bytes are a valid,
 * unlocked lock with zeroed counters, so memory from mmap() or a zeroing
 * allocator needs no further set-up. 64 bytes, one cache line. Fields are
 * read through shk_shmtx_stats(); do not write them directly.
 */
typedef struct shk_shmtx_sh_s {
    _Alignas(64) _Atomic uint32_t lock; /* owner pid, 0 when free */
    _Atomic uint32_t waiters;           /* processes asleep or about to sleep */
    /* Counters. Those the owner writes are updated while it holds the lock,
     * as a relaxed load and store: no extra locked instruction. */
    _Atomic uint64_t acquired;  /* successful acquisitions */
    _Atomic uint64_t contended; /* acquisitions that did not succeed at once */
    _Atomic uint64_t sleeps;    /* futex sleeps */
    _Atomic uint64_t recovered; /* takeovers from a dead owner */
    _Atomic uint64_t forced;    /* successful force-unlocks */
    _Atomic uint32_t heal;      /* waiter count an empty wake saw (see shk_shmtx.c) */
    _Atomic uint32_t orphaned;  /* 1: force_unlock released it for a dead owner; the
                                   next lock or timedlock that takes it reports
                                   SHK_EOWNERDEAD and clears it */
    uint64_t reserved;
} shk_shmtx_sh_t;

/* Longest lock name, in bytes, without the terminating NUL. */
#define SHK_SHMTX_NAME_MAX 47

/* The process-local handle. Cheap to copy before first use; treat the fields
 * as private. */
typedef struct shk_shmtx_s {
    shk_shmtx_sh_t *sh;
    unsigned spin; /* relax hints before sleeping; 0 on a single CPU */
    char name[SHK_SHMTX_NAME_MAX + 1];
} shk_shmtx_t;

/* Counters read by shk_shmtx_stats(). */
typedef struct shk_shmtx_stats_s {
    pid_t owner;        /* pid holding the lock now, 0 if free */
    uint32_t waiters;   /* processes waiting now */
    uint64_t acquired;  /* successful acquisitions */
    uint64_t contended; /* acquisitions that had to spin or sleep */
    uint64_t sleeps;    /* futex sleeps */
    uint64_t recovered; /* takeovers from a dead owner (SHK_EOWNERDEAD) */
    uint64_t forced;    /* shk_shmtx_force_unlock() calls that released it */
} shk_shmtx_stats_t;

/* Bind `mtx` to the shared lock `sh`. Does not write `sh`: a lock already in
 * use by other processes is joined as it is. `name` (at most
 * SHK_SHMTX_NAME_MAX bytes, copied; NULL means "shmtx") appears in log lines.
 * Errors: SHK_EINVAL if mtx or sh is NULL or sh is not 64-byte aligned,
 * SHK_ERANGE if the name is too long. */
SHK_API int shk_shmtx_create(shk_shmtx_t *mtx, shk_shmtx_sh_t *sh, const char *name);

/* Release the handle. The shared lock is left as it is (other processes may
 * still use it); destroying a handle whose lock this process holds is allowed
 * but leaves the lock held. */
SHK_API void shk_shmtx_destroy(shk_shmtx_t *mtx);

/* Reset a shared lock to all-zero (unlocked, counters cleared). Only safe
 * when no process uses it, e.g. when laying out fresh shared memory. */
SHK_API void shk_shmtx_sh_init(shk_shmtx_sh_t *sh);

/* Take the lock if it is free, without waiting. Returns 1 when taken, 0 when
 * it is held (by anyone, this process included). A failed attempt only reads
 * the lock's cache line. Never recovers a dead owner's lock: a lock that
 * force_unlock released for a dead owner is taken like a free one, and the
 * report of that death (SHK_EOWNERDEAD) is left for the next
 * shk_shmtx_lock or shk_shmtx_timedlock that takes it. */
SHK_API int shk_shmtx_trylock(shk_shmtx_t *mtx);

/* Take the lock, waiting as long as needed: spin about a microsecond (when
 * more than one CPU is online), then sleep on the futex. While asleep it
 * checks, at growing intervals (1 ms doubling to 64 ms), whether the owner
 * is still alive; if not, it takes the lock over.
 * Returns SHK_OK, or SHK_EOWNERDEAD when the lock was taken over from a dead
 * owner, or is the first taking since shk_shmtx_force_unlock released it for
 * a dead owner: the caller holds the lock either way, and in the second case
 * should check the data the lock protects. Taking a lock this process
 * already holds deadlocks until something force-unlocks it, as with any
 * non-recursive mutex. */
SHK_API int shk_shmtx_lock(shk_shmtx_t *mtx);

/* 1 when a lock call's status means the caller now holds the lock: SHK_OK,
 * or SHK_EOWNERDEAD (taken over from a dead owner; check the data). 0 for
 * every other status. Use it for every status of shk_shmtx_lock,
 * shk_shmtx_timedlock, shk_slab_lock and the like. */
static inline int shk_shmtx_held(int status)
{
    return status == SHK_OK || status == SHK_EOWNERDEAD;
}

/* As shk_shmtx_lock(), giving up after `timeout_ms` milliseconds (0 means
 * "try once"). Returns SHK_OK, SHK_EOWNERDEAD (held, see above) or
 * SHK_ETIMEDOUT (not held). */
SHK_API int shk_shmtx_timedlock(shk_shmtx_t *mtx, unsigned timeout_ms);

/* Release the lock and wake one sleeper if the waiter count says there is
 * one. The count heals itself: waiters killed in their sleep stop costing
 * releases a futex call after two of them. Returns SHK_OK; SHK_EPERM if this process does not hold the lock (it
 * is then left untouched, and the mistake is logged at error level). */
SHK_API int shk_shmtx_unlock(shk_shmtx_t *mtx);

/* Release the lock if and only if the lock word holds `pid`, then wake a
 * sleeper. Returns 1 if it released the lock, 0 otherwise. This is what a
 * master calls for every shared lock when it reaps a dead worker: the lock
 * is marked orphaned, so that the next shk_shmtx_lock or timedlock that
 * takes it returns SHK_EOWNERDEAD (the dead owner may have left the data
 * half changed). If a waiter takes the lock over at the same moment, a
 * later taker may be told once more: a report too many, never one too
 * few. */
SHK_API int shk_shmtx_force_unlock(shk_shmtx_t *mtx, pid_t pid);

/* Wake one sleeper, if the waiter count says there is one. */
SHK_API void shk_shmtx_wakeup(shk_shmtx_t *mtx);

/* The pid holding the lock now, 0 if free (a snapshot). */
SHK_API pid_t shk_shmtx_owner(const shk_shmtx_t *mtx);

/* Copy the lock's counters into `st`. A snapshot: fields are read one by one
 * without the lock. Works on a lock in read-only mapped memory. */
SHK_API void shk_shmtx_stats(const shk_shmtx_sh_t *sh, shk_shmtx_stats_t *st);

#ifdef __cplusplus
}
#endif

#endif /* SHK_SHMTX_H */
