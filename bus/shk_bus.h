/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * shk_bus.h: named alerts between worker processes, through queues in a
 * shared-memory zone, with a pipe as a doorbell only.
 *
 * The master creates the bus in a zone before it forks (a slot table, one
 * bounded queue per slot, one pipe per slot); each worker joins a slot after
 * fork. An alert (a name of at most 254 bytes and up to 4 GiB - 1 bytes of
 * data) is written into the receiver's queue in shared memory; one byte is
 * written to the receiver's pipe only when the receiver said it is about to
 * sleep, so under load nearly no alert costs a system call. Large alerts
 * are stored once in the zone's slab, for all their receivers. The API
 * follows ngx.ipc: send to a pid, broadcast (the sender included), handlers
 * by name, reply, sender pid. See docs/bus.md for the record format, the
 * doorbell protocol and what happens when processes die.
 *
 * A shk_bus_t handle is process-local; forked workers use the master's
 * (inherited) handle. One thread per process uses it.
 */
#ifndef SHK_BUS_H
#define SHK_BUS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "shk_core.h"
#include "shk_zone.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct shk_bus_s shk_bus_t;

#define SHK_BUS_NAME_MAX 254          /* longest alert name, bytes */
#define SHK_BUS_DATA_MAX 0xffffffffULL /* longest alert data, bytes (4 GiB - 1) */
#define SHK_BUS_MAX_SLOTS 64

/* Handler: name and data are valid until it returns. Inside it,
 * shk_bus_sender() and shk_bus_reply() refer to this alert. */
typedef void (*shk_bus_handler_t)(shk_bus_t *bus, const char *name, const void *data,
                                  size_t len, void *ctx);

typedef struct shk_bus_handler_entry_s {
    const char *name;
    shk_bus_handler_t fn;
    void *ctx;
} shk_bus_handler_entry_t; /* tables end with a NULL name */

/*
 * In the master, before forking: create a bus with `slots` queues of
 * `queue_bytes` each (rounded up to a power of two, at least 4 KiB) in
 * `zone` (allocated from its slab, recorded as the zone's "bus" root), and
 * one pipe per slot. Alerts larger than a quarter of a queue go to the
 * zone's slab. NULL on failure: SHK_EINVAL (slots 0 or above
 * SHK_BUS_MAX_SLOTS, queue_bytes 0 or above 2 GiB, the zone already has a
 * bus), SHK_ENOMEM (zone too small: see shk_bus_zone_size()), SHK_ESYS
 * (pipes).
 */
SHK_API shk_bus_t *shk_bus_create(shk_zone_t *zone, unsigned slots, size_t queue_bytes);

/*
 * Bytes a zone needs (the size to give shk_zone_add()) to hold a bus of
 * `slots` queues of `queue_bytes`, as shk_bus_create() lays it out: the
 * zone's header, the slab pool's header and page descriptors, the bus
 * header with its slot table, and the queues. An upper bound, a few pages
 * above the exact need; room for large alerts (a quarter of a queue or
 * more, stored in the zone while they are queued) comes on top. 0 for a
 * shape shk_bus_create() refuses (slots 0 or above SHK_BUS_MAX_SLOTS,
 * queue_bytes 0 or above 2 GiB) or a size that does not fit a size_t.
 */
SHK_API size_t shk_bus_zone_size(unsigned slots, size_t queue_bytes);

/* Open the bus of a zone attached by another process (shmkit stat): with
 * SHK_ZONE_RDONLY only the stats work. NULL if the zone has no bus
 * (SHK_ENOENT) or it is damaged (SHK_ECORRUPT). */
SHK_API shk_bus_t *shk_bus_open(shk_zone_t *zone, unsigned flags);

/* Release the handle: closes the pipes it owns. The bus in the zone stays. */
SHK_API void shk_bus_close(shk_bus_t *bus);

