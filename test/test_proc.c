/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * test_proc.c: the supervisor, run for real in a forked master: crash and
 * respawn in the same slot; a worker killed while holding zone locks (the
 * master's force-unlock, its log line, the slab check); reload keeping one
 * zone's data and resizing another; a bad config on reload leaving the old
 * generation running; crash-loop backoff; graceful and fast stop leaving no
 * process behind; the channels directive, and a channel store shared by the
 * workers (a worker killed and respawned, its siblings told, a reload that
 * keeps the stored messages). The master reports its events through a pipe, so the test
 * waits on events, never on time.
 */
#include "shmkit.h"
#include "util_test.h"
#include "util_run.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>


/* ---- the test application ---------------------------------------------------- */

typedef struct {
    int mode;       /* what workers do, see worker_fn */
    int report_fd;  /* workers write lines here */
} app_ctx_t;

enum {
    W_DEFAULT,
    W_HOLD_LOCKS,
    W_EXIT_AT_ONCE,
    W_REPORT_DATA,
    W_IGNORE_QUIT,
    W_STUCK,
    W_REPORT_LISTEN,
    W_CHAN
};

static app_ctx_t actx;
static int ev_fd = -1;   /* master -> test: events */
static int log_fd = -1;  /* master and workers -> file: log lines */
static char conf_path[256], log_path[256];

static void wline(int fd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void wline(int fd, const char *fmt, ...)
{
    char b[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(b, sizeof b, fmt, ap);
    va_end(ap);
    if (write(fd, b, (size_t)n) != n)
        _exit(99);
}

static void log_to_file(void *ctx, int level, const char *msg)
{
    (void)ctx;
    (void)level;
    wline(log_fd, "%d %s\n", (int)getpid(), msg);
}

static void on_event(const char *ev, pid_t pid, unsigned slot, void *ctx)
{
    (void)ctx;
    wline(ev_fd, "%s %d %u\n", ev, (int)pid, slot);
}

static int counter_init(shk_zone_t *zone, void *old, void *ctx)
{
    (void)ctx;
    if (old)
        return SHK_OK;
    uint64_t *c = shk_slab_calloc(shk_zone_slab(zone), 64);
    return c ? shk_zone_set_data(zone, c) : SHK_ENOMEM;
}

static int app_done(shk_cycle_t *cy, void *conf, void *ctx)
{
    shk_zone_t *z;
    (void)conf;
    (void)ctx;
    for (unsigned i = 0; (z = shk_zones_at(shk_cycle_zones(cy), i)); i++)
        if (strcmp(shk_zone_tag(z), "shm_zone") == 0)
            shk_zone_set_init(z, counter_init, NULL);
    return SHK_OK;
}

/* W_CHAN: every worker subscribes to "t"; once the channel has 3
 * subscribers, generation 1 workers publish "hello from SLOT" once. Lines:
 * "got SLOT TEXT", "sibling SLOT OF ALIVE PID", "backlog SLOT N" (later
 * generations, which subscribe to the stored messages instead). */
static void on_chan_msg(shk_chan_sub_t *sub, const shk_chan_msg_t *m, void *ctx)
{
    shk_worker_t *w = ctx;
    (void)sub;
    if (m->flags & SHK_CHAN_MSG_BACKLOG)
        return;
    wline(actx.report_fd, "got %u %.*s\n", shk_worker_slot(w), (int)m->len,
          (const char *)m->data);
}

static void on_sib(shk_worker_t *w, unsigned slot, pid_t pid, int alive, void *ctx)
{
    (void)ctx;
    wline(actx.report_fd, "sibling %u %u %d %d\n", shk_worker_slot(w), slot, alive, (int)pid);
}

static unsigned backlog_n;

static void on_backlog(shk_chan_sub_t *sub, const shk_chan_msg_t *m, void *ctx)
{
    (void)sub;
    (void)ctx;
    backlog_n += (m->flags & SHK_CHAN_MSG_BACKLOG) != 0;
}

static int chan_worker(shk_worker_t *w, app_ctx_t *a)
{
    shk_chan_t *ch = shk_worker_chan(w);
    shk_bus_t *bus = shk_worker_bus(w);
    shk_chan_sub_t *sub;
    int published = shk_worker_generation(w) > 1;
    char text[64];
    if (!ch || shk_chan_slot(ch) < 0)
        return 5;
    shk_worker_on_sibling(w, on_sib, NULL);
    if (shk_worker_generation(w) > 1) {
        shk_chan_from_t f = {SHK_CHAN_FROM_LAST, {0, 0}, 100};
        sub = shk_chan_sub_new(ch, on_backlog, NULL);
        if (!sub || shk_chan_sub_add(sub, "t", &f) != SHK_OK)
            return 6;
        wline(a->report_fd, "backlog %u %u\n", shk_worker_slot(w), backlog_n);
    } else {
        sub = shk_chan_sub_new(ch, on_chan_msg, w);
        if (!sub || shk_chan_sub_add(sub, "t", NULL) != SHK_OK)
            return 6;
    }
    while (!shk_worker_quitting()) {
        shk_chan_info_t info;
        shk_bus_wait(bus, SHK_CHAN_TICK_MS);
        shk_bus_dispatch(bus, 64);
        shk_chan_tick(ch);
        if (!published && shk_chan_info(ch, "t", &info) == SHK_OK && info.subscribers == 3) {
            int n = snprintf(text, sizeof text, "hello from %u", shk_worker_slot(w));
            if (shk_chan_publish(ch, "t", text, (size_t)n, NULL, NULL, NULL) != SHK_OK)
                return 7;
            published = 1;
        }
    }
    shk_chan_sub_free(sub);
    return 0;
}

static int worker_fn(shk_worker_t *w, void *ctx)
{
    app_ctx_t *a = ctx;
    shk_bus_t *bus = shk_worker_bus(w);
    switch (a->mode) {
    case W_HOLD_LOCKS: {
        /* slot 0 holds a user lock and the slab lock, then reports */
        if (shk_worker_slot(w) == 0 && shk_worker_generation(w) == 1) {
            shk_zone_t *z = shk_worker_zone(w, "data");
            shk_shmtx_t m;
            if (!z || shk_zone_shmtx_create(z, &m, "counters") != SHK_OK)
                return 3;
            shk_shmtx_lock(&m);
            shk_slab_lock(shk_zone_slab(z));
            wline(a->report_fd, "locked %d\n", (int)getpid());
        }
        break;
    }
    case W_EXIT_AT_ONCE:
        if (shk_worker_slot(w) == 0)
            return 1;
        break;
    case W_REPORT_DATA: {
        shk_zone_t *keep = shk_worker_zone(w, "keep"), *grow = shk_worker_zone(w, "grow");
        uint64_t *k = shk_zone_data(keep), *g = shk_zone_data(grow);
        if (!k || !g)
            return 4;
        if (shk_worker_slot(w) == 0) {
            if (shk_worker_generation(w) == 1) {
                k[0] = 1234;
                g[0] = 5678;
            }
            wline(a->report_fd, "gen %llu keep %llu grow %llu growsize %zu\n",
                  (unsigned long long)shk_worker_generation(w), (unsigned long long)k[0],
                  (unsigned long long)g[0], shk_zone_size(grow));
        }
        break;
    }
    case W_IGNORE_QUIT:
        /* finishes only on terminate */
        while (!shk_worker_terminating()) {
            shk_bus_wait(bus, -1);
            shk_bus_dispatch(bus, 64);
        }
        return 0;
    case W_REPORT_LISTEN: {
        /* "gen G listen N PORT... END": each socket's port if it is a
         * listening socket (0 otherwise), END the descriptor past the end */
        char b[256];
        int n = snprintf(b, sizeof b, "gen %llu listen %u",
                         (unsigned long long)shk_worker_generation(w), shk_worker_nlisteners(w));
        for (unsigned i = 0; i < shk_worker_nlisteners(w); i++) {
            int fd = shk_worker_listener(w, i), acc = 0;
            struct sockaddr_in sa;
            socklen_t l = sizeof acc, al = sizeof sa;
            if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &l) != 0 || !acc ||
                getsockname(fd, (struct sockaddr *)&sa, &al) != 0)
                sa.sin_port = 0;
            n += snprintf(b + n, sizeof b - (size_t)n, " %d", ntohs(sa.sin_port));
        }
        wline(a->report_fd, "%s %d\n", b, shk_worker_listener(w, shk_worker_nlisteners(w)));
        break;
    }
    case W_CHAN:
        return chan_worker(w, a);
    case W_STUCK:
        wline(a->report_fd, "stuck %d\n", (int)getpid());
        for (;;)
            pause();
    default:
        break;
    }
    while (!shk_worker_quitting()) {
        shk_bus_wait(bus, -1);
        shk_bus_dispatch(bus, 64);
    }
    return 0;
}

/* ---- harness -------------------------------------------------------------------- */

typedef struct {
    pid_t master;
    int ev_rd;
    int rep_rd;
    char buf[8192];
    size_t len;
} harness_t;

static void write_conf(const char *text)
{
    FILE *f = fopen(conf_path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
}

static void start_master(harness_t *h, int mode, const char *conf, const shk_master_opts_t *o)
{
    int ev[2], rep[2];
    snprintf(conf_path, sizeof conf_path, "/tmp/shk_test_proc_%ld.conf", (long)getpid());
    snprintf(log_path, sizeof log_path, "/tmp/shk_test_proc_%ld.log", (long)getpid());
    write_conf(conf);
    ck_assert_int_eq(pipe(ev), 0);
    ck_assert_int_eq(pipe(rep), 0);
    memset(h, 0, sizeof *h);
    h->master = tu_fork_raw();
    if (h->master == 0) {
        shk_master_opts_t opts = {0};
        shk_app_t app = {0};
        if (o)
            opts = *o;
        close(ev[0]);
        close(rep[0]);
        ev_fd = ev[1];
        log_fd = open(log_path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0600);
        shk_log_set(log_to_file, NULL, SHK_LOG_DEBUG);
        actx.mode = mode;
        actx.report_fd = rep[1];
        app.name = "test";
        app.conf_done = app_done;
        app.worker = worker_fn;
        app.ctx = &actx;
        opts.on_event = on_event;
        int rc = shk_master_run(conf_path, &app, &opts);
        if (rc != SHK_OK)
            wline(ev_fd, "error %d %s\n", rc, shk_last_errmsg());
        tu_exit(rc == SHK_OK ? 0 : 1);
    }
    close(ev[1]);
    close(rep[1]);
    h->ev_rd = ev[0];
    h->rep_rd = rep[0];
}

/* Next line from fd (blocking, bounded by a generous liveness timeout). */
static int read_line(int fd, char *out, size_t cap)
{
    size_t n = 0;
    while (n + 1 < cap) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int r = poll(&p, 1, 30000);
        if (r <= 0)
            return -1;
        char c;
        if (read(fd, &c, 1) != 1)
            return -1;
        if (c == '\n')
            break;
        out[n++] = c;
    }
    out[n] = '\0';
    return 0;
}

/* Wait for an event line starting with `prefix`; returns its pid field. */
static pid_t await_event(harness_t *h, const char *prefix, unsigned *slot)
{
    char line[256];
    for (;;) {
        ck_assert_msg(read_line(h->ev_rd, line, sizeof line) == 0, "no \"%s\" event", prefix);
        ck_assert_msg(strncmp(line, "error", 5) != 0, "master failed: %s", line);
        if (strncmp(line, prefix, strlen(prefix)) == 0 && line[strlen(prefix)] == ' ') {
            int pid;
            unsigned s;
            ck_assert_int_eq(sscanf(line + strlen(prefix), "%d %u", &pid, &s), 2);
            if (slot)
                *slot = s;
            return pid;
        }
    }
}

static void await_spawns(harness_t *h, int n, pid_t *pids)
{
    for (int i = 0; i < n; i++) {
        unsigned slot;
        pid_t p = await_event(h, "spawn", &slot);
        if (pids)
            pids[slot] = p;
    }
}

static char *read_log(void)
{
    static char buf[65536];
    int fd = open(log_path, O_RDONLY);
    ssize_t n = fd >= 0 ? read(fd, buf, sizeof buf - 1) : 0;
    buf[n > 0 ? n : 0] = '\0';
    if (fd >= 0)
        close(fd);
    return buf;
}

static void stop_master(harness_t *h, int sig)
{
    kill(h->master, sig);
    ck_assert_int_eq(tu_wait(h->master), 0);
    close(h->ev_rd);
    close(h->rep_rd);
    unlink(conf_path);
    unlink(log_path);
}

static void assert_gone(pid_t pid)
{
    ck_assert_msg(kill(pid, 0) == -1 && errno == ESRCH, "process %d is still there", (int)pid);
}

/* ---- tests ------------------------------------------------------------------------ */

START_TEST(crash_and_respawn_same_slot)
{
    harness_t h;
    pid_t pids[4] = {0};
    start_master(&h, W_DEFAULT, "worker_processes 3;\n", NULL);
    await_spawns(&h, 3, pids);
    await_event(&h, "started", NULL);
    kill(pids[1], SIGKILL);
    unsigned slot;
    pid_t dead = await_event(&h, "exit", &slot);
    ck_assert_int_eq(dead, pids[1]);
    ck_assert_uint_eq(slot, 1);
    pid_t newpid = await_event(&h, "spawn", &slot);
    ck_assert_uint_eq(slot, 1);
    ck_assert_int_ne(newpid, pids[1]);
    char want[128];
    snprintf(want, sizeof want, "worker process %d exited on signal 9", (int)pids[1]);
    ck_assert_msg(strstr(read_log(), want), "%s", read_log());
    pids[1] = newpid;
    stop_master(&h, SIGQUIT);
    for (int i = 0; i < 3; i++)
        assert_gone(pids[i]);
}
END_TEST

START_TEST(dead_lock_holder_recovered_by_master)
{
    harness_t h;
    pid_t pids[2] = {0};
    char line[128];
    start_master(&h, W_HOLD_LOCKS, "worker_processes 2;\nshm_zone data:1m;\n", NULL);
    await_spawns(&h, 2, pids);
    ck_assert_int_eq(read_line(h.rep_rd, line, sizeof line), 0);
    int holder;
    ck_assert_int_eq(sscanf(line, "locked %d", &holder), 1);
    ck_assert_int_eq(holder, pids[0]);
    kill(holder, SIGKILL);
    ck_assert_int_eq(await_event(&h, "exit", NULL), holder);
    await_event(&h, "spawn", NULL);
    /* The new worker of slot 0 takes both locks again and keeps them. A
     * death elsewhere meanwhile must not stall the master behind them (it
     * once did: its reap waited for the pool's lock, so no "exit" came and
     * no stop could end). */
    ck_assert_int_eq(read_line(h.rep_rd, line, sizeof line), 0);
    int holder2;
    ck_assert_int_eq(sscanf(line, "locked %d", &holder2), 1);
    ck_assert_int_ne(holder2, holder);
    kill(pids[1], SIGKILL);
    ck_assert_int_eq(await_event(&h, "exit", NULL), pids[1]);
    await_event(&h, "spawn", NULL);
    char want[128];
    snprintf(want, sizeof want, "shared memory zone \"data\" was locked by %d", holder);
    char *log = read_log();
    ck_assert_msg(strstr(log, want), "%s", log);
    /* two locks: the user's and the slab pool's */
    ck_assert_msg(strstr(strstr(log, want) + 1, want), "%s", log);
    ck_assert_msg(strstr(log, "shared memory zone \"data\": slab check after recovery passed"),
                  "%s", log);
    stop_master(&h, SIGQUIT);
}
END_TEST

START_TEST(reload_keeps_data_and_resizes)
{
    harness_t h;
    char line[256];
    start_master(&h, W_REPORT_DATA,
                 "worker_processes 2;\nshm_zone keep:1m;\nshm_zone grow:1m;\n", NULL);
    pid_t old[2];
    await_spawns(&h, 2, old);
    ck_assert_int_eq(read_line(h.rep_rd, line, sizeof line), 0);
    ck_assert_str_eq(line, "gen 1 keep 1234 grow 5678 growsize 1048576");
    write_conf("worker_processes 2;\nshm_zone keep:1m;\nshm_zone grow:2m;\n");
    kill(h.master, SIGHUP);
    await_event(&h, "reload", NULL);
    ck_assert_int_eq(read_line(h.rep_rd, line, sizeof line), 0);
    ck_assert_str_eq(line, "gen 2 keep 1234 grow 0 growsize 2097152");
    /* the old generation is told to quit and goes */
    unsigned s;
    pid_t a = await_event(&h, "exit", &s), b = await_event(&h, "exit", &s);
    ck_assert((a == old[0] && b == old[1]) || (a == old[1] && b == old[0]));
    stop_master(&h, SIGQUIT);
}
END_TEST

START_TEST(bad_reload_keeps_old_generation)
{
    harness_t h;
    pid_t pids[2];
    start_master(&h, W_DEFAULT, "worker_processes 2;\nshm_zone keep:1m;\n", NULL);
    await_spawns(&h, 2, pids);
    write_conf("worker_processes 2;\nshm_zone keep:1m;\nshm_zone bad:10x;\n");
    kill(h.master, SIGHUP);
    await_event(&h, "reload-failed", NULL);
    char want[512];
    snprintf(want, sizeof want, "reload failed, the running configuration stays: invalid zone "
                                "size \"10x\" in %s:3",
             conf_path);
    ck_assert_msg(strstr(read_log(), want), "%s", read_log());
    ck_assert_int_eq(kill(pids[0], 0), 0);
    ck_assert_int_eq(kill(pids[1], 0), 0);
    /* Regression: an empty quoted word as a file's first token made the
     * reader write through NULL, and a SIGHUP with such a file killed the
     * master and every worker with it. */
    write_conf("\"\";\nworker_processes 2;\n");
    kill(h.master, SIGHUP);
    await_event(&h, "reload-failed", NULL);
    snprintf(want, sizeof want, "reload failed, the running configuration stays: unknown "
                                "directive \"\" in %s:1",
             conf_path);
    ck_assert_msg(strstr(read_log(), want), "%s", read_log());
    ck_assert_int_eq(kill(h.master, 0), 0);
    ck_assert_int_eq(kill(pids[0], 0), 0);
    ck_assert_int_eq(kill(pids[1], 0), 0);
    /* a good reload afterwards still works */
    write_conf("worker_processes 1;\nshm_zone keep:1m;\n");
    kill(h.master, SIGHUP);
    await_event(&h, "reload", NULL);
    stop_master(&h, SIGQUIT);
    assert_gone(pids[0]);
    assert_gone(pids[1]);
}
END_TEST

START_TEST(crash_loop_backs_off)
{
    harness_t h;
    shk_master_opts_t o = {.startup_backoff_ms = 10, .startup_backoff_max_ms = 40,
                           .early_death_ms = 60000};
    start_master(&h, W_EXIT_AT_ONCE, "worker_processes 2;\n", &o);
    /* slot 0 dies at once, again and again: 10, 20, 40, 40 ms */
    int spawns0 = 0;
    while (spawns0 < 5) {
        unsigned slot;
        await_event(&h, "spawn", &slot);
        spawns0 += slot == 0;
    }
    char *log = read_log();
    const char *want[] = {"respawning in 10 ms", "respawning in 20 ms", "respawning in 40 ms"};
    const char *p = log;
    for (int i = 0; i < 3; i++) {
        p = strstr(p, want[i]);
        ck_assert_msg(p != NULL, "missing \"%s\" in order:\n%s", want[i], log);
    }
    ck_assert_msg(strstr(log, "worker in slot 0 died 4 times in a row"), "%s", log);
    stop_master(&h, SIGTERM);
}
END_TEST

START_TEST(graceful_and_fast_stop_leave_nothing)
{
    harness_t h;
    pid_t pids[3];
    char line[64];

    /* graceful: workers finish and exit 0 */
    start_master(&h, W_DEFAULT, "worker_processes 3;\n", NULL);
    await_spawns(&h, 3, pids);
    stop_master(&h, SIGQUIT);
    for (int i = 0; i < 3; i++)
        assert_gone(pids[i]);

    /* fast: workers that ignore quit leave on terminate */
    start_master(&h, W_IGNORE_QUIT, "worker_processes 2;\n", NULL);
    await_spawns(&h, 2, pids);
    stop_master(&h, SIGTERM);
    for (int i = 0; i < 2; i++)
        assert_gone(pids[i]);

    /* a stuck worker is killed after the fast-stop grace */
    shk_master_opts_t o = {.fast_stop_ms = 50};
    start_master(&h, W_STUCK, "worker_processes 1;\n", &o);
    await_spawns(&h, 1, pids);
    ck_assert_int_eq(read_line(h.rep_rd, line, sizeof line), 0);
    stop_master(&h, SIGINT);
    assert_gone(pids[0]);
}
END_TEST

START_TEST(bad_first_config_fails_cleanly)
{
    harness_t h;
    char line[512];
    start_master(&h, W_DEFAULT, "worker_processes 2;\nworker_procs 3;\n", NULL);
    ck_assert_int_eq(read_line(h.ev_rd, line, sizeof line), 0);
    char want[512];
    snprintf(want, sizeof want, "error %d unknown directive \"worker_procs\" in %s:2", SHK_ECONF,
             conf_path);
    ck_assert_str_eq(line, want);
    ck_assert_int_eq(tu_wait(h.master), 1);
    close(h.ev_rd);
    close(h.rep_rd);
    unlink(conf_path);
    unlink(log_path);
}
END_TEST

/* Sockets among pid's open descriptors. */
static int count_sockets(pid_t pid)
{
    char path[64], link[64];
    int n = 0;
    snprintf(path, sizeof path, "/proc/%d/fd", (int)pid);
    DIR *d = opendir(path);
    ck_assert_ptr_nonnull(d);
    for (struct dirent *e; (e = readdir(d));) {
        ssize_t k = readlinkat(dirfd(d), e->d_name, link, sizeof link - 1);
        if (k > 0) {
            link[k] = '\0';
            n += strncmp(link, "socket:", 7) == 0;
        }
    }
    closedir(d);
    return n;
}

START_TEST(listeners_survive_a_failed_reload)
{
    harness_t h;
    char line[256], want[256], conf[256];
    int a = tu_free_port();

    snprintf(conf, sizeof conf, "worker_processes 1;\nlisten 127.0.0.1:%d;\n", a);
    start_master(&h, W_REPORT_LISTEN, conf, NULL);
    await_event(&h, "started", NULL);
    ck_assert_int_eq(read_line(h.rep_rd, line, sizeof line), 0);
    snprintf(want, sizeof want, "gen 1 listen 1 %d -1", a);
    ck_assert_str_eq(line, want);
    ck_assert_int_eq(count_sockets(h.master), 1);

    /* port b is taken (by us, after the fork: the master holds no copy),
     * so a reload that adds it fails to bind */
    int busy = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in ba = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t bl = sizeof ba;
    ck_assert_int_eq(bind(busy, (struct sockaddr *)&ba, sizeof ba), 0);
    ck_assert_int_eq(listen(busy, 1), 0);
    ck_assert_int_eq(getsockname(busy, (struct sockaddr *)&ba, &bl), 0);
    int b = ntohs(ba.sin_port);

    /* the failed reload must leave the running generation's socket open */
    snprintf(conf, sizeof conf, "worker_processes 1;\nlisten 127.0.0.1:%d;\nlisten 127.0.0.1:%d;\n",
             a, b);
    write_conf(conf);
    kill(h.master, SIGHUP);
    await_event(&h, "reload-failed", NULL);
    snprintf(want, sizeof want, "bind() to 127.0.0.1:%d failed", b);
    ck_assert_msg(strstr(read_log(), want), "%s", read_log());
    ck_assert_int_eq(count_sockets(h.master), 1);

    /* and a good reload hands it over to the new generation, with a new one */
    int c = tu_free_port();
    snprintf(conf, sizeof conf, "worker_processes 1;\nlisten 127.0.0.1:%d;\nlisten 127.0.0.1:%d;\n",
             a, c);
    write_conf(conf);
    kill(h.master, SIGHUP);
    await_event(&h, "reload", NULL);
    ck_assert_int_eq(read_line(h.rep_rd, line, sizeof line), 0);
    snprintf(want, sizeof want, "gen 2 listen 2 %d %d -1", a, c);
    ck_assert_str_eq(line, want);
    ck_assert_int_eq(count_sockets(h.master), 2);
    stop_master(&h, SIGQUIT);
    close(busy);
}
END_TEST

/* A configuration text and the message shk_master_check must give for it
 * ("%s" standing for the file's path). */
typedef struct {
    const char *text, *msg;
} conf_case_t;

static void expect_conf_errors(const shk_app_t *app, const conf_case_t *bad, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char want[512];
        write_conf(bad[i].text);
        ck_assert_int_eq(shk_master_check(conf_path, app), SHK_ECONF);
        tu_subst(want, sizeof want, bad[i].msg, conf_path);
        ck_assert_str_eq(shk_last_errmsg(), want);
    }
}

