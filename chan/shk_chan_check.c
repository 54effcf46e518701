/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * shk_chan_check.c: the channel store's checker. It verifies the tree with
 * shk_rbtree_check, then every channel (id, order, counts, its message list
 * link by link), the deleted, idle and age lists, and every counter against
 * what the walks found. Each walk is bounded by the counters and by what
 * the zone could hold, every offset is checked before it is read, so a
 * damaged store is reported, never looped on. Used by the tests, by
 * shk_chan_reap after a worker died holding the lock, and by any waiter
 * that took the lock over.
 */
#include "shk_chan_internal.h"

#include <string.h>

typedef struct {
    uint64_t msgs, stored, stored_bytes, subs, idle, wild;
    uint64_t slot_subs[SHK_CHAN_MAX_SLOTS];
} tally_t;

static int bad(shk_chan_t *ch, const char *what, uint64_t off)
{
    return shk_error(SHK_ECORRUPT, "channel store in zone \"%s\": %s (at %llu)",
                     shk_zone_name(ch->zone), what, (unsigned long long)off);
}

/* The most blocks of `unit` bytes the zone could hold: a bound on any walk. */
static uint64_t walk_max(const shk_chan_t *ch, size_t unit)
{
    return ch->size / unit + 1;
}

static int check_channel(shk_chan_t *ch, chan_ch_t *c, int deleted, tally_t *t)
{
    chan_store_t *st = ch->st;
    uint64_t coff = chan_off(ch, c), o = c->head, prev = 0, seq = 0;
    uint32_t *subs = chan_subs(ch, c), n = 0, stored = 0;
    uint64_t nsubs = 0, max = walk_max(ch, sizeof(chan_msg_t));
    uint32_t flags = SHK_READ_ONCE(c->flags);
    const char *id = chan_id(ch, c);

    for (size_t i = 0; i < c->idlen; i++)
        if (!shk_chan_id_char((unsigned char)id[i]))
            return bad(ch, "channel id byte out of range", coff);
    if (id[c->idlen] != '\0')
        return bad(ch, "channel id not terminated", coff);
    if (!(flags & CHAN_F_DELETED) != !deleted)
        return bad(ch, "channel deleted flag does not match its list", coff);
    for (unsigned s = 0; s < ch->nslots; s++) {
        nsubs += subs[s];
        t->slot_subs[s] += subs[s];
    }
    if (nsubs != SHK_READ_ONCE(c->subscribers))
        return bad(ch, "channel subscribers differ from the sum of its slots", coff);
    t->subs += nsubs;
    for (; o; n++) {
        chan_msg_t *m = shk_chan_msg_at(ch, o);
        uint64_t refs;
        if (n >= max)
            return bad(ch, "message list does not end", coff);
        if (!m)
            return bad(ch, "message out of bounds or without its magic", o);
        refs = SHK_READ_ONCE(m->refs);
        if (m->prev != prev)
            return bad(ch, "message's prev link does not point back", o);
        if (m->chan != coff)
            return bad(ch, "message names another channel", o);
        if (m->seq <= seq || m->seq > SHK_READ_ONCE(c->seq))
            return bad(ch, "message seq out of order", o);
        if (!refs)
            return bad(ch, "message with no reference left in a list", o);
        for (unsigned s = 0; s < 63; s++)
            if ((refs & CHAN_REF_SLOT(s)) &&
                (s >= ch->nslots || (!subs[s] && !SHK_READ_ONCE(st->slots[s].dead))))
                return bad(ch, "message held by a slot with no subscriber there", o);
        if (m->data && !shk_span_ok(m->data, m->len, ch->size))
            return bad(ch, "message data out of bounds", o);
        if (refs & CHAN_REF_STORE) {
            if (deleted)
                return bad(ch, "deleted channel stores a message", o);
            stored++;
            t->stored_bytes += m->len;
        }
        seq = m->seq;
        prev = o;
        o = m->next;
    }
    if (c->tail != prev)
        return bad(ch, "channel tail is not its last message", coff);
    if (n != c->nmsgs)
        return bad(ch, "channel message count differs from its list", coff);
    if (stored != SHK_READ_ONCE(c->stored))
        return bad(ch, "channel stored count differs from its list", coff);
    t->msgs += n;
    t->stored += stored;
    if (!deleted && (flags & CHAN_F_IDLE)) {
        if (n || nsubs)
            return bad(ch, "idle channel has messages or subscribers", coff);
        t->idle++;
    } else if (!deleted && !n && !nsubs) {
        return bad(ch, "channel with nothing is not on the idle list", coff);
    }
    if (flags & CHAN_F_WILDCARD)
        t->wild += !deleted;
    return SHK_OK;
}

