/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * shk_slab_cache.c: process caches. With shk_slab_cache(slab, 1) a process
 * keeps, per size class, a magazine of free chunks in a body inside the
 * pool (a SLAB_K_CACHE run named by a slot in the header), and serves
 * shk_slab_alloc/free from it without the lock (the inline pop and push in
 * shk_slab_internal.h); the lock is taken here only to claim a slot, to
 * refill or spill half a magazine, and to give a cache back. Because the
 * body lives in the pool, the chunks of a process that died can be given
 * back (shk_slab_reap, or a claimer that takes a dead owner's slot over).
 *
 * Parked chunks stay marked in use in their slab's bitmap and carry a tag
 * (shk_slab_tag) in their first 8 bytes, so freeing one again is caught.
 * Every change keeps "entries [0, cnt + pend) are parked" true at each
 * store. A chunk moving between a magazine and the pool under the lock is
 * first named by the pool's busy mark: a process that dies while it is in
 * neither (off the magazine, not yet free; or marked in use, not yet
 * recorded) leaves it named there, and the repair gives it back to the
 * pool. It is never both parked and free: the magazine lets go of a chunk
 * before the pool takes it back, and records one after the pool gave it.
 * The owner's lock-free push and pop are recovered by the reap of a dead
 * owner's cache (slot_release).
 */
#include "shk_slab_internal.h"

/* Give the top k parked chunks of m back to the pool (lock held, operation
 * begun; the owner is this process, or dead). Returns how many went back. */
static uint32_t mag_drain(shk_slab_t *s, slab_mag_t *m, unsigned c, uint32_t k)
{
    /* acquire: pairs with the owner's release when it pushed */
    uint32_t w = SHK_LOAD_ACQUIRE(m->n), cnt = SLAB_MAG_CNT(w), pend = SLAB_MAG_PEND(w);
    uint32_t done = 0, cap = s->cmcap[c];
    if (cnt > cap)
        cnt = cap;
    if (pend > cap - cnt)
        pend = cap - cnt;
    while (done < k && cnt + pend > 0) {
        uint64_t off = SHK_READ_ONCE(m->e[cnt + pend - 1]);
        uint32_t h, idx;
        shk_slab_op_mark(s, SLAB_MARK(SLAB_OP_CACHE, off)); /* before it leaves */
        SLAB_STEP("drain: chunk named by the mark");
        if (pend)
            pend--;
        else
            cnt--;
        /* relaxed: the other readers of the count hold the lock, as we do,
         * or take it as a snapshot */
        SHK_WRITE_ONCE(m->n, SLAB_MAG_WORD(cnt, pend));
        SLAB_STEP("drain: chunk off the magazine");
        SHK_WRITE_ONCE(m->e[cnt + pend], 0);
        SLAB_KILL_ORDER(); /* off the magazine before the pool has it back */
        SLAB_STEP("drain: entry cleared");
        if (shk_slab_chunk_at(s, off, c, &h, &idx) >= 0) {
            shk_slab_chunk_release(s, c, h, idx);
            done++;
        } else {
            shk_log(SHK_LOG_ERR, "slab pool \"%s\": a process cache holds offset %llu, not a "
                                 "used %u-byte chunk; dropped",
                    s->name, (unsigned long long)off, s->csize[c]);
        }
    }
    shk_slab_op_mark(s, SLAB_MARK(SLAB_OP_CACHE, 0)); /* the last chunk moved */
    return done;
}

uint64_t shk_slab_mag_edge(shk_slab_t *s, slab_mag_t *m, unsigned c)
{
    uint32_t n = shk_slab_mag_parked(s, c, SHK_LOAD_ACQUIRE(m->n)), h, idx;
    uint64_t off;
    if (n >= s->cmcap[c] || !(off = SHK_READ_ONCE(m->e[n])))
        return 0;
    int mine = shk_slab_chunk_at(s, off, c, &h, &idx) >= 0 && !shk_slab_is_parked(s, off, c, 1);
    if (mine) {
        shk_slab_op_mark(s, SLAB_MARK(SLAB_OP_CACHE, off));
        shk_slab_chunk_release(s, c, h, idx);
    }
    SHK_WRITE_ONCE(m->e[n], 0);
    SLAB_STEP("edge: entry cleared");
    if (mine)
        shk_slab_op_mark(s, SLAB_MARK(SLAB_OP_CACHE, 0));
    return (uint64_t)mine;
}

/* Empty slot i's cache into the pool and free the slot (lock held,
 * operation begun; its owner is this process or dead). The slot lets go
 * of the body before its pages go back; a body no slot names is freed by
 * the repair. Returns the chunks given back. */
static uint64_t slot_release(shk_slab_t *s, unsigned i, int dead)
{
    slab_pool_t *p = s->p;
    slab_cslot_t *sl = &p->caches[i];
    uint32_t b = SHK_READ_ONCE(sl->body), nc = SHK_READ_ONCE(p->ncaches);
    uint64_t moved = 0;
    int body = shk_slab_body_ok(s, b) && SHK_READ_ONCE(s->desc[b].kind) == SLAB_K_CACHE &&
               SHK_READ_ONCE(s->desc[b].head) == b;
    if (body) {
        char *bp = shk_slab_body(s, b);
        for (unsigned c = 0; c < SLAB_NCLASS; c++) {
            slab_mag_t *m = shk_slab_mag_at(s, bp, c);
            if (dead)
                moved += shk_slab_mag_edge(s, m, c);
            moved += mag_drain(s, m, c, s->cmcap[c]);
            SHK_ADD_SOLE(p->cache_reqs[c], SHK_READ_ONCE(m->reqs));
            SHK_WRITE_ONCE(m->reqs, 0);
        }
        shk_slab_disown(s, i);
        SLAB_STEP("cache release: emptied");
    }
    SHK_WRITE_ONCE(sl->body, SLAB_NIL);
    SLAB_STEP("cache release: slot lets go of the body");
    if (nc)
        SHK_WRITE_ONCE(p->ncaches, nc - 1);
    /* relaxed: the slot is read under the lock, or by owns_slot (see
     * there) */
    SHK_WRITE_ONCE(sl->pid, 0);
    SLAB_STEP("cache release: slot free");
    if (body)
        shk_slab_pages_free(s, b, s->mag_pages);
    return moved;
}

int shk_slab_cache_claim(shk_slab_t *s)
{
    pid_t me = SHK_PID();
    slab_pool_t *p = s->p;
    int slot = -1, rc;
    uint32_t h = SLAB_NIL;

    if (s->cfail == me || (s->cbody && s->cpid == me))
        return -1; /* failed before, or another thread owns this process's cache */
    s->cbody = NULL; /* inherited from a parent: that cache is the parent's */
    s->cslot = -1;
    rc = shk_slab_lock_op(s);
    if (!shk_shmtx_held(rc))
        return -1;
    shk_slab_op_begin(s, SLAB_MARK(SLAB_OP_CACHE, 0));
    for (unsigned i = 0; i < SLAB_NCACHE && slot < 0; i++)
        if (SHK_READ_ONCE(p->caches[i].pid) == 0)
            slot = (int)i;
    /* A slot whose owner died without being reaped is taken over: its
     * chunks go back first. shk_pid_alive counts a zombie as dead, which is
     * right here: a zombie writes nothing more, and its pid cannot be
     * reused while it is one, so the master's later shk_slab_reap of that
     * pid finds no slot of it and returns 0. A slot of this pid is never
     * taken: it is another handle's here, or a dead predecessor's the
     * master reaps. */
    for (unsigned i = 0; i < SLAB_NCACHE && slot < 0; i++) {
        pid_t q = (pid_t)SHK_READ_ONCE(p->caches[i].pid);
        if (q != me && !shk_pid_alive(q)) {
            slot_release(s, i, 1);
            slot = (int)i;
        }
    }
    if (slot >= 0)
        h = shk_slab_pages_alloc(s, s->mag_pages, SLAB_K_CACHE, 0, 0);
    if (h != SLAB_NIL) {
        char *body = shk_slab_page_addr(s, h);
        SHK_VG_DO(VALGRIND_MAKE_MEM_UNDEFINED(body, (size_t)s->mag_pages * s->ps));
        memset(body, 0, (size_t)s->mag_pages * s->ps);
        for (unsigned c = 0; c < SLAB_NCLASS; c++) {
            SHK_WRITE_ONCE(shk_slab_mag_at(s, body, c)->cap, s->cmcap[c]);
            SHK_WRITE_ONCE(((slab_bhdr_t *)body)->partial[c], SLAB_NIL);
        }
        SLAB_STEP("claim: body laid out");
        /* release: a lock-free reader (the stats) that sees the body sees
         * its magazines empty */
        SHK_STORE_RELEASE(p->caches[slot].body, h);
        SLAB_STEP("claim: slot names the body");
        SHK_WRITE_ONCE(p->ncaches, SHK_READ_ONCE(p->ncaches) + 1);
        /* relaxed: the slot is read under the lock, or by owns_slot */
        SHK_WRITE_ONCE(p->caches[slot].pid, (uint32_t)me);
        SLAB_STEP("claim: slot owned");
    }
    shk_slab_op_end(s);
    shk_slab_unlock(s);
    if (h == SLAB_NIL) {
        s->cfail = me;
        shk_log(SHK_LOG_WARN, "slab pool \"%s\": no room for a process cache (%s); process %ld "
                              "allocates under the lock",
                s->name, slot < 0 ? "all slots taken" : "no free pages", (long)me);
        return -1;
    }
    s->cbody = shk_slab_page_addr(s, h);
    s->cpid = me;
    s->cthr = pthread_self();
    s->cslot = slot;
    return 0;
}

uint32_t shk_slab_mag_refill(shk_slab_t *s, unsigned c, slab_mag_t *m)
{
    /* relaxed: only this thread changes the count (its pend half is 0) */
    uint32_t n = SHK_READ_ONCE(m->n), k = 0, want = s->cmcap[c] / 2;
    uint32_t own = (uint32_t)s->cslot + 1;
    int rc = shk_slab_lock_op(s);
    if (!shk_shmtx_held(rc))
        return 0;
    shk_slab_op_begin(s, SLAB_MARK(SLAB_OP_CACHE, 0));
    /* Each chunk is named by the mark and taken (shk_slab_take_at), then
     * recorded as pending under the lock; they are tagged after it (their
     * memory is cold), and then counted as parked with one store. */
    while (n + k < want) {
        uint32_t h = shk_slab_chunk_slab(s, c, own), idx;
        if (h == SLAB_NIL || (idx = shk_slab_first_free(s, c, h)) == SLAB_NIL)
            break;
        uint64_t off = (uint64_t)(shk_slab_take_at(s, c, h, idx, SLAB_OP_CACHE) - s->base);
        SHK_WRITE_ONCE(m->e[n + k], off);
        SLAB_KILL_ORDER(); /* taken before the magazine counts it */
        k++;
        /* relaxed: readers of a pending count hold the lock, or take a
         * snapshot (and the fold below is a release) */
        SHK_WRITE_ONCE(m->n, SLAB_MAG_WORD(n, k));
        SLAB_STEP("refill: chunk recorded, untagged");
    }
    shk_slab_op_end(s);
    shk_slab_unlock(s);
    for (uint32_t i = 0; i < k; i++) {
        /* tagged like a freed chunk, so a stale pointer to it freed again
         * is caught here too */
        uint64_t off = SHK_READ_ONCE(m->e[n + i]);
        char *r = s->base + off;
        uint64_t tag = shk_slab_tag(s, off);
        SHK_VG_DO(VALGRIND_MAKE_MEM_UNDEFINED(r, sizeof tag));
        memcpy(r, &tag, sizeof tag);
        SHK_VG_DO(VALGRIND_MAKE_MEM_NOACCESS(r, s->csize[c]));
    }
    if (k)
        /* release: a reader of the folded count sees the entries' tags */
        SHK_STORE_RELEASE(m->n, n + k);
    return n + k;
}

uint32_t shk_slab_mag_spill(shk_slab_t *s, slab_mag_t *m, unsigned c)
{
    int rc = shk_slab_lock_op(s);
    if (!shk_shmtx_held(rc))
        return s->cmcap[c];
    shk_slab_op_begin(s, SLAB_MARK(SLAB_OP_CACHE, 0));
    mag_drain(s, m, c, s->cmcap[c] / 2);
    shk_slab_op_end(s);
    shk_slab_unlock(s);
    /* relaxed: only this thread changes the count */
    return SHK_READ_ONCE(m->n);
}

uint64_t shk_slab_cache_drain_locked(shk_slab_t *s)
{
    uint64_t moved = 0;
    if (!shk_slab_cache_mine(s))
        return 0;
    for (unsigned c = 0; c < SLAB_NCLASS; c++)
        moved += mag_drain(s, shk_slab_mag_at(s, s->cbody, c), c, s->cmcap[c]);
    return moved;
}

int shk_slab_cache(shk_slab_t *s, int on)
{
    int rc;
    if (!s)
        return shk_error(SHK_EINVAL, "NULL slab");
    if (s->rdonly)
        return shk_error(SHK_EPERM, "slab pool \"%s\" is mapped read-only", s->name);
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
    rc = shk_slab_lock_op(s);
    if (!shk_shmtx_held(rc))
        return rc;
    shk_slab_op_begin(s, SLAB_MARK(SLAB_OP_CACHE, 0));
    if (s->cslot >= 0 && s->cslot < SLAB_NCACHE &&
        SHK_READ_ONCE(s->p->caches[s->cslot].pid) == (uint32_t)s->cpid)
        slot_release(s, (unsigned)s->cslot, 0);
    shk_slab_op_end(s);
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
    if (!shk_slab_cache_mine(s))
        return SHK_OK;
    rc = shk_slab_lock_op(s);
    if (!shk_shmtx_held(rc))
        return rc;
    shk_slab_op_begin(s, SLAB_MARK(SLAB_OP_CACHE, 0));
    shk_slab_cache_drain_locked(s);
    shk_slab_op_end(s);
    shk_slab_unlock(s);
    return SHK_OK;
}

/* Does process pid own a cache slot? Read without the lock: a slot's pid
 * is written under the lock only by the claimer itself (its own pid), by a
 * claimer taking over a dead owner's slot, and cleared when the slot is
 * released. A dead process writes no more, its pid cannot come back while
 * its zombie is kept, and its last stores are ordered before its death by
 * the kernel's exit and wait. So "no slot of pid", once seen, stays true. */
static int owns_slot(const shk_slab_t *s, pid_t pid)
{
    for (unsigned i = 0; i < SLAB_NCACHE; i++)
        /* relaxed: see above */
        if (SHK_READ_ONCE(s->p->caches[i].pid) == (uint32_t)pid)
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
        return shk_error(SHK_EPERM, "slab pool \"%s\" is mapped read-only", s->name);
    /* The caller says pid is dead (a zombie included, as shk_pid_alive
     * counts it): its slots are released without asking again. */
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
                         s->name, (long)shk_shmtx_owner(&s->mtx), SHK_SLAB_REAP_WAIT_MS,
                         (long)pid);
    if (!shk_shmtx_held(rc))
        return rc;
    shk_slab_op_begin(s, SLAB_MARK(SLAB_OP_CACHE, 0));
    for (unsigned i = 0; i < SLAB_NCACHE; i++)
        if (SHK_READ_ONCE(s->p->caches[i].pid) == (uint32_t)pid)
            moved += slot_release(s, i, 1);
    shk_slab_op_end(s);
    shk_slab_unlock(s);
    return moved > INT32_MAX ? INT32_MAX : (int)moved;
}
