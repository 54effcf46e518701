/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * shk_chan_reap.c: keeping the channel store clean, and looking at it. The
 * master's reap of a dead worker (its subscriber counts and references
 * dropped on every channel under a bounded lock wait, its slot freed), the
 * tick (a joined worker's catch-up after missed alerts, slots the master
 * could not clean, stored messages past their ttl, channels inactive too
 * long), and the readers: channel info, ordered iteration by id prefix and
 * the store's counters, all of which also work lock-free on a read-only
 * handle (every offset bounds-checked, every walk bounded).
 */
#include "shk_chan_internal.h"

#include <string.h>

/* ---- cleaning a slot --------------------------------------------------------------- */

/* Forget slot s on channel c: its references (while c still counts its
 * subscribers, so c is not freed under the walk), then its count. Returns
 * 1 if c was freed. */
static int clean_channel(shk_chan_t *ch, chan_ch_t *c, unsigned s)
{
    uint32_t *subs = chan_subs(ch, c), n = subs[s];
    uint64_t bit = CHAN_REF_SLOT(s), o = c->head;
    if (!n)
        return 0; /* the slot holds no reference where it has no subscriber */
    for (uint32_t k = 0, max = c->nmsgs; o && k <= max; k++) {
        chan_msg_t *m = chan_ptr(ch, o);
        o = m->next;
        if (SHK_READ_ONCE(m->refs) & bit)
            shk_chan_unref_locked(ch, m, bit);
    }
    subs[s] = 0;
    SHK_ADD_SOLE(c->subscribers, -n);
    SHK_ADD_SOLE(ch->st->subscribers, -(uint64_t)n);
    chan_last(ch, c)[s] = 0;
    return shk_chan_settle(ch, c);
}

void shk_chan_clean_slot(shk_chan_t *ch, unsigned s)
{
    chan_store_t *st = ch->st;
    chan_slot_t *sl = &st->slots[s];
    shk_rbtree_node_t *n = shk_rbtree_min(&st->tree, ch->base);
    uint64_t o = st->dead_head;
    /* Live channels: settling one touches the idle list, never the tree. */
    while (n) {
        shk_rbtree_node_t *next = shk_rbtree_next(ch->base, n);
        clean_channel(ch, (chan_ch_t *)n, s);
        n = next;
    }
    for (uint64_t k = 0, max = SHK_READ_ONCE(st->deleted_live); o && k <= max; k++) {
        chan_ch_t *c = chan_ptr(ch, o);
        o = c->lnext;
        clean_channel(ch, c, s);
    }
    /* Relaxed: publishers and joiners read these under the lock. */
    SHK_WRITE_ONCE(sl->subscribers, 0);
    SHK_WRITE_ONCE(sl->missed, 0);
    SHK_WRITE_ONCE(sl->pid, 0);
    SHK_WRITE_ONCE(sl->dead, 0);
}

int shk_chan_reap(shk_chan_t *ch, pid_t pid)
{
    chan_store_t *st;
    int s = -1, rc, took = 0;
    if (!ch || pid <= 0)
        return shk_error(SHK_EINVAL, "bad store or pid");
    if (ch->rdonly)
        return shk_error(SHK_EPERM, "channel store is open read-only");
    st = ch->st;
    for (unsigned i = 0; i < ch->nslots && s < 0; i++)
        if (SHK_READ_ONCE(st->slots[i].pid) == pid)
            s = (int)i;
    if (s < 0)
        return shk_error(SHK_ESRCH, "process %d holds no slot of the channel store", (int)pid);
    /* Marked first: if the lock cannot be had, any later tick or join
     * cleans the slot. Publishers stop aiming at it at once. */
    SHK_WRITE_ONCE(st->slots[s].dead, 1);
    if (shk_shmtx_owner(&ch->mtx) == pid)
        took = shk_shmtx_force_unlock(&ch->mtx, pid);
    rc = shk_shmtx_timedlock(&ch->mtx, SHK_CHAN_REAP_WAIT_MS);
    if (!shk_shmtx_held(rc)) {
        shk_log(SHK_LOG_WARN, "channel store in zone \"%s\": lock busy for %d ms; slot %d of "
                              "dead process %d is left to the next tick",
                shk_zone_name(ch->zone), SHK_CHAN_REAP_WAIT_MS, s, (int)pid);
        return shk_error(SHK_ETIMEDOUT, "channel store lock busy");
    }
    if ((took || rc == SHK_EOWNERDEAD) && (rc = shk_chan_took_over(ch)) != SHK_OK) {
        shk_shmtx_unlock(&ch->mtx);
        return rc;
    }
    if (SHK_READ_ONCE(st->damaged)) {
        shk_shmtx_unlock(&ch->mtx);
        return shk_error(SHK_ECORRUPT, "channel store is damaged");
    }
    if (SHK_READ_ONCE(st->slots[s].pid) == pid)
        shk_chan_clean_slot(ch, (unsigned)s);
    shk_shmtx_unlock(&ch->mtx);
    return SHK_OK;
}

