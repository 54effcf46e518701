/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * shk_chan_deliver.c: the worker's side of the channel store, delivery. A
 * worker joins a store slot (a new epoch), keeps a local record per channel
 * it has subscribers on (found by the channel's offset and serial) with the
 * links of its subscribers, and delivers: an alert whose `prev` is what the
 * worker handled last is delivered at once, lock-free, from the message in
 * place; any other alert (one before it is missing: still in flight, or
 * never sent because a queue was full) and the tick after a missed alert
 * walk the channel's list under the lock and deliver, in seq order, every
 * message the worker holds a reference to. Subscriptions removed during a
 * delivery wait for its end (the sweep), so nothing a callback is reading
 * goes away under it. The subscriber calls are in shk_chan_sub.c.
 */
#include "shk_chan_internal.h"

#include <stdlib.h>
#include <string.h>

#define BATCH 64 /* messages collected under the lock per round of a catch-up */

int shk_chan_joined(const shk_chan_t *ch)
{
    return ch->slot >= 0 && ch->joined_pid == SHK_PID();
}

/* ---- the local records (a chained hash by channel offset) ----------------------- */

static size_t hslot(size_t tabsz, uint64_t off)
{
    return (size_t)((off >> 3) * 0x9e3779b97f4a7c15ULL >> 20) & (tabsz - 1);
}

chan_wch_t *shk_chan_wch_find(const shk_chan_t *ch, uint64_t off, uint64_t serial)
{
    if (!ch->tabsz)
        return NULL;
    for (chan_wch_t *w = ch->tab[hslot(ch->tabsz, off)]; w; w = w->hnext)
        if (w->off == off && w->serial == serial)
            return w;
    return NULL;
}

/* Room for one more record, so that the insertion after it cannot fail. */
int shk_chan_wch_reserve(shk_chan_t *ch)
{
    size_t nsz;
    chan_wch_t **nt;
    if (ch->nwch < ch->tabsz)
        return SHK_OK;
    nsz = ch->tabsz ? ch->tabsz * 2 : 64;
    if (!(nt = calloc(nsz, sizeof *nt)))
        return shk_error(SHK_ENOMEM, "out of memory");
    for (size_t i = 0; i < ch->tabsz; i++)
        for (chan_wch_t *x = ch->tab[i], *nx; x; x = nx) {
            nx = x->hnext;
            x->hnext = nt[hslot(nsz, x->off)];
            nt[hslot(nsz, x->off)] = x;
        }
    free(ch->tab);
    ch->tab = nt;
    ch->tabsz = nsz;
    return SHK_OK;
}

void shk_chan_wch_insert(shk_chan_t *ch, chan_wch_t *w)
{
    size_t i = hslot(ch->tabsz, w->off);
    w->hnext = ch->tab[i];
    ch->tab[i] = w;
    ch->nwch++;
    ch->wch_made++;
}

static void wch_remove(shk_chan_t *ch, chan_wch_t *w)
{
    for (chan_wch_t **pp = &ch->tab[hslot(ch->tabsz, w->off)]; *pp; pp = &(*pp)->hnext)
        if (*pp == w) {
            *pp = w->hnext;
            ch->nwch--;
            return;
        }
}

void shk_chan_local_free(shk_chan_t *ch)
{
    for (size_t i = 0; i < ch->tabsz; i++)
        for (chan_wch_t *w = ch->tab[i], *nw; w; w = nw) {
            nw = w->hnext;
            for (unsigned k = 0; k < w->nlinks; k++)
                free(w->ents[k].link);
            free(w->ents);
            free(w);
        }
    for (shk_chan_sub_t *s = ch->subs, *ns; s; s = ns) {
        ns = s->anext;
        free(s);
    }
    free(ch->tab);
    ch->tab = NULL;
    ch->tabsz = ch->nwch = 0;
    ch->dirty = NULL;
    ch->freed = NULL;
    ch->subs = NULL;
    ch->depth = 0;
}

/* ---- delivery ---------------------------------------------------------------------- */

/* The message as a callback sees it, every span checked against the zone. */
int shk_chan_msg_view(const shk_chan_t *ch, const chan_wch_t *w, chan_msg_t *m, shk_chan_msg_t *v)
{
    uint64_t off = chan_off(ch, m);
    size_t strs;
    if (m->eid_len > SHK_CHAN_EVENT_MAX || m->etype_len > SHK_CHAN_EVENT_MAX)
        return 0;
    strs = chan_msg_strs(m->eid_len, m->etype_len);
    if (!shk_span_ok(off, sizeof *m + strs + (m->data ? 0 : m->len), ch->size) ||
        (m->data && !shk_span_ok(m->data, m->len, ch->size)))
        return 0;
    v->channel = w->id;
    v->channel_len = w->idlen;
    v->data = m->data ? chan_ptr(ch, m->data) : (char *)(m + 1) + strs;
    v->len = m->len;
    v->event_id = m->eid_len ? chan_msg_eid(m) : "";
    v->event_type = m->etype_len ? chan_msg_etype(m) : "";
    v->id.time_ms = m->time_ms;
    v->id.tag = m->tag;
    v->seq = m->seq;
    v->flags = 0;
    return 1;
}

void shk_chan_count_delivered(shk_chan_t *ch, unsigned n)
{
    /* Only this slot's process writes its counter. */
    SHK_ADD_SOLE(ch->st->slots[ch->slot].delivered, n);
}

/* m to every live link of w that starts below it. */
static int deliver(shk_chan_t *ch, chan_wch_t *w, chan_msg_t *m)
{
    shk_chan_msg_t v;
    unsigned n = 0;
    if (!shk_chan_msg_view(ch, w, m, &v)) {
        shk_log(SHK_LOG_ERR, "channel \"%s\": message %llu is out of bounds; skipped", w->id,
                (unsigned long long)m->seq);
        return 0;
    }
    /* Entries added by a callback go at the end, starting at or above m;
     * the array may move under a callback, so it is read again each time. */
    for (unsigned i = 0; i < w->nlinks; i++) {
        const chan_ent_t *e = &w->ents[i];
        if (e->start >= v.seq)
            continue;
        e->fn(e->sub, &v, e->ctx);
        n++;
    }
    shk_chan_count_delivered(ch, n);
    return (int)n;
}

void shk_chan_mark_dead(shk_chan_t *ch, chan_link_t *l)
{
    chan_wch_t *w = l->wc;
    l->dead = 1;
    w->ents[l->idx].start = UINT64_MAX;
    w->ndead++;
    l->sub->nlinks--;
    if (shk_chan_is_wildcard(ch, w->id, w->idlen))
        l->sub->nwild--;
    if (!w->dirty) {
        w->dirty = 1;
        w->dnext = ch->dirty;
        ch->dirty = w;
    }
}

/* The channel was deleted: the last call to each subscriber of it here. */
static void finish_deleted(shk_chan_t *ch, chan_wch_t *w)
{
    shk_chan_msg_t v = {w->id, w->idlen, NULL, 0, "", "", {0, 0}, 0, SHK_CHAN_MSG_DELETED};
    unsigned n = 0;
    for (unsigned i = 0; i < w->nlinks; i++) {
        chan_ent_t e = w->ents[i];
        if (e.link->dead)
            continue;
        shk_chan_mark_dead(ch, e.link);
        e.fn(e.sub, &v, e.ctx);
        n++;
    }
    shk_chan_count_delivered(ch, n);
}

/* Deliver, in seq order, every message of w's channel that this worker still
 * holds, taking them from the channel's list under the lock BATCH at a time;
 * then the deletion, if the channel was deleted. w is busy meanwhile. */
static int catch_up_one(shk_chan_t *ch, chan_wch_t *w)
{
    uint64_t offs[BATCH], bit = CHAN_REF_SLOT(ch->slot), resume = 0;
    int total = 0, more = 1;
    while (more) {
        unsigned n = 0;
        int deleted = 0;
        chan_ch_t *c;
        chan_msg_t *r;
        uint64_t o, start = 0;
        more = 0;
        if (shk_chan_lock(ch) != SHK_OK)
            break;
        c = shk_chan_ch_at(ch, w->off);
        if (!c || c->serial != w->serial) {
            shk_chan_unlock(ch);
            shk_log(SHK_LOG_ERR, "channel \"%s\": its record in the zone is gone", w->id);
            break;
        }
        /* Where the last round stopped: a message past wseq, which holds
         * this slot's bit and so is still there. Else from the tail back to
         * the first message past wseq. */
        if (resume && (r = shk_chan_msg_at(ch, resume)) && r->chan == w->off &&
            r->seq == w->wseq + 1 && (SHK_READ_ONCE(r->refs) & bit)) {
            start = resume;
        } else {
            o = c->tail;
            for (uint32_t k = 0; o && k <= c->nmsgs; k++) {
                chan_msg_t *m = chan_ptr(ch, o);
                if (m->seq <= w->wseq)
                    break;
                start = o;
                o = m->prev;
            }
        }
        o = start;
        for (uint32_t k = 0; o && n < BATCH && k <= c->nmsgs; k++) {
            chan_msg_t *m = chan_ptr(ch, o);
            /* Relaxed: this slot's bit changes only here. */
            if (SHK_READ_ONCE(m->refs) & bit)
                offs[n++] = o;
            w->wseq = m->seq;
            o = m->next;
        }
        resume = o;
        if (o) {
            more = 1;
        } else {
            uint64_t last = chan_last(ch, c)[ch->slot];
            if (last > w->wseq)
                w->wseq = last;
            deleted = (SHK_READ_ONCE(c->flags) & CHAN_F_DELETED) != 0;
        }
        shk_chan_unlock(ch);
        for (unsigned i = 0; i < n; i++) {
            chan_msg_t *m = chan_ptr(ch, offs[i]);
            total += deliver(ch, w, m);
            shk_chan_unref(ch, m);
        }
        if (deleted)
            finish_deleted(ch, w);
        if (w->pending) {
            w->pending = 0;
            more = 1;
        }
    }
    return total;
}

/* Run a catch-up of w, or leave it to the one in progress. */
int shk_chan_catch_up_busy(shk_chan_t *ch, chan_wch_t *w)
{
    int n;
    if (w->busy) {
        w->pending = 1;
        return 0;
    }
    w->busy++;
    ch->depth++;
    n = catch_up_one(ch, w);
    w->busy--;
    ch->depth--;
    return n;
}

void shk_chan_on_alert(shk_bus_t *bus, const char *name, const void *data, size_t len,
                       void *ctx)
{
    shk_chan_t *ch = ctx;
    chan_alert_t a;
    chan_wch_t *w;
    chan_msg_t *m;
    (void)bus;
    (void)name;
    if (!shk_chan_joined(ch))
        return;
    if (len != sizeof a) {
        SHK_ADD_SOLE(ch->st->slots[ch->slot].stale, 1);
        return;
    }
    memcpy(&a, data, sizeof a);
    if (a.slot != (unsigned)ch->slot || a.epoch != ch->epoch ||
        !(w = shk_chan_wch_find(ch, a.chan, a.serial))) {
        /* For a predecessor in the slot, or a channel this worker left. */
        SHK_ADD_SOLE(ch->st->slots[ch->slot].stale, 1);
        return;
    }
    if (a.kind == CHAN_ALERT_MSG && a.seq <= w->wseq)
        return; /* delivered by a catch-up already */
    if (w->busy) {
        w->pending = 1;
        return;
    }
    w->busy++;
    ch->depth++;
    if (a.kind == CHAN_ALERT_MSG && a.prev == w->wseq && (m = shk_chan_msg_at(ch, a.msg)) &&
        m->seq == a.seq && m->chan == a.chan) {
        /* The next message this worker holds on the channel: no lock. It
         * was published while this record existed, so it carries our bit. */
        w->wseq = a.seq;
        deliver(ch, w, m);
        shk_chan_unref(ch, m);
        if (w->pending) {
            w->pending = 0;
            catch_up_one(ch, w);
        }
    } else {
        catch_up_one(ch, w);
    }
    w->busy--;
    ch->depth--;
    if (!ch->depth)
        shk_chan_sweep(ch);
}

int shk_chan_catch_up(shk_chan_t *ch)
{
    chan_slot_t *sl;
    uint64_t *todo;
    size_t n = 0;
    int total = 0;
    if (!shk_chan_joined(ch))
        return 0;
    sl = &ch->st->slots[ch->slot];
    /* Acquire: pairs with the failed publisher's release (shk_chan_alert). */
    if (!SHK_XCHG(sl->missed, 0, acq_rel) || !ch->nwch)
        return 0;
    if (!(todo = malloc(ch->nwch * 2 * sizeof *todo))) {
        SHK_STORE_RELEASE(sl->missed, 1); /* next tick */
        return shk_error(SHK_ENOMEM, "out of memory");
    }
    if (shk_chan_lock(ch) != SHK_OK) {
        free(todo);
        return shk_last_error();
    }
    for (size_t i = 0; i < ch->tabsz; i++)
        for (chan_wch_t *w = ch->tab[i]; w; w = w->hnext) {
            chan_ch_t *c = shk_chan_ch_at(ch, w->off);
            if (c && c->serial == w->serial &&
                (chan_last(ch, c)[ch->slot] > w->wseq ||
                 (SHK_READ_ONCE(c->flags) & CHAN_F_DELETED))) {
                todo[n++] = w->off;
                todo[n++] = w->serial;
            }
        }
    shk_chan_unlock(ch);
    for (size_t i = 0; i < n; i += 2) {
        chan_wch_t *w = shk_chan_wch_find(ch, todo[i], todo[i + 1]);
        if (w)
            total += shk_chan_catch_up_busy(ch, w);
    }
    free(todo);
    if (!ch->depth)
        shk_chan_sweep(ch);
    return total;
}

/* ---- the shk_chan_sweep: subscriptions removed, once no delivery is in progress ------------ */

/* Under no lock: tell the store n of w's links are gone. When they were the
 * slot's last on the channel, the references the slot holds there go too
 * (while the channel still counts them, so it cannot be freed under the
 * walk). Returns the channel's subscribers after, or -1. */
static int64_t store_unsubscribe(shk_chan_t *ch, chan_wch_t *w, unsigned n)
{
    chan_store_t *st = ch->st;
    unsigned s = (unsigned)ch->slot;
    uint64_t bit = CHAN_REF_SLOT(s);
    chan_ch_t *c;
    uint32_t *subs;
    int64_t after;
    if (shk_chan_lock(ch) != SHK_OK)
        return -1;
    c = shk_chan_ch_at(ch, w->off);
    if (!c || c->serial != w->serial) {
        shk_chan_unlock(ch);
        return -1;
    }
    subs = chan_subs(ch, c);
    if (subs[s] <= n) {
        uint64_t o = c->head;
        for (uint32_t k = 0, max = c->nmsgs; o && k <= max; k++) {
            chan_msg_t *m = chan_ptr(ch, o);
            o = m->next;
            if (SHK_READ_ONCE(m->refs) & bit)
                shk_chan_unref_locked(ch, m, bit);
        }
        n = subs[s];
    }
    subs[s] -= n;
    SHK_ADD_SOLE(c->subscribers, -n);
    SHK_ADD_SOLE(st->slots[s].subscribers, -(uint64_t)n);
    SHK_ADD_SOLE(st->subscribers, -(uint64_t)n);
    after = SHK_READ_ONCE(c->subscribers);
    shk_chan_settle(ch, c);
    shk_chan_unlock(ch);
    return after;
}

void shk_chan_sweep(shk_chan_t *ch)
{
    while (ch->dirty) {
        chan_wch_t *w = ch->dirty;
        unsigned n = 0;
        int64_t after;
        ch->dirty = w->dnext;
        w->dirty = 0;
        w->dnext = NULL;
        for (unsigned i = 0; i < w->nlinks;) {
            chan_link_t *l = w->ents[i].link;
            if (!l->dead) {
                i++;
                continue;
            }
            /* the last entry takes its place: the order of subscribers
             * within a channel is not promised, a message's order is */
            w->ents[i] = w->ents[--w->nlinks];
            w->ents[i].link->idx = i;
            if (l->sprev)
                l->sprev->snext = l->snext;
            else
                l->sub->head = l->snext;
            if (l->snext)
                l->snext->sprev = l->sprev;
            else
                l->sub->tail = l->sprev;
            free(l);
            n++;
        }
        w->ndead = 0;
        if (!n)
            continue;
        after = store_unsubscribe(ch, w, n);
        for (unsigned i = 0; i < n; i++)
            shk_chan_event(ch, "unsubscribed", w->id, w->idlen, after);
        if (!w->nlinks) {
            wch_remove(ch, w);
            free(w->ents);
            free(w);
        }
    }
    while (ch->freed) {
        shk_chan_sub_t *s = ch->freed;
        ch->freed = s->fnext;
        if (s->aprev)
            s->aprev->anext = s->anext;
        else
            ch->subs = s->anext;
        if (s->anext)
            s->anext->aprev = s->aprev;
        free(s);
    }
}

/* ---- joining ------------------------------------------------------------------------ */

int shk_chan_join(shk_chan_t *ch, shk_bus_t *bus)
{
    chan_store_t *st;
    int rc, s = -1;
    if (!ch || !bus)
        return shk_error(SHK_EINVAL, "NULL argument");
    if ((rc = shk_chan_usable(ch, 1)) != SHK_OK)
        return rc;
    if (shk_chan_joined(ch))
        return shk_error(SHK_EEXIST, "this process already holds slot %d", ch->slot);
    /* A handle inherited from a shk_chan_joined parent: its records are the parent's. */
    shk_chan_local_free(ch);
    ch->slot = -1;
    st = ch->st;
    if ((rc = shk_chan_lock(ch)) != SHK_OK)
        return rc;
    for (unsigned i = 0; i < ch->nslots && s < 0; i++)
        if (!SHK_READ_ONCE(st->slots[i].pid) && !SHK_READ_ONCE(st->slots[i].dead))
            s = (int)i;
    for (unsigned i = 0; i < ch->nslots && s < 0; i++)
        if (SHK_READ_ONCE(st->slots[i].dead) || !shk_pid_alive(SHK_READ_ONCE(st->slots[i].pid))) {
            shk_chan_clean_slot(ch, i);
            s = (int)i;
        }
    if (s < 0) {
        shk_chan_unlock(ch);
        return shk_error(SHK_EBUSY, "all %u slots of the channel store in zone \"%s\" are held",
                         ch->nslots, shk_zone_name(ch->zone));
    }
    /* Under the lock for publishers; relaxed for the lock-free stats. */
    ch->epoch = SHK_READ_ONCE(st->slots[s].epoch) + 1;
    SHK_WRITE_ONCE(st->slots[s].epoch, ch->epoch);
    SHK_WRITE_ONCE(st->slots[s].missed, 0);
    SHK_WRITE_ONCE(st->slots[s].dead, 0);
    SHK_WRITE_ONCE(st->slots[s].pid, (int32_t)SHK_PID());
    shk_chan_unlock(ch);
    ch->slot = s;
    ch->joined_pid = SHK_PID();
    ch->bus = bus;
    if ((rc = shk_bus_on(bus, SHK_CHAN_ALERT, shk_chan_on_alert, ch)) != SHK_OK) {
        shk_chan_leave(ch);
        return rc;
    }
    return s;
}

int shk_chan_slot(const shk_chan_t *ch)
{
    return ch && shk_chan_joined(ch) ? ch->slot : -1;
}

int shk_chan_leave(shk_chan_t *ch)
{
    if (!ch || !shk_chan_joined(ch))
        return shk_error(SHK_EPERM, "not shk_chan_joined");
    if (shk_chan_lock(ch) == SHK_OK) {
        shk_chan_clean_slot(ch, (unsigned)ch->slot);
        shk_chan_unlock(ch);
    }
    shk_chan_local_free(ch);
    if (ch->bus)
        shk_bus_on(ch->bus, SHK_CHAN_ALERT, NULL, NULL);
    ch->slot = -1;
    return SHK_OK;
}

