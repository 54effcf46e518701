/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * util_demo.h: several demo servers (build/<v>/shmkit-demo) at once for the
 * suites that run them for real (test_demo_redis): each started on its own
 * loopback port with its own configuration, log and shm instance in a
 * temporary directory, stopped with SIGQUIT; a plain HTTP/1.1 client for
 * one request to any of them; /channels-stats figures; a Node child's
 * standard output read line by line (programs are started with util_run's
 * tu_spawn and tu_spawn_logged). The helpers ck_assert: call them from the
 * test's own process.
 */
#ifndef UTIL_DEMO_H
#define UTIL_DEMO_H

#include <stddef.h>
#include <sys/types.h>

typedef struct {
    int port;           /* set by the caller before td_start (a free loopback port) */
    pid_t master;
    char dir[128], conf[160], log[160], pid_path[160];
} td_srv_t;

typedef struct {
    int status;         /* 0: no answer */
    char head[8192];
    char body[64 * 1024]; /* dechunked, NUL-terminated, cut at the buffer's size */
    size_t blen;
} td_resp_t;

/* Send all n bytes of p on socket s (MSG_NOSIGNAL); -1 if the peer went
 * away or the send failed, 0 once all is sent. */
int td_send_all(int s, const void *p, size_t n);

/* Decode a chunked HTTP body of n bytes in place (NUL-terminated after);
 * its new length. A chunk cut short keeps what arrived. */
size_t td_dechunk(char *b, size_t n);

/* A liveness bound in ms: `native`, ten times that under valgrind. */
int td_bound(int native);

/* Write s's configuration (worker_processes, pid, shm_instance `instance`,
 * shm_mapping named, then `main_text`, then http { `http_text` server {
 * listen 127.0.0.1:PORT; `server_text` } }) and start the demo on it;
 * returns when /channels-stats lists `workers` workers. */
void td_start(td_srv_t *s, const char *instance, int workers, const char *main_text,
              const char *http_text, const char *server_text);
/* SIGQUIT and reap (exit status 0 asserted); unless errors_ok, no
 * "[error]" or "[crit]" line in its log; the directory removed. */
void td_stop(td_srv_t *s, int errors_ok);
/* 1 if s's log has `needle`. */
int td_log_has(const td_srv_t *s, const char *needle);

/* One request on its own connection to 127.0.0.1:port (hdrs: extra
 * "Name: value\r\n" lines; body with Content-Length when given or for a
 * POST); returns the status, 0 when nothing came. */
int td_http(int port, const char *method, const char *target, const char *hdrs,
            const void *body, size_t blen, td_resp_t *r);
/* The value of header `name` (case-insensitive) in a response head (the
 * status line and the header lines), into out; NULL if there is none. */
const char *td_head_value(const char *head, const char *name, char *out, size_t cap);

/* The value of header `name` into out, or NULL. */
const char *td_header(const td_resp_t *r, const char *name, char *out, size_t cap);
/* The number at dotted `key` of GET /channels-stats`query` (-1 if none). */
double td_stat(int port, const char *query, const char *key);
/* The string at dotted `key` of GET /channels-stats`query` into out
 * ("" if none). */
const char *td_stat_str(int port, const char *query, const char *key, char *out, size_t cap);
/* Poll td_stat until it is `want` (bounded by td_bound(ms)); asserted. */
void td_await_stat(int port, const char *query, const char *key, double want, int ms);
/* The same for a string. */
void td_await_str(int port, const char *query, const char *key, const char *want, int ms);

/* Read a child's output (tu_spawn's *out_fd) into acc (cap bytes, NUL-terminated) until
 * `needle` or "FAIL" is in it or ms passed; 1 if `needle` came. */
int td_child_until(int fd, char *acc, size_t *n, size_t cap, const char *needle, int ms);
#endif
