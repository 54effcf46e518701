/*
 * demo.c: the shmkit demo server. A master/worker HTTP server on libevent's
 * evhttp (one event loop per worker, the bus's doorbell in that loop) that
 * reproduces the ngx.ipc example: GET /send/<pid>/<data> sends alert
 * "hello" to one worker, GET /broadcast/<data> to all; every worker logs the
 * hello and replies; /workers and /status report; locations with limit_req
 * share their leaky buckets through a zone.
 */
#include "shmkit.h"

#include "demo_conf.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <netinet/in.h>
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
    struct evhttp *http;
    struct event *bus_ev;
    demo_conf_t *conf;
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
    shk_log(SHK_LOG_NOTICE, "sender %d says %.*s", (int)shk_bus_sender(bus), (int)len,
            (const char *)data);
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
    shk_log(SHK_LOG_NOTICE, "%d replied %.*s", (int)shk_bus_sender(bus), (int)len,
            (const char *)data);
}

static void bus_readable(evutil_socket_t fd, short what, void *arg)
{
    worker_ctx_t *c = arg;
    (void)fd;
    (void)what;
    shk_bus_dispatch(c->bus, 256);
}

/* ---- HTTP ------------------------------------------------------------------- */

static void reply_text(struct evhttp_request *req, int code, const char *reason, const char *text)
{
    struct evbuffer *b = evbuffer_new();
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                      "text/plain; charset=utf-8");
    if (b) {
        evbuffer_add_printf(b, "%s\n", text);
    }
    evhttp_send_reply(req, code, reason, b);
    if (b)
        evbuffer_free(b);
}

static void reply_json(struct evhttp_request *req, const char *json)
{
    struct evbuffer *b = evbuffer_new();
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "application/json");
    if (b)
        evbuffer_add(b, json, strlen(json));
    evhttp_send_reply(req, 200, "OK", b);
    if (b)
        evbuffer_free(b);
}

/* The decoded path of the request (caller frees), or NULL. */
static char *request_path(struct evhttp_request *req, char **query)
{
    const struct evhttp_uri *u = evhttp_request_get_evhttp_uri(req);
    const char *p = u ? evhttp_uri_get_path(u) : NULL;
    *query = NULL;
    if (!p)
        return NULL;
    if (u && evhttp_uri_get_query(u))
        *query = strdup(evhttp_uri_get_query(u));
    return evhttp_uridecode(p, 0, NULL);
}

/* ?name=... overrides the alert name (to try names at the limits). */
static char *alert_name(const char *query)
{
    struct evkeyvalq q;
    char *name = NULL;
    const char *v;
    if (!query)
        return strdup("hello");
    if (evhttp_parse_query_str(query, &q) == 0) {
        v = evhttp_find_header(&q, "name");
        if (v)
            name = strdup(v);
        evhttp_clear_headers(&q);
    }
    return name ? name : strdup("hello");
}

static void handle_send(struct evhttp_request *req, const char *rest, const char *query)
{
    char *end, *name;
    long pid;
    const char *slash = strchr(rest, '/');
    char msg[1200];
    int rc;

    if (!slash) {
        reply_text(req, 400, "Bad Request", "usage: /send/<pid>/<data>");
        return;
    }
    errno = 0;
    pid = strtol(rest, &end, 10);
    if (end != slash || errno || pid <= 0) {
        reply_text(req, 400, "Bad Request", "usage: /send/<pid>/<data> (pid is a number)");
        return;
    }
    name = alert_name(query);
    rc = shk_bus_send(wctx.bus, (pid_t)pid, name, slash + 1, strlen(slash + 1));
    free(name);
    if (rc != SHK_OK) {
        snprintf(msg, sizeof msg, "%s: %s", shk_strerror(rc), shk_last_errmsg());
        reply_text(req, 500, "Internal Server Error", msg);
        return;
    }
    snprintf(msg, sizeof msg, "Sent alert to pid %ld", pid);
    reply_text(req, 200, "OK", msg);
}

static void handle_broadcast(struct evhttp_request *req, const char *data, const char *query)
{
    char msg[1200], *name = alert_name(query);
    shk_bus_bcast_t res;
    int rc = shk_bus_broadcast(wctx.bus, name, data, strlen(data), &res);
    free(name);
    if (rc != SHK_OK) {
        snprintf(msg, sizeof msg, "%s: %s", shk_strerror(rc), shk_last_errmsg());
        reply_text(req, 500, "Internal Server Error", msg);
        return;
    }
    snprintf(msg, sizeof msg, "Broadcast alert to %u workers", res.delivered);
    reply_text(req, 200, "OK", msg);
}

static void handle_workers(struct evhttp_request *req)
{
    shk_bus_stats_t st;
    struct evbuffer *b;
    if (shk_bus_stats(wctx.bus, &st) != SHK_OK) {
        reply_text(req, 500, "Internal Server Error", shk_last_errmsg());
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
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "application/json");
    evhttp_send_reply(req, 200, "OK", b);
    evbuffer_free(b);
}

