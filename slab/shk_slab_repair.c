/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * shk_slab_repair.c: the pool rebuilt from its pages, after a process died
 * in the middle of an operation (or an operation found the pool broken).
 * Lock held, read-write handle. The truth is per page and per slot: which
 * runs are used (a first page of kind slab, run or cache whose every page
 * names it), each slab's class and chunk bitmap, the cache slots that name
 * a cache run and the chunks their magazines hold, and the block the busy
 * mark names. Everything else is derived and written again: free runs
 * (every page not in a used run) merged and listed, slab free counts and
 * lists, owners, the counters, the cache count.
 *
 * What an operation that died leaves, and what becomes of it, is in
 * docs/failure.md (the slab part): a run, a slab or a cache body it had not
 * committed is free again (its first page does not say so, or nothing
 * names it); the block the mark names, which the operation was handing out
 * or taking back and so nobody else holds, goes back to the pool unless a
 * magazine holds it. A block is never made free while it may have an
 * owner: only pages no used run claims, empty slabs, bodies no slot names,
 * and the marked block are freed.
 *
 * The bytes may be anything (a scribbled-on pool): every index is checked
 * before it is followed, every walk is bounded by the page count, and what
 * cannot be trusted is set aside rather than guessed at (a slab whose class
 * does not fit its pages is kept as a used run, its chunks counted lost).
 * Linear in the pages, plus the parked chunks sorted once.
 */
#include "shk_slab_internal.h"

#include <stdlib.h>

/* A parked entry, for finding duplicates and the journal's chunk. */
typedef struct {
    uint64_t off;
    uint32_t pos;   /* index in its magazine */
    uint16_t slot;
    uint8_t cls;
    uint8_t flags;  /* ENT_* */
} ent_t;

enum { ENT_LIVE = 1, ENT_DROP = 2 };

typedef struct {
    uint64_t blocks, bytes;  /* found leaked */
    uint8_t valid[SLAB_NCACHE];  /* the slot names a cache body */
    uint8_t dead[SLAB_NCACHE];   /* ... of a dead owner: ours to change */
} repair_t;

static void set_kind(shk_slab_t *s, uint32_t start, uint32_t n, unsigned kind)
{
    for (uint32_t i = start; i < start + n; i++)
        SHK_WRITE_ONCE(s->desc[i].kind, (uint16_t)kind);
}

/* Is page i the first page of a used run of kind k, every page of which
 * names it? Its length, or 0. */
static uint32_t used_run_at(const shk_slab_t *s, uint32_t i, unsigned k)
{
    const slab_desc_t *d = &s->desc[i];
    uint32_t n = SHK_READ_ONCE(d->npages);
    if (SHK_READ_ONCE(d->head) != i || n == 0 || n > s->npages - i)
        return 0;
    for (uint32_t j = i + 1; j < i + n; j++)
        if (SHK_READ_ONCE(s->desc[j].kind) != k || SHK_READ_ONCE(s->desc[j].head) != i)
            return 0;
    return n;
}

/* The bits of bitmap word w that stand for chunks of a slab of nchunks. */
static uint64_t chunk_mask(unsigned w, uint32_t nchunks)
{
    if (w * 64 >= nchunks)
        return 0;
    return nchunks - w * 64 >= 64 ? ~0ULL : ~0ULL >> (64 - (nchunks - w * 64));
}

static uint32_t bits_used(const slab_desc_t *d, uint32_t nchunks)
{
    uint32_t n = 0;
    for (unsigned w = 0; w < SLAB_MAX_CHUNKS / 64; w++)
        n += (uint32_t)__builtin_popcountll(SHK_READ_ONCE(d->bits[w]) & chunk_mask(w, nchunks));
    return n;
}

/* Pass 1: every page either in a used run that holds together, or free.
 * A slab whose class does not fit it is kept as a used run (its chunks
 * may be someone's) unless no chunk is marked. */
