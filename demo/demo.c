/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * demo.c: the shmkit demo server. A master/worker HTTP server on the demo's
 * HTTP layer (http.h: libevent, one event loop per worker, the bus's
 * doorbell in that loop) that reproduces the ngx.ipc example: GET
 * /send/<pid>/<data> sends alert "hello" to one worker, GET
 * /broadcast/<data> to all; every worker logs the hello and replies;
 * /workers and /status report; locations with limit_req share their leaky
 * buckets through a zone; locations with push_stream_* directives serve
 * nginx-push-stream's interface on the channel store (push.h,
 * docs/pushstream.md), whose tick runs on a timer here. A graceful stop
 * drains: requests in flight finish, subscribers are ended.
 */
#include "shmkit.h"

#include "demo_conf.h"
#include "http.h"
#include "push.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

typedef struct worker_ctx_s {
    shk_worker_t *w;
    shk_bus_t *bus;
    struct event_base *base;
    http_server_t *http;
    struct event *bus_ev;
    struct event *tick_ev; /* the channel store's tick */
    demo_conf_t *conf;
    push_srv_t push;
    int stopping;
} worker_ctx_t;

static worker_ctx_t wctx;

/* ---- log ------------------------------------------------------------------- */

static void log_sink(void *ctx, int level, const char *msg)
{
    char ts[32];
    time_t t = time(NULL);
    struct tm tm;
    (void)ctx;
    localtime_r(&t, &tm);
    strftime(ts, sizeof ts, "%Y/%m/%d %H:%M:%S", &tm);
    /* One write per line, so lines of different workers never interleave. */
    char line[2048];
    int n = snprintf(line, sizeof line, "%s [%s] %d: %s\n", ts, shk_log_level_name(level),
                     (int)shk_pid(), msg);
    if (n > (int)sizeof line - 1)
        n = (int)sizeof line - 1;
    if (write(2, line, (size_t)n) < 0) {
        /* nowhere else to report it */
    }
}

/* ---- alerts ---------------------------------------------------------------- */

static void on_hello(shk_bus_t *bus, const char *name, const void *data, size_t len, void *ctx)
{
    char reply[512];
    int n;
    (void)name;
    (void)ctx;
    char esc[1024];
    http_log_escape(esc, sizeof esc, data, len); /* the data comes from a URL */
    shk_log(SHK_LOG_NOTICE, "sender %d says %s", (int)shk_bus_sender(bus), esc);
    n = snprintf(reply, sizeof reply, "hello to you too. you said %.*s", (int)len,
                 (const char *)data);
    if (n >= (int)sizeof reply) {
        /* long data: build the reply on the heap rather than cut it */
        size_t rl = strlen("hello to you too. you said ") + len;
        char *r = malloc(rl + 1);
        if (!r)
            return;
        memcpy(r, "hello to you too. you said ", rl - len);
        memcpy(r + rl - len, data, len);
        int rc = shk_bus_reply(bus, "reply", r, rl);
        if (rc != SHK_OK)
            shk_log(SHK_LOG_WARN, "reply failed: %s", shk_last_errmsg());
        free(r);
        return;
    }
    if (shk_bus_reply(bus, "reply", reply, (size_t)n) != SHK_OK)
        shk_log(SHK_LOG_WARN, "reply failed: %s", shk_last_errmsg());
}

static void on_reply(shk_bus_t *bus, const char *name, const void *data, size_t len, void *ctx)
{
    (void)name;
    (void)ctx;
    char esc[1024];
    http_log_escape(esc, sizeof esc, data, len);
    shk_log(SHK_LOG_NOTICE, "%d replied %s", (int)shk_bus_sender(bus), esc);
}

static void bus_readable(evutil_socket_t fd, short what, void *arg)
{
    worker_ctx_t *c = arg;
    (void)fd;
    (void)what;
    shk_bus_dispatch(c->bus, SHK_BUS_BUDGET);
}

static void chan_tick(evutil_socket_t fd, short what, void *arg)
{
    worker_ctx_t *c = arg;
    (void)fd;
    (void)what;
    shk_chan_tick(c->push.ch);
    push_redis_tick(&c->push);
}

