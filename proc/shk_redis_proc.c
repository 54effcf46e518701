/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * shk_redis_proc.c: the supervisor's part of channels across hosts
 * (docs/redis.md): the channels_redis directive, the relay process the
 * master runs after the workers of a generation (its own bus slot,
 * respawned and reaped like a worker, told to stop like one, but no
 * worker's sibling and never joined to the store), and shk_worker_redis,
 * a worker's publisher through it.
 */
#include "shk_proc_internal.h"

#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

/* timeout=, connect_timeout=, backoff=, backoff_max=: a duration in ms. */
static int redis_duration(const char *v, unsigned *out)
{
    unsigned ms;
    if (shk_parse_duration(v, &ms) != SHK_OK || ms == 0)
        return SHK_EINVAL;
    *out = ms;
    return SHK_OK;
}

/* channels_redis URL [password=PW] [namespace=NS] [timeout=TIME]
 *                [connect_timeout=TIME] [backoff=TIME] [backoff_max=TIME]; */
int shk_proc_conf_redis(shk_conf_t *cf, int argc, char **argv, void *data)
{
    shk_cycle_t *cy = data;
    shk_redis_opts_t *o = &cy->redis_opts;
    if (cy->redis_on)
        return shk_conf_error(cf, "\"%s\" directive is duplicate", argv[0]);
    memset(o, 0, sizeof *o);
    if (shk_strlcpy_exact(cy->redis_url, sizeof cy->redis_url, argv[1]) != SHK_OK)
        return shk_conf_error(cf, "redis URL longer than %d bytes", SHK_REDIS_URL_MAX);
    o->url = cy->redis_url;
    for (int i = 2; i < argc; i++) {
        const char *k, *v;
        size_t kl;
        int rc = shk_parse_kv(argv[i], &k, &kl, &v);
#define KEY(name) (rc == SHK_OK && kl == sizeof(name) - 1 && strncmp(k, name, kl) == 0)
        if (KEY("password")) {
            rc = shk_strlcpy_exact(cy->redis_password, sizeof cy->redis_password, v);
            o->password = cy->redis_password;
        } else if (KEY("namespace")) {
            rc = shk_strlcpy_exact(cy->redis_ns, sizeof cy->redis_ns, v);
            o->ns = cy->redis_ns;
        } else if (KEY("timeout")) {
            rc = redis_duration(v, &o->publish_timeout_ms);
        } else if (KEY("connect_timeout")) {
            rc = redis_duration(v, &o->connect_timeout_ms);
        } else if (KEY("backoff")) {
            rc = redis_duration(v, &o->backoff_min_ms);
        } else if (KEY("backoff_max")) {
            rc = redis_duration(v, &o->backoff_max_ms);
        } else {
            return shk_conf_error(cf, "invalid parameter \"%s\" in \"%s\" directive", argv[i],
                                  argv[0]);
        }
#undef KEY
        if (rc != SHK_OK)
            return shk_conf_error(cf, "invalid value in \"%s\" of \"%s\" directive", argv[i],
                                  argv[0]);
    }
    if (shk_redis_check_opts(o) != SHK_OK)
        return shk_conf_error(cf, "%s in \"%s\" directive", shk_last_errmsg(), argv[0]);
    cy->redis_on = 1;
    return SHK_OK;
}

int shk_proc_redis_done(shk_cycle_t *cy)
{
    if (!cy->redis_on)
        return SHK_OK;
    if (!cy->chan_size)
        return shk_error(SHK_ECONF, "\"channels_redis\" needs a \"channels\" directive (or "
                                    "a store the application declares)");
    if (cy->workers >= SHK_PROC_MAX_WORKERS)
        return shk_error(SHK_ECONF,
                         "with \"channels_redis\" at most %d workers (the relay takes a slot)",
                         SHK_PROC_MAX_WORKERS - 1);
    /* Redis keeps what the store keeps: the same count and age limits. */
    cy->redis_opts.max_stored = cy->chan_opts.max_stored;
    cy->redis_opts.ttl_ms = cy->chan_opts.ttl_ms;
    cy->redis_opts.max_message = cy->chan_opts.max_message;
    return SHK_OK;
}

unsigned shk_proc_nprocs(const shk_cycle_t *cy)
{
    return cy->workers + (cy->redis_on ? 1u : 0u);
}

int shk_proc_is_relay(const shk_cycle_t *cy, unsigned slot)
{
    return cy->redis_on && slot == cy->workers;
}

static int relay_stop(void *ctx)
{
    (void)ctx;
    return shk_worker_quitting();
}

void shk_proc_relay_main(const shk_app_t *app, shk_cycle_t *cy, unsigned slot)
{
    char title[16];
    int rc;
    (void)slot;
    snprintf(title, sizeof title, "%.6s:redis", shk_proc_app_name(app));
    prctl(PR_SET_NAME, title);
    shk_log(SHK_LOG_NOTICE, "redis relay %d started for %s", (int)getpid(), cy->redis_url);
    rc = shk_redis_run(cy->chan_zone, cy->chan, cy->bus, &cy->redis_opts, relay_stop, NULL);
    if (rc != SHK_OK)
        shk_log(SHK_LOG_ERR, "redis relay: %s", shk_last_errmsg());
    shk_proc_exit(cy, rc == SHK_OK ? 0 : 2);
}

shk_redis_t *shk_worker_redis(shk_worker_t *w)
{
    if (!w || !w->cycle || !w->cycle->redis_on) {
        shk_error(SHK_ENOENT, "no channels_redis directive");
        return NULL;
    }
    if (!w->redis)
        w->redis = shk_redis_client(w->cycle->chan_zone, w->cycle->bus, &w->cycle->redis_opts);
    return w->redis;
}
