/*
 * shk_bus.c: the bus: slot table and queues in a zone, record claim and
 * publish, the consumer's dispatch loop with dead-producer holes, the pipe
 * doorbell, large alerts in the slab with reference counts, reaping.
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
#include "shk_bus.h"

#include "shk_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#define BUS_MAGIC 0x0053554b4d4853ULL /* "SHMKUS" */
#define BUS_VERSION 2u /* 2: 64-byte aligned records, no coalesced counter */
#define REC_HDR 48u
#define ST_CLAIMED 1u
#define ST_PUBLISHED 2u
#define ST_PAD 3u
#define RF_LARGE 1u

/* Header of every record in a ring; `word0` is written last for a
 * published record (release), so a consumer that acquires it sees the rest. */
typedef struct rec_s {
    _Atomic uint64_t word0; /* len (bits 0-31) | state (bits 32-39) */
    int32_t pid;            /* the producer */
    int32_t slot;           /* the producer's slot, -1 when not joined */
    uint64_t gen;           /* the receiving slot's generation when queued */
    uint64_t enq_ns;
    uint32_t name_len;
    uint32_t flags;
    uint64_t data_len;
    /* name bytes, then data bytes, or for RF_LARGE the blob's slab offset */
} rec_t;

/* A large alert's data, in the slab, shared by every receiver. */
typedef struct blob_s {
    _Atomic uint32_t refs;
    uint32_t pad;
    uint64_t len;
    /* data */
} blob_t;

/* Fields are grouped by writer, one cache line per group, so that a producer
 * and the consumer do not keep stealing each other's lines. */
typedef struct qslot_s {
    shk_shmtx_sh_t claim; /* producers' claim lock */
    /* written by producers (under the claim lock, or by RMW) */
    _Alignas(64) _Atomic uint64_t tail; /* next byte to claim (monotonic) */
    _Atomic uint64_t enq, rejected, rung; /* coalesced = enq - rung */
    /* written by the consumer, i.e. the process that holds the slot (`sent`
     * too: what that process sent; it sat on the line every sender reads
     * to find the slot, which each of its sends took from them) */
    _Alignas(64) _Atomic uint64_t head; /* next byte to consume (monotonic) */
    _Atomic uint64_t deq, high, received, discarded, skipped, stale, sent;
    _Alignas(64) _Atomic uint32_t sleeping; /* written by both: the doorbell */
    /* written when a worker joins or is reaped; read by every sender */
    _Alignas(64) _Atomic int32_t pid;
    _Atomic uint32_t state;
    _Atomic uint64_t generation;
    uint64_t ring_off; /* slab offset */
    uint64_t ring_size;
} qslot_t;

typedef struct bus_s {
    uint64_t magic;
    uint32_t version;
    uint32_t nslots;
    uint64_t queue_bytes;
    uint64_t large_min; /* data at least this long goes to the slab */
    _Atomic uint64_t large;
    uint64_t pad[3];
    qslot_t slots[];
} bus_t;

typedef struct handler_s {
    char *name;
    shk_bus_handler_t fn;
    void *ctx;
} handler_t;

