/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * shk_worker.c: the worker's side of the supervisor. A forked child
 * becomes a worker here (signals reset, PR_SET_PDEATHSIG so it never
 * outlives the master, its bus slot and channel store slot joined, the stop
 * and sibling alerts handled), runs the application's worker function and
 * exits with its status. The shk_worker_* calls give the application its
 * slot, generation, bus, zones, channel store, siblings and listening
 * sockets. One worker per process: its state is this file's.
 */
#include "shk_proc_internal.h"

#include "shk_atomic_internal.h"

#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

/* Set by the stop alert, in the worker's bus dispatch; read by the worker
 * and possibly by other threads of its process. */
static _Atomic int worker_quitting, worker_terminating;
static shk_worker_t the_worker;

/* A bus handler, in the worker: the master asks it to stop. */
static void on_stop_alert(shk_bus_t *bus, const char *name, const void *data, size_t len,
                          void *ctx)
{
    int fast = strcmp(name, SHK_PROC_ALERT_TERMINATE) == 0;
    (void)bus;
    (void)data;
    (void)len;
    (void)ctx;
    if (fast)
        SHK_WRITE_ONCE(worker_terminating, 1);
    /* Release: a thread that sees quitting (acquire) also sees
     * terminating, so "terminating implies quitting" holds for readers. */
    SHK_STORE_RELEASE(worker_quitting, 1);
    if (the_worker.on_stop)
        the_worker.on_stop(&the_worker, fast, the_worker.on_stop_ctx);
}

static void sibling_event(unsigned slot, pid_t pid, int alive)
{
    if (the_worker.on_sibling)
        the_worker.on_sibling(&the_worker, slot, pid, alive, the_worker.on_sibling_ctx);
}

/* A bus handler, in the worker: a sibling started or died (shk_master.c).
 * Kept consistent if the master had to drop events: a birth in a slot
 * known as taken reports the death missed first; a death of a pid not
 * known reports the death of the one that was. */
static void on_sibling_alert(shk_bus_t *bus, const char *name, const void *data, size_t len,
                             void *ctx)
{
    shk_proc_sibling_msg_t msg;
    pid_t known;
    (void)bus;
    (void)name;
    (void)ctx;
    if (len != sizeof msg)
        return;
    memcpy(&msg, data, sizeof msg);
    if (msg.slot >= SHK_PROC_MAX_WORKERS || msg.slot == the_worker.slot || msg.pid <= 0)
        return;
    known = the_worker.sib[msg.slot];
    if (msg.alive) {
        if (known == msg.pid)
            return;
        if (known)
            sibling_event(msg.slot, known, 0);
        the_worker.sib[msg.slot] = msg.pid;
        sibling_event(msg.slot, msg.pid, 1);
    } else if (known) {
        the_worker.sib[msg.slot] = 0;
        sibling_event(msg.slot, known, 0);
    }
}

/* The worker of an application that gave none: wait for the stop (and keep
 * the channel store's tick). */
static int default_worker(shk_worker_t *w)
{
    shk_bus_t *bus = shk_worker_bus(w);
    shk_chan_t *ch = shk_worker_chan(w);
    while (!shk_worker_quitting()) {
        int rc = shk_bus_wait(bus, ch ? SHK_CHAN_TICK_MS : -1);
        if (rc < 0 && rc != SHK_ETIMEDOUT)
            return 1;
        shk_bus_dispatch(bus, SHK_BUS_BUDGET);
        if (ch)
            shk_chan_tick(ch);
        shk_redis_tick(w->redis);
    }
    return 0;
}

