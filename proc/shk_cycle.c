/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * shk_cycle.c: one configuration generation (a cycle). The supervisor's
 * built-in directives (worker_processes, listen, pid,
 * worker_shutdown_timeout, bus_queue, channels, channels_redis) and the zones' fill a cycle as the
 * file is read; shk_cycle_read reads a whole file into a new cycle, and
 * shk_cycle_start sets it up: its bus zone, its listening sockets (taken
 * over from the running generation when the address is the same, so a
 * reload never closes a port), its zones (the channel store's among them)
 * and its bus. The accessors that
 * directive handlers and tools use live here too.
 */
#include "shk_proc_internal.h"

#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* ---- the built-in directives -------------------------------------------------- */

static int conf_worker_processes(shk_conf_t *cf, int argc, char **argv, void *data)
{
    shk_cycle_t *cy = data;
    char *end;
    unsigned long n;
    (void)argc;
    if (strcmp(argv[1], "auto") == 0) {
        n = shk_ncpu();
    } else {
        errno = 0;
        n = strtoul(argv[1], &end, 10);
        if (!argv[1][0] || *end || errno || argv[1][0] == '-' || n == 0)
            return shk_conf_error(cf, "invalid value \"%s\" in \"%s\" directive", argv[1], argv[0]);
    }
    if (n > SHK_PROC_MAX_WORKERS)
        return shk_conf_error(cf, "\"%s\" is %lu, the most shmkit supports is %d", argv[0], n,
                              SHK_PROC_MAX_WORKERS);
    cy->workers = (unsigned)n;
    return SHK_OK;
}

static int conf_listen(shk_conf_t *cf, int argc, char **argv, void *data)
{
    shk_cycle_t *cy = data;
    (void)argc;
    if (cy->nlisten == SHK_PROC_MAX_LISTEN)
        return shk_conf_error(cf, "too many \"listen\" directives (at most %d)",
                              SHK_PROC_MAX_LISTEN);
    if (strlen(argv[1]) >= sizeof cy->listen[0].addr)
        return shk_conf_error(cf, "listen address \"%s\" is too long", argv[1]);
    for (unsigned i = 0; i < cy->nlisten; i++)
        if (strcmp(cy->listen[i].addr, argv[1]) == 0)
            return shk_conf_error(cf, "duplicate listen %s", argv[1]);
    strcpy(cy->listen[cy->nlisten].addr, argv[1]);
    cy->listen[cy->nlisten].fd = -1;
    cy->nlisten++;
    return SHK_OK;
}

static int conf_pid(shk_conf_t *cf, int argc, char **argv, void *data)
{
    shk_cycle_t *cy = data;
    const char *file = shk_conf_file(cf), *slash = strrchr(file, '/');
    int n;
    (void)argc;
    if (!argv[1][0])
        return shk_conf_error(cf, "empty pid file path");
    /* A relative path is relative to the directory of the file that names
     * it, not to wherever the server was started from. */
    if (argv[1][0] == '/' || !slash)
        n = snprintf(cy->pid_path, sizeof cy->pid_path, "%s", argv[1]);
    else
        n = snprintf(cy->pid_path, sizeof cy->pid_path, "%.*s/%s", (int)(slash - file), file,
                     argv[1]);
    if (n < 0 || (size_t)n >= sizeof cy->pid_path)
        return shk_conf_error(cf, "pid file path is too long");
    return SHK_OK;
}

static int conf_shutdown_timeout(shk_conf_t *cf, int argc, char **argv, void *data)
{
    shk_cycle_t *cy = data;
    (void)argc;
    if (shk_parse_duration(argv[1], &cy->shutdown_timeout_ms) != SHK_OK)
        return shk_conf_error(cf, "invalid value \"%s\" in \"%s\" directive", argv[1], argv[0]);
    return SHK_OK;
}

static int conf_bus_queue(shk_conf_t *cf, int argc, char **argv, void *data)
{
    shk_cycle_t *cy = data;
    size_t sz;
    if (shk_parse_size(argv[1], &sz) != SHK_OK || sz < 4096)
        return shk_conf_error(cf, "invalid bus queue size \"%s\" (at least 4k)", argv[1]);
    cy->bus_queue = sz;
    if (argc > 2) {
        const char *k, *v;
        size_t kl;
        if (shk_parse_kv(argv[2], &k, &kl, &v) != SHK_OK || kl != 5 || strncmp(k, "large", 5) ||
            shk_parse_size(v, &sz) != SHK_OK)
            return shk_conf_error(cf, "invalid parameter \"%s\"", argv[2]);
        cy->bus_extra = sz;
    }
    return SHK_OK;
}

/* A count parameter of `channels`: 1 .. SHK_CHAN_UNLIMITED - 1. */
static int chan_count(const char *v, unsigned *out)
{
    char *end;
    unsigned long n;
    errno = 0;
    n = strtoul(v, &end, 10);
    if (!v[0] || *end || errno || v[0] == '-' || v[0] == '+' || n == 0 || n >= SHK_CHAN_UNLIMITED)
        return SHK_EINVAL;
    *out = (unsigned)n;
    return SHK_OK;
}

int shk_proc_parse_ms(const char *v, unsigned *out)
{
    unsigned ms;
    if (shk_parse_duration(v, &ms) != SHK_OK || ms == 0)
        return SHK_EINVAL;
    *out = ms;
    return SHK_OK;
}

/* ttl=, inactivity=: a duration, or "off" (never). */
static int chan_duration(const char *v, int64_t *out)
{
    unsigned ms;
    if (strcmp(v, "off") == 0) {
        *out = -1;
        return SHK_OK;
    }
    if (shk_proc_parse_ms(v, &ms) != SHK_OK)
        return SHK_EINVAL;
    *out = ms;
    return SHK_OK;
}

/* One key=value of `channels` (shk_conf_params). */
static int chan_param(shk_conf_t *cf, const char *k, const char *v, void *ctx)
{
    shk_cycle_t *cy = ctx;
    shk_chan_opts_t *o = &cy->chan_opts;
    size_t n;
    int rc;
    if (strcmp(k, "slots") == 0) {
        rc = chan_count(v, &o->slots);
        if (rc == SHK_OK && o->slots > SHK_CHAN_MAX_SLOTS)
            return shk_conf_error(cf, "\"slots=%s\": at most %d", v, SHK_CHAN_MAX_SLOTS);
        return rc;
    }
    if (strcmp(k, "store_messages") == 0)
        return strcmp(v, "on") == 0    ? (o->store_messages = 1, SHK_OK)
               : strcmp(v, "off") == 0 ? (o->store_messages = 0, SHK_OK)
                                       : SHK_EINVAL;
    if (strcmp(k, "max_stored") == 0)
        return chan_count(v, &o->max_stored);
    if (strcmp(k, "max_channels") == 0)
        return chan_count(v, &o->max_channels);
    if (strcmp(k, "max_wildcard_channels") == 0)
        return chan_count(v, &o->max_wildcard_channels);
    if (strcmp(k, "max_subscribers") == 0)
        return chan_count(v, &o->max_subscribers);
    if (strcmp(k, "max_wildcard") == 0)
        return chan_count(v, &o->max_wildcard);
    if (strcmp(k, "max_id") == 0) {
        rc = chan_count(v, &o->max_id_len);
        if (rc == SHK_OK && o->max_id_len > SHK_CHAN_ID_MAX)
            return shk_conf_error(cf, "\"max_id=%s\": at most %d", v, SHK_CHAN_ID_MAX);
        return rc;
    }
    if (strcmp(k, "max_message") == 0) {
        rc = shk_parse_size(v, &o->max_message);
        if (rc == SHK_OK && (o->max_message == 0 || o->max_message > SHK_CHAN_MESSAGE_MAX))
            rc = SHK_EINVAL;
        return rc;
    }
    if (strcmp(k, "ttl") == 0)
        return chan_duration(v, &o->ttl_ms);
    if (strcmp(k, "inactivity") == 0)
        return chan_duration(v, &o->inactivity_ms);
    if (strcmp(k, "wildcard") == 0) {
        if (shk_chan_check_id(v, SHK_CHAN_PREFIX_MAX, &n) != SHK_OK)
            return shk_conf_error(cf, "invalid wildcard prefix: %s", shk_last_errmsg());
        memcpy(cy->chan_prefix, v, n + 1);
        o->wildcard_prefix = cy->chan_prefix;
        return SHK_OK;
    }
    if (strcmp(k, "events") == 0) {
        if (shk_chan_check_id(v, SHK_CHAN_ID_MAX, &n) != SHK_OK)
            return shk_conf_error(cf, "invalid events channel: %s", shk_last_errmsg());
        memcpy(cy->chan_events, v, n + 1);
        o->events_channel = cy->chan_events;
        return SHK_OK;
    }
    return SHK_ENOENT;
}

/* channels SIZE [key=value ...]: a channel store in the zone shmkit_chan
 * (docs/proc.md lists the keys). */
static int conf_channels(shk_conf_t *cf, int argc, char **argv, void *data)
{
    shk_cycle_t *cy = data;
    shk_chan_opts_t *o = &cy->chan_opts;
    size_t sz;
    int rc;
    if (cy->chan_size)
        return shk_conf_error(cf, "\"channels\" directive is duplicate");
    if (shk_parse_size(argv[1], &sz) != SHK_OK || sz == 0)
        return shk_conf_error(cf, "invalid channel store size \"%s\"", argv[1]);
    memset(o, 0, sizeof *o);
    if ((rc = shk_conf_params(cf, argc, argv, 2, chan_param, cy)) != SHK_OK)
        return rc;
    if (o->events_channel && o->max_id_len && strlen(o->events_channel) > o->max_id_len)
        return shk_conf_error(cf, "events channel \"%s\" is longer than max_id=%u",
                              o->events_channel, o->max_id_len);
    cy->chan_size = sz;
    return SHK_OK;
}

int shk_cycle_set_chan(shk_cycle_t *cy, size_t size, const shk_chan_opts_t *opts)
{
    shk_chan_opts_t o = {0};
    size_t n;
    if (!cy || size == 0)
        return shk_error(SHK_EINVAL, "shk_cycle_set_chan: %s", cy ? "size 0" : "NULL cycle");
    if (cy->chan_size)
        return shk_error(SHK_EEXIST, "the configuration declares a channel store already");
    if (opts)
        o = *opts;
    if (o.slots > SHK_CHAN_MAX_SLOTS || o.max_id_len > SHK_CHAN_ID_MAX ||
        o.max_message > SHK_CHAN_MESSAGE_MAX)
        return shk_error(SHK_EINVAL, "channel store: slots %u (at most %d), max_id_len %u (at "
                                     "most %d), max_message %zu (at most 4 GiB - 1)",
                         o.slots, SHK_CHAN_MAX_SLOTS, o.max_id_len, SHK_CHAN_ID_MAX,
                         o.max_message);
    if (o.wildcard_prefix && *o.wildcard_prefix) {
        if (shk_chan_check_id(o.wildcard_prefix, SHK_CHAN_PREFIX_MAX, &n) != SHK_OK)
            return shk_error(SHK_EINVAL, "invalid wildcard prefix: %s", shk_last_errmsg());
        memcpy(cy->chan_prefix, o.wildcard_prefix, n + 1);
        o.wildcard_prefix = cy->chan_prefix;
    } else {
        o.wildcard_prefix = NULL;
    }
    if (o.events_channel && *o.events_channel) {
        size_t max = o.max_id_len ? o.max_id_len : SHK_CHAN_ID_MAX;
        if (shk_chan_check_id(o.events_channel, max, &n) != SHK_OK)
            return shk_error(SHK_EINVAL, "invalid events channel: %s", shk_last_errmsg());
        memcpy(cy->chan_events, o.events_channel, n + 1);
        o.events_channel = cy->chan_events;
    } else {
        o.events_channel = NULL;
    }
    cy->chan_opts = o;
    cy->chan_size = size;
    return SHK_OK;
}

size_t shk_cycle_chan_size(const shk_cycle_t *cy)
{
    return cy ? cy->chan_size : 0;
}

int shk_proc_conf(shk_conf_t *cf, shk_cycle_t *cy)
{
    int rc;
    if (!cf || !cy)
        return shk_error(SHK_EINVAL, "NULL argument");
    cy->dirs[0] = (shk_conf_directive_t){"worker_processes", SHK_CONF_MAIN, SHK_CONF_TAKE1,
                                         conf_worker_processes, 0, cy};
    cy->dirs[1] = (shk_conf_directive_t){"listen", SHK_CONF_ANY, SHK_CONF_TAKE1, conf_listen, 0,
                                         cy};
    cy->dirs[2] = (shk_conf_directive_t){"pid", SHK_CONF_MAIN, SHK_CONF_TAKE1, conf_pid, 0, cy};
    cy->dirs[3] = (shk_conf_directive_t){"worker_shutdown_timeout", SHK_CONF_MAIN,
                                         SHK_CONF_TAKE1, conf_shutdown_timeout, 0, cy};
    cy->dirs[4] = (shk_conf_directive_t){"bus_queue", SHK_CONF_MAIN,
                                         SHK_CONF_TAKE1 | SHK_CONF_TAKE2, conf_bus_queue, 0, cy};
    cy->dirs[5] = (shk_conf_directive_t){"channels", SHK_CONF_MAIN, SHK_CONF_1MORE,
                                         conf_channels, 0, cy};
    cy->dirs[6] = (shk_conf_directive_t){"channels_redis", SHK_CONF_MAIN, SHK_CONF_1MORE,
                                         shk_proc_conf_redis, 0, cy};
    memset(&cy->dirs[7], 0, sizeof cy->dirs[7]);
    if ((rc = shk_conf_add(cf, cy->dirs)) != SHK_OK)
        return rc;
    return shk_zones_conf(cy->zones, cf);
}

/* ---- a cycle ----------------------------------------------------------------------- */

shk_cycle_t *shk_cycle_new(const shk_app_t *app)
{
    shk_cycle_t *cy = calloc(1, sizeof *cy);
    if (!cy) {
        shk_error(SHK_ENOMEM, "out of memory");
        return NULL;
    }
    cy->app = app;
    cy->workers = 1;
    cy->bus_queue = SHK_PROC_DEFAULT_BUS_QUEUE;
    cy->bus_extra = SHK_PROC_DEFAULT_BUS_EXTRA;
    cy->zones = shk_zones_new(NULL);
    if (!cy->zones) {
        free(cy);
        return NULL;
    }
    for (unsigned i = 0; i < SHK_PROC_MAX_LISTEN; i++)
        cy->listen[i].fd = -1;
    if (app && app->conf_create)
        cy->app_conf = app->conf_create(cy, app->ctx);
    return cy;
}

void shk_cycle_free(shk_cycle_t *cy)
{
    if (!cy)
        return;
    shk_chan_close(cy->chan);
    if (cy->bus)
        shk_bus_close(cy->bus);
    for (unsigned i = 0; i < cy->nlisten; i++)
        if (cy->listen[i].owned == SHK_PROC_LISTEN_OWNED && cy->listen[i].fd >= 0)
            close(cy->listen[i].fd);
    if (cy->app && cy->app->conf_free && cy->app_conf)
        cy->app->conf_free(cy->app_conf, cy->app->ctx);
    shk_zones_free(cy->zones);
    free(cy);
}

shk_cycle_t *shk_cycle_from_conf(shk_conf_t *cf)
{
    return shk_conf_user(cf);
}

shk_zones_t *shk_cycle_zones(shk_cycle_t *cy)
{
    return cy ? cy->zones : NULL;
}

void *shk_cycle_app_conf(shk_cycle_t *cy)
{
    return cy ? cy->app_conf : NULL;
}

unsigned shk_cycle_workers(const shk_cycle_t *cy)
{
    return cy ? cy->workers : 0;
}

const char *shk_proc_app_name(const shk_app_t *app)
{
    return app && app->name ? app->name : "shmkit";
}

shk_cycle_t *shk_cycle_read(const char *conf_path, const shk_app_t *app)
{
    shk_cycle_t *cy;
    shk_conf_t *cf;
    int rc;

    if (!conf_path) {
        shk_error(SHK_EINVAL, "no configuration file");
        return NULL;
    }
    if (!(cy = shk_cycle_new(app)))
        return NULL;
    cf = shk_conf_new(cy);
    if (!cf) {
        shk_cycle_free(cy);
        return NULL;
    }
    rc = shk_proc_conf(cf, cy);
    if (rc == SHK_OK && app && app->directives)
        rc = shk_conf_add(cf, app->directives);
    if (rc == SHK_OK)
        rc = shk_conf_parse(cf, conf_path);
    if (rc == SHK_OK && app && app->conf_done)
        rc = app->conf_done(cy, cy->app_conf, app->ctx);
    /* after conf_done: the store may be the application's (shk_cycle_set_chan) */
    if (rc == SHK_OK)
        rc = shk_proc_redis_done(cy);
    shk_conf_free(cf);
    if (rc != SHK_OK) {
        /* Freeing a cycle that was never started sets no error: the
         * reader's message stays the last one. */
        shk_cycle_free(cy);
        if (rc > 0) /* a conf_done that returned a positive status */
            shk_error(SHK_ECONF, "%s", shk_last_errmsg());
        return NULL;
    }
    return cy;
}

int shk_master_check(const char *conf_path, const shk_app_t *app)
{
    shk_cycle_t *cy = shk_cycle_read(conf_path, app);
    if (!cy)
        return shk_last_error();
    shk_cycle_free(cy);
    return SHK_OK;
}

/* ---- listening sockets --------------------------------------------------------- */

static int open_listener(shk_proc_listener_t *l)
{
    char host[sizeof l->addr + 2], *port, *h;
    struct addrinfo hints = {0}, *res = NULL, *ai;
    int fd = -1, rc, one = 1;

    /* "8080" means "*:8080"; the address fits (checked by the directive). */
    snprintf(host, sizeof host, "%s%s", strrchr(l->addr, ':') ? "" : "*:", l->addr);
    port = strrchr(host, ':');
    *port++ = '\0';
    h = host;
    if (*h == '[') {
        char *e = strchr(++h, ']');
        if (e)
            *e = '\0';
    }
    if (strcmp(h, "*") == 0 || !*h)
        h = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    rc = getaddrinfo(h, port, &hints, &res);
    if (rc != 0)
        return shk_error(SHK_ECONF, "invalid listen address \"%s\": %s", l->addr,
                         gai_strerror(rc));
    for (ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                    ai->ai_protocol);
        if (fd < 0)
            continue;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, 511) == 0)
            break;
        rc = errno;
        close(fd);
        fd = -1;
        errno = rc;
    }
    freeaddrinfo(res);
    if (fd < 0)
        return shk_error(SHK_ESYS, "bind() to %s failed (%s)", l->addr, strerror(errno));
    l->fd = fd;
    l->owned = SHK_PROC_LISTEN_OWNED;
    return SHK_OK;
}

