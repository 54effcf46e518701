/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * test_demo_http.c: the demo's HTTP layer (demo/http*.c) served for real from a
 * forked server process on loopback, against curl, Node's "ws" WebSocket
 * client, and hostile clients written here on plain sockets: whole replies,
 * keep-alive and pipelining, streams, held requests, clients leaving, every
 * limit (414, 431, 413, 408, keep-alive, send timeout, linger, max_conns,
 * slow readers), a 64 MiB request line, EMFILE (no spinning, one log line
 * per episode), the graceful drain under load, WebSocket echo, size limit,
 * drain and hostile handshakes; and the text helpers.
 *
 * The server process reports through a pipe, one line per event ("close
 * /stream", "log 1 ...", "stats ...", "drained"); the test drives it through
 * a control pipe. Waits are bounded polls on sockets and pipes, never sleeps.
 */
#include "http.h"
#include "http_ws.h"
#include "util_test.h"
#include "util_run.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <dirent.h>

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Bounds: a slow machine or valgrind gets more room; these are liveness
 * bounds, not speed goals. */
static int bound_ms(int native)
{
    return tu_valgrind() ? native * 5 : native;
}

/* ==== the server process ======================================================= */

typedef struct {
    http_limits_t lim;
    int nofile_extra; /* > 0: RLIMIT_NOFILE leaves this many descriptors free */
    int exec_native;  /* run the server as a new program through /usr/bin/env */
    int listen_late;  /* listen only on the command 'l' */
} srv_conf_t;

typedef struct held_s {
    http_req_t *req;
    struct event *tm;
    int kind, n, i, ms;
    char path[32];
} held_t;

enum { H_HOLD, H_STREAM, H_WAIT, H_FLOOD };

static struct {
    struct event_base *base;
    http_server_t *srv;
    int ctl, evw, lfd;
    struct event *ctl_ev;
} app;

static void emit(const char *fmt, ...) SHK_PRINTF(1, 2);
static void emit(const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line - 1, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if (n > (int)sizeof line - 2)
        n = (int)sizeof line - 2;
    line[n++] = '\n';
    if (write(app.evw, line, (size_t)n) < 0) {
        /* the test is gone */
    }
}

static void held_free(held_t *h)
{
    if (h->tm)
        event_free(h->tm);
    free(h);
}

static void held_arm(held_t *h, int ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(h->tm, &tv);
}

static void held_tick(evutil_socket_t fd, short what, void *arg)
{
    held_t *h = arg;
    char line[64];
    (void)fd;
    (void)what;
    switch (h->kind) {
    case H_HOLD:
        http_reply_text(h->req, 200, "held %d\n", h->ms);
        held_free(h);
        return;
    case H_STREAM:
        if (h->i < h->n) {
            int n = snprintf(line, sizeof line, "chunk %d\n", h->i++);
            if (http_stream_write(h->req, line, (size_t)n) == SHK_OK)
                held_arm(h, h->ms);
            return; /* else on_close freed h */
        }
        http_stream_end(h->req);
        held_free(h);
        return;
    case H_FLOOD: { /* 64 KiB a millisecond, as long as it is taken */
        static char blob[16 * 1024];
        memset(blob, 'f', sizeof blob);
        for (int k = 0; k < 4; k++)
            if (http_stream_write(h->req, blob, sizeof blob) != SHK_OK)
                return; /* dropped: h is freed */
        held_arm(h, 1);
        return;
    }
    default:
        return;
    }
}

static void held_close(http_req_t *req, void *ctx)
{
    held_t *h = ctx;
    (void)req;
    emit("close %s", h->path);
    held_free(h);
}

static void held_drain(http_req_t *req, void *ctx)
{
    held_t *h = ctx;
    emit("drain %s", h->path);
    if (h->kind == H_STREAM) {
        http_stream_write(req, "footer\n", 7);
        http_stream_end(req);
    } else {
        http_reply_text(req, 200, "drained\n");
    }
    held_free(h);
}

static void held_slow(http_req_t *req, size_t queued, void *ctx)
{
    held_t *h = ctx;
    emit("slow %s %zu", h->path, queued);
    http_req_abort(req);
    held_free(h);
}

static int arg_int(http_req_t *req, const char *name, int dflt)
{
    const char *v;
    return http_req_arg(req, name, &v) == SHK_OK ? atoi(v) : dflt;
}

static held_t *hold(http_req_t *req, int kind, const char *path, int drain, int slow)
{
    held_t *h = calloc(1, sizeof *h);
    h->req = req;
    h->kind = kind;
    h->tm = evtimer_new(app.base, held_tick, h);
    snprintf(h->path, sizeof h->path, "%s", path);
    http_req_cbs_t cbs = {.on_close = held_close,
                          .on_drain = drain ? held_drain : NULL,
                          .on_slow = slow ? held_slow : NULL};
    http_req_watch(req, &cbs, h);
    return h;
}

static void ws_message(http_ws_t *ws, int type, const void *data, size_t len, void *ctx)
{
    (void)ctx;
    http_ws_send(ws, type, data, len);
}

static void ws_closed(http_ws_t *ws, int code, void *ctx)
{
    (void)ws;
    (void)ctx;
    emit("wsclose %d", code);
}

static void on_request(http_req_t *req, void *ctx)
{
    const char *path = http_req_path(req);
    (void)ctx;
    if (!path) {
        http_reply_text(req, 400, "bad path: %s\n", shk_last_errmsg());
        return;
    }
    if (strcmp(path, "/hello") == 0) {
        http_reply_text(req, 200, "hello\n");
    } else if (strcmp(path, "/echo") == 0) {
        size_t blen;
        const char *body = http_req_body(req, &blen);
        const char *id = NULL, *ua = http_req_header(req, "user-agent");
        int rc = http_req_arg(req, "id", &id);
        http_reply_text(req, 200, "%s %d %s %s id=%s ua=%s len=%zu\n%.*s", http_req_method(req),
                        http_req_version(req), http_req_target(req), path,
                        rc == SHK_OK ? id : rc == SHK_ENOENT ? "(none)" : "(bad)",
                        ua ? ua : "(none)", blen, (int)blen, body);
    } else if (strcmp(path, "/args") == 0) {
        char out[512] = "";
        static const char *const names[] = {"a", "b", "c", "d", "e", "f"};
        for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
            const char *v;
            int rc = http_req_arg(req, names[i], &v);
            size_t l = strlen(out);
            snprintf(out + l, sizeof out - l, "%s=%s;", names[i],
                     rc == SHK_OK ? v : rc == SHK_ENOENT ? "(none)" : "(bad)");
        }
        http_reply_text(req, 200, "%s\n", out);
    } else if (strcmp(path, "/hold") == 0) {
        held_t *h = hold(req, H_HOLD, path, 1, 0);
        h->ms = arg_int(req, "ms", 20);
        held_arm(h, h->ms);
    } else if (strcmp(path, "/wait") == 0) {
        hold(req, H_WAIT, path, 0, 0);
    } else if (strcmp(path, "/stream") == 0) {
        held_t *h = hold(req, H_STREAM, path, 1, 0);
        h->n = arg_int(req, "n", 5);
        h->ms = arg_int(req, "ms", 5);
        http_stream_start(req, 200, "text/plain", (const char *[]){"X-Stream", "yes", NULL});
        http_stream_write(req, "start\n", 6);
        held_arm(h, h->ms);
    } else if (strcmp(path, "/flood") == 0) {
        held_t *h = hold(req, H_FLOOD, path, 0, arg_int(req, "slow", 0));
        http_stream_start(req, 200, "application/octet-stream", NULL);
        held_arm(h, 1);
    } else if (strcmp(path, "/big") == 0) {
        size_t n = (size_t)arg_int(req, "kb", 1) * 1024;
        char *b = malloc(n);
        memset(b, 'b', n);
        http_reply(req, 200, NULL, b, n);
        free(b);
    } else if (strcmp(path, "/bad-header") == 0) {
        int rc = http_reply(req, 200, (const char *[]){"X-Bad", "a\r\nInjected: 1", NULL}, "x", 1);
        if (rc != SHK_OK)
            http_reply_text(req, 500, "refused: %s\n", shk_last_errmsg());
    } else if (strcmp(path, "/ws") == 0) {
        http_ws_cbs_t cbs = {.on_message = ws_message, .on_close = ws_closed};
        if (!http_ws_accept(req, &cbs, NULL))
            emit("wsrefused %s", shk_last_errmsg());
    } else {
        http_reply_text(req, 404, "not found\n");
    }
}

static void srv_log(void *ctx, int level, const char *msg)
{
    (void)ctx;
    emit("log %d %s", level, msg);
}

static void drain_done(void *ctx)
{
    (void)ctx;
    emit("drained");
    event_base_loopexit(app.base, NULL);
}

