/*
 * shk_bus_create.c: a bus's life in a process: creating it in a zone (the
 * header, its slot table and one ring per slot from the zone's slab, one
 * pipe per slot), the zone size a bus of a given shape needs, opening the
 * bus of an attached zone (every field of the header checked before it is
 * used), closing a handle, and a worker joining its slot.
 */
#include "shk_bus_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>

/* The ring size shk_bus_create makes of queue_bytes: the next power of two,
 * at least BUS_QUEUE_MIN; 0 when queue_bytes is 0 or above BUS_QUEUE_MAX. */
static uint64_t queue_size(size_t queue_bytes)
{
    uint64_t p = BUS_QUEUE_MIN;
    if (queue_bytes == 0 || (uint64_t)queue_bytes > BUS_QUEUE_MAX)
        return 0;
    while (p < queue_bytes)
        p <<= 1;
    return p;
}

/* Bytes of the bus header's block: whole pages, so the slab serves it as a
 * page run (page-aligned, docs/slab.md: requests above 2048 bytes), which
 * the slot table's 64-byte alignment needs and shk_bus_zone_size counts. */
static uint64_t hdr_block(unsigned slots)
{
    uint64_t ps = shk_page_size();
    return SHK_ALIGN_UP(shk_bus_hdr_bytes(slots), ps);
}

static shk_bus_t *shk_bus_handle_new(shk_zone_t *zone)
{
    shk_bus_t *bus = calloc(1, sizeof *bus);
    if (!bus) {
        shk_error(SHK_ENOMEM, "out of memory");
        return NULL;
    }
    bus->zone = zone;
    bus->slab = shk_zone_slab(zone);
    bus->slab_size = shk_slab_size(bus->slab);
    bus->slot = -1;
    return bus;
}

size_t shk_bus_zone_size(unsigned slots, size_t queue_bytes)
{
    uint64_t ps = shk_page_size(), qb = queue_size(queue_bytes), pages, need;
    if (slots == 0 || slots > SHK_BUS_MAX_SLOTS || qb == 0)
        return 0;
    /* Slab pages the bus takes: its header's page run, then one run per
     * ring (rings are page runs too: at least 4 KiB, above 2048 bytes). */
    pages = hdr_block(slots) / ps + (uint64_t)slots * ((qb + ps - 1) / ps);
    /* The zone: one page of zone header (docs/zones.md); the slab pool: its
     * header, which shk_slab_min_size() bounds (the smallest pool is its
     * header and 5 pages), one 64-byte descriptor per page in whole pages,
     * and the pages (docs/slab.md). A fresh pool serves the runs one after
     * the other, so nothing is lost between them. */
    need = ps + shk_slab_min_size() + SHK_ALIGN_UP(pages * 64, ps) + pages * ps;
    if (need < (uint64_t)SHK_ZONE_MIN_PAGES * ps)
        need = (uint64_t)SHK_ZONE_MIN_PAGES * ps;
    return need > SIZE_MAX ? 0 : (size_t)need;
}