static void pass_runs(shk_slab_t *s, repair_t *r)
{
    for (uint32_t i = 0; i < s->npages;) {
        slab_desc_t *d = &s->desc[i];
        unsigned k = SHK_READ_ONCE(d->kind);
        uint32_t n = 0;
        if (k == SLAB_K_SLAB || k == SLAB_K_RUN || k == SLAB_K_CACHE)
            n = used_run_at(s, i, k);
        if (n && k == SLAB_K_SLAB) {
            unsigned c = SHK_READ_ONCE(d->cls);
            if (c < SLAB_NCLASS && n == s->cpages[c]) {
                /* bits past the class's chunks name nothing */
                for (unsigned w = 0; w < SLAB_MAX_CHUNKS / 64; w++)
                    SHK_WRITE_ONCE(d->bits[w],
                                   SHK_READ_ONCE(d->bits[w]) & chunk_mask(w, s->cnchunks[c]));
            } else if (bits_used(d, SLAB_MAX_CHUNKS)) {
                set_kind(s, i, n, SLAB_K_RUN);
                r->blocks++;
                r->bytes += (uint64_t)n * s->ps;
                shk_log(SHK_LOG_ERR, "slab pool \"%s\": slab at page %u does not fit its class; "
                                     "its %u pages are set aside",
                        s->name, i, n);
            } else {
                n = 0; /* nothing in it: free */
            }
        }
        if (n && k == SLAB_K_CACHE && n != s->mag_pages)
            n = 0; /* not a cache body: it holds no user's data */
        if (!n) {
            SHK_WRITE_ONCE(d->kind, SLAB_K_FREE);
            i++;
        } else {
            i += n;
        }
    }
}

/* Pass 2: the slots that name a cache body; the others are cleared, and
 * cache runs no slot names are freed. */
static void pass_slots(shk_slab_t *s, repair_t *r)
{
    slab_pool_t *p = s->p;
    pid_t me = SHK_PID();
    for (unsigned i = 0; i < SLAB_NCACHE; i++) {
        slab_cslot_t *sl = &p->caches[i];
        pid_t pid = (pid_t)SHK_READ_ONCE(sl->pid);
        uint32_t b = SHK_READ_ONCE(sl->body);
        int ok = pid > 0 && b < s->npages && SHK_READ_ONCE(s->desc[b].kind) == SLAB_K_CACHE &&
                 SHK_READ_ONCE(s->desc[b].head) == b;
        for (unsigned j = 0; ok && j < i; j++)
            if (r->valid[j] && SHK_READ_ONCE(p->caches[j].body) == b)
                ok = 0;
        r->valid[i] = (uint8_t)ok;
        r->dead[i] = (uint8_t)(ok && pid != me && !shk_pid_alive(pid));
        if (!ok && (pid || b != SLAB_NIL)) {
            SHK_WRITE_ONCE(sl->body, SLAB_NIL);
            SHK_WRITE_ONCE(sl->pid, 0);
        }
    }
    for (uint32_t i = 0; i < s->npages;) {
        const slab_desc_t *d = &s->desc[i];
        unsigned k = SHK_READ_ONCE(d->kind);
        if (k == SLAB_K_FREE) {
            i++;
            continue;
        }
        uint32_t n = SHK_READ_ONCE(d->npages); /* a used run: pass 1 checked it */
        if (k == SLAB_K_CACHE) {
            int named = 0;
            for (unsigned j = 0; j < SLAB_NCACHE && !named; j++)
                named = r->valid[j] && SHK_READ_ONCE(p->caches[j].body) == i;
            if (!named)
                set_kind(s, i, n, SLAB_K_FREE);
        }
        i += n;
    }
}

/* By offset; of the copies of one, a live owner's first, then sound ones:
 * the first is the one kept. */
/* By offset; of the copies of one, a live owner's first, then sound ones:
 * the first is the one kept. */
static int ent_cmp(const void *a, const void *b)
{
    const ent_t *x = a, *y = b;
    if (x->off != y->off)
        return x->off < y->off ? -1 : 1;
    int kx = (x->flags & ENT_LIVE ? 0 : 2) + (x->flags & ENT_DROP ? 1 : 0);
    int ky = (y->flags & ENT_LIVE ? 0 : 2) + (y->flags & ENT_DROP ? 1 : 0);
    return kx - ky;
}

