/*
 * shk_proc.c: the master/worker supervisor: configuration generations
 * (cycles), worker spawn/reap/respawn with backoff, recovery of a dead
 * worker's locks and bus slot, reload, graceful and fast stop, and the
 * worker-side hooks.
 */
#include "shk_proc.h"

#include "shk_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define BUS_ZONE "shmkit_bus"
#define ALERT_QUIT "shk:quit"
#define ALERT_TERMINATE "shk:terminate"
#define DEFAULT_BUS_QUEUE (256u * 1024u)
#define DEFAULT_BUS_EXTRA (4u * 1024u * 1024u)

enum { SLOT_EMPTY, SLOT_RUNNING, SLOT_WAITING /* respawn scheduled */ };

typedef struct listener_s {
    char addr[128];
    int fd;
    int owned; /* this cycle closes it (not handed to a newer one) */
} listener_t;

typedef struct slot_s {
    int state;
    pid_t pid;
    uint64_t started_ms;
    uint64_t respawn_at;
    unsigned early_deaths;
    int quit_sent;
} slot_t;

struct shk_cycle_s {
    const shk_app_t *app;
    shk_zones_t *zones;
    shk_zone_t *bus_zone;
    shk_bus_t *bus;
    unsigned workers;
    int workers_set;
    size_t bus_queue;
    size_t bus_extra;
    unsigned shutdown_timeout_ms;
    char pid_path[PATH_MAX];
    listener_t listen[SHK_PROC_MAX_LISTEN];
    unsigned nlisten;
    void *app_conf;
    shk_conf_directive_t dirs[8];
    uint64_t generation;

    slot_t slots[SHK_PROC_MAX_WORKERS];
    int retiring;     /* told to quit: no respawns */
    int fast;         /* told to terminate */
    uint64_t deadline; /* SIGKILL stragglers at this time (0: none) */
    struct shk_cycle_s *next_old;
};

struct shk_worker_s {
    shk_cycle_t *cycle;
    unsigned slot;
    void (*on_stop)(shk_worker_t *w, int fast, void *ctx);
    void *on_stop_ctx;
};

/* Worker-process state (one worker per process). */
static volatile int worker_quitting, worker_terminating;
static shk_worker_t the_worker;

/* ---- configuration ---------------------------------------------------------- */

static int parse_ms(const char *s, unsigned *out)
{
    char *end;
    unsigned long long v;
    if (!*s || *s == '-' || *s == '+')
        return SHK_EINVAL;
    errno = 0;
    v = strtoull(s, &end, 10);
    if (end == s || errno)
        return SHK_EINVAL;
    if (strcmp(end, "ms") == 0)
        ;
    else if (strcmp(end, "s") == 0 || !*end)
        v *= 1000;
    else if (strcmp(end, "m") == 0)
        v *= 60000;
    else
        return SHK_EINVAL;
    if (v > UINT_MAX)
        return SHK_ERANGE;
    *out = (unsigned)v;
    return SHK_OK;
}

static int conf_worker_processes(shk_conf_t *cf, int argc, char **argv, void *data)
{
    shk_cycle_t *cy = data;
    char *end;
    unsigned long n;
    (void)argc;
    if (strcmp(argv[1], "auto") == 0) {
        n = shk_ncpu();
    } else {
        errno = 0;
        n = strtoul(argv[1], &end, 10);
        if (!argv[1][0] || *end || errno || argv[1][0] == '-' || n == 0)
            return shk_conf_error(cf, "invalid value \"%s\" in \"%s\" directive", argv[1], argv[0]);
    }
    if (n > SHK_PROC_MAX_WORKERS)
        return shk_conf_error(cf, "\"%s\" is %lu, the most shmkit supports is %d", argv[0], n,
                              SHK_PROC_MAX_WORKERS);
    cy->workers = (unsigned)n;
    cy->workers_set = 1;
    return SHK_OK;
}

static int conf_listen(shk_conf_t *cf, int argc, char **argv, void *data)
{
    shk_cycle_t *cy = data;
    (void)argc;
    if (cy->nlisten == SHK_PROC_MAX_LISTEN)
        return shk_conf_error(cf, "too many \"listen\" directives (at most %d)",
                              SHK_PROC_MAX_LISTEN);
    if (strlen(argv[1]) >= sizeof cy->listen[0].addr)
        return shk_conf_error(cf, "listen address \"%s\" is too long", argv[1]);
    for (unsigned i = 0; i < cy->nlisten; i++)
        if (strcmp(cy->listen[i].addr, argv[1]) == 0)
            return shk_conf_error(cf, "duplicate listen %s", argv[1]);
    strcpy(cy->listen[cy->nlisten].addr, argv[1]);
    cy->listen[cy->nlisten].fd = -1;
    cy->nlisten++;
    return SHK_OK;
}