struct shk_bus_s {
    shk_zone_t *zone;
    shk_slab_t *slab;
    bus_t *b;
    int rdonly;
    int nopipes;
    int (*fds)[2];
    int slot;
    pid_t slot_pid; /* the process that joined `slot` (a forked child has not) */
    int policy;
    handler_t *h;
    size_t nh, caph;
    pid_t sender;
    int in_handler;
    int in_dispatch;
    void (*claim_hook)(void *);
    void *claim_ctx;
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

/* This process's slot, -1 if it has none (a child forked by a joined
 * process inherits the handle but not the slot). */
static int my_slot(const shk_bus_t *bus)
{
    return bus->slot >= 0 && bus->slot_pid == SHK_PID() ? bus->slot : -1;
}

/* Enqueue times come from the coarse monotonic clock: a few ns per read
 * instead of ~25 (the precise clock was the largest single cost of a send),
 * at the price of its resolution (a few ms, clock_getres) for the oldest
 * alert's age. Stats use the same clock, so an age is never negative. */
static uint64_t coarse_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Ask for a cache line with the intent to write it (exclusive), ahead of
 * time. A read prefetch (what __builtin_prefetch(p, 1) becomes on a plain
 * x86-64 target) brings it shared, and the store still waits for the other
 * caches' copies to be invalidated. PREFETCHW is a NOP where unsupported. */
static inline void prefetch_w(const void *p)
{
#if defined(__x86_64__) || defined(__i386__)
    __asm__ volatile("prefetchw %0" : : "m"(*(const char *)p));
#else
    __builtin_prefetch(p, 1);
#endif
}

static char *ring_of(const shk_bus_t *bus, const qslot_t *q)
{
    /* the handle keeps each ring's address (set by create and open): no
     * call into the slab, no read of its shared header per record */
    char *ring = bus->rings[q - bus->b->slots];
    return ring ? ring : (char *)shk_slab_ptr(bus->slab, q->ring_off);
}

/* ---- create / open / close ------------------------------------------------------ */

static size_t pow2_at_least(size_t n)
{
    size_t p = 4096;
    while (p < n && p < ((size_t)1 << 40))
        p <<= 1;
    return p;
}

static shk_bus_t *handle_new(shk_zone_t *zone)
{
    shk_bus_t *bus = calloc(1, sizeof *bus);
    if (!bus) {
        shk_error(SHK_ENOMEM, "out of memory");
        return NULL;
    }
    bus->zone = zone;
    bus->slab = shk_zone_slab(zone);
    bus->slot = -1;
    return bus;
}

shk_bus_t *shk_bus_create(shk_zone_t *zone, unsigned slots, size_t queue_bytes)
{
    shk_bus_t *bus;
    shk_slab_t *slab;
    bus_t *b;
    size_t qb;
    int rc;

    if (!zone || !shk_zone_slab(zone)) {
        shk_error(SHK_EINVAL, "shk_bus_create: zone not created");
        return NULL;
    }
    if (slots == 0 || slots > SHK_BUS_MAX_SLOTS) {
        shk_error(SHK_EINVAL, "bus slots must be 1..%d, not %u", SHK_BUS_MAX_SLOTS, slots);
        return NULL;
    }
    if (shk_zone_root(zone, "bus")) {
        shk_error(SHK_EINVAL, "zone \"%s\" already has a bus", shk_zone_name(zone));
        return NULL;
    }
    qb = pow2_at_least(queue_bytes);
    if (qb > 0xffffffffu) {
        shk_error(SHK_EINVAL, "bus queue of %zu bytes is too large (at most 2 GiB)", queue_bytes);
        return NULL;
    }
    bus = handle_new(zone);
    if (!bus)
        return NULL;
    slab = bus->slab;
    void *blk = shk_slab_calloc(slab, sizeof *b + (size_t)slots * sizeof(qslot_t) + 64);
    if (!blk) {
        shk_error(SHK_ENOMEM, "zone \"%s\" has no room for a bus of %u slots",
                  shk_zone_name(zone), slots);
        free(bus);
        return NULL;
    }
    /* qslot_t wants 64-byte alignment; the slab gives 16. */
    b = (bus_t *)SHK_ALIGN_UP((uintptr_t)blk, (uintptr_t)64);
    b->version = BUS_VERSION;
    b->nslots = slots;
    b->queue_bytes = qb;
    b->large_min = qb / 4;
    bus->fds = calloc(slots, sizeof *bus->fds);
    if (!bus->fds) {
        shk_error(SHK_ENOMEM, "out of memory");
        goto fail;
    }
    for (unsigned i = 0; i < slots; i++)
        bus->fds[i][0] = bus->fds[i][1] = -1;
    for (unsigned i = 0; i < slots; i++) {
        qslot_t *q = &b->slots[i];
        void *ring = shk_slab_calloc(slab, qb);
        if (!ring) {
            shk_error(SHK_ENOMEM, "zone \"%s\" has no room for %u bus queues of %zu bytes",
                      shk_zone_name(zone), slots, qb);
            goto fail;
        }
        q->ring_off = shk_slab_off(slab, ring);
        q->ring_size = qb;
        atomic_store_explicit(&q->sleeping, 0, memory_order_relaxed);
        if (pipe2(bus->fds[i], O_NONBLOCK | O_CLOEXEC) != 0) {
            shk_error_sys("pipe2");
            goto fail;
        }
        char name[24];
        snprintf(name, sizeof name, "bus.q%u", i);
        shk_shmtx_create(&bus->claim[i], &q->claim, name);
        bus->rings[i] = ring;
    }
    bus->b = b;
    /* Publish last: the bus is complete before shk_bus_open can find it. */
    b->magic = BUS_MAGIC;
    if ((rc = shk_zone_root_set(zone, "bus", b)) != SHK_OK)
        goto fail;
    return bus;

fail:
    for (unsigned i = 0; bus->fds && i < slots; i++) {
        if (bus->fds[i][0] >= 0)
            close(bus->fds[i][0]);
        if (bus->fds[i][1] >= 0)
            close(bus->fds[i][1]);
        if (b->slots[i].ring_off)
            shk_slab_free(slab, shk_slab_ptr(slab, b->slots[i].ring_off));
    }
    free(bus->fds);
    shk_slab_free(slab, blk);
    free(bus);
    return NULL;
}

shk_bus_t *shk_bus_open(shk_zone_t *zone, unsigned flags)
{
    bus_t *b;
    shk_bus_t *bus;
    if (!zone) {
        shk_error(SHK_EINVAL, "NULL zone");
        return NULL;
    }
    b = shk_zone_root(zone, "bus");
    if (!b) {
        shk_error(SHK_ENOENT, "zone \"%s\" has no bus", shk_zone_name(zone));
        return NULL;
    }
    size_t room = shk_slab_size(shk_zone_slab(zone)) - shk_slab_off(shk_zone_slab(zone), b);
    if (room < sizeof *b || b->magic != BUS_MAGIC || b->version != BUS_VERSION ||
        b->nslots == 0 || b->nslots > SHK_BUS_MAX_SLOTS ||
        room < sizeof *b + (size_t)b->nslots * sizeof(qslot_t)) {
        shk_error(SHK_ECORRUPT, "zone \"%s\": the bus header is damaged", shk_zone_name(zone));
        return NULL;
    }
    bus = handle_new(zone);
    if (!bus)
        return NULL;
    bus->b = b;
    bus->rdonly = (flags & SHK_ZONE_RDONLY) || shk_zone_rdonly(zone);
    bus->nopipes = 1;
    for (unsigned i = 0; i < b->nslots; i++) {
        const qslot_t *q = &b->slots[i];
        if (q->ring_size != b->queue_bytes || !shk_slab_ptr(bus->slab, q->ring_off) ||
            q->ring_off + q->ring_size > shk_slab_size(bus->slab)) {
            shk_error(SHK_ECORRUPT, "zone \"%s\": bus queue %u is out of bounds",
                      shk_zone_name(zone), i);
            free(bus);
            return NULL;
        }
        shk_shmtx_create(&bus->claim[i], &b->slots[i].claim, "bus.q");
        bus->rings[i] = shk_slab_ptr(bus->slab, q->ring_off);
    }
    return bus;
}

void shk_bus_close(shk_bus_t *bus)
{
    if (!bus)
        return;
    for (unsigned i = 0; bus->fds && i < bus->b->nslots; i++) {
        close(bus->fds[i][0]);
        close(bus->fds[i][1]);
    }
    free(bus->fds);
    for (size_t i = 0; i < bus->nh; i++)
        free(bus->h[i].name);
    free(bus->h);
    free(bus->mapped);
    free(bus);
}

/* ---- slots ----------------------------------------------------------------------- */

/* Map the pages of [p, p + len) into this process now. A forked worker
 * inherits the zone's mapping but not its page table entries, so without
 * this the first lap through its ring costs a page fault per 4 KiB (with
 * slow system calls, milliseconds over which the first alerts pile up). */
static void prefault(void *p, size_t len)
{
    long pg = sysconf(_SC_PAGESIZE);
    uintptr_t a, b;
    if (pg <= 0 || !p || !len)
        return;
    a = (uintptr_t)p & ~(uintptr_t)(pg - 1);
    b = SHK_ALIGN_UP((uintptr_t)p + len, (uintptr_t)pg);
#ifdef MADV_POPULATE_WRITE
    if (madvise((void *)a, b - a, MADV_POPULATE_WRITE) == 0)
        return;
#endif
    /* older kernels: read a byte of every page (contents unchanged) */
    for (uintptr_t x = a; x < b; x += (uintptr_t)pg)
        (void)*(volatile const char *)x;
}

int shk_bus_join(shk_bus_t *bus, unsigned slot)
{
    qslot_t *q;
    char c[64];
    if (!bus || bus->nopipes)
        return shk_error(SHK_EINVAL, "shk_bus_join: no bus, or a bus opened without pipes");
    if (slot >= bus->b->nslots)
        return shk_error(SHK_EINVAL, "bus slot %u does not exist (%u slots)", slot,
                         bus->b->nslots);
    if (my_slot(bus) >= 0)
        return shk_error(SHK_EBUSY, "this process already holds bus slot %d", bus->slot);
    q = &bus->b->slots[slot];
    pid_t cur = atomic_load_explicit(&q->pid, memory_order_acquire);
    if (atomic_load_explicit(&q->state, memory_order_acquire) == SHK_BUS_SLOT_JOINED && cur &&
        cur != SHK_PID() && shk_pid_alive(cur))
        return shk_error(SHK_EBUSY, "bus slot %u is held by live process %d", slot, (int)cur);
    /* Doorbells rung for the previous owner are stale. */
    while (read(bus->fds[slot][0], c, sizeof c) > 0)
        ;
    atomic_fetch_add_explicit(&q->generation, 1, memory_order_relaxed);
    /* release: a sender that sees our pid (acquire) sees the new generation. */
    atomic_store_explicit(&q->pid, (int32_t)SHK_PID(), memory_order_release);
    atomic_store_explicit(&q->state, SHK_BUS_SLOT_JOINED, memory_order_release);
    atomic_store_explicit(&q->sleeping, 0, memory_order_seq_cst);
    bus->slot = (int)slot;
    bus->slot_pid = SHK_PID();
    bus->tail_seen = 0;
    bus->announced = bus->bell = 0;
    prefault(ring_of(bus, q), q->ring_size);
    return SHK_OK;
}

int shk_bus_slot(const shk_bus_t *bus)
{
    return bus ? my_slot(bus) : -1;
}

int shk_bus_fd(const shk_bus_t *bus)
{
    return bus && my_slot(bus) >= 0 ? bus->fds[bus->slot][0] : -1;
}

static int find_slot(const shk_bus_t *bus, pid_t pid)
{
    for (unsigned i = 0; i < bus->b->nslots; i++) {
        const qslot_t *q = &bus->b->slots[i];
        if (atomic_load_explicit(&q->pid, memory_order_acquire) == pid &&
            atomic_load_explicit(&q->state, memory_order_acquire) == SHK_BUS_SLOT_JOINED)
            return (int)i;
    }
    return -1;
}

/* ---- producing --------------------------------------------------------------------- */

static int check_args(const char *name, const void *data, size_t len, size_t *nl)
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

static void ring_doorbell(shk_bus_t *bus, unsigned i)
{
    qslot_t *q = &bus->b->slots[i];
    /* seq_cst fence: orders the publish before the load of `sleeping` (see
     * the protocol at the top). */
    atomic_thread_fence(memory_order_seq_cst);
    if (atomic_load_explicit(&q->sleeping, memory_order_relaxed) &&
        atomic_exchange_explicit(&q->sleeping, 0, memory_order_seq_cst) == 1) {
        ssize_t w = write(bus->fds[i][1], "!", 1);
        (void)w; /* EAGAIN: the pipe is full, a wake-up is pending anyway */
        atomic_fetch_add_explicit(&q->rung, 1, memory_order_relaxed);
    }
}

/* Claim, write and publish one record in slot i's queue. `blob_off` is
 * nonzero for a large alert (the data is in the blob). */
static int enqueue(shk_bus_t *bus, unsigned i, const char *name, size_t nl, const void *data,
                   size_t len, uint64_t blob_off)
{
    qslot_t *q = &bus->b->slots[i];
    uint64_t size = q->ring_size, body = blob_off ? 8 : len;
    uint64_t need = SHK_ALIGN_UP(REC_HDR + nl + body, (uint64_t)64);
    char *ring = ring_of(bus, q);
    int rc;

    if (need > size)
        return shk_error(SHK_EINVAL, "alert of %zu bytes does not fit a bus queue", len);
    rc = shk_shmtx_lock(&bus->claim[i]);
    if (rc != SHK_OK && rc != SHK_EOWNERDEAD)
        return rc;
    uint64_t t = atomic_load_explicit(&q->tail, memory_order_relaxed);
    uint64_t pos = t & (size - 1), pad = 0;
    if (pos + need > size)
        pad = size - pos;
    /* The head we saw last is a lower bound (it only grows): read the shared
     * one only when that bound says the record does not fit. acquire: pairs
     * with the consumer's release of head, so the bytes we are about to
     * overwrite have been read. (A bound from another process's handle is
     * fine too: any value head had is a lower bound.) */
    uint64_t head = bus->head_seen[i];
    if (t + pad + need - head > size || head > t)
        head = bus->head_seen[i] = atomic_load_explicit(&q->head, memory_order_acquire);
    if (t + pad + need - head > size) {
        shk_shmtx_unlock(&bus->claim[i]);
        atomic_fetch_add_explicit(&q->rejected, 1, memory_order_relaxed);
        return shk_error(SHK_EAGAIN, "the bus queue of pid %d is full",
                         (int)atomic_load_explicit(&q->pid, memory_order_relaxed));
    }
    if (pad) {
        rec_t *pr = (rec_t *)(ring + pos);
        atomic_store_explicit(&pr->word0, ((uint64_t)ST_PAD << 32) | pad, memory_order_relaxed);
        pos = 0;
    }
    rec_t *r = (rec_t *)(ring + pos);
    for (uint64_t k = 0; k < need; k += 64)
        prefetch_w(ring + ((pos + 4096 + k) & (size - 1)));
    r->pid = (int32_t)SHK_PID();
    r->slot = my_slot(bus);
    r->gen = atomic_load_explicit(&q->generation, memory_order_relaxed);
    r->enq_ns = coarse_ns();
    r->name_len = (uint32_t)nl;
    r->flags = blob_off ? RF_LARGE : 0;
    r->data_len = len;
    if (blob_off)
        memcpy((char *)(r + 1) + nl, &blob_off, 8);
    atomic_store_explicit(&r->word0, ((uint64_t)ST_CLAIMED << 32) | need, memory_order_relaxed);
    /* release: the padding and the claimed header (with our pid) are visible
     * to a consumer that acquires the new tail. */
    atomic_store_explicit(&q->tail, t + pad + need, memory_order_release);
    /* relaxed load and store: enq is written under the claim lock only */
    atomic_store_explicit(&q->enq, atomic_load_explicit(&q->enq, memory_order_relaxed) + 1,
                          memory_order_relaxed);
    shk_shmtx_unlock(&bus->claim[i]);

    if (bus->claim_hook)
        bus->claim_hook(bus->claim_ctx);
    memcpy(r + 1, name, nl);
    if (!blob_off && len)
        memcpy((char *)(r + 1) + nl, data, len);
    /* release: name and data are visible before the record is seen as
     * published (the consumer acquires word0). */
    atomic_store_explicit(&r->word0, ((uint64_t)ST_PUBLISHED << 32) | need, memory_order_release);
    ring_doorbell(bus, i);
    return SHK_OK;
}

/* A counter only the slot's holder writes (its consumer counters, and what
 * it sent): a relaxed load and store, no locked instruction (readers only
 * want a snapshot). */
static inline void cons_count(_Atomic uint64_t *c, uint64_t n)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
                          memory_order_relaxed);
}

