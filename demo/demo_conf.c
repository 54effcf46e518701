/*
 * demo_conf.c: the demo's directives (limit_req_zone, location, limit_req)
 * and the request limiter: nginx's leaky bucket (excess in thousandths of a
 * request, drained at `rate` per second, compared with `burst`), with one
 * node per client address in a red-black tree and an LRU list, both made of
 * slab offsets inside the limit zone, under the zone's slab lock. Stale nodes
 * are expired as requests come; when the zone is full, the slab's reclaim
 * callback drops the least recently used node.
 */
#include "demo_conf.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CTX_LOCATION (SHK_CONF_USER << 0)
#define KEY_MAX 16

struct demo_limit_zone_s {
    char name[SHK_NAME_MAX + 1];
    uint64_t rate; /* thousandths of a request per second */
    shk_zone_t *zone;
};

struct demo_conf_s {
    demo_limit_zone_t zones[DEMO_MAX_LIMIT_ZONES];
    unsigned nzones;
    demo_location_t locs[DEMO_MAX_LOCATIONS];
    unsigned nlocs;
    demo_location_t *cur;
    char files[DEMO_MAX_LOCATIONS][256];
};

/* ---- shared state --------------------------------------------------------------- */

typedef struct lr_sh_s {
    uint64_t root;       /* tree root (slab offset), 0 when empty */
    uint64_t head, tail; /* LRU: head most recently used */
    uint64_t count;
} lr_sh_t;

typedef struct lr_node_s {
    uint64_t left, right, parent;
    uint32_t red;
    uint32_t hash;
    uint64_t prev, next; /* LRU links */
    int64_t excess;      /* thousandths of a request */
    uint64_t last;       /* ms of the last accounted request */
    uint32_t len;
    uint8_t key[KEY_MAX];
} lr_node_t;

typedef struct lr_s {
    shk_slab_t *slab;
    lr_sh_t *sh;
    uint64_t rate;
} lr_t;

#define N(o) ((lr_node_t *)shk_slab_ptr(t->slab, (o)))

static uint32_t hash_key(const uint8_t *k, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ k[i]) * 16777619u;
    return h;
}

static int node_cmp(const lr_node_t *n, uint32_t hash, const uint8_t *key, uint32_t len)
{
    if (hash != n->hash)
        return hash < n->hash ? -1 : 1;
    if (len != n->len)
        return len < n->len ? -1 : 1;
    return memcmp(key, n->key, len);
}

/* ---- red-black tree of offsets (0 is the black nil) ------------------------------------ */

static void rot_left(lr_t *t, uint64_t x)
{
    uint64_t y = N(x)->right;
    N(x)->right = N(y)->left;
    if (N(y)->left)
        N(N(y)->left)->parent = x;
    N(y)->parent = N(x)->parent;
    if (!N(x)->parent)
        t->sh->root = y;
    else if (x == N(N(x)->parent)->left)
        N(N(x)->parent)->left = y;
    else
        N(N(x)->parent)->right = y;
    N(y)->left = x;
    N(x)->parent = y;
}

static void rot_right(lr_t *t, uint64_t x)
{
    uint64_t y = N(x)->left;
    N(x)->left = N(y)->right;
    if (N(y)->right)
        N(N(y)->right)->parent = x;
    N(y)->parent = N(x)->parent;
    if (!N(x)->parent)
        t->sh->root = y;
    else if (x == N(N(x)->parent)->right)
        N(N(x)->parent)->right = y;
    else
        N(N(x)->parent)->left = y;
    N(y)->right = x;
    N(x)->parent = y;
}

static int is_red(lr_t *t, uint64_t x)
{
    return x && N(x)->red;
}