shk_bus_t *shk_bus_create(shk_zone_t *zone, unsigned slots, size_t queue_bytes)
{
    shk_bus_t *bus;
    shk_slab_t *slab;
    bus_hdr_t *b;
    uint64_t qb;
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
    qb = queue_size(queue_bytes);
    if (!qb) {
        shk_error(SHK_EINVAL, "bus queue of %zu bytes: must be 1 byte to 2 GiB", queue_bytes);
        return NULL;
    }
    bus = shk_bus_handle_new(zone);
    if (!bus)
        return NULL;
    slab = bus->slab;
    b = shk_slab_calloc(slab, (size_t)hdr_block(slots));
    if (!b) {
        shk_error(SHK_ENOMEM, "zone \"%s\" has no room for a bus of %u slots",
                  shk_zone_name(zone), slots);
        free(bus);
        return NULL;
    }
    if ((uintptr_t)b % 64) { /* the slab promises page runs; check it, cheaply */
        shk_error(SHK_ECORRUPT, "zone \"%s\": the slab gave the bus an unaligned block",
                  shk_zone_name(zone));
        shk_slab_free(slab, b);
        free(bus);
        return NULL;
    }
    b->version = BUS_VERSION;
    b->nslots = slots;
    b->size = shk_bus_hdr_bytes(slots);
    b->queue_bytes = qb;
    b->large_min = qb / 4;
    bus->b = b;
    bus->nslots = slots;
    bus->qsize = qb;
    bus->large_min = qb / 4;
    bus->fds = calloc(slots, sizeof *bus->fds);
    if (!bus->fds) {
        shk_error(SHK_ENOMEM, "out of memory");
        goto fail;
    }
    for (unsigned i = 0; i < slots; i++)
        bus->fds[i][0] = bus->fds[i][1] = -1;
    for (unsigned i = 0; i < slots; i++) {
        bus_queue_t *q = &b->slots[i];
        void *ring = shk_slab_calloc(slab, (size_t)qb);
        if (!ring) {
            shk_error(SHK_ENOMEM, "zone \"%s\" has no room for %u bus queues of %llu bytes",
                      shk_zone_name(zone), slots, (unsigned long long)qb);
            goto fail;
        }
        q->ring_off = shk_slab_off(slab, ring);
        q->ring_size = qb;
        /* relaxed: nobody else sees the bus before the magic's release */
        SHK_WRITE_ONCE(q->sleeping, 0);
        if (pipe2(bus->fds[i], O_NONBLOCK | O_CLOEXEC) != 0) {
            shk_error_sys("pipe2");
            goto fail;
        }
        char name[24];
        snprintf(name, sizeof name, "bus.q%u", i);
        shk_shmtx_create(&bus->claim[i], &q->claim, name);
        bus->rings[i] = ring;
    }
    /* Publish last: release, so that shk_bus_open, which acquires the
     * magic, sees every field above. */
    SHK_STORE_RELEASE(b->magic, BUS_MAGIC);
    if ((rc = shk_zone_root_set(zone, "bus", b)) != SHK_OK) {
        shk_error(rc, "zone \"%s\": recording the bus: %s", shk_zone_name(zone),
                  shk_last_errmsg());
        goto fail;
    }
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
    shk_slab_free(slab, b);
    free(bus);
    return NULL;
}

