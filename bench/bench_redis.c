/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * bench_redis.c: channels across instances on Redis, in the library (the
 * HTTP side: bench/redis_http.sh, the demo driven by the pub/sub load
 * client). A redis-server started here on a loopback
 * port (no persistence). Instance A: its relay and a publisher that keeps
 * WINDOW publishes in flight through it; instance B: its relay and two
 * worker processes with SUBS/2 subscribers each, spread over CHANS
 * channels. Every message carries its send time; each delivery on B
 * measures the time since. Figures per (size, channels, subscribers):
 * publishes/s accepted on A, deliveries/s on B, latency p50/p99 from A's
 * publish to B's callbacks, deliveries lost, Redis commands per publish
 * (sent by the relay, and run by the server: INFO commandstats, which
 * counts the script's own commands; nchan in Redis mode on the same server,
 * bench/nchan/redis-commands.sh, is the baseline). The floor, in the same run: the same publisher and
 * subscribers on one instance with no Redis (shk_chan_publish into the
 * store the subscribers read), paced at the rate the Redis run reached. BENCH lines: redis.lib_es1000_deliveries and
 * redis.lib_es1000_p99 (64 B, 1 channel, 1,000 subscribers) against the
 * floor; redis.lib_lost against 0 expected; redis.lib_commands_per_publish
 * (server side) against nchan's. The HTTP figures, with nchan's as their
 * baselines, are bench/redis_http.sh's (make bench-redis runs both).
 */
#include "shmkit.h"
#include "util_bench.h"

#include <errno.h>
#include <hiredis/hiredis.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MB (1024u * 1024u)
#define NW 2          /* subscriber workers on B */
#define WINDOW 32     /* publishes in flight */
#define LAT_MAX 200000 /* latency samples per worker */

typedef struct {
    _Atomic int ready, stop_relay, go;
    _Atomic long delivered[NW];
    _Atomic uint64_t last_ns[NW];
    long nlat[NW];
    double lat[NW][LAT_MAX];
    long accepted, failed;
    uint64_t pub_start, pub_end;
} shared_t;

typedef struct {
    shk_zones_t *reg;
    shk_zone_t *zone, *bzone;
    shk_bus_t *bus;
    shk_chan_t *ch;
    shk_redis_opts_t ro;
    char url[64];
    pid_t relay;
} inst_t;

static shared_t *S;
static int port;
static pid_t srv_pid;

static _Noreturn void die(const char *what)
{
    fprintf(stderr, "bench_redis: %s: %s\n", what, shk_last_errmsg());
    exit(1);
}

/* One try on a port of 20000..32767 (below the ephemeral ports); 0 if the
 * server did not come up (the port taken). */
static int srv_try(void)
{
    int fd[2];
    char p[16], buf[4096];
    size_t have = 0;
    port = 20000 + (int)(ub_now_ns() / 1000 % 12768);
    snprintf(p, sizeof p, "%d", port);
    if (pipe(fd) != 0)
        die("pipe");
    srv_pid = fork();
    if (srv_pid == 0) {
        dup2(fd[1], 1);
        close(fd[0]);
        execlp("redis-server", "redis-server", "--port", p, "--bind", "127.0.0.1", "--save", "",
               "--appendonly", "no", "--daemonize", "no", "--logfile", "", (char *)NULL);
        _exit(127);
    }
    close(fd[1]);
    for (;;) {
        struct pollfd pf = {.fd = fd[0], .events = POLLIN};
        ssize_t n;
        if (poll(&pf, 1, 10000) <= 0 || (n = read(fd[0], buf + have, sizeof buf - 1 - have)) <= 0) {
            close(fd[0]);
            kill(srv_pid, SIGKILL);
            waitpid(srv_pid, NULL, 0);
            return 0;
        }
        have += (size_t)n;
        buf[have] = '\0';
        if (strstr(buf, "Ready to accept connections"))
            break;
        if (have > sizeof buf / 2) {
            memmove(buf, buf + have - 64, 64);
            have = 64;
        }
    }
    close(fd[0]);
    return 1;
}

static void srv_start(void)
{
    for (int i = 0; i < 5; i++)
        if (srv_try())
            return;
    die("redis-server did not start (mk/deps.sh bench installs it)");
}

