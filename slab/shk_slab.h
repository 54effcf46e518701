/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * shk_slab.h: a slab allocator that lives inside shared memory.
 *
 * A pool is laid out over a caller-given region (a zone): a header with the
 * pool's lock and size-class table, one descriptor per page, then the pages.
 * Small requests are served from size classes (16-byte steps up to 128, then
 * four classes per power of two up to 2048 bytes), each class carving
 * "slabs" of one or a few pages into equal chunks tracked by a bitmap in the
 * slab's descriptor; larger requests get whole page runs. Free page runs are
 * indexed by length and merged with their free neighbours. Every link in
 * the pool is an index or an offset, never a pointer, so processes may map
 * the pool at different addresses. See docs/slab.md.
 *
 * Handles (shk_slab_t) are process-local: each process opens its own.
 * Functions without _locked take the pool's lock themselves when they need
 * it; the stats and shk_slab_usable never do.
 *
 * A process that dies in the middle of an operation (holding the lock)
 * leaves the pool marked busy; the next process to hold the lock, however
 * it came to (shk_slab_lock's takeover, a master's shk_shmtx_force_unlock
 * and shk_zone_recover), rebuilds it from its pages before anything else
 * (shk_slab_repair_locked), losing at most the blocks that operation was
 * handing out or taking back, which the stats count as `leaked`. See
 * docs/failure.md (the slab part); what open and the readers check in a pool they did
 * not make is in docs/untrusted.md (the slab part).
 */
#ifndef SHK_SLAB_H
#define SHK_SLAB_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "shk_core.h"
#include "shk_shmtx.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct shk_slab_s shk_slab_t; /* process-local handle */

#define SHK_SLAB_RDONLY 0x1u /* open flag: the mapping is read-only */

/* The pool's totals (shk_slab_stats). */
typedef struct shk_slab_stats_s {
    size_t page_size;
    size_t pages_total, pages_free;
    size_t largest_free_run; /* pages */
    uint64_t fails;          /* all failed allocations */
    uint64_t run_reqs;       /* requests served with whole page runs */
    unsigned caches;         /* process caches in the pool (each holds cache_pages) */
    size_t cache_pages;
    unsigned nclasses;       /* size classes: shk_slab_class_stats(slab, 0 .. nclasses-1) */
    uint64_t repairs;        /* times the pool was rebuilt (shk_slab_repair_locked) */
    uint64_t leaked;         /* blocks the repairs found lost with a dead process's operation */
    uint64_t leaked_bytes;   /* ... and their bytes (chunk sizes, whole pages for runs) */
} shk_slab_stats_t;

/* One size class (shk_slab_class_stats). */
typedef struct shk_slab_class_stat_s {
    size_t size;     /* chunk size of the class, bytes */
    uint64_t total;  /* chunks in the slabs the class holds now */
    uint64_t used;   /* chunks allocated to users */
    uint64_t cached; /* free chunks parked in process caches (shk_slab_cache) */
    uint64_t reqs;   /* requests served by the class (cumulative) */
    uint64_t fails;  /* requests for the class that failed */
} shk_slab_class_stat_t;

/* Smallest region shk_slab_init() accepts. */
SHK_API size_t shk_slab_min_size(void);

/* Lay out a new, empty pool over [addr, addr+size). addr must be
 * page-aligned (SHK_EINVAL); size below shk_slab_min_size() is SHK_EINVAL.
 * `name` (at most SHK_SHMTX_NAME_MAX bytes, else SHK_ERANGE; NULL: "slab")
 * names the pool's lock in log lines. *out receives a new handle. Call it
 * before other processes use the region. */
SHK_API int shk_slab_init(shk_slab_t **out, void *addr, size_t size, const char *name);

/* Check an existing pool (magic, layout version, recorded size == size, the
 * header's geometry; nothing is read past addr+size) and return a handle.
 * flags: 0 or SHK_SLAB_RDONLY (the mapping is read-only: allocation, free
 * and lock then fail with SHK_EPERM; stats and check work). */
SHK_API int shk_slab_open(shk_slab_t **out, void *addr, size_t size, unsigned flags);

/* Release the handle; the pool stays. Under valgrind, blocks this process
 * allocated and did not free are forgotten (not reported as leaks): they
 * belong to the pool, which outlives the process. NULL is fine. */
SHK_API void shk_slab_close(shk_slab_t *slab);

