/*
 * shk_bus_dispatch.c: consuming. The holder of a slot takes the records of
 * its queue in order: padding skipped, a published alert handed to the
 * handler registered for its name, the hole a dead producer left skipped
 * once the producer is confirmed gone. Around that: the short spins that
 * catch the next alert without a system call, the sleep announcement of the
 * doorbell protocol (at the top of shk_bus_internal.h), shk_bus_wait for
 * programs without an event loop, the handler table, sender and reply.
 */
#include "shk_bus_internal.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>

/* ---- handlers ------------------------------------------------------------------------- */

int shk_bus_on(shk_bus_t *bus, const char *name, shk_bus_handler_t fn, void *ctx)
{
    size_t nl = 0;
    int rc;
    if (!bus)
        return shk_error(SHK_EINVAL, "NULL bus");
    if ((rc = shk_bus_check_args(name, NULL, 0, &nl)) != SHK_OK)
        return rc;
    for (size_t i = 0; i < bus->nh; i++)
        if (strcmp(bus->h[i].name, name) == 0) {
            if (fn) {
                bus->h[i].fn = fn;
                bus->h[i].ctx = ctx;
            } else {
                free(bus->h[i].name);
                bus->h[i] = bus->h[--bus->nh];
            }
            return SHK_OK;
        }
    if (!fn)
        return SHK_OK;
    if (bus->nh == bus->caph) {
        size_t cap = bus->caph ? bus->caph * 2 : 8;
        bus_handler_t *nh = realloc(bus->h, cap * sizeof *nh);
        if (!nh)
            return shk_error(SHK_ENOMEM, "out of memory");
        bus->h = nh;
        bus->caph = cap;
    }
    bus->h[bus->nh].name = strdup(name);
    if (!bus->h[bus->nh].name)
        return shk_error(SHK_ENOMEM, "out of memory");
    bus->h[bus->nh].fn = fn;
    bus->h[bus->nh].ctx = ctx;
    bus->nh++;
    return SHK_OK;
}

int shk_bus_on_table(shk_bus_t *bus, const shk_bus_handler_entry_t *t)
{
    int rc;
    if (!t)
        return shk_error(SHK_EINVAL, "NULL table");
    for (; t->name; t++)
        if ((rc = shk_bus_on(bus, t->name, t->fn, t->ctx)) != SHK_OK)
            return rc;
    return SHK_OK;
}

pid_t shk_bus_sender(const shk_bus_t *bus)
{
    return bus && bus->in_handler ? bus->sender : 0;
}

int shk_bus_reply(shk_bus_t *bus, const char *name, const void *data, size_t len)
{
    if (!bus || !bus->in_handler)
        return shk_error(SHK_EPERM, "shk_bus_reply outside an alert handler");
    return shk_bus_send(bus, bus->sender, name, data, len);
}

/* ---- taking records ------------------------------------------------------------------- */

const char *shk_bus_rec_why(const bus_rec_view_t *v, char *buf, size_t size)
{
    static const char *const why[] = {
        [BUS_BAD_POS] = "head and tail are more than a ring apart (or head is past tail)",
        [BUS_BAD_ALIGN] = "head or record length not a multiple of 64",
        [BUS_BAD_LEN] = "record length 0, or past the ring's end or the tail",
        [BUS_BAD_STATE] = "record state unknown",
        [BUS_BAD_NAME] = "name length 0, above 254, or past the record",
        [BUS_BAD_DATA] = "data length past the record",
        [BUS_BAD_LARGE] = "large alert's body too short, or no block named",
    };
    snprintf(buf, size, "%s (length %llu, state %u, name length %u, data length %llu)",
             v->bad > 0 && v->bad <= BUS_BAD_LARGE ? why[v->bad] : "?",
             (unsigned long long)v->len, v->st, v->name_len, (unsigned long long)v->data_len);
    return buf;
}

/* The queue is damaged (what `what` says): drop everything queued rather
 * than read garbage. The blocks the dropped records named are nobody's now:
 * the sweep frees them. */