static int check_tree(shk_chan_t *ch, tally_t *t)
{
    chan_store_t *st = ch->st;
    uint64_t count = st->tree.count, seen = 0;
    char prev[SHK_CHAN_ID_MAX + 1];
    size_t plen = 0;
    int rc = shk_rbtree_check(&st->tree, ch->base, ch->size, NULL, NULL);
    if (rc != SHK_OK)
        return shk_error(rc, "channel store in zone \"%s\": %s", shk_zone_name(ch->zone),
                         shk_last_errmsg());
    /* In order by descents (each bounded and checked) rather than parent
     * links, so a read-only checker of a tree that changes under it stops. */
    for (chan_ch_t *c = shk_chan_descend(ch, "", 0, 2); c;
         c = shk_chan_descend(ch, prev, plen, 1)) {
        uint64_t off = chan_off(ch, c);
        if (++seen > count)
            return bad(ch, "tree walk passes its count", off);
        if (c->idlen > st->max_id_len)
            return bad(ch, "channel id too long", off);
        memcpy(prev, chan_id(ch, c), c->idlen);
        plen = c->idlen;
        if (c->node.key != shk_chan_id_key(prev, plen))
            return bad(ch, "channel key does not match its id", off);
        if ((rc = check_channel(ch, c, 0, t)) != SHK_OK)
            return rc;
    }
    if (seen != count || count != SHK_READ_ONCE(st->channels))
        return bad(ch, "channel count differs from the tree", 0);
    return SHK_OK;
}

static int check_lists(shk_chan_t *ch, tally_t *t)
{
    chan_store_t *st = ch->st;
    uint64_t o, prev = 0, n = 0, max = walk_max(ch, sizeof(chan_ch_t)), born = 0, bytes = 0;
    int rc;
    for (o = st->dead_head; o; n++) {
        chan_ch_t *c = shk_chan_ch_at(ch, o);
        if (n >= max || !c || c->lprev != prev)
            return bad(ch, "deleted list broken", o);
        if ((rc = check_channel(ch, c, 1, t)) != SHK_OK)
            return rc;
        prev = o;
        o = c->lnext;
    }
    if (n != SHK_READ_ONCE(st->deleted_live))
        return bad(ch, "deleted list length differs from its counter", 0);
    for (o = st->idle_head, prev = 0, n = 0; o; n++) {
        chan_ch_t *c = shk_chan_ch_at(ch, o);
        if (n >= max || !c || c->lprev != prev || !(SHK_READ_ONCE(c->flags) & CHAN_F_IDLE))
            return bad(ch, "idle list broken", o);
        prev = o;
        o = c->lnext;
    }
    if (st->idle_tail != prev || n != t->idle)
        return bad(ch, "idle list differs from the idle channels", 0);
    max = walk_max(ch, sizeof(chan_msg_t));
    for (o = st->age_head, prev = 0, n = 0; o; n++) {
        chan_msg_t *m = shk_chan_msg_at(ch, o);
        if (n >= max || !m || m->age_prev != prev)
            return bad(ch, "age list broken", o);
        if (!(SHK_READ_ONCE(m->refs) & CHAN_REF_STORE) || m->born_ms < born)
            return bad(ch, "age list holds an unstored or younger-first message", o);
        born = m->born_ms;
        bytes += m->len;
        prev = o;
        o = m->age_next;
    }
    if (st->age_tail != prev || n != t->stored || n != SHK_READ_ONCE(st->stored))
        return bad(ch, "age list differs from the stored messages", 0);
    if (bytes != t->stored_bytes || bytes != SHK_READ_ONCE(st->stored_bytes))
        return bad(ch, "stored bytes differ from the messages", 0);
    return SHK_OK;
}

int shk_chan_check_locked(shk_chan_t *ch)
{
    chan_store_t *st = ch->st;
    tally_t t;
    int rc;
    memset(&t, 0, sizeof t);
    if (st->nslots != ch->nslots)
        return bad(ch, "slot count changed since the store was opened", 0);
    if ((rc = check_tree(ch, &t)) != SHK_OK || (rc = check_lists(ch, &t)) != SHK_OK)
        return rc;
    if (t.msgs != SHK_READ_ONCE(st->messages))
        return bad(ch, "message count differs from the lists", 0);
    if (t.subs != SHK_READ_ONCE(st->subscribers))
        return bad(ch, "subscriber count differs from the channels", 0);
    if (t.wild != SHK_READ_ONCE(st->wildcard_channels))
        return bad(ch, "wildcard channel count differs from the tree", 0);
    for (unsigned s = 0; s < ch->nslots; s++)
        if (t.slot_subs[s] != SHK_READ_ONCE(st->slots[s].subscribers) &&
            !SHK_READ_ONCE(st->slots[s].dead))
            return bad(ch, "a slot's subscribers differ from the channels", s);
    return SHK_OK;
}

int shk_chan_check(shk_chan_t *ch)
{
    int rc;
    if (!ch)
        return shk_error(SHK_EINVAL, "NULL store");
    if (ch->rdonly)
        return shk_chan_check_locked(ch);
    rc = shk_shmtx_lock(&ch->mtx);
    if (!shk_shmtx_held(rc))
        return rc;
    rc = shk_chan_check_locked(ch);
    shk_shmtx_unlock(&ch->mtx);
    return rc;
}
