/*
 * shk_sbuf.c: the growable string the library builds its reports in.
 */
#include "shk_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

static int sbuf_reserve(shk_sbuf_t *b, size_t extra)
{
    size_t cap;
    char *np;
    if (b->oom)
        return -1;
    if (b->len + extra + 1 <= b->cap)
        return 0;
    cap = b->cap ? b->cap : 256;
    while (cap < b->len + extra + 1)
        cap *= 2;
    np = realloc(b->p, cap);
    if (!np) {
        b->oom = 1;
        return -1;
    }
    b->p = np;
    b->cap = cap;
    return 0;
}

void shk_sbuf_printf(shk_sbuf_t *b, const char *fmt, ...)
{
    va_list ap;
    int n;
    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || sbuf_reserve(b, (size_t)n) != 0)
        return;
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

void shk_sbuf_json_str(shk_sbuf_t *b, const char *s)
{
    shk_sbuf_printf(b, "\"");
    for (; s && *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            shk_sbuf_printf(b, "\\%c", c);
        else if (c == '\n')
            shk_sbuf_printf(b, "\\n");
        else if (c == '\t')
            shk_sbuf_printf(b, "\\t");
        else if (c < 0x20 || c == 0x7f)
            shk_sbuf_printf(b, "\\u%04x", c);
        else
            shk_sbuf_printf(b, "%c", c);
    }
    shk_sbuf_printf(b, "\"");
}

void shk_sbuf_free(shk_sbuf_t *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}
