/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * shk_slab_pool.c: the pool itself, under its lock: the geometry and layout
 * of a new pool (size classes, descriptors), free page runs indexed by
 * length and merged with their neighbours, chunk slabs and the lists they
 * are on (shared, or a process cache's own), allocation when the fast path
 * cannot serve (new slabs, page runs, reclaim, out of memory), locate and
 * the checked free that says what is wrong with a bad pointer, and the
 * lock.
 *
 * A partly used slab is on one list: its class's shared list (own == 0), or
 * the list of the process cache that refills from it (own == slot + 1, the
 * list in that cache's body). A cache refills from its own slabs first, so
 * processes with caches mostly keep to slabs of their own and do not pull
 * each other's descriptor and chunk cache lines. A full slab keeps its
 * `own` as a hint; it is checked against the slot when the slab has room
 * again. Releasing a cache moves its slabs to the shared lists.
 *
 * Every function here runs with the lock held and an operation begun
 * (shk_slab_op_begin), or on a pool no other process sees yet
 * (shk_slab_format). Stores to shared fields are relaxed (SHK_WRITE_ONCE,
 * SHK_ADD_SOLE): the lock's release publishes them to the next holder, and
 * lock-free readers only take them as a snapshot. A run's existence is
 * written at one store, the kind of its first page (its commit: a used run
 * counts only when that page and every other page name it); the free-page
 * counter moves after it. Every index read from the pool is checked before
 * it is followed; one out of range marks the pool damaged
 * (shk_slab_damaged) instead, and the operation's end repairs it. The
 * block an operation hands out or takes back is named by the busy mark
 * before its commit (shk_slab_take_at, shk_slab_pages_alloc for a run, the
 * free's shk_slab_op_begin), so a repair gives it back.
 */
#include "shk_slab_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/random.h>
#include <time.h>

#ifdef SHK_DEBUG
shk_slab_step_fn shk_slab_step_hook;
#endif

/* ---- size classes and the layout ------------------------------------------- */

uint32_t shk_slab_class_size(unsigned idx)
{
    if (idx < 8)
        return (idx + 1) * 16;
    unsigned k = idx - 8, b = 7 + k / 4;
    return (1u << b) + ((k % 4) + 1) * (1u << (b - 2));
}

int shk_slab_geometry(size_t size, size_t ps, slab_geom_t *g)
{
    size_t hdr = SHK_ALIGN_UP(sizeof(slab_pool_t), ps);
    uint32_t body = SLAB_BHDR_BYTES;
    uint64_t np;

    memset(g, 0, sizeof *g);
    if (size < hdr + 5 * ps)
        return shk_error(SHK_EINVAL, "slab pool of %zu bytes is too small (minimum %zu)", size,
                         hdr + 5 * ps);
    /* pages + their descriptors must fit after the header; in 64 bits, so
     * no size is cut short before it is compared */
    np = (uint64_t)(size - hdr) / (ps + sizeof(slab_desc_t));
    while (np && hdr + SHK_ALIGN_UP(np * sizeof(slab_desc_t), (uint64_t)ps) + np * ps > size)
        np--;
    if (np < 4)
        return shk_error(SHK_EINVAL, "slab pool of %zu bytes is too small", size);
    if (np >= SLAB_NIL)
        return shk_error(SHK_ERANGE, "slab pool of %zu bytes is too large (at most %u pages)",
                         size, SLAB_NIL - 1);
    g->npages = (uint32_t)np;
    g->desc_off = hdr;
    g->pages_off = hdr + SHK_ALIGN_UP(np * sizeof(slab_desc_t), (uint64_t)ps);
    for (unsigned c = 0; c < SLAB_NCLASS; c++) {
        uint32_t sz = shk_slab_class_size(c), best = 1;
        size_t best_waste = SIZE_MAX;
        for (uint32_t pg = 1; pg <= SLAB_MAX_SLAB_PAGES; pg++) {
            size_t n = (size_t)pg * ps / sz;
            if (n > SLAB_MAX_CHUNKS)
                n = SLAB_MAX_CHUNKS;
            size_t waste = (size_t)pg * ps - n * sz;
            /* waste as a fraction of the slab, compared in integers */
            if (waste * best < best_waste * pg) {
                best = pg;
                best_waste = waste;
            }
            if (waste * 64 <= (size_t)pg * ps)
                break; /* under 1/64 wasted: good enough, keep slabs small */
        }
        size_t nch = (size_t)best * ps / sz;
        uint32_t mcap = SLAB_MAG_BYTES / sz;
        g->size[c] = sz;
        g->pages[c] = best;
        g->nchunks[c] = (uint32_t)(nch > SLAB_MAX_CHUNKS ? SLAB_MAX_CHUNKS : nch);
        g->mcap[c] = mcap < SLAB_MAG_MIN ? SLAB_MAG_MIN : mcap > SLAB_MAG_MAX ? SLAB_MAG_MAX : mcap;
        g->mat[c] = body;
        body += (uint32_t)(sizeof(slab_mag_t) + g->mcap[c] * sizeof(uint64_t));
    }
    g->mag_pages = (uint32_t)((body + ps - 1) / ps);
    return SHK_OK;
}

void shk_slab_bind(shk_slab_t *s, const slab_geom_t *g)
{
    s->npages = g->npages;
    s->mag_pages = g->mag_pages;
    s->pages_off = g->pages_off;
    s->desc = (slab_desc_t *)(s->base + g->desc_off);
    s->pages = s->base + s->pages_off;
    s->pshift = (unsigned)__builtin_ctzll((unsigned long long)s->ps);
    s->pages_len = (size_t)s->npages * s->ps;
    s->cookie = s->p->cookie;
    s->cslot = -1;
    for (unsigned c = 0; c < SLAB_NCLASS; c++) {
        s->csize[c] = g->size[c];
        /* ceil(2^32 / size): (off * crecip) >> 32 == off / size exactly for
         * every offset inside a slab (off < 2^21 <= 2^32 / size). */
        s->crecip[c] = (uint32_t)((((uint64_t)1 << 32) + s->csize[c] - 1) / s->csize[c]);
        s->cmat[c] = g->mat[c];
        s->cmcap[c] = g->mcap[c];
        s->cpages[c] = g->pages[c];
        s->cnchunks[c] = g->nchunks[c];
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

void shk_slab_format(shk_slab_t *s, size_t size, const slab_geom_t *g, const char *name)
{
    slab_pool_t *p = s->p;
    uint32_t npages = g->npages;

    memset(p, 0, sizeof *p);
    p->version = SLAB_VERSION;
    p->hdr_size = sizeof *p;
    p->size = size;
    p->page_size = s->ps;
    p->desc_off = g->desc_off;
    p->pages_off = g->pages_off;
    p->npages = npages;
    p->nclasses = SLAB_NCLASS;
    strcpy(p->name, name);
    for (unsigned i = 0; i < SLAB_NLISTS; i++)
        SHK_WRITE_ONCE(p->free_head[i], SLAB_NIL);
    for (unsigned c = 0; c < SLAB_NCLASS; c++) {
        slab_class_t *k = &p->cls[c];
        k->size = g->size[c];
        k->pages = g->pages[c];
        k->nchunks = g->nchunks[c];
        SHK_WRITE_ONCE(k->partial, SLAB_NIL);
        k->mcap = g->mcap[c];
        k->mat = g->mat[c];
    }
    p->mag_pages = g->mag_pages;
    p->cookie = new_cookie();
    for (unsigned i = 0; i < SLAB_NCACHE; i++)
        SHK_WRITE_ONCE(p->caches[i].body, SLAB_NIL);
    shk_shmtx_sh_init(&p->lock);
    shk_slab_bind(s, g);
    memset(s->desc, 0, (size_t)npages * sizeof(slab_desc_t));
    for (uint32_t i = 0; i < npages; i++)
        SHK_WRITE_ONCE(s->desc[i].kind, SLAB_K_FREE);
    run_insert(s, 0, npages);
    SHK_WRITE_ONCE(p->pages_free, npages);
}

/* ---- damage -------------------------------------------------------------------- */

void shk_slab_damaged(shk_slab_t *s, const char *fmt, ...)
{
    char what[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    /* one line per operation that finds damage; the repair logs what it
     * rebuilt */
    if (!s->damaged)
        shk_log(SHK_LOG_ERR, "slab pool \"%s\" is damaged: %s; it is repaired", s->name, what);
    s->damaged = 1;
    shk_error(SHK_ECORRUPT, "slab pool \"%s\" is damaged: %s", s->name, what);
}

/* ---- lists and page runs ----------------------------------------------------- */

static inline unsigned list_of(uint32_t n)
{
    return n - 1 < SLAB_NLISTS - 1 ? n - 1 : SLAB_NLISTS - 1;
}

/* Insert the free run [start, start+n): mark its ends and index it. Free
 * runs are derived (the repair rebuilds them from the pages' kinds). */
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
    SLAB_STEP("free run: ends marked");
    shk_slab_list_push(s, &p->free_head[li], start);
    SHK_WRITE_ONCE(p->nonempty, SHK_READ_ONCE(p->nonempty) | 1ULL << li);
    SLAB_STEP("free run: listed");
}

static void run_unlink(shk_slab_t *s, uint32_t start)
{
    slab_pool_t *p = s->p;
    unsigned li = list_of(SHK_READ_ONCE(s->desc[start].npages));
    shk_slab_list_remove(s, &p->free_head[li], start);
    if (SHK_READ_ONCE(p->free_head[li]) == SLAB_NIL)
        SHK_WRITE_ONCE(p->nonempty, SHK_READ_ONCE(p->nonempty) & ~(1ULL << li));
    SLAB_STEP("free run: unlinked");
}

/* Is page i the start of a free run of length n (n == 0: of any length),
 * as its list says? */
static int free_run_ok(const shk_slab_t *s, uint32_t i, uint32_t n)
{
    if (i >= s->npages)
        return 0;
    const slab_desc_t *d = &s->desc[i];
    uint32_t len = SHK_READ_ONCE(d->npages);
    return SHK_READ_ONCE(d->kind) == SLAB_K_FREE && SHK_READ_ONCE(d->head) == i && len &&
           len <= s->npages - i && (!n || len == n);
}

uint32_t shk_slab_pages_alloc(shk_slab_t *s, uint32_t n, uint32_t kind, unsigned c, uint32_t own)
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
            if (!free_run_ok(s, start, len)) {
                shk_slab_damaged(s, "free list %u starts with page %u, not a free run of %u "
                                    "pages",
                                 j, start, len);
                return SLAB_NIL;
            }
        } else {
            /* Runs of 64 pages or more: best fit. Only long runs are on
             * this list, so it is short compared with the pool. */
            for (uint32_t i = SHK_READ_ONCE(p->free_head[j]), guard = 0; i != SLAB_NIL;
                 i = SHK_READ_ONCE(s->desc[i].next)) {
                if (!free_run_ok(s, i, 0) || ++guard > s->npages) {
                    shk_slab_damaged(s, "the list of long free runs is broken at page %u", i);
                    return SLAB_NIL;
                }
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
    slab_desc_t *hd = &s->desc[start];
    if (kind == SLAB_K_SLAB) {
        /* the slab laid out empty while its pages are still free: once its
         * first page says slab, it is a sound one */
        SHK_WRITE_ONCE(hd->own, own);
        SHK_WRITE_ONCE(hd->nchunks, (uint16_t)s->cnchunks[c]);
        SHK_WRITE_ONCE(hd->nfree, (uint16_t)s->cnchunks[c]);
        for (unsigned w = 0; w < SLAB_MAX_CHUNKS / 64; w++)
            SHK_WRITE_ONCE(hd->bits[w], 0);
        for (uint32_t i = start; i < start + n; i++)
            SHK_WRITE_ONCE(s->desc[i].cls, (uint16_t)c);
        SLAB_STEP("page run alloc: slab laid out");
    }
    run_unlink(s, start);
    if (len > n)
        run_insert(s, start + n, len - n);
    for (uint32_t i = start + 1; i < start + n; i++) {
        SHK_WRITE_ONCE(s->desc[i].kind, (uint16_t)kind);
        SHK_WRITE_ONCE(s->desc[i].head, start);
    }
    SHK_WRITE_ONCE(hd->npages, n);
    SHK_WRITE_ONCE(hd->head, start);
    SHK_WRITE_ONCE(hd->next, SLAB_NIL);
    SHK_WRITE_ONCE(hd->prev, SLAB_NIL);
    SLAB_STEP("page run alloc: pages marked");
    /* A run to hand out is named first (a repair frees it until the
     * allocation returns); a new slab, empty, and a cache body no slot
     * names yet are freed by the repair anyway. */
    if (kind == SLAB_K_RUN)
        shk_slab_op_mark(s, SLAB_MARK(SLAB_OP_ALLOC, shk_slab_page_addr(s, start) - s->base));
    SLAB_KILL_ORDER(); /* every page names the run before the first page commits it */
    SHK_WRITE_ONCE(hd->kind, (uint16_t)kind);
    SLAB_STEP("page run alloc: committed");
    SHK_ADD_SOLE(p->pages_free, -(uint64_t)n);
    SLAB_STEP("page run alloc: free-page counter");
    return start;
}

void shk_slab_pages_free(shk_slab_t *s, uint32_t start, uint32_t n)
{
    slab_pool_t *p = s->p;
    /* the first page first: from that store on the run is gone (its other
     * pages no longer name a used first page) */
    SHK_WRITE_ONCE(s->desc[start].kind, SLAB_K_FREE);
    SLAB_STEP("page run free: committed");
    for (uint32_t i = start; i < start + n; i++) {
        SHK_WRITE_ONCE(s->desc[i].kind, SLAB_K_FREE);
        SHK_WRITE_ONCE(s->desc[i].head, start);
    }
    SLAB_STEP("page run free: pages marked");
    uint64_t pf = SHK_READ_ONCE(p->pages_free) + n;
    SHK_WRITE_ONCE(p->pages_free, pf);
    SLAB_STEP("page run free: free-page counter");
    /* An out-of-memory episode ends when a sixty-fourth of the pool is free
     * again: failures while it hovers near full log nothing more. */
    if (p->oom && pf * 64 >= s->npages)
        p->oom = 0;
    if (start > 0 && SHK_READ_ONCE(s->desc[start - 1].kind) == SLAB_K_FREE) {
        uint32_t h = SHK_READ_ONCE(s->desc[start - 1].head);
        if (h < start && free_run_ok(s, h, start - h)) {
            run_unlink(s, h);
            n += start - h;
            start = h;
        } else {
            shk_slab_damaged(s, "the free run before page %u does not lead to its start",
                             start);
        }
    }
    if (start + n < s->npages && SHK_READ_ONCE(s->desc[start + n].kind) == SLAB_K_FREE) {
        uint32_t r = start + n;
        if (free_run_ok(s, r, 0)) {
            uint32_t rn = SHK_READ_ONCE(s->desc[r].npages);
            run_unlink(s, r);
            n += rn;
        } else {
            shk_slab_damaged(s, "the free run at page %u is not marked as one", r);
        }
    }
    run_insert(s, start, n);
}

/* ---- slab lists and ownership --------------------------------------------------- */

/* The list a partly used slab of class c with owner own is on; a slot that
 * names no cache body marks the pool damaged and gives the shared list. */
SLAB_HOT _Atomic uint32_t *partial_list(shk_slab_t *s, unsigned c, uint32_t own)
{
    if (own) {
        uint32_t b = own <= SLAB_NCACHE ? SHK_READ_ONCE(s->p->caches[own - 1].body) : SLAB_NIL;
        if (SHK_LIKELY(shk_slab_body_ok(s, b)))
            return &shk_slab_bhdr(s, b)->partial[c];
        shk_slab_damaged(s, "a slab names cache owner %u, which has no cache", own);
    }
    return &s->p->cls[c].partial;
}

/* The owner of slab d, reset to none when its cache is gone. */
static uint32_t slab_owner(const shk_slab_t *s, slab_desc_t *d)
{
    uint32_t own = SHK_READ_ONCE(d->own);
    if (own && (own > SLAB_NCACHE || !shk_slab_body_ok(s, SHK_READ_ONCE(s->p->caches[own - 1].body)))) {
        own = 0;
        SHK_WRITE_ONCE(d->own, 0);
    }
    return own;
}

/* Move the partly used slab h to owner own's list. */
static void slab_adopt(shk_slab_t *s, unsigned c, uint32_t h, uint32_t own)
{
    slab_desc_t *d = &s->desc[h];
    shk_slab_list_remove(s, partial_list(s, c, SHK_READ_ONCE(d->own)), h);
    SHK_WRITE_ONCE(d->own, own);
    SLAB_STEP("adopt: owner");
    shk_slab_list_push(s, partial_list(s, c, own), h);
}

/* A partly used slab of class c on some cache's list, NIL if none: taken
 * from another process rather than fail while it has room. */
static uint32_t slab_steal(const shk_slab_t *s, unsigned c)
{
    const slab_pool_t *p = s->p;
    for (unsigned i = 0; i < SLAB_NCACHE; i++) {
        uint32_t b = SHK_READ_ONCE(p->caches[i].body), h;
        if (shk_slab_body_ok(s, b) &&
            (h = SHK_READ_ONCE(shk_slab_bhdr(s, b)->partial[c])) < s->npages)
            return h;
    }
    return SLAB_NIL;
}

void shk_slab_disown(shk_slab_t *s, unsigned i)
{
    slab_pool_t *p = s->p;
    uint32_t b = SHK_READ_ONCE(p->caches[i].body);
    if (!shk_slab_body_ok(s, b))
        return;
    slab_bhdr_t *bh = shk_slab_bhdr(s, b);
    for (unsigned c = 0; c < SLAB_NCLASS; c++) {
        uint32_t h, guard = 0;
        while ((h = SHK_READ_ONCE(bh->partial[c])) < s->npages && guard++ <= s->npages) {
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

void shk_slab_relist(shk_slab_t *s, unsigned c, uint32_t h)
{
    slab_desc_t *d = &s->desc[h];
    uint32_t nfree = SHK_READ_ONCE(d->nfree), nchunks = s->cnchunks[c], np = s->cpages[c];
    if (nfree == 0 || nfree > nchunks || np > s->npages - h) {
        shk_slab_damaged(s, "slab at page %u counts %u free of %u chunks", h, nfree, nchunks);
        return;
    }
    if (nfree == 1 && nchunks > 1)
        shk_slab_list_push(s, partial_list(s, c, slab_owner(s, d)), h);
    if (nfree == nchunks) {
        /* empty: its pages go back, once its bitmap agrees and they are
         * seen to be its own */
        for (unsigned w = 0; w < SLAB_MAX_CHUNKS / 64; w++)
            if (SHK_READ_ONCE(d->bits[w])) {
                shk_slab_damaged(s, "slab at page %u counts all %u chunks free but its bitmap "
                                    "has some in use",
                                 h, nchunks);
                return;
            }
        for (uint32_t i = h + 1; i < h + np; i++)
            if (SHK_READ_ONCE(s->desc[i].kind) != SLAB_K_SLAB ||
                SHK_READ_ONCE(s->desc[i].head) != h) {
                shk_slab_damaged(s, "page %u inside the slab at page %u is not its own", i, h);
                return;
            }
        if (nchunks > 1)
            shk_slab_list_remove(s, partial_list(s, c, SHK_READ_ONCE(d->own)), h);
        SHK_ADD_SOLE(s->p->cls[c].total, -(uint64_t)nchunks);
        SLAB_STEP("slab release: unlisted");
        shk_slab_pages_free(s, h, np);
    }
}

/* ---- allocation ------------------------------------------------------------------ */

uint32_t shk_slab_chunk_slab(shk_slab_t *s, unsigned c, uint32_t own)
{
    slab_pool_t *p = s->p;
    slab_class_t *k = &p->cls[c];
    _Atomic uint32_t *mine = partial_list(s, c, own);
    uint32_t h = SHK_READ_ONCE(*mine);

    /* from the cache's own slabs, then shared ones, then a new slab, then
     * another cache's slabs */
    if (h == SLAB_NIL && own && (h = SHK_READ_ONCE(k->partial)) != SLAB_NIL) {
        if (h >= s->npages) {
            shk_slab_damaged(s, "the list of class %u starts at page %u", s->csize[c], h);
            return SLAB_NIL;
        }
        slab_adopt(s, c, h, own);
    }
    if (h == SLAB_NIL &&
        (h = shk_slab_pages_alloc(s, s->cpages[c], SLAB_K_SLAB, c, own)) != SLAB_NIL) {
        shk_slab_list_push(s, mine, h);
        SHK_ADD_SOLE(k->total, s->cnchunks[c]);
        SLAB_STEP("new slab: listed and counted");
    }
    if (h == SLAB_NIL && !s->damaged && (h = slab_steal(s, c)) != SLAB_NIL)
        slab_adopt(s, c, h, own);
    if (h != SLAB_NIL && h >= s->npages) {
        shk_slab_damaged(s, "a list of class %u starts at page %u", s->csize[c], h);
        return SLAB_NIL;
    }
    return h;
}

void *shk_slab_alloc_chunk(shk_slab_t *s, unsigned c, uint32_t own)
{
    uint32_t h = shk_slab_chunk_slab(s, c, own);
    return h == SLAB_NIL ? NULL : shk_slab_take(s, c, h, SLAB_OP_ALLOC);
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
    /* size <= pages_len (shk_slab_alloc_slow), so this cannot wrap */
    uint64_t n = ((uint64_t)size + s->ps - 1) >> s->pshift;
    uint32_t h = shk_slab_pages_alloc(s, (uint32_t)n, SLAB_K_RUN, 0, 0);
    if (h == SLAB_NIL)
        return NULL;
    SHK_ADD_SOLE(p->run_reqs, 1);
    return shk_slab_page_addr(s, h);
}

/* alloc_once, and when it finds the pool damaged, once more after the
 * repair (which rebuilds what the damage broke). */
static void *alloc_repaired(shk_slab_t *s, size_t size)
{
    void *r = alloc_once(s, size);
    if (!r && s->damaged) {
        shk_slab_repair_now(s);
        shk_slab_op_mark(s, SLAB_MARK(SLAB_OP_ALLOC, 0)); /* the operation goes on */
        r = alloc_once(s, size);
    }
    return r;
}

void *shk_slab_alloc_slow(shk_slab_t *s, size_t size, int zero)
{
    slab_pool_t *p = s->p;
    void *r;

    if (!size)
        size = 1;
    /* More than all the pages (up to SIZE_MAX): no state of the pool could
     * serve it, so nothing is tried (and nothing computed from the size
     * can wrap); it fails as any request that does not fit. */
    int fits = size <= s->pages_len;
    r = fits ? alloc_repaired(s, size) : NULL;
    /* Out of room: first what this process's cache holds. */
    if (!r && fits && shk_slab_cache_drain_locked(s) > 0)
        r = alloc_repaired(s, size);
    for (int t = 0; !r && fits && s->reclaim && t < SLAB_RECLAIM_TRIES; t++) {
        /* the callback runs between operations: it calls _locked ones */
        shk_slab_op_end(s);
        int freed = s->reclaim(s, size, s->reclaim_ctx);
        shk_slab_op_begin(s, SLAB_MARK(SLAB_OP_ALLOC, 0));
        if (freed <= 0)
            break;
        r = alloc_repaired(s, size);
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

/* The tag in the chunk's first bytes says "maybe" cheaply; the magazines
 * of every cache say for sure. */
int shk_slab_is_parked(const shk_slab_t *s, uint64_t off, unsigned c, int exact)
{
    const slab_pool_t *p = s->p;
    uint64_t v;
    if (!exact && !SHK_READ_ONCE(p->ncaches))
        return 0;
    if (!exact && shk_slab_peek_word(s->base + off, &v) && v != shk_slab_tag(s, off))
        return 0;
    for (unsigned i = 0; i < SLAB_NCACHE; i++) {
        uint32_t b = SHK_READ_ONCE(p->caches[i].body);
        if (!shk_slab_body_ok(s, b))
            continue;
        slab_mag_t *m = shk_slab_mag_at(s, shk_slab_body(s, b), c);
        /* acquire: pairs with the owner's release when it pushed */
        uint32_t n = shk_slab_mag_parked(s, c, SHK_LOAD_ACQUIRE(m->n));
        for (uint32_t j = 0; j < n; j++)
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
    uint32_t n = SHK_READ_ONCE(hd->npages);
    unsigned cl = SHK_READ_ONCE(hd->cls);
    if ((kind != SLAB_K_SLAB && kind != SLAB_K_RUN) || h > q || SHK_READ_ONCE(hd->kind) != kind ||
        q - h >= n || n > s->npages - h || (kind == SLAB_K_SLAB && cl >= SLAB_NCLASS))
        return shk_error(SHK_ECORRUPT, "slab pool \"%s\": page %u has a broken descriptor",
                         s->name, q);
    size_t off = (size_t)(c - shk_slab_page_addr(s, h));
    if (kind == SLAB_K_RUN) {
        if (off)
            return shk_error(SHK_EINVAL, "slab pool \"%s\": %p is inside a block, not at its "
                                         "start",
                             s->name, ptr);
        /* all its pages are freed: each must be its own */
        for (uint32_t i = h + 1; i < h + n; i++)
            if (SHK_READ_ONCE(s->desc[i].kind) != SLAB_K_RUN ||
                SHK_READ_ONCE(s->desc[i].head) != h)
                return shk_error(SHK_ECORRUPT, "slab pool \"%s\": page %u inside the block at "
                                               "%p is not its own",
                                 s->name, i, ptr);
        *headp = h;
        return SHK_OK;
    }
    uint32_t idx = shk_slab_chunk_index(s, cl, off);
    if (idx >= s->cnchunks[cl])
        return shk_error(SHK_EINVAL, "slab pool \"%s\": %p is inside a %u-byte block, not at its "
                                     "start",
                         s->name, ptr, s->csize[cl]);
    if (!(SHK_READ_ONCE(hd->bits[idx / 64]) & (1ULL << (idx % 64))))
        return shk_error(SHK_EINVAL, "slab pool \"%s\": %p is already free (double free)",
                         s->name, ptr);
    if (shk_slab_is_parked(s, (uint64_t)(c - s->base), cl, 0))
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

int shk_slab_lock_op(shk_slab_t *s)
{
    int rc = shk_shmtx_lock_fast(&s->mtx);
    /* relaxed: see shk_slab_op_begin */
    if (shk_shmtx_held(rc) && SHK_UNLIKELY(SHK_READ_ONCE(s->p->busy))) {
        shk_slab_repair(s);
        rc = SHK_EOWNERDEAD;
    }
    return rc;
}

int shk_slab_lock(shk_slab_t *s)
{
    if (!s)
        return shk_error(SHK_EINVAL, "NULL slab");
    if (s->rdonly)
        return shk_error(SHK_EPERM, "slab pool \"%s\" is mapped read-only", s->name);
    return shk_slab_lock_op(s);
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
