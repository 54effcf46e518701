/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * shk_rbtree.c: the offset-linked red-black tree: insertion and deletion
 * with their rebalancing, searches, ordered steps, and the bounded check.
 *
 * Each rebalancing case exists once, written for a direction `d` (0 = left,
 * 1 = right) and its mirror !d, instead of twice with left and right
 * swapped. Rules kept after every public call (shk_rbtree_check verifies
 * them): the root is black; a red node has black children (nil is black);
 * every path from a node down to nil crosses the same number of black
 * nodes; an in-order walk is sorted by (key, cmp), equal nodes in insertion
 * order.
 */
#include "shk_rbtree.h"
#include "shk_internal.h"
#include "shk_vg_internal.h"

#include <stdalign.h>

typedef shk_rbtree_node_t node_t;

/* Every node is reached through here. Under valgrind the node is made
 * defined first: another process may have allocated and linked it where
 * this process's memcheck still sees a block it freed (shk_vg_internal.h). */
static inline node_t *at(char *base, uint64_t off)
{
    node_t *n = (node_t *)(base + off);
    SHK_VG_DO(VALGRIND_MAKE_MEM_DEFINED(n, sizeof *n));
    return n;
}

static inline uint64_t off_of(char *base, const node_t *n)
{
    return (uint64_t)((const char *)n - base);
}

/* The child link on side d (0 left, 1 right). */
static inline uint64_t *kid(node_t *n, int d)
{
    return d ? &n->right : &n->left;
}

static inline int red(char *base, uint64_t off)
{
    return off && at(base, off)->color == SHK_RBTREE_RED;
}

static inline int order(const node_t *a, const node_t *b, shk_rbtree_cmp_t cmp, void *ctx)
{
    if (a->key != b->key)
        return a->key < b->key ? -1 : 1;
    return cmp ? cmp(a, b, ctx) : 0;
}

/* Put `v` (may be nil) where `u` hangs: under u's parent, or at the root. */
static void replace(shk_rbtree_t *t, char *base, uint64_t u, uint64_t v)
{
    uint64_t p = at(base, u)->parent;
    if (!p)
        t->root = v;
    else if (at(base, p)->left == u)
        at(base, p)->left = v;
    else
        at(base, p)->right = v;
    if (v)
        at(base, v)->parent = p;
}

/* Rotate at x so that x goes down on side d and its child on side !d takes
 * its place: d = 0 is the usual left rotation. */
static void rotate(shk_rbtree_t *t, char *base, uint64_t x, int d)
{
    node_t *X = at(base, x);
    uint64_t y = *kid(X, !d);
    node_t *Y = at(base, y);
    uint64_t inner = *kid(Y, d);
    *kid(X, !d) = inner;
    if (inner)
        at(base, inner)->parent = x;
    replace(t, base, x, y);
    *kid(Y, d) = x;
    X->parent = y;
}

static int node_ok(const void *base, const node_t *n, const char *what)
{
    if (!base || !n)
        return shk_error(SHK_EINVAL, "rbtree %s: NULL argument", what);
    if ((const char *)n <= (const char *)base || (uintptr_t)n % alignof(node_t) ||
        (uintptr_t)base % alignof(node_t))
        return shk_error(SHK_EINVAL,
                         "rbtree %s: node %p is at or before base %p, or one is misaligned", what,
                         (const void *)n, base);
    return SHK_OK;
}

void shk_rbtree_init(shk_rbtree_t *tree)
{
    if (tree)
        tree->root = tree->count = 0;
}

int shk_rbtree_insert(shk_rbtree_t *t, void *base_, shk_rbtree_node_t *node, shk_rbtree_cmp_t cmp,
                      void *ctx)
{
    char *base = base_;
    uint64_t p = 0, cur, z;
    int d = 0;
    if (!t)
        return shk_error(SHK_EINVAL, "rbtree insert: NULL tree");
    int rc = node_ok(base, node, "insert");
    if (rc != SHK_OK)
        return rc;
    /* going right on equal puts the node after every node equal to it */
    for (cur = t->root; cur; cur = *kid(at(base, cur), d)) {
        p = cur;
        d = order(node, at(base, cur), cmp, ctx) >= 0;
    }
    z = off_of(base, node);
    node->parent = p;
    node->left = node->right = 0;
    node->color = SHK_RBTREE_RED;
    if (p)
        *kid(at(base, p), d) = z;
    else
        t->root = z;
    t->count++;

    /* Only red-red between z and its parent can be broken here. */
    while (red(base, p = at(base, z)->parent)) {
        uint64_t g = at(base, p)->parent; /* exists: a red node is not the root */
        node_t *G = at(base, g);
        d = G->right == p; /* p hangs on side d of g */
        uint64_t u = *kid(G, !d);
        if (red(base, u)) {
            /* red uncle: push g's blackness down, carry on from g */
            at(base, p)->color = SHK_RBTREE_BLACK;
            at(base, u)->color = SHK_RBTREE_BLACK;
            G->color = SHK_RBTREE_RED;
            z = g;
            continue;
        }
        if (*kid(at(base, p), !d) == z) {
            /* inner grandchild: turn it into the outer case */
            rotate(t, base, p, d);
            z = p;
            p = at(base, z)->parent;
        }
        at(base, p)->color = SHK_RBTREE_BLACK;
        G->color = SHK_RBTREE_RED;
        rotate(t, base, g, !d);
        break;
    }
    at(base, t->root)->color = SHK_RBTREE_BLACK;
    return SHK_OK;
}