/* ---- HTTP ------------------------------------------------------------------- */

static void reply_text(http_req_t *req, int code, const char *text)
{
    http_reply_text(req, code, "%s\n", text);
}

static void reply_json(http_req_t *req, const char *json)
{
    static const char *const ct[] = {"Content-Type", "application/json", NULL};
    http_reply(req, 200, ct, json, strlen(json));
}

/* ?name=... overrides the alert name (to try names at the limits). */
static char *alert_name(http_req_t *req)
{
    const char *v;
    return strdup(http_req_arg(req, "name", &v) == SHK_OK ? v : "hello");
}

static void handle_send(http_req_t *req, const char *rest)
{
    char *name;
    pid_t pid;
    const char *slash = strchr(rest, '/');
    char msg[1200];
    int rc;

    if (!slash) {
        reply_text(req, 400, "usage: /send/<pid>/<data>");
        return;
    }
    /* range-checked: 2^32 + pid must not be taken for pid */
    if (shk_parse_pid(rest, (size_t)(slash - rest), &pid) != SHK_OK) {
        snprintf(msg, sizeof msg, "usage: /send/<pid>/<data> (pid is a number): %s",
                 shk_last_errmsg());
        reply_text(req, 400, msg);
        return;
    }
    name = alert_name(req);
    rc = shk_bus_send(wctx.bus, pid, name, slash + 1, strlen(slash + 1));
    free(name);
    if (rc != SHK_OK) {
        snprintf(msg, sizeof msg, "%s: %s", shk_strerror(rc), shk_last_errmsg());
        reply_text(req, 500, msg);
        return;
    }
    snprintf(msg, sizeof msg, "Sent alert to pid %ld", (long)pid);
    reply_text(req, 200, msg);
}

static void handle_broadcast(http_req_t *req, const char *data)
{
    char msg[1200], *name = alert_name(req);
    shk_bus_bcast_t res;
    int rc = shk_bus_broadcast(wctx.bus, name, data, strlen(data), &res);
    free(name);
    if (rc != SHK_OK) {
        snprintf(msg, sizeof msg, "%s: %s", shk_strerror(rc), shk_last_errmsg());
        reply_text(req, 500, msg);
        return;
    }
    snprintf(msg, sizeof msg, "Broadcast alert to %u workers", res.delivered);
    reply_text(req, 200, msg);
}

static void handle_workers(http_req_t *req)
{
    shk_bus_stats_t st;
    struct evbuffer *b;
    if (shk_bus_stats(wctx.bus, &st) != SHK_OK) {
        reply_text(req, 500, shk_last_errmsg());
        return;
    }
    b = evbuffer_new();
    if (!b)
        return;
    evbuffer_add_printf(b, "{\"master\":%d,\"generation\":%llu,\"workers\":[", (int)getppid(),
                        (unsigned long long)shk_worker_generation(wctx.w));
    for (unsigned i = 0, k = 0; i < st.nslots; i++) {
        shk_bus_slot_stats_t q;
        if (shk_bus_slot_stats(wctx.bus, i, &q) != SHK_OK || !q.pid ||
            q.state != SHK_BUS_SLOT_JOINED)
            continue;
        evbuffer_add_printf(b, "%s{\"slot\":%u,\"pid\":%d}", k++ ? "," : "", i, (int)q.pid);
    }
    evbuffer_add_printf(b, "],\"me\":%d}\n", (int)shk_pid());
    evbuffer_add(b, "", 1);
    reply_json(req, (const char *)evbuffer_pullup(b, -1));
    evbuffer_free(b);
}

static void handle_status(http_req_t *req)
{
    shk_cycle_t *cy = shk_worker_cycle(wctx.w);
    shk_zones_t *reg = shk_cycle_zones(cy);
    shk_zone_t *zs[64];
    unsigned n = 0;
    for (shk_zone_t *z; n < 64 && (z = shk_zones_at(reg, n)); n++)
        zs[n] = z;
    char *doc = shk_stat_render(zs, n, shk_zones_instance(reg), SHK_STAT_JSON);
    if (!doc) {
        reply_text(req, 500, shk_last_errmsg());
        return;
    }
    reply_json(req, doc);
    free(doc);
}

