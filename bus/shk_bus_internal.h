/*
 * shk_bus_internal.h: what the bus's files share, never installed: the
 * layout in shared memory (the bus header and its slot table, the records
 * of each queue, the blocks of large alerts), the process-local handle, and
 * the inline helpers the send and dispatch fast paths need (they stay
 * inline: a call across files on every record would cost the hot paths).
 *
 * The files: shk_bus_create.c (create, open, close, join, the zone size),
 * shk_bus_send.c (producing: claim, publish, the doorbell, broadcast, large
 * alerts' copies), shk_bus_dispatch.c (consuming: dispatch, wait, handlers,
 * reply), shk_bus_blob.c (large alerts' blocks: who holds them, their list,
 * freeing, the sweep after a death), shk_bus_reap.c (death and stats: reap,
 * purge, policy, stats).
 *
 * References to a large alert's block (the rule shk_bus_blob.c keeps). The
 * block lists, per target slot, the position of the record that names it in
 * that slot's queue. Slot i holds the block while its queue's head has not
 * passed that position: a receiver lets go by moving its head, which it
 * does anyway, so whatever step it dies at, its queue says exactly what it
 * still holds. The sender holds the block until it seals it (every
 * position final). A block is freed once it is sealed and no head is
 * before its record: by whoever sees that last, or by the sweep that
 * shk_bus_reap runs after a death (which also seals the block of a sender
 * that died before sealing it).
 *
 * Doorbell protocol (why no wake-up is lost). The consumer, before it goes
 * back to sleep, announces it: stores sleeping = 1, issues a full fence, and
 * then looks at the record at the head of its queue; if it is ready
 * (published, padding, or the hole of a dead producer) it takes the
 * announcement back and carries on. A producer publishes its record (release
 * store of the record's header), issues a full fence, and then reads
 * `sleeping`; if it is 1 and the producer is the one whose exchange turns it
 * to 0, it writes one byte to the consumer's pipe. With both fences
 * sequentially consistent, the two "store then load" sequences cannot both
 * miss: in the fences' single total order, if the consumer's comes first,
 * the producer's load sees sleeping == 1 (or a later 0 written by another
 * producer's exchange, and that producer rang); if the producer's comes
 * first, the consumer's look sees the published record and it does not
 * sleep. Every look the consumer makes after its fence is ordered after its
 * store, so an announcement that is still standing (sleeping still 1) needs
 * no second store or fence before the next look (shk_bus_dispatch ends with
 * an announcement; shk_bus_wait then only looks again). Taking an
 * announcement back is an exchange too, so exactly one side turns each 1
 * into 0: when the consumer's exchange returns 0, a producer rang, and the
 * consumer drains its pipe before the next announcement (never after: a byte
 * written for the new announcement must stay). A record whose producer dies
 * before publishing is a hole: the consumer checks the producer's liveness
 * (system calls) only when that record is still unpublished after its short
 * spin, i.e. right before it would sleep on it, and it is found when the next
 * alert rings, or when the master reaps the producer (shk_bus_reap rings
 * every joined slot).
 */
#ifndef SHK_BUS_INTERNAL_H
#define SHK_BUS_INTERNAL_H

#include "shk_atomic_internal.h"
#include "shk_bus.h"
#include "shk_internal.h"
#include "shk_shmtx.h"
#include "shk_slab.h"

#include <string.h>
#include <time.h>
#include <unistd.h>

#define BUS_MAGIC 0x0053554b4d4853ULL /* "SHMKUS" */
/* 2: 64-byte aligned records, no coalesced counter; 3: the header records
 * its size; 4: large alerts' blocks held by record position and listed */
#define BUS_VERSION 4u
#define BUS_REC_HDR 48u
#define BUS_REC_ALIGN 64u
#define BUS_ST_CLAIMED 1u
#define BUS_ST_PUBLISHED 2u
#define BUS_ST_PAD 3u
#define BUS_RF_LARGE 1u
#define BUS_LARGE_BODY 16u /* a large record's body: its block's offset and id */
#define BUS_QUEUE_MIN 4096u
#define BUS_QUEUE_MAX ((uint64_t)1 << 31)

/* Header of every record in a ring; `word0` is written last for a
 * published record (release), so a consumer that acquires it sees the rest. */
