/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * fuzz_bus.c: a consumer's dispatch on a queue whose bytes lie. A real bus
 * (two slots, 16 KiB queues, large alerts from 4 KiB) is built once in an
 * anonymous zone, and this process joins slot 0. Each input first has
 * shk_bus_send write a real queue (small alerts of several names, large
 * ones unicast or broadcast, from a base position the input chooses, so
 * padding records come too), then lies about it: head and tail moved by a
 * few bytes or set to anything, and patches of fuzz bytes written over the
 * ring (record headers included) or over the first large alert's block.
 * Then it dispatches with a budget and reads the stats.
 *
 * Input: [0] small alerts (low 4 bits), [1] large ones (low 2 bits), [2]
 * flags (1: the large ones broadcast, 2: head and tail from [8..23]), [3]
 * budget, [4..5] base position in 64-byte units, [6], [7] head and tail
 * moved by that many 8-byte steps (signed), [8..15], [16..23] head and
 * tail, then patches: target (0 the ring, at the base position; 1 the
 * first listed block), 16-bit offset, length, bytes. The seed corpus
 * (fuzz/corpus/bus/) holds real queues: inputs with no lie at all.
 *
 * Properties: never a crash or a hang; every handler's data lies inside
 * the zone; the slab pool checks sound and logs no bad free after every
 * input; and when only the queue lied (not a block), once the queue is
 * emptied every large alert's block is back in the slab.
 */
#include "fuzz.h"
#include "shmkit.h"

#include "shk_bus_internal.h"

#include <string.h>
#include <unistd.h>

#define QUEUE (16u * 1024)

static shk_zones_t *reg;
static shk_zone_t *zone;
static shk_bus_t *bus;
static size_t baseline; /* free pages of the slab with the bus and no alert */
static const char *zbase;
static size_t zsize;
static int slab_errors;
static volatile unsigned touched;

static void on_log(void *ctx, int level, const char *msg)
{
    (void)ctx;
    if (level == SHK_LOG_ERR && strstr(msg, "slab pool") && !strstr(msg, "out of memory"))
        slab_errors++;
}

static void on_alert(shk_bus_t *b, const char *name, const void *data, size_t len, void *ctx)
{
    (void)b, (void)ctx;
    FUZZ_CHECK(strlen(name) >= 1 && strlen(name) <= SHK_BUS_NAME_MAX, "name of %zu bytes",
               strlen(name));
    if (!len)
        return;
    const char *d = data;
    FUZZ_CHECK(d >= zbase && len <= zsize && d - zbase <= (ptrdiff_t)(zsize - len),
               "data %p + %zu outside the zone %p + %zu", data, len, (const void *)zbase, zsize);
    unsigned sum = 0;
    for (size_t i = 0; i < len; i += 61)
        sum += (unsigned char)d[i];
    sum += (unsigned char)d[len - 1];
    touched += sum; /* every line read, not optimised away */
}

static void setup(void)
{
    static const char *const names[] = {"a", "b", "cc", "ddd", "e"};
    shk_slab_stats_t st;
    reg = shk_zones_new(NULL);
    zone = shk_zone_add(reg, "fuzzbus", 2u << 20, "fuzz");
    FUZZ_CHECK(zone && shk_zones_create(reg, NULL) == SHK_OK, "zone: %s", shk_last_errmsg());
    bus = shk_bus_create(zone, 2, QUEUE);
    FUZZ_CHECK(bus, "bus: %s", shk_last_errmsg());
    FUZZ_CHECK(shk_bus_join(bus, 0) == SHK_OK, "join: %s", shk_last_errmsg());
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        shk_bus_on(bus, names[i], on_alert, NULL);
    zbase = shk_zone_base(zone);
    zsize = shk_zone_size(zone);
    shk_slab_stats(shk_zone_slab(zone), &st);
    baseline = st.pages_free;
}

static void teardown(void)
{
    shk_bus_close(bus);
    shk_zones_free(reg);
    bus = NULL;
}

static uint64_t get64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