static void tree_insert(lr_t *t, uint64_t z)
{
    uint64_t p = 0, cur = t->sh->root;
    lr_node_t *zn = N(z);
    int left = 0;
    while (cur) {
        p = cur;
        left = node_cmp(N(cur), zn->hash, zn->key, zn->len) < 0;
        cur = left ? N(cur)->left : N(cur)->right;
    }
    zn->parent = p;
    zn->left = zn->right = 0;
    zn->red = 1;
    if (!p)
        t->sh->root = z;
    else if (left)
        N(p)->left = z;
    else
        N(p)->right = z;
    while (is_red(t, N(z)->parent)) {
        p = N(z)->parent;
        uint64_t g = N(p)->parent;
        if (p == N(g)->left) {
            uint64_t u = N(g)->right;
            if (is_red(t, u)) {
                N(p)->red = 0;
                N(u)->red = 0;
                N(g)->red = 1;
                z = g;
                continue;
            }
            if (z == N(p)->right) {
                z = p;
                rot_left(t, z);
                p = N(z)->parent;
            }
            N(p)->red = 0;
            N(g)->red = 1;
            rot_right(t, g);
        } else {
            uint64_t u = N(g)->left;
            if (is_red(t, u)) {
                N(p)->red = 0;
                N(u)->red = 0;
                N(g)->red = 1;
                z = g;
                continue;
            }
            if (z == N(p)->left) {
                z = p;
                rot_right(t, z);
                p = N(z)->parent;
            }
            N(p)->red = 0;
            N(g)->red = 1;
            rot_left(t, g);
        }
    }
    N(t->sh->root)->red = 0;
}

static void transplant(lr_t *t, uint64_t u, uint64_t v)
{
    uint64_t up = N(u)->parent;
    if (!up)
        t->sh->root = v;
    else if (u == N(up)->left)
        N(up)->left = v;
    else
        N(up)->right = v;
    if (v)
        N(v)->parent = up;
}

static void tree_delete(lr_t *t, uint64_t z)
{
    uint64_t y = z, x, xp;
    int y_red = N(y)->red;
    if (!N(z)->left) {
        x = N(z)->right;
        xp = N(z)->parent;
        transplant(t, z, x);
    } else if (!N(z)->right) {
        x = N(z)->left;
        xp = N(z)->parent;
        transplant(t, z, x);
    } else {
        y = N(z)->right;
        while (N(y)->left)
            y = N(y)->left;
        y_red = N(y)->red;
        x = N(y)->right;
        if (N(y)->parent == z) {
            xp = y;
        } else {
            xp = N(y)->parent;
            transplant(t, y, x);
            N(y)->right = N(z)->right;
            N(N(y)->right)->parent = y;
        }
        transplant(t, z, y);
        N(y)->left = N(z)->left;
        N(N(y)->left)->parent = y;
        N(y)->red = N(z)->red;
    }
    if (y_red)
        return;
    while (x != t->sh->root && !is_red(t, x)) {
        if (x == N(xp)->left) {
            uint64_t w = N(xp)->right;
            if (is_red(t, w)) {
                N(w)->red = 0;
                N(xp)->red = 1;
                rot_left(t, xp);
                w = N(xp)->right;
            }
            if (!is_red(t, N(w)->left) && !is_red(t, N(w)->right)) {
                N(w)->red = 1;
                x = xp;
                xp = N(x)->parent;
            } else {
                if (!is_red(t, N(w)->right)) {
                    N(N(w)->left)->red = 0;
                    N(w)->red = 1;
                    rot_right(t, w);
                    w = N(xp)->right;
                }
                N(w)->red = N(xp)->red;
                N(xp)->red = 0;
                if (N(w)->right)
                    N(N(w)->right)->red = 0;
                rot_left(t, xp);
                x = t->sh->root;
                xp = 0;
            }
        } else {
            uint64_t w = N(xp)->left;
            if (is_red(t, w)) {
                N(w)->red = 0;
                N(xp)->red = 1;
                rot_right(t, xp);
                w = N(xp)->left;
            }
            if (!is_red(t, N(w)->right) && !is_red(t, N(w)->left)) {
                N(w)->red = 1;
                x = xp;
                xp = N(x)->parent;
            } else {
                if (!is_red(t, N(w)->left)) {
                    N(N(w)->right)->red = 0;
                    N(w)->red = 1;
                    rot_left(t, w);
                    w = N(xp)->left;
                }
                N(w)->red = N(xp)->red;
                N(xp)->red = 0;
                if (N(w)->left)
                    N(N(w)->left)->red = 0;
                rot_right(t, xp);
                x = t->sh->root;
                xp = 0;
            }
        }
    }
    if (x)
        N(x)->red = 0;
}

/* ---- LRU --------------------------------------------------------------------------- */

static void lru_unlink(lr_t *t, uint64_t n)
{
    lr_node_t *x = N(n);
    if (x->prev)
        N(x->prev)->next = x->next;
    else
        t->sh->head = x->next;
    if (x->next)
        N(x->next)->prev = x->prev;
    else
        t->sh->tail = x->prev;
    x->prev = x->next = 0;
}

