/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * http_reply.c: responses: the status line and headers (Date, the app's
 * checked headers, the framing, and Connection as keep-alive rules and the
 * drain decide), whole replies with a Content-Length, streamed replies
 * (chunked on HTTP/1.1, close-delimited on 1.0) with the slow-client check,
 * and the layer's own error replies.
 */
#include "http_internal.h"

#include <event2/buffer.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

const char *http_reason(int status)
{
    const char *s = http_status_str((enum http_status)status);
    return s && s[0] != '<' ? s : "Unknown";
}

static int is_tchar(unsigned char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           (ch && strchr("!#$%&'*+-.^_`|~", ch));
}

int http_reply_check_headers(const char *const *h)
{
    static const char *const own[] = {"content-length", "transfer-encoding", "connection",
                                      "date", "upgrade"};
    for (size_t i = 0; h && h[i]; i += 2) {
        const char *name = h[i], *value = h[i + 1];
        if (!value)
            return shk_error(SHK_EINVAL, "header \"%s\" has no value", name);
        if (!*name)
            return shk_error(SHK_EINVAL, "empty header name");
        for (const char *p = name; *p; p++)
            if (!is_tchar((unsigned char)*p))
                return shk_error(SHK_EINVAL, "header name \"%s\" is not a token", name);
        for (const unsigned char *p = (const unsigned char *)value; *p; p++)
            if ((*p < 0x20 && *p != '\t') || *p == 0x7f)
                return shk_error(SHK_EINVAL, "header \"%s\": control byte 0x%02x in the value",
                                 name, *p);
        for (size_t k = 0; k < sizeof own / sizeof own[0]; k++)
            if (strcasecmp(name, own[k]) == 0)
                return shk_error(SHK_EINVAL, "header \"%s\" is written by the layer", name);
    }
    return SHK_OK;
}

int http_reply_head(http_req_t *req, struct evbuffer *out, int status, const char *const *h,
                    const char *more, int close)
{
    http_conn_t *c = req->conn;
    if (c->srv->draining || !req->keepalive || req->upgrade)
        close = 1;
    if (close)
        c->close_after = 1;
    close = c->close_after;
    evbuffer_add_printf(out, "HTTP/1.1 %d %s\r\n%s", status, http_reason(status),
                        http_srv_date(c->srv));
    for (size_t i = 0; h && h[i]; i += 2)
        evbuffer_add_printf(out, "%s: %s\r\n", h[i], h[i + 1]);
    if (more)
        evbuffer_add(out, more, strlen(more));
    if (close)
        evbuffer_add(out, "Connection: close\r\n", 19);
    else if (req->version == 10)
        evbuffer_add(out, "Connection: keep-alive\r\n", 24);
    return evbuffer_add(out, "\r\n", 2) == 0 ? SHK_OK : SHK_ENOMEM;
}

/* The checks every reply call makes: 0 to go on, else the status to return
 * (a detached request is freed when `finishing`). */
static int reply_enter(http_req_t *req, const char *what, int finishing)
{
    if (!req)
        return shk_error(SHK_EINVAL, "%s: no request", what);
    if (req->in_close_cb)
        return shk_error(SHK_EPERM, "%s: not allowed in on_close", what);
    if (!req->conn) {
        if (finishing)
            http_req_free(req);
        return shk_error(SHK_ENOENT, "%s: the client has gone away", what);
    }
    return SHK_OK;
}

static void req_finish(http_req_t *req)
{
    http_conn_t *c = req->conn;
    c->req = NULL;
    http_req_free(req);
    http_conn_req_done(c);
}

int http_reply(http_req_t *req, int status, const char *const *headers, const void *body,
               size_t len)
{
    char more[64] = "";
    int rc = reply_enter(req, "http_reply", 1);
    if (rc != SHK_OK)
        return rc;
    if (req->state != HR_APP)
        return shk_error(SHK_EPERM, "http_reply: a response was already started");
    if (status < 200 || status > 599)
        return shk_error(SHK_EINVAL, "http_reply: status %d is not 200-599", status);
    if (http_reply_check_headers(headers) != SHK_OK)
        return shk_error(SHK_EINVAL, "http_reply: %s", shk_last_errmsg());
    http_conn_t *c = req->conn;
    struct evbuffer *out = http_conn_output(c);
    int bodyless = status == 204 || status == 304;
    if (!bodyless)
        snprintf(more, sizeof more, "Content-Length: %zu\r\n", len);
    http_conn_hold(c);
    rc = http_reply_head(req, out, status, headers, more, 0);
    if (rc == SHK_OK && !bodyless && !req->head && len > 0 && evbuffer_add(out, body, len) != 0)
        rc = SHK_ENOMEM;
    if (rc != SHK_OK) { /* a part is out: the connection cannot go on */
        c->req = NULL;
        http_req_free(req);
        http_conn_drop(c, 1011);
        http_conn_release(c);
        return shk_error(SHK_ENOMEM, "http_reply: out of memory");
    }
    req_finish(req);
    http_conn_release(c);
    return SHK_OK;
}

