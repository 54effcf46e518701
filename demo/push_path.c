/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * push_path.c: the words of push-stream's requests, parsed as untrusted
 * input: a subscription's channel path (/ch1/ch2.b5), message ids
 * ("<time_ms>:<tag>") and positions (one id per channel of a subscription,
 * as an EventSource id or an entity tag), and the variables of directive
 * values ($arg_NAME, $1..$9, $uri). No libevent.
 */
#include "push.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- channel paths ----------------------------------------------------------------- */

/* A trailing ".b<digits>" of seg[0..len): the backtrack and the id's length. */
static int split_backtrack(const char *seg, size_t len, size_t *idlen, unsigned *bt)
{
    size_t i = len;
    while (i > 0 && isdigit((unsigned char)seg[i - 1]))
        i--;
    *idlen = len;
    *bt = 0;
    if (i == len || i < 2 || seg[i - 1] != 'b' || seg[i - 2] != '.')
        return SHK_OK;
    if (len - i > 7)
        return shk_error(SHK_ERANGE, "backtrack \"%.*s\" is too large (at most 1000000)",
                         (int)(len - i), seg + i);
    unsigned long n = strtoul(seg + i, NULL, 10);
    if (n > 1000000)
        return shk_error(SHK_ERANGE, "backtrack %lu is too large (at most 1000000)", n);
    *idlen = i - 2;
    *bt = (unsigned)n;
    return SHK_OK;
}

int push_parse_channels(const char *path, size_t max_id_len, push_chan_t *out, unsigned max,
                        unsigned *n)
{
    const char *p = path ? path : "";
    int rc;
    *n = 0;
    while (*p) {
        while (*p == '/')
            p++;
        if (!*p)
            break;
        size_t len = strcspn(p, "/"), idlen;
        unsigned bt;
        if ((rc = split_backtrack(p, len, &idlen, &bt)) != SHK_OK)
            return rc;
        if (*n == max)
            return shk_error(SHK_ERANGE, "Too many channels in one request (at most %u).", max);
        if (idlen == 0)
            return shk_error(SHK_EINVAL, "Empty channel id before \".b%u\".", bt);
        if (idlen > SHK_CHAN_ID_MAX || idlen > max_id_len)
            return shk_error(SHK_ERANGE, "Channel id is too large (at most %zu bytes).",
                             max_id_len < SHK_CHAN_ID_MAX ? max_id_len : (size_t)SHK_CHAN_ID_MAX);
        push_chan_t *c = &out[*n];
        memcpy(c->id, p, idlen);
        c->id[idlen] = '\0';
        c->backtrack = bt;
        if ((rc = shk_chan_check_id(c->id, max_id_len, NULL)) != SHK_OK)
            return shk_error(rc, "Invalid channel id: %s.", shk_last_errmsg());
        for (unsigned k = 0; k < *n; k++)
            if (strcmp(out[k].id, c->id) == 0)
                return shk_error(SHK_EINVAL, "Channel \"%s\" is given twice.", c->id);
        (*n)++;
        p += len;
    }
    if (*n == 0)
        return shk_error(SHK_ENOENT, "No channel id provided.");
    return SHK_OK;
}

/* ---- ids and positions ---------------------------------------------------------------- */

void push_id_format(const shk_chan_msgid_t *id, char *out, size_t cap)
{
    snprintf(out, cap, "%llu:%u", (unsigned long long)id->time_ms, id->tag);
}

/* Digits only, at most `max`, into *v. */
static int parse_num(const char *s, size_t len, uint64_t max, uint64_t *v)
{
    uint64_t x = 0;
    if (len == 0 || len > 20)
        return SHK_EINVAL;
    for (size_t i = 0; i < len; i++) {
        if (!isdigit((unsigned char)s[i]))
            return SHK_EINVAL;
        unsigned d = (unsigned)(s[i] - '0');
        if (x > (max - d) / 10)
            return SHK_EINVAL;
        x = x * 10 + d;
    }
    *v = x;
    return SHK_OK;
}

int push_id_parse(const char *s, size_t len, shk_chan_msgid_t *id)
{
    const char *colon = memchr(s, ':', len);
    uint64_t t, g;
    if (!colon || parse_num(s, (size_t)(colon - s), UINT64_MAX / 2, &t) != SHK_OK ||
        parse_num(colon + 1, len - (size_t)(colon + 1 - s), UINT32_MAX, &g) != SHK_OK)
        return shk_error(SHK_EINVAL, "not a message id (<time_ms>:<tag>): \"%.*s\"",
                         (int)(len > 64 ? 64 : len), s);
    id->time_ms = t;
    id->tag = (uint32_t)g;
    return SHK_OK;
}

