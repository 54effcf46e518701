/*
 * pubsub_loop.c: one client process. Its share of the subscribers and
 * publishers (subscriber i and publisher p go to process i mod nproc and
 * p mod nproc), non-blocking sockets on one level-triggered epoll, one
 * large read buffer for all of them (every parser here is incremental, so
 * nothing is kept per connection but parser state), and the phases the
 * parent sets in shared memory: connect, warm-up, publishing, drain, done.
 *
 * Publishers: keep-alive POSTs, up to --pipeline in flight per connection,
 * each channel published by one connection in sequence order; the request
 * head of each channel is built once, the body written straight into the
 * output buffer. A connection lost with requests in flight sends them
 * again, in order, on the next one.
 */
#include "pubsub.h"

#include "shk_atomic_internal.h"

#include <errno.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#define MAX_RECONNECTS 20
#define RBUF_SIZE (256u * 1024)
#define OUT_MAX (64u << 20)
#define WARM_EVERY_NS 200000000ull

static ps_worker_t *cur; /* the process's one worker, for http_parser's callbacks */
static char *padding;    /* size - PS_HDR_LEN bytes of 'x' */

uint64_t ps_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void ps_worker_note(ps_worker_t *w, const char *fmt, ...)
{
    if (w->errors_printed >= 20)
        return;
    if (++w->errors_printed == 20) {
        fprintf(stderr, "pubsub-client[%u]: (further errors counted, not printed)\n", w->id);
        return;
    }
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "pubsub-client[%u]: %s\n", w->id, msg);
}

void ps_sub_error(ps_worker_t *w, ps_sub_t *s, const char *fmt, ...)
{
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    w->sub_errors++;
    SHK_WRITE_ONCE(w->slot->errors, w->sub_errors + w->pub_errors);
    ps_worker_note(w, "subscriber %u (%s%u, %s): %s", s->idx, ps_opt.ch_prefix, s->ch,
                   ps_mode_name(ps_opt.mode), msg);
}

static void pub_error(ps_worker_t *w, ps_pub_t *p, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void pub_error(ps_worker_t *w, ps_pub_t *p, const char *fmt, ...)
{
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    w->pub_errors++;
    p->errors++;
    SHK_WRITE_ONCE(w->slot->errors, w->sub_errors + w->pub_errors);
    ps_worker_note(w, "publisher %u: %s", p->idx, msg);
}

/* ---- connections ------------------------------------------------------------------------ */

static int set_events(ps_worker_t *w, ps_conn_t *c, int out)
{
    struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP | (out ? EPOLLOUT : 0), .data.ptr = c};
    if (epoll_ctl(w->ep, EPOLL_CTL_MOD, c->fd, &ev) < 0)
        return -1;
    c->want_out = (uint8_t)out;
    return 0;
}

/* Room for len more bytes at the end of the output buffer. */
static char *out_reserve(ps_conn_t *c, size_t len)
{
    if (c->out_off && c->out_off == c->out_len)
        c->out_off = c->out_len = 0;
    if (c->out_len + len > c->out_cap && c->out_off) {
        memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
        c->out_len -= c->out_off;
        c->out_off = 0;
    }
    if (c->out_len + len > c->out_cap) {
        size_t cap = c->out_cap ? c->out_cap : 4096;
        while (cap < c->out_len + len)
            cap *= 2;
        if (cap > OUT_MAX)
            return NULL;
        char *n = realloc(c->out, cap);
        if (!n)
            return NULL;
        c->out = n;
        c->out_cap = cap;
    }
    char *p = c->out + c->out_len;
    c->out_len += len;
    return p;
}

int ps_conn_write(ps_worker_t *w, ps_conn_t *c, const void *data, size_t len)
{
    (void)w;
    char *p = out_reserve(c, len);
    if (!p)
        return -1;
    memcpy(p, data, len);
    return 0;
}

int ps_conn_flush(ps_worker_t *w, ps_conn_t *c)
{
    if (c->state != CS_OPEN)
        return 0;
    while (c->out_off < c->out_len) {
        ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return c->want_out ? 0 : set_events(w, c, 1);
            return -1;
        }
        c->out_off += (size_t)n;
    }
    c->out_off = c->out_len = 0;
    return c->want_out ? set_events(w, c, 0) : 0;
}