/* The start failed: borrowed sockets stay the old cycle's. */
static void return_listeners(shk_cycle_t *cy)
{
    for (unsigned i = 0; i < cy->nlisten; i++)
        if (cy->listen[i].owned == SHK_PROC_LISTEN_BORROWED)
            cy->listen[i].owned = SHK_PROC_LISTEN_NOT_OWNED;
}

/* Open cy's sockets, borrowing those `old` already has for the same
 * address. On failure the sockets opened here are closed again and the
 * borrowed ones stay old's. */
static int open_listeners(shk_cycle_t *cy, shk_cycle_t *old)
{
    for (unsigned i = 0; i < cy->nlisten; i++) {
        shk_proc_listener_t *l = &cy->listen[i];
        for (unsigned j = 0; old && j < old->nlisten; j++)
            if (old->listen[j].owned == SHK_PROC_LISTEN_OWNED &&
                strcmp(old->listen[j].addr, l->addr) == 0) {
                l->fd = old->listen[j].fd;
                l->owned = SHK_PROC_LISTEN_BORROWED;
            }
        if (l->fd < 0) {
            int rc = open_listener(l);
            if (rc != SHK_OK) {
                for (unsigned k = 0; k < i; k++)
                    if (cy->listen[k].owned == SHK_PROC_LISTEN_OWNED) {
                        close(cy->listen[k].fd);
                        cy->listen[k].fd = -1;
                        cy->listen[k].owned = SHK_PROC_LISTEN_NOT_OWNED;
                    }
                return_listeners(cy);
                return rc;
            }
        }
    }
    return SHK_OK;
}

