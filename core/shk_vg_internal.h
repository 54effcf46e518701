/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * shk_vg_internal.h (internal): the one place the library meets valgrind.
 * With <valgrind/memcheck.h> at build time SHK_VG is 1 and client requests
 * are made through SHK_VG_DO, only when running under valgrind (natively a
 * few register instructions); without it SHK_VG is 0, RUNNING_ON_VALGRIND
 * is 0 and SHK_VG_DO compiles to nothing.
 *
 * Why memcheck needs telling: a pool, a tree or a store in a shared zone is
 * written by every process that maps it, but each process's memcheck sees
 * only its own allocations and frees. A block this process freed may be
 * another process's live record by the time this process reads it again, so
 * whatever turns an offset into a view of shared memory marks what it views
 * defined first (shk_slab_ptr for a block, the tree's node accessor).
 */
#ifndef SHK_VG_INTERNAL_H
#define SHK_VG_INTERNAL_H

#include "shk_internal.h"

#if __has_include(<valgrind/memcheck.h>)
#include <valgrind/memcheck.h>
#define SHK_VG 1
/* A valgrind client request, made only under valgrind. */
#define SHK_VG_DO(req)                                                                             \
    do {                                                                                           \
        if (SHK_UNLIKELY(RUNNING_ON_VALGRIND))                                                     \
            req;                                                                                   \
    } while (0)
#else
#define SHK_VG 0
#ifndef RUNNING_ON_VALGRIND
#define RUNNING_ON_VALGRIND 0
#endif
#define SHK_VG_DO(req) ((void)0)
#endif

#endif /* SHK_VG_INTERNAL_H */
