/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * shk_chan_store.c: a channel store's life: its options and their
 * defaults, creating one in a zone (the header published by its magic),
 * opening one (every field of the header checked before anything is
 * trusted), new limits on reload, the clocks (with the test hook), closing,
 * and the fork handler that keeps valgrind's view of the zone right.
 */
#include "shk_chan_internal.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- clocks ----------------------------------------------------------------------- */

uint64_t shk_chan_now(const shk_chan_t *ch)
{
    return ch->clock ? ch->clock(ch->clock_ctx) : shk_time_ms();
}

uint64_t shk_chan_wall(const shk_chan_t *ch)
{
    struct timespec ts;
    if (ch->clock)
        return ch->clock(ch->clock_ctx);
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void shk_chan_set_clock(shk_chan_t *ch, uint64_t (*now_ms)(void *ctx), void *ctx)
{
    if (!ch)
        return;
    ch->clock = now_ms;
    ch->clock_ctx = ctx;
}

/* ---- options -------------------------------------------------------------------- */

typedef struct {
    uint32_t nslots, max_channels, max_wild_ch, max_subs, max_id, max_stored, max_wild, store;
    uint64_t max_message;
    int64_t ttl, inactivity;
    size_t prefix_len, events_len;
    const char *prefix, *events;
} opts_t;

static uint32_t or_default(unsigned v, uint32_t d)
{
    return v ? v : d;
}

static int read_opts(const shk_chan_opts_t *o, opts_t *r)
{
    static const shk_chan_opts_t none;
    int rc;
    if (!o)
        o = &none;
    memset(r, 0, sizeof *r);
    r->nslots = or_default(o->slots, SHK_CHAN_DEFAULT_SLOTS);
    r->max_channels = or_default(o->max_channels, SHK_CHAN_UNLIMITED);
    r->max_wild_ch = or_default(o->max_wildcard_channels, SHK_CHAN_UNLIMITED);
    r->max_subs = or_default(o->max_subscribers, SHK_CHAN_UNLIMITED);
    r->max_id = or_default(o->max_id_len, SHK_CHAN_ID_MAX);
    r->max_stored = or_default(o->max_stored, SHK_CHAN_DEFAULT_MAX_STORED);
    r->max_wild = or_default(o->max_wildcard, SHK_CHAN_DEFAULT_MAX_WILDCARD);
    r->store = o->store_messages != 0;
    r->max_message = o->max_message ? o->max_message : SHK_CHAN_DEFAULT_MESSAGE_MAX;
    r->ttl = o->ttl_ms ? o->ttl_ms : SHK_CHAN_DEFAULT_TTL_MS;
    r->inactivity = o->inactivity_ms ? o->inactivity_ms : SHK_CHAN_DEFAULT_INACTIVITY_MS;
    if (r->nslots > SHK_CHAN_MAX_SLOTS)
        return shk_error(SHK_EINVAL, "%u channel slots, at most %d", r->nslots,
                         SHK_CHAN_MAX_SLOTS);
    if (r->max_id > SHK_CHAN_ID_MAX)
        return shk_error(SHK_EINVAL, "channel id length %u, at most %d", r->max_id,
                         SHK_CHAN_ID_MAX);
    if (r->max_message > SHK_CHAN_MESSAGE_MAX)
        return shk_error(SHK_EINVAL, "largest message %llu, at most %llu",
                         (unsigned long long)r->max_message, SHK_CHAN_MESSAGE_MAX);
    if (o->wildcard_prefix && o->wildcard_prefix[0]) {
        if ((rc = shk_chan_id_syntax(o->wildcard_prefix, SHK_CHAN_PREFIX_MAX, &r->prefix_len,
                            "wildcard prefix")) != SHK_OK)
            return shk_error(SHK_EINVAL, "%s", shk_last_errmsg());
        r->prefix = o->wildcard_prefix;
    }
    if (o->events_channel && o->events_channel[0]) {
        rc = shk_chan_id_syntax(o->events_channel, r->max_id, &r->events_len,
                                "events channel id");
        if (rc != SHK_OK)
            return shk_error(SHK_EINVAL, "%s", shk_last_errmsg());
        r->events = o->events_channel;
    }
    return SHK_OK;
}

static void write_limits(chan_store_t *st, const opts_t *r)
{
    st->max_channels = r->max_channels;
    st->max_wildcard_channels = r->max_wild_ch;
    st->max_subscribers = r->max_subs;
    st->max_id_len = r->max_id;
    st->max_stored = r->max_stored;
    st->max_wildcard = r->max_wild;
    st->store_messages = r->store;
    st->max_message = r->max_message;
    st->ttl_ms = r->ttl;
    st->inactivity_ms = r->inactivity;
    memset(st->prefix, 0, sizeof st->prefix);
    memcpy(st->prefix, r->prefix ? r->prefix : "", r->prefix_len);
    st->prefix_len = (uint32_t)r->prefix_len;
    memset(st->events, 0, sizeof st->events);
    memcpy(st->events, r->events ? r->events : "", r->events_len);
    st->events_len = (uint32_t)r->events_len;
}

static size_t store_bytes(uint32_t nslots)
{
    return sizeof(chan_store_t) + (size_t)nslots * sizeof(chan_slot_t);
}

/* ---- valgrind ------------------------------------------------------------------------ */

/* Under valgrind, a block this process freed before it forked stays "freed"
 * in the child's view, though another process may allocate it again and
 * the child read it (a message published after the fork): in a forked
 * child, the zones of open stores are plain defined memory. The slab's own
 * fork handler covers only blocks allocated at the fork. */
static shk_chan_t *vg_handles;
static pthread_mutex_t vg_mu = PTHREAD_MUTEX_INITIALIZER;

static void vg_atfork_child(void)
{
#if SHK_VG
    for (shk_chan_t *h = vg_handles; h; h = h->vg_next)
        VALGRIND_MAKE_MEM_DEFINED(h->base, h->size);
#endif
}

static void vg_track(shk_chan_t *ch, int on)
{
    static int atfork_set;
    if (!RUNNING_ON_VALGRIND)
        return;
    pthread_mutex_lock(&vg_mu);
    if (!atfork_set && pthread_atfork(NULL, NULL, vg_atfork_child) == 0)
        atfork_set = 1;
    if (on) {
        ch->vg_next = vg_handles;
        vg_handles = ch;
    } else {
        for (shk_chan_t **pp = &vg_handles; *pp; pp = &(*pp)->vg_next)
            if (*pp == ch) {
                *pp = ch->vg_next;
                break;
            }
    }
    pthread_mutex_unlock(&vg_mu);
}

/* ---- create, open, close ----------------------------------------------------------- */

static shk_chan_t *handle_new(shk_zone_t *zone)
{
    shk_chan_t *ch = calloc(1, sizeof *ch);
    if (!ch) {
        shk_error(SHK_ENOMEM, "out of memory");
        return NULL;
    }
    ch->zone = zone;
    ch->slab = shk_zone_slab(zone);
    ch->base = shk_slab_base(ch->slab);
    ch->size = shk_slab_size(ch->slab);
    ch->slot = -1;
    return ch;
}

shk_chan_t *shk_chan_create(shk_zone_t *zone, const shk_chan_opts_t *opts)
{
    opts_t r;
    shk_chan_t *ch;
    chan_store_t *st;
    size_t bytes;
    int rc;

    if (!zone || !shk_zone_slab(zone)) {
        shk_error(SHK_EINVAL, "NULL or uncreated zone");
        return NULL;
    }
    if (shk_zone_rdonly(zone)) {
        shk_error(SHK_EPERM, "zone \"%s\" is mapped read-only", shk_zone_name(zone));
        return NULL;
    }
    if (shk_zone_root(zone, CHAN_ROOT)) {
        shk_error(SHK_EEXIST, "zone \"%s\" already has a channel store", shk_zone_name(zone));
        return NULL;
    }
    if (read_opts(opts, &r) != SHK_OK)
        return NULL;
    if (!(ch = handle_new(zone)))
        return NULL;
    bytes = store_bytes(r.nslots);
    /* A block above the small classes is page-aligned, as the slots'
     * alignment asks. */
    st = shk_slab_calloc(ch->slab, bytes > CHAN_INLINE_MAX ? bytes : CHAN_INLINE_MAX + 1);
    if (!st) {
        shk_error(SHK_ENOMEM, "zone \"%s\" is too small for a channel store",
                  shk_zone_name(zone));
        free(ch);
        return NULL;
    }
    st->version = CHAN_VERSION;
    st->nslots = r.nslots;
    st->size = bytes;
    write_limits(st, &r);
    ch->st = st;
    ch->nslots = r.nslots;
    rc = shk_zone_shmtx_create(zone, &ch->mtx, CHAN_LOCK);
    if (rc == SHK_OK) {
        /* Release: every field above is visible to whoever acquires the
         * magic (shk_chan_open). */
        SHK_STORE_RELEASE(st->magic, CHAN_MAGIC);
        rc = shk_zone_root_set(zone, CHAN_ROOT, st);
    }
    if (rc != SHK_OK) {
        shk_error(rc, "channel store in zone \"%s\": %s", shk_zone_name(zone), shk_last_errmsg());
        SHK_WRITE_ONCE(st->magic, 0);
        shk_slab_free(ch->slab, st);
        free(ch);
        return NULL;
    }
    shk_slab_set_reclaim(ch->slab, shk_chan_reclaim, NULL);
    vg_track(ch, 1);
    return ch;
}

shk_chan_t *shk_chan_open(shk_zone_t *zone, unsigned flags)
{
    shk_chan_t *ch;
    chan_store_t *st;
    uint64_t off, magic;
    uint32_t nslots;
    const char *name;
    int rc;

    if (!zone || !shk_zone_slab(zone)) {
        shk_error(SHK_EINVAL, "NULL or uncreated zone");
        return NULL;
    }
    name = shk_zone_name(zone);
    st = shk_zone_root(zone, CHAN_ROOT);
    if (!st) {
        shk_error(SHK_ENOENT, "zone \"%s\" has no channel store", name);
        return NULL;
    }
    if (!(ch = handle_new(zone)))
        return NULL;
    off = shk_slab_off(ch->slab, st);
    if (!off || off % 64 || !shk_span_ok(off, sizeof *st, ch->size)) {
        shk_error(SHK_ECORRUPT, "channel store in zone \"%s\": header at %llu is out of bounds",
                  name, (unsigned long long)off);
        goto fail;
    }
    magic = SHK_LOAD_ACQUIRE(st->magic);
    nslots = st->nslots;
    if (magic == CHAN_MAGIC && (nslots == 0 || nslots > SHK_CHAN_MAX_SLOTS)) {
        shk_error(SHK_ECORRUPT, "channel store in zone \"%s\": %u slots", name, nslots);
        goto fail;
    }
    rc = shk_layout_check("channel store", name, magic, CHAN_MAGIC, st->version, CHAN_VERSION,
                          st->size, store_bytes(nslots));
    if (rc != SHK_OK)
        goto fail;
    ch->nslots = nslots;
    if (!shk_span_ok(off, store_bytes(nslots), ch->size) || st->max_id_len == 0 ||
        st->max_id_len > SHK_CHAN_ID_MAX || st->prefix_len > SHK_CHAN_PREFIX_MAX ||
        st->events_len > st->max_id_len || st->max_message > SHK_CHAN_MESSAGE_MAX) {
        shk_error(SHK_ECORRUPT, "channel store in zone \"%s\": limits out of range", name);
        goto fail;
    }
    ch->st = st;
    ch->rdonly = (flags & SHK_ZONE_RDONLY) || shk_zone_rdonly(zone);
    if (!ch->rdonly) {
        if ((rc = shk_zone_shmtx_create(zone, &ch->mtx, CHAN_LOCK)) != SHK_OK) {
            shk_error(rc, "channel store in zone \"%s\": %s", name, shk_last_errmsg());
            goto fail;
        }
        shk_slab_set_reclaim(ch->slab, shk_chan_reclaim, NULL);
    }
    vg_track(ch, 1);
    return ch;
fail:
    free(ch);
    return NULL;
}

int shk_chan_reconfigure(shk_chan_t *ch, const shk_chan_opts_t *opts)
{
    opts_t r;
    int rc;
    if (!ch)
        return shk_error(SHK_EINVAL, "NULL store");
    if ((rc = read_opts(opts, &r)) != SHK_OK)
        return rc;
    if (opts && opts->slots && opts->slots != ch->nslots)
        return shk_error(SHK_EINVAL, "the store has %u slots, not %u", ch->nslots,
                         opts->slots);
    if ((rc = shk_chan_lock_for(ch, SHK_CHAN_REAP_WAIT_MS)) != SHK_OK)
        return rc;
    write_limits(ch->st, &r);
    shk_chan_unlock(ch);
    return SHK_OK;
}

void shk_chan_set_bus(shk_chan_t *ch, shk_bus_t *bus)
{
    if (ch)
        ch->bus = bus;
}

void shk_chan_close(shk_chan_t *ch)
{
    if (!ch)
        return;
    vg_track(ch, 0);
    shk_chan_local_free(ch);
    if (!ch->rdonly)
        shk_shmtx_destroy(&ch->mtx);
    free(ch);
}