static void drop_queue(shk_bus_t *bus, bus_queue_t *q, uint64_t h, uint64_t t, const char *what)
{
    shk_log(SHK_LOG_ERR, "bus queue %d: record at head %llu (tail %llu): %s; dropping the queue",
            bus->slot, (unsigned long long)h, (unsigned long long)t, what);
    /* acquire of tail, release of head: as for any record taken; our view
     * of tail may be one the mapping no longer holds (a tail moved back) */
    uint64_t t2 = SHK_LOAD_ACQUIRE(q->tail);
    SHK_STORE_RELEASE(q->head, t2);
    bus->tail_seen = t2;
    shk_bus_blob_sweep(bus, 0, -1);
}

/* Take the record at the head (SHK_BUS_READY), at position h of a queue
 * whose tail is t. Returns 1 if it was an alert. */
static int take_one(shk_bus_t *bus, bus_queue_t *q, bus_rec_t *r, uint64_t h, uint64_t t)
{
    /* acquire: pairs with the publish (release) of the record */
    uint64_t w = SHK_LOAD_ACQUIRE(r->word0);
    bus_rec_view_t v;
    char name[SHK_BUS_NAME_MAX + 1];

    if (SHK_UNLIKELY(!shk_bus_rec_read(bus, r, h, t, w, &v))) {
        /* never written this way by a producer */
        char what[256];
        drop_queue(bus, q, h, t, shk_bus_rec_why(&v, what, sizeof what));
        return 0;
    }
    if (v.st == BUS_ST_PAD) {
        shk_bus_release_head(q, h, v.len);
        return 0;
    }
    if (v.st != BUS_ST_PUBLISHED) {
        /* a producer died between claim and publish */
        SHK_ADD_SOLE(q->deq, 1); /* consumer counters: only the slot's holder writes them */
        shk_log(SHK_LOG_WARN, "bus: skipping an alert left unfinished by dead process %d",
                (int)v.pid);
        SHK_ADD_SOLE(q->skipped, 1);
        shk_bus_release_head(q, h, v.len);
        if (v.blob)
            shk_bus_blob_done(bus, v.blob, v.blob_id);
        return 0;
    }
    const void *data = (char *)(r + 1) + v.name_len;
    size_t dlen = (size_t)v.data_len;
    if (v.blob) {
        data = shk_bus_blob_for(bus, v.blob, v.blob_id, (unsigned)bus->slot, h, v.data_len);
        if (SHK_UNLIKELY(!data)) {
            drop_queue(bus, q, h, t, shk_last_errmsg());
            return 0;
        }
    }
    SHK_ADD_SOLE(q->deq, 1);
    memcpy(name, r + 1, v.name_len);
    name[v.name_len] = '\0';
    /* relaxed: only a join changes the generation, and the holder is us */
    if (v.gen < SHK_READ_ONCE(q->generation))
        SHK_ADD_SOLE(q->stale, 1);
    SHK_ADD_SOLE(q->received, 1);
    /* the handler found last time first: a queue mostly carries one name */
    bus_handler_t *hd = NULL;
    if (bus->last_h < bus->nh && strcmp(bus->h[bus->last_h].name, name) == 0)
        hd = &bus->h[bus->last_h];
    for (size_t i = 0; !hd && i < bus->nh; i++)
        if (strcmp(bus->h[i].name, name) == 0) {
            hd = &bus->h[i];
            bus->last_h = i;
        }
    if (v.blob)
        SHK_BUS_STEP(bus, SHK_BUS_STEP_TAKEN);
    if (hd) {
        bus->sender = v.pid;
        bus->in_handler = 1;
        hd->fn(bus, name, dlen ? data : "", dlen, hd->ctx);
        bus->in_handler = 0;
        bus->sender = 0;
    } else {
        SHK_ADD_SOLE(q->discarded, 1);
    }
    if (v.blob)
        SHK_BUS_STEP(bus, SHK_BUS_STEP_HANDLED);
    /* Moving head past the record is what lets go of its block (if any):
     * a death before it leaves the record, and the block, to the slot's
     * next owner; a death after it, to the sweep. */
    shk_bus_release_head(q, h, v.len);
    if (v.blob) {
        SHK_BUS_STEP(bus, SHK_BUS_STEP_RELEASED);
        shk_bus_blob_done(bus, v.blob, v.blob_id);
    }
    return 1;
}

