/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * http.c: the HTTP layer's server: limits and their defaults, listeners and
 * the accept loop (bounded per wake-up; paused, never spinning, when
 * accept() fails for lack of descriptors or memory, with one log line per
 * episode, which lasts until accept() finds nobody waiting; off while
 * max_conns are open), the graceful drain and the fast
 * free, counters, and the cached Date header.
 */
#include "http_internal.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* Sizes beyond these are refused as limits: they would defeat the point. */
#define HTTP_LIMIT_MAX_HEAD (64u * 1024 * 1024)

/* http_parser's own bound on a request's head (request line and headers,
 * with separators) is process-wide: it is set above every server's limits,
 * which the layer checks itself with exact replies; it only backs them up. */
static uint32_t parser_head_max;

static void accept_cb(evutil_socket_t fd, short what, void *arg);
static void done_cb(evutil_socket_t fd, short what, void *arg);

static int fill_limits(http_limits_t *l, const http_limits_t *in)
{
    if (in)
        *l = *in;
    else
        memset(l, 0, sizeof *l);
#define HTTP_DEF(f, d)                                                                   \
    do {                                                                                 \
        if (l->f == 0)                                                                   \
            l->f = (d);                                                                  \
    } while (0)
    HTTP_DEF(max_url, HTTP_DEF_MAX_URL);
    HTTP_DEF(max_header_bytes, HTTP_DEF_MAX_HEADER_BYTES);
    HTTP_DEF(max_headers, HTTP_DEF_MAX_HEADERS);
    HTTP_DEF(max_body, HTTP_DEF_MAX_BODY);
    HTTP_DEF(header_timeout_ms, HTTP_DEF_HEADER_TIMEOUT_MS);
    HTTP_DEF(body_timeout_ms, HTTP_DEF_BODY_TIMEOUT_MS);
    HTTP_DEF(keepalive_ms, HTTP_DEF_KEEPALIVE_MS);
    HTTP_DEF(send_timeout_ms, HTTP_DEF_SEND_TIMEOUT_MS);
    HTTP_DEF(linger_ms, HTTP_DEF_LINGER_MS);
    HTTP_DEF(max_conns, HTTP_DEF_MAX_CONNS);
    HTTP_DEF(accept_pause_ms, HTTP_DEF_ACCEPT_PAUSE_MS);
    HTTP_DEF(accept_batch, HTTP_DEF_ACCEPT_BATCH);
    HTTP_DEF(out_high_water, HTTP_DEF_OUT_HIGH_WATER);
#undef HTTP_DEF
    if (l->max_url > HTTP_LIMIT_MAX_HEAD)
        return shk_error(SHK_EINVAL, "http: max_url %zu is over %u", l->max_url,
                         HTTP_LIMIT_MAX_HEAD);
    if (l->max_header_bytes > HTTP_LIMIT_MAX_HEAD)
        return shk_error(SHK_EINVAL, "http: max_header_bytes %zu is over %u",
                         l->max_header_bytes, HTTP_LIMIT_MAX_HEAD);
    if (l->max_headers > 100000)
        return shk_error(SHK_EINVAL, "http: max_headers %u is over 100000", l->max_headers);
    if (l->max_body > ((size_t)1 << 40))
        return shk_error(SHK_EINVAL, "http: max_body %zu is over 1 TiB", l->max_body);
    if (l->accept_pause_ms < 0)
        return shk_error(SHK_EINVAL, "http: accept_pause_ms %d must be positive",
                         l->accept_pause_ms);
    return SHK_OK;
}

void http_srv_log(http_server_t *srv, int level, const char *fmt, ...)
{
    char line[512];
    va_list ap;
    if (!srv->log)
        return;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    srv->log(srv->log_ctx, level, line);
}

const char *http_srv_date(http_server_t *srv)
{
    time_t now = time(NULL);
    if ((long long)now != srv->date_sec) {
        struct tm tm;
        gmtime_r(&now, &tm);
        strftime(srv->date, sizeof srv->date, "Date: %a, %d %b %Y %H:%M:%S GMT\r\n", &tm);
        srv->date_sec = (long long)now;
    }
    return srv->date;
}

/* ---- listening -------------------------------------------------------------------- */

/* Listener events are on exactly when the server may accept. */
static void listeners_update(http_server_t *srv)
{
    int want = !srv->draining && !srv->paused && srv->st.conns < srv->lim.max_conns;
    if (want == srv->listening)
        return;
    for (unsigned i = 0; i < srv->nls; i++) {
        if (!srv->ls[i]->ev)
            continue;
        if (want)
            event_add(srv->ls[i]->ev, NULL);
        else
            event_del(srv->ls[i]->ev);
    }
    srv->listening = want;
}

