/*
 * shk_bus_reap.c: death and statistics. The master reaps a dead worker:
 * the claim locks it held are released, its slot is freed, its queue is
 * emptied under the SHK_BUS_PURGE policy, the large alerts' blocks nobody
 * holds any more are swept (shk_bus_blob.c), and every joined slot's
 * doorbell rings so that a hole the dead process left is found. The stats are lock-free snapshots that read only
 * the bus's header and queues, within the bounds the handle checked when it
 * was made, so they work on a read-only or damaged mapping (shmkit stat).
 */
#include "shk_bus_internal.h"

/* Empty the queue of slot i, whose holder is dead: head moves past every
 * record (which lets go of their blocks: the sweep that follows frees
 * them), up to a record a live producer is still writing. */
static void purge(shk_bus_t *bus, unsigned i)
{
    bus_queue_t *q = &bus->b->slots[i];
    /* bounded: the master must not stall behind a live producer */
    int rc = shk_shmtx_timedlock(&bus->claim[i], SHK_SLAB_REAP_WAIT_MS);
    if (!shk_shmtx_held(rc)) {
        shk_log(SHK_LOG_WARN, "bus queue %u: not purged, its claim lock is busy", i);
        return;
    }
    /* every step moves head forward by a record, within a ring */
    for (uint64_t guard = bus->qsize / BUS_REC_ALIGN + 1; guard; guard--) {
        bus_rec_t *r;
        uint64_t h, t;
        bus_rec_view_t v;
        if (shk_bus_head_state(bus, q, &r, &h, &t, 1) != SHK_BUS_READY)
            break;
        /* acquire: pairs with the publish (release) of the record */
        uint64_t w = SHK_LOAD_ACQUIRE(r->word0);
        if (!shk_bus_rec_read(bus, r, h, t, w, &v)) {
            char what[256];
            shk_log(SHK_LOG_ERR, "bus queue %u: record at head %llu (tail %llu): %s; dropping "
                    "the rest", i, (unsigned long long)h, (unsigned long long)t,
                    shk_bus_rec_why(&v, what, sizeof what));
            /* release, as every move of head */
            SHK_STORE_RELEASE(q->head, t);
            break;
        }
        /* the holder is dead and producers never write deq: a sole writer */
        if (v.st != BUS_ST_PAD)
            SHK_ADD_SOLE(q->deq, 1);
        shk_bus_release_head(q, h, v.len);
        SHK_BUS_STEP(bus, SHK_BUS_STEP_PURGE);
    }
    shk_shmtx_unlock(&bus->claim[i]);
}

int shk_bus_reap(shk_bus_t *bus, pid_t pid)
{
    int found = -1;
    if (!bus || pid <= 0)
        return shk_error(SHK_EINVAL, "shk_bus_reap: bad argument");
    for (unsigned i = 0; i < bus->nslots; i++) {
        bus_queue_t *q = &bus->b->slots[i];
        if (shk_shmtx_force_unlock(&bus->claim[i], pid))
            shk_log(SHK_LOG_WARN, "bus queue %u was being written by %d when it died", i,
                    (int)pid);
        /* acquire: pairs with the join's release of the pid */
        if (SHK_LOAD_ACQUIRE(q->pid) == pid) {
            /* release, as every store of the state (its readers acquire
             * it); a sender that sees it free stops sending to the slot */
            SHK_STORE_RELEASE(q->state, SHK_BUS_SLOT_FREE);
            found = (int)i;
        }
    }
    if (found >= 0 && bus->policy == SHK_BUS_PURGE)
        purge(bus, (unsigned)found);
    /* The blocks the dead process held as a sender (a fan-out it did not
     * finish) or let go of as a receiver without freeing them, and those a
     * purge let go of. The pool's lock is waited for a bounded time: the
     * master must not stall behind a live worker; what is left waits for
     * the next sweep (a reap, or an allocation that finds no room). */
    int swept = shk_bus_blob_sweep(bus, pid, SHK_SLAB_REAP_WAIT_MS);
    if (swept < 0)
        shk_log(SHK_LOG_WARN, "bus: the large alerts' blocks of dead process %d were not "
                "swept: %s", (int)pid, shk_strerror(swept));
    /* A record the dead process claimed but never published may now be at
     * the head of a sleeping worker's queue: wake them all to skip it. */
    for (unsigned i = 0; !bus->nopipes && i < bus->nslots; i++)
        /* acquire: as every reader of the state */
        if (SHK_LOAD_ACQUIRE(bus->b->slots[i].state) == SHK_BUS_SLOT_JOINED) {
            ssize_t w = write(bus->fds[i][1], "!", 1);
            (void)w;
        }
    if (found < 0)
        return shk_error(SHK_ESRCH, "pid %d holds no bus slot", (int)pid);
    return SHK_OK;
}

