/*
 * soak_master.c: `make soak [SOAK_S=60]`. A real master (shk_master_run)
 * with 4 workers under load, and random workers killed with SIGKILL every
 * few tens of milliseconds for SOAK_S seconds; then the traffic stops, the
 * queues drain, the master stops, and everything is accounted for.
 *
 * The workers send each other unicast and broadcast alerts, small and large
 * (large ones go through the bus zone's slab), each with its sender, the
 * sender's incarnation, a sequence number per receiver and a checksum; take
 * a lock of an application zone for a short section (a counter each holder
 * checks, and a "dirty" mark that a holder killed inside leaves behind); and
 * allocate and free small blocks in that zone's slab. The master checks both
 * pools (shk_slab_check) after every recovery of a dead worker, and after the
 * last worker stopped: the bus pool holds exactly the bus (header and rings)
 * and no large alert's block, the application pool no block except those of
 * workers killed between an allocation and its free, and no lock is held or
 * has waiters.
 *
 * Bus: "accepted" alerts (SHK_OK) must all be delivered (no loss: queues are
 * kept for the respawned worker, SHK_BUS_KEEP); a duplicate is allowed only
 * as docs/bus.md allows it, the one alert whose handler was running when a
 * receiver died, received again as the first alert the next worker in that
 * slot takes; anything delivered that was never sent, or that fails its
 * checksum, is corrupt. Lock: a holder that finds another live holder inside
 * is "two holders at once"; one that finds the dirty mark of a dead holder
 * without having been told SHK_EOWNERDEAD is an unreported dirty section.
 *
 * Prints one `SOAK <name> <value>` line per count and exits 1 on any loss,
 * duplicate beyond the rule, corruption, double holder, unreported dirty
 * section, unsound pool, leak or leftover waiter. Synchronisation is through
 * shared memory and the master's events; the only sleeps pace the kills.
 * With SOAK_DEBUG=1 in the environment, the final check lists every block
 * the bus pool still holds besides the bus itself.
 */
#include "shmkit.h"

#include "shk_bus_internal.h" /* the bus header's size, its claim locks, a queue's head and tail */

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define W 4
#define MAXG 4096                /* incarnations of a slot we keep books for */
#define QUEUE (256u * 1024)      /* bus_queue: large alerts from 64 KiB */
#define LARGE_MIN (QUEUE / 4)
#define CHURN 512                /* the application pool's churn: blocks of this size */
#define PAY_MAGIC 0x534f414bu    /* "SOAK" */

/* One incarnation of a sender: what it got SHK_OK for, per receiver, and
 * the send it was in the middle of (bit r: a unicast to r; bit 8: a
 * broadcast), in case it died there. */
typedef struct {
    _Atomic uint32_t uni[W], bc[W];
    _Atomic uint32_t inflight;
} sender_t;

typedef struct {
    uint32_t magic;
    uint16_t sender, kind; /* kind 0 unicast, 1 broadcast */
    uint32_t gen;          /* the sender's incarnation */
    uint32_t seq[W];       /* per receiver: how many of this kind it accepted before */
    uint32_t len;          /* the whole alert, header included */
    uint64_t sum;          /* FNV-1a of the alert with sum = 0 */
} pay_t;

typedef struct {
    /* the controller and the workers */
    _Atomic int stop_traffic, stopping;
    _Atomic pid_t pid[W];          /* the current worker of each slot, once it is ready */
    _Atomic uint32_t incarn[W];    /* incarnations started per slot */
    _Atomic uint32_t quiet[W];     /* incarnation that stopped sending */
    _Atomic uint32_t drained[W];   /* incarnation that found its queue empty after that */
    _Atomic uint64_t last[W];      /* the alert a receiver started handling last (packed id) */
    _Atomic int churning[W];       /* inside an allocation/free of the churn */
    /* counts */
    _Atomic uint64_t accepted, refused, corrupt, dup_allowed, dup_bad, lost_gap, sections,
        double_holders, dirty_reported, dirty_unreported, lock_errors, kills, recoveries,
        unsound, bad_free, churn_window_deaths, churns, worker_errors, pool_lock_deaths,
        bus_repairs;
    /* the master's final checks */
    _Atomic int final_done;
    _Atomic uint64_t bus_used_pages, bus_expected_pages, bus_blocks_live, bus_refs,
        bus_sending, app_churn_left, locks_held, lock_waiters;
    /* the books */
    sender_t snd[W][MAXG];
    _Atomic uint32_t rnext[W][W][MAXG][2]; /* receiver, sender, its incarnation, kind */
} soak_t;

