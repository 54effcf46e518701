/*
 * shk_slab.c: the slab allocator: pool layout, size classes, chunk slabs
 * with bitmaps, page runs indexed by length with coalescing, validation of
 * frees, stats, the invariant checker, and valgrind annotations.
 */
#include "shk_slab.h"

#include "shk_internal.h"
#include "shk_shmtx_internal.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#if __has_include(<valgrind/memcheck.h>)
#include <valgrind/memcheck.h>
#define SHK_VG 1
#else
#define SHK_VG 0
#define RUNNING_ON_VALGRIND 0
#endif

#define SLAB_MAGIC 0x42414c534b4d4853ULL /* "SHMKSLAB" read as little-endian */
#define SLAB_VERSION 3u
#define NCLASS 24
#define MAX_SMALL 2048
#define NLISTS 64 /* free-run lists: length 1..63 exactly, then >= 64 */
#define NIL 0xffffffffu
#define MAX_CHUNKS 256
#define MAX_SLAB_PAGES 8
#define RECLAIM_TRIES 16
#define JUNK 0x5a
#define NCACHE 128          /* process caches a pool can hold */
#define MAG_BYTES 32768     /* a magazine holds about this many bytes of chunks */
#define MAG_MIN 8
#define MAG_MAX 256

/* K_CACHE: a run holding one process cache's magazines (pool metadata). */
enum { K_FREE = 1, K_SLAB = 2, K_RUN = 3, K_CACHE = 4 };

/* Relaxed loads of descriptor fields that other processes write under the
 * lock, for the lock-free fast free path; every value so read is
 * re-validated under the lock before anything is changed on its strength. */
#define PEEK(x) __atomic_load_n(&(x), __ATOMIC_RELAXED)

/* One descriptor per page (shared). Every page of a used run or slab has
 * its kind and head (first page); every page of a free run has kind
 * K_FREE, and the first and last pages of a free run have head = first.
 * The first page's descriptor holds the length, list links, and for a
 * slab its chunk bitmap (1 = in use). */
typedef struct pdesc_s {
    uint16_t kind;
    uint16_t cls;
    uint32_t own; /* slab: the cache (slot + 1) whose list it joins when partly used; 0: none */
    uint32_t npages;
    uint32_t head;
    uint32_t next, prev;
    uint16_t nfree;
    uint16_t nchunks;
    uint64_t bits[MAX_CHUNKS / 64];
} pdesc_t;

_Static_assert(sizeof(pdesc_t) == 64, "a page descriptor is one cache line");

typedef struct cls_s {
    uint32_t size;
    uint32_t pages;   /* pages per slab */
    uint32_t nchunks; /* chunks per slab */
    uint32_t partial; /* first slab with free chunks and no cache owner, NIL if none */
    uint32_t mcap;    /* entries of the class's magazine in a process cache */
    uint32_t mat;     /* where that magazine starts inside a cache body */
    uint64_t total, used, reqs, fails; /* used: chunks not in the pool (parked ones too) */
} cls_t;

/* A process cache: a slot in the pool header names its owner and its body,
 * a K_CACHE run of mag_pages pages holding one magazine per class. */
typedef struct cslot_s {
    _Atomic uint32_t pid; /* owner; 0: free. Written under the lock. */
    uint32_t body;        /* first page of the body, NIL when none */
} cslot_t;

/* A cache body starts with its slab lists: per class, the partly used slabs
 * the cache refills from before any other (read and changed under the
 * lock, by any process). Its magazines follow, from BHDR_BYTES on, so the
 * owner's lock-free stores never share a cache line with these. */
typedef struct bhdr_s {
    uint32_t partial[NCLASS];
} bhdr_t;
#define BHDR_BYTES 128
_Static_assert(sizeof(bhdr_t) <= BHDR_BYTES, "cache body header fits before the magazines");

/* One class's magazine: a stack of parked chunks (offsets from the pool's
 * start). Only the owner changes it, without the lock; others read it
 * (check, stats) under the lock, and a dead owner's is emptied by reap. */
typedef struct mag_s {
    _Atomic uint32_t n; /* entries [0, n) are parked chunks */
    uint32_t cap;
    _Atomic uint64_t reqs; /* allocations served from the magazine */
    _Atomic uint64_t e[];
} mag_t;

typedef struct pool_s {
    uint64_t magic;
    uint32_t version;
    uint32_t hdr_size;
    uint64_t size;
    uint64_t page_size;
    uint64_t desc_off;  /* descriptors, from the pool's start */
    uint64_t pages_off; /* first page, page-aligned */
    uint32_t npages;
    uint32_t nclasses;
    uint64_t pages_free;
    uint64_t fails;
    uint64_t run_reqs;
    uint32_t oom; /* in an out-of-memory episode (logged once; ends when 1/64 is free) */
    uint32_t free_head[NLISTS];
    uint64_t nonempty; /* bit i: free_head[i] != NIL */
    cls_t cls[NCLASS];
    uint64_t cookie;    /* tags a chunk parked in a process cache (first 8 bytes) */
    uint64_t cache_reqs[NCLASS]; /* magazine requests of caches since released */
    uint32_t mag_pages; /* pages of one cache body */
    uint32_t ncaches;   /* slots in use */
    cslot_t caches[NCACHE];
    char name[SHK_SHMTX_NAME_MAX + 1];
    shk_shmtx_sh_t lock;
} pool_t;

/* Process-local record of the blocks this process allocated, kept only under
 * valgrind: memcheck is told about our own blocks only. */
typedef struct vgset_s {
    uint64_t *keys; /* offsets; 0 empty, 1 tombstone */
    size_t cap, n, used;
} vgset_t;

struct shk_slab_s {
    struct shk_slab_s *vg_next; /* open handles, for the fork handler */
    pool_t *p;
    char *base;
    pdesc_t *desc;
    char *pages;
    size_t ps;
    int rdonly;
    shk_shmtx_t mtx;
    shk_slab_reclaim_t reclaim;
    void *reclaim_ctx;
    vgset_t vg;
    /* the process cache (see "process caches" below) */
    int cache_on;       /* asked for with shk_slab_cache() */
    pid_t cpid;         /* process that owns cbody; the cache is used only there */
    pthread_t cthr;     /* ... and only by the thread that claimed it */
    pid_t cfail;        /* claiming failed in this process: do not retry */
    int cslot;
    char *cbody;
    unsigned pshift;    /* log2 of the page size */
    size_t pages_len;
    uint64_t cookie;
    uint32_t csize[NCLASS], crecip[NCLASS], cmat[NCLASS];
};

/* ---- size classes ----------------------------------------------------------- */

static unsigned class_of(size_t size)
{
    if (size <= 128)
        return size ? (unsigned)((size + 15) / 16 - 1) : 0;
    size_t s = size - 1;
    unsigned b = 63u - (unsigned)__builtin_clzll((unsigned long long)s);
    return 8 + (b - 7) * 4 + (unsigned)((s >> (b - 2)) & 3);
}

static uint32_t class_size(unsigned idx)
{
    if (idx < 8)
        return (idx + 1) * 16;
    unsigned k = idx - 8, b = 7 + k / 4;
    return (1u << b) + ((k % 4) + 1) * (1u << (b - 2));
}

/* ---- valgrind bookkeeping ------------------------------------------------------- */

static uint64_t vg_hash(uint64_t k)
{
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdULL;
    k ^= k >> 33;
    return k;
}

static int vg_grow(vgset_t *s)
{
    size_t cap = s->cap ? s->cap * 2 : 1024;
    uint64_t *nk = calloc(cap, sizeof *nk);
    if (!nk)
        return -1;
    for (size_t i = 0; i < s->cap; i++)
        if (s->keys[i] > 1) {
            size_t j = vg_hash(s->keys[i]) & (cap - 1);
            while (nk[j])
                j = (j + 1) & (cap - 1);
            nk[j] = s->keys[i];
        }
    free(s->keys);
    s->keys = nk;
    s->cap = cap;
    s->used = s->n;
    return 0;
}

static void vg_add(vgset_t *s, uint64_t k)
{
    if ((s->used + 1) * 2 > s->cap && vg_grow(s) != 0)
        return;
    size_t j = vg_hash(k) & (s->cap - 1);
    while (s->keys[j] > 1)
        j = (j + 1) & (s->cap - 1);
    if (!s->keys[j])
        s->used++;
    s->keys[j] = k;
    s->n++;
}

static int vg_del(vgset_t *s, uint64_t k)
{
    if (!s->cap)
        return 0;
    size_t j = vg_hash(k) & (s->cap - 1);
    while (s->keys[j]) {
        if (s->keys[j] == k) {
            s->keys[j] = 1;
            s->n--;
            return 1;
        }
        j = (j + 1) & (s->cap - 1);
    }
    return 0;
}

/* Under valgrind, a forked child did not allocate the blocks its parent
 * did: it forgets them (so they are not its leaks) but keeps them
 * accessible. */
static shk_slab_t *vg_handles;
static int vg_atfork_set;

static void vg_forget_all(shk_slab_t *s, int keep_defined)
{
#if SHK_VG
    for (size_t i = 0; i < s->vg.cap; i++)
        if (s->vg.keys[i] > 1) {
            char *b = s->base + s->vg.keys[i];
            size_t n = keep_defined ? shk_slab_usable(s, b) : 0;
            VALGRIND_FREELIKE_BLOCK(b, 0);
            if (n)
                VALGRIND_MAKE_MEM_DEFINED(b, n);
            s->vg.keys[i] = 0;
        }
    s->vg.n = s->vg.used = 0;
#else
    (void)s, (void)keep_defined;
#endif
}

static void vg_atfork_child(void)
{
    for (shk_slab_t *s = vg_handles; s; s = s->vg_next)
        vg_forget_all(s, 1);
}

static void vg_track(shk_slab_t *s)
{
    if (!RUNNING_ON_VALGRIND)
        return;
    if (!vg_atfork_set) {
        pthread_atfork(NULL, NULL, vg_atfork_child);
        vg_atfork_set = 1;
    }
    s->vg_next = vg_handles;
    vg_handles = s;
}

