/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * push_redis.c: the publisher's path when the configuration has
 * channels_redis (docs/pushstream.md, "Several instances on Redis"). A
 * publish (POST/PUT, a WebSocket message when allowed) goes through the
 * instance's relay with shk_redis_publish and the HTTP request is held
 * until Redis answered: 200 with the channel's info once this instance's
 * store holds the message (the relay applies it from the announcement,
 * which may come just after the answer: the reply waits for it, at most
 * PUSH_REDIS_APPLY_WAIT_MS), 503 when Redis is unavailable, 504 when it did
 * not answer in time, 400 for a message the relay refused. A publisher
 * whose client left gets nothing; its publish completes as it would. The
 * relay's tick, and the link's figures for /channels-stats.
 */
#include "push.h"

#include "http.h"

#include <event2/event.h>
#include <stdlib.h>
#include <string.h>

/* A publish in flight (`pending`) or answered by Redis and waiting for the
 * local store to hold it (`waiting`). */
typedef struct push_rpub_s {
    struct push_rpub_s *next, *prev;
    push_srv_t *ps;
    const push_loc_t *pl;
    http_req_t *req;          /* NULL once the client left (or for a WebSocket's) */
    shk_chan_msgid_t msgid;   /* Redis's id, once accepted */
    uint64_t until_ms;        /* waiting: reply by then whatever the store says */
    char id[SHK_CHAN_ID_MAX + 1];
} push_rpub_t;

struct push_redis_s {
    shk_redis_t *r;           /* the worker's publisher (shk_worker_redis: not ours to close) */
    shk_zone_t *zone;         /* the store's zone, for shk_redis_stats */
    push_rpub_t *waiting;     /* answered, the store not there yet */
    struct event *wait_ev;    /* polls the store for them while any waits */
    uint64_t ws_failed;       /* WebSocket publishes that failed (logged once a second) */
    uint64_t ws_logged_ms;
};

/* ---- replies ----------------------------------------------------------------------- */

static void reply(http_req_t *req, const push_loc_t *pl, int status, const char *type,
                  const char *retry_after, const void *body, size_t len)
{
    const char *hdr[16];
    unsigned n = 0;
    hdr[n++] = "Content-Type";
    hdr[n++] = type;
    if (retry_after) {
        hdr[n++] = "Retry-After";
        hdr[n++] = retry_after;
    }
    n += push_cors(pl, 1, hdr + n);
    hdr[n] = NULL;
    if (http_reply(req, status, hdr, body, len) == SHK_EINVAL)
        http_reply_text(req, 500, "the reply's headers were refused\n");
}

static void reply_text(http_req_t *req, const push_loc_t *pl, int status, const char *text)
{
    push_buf_t b = {0};
    push_buf_str(&b, text);
    push_buf_str(&b, "\n");
    /* a 503 is the link being down: worth asking again soon (or elsewhere) */
    reply(req, pl, status, "text/plain; charset=utf-8", status == 503 ? "1" : NULL,
          b.failed ? "error\n" : b.p, b.failed ? 6 : b.len);
    push_buf_free(&b);
}

/* An error of shk_redis_publish or its callback as HTTP. */
static void reply_error(http_req_t *req, const push_loc_t *pl, int rc, const char *why,
                        size_t len, size_t max)
{
    push_buf_t b = {0};
    int st;
    switch (rc) {
    case SHK_EAGAIN: /* the link is down, no relay, its queue full, the link lost */
    case SHK_ENOMEM: /* (from the relay: out of memory there) */
        st = 503;
        push_buf_printf(&b, "Redis is unavailable: %s.", why);
        break;
    case SHK_ETIMEDOUT:
        st = 504;
        push_buf_printf(&b, "Redis did not answer in time: %s.", why);
        break;
    case SHK_ERANGE:
        st = len > max ? 413 : 400;
        push_buf_printf(&b, st == 413 ? "%s." : "Invalid message: %s.", why);
        break;
    case SHK_EINVAL:
        st = 400;
        push_buf_printf(&b, "Invalid message: %s.", why);
        break;
    default:
        st = 500;
        push_buf_printf(&b, "%s.", why);
        break;
    }
    reply_text(req, pl, st, b.p && !b.failed ? b.p : "Publish failed.");
    push_buf_free(&b);
}

/* The channel's info as this store has it; a channel it does not hold
 * (deleted here meanwhile) is shown empty. */
static void reply_info(push_rpub_t *p)
{
    shk_chan_info_t info;
    push_buf_t out = {0};
    if (shk_chan_info(p->ps->ch, p->id, &info) != SHK_OK) {
        memset(&info, 0, sizeof info);
        memcpy(info.id, p->id, sizeof info.id);
    }
    push_info_json(&out, &info);
    push_buf_str(&out, "\r\n");
    push_reply_json(p->req, p->pl, 200, &out);
    push_buf_free(&out);
}

