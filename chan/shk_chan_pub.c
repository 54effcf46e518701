/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * shk_chan_pub.c: the publishing side of the channel store, usable from any
 * process that maps the zone: shk_chan_publish (the message written once
 * into the slab, its id and seq given under the store's lock, one reference
 * per worker slot with subscribers plus the store's, one small alert per
 * such worker sent after the lock), shk_chan_publish_id (the same with an
 * id given by a relay, applied only above the channel's last), shk_chan_delete (the channel out of the
 * tree, its stored messages freed, a final alert to each worker with
 * subscribers, nothing allocated), the alerts themselves (a failed send
 * marks the slot missed: its tick catches up) and the store's events
 * channel (JSON notices of channels made and deleted and of subscribers).
 */
#include "shk_chan_internal.h"

#include <stdio.h>
#include <string.h>

/* ---- alerts ----------------------------------------------------------------------- */

void shk_chan_alert(shk_chan_t *ch, unsigned s, pid_t pid, const chan_alert_t *a)
{
    chan_slot_t *sl = &ch->st->slots[s];
    int rc = ch->bus ? shk_bus_send(ch->bus, pid, SHK_CHAN_ALERT, a, sizeof *a) : SHK_ESRCH;
    if (rc == SHK_OK) {
        SHK_ADD_RELAXED(sl->alerts, 1);
        return;
    }
    SHK_ADD_RELAXED(sl->alerts_missed, 1);
    /* Release: the worker's exchange (acquire) that sees the flag then takes
     * the store's lock after this publisher released it, so it finds the
     * message the alert was for. */
    SHK_STORE_RELEASE(sl->missed, 1);
}

typedef struct {
    unsigned n;
    unsigned slot[SHK_CHAN_MAX_SLOTS];
    pid_t pid[SHK_CHAN_MAX_SLOTS];
    chan_alert_t a[SHK_CHAN_MAX_SLOTS];
} targets_t;

/* Under the lock: the slots with subscribers on c whose process can take an
 * alert (joined, not found dead), as a bit mask. */
static uint64_t target_bits(shk_chan_t *ch, chan_ch_t *c)
{
    const uint32_t *subs = chan_subs(ch, c);
    uint64_t bits = 0;
    for (unsigned s = 0; s < ch->nslots; s++)
        if (subs[s] && SHK_READ_ONCE(ch->st->slots[s].pid) &&
            !SHK_READ_ONCE(ch->st->slots[s].dead))
            bits |= CHAN_REF_SLOT(s);
    return bits;
}

static void add_target(shk_chan_t *ch, targets_t *t, unsigned s, const chan_alert_t *a)
{
    chan_slot_t *sl = &ch->st->slots[s];
    unsigned i = t->n++;
    t->slot[i] = s;
    t->pid[i] = SHK_READ_ONCE(sl->pid);
    t->a[i] = *a;
    t->a[i].slot = s;
    t->a[i].epoch = SHK_READ_ONCE(sl->epoch);
}

static void send_all(shk_chan_t *ch, const targets_t *t)
{
    for (unsigned i = 0; i < t->n; i++)
        shk_chan_alert(ch, t->slot[i], t->pid[i], &t->a[i]);
}

/* ---- events ------------------------------------------------------------------------ */

void shk_chan_event(shk_chan_t *ch, const char *type, const char *id, size_t len,
                    int64_t subscribers)
{
    chan_store_t *st = ch->st;
    char evch[SHK_CHAN_ID_MAX + 1], buf[SHK_CHAN_ID_MAX + 128];
    size_t el = st->events_len;
    int n;

    if (!el || el > SHK_CHAN_ID_MAX || (el == len && memcmp(st->events, id, len) == 0))
        return;
    memcpy(evch, st->events, el);
    evch[el] = '\0';
    /* Ids hold no quote, backslash or control byte: they need no escaping. */
    if (subscribers >= 0)
        n = snprintf(buf, sizeof buf, "{\"type\":\"%s\",\"channel\":\"%.*s\",\"subscribers\":%lld}",
                     type, (int)len, id, (long long)subscribers);
    else
        n = snprintf(buf, sizeof buf, "{\"type\":\"%s\",\"channel\":\"%.*s\"}", type, (int)len,
                     id);
    if (n < 0 || (size_t)n >= sizeof buf ||
        shk_chan_publish(ch, evch, buf, (size_t)n, NULL, NULL, NULL) != SHK_OK)
        SHK_ADD_RELAXED(st->events_failed, 1);
}

/* ---- publish ------------------------------------------------------------------------- */