static void vg_untrack(shk_slab_t *s)
{
    for (shk_slab_t **pp = &vg_handles; *pp; pp = &(*pp)->vg_next)
        if (*pp == s) {
            *pp = s->vg_next;
            break;
        }
}

static void vg_on_alloc(shk_slab_t *s, void *p, size_t size, int zero)
{
#if SHK_VG
    if (RUNNING_ON_VALGRIND) {
        VALGRIND_MALLOCLIKE_BLOCK(p, size, 0, zero);
        vg_add(&s->vg, (uint64_t)((char *)p - s->base));
    }
#else
    (void)s, (void)p, (void)size, (void)zero;
#endif
}

/* Before a block's memory is junk-filled on free: it may be inaccessible in
 * this process's view (a block of ours freed earlier lay there). */
static void vg_before_free(void *p, size_t len)
{
#if SHK_VG
    if (RUNNING_ON_VALGRIND)
        VALGRIND_MAKE_MEM_UNDEFINED(p, len);
#else
    (void)p, (void)len;
#endif
}

/* After: our own blocks become freed heap blocks; a block another process
 * allocated is simply memory again. */
static void vg_on_free(shk_slab_t *s, void *p, size_t len)
{
#if SHK_VG
    if (!RUNNING_ON_VALGRIND)
        return;
    if (vg_del(&s->vg, (uint64_t)((char *)p - s->base)))
        VALGRIND_FREELIKE_BLOCK(p, 0);
    else
        VALGRIND_MAKE_MEM_DEFINED(p, len);
#else
    (void)s, (void)p, (void)len;
#endif
}

/* ---- pool geometry ------------------------------------------------------------------ */

static size_t page_size(void)
{
    static size_t ps;
    if (!ps)
        ps = (size_t)sysconf(_SC_PAGESIZE);
    return ps;
}

size_t shk_slab_min_size(void)
{
    size_t ps = page_size();
    return SHK_ALIGN_UP(sizeof(pool_t), ps) + ps + 4 * ps;
}

static inline char *page_addr(const shk_slab_t *s, uint32_t i)
{
    return s->pages + (size_t)i * s->ps;
}

/* The index of the chunk of class c that starts at byte `in` of its slab,
 * NIL when no chunk starts there. A multiply by the class's reciprocal
 * instead of a division (see handle_bind for why it is exact). */
static inline uint32_t chunk_index(const shk_slab_t *s, unsigned c, uint64_t in)
{
    if (in >= ((uint64_t)MAX_SLAB_PAGES << s->pshift))
        return NIL;
    uint32_t idx = (uint32_t)((in * s->crecip[c]) >> 32);
    return (uint64_t)idx * s->csize[c] == in ? idx : NIL;
}

static inline unsigned list_of(uint32_t n)
{
    return n < NLISTS ? n - 1 : NLISTS - 1;
}

static void list_push(shk_slab_t *s, uint32_t *headp, uint32_t i)
{
    pdesc_t *d = &s->desc[i];
    d->prev = NIL;
    d->next = *headp;
    if (*headp != NIL)
        s->desc[*headp].prev = i;
    *headp = i;
}

static void list_remove(shk_slab_t *s, uint32_t *headp, uint32_t i)
{
    pdesc_t *d = &s->desc[i];
    if (d->prev != NIL)
        s->desc[d->prev].next = d->next;
    else
        *headp = d->next;
    if (d->next != NIL)
        s->desc[d->next].prev = d->prev;
    d->next = d->prev = NIL;
}

/* Insert the free run [start, start+n): mark its ends and index it. */
static void run_insert(shk_slab_t *s, uint32_t start, uint32_t n)
{
    pool_t *p = s->p;
    unsigned li = list_of(n);
    pdesc_t *h = &s->desc[start];
    h->kind = K_FREE;
    h->npages = n;
    h->head = start;
    s->desc[start + n - 1].kind = K_FREE;
    s->desc[start + n - 1].head = start;
    list_push(s, &p->free_head[li], start);
    p->nonempty |= 1ULL << li;
}

static void run_unlink(shk_slab_t *s, uint32_t start)
{
    pool_t *p = s->p;
    unsigned li = list_of(s->desc[start].npages);
    list_remove(s, &p->free_head[li], start);
    if (p->free_head[li] == NIL)
        p->nonempty &= ~(1ULL << li);
}

/* Take n pages; marks them `kind` with head = start. NIL if none. */
static uint32_t pages_alloc(shk_slab_t *s, uint32_t n, uint32_t kind)
{
    pool_t *p = s->p;
    unsigned li = list_of(n);
    uint64_t mask = p->nonempty & (~0ULL << li);
    uint32_t start = NIL, len = 0;

    while (mask) {
        unsigned j = (unsigned)__builtin_ctzll(mask);
        if (j < NLISTS - 1) {
            start = p->free_head[j];
            len = j + 1;
            break;
        }
        /* Runs of 64 pages or more: best fit. Only long runs are on this
         * list, so it is short compared with the pool. */
        for (uint32_t i = p->free_head[j], guard = 0; i != NIL && guard <= p->npages;
             i = s->desc[i].next, guard++)
            if (s->desc[i].npages >= n && (start == NIL || s->desc[i].npages < len)) {
                start = i;
                len = s->desc[i].npages;
                if (len == n)
                    break;
            }
        break;
    }
    if (start == NIL)
        return NIL;
    run_unlink(s, start);
    if (len > n)
        run_insert(s, start + n, len - n);
    for (uint32_t i = start; i < start + n; i++) {
        s->desc[i].kind = kind;
        s->desc[i].head = start;
    }
    s->desc[start].npages = n;
    s->desc[start].next = s->desc[start].prev = NIL;
    p->pages_free -= n;
    return start;
}

/* Give back [start, start+n), merging with free neighbours. */
static void pages_free(shk_slab_t *s, uint32_t start, uint32_t n)
{
    pool_t *p = s->p;
    for (uint32_t i = start; i < start + n; i++) {
        s->desc[i].kind = K_FREE;
        s->desc[i].head = start;
    }
    p->pages_free += n;
    /* An out-of-memory episode ends when a sixty-fourth of the pool is free
     * again: failures while it hovers near full log nothing more. */
    if (p->oom && p->pages_free * 64 >= p->npages)
        p->oom = 0;
    if (start > 0 && s->desc[start - 1].kind == K_FREE) {
        uint32_t h = s->desc[start - 1].head;
        uint32_t hn = s->desc[h].npages;
        run_unlink(s, h);
        start = h;
        n += hn;
    }
    if (start + n < p->npages && s->desc[start + n].kind == K_FREE) {
        uint32_t r = start + n;
        uint32_t rn = s->desc[r].npages;
        run_unlink(s, r);
        n += rn;
    }
    run_insert(s, start, n);
}

/* ---- init / open ------------------------------------------------------------------- */

static shk_slab_t *handle_new(void *addr)
{
    shk_slab_t *s = calloc(1, sizeof *s);
    if (!s) {
        shk_error(SHK_ENOMEM, "out of memory");
        return NULL;
    }
    s->p = addr;
    s->base = addr;
    s->ps = page_size();
    return s;
}

static void handle_bind(shk_slab_t *s)
{
    s->desc = (pdesc_t *)(s->base + s->p->desc_off);
    s->pages = s->base + s->p->pages_off;
    s->pshift = (unsigned)__builtin_ctzll((unsigned long long)s->ps);
    s->pages_len = (size_t)s->p->npages * s->ps;
    s->cookie = s->p->cookie;
    s->cslot = -1;
    for (unsigned c = 0; c < NCLASS; c++) {
        s->csize[c] = s->p->cls[c].size;
        /* ceil(2^32 / size): (off * crecip) >> 32 == off / size exactly for
         * every offset inside a slab (off < 2^21 <= 2^32 / size). */
        s->crecip[c] = (uint32_t)((((uint64_t)1 << 32) + s->csize[c] - 1) / s->csize[c]);
        s->cmat[c] = s->p->cls[c].mat;
    }
}

static uint64_t new_cookie(void)
{
    uint64_t v = 0;
    if (getrandom(&v, sizeof v, GRND_NONBLOCK) != (ssize_t)sizeof v) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        v = ((uint64_t)ts.tv_nsec << 32) ^ (uint64_t)ts.tv_sec ^ ((uint64_t)getpid() << 17);
    }
    return v | 1; /* never 0, so a zeroed chunk never looks parked */
}