/* ---- spinning and sleeping ------------------------------------------------------------ */

#define SPIN_MIN_US 2u
#define SPIN_MAX_US 64u

/* Before announcing sleep, poll the queue for `us` microseconds (only with
 * more than one CPU): under load the next alert is usually that close, and
 * catching it here saves both sides a system call. The queue is looked at
 * about once a microsecond, not in a tight loop: every look pulls cache lines
 * the producer is writing. 1 if something is ready. */
static int spin_for_work(shk_bus_t *bus, bus_queue_t *q, unsigned us)
{
    bus_rec_t *r;
    uint64_t h, t;
    if (shk_ncpu() < 2)
        return 0;
    for (unsigned i = 0, n = us * shk_spin_per_us(); i < n; i++) {
        if (i % 64 == 63 && shk_bus_head_state(bus, q, &r, &h, &t, 0) == SHK_BUS_READY)
            return 1;
        shk_cpu_relax();
    }
    return 0;
}

/* Take back an announced sleep: if a producer got to `sleeping` first (its
 * exchange returned 1), its byte is in the pipe or on its way: note it. */
static void unannounce(shk_bus_t *bus, bus_queue_t *q)
{
    if (!bus->announced)
        return;
    bus->announced = 0;
    /* relaxed load: a 0 means a producer exchanged it (only producers clear
     * it while we are announced). seq_cst exchange: exactly one of us and
     * the producers turns the 1 into 0, and only that one may ring. */
    if (SHK_READ_ONCE(q->sleeping) == 0 || SHK_XCHG(q->sleeping, 0, seq_cst) == 0)
        bus->bell = 1;
}

/* Announce sleep; returns 1 if the caller may sleep, 0 if something is ready
 * (the announcement is taken back then). */
static int prepare_sleep(shk_bus_t *bus, bus_queue_t *q)
{
    bus_rec_t *r;
    uint64_t h, t;
    if (bus->announced) {
        /* Announced earlier (end of dispatch, then shk_bus_wait): if the
         * flag is still up, that store and its fence already precede the
         * look below; if a producer took it, it rang: nothing to wait for.
         * relaxed load: it orders nothing, it only reads which case this is
         * (a producer's exchange racing with it is the first case's ring). */
        if (SHK_READ_ONCE(q->sleeping) == 0) {
            unannounce(bus, q);
            return 0;
        }
    } else {
        /* seq_cst store, then a seq_cst fence: the store above before the
         * loads below (the consumer's half of the Dekker pair). */
        SHK_STORE_SC(q->sleeping, 1);
        bus->announced = 1;
        SHK_FENCE(seq_cst);
    }
    if (shk_bus_head_state(bus, q, &r, &h, &t, 1) != SHK_BUS_READY)
        return 1;
    unannounce(bus, q);
    return 0;
}

/* ---- dispatch, wait --------------------------------------------------------------------- */

