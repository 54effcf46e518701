/*
 * pubsub_sub.c: the HTTP subscribers, read with http_parser in response
 * mode (so chunked bodies, bodies read until the connection closes and
 * responses without a body are all its business):
 *
 *   longpoll     GET; a 200's body holds one or more template-wrapped
 *                messages; Last-Modified and Etag are sent back as
 *                If-Modified-Since and If-None-Match; 304 or 408 = nothing
 *                new, ask again
 *   eventsource  Accept: text/event-stream; the body is parsed as lines;
 *                each event's data lines (joined by \n) hold the messages;
 *                comments, id: and event: lines are skipped
 *   stream       TE: chunked; the decoded body is one stream of messages
 *
 * WebSocket's handshake goes through the same parser (pubsub_ws.c takes
 * over after the 101).
 */
#include "pubsub.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

static ps_worker_t *cw; /* the worker feeding the parser now */

enum { HT_NONE, HT_LASTMOD, HT_ETAG, HT_WSACCEPT };
enum { SSE_LINE, SSE_VALUE_START, SSE_DATA, SSE_SKIP };

void ps_sub_reset(ps_sub_t *s)
{
    ps_pp_reset(&s->pp);
    s->status = 0;
    s->hstate = 0;
    s->htarget = HT_NONE;
    s->hname_len = 0;
    s->in_body = 0;
    s->ws_open = 0;
    s->sse_state = SSE_LINE;
    s->sse_cr = 0;
    s->sse_had_data = 0;
    s->sse_name_len = 0;
    s->ws_accept_len = 0;
    s->ws_frame_got = 0;
    s->ws_ctl_len = 0;
}

int ps_sub_request(ps_worker_t *w, ps_sub_t *s)
{
    char path[1100], req[2048];
    size_t len;
    if (w->phase >= PH_DONE)
        return 0;
    if (ps_url_path(&ps_opt.sub, s->ch, path, sizeof path) < 0)
        return -1;
    if (ps_opt.mode == PS_WEBSOCKET) {
        if (ps_ws_request(w, s, req, sizeof req, &len) < 0)
            return -1;
    } else {
        int n = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: %s\r\n", path,
                         ps_opt.sub.host);
        if (n < 0 || (size_t)n >= sizeof req)
            return -1;
        len = (size_t)n;
        const char *extra = "";
        char cond[256] = "";
        if (ps_opt.mode == PS_EVENTSOURCE)
            extra = "Accept: text/event-stream\r\nCache-Control: no-cache\r\n";
        else if (ps_opt.mode == PS_STREAM)
            extra = "TE: chunked\r\n";
        else if (s->lastmod_len || s->etag_len)
            snprintf(cond, sizeof cond, "If-Modified-Since: %.*s\r\nIf-None-Match: %.*s\r\n",
                     (int)s->lastmod_len, s->lastmod, (int)s->etag_len, s->etag);
        n = snprintf(req + len, sizeof req - len, "%s%s", extra, cond);
        if (n < 0 || (size_t)n >= sizeof req - len)
            return -1;
        len += (size_t)n;
    }
    for (uint32_t i = 0; i < ps_opt.n_sub_headers; i++) {
        int n = snprintf(req + len, sizeof req - len, "%s\r\n", ps_opt.sub_headers[i]);
        if (n < 0 || (size_t)n >= sizeof req - len)
            return -1;
        len += (size_t)n;
    }
    if (len + 2 >= sizeof req)
        return -1;
    memcpy(req + len, "\r\n", 2);
    len += 2;
    if (ps_conn_write(w, &s->c, req, len) < 0)
        return -1;
    return ps_conn_flush(w, &s->c);
}

/* ---- EventSource ------------------------------------------------------------------------ */

static int sse_event_end(ps_worker_t *w, ps_sub_t *s)
{
    if (!s->sse_had_data)
        return 0;
    s->sse_had_data = 0;
    return ps_pp_end(w, s);
}

