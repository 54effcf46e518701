/*
 * bench_chan_lib.c: the channel store in the library, against the same
 * fan-out done with the bus alone, measured in the same run. 4 worker
 * processes with 250 subscribers each on one channel (1,000 subscribers);
 * the parent (not a worker) publishes. chan: shk_chan_publish, one alert
 * per worker naming the message written once in the zone, each worker
 * calling its 250 callbacks with the data in place. Baseline: the parent
 * shk_bus_broadcast()s the whole message to the 4 workers, each calling
 * its 250 callbacks from its handler. Figures: publishes/s (the
 * publisher's loop alone) and deliveries/s (until every subscriber has
 * every message), for 64-byte and 16 KiB messages; alerts per publish; and
 * zone bytes per stored message (64 B and 16 KiB) against the data itself.
 */
#include "shmkit.h"
#include "util_bench.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define W 4
#define SUBS 250
#define MB (1024u * 1024u)

typedef struct {
    _Atomic int ready;
    _Atomic long done;
} shared_t;

static shared_t *S;
static shk_zones_t *reg;
static shk_zone_t *czone, *bzone;
static shk_bus_t *bus;
static shk_chan_t *ch;
static long nmsg;
static unsigned long sink;

static void die(const char *what)
{
    fprintf(stderr, "bench_chan_lib: %s: %s\n", what, shk_last_errmsg());
    exit(1);
}

static void setup(const shk_chan_opts_t *o)
{
    if (reg) {
        shk_chan_close(ch);
        shk_bus_close(bus);
        shk_zones_free(reg);
    }
    reg = shk_zones_new(NULL);
    czone = shk_zone_add(reg, "chan", 256 * MB, "bench");
    bzone = shk_zone_add(reg, "bus", 8 * MB + W * (256 * 1024 + 4096), "bench");
    if (!czone || !bzone || shk_zones_create(reg, NULL) != SHK_OK)
        die("zones");
    if (!(bus = shk_bus_create(bzone, W, 256 * 1024)))
        die("bus");
    if (!(ch = shk_chan_create(czone, o)))
        die("store");
    shk_chan_set_bus(ch, bus);
    memset(S, 0, sizeof *S);
}

/* ---- the subscribers' work, the same on both sides ---------------------------- */

typedef struct {
    long got;
} sub_t;

static void consume(sub_t *s, const void *data, size_t len)
{
    /* read the first and the last byte: the data is there */
    sink += ((const unsigned char *)data)[0] + ((const unsigned char *)data)[len - 1];
    s->got++;
}

static void on_chan(shk_chan_sub_t *sub, const shk_chan_msg_t *m, void *ctx)
{
    (void)sub;
    consume(ctx, m->data, m->len);
}

static sub_t *subs;

/* The baseline's subscribers, as an application with the bus alone would
 * keep them: a list of records, each with its callback. */
typedef struct bsub_s {
    void (*fn)(void *ctx, const void *data, size_t len);
    void *ctx;
    struct bsub_s *next;
} bsub_t;

static bsub_t *bsubs;

static void on_bsub(void *ctx, const void *data, size_t len)
{
    consume(ctx, data, len);
}

static void on_bus(shk_bus_t *b, const char *name, const void *data, size_t len, void *ctx)
{
    (void)b;
    (void)name;
    (void)ctx;
    for (bsub_t *s = bsubs; s; s = s->next)
        s->fn(s->ctx, data, len);
}

static long total_got(void)
{
    long n = 0;
    for (int j = 0; j < SUBS; j++)
        n += subs[j].got;
    return n;
}

static int worker(int i, void *arg)
{
    int use_chan = (int)(intptr_t)arg;
    subs = calloc(SUBS, sizeof *subs);
    if (shk_bus_join(bus, (unsigned)i) != SHK_OK)
        die("join");
    if (use_chan) {
        if (shk_chan_join(ch, bus) < 0)
            die("chan join");
        for (int j = 0; j < SUBS; j++) {
            shk_chan_sub_t *s = shk_chan_sub_new(ch, on_chan, &subs[j]);
            if (!s || shk_chan_sub_add(s, "b", NULL) != SHK_OK)
                die("subscribe");
        }
    } else {
        for (int j = SUBS - 1; j >= 0; j--) {
            bsub_t *s = malloc(sizeof *s);
            *s = (bsub_t){on_bsub, &subs[j], bsubs};
            bsubs = s;
        }
        shk_bus_on(bus, "m", on_bus, NULL);
    }
    atomic_fetch_add(&S->ready, 1);
    while (total_got() < nmsg * SUBS) {
        if (shk_bus_dispatch(bus, 256) <= 0) {
            if (use_chan && shk_chan_tick(ch) > 0)
                continue;
            shk_bus_wait(bus, 1);
        }
        if (use_chan)
            shk_chan_tick(ch);
    }
    atomic_fetch_add(&S->done, 1);
    return sink == 1; /* keep the reads */
}

