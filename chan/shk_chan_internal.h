/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * shk_chan_internal.h: what the channel store's files share: the layout in
 * the zone (store header, slot table, channel, message), the process-local
 * handle and the worker's local records, and the functions one file calls
 * in another. shk_chan_store.c creates and opens stores; shk_chan_obj.c
 * holds ids, the lock, channels and messages in the zone; shk_chan_pub.c
 * publish, delete and events; shk_chan_deliver.c the worker's delivery;
 * shk_chan_sub.c its subscribers; shk_chan_reap.c reap, expiry, info and
 * stats; shk_chan_check.c the checker. Never installed. See docs/chan.md.
 */
#ifndef SHK_CHAN_INTERNAL_H
#define SHK_CHAN_INTERNAL_H

#include "shk_atomic_internal.h"
#include "shk_chan.h"
#include "shk_internal.h"
#include "shk_rbtree.h"
#include "shk_shmtx.h"
#include "shk_slab.h"

#include "shk_vg_internal.h"

#define CHAN_MAGIC 0x314e4148434b4853ULL /* "SHKCHAN1", little-endian */
#define CHAN_VERSION 1u
#define CHAN_MSG_MAGIC 0x4d43u           /* low half of a message's `magic` */
#define CHAN_ROOT "chan"
#define CHAN_LOCK "chan"

/* A message's refs: bit s for each slot that still has to deliver it, and
 * the store's bit while it is stored. */
#define CHAN_REF_STORE (1ULL << 63)
#define CHAN_REF_SLOT(s) (1ULL << (s))

/* Data that fits with its header in one small chunk stays inline. */
#define CHAN_INLINE_MAX 2048u

/* Channel flags (chan_ch_t.flags). The first two are the public ones. */
#define CHAN_F_WILDCARD SHK_CHAN_WILDCARD
#define CHAN_F_EVENTS SHK_CHAN_EVENTS
#define CHAN_F_DELETED 0x10u /* out of the tree, on the deleted list */
#define CHAN_F_IDLE 0x20u    /* on the idle list */

/* Alert kinds (chan_alert_t.kind). */
#define CHAN_ALERT_MSG 1u
#define CHAN_ALERT_DELETED 2u

/* ---- the layout in the zone (every link an offset from the slab base) ----- */

typedef struct chan_slot_s {
    _Alignas(64) _Atomic int32_t pid; /* joined process, 0: free */
    _Atomic uint32_t epoch;           /* bumped at each join */
    _Atomic uint32_t dead;            /* reap pending: the process is gone */
    _Atomic uint32_t missed;          /* an alert for this slot was not sent */
    _Atomic uint64_t subscribers;     /* under the lock */
    _Atomic uint64_t delivered;       /* by the slot's process alone */
    _Atomic uint64_t alerts;          /* by publishers */
    _Atomic uint64_t alerts_missed;   /* by publishers */
    _Atomic uint64_t stale;           /* by the slot's process alone */
    uint64_t reserved;
} chan_slot_t;

typedef struct chan_store_s {
    _Atomic uint64_t magic; /* stored last (release) */
    uint32_t version;
    uint32_t nslots;
    uint64_t size; /* bytes of this block, slots included */

    /* limits (under the lock; shk_chan_reconfigure changes them) */
    uint32_t max_channels, max_wildcard_channels, max_subscribers, max_id_len;
    uint32_t max_stored, max_wildcard, store_messages, prefix_len;
    uint64_t max_message;
    int64_t ttl_ms, inactivity_ms;
    char prefix[SHK_CHAN_PREFIX_MAX + 1];
    uint32_t events_len, reserved0;
    char events[SHK_CHAN_ID_MAX + 1];

    /* state, under the lock */
    shk_rbtree_t tree;
    uint64_t age_head, age_tail;   /* stored messages, oldest first */
    uint64_t idle_head, idle_tail; /* channels with no subscriber, no message */
    uint64_t dead_head;            /* deleted channels still referenced */
    uint64_t serial;               /* last channel serial given */
    _Atomic uint32_t damaged;      /* a check failed: every call refuses */
    uint32_t reserved1;

    /* counters: written under the lock, read by shk_chan_stats without it */
    _Atomic uint64_t channels, wildcard_channels, deleted_live;
    _Atomic uint64_t stored, stored_bytes, messages, subscribers;
    _Atomic uint64_t published, reclaimed, expired, deleted, events_failed;
    _Atomic uint64_t oldest_ms; /* born_ms of the age list's head, 0 if none */

    chan_slot_t slots[]; /* nslots */
} chan_store_t;