static int sse_feed(ps_worker_t *w, ps_sub_t *s, const char *p, size_t n)
{
    while (n) {
        if (s->sse_cr) { /* a \r ended the last line: a \n right after it belongs to it */
            s->sse_cr = 0;
            if (*p == '\n') {
                p++, n--;
                continue;
            }
        }
        switch (s->sse_state) {
        case SSE_LINE: {
            char c = *p++;
            n--;
            if (c == '\n' || c == '\r') {
                s->sse_cr = c == '\r';
                if (s->sse_name_len == 0 && sse_event_end(w, s) < 0)
                    return -1;
                s->sse_name_len = 0; /* a line with no colon: ignored */
            } else if (c == ':') {
                int data = s->sse_name_len == 4 && !memcmp(s->sse_name, "data", 4);
                s->sse_state = data ? SSE_VALUE_START : SSE_SKIP;
            } else if (s->sse_name_len < sizeof s->sse_name) {
                s->sse_name[s->sse_name_len++] = c;
            } else {
                s->sse_name[0] = 0; /* too long to be a field we know */
            }
            break;
        }
        case SSE_VALUE_START:
            if (*p == ' ')
                p++, n--;
            if (s->sse_had_data && ps_pp_feed(w, s, "\n", 1) < 0)
                return -1;
            s->sse_had_data = 1;
            s->sse_state = SSE_DATA;
            break;
        case SSE_DATA:
        case SSE_SKIP: {
            const char *e = memchr(p, '\n', n);
            const char *r = memchr(p, '\r', e ? (size_t)(e - p) : n);
            if (r)
                e = r;
            size_t k = e ? (size_t)(e - p) : n;
            if (k && s->sse_state == SSE_DATA && ps_pp_feed(w, s, p, k) < 0)
                return -1;
            p += k, n -= k;
            if (e) {
                s->sse_cr = *p == '\r';
                p++, n--;
                s->sse_state = SSE_LINE;
                s->sse_name_len = 0;
            }
            break;
        }
        }
    }
    return 0;
}

/* ---- http_parser's callbacks ------------------------------------------------------------ */

static int on_begin(http_parser *hp)
{
    ps_sub_t *s = (ps_sub_t *)hp->data;
    s->status = 0;
    s->hstate = 0;
    s->hname_len = 0;
    s->htarget = HT_NONE;
    s->in_body = 0;
    return 0;
}

static int on_field(http_parser *hp, const char *at, size_t len)
{
    ps_sub_t *s = (ps_sub_t *)hp->data;
    if (s->hstate == 1) {
        s->hstate = 0;
        s->hname_len = 0;
    }
    if (s->hname_len + len > sizeof s->hname) {
        s->hname_len = sizeof s->hname; /* longer than any name we look for */
        return 0;
    }
    memcpy(s->hname + s->hname_len, at, len);
    s->hname_len = (uint8_t)(s->hname_len + len);
    return 0;
}

static int name_is(const ps_sub_t *s, const char *name)
{
    size_t n = strlen(name);
    return s->hname_len == n && !strncasecmp(s->hname, name, n);
}

static int on_value(http_parser *hp, const char *at, size_t len)
{
    ps_sub_t *s = (ps_sub_t *)hp->data;
    if (s->hstate == 0) {
        s->hstate = 1;
        s->htarget = HT_NONE;
        if (ps_opt.mode == PS_LONGPOLL && name_is(s, "Last-Modified")) {
            s->htarget = HT_LASTMOD;
            s->lastmod_len = 0;
        } else if (ps_opt.mode == PS_LONGPOLL && name_is(s, "Etag")) {
            s->htarget = HT_ETAG;
            s->etag_len = 0;
        } else if (ps_opt.mode == PS_WEBSOCKET && name_is(s, "Sec-WebSocket-Accept")) {
            s->htarget = HT_WSACCEPT;
            s->ws_accept_len = 0;
        }
    }
    char *dst;
    uint8_t *dlen;
    size_t cap;
    switch (s->htarget) {
    case HT_LASTMOD: dst = s->lastmod, dlen = &s->lastmod_len, cap = sizeof s->lastmod; break;
    case HT_ETAG: dst = s->etag, dlen = &s->etag_len, cap = sizeof s->etag; break;
    case HT_WSACCEPT:
        dst = s->ws_accept, dlen = &s->ws_accept_len, cap = sizeof s->ws_accept - 1;
        break;
    default: return 0;
    }
    if (*dlen + len > cap) {
        ps_sub_error(cw, s, "response header %.*s longer than %zu bytes", (int)s->hname_len,
                     s->hname, cap);
        return -1;
    }
    if (memchr(at, '\r', len) || memchr(at, '\n', len)) {
        ps_sub_error(cw, s, "control byte in header %.*s", (int)s->hname_len, s->hname);
        return -1;
    }
    memcpy(dst + *dlen, at, len);
    *dlen = (uint8_t)(*dlen + len);
    return 0;
}