static void lru_push(lr_t *t, uint64_t n)
{
    lr_node_t *x = N(n);
    x->prev = 0;
    x->next = t->sh->head;
    if (t->sh->head)
        N(t->sh->head)->prev = n;
    else
        t->sh->tail = n;
    t->sh->head = n;
}

static void node_drop(lr_t *t, uint64_t n)
{
    lru_unlink(t, n);
    tree_delete(t, n);
    t->sh->count--;
    shk_slab_free_locked(t->slab, N(n));
}

/* nginx's expiry: look at up to two of the least recently used nodes and
 * drop those idle for a minute whose bucket has drained; with force, the
 * first one goes regardless. */
static void expire(lr_t *t, uint64_t now, int force)
{
    for (int n = force ? 0 : 1; n < 3; n++) {
        uint64_t o = t->sh->tail;
        if (!o)
            return;
        if (n != 0) {
            lr_node_t *x = N(o);
            int64_t ms = (int64_t)(now - x->last);
            if (ms < 0)
                ms = -ms;
            if (ms < 60000)
                return;
            if (x->excess - (int64_t)t->rate * ms / 1000 > 0)
                return;
        }
        node_drop(t, o);
    }
}

/* The slab's reclaim callback: the zone is full, drop the oldest node. */
static int lr_reclaim(shk_slab_t *slab, size_t size, void *ctx)
{
    demo_limit_zone_t *lz = ctx;
    lr_t tt = {slab, shk_zone_data(lz->zone), lz->rate}, *t = &tt;
    (void)size;
    if (!t->sh || !t->sh->tail)
        return 0;
    node_drop(t, t->sh->tail);
    return 1;
}

static int lr_init(shk_zone_t *zone, void *old, void *ctx)
{
    demo_limit_zone_t *lz = ctx;
    shk_slab_set_reclaim(shk_zone_slab(zone), lr_reclaim, lz);
    if (old)
        return SHK_OK; /* reload: the buckets carry on */
    lr_sh_t *sh = shk_slab_calloc(shk_zone_slab(zone), sizeof *sh);
    if (!sh)
        return shk_error(SHK_ENOMEM, "limit_req zone \"%s\" is too small", lz->name);
    return shk_zone_set_data(zone, sh);
}

/* ---- the decision ----------------------------------------------------------------------- */

int demo_limit_at(const demo_location_t *loc, const void *key, size_t keylen, uint64_t now,
                  unsigned *delay_ms)
{
    demo_limit_zone_t *lz;
    lr_t tt, *t = &tt;
    uint32_t h;
    uint64_t cur;
    int verdict = DEMO_LIMIT_PASS, rc;
    int64_t excess = 0;

    *delay_ms = 0;
    if (!loc || !(lz = loc->zone))
        return DEMO_LIMIT_PASS;
    if (keylen == 0 || keylen > KEY_MAX)
        return DEMO_LIMIT_REJECT;
    t->slab = shk_zone_slab(lz->zone);
    t->rate = lz->rate;
    rc = shk_slab_lock(t->slab);
    if (rc != SHK_OK && rc != SHK_EOWNERDEAD)
        return DEMO_LIMIT_REJECT;
    t->sh = shk_zone_data(lz->zone);
    if (!t->sh) {
        shk_slab_unlock(t->slab);
        return DEMO_LIMIT_REJECT;
    }
    expire(t, now, 0);
    h = hash_key(key, keylen);
    for (cur = t->sh->root; cur;) {
        int c = node_cmp(N(cur), h, key, (uint32_t)keylen);
        if (!c)
            break;
        cur = c < 0 ? N(cur)->left : N(cur)->right;
    }
    if (cur) {
        lr_node_t *x = N(cur);
        int64_t ms = (int64_t)(now - x->last);
        if (ms < -60000)
            ms = 1; /* the clock jumped back a long way: count it as 1 ms */
        else if (ms < 0)
            ms = 0;
        excess = x->excess - (int64_t)t->rate * ms / 1000 + 1000;
        if (excess < 0)
            excess = 0;
        lru_unlink(t, cur);
        lru_push(t, cur);
        if ((uint64_t)excess > loc->burst) {
            verdict = DEMO_LIMIT_REJECT;
        } else {
            x->excess = excess;
            if (ms)
                x->last = now;
        }
    } else {
        lr_node_t *x = shk_slab_calloc_locked(t->slab, sizeof *x);
        if (!x) {
            shk_log(SHK_LOG_ERR, "limit_req zone \"%s\": could not allocate node", lz->name);
            verdict = DEMO_LIMIT_REJECT;
        } else {
            x->hash = h;
            x->len = (uint32_t)keylen;
            memcpy(x->key, key, keylen);
            x->excess = 0;
            x->last = now;
            cur = shk_slab_off(t->slab, x);
            tree_insert(t, cur);
            lru_push(t, cur);
            t->sh->count++;
        }
    }
    shk_slab_unlock(t->slab);
    if (verdict == DEMO_LIMIT_PASS && loc->delay != UINT64_MAX && (uint64_t)excess > loc->delay) {
        uint64_t d = ((uint64_t)excess - loc->delay) * 1000 / (t->rate ? t->rate : 1);
        *delay_ms = d > UINT_MAX ? UINT_MAX : (unsigned)d;
        verdict = d ? DEMO_LIMIT_DELAY : DEMO_LIMIT_PASS;
    }
    return verdict;
}

