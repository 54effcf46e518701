/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * shk_slab_internal.h: what the slab module's files share, never installed.
 * The layout of a pool in shared memory (header, page descriptors, size
 * classes, process-cache slots, cache bodies and their magazines), the
 * process-local handle, the functions one file calls in another, and, as
 * inline functions, the pieces shk_slab_alloc and shk_slab_free are built
 * from (chunk lookup, take and release, the magazine pop and push), so the
 * fast paths stay one function each.
 *
 * The files: shk_slab.c (public entry points: init, open, close, alloc,
 * free, offsets), shk_slab_pool.c (the layout, page runs, chunk slabs,
 * locate and the checked free, the lock), shk_slab_cache.c (process
 * caches: claim, refill, spill, reap), shk_slab_repair.c (the pool rebuilt
 * from its pages after a process died in the middle of an operation),
 * shk_slab_check.c (stats and the checker), shk_slab_vg.c (valgrind).
 *
 * Crash consistency (docs/failure.md (the slab part)): every operation under the lock
 * marks the pool busy first and clears the mark last (shk_slab_op_begin /
 * _end); whoever finds the mark set when it next holds the lock, however
 * it came to hold it, repairs the pool first. The truth is per page: the
 * kind, head and length of each run, a slab's class and chunk bitmap, the
 * cache slots and their magazines; lists, chunk counts and counters are
 * derived and rebuilt. Before an operation commits the block it hands out
 * or takes back (a chunk's bit, a run's first page), the mark names that
 * block, and so does it for each chunk a cache operation moves between a
 * magazine and the pool: nobody else can hold a block the mark names, so
 * the repair gives it back to the pool (unless a magazine holds it).
 *
 * Atomics: every field of the pool that changes after shk_slab_init is
 * _Atomic and reached through the words of shk_atomic.h. The lock holder
 * writes them with SHK_WRITE_ONCE / SHK_ADD_SOLE (the lock's release hands
 * them to the next holder); the lock-free readers (the cached free path,
 * shk_slab_usable, the stats, a read-only check) read them with
 * SHK_READ_ONCE and validate what they read. Fields written once by
 * shk_slab_init before the magic's release are plain, and each handle
 * keeps its own checked copy of the geometry (npages, class sizes...).
 */
#ifndef SHK_SLAB_INTERNAL_H
#define SHK_SLAB_INTERNAL_H

#include "shk_slab.h"

#include "shk_atomic_internal.h"
#include "shk_internal.h"
#include "shk_shmtx_internal.h"

#include <pthread.h>
#include <string.h>

#include "shk_vg_internal.h"

#define SLAB_MAGIC 0x42414c534b4d4853ULL /* "SHMKSLAB" read as little-endian */
#define SLAB_VERSION 4u
#define SLAB_NCLASS 24
#define SLAB_MAX_SMALL 2048
#define SLAB_NLISTS 64 /* free-run lists: length 1..63 exactly, then >= 64 */
#define SLAB_NIL 0xffffffffu
#define SLAB_MAX_CHUNKS 256
#define SLAB_MAX_SLAB_PAGES 8
#define SLAB_RECLAIM_TRIES 16
#define SLAB_JUNK 0x5a
#define SLAB_NCACHE 128      /* process caches a pool can hold */
#define SLAB_MAG_BYTES 32768 /* a magazine holds about this many bytes of chunks */
#define SLAB_MAG_MIN 8
#define SLAB_MAG_MAX 256
#define SLAB_MAX_MAG_PAGES 16 /* largest cache body shk_slab_open accepts */

/* Page kinds. SLAB_K_CACHE: a run holding one process cache's body. */
enum { SLAB_K_FREE = 1, SLAB_K_SLAB = 2, SLAB_K_RUN = 3, SLAB_K_CACHE = 4 };

/* What the pool's busy mark says is in progress (logged by the repair),
 * and the block it names: SLAB_MARK(op, offset of the block from the
 * pool's start), offset 0 for none. */
enum { SLAB_OP_ALLOC = 1, SLAB_OP_FREE = 2, SLAB_OP_CACHE = 3, SLAB_OP_REPAIR = 4 };
#define SLAB_MARK(op, off) ((uint64_t)(off) << 8 | (uint64_t)(op))
#define SLAB_MARK_OP(m) ((uint32_t)((m) & 0xff))
#define SLAB_MARK_OFF(m) ((m) >> 8)

/* ---- the layout in shared memory --------------------------------------------- */

/* One descriptor per page. Every page of a used run or slab has its kind and
 * head (first page); every page of a free run has kind SLAB_K_FREE, and the
 * first and last pages of a free run have head = first. The first page's
 * descriptor holds the length, the list links, and for a slab its chunk
 * bitmap (1 = in use). */
typedef struct slab_desc_s {
    _Atomic uint16_t kind;
    _Atomic uint16_t cls;
    _Atomic uint32_t own; /* slab: cache slot + 1 whose list it joins when partly used; 0: none */
    _Atomic uint32_t npages;
    _Atomic uint32_t head;
    _Atomic uint32_t next, prev;
    _Atomic uint16_t nfree;
    _Atomic uint16_t nchunks;
    _Atomic uint64_t bits[SLAB_MAX_CHUNKS / 64];
} slab_desc_t;

