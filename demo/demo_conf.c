/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * demo_conf.c: the demo's directives (http and server blocks, location with
 * nginx's match modifiers, limit_req_zone, limit_req; push-stream's come
 * from push_conf.c), nginx's choice of a location, and the request limiter: nginx's leaky bucket (excess in thousandths of a
 * request, drained at `rate` per second, compared with `burst`), with one
 * node per client address in the library's red-black tree (shk_rbtree,
 * keyed by a hash of the address) and in an LRU list, both made of slab
 * offsets inside the limit zone, under the zone's slab lock. Stale nodes
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
#define CTX_HTTP (SHK_CONF_USER << 1)
#define CTX_SERVER (SHK_CONF_USER << 2)
#define CTX_OUTER (SHK_CONF_MAIN | CTX_HTTP | CTX_SERVER)
#define KEY_MAX 16

struct demo_limit_zone_s {
    char name[SHK_ZONE_NAME_MAX + 1];
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
    regex_t re[DEMO_MAX_LOCATIONS]; /* of the DEMO_MATCH_REGEX locations */
    int nhttp, nserver;
    push_main_t pm;
    push_loc_t pdef; /* push-stream settings given outside locations */
};

/* ---- shared state --------------------------------------------------------------- */

typedef struct lr_sh_s {
    shk_rbtree_t tree;   /* nodes by (hash of the address, length, address) */
    uint64_t head, tail; /* LRU: head most recently used (slab offsets) */
} lr_sh_t;

typedef struct lr_node_s {
    shk_rbtree_node_t rb; /* first: the comparator casts; rb.key is the hash */
    uint64_t prev, next;  /* LRU links */
    int64_t excess;       /* thousandths of a request */
    uint64_t last;        /* ms of the last accounted request */
    uint32_t len;
    uint8_t key[KEY_MAX];
} lr_node_t;

typedef struct lr_s {
    shk_slab_t *slab;
    char *base; /* the pool's base: tree and LRU offsets count from it */
    lr_sh_t *sh;
    uint64_t rate;
} lr_t;

/* Nodes reached through links the zone's lock keeps sound; the check
 * (lr_check) validates every offset before it follows one. */
#define N(o) ((lr_node_t *)(t->base + (o)))

static uint64_t hash_key(const uint8_t *k, size_t n)
{
    uint64_t h = 14695981039346656037ull; /* FNV-1a, 64 bits */
    for (size_t i = 0; i < n; i++)
        h = (h ^ k[i]) * 1099511628211ull;
    return h;
}

/* Ties of the hash: shorter address first, then the bytes. */
static int lr_cmp(const shk_rbtree_node_t *a, const shk_rbtree_node_t *b, void *ctx)
{
    const lr_node_t *x = (const lr_node_t *)a, *y = (const lr_node_t *)b;
    (void)ctx;
    if (x->len != y->len)
        return x->len < y->len ? -1 : 1;
    return memcmp(x->key, y->key, x->len);
}