static int ent_pos_cmp(const void *a, const void *b)
{
    const ent_t *x = a, *y = b;
    if (x->slot != y->slot)
        return x->slot < y->slot ? -1 : 1;
    if (x->cls != y->cls)
        return x->cls < y->cls ? -1 : 1;
    return x->pos < y->pos ? -1 : x->pos > y->pos;
}

/* The parked entries of every cache, sorted by offset (NULL when there was
 * no memory for them: then the magazines are read again each time). */
typedef struct {
    ent_t *v;
    size_t n;
    int listed;
} parked_t;

static slab_mag_t *mag_of(const shk_slab_t *s, unsigned slot, unsigned c)
{
    return shk_slab_mag_at(s, shk_slab_body(s, SHK_READ_ONCE(s->p->caches[slot].body)), c);
}

/* Does a magazine (a sound entry of a dead one, any of a live one) hold
 * off? */
static int held(const shk_slab_t *s, const repair_t *r, const parked_t *pk, uint64_t off)
{
    if (pk->listed) {
        size_t lo = 0, hi = pk->n;
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            if (pk->v[mid].off < off)
                lo = mid + 1;
            else
                hi = mid;
        }
        return lo < pk->n && pk->v[lo].off == off && !(pk->v[lo].flags & ENT_DROP);
    }
    for (unsigned i = 0; i < SLAB_NCACHE; i++)
        for (unsigned c = 0; r->valid[i] && c < SLAB_NCLASS; c++) {
            slab_mag_t *m = mag_of(s, i, c);
            uint32_t k = shk_slab_mag_parked(s, c, SHK_LOAD_ACQUIRE(m->n));
            for (uint32_t j = 0; j < k; j++)
                if (SHK_READ_ONCE(m->e[j]) == off)
                    return 1;
        }
    return 0;
}

/* The chunk at off, if it is one marked in use that no magazine holds,
 * goes back to the pool (its bit only: pass 4 recounts). */
static void give_back_chunk(shk_slab_t *s, const repair_t *r, const parked_t *pk, uint64_t off)
{
    uint32_t h, idx;
    if (!off || shk_slab_chunk_at(s, off, SLAB_NCLASS, &h, &idx) < 0 || held(s, r, pk, off))
        return;
    slab_desc_t *d = &s->desc[h];
    SHK_WRITE_ONCE(d->bits[idx / 64], SHK_READ_ONCE(d->bits[idx / 64]) & ~(1ULL << (idx % 64)));
}

/* The tag a refill that died had not yet written. */
static void tag_chunk(shk_slab_t *s, unsigned c, uint64_t off)
{
    uint64_t tag = shk_slab_tag(s, off);
    char *ch = s->base + off;
    SHK_VG_DO(VALGRIND_MAKE_MEM_UNDEFINED(ch, sizeof tag));
    memcpy(ch, &tag, sizeof tag);
    SHK_VG_DO(VALGRIND_MAKE_MEM_NOACCESS(ch, s->csize[c]));
}

/* Pass 3: the magazines. A dead owner's keep the entries that are chunks
 * of their class marked in use, each once (pending ones tagged, as their
 * refill would have done), and the rest of the magazine is zeroed; a live
 * owner's are only read. The chunk the busy mark names (mark_off), and the
 * one a dead owner's push or pop left just past its count, go back to the
 * pool unless a magazine holds them. */