int shk_rbtree_delete(shk_rbtree_t *t, void *base_, shk_rbtree_node_t *node)
{
    char *base = base_;
    uint64_t z, x, xp;
    uint32_t gone;
    if (!t)
        return shk_error(SHK_EINVAL, "rbtree delete: NULL tree");
    int rc = node_ok(base, node, "delete");
    if (rc != SHK_OK)
        return rc;
    z = off_of(base, node);
    if (!node->left || !node->right) {
        /* at most one child: it takes z's place */
        x = node->left ? node->left : node->right;
        xp = node->parent;
        gone = node->color;
        replace(t, base, z, x);
    } else {
        /* two children: z's successor y (leftmost on the right, so it has
         * no left child) takes z's place and colour; y's old spot loses a
         * node of y's colour */
        uint64_t y = node->right;
        while (at(base, y)->left)
            y = at(base, y)->left;
        node_t *Y = at(base, y);
        gone = Y->color;
        x = Y->right;
        if (Y->parent == z) {
            xp = y;
        } else {
            xp = Y->parent;
            replace(t, base, y, x);
            Y->right = node->right;
            at(base, Y->right)->parent = y;
        }
        replace(t, base, z, y);
        Y->left = node->left;
        at(base, Y->left)->parent = y;
        Y->color = node->color;
    }
    t->count--;
    node->parent = node->left = node->right = 0;
    node->color = SHK_RBTREE_BLACK;
    if (gone == SHK_RBTREE_RED)
        return SHK_OK;

    /* Every path through x is one black short. x may be nil, so its parent
     * is tracked in xp; x's sibling is never nil (its side has black height
     * at least one more than x's). */
    while (x != t->root && !red(base, x)) {
        node_t *XP = at(base, xp);
        /* x hangs on side d of xp; a nil x on the side that is nil */
        int d = x ? XP->right == x : XP->left != 0;
        uint64_t w = *kid(XP, !d);
        if (red(base, w)) {
            /* red sibling: rotate it above xp, the new sibling is black */
            at(base, w)->color = SHK_RBTREE_BLACK;
            XP->color = SHK_RBTREE_RED;
            rotate(t, base, xp, d);
            w = *kid(XP, !d);
        }
        node_t *W = at(base, w);
        if (!red(base, W->left) && !red(base, W->right)) {
            /* both nephews black: make w red, move the shortage up */
            W->color = SHK_RBTREE_RED;
            x = xp;
            xp = XP->parent;
            continue;
        }
        if (!red(base, *kid(W, !d))) {
            /* only the near nephew is red: turn it into the far one */
            at(base, *kid(W, d))->color = SHK_RBTREE_BLACK;
            W->color = SHK_RBTREE_RED;
            rotate(t, base, w, !d);
            w = *kid(XP, !d);
            W = at(base, w);
        }
        /* far nephew red: rotate w above xp, which settles the shortage */
        W->color = XP->color;
        XP->color = SHK_RBTREE_BLACK;
        at(base, *kid(W, !d))->color = SHK_RBTREE_BLACK;
        rotate(t, base, xp, d);
        x = t->root;
        break;
    }
    if (x)
        at(base, x)->color = SHK_RBTREE_BLACK;
    return SHK_OK;
}

/* The first node not before the probe; *eq says whether it compared equal. */
static node_t *lower(const shk_rbtree_t *t, char *base, const node_t *probe, shk_rbtree_cmp_t cmp,
                     void *ctx, int *eq)
{
    node_t *best = NULL;
    *eq = 0;
    for (uint64_t cur = t->root; cur;) {
        node_t *n = at(base, cur);
        int c = order(probe, n, cmp, ctx);
        if (c <= 0) {
            best = n;
            *eq = c == 0;
            cur = n->left;
        } else {
            cur = n->right;
        }
    }
    return best;
}