/* [off, off + len) inside [0, size), without overflow. */
static int span_ok(uint64_t off, uint64_t len, uint64_t size)
{
    return off <= size && len <= size - off;
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
    shk_rbtree_delete(&t->sh->tree, t->base, &N(n)->rb);
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
    lr_t tt = {slab, shk_slab_base(slab), shk_zone_data(lz->zone), lz->rate}, *t = &tt;
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
    lr_sh_t *sh = shk_slab_calloc(shk_zone_slab(zone), sizeof *sh); /* zero: an empty tree */
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
    lr_node_t probe;
    shk_rbtree_node_t *found;
    int verdict = DEMO_LIMIT_PASS;
    int64_t excess = 0;

    *delay_ms = 0;
    if (!loc || !(lz = loc->zone))
        return DEMO_LIMIT_PASS;
    if (keylen == 0 || keylen > KEY_MAX)
        return DEMO_LIMIT_REJECT;
    t->slab = shk_zone_slab(lz->zone);
    t->rate = lz->rate;
    if (!shk_shmtx_held(shk_slab_lock(t->slab)))
        return DEMO_LIMIT_REJECT;
    t->base = shk_slab_base(t->slab);
    t->sh = shk_zone_data(lz->zone);
    if (!t->sh) {
        shk_slab_unlock(t->slab);
        return DEMO_LIMIT_REJECT;
    }
    expire(t, now, 0);
    probe.rb.key = hash_key(key, keylen);
    probe.len = (uint32_t)keylen;
    memcpy(probe.key, key, keylen);
    found = shk_rbtree_find(&t->sh->tree, t->base, &probe.rb, lr_cmp, NULL);
    if (found) {
        lr_node_t *x = (lr_node_t *)found;
        uint64_t cur = shk_slab_off(t->slab, x);
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
        /* may run lr_reclaim, which drops the oldest node: nothing found
         * above is held across it */
        lr_node_t *x = shk_slab_calloc_locked(t->slab, sizeof *x);
        if (!x) {
            shk_log(SHK_LOG_ERR, "limit_req zone \"%s\": could not allocate node", lz->name);
            verdict = DEMO_LIMIT_REJECT;
        } else {
            x->rb.key = probe.rb.key;
            x->len = probe.len;
            memcpy(x->key, key, keylen);
            x->excess = 0;
            x->last = now;
            shk_rbtree_insert(&t->sh->tree, t->base, &x->rb, lr_cmp, NULL);
            lru_push(t, shk_slab_off(t->slab, x));
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
    return sh ? shk_rbtree_count(&sh->tree) : 0;
}

/* The tree's own rules (shk_rbtree_check: every link inside the zone), then
 * every node whole inside the zone with a sane key, its hash in rb.key, one
 * node per address in order; then the LRU list: every link inside the
 * zone, prev links pointing back, every node in the tree, as many nodes as
 * the tree, the tail its last. Every walk is bounded by the tree's count. */
static int lr_check(lr_t *t)
{
    size_t size = shk_slab_size(t->slab);
    uint64_t count = shk_rbtree_count(&t->sh->tree), lru = 0, o, p;
    const lr_node_t *prev = NULL;
    int rc = shk_rbtree_check(&t->sh->tree, t->base, size, NULL, NULL);
    if (rc != SHK_OK)
        return rc;
    for (shk_rbtree_node_t *n = shk_rbtree_min(&t->sh->tree, t->base); n;
         n = shk_rbtree_next(t->base, n)) {
        const lr_node_t *x = (const lr_node_t *)n;
        o = shk_slab_off(t->slab, x);
        if (!span_ok(o, sizeof *x, size))
            return shk_error(SHK_ECORRUPT, "node 0x%llx runs past the zone", (unsigned long long)o);
        if (x->len == 0 || x->len > KEY_MAX)
            return shk_error(SHK_ECORRUPT, "node 0x%llx has a key of %u bytes",
                             (unsigned long long)o, x->len);
        if (x->rb.key != hash_key(x->key, x->len))
            return shk_error(SHK_ECORRUPT, "node 0x%llx: its key does not hash to %llu",
                             (unsigned long long)o, (unsigned long long)x->rb.key);
        if (prev && prev->rb.key == x->rb.key && lr_cmp(&prev->rb, &x->rb, NULL) >= 0)
            return shk_error(SHK_ECORRUPT, "node 0x%llx: an address out of order or twice",
                             (unsigned long long)o);
        prev = x;
    }
    for (o = t->sh->head, p = 0; o; p = o, o = N(o)->next) {
        if (++lru > count)
            return shk_error(SHK_ECORRUPT, "lru list longer than the tree's %llu nodes",
                             (unsigned long long)count);
        if (o % sizeof(uint64_t) || !span_ok(o, sizeof(lr_node_t), size))
            return shk_error(SHK_ECORRUPT, "lru link 0x%llx is outside the zone",
                             (unsigned long long)o);
        if (N(o)->prev != p)
            return shk_error(SHK_ECORRUPT, "lru node 0x%llx links back to 0x%llx, not 0x%llx",
                             (unsigned long long)o, (unsigned long long)N(o)->prev,
                             (unsigned long long)p);
        /* safe: tree nodes were checked above, and lr_cmp reads the probe's
         * key only when its length equals a tree node's */
        if (shk_rbtree_find(&t->sh->tree, t->base, &N(o)->rb, lr_cmp, NULL) != &N(o)->rb)
            return shk_error(SHK_ECORRUPT, "lru node 0x%llx is not in the tree",
                             (unsigned long long)o);
    }
    if (p != t->sh->tail)
        return shk_error(SHK_ECORRUPT, "lru tail 0x%llx, the last node 0x%llx",
                         (unsigned long long)t->sh->tail, (unsigned long long)p);
    if (lru != count)
        return shk_error(SHK_ECORRUPT, "tree holds %llu nodes, lru %llu", (unsigned long long)count,
                         (unsigned long long)lru);
    return SHK_OK;
}

int demo_limit_check(const demo_location_t *loc)
{
    lr_t tt, *t = &tt;
    int rc;
    if (!loc || !loc->zone)
        return SHK_OK;
    t->slab = shk_zone_slab(loc->zone->zone);
    rc = shk_slab_lock(t->slab);
    if (!shk_shmtx_held(rc))
        return shk_error(rc, "limit_req zone \"%s\": %s", loc->zone->name, shk_last_errmsg());
    t->base = shk_slab_base(t->slab);
    t->sh = shk_zone_data(loc->zone->zone);
    rc = t->sh ? lr_check(t) : shk_error(SHK_ECORRUPT, "no data root");
    shk_slab_unlock(t->slab);
    if (rc != SHK_OK)
        return shk_error(rc, "limit_req zone \"%s\": %s", loc->zone->name, shk_last_errmsg());
    return SHK_OK;
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
        return shk_conf_error(cf, "%s", shk_last_errmsg());
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
    const char *path = argv[argc - 1];
    int match = DEMO_MATCH_PREFIX, icase = 0;
    (void)data;
    if (argc == 3) {
        if (strcmp(argv[1], "=") == 0)
            match = DEMO_MATCH_EXACT;
        else if (strcmp(argv[1], "^~") == 0)
            match = DEMO_MATCH_NOREGEX;
        else if (strcmp(argv[1], "~") == 0 || strcmp(argv[1], "~*") == 0)
            match = DEMO_MATCH_REGEX, icase = argv[1][1] == '*';
        else
            return shk_conf_error(cf, "invalid location modifier \"%s\" (=, ^~, ~ or ~*)",
                                  argv[1]);
    }
    if (match != DEMO_MATCH_REGEX && path[0] != '/')
        return shk_conf_error(cf, "location \"%s\" must start with \"/\"", path);
    if (strlen(path) >= sizeof dc->locs[0].path)
        return shk_conf_error(cf, "location \"%s\" is too long", path);
    for (unsigned i = 0; i < dc->nlocs; i++)
        if (strcmp(dc->locs[i].path, path) == 0 &&
            (dc->locs[i].match == DEMO_MATCH_EXACT) == (match == DEMO_MATCH_EXACT))
            return shk_conf_error(cf, "duplicate location \"%s\"", path);
    if (dc->nlocs == DEMO_MAX_LOCATIONS)
        return shk_conf_error(cf, "too many locations (at most %d)", DEMO_MAX_LOCATIONS);
    demo_location_t *l = &dc->locs[dc->nlocs];
    memset(l, 0, sizeof *l);
    push_loc_init(&l->push);
    if (match == DEMO_MATCH_REGEX) {
        int rc = regcomp(&dc->re[dc->nlocs], path, REG_EXTENDED | (icase ? REG_ICASE : 0));
        if (rc != 0) {
            char msg[256];
            regerror(rc, &dc->re[dc->nlocs], msg, sizeof msg);
            regfree(&dc->re[dc->nlocs]);
            return shk_conf_error(cf, "invalid regular expression \"%s\": %s", path, msg);
        }
    }
    strcpy(l->path, path);
    l->match = match;
    l->delay = 0;
    dc->cur = l;
    dc->nlocs++;
    return SHK_OK;
}

/* http { } and server { }: nginx's blocks, so its files port as they are;
 * the demo has one server, and a block only groups directives. */
static int d_block(shk_conf_t *cf, int argc, char **argv, void *data)
{
    demo_conf_t *dc = conf_of(cf);
    int *n = argv[0][0] == 'h' ? &dc->nhttp : &dc->nserver;
    (void)argc;
    (void)data;
    if (++*n > 1)
        return shk_conf_error(cf, "the demo serves one \"%s\" block", argv[0]);
    return SHK_OK;
}

/* server_name: one server answers every name. */
static int d_ignored(shk_conf_t *cf, int argc, char **argv, void *data)
{
    (void)cf;
    (void)argc;
    (void)argv;
    (void)data;
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
            if (!*v || strlen(v) > SHK_ZONE_NAME_MAX)
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
        return shk_conf_error(cf, "%s", shk_last_errmsg());
    }
    size_t idx = (size_t)(l - dc->locs);
    snprintf(dc->files[idx], sizeof dc->files[idx], "%s", shk_conf_file(cf));
    l->file = dc->files[idx];
    l->line = shk_conf_line(cf);
    return SHK_OK;
}

static const shk_conf_directive_t demo_directives[] = {
    {"http", SHK_CONF_MAIN, SHK_CONF_NOARGS | SHK_CONF_BLOCK, d_block, CTX_HTTP, NULL},
    {"server", SHK_CONF_MAIN | CTX_HTTP, SHK_CONF_NOARGS | SHK_CONF_BLOCK, d_block, CTX_SERVER,
     NULL},
    {"server_name", CTX_SERVER, SHK_CONF_1MORE, d_ignored, 0, NULL},
    {"limit_req_zone", SHK_CONF_MAIN | CTX_HTTP, SHK_CONF_TAKE3, d_limit_req_zone, 0, NULL},
    {"location", CTX_OUTER, SHK_CONF_TAKE1 | SHK_CONF_TAKE2 | SHK_CONF_BLOCK, d_location,
     CTX_LOCATION, NULL},
    {"limit_req", CTX_LOCATION, SHK_CONF_1MORE, d_limit_req, 0, NULL},
    {NULL, 0, 0, NULL, 0, NULL},
};

push_main_t *demo_push_main_of(shk_conf_t *cf)
{
    return &conf_of(cf)->pm;
}

push_loc_t *demo_push_loc_of(shk_conf_t *cf)
{
    demo_conf_t *dc = conf_of(cf);
    return shk_conf_context(cf) == CTX_LOCATION && dc->cur ? &dc->cur->push : &dc->pdef;
}

const push_main_t *demo_push_main(const demo_conf_t *conf)
{
    return conf ? &conf->pm : NULL;
}

static void *conf_create(shk_cycle_t *cy, void *ctx)
{
    demo_conf_t *dc = calloc(1, sizeof(demo_conf_t));
    (void)cy;
    (void)ctx;
    if (dc)
        push_loc_init(&dc->pdef);
    return dc;
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
    push_loc_t *pls[DEMO_MAX_LOCATIONS];
    const char *names[DEMO_MAX_LOCATIONS];
    for (unsigned i = 0; i < dc->nlocs; i++) {
        demo_location_t *l = &dc->locs[i];
        if (l->push.kind == PUSH_SUBSCRIBER && l->match == DEMO_MATCH_REGEX && !l->push.path &&
            !dc->pdef.path)
            return shk_error(SHK_ECONF, "location \"%s\" is a regular expression: its "
                                        "subscribers need push_stream_channels_path ($1 ...)",
                             l->path);
        pls[i] = &l->push;
        names[i] = l->path;
    }
    return push_conf_done(cy, &dc->pm, &dc->pdef, pls, names, dc->nlocs);
}

static void conf_free(void *conf, void *ctx)
{
    demo_conf_t *dc = conf;
    (void)ctx;
    if (!dc)
        return;
    for (unsigned i = 0; i < dc->nlocs; i++) {
        push_loc_free(&dc->locs[i].push);
        if (dc->locs[i].match == DEMO_MATCH_REGEX)
            regfree(&dc->re[i]);
    }
    push_loc_free(&dc->pdef);
    push_main_free(&dc->pm);
    free(dc);
}

void demo_app(shk_app_t *app)
{
    static shk_conf_directive_t all[64];
    const shk_conf_directive_t *push = push_conf_directives(CTX_LOCATION, CTX_OUTER);
    size_t n = 0;
    for (size_t i = 0; demo_directives[i].name; i++)
        all[n++] = demo_directives[i];
    for (size_t i = 0; push[i].name && n + 1 < sizeof all / sizeof all[0]; i++)
        all[n++] = push[i];
    memset(&all[n], 0, sizeof all[n]);
    app->name = "demo";
    app->directives = all;
    app->conf_create = conf_create;
    app->conf_done = conf_done;
    app->conf_free = conf_free;
}

const demo_location_t *demo_location_match(const demo_conf_t *conf, const char *path,
                                           regoff_t caps[20])
{
    const demo_location_t *best = NULL;
    size_t blen = 0;
    if (caps)
        for (int i = 0; i < 20; i++)
            caps[i] = -1;
    if (!conf || !path)
        return NULL;
    for (unsigned i = 0; i < conf->nlocs; i++) {
        const demo_location_t *l = &conf->locs[i];
        size_t n = strlen(l->path);
        if (l->match == DEMO_MATCH_EXACT && strcmp(path, l->path) == 0)
            return l;
        if ((l->match == DEMO_MATCH_PREFIX || l->match == DEMO_MATCH_NOREGEX) &&
            strncmp(path, l->path, n) == 0 && (!best || n > blen)) {
            best = l;
            blen = n;
        }
    }
    if (best && best->match == DEMO_MATCH_NOREGEX)
        return best;
    for (unsigned i = 0; i < conf->nlocs; i++) {
        regmatch_t m[10];
        if (conf->locs[i].match != DEMO_MATCH_REGEX ||
            regexec(&conf->re[i], path, 10, m, 0) != 0)
            continue;
        if (caps)
            for (int g = 0; g < 10; g++) {
                caps[2 * g] = m[g].rm_so;
                caps[2 * g + 1] = m[g].rm_eo;
            }
        return &conf->locs[i];
    }
    return best;
}

const demo_location_t *demo_location_find(const demo_conf_t *conf, const char *path)
{
    return demo_location_match(conf, path, NULL);
}

int demo_conf_worker_init(demo_conf_t *conf, shk_worker_t *w)
{
    (void)w;
    return conf ? SHK_OK : shk_error(SHK_EINVAL, "no demo configuration");
}
