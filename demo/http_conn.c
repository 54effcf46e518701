/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * http_conn.c: one HTTP connection: its bufferevent, the request parser fed
 * from the input buffer (http_parser, paused at each complete request so
 * pipelined ones wait their turn), the limits checked as bytes arrive
 * (414, 431, 413, 408), keep-alive and its timers, the client leaving, and
 * closing without losing the last reply (output written, then FIN, then
 * input read and discarded for linger_ms, so close() sends no reset); a
 * stream's or WebSocket's output written directly at the end of the loop
 * turn that queued it (http_conn_flush).
 */
#include "http_internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

static void conn_parse(http_conn_t *c);

struct evbuffer *http_conn_output(http_conn_t *c)
{
    return bufferevent_get_output(c->bev);
}

struct evbuffer *http_conn_input(http_conn_t *c)
{
    return bufferevent_get_input(c->bev);
}

void http_conn_set_timer(http_conn_t *c, int ms)
{
    if (ms < 0) {
        evtimer_del(c->timer);
        return;
    }
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(c->timer, &tv);
}

void http_conn_schedule(http_conn_t *c)
{
    event_active(c->resume, EV_TIMEOUT, 1);
}

/* ---- direct output ------------------------------------------------------------
 *
 * A streaming or WebSocket connection whose output is empty leaves EV_WRITE
 * off (direct): output queued for it (a message, a ping, usually from a bus
 * alert) puts it on srv->dirty, and flush_ev, activated, writes it at the
 * end of the same loop turn, everything queued in that turn in one writev.
 * On a base with priorities (HTTP_PRIORITIES) flush_ev has the lowest: it
 * runs at the first turn that has no other event at hand, so a worker kept
 * busy (bus alerts, publishers' requests) gathers several turns' messages
 * per connection into one sendmsg; flush_late, armed when the list starts,
 * bounds that wait to HTTP_FLUSH_MAX_US.
 * Through the bufferevent the same write costs two more system calls, the
 * write event's epoll_ctl when output is queued and another when it has
 * been written (2 per writev together, 11% of a worker's time with 1,000
 * EventSource subscribers on 100 channels), and a wake-up between them.
 * A write error drops the connection (as event_cb does). Anything else
 * returns the connection to the bufferevent's writing (EV_WRITE on):
 * output left after the write (the client reads slowly, and the send
 * timeout applies again), or a state that waits for the output's end
 * (closing, keep-alive); write_cb makes it direct again once its output is
 * empty. Invariant: a direct connection's output is empty or it is dirty. */

static void leave_direct(http_conn_t *c)
{
    c->direct = 0;
    bufferevent_enable(c->bev, EV_WRITE);
}

static void out_cb(struct evbuffer *b, const struct evbuffer_cb_info *info, void *arg)
{
    http_conn_t *c = arg;
    (void)b;
    if (!info->n_added || !c->direct || c->dirty || c->dead)
        return;
    http_conn_hold(c);
    c->dirty = 1;
    c->dirty_next = c->srv->dirty;
    if (!c->srv->dirty && c->srv->flush_defer) {
        struct timeval tv = {0, HTTP_FLUSH_MAX_US};
        evtimer_add(c->srv->flush_late, &tv); /* failing, flush_ev still comes */
    }
    c->srv->dirty = c;
    event_active(c->srv->flush_ev, EV_TIMEOUT, 1);
}

/* One sendmsg of (the first 16 pieces of) the output: MSG_NOSIGNAL, so a
 * client gone meanwhile is an EPIPE here, never a SIGPIPE. */
static void write_direct(http_conn_t *c)
{
    struct evbuffer *out = http_conn_output(c);
    struct evbuffer_iovec v[16];
    struct iovec iov[16];
    int n = evbuffer_peek(out, -1, NULL, v, 16);
    if (n > 16)
        n = 16;
    for (int i = 0; i < n; i++)
        iov[i] = (struct iovec){v[i].iov_base, v[i].iov_len};
    struct msghdr mh = {.msg_iov = iov, .msg_iovlen = (size_t)(n > 0 ? n : 0)};
    ssize_t w = n > 0 ? sendmsg(c->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT) : 0;
    if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
        c->srv->st.dropped++; /* as event_cb on a write error: the stream was cut */
        http_conn_drop(c, 1006);
        return;
    }
    if (w > 0) {
        /* the bufferevent keeps its output's front frozen but while it writes */
        evbuffer_unfreeze(out, 1);
        evbuffer_drain(out, (size_t)w);
        evbuffer_freeze(out, 1);
    }
    if (evbuffer_get_length(out) == 0)
        c->slow_armed = 1; /* as write_cb: the output is empty */
    else
        leave_direct(c);
}

