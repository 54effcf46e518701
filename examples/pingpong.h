/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * examples/pingpong.h: what every example shares; each examples/<loop>.c
 * adds only its event loop.
 *
 * A master and 2 workers (shk_master_run, examples/example.conf). Worker 0
 * sends the alert "ping" with the round number N to worker 1, which
 * replies "pong" N; each adds one to a counter kept in the zone "counter"
 * under the zone's lock "counter". After PINGS rounds worker 0 prints
 *     ok: 1000 pings, counter 2000
 * and sends its parent, the master, SIGQUIT (the graceful stop, what
 * `-s quit` sends): the master tells both workers to stop over the bus,
 * the stop hook each example sets ends its loop, the workers return, and
 * the master exits. A worker that finds something wrong stops the master
 * the same way (and worker 0 prints "FAILED: ...").
 *
 * The loop's part: watch shk_bus_fd() for reading and call
 * shk_bus_dispatch() when it is; dispatch once before the first wait (alerts
 * may have come before the fd was watched, and that dispatch tells the bus
 * this worker may sleep, so that the next alert rings the fd); in worker 0,
 * call ex_start() every 10 ms until x->started.
 */
#ifndef EXAMPLES_PINGPONG_H
#define EXAMPLES_PINGPONG_H

/* kill(), getppid() and the loops' headers want POSIX and Linux names,
 * whatever -std the program is built with: first, before any header. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <shmkit/shmkit.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static unsigned long ex_pings = 1000; /* rounds, from the command line */

typedef struct {
    shk_worker_t *w;
    shk_bus_t *bus;
    unsigned slot;
    shk_shmtx_t lock;   /* the zone's lock "counter": the same lock in every process */
    uint64_t *counter;  /* in the zone (its data root) */
    unsigned long next; /* worker 0: the round whose pong it waits for */
    int started, failed;
} ex_t;

/* Something went wrong in a worker: stop the whole program. */
static void ex_fail(ex_t *x)
{
    if (!x->failed)
        kill(getppid(), SIGQUIT); /* the master is our parent */
    x->failed = 1;
}

/* ---- the shared counter, made by the master --------------------------------- */

/* The zone's init, in the master once the zone is mapped: the counter and
 * its lock. A zone kept by a reload (old != NULL) has both already. */
static int ex_counter_init(shk_zone_t *zone, void *old, void *ctx)
{
    shk_shmtx_t lock;
    uint64_t *c = old ? old : shk_slab_calloc(shk_zone_slab(zone), sizeof *c);
    (void)ctx;
    if (!c || shk_zone_shmtx_create(zone, &lock, "counter") != SHK_OK)
        return SHK_ENOMEM;
    shk_shmtx_destroy(&lock);
    return shk_zone_set_data(zone, c);
}

/* After the configuration is read: check it, and give the zone its init. */
static int ex_conf_done(shk_cycle_t *cycle, void *conf, void *ctx)
{
    shk_zone_t *zone = shk_zones_find(shk_cycle_zones(cycle), "counter");
    (void)conf, (void)ctx;
    if (!zone || shk_cycle_workers(cycle) != 2)
        return shk_error(SHK_ECONF, "this example needs worker_processes 2 and shm_zone counter");
    return shk_zone_set_init(zone, ex_counter_init, NULL);
}

/* Add `add` to the counter under the lock; returns the new value.
 * SHK_EOWNERDEAD means the lock was taken over from a process that died
 * holding it: one 8-byte store cannot be half done, so the counter is sound. */
static uint64_t ex_bump(ex_t *x, uint64_t add)
{
    if (!shk_shmtx_held(shk_shmtx_lock(&x->lock))) {
        ex_fail(x);
        return 0;
    }
    uint64_t v = *x->counter += add;
    shk_shmtx_unlock(&x->lock);
    return v;
}

/* ---- the ping-pong ----------------------------------------------------------- */