_Static_assert(sizeof(slab_desc_t) == 64, "a page descriptor is one cache line");

/* A size class. size, pages, nchunks, mcap and mat are set by shk_slab_init. */
typedef struct slab_class_s {
    uint32_t size;
    uint32_t pages;   /* pages per slab */
    uint32_t nchunks; /* chunks per slab */
    _Atomic uint32_t partial; /* first slab with free chunks and no cache owner, NIL if none */
    uint32_t mcap;    /* entries of the class's magazine in a process cache */
    uint32_t mat;     /* where that magazine starts inside a cache body */
    /* used: chunks not in the pool (parked ones too) */
    _Atomic uint64_t total, used, reqs, fails;
} slab_class_t;

/* A process cache: a slot in the pool header names its owner and its body,
 * a SLAB_K_CACHE run of mag_pages pages holding one magazine per class. */
typedef struct slab_cslot_s {
    _Atomic uint32_t pid;  /* owner; 0: free. Written under the lock. */
    _Atomic uint32_t body; /* first page of the body, NIL when none */
} slab_cslot_t;

/* A cache body starts with its slab lists: per class, the partly used slabs
 * the cache refills from before any other (read and changed under the
 * lock, by any process). Its magazines follow, from SLAB_BHDR_BYTES on, so
 * the owner's lock-free stores never share a cache line with these. */
typedef struct slab_bhdr_s {
    _Atomic uint32_t partial[SLAB_NCLASS];
} slab_bhdr_t;
#define SLAB_BHDR_BYTES 128
_Static_assert(sizeof(slab_bhdr_t) <= SLAB_BHDR_BYTES, "the body header fits before the magazines");

/* One class's magazine: a stack of parked chunks (offsets from the pool's
 * start). Only the owner changes it, without the lock; others read it
 * (check, stats), and a dead owner's is emptied by reap. n holds two
 * counts: entries [0, cnt) are parked and tagged, [cnt, cnt + pend) are
 * parked by a refill that has not tagged them yet (the refill records each
 * chunk under the lock, tags them after it, then folds pend into cnt with
 * one store; pend is 0 everywhere else, so the owner's lock-free pop and
 * push use n as the count). Entries past cnt + pend are 0, but for the
 * one a push has written and not yet counted, or a pop has counted off and
 * not yet cleared: one that is not 0 names a chunk the owner was giving
 * back or being given, which nobody else holds (see the pop and push). */
#define SLAB_MAG_CNT(w) ((uint32_t)(w) & 0xffffu)
#define SLAB_MAG_PEND(w) ((uint32_t)(w) >> 16)
#define SLAB_MAG_WORD(cnt, pend) ((uint32_t)(cnt) | (uint32_t)(pend) << 16)
typedef struct slab_mag_s {
    _Atomic uint32_t n;   /* SLAB_MAG_WORD(cnt, pend) */
    _Atomic uint32_t cap; /* the class's mcap, written when the body is made */
    _Atomic uint64_t reqs; /* allocations served from the magazine */
    _Atomic uint64_t e[];
} slab_mag_t;

/* The pool header, at offset 0. Published by shk_slab_init with a release
 * store of the magic (after every other field); shk_slab_open loads the
 * magic with acquire before it reads any other. */
typedef struct slab_pool_s {
    _Atomic uint64_t magic;
    uint32_t version;
    uint32_t hdr_size;
    uint64_t size;
    uint64_t page_size;
    uint64_t desc_off;  /* descriptors, from the pool's start */
    uint64_t pages_off; /* first page, page-aligned */
    uint32_t npages;
    uint32_t nclasses;
    _Atomic uint64_t pages_free;
    _Atomic uint64_t fails;
    _Atomic uint64_t run_reqs;
    uint32_t oom; /* in an out-of-memory episode (logged once; ends when 1/64 is free); lock only */
    _Atomic uint32_t free_head[SLAB_NLISTS];
    _Atomic uint64_t nonempty; /* bit i: free_head[i] != NIL */
    slab_class_t cls[SLAB_NCLASS];
    uint64_t cookie;                        /* tags a chunk parked in a process cache */
    _Atomic uint64_t cache_reqs[SLAB_NCLASS]; /* magazine requests of caches since released */
    uint32_t mag_pages;                     /* pages of one cache body */
    _Atomic uint32_t ncaches;               /* slots in use */
    slab_cslot_t caches[SLAB_NCACHE];
    char name[SHK_SHMTX_NAME_MAX + 1];
    /* Crash consistency, written under the lock: the operation in
     * progress and the block it is moving (SLAB_MARK; 0: none), and what
     * repairs did. */
    _Atomic uint64_t busy;
    _Atomic uint64_t leaked, leaked_bytes;
    _Atomic uint32_t repairs;
    uint32_t spare;
    shk_shmtx_sh_t lock;
} slab_pool_t;

/* Layout version 4 is this size (x86-64, aarch64): a change here is a new
 * SLAB_VERSION. The busy mark shares the lock's 128-byte pair of lines. */
_Static_assert(sizeof(slab_pool_t) == 3072, "the pool header of layout version 4");
_Static_assert(offsetof(slab_pool_t, busy) / 128 == offsetof(slab_pool_t, lock) / 128,
               "the busy mark lies next to the lock");

