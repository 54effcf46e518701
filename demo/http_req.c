/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * http_req.c: the request object: its life (new, free, detached when the
 * client leaves first), what the app reads of it (method, target, decoded
 * path, query arguments, headers, body, peer), the callbacks it watches
 * with, and the text helpers: percent-decoding that refuses bad escapes and
 * NUL, and escaping of request bytes for a log line.
 */
#include "http_internal.h"

#include <event2/buffer.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int http_req_append(char **buf, size_t *len, size_t *cap, const char *data, size_t n)
{
    if (*len + n + 1 > *cap) {
        size_t ncap = *cap ? *cap : 64;
        while (ncap < *len + n + 1)
            ncap *= 2;
        char *nb = realloc(*buf, ncap);
        if (!nb)
            return -1;
        *buf = nb;
        *cap = ncap;
    }
    memcpy(*buf + *len, data, n);
    *len += n;
    (*buf)[*len] = '\0';
    return 0;
}

http_req_t *http_req_new(http_conn_t *c)
{
    http_req_t *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->conn = c;
    r->srv = c->srv;
    r->state = HR_READING;
    return r;
}

void http_req_free(http_req_t *r)
{
    if (!r)
        return;
    for (unsigned i = 0; i < r->nowned; i++)
        free(r->owned[i]);
    free(r->owned);
    free(r->url);
    free(r->hbuf);
    free(r->hdr);
    free(r->body);
    free(r->path);
    free(r);
}

void http_req_gone(http_req_t *r)
{
    r->conn = NULL;
    if (!r->cbs.on_close)
        return; /* detached: the app's finishing call frees it */
    r->in_close_cb = 1;
    r->cbs.on_close(r, r->cb_ctx);
    http_req_free(r);
}

/* ---- what the app reads ---------------------------------------------------------------- */

const char *http_req_method(const http_req_t *r)
{
    return http_method_str((enum http_method)r->method);
}

int http_req_version(const http_req_t *r)
{
    return r->version;
}

const char *http_req_target(const http_req_t *r)
{
    return r->url ? r->url : "";
}

/* The path of the target: origin form "/p?q", or the path of the absolute
 * form "http://host/p?q". Sets *len; NULL if there is none. */
static const char *target_path(const http_req_t *r, size_t *len)
{
    const char *t = http_req_target(r), *p = t;
    if (*t != '/') {
        const char *s = strstr(t, "://");
        if (!s)
            return NULL;
        p = strchr(s + 3, '/');
        if (!p) {
            *len = 0;
            return "/";
        }
    }
    *len = strcspn(p, "?");
    return p;
}

const char *http_req_path(http_req_t *r)
{
    size_t len, n;
    if (r->path)
        return r->path;
    const char *p = target_path(r, &len);
    if (!p) {
        shk_error(SHK_EINVAL, "the request target has no path");
        return NULL;
    }
    if (len == 0) { /* "http://host" means "/" */
        p = "/";
        len = 1;
    }
    char *out = malloc(len + 1);
    if (!out) {
        shk_error(SHK_ENOMEM, "out of memory decoding the path");
        return NULL;
    }
    if (http_decode(p, len, 0, out, len + 1, &n) != SHK_OK) {
        free(out);
        return NULL;
    }
    r->path = out;
    return out;
}

const char *http_req_query(const http_req_t *r)
{
    const char *t = http_req_target(r);
    const char *q = strchr(t, '?');
    return q ? q + 1 : NULL;
}

static int keep(http_req_t *r, char *s)
{
    if (r->nowned == r->owned_cap) {
        unsigned ncap = r->owned_cap ? r->owned_cap * 2 : 4;
        char **n = realloc(r->owned, ncap * sizeof *n);
        if (!n)
            return -1;
        r->owned = n;
        r->owned_cap = ncap;
    }
    r->owned[r->nowned++] = s;
    return 0;
}

int http_req_arg(http_req_t *r, const char *name, const char **value)
{
    const char *q = http_req_query(r);
    size_t nlen = strlen(name);
    *value = NULL;
    if (!q)
        return shk_error(SHK_ENOENT, "no query argument \"%s\"", name);
    size_t qlen = strlen(q);
    const char *end = q + qlen;
    char *dn = malloc(qlen + 1);
    if (!dn)
        return shk_error(SHK_ENOMEM, "out of memory decoding the query");
    for (const char *p = q; p <= end;) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *pe = amp ? amp : end;
        const char *eq = memchr(p, '=', (size_t)(pe - p));
        const char *ne = eq ? eq : pe;
        size_t dl;
        if (ne > p || eq) {
            if (http_decode(p, (size_t)(ne - p), 1, dn, qlen + 1, &dl) != SHK_OK) {
                free(dn);
                return shk_error(SHK_EINVAL, "query argument name: %s", shk_last_errmsg());
            }
            if (dl == nlen && memcmp(dn, name, nlen) == 0) {
                const char *vs = eq ? eq + 1 : pe;
                size_t vl = (size_t)(pe - vs);
                if (http_decode(vs, vl, 1, dn, qlen + 1, &dl) != SHK_OK) {
                    free(dn);
                    return shk_error(SHK_EINVAL, "query argument \"%s\": %s", name,
                                     shk_last_errmsg());
                }
                if (keep(r, dn) != 0) {
                    free(dn);
                    return shk_error(SHK_ENOMEM, "out of memory keeping an argument");
                }
                *value = dn;
                return SHK_OK;
            }
        }
        if (!amp)
            break;
        p = amp + 1;
    }
    free(dn);
    return shk_error(SHK_ENOENT, "no query argument \"%s\"", name);
}

