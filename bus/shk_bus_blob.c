/*
 * shk_bus_blob.c: the blocks of large alerts. A large alert's data is stored
 * once in the zone's slab, in a block that names, for each target slot, the
 * position of the record that refers to it in that slot's queue. What holds
 * a block (the rule at the top of shk_bus_internal.h): its sender until it
 * seals it, and slot i while the head of queue i has not passed its record.
 * A receiver thus lets go by moving its head, and one that dies at any step
 * holds exactly what its queue says; nothing is counted that a death could
 * leave counted. Whoever lets go (a receiver moving its head, the sender
 * sealing) looks whether anyone still holds the block, and the last one to
 * look frees it (the fences below see to it that someone is last); the sweep
 * that shk_bus_reap runs after a death seals the blocks of dead senders and
 * frees what nobody holds, which covers every step a process can die at.
 *
 * The blocks are listed in the bus header. The list, and every allocation or
 * free of a block, change under the slab pool's lock, with a one-entry
 * journal (jop, joff) written first: a process killed inside the lock leaves
 * it set, and the next process that takes the lock for the bus (the master's
 * sweep, a sender, a receiver) finishes or undoes the change before anything
 * else. That works because nothing else allocates from a bus's zone (the
 * supervisor gives the bus a zone of its own); see docs/failure.md.
 *
 * Every field of a block is read from the mapping and checked before use
 * (offsets inside the slab, sizes inside the block, slot indexes below the
 * slot count); a block that fails is not one of ours.
 */
#include "shk_bus_internal.h"

/* The most blocks a list can hold: each takes its header and at least
 * large_min bytes (a forged header's list is cut there). */
static uint64_t max_blobs(const shk_bus_t *bus)
{
    return bus->slab_size / (sizeof(bus_blob_t) + bus->large_min) + 1;
}

/* An allocated block of the slab at offset off that may be a large
 * alert's: inside the slab, aligned, the start of a block of at least a
 * block header, and not the bus header or a ring. *usable receives its
 * size. A lock-free snapshot unless the caller holds the pool's lock:
 * another process may free it right after. NULL otherwise. */
static bus_blob_t *block_at(const shk_bus_t *bus, uint64_t off, size_t *usable)
{
    if (off == 0 || off % 16 || !shk_span_ok(off, sizeof(bus_blob_t), bus->slab_size))
        return NULL;
    bus_blob_t *bl = shk_slab_ptr(bus->slab, off);
    *usable = bl ? shk_slab_usable(bus->slab, bl) : 0;
    if (*usable < sizeof *bl || (void *)bl == (void *)bus->b)
        return NULL;
    for (unsigned i = 0; i < bus->nslots; i++) /* a damaged record naming a ring */
        if ((char *)bl == bus->rings[i])
            return NULL;
    return bl;
}

/* A block as checked: its fields that size it, read once, so that what was
 * checked is what is used (another process may change the block, or free
 * and reuse it, while a lock-free reader looks). */
typedef struct blob_view_s {
    bus_blob_t *bl;
    uint64_t targets; /* below the slot count */
    uint64_t len;     /* the data's bytes */
    uint64_t hdr;     /* the header's bytes (the data starts there) */
} blob_view_t;

/* The block at slab offset off, if one can be there (block_at), with its
 * targets slots of this bus and its header and data inside the block. */
static bus_blob_t *blob_at(const shk_bus_t *bus, uint64_t off, blob_view_t *v)
{
    size_t usable;
    bus_blob_t *bl = block_at(bus, off, &usable);
    if (!bl)
        return NULL;
    v->targets = bl->targets;
    v->len = bl->len;
    if (bus->nslots < 64 && v->targets >> bus->nslots)
        return NULL;
    v->hdr = shk_bus_blob_hdr((unsigned)__builtin_popcountll(v->targets));
    if (v->len > usable || v->hdr > usable - v->len)
        return NULL;
    v->bl = bl;
    return bl;
}

/* Nobody holds the block: it is sealed and every target's head has passed
 * its record (or the target has none). */
static int blob_unheld(const shk_bus_t *bus, const blob_view_t *v)
{
    /* acquire: pairs with the sealer's release, so the positions it wrote
     * are the ones read below */
    if (!SHK_LOAD_ACQUIRE(v->bl->sealed))
        return 0;
    unsigned k = 0;
    for (unsigned i = 0; i < bus->nslots && i < 64; i++) {
        if (!(v->targets >> i & 1))
            continue;
        /* relaxed: ordered by the acquire above (or by the caller's fence) */
        uint64_t p = SHK_READ_ONCE(v->bl->pos[k++]);
        if (p == BUS_POS_NONE)
            continue;
        /* acquire: pairs with the receiver's release of head, so every read
         * it made of the block is done before we free it */
        if (p == BUS_POS_UNSET || SHK_LOAD_ACQUIRE(bus->b->slots[i].head) <= p)
            return 0;
    }
    return 1;
}

