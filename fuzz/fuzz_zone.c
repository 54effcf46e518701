/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * fuzz_zone.c: opening a named zone made of arbitrary bytes, as `shmkit
 * stat` opens one it did not create. The bytes become the object of zone
 * "z" of a per-process instance ("fz<pid>"; an instance field that reads
 * "fuzz", as the seeds' do, is rewritten to it), which is attached
 * read-only; then every read-only accessor runs. Properties: attach
 * succeeds or fails with a status and a message; every pointer an accessor
 * hands out lies inside the mapping, every count within its bound; never a
 * crash, a hang or a leak.
 *
 * An input no longer than the header's pages is the header alone, and the
 * object takes the size it records (object_size), with a sound empty slab
 * pool behind it. Every byte of a longer input is the fuzzer's, the slab
 * pool's included: attach opens the pool (its checks:
 * docs/untrusted-slab.md), and the slab's readers run on it (stats, every
 * class's stats, the check). Built with -DFUZZ_ZONE_DEEP, the bus (open,
 * stats) and the reports (text and JSON) run too: the bus's own fields
 * are checked by its module, whose checks are being hardened separately.
 *
 * Seeds: fuzz/corpus/zone/, real zone images (and their header pages
 * alone) made by fuzz/gen_zone_corpus.sh. fuzz/regress/zone/deep_*: what
 * the deep build found in slab/ when this target was written (a class of
 * chunk size 0, a misaligned cache magazine): pools of an older layout,
 * refused at attach now; fuzz/regress/slab/ has them at the current layout
 * version, which shk_slab_open refuses for their class tables.
 */
#include "fuzz.h"
#include "shk_zone_internal.h"
#include "shmkit.h"

#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define FUZZ_INSTANCE_SEED "fuzz" /* what the seeds' instance field says */

static char instance[32];
static char path[128];

static void quiet(void *ctx, int level, const char *msg)
{
    (void)ctx, (void)level, (void)msg; /* refusals are the point, not news */
}

static void write_all(int fd, const uint8_t *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        FUZZ_CHECK(w > 0, "write");
        p += w;
        n -= (size_t)w;
    }
}

/* How large the object is: the input's size, except that an input no
 * longer than the header's pages stands for the header alone, and the
 * object then takes the size that header records (when that is whole pages
 * of a plausible zone, at most FUZZ_ZONE_MAX_PAGES): so the fuzzer can
 * spend its mutations on the header. */
#define FUZZ_ZONE_MAX_PAGES 64

static size_t object_size(const uint8_t *data, size_t size, size_t ps, size_t hdr_bytes)
{
    uint64_t rec;
    if (size > hdr_bytes || size < offsetof(shk_zone_hdr_t, size) + sizeof rec)
        return size;
    memcpy(&rec, data + offsetof(shk_zone_hdr_t, size), sizeof rec);
    if (rec % ps || rec <= hdr_bytes || rec > (uint64_t)FUZZ_ZONE_MAX_PAGES * ps)
        return size;
    return (size_t)rec;
}

/* The object's bytes: the input (then zeros up to object_size), with the
 * seeds' instance made ours, and behind a header alone a fresh pool. */