/* A block on zone pages this process has not touched yet would take a page
 * fault per 4 KiB inside the copy; one madvise() maps them all, unless the
 * process has mapped every page of the block before (bus->mapped). */
static void prefault_blob(shk_bus_t *bus, void *p, size_t len)
{
    long pg = sysconf(_SC_PAGESIZE);
    char *base = shk_slab_base(bus->slab);
    if (pg <= 0 || (char *)p < base) {
        prefault(p, len);
        return;
    }
    size_t first = (size_t)((char *)p - base) / (size_t)pg;
    size_t last = (size_t)((char *)p + len - 1 - base) / (size_t)pg;
    if (bus->mapped_pid != SHK_PID() || !bus->mapped) {
        size_t n = shk_slab_size(bus->slab) / (size_t)pg + 1;
        free(bus->mapped);
        bus->mapped = calloc((n + 63) / 64, sizeof *bus->mapped);
        bus->mapped_pages = bus->mapped ? n : 0;
        bus->mapped_pid = SHK_PID();
    }
    if (last >= bus->mapped_pages) {
        prefault(p, len);
        return;
    }
    size_t i = first;
    while (i <= last && (bus->mapped[i / 64] >> (i % 64) & 1))
        i++;
    if (i > last)
        return;
    prefault(p, len);
    for (i = first; i <= last; i++)
        bus->mapped[i / 64] |= 1ull << (i % 64);
}

