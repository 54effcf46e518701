/*
 * shk_slab_pool.c: the pool itself, under its lock: the layout of a new
 * pool (size classes, descriptors), free page runs indexed by length and
 * merged with their neighbours, chunk slabs and the lists they are on
 * (shared, or a process cache's own), allocation when the fast path cannot
 * serve (new slabs, page runs, reclaim, out of memory), locate and the
 * checked free that says what is wrong with a bad pointer, and the lock.
 *
 * A partly used slab is on one list: its class's shared list (own == 0), or
 * the list of the process cache that refills from it (own == slot + 1, the
 * list in that cache's body). A cache refills from its own slabs first, so
 * processes with caches mostly keep to slabs of their own and do not pull
 * each other's descriptor and chunk cache lines. A full slab keeps its
 * `own` as a hint; it is checked against the slot when the slab has room
 * again. Releasing a cache moves its slabs to the shared lists.
 *
 * Every function here runs with the lock held, or on a pool no other
 * process sees yet (shk_slab_format). Stores to shared fields are relaxed
 * (SHK_WRITE_ONCE, SHK_ADD_SOLE): the lock's release publishes them to the
 * next holder, and lock-free readers only take them as a snapshot.
 */
#include "shk_slab_internal.h"

#include <stdlib.h>
#include <sys/random.h>
#include <time.h>

/* ---- size classes and the layout ------------------------------------------- */

uint32_t shk_slab_class_size(unsigned idx)
{
    if (idx < 8)
        return (idx + 1) * 16;
    unsigned k = idx - 8, b = 7 + k / 4;
    return (1u << b) + ((k % 4) + 1) * (1u << (b - 2));
}

void shk_slab_bind(shk_slab_t *s)
{
    const slab_pool_t *p = s->p;
    s->npages = p->npages;
    s->mag_pages = p->mag_pages;
    s->pages_off = p->pages_off;
    s->desc = (slab_desc_t *)(s->base + p->desc_off);
    s->pages = s->base + s->pages_off;
    s->pshift = (unsigned)__builtin_ctzll((unsigned long long)s->ps);
    s->pages_len = (size_t)s->npages * s->ps;
    s->cookie = p->cookie;
    s->cslot = -1;
    for (unsigned c = 0; c < SLAB_NCLASS; c++) {
        /* shk_slab_open checks the header's sizes against these */
        s->csize[c] = shk_slab_class_size(c);
        /* ceil(2^32 / size): (off * crecip) >> 32 == off / size exactly for
         * every offset inside a slab (off < 2^21 <= 2^32 / size). */
        s->crecip[c] = (uint32_t)((((uint64_t)1 << 32) + s->csize[c] - 1) / s->csize[c]);
        s->cmat[c] = p->cls[c].mat;
        s->cmcap[c] = p->cls[c].mcap;
    }
}

static void run_insert(shk_slab_t *s, uint32_t start, uint32_t n);

/* The pool's tag cookie: random, never 0 (so a zeroed chunk never looks
 * parked). */
static uint64_t new_cookie(void)
{
    uint64_t v = 0;
    if (getrandom(&v, sizeof v, GRND_NONBLOCK) != (ssize_t)sizeof v) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        v = ((uint64_t)ts.tv_nsec << 32) ^ (uint64_t)ts.tv_sec ^ ((uint64_t)SHK_PID() << 17);
    }
    return v | 1;
}

