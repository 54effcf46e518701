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
    size_t ps = shk_page_size(), hdr = SHK_ALIGN_UP(sizeof(slab_pool_t), ps);
    shk_slab_t *s;
    uint32_t npages;
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
    npages = (uint32_t)((size - hdr) / (ps + sizeof(slab_desc_t)));
    while (npages && hdr + SHK_ALIGN_UP((size_t)npages * sizeof(slab_desc_t), ps) +
                             (size_t)npages * ps > size)
        npages--;
    if (npages < 4)
        return shk_error(SHK_EINVAL, "slab pool of %zu bytes is too small", size);
    if ((size_t)npages >= SLAB_NIL)
        return shk_error(SHK_ERANGE, "slab pool of %zu bytes is too large", size);

    s = slab_handle_new(addr, size);
    if (!s)
        return SHK_ENOMEM;
    strcpy(s->name, name);
    shk_slab_format(s, size, npages, name);
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

/* The geometry shk_slab_bind copied into s, checked against the region
 * (size bytes): every later read through the handle stays inside it. */
static int slab_geometry_ok(const shk_slab_t *s, size_t size)
{
    const slab_pool_t *p = s->p;
    size_t ps = s->ps;
    uint64_t desc_off = (uint64_t)((char *)s->desc - s->base), pages_off = s->pages_off;
    if (p->nclasses != SLAB_NCLASS || desc_off < sizeof(slab_pool_t) || desc_off % ps ||
        pages_off % ps || !s->npages || s->npages >= SLAB_NIL ||
        pages_off < desc_off + (uint64_t)s->npages * sizeof(slab_desc_t) ||
        !shk_span_ok(pages_off, (uint64_t)s->npages * ps, size) || s->mag_pages == 0 ||
        s->mag_pages > SLAB_MAX_MAG_PAGES)
        return shk_error(SHK_ECORRUPT, "slab pool \"%s\": header is inconsistent", s->name);
    for (unsigned c = 0; c < SLAB_NCLASS; c++) {
        const slab_class_t *k = &p->cls[c];
        if (k->size != s->csize[c] || k->pages == 0 || k->pages > SLAB_MAX_SLAB_PAGES ||
            k->nchunks == 0 || k->nchunks > SLAB_MAX_CHUNKS ||
            (uint64_t)k->nchunks * k->size > (uint64_t)k->pages * ps ||
            s->cmcap[c] < SLAB_MAG_MIN || s->cmcap[c] > SLAB_MAG_MAX ||
            (uint64_t)s->cmat[c] + sizeof(slab_mag_t) + s->cmcap[c] * sizeof(uint64_t) >
                (uint64_t)s->mag_pages * ps)
            return shk_error(SHK_ECORRUPT, "slab pool \"%s\": header: bad layout of class %u",
                             s->name, c);
    }
    return SHK_OK;
}

int shk_slab_open(shk_slab_t **out, void *addr, size_t size, unsigned flags)
{
    size_t ps = shk_page_size();
    const slab_pool_t *p = addr;
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
    s = slab_handle_new(addr, size);
    if (!s)
        return SHK_ENOMEM;
    memcpy(s->name, name, strlen(name) + 1);
    s->rdonly = !!(flags & SHK_SLAB_RDONLY);
    shk_slab_bind(s);
    if ((rc = slab_geometry_ok(s, size)) != SHK_OK) {
        free(s);
        return rc;
    }
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

/* shk_slab_alloc and shk_slab_calloc: the process cache when it serves,
 * else the pool under its lock. */
static void *alloc_any(shk_slab_t *s, size_t size, int zero)
{
    void *r;
    int rc;
    uint32_t h;
    unsigned c;
    if (SHK_UNLIKELY(!s || s->rdonly))
        return shk_slab_alloc_slow(s, size, zero); /* reports which, without the lock */
    if (s->cache_on && size <= SLAB_MAX_SMALL &&
        (shk_slab_cache_mine(s) || shk_slab_cache_claim(s) == 0) &&
        (r = shk_slab_cache_alloc(s, size ? size : 1, zero)))
        return r;
    rc = shk_shmtx_lock_fast(&s->mtx);
    if (!shk_shmtx_held(rc))
        return NULL;
    /* The common case, a chunk from its class's first shared partly used
     * slab, without shk_slab_alloc_slow's layers; it does everything else. */
    if (size - 1 < SLAB_MAX_SMALL &&
        (h = SHK_READ_ONCE(s->p->cls[c = shk_slab_class_of(size)].partial)) != SLAB_NIL &&
        (r = shk_slab_take(s, c, h))) {
        SHK_ADD_SOLE(s->p->cls[c].reqs, 1);
        shk_slab_on_alloc(s, r, size, zero);
    } else {
        r = shk_slab_alloc_slow(s, size, zero);
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

void *shk_slab_alloc_locked(shk_slab_t *s, size_t size)
{
    return shk_slab_alloc_slow(s, size, 0);
}

void *shk_slab_calloc_locked(shk_slab_t *s, size_t size)
{
    return shk_slab_alloc_slow(s, size, 1);
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

int shk_slab_free_locked(shk_slab_t *s, void *ptr)
{
    int rc = free_wanted(s, ptr);
    return rc == 1 ? shk_slab_free_checked(s, ptr) : rc;
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
    rc = shk_slab_free_checked(s, ptr);
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
            SLAB_VG(VALGRIND_MAKE_MEM_DEFINED(s->base + off, n));
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
    if (kind == SLAB_K_FREE || h > q)
        return 0;
    size_t off = (size_t)(c - shk_slab_page_addr(s, h));
    if (kind == SLAB_K_RUN) {
        uint32_t n = SHK_READ_ONCE(s->desc[h].npages);
        return off || n > s->npages - h ? 0 : (size_t)n * s->ps;
    }
    unsigned cl = SHK_READ_ONCE(s->desc[h].cls);
    if (kind == SLAB_K_SLAB && cl < SLAB_NCLASS)
        return off % s->csize[cl] ? 0 : s->csize[cl];
    return 0;
}

void shk_slab_set_reclaim(shk_slab_t *s, shk_slab_reclaim_t fn, void *ctx)
{
    if (!s)
        return;
    s->reclaim = fn;
    s->reclaim_ctx = ctx;
}