/* Allocate size bytes (16-byte aligned; page-aligned for sizes above 2048).
 * NULL with SHK_ENOMEM when the pool has no room (after the reclaim
 * callback, if set, could not make any): the pool's `fails` counter grows
 * and one log line is written per out-of-memory episode (an episode ends
 * when a sixty-fourth of the pool's pages is free again). Every size is
 * safe, up to SIZE_MAX: one larger than all the pool's pages fails the
 * same way at once (SHK_ENOMEM, counted and logged; the reclaim callback
 * is not run, it could not help), without touching the pool. size 0 is
 * served as 1. A pool found damaged on the way is repaired (logged) and
 * the allocation tried again. */
SHK_API void *shk_slab_alloc(shk_slab_t *slab, size_t size);
SHK_API void *shk_slab_alloc_locked(shk_slab_t *slab, size_t size);
/* The same, zero-filled. */
SHK_API void *shk_slab_calloc(shk_slab_t *slab, size_t size);
SHK_API void *shk_slab_calloc_locked(shk_slab_t *slab, size_t size);

/* Free a block. A pointer outside the pool, not at the start of a block, or
 * already free is refused with SHK_EINVAL and logged; the pool is unchanged.
 * NULL is SHK_OK. */
SHK_API int shk_slab_free(shk_slab_t *slab, void *p);
SHK_API int shk_slab_free_locked(shk_slab_t *slab, void *p);

/* The pool's lock, for multi-step work with the _locked calls. Returns
 * SHK_OK, or SHK_EOWNERDEAD (the caller holds the lock either way) when the
 * last holder died holding it: the lock was taken over from it, or the
 * pool's busy mark says a dead process was in the middle of an operation
 * (a master had force-unlocked the lock). The pool is repaired by then;
 * data of the caller's own under this lock may want a look. Errors:
 * SHK_EINVAL (NULL), SHK_EPERM (read-only). */
SHK_API int shk_slab_lock(shk_slab_t *slab);
SHK_API void shk_slab_unlock(shk_slab_t *slab);
/* The pool's lock handle (the zone registers it in its lock table). */
SHK_API shk_shmtx_t *shk_slab_mutex(shk_slab_t *slab);

/* Process cache, per handle (off by default). With it on, shk_slab_alloc,
 * shk_slab_calloc and shk_slab_free serve chunks (up to 2048 bytes) from
 * magazines this process keeps inside the pool, taking the lock only to
 * move half a magazine at a time, so processes sharing a pool do not queue
 * on its lock. A magazine holds about 32 KiB of chunks (8 to 256 of them),
 * so a cache may keep up to ~24 x 32 KiB of free chunks from others, plus
 * its own pages (stats: cache_pages; 7 with 4 KiB pages): meant for pools
 * of many megabytes shared by busy processes. The cache
 * belongs to the process and thread that first use it after this call;
 * other threads, and a forked child until it claims its own, take the lock
 * as before. Parked chunks count as `cached` in the stats, not `used`;
 * an allocation that finds the pool full first returns this process's
 * parked chunks. Up to 128 processes can have a cache in one pool; when
 * none is left (or the pool has no pages for one), the process logs one
 * warning and runs without. A double free of a parked chunk is caught by a
 * tag the cache writes into its first 8 bytes (a write after free that
 * changes them defeats this; shk_slab_check reports it for caches of this
 * process and of dead ones). _locked calls never use the cache.
 * on = 0 returns the cache's chunks and its pages to the pool.
 * Errors: SHK_EINVAL (NULL), SHK_EPERM (read-only handle). */
SHK_API int shk_slab_cache(shk_slab_t *slab, int on);
/* Return every chunk this process's cache holds to the pool (the cache
 * stays). Takes the lock. SHK_OK when there is no cache. */
SHK_API int shk_slab_flush(shk_slab_t *slab);

/* How long shk_slab_reap() waits for the pool's lock. */
#define SHK_SLAB_REAP_WAIT_MS 500

/* For the master, after process `pid` died: return its cache's chunks and
 * pages to the pool. Returns how many chunks went back (>= 0), or
 * SHK_EINVAL (pid <= 0 or this process), SHK_EPERM (read-only),
 * SHK_ETIMEDOUT (a live process held the lock for SHK_SLAB_REAP_WAIT_MS:
 * nothing changed; call again later, or leave it: a process that claims a
 * cache takes a dead owner's slot over, chunks included). Call it only once
 * the process is dead (a zombie counts as dead here: reap before the pid
 * can be reused); shk_zone_recover() calls it. A process that had no cache
 * costs no lock; otherwise the wait is bounded, so a master never stalls
 * behind a worker that keeps the lock. */