static void pass_magazines(shk_slab_t *s, repair_t *r, uint64_t mark_off)
{
    const slab_pool_t *p = s->p;
    parked_t pk = {NULL, 0, 1};
    size_t cap = 0;
    uint64_t edge[SLAB_NCACHE][SLAB_NCLASS];

    memset(edge, 0, sizeof edge);
    for (unsigned i = 0; i < SLAB_NCACHE; i++) {
        if (!r->valid[i])
            continue;
        for (unsigned c = 0; c < SLAB_NCLASS; c++) {
            slab_mag_t *m = mag_of(s, i, c);
            if (r->dead[i] && SHK_READ_ONCE(m->cap) != s->cmcap[c])
                SHK_WRITE_ONCE(m->cap, s->cmcap[c]);
            /* acquire: pairs with a live owner's release when it pushed */
            uint32_t w = SHK_LOAD_ACQUIRE(m->n), k = shk_slab_mag_parked(s, c, w);
            if (r->dead[i] && k < s->cmcap[c])
                edge[i][c] = SHK_READ_ONCE(m->e[k]);
            for (uint32_t j = 0; j < k && pk.listed; j++) {
                if (pk.n == cap) {
                    size_t ncap = cap ? cap * 2 : 1024;
                    ent_t *nv = realloc(pk.v, ncap * sizeof *nv);
                    if (!nv) {
                        pk.listed = 0; /* out of memory: no duplicate search */
                        break;
                    }
                    pk.v = nv;
                    cap = ncap;
                }
                uint64_t off = SHK_READ_ONCE(m->e[j]), tag;
                uint32_t h, idx;
                uint8_t f = r->dead[i] ? 0 : ENT_LIVE;
                if (!(f & ENT_LIVE) && shk_slab_chunk_at(s, off, c, &h, &idx) < 0) {
                    f |= ENT_DROP;
                } else if (!(f & ENT_LIVE) && j < SLAB_MAG_CNT(w) &&
                           shk_slab_peek_word(s->base + off, &tag) &&
                           tag != shk_slab_tag(s, off)) {
                    /* parked and tagged, says the magazine, but the tag is
                     * gone: written after it was freed, or the entry names
                     * a block that is someone's. Neither freed nor touched:
                     * set aside. */
                    f |= ENT_DROP;
                    r->blocks++;
                    r->bytes += s->csize[c];
                    shk_log(SHK_LOG_ERR, "slab pool \"%s\": %u-byte chunk at offset %llu, parked "
                                         "by dead process %ld, was written after it was freed; "
                                         "set aside",
                            s->name, s->csize[c], (unsigned long long)off,
                            (long)SHK_READ_ONCE(p->caches[i].pid));
                }
                pk.v[pk.n++] = (ent_t){off, j, (uint16_t)i, (uint8_t)c, f};
            }
        }
    }
    if (pk.listed && pk.n) {
        qsort(pk.v, pk.n, sizeof *pk.v, ent_cmp);
        for (size_t j = 1; j < pk.n; j++)
            if (pk.v[j].off == pk.v[j - 1].off && !(pk.v[j].flags & ENT_LIVE))
                pk.v[j].flags |= ENT_DROP;
    }
    give_back_chunk(s, r, &pk, mark_off);
    for (unsigned i = 0; i < SLAB_NCACHE; i++)
        for (unsigned c = 0; r->dead[i] && c < SLAB_NCLASS; c++)
            give_back_chunk(s, r, &pk, edge[i][c]);

    /* the dead owners' magazines: what is kept, then zeros */
    if (pk.listed && pk.n)
        qsort(pk.v, pk.n, sizeof *pk.v, ent_pos_cmp);
    size_t a = 0;
    for (unsigned i = 0; i < SLAB_NCACHE; i++) {
        for (unsigned c = 0; r->valid[i] && c < SLAB_NCLASS; c++) {
            size_t b = a;
            while (pk.listed && b < pk.n && pk.v[b].slot == i && pk.v[b].cls == c)
                b++;
            if (r->dead[i]) {
                slab_mag_t *m = mag_of(s, i, c);
                uint32_t w = SHK_READ_ONCE(m->n), k = shk_slab_mag_parked(s, c, w), kept = 0;
                for (uint32_t j = 0; j < k; j++) {
                    uint64_t off;
                    if (pk.listed) {
                        if (a + j >= b || (pk.v[a + j].flags & ENT_DROP))
                            continue;
                        off = pk.v[a + j].off;
                    } else {
                        uint32_t h, idx;
                        uint64_t tag;
                        off = SHK_READ_ONCE(m->e[j]);
                        if (shk_slab_chunk_at(s, off, c, &h, &idx) < 0 ||
                            (j < SLAB_MAG_CNT(w) && shk_slab_peek_word(s->base + off, &tag) &&
                             tag != shk_slab_tag(s, off)))
                            continue;
                    }
                    if (j >= SLAB_MAG_CNT(w))
                        tag_chunk(s, c, off); /* recorded by a refill that died */
                    SHK_WRITE_ONCE(m->e[kept], off);
                    kept++;
                }
                for (uint32_t j = kept; j < s->cmcap[c]; j++)
                    SHK_WRITE_ONCE(m->e[j], 0);
                SHK_STORE_RELEASE(m->n, SLAB_MAG_WORD(kept, 0));
            }
            a = b;
        }
    }
    free(pk.v);
}