/* Data of at least this many bytes is copied into its block with streaming
 * stores. A receiver reads the alert on another CPU, so the lines of a reused
 * block are often in that CPU's cache; an ordinary copy first fetches every
 * line back (read for ownership), and for blocks beyond the L2 cache that
 * costs more than the copy. Measured here (2 vCPUs, 1 MiB L2, the receiver
 * reading every line): 1 MiB alerts 5.6-6.5 GB/s with memcpy, 14.5-18.5
 * with streaming stores; 512 KiB 12-17.5 against 16.7-18.8; at 256 KiB they
 * are even, and below it memcpy wins (the data then comes from the sender's
 * cache, not from memory). */
#define STREAM_MIN (512u * 1024)

/* Copy an alert's data into its blob. */
static void blob_copy(void *dst, const void *src, size_t len)
{
#if defined(__SSE2__)
    if (len >= STREAM_MIN) {
        char *d = dst;
        const char *s = src;
        size_t head = (16 - ((uintptr_t)d & 15)) & 15;
        memcpy(d, s, head);
        d += head, s += head, len -= head;
        for (; len >= 64; d += 64, s += 64, len -= 64) {
            __m128i a = _mm_loadu_si128((const __m128i *)s);
            __m128i b = _mm_loadu_si128((const __m128i *)(s + 16));
            __m128i c = _mm_loadu_si128((const __m128i *)(s + 32));
            __m128i e = _mm_loadu_si128((const __m128i *)(s + 48));
            _mm_stream_si128((__m128i *)d, a);
            _mm_stream_si128((__m128i *)(d + 16), b);
            _mm_stream_si128((__m128i *)(d + 32), c);
            _mm_stream_si128((__m128i *)(d + 48), e);
        }
        memcpy(d, s, len);
        /* Streaming stores are weakly ordered, even on x86: this fence makes
         * them visible before the release store that publishes the record
         * naming this blob (enqueue), as ordinary stores would be. */
        _mm_sfence();
        return;
    }
#endif
    memcpy(dst, src, len);
}

static uint64_t blob_new(shk_bus_t *bus, const void *data, size_t len, uint32_t refs)
{
    blob_t *bl = shk_slab_alloc(bus->slab, sizeof *bl + len);
    if (!bl)
        return 0;
    atomic_store_explicit(&bl->refs, refs, memory_order_relaxed);
    bl->len = len;
    if (len >= 64 * 1024)
        prefault_blob(bus, bl + 1, len);
    blob_copy(bl + 1, data, len);
    atomic_fetch_add_explicit(&bus->b->large, 1, memory_order_relaxed);
    return shk_slab_off(bus->slab, bl);
}