/* ---- the list and the journal, under the pool's lock ---------------------------------- */

/* Stores of the journal and of the change it describes must reach memory
 * in program order, so that a process killed between any two of them has
 * always written the journal before the change and cleared it after: x86
 * keeps stores in order, and the release fence keeps the compiler (and
 * weaker machines) from moving them across. */
#define JOURNAL_ORDER() SHK_FENCE(release)

static void journal(bus_hdr_t *b, uint32_t op, uint64_t off)
{
    /* relaxed: read only under the pool's lock, by the next holder */
    SHK_WRITE_ONCE(b->joff, off);
    JOURNAL_ORDER();
    SHK_WRITE_ONCE(b->jop, op);
    JOURNAL_ORDER();
}

static void journal_done(bus_hdr_t *b)
{
    JOURNAL_ORDER();
    SHK_WRITE_ONCE(b->jop, 0);
}

/* Take bl (at off) off the list. */
static void unlink_locked(shk_bus_t *bus, bus_blob_t *bl, uint64_t off)
{
    bus_hdr_t *b = bus->b;
    /* relaxed everywhere: the list changes under the pool's lock; the
     * lock-free readers (stats) take any snapshot */
    uint64_t nx = SHK_READ_ONCE(bl->next), pv = SHK_READ_ONCE(bl->prev);
    blob_view_t vn, vp;
    bus_blob_t *n = blob_at(bus, nx, &vn), *p = blob_at(bus, pv, &vp);
    if (pv == 0 ? SHK_READ_ONCE(b->blobs) != off : !p || SHK_READ_ONCE(p->next) != off) {
        /* the back link is wrong (a damaged mapping): find who points here */
        uint64_t cur = SHK_READ_ONCE(b->blobs), guard = max_blobs(bus);
        p = NULL;
        pv = 0;
        while (cur && cur != off && guard--) {
            bus_blob_t *c = blob_at(bus, cur, &vp);
            if (!c)
                break;
            pv = cur;
            p = c;
            cur = SHK_READ_ONCE(c->next);
        }
        if (cur != off) {
            shk_log(SHK_LOG_ERR, "bus: block %llu of a large alert is not on the list",
                    (unsigned long long)off);
            return;
        }
    }
    if (p)
        SHK_WRITE_ONCE(p->next, nx);
    else
        SHK_WRITE_ONCE(b->blobs, nx);
    if (n)
        SHK_WRITE_ONCE(n->prev, pv);
}

/* Free the block bl at off, which nobody holds. */
static void free_locked(shk_bus_t *bus, bus_blob_t *bl, uint64_t off)
{
    bus_hdr_t *b = bus->b;
    journal(b, BUS_JOP_FREE, off);
    /* relaxed: a block with magic 0 is not one a record can name any more */
    SHK_WRITE_ONCE(bl->magic, 0);
    unlink_locked(bus, bl, off);
    /* relaxed: counters for the stats, written under the lock */
    SHK_WRITE_ONCE(b->blob_count, SHK_READ_ONCE(b->blob_count) - 1);
    SHK_WRITE_ONCE(b->blob_bytes, SHK_READ_ONCE(b->blob_bytes) - bl->size);
    SHK_BUS_STEP(bus, SHK_BUS_STEP_FREEING);
    shk_slab_free_locked(bus->slab, bl);
    journal_done(b);
}

/* Finish what a process killed inside the pool's lock left half done (the
 * journal says what), and check the list on the way: back links rewritten
 * from the forward ones, counts recomputed, a link that leads nowhere cut. */
