/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * shk_slab_vg.c: the valgrind glue. When <valgrind/memcheck.h> is present,
 * memcheck sees slab blocks as heap blocks. Because the pool is shared by
 * processes, each process tells memcheck only about the blocks it
 * allocated, kept in a process-local set of offsets: freeing another
 * process's block just makes its memory defined again. A forked child
 * forgets its parent's blocks (they are not its leaks) but keeps them
 * usable; shk_slab_close forgets what is left (it belongs to the pool).
 *
 * Nothing here runs outside valgrind: the callers test RUNNING_ON_VALGRIND
 * first (the inline wrappers in shk_slab_internal.h), and without the
 * header these are stubs.
 */
#include "shk_slab_internal.h"

#include <stdlib.h>

#if SHK_VG

static uint64_t vg_hash(uint64_t k)
{
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdULL;
    k ^= k >> 33;
    return k;
}

static int vg_grow(slab_vgset_t *v)
{
    size_t cap = v->cap ? v->cap * 2 : 1024;
    uint64_t *nk = calloc(cap, sizeof *nk);
    if (!nk)
        return -1;
    for (size_t i = 0; i < v->cap; i++)
        if (v->keys[i] > 1) {
            size_t j = vg_hash(v->keys[i]) & (cap - 1);
            while (nk[j])
                j = (j + 1) & (cap - 1);
            nk[j] = v->keys[i];
        }
    free(v->keys);
    v->keys = nk;
    v->cap = cap;
    v->used = v->n;
    return 0;
}

static void vg_add(slab_vgset_t *v, uint64_t k)
{
    if ((v->used + 1) * 2 > v->cap && vg_grow(v) != 0)
        return;
    size_t j = vg_hash(k) & (v->cap - 1);
    while (v->keys[j] > 1)
        j = (j + 1) & (v->cap - 1);
    if (!v->keys[j])
        v->used++;
    v->keys[j] = k;
    v->n++;
}

static int vg_del(slab_vgset_t *v, uint64_t k)
{
    if (!v->cap)
        return 0;
    size_t j = vg_hash(k) & (v->cap - 1);
    while (v->keys[j]) {
        if (v->keys[j] == k) {
            v->keys[j] = 1;
            v->n--;
            return 1;
        }
        j = (j + 1) & (v->cap - 1);
    }
    return 0;
}

/* The open handles of this process, for the fork handler. Changed only by
 * shk_slab_open/init/close; handles are used by one thread at a time. */
static shk_slab_t *vg_handles;
static int vg_atfork_set;

void shk_slab_vg_forget_all(shk_slab_t *s, int keep_defined)
{
    for (size_t i = 0; i < s->vg.cap; i++)
        if (s->vg.keys[i] > 1) {
            char *b = s->base + s->vg.keys[i];
            size_t n = keep_defined ? shk_slab_usable(s, b) : 0;
            VALGRIND_FREELIKE_BLOCK(b, 0);
            if (n)
                VALGRIND_MAKE_MEM_DEFINED(b, n);
            s->vg.keys[i] = 0;
        }
    s->vg.n = s->vg.used = 0;
}

static void vg_atfork_child(void)
{
    for (shk_slab_t *s = vg_handles; s; s = s->vg_next)
        shk_slab_vg_forget_all(s, 1);
}

void shk_slab_vg_track(shk_slab_t *s)
{
    if (!RUNNING_ON_VALGRIND)
        return;
    if (!vg_atfork_set) {
        pthread_atfork(NULL, NULL, vg_atfork_child);
        vg_atfork_set = 1;
    }
    s->vg_next = vg_handles;
    vg_handles = s;
}

void shk_slab_vg_untrack(shk_slab_t *s)
{
    for (shk_slab_t **pp = &vg_handles; *pp; pp = &(*pp)->vg_next)
        if (*pp == s) {
            *pp = s->vg_next;
            break;
        }
}

void shk_slab_vg_allocated(shk_slab_t *s, void *p, size_t size, int zero)
{
    VALGRIND_MALLOCLIKE_BLOCK(p, size, 0, zero);
    vg_add(&s->vg, (uint64_t)((char *)p - s->base));
}

/* Our own blocks become freed heap blocks; a block another process
 * allocated is simply memory again. */
void shk_slab_vg_freed(shk_slab_t *s, void *p, size_t len)
{
    if (vg_del(&s->vg, (uint64_t)((char *)p - s->base)))
        VALGRIND_FREELIKE_BLOCK(p, 0);
    else
        VALGRIND_MAKE_MEM_DEFINED(p, len);
}

/* The 8 bytes at c, read without changing their state in memcheck's view:
 * 0 when this process sees them as inaccessible (a block it freed). */
int shk_slab_vg_peek_word(const void *c, uint64_t *v)
{
    unsigned char vb[8];
    if (VALGRIND_GET_VBITS(c, vb, 8) != 1)
        return 0;
    VALGRIND_MAKE_MEM_DEFINED(c, 8);
    memcpy(v, c, 8);
    VALGRIND_SET_VBITS(c, vb, 8);
    return 1;
}

#else /* no valgrind header: never called, since RUNNING_ON_VALGRIND is 0 */

void shk_slab_vg_forget_all(shk_slab_t *s, int keep_defined)
{
    (void)s, (void)keep_defined;
}

void shk_slab_vg_track(shk_slab_t *s)
{
    (void)s;
}

void shk_slab_vg_untrack(shk_slab_t *s)
{
    (void)s;
}

void shk_slab_vg_allocated(shk_slab_t *s, void *p, size_t size, int zero)
{
    (void)s, (void)p, (void)size, (void)zero;
}

void shk_slab_vg_freed(shk_slab_t *s, void *p, size_t len)
{
    (void)s, (void)p, (void)len;
}

int shk_slab_vg_peek_word(const void *c, uint64_t *v)
{
    memcpy(v, c, 8);
    return 1;
}

#endif