int demo_location_limit(const demo_location_t *loc, const void *key, size_t keylen,
                        unsigned *delay_ms)
{
    return demo_limit_at(loc, key, keylen, shk_time_ms(), delay_ms);
}

uint64_t demo_limit_nodes(const demo_location_t *loc)
{
    lr_sh_t *sh = loc && loc->zone ? shk_zone_data(loc->zone->zone) : NULL;
    return sh ? sh->count : 0;
}

static int check_sub(lr_t *t, uint64_t n, uint64_t parent, int *black, uint64_t *count,
                     const lr_node_t **prev)
{
    if (!n) {
        *black = 1;
        return SHK_OK;
    }
    lr_node_t *x = N(n);
    int bl, br;
    if (!x || x->parent != parent)
        return shk_error(SHK_ECORRUPT, "tree: bad parent link");
    if (x->red && (is_red(t, x->left) || is_red(t, x->right)))
        return shk_error(SHK_ECORRUPT, "tree: red node with a red child");
    if (++*count > (1u << 26))
        return shk_error(SHK_ECORRUPT, "tree: cycle");
    if (check_sub(t, x->left, n, &bl, count, prev) != SHK_OK)
        return SHK_ECORRUPT;
    if (*prev && node_cmp(*prev, x->hash, x->key, x->len) < 0)
        return shk_error(SHK_ECORRUPT, "tree: out of order");
    *prev = x;
    if (check_sub(t, x->right, n, &br, count, prev) != SHK_OK)
        return SHK_ECORRUPT;
    if (bl != br)
        return shk_error(SHK_ECORRUPT, "tree: black heights differ");
    *black = bl + !x->red;
    return SHK_OK;
}

int demo_limit_check(const demo_location_t *loc)
{
    lr_t tt, *t = &tt;
    int black, rc;
    uint64_t count = 0, lru = 0;
    const lr_node_t *prev = NULL;
    if (!loc || !loc->zone)
        return SHK_OK;
    t->slab = shk_zone_slab(loc->zone->zone);
    t->sh = shk_zone_data(loc->zone->zone);
    if (shk_slab_lock(t->slab) < SHK_EOWNERDEAD)
        return shk_last_error();
    rc = is_red(t, t->sh->root) ? shk_error(SHK_ECORRUPT, "tree: red root")
                                : check_sub(t, t->sh->root, 0, &black, &count, &prev);
    for (uint64_t o = t->sh->head, p = 0; rc == SHK_OK && o; p = o, o = N(o)->next) {
        if (N(o)->prev != p || ++lru > count)
            rc = shk_error(SHK_ECORRUPT, "lru list is broken");
    }
    if (rc == SHK_OK && (lru != count || count != t->sh->count))
        rc = shk_error(SHK_ECORRUPT, "tree holds %llu nodes, lru %llu, counter %llu",
                       (unsigned long long)count, (unsigned long long)lru,
                       (unsigned long long)t->sh->count);
    shk_slab_unlock(t->slab);
    return rc;
}

size_t demo_binary_addr(const char *addr, unsigned char out[16])
{
    if (!addr)
        return 0;
    if (inet_pton(AF_INET, addr, out) == 1)
        return 4;
    if (inet_pton(AF_INET6, addr, out) == 1)
        return 16;
    return 0;
}

/* ---- configuration ----------------------------------------------------------------------- */

static demo_conf_t *conf_of(shk_conf_t *cf)
{
    return shk_cycle_app_conf(shk_cycle_from_conf(cf));
}