const char *http_req_header(const http_req_t *r, const char *name)
{
    for (unsigned i = 0; i < r->nhdr; i++)
        if (strcasecmp(r->hbuf + r->hdr[i].name, name) == 0)
            return r->hbuf + r->hdr[i].value;
    return NULL;
}

unsigned http_req_header_count(const http_req_t *r)
{
    return r->headers_done ? r->nhdr : 0;
}

int http_req_header_at(const http_req_t *r, unsigned i, const char **name, const char **value)
{
    if (i >= http_req_header_count(r))
        return shk_error(SHK_ERANGE, "header %u of %u", i, http_req_header_count(r));
    *name = r->hbuf + r->hdr[i].name;
    *value = r->hbuf + r->hdr[i].value;
    return SHK_OK;
}

const void *http_req_body(const http_req_t *r, size_t *len)
{
    if (len)
        *len = r->body_len;
    return r->body ? r->body : "";
}

const char *http_req_peer(const http_req_t *r)
{
    return r->conn ? r->conn->peer_text : "";
}

const struct sockaddr *http_req_peer_addr(const http_req_t *r, socklen_t *len)
{
    if (!r->conn) {
        *len = 0;
        return NULL;
    }
    *len = r->conn->peerlen;
    return (const struct sockaddr *)&r->conn->peer;
}

void http_req_watch(http_req_t *r, const http_req_cbs_t *cbs, void *ctx)
{
    if (cbs)
        r->cbs = *cbs;
    else
        memset(&r->cbs, 0, sizeof r->cbs);
    r->cb_ctx = ctx;
}

void http_req_set_close(http_req_t *r)
{
    if (r->conn)
        r->conn->close_after = 1;
}

size_t http_req_queued(const http_req_t *r)
{
    return r->conn ? evbuffer_get_length(http_conn_output(r->conn)) : 0;
}

void http_req_abort(http_req_t *r)
{
    http_conn_t *c = r->conn;
    if (r->in_close_cb)
        return; /* freed when on_close returns */
    if (c) {
        c->req = NULL;
        c->srv->st.dropped++;
        http_conn_drop(c, 1006);
    }
    http_req_free(r);
}

/* ---- text helpers ------------------------------------------------------------------------ */

static int hexval(unsigned char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

int http_decode(const char *in, size_t len, int form, char *out, size_t cap, size_t *outlen)
{
    size_t o = 0;
    if (cap == 0)
        return shk_error(SHK_ERANGE, "no room for the decoded text");
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)in[i];
        if (ch == '%') {
            int hi = len - i >= 3 ? hexval((unsigned char)in[i + 1]) : -1;
            int lo = len - i >= 3 ? hexval((unsigned char)in[i + 2]) : -1;
            if (hi < 0 || lo < 0)
                return shk_error(SHK_EINVAL, "bad percent escape at byte %zu", i);
            ch = (unsigned char)(hi * 16 + lo);
            i += 2;
        } else if (ch == '+' && form) {
            ch = ' ';
        }
        if (ch == '\0')
            return shk_error(SHK_EINVAL, "NUL byte at byte %zu", i);
        if (o + 1 >= cap)
            return shk_error(SHK_ERANGE, "decoded text does not fit %zu bytes", cap);
        out[o++] = (char)ch;
    }
    out[o] = '\0';
    if (outlen)
        *outlen = o;
    return SHK_OK;
}

size_t http_log_escape(char *out, size_t cap, const void *in, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *s = in;
    size_t need = 0, wrote = 0;
    int fits = 1;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = s[i];
        int esc = ch < 0x20 || ch >= 0x7f || ch == '"' || ch == '\\';
        size_t w = esc ? 4 : 1;
        if (fits && need + w + 1 <= cap) {
            if (esc) {
                out[need] = '\\';
                out[need + 1] = 'x';
                out[need + 2] = hex[ch >> 4];
                out[need + 3] = hex[ch & 15];
            } else {
                out[need] = (char)ch;
            }
            wrote = need + w;
        } else {
            fits = 0;
        }
        need += w;
    }
    if (cap == 0)
        return need;
    if (fits) {
        out[need] = '\0';
        return need;
    }
    /* Cut at an item boundary with room for "...": a backslash in the copy
     * always starts a 4-byte escape (a literal one is escaped). */
    size_t o = wrote;
    while (o > 0 && o + 4 > cap)
        o -= (o >= 4 && out[o - 4] == '\\') ? 4 : 1;
    for (int k = 0; k < 3 && o + 1 < cap; k++)
        out[o++] = '.';
    out[o] = '\0';
    return need;
}
