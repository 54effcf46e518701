/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * shk_redis_client.c: the publisher's side (a worker): shk_redis_publish
 * checks the message, sends it to the relay as one bus alert and keeps the
 * callback until the relay's answer comes back on the bus (or the publish
 * times out, or the relay it went to is gone: shk_redis_tick). A link that
 * is not up is refused at once, without a round trip, from the state the
 * relay keeps in the zone.
 */
#include "shk_redis_internal.h"

#include <stdlib.h>
#include <string.h>

typedef struct rpend_s {
    struct rpend_s *next, *prev;
    uint64_t req;
    uint64_t sent_ms;
    pid_t relay;
    shk_redis_done_t done;
    void *ctx;
} rpend_t;

struct shk_redis_s {
    shk_zone_t *zone;
    redis_shared_t *sh;
    shk_bus_t *bus;
    size_t max_message;
    unsigned timeout_ms;
    uint64_t next_req;
    rpend_t *head, *tail; /* oldest first */
    unsigned npending;
    char *buf;
    size_t bufsz;
};

static void pend_unlink(shk_redis_t *r, rpend_t *p)
{
    if (p->prev)
        p->prev->next = p->next;
    else
        r->head = p->next;
    if (p->next)
        p->next->prev = p->prev;
    else
        r->tail = p->prev;
    r->npending--;
}

static void pend_finish(shk_redis_t *r, rpend_t *p, int status, const shk_chan_msgid_t *id,
                        const char *msg)
{
    shk_chan_msgid_t zero = {0, 0};
    pend_unlink(r, p);
    p->done(status, id ? id : &zero, msg ? msg : "", p->ctx);
    free(p);
}

static void on_ack(shk_bus_t *bus, const char *name, const void *data, size_t len, void *ctx)
{
    shk_redis_t *r = ctx;
    redis_ack_msg_t a;
    (void)bus;
    (void)name;
    if (len != sizeof a)
        return;
    memcpy(&a, data, sizeof a);
    a.errmsg[sizeof a.errmsg - 1] = '\0';
    /* Answers come in order, so the match is nearly always the oldest. */
    for (rpend_t *p = r->head; p; p = p->next)
        if (p->req == a.req) {
            shk_chan_msgid_t id = {a.time_ms, a.tag};
            int st = a.status;
            if (st > 0 || st < SHK_ERANGE)
                st = SHK_EAGAIN;
            pend_finish(r, p, st, &id, a.errmsg);
            return;
        }
}

shk_redis_t *shk_redis_client(shk_zone_t *zone, shk_bus_t *bus, const shk_redis_opts_t *o)
{
    shk_redis_t *r;
    redis_shared_t *sh;
    if (!bus) {
        shk_error(SHK_EINVAL, "NULL bus");
        return NULL;
    }
    if (!(sh = shk_redis_shared(zone)))
        return NULL;
    if (shk_bus_fd(bus) < 0) {
        shk_error(SHK_EPERM, "a redis publisher must join the bus first");
        return NULL;
    }
    if (!(r = calloc(1, sizeof *r))) {
        shk_error(SHK_ENOMEM, "redis publisher");
        return NULL;
    }
    r->zone = zone;
    r->sh = sh;
    r->bus = bus;
    r->max_message = o && o->max_message ? o->max_message : SHK_CHAN_DEFAULT_MESSAGE_MAX;
    r->timeout_ms = o && o->publish_timeout_ms ? o->publish_timeout_ms
                                               : SHK_REDIS_DEFAULT_PUBLISH_TIMEOUT_MS;
    r->next_req = 1;
    if (shk_bus_on(bus, SHK_REDIS_ALERT_ACK, on_ack, r) != SHK_OK) {
        free(r);
        return NULL;
    }
    return r;
}

