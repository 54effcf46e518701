/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * gen_zone_corpus.c: writes the seed corpus of the zone fuzz target
 * (fuzz_zone.c): real named zones of 8 to 16 pages made through the API
 * (empty; a data root, locks and allocations; a bus; a full lock table and
 * every root; a process cache and a held lock; a zone kept over two
 * reloads), each dumped byte for byte into OUTDIR/<name>.zone, and its
 * header's pages alone into OUTDIR/<name>.hdr, with the instance field set
 * to "fuzz" (the target puts its own instance there) and the zone name "z". Run by fuzz/gen_zone_corpus.sh; the images are
 * committed, so this runs only when the layout changes.
 */
#include "shk_zone_internal.h"
#include "shmkit.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char instance[32];
static const char *outdir;

static void die(const char *what)
{
    fprintf(stderr, "gen_zone_corpus: %s: %s\n", what, shk_last_errmsg());
    exit(1);
}

static shk_zones_t *make(size_t pages, shk_zone_t **z)
{
    shk_zones_t *reg = shk_zones_new(instance);
    if (!reg)
        die("registry");
    *z = shk_zone_add(reg, "z", pages * (size_t)sysconf(_SC_PAGESIZE), "seed");
    if (!*z || shk_zone_set_kind(*z, SHK_ZONE_NAMED, 0) != SHK_OK)
        die("declare");
    return reg;
}

static void dump(const char *name)
{
    char path[256], out[512];
    snprintf(path, sizeof path, "/dev/shm/shmkit.%s.z", instance);
    int fd = open(path, O_RDONLY);
    off_t n = fd >= 0 ? lseek(fd, 0, SEEK_END) : -1;
    char *buf = n > 0 ? malloc((size_t)n) : NULL;
    if (!buf || pread(fd, buf, (size_t)n, 0) != n) {
        perror(path);
        exit(1);
    }
    close(fd);
    shk_zone_hdr_t *h = (shk_zone_hdr_t *)buf;
    memset(h->instance, 0, sizeof h->instance);
    strcpy(h->instance, "fuzz");
    snprintf(out, sizeof out, "%s/%s.zone", outdir, name);
    FILE *f = fopen(out, "wb");
    if (!f || fwrite(buf, 1, (size_t)n, f) != (size_t)n || fclose(f) != 0) {
        perror(out);
        exit(1);
    }
    printf("%s: %lld bytes\n", out, (long long)n);
    /* and the header's pages alone, which the target extends to the size
     * they record (what default fuzzing mutates) */
    size_t hb = SHK_ALIGN_UP(sizeof(shk_zone_hdr_t), (size_t)sysconf(_SC_PAGESIZE));
    snprintf(out, sizeof out, "%s/%s.hdr", outdir, name);
    f = fopen(out, "wb");
    if (!f || fwrite(buf, 1, hb, f) != hb || fclose(f) != 0) {
        perror(out);
        exit(1);
    }
    free(buf);
}

static void lock_named(shk_zone_t *z, const char *name, int hold)
{
    shk_shmtx_t m;
    if (shk_zone_shmtx_create(z, &m, name) != SHK_OK)
        die(name);
    if (hold && shk_shmtx_lock(&m) != SHK_OK)
        die("lock");
}

int main(int argc, char **argv)
{
    shk_zones_t *reg;
    shk_zone_t *z;
    shk_slab_t *s;

    if (argc != 2) {
        fprintf(stderr, "usage: gen_zone_corpus OUTDIR\n");
        return 2;
    }
    outdir = argv[1];
    snprintf(instance, sizeof instance, "fzgen%ld", (long)getpid());

    /* the smallest zone, nothing in it */
    reg = make(SHK_ZONE_MIN_PAGES, &z);
    if (shk_zones_create(reg, NULL) != SHK_OK)
        die("create");
    dump("min_empty");
    shk_zones_free(reg);

    /* a data root, locks, allocations of several sizes, one freed */
    reg = make(12, &z);
    if (shk_zones_create(reg, NULL) != SHK_OK)
        die("create");
    s = shk_zone_slab(z);
    if (shk_zone_set_data(z, shk_slab_calloc(s, 64)) != SHK_OK)
        die("data");
    lock_named(z, "alpha", 0);
    lock_named(z, "beta", 0);
    size_t sizes[] = {8, 16, 100, 1000, 3000, 5000};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
        if (!shk_slab_alloc(s, sizes[i]))
            die("alloc");
    shk_slab_free(s, shk_slab_alloc(s, 200));
    dump("p12_data_locks");
    shk_zones_free(reg);

    /* a bus */
    reg = make(16, &z);
    if (shk_zones_create(reg, NULL) != SHK_OK)
        die("create");
    shk_bus_t *bus = shk_bus_create(z, 2, 4096);
    if (!bus)
        die("bus");
    if (shk_bus_join(bus, 0) != SHK_OK)
        die("join");
    if (shk_bus_send(bus, getpid(), "seed", "hello", 5) < 0)
        die("send");
    dump("p16_bus");
    shk_bus_close(bus);
    shk_zones_free(reg);

    /* every lock table entry and every root */
    reg = make(16, &z);
    if (shk_zones_create(reg, NULL) != SHK_OK)
        die("create");
    s = shk_zone_slab(z);
    for (int i = 1; i < SHK_ZONE_MAX_LOCKS; i++) {
        char name[16];
        snprintf(name, sizeof name, "l%02d", i);
        lock_named(z, name, 0);
    }
    for (int i = 0; i < SHK_ZONE_ROOTS; i++) {
        char key[16];
        snprintf(key, sizeof key, "root%d", i);
        if (shk_zone_root_set(z, key, shk_slab_calloc(s, 32)) != SHK_OK)
            die("root");
    }
    dump("p16_full_tables");
    shk_zones_free(reg);

    /* a process cache holding free chunks, and a lock held by its creator */
    reg = make(16, &z);
    if (shk_zones_create(reg, NULL) != SHK_OK)
        die("create");
    s = shk_zone_slab(z);
    if (shk_slab_cache(s, 1) != SHK_OK)
        die("cache");
    for (int i = 0; i < 8; i++)
        shk_slab_free(s, shk_slab_alloc(s, 48));
    lock_named(z, "held", 1);
    dump("p16_cache_held");
    shk_slab_cache(s, 0);
    shk_zones_free(reg);

    /* kept over two reloads: generation 3 */
    shk_zones_t *r1 = make(8, &z);
    if (shk_zones_create(r1, NULL) != SHK_OK)
        die("create");
    shk_zones_t *r2 = make(8, &z);
    if (shk_zones_create(r2, r1) != SHK_OK)
        die("reload");
    shk_zones_free(r1);
    shk_zones_t *r3 = make(8, &z);
    if (shk_zones_create(r3, r2) != SHK_OK)
        die("reload");
    shk_zones_free(r2);
    dump("p8_generation3");
    shk_zones_free(r3);
    return 0;
}
