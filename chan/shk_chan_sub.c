/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * shk_chan_sub.c: subscribers, in a joined worker. A subscriber holds links
 * to channels, each with its own start: shk_chan_sub_add chooses its
 * backlog under the store's lock, atomically with the subscription (stored
 * messages the worker already handled are pinned with its bit and given to
 * the new subscriber alone; those still on their way start it just before
 * them), so the backlog and the live messages never overlap. Removals wait
 * for the end of a delivery in progress (shk_chan_sweep).
 */
#include "shk_chan_internal.h"

#include <stdlib.h>
#include <string.h>

/* ---- subscribers ------------------------------------------------------------------ */

shk_chan_sub_t *shk_chan_sub_new(shk_chan_t *ch, shk_chan_deliver_t fn, void *ctx)
{
    shk_chan_sub_t *sub;
    if (!ch || !fn) {
        shk_error(SHK_EINVAL, "NULL argument");
        return NULL;
    }
    if (!shk_chan_joined(ch)) {
        shk_error(SHK_EPERM, "subscribers live in a shk_chan_joined process (shk_chan_join)");
        return NULL;
    }
    if (!(sub = calloc(1, sizeof *sub))) {
        shk_error(SHK_ENOMEM, "out of memory");
        return NULL;
    }
    sub->ch = ch;
    sub->fn = fn;
    sub->ctx = ctx;
    sub->anext = ch->subs;
    if (ch->subs)
        ch->subs->aprev = sub;
    ch->subs = sub;
    return sub;
}

static chan_link_t *find_link(shk_chan_sub_t *sub, const char *id, size_t len)
{
    for (chan_link_t *l = sub->head; l; l = l->snext)
        if (!l->dead && l->wc->idlen == len && memcmp(l->wc->id, id, len) == 0)
            return l;
    return NULL;
}

/* Under the lock: the stored messages `f` asks for, oldest first, as
 * offsets; bit 0 set on those this call pinned with the slot's bit. */
static int collect_backlog(shk_chan_t *ch, chan_ch_t *c, const shk_chan_from_t *f,
                           uint64_t **out, size_t *n)
{
    uint64_t o = c->tail, start = 0, bit = CHAN_REF_SLOT(ch->slot), *arr;
    size_t k = 0, i = 0;
    *out = NULL;
    *n = 0;
    if (f->mode == SHK_CHAN_FROM_NEW)
        return SHK_OK;
    for (uint32_t steps = 0; o && steps <= c->nmsgs; steps++) {
        chan_msg_t *m = chan_ptr(ch, o);
        if (f->mode == SHK_CHAN_FROM_LAST && k == f->last)
            break;
        if (f->mode == SHK_CHAN_FROM_AFTER &&
            (m->time_ms < f->after.time_ms ||
             (m->time_ms == f->after.time_ms && m->tag <= f->after.tag)))
            break;
        if (SHK_READ_ONCE(m->refs) & CHAN_REF_STORE) {
            k++;
            start = o;
        }
        o = m->prev;
    }
    if (!k)
        return SHK_OK;
    if (!(arr = malloc(k * sizeof *arr)))
        return shk_error(SHK_ENOMEM, "out of memory");
    for (o = start; o && i < k; o = ((chan_msg_t *)chan_ptr(ch, o))->next) {
        chan_msg_t *m = chan_ptr(ch, o);
        uint64_t refs = SHK_READ_ONCE(m->refs);
        if (!(refs & CHAN_REF_STORE))
            continue;
        arr[i] = o;
        if (!(refs & bit)) {
            /* Pinned with this slot's bit, which only this process changes:
             * the message stays until the backlog is delivered. Relaxed:
             * under the lock, which orders it for every other changer. */
            (void)SHK_FETCH_ADD(m->refs, bit, relaxed);
            arr[i] |= 1;
        }
        i++;
    }
    *out = arr;
    *n = i;
    return SHK_OK;
}

