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

/* One key=value of `channels_redis` (shk_conf_params). */
static int redis_param(shk_conf_t *cf, const char *k, const char *v, void *ctx)
{
    shk_cycle_t *cy = ctx;
    shk_redis_opts_t *o = &cy->redis_opts;
    (void)cf;
    if (strcmp(k, "password") == 0) {
        o->password = cy->redis_password;
        return shk_strlcpy_exact(cy->redis_password, sizeof cy->redis_password, v);
    }
    if (strcmp(k, "namespace") == 0) {
        o->ns = cy->redis_ns;
        return shk_strlcpy_exact(cy->redis_ns, sizeof cy->redis_ns, v);
    }
    if (strcmp(k, "timeout") == 0)
        return shk_proc_parse_ms(v, &o->publish_timeout_ms);
    if (strcmp(k, "connect_timeout") == 0)
        return shk_proc_parse_ms(v, &o->connect_timeout_ms);
    if (strcmp(k, "backoff") == 0)
        return shk_proc_parse_ms(v, &o->backoff_min_ms);
    if (strcmp(k, "backoff_max") == 0)
        return shk_proc_parse_ms(v, &o->backoff_max_ms);
    return SHK_ENOENT;
}

/* channels_redis URL [password=PW] [namespace=NS] [timeout=TIME]
 *                [connect_timeout=TIME] [backoff=TIME] [backoff_max=TIME]; */
int shk_proc_conf_redis(shk_conf_t *cf, int argc, char **argv, void *data)
{
    shk_cycle_t *cy = data;
    shk_redis_opts_t *o = &cy->redis_opts;
    int rc;
    if (cy->redis_on)
        return shk_conf_error(cf, "\"%s\" directive is duplicate", argv[0]);
    memset(o, 0, sizeof *o);
    if (shk_strlcpy_exact(cy->redis_url, sizeof cy->redis_url, argv[1]) != SHK_OK)
        return shk_conf_error(cf, "redis URL longer than %d bytes", SHK_REDIS_URL_MAX);
    o->url = cy->redis_url;
    if ((rc = shk_conf_params(cf, argc, argv, 2, redis_param, cy)) != SHK_OK)
        return rc;
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
