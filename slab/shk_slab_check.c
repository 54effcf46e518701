/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * shk_slab_check.c: reading a pool without changing it: the stats (a
 * lock-free snapshot on every handle) and the checker that walks every
 * structure and names the first broken invariant (docs/slab.md lists
 * them).
 *
 * Both treat the mapping as untrusted: every index read from it is checked
 * against the handle's own copy of the geometry before it is followed, and
 * every walk is bounded by the page count, so a pool damaged by a process
 * that died mid-update (or scribbled on by anyone) gives odd figures or an
 * SHK_ECORRUPT report, never a loop or a read outside the pool. The stats
 * take no lock: counters are relaxed loads, exact when the pool is idle and
 * a snapshot otherwise.
 */
#include "shk_slab_internal.h"

#include <stdlib.h>

/* ---- stats ------------------------------------------------------------------- */

/* The longest free run, in pages: the highest non-empty exact-length list,
 * or the longest run on the last list (runs of 64 pages or more), walked
 * without the lock: at most npages steps, each index checked, each length
 * capped by what fits, so a list changed or broken under us ends the walk
 * or gives a wrong figure, nothing worse. */
static size_t largest_run(const shk_slab_t *s)
{
    const slab_pool_t *p = s->p;
    uint64_t ne = SHK_READ_ONCE(p->nonempty), low = ne & ~(1ULL << (SLAB_NLISTS - 1));
    /* no run is longer than the pool: a list bit past it means nothing */
    if (s->npages < SLAB_NLISTS - 1)
        low &= (1ULL << s->npages) - 1;
    size_t best = low ? 64 - (size_t)__builtin_clzll(low) : 0;
    if (ne & (1ULL << (SLAB_NLISTS - 1))) {
        uint32_t i = SHK_READ_ONCE(p->free_head[SLAB_NLISTS - 1]);
        for (uint32_t g = 0; i < s->npages && g < s->npages; g++) {
            uint32_t n = SHK_READ_ONCE(s->desc[i].npages);
            if (n <= s->npages - i && n > best)
                best = n;
            i = SHK_READ_ONCE(s->desc[i].next);
        }
    }
    return best;
}

int shk_slab_stats(shk_slab_t *s, shk_slab_stats_t *st)
{
    if (!s || !st)
        return shk_error(SHK_EINVAL, "shk_slab_stats: NULL argument");
    const slab_pool_t *p = s->p;
    uint64_t pf = SHK_READ_ONCE(p->pages_free);
    uint32_t nc = SHK_READ_ONCE(p->ncaches);
    memset(st, 0, sizeof *st);
    st->page_size = s->ps;
    st->pages_total = s->npages;
    st->pages_free = pf < s->npages ? (size_t)pf : s->npages;
    st->largest_free_run = largest_run(s);
    st->fails = SHK_READ_ONCE(p->fails);
    st->run_reqs = SHK_READ_ONCE(p->run_reqs);
    st->caches = nc < SLAB_NCACHE ? nc : SLAB_NCACHE;
    st->cache_pages = s->mag_pages;
    st->nclasses = SLAB_NCLASS;
    st->repairs = SHK_READ_ONCE(p->repairs);
    st->leaked = SHK_READ_ONCE(p->leaked);
    st->leaked_bytes = SHK_READ_ONCE(p->leaked_bytes);
    return SHK_OK;
}

int shk_slab_class_stats(shk_slab_t *s, unsigned i, shk_slab_class_stat_t *out)
{
    if (!s || !out)
        return shk_error(SHK_EINVAL, "shk_slab_class_stats: NULL argument");
    if (i >= SLAB_NCLASS)
        return shk_error(SHK_ENOENT, "slab pool \"%s\": no size class %u (it has %u)", s->name, i,
                         SLAB_NCLASS);
    const slab_pool_t *p = s->p;
    const slab_class_t *k = &p->cls[i];
    uint64_t used = SHK_READ_ONCE(k->used);
    memset(out, 0, sizeof *out);
    out->size = s->csize[i];
    out->total = SHK_READ_ONCE(k->total);
    out->reqs = SHK_READ_ONCE(k->reqs) + SHK_READ_ONCE(p->cache_reqs[i]);
    out->fails = SHK_READ_ONCE(k->fails);
    /* Parked chunks, counted from the magazines: exact when their owners
     * are idle, a snapshot otherwise. */
    for (unsigned j = 0; j < SLAB_NCACHE; j++) {
        /* acquire: pairs with the claimer's release, so the body's
         * magazines are seen set up */
        uint32_t b = SHK_LOAD_ACQUIRE(p->caches[j].body);
        if (!shk_slab_body_ok(s, b))
            continue;
        slab_mag_t *m = shk_slab_mag_at(s, shk_slab_body(s, b), i);
        /* acquire: pairs with the owner's release when it pushed */
        out->cached += shk_slab_mag_parked(s, i, SHK_LOAD_ACQUIRE(m->n));
        out->reqs += SHK_READ_ONCE(m->reqs);
    }
    out->used = used > out->cached ? used - out->cached : 0;
    return SHK_OK;
}