/* ---- the publish's life ------------------------------------------------------------------ */

static void on_req_close(http_req_t *req, void *ctx)
{
    push_rpub_t *p = ctx;
    (void)req;
    p->req = NULL; /* the publish goes on; nobody hears of it */
}

static void waiting_unlink(push_redis_t *pr, push_rpub_t *p)
{
    if (p->prev)
        p->prev->next = p->next;
    else
        pr->waiting = p->next;
    if (p->next)
        p->next->prev = p->prev;
    p->next = p->prev = NULL;
}

static int id_reached(const shk_chan_msgid_t *have, const shk_chan_msgid_t *want)
{
    return have->time_ms > want->time_ms ||
           (have->time_ms == want->time_ms && have->tag >= want->tag);
}

/* 1 if `p` is done: answered (the store holds its message, or the wait is
 * over) or nobody to answer. */
static int try_finish(push_rpub_t *p, uint64_t now)
{
    shk_chan_info_t info;
    if (p->req) {
        int have = shk_chan_info(p->ps->ch, p->id, &info) == SHK_OK &&
                   id_reached(&info.last_id, &p->msgid);
        if (!have && now < p->until_ms)
            return 0;
        /* the relay applies the message from its announcement; past the
         * wait (a catch-up running, an announcement lost) the info is what
         * the store has: the message is in Redis all the same */
        reply_info(p);
    }
    return 1;
}

static void wait_poll(evutil_socket_t fd, short what, void *arg)
{
    push_redis_t *pr = arg;
    uint64_t now = shk_time_ms();
    (void)fd;
    (void)what;
    for (push_rpub_t *p = pr->waiting, *next; p; p = next) {
        next = p->next;
        if (try_finish(p, now)) {
            waiting_unlink(pr, p);
            free(p);
        }
    }
    if (!pr->waiting)
        event_del(pr->wait_ev);
}

static void on_done(int status, const shk_chan_msgid_t *id, const char *errmsg, void *ctx)
{
    push_rpub_t *p = ctx;
    push_redis_t *pr = p->ps->redis;
    if (!p->req || !pr) {
        free(p);
        return;
    }
    if (status != SHK_OK) {
        reply_error(p->req, p->pl, status, errmsg, 0, 0);
        free(p);
        return;
    }
    if (!p->pl->info_on_publish) {
        push_reply_text(p->req, p->pl, 200, "");
        free(p);
        return;
    }
    p->msgid = *id;
    p->until_ms = shk_time_ms() + PUSH_REDIS_APPLY_WAIT_MS;
    if (try_finish(p, 0)) {
        free(p);
        return;
    }
    struct timeval tv = {0, PUSH_REDIS_APPLY_POLL_MS * 1000};
    if (!pr->waiting && event_add(pr->wait_ev, &tv) != 0) {
        reply_info(p); /* no timer: answer with what the store has now */
        free(p);
        return;
    }
    p->next = pr->waiting;
    if (pr->waiting)
        pr->waiting->prev = p;
    pr->waiting = p;
}

/* ---- the handlers' entry points ------------------------------------------------------------ */

/* Channels that are each instance's own and never go through Redis. */
static int local_channel(const push_srv_t *ps, const char *id)
{
    return (ps->pm->events[0] && !strcmp(id, ps->pm->events)) ||
           (ps->pm->stats_channel[0] && !strcmp(id, ps->pm->stats_channel));
}

int push_redis_on(const push_srv_t *ps)
{
    return ps->redis != NULL;
}

void push_redis_publish(push_srv_t *ps, http_req_t *req, const push_loc_t *pl, const char *id,
                        const void *body, size_t len)
{
    push_rpub_t *p;
    int rc;
    if (local_channel(ps, id)) {
        push_buf_t b = {0};
        push_buf_printf(&b, "Channel \"%s\" is this instance's own (the events or stats "
                            "channel): it is not published through Redis.",
                        id);
        reply_text(req, pl, 403, b.p && !b.failed ? b.p : "Local channel.");
        push_buf_free(&b);
        return;
    }
    if (!(p = calloc(1, sizeof *p))) {
        reply_text(req, pl, 500, "Out of memory.");
        return;
    }
    p->ps = ps;
    p->pl = pl;
    p->req = req;
    memcpy(p->id, id, strlen(id) + 1); /* checked: at most SHK_CHAN_ID_MAX */
    rc = shk_redis_publish(ps->redis->r, id, body, len, http_req_header(req, "Event-Id"),
                           http_req_header(req, "Event-Type"), on_done, p);
    if (rc != SHK_OK) {
        free(p);
        reply_error(req, pl, rc, shk_last_errmsg(), len, ps->pm->max_body);
        return;
    }
    http_req_cbs_t cbs = {.on_close = on_req_close};
    http_req_watch(req, &cbs, p);
}