shk_rbtree_node_t *shk_rbtree_find(const shk_rbtree_t *t, void *base,
                                   const shk_rbtree_node_t *probe, shk_rbtree_cmp_t cmp, void *ctx)
{
    int eq;
    if (!t || !base || !probe) {
        shk_error(SHK_EINVAL, "rbtree find: NULL argument");
        return NULL;
    }
    node_t *n = lower(t, base, probe, cmp, ctx, &eq);
    return eq ? n : NULL;
}

shk_rbtree_node_t *shk_rbtree_lower_bound(const shk_rbtree_t *t, void *base,
                                          const shk_rbtree_node_t *probe, shk_rbtree_cmp_t cmp,
                                          void *ctx)
{
    int eq;
    if (!t || !base || !probe) {
        shk_error(SHK_EINVAL, "rbtree lower_bound: NULL argument");
        return NULL;
    }
    return lower(t, base, probe, cmp, ctx, &eq);
}

/* The last node on side d below `off` (the min for d = 0). */
static node_t *edge(char *base, uint64_t off, int d)
{
    node_t *n = at(base, off);
    while (*kid(n, d))
        n = at(base, *kid(n, d));
    return n;
}

shk_rbtree_node_t *shk_rbtree_min(const shk_rbtree_t *t, void *base)
{
    return t && base && t->root ? edge(base, t->root, 0) : NULL;
}

shk_rbtree_node_t *shk_rbtree_max(const shk_rbtree_t *t, void *base)
{
    return t && base && t->root ? edge(base, t->root, 1) : NULL;
}

/* The neighbour on side d (1 = next, 0 = prev). */
static node_t *step(char *base, const node_t *n, int d)
{
    if (*kid((node_t *)n, d))
        return edge(base, *kid((node_t *)n, d), !d);
    uint64_t cur = off_of(base, n), p = n->parent;
    while (p && *kid(at(base, p), d) == cur) {
        cur = p;
        p = at(base, p)->parent;
    }
    return p ? at(base, p) : NULL;
}

shk_rbtree_node_t *shk_rbtree_next(void *base, const shk_rbtree_node_t *node)
{
    return base && node ? step(base, node, 1) : NULL;
}

shk_rbtree_node_t *shk_rbtree_prev(void *base, const shk_rbtree_node_t *node)
{
    return base && node ? step(base, node, 0) : NULL;
}

uint64_t shk_rbtree_count(const shk_rbtree_t *t)
{
    return t ? t->count : 0;
}

/* ---- the check ---------------------------------------------------------------- */

typedef struct check_s {
    const char *base;
    size_t size;
    shk_rbtree_cmp_t cmp;
    void *ctx;
    uint64_t seen, limit;
    node_t prev; /* copy of the node visited last in order */
    uint64_t prev_off;
} check_t;

/* Read the node at `off` into *out after checking it lies in the region. */
static int load(check_t *c, uint64_t off, node_t *out)
{
    if (!shk_span_ok(off, sizeof(node_t), c->size))
        return shk_error(SHK_ECORRUPT,
                         "rbtree: node offset 0x%llx is outside the region of %zu bytes",
                         (unsigned long long)off, c->size);
    if (off % alignof(node_t))
        return shk_error(SHK_ECORRUPT, "rbtree: node offset 0x%llx is misaligned",
                         (unsigned long long)off);
    SHK_VG_DO(VALGRIND_MAKE_MEM_DEFINED(c->base + off, sizeof *out));
    memcpy(out, c->base + off, sizeof *out);
    if (out->color != SHK_RBTREE_BLACK && out->color != SHK_RBTREE_RED)
        return shk_error(SHK_ECORRUPT, "rbtree: node 0x%llx has colour %u", (unsigned long long)off,
                         out->color);
    return SHK_OK;
}

/* In-order walk of the subtree at `off` (already loaded into *n, its parent
 * link verified). *black receives its black height (nil counts 1). The
 * parent-link check on every edge makes the walk a tree walk: a node can be
 * reached only from the node its parent link names, on one side, so no node
 * is visited twice and no cycle is followed; depth and count bound it
 * besides. */
