/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * util_redis.c: a real redis-server for the suites that need one
 * (test_redis, test_demo_redis): started on a free loopback port in a
 * temporary directory with an append-only file synced at every write (so
 * what Redis accepted survives a SIGKILL), restarted on the same port and
 * directory, killed, removed; a 3-master Redis Cluster made with redis-cli
 * --cluster create.
 */
#include "util_redis.h"

#include "util_run.h"
#include "util_test.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int port_free(int port)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
                            .sin_port = htons((uint16_t)port)};
    int fd = socket(AF_INET, SOCK_STREAM, 0), ok;
    ck_assert_int_ge(fd, 0);
    ok = bind(fd, (struct sockaddr *)&a, sizeof a) == 0;
    close(fd);
    return ok;
}

/* A free loopback port below 45000 whose cluster bus port (+10000) is free
 * too (a cluster node's port must be 55535 or less). */
int tr_free_port(void)
{
    static uint64_t seed;
    if (!seed)
        seed = (uint64_t)tu_now_ms() ^ ((uint64_t)getpid() << 20);
    for (int i = 0; i < 1000; i++) {
        int p = 20000 + (int)(tu_rand(&seed) % 25000);
        if (port_free(p) && port_free(p + 10000))
            return p;
    }
    ck_abort_msg("no free port");
    return 0;
}

/* Start (or restart, same port and directory) s; returns when the server
 * says it is ready on its standard output. */
void tr_srv_start(tr_srv_t *s)
{
    int fd[2];
    char port[16], buf[4096];
    size_t have = 0;
    uint64_t end = tu_now_ms() + TR_STALL_MS;
    if (!s->port)
        s->port = tr_free_port();
    if (!s->dir[0]) {
        snprintf(s->dir, sizeof s->dir, "/tmp/shmkit-redis.XXXXXX");
        ck_assert_ptr_nonnull(mkdtemp(s->dir));
    }
    snprintf(port, sizeof port, "%d", s->port);
    ck_assert_int_eq(pipe(fd), 0);
    s->pid = fork();
    ck_assert_int_ge(s->pid, 0);
    if (s->pid == 0) {
        dup2(fd[1], 1);
        dup2(fd[1], 2);
        close(fd[0]);
        close(fd[1]);
        if (s->cluster)
            execlp("redis-server", "redis-server", "--port", port, "--bind", "127.0.0.1",
                   "--dir", s->dir, "--save", "", "--appendonly", "yes", "--appendfsync",
                   "always", "--daemonize", "no", "--logfile", "", "--protected-mode", "no",
                   "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                   "--cluster-node-timeout", "3000", (char *)NULL);
        else
            execlp("redis-server", "redis-server", "--port", port, "--bind", "127.0.0.1",
                   "--dir", s->dir, "--save", "", "--appendonly", "yes", "--appendfsync",
                   "always", "--daemonize", "no", "--logfile", "", "--protected-mode", "no",
                   (char *)NULL);
        _exit(127);
    }
    close(fd[1]);
    for (;;) {
        struct pollfd p = {.fd = fd[0], .events = POLLIN};
        uint64_t t = tu_now_ms();
        ssize_t n;
        ck_assert_msg(t < end && poll(&p, 1, (int)(end - t)) > 0,
                      "redis-server on port %d did not start", s->port);
        n = read(fd[0], buf + have, sizeof buf - 1 - have);
        ck_assert_msg(n > 0, "redis-server on port %d exited: %.*s", s->port, (int)have, buf);
        have += (size_t)n;
        buf[have] = '\0';
        if (strstr(buf, "Ready to accept connections"))
            break;
        if (have > sizeof buf / 2) { /* keep the tail */
            memmove(buf, buf + have - 64, 64);
            have = 64;
        }
    }
    close(fd[0]); /* redis-server ignores SIGPIPE: its later log lines go nowhere */
}

void tr_srv_kill(tr_srv_t *s, int sig)
{
    if (s->pid > 0) {
        kill(s->pid, sig);
        waitpid(s->pid, NULL, 0);
    }
    s->pid = 0;
}

void tr_srv_stop(tr_srv_t *s)
{
    char cmd[128];
    tr_srv_kill(s, SIGKILL);
    if (s->dir[0]) {
        snprintf(cmd, sizeof cmd, "rm -rf %s", s->dir);
        ck_assert_int_eq(system(cmd), 0);
    }
    s->dir[0] = '\0';
    s->port = 0;
}

redisContext *tr_srv_conn(const tr_srv_t *s)
{
    redisContext *c = redisConnect("127.0.0.1", s->port);
    ck_assert_msg(c && !c->err, "connect to %d: %s", s->port, c ? c->errstr : "?");
    return c;
}

long long tr_srv_int(const tr_srv_t *s, const char *cmd)
{
    redisContext *c = tr_srv_conn(s);
    redisReply *r = redisCommand(c, cmd);
    long long v;
    ck_assert_ptr_nonnull(r);
    v = r->type == REDIS_REPLY_INTEGER ? r->integer : -1;
    freeReplyObject(r);
    redisFree(c);
    return v;
}

/* ---- a cluster of three masters ---- */

void tr_cluster_start(tr_srv_t cl[3])
{
    char a[3][32];
    pid_t pid;
    for (int i = 0; i < 3; i++) {
        memset(&cl[i], 0, sizeof cl[i]);
        cl[i].cluster = 1;
        tr_srv_start(&cl[i]);
        snprintf(a[i], sizeof a[i], "127.0.0.1:%d", cl[i].port);
    }
    pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        int null = open("/dev/null", O_WRONLY);
        dup2(null, 1);
        execlp("redis-cli", "redis-cli", "--cluster", "create", a[0], a[1], a[2],
               "--cluster-replicas", "0", "--cluster-yes", (char *)NULL);
        _exit(127);
    }
    int st;
    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "redis-cli --cluster create failed");
    /* every node agrees before the test starts (polling the servers) */
    for (int i = 0; i < 3; i++) {
        uint64_t end = tu_now_ms() + TR_STALL_MS;
        for (;;) {
            redisContext *c = tr_srv_conn(&cl[i]);
            redisReply *r = redisCommand(c, "CLUSTER INFO");
            int ok = r && r->type == REDIS_REPLY_STRING && strstr(r->str, "cluster_state:ok");
            freeReplyObject(r);
            redisFree(c);
            if (ok)
                break;
            ck_assert_msg(tu_now_ms() < end, "cluster node %d never became ok", i);
            tu_pause_ms(20);
        }
    }
}

void tr_cluster_stop(tr_srv_t cl[3])
{
    for (int i = 0; i < 3; i++)
        tr_srv_stop(&cl[i]);
}
