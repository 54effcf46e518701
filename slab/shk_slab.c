/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * shk_slab.c: the slab allocator's public entry points: laying out a new
 * pool and opening (checking) an existing one, closing a handle, the
 * allocation and free calls (the process cache when it serves, else the
 * pool under its lock, the common case of each without layers), offsets
 * and pointers, usable sizes, and the reclaim callback. The pool's own
 * work is in shk_slab_pool.c, the process caches in shk_slab_cache.c, the
 * stats and the checker in shk_slab_check.c, valgrind in shk_slab_vg.c;
 * shk_slab_internal.h holds the layout and the inline fast-path pieces.
 */
#include "shk_slab_internal.h"

#include <stdio.h>
#include <stdlib.h>

/* ---- init / open / close ----------------------------------------------------- */

size_t shk_slab_min_size(void)
{
    size_t ps = shk_page_size();
    return SHK_ALIGN_UP(sizeof(slab_pool_t), ps) + ps + 4 * ps;
}

static shk_slab_t *slab_handle_new(void *addr, size_t size)
{
    shk_slab_t *s = calloc(1, sizeof *s);
    if (!s) {
        shk_error(SHK_ENOMEM, "out of memory");
        return NULL;
    }
    s->p = addr;
    s->base = addr;
    s->ps = shk_page_size();
    s->size = size;
    s->cslot = -1;
    return s;
}

int shk_slab_init(shk_slab_t **out, void *addr, size_t size, const char *name)
{
    size_t ps = shk_page_size();
    slab_geom_t g;
    shk_slab_t *s;
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
    if ((rc = shk_slab_geometry(size, ps, &g)) != SHK_OK)
        return rc;

    s = slab_handle_new(addr, size);
    if (!s)
        return SHK_ENOMEM;
    strcpy(s->name, name);
    shk_slab_format(s, size, &g, name);
    if ((rc = shk_shmtx_create(&s->mtx, &s->p->lock, name)) != SHK_OK) {
        free(s);
        return shk_error(rc, "slab pool \"%s\": %s", name, shk_last_errmsg());
    }
    /* Last: release publishes every field written above to a process that
     * loads the magic with acquire (shk_slab_open). */
    SHK_STORE_RELEASE(s->p->magic, SLAB_MAGIC);
    shk_slab_vg_track(s);
    *out = s;
    return SHK_OK;
}

/* One field of the header against what this library lays out for the
 * region: SHK_OK, or SHK_ECORRUPT naming it. */
static int field_is(const char *pool, const char *field, uint64_t have, uint64_t want)
{
    if (have == want)
        return SHK_OK;
    return shk_error(SHK_ECORRUPT, "slab pool \"%s\": header field %s is %llu, a pool of this "
                                   "size has %llu",
                     pool, field, (unsigned long long)have, (unsigned long long)want);
}

/* The header's geometry against g, the one shk_slab_init lays out for this
 * size and page size: the layout is a function of those two, so any other
 * value is damage, and the handle keeps g (never the header's copy). */
static int slab_geometry_ok(const slab_pool_t *p, const char *name, const slab_geom_t *g)
{
    char f[48];
    int rc;
    if ((rc = field_is(name, "nclasses", p->nclasses, SLAB_NCLASS)) != SHK_OK ||
        (rc = field_is(name, "npages", p->npages, g->npages)) != SHK_OK ||
        (rc = field_is(name, "desc_off", p->desc_off, g->desc_off)) != SHK_OK ||
        (rc = field_is(name, "pages_off", p->pages_off, g->pages_off)) != SHK_OK ||
        (rc = field_is(name, "mag_pages", p->mag_pages, g->mag_pages)) != SHK_OK)
        return rc;
    for (unsigned c = 0; c < SLAB_NCLASS; c++) {
        const slab_class_t *k = &p->cls[c];
        const struct {
            const char *what;
            uint32_t have, want;
        } fs[] = {{"size", k->size, g->size[c]},       {"pages", k->pages, g->pages[c]},
                  {"nchunks", k->nchunks, g->nchunks[c]}, {"mcap", k->mcap, g->mcap[c]},
                  {"mat", k->mat, g->mat[c]}};
        for (unsigned i = 0; i < SHK_ARRAY_LEN(fs); i++) {
            snprintf(f, sizeof f, "cls[%u].%s", c, fs[i].what);
            if ((rc = field_is(name, f, fs[i].have, fs[i].want)) != SHK_OK)
                return rc;
        }
    }
    return SHK_OK;
}