/* ---- expiry and the tick ------------------------------------------------------------ */

void shk_chan_expire(shk_chan_t *ch, unsigned budget, chan_gone_t *gone)
{
    chan_store_t *st = ch->st;
    uint64_t now = shk_chan_now(ch);
    if (st->ttl_ms >= 0)
        for (unsigned k = 0; k < budget && st->age_head; k++) {
            chan_msg_t *m = chan_ptr(ch, st->age_head);
            if (m->born_ms + (uint64_t)st->ttl_ms > now)
                break;
            SHK_ADD_SOLE(st->expired, 1);
            shk_chan_unstore(ch, m, 0);
        }
    if (!gone || st->inactivity_ms < 0)
        return;
    while (gone->n < CHAN_GONE_MAX && st->idle_head) {
        chan_ch_t *c = chan_ptr(ch, st->idle_head);
        if (c->since_ms + (uint64_t)st->inactivity_ms > now)
            break;
        gone->len[gone->n] = c->idlen;
        memcpy(gone->id[gone->n], chan_id(ch, c), c->idlen);
        gone->n++;
        shk_chan_free_idle(ch, c);
    }
}

int shk_chan_tick(shk_chan_t *ch)
{
    chan_gone_t gone;
    int n, rc;
    if (!ch)
        return shk_error(SHK_EINVAL, "NULL store");
    if ((rc = shk_chan_usable(ch, 1)) != SHK_OK)
        return rc;
    n = shk_chan_catch_up(ch);
    if (n < 0)
        n = 0;
    /* The lock only when there is something to do: a dead slot to clean,
     * or expiry, at most once per SHK_CHAN_TICK_MS per handle. */
    {
        int dead = 0;
        uint64_t now = shk_chan_now(ch);
        for (unsigned s = 0; s < ch->nslots && !dead; s++)
            dead = SHK_READ_ONCE(ch->st->slots[s].dead) != 0;
        if (!dead && ch->expired_ms && now - ch->expired_ms < SHK_CHAN_TICK_MS)
            return n;
        ch->expired_ms = now ? now : 1;
    }
    do {
        gone.n = 0;
        if ((rc = shk_chan_lock(ch)) != SHK_OK)
            return rc;
        for (unsigned s = 0; s < ch->nslots; s++)
            if (SHK_READ_ONCE(ch->st->slots[s].dead))
                shk_chan_clean_slot(ch, s);
        shk_chan_expire(ch, 1024, &gone);
        shk_chan_unlock(ch);
        for (unsigned i = 0; i < gone.n; i++)
            shk_chan_event(ch, "channel_deleted", gone.id[i], gone.len[i], -1);
    } while (gone.n == CHAN_GONE_MAX);
    return n;
}

/* ---- readers ----------------------------------------------------------------------- */

void shk_chan_fill_info(const shk_chan_t *ch, chan_ch_t *c, shk_chan_info_t *info)
{
    size_t len = c->idlen > SHK_CHAN_ID_MAX ? SHK_CHAN_ID_MAX : c->idlen;
    memset(info, 0, sizeof *info);
    memcpy(info->id, chan_id(ch, c), len);
    info->id[len] = '\0';
    /* Relaxed snapshots; under the lock they are exact. */
    info->published = SHK_READ_ONCE(c->published);
    info->stored = SHK_READ_ONCE(c->stored);
    info->subscribers = SHK_READ_ONCE(c->subscribers);
    info->last_seq = SHK_READ_ONCE(c->seq);
    info->last_id.time_ms = info->last_seq ? SHK_READ_ONCE(c->last_time_ms) : 0;
    info->last_id.tag = info->last_seq ? SHK_READ_ONCE(c->last_tag) : 0;
    info->created_ms = c->created_ms;
    info->flags = SHK_READ_ONCE(c->flags) & (SHK_CHAN_WILDCARD | SHK_CHAN_EVENTS);
}

/* Lock for a writable handle; nothing (a lock-free snapshot) for a read-only
 * one. */
static int read_begin(shk_chan_t *ch)
{
    if (ch->rdonly)
        return shk_chan_usable(ch, 0);
    return shk_chan_lock(ch);
}

static void read_end(shk_chan_t *ch)
{
    if (!ch->rdonly)
        shk_chan_unlock(ch);
}

int shk_chan_info(shk_chan_t *ch, const char *channel, shk_chan_info_t *info)
{
    chan_ch_t *c;
    size_t len;
    int rc;
    if (!ch || !info)
        return shk_error(SHK_EINVAL, "NULL argument");
    if ((rc = shk_chan_id_check(ch, channel, &len)) != SHK_OK)
        return rc;
    if ((rc = read_begin(ch)) != SHK_OK)
        return rc;
    c = shk_chan_find(ch, channel, len);
    if (c)
        shk_chan_fill_info(ch, c, info);
    read_end(ch);
    if (!c)
        return shk_error(SHK_ENOENT, "no channel \"%s\"", channel);
    return SHK_OK;
}