void http_conn_flush(int fd, short what, void *arg)
{
    http_server_t *srv = arg;
    http_conn_t *c = srv->dirty;
    (void)fd;
    (void)what;
    srv->dirty = NULL;
    event_del(srv->flush_ev);   /* the one of the two that did not run */
    event_del(srv->flush_late);
    while (c) {
        http_conn_t *n = c->dirty_next;
        c->dirty = 0;
        if (!c->dead && c->direct) {
            if (c->state == HC_BUSY || c->state == HC_WS)
                write_direct(c);
            else
                leave_direct(c);
        }
        http_conn_release(c);
        c = n;
    }
}

void http_conn_flush_forget(http_server_t *srv)
{
    http_conn_t *c = srv->dirty;
    srv->dirty = NULL;
    event_del(srv->flush_late);
    while (c) {
        http_conn_t *n = c->dirty_next;
        c->dirty = 0;
        http_conn_release(c);
        c = n;
    }
}

static void conn_free(http_conn_t *c)
{
    http_server_t *srv = c->srv;
    if (c->prev)
        c->prev->next = c->next;
    else
        srv->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    if (c->req)
        http_req_free(c->req);
    event_free(c->timer);
    event_free(c->resume);
    evbuffer_remove_cb(http_conn_output(c), out_cb, c);
    bufferevent_free(c->bev); /* closes the socket */
    free(c);
    http_srv_conn_gone(srv);
}

void http_conn_hold(http_conn_t *c)
{
    c->busy++;
}

void http_conn_release(http_conn_t *c)
{
    if (--c->busy == 0 && c->dead)
        conn_free(c);
}

/* Close with nothing to tell the app (no request or WebSocket of its). */
static void conn_close(http_conn_t *c)
{
    c->dead = 1;
    if (!c->busy)
        conn_free(c);
}

void http_conn_drop(http_conn_t *c, int ws_code)
{
    if (c->dead)
        return;
    http_conn_hold(c);
    c->dead = 1;
    if (c->req) {
        http_req_t *r = c->req;
        c->req = NULL;
        if (r->state == HR_READING)
            http_req_free(r);
        else
            http_req_gone(r);
    }
    if (c->ws)
        http_ws_gone(c, ws_code);
    http_conn_release(c);
}

/* After the last output: FIN, then discard input until EOF or linger_ms. */
static void conn_fin(http_conn_t *c)
{
    if (c->peer_eof || shutdown(c->fd, SHUT_WR) != 0) {
        conn_close(c);
        return;
    }
    c->state = HC_LINGER;
    evbuffer_drain(http_conn_input(c), evbuffer_get_length(http_conn_input(c)));
    bufferevent_setwatermark(c->bev, EV_READ, 0, 0);
    bufferevent_enable(c->bev, EV_READ);
    http_conn_set_timer(c, c->srv->lim.linger_ms);
}

void http_conn_close_after_output(http_conn_t *c)
{
    if (c->dead)
        return;
    c->state = HC_CLOSING;
    c->close_after = 1;
    c->wait_flush = 0;
    evtimer_del(c->timer);
    evbuffer_drain(http_conn_input(c), evbuffer_get_length(http_conn_input(c)));
    if (evbuffer_get_length(http_conn_output(c)) == 0)
        conn_fin(c);
    /* else write_cb finishes it; a client that takes nothing meets the
     * send timeout */
}

/* The layer answers the request being read itself, and closes. */
static void conn_refuse(http_conn_t *c, int status, const char *text)
{
    c->srv->st.refused++;
    if (c->req) {
        http_req_free(c->req);
        c->req = NULL;
    }
    http_reply_error(c, status, text);
    http_conn_close_after_output(c);
}

void http_conn_req_done(http_conn_t *c)
{
    c->nreq++;
    if (c->dead)
        return;
    if (c->close_after || c->srv->draining) {
        http_conn_close_after_output(c);
        return;
    }
    c->state = HC_READ;
    http_conn_set_timer(c, c->srv->lim.keepalive_ms);
    if (evbuffer_get_length(http_conn_output(c)) > c->srv->lim.out_high_water)
        c->wait_flush = 1; /* the client reads slowly: no next reply before it took this one */
    else if (evbuffer_get_length(http_conn_input(c)) > 0)
        http_conn_schedule(c);
}