static void accept_pause(http_server_t *srv, int err)
{
    struct timeval tv = {srv->lim.accept_pause_ms / 1000, (srv->lim.accept_pause_ms % 1000) * 1000};
    srv->paused = 1;
    srv->st.accept_pauses++;
    listeners_update(srv);
    evtimer_add(srv->pause_ev, &tv);
    if (!srv->in_episode) {
        srv->in_episode = 1;
        srv->st.accept_episodes++;
        http_srv_log(srv, SHK_LOG_WARN,
                     "http: accept() failed: %s, with %u connections open; pausing "
                     "accept() for %d ms at a time until it catches up",
                     strerror(err), srv->st.conns, srv->lim.accept_pause_ms);
    }
}

/* Try at once rather than wait for a client: with nobody waiting, accept()
 * still fails while descriptors lack, and EAGAIN ends the episode. */
static void pause_end(evutil_socket_t fd, short what, void *arg)
{
    http_server_t *srv = arg;
    (void)fd;
    (void)what;
    srv->paused = 0;
    listeners_update(srv);
    for (unsigned i = 0; i < srv->nls && srv->listening; i++)
        if (srv->ls[i]->ev)
            accept_cb(srv->ls[i]->fd, EV_READ, srv->ls[i]);
}

static void accept_cb(evutil_socket_t fd, short what, void *arg)
{
    http_listener_t *l = arg;
    http_server_t *srv = l->srv;
    (void)what;
    for (unsigned i = 0; i < srv->lim.accept_batch; i++) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof ss;
        if (srv->st.conns >= srv->lim.max_conns || srv->draining) {
            listeners_update(srv);
            return;
        }
        int cfd = accept4(fd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (cfd < 0) {
            int e = errno;
            if (e == EAGAIN || e == EWOULDBLOCK) {
                srv->in_episode = 0; /* caught up: no client is kept waiting */
                return;
            }
            if (e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM) {
                accept_pause(srv, e);
                return;
            }
            /* accept(2): these are the client's or the network's, not the
             * listener's: take the next one. */
            if (e == EINTR || e == ECONNABORTED || e == EPROTO || e == ENETDOWN ||
                e == ENOPROTOOPT || e == EHOSTDOWN || e == ENONET || e == EHOSTUNREACH ||
                e == EOPNOTSUPP || e == ENETUNREACH || e == EPERM || e == ETIMEDOUT)
                continue;
            http_srv_log(srv, SHK_LOG_ERR, "http: accept() on socket %d failed: %s; "
                         "leaving that socket", l->fd, strerror(e));
            event_free(l->ev);
            l->ev = NULL;
            return;
        }
        srv->st.accepted++;
        http_conn_new(srv, cfd, (struct sockaddr *)&ss, sl); /* on failure it closed cfd */
    }
    srv->st.accept_full++; /* the rest wait for the next wake-up, after other events */
}

http_server_t *http_server_new(struct event_base *base, const http_limits_t *lim,
                               http_handler_t on_request, void *ctx)
{
    http_server_t *srv;
    if (!base || !on_request) {
        shk_error(SHK_EINVAL, "http_server_new: base and on_request are required");
        return NULL;
    }
    srv = calloc(1, sizeof *srv);
    if (!srv) {
        shk_error(SHK_ENOMEM, "http_server_new: out of memory");
        return NULL;
    }
    if (fill_limits(&srv->lim, lim) != SHK_OK) {
        free(srv);
        return NULL;
    }
    srv->base = base;
    srv->on_request = on_request;
    srv->ctx = ctx;
    srv->date_sec = -1;
    srv->pause_ev = evtimer_new(base, pause_end, srv);
    srv->done_ev = event_new(base, -1, 0, done_cb, srv);
    srv->flush_ev = event_new(base, -1, 0, http_conn_flush, srv);
    srv->flush_late = evtimer_new(base, http_conn_flush, srv);
    /* a base with priorities (HTTP_PRIORITIES): the writes wait for the
     * events at hand (http_conn.c, direct output) */
    int npri = event_base_get_npriorities(base);
    if (srv->flush_ev && npri >= HTTP_PRIORITIES)
        srv->flush_defer = event_priority_set(srv->flush_ev, npri - 1) == 0;
    if (!srv->pause_ev || !srv->done_ev || !srv->flush_ev || !srv->flush_late) {
        if (srv->pause_ev)
            event_free(srv->pause_ev);
        if (srv->done_ev)
            event_free(srv->done_ev);
        if (srv->flush_ev)
            event_free(srv->flush_ev);
        if (srv->flush_late)
            event_free(srv->flush_late);
        free(srv);
        shk_error(SHK_ENOMEM, "http_server_new: out of memory for events");
        return NULL;
    }
    uint64_t head = (uint64_t)srv->lim.max_url + srv->lim.max_header_bytes +
                    4ull * srv->lim.max_headers + 1024;
    if (head > UINT32_MAX)
        head = UINT32_MAX;
    if (head > parser_head_max) {
        parser_head_max = (uint32_t)head;
        http_parser_set_max_header_size(parser_head_max);
    }
    return srv;
}