/* In a worker after fork: claim slot `slot` (records the pid, bumps the
 * slot's generation). SHK_EBUSY if a live process holds it, SHK_EINVAL for
 * a bad slot. Alerts already queued for the slot are delivered to the new
 * owner (policy SHK_BUS_KEEP) or dropped (SHK_BUS_PURGE). */
SHK_API int shk_bus_join(shk_bus_t *bus, unsigned slot);

/* This process's slot, or -1. */
SHK_API int shk_bus_slot(const shk_bus_t *bus);

/* The doorbell's read end (joined processes): watch it for reading in an
 * event loop and call shk_bus_dispatch() when it is readable. Call
 * shk_bus_dispatch() once after registering the handlers and before the
 * loop's first wait: the doorbell is only rung for a receiver that said it
 * is about to sleep, which a dispatch ends by saying, and alerts may already
 * be queued (sent before the join, or to the slot's previous holder). -1 if
 * not joined. */
SHK_API int shk_bus_fd(const shk_bus_t *bus);

/* A sensible budget for shk_bus_dispatch(): alerts handled per call before
 * the event loop gets its turn again. */
#define SHK_BUS_BUDGET 64

/* Run handlers for up to `budget` alerts queued for this process (and drain
 * the doorbell). If alerts remain, rings its own doorbell so the event loop
 * comes back. Returns how many alerts were taken (0 when none was ready),
 * or SHK_EINVAL (budget 0; pass SHK_BUS_BUDGET for the usual), SHK_EPERM
 * (not joined), SHK_EBUSY (called from a handler). */
SHK_API int shk_bus_dispatch(shk_bus_t *bus, unsigned budget);

/* For programs with no event loop: wait until alerts may be pending (1) or
 * `timeout_ms` milliseconds passed (0). As everywhere in shmkit, 0 does not
 * wait (it looks once) and a negative timeout waits with no limit. Then
 * call shk_bus_dispatch(). SHK_EPERM if not joined, SHK_ESYS if poll()
 * fails. */
SHK_API int shk_bus_wait(shk_bus_t *bus, int timeout_ms);

/*
 * Send alert `name` with `len` bytes of `data` to worker `pid` (any process
 * holding the handle may send, the master included). Errors, never
 * truncation: SHK_EINVAL (name empty or longer than 254 bytes, len above
 * SHK_BUS_DATA_MAX, data NULL with len > 0), SHK_ESRCH (pid is not a joined
 * worker), SHK_EAGAIN (the receiver's queue is full: nothing was queued),
 * SHK_ENOMEM (no room in the zone for a large alert).
 */
SHK_API int shk_bus_send(shk_bus_t *bus, pid_t pid, const char *name, const void *data,
                         size_t len);

typedef struct shk_bus_bcast_s {
    unsigned targets;   /* joined slots when sending */
    unsigned delivered; /* how many took the alert */
    uint64_t failed;    /* bit i: slot i did not take it */
    int error;          /* the first failure's status */
    uint64_t took;      /* bit i: slot i took it */
} shk_bus_bcast_t;

/* Send to every joined worker, the sender included. A large alert is stored
 * once, held by every queue that took it until its receiver is past it.
 * Returns SHK_OK when every target took it, else the first failure's
 * status; `res` (may be NULL) says who took it (res->took). */
SHK_API int shk_bus_broadcast(shk_bus_t *bus, const char *name, const void *data, size_t len,
                              shk_bus_bcast_t *res);

/* Register (or with fn NULL remove) the handler for alert `name`. Alerts
 * with no handler are discarded and counted. */
SHK_API int shk_bus_on(shk_bus_t *bus, const char *name, shk_bus_handler_t fn, void *ctx);
SHK_API int shk_bus_on_table(shk_bus_t *bus, const shk_bus_handler_entry_t *table);

/* Inside a handler: the sender's pid (0 outside). */
SHK_API pid_t shk_bus_sender(const shk_bus_t *bus);
/* Inside a handler: send an alert back to the sender. SHK_EPERM outside a
 * handler; otherwise as shk_bus_send(). */