SHK_API int shk_slab_reap(shk_slab_t *slab, pid_t pid);

/* Pointer <-> offset from the pool's start, for links users keep in shared
 * memory. 0 stands for NULL (the pool's header is at offset 0, so no block
 * has offset 0). shk_slab_ptr returns NULL for offsets outside the pool. */
SHK_API uint64_t shk_slab_off(const shk_slab_t *slab, const void *p);
SHK_API void *shk_slab_ptr(const shk_slab_t *slab, uint64_t off);
SHK_API void *shk_slab_base(const shk_slab_t *slab);
SHK_API size_t shk_slab_size(const shk_slab_t *slab);
/* Usable size of the block at p (its chunk size or run length), 0 if p is
 * not an allocated block. Lock-free snapshot. */
SHK_API size_t shk_slab_usable(const shk_slab_t *slab, const void *p);

/* Reclaim callback: runs with the lock held when an allocation of `size`
 * fails; frees what it can (with shk_slab_free_locked) and returns how
 * many blocks it freed (0: nothing more, stop retrying). The allocation is
 * retried after each call, at most 16 times. Process-local. */
typedef int (*shk_slab_reclaim_t)(shk_slab_t *slab, size_t size, void *ctx);
SHK_API void shk_slab_set_reclaim(shk_slab_t *slab, shk_slab_reclaim_t fn, void *ctx);

/* The pool's totals into *st. Takes no lock, on any handle: a snapshot of
 * counters read with relaxed loads, exact when no process is allocating,
 * and while one is, each figure is one it had lately (they may disagree
 * with each other by what changed during the read). Every read is checked
 * against the geometry the handle was opened with and every list walk is
 * bounded by the page count, so a damaged or scribbled-on pool gives odd
 * figures, never a hang or a read outside the pool (shk_slab_check says
 * what is broken). Errors: SHK_EINVAL (NULL). */
SHK_API int shk_slab_stats(shk_slab_t *slab, shk_slab_stats_t *st);

/* Size class i (0 .. nclasses-1, smallest chunks first) into *out, taking
 * no lock, on the same terms as shk_slab_stats (`cached` is counted from
 * the process caches' magazines, and `used` excludes it). Iterate with
 *     for (unsigned i = 0; shk_slab_class_stats(slab, i, &cs) == SHK_OK; i++)
 * Errors: SHK_EINVAL (NULL), SHK_ENOENT (i is past the last class). */
SHK_API int shk_slab_class_stats(shk_slab_t *slab, unsigned i, shk_slab_class_stat_t *out);

/* Walk every structure of the pool and report the first broken invariant:
 * SHK_OK, or SHK_ECORRUPT with shk_last_errmsg() naming it. Every walk is
 * bounded and every index checked, so any bytes are reported, never
 * looped on or read outside. A pool left busy by a process that died in an
 * operation reads "interrupted" (shk_slab_check on a read-write handle
 * takes the lock, which repairs it first). shk_slab_check takes the lock,
 * except on a read-only handle, where it reads without it (then a pool
 * others are changing may be reported broken); _locked expects the caller
 * to hold it. */
SHK_API int shk_slab_check(shk_slab_t *slab);
SHK_API int shk_slab_check_locked(shk_slab_t *slab);

/* Rebuild the pool from its pages (lock held, read-write handle): every
 * page not in a used run that holds together is free again, runs merged
 * and listed, each slab's free count and list from its bitmap, the cache
 * slots that name a cache body kept (a dead owner's magazines keep the
 * chunks they hold, each once), the chunk a dead cache operation was
 * moving given back, the counters recounted. Blocks an operation of a dead
 * process had taken but not yet counted are counted as leaked (stats);
 * no block is freed that may have an owner. Linear in the pages. Every call
 * that takes the lock runs it itself when the pool is marked busy (see the
 * top of this file), so a caller needs it only after taking the lock by
 * other means (shk_slab_mutex with shk_shmtx_*; shk_zone_recover does).
 * On any bytes: never reads or writes outside the pool. Returns the blocks
 * found leaked (>= 0), or SHK_EINVAL (NULL), SHK_EPERM (read-only). */
SHK_API int shk_slab_repair_locked(shk_slab_t *slab);

#ifdef __cplusplus
}
#endif

#endif /* SHK_SLAB_H */