static int walk(check_t *c, uint64_t off, const node_t *n, unsigned depth, int *black)
{
    int bh[2];
    if (depth >= SHK_RBTREE_MAX_DEPTH)
        return shk_error(SHK_ECORRUPT, "rbtree: node 0x%llx is at depth %u (a cycle?)",
                         (unsigned long long)off, depth);
    if (++c->seen > c->limit)
        return shk_error(SHK_ECORRUPT, "rbtree: more nodes reached than the count %llu",
                         (unsigned long long)c->limit);
    if (n->left && n->left == n->right)
        return shk_error(SHK_ECORRUPT, "rbtree: node 0x%llx has the same left and right child",
                         (unsigned long long)off);
    for (int d = 0; d < 2; d++) {
        uint64_t k = d ? n->right : n->left;
        bh[d] = 1;
        if (d == 1) {
            /* this node, in order, between its two subtrees */
            if (c->prev_off) {
                int o = c->prev.key < n->key ? -1 : c->prev.key > n->key ? 1 : 0;
                if (o > 0)
                    return shk_error(SHK_ECORRUPT,
                                     "rbtree: out of order: key %llu (node 0x%llx) before key "
                                     "%llu (node 0x%llx)",
                                     (unsigned long long)c->prev.key,
                                     (unsigned long long)c->prev_off, (unsigned long long)n->key,
                                     (unsigned long long)off);
                /* the callback sees the nodes in place; both were checked */
                if (o == 0 && c->cmp &&
                    c->cmp((const node_t *)(c->base + c->prev_off), (const node_t *)(c->base + off),
                           c->ctx) > 0)
                    return shk_error(SHK_ECORRUPT,
                                     "rbtree: out of order: node 0x%llx before node 0x%llx (equal "
                                     "keys, the comparator disagrees)",
                                     (unsigned long long)c->prev_off, (unsigned long long)off);
            }
            c->prev = *n;
            c->prev_off = off;
        }
        if (!k)
            continue;
        node_t kn;
        int rc = load(c, k, &kn);
        if (rc != SHK_OK)
            return rc;
        if (kn.parent != off)
            return shk_error(SHK_ECORRUPT,
                             "rbtree: node 0x%llx (%s child of 0x%llx) has parent link 0x%llx",
                             (unsigned long long)k, d ? "right" : "left", (unsigned long long)off,
                             (unsigned long long)kn.parent);
        if (n->color == SHK_RBTREE_RED && kn.color == SHK_RBTREE_RED)
            return shk_error(SHK_ECORRUPT, "rbtree: red node 0x%llx has a red child 0x%llx",
                             (unsigned long long)off, (unsigned long long)k);
        rc = walk(c, k, &kn, depth + 1, &bh[d]);
        if (rc != SHK_OK)
            return rc;
    }
    if (bh[0] != bh[1])
        return shk_error(SHK_ECORRUPT,
                         "rbtree: node 0x%llx: black height %d on the left, %d on the right",
                         (unsigned long long)off, bh[0], bh[1]);
    *black = bh[0] + (n->color == SHK_RBTREE_BLACK);
    return SHK_OK;
}

int shk_rbtree_check(const shk_rbtree_t *tree, const void *base, size_t size, shk_rbtree_cmp_t cmp,
                     void *ctx)
{
    check_t c = {.base = base, .size = size, .cmp = cmp, .ctx = ctx};
    shk_rbtree_t t;
    node_t root;
    int black, rc;
    if (!tree || !base)
        return shk_error(SHK_EINVAL, "rbtree check: NULL argument");
    memcpy(&t, tree, sizeof t);
    /* no more nodes than fit in the region, so the walk is bounded by the
     * region even while a writer changes the tree under a lock-free check */
    if (t.count > size / sizeof(node_t))
        return shk_error(SHK_ECORRUPT, "rbtree: count %llu cannot fit in a region of %zu bytes",
                         (unsigned long long)t.count, size);
    c.limit = t.count;
    if (!t.root)
        return t.count ? shk_error(SHK_ECORRUPT, "rbtree: empty, but the count is %llu",
                                   (unsigned long long)t.count)
                       : SHK_OK;
    rc = load(&c, t.root, &root);
    if (rc != SHK_OK)
        return rc;
    if (root.parent)
        return shk_error(SHK_ECORRUPT, "rbtree: the root 0x%llx has parent link 0x%llx",
                         (unsigned long long)t.root, (unsigned long long)root.parent);
    if (root.color != SHK_RBTREE_BLACK)
        return shk_error(SHK_ECORRUPT, "rbtree: the root 0x%llx is red",
                         (unsigned long long)t.root);
    rc = walk(&c, t.root, &root, 0, &black);
    if (rc != SHK_OK)
        return rc;
    if (c.seen != t.count)
        return shk_error(SHK_ECORRUPT, "rbtree: %llu nodes reached, the count is %llu",
                         (unsigned long long)c.seen, (unsigned long long)t.count);
    return SHK_OK;
}