static void blob_unref(shk_bus_t *bus, uint64_t off, uint32_t n)
{
    blob_t *bl = shk_slab_ptr(bus->slab, off);
    if (!bl)
        return;
    /* acq_rel: the last one to drop a reference sees every reader done
     * before it frees. */
    if (atomic_fetch_sub_explicit(&bl->refs, n, memory_order_acq_rel) == n)
        shk_slab_free(bus->slab, bl);
}

static int can_send(const shk_bus_t *bus)
{
    if (!bus)
        return shk_error(SHK_EINVAL, "NULL bus");
    if (bus->nopipes || bus->rdonly)
        return shk_error(SHK_EPERM, "this bus handle was opened for inspection only");
    return SHK_OK;
}

int shk_bus_send(shk_bus_t *bus, pid_t pid, const char *name, const void *data, size_t len)
{
    size_t nl;
    int rc, i;
    uint64_t blob = 0;
    if ((rc = can_send(bus)) != SHK_OK || (rc = check_args(name, data, len, &nl)) != SHK_OK)
        return rc;
    i = pid > 0 ? find_slot(bus, pid) : -1;
    if (i < 0)
        return shk_error(SHK_ESRCH, "pid %d is not a worker on this bus", (int)pid);
    if (len >= bus->b->large_min) {
        blob = blob_new(bus, data, len, 1);
        if (!blob)
            return shk_error(SHK_ENOMEM, "no room in zone \"%s\" for an alert of %zu bytes",
                             shk_zone_name(bus->zone), len);
    }
    rc = enqueue(bus, (unsigned)i, name, nl, data, len, blob);
    if (rc == SHK_OK && my_slot(bus) >= 0)
        cons_count(&bus->b->slots[bus->slot].sent, 1);
    else if (rc != SHK_OK && blob)
        blob_unref(bus, blob, 1);
    return rc;
}

int shk_bus_broadcast(shk_bus_t *bus, const char *name, const void *data, size_t len,
                      shk_bus_bcast_t *res)
{
    shk_bus_bcast_t r = {0};
    size_t nl;
    int rc;
    uint64_t blob = 0;
    uint64_t targets = 0;

    if (res)
        memset(res, 0, sizeof *res);
    if ((rc = can_send(bus)) != SHK_OK || (rc = check_args(name, data, len, &nl)) != SHK_OK)
        return rc;
    for (unsigned i = 0; i < bus->b->nslots; i++)
        if (atomic_load_explicit(&bus->b->slots[i].state, memory_order_acquire) ==
            SHK_BUS_SLOT_JOINED) {
            targets |= 1ULL << i;
            r.targets++;
        }
    if (r.targets && len >= bus->b->large_min) {
        blob = blob_new(bus, data, len, r.targets);
        if (!blob)
            return shk_error(SHK_ENOMEM, "no room in zone \"%s\" for an alert of %zu bytes",
                             shk_zone_name(bus->zone), len);
    }
    for (unsigned i = 0; i < bus->b->nslots; i++) {
        if (!(targets >> i & 1))
            continue;
        rc = enqueue(bus, i, name, nl, data, len, blob);
        if (rc == SHK_OK) {
            r.delivered++;
        } else {
            r.failed |= 1ULL << i;
            if (!r.error)
                r.error = rc;
            if (blob)
                blob_unref(bus, blob, 1);
        }
    }
    if (r.delivered && my_slot(bus) >= 0)
        cons_count(&bus->b->slots[bus->slot].sent, r.delivered);
    if (res)
        *res = r;
    if (r.error)
        return shk_error(r.error, "broadcast reached %u of %u workers", r.delivered, r.targets);
    return SHK_OK;
}

/* ---- handlers ------------------------------------------------------------------------- */

int shk_bus_on(shk_bus_t *bus, const char *name, shk_bus_handler_t fn, void *ctx)
{
    size_t nl;
    int rc;
    if (!bus)
        return shk_error(SHK_EINVAL, "NULL bus");
    if ((rc = check_args(name, NULL, 0, &nl)) != SHK_OK)
        return rc;
    for (size_t i = 0; i < bus->nh; i++)
        if (strcmp(bus->h[i].name, name) == 0) {
            if (fn) {
                bus->h[i].fn = fn;
                bus->h[i].ctx = ctx;
            } else {
                free(bus->h[i].name);
                bus->h[i] = bus->h[--bus->nh];
            }
            return SHK_OK;
        }
    if (!fn)
        return SHK_OK;
    if (bus->nh == bus->caph) {
        size_t cap = bus->caph ? bus->caph * 2 : 8;
        handler_t *nh = realloc(bus->h, cap * sizeof *nh);
        if (!nh)
            return shk_error(SHK_ENOMEM, "out of memory");
        bus->h = nh;
        bus->caph = cap;
    }
    bus->h[bus->nh].name = strdup(name);
    if (!bus->h[bus->nh].name)
        return shk_error(SHK_ENOMEM, "out of memory");
    bus->h[bus->nh].fn = fn;
    bus->h[bus->nh].ctx = ctx;
    bus->nh++;
    return SHK_OK;
}

int shk_bus_on_table(shk_bus_t *bus, const shk_bus_handler_entry_t *t)
{
    int rc;
    if (!t)
        return shk_error(SHK_EINVAL, "NULL table");
    for (; t->name; t++)
        if ((rc = shk_bus_on(bus, t->name, t->fn, t->ctx)) != SHK_OK)
            return rc;
    return SHK_OK;
}

pid_t shk_bus_sender(const shk_bus_t *bus)
{
    return bus && bus->in_handler ? bus->sender : 0;
}

int shk_bus_reply(shk_bus_t *bus, const char *name, const void *data, size_t len)
{
    if (!bus || !bus->in_handler)
        return shk_error(SHK_EPERM, "shk_bus_reply outside an alert handler");
    return shk_bus_send(bus, bus->sender, name, data, len);
}

/* ---- consuming ---------------------------------------------------------------------------- */

enum { R_EMPTY, R_PENDING, R_READY };


/* What is at the head of queue q: nothing, a record still being written, or
 * something to take (record, padding). With `check_dead`, a record claimed by
 * a producer that is gone is something to take too (a hole to skip); that
 * check costs system calls (shk_pid_alive), so the hot paths leave it to the
 * moment the consumer is about to give up and sleep. */
