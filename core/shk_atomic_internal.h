/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * shk_atomic_internal.h: the library's whole vocabulary for memory shared
 * between processes. Internal; never installed.
 *
 * Every shared field that more than one process touches without a lock is
 * declared _Atomic and reached only through these macros, so each access
 * says what it is. The words, weakest first:
 *
 *   SHK_READ_ONCE(x)            a relaxed load: a snapshot, a hint, or a
 *                               value the caller validates (counters, stats,
 *                               a lock word it is about to CAS)
 *   SHK_WRITE_ONCE(x, v)        a relaxed store: the value alone matters,
 *                               nothing else is published with it
 *   SHK_ADD_SOLE(x, n)          an add by the field's only writer (a lock's
 *                               holder, a queue's consumer): a relaxed load
 *                               and store, no locked instruction
 *   SHK_ADD_RELAXED(x, n)       an add by any of several writers (fetch-add,
 *                               relaxed): counters nobody orders on
 *   SHK_LOAD_ACQUIRE(x)         the reader's half of a publication: what the
 *                               writer wrote before its release is visible
 *   SHK_STORE_RELEASE(x, v)     the writer's half: everything written before
 *                               it is visible to an acquire load that sees v
 *   SHK_LOAD_SC / SHK_STORE_SC  seq_cst, for Dekker pairs (store mine, load
 *                               yours) where both sides must not miss each
 *                               other: the shmtx waiters, the bus doorbell
 *
 * Read-modify-writes take their order explicitly (SHK_FETCH_ADD,
 * SHK_FETCH_SUB, SHK_XCHG, SHK_CAS), because each call site must say which
 * one it needs and why. The comment beside every use says why its order is
 * enough; this file only gives the words.
 *
 * A layout header in shared memory (zone, slab pool, bus) is published the
 * same way everywhere: every field is written, then the magic is stored
 * with SHK_STORE_RELEASE; a reader loads the magic with SHK_LOAD_ACQUIRE
 * before it trusts any other field (shk_layout_check in shk_internal.h).
 */
#ifndef SHK_ATOMIC_INTERNAL_H
#define SHK_ATOMIC_INTERNAL_H

#include <stdatomic.h>

#define SHK_READ_ONCE(x) atomic_load_explicit(&(x), memory_order_relaxed)
#define SHK_WRITE_ONCE(x, v) atomic_store_explicit(&(x), (v), memory_order_relaxed)
#define SHK_ADD_SOLE(x, n)                                                                         \
    atomic_store_explicit(&(x), atomic_load_explicit(&(x), memory_order_relaxed) + (n),            \
                          memory_order_relaxed)
#define SHK_ADD_RELAXED(x, n) ((void)atomic_fetch_add_explicit(&(x), (n), memory_order_relaxed))

#define SHK_LOAD_ACQUIRE(x) atomic_load_explicit(&(x), memory_order_acquire)
#define SHK_STORE_RELEASE(x, v) atomic_store_explicit(&(x), (v), memory_order_release)
#define SHK_LOAD_SC(x) atomic_load_explicit(&(x), memory_order_seq_cst)
#define SHK_STORE_SC(x, v) atomic_store_explicit(&(x), (v), memory_order_seq_cst)

#define SHK_FETCH_ADD(x, n, mo) atomic_fetch_add_explicit(&(x), (n), memory_order_##mo)
#define SHK_FETCH_SUB(x, n, mo) atomic_fetch_sub_explicit(&(x), (n), memory_order_##mo)
#define SHK_XCHG(x, v, mo) atomic_exchange_explicit(&(x), (v), memory_order_##mo)
/* Strong CAS; *expp receives the value found when it fails. */
#define SHK_CAS(x, expp, v, mo_ok, mo_fail)                                                        \
    atomic_compare_exchange_strong_explicit(&(x), (expp), (v), memory_order_##mo_ok,               \
                                            memory_order_##mo_fail)
#define SHK_FENCE(mo) atomic_thread_fence(memory_order_##mo)
/* A compiler-only fence (no instruction): keeps this thread's stores in
 * program order as another process would see them if this one were killed
 * right here (the slab's crash-consistency order, docs/failure.md). */
#define SHK_KILL_ORDER() atomic_signal_fence(memory_order_seq_cst)

#endif /* SHK_ATOMIC_INTERNAL_H */
