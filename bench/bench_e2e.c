/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * bench_e2e.c: the demo server end to end. Starts build/<variant>/shmkit-demo
 * with 4 workers on a free port and drives it with a small keep-alive HTTP
 * load client (4 connections in 4 processes): requests/s on /broadcast/<data>
 * (each request makes a worker broadcast an alert to all 4 workers, which
 * reply), and on a limit_req location; alerts delivered per second across
 * the workers. The baseline is /workers, a request that touches neither the
 * bus nor a zone's lock, measured in the same run.
 */
#include "util_bench.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#define CONNS 4

static int port;
static _Atomic long *done;

static int connect_to(void)
{
    int s = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (connect(s, (struct sockaddr *)&a, sizeof a) != 0) {
        close(s);
        return -1;
    }
    setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct timeval tv = {5, 0}; /* a stuck server must not hang the bench */
    setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    return s;
}

/* One request on a keep-alive connection; returns the status code. */
static int request(int s, const char *path, char *buf, size_t cap)
{
    char req[512];
    int n = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", path);
    if (write(s, req, (size_t)n) != n)
        return -1;
    size_t have = 0;
    for (;;) {
        ssize_t k = read(s, buf + have, cap - 1 - have);
        if (k <= 0)
            return -1;
        have += (size_t)k;
        buf[have] = '\0';
        char *end = strstr(buf, "\r\n\r\n");
        if (!end)
            continue;
        char *cl = strcasestr(buf, "Content-Length:");
        size_t body = cl ? (size_t)atol(cl + 15) : 0;
        if (have >= (size_t)(end + 4 - buf) + body)
            return atoi(buf + 9);
    }
}

static double run(const char *path, double seconds)
{
    *done = 0;
    uint64_t t0 = ub_now_ns();
    pid_t kids[CONNS];
    fflush(NULL);
    for (int c = 0; c < CONNS; c++)
        if ((kids[c] = fork()) == 0) {
            char buf[65536];
            int s = connect_to();
            long n = 0;
            while (s >= 0 && ub_now_ns() - t0 < (uint64_t)(seconds * 1e9)) {
                if (request(s, path, buf, sizeof buf) < 0) {
                    close(s);
                    s = connect_to();
                    continue;
                }
                n++;
            }
            *done += n;
            _exit(0);
        }
    for (int c = 0; c < CONNS; c++) /* not wait(): the server is our child too */
        waitpid(kids[c], NULL, 0);
    return (double)*done / ((double)(ub_now_ns() - t0) / 1e9);
}

static int free_port(void)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t l = sizeof a;
    bind(s, (struct sockaddr *)&a, sizeof a);
    getsockname(s, (struct sockaddr *)&a, &l);
    close(s);
    return ntohs(a.sin_port);
}

int main(void)
{
    char exe[PATH_MAX], demo[PATH_MAX + 32], conf[128], buf[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0)
        return 1;
    exe[n] = '\0';
    *strrchr(exe, '/') = '\0';
    snprintf(demo, sizeof demo, "%s/../shmkit-demo", exe);
    if (access(demo, X_OK) != 0) {
        printf("# bench_e2e skipped: %s is not built (libevent missing?)\n", demo);
        return 0;
    }
    done = ub_shared(sizeof *done);
    port = free_port();
    snprintf(conf, sizeof conf, "/tmp/shk_bench_e2e_%d.conf", (int)getpid());
    FILE *f = fopen(conf, "w");
    fprintf(f, "worker_processes 4;\nlisten 127.0.0.1:%d;\nshm_instance e2e%d;\n"
               "limit_req_zone $binary_remote_addr zone=one:10m rate=1000r/s;\n"
               "location /limited { limit_req zone=one burst=100 nodelay; }\n",
            port, (int)getpid());
    fclose(f);
    fflush(NULL);
    pid_t master = fork();
    if (master == 0) {
        if (!freopen("/dev/null", "w", stderr))
            _exit(127);
        execl(demo, demo, "-c", conf, (char *)NULL);
        _exit(127);
    }
    int s = -1;
    for (int i = 0; i < 500 && (s = connect_to()) < 0; i++)
        usleep(10000); /* waiting for the server to listen */
    if (s < 0) {
        fprintf(stderr, "bench_e2e: the demo server did not start\n");
        kill(master, SIGKILL);
        return 1;
    }
    request(s, "/workers", buf, sizeof buf);
    close(s);

    double base = run("/workers", 2.0);
    double bc = run("/broadcast/x", 2.0);
    double lim = run("/limited", 2.0);
    ub_report("e2e.broadcast", bc, "req/s", "workers_endpoint", base);
    ub_report("e2e.limited", lim, "req/s", "workers_endpoint", base);
    /* each broadcast request: 4 hello alerts, and 4 replies */
    ub_report("e2e.alerts", bc * 8, "alerts/s", "workers_endpoint_req", base);

    kill(master, SIGQUIT);
    waitpid(master, NULL, 0);
    unlink(conf);
    return 0;
}