typedef struct chan_ch_s {
    shk_rbtree_node_t node; /* first; key: the id's first 8 bytes, big-endian */
    uint64_t serial;        /* unique in the store: told apart from a reused block */
    uint64_t head, tail;    /* messages (stored and in flight), seq order */
    uint64_t lnext, lprev;  /* idle list or deleted list */
    /* the last seq and id given: under the lock, and read lock-free by
     * read-only handles (info) */
    _Atomic uint64_t seq;
    _Atomic uint64_t last_time_ms;
    uint64_t created_ms;    /* wall; written before the channel is linked */
    uint64_t since_ms;      /* monotonic: idle since (on the idle list) */
    _Atomic uint64_t published;
    _Atomic uint32_t stored, subscribers;
    _Atomic uint32_t flags;
    uint32_t nmsgs; /* messages in the list */
    _Atomic uint32_t last_tag;
    uint16_t idlen;
    uint16_t reserved;
    /* then uint32_t subs[nslots], padded to 8; uint64_t last[nslots] (the seq
     * of the last message published with that slot's bit); id, NUL */
} chan_ch_t;

typedef struct chan_msg_s {
    uint64_t next, prev;         /* channel list */
    uint64_t age_next, age_prev; /* age list, while stored */
    _Atomic uint64_t refs;
    uint64_t seq;
    uint64_t time_ms; /* the id */
    uint64_t born_ms; /* monotonic */
    uint64_t chan;    /* the channel's offset */
    uint64_t data;    /* offset of a block of its own, 0: inline */
    uint32_t tag;
    uint32_t len;
    uint16_t eid_len, etype_len; /* each string followed by a NUL when not empty */
    uint32_t magic;              /* CHAN_MSG_MAGIC */
    /* then event id, event type, inline data */
} chan_msg_t;

/* The alert a publisher sends to a worker (SHK_CHAN_ALERT). */
typedef struct chan_alert_s {
    uint32_t kind, slot, epoch, reserved;
    uint64_t chan, serial; /* channel offset and serial */
    uint64_t msg, seq;     /* message offset and seq */
    uint64_t prev;         /* seq of the slot's previous message on the channel */
} chan_alert_t;

/* ---- the worker's own records (heap) -------------------------------------- */

typedef struct chan_link_s chan_link_t;
typedef struct chan_wch_s chan_wch_t;

/* What a delivery reads of one subscription, kept in an array per channel
 * record (40 bytes each, in a row) rather than in its link: a fan-out to
 * hundreds of local subscribers walks contiguous memory. */
typedef struct chan_ent_s {
    /* The subscriber gets the messages above `start` (its backlog, if any,
     * ends at or below it). The worker gives each seq of a channel once and
     * in order (wc->wseq), so this bound never has to move; UINT64_MAX once
     * unsubscribed. */
    uint64_t start;
    shk_chan_deliver_t fn; /* the subscriber's, copied */
    void *ctx;
    shk_chan_sub_t *sub;
    chan_link_t *link;
} chan_ent_t;

/* One (subscriber, channel) pair. */
struct chan_link_s {
    chan_wch_t *wc;
    unsigned idx; /* its entry in wc->ents */
    int dead;     /* unsubscribed; freed by the next sweep */
    shk_chan_sub_t *sub;
    chan_link_t *snext, *sprev; /* in sub */
};

/* A channel this worker has subscribers on: exists exactly while the
 * store's subs[slot] of the channel is above 0. */
struct chan_wch_s {
    uint64_t off, serial;
    uint64_t wseq;     /* every message up to it is handled by this worker */
    chan_ent_t *ents;  /* one per link, dead ones included until the sweep */
    unsigned nlinks, cap;
    unsigned ndead;
    int dirty;         /* on the sweep list */
    int busy;          /* a delivery on it is in progress (nested alerts wait) */
    int pending;       /* an alert came while busy: catch up when it ends */
    chan_wch_t *hnext; /* hash chain */
    chan_wch_t *dnext; /* sweep list */
    size_t idlen;
    char id[SHK_CHAN_ID_MAX + 1];
};

