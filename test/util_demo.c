/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * util_demo.c: demo servers started for a test, each in its own temporary
 * directory on its own port and shm instance; a one-request HTTP/1.1 client
 * (chunked bodies decoded); /channels-stats figures through util_json; a
 * Node child's output read line by line (util_demo.h; starting programs
 * is util_run's).
 */
#include "util_demo.h"

#include "util_json.h"
#include "util_run.h"
#include "util_test.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>

int td_bound(int native)
{
    return tu_valgrind() ? native * 10 : native;
}

/* ---- the HTTP client ----------------------------------------------------------------- */

static int conn(int port)
{
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    ck_assert_int_ge(s, 0);
    if (connect(s, (struct sockaddr *)&a, sizeof a) != 0) {
        close(s);
        return -1;
    }
    return s;
}

int td_send_all(int s, const void *p, size_t n)
{
    while (n) {
        ssize_t k = send(s, p, n, MSG_NOSIGNAL);
        if (k <= 0)
            return -1;
        p = (const char *)p + k;
        n -= (size_t)k;
    }
    return 0;
}

size_t td_dechunk(char *b, size_t n)
{
    size_t in = 0, out = 0;
    while (in < n) {
        char *end;
        unsigned long k = strtoul(b + in, &end, 16);
        char *crlf = strstr(b + in, "\r\n");
        if (!crlf || end > crlf || k == 0)
            break;
        in = (size_t)(crlf + 2 - b);
        if (k > n - in)
            k = n - in;
        memmove(b + out, b + in, k);
        out += k;
        in += k + 2;
    }
    b[out] = '\0';
    return out;
}

int td_http(int port, const char *method, const char *target, const char *hdrs,
            const void *body, size_t blen, td_resp_t *r)
{
    static char raw[sizeof r->body + sizeof r->head + 16];
    char head[4096];
    size_t n = 0;
    int post = body || !strcmp(method, "POST");
    int s = conn(port), len;
    memset(r, 0, offsetof(td_resp_t, body));
    r->body[0] = '\0';
    if (s < 0)
        return 0;
    len = snprintf(head, sizeof head, "%s %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n%s",
                   method, target, hdrs ? hdrs : "");
    if (post)
        len += snprintf(head + len, sizeof head - (size_t)len, "Content-Length: %zu\r\n", blen);
    len += snprintf(head + len, sizeof head - (size_t)len, "\r\n");
    ck_assert_int_lt(len, (int)sizeof head);
    if (td_send_all(s, head, (size_t)len) != 0 || (blen && td_send_all(s, body, blen) != 0)) {
        close(s);
        return 0;
    }
    for (;;) { /* Connection: close: the answer ends at EOF */
        struct pollfd p = {s, POLLIN, 0};
        ssize_t k;
        if (poll(&p, 1, td_bound(10000)) <= 0 || n + 1 >= sizeof raw)
            break;
        if ((k = read(s, raw + n, sizeof raw - 1 - n)) <= 0)
            break;
        n += (size_t)k;
    }
    close(s);
    raw[n] = '\0';
    char *sep = strstr(raw, "\r\n\r\n");
    if (n < 12 || !sep)
        return 0;
    size_t hl = (size_t)(sep - raw);
    r->status = atoi(raw + 9);
    snprintf(r->head, sizeof r->head, "%.*s", (int)(hl < sizeof r->head ? hl : sizeof r->head - 1),
             raw);
    r->blen = n - hl - 4;
    if (r->blen >= sizeof r->body)
        r->blen = sizeof r->body - 1;
    memcpy(r->body, sep + 4, r->blen);
    r->body[r->blen] = '\0';
    if (strcasestr(r->head, "\r\ntransfer-encoding: chunked"))
        r->blen = td_dechunk(r->body, r->blen);
    return r->status;
}

const char *td_head_value(const char *head, const char *name, char *out, size_t cap)
{
    char want[128];
    snprintf(want, sizeof want, "\r\n%s:", name);
    const char *h = strcasestr(head, want);
    if (!h)
        return NULL;
    h += strlen(want);
    while (*h == ' ')
        h++;
    snprintf(out, cap, "%.*s", (int)strcspn(h, "\r\n"), h);
    return out;
}

const char *td_header(const td_resp_t *r, const char *name, char *out, size_t cap)
{
    return td_head_value(r->head, name, out, cap);
}

double td_stat(int port, const char *query, const char *key)
{
    static td_resp_t r;
    char target[256];
    snprintf(target, sizeof target, "/channels-stats%s", query ? query : "");
    if (td_http(port, "GET", target, NULL, NULL, 0, &r) != 200)
        return -1;
    tj_t *j = tj_parse(r.body, NULL, 0);
    double v = j ? tj_num(j, key, -1) : -1;
    tj_free(j);
    return v;
}

const char *td_stat_str(int port, const char *query, const char *key, char *out, size_t cap)
{
    static td_resp_t r;
    char target[256];
    out[0] = '\0';
    snprintf(target, sizeof target, "/channels-stats%s", query ? query : "");
    if (td_http(port, "GET", target, NULL, NULL, 0, &r) == 200) {
        tj_t *j = tj_parse(r.body, NULL, 0);
        const char *v = j ? tj_str(j, key) : NULL;
        snprintf(out, cap, "%s", v ? v : "");
        tj_free(j);
    }
    return out;
}

