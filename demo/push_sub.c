/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * push_sub.c: push-stream's subscriber modes on the channel store:
 * streaming (chunked, header/message/footer templates), EventSource
 * (text/event-stream, an id per message, Last-Event-ID resumes), WebSocket
 * (text frames, ping frames, publishing from the socket when allowed),
 * long-polling and polling (Etag and Last-Modified answered, If-None-Match
 * and If-Modified-Since honoured, 304). Several channels per request with
 * backtrack (.bN), ping messages, connection ttl, the channel-deleted
 * message, the drain of a stopping worker.
 *
 * A subscriber's position is one message id per channel of its request
 * (the last given, or where it started): the EventSource id and the Etag
 * carry it, so a client that sends it back resumes exactly after what it
 * got. The backlog is collected while the subscription is made (the store
 * gives it before shk_chan_sub_add returns), so an error can still be
 * answered with a status; then the response starts with it. The store
 * gives a message to a worker's subscribers of its channel one after the
 * other: the frame of one-channel subscribers of a location and mode is
 * rendered once for all of them (frame_of, the worker's push_srv_t.fc).
 */
#include "push.h"

#include "http.h"
#include "http_ws.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

typedef struct psub_s {
    push_srv_t *ps;
    const push_loc_t *pl;
    http_req_t *req;     /* NULL once finished or gone */
    http_ws_t *ws;
    shk_chan_sub_t *sub;
    int mode;
    unsigned n, live;    /* channels asked for, not deleted yet */
    shk_chan_msgid_t pos[PUSH_MAX_CHANNELS];
    /* the position the client resumed from ({0, 0}: none): a message at or
     * before it was seen already (it came from another instance, whose
     * store was ahead of this one's: channels_redis) */
    shk_chan_msgid_t floor[PUSH_MAX_CHANNELS];
    unsigned char gone[PUSH_MAX_CHANNELS];
    const char *want_event; /* resuming after a publisher's Event-Id */
    int searching;          /* the channel being subscribed is searched for it */
    int collecting;         /* while subscribing: output goes to pre */
    push_buf_t pre;         /* the backlog (WebSocket: frames, each after its length) */
    unsigned npre;
    uint64_t last_ms;       /* the newest message's time (Last-Modified) */
    int busy, freeme, done, started;
    struct event *ping_ev, *ttl_ev, *reply_ev;
    push_chan_t ch[];       /* n of them */
} psub_t;

/* ---- life --------------------------------------------------------------------------- */

static void p_release(psub_t *p)
{
    if (p->busy) {
        p->freeme = 1;
        return;
    }
    push_buf_free(&p->pre);
    free(p);
}

/* Leave the store and the timers; the HTTP side is the caller's. */
static void p_detach(psub_t *p)
{
    p->done = 1;
    if (p->sub) {
        shk_chan_sub_free(p->sub); /* no call for it after this one returns */
        p->sub = NULL;
    }
    struct event **evs[] = {&p->ping_ev, &p->ttl_ev, &p->reply_ev};
    for (size_t i = 0; i < 3; i++)
        if (*evs[i]) {
            event_free(*evs[i]);
            *evs[i] = NULL;
        }
}

static const char *content_type(const psub_t *p)
{
    if (p->mode == PUSH_EVENTSOURCE)
        return "text/event-stream; charset=utf-8";
    return p->pl->content_type ? p->pl->content_type : "text/plain; charset=utf-8";
}

/* ---- rendering ----------------------------------------------------------------------- */

static void render_eventsource(push_buf_t *b, const char *id, const char *type,
                               const push_buf_t *text)
{
    if (id && *id)
        push_buf_printf(b, "id: %s\n", id);
    if (type && *type)
        push_buf_printf(b, "event: %s\n", type);
    const char *s = text->p ? text->p : "";
    size_t left = text->len;
    do { /* one data: line per line of the message */
        const char *nl = memchr(s, '\n', left);
        size_t k = nl ? (size_t)(nl - s) : left;
        push_buf_str(b, "data: ");
        push_buf_add(b, s, k);
        push_buf_str(b, "\n");
        s += k + (nl ? 1 : 0);
        left -= k + (nl ? 1 : 0);
    } while (left > 0);
    push_buf_str(b, "\n");
}

/* Send or keep one unit (a rendered message, a ping). */
static int emit(psub_t *p, const push_buf_t *b)
{
    if (b->failed)
        return SHK_ENOMEM;
    if (p->collecting || p->mode == PUSH_LONGPOLLING || p->mode == PUSH_POLLING) {
        if (p->mode == PUSH_WEBSOCKET)
            push_buf_add(&p->pre, &b->len, sizeof b->len);
        push_buf_add(&p->pre, b->p, b->len);
        p->npre++;
        return p->pre.failed ? SHK_ENOMEM : SHK_OK;
    }
    if (p->mode == PUSH_WEBSOCKET)
        return p->ws ? http_ws_send(p->ws, HTTP_WS_TEXT, b->p, b->len) : SHK_ENOENT;
    return p->req ? http_stream_write(p->req, b->p, b->len) : SHK_ENOENT;
}

/* The message as this subscriber's mode frames it, into b. */
static void render(psub_t *p, const push_view_t *v0, push_buf_t *b)
{
    char pos[PUSH_POS_MAX];
    push_view_t v = *v0;
    push_pos_format(p->pos, p->n, pos, sizeof pos);
    v.position = pos;
    if (p->mode == PUSH_EVENTSOURCE) {
        push_buf_t t = {0};
        push_tmpl_render(&t, p->pl->message, &v);
        render_eventsource(b, v.event_id && *v.event_id ? v.event_id : pos, v.event_type, &t);
        b->failed |= t.failed;
        push_buf_free(&t);
        return;
    }
    push_tmpl_render(b, p->pl->message, &v);
}

/* ---- ending ------------------------------------------------------------------------------ */

static void poll_reply(psub_t *p);

/* The server ends the subscription: footer, end of stream, close frame
 * (code), or the long-poll's answer; then leave the store. */
static void p_end(psub_t *p, int ws_code)
{
    if (p->done && !p->req && !p->ws)
        return;
    if (p->mode == PUSH_LONGPOLLING || p->mode == PUSH_POLLING) {
        poll_reply(p);
        return;
    }
    if (p->mode == PUSH_WEBSOCKET) {
        http_ws_t *ws = p->ws;
        p_detach(p);
        if (ws && p->pl->footer)
            http_ws_send(ws, HTTP_WS_TEXT, p->pl->footer, strlen(p->pl->footer));
        /* on_close follows when the close handshake ends */
        if (ws && p->ws)
            http_ws_close(ws, ws_code, NULL);
        return;
    }
    http_req_t *req = p->req;
    p->req = NULL;
    p_detach(p);
    if (req) {
        if (p->pl->footer && p->mode == PUSH_STREAMING)
            http_stream_write(req, p->pl->footer, strlen(p->pl->footer));
        http_stream_end(req); /* finishes the request: no on_close after it */
    }
    p_release(p);
}

/* ---- the store's calls ---------------------------------------------------------------------- */

static int chan_index(const psub_t *p, const char *id)
{
    for (unsigned i = 0; i < p->n; i++)
        if (strcmp(p->ch[i].id, id) == 0)
            return (int)i;
    return -1;
}

static void reply_soon(psub_t *p);

static void on_deleted(psub_t *p, int i)
{
    const push_main_t *pm = p->ps->pm;
    const char *text = pm->deleted_text ? pm->deleted_text : PUSH_DEFAULT_DELETED_TEXT;
    push_view_t v = {PUSH_DELETED_ID, text, strlen(text), p->ch[i].id, 0, 0, "", "", NULL};
    push_buf_t b = {0};
    p->gone[i] = 1;
    p->live--;
    render(p, &v, &b);
    int rc = emit(p, &b);
    push_buf_free(&b);
    if (p->collecting)
        return; /* answered after the subscription, with what it holds */
    if (rc != SHK_OK && rc != SHK_ENOENT && rc != SHK_EPERM)
        p_end(p, 1011);
    else if (p->live == 0 || p->mode == PUSH_LONGPOLLING)
        p_end(p, 1000);
}

/* The message framed for p: the worker's last frame when it is the same
 * message for the same location and mode (a one-channel subscriber's
 * position, hence its frame, is the message's id), else rendered into the
 * cache, or into own (freed by the caller) while a frame is being emitted. */
static const push_buf_t *frame_of(psub_t *p, const shk_chan_msg_t *msg, const push_view_t *v,
                                  push_buf_t *own)
{
    push_srv_t *ps = p->ps;
    size_t cl = strlen(msg->channel);
    if (p->n != 1 || ps->fc.busy || cl > SHK_CHAN_ID_MAX) {
        render(p, v, own);
        return own;
    }
    if (ps->fc.ok && ps->fc.pl == p->pl && ps->fc.mode == p->mode &&
        ps->fc.seq == msg->seq && ps->fc.time_ms == msg->id.time_ms &&
        ps->fc.tag == msg->id.tag && memcmp(ps->fc.channel, msg->channel, cl + 1) == 0)
        return &ps->fc.frame;
    ps->fc.ok = 0;
    ps->fc.frame.len = 0;
    ps->fc.frame.failed = 0;
    render(p, v, &ps->fc.frame);
    if (ps->fc.frame.failed)
        return &ps->fc.frame; /* emit answers SHK_ENOMEM */
    ps->fc.pl = p->pl;
    ps->fc.mode = p->mode;
    ps->fc.seq = msg->seq;
    ps->fc.time_ms = msg->id.time_ms;
    ps->fc.tag = msg->id.tag;
    memcpy(ps->fc.channel, msg->channel, cl + 1);
    ps->fc.ok = 1;
    return &ps->fc.frame;
}

static void on_msg(shk_chan_sub_t *sub, const shk_chan_msg_t *msg, void *ctx)
{
    psub_t *p = ctx;
    int i = chan_index(p, msg->channel);
    (void)sub;
    if (p->done || i < 0 || p->gone[i])
        return;
    p->busy++;
    if (msg->flags & SHK_CHAN_MSG_DELETED) {
        on_deleted(p, i);
        goto out;
    }
    if (msg->id.time_ms < p->floor[i].time_ms ||
        (msg->id.time_ms == p->floor[i].time_ms && msg->id.tag <= p->floor[i].tag))
        goto out; /* seen: the store caught up to where the client came from */
    if (p->searching) {
        /* resuming after a publisher's Event-Id: skip up to that message */
        if (strcmp(msg->event_id, p->want_event) == 0)
            p->searching = 0;
        p->pos[i] = msg->id;
        goto out;
    }
    p->pos[i] = msg->id;
    if (msg->id.time_ms > p->last_ms)
        p->last_ms = msg->id.time_ms;
    push_view_t v = {(long long)msg->seq, msg->data,     msg->len,        msg->channel,
                     msg->id.time_ms,     msg->id.tag,   msg->event_id, msg->event_type, NULL};
    push_buf_t b = {0};
    const push_buf_t *f = frame_of(p, msg, &v, &b);
    p->ps->fc.busy++;
    int rc = emit(p, f);
    p->ps->fc.busy--;
    push_buf_free(&b);
    if (rc != SHK_OK && rc != SHK_ENOENT && rc != SHK_EPERM)
        p_end(p, 1011);
    else if (!p->collecting && p->mode == PUSH_LONGPOLLING)
        reply_soon(p); /* every message this delivery brings goes in one answer */
out:
    p->busy--;
    if (p->freeme)
        p_release(p);
}

/* ---- long-polling and polling -------------------------------------------------------------- */

static void etag_of(const psub_t *p, char *out, size_t cap)
{
    char pos[PUSH_POS_MAX];
    push_pos_format(p->pos, p->n, pos, sizeof pos);
    snprintf(out, cap, "W/\"%s\"", pos);
}

/* Answer with what was collected (200) or nothing new (304); the request
 * is finished and the subscription left. */
static void poll_reply(psub_t *p)
{
    http_req_t *req = p->req;
    char etag[PUSH_POS_MAX + 8], date[32];
    const char *hdr[24];
    unsigned n = 0;
    p->req = NULL;
    p_detach(p);
    if (!req) {
        p_release(p);
        return;
    }
    etag_of(p, etag, sizeof etag);
    hdr[n++] = "Etag";
    hdr[n++] = etag;
    if (p->last_ms) {
        push_http_date((int64_t)(p->last_ms / 1000), date);
        hdr[n++] = "Last-Modified";
        hdr[n++] = date;
    }
    hdr[n++] = "Cache-Control";
    hdr[n++] = "no-cache";
    hdr[n++] = "Vary";
    hdr[n++] = "If-None-Match, If-Modified-Since";
    if (p->npre) {
        push_buf_t body = {0};
        if (p->pl->header)
            push_buf_str(&body, p->pl->header);
        push_buf_add(&body, p->pre.p, p->pre.len);
        if (p->pl->footer)
            push_buf_str(&body, p->pl->footer);
        hdr[n++] = "Content-Type";
        hdr[n++] = content_type(p);
        n += push_cors(p->pl, 0, hdr + n);
        hdr[n] = NULL;
        if (body.failed)
            http_reply_text(req, 500, "Out of memory.\n");
        else
            http_reply(req, 200, hdr, body.p, body.len);
        push_buf_free(&body);
    } else {
        n += push_cors(p->pl, 0, hdr + n);
        hdr[n] = NULL;
        http_reply(req, 304, hdr, "", 0);
    }
    p_release(p);
}

static void reply_now(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    poll_reply(arg);
}

static void reply_soon(psub_t *p)
{
    if (p->reply_ev)
        return;
    struct timeval tv = {0, 0};
    p->reply_ev = evtimer_new(p->ps->base, reply_now, p);
    if (!p->reply_ev || evtimer_add(p->reply_ev, &tv) != 0)
        poll_reply(p);
}

/* ---- timers and the HTTP side's calls -------------------------------------------------------- */

static void on_ping(evutil_socket_t fd, short what, void *arg)
{
    psub_t *p = arg;
    (void)fd;
    (void)what;
    if (p->done)
        return;
    if (p->mode == PUSH_WEBSOCKET) {
        if (p->ws)
            http_ws_ping(p->ws, NULL, 0);
        return;
    }
    push_buf_t b = {0};
    if (p->mode == PUSH_EVENTSOURCE) {
        push_buf_str(&b, ": \n");
    } else {
        const char *t = p->ps->pm->ping_text ? p->ps->pm->ping_text : "";
        push_view_t v = {PUSH_PING_ID, t, strlen(t), "", 0, 0, "", "", NULL};
        push_tmpl_render(&b, p->pl->message, &v);
    }
    p->busy++;
    int rc = emit(p, &b);
    push_buf_free(&b);
    if (rc != SHK_OK && rc != SHK_ENOENT && rc != SHK_EPERM)
        p_end(p, 1011);
    p->busy--;
    if (p->freeme)
        p_release(p);
}

static void on_ttl(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    p_end(arg, 1000);
}

static void on_req_close(http_req_t *req, void *ctx)
{
    psub_t *p = ctx;
    (void)req;
    p->req = NULL;
    p_detach(p);
    p_release(p);
}

static void on_req_drain(http_req_t *req, void *ctx)
{
    (void)req;
    p_end(ctx, 1001);
}

static void on_ws_message(http_ws_t *ws, int type, const void *data, size_t len, void *ctx)
{
    psub_t *p = ctx;
    (void)ws;
    (void)type;
    if (!p->pl->ws_publish || p->done)
        return;
    for (unsigned i = 0; i < p->n; i++)
        if (!p->gone[i] && push_redis_on(p->ps))
            push_redis_ws_publish(p->ps, p->ch[i].id, data, len);
        else if (!p->gone[i] && shk_chan_publish(p->ps->ch, p->ch[i].id, data, len, NULL, NULL,
                                                 NULL) != SHK_OK)
            shk_log(SHK_LOG_WARN, "websocket publish to \"%s\": %s", p->ch[i].id,
                    shk_last_errmsg());
}

static void on_ws_close(http_ws_t *ws, int code, void *ctx)
{
    psub_t *p = ctx;
    (void)ws;
    (void)code;
    p->ws = NULL;
    p_detach(p);
    p_release(p);
}

static void on_ws_drain(http_ws_t *ws, void *ctx)
{
    psub_t *p = ctx;
    (void)ws;
    p_detach(p); /* the layer sends close 1001 next */
}

static int arm(psub_t *p, struct event **ev, unsigned ms, int persist,
               void (*fn)(evutil_socket_t, short, void *))
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    if (!ms)
        return SHK_OK;
    *ev = event_new(p->ps->base, -1, persist ? EV_PERSIST : 0, fn, p);
    return *ev && event_add(*ev, &tv) == 0 ? SHK_OK : SHK_ENOMEM;
}