static void ctl_cb(evutil_socket_t fd, short what, void *arg)
{
    char cmd;
    http_stats_t st;
    (void)what;
    (void)arg;
    ssize_t n = read(fd, &cmd, 1);
    if (n <= 0)
        cmd = 'q';
    switch (cmd) {
    case 's':
        http_server_stats(app.srv, &st);
        emit("stats conns=%u accepted=%llu full=%llu requests=%llu refused=%llu pauses=%llu "
             "episodes=%llu dropped=%llu starved=%u",
             st.conns, (unsigned long long)st.accepted, (unsigned long long)st.accept_full, (unsigned long long)st.requests,
             (unsigned long long)st.refused, (unsigned long long)st.accept_pauses,
             (unsigned long long)st.accept_episodes, (unsigned long long)st.dropped, st.starved);
        break;
    case 'l':
        emit("listen %d", http_server_listen(app.srv, app.lfd));
        break;
    case 'd':
        http_server_drain(app.srv, drain_done, NULL);
        emit("draining");
        break;
    default:
        event_base_loopexit(app.base, NULL);
        break;
    }
}

/* Leave exactly `extra` descriptors free under RLIMIT_NOFILE: the limit is
 * set above the highest open one, the gaps below are filled with copies of
 * stdin, and `extra` copies are closed again. Returns `extra`, or -1. */
static int limit_fds(int extra)
{
    int maxfd = -1;
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    int dfd = d ? dirfd(d) : -1;
    while (d && (e = readdir(d))) {
        int fd = atoi(e->d_name);
        /* valgrind keeps its own descriptors above the limit it reports */
        if (e->d_name[0] != '.' && fd != dfd && fd > maxfd && (rlim_t)fd < rl.rlim_cur)
            maxfd = fd;
    }
    if (d)
        closedir(d);
    rl.rlim_cur = (rlim_t)(maxfd + 1 + extra);
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
        return -1;
    int last[64], n = 0, fd;
    while ((fd = dup(0)) >= 0)
        last[n++ % 64] = fd;
    if (n < extra)
        return -1;
    for (int i = 0; i < extra; i++)
        close(last[(n - 1 - i) % 64]);
    return extra;
}

static int server_main(const srv_conf_t *conf, int lfd)
{
    app.base = event_base_new();
    TU_CHECK(app.base != NULL, "event_base_new");
    /* as the demo's workers: output written after the events at hand */
    TU_CHECK(event_base_priority_init(app.base, HTTP_PRIORITIES) == 0, "priorities");
    app.srv = http_server_new(app.base, &conf->lim, on_request, NULL);
    TU_CHECK(app.srv != NULL, "http_server_new: %s", shk_last_errmsg());
    http_server_set_log(app.srv, srv_log, NULL);
    app.lfd = lfd;
    if (!conf->listen_late)
        TU_CHECK(http_server_listen(app.srv, lfd) == SHK_OK, "listen: %s", shk_last_errmsg());
    app.ctl_ev = event_new(app.base, app.ctl, EV_READ | EV_PERSIST, ctl_cb, NULL);
    event_add(app.ctl_ev, NULL);
    if (conf->nofile_extra > 0)
        emit("capacity %d", limit_fds(conf->nofile_extra));
    emit("ready");
    event_base_dispatch(app.base);
    http_server_free(app.srv);
    event_free(app.ctl_ev);
    event_base_free(app.base);
    libevent_global_shutdown();
    close(lfd);
    return 0;
}

/* ==== the test's side of the server ========================================== */

typedef struct {
    pid_t pid;
    int port, ctl, evr;
    char *ev;      /* every line the server reported */
    size_t evlen, evcap;
} srv_t;

static void srv_start(srv_t *s, const srv_conf_t *conf)
{
    int ctl[2], evp[2];
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    memset(s, 0, sizeof *s);
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(lfd, 0);
    ck_assert_int_eq(bind(lfd, (struct sockaddr *)&a, sizeof a), 0);
    ck_assert_int_eq(listen(lfd, 256), 0);
    ck_assert_int_eq(getsockname(lfd, (struct sockaddr *)&a, &al), 0);
    s->port = ntohs(a.sin_port);
    ck_assert_int_eq(pipe2(ctl, O_CLOEXEC), 0);
    ck_assert_int_eq(pipe2(evp, O_CLOEXEC), 0);
    if (conf->exec_native) {
        /* valgrind skips programs under /usr/bin, and env's child too */
        char exe[PATH_MAX], av[5][16];
        ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
        ck_assert(n > 0);
        exe[n] = '\0';
        fflush(NULL);
        s->pid = fork();
        if (s->pid == 0) {
            int keep[3] = {lfd, ctl[0], evp[1]};
            for (int i = 0; i < 3; i++)
                fcntl(keep[i], F_SETFD, 0);
            snprintf(av[0], sizeof av[0], "%d", lfd);
            snprintf(av[1], sizeof av[1], "%d", ctl[0]);
            snprintf(av[2], sizeof av[2], "%d", evp[1]);
            snprintf(av[3], sizeof av[3], "%d", conf->nofile_extra);
            snprintf(av[4], sizeof av[4], "%d", conf->lim.accept_pause_ms);
            execl("/usr/bin/env", "env", exe, "--server", av[0], av[1], av[2], av[3], av[4],
                  (char *)NULL);
            _exit(127);
        }
    } else {
        s->pid = tu_fork_raw();
    }
    if (s->pid == 0) {
        close(ctl[1]);
        close(evp[0]);
        app.ctl = ctl[0];
        app.evw = evp[1];
        tu_exit(server_main(conf, lfd));
    }
    close(lfd);
    close(ctl[0]);
    close(evp[1]);
    s->ctl = ctl[1];
    s->evr = evp[0];
}

/* Read what the server reported within `ms`; 0 if nothing came. */
static int srv_pump(srv_t *s, int ms)
{
    struct pollfd p = {.fd = s->evr, .events = POLLIN};
    if (poll(&p, 1, ms) <= 0)
        return 0;
    if (s->evlen + 4096 + 1 > s->evcap) {
        s->evcap = s->evcap ? s->evcap * 2 : 65536;
        s->ev = realloc(s->ev, s->evcap);
    }
    ssize_t n = read(s->evr, s->ev + s->evlen, 4096);
    if (n <= 0)
        return 0;
    s->evlen += (size_t)n;
    s->ev[s->evlen] = '\0';
    return 1;
}

/* Lines holding `needle` among those reported so far. */
static int srv_count(srv_t *s, const char *needle)
{
    int n = 0;
    while (srv_pump(s, 0))
        ;
    for (char *p = s->ev; p && (p = strstr(p, needle)); p++)
        n++;
    return n;
}

/* Wait (bounded) until `n` lines hold `needle`. */
static int srv_wait_n(srv_t *s, const char *needle, int n, int ms)
{
    long long end = now_ms() + bound_ms(ms);
    while (srv_count(s, needle) < n) {
        long long left = end - now_ms();
        if (left <= 0)
            return 0;
        srv_pump(s, (int)left);
    }
    return 1;
}

static int srv_wait(srv_t *s, const char *needle, int ms)
{
    return srv_wait_n(s, needle, 1, ms);
}

static void srv_cmd(srv_t *s, char c)
{
    ck_assert_int_eq(write(s->ctl, &c, 1), 1);
}

static void srv_stats(srv_t *s, http_stats_t *st)
{
    int n = srv_count(s, "stats ");
    srv_cmd(s, 's');
    ck_assert_msg(srv_wait_n(s, "stats ", n + 1, 5000), "no stats from the server");
    char *p = s->ev, *last = NULL;
    while ((p = strstr(p, "stats ")))
        last = p++;
    unsigned long long acc, full, req, ref, pau, epi, dro;
    ck_assert_int_eq(sscanf(last, "stats conns=%u accepted=%llu full=%llu requests=%llu "
                                  "refused=%llu pauses=%llu episodes=%llu dropped=%llu starved=%u",
                            &st->conns, &acc, &full, &req, &ref, &pau, &epi, &dro, &st->starved),
                     9);
    st->accepted = acc;
    st->accept_full = full;
    st->requests = req;
    st->refused = ref;
    st->accept_pauses = pau;
    st->accept_episodes = epi;
    st->dropped = dro;
}

/* Wait until the server has `conns` connections open. */
static int srv_conns(srv_t *s, unsigned conns, int ms)
{
    http_stats_t st;
    long long end = now_ms() + bound_ms(ms);
    do {
        srv_stats(s, &st);
        if (st.conns == conns)
            return 1;
        srv_pump(s, 5); /* a bounded wait for the server to move on */
    } while (now_ms() < end);
    return 0;
}

static void srv_quit(srv_t *s)
{
    srv_cmd(s, 'q');
    tu_wait_ok(s->pid);
    close(s->ctl);
    close(s->evr);
    free(s->ev);
}

/* CPU seconds the process has used (user + system). */
static double cpu_s(pid_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY);
    ck_assert_int_ge(fd, 0);
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    ck_assert_int_gt(n, 0);
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    unsigned long ut = 0, stt = 0;
    ck_assert(p && sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut,
                          &stt) == 2);
    return (double)(ut + stt) / (double)sysconf(_SC_CLK_TCK);
}

/* ==== a plain-socket client ===================================================== */

