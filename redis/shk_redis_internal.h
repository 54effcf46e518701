/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * shk_redis_internal.h: what the redis module's files share: the link's
 * record in the zone, the parsed options, the bus messages between
 * publishers and the relay, and the relay's process-local state (its epoll
 * loop, its Redis connections, the commands in flight, the catch-up).
 * Never installed.
 */
#ifndef SHK_REDIS_INTERNAL_H
#define SHK_REDIS_INTERNAL_H

#include "shk_atomic_internal.h"
#include "shk_internal.h"
#include "shk_redis.h"

#include <hiredis/async.h>
#include <hiredis/hiredis.h>

/* ---- the record in the zone (its "redis" root) -------------------------------- */

#define SHK_REDIS_ROOT "redis"
#define SHK_REDIS_MAGIC 0x73686b7264697331ULL /* "shkrdis1" */
#define SHK_REDIS_VERSION 1

/* Written by the relay alone (sole writer: SHK_ADD_SOLE / SHK_WRITE_ONCE),
 * read lock-free by publishers and reports: each field stands alone, so
 * relaxed order is enough (refused has many writers: SHK_ADD_RELAXED),
 * except pid, which a publisher uses as the
 * address of its alerts (release/acquire, though an old pid only costs a
 * send that fails). */
typedef struct redis_shared_s {
    _Atomic uint64_t magic; /* stored last (release) */
    uint32_t version;
    uint32_t size;
    _Atomic int32_t pid;
    _Atomic uint32_t state;
    _Atomic uint32_t cluster;
    _Atomic uint32_t nodes;
    _Atomic uint64_t reconnects, relayed, caught_up, duplicates, catchups, commands;
    _Atomic uint64_t published, publish_errors;
    _Atomic uint64_t lag_ms, last_id_ms, down_since_ms;
    /* the one field with many writers: publishers that refuse at once */
    _Atomic uint64_t refused;
} redis_shared_t;

/* The record of `zone`, checked (SHK_LAYOUT_CHECK of magic, version, size),
 * or NULL with the reason (SHK_ENOENT, SHK_ECORRUPT). */
SHK_HIDDEN redis_shared_t *shk_redis_shared(shk_zone_t *zone);

/* ---- options -------------------------------------------------------------------- */

typedef struct redis_conf_s {
    char host[256];  /* "" for a unix socket */
    int port;
    char path[108];  /* unix socket */
    unsigned db;
    char password[SHK_REDIS_PASSWORD_MAX + 1];
    char ns[SHK_REDIS_NS_MAX + 1];
    unsigned max_stored;
    int64_t ttl_ms;
    size_t max_message;
    unsigned connect_timeout_ms, backoff_min_ms, backoff_max_ms, publish_timeout_ms;
} redis_conf_t;

/* Parse and default `o` into *c: SHK_OK, SHK_EINVAL, SHK_ERANGE. */
SHK_HIDDEN int shk_redis_conf(const shk_redis_opts_t *o, redis_conf_t *c);

/* ---- the bus messages ------------------------------------------------------------ */

/* A publish (SHK_REDIS_ALERT_PUB): this header, then the channel id, the
 * event id, the event type and the data, back to back, no NULs. */
typedef struct redis_pub_msg_s {
    uint64_t req;
    uint32_t chlen;
    uint16_t eidlen, etlen;
    uint64_t len;
} redis_pub_msg_t;

#define SHK_REDIS_ERRMSG_MAX 199

/* Its answer (SHK_REDIS_ALERT_ACK). */
typedef struct redis_ack_msg_s {
    uint64_t req;
    int32_t status;
    uint32_t tag;
    uint64_t time_ms;
    char errmsg[SHK_REDIS_ERRMSG_MAX + 1];
} redis_ack_msg_t;

/* "ms-seq" (a stream id) into *id: SHK_OK or SHK_EINVAL (not one, or a seq
 * above 32 bits). `len` bytes, no NUL needed. */
SHK_HIDDEN int shk_redis_parse_id(const char *s, size_t len, shk_chan_msgid_t *id);

/* An announcement (the publish script's PUBLISH), parsed: its head
 * "ID\nPREV\nCHLEN\nEIDLEN\nETLEN\n", then the channel id, the event id,
 * the event type and the data. Every byte is untrusted: 0, or -1 for
 * anything malformed (lengths too long or past the end, a NUL or a bad
 * character count, an id that is not one). data points into the input. */
typedef struct redis_ann_s {
    shk_chan_msgid_t id, prev;
    char chan[SHK_CHAN_ID_MAX + 1], eid[SHK_CHAN_EVENT_MAX + 1], et[SHK_CHAN_EVENT_MAX + 1];
    const char *data;
    size_t len;
} redis_ann_t;

SHK_HIDDEN int shk_redis_ann_parse(const char *data, size_t len, redis_ann_t *a);