struct shk_chan_sub_s {
    shk_chan_t *ch;
    shk_chan_deliver_t fn;
    void *ctx;
    chan_link_t *head, *tail;
    unsigned nlinks, nwild; /* live links */
    int freed;              /* shk_chan_sub_free called; freed by the sweep */
    shk_chan_sub_t *fnext;  /* list of freed subscribers */
    shk_chan_sub_t *anext, *aprev; /* every subscriber of the handle */
};

struct shk_chan_s {
    struct shk_chan_s *vg_next; /* open handles, for the fork handler (valgrind) */
    shk_zone_t *zone;
    shk_slab_t *slab;
    char *base;  /* slab base */
    size_t size; /* slab size */
    chan_store_t *st;
    unsigned nslots; /* st->nslots as checked at create or open: what every loop trusts */
    shk_shmtx_t mtx;
    int rdonly;
    shk_bus_t *bus;
    uint64_t (*clock)(void *ctx);
    void *clock_ctx;
    uint64_t expired_ms; /* when this handle's tick last expired (0: never) */

    /* joined process */
    int slot;         /* -1 when not joined */
    uint32_t epoch;
    pid_t joined_pid; /* a forked child of a joined process is not joined */
    chan_wch_t **tab;
    size_t tabsz, nwch;
    unsigned depth;       /* deliveries in progress */
    chan_wch_t *dirty;    /* channels with dead links */
    shk_chan_sub_t *freed;
    shk_chan_sub_t *subs; /* every subscriber not yet freed */
    uint64_t wch_made;    /* stats for tests: local records made */
};

/* ---- inline helpers ------------------------------------------------------- */

/* A record of the store from its offset. Under valgrind, a block another
 * process allocated may lie where this one freed one (memcheck then thinks
 * it inaccessible): the view goes through shk_slab_ptr, which makes the
 * block it names defined. Natively that test is a handful of register
 * instructions. */
static inline void *chan_ptr(const shk_chan_t *ch, uint64_t off)
{
    if (RUNNING_ON_VALGRIND)
        (void)shk_slab_ptr(ch->slab, off);
    return ch->base + off;
}

static inline uint64_t chan_off(const shk_chan_t *ch, const void *p)
{
    return (uint64_t)((const char *)p - ch->base);
}

static inline uint32_t *chan_subs(const shk_chan_t *ch, chan_ch_t *c)
{
    (void)ch;
    return (uint32_t *)(c + 1);
}

static inline size_t chan_subs_bytes(uint32_t nslots)
{
    return SHK_ALIGN_UP((size_t)nslots * 4, (size_t)8);
}

static inline uint64_t *chan_last(const shk_chan_t *ch, chan_ch_t *c)
{
    return (uint64_t *)((char *)(c + 1) + chan_subs_bytes(ch->st->nslots));
}

static inline char *chan_id(const shk_chan_t *ch, chan_ch_t *c)
{
    return (char *)(chan_last(ch, c) + ch->st->nslots);
}

static inline size_t chan_ch_bytes(uint32_t nslots, size_t idlen)
{
    return sizeof(chan_ch_t) + chan_subs_bytes(nslots) + (size_t)nslots * 8 + idlen + 1;
}

static inline char *chan_msg_eid(chan_msg_t *m)
{
    return (char *)(m + 1);
}

static inline char *chan_msg_etype(chan_msg_t *m)
{
    return (char *)(m + 1) + (m->eid_len ? m->eid_len + 1u : 0u);
}

static inline size_t chan_msg_strs(size_t eid_len, size_t etype_len)
{
    return (eid_len ? eid_len + 1 : 0) + (etype_len ? etype_len + 1 : 0);
}

/* ---- shk_chan_obj.c -------------------------------------------------------- */

/* An id's syntax: 1..max bytes of the id characters; `what` names it in
 * the message. SHK_OK with *len, SHK_EINVAL or SHK_ERANGE. */
SHK_HIDDEN int shk_chan_id_syntax(const char *id, size_t max, size_t *len, const char *what);
/* The reclaim hook every writable handle installs on the zone's slab. */
SHK_HIDDEN int shk_chan_reclaim(shk_slab_t *slab, size_t size, void *ctx);

/* 1 for a byte channel ids may hold (docs/chan.md). */
SHK_HIDDEN int shk_chan_id_char(unsigned char c);
/* Check a channel id against the store's rules: SHK_OK with *len, or
 * SHK_EINVAL / SHK_ERANGE with the message. */
