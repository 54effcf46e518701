/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * shk_chan_obj.c: the channel store's objects in the zone and the rules
 * every other file keeps through them: channel ids (characters, length,
 * tree order), bounds-checked views of offsets and the tree descent that
 * serves lock-free readers too, the store's lock (checked when taken over
 * from a dead holder), channels made, put on and off the idle and deleted
 * lists and freed, message references dropped (only the lock clears the
 * last) and blocks freed, and the slab reclaim hook that drops the oldest
 * stored messages when the zone is full.
 */
#include "shk_chan_internal.h"

#include <stdlib.h>
#include <string.h>

/* The store whose lock this thread holds, for the reclaim hook: the hook is
 * the slab handle's and runs inside any allocation, so it acts only when the
 * allocation is the store's own. */
static _Thread_local shk_chan_t *chan_op;

/* ---- ids ------------------------------------------------------------------------ */

/* The characters of a URL path segment, less '%' (docs/chan.md). */
int shk_chan_id_char(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return 1;
    return c && strchr("-._~:@!$&'()*+,;=", c) != NULL;
}

int shk_chan_id_syntax(const char *id, size_t max, size_t *len, const char *what)
{
    size_t n;
    if (!id)
        return shk_error(SHK_EINVAL, "NULL %s", what);
    n = strnlen(id, max + 1);
    if (n == 0)
        return shk_error(SHK_EINVAL, "empty %s", what);
    if (n > max)
        return shk_error(SHK_ERANGE, "%s \"%.32s...\" is longer than %zu bytes", what, id, max);
    for (size_t i = 0; i < n; i++)
        if (!shk_chan_id_char((unsigned char)id[i]))
            return shk_error(SHK_EINVAL,
                             "%s \"%s\" has byte 0x%02x at %zu (allowed: A-Z a-z 0-9 "
                             "- . _ ~ : @ ! $ & ' ( ) * + , ; =)",
                             what, id, (unsigned char)id[i], i);
    *len = n;
    return SHK_OK;
}

int shk_chan_check_id(const char *id, size_t max_len, size_t *len)
{
    size_t n;
    int rc = shk_chan_id_syntax(id, max_len > SHK_CHAN_ID_MAX ? SHK_CHAN_ID_MAX : max_len, &n,
                       "channel id");
    if (rc == SHK_OK && len)
        *len = n;
    return rc;
}

int shk_chan_id_check(const shk_chan_t *ch, const char *id, size_t *len)
{
    return shk_chan_id_syntax(id, ch->st->max_id_len, len, "channel id");
}

int shk_chan_is_wildcard(const shk_chan_t *ch, const char *id, size_t len)
{
    const chan_store_t *st = ch->st;
    return st->prefix_len && len >= st->prefix_len && memcmp(id, st->prefix, st->prefix_len) == 0;
}

uint64_t shk_chan_id_key(const char *id, size_t len)
{
    uint64_t k = 0;
    for (size_t i = 0; i < 8; i++)
        k = k << 8 | (i < len ? (unsigned char)id[i] : 0u);
    return k;
}

/* Bytewise order, a prefix before its extensions. */
static int id_cmp(const char *a, size_t al, const char *b, size_t bl)
{
    int r = memcmp(a, b, al < bl ? al : bl);
    if (r)
        return r;
    return al < bl ? -1 : al > bl;
}

typedef struct {
    const shk_chan_t *ch;
    const char *id; /* of `a`: the probe or the node being inserted */
    size_t len;
} cmp_ctx_t;

int shk_chan_cmp(const shk_rbtree_node_t *a, const shk_rbtree_node_t *b, void *ctx)
{
    const cmp_ctx_t *x = ctx;
    /* through chan_ptr: the whole record made visible to memcheck, as the
     * tree's accessor makes its node */
    chan_ch_t *c = chan_ptr(x->ch, chan_off(x->ch, b));
    (void)a;
    return id_cmp(x->id, x->len, chan_id(x->ch, c), c->idlen);
}

