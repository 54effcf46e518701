/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * util_redis.h: a real redis-server (Debian's) and a 3-master Redis Cluster
 * for the suites that test channels across instances (util_redis.c). The
 * helpers ck_assert: call them from the test's own process, not a child.
 */
#ifndef UTIL_REDIS_H
#define UTIL_REDIS_H

#include <stdint.h>
#include <sys/types.h>

#include <hiredis/hiredis.h>

#define TR_STALL_MS 20000 /* a liveness bound: a server that takes longer fails */

typedef struct {
    pid_t pid;
    int port;     /* 0: pick a free one at the first start */
    char dir[64]; /* "": make a temporary one at the first start */
    int cluster;  /* 1: a cluster node */
} tr_srv_t;

/* A free loopback port below 45000 whose cluster bus port (+10000) is free
 * too. */
int tr_free_port(void);
/* Start (or restart, same port and directory) s; returns once the server
 * says it is ready. */
void tr_srv_start(tr_srv_t *s);
/* Send `sig` and reap it. */
void tr_srv_kill(tr_srv_t *s, int sig);
/* SIGKILL, remove its directory, forget its port. */
void tr_srv_stop(tr_srv_t *s);
/* A synchronous connection (asserted), and one integer command's answer
 * (-1 if not an integer). */
redisContext *tr_srv_conn(const tr_srv_t *s);
long long tr_srv_int(const tr_srv_t *s, const char *cmd);

/* Three cluster nodes joined (every slot covered, cluster_state:ok on
 * each), and their end. */
void tr_cluster_start(tr_srv_t cl[3]);
void tr_cluster_stop(tr_srv_t cl[3]);

#endif