int shk_slab_init(shk_slab_t **out, void *addr, size_t size, const char *name)
{
    size_t ps = page_size(), hdr = SHK_ALIGN_UP(sizeof(pool_t), ps);
    shk_slab_t *s;
    pool_t *p;
    uint32_t npages, body = BHDR_BYTES;
    int rc;

    if (!out || !addr)
        return shk_error(SHK_EINVAL, "shk_slab_init: NULL argument");
    *out = NULL;
    if ((uintptr_t)addr % ps)
        return shk_error(SHK_EINVAL, "slab pool address %p is not page-aligned", addr);
    if (size < shk_slab_min_size())
        return shk_error(SHK_EINVAL, "slab pool of %zu bytes is too small (minimum %zu)", size,
                         shk_slab_min_size());
    if (!name)
        name = "slab";
    if (strlen(name) > SHK_SHMTX_NAME_MAX)
        return shk_error(SHK_ERANGE, "slab pool name \"%s\" is longer than %d bytes", name,
                         SHK_SHMTX_NAME_MAX);
    /* pages + their descriptors must fit after the header */
    npages = (uint32_t)((size - hdr) / (ps + sizeof(pdesc_t)));
    while (npages && hdr + SHK_ALIGN_UP((size_t)npages * sizeof(pdesc_t), ps) +
                             (size_t)npages * ps > size)
        npages--;
    if (npages < 4)
        return shk_error(SHK_EINVAL, "slab pool of %zu bytes is too small", size);
    if ((size_t)npages >= NIL)
        return shk_error(SHK_ERANGE, "slab pool of %zu bytes is too large", size);

    s = handle_new(addr);
    if (!s)
        return SHK_ENOMEM;
    p = s->p;
    memset(p, 0, sizeof *p);
    p->version = SLAB_VERSION;
    p->hdr_size = sizeof *p;
    p->size = size;
    p->page_size = ps;
    p->desc_off = hdr;
    p->pages_off = hdr + SHK_ALIGN_UP((size_t)npages * sizeof(pdesc_t), ps);
    p->npages = npages;
    p->nclasses = NCLASS;
    strcpy(p->name, name);
    for (unsigned i = 0; i < NLISTS; i++)
        p->free_head[i] = NIL;
    for (unsigned c = 0; c < NCLASS; c++) {
        cls_t *k = &p->cls[c];
        uint32_t best = 1;
        size_t best_waste = SIZE_MAX;
        k->size = class_size(c);
        for (uint32_t pg = 1; pg <= MAX_SLAB_PAGES; pg++) {
            size_t n = (size_t)pg * ps / k->size;
            if (n > MAX_CHUNKS)
                n = MAX_CHUNKS;
            size_t waste = (size_t)pg * ps - n * k->size;
            /* waste as a fraction of the slab, compared in integers */
            if (waste * best < best_waste * pg) {
                best = pg;
                best_waste = waste;
            }
            if (waste * 64 <= (size_t)pg * ps)
                break; /* under 1/64 wasted: good enough, keep slabs small */
        }
        k->pages = best;
        k->nchunks = (uint32_t)((size_t)best * ps / k->size > MAX_CHUNKS
                                    ? MAX_CHUNKS
                                    : (size_t)best * ps / k->size);
        k->partial = NIL;
        k->mcap = MAG_BYTES / k->size;
        if (k->mcap < MAG_MIN)
            k->mcap = MAG_MIN;
        if (k->mcap > MAG_MAX)
            k->mcap = MAG_MAX;
        k->mat = body;
        body += (uint32_t)(sizeof(mag_t) + k->mcap * sizeof(uint64_t));
    }
    p->mag_pages = (uint32_t)((body + ps - 1) / ps);
    p->cookie = new_cookie();
    for (unsigned i = 0; i < NCACHE; i++)
        p->caches[i].body = NIL;
    shk_shmtx_sh_init(&p->lock);
    handle_bind(s);
    memset(s->desc, 0, (size_t)npages * sizeof(pdesc_t));
    for (uint32_t i = 0; i < npages; i++)
        s->desc[i].kind = K_FREE;
    run_insert(s, 0, npages);
    p->pages_free = npages;
    if ((rc = shk_shmtx_create(&s->mtx, &p->lock, name)) != SHK_OK) {
        free(s);
        return rc;
    }
    /* Last: a pool is valid once its magic is there. */
    atomic_store_explicit((_Atomic uint64_t *)&p->magic, SLAB_MAGIC, memory_order_release);
    vg_track(s);
    *out = s;
    return SHK_OK;
}

int shk_slab_open(shk_slab_t **out, void *addr, size_t size, unsigned flags)
{
    size_t ps = page_size();
    const pool_t *p = addr;
    shk_slab_t *s;

    if (!out || !addr)
        return shk_error(SHK_EINVAL, "shk_slab_open: NULL argument");
    *out = NULL;
    if (flags & ~SHK_SLAB_RDONLY)
        return shk_error(SHK_EINVAL, "invalid slab open flags %#x", flags);
    if ((uintptr_t)addr % ps || size < sizeof(pool_t))
        return shk_error(SHK_ECORRUPT, "no slab pool at %p (%zu bytes)", addr, size);
    if (atomic_load_explicit((const _Atomic uint64_t *)&p->magic, memory_order_acquire) !=
        SLAB_MAGIC)
        return shk_error(SHK_ECORRUPT, "no slab pool at %p: bad magic", addr);
    if (p->version != SLAB_VERSION || p->hdr_size != sizeof(pool_t))
        return shk_error(SHK_ECORRUPT, "slab pool layout version %u, this library reads %u",
                         p->version, SLAB_VERSION);
    if (p->size != size || p->page_size != ps)
        return shk_error(SHK_ECORRUPT, "slab pool records %llu bytes (page %llu), region is %zu "
                                       "(page %zu)",
                         (unsigned long long)p->size, (unsigned long long)p->page_size, size, ps);
    if (p->nclasses != NCLASS || p->desc_off < sizeof(pool_t) || p->desc_off % ps ||
        p->pages_off % ps || p->pages_off < p->desc_off + (uint64_t)p->npages * sizeof(pdesc_t) ||
        p->pages_off + (uint64_t)p->npages * ps > size || !memchr(p->name, 0, sizeof p->name) ||
        p->mag_pages == 0 || p->mag_pages > 16)
        return shk_error(SHK_ECORRUPT, "slab pool header is inconsistent");
    for (unsigned c = 0; c < NCLASS; c++)
        if (p->cls[c].mcap < MAG_MIN || p->cls[c].mcap > MAG_MAX ||
            p->cls[c].mat + sizeof(mag_t) + p->cls[c].mcap * sizeof(uint64_t) >
                (uint64_t)p->mag_pages * ps)
            return shk_error(SHK_ECORRUPT, "slab pool header: bad cache layout of class %u", c);
    s = handle_new(addr);
    if (!s)
        return SHK_ENOMEM;
    s->rdonly = !!(flags & SHK_SLAB_RDONLY);
    handle_bind(s);
    shk_shmtx_create(&s->mtx, &s->p->lock, s->p->name);
    vg_track(s);
    *out = s;
    return SHK_OK;
}

void shk_slab_close(shk_slab_t *s)
{
    if (!s)
        return;
    if (s->cbody && s->cpid == SHK_PID())
        shk_slab_cache(s, 0);
    if (RUNNING_ON_VALGRIND) {
        vg_forget_all(s, 0);
        vg_untrack(s);
    }
    free(s->vg.keys);
    free(s);
}

/* ---- alloc / free ------------------------------------------------------------------- */

/* ---- slab ownership -----------------------------------------------------------------
 *
 * A partly used slab is on one list: its class's shared list (own == 0), or
 * the list of the process cache that refills from it (own == slot + 1, the
 * list in that cache's body). A cache refills from its own slabs first, so
 * processes with caches mostly keep to slabs of their own and do not pull
 * each other's descriptor and chunk cache lines. A full slab keeps its
 * `own` as a hint; it is checked against the slot when the slab has room
 * again. Releasing a cache moves its slabs to the shared lists.
 */

/* The slab-list header of the cache body at page b (lock held). */
static bhdr_t *bhdr_of(const shk_slab_t *s, uint32_t b)
{
    bhdr_t *bh = (bhdr_t *)page_addr(s, b);
#if SHK_VG
    /* this process may see that memory as a block of its own it freed */
    if (RUNNING_ON_VALGRIND)
        VALGRIND_MAKE_MEM_DEFINED(bh, sizeof *bh);
#endif
    return bh;
}

/* The list a partly used slab of class c with owner own is on. */
static uint32_t *partial_list(const shk_slab_t *s, unsigned c, uint32_t own)
{
    if (own)
        return &bhdr_of(s, s->p->caches[own - 1].body)->partial[c];
    return &s->p->cls[c].partial;
}

/* The owner of slab d, reset to none when its cache is gone. */
static uint32_t slab_owner(const shk_slab_t *s, pdesc_t *d)
{
    if (d->own && (d->own > NCACHE || s->p->caches[d->own - 1].body >= s->p->npages))
        d->own = 0;
    return d->own;
}

/* Move the partly used slab h to owner own's list. */
static void slab_adopt(shk_slab_t *s, uint32_t h, uint32_t own)
{
    pdesc_t *d = &s->desc[h];
    list_remove(s, partial_list(s, d->cls, d->own), h);
    d->own = own;
    list_push(s, partial_list(s, d->cls, own), h);
}

/* A partly used slab of class c on some cache's list, NIL if none: taken
 * from another process rather than fail while it has room. */
static uint32_t slab_steal(const shk_slab_t *s, unsigned c)
{
    const pool_t *p = s->p;
    for (unsigned i = 0; i < NCACHE; i++) {
        uint32_t b = p->caches[i].body;
        if (b < p->npages && bhdr_of(s, b)->partial[c] != NIL)
            return bhdr_of(s, b)->partial[c];
    }
    return NIL;
}

/* Give the cache in slot i's slabs to the shared lists (lock held; before
 * its body goes). */
static void slab_disown(shk_slab_t *s, unsigned i)
{
    pool_t *p = s->p;
    bhdr_t *bh = bhdr_of(s, p->caches[i].body);
    for (unsigned c = 0; c < NCLASS; c++) {
        uint32_t h, guard = 0;
        while ((h = bh->partial[c]) != NIL && h < p->npages && guard++ <= p->npages) {
            list_remove(s, &bh->partial[c], h);
            s->desc[h].own = 0;
            list_push(s, &p->cls[c].partial, h);
        }
        bh->partial[c] = NIL;
    }
}

/* The lowest free chunk of the partly used slab h of class c, marked in use
 * (lock held). NULL only on a broken pool: a partly used slab has a free
 * chunk. */
static inline char *slab_take(shk_slab_t *s, unsigned c, uint32_t h)
{
    pdesc_t *d = &s->desc[h];
    unsigned w = 0;
    while (d->bits[w] == ~0ULL)
        if (++w == MAX_CHUNKS / 64)
            return NULL;
    unsigned idx = w * 64 + (unsigned)__builtin_ctzll(~d->bits[w]);
    if (idx >= d->nchunks)
        return NULL;
    d->bits[w] |= 1ULL << (idx % 64);
    if (--d->nfree == 0)
        list_remove(s, partial_list(s, c, d->own), h);
    s->p->cls[c].used++;
    return page_addr(s, h) + (size_t)idx * s->csize[c];
}

/* A chunk of class c for a cache with owner own (0: no cache): from its own
 * slabs, then shared ones, then a new slab, then another cache's slabs. */
