/*
 * bench_bus.c: the bus against baselines measured in the same run: ngx.ipc's
 * design (each alert framed and written through the receiver's pipe), a
 * POSIX message queue, and a unix socketpair. Figures: 1 sender to 1
 * receiver with 64-byte alerts (busy and sleepy receivers), broadcast to 4
 * workers, 1 MiB alerts (receivers that read them or not), doorbell writes
 * and all system calls (sender and receiver) per alert under load, and
 * wake-up latency of a sleeping receiver against half a bare pipe round
 * trip, its tail beside the kernel's own one-way wake-ups (a bare pipe, a
 * futex).
 */
#include "shmkit.h"
#include "util_bench.h"

#include <errno.h>
#include <fcntl.h>
#include <mqueue.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/futex.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define N64 400000L
#define NAME "a"

typedef struct {
    _Atomic long got[8];
    _Atomic int ready;
    _Atomic int stop;
    long long sys[8];      /* receivers' system calls over a run (-1: not counted) */
    _Atomic uint32_t word; /* futex baseline: rounds posted */
    uint64_t stamp;        /* futex baseline: the send time of the last one */
    double lat[4096];
} shared_t;

static shared_t *S;
static shk_zones_t *reg;
static shk_zone_t *zone;
static shk_bus_t *bus;

static void new_bus(unsigned slots, size_t queue, size_t zone_size)
{
    if (bus) {
        shk_bus_close(bus);
        shk_zones_free(reg);
    }
    reg = shk_zones_new(NULL);
    zone = shk_zone_add(reg, "bench", zone_size, "bench");
    if (!zone || shk_zones_create(reg, NULL) != SHK_OK) {
        fprintf(stderr, "bench_bus: %s\n", shk_last_errmsg());
        exit(1);
    }
    bus = shk_bus_create(zone, slots, queue);
    if (!bus) {
        fprintf(stderr, "bench_bus: %s\n", shk_last_errmsg());
        exit(1);
    }
    memset(S, 0, sizeof *S);
}

/* ---- bus receivers ------------------------------------------------------------ */

/* For the *_read figures: receivers, of the bus and of the pipe alike, read
 * every cache line of the data they get (set before the fork). */
static int read_data;
static unsigned long read_sink;

/* For bus.syscalls_per_alert: receivers count their system calls (set
 * before the fork). A run of its own: a counted process's system calls
 * take the kernel's slower traced path, which would handicap the pipe's
 * throughput figures. */
static int count_calls;

static void read_lines(const void *p, size_t n)
{
    const volatile unsigned char *d = p;
    unsigned long x = 0;
    for (size_t i = 0; i < n; i += 64)
        x += d[i];
    read_sink += x;
}

static long rx_count;
static void on_alert(shk_bus_t *b, const char *name, const void *data, size_t len, void *ctx)
{
    (void)b, (void)name, (void)ctx;
    if (read_data)
        read_lines(data, len);
    rx_count++;
}

static void on_stamp(shk_bus_t *b, const char *name, const void *data, size_t len, void *ctx)
{
    uint64_t t0;
    (void)b, (void)name, (void)len, (void)ctx;
    memcpy(&t0, data, sizeof t0);
    if (rx_count < 4096)
        S->lat[rx_count] = (double)(ub_now_ns() - t0) / 1000.0;
    rx_count++;
}

static int bus_receiver(int slot, long expect, shk_bus_handler_t h)
{
    shk_pid_refresh();
    if (shk_bus_join(bus, (unsigned)slot) != SHK_OK)
        return 1;
    shk_bus_on(bus, NAME, h, NULL);
    rx_count = 0;
    S->ready++;
    int sc = count_calls ? ub_syscalls_start() : -1;
    while (rx_count < expect) {
        shk_bus_wait(bus, 1000);
        shk_bus_dispatch(bus, 1024);
        S->got[slot] = rx_count;
    }
    S->sys[slot] = ub_syscalls_stop(sc);
    return 0;
}

static pid_t fork_receiver(int slot, long expect, shk_bus_handler_t h)
{
    fflush(NULL);
    pid_t p = fork();
    if (p == 0)
        _exit(bus_receiver(slot, expect, h));
    return p;
}

static void await_ready(int n)
{
    while (S->ready < n)
        shk_cpu_relax();
}

static void send_or_spin(pid_t to, const void *d, size_t len)
{
    while (shk_bus_send(bus, to, NAME, d, len) != SHK_OK)
        shk_cpu_relax();
}