static int event_str(const char *s, size_t *len, const char *what)
{
    size_t n = s ? strnlen(s, SHK_CHAN_EVENT_MAX + 1) : 0;
    if (n > SHK_CHAN_EVENT_MAX)
        return shk_error(SHK_ERANGE, "%s is longer than %d bytes", what, SHK_CHAN_EVENT_MAX);
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return shk_error(SHK_EINVAL, "%s has control byte 0x%02x at %zu", what,
                             (unsigned char)s[i], i);
    *len = n;
    return SHK_OK;
}

typedef struct {
    size_t len, eid_len, etype_len, hsize;
    int inline_data;
    const void *data;
    const char *eid, *etype;
    chan_msg_t *m;
    void *d;
} draft_t;

/* Allocate the message's blocks; `locked`: under the store's lock, where the
 * reclaim hook may drop stored messages to make room. */
static int draft_alloc(shk_chan_t *ch, draft_t *dr)
{
    dr->m = shk_slab_alloc(ch->slab, dr->hsize);
    if (dr->m && !dr->inline_data && !(dr->d = shk_slab_alloc(ch->slab, dr->len))) {
        shk_slab_free(ch->slab, dr->m);
        dr->m = NULL;
    }
    if (!dr->m)
        return SHK_ENOMEM;
    memset(dr->m, 0, sizeof *dr->m);
    if (dr->eid_len)
        memcpy(chan_msg_eid(dr->m), dr->eid, dr->eid_len + 1);
    dr->m->eid_len = (uint16_t)dr->eid_len;
    if (dr->etype_len)
        memcpy(chan_msg_etype(dr->m), dr->etype, dr->etype_len + 1);
    dr->m->etype_len = (uint16_t)dr->etype_len;
    if (dr->len)
        memcpy(dr->inline_data ? (char *)(dr->m + 1) + chan_msg_strs(dr->eid_len, dr->etype_len)
                               : dr->d,
               dr->data, dr->len);
    dr->m->len = (uint32_t)dr->len;
    dr->m->data = dr->d ? chan_off(ch, dr->d) : 0;
    return SHK_OK;
}

static void draft_free(shk_chan_t *ch, draft_t *dr)
{
    if (dr->d)
        shk_slab_free(ch->slab, dr->d);
    if (dr->m)
        shk_slab_free(ch->slab, dr->m);
    dr->m = NULL;
    dr->d = NULL;
}

/* Under the lock: keep at most max_stored stored messages on c. Every way
 * of dropping a stored message drops the oldest first (here, expiry,
 * reclaim: the age list), so the ones to drop are the oldest stored ones:
 * from the head, past the messages before them that are only in flight
 * (store bit gone, or never set). Those are few unless a worker lags far
 * behind; when they are more than max_stored the walk goes back from the
 * tail instead, past the ones kept. Either way at most about max_stored
 * steps plus the ones dropped, and usually one: the walk from the tail
 * alone took max_stored steps, a cache miss each, on every publish to a
 * full channel. */
static void trim(shk_chan_t *ch, chan_ch_t *c)
{
    uint32_t kept = 0, max = ch->st->max_stored;
    int from_head = c->nmsgs - SHK_READ_ONCE(c->stored) <= max;
    uint64_t o = from_head ? c->head : c->tail;
    /* the bound, taken before any message is freed, only stops a damaged
     * list from looping */
    for (uint32_t n = 0, lim = c->nmsgs; o && SHK_READ_ONCE(c->stored) > max && n <= lim; n++) {
        chan_msg_t *m = chan_ptr(ch, o);
        o = from_head ? m->next : m->prev; /* before m may be freed */
        if (!(SHK_READ_ONCE(m->refs) & CHAN_REF_STORE))
            continue;
        if (!from_head && kept < max) {
            kept++;
            continue;
        }
        SHK_ADD_SOLE(ch->st->expired, 1);
        shk_chan_unstore(ch, m, 0);
    }
}

/* Under the lock: link the filled message m at the end of c with its id,
 * refs and the alerts of its targets. */