typedef struct bus_rec_s {
    _Atomic uint64_t word0; /* len (bits 0-31) | state (bits 32-39) */
    int32_t pid;            /* the producer */
    int32_t slot;           /* the producer's slot, -1 when not joined */
    uint64_t gen;           /* the receiving slot's generation when queued */
    uint64_t enq_ns;
    uint32_t name_len;
    uint32_t flags;
    uint64_t data_len;
    /* name bytes, then data bytes, or for BUS_RF_LARGE the block's slab
     * offset and id (BUS_LARGE_BODY bytes) */
} bus_rec_t;

_Static_assert(sizeof(bus_rec_t) == BUS_REC_HDR, "a record header is 48 bytes (docs/bus.md)");

#define BUS_BLOB_MAGIC 0x424f4c424b4853ULL /* "SHKBLOB" */
#define BUS_POS_UNSET UINT64_MAX        /* the sender has not queued that record yet */
#define BUS_POS_NONE (UINT64_MAX - 1u)  /* no record: the queue refused it, or the sender
                                            died before queuing it */

/* A large alert's data, stored once in the slab for all its receivers (a
 * "block"); what holds it is said at the top of this file. Listed in the
 * bus header; magic, id, next and prev change under the slab pool's lock
 * only, the positions under the target queue's claim lock (by the sender)
 * or the pool's lock (by the sweep, for a dead sender). */
typedef struct bus_blob_s {
    _Atomic uint64_t magic;      /* BUS_BLOB_MAGIC while listed, 0 once being freed */
    uint64_t id;                 /* unique in the bus; records name (offset, id) */
    uint64_t len;                /* data bytes */
    uint64_t size;               /* the block's bytes in the slab */
    _Atomic uint64_t next, prev; /* the list (slab offsets, 0 ends it) */
    uint64_t targets;            /* bit i: slot i is a target */
    int32_t pid;                 /* the sender */
    _Atomic uint32_t sealed;     /* 1 once every position is final */
    _Atomic uint64_t pos[];      /* per target, in slot order: the position of its
                                    record, BUS_POS_UNSET or BUS_POS_NONE */
} bus_blob_t;

_Static_assert(sizeof(bus_blob_t) == 64, "a block's header is one cache line and its positions");

/* Bytes of a block's header with n targets; the data follows, 64-byte aligned. */
static inline uint64_t shk_bus_blob_hdr(unsigned n)
{
    return SHK_ALIGN_UP(sizeof(bus_blob_t) + 8u * (uint64_t)n, (uint64_t)64);
}

/* The index of slot i's position in a block sent to `targets`. */
static inline unsigned shk_bus_blob_index(uint64_t targets, unsigned i)
{
    return (unsigned)__builtin_popcountll(targets & ((1ULL << i) - 1));
}

/* Fields are grouped by writer, one cache line per group, so that a producer
 * and the consumer do not keep stealing each other's lines. */
typedef struct bus_queue_s {
    shk_shmtx_sh_t claim; /* producers' claim lock */
    /* written by producers (under the claim lock, or by RMW) */
    _Alignas(64) _Atomic uint64_t tail; /* next byte to claim (monotonic) */
    _Atomic uint64_t enq, rejected, rung; /* coalesced = enq - rung */
    /* written by the consumer, i.e. the process that holds the slot (`sent`
     * too: what that process sent; it sat on the line every sender reads
     * to find the slot, which each of its sends took from them). One writer
     * each: updated with SHK_ADD_SOLE, no locked instruction (readers only
     * want a snapshot). */
    _Alignas(64) _Atomic uint64_t head; /* next byte to consume (monotonic) */
    _Atomic uint64_t deq, high, received, discarded, skipped, stale, sent;
    _Alignas(64) _Atomic uint32_t sleeping; /* written by both: the doorbell */
    /* written when a worker joins or is reaped; read by every sender */
    _Alignas(64) _Atomic int32_t pid;
    _Atomic uint32_t state;
    _Atomic uint64_t generation;
    uint64_t ring_off; /* slab offset */
    uint64_t ring_size;
} bus_queue_t;

/* The bus header, the zone's "bus" root. Every field is written before the
 * magic, which is stored last (release); shk_bus_open acquires it first. */