int shk_bus_dispatch(shk_bus_t *bus, unsigned budget)
{
    bus_queue_t *q;
    int n = 0;
    if (!bus || shk_bus_my_slot(bus) < 0)
        return shk_error(SHK_EPERM, "shk_bus_dispatch: not joined");
    if (bus->in_dispatch)
        return shk_error(SHK_EBUSY, "shk_bus_dispatch called from a handler");
    if (!budget)
        return shk_error(SHK_EINVAL, "shk_bus_dispatch: a budget of 0 alerts (SHK_BUS_BUDGET "
                         "is the usual one)");
    q = &bus->b->slots[bus->slot];
    bus->in_dispatch = 1;
    /* We are awake. The doorbell is drained after the handlers, not before:
     * a wake-up's alert is handled one system call sooner, and under load
     * (no byte was written) there is no read() at all. */
    unannounce(bus, q);
    int sampled = 0, looked = 0;
    /* Records that are not alerts (padding, holes) do not count against the
     * budget; each moves head forward, so a ring's worth of them past the
     * budget means the positions lie: come back later, like at the budget. */
    uint64_t steps = 0, max_steps = bus->qsize / BUS_REC_ALIGN + budget;
    for (;;) {
        bus_rec_t *r;
        uint64_t h, t;
        /* Caught up, after taking something, with the tail we last read: do
         * not read it again at once but after the spin's first pause, so that
         * a busy producer writes a few records undisturbed and we take them
         * in one go (each look pulls the tail's line and the newest record's
         * line from it). The first look of a dispatch is immediate: a woken
         * consumer has been woken for something. (relaxed load of head: only
         * we write it.) */
        int st = looked && SHK_READ_ONCE(q->head) == bus->tail_seen
                     ? SHK_BUS_EMPTY
                     : shk_bus_head_state(bus, q, &r, &h, &t, 0);
        looked = 1;
        if (st != SHK_BUS_READY) {
            /* a record being written is usually published within the spin */
            if (spin_for_work(bus, q, SPIN_MIN_US))
                continue;
            /* nothing after the spin: look again, and if the head is still
             * being written, ask whether its producer is gone */
            st = shk_bus_head_state(bus, q, &r, &h, &t, 1);
        }
        if (st == SHK_BUS_READY) {
            if ((unsigned)n >= budget || ++steps > max_steps) {
                /* more to do: come back through the event loop */
                ssize_t w = write(bus->fds[bus->slot][1], "!", 1);
                (void)w;
                bus->bell = 1;
                break;
            }
            n += take_one(bus, q, r, h, t);
            if (!sampled) {
                /* high-water mark, sampled once per dispatch, after the first
                 * record (relaxed: statistics; `enq` is on the producers'
                 * line, a miss that should not delay a woken consumer's
                 * first handler; `high` has one writer, us) */
                uint64_t depth = SHK_READ_ONCE(q->enq) - SHK_READ_ONCE(q->deq) + 1;
                if (depth < (1ULL << 62) && depth > SHK_READ_ONCE(q->high))
                    SHK_WRITE_ONCE(q->high, depth);
                sampled = 1;
            }
            continue;
        }
        /* Drain before announcing sleep (a byte written after the
         * announcement must stay). Also when this round took nothing: we
         * were woken for no alert (a reap, or a byte for the slot's previous
         * owner), and a byte left there would wake the event loop forever. */
        if (bus->bell || n == 0) {
            shk_bus_drain_pipe(bus->fds[bus->slot][0]);
            bus->bell = 0;
        }
        if (prepare_sleep(bus, q))
            break;
    }
    bus->in_dispatch = 0;
    return n;
}

int shk_bus_wait(shk_bus_t *bus, int timeout_ms)
{
    bus_queue_t *q;
    struct pollfd p;
    if (!bus || shk_bus_my_slot(bus) < 0)
        return shk_error(SHK_EPERM, "shk_bus_wait: not joined");
    q = &bus->b->slots[bus->slot];
    /* The spin before sleeping here adapts: it doubles (up to SPIN_MAX_US)
     * each time work came during it, and halves (down to SPIN_MIN_US) each
     * time none did. Under a steady stream it stays long, so producers do not
     * ring (a doorbell costs the producer a write() that can outlast a short
     * spin and send the consumer back to sleep: one ring per few alerts);
     * an idle worker soon spins 2 us only. shk_bus_dispatch spins 2 us at
     * most: it must return to its event loop. timeout 0 looks once, with
     * no spin at all. */
    unsigned us = bus->spin_us ? bus->spin_us : SPIN_MIN_US;
    if (timeout_ms != 0) {
        int got = spin_for_work(bus, q, us);
        bus->spin_us = got ? (us * 2 > SPIN_MAX_US ? SPIN_MAX_US : us * 2)
                           : (us / 2 < SPIN_MIN_US ? SPIN_MIN_US : us / 2);
        if (got)
            return 1;
    }
    if (!prepare_sleep(bus, q))
        return 1;
    p.fd = bus->fds[bus->slot][0];
    p.events = POLLIN;
    /* poll: 0 returns at once, a negative timeout waits with no limit */
    int rc = poll(&p, 1, timeout_ms < 0 ? -1 : timeout_ms);
    if (rc < 0 && errno != EINTR)
        return shk_error_sys("poll");
    return rc > 0 ? 1 : 0;
}