/* ---- the request --------------------------------------------------------------------------- */

static int req_arg(void *ctx, const char *name, const char **value)
{
    return http_req_arg(ctx, name, value);
}

/* A variable directive's value for this request, or the header's. */
static const char *resume_word(http_req_t *req, const push_match_t *m, const char *value,
                               const char *header, push_buf_t *b)
{
    if (value) {
        push_value_eval(b, value, m->path, m->caps, req_arg, req);
        if (b->len)
            return b->p;
    }
    return http_req_header(req, header);
}

static void fail(psub_t *p, http_req_t *req, int status, const char *text)
{
    push_reply_text(req, p->pl, status, text);
    p_detach(p);
    p_release(p);
}

/* Where each channel starts: a resume position (Last-Event-ID,
 * If-None-Match, If-Modified-Since or the location's variables), else its
 * backtrack, else after its last message now. */
static void choose_starts(psub_t *p, http_req_t *req, const push_match_t *m,
                          shk_chan_from_t *from, push_buf_t *words)
{
    const char *lei = resume_word(req, m, p->pl->last_event_id, "Last-Event-ID", &words[0]);
    const char *inm = resume_word(req, m, p->pl->last_tag, "If-None-Match", &words[1]);
    const char *ims = resume_word(req, m, p->pl->last_time, "If-Modified-Since", &words[2]);
    shk_chan_msgid_t pos[PUSH_MAX_CHANNELS];
    int64_t sec;
    int have = 0;

    if ((lei && push_pos_parse(lei, p->n, pos) == SHK_OK) ||
        (inm && push_pos_parse(inm, p->n, pos) == SHK_OK)) {
        have = 1;
    } else if (lei && *lei) {
        p->want_event = lei; /* a publisher's Event-Id: found in the stored messages */
    } else if (ims && push_http_date_parse(ims, &sec) == SHK_OK && sec >= 0) {
        for (unsigned i = 0; i < p->n; i++)
            pos[i] = (shk_chan_msgid_t){(uint64_t)sec * 1000 + 999, UINT32_MAX};
        have = 1;
    }
    for (unsigned i = 0; i < p->n; i++) {
        shk_chan_info_t info;
        p->pos[i] = shk_chan_info(p->ps->ch, p->ch[i].id, &info) == SHK_OK
                        ? info.last_id
                        : (shk_chan_msgid_t){0, 0};
        if (have) {
            from[i] = (shk_chan_from_t){SHK_CHAN_FROM_AFTER, pos[i], 0};
            p->pos[i] = p->floor[i] = pos[i];
        } else if (p->want_event) {
            from[i] = (shk_chan_from_t){SHK_CHAN_FROM_LAST, {0, 0}, SHK_CHAN_UNLIMITED};
        } else if (p->ch[i].backtrack) {
            from[i] = (shk_chan_from_t){SHK_CHAN_FROM_LAST, {0, 0}, p->ch[i].backtrack};
        } else {
            from[i] = (shk_chan_from_t){SHK_CHAN_FROM_AFTER, p->pos[i], 0};
        }
    }
}