typedef struct {
    int fd;
    char *buf;
    size_t len, cap;
    int eof, reset;
} cli_t;

typedef struct {
    int status;
    char head[8192];
    char *body;
    size_t blen;
    int close;     /* said Connection: close */
    int complete;  /* framing complete */
} resp_t;

static int cli_open(cli_t *c, int port)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    memset(c, 0, sizeof *c);
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c->fd < 0 || connect(c->fd, (struct sockaddr *)&a, sizeof a) != 0)
        return -1;
    return 0;
}

static void cli_close(cli_t *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    free(c->buf);
    c->buf = NULL;
    c->len = c->cap = 0;
}

static int cli_send(cli_t *c, const void *data, size_t len)
{
    const char *p = data;
    while (len > 0) {
        ssize_t n = send(c->fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static int cli_sendf(cli_t *c, const char *fmt, ...) SHK_PRINTF(2, 3);
static int cli_sendf(cli_t *c, const char *fmt, ...)
{
    char b[8192];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(b, sizeof b, fmt, ap);
    va_end(ap);
    return cli_send(c, b, (size_t)n);
}

/* Read more within ms: 1 data, 0 EOF or reset (flags set), -1 timeout. */
static int cli_more(cli_t *c, int ms)
{
    struct pollfd p = {.fd = c->fd, .events = POLLIN};
    if (c->eof || c->reset)
        return 0;
    if (poll(&p, 1, ms) <= 0)
        return -1;
    if (c->len + 65536 + 1 > c->cap) {
        c->cap = c->cap ? c->cap * 2 : 131072;
        c->buf = realloc(c->buf, c->cap);
    }
    ssize_t n = recv(c->fd, c->buf + c->len, 65536, 0);
    if (n < 0) {
        if (errno == ECONNRESET)
            c->reset = 1;
        else
            c->eof = 1;
        return 0;
    }
    if (n == 0) {
        c->eof = 1;
        return 0;
    }
    c->len += (size_t)n;
    c->buf[c->len] = '\0';
    return 1;
}

static void cli_consume(cli_t *c, size_t n)
{
    memmove(c->buf, c->buf + n, c->len - n);
    c->len -= n;
    if (c->buf)
        c->buf[c->len] = '\0';
}

static const char *find_header(const char *head, const char *name)
{
    size_t nl = strlen(name);
    for (const char *p = strstr(head, "\r\n"); p && p[2]; p = strstr(p + 2, "\r\n"))
        if (strncasecmp(p + 2, name, nl) == 0 && p[2 + nl] == ':')
            return p + 3 + nl + strspn(p + 3 + nl, " ");
    return NULL;
}

/* Read one response (skipping 100 Continue). 0 complete; -1 timeout, EOF or
 * reset first (r->complete 0; c->eof/c->reset say which). */
static int cli_resp(cli_t *c, resp_t *r, int head_only, int ms)
{
    long long end = now_ms() + bound_ms(ms);
    memset(r, 0, sizeof *r);
    for (;;) {
        char *e = c->buf ? strstr(c->buf, "\r\n\r\n") : NULL;
        if (e) {
            size_t hl = (size_t)(e - c->buf) + 4;
            if (hl >= sizeof r->head)
                return -1;
            memcpy(r->head, c->buf, hl);
            r->head[hl] = '\0';
            cli_consume(c, hl);
            if (sscanf(r->head, "HTTP/1.%*d %d", &r->status) != 1)
                return -1;
            if (r->status == 100)
                continue;
            break;
        }
        if (now_ms() > end || cli_more(c, (int)(end - now_ms())) <= 0)
            return -1;
    }
    const char *cl = find_header(r->head, "content-length");
    const char *te = find_header(r->head, "transfer-encoding");
    const char *cn = find_header(r->head, "connection");
    r->close = cn && strncasecmp(cn, "close", 5) == 0;
    r->body = malloc(1);
    r->body[0] = '\0';
    if (head_only || r->status == 204 || r->status == 304 || r->status == 101) {
        r->complete = 1;
        return 0;
    }
    if (te && strncasecmp(te, "chunked", 7) == 0) {
        for (;;) {
            char *le;
            while (!c->buf || !(le = strstr(c->buf, "\r\n")))
                if (now_ms() > end || cli_more(c, (int)(end - now_ms())) <= 0)
                    return -1;
            size_t n = strtoul(c->buf, NULL, 16), hl = (size_t)(le - c->buf) + 2;
            while (c->len < hl + n + 2)
                if (now_ms() > end || cli_more(c, (int)(end - now_ms())) <= 0)
                    return -1;
            if (n == 0) {
                cli_consume(c, hl + 2);
                r->complete = 1;
                return 0;
            }
            r->body = realloc(r->body, r->blen + n + 1);
            memcpy(r->body + r->blen, c->buf + hl, n);
            r->blen += n;
            r->body[r->blen] = '\0';
            cli_consume(c, hl + n + 2);
        }
    }
    size_t want = cl ? strtoul(cl, NULL, 10) : SIZE_MAX;
    while (c->len < want) {
        int m = now_ms() > end ? -1 : cli_more(c, (int)(end - now_ms()));
        if (m == 0 && !cl && c->eof) /* close-delimited */
            break;
        if (m <= 0)
            return -1;
    }
    size_t n = cl ? want : c->len;
    r->body = realloc(r->body, n + 1);
    memcpy(r->body, c->buf, n);
    r->body[n] = '\0';
    r->blen = n;
    cli_consume(c, n);
    r->complete = 1;
    return 0;
}

/* 1 if the server closes (EOF, no reset, no data) within ms. */
static int cli_sees_eof(cli_t *c, int ms)
{
    long long end = now_ms() + bound_ms(ms);
    while (!c->eof && !c->reset && now_ms() < end)
        if (cli_more(c, (int)(end - now_ms())) < 0)
            break;
    return c->eof && !c->reset && c->len == 0;
}

static void resp_free(resp_t *r)
{
    free(r->body);
    r->body = NULL;
}

/* GET path on a new connection; status, body into out. */
static int get1(int port, const char *path, char *out, size_t cap)
{
    cli_t c;
    resp_t r;
    ck_assert_int_eq(cli_open(&c, port), 0);
    ck_assert_int_eq(cli_sendf(&c, "GET %s HTTP/1.1\r\nHost: t\r\n\r\n", path), 0);
    int rc = cli_resp(&c, &r, 0, 5000);
    cli_close(&c);
    if (rc != 0)
        return 0;
    snprintf(out, cap, "%s", r.body);
    resp_free(&r);
    return r.status;
}

/* ==== external programs ============================================================= */

/* The repository's test/node, from this binary's place (build/<v>/test). */
static void node_script(char *out, size_t cap)
{
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    ck_assert(n > 0);
    exe[n] = '\0';
    *strrchr(exe, '/') = '\0';
    snprintf(out, cap, "%s/../../../test/node/ws_client.js", exe);
}

/* ==== tests =========================================================================== */

static srv_conf_t conf_default(void)
{
    srv_conf_t c;
    memset(&c, 0, sizeof c);
    return c;
}

START_TEST(whole_replies_and_keepalive)
{
    srv_t s;
    srv_conf_t conf = conf_default();
    cli_t c;
    resp_t r;
    http_stats_t st;
    srv_start(&s, &conf);
    ck_assert(srv_wait(&s, "ready", 5000));

    /* three requests on one connection, HEAD among them */
    ck_assert_int_eq(cli_open(&c, s.port), 0);
    ck_assert_int_eq(cli_sendf(&c, "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n"), 0);
    ck_assert_int_eq(cli_resp(&c, &r, 0, 5000), 0);
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(r.body, "hello\n");
    ck_assert(!r.close);
    ck_assert_ptr_nonnull(find_header(r.head, "date"));
    resp_free(&r);
    ck_assert_int_eq(cli_sendf(&c, "GET /echo?id=a%%20b+c HTTP/1.1\r\nHost: t\r\n"
                                   "User-Agent:  tester  \r\n\r\n"), 0);
    ck_assert_int_eq(cli_resp(&c, &r, 0, 5000), 0);
    ck_assert_str_eq(r.body, "GET 11 /echo?id=a%20b+c /echo id=a b c ua=tester len=0\n");
    resp_free(&r);
    ck_assert_int_eq(cli_sendf(&c, "HEAD /hello HTTP/1.1\r\nHost: t\r\n\r\n"), 0);
    ck_assert_int_eq(cli_resp(&c, &r, 1, 5000), 0);
    ck_assert(strncmp(find_header(r.head, "content-length"), "6\r\n", 3) == 0);
    resp_free(&r);
    /* a POST body, and a chunked one */
    ck_assert_int_eq(cli_sendf(&c, "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\n"
                                   "abcde"), 0);
    ck_assert_int_eq(cli_resp(&c, &r, 0, 5000), 0);
    ck_assert_str_eq(r.body, "POST 11 /echo /echo id=(none) ua=(none) len=5\nabcde");
    resp_free(&r);
    ck_assert_int_eq(cli_sendf(&c, "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked"
                                   "\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\nX-Trailer: 1\r\n\r\n"), 0);
    ck_assert_int_eq(cli_resp(&c, &r, 0, 5000), 0);
    ck_assert_str_eq(r.body, "POST 11 /echo /echo id=(none) ua=(none) len=5\nabcde");
    resp_free(&r);
    /* 404, and a header the app may not send (refused, nothing injected) */
    ck_assert_int_eq(cli_sendf(&c, "GET /nope HTTP/1.1\r\nHost: t\r\n\r\n"), 0);
    ck_assert_int_eq(cli_resp(&c, &r, 0, 5000), 0);
    ck_assert_int_eq(r.status, 404);
    resp_free(&r);
    ck_assert_int_eq(cli_sendf(&c, "GET /bad-header HTTP/1.1\r\nHost: t\r\n\r\n"), 0);
    ck_assert_int_eq(cli_resp(&c, &r, 0, 5000), 0);
    ck_assert_int_eq(r.status, 500);
    ck_assert_ptr_null(find_header(r.head, "injected"));
    ck_assert_msg(strstr(r.body, "control byte"), "%s", r.body);
    resp_free(&r);
    /* Connection: close is honoured */
    ck_assert_int_eq(cli_sendf(&c, "GET /hello HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"), 0);
    ck_assert_int_eq(cli_resp(&c, &r, 0, 5000), 0);
    ck_assert(r.close);
    resp_free(&r);
    ck_assert(cli_sees_eof(&c, 5000));
    cli_close(&c);

    /* HTTP/1.0: closes by default, keeps alive when asked */
    ck_assert_int_eq(cli_open(&c, s.port), 0);
    ck_assert_int_eq(cli_sendf(&c, "GET /hello HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"), 0);
    ck_assert_int_eq(cli_resp(&c, &r, 0, 5000), 0);
    ck_assert_ptr_nonnull(find_header(r.head, "connection"));
    ck_assert(strncmp(find_header(r.head, "connection"), "keep-alive", 10) == 0);
    resp_free(&r);
    ck_assert_int_eq(cli_sendf(&c, "GET /hello HTTP/1.0\r\n\r\n"), 0);
    ck_assert_int_eq(cli_resp(&c, &r, 0, 5000), 0);
    ck_assert(r.close);
    resp_free(&r);
    ck_assert(cli_sees_eof(&c, 5000));
    cli_close(&c);

    /* curl: two URLs, one connection */
    char url[64], out[4096];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/hello", s.port);
    char *argv[] = {"curl", "-s", "--max-time", "10", "-w", "%{http_code} %{num_connects}\n",
                    url, url, NULL};
    ck_assert_int_eq(tu_run_capture(argv, 120000, out, sizeof out, NULL, 0), 0);
    ck_assert_str_eq(out, "hello\n200 1\nhello\n200 0\n");
    srv_stats(&s, &st);
    ck_assert_uint_eq(st.accepted, 3);
    ck_assert_uint_eq(st.requests, 12);
    srv_quit(&s);
}
END_TEST

START_TEST(pipelined_requests_in_order)
{
    srv_t s;
    srv_conf_t conf = conf_default();
    cli_t c;
    resp_t r;
    char want[128];
    srv_start(&s, &conf);
    ck_assert_int_eq(cli_open(&c, s.port), 0);
    /* the first is held: the others wait for it, in order */
    ck_assert_int_eq(cli_sendf(&c, "GET /hold?ms=30 HTTP/1.1\r\nHost: t\r\n\r\n"
                                   "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n"
                                   "GET /echo?id=3 HTTP/1.1\r\nHost: t\r\n\r\n"), 0);
    ck_assert_int_eq(cli_resp(&c, &r, 0, 5000), 0);
    ck_assert_str_eq(r.body, "held 30\n");
    resp_free(&r);
    ck_assert_int_eq(cli_resp(&c, &r, 0, 5000), 0);
    ck_assert_str_eq(r.body, "hello\n");
    resp_free(&r);
    ck_assert_int_eq(cli_resp(&c, &r, 0, 5000), 0);
    ck_assert_str_eq(r.body, "GET 11 /echo?id=3 /echo id=3 ua=(none) len=0\n");
    resp_free(&r);
    /* more than one wake-up's batch, in one write */
    char burst[8192] = "";
    for (int i = 0; i < 30; i++) {
        size_t l = strlen(burst);
        snprintf(burst + l, sizeof burst - l, "GET /echo?id=%d HTTP/1.1\r\nHost: t\r\n\r\n", i);
    }
    ck_assert_int_eq(cli_send(&c, burst, strlen(burst)), 0);
    for (int i = 0; i < 30; i++) {
        ck_assert_int_eq(cli_resp(&c, &r, 0, 5000), 0);
        snprintf(want, sizeof want, "GET 11 /echo?id=%d /echo id=%d ua=(none) len=0\n", i, i);
        ck_assert_str_eq(r.body, want);
        resp_free(&r);
    }
    cli_close(&c);
    srv_quit(&s);
}
END_TEST

START_TEST(streams_and_held_requests)
{
    srv_t s;
    srv_conf_t conf = conf_default();
    cli_t c;
    resp_t r;
    char url[128], out[8192];
    srv_start(&s, &conf);

    /* curl reads a chunked stream to its end (it checks the framing) */
    snprintf(url, sizeof url, "http://127.0.0.1:%d/stream?n=5&ms=5", s.port);
    char *a1[] = {"curl", "-sN", "--max-time", "10", "-D", "-", url, NULL};
    ck_assert_int_eq(tu_run_capture(a1, 120000, out, sizeof out, NULL, 0), 0);
    ck_assert_msg(strcasestr(out, "transfer-encoding: chunked\r\n"), "%s", out);
    ck_assert_msg(strcasestr(out, "x-stream: yes\r\n"), "%s", out);
    ck_assert_msg(strstr(out, "\r\n\r\nstart\nchunk 0\nchunk 1\nchunk 2\nchunk 3\nchunk 4\n"),
                  "%s", out);
    /* a held request answered later, by curl */
    snprintf(url, sizeof url, "http://127.0.0.1:%d/hold?ms=50", s.port);
    char *a2[] = {"curl", "-s", "--max-time", "10", url, NULL};
    ck_assert_int_eq(tu_run_capture(a2, 120000, out, sizeof out, NULL, 0), 0);
    ck_assert_str_eq(out, "held 50\n");

    /* on HTTP/1.0 a stream ends with the connection */
    ck_assert_int_eq(cli_open(&c, s.port), 0);
    ck_assert_int_eq(cli_sendf(&c, "GET /stream?n=2&ms=1 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"), 0);
    ck_assert_int_eq(cli_resp(&c, &r, 0, 5000), 0);
    ck_assert(r.close);
    ck_assert_ptr_null(find_header(r.head, "transfer-encoding"));
    ck_assert_str_eq(r.body, "start\nchunk 0\nchunk 1\n");
    resp_free(&r);
    cli_close(&c);

    /* a client leaving mid-stream is noticed, and a held request's too */
    ck_assert_int_eq(cli_open(&c, s.port), 0);
    ck_assert_int_eq(cli_sendf(&c, "GET /stream?n=100000&ms=2 HTTP/1.1\r\nHost: t\r\n\r\n"), 0);
    while (!strstr(c.buf ? c.buf : "", "chunk 1"))
        ck_assert_int_eq(cli_more(&c, bound_ms(5000)), 1);
    cli_close(&c);
    ck_assert_msg(srv_wait(&s, "close /stream", 5000), "the server did not notice");
    ck_assert_int_eq(cli_open(&c, s.port), 0);
    ck_assert_int_eq(cli_sendf(&c, "GET /wait HTTP/1.1\r\nHost: t\r\n\r\n"), 0);
    ck_assert(srv_conns(&s, 1, 5000));
    cli_close(&c);
    ck_assert_msg(srv_wait(&s, "close /wait", 5000), "the server did not notice");
    ck_assert(srv_conns(&s, 0, 5000));
    srv_quit(&s);
}
END_TEST

/* Send `req`, expect `status` with `text` in the body, Connection: close
 * and the server's close. */
static void expect_refusal(int port, const char *req, size_t len, int status, const char *text)
{
    cli_t c;
    resp_t r;
    ck_assert_int_eq(cli_open(&c, port), 0);
    ck_assert_int_eq(cli_send(&c, req, len), 0);
    ck_assert_msg(cli_resp(&c, &r, 0, 5000) == 0, "no response to %.60s", req);
    ck_assert_msg(r.status == status, "%.60s: status %d, want %d", req, r.status, status);
    ck_assert_msg(strstr(r.body, text), "%.60s: body \"%s\"", req, r.body);
    ck_assert(r.close);
    resp_free(&r);
    ck_assert(cli_sees_eof(&c, 5000));
    cli_close(&c);
}

static void expect_ok(int port, const char *req, size_t len)
{
    cli_t c;
    resp_t r;
    ck_assert_int_eq(cli_open(&c, port), 0);
    ck_assert_int_eq(cli_send(&c, req, len), 0);
    ck_assert_msg(cli_resp(&c, &r, 0, 5000) == 0, "no response to %.60s", req);
    ck_assert_msg(r.status == 200, "%.60s: status %d: %s", req, r.status, r.body);
    resp_free(&r);
    cli_close(&c);
}

START_TEST(every_limit)
{
    srv_t s;
    srv_conf_t conf = conf_default();
    char req[4096], pad[2048];
    cli_t c;
    resp_t r;
    conf.lim.max_url = 100;
    conf.lim.max_header_bytes = 200;
    conf.lim.max_headers = 5;
    conf.lim.max_body = 1000;
    conf.lim.header_timeout_ms = 200;
    conf.lim.body_timeout_ms = 200;
    conf.lim.keepalive_ms = 200;
    srv_start(&s, &conf);

    /* 414: the target at the limit passes, one byte more does not */
    memset(pad, 'u', sizeof pad);
    int n = snprintf(req, sizeof req, "GET /hello?%.*s HTTP/1.1\r\nHost: t\r\n\r\n", 100 - 7, pad);
    expect_ok(s.port, req, (size_t)n);
    n = snprintf(req, sizeof req, "GET /hello?%.*s HTTP/1.1\r\nHost: t\r\n\r\n", 100 - 6, pad);
    expect_refusal(s.port, req, (size_t)n, 414, "request target is longer");
    /* 431: header bytes (names + values: "Host"+"t" = 5, "X"+value) */
    n = snprintf(req, sizeof req, "GET /hello HTTP/1.1\r\nHost: t\r\nX: %.*s\r\n\r\n", 200 - 6, pad);
    expect_ok(s.port, req, (size_t)n);
    n = snprintf(req, sizeof req, "GET /hello HTTP/1.1\r\nHost: t\r\nX: %.*s\r\n\r\n", 200 - 5, pad);
    expect_refusal(s.port, req, (size_t)n, 431, "header fields are longer");
    /* 431: header lines */
    const char *five = "GET /hello HTTP/1.1\r\nHost: t\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n";
    expect_ok(s.port, five, strlen(five));
    const char *six = "GET /hello HTTP/1.1\r\nHost: t\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\nE: 5\r\n\r\n";
    expect_refusal(s.port, six, strlen(six), 431, "more header fields");
    /* 413: announced, and chunked past the limit */
    n = snprintf(req, sizeof req, "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\n%.*s",
                 1000, pad);
    expect_ok(s.port, req, (size_t)n);
    const char *big = "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1001\r\n\r\n";
    expect_refusal(s.port, big, strlen(big), 413, "body is longer");
    n = snprintf(req, sizeof req, "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n"
                                  "\r\n3e8\r\n%.*s\r\n1\r\nx\r\n0\r\n\r\n", 1000, pad);
    expect_refusal(s.port, req, (size_t)n, 413, "body is longer");
    /* Expect: 100-continue gets its interim answer; others 417 */
    ck_assert_int_eq(cli_open(&c, s.port), 0);
    ck_assert_int_eq(cli_sendf(&c, "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n"
                                   "Expect: 100-continue\r\n\r\n"), 0);
    while (!strstr(c.buf ? c.buf : "", "\r\n\r\n"))
        ck_assert_int_eq(cli_more(&c, bound_ms(5000)), 1);
    ck_assert_str_eq(c.buf, "HTTP/1.1 100 Continue\r\n\r\n");
    ck_assert_int_eq(cli_sendf(&c, "abc"), 0);
    ck_assert_int_eq(cli_resp(&c, &r, 0, 5000), 0);
    ck_assert_msg(strstr(r.body, "len=3\nabc"), "%s", r.body);
    resp_free(&r);
    cli_close(&c);
    const char *exp = "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nExpect: magic\r\n\r\n";
    expect_refusal(s.port, exp, strlen(exp), 417, "100-continue");
    /* malformed: no Host on 1.1, two Hosts, garbage, HTTP/2.0 */
    const char *nohost = "GET /hello HTTP/1.1\r\n\r\n";
    expect_refusal(s.port, nohost, strlen(nohost), 400, "Host");
    const char *two = "GET /hello HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n";
    expect_refusal(s.port, two, strlen(two), 400, "Host");
    const char *junk = "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n";
    expect_refusal(s.port, junk, strlen(junk), 400, "invalid");
    const char *v2 = "GET /hello HTTP/2.0\r\nHost: t\r\n\r\n";
    expect_refusal(s.port, v2, strlen(v2), 505, "HTTP/1.0 and HTTP/1.1");
    /* framing that two parsers could read two ways (request smuggling) */
    const char *clte = "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n"
                       "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
    expect_refusal(s.port, clte, strlen(clte), 400, "content-length");
    const char *clcl = "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n"
                       "Content-Length: 4\r\n\r\nabcd";
    expect_refusal(s.port, clcl, strlen(clcl), 400, "content-length");

    /* 408: a head that stops coming, a body that stops coming */
    long long t0 = now_ms();
    const char *part = "GET /hello HTTP/1.1\r\nHos";
    expect_refusal(s.port, part, strlen(part), 408, "head came too slowly");
    ck_assert_int_ge(now_ms() - t0, 190);
    const char *body = "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc";
    expect_refusal(s.port, body, strlen(body), 408, "body came too slowly");
    /* nothing sent at all: closed without a word */
    ck_assert_int_eq(cli_open(&c, s.port), 0);
    ck_assert(cli_sees_eof(&c, 5000));
    cli_close(&c);
    /* keep-alive: an idle connection is closed after keepalive_ms */
    ck_assert_int_eq(cli_open(&c, s.port), 0);
    ck_assert_int_eq(cli_sendf(&c, "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n"), 0);
    ck_assert_int_eq(cli_resp(&c, &r, 0, 5000), 0);
    resp_free(&r);
    t0 = now_ms();
    ck_assert(cli_sees_eof(&c, 5000));
    ck_assert_int_ge(now_ms() - t0, 150);
    cli_close(&c);

    http_stats_t st;
    srv_stats(&s, &st);
    ck_assert_uint_eq(st.refused, 14);
    srv_quit(&s);
}
END_TEST

/* Send a request line or header of `mib` MiB as fast as the server takes
 * it, reading at the same time: the refusal must come while it is being
 * sent. Returns the status seen (0 if none). */
static int send_huge(int port, int header, size_t mib, long long *took_ms)
{
    cli_t c;
    resp_t r;
    size_t total = mib << 20, sent = 0;
    static char chunk[65536];
    memset(chunk, 'a', sizeof chunk);
    ck_assert_int_eq(cli_open(&c, port), 0);
    fcntl(c.fd, F_SETFL, O_NONBLOCK);
    const char *start = header ? "GET /hello HTTP/1.1\r\nHost: t\r\nX-Big: " : "GET /";
    ck_assert_int_eq(send(c.fd, start, strlen(start), MSG_NOSIGNAL), (ssize_t)strlen(start));
    long long t0 = now_ms(), end = t0 + bound_ms(3000);
    while (now_ms() < end && !strstr(c.buf ? c.buf : "", "\r\n\r\n") && !c.eof && !c.reset) {
        struct pollfd p = {.fd = c.fd, .events = POLLIN | (sent < total ? POLLOUT : 0)};
        if (poll(&p, 1, 100) <= 0)
            continue;
        if (p.revents & POLLIN)
            cli_more(&c, 0);
        if ((p.revents & POLLOUT) && sent < total) {
            ssize_t k = send(c.fd, chunk, sizeof chunk, MSG_NOSIGNAL);
            if (k > 0)
                sent += (size_t)k;
            else if (errno != EAGAIN)
                sent = total; /* the server closed its end: read what it said */
        }
    }
    *took_ms = now_ms() - t0;
    fcntl(c.fd, F_SETFL, 0);
    int status = cli_resp(&c, &r, 0, 1000) == 0 ? r.status : 0;
    if (status)
        resp_free(&r);
    cli_close(&c);
    return status;
}

START_TEST(huge_request_line_refused_quickly)
{
    srv_t s;
    srv_conf_t conf = conf_default();
    char out[256];
    long long took;
    srv_start(&s, &conf);
    ck_assert(srv_wait(&s, "ready", 5000));
    double cpu0 = cpu_s(s.pid);
    ck_assert_int_eq(send_huge(s.port, 0, 64, &took), 414);
    ck_assert_msg(took < bound_ms(3000), "414 after %lld ms", took);
    ck_assert_int_eq(send_huge(s.port, 1, 64, &took), 431);
    ck_assert_msg(took < bound_ms(3000), "431 after %lld ms", took);
    /* it did not cost the server seconds, and it serves on */
    double cpu = cpu_s(s.pid) - cpu0;
    ck_assert_msg(cpu < (tu_valgrind() ? 10.0 : 1.0), "the server spent %.2f s of CPU", cpu);
    ck_assert_int_eq(get1(s.port, "/hello", out, sizeof out), 200);
    ck_assert(srv_conns(&s, 0, 5000));
    srv_quit(&s);
}
END_TEST

/* Poll clients c[0..n) for their "hello" until `want` are answered within
 * ms; got[i]: 0 waiting, 1 answered. Returns the answered count. */
static int await_replies(cli_t *c, int *got, int n, int want, int ms)
{
    long long end = now_ms() + bound_ms(ms);
    int have = 0;
    for (int i = 0; i < n; i++)
        have += got[i] == 1;
    while (have < want && now_ms() < end) {
        struct pollfd p[64];
        for (int i = 0; i < n; i++)
            p[i] = (struct pollfd){.fd = got[i] ? -1 : c[i].fd, .events = POLLIN};
        if (poll(p, (nfds_t)n, (int)(end - now_ms())) <= 0)
            break;
        for (int i = 0; i < n; i++) {
            if (!(p[i].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            resp_t r;
            ck_assert_msg(cli_resp(&c[i], &r, 0, 5000) == 0, "client %d: eof %d reset %d", i,
                          c[i].eof, c[i].reset);
            ck_assert_str_eq(r.body, "hello\n");
            resp_free(&r);
            got[i] = 1;
            have++;
        }
    }
    return have;
}

static void hello_client(cli_t *c, int port)
{
    ck_assert_int_eq(cli_open(c, port), 0);
    ck_assert_int_eq(cli_sendf(c, "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n"), 0);
}

START_TEST(emfile_pauses_accepting_and_logs_once)
{
    srv_t s;
    srv_conf_t conf = conf_default();
    enum { EXTRA = 4, WAITING = 4 };
    cli_t c[64];
    int got[64] = {0};
    http_stats_t st;
    conf.nofile_extra = EXTRA;
    conf.lim.accept_pause_ms = 100;
    /* Natively even in the valgrind run: valgrind applies RLIMIT_NOFILE
     * itself, after the kernel's accept(), so it resets the connection it
     * took and the server never sees a kernel EMFILE. */
    conf.exec_native = 1;
    srv_start(&s, &conf);
    ck_assert(srv_wait(&s, "ready", 5000));
    char *cap = strstr(s.ev, "capacity ");
    ck_assert_ptr_nonnull(cap);
    int capacity = atoi(cap + 9);
    ck_assert_msg(capacity == EXTRA, "capacity %d", capacity);
    int n = capacity + WAITING;
    for (int i = 0; i < n; i++)
        hello_client(&c[i], s.port);
    /* the server runs out of descriptors: those it took are served */
    ck_assert_msg(srv_wait(&s, "log 1 http: accept() failed: Too many open files", 5000),
                  "no log line: %s", s.ev);
    ck_assert_int_eq(await_replies(c, got, n, capacity, 5000), capacity);
    /* for a second: no spinning, nobody else served, still one line */
    double cpu0 = cpu_s(s.pid);
    long long t0 = now_ms();
    ck_assert_int_eq(await_replies(c, got, n, capacity + 1, 1000), capacity);
    double cpu = cpu_s(s.pid) - cpu0, wall = (double)(now_ms() - t0) / 1000.0;
    ck_assert_msg(cpu < 0.2 * wall, "the server used %.2f s of CPU in %.2f s", cpu, wall);
    srv_stats(&s, &st);
    ck_assert_uint_eq(st.accept_episodes, 1);
    ck_assert_uint_eq(st.starved, 1);
    ck_assert_msg(st.accept_pauses >= 3, "%llu pauses", (unsigned long long)st.accept_pauses);
    ck_assert_int_eq(srv_count(&s, "log "), 1);
    /* descriptors come back: the waiting clients are served */
    for (int i = 0; i < n; i++)
        if (got[i] == 1) {
            cli_close(&c[i]);
            c[i].fd = -1;
        }
    ck_assert_int_eq(await_replies(c, got, n, n, 5000), n);
    srv_stats(&s, &st);
    ck_assert_uint_eq(st.accept_episodes, 1);
    ck_assert_int_eq(srv_count(&s, "log "), 1);
    /* a second episode, a second line: once the first is over (with every
     * descriptor in use, accept() fails even with nobody waiting) */
    for (int i = 0; i < n; i++)
        cli_close(&c[i]);
    memset(got, 0, sizeof got);
    ck_assert(srv_conns(&s, 0, 5000));
    long long end = now_ms() + bound_ms(5000);
    do
        srv_stats(&s, &st);
    while (st.starved && now_ms() < end && (srv_pump(&s, 10), 1));
    ck_assert_uint_eq(st.starved, 0);
    for (int i = 0; i < n; i++)
        hello_client(&c[i], s.port);
    ck_assert_int_eq(await_replies(c, got, n, capacity, 5000), capacity);
    ck_assert(srv_wait_n(&s, "log 1 http: accept() failed", 2, 5000));
    for (int i = 0; i < n; i++)
        if (got[i] == 1) {
            cli_close(&c[i]);
            c[i].fd = -1;
        }
    ck_assert_int_eq(await_replies(c, got, n, n, 5000), n);
    srv_stats(&s, &st);
    ck_assert_uint_eq(st.accept_episodes, 2);
    ck_assert_int_eq(srv_count(&s, "log "), 2);
    for (int i = 0; i < n; i++)
        cli_close(&c[i]);
    srv_quit(&s);
}
END_TEST

START_TEST(accepts_in_bounded_batches)
{
    enum { N = 20, BATCH = 4 };
    srv_t s;
    srv_conf_t conf = conf_default();
    cli_t c[N];
    int got[N] = {0};
    http_stats_t st;
    conf.lim.accept_batch = BATCH;
    conf.listen_late = 1;
    srv_start(&s, &conf);
    ck_assert(srv_wait(&s, "ready", 5000));
    for (int i = 0; i < N; i++)
        hello_client(&c[i], s.port); /* all in the backlog before the server listens */
    srv_cmd(&s, 'l');
    ck_assert(srv_wait(&s, "listen 0", 5000));
    ck_assert_int_eq(await_replies(c, got, N, N, 5000), N);
    srv_stats(&s, &st);
    ck_assert_uint_eq(st.accepted, N);
    ck_assert_uint_eq(st.accept_full, N / BATCH);
    for (int i = 0; i < N; i++)
        cli_close(&c[i]);
    srv_quit(&s);
}
END_TEST

START_TEST(max_conns_send_timeout_linger)
{
    srv_t s;
    srv_conf_t conf = conf_default();
    cli_t c[3];
    int got[3] = {0};
    http_stats_t st;
    conf.lim.max_conns = 2;
    conf.lim.send_timeout_ms = 200;
    conf.lim.linger_ms = 300;
    srv_start(&s, &conf);
    /* max_conns: the third waits in the backlog until one closes */
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(cli_open(&c[i], s.port), 0);
        ck_assert_int_eq(cli_sendf(&c[i], "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n"), 0);
    }
    ck_assert_int_eq(await_replies(c, got, 3, 2, 5000), 2);
    ck_assert_int_eq(await_replies(c, got, 3, 3, 300), 2);
    for (int i = 0; i < 3; i++)
        if (got[i])
            cli_close(&c[i]);
    ck_assert_int_eq(await_replies(c, got, 3, 3, 5000), 3);
    for (int i = 0; i < 3; i++)
        cli_close(&c[i]);
    ck_assert(srv_conns(&s, 0, 5000));
    /* send timeout: a client that takes nothing of a large reply is dropped */
    srv_stats(&s, &st);
    uint64_t dropped = st.dropped;
    int small = 4096;
    ck_assert_int_eq(cli_open(&c[0], s.port), 0);
    setsockopt(c[0].fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    ck_assert_int_eq(cli_sendf(&c[0], "GET /big?kb=16384 HTTP/1.1\r\nHost: t\r\n\r\n"), 0);
    ck_assert(srv_conns(&s, 1, 5000));
    ck_assert(srv_conns(&s, 0, 5000));
    srv_stats(&s, &st);
    ck_assert_uint_eq(st.dropped, dropped + 1);
    cli_close(&c[0]);
    /* linger: after a refusal the server reads on for linger_ms, then closes
     * even if the client never does */
    long long t0 = now_ms();
    ck_assert_int_eq(cli_open(&c[0], s.port), 0);
    ck_assert_int_eq(cli_sendf(&c[0], "BREW / HTTP/1.1\r\n\r\n"), 0);
    resp_t r;
    ck_assert_int_eq(cli_resp(&c[0], &r, 0, 5000), 0);
    ck_assert_int_eq(r.status, 400);
    resp_free(&r);
    ck_assert(srv_conns(&s, 1, 100)); /* still lingering */
    ck_assert(srv_conns(&s, 0, 5000));
    ck_assert_int_ge(now_ms() - t0, 290);
    cli_close(&c[0]);
    srv_quit(&s);
}
END_TEST

START_TEST(slow_readers)
{
    srv_t s;
    srv_conf_t conf = conf_default();
    cli_t c;
    int small = 4096;
    conf.lim.out_high_water = 64 * 1024;
    srv_start(&s, &conf);
    /* nobody watches for slowness: the layer drops the client (on_close) */
    ck_assert_int_eq(cli_open(&c, s.port), 0);
    setsockopt(c.fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    ck_assert_int_eq(cli_sendf(&c, "GET /flood HTTP/1.1\r\nHost: t\r\n\r\n"), 0);
    ck_assert_msg(srv_wait(&s, "close /flood", 5000), "not dropped: %s", s.ev);
    cli_close(&c);
    /* the app watches: it is told, and drops it itself */
    ck_assert_int_eq(cli_open(&c, s.port), 0);
    setsockopt(c.fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    ck_assert_int_eq(cli_sendf(&c, "GET /flood?slow=1 HTTP/1.1\r\nHost: t\r\n\r\n"), 0);
    ck_assert_msg(srv_wait(&s, "slow /flood", 5000), "not told: %s", s.ev);
    ck_assert(srv_conns(&s, 0, 5000));
    cli_close(&c);
    srv_quit(&s);
}
END_TEST

/* ---- the graceful drain ---- */

typedef struct {
    _Atomic int done[8];
    _Atomic int unanswered[8];
} load_t;

typedef struct {
    int port, id;
    load_t *sh;
    tu_pipe_t *ready;
} loader_t;

/* Requests in a loop on one keep-alive connection until the server closes
 * it. Fails on a partial response, a reset, or data after a close. */
static int loader(void *arg)
{
    loader_t *l = arg;
    cli_t c;
    resp_t r;
    TU_CHECK(cli_open(&c, l->port) == 0, "connect");
    for (int i = 0;; i++) {
        const char *path = i % 3 == 2 ? "/hold?ms=3" : "/hello";
        if (cli_sendf(&c, "GET %s HTTP/1.1\r\nHost: t\r\n\r\n", path) != 0) {
            /* our request met the server's close: never answered */
            atomic_fetch_add(&l->sh->unanswered[l->id], 1);
            break;
        }
        if (cli_resp(&c, &r, 0, 10000) != 0) {
            TU_CHECK(!c.reset, "reset on request %d", i);
            TU_CHECK(c.eof && c.len == 0, "partial response on request %d (%zu bytes)", i, c.len);
            atomic_fetch_add(&l->sh->unanswered[l->id], 1);
            break;
        }
        int closing = r.close;
        TU_CHECK(r.status == 200 && r.complete, "request %d: status %d", i, r.status);
        TU_CHECK(strcmp(r.body, i % 3 != 2 ? "hello\n" : closing ? "drained\n" : "held 3\n") == 0,
                 "request %d: body %s", i, r.body);
        resp_free(&r);
        if (atomic_fetch_add(&l->sh->done[l->id], 1) + 1 == 3)
            tu_signal(l->ready);
        if (closing) {
            TU_CHECK(cli_sees_eof(&c, 5000), "no close after Connection: close");
            break;
        }
    }
    cli_close(&c);
    return 0;
}

START_TEST(graceful_drain_under_load)
{
    enum { LOADERS = 4 };
    srv_t s;
    srv_conf_t conf = conf_default();
    load_t *sh = tu_shared(sizeof *sh);
    tu_pipe_t ready;
    loader_t l[LOADERS];
    pid_t kids[LOADERS];
    cli_t stream, poll_c, idle, half, fresh;
    resp_t r;
    tu_pipe(&ready);
    srv_start(&s, &conf);
    for (int i = 0; i < LOADERS; i++) {
        l[i] = (loader_t){.port = s.port, .id = i, .sh = sh, .ready = &ready};
        kids[i] = tu_fork(loader, &l[i]);
    }
    /* a long stream, a long poll, an idle keep-alive connection, and a
     * request half sent */
    ck_assert_int_eq(cli_open(&stream, s.port), 0);
    ck_assert_int_eq(cli_sendf(&stream, "GET /stream?n=1000000&ms=2 HTTP/1.1\r\nHost: t\r\n\r\n"), 0);
    ck_assert_int_eq(cli_open(&poll_c, s.port), 0);
    ck_assert_int_eq(cli_sendf(&poll_c, "GET /hold?ms=600000 HTTP/1.1\r\nHost: t\r\n\r\n"), 0);
    ck_assert_int_eq(cli_open(&idle, s.port), 0);
    ck_assert_int_eq(cli_sendf(&idle, "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n"), 0);
    ck_assert_int_eq(cli_resp(&idle, &r, 0, 5000), 0);
    resp_free(&r);
    ck_assert_int_eq(cli_open(&half, s.port), 0);
    ck_assert_int_eq(cli_sendf(&half, "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n\r\nab"), 0);
    ck_assert_int_eq(cli_open(&fresh, s.port), 0); /* its request comes after the drain began */
    for (int i = 0; i < LOADERS; i++)
        ck_assert_int_eq(tu_await(&ready), 0);
    while (!strstr(stream.buf ? stream.buf : "", "chunk 2"))
        ck_assert_int_eq(cli_more(&stream, bound_ms(5000)), 1);
    ck_assert(srv_conns(&s, LOADERS + 5, 5000));

    srv_cmd(&s, 'd');
    ck_assert(srv_wait(&s, "draining", 5000));
    /* the idle connection is closed at once, cleanly */
    ck_assert(cli_sees_eof(&idle, 5000));
    cli_close(&idle);
    /* the half-sent request is read to its end and answered, then closed */
    ck_assert_int_eq(cli_sendf(&half, "cd"), 0);
    ck_assert_int_eq(cli_resp(&half, &r, 0, 5000), 0);
    ck_assert_msg(strstr(r.body, "len=4\nabcd"), "%s", r.body);
    ck_assert(r.close);
    resp_free(&r);
    ck_assert(cli_sees_eof(&half, 5000));
    cli_close(&half);
    /* a connection accepted before the drain has its first request answered */
    ck_assert_int_eq(cli_sendf(&fresh, "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n"), 0);
    ck_assert_int_eq(cli_resp(&fresh, &r, 0, 5000), 0);
    ck_assert_str_eq(r.body, "hello\n");
    ck_assert(r.close);
    resp_free(&r);
    ck_assert(cli_sees_eof(&fresh, 5000));
    cli_close(&fresh);
    /* the long poll is answered by its on_drain, the stream ends with a footer */
    ck_assert_int_eq(cli_resp(&poll_c, &r, 0, 5000), 0);
    ck_assert_str_eq(r.body, "drained\n");
    ck_assert(r.close);
    resp_free(&r);
    ck_assert_int_eq(cli_resp(&stream, &r, 0, 5000), 0);
    ck_assert(r.complete);
    ck_assert_msg(r.blen >= 7 && strcmp(r.body + r.blen - 7, "footer\n") == 0, "%s", r.body);
    resp_free(&r);
    ck_assert(cli_sees_eof(&stream, 5000));
    ck_assert(cli_sees_eof(&poll_c, 5000));
    cli_close(&stream);
    cli_close(&poll_c);
    /* every loader ended cleanly: complete responses, no reset */
    int total = 0;
    for (int i = 0; i < LOADERS; i++) {
        tu_wait_ok(kids[i]);
        total += atomic_load(&sh->done[i]);
    }
    ck_assert_int_ge(total, 3 * LOADERS);
    ck_assert_msg(srv_wait(&s, "drained", 5000), "the drain did not end: %s", s.ev);
    tu_wait_ok(s.pid);
    close(s.ctl);
    close(s.evr);
    free(s.ev);
    tu_pipe_close(&ready);
    tu_unshare(sh, sizeof *sh);
}
END_TEST

/* ---- WebSocket ---- */

/* Read from fd into buf until it holds `needle` or ms pass. */
static int read_until(int fd, char *buf, size_t cap, const char *needle, int ms)
{
    size_t n = strlen(buf);
    long long end = now_ms() + bound_ms(ms);
    while (!strstr(buf, needle)) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        long long left = end - now_ms();
        if (left <= 0 || poll(&p, 1, (int)left) <= 0)
            return 0;
        ssize_t k = read(fd, buf + n, cap - 1 - n);
        if (k <= 0)
            return 0;
        n += (size_t)k;
        buf[n] = '\0';
    }
    return 1;
}

static int wait_status(pid_t pid)
{
    int st;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

START_TEST(websocket_with_a_real_client)
{
    srv_t s;
    srv_conf_t conf = conf_default();
    char script[PATH_MAX + 64], url[64], out[8192] = "";
    int fd;
    node_script(script, sizeof script);
    srv_start(&s, &conf);
    snprintf(url, sizeof url, "ws://127.0.0.1:%d/ws", s.port);
    /* echo of text, binary and 100 KiB, a ping, the close handshake */
    char *echo[] = {"node", script, url, "echo", NULL};
    int rc = tu_run_capture(echo, 120000, out, sizeof out, NULL, 0);
    ck_assert_msg(rc == 0, "node echo: %d: %s", rc, out);
    ck_assert_str_eq(out, "open\necho text 5\necho binary 4\necho text 102400\npong\nclose 1000 bye\n");
    ck_assert(srv_wait(&s, "wsclose 1000", 5000));
    /* a message over max_body: close 1009 */
    char *big[] = {"node", script, url, "big", "1100000", NULL};
    rc = tu_run_capture(big, 120000, out, sizeof out, NULL, 0);
    ck_assert_msg(rc == 0, "node big: %d: %s", rc, out);
    ck_assert(srv_wait(&s, "wsclose 1009", 5000));
    /* the drain closes it with 1001 */
    char *wait[] = {"node", script, url, "wait", NULL};
    out[0] = '\0';
    pid_t node = tu_spawn(wait, &fd);
    ck_assert_msg(read_until(fd, out, sizeof out, "open\n", 10000), "node: %s", out);
    ck_assert(srv_conns(&s, 1, 5000));
    srv_cmd(&s, 'd');
    ck_assert_msg(read_until(fd, out, sizeof out, "close 1001 server going away\n", 5000),
                  "node: %s", out);
    close(fd);
    ck_assert_int_eq(wait_status(node), 0);
    ck_assert(srv_wait(&s, "wsclose 1001", 5000));
    ck_assert(srv_wait(&s, "drained", 5000));
    tu_wait_ok(s.pid);
    close(s.ctl);
    close(s.evr);
    free(s.ev);
}
END_TEST

/* A handshake from here: its response status and head. */
static int handshake(int port, const char *extra, resp_t *r, cli_t *keep)
{
    cli_t c;
    ck_assert_int_eq(cli_open(&c, port), 0);
    ck_assert_int_eq(cli_sendf(&c, "GET /ws HTTP/1.1\r\nHost: t\r\n%s\r\n", extra), 0);
    ck_assert_int_eq(cli_resp(&c, r, 0, 5000), 0);
    if (keep)
        *keep = c;
    else
        cli_close(&c);
    return r->status;
}

START_TEST(websocket_hostile_handshakes)
{
    srv_t s;
    srv_conf_t conf = conf_default();
    resp_t r;
    cli_t c;
    srv_start(&s, &conf);
    const char *good = "Upgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n"
                       "Sec-WebSocket-Version: 13\r\n";
    char h[512];
    /* RFC 6455's own example key and answer */
    snprintf(h, sizeof h, "%sSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", good);
    ck_assert_int_eq(handshake(s.port, h, &r, &c), 101);
    ck_assert(strncmp(find_header(r.head, "sec-websocket-accept"), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n",
                      30) == 0);
    resp_free(&r);
    /* a masked text frame "hi" comes back unmasked */
    const unsigned char frame[] = {0x81, 0x82, 1, 2, 3, 4, 'h' ^ 1, 'i' ^ 2};
    ck_assert_int_eq(cli_send(&c, frame, sizeof frame), 0);
    while (c.len < 4)
        ck_assert_int_eq(cli_more(&c, bound_ms(5000)), 1);
    ck_assert(memcmp(c.buf, "\x81\x02hi", 4) == 0);
    /* an unmasked frame from a client is a protocol error: close 1002 */
    const unsigned char bare[] = {0x81, 0x02, 'h', 'i'};
    ck_assert_int_eq(cli_send(&c, bare, sizeof bare), 0);
    ck_assert(srv_wait(&s, "wsclose 1002", 5000));
    cli_close(&c);
    /* refusals */
    snprintf(h, sizeof h, "%sSec-WebSocket-Key: short==\r\n", good);
    ck_assert_int_eq(handshake(s.port, h, &r, NULL), 400);
    ck_assert_msg(strstr(r.body, "Sec-WebSocket-Key"), "%s", r.body);
    resp_free(&r);
    snprintf(h, sizeof h, "%sSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=!\r\n", good);
    ck_assert_int_eq(handshake(s.port, h, &r, NULL), 400);
    resp_free(&r);
    snprintf(h, sizeof h, "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 8\r\n"
                          "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n");
    ck_assert_int_eq(handshake(s.port, h, &r, NULL), 426);
    ck_assert(strncmp(find_header(r.head, "sec-websocket-version"), "13\r\n", 4) == 0);
    resp_free(&r);
    snprintf(h, sizeof h, "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
                          "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n");
    ck_assert_int_eq(handshake(s.port, h, &r, NULL), 400);
    ck_assert_msg(strstr(r.body, "Connection: upgrade"), "%s", r.body);
    resp_free(&r);
    ck_assert_int_eq(srv_count(&s, "wsrefused"), 4);
    srv_quit(&s);
}
END_TEST

/* ---- the text helpers ---- */

START_TEST(decode_args_and_log_escape)
{
    char out[64];
    size_t n;
    ck_assert_int_eq(http_decode("a%20b+c%2F", 10, 0, out, sizeof out, &n), SHK_OK);
    ck_assert_str_eq(out, "a b+c/");
    ck_assert_int_eq(http_decode("a%20b+c", 7, 1, out, sizeof out, &n), SHK_OK);
    ck_assert_str_eq(out, "a b c");
    ck_assert_int_eq(http_decode("%zz", 3, 0, out, sizeof out, &n), SHK_EINVAL);
    ck_assert_int_eq(http_decode("ab%2", 4, 0, out, sizeof out, &n), SHK_EINVAL);
    ck_assert_int_eq(http_decode("ab%", 3, 0, out, sizeof out, &n), SHK_EINVAL);
    ck_assert_int_eq(http_decode("a%00b", 5, 0, out, sizeof out, &n), SHK_EINVAL);
    ck_assert_int_eq(http_decode("a\0b", 3, 0, out, sizeof out, &n), SHK_EINVAL);
    ck_assert_int_eq(http_decode("abcd", 4, 0, out, 4, &n), SHK_ERANGE);
    ck_assert_int_eq(http_decode("abcd", 4, 0, out, 5, &n), SHK_OK);

    /* a decoded newline cannot forge a log line */
    ck_assert_uint_eq(http_log_escape(out, sizeof out, "GET /a\nb\"\\\x80", 11), 23);
    ck_assert_str_eq(out, "GET /a\\x0ab\\x22\\x5c\\x80");
    ck_assert_uint_eq(http_log_escape(out, 10, "abcdefghijkl", 12), 12);
    ck_assert_str_eq(out, "abcdef...");
    ck_assert_uint_eq(http_log_escape(out, 10, "abcdefghi", 9), 9);
    ck_assert_str_eq(out, "abcdefghi");
    ck_assert_uint_eq(http_log_escape(out, 10, "abcd\n\n\n", 7), 16);
    ck_assert_str_eq(out, "abcd...");
    ck_assert_uint_eq(http_log_escape(out, 1, "abc", 3), 3);
    ck_assert_str_eq(out, "");
    ck_assert_str_eq(http_reason(404), "Not Found");
    ck_assert_str_eq(http_reason(299), "Unknown");

    /* the same rules on a live request's path and arguments */
    srv_t s;
    srv_conf_t conf = conf_default();
    char body[512];
    srv_start(&s, &conf);
    ck_assert_int_eq(get1(s.port, "/args?a=1&b=%zz&c=x%00y&d=x+y%21&&=&e", body, sizeof body), 200);
    ck_assert_str_eq(body, "a=1;b=(bad);c=(bad);d=x y!;e=;f=(none);\n");
    ck_assert_int_eq(get1(s.port, "/he%6clo", body, sizeof body), 200);
    ck_assert_str_eq(body, "hello\n");
    ck_assert_int_eq(get1(s.port, "/hello%00", body, sizeof body), 400);
    ck_assert_int_eq(get1(s.port, "/hello%", body, sizeof body), 400);
    ck_assert_int_eq(get1(s.port, "http://example/hello?x=1", body, sizeof body), 200);
    ck_assert_int_eq(get1(s.port, "/hello#frag", body, sizeof body), 200);
    srv_quit(&s);
}
END_TEST

int main(int argc, char **argv)
{
    if (argc == 7 && strcmp(argv[1], "--server") == 0) { /* srv_start's exec_native */
        srv_conf_t conf;
        memset(&conf, 0, sizeof conf);
        app.ctl = atoi(argv[3]);
        app.evw = atoi(argv[4]);
        conf.nofile_extra = atoi(argv[5]);
        conf.lim.accept_pause_ms = atoi(argv[6]);
        return server_main(&conf, atoi(argv[2]));
    }
    Suite *s = suite_create("http");
    TCase *tc = tcase_create("http");
    tcase_set_timeout(tc, 120);
    signal(SIGPIPE, SIG_IGN);
    tcase_add_test(tc, decode_args_and_log_escape);
    tcase_add_test(tc, whole_replies_and_keepalive);
    tcase_add_test(tc, pipelined_requests_in_order);
    tcase_add_test(tc, streams_and_held_requests);
    tcase_add_test(tc, every_limit);
    tcase_add_test(tc, huge_request_line_refused_quickly);
    tcase_add_test(tc, emfile_pauses_accepting_and_logs_once);
    tcase_add_test(tc, accepts_in_bounded_batches);
    tcase_add_test(tc, max_conns_send_timeout_linger);
    tcase_add_test(tc, slow_readers);
    tcase_add_test(tc, graceful_drain_under_load);
    tcase_add_test(tc, websocket_with_a_real_client);
    tcase_add_test(tc, websocket_hostile_handshakes);
    suite_add_tcase(s, tc);
    return tu_run(s);
}