/* The start succeeded: borrowed sockets now belong to the new cycle. */
static void commit_listeners(shk_cycle_t *cy, shk_cycle_t *old)
{
    for (unsigned i = 0; i < cy->nlisten; i++) {
        if (cy->listen[i].owned != SHK_PROC_LISTEN_BORROWED)
            continue;
        cy->listen[i].owned = SHK_PROC_LISTEN_OWNED;
        for (unsigned j = 0; old && j < old->nlisten; j++)
            if (old->listen[j].fd == cy->listen[i].fd)
                old->listen[j].owned = SHK_PROC_LISTEN_NOT_OWNED;
    }
}

/* ---- starting a generation ----------------------------------------------------- */

size_t shk_cycle_bus_size(const shk_cycle_t *cy)
{
    /* What the bus itself needs (the bus's business: shk_bus_zone_size),
     * plus the room for large alerts the configuration asks for. The
     * directives bound both terms, so this cannot overflow size_t. */
    return shk_bus_zone_size(shk_proc_nprocs(cy), cy->bus_queue) + cy->bus_extra;
}

/* The channel zone's init, in shk_zones_create: a kept zone's store is
 * opened and given this generation's limits, a fresh zone gets a new one. */
static int chan_zone_init(shk_zone_t *zone, void *old_data, void *ctx)
{
    shk_cycle_t *cy = ctx;
    (void)old_data;
    if (shk_zone_root(zone, "chan")) {
        int rc;
        if (!(cy->chan = shk_chan_open(zone, 0)))
            return shk_last_error();
        rc = shk_chan_reconfigure(cy->chan, &cy->chan_opts);
        if (rc == SHK_ETIMEDOUT) {
            /* A worker keeps the lock: the old limits stay, the reload goes on. */
            shk_log(SHK_LOG_WARN, "%s; the channel store keeps its limits", shk_last_errmsg());
            rc = SHK_OK;
        }
        return rc == SHK_OK && cy->redis_on ? shk_redis_setup(zone) : rc;
    }
    cy->chan = shk_chan_create(zone, &cy->chan_opts);
    if (!cy->chan)
        return shk_last_error();
    return cy->redis_on ? shk_redis_setup(zone) : SHK_OK;
}