START_TEST(check_config)
{
    shk_app_t app = {0};
    snprintf(conf_path, sizeof conf_path, "/tmp/shk_test_proc_%ld.conf", (long)getpid());
    write_conf("worker_processes auto;\nlisten 127.0.0.1:0;\npid /tmp/x.pid;\n"
               "worker_shutdown_timeout 5s;\nbus_queue 64k large=8m;\n");
    ck_assert_int_eq(shk_master_check(conf_path, &app), SHK_OK);
    const conf_case_t bad[] = {
        {"worker_processes 0;\n", "invalid value \"0\" in \"worker_processes\" directive in %s:1"},
        {"worker_processes 65;\n", "\"worker_processes\" is 65, the most shmkit supports is 64 in %s:1"},
        {"worker_shutdown_timeout 5x;\n",
         "invalid value \"5x\" in \"worker_shutdown_timeout\" directive in %s:1"},
        {"bus_queue 1k;\n", "invalid bus queue size \"1k\" (at least 4k) in %s:1"},
    };
    expect_conf_errors(&app, bad, sizeof bad / sizeof bad[0]);
    unlink(conf_path);
}
END_TEST

/* Read report lines until every line of want[] was seen (in any order,
 * other lines skipped). */
static void await_lines(harness_t *h, const char **want, int n)
{
    int seen[32] = {0}, left = n;
    char line[256];
    while (left > 0) {
        int first = 0;
        while (seen[first])
            first++;
        ck_assert_msg(read_line(h->rep_rd, line, sizeof line) == 0,
                      "%d report lines missing, \"%s\" among them", left, want[first]);
        for (int i = 0; i < n; i++)
            if (!seen[i] && strcmp(line, want[i]) == 0) {
                seen[i] = 1;
                left--;
                break;
            }
    }
}