int shk_slab_open(shk_slab_t **out, void *addr, size_t size, unsigned flags)
{
    size_t ps = shk_page_size();
    const slab_pool_t *p = addr;
    slab_geom_t g;
    shk_slab_t *s;
    int rc;

    if (!out || !addr)
        return shk_error(SHK_EINVAL, "shk_slab_open: NULL argument");
    *out = NULL;
    if (flags & ~SHK_SLAB_RDONLY)
        return shk_error(SHK_EINVAL, "invalid slab open flags %#x", flags);
    if ((uintptr_t)addr % ps || size < sizeof(slab_pool_t))
        return shk_error(SHK_ECORRUPT, "no slab pool at %p (%zu bytes)", addr, size);
    /* acquire: pairs with shk_slab_init's release, so every other field
     * read below is the one written before it */
    uint64_t magic = SHK_LOAD_ACQUIRE(p->magic);
    int named = memchr(p->name, 0, sizeof p->name) != NULL;
    const char *name = magic == SLAB_MAGIC && named ? p->name : "?";
    if ((rc = shk_layout_check("slab pool", name, magic, SLAB_MAGIC, p->version, SLAB_VERSION,
                               p->size, size)) != SHK_OK)
        return rc;
    if (!named)
        return shk_error(SHK_ECORRUPT, "slab pool at %p: its name is not terminated", addr);
    if (p->hdr_size != sizeof(slab_pool_t) || p->page_size != ps)
        return shk_error(SHK_ECORRUPT, "slab pool \"%s\": header of %u bytes with %llu-byte "
                                       "pages, this library has %zu and %zu",
                         name, p->hdr_size, (unsigned long long)p->page_size,
                         sizeof(slab_pool_t), ps);
    if ((rc = shk_slab_geometry(size, ps, &g)) != SHK_OK)
        return shk_error(SHK_ECORRUPT, "slab pool \"%s\": %s", name, shk_last_errmsg());
    if ((rc = slab_geometry_ok(p, name, &g)) != SHK_OK)
        return rc;
    s = slab_handle_new(addr, size);
    if (!s)
        return SHK_ENOMEM;
    memcpy(s->name, name, strlen(name) + 1);
    s->rdonly = !!(flags & SHK_SLAB_RDONLY);
    shk_slab_bind(s, &g);
    shk_shmtx_create(&s->mtx, &s->p->lock, s->name);
    shk_slab_vg_track(s);
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
        shk_slab_vg_forget_all(s, 0);
        shk_slab_vg_untrack(s);
    }
    free(s->vg.keys);
    free(s);
}

/* ---- alloc / free ---------------------------------------------------------------- */

/* Why a handle cannot allocate (NULL or read-only): NULL with the error. */
static void *alloc_refused(const shk_slab_t *s)
{
    if (!s)
        shk_error(SHK_EINVAL, "NULL slab");
    else
        shk_error(SHK_EPERM, "slab pool \"%s\" is mapped read-only", s->name);
    return NULL;
}

/* An allocation with the lock held: the common case, a chunk from its
 * class's first shared partly used slab, without shk_slab_alloc_slow's
 * layers (the take marks the pool busy before its first store); the slow
 * path does everything else (a list head out of the pages included). */
SLAB_HOT void *alloc_held(shk_slab_t *s, size_t size, int zero)
{
    void *r;
    uint32_t h;
    unsigned c;
    shk_slab_settle(s);
    if (size - 1 < SLAB_MAX_SMALL &&
        (h = SHK_READ_ONCE(s->p->cls[c = shk_slab_class_of(size)].partial)) < s->npages &&
        (r = shk_slab_take(s, c, h, SLAB_OP_ALLOC))) {
        SHK_ADD_SOLE(s->p->cls[c].reqs, 1);
        shk_slab_on_alloc(s, r, size, zero);
    } else {
        shk_slab_op_mark(s, SLAB_MARK(SLAB_OP_ALLOC, 0));
        r = shk_slab_alloc_slow(s, size, zero);
    }
    shk_slab_op_end(s);
    return r;
}

/* shk_slab_alloc and shk_slab_calloc: the process cache when it serves,
 * else the pool under its lock. */