typedef struct delayed_s {
    http_req_t *req;
    struct event *ev;
} delayed_t;

static void delayed_free(http_req_t *req, void *arg)
{
    delayed_t *d = arg;
    (void)req;
    event_free(d->ev);
    free(d);
}

static void delayed_now(http_req_t *req, void *arg)
{
    reply_text(req, 200, "ok (delayed)");
    delayed_free(req, arg);
}

static void delayed_done(evutil_socket_t fd, short what, void *arg)
{
    delayed_t *d = arg;
    (void)fd;
    (void)what;
    delayed_now(d->req, d);
}

static void handle_limited(http_req_t *req, const demo_location_t *loc)
{
    const char *addr = http_req_peer(req);
    unsigned delay_ms = 0;
    int verdict;
    unsigned char key[16];
    size_t keylen;

    keylen = demo_binary_addr(addr, key);
    verdict = demo_location_limit(loc, key, keylen, &delay_ms);
    if (verdict == DEMO_LIMIT_REJECT) {
        reply_text(req, 503, "503 limited");
        return;
    }
    if (verdict == DEMO_LIMIT_DELAY && delay_ms) {
        delayed_t *d = calloc(1, sizeof *d);
        struct timeval tv = {delay_ms / 1000, (delay_ms % 1000) * 1000};
        if (d) {
            d->req = req;
            d->ev = evtimer_new(wctx.base, delayed_done, d);
            if (d->ev && evtimer_add(d->ev, &tv) == 0) {
                http_req_cbs_t cbs = {.on_close = delayed_free, .on_drain = delayed_now};
                http_req_watch(req, &cbs, d);
                return;
            }
            if (d->ev)
                event_free(d->ev);
            free(d);
        }
    }
    reply_text(req, 200, "ok");
}

static void on_request(http_req_t *req, void *arg)
{
    const char *m = http_req_method(req);
    const char *path;
    const demo_location_t *loc;
    push_match_t pm;
    int get = strcmp(m, "GET") == 0 || strcmp(m, "HEAD") == 0;
    (void)arg;

    if (!(path = http_req_path(req))) {
        reply_text(req, 400, "bad URI");
        return;
    }
    loc = demo_location_match(wctx.conf, path, pm.caps);
    if (loc && loc->push.kind != PUSH_NONE && strncmp(path, "/send/", 6) &&
        strncmp(path, "/broadcast/", 11) && strcmp(path, "/workers") && strcmp(path, "/status")) {
        pm.path = path;
        pm.rest = loc->match == DEMO_MATCH_PREFIX || loc->match == DEMO_MATCH_NOREGEX
                      ? path + strlen(loc->path)
                      : "";
        push_handle(&wctx.push, req, &loc->push, &pm);
        return;
    }
    if (!get) {
        static const char *const allow[] = {"Allow", "GET, HEAD", NULL};
        http_reply(req, 405, allow, "405 Method Not Allowed\n", 23);
        return;
    }
    if (strncmp(path, "/send/", 6) == 0)
        handle_send(req, path + 6);
    else if (strncmp(path, "/broadcast/", 11) == 0)
        handle_broadcast(req, path + 11);
    else if (strcmp(path, "/workers") == 0)
        handle_workers(req);
    else if (strcmp(path, "/status") == 0)
        handle_status(req);
    else if (loc)
        handle_limited(req, loc);
    else
        reply_text(req, 404, "not found");
}

static void http_log(void *ctx, int level, const char *msg)
{
    (void)ctx;
    shk_log(level, "%s", msg);
}

/* ---- the worker -------------------------------------------------------------- */

static void drained(void *ctx)
{
    worker_ctx_t *c = ctx;
    event_base_loopexit(c->base, NULL);
}

static void on_stop(shk_worker_t *w, int fast, void *ctx)
{
    worker_ctx_t *c = ctx;
    (void)w;
    c->stopping = 1;
    c->push.draining = 1;
    if (fast) {
        event_base_loopbreak(c->base);
        return;
    }
    /* Graceful: stop accepting, let requests in flight (and delayed ones)
     * finish, then leave the loop. */
    http_server_drain(c->http, drained, c);
}