/* ---- the process-local handle ------------------------------------------------ */

/* Blocks this process allocated, kept only under valgrind: memcheck is told
 * about our own blocks only (shk_slab_vg.c). */
typedef struct slab_vgset_s {
    uint64_t *keys; /* offsets; 0 empty, 1 tombstone */
    size_t cap, n, used;
} slab_vgset_t;

struct shk_slab_s {
    struct shk_slab_s *vg_next; /* open handles, for the fork handler */
    slab_pool_t *p;
    char *base;
    size_t size; /* of the region */
    slab_desc_t *desc;
    char *pages;
    size_t ps;
    unsigned pshift;    /* log2 of the page size */
    uint32_t npages;    /* the geometry, copied from the header and checked at open: */
    uint32_t mag_pages; /* lock-free readers never trust the header's own copy */
    uint64_t pages_off;
    size_t pages_len;
    uint64_t cookie;
    int rdonly;
    char name[SHK_SHMTX_NAME_MAX + 1];
    shk_shmtx_t mtx;
    shk_slab_reclaim_t reclaim;
    void *reclaim_ctx;
    slab_vgset_t vg;
    /* the process cache (shk_slab_cache.c) */
    int cache_on;   /* asked for with shk_slab_cache() */
    pid_t cpid;     /* process that owns cbody; the cache is used only there */
    pthread_t cthr; /* ... and only by the thread that claimed it */
    pid_t cfail;    /* claiming failed in this process: do not retry */
    int cslot;
    char *cbody;
    int damaged; /* an operation found the pool broken: repair at its end */
    /* the class table, computed for this page size (shk_slab_open requires
     * the header's to be the same) */
    uint32_t csize[SLAB_NCLASS], crecip[SLAB_NCLASS], cmat[SLAB_NCLASS], cmcap[SLAB_NCLASS];
    uint32_t cpages[SLAB_NCLASS], cnchunks[SLAB_NCLASS];
};

/* The geometry of a pool of `size` bytes with `ps`-byte pages: what
 * shk_slab_init lays out and what shk_slab_open requires. */
typedef struct slab_geom_s {
    uint64_t desc_off, pages_off;
    uint32_t npages, mag_pages;
    uint32_t size[SLAB_NCLASS], pages[SLAB_NCLASS], nchunks[SLAB_NCLASS];
    uint32_t mcap[SLAB_NCLASS], mat[SLAB_NCLASS];
} slab_geom_t;

/* ---- test hooks: a step of an operation (SHK_DEBUG builds only) ---------------
 *
 * SLAB_STEP(name) marks a point between two writes of an operation on the
 * pool (never after its last one: from there on the operation has, as far
 * as the pool can tell, returned). In debug builds (the test build: -DSHK_DEBUG) it calls
 * shk_slab_step_hook when a test set one, which may kill the process
 * there (test_slab's crash tests stop at each step in turn). Release
 * builds compile it to nothing, so the library the benchmarks measure and
 * applications link carries no branch and no symbol for it. The order the
 * crash tests see is not the hooks' doing: the hook is an opaque call,
 * but the stores whose order matters are ordered in every build
 * (SLAB_KILL_ORDER, and the release stores of the magazines). */
#ifdef SHK_DEBUG
typedef void (*shk_slab_step_fn)(const char *step);
extern shk_slab_step_fn shk_slab_step_hook SHK_HIDDEN;
#define SLAB_STEP(name)                                                                            \
    do {                                                                                           \
        if (SHK_UNLIKELY(shk_slab_step_hook != NULL))                                              \
            shk_slab_step_hook(name);                                                              \
    } while (0)
#else
#define SLAB_STEP(name) ((void)0)
#endif

/* The stores before this and those after it reach memory in that order as
 * far as a process killed between them can tell: a kill lands on an
 * instruction boundary, and every store the process made before it is
 * seen by whoever takes the lock after the death (the kernel's exit and
 * the waiter's liveness check order them), so only the compiler's order
 * matters. A signal fence is exactly that, and costs no instruction. */
#define SLAB_KILL_ORDER() SHK_KILL_ORDER()

/* ---- shared between the files (SHK_HIDDEN) ----------------------------------- */

/* shk_slab_pool.c: layout, runs, slabs, the checked free. All with the lock
 * held (or on a pool no other process sees yet). */
SHK_HIDDEN uint32_t shk_slab_class_size(unsigned idx);
/* The geometry of a pool of size bytes: SHK_OK, or SHK_EINVAL (too small)
 * / SHK_ERANGE (too large), with the message. */
SHK_HIDDEN int shk_slab_geometry(size_t size, size_t ps, slab_geom_t *g);
/* Lay out the header, classes and descriptors of a new pool over s->base
 * (the magic excepted) and bind s to it. */
SHK_HIDDEN void shk_slab_format(shk_slab_t *s, size_t size, const slab_geom_t *g,
                                const char *name);
/* Give the handle the geometry g (shk_slab_open has checked the header
 * against it). */
SHK_HIDDEN void shk_slab_bind(shk_slab_t *s, const slab_geom_t *g);
/* Take n pages, marked `kind` with head = start; for a slab (kind
 * SLAB_K_SLAB) of class c, laid out empty with owner own. NIL if none. */
