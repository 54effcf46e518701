/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * gen_slab_corpus.c: writes the seed corpus of the slab fuzz target
 * (fuzz_slab.c): real pools of 6 to 16 pages made through the API, each
 * dumped byte for byte into OUTDIR/<name>.slab: an empty pool; chunks of
 * every size class; page runs with free runs between them; a process
 * cache with parked chunks (a child that exits without closing, so its
 * slot stays); the same pool after the repair; one left in the middle of
 * an operation (busy). Run by fuzz/gen_slab_corpus.sh; the images are
 * committed, so this runs only when the layout changes.
 */
#include "shk_slab_internal.h"
#include "shmkit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *outdir;
static size_t ps;

static void die(const char *what)
{
    fprintf(stderr, "gen_slab_corpus: %s: %s\n", what, shk_last_errmsg());
    exit(1);
}

static shk_slab_t *make(void *mem, size_t pages)
{
    shk_slab_t *s;
    memset(mem, 0, pages * ps);
    if (shk_slab_init(&s, mem, pages * ps, "seed") != SHK_OK)
        die("init");
    return s;
}

static void dump(const void *mem, size_t pages, const char *name)
{
    char out[512];
    snprintf(out, sizeof out, "%s/%s.slab", outdir, name);
    FILE *f = fopen(out, "wb");
    if (!f || fwrite(mem, 1, pages * ps, f) != pages * ps || fclose(f) != 0) {
        perror(out);
        exit(1);
    }
}

static void *must(void *p)
{
    if (!p)
        die("alloc");
    return p;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: gen_slab_corpus OUTDIR\n");
        return 2;
    }
    outdir = argv[1];
    ps = (size_t)sysconf(_SC_PAGESIZE);
    char *mem = mmap(NULL, 64 * ps, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED)
        die("mmap");
    shk_slab_t *s;
    size_t minp = shk_slab_min_size() / ps;

    s = make(mem, minp);
    dump(mem, minp, "min_empty");
    shk_slab_close(s);

    /* one chunk of every class (16 pages: the slabs of the large classes
     * take several each) */
    s = make(mem, 16);
    for (unsigned c = 0; c < 12; c++)
        must(shk_slab_alloc(s, shk_slab_class_size(c)));
    dump(mem, 16, "p16_classes_small");
    shk_slab_close(s);
    s = make(mem, 16);
    for (unsigned c = 12; c < 24; c += 2)
        if (!shk_slab_alloc(s, shk_slab_class_size(c)))
            break;
    dump(mem, 16, "p16_classes_large");
    shk_slab_close(s);

    /* page runs with free runs between them */
    s = make(mem, 12);
    void *r[4];
    for (int i = 0; i < 4; i++)
        r[i] = must(shk_slab_alloc(s, (size_t)(i + 1) * 3000));
    shk_slab_free(s, r[1]);
    shk_slab_free(s, r[3]);
    dump(mem, 12, "p12_runs");
    shk_slab_close(s);

    /* a dead process's cache with parked chunks */
    s = make(mem, 16);
    must(shk_slab_alloc(s, 64));
    pid_t pid = fork();
    if (pid == 0) {
        void *b[6];
        if (shk_slab_cache(s, 1) != SHK_OK)
            _exit(1);
        for (int i = 0; i < 6; i++)
            if (!(b[i] = shk_slab_alloc(s, i % 2 ? 2048 : 1000)))
                _exit(1);
        for (int i = 0; i < 6; i += 2)
            shk_slab_free(s, b[i]);
        _exit(0);
    }
    int st;
    if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st))
        die("child");
    dump(mem, 16, "p16_cache_dead_owner");
    if (shk_slab_lock(s) != SHK_OK || shk_slab_repair_locked(s) < 0)
        die("repair");
    shk_slab_unlock(s);
    dump(mem, 16, "p16_cache_repaired");
    shk_slab_reap(s, pid);
    dump(mem, 16, "p16_cache_reaped");
    shk_slab_close(s);

    /* in the middle of an operation: marked busy, naming a chunk */
    s = make(mem, 8);
    char *c = must(shk_slab_alloc(s, 200));
    must(shk_slab_alloc(s, 5000));
    SHK_WRITE_ONCE(s->p->busy, SLAB_MARK(SLAB_OP_FREE, c - mem));
    dump(mem, 8, "p8_busy");
    shk_slab_close(s);
    return 0;
}