/* ---- bounds-checked views ------------------------------------------------------ */

chan_ch_t *shk_chan_ch_at(const shk_chan_t *ch, uint64_t off)
{
    chan_ch_t *c;
    size_t fixed = chan_ch_bytes(ch->nslots, 0);
    if (!off || off % 8 || !shk_span_ok(off, fixed, ch->size))
        return NULL;
    c = chan_ptr(ch, off);
    if (c->idlen == 0 || c->idlen > SHK_CHAN_ID_MAX ||
        !shk_span_ok(off, fixed + c->idlen, ch->size))
        return NULL;
    return c;
}

chan_msg_t *shk_chan_msg_at(const shk_chan_t *ch, uint64_t off)
{
    chan_msg_t *m;
    if (!off || off % 8 || !shk_span_ok(off, sizeof(chan_msg_t), ch->size))
        return NULL;
    m = chan_ptr(ch, off);
    if ((m->magic & 0xffffu) != CHAN_MSG_MAGIC)
        return NULL;
    return m;
}

/* The tree descent of every lookup, each node checked before it is read and
 * the depth bounded, so a lock-free reader of a changing or damaged tree
 * stops rather than strays. */
chan_ch_t *shk_chan_descend(const shk_chan_t *ch, const char *id, size_t len, int mode)
{
    uint64_t off = ch->st->tree.root;
    chan_ch_t *best = NULL;
    for (unsigned depth = 0; off && depth < SHK_RBTREE_MAX_DEPTH; depth++) {
        chan_ch_t *c = shk_chan_ch_at(ch, off);
        int r;
        if (!c)
            return NULL;
        r = id_cmp(id, len, chan_id(ch, c), c->idlen);
        if (mode == 0) {
            if (r == 0)
                return c;
            off = r < 0 ? c->node.left : c->node.right;
        } else if (r < 0 || (r == 0 && mode == 2)) {
            best = c;
            off = c->node.left;
        } else {
            off = c->node.right;
        }
    }
    return best;
}

chan_ch_t *shk_chan_find(shk_chan_t *ch, const char *id, size_t len)
{
    return shk_chan_descend(ch, id, len, 0);
}

/* ---- the lock ------------------------------------------------------------------- */

int shk_chan_usable(const shk_chan_t *ch, int write)
{
    if (write && ch->rdonly)
        return shk_error(SHK_EPERM, "channel store in zone \"%s\" is open read-only",
                         shk_zone_name(ch->zone));
    if (SHK_READ_ONCE(ch->st->damaged))
        return shk_error(SHK_ECORRUPT, "channel store in zone \"%s\" is damaged",
                         shk_zone_name(ch->zone));
    return SHK_OK;
}

int shk_chan_took_over(shk_chan_t *ch)
{
    int rc;
    shk_log(SHK_LOG_WARN, "channel store in zone \"%s\": lock taken over from a dead process; "
                          "checking the store", shk_zone_name(ch->zone));
    rc = shk_chan_check_locked(ch);
    if (rc != SHK_OK) {
        /* Relaxed: the flag alone matters, and every later reader takes
         * the lock (or refuses) after reading it. */
        SHK_WRITE_ONCE(ch->st->damaged, 1);
        shk_log(SHK_LOG_ERR, "channel store in zone \"%s\" is damaged: %s",
                shk_zone_name(ch->zone), shk_last_errmsg());
        return shk_error(SHK_ECORRUPT, "channel store in zone \"%s\" is damaged: %s",
                         shk_zone_name(ch->zone), shk_last_errmsg());
    }
    return SHK_OK;
}

int shk_chan_lock(shk_chan_t *ch)
{
    return shk_chan_lock_for(ch, -1);
}