static void inst_make(inst_t *in, const char *name, unsigned slots)
{
    shk_chan_opts_t co = {.slots = slots, .max_stored = 10};
    memset(in, 0, sizeof *in);
    in->reg = shk_zones_new(name);
    in->zone = shk_zone_add(in->reg, "chan", 256 * MB, "bench");
    in->bzone = shk_zone_add(in->reg, "bus", shk_bus_zone_size(slots, 1 * MB) + 64 * MB, "bench");
    if (!in->zone || !in->bzone || shk_zones_create(in->reg, NULL) != SHK_OK)
        die("zones");
    if (!(in->bus = shk_bus_create(in->bzone, slots, 1 * MB)))
        die("bus");
    if (!(in->ch = shk_chan_create(in->zone, &co)))
        die("store");
    shk_chan_set_bus(in->ch, in->bus);
    if (shk_redis_setup(in->zone) != SHK_OK)
        die("redis record");
    snprintf(in->url, sizeof in->url, "redis://127.0.0.1:%d", port);
    in->ro.url = in->url;
    in->ro.ns = "bench";
    in->ro.max_stored = 10;
}

static void inst_free(inst_t *in)
{
    shk_chan_close(in->ch);
    shk_bus_close(in->bus);
    shk_zones_free(in->reg);
}

static int relay_stop(void *ctx)
{
    (void)ctx;
    return atomic_load(&S->stop_relay);
}

static void relay_start(inst_t *in)
{
    fflush(NULL);
    in->relay = fork();
    if (in->relay == 0) {
        if (shk_bus_join(in->bus, 0) != SHK_OK)
            die("relay join");
        _exit(shk_redis_run(in->zone, in->ch, in->bus, &in->ro, relay_stop, NULL) == SHK_OK ? 0
                                                                                          : 1);
    }
}

static void wait_up(inst_t *in)
{
    shk_redis_stats_t st;
    uint64_t end = ub_now_ns() + 10000000000ULL;
    struct timespec ts = {0, 2000000};
    while (shk_redis_stats(in->zone, &st) == SHK_OK && st.state != SHK_REDIS_UP) {
        if (ub_now_ns() > end)
            die("the link did not come up");
        nanosleep(&ts, NULL); /* polling the relay, not a sync */
    }
}

/* ---- a run ------------------------------------------------------------------------------ */

typedef struct {
    size_t size;
    unsigned chans, subs;
    long msgs;
    int redis;
    double rate; /* the floor's publishes/s: the redis run's, so latencies compare */
} run_t;

typedef struct {
    int w;
} subctx_t;

static void on_msg(shk_chan_sub_t *s, const shk_chan_msg_t *m, void *ctx)
{
    int w = (int)(intptr_t)ctx;
    uint64_t t0, now = ub_now_ns();
    (void)s;
    memcpy(&t0, m->data, sizeof t0);
    if (S->nlat[w] < LAT_MAX)
        S->lat[w][S->nlat[w]++] = (double)(now - t0) / 1000.0;
    atomic_fetch_add_explicit(&S->delivered[w], 1, memory_order_relaxed);
    atomic_store_explicit(&S->last_ns[w], now, memory_order_relaxed);
}

static void chan_name(char *b, size_t n, unsigned i)
{
    snprintf(b, n, "c%u", i);
}

static int sub_main(inst_t *in, const run_t *r, int w, long want)
{
    char name[16];
    unsigned per = r->subs / NW;
    if (shk_bus_join(in->bus, (unsigned)(1 + w)) != SHK_OK || shk_chan_join(in->ch, in->bus) < 0)
        die("subscriber join");
    for (unsigned k = 0; k < per; k++) {
        shk_chan_sub_t *s = shk_chan_sub_new(in->ch, on_msg, (void *)(intptr_t)w);
        chan_name(name, sizeof name, (unsigned)(w * per + k) % r->chans);
        if (!s || shk_chan_sub_add(s, name, NULL) != SHK_OK)
            die("subscribe");
    }
    atomic_fetch_add(&S->ready, 1);
    uint64_t end = ub_now_ns() + 60000000000ULL;
    while (atomic_load(&S->delivered[w]) < want && ub_now_ns() < end &&
           !atomic_load(&S->stop_relay)) {
        shk_bus_wait(in->bus, 20);
        shk_bus_dispatch(in->bus, SHK_BUS_BUDGET);
        shk_chan_tick(in->ch);
    }
    return 0;
}

typedef struct {
    int *inflight;
} pubctx_t;

static void on_done(int status, const shk_chan_msgid_t *id, const char *msg, void *ctx)
{
    int *inflight = ctx;
    (void)id;
    (void)msg;
    (*inflight)--;
    if (status == SHK_OK)
        S->accepted++;
    else
        S->failed++;
}

/* The publisher: on A through its relay (redis), or straight into the
 * store (the floor). */