void shk_slab_format(shk_slab_t *s, size_t size, uint32_t npages, const char *name)
{
    size_t ps = s->ps, hdr = SHK_ALIGN_UP(sizeof(slab_pool_t), ps);
    slab_pool_t *p = s->p;
    uint32_t body = SLAB_BHDR_BYTES;

    memset(p, 0, sizeof *p);
    p->version = SLAB_VERSION;
    p->hdr_size = sizeof *p;
    p->size = size;
    p->page_size = ps;
    p->desc_off = hdr;
    p->pages_off = hdr + SHK_ALIGN_UP((size_t)npages * sizeof(slab_desc_t), ps);
    p->npages = npages;
    p->nclasses = SLAB_NCLASS;
    strcpy(p->name, name);
    for (unsigned i = 0; i < SLAB_NLISTS; i++)
        SHK_WRITE_ONCE(p->free_head[i], SLAB_NIL);
    for (unsigned c = 0; c < SLAB_NCLASS; c++) {
        slab_class_t *k = &p->cls[c];
        uint32_t best = 1;
        size_t best_waste = SIZE_MAX;
        k->size = shk_slab_class_size(c);
        for (uint32_t pg = 1; pg <= SLAB_MAX_SLAB_PAGES; pg++) {
            size_t n = (size_t)pg * ps / k->size;
            if (n > SLAB_MAX_CHUNKS)
                n = SLAB_MAX_CHUNKS;
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
        k->nchunks = (uint32_t)((size_t)best * ps / k->size > SLAB_MAX_CHUNKS
                                    ? SLAB_MAX_CHUNKS
                                    : (size_t)best * ps / k->size);
        SHK_WRITE_ONCE(k->partial, SLAB_NIL);
        k->mcap = SLAB_MAG_BYTES / k->size;
        if (k->mcap < SLAB_MAG_MIN)
            k->mcap = SLAB_MAG_MIN;
        if (k->mcap > SLAB_MAG_MAX)
            k->mcap = SLAB_MAG_MAX;
        k->mat = body;
        body += (uint32_t)(sizeof(slab_mag_t) + k->mcap * sizeof(uint64_t));
    }
    p->mag_pages = (uint32_t)((body + ps - 1) / ps);
    p->cookie = new_cookie();
    for (unsigned i = 0; i < SLAB_NCACHE; i++)
        SHK_WRITE_ONCE(p->caches[i].body, SLAB_NIL);
    shk_shmtx_sh_init(&p->lock);
    shk_slab_bind(s);
    memset(s->desc, 0, (size_t)npages * sizeof(slab_desc_t));
    for (uint32_t i = 0; i < npages; i++)
        SHK_WRITE_ONCE(s->desc[i].kind, SLAB_K_FREE);
    run_insert(s, 0, npages);
    SHK_WRITE_ONCE(p->pages_free, npages);
}

/* ---- lists and page runs ----------------------------------------------------- */

static inline unsigned list_of(uint32_t n)
{
    return n < SLAB_NLISTS ? n - 1 : SLAB_NLISTS - 1;
}

/* Insert the free run [start, start+n): mark its ends and index it. */
static void run_insert(shk_slab_t *s, uint32_t start, uint32_t n)
{
    slab_pool_t *p = s->p;
    unsigned li = list_of(n);
    slab_desc_t *h = &s->desc[start], *last = &s->desc[start + n - 1];
    SHK_WRITE_ONCE(h->kind, SLAB_K_FREE);
    SHK_WRITE_ONCE(h->npages, n);
    SHK_WRITE_ONCE(h->head, start);
    SHK_WRITE_ONCE(last->kind, SLAB_K_FREE);
    SHK_WRITE_ONCE(last->head, start);
    shk_slab_list_push(s, &p->free_head[li], start);
    SHK_WRITE_ONCE(p->nonempty, SHK_READ_ONCE(p->nonempty) | 1ULL << li);
}

static void run_unlink(shk_slab_t *s, uint32_t start)
{
    slab_pool_t *p = s->p;
    unsigned li = list_of(SHK_READ_ONCE(s->desc[start].npages));
    shk_slab_list_remove(s, &p->free_head[li], start);
    if (SHK_READ_ONCE(p->free_head[li]) == SLAB_NIL)
        SHK_WRITE_ONCE(p->nonempty, SHK_READ_ONCE(p->nonempty) & ~(1ULL << li));
}

uint32_t shk_slab_pages_alloc(shk_slab_t *s, uint32_t n, uint32_t kind)
{
    slab_pool_t *p = s->p;
    unsigned li = list_of(n);
    uint64_t mask = SHK_READ_ONCE(p->nonempty) & (~0ULL << li);
    uint32_t start = SLAB_NIL, len = 0;

    if (mask) {
        unsigned j = (unsigned)__builtin_ctzll(mask);
        if (j < SLAB_NLISTS - 1) {
            start = SHK_READ_ONCE(p->free_head[j]);
            len = j + 1;
        } else {
            /* Runs of 64 pages or more: best fit. Only long runs are on
             * this list, so it is short compared with the pool. */
            for (uint32_t i = SHK_READ_ONCE(p->free_head[j]), guard = 0;
                 i != SLAB_NIL && guard <= s->npages; i = SHK_READ_ONCE(s->desc[i].next), guard++) {
                uint32_t in = SHK_READ_ONCE(s->desc[i].npages);
                if (in >= n && (start == SLAB_NIL || in < len)) {
                    start = i;
                    len = in;
                    if (len == n)
                        break;
                }
            }
        }
    }
    if (start == SLAB_NIL)
        return SLAB_NIL;
    run_unlink(s, start);
    if (len > n)
        run_insert(s, start + n, len - n);
    for (uint32_t i = start; i < start + n; i++) {
        SHK_WRITE_ONCE(s->desc[i].kind, (uint16_t)kind);
        SHK_WRITE_ONCE(s->desc[i].head, start);
    }
    SHK_WRITE_ONCE(s->desc[start].npages, n);
    SHK_WRITE_ONCE(s->desc[start].next, SLAB_NIL);
    SHK_WRITE_ONCE(s->desc[start].prev, SLAB_NIL);
    SHK_ADD_SOLE(p->pages_free, -(uint64_t)n);
    return start;
}

void shk_slab_pages_free(shk_slab_t *s, uint32_t start, uint32_t n)
{
    slab_pool_t *p = s->p;
    for (uint32_t i = start; i < start + n; i++) {
        SHK_WRITE_ONCE(s->desc[i].kind, SLAB_K_FREE);
        SHK_WRITE_ONCE(s->desc[i].head, start);
    }
    uint64_t pf = SHK_READ_ONCE(p->pages_free) + n;
    SHK_WRITE_ONCE(p->pages_free, pf);
    /* An out-of-memory episode ends when a sixty-fourth of the pool is free
     * again: failures while it hovers near full log nothing more. */
    if (p->oom && pf * 64 >= s->npages)
        p->oom = 0;
    if (start > 0 && SHK_READ_ONCE(s->desc[start - 1].kind) == SLAB_K_FREE) {
        uint32_t h = SHK_READ_ONCE(s->desc[start - 1].head);
        uint32_t hn = SHK_READ_ONCE(s->desc[h].npages);
        run_unlink(s, h);
        start = h;
        n += hn;
    }
    if (start + n < s->npages && SHK_READ_ONCE(s->desc[start + n].kind) == SLAB_K_FREE) {
        uint32_t r = start + n;
        uint32_t rn = SHK_READ_ONCE(s->desc[r].npages);
        run_unlink(s, r);
        n += rn;
    }
    run_insert(s, start, n);
}

/* ---- slab lists and ownership --------------------------------------------------- */

/* The list a partly used slab of class c with owner own is on. */
SLAB_HOT _Atomic uint32_t *partial_list(const shk_slab_t *s, unsigned c, uint32_t own)
{
    if (own)
        return &shk_slab_bhdr(s, SHK_READ_ONCE(s->p->caches[own - 1].body))->partial[c];
    return &s->p->cls[c].partial;
}

/* The owner of slab d, reset to none when its cache is gone. */
static uint32_t slab_owner(const shk_slab_t *s, slab_desc_t *d)
{
    uint32_t own = SHK_READ_ONCE(d->own);
    if (own &&
        (own > SLAB_NCACHE || SHK_READ_ONCE(s->p->caches[own - 1].body) >= s->npages)) {
        own = 0;
        SHK_WRITE_ONCE(d->own, 0);
    }
    return own;
}

/* Move the partly used slab h to owner own's list. */
static void slab_adopt(shk_slab_t *s, uint32_t h, uint32_t own)
{
    slab_desc_t *d = &s->desc[h];
    unsigned c = SHK_READ_ONCE(d->cls);
    shk_slab_list_remove(s, partial_list(s, c, SHK_READ_ONCE(d->own)), h);
    SHK_WRITE_ONCE(d->own, own);
    shk_slab_list_push(s, partial_list(s, c, own), h);
}

/* A partly used slab of class c on some cache's list, NIL if none: taken
 * from another process rather than fail while it has room. */
static uint32_t slab_steal(const shk_slab_t *s, unsigned c)
{
    const slab_pool_t *p = s->p;
    for (unsigned i = 0; i < SLAB_NCACHE; i++) {
        uint32_t b = SHK_READ_ONCE(p->caches[i].body), h;
        if (b < s->npages && (h = SHK_READ_ONCE(shk_slab_bhdr(s, b)->partial[c])) != SLAB_NIL)
            return h;
    }
    return SLAB_NIL;
}

void shk_slab_disown(shk_slab_t *s, unsigned i)
{
    slab_pool_t *p = s->p;
    slab_bhdr_t *bh = shk_slab_bhdr(s, SHK_READ_ONCE(p->caches[i].body));
    for (unsigned c = 0; c < SLAB_NCLASS; c++) {
        uint32_t h, guard = 0;
        while ((h = SHK_READ_ONCE(bh->partial[c])) != SLAB_NIL && h < s->npages &&
               guard++ <= s->npages) {
            shk_slab_list_remove(s, &bh->partial[c], h);
            SHK_WRITE_ONCE(s->desc[h].own, 0);
            shk_slab_list_push(s, &p->cls[c].partial, h);
        }
        SHK_WRITE_ONCE(bh->partial[c], SLAB_NIL);
    }
}

void shk_slab_unlist(shk_slab_t *s, unsigned c, uint32_t h)
{
    shk_slab_list_remove(s, partial_list(s, c, SHK_READ_ONCE(s->desc[h].own)), h);
}

void shk_slab_relist(shk_slab_t *s, uint32_t h)
{
    slab_desc_t *d = &s->desc[h];
    unsigned c = SHK_READ_ONCE(d->cls);
    uint32_t nfree = SHK_READ_ONCE(d->nfree), nchunks = SHK_READ_ONCE(d->nchunks);
    if (nfree == 1)
        shk_slab_list_push(s, partial_list(s, c, slab_owner(s, d)), h);
    if (nfree == nchunks) {
        shk_slab_list_remove(s, partial_list(s, c, SHK_READ_ONCE(d->own)), h);
        SHK_ADD_SOLE(s->p->cls[c].total, -(uint64_t)nchunks);
        shk_slab_pages_free(s, h, SHK_READ_ONCE(d->npages));
    }
}

/* ---- allocation ------------------------------------------------------------------ */

void *shk_slab_alloc_chunk(shk_slab_t *s, unsigned c, uint32_t own)
{
    slab_pool_t *p = s->p;
    slab_class_t *k = &p->cls[c];
    _Atomic uint32_t *mine = partial_list(s, c, own);
    uint32_t h = SHK_READ_ONCE(*mine);

    /* from the cache's own slabs, then shared ones, then a new slab, then
     * another cache's slabs */
    if (h == SLAB_NIL && own && (h = SHK_READ_ONCE(k->partial)) != SLAB_NIL)
        slab_adopt(s, h, own);
    if (h == SLAB_NIL && (h = shk_slab_pages_alloc(s, k->pages, SLAB_K_SLAB)) != SLAB_NIL) {
        slab_desc_t *d = &s->desc[h];
        SHK_WRITE_ONCE(d->own, own);
        SHK_WRITE_ONCE(d->nchunks, (uint16_t)k->nchunks);
        SHK_WRITE_ONCE(d->nfree, (uint16_t)k->nchunks);
        for (unsigned w = 0; w < SLAB_MAX_CHUNKS / 64; w++)
            SHK_WRITE_ONCE(d->bits[w], 0);
        for (uint32_t i = h; i < h + k->pages; i++)
            SHK_WRITE_ONCE(s->desc[i].cls, (uint16_t)c);
        shk_slab_list_push(s, mine, h);
        SHK_ADD_SOLE(k->total, k->nchunks);
    }
    if (h == SLAB_NIL && (h = slab_steal(s, c)) != SLAB_NIL)
        slab_adopt(s, h, own);
    if (h == SLAB_NIL)
        return NULL;
    return shk_slab_take(s, c, h);
}

static void *alloc_once(shk_slab_t *s, size_t size)
{
    slab_pool_t *p = s->p;
    if (size <= SLAB_MAX_SMALL) {
        unsigned c = shk_slab_class_of(size);
        void *r = shk_slab_alloc_chunk(s, c, 0);
        if (r)
            SHK_ADD_SOLE(p->cls[c].reqs, 1);
        return r;
    }
    uint64_t n = (size + s->ps - 1) / s->ps;
    if (n > s->npages)
        return NULL;
    uint32_t h = shk_slab_pages_alloc(s, (uint32_t)n, SLAB_K_RUN);
    if (h == SLAB_NIL)
        return NULL;
    SHK_ADD_SOLE(p->run_reqs, 1);
    return shk_slab_page_addr(s, h);
}

void *shk_slab_alloc_slow(shk_slab_t *s, size_t size, int zero)
{
    slab_pool_t *p;
    void *r;

    if (!s) {
        shk_error(SHK_EINVAL, "NULL slab");
        return NULL;
    }
    if (s->rdonly) {
        shk_error(SHK_EPERM, "slab pool \"%s\" is mapped read-only", s->name);
        return NULL;
    }
    p = s->p;
    if (!size)
        size = 1;
    r = alloc_once(s, size);
    /* Out of room: first what this process's cache holds. */
    if (!r && shk_slab_cache_drain_locked(s) > 0)
        r = alloc_once(s, size);
    for (int t = 0; !r && s->reclaim && t < SLAB_RECLAIM_TRIES; t++) {
        if (s->reclaim(s, size, s->reclaim_ctx) <= 0)
            break;
        r = alloc_once(s, size);
    }
    if (!r) {
        SHK_ADD_SOLE(p->fails, 1);
        if (size <= SLAB_MAX_SMALL)
            SHK_ADD_SOLE(p->cls[shk_slab_class_of(size)].fails, 1);
        if (!p->oom) {
            p->oom = 1;
            shk_log(SHK_LOG_ERR, "slab pool \"%s\": out of memory allocating %zu bytes (%llu of "
                                 "%u pages free)",
                    s->name, size, (unsigned long long)SHK_READ_ONCE(p->pages_free), s->npages);
        }
        shk_error(SHK_ENOMEM, "slab pool \"%s\": no room for %zu bytes", s->name, size);
        return NULL;
    }
    shk_slab_on_alloc(s, r, size, zero);
    return r;
}

/* ---- the checked free ---------------------------------------------------------- */

/* Is the chunk at pool offset off, of class c, parked in a process cache?
 * The tag in its first bytes says "maybe" cheaply; the magazines of every
 * cache say for sure. */
static int is_parked(const shk_slab_t *s, uint64_t off, unsigned c)
{
    const slab_pool_t *p = s->p;
    uint64_t v;
    if (!SHK_READ_ONCE(p->ncaches))
        return 0;
    if (shk_slab_peek_word(s->base + off, &v) && v != shk_slab_tag(s, off))
        return 0;
    for (unsigned i = 0; i < SLAB_NCACHE; i++) {
        uint32_t b = SHK_READ_ONCE(p->caches[i].body);
        if (!shk_slab_body_ok(s, b))
            continue;
        slab_mag_t *m = shk_slab_mag_at(s, shk_slab_body(s, b), c);
        /* acquire: pairs with the owner's release when it pushed */
        uint32_t n = SHK_LOAD_ACQUIRE(m->n);
        for (uint32_t j = 0; j < n && j < s->cmcap[c]; j++)
            if (SHK_READ_ONCE(m->e[j]) == off)
                return 1;
    }
    return 0;
}

/* Find the block ptr would be; fills the head page, and for chunks the
 * class and index. Returns SHK_OK, or SHK_EINVAL (SHK_ECORRUPT for a broken
 * descriptor) with the reason. */
static int locate(const shk_slab_t *s, const void *ptr, uint32_t *headp, unsigned *clsp,
                  uint32_t *idxp)
{
    const char *c = ptr;
    if (c < s->pages || c >= s->pages + s->pages_len)
        return shk_error(SHK_EINVAL, "slab pool \"%s\": %p is not inside the pool", s->name, ptr);
    uint32_t q = (uint32_t)((size_t)(c - s->pages) >> s->pshift);
    const slab_desc_t *d = &s->desc[q];
    unsigned kind = SHK_READ_ONCE(d->kind);
    if (kind == SLAB_K_FREE)
        return shk_error(SHK_EINVAL, "slab pool \"%s\": %p is in a free page (double free?)",
                         s->name, ptr);
    if (kind == SLAB_K_CACHE)
        return shk_error(SHK_EINVAL, "slab pool \"%s\": %p is in the pool's own cache pages",
                         s->name, ptr);
    uint32_t h = SHK_READ_ONCE(d->head);
    const slab_desc_t *hd = &s->desc[h <= q ? h : q];
    if (h > q || SHK_READ_ONCE(hd->kind) != kind || q - h >= SHK_READ_ONCE(hd->npages) ||
        (kind == SLAB_K_SLAB && SHK_READ_ONCE(hd->cls) >= SLAB_NCLASS))
        return shk_error(SHK_ECORRUPT, "slab pool \"%s\": page %u has a broken descriptor",
                         s->name, q);
    size_t off = (size_t)(c - shk_slab_page_addr(s, h));
    if (kind == SLAB_K_RUN) {
        if (off)
            return shk_error(SHK_EINVAL, "slab pool \"%s\": %p is inside a block, not at its "
                                         "start",
                             s->name, ptr);
        *headp = h;
        return SHK_OK;
    }
    unsigned cl = SHK_READ_ONCE(hd->cls);
    uint32_t idx = shk_slab_chunk_index(s, cl, off);
    if (idx == SLAB_NIL || idx >= SHK_READ_ONCE(hd->nchunks))
        return shk_error(SHK_EINVAL, "slab pool \"%s\": %p is inside a %u-byte block, not at its "
                                     "start",
                         s->name, ptr, s->csize[cl]);
    if (!(SHK_READ_ONCE(hd->bits[idx / 64]) & (1ULL << (idx % 64))))
        return shk_error(SHK_EINVAL, "slab pool \"%s\": %p is already free (double free)",
                         s->name, ptr);
    if (is_parked(s, (uint64_t)(c - s->base), cl))
        return shk_error(SHK_EINVAL, "slab pool \"%s\": %p is already free (double free; it "
                                     "waits in a process cache)",
                         s->name, ptr);
    *headp = h;
    *clsp = cl;
    *idxp = idx;
    return SHK_OK;
}

int shk_slab_free_slow(shk_slab_t *s, void *ptr)
{
    uint32_t h = 0, idx = 0;
    unsigned c = 0;
    int rc = locate(s, ptr, &h, &c, &idx);
    if (rc != SHK_OK) {
        shk_log(SHK_LOG_ERR, "%s", shk_last_errmsg());
        return rc;
    }
    slab_desc_t *d = &s->desc[h];
    int run = SHK_READ_ONCE(d->kind) == SLAB_K_RUN;
    uint32_t n = SHK_READ_ONCE(d->npages);
    shk_slab_on_free(s, ptr, run ? (size_t)n * s->ps : s->csize[c], NULL);
    if (run)
        shk_slab_pages_free(s, h, n);
    else
        shk_slab_chunk_release(s, c, h, idx);
    return SHK_OK;
}

/* ---- the lock ------------------------------------------------------------------ */

int shk_slab_lock(shk_slab_t *s)
{
    if (!s)
        return shk_error(SHK_EINVAL, "NULL slab");
    if (s->rdonly)
        return shk_error(SHK_EPERM, "slab pool \"%s\" is mapped read-only", s->name);
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