static int parse_rate(const char *v, uint64_t *rate)
{
    char *end;
    errno = 0;
    unsigned long long n = strtoull(v, &end, 10);
    if (end == v || errno || n == 0 || n > 1000000 || *v == '-' || *v == '+')
        return -1;
    if (strcmp(end, "r/s") == 0)
        *rate = n * 1000;
    else if (strcmp(end, "r/m") == 0)
        *rate = n * 1000 / 60;
    else
        return -1;
    return *rate ? 0 : -1;
}

static int d_limit_req_zone(shk_conf_t *cf, int argc, char **argv, void *data)
{
    demo_conf_t *dc = conf_of(cf);
    shk_zones_t *reg = shk_cycle_zones(shk_cycle_from_conf(cf));
    char name[SHK_ZONE_NAME_MAX + 1] = "";
    size_t size = 0;
    uint64_t rate = 0;
    (void)data;
    if (strcmp(argv[1], "$binary_remote_addr") != 0)
        return shk_conf_error(cf, "unsupported key \"%s\" (the demo limits by "
                                  "$binary_remote_addr)",
                              argv[1]);
    for (int i = 2; i < argc; i++) {
        const char *k, *v;
        size_t kl;
        if (shk_parse_kv(argv[i], &k, &kl, &v) != SHK_OK)
            return shk_conf_error(cf, "invalid parameter \"%s\"", argv[i]);
        if (kl == 4 && strncmp(k, "zone", 4) == 0) {
            if (shk_zone_parse(v, name, &size) != SHK_OK)
                return shk_conf_error(cf, "%s", shk_last_errmsg());
        } else if (kl == 4 && strncmp(k, "rate", 4) == 0) {
            if (parse_rate(v, &rate) != 0)
                return shk_conf_error(cf, "invalid rate \"%s\"", argv[i]);
        } else {
            return shk_conf_error(cf, "invalid parameter \"%s\"", argv[i]);
        }
    }
    if (!*name)
        return shk_conf_error(cf, "\"%s\" must have \"zone\" parameter", argv[0]);
    if (!rate)
        return shk_conf_error(cf, "\"%s\" must have \"rate\" parameter", argv[0]);
    for (unsigned i = 0; i < dc->nzones; i++)
        if (strcmp(dc->zones[i].name, name) == 0)
            return shk_conf_error(cf, "duplicate zone \"%s\"", name);
    if (dc->nzones == DEMO_MAX_LIMIT_ZONES)
        return shk_conf_error(cf, "too many limit_req zones (at most %d)", DEMO_MAX_LIMIT_ZONES);
    shk_zone_t *z = shk_zone_add(reg, name, size, DEMO_TAG);
    if (!z) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", shk_last_errmsg());
        return shk_conf_error(cf, "%s", msg);
    }
    demo_limit_zone_t *lz = &dc->zones[dc->nzones++];
    strcpy(lz->name, name);
    lz->rate = rate;
    lz->zone = z;
    return SHK_OK;
}

static int d_location(shk_conf_t *cf, int argc, char **argv, void *data)
{
    demo_conf_t *dc = conf_of(cf);
    (void)argc;
    (void)data;
    if (argv[1][0] != '/')
        return shk_conf_error(cf, "location \"%s\" must start with \"/\"", argv[1]);
    if (strlen(argv[1]) >= sizeof dc->locs[0].path)
        return shk_conf_error(cf, "location \"%s\" is too long", argv[1]);
    for (unsigned i = 0; i < dc->nlocs; i++)
        if (strcmp(dc->locs[i].path, argv[1]) == 0)
            return shk_conf_error(cf, "duplicate location \"%s\"", argv[1]);
    if (dc->nlocs == DEMO_MAX_LOCATIONS)
        return shk_conf_error(cf, "too many locations (at most %d)", DEMO_MAX_LOCATIONS);
    demo_location_t *l = &dc->locs[dc->nlocs];
    memset(l, 0, sizeof *l);
    strcpy(l->path, argv[1]);
    l->delay = 0;
    dc->cur = l;
    dc->nlocs++;
    return SHK_OK;
}