int http_conn_check_slow(http_conn_t *c)
{
    size_t q = evbuffer_get_length(http_conn_output(c));
    int gone;
    if (c->dead)
        return 1;
    if (q <= c->srv->lim.out_high_water || !c->slow_armed)
        return 0;
    c->slow_armed = 0;
    http_conn_hold(c);
    if (c->state == HC_BUSY && c->req && c->req->cbs.on_slow) {
        c->req->cbs.on_slow(c->req, q, c->req->cb_ctx);
    } else if (c->state == HC_WS && c->ws && c->ws->cbs.on_slow) {
        c->ws->cbs.on_slow(c->ws, q, c->ws->cb_ctx);
    } else {
        c->srv->st.dropped++;
        http_conn_drop(c, 1006);
    }
    gone = c->dead;
    http_conn_release(c);
    return gone;
}

/* The app holds c->req while the server drains: ask it to finish (on_drain),
 * or end its stream. */
static void drain_req(http_conn_t *c)
{
    http_req_t *r = c->req;
    if (r && r->cbs.on_drain)
        r->cbs.on_drain(r, r->cb_ctx);
    else if (r && r->state == HR_STREAM)
        http_stream_end(r);
}

void http_conn_drain(http_conn_t *c)
{
    int n = 0;
    switch (c->state) {
    case HC_READ:
        if (c->req) {
            c->close_after = 1; /* being received: answered, then closed */
            return;
        }
        /* Idle, but a request may already wait in the socket: read and
         * answer it rather than drop it. */
        if (evbuffer_get_length(http_conn_input(c)) > 0 ||
            (ioctl(c->fd, FIONREAD, &n) == 0 && n > 0)) {
            c->close_after = 1;
            return;
        }
        /* Accepted, but its first request is still on its way: it is
         * answered if it comes within linger_ms. */
        if (c->nreq == 0) {
            c->close_after = 1;
            http_conn_set_timer(c, c->srv->lim.linger_ms);
            return;
        }
        http_conn_close_after_output(c);
        return;
    case HC_BUSY:
        c->close_after = 1;
        drain_req(c);
        return;
    case HC_WS:
        http_ws_drain(c);
        return;
    default:
        return;
    }
}

/* ---- parsing ------------------------------------------------------------------------- */

static http_conn_t *conn_of(http_parser *p)
{
    return p->data;
}

static int limit_hit(http_conn_t *c, int status, const char *text)
{
    c->err = status;
    c->err_text = text;
    return 1;
}

/* A failed append (no memory) is answered 503. */
static int stored(http_conn_t *c, int rc)
{
    return rc == 0 ? 0 : limit_hit(c, 503, "the server is out of memory");
}

static int on_url(http_parser *p, const char *at, size_t len)
{
    http_conn_t *c = conn_of(p);
    http_req_t *r = c->req;
    if (r->url_len + len > c->srv->lim.max_url)
        return limit_hit(c, 414, "the request target is longer than the server's limit");
    return stored(c, http_req_append(&r->url, &r->url_len, &r->url_cap, at, len));
}

/* Header bytes are stored as "name\0value\0" per line; trailers after a
 * chunked body are counted against the limits but not kept. */
static int header_bytes(http_conn_t *c, http_req_t *r, const char *at, size_t len)
{
    r->hbytes += len;
    if (r->hbytes > c->srv->lim.max_header_bytes)
        return limit_hit(c, 431, "the header fields are longer than the server's limit");
    if (r->headers_done)
        return 0;
    return stored(c, http_req_append(&r->hbuf, &r->hlen, &r->hcap, at, len));
}

static int hbuf_nul(http_req_t *r)
{
    return http_req_append(&r->hbuf, &r->hlen, &r->hcap, "", 1);
}