static int conf_pid(shk_conf_t *cf, int argc, char **argv, void *data)
{
    shk_cycle_t *cy = data;
    (void)argc;
    if (strlen(argv[1]) >= sizeof cy->pid_path)
        return shk_conf_error(cf, "pid file path is too long");
    strcpy(cy->pid_path, argv[1]);
    return SHK_OK;
}

static int conf_shutdown_timeout(shk_conf_t *cf, int argc, char **argv, void *data)
{
    shk_cycle_t *cy = data;
    (void)argc;
    if (parse_ms(argv[1], &cy->shutdown_timeout_ms) != SHK_OK)
        return shk_conf_error(cf, "invalid value \"%s\" in \"%s\" directive", argv[1], argv[0]);
    return SHK_OK;
}

static int conf_bus_queue(shk_conf_t *cf, int argc, char **argv, void *data)
{
    shk_cycle_t *cy = data;
    size_t sz;
    if (shk_parse_size(argv[1], &sz) != SHK_OK || sz < 4096)
        return shk_conf_error(cf, "invalid bus queue size \"%s\" (at least 4k)", argv[1]);
    cy->bus_queue = sz;
    if (argc > 2) {
        const char *k, *v;
        size_t kl;
        if (shk_parse_kv(argv[2], &k, &kl, &v) != SHK_OK || kl != 5 || strncmp(k, "large", 5) ||
            shk_parse_size(v, &sz) != SHK_OK)
            return shk_conf_error(cf, "invalid parameter \"%s\"", argv[2]);
        cy->bus_extra = sz;
    }
    return SHK_OK;
}

int shk_proc_conf(shk_conf_t *cf, shk_cycle_t *cy)
{
    int rc;
    if (!cf || !cy)
        return shk_error(SHK_EINVAL, "NULL argument");
    cy->dirs[0] = (shk_conf_directive_t){"worker_processes", SHK_CONF_MAIN, SHK_CONF_TAKE1,
                                         conf_worker_processes, 0, cy};
    cy->dirs[1] = (shk_conf_directive_t){"listen", SHK_CONF_ANY, SHK_CONF_TAKE1, conf_listen, 0,
                                         cy};
    cy->dirs[2] = (shk_conf_directive_t){"pid", SHK_CONF_MAIN, SHK_CONF_TAKE1, conf_pid, 0, cy};
    cy->dirs[3] = (shk_conf_directive_t){"worker_shutdown_timeout", SHK_CONF_MAIN,
                                         SHK_CONF_TAKE1, conf_shutdown_timeout, 0, cy};
    cy->dirs[4] = (shk_conf_directive_t){"bus_queue", SHK_CONF_MAIN,
                                         SHK_CONF_TAKE1 | SHK_CONF_TAKE2, conf_bus_queue, 0, cy};
    memset(&cy->dirs[5], 0, sizeof cy->dirs[5]);
    if ((rc = shk_conf_add(cf, cy->dirs)) != SHK_OK)
        return rc;
    return shk_zones_conf(cy->zones, cf);
}

shk_cycle_t *shk_cycle_new(const shk_app_t *app)
{
    shk_cycle_t *cy = calloc(1, sizeof *cy);
    if (!cy) {
        shk_error(SHK_ENOMEM, "out of memory");
        return NULL;
    }
    cy->app = app;
    cy->workers = 1;
    cy->bus_queue = DEFAULT_BUS_QUEUE;
    cy->bus_extra = DEFAULT_BUS_EXTRA;
    cy->zones = shk_zones_new(NULL);
    if (!cy->zones) {
        free(cy);
        return NULL;
    }
    for (unsigned i = 0; i < SHK_PROC_MAX_LISTEN; i++)
        cy->listen[i].fd = -1;
    if (app && app->conf_create)
        cy->app_conf = app->conf_create(cy, app->ctx);
    return cy;
}