static void link_message(shk_chan_t *ch, chan_ch_t *c, chan_msg_t *m, uint64_t refs,
                         targets_t *t)
{
    chan_store_t *st = ch->st;
    uint64_t *last = chan_last(ch, c), off = chan_off(ch, m);
    chan_alert_t a = {CHAN_ALERT_MSG, 0, 0, 0, chan_off(ch, c), c->serial, off, 0, 0};

    m->magic = CHAN_MSG_MAGIC;
    m->seq = SHK_READ_ONCE(c->seq);
    m->time_ms = SHK_READ_ONCE(c->last_time_ms);
    m->tag = SHK_READ_ONCE(c->last_tag);
    m->born_ms = shk_chan_now(ch);
    m->chan = chan_off(ch, c);
    /* Relaxed: the unlock publishes it to lock takers; the alert's bus
     * record (release/acquire) publishes it to the workers. */
    SHK_WRITE_ONCE(m->refs, refs);
    m->next = 0;
    m->prev = c->tail;
    if (c->tail)
        ((chan_msg_t *)chan_ptr(ch, c->tail))->next = off;
    else
        c->head = off;
    c->tail = off;
    c->nmsgs++;
    SHK_ADD_SOLE(st->messages, 1);
    if (refs & CHAN_REF_STORE) {
        m->age_next = 0;
        m->age_prev = st->age_tail;
        if (st->age_tail)
            ((chan_msg_t *)chan_ptr(ch, st->age_tail))->age_next = off;
        else
            st->age_head = off;
        st->age_tail = off;
        SHK_ADD_SOLE(st->stored, 1);
        SHK_ADD_SOLE(st->stored_bytes, m->len);
        SHK_ADD_SOLE(c->stored, 1);
        if (st->age_head == off)
            SHK_WRITE_ONCE(st->oldest_ms, m->born_ms);
    }
    a.seq = m->seq;
    for (unsigned s = 0; s < ch->nslots; s++)
        if (refs & CHAN_REF_SLOT(s)) {
            a.prev = last[s];
            last[s] = m->seq;
            add_target(ch, t, s, &a);
        }
}

/* shk_chan_publish (gid NULL: the store gives the id) and shk_chan_publish_id
 * (the id *gid, applied only above the channel's last). */
static int publish(shk_chan_t *ch, const char *channel, const shk_chan_msgid_t *gid,
                   const void *data, size_t len, const char *event_id, const char *event_type,
                   shk_chan_info_t *info)
{
    draft_t dr = {0};
    targets_t t;
    chan_store_t *st;
    chan_ch_t *c;
    size_t idlen;
    uint64_t refs, now;
    int rc, made = 0;

    if (!ch)
        return shk_error(SHK_EINVAL, "NULL store");
    if ((rc = shk_chan_usable(ch, 1)) != SHK_OK)
        return rc;
    st = ch->st;
    if ((rc = shk_chan_id_check(ch, channel, &idlen)) != SHK_OK)
        return rc;
    if (!data && len)
        return shk_error(SHK_EINVAL, "NULL data of %zu bytes", len);
    if (len > st->max_message)
        return shk_error(SHK_ERANGE, "message of %zu bytes on channel \"%s\" is larger than %llu",
                         len, channel, (unsigned long long)st->max_message);
    if ((rc = event_str(event_id, &dr.eid_len, "event id")) != SHK_OK ||
        (rc = event_str(event_type, &dr.etype_len, "event type")) != SHK_OK)
        return rc;
    dr.len = len;
    dr.data = data;
    dr.eid = event_id;
    dr.etype = event_type;
    dr.hsize = sizeof(chan_msg_t) + chan_msg_strs(dr.eid_len, dr.etype_len);
    dr.inline_data = dr.hsize + len <= CHAN_INLINE_MAX;
    if (dr.inline_data)
        dr.hsize += len;
    /* The copy happens before the lock; a full zone is retried under it,
     * where the reclaim hook may drop old stored messages. */
    draft_alloc(ch, &dr);

    if ((rc = shk_chan_lock(ch)) != SHK_OK) {
        draft_free(ch, &dr);
        return rc;
    }
    shk_chan_expire(ch, 8, NULL);
    c = shk_chan_find(ch, channel, idlen);
    if (!c) {
        if (!(c = shk_chan_make(ch, channel, idlen))) {
            rc = shk_last_error();
            goto fail;
        }
        made = 1;
    }
    if (gid && SHK_READ_ONCE(c->seq) &&
        (gid->time_ms < SHK_READ_ONCE(c->last_time_ms) ||
         (gid->time_ms == SHK_READ_ONCE(c->last_time_ms) && gid->tag <= SHK_READ_ONCE(c->last_tag)))) {
        /* Not above the last id: seen already (a relay's message that came
         * twice) or older than what the channel holds. */
        if (info)
            shk_chan_fill_info(ch, c, info);
        rc = shk_error(SHK_EEXIST, "channel \"%s\" is at %llu:%u already, not below %llu:%u",
                       channel, (unsigned long long)SHK_READ_ONCE(c->last_time_ms),
                       (unsigned)SHK_READ_ONCE(c->last_tag), (unsigned long long)gid->time_ms,
                       (unsigned)gid->tag);
        goto fail;
    }
    refs = target_bits(ch, c) | (st->store_messages ? CHAN_REF_STORE : 0);
    if (refs && !dr.m && draft_alloc(ch, &dr) != SHK_OK) {
        rc = shk_error(SHK_ENOMEM,
                       "zone \"%s\" is full: no room for a message of %zu bytes on channel \"%s\"",
                       shk_zone_name(ch->zone), len, channel);
        if (made)
            shk_chan_free_idle(ch, c);
        made = 0;
        goto fail;
    }
    /* The id: the wall clock, never below the channel's last one; the tag
     * counts messages within one millisecond. */
    now = shk_chan_wall(ch);
    /* Sole writers under the lock; relaxed for lock-free readers. */
    if (gid) {
        SHK_WRITE_ONCE(c->last_time_ms, gid->time_ms);
        SHK_WRITE_ONCE(c->last_tag, gid->tag);
    } else if (SHK_READ_ONCE(c->seq) && now <= SHK_READ_ONCE(c->last_time_ms)) {
        SHK_ADD_SOLE(c->last_tag, 1);
    } else {
        SHK_WRITE_ONCE(c->last_time_ms, now);
        SHK_WRITE_ONCE(c->last_tag, 0);
    }
    SHK_ADD_SOLE(c->seq, 1);
    SHK_ADD_SOLE(c->published, 1);
    SHK_ADD_SOLE(st->published, 1);
    t.n = 0;
    if (refs) {
        link_message(ch, c, dr.m, refs, &t);
        dr.m = NULL;
        dr.d = NULL;
        if (refs & CHAN_REF_STORE)
            trim(ch, c);
    } else if (SHK_READ_ONCE(c->flags) & CHAN_F_IDLE) {
        c->since_ms = shk_chan_now(ch); /* a publish is activity */
    }
    shk_chan_settle(ch, c);
    if (info)
        shk_chan_fill_info(ch, c, info);
    shk_chan_unlock(ch);
    draft_free(ch, &dr); /* unused when nobody keeps the message */
    send_all(ch, &t);
    if (made)
        shk_chan_event(ch, "channel_created", channel, idlen, -1);
    return SHK_OK;

fail:
    shk_chan_unlock(ch);
    draft_free(ch, &dr);
    return rc;
}