/* ---- pipe (ngx.ipc) baseline ------------------------------------------------------ */

/* frame: u8 name_len, u32 data_len, name, data; written with one write() */
static int pipe_receiver(int fd, long expect, size_t len, int stamp)
{
    size_t frame = 1 + 4 + strlen(NAME) + len, have = 0;
    char *buf = malloc(frame * 64 + 65536);
    long got = 0;
    int sc = count_calls ? ub_syscalls_start() : -1;
    while (got < expect) {
        ssize_t n = read(fd, buf + have, frame * 64 - have);
        if (n <= 0) {
            if (n < 0 && errno == EAGAIN) {
                struct pollfd p = {fd, POLLIN, 0};
                poll(&p, 1, 1000);
                continue;
            }
            return 1;
        }
        have += (size_t)n;
        size_t off = 0;
        while (have - off >= frame) {
            if (stamp && got < 4096) {
                uint64_t t0;
                memcpy(&t0, buf + off + 5 + strlen(NAME), 8);
                S->lat[got] = (double)(ub_now_ns() - t0) / 1000.0;
            }
            if (read_data)
                read_lines(buf + off + 5 + strlen(NAME), len);
            off += frame;
            got++;
        }
        memmove(buf, buf + off, have - off);
        have -= off;
        S->got[0] = got;
    }
    S->sys[0] = ub_syscalls_stop(sc);
    free(buf);
    return 0;
}

static void pipe_send(int fd, const void *data, size_t len)
{
    size_t nl = strlen(NAME), frame = 5 + nl + len;
    static char *buf;
    static size_t cap;
    if (cap < frame) {
        free(buf);
        buf = malloc(frame);
        cap = frame;
    }
    uint32_t l32 = (uint32_t)len;
    buf[0] = (char)nl;
    memcpy(buf + 1, &l32, 4);
    memcpy(buf + 5, NAME, nl);
    memcpy(buf + 5 + nl, data, len);
    size_t done = 0;
    while (done < frame) {
        ssize_t n = write(fd, buf + done, frame - done);
        if (n > 0)
            done += (size_t)n;
        else if (n < 0 && errno == EAGAIN) {
            struct pollfd p = {fd, POLLOUT, 0};
            poll(&p, 1, 1000);
        } else
            exit(2);
    }
}

/* System calls of a sender and its receiver per alert; -1 if either was
 * not counted. */
static double calls_per_alert(long long sender, long long receiver, long n)
{
    return sender < 0 || receiver < 0 ? -1 : (double)(sender + receiver) / (double)n;
}

/* Alerts per second; *syscalls (when asked) the system calls of sender and
 * receiver per alert, -1 when they cannot be counted. */
static double pipe_run(long n, size_t len, int sleepy, double *syscalls)
{
    int fd[2];
    if (pipe(fd) != 0)
        exit(2);
    fcntl(fd[0], F_SETFL, O_NONBLOCK);
    fcntl(fd[1], F_SETFL, O_NONBLOCK);
    fcntl(fd[1], F_SETPIPE_SZ, 1 << 20);
    memset(S, 0, sizeof *S);
    fflush(NULL);
    pid_t p = fork();
    if (p == 0)
        _exit(pipe_receiver(fd[0], n, len, 0));
    char *data = calloc(1, len ? len : 1);
    int sc = syscalls ? ub_syscalls_start() : -1;
    uint64_t t0 = ub_now_ns();
    for (long i = 0; i < n; i++) {
        pipe_send(fd[1], data, len);
        if (sleepy && i % 16 == 15)
            while (S->got[0] < i + 1)
                shk_cpu_relax();
    }
    waitpid(p, NULL, 0);
    double secs = (double)(ub_now_ns() - t0) / 1e9;
    if (syscalls)
        *syscalls = calls_per_alert(ub_syscalls_stop(sc), S->sys[0], n);
    close(fd[0]);
    close(fd[1]);
    free(data);
    return (double)n / secs;
}

/* ---- bus runs ----------------------------------------------------------------------- */

/* Alerts per second; *doorbells (when asked) doorbell writes per alert,
 * *syscalls system calls of sender and receiver per alert (as pipe_run). */