SHK_API int shk_bus_reply(shk_bus_t *bus, const char *name, const void *data, size_t len);

/* Master, for a dead process `pid` (a zombie still, so that its pid is not
 * reused): release the queue locks it held, free its slot (and, with
 * SHK_BUS_PURGE, drop what is queued for it), then sweep the large alerts'
 * blocks: those of senders that are gone are sealed, and every block nobody
 * holds any more is freed (waiting at most SHK_SLAB_REAP_WAIT_MS for the
 * slab pool's lock; what it cannot sweep waits for the next reap). Safe to
 * call again for the same pid (a reap cut short finishes). SHK_ESRCH if
 * pid holds no slot (its locks and blocks are still taken back). */
SHK_API int shk_bus_reap(shk_bus_t *bus, pid_t pid);

#define SHK_BUS_KEEP 0  /* the next owner of a slot gets what is queued (default) */
#define SHK_BUS_PURGE 1 /* a dead worker's queue is emptied when it is reaped */
SHK_API int shk_bus_set_policy(shk_bus_t *bus, int policy);

enum { SHK_BUS_SLOT_FREE = 0, SHK_BUS_SLOT_JOINED = 1 };

/* The bus as a whole. */
typedef struct shk_bus_stats_s {
    unsigned nslots;      /* slots (queues); shk_bus_slot_stats() takes 0..nslots-1 */
    unsigned joined;      /* slots joined now */
    uint64_t queue_bytes; /* each queue's ring */
    uint64_t large;       /* alerts sent through the slab (cumulative) */
    uint64_t large_live;  /* their blocks in the zone now */
    uint64_t large_bytes; /* the zone bytes those blocks take */
    uint64_t large_sending; /* of them, blocks their sender has not finished
                               sending (a fan-out under way, or a sender that
                               died during it and was not reaped yet) */
} shk_bus_stats_t;

/* One slot and its queue. */
typedef struct shk_bus_slot_stats_s {
    pid_t pid;
    int state; /* SHK_BUS_SLOT_* */
    uint64_t generation;
    uint64_t depth;      /* alerts queued now */
    uint64_t high_water; /* most alerts ever queued at once */
    uint64_t oldest_age_us; /* age of the alert at the head, 0 if empty; to the
                               coarse monotonic clock's resolution (a few ms) */
    uint64_t queue_bytes;
    uint64_t sent, received;
    uint64_t discarded; /* no handler */
    uint64_t rejected;  /* queue full */
    uint64_t skipped;   /* records of producers that died before publishing */
    uint64_t stale;     /* received alerts queued for an older generation */
    uint64_t rung, coalesced; /* doorbells written / alerts that needed none
                                 (queued minus rung) */
    uint64_t large_refs;      /* large alerts' blocks this queue still holds (its
                                 records of them not consumed yet) */
    uint64_t large_ref_bytes; /* the zone bytes of those blocks (a broadcast's
                                 block counts in every queue that holds it) */
} shk_bus_slot_stats_t;

/* The bus's totals, without locks (large_sending by a bounded walk of the
 * list of blocks, as in shk_bus_slot_stats). Works on a read-only bus
 * (shmkit stat). SHK_EINVAL for a NULL argument. */
SHK_API int shk_bus_stats(shk_bus_t *bus, shk_bus_stats_t *st);

/* A snapshot of slot `i` (0..nslots-1), without locks: each counter is read
 * once, so counters of a busy slot may be a few alerts apart. Works on a
 * read-only bus; nothing is read but the bus's own header, queue `i` and the
 * list of large alerts' blocks (a bounded walk that checks each block, and
 * may stop early when it races with a free), and a damaged queue position
 * only leaves oldest_age_us at 0. SHK_ENOENT past the last slot, SHK_EINVAL
 * for a NULL argument. */
SHK_API int shk_bus_slot_stats(shk_bus_t *bus, unsigned i, shk_bus_slot_stats_t *out);

#ifdef __cplusplus
}
#endif

#endif /* SHK_BUS_H */