/* The cluster slot of a channel id (CRC16-XMODEM of the id, which is the
 * hash tag of its keys, modulo 16384). */
SHK_HIDDEN unsigned shk_redis_slot(const char *id, size_t len);

/* ---- the relay (shk_redis_link.c, shk_redis_relay.c) ----------------------------- */

#define REDIS_MAX_NODES 32
#define REDIS_SLOTS 16384
#define REDIS_MAX_REDIRECTS 5

typedef struct relay_s relay_t;

/* One connection: the hiredis context and its place in the epoll set. */
typedef struct rconn_s {
    relay_t *r;
    redisAsyncContext *ac; /* NULL once hiredis freed it */
    int fd;
    uint32_t events; /* EPOLLIN / EPOLLOUT wanted */
    int in_epoll;
    int node;        /* index in r->nodes, -1: the subscriber */
    int connected;
    int dead;        /* hiredis cleaned it up: freed after the epoll batch */
    int closing;     /* freed by our reset: its disconnect callback is ours */
    struct rconn_s *next_dead;
} rconn_t;

typedef struct rnode_s {
    char host[256];
    int port;
    rconn_t *conn;
    int ready; /* AUTH and SCRIPT LOAD answered */
} rnode_t;

/* A command the relay keeps until its answer: its arguments (for a resend
 * after MOVED, ASK or NOSCRIPT) and what to do with the answer. */
typedef struct rcmd_s {
    relay_t *r;
    int argc;
    char **argv;
    size_t *argvlen;
    int slot;      /* cluster slot, -1: any node */
    int node;      /* where it went */
    int redirects;
    uint64_t sent_ms;
    void (*done)(relay_t *r, struct rcmd_s *c, redisReply *rep); /* rep NULL: no answer */
    void *ctx;
    uint64_t u64;
    struct rcmd_s *next, *prev; /* in flight, oldest first */
} rcmd_t;

/* A pub/sub message kept while a catch-up runs. */
typedef struct rbuf_s {
    struct rbuf_s *next;
    size_t len;
    int retried; /* it waited for its channel's catch-up once already */
    char data[];
} rbuf_t;

/* A channel to catch up. */
typedef struct rsync_s {
    struct rsync_s *next;
    shk_chan_msgid_t from; /* exclusive, or inclusive when incl */
    int incl;
    char id[SHK_CHAN_ID_MAX + 1];
} rsync_t;

struct relay_s {
    shk_zone_t *zone;
    redis_shared_t *sh;
    shk_chan_t *ch;
    shk_bus_t *bus;
    redis_conf_t conf;
    int ep;
    char pubchan[SHK_REDIS_NS_MAX + 8];
    char sha[48];
    int cluster;
    rnode_t nodes[REDIS_MAX_NODES];
    unsigned nnodes;
    uint8_t slotmap[REDIS_SLOTS]; /* node per slot */
    rconn_t *seed;   /* the first connection, until the mode is known */
    rconn_t *sub;
    int subscribed;
    unsigned state;
    int want_reset;
    int ever_up;
    unsigned fails; /* connects failed in a row (for the log) */
    char last_error[256];
    uint64_t backoff_ms, next_connect_ms, connect_deadline_ms;
    rcmd_t *inflight_head, *inflight_tail;
    unsigned ninflight;
    rconn_t *dead; /* connections to free after the epoll batch */
    /* the catch-up */
    rsync_t *sync_head, *sync_tail;
    unsigned sync_running;
    int syncing;
    rbuf_t *buf_head, *buf_tail;
    size_t buf_bytes;
    int resync;
    /* answers that could not be sent yet (the publisher's queue full) */
    struct rack_s *acks;
    /* accepted publishes whose answer waits for the store to hold them */
    struct rhold_s *held, *held_tail;
    uint64_t now_ms;
};

/* shk_redis_link.c: connections and commands. */
SHK_HIDDEN void shk_redis_link_tick(relay_t *r);
SHK_HIDDEN void shk_redis_link_reset(relay_t *r, const char *why);
SHK_HIDDEN void shk_redis_link_events(rconn_t *c, uint32_t events);
SHK_HIDDEN void shk_redis_link_reap(relay_t *r);
SHK_HIDDEN rcmd_t *shk_redis_cmd_new(relay_t *r, int argc, const char **argv,
                                     const size_t *argvlen);
SHK_HIDDEN void shk_redis_cmd_send(relay_t *r, rcmd_t *c);
SHK_HIDDEN void shk_redis_set_state(relay_t *r, unsigned state);
SHK_HIDDEN void shk_redis_error(relay_t *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* shk_redis_relay.c: what the link calls back. */
SHK_HIDDEN void shk_redis_on_ready(relay_t *r);
SHK_HIDDEN void shk_redis_on_message(relay_t *r, const char *data, size_t len);
SHK_HIDDEN void shk_redis_on_reset(relay_t *r);

#endif /* SHK_REDIS_INTERNAL_H */