int http_reply_text(http_req_t *req, int status, const char *fmt, ...)
{
    static const char *const ct[] = {"Content-Type", "text/plain; charset=utf-8", NULL};
    char small[512], *text = small;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0)
        return shk_error(SHK_EINVAL, "http_reply_text: bad format");
    if ((size_t)n >= sizeof small) {
        text = malloc((size_t)n + 1);
        if (!text)
            return shk_error(SHK_ENOMEM, "http_reply_text: out of memory");
        va_start(ap, fmt);
        vsnprintf(text, (size_t)n + 1, fmt, ap);
        va_end(ap);
    }
    int rc = http_reply(req, status, ct, text, (size_t)n);
    if (text != small)
        free(text);
    return rc;
}

void http_reply_error(http_conn_t *c, int status, const char *text)
{
    struct evbuffer *out = http_conn_output(c);
    char body[256];
    int n = snprintf(body, sizeof body, "%d %s: %s\n", status, http_reason(status),
                     text ? text : "");
    if (n < 0)
        n = 0;
    if ((size_t)n >= sizeof body)
        n = (int)sizeof body - 1;
    evbuffer_add_printf(out,
                        "HTTP/1.1 %d %s\r\n%sContent-Type: text/plain; charset=utf-8\r\n"
                        "Content-Length: %d\r\nConnection: close\r\n\r\n",
                        status, http_reason(status), http_srv_date(c->srv), n);
    evbuffer_add(out, body, (size_t)n);
}

/* ---- streams ------------------------------------------------------------------------------- */

int http_stream_start(http_req_t *req, int status, const char *content_type,
                      const char *const *headers)
{
    int rc = reply_enter(req, "http_stream_start", 0);
    if (rc != SHK_OK)
        return rc;
    if (req->state != HR_APP)
        return shk_error(SHK_EPERM, "http_stream_start: a response was already started");
    if (status < 200 || status > 599 || status == 204 || status == 304)
        return shk_error(SHK_EINVAL, "http_stream_start: status %d cannot have a body", status);
    if (http_reply_check_headers(headers) != SHK_OK)
        return shk_error(SHK_EINVAL, "http_stream_start: %s", shk_last_errmsg());
    if (content_type && strlen(content_type) > 200)
        return shk_error(SHK_EINVAL, "http_stream_start: content type over 200 bytes");
    if (content_type) {
        const char *const ct[] = {"Content-Type", content_type, NULL};
        if (http_reply_check_headers(ct) != SHK_OK)
            return shk_error(SHK_EINVAL, "http_stream_start: %s", shk_last_errmsg());
    }
    http_conn_t *c = req->conn;
    struct evbuffer *out = http_conn_output(c);
    char ctl[300] = "";
    int close = 0;
    if (content_type)
        snprintf(ctl, sizeof ctl, "Content-Type: %s\r\n", content_type);
    if (req->version == 11) {
        req->chunked = 1;
        strncat(ctl, "Transfer-Encoding: chunked\r\n", sizeof ctl - strlen(ctl) - 1);
    } else {
        close = 1; /* the end of the body is the end of the connection */
    }
    req->state = HR_STREAM;
    return http_reply_head(req, out, status, headers, ctl, close) == SHK_OK
               ? SHK_OK
               : shk_error(SHK_ENOMEM, "http_stream_start: out of memory");
}

int http_stream_write(http_req_t *req, const void *data, size_t len)
{
    int rc = reply_enter(req, "http_stream_write", 0);
    if (rc != SHK_OK)
        return rc;
    if (req->state != HR_STREAM)
        return shk_error(SHK_EPERM, "http_stream_write: no stream was started");
    if (len == 0 || req->head)
        return SHK_OK;
    http_conn_t *c = req->conn;
    struct evbuffer *out = http_conn_output(c);
    int bad = 0;
    if (req->chunked)
        bad |= evbuffer_add_printf(out, "%zx\r\n", len) < 0;
    bad |= evbuffer_add(out, data, len) != 0;
    if (req->chunked)
        bad |= evbuffer_add(out, "\r\n", 2) != 0;
    if (bad) {
        c->srv->st.dropped++;
        http_conn_drop(c, 1011);
        return shk_error(SHK_ENOMEM, "http_stream_write: out of memory");
    }
    if (http_conn_check_slow(c))
        return shk_error(SHK_ENOENT, "http_stream_write: the client reads too slowly: dropped");
    return SHK_OK;
}

int http_stream_end(http_req_t *req)
{
    int rc = reply_enter(req, "http_stream_end", 1);
    if (rc != SHK_OK)
        return rc;
    if (req->state != HR_STREAM)
        return shk_error(SHK_EPERM, "http_stream_end: no stream was started");
    http_conn_t *c = req->conn;
    if (req->chunked && !req->head)
        evbuffer_add(http_conn_output(c), "0\r\n\r\n", 5);
    http_conn_hold(c);
    req_finish(req);
    http_conn_release(c);
    return SHK_OK;
}