static int conn_open(ps_worker_t *w, ps_conn_t *c)
{
    const ps_url_t *u = c->url;
    int fd = socket(u->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, (const struct sockaddr *)&u->addr, u->addrlen) < 0 && errno != EINPROGRESS) {
        close(fd);
        return -1;
    }
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP, .data.ptr = c};
    if (epoll_ctl(w->ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
        close(fd);
        return -1;
    }
    c->fd = fd;
    c->want_out = 1;
    c->state = CS_CONNECTING;
    c->closing = 0;
    http_parser_init(&c->hp, HTTP_RESPONSE);
    c->hp.data = c;
    return 0;
}

static void conn_close(ps_worker_t *w, ps_conn_t *c)
{
    if (c->fd >= 0) {
        epoll_ctl(w->ep, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
    }
    c->fd = -1;
    c->state = CS_IDLE;
    c->out_off = c->out_len = 0;
}

/* ---- subscribers ------------------------------------------------------------------------ */

static int sub_start(ps_worker_t *w, ps_sub_t *s)
{
    ps_sub_reset(s);
    if (conn_open(w, &s->c) < 0) {
        ps_sub_error(w, s, "connect: %s", strerror(errno));
        return -1;
    }
    return ps_sub_request(w, s);
}

/* A count the parent polls to end the warm-up early; nothing is published with it. */
static void sub_dead(ps_worker_t *w, ps_sub_t *s)
{
    if (s->c.state != CS_DEAD)
        SHK_ADD_SOLE(w->slot->dead_subs, 1);
    s->c.state = CS_DEAD;
}

static void pub_dead(ps_worker_t *w, ps_pub_t *p)
{
    if (p->c.state != CS_DEAD)
        SHK_ADD_SOLE(w->slot->dead_pubs, 1);
    p->c.state = CS_DEAD;
    p->stopped = 1;
}

/* Drops the subscriber's connection and, unless the run is over, opens another. */
static void sub_restart(ps_worker_t *w, ps_sub_t *s, int quiet)
{
    ps_ws_free(s);
    conn_close(w, &s->c);
    if (w->phase >= PH_DONE)
        return;
    if (!quiet)
        w->reconnects++;
    if (++s->c.reconnects > MAX_RECONNECTS && !quiet) {
        ps_sub_error(w, s, "gave up after %d reconnections", MAX_RECONNECTS);
        sub_dead(w, s);
        return;
    }
    if (sub_start(w, s) < 0)
        sub_dead(w, s);
}

/* ---- publishers ------------------------------------------------------------------------- */

static uint32_t fifo_cap(const ps_pub_t *p)
{
    return ps_opt.pipeline + p->nchans;
}

/* Writes the publish request of channel index k, sequence seq. */
static int pub_send(ps_worker_t *w, ps_pub_t *p, uint32_t k, uint32_t seq)
{
    size_t hl = p->head_len[k];
    char *o = out_reserve(&p->c, hl + ps_opt.size);
    if (!o) {
        pub_error(w, p, "output buffer full");
        return -1;
    }
    memcpy(o, p->heads[k], hl);
    ps_msg_header(o + hl, p->chans[k], seq, ps_now_ns());
    memcpy(o + hl + PS_HDR_LEN, padding, ps_opt.size - PS_HDR_LEN);
    uint32_t cap = fifo_cap(p);
    p->fifo[(p->fifo_head + p->inflight) % cap] = (ps_pubfifo_t){k, seq};
    p->inflight++;
    if (seq)
        p->sent++;
    return 0;
}

/* Sends what the phase allows: a full pipeline, up to the rate, until the end. */
static void pub_fill(ps_worker_t *w, ps_pub_t *p, uint64_t now)
{
    if (w->phase != PH_RUN || p->stopped || p->c.state == CS_DEAD)
        return;
    uint64_t start = SHK_READ_ONCE(ps_sh->start_ns), end = SHK_READ_ONCE(ps_sh->end_ns);
    int wrote = 0;
    while (p->inflight < ps_opt.pipeline) {
        if (ps_opt.duration_s > 0 && now >= end) {
            p->stopped = 1;
            break;
        }
        uint32_t k = p->next, tries = 0;
        if (ps_opt.messages) {
            while (p->seq[k] >= ps_opt.messages && tries < p->nchans) {
                k = (k + 1) % p->nchans;
                tries++;
            }
            if (tries == p->nchans) {
                p->stopped = 1;
                break;
            }
        }
        if (ps_opt.rate > 0) {
            double allowed = (double)(now - start) * 1e-9 * ps_opt.rate * p->nchans /
                             ps_opt.channels;
            if ((double)p->sent >= allowed)
                break;
        }
        if (pub_send(w, p, k, ++p->seq[k]) < 0) {
            p->stopped = 1;
            break;
        }
        p->next = (k + 1) % p->nchans;
        wrote = 1;
    }
    if (wrote && ps_conn_flush(w, &p->c) < 0)
        pub_error(w, p, "send: %s", strerror(errno));
}

static void pub_warm(ps_worker_t *w, ps_pub_t *p)
{
    if (p->inflight || p->c.state != CS_OPEN)
        return;
    for (uint32_t k = 0; k < p->nchans; k++)
        if (pub_send(w, p, k, 0) < 0)
            return;
    if (ps_conn_flush(w, &p->c) < 0)
        pub_error(w, p, "send: %s", strerror(errno));
}

static int pub_on_headers(http_parser *hp)
{
    ps_pub_t *p = (ps_pub_t *)hp->data;
    p->status = hp->status_code;
    return 0;
}

static int pub_on_complete(http_parser *hp)
{
    ps_pub_t *p = (ps_pub_t *)hp->data;
    ps_worker_t *w = cur;
    if (!p->inflight) {
        pub_error(w, p, "a response to no request (status %d)", p->status);
        return -1;
    }
    uint32_t cap = fifo_cap(p);
    ps_pubfifo_t e = p->fifo[p->fifo_head];
    p->fifo_head = (p->fifo_head + 1) % cap;
    p->inflight--;
    if (p->status >= 200 && p->status < 300) {
        if (e.seq)
            p->ok[e.k]++;
    } else {
        pub_error(w, p, "publishing %s%u seq %u: status %d", ps_opt.ch_prefix, p->chans[e.k],
                  e.seq, p->status);
    }
    if (e.seq)
        SHK_WRITE_ONCE(w->slot->last_ack_ns, ps_now_ns());
    if (!http_should_keep_alive(hp))
        p->c.closing = 1;
    else
        pub_fill(w, p, ps_now_ns());
    return 0;
}

static const http_parser_settings pub_settings = {
    .on_headers_complete = pub_on_headers,
    .on_message_complete = pub_on_complete,
};

/* A new connection for a publisher; what was in flight is sent again, in order. */
static void pub_restart(ps_worker_t *w, ps_pub_t *p, int clean)
{
    conn_close(w, &p->c);
    if (!clean && w->phase < PH_DONE)
        pub_error(w, p, "connection lost with %u requests in flight", p->inflight);
    if (w->phase >= PH_DONE)
        return;
    w->reconnects++;
    if (++p->c.reconnects > MAX_RECONNECTS) {
        pub_error(w, p, "gave up after %d reconnections", MAX_RECONNECTS);
        pub_dead(w, p);
        return;
    }
    if (conn_open(w, &p->c) < 0) {
        pub_error(w, p, "connect: %s", strerror(errno));
        pub_dead(w, p);
        return;
    }
    uint32_t n = p->inflight, cap = fifo_cap(p), head = p->fifo_head;
    p->inflight = 0;
    for (uint32_t i = 0; i < n; i++) {
        ps_pubfifo_t e = p->fifo[(head + i) % cap];
        if (e.seq)
            p->sent--; /* pub_send counts it again */
        if (pub_send(w, p, e.k, e.seq) < 0)
            return;
    }
}

/* ---- events ----------------------------------------------------------------------------- */

static void on_connected(ps_worker_t *w, ps_conn_t *c)
{
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        err = errno;
    if (err) {
        errno = err;
        if (c->kind == K_SUB) {
            ps_sub_error(w, (ps_sub_t *)c, "connect: %s", strerror(err));
            sub_restart(w, (ps_sub_t *)c, 0);
        } else {
            pub_error(w, (ps_pub_t *)c, "connect: %s", strerror(err));
            pub_restart(w, (ps_pub_t *)c, 1);
        }
        return;
    }
    c->state = CS_OPEN;
    if (c->kind == K_SUB && ps_opt.mode == PS_LONGPOLL)
        ((ps_sub_t *)c)->up = 1;
}

static void on_sub_readable(ps_worker_t *w, ps_sub_t *s)
{
    ssize_t n = recv(s->c.fd, w->rbuf, w->rbuf_cap, 0);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0) {
        int rc = n == 0 ? ps_sub_eof(w, s) : -1;
        if (rc < 0 && w->phase < PH_DONE)
            ps_sub_error(w, s, "%s", n == 0 ? "the server closed the connection"
                                            : strerror(errno));
        sub_restart(w, s, rc == 0);
        return;
    }
    s->now = ps_now_ns();
    int rc = ps_sub_input(w, s, w->rbuf, (size_t)n);
    if (rc != 0) {
        sub_restart(w, s, rc > 0);
        return;
    }
    if (s->c.out_len > s->c.out_off && ps_conn_flush(w, &s->c) < 0) {
        ps_sub_error(w, s, "send: %s", strerror(errno));
        sub_restart(w, s, 0);
    }
}

