/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * shk_redis_conf.c: the redis module's small pieces: the options (the URL
 * parsed, the namespace and password checked, the defaults), the link's
 * record in the zone (made by the master, checked when read, the stats read
 * from it lock-free), stream ids, and the cluster slot of a channel.
 */
#include "shk_redis_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* ---- options ----------------------------------------------------------------------- */

/* A decimal number of at most `max`, the whole of [s, s + n). */
static int parse_uint(const char *s, size_t n, unsigned long max, unsigned long *out)
{
    unsigned long v = 0;
    if (!n || n > 10)
        return SHK_EINVAL;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return SHK_EINVAL;
        v = v * 10 + (unsigned long)(s[i] - '0');
    }
    if (v > max)
        return SHK_ERANGE;
    *out = v;
    return SHK_OK;
}

static int url_error(int rc, const char *url, const char *what)
{
    return shk_error(rc, "redis URL \"%s\": %s", url, what);
}

/* "unix:/PATH[?db=N]" */
static int parse_unix(const char *url, redis_conf_t *c)
{
    const char *p = url + 5, *q = strchr(p, '?');
    size_t n = q ? (size_t)(q - p) : strlen(p);
    unsigned long v;
    if (p[0] != '/')
        return url_error(SHK_EINVAL, url, "the socket path must be absolute");
    if (n >= sizeof c->path)
        return url_error(SHK_ERANGE, url, "the socket path is too long");
    memcpy(c->path, p, n);
    c->path[n] = '\0';
    if (q) {
        if (strncmp(q, "?db=", 4) != 0 || parse_uint(q + 4, strlen(q + 4), 1000000, &v) != SHK_OK)
            return url_error(SHK_EINVAL, url, "after the path only \"?db=N\" may follow");
        c->db = (unsigned)v;
    }
    return SHK_OK;
}

/* "redis://[:PASSWORD@]HOST[:PORT][/DB]" */
static int parse_tcp(const char *url, redis_conf_t *c)
{
    const char *p = url + 8, *at = strchr(p, '@'), *hend, *end;
    unsigned long v;
    size_t n;
    if (at) {
        if (p[0] != ':')
            return url_error(SHK_EINVAL, url, "the user part must be \":PASSWORD@\"");
        n = (size_t)(at - p - 1);
        if (n > SHK_REDIS_PASSWORD_MAX)
            return url_error(SHK_ERANGE, url, "the password is too long");
        memcpy(c->password, p + 1, n);
        c->password[n] = '\0';
        p = at + 1;
    }
    end = p + strcspn(p, "/");
    if (p[0] == '[') {
        hend = memchr(p, ']', (size_t)(end - p));
        if (!hend)
            return url_error(SHK_EINVAL, url, "no ']' after the IPv6 address");
        n = (size_t)(hend - p - 1);
        p++;
        hend++;
    } else {
        hend = memchr(p, ':', (size_t)(end - p));
        if (!hend)
            hend = end;
        n = (size_t)(hend - p);
    }
    if (!n)
        return url_error(SHK_EINVAL, url, "no host");
    if (n >= sizeof c->host)
        return url_error(SHK_ERANGE, url, "the host is too long");
    memcpy(c->host, p, n);
    c->host[n] = '\0';
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)c->host[i] <= 0x20 || c->host[i] == 0x7f)
            return url_error(SHK_EINVAL, url, "a control byte or space in the host");
    c->port = SHK_REDIS_DEFAULT_PORT;
    if (hend < end) {
        if (*hend != ':' || parse_uint(hend + 1, (size_t)(end - hend - 1), 65535, &v) != SHK_OK ||
            v == 0)
            return url_error(SHK_EINVAL, url, "the port must be 1 to 65535");
        c->port = (int)v;
    }
    if (*end == '/' && end[1]) {
        if (parse_uint(end + 1, strlen(end + 1), 1000000, &v) != SHK_OK)
            return url_error(SHK_EINVAL, url, "the database must be a number");
        c->db = (unsigned)v;
    }
    return SHK_OK;
}

