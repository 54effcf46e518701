/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * fuzz_slab.c: a slab pool made of arbitrary bytes, as a process that did
 * not create a pool finds one in a mapping. The input, rounded up to whole
 * pages (zeros after it; at least the smallest pool, at most
 * FUZZ_SLAB_MAX_PAGES), is copied into a page-aligned mapping with no
 * access on either side, so any read or write outside the pool faults.
 * Read-only (the mapping too): open, the stats, every class's stats, the
 * check, shk_slab_usable on offsets across the pool. Then read-write: open,
 * the repair (the lock word is cleared first: a lock held by some live pid
 * would be waited for, which is the lock's business, not the pool's; and
 * cache owners are made dead ones, as a live owner's magazines are its
 * own), after which the check must pass; the reap of a dead owner's
 * cache, maybe a cache of our own, a few allocations and frees, after
 * which it must pass again. Properties: open fails with SHK_ECORRUPT and a
 * message or succeeds; no figure lies outside what the handle knows; every
 * usable size stays inside the pool; the repair makes any bytes a sound
 * pool; never a crash, a hang or a leak.
 *
 * Seeds: fuzz/corpus/slab/, real pools of 6 to 16 pages (empty; chunks of
 * every class; page runs; a dead process's cache, then repaired, then
 * reaped; one left busy in the middle of a free), made by
 * fuzz/gen_slab_corpus.sh. fuzz/regress/slab/: what this target found
 * (a dead owner's parked chunk whose tag was overwritten, kept by the
 * repair; a free-list bit past the pool's pages taken for a run).
 */
#include "fuzz.h"
#include "shk_slab_internal.h"
#include "shmkit.h"

#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define FUZZ_SLAB_MAX_PAGES 16

static void quiet(void *ctx, int level, const char *msg)
{
    (void)ctx, (void)level, (void)msg; /* refusals and repairs are the point */
}

static void read_only(void *pool, size_t size)
{
    shk_slab_t *s;
    shk_slab_stats_t st;
    shk_slab_class_stat_t cs;
    int rc = shk_slab_open(&s, pool, size, SHK_SLAB_RDONLY);
    if (rc != SHK_OK) {
        FUZZ_CHECK(rc == SHK_ECORRUPT && shk_last_errmsg()[0], "open: %d %s", rc,
                   shk_last_errmsg());
        return;
    }
    FUZZ_CHECK(shk_slab_stats(s, &st) == SHK_OK, "stats");
    FUZZ_CHECK(st.pages_free <= st.pages_total && st.largest_free_run <= st.pages_total &&
                   st.caches <= SLAB_NCACHE && st.nclasses == SLAB_NCLASS,
               "stats out of bounds: %zu/%zu free, run %zu, %u caches", st.pages_free,
               st.pages_total, st.largest_free_run, st.caches);
    unsigned n = 0;
    for (unsigned i = 0; shk_slab_class_stats(s, i, &cs) == SHK_OK; i++, n++)
        FUZZ_CHECK(cs.size == shk_slab_class_size(i) && cs.cached <= (uint64_t)SLAB_NCACHE * 256,
                   "class %u: size %zu, %llu cached", i, cs.size, (unsigned long long)cs.cached);
    FUZZ_CHECK(n == st.nclasses, "%u classes", n);
    rc = shk_slab_check(s);
    FUZZ_CHECK(rc == SHK_OK || (rc == SHK_ECORRUPT && shk_last_errmsg()[0]), "check: %d", rc);
    for (size_t off = 0; off < size; off += 16) {
        char *p = (char *)pool + off + (off / 16 % 7 == 3); /* some not aligned */
        size_t u = shk_slab_usable(s, p);
        FUZZ_CHECK(!u || (size_t)(p - (char *)pool) + u <= size, "usable %zu at %zu", u, off);
    }
    shk_slab_close(s);
}

static void read_write(void *pool, size_t size, const uint8_t *data, size_t len)
{
    shk_slab_t *s;
    void *b[8] = {0};
    if (shk_slab_open(&s, pool, size, 0) != SHK_OK)
        return;
    int sound = shk_slab_check(s) == SHK_OK;
    FUZZ_CHECK(shk_slab_lock(s) == SHK_OK, "lock: %s", shk_last_errmsg());
    FUZZ_CHECK(shk_slab_repair_locked(s) >= 0, "repair: %s", shk_last_errmsg());
    FUZZ_CHECK(shk_slab_check_locked(s) == SHK_OK, "check after the repair: %s",
               shk_last_errmsg());
    shk_slab_unlock(s);
    (void)sound;
    /* a dead owner's cache given back, and maybe a cache of our own (a
     * claim may take a dead owner's slot over) */
    pid_t dead = (pid_t)SHK_READ_ONCE(s->p->caches[len ? data[0] % SLAB_NCACHE : 0].pid);
    if (dead > 0)
        FUZZ_CHECK(shk_slab_reap(s, dead) >= 0, "reap: %s", shk_last_errmsg());
    if (len > 1 && data[1] & 1)
        FUZZ_CHECK(shk_slab_cache(s, 1) == SHK_OK, "cache");
    /* a few allocations and frees; sizes from the input's last bytes */
    for (unsigned i = 0; i < 8; i++) {
        size_t sz = len > i ? (size_t)data[len - 1 - i] * (i % 3 == 2 ? 97 : 9) + 1 : 100;
        b[i] = i % 2 ? shk_slab_calloc(s, sz) : shk_slab_alloc(s, sz);
        if (b[i])
            FUZZ_CHECK(shk_slab_usable(s, b[i]) >= sz, "usable below %zu", sz);
        if (i % 3 == 1 && b[i - 1]) {
            FUZZ_CHECK(shk_slab_free(s, b[i - 1]) == SHK_OK, "free: %s", shk_last_errmsg());
            b[i - 1] = NULL;
        }
    }
    FUZZ_CHECK(shk_slab_check(s) == SHK_OK, "check after use: %s", shk_last_errmsg());
    for (unsigned i = 0; i < 8; i++)
        FUZZ_CHECK(shk_slab_free(s, b[i]) == SHK_OK, "free: %s", shk_last_errmsg());
    FUZZ_CHECK(shk_slab_check(s) == SHK_OK, "check after the frees: %s", shk_last_errmsg());
    FUZZ_CHECK(shk_slab_cache(s, 0) == SHK_OK, "cache off");
    FUZZ_CHECK(shk_slab_check(s) == SHK_OK, "check without the cache: %s", shk_last_errmsg());
    shk_slab_close(s);
}

SHK_FUZZ_TARGET(slab)
{
    static int init;
    size_t ps = (size_t)sysconf(_SC_PAGESIZE), len = size;
    if (!init) {
        shk_log_set(quiet, NULL, SHK_LOG_ERR);
        init = 1;
    }
    size_t psize = SHK_ALIGN_UP(len ? len : 1, ps);
    if (psize < shk_slab_min_size())
        psize = shk_slab_min_size();
    if (psize > FUZZ_SLAB_MAX_PAGES * ps)
        psize = FUZZ_SLAB_MAX_PAGES * ps;
    if (len > psize)
        len = psize;
    /* the pool between two pages nobody may touch */
    char *m = mmap(NULL, psize + 2 * ps, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    FUZZ_CHECK(m != MAP_FAILED, "mmap");
    char *pool = m + ps;
    FUZZ_CHECK(mprotect(pool, psize, PROT_READ | PROT_WRITE) == 0, "mprotect");
    memcpy(pool, data, len);
    /* the lock word is the lock's: a free lock, whatever the bytes said */
    if (psize >= sizeof(slab_pool_t))
        memset(&((slab_pool_t *)pool)->lock, 0, sizeof(shk_shmtx_sh_t));
    FUZZ_CHECK(mprotect(pool, psize, PROT_READ) == 0, "mprotect");
    read_only(pool, psize);
    FUZZ_CHECK(mprotect(pool, psize, PROT_READ | PROT_WRITE) == 0, "mprotect");
    /* Cache owners made dead: a live owner's magazines are its own (the
     * repair only reads them), and the bytes may name any live pid, ours
     * included. No pid is above 2^22. */
    if (psize >= sizeof(slab_pool_t))
        for (unsigned i = 0; i < SLAB_NCACHE; i++) {
            slab_cslot_t *sl = &((slab_pool_t *)pool)->caches[i];
            uint32_t pid = SHK_READ_ONCE(sl->pid);
            if (pid)
                SHK_WRITE_ONCE(sl->pid, 0x400000u | (pid & 0x3fffffu));
        }
    read_write(pool, psize, data, size);
    munmap(m, psize + 2 * ps);
    return 0;
}