typedef struct bus_hdr_s {
    _Atomic uint64_t magic;
    uint32_t version;
    uint32_t nslots;
    uint64_t size; /* this header with its slot table, bytes (shk_bus_hdr_bytes) */
    uint64_t queue_bytes;
    uint64_t large_min; /* data at least this long goes to the slab */
    _Atomic uint64_t large; /* alerts sent through the slab (cumulative) */
    /* Large alerts' blocks (shk_bus_blob.c), changed under the slab pool's
     * lock; the stats read the first three without it. */
    _Atomic uint64_t blobs;      /* the first listed block (slab offset), 0: none */
    _Atomic uint64_t blob_count; /* blocks listed */
    _Atomic uint64_t blob_bytes; /* their bytes in the slab */
    uint64_t blob_seq;           /* the last id given */
    _Atomic uint32_t jop;        /* the list change in progress (BUS_JOP_*), 0: none */
    uint32_t pad32;
    _Atomic uint64_t joff;       /* the block it is about */
    uint64_t pad[4];
    bus_queue_t slots[];
} bus_hdr_t;

/* The journal of list changes: a process killed inside the pool's lock in
 * the middle of one leaves it set, and the next to take the lock for the
 * bus finishes or undoes the change (shk_bus_blob.c). */
enum { BUS_JOP_NEW = 1, BUS_JOP_FREE = 2 };

_Static_assert(sizeof(bus_hdr_t) % 64 == 0, "the slot table starts on a cache line");

typedef struct bus_handler_s {
    char *name;
    shk_bus_handler_t fn;
    void *ctx;
} bus_handler_t;

/* The process-local handle. nslots, qsize and large_min are copies of the
 * header's, checked once (create, open), so that no later change to the
 * mapping can send an index or a position out of bounds. */
struct shk_bus_s {
    shk_zone_t *zone;
    shk_slab_t *slab;
    bus_hdr_t *b;
    unsigned nslots;
    uint64_t qsize;     /* every queue's ring size: a power of two */
    uint64_t large_min;
    uint64_t slab_size; /* the slab's bytes: every offset read from the mapping is
                           checked against it */
    int rdonly;
    int nopipes;
    int (*fds)[2];
    int slot;
    pid_t slot_pid; /* the process that joined `slot` (a forked child has not) */
    int policy;
    bus_handler_t *h;
    size_t nh, caph;
    pid_t sender;
    int in_handler;
    int in_dispatch;
    void (*claim_hook)(void *);
    void *claim_ctx;
    void (*step_hook)(void *, int);
    void *step_ctx;
    shk_shmtx_t claim[SHK_BUS_MAX_SLOTS];
    uint64_t head_seen[SHK_BUS_MAX_SLOTS]; /* producer: last head read per queue */
    uint64_t tail_seen;                    /* consumer: last tail read */
    char *rings[SHK_BUS_MAX_SLOTS];        /* each queue's ring in this process */
    size_t last_h;                         /* consumer: index of the last handler found */
    int announced;    /* consumer: we stored sleeping = 1 and have not taken it back */
    int bell;         /* consumer: a byte may be waiting in our pipe */
    unsigned spin_us; /* consumer: how long shk_bus_wait polls before sleeping */
    /* Pages of the slab this process has already mapped for large alerts (1
     * bit each), so that a block reused by the next alert is not pre-faulted
     * again (an madvise() over 1 MiB of mapped pages costs ~15 us here). Only
     * a hint: a stale bit costs page faults inside the copy, nothing more.
     * A forked child has none of the parent's page table entries for the
     * zone (shared mappings are not copied at fork), so the bits belong to
     * mapped_pid and start over in any other process. */
    uint64_t *mapped;
    size_t mapped_pages;
    pid_t mapped_pid;
};

/* ---- shared between the files (SHK_HIDDEN) ------------------------------------- */

/* Map the pages of [p, p + len) into this process now (shk_bus_create.c). */
SHK_HIDDEN void shk_bus_prefault(void *p, size_t len);

/* ---- large alerts' blocks (shk_bus_blob.c) ---- */

/* Allocate and list a block for `len` bytes of data sent to the slots of
 * `targets`, held by its sender (not sealed, every position BUS_POS_UNSET);
 * its offset goes to *off. NULL with SHK_ENOMEM (no room, even after a
 * sweep) or the pool lock's error. */
SHK_HIDDEN bus_blob_t *shk_bus_blob_new(shk_bus_t *bus, size_t len, uint64_t targets,
                                        uint64_t *off);

/* The sender is done: every position is final (BUS_POS_NONE where no record
 * was queued). Frees the block if no receiver holds it any more. */
SHK_HIDDEN void shk_bus_blob_seal(shk_bus_t *bus, bus_blob_t *bl, uint64_t off);

/* A receiver moved its head past the record that names block (off, id):
 * frees the block if nobody holds it any more. */
SHK_HIDDEN void shk_bus_blob_done(shk_bus_t *bus, uint64_t off, uint64_t id);