static int head_state(const shk_bus_t *bus, qslot_t *q, rec_t **rp, uint64_t *hp, int check_dead)
{
    int own = my_slot(bus) >= 0 && q == &bus->b->slots[bus->slot];
    uint64_t h = atomic_load_explicit(&q->head, memory_order_relaxed);
    /* The consumer's last view of tail is enough while it is ahead of head;
     * otherwise acquire the shared one: pairs with the producer's release of
     * tail, so the claimed header is visible. */
    uint64_t t = own ? bus->tail_seen : h;
    if (t <= h || t - h > q->ring_size) {
        /* the record at head, if any, is the next line we need: ask for it
         * now so that its miss overlaps the tail's (a woken consumer pays
         * both) */
        __builtin_prefetch(ring_of(bus, q) + (h & (q->ring_size - 1)), 0);
        t = atomic_load_explicit(&q->tail, memory_order_acquire);
        if (own)
            ((shk_bus_t *)bus)->tail_seen = t;
    }
    if (h == t)
        return R_EMPTY;
    char *ring = ring_of(bus, q);
    rec_t *r = (rec_t *)(ring + (h & (q->ring_size - 1)));
    if (t - h > 2048) {
        __builtin_prefetch(ring + ((h + 1024) & (q->ring_size - 1)), 0);
        __builtin_prefetch(ring + ((h + 1088) & (q->ring_size - 1)), 0);
    }
    /* acquire: pairs with the publish (release) of the record. */
    uint64_t w = atomic_load_explicit(&r->word0, memory_order_acquire);
    *rp = r;
    *hp = h;
    if ((w >> 32 & 0xff) == ST_CLAIMED && (!check_dead || shk_pid_alive(r->pid)))
        return R_PENDING;
    return R_READY;
}

static void release_head(qslot_t *q, uint64_t h, uint64_t len)
{
    /* release: we are done reading the bytes producers may now reuse. */
    atomic_store_explicit(&q->head, h + len, memory_order_release);
}

/* Take the record at the head (R_READY). Returns 1 if it was an alert. */
static int take_one(shk_bus_t *bus, qslot_t *q, rec_t *r, uint64_t h)
{
    uint64_t w = atomic_load_explicit(&r->word0, memory_order_acquire);
    uint64_t len = w & 0xffffffffu;
    unsigned st = (unsigned)(w >> 32 & 0xff);
    char name[SHK_BUS_NAME_MAX + 1];

    if (len < 8 || len > q->ring_size) {
        /* never written this way by a producer: the queue is damaged; drop
         * everything queued rather than read garbage */
        shk_log(SHK_LOG_ERR, "bus queue %d: damaged record header %#llx; dropping the queue",
                bus->slot, (unsigned long long)w);
        atomic_store_explicit(&q->head, atomic_load_explicit(&q->tail, memory_order_acquire),
                              memory_order_release);
        return 0;
    }
    if (st == ST_PAD) {
        release_head(q, h, len);
        return 0;
    }
    uint64_t blob = 0;
    if (r->flags & RF_LARGE)
        memcpy(&blob, (char *)(r + 1) + r->name_len, 8);
    cons_count(&q->deq, 1);
    if (st != ST_PUBLISHED) {
        /* a producer died between claim and publish */
        shk_log(SHK_LOG_WARN, "bus: skipping an alert left unfinished by dead process %d",
                (int)r->pid);
        cons_count(&q->skipped, 1);
        release_head(q, h, len);
        if (blob)
            blob_unref(bus, blob, 1);
        return 0;
    }
    memcpy(name, r + 1, r->name_len);
    name[r->name_len] = '\0';
    const void *data = (char *)(r + 1) + r->name_len;
    size_t dlen = (size_t)r->data_len;
    if (blob) {
        blob_t *bl = shk_slab_ptr(bus->slab, blob);
        data = bl ? (const void *)(bl + 1) : "";
        dlen = bl ? (size_t)bl->len : 0;
    }
    if (r->gen < atomic_load_explicit(&q->generation, memory_order_relaxed))
        cons_count(&q->stale, 1);
    cons_count(&q->received, 1);
    /* the handler found last time first: a queue mostly carries one name */
    handler_t *hd = NULL;
    if (bus->last_h < bus->nh && strcmp(bus->h[bus->last_h].name, name) == 0)
        hd = &bus->h[bus->last_h];
    for (size_t i = 0; !hd && i < bus->nh; i++)
        if (strcmp(bus->h[i].name, name) == 0) {
            hd = &bus->h[i];
            bus->last_h = i;
        }
    if (hd) {
        bus->sender = r->pid;
        bus->in_handler = 1;
        hd->fn(bus, name, dlen ? data : "", dlen, hd->ctx);
        bus->in_handler = 0;
        bus->sender = 0;
    } else {
        cons_count(&q->discarded, 1);
    }
    release_head(q, h, len);
    if (blob)
        blob_unref(bus, blob, 1);
    return 1;
}

static void drain_pipe(int fd)
{
    char c[64];
    while (read(fd, c, sizeof c) > 0)
        ;
}

#define SPIN_MIN_US 2u
#define SPIN_MAX_US 64u

/* Before announcing sleep, poll the queue for `us` microseconds (only with
 * more than one CPU): under load the next alert is usually that close, and
 * catching it here saves both sides a system call. The queue is looked at
 * about once a microsecond, not in a tight loop: every look pulls cache lines
 * the producer is writing. 1 if something is ready. */
static int spin_for_work(shk_bus_t *bus, qslot_t *q, unsigned us)
{
    rec_t *r;
    uint64_t h;
    if (shk_ncpu() < 2)
        return 0;
    for (unsigned i = 0, n = us * shk_spin_per_us(); i < n; i++) {
        if (i % 64 == 63 && head_state(bus, q, &r, &h, 0) == R_READY)
            return 1;
        shk_cpu_relax();
    }
    return 0;
}