void shk_cycle_free(shk_cycle_t *cy)
{
    if (!cy)
        return;
    if (cy->bus)
        shk_bus_close(cy->bus);
    for (unsigned i = 0; i < cy->nlisten; i++)
        if (cy->listen[i].owned && cy->listen[i].fd >= 0)
            close(cy->listen[i].fd);
    if (cy->app && cy->app->conf_free && cy->app_conf)
        cy->app->conf_free(cy->app_conf, cy->app->ctx);
    shk_zones_free(cy->zones);
    free(cy);
}

shk_cycle_t *shk_cycle_from_conf(shk_conf_t *cf)
{
    return shk_conf_user(cf);
}

shk_zones_t *shk_cycle_zones(shk_cycle_t *cy)
{
    return cy ? cy->zones : NULL;
}

void *shk_cycle_app_conf(shk_cycle_t *cy)
{
    return cy ? cy->app_conf : NULL;
}

unsigned shk_cycle_workers(const shk_cycle_t *cy)
{
    return cy ? cy->workers : 0;
}

/* Read conf_path into a new cycle (nothing created yet). */
static shk_cycle_t *cycle_read(const char *conf_path, const shk_app_t *app)
{
    shk_cycle_t *cy = shk_cycle_new(app);
    shk_conf_t *cf;
    int rc;

    if (!cy)
        return NULL;
    cf = shk_conf_new(cy);
    if (!cf) {
        shk_cycle_free(cy);
        return NULL;
    }
    rc = shk_proc_conf(cf, cy);
    if (rc == SHK_OK && app && app->directives)
        rc = shk_conf_add(cf, app->directives);
    if (rc == SHK_OK)
        rc = shk_conf_parse(cf, conf_path);
    if (rc == SHK_OK && app && app->conf_done)
        rc = app->conf_done(cy, cy->app_conf, app->ctx);
    shk_conf_free(cf);
    if (rc != SHK_OK) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", shk_last_errmsg());
        shk_cycle_free(cy);
        shk_error(rc < 0 ? rc : SHK_ECONF, "%s", msg);
        return NULL;
    }
    return cy;
}

int shk_master_check(const char *conf_path, const shk_app_t *app)
{
    shk_cycle_t *cy = cycle_read(conf_path, app);
    if (!cy)
        return shk_last_error();
    shk_cycle_free(cy);
    return SHK_OK;
}

/* ---- listening sockets ------------------------------------------------------- */

static int open_listener(listener_t *l)
{
    char host[128], *port;
    struct addrinfo hints = {0}, *res = NULL, *ai;
    int fd = -1, rc, one = 1;

    strcpy(host, l->addr);
    port = strrchr(host, ':');
    if (!port) {
        port = host;
        strcpy(host, "*:");
        strcat(host, l->addr);
        port = strrchr(host, ':');
    }
    *port++ = '\0';
    char *h = host;
    if (*h == '[') {
        h++;
        char *e = strchr(h, ']');
        if (e)
            *e = '\0';
    }
    if (strcmp(h, "*") == 0 || !*h)
        h = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    rc = getaddrinfo(h, port, &hints, &res);
    if (rc != 0)
        return shk_error(SHK_ECONF, "invalid listen address \"%s\": %s", l->addr,
                         gai_strerror(rc));
    for (ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                    ai->ai_protocol);
        if (fd < 0)
            continue;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, 511) == 0)
            break;
        rc = errno;
        close(fd);
        fd = -1;
        errno = rc;
    }
    freeaddrinfo(res);
    if (fd < 0)
        return shk_error(SHK_ESYS, "bind() to %s failed (%s)", l->addr, strerror(errno));
    l->fd = fd;
    l->owned = 1;
    return SHK_OK;
}

/* Open cy's sockets, taking over those `old` already has for the same
 * address (a reload must not drop the port). */
static int open_listeners(shk_cycle_t *cy, shk_cycle_t *old)
{
    for (unsigned i = 0; i < cy->nlisten; i++) {
        listener_t *l = &cy->listen[i];
        for (unsigned j = 0; old && j < old->nlisten; j++)
            if (old->listen[j].owned && strcmp(old->listen[j].addr, l->addr) == 0) {
                l->fd = old->listen[j].fd;
                l->owned = 2; /* borrowed until the reload commits */
            }
        if (l->fd < 0) {
            int rc = open_listener(l);
            if (rc != SHK_OK) {
                for (unsigned k = 0; k < i; k++)
                    if (cy->listen[k].owned == 1) {
                        close(cy->listen[k].fd);
                        cy->listen[k].fd = -1;
                        cy->listen[k].owned = 0;
                    }
                return rc;
            }
        }
    }
    return SHK_OK;
}

