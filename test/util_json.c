/*
 * util_json.c: the tests' JSON parser (see util_json.h).
 */
#include "util_json.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *p;
    char *err;
    size_t errsz;
    int depth;
} tjp_t;

static int fail(tjp_t *s, const char *what)
{
    if (s->err && s->errsz)
        snprintf(s->err, s->errsz, "%s at \"%.20s\"", what, s->p);
    return -1;
}

static void ws(tjp_t *s)
{
    while (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r')
        s->p++;
}

static int value(tjp_t *s, tj_t *v);

/* Length of the valid UTF-8 sequence at p (NUL-terminated text), 0 if
 * none: no overlong forms, no surrogates, nothing above U+10FFFF. */
size_t tj_utf8_len(const char *p)
{
    const unsigned char *u = (const unsigned char *)p;
    size_t len;
    unsigned char lo = 0x80, hi = 0xbf;
    if (u[0] < 0x80)
        return 1;
    if (u[0] >= 0xc2 && u[0] <= 0xdf)
        len = 2;
    else if (u[0] >= 0xe0 && u[0] <= 0xef)
        len = 3;
    else if (u[0] >= 0xf0 && u[0] <= 0xf4)
        len = 4;
    else
        return 0;
    if (u[0] == 0xe0)
        lo = 0xa0;
    else if (u[0] == 0xed)
        hi = 0x9f;
    else if (u[0] == 0xf0)
        lo = 0x90;
    else if (u[0] == 0xf4)
        hi = 0x8f;
    if (u[1] < lo || u[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++)
        if ((u[i] & 0xc0) != 0x80)
            return 0;
    return len;
}

/* Four hex digits of a \u escape into *cp. */
static int hex4(tjp_t *s, unsigned *cp)
{
    *cp = 0;
    for (int i = 0; i < 4; i++) {
        char h = *s->p++;
        if (!isxdigit((unsigned char)h))
            return -1;
        *cp = *cp * 16 + (unsigned)(isdigit((unsigned char)h) ? h - '0' : (tolower(h) - 'a' + 10));
    }
    return 0;
}

static int string(tjp_t *s, char **out)
{
    size_t cap = 16, n = 0;
    char *b = malloc(cap);
    if (!b)
        return fail(s, "out of memory");
    s->p++; /* opening quote */
    for (;;) {
        unsigned char c = (unsigned char)*s->p++;
        if (n + 8 > cap) {
            char *nb = realloc(b, cap *= 2);
            if (!nb) {
                free(b);
                return fail(s, "out of memory");
            }
            b = nb;
        }
        if (c == '"')
            break;
        if (c < 0x20) {
            free(b);
            s->p--;
            return fail(s, c ? "control character in string" : "unterminated string");
        }
        if (c >= 0x80) {
            /* raw bytes >= 0x80 must be one valid UTF-8 sequence (RFC 8259) */
            size_t len = tj_utf8_len(s->p - 1);
            if (!len) {
                free(b);
                s->p--;
                return fail(s, "invalid UTF-8 in string");
            }
            b[n++] = (char)c;
            for (size_t i = 1; i < len; i++)
                b[n++] = *s->p++;
            continue;
        }
        if (c != '\\') {
            b[n++] = (char)c;
            continue;
        }
        c = (unsigned char)*s->p++;
        switch (c) {
        case '"': case '\\': case '/': b[n++] = (char)c; break;
        case 'b': b[n++] = '\b'; break;
        case 'f': b[n++] = '\f'; break;
        case 'n': b[n++] = '\n'; break;
        case 'r': b[n++] = '\r'; break;
        case 't': b[n++] = '\t'; break;
        case 'u': {
            unsigned cp;
            if (hex4(s, &cp) != 0) {
                free(b);
                return fail(s, "bad \\u escape");
            }
            if (cp >= 0xdc00 && cp <= 0xdfff) {
                free(b);
                return fail(s, "lone low surrogate");
            }
            if (cp >= 0xd800 && cp <= 0xdbff) {
                unsigned lo;
                if (s->p[0] != '\\' || s->p[1] != 'u') {
                    free(b);
                    return fail(s, "lone high surrogate");
                }
                s->p += 2;
                if (hex4(s, &lo) != 0 || lo < 0xdc00 || lo > 0xdfff) {
                    free(b);
                    return fail(s, "bad low surrogate");
                }
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
            }
            if (cp >= 0x10000) {
                b[n++] = (char)(0xf0 | (cp >> 18));
                b[n++] = (char)(0x80 | ((cp >> 12) & 0x3f));
                b[n++] = (char)(0x80 | ((cp >> 6) & 0x3f));
                b[n++] = (char)(0x80 | (cp & 0x3f));
            } else if (cp < 0x80) {
                b[n++] = (char)cp;
            } else if (cp < 0x800) {
                b[n++] = (char)(0xc0 | (cp >> 6));
                b[n++] = (char)(0x80 | (cp & 0x3f));
            } else {
                b[n++] = (char)(0xe0 | (cp >> 12));
                b[n++] = (char)(0x80 | ((cp >> 6) & 0x3f));
                b[n++] = (char)(0x80 | (cp & 0x3f));
            }
            break;
        }
        default:
            free(b);
            return fail(s, "bad escape");
        }
    }
    b[n] = '\0';
    *out = b;
    return 0;
}

static int add_kid(tj_t *v, tj_t **kid)
{
    tj_t *nk = realloc(v->kids, (v->nkids + 1) * sizeof *nk);
    if (!nk)
        return -1;
    v->kids = nk;
    *kid = &v->kids[v->nkids++];
    memset(*kid, 0, sizeof **kid);
    return 0;
}

static int value(tjp_t *s, tj_t *v)
{
    ws(s);
    if (++s->depth > 64)
        return fail(s, "nesting too deep");
    if (*s->p == '{' || *s->p == '[') {
        int obj = *s->p == '{';
        char close = obj ? '}' : ']';
        v->type = obj ? TJ_OBJ : TJ_ARR;
        s->p++;
        ws(s);
        if (*s->p == close) {
            s->p++;
            s->depth--;
            return 0;
        }
        for (;;) {
            tj_t *k;
            char *key = NULL;
            ws(s);
            if (obj) {
                if (*s->p != '"')
                    return fail(s, "expected member name");
                if (string(s, &key) != 0)
                    return -1;
                ws(s);
                if (*s->p++ != ':') {
                    free(key);
                    return fail(s, "expected ':'");
                }
            }
            if (add_kid(v, &k) != 0) {
                free(key);
                return fail(s, "out of memory");
            }
            k->key = key;
            if (value(s, k) != 0)
                return -1;
            ws(s);
            if (*s->p == ',') {
                s->p++;
                continue;
            }
            if (*s->p == close) {
                s->p++;
                s->depth--;
                return 0;
            }
            return fail(s, obj ? "expected ',' or '}'" : "expected ',' or ']'");
        }
    }
    if (*s->p == '"') {
        v->type = TJ_STR;
        s->depth--;
        return string(s, &v->str);
    }
    if (strncmp(s->p, "true", 4) == 0 || strncmp(s->p, "false", 5) == 0) {
        v->type = TJ_BOOL;
        v->num = *s->p == 't';
        s->p += *s->p == 't' ? 4 : 5;
        s->depth--;
        return 0;
    }
    if (strncmp(s->p, "null", 4) == 0) {
        v->type = TJ_NULL;
        s->p += 4;
        s->depth--;
        return 0;
    }
    if (*s->p == '-' || isdigit((unsigned char)*s->p)) {
        char *end;
        v->type = TJ_NUM;
        v->num = strtod(s->p, &end);
        if (end == s->p)
            return fail(s, "bad number");
        s->p = end;
        s->depth--;
        return 0;
    }
    return fail(s, "unexpected character");
}

static void tj_clear(tj_t *v)
{
    for (size_t i = 0; i < v->nkids; i++)
        tj_clear(&v->kids[i]);
    free(v->kids);
    free(v->str);
    free(v->key);
}

void tj_free(tj_t *v)
{
    if (!v)
        return;
    tj_clear(v);
    free(v);
}

tj_t *tj_parse(const char *text, char *err, size_t errsz)
{
    tjp_t s = {text, err, errsz, 0};
    tj_t *v = calloc(1, sizeof *v);
    if (!v)
        return NULL;
    if (value(&s, v) != 0) {
        tj_free(v);
        return NULL;
    }
    ws(&s);
    if (*s.p) {
        fail(&s, "trailing characters");
        tj_free(v);
        return NULL;
    }
    return v;
}

const tj_t *tj_get(const tj_t *v, const char *path)
{
    char part[128];
    while (v && *path) {
        size_t n = strcspn(path, ".");
        if (n >= sizeof part)
            return NULL;
        memcpy(part, path, n);
        part[n] = '\0';
        path += n + (path[n] == '.');
        if (v->type == TJ_ARR) {
            char *end;
            unsigned long i = strtoul(part, &end, 10);
            v = (*end || i >= v->nkids) ? NULL : &v->kids[i];
        } else if (v->type == TJ_OBJ) {
            const tj_t *f = NULL;
            for (size_t i = 0; i < v->nkids; i++)
                if (strcmp(v->kids[i].key, part) == 0)
                    f = &v->kids[i];
            v = f;
        } else {
            return NULL;
        }
    }
    return v;
}

double tj_num(const tj_t *v, const char *path, double def)
{
    const tj_t *x = tj_get(v, path);
    return x && (x->type == TJ_NUM || x->type == TJ_BOOL) ? x->num : def;
}

const char *tj_str(const tj_t *v, const char *path)
{
    const tj_t *x = tj_get(v, path);
    return x && x->type == TJ_STR ? x->str : NULL;
}