void shk_proc_worker_main(const shk_app_t *app, shk_cycle_t *cy, unsigned slot, int sfd,
                          const sigset_t *oldmask)
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
    close(sfd);
    sigprocmask(SIG_SETMASK, oldmask, NULL);
    /* A worker must not outlive its master; the check after the prctl
     * catches a master that died before it. */
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != master_pid)
        _exit(1);
    snprintf(title, sizeof title, "%.6s:w%u", shk_proc_app_name(app), slot);
    prctl(PR_SET_NAME, title);

    SHK_WRITE_ONCE(worker_quitting, 0);
    SHK_WRITE_ONCE(worker_terminating, 0);
    the_worker.cycle = cy;
    the_worker.slot = slot;
    the_worker.on_stop = NULL;
    the_worker.on_stop_ctx = NULL;
    the_worker.on_sibling = NULL;
    the_worker.on_sibling_ctx = NULL;
    the_worker.redis = NULL;
    /* The siblings as the master's table had them at the fork; the sibling
     * alerts tell every change after it. */
    for (unsigned i = 0; i < SHK_PROC_MAX_WORKERS; i++)
        the_worker.sib[i] = i != slot && cy->slots[i].state == SHK_PROC_SLOT_RUNNING &&
                                    !shk_proc_is_relay(cy, i)
                                ? cy->slots[i].pid
                                : 0;
    if (shk_bus_join(cy->bus, slot) != SHK_OK) {
        shk_log(SHK_LOG_ERR, "worker %u: joining the bus failed: %s", slot, shk_last_errmsg());
        _exit(2);
    }
    shk_bus_on(cy->bus, SHK_PROC_ALERT_QUIT, on_stop_alert, NULL);
    shk_bus_on(cy->bus, SHK_PROC_ALERT_TERMINATE, on_stop_alert, NULL);
    shk_bus_on(cy->bus, SHK_PROC_ALERT_SIBLING, on_sibling_alert, NULL);
    if (shk_proc_is_relay(cy, slot))
        shk_proc_relay_main(app, cy, slot);
    if (cy->chan && shk_chan_join(cy->chan, cy->bus) < 0) {
        shk_log(SHK_LOG_ERR, "worker %u: joining the channel store failed: %s", slot,
                shk_last_errmsg());
        _exit(2);
    }
    status = app && app->worker ? app->worker(&the_worker, app->ctx)
                                : default_worker(&the_worker);
    shk_proc_exit(cy, status);
}

void shk_proc_exit(shk_cycle_t *cy, int status)
{
    fflush(NULL);
    /* Done: drop the store's handle (the master's reap tells the store) and
     * the zones' mappings (nothing is unlinked: the master made them). The
     * blocks this process allocated stay in the pools, which outlive it;
     * closing the slab handles also tells valgrind so, whose exit-time leak
     * check would report every message the worker stored. */
    shk_chan_close(cy->chan);
    cy->chan = NULL;
    shk_zones_free(cy->zones);
    cy->zones = NULL;
    _exit(status & 0xff);
}

/* ---- the application's calls ------------------------------------------------------- */

int shk_worker_quitting(void)
{
    return SHK_LOAD_ACQUIRE(worker_quitting); /* pairs with on_stop_alert's release */
}

int shk_worker_terminating(void)
{
    return SHK_READ_ONCE(worker_terminating); /* the flag alone matters */
}

void shk_worker_on_stop(shk_worker_t *w, void (*fn)(shk_worker_t *w, int fast, void *ctx),
                        void *ctx)
{
    if (!w)
        return;
    w->on_stop = fn;
    w->on_stop_ctx = ctx;
}

void shk_worker_on_sibling(shk_worker_t *w, shk_worker_sibling_t fn, void *ctx)
{
    if (!w)
        return;
    w->on_sibling = fn;
    w->on_sibling_ctx = ctx;
}

pid_t shk_worker_sibling(const shk_worker_t *w, unsigned slot)
{
    return w && slot < SHK_PROC_MAX_WORKERS ? w->sib[slot] : 0;
}

shk_chan_t *shk_worker_chan(shk_worker_t *w)
{
    return w && w->cycle ? w->cycle->chan : NULL;
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

unsigned shk_worker_nlisteners(const shk_worker_t *w)
{
    return w && w->cycle ? w->cycle->nlisten : 0;
}

int shk_worker_listener(const shk_worker_t *w, unsigned i)
{
    if (!w || !w->cycle || i >= w->cycle->nlisten)
        return -1;
    return w->cycle->listen[i].fd;
}