int shk_chan_next(shk_chan_t *ch, const char *prefix, const char *after, shk_chan_info_t *info)
{
    size_t plen = prefix ? strnlen(prefix, SHK_CHAN_ID_MAX + 1) : 0;
    size_t alen = after ? strnlen(after, SHK_CHAN_ID_MAX + 1) : 0;
    const char *probe = "";
    size_t probelen = 0;
    int mode = 2, rc;
    chan_ch_t *c;

    if (!ch || !info)
        return shk_error(SHK_EINVAL, "NULL argument");
    if (plen > SHK_CHAN_ID_MAX || alen > SHK_CHAN_ID_MAX)
        return shk_error(SHK_ERANGE, "prefix or id longer than %d bytes", SHK_CHAN_ID_MAX);
    if (after && alen) {
        int r = memcmp(after, prefix ? prefix : "", alen < plen ? alen : plen);
        if (r > 0 || (r == 0 && alen >= plen)) {
            probe = after;
            probelen = alen;
            mode = 1;
        } else if (r < 0) {
            probe = prefix;
            probelen = plen;
        } else {
            probe = prefix; /* after is a proper prefix of the prefix */
            probelen = plen;
        }
    } else if (plen) {
        probe = prefix;
        probelen = plen;
    }
    if ((rc = read_begin(ch)) != SHK_OK)
        return rc;
    c = shk_chan_descend(ch, probe, probelen, mode);
    if (c && plen && (c->idlen < plen || memcmp(chan_id(ch, c), prefix, plen) != 0))
        c = NULL;
    if (c)
        shk_chan_fill_info(ch, c, info);
    read_end(ch);
    if (!c) {
        shk_error(SHK_ENOENT, "no more channels");
        return SHK_ENOENT;
    }
    return SHK_OK;
}

int shk_chan_stats(shk_chan_t *ch, shk_chan_stats_t *out)
{
    chan_store_t *st;
    uint64_t oldest;
    if (!ch || !out)
        return shk_error(SHK_EINVAL, "NULL argument");
    st = ch->st;
    memset(out, 0, sizeof *out);
    /* Relaxed snapshots of counters written under the lock. */
    out->nslots = ch->nslots;
    out->channels = SHK_READ_ONCE(st->channels);
    out->wildcard_channels = SHK_READ_ONCE(st->wildcard_channels);
    out->stored = SHK_READ_ONCE(st->stored);
    out->stored_bytes = SHK_READ_ONCE(st->stored_bytes);
    out->messages = SHK_READ_ONCE(st->messages);
    out->subscribers = SHK_READ_ONCE(st->subscribers);
    out->published = SHK_READ_ONCE(st->published);
    out->reclaimed = SHK_READ_ONCE(st->reclaimed);
    out->expired = SHK_READ_ONCE(st->expired);
    out->deleted = SHK_READ_ONCE(st->deleted);
    out->events_failed = SHK_READ_ONCE(st->events_failed);
    oldest = SHK_READ_ONCE(st->oldest_ms);
    if (oldest) {
        uint64_t now = shk_chan_now(ch);
        out->oldest_age_ms = now > oldest ? now - oldest : 0;
    }
    for (unsigned s = 0; s < ch->nslots && s < SHK_CHAN_MAX_SLOTS; s++)
        out->delivered += SHK_READ_ONCE(st->slots[s].delivered);
    return SHK_OK;
}

int shk_chan_slot_stats(shk_chan_t *ch, unsigned i, shk_chan_slot_stats_t *out)
{
    chan_slot_t *sl;
    if (!ch || !out)
        return shk_error(SHK_EINVAL, "NULL argument");
    /* nslots was checked against SHK_CHAN_MAX_SLOTS when the store was opened */
    if (i >= ch->nslots || i >= SHK_CHAN_MAX_SLOTS)
        return shk_error(SHK_ENOENT, "channel store: no slot %u (%u slots)", i, ch->nslots);
    sl = &ch->st->slots[i];
    /* Relaxed snapshots of counters written under the lock or by the slot's holder. */
    memset(out, 0, sizeof *out);
    out->pid = SHK_READ_ONCE(sl->pid);
    out->epoch = SHK_READ_ONCE(sl->epoch);
    out->dead = (int)SHK_READ_ONCE(sl->dead);
    out->subscribers = SHK_READ_ONCE(sl->subscribers);
    out->delivered = SHK_READ_ONCE(sl->delivered);
    out->alerts = SHK_READ_ONCE(sl->alerts);
    out->alerts_missed = SHK_READ_ONCE(sl->alerts_missed);
    out->stale = SHK_READ_ONCE(sl->stale);
    return SHK_OK;
}
