/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * shk_rbtree.h: an intrusive red-black tree whose links are offsets, for
 * shared memory.
 *
 * The caller embeds a shk_rbtree_node_t in its own structure and keeps a
 * shk_rbtree_t (the root and the node count) somewhere in the same shared
 * region. Links are 64-bit offsets from a base address the caller passes to
 * every call (normally the slab pool's base, shk_slab_base()); offset 0 is
 * the nil leaf, so no node may sit at the base itself. Any process may map
 * the region at its own address: nothing in the tree is a pointer.
 *
 * Order: nodes are ordered by their 64-bit `key` first; nodes with equal
 * keys are ordered by the caller's comparator (shk_rbtree_cmp_t), or, when
 * the comparator is NULL, are equal. Equal nodes are allowed: a new node
 * goes after every node equal to it, so a walk meets equal nodes in the
 * order they were inserted, and shk_rbtree_find() returns the first of them.
 * The key is there so that most comparisons are one integer compare with no
 * call through a pointer (a hash for the demo's limiter, the first eight
 * bytes of a name, big-endian, for a store walked in name order), so that a
 * tree of plain integers needs no callback, and so that shk_rbtree_check()
 * can verify the order without trusting a callback with damaged nodes.
 *
 * Searches take a probe: a shk_rbtree_node_t the caller fills in (its `key`)
 * inside a structure of its own type (the fields its comparator reads), for
 * example on the stack. The probe is never linked into the tree.
 *
 * Locking: the tree does not lock. Every call that reads the tree needs the
 * lock that the caller's writers hold (for a slab pool, shk_slab_lock()),
 * except shk_rbtree_check(), which may also be used lock-free on a region
 * mapped read-only: it then reports what it saw, and never loops or reads
 * outside the region whatever it sees. See docs/rbtree.md.
 */
#ifndef SHK_RBTREE_H
#define SHK_RBTREE_H

#include <stddef.h>
#include <stdint.h>

#include "shk_core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Node colours (shk_rbtree_node_t.color). A zero-filled node is black. */
#define SHK_RBTREE_BLACK 0u
#define SHK_RBTREE_RED 1u

/* Depth no valid tree reaches (a red-black tree of n nodes is at most
 * 2 log2(n + 1) deep, and n < 2^64): shk_rbtree_check() stops there. */
#define SHK_RBTREE_MAX_DEPTH 128

/* The links of one node, embedded in the caller's structure (anywhere in it;
 * the comparator finds its structure from the node's address). Set `key`
 * before shk_rbtree_insert(); the tree owns parent, left, right and color
 * while the node is in it. Offsets are from the base of every call; 0 is nil. */
typedef struct shk_rbtree_node_s {
    uint64_t parent;
    uint64_t left;
    uint64_t right;
    uint64_t key;   /* compared first; the caller's */
    uint32_t color; /* SHK_RBTREE_BLACK or SHK_RBTREE_RED */
    uint32_t spare; /* unused by the tree; the caller may keep 32 bits here */
} shk_rbtree_node_t;

/* The tree, in shared memory. All-zero is a valid empty tree. */
typedef struct shk_rbtree_s {
    uint64_t root;  /* offset of the root node, 0 when empty */
    uint64_t count; /* nodes in the tree */
} shk_rbtree_t;

/* Order of two nodes whose keys are equal: negative if a goes before b, 0 if
 * they are equal, positive if a goes after b. `a` may be a probe outside the
 * region; `b` is always a node in the tree. ctx is the caller's, passed
 * through. It must be a consistent total order, and must not change the tree. */
typedef int (*shk_rbtree_cmp_t)(const shk_rbtree_node_t *a, const shk_rbtree_node_t *b, void *ctx);

/* Make `tree` empty. Nodes that were in it are not touched (the caller frees
 * them). Same as zero-filling it. */
SHK_API void shk_rbtree_init(shk_rbtree_t *tree);

/* Link `node` (its key set, the rest of its links the tree's) into `tree`,
 * after every node equal to it under (key, cmp). cmp may be NULL: keys only.
 * The node must lie at a positive offset from `base`, aligned to 8 bytes,
 * and must not already be in a tree. O(log n).
 * Errors: SHK_EINVAL (NULL tree, base or node; node at or before base, or
 * misaligned), the tree unchanged. Locking: the caller's write lock. */
SHK_API int shk_rbtree_insert(shk_rbtree_t *tree, void *base, shk_rbtree_node_t *node,
                              shk_rbtree_cmp_t cmp, void *ctx);

/* Unlink `node`, which must be in `tree`, and zero its links; the memory
 * stays the caller's. O(log n). A node that is not in the tree damages it
 * (shk_rbtree_check() then reports it); the tree does not look for the node
 * first. Errors: SHK_EINVAL (NULL arguments, node at or before base),
 * the tree unchanged. Locking: the caller's write lock. */
SHK_API int shk_rbtree_delete(shk_rbtree_t *tree, void *base, shk_rbtree_node_t *node);

/* The first node equal to `probe` under (key, cmp), or NULL if there is
 * none. cmp may be NULL: keys only. O(log n). NULL arguments give NULL with
 * SHK_EINVAL in shk_last_error(); "not found" records no error.
 * Locking: the caller's lock (read side). */
SHK_API shk_rbtree_node_t *shk_rbtree_find(const shk_rbtree_t *tree, void *base,
                                           const shk_rbtree_node_t *probe, shk_rbtree_cmp_t cmp,
                                           void *ctx);

/* The first node not before `probe` (the first node >= probe) under
 * (key, cmp), or NULL when every node is before it. With a key made of the
 * first bytes of a name and a comparator that compares whole names, the
 * probe of a prefix gives the first name that starts with it; walk on with
 * shk_rbtree_next() while names match. O(log n). Errors and locking as
 * shk_rbtree_find(). */
SHK_API shk_rbtree_node_t *shk_rbtree_lower_bound(const shk_rbtree_t *tree, void *base,
                                                  const shk_rbtree_node_t *probe,
                                                  shk_rbtree_cmp_t cmp, void *ctx);

/* The first (min) and the last (max) node, or NULL when the tree is empty
 * or an argument is NULL. O(log n). Locking: the caller's lock. */
SHK_API shk_rbtree_node_t *shk_rbtree_min(const shk_rbtree_t *tree, void *base);
SHK_API shk_rbtree_node_t *shk_rbtree_max(const shk_rbtree_t *tree, void *base);

/* The node after (next) or before (prev) `node` in the tree's order, or
 * NULL at the end or for NULL arguments. A full walk from min to NULL is
 * O(n); one step is O(log n) at worst. The tree must not change between
 * steps (unlinking the node just visited is fine if its successor was
 * taken first). Locking: the caller's lock, held across the walk. */
SHK_API shk_rbtree_node_t *shk_rbtree_next(void *base, const shk_rbtree_node_t *node);
SHK_API shk_rbtree_node_t *shk_rbtree_prev(void *base, const shk_rbtree_node_t *node);

/* Nodes in the tree (0 for NULL). O(1). Locking: the caller's lock. */
SHK_API uint64_t shk_rbtree_count(const shk_rbtree_t *tree);

/* Verify every invariant of a tree whose nodes lie in [base, base + size):
 * every offset inside the region, 8-byte aligned, with room for a node;
 * colours valid; the root black with no parent; every child's parent link
 * pointing back; no red node with a red child; equal black height on every
 * path; in-order keys non-decreasing, and cmp (when given) never saying a
 * node goes before the one visited before it; depth below
 * SHK_RBTREE_MAX_DEPTH; the number of nodes reached equal to tree->count.
 * cmp is called only with nodes whose links lie inside the region; a
 * comparator that reads more of the caller's structure must check its own
 * bounds (ctx can carry them). Each node is read once into a local copy,
 * every walk is bounded (depth and count), so a damaged tree, or one
 * changed while it is read, is reported, never looped on or read past.
 * Returns SHK_OK, SHK_ECORRUPT with shk_last_errmsg() naming the rule and
 * the node's offset, or SHK_EINVAL for NULL tree or base (that `tree`
 * itself is readable is the caller's to know). O(n).
 * Locking: the caller's lock for an exact answer; without it (a read-only
 * view of a live zone) a concurrent change may be reported as damage. */
SHK_API int shk_rbtree_check(const shk_rbtree_t *tree, const void *base, size_t size,
                             shk_rbtree_cmp_t cmp, void *ctx);

#ifdef __cplusplus
}
#endif

#endif /* SHK_RBTREE_H */