static void ws_done(int status, const shk_chan_msgid_t *id, const char *errmsg, void *ctx)
{
    push_rpub_t *p = ctx;
    push_redis_t *pr = p->ps->redis;
    (void)id;
    if (status != SHK_OK && pr) {
        uint64_t now = shk_time_ms();
        pr->ws_failed++;
        if (now - pr->ws_logged_ms >= 1000) { /* a publishing socket during an outage */
            shk_log(SHK_LOG_WARN, "websocket publish to \"%s\" through Redis: %s (%llu failed)",
                    p->id, errmsg, (unsigned long long)pr->ws_failed);
            pr->ws_logged_ms = now;
        }
    }
    free(p);
}

void push_redis_ws_publish(push_srv_t *ps, const char *id, const void *data, size_t len)
{
    push_rpub_t *p;
    if (local_channel(ps, id) || !(p = calloc(1, sizeof *p))) {
        shk_log(SHK_LOG_WARN, "websocket publish to \"%s\": %s", id,
                local_channel(ps, id) ? "this instance's own channel is not published "
                                        "through Redis"
                                      : "out of memory");
        return;
    }
    p->ps = ps;
    memcpy(p->id, id, strlen(id) + 1);
    if (shk_redis_publish(ps->redis->r, id, data, len, NULL, NULL, ws_done, p) != SHK_OK) {
        ws_done(shk_last_error(), NULL, shk_last_errmsg(), p);
    }
}

int push_redis_start(push_srv_t *ps)
{
    push_redis_t *pr;
    shk_redis_t *r;
    if (!ps->ch)
        return SHK_OK;
    if (!(r = shk_worker_redis(ps->w))) {
        /* SHK_ENOENT is "no channels_redis directive": publish locally */
        return shk_last_error() == SHK_ENOENT ? SHK_OK : shk_last_error();
    }
    if (!(pr = calloc(1, sizeof *pr)))
        return shk_error(SHK_ENOMEM, "the Redis publisher");
    pr->r = r;
    pr->zone = shk_worker_zone(ps->w, "shmkit_chan");
    pr->wait_ev = event_new(ps->base, -1, EV_PERSIST, wait_poll, pr);
    if (!pr->wait_ev) {
        free(pr);
        return shk_error(SHK_ENOMEM, "the Redis publisher's timer");
    }
    ps->redis = pr;
    return SHK_OK;
}

void push_redis_tick(push_srv_t *ps)
{
    if (ps->redis)
        shk_redis_tick(ps->redis->r);
}

void push_redis_stop(push_srv_t *ps)
{
    push_redis_t *pr = ps->redis;
    if (!pr)
        return;
    /* The HTTP server is gone (every held request's on_close ran): what
     * waits has nobody to answer. Publishes still in flight stay with the
     * worker's publisher, which holds them until the process ends. */
    while (pr->waiting) {
        push_rpub_t *p = pr->waiting;
        waiting_unlink(pr, p);
        free(p);
    }
    event_free(pr->wait_ev);
    free(pr);
    ps->redis = NULL;
}

void push_redis_stats_json(push_srv_t *ps, push_buf_t *b)
{
    shk_redis_stats_t st;
    if (!ps->redis)
        return;
    if (!ps->redis->zone || shk_redis_stats(ps->redis->zone, &st) != SHK_OK) {
        push_buf_str(b, ", \"redis\": null");
        return;
    }
    push_buf_printf(b,
                    ", \"redis\": {\"state\": \"%s\", \"cluster\": %u, \"nodes\": %u, "
                    "\"relay_pid\": %d, \"lag_ms\": %llu, \"reconnects\": %llu, "
                    "\"relayed\": %llu, \"caught_up\": %llu, \"duplicates\": %llu, "
                    "\"catchups\": %llu, \"commands\": %llu, \"published\": %llu, "
                    "\"publish_errors\": %llu, \"refused\": %llu}",
                    shk_redis_state_name(st.state), st.cluster, st.nodes, (int)st.pid,
                    (unsigned long long)st.lag_ms, (unsigned long long)st.reconnects,
                    (unsigned long long)st.relayed, (unsigned long long)st.caught_up,
                    (unsigned long long)st.duplicates, (unsigned long long)st.catchups,
                    (unsigned long long)st.commands, (unsigned long long)st.published,
                    (unsigned long long)st.publish_errors, (unsigned long long)st.refused);
}
