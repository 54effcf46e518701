/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * shk_chan.h: publish/subscribe channels in a shared-memory zone, above the
 * bus (nginx-push-stream's model as a library).
 *
 * A store is created by the master in a zone before it forks: channels by
 * id (a red-black tree), each with its stored messages, its published
 * count and its subscribers per worker slot. Any process that maps the
 * zone may publish (a worker, the master, a tool attached to a named zone):
 * the message is written once into the zone's slab, with an id unique and
 * increasing within its channel, and every worker that has subscribers on
 * the channel gets one small bus alert naming it (never the data). Workers
 * join a store slot after fork, keep their subscribers locally (a callback
 * each), deliver each message to each of them once, in order, and then
 * drop their reference; the last reference frees the message. A store
 * keeps at most SHK_CHAN_MAX_SLOTS joined processes at a time. See
 * docs/chan.md for the layout, the delivery path, ids, limits and what
 * happens when processes die.
 *
 * Handles (shk_chan_t, shk_chan_sub_t) are process-local and used by one
 * thread at a time. A forked child may use its parent's store handle
 * (it then joins its own slot); subscribers belong to the process that made
 * them.
 */
#ifndef SHK_CHAN_H
#define SHK_CHAN_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "shk_bus.h"
#include "shk_core.h"
#include "shk_zone.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct shk_chan_s shk_chan_t;         /* a process's handle on a store */
typedef struct shk_chan_sub_s shk_chan_sub_t; /* one subscriber, in a joined worker */

#define SHK_CHAN_MAX_SLOTS 63 /* joined processes (workers) at once, per store */
#define SHK_CHAN_ID_MAX 255   /* longest channel id, bytes */
#define SHK_CHAN_PREFIX_MAX 31 /* longest wildcard prefix, bytes */
#define SHK_CHAN_EVENT_MAX 255 /* longest event id and event type, bytes each */
#define SHK_CHAN_MESSAGE_MAX 0xffffffffULL /* hard cap of max_message (4 GiB - 1) */
#define SHK_CHAN_UNLIMITED 0xffffffffu     /* a count limit that is not one */

/* Defaults of shk_chan_opts_t (fields left 0). */
#define SHK_CHAN_DEFAULT_SLOTS 8
#define SHK_CHAN_DEFAULT_MAX_STORED 10
#define SHK_CHAN_DEFAULT_MESSAGE_MAX (1024u * 1024u)
#define SHK_CHAN_DEFAULT_TTL_MS (30 * 60 * 1000)
#define SHK_CHAN_DEFAULT_INACTIVITY_MS (30 * 1000)
#define SHK_CHAN_DEFAULT_MAX_WILDCARD 8

/* How often a joined worker should call shk_chan_tick(), in milliseconds. */
#define SHK_CHAN_TICK_MS 100
/* The bus alert the store's deliveries travel as. */
#define SHK_CHAN_ALERT "shk:chan"
/* How long shk_chan_reap() waits for the store's lock. */
#define SHK_CHAN_REAP_WAIT_MS SHK_SLAB_REAP_WAIT_MS

/*
 * Settings of a store, fixed at shk_chan_create (slots) or changeable with
 * shk_chan_reconfigure (the rest). Every field left 0 takes its default.
 */
typedef struct shk_chan_opts_s {
    unsigned slots;           /* joined processes at once, 1..63 (default 8); a master
                                 with W workers wants 2W so a reload's two generations fit */
    unsigned max_channels;    /* channels that are not wildcard (default SHK_CHAN_UNLIMITED:
                                 only the zone bounds them) */
    unsigned max_wildcard_channels; /* wildcard channels (default SHK_CHAN_UNLIMITED) */
    unsigned max_subscribers; /* per channel, all workers together (default SHK_CHAN_UNLIMITED) */
    unsigned max_id_len;      /* longest id accepted, 1..SHK_CHAN_ID_MAX (default the maximum) */
    size_t max_message;       /* largest message, bytes (default 1 MiB, at most 4 GiB - 1) */
    unsigned max_stored;      /* stored messages per channel (default 10) */
    int store_messages;       /* 1: keep published messages for catch-up (default 0: off) */
    int64_t ttl_ms;           /* a stored message's life (default 30 min; negative: forever) */
    int64_t inactivity_ms;    /* a channel with no subscriber and no message is removed after
                                 this long (default 30 s; negative: never) */
    const char *wildcard_prefix; /* ids starting with it are wildcard (broadcast) channels;
                                    NULL or "": none; at most SHK_CHAN_PREFIX_MAX bytes */
    unsigned max_wildcard;    /* wildcard channels one subscriber may hold (default 8) */
    const char *events_channel; /* id of the channel that receives the store's events
                                   (JSON, docs/chan.md); NULL or "": none */
} shk_chan_opts_t;

/* A message id: unique and increasing within a channel. time_ms is the wall
 * clock (milliseconds since the epoch) when it was published, made
 * non-decreasing per channel; tag counts messages in the same millisecond. */
typedef struct shk_chan_msgid_s {
    uint64_t time_ms;
    uint32_t tag;
} shk_chan_msgid_t;

/* Message flags (shk_chan_msg_t.flags). */
#define SHK_CHAN_MSG_BACKLOG 0x1u /* a stored message given to a new subscriber */
#define SHK_CHAN_MSG_DELETED 0x2u /* the channel was deleted: the last call for it */

/* What a subscriber's callback receives. Every pointer is valid until the
 * callback returns (the data is read in place, in the zone). */
typedef struct shk_chan_msg_s {
    const char *channel; /* the channel's id, NUL-terminated */
    size_t channel_len;
    const void *data;    /* the message (NULL for SHK_CHAN_MSG_DELETED) */
    size_t len;
    const char *event_id;   /* the publisher's, NUL-terminated; "" if none */
    const char *event_type; /* the same */
    shk_chan_msgid_t id;
    uint64_t seq;        /* 1, 2, 3 ... within the channel */
    unsigned flags;      /* SHK_CHAN_MSG_* */
} shk_chan_msg_t;

/* A subscriber's callback, in the joined worker that made it, from
 * shk_bus_dispatch(), shk_chan_tick() or shk_chan_sub_add() (its backlog).
 * It may publish, subscribe, unsubscribe and free subscribers (this one
 * too): changes to subscriptions take effect when the delivery in progress
 * ends. */
typedef void (*shk_chan_deliver_t)(shk_chan_sub_t *sub, const shk_chan_msg_t *msg, void *ctx);

/* Channel flags (shk_chan_info_t.flags). */
#define SHK_CHAN_WILDCARD 0x1u /* its id has the wildcard prefix */
#define SHK_CHAN_EVENTS 0x2u   /* the store's events channel */

/* One channel, as shk_chan_info and shk_chan_next see it. */
typedef struct shk_chan_info_s {
    char id[SHK_CHAN_ID_MAX + 1];
    uint64_t published;    /* messages published on it */
    uint32_t stored;       /* messages stored now */
    uint32_t subscribers;  /* subscribers now, all workers */
    shk_chan_msgid_t last_id; /* the last message's id ({0, 0}: none yet) */
    uint64_t last_seq;     /* the last message's seq (0: none) */
    uint64_t created_ms;   /* wall clock, ms since the epoch */
    unsigned flags;        /* SHK_CHAN_WILDCARD, SHK_CHAN_EVENTS */
} shk_chan_info_t;

/* Where a subscription starts (shk_chan_sub_add). */
#define SHK_CHAN_FROM_NEW 0   /* only messages published from now on */
#define SHK_CHAN_FROM_AFTER 1 /* stored messages whose id is above `after`, then new ones */
#define SHK_CHAN_FROM_LAST 2  /* the last `last` stored messages (fewer if fewer), then new */

typedef struct shk_chan_from_s {
    int mode;               /* SHK_CHAN_FROM_* */
    shk_chan_msgid_t after; /* FROM_AFTER */
    unsigned last;          /* FROM_LAST: 1 or more */
} shk_chan_from_t;

typedef struct shk_chan_slot_stats_s {
    pid_t pid;              /* 0: free */
    uint32_t epoch;         /* bumped at every join */
    int dead;               /* the master found the process dead; clean-up pending */
    uint64_t subscribers;   /* its subscribers now */
    uint64_t delivered;     /* messages it gave to subscribers (cumulative) */
    uint64_t alerts;        /* alerts sent to it */
    uint64_t alerts_missed; /* alerts that could not be sent (caught up by its tick) */
    uint64_t stale;         /* alerts it received for a predecessor or a gone channel */
} shk_chan_slot_stats_t;

typedef struct shk_chan_stats_s {
    unsigned nslots;
    uint64_t channels, wildcard_channels;
    uint64_t stored, stored_bytes; /* stored messages and their data bytes */
    uint64_t messages;             /* messages in the zone: stored and in flight */
    uint64_t subscribers;
    uint64_t published, delivered; /* delivered: the sum over slots */
    uint64_t reclaimed;            /* stored messages dropped to make room */
    uint64_t expired;              /* stored messages dropped by ttl or per-channel count */
    uint64_t deleted;              /* channels deleted or removed when inactive */
    uint64_t events_failed;        /* events that could not be published */
    uint64_t oldest_age_ms;        /* of the oldest stored message, 0 if none */
} shk_chan_stats_t;

/* ---- ids --------------------------------------------------------------------- */

/*
 * Check a channel id before using it (an HTTP layer's 400, a directive):
 * 1 to `max_len` bytes (at most SHK_CHAN_ID_MAX) of A-Z a-z 0-9 and
 * - . _ ~ : @ ! $ & ' ( ) * + , ; = (a URL path segment's characters, less
 * '%'). SHK_OK with *len set (len may be NULL), SHK_EINVAL (NULL, empty, a
 * byte outside the set, named with its position) or SHK_ERANGE (too long).
 * Every call that takes an id checks it the same way against the store's
 * max_id_len.
 */
SHK_API int shk_chan_check_id(const char *id, size_t max_len, size_t *len);

/* ---- the store ----------------------------------------------------------- */

/*
 * In the master, before forking: create a store in `zone` (its header from
 * the zone's slab, recorded as the zone's "chan" root; its lock the zone's
 * lock "chan") with `opts` (NULL: every default). The handle installs the
 * zone slab's reclaim hook (shk_slab_set_reclaim): a zone that holds a store
 * gives that hook to the store. NULL on failure: SHK_EINVAL (NULL zone, a
 * bad option: slots above 63, max_id_len above 255, max_message above
 * 4 GiB - 1, wildcard prefix too long or outside the id characters, events
 * id invalid), SHK_EEXIST (the zone already has a store), SHK_ENOMEM (zone
 * too small), SHK_EPERM (read-only zone).
 */
SHK_API shk_chan_t *shk_chan_create(shk_zone_t *zone, const shk_chan_opts_t *opts);

/*
 * Open the store of a zone: one kept on reload, or a named zone attached by
 * another process. Every field of the header is checked first
 * (shk_layout_check: magic, version, size; then the slot count and the
 * limits); every offset read later is bounds-checked. With SHK_ZONE_RDONLY
 * (or a read-only zone) only shk_chan_stats, shk_chan_info, shk_chan_next
 * and shk_chan_check work, lock-free. NULL on failure: SHK_ENOENT (no
 * store), SHK_ECORRUPT (naming the field), SHK_ENOMEM.
 */
SHK_API shk_chan_t *shk_chan_open(shk_zone_t *zone, unsigned flags);

/* Change the limits of an open store (a reload that kept its zone): every
 * field but `slots`, which must be 0 or the store's (SHK_EINVAL). Takes the
 * lock, waiting at most SHK_CHAN_REAP_WAIT_MS (SHK_ETIMEDOUT: nothing
 * changed), so a master never stalls behind a worker. Messages and
 * channels already there stay, even above new limits. */
SHK_API int shk_chan_reconfigure(shk_chan_t *ch, const shk_chan_opts_t *opts);

/* Release the handle; the store stays in the zone. A joined process's
 * subscribers are freed with it (without telling the store: the master's
 * shk_chan_reap does that once the process is gone; call it only at exit,
 * or shk_chan_leave first). NULL is fine. */
SHK_API void shk_chan_close(shk_chan_t *ch);

/* The bus a process that is not joined (the master) sends its alerts on.
 * Without one, every alert counts as missed and the receivers catch up on
 * their next shk_chan_tick (a tool attached to a named zone publishes so).
 * shk_chan_join sets it too. NULL clears it. */
SHK_API void shk_chan_set_bus(shk_chan_t *ch, shk_bus_t *bus);

/* Test hook: the clock this handle uses, in ms, for ttl, inactivity and the
 * ids it gives (instead of the monotonic and the wall clock). NULL restores
 * the system clocks. Process-local. */
SHK_API void shk_chan_set_clock(shk_chan_t *ch, uint64_t (*now_ms)(void *ctx), void *ctx);

/* ---- any process ----------------------------------------------------------- */

/*
 * Publish `len` bytes of `data` on channel `channel` (created if it does
 * not exist), with an optional event id and type (NULL or "": none; at most
 * SHK_CHAN_EVENT_MAX bytes each). The message gets the next id of the
 * channel; every joined worker with subscribers on it gets one alert. A
 * channel with no subscriber and storing off takes no memory for it (it is
 * counted as published). `info` (may be NULL) receives the channel after
 * the publish (last_id is the new message's id).
 * Errors, never truncation: SHK_EINVAL (NULL, data NULL with len > 0, an id
 * empty or with a byte outside the id characters), SHK_ERANGE (id longer
 * than max_id_len, message above max_message, event id or type too long),
 * SHK_EAGAIN (creating the channel would pass max_channels or
 * max_wildcard_channels), SHK_ENOMEM (the zone is full even after dropping
 * the oldest stored messages: nothing was published, nothing stored is
 * damaged), SHK_EPERM (read-only handle), SHK_ECORRUPT (the store was found
 * damaged). Locking: the store's lock, briefly; the data is copied outside
 * it; alerts are sent after it.
 */
SHK_API int shk_chan_publish(shk_chan_t *ch, const char *channel, const void *data, size_t len,
                             const char *event_id, const char *event_type, shk_chan_info_t *info);

/*
 * Publish as shk_chan_publish, but with the id `*id` given by the caller
 * instead of the store's clock: for a relay that applies messages whose id
 * was given elsewhere (another instance, a Redis stream: docs/redis.md), so
 * the id is the same everywhere. Applied only when `*id` is above the
 * channel's last id (a new channel takes any id): otherwise nothing changes
 * and SHK_EEXIST is returned, with `info` (may be NULL) filled with the
 * channel, so a message that arrives twice (or late) is applied once. The
 * channel's later ids, given by shk_chan_publish, stay above it. Errors as
 * shk_chan_publish, and SHK_EINVAL for a NULL id or 0:0. Locking as
 * shk_chan_publish.
 */
SHK_API int shk_chan_publish_id(shk_chan_t *ch, const char *channel, const shk_chan_msgid_t *id,
                                const void *data, size_t len, const char *event_id,
                                const char *event_type, shk_chan_info_t *info);

/*
 * Delete channel `channel`: it leaves the tree at once (a new channel of
 * the same id may be made right away), its stored messages are freed, and
 * each subscriber gets one last call with SHK_CHAN_MSG_DELETED (after every
 * message published before the delete) and is dropped from it. Allocates
 * nothing, so it works with the zone full. SHK_ENOENT if there is no such
 * channel; SHK_EINVAL, SHK_ERANGE for a bad id; SHK_EPERM read-only.
 */
SHK_API int shk_chan_delete(shk_chan_t *ch, const char *channel);

/* The channel `channel` into *info: SHK_OK, SHK_ENOENT (no such channel),
 * SHK_EINVAL/SHK_ERANGE (bad id). Takes the lock, or on a read-only handle
 * reads without it (a snapshot; a damaged zone gives SHK_ECORRUPT). */
SHK_API int shk_chan_info(shk_chan_t *ch, const char *channel, shk_chan_info_t *info);

/*
 * Iterate channels in id order (bytewise, a shorter id before its
 * extensions): the first channel whose id is above `after` (NULL: from the
 * first) and starts with `prefix` (NULL or "": any) into *info. SHK_OK, or
 * SHK_ENOENT when there is none. Loop with after = info.id. O(log n) per
 * call. Locking as shk_chan_info.
 */
SHK_API int shk_chan_next(shk_chan_t *ch, const char *prefix, const char *after,
                          shk_chan_info_t *info);

/* The store's counters, read without the lock (a snapshot); works on a
 * read-only handle. Per slot: shk_chan_slot_stats. */
SHK_API int shk_chan_stats(shk_chan_t *ch, shk_chan_stats_t *st);

/* Slot i's counters (i from 0 to nslots - 1), read without the lock, on
 * the same terms as shk_chan_stats. SHK_ENOENT past the last slot,
 * SHK_EINVAL for NULL:
 *     for (unsigned i = 0; shk_chan_slot_stats(ch, i, &s) == SHK_OK; i++)
 */
SHK_API int shk_chan_slot_stats(shk_chan_t *ch, unsigned i, shk_chan_slot_stats_t *out);

/* Walk every structure of the store (tree, channels, message lists, the
 * age, idle and deleted lists, the counters) with bounded walks and report
 * the first broken rule: SHK_OK or SHK_ECORRUPT naming it. Takes the lock;
 * on a read-only handle it reads without it (a concurrent change may then
 * be reported). */
SHK_API int shk_chan_check(shk_chan_t *ch);

/* ---- the master ------------------------------------------------------------ */

/*
 * For the master, after process `pid` died (a zombie counts as dead): its
 * slot's subscriber counts on every channel go, its references to messages
 * are dropped (the messages only it still held are freed), and the slot is
 * free for the next process. If the dead process held the store's lock, the
 * lock is taken back and the store checked (shk_chan_check); a damaged
 * store then refuses every call with SHK_ECORRUPT. The lock is waited for at
 * most SHK_CHAN_REAP_WAIT_MS: then SHK_ETIMEDOUT, the slot stays marked dead
 * and the next shk_chan_tick or shk_chan_join of any process cleans it.
 * Returns SHK_OK, SHK_ESRCH (pid holds no slot), SHK_EINVAL, SHK_EPERM.
 */
SHK_API int shk_chan_reap(shk_chan_t *ch, pid_t pid);

/* ---- a joined worker ------------------------------------------------------- */

/*
 * In a worker after fork: claim a free slot of the store (or one whose
 * process is dead, cleaning it first), with a new epoch, and handle the
 * store's alerts on `bus` (the worker's bus, already joined: the handler
 * for SHK_CHAN_ALERT is registered on it). Alerts queued for an earlier
 * holder of the slot are discarded by their epoch. Returns the slot
 * (0..slots-1), or SHK_EBUSY (every slot is held by a live process),
 * SHK_EEXIST (this process already joined), SHK_EINVAL, SHK_EPERM.
 */
SHK_API int shk_chan_join(shk_chan_t *ch, shk_bus_t *bus);

/* This process's slot, or -1. */
SHK_API int shk_chan_slot(const shk_chan_t *ch);

/* Give the slot back before exiting: every subscriber is freed (no
 * callback), the store forgets them, the slot is free. SHK_EPERM if not
 * joined. */
SHK_API int shk_chan_leave(shk_chan_t *ch);

/*
 * A joined worker's periodic work, every SHK_CHAN_TICK_MS: deliver what an
 * alert that could not be sent (a full queue, a publisher without a bus)
 * left behind (lock-free when nothing was missed); then, at most once per
 * SHK_CHAN_TICK_MS per handle (or at once for a slot marked dead), under
 * the lock: clean slots of dead processes the master could not reap, drop
 * stored messages past their ttl, remove channels inactive for
 * inactivity_ms (also in a process that is not joined). Returns how many
 * messages it delivered (>= 0) or an error (SHK_EPERM read-only,
 * SHK_ECORRUPT damaged).
 */
SHK_API int shk_chan_tick(shk_chan_t *ch);

/* A new subscriber with no channel yet, in a joined worker: `fn(sub, msg,
 * ctx)` receives its messages. NULL on failure: SHK_EINVAL (NULL fn),
 * SHK_EPERM (not joined), SHK_ENOMEM. */
SHK_API shk_chan_sub_t *shk_chan_sub_new(shk_chan_t *ch, shk_chan_deliver_t fn, void *ctx);

/*
 * Subscribe `sub` to `channel` (created if it does not exist), starting
 * where `from` says (NULL: new messages only). The backlog (stored messages
 * after an id, or the last N) is delivered to this subscriber, in order,
 * before the call returns, atomically with the subscription: no message is
 * missed or given twice between the backlog and the live messages.
 * Errors: SHK_EINVAL (bad id, bad `from`, NULL), SHK_ERANGE (id too long,
 * more wildcard channels than max_wildcard), SHK_EEXIST (already
 * subscribed to it), SHK_EAGAIN (max_subscribers on the channel, or
 * max_channels when creating it), SHK_ENOMEM (zone or heap), SHK_EPERM.
 */
SHK_API int shk_chan_sub_add(shk_chan_sub_t *sub, const char *channel,
                             const shk_chan_from_t *from);

/* Unsubscribe `sub` from `channel`: no call for it after this returns.
 * SHK_ENOENT if it was not subscribed. */
SHK_API int shk_chan_sub_del(shk_chan_sub_t *sub, const char *channel);

/* Channels `sub` is subscribed to now. */
SHK_API unsigned shk_chan_sub_count(const shk_chan_sub_t *sub);

/* Unsubscribe from everything and free the subscriber (inside a callback,
 * once the delivery in progress ends; no call reaches it after this).
 * NULL is fine. */
SHK_API void shk_chan_sub_free(shk_chan_sub_t *sub);

#ifdef __cplusplus
}
#endif

#endif /* SHK_CHAN_H */
