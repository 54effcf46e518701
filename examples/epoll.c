/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * examples/epoll.c: shmkit in a plain epoll loop. The bus's fd sits in
 * the epoll set like any socket; the 10 ms timeout is worker 0's retry
 * until worker 1 is on the bus. The ping-pong itself (the counter in the
 * zone, the handlers, main) is examples/pingpong.h.
 *
 *     build/rel/examples/epoll [CONF [PINGS]]
 */
#include "pingpong.h"

#include <errno.h>
#include <sys/epoll.h>

static int stopping;

/* The master asked us to stop (called from inside shk_bus_dispatch). */
static void on_stop(shk_worker_t *w, int fast, void *ctx)
{
    (void)w, (void)fast, (void)ctx;
    stopping = 1;
}

static int worker(shk_worker_t *w, void *ctx)
{
    ex_t x;
    (void)ctx;
    if (ex_setup(&x, w) != 0)
        return 1;
    shk_worker_on_stop(w, on_stop, NULL);

    int fd = shk_bus_fd(x.bus);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
    if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
        ex_fail(&x);
        return 1;
    }
    shk_bus_dispatch(x.bus, SHK_BUS_BUDGET); /* before the first wait */
    while (!stopping && !shk_worker_quitting()) {
        int n = epoll_wait(ep, &ev, 1, x.slot == 0 && !x.started ? 10 : -1);
        if (n < 0 && errno != EINTR) {
            ex_fail(&x);
            break;
        }
        if (n > 0) /* the bus's fd is the only one here */
            shk_bus_dispatch(x.bus, SHK_BUS_BUDGET);
        if (x.slot == 0 && !x.started)
            ex_start(&x);
    }
    close(ep);
    return ex_done(&x);
}

int main(int argc, char **argv)
{
    return ex_main(argc, argv, "example-epoll", worker);
}