static double bus_unicast(long n, size_t len, int sleepy, double *doorbells, double *syscalls)
{
    new_bus(1, 4u << 20, 16u << 20);
    pid_t r = fork_receiver(0, n, on_alert);
    await_ready(1);
    char *data = calloc(1, len ? len : 1);
    int sc = syscalls ? ub_syscalls_start() : -1;
    uint64_t t0 = ub_now_ns();
    for (long i = 0; i < n; i++) {
        send_or_spin(r, data, len);
        if (sleepy && i % 16 == 15)
            while (S->got[0] < i + 1)
                shk_cpu_relax();
    }
    waitpid(r, NULL, 0);
    double secs = (double)(ub_now_ns() - t0) / 1e9;
    if (syscalls)
        *syscalls = calls_per_alert(ub_syscalls_stop(sc), S->sys[0], n);
    shk_bus_slot_stats_t st;
    shk_bus_slot_stats(bus, 0, &st);
    if (doorbells)
        *doorbells = (double)st.rung / (double)n;
    free(data);
    return (double)n / secs;
}

static double bus_large(long n, size_t len)
{
    new_bus(1, 1u << 20, (size_t)(n + 8) * len + (8u << 20));
    pid_t r = fork_receiver(0, n, on_alert);
    await_ready(1);
    char *data = calloc(1, len);
    uint64_t t0 = ub_now_ns();
    for (long i = 0; i < n; i++) {
        while (S->got[0] < i - 4) /* at most a few in flight: bounded memory */
            shk_cpu_relax();
        send_or_spin(r, data, len);
    }
    waitpid(r, NULL, 0);
    double secs = (double)(ub_now_ns() - t0) / 1e9;
    free(data);
    return (double)n * (double)len / 1e6 / secs;
}

static double pipe_broadcast(long n, int w)
{
    int fds[4][2];
    pid_t ps[4];
    memset(S, 0, sizeof *S);
    for (int i = 0; i < w; i++) {
        if (pipe(fds[i]) != 0)
            exit(2);
        fcntl(fds[i][0], F_SETFL, O_NONBLOCK);
        fcntl(fds[i][1], F_SETFL, O_NONBLOCK);
        fflush(NULL);
        ps[i] = fork();
        if (ps[i] == 0)
            _exit(pipe_receiver(fds[i][0], n, 64, 0));
    }
    char data[64] = {0};
    uint64_t t0 = ub_now_ns();
    for (long k = 0; k < n; k++)
        for (int i = 0; i < w; i++)
            pipe_send(fds[i][1], data, sizeof data);
    for (int i = 0; i < w; i++)
        waitpid(ps[i], NULL, 0);
    double secs = (double)(ub_now_ns() - t0) / 1e9;
    for (int i = 0; i < w; i++) {
        close(fds[i][0]);
        close(fds[i][1]);
    }
    return (double)n * w / secs;
}

static double bus_broadcast(long n, int w)
{
    pid_t ps[4];
    new_bus((unsigned)w, 4u << 20, 32u << 20);
    for (int i = 0; i < w; i++)
        ps[i] = fork_receiver(i, n, on_alert);
    await_ready(w);
    char data[64] = {0};
    uint64_t t0 = ub_now_ns();
    for (long k = 0; k < n; k++) {
        shk_bus_bcast_t res;
        int rc = shk_bus_broadcast(bus, NAME, data, sizeof data, &res);
        for (int i = 0; rc != SHK_OK && i < w; i++)
            while (res.failed >> i & 1) { /* resend to the ones that were full */
                shk_cpu_relax();
                if (shk_bus_send(bus, ps[i], NAME, data, sizeof data) == SHK_OK)
                    res.failed &= ~(1ULL << i);
            }
    }
    for (int i = 0; i < w; i++)
        waitpid(ps[i], NULL, 0);
    double secs = (double)(ub_now_ns() - t0) / 1e9;
    return (double)n * w / secs;
}

static double mq_run(long n)
{
    char qn[64];
    struct mq_attr a = {0};
    snprintf(qn, sizeof qn, "/shk_bench_%d", (int)getpid());
    a.mq_maxmsg = 10;
    a.mq_msgsize = 128;
    mq_unlink(qn);
    mqd_t q = mq_open(qn, O_CREAT | O_RDWR, 0600, &a);
    if (q == (mqd_t)-1)
        return -1;
    fflush(NULL);
    pid_t p = fork();
    if (p == 0) {
        char buf[128];
        for (long i = 0; i < n; i++)
            if (mq_receive(q, buf, sizeof buf, NULL) < 0)
                _exit(1);
        _exit(0);
    }
    char msg[5 + 1 + 64] = {0};
    uint64_t t0 = ub_now_ns();
    for (long i = 0; i < n; i++)
        mq_send(q, msg, sizeof msg, 0);
    waitpid(p, NULL, 0);
    double secs = (double)(ub_now_ns() - t0) / 1e9;
    mq_close(q);
    mq_unlink(qn);
    return (double)n / secs;
}