static int event_len(const char *s, size_t *n, const char *what)
{
    *n = s ? strnlen(s, SHK_CHAN_EVENT_MAX + 1) : 0;
    if (*n > SHK_CHAN_EVENT_MAX)
        return shk_error(SHK_ERANGE, "%s is longer than %d bytes", what, SHK_CHAN_EVENT_MAX);
    for (size_t i = 0; i < *n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return shk_error(SHK_EINVAL, "%s has control byte 0x%02x at %zu", what,
                             (unsigned char)s[i], i);
    return SHK_OK;
}

int shk_redis_publish(shk_redis_t *r, const char *channel, const void *data, size_t len,
                      const char *event_id, const char *event_type, shk_redis_done_t done,
                      void *ctx)
{
    redis_pub_msg_t h;
    size_t chlen, eidlen, etlen, total;
    unsigned state;
    pid_t relay;
    rpend_t *p;
    char *b;
    int rc;

    if (!r || !done)
        return shk_error(SHK_EINVAL, "NULL publisher or callback");
    if (!data && len)
        return shk_error(SHK_EINVAL, "NULL data of %zu bytes", len);
    if ((rc = shk_chan_check_id(channel, SHK_CHAN_ID_MAX, &chlen)) != SHK_OK)
        return rc;
    if (len > r->max_message)
        return shk_error(SHK_ERANGE, "message of %zu bytes on channel \"%s\" is larger than %zu",
                         len, channel, r->max_message);
    if ((rc = event_len(event_id, &eidlen, "event id")) != SHK_OK ||
        (rc = event_len(event_type, &etlen, "event type")) != SHK_OK)
        return rc;
    /* Acquire: pairs with the relay's release of its pid. */
    relay = SHK_LOAD_ACQUIRE(r->sh->pid);
    state = SHK_READ_ONCE(r->sh->state);
    if (relay <= 0 || state < SHK_REDIS_SYNCING) {
        SHK_ADD_RELAXED(r->sh->refused, 1); /* many publishers: an atomic add */
        if (relay <= 0)
            return shk_error(SHK_EAGAIN, "no redis relay is running");
        return shk_error(SHK_EAGAIN, "the link to Redis is %s", shk_redis_state_name(state));
    }
    total = sizeof h + chlen + eidlen + etlen + len;
    if (total > r->bufsz) {
        if (!(b = realloc(r->buf, total)))
            return shk_error(SHK_ENOMEM, "a publish of %zu bytes", len);
        r->buf = b;
        r->bufsz = total;
    }
    if (!(p = calloc(1, sizeof *p)))
        return shk_error(SHK_ENOMEM, "a publish");
    memset(&h, 0, sizeof h);
    h.req = r->next_req++;
    h.chlen = (uint32_t)chlen;
    h.eidlen = (uint16_t)eidlen;
    h.etlen = (uint16_t)etlen;
    h.len = len;
    b = r->buf;
    memcpy(b, &h, sizeof h);
    b += sizeof h;
    memcpy(b, channel, chlen);
    b += chlen;
    if (eidlen)
        memcpy(b, event_id, eidlen);
    b += eidlen;
    if (etlen)
        memcpy(b, event_type, etlen);
    b += etlen;
    if (len)
        memcpy(b, data, len);
    rc = shk_bus_send(r->bus, relay, SHK_REDIS_ALERT_PUB, r->buf, total);
    if (rc != SHK_OK) {
        free(p);
        if (rc == SHK_ESRCH || rc == SHK_EAGAIN)
            SHK_ADD_RELAXED(r->sh->refused, 1);
        if (rc == SHK_ESRCH)
            return shk_error(SHK_EAGAIN, "the redis relay %d is gone", (int)relay);
        if (rc == SHK_EAGAIN)
            return shk_error(SHK_EAGAIN, "the redis relay's queue is full");
        return rc;
    }
    p->req = h.req;
    p->sent_ms = shk_time_ms();
    p->relay = relay;
    p->done = done;
    p->ctx = ctx;
    p->prev = r->tail;
    if (r->tail)
        r->tail->next = p;
    else
        r->head = p;
    r->tail = p;
    r->npending++;
    return SHK_OK;
}

unsigned shk_redis_pending(const shk_redis_t *r)
{
    return r ? r->npending : 0;
}

int shk_redis_tick(shk_redis_t *r)
{
    uint64_t now = shk_time_ms();
    int n = 0, alive = 1;
    pid_t checked = 0;
    if (!r)
        return 0;
    for (rpend_t *p = r->head, *next; p; p = next) {
        next = p->next;
        if (now - p->sent_ms >= r->timeout_ms) {
            pend_finish(r, p, SHK_ETIMEDOUT, NULL,
                        "Redis did not answer in time: the message may or may not be stored");
            n++;
            continue;
        }
        if (now - p->sent_ms < SHK_CHAN_TICK_MS)
            continue;
        if (p->relay != checked) { /* one look at /proc per relay and tick */
            checked = p->relay;
            alive = shk_pid_alive(checked);
        }
        if (!alive) {
            pend_finish(r, p, SHK_EAGAIN, NULL,
                        "the redis relay died before answering: the message may have been "
                        "stored");
            n++;
        }
    }
    return n;
}

void shk_redis_close(shk_redis_t *r)
{
    if (!r)
        return;
    while (r->head)
        pend_finish(r, r->head, SHK_EAGAIN, NULL, "the publisher was closed");
    shk_bus_on(r->bus, SHK_REDIS_ALERT_ACK, NULL, NULL);
    free(r->buf);
    free(r);
}