shk_bus_t *shk_bus_open(shk_zone_t *zone, unsigned flags)
{
    bus_hdr_t *b;
    shk_bus_t *bus;
    const char *zn;
    uint64_t room, qb, slab_size;
    unsigned n;
    if (!zone) {
        shk_error(SHK_EINVAL, "NULL zone");
        return NULL;
    }
    zn = shk_zone_name(zone);
    b = shk_zone_root(zone, "bus");
    if (!b) {
        shk_error(SHK_ENOENT, "zone \"%s\" has no bus", zn);
        return NULL;
    }
    /* the root lies inside the slab (shk_zone_root checks it) */
    slab_size = shk_slab_size(shk_zone_slab(zone));
    room = slab_size - shk_slab_off(shk_zone_slab(zone), b);
    if (room < sizeof *b) {
        shk_error(SHK_ECORRUPT, "bus \"%s\": header cut off by the end of the zone", zn);
        return NULL;
    }
    /* acquire: pairs with the creator's release; then the rest is complete */
    uint64_t magic = SHK_LOAD_ACQUIRE(b->magic);
    n = b->nslots;
    if (shk_layout_check("bus", zn, magic, BUS_MAGIC, b->version, BUS_VERSION, b->size,
                         shk_bus_hdr_bytes(n)) != SHK_OK)
        return NULL;
    if (n == 0 || n > SHK_BUS_MAX_SLOTS) {
        shk_error(SHK_ECORRUPT, "bus \"%s\": %u slots (1..%d)", zn, n, SHK_BUS_MAX_SLOTS);
        return NULL;
    }
    if (room < b->size) {
        shk_error(SHK_ECORRUPT, "bus \"%s\": slot table cut off by the end of the zone", zn);
        return NULL;
    }
    qb = b->queue_bytes;
    if (qb < BUS_QUEUE_MIN || qb > BUS_QUEUE_MAX || (qb & (qb - 1)) || b->large_min != qb / 4) {
        shk_error(SHK_ECORRUPT, "bus \"%s\": queue size %llu (large from %llu) is not one "
                  "shk_bus_create makes", zn, (unsigned long long)qb,
                  (unsigned long long)b->large_min);
        return NULL;
    }
    bus = shk_bus_handle_new(zone);
    if (!bus)
        return NULL;
    bus->b = b;
    bus->nslots = n;
    bus->qsize = qb;
    bus->large_min = qb / 4;
    bus->rdonly = (flags & SHK_ZONE_RDONLY) || shk_zone_rdonly(zone);
    bus->nopipes = 1;
    for (unsigned i = 0; i < n; i++) {
        const bus_queue_t *q = &b->slots[i];
        if (q->ring_size != qb || q->ring_off == 0 || q->ring_off % 64 ||
            !shk_span_ok(q->ring_off, q->ring_size, slab_size)) {
            shk_error(SHK_ECORRUPT, "bus \"%s\": queue %u is out of bounds", zn, i);
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
    for (unsigned i = 0; bus->fds && i < bus->nslots; i++) {
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
void shk_bus_prefault(void *p, size_t len)
{
    uintptr_t pg = shk_page_size(), a, e;
    if (!p || !len)
        return;
    a = (uintptr_t)p & ~(pg - 1);
    e = SHK_ALIGN_UP((uintptr_t)p + len, pg);
#ifdef MADV_POPULATE_WRITE
    if (madvise((void *)a, e - a, MADV_POPULATE_WRITE) == 0)
        return;
#endif
    /* older kernels: read a byte of every page (contents unchanged) */
    for (uintptr_t x = a; x < e; x += pg)
        (void)*(volatile const char *)x;
}

int shk_bus_join(shk_bus_t *bus, unsigned slot)
{
    bus_queue_t *q;
    if (!bus || bus->nopipes)
        return shk_error(SHK_EINVAL, "shk_bus_join: no bus, or a bus opened without pipes");
    if (slot >= bus->nslots)
        return shk_error(SHK_EINVAL, "bus slot %u does not exist (%u slots)", slot,
                         bus->nslots);
    if (shk_bus_my_slot(bus) >= 0)
        return shk_error(SHK_EBUSY, "this process already holds bus slot %d", bus->slot);
    q = &bus->b->slots[slot];
    /* acquire: pairs with the previous joiner's release (pid, then state) */
    pid_t cur = SHK_LOAD_ACQUIRE(q->pid);
    if (SHK_LOAD_ACQUIRE(q->state) == SHK_BUS_SLOT_JOINED && cur && cur != SHK_PID() &&
        shk_pid_alive(cur))
        return shk_error(SHK_EBUSY, "bus slot %u is held by live process %d", slot, (int)cur);
    /* Doorbells rung for the previous owner are stale. */
    shk_bus_drain_pipe(bus->fds[slot][0]);
    /* relaxed: the release of pid below publishes it */
    SHK_ADD_RELAXED(q->generation, 1);
    /* release: a sender that sees our pid (acquire) sees the new generation. */
    SHK_STORE_RELEASE(q->pid, (int32_t)SHK_PID());
    SHK_STORE_RELEASE(q->state, SHK_BUS_SLOT_JOINED);
    /* seq_cst: a store of the doorbell flag, which is only ever accessed as
     * one side of the protocol's Dekker pairs (shk_bus_internal.h) */
    SHK_STORE_SC(q->sleeping, 0);
    bus->slot = (int)slot;
    bus->slot_pid = SHK_PID();
    bus->tail_seen = 0;
    bus->announced = bus->bell = 0;
    shk_bus_prefault(shk_bus_ring_of(bus, q), (size_t)bus->qsize);
    return SHK_OK;
}

int shk_bus_slot(const shk_bus_t *bus)
{
    return bus ? shk_bus_my_slot(bus) : -1;
}

int shk_bus_fd(const shk_bus_t *bus)
{
    return bus && shk_bus_my_slot(bus) >= 0 ? bus->fds[bus->slot][0] : -1;
}