START_TEST(channels_across_workers)
{
    harness_t h;
    pid_t pids[3] = {0};
    char l[8][64];
    const char *hello[9], *after[7];
    start_master(&h, W_CHAN,
                 "worker_processes 3;\n"
                 "channels 4m store_messages=on max_stored=5 ttl=10m inactivity=off;\n",
                 NULL);
    await_spawns(&h, 3, pids);
    static char g[9][64];
    for (int i = 0; i < 9; i++) {
        snprintf(g[i], sizeof g[i], "got %d hello from %d", i / 3, i % 3);
        hello[i] = g[i];
    }
    await_lines(&h, hello, 9); /* every worker got every worker's message */

    /* a worker dies: the master drops its subscription, its siblings hear
     * of the death and of the respawn, the new one's message reaches all */
    kill(pids[2], SIGKILL);
    unsigned slot;
    ck_assert_int_eq(await_event(&h, "exit", &slot), pids[2]);
    pid_t np = await_event(&h, "spawn", &slot);
    ck_assert_uint_eq(slot, 2);
    for (int i = 0; i < 3; i++)
        snprintf(l[i], sizeof l[i], "got %d hello from 2", i);
    snprintf(l[3], sizeof l[3], "sibling 0 2 0 %d", (int)pids[2]);
    snprintf(l[4], sizeof l[4], "sibling 1 2 0 %d", (int)pids[2]);
    snprintf(l[5], sizeof l[5], "sibling 0 2 1 %d", (int)np);
    snprintf(l[6], sizeof l[6], "sibling 1 2 1 %d", (int)np);
    for (int i = 0; i < 7; i++)
        after[i] = l[i];
    await_lines(&h, after, 7);

    /* a reload keeps the store: generation 2 finds the 4 stored messages */
    kill(h.master, SIGHUP);
    await_event(&h, "reload", NULL);
    const char *bl[] = {"backlog 0 4", "backlog 1 4", "backlog 2 4"};
    await_lines(&h, bl, 3);
    ck_assert_msg(!strstr(read_log(), "channel store after worker"), "%s", read_log());
    stop_master(&h, SIGQUIT);
}
END_TEST