/* The round number in an alert's data or an argument: 1 to 19 digits, else 0. */
static unsigned long ex_number(const void *data, size_t len)
{
    char buf[20];
    if (len == 0 || len >= sizeof buf)
        return 0;
    memcpy(buf, data, len);
    buf[len] = '\0';
    return strspn(buf, "0123456789") == len ? strtoul(buf, NULL, 10) : 0;
}

/* Worker 0: send round 1 once worker 1 is on the bus (its pid comes with
 * the master's sibling alerts; SHK_ESRCH until it has joined). */
static void ex_start(ex_t *x)
{
    pid_t peer = shk_worker_sibling(x->w, 1);
    int rc = peer ? shk_bus_send(x->bus, peer, "ping", "1", 1) : SHK_ESRCH;
    if (rc == SHK_OK)
        x->started = 1;
    else if (rc != SHK_ESRCH)
        ex_fail(x);
}

/* Worker 1: count, then answer with the same number. */
static void ex_on_ping(shk_bus_t *bus, const char *name, const void *data, size_t len, void *ctx)
{
    (void)name;
    ex_bump(ctx, 1);
    if (shk_bus_reply(bus, "pong", data, len) != SHK_OK)
        ex_fail(ctx);
}

/* Worker 0: count, then the next round, or the result and the stop. */
static void ex_on_pong(shk_bus_t *bus, const char *name, const void *data, size_t len, void *ctx)
{
    ex_t *x = ctx;
    char n[24];
    (void)name;
    uint64_t total = ex_bump(x, 1);
    if (ex_number(data, len) != x->next)
        x->failed = 1;
    if (x->next < ex_pings && !x->failed) {
        int nlen = snprintf(n, sizeof n, "%lu", ++x->next);
        if (shk_bus_reply(bus, "ping", n, (size_t)nlen) != SHK_OK)
            ex_fail(x);
        return;
    }
    x->failed |= total != 2 * ex_pings;
    printf("%s: %lu pings, counter %llu\n", x->failed ? "FAILED" : "ok", x->next,
           (unsigned long long)total);
    fflush(stdout);
    kill(getppid(), SIGQUIT); /* done: stop the master, which stops us */
}

/* ---- a worker's start and end, the program's main() --------------------------------- */

/* Bind the worker's handle to the zone's counter and lock and register the
 * handler of its side. 0, or -1 (logged). */
static int ex_setup(ex_t *x, shk_worker_t *w)
{
    shk_zone_t *zone = shk_worker_zone(w, "counter");
    memset(x, 0, sizeof *x);
    x->w = w;
    x->bus = shk_worker_bus(w);
    x->slot = shk_worker_slot(w);
    x->next = 1;
    x->counter = shk_zone_data(zone);
    if (!x->counter || shk_zone_shmtx_create(zone, &x->lock, "counter") != SHK_OK) {
        shk_log(SHK_LOG_ERR, "worker %u: no counter in zone \"counter\"", x->slot);
        ex_fail(x);
        return -1;
    }
    if (x->slot == 0)
        shk_bus_on(x->bus, "pong", ex_on_pong, x);
    else
        shk_bus_on(x->bus, "ping", ex_on_ping, x);
    return 0;
}

/* The worker's exit status. */
static int ex_done(ex_t *x)
{
    shk_shmtx_destroy(&x->lock);
    return x->failed;
}

/* usage: PROG [CONF [PINGS]] */
static int ex_main(int argc, char **argv, const char *name, int (*worker)(shk_worker_t *, void *))
{
    shk_app_t app = {.name = name, .worker = worker, .conf_done = ex_conf_done};
    const char *conf = argc > 1 ? argv[1] : "examples/example.conf";
    if (argc > 3 || (argc > 2 && !(ex_pings = ex_number(argv[2], strlen(argv[2]))))) {
        fprintf(stderr, "usage: %s [CONF [PINGS]]\n", argv[0]);
        return 2;
    }
    if (shk_master_run(conf, &app, NULL) != SHK_OK) {
        fprintf(stderr, "%s: %s\n", argv[0], shk_last_errmsg());
        return 1;
    }
    return 0;
}

#endif /* EXAMPLES_PINGPONG_H */
