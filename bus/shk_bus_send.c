/*
 * shk_bus_send.c: producing. A send finds the receiver's slot, stores a
 * large alert's data once in the zone's slab (a block, copied with streaming
 * stores when it is big), claims space in the
 * receiver's queue under the claim lock, writes the record outside it,
 * publishes it with a release store, and rings the receiver's doorbell only
 * if it announced sleep (the protocol is at the top of shk_bus_internal.h).
 * Broadcast does the same for every joined slot with one block. The blocks
 * themselves (who holds them, when they are freed) are shk_bus_blob.c's.
 */
#include "shk_bus_internal.h"

#include <stdlib.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

static int find_slot(const shk_bus_t *bus, pid_t pid)
{
    for (unsigned i = 0; i < bus->nslots; i++) {
        const bus_queue_t *q = &bus->b->slots[i];
        /* acquire: pairs with shk_bus_join's releases, so the slot's new
         * generation is visible to the enqueue that follows */
        if (SHK_LOAD_ACQUIRE(q->pid) == pid && SHK_LOAD_ACQUIRE(q->state) == SHK_BUS_SLOT_JOINED)
            return (int)i;
    }
    return -1;
}

static void ring_doorbell(shk_bus_t *bus, unsigned i)
{
    bus_queue_t *q = &bus->b->slots[i];
    /* seq_cst fence: orders the publish before the load of `sleeping` (see
     * the protocol in shk_bus_internal.h). The load itself may be relaxed:
     * the fence orders it, and a 1 is confirmed by the exchange. seq_cst
     * exchange: exactly one of the producers and the consumer turns the 1
     * into 0, and only that one rings. */
    SHK_FENCE(seq_cst);
    if (SHK_READ_ONCE(q->sleeping) && SHK_XCHG(q->sleeping, 0, seq_cst) == 1) {
        ssize_t w = write(bus->fds[i][1], "!", 1);
        (void)w; /* EAGAIN: the pipe is full, a wake-up is pending anyway */
        /* relaxed: a statistics counter several producers add to */
        SHK_ADD_RELAXED(q->rung, 1);
    }
}

/* Claim, write and publish one record in slot i's queue. For a large alert
 * `bl` (at blob_off) holds the data, and slot i is its k-th target: the
 * record's position goes into the block before the record can be seen, so
 * the block always says where its records are (shk_bus_blob.c). */