int shk_redis_conf(const shk_redis_opts_t *o, redis_conf_t *c)
{
    int rc;
    size_t n;
    memset(c, 0, sizeof *c);
    if (!o || !o->url || !o->url[0])
        return shk_error(SHK_EINVAL, "no redis URL");
    if (strlen(o->url) > SHK_REDIS_URL_MAX)
        return shk_error(SHK_ERANGE, "redis URL longer than %d bytes", SHK_REDIS_URL_MAX);
    if (strncmp(o->url, "unix:", 5) == 0)
        rc = parse_unix(o->url, c);
    else if (strncmp(o->url, "redis://", 8) == 0)
        rc = parse_tcp(o->url, c);
    else
        rc = url_error(SHK_EINVAL, o->url, "it must start with redis:// or unix:");
    if (rc != SHK_OK)
        return rc;
    if (o->password) {
        if (shk_strlcpy_exact(c->password, sizeof c->password, o->password) != SHK_OK)
            return shk_error(SHK_ERANGE, "redis password longer than %d bytes",
                             SHK_REDIS_PASSWORD_MAX);
    }
    for (const char *s = c->password; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return shk_error(SHK_EINVAL, "a control byte in the redis password");
    if (shk_chan_check_id(o->ns ? o->ns : SHK_REDIS_DEFAULT_NS, SHK_REDIS_NS_MAX, &n) != SHK_OK)
        return shk_error(shk_last_error(), "redis namespace: %s", shk_last_errmsg());
    memcpy(c->ns, o->ns ? o->ns : SHK_REDIS_DEFAULT_NS, n + 1);
    c->max_stored = o->max_stored ? o->max_stored : SHK_CHAN_DEFAULT_MAX_STORED;
    c->ttl_ms = o->ttl_ms ? o->ttl_ms : SHK_CHAN_DEFAULT_TTL_MS;
    c->max_message = o->max_message ? o->max_message : SHK_CHAN_DEFAULT_MESSAGE_MAX;
    if (c->max_message > SHK_CHAN_MESSAGE_MAX)
        return shk_error(SHK_ERANGE, "redis max_message above 4 GiB - 1");
    c->connect_timeout_ms =
        o->connect_timeout_ms ? o->connect_timeout_ms : SHK_REDIS_DEFAULT_CONNECT_TIMEOUT_MS;
    c->backoff_min_ms = o->backoff_min_ms ? o->backoff_min_ms : SHK_REDIS_DEFAULT_BACKOFF_MIN_MS;
    c->backoff_max_ms = o->backoff_max_ms ? o->backoff_max_ms : SHK_REDIS_DEFAULT_BACKOFF_MAX_MS;
    if (c->backoff_max_ms < c->backoff_min_ms)
        c->backoff_max_ms = c->backoff_min_ms;
    c->publish_timeout_ms =
        o->publish_timeout_ms ? o->publish_timeout_ms : SHK_REDIS_DEFAULT_PUBLISH_TIMEOUT_MS;
    return SHK_OK;
}

int shk_redis_check_opts(const shk_redis_opts_t *o)
{
    redis_conf_t c;
    return shk_redis_conf(o, &c);
}

const char *shk_redis_state_name(unsigned state)
{
    static const char *const names[] = {"down", "connecting", "syncing", "up"};
    return state < sizeof names / sizeof names[0] ? names[state] : "unknown";
}

/* ---- the record in the zone ----------------------------------------------------------- */

redis_shared_t *shk_redis_shared(shk_zone_t *zone)
{
    redis_shared_t *sh;
    char *base;
    uint64_t magic;
    if (!zone) {
        shk_error(SHK_EINVAL, "NULL zone");
        return NULL;
    }
    sh = shk_zone_root(zone, SHK_REDIS_ROOT);
    if (!sh) {
        shk_error(SHK_ENOENT, "zone \"%s\" has no redis link record", shk_zone_name(zone));
        return NULL;
    }
    base = shk_zone_base(zone);
    if ((uintptr_t)sh % 8 ||
        !shk_span_ok((uint64_t)((char *)sh - base), sizeof *sh, shk_zone_size(zone))) {
        shk_error(SHK_ECORRUPT, "zone \"%s\": the redis record lies outside the zone",
                  shk_zone_name(zone));
        return NULL;
    }
    magic = SHK_LOAD_ACQUIRE(sh->magic); /* pairs with shk_redis_setup's release */
    if (shk_layout_check("redis record", shk_zone_name(zone), magic, SHK_REDIS_MAGIC,
                         sh->version, SHK_REDIS_VERSION, sh->size, sizeof *sh) != SHK_OK)
        return NULL;
    return sh;
}

int shk_redis_setup(shk_zone_t *zone)
{
    redis_shared_t *sh;
    if (!zone)
        return shk_error(SHK_EINVAL, "NULL zone");
    if (shk_zone_rdonly(zone))
        return shk_error(SHK_EPERM, "zone \"%s\" is read-only", shk_zone_name(zone));
    if (shk_zone_root(zone, SHK_REDIS_ROOT))
        return shk_redis_shared(zone) ? SHK_OK : shk_last_error();
    sh = shk_slab_alloc(shk_zone_slab(zone), sizeof *sh);
    if (!sh)
        return shk_error(SHK_ENOMEM, "zone \"%s\": no room for the redis link record",
                         shk_zone_name(zone));
    memset(sh, 0, sizeof *sh);
    sh->version = SHK_REDIS_VERSION;
    sh->size = sizeof *sh;
    /* Release: a reader that sees the magic (acquire) sees every field. */
    SHK_STORE_RELEASE(sh->magic, SHK_REDIS_MAGIC);
    if (shk_zone_root_set(zone, SHK_REDIS_ROOT, sh) != SHK_OK) {
        shk_slab_free(shk_zone_slab(zone), sh);
        return shk_last_error();
    }
    return SHK_OK;
}

int shk_redis_stats(shk_zone_t *zone, shk_redis_stats_t *st)
{
    redis_shared_t *sh;
    uint64_t now = shk_time_ms(), down;
    if (!st)
        return shk_error(SHK_EINVAL, "NULL stats");
    memset(st, 0, sizeof *st);
    if (!(sh = shk_redis_shared(zone)))
        return shk_last_error();
    /* Relaxed: each counter stands alone (a snapshot). */
    st->pid = SHK_READ_ONCE(sh->pid);
    st->state = SHK_READ_ONCE(sh->state);
    st->cluster = SHK_READ_ONCE(sh->cluster);
    st->nodes = SHK_READ_ONCE(sh->nodes);
    st->reconnects = SHK_READ_ONCE(sh->reconnects);
    st->relayed = SHK_READ_ONCE(sh->relayed);
    st->caught_up = SHK_READ_ONCE(sh->caught_up);
    st->duplicates = SHK_READ_ONCE(sh->duplicates);
    st->catchups = SHK_READ_ONCE(sh->catchups);
    st->commands = SHK_READ_ONCE(sh->commands);
    st->published = SHK_READ_ONCE(sh->published);
    st->publish_errors = SHK_READ_ONCE(sh->publish_errors);
    st->refused = SHK_READ_ONCE(sh->refused);
    st->last_id_ms = SHK_READ_ONCE(sh->last_id_ms);
    down = SHK_READ_ONCE(sh->down_since_ms);
    if (st->state == SHK_REDIS_UP)
        st->lag_ms = SHK_READ_ONCE(sh->lag_ms);
    else
        st->lag_ms = down && now > down ? now - down : 0;
    return SHK_OK;
}

/* ---- ids and slots --------------------------------------------------------------------- */

int shk_redis_parse_id(const char *s, size_t len, shk_chan_msgid_t *id)
{
    uint64_t ms = 0, seq = 0;
    size_t i = 0, d;
    for (d = 0; i < len && s[i] >= '0' && s[i] <= '9'; i++, d++) {
        if (d == 19)
            return SHK_EINVAL;
        ms = ms * 10 + (uint64_t)(s[i] - '0');
    }
    if (!d || i == len || s[i++] != '-')
        return SHK_EINVAL;
    for (d = 0; i < len && s[i] >= '0' && s[i] <= '9'; i++, d++) {
        if (d == 10)
            return SHK_EINVAL;
        seq = seq * 10 + (uint64_t)(s[i] - '0');
    }
    if (!d || i != len || seq > UINT32_MAX)
        return SHK_EINVAL;
    id->time_ms = ms;
    id->tag = (uint32_t)seq;
    return SHK_OK;
}

unsigned shk_redis_slot(const char *id, size_t len)
{
    /* CRC-16/XMODEM (polynomial 0x1021, initial value 0), bit by bit: the
     * key hash of Redis Cluster. */
    uint16_t crc = 0;
    for (size_t i = 0; i < len; i++) {
        crc ^= (uint16_t)((uint16_t)(unsigned char)id[i] << 8);
        for (int b = 0; b < 8; b++)
            crc = (uint16_t)(crc & 0x8000 ? (crc << 1) ^ 0x1021 : crc << 1);
    }
    return crc & (REDIS_SLOTS - 1);
}
