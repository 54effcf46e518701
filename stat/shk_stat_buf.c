/*
 * shk_stat_buf.c: the one writer of every report: a growable string, the
 * escaping of every string that goes into one (as a JSON string literal,
 * or for a terminal), and the JSON structure (brackets and commas). The
 * rules are in docs/stat.md, "Escaping".
 */
#include "shk_stat_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

static int stat_reserve(shk_stat_w_t *w, size_t extra)
{
    size_t cap;
    char *np;
    if (w->failed)
        return -1;
    if (extra < w->cap && w->len < w->cap - extra)
        return 0; /* room for extra bytes and the NUL */
    if (extra > SIZE_MAX / 4 - w->len) {
        w->failed = 1;
        return -1;
    }
    cap = w->cap ? w->cap : 256;
    while (cap <= w->len + extra)
        cap *= 2;
    np = realloc(w->p, cap);
    if (!np) {
        w->failed = 1;
        return -1;
    }
    w->p = np;
    w->cap = cap;
    return 0;
}

void shk_stat_put(shk_stat_w_t *w, const char *s, size_t n)
{
    if (stat_reserve(w, n) != 0)
        return;
    memcpy(w->p + w->len, s, n);
    w->len += n;
    w->p[w->len] = '\0';
}

void shk_stat_puts(shk_stat_w_t *w, const char *s)
{
    shk_stat_put(w, s, strlen(s));
}

void shk_stat_printf(shk_stat_w_t *w, const char *fmt, ...)
{
    va_list ap;
    int n;
    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
        w->failed = 1;
        return;
    }
    if (stat_reserve(w, (size_t)n) != 0)
        return;
    va_start(ap, fmt);
    vsnprintf(w->p + w->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    w->len += (size_t)n;
}

void shk_stat_pad(shk_stat_w_t *w, size_t n)
{
    if (stat_reserve(w, n) != 0)
        return;
    memset(w->p + w->len, ' ', n);
    w->len += n;
    w->p[w->len] = '\0';
}

void shk_stat_w_free(shk_stat_w_t *w)
{
    free(w->p);
    w->p = NULL;
    w->len = w->cap = 0;
    w->failed = 0;
    w->depth = 0;
}

/* ---- escaping ------------------------------------------------------------------------- */

/* Length of the valid UTF-8 sequence at s (n bytes left), 0 if there is
 * none: no overlong forms, no surrogates, nothing above U+10FFFF. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    size_t len;
    unsigned char lo = 0x80, hi = 0xbf; /* the second byte's range */
    if (c >= 0xc2 && c <= 0xdf)
        len = 2;
    else if (c >= 0xe0 && c <= 0xef)
        len = 3;
    else if (c >= 0xf0 && c <= 0xf4)
        len = 4;
    else
        return 0;
    if (c == 0xe0)
        lo = 0xa0; /* overlong below U+0800 */
    else if (c == 0xed)
        hi = 0x9f; /* surrogates U+D800..U+DFFF */
    else if (c == 0xf0)
        lo = 0x90; /* overlong below U+10000 */
    else if (c == 0xf4)
        hi = 0x8f; /* above U+10FFFF */
    if (n < len || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++)
        if ((s[i] & 0xc0) != 0x80)
            return 0;
    return len;
}

void shk_stat_json_str(shk_stat_w_t *w, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0, run = 0; /* bytes [i - run, i) go out as they are */
    shk_stat_put(w, "\"", 1);
    while (i < n) {
        unsigned c = p[i], code = 0x110000; /* none: else written as \uXXXX */
        const char *two = NULL;             /* a two-character escape */
        size_t len = 1;
        if (c == '"' || c == '\\')
            two = c == '"' ? "\\\"" : "\\\\";
        else if (c == '\n' || c == '\t' || c == '\r')
            two = c == '\n' ? "\\n" : c == '\t' ? "\\t" : "\\r";
        else if (c == '\b' || c == '\f')
            two = c == '\b' ? "\\b" : "\\f";
        else if (c < 0x20 || c == 0x7f)
            code = c;
        else if (c >= 0x80) {
            len = utf8_len(p + i, n - i);
            if (len == 0) {
                len = 1; /* a stray byte: \u00XX of the byte */
                code = c;
            } else if (len == 2 && c == 0xc2 && p[i + 1] < 0xa0) {
                code = p[i + 1]; /* U+0080..U+009F, the C1 controls */
            } else if (len == 3 && c == 0xe2 && p[i + 1] == 0x80 && (p[i + 2] & 0xfe) == 0xa8) {
                code = 0x2028u | (p[i + 2] & 1u); /* line and paragraph separators */
            }
        }
        if (!two && code == 0x110000) {
            run += len;
            i += len;
            continue;
        }
        shk_stat_put(w, s + i - run, run);
        run = 0;
        if (two) {
            shk_stat_put(w, two, 2);
        } else {
            char esc[6] = {'\\', 'u', hex[code >> 12], hex[(code >> 8) & 15],
                           hex[(code >> 4) & 15], hex[code & 15]};
            shk_stat_put(w, esc, sizeof esc);
        }
        i += len;
    }
    shk_stat_put(w, s + i - run, run);
    shk_stat_put(w, "\"", 1);
}

void shk_stat_text_str(shk_stat_w_t *w, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char esc[4];
        if (c >= 0x20 && c < 0x7f && c != '\\') {
            run++;
            continue;
        }
        shk_stat_put(w, s + i - run, run);
        run = 0;
        if (c == '\\') {
            shk_stat_put(w, "\\\\", 2);
            continue;
        }
        esc[0] = '\\';
        esc[1] = 'x';
        esc[2] = hex[c >> 4];
        esc[3] = hex[c & 15];
        shk_stat_put(w, esc, 4);
    }
    shk_stat_put(w, s + n - run, run);
}

/* ---- JSON structure ------------------------------------------------------------------- */

void shk_stat_json_key(shk_stat_w_t *w, const char *key)
{
    if (!w->json)
        return;
    if (w->depth) {
        if (w->more[w->depth - 1])
            shk_stat_put(w, ",", 1);
        w->more[w->depth - 1] = 1;
    }
    if (key) {
        shk_stat_json_str(w, key, strlen(key));
        shk_stat_put(w, ":", 1);
    }
}

void shk_stat_json_open(shk_stat_w_t *w, const char *key, char bracket)
{
    if (!w->json)
        return;
    if (w->depth == SHK_STAT_DEPTH) {
        w->failed = 1; /* our own documents never nest this deep */
        return;
    }
    shk_stat_json_key(w, key);
    shk_stat_put(w, &bracket, 1);
    w->close[w->depth] = bracket == '{' ? '}' : ']';
    w->more[w->depth] = 0;
    w->depth++;
}

void shk_stat_json_close(shk_stat_w_t *w)
{
    if (!w->json)
        return;
    if (!w->depth) {
        w->failed = 1;
        return;
    }
    w->depth--;
    shk_stat_put(w, &w->close[w->depth], 1);
}
