/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * examples/libevent.c: shmkit in a libevent loop. The bus's fd is a
 * persistent read event; a 10 ms timer is worker 0's retry until worker 1
 * is on the bus; the stop hook breaks the loop. The ping-pong itself (the
 * counter in the zone, the handlers, main) is examples/pingpong.h.
 *
 *     build/rel/examples/libevent [CONF [PINGS]]
 */
#include "pingpong.h"

#include <event2/event.h>

static struct event *retry; /* worker 0's timer */

/* The bus's fd is readable. */
static void on_bus(evutil_socket_t fd, short what, void *arg)
{
    ex_t *x = arg;
    (void)fd, (void)what;
    shk_bus_dispatch(x->bus, SHK_BUS_BUDGET);
}

/* Worker 0, every 10 ms until round 1 is sent. */
static void on_retry(evutil_socket_t fd, short what, void *arg)
{
    ex_t *x = arg;
    (void)fd, (void)what;
    ex_start(x);
    if (x->started)
        event_del(retry);
}

/* The master asked us to stop (called from inside shk_bus_dispatch). */
static void on_stop(shk_worker_t *w, int fast, void *ctx)
{
    (void)w, (void)fast;
    event_base_loopbreak(ctx);
}

static int worker(shk_worker_t *w, void *ctx)
{
    ex_t x;
    struct timeval tick = {0, 10 * 1000};
    struct event_base *base = NULL;
    struct event *bus = NULL;
    (void)ctx;
    if (ex_setup(&x, w) != 0)
        return 1;
    if (!(base = event_base_new()) ||
        !(bus = event_new(base, shk_bus_fd(x.bus), EV_READ | EV_PERSIST, on_bus, &x)) ||
        !(retry = event_new(base, -1, EV_PERSIST, on_retry, &x)) || event_add(bus, NULL) != 0 ||
        (x.slot == 0 && event_add(retry, &tick) != 0)) {
        ex_fail(&x);
    } else {
        shk_worker_on_stop(w, on_stop, base);
        shk_bus_dispatch(x.bus, SHK_BUS_BUDGET); /* before the first wait */
        if (!shk_worker_quitting())
            event_base_dispatch(base);
    }
    if (retry)
        event_free(retry);
    if (bus)
        event_free(bus);
    if (base)
        event_base_free(base);
    return ex_done(&x);
}

int main(int argc, char **argv)
{
    return ex_main(argc, argv, "example-libevent", worker);
}