SHK_HIDDEN uint32_t shk_slab_pages_alloc(shk_slab_t *s, uint32_t n, uint32_t kind, unsigned c,
                                         uint32_t own);
/* Give back [start, start+n), merging with free neighbours. */
SHK_HIDDEN void shk_slab_pages_free(shk_slab_t *s, uint32_t start, uint32_t n);
/* The slab a chunk of class c for the cache with owner own (0: no cache)
 * comes from, made or adopted if need be; NIL if none. */
SHK_HIDDEN uint32_t shk_slab_chunk_slab(shk_slab_t *s, unsigned c, uint32_t own);
/* A chunk of class c for the cache with owner own (0: no cache). */
SHK_HIDDEN void *shk_slab_alloc_chunk(shk_slab_t *s, unsigned c, uint32_t own);
/* shk_slab_alloc_locked / _calloc_locked: every case, the errors included
 * (s is a usable read-write handle, the lock is held, the operation
 * begun). */
SHK_HIDDEN void *shk_slab_alloc_slow(shk_slab_t *s, size_t size, int zero);
/* An operation found the pool broken (a link or count out of range): say
 * so, and repair the pool when the operation ends. Cold. */
SHK_HIDDEN void shk_slab_damaged(shk_slab_t *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3), cold));
/* Take the pool's lock for an operation of the library (refill, claim,
 * check...): shk_shmtx_held() of the status says whether it is held. */
SHK_HIDDEN int shk_slab_lock_op(shk_slab_t *s);
/* The free of anything shk_slab_free_checked does not take: checks
 * everything and says what is wrong. */
SHK_HIDDEN int shk_slab_free_slow(shk_slab_t *s, void *ptr);
/* Is the chunk at pool offset off, of class c, parked in a process cache?
 * exact: look in every magazine (else a chunk without its tag is taken
 * for not parked, which a pending refill entry is not). */
SHK_HIDDEN int shk_slab_is_parked(const shk_slab_t *s, uint64_t off, unsigned c, int exact);
/* The partly used slab h of class c has lost its last free chunk. */
SHK_HIDDEN void shk_slab_unlist(shk_slab_t *s, unsigned c, uint32_t h);
/* The slab h of class c has just had a chunk back: its first free one or
 * its last used one. */
SHK_HIDDEN void shk_slab_relist(shk_slab_t *s, unsigned c, uint32_t h);
/* Give the slabs of the cache in slot i to the shared lists. */
SHK_HIDDEN void shk_slab_disown(shk_slab_t *s, unsigned i);

/* shk_slab_repair.c: rebuild the pool from its pages (lock held, read-write
 * handle); returns the blocks found leaked. Safe on any bytes. */
SHK_HIDDEN uint64_t shk_slab_repair(shk_slab_t *s);

/* shk_slab_cache.c */
/* Give this handle a cache in this process and thread: 0, or -1 (then
 * every call takes the lock, as without a cache). Takes the lock. */
SHK_HIDDEN int shk_slab_cache_claim(shk_slab_t *s);
/* Refill magazine m of class c to half its capacity (takes the lock);
 * returns its count. */
SHK_HIDDEN uint32_t shk_slab_mag_refill(shk_slab_t *s, unsigned c, slab_mag_t *m);
/* Spill half of the full magazine m (takes the lock); returns its count. */
SHK_HIDDEN uint32_t shk_slab_mag_spill(shk_slab_t *s, slab_mag_t *m, unsigned c);
/* Give every chunk this handle's cache holds back to the pool (lock held). */
SHK_HIDDEN uint64_t shk_slab_cache_drain_locked(shk_slab_t *s);
/* The magazine m of class c of a dead owner: the entry just past its count,
 * if not 0, names a chunk a push or a pop of the owner's was moving, or
 * one a cache operation had moved already; the chunk goes back to the pool
 * if it is in use and in no magazine, and the entry is cleared (lock held,
 * operation begun). Returns the chunks given back (0 or 1). */
SHK_HIDDEN uint64_t shk_slab_mag_edge(shk_slab_t *s, slab_mag_t *m, unsigned c);

/* shk_slab_vg.c: they do something only under valgrind (the callers of
 * the last three test RUNNING_ON_VALGRIND first). */
SHK_HIDDEN void shk_slab_vg_track(shk_slab_t *s);
SHK_HIDDEN void shk_slab_vg_untrack(shk_slab_t *s);
/* Forget this process's blocks (keep_defined: their memory stays usable). */
SHK_HIDDEN void shk_slab_vg_forget_all(shk_slab_t *s, int keep_defined);
SHK_HIDDEN void shk_slab_vg_allocated(shk_slab_t *s, void *p, size_t size, int zero);
SHK_HIDDEN void shk_slab_vg_freed(shk_slab_t *s, void *p, size_t len);
SHK_HIDDEN int shk_slab_vg_peek_word(const void *c, uint64_t *v);

/* ---- inline: the fast paths are built from these ----------------------------- */

/* For the pieces of the alloc and free fast paths: inlined even where the
 * compiler would rather call (shk_slab_free and shk_slab_free_locked both
 * take shk_slab_free_checked, for instance). */
#define SLAB_HOT static inline __attribute__((always_inline))