static double socketpair_run(long n)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv) != 0)
        return -1;
    fflush(NULL);
    pid_t p = fork();
    if (p == 0) {
        char buf[256];
        for (long i = 0; i < n; i++)
            if (read(sv[1], buf, sizeof buf) <= 0)
                _exit(1);
        _exit(0);
    }
    char msg[5 + 1 + 64] = {0};
    uint64_t t0 = ub_now_ns();
    for (long i = 0; i < n; i++)
        if (write(sv[0], msg, sizeof msg) < 0)
            break;
    waitpid(p, NULL, 0);
    double secs = (double)(ub_now_ns() - t0) / 1e9;
    close(sv[0]);
    close(sv[1]);
    return (double)n / secs;
}

/* The same one-way wake-up through the kernel alone: the receiver blocks in
 * read() on a bare pipe (the ngx.ipc design) or in FUTEX_WAIT on a word in
 * shared memory (the cheapest sleep and wake the kernel offers); the sender
 * stamps the time and wakes it. Context for the p99 target only: wake_p50's
 * baseline stays half a pipe round trip. */
enum { WAKE_PIPE, WAKE_FUTEX };

static void kernel_wake(int how, int rounds, double *p50, double *p99)
{
    int fd[2];
    if (pipe(fd) != 0)
        exit(2);
    memset(S, 0, sizeof *S);
    fflush(NULL);
    pid_t p = fork();
    if (p == 0) {
        for (int i = 0; i < rounds; i++) {
            uint64_t t0;
            if (how == WAKE_PIPE) {
                if (read(fd[0], &t0, sizeof t0) != (ssize_t)sizeof t0)
                    _exit(1);
            } else {
                /* acquire: the stamp was stored before the word */
                while (atomic_load_explicit(&S->word, memory_order_acquire) == (uint32_t)i)
                    syscall(SYS_futex, &S->word, FUTEX_WAIT, i, NULL, NULL, 0);
                t0 = S->stamp;
            }
            if (i < 4096)
                S->lat[i] = (double)(ub_now_ns() - t0) / 1000.0;
            S->got[0] = i + 1;
        }
        _exit(0);
    }
    for (int i = 0; i < rounds; i++) {
        usleep(200);
        uint64_t t0 = ub_now_ns();
        if (how == WAKE_PIPE) {
            if (write(fd[1], &t0, sizeof t0) != (ssize_t)sizeof t0)
                exit(2);
        } else {
            S->stamp = t0;
            /* release: publishes the stamp with the word */
            atomic_store_explicit(&S->word, (uint32_t)i + 1, memory_order_release);
            syscall(SYS_futex, &S->word, FUTEX_WAKE, 1, NULL, NULL, 0);
        }
        while (S->got[0] < i + 1)
            shk_cpu_relax();
    }
    waitpid(p, NULL, 0);
    close(fd[0]);
    close(fd[1]);
    qsort(S->lat, (size_t)rounds, sizeof(double), ub_cmp_double);
    *p50 = S->lat[rounds / 2];
    *p99 = S->lat[rounds * 99 / 100];
}

/* Wake-up latency: the receiver sleeps; one stamped alert; it records the
 * delay. Pauses between alerts let it fall asleep again. */
static void bus_wake(int rounds, double *p50, double *p99)
{
    new_bus(1, 1u << 20, 8u << 20);
    pid_t r = fork_receiver(0, rounds, on_stamp);
    await_ready(1);
    for (int i = 0; i < rounds; i++) {
        usleep(200); /* let the receiver go to sleep: this is what is measured */
        uint64_t t0 = ub_now_ns();
        send_or_spin(r, &t0, sizeof t0);
        while (S->got[0] < i + 1)
            shk_cpu_relax();
    }
    waitpid(r, NULL, 0);
    qsort(S->lat, (size_t)rounds, sizeof(double), ub_cmp_double);
    *p50 = S->lat[rounds / 2];
    *p99 = S->lat[rounds * 99 / 100];
}