int shk_chan_lock_for(shk_chan_t *ch, int timeout_ms)
{
    int rc = shk_chan_usable(ch, 1);
    if (rc != SHK_OK)
        return rc;
    rc = timeout_ms < 0 ? shk_shmtx_lock(&ch->mtx)
                        : shk_shmtx_timedlock(&ch->mtx, (unsigned)timeout_ms);
    if (!shk_shmtx_held(rc))
        return shk_error(SHK_ETIMEDOUT, "channel store in zone \"%s\": lock busy for %d ms",
                         shk_zone_name(ch->zone), timeout_ms);
    chan_op = ch;
    if (rc == SHK_EOWNERDEAD && (rc = shk_chan_took_over(ch)) != SHK_OK) {
        shk_chan_unlock(ch);
        return rc;
    }
    return SHK_OK;
}

void shk_chan_unlock(shk_chan_t *ch)
{
    chan_op = NULL;
    shk_shmtx_unlock(&ch->mtx);
}

/* ---- messages ------------------------------------------------------------------- */

static void slab_free(shk_chan_t *ch, void *p, int slab_locked)
{
    if (slab_locked)
        shk_slab_free_locked(ch->slab, p);
    else
        shk_slab_free(ch->slab, p);
}

void shk_chan_msg_release(shk_chan_t *ch, chan_msg_t *m, int slab_locked)
{
    if (m->data)
        slab_free(ch, chan_ptr(ch, m->data), slab_locked);
    m->magic = 0;
    slab_free(ch, m, slab_locked);
}

static void set_oldest(shk_chan_t *ch)
{
    chan_store_t *st = ch->st;
    uint64_t born = st->age_head ? ((chan_msg_t *)chan_ptr(ch, st->age_head))->born_ms : 0;
    SHK_WRITE_ONCE(st->oldest_ms, born); /* a statistic */
}

/* Under the lock: clear `bits`; at 0 the message leaves its channel and is
 * freed. Nobody else can take it to 0 meanwhile: lock-free droppers never
 * clear the last bit (shk_chan_unref). */
static int drop(shk_chan_t *ch, chan_msg_t *m, uint64_t bits, int slab_locked)
{
    /* acq_rel: acquire so that every reader that dropped its bit before
     * (release) is done with the message before it is freed; release for
     * the droppers that come after. */
    uint64_t old = SHK_FETCH_SUB(m->refs, bits, acq_rel);
    chan_store_t *st = ch->st;
    chan_ch_t *c;
    if (old != bits)
        return 0;
    c = chan_ptr(ch, m->chan);
    if (m->prev)
        ((chan_msg_t *)chan_ptr(ch, m->prev))->next = m->next;
    else
        c->head = m->next;
    if (m->next)
        ((chan_msg_t *)chan_ptr(ch, m->next))->prev = m->prev;
    else
        c->tail = m->prev;
    c->nmsgs--;
    SHK_ADD_SOLE(st->messages, (uint64_t)-1);
    shk_chan_msg_release(ch, m, slab_locked);
    /* Inside the reclaim hook only live channels are reached (a deleted one
     * stores nothing), for which settling touches the idle list alone. */
    if (!slab_locked || !(SHK_READ_ONCE(c->flags) & CHAN_F_DELETED))
        shk_chan_settle(ch, c);
    return 1;
}

int shk_chan_unref_locked(shk_chan_t *ch, chan_msg_t *m, uint64_t bits)
{
    return drop(ch, m, bits, 0);
}

int shk_chan_unstore(shk_chan_t *ch, chan_msg_t *m, int slab_locked)
{
    chan_store_t *st = ch->st;
    chan_ch_t *c = chan_ptr(ch, m->chan);
    if (m->age_prev)
        ((chan_msg_t *)chan_ptr(ch, m->age_prev))->age_next = m->age_next;
    else
        st->age_head = m->age_next;
    if (m->age_next)
        ((chan_msg_t *)chan_ptr(ch, m->age_next))->age_prev = m->age_prev;
    else
        st->age_tail = m->age_prev;
    m->age_next = m->age_prev = 0;
    SHK_ADD_SOLE(st->stored, (uint64_t)-1);
    SHK_ADD_SOLE(st->stored_bytes, -(uint64_t)m->len);
    SHK_ADD_SOLE(c->stored, (uint32_t)-1);
    set_oldest(ch);
    return drop(ch, m, CHAN_REF_STORE, slab_locked);
}