static int d_limit_req(shk_conf_t *cf, int argc, char **argv, void *data)
{
    demo_conf_t *dc = conf_of(cf);
    demo_location_t *l = dc->cur;
    int have_zone = 0;
    (void)data;
    if (l->zone_name[0])
        return shk_conf_error(cf, "\"%s\" directive is duplicate", argv[0]);
    l->burst = 0;
    l->delay = 0;
    for (int i = 1; i < argc; i++) {
        const char *k, *v;
        size_t kl;
        char *end;
        if (strcmp(argv[i], "nodelay") == 0) {
            l->delay = UINT64_MAX;
            continue;
        }
        if (shk_parse_kv(argv[i], &k, &kl, &v) != SHK_OK)
            return shk_conf_error(cf, "invalid parameter \"%s\"", argv[i]);
        if (kl == 4 && strncmp(k, "zone", 4) == 0) {
            if (!*v || strlen(v) > SHK_NAME_MAX)
                return shk_conf_error(cf, "invalid zone \"%s\"", v);
            strcpy(l->zone_name, v);
            have_zone = 1;
            continue;
        }
        errno = 0;
        unsigned long long n = strtoull(v, &end, 10);
        if (!*v || *end || errno || *v == '-' || n > 1000000)
            return shk_conf_error(cf, "invalid %.*s \"%s\"", (int)kl, k, v);
        if (kl == 5 && strncmp(k, "burst", 5) == 0)
            l->burst = n * 1000;
        else if (kl == 5 && strncmp(k, "delay", 5) == 0)
            l->delay = n * 1000;
        else
            return shk_conf_error(cf, "invalid parameter \"%s\"", argv[i]);
    }
    if (!have_zone)
        return shk_conf_error(cf, "\"%s\" must have \"zone\" parameter", argv[0]);
    /* a reference: the zone may be declared later in the file */
    if (!shk_zone_add(shk_cycle_zones(shk_cycle_from_conf(cf)), l->zone_name, 0, DEMO_TAG)) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", shk_last_errmsg());
        return shk_conf_error(cf, "%s", msg);
    }
    size_t idx = (size_t)(l - dc->locs);
    snprintf(dc->files[idx], sizeof dc->files[idx], "%s", shk_conf_file(cf));
    l->file = dc->files[idx];
    l->line = shk_conf_line(cf);
    return SHK_OK;
}

static const shk_conf_directive_t demo_directives[] = {
    {"limit_req_zone", SHK_CONF_MAIN, SHK_CONF_TAKE3, d_limit_req_zone, 0, NULL},
    {"location", SHK_CONF_MAIN, SHK_CONF_TAKE1 | SHK_CONF_BLOCK, d_location, CTX_LOCATION, NULL},
    {"limit_req", CTX_LOCATION, SHK_CONF_1MORE, d_limit_req, 0, NULL},
    {NULL, 0, 0, NULL, 0, NULL},
};

static void *conf_create(shk_cycle_t *cy, void *ctx)
{
    (void)cy;
    (void)ctx;
    return calloc(1, sizeof(demo_conf_t));
}

static int conf_done(shk_cycle_t *cy, void *conf, void *ctx)
{
    demo_conf_t *dc = conf;
    (void)cy;
    (void)ctx;
    if (!dc)
        return shk_error(SHK_ENOMEM, "out of memory");
    for (unsigned i = 0; i < dc->nlocs; i++) {
        demo_location_t *l = &dc->locs[i];
        if (!l->zone_name[0])
            continue;
        for (unsigned k = 0; k < dc->nzones; k++)
            if (strcmp(dc->zones[k].name, l->zone_name) == 0)
                l->zone = &dc->zones[k];
        if (!l->zone)
            return shk_error(SHK_ECONF, "zone \"%s\" is unknown in %s:%u", l->zone_name, l->file,
                             l->line);
    }
    for (unsigned k = 0; k < dc->nzones; k++)
        shk_zone_set_init(dc->zones[k].zone, lr_init, &dc->zones[k]);
    return SHK_OK;
}

static void conf_free(void *conf, void *ctx)
{
    (void)ctx;
    free(conf);
}

void demo_app(shk_app_t *app)
{
    app->name = "demo";
    app->directives = demo_directives;
    app->conf_create = conf_create;
    app->conf_done = conf_done;
    app->conf_free = conf_free;
}

const demo_location_t *demo_location_find(const demo_conf_t *conf, const char *path)
{
    const demo_location_t *best = NULL;
    size_t blen = 0;
    if (!conf || !path)
        return NULL;
    for (unsigned i = 0; i < conf->nlocs; i++) {
        size_t n = strlen(conf->locs[i].path);
        if (strncmp(path, conf->locs[i].path, n) == 0 && n >= blen) {
            best = &conf->locs[i];
            blen = n;
        }
    }
    return best;
}

int demo_conf_worker_init(demo_conf_t *conf, shk_worker_t *w)
{
    (void)w;
    return conf ? SHK_OK : shk_error(SHK_EINVAL, "no demo configuration");
}