/* Pass 4: slabs. Free counts and owners from the bitmaps and the slots,
 * every partly used slab on its one list, empty ones freed, the class
 * counters. */
static void pass_slabs(shk_slab_t *s, repair_t *r)
{
    slab_pool_t *p = s->p;
    uint64_t used[SLAB_NCLASS] = {0}, total[SLAB_NCLASS] = {0};
    for (unsigned c = 0; c < SLAB_NCLASS; c++)
        SHK_WRITE_ONCE(p->cls[c].partial, SLAB_NIL);
    for (unsigned i = 0; i < SLAB_NCACHE; i++)
        if (r->valid[i]) {
            slab_bhdr_t *bh = shk_slab_bhdr(s, SHK_READ_ONCE(p->caches[i].body));
            for (unsigned c = 0; c < SLAB_NCLASS; c++)
                SHK_WRITE_ONCE(bh->partial[c], SLAB_NIL);
        }
    for (uint32_t h = 0; h < s->npages;) {
        slab_desc_t *d = &s->desc[h];
        unsigned k = SHK_READ_ONCE(d->kind);
        if (k == SLAB_K_FREE) {
            h++;
            continue;
        }
        uint32_t n = SHK_READ_ONCE(d->npages);
        if (k == SLAB_K_SLAB) {
            unsigned c = SHK_READ_ONCE(d->cls);
            uint32_t nch = s->cnchunks[c], inuse = bits_used(d, nch);
            if (!inuse) {
                set_kind(s, h, n, SLAB_K_FREE);
                h += n;
                continue;
            }
            uint32_t own = SHK_READ_ONCE(d->own);
            if (own > SLAB_NCACHE || (own && !r->valid[own - 1]))
                own = 0;
            SHK_WRITE_ONCE(d->own, own);
            SHK_WRITE_ONCE(d->nchunks, (uint16_t)nch);
            SHK_WRITE_ONCE(d->nfree, (uint16_t)(nch - inuse));
            for (uint32_t i = h; i < h + n; i++)
                SHK_WRITE_ONCE(s->desc[i].cls, (uint16_t)c);
            SHK_WRITE_ONCE(d->next, SLAB_NIL);
            SHK_WRITE_ONCE(d->prev, SLAB_NIL);
            if (inuse < nch) {
                _Atomic uint32_t *list =
                    own ? &shk_slab_bhdr(s, SHK_READ_ONCE(p->caches[own - 1].body))->partial[c]
                        : &p->cls[c].partial;
                shk_slab_list_push(s, list, h);
            }
            used[c] += inuse;
            total[c] += nch;
        }
        h += n;
    }
    for (unsigned c = 0; c < SLAB_NCLASS; c++) {
        SHK_WRITE_ONCE(p->cls[c].used, used[c]);
        SHK_WRITE_ONCE(p->cls[c].total, total[c]);
    }
}

/* Pass 5: the free pages, merged into runs, marked and listed. */
static uint64_t pass_free(shk_slab_t *s)
{
    slab_pool_t *p = s->p;
    uint64_t nonempty = 0, free_pages = 0;
    for (unsigned li = 0; li < SLAB_NLISTS; li++)
        SHK_WRITE_ONCE(p->free_head[li], SLAB_NIL);
    for (uint32_t i = 0; i < s->npages;) {
        if (SHK_READ_ONCE(s->desc[i].kind) != SLAB_K_FREE) {
            i += SHK_READ_ONCE(s->desc[i].npages); /* a used run, >= 1 */
            continue;
        }
        uint32_t start = i;
        while (i < s->npages && SHK_READ_ONCE(s->desc[i].kind) == SLAB_K_FREE) {
            slab_desc_t *d = &s->desc[i];
            SHK_WRITE_ONCE(d->head, start);
            SHK_WRITE_ONCE(d->own, 0);
            SHK_WRITE_ONCE(d->cls, 0);
            SHK_WRITE_ONCE(d->nfree, 0);
            SHK_WRITE_ONCE(d->nchunks, 0);
            SHK_WRITE_ONCE(d->npages, 0);
            SHK_WRITE_ONCE(d->next, SLAB_NIL);
            SHK_WRITE_ONCE(d->prev, SLAB_NIL);
            for (unsigned w = 0; w < SLAB_MAX_CHUNKS / 64; w++)
                SHK_WRITE_ONCE(d->bits[w], 0);
            i++;
        }
        uint32_t n = i - start;
        unsigned li = n < SLAB_NLISTS ? n - 1 : SLAB_NLISTS - 1;
        SHK_WRITE_ONCE(s->desc[start].npages, n);
        shk_slab_list_push(s, &p->free_head[li], start);
        nonempty |= 1ULL << li;
        free_pages += n;
    }
    SHK_WRITE_ONCE(p->nonempty, nonempty);
    return free_pages;
}