/* ---- the checker --------------------------------------------------------------- */

#define BROKEN(...) shk_error(SHK_ECORRUPT, __VA_ARGS__)

/* A descriptor read field by field (relaxed: under the lock it is exact;
 * a read-only check takes it as a snapshot). */
typedef struct {
    uint32_t kind, cls, own, npages, head, next, prev, nfree, nchunks;
    uint64_t bits[SLAB_MAX_CHUNKS / 64];
} dview_t;

static dview_t desc_load(const shk_slab_t *s, uint32_t i)
{
    const slab_desc_t *d = &s->desc[i];
    dview_t v = {SHK_READ_ONCE(d->kind),  SHK_READ_ONCE(d->cls),    SHK_READ_ONCE(d->own),
                 SHK_READ_ONCE(d->npages), SHK_READ_ONCE(d->head),  SHK_READ_ONCE(d->next),
                 SHK_READ_ONCE(d->prev),  SHK_READ_ONCE(d->nfree),  SHK_READ_ONCE(d->nchunks),
                 {0}};
    for (unsigned w = 0; w < SLAB_MAX_CHUNKS / 64; w++)
        v.bits[w] = SHK_READ_ONCE(d->bits[w]);
    return v;
}

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
    const slab_pool_t *p = s->p;
    uint32_t active = 0, ncaches = SHK_READ_ONCE(p->ncaches);
    uint64_t *seen = NULL;
    size_t nseen = 0, cap = 0;
    int rc = SHK_OK;
    pid_t me = SHK_PID();

    for (unsigned i = 0; i < SLAB_NCACHE && rc == SHK_OK; i++) {
        const slab_cslot_t *sl = &p->caches[i];
        pid_t pid = (pid_t)SHK_READ_ONCE(sl->pid);
        uint32_t b = SHK_READ_ONCE(sl->body);
        if (!pid) {
            if (b != SLAB_NIL)
                rc = BROKEN("slab pool \"%s\": free cache slot %u names pages at %u", s->name, i,
                            b);
            continue;
        }
        active++;
        if (!shk_slab_body_ok(s, b) || SHK_READ_ONCE(s->desc[b].kind) != SLAB_K_CACHE ||
            SHK_READ_ONCE(s->desc[b].head) != b) {
            rc = BROKEN("slab pool \"%s\": cache slot %u (process %ld) names page %u, not cache "
                        "pages",
                        s->name, i, (long)pid, b);
            break;
        }
        for (unsigned j = 0; j < i; j++)
            if (SHK_READ_ONCE(p->caches[j].pid) && SHK_READ_ONCE(p->caches[j].body) == b)
                rc = BROKEN("slab pool \"%s\": cache slots %u and %u share pages at %u", s->name,
                            j, i, b);
        /* A zombie counts as dead (shk_pid_alive): it changes its magazines
         * no more, so they are checked as strictly as our own. */
        int quiet = pid == me || !shk_pid_alive(pid);
        char *body = shk_slab_body(s, b);
        for (unsigned c = 0; c < SLAB_NCLASS && rc == SHK_OK; c++) {
            slab_mag_t *m = shk_slab_mag_at(s, body, c);
            /* acquire: pairs with the owner's release when it pushed */
            uint32_t w = SHK_LOAD_ACQUIRE(m->n), mcap = SHK_READ_ONCE(m->cap);
            uint32_t n = SLAB_MAG_CNT(w) + SLAB_MAG_PEND(w), tagged = SLAB_MAG_CNT(w);
            if (mcap != s->cmcap[c] || n > mcap) {
                rc = BROKEN("slab pool \"%s\": cache of process %ld: class %u magazine holds "
                            "%u of %u",
                            s->name, (long)pid, s->csize[c], n, mcap);
                break;
            }
            for (uint32_t k = 0; k < n; k++) {
                uint64_t off = SHK_READ_ONCE(m->e[k]), v;
                uint32_t h, idx;
                if (shk_slab_chunk_at(s, off, c, &h, &idx) < 0) {
                    rc = BROKEN("slab pool \"%s\": cache of process %ld holds offset %llu, not "
                                "a used %u-byte chunk",
                                s->name, (long)pid, (unsigned long long)off, s->csize[c]);
                    break;
                }
                if (!quiet)
                    continue;
                /* entries a refill recorded and has not tagged yet have no
                 * tag to check */
                if (k < tagged && shk_slab_peek_word(s->base + off, &v) &&
                    v != shk_slab_tag(s, off)) {
                    rc = BROKEN("slab pool \"%s\": %u-byte chunk at offset %llu was written "
                                "after it was freed (it waits in the cache of process %ld)",
                                s->name, s->csize[c], (unsigned long long)off, (long)pid);
                    break;
                }
                if (nseen == cap) {
                    size_t ncap = cap ? cap * 2 : 1024;
                    uint64_t *ns = realloc(seen, ncap * sizeof *ns);
                    if (!ns) {
                        free(seen);
                        return shk_error(SHK_ENOMEM, "out of memory");
                    }
                    seen = ns;
                    cap = ncap;
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
                            s->name, (unsigned long long)seen[k]);
    }
    free(seen);
    if (rc == SHK_OK && (active != ncaches || cache_runs != active))
        rc = BROKEN("slab pool \"%s\": %u cache slots in use, the header counts %u, %u runs "
                    "of cache pages",
                    s->name, active, ncaches, cache_runs);
    return rc;
}

/* The pages, run by run: kinds, heads, lengths, slabs against their
 * bitmaps and classes. Fills the counts the lists and counters are checked
 * against. */
static int check_runs(const shk_slab_t *s, uint64_t *free_pages, uint64_t *used,
                      uint64_t *total, uint64_t *want_partial, uint32_t *cache_runs)
{
    const uint32_t np = s->npages;
    for (uint32_t i = 0; i < np;) {
        const dview_t d = desc_load(s, i);
        uint32_t n = d.npages;
        if (d.head != i)
            return BROKEN("slab pool \"%s\": page %u starts a run but its head is %u", s->name, i,
                          d.head);
        if (n == 0 || n > np - i)
            return BROKEN("slab pool \"%s\": run at page %u has length %u", s->name, i, n);
        if (d.kind != SLAB_K_FREE && d.kind != SLAB_K_SLAB && d.kind != SLAB_K_RUN &&
            d.kind != SLAB_K_CACHE)
            return BROKEN("slab pool \"%s\": page %u has unknown kind %u", s->name, i, d.kind);
        for (uint32_t j = i; j < i + n; j++) {
            uint32_t kj = SHK_READ_ONCE(s->desc[j].kind), hj = SHK_READ_ONCE(s->desc[j].head);
            if (kj != d.kind)
                return BROKEN("slab pool \"%s\": page %u is of kind %u inside a run of kind %u "
                              "starting at %u",
                              s->name, j, kj, d.kind, i);
            if (d.kind != SLAB_K_FREE && hj != i)
                return BROKEN("slab pool \"%s\": page %u points to head %u, not %u", s->name, j,
                              hj, i);
        }
        if (d.kind == SLAB_K_FREE) {
            uint32_t last = SHK_READ_ONCE(s->desc[i + n - 1].head);
            if (last != i)
                return BROKEN("slab pool \"%s\": free run at %u: last page points to %u",
                              s->name, i, last);
            if (i + n < np && SHK_READ_ONCE(s->desc[i + n].kind) == SLAB_K_FREE)
                return BROKEN("slab pool \"%s\": free runs at %u and %u are not merged", s->name,
                              i, i + n);
            *free_pages += n;
        } else if (d.kind == SLAB_K_CACHE) {
            if (n != s->mag_pages)
                return BROKEN("slab pool \"%s\": cache pages at %u are %u long, not %u", s->name,
                              i, n, s->mag_pages);
            (*cache_runs)++;
        } else if (d.kind == SLAB_K_SLAB) {
            if (d.cls >= SLAB_NCLASS)
                return BROKEN("slab pool \"%s\": slab at page %u has class %u", s->name, i,
                              d.cls);
            if (d.own > SLAB_NCACHE)
                return BROKEN("slab pool \"%s\": slab at page %u names owner %u", s->name, i,
                              d.own);
            if (n != s->cpages[d.cls] || d.nchunks != s->cnchunks[d.cls])
                return BROKEN("slab pool \"%s\": slab at page %u has %u pages/%u chunks, class "
                              "%u wants %u/%u",
                              s->name, i, n, d.nchunks, s->csize[d.cls], s->cpages[d.cls],
                              s->cnchunks[d.cls]);
            uint32_t inuse = 0;
            for (uint32_t c = 0; c < d.nchunks; c++)
                inuse += (d.bits[c / 64] >> (c % 64)) & 1;
            for (uint32_t c = d.nchunks; c < SLAB_MAX_CHUNKS; c++)
                if ((d.bits[c / 64] >> (c % 64)) & 1)
                    return BROKEN("slab pool \"%s\": slab at page %u marks chunk %u beyond its "
                                  "%u chunks",
                                  s->name, i, c, d.nchunks);
            if (inuse + d.nfree != d.nchunks)
                return BROKEN("slab pool \"%s\": slab at page %u counts %u free but its bitmap "
                              "has %u used of %u",
                              s->name, i, d.nfree, inuse, d.nchunks);
            if (inuse == 0)
                return BROKEN("slab pool \"%s\": slab at page %u is empty but not released",
                              s->name, i);
            used[d.cls] += inuse;
            total[d.cls] += d.nchunks;
            if (d.nfree)
                want_partial[d.cls]++;
        }
        i += n;
    }
    return SHK_OK;
}

/* The free-run lists: every entry a free run of the list's length, links
 * sound, the bitmap of non-empty lists right. */
static int check_free_lists(const shk_slab_t *s, uint64_t free_pages)
{
    const slab_pool_t *p = s->p;
    uint64_t listed = 0, ne = SHK_READ_ONCE(p->nonempty);
    for (unsigned li = 0; li < SLAB_NLISTS; li++) {
        uint32_t prev = SLAB_NIL, g = 0, head = SHK_READ_ONCE(p->free_head[li]);
        if (((ne >> li) & 1) != (head != SLAB_NIL))
            return BROKEN("slab pool \"%s\": free list %u and its bit disagree", s->name, li);
        for (uint32_t i = head; i != SLAB_NIL; i = SHK_READ_ONCE(s->desc[i].next)) {
            if (i >= s->npages || ++g > s->npages)
                return BROKEN("slab pool \"%s\": free list %u is broken", s->name, li);
            const dview_t d = desc_load(s, i);
            unsigned dl = d.npages < SLAB_NLISTS ? d.npages - 1 : SLAB_NLISTS - 1;
            if (d.kind != SLAB_K_FREE || d.head != i || d.npages == 0 || dl != li)
                return BROKEN("slab pool \"%s\": free list %u holds page %u, which is not a "
                              "free run of that length",
                              s->name, li, i);
            if (d.prev != prev)
                return BROKEN("slab pool \"%s\": free list %u: back link of %u is wrong",
                              s->name, li, i);
            listed += d.npages;
            prev = i;
        }
    }
    if (listed != free_pages)
        return BROKEN("slab pool \"%s\": free lists hold %llu pages, %llu are free", s->name,
                      (unsigned long long)listed, (unsigned long long)free_pages);
    return SHK_OK;
}

/* Class c's lists of partly used slabs: the shared one (owner 0), then each
 * cache's (owner slot + 1). *seen: the slabs on them. */
static int check_partial_lists(const shk_slab_t *s, unsigned c, uint64_t *seen)
{
    const slab_pool_t *p = s->p;
    for (uint32_t own = 0; own <= SLAB_NCACHE; own++) {
        uint32_t prev = SLAB_NIL, g = 0, head;
        if (own == 0) {
            head = SHK_READ_ONCE(p->cls[c].partial);
        } else {
            uint32_t b = SHK_READ_ONCE(p->caches[own - 1].body);
            if (b == SLAB_NIL)
                continue;
            if (!shk_slab_body_ok(s, b) || SHK_READ_ONCE(s->desc[b].kind) != SLAB_K_CACHE ||
                SHK_READ_ONCE(s->desc[b].head) != b)
                return BROKEN("slab pool \"%s\": cache slot %u names page %u, not a cache "
                              "body",
                              s->name, own - 1, b);
            head = SHK_READ_ONCE(shk_slab_bhdr(s, b)->partial[c]);
        }
        for (uint32_t i = head; i != SLAB_NIL; i = SHK_READ_ONCE(s->desc[i].next)) {
            if (i >= s->npages || ++g > s->npages)
                return BROKEN("slab pool \"%s\": partial list of class %u (owner %u) is "
                              "broken",
                              s->name, s->csize[c], own);
            const dview_t d = desc_load(s, i);
            if (d.kind != SLAB_K_SLAB || d.head != i || d.cls != c || d.nfree == 0)
                return BROKEN("slab pool \"%s\": partial list of class %u (owner %u) holds "
                              "page %u, which is not a partly used slab of that class",
                              s->name, s->csize[c], own, i);
            if (d.own != own)
                return BROKEN("slab pool \"%s\": slab at page %u is on the list of owner "
                              "%u but names owner %u",
                              s->name, i, own, d.own);
            if (d.prev != prev)
                return BROKEN("slab pool \"%s\": partial list of class %u (owner %u): back "
                              "link of %u is wrong",
                              s->name, s->csize[c], own, i);
            (*seen)++;
            prev = i;
        }
    }
    return SHK_OK;
}

int shk_slab_check_locked(shk_slab_t *s)
{
    const slab_pool_t *p;
    uint64_t free_pages = 0, pf;
    uint64_t used[SLAB_NCLASS] = {0}, total[SLAB_NCLASS] = {0}, want_partial[SLAB_NCLASS] = {0};
    uint32_t cache_runs = 0;
    int rc;

    if (!s)
        return shk_error(SHK_EINVAL, "NULL slab");
    p = s->p;
    /* relaxed: the handle's open already acquired it; this only sees
     * whether it was overwritten since */
    if (SHK_READ_ONCE(p->magic) != SLAB_MAGIC)
        return BROKEN("slab pool \"%s\": bad magic", s->name);
    if (p->npages != s->npages || p->mag_pages != s->mag_pages)
        return BROKEN("slab pool \"%s\": the header's geometry changed since it was opened",
                      s->name);
    uint64_t busy = SHK_READ_ONCE(p->busy);
    if (busy) {
        pid_t holder = shk_shmtx_owner(&s->mtx);
        if (holder && holder != SHK_PID() && shk_pid_alive(holder))
            return BROKEN("slab pool \"%s\": an operation is in progress (process %ld holds "
                          "the lock)",
                          s->name, (long)holder);
        return BROKEN("slab pool \"%s\": an operation (%u, on offset %llu) was interrupted by "
                      "the death of its process; the next holder of the lock repairs it",
                      s->name, SLAB_MARK_OP(busy), (unsigned long long)SLAB_MARK_OFF(busy));
    }
    if ((rc = check_runs(s, &free_pages, used, total, want_partial, &cache_runs)) != SHK_OK)
        return rc;
    if ((pf = SHK_READ_ONCE(p->pages_free)) != free_pages)
        return BROKEN("slab pool \"%s\": %llu pages are free but the counter says %llu", s->name,
                      (unsigned long long)free_pages, (unsigned long long)pf);
    if ((rc = check_free_lists(s, free_pages)) != SHK_OK)
        return rc;
    for (unsigned c = 0; c < SLAB_NCLASS; c++) {
        const slab_class_t *k = &p->cls[c];
        uint64_t seen = 0, ku = SHK_READ_ONCE(k->used), kt = SHK_READ_ONCE(k->total);
        if ((rc = check_partial_lists(s, c, &seen)) != SHK_OK)
            return rc;
        if (seen != want_partial[c])
            return BROKEN("slab pool \"%s\": class %u has %llu slabs with free chunks, %llu on "
                          "its list",
                          s->name, s->csize[c], (unsigned long long)want_partial[c],
                          (unsigned long long)seen);
        if (used[c] != ku || total[c] != kt)
            return BROKEN("slab pool \"%s\": class %u counts %llu/%llu chunks used/total, the "
                          "slabs hold %llu/%llu",
                          s->name, s->csize[c], (unsigned long long)ku, (unsigned long long)kt,
                          (unsigned long long)used[c], (unsigned long long)total[c]);
    }
    return check_caches(s, cache_runs);
}

int shk_slab_check(shk_slab_t *s)
{
    int rc;
    if (!s)
        return shk_error(SHK_EINVAL, "NULL slab");
    if (s->rdonly)
        return shk_slab_check_locked(s);
    rc = shk_slab_lock_op(s); /* repairs a pool left busy */
    if (!shk_shmtx_held(rc))
        return rc;
    rc = shk_slab_check_locked(s);
    shk_slab_unlock(s);
    return rc;
}
