/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * shk_conf_value.c: the values directives take, read the same way by every
 * module: sizes ("10m"), durations ("500ms", "1h30m"), pids, "key=value"
 * words, and a directive's list of key=value parameters, walked once here
 * so that an unknown key and a bad value get the same messages everywhere.
 */
#include "shk_conf.h"

#include "shk_internal.h"

#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

int shk_parse_size(const char *s, size_t *out)
{
    size_t v = 0, mult = 1;
    const char *p = s;
    if (!s || !out)
        return shk_error(SHK_EINVAL, "NULL argument");
    if (*p < '0' || *p > '9')
        return shk_error(SHK_EINVAL, "invalid size \"%s\"", s);
    for (; *p >= '0' && *p <= '9'; p++) {
        unsigned d = (unsigned)(*p - '0');
        if (v > (SIZE_MAX - d) / 10)
            return shk_error(SHK_ERANGE, "size \"%s\" is too large", s);
        v = v * 10 + d;
    }
    switch (*p) {
    case '\0': break;
    case 'k': case 'K': mult = (size_t)1 << 10; p++; break;
    case 'm': case 'M': mult = (size_t)1 << 20; p++; break;
    case 'g': case 'G': mult = (size_t)1 << 30; p++; break;
    default: return shk_error(SHK_EINVAL, "invalid size \"%s\"", s);
    }
    if (*p)
        return shk_error(SHK_EINVAL, "invalid size \"%s\"", s);
    if (v > SIZE_MAX / mult)
        return shk_error(SHK_ERANGE, "size \"%s\" is too large", s);
    *out = v * mult;
    return SHK_OK;
}

int shk_parse_duration(const char *s, unsigned *ms)
{
    /* Units from the largest down; a term's unit must come after the
     * previous term's in this list. */
    static const struct {
        const char *name;
        uint64_t ms;
    } units[] = {{"d", 86400000}, {"h", 3600000}, {"ms", 1}, {"m", 60000}, {"s", 1000}};
    static const unsigned rank[] = {0, 1, 4, 2, 3}; /* order of size, by units[] index */
    const char *p = s;
    uint64_t total = 0;
    unsigned last = 0, terms = 0;
    int big = 0;

    if (!s || !ms)
        return shk_error(SHK_EINVAL, "NULL argument");
    do {
        uint64_t v = 0;
        unsigned u;
        if (*p < '0' || *p > '9')
            return shk_error(SHK_EINVAL, "invalid duration \"%s\"", s);
        for (; *p >= '0' && *p <= '9'; p++) {
            v = v * 10 + (uint64_t)(*p - '0');
            if (v > UINT_MAX) { /* even in milliseconds it would not fit */
                big = 1;
                v = UINT_MAX;
            }
        }
        if (!*p && terms == 0) { /* a bare number: seconds */
            total = v * 1000;
            break;
        }
        for (u = 0; u < SHK_ARRAY_LEN(units); u++)
            if (strncmp(p, units[u].name, strlen(units[u].name)) == 0)
                break;
        if (u == SHK_ARRAY_LEN(units) || (terms && rank[u] <= last))
            return shk_error(SHK_EINVAL, "invalid duration \"%s\"", s);
        p += strlen(units[u].name);
        last = rank[u];
        terms++;
        total += v * units[u].ms; /* at most 5 terms of < 2^32 * 2^27: no overflow */
    } while (*p);
    if (big || total > UINT_MAX)
        return shk_error(SHK_ERANGE, "duration \"%s\" is too long (at most %u ms)", s, UINT_MAX);
    *ms = (unsigned)total;
    return SHK_OK;
}

int shk_parse_pid(const char *s, size_t len, pid_t *out)
{
    unsigned v = 0;
    if (!s || !out)
        return shk_error(SHK_EINVAL, "NULL argument");
    if (len == 0)
        return shk_error(SHK_EINVAL, "empty process id");
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return shk_error(SHK_EINVAL, "invalid process id \"%.*s\"", (int)(len > 64 ? 64 : len),
                             s);
        unsigned d = (unsigned)(s[i] - '0');
        if (v > ((unsigned)INT_MAX - d) / 10)
            return shk_error(SHK_ERANGE, "process id \"%.*s\" out of range (1 to %d)",
                             (int)(len > 64 ? 64 : len), s, INT_MAX);
        v = v * 10 + d;
    }
    if (v == 0)
        return shk_error(SHK_ERANGE, "process id 0 out of range (1 to %d)", INT_MAX);
    *out = (pid_t)v;
    return SHK_OK;
}

int shk_parse_kv(const char *arg, const char **key, size_t *keylen, const char **val)
{
    const char *eq;
    if (!arg || !key || !keylen || !val)
        return shk_error(SHK_EINVAL, "NULL argument");
    eq = strchr(arg, '=');
    if (!eq || eq == arg)
        return shk_error(SHK_EINVAL, "\"%s\" is not key=value", arg);
    *key = arg;
    *keylen = (size_t)(eq - arg);
    *val = eq + 1;
    return SHK_OK;
}

int shk_conf_params(shk_conf_t *cf, int argc, char **argv, int first, shk_conf_param_t set,
                    void *ctx)
{
    if (!cf || !argv || !set || first < 1)
        return shk_error(SHK_EINVAL, "shk_conf_params: NULL argument or first < 1");
    for (int i = first; i < argc; i++) {
        const char *k, *v;
        size_t kl;
        char key[SHK_CONF_KEY_MAX + 1];
        int rc = shk_parse_kv(argv[i], &k, &kl, &v);
        if (rc == SHK_OK && kl <= SHK_CONF_KEY_MAX) {
            memcpy(key, k, kl);
            key[kl] = '\0';
            rc = set(cf, key, v, ctx);
        } else {
            rc = SHK_ENOENT;
        }
        if (rc == SHK_ENOENT)
            return shk_conf_error(cf, "invalid parameter \"%s\" in \"%s\" directive", argv[i],
                                  argv[0]);
        if (rc == SHK_ECONF)
            return rc; /* set raised its own message through shk_conf_error */
        if (rc != SHK_OK)
            return shk_conf_error(cf, "invalid value in \"%s\" of \"%s\" directive", argv[i],
                                  argv[0]);
    }
    return SHK_OK;
}