/* The reload committed: borrowed sockets now belong to the new cycle. */
static void commit_listeners(shk_cycle_t *cy, shk_cycle_t *old)
{
    for (unsigned i = 0; i < cy->nlisten; i++) {
        if (cy->listen[i].owned != 2)
            continue;
        cy->listen[i].owned = 1;
        for (unsigned j = 0; old && j < old->nlisten; j++)
            if (old->listen[j].fd == cy->listen[i].fd)
                old->listen[j].owned = 0;
    }
}

/* ---- the master ------------------------------------------------------------- */

typedef struct master_s {
    const char *conf_path;
    const shk_app_t *app;
    shk_master_opts_t o;
    shk_cycle_t *cur;
    shk_cycle_t *old; /* retiring generations, newest first */
    uint64_t generation;
    int stopping; /* 1 graceful, 2 fast */
    int sfd;
    sigset_t oldmask;
} master_t;

static const char *app_name(const shk_app_t *app)
{
    return app && app->name ? app->name : "shmkit";
}

static void emit(master_t *m, const char *ev, pid_t pid, unsigned slot)
{
    if (m->o.on_event)
        m->o.on_event(ev, pid, slot, m->o.event_ctx);
}

/* In a worker: a bus handler for the master's stop requests. */
static void on_stop_alert(shk_bus_t *bus, const char *name, const void *data, size_t len,
                          void *ctx)
{
    int fast = strcmp(name, ALERT_TERMINATE) == 0;
    (void)bus;
    (void)data;
    (void)len;
    (void)ctx;
    worker_quitting = 1;
    if (fast)
        worker_terminating = 1;
    if (the_worker.on_stop)
        the_worker.on_stop(&the_worker, fast, the_worker.on_stop_ctx);
}

static int default_worker(shk_worker_t *w)
{
    shk_bus_t *bus = shk_worker_bus(w);
    while (!worker_quitting) {
        int rc = shk_bus_wait(bus, -1);
        if (rc < 0 && rc != SHK_ETIMEDOUT)
            return 1;
        shk_bus_dispatch(bus, SHK_BUS_BUDGET);
    }
    return 0;
}

static void worker_main(master_t *m, shk_cycle_t *cy, unsigned slot)
{
    int status;
    char title[16];
    pid_t master_pid = getppid();
    struct sigaction sa = {0};

    /* The master handles the terminal's signals and relays them over the
     * bus; a worker dies only by SIGTERM/SIGKILL from outside. */
    sa.sa_handler = SIG_IGN;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGQUIT, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    sa.sa_handler = SIG_DFL;
    sigaction(SIGCHLD, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL);
    close(m->sfd);
    sigprocmask(SIG_SETMASK, &m->oldmask, NULL);
    /* A worker must not outlive its master. */
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != master_pid)
        _exit(1);
    snprintf(title, sizeof title, "%.6s:w%u", app_name(m->app), slot);
    prctl(PR_SET_NAME, title);

    worker_quitting = worker_terminating = 0;
    the_worker.cycle = cy;
    the_worker.slot = slot;
    the_worker.on_stop = NULL;
    if (shk_bus_join(cy->bus, slot) != SHK_OK) {
        shk_log(SHK_LOG_ERR, "worker %u: joining the bus failed: %s", slot, shk_last_errmsg());
        _exit(2);
    }
    shk_bus_on(cy->bus, ALERT_QUIT, on_stop_alert, NULL);
    shk_bus_on(cy->bus, ALERT_TERMINATE, on_stop_alert, NULL);
    status = m->app && m->app->worker ? m->app->worker(&the_worker, m->app->ctx)
                                      : default_worker(&the_worker);
    fflush(NULL);
    _exit(status & 0xff);
}

static int spawn(master_t *m, shk_cycle_t *cy, unsigned slot)
{
    slot_t *s = &cy->slots[slot];
    pid_t pid;

    fflush(NULL);
    pid = fork();
    if (pid < 0) {
        shk_log(SHK_LOG_ERR, "fork() for worker %u failed: %s", slot, strerror(errno));
        s->state = SLOT_WAITING;
        s->respawn_at = shk_time_ms() + 1000;
        return SHK_ESYS;
    }
    if (pid == 0) {
        shk_pid_refresh();
        worker_main(m, cy, slot);
    }
    s->state = SLOT_RUNNING;
    s->pid = pid;
    s->started_ms = shk_time_ms();
    s->quit_sent = 0;
    shk_log(SHK_LOG_NOTICE, "start worker process %d (slot %u, generation %llu)", (int)pid, slot,
            (unsigned long long)cy->generation);
    emit(m, "spawn", pid, slot);
    return SHK_OK;
}