/* Take back an announced sleep: if a producer got to `sleeping` first (its
 * exchange returned 1), its byte is in the pipe or on its way: note it. */
static void unannounce(shk_bus_t *bus, qslot_t *q)
{
    if (!bus->announced)
        return;
    bus->announced = 0;
    /* relaxed load: a 0 means a producer exchanged it (only producers clear
     * it while we are announced). seq_cst exchange: exactly one of us and
     * the producers turns the 1 into 0, and only that one may ring. */
    if (atomic_load_explicit(&q->sleeping, memory_order_relaxed) == 0 ||
        atomic_exchange_explicit(&q->sleeping, 0, memory_order_seq_cst) == 0)
        bus->bell = 1;
}

/* Announce sleep; returns 1 if the caller may sleep, 0 if something is ready
 * (the announcement is taken back then). */
static int prepare_sleep(shk_bus_t *bus, qslot_t *q)
{
    rec_t *r;
    uint64_t h;
    if (bus->announced) {
        /* Announced earlier (end of dispatch, then shk_bus_wait): if the
         * flag is still up, that store and its fence already precede the
         * look below; if a producer took it, it rang: nothing to wait for.
         * relaxed load: it orders nothing, it only reads which case this is
         * (a producer's exchange racing with it is the first case's ring). */
        if (atomic_load_explicit(&q->sleeping, memory_order_relaxed) == 0) {
            unannounce(bus, q);
            return 0;
        }
    } else {
        atomic_store_explicit(&q->sleeping, 1, memory_order_seq_cst);
        bus->announced = 1;
        /* seq_cst fence: the store above before the loads below (protocol). */
        atomic_thread_fence(memory_order_seq_cst);
    }
    if (head_state(bus, q, &r, &h, 1) != R_READY)
        return 1;
    unannounce(bus, q);
    return 0;
}

int shk_bus_dispatch(shk_bus_t *bus, unsigned budget)
{
    qslot_t *q;
    int n = 0;
    if (!bus || my_slot(bus) < 0)
        return shk_error(SHK_EPERM, "shk_bus_dispatch: not joined");
    if (bus->in_dispatch)
        return shk_error(SHK_EBUSY, "shk_bus_dispatch called from a handler");
    if (!budget)
        budget = 64;
    q = &bus->b->slots[bus->slot];
    bus->in_dispatch = 1;
    /* We are awake. The doorbell is drained after the handlers, not before:
     * a wake-up's alert is handled one system call sooner, and under load
     * (no byte was written) there is no read() at all. */
    unannounce(bus, q);
    int sampled = 0, looked = 0;
    for (;;) {
        rec_t *r;
        uint64_t h;
        /* Caught up, after taking something, with the tail we last read: do
         * not read it again at once but after the spin's first pause, so that
         * a busy producer writes a few records undisturbed and we take them
         * in one go (each look pulls the tail's line and the newest record's
         * line from it). The first look of a dispatch is immediate: a woken
         * consumer has been woken for something. (relaxed load of head: only
         * we write it.) */
        int st = looked && atomic_load_explicit(&q->head, memory_order_relaxed) == bus->tail_seen
                     ? R_EMPTY
                     : head_state(bus, q, &r, &h, 0);
        looked = 1;
        if (st != R_READY) {
            /* a record being written is usually published within the spin */
            if (spin_for_work(bus, q, SPIN_MIN_US))
                continue;
            /* nothing after the spin: look again, and if the head is still
             * being written, ask whether its producer is gone */
            st = head_state(bus, q, &r, &h, 1);
        }
        if (st == R_READY) {
            if ((unsigned)n >= budget) {
                /* more to do: come back through the event loop */
                ssize_t w = write(bus->fds[bus->slot][1], "!", 1);
                (void)w;
                bus->bell = 1;
                break;
            }
            n += take_one(bus, q, r, h);
            if (!sampled) {
                /* high-water mark, sampled once per dispatch, after the first
                 * record (relaxed: statistics; `enq` is on the producers'
                 * line, a miss that should not delay a woken consumer's
                 * first handler) */
                uint64_t depth = atomic_load_explicit(&q->enq, memory_order_relaxed) -
                                 atomic_load_explicit(&q->deq, memory_order_relaxed) + 1;
                if (depth < (1ULL << 62) &&
                    depth > atomic_load_explicit(&q->high, memory_order_relaxed))
                    atomic_store_explicit(&q->high, depth, memory_order_relaxed);
                sampled = 1;
            }
            continue;
        }
        /* Drain before announcing sleep (a byte written after the
         * announcement must stay). Also when this round took nothing: we
         * were woken for no alert (a reap, or a byte for the slot's previous
         * owner), and a byte left there would wake the event loop forever. */
        if (bus->bell || n == 0) {
            drain_pipe(bus->fds[bus->slot][0]);
            bus->bell = 0;
        }
        if (prepare_sleep(bus, q))
            break;
    }
    bus->in_dispatch = 0;
    return n;
}

int shk_bus_wait(shk_bus_t *bus, int timeout_ms)
{
    qslot_t *q;
    struct pollfd p;
    if (!bus || my_slot(bus) < 0)
        return shk_error(SHK_EPERM, "shk_bus_wait: not joined");
    q = &bus->b->slots[bus->slot];
    /* The spin before sleeping here adapts: it doubles (up to SPIN_MAX_US)
     * each time work came during it, and halves (down to SPIN_MIN_US) each
     * time none did. Under a steady stream it stays long, so producers do not
     * ring (a doorbell costs the producer a write() that can outlast a short
     * spin and send the consumer back to sleep: one ring per few alerts);
     * an idle worker soon spins 2 us only. shk_bus_dispatch spins 2 us at
     * most: it must return to its event loop. */
    unsigned us = bus->spin_us ? bus->spin_us : SPIN_MIN_US;
    if (timeout_ms != 0) {
        int got = spin_for_work(bus, q, us);
        bus->spin_us = got ? (us * 2 > SPIN_MAX_US ? SPIN_MAX_US : us * 2)
                           : (us / 2 < SPIN_MIN_US ? SPIN_MIN_US : us / 2);
        if (got)
            return 1;
    }
    if (!prepare_sleep(bus, q))
        return 1;
    p.fd = bus->fds[bus->slot][0];
    p.events = POLLIN;
    int rc = poll(&p, 1, timeout_ms);
    if (rc < 0 && errno != EINTR)
        return shk_error_sys("poll");
    return rc > 0 ? 1 : 0;
}

