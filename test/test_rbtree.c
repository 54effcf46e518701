/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * test_rbtree.c: the offset-linked red-black tree: thousands of random
 * inserts, deletes, finds, lower bounds and steps against a sorted-array
 * model with the check after every step; equal nodes in insertion order;
 * a keys-only tree; prefix walks over names; the region copied to another
 * address; damaged trees (cycles, red-red, offsets outside the region,
 * wrong counts, random bytes) reported and never looped on or read past;
 * and one tree shared by forked processes under a shmtx.
 */
#include "shk_rbtree.h"
#include "shk_shmtx.h"
#include "util_test.h"

#include <string.h>
#include <sys/wait.h>

/* A test item: the node first, then the tie-breaker the comparator reads. */
typedef struct item_s {
    shk_rbtree_node_t rb;
    uint32_t tie; /* second order, after the key */
    uint32_t id;  /* index in the region */
} item_t;

#define HDR 64 /* the tree header sits at offset 0, so no node has offset 0 */

typedef struct region_s {
    char *base;
    size_t size;
    unsigned n; /* items */
} region_t;

static shk_rbtree_t *tree_of(const region_t *r)
{
    return (shk_rbtree_t *)r->base;
}

static item_t *item(const region_t *r, unsigned i)
{
    return (item_t *)(r->base + HDR + (size_t)i * sizeof(item_t));
}

static size_t region_size(unsigned n)
{
    return HDR + (size_t)n * sizeof(item_t);
}

/* A malloc'd region of exactly the size it needs, so that valgrind (and
 * ASan) see any read past its end. */
static region_t region_new(unsigned n)
{
    region_t r = {calloc(1, region_size(n)), region_size(n), n};
    ck_assert_ptr_nonnull(r.base);
    for (unsigned i = 0; i < n; i++)
        item(&r, i)->id = i;
    return r;
}

static int by_tie(const shk_rbtree_node_t *a, const shk_rbtree_node_t *b, void *ctx)
{
    const item_t *x = (const item_t *)a, *y = (const item_t *)b;
    (void)ctx;
    return x->tie < y->tie ? -1 : x->tie > y->tie;
}

static int cmp_kt(uint64_t ka, uint32_t ta, uint64_t kb, uint32_t tb)
{
    if (ka != kb)
        return ka < kb ? -1 : 1;
    return ta < tb ? -1 : ta > tb;
}

static int check_ok(const region_t *r, shk_rbtree_cmp_t cmp)
{
    int rc = shk_rbtree_check(tree_of(r), r->base, r->size, cmp, NULL);
    if (rc != SHK_OK)
        fprintf(stderr, "check: %s\n", shk_last_errmsg());
    return rc == SHK_OK;
}

/* ---- random steps against a sorted array ------------------------------------------ */

typedef struct model_s {
    unsigned *ids; /* item ids in tree order */
    unsigned n;
    unsigned char *in;
} model_t;

/* First position whose item is not before (k, t) (strict: after every
 * equal one). */