static soak_t *S;

/* the application zone's shared part */
typedef struct {
    _Atomic pid_t holder;
    _Atomic uint32_t dirty;
    _Atomic uint64_t counter;
} ctl_t;

/* ---- small helpers ------------------------------------------------------------------- */

static uint64_t rnd(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545f4914f6cdd1dull;
}

static uint64_t fnv(const void *p, size_t n, uint64_t h)
{
    const unsigned char *c = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ c[i]) * 0x100000001b3ull;
    return h;
}

static uint64_t checksum(const pay_t *p)
{
    pay_t h = *p;
    h.sum = 0;
    return fnv((const char *)p + sizeof h, p->len - sizeof h,
               fnv(&h, sizeof h, 0xcbf29ce484222325ull));
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static uint64_t pack_id(unsigned s, unsigned kind, uint32_t g, uint32_t n)
{
    return (uint64_t)s << 62 | (uint64_t)kind << 61 | (uint64_t)(g & 0x1fffffff) << 32 | n;
}

/* The log: count the lines that mean a bad free; drop the expected noise
 * (a dead worker's locks, skipped holes, workers killed) and show the rest. */
static void on_log(void *ctx, int level, const char *msg)
{
    static _Atomic int shown;
    (void)ctx;
    if (strstr(msg, "slab pool") && (strstr(msg, "double free") || strstr(msg, "not at its") ||
                                     strstr(msg, "not inside")))
        S->bad_free++;
    if (strstr(msg, "bus: finished the change"))
        S->bus_repairs++;
    if ((level == SHK_LOG_ERR || strstr(msg, "bus:")) && !strstr(msg, "exited on signal 9") &&
        !strstr(msg, "out of memory") && !strstr(msg, "skipping an alert") && shown++ < 30)
        fprintf(stderr, "soak: [%d] %s\n", (int)getpid(), msg);
}

/* ---- the worker ------------------------------------------------------------------------ */

typedef struct {
    unsigned slot;
    uint32_t g;
    uint64_t prev_last; /* the last alert the slot's previous worker started */
    int first;          /* no alert taken yet */
} me_t;

static me_t me;

static void on_alert(shk_bus_t *b, const char *name, const void *data, size_t len, void *ctx)
{
    const pay_t *p = data;
    (void)b, (void)name, (void)ctx;
    if (len < sizeof *p || p->magic != PAY_MAGIC || p->len != len || p->sender >= W ||
        p->kind > 1 || p->gen == 0 || p->gen >= MAXG || checksum(p) != p->sum) {
        S->corrupt++;
        return;
    }
    unsigned r = me.slot;
    uint32_t n = p->seq[r];
    uint64_t id = pack_id(p->sender, p->kind, p->gen, n);
    int first = me.first;
    me.first = 0;
    /* "started": before the books move, so that a death between the two is
     * a redelivery the rule allows */
    S->last[r] = id;
    _Atomic uint32_t *next = &S->rnext[r][p->sender][p->gen][p->kind];
    uint32_t want = *next;
    if (n == want) {
        *next = n + 1;
    } else if (n < want) {
        if (first && id == me.prev_last)
            S->dup_allowed++;
        else
            S->dup_bad++;
    } else {
        S->lost_gap += n - want;
        *next = n + 1;
    }
}

static void fill(pay_t *p, size_t len, uint64_t *rs)
{
    p->len = (uint32_t)len;
    uint64_t x = rnd(rs);
    unsigned char *d = (unsigned char *)(p + 1);
    for (size_t i = 0; i < len - sizeof *p; i++) {
        if (i % 8 == 0)
            x = x * 6364136223846793005ull + 1442695040888963407ull;
        d[i] = (unsigned char)(x >> (i % 8 * 8));
    }
    p->sum = 0;
    p->sum = checksum(p);
}

static void send_some(shk_bus_t *bus, uint64_t *rs, pay_t *p)
{
    sender_t *sd = &S->snd[me.slot][me.g];
    uint64_t r = rnd(rs);
    size_t len = r % 16 == 0 ? LARGE_MIN + (size_t)(r >> 8) % (3 * LARGE_MIN)
                             : sizeof *p + (size_t)(r >> 8) % 1000;
    memset(p, 0, sizeof *p);
    p->magic = PAY_MAGIC;
    p->sender = (uint16_t)me.slot;
    p->gen = me.g;
    if (r % 5 == 0) {
        shk_bus_bcast_t res;
        p->kind = 1;
        for (unsigned t = 0; t < W; t++)
            p->seq[t] = sd->bc[t];
        fill(p, len, rs);
        sd->inflight = 0x100;
        shk_bus_broadcast(bus, "s", p, len, &res);
        for (unsigned t = 0; t < W; t++)
            if (res.took >> t & 1)
                sd->bc[t]++;
        S->accepted += res.delivered;
        S->refused += res.targets - res.delivered;
        sd->inflight = 0;
    } else {
        unsigned to = (unsigned)(r >> 40) % W;
        pid_t pid = S->pid[to];
        p->kind = 0;
        p->seq[to] = sd->uni[to];
        fill(p, len, rs);
        sd->inflight = 1u << to;
        int rc = pid > 0 ? shk_bus_send(bus, pid, "s", p, len) : SHK_ESRCH;
        if (rc == SHK_OK) {
            sd->uni[to]++;
            S->accepted++;
        } else {
            S->refused++;
        }
        sd->inflight = 0;
    }
}

static void lock_section(shk_shmtx_t *mtx, ctl_t *ctl)
{
    pid_t self = getpid();
    int rc = shk_shmtx_lock(mtx);
    if (!shk_shmtx_held(rc)) {
        S->lock_errors++;
        return;
    }
    pid_t h = ctl->holder;
    if (ctl->dirty) {
        if (rc == SHK_EOWNERDEAD)
            S->dirty_reported++;
        else if (h && shk_pid_alive(h))
            S->double_holders++;
        else
            S->dirty_unreported++;
    } else if (h) {
        S->double_holders++;
    }
    ctl->dirty = 1;
    ctl->holder = self;
    uint64_t v = ctl->counter;
    for (int i = 0; i < 200; i++)
        shk_cpu_relax();
    if (ctl->counter != v || ctl->holder != self)
        S->double_holders++;
    ctl->counter = v + 1;
    ctl->holder = 0;
    ctl->dirty = 0;
    S->sections++;
    shk_shmtx_unlock(mtx);
}

static void churn(shk_slab_t *slab, uint64_t *rs)
{
    S->churning[me.slot] = 1;
    unsigned char *b = shk_slab_alloc(slab, CHURN);
    if (b) {
        memset(b, (int)(rnd(rs) & 0xff), CHURN);
        shk_slab_free(slab, b);
    }
    S->churning[me.slot] = 0;
    S->churns++;
}

static int queue_empty(shk_bus_t *bus)
{
    bus_queue_t *q = &bus->b->slots[me.slot];
    return atomic_load(&q->tail) == atomic_load(&q->head);
}

static int soak_worker(shk_worker_t *w, void *ctx)
{
    shk_bus_t *bus = shk_worker_bus(w);
    shk_zone_t *zone = shk_worker_zone(w, "soak");
    shk_shmtx_t mtx;
    (void)ctx;
    me.slot = shk_worker_slot(w);
    me.g = ++S->incarn[me.slot];
    me.prev_last = S->last[me.slot];
    me.first = 1;
    if (!zone || me.g >= MAXG || shk_zone_shmtx_create(zone, &mtx, "soak") != SHK_OK) {
        S->worker_errors++;
        return 1;
    }
    ctl_t *ctl = shk_zone_data(zone);
    shk_slab_t *slab = shk_zone_slab(zone);
    uint64_t rs = (uint64_t)getpid() * 0x9e3779b97f4a7c15ull ^ now_ms();
    pay_t *p = malloc(4 * LARGE_MIN + 64);
    if (!p || shk_bus_on(bus, "s", on_alert, NULL) != SHK_OK) {
        S->worker_errors++;
        return 1;
    }
    S->pid[me.slot] = getpid(); /* ready: handlers are in place */
    while (!shk_worker_quitting()) {
        if (!S->stop_traffic) {
            send_some(bus, &rs, p);
            lock_section(&mtx, ctl);
            churn(slab, &rs);
        } else if (S->quiet[me.slot] != me.g) {
            S->quiet[me.slot] = me.g;
        } else {
            int all = 1;
            for (unsigned i = 0; i < W; i++)
                all &= S->quiet[i] == S->incarn[i];
            if (all && queue_empty(bus))
                S->drained[me.slot] = me.g;
            lock_section(&mtx, ctl); /* keeps releasing: waiter counts heal */
            shk_bus_wait(bus, 20);
        }
        shk_bus_dispatch(bus, SHK_BUS_BUDGET);
    }
    free(p);
    return 0;
}

/* ---- the master's side ---------------------------------------------------------------- */

static shk_cycle_t *the_cycle; /* in the master: the running generation */
static unsigned live;
static int pool_sound[2] = {1, 1};  /* bus pool, application pool */
static uint64_t pool_lock_taken[2]; /* their locks' forced + recovered counts */

static int init_soak_zone(shk_zone_t *zone, void *old, void *ctx)
{
    (void)old, (void)ctx;
    ctl_t *ctl = shk_slab_calloc(shk_zone_slab(zone), 8192); /* a page run, not the churn's class */
    shk_shmtx_t m;
    if (!ctl || shk_zone_shmtx_create(zone, &m, "soak") != SHK_OK)
        return SHK_ENOMEM;
    return shk_zone_set_data(zone, ctl);
}

static int conf_done(shk_cycle_t *cy, void *conf, void *ctx)
{
    (void)conf, (void)ctx;
    shk_zone_t *z = shk_zones_find(shk_cycle_zones(cy), "soak");
    if (!z)
        return shk_error(SHK_ECONF, "no soak zone");
    the_cycle = cy;
    return shk_zone_set_init(z, init_soak_zone, NULL);
}

static uint64_t used_pages(shk_slab_t *slab)
{
    shk_slab_stats_t st;
    shk_slab_stats(slab, &st);
    return st.pages_total - st.pages_free;
}

static void count_locks(shk_zone_t *z)
{
    for (unsigned i = 0; i < shk_zone_locks(z); i++) {
        shk_zone_lock_t li;
        if (shk_zone_lock_info(z, i, &li) == SHK_OK) {
            S->locks_held += li.stats.owner != 0;
            S->lock_waiters += li.stats.waiters;
        }
    }
}

static void final_checks(shk_zone_t *bz, shk_zone_t *az)
{
    shk_slab_t *bs = shk_zone_slab(bz), *as = shk_zone_slab(az);
    uint64_t ps = (uint64_t)sysconf(_SC_PAGESIZE);
    if ((shk_slab_check(bs) != SHK_OK && pool_sound[0]) || (shk_slab_check(as) != SHK_OK && pool_sound[1]))
        S->unsound++;
    /* the bus pool: its header and 4 rings, nothing else */
    S->bus_used_pages = used_pages(bs);
    S->bus_expected_pages = SHK_ALIGN_UP(shk_bus_hdr_bytes(W), ps) / ps + W * (QUEUE / ps);
    shk_bus_t *bus = shk_bus_open(bz, 0);
    if (bus) {
        shk_bus_stats_t st;
        shk_bus_stats(bus, &st);
        S->bus_blocks_live = st.large_live;
        S->bus_sending = st.large_sending;
        for (unsigned i = 0; i < W; i++) {
            shk_bus_slot_stats_t q;
            shk_bus_slot_stats(bus, i, &q);
            S->bus_refs += q.large_refs;
        }
        bus_hdr_t *b = shk_zone_root(bz, "bus");
        for (unsigned i = 0; i < W; i++) {
            shk_shmtx_stats_t ms;
            shk_shmtx_stats(&b->slots[i].claim, &ms);
            S->locks_held += ms.owner != 0;
            S->lock_waiters += ms.waiters;
        }
        shk_bus_close(bus);
    }
    if (getenv("SOAK_DEBUG")) {
        char *base = shk_slab_base(bs);
        for (uint64_t off = ps; off < shk_slab_size(bs); off += ps) {
            bus_blob_t *bl = (bus_blob_t *)(base + off);
            int ring = 0;
            bus_hdr_t *bh = shk_zone_root(bz, "bus");
            for (unsigned i = 0; i < W; i++)
                ring |= bh->slots[i].ring_off == off;
            if (shk_slab_usable(bs, bl) && !ring && (void *)bl != (void *)bh)
                fprintf(stderr, "soak: block at %llu (%zu bytes): magic %llx id %llu len %llu pid %d sealed %u targets %llx pos %llx %llx %llx %llx\n",
                        (unsigned long long)off, shk_slab_usable(bs, bl), (unsigned long long)bl->magic, (unsigned long long)bl->id, (unsigned long long)bl->len, bl->pid,
                        (unsigned)bl->sealed, (unsigned long long)bl->targets, (unsigned long long)bl->pos[0],
                        (unsigned long long)bl->pos[1], (unsigned long long)bl->pos[2], (unsigned long long)bl->pos[3]);
        }
        bus_hdr_t *b = shk_zone_root(bz, "bus");
        for (unsigned i = 0; i < W; i++)
            fprintf(stderr, "soak: queue %u head %llu tail %llu\n", i, (unsigned long long)b->slots[i].head, (unsigned long long)b->slots[i].tail);
    }
    /* the application pool: no churn block left but those of workers
     * killed inside an allocation and its free */
    shk_slab_class_stat_t cs;
    for (unsigned c = 0; shk_slab_class_stats(as, c, &cs) == SHK_OK; c++)
        if (cs.size == CHURN)
            S->app_churn_left = cs.used;
    count_locks(bz);
    count_locks(az);
}

static void on_event(const char *ev, pid_t pid, unsigned slot, void *ctx)
{
    (void)ctx, (void)pid;
    if (!strcmp(ev, "spawn")) {
        live++;
        return;
    }
    if (strcmp(ev, "exit") || !the_cycle)
        return;
    live--;
    S->recoveries++;
    if (slot < W && S->churning[slot]) {
        S->churn_window_deaths++;
        S->churning[slot] = 0;
    }
    shk_zone_t *bz = shk_zones_find(shk_cycle_zones(the_cycle), "shmkit_bus");
    shk_zone_t *az = shk_zones_find(shk_cycle_zones(the_cycle), "soak");
    if (!bz || !az)
        return;
    /* soundness after every recovery (the master has taken the dead
     * worker's locks back and reaped its bus slot); an unsound pool is
     * counted once, when it turns so, with whether the dead worker held
     * the pool's lock (force-unlocked, or taken over by a waiter) */
    shk_zone_t *zs[2] = {bz, az};
    for (int k = 0; k < 2; k++) {
        shk_zone_lock_t li;
        int held = 0;
        if (shk_zone_lock_info(zs[k], 0, &li) == SHK_OK) {
            uint64_t n = li.stats.forced + li.stats.recovered;
            held = n != pool_lock_taken[k];
            pool_lock_taken[k] = n;
            S->pool_lock_deaths += held;
        }
        int sound = shk_slab_check(shk_zone_slab(zs[k])) == SHK_OK;
        if (!sound && pool_sound[k]) {
            fprintf(stderr, "soak: %s pool unsound after the death of %d (%s the pool's lock): "
                    "%s\n", k ? "application" : "bus", (int)pid,
                    held ? "it held" : "it did not hold", shk_last_errmsg());
            S->unsound++;
        }
        pool_sound[k] = sound;
    }
    if (S->stopping && live == 0 && !S->final_done) {
        final_checks(bz, az);
        S->final_done = 1;
    }
}

static int run_master(const char *conf)
{
    shk_app_t app = {.name = "soak", .worker = soak_worker, .conf_done = conf_done};
    shk_master_opts_t o = {.startup_backoff_ms = 1, .startup_backoff_max_ms = 1,
                           .early_death_ms = 1, .on_event = on_event};
    int rc = shk_master_run(conf, &app, &o);
    if (rc != SHK_OK)
        fprintf(stderr, "soak: master: %s\n", shk_last_errmsg());
    return rc == SHK_OK ? 0 : 1;
}

/* ---- the controller ------------------------------------------------------------------- */

static void pace(unsigned ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

/* Wait until every slot has a worker that is ready (or the deadline). */
static int all_ready(uint64_t deadline)
{
    for (;;) {
        int ok = 1;
        for (unsigned i = 0; i < W; i++)
            ok &= S->pid[i] > 0 && shk_pid_alive(S->pid[i]);
        if (ok)
            return 1;
        if (now_ms() > deadline)
            return 0;
        pace(1); /* polling a respawn: not a correctness sleep */
    }
}

#define PR(name, v) printf("SOAK %s %llu\n", name, (unsigned long long)(v))

int main(int argc, char **argv)
{
    unsigned secs = argc > 1 ? (unsigned)atoi(argv[1]) : 60;
    char dir[] = "/tmp/shmkit-soak.XXXXXX", conf[64];
    uint64_t rs = (uint64_t)time(NULL) * 0x9e3779b97f4a7c15ull | 1;
    int fail = 0;

    if (!mkdtemp(dir))
        return perror("mkdtemp"), 2;
    snprintf(conf, sizeof conf, "%s/soak.conf", dir);
    FILE *f = fopen(conf, "w");
    if (!f)
        return perror(conf), 2;
    fprintf(f, "worker_processes %d;\nbus_queue 256k large=24m;\nshm_zone soak:4m;\n", W);
    fclose(f);
    S = mmap(NULL, sizeof *S, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (S == MAP_FAILED)
        return perror("mmap"), 2;
    shk_log_set(on_log, NULL, SHK_LOG_WARN);
    printf("soak: %u s, %d workers, seed %llu\n", secs, W, (unsigned long long)rs);
    fflush(stdout);

    pid_t master = fork();
    if (master == 0)
        _exit(run_master(conf));
    if (!all_ready(now_ms() + 10000)) {
        fprintf(stderr, "soak: the workers did not start\n");
        kill(master, SIGTERM);
        waitpid(master, NULL, 0);
        return 2;
    }
    uint64_t end = now_ms() + (uint64_t)secs * 1000;
    while (now_ms() < end) {
        unsigned slot = (unsigned)(rnd(&rs) % W);
        pid_t victim = S->pid[slot];
        /* forget it first, and only if it is still the slot's: its
         * successor may be quick enough to have written its own pid */
        if (victim > 0 && atomic_compare_exchange_strong(&S->pid[slot], &victim, 0) &&
            kill(victim, SIGKILL) == 0)
            S->kills++;
        if (!all_ready(now_ms() + 10000)) {
            fprintf(stderr, "soak: a worker was not respawned within 10 s:");
            for (unsigned i = 0; i < W; i++)
                fprintf(stderr, " slot %u pid %d (%s, incarnation %u)", i, (int)S->pid[i],
                        S->pid[i] > 0 && shk_pid_alive(S->pid[i]) ? "alive" : "gone",
                        (unsigned)S->incarn[i]);
            fprintf(stderr, "\n");
            if (getenv("SOAK_DEBUG")) {
                char cmd[128];
                snprintf(cmd, sizeof cmd, "ps -o pid,ppid,stat,wchan:24,cmd --ppid %d >&2",
                         (int)master);
                if (system(cmd) != 0)
                    fprintf(stderr, "soak: ps failed\n");
                pause();
            }
            fail = 1;
            break;
        }
        pace(10 + (unsigned)(rnd(&rs) % 60));
    }
    /* stop the traffic, wait for every queue to drain, stop the master */
    S->stop_traffic = 1;
    uint64_t deadline = now_ms() + 30000;
    for (;;) {
        int ok = 1;
        for (unsigned i = 0; i < W; i++)
            ok &= S->drained[i] == S->incarn[i];
        if (ok)
            break;
        if (now_ms() > deadline) {
            fprintf(stderr, "soak: the queues did not drain\n");
            fail = 1;
            break;
        }
        pace(1);
    }
    S->stopping = 1;
    kill(master, SIGQUIT);
    int st = 0;
    waitpid(master, &st, 0);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        fprintf(stderr, "soak: the master ended with status %#x\n", st);
        fail = 1;
    }

    /* the books */
    uint64_t delivered = 0, lost = 0, phantom = 0;
    for (unsigned s = 0; s < W; s++)
        for (uint32_t g = 1; g <= S->incarn[s] && g < MAXG; g++) {
            sender_t *sd = &S->snd[s][g];
            for (unsigned r = 0; r < W; r++) {
                uint32_t a[2] = {sd->uni[r], sd->bc[r]};
                uint32_t in[2] = {sd->inflight >> r & 1, sd->inflight >> 8 & 1};
                for (int k = 0; k < 2; k++) {
                    uint32_t d = S->rnext[r][s][g][k];
                    delivered += d;
                    if (d < a[k])
                        lost += a[k] - d;
                    if (d > a[k] + in[k])
                        phantom += d - a[k] - in[k];
                }
            }
        }
    PR("seconds", secs);
    PR("kills", S->kills);
    PR("recoveries", S->recoveries);
    PR("bus_accepted", S->accepted);
    PR("bus_refused", S->refused);
    PR("bus_delivered", delivered);
    PR("bus_lost", lost + S->lost_gap);
    PR("bus_duplicated_allowed", S->dup_allowed);
    PR("bus_duplicated_beyond_rule", S->dup_bad);
    PR("bus_corrupt", S->corrupt + phantom);
    PR("bus_blocks_live_at_end", S->bus_blocks_live);
    PR("bus_block_refs_at_end", S->bus_refs);
    PR("bus_blocks_sending_at_end", S->bus_sending);
    PR("bus_pool_pages_used", S->bus_used_pages);
    PR("bus_pool_pages_expected", S->bus_expected_pages);
    PR("shmtx_sections", S->sections);
    PR("shmtx_two_holders", S->double_holders);
    PR("shmtx_dirty_reported", S->dirty_reported);
    PR("shmtx_dirty_unreported", S->dirty_unreported);
    PR("shmtx_lock_errors", S->lock_errors);
    PR("shmtx_locks_held_at_end", S->locks_held);
    PR("shmtx_waiters_at_end", S->lock_waiters);
    PR("slab_unsound", S->unsound);
    PR("slab_pool_lock_deaths", S->pool_lock_deaths);
    PR("bus_journal_repairs", S->bus_repairs);
    PR("slab_bad_frees", S->bad_free);
    PR("slab_churns", S->churns);
    PR("slab_churn_blocks_left", S->app_churn_left);
    PR("slab_churn_window_deaths", S->churn_window_deaths);
    PR("worker_errors", S->worker_errors);
    fail |= !S->final_done || lost || S->lost_gap || S->dup_bad || S->corrupt || phantom ||
            S->bus_blocks_live || S->bus_refs || S->bus_sending ||
            S->bus_used_pages != S->bus_expected_pages || S->double_holders ||
            S->dirty_unreported || S->lock_errors || S->locks_held || S->lock_waiters ||
            S->unsound || S->bad_free || S->app_churn_left > S->churn_window_deaths ||
            S->worker_errors;
    printf("SOAK result %s\n", fail ? "FAIL" : "ok");
    unlink(conf);
    rmdir(dir);
    return fail;
}