static void *alloc_chunk(shk_slab_t *s, unsigned c, uint32_t own)
{
    pool_t *p = s->p;
    cls_t *k = &p->cls[c];
    uint32_t *mine = partial_list(s, c, own), h = *mine;
    pdesc_t *d;

    if (h == NIL && own && (h = k->partial) != NIL)
        slab_adopt(s, h, own);
    if (h == NIL && (h = pages_alloc(s, k->pages, K_SLAB)) != NIL) {
        d = &s->desc[h];
        d->cls = (uint16_t)c;
        d->own = own;
        d->nchunks = (uint16_t)k->nchunks;
        d->nfree = (uint16_t)k->nchunks;
        memset(d->bits, 0, sizeof d->bits);
        for (uint32_t i = h; i < h + k->pages; i++)
            s->desc[i].cls = (uint16_t)c;
        list_push(s, mine, h);
        k->total += k->nchunks;
    }
    if (h == NIL && (h = slab_steal(s, c)) != NIL)
        slab_adopt(s, h, own);
    if (h == NIL)
        return NULL;
    return slab_take(s, c, h);
}

static void *alloc_once(shk_slab_t *s, size_t size, size_t *usable)
{
    pool_t *p = s->p;
    if (size <= MAX_SMALL) {
        unsigned c = class_of(size);
        void *r = alloc_chunk(s, c, 0);
        if (r) {
            p->cls[c].reqs++;
            *usable = p->cls[c].size;
        }
        return r;
    }
    uint64_t n = (size + s->ps - 1) / s->ps;
    if (n > p->npages)
        return NULL;
    uint32_t h = pages_alloc(s, (uint32_t)n, K_RUN);
    if (h == NIL)
        return NULL;
    p->run_reqs++;
    *usable = (size_t)n * s->ps;
    return page_addr(s, h);
}

static uint64_t cache_drain_locked(shk_slab_t *s);

static void *alloc_locked(shk_slab_t *s, size_t size, int zero)
{
    pool_t *p;
    size_t usable = 0;
    void *r;

    if (!s) {
        shk_error(SHK_EINVAL, "NULL slab");
        return NULL;
    }
    if (s->rdonly) {
        shk_error(SHK_EPERM, "slab pool \"%s\" is mapped read-only", s->p->name);
        return NULL;
    }
    p = s->p;
    if (!size)
        size = 1;
    r = alloc_once(s, size, &usable);
    /* Out of room: first what this process's cache holds. */
    if (!r && cache_drain_locked(s) > 0)
        r = alloc_once(s, size, &usable);
    for (int t = 0; !r && s->reclaim && t < RECLAIM_TRIES; t++) {
        if (s->reclaim(s, size, s->reclaim_ctx) <= 0)
            break;
        r = alloc_once(s, size, &usable);
    }
    if (!r) {
        p->fails++;
        if (size <= MAX_SMALL)
            p->cls[class_of(size)].fails++;
        if (!p->oom) {
            p->oom = 1;
            shk_log(SHK_LOG_ERR, "slab pool \"%s\": out of memory allocating %zu bytes (%llu of "
                                 "%u pages free)",
                    p->name, size, (unsigned long long)p->pages_free, p->npages);
        }
        shk_error(SHK_ENOMEM, "slab pool \"%s\": no room for %zu bytes", p->name, size);
        return NULL;
    }
    (void)usable;
    vg_on_alloc(s, r, size, zero);
    if (zero)
        memset(r, 0, size);
    return r;
}

void *shk_slab_alloc_locked(shk_slab_t *s, size_t size)
{
    return alloc_locked(s, size, 0);
}

void *shk_slab_calloc_locked(shk_slab_t *s, size_t size)
{
    return alloc_locked(s, size, 1);
}


/* The slab at h has just had a chunk back: on its first free chunk it joins
 * a partly-used list, on its last it goes back to the pages (lock held). */
static void slab_relist(shk_slab_t *s, uint32_t h)
{
    pdesc_t *d = &s->desc[h];
    if (d->nfree == 1)
        list_push(s, partial_list(s, d->cls, slab_owner(s, d)), h);
    if (d->nfree == d->nchunks) {
        list_remove(s, partial_list(s, d->cls, d->own), h);
        s->p->cls[d->cls].total -= d->nchunks;
        pages_free(s, h, d->npages);
    }
}

/* Give chunk idx of the slab at h back to its slab (lock held). */
static inline void chunk_release(shk_slab_t *s, uint32_t h, uint32_t idx)
{
    pdesc_t *d = &s->desc[h];
    d->bits[idx / 64] &= ~(1ULL << (idx % 64));
    s->p->cls[d->cls].used--;
    if (SHK_UNLIKELY(++d->nfree == 1 || d->nfree == d->nchunks))
        slab_relist(s, h);
}

/* Is pool offset off the start of a chunk of class c (NCLASS: of any
 * class) marked in use? Lock held. Fills the slab's head page and the
 * chunk's index; -1 when not (the caller reports, or takes the path that
 * does). */
static inline int chunk_at(const shk_slab_t *s, uint64_t off, unsigned c, uint32_t *hp,
                           uint32_t *ip)
{
    const pool_t *p = s->p;
    if (off < p->pages_off || off >= p->pages_off + (uint64_t)p->npages * s->ps)
        return -1;
    uint64_t rel = off - p->pages_off;
    uint32_t q = (uint32_t)(rel >> s->pshift);
    const pdesc_t *d = &s->desc[q];
    if (d->kind != K_SLAB || d->head > q || d->head >= p->npages)
        return -1;
    uint32_t h = d->head;
    const pdesc_t *hd = &s->desc[h];
    uint64_t in = rel - ((uint64_t)h << s->pshift);
    if (hd->kind != K_SLAB || hd->cls >= NCLASS || (c != NCLASS && hd->cls != c))
        return -1;
    uint32_t idx = chunk_index(s, hd->cls, in);
    if (idx == NIL || idx >= hd->nchunks)
        return -1;
    if (!((hd->bits[idx / 64] >> (idx % 64)) & 1))
        return -1;
    *hp = h;
    *ip = idx;
    return 0;
}

static inline uint64_t cookie_of(const shk_slab_t *s, uint64_t off)
{
    return s->cookie ^ (off * 0x9e3779b97f4a7c15ULL);
}

/* Read a chunk's first 8 bytes without disturbing memcheck's view of them.
 * 0: unreadable in this process's view (a block this process freed). */
static int peek_word(const void *c, uint64_t *v)
{
#if SHK_VG
    if (RUNNING_ON_VALGRIND) {
        unsigned char vb[8];
        if (VALGRIND_GET_VBITS(c, vb, 8) != 1)
            return 0;
        VALGRIND_MAKE_MEM_DEFINED(c, 8);
        memcpy(v, c, 8);
        VALGRIND_SET_VBITS(c, vb, 8);
        return 1;
    }
#endif
    memcpy(v, c, 8);
    return 1;
}

static inline mag_t *mag_at(const shk_slab_t *s, char *body, unsigned c)
{
    return (mag_t *)(body + s->cmat[c]);
}

/* A cache body other processes write: under valgrind this process may hold
 * it as freed memory of its own (a block once lay there), so it is made
 * defined before it is read. */
static char *body_of(const shk_slab_t *s, uint32_t page)
{
    char *b = page_addr(s, page);
#if SHK_VG
    if (RUNNING_ON_VALGRIND)
        VALGRIND_MAKE_MEM_DEFINED(b, (size_t)s->p->mag_pages * s->ps);
#endif
    return b;
}

/* Is the chunk at pool offset off, of class c, parked in a process cache?
 * Lock held. The tag in its first bytes says "maybe" cheaply; the
 * magazines of every cache say for sure. */
static int is_parked(const shk_slab_t *s, uint64_t off, unsigned c)
{
    const pool_t *p = s->p;
    uint64_t v;
    if (!p->ncaches)
        return 0;
    if (peek_word(s->base + off, &v) && v != cookie_of(s, off))
        return 0;
    for (unsigned i = 0; i < NCACHE; i++) {
        uint32_t b = p->caches[i].body;
        if (b == NIL || b >= p->npages)
            continue;
        mag_t *m = mag_at(s, body_of(s, b), c);
        /* acquire: pairs with the owner's release when it pushed */
        uint32_t n = atomic_load_explicit(&m->n, memory_order_acquire);
        for (uint32_t j = 0; j < n && j < m->cap; j++)
            if (atomic_load_explicit(&m->e[j], memory_order_relaxed) == off)
                return 1;
    }
    return 0;
}

/* Find the block p would be; fills head page, and for chunks the index.
 * Returns SHK_OK or SHK_EINVAL with the reason. */
static int locate(const shk_slab_t *s, const void *ptr, uint32_t *headp, uint32_t *idxp)
{
    const char *c = ptr;
    const pool_t *p = s->p;
    if (c < s->pages || c >= s->pages + (size_t)p->npages * s->ps)
        return shk_error(SHK_EINVAL, "slab pool \"%s\": %p is not inside the pool", p->name, ptr);
    uint32_t q = (uint32_t)((size_t)(c - s->pages) >> s->pshift);
    const pdesc_t *d = &s->desc[q];
    if (d->kind == K_FREE)
        return shk_error(SHK_EINVAL, "slab pool \"%s\": %p is in a free page (double free?)",
                         p->name, ptr);
    if (d->kind == K_CACHE)
        return shk_error(SHK_EINVAL, "slab pool \"%s\": %p is in the pool's own cache pages",
                         p->name, ptr);
    uint32_t h = d->head;
    if (h > q || h >= p->npages || s->desc[h].kind != d->kind || q >= h + s->desc[h].npages)
        return shk_error(SHK_ECORRUPT, "slab pool \"%s\": page %u has a broken descriptor",
                         p->name, q);
    size_t off = (size_t)(c - page_addr(s, h));
    if (d->kind == K_RUN) {
        if (off)
            return shk_error(SHK_EINVAL, "slab pool \"%s\": %p is inside a block, not at its "
                                         "start",
                             p->name, ptr);
        *headp = h;
        return SHK_OK;
    }
    unsigned cl = s->desc[h].cls < NCLASS ? s->desc[h].cls : 0;
    uint32_t idx = chunk_index(s, cl, off);
    if (idx == NIL || idx >= s->desc[h].nchunks)
        return shk_error(SHK_EINVAL, "slab pool \"%s\": %p is inside a %u-byte block, not at its "
                                     "start",
                         p->name, ptr, s->csize[cl]);
    if (!(s->desc[h].bits[idx / 64] & (1ULL << (idx % 64))))
        return shk_error(SHK_EINVAL, "slab pool \"%s\": %p is already free (double free)",
                         p->name, ptr);
    if (is_parked(s, (uint64_t)(c - s->base), s->desc[h].cls))
        return shk_error(SHK_EINVAL, "slab pool \"%s\": %p is already free (double free; it "
                                     "waits in a process cache)",
                         p->name, ptr);
    *headp = h;
    *idxp = idx;
    return SHK_OK;
}