static int demo_worker(shk_worker_t *w, void *appctx)
{
    (void)appctx;
    /* A client gone while the bufferevent writes to it is an EPIPE the
     * connection reports, not a SIGPIPE that ends the worker (seen when 200
     * EventSource clients vanished at once mid-stream). */
    struct sigaction sa = {0};
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);

    memset(&wctx, 0, sizeof wctx);
    wctx.w = w;
    wctx.bus = shk_worker_bus(w);
    wctx.conf = shk_cycle_app_conf(shk_worker_cycle(w));
    if (demo_conf_worker_init(wctx.conf, w) != SHK_OK) {
        shk_log(SHK_LOG_ERR, "worker init failed: %s", shk_last_errmsg());
        return 1;
    }
    wctx.base = event_base_new();
    if (wctx.base && event_base_priority_init(wctx.base, HTTP_PRIORITIES) != 0)
        shk_log(SHK_LOG_WARN, "event priorities: output written at each loop turn's end");
    http_limits_t lim = {.max_body = demo_push_main(wctx.conf)->max_body,
                         .out_high_water = demo_push_main(wctx.conf)->out_limit};
    wctx.http = wctx.base ? http_server_new(wctx.base, &lim, on_request, NULL) : NULL;
    if (!wctx.http)
        return 1;
    wctx.push = (push_srv_t){.w = w, .ch = shk_worker_chan(w), .base = wctx.base,
                             .pm = demo_push_main(wctx.conf)};
    if (push_srv_start(&wctx.push) != SHK_OK || push_redis_start(&wctx.push) != SHK_OK) {
        shk_log(SHK_LOG_ERR, "push-stream start failed: %s", shk_last_errmsg());
        return 1;
    }
    http_server_set_log(wctx.http, http_log, NULL);
    for (unsigned i = 0; i < shk_worker_nlisteners(w); i++)
        if (http_server_listen(wctx.http, shk_worker_listener(w, i)) != SHK_OK) {
            shk_log(SHK_LOG_ERR, "cannot accept on socket %d", shk_worker_listener(w, i));
            return 1;
        }
    shk_bus_on(wctx.bus, "hello", on_hello, NULL);
    shk_bus_on(wctx.bus, "reply", on_reply, NULL);
    shk_worker_on_stop(w, on_stop, &wctx);
    wctx.bus_ev = event_new(wctx.base, shk_bus_fd(wctx.bus), EV_READ | EV_PERSIST, bus_readable,
                            &wctx);
    if (!wctx.bus_ev || event_add(wctx.bus_ev, NULL) != 0)
        return 1;
    if (wctx.push.ch) {
        struct timeval tv = {0, SHK_CHAN_TICK_MS * 1000};
        wctx.tick_ev = event_new(wctx.base, -1, EV_PERSIST, chan_tick, &wctx);
        if (!wctx.tick_ev || event_add(wctx.tick_ev, &tv) != 0)
            return 1;
    }
    /* Alerts may have arrived before the loop watched the doorbell. */
    shk_bus_dispatch(wctx.bus, SHK_BUS_BUDGET);
    if (!shk_worker_quitting())
        event_base_dispatch(wctx.base);
    /* the subscribers go with the server, before the store's timers */
    http_server_free(wctx.http);
    wctx.http = NULL;
    push_srv_stop(&wctx.push);
    push_redis_stop(&wctx.push);
    if (wctx.tick_ev)
        event_free(wctx.tick_ev);
    event_free(wctx.bus_ev);
    event_base_free(wctx.base);
    return 0;
}

/* The command line is the library's (shk_app_main): -c FILE (default
 * conf/demo.conf), -t, -s reload|stop|quit, -v, -h. */
int main(int argc, char **argv)
{
    shk_app_t app = {0};

    shk_log_set(log_sink, NULL, SHK_LOG_NOTICE);
    demo_app(&app);
    app.worker = demo_worker;
    app.conf_path = "conf/demo.conf";
    return shk_app_main(argc, argv, &app, NULL);
}