SHK_HIDDEN int shk_chan_id_check(const shk_chan_t *ch, const char *id, size_t *len);
/* The tree key of an id: its first 8 bytes, big-endian, zero-padded. */
SHK_HIDDEN uint64_t shk_chan_id_key(const char *id, size_t len);
/* Whether `id` starts with the wildcard prefix. */
SHK_HIDDEN int shk_chan_is_wildcard(const shk_chan_t *ch, const char *id, size_t len);

/* Monotonic and wall milliseconds (the test clock when set). */
SHK_HIDDEN uint64_t shk_chan_now(const shk_chan_t *ch);
SHK_HIDDEN uint64_t shk_chan_wall(const shk_chan_t *ch);

/* The store's lock. shk_chan_lock returns SHK_OK (held), or SHK_ECORRUPT
 * (not held: the store is damaged, or taking it over from a dead holder
 * found damage). While held, this thread's reclaim hook may drop stored
 * messages for the store's allocations. */
SHK_HIDDEN int shk_chan_lock(shk_chan_t *ch);
/* The same, waiting at most timeout_ms (negative: no limit): SHK_ETIMEDOUT. */
SHK_HIDDEN int shk_chan_lock_for(shk_chan_t *ch, int timeout_ms);
SHK_HIDDEN void shk_chan_unlock(shk_chan_t *ch);
/* After the lock was taken over from a dead holder: check, mark damaged. */
SHK_HIDDEN int shk_chan_took_over(shk_chan_t *ch);
/* SHK_ECORRUPT when the store is marked damaged, else SHK_OK. */
SHK_HIDDEN int shk_chan_usable(const shk_chan_t *ch, int write);

/* A channel by id (under the lock), or NULL. */
SHK_HIDDEN chan_ch_t *shk_chan_find(shk_chan_t *ch, const char *id, size_t len);
/* Create channel `id` (under the lock, not found before). NULL with
 * SHK_EAGAIN (a limit) or SHK_ENOMEM. *made set to 1. */
SHK_HIDDEN chan_ch_t *shk_chan_make(shk_chan_t *ch, const char *id, size_t len);
/* Under the lock: put a channel on or off the idle list as its state says;
 * free a deleted channel nobody references. Returns 1 if it was freed. */
SHK_HIDDEN int shk_chan_settle(shk_chan_t *ch, chan_ch_t *c);
/* Under the lock: unlink channel c from the tree (delete), onto the
 * deleted list. */
SHK_HIDDEN void shk_chan_unlink(shk_chan_t *ch, chan_ch_t *c);
/* Under the lock, for an idle channel: out of the tree and freed. */
SHK_HIDDEN void shk_chan_free_idle(shk_chan_t *ch, chan_ch_t *c);

/* Under the lock: drop the store's reference of stored message m (age list,
 * counters); frees it if nobody else holds it. `slab_locked`: inside the
 * reclaim hook. Returns 1 if freed. */
SHK_HIDDEN int shk_chan_unstore(shk_chan_t *ch, chan_msg_t *m, int slab_locked);
/* Under the lock: clear the bits `bits` of m (held by the caller or by a dead
 * slot); frees it at 0. Returns 1 if freed. */
SHK_HIDDEN int shk_chan_unref_locked(shk_chan_t *ch, chan_msg_t *m, uint64_t bits);
/* Without the lock: drop this slot's reference of m; the last one frees it
 * under the lock. */
SHK_HIDDEN void shk_chan_unref(shk_chan_t *ch, chan_msg_t *m);
/* Free a message block (and its data block) outside the store. */
SHK_HIDDEN void shk_chan_msg_release(shk_chan_t *ch, chan_msg_t *m, int slab_locked);

/* Bounds-checked views for lock-free readers (read-only handles) and alert
 * offsets: NULL when the offset is not a plausible channel/message. */
SHK_HIDDEN chan_ch_t *shk_chan_ch_at(const shk_chan_t *ch, uint64_t off);
SHK_HIDDEN chan_msg_t *shk_chan_msg_at(const shk_chan_t *ch, uint64_t off);
/* The channel id comparator of the tree, and the probe-based descent that
 * also serves lock-free readers: the channel equal to (id, len) (mode 0),
 * the first above it (mode 1) or at or above it (mode 2). */