START_TEST(channels_directive)
{
    shk_app_t app = {0};
    snprintf(conf_path, sizeof conf_path, "/tmp/shk_test_proc_%ld.conf", (long)getpid());
    write_conf("channels 1m slots=4 store_messages=on max_stored=3 ttl=1m inactivity=off "
               "max_channels=10 max_wildcard_channels=5 max_subscribers=9 max_message=4k "
               "max_id=32 wildcard=b_ max_wildcard=2 events=ev;\n");
    ck_assert_msg(shk_master_check(conf_path, &app) == SHK_OK, "%s", shk_last_errmsg());
    const conf_case_t bad[] = {
        {"channels 0;\n", "invalid channel store size \"0\" in %s:1"},
        {"channels 1m;\nchannels 1m;\n", "\"channels\" directive is duplicate in %s:2"},
        {"channels 1m slots=64;\n", "\"slots=64\": at most 63 in %s:1"},
        {"channels 1m slots=0;\n",
         "invalid value in \"slots=0\" of \"channels\" directive in %s:1"},
        {"channels 1m store_messages=yes;\n",
         "invalid value in \"store_messages=yes\" of \"channels\" directive in %s:1"},
        {"channels 1m ttl=5x;\n", "invalid value in \"ttl=5x\" of \"channels\" directive in %s:1"},
        {"channels 1m max_id=300;\n", "\"max_id=300\": at most 255 in %s:1"},
        {"channels 1m max_message=0;\n",
         "invalid value in \"max_message=0\" of \"channels\" directive in %s:1"},
        {"channels 1m color=red;\n",
         "invalid parameter \"color=red\" in \"channels\" directive in %s:1"},
        {"channels 1m wildcard=a/b;\n",
         "invalid wildcard prefix: channel id \"a/b\" has byte 0x2f at 1 (allowed: A-Z a-z 0-9 "
         "- . _ ~ : @ ! $ & ' ( ) * + , ; =) in %s:1"},
        {"channels 1m max_id=2 events=long;\n",
         "events channel \"long\" is longer than max_id=2 in %s:1"},
    };
    expect_conf_errors(&app, bad, sizeof bad / sizeof bad[0]);
    unlink(conf_path);
}
END_TEST