/* Declare the channel zone, if the configuration asks for a store. Its tag
 * carries the slot count, the one setting the layout depends on: a reload
 * that changes it gets a new store. */
static int declare_chan_zone(shk_cycle_t *cy)
{
    char tag[48];
    unsigned slots = cy->chan_opts.slots;
    if (!cy->chan_size)
        return SHK_OK;
    if (!slots) /* both generations of a reload fit */
        slots = cy->workers * 2 > SHK_CHAN_MAX_SLOTS ? SHK_CHAN_MAX_SLOTS : cy->workers * 2;
    cy->chan_opts.slots = slots;
    snprintf(tag, sizeof tag, "chan:%u", slots);
    cy->chan_zone = shk_zone_add(cy->zones, SHK_PROC_CHAN_ZONE, cy->chan_size, tag);
    if (!cy->chan_zone)
        return shk_last_error();
    return shk_zone_set_init(cy->chan_zone, chan_zone_init, cy);
}

int shk_cycle_start(shk_cycle_t *cy, shk_cycle_t *old, uint64_t generation)
{
    char tag[48];
    int rc;

    cy->generation = generation;
    /* A fresh bus zone for every generation (its tag carries the
     * generation): the retiring workers keep their own until they exit. */
    snprintf(tag, sizeof tag, "bus:%llu", (unsigned long long)generation);
    cy->bus_zone = shk_zone_add(cy->zones, SHK_PROC_BUS_ZONE, shk_cycle_bus_size(cy), tag);
    if (!cy->bus_zone)
        return shk_last_error();
    if ((rc = declare_chan_zone(cy)) != SHK_OK)
        return rc;
    if ((rc = open_listeners(cy, old)) != SHK_OK)
        return rc;
    if ((rc = shk_zones_create(cy->zones, old ? old->zones : NULL)) != SHK_OK) {
        return_listeners(cy);
        return rc;
    }
    cy->bus = shk_bus_create(cy->bus_zone, shk_proc_nprocs(cy), cy->bus_queue);
    if (!cy->bus) {
        rc = shk_error(shk_last_error(), "the bus of generation %llu: %s",
                       (unsigned long long)generation, shk_last_errmsg());
        /* Gives adopted zones back to `old`. It cannot fail here (the
         * registry was created by this process), and sets no error when
         * it succeeds, so the message above stays. */
        shk_zones_undo(cy->zones);
        return_listeners(cy);
        return rc;
    }
    shk_chan_set_bus(cy->chan, cy->bus); /* the master may publish */
    commit_listeners(cy, old);
    return SHK_OK;
}