static double pipe_half_rtt(int rounds)
{
    int a[2], b[2];
    double *t = calloc((size_t)rounds, sizeof *t);
    if (pipe(a) != 0 || pipe(b) != 0)
        exit(2);
    fflush(NULL);
    pid_t p = fork();
    if (p == 0) {
        char c;
        for (int i = 0; i < rounds; i++)
            if (read(a[0], &c, 1) != 1 || write(b[1], &c, 1) != 1)
                _exit(1);
        _exit(0);
    }
    for (int i = 0; i < rounds; i++) {
        char c = 'x';
        usleep(200);
        uint64_t t0 = ub_now_ns();
        if (write(a[1], &c, 1) != 1 || read(b[0], &c, 1) != 1)
            exit(2);
        t[i] = (double)(ub_now_ns() - t0) / 2000.0;
    }
    waitpid(p, NULL, 0);
    double half = ub_median(t, (size_t)rounds);
    free(t);
    return half;
}

int main(void)
{
    S = ub_shared(sizeof *S);
    signal(SIGPIPE, SIG_IGN);
    shk_log_set(NULL, NULL, SHK_LOG_ERR);

    double doorbells;
    double b64 = bus_unicast(N64, 64, 0, &doorbells, NULL);
    double p64 = pipe_run(N64, 64, 0, NULL);
    double m64 = mq_run(N64 / 4);
    double s64 = socketpair_run(N64 / 4);
    ub_report("bus.unicast64", b64, "alerts/s", "pipe", p64);
    if (m64 > 0)
        ub_report("bus.unicast64_mq", b64, "alerts/s", "posix_mq", m64);
    else
        printf("# bus.unicast64_mq skipped: mq_open failed (%s)\n", strerror(errno));
    ub_report("bus.unicast64_socketpair", b64, "alerts/s", "socketpair", s64);
    ub_report("bus.doorbells_per_alert", doorbells, "writes/alert", "pipe", 1.0);
    double bsys, psys;
    count_calls = 1;
    bus_unicast(N64 / 4, 64, 0, NULL, &bsys);
    pipe_run(N64 / 4, 64, 0, &psys);
    count_calls = 0;
    if (bsys >= 0 && psys >= 0)
        ub_report("bus.syscalls_per_alert", bsys, "calls/alert", "pipe", psys);
    else
        printf("# bus.syscalls_per_alert skipped: system calls cannot be counted here "
               "(perf_event_open on raw_syscalls:sys_enter)\n");

    double bs = bus_unicast(N64 / 4, 64, 1, NULL, NULL);
    double ps = pipe_run(N64 / 4, 64, 1, NULL);
    ub_report("bus.unicast64_sleepy", bs, "alerts/s", "pipe", ps);

    double bb = bus_broadcast(N64 / 4, 4);
    double pb = pipe_broadcast(N64 / 4, 4);
    ub_report("bus.broadcast4", bb, "deliveries/s", "pipe", pb);

    double bl = bus_large(300, 1u << 20);
    double pl = pipe_run(300, 1u << 20, 0, NULL) * (double)(1u << 20) / 1e6;
    ub_report("bus.large1m", bl, "MB/s", "pipe", pl);
    read_data = 1;
    bl = bus_large(300, 1u << 20);
    pl = pipe_run(300, 1u << 20, 0, NULL) * (double)(1u << 20) / 1e6;
    read_data = 0;
    ub_report("bus.large1m_read", bl, "MB/s", "pipe_read", pl);

    /* Wake-up: three rounds of 2000, the bare pipe, the futex and the bus
     * in turn; the median of each percentile is reported, so that one burst
     * of the host's own noise (seen here: a round at 79 us p50, 3 ms p99,
     * with the pipe round before it normal) does not decide the figure
     * alone. */
    double r50[3], r99[3], rw50[3], rw99[3], rf50[3], rf99[3], half = pipe_half_rtt(2000);
    for (int r = 0; r < 3; r++) {
        kernel_wake(WAKE_PIPE, 2000, &rw50[r], &rw99[r]);
        kernel_wake(WAKE_FUTEX, 2000, &rf50[r], &rf99[r]);
        bus_wake(2000, &r50[r], &r99[r]);
    }
    double p50 = ub_median(r50, 3), p99 = ub_median(r99, 3);
    ub_report("bus.wake_p50", p50, "us", "pipe_half_rtt", half);
    ub_report("bus.wake_p99", p99, "us", "target_50us", 50.0);
    ub_report("bus.wake_p50_vs_pipe", p50, "us", "pipe_oneway_p50", ub_median(rw50, 3));
    ub_report("bus.wake_p99_vs_pipe", p99, "us", "pipe_oneway_p99", ub_median(rw99, 3));
    ub_report("bus.wake_p99_vs_futex", p99, "us", "futex_oneway_p99", ub_median(rf99, 3));

    shk_bus_close(bus);
    shk_zones_free(reg);
    return 0;
}