static int on_headers(http_parser *hp)
{
    ps_sub_t *s = (ps_sub_t *)hp->data;
    s->status = hp->status_code;
    switch (ps_opt.mode) {
    case PS_WEBSOCKET:
        if (s->status != 101) {
            ps_sub_error(cw, s, "WebSocket handshake answered %d", s->status);
            return -1;
        }
        return 0;
    case PS_LONGPOLL:
        if (s->status == 200) {
            s->in_body = 1;
            ps_pp_reset(&s->pp);
        } else if (s->status != 304 && s->status != 408) {
            ps_sub_error(cw, s, "long-poll answered %d", s->status);
            return -1;
        }
        return 0;
    case PS_EVENTSOURCE:
    case PS_STREAM:
        if (s->status != 200) {
            ps_sub_error(cw, s, "%s request answered %d", ps_mode_name(ps_opt.mode), s->status);
            return -1;
        }
        s->in_body = 1;
        s->up = 1;
        return 0;
    }
    return 0;
}

static int on_body(http_parser *hp, const char *at, size_t len)
{
    ps_sub_t *s = (ps_sub_t *)hp->data;
    if (!s->in_body)
        return 0;
    if (ps_opt.mode == PS_EVENTSOURCE)
        return sse_feed(cw, s, at, len) < 0 ? -1 : 0;
    return ps_pp_feed(cw, s, at, len) < 0 ? -1 : 0;
}

static int on_complete(http_parser *hp)
{
    ps_sub_t *s = (ps_sub_t *)hp->data;
    switch (ps_opt.mode) {
    case PS_WEBSOCKET:
        return 0;
    case PS_LONGPOLL:
        if (s->status == 200 && ps_pp_end(cw, s) < 0)
            return -1;
        s->in_body = 0;
        if (!http_should_keep_alive(hp)) {
            s->c.closing = 1;
            return 0;
        }
        if (ps_sub_request(cw, s) < 0) {
            ps_sub_error(cw, s, "cannot send the next long-poll");
            return -1;
        }
        return 0;
    case PS_EVENTSOURCE:
    case PS_STREAM:
        s->in_body = 0;
        if (cw->phase < PH_DONE)
            ps_sub_error(cw, s, "the server ended the %s", ps_mode_name(ps_opt.mode));
        return -1;
    }
    return 0;
}

const http_parser_settings ps_sub_settings = {
    .on_message_begin = on_begin,
    .on_header_field = on_field,
    .on_header_value = on_value,
    .on_headers_complete = on_headers,
    .on_body = on_body,
    .on_message_complete = on_complete,
};

/* ---- input ------------------------------------------------------------------------------ */

int ps_sub_input(ps_worker_t *w, ps_sub_t *s, const char *p, size_t n)
{
    cw = w;
    if (s->ws_open)
        return ps_ws_input(w, s, p, n);
    size_t done = http_parser_execute(&s->c.hp, &ps_sub_settings, p, n);
    enum http_errno e = HTTP_PARSER_ERRNO(&s->c.hp);
    if (e != HPE_OK) {
        /* A callback's failure was reported where it happened. */
        if (e < HPE_CB_message_begin || e > HPE_CB_chunk_complete)
            ps_sub_error(w, s, "bad response: %s", http_errno_name(e));
        return -1;
    }
    if (s->c.hp.upgrade) {
        if (ps_opt.mode != PS_WEBSOCKET) {
            ps_sub_error(w, s, "the server switched protocols");
            return -1;
        }
        if (ps_ws_open(w, s) < 0)
            return -1;
        return done < n ? ps_ws_input(w, s, p + done, n - done) : 0;
    }
    if (done != n) {
        ps_sub_error(w, s, "response parser stopped at byte %zu of %zu", done, n);
        return -1;
    }
    return s->c.closing ? 1 : 0;
}

int ps_sub_eof(ps_worker_t *w, ps_sub_t *s)
{
    cw = w;
    if (s->ws_open)
        return w->phase >= PH_DONE ? 0 : -1;
    return s->c.closing ? 0 : -1;
}