SHK_HIDDEN int shk_chan_cmp(const shk_rbtree_node_t *a, const shk_rbtree_node_t *b, void *ctx);
SHK_HIDDEN chan_ch_t *shk_chan_descend(const shk_chan_t *ch, const char *id, size_t len, int mode);

/* ---- shk_chan_pub.c --------------------------------------------------------- */

/* Publish a store event to the events channel, if one is configured and c
 * is not it (best effort, counted when it fails). Called without the lock. */
SHK_HIDDEN void shk_chan_event(shk_chan_t *ch, const char *type, const char *id, size_t len,
                               int64_t subscribers);
/* Send one alert for slot `s` (its pid and epoch read under the lock). On
 * failure the slot is marked missed. */
SHK_HIDDEN void shk_chan_alert(shk_chan_t *ch, unsigned s, pid_t pid, const chan_alert_t *a);

/* ---- shk_chan_deliver.c ----------------------------------------------------- */

/* This process holds a slot (shk_chan_join here, not in a parent). */
SHK_HIDDEN int shk_chan_joined(const shk_chan_t *ch);
/* The local record of channel (off, serial), or NULL. */
SHK_HIDDEN chan_wch_t *shk_chan_wch_find(const shk_chan_t *ch, uint64_t off, uint64_t serial);
/* Room for one more record (SHK_ENOMEM), so that the insertion cannot fail. */
SHK_HIDDEN int shk_chan_wch_reserve(shk_chan_t *ch);
SHK_HIDDEN void shk_chan_wch_insert(shk_chan_t *ch, chan_wch_t *w);
/* m as a callback sees it, every span checked; 0 if it is out of bounds. */
SHK_HIDDEN int shk_chan_msg_view(const shk_chan_t *ch, const chan_wch_t *w, chan_msg_t *m,
                                 shk_chan_msg_t *v);
/* Add n to this slot's delivered counter. */
SHK_HIDDEN void shk_chan_count_delivered(shk_chan_t *ch, unsigned n);
/* Catch w up (every message it holds, then a deletion), or leave it to the
 * catch-up in progress on it. Returns messages delivered. */
SHK_HIDDEN int shk_chan_catch_up_busy(shk_chan_t *ch, chan_wch_t *w);
/* Unsubscribe link l now; the store hears of it at the next sweep. */
SHK_HIDDEN void shk_chan_mark_dead(shk_chan_t *ch, chan_link_t *l);
/* Free dead links and freed subscribers and tell the store; only when no
 * delivery is in progress (ch->depth 0). */
SHK_HIDDEN void shk_chan_sweep(shk_chan_t *ch);
/* The bus handler (registered by shk_chan_join). */
SHK_HIDDEN void shk_chan_on_alert(shk_bus_t *bus, const char *name, const void *data, size_t len,
                                  void *ctx);
/* Catch up every local channel the store says is behind (after a missed
 * alert). Returns messages delivered. */
SHK_HIDDEN int shk_chan_catch_up(shk_chan_t *ch);
/* Free every local record and subscriber (close, leave). */
SHK_HIDDEN void shk_chan_local_free(shk_chan_t *ch);

/* ---- shk_chan_reap.c -------------------------------------------------------- */

/* Under the lock: forget slot s's subscribers and references everywhere,
 * then free the slot. */
SHK_HIDDEN void shk_chan_clean_slot(shk_chan_t *ch, unsigned s);
/* Channels removed for inactivity, for their events (sent after the lock). */
#define CHAN_GONE_MAX 16
typedef struct chan_gone_s {
    unsigned n;
    size_t len[CHAN_GONE_MAX];
    char id[CHAN_GONE_MAX][SHK_CHAN_ID_MAX + 1];
} chan_gone_t;

/* Under the lock: drop at most `budget` stored messages past their ttl;
 * with `gone`, also remove up to CHAN_GONE_MAX channels idle longer than
 * the inactivity time, their ids into *gone. */
SHK_HIDDEN void shk_chan_expire(shk_chan_t *ch, unsigned budget, chan_gone_t *gone);
/* Copy channel c into *info (under the lock or lock-free). */
SHK_HIDDEN void shk_chan_fill_info(const shk_chan_t *ch, chan_ch_t *c, shk_chan_info_t *info);

/* ---- shk_chan_check.c ------------------------------------------------------- */

SHK_HIDDEN int shk_chan_check_locked(shk_chan_t *ch);

#endif /* SHK_CHAN_INTERNAL_H */