static void on_pub_readable(ps_worker_t *w, ps_pub_t *p)
{
    ssize_t n = recv(p->c.fd, w->rbuf, w->rbuf_cap, 0);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0) {
        pub_restart(w, p, n == 0 && (p->c.closing || p->inflight == 0));
        return;
    }
    size_t done = http_parser_execute(&p->c.hp, &pub_settings, w->rbuf, (size_t)n);
    if (HTTP_PARSER_ERRNO(&p->c.hp) != HPE_OK || done != (size_t)n) {
        enum http_errno e = HTTP_PARSER_ERRNO(&p->c.hp);
        if (e != HPE_CB_message_complete)
            pub_error(w, p, "bad response: %s", http_errno_name(e));
        pub_restart(w, p, 0);
        return;
    }
    if (ps_conn_flush(w, &p->c) < 0) {
        pub_error(w, p, "send: %s", strerror(errno));
        pub_restart(w, p, 0);
    }
}

static void on_event(ps_worker_t *w, struct epoll_event *ev)
{
    ps_conn_t *c = ev->data.ptr;
    if (c->fd < 0)
        return;
    if (c->state == CS_CONNECTING && (ev->events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) {
        on_connected(w, c);
        if (c->state != CS_OPEN)
            return;
    }
    if (ev->events & EPOLLOUT) {
        if (ps_conn_flush(w, c) < 0) {
            if (c->kind == K_SUB) {
                ps_sub_error(w, (ps_sub_t *)c, "send: %s", strerror(errno));
                sub_restart(w, (ps_sub_t *)c, 0);
            } else {
                pub_restart(w, (ps_pub_t *)c, 0);
            }
            return;
        }
    }
    if (ev->events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
        if (c->kind == K_SUB)
            on_sub_readable(w, (ps_sub_t *)c);
        else
            on_pub_readable(w, (ps_pub_t *)c);
    }
}

/* ---- set-up ----------------------------------------------------------------------------- */

static int build_pub(ps_worker_t *w, ps_pub_t *p, uint32_t idx)
{
    uint32_t np = ps_opt.publishers, nch = (ps_opt.channels - idx + np - 1) / np;
    *p = (ps_pub_t){.idx = idx, .nchans = nch};
    p->c = (ps_conn_t){.fd = -1, .kind = K_PUB, .url = &ps_opt.pub};
    p->chans = calloc(nch, sizeof *p->chans);
    p->seq = calloc(nch, sizeof *p->seq);
    p->ok = calloc(nch, sizeof *p->ok);
    p->heads = calloc(nch, sizeof *p->heads);
    p->head_len = calloc(nch, sizeof *p->head_len);
    p->fifo = calloc(fifo_cap(p), sizeof *p->fifo);
    if (!p->chans || !p->seq || !p->ok || !p->heads || !p->head_len || !p->fifo)
        return -1;
    for (uint32_t k = 0; k < nch; k++) {
        char path[1100], head[1400];
        p->chans[k] = idx + k * np;
        if (ps_url_path(&ps_opt.pub, p->chans[k], path, sizeof path) < 0)
            return -1;
        int n = snprintf(head, sizeof head,
                         "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: text/plain\r\n"
                         "Content-Length: %u\r\n\r\n",
                         path, ps_opt.pub.host, ps_opt.size);
        if (n < 0 || (size_t)n >= sizeof head || !(p->heads[k] = strdup(head)))
            return -1;
        p->head_len[k] = (size_t)n;
    }
    /* Room for a full pipeline plus one warm-up per channel. */
    p->c.out_cap = (size_t)fifo_cap(p) * (1400 + ps_opt.size) + 4096;
    p->c.out = malloc(p->c.out_cap);
    (void)w;
    return p->c.out ? 0 : -1;
}

static int setup(ps_worker_t *w, uint32_t id)
{
    uint32_t nproc = ps_sh->nproc;
    *w = (ps_worker_t){.id = id, .slot = &ps_sh->slots[id], .phase = PH_CONNECT};
    w->ep = epoll_create1(EPOLL_CLOEXEC);
    w->rbuf_cap = RBUF_SIZE;
    w->rbuf = malloc(w->rbuf_cap);
    padding = malloc(ps_opt.size);
    if (w->ep < 0 || !w->rbuf || !padding)
        return -1;
    memset(padding, 'x', ps_opt.size);
    w->nsubs = ps_opt.subscribers > id ? (ps_opt.subscribers - id + nproc - 1) / nproc : 0;
    w->npubs = ps_opt.publishers > id ? (ps_opt.publishers - id + nproc - 1) / nproc : 0;
    w->subs = calloc(w->nsubs ? w->nsubs : 1, sizeof *w->subs);
    w->pubs = calloc(w->npubs ? w->npubs : 1, sizeof *w->pubs);
    uint64_t *wins = calloc((size_t)(w->nsubs ? w->nsubs : 1) * (PS_WIN_BITS / 64), 8);
    if (!w->subs || !w->pubs || !wins)
        return -1;
    for (uint32_t i = 0; i < w->nsubs; i++) {
        ps_sub_t *s = &w->subs[i];
        s->idx = id + i * nproc;
        s->ch = s->idx % ps_opt.channels;
        s->c = (ps_conn_t){.fd = -1, .kind = K_SUB, .url = &ps_opt.sub};
        ps_acct_init(&s->acct, wins + (size_t)i * (PS_WIN_BITS / 64));
    }
    for (uint32_t i = 0; i < w->npubs; i++)
        if (build_pub(w, &w->pubs[i], id + i * nproc) < 0)
            return -1;
    return 0;
}

/* ---- the loop --------------------------------------------------------------------------- */

static void finish(ps_worker_t *w)
{
    ps_result_t *r = &w->slot->res;
    memset(r, 0, sizeof *r);
    for (uint32_t i = 0; i < w->npubs; i++) {
        ps_pub_t *p = &w->pubs[i];
        for (uint32_t k = 0; k < p->nchans; k++)
            r->published += p->ok[k];
        r->pub_sent += p->sent;
        for (uint32_t j = 0; j < p->inflight; j++)
            if (p->fifo[(p->fifo_head + j) % fifo_cap(p)].seq)
                r->unanswered++;
    }
    for (uint32_t i = 0; i < w->nsubs; i++) {
        ps_acct_t *a = &w->subs[i].acct;
        uint64_t ok = SHK_READ_ONCE(ps_sh->pub_ok[w->subs[i].ch]), exp = ok;
        if (a->base > 1)
            exp = ok >= a->base ? ok - a->base + 1 : 0;
        r->expected += exp;
        r->got += a->got;
        r->delivered += a->delivered;
        r->dup += a->dup;
        r->reord += a->reord;
        r->stale += a->stale;
        if (a->got < exp)
            r->lost += exp - a->got;
        else
            r->extra += a->got - exp;
    }
    r->pub_errors = w->pub_errors;
    r->sub_errors = w->sub_errors;
    r->reconnects = w->reconnects;
    r->lat = w->lat;
}

static void publish_counts(ps_worker_t *w)
{
    for (uint32_t i = 0; i < w->npubs; i++) {
        ps_pub_t *p = &w->pubs[i];
        for (uint32_t k = 0; k < p->nchans; k++)
            SHK_WRITE_ONCE(ps_sh->pub_ok[p->chans[k]], p->ok[k]);
    }
    /* The parent (and through its phase DONE, every process) reads pub_ok
     * after an acquire of pub_done: release orders the writes above first. */
    SHK_STORE_RELEASE(w->slot->pub_done, 1);
}

int ps_worker_run(uint32_t id)
{
    static ps_worker_t worker;
    ps_worker_t *w = &worker;
    cur = w;
    if (setup(w, id) < 0) {
        fprintf(stderr, "pubsub-client[%u]: out of memory or descriptors in set-up\n", id);
        return 2;
    }
    for (uint32_t i = 0; i < w->npubs; i++)
        if (conn_open(w, &w->pubs[i].c) < 0) {
            pub_error(w, &w->pubs[i], "connect: %s", strerror(errno));
            pub_dead(w, &w->pubs[i]);
        }
    for (uint32_t i = 0; i < w->nsubs; i++)
        if (sub_start(w, &w->subs[i]) < 0)
            sub_dead(w, &w->subs[i]);

    struct epoll_event evs[1024];
    int ready = 0, pub_done = 0;
    uint64_t next_warm = 0;
    for (;;) {
        /* Pairs with the parent's release of each phase (and of start_ns/end_ns before RUN). */
        int ph = SHK_LOAD_ACQUIRE(ps_sh->phase);
        if (ph != w->phase) {
            w->phase = ph;
            if (ph == PH_RUN)
                for (uint32_t i = 0; i < w->npubs; i++)
                    pub_fill(w, &w->pubs[i], ps_now_ns());
        }
        if (ph >= PH_DONE)
            break;
        int timeout = ph == PH_RUN && (ps_opt.rate > 0 || ps_opt.duration_s > 0) ? 1 : 5;
        int n = epoll_wait(w->ep, evs, (int)(sizeof evs / sizeof evs[0]), timeout);
        if (n < 0 && errno != EINTR) {
            fprintf(stderr, "pubsub-client[%u]: epoll_wait: %s\n", id, strerror(errno));
            return 2;
        }
        for (int i = 0; i < n; i++)
            on_event(w, &evs[i]);
        /* Connections that closed cleanly after their last answer. */
        for (uint32_t i = 0; i < w->npubs; i++)
            if (w->pubs[i].c.closing && w->pubs[i].c.state == CS_OPEN)
                pub_restart(w, &w->pubs[i], 1);
        uint64_t now = ps_now_ns();
        if (ph == PH_WARM && now >= next_warm) {
            for (uint32_t i = 0; i < w->npubs; i++)
                pub_warm(w, &w->pubs[i]);
            next_warm = now + WARM_EVERY_NS;
        }
        if (ph == PH_RUN && (ps_opt.rate > 0 || ps_opt.duration_s > 0))
            for (uint32_t i = 0; i < w->npubs; i++)
                pub_fill(w, &w->pubs[i], now);
        if (!ready) {
            int all = 1;
            for (uint32_t i = 0; i < w->nsubs && all; i++)
                all = w->subs[i].up || w->subs[i].c.state == CS_DEAD;
            for (uint32_t i = 0; i < w->npubs && all; i++)
                all = w->pubs[i].c.state == CS_OPEN || w->pubs[i].c.state == CS_DEAD;
            if (all) {
                ready = 1;
                SHK_STORE_RELEASE(w->slot->ready, 1);
            }
        }
        if (ph == PH_RUN && !pub_done) {
            int all = 1;
            for (uint32_t i = 0; i < w->npubs && all; i++)
                all = (w->pubs[i].stopped || w->pubs[i].c.state == CS_DEAD) &&
                      (w->pubs[i].inflight == 0 || w->pubs[i].c.state == CS_DEAD);
            if (all) {
                pub_done = 1;
                publish_counts(w);
            }
        }
        /* Live figures the parent polls; each has this process as its only writer. */
        SHK_WRITE_ONCE(w->slot->delivered, w->delivered);
        SHK_WRITE_ONCE(w->slot->last_delivery_ns, w->last_delivery_ns);
    }
    if (!pub_done)
        publish_counts(w);
    finish(w);
    /* The parent reads the result after this release (and after waitpid). */
    SHK_STORE_RELEASE(w->slot->finished, 1);
    for (uint32_t i = 0; i < w->nsubs; i++) {
        ps_ws_free(&w->subs[i]);
        conn_close(w, &w->subs[i].c);
    }
    for (uint32_t i = 0; i < w->npubs; i++)
        conn_close(w, &w->pubs[i].c);
    return 0;
}