int push_pos_parse(const char *s, unsigned n, shk_chan_msgid_t *pos)
{
    size_t len;
    if (!s || n == 0 || n > PUSH_MAX_CHANNELS)
        return SHK_EINVAL;
    while (*s == ' ' || *s == '\t')
        s++;
    if (s[0] == 'W' && s[1] == '/')
        s += 2;
    len = strlen(s);
    while (len && (s[len - 1] == ' ' || s[len - 1] == '\t'))
        len--;
    if (len >= 2 && s[0] == '"' && s[len - 1] == '"') {
        s++;
        len -= 2;
    }
    if (len >= PUSH_POS_MAX)
        return shk_error(SHK_EINVAL, "position of %zu bytes", len);
    for (unsigned i = 0; i < n; i++) {
        const char *comma = memchr(s, ',', len);
        size_t one = comma ? (size_t)(comma - s) : len;
        if ((i + 1 < n) != (comma != NULL))
            return shk_error(SHK_EINVAL, "a position of %u channels holds another count", n);
        if (push_id_parse(s, one, &pos[i]) != SHK_OK)
            return SHK_EINVAL;
        if (comma) {
            len -= one + 1;
            s = comma + 1;
        }
    }
    return SHK_OK;
}

void push_pos_format(const shk_chan_msgid_t *pos, unsigned n, char *out, size_t cap)
{
    size_t at = 0;
    out[0] = '\0';
    for (unsigned i = 0; i < n && at < cap; i++) {
        int k = snprintf(out + at, cap - at, "%s%llu:%u", i ? "," : "",
                         (unsigned long long)pos[i].time_ms, pos[i].tag);
        if (k < 0)
            break;
        at += (size_t)k;
    }
}

/* ---- variables ------------------------------------------------------------------------- */

/* The variable at v (just after '$'): its kind and length. Kinds: 1 $arg_NAME,
 * 2 $N, 3 $uri; 0: none of ours. */
static int var_at(const char *v, size_t *len, size_t *nstart, size_t *nlen)
{
    if (isdigit((unsigned char)v[0])) {
        *len = 1;
        return v[0] == '0' ? 0 : 2;
    }
    if (strncmp(v, "arg_", 4) == 0) {
        size_t k = 4;
        while (isalnum((unsigned char)v[k]) || v[k] == '_')
            k++;
        *nstart = 4;
        *nlen = k - 4;
        *len = k;
        return k > 4 ? 1 : 0;
    }
    if (strncmp(v, "uri", 3) == 0 && !isalnum((unsigned char)v[3]) && v[3] != '_') {
        *len = 3;
        return 3;
    }
    return 0;
}

int push_value_check(const char *value)
{
    for (const char *p = value; (p = strchr(p, '$')); p++) {
        size_t len, ns, nl;
        if (!var_at(p + 1, &len, &ns, &nl))
            return shk_error(SHK_EINVAL,
                             "unknown variable in \"%s\" (the demo knows $arg_NAME, $1..$9 and "
                             "$uri)",
                             value);
    }
    return SHK_OK;
}

void push_value_eval(push_buf_t *b, const char *value, const char *path, const regoff_t *caps,
                     push_arg_fn arg, void *ctx)
{
    const char *p = value;
    while (*p) {
        const char *d = strchr(p, '$');
        size_t len = 0, ns = 0, nl = 0;
        int kind;
        if (!d) {
            push_buf_str(b, p);
            return;
        }
        push_buf_add(b, p, (size_t)(d - p));
        kind = var_at(d + 1, &len, &ns, &nl);
        if (kind == 1) {
            char name[128];
            const char *v = NULL;
            if (nl < sizeof name) {
                memcpy(name, d + 1 + ns, nl);
                name[nl] = '\0';
                if (arg && arg(ctx, name, &v) == SHK_OK && v)
                    push_buf_str(b, v);
            }
        } else if (kind == 2) {
            int g = d[1] - '0';
            if (caps && caps[2 * g] >= 0 && caps[2 * g + 1] >= caps[2 * g])
                push_buf_add(b, path + caps[2 * g], (size_t)(caps[2 * g + 1] - caps[2 * g]));
        } else if (kind == 3) {
            push_buf_str(b, path ? path : "");
        } else {
            push_buf_add(b, "$", 1); /* refused at configuration time */
            len = 0;
        }
        p = d + 1 + len;
    }
}