int shk_bus_set_policy(shk_bus_t *bus, int policy)
{
    if (!bus || (policy != SHK_BUS_KEEP && policy != SHK_BUS_PURGE))
        return shk_error(SHK_EINVAL, "invalid bus policy %d", policy);
    bus->policy = policy;
    return SHK_OK;
}

/* ---- stats -------------------------------------------------------------------------------- */

int shk_bus_stats(shk_bus_t *bus, shk_bus_stats_t *st)
{
    if (!bus || !st)
        return shk_error(SHK_EINVAL, "NULL argument");
    memset(st, 0, sizeof *st);
    st->nslots = bus->nslots;
    st->queue_bytes = bus->qsize;
    /* relaxed everywhere: a snapshot of independent counters */
    st->large = SHK_READ_ONCE(bus->b->large);
    st->large_live = SHK_READ_ONCE(bus->b->blob_count);
    st->large_bytes = SHK_READ_ONCE(bus->b->blob_bytes);
    shk_bus_blob_count(bus, -1, &st->large_sending, NULL, NULL);
    for (unsigned i = 0; i < bus->nslots; i++)
        if (SHK_READ_ONCE(bus->b->slots[i].state) == SHK_BUS_SLOT_JOINED)
            st->joined++;
    return SHK_OK;
}

int shk_bus_slot_stats(shk_bus_t *bus, unsigned i, shk_bus_slot_stats_t *s)
{
    if (!bus || !s)
        return shk_error(SHK_EINVAL, "NULL argument");
    memset(s, 0, sizeof *s);
    if (i >= bus->nslots)
        return shk_error(SHK_ENOENT, "bus slot %u does not exist (%u slots)", i, bus->nslots);
    bus_queue_t *q = &bus->b->slots[i];
    uint64_t now = shk_bus_coarse_ns(), size = bus->qsize;
    /* relaxed everywhere: a snapshot of independent counters */
    s->pid = SHK_READ_ONCE(q->pid);
    s->state = (int)SHK_READ_ONCE(q->state);
    s->generation = SHK_READ_ONCE(q->generation);
    uint64_t enq = SHK_READ_ONCE(q->enq);
    uint64_t deq = SHK_READ_ONCE(q->deq);
    s->depth = enq > deq ? enq - deq : 0;
    s->high_water = SHK_READ_ONCE(q->high);
    s->queue_bytes = size;
    s->sent = SHK_READ_ONCE(q->sent);
    s->received = SHK_READ_ONCE(q->received);
    s->discarded = SHK_READ_ONCE(q->discarded);
    s->rejected = SHK_READ_ONCE(q->rejected);
    s->skipped = SHK_READ_ONCE(q->skipped);
    s->stale = SHK_READ_ONCE(q->stale);
    s->rung = SHK_READ_ONCE(q->rung);
    /* every queued alert either rang or did not: no counter of its own,
     * so the common path makes no locked add for it */
    s->coalesced = enq > s->rung ? enq - s->rung : 0;
    shk_bus_blob_count(bus, (int)i, NULL, &s->large_refs, &s->large_ref_bytes);
    /* acquire both: pairs with the consumer's release of head and the
     * producer's release of tail, so the record between them is complete */
    uint64_t h = SHK_LOAD_ACQUIRE(q->head);
    uint64_t t = SHK_LOAD_ACQUIRE(q->tail);
    uint64_t pos = h & (size - 1);
    /* a head record only where one can be: inside the ring, whole, aligned
     * (the ring's bounds were checked when the handle was made) */
    if (h != t && t - h <= size && pos % BUS_REC_ALIGN == 0 && pos + BUS_REC_HDR <= size) {
        bus_rec_t *r = (bus_rec_t *)(shk_bus_ring_of(bus, q) + pos);
        /* acquire: pairs with the publish, so enq_ns is the producer's */
        uint64_t w = SHK_LOAD_ACQUIRE(r->word0);
        if ((w >> 32 & 0xff) != BUS_ST_PAD && r->enq_ns && r->enq_ns <= now)
            s->oldest_age_us = (now - r->enq_ns) / 1000;
    }
    return SHK_OK;
}