SLAB_HOT unsigned shk_slab_class_of(size_t size)
{
    if (size <= 128)
        return size ? (unsigned)((size + 15) / 16 - 1) : 0;
    size_t s = size - 1;
    unsigned b = 63u - (unsigned)__builtin_clzll((unsigned long long)s);
    return 8 + (b - 7) * 4 + (unsigned)((s >> (b - 2)) & 3);
}

SLAB_HOT char *shk_slab_page_addr(const shk_slab_t *s, uint32_t i)
{
    return s->pages + (size_t)i * s->ps;
}

/* A pool left busy by a process that died in the middle of an operation is
 * repaired (lock held). */
SLAB_HOT void shk_slab_settle(shk_slab_t *s)
{
    /* relaxed: the lock's acquire ordered every earlier holder's stores
     * before this load (a dead holder's too: see SLAB_KILL_ORDER) */
    if (SHK_UNLIKELY(SHK_READ_ONCE(s->p->busy)))
        shk_slab_repair(s);
}

/* Say what the operation is doing (SLAB_MARK): before the store that
 * commits the block the mark names. */
SLAB_HOT void shk_slab_op_mark(shk_slab_t *s, uint64_t mark)
{
    SHK_WRITE_ONCE(s->p->busy, mark);
    SLAB_KILL_ORDER(); /* marked before the change it announces */
}

/* An operation on the pool begins (lock held): the pool settled, then
 * marked. The load and the store touch one line, next to the lock's. */
SLAB_HOT void shk_slab_op_begin(shk_slab_t *s, uint64_t mark)
{
    shk_slab_settle(s);
    shk_slab_op_mark(s, mark);
}

/* The repair an operation asks for itself, when it found the pool broken:
 * the operation is done (or gave up), so the block the mark names is where
 * it should be (handed out, or back in the pool) and must stay there. */
static inline void shk_slab_repair_now(shk_slab_t *s)
{
    SHK_WRITE_ONCE(s->p->busy, SLAB_MARK(SLAB_MARK_OP(SHK_READ_ONCE(s->p->busy)), 0));
    shk_slab_repair(s);
}

/* ... and ends: every change made, the mark goes (the lock's release
 * publishes both). An operation that found the pool broken repairs it. */
SLAB_HOT void shk_slab_op_end(shk_slab_t *s)
{
    if (SHK_UNLIKELY(s->damaged))
        shk_slab_repair_now(s);
    SLAB_KILL_ORDER(); /* every change before the mark goes */
    SHK_WRITE_ONCE(s->p->busy, 0);
}

/* Is b the first page of a whole cache body inside the pages? */
static inline int shk_slab_body_ok(const shk_slab_t *s, uint32_t b)
{
    return b < s->npages && s->mag_pages <= s->npages - b;
}

/* A cache body other processes write: under valgrind this process may hold
 * it as freed memory of its own (a block once lay there), so it is made
 * defined before it is read. */
static inline char *shk_slab_body(const shk_slab_t *s, uint32_t b)
{
    char *body = shk_slab_page_addr(s, b);
    SHK_VG_DO(VALGRIND_MAKE_MEM_DEFINED(body, (size_t)s->mag_pages * s->ps));
    return body;
}

/* The slab-list header of the cache body at page b. */
static inline slab_bhdr_t *shk_slab_bhdr(const shk_slab_t *s, uint32_t b)
{
    slab_bhdr_t *bh = (slab_bhdr_t *)shk_slab_page_addr(s, b);
    SHK_VG_DO(VALGRIND_MAKE_MEM_DEFINED(bh, sizeof *bh));
    return bh;
}

SLAB_HOT slab_mag_t *shk_slab_mag_at(const shk_slab_t *s, char *body, unsigned c)
{
    return (slab_mag_t *)(body + s->cmat[c]);
}

/* The entries of magazine word w that are parked, capped by the class's
 * capacity (a damaged count stays inside the magazine). */
SLAB_HOT uint32_t shk_slab_mag_parked(const shk_slab_t *s, unsigned c, uint32_t w)
{
    uint32_t n = SLAB_MAG_CNT(w) + SLAB_MAG_PEND(w);
    return n < s->cmcap[c] ? n : s->cmcap[c];
}

/* The index of the chunk of class c that starts at byte `in` of its slab,
 * NIL when no chunk starts there. A multiply by the class's reciprocal
 * instead of a division (see shk_slab_bind for why it is exact). */
SLAB_HOT uint32_t shk_slab_chunk_index(const shk_slab_t *s, unsigned c, uint64_t in)
{
    if (in >= ((uint64_t)SLAB_MAX_SLAB_PAGES << s->pshift))
        return SLAB_NIL;
    uint32_t idx = (uint32_t)((in * s->crecip[c]) >> 32);
    return (uint64_t)idx * s->csize[c] == in ? idx : SLAB_NIL;
}

/*
 * Is pool offset off the start of a chunk of class c (SLAB_NCLASS: of any
 * class) marked in use? Returns its class and fills the slab's head page
 * and the chunk's index, or -1 (the caller reports, or takes the path that
 * does). Every index is checked before it is used, against the handle's
 * geometry (the chunk index against the class's chunk count, so the bitmap
 * word is inside the descriptor), so any offset and any descriptor bytes
 * are safe. Under the lock the answer is exact. Without it
 * (shk_slab_cache_free) the relaxed reads are exact for a chunk in use,
 * whose slab cannot change under it; for anything else they may be stale,
 * which can only turn a yes into the locked path's full check.
 */