/* An application's conf_done declares the store (shk_cycle_set_chan): the
 * options it may give, the refusals, and `channels` then being a duplicate. */
static int set_chan_rc;
static shk_chan_opts_t set_chan_opts;
static int set_chan_done(shk_cycle_t *cy, void *conf, void *ctx)
{
    (void)conf;
    (void)ctx;
    set_chan_rc = shk_cycle_set_chan(cy, 1 << 20, &set_chan_opts);
    if (set_chan_rc == SHK_OK && shk_cycle_chan_size(cy) != 1 << 20)
        return shk_error(SHK_EINVAL, "chan size %zu", shk_cycle_chan_size(cy));
    return SHK_OK;
}

START_TEST(set_chan_from_the_application)
{
    shk_app_t app = {.conf_done = set_chan_done};
    char prefix[] = "b_", events[] = "ev";
    snprintf(conf_path, sizeof conf_path, "/tmp/shk_test_proc_%ld.conf", (long)getpid());
    ck_assert_int_eq(shk_cycle_set_chan(NULL, 1, NULL), SHK_EINVAL);
    ck_assert_int_eq(shk_cycle_chan_size(NULL), 0);

    write_conf("worker_processes 2;\n");
    set_chan_opts = (shk_chan_opts_t){.store_messages = 1, .max_stored = 3,
                                      .wildcard_prefix = prefix, .events_channel = events};
    ck_assert_msg(shk_master_check(conf_path, &app) == SHK_OK, "%s", shk_last_errmsg());
    ck_assert_int_eq(set_chan_rc, SHK_OK);
    /* the strings were copied: the caller's may go */
    prefix[0] = events[0] = '/';

    write_conf("channels 1m;\n");
    ck_assert_msg(shk_master_check(conf_path, &app) == SHK_OK, "%s", shk_last_errmsg());
    ck_assert_int_eq(set_chan_rc, SHK_EEXIST);

    /* channels_redis takes the store conf_done declares (the demo's
     * push_stream_shared_memory_size); without one it is still refused */
    set_chan_opts = (shk_chan_opts_t){.store_messages = 1};
    write_conf("channels_redis redis://127.0.0.1:1 namespace=t;\n");
    ck_assert_msg(shk_master_check(conf_path, &app) == SHK_OK, "%s", shk_last_errmsg());
    ck_assert_int_eq(set_chan_rc, SHK_OK);
    shk_app_t bare = {0};
    ck_assert_int_eq(shk_master_check(conf_path, &bare), SHK_ECONF);
    ck_assert_msg(strstr(shk_last_errmsg(), "needs a \"channels\" directive"), "%s",
                  shk_last_errmsg());

    const shk_chan_opts_t bad[] = {
        {.slots = 64}, {.max_id_len = 256}, {.wildcard_prefix = "a/b"},
        {.events_channel = "long", .max_id_len = 2},
    };
    write_conf("worker_processes 1;\n");
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        set_chan_opts = bad[i];
        ck_assert_msg(shk_master_check(conf_path, &app) == SHK_OK, "%s", shk_last_errmsg());
        ck_assert_msg(set_chan_rc == SHK_EINVAL, "case %zu: %d", i, set_chan_rc);
    }
    unlink(conf_path);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("proc");
    TCase *tc = tcase_create("supervisor");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, check_config);
    tcase_add_test(tc, bad_first_config_fails_cleanly);
    tcase_add_test(tc, crash_and_respawn_same_slot);
    tcase_add_test(tc, dead_lock_holder_recovered_by_master);
    tcase_add_test(tc, reload_keeps_data_and_resizes);
    tcase_add_test(tc, bad_reload_keeps_old_generation);
    tcase_add_test(tc, crash_loop_backs_off);
    tcase_add_test(tc, graceful_and_fast_stop_leave_nothing);
    tcase_add_test(tc, listeners_survive_a_failed_reload);
    tcase_add_test(tc, channels_directive);
    tcase_add_test(tc, channels_across_workers);
    tcase_add_test(tc, set_chan_from_the_application);
    suite_add_tcase(s, tc);
    return tu_run(s);
}