/* Checks that need the store: wildcard count, authorized channels only. */
static int check_channels(psub_t *p, const char **why)
{
    const char *pre = p->ps->pm->opts.wildcard_prefix;
    size_t pl = pre ? strlen(pre) : 0;
    unsigned wild = 0, normal = 0;
    for (unsigned i = 0; i < p->n; i++) {
        int w = pl && strncmp(p->ch[i].id, pre, pl) == 0;
        wild += (unsigned)w;
        if (!w && p->pl->authorized_only) {
            shk_chan_info_t info;
            if (shk_chan_info(p->ps->ch, p->ch[i].id, &info) != SHK_OK || info.stored == 0) {
                *why = "Subscriber could not create channels.";
                return 403;
            }
        }
        normal += (unsigned)!w;
    }
    if (wild > p->pl->wildcard_max) {
        *why = "Subscribed too much wildcard channels.";
        return 403;
    }
    if (wild && !normal && p->pl->authorized_only) {
        *why = "Subscribed only to wildcard channels.";
        return 403;
    }
    return 0;
}

/* Send what the subscription collected, as the response's start. */
static int start_response(psub_t *p, http_req_t *req)
{
    const char *hdr[20];
    unsigned n = 0;
    int rc;
    hdr[n++] = "Cache-Control";
    hdr[n++] = "no-cache";
    n += push_cors(p->pl, 0, hdr + n);
    hdr[n] = NULL;
    if (p->mode == PUSH_WEBSOCKET) {
        http_ws_cbs_t cbs = {on_ws_message, on_ws_close, on_ws_drain, NULL};
        p->req = NULL;
        if (!(p->ws = http_ws_accept(req, &cbs, p)))
            return SHK_ENOENT; /* answered by the layer */
        if (p->pl->header)
            http_ws_send(p->ws, HTTP_WS_TEXT, p->pl->header, strlen(p->pl->header));
        for (size_t at = 0; p->ws && at + sizeof(size_t) <= p->pre.len;) {
            size_t len;
            memcpy(&len, p->pre.p + at, sizeof len);
            at += sizeof len;
            if (http_ws_send(p->ws, HTTP_WS_TEXT, p->pre.p + at, len) != SHK_OK)
                return SHK_ENOENT;
            at += len;
        }
        return SHK_OK;
    }
    if ((rc = http_stream_start(req, 200, content_type(p), hdr)) != SHK_OK)
        return rc;
    http_req_cbs_t cbs = {on_req_close, on_req_drain, NULL};
    http_req_watch(req, &cbs, p);
    push_buf_t b = {0};
    if (p->mode == PUSH_EVENTSOURCE) {
        push_buf_str(&b, ": ");
        if (p->pl->header)
            for (const char *s = p->pl->header; *s; s++)
                push_buf_add(&b, *s == '\n' || *s == '\r' ? " " : s, 1);
        push_buf_str(&b, "\n");
        if (p->pl->retry_ms)
            push_buf_printf(&b, "retry: %u\n", p->pl->retry_ms);
        push_buf_str(&b, "\n");
    } else if (p->pl->header) {
        push_buf_str(&b, p->pl->header);
    }
    push_buf_add(&b, p->pre.p, p->pre.len);
    rc = b.failed ? SHK_ENOMEM : http_stream_write(req, b.p, b.len);
    push_buf_free(&b);
    return rc;
}