/* ---- death ------------------------------------------------------------------------------------ */

static void purge(shk_bus_t *bus, unsigned i)
{
    qslot_t *q = &bus->b->slots[i];
    int rc = shk_shmtx_lock(&bus->claim[i]);
    if (rc != SHK_OK && rc != SHK_EOWNERDEAD)
        return;
    for (unsigned guard = 0; guard < 1u << 24; guard++) {
        rec_t *r;
        uint64_t h;
        if (head_state(bus, q, &r, &h, 1) != R_READY)
            break;
        uint64_t w = atomic_load_explicit(&r->word0, memory_order_acquire);
        uint64_t len = w & 0xffffffffu;
        if (len < 8 || len > q->ring_size)
            break;
        if ((w >> 32 & 0xff) != ST_PAD) {
            uint64_t blob = 0;
            if (r->flags & RF_LARGE)
                memcpy(&blob, (char *)(r + 1) + r->name_len, 8);
            if (blob)
                blob_unref(bus, blob, 1);
            cons_count(&q->deq, 1);
        }
        release_head(q, h, len);
    }
    shk_shmtx_unlock(&bus->claim[i]);
}

int shk_bus_reap(shk_bus_t *bus, pid_t pid)
{
    int found = -1;
    if (!bus || pid <= 0)
        return shk_error(SHK_EINVAL, "shk_bus_reap: bad argument");
    for (unsigned i = 0; i < bus->b->nslots; i++) {
        qslot_t *q = &bus->b->slots[i];
        if (shk_shmtx_force_unlock(&bus->claim[i], pid))
            shk_log(SHK_LOG_WARN, "bus queue %u was being written by %d when it died", i,
                    (int)pid);
        if (atomic_load_explicit(&q->pid, memory_order_acquire) == pid) {
            atomic_store_explicit(&q->state, SHK_BUS_SLOT_FREE, memory_order_release);
            found = (int)i;
        }
    }
    if (found >= 0 && bus->policy == SHK_BUS_PURGE)
        purge(bus, (unsigned)found);
    /* A record the dead process claimed but never published may now be at
     * the head of a sleeping worker's queue: wake them all to skip it. */
    for (unsigned i = 0; !bus->nopipes && i < bus->b->nslots; i++)
        if (atomic_load_explicit(&bus->b->slots[i].state, memory_order_acquire) ==
            SHK_BUS_SLOT_JOINED) {
            ssize_t w = write(bus->fds[i][1], "!", 1);
            (void)w;
        }
    if (found < 0)
        return shk_error(SHK_ESRCH, "pid %d holds no bus slot", (int)pid);
    return SHK_OK;
}

int shk_bus_set_policy(shk_bus_t *bus, int policy)
{
    if (!bus || (policy != SHK_BUS_KEEP && policy != SHK_BUS_PURGE))
        return shk_error(SHK_EINVAL, "invalid bus policy %d", policy);
    bus->policy = policy;
    return SHK_OK;
}

void shk_bus_set_claim_hook(shk_bus_t *bus, void (*fn)(void *ctx), void *ctx)
{
    if (!bus)
        return;
    bus->claim_hook = fn;
    bus->claim_ctx = ctx;
}

int shk_bus_stats(shk_bus_t *bus, shk_bus_stats_t *st)
{
    if (!bus || !st)
        return shk_error(SHK_EINVAL, "NULL argument");
    memset(st, 0, sizeof *st);
    st->nslots = bus->b->nslots;
    st->large = atomic_load_explicit(&bus->b->large, memory_order_relaxed);
    uint64_t now = coarse_ns();
    for (unsigned i = 0; i < st->nslots; i++) {
        qslot_t *q = &bus->b->slots[i];
        shk_bus_slot_stats_t *s = &st->slot[i];
        /* relaxed everywhere: a snapshot of independent counters */
        s->pid = atomic_load_explicit(&q->pid, memory_order_relaxed);
        s->state = (int)atomic_load_explicit(&q->state, memory_order_relaxed);
        s->generation = atomic_load_explicit(&q->generation, memory_order_relaxed);
        uint64_t enq = atomic_load_explicit(&q->enq, memory_order_relaxed);
        uint64_t deq = atomic_load_explicit(&q->deq, memory_order_relaxed);
        s->depth = enq > deq ? enq - deq : 0;
        s->high_water = atomic_load_explicit(&q->high, memory_order_relaxed);
        s->queue_bytes = q->ring_size;
        s->sent = atomic_load_explicit(&q->sent, memory_order_relaxed);
        s->received = atomic_load_explicit(&q->received, memory_order_relaxed);
        s->discarded = atomic_load_explicit(&q->discarded, memory_order_relaxed);
        s->rejected = atomic_load_explicit(&q->rejected, memory_order_relaxed);
        s->skipped = atomic_load_explicit(&q->skipped, memory_order_relaxed);
        s->stale = atomic_load_explicit(&q->stale, memory_order_relaxed);
        s->rung = atomic_load_explicit(&q->rung, memory_order_relaxed);
        /* every queued alert either rang or did not: no counter of its own,
         * so the common path makes no locked add for it */
        s->coalesced = enq > s->rung ? enq - s->rung : 0;
        uint64_t h = atomic_load_explicit(&q->head, memory_order_acquire);
        uint64_t t = atomic_load_explicit(&q->tail, memory_order_acquire);
        if (h != t) {
            const rec_t *r = (const rec_t *)(ring_of(bus, q) + (h & (q->ring_size - 1)));
            uint64_t w = atomic_load_explicit(&((rec_t *)r)->word0, memory_order_acquire);
            if ((w >> 32 & 0xff) != ST_PAD && r->enq_ns && r->enq_ns <= now)
                s->oldest_age_us = (now - r->enq_ns) / 1000;
        }
    }
    return SHK_OK;
}