/* Free the chunk or run ptr; the handle and ptr are known to be usable, the
 * lock is held. Checks everything, and says what is wrong. */
static int free_slow(shk_slab_t *s, void *ptr)
{
    uint32_t h = 0, idx = 0;
    int rc = locate(s, ptr, &h, &idx);
    if (rc != SHK_OK) {
        shk_log(SHK_LOG_ERR, "%s", shk_last_errmsg());
        return rc;
    }
    pdesc_t *d = &s->desc[h];
    size_t len = d->kind == K_RUN ? (size_t)d->npages * s->ps : s->csize[d->cls];
    vg_before_free(ptr, len);
#ifdef SHK_DEBUG
    memset(ptr, JUNK, len);
#endif
    vg_on_free(s, ptr, len);
    if (d->kind == K_RUN)
        pages_free(s, h, d->npages);
    else
        chunk_release(s, h, idx);
    return SHK_OK;
}

/* shk_slab_free_locked once the handle and ptr are known to be usable. Most
 * frees are of a chunk while no process cache holds any: one validation
 * (chunk_at) does then; everything else, bad input included, goes the way
 * that says what is wrong. */
static inline int free_checked(shk_slab_t *s, void *ptr)
{
    uint32_t h, idx;
    if (SHK_UNLIKELY(s->p->ncaches) ||
        chunk_at(s, (uint64_t)((uintptr_t)ptr - (uintptr_t)s->base), NCLASS, &h, &idx) != 0)
        return free_slow(s, ptr);
    size_t len = s->csize[s->desc[h].cls];
    vg_before_free(ptr, len);
#ifdef SHK_DEBUG
    memset(ptr, JUNK, len);
#endif
    vg_on_free(s, ptr, len);
    chunk_release(s, h, idx);
    return SHK_OK;
}

/* The checks both frees start with: 1 when ptr is to be freed, SHK_OK for
 * NULL (nothing to do), or the error. */
static inline int free_wanted(const shk_slab_t *s, const void *ptr)
{
    if (!s)
        return shk_error(SHK_EINVAL, "NULL slab");
    if (!ptr)
        return SHK_OK;
    if (s->rdonly)
        return shk_error(SHK_EPERM, "slab pool \"%s\" is mapped read-only", s->p->name);
    return 1;
}

int shk_slab_free_locked(shk_slab_t *s, void *ptr)
{
    int rc = free_wanted(s, ptr);
    return rc == 1 ? free_checked(s, ptr) : rc;
}

/* ---- process caches -------------------------------------------------------------------
 *
 * With shk_slab_cache(slab, 1) a process keeps, per size class, a magazine
 * of free chunks in a body inside the pool (a K_CACHE run named by a slot
 * in the header), and serves shk_slab_alloc/free from it without the lock;
 * the lock is taken only to refill or spill half a magazine. Because the
 * body lives in the pool, the chunks of a process that died can be given
 * back (shk_slab_reap). Parked chunks stay marked in use in their slab's
 * bitmap and carry a tag (cookie_of) in their first 8 bytes, so freeing one
 * again is caught (is_parked).
 *
 * Only the owner (process and thread that claimed the slot) changes its
 * magazines, so they need no lock; it publishes a push with a release store
 * of the count, which is what readers under the lock (check, stats,
 * is_parked) pair with. Every change keeps "entries [0, n) are parked" true
 * at each store, in the order that turns a death at any point into at most
 * one leaked chunk, never a chunk both parked and in the pool.
 */

static inline int cache_mine(const shk_slab_t *s)
{
    return s->cbody && s->cpid == SHK_PID() && pthread_equal(s->cthr, pthread_self());
}

/* Give the top k parked chunks of m back to the pool (lock held). The count
 * drops before each chunk goes back: an owner dying here leaks that chunk
 * rather than leaving it both parked and free. Returns how many went back. */
static uint32_t mag_drain(shk_slab_t *s, mag_t *m, unsigned c, uint32_t k)
{
    /* acquire: pairs with the owner's release when it pushed (the owner is
     * this process, or dead, here) */
    uint32_t n = atomic_load_explicit(&m->n, memory_order_acquire), done = 0;
    if (n > m->cap)
        n = m->cap;
    while (done < k && n > 0) {
        uint64_t off = atomic_load_explicit(&m->e[n - 1], memory_order_relaxed);
        uint32_t h, idx;
        /* relaxed: readers of the count hold the lock, as we do */
        atomic_store_explicit(&m->n, --n, memory_order_relaxed);
        if (chunk_at(s, off, c, &h, &idx) == 0) {
            chunk_release(s, h, idx);
            done++;
        } else {
            shk_log(SHK_LOG_ERR, "slab pool \"%s\": a process cache holds offset %llu, not a "
                                 "used %u-byte chunk; dropped",
                    s->p->name, (unsigned long long)off, s->p->cls[c].size);
        }
    }
    return done;
}

/* Empty slot i's cache into the pool and free the slot (lock held; its
 * owner is this process or dead). Returns the chunks given back. */
static uint64_t slot_release(shk_slab_t *s, unsigned i)
{
    pool_t *p = s->p;
    cslot_t *sl = &p->caches[i];
    uint64_t moved = 0;
    if (sl->body != NIL && sl->body < p->npages && s->desc[sl->body].kind == K_CACHE) {
        char *body = body_of(s, sl->body);
        for (unsigned c = 0; c < NCLASS; c++) {
            mag_t *m = mag_at(s, body, c);
            moved += mag_drain(s, m, c, m->cap);
            p->cache_reqs[c] += atomic_load_explicit(&m->reqs, memory_order_relaxed);
        }
        slab_disown(s, i);
        pages_free(s, sl->body, p->mag_pages);
    }
    sl->body = NIL;
    if (p->ncaches)
        p->ncaches--;
    /* relaxed: the slot is read under the lock */
    atomic_store_explicit(&sl->pid, 0, memory_order_relaxed);
    return moved;
}

static int dead(pid_t pid)
{
    return kill(pid, 0) != 0 && errno == ESRCH;
}

/* Give this handle a cache in this process and thread. 0, or -1 when it
 * cannot have one (then every call takes the lock, as without a cache). */
static int cache_claim(shk_slab_t *s)
{
    pid_t me = SHK_PID();
    pool_t *p = s->p;
    int slot = -1, rc;
    uint32_t h = NIL;

    if (s->cfail == me || (s->cbody && s->cpid == me))
        return -1; /* failed before, or another thread owns this process's cache */
    s->cbody = NULL; /* inherited from a parent: that cache is the parent's */
    s->cslot = -1;
    rc = shk_slab_lock(s);
    if (rc != SHK_OK && rc != SHK_EOWNERDEAD)
        return -1;
    for (unsigned i = 0; i < NCACHE && slot < 0; i++)
        if (atomic_load_explicit(&p->caches[i].pid, memory_order_relaxed) == 0)
            slot = (int)i;
    /* A slot whose owner died without being reaped is taken over: its
     * chunks go back first. A slot of this pid is never taken: it is
     * another handle's here, or a dead predecessor's the master reaps. */
    for (unsigned i = 0; i < NCACHE && slot < 0; i++) {
        pid_t q = (pid_t)atomic_load_explicit(&p->caches[i].pid, memory_order_relaxed);
        if (q != me && dead(q)) {
            slot_release(s, i);
            slot = (int)i;
        }
    }
    if (slot >= 0)
        h = pages_alloc(s, p->mag_pages, K_CACHE);
    if (h != NIL) {
        char *body = page_addr(s, h);
#if SHK_VG
        if (RUNNING_ON_VALGRIND)
            VALGRIND_MAKE_MEM_UNDEFINED(body, (size_t)p->mag_pages * s->ps);
#endif
        memset(body, 0, (size_t)p->mag_pages * s->ps);
        for (unsigned c = 0; c < NCLASS; c++) {
            mag_at(s, body, c)->cap = p->cls[c].mcap;
            ((bhdr_t *)body)->partial[c] = NIL;
        }
        p->caches[slot].body = h;
        p->ncaches++;
        /* relaxed: the slot is read under the lock */
        atomic_store_explicit(&p->caches[slot].pid, (uint32_t)me, memory_order_relaxed);
    }
    shk_slab_unlock(s);
    if (h == NIL) {
        s->cfail = me;
        shk_log(SHK_LOG_WARN, "slab pool \"%s\": no room for a process cache (%s); process %ld "
                              "allocates under the lock",
                p->name, slot < 0 ? "all slots taken" : "no free pages", (long)me);
        return -1;
    }
    s->cbody = page_addr(s, h);
    s->cpid = me;
    s->cthr = pthread_self();
    s->cslot = slot;
    return 0;
}

/* Fill m up to half its capacity from the pool. Returns the count. The
 * chunks are taken under the lock and tagged after it (their memory is
 * cold): until they are pushed they are simply in use, as any block. */