void shk_chan_unref(shk_chan_t *ch, chan_msg_t *m)
{
    uint64_t bit = CHAN_REF_SLOT(ch->slot);
    /* Relaxed: only this process changes its bit, and when the value is
     * this bit alone nobody else can change it either (bits are only set
     * at publish, the store's only cleared under the lock by whoever sees
     * it), so the last drop is always the lock's. */
    uint64_t old = SHK_READ_ONCE(m->refs);
    for (;;) {
        if (old == bit) {
            if (shk_chan_lock(ch) != SHK_OK) {
                /* A damaged store: the message stays, the bit goes. */
                (void)SHK_FETCH_SUB(m->refs, bit, release);
                return;
            }
            drop(ch, m, bit, 0);
            shk_chan_unlock(ch);
            return;
        }
        /* Release: this process's reads of the message come before the
         * free by the last dropper (its acquire). The result is never 0. */
        if (SHK_CAS(m->refs, &old, old - bit, release, relaxed))
            return;
    }
}

/* ---- channels -------------------------------------------------------------------- */

static void list_out(shk_chan_t *ch, uint64_t *head, uint64_t *tail, chan_ch_t *c)
{
    if (c->lprev)
        ((chan_ch_t *)chan_ptr(ch, c->lprev))->lnext = c->lnext;
    else
        *head = c->lnext;
    if (c->lnext)
        ((chan_ch_t *)chan_ptr(ch, c->lnext))->lprev = c->lprev;
    else if (tail)
        *tail = c->lprev;
    c->lnext = c->lprev = 0;
}

static void free_channel(shk_chan_t *ch, chan_ch_t *c)
{
    c->idlen = 0; /* no longer a plausible channel for lock-free readers */
    shk_slab_free(ch->slab, c);
}

int shk_chan_settle(shk_chan_t *ch, chan_ch_t *c)
{
    chan_store_t *st = ch->st;
    uint32_t flags = SHK_READ_ONCE(c->flags);
    int idle = !c->nmsgs && !SHK_READ_ONCE(c->subscribers);
    if (flags & CHAN_F_DELETED) {
        if (!idle)
            return 0;
        list_out(ch, &st->dead_head, NULL, c);
        SHK_ADD_SOLE(st->deleted_live, (uint64_t)-1);
        free_channel(ch, c);
        return 1;
    }
    if (idle && !(flags & CHAN_F_IDLE)) {
        c->lprev = st->idle_tail;
        c->lnext = 0;
        if (st->idle_tail)
            ((chan_ch_t *)chan_ptr(ch, st->idle_tail))->lnext = chan_off(ch, c);
        else
            st->idle_head = chan_off(ch, c);
        st->idle_tail = chan_off(ch, c);
        c->since_ms = shk_chan_now(ch);
        SHK_WRITE_ONCE(c->flags, flags | CHAN_F_IDLE); /* read lock-free by info only */
    } else if (!idle && (flags & CHAN_F_IDLE)) {
        list_out(ch, &st->idle_head, &st->idle_tail, c);
        SHK_WRITE_ONCE(c->flags, flags & ~CHAN_F_IDLE);
    }
    return 0;
}

static void count_channel(shk_chan_t *ch, chan_ch_t *c, int64_t d)
{
    SHK_ADD_SOLE(ch->st->channels, (uint64_t)d);
    if (SHK_READ_ONCE(c->flags) & CHAN_F_WILDCARD)
        SHK_ADD_SOLE(ch->st->wildcard_channels, (uint64_t)d);
}