static int on_header_field(http_parser *p, const char *at, size_t len)
{
    http_conn_t *c = conn_of(p);
    http_req_t *r = c->req;
    if (r->in_value || r->nlines == 0) { /* a new line */
        r->nlines++;
        if (r->nlines > c->srv->lim.max_headers)
            return limit_hit(c, 431, "the request has more header fields than the server's limit");
        if (!r->headers_done) {
            if (r->in_value && hbuf_nul(r) != 0) /* ends the previous value */
                return stored(c, -1);
            if (r->nhdr == r->hdr_cap) {
                unsigned ncap = r->hdr_cap ? r->hdr_cap * 2 : 16;
                void *n = realloc(r->hdr, ncap * sizeof *r->hdr);
                if (!n)
                    return stored(c, -1);
                r->hdr = n;
                r->hdr_cap = ncap;
            }
            r->hdr[r->nhdr].name = (uint32_t)r->hlen;
            r->hdr[r->nhdr].value = UINT32_MAX;
            r->nhdr++;
        }
        r->in_value = 0;
    }
    return header_bytes(c, r, at, len);
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
    http_conn_t *c = conn_of(p);
    http_req_t *r = c->req;
    if (!r->in_value) {
        r->in_value = 1;
        if (!r->headers_done) {
            if (hbuf_nul(r) != 0) /* ends the name */
                return stored(c, -1);
            r->hdr[r->nhdr - 1].value = (uint32_t)r->hlen;
        }
    }
    return header_bytes(c, r, at, len);
}

/* Close the last header line and strip trailing blanks from values. */
static int headers_close(http_req_t *r)
{
    if (r->nhdr == 0)
        return 0;
    if (!r->in_value && hbuf_nul(r) != 0)
        return -1;
    if (r->hdr[r->nhdr - 1].value == UINT32_MAX)
        r->hdr[r->nhdr - 1].value = (uint32_t)r->hlen;
    if (hbuf_nul(r) != 0)
        return -1;
    for (unsigned i = 0; i < r->nhdr; i++) {
        char *v = r->hbuf + r->hdr[i].value;
        size_t n = strlen(v);
        while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t'))
            v[--n] = '\0';
    }
    return 0;
}

static int on_headers_complete(http_parser *p)
{
    http_conn_t *c = conn_of(p);
    http_req_t *r = c->req;
    const http_limits_t *lim = &c->srv->lim;
    if (headers_close(r) != 0)
        return limit_hit(c, 503, "the server is out of memory"), -1;
    if (r->url) { /* a fragment is no part of a request target: drop any sent */
        char *hash = strchr(r->url, '#');
        if (hash) {
            *hash = '\0';
            r->url_len = (size_t)(hash - r->url);
        }
    }
    r->headers_done = 1;
    r->in_value = 1; /* a trailer field starts a new line */
    r->method = p->method;
    r->head = p->method == HTTP_HEAD;
    if (p->http_major != 1) {
        limit_hit(c, 505, "only HTTP/1.0 and HTTP/1.1 are served");
        return -1;
    }
    r->version = p->http_minor == 0 ? 10 : 11;
    unsigned hosts = 0;
    for (unsigned i = 0; i < r->nhdr; i++)
        if (strcasecmp(r->hbuf + r->hdr[i].name, "host") == 0)
            hosts++;
    if (hosts > 1 || (r->version == 11 && hosts == 0)) {
        limit_hit(c, 400, hosts ? "more than one Host header" : "an HTTP/1.1 request needs a Host header");
        return -1;
    }
    int has_body = (p->flags & F_CHUNKED) || (p->content_length > 0 && p->content_length != UINT64_MAX);
    if (!(p->flags & F_CHUNKED) && p->content_length != UINT64_MAX &&
        p->content_length > lim->max_body) {
        limit_hit(c, 413, "the request body is longer than the server's limit");
        return -1;
    }
    const char *expect = http_req_header(r, "expect");
    if (expect) {
        if (strcasecmp(expect, "100-continue") != 0) {
            limit_hit(c, 417, "only \"Expect: 100-continue\" is understood");
            return -1;
        }
        if (has_body && r->version == 11 && !p->upgrade)
            evbuffer_add(http_conn_output(c), "HTTP/1.1 100 Continue\r\n\r\n", 25);
    }
    if (has_body && !p->upgrade)
        http_conn_set_timer(c, lim->body_timeout_ms);
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
    http_conn_t *c = conn_of(p);
    http_req_t *r = c->req;
    if (r->body_len + len > c->srv->lim.max_body)
        return limit_hit(c, 413, "the request body is longer than the server's limit");
    return stored(c, http_req_append(&r->body, &r->body_len, &r->body_cap, at, len));
}

static int on_message_complete(http_parser *p)
{
    http_conn_t *c = conn_of(p);
    http_req_t *r = c->req;
    r->keepalive = http_should_keep_alive(p) ? 1 : 0;
    r->upgrade = p->upgrade;
    http_parser_pause(p, 1);
    return 0;
}