static uint32_t mag_refill(shk_slab_t *s, unsigned c, mag_t *m)
{
    uint64_t got[MAG_MAX / 2];
    uint32_t n = atomic_load_explicit(&m->n, memory_order_relaxed), k = 0, want = m->cap / 2;
    int rc = shk_slab_lock(s);
    if (rc != SHK_OK && rc != SHK_EOWNERDEAD)
        return 0;
    while (n + k < want) {
        char *r = alloc_chunk(s, c, (uint32_t)s->cslot + 1);
        if (!r)
            break;
        got[k++] = (uint64_t)(r - s->base);
    }
    shk_slab_unlock(s);
    for (uint32_t i = 0; i < k; i++) {
        /* tagged like a freed chunk, so a stale pointer to it freed again
         * is caught here too */
        char *r = s->base + got[i];
        uint64_t tag = cookie_of(s, got[i]);
#if SHK_VG
        if (RUNNING_ON_VALGRIND)
            VALGRIND_MAKE_MEM_UNDEFINED(r, sizeof tag);
#endif
        memcpy(r, &tag, sizeof tag);
#if SHK_VG
        if (RUNNING_ON_VALGRIND)
            VALGRIND_MAKE_MEM_NOACCESS(r, s->csize[c]);
#endif
        atomic_store_explicit(&m->e[n], got[i], memory_order_relaxed);
        /* release: a reader of the new count sees the entry and its tag */
        atomic_store_explicit(&m->n, ++n, memory_order_release);
    }
    return n;
}

static void *cache_alloc(shk_slab_t *s, size_t size, int zero)
{
    unsigned c = class_of(size);
    mag_t *m = mag_at(s, s->cbody, c);
    /* relaxed: only this thread changes the count */
    uint32_t n = atomic_load_explicit(&m->n, memory_order_relaxed);
    if (!n && !(n = mag_refill(s, c, m)))
        return NULL;
    uint64_t off = atomic_load_explicit(&m->e[n - 1], memory_order_relaxed);
    /* relaxed: a reader that still counts the entry sees a chunk in use,
     * which it is either way */
    atomic_store_explicit(&m->n, n - 1, memory_order_relaxed);
    atomic_store_explicit(&m->reqs, atomic_load_explicit(&m->reqs, memory_order_relaxed) + 1,
                          memory_order_relaxed);
    char *r = s->base + off;
#if SHK_VG
    if (RUNNING_ON_VALGRIND)
        VALGRIND_MAKE_MEM_UNDEFINED(r, 8);
#endif
    memset(r, 0, 8); /* the tag goes: the chunk is no longer parked */
    vg_on_alloc(s, r, size, zero);
    if (zero)
        memset(r, 0, size);
    return r;
}

/* Spill half of a full magazine into the pool. Returns the new count. */
static uint32_t mag_spill(shk_slab_t *s, mag_t *m, unsigned c)
{
    int rc = shk_slab_lock(s);
    if (rc != SHK_OK && rc != SHK_EOWNERDEAD)
        return m->cap;
    mag_drain(s, m, c, m->cap / 2);
    shk_slab_unlock(s);
    return atomic_load_explicit(&m->n, memory_order_relaxed);
}

/* Park ptr in this process's cache: 1. 0 when it is not a chunk this
 * path can take for sure (the caller frees under the lock, which also
 * reports bad pointers and double frees precisely). The descriptor reads
 * are racy, but for a chunk in use the fields read cannot change. */
static int cache_free(shk_slab_t *s, void *ptr)
{
    char *c = ptr;
    uintptr_t rel = (uintptr_t)c - (uintptr_t)s->pages;
    if (rel >= s->pages_len)
        return 0;
    uint32_t q = (uint32_t)(rel >> s->pshift);
    const pdesc_t *d = &s->desc[q];
    if (PEEK(d->kind) != K_SLAB)
        return 0;
    uint32_t h = PEEK(d->head);
    if (h > q)
        return 0;
    const pdesc_t *hd = &s->desc[h];
    uint32_t cl = PEEK(hd->cls);
    uintptr_t in = rel - ((uintptr_t)h << s->pshift);
    if (cl >= NCLASS)
        return 0;
    uint32_t idx = chunk_index(s, cl, in);
    if (idx == NIL || idx >= PEEK(hd->nchunks) ||
        !((PEEK(hd->bits[idx / 64]) >> (idx % 64)) & 1))
        return 0;
    uint64_t boff = (uint64_t)((uintptr_t)c - (uintptr_t)s->base), w, tag = cookie_of(s, boff);
    if (!peek_word(c, &w) || w == tag)
        return 0; /* maybe parked already: the locked path looks */
    mag_t *m = mag_at(s, s->cbody, cl);
    uint32_t n = atomic_load_explicit(&m->n, memory_order_relaxed);
    if (n >= m->cap && (n = mag_spill(s, m, cl)) >= m->cap)
        return 0;
    size_t sz = s->csize[cl];
    vg_before_free(c, sz);
#ifdef SHK_DEBUG
    memset(c, JUNK, sz);
#endif
    memcpy(c, &tag, sizeof tag);
    vg_on_free(s, c, sz);
    atomic_store_explicit(&m->e[n], boff, memory_order_relaxed);
    /* release: a reader of the new count sees the entry (and the tag) */
    atomic_store_explicit(&m->n, n + 1, memory_order_release);
    return 1;
}

/* Give every chunk this handle's cache holds back to the pool (lock held). */
static uint64_t cache_drain_locked(shk_slab_t *s)
{
    uint64_t moved = 0;
    if (!cache_mine(s))
        return 0;
    for (unsigned c = 0; c < NCLASS; c++) {
        mag_t *m = mag_at(s, s->cbody, c);
        moved += mag_drain(s, m, c, m->cap);
    }
    return moved;
}

int shk_slab_cache(shk_slab_t *s, int on)
{
    int rc;
    if (!s)
        return shk_error(SHK_EINVAL, "NULL slab");
    if (s->rdonly)
        return shk_error(SHK_EPERM, "slab pool \"%s\" is mapped read-only", s->p->name);
    if (on) {
        s->cache_on = 1;
        s->cfail = 0;
        return SHK_OK;
    }
    s->cache_on = 0;
    if (!s->cbody || s->cpid != SHK_PID()) {
        s->cbody = NULL;
        return SHK_OK;
    }
    rc = shk_slab_lock(s);
    if (rc != SHK_OK && rc != SHK_EOWNERDEAD)
        return rc;
    if (s->cslot >= 0 && s->cslot < NCACHE &&
        atomic_load_explicit(&s->p->caches[s->cslot].pid, memory_order_relaxed) ==
            (uint32_t)s->cpid)
        slot_release(s, (unsigned)s->cslot);
    shk_slab_unlock(s);
    s->cbody = NULL;
    s->cslot = -1;
    return SHK_OK;
}

int shk_slab_flush(shk_slab_t *s)
{
    int rc;
    if (!s)
        return shk_error(SHK_EINVAL, "NULL slab");
    if (!cache_mine(s))
        return SHK_OK;
    rc = shk_slab_lock(s);
    if (rc != SHK_OK && rc != SHK_EOWNERDEAD)
        return rc;
    cache_drain_locked(s);
    shk_slab_unlock(s);
    return SHK_OK;
}

/* Does process pid own a cache slot? Read without the lock: a slot's pid
 * is written under the lock only by the claimer itself (its own pid) and
 * cleared when the slot is released. A dead process writes no more, its
 * pid cannot come back while its zombie is kept, and its last stores are
 * ordered before its death by the kernel's exit and wait. So "no slot of
 * pid", once seen, stays true. */
static int owns_slot(const shk_slab_t *s, pid_t pid)
{
    for (unsigned i = 0; i < NCACHE; i++)
        /* relaxed: see above */
        if (atomic_load_explicit(&s->p->caches[i].pid, memory_order_relaxed) == (uint32_t)pid)
            return 1;
    return 0;
}

int shk_slab_reap(shk_slab_t *s, pid_t pid)
{
    uint64_t moved = 0;
    int rc;
    if (!s)
        return shk_error(SHK_EINVAL, "NULL slab");
    if (pid <= 0 || pid == SHK_PID())
        return shk_error(SHK_EINVAL, "shk_slab_reap: pid %ld is not another process", (long)pid);
    if (s->rdonly)
        return shk_error(SHK_EPERM, "slab pool \"%s\" is mapped read-only", s->p->name);
    if (!owns_slot(s, pid))
        return 0;
    /* Bounded: the master calls this, and must not stall behind a live
     * worker that keeps the lock (it would stop reaping, respawning and
     * answering signals while that worker waits for its stop message). */
    rc = shk_shmtx_timedlock(&s->mtx, SHK_SLAB_REAP_WAIT_MS);
    if (rc == SHK_ETIMEDOUT)
        return shk_error(SHK_ETIMEDOUT,
                         "slab pool \"%s\": lock held by process %ld for %d ms; the cache of "
                         "dead process %ld is left for later",
                         s->p->name, (long)shk_shmtx_owner(&s->mtx), SHK_SLAB_REAP_WAIT_MS,
                         (long)pid);
    if (rc != SHK_OK && rc != SHK_EOWNERDEAD)
        return rc;
    for (unsigned i = 0; i < NCACHE; i++)
        if (atomic_load_explicit(&s->p->caches[i].pid, memory_order_relaxed) == (uint32_t)pid)
            moved += slot_release(s, i);
    shk_slab_unlock(s);
    return moved > INT32_MAX ? INT32_MAX : (int)moved;
}

/* shk_slab_alloc and shk_slab_calloc: the process cache when it serves,
 * else the pool under its lock. */