static void handle_status(struct evhttp_request *req)
{
    shk_cycle_t *cy = shk_worker_cycle(wctx.w);
    shk_zones_t *reg = shk_cycle_zones(cy);
    shk_zone_t *zs[64];
    unsigned n = 0;
    for (shk_zone_t *z; n < 64 && (z = shk_zones_at(reg, n)); n++)
        zs[n] = z;
    char *doc = shk_stat_render(zs, n, shk_zones_instance(reg), SHK_STAT_JSON);
    if (!doc) {
        reply_text(req, 500, "Internal Server Error", shk_last_errmsg());
        return;
    }
    reply_json(req, doc);
    free(doc);
}

typedef struct delayed_s {
    struct evhttp_request *req;
    struct event *ev;
} delayed_t;

static void delayed_done(evutil_socket_t fd, short what, void *arg)
{
    delayed_t *d = arg;
    (void)fd;
    (void)what;
    reply_text(d->req, 200, "OK", "ok (delayed)");
    event_free(d->ev);
    free(d);
}

static void handle_limited(struct evhttp_request *req, const demo_location_t *loc)
{
    struct evhttp_connection *conn = evhttp_request_get_connection(req);
    char *addr = NULL;
    uint16_t port = 0;
    unsigned delay_ms = 0;
    int verdict;
    unsigned char key[16];
    size_t keylen;

    evhttp_connection_get_peer(conn, &addr, &port);
    keylen = demo_binary_addr(addr, key);
    verdict = demo_location_limit(loc, key, keylen, &delay_ms);
    if (verdict == DEMO_LIMIT_REJECT) {
        reply_text(req, 503, "Service Temporarily Unavailable", "503 limited");
        return;
    }
    if (verdict == DEMO_LIMIT_DELAY && delay_ms) {
        delayed_t *d = calloc(1, sizeof *d);
        struct timeval tv = {delay_ms / 1000, (delay_ms % 1000) * 1000};
        if (d) {
            d->req = req;
            d->ev = evtimer_new(wctx.base, delayed_done, d);
            if (d->ev && evtimer_add(d->ev, &tv) == 0)
                return;
            if (d->ev)
                event_free(d->ev);
            free(d);
        }
    }
    reply_text(req, 200, "OK", "ok");
}

static void on_request(struct evhttp_request *req, void *arg)
{
    char *query = NULL;
    char *path = request_path(req, &query);
    const demo_location_t *loc;
    (void)arg;

    if (!path) {
        reply_text(req, 400, "Bad Request", "bad URI");
        free(query);
        return;
    }
    if (strncmp(path, "/send/", 6) == 0)
        handle_send(req, path + 6, query);
    else if (strncmp(path, "/broadcast/", 11) == 0)
        handle_broadcast(req, path + 11, query);
    else if (strcmp(path, "/workers") == 0)
        handle_workers(req);
    else if (strcmp(path, "/status") == 0)
        handle_status(req);
    else if ((loc = demo_location_find(wctx.conf, path)))
        handle_limited(req, loc);
    else
        reply_text(req, 404, "Not Found", "not found");
    free(path);
    free(query);
}

/* ---- the worker -------------------------------------------------------------- */

static void on_stop(shk_worker_t *w, int fast, void *ctx)
{
    worker_ctx_t *c = ctx;
    (void)w;
    c->stopping = 1;
    if (fast) {
        event_base_loopbreak(c->base);
        return;
    }
    /* Graceful: stop accepting, let requests in flight (and delayed ones)
     * finish, then leave the loop. */
    struct timeval tv = {1, 0};
    evhttp_free(c->http);
    c->http = NULL;
    event_base_loopexit(c->base, &tv);
}

static int demo_worker(shk_worker_t *w, void *appctx)
{
    (void)appctx;

    memset(&wctx, 0, sizeof wctx);
    wctx.w = w;
    wctx.bus = shk_worker_bus(w);
    wctx.conf = shk_cycle_app_conf(shk_worker_cycle(w));
    if (demo_conf_worker_init(wctx.conf, w) != SHK_OK) {
        shk_log(SHK_LOG_ERR, "worker init failed: %s", shk_last_errmsg());
        return 1;
    }
    wctx.base = event_base_new();
    wctx.http = wctx.base ? evhttp_new(wctx.base) : NULL;
    if (!wctx.http)
        return 1;
    evhttp_set_gencb(wctx.http, on_request, NULL);
    evhttp_set_allowed_methods(wctx.http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD);
    for (unsigned i = 0; i < shk_worker_nlisteners(w); i++)
        if (!evhttp_accept_socket_with_handle(wctx.http, shk_worker_listener(w, i))) {
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
    /* Alerts may have arrived before the loop watched the doorbell. */
    shk_bus_dispatch(wctx.bus, 256);
    if (!shk_worker_quitting())
        event_base_dispatch(wctx.base);
    event_free(wctx.bus_ev);
    if (wctx.http)
        evhttp_free(wctx.http);
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