void td_await_str(int port, const char *query, const char *key, const char *want, int ms)
{
    uint64_t end = tu_now_ms() + (uint64_t)td_bound(ms);
    char v[256];
    while (strcmp(td_stat_str(port, query, key, v, sizeof v), want) && tu_now_ms() < end)
        tu_pause_ms(5);
    ck_assert_msg(!strcmp(v, want), "port %d /channels-stats%s %s: \"%s\", not \"%s\"", port,
                  query ? query : "", key, v, want);
}

void td_await_stat(int port, const char *query, const char *key, double want, int ms)
{
    uint64_t end = tu_now_ms() + (uint64_t)td_bound(ms);
    double v;
    while ((v = td_stat(port, query, key)) != want && tu_now_ms() < end)
        tu_pause_ms(5);
    ck_assert_msg(v == want, "port %d /channels-stats%s %s: %.0f, not %.0f", port,
                  query ? query : "", key, v, want);
}

/* ---- the servers ------------------------------------------------------------------------- */

static const char *log_text(const td_srv_t *s)
{
    static char buf[1 << 20];
    int fd = open(s->log, O_RDONLY);
    ssize_t len = fd >= 0 ? read(fd, buf, sizeof buf - 1) : 0;
    if (fd >= 0)
        close(fd);
    buf[len > 0 ? len : 0] = '\0';
    return buf;
}

int td_log_has(const td_srv_t *s, const char *needle)
{
    return strstr(log_text(s), needle) != NULL;
}

void td_start(td_srv_t *s, const char *instance, int workers, const char *main_text,
              const char *http_text, const char *server_text)
{
    char bin[PATH_MAX + 32];
    ck_assert_int_gt(s->port, 0);
    snprintf(bin, sizeof bin, "%s/shmkit-demo", tu_build_dir());
    snprintf(s->dir, sizeof s->dir, "/tmp/shk_test_demo.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(s->dir));
    snprintf(s->conf, sizeof s->conf, "%s/demo.conf", s->dir);
    snprintf(s->log, sizeof s->log, "%s/demo.log", s->dir);
    snprintf(s->pid_path, sizeof s->pid_path, "%s/demo.pid", s->dir);
    FILE *f = fopen(s->conf, "w");
    ck_assert_ptr_nonnull(f);
    fprintf(f,
            "worker_processes %d;\npid %s;\nworker_shutdown_timeout 20s;\nshm_instance %s;\n"
            "shm_mapping named;\n%s\nhttp {\n%s\nserver {\nlisten 127.0.0.1:%d;\n%s\n}\n}\n",
            workers, s->pid_path, instance, main_text ? main_text : "",
            http_text ? http_text : "", s->port, server_text ? server_text : "");
    ck_assert_int_eq(fclose(f), 0);
    char *argv[] = {bin, "-c", s->conf, NULL};
    s->master = tu_spawn_logged(argv, s->log);
    uint64_t end = tu_now_ms() + (uint64_t)td_bound(20000);
    char last[64];
    snprintf(last, sizeof last, "by_worker.%d.uptime", workers - 1); /* every worker is up */
    while (td_stat(s->port, NULL, last) < 0) {
        ck_assert_msg(waitpid(s->master, NULL, WNOHANG) == 0, "the demo exited: see %s", s->log);
        ck_assert_msg(tu_now_ms() < end, "the demo did not come up (%s)", s->log);
        tu_pause_ms(5);
    }
}

void td_stop(td_srv_t *s, int errors_ok)
{
    int st;
    char cmd[200];
    if (s->master <= 0)
        return;
    kill(s->master, SIGQUIT);
    ck_assert_int_eq(waitpid(s->master, &st, 0), s->master);
    s->master = 0;
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "master status %d (%s)", st, s->log);
    const char *e = strstr(log_text(s), "[error]");
    if (!e)
        e = strstr(log_text(s), "[crit]");
    ck_assert_msg(errors_ok || !e, "errors in %s: %.600s", s->log, e);
    snprintf(cmd, sizeof cmd, "rm -rf %s", s->dir);
    ck_assert_int_eq(system(cmd), 0);
}

/* ---- Node children --------------------------------------------------------------------------- */

int td_child_until(int fd, char *acc, size_t *n, size_t cap, const char *needle, int ms)
{
    uint64_t end = tu_now_ms() + (uint64_t)ms;
    while (!strstr(acc, needle) && !strstr(acc, "FAIL")) {
        struct pollfd p = {fd, POLLIN, 0};
        uint64_t now = tu_now_ms();
        ssize_t k;
        if (now >= end || *n + 1 >= cap || poll(&p, 1, (int)(end - now)) <= 0)
            return 0;
        if ((k = read(fd, acc + *n, cap - 1 - *n)) <= 0)
            return 0;
        *n += (size_t)k;
        acc[*n] = '\0';
    }
    return strstr(acc, needle) != NULL;
}
