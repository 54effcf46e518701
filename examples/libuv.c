/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * examples/libuv.c: shmkit in a libuv loop. The bus's fd is a uv_poll_t
 * (readable); a 10 ms uv_timer_t is worker 0's retry until worker 1 is on
 * the bus; the stop hook closes both handles, so uv_run() returns. The
 * ping-pong itself (the counter in the zone, the handlers, main) is
 * examples/pingpong.h.
 *
 *     build/rel/examples/libuv [CONF [PINGS]]
 */
#include "pingpong.h"

#include <uv.h>

static uv_poll_t bus_poll;
static uv_timer_t retry; /* worker 0's timer */

/* The bus's fd is readable. */
static void on_bus(uv_poll_t *h, int status, int events)
{
    ex_t *x = h->data;
    (void)events;
    if (status < 0)
        ex_fail(x);
    else
        shk_bus_dispatch(x->bus, SHK_BUS_BUDGET);
}

/* Worker 0, every 10 ms until round 1 is sent. */
static void on_retry(uv_timer_t *t)
{
    ex_t *x = t->data;
    ex_start(x);
    if (x->started)
        uv_timer_stop(t);
}

/* The master asked us to stop (called from inside shk_bus_dispatch):
 * with its handles closed, the loop ends. */
static void on_stop(shk_worker_t *w, int fast, void *ctx)
{
    (void)w, (void)fast, (void)ctx;
    if (!uv_is_closing((uv_handle_t *)&bus_poll))
        uv_close((uv_handle_t *)&bus_poll, NULL);
    if (!uv_is_closing((uv_handle_t *)&retry))
        uv_close((uv_handle_t *)&retry, NULL);
}

static int worker(shk_worker_t *w, void *ctx)
{
    ex_t x;
    uv_loop_t loop;
    (void)ctx;
    if (ex_setup(&x, w) != 0)
        return 1;
    bus_poll.data = retry.data = &x;
    if (uv_loop_init(&loop) != 0 || uv_poll_init(&loop, &bus_poll, shk_bus_fd(x.bus)) != 0 ||
        uv_timer_init(&loop, &retry) != 0) {
        ex_fail(&x);
        return 1;
    }
    shk_worker_on_stop(w, on_stop, NULL);
    if (uv_poll_start(&bus_poll, UV_READABLE, on_bus) != 0 ||
        (x.slot == 0 && uv_timer_start(&retry, on_retry, 10, 10) != 0))
        ex_fail(&x); /* the master stops us, through on_stop */
    shk_bus_dispatch(x.bus, SHK_BUS_BUDGET); /* before the first wait */
    if (shk_worker_quitting())
        on_stop(w, 0, NULL);
    uv_run(&loop, UV_RUN_DEFAULT); /* until the handles are closed */
    uv_loop_close(&loop);
    return ex_done(&x);
}

int main(int argc, char **argv)
{
    return ex_main(argc, argv, "example-libuv", worker);
}