static void make_object(const uint8_t *data, size_t size)
{
    size_t ps = (size_t)sysconf(_SC_PAGESIZE);
    size_t hdr_bytes = SHK_ALIGN_UP(sizeof(shk_zone_hdr_t), ps);
    size_t ioff = offsetof(shk_zone_hdr_t, instance), ilen = SHK_ZONE_NAME_MAX + 1;
    size_t osize = object_size(data, size, ps, hdr_bytes);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
    FUZZ_CHECK(fd >= 0, "open %s", path);
    write_all(fd, data, size);
    FUZZ_CHECK(ftruncate(fd, (off_t)osize) == 0, "ftruncate");
    if (size >= ioff + ilen &&
        memcmp(data + ioff, FUZZ_INSTANCE_SEED, sizeof FUZZ_INSTANCE_SEED) == 0) {
        char f[SHK_ZONE_NAME_MAX + 1] = {0};
        strcpy(f, instance);
        FUZZ_CHECK(pwrite(fd, f, ilen, (off_t)ioff) == (ssize_t)ilen, "pwrite");
    }
    /* a header alone has no pool bytes: it gets a sound empty pool, so its
     * mutations reach the accessors */
    if (size <= hdr_bytes && osize % ps == 0 && osize > hdr_bytes + shk_slab_min_size()) {
        char *base = mmap(NULL, osize, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        shk_slab_t *s;
        FUZZ_CHECK(base != MAP_FAILED, "mmap");
        FUZZ_CHECK(shk_slab_init(&s, base + hdr_bytes, osize - hdr_bytes, SHK_ZONE_SLAB_LOCK) ==
                       SHK_OK,
                   "slab init: %s", shk_last_errmsg());
        shk_slab_close(s);
        munmap(base, osize);
    }
    close(fd);
}

static void in_mapping(const shk_zone_t *z, const void *p, size_t len, const char *what)
{
    const char *b = shk_zone_base(z);
    FUZZ_CHECK(!p || ((const char *)p >= b && (size_t)((const char *)p - b) + len <= shk_zone_size(z)),
               "%s %p outside [%p, +%zu)", what, p, (const void *)b, shk_zone_size(z));
}

static void read_zone(shk_zone_t *z)
{
    static const char *const keys[] = {"bus", "", "x", "bus2"};
    FUZZ_CHECK(strcmp(shk_zone_name(z), "z") == 0, "name \"%s\"", shk_zone_name(z));
    FUZZ_CHECK(strlen(shk_zone_tag(z)) <= SHK_ZONE_TAG_MAX, "tag");
    FUZZ_CHECK(shk_zone_rdonly(z) == 1 && shk_zone_kind(z) == SHK_ZONE_NAMED, "flags");
    FUZZ_CHECK(shk_zone_generation(z) >= 1 && shk_zone_creator(z) > 0, "generation, creator");
    in_mapping(z, shk_zone_data(z), 1, "data");
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        in_mapping(z, shk_zone_root(z, keys[i]), 1, keys[i]);
    unsigned n = shk_zone_locks(z);
    FUZZ_CHECK(n <= SHK_ZONE_MAX_LOCKS, "%u locks", n);
    for (unsigned i = 0; i <= n; i++) {
        shk_zone_lock_t li;
        int rc = shk_zone_lock_info(z, i, &li);
        FUZZ_CHECK(rc == SHK_OK || rc == SHK_ECORRUPT || (rc == SHK_ENOENT && i == n),
                   "lock %u: %d %s", i, rc, shk_last_errmsg());
        if (rc == SHK_OK)
            FUZZ_CHECK(memchr(li.name, 0, sizeof li.name), "lock %u name", i);
    }
    shk_slab_t *slab = shk_zone_slab(z);
    shk_slab_stats_t st;
    shk_slab_class_stat_t cs;
    FUZZ_CHECK(shk_slab_stats(slab, &st) == SHK_OK, "slab stats: %s", shk_last_errmsg());
    FUZZ_CHECK(st.pages_free <= st.pages_total && st.largest_free_run <= st.pages_total &&
                   st.caches <= 128 && (size_t)st.pages_total * st.page_size <= shk_zone_size(z),
               "slab stats out of bounds: %zu/%zu pages free, run %zu, %u caches", st.pages_free,
               st.pages_total, st.largest_free_run, st.caches);
    unsigned nc = 0;
    while (shk_slab_class_stats(slab, nc, &cs) == SHK_OK)
        nc++;
    FUZZ_CHECK(nc == st.nclasses, "%u classes of %u", nc, st.nclasses);
    int rc = shk_slab_check(slab);
    FUZZ_CHECK(rc == SHK_OK || (rc == SHK_ECORRUPT && shk_last_errmsg()[0]), "slab check: %d", rc);
#ifdef FUZZ_ZONE_DEEP
    shk_bus_t *bus = shk_bus_open(z, SHK_ZONE_RDONLY);
    if (bus) {
        shk_bus_stats_t *bs = malloc(sizeof *bs);
        FUZZ_CHECK(bs, "malloc");
        (void)shk_bus_stats(bus, bs);
        free(bs);
        shk_bus_close(bus);
    }
    for (unsigned flags = 0; flags <= SHK_STAT_JSON; flags += SHK_STAT_JSON) {
        char *out = shk_stat_render(&z, 1, instance, flags);
        FUZZ_CHECK(out, "render: %s", shk_last_errmsg());
        free(out);
    }
#endif
}

SHK_FUZZ_TARGET(zone)
{
    if (!instance[0]) {
        snprintf(instance, sizeof instance, "fz%ld", (long)getpid());
        snprintf(path, sizeof path, "/dev/shm/shmkit.%s.z", instance);
        shk_log_set(quiet, NULL, SHK_LOG_ERR);
    }
    make_object(data, size);
    shk_zone_t *z = shk_zone_attach(instance, "z", SHK_ZONE_RDONLY);
    if (getenv("FUZZ_ZONE_SAY")) /* which inputs attach, when looking at a corpus */
        fprintf(stderr, "fuzz_zone: %zu bytes: %s\n", size, z ? "attached" : shk_last_errmsg());
    if (z) {
        read_zone(z);
        shk_zone_detach(z);
    } else {
        FUZZ_CHECK(shk_last_error() < 0 && shk_last_errmsg()[0], "attach failed without a reason");
    }
    unlink(path);
    return 0;
}
