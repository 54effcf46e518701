/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * shk_redis.h: channels across hosts, on Redis (or a Redis Cluster).
 *
 * Several instances (each a master, its workers and a channel store in a
 * zone) share their channels through one Redis: every publish is stored in
 * a Redis stream per channel and delivered to the subscribers of every
 * instance, with the same message id everywhere (the stream entry id
 * ms-seq is the store's (time_ms, tag)). Inside an instance the fan-out
 * stays in shared memory: one process per instance, the relay
 * (shk_redis_run), talks to Redis through hiredis's asynchronous API on its
 * own epoll loop; it runs the publishes of the instance's workers (sent to
 * it as bus alerts by shk_redis_publish) and applies every message Redis
 * announces to the local store with shk_chan_publish_id, which wakes only
 * the workers with subscribers. The relay's position is the store itself
 * (each channel's last id), so a relay that is restarted, or that lost
 * Redis for a while, catches up from the streams without loss or
 * duplicate. Workers never connect to Redis.
 *
 * The link's state and counters live in the store's zone (its "redis"
 * root), read lock-free by shk_redis_stats (shmkit stat, /channels-stats).
 * See docs/redis.md for what is in Redis, the ids, the failure model and
 * the cluster. Handles are process-local and used by one thread at a time.
 */
#ifndef SHK_REDIS_H
#define SHK_REDIS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "shk_bus.h"
#include "shk_chan.h"
#include "shk_core.h"
#include "shk_zone.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct shk_redis_s shk_redis_t; /* a publisher's handle (a worker) */

#define SHK_REDIS_URL_MAX 1023     /* longest URL, bytes */
#define SHK_REDIS_PASSWORD_MAX 255 /* longest password, bytes */
#define SHK_REDIS_NS_MAX 64        /* longest namespace, bytes */

/* Defaults of shk_redis_opts_t (fields left 0 or NULL). */
#define SHK_REDIS_DEFAULT_NS "shmkit"
#define SHK_REDIS_DEFAULT_PORT 6379
#define SHK_REDIS_DEFAULT_CONNECT_TIMEOUT_MS 2000
#define SHK_REDIS_DEFAULT_BACKOFF_MIN_MS 100
#define SHK_REDIS_DEFAULT_BACKOFF_MAX_MS 5000
#define SHK_REDIS_DEFAULT_PUBLISH_TIMEOUT_MS 5000

/* The bus alerts between publishers and the relay. */
#define SHK_REDIS_ALERT_PUB "shk:redis:pub"
#define SHK_REDIS_ALERT_ACK "shk:redis:ack"

/*
 * Where Redis is and how the channels are kept there. Every field left 0
 * (or NULL) takes its default.
 */
typedef struct shk_redis_opts_s {
    const char *url;      /* "redis://[:PASSWORD@]HOST[:PORT][/DB]" (HOST a name, an IPv4
                             address or [IPv6]; PORT default 6379; DB default 0) or
                             "unix:/PATH[?db=DB]"; required */
    const char *password; /* AUTH password; NULL: the URL's, if any */
    const char *ns;       /* the namespace every key and the pub/sub channel start with, so
                             several deployments share one Redis: 1..SHK_REDIS_NS_MAX channel-id
                             characters (shk_chan_check_id) (default "shmkit") */
    unsigned max_stored;  /* entries kept per channel stream (default the store's default,
                             SHK_CHAN_DEFAULT_MAX_STORED) */
    int64_t ttl_ms;       /* an entry's life in Redis (default SHK_CHAN_DEFAULT_TTL_MS;
                             negative: forever) */
    size_t max_message;   /* largest message a publisher may send (default
                             SHK_CHAN_DEFAULT_MESSAGE_MAX) */
    unsigned connect_timeout_ms; /* a connection not made by then is retried (default 2 s) */
    unsigned backoff_min_ms;     /* first reconnect delay, doubling (default 100 ms) */
    unsigned backoff_max_ms;     /* cap of the reconnect delay (default 5 s) */
    unsigned publish_timeout_ms; /* a publish not answered by then fails (SHK_ETIMEDOUT);
                                    the relay also drops a link whose oldest command waits
                                    this long (default 5 s) */
} shk_redis_opts_t;

/* The link's state (shk_redis_stats_t.state). */
enum {
    SHK_REDIS_DOWN = 0,       /* no link; a reconnect is due */
    SHK_REDIS_CONNECTING = 1, /* connecting, authenticating, loading the script */
    SHK_REDIS_SYNCING = 2,    /* subscribed; catching up the local channels from the streams */
    SHK_REDIS_UP = 3          /* publishing and relaying */
};

typedef struct shk_redis_stats_s {
    pid_t pid;            /* the relay process, 0 if none */
    unsigned state;       /* SHK_REDIS_* */
    unsigned cluster;     /* 1: a Redis Cluster */
    unsigned nodes;       /* Redis servers the relay holds a connection to (cluster: masters) */
    uint64_t reconnects;  /* links made after the first */
    uint64_t relayed;     /* messages applied to the local store (pub/sub and catch-up) */
    uint64_t caught_up;   /* of those, read back from the streams by a catch-up */
    uint64_t duplicates;  /* messages Redis announced that the store had already */
    uint64_t catchups;    /* channel catch-ups run (a reconnect, a gap) */
    uint64_t commands;    /* commands sent to Redis */
    uint64_t published;   /* publishes Redis accepted from this instance */
    uint64_t publish_errors; /* publishes the relay could not run (link down, Redis error,
                                lost link) */
    uint64_t refused;     /* publishes refused by the publisher at once (no relay, link
                             down, the relay's queue full) */
    uint64_t lag_ms;      /* UP: how long after its id's time the last message was applied;
                             otherwise: how long the link has been down */
    uint64_t last_id_ms;  /* the time part of the last id applied */
} shk_redis_stats_t;

/* State names for reports: "down", "connecting", "syncing", "up". */
SHK_API const char *shk_redis_state_name(unsigned state);

/*
 * Check `o` as shk_redis_run would take it (the URL parsed, the namespace
 * and the password checked), for a directive's error message. SHK_OK, or
 * SHK_EINVAL / SHK_ERANGE naming what is wrong.
 */
SHK_API int shk_redis_check_opts(const shk_redis_opts_t *o);

/*
 * In the master, before forking: give the zone of a channel store the
 * link's shared record (the zone's "redis" root), or keep the one it has
 * (a reload that kept the zone). SHK_OK, SHK_ENOMEM, SHK_EPERM (read-only),
 * SHK_ECORRUPT (a root that is not one).
 */
SHK_API int shk_redis_setup(shk_zone_t *zone);

/*
 * The link's record in `zone` into *st, read without any lock (a snapshot;
 * works on a zone attached read-only). SHK_ENOENT if the zone has no
 * record, SHK_ECORRUPT if it is not one (its header is checked first).
 */
SHK_API int shk_redis_stats(shk_zone_t *zone, shk_redis_stats_t *st);

/*
 * The relay: run in a process of its own (the supervisor's redis process)
 * that joined a slot of `bus` and did not join the store. It connects to
 * Redis (a Cluster is recognised by CLUSTER SLOTS), runs the publishes the
 * bus brings (SHK_REDIS_ALERT_PUB) and answers each (SHK_REDIS_ALERT_ACK),
 * applies what Redis announces to `ch`, reconnects with backoff and
 * catches up after every (re)connect. It returns when stop(ctx) is true
 * (checked after each bus dispatch and at least every 100 ms): SHK_OK; or
 * at once with SHK_EINVAL (options, see shk_redis_check_opts), SHK_ENOENT
 * (no record: shk_redis_setup first), SHK_EPERM (not joined to the bus),
 * SHK_ESYS (epoll). Redis being unreachable is not an error here: the
 * relay keeps trying. Only one relay per zone should run at a time (a
 * reload's two generations may overlap: what both apply is applied once).
 */
SHK_API int shk_redis_run(shk_zone_t *zone, shk_chan_t *ch, shk_bus_t *bus,
                          const shk_redis_opts_t *o, int (*stop)(void *ctx), void *ctx);

/*
 * A publisher's handle, in a process joined to `bus` (a worker): publishes
 * go to the relay whose pid the record in `zone` names. Registers the
 * handler of SHK_REDIS_ALERT_ACK on `bus`. `o` may be NULL (only
 * max_message and publish_timeout_ms are used). NULL on failure: SHK_ENOENT
 * (no record in the zone), SHK_EPERM (not joined), SHK_ENOMEM.
 */
SHK_API shk_redis_t *shk_redis_client(shk_zone_t *zone, shk_bus_t *bus,
                                      const shk_redis_opts_t *o);

/* What a publish's callback receives: SHK_OK and the message's id (the
 * same on every instance), or an error with a message for the HTTP layer
 * (SHK_EAGAIN: Redis unavailable, answer 503; SHK_ETIMEDOUT: no answer in
 * publish_timeout_ms, the message may or may not have been stored).
 * `errmsg` is "" on success; both pointers are valid during the call. */
typedef void (*shk_redis_done_t)(int status, const shk_chan_msgid_t *id, const char *errmsg,
                                 void *ctx);

/*
 * Publish `len` bytes on `channel` (with an optional event id and type, as
 * shk_chan_publish) through Redis: the relay stores it in the channel's
 * stream and every instance (this one included) delivers it to its
 * subscribers. Returns SHK_OK and calls done(status, id, errmsg, ctx)
 * exactly once later, from shk_bus_dispatch (the answer), shk_redis_tick
 * (a timeout, a relay that died) or shk_redis_close; or returns an error
 * and never calls it: SHK_EINVAL (bad id, bad event strings, NULL done),
 * SHK_ERANGE (too long), SHK_EAGAIN (the link is not up, no relay, or its
 * queue is full: the message names which; the HTTP layer's 503),
 * SHK_ENOMEM. `done` may publish again.
 */
SHK_API int shk_redis_publish(shk_redis_t *r, const char *channel, const void *data, size_t len,
                              const char *event_id, const char *event_type,
                              shk_redis_done_t done, void *ctx);

/* Publishes sent and not answered yet. */
SHK_API unsigned shk_redis_pending(const shk_redis_t *r);

/* A publisher's periodic work (every SHK_CHAN_TICK_MS or so): publishes
 * past publish_timeout_ms fail with SHK_ETIMEDOUT, those sent to a relay
 * that is gone fail with SHK_EAGAIN. Returns how many it failed. */
SHK_API int shk_redis_tick(shk_redis_t *r);

/* Fail every pending publish (SHK_EAGAIN, "closed"), remove the bus
 * handler, free the handle. NULL is fine. */
SHK_API void shk_redis_close(shk_redis_t *r);

#ifdef __cplusplus
}
#endif

#endif /* SHK_REDIS_H */