static const http_parser_settings parser_settings = {
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

/* Feed the input to the parser: 1 a request is complete, 0 more is needed,
 * -1 refused (the reply is decided). Consumed bytes leave the buffer. */
static int conn_feed(http_conn_t *c)
{
    struct evbuffer *in = http_conn_input(c);
    int body_before = c->req->headers_done;
    size_t body_len = c->req->body_len;
    while (evbuffer_get_length(in) > 0) {
        struct evbuffer_iovec v[8];
        int n = evbuffer_peek(in, -1, NULL, v, 8);
        size_t used = 0;
        int verdict = 0;
        if (n > 8)
            n = 8;
        for (int i = 0; i < n && !verdict; i++) {
            size_t k = http_parser_execute(&c->parser, &parser_settings, v[i].iov_base,
                                           v[i].iov_len);
            enum http_errno e = HTTP_PARSER_ERRNO(&c->parser);
            used += k;
            if (e == HPE_PAUSED)
                verdict = 1;
            else if (e != HPE_OK)
                verdict = -1;
            else if (c->parser.upgrade)
                verdict = 1;
            else if (k != v[i].iov_len)
                verdict = -1;
        }
        evbuffer_drain(in, used);
        if (verdict < 0) {
            if (!c->err) {
                enum http_errno e = HTTP_PARSER_ERRNO(&c->parser);
                if (e == HPE_HEADER_OVERFLOW)
                    limit_hit(c, 431, "the request head is longer than the server's limit");
                else
                    limit_hit(c, 400, http_errno_description(e));
            }
            return -1;
        }
        if (verdict > 0)
            return 1;
    }
    /* A body in progress: its silence limit restarts with each read. */
    if (body_before && c->req->body_len > body_len)
        http_conn_set_timer(c, c->srv->lim.body_timeout_ms);
    return 0;
}

static void conn_dispatch(http_conn_t *c)
{
    http_req_t *r = c->req;
    evtimer_del(c->timer);
    c->state = HC_BUSY;
    r->state = HR_APP;
    if (!r->keepalive || r->upgrade)
        c->close_after = 1;
    c->srv->st.requests++;
    c->srv->on_request(r, c->srv->ctx);
    /* read during a drain (it was on its way): held or streaming, it is
     * asked to finish at once, as those held when the drain began were */
    if (c->srv->draining && !c->dead && c->state == HC_BUSY && c->req == r)
        drain_req(c);
}

static void conn_parse(http_conn_t *c)
{
    struct evbuffer *in = http_conn_input(c);
    unsigned served = 0;
    while (!c->dead && c->state == HC_READ && !c->wait_flush && evbuffer_get_length(in) > 0) {
        if (served == HTTP_PIPELINE_BATCH) {
            http_conn_schedule(c); /* the others' turn; go on from the loop */
            return;
        }
        if (!c->req) {
            c->req = http_req_new(c);
            if (!c->req) {
                conn_close(c);
                return;
            }
            http_parser_init(&c->parser, HTTP_REQUEST);
            c->parser.data = c;
            c->err = 0;
            if (c->nreq > 0) /* the first request's deadline runs from accept */
                http_conn_set_timer(c, c->srv->lim.header_timeout_ms);
        }
        int rc = conn_feed(c);
        if (rc == 0)
            return;
        if (rc < 0) {
            conn_refuse(c, c->err, c->err_text);
            return;
        }
        served++;
        conn_dispatch(c);
    }
}

/* ---- events ------------------------------------------------------------------------- */

static void read_cb(struct bufferevent *bev, void *arg)
{
    http_conn_t *c = arg;
    (void)bev;
    http_conn_hold(c);
    switch (c->state) {
    case HC_READ:
        conn_parse(c);
        break;
    case HC_WS:
        http_ws_read(c);
        break;
    case HC_CLOSING:
    case HC_LINGER:
        evbuffer_drain(http_conn_input(c), evbuffer_get_length(http_conn_input(c)));
        break;
    default:
        break; /* HC_BUSY: input waits, bounded by the read watermark */
    }
    http_conn_release(c);
}

static void write_cb(struct bufferevent *bev, void *arg)
{
    http_conn_t *c = arg;
    (void)bev;
    http_conn_hold(c);
    c->slow_armed = 1; /* the output is empty */
    if (c->state == HC_CLOSING) {
        conn_fin(c);
    } else if (c->state == HC_READ && c->wait_flush) {
        c->wait_flush = 0;
        conn_parse(c);
    } else if ((c->state == HC_BUSY || c->state == HC_WS) && !c->dead && !c->direct &&
               evbuffer_get_length(http_conn_output(c)) == 0) {
        c->direct = 1;
        bufferevent_disable(c->bev, EV_WRITE);
    }
    http_conn_release(c);
}

static void event_cb(struct bufferevent *bev, short what, void *arg)
{
    http_conn_t *c = arg;
    (void)bev;
    http_conn_hold(c);
    if (what & BEV_EVENT_EOF) {
        c->peer_eof = 1;
        switch (c->state) {
        case HC_READ: /* a partial request has nobody to answer to; a reply may be on its way */
            if (c->req) {
                http_req_free(c->req);
                c->req = NULL;
            }
            http_conn_close_after_output(c);
            break;
        case HC_CLOSING:
            break; /* write_cb ends it */
        case HC_LINGER:
            conn_close(c);
            break;
        default: /* HC_BUSY, HC_WS: the client left */
            http_conn_drop(c, 1006);
            break;
        }
    } else if (what & (BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT)) {
        if (c->state == HC_BUSY || c->state == HC_WS ||
            evbuffer_get_length(http_conn_output(c)) > 0)
            c->srv->st.dropped++; /* a reply or a stream was cut */
        http_conn_drop(c, 1006);
    }
    http_conn_release(c);
}

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
    http_conn_t *c = arg;
    (void)fd;
    (void)what;
    http_conn_hold(c);
    switch (c->state) {
    case HC_READ:
        if (c->req)
            conn_refuse(c, 408, c->req->headers_done ? "the request body came too slowly"
                                                     : "the request head came too slowly");
        else
            conn_close(c); /* idle: nothing was asked */
        break;
    case HC_LINGER:
        conn_close(c);
        break;
    case HC_WS:
        http_ws_timeout(c);
        break;
    default:
        break;
    }
    http_conn_release(c);
}