static unsigned model_lower(const region_t *r, const model_t *m, uint64_t k, uint32_t t, int strict)
{
    unsigned lo = 0, hi = m->n;
    while (lo < hi) {
        unsigned mid = (lo + hi) / 2;
        const item_t *x = item(r, m->ids[mid]);
        int c = cmp_kt(x->rb.key, x->tie, k, t);
        if (c < 0 || (strict && c == 0))
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* Plain tests in the hot loop, ck_abort only on a failure: each ck_assert
 * costs Check a write to its pipe. */
#define MUST(cond, ...)                                                                            \
    do {                                                                                           \
        if (!(cond))                                                                               \
            ck_abort_msg(__VA_ARGS__);                                                             \
    } while (0)

static void walk_equals_model(const region_t *r, const model_t *m, long step)
{
    shk_rbtree_node_t *n = shk_rbtree_min(tree_of(r), r->base);
    for (unsigned i = 0; i < m->n; i++) {
        MUST(n && ((item_t *)n)->id == m->ids[i], "step %ld: walk differs at %u of %u", step, i,
             m->n);
        n = shk_rbtree_next(r->base, n);
    }
    MUST(!n, "step %ld: walk goes past %u", step, m->n);
    n = shk_rbtree_max(tree_of(r), r->base);
    for (unsigned i = m->n; i-- > 0;) {
        MUST(n && ((item_t *)n)->id == m->ids[i], "step %ld: backward walk differs at %u", step, i);
        n = shk_rbtree_prev(r->base, n);
    }
    MUST(!n, "step %ld: backward walk goes past the first", step);
}

static void random_run(const char *name, shk_rbtree_cmp_t cmp, long steps)
{
    enum { N = 400 };
    region_t r = region_new(N);
    model_t m = {calloc(N, sizeof(unsigned)), 0, calloc(N, 1)};
    uint64_t s = tu_seed(name);
    shk_rbtree_t *t = tree_of(&r);
    shk_rbtree_init(t);
    /* few distinct keys and ties, so equal keys and equal nodes are common */
    uint64_t kspan = 1 + tu_rand(&s) % 64;
    for (long step = 0; step < steps; step++) {
        unsigned op = (unsigned)(tu_rand(&s) % 100);
        uint64_t k = tu_rand(&s) % kspan;
        uint32_t tie = cmp ? (uint32_t)(tu_rand(&s) % 4) : 0;
        /* grow to ~N, shrink to empty, and again, so both ends are visited */
        int growing = (step / 3000) % 2 == 0;
        if (op < (growing ? 40u : 20u) && m.n < N) {
            unsigned id;
            do
                id = (unsigned)(tu_rand(&s) % N);
            while (m.in[id]);
            item_t *x = item(&r, id);
            x->rb.key = k;
            x->tie = tie;
            unsigned pos = model_lower(&r, &m, k, tie, 1);
            memmove(&m.ids[pos + 1], &m.ids[pos], (m.n - pos) * sizeof(unsigned));
            m.ids[pos] = id;
            m.n++;
            m.in[id] = 1;
            MUST(shk_rbtree_insert(t, r.base, &x->rb, cmp, NULL) == SHK_OK, "insert");
        } else if (op < 60 && m.n > 0) {
            unsigned pos = (unsigned)(tu_rand(&s) % m.n), id = m.ids[pos];
            memmove(&m.ids[pos], &m.ids[pos + 1], (m.n - pos - 1) * sizeof(unsigned));
            m.n--;
            m.in[id] = 0;
            MUST(shk_rbtree_delete(t, r.base, &item(&r, id)->rb) == SHK_OK, "delete");
            MUST(!(item(&r, id)->rb.parent | item(&r, id)->rb.left | item(&r, id)->rb.right),
                 "step %ld: a deleted node keeps links", step);
        } else if (op < 75) {
            item_t probe = {.rb.key = k, .tie = tie};
            unsigned pos = model_lower(&r, &m, k, tie, 0);
            int hit = pos < m.n &&
                      cmp_kt(item(&r, m.ids[pos])->rb.key, item(&r, m.ids[pos])->tie, k, tie) == 0;
            shk_rbtree_node_t *f = shk_rbtree_find(t, r.base, &probe.rb, cmp, NULL);
            MUST(f == (hit ? &item(&r, m.ids[pos])->rb : NULL), "step %ld: find (%llu,%u)", step,
                 (unsigned long long)k, tie);
        } else if (op < 88) {
            item_t probe = {.rb.key = k, .tie = tie};
            unsigned pos = model_lower(&r, &m, k, tie, 0);
            shk_rbtree_node_t *f = shk_rbtree_lower_bound(t, r.base, &probe.rb, cmp, NULL);
            MUST(f == (pos < m.n ? &item(&r, m.ids[pos])->rb : NULL),
                 "step %ld: lower_bound (%llu,%u)", step, (unsigned long long)k, tie);
        } else if (m.n > 0) {
            unsigned pos = (unsigned)(tu_rand(&s) % m.n);
            shk_rbtree_node_t *x = &item(&r, m.ids[pos])->rb;
            shk_rbtree_node_t *nx = shk_rbtree_next(r.base, x), *pv = shk_rbtree_prev(r.base, x);
            MUST(nx == (pos + 1 < m.n ? &item(&r, m.ids[pos + 1])->rb : NULL), "step %ld: next",
                 step);
            MUST(pv == (pos > 0 ? &item(&r, m.ids[pos - 1])->rb : NULL), "step %ld: prev", step);
        }
        MUST(check_ok(&r, cmp), "step %ld: check", step);
        MUST(shk_rbtree_count(t) == m.n, "step %ld: count", step);
        walk_equals_model(&r, &m, step);
    }
    free(m.ids);
    free(m.in);
    free(r.base);
}

START_TEST(random_against_model)
{
    random_run("random_against_model", by_tie, tu_scale(20000, 20));
}
END_TEST

START_TEST(random_keys_only)
{
    random_run("random_keys_only", NULL, tu_scale(10000, 20));
}
END_TEST

/* ---- equal nodes, empty tree, arguments --------------------------------------------- */

START_TEST(equal_nodes_in_insertion_order)
{
    region_t r = region_new(300);
    shk_rbtree_t *t = tree_of(&r);
    /* 100 nodes of key 5 in between 100 of key 1 and 100 of key 9 */
    for (unsigned i = 0; i < 300; i++) {
        unsigned id = (i * 7) % 300; /* interleaved insertion */
        item(&r, id)->rb.key = id < 100 ? 1 : id < 200 ? 5 : 9;
        ck_assert_int_eq(shk_rbtree_insert(t, r.base, &item(&r, id)->rb, NULL, NULL), SHK_OK);
        ck_assert(check_ok(&r, NULL));
    }
    /* a walk meets each key's nodes in insertion order */
    unsigned last_seq[3] = {0, 0, 0}, seen = 0;
    int first[3] = {1, 1, 1};
    for (shk_rbtree_node_t *n = shk_rbtree_min(t, r.base); n; n = shk_rbtree_next(r.base, n)) {
        unsigned id = ((item_t *)n)->id, g = id / 100, seq = 0;
        for (unsigned i = 0; i < 300; i++)
            if ((i * 7) % 300 == id)
                seq = i;
        ck_assert(first[g] || seq > last_seq[g]);
        first[g] = 0;
        last_seq[g] = seq;
        seen++;
    }
    ck_assert_uint_eq(seen, 300);
    /* find gives the first inserted of the equal ones; then the next one */
    shk_rbtree_node_t probe = {.key = 5};
    shk_rbtree_node_t *f = shk_rbtree_find(t, r.base, &probe, NULL, NULL);
    ck_assert_ptr_nonnull(f);
    unsigned firstid = 0;
    for (unsigned i = 0; i < 300; i++)
        if ((i * 7) % 300 >= 100 && (i * 7) % 300 < 200) {
            firstid = (i * 7) % 300;
            break;
        }
    ck_assert_uint_eq(((item_t *)f)->id, firstid);
    shk_rbtree_node_t *second = shk_rbtree_next(r.base, f);
    ck_assert_int_eq(shk_rbtree_delete(t, r.base, f), SHK_OK);
    ck_assert_ptr_eq(shk_rbtree_find(t, r.base, &probe, NULL, NULL), second);
    probe.key = 6;
    ck_assert_ptr_null(shk_rbtree_find(t, r.base, &probe, NULL, NULL));
    ck_assert_uint_eq(shk_rbtree_lower_bound(t, r.base, &probe, NULL, NULL)->key, 9);
    probe.key = 10;
    ck_assert_ptr_null(shk_rbtree_lower_bound(t, r.base, &probe, NULL, NULL));
    ck_assert(check_ok(&r, NULL));
    free(r.base);
}
END_TEST

START_TEST(empty_tree_and_bad_arguments)
{
    region_t r = region_new(2);
    shk_rbtree_t *t = tree_of(&r);
    shk_rbtree_node_t probe = {.key = 1};
    ck_assert(check_ok(&r, NULL));
    ck_assert_ptr_null(shk_rbtree_min(t, r.base));
    ck_assert_ptr_null(shk_rbtree_max(t, r.base));
    ck_assert_ptr_null(shk_rbtree_find(t, r.base, &probe, NULL, NULL));
    ck_assert_ptr_null(shk_rbtree_lower_bound(t, r.base, &probe, NULL, NULL));
    ck_assert_uint_eq(shk_rbtree_count(t), 0);
    ck_assert_uint_eq(shk_rbtree_count(NULL), 0);
    ck_assert_int_eq(shk_rbtree_insert(NULL, r.base, &item(&r, 0)->rb, NULL, NULL), SHK_EINVAL);
    ck_assert_int_eq(shk_rbtree_insert(t, NULL, &item(&r, 0)->rb, NULL, NULL), SHK_EINVAL);
    ck_assert_int_eq(shk_rbtree_insert(t, r.base, NULL, NULL, NULL), SHK_EINVAL);
    /* a node at the base would have offset 0, which is nil */
    ck_assert_int_eq(shk_rbtree_insert(t, r.base, (shk_rbtree_node_t *)r.base, NULL, NULL),
                     SHK_EINVAL);
    ck_assert_int_eq(
        shk_rbtree_insert(t, r.base, (shk_rbtree_node_t *)(r.base + HDR + 4), NULL, NULL),
        SHK_EINVAL);
    ck_assert_int_eq(shk_rbtree_delete(t, r.base, NULL), SHK_EINVAL);
    ck_assert_int_eq(shk_rbtree_check(NULL, r.base, r.size, NULL, NULL), SHK_EINVAL);
    ck_assert_ptr_null(shk_rbtree_find(NULL, r.base, &probe, NULL, NULL));
    ck_assert_int_eq(shk_last_error(), SHK_EINVAL);
    ck_assert_uint_eq(shk_rbtree_count(t), 0);
    ck_assert(check_ok(&r, NULL));
    /* one node, then empty again */
    item(&r, 1)->rb.key = 1;
    ck_assert_int_eq(shk_rbtree_insert(t, r.base, &item(&r, 1)->rb, NULL, NULL), SHK_OK);
    ck_assert_ptr_eq(shk_rbtree_min(t, r.base), &item(&r, 1)->rb);
    ck_assert_ptr_eq(shk_rbtree_max(t, r.base), &item(&r, 1)->rb);
    ck_assert_ptr_eq(shk_rbtree_find(t, r.base, &probe, NULL, NULL), &item(&r, 1)->rb);
    ck_assert_int_eq(shk_rbtree_delete(t, r.base, &item(&r, 1)->rb), SHK_OK);
    ck_assert_uint_eq(t->root, 0);
    ck_assert(check_ok(&r, NULL));
    free(r.base);
}
END_TEST

/* ---- names, walked by prefix -------------------------------------------------------------- */

#define NAME_MAX_ 24

typedef struct name_s {
    shk_rbtree_node_t rb;
    char name[NAME_MAX_];
} name_t;

/* The first eight bytes, big-endian, zero-padded: sorts as the names do. */
static uint64_t name_key(const char *s)
{
    uint64_t k = 0;
    size_t n = strlen(s);
    for (size_t i = 0; i < 8; i++)
        k = k << 8 | (i < n ? (unsigned char)s[i] : 0);
    return k;
}

static int by_name(const shk_rbtree_node_t *a, const shk_rbtree_node_t *b, void *ctx)
{
    (void)ctx;
    return strcmp(((const name_t *)a)->name, ((const name_t *)b)->name);
}

static int qs_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

START_TEST(prefix_walks)
{
    enum { N = 600 };
    size_t size = HDR + N * sizeof(name_t);
    char *base = calloc(1, size);
    shk_rbtree_t *t = (shk_rbtree_t *)base;
    name_t *names = (name_t *)(base + HDR);
    char *sorted[N];
    uint64_t s = tu_seed("prefix_walks");
    static const char alpha[] = "abc/";
    for (unsigned i = 0; i < N; i++) {
        unsigned len;
        do {
            len = 1 + (unsigned)(tu_rand(&s) % (NAME_MAX_ - 2));
            for (unsigned j = 0; j < len; j++)
                names[i].name[j] = alpha[tu_rand(&s) % 4];
            names[i].name[len] = '\0';
            /* unique names */
            len = 0;
            for (unsigned j = 0; j < i && !len; j++)
                len = strcmp(names[j].name, names[i].name) == 0;
        } while (len);
        names[i].rb.key = name_key(names[i].name);
        ck_assert_int_eq(shk_rbtree_insert(t, base, &names[i].rb, by_name, NULL), SHK_OK);
        sorted[i] = names[i].name;
    }
    ck_assert_int_eq(shk_rbtree_check(t, base, size, by_name, NULL), SHK_OK);
    qsort(sorted, N, sizeof sorted[0], qs_str);
    for (int q = 0; q < 200; q++) {
        char prefix[NAME_MAX_];
        unsigned len = (unsigned)(tu_rand(&s) % 12);
        for (unsigned j = 0; j < len; j++)
            prefix[j] = alpha[tu_rand(&s) % 4];
        prefix[len] = '\0';
        name_t probe = {.rb.key = name_key(prefix)};
        strcpy(probe.name, prefix);
        unsigned want = 0, got = 0, at = N;
        for (unsigned i = 0; i < N; i++)
            if (strncmp(sorted[i], prefix, len) == 0) {
                if (at == N)
                    at = i;
                want++;
            }
        for (shk_rbtree_node_t *n = shk_rbtree_lower_bound(t, base, &probe.rb, by_name, NULL);
             n && strncmp(((name_t *)n)->name, prefix, len) == 0; n = shk_rbtree_next(base, n)) {
            ck_assert_str_eq(((name_t *)n)->name, sorted[at + got]);
            got++;
        }
        ck_assert_msg(got == want, "prefix \"%s\": %u of %u", prefix, got, want);
    }
    free(base);
}
END_TEST

/* ---- the region at another address ------------------------------------------------------- */

START_TEST(moved_region)
{
    enum { N = 500 };
    region_t r = region_new(N);
    uint64_t s = tu_seed("moved_region");
    for (unsigned i = 0; i < N; i++) {
        item(&r, i)->rb.key = tu_rand(&s) % 1000;
        item(&r, i)->tie = i;
        ck_assert_int_eq(shk_rbtree_insert(tree_of(&r), r.base, &item(&r, i)->rb, by_tie, NULL),
                         SHK_OK);
    }
    for (unsigned i = 0; i < N; i += 3)
        ck_assert_int_eq(shk_rbtree_delete(tree_of(&r), r.base, &item(&r, i)->rb), SHK_OK);
    region_t r2 = region_new(N);
    memcpy(r2.base, r.base, r.size);
    memset(r.base, 0xa5, r.size); /* nothing may still point at the old copy */
    ck_assert(r2.base != r.base);
    ck_assert(check_ok(&r2, by_tie));
    ck_assert_uint_eq(shk_rbtree_count(tree_of(&r2)), N - (N + 2) / 3);
    for (unsigned i = 0; i < N; i++) {
        item_t probe = {.rb.key = item(&r2, i)->rb.key, .tie = i};
        shk_rbtree_node_t *f = shk_rbtree_find(tree_of(&r2), r2.base, &probe.rb, by_tie, NULL);
        ck_assert_ptr_eq(f, i % 3 ? &item(&r2, i)->rb : NULL);
    }
    /* and it keeps working there */
    for (unsigned i = 0; i < N; i += 3)
        ck_assert_int_eq(shk_rbtree_insert(tree_of(&r2), r2.base, &item(&r2, i)->rb, by_tie, NULL),
                         SHK_OK);
    ck_assert(check_ok(&r2, by_tie));
    ck_assert_uint_eq(shk_rbtree_count(tree_of(&r2)), N);
    free(r.base);
    free(r2.base);
}
END_TEST

/* ---- damaged trees ---------------------------------------------------------------------- */

/* A valid tree of n items with keys 10, 20, ... (ties 0). */
static region_t valid_tree(unsigned n)
{
    region_t r = region_new(n);
    for (unsigned i = 0; i < n; i++) {
        item(&r, i)->rb.key = 10 * (uint64_t)(i * 37 % n);
        ck_assert_int_eq(shk_rbtree_insert(tree_of(&r), r.base, &item(&r, i)->rb, by_tie, NULL),
                         SHK_OK);
    }
    ck_assert(check_ok(&r, by_tie));
    return r;
}

static uint64_t off(const region_t *r, const void *p)
{
    return (uint64_t)((const char *)p - r->base);
}

static shk_rbtree_node_t *node_at(const region_t *r, uint64_t o)
{
    return (shk_rbtree_node_t *)(r->base + o);
}

/* Some node matching a predicate, found by index order. */
static shk_rbtree_node_t *pick(const region_t *r,
                               int (*pred)(const region_t *, shk_rbtree_node_t *))
{
    for (unsigned i = 0; i < r->n; i++)
        if (pred(r, &item(r, i)->rb))
            return &item(r, i)->rb;
    ck_abort_msg("no node fits");
    return NULL;
}

static int is_leaf(const region_t *r, shk_rbtree_node_t *n)
{
    (void)r;
    return !n->left && !n->right && n->parent;
}

static int red_with_child(const region_t *r, shk_rbtree_node_t *n)
{
    (void)r;
    return n->color == SHK_RBTREE_RED && n->left;
}

static int is_red_node(const region_t *r, shk_rbtree_node_t *n)
{
    (void)r;
    return n->color == SHK_RBTREE_RED;
}

static int deep_inner(const region_t *r, shk_rbtree_node_t *n)
{
    return n->parent && node_at(r, n->parent)->parent && n->left && n->right;
}

static void expect_corrupt(const region_t *r, const char *what)
{
    int rc = shk_rbtree_check(tree_of(r), r->base, r->size, by_tie, NULL);
    ck_assert_msg(rc == SHK_ECORRUPT, "%s: check said %s", what, shk_err_name(rc));
    ck_assert_msg(strstr(shk_last_errmsg(), what), "wanted \"%s\" in: %s", what, shk_last_errmsg());
}

START_TEST(damaged_trees_are_reported)
{
    enum { N = 200 };
    region_t r = valid_tree(N);
    shk_rbtree_t *t = tree_of(&r);
    char *good = malloc(r.size);
    memcpy(good, r.base, r.size);
#define RESTORE() memcpy(r.base, good, r.size)

    /* a cycle: a leaf's child link back to the root, the root's parent to the leaf */
    shk_rbtree_node_t *leaf = pick(&r, is_leaf);
    leaf->left = t->root;
    expect_corrupt(&r, "parent link");
    node_at(&r, t->root)->parent = off(&r, leaf);
    expect_corrupt(&r, "the root");
    RESTORE();
    /* a cycle below the root: a leaf points at an ancestor that points back */
    shk_rbtree_node_t *in = pick(&r, deep_inner);
    leaf = node_at(&r, in->left);
    while (leaf->left)
        leaf = node_at(&r, leaf->left);
    leaf->left = off(&r, in);
    in->parent = off(&r, leaf);
    expect_corrupt(&r, "parent link");
    RESTORE();
    /* one child on both sides */
    in = pick(&r, deep_inner);
    in->right = in->left;
    expect_corrupt(&r, "same left and right");
    RESTORE();
    /* red-red */
    shk_rbtree_node_t *rn = pick(&r, red_with_child);
    node_at(&r, rn->left)->color = SHK_RBTREE_RED;
    expect_corrupt(&r, "red child");
    RESTORE();
    /* a red node made black: one path longer */
    pick(&r, is_red_node)->color = SHK_RBTREE_BLACK;
    expect_corrupt(&r, "black height");
    RESTORE();
    /* a colour that is neither */
    item(&r, 5)->rb.color = 7;
    expect_corrupt(&r, "colour");
    RESTORE();
    /* a red root */
    node_at(&r, t->root)->color = SHK_RBTREE_RED;
    expect_corrupt(&r, "is red");
    RESTORE();
    /* offsets outside the region, straddling its end, misaligned */
    leaf = pick(&r, is_leaf);
    leaf->right = r.size + 64;
    expect_corrupt(&r, "outside the region");
    leaf->right = r.size - 8;
    expect_corrupt(&r, "outside the region");
    leaf->right = UINT64_MAX - 7;
    expect_corrupt(&r, "outside the region");
    leaf->right = off(&r, item(&r, 3)) + 4;
    expect_corrupt(&r, "misaligned");
    RESTORE();
    t->root = r.size;
    expect_corrupt(&r, "outside the region");
    RESTORE();
    /* counts */
    t->count++;
    expect_corrupt(&r, "the count is");
    RESTORE();
    t->count--;
    expect_corrupt(&r, "more nodes reached than the count");
    RESTORE();
    t->count = UINT64_MAX;
    expect_corrupt(&r, "cannot fit");
    RESTORE();
    t->root = 0;
    expect_corrupt(&r, "empty, but");
    RESTORE();
    /* order: two keys swapped, and a tie the comparator disagrees with */
    shk_rbtree_node_t *mn = shk_rbtree_min(t, r.base), *mx = shk_rbtree_max(t, r.base);
    uint64_t k = mn->key;
    mn->key = mx->key;
    mx->key = k;
    expect_corrupt(&r, "out of order");
    RESTORE();
    mn = shk_rbtree_min(t, r.base);
    shk_rbtree_node_t *nx = shk_rbtree_next(r.base, mn);
    nx->key = mn->key;
    ((item_t *)mn)->tie = 1;
    expect_corrupt(&r, "comparator disagrees");
    RESTORE();
    ck_assert(check_ok(&r, by_tie));
#undef RESTORE
    free(good);
    free(r.base);
}
END_TEST

/* Random bytes over random nodes: the check answers (either way) and never
 * reads outside the region (valgrind and ASan watch the malloc'd region's
 * ends) or loops (the test's timeout watches). */
START_TEST(random_damage_never_hangs)
{
    enum { N = 150 };
    region_t r = valid_tree(N);
    char *good = malloc(r.size);
    memcpy(good, r.base, r.size);
    uint64_t s = tu_seed("random_damage_never_hangs");
    long rounds = tu_scale(20000, 40), corrupt = 0;
    for (long i = 0; i < rounds; i++) {
        memcpy(r.base, good, r.size);
        unsigned hits = 1 + (unsigned)(tu_rand(&s) % 4);
        for (unsigned h = 0; h < hits; h++) {
            item_t *x = item(&r, (unsigned)(tu_rand(&s) % N));
            char *f = (char *)&x->rb + 8 * (tu_rand(&s) % 5); /* parent..color */
            uint64_t v;
            memcpy(&v, f, sizeof v);
            switch (tu_rand(&s) % 4) {
            case 0: /* another node's offset: a plausible wrong link */
                v = off(&r, item(&r, (unsigned)(tu_rand(&s) % N)));
                break;
            case 1:
                v = tu_rand(&s);
                break;
            case 2:
                v = tu_rand(&s) % (r.size + 64);
                break;
            default:
                v ^= 1ull << (tu_rand(&s) % 64);
            }
            memcpy(f, &v, sizeof v);
        }
        int rc = shk_rbtree_check(tree_of(&r), r.base, r.size, by_tie, NULL);
        MUST(rc == SHK_OK || rc == SHK_ECORRUPT, "round %ld: %s", i, shk_err_name(rc));
        corrupt += rc == SHK_ECORRUPT;
    }
    ck_assert_int_gt(corrupt, rounds / 2);
    free(good);
    free(r.base);
}
END_TEST

/* ---- shared by processes ----------------------------------------------------------------- */

enum { SH_N = 512, SH_KIDS = 2 };

typedef struct shared_s {
    shk_shmtx_sh_t lock;
    _Alignas(64) char region[HDR + SH_N * sizeof(item_t)];
    unsigned char in[SH_N]; /* 1 while item i is in the tree; under the lock */
} shared_t;

static shared_t *sh;

static region_t shared_region(void)
{
    region_t r = {sh->region, sizeof sh->region, SH_N};
    return r;
}

static int sharer(void *arg)
{
    unsigned me = (unsigned)(uintptr_t)arg;
    region_t r = shared_region();
    shk_shmtx_t m;
    uint64_t s = tu_seed("tree_shared_by_processes") + me;
    TU_CHECK(shk_shmtx_create(&m, &sh->lock, "tree") == SHK_OK, "%s", shk_last_errmsg());
    long steps = tu_scale(4000, 20);
    for (long i = 0; i < steps; i++) {
        /* this child's items: those with id % SH_KIDS == me */
        unsigned id = (unsigned)(tu_rand(&s) % (SH_N / SH_KIDS)) * SH_KIDS + me;
        item_t *x = item(&r, id);
        TU_CHECK(shk_shmtx_held(shk_shmtx_lock(&m)), "lock");
        if (sh->in[id]) {
            item_t probe = {.rb.key = x->rb.key, .tie = id};
            TU_CHECK(shk_rbtree_find(tree_of(&r), r.base, &probe.rb, by_tie, NULL) == &x->rb,
                     "find %u", id);
            TU_CHECK(shk_rbtree_delete(tree_of(&r), r.base, &x->rb) == SHK_OK, "delete");
            sh->in[id] = 0;
        } else {
            x->rb.key = tu_rand(&s) % 100;
            x->tie = id;
            TU_CHECK(shk_rbtree_insert(tree_of(&r), r.base, &x->rb, by_tie, NULL) == SHK_OK,
                     "insert");
            sh->in[id] = 1;
        }
        if (i % 64 == 0)
            TU_CHECK(shk_rbtree_check(tree_of(&r), r.base, r.size, by_tie, NULL) == SHK_OK, "%s",
                     shk_last_errmsg());
        shk_shmtx_unlock(&m);
    }
    shk_shmtx_destroy(&m);
    return 0;
}

START_TEST(tree_shared_by_processes)
{
    sh = tu_shared(sizeof *sh);
    shk_shmtx_sh_init(&sh->lock);
    for (unsigned i = 0; i < SH_N; i++)
        ((item_t *)(sh->region + HDR))[i].id = i;
    pid_t p[SH_KIDS];
    for (unsigned i = 0; i < SH_KIDS; i++)
        p[i] = tu_fork(sharer, (void *)(uintptr_t)i);
    for (unsigned i = 0; i < SH_KIDS; i++)
        tu_wait_ok(p[i]);
    region_t r = shared_region();
    ck_assert(check_ok(&r, by_tie));
    unsigned live = 0;
    for (unsigned i = 0; i < SH_N; i++) {
        item_t probe = {.rb.key = item(&r, i)->rb.key, .tie = i};
        shk_rbtree_node_t *f = shk_rbtree_find(tree_of(&r), r.base, &probe.rb, by_tie, NULL);
        ck_assert_ptr_eq(f, sh->in[i] ? &item(&r, i)->rb : NULL);
        live += sh->in[i];
    }
    ck_assert_uint_eq(shk_rbtree_count(tree_of(&r)), live);
    ck_assert_uint_gt(live, 0);
    tu_unshare(sh, sizeof *sh);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("rbtree");
    TCase *tc = tcase_create("rbtree");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, random_against_model);
    tcase_add_test(tc, random_keys_only);
    tcase_add_test(tc, equal_nodes_in_insertion_order);
    tcase_add_test(tc, empty_tree_and_bad_arguments);
    tcase_add_test(tc, prefix_walks);
    tcase_add_test(tc, moved_region);
    tcase_add_test(tc, damaged_trees_are_reported);
    tcase_add_test(tc, random_damage_never_hangs);
    tcase_add_test(tc, tree_shared_by_processes);
    suite_add_tcase(s, tc);
    return tu_run(s);
}