static void *alloc_any(shk_slab_t *s, size_t size, int zero)
{
    void *r;
    int rc;
    if (SHK_UNLIKELY(!s || s->rdonly))
        return alloc_refused(s);
    if (s->cache_on && size <= SLAB_MAX_SMALL &&
        (shk_slab_cache_mine(s) || shk_slab_cache_claim(s) == 0) &&
        (r = shk_slab_cache_alloc(s, size ? size : 1, zero)))
        return r;
    rc = shk_shmtx_lock_fast(&s->mtx);
    if (!shk_shmtx_held(rc))
        return NULL;
    r = alloc_held(s, size, zero);
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

static void *alloc_locked(shk_slab_t *s, size_t size, int zero)
{
    if (SHK_UNLIKELY(!s || s->rdonly))
        return alloc_refused(s);
    return alloc_held(s, size, zero);
}

void *shk_slab_alloc_locked(shk_slab_t *s, size_t size)
{
    return alloc_locked(s, size, 0);
}

void *shk_slab_calloc_locked(shk_slab_t *s, size_t size)
{
    return alloc_locked(s, size, 1);
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
        return shk_error(SHK_EPERM, "slab pool \"%s\" is mapped read-only", s->name);
    return 1;
}

/* The offset a free's mark names: ptr's, when it lies inside the pool (a
 * pointer outside names nothing, however its offset would wrap). */
static inline uint64_t free_mark(const shk_slab_t *s, const void *ptr)
{
    uint64_t off = (uint64_t)((uintptr_t)ptr - (uintptr_t)s->base);
    return off < s->size ? off : 0;
}

int shk_slab_free_locked(shk_slab_t *s, void *ptr)
{
    int rc = free_wanted(s, ptr);
    if (rc != 1)
        return rc;
    shk_slab_op_begin(s, SLAB_MARK(SLAB_OP_FREE, free_mark(s, ptr)));
    rc = shk_slab_free_checked(s, ptr);
    shk_slab_op_end(s);
    return rc;
}

int shk_slab_free(shk_slab_t *s, void *ptr)
{
    int rc = free_wanted(s, ptr);
    if (rc != 1)
        return rc;
    if (s->cache_on && (shk_slab_cache_mine(s) || shk_slab_cache_claim(s) == 0) &&
        shk_slab_cache_free(s, ptr))
        return SHK_OK;
    rc = shk_shmtx_lock_fast(&s->mtx);
    if (!shk_shmtx_held(rc))
        return rc;
    /* the mark names the block: from here to the end a repair gives it
     * back (and a pointer that is no block is not given) */
    shk_slab_op_begin(s, SLAB_MARK(SLAB_OP_FREE, free_mark(s, ptr)));
    rc = shk_slab_free_checked(s, ptr);
    shk_slab_op_end(s);
    shk_shmtx_unlock_fast(&s->mtx);
    return rc;
}

/* ---- offsets, sizes, reclaim ------------------------------------------------------ */

uint64_t shk_slab_off(const shk_slab_t *s, const void *ptr)
{
    if (!s || !ptr)
        return 0;
    return (uint64_t)((const char *)ptr - s->base);
}

void *shk_slab_ptr(const shk_slab_t *s, uint64_t off)
{
    if (!s || !off || off >= s->size)
        return NULL;
    /* A block another process allocated may lie where this process once
     * freed one (memcheck then thinks it inaccessible): when an offset is
     * turned into a pointer, the block it names is made defined here. */
    if (RUNNING_ON_VALGRIND) {
        size_t n = shk_slab_usable(s, s->base + off);
        if (n)
            SHK_VG_DO(VALGRIND_MAKE_MEM_DEFINED(s->base + off, n));
    }
    return s->base + off;
}

void *shk_slab_base(const shk_slab_t *s)
{
    return s ? s->base : NULL;
}

size_t shk_slab_size(const shk_slab_t *s)
{
    return s ? s->size : 0;
}

size_t shk_slab_usable(const shk_slab_t *s, const void *ptr)
{
    const char *c = ptr;
    if (!s || c < s->pages || c >= s->pages + s->pages_len)
        return 0;
    /* lock-free: relaxed reads, each index checked before it is followed */
    uint32_t q = (uint32_t)((size_t)(c - s->pages) >> s->pshift);
    const slab_desc_t *d = &s->desc[q];
    unsigned kind = SHK_READ_ONCE(d->kind);
    uint32_t h = SHK_READ_ONCE(d->head);
    if (kind == SLAB_K_RUN && h <= q) {
        uint32_t n = SHK_READ_ONCE(s->desc[h].npages);
        return c != shk_slab_page_addr(s, h) || SHK_READ_ONCE(s->desc[h].kind) != SLAB_K_RUN ||
                       n == 0 || n > s->npages - h
                   ? 0
                   : (size_t)n * s->ps;
    }
    uint32_t hh, idx;
    int cl = shk_slab_chunk_at(s, (uint64_t)(c - s->base), SLAB_NCLASS, &hh, &idx);
    return cl < 0 ? 0 : s->csize[cl];
}

void shk_slab_set_reclaim(shk_slab_t *s, shk_slab_reclaim_t fn, void *ctx)
{
    if (!s)
        return;
    s->reclaim = fn;
    s->reclaim_ctx = ctx;
}