static int enqueue(shk_bus_t *bus, unsigned i, const char *name, size_t nl, const void *data,
                   size_t len, bus_blob_t *bl, uint64_t blob_off, unsigned k)
{
    bus_queue_t *q = &bus->b->slots[i];
    uint64_t size = bus->qsize, body = bl ? BUS_LARGE_BODY : len;
    uint64_t need = SHK_ALIGN_UP(BUS_REC_HDR + nl + body, (uint64_t)BUS_REC_ALIGN);
    char *ring = shk_bus_ring_of(bus, q);
    int rc;

    if (need > size)
        return shk_error(SHK_EINVAL, "alert of %zu bytes does not fit a bus queue", len);
    rc = shk_shmtx_lock(&bus->claim[i]);
    if (!shk_shmtx_held(rc))
        return rc;
    /* relaxed: tail is written only under the claim lock, which we hold */
    uint64_t t = SHK_READ_ONCE(q->tail);
    if (SHK_UNLIKELY(t % BUS_REC_ALIGN)) {
        /* every claim moves tail by a multiple of 64: a damaged queue, whose
         * records we would write across the ring's end */
        shk_shmtx_unlock(&bus->claim[i]);
        return shk_error(SHK_ECORRUPT, "the bus queue of slot %u is damaged: tail %llu is not a "
                         "multiple of 64", i, (unsigned long long)t);
    }
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
        head = bus->head_seen[i] = SHK_LOAD_ACQUIRE(q->head);
    if (t + pad + need - head > size) {
        shk_shmtx_unlock(&bus->claim[i]);
        /* relaxed: a statistics counter several producers add to */
        SHK_ADD_RELAXED(q->rejected, 1);
        /* relaxed: the pid only names the queue in the message */
        return shk_error(SHK_EAGAIN, "the bus queue of pid %d is full", (int)SHK_READ_ONCE(q->pid));
    }
    if (pad) {
        bus_rec_t *pr = (bus_rec_t *)(ring + pos);
        /* relaxed: the release of tail below publishes it */
        SHK_WRITE_ONCE(pr->word0, ((uint64_t)BUS_ST_PAD << 32) | pad);
        pos = 0;
    }
    bus_rec_t *r = (bus_rec_t *)(ring + pos);
    for (uint64_t o = 0; o < need; o += 64)
        shk_bus_prefetch_w(ring + ((pos + 4096 + o) & (size - 1)));
    r->pid = (int32_t)SHK_PID();
    r->slot = shk_bus_my_slot(bus);
    /* relaxed: find_slot's acquire of the pid made the joiner's generation
     * visible; a join racing with this send may be missed either way */
    r->gen = SHK_READ_ONCE(q->generation);
    r->enq_ns = shk_bus_coarse_ns();
    r->name_len = (uint32_t)nl;
    r->flags = bl ? BUS_RF_LARGE : 0;
    r->data_len = len;
    if (bl) {
        memcpy((char *)(r + 1) + nl, &blob_off, 8);
        memcpy((char *)(r + 1) + nl + 8, &bl->id, 8);
        /* relaxed: the release of tail below publishes it to this queue's
         * consumer; to everyone else the seal does (shk_bus_blob.c) */
        SHK_WRITE_ONCE(bl->pos[k], t + pad);
    }
    /* relaxed: the release of tail below publishes it */
    SHK_WRITE_ONCE(r->word0, ((uint64_t)BUS_ST_CLAIMED << 32) | need);
    /* release: the padding and the claimed header (with our pid) are visible
     * to a consumer that acquires the new tail. */
    SHK_STORE_RELEASE(q->tail, t + pad + need);
    /* sole writer: enq is written under the claim lock only */
    SHK_ADD_SOLE(q->enq, 1);
    shk_shmtx_unlock(&bus->claim[i]);

    if (bus->claim_hook)
        bus->claim_hook(bus->claim_ctx);
    memcpy(r + 1, name, nl);
    if (!bl && len)
        memcpy((char *)(r + 1) + nl, data, len);
    /* release: name and data are visible before the record is seen as
     * published (the consumer acquires word0). */
    SHK_STORE_RELEASE(r->word0, ((uint64_t)BUS_ST_PUBLISHED << 32) | need);
    ring_doorbell(bus, i);
    return SHK_OK;
}

void shk_bus_set_claim_hook(shk_bus_t *bus, void (*fn)(void *ctx), void *ctx)
{
    if (!bus)
        return;
    bus->claim_hook = fn;
    bus->claim_ctx = ctx;
}

void shk_bus_set_step_hook(shk_bus_t *bus, void (*fn)(void *ctx, int step), void *ctx)
{
    if (!bus)
        return;
    bus->step_hook = fn;
    bus->step_ctx = ctx;
}

/* ---- large alerts ------------------------------------------------------------------- */

/* A block on zone pages this process has not touched yet would take a page
 * fault per 4 KiB inside the copy; one madvise() maps them all, unless the
 * process has mapped every page of the block before (bus->mapped). */