/* ---- one run ------------------------------------------------------------------- */

typedef struct {
    double pub_s, all_s;
    uint64_t alerts;
} run_t;

static run_t run(int use_chan, size_t len, long n)
{
    static char data[16384];
    shk_bus_bcast_t res;
    shk_chan_slot_stats_t cs;
    pid_t pids[W];
    run_t r = {0, 0, 0};
    uint64_t t0, t1;
    int st;
    nmsg = n;
    memset(data, 'x', sizeof data);
    setup(&(shk_chan_opts_t){.max_message = 65536});
    for (int i = 0; i < W; i++) {
        pids[i] = fork();
        if (pids[i] == 0)
            _exit(worker(i, (void *)(intptr_t)use_chan));
    }
    while (atomic_load(&S->ready) < W)
        usleep(1000);
    t0 = ub_now_ns();
    for (long k = 0; k < n; k++) {
        if (use_chan) {
            if (shk_chan_publish(ch, "b", data, len, NULL, NULL, NULL) != SHK_OK)
                die("publish");
            continue;
        }
        /* a full queue: the same alert again to the slots that missed it */
        if (shk_bus_broadcast(bus, "m", data, len, &res) == SHK_OK)
            continue;
        for (int t = 0; t < W; t++) {
            shk_bus_slot_stats_t q;
            if (!(res.failed >> t & 1) || shk_bus_slot_stats(bus, (unsigned)t, &q) != SHK_OK)
                continue;
            while (res.failed >> t & 1)
                if (shk_bus_send(bus, q.pid, "m", data, len) == SHK_OK)
                    res.failed &= ~(1ULL << t);
        }
    }
    t1 = ub_now_ns();
    for (int i = 0; i < W; i++)
        if (waitpid(pids[i], &st, 0) != pids[i] || !WIFEXITED(st) || WEXITSTATUS(st) > 1)
            die("a worker failed");
    r.pub_s = (double)(t1 - t0) / 1e9;
    r.all_s = (double)(ub_now_ns() - t0) / 1e9;
    if (use_chan)
        for (int i = 0; i < W; i++)
            if (shk_chan_slot_stats(ch, (unsigned)i, &cs) == SHK_OK)
                r.alerts += cs.alerts + cs.alerts_missed;
    return r;
}

/* The median of 3 alternating runs of each side. */
static void compare(const char *tag, size_t len, long n)
{
    double cp[3], cd[3], bp[3], bd[3];
    char name[64];
    uint64_t alerts = 0;
    for (int k = 0; k < 3; k++) {
        run_t c = run(1, len, n), b = run(0, len, n);
        cp[k] = n / c.pub_s;
        cd[k] = (double)n * W * SUBS / c.all_s;
        bp[k] = n / b.pub_s;
        bd[k] = (double)n * W * SUBS / b.all_s;
        alerts = c.alerts;
    }
    snprintf(name, sizeof name, "chan.publish_%s", tag);
    ub_report(name, ub_median(cp, 3), "msg/s", "bus_broadcast", ub_median(bp, 3));
    snprintf(name, sizeof name, "chan.deliver_%s", tag);
    ub_report(name, ub_median(cd, 3), "deliveries/s", "bus_broadcast", ub_median(bd, 3));
    if (len == 64)
        ub_report("chan.alerts_per_publish", (double)alerts / n, "alerts", "subscribers",
                  W * SUBS);
}

/* Zone bytes per stored message: pages the slab gave out, per message. */
static double zone_bytes(size_t len, int n)
{
    static char data[16384];
    shk_slab_stats_t a, b;
    setup(&(shk_chan_opts_t){.store_messages = 1, .max_stored = 100000, .max_message = 65536});
    if (shk_chan_publish(ch, "s", data, len, NULL, NULL, NULL) != SHK_OK)
        die("publish");
    shk_slab_stats(shk_zone_slab(czone), &a);
    for (int i = 0; i < n; i++)
        if (shk_chan_publish(ch, "s", data, len, NULL, NULL, NULL) != SHK_OK)
            die("publish");
    shk_slab_stats(shk_zone_slab(czone), &b);
    return (double)(a.pages_free - b.pages_free) * (double)a.page_size / n;
}

int main(void)
{
    S = ub_shared(sizeof *S);
    compare("64", 64, 100000);
    compare("16k", 16384, 10000);
    ub_report("chan.zone_bytes_64", zone_bytes(64, 20000), "bytes", "data", 64);
    ub_report("chan.zone_bytes_16k", zone_bytes(16384, 2000), "bytes", "data", 16384);
    return 0;
}