SLAB_HOT int shk_slab_chunk_at(const shk_slab_t *s, uint64_t off, unsigned c, uint32_t *hp,
                               uint32_t *ip)
{
    uint64_t rel = off - s->pages_off;
    if (off < s->pages_off || rel >= s->pages_len)
        return -1;
    uint32_t q = (uint32_t)(rel >> s->pshift);
    const slab_desc_t *d = &s->desc[q];
    if (SHK_READ_ONCE(d->kind) != SLAB_K_SLAB)
        return -1;
    uint32_t h = SHK_READ_ONCE(d->head);
    if (h > q)
        return -1;
    const slab_desc_t *hd = &s->desc[h];
    unsigned cl = SHK_READ_ONCE(hd->cls);
    if (SHK_READ_ONCE(hd->kind) != SLAB_K_SLAB || cl >= SLAB_NCLASS ||
        (c != SLAB_NCLASS && cl != c))
        return -1;
    uint32_t idx = shk_slab_chunk_index(s, cl, rel - ((uint64_t)h << s->pshift));
    if (idx >= s->cnchunks[cl] || !((SHK_READ_ONCE(hd->bits[idx / 64]) >> (idx % 64)) & 1))
        return -1;
    *hp = h;
    *ip = idx;
    return (int)cl;
}

/* The doubly linked page lists (free runs, partly used slabs), lock held.
 * Inline: in a steady churn most frees turn a full slab partly used and
 * the next allocation fills it again, so a slab joins and leaves its list
 * on most calls. A link out of the pages is not followed: the pool is
 * marked damaged (repaired when the operation ends). */
SLAB_HOT void shk_slab_list_push(shk_slab_t *s, _Atomic uint32_t *headp, uint32_t i)
{
    slab_desc_t *d = &s->desc[i];
    uint32_t old = SHK_READ_ONCE(*headp);
    SHK_WRITE_ONCE(d->prev, SLAB_NIL);
    SHK_WRITE_ONCE(d->next, old);
    SLAB_STEP("list push: links of the new head");
    if (old < s->npages)
        SHK_WRITE_ONCE(s->desc[old].prev, i);
    else if (SHK_UNLIKELY(old != SLAB_NIL))
        shk_slab_damaged(s, "a list head is page %u, past the last page", old);
    SHK_WRITE_ONCE(*headp, i);
    SLAB_STEP("list push: head");
}

SLAB_HOT void shk_slab_list_remove(shk_slab_t *s, _Atomic uint32_t *headp, uint32_t i)
{
    slab_desc_t *d = &s->desc[i];
    uint32_t next = SHK_READ_ONCE(d->next), prev = SHK_READ_ONCE(d->prev);
    if (prev < s->npages)
        SHK_WRITE_ONCE(s->desc[prev].next, next);
    else if (SHK_LIKELY(prev == SLAB_NIL))
        SHK_WRITE_ONCE(*headp, next);
    else
        shk_slab_damaged(s, "page %u links back to page %u, past the last page", i, prev);
    SLAB_STEP("list remove: forward link");
    if (next < s->npages)
        SHK_WRITE_ONCE(s->desc[next].prev, prev);
    else if (SHK_UNLIKELY(next != SLAB_NIL))
        shk_slab_damaged(s, "page %u links to page %u, past the last page", i, next);
    SLAB_STEP("list remove: back link");
    SHK_WRITE_ONCE(d->next, SLAB_NIL);
    SHK_WRITE_ONCE(d->prev, SLAB_NIL);
}

/* The lowest free chunk of the slab h (a page index) of class c, for the
 * cache with owner own, or NIL when h is not a partly used slab of that
 * class (a broken list: the pool is marked damaged). Reads only. */
SLAB_HOT uint32_t shk_slab_first_free(shk_slab_t *s, unsigned c, uint32_t h)
{
    const slab_desc_t *d = &s->desc[h];
    if (SHK_UNLIKELY(SHK_READ_ONCE(d->kind) != SLAB_K_SLAB || SHK_READ_ONCE(d->cls) != c ||
                     SHK_READ_ONCE(d->nfree) == 0)) {
        shk_slab_damaged(s, "page %u is on the list of class %u but is not a partly used slab "
                            "of it",
                         h, s->csize[c]);
        return SLAB_NIL;
    }
    for (unsigned w = 0; w < SLAB_MAX_CHUNKS / 64; w++) {
        uint64_t bits = SHK_READ_ONCE(d->bits[w]);
        if (bits != ~0ULL) {
            uint32_t idx = w * 64 + (uint32_t)__builtin_ctzll(~bits);
            if (idx < s->cnchunks[c])
                return idx;
            break;
        }
    }
    shk_slab_damaged(s, "slab at page %u counts free chunks but its bitmap has none", h);
    return SLAB_NIL;
}

/* Mark chunk idx of the partly used slab h of class c in use (lock held)
 * and return it, for operation op. The busy mark names the chunk first:
 * from the bitmap's store on (the commit) the chunk is taken, and until
 * the operation ends and clears the mark, a repair gives it back. */