int shk_chan_sub_add(shk_chan_sub_t *sub, const char *channel, const shk_chan_from_t *from)
{
    shk_chan_from_t f = {SHK_CHAN_FROM_NEW, {0, 0}, 0};
    shk_chan_t *ch;
    chan_store_t *st;
    chan_link_t *l;
    chan_wch_t *w = NULL, *neww = NULL;
    chan_ch_t *c;
    uint64_t *backlog = NULL, cursor, cseq;
    size_t idlen, nb = 0;
    int64_t after;
    int rc, made = 0, wild;

    if (!sub || sub->freed)
        return shk_error(SHK_EINVAL, "NULL or freed subscriber");
    ch = sub->ch;
    if (!shk_chan_joined(ch))
        return shk_error(SHK_EPERM, "not shk_chan_joined");
    if ((rc = shk_chan_usable(ch, 1)) != SHK_OK || (rc = shk_chan_id_check(ch, channel, &idlen)))
        return rc;
    st = ch->st;
    if (from)
        f = *from;
    if (f.mode < SHK_CHAN_FROM_NEW || f.mode > SHK_CHAN_FROM_LAST ||
        (f.mode == SHK_CHAN_FROM_LAST && f.last == 0))
        return shk_error(SHK_EINVAL, "bad start of subscription (mode %d, last %u)", f.mode,
                         f.last);
    wild = shk_chan_is_wildcard(ch, channel, idlen);
    if (wild && sub->nwild >= st->max_wildcard)
        return shk_error(SHK_ERANGE, "a subscriber may hold %u wildcard channels",
                         st->max_wildcard);
    if (find_link(sub, channel, idlen))
        return shk_error(SHK_EEXIST, "already subscribed to \"%s\"", channel);
    if (!(l = calloc(1, sizeof *l)))
        return shk_error(SHK_ENOMEM, "out of memory");
    if ((rc = shk_chan_lock(ch)) != SHK_OK) {
        free(l);
        return rc;
    }
    if (!(c = shk_chan_find(ch, channel, idlen))) {
        if (!(c = shk_chan_make(ch, channel, idlen))) {
            rc = shk_last_error();
            goto fail;
        }
        made = 1;
    }
    if (SHK_READ_ONCE(c->subscribers) >= st->max_subscribers) {
        rc = shk_error(SHK_EAGAIN, "channel \"%s\" has %u subscribers, the most allowed",
                       channel, st->max_subscribers);
        goto fail;
    }
    if (!(w = shk_chan_wch_find(ch, chan_off(ch, c), c->serial))) {
        if ((rc = shk_chan_wch_reserve(ch)) != SHK_OK || !(w = neww = calloc(1, sizeof *w))) {
            rc = shk_error(SHK_ENOMEM, "out of memory");
            goto fail;
        }
        w->off = chan_off(ch, c);
        w->serial = c->serial;
        w->wseq = SHK_READ_ONCE(c->seq); /* nothing before holds this slot's bit */
        w->idlen = idlen;
        memcpy(w->id, channel, idlen + 1);
    }
    if (w->nlinks == w->cap) {
        unsigned ncap = w->cap ? w->cap * 2 : 4;
        chan_ent_t *ne = realloc(w->ents, ncap * sizeof *ne);
        if (!ne) {
            rc = shk_error(SHK_ENOMEM, "out of memory");
            goto fail;
        }
        w->ents = ne;
        w->cap = ncap;
    }
    if ((rc = collect_backlog(ch, c, &f, &backlog, &nb)) != SHK_OK)
        goto fail;
    /* Stored messages past wseq are still on their way to this worker: the
     * catch-up below gives them, so the cursor stops before the first. */
    cursor = cseq = SHK_READ_ONCE(c->seq);
    for (size_t i = 0; i < nb; i++) {
        chan_msg_t *m = chan_ptr(ch, backlog[i] & ~1ULL);
        if (m->seq > w->wseq) {
            cursor = m->seq - 1;
            nb = i;
            break;
        }
    }
    if (neww) /* the next message's `prev` is then this record's wseq: no catch-up */
        chan_last(ch, c)[ch->slot] = w->wseq;
    chan_subs(ch, c)[ch->slot]++;
    SHK_ADD_SOLE(c->subscribers, 1);
    SHK_ADD_SOLE(st->slots[ch->slot].subscribers, 1);
    SHK_ADD_SOLE(st->subscribers, 1);
    after = SHK_READ_ONCE(c->subscribers);
    shk_chan_settle(ch, c);
    shk_chan_unlock(ch);

    if (neww)
        shk_chan_wch_insert(ch, neww);
    l->sub = sub;
    l->wc = w;
    l->idx = w->nlinks;
    w->ents[w->nlinks++] = (chan_ent_t){cursor, sub->fn, sub->ctx, sub, l};
    l->sprev = sub->tail;
    if (sub->tail)
        sub->tail->snext = l;
    else
        sub->head = l;
    sub->tail = l;
    sub->nlinks++;
    sub->nwild += (unsigned)wild;
    if (made)
        shk_chan_event(ch, "channel_created", channel, idlen, -1);

    w->busy++;
    ch->depth++;
    for (size_t i = 0; i < nb; i++) {
        chan_msg_t *m = chan_ptr(ch, backlog[i] & ~1ULL);
        shk_chan_msg_t v;
        if (!l->dead && shk_chan_msg_view(ch, w, m, &v)) {
            v.flags = SHK_CHAN_MSG_BACKLOG;
            sub->fn(sub, &v, sub->ctx);
            shk_chan_count_delivered(ch, 1);
        }
        if (backlog[i] & 1)
            shk_chan_unref(ch, m);
    }
    w->busy--;
    if (cursor < cseq || w->pending) {
        w->pending = 0;
        shk_chan_catch_up_busy(ch, w);
    }
    ch->depth--;
    free(backlog);
    shk_chan_event(ch, "subscribed", channel, idlen, after);
    if (!ch->depth)
        shk_chan_sweep(ch);
    return SHK_OK;

fail:
    shk_chan_unlock(ch);
    if (neww)
        free(neww->ents);
    free(neww);
    free(l);
    return rc;
}

int shk_chan_sub_del(shk_chan_sub_t *sub, const char *channel)
{
    chan_link_t *l;
    size_t len;
    if (!sub || sub->freed || !channel)
        return shk_error(SHK_EINVAL, "NULL or freed subscriber");
    len = strnlen(channel, SHK_CHAN_ID_MAX + 1);
    if (!(l = find_link(sub, channel, len)))
        return shk_error(SHK_ENOENT, "not subscribed to \"%.*s\"", (int)len, channel);
    shk_chan_mark_dead(sub->ch, l);
    if (!sub->ch->depth)
        shk_chan_sweep(sub->ch);
    return SHK_OK;
}

unsigned shk_chan_sub_count(const shk_chan_sub_t *sub)
{
    return sub ? sub->nlinks : 0;
}

void shk_chan_sub_free(shk_chan_sub_t *sub)
{
    shk_chan_t *ch;
    if (!sub || sub->freed)
        return;
    ch = sub->ch;
    for (chan_link_t *l = sub->head; l; l = l->snext)
        if (!l->dead)
            shk_chan_mark_dead(ch, l);
    sub->freed = 1;
    sub->fnext = ch->freed;
    ch->freed = sub;
    if (!ch->depth)
        shk_chan_sweep(ch);
}