static unsigned live_workers(const shk_cycle_t *cy)
{
    unsigned n = 0;
    for (unsigned i = 0; i < SHK_PROC_MAX_WORKERS; i++)
        n += cy->slots[i].state == SLOT_RUNNING;
    return n;
}

/* Ask every running worker of cy to stop (over the bus; signals if the
 * bus cannot take it). */
static void tell_stop(shk_cycle_t *cy, int fast)
{
    for (unsigned i = 0; i < SHK_PROC_MAX_WORKERS; i++) {
        slot_t *s = &cy->slots[i];
        if (s->state != SLOT_RUNNING || s->quit_sent > fast)
            continue;
        int rc = shk_bus_send(cy->bus, s->pid, fast ? ALERT_TERMINATE : ALERT_QUIT, "", 0);
        if (rc == SHK_OK || rc == SHK_ESRCH) {
            /* ESRCH: it has not joined yet or is dying; the reap or the
             * next round handles it. */
            if (rc == SHK_OK)
                s->quit_sent = fast ? 2 : 1;
        } else if (fast) {
            shk_log(SHK_LOG_WARN, "cannot tell worker %d to terminate (%s); sending SIGTERM",
                    (int)s->pid, shk_strerror(rc));
            kill(s->pid, SIGTERM);
            s->quit_sent = 2;
        }
    }
    if (fast)
        cy->fast = 1;
    cy->retiring = 1;
}

static void cycle_retire(master_t *m, shk_cycle_t *cy, int fast, unsigned grace_ms)
{
    tell_stop(cy, fast);
    if (grace_ms && !cy->deadline)
        cy->deadline = shk_time_ms() + grace_ms;
    (void)m;
}

static shk_cycle_t *cycle_of(master_t *m, pid_t pid, unsigned *slot)
{
    shk_cycle_t *cy = m->cur;
    for (int pass = 0; cy; pass++) {
        for (unsigned i = 0; i < SHK_PROC_MAX_WORKERS; i++)
            if (cy->slots[i].state == SLOT_RUNNING && cy->slots[i].pid == pid) {
                *slot = i;
                return cy;
            }
        cy = pass == 0 ? m->old : cy->next_old;
    }
    return NULL;
}

static void recover_zones(master_t *m, pid_t pid)
{
    shk_cycle_t *cy = m->cur;
    for (int pass = 0; cy; pass++) {
        shk_zone_t *z;
        for (unsigned i = 0; (z = shk_zones_at(cy->zones, i)); i++)
            if (shk_zone_base(z))
                shk_zone_recover(z, pid);
        cy = pass == 0 ? m->old : cy->next_old;
    }
}

static void free_finished_old(master_t *m)
{
    shk_cycle_t **pp = &m->old;
    while (*pp) {
        shk_cycle_t *cy = *pp;
        if (live_workers(cy) == 0) {
            *pp = cy->next_old;
            shk_log(SHK_LOG_NOTICE, "generation %llu finished",
                    (unsigned long long)cy->generation);
            shk_cycle_free(cy);
        } else {
            pp = &cy->next_old;
        }
    }
}

