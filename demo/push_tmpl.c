/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * push_tmpl.c: the growable text buffer the push-stream handlers build
 * their answers in, the JSON string writer, push-stream's message templates
 * (~id~ ~text~ ~size~ ~channel~ ~time~ ~tag~ ~event-id~ ~event-type~, and
 * our ~position~) and
 * HTTP dates (Last-Modified, If-Modified-Since, ~time~). No libevent.
 */
#include "push.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- buffers ---------------------------------------------------------------------- */

static int buf_room(push_buf_t *b, size_t more)
{
    if (b->failed)
        return 0;
    if (more > SIZE_MAX / 2 - b->len) {
        b->failed = 1;
        return 0;
    }
    if (b->len + more + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + more + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->failed = 1;
            return 0;
        }
        b->p = p;
        b->cap = cap;
    }
    return 1;
}

void push_buf_add(push_buf_t *b, const void *data, size_t len)
{
    if (!buf_room(b, len))
        return;
    if (len)
        memcpy(b->p + b->len, data, len);
    b->len += len;
    b->p[b->len] = '\0';
}

void push_buf_str(push_buf_t *b, const char *s)
{
    push_buf_add(b, s, strlen(s));
}

void push_buf_printf(push_buf_t *b, const char *fmt, ...)
{
    va_list ap;
    char small[256];
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n < sizeof small) {
        push_buf_add(b, small, (size_t)n);
        return;
    }
    if (!buf_room(b, (size_t)n))
        return;
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

void push_buf_json(push_buf_t *b, const char *s, size_t len)
{
    push_buf_add(b, "\"", 1);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            char e[2] = {'\\', (char)c};
            push_buf_add(b, e, 2);
        } else if (c < 0x20 || c == 0x7f) {
            push_buf_printf(b, "\\u%04x", c);
        } else {
            push_buf_add(b, &s[i], 1);
        }
    }
    push_buf_add(b, "\"", 1);
}

void push_buf_free(push_buf_t *b)
{
    free(b->p);
    memset(b, 0, sizeof *b);
}

/* ---- HTTP dates ---------------------------------------------------------------------- */

void push_http_date(int64_t sec, char out[32])
{
    struct tm tm;
    time_t t = (time_t)sec;
    if (!gmtime_r(&t, &tm) || !strftime(out, 32, "%a, %d %b %Y %H:%M:%S GMT", &tm))
        snprintf(out, 32, "Thu, 01 Jan 1970 00:00:00 GMT");
}

int push_http_date_parse(const char *s, int64_t *sec)
{
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    if (!s)
        return SHK_EINVAL;
    const char *end = strptime(s, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    if (!end || *end)
        return shk_error(SHK_EINVAL, "not an HTTP date: \"%.40s\"", s);
    *sec = (int64_t)timegm(&tm);
    return SHK_OK;
}

/* ---- templates ------------------------------------------------------------------------ */

static const struct {
    const char *name;
    size_t len;
    int what;
} tokens[] = {
    {"~id~", 4, 0},       {"~text~", 6, 1}, {"~size~", 6, 2},      {"~channel~", 9, 3},
    {"~time~", 6, 4},     {"~tag~", 5, 5},  {"~event-id~", 10, 6}, {"~event-type~", 12, 7},
    {"~position~", 10, 8},
};

void push_tmpl_render(push_buf_t *b, const char *tmpl, const push_view_t *v)
{
    const char *p = tmpl ? tmpl : "~text~";
    while (*p) {
        const char *t = strchr(p, '~');
        if (!t) {
            push_buf_str(b, p);
            return;
        }
        push_buf_add(b, p, (size_t)(t - p));
        size_t i;
        for (i = 0; i < sizeof tokens / sizeof tokens[0]; i++)
            if (strncmp(t, tokens[i].name, tokens[i].len) == 0)
                break;
        if (i == sizeof tokens / sizeof tokens[0]) {
            push_buf_add(b, "~", 1); /* not a token: kept */
            p = t + 1;
            continue;
        }
        char date[32];
        switch (tokens[i].what) {
        case 0: push_buf_printf(b, "%lld", v->id); break;
        case 1: push_buf_add(b, v->text, v->len); break;
        case 2: push_buf_printf(b, "%zu", v->len); break;
        case 3: push_buf_str(b, v->channel ? v->channel : ""); break;
        case 4:
            push_http_date(v->time_ms ? (int64_t)(v->time_ms / 1000) : (int64_t)time(NULL),
                           date);
            push_buf_str(b, date);
            break;
        case 5: push_buf_printf(b, "%u", v->tag); break;
        case 6: push_buf_str(b, v->event_id ? v->event_id : ""); break;
        case 7: push_buf_str(b, v->event_type ? v->event_type : ""); break;
        default: push_buf_str(b, v->position ? v->position : ""); break;
        }
        p = t + tokens[i].len;
    }
}