SLAB_HOT char *shk_slab_take_at(shk_slab_t *s, unsigned c, uint32_t h, uint32_t idx,
                                uint32_t op)
{
    slab_desc_t *d = &s->desc[h];
    char *r = shk_slab_page_addr(s, h) + (size_t)idx * s->csize[c];
    shk_slab_op_mark(s, SLAB_MARK(op, r - s->base));
    SHK_WRITE_ONCE(d->bits[idx / 64], SHK_READ_ONCE(d->bits[idx / 64]) | 1ULL << (idx % 64));
    SLAB_STEP("take: chunk marked in use");
    uint16_t nfree = (uint16_t)(SHK_READ_ONCE(d->nfree) - 1);
    SHK_WRITE_ONCE(d->nfree, nfree);
    SLAB_STEP("take: free count");
    if (nfree == 0) {
        /* full: off its list, the shared one here, a cache's out of line */
        if (SHK_LIKELY(!SHK_READ_ONCE(d->own)))
            shk_slab_list_remove(s, &s->p->cls[c].partial, h);
        else
            shk_slab_unlist(s, c, h);
    }
    SHK_ADD_SOLE(s->p->cls[c].used, 1);
    SLAB_STEP("take: used counter");
    return r;
}

/* The lowest free chunk of the partly used slab h of class c, marked in use
 * (lock held), for operation op. NULL only on a broken pool (then marked
 * damaged). */
SLAB_HOT char *shk_slab_take(shk_slab_t *s, unsigned c, uint32_t h, uint32_t op)
{
    uint32_t idx = shk_slab_first_free(s, c, h);
    return SHK_LIKELY(idx != SLAB_NIL) ? shk_slab_take_at(s, c, h, idx, op) : NULL;
}

/* Give chunk idx of the slab at h, of class c, back to its slab (lock
 * held; the busy mark names the chunk). The bitmap's store is the commit;
 * before it a repair gives the chunk back, after it there is nothing to
 * give. */
SLAB_HOT void shk_slab_chunk_release(shk_slab_t *s, unsigned c, uint32_t h, uint32_t idx)
{
    slab_desc_t *d = &s->desc[h];
    uint16_t nfree = (uint16_t)(SHK_READ_ONCE(d->nfree) + 1);
    SHK_ADD_SOLE(s->p->cls[c].used, -1);
    SLAB_STEP("release: used counter");
    SHK_WRITE_ONCE(d->bits[idx / 64], SHK_READ_ONCE(d->bits[idx / 64]) & ~(1ULL << (idx % 64)));
    SLAB_STEP("release: chunk marked free");
    uint16_t nchunks = (uint16_t)s->cnchunks[c];
    SHK_WRITE_ONCE(d->nfree, nfree);
    SLAB_STEP("release: free count");
    /* nfree - 1 < nchunks - 1: its first free chunk of several (a count
     * out of range, 0 included, goes out of line and is reported there) */
    if (nfree == 1 || nfree - 1u >= nchunks - 1u) {
        /* its first free chunk: onto the shared list here; a cache's list,
         * all chunks free, or a broken count, out of line */
        if (nfree - 1u < nchunks - 1u && !SHK_READ_ONCE(d->own))
            shk_slab_list_push(s, &s->p->cls[c].partial, h);
        else
            shk_slab_relist(s, c, h);
    }
}

/* The tag a parked chunk carries in its first 8 bytes. */
SLAB_HOT uint64_t shk_slab_tag(const shk_slab_t *s, uint64_t off)
{
    return s->cookie ^ (off * 0x9e3779b97f4a7c15ULL);
}

/* Read a chunk's first 8 bytes without disturbing memcheck's view of them.
 * 0: unreadable in this process's view (a block this process freed). */
SLAB_HOT int shk_slab_peek_word(const void *c, uint64_t *v)
{
    if (SHK_UNLIKELY(RUNNING_ON_VALGRIND))
        return shk_slab_vg_peek_word(c, v);
    memcpy(v, c, 8);
    return 1;
}

/* A block was handed out: tell memcheck, zero it if asked. */
SLAB_HOT void shk_slab_on_alloc(shk_slab_t *s, void *p, size_t size, int zero)
{
    if (SHK_UNLIKELY(RUNNING_ON_VALGRIND))
        shk_slab_vg_allocated(s, p, size, zero);
    if (zero)
        memset(p, 0, size);
}

/* A block of len bytes is being given back: junk-filled in debug builds,
 * tagged when it is parked (tag != NULL), and freed in memcheck's view. */
SLAB_HOT void shk_slab_on_free(shk_slab_t *s, void *p, size_t len, const uint64_t *tag)
{
    /* it may be inaccessible in this process's view (a block of ours freed
     * earlier lay there) */
    SHK_VG_DO(VALGRIND_MAKE_MEM_UNDEFINED(p, len));
#ifdef SHK_DEBUG
    memset(p, SLAB_JUNK, len);
#endif
    if (tag)
        memcpy(p, tag, sizeof *tag);
    if (SHK_UNLIKELY(RUNNING_ON_VALGRIND))
        shk_slab_vg_freed(s, p, len);
}