/* The data of the block a large record at position h of slot i's queue
 * names (data_len bytes), checked (every field read from the mapping once):
 * NULL, with the reason in the last error, if it is not one the sender made
 * for that record. */
SHK_HIDDEN const void *shk_bus_blob_for(const shk_bus_t *bus, uint64_t off, uint64_t id,
                                        unsigned i, uint64_t h, uint64_t data_len);

/* Seal the blocks of dead senders (`dead`, or any sender that is gone) and
 * free every block nobody holds. Waits for the pool's lock at most
 * timeout_ms (negative: no limit). Returns the blocks freed, or
 * SHK_ETIMEDOUT / the lock's error. */
SHK_HIDDEN int shk_bus_blob_sweep(shk_bus_t *bus, pid_t dead, int timeout_ms);

/* Lock-free counts for the stats: blocks not sealed yet, and the blocks slot
 * i (i < nslots; or none when i is -1) still holds, with their bytes. A
 * snapshot: a walk that races with a free may stop early. */
SHK_HIDDEN void shk_bus_blob_count(const shk_bus_t *bus, int i, uint64_t *sending,
                                   uint64_t *held, uint64_t *held_bytes);

/* Test hook (shk_bus_send.c): when set, a producer stops between claiming
 * its record and publishing it, calls fn(ctx), then goes on. Not part of
 * the API: the tests reach it through this header and the static library. */
SHK_HIDDEN void shk_bus_set_claim_hook(shk_bus_t *bus, void (*fn)(void *ctx), void *ctx);

/* Test hook: the numbered steps of a large alert's life (and of a reap) at
 * which a process can die, each a place where the references to the alert's
 * block must come out right whatever happens next. When the hook is set,
 * fn(ctx, step) is called at each (a test kills the process there). Not
 * part of the API, like the claim hook. */
enum {
    SHK_BUS_STEP_BLOB = 1, /* sender: the block is allocated, no record names it yet */
    SHK_BUS_STEP_FANOUT,   /* sender: one target's record is published, more may follow */
    SHK_BUS_STEP_SENT,     /* sender: every target's record is published */
    SHK_BUS_STEP_TAKEN,    /* receiver: the record is taken, its handler not called yet */
    SHK_BUS_STEP_HANDLED,  /* receiver: the handler returned, head has not moved */
    SHK_BUS_STEP_RELEASED, /* receiver: head moved past the record, the block not let go */
    SHK_BUS_STEP_FREEING,  /* whoever frees a block: inside the pool's lock, not yet freed */
    SHK_BUS_STEP_PURGE,    /* reaper: in the middle of purging a record */
    SHK_BUS_STEP_SWEEP,    /* reaper: in the middle of the sweep of blocks */
    SHK_BUS_STEP_MAX
};
SHK_HIDDEN void shk_bus_set_step_hook(shk_bus_t *bus, void (*fn)(void *ctx, int step), void *ctx);

#define SHK_BUS_STEP(bus, step)                                                                \
    do {                                                                                       \
        if (SHK_UNLIKELY((bus)->step_hook))                                                    \
            (bus)->step_hook((bus)->step_ctx, (step));                                         \
    } while (0)

/* ---- inline helpers -------------------------------------------------------------- */

/* Bytes of the bus header with a slot table of n slots. */
static inline uint64_t shk_bus_hdr_bytes(uint64_t n)
{
    return sizeof(bus_hdr_t) + n * sizeof(bus_queue_t);
}

/* This process's slot, -1 if it has none (a child forked by a joined
 * process inherits the handle but not the slot). */
static inline int shk_bus_my_slot(const shk_bus_t *bus)
{
    return bus->slot >= 0 && bus->slot_pid == SHK_PID() ? bus->slot : -1;
}

/* Enqueue times come from the coarse monotonic clock: a few ns per read
 * instead of ~25 (the precise clock was the largest single cost of a send),
 * at the price of its resolution (a few ms, clock_getres) for the oldest
 * alert's age. Stats use the same clock, so an age is never negative. */
static inline uint64_t shk_bus_coarse_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Ask for a cache line with the intent to write it (exclusive), ahead of
 * time. A read prefetch (what __builtin_prefetch(p, 1) becomes on a plain
 * x86-64 target) brings it shared, and the store still waits for the other
 * caches' copies to be invalidated. PREFETCHW is a NOP where unsupported. */
