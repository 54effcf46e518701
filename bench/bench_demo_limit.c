/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * bench_demo_limit.c: the demo's request limiter (demo_limit_at) by itself, in
 * one process: decisions per second for a zone holding many clients, each
 * decision a random known client (a find, the bucket, the LRU move) or, in
 * limit.new_clients, a client never seen (an insertion, and once the zone is
 * full the reclaim of the oldest node). The baseline is what a decision
 * cannot avoid: the zone's lock taken and released around a hash of the
 * address, measured in the same run.
 */
#include "demo_conf.h"
#include "shmkit.h"
#include "util_bench.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define CLIENTS 50000
#define ROUNDS 2000000

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint64_t next_rand(void)
{
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return rng * 2685821657736338717ull;
}

static shk_cycle_t *cycle;

static const demo_location_t *set_up(const char *size)
{
    static shk_app_t app;
    char path[128];
    demo_app(&app);
    snprintf(path, sizeof path, "/tmp/shk_bench_limit_%d.conf", (int)getpid());
    FILE *f = fopen(path, "w");
    if (!f)
        return NULL;
    fprintf(f,
            "limit_req_zone $binary_remote_addr zone=one:%s rate=1000r/s;\n"
            "location /l { limit_req zone=one burst=100 nodelay; }\n",
            size);
    fclose(f);
    cycle = shk_cycle_new(&app);
    shk_conf_t *cf = shk_conf_new(cycle);
    int ok = cycle && cf && shk_proc_conf(cf, cycle) == SHK_OK &&
             shk_conf_add(cf, app.directives) == SHK_OK && shk_conf_parse(cf, path) == SHK_OK &&
             app.conf_done(cycle, shk_cycle_app_conf(cycle), NULL) == SHK_OK &&
             shk_zones_create(shk_cycle_zones(cycle), NULL) == SHK_OK;
    shk_conf_free(cf);
    unlink(path);
    if (!ok) {
        fprintf(stderr, "bench_limit: %s\n", shk_last_errmsg());
        return NULL;
    }
    return demo_location_find(shk_cycle_app_conf(cycle), "/l");
}

/* The floor: lock, a hash of the 4-byte address, unlock. */
static double floor_ns(shk_slab_t *slab, const uint32_t *ips)
{
    volatile uint64_t sink = 0;
    uint64_t t0 = ub_now_ns();
    for (long i = 0; i < ROUNDS; i++) {
        uint32_t ip = ips[next_rand() % CLIENTS];
        shk_slab_lock(slab);
        uint64_t h = 14695981039346656037ull;
        for (int k = 0; k < 4; k++)
            h = (h ^ ((ip >> (8 * k)) & 0xff)) * 1099511628211ull;
        sink += h;
        shk_slab_unlock(slab);
    }
    (void)sink;
    return (double)(ub_now_ns() - t0) / ROUNDS;
}

int main(void)
{
    static uint32_t ips[CLIENTS];
    unsigned d;
    const demo_location_t *l = set_up("64m");
    if (!l)
        return 1;
    for (int i = 0; i < CLIENTS; i++) {
        ips[i] = (uint32_t)next_rand();
        demo_limit_at(l, &ips[i], 4, 1000, &d);
    }
    if (demo_limit_nodes(l) != CLIENTS) {
        fprintf(stderr, "bench_limit: %llu nodes, wanted %d\n",
                (unsigned long long)demo_limit_nodes(l), CLIENTS);
        return 1;
    }
    shk_slab_t *slab = shk_zone_slab(shk_zones_find(shk_cycle_zones(cycle), "one"));
    double base = floor_ns(slab, ips);

    /* known clients; the clock moves 1 ms per 1000 decisions (no expiry) */
    long passed = 0;
    uint64_t t0 = ub_now_ns();
    for (long i = 0; i < ROUNDS; i++)
        passed += demo_limit_at(l, &ips[next_rand() % CLIENTS], 4, 1000 + (uint64_t)i / 1000,
                                &d) == DEMO_LIMIT_PASS;
    double known = (double)(ub_now_ns() - t0) / ROUNDS;
    if (demo_limit_check(l) != SHK_OK || passed == 0) {
        fprintf(stderr, "bench_limit: %s (passed %ld)\n", shk_last_errmsg(), passed);
        return 1;
    }
    ub_report("limit.known_clients", 1e9 / known, "decisions/s", "lock_hash_floor", 1e9 / base);
    shk_cycle_free(cycle);

    /* new clients in a 1 MiB zone: insertions, and reclaims once it is full */
    if (!(l = set_up("1m")))
        return 1;
    t0 = ub_now_ns();
    for (long i = 0; i < ROUNDS; i++) {
        uint32_t ip = (uint32_t)next_rand();
        demo_limit_at(l, &ip, 4, 1000 + (uint64_t)i / 1000, &d);
    }
    double fresh = (double)(ub_now_ns() - t0) / ROUNDS;
    if (demo_limit_check(l) != SHK_OK) {
        fprintf(stderr, "bench_limit: %s\n", shk_last_errmsg());
        return 1;
    }
    ub_report("limit.new_clients", 1e9 / fresh, "decisions/s", "lock_hash_floor", 1e9 / base);
    shk_cycle_free(cycle);
    return 0;
}