static void reap(master_t *m)
{
    for (;;) {
        siginfo_t si;
        unsigned slot = 0;
        shk_cycle_t *cy;
        int st;

        memset(&si, 0, sizeof si);
        /* WNOWAIT: the dead worker stays a zombie, so its pid cannot be
         * reused by a new process while we release what it held. */
        if (waitid(P_ALL, 0, &si, WEXITED | WNOHANG | WNOWAIT) != 0 || si.si_pid == 0)
            break;
        cy = cycle_of(m, si.si_pid, &slot);
        recover_zones(m, si.si_pid);
        if (cy && cy->bus)
            shk_bus_reap(cy->bus, si.si_pid);
        while (waitpid(si.si_pid, &st, 0) < 0 && errno == EINTR)
            ;
        if (!cy)
            continue; /* not one of ours (e.g. a child of the application) */

        slot_t *s = &cy->slots[slot];
        uint64_t now = shk_time_ms(), lived = now - s->started_ms;
        if (WIFSIGNALED(st))
            shk_log(SHK_LOG_ERR, "worker process %d exited on signal %d", (int)si.si_pid,
                    WTERMSIG(st));
        else if (WEXITSTATUS(st) != 0)
            shk_log(SHK_LOG_ERR, "worker process %d exited with code %d", (int)si.si_pid,
                    WEXITSTATUS(st));
        else
            shk_log(SHK_LOG_NOTICE, "worker process %d exited with code 0", (int)si.si_pid);
        s->state = SLOT_EMPTY;
        s->pid = 0;
        emit(m, "exit", si.si_pid, slot);

        if (cy != m->cur || cy->retiring || m->stopping)
            continue;
        /* Respawn in the same slot; back off when it keeps dying at start. */
        unsigned delay = 0;
        if (lived < m->o.early_death_ms) {
            s->early_deaths++;
            delay = m->o.startup_backoff_ms;
            for (unsigned k = 1; k < s->early_deaths && delay < m->o.startup_backoff_max_ms; k++)
                delay *= 2;
            if (delay > m->o.startup_backoff_max_ms)
                delay = m->o.startup_backoff_max_ms;
            shk_log(SHK_LOG_WARN,
                    "worker in slot %u died %u time%s in a row within %u ms of its start; "
                    "respawning in %u ms",
                    slot, s->early_deaths, s->early_deaths == 1 ? "" : "s", m->o.early_death_ms,
                    delay);
        } else {
            s->early_deaths = 0;
        }
        s->state = SLOT_WAITING;
        s->respawn_at = now + delay;
    }
    free_finished_old(m);
}

static int cycle_start(master_t *m, shk_cycle_t *cy, shk_cycle_t *old)
{
    size_t bus_size;
    int rc;

    cy->generation = ++m->generation;
    /* A fresh bus zone for every generation (its tag carries the
     * generation): the retiring workers keep their own until they exit. */
    char tag[48];
    snprintf(tag, sizeof tag, "bus:%llu", (unsigned long long)cy->generation);
    bus_size = (size_t)cy->workers * (cy->bus_queue + 4096) + cy->bus_extra + (1u << 20);
    cy->bus_zone = shk_zone_add(cy->zones, BUS_ZONE, bus_size, tag);
    if (!cy->bus_zone)
        return shk_last_error();
    if ((rc = open_listeners(cy, old)) != SHK_OK)
        return rc;
    if ((rc = shk_zones_create(cy->zones, old ? old->zones : NULL)) != SHK_OK)
        goto fail_listen;
    cy->bus = shk_bus_create(cy->bus_zone, cy->workers, cy->bus_queue);
    if (!cy->bus) {
        char msg[1024];
        rc = shk_last_error();
        snprintf(msg, sizeof msg, "%s", shk_last_errmsg());
        shk_zones_undo(cy->zones); /* gives adopted zones back to `old` */
        shk_error(rc, "%s", msg);
        goto fail_listen;
    }
    commit_listeners(cy, old);
    return SHK_OK;

fail_listen:
    for (unsigned i = 0; i < cy->nlisten; i++)
        if (cy->listen[i].owned == 2)
            cy->listen[i].owned = 0; /* still the old cycle's */
    return rc;
}

static void write_pid(const shk_cycle_t *cy)
{
    FILE *f;
    if (!cy->pid_path[0])
        return;
    f = fopen(cy->pid_path, "w");
    if (!f) {
        shk_log(SHK_LOG_ERR, "cannot write pid file \"%s\": %s", cy->pid_path, strerror(errno));
        return;
    }
    fprintf(f, "%d\n", (int)getpid());
    fclose(f);
}