static void resume_cb(evutil_socket_t fd, short what, void *arg)
{
    http_conn_t *c = arg;
    (void)fd;
    (void)what;
    http_conn_hold(c);
    if (c->state == HC_READ)
        conn_parse(c);
    else if (c->state == HC_WS)
        http_ws_read(c);
    http_conn_release(c);
}

http_conn_t *http_conn_new(http_server_t *srv, int fd, const struct sockaddr *sa, socklen_t salen)
{
    http_conn_t *c = calloc(1, sizeof *c);
    int one = 1;
    if (!c) {
        close(fd);
        return NULL;
    }
    c->srv = srv;
    c->fd = fd;
    if (salen > sizeof c->peer)
        salen = sizeof c->peer;
    memcpy(&c->peer, sa, salen);
    c->peerlen = salen;
    if (sa->sa_family == AF_INET) {
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, c->peer_text,
                  sizeof c->peer_text);
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    } else if (sa->sa_family == AF_INET6) {
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, c->peer_text,
                  sizeof c->peer_text);
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    c->bev = bufferevent_socket_new(srv->base, fd, BEV_OPT_CLOSE_ON_FREE);
    c->timer = evtimer_new(srv->base, timer_cb, c);
    c->resume = event_new(srv->base, -1, 0, resume_cb, c);
    if (!c->bev || !c->timer || !c->resume ||
        !evbuffer_add_cb(bufferevent_get_output(c->bev), out_cb, c)) {
        if (c->bev)
            bufferevent_free(c->bev);
        else
            close(fd);
        if (c->timer)
            event_free(c->timer);
        if (c->resume)
            event_free(c->resume);
        free(c);
        return NULL;
    }
    bufferevent_setcb(c->bev, read_cb, write_cb, event_cb, c);
    bufferevent_setwatermark(c->bev, EV_READ, 0, HTTP_READ_HWM);
    if (srv->lim.send_timeout_ms > 0) {
        struct timeval tv = {srv->lim.send_timeout_ms / 1000,
                             (srv->lim.send_timeout_ms % 1000) * 1000};
        bufferevent_set_timeouts(c->bev, NULL, &tv);
    }
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    c->state = HC_READ;
    c->slow_armed = 1;
    c->next = srv->conns;
    if (c->next)
        c->next->prev = c;
    srv->conns = c;
    srv->st.conns++;
    http_conn_set_timer(c, srv->lim.header_timeout_ms);
    return c;
}