static void prefault_blob(shk_bus_t *bus, void *p, size_t len)
{
    size_t pg = shk_page_size();
    char *base = shk_slab_base(bus->slab);
    if ((char *)p < base) {
        shk_bus_prefault(p, len);
        return;
    }
    size_t first = (size_t)((char *)p - base) / pg;
    size_t last = (size_t)((char *)p + len - 1 - base) / pg;
    if (bus->mapped_pid != SHK_PID() || !bus->mapped) {
        size_t n = shk_slab_size(bus->slab) / pg + 1;
        free(bus->mapped);
        bus->mapped = calloc((n + 63) / 64, sizeof *bus->mapped);
        bus->mapped_pages = bus->mapped ? n : 0;
        bus->mapped_pid = SHK_PID();
    }
    if (last >= bus->mapped_pages) {
        shk_bus_prefault(p, len);
        return;
    }
    size_t i = first;
    while (i <= last && (bus->mapped[i / 64] >> (i % 64) & 1))
        i++;
    if (i > last)
        return;
    shk_bus_prefault(p, len);
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

/* A block for a large alert to the slots of `targets`, its data copied in;
 * held by us until shk_bus_blob_seal. NULL when the zone has no room. */
static bus_blob_t *blob_new(shk_bus_t *bus, const void *data, size_t len, uint64_t targets,
                            uint64_t *off)
{
    bus_blob_t *bl = shk_bus_blob_new(bus, len, targets, off);
    if (!bl)
        return NULL;
    char *dst = (char *)bl + shk_bus_blob_hdr((unsigned)__builtin_popcountll(targets));
    if (len >= 64 * 1024)
        prefault_blob(bus, dst, len);
    blob_copy(dst, data, len);
    SHK_BUS_STEP(bus, SHK_BUS_STEP_BLOB);
    return bl;
}

/* ---- send, broadcast ------------------------------------------------------------------ */

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
    size_t nl = 0;
    int rc, i;
    uint64_t blob = 0;
    bus_blob_t *bl = NULL;
    if ((rc = can_send(bus)) != SHK_OK || (rc = shk_bus_check_args(name, data, len, &nl)) != SHK_OK)
        return rc;
    i = pid > 0 ? find_slot(bus, pid) : -1;
    if (i < 0)
        return shk_error(SHK_ESRCH, "pid %d is not a worker on this bus", (int)pid);
    if (len >= bus->large_min && !(bl = blob_new(bus, data, len, 1ULL << i, &blob)))
        return shk_last_error();
    rc = enqueue(bus, (unsigned)i, name, nl, data, len, bl, blob, 0);
    if (bl) {
        if (rc != SHK_OK)
            SHK_WRITE_ONCE(bl->pos[0], BUS_POS_NONE); /* relaxed: the seal publishes it */
        SHK_BUS_STEP(bus, SHK_BUS_STEP_SENT);
        shk_bus_blob_seal(bus, bl, blob);
    }
    if (rc == SHK_OK && shk_bus_my_slot(bus) >= 0)
        SHK_ADD_SOLE(bus->b->slots[bus->slot].sent, 1); /* only the slot's holder writes it */
    return rc;
}

int shk_bus_broadcast(shk_bus_t *bus, const char *name, const void *data, size_t len,
                      shk_bus_bcast_t *res)
{
    shk_bus_bcast_t r = {0};
    size_t nl = 0;
    int rc;
    uint64_t blob = 0;
    uint64_t targets = 0;
    bus_blob_t *bl = NULL;

    if (res)
        memset(res, 0, sizeof *res);
    if ((rc = can_send(bus)) != SHK_OK || (rc = shk_bus_check_args(name, data, len, &nl)) != SHK_OK)
        return rc;
    for (unsigned i = 0; i < bus->nslots; i++)
        /* acquire: as in find_slot */
        if (SHK_LOAD_ACQUIRE(bus->b->slots[i].state) == SHK_BUS_SLOT_JOINED) {
            targets |= 1ULL << i;
            r.targets++;
        }
    if (r.targets && len >= bus->large_min && !(bl = blob_new(bus, data, len, targets, &blob)))
        return shk_last_error();
    for (unsigned i = 0, k = 0; i < bus->nslots; i++) {
        if (!(targets >> i & 1))
            continue;
        rc = enqueue(bus, i, name, nl, data, len, bl, blob, k);
        if (rc == SHK_OK) {
            r.delivered++;
            r.took |= 1ULL << i;
            if (bl)
                SHK_BUS_STEP(bus, SHK_BUS_STEP_FANOUT);
        } else {
            r.failed |= 1ULL << i;
            if (!r.error)
                r.error = rc;
            if (bl)
                SHK_WRITE_ONCE(bl->pos[k], BUS_POS_NONE); /* relaxed: the seal publishes it */
        }
        k++;
    }
    if (bl) {
        SHK_BUS_STEP(bus, SHK_BUS_STEP_SENT);
        shk_bus_blob_seal(bus, bl, blob);
    }
    if (r.delivered && shk_bus_my_slot(bus) >= 0)
        SHK_ADD_SOLE(bus->b->slots[bus->slot].sent, r.delivered); /* only the holder writes it */
    if (res)
        *res = r;
    if (r.error)
        return shk_error(r.error, "broadcast reached %u of %u workers (last failure: %s)",
                         r.delivered, r.targets, shk_last_errmsg());
    return SHK_OK;
}