static void reload(master_t *m)
{
    shk_cycle_t *cy;
    int rc;

    shk_log(SHK_LOG_NOTICE, "reconfiguring from %s", m->conf_path);
    cy = cycle_read(m->conf_path, m->app);
    if (!cy) {
        shk_log(SHK_LOG_ERR, "reload failed, the running configuration stays: %s",
                shk_last_errmsg());
        emit(m, "reload-failed", 0, 0);
        return;
    }
    rc = cycle_start(m, cy, m->cur);
    if (rc != SHK_OK) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", shk_last_errmsg());
        /* cycle_start failed before the new registry adopted anything, or
         * shk_zones_create rolled back: freeing it leaves the old intact. */
        shk_cycle_free(cy);
        m->generation--;
        shk_log(SHK_LOG_ERR, "reload failed, the running configuration stays: %s", msg);
        emit(m, "reload-failed", 0, 0);
        return;
    }
    if (strcmp(cy->pid_path, m->cur->pid_path) != 0) {
        if (m->cur->pid_path[0])
            unlink(m->cur->pid_path);
        write_pid(cy);
    }
    shk_cycle_t *prev = m->cur;
    m->cur = cy;
    for (unsigned i = 0; i < cy->workers; i++)
        spawn(m, cy, i);
    prev->next_old = m->old;
    m->old = prev;
    cycle_retire(m, prev, 0, prev->shutdown_timeout_ms);
    shk_log(SHK_LOG_NOTICE, "reload done: generation %llu started, generation %llu retiring",
            (unsigned long long)cy->generation, (unsigned long long)prev->generation);
    emit(m, "reload", 0, 0);
}

static void begin_stop(master_t *m, int fast)
{
    if (m->stopping >= (fast ? 2 : 1))
        return;
    m->stopping = fast ? 2 : 1;
    shk_log(SHK_LOG_NOTICE, "%s stop requested", fast ? "fast" : "graceful");
    shk_cycle_t *cy = m->cur;
    for (int pass = 0; cy; pass++) {
        cy->deadline = 0;
        cycle_retire(m, cy, fast, fast ? m->o.fast_stop_ms : cy->shutdown_timeout_ms);
        for (unsigned i = 0; i < SHK_PROC_MAX_WORKERS; i++)
            if (cy->slots[i].state == SLOT_WAITING)
                cy->slots[i].state = SLOT_EMPTY;
        cy = pass == 0 ? m->old : cy->next_old;
    }
    emit(m, fast ? "stopping-fast" : "stopping", 0, 0);
}

static int all_done(master_t *m)
{
    shk_cycle_t *cy = m->cur;
    for (int pass = 0; cy; pass++) {
        if (live_workers(cy))
            return 0;
        cy = pass == 0 ? m->old : cy->next_old;
    }
    return 1;
}

/* Timers: respawns due, stop deadlines passed, quit messages not yet
 * delivered. Returns the poll timeout until the next one (-1: none). */
static int run_timers(master_t *m)
{
    uint64_t now = shk_time_ms(), next = UINT64_MAX;
    shk_cycle_t *cy = m->cur;

    for (int pass = 0; cy; pass++) {
        for (unsigned i = 0; i < SHK_PROC_MAX_WORKERS; i++) {
            slot_t *s = &cy->slots[i];
            if (s->state == SLOT_WAITING && cy == m->cur && !cy->retiring && !m->stopping) {
                if (s->respawn_at <= now)
                    spawn(m, cy, i);
                else if (s->respawn_at < next)
                    next = s->respawn_at;
            }
        }
        if (cy->retiring) {
            tell_stop(cy, cy->fast); /* reaches workers that joined late */
            for (unsigned i = 0; i < SHK_PROC_MAX_WORKERS; i++)
                if (cy->slots[i].state == SLOT_RUNNING && !cy->slots[i].quit_sent &&
                    now + 50 < next)
                    next = now + 50;
            if (cy->deadline && live_workers(cy)) {
                if (cy->deadline <= now) {
                    for (unsigned i = 0; i < SHK_PROC_MAX_WORKERS; i++)
                        if (cy->slots[i].state == SLOT_RUNNING) {
                            shk_log(SHK_LOG_WARN, "worker %d did not stop in time; killing it",
                                    (int)cy->slots[i].pid);
                            kill(cy->slots[i].pid, SIGKILL);
                        }
                    cy->deadline = 0;
                } else if (cy->deadline < next) {
                    next = cy->deadline;
                }
            }
        }
        cy = pass == 0 ? m->old : cy->next_old;
    }
    if (next == UINT64_MAX)
        return -1;
    return next <= now ? 0 : (int)(next - now > INT_MAX ? INT_MAX : next - now);
}