static void repair_locked(shk_bus_t *bus)
{
    bus_hdr_t *b = bus->b;
    uint32_t op = SHK_READ_ONCE(b->jop);
    uint64_t joff = SHK_READ_ONCE(b->joff), prev = 0, n = 0, bytes = 0, guard = max_blobs(bus);
    _Atomic uint64_t *link = &b->blobs;
    int found = 0;

    for (uint64_t off = SHK_READ_ONCE(b->blobs); off;) {
        blob_view_t v;
        bus_blob_t *bl = blob_at(bus, off, &v);
        /* the block being freed has magic 0 already */
        int ours = bl && (SHK_READ_ONCE(bl->magic) == BUS_BLOB_MAGIC ||
                          (op == BUS_JOP_FREE && off == joff));
        if (!ours || !guard--) {
            shk_log(SHK_LOG_ERR, "bus: the list of large alerts' blocks is broken at %llu; "
                    "cut there", (unsigned long long)off);
            SHK_WRITE_ONCE(*link, 0);
            break;
        }
        found |= off == joff;
        SHK_WRITE_ONCE(bl->prev, prev);
        n++;
        bytes += bl->size;
        prev = off;
        link = &bl->next;
        off = SHK_READ_ONCE(bl->next);
    }
    SHK_WRITE_ONCE(b->blob_count, n);
    SHK_WRITE_ONCE(b->blob_bytes, bytes);
    /* the block the journal names: its header may be anything (not written
     * yet, or filled by a debug build's free) */
    size_t usable;
    bus_blob_t *bl = block_at(bus, joff, &usable);
    if (op == BUS_JOP_NEW && !joff) {
        shk_log(SHK_LOG_WARN, "bus: a process died allocating a large alert's block (a block "
                "may be lost, as in any allocation killed inside the pool's lock)");
    } else if (op == BUS_JOP_NEW && !found && bl) {
        /* allocated, never listed: no record can name it */
        shk_slab_free_locked(bus->slab, bl);
    } else if (op == BUS_JOP_FREE && found && bl) {
        SHK_WRITE_ONCE(bl->magic, 0);
        unlink_locked(bus, bl, joff);
        SHK_WRITE_ONCE(b->blob_count, n - 1);
        SHK_WRITE_ONCE(b->blob_bytes, bytes - bl->size);
        shk_slab_free_locked(bus->slab, bl);
    } else if (op == BUS_JOP_FREE && !found && bl) {
        /* unlinked, not freed yet (nothing else allocates from the zone, and
         * every allocation for the bus repairs first: it is still ours; its
         * magic may be gone, a debug build fills a block it frees first) */
        shk_slab_free_locked(bus->slab, bl);
    }
    if (op)
        shk_log(SHK_LOG_WARN, "bus: finished the change of the large alerts' list that a dead "
                "process left (%s of block %llu)", op == BUS_JOP_NEW ? "allocation" : "free",
                (unsigned long long)joff);
    journal_done(b);
}

/* Take the pool's lock for a change to the list (timeout_ms < 0: no
 * limit), repairing first what a process killed inside it left. */
static int blob_lock(shk_bus_t *bus, int timeout_ms)
{
    int rc = timeout_ms < 0 ? shk_slab_lock(bus->slab)
                            : shk_shmtx_timedlock(shk_slab_mutex(bus->slab), (unsigned)timeout_ms);
    if (!shk_shmtx_held(rc))
        return rc;
    if (rc == SHK_EOWNERDEAD && shk_slab_check_locked(bus->slab) != SHK_OK)
        shk_log(SHK_LOG_ERR, "bus \"%s\": %s", shk_zone_name(bus->zone), shk_last_errmsg());
    /* relaxed: written under this lock */
    if (SHK_UNLIKELY(SHK_READ_ONCE(bus->b->jop) != 0))
        repair_locked(bus);
    return SHK_OK;
}

/* Seal the block of a sender that is gone: the positions it never wrote,
 * and those whose record it never made visible (it died inside the claim
 * lock, tail not moved past it), have no record. */
static void seal_dead_locked(shk_bus_t *bus, const blob_view_t *v)
{
    bus_blob_t *bl = v->bl;
    unsigned k = 0;
    for (unsigned i = 0; i < bus->nslots && i < 64; i++) {
        if (!(v->targets >> i & 1))
            continue;
        /* relaxed: the sender is dead, nobody else writes them */
        uint64_t p = SHK_READ_ONCE(bl->pos[k]);
        /* acquire: pairs with a producer's release of tail */
        if (p == BUS_POS_UNSET ||
            (p != BUS_POS_NONE && SHK_LOAD_ACQUIRE(bus->b->slots[i].tail) <= p))
            SHK_WRITE_ONCE(bl->pos[k], BUS_POS_NONE);
        k++;
    }
    /* release: as the sender's own seal */
    SHK_STORE_RELEASE(bl->sealed, 1);
}