static const char *op_name(uint32_t op)
{
    switch (op) {
    case SLAB_OP_ALLOC: return "an allocation";
    case SLAB_OP_FREE: return "a free";
    case SLAB_OP_CACHE: return "a process-cache operation";
    case SLAB_OP_REPAIR: return "a repair";
    case 0: return "no operation";
    default: return "an unknown operation";
    }
}

/* The marked block, if it is a page run (pass 1 kept it: its operation
 * had committed it), goes back. */
static void give_back_run(shk_slab_t *s, uint64_t off)
{
    if (off < s->pages_off || off - s->pages_off >= s->pages_len ||
        (off - s->pages_off) % s->ps)
        return;
    uint32_t q = (uint32_t)((off - s->pages_off) >> s->pshift);
    if (SHK_READ_ONCE(s->desc[q].kind) == SLAB_K_RUN && SHK_READ_ONCE(s->desc[q].head) == q)
        set_kind(s, q, SHK_READ_ONCE(s->desc[q].npages), SLAB_K_FREE);
}

uint64_t shk_slab_repair(shk_slab_t *s)
{
    slab_pool_t *p = s->p;
    repair_t r;
    uint64_t mark = SHK_READ_ONCE(p->busy), free_pages;
    uint64_t off = SLAB_MARK_OP(mark) ? SLAB_MARK_OFF(mark) : 0;
    uint32_t ncaches = 0;

    memset(&r, 0, sizeof r);
    /* a repair that dies is run again by the next holder, for the same
     * block */
    SHK_WRITE_ONCE(p->busy, SLAB_MARK(SLAB_OP_REPAIR, off));
    SLAB_KILL_ORDER();
    pass_runs(s, &r);
    pass_slots(s, &r);
    pass_magazines(s, &r, off);
    give_back_run(s, off);
    pass_slabs(s, &r);
    free_pages = pass_free(s);
    SHK_WRITE_ONCE(p->pages_free, free_pages);
    for (unsigned i = 0; i < SLAB_NCACHE; i++)
        ncaches += r.valid[i];
    SHK_WRITE_ONCE(p->ncaches, ncaches);
    SHK_ADD_SOLE(p->leaked, r.blocks);
    SHK_ADD_SOLE(p->leaked_bytes, r.bytes);
    SHK_ADD_SOLE(p->repairs, 1);
    shk_log(SHK_LOG_WARN, "slab pool \"%s\": repaired after %s was cut short%s: %llu blocks "
                          "(%llu bytes) set aside, %llu pages free",
            s->name, s->damaged ? "damage was found" : op_name(SLAB_MARK_OP(mark)),
            off ? " (its block went back)" : "", (unsigned long long)r.blocks,
            (unsigned long long)r.bytes, (unsigned long long)free_pages);
    s->damaged = 0;
    SLAB_KILL_ORDER(); /* rebuilt before the mark goes */
    SHK_WRITE_ONCE(p->busy, 0);
    return r.blocks;
}

int shk_slab_repair_locked(shk_slab_t *s)
{
    if (!s)
        return shk_error(SHK_EINVAL, "NULL slab");
    if (s->rdonly)
        return shk_error(SHK_EPERM, "slab pool \"%s\" is mapped read-only", s->name);
    uint64_t n = shk_slab_repair(s);
    return n > INT32_MAX ? INT32_MAX : (int)n;
}