static inline void shk_bus_prefetch_w(const void *p)
{
#if defined(__x86_64__) || defined(__i386__)
    __asm__ volatile("prefetchw %0" : : "m"(*(const char *)p));
#else
    __builtin_prefetch(p, 1);
#endif
}

/* Queue q's ring in this process: the handle keeps each ring's address (set
 * by create and open, after checking its bounds), so there is no call into
 * the slab and no read of its shared header per record. */
static inline char *shk_bus_ring_of(const shk_bus_t *bus, const bus_queue_t *q)
{
    return bus->rings[q - bus->b->slots];
}

/* An alert's name and data: SHK_EINVAL for an empty or too long name, data
 * too long, or NULL data of nonzero length; *nl receives the name's length. */
static inline int shk_bus_check_args(const char *name, const void *data, size_t len, size_t *nl)
{
    if (!name || !*name)
        return shk_error(SHK_EINVAL, "alert name is empty");
    *nl = strnlen(name, SHK_BUS_NAME_MAX + 1);
    if (*nl > SHK_BUS_NAME_MAX)
        return shk_error(SHK_EINVAL, "alert name is longer than %d bytes", SHK_BUS_NAME_MAX);
    if ((unsigned long long)len > SHK_BUS_DATA_MAX)
        return shk_error(SHK_EINVAL, "alert data of %zu bytes is longer than 4 GiB - 1", len);
    if (len && !data)
        return shk_error(SHK_EINVAL, "alert data is NULL");
    return SHK_OK;
}

/* Drain a doorbell pipe (non-blocking). */
static inline void shk_bus_drain_pipe(int fd)
{
    char c[64];
    while (read(fd, c, sizeof c) > 0)
        ;
}

enum { SHK_BUS_EMPTY, SHK_BUS_PENDING, SHK_BUS_READY };

/* What is at the head of queue q: nothing, a record still being written, or
 * something to take (record, padding). With `check_dead`, a record claimed by
 * a producer that is gone is something to take too (a hole to skip); that
 * check costs system calls (shk_pid_alive), so the hot paths leave it to the
 * moment the consumer is about to give up and sleep. *hp and *tp receive
 * head and the tail it was compared with. Positions read from the mapping
 * are not trusted: the record is read at head rounded down to a record's
 * alignment, always inside the ring, and a head or tail that no producer
 * and consumer could have made (more than a ring apart, head past tail, a
 * misaligned head) is left to shk_bus_rec_read to refuse. */
static inline int shk_bus_head_state(const shk_bus_t *bus, bus_queue_t *q, bus_rec_t **rp,
                                     uint64_t *hp, uint64_t *tp, int check_dead)
{
    int own = shk_bus_my_slot(bus) >= 0 && q == &bus->b->slots[bus->slot];
    uint64_t size = bus->qsize;
    /* relaxed: head has one writer at a time, the caller (the slot's holder,
     * or the master purging a dead holder's queue under its claim lock). */
    uint64_t h = SHK_READ_ONCE(q->head);
    /* The consumer's last view of tail is enough while it is ahead of head;
     * otherwise acquire the shared one: pairs with the producer's release of
     * tail, so the claimed header is visible. */
    uint64_t t = own ? bus->tail_seen : h;
    uint64_t pos = h & (size - 1) & ~(uint64_t)(BUS_REC_ALIGN - 1);
    if (t <= h || t - h > size) {
        /* the record at head, if any, is the next line we need: ask for it
         * now so that its miss overlaps the tail's (a woken consumer pays
         * both) */
        __builtin_prefetch(shk_bus_ring_of(bus, q) + pos, 0);
        t = SHK_LOAD_ACQUIRE(q->tail);
        if (own)
            ((shk_bus_t *)bus)->tail_seen = t;
    }
    if (h == t)
        return SHK_BUS_EMPTY;
    char *ring = shk_bus_ring_of(bus, q);
    bus_rec_t *r = (bus_rec_t *)(ring + pos);
    if (t - h > 2048) {
        __builtin_prefetch(ring + ((h + 1024) & (size - 1)), 0);
        __builtin_prefetch(ring + ((h + 1088) & (size - 1)), 0);
    }
    /* acquire: pairs with the publish (release) of the record. */
    uint64_t w = SHK_LOAD_ACQUIRE(r->word0);
    *rp = r;
    *hp = h;
    *tp = t;
    if ((w >> 32 & 0xff) == BUS_ST_CLAIMED && t - h <= size &&
        (!check_dead || shk_pid_alive(r->pid)))
        return SHK_BUS_PENDING;
    return SHK_BUS_READY;
}

