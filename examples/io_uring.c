/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * examples/io_uring.c: shmkit in an io_uring loop (liburing). The bus's fd
 * is watched with IORING_OP_POLL_ADD, a one-shot poll armed again after
 * each completion; the wait's 10 ms timeout is worker 0's retry until
 * worker 1 is on the bus. A server's other requests (accept, recv, send)
 * would share the ring, told apart by their user data. The ping-pong
 * itself (the counter in the zone, the handlers, main) is
 * examples/pingpong.h.
 *
 *     build/rel/examples/io_uring [CONF [PINGS]]
 */
#include "pingpong.h"

#include <errno.h>
#include <liburing.h>
#include <poll.h>

#define BUS_POLL 1 /* the user data of the bus's poll request */

static int stopping;

/* The master asked us to stop (called from inside shk_bus_dispatch). */
static void on_stop(shk_worker_t *w, int fast, void *ctx)
{
    (void)w, (void)fast, (void)ctx;
    stopping = 1;
}

/* Queue a poll for the bus's fd becoming readable. */
static int arm(struct io_uring *ring, int fd)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
    if (!sqe)
        return -1;
    io_uring_prep_poll_add(sqe, fd, POLLIN);
    io_uring_sqe_set_data(sqe, (void *)(uintptr_t)BUS_POLL);
    return 0;
}

static int worker(shk_worker_t *w, void *ctx)
{
    ex_t x;
    struct io_uring ring;
    (void)ctx;
    if (ex_setup(&x, w) != 0)
        return 1;
    if (io_uring_queue_init(8, &ring, 0) != 0) {
        ex_fail(&x);
        return 1;
    }
    shk_worker_on_stop(w, on_stop, NULL);
    int fd = shk_bus_fd(x.bus);
    if (arm(&ring, fd) != 0)
        ex_fail(&x);
    shk_bus_dispatch(x.bus, SHK_BUS_BUDGET); /* before the first wait */
    while (!stopping && !shk_worker_quitting()) {
        struct __kernel_timespec tick = {0, 10 * 1000 * 1000};
        struct io_uring_cqe *cqe = NULL;
        io_uring_submit(&ring); /* the poll armed last time round */
        int rc = io_uring_wait_cqe_timeout(&ring, &cqe, x.slot == 0 && !x.started ? &tick : NULL);
        if (rc == 0 && cqe) {
            int res = cqe->res;
            int ours = io_uring_cqe_get_data(cqe) == (void *)(uintptr_t)BUS_POLL;
            io_uring_cqe_seen(&ring, cqe);
            if (ours && res < 0 && res != -EINTR)
                ex_fail(&x);
            if (ours) {
                shk_bus_dispatch(x.bus, SHK_BUS_BUDGET);
                if (arm(&ring, fd) != 0)
                    ex_fail(&x);
            }
        } else if (rc < 0 && rc != -ETIME && rc != -EINTR) {
            ex_fail(&x);
            break;
        }
        if (x.slot == 0 && !x.started)
            ex_start(&x);
    }
    io_uring_queue_exit(&ring);
    return ex_done(&x);
}

int main(int argc, char **argv)
{
    return ex_main(argc, argv, "example-io_uring", worker);
}