void push_sub_handle(push_srv_t *ps, http_req_t *req, const push_loc_t *pl,
                     const push_match_t *m)
{
    const char *meth = http_req_method(req), *why = NULL;
    push_buf_t path = {0}, words[3] = {{0}};
    shk_chan_from_t from[PUSH_MAX_CHANNELS];
    psub_t *p;
    int rc, st;

    if (strcmp(meth, "GET") != 0) {
        const char *allow[] = {"Allow", "GET", NULL};
        http_reply(req, 405, allow, "Method Not Allowed\n", 19);
        return;
    }
    const char *hm = http_req_header(req, "X-Nginx-PushStream-Mode");
    int mode = pl->mode;
    if (hm && pl->mode != PUSH_WEBSOCKET) {
        mode = push_mode_parse(hm);
        if (mode != PUSH_POLLING && mode != PUSH_LONGPOLLING && mode != pl->mode) {
            push_reply_text(req, pl, 400, "Unknown push stream mode (X-Nginx-PushStream-Mode: "
                                          "polling or long-polling).");
            return;
        }
    }
    if (pl->path)
        push_value_eval(&path, pl->path, m->path, m->caps, req_arg, req);
    else
        push_buf_str(&path, m->rest);
    size_t max_id = ps->pm->opts.max_id_len ? ps->pm->opts.max_id_len : SHK_CHAN_ID_MAX;
    if (path.failed) {
        push_reply_text(req, pl, 500, "Out of memory.");
        goto out;
    }
    push_chan_t chans[PUSH_MAX_CHANNELS];
    unsigned nch;
    if (push_parse_channels(path.p, max_id, chans, PUSH_MAX_CHANNELS, &nch) != SHK_OK) {
        push_reply_text(req, pl, 400, shk_last_errmsg());
        goto out;
    }
    if (!(p = calloc(1, sizeof *p + nch * sizeof chans[0]))) {
        push_reply_text(req, pl, 500, "Out of memory.");
        goto out;
    }
    p->ps = ps;
    p->pl = pl;
    p->mode = mode;
    p->n = nch;
    memcpy(p->ch, chans, nch * sizeof chans[0]);
    p->live = p->n;
    if (!ps->ch) {
        fail(p, req, 500, "No channel store (push_stream_shared_memory_size).");
        goto out;
    }
    if ((st = check_channels(p, &why)) != 0) {
        fail(p, req, st, why);
        goto out;
    }
    choose_starts(p, req, m, from, words);
    if (!(p->sub = shk_chan_sub_new(ps->ch, on_msg, p))) {
        fail(p, req, 500, shk_last_errmsg());
        goto out;
    }
    p->collecting = 1;
    p->busy++; /* nothing frees p while it is being set up */
    for (unsigned i = 0; i < p->n; i++) {
        p->searching = p->want_event != NULL;
        rc = shk_chan_sub_add(p->sub, p->ch[i].id, &from[i]);
        p->searching = 0;
        if (rc != SHK_OK) {
            p->busy--;
            if (rc == SHK_EAGAIN)
                fail(p, req, 403, strstr(shk_last_errmsg(), "subscribers")
                                      ? "Subscribers limit per channel has been exceeded."
                                      : "Number of channels were exceeded.");
            else if (rc == SHK_ERANGE)
                fail(p, req, 403, "Subscribed too much wildcard channels.");
            else if (rc == SHK_ENOMEM)
                fail(p, req, 507, "The channel store is full.");
            else
                fail(p, req, 500, shk_last_errmsg());
            goto out;
        }
    }
    p->collecting = 0;
    p->busy--;
    p->req = req;
    if (p->mode == PUSH_POLLING || (p->mode == PUSH_LONGPOLLING && (p->npre || p->live < p->n))) {
        poll_reply(p);
        goto out;
    }
    if (p->mode == PUSH_LONGPOLLING) {
        http_req_cbs_t cbs = {on_req_close, on_req_drain, NULL};
        http_req_watch(req, &cbs, p);
        /* a worker that stops answers at once (304): the client asks again,
         * on a new connection, to a worker that stays */
        if (ps->draining || arm(p, &p->ttl_ev, pl->lp_ttl_ms, 0, on_ttl) != SHK_OK)
            poll_reply(p);
        goto out;
    }
    p->busy++;
    rc = start_response(p, req);
    if (rc == SHK_OK && (p->live == 0 || ps->draining)) {
        p->busy--;
        /* every channel was deleted in the backlog, or the worker stops (the
         * request was read after its drain began): ended as the drain ends
         * the others, after the backlog, so the client resumes elsewhere */
        p_end(p, p->live == 0 ? 1000 : 1001);
        goto out;
    }
    if (rc == SHK_OK && (arm(p, &p->ping_ev, pl->ping_ms, 1, on_ping) != SHK_OK ||
                         arm(p, &p->ttl_ev, pl->ttl_ms, 0, on_ttl) != SHK_OK))
        rc = SHK_ENOMEM;
    p->busy--;
    if (rc != SHK_OK) {
        if (p->mode == PUSH_WEBSOCKET) {
            if (p->ws)
                p_end(p, 1011);
            else if (rc == SHK_ENOENT) /* refused or gone: no WebSocket was made */
                (p_detach(p), p_release(p));
        } else if (p->req) {
            p_end(p, 1011);
        } else if (p->freeme) {
            p_release(p);
        }
    } else if (p->freeme) {
        p_release(p);
    }
out:
    push_buf_free(&path);
    for (int i = 0; i < 3; i++)
        push_buf_free(&words[i]);
}