SHK_FUZZ_TARGET(bus)
{
    static const char *const names[] = {"a", "b", "cc", "ddd", "e"};
    static uint8_t payload[8192];
    uint8_t c[24] = {0};
    memcpy(c, data, size < sizeof c ? size : sizeof c);
    if (!bus) {
        for (size_t i = 0; i < sizeof payload; i++)
            payload[i] = (uint8_t)(i * 7 + 3);
        setup();
    }
    shk_log_set(on_log, NULL, SHK_LOG_ERR);
    slab_errors = 0;

    bus_hdr_t *b = bus->b;
    bus_queue_t *q = &b->slots[0];
    char *ring = bus->rings[0];
    /* a clean start whatever came before: empty queue, zeroed ring, ids
     * from 1, so that an input always means the same */
    uint64_t base = (uint64_t)(c[4] | c[5] << 8) * BUS_REC_ALIGN;
    memset(ring, 0, QUEUE);
    b->blob_seq = 0;
    atomic_store(&q->head, base);
    atomic_store(&q->tail, base);
    bus->tail_seen = base;
    for (unsigned i = 0; i < sizeof bus->head_seen / sizeof bus->head_seen[0]; i++)
        bus->head_seen[i] = 0;

    /* the real queue */
    unsigned nsmall = c[0] & 15, nlarge = c[1] & 3;
    for (unsigned i = 0; i < nsmall; i++)
        shk_bus_send(bus, getpid(), names[i % 5], payload, (i * 37u + c[3]) % 300);
    for (unsigned i = 0; i < nlarge; i++) {
        size_t len = 4096 + i * 1000;
        if (c[2] & 1)
            shk_bus_broadcast(bus, names[i % 5], payload, len, NULL);
        else
            shk_bus_send(bus, getpid(), names[i % 5], payload, len);
    }
    uint64_t real_tail = atomic_load(&q->tail);

    /* the lies */
    if (c[2] & 2) {
        atomic_store(&q->head, get64(c + 8));
        atomic_store(&q->tail, get64(c + 16));
    } else {
        atomic_store(&q->head, base + (uint64_t)(int64_t)(int8_t)c[6] * 8);
        atomic_store(&q->tail, real_tail + (uint64_t)(int64_t)(int8_t)c[7] * 8);
    }
    int block_lied = 0;
    for (size_t off = sizeof c; off + 4 <= size;) {
        unsigned target = data[off] & 1, at = data[off + 1] | data[off + 2] << 8;
        size_t n = data[off + 3];
        off += 4;
        if (n > size - off)
            n = size - off;
        if (target == 0) {
            size_t pos = (base + at) & (QUEUE - 1), room = QUEUE - pos;
            memcpy(ring + pos, data + off, n < room ? n : room);
        } else {
            bus_blob_t *bl = shk_slab_ptr(bus->slab, atomic_load(&b->blobs));
            size_t hdr = 64 + 8 * 2;
            if (bl && at < hdr) {
                memcpy((char *)bl + at, data + off, n < hdr - at ? n : hdr - at);
                block_lied = 1;
            }
        }
        off += n;
    }

    unsigned budget = 1 + c[3] % 64;
    for (int k = 0; k < 4; k++)
        if (shk_bus_dispatch(bus, budget) <= 0)
            break;
    shk_bus_stats_t st;
    shk_bus_slot_stats_t qs;
    FUZZ_CHECK(shk_bus_stats(bus, &st) == SHK_OK, "stats");
    FUZZ_CHECK(shk_bus_slot_stats(bus, 0, &qs) == SHK_OK, "slot stats");
    FUZZ_CHECK(shk_bus_slot_stats(bus, 1, &qs) == SHK_OK, "slot stats");

    /* empty the queues past every position used, and free what nobody holds */
    uint64_t end = SHK_ALIGN_UP(real_tail + 4 * QUEUE, (uint64_t)BUS_REC_ALIGN);
    for (unsigned i = 0; i < 2; i++) {
        atomic_store(&b->slots[i].head, end);
        atomic_store(&b->slots[i].tail, end);
    }
    bus->tail_seen = end;
    shk_bus_blob_sweep(bus, 0, -1);

    shk_slab_t *slab = shk_zone_slab(zone);
    FUZZ_CHECK(shk_slab_check(slab) == SHK_OK, "slab: %s", shk_last_errmsg());
    FUZZ_CHECK(slab_errors == 0, "the slab logged %d bad frees", slab_errors);
    shk_slab_stats_t ss;
    shk_slab_stats(slab, &ss);
    FUZZ_CHECK(shk_bus_stats(bus, &st) == SHK_OK, "stats");
    if (!block_lied) {
        FUZZ_CHECK(ss.pages_free == baseline, "%zu pages of blocks lost", baseline - ss.pages_free);
        FUZZ_CHECK(st.large_live == 0, "%llu blocks still listed",
                   (unsigned long long)st.large_live);
    } else if (ss.pages_free != baseline || st.large_live != 0) {
        teardown(); /* a block that lied may stay: start over with a new bus */
    }
    shk_log_set(NULL, NULL, SHK_LOG_ERR);
    return 0;
}