void http_server_set_log(http_server_t *srv, shk_log_handler_t fn, void *ctx)
{
    srv->log = fn;
    srv->log_ctx = ctx;
}

int http_server_listen(http_server_t *srv, int listen_fd)
{
    int acc = 0;
    socklen_t al = sizeof acc;
    http_listener_t **ls;
    if (!srv || listen_fd < 0)
        return shk_error(SHK_EINVAL, "http_server_listen: no server or socket");
    if (srv->draining)
        return shk_error(SHK_EPERM, "http_server_listen: the server is draining");
    if (getsockopt(listen_fd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &al) != 0 || !acc)
        return shk_error(SHK_EINVAL, "http_server_listen: socket %d is not listening",
                         listen_fd);
    int fl = fcntl(listen_fd, F_GETFL);
    if (fl < 0 || fcntl(listen_fd, F_SETFL, fl | O_NONBLOCK) != 0)
        return shk_error(SHK_ESYS, "http_server_listen: fcntl(%d): %s", listen_fd,
                         strerror(errno));
    ls = realloc(srv->ls, (srv->nls + 1) * sizeof *ls);
    if (!ls)
        return shk_error(SHK_ENOMEM, "http_server_listen: out of memory");
    srv->ls = ls;
    http_listener_t *l = calloc(1, sizeof *l);
    if (l) {
        l->fd = listen_fd;
        l->srv = srv;
        l->ev = event_new(srv->base, listen_fd, EV_READ | EV_PERSIST, accept_cb, l);
    }
    if (!l || !l->ev) {
        free(l);
        return shk_error(SHK_ENOMEM, "http_server_listen: out of memory for an event");
    }
    ls[srv->nls++] = l;
    if (srv->listening)
        event_add(l->ev, NULL);
    else
        listeners_update(srv);
    return SHK_OK;
}

/* ---- stopping ---------------------------------------------------------------------- */

static void done_cb(evutil_socket_t fd, short what, void *arg)
{
    http_server_t *srv = arg;
    void (*fn)(void *) = srv->drain_done;
    (void)fd;
    (void)what;
    if (!srv->draining || srv->st.conns != 0 || !fn)
        return;
    srv->drain_done = NULL;
    fn(srv->drain_ctx); /* may free the server: nothing after this */
}

void http_srv_conn_gone(http_server_t *srv)
{
    srv->st.conns--;
    if (srv->freeing)
        return;
    listeners_update(srv);
    if (srv->draining && srv->st.conns == 0)
        event_active(srv->done_ev, EV_TIMEOUT, 1);
}

/* Apply fn to every connection, each held across the call so callbacks to
 * the app that close other connections leave the walk valid. */
static void each_conn(http_server_t *srv, void (*fn)(http_conn_t *c, int arg), int arg)
{
    http_conn_t *c = srv->conns;
    if (c)
        http_conn_hold(c);
    while (c) {
        http_conn_t *n = c->next;
        if (n)
            http_conn_hold(n);
        fn(c, arg);
        http_conn_release(c);
        c = n;
    }
}

static void drain_one(http_conn_t *c, int arg)
{
    (void)arg;
    if (!c->dead)
        http_conn_drain(c);
}

void http_server_drain(http_server_t *srv, void (*done)(void *ctx), void *ctx)
{
    if (!srv || srv->freeing)
        return;
    srv->drain_done = done;
    srv->drain_ctx = ctx;
    if (!srv->draining) {
        srv->draining = 1;
        evtimer_del(srv->pause_ev);
        srv->paused = 0;
        listeners_update(srv);
        each_conn(srv, drain_one, 0);
    }
    if (srv->st.conns == 0)
        event_active(srv->done_ev, EV_TIMEOUT, 1);
}

static void drop_one(http_conn_t *c, int code)
{
    http_conn_drop(c, code);
}

void http_server_free(http_server_t *srv)
{
    if (!srv)
        return;
    srv->draining = 1;
    listeners_update(srv);
    srv->freeing = 1;
    each_conn(srv, drop_one, 1001);
    http_conn_flush_forget(srv); /* the dropped ones go with their last hold */
    for (unsigned i = 0; i < srv->nls; i++) {
        if (srv->ls[i]->ev)
            event_free(srv->ls[i]->ev);
        free(srv->ls[i]);
    }
    free(srv->ls);
    event_free(srv->pause_ev);
    event_free(srv->done_ev);
    event_free(srv->flush_ev);
    event_free(srv->flush_late);
    free(srv);
}

void http_server_stats(const http_server_t *srv, http_stats_t *st)
{
    *st = srv->st;
    st->starved = (unsigned)srv->in_episode;
}