/* The consumer is done with the record of `len` bytes at h. */
static inline void shk_bus_release_head(bus_queue_t *q, uint64_t h, uint64_t len)
{
    /* release: we are done reading the bytes producers may now reuse. */
    SHK_STORE_RELEASE(q->head, h + len);
}

/* Why a record was refused (bus_rec_view_t.bad); shk_bus_rec_why names it. */
enum {
    BUS_BAD_POS = 1, /* head and tail more than a ring apart, or head past tail */
    BUS_BAD_ALIGN,   /* head or the record's length not a multiple of 64 */
    BUS_BAD_LEN,     /* length 0, past the end of the ring, or past the tail */
    BUS_BAD_STATE,   /* not claimed, published or padding */
    BUS_BAD_NAME,    /* name length 0, above 254, or past the record */
    BUS_BAD_DATA,    /* data length past the record */
    BUS_BAD_LARGE    /* a large alert's body too short, or no block named */
};

/* A record header as checked: each field read from the mapping once. */
typedef struct bus_rec_view_s {
    uint64_t len;      /* the record's bytes */
    unsigned st;       /* BUS_ST_* */
    int32_t pid;       /* the producer */
    uint32_t name_len;
    uint64_t gen;
    uint64_t data_len;
    uint64_t blob, blob_id; /* a large alert's block (offset 0: none) */
    int bad;                /* BUS_BAD_*, when refused */
} bus_rec_view_t;

/* What was wrong with a refused record, for the log (shk_bus_dispatch.c). */
SHK_HIDDEN const char *shk_bus_rec_why(const bus_rec_view_t *v, char *buf, size_t size);

/* Read the record header r at position h (its word0 is w) of a queue whose
 * tail is t, and check that a producer could have written it: positions a
 * ring apart at most, head aligned, a known state, the record whole inside
 * the ring and before the tail, its name (1..254 bytes) and body inside
 * its length. Anything else means the queue is damaged: bytes read from the
 * mapping are never trusted, and are read once (into *v), so that a value
 * checked here is the value used. 1 if sane. */
static inline int shk_bus_rec_read(const shk_bus_t *bus, const bus_rec_t *r, uint64_t h,
                                   uint64_t t, uint64_t w, bus_rec_view_t *v)
{
    uint64_t len = w & 0xffffffffu, pos = h & (bus->qsize - 1);
    struct {
        int32_t pid, slot;
        uint64_t gen, enq_ns;
        uint32_t name_len, flags;
        uint64_t data_len;
    } f;
    v->len = len;
    v->st = (unsigned)(w >> 32 & 0xff);
    v->blob = v->blob_id = 0;
    v->name_len = 0;
    v->data_len = 0;
    v->bad = 0;
    if (t - h > bus->qsize)
        v->bad = BUS_BAD_POS;
    else if ((h | len) % BUS_REC_ALIGN)
        v->bad = BUS_BAD_ALIGN;
    else if (len == 0 || len > bus->qsize - pos || len > t - h)
        v->bad = BUS_BAD_LEN;
    else if (v->st == 0 || v->st > BUS_ST_PAD)
        v->bad = BUS_BAD_STATE;
    if (v->bad || v->st == BUS_ST_PAD)
        return !v->bad;
    _Static_assert(sizeof f == BUS_REC_HDR - 8, "the header after word0");
    memcpy(&f, (const char *)r + 8, sizeof f);
    v->pid = f.pid;
    v->gen = f.gen;
    v->name_len = f.name_len;
    v->data_len = f.data_len;
    if (f.name_len == 0 || f.name_len > SHK_BUS_NAME_MAX || len < BUS_REC_HDR + f.name_len) {
        v->bad = BUS_BAD_NAME;
        return 0;
    }
    uint64_t room = len - BUS_REC_HDR - f.name_len;
    if (f.flags & BUS_RF_LARGE) {
        if (room < BUS_LARGE_BODY || f.data_len > SHK_BUS_DATA_MAX) {
            v->bad = BUS_BAD_LARGE;
            return 0;
        }
        memcpy(&v->blob, (const char *)(r + 1) + f.name_len, 8);
        memcpy(&v->blob_id, (const char *)(r + 1) + f.name_len + 8, 8);
        if (!v->blob)
            v->bad = BUS_BAD_LARGE;
        return !v->bad;
    }
    if (f.data_len > room)
        v->bad = BUS_BAD_DATA;
    return !v->bad;
}

#endif /* SHK_BUS_INTERNAL_H */