static int pub_main(inst_t *in, const run_t *r)
{
    char *data = calloc(1, r->size), name[16];
    shk_redis_t *cl = NULL;
    int inflight = 0;
    if (shk_bus_join(in->bus, 7) != SHK_OK)
        die("publisher join");
    if (r->redis && !(cl = shk_redis_client(in->zone, in->bus, &in->ro)))
        die("client");
    while (!atomic_load(&S->go))
        shk_bus_wait(in->bus, 1);
    S->pub_start = ub_now_ns();
    for (long i = 0; i < r->msgs; i++) {
        uint64_t t = ub_now_ns();
        memcpy(data, &t, sizeof t);
        chan_name(name, sizeof name, (unsigned)(i % r->chans));
        if (!r->redis) {
            uint64_t due = S->pub_start + (uint64_t)((double)i * 1e9 / r->rate);
            if (due > t) { /* pacing, not a sync */
                struct timespec ts = {0, (long)(due - t)};
                nanosleep(&ts, NULL);
                t = ub_now_ns();
                memcpy(data, &t, sizeof t);
            }
            if (shk_chan_publish(in->ch, name, data, r->size, NULL, NULL, NULL) == SHK_OK)
                S->accepted++;
            else
                S->failed++;
            continue;
        }
        while (inflight >= WINDOW) {
            shk_bus_wait(in->bus, 10);
            shk_bus_dispatch(in->bus, SHK_BUS_BUDGET);
            shk_redis_tick(cl);
        }
        if (shk_redis_publish(cl, name, data, r->size, NULL, NULL, on_done, &inflight) == SHK_OK)
            inflight++;
        else
            S->failed++;
    }
    while (inflight > 0) {
        shk_bus_wait(in->bus, 10);
        shk_bus_dispatch(in->bus, SHK_BUS_BUDGET);
        shk_redis_tick(cl);
    }
    S->pub_end = ub_now_ns();
    shk_redis_close(cl);
    free(data);
    return 0;
}

typedef struct {
    double pubs, deliveries, p50, p99, lost, cmds, server_cmds;
} result_t;

/* Every command the server ran (INFO commandstats: commands inside scripts
 * count), less this INFO itself. */
static double server_calls(void)
{
    redisContext *c = redisConnect("127.0.0.1", port);
    redisReply *r;
    double n = 0;
    if (!c || c->err || !(r = redisCommand(c, "INFO commandstats")))
        die("INFO commandstats");
    for (const char *p = r->str; (p = strstr(p, "calls=")); p += 6)
        n += strtod(p + 6, NULL);
    freeReplyObject(r);
    redisFree(c);
    return n - 1;
}

/* nchan in Redis mode on the same server (bench/nchan/redis-commands.sh):
 * its commands per publish by the same count, or 0 without nchan. */
static double nchan_calls(void)
{
    char cmd[128], line[256];
    double v = 0;
    FILE *f;
    snprintf(cmd, sizeof cmd, "bench/nchan/redis-commands.sh %d 200 2>/dev/null", port);
    if (!(f = popen(cmd, "r")))
        return 0;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "NCHAN_COMMANDS_PER_PUBLISH ", 27) == 0)
            v = strtod(line + 27, NULL);
    pclose(f);
    return v;
}