/* shk_slab_free_locked once the handle and ptr are known to be usable (lock
 * held, operation begun with a mark naming ptr). Most frees are of a chunk while no process cache
 * holds any: one validation (shk_slab_chunk_at) does then; everything
 * else, bad input included, goes the way that says what is wrong. */
SLAB_HOT int shk_slab_free_checked(shk_slab_t *s, void *ptr)
{
    uint32_t h, idx;
    int c;
    if (SHK_UNLIKELY(SHK_READ_ONCE(s->p->ncaches)) ||
        (c = shk_slab_chunk_at(s, (uint64_t)((uintptr_t)ptr - (uintptr_t)s->base), SLAB_NCLASS,
                               &h, &idx)) < 0)
        return shk_slab_free_slow(s, ptr);
    shk_slab_on_free(s, ptr, s->csize[c], NULL);
    shk_slab_chunk_release(s, (unsigned)c, h, idx);
    return SHK_OK;
}

/* ---- inline: the process cache's lock-free paths ------------------------------
 *
 * Only the owner (the process and thread that claimed the slot) changes its
 * magazines. A pop lowers the count (relaxed: a reader that still counts
 * the entry sees a chunk in use, which it is either way); a push writes the
 * entry, then the count with a release store, which readers of the count
 * (check, stats, the double-free scan) pair with an acquire load. The
 * count is the commit of each. A push writes its entry first (past the
 * count), and a pop clears its entry last, so a process killed in the
 * middle of either leaves, just past the count, an entry naming the chunk
 * it was giving back or being given, which no caller has seen: whoever
 * empties the dead owner's cache (the reap, a takeover, the repair) gives
 * that chunk back (shk_slab_cache.c). Entries past the count are 0
 * otherwise.
 */

SLAB_HOT int shk_slab_cache_mine(const shk_slab_t *s)
{
    return s->cbody && s->cpid == SHK_PID() && pthread_equal(s->cthr, pthread_self());
}

/* A chunk for size bytes (at most SLAB_MAX_SMALL) from this process's
 * cache, NULL when the pool has none to give it. */
SLAB_HOT void *shk_slab_cache_alloc(shk_slab_t *s, size_t size, int zero)
{
    unsigned c = shk_slab_class_of(size);
    slab_mag_t *m = shk_slab_mag_at(s, s->cbody, c);
    /* relaxed: only this thread changes the count (and outside a refill
     * its pend half is 0) */
    uint32_t n = SHK_READ_ONCE(m->n);
    if (!n && !(n = shk_slab_mag_refill(s, c, m)))
        return NULL;
    uint64_t off = SHK_READ_ONCE(m->e[n - 1]);
    SHK_WRITE_ONCE(m->n, n - 1);
    SLAB_STEP("pop: count lowered");
    SHK_ADD_SOLE(m->reqs, 1);
    char *r = s->base + off;
    SHK_VG_DO(VALGRIND_MAKE_MEM_UNDEFINED(r, 8));
    memset(r, 0, 8); /* the tag goes: the chunk is no longer parked */
    SLAB_STEP("pop: tag cleared");
    SLAB_KILL_ORDER(); /* the entry goes last: until then it says whose the chunk is */
    SHK_WRITE_ONCE(m->e[n - 1], 0); /* the last store: the chunk is the caller's */
    shk_slab_on_alloc(s, r, size, zero);
    return r;
}

/* Park ptr in this process's cache: 1. 0 when it is not a chunk this path
 * can take for sure (the caller frees under the lock, which also reports
 * bad pointers and double frees precisely). */
SLAB_HOT int shk_slab_cache_free(shk_slab_t *s, void *ptr)
{
    uint64_t off = (uint64_t)((uintptr_t)ptr - (uintptr_t)s->base), w;
    uint32_t h, idx, n;
    int c = shk_slab_chunk_at(s, off, SLAB_NCLASS, &h, &idx);
    if (c < 0)
        return 0;
    uint64_t tag = shk_slab_tag(s, off);
    if (!shk_slab_peek_word(ptr, &w) || w == tag)
        return 0; /* maybe parked already: the locked path looks */
    slab_mag_t *m = shk_slab_mag_at(s, s->cbody, (unsigned)c);
    uint32_t cap = s->cmcap[c];
    /* relaxed: only this thread changes the count; full (a spill could
     * not take the lock): the locked path frees it */
    if ((n = SHK_READ_ONCE(m->n)) >= cap)
        return 0;
    SHK_WRITE_ONCE(m->e[n], off);
    SLAB_KILL_ORDER(); /* the entry first: from here on it says whose the chunk is */
    SLAB_STEP("push: entry written");
    shk_slab_on_free(s, ptr, s->csize[c], &tag);
    SLAB_STEP("push: tagged");
    /* release: a reader of the new count sees the entry (and the tag) */
    SHK_STORE_RELEASE(m->n, n + 1);
    SLAB_STEP("push: counted");
    /* full now: half of it goes back, with every chunk parked (so a death
     * in the spill loses none) */
    if (SHK_UNLIKELY(n + 1 == cap))
        shk_slab_mag_spill(s, m, (unsigned)c);
    return 1;
}

#endif /* SHK_SLAB_INTERNAL_H */