static void *alloc_any(shk_slab_t *s, size_t size, int zero)
{
    void *r;
    int rc;
    uint32_t h;
    unsigned c;
    if (SHK_UNLIKELY(!s || s->rdonly))
        return alloc_locked(s, size, zero); /* reports which, without the lock */
    if (s->cache_on && size <= MAX_SMALL && (cache_mine(s) || cache_claim(s) == 0) &&
        (r = cache_alloc(s, size ? size : 1, zero)))
        return r;
    rc = shk_shmtx_lock_fast(&s->mtx);
    if (rc != SHK_OK && rc != SHK_EOWNERDEAD)
        return NULL;
    /* The common case, a chunk from its class's first shared partly used
     * slab, without alloc_locked's layers; it does everything else. */
    if (size - 1 < MAX_SMALL && (h = s->p->cls[c = class_of(size)].partial) != NIL &&
        (r = slab_take(s, c, h))) {
        s->p->cls[c].reqs++;
        vg_on_alloc(s, r, size, zero);
        if (zero)
            memset(r, 0, size);
    } else {
        r = alloc_locked(s, size, zero);
    }
    shk_shmtx_unlock_fast(&s->mtx);
    return r;
}

void *shk_slab_alloc(shk_slab_t *s, size_t size)
{
    return alloc_any(s, size, 0);
}

void *shk_slab_calloc(shk_slab_t *s, size_t size)
{
    return alloc_any(s, size, 1);
}

int shk_slab_free(shk_slab_t *s, void *ptr)
{
    int rc = free_wanted(s, ptr);
    if (rc != 1)
        return rc;
    if (s->cache_on && (cache_mine(s) || cache_claim(s) == 0) && cache_free(s, ptr))
        return SHK_OK;
    rc = shk_shmtx_lock_fast(&s->mtx);
    if (rc != SHK_OK && rc != SHK_EOWNERDEAD)
        return rc;
    rc = free_checked(s, ptr);
    shk_shmtx_unlock_fast(&s->mtx);
    return rc;
}

/* ---- lock, offsets, reclaim ---------------------------------------------------------- */

int shk_slab_lock(shk_slab_t *s)
{
    if (!s)
        return shk_error(SHK_EINVAL, "NULL slab");
    if (s->rdonly)
        return shk_error(SHK_EPERM, "slab pool \"%s\" is mapped read-only", s->p->name);
    return shk_shmtx_lock_fast(&s->mtx);
}

void shk_slab_unlock(shk_slab_t *s)
{
    if (s && !s->rdonly)
        shk_shmtx_unlock_fast(&s->mtx);
}

shk_shmtx_t *shk_slab_mutex(shk_slab_t *s)
{
    return s ? &s->mtx : NULL;
}

uint64_t shk_slab_off(const shk_slab_t *s, const void *ptr)
{
    if (!s || !ptr)
        return 0;
    return (uint64_t)((const char *)ptr - s->base);
}

void *shk_slab_ptr(const shk_slab_t *s, uint64_t off)
{
    if (!s || !off || off >= s->p->size)
        return NULL;
#if SHK_VG
    /* A block another process allocated may lie where this process once
     * freed one (memcheck then thinks it inaccessible): when an offset is
     * turned into a pointer, the block it names is made defined here. */
    if (RUNNING_ON_VALGRIND) {
        size_t n = shk_slab_usable(s, s->base + off);
        if (n)
            VALGRIND_MAKE_MEM_DEFINED(s->base + off, n);
    }
#endif
    return s->base + off;
}

void *shk_slab_base(const shk_slab_t *s)
{
    return s ? s->base : NULL;
}

size_t shk_slab_size(const shk_slab_t *s)
{
    return s ? (size_t)s->p->size : 0;
}

size_t shk_slab_usable(const shk_slab_t *s, const void *ptr)
{
    const char *c = ptr;
    if (!s || c < s->pages || c >= s->pages + (size_t)s->p->npages * s->ps)
        return 0;
    uint32_t q = (uint32_t)((size_t)(c - s->pages) >> s->pshift);
    const pdesc_t *d = &s->desc[q];
    uint32_t h = d->head;
    if (d->kind == K_FREE || h > q || h >= s->p->npages)
        return 0;
    size_t off = (size_t)(c - page_addr(s, h));
    if (d->kind == K_RUN)
        return off ? 0 : (size_t)s->desc[h].npages * s->ps;
    if (d->kind == K_SLAB && s->desc[h].cls < NCLASS) {
        uint32_t sz = s->p->cls[s->desc[h].cls].size;
        return off % sz ? 0 : sz;
    }
    return 0;
}

void shk_slab_set_reclaim(shk_slab_t *s, shk_slab_reclaim_t fn, void *ctx)
{
    if (!s)
        return;
    s->reclaim = fn;
    s->reclaim_ctx = ctx;
}

/* ---- stats and check ------------------------------------------------------------------ */

static size_t largest_run(const shk_slab_t *s)
{
    const pool_t *p = s->p;
    size_t best = 0;
    if (p->nonempty & (1ULL << (NLISTS - 1))) {
        for (uint32_t i = p->free_head[NLISTS - 1], g = 0; i != NIL && g <= p->npages;
             i = s->desc[i].next, g++)
            if (s->desc[i].npages > best)
                best = s->desc[i].npages;
        return best;
    }
    if (p->nonempty)
        best = 64 - (size_t)__builtin_clzll(p->nonempty);
    return best;
}

int shk_slab_stats(shk_slab_t *s, shk_slab_stats_t *st)
{
    const pool_t *p;
    int locked = 0;
    if (!s || !st)
        return shk_error(SHK_EINVAL, "NULL argument");
    if (!s->rdonly) {
        int rc = shk_slab_lock(s);
        if (rc != SHK_OK && rc != SHK_EOWNERDEAD)
            return rc;
        locked = 1;
    }
    p = s->p;
    memset(st, 0, sizeof *st);
    st->page_size = s->ps;
    st->pages_total = p->npages;
    st->pages_free = (size_t)p->pages_free;
    st->largest_free_run = largest_run(s);
    st->fails = p->fails;
    st->run_reqs = p->run_reqs;
    st->nclasses = NCLASS;
    st->caches = p->ncaches;
    st->cache_pages = p->mag_pages;
    for (unsigned c = 0; c < NCLASS; c++) {
        st->cls[c].size = p->cls[c].size;
        st->cls[c].total = p->cls[c].total;
        st->cls[c].used = p->cls[c].used;
        st->cls[c].reqs = p->cls[c].reqs + p->cache_reqs[c];
        st->cls[c].fails = p->cls[c].fails;
    }
    /* Parked chunks, counted from the magazines: exact when their owners
     * are idle, a snapshot otherwise. */
    for (unsigned i = 0; i < NCACHE && p->ncaches; i++) {
        uint32_t b = p->caches[i].body;
        if (b == NIL || b >= p->npages)
            continue;
        char *body = body_of(s, b);
        for (unsigned c = 0; c < NCLASS; c++) {
            mag_t *m = mag_at(s, body, c);
            /* acquire: pairs with the owner's release when it pushed */
            uint32_t n = atomic_load_explicit(&m->n, memory_order_acquire);
            st->cls[c].cached += n < m->cap ? n : m->cap;
            st->cls[c].reqs += atomic_load_explicit(&m->reqs, memory_order_relaxed);
        }
    }
    for (unsigned c = 0; c < NCLASS; c++)
        st->cls[c].used = st->cls[c].used > st->cls[c].cached
                              ? st->cls[c].used - st->cls[c].cached
                              : 0;
    if (locked)
        shk_slab_unlock(s);
    return SHK_OK;
}

#define BROKEN(...) shk_error(SHK_ECORRUPT, __VA_ARGS__)

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* The process caches: slots, bodies, and every parked entry. Entries of a
 * live owner's cache are checked one by one (it changes them as we read);
 * those of this process and of dead owners also for their tags and for
 * duplicates. */
static int check_caches(const shk_slab_t *s, uint32_t cache_runs)
{
    const pool_t *p = s->p;
    uint32_t active = 0;
    uint64_t *seen = NULL;
    size_t nseen = 0, cap = 0;
    int rc = SHK_OK;
    pid_t me = SHK_PID();

    for (unsigned i = 0; i < NCACHE && rc == SHK_OK; i++) {
        const cslot_t *sl = &p->caches[i];
        pid_t pid = (pid_t)atomic_load_explicit(&sl->pid, memory_order_relaxed);
        if (!pid) {
            if (sl->body != NIL)
                rc = BROKEN("slab pool \"%s\": free cache slot %u names pages at %u", p->name, i,
                            sl->body);
            continue;
        }
        active++;
        if (sl->body >= p->npages || s->desc[sl->body].kind != K_CACHE ||
            s->desc[sl->body].head != sl->body) {
            rc = BROKEN("slab pool \"%s\": cache slot %u (process %ld) names page %u, not cache "
                        "pages",
                        p->name, i, (long)pid, sl->body);
            break;
        }
        for (unsigned j = 0; j < i; j++)
            if (atomic_load_explicit(&p->caches[j].pid, memory_order_relaxed) &&
                p->caches[j].body == sl->body)
                rc = BROKEN("slab pool \"%s\": cache slots %u and %u share pages at %u", p->name,
                            j, i, sl->body);
        int quiet = pid == me || dead(pid);
        char *body = body_of(s, sl->body);
        for (unsigned c = 0; c < NCLASS && rc == SHK_OK; c++) {
            mag_t *m = mag_at(s, body, c);
            /* acquire: pairs with the owner's release when it pushed */
            uint32_t n = atomic_load_explicit(&m->n, memory_order_acquire);
            if (m->cap != p->cls[c].mcap || n > m->cap) {
                rc = BROKEN("slab pool \"%s\": cache of process %ld: class %u magazine holds "
                            "%u of %u",
                            p->name, (long)pid, p->cls[c].size, n, m->cap);
                break;
            }
            for (uint32_t k = 0; k < n; k++) {
                uint64_t off = atomic_load_explicit(&m->e[k], memory_order_relaxed), w;
                uint32_t h, idx;
                if (chunk_at(s, off, c, &h, &idx) != 0) {
                    rc = BROKEN("slab pool \"%s\": cache of process %ld holds offset %llu, not "
                                "a used %u-byte chunk",
                                p->name, (long)pid, (unsigned long long)off, p->cls[c].size);
                    break;
                }
                if (!quiet)
                    continue;
                if (peek_word(s->base + off, &w) && w != cookie_of(s, off)) {
                    rc = BROKEN("slab pool \"%s\": %u-byte chunk at offset %llu was written "
                                "after it was freed (it waits in the cache of process %ld)",
                                p->name, p->cls[c].size, (unsigned long long)off, (long)pid);
                    break;
                }
                if (nseen == cap) {
                    size_t nc = cap ? cap * 2 : 1024;
                    uint64_t *ns = realloc(seen, nc * sizeof *ns);
                    if (!ns) {
                        free(seen);
                        return shk_error(SHK_ENOMEM, "out of memory");
                    }
                    seen = ns;
                    cap = nc;
                }
                seen[nseen++] = off;
            }
        }
    }
    if (rc == SHK_OK && nseen) {
        qsort(seen, nseen, sizeof *seen, cmp_u64);
        for (size_t k = 1; k < nseen && rc == SHK_OK; k++)
            if (seen[k] == seen[k - 1])
                rc = BROKEN("slab pool \"%s\": chunk at offset %llu is parked twice (double "
                            "free)",
                            p->name, (unsigned long long)seen[k]);
    }
    free(seen);
    if (rc == SHK_OK && (active != p->ncaches || cache_runs != active))
        rc = BROKEN("slab pool \"%s\": %u cache slots in use, the header counts %u, %u runs "
                    "of cache pages",
                    p->name, active, p->ncaches, cache_runs);
    return rc;
}