chan_ch_t *shk_chan_make(shk_chan_t *ch, const char *id, size_t len)
{
    chan_store_t *st = ch->st;
    int wild = shk_chan_is_wildcard(ch, id, len);
    uint64_t nch = SHK_READ_ONCE(st->channels), nwild = SHK_READ_ONCE(st->wildcard_channels);
    cmp_ctx_t cc = {ch, id, len};
    chan_ch_t *c;

    if (wild && nwild >= st->max_wildcard_channels) {
        shk_error(SHK_EAGAIN, "too many wildcard channels (%u)", st->max_wildcard_channels);
        return NULL;
    }
    if (!wild && nch - nwild >= st->max_channels) {
        shk_error(SHK_EAGAIN, "too many channels (%u)", st->max_channels);
        return NULL;
    }
    c = shk_slab_calloc(ch->slab, chan_ch_bytes(ch->nslots, len));
    if (!c) {
        shk_error(SHK_ENOMEM, "zone \"%s\" is full: no room for channel \"%s\"",
                  shk_zone_name(ch->zone), id);
        return NULL;
    }
    c->node.key = shk_chan_id_key(id, len);
    c->serial = ++st->serial;
    c->idlen = (uint16_t)len;
    memcpy(chan_id(ch, c), id, len);
    chan_id(ch, c)[len] = '\0';
    c->created_ms = shk_chan_wall(ch);
    SHK_WRITE_ONCE(c->flags, (wild ? CHAN_F_WILDCARD : 0u) |
                                 (st->events_len == len && memcmp(st->events, id, len) == 0
                                      ? CHAN_F_EVENTS
                                      : 0u));
    shk_rbtree_insert(&st->tree, ch->base, &c->node, shk_chan_cmp, &cc);
    count_channel(ch, c, 1);
    shk_chan_settle(ch, c);
    return c;
}

void shk_chan_unlink(shk_chan_t *ch, chan_ch_t *c)
{
    chan_store_t *st = ch->st;
    uint32_t flags = SHK_READ_ONCE(c->flags);
    if (flags & CHAN_F_IDLE)
        list_out(ch, &st->idle_head, &st->idle_tail, c);
    shk_rbtree_delete(&st->tree, ch->base, &c->node);
    count_channel(ch, c, -1);
    SHK_WRITE_ONCE(c->flags, (flags & ~CHAN_F_IDLE) | CHAN_F_DELETED);
    c->lprev = 0;
    c->lnext = st->dead_head;
    if (st->dead_head)
        ((chan_ch_t *)chan_ptr(ch, st->dead_head))->lprev = chan_off(ch, c);
    st->dead_head = chan_off(ch, c);
    SHK_ADD_SOLE(st->deleted_live, 1);
    SHK_ADD_SOLE(st->deleted, 1);
}

void shk_chan_free_idle(shk_chan_t *ch, chan_ch_t *c)
{
    chan_store_t *st = ch->st;
    list_out(ch, &st->idle_head, &st->idle_tail, c);
    shk_rbtree_delete(&st->tree, ch->base, &c->node);
    count_channel(ch, c, -1);
    SHK_ADD_SOLE(st->deleted, 1);
    free_channel(ch, c);
}

/* ---- the reclaim hook ---------------------------------------------------------- */

/* The zone is full while the store allocates: drop stored messages, oldest
 * first, until at least `size` bytes and one block went back. Runs with the
 * slab's lock held, inside the store's. */
int shk_chan_reclaim(shk_slab_t *slab, size_t size, void *ctx)
{
    shk_chan_t *ch = chan_op;
    size_t bytes = 0;
    int freed = 0;
    (void)ctx;
    if (!ch || ch->slab != slab)
        return 0;
    while (ch->st->age_head && (bytes < size || !freed)) {
        chan_msg_t *m = chan_ptr(ch, ch->st->age_head);
        size_t b = shk_slab_usable(slab, m) +
                   (m->data ? shk_slab_usable(slab, chan_ptr(ch, m->data)) : 0);
        SHK_ADD_SOLE(ch->st->reclaimed, 1);
        if (shk_chan_unstore(ch, m, 1)) {
            freed++;
            bytes += b;
        }
    }
    return freed;
}