int shk_chan_publish(shk_chan_t *ch, const char *channel, const void *data, size_t len,
                     const char *event_id, const char *event_type, shk_chan_info_t *info)
{
    return publish(ch, channel, NULL, data, len, event_id, event_type, info);
}

int shk_chan_publish_id(shk_chan_t *ch, const char *channel, const shk_chan_msgid_t *id,
                        const void *data, size_t len, const char *event_id,
                        const char *event_type, shk_chan_info_t *info)
{
    if (!id)
        return shk_error(SHK_EINVAL, "NULL message id");
    if (!id->time_ms && !id->tag)
        return shk_error(SHK_EINVAL, "message id 0:0 (every id is above it)");
    return publish(ch, channel, id, data, len, event_id, event_type, info);
}

/* ---- delete ------------------------------------------------------------------------ */

int shk_chan_delete(shk_chan_t *ch, const char *channel)
{
    targets_t t;
    chan_ch_t *c;
    size_t idlen;
    uint64_t o;
    int rc;

    if (!ch)
        return shk_error(SHK_EINVAL, "NULL store");
    if ((rc = shk_chan_usable(ch, 1)) != SHK_OK)
        return rc;
    if ((rc = shk_chan_id_check(ch, channel, &idlen)) != SHK_OK)
        return rc;
    if ((rc = shk_chan_lock(ch)) != SHK_OK)
        return rc;
    c = shk_chan_find(ch, channel, idlen);
    if (!c) {
        shk_chan_unlock(ch);
        return shk_error(SHK_ENOENT, "no channel \"%s\"", channel);
    }
    /* Stored messages first, while the channel is live (freeing them then
     * cannot free the channel under the walk). */
    o = c->head;
    for (uint32_t n = 0, max = c->nmsgs; o && n <= max; n++) {
        chan_msg_t *m = chan_ptr(ch, o);
        o = m->next;
        if (SHK_READ_ONCE(m->refs) & CHAN_REF_STORE)
            shk_chan_unstore(ch, m, 0);
    }
    shk_chan_unlink(ch, c);
    t.n = 0;
    {
        const uint32_t *subs = chan_subs(ch, c);
        chan_alert_t a = {CHAN_ALERT_DELETED, 0, 0, 0, chan_off(ch, c), c->serial, 0,
                          SHK_READ_ONCE(c->seq), 0};
        for (unsigned s = 0; s < ch->nslots; s++)
            if (subs[s] && SHK_READ_ONCE(ch->st->slots[s].pid))
                add_target(ch, &t, s, &a);
    }
    shk_chan_settle(ch, c); /* freed now if nobody holds it */
    shk_chan_unlock(ch);
    send_all(ch, &t);
    shk_chan_event(ch, "channel_deleted", channel, idlen, -1);
    return SHK_OK;
}