int shk_slab_check_locked(shk_slab_t *s)
{
    const pool_t *p;
    uint64_t free_pages = 0, listed_free = 0;
    uint64_t used[NCLASS] = {0}, total[NCLASS] = {0}, partial_seen[NCLASS] = {0};
    uint64_t want_partial[NCLASS] = {0};
    uint32_t cache_runs = 0;
    int rc;

    if (!s)
        return shk_error(SHK_EINVAL, "NULL slab");
    p = s->p;
    if (atomic_load_explicit((const _Atomic uint64_t *)&p->magic, memory_order_relaxed) !=
        SLAB_MAGIC)
        return BROKEN("slab pool: bad magic");
    /* Walk the pages run by run. */
    for (uint32_t i = 0; i < p->npages;) {
        const pdesc_t *d = &s->desc[i];
        uint32_t n = d->npages;
        if (d->head != i)
            return BROKEN("slab pool \"%s\": page %u starts a run but its head is %u", p->name, i,
                          d->head);
        if (n == 0 || n > p->npages - i)
            return BROKEN("slab pool \"%s\": run at page %u has length %u", p->name, i, n);
        if (d->kind != K_FREE && d->kind != K_SLAB && d->kind != K_RUN && d->kind != K_CACHE)
            return BROKEN("slab pool \"%s\": page %u has unknown kind %u", p->name, i, d->kind);
        for (uint32_t j = i; j < i + n; j++) {
            if (s->desc[j].kind != d->kind)
                return BROKEN("slab pool \"%s\": page %u is of kind %u inside a run of kind %u "
                              "starting at %u",
                              p->name, j, s->desc[j].kind, d->kind, i);
            if (d->kind != K_FREE && s->desc[j].head != i)
                return BROKEN("slab pool \"%s\": page %u points to head %u, not %u", p->name, j,
                              s->desc[j].head, i);
        }
        if (d->kind == K_FREE) {
            if (s->desc[i + n - 1].head != i)
                return BROKEN("slab pool \"%s\": free run at %u: last page points to %u",
                              p->name, i, s->desc[i + n - 1].head);
            if (i + n < p->npages && s->desc[i + n].kind == K_FREE)
                return BROKEN("slab pool \"%s\": free runs at %u and %u are not merged", p->name,
                              i, i + n);
            free_pages += n;
        } else if (d->kind == K_CACHE) {
            if (n != p->mag_pages)
                return BROKEN("slab pool \"%s\": cache pages at %u are %u long, not %u", p->name,
                              i, n, p->mag_pages);
            cache_runs++;
        } else if (d->kind == K_SLAB) {
            if (d->cls >= NCLASS)
                return BROKEN("slab pool \"%s\": slab at page %u has class %u", p->name, i,
                              d->cls);
            if (d->own > NCACHE)
                return BROKEN("slab pool \"%s\": slab at page %u names owner %u", p->name, i,
                              d->own);
            const cls_t *k = &p->cls[d->cls];
            if (n != k->pages || d->nchunks != k->nchunks)
                return BROKEN("slab pool \"%s\": slab at page %u has %u pages/%u chunks, class "
                              "%u wants %u/%u",
                              p->name, i, n, d->nchunks, k->size, k->pages, k->nchunks);
            uint32_t inuse = 0;
            for (uint32_t c = 0; c < d->nchunks; c++)
                inuse += (d->bits[c / 64] >> (c % 64)) & 1;
            for (uint32_t c = d->nchunks; c < MAX_CHUNKS; c++)
                if ((d->bits[c / 64] >> (c % 64)) & 1)
                    return BROKEN("slab pool \"%s\": slab at page %u marks chunk %u beyond its "
                                  "%u chunks",
                                  p->name, i, c, d->nchunks);
            if (inuse + d->nfree != d->nchunks)
                return BROKEN("slab pool \"%s\": slab at page %u counts %u free but its bitmap "
                              "has %u used of %u",
                              p->name, i, d->nfree, inuse, d->nchunks);
            if (inuse == 0)
                return BROKEN("slab pool \"%s\": slab at page %u is empty but not released",
                              p->name, i);
            used[d->cls] += inuse;
            total[d->cls] += d->nchunks;
            if (d->nfree)
                want_partial[d->cls]++;
        }
        i += n;
    }
    if (free_pages != p->pages_free)
        return BROKEN("slab pool \"%s\": %llu pages are free but the counter says %llu", p->name,
                      (unsigned long long)free_pages, (unsigned long long)p->pages_free);
    /* Free lists: every entry a free run of the list's length, links sound. */
    for (unsigned li = 0; li < NLISTS; li++) {
        uint32_t prev = NIL, g = 0;
        if (((p->nonempty >> li) & 1) != (p->free_head[li] != NIL))
            return BROKEN("slab pool \"%s\": free list %u and its bit disagree", p->name, li);
        for (uint32_t i = p->free_head[li]; i != NIL; i = s->desc[i].next) {
            if (i >= p->npages || ++g > p->npages)
                return BROKEN("slab pool \"%s\": free list %u is broken", p->name, li);
            const pdesc_t *d = &s->desc[i];
            if (d->kind != K_FREE || d->head != i || list_of(d->npages) != li)
                return BROKEN("slab pool \"%s\": free list %u holds page %u, which is not a "
                              "free run of that length",
                              p->name, li, i);
            if (d->prev != prev)
                return BROKEN("slab pool \"%s\": free list %u: back link of %u is wrong",
                              p->name, li, i);
            listed_free += d->npages;
            prev = i;
        }
    }
    if (listed_free != free_pages)
        return BROKEN("slab pool \"%s\": free lists hold %llu pages, %llu are free", p->name,
                      (unsigned long long)listed_free, (unsigned long long)free_pages);
    for (unsigned c = 0; c < NCLASS; c++) {
        const cls_t *k = &p->cls[c];
        /* the shared list (own 0), then each cache's list (own slot + 1) */
        for (uint32_t own = 0; own <= NCACHE; own++) {
            uint32_t prev = NIL, g = 0, head;
            if (own == 0) {
                head = k->partial;
            } else {
                uint32_t b = p->caches[own - 1].body;
                if (b == NIL)
                    continue;
                if (b >= p->npages || s->desc[b].kind != K_CACHE || s->desc[b].head != b)
                    return BROKEN("slab pool \"%s\": cache slot %u names page %u, not a cache "
                                  "body",
                                  p->name, own - 1, b);
                head = bhdr_of(s, b)->partial[c];
            }
            for (uint32_t i = head; i != NIL; i = s->desc[i].next) {
                if (i >= p->npages || ++g > p->npages)
                    return BROKEN("slab pool \"%s\": partial list of class %u (owner %u) is "
                                  "broken",
                                  p->name, k->size, own);
                const pdesc_t *d = &s->desc[i];
                if (d->kind != K_SLAB || d->head != i || d->cls != c || d->nfree == 0)
                    return BROKEN("slab pool \"%s\": partial list of class %u (owner %u) holds "
                                  "page %u, which is not a partly used slab of that class",
                                  p->name, k->size, own, i);
                if (d->own != own)
                    return BROKEN("slab pool \"%s\": slab at page %u is on the list of owner "
                                  "%u but names owner %u",
                                  p->name, i, own, d->own);
                if (d->prev != prev)
                    return BROKEN("slab pool \"%s\": partial list of class %u (owner %u): back "
                                  "link of %u is wrong",
                                  p->name, k->size, own, i);
                partial_seen[c]++;
                prev = i;
            }
        }
        if (partial_seen[c] != want_partial[c])
            return BROKEN("slab pool \"%s\": class %u has %llu slabs with free chunks, %llu on "
                          "its list",
                          p->name, k->size, (unsigned long long)want_partial[c],
                          (unsigned long long)partial_seen[c]);
        if (used[c] != k->used || total[c] != k->total)
            return BROKEN("slab pool \"%s\": class %u counts %llu/%llu chunks used/total, the "
                          "slabs hold %llu/%llu",
                          p->name, k->size, (unsigned long long)k->used,
                          (unsigned long long)k->total, (unsigned long long)used[c],
                          (unsigned long long)total[c]);
    }
    if ((rc = check_caches(s, cache_runs)) != SHK_OK)
        return rc;
    return SHK_OK;
}

int shk_slab_check(shk_slab_t *s)
{
    int rc;
    if (!s)
        return shk_error(SHK_EINVAL, "NULL slab");
    if (s->rdonly)
        return shk_slab_check_locked(s);
    rc = shk_slab_lock(s);
    if (rc != SHK_OK && rc != SHK_EOWNERDEAD)
        return rc;
    rc = shk_slab_check_locked(s);
    shk_slab_unlock(s);
    return rc;
}