int shk_master_run(const char *conf_path, const shk_app_t *app, const shk_master_opts_t *opts)
{
    master_t m;
    sigset_t set;
    int rc;

    memset(&m, 0, sizeof m);
    m.conf_path = conf_path;
    m.app = app;
    if (opts)
        m.o = *opts;
    if (!m.o.startup_backoff_ms)
        m.o.startup_backoff_ms = 100;
    if (!m.o.startup_backoff_max_ms)
        m.o.startup_backoff_max_ms = 5000;
    if (!m.o.early_death_ms)
        m.o.early_death_ms = 1000;
    if (!m.o.fast_stop_ms)
        m.o.fast_stop_ms = 2000;
    if (!conf_path)
        return shk_error(SHK_EINVAL, "no configuration file");

    m.cur = cycle_read(conf_path, app);
    if (!m.cur)
        return shk_last_error();

    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGQUIT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGUSR1);
    sigprocmask(SIG_BLOCK, &set, &m.oldmask);
    m.sfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
    if (m.sfd < 0) {
        rc = shk_error_sys("signalfd");
        goto out;
    }
    rc = cycle_start(&m, m.cur, NULL);
    if (rc != SHK_OK)
        goto out;
    write_pid(m.cur);
    shk_log(SHK_LOG_NOTICE, "%s master %d started: %u workers, generation %llu", app_name(app),
            (int)getpid(), m.cur->workers, (unsigned long long)m.cur->generation);
    for (unsigned i = 0; i < m.cur->workers; i++)
        spawn(&m, m.cur, i);
    emit(&m, "started", getpid(), 0);

    for (;;) {
        int timeout = run_timers(&m);
        struct pollfd pfd = {.fd = m.sfd, .events = POLLIN};
        if (m.stopping && all_done(&m))
            break;
        int n = poll(&pfd, 1, timeout);
        if (n < 0 && errno != EINTR) {
            rc = shk_error_sys("poll");
            break;
        }
        struct signalfd_siginfo si;
        int chld = 0, hup = 0;
        while (read(m.sfd, &si, sizeof si) == (ssize_t)sizeof si) {
            switch (si.ssi_signo) {
            case SIGCHLD: chld = 1; break;
            case SIGHUP: hup = 1; break;
            case SIGQUIT: begin_stop(&m, 0); break;
            case SIGTERM:
            case SIGINT: begin_stop(&m, 1); break;
            default: break;
            }
        }
        if (chld)
            reap(&m);
        if (hup && !m.stopping)
            reload(&m);
    }
    shk_log(SHK_LOG_NOTICE, "%s master %d exiting", app_name(app), (int)getpid());
    emit(&m, "stopped", getpid(), 0);

out:
    if (m.cur && m.cur->pid_path[0] && m.cur->bus)
        unlink(m.cur->pid_path);
    while (m.old) {
        shk_cycle_t *o = m.old;
        m.old = o->next_old;
        shk_cycle_free(o);
    }
    shk_cycle_free(m.cur);
    if (m.sfd >= 0)
        close(m.sfd);
    {
        /* Drop signals that arrived while blocked, then restore the mask. */
        struct timespec zero = {0, 0};
        while (sigtimedwait(&set, NULL, &zero) > 0)
            ;
    }
    sigprocmask(SIG_SETMASK, &m.oldmask, NULL);
    return rc;
}

/* ---- worker side ------------------------------------------------------------- */

int shk_worker_quitting(void)
{
    return worker_quitting;
}

int shk_worker_terminating(void)
{
    return worker_terminating;
}

void shk_worker_on_stop(shk_worker_t *w, void (*fn)(shk_worker_t *w, int fast, void *ctx),
                        void *ctx)
{
    if (!w)
        return;
    w->on_stop = fn;
    w->on_stop_ctx = ctx;
}

unsigned shk_worker_slot(const shk_worker_t *w)
{
    return w ? w->slot : 0;
}

uint64_t shk_worker_generation(const shk_worker_t *w)
{
    return w && w->cycle ? w->cycle->generation : 0;
}

shk_bus_t *shk_worker_bus(shk_worker_t *w)
{
    return w && w->cycle ? w->cycle->bus : NULL;
}

shk_zone_t *shk_worker_zone(shk_worker_t *w, const char *name)
{
    return w && w->cycle ? shk_zones_find(w->cycle->zones, name) : NULL;
}

shk_cycle_t *shk_worker_cycle(shk_worker_t *w)
{
    return w ? w->cycle : NULL;
}

const int *shk_worker_listeners(const shk_worker_t *w, unsigned *n)
{
    static int fds[SHK_PROC_MAX_LISTEN];
    if (!w || !w->cycle) {
        if (n)
            *n = 0;
        return fds;
    }
    for (unsigned i = 0; i < w->cycle->nlisten; i++)
        fds[i] = w->cycle->listen[i].fd;
    if (n)
        *n = w->cycle->nlisten;
    return fds;
}