/* The sweep's work, under the lock: returns the blocks freed. */
static int sweep_locked(shk_bus_t *bus, pid_t dead)
{
    uint64_t guard = max_blobs(bus);
    int freed = 0;
    for (uint64_t off = SHK_READ_ONCE(bus->b->blobs); off && guard--;) {
        blob_view_t v;
        bus_blob_t *bl = blob_at(bus, off, &v);
        if (!bl || SHK_READ_ONCE(bl->magic) != BUS_BLOB_MAGIC) {
            repair_locked(bus); /* a broken list: cut, and stop here */
            break;
        }
        uint64_t next = SHK_READ_ONCE(bl->next);
        /* relaxed: the sender's release is what blob_unheld acquires; here
         * only "not yet" matters */
        if (!SHK_READ_ONCE(bl->sealed) && (bl->pid == dead || !shk_pid_alive(bl->pid)))
            seal_dead_locked(bus, &v);
        if (blob_unheld(bus, &v)) {
            free_locked(bus, bl, off);
            freed++;
        }
        SHK_BUS_STEP(bus, SHK_BUS_STEP_SWEEP);
        off = next;
    }
    return freed;
}

/* ---- the calls -------------------------------------------------------------------------- */

bus_blob_t *shk_bus_blob_new(shk_bus_t *bus, size_t len, uint64_t targets, uint64_t *offp)
{
    bus_hdr_t *b = bus->b;
    unsigned n = (unsigned)__builtin_popcountll(targets);
    uint64_t hdr = shk_bus_blob_hdr(n);
    int rc;
    if ((uint64_t)len > SIZE_MAX - hdr) {
        shk_error(SHK_ENOMEM, "an alert of %zu bytes does not fit the address space", len);
        return NULL;
    }
    if ((rc = blob_lock(bus, -1)) != SHK_OK) {
        shk_error(rc, "bus: the slab pool's lock: %s", shk_last_errmsg());
        return NULL;
    }
    journal(b, BUS_JOP_NEW, 0);
    bus_blob_t *bl = shk_slab_alloc_locked(bus->slab, (size_t)(hdr + len));
    if (!bl && sweep_locked(bus, 0) > 0) { /* a dead sender's block may be in the way */
        journal(b, BUS_JOP_NEW, 0);           /* the sweep's frees used the journal */
        bl = shk_slab_alloc_locked(bus->slab, (size_t)(hdr + len));
    }
    if (!bl) {
        journal_done(b);
        shk_slab_unlock(bus->slab);
        shk_error(SHK_ENOMEM, "no room in zone \"%s\" for an alert of %zu bytes",
                  shk_zone_name(bus->zone), len);
        return NULL;
    }
    uint64_t off = shk_slab_off(bus->slab, bl);
    /* relaxed: under the lock */
    SHK_WRITE_ONCE(b->joff, off);
    JOURNAL_ORDER();
    bl->id = ++b->blob_seq;
    bl->len = len;
    bl->size = shk_slab_usable(bus->slab, bl);
    bl->targets = targets;
    bl->pid = (int32_t)SHK_PID();
    /* relaxed, all of it: the block is published to the lock-free readers by
     * the list (below) or by the records naming it (their release) */
    SHK_WRITE_ONCE(bl->sealed, 0);
    for (unsigned k = 0; k < n; k++)
        SHK_WRITE_ONCE(bl->pos[k], BUS_POS_UNSET);
    SHK_WRITE_ONCE(bl->magic, BUS_BLOB_MAGIC);
    uint64_t first = SHK_READ_ONCE(b->blobs);
    blob_view_t vf;
    bus_blob_t *f = blob_at(bus, first, &vf);
    SHK_WRITE_ONCE(bl->next, f ? first : 0);
    SHK_WRITE_ONCE(bl->prev, 0);
    if (f)
        SHK_WRITE_ONCE(f->prev, off);
    /* release: a lock-free reader that finds the block on the list sees it
     * whole */
    SHK_STORE_RELEASE(b->blobs, off);
    SHK_WRITE_ONCE(b->blob_count, SHK_READ_ONCE(b->blob_count) + 1);
    SHK_WRITE_ONCE(b->blob_bytes, SHK_READ_ONCE(b->blob_bytes) + bl->size);
    journal_done(b);
    shk_slab_unlock(bus->slab);
    /* relaxed: a statistics counter every sender adds to */
    SHK_ADD_RELAXED(b->large, 1);
    *offp = off;
    return bl;
}