static result_t run_once(const run_t *r)
{
    inst_t a, b;
    pid_t kids[NW + 1];
    result_t res = {0};
    long want = r->msgs * (long)(r->subs / NW) / (long)r->chans; /* per worker, about */
    shk_redis_stats_t st0, st1;
    memset(S, 0, sizeof *S);
    inst_make(&a, "ba", 8);
    inst_t *sub_in = &a;
    if (r->redis) {
        inst_make(&b, "bb", 8);
        relay_start(&a);
        relay_start(&b);
        wait_up(&a);
        wait_up(&b);
        sub_in = &b;
    }
    /* exactly what each worker should get */
    long exp[NW] = {0};
    for (int w = 0; w < NW; w++) {
        unsigned per = r->subs / NW;
        for (unsigned k = 0; k < per; k++) {
            unsigned c = (unsigned)(w * per + k) % r->chans;
            exp[w] += r->msgs / r->chans + ((long)c < r->msgs % r->chans);
        }
    }
    (void)want;
    for (int w = 0; w < NW; w++) {
        fflush(NULL);
        if ((kids[w] = fork()) == 0)
            _exit(sub_main(sub_in, r, w, exp[w]));
    }
    while (atomic_load(&S->ready) < NW)
        usleep(1000);
    shk_redis_stats(a.zone, &st0);
    double calls0 = r->redis ? server_calls() : 0;
    fflush(NULL);
    if ((kids[NW] = fork()) == 0)
        _exit(pub_main(&a, r));
    atomic_store(&S->go, 1);
    waitpid(kids[NW], NULL, 0);
    for (int w = 0; w < NW; w++)
        waitpid(kids[w], NULL, 0);
    shk_redis_stats(a.zone, &st1);
    double calls1 = r->redis ? server_calls() - 1 : 0; /* less the first INFO */
    uint64_t last = 0;
    long got = 0, expected = 0, nl = 0;
    for (int w = 0; w < NW; w++) {
        if (S->last_ns[w] > last)
            last = S->last_ns[w];
        got += S->delivered[w];
        expected += exp[w];
    }
    double *all = malloc(sizeof(double) * (size_t)(S->nlat[0] + S->nlat[1] + 1));
    for (int w = 0; w < NW; w++)
        for (long i = 0; i < S->nlat[w]; i++)
            all[nl++] = S->lat[w][i];
    qsort(all, (size_t)nl, sizeof *all, ub_cmp_double);
    res.pubs = (double)S->accepted / ((double)(S->pub_end - S->pub_start) / 1e9);
    res.deliveries = (double)got / ((double)(last - S->pub_start) / 1e9);
    res.p50 = nl ? all[nl / 2] : 0;
    res.p99 = nl ? all[(long)((double)nl * 0.99)] : 0;
    res.lost = (double)(expected - got);
    res.cmds = r->redis && st1.published > st0.published
                   ? (double)(st1.commands - st0.commands) / (double)(st1.published - st0.published)
                   : 0;
    res.server_cmds = r->redis && S->accepted ? (calls1 - calls0) / (double)S->accepted : 0;
    free(all);
    atomic_store(&S->stop_relay, 1);
    if (r->redis) {
        waitpid(a.relay, NULL, 0);
        waitpid(b.relay, NULL, 0);
        inst_free(&b);
    }
    inst_free(&a);
    return res;
}

int main(void)
{
    static const size_t sizes[] = {64, 16384};
    static const unsigned chans[] = {1, 100}, subs[] = {100, 1000};
    result_t es1000 = {0}, floor1000 = {0};
    double lost = 0, cmds = 0, nchan;
    S = ub_shared(sizeof *S);
    srv_start();
    nchan = nchan_calls();
    printf("%-6s %5s %5s  %12s %14s %9s %9s %6s %6s | floor: %14s %9s %9s\n", "size", "chans",
           "subs", "publishes/s", "deliveries/s", "p50 us", "p99 us", "lost", "cmd/p",
           "deliveries/s", "p50 us", "p99 us");
    for (unsigned s = 0; s < 2; s++)
        for (unsigned c = 0; c < 2; c++)
            for (unsigned k = 0; k < 2; k++) {
                run_t r = {sizes[s], chans[c], subs[k], sizes[s] > 1024 ? 1000 : 4000, 1, 0};
                result_t x = run_once(&r);
                r.redis = 0;
                r.rate = x.pubs > 0 ? x.pubs : 1000;
                result_t f = run_once(&r);
                printf("%-6zu %5u %5u  %12.0f %14.0f %9.0f %9.0f %6.0f %6.2f | floor: %14.0f "
                       "%9.0f %9.0f\n",
                       r.size, r.chans, r.subs, x.pubs, x.deliveries, x.p50, x.p99, x.lost,
                       x.cmds, f.deliveries, f.p50, f.p99);
                lost += x.lost;
                if (cmds < x.cmds)
                    cmds = x.cmds;
                if (s == 0 && c == 0 && k == 1) {
                    es1000 = x;
                    floor1000 = f;
                }
                fflush(stdout);
            }
    ub_report("redis.lib_es1000_deliveries", es1000.deliveries, "deliveries/s", "no_redis_floor",
              floor1000.deliveries);
    ub_report("redis.lib_es1000_p99", es1000.p99, "us", "no_redis_floor", floor1000.p99);
    ub_report("redis.lib_lost", lost, "deliveries", "expected", 0);
    printf("commands per publish: %.2f sent by the relay; %.2f run by the server (INFO "
           "commandstats, the script's own commands included)\n",
           cmds, es1000.server_cmds);
    if (nchan > 0)
        ub_report("redis.lib_commands_per_publish", es1000.server_cmds, "commands", "nchan_redis",
                  nchan);
    else
        ub_report("redis.lib_commands_per_publish", es1000.server_cmds, "commands",
                  "nchan_redis_unavailable", 0);
    kill(srv_pid, SIGKILL);
    waitpid(srv_pid, NULL, 0);
    return lost == 0 ? 0 : 1;
}