/* Someone let go of the block (off, id): free it if nobody holds it. */
static void let_go(shk_bus_t *bus, uint64_t off, uint64_t id)
{
    /* seq_cst fence: everyone who lets go (a receiver's release of head,
     * the sender's seal) stores, fences, then reads what the others stored.
     * In the fences' single total order the last one's reads see every
     * store before the others' fences, so whoever is last finds the block
     * unheld: it is never left allocated with nobody to free it. Two may
     * both find it so; the lock below decides. */
    SHK_FENCE(seq_cst);
    blob_view_t v;
    bus_blob_t *bl = blob_at(bus, off, &v);
    /* relaxed: a first look, done again under the lock */
    if (!bl || SHK_READ_ONCE(bl->magic) != BUS_BLOB_MAGIC || bl->id != id || !blob_unheld(bus, &v))
        return;
    if (blob_lock(bus, -1) != SHK_OK)
        return; /* the master's sweep will */
    /* under the lock nobody frees it under us: if it is still (off, id) and
     * still unheld (it cannot become held again), it is ours to free */
    bl = blob_at(bus, off, &v);
    if (bl && SHK_READ_ONCE(bl->magic) == BUS_BLOB_MAGIC && bl->id == id && blob_unheld(bus, &v))
        free_locked(bus, bl, off);
    shk_slab_unlock(bus->slab);
}

void shk_bus_blob_seal(shk_bus_t *bus, bus_blob_t *bl, uint64_t off)
{
    uint64_t id = bl->id;
    /* release: the positions written before are visible to whoever acquires
     * the seal (blob_unheld) */
    SHK_STORE_RELEASE(bl->sealed, 1);
    let_go(bus, off, id);
}

void shk_bus_blob_done(shk_bus_t *bus, uint64_t off, uint64_t id)
{
    let_go(bus, off, id);
}

const void *shk_bus_blob_for(const shk_bus_t *bus, uint64_t off, uint64_t id, unsigned i,
                             uint64_t h, uint64_t data_len)
{
    blob_view_t v;
    bus_blob_t *bl = blob_at(bus, off, &v);
    if (!bl) {
        shk_error(SHK_ECORRUPT, "block offset %llu is not a block in the slab",
                  (unsigned long long)off);
        return NULL;
    }
    /* relaxed: the record's publish (release, acquired by the consumer)
     * ordered the block's fields and our position before it */
    if (SHK_READ_ONCE(bl->magic) != BUS_BLOB_MAGIC || bl->id != id) {
        shk_error(SHK_ECORRUPT, "block %llu is not the alert's (magic or id)",
                  (unsigned long long)off);
        return NULL;
    }
    if (i >= 64 || !(v.targets >> i & 1) ||
        SHK_READ_ONCE(bl->pos[shk_bus_blob_index(v.targets, i)]) != h) {
        shk_error(SHK_ECORRUPT, "block %llu does not name this record (slot %u, position "
                  "%llu)", (unsigned long long)off, i, (unsigned long long)h);
        return NULL;
    }
    if (v.len != data_len) {
        shk_error(SHK_ECORRUPT, "block %llu holds %llu bytes, the record says %llu",
                  (unsigned long long)off, (unsigned long long)v.len,
                  (unsigned long long)data_len);
        return NULL;
    }
    return (const char *)bl + v.hdr;
}

int shk_bus_blob_sweep(shk_bus_t *bus, pid_t dead, int timeout_ms)
{
    int rc = blob_lock(bus, timeout_ms);
    if (rc != SHK_OK)
        return rc;
    rc = sweep_locked(bus, dead);
    shk_slab_unlock(bus->slab);
    return rc;
}

void shk_bus_blob_count(const shk_bus_t *bus, int i, uint64_t *sending, uint64_t *held,
                        uint64_t *held_bytes)
{
    uint64_t guard = max_blobs(bus), s = 0, n = 0, bytes = 0;
    uint64_t head = i >= 0 ? SHK_READ_ONCE(bus->b->slots[i].head) : 0;
    /* acquire: pairs with the list's release when a block is added */
    for (uint64_t off = SHK_LOAD_ACQUIRE(bus->b->blobs); off && guard--;) {
        blob_view_t v;
        bus_blob_t *bl = blob_at(bus, off, &v);
        /* relaxed everywhere: a snapshot */
        if (!bl || SHK_READ_ONCE(bl->magic) != BUS_BLOB_MAGIC)
            break;
        if (!SHK_READ_ONCE(bl->sealed))
            s++;
        if (i >= 0 && i < 64 && (v.targets >> i & 1)) {
            uint64_t p = SHK_READ_ONCE(bl->pos[shk_bus_blob_index(v.targets, (unsigned)i)]);
            if (p < BUS_POS_NONE && head <= p) {
                n++;
                bytes += bl->size;
            }
        }
        off = SHK_READ_ONCE(bl->next);
    }
    if (sending)
        *sending = s;
    if (held)
        *held = n;
    if (held_bytes)
        *held_bytes = bytes;
}
