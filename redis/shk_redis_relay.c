/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * shk_redis_relay.c: the relay process's work (shk_redis_run). Its loop
 * waits in epoll on the bus doorbell and the Redis connections
 * (shk_redis_link.c). Publishes come from the bus (SHK_REDIS_ALERT_PUB):
 * checked, run as one EVALSHA of the publish script, answered on the bus
 * (SHK_REDIS_ALERT_ACK; an answer the publisher's queue cannot take yet is
 * retried) once the local store holds the message (its announcement,
 * which comes with the answer, applied; HOLD_MS at most), so the publisher
 * finds it there at once. Announcements come from the subscription: each names its
 * channel, its id and the id before it in the stream; it is applied to the
 * local store with shk_chan_publish_id when the store holds that previous
 * id (or a later one), and is a duplicate when the store is past its id.
 * When the store is behind the previous id (an announcement was lost), the
 * channel is caught up from its stream (XRANGE) first. After every
 * (re)connect every local channel is caught up from its last id the same
 * way, announcements arriving meanwhile kept in order and applied after.
 * The store's last ids are the relay's position: a new relay resumes there.
 */
#include "shk_redis_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#define SYNC_PARALLEL 32      /* catch-up reads in flight at once */
#define SYNC_COUNT 256        /* entries per read */
#define BUF_MAX_BYTES (64u << 20) /* announcements kept during a catch-up */
#define LOOP_MS 100
#define HOLD_MS 20            /* an accepted publish's answer waits at most this for the store */

typedef struct rack_s {
    struct rack_s *next;
    pid_t pid;
    redis_ack_msg_t ack;
} rack_t;

/* An accepted publish whose answer waits until this instance's store holds
 * the message (its announcement is applied), so that the publisher's next
 * look at the store finds it; HOLD_MS at most. */
typedef struct rhold_s {
    struct rhold_s *next;
    pid_t pid;
    uint64_t req, until_ms;
    shk_chan_msgid_t id;
    char chan[SHK_CHAN_ID_MAX + 1];
} rhold_t;

static int id_cmp(const shk_chan_msgid_t *a, const shk_chan_msgid_t *b)
{
    if (a->time_ms != b->time_ms)
        return a->time_ms < b->time_ms ? -1 : 1;
    return a->tag < b->tag ? -1 : a->tag > b->tag;
}

/* ---- answers to publishers ---------------------------------------------------------- */

static void ack_send(relay_t *r, pid_t pid, uint64_t req, int status, const shk_chan_msgid_t *id,
                     const char *msg)
{
    rack_t *a;
    redis_ack_msg_t m;
    memset(&m, 0, sizeof m);
    m.req = req;
    m.status = status;
    if (id) {
        m.time_ms = id->time_ms;
        m.tag = id->tag;
    }
    snprintf(m.errmsg, sizeof m.errmsg, "%s", msg ? msg : "");
    if (status == SHK_OK)
        SHK_ADD_SOLE(r->sh->published, 1);
    else
        SHK_ADD_SOLE(r->sh->publish_errors, 1);
    if (!r->acks && shk_bus_send(r->bus, pid, SHK_REDIS_ALERT_ACK, &m, sizeof m) != SHK_EAGAIN)
        return; /* sent, or the publisher is gone */
    if (!(a = malloc(sizeof *a))) {
        shk_log(SHK_LOG_ERR, "redis relay: out of memory: an answer to %d lost", (int)pid);
        return;
    }
    a->pid = pid;
    a->ack = m;
    a->next = NULL;
    rack_t **pp = &r->acks;
    while (*pp)
        pp = &(*pp)->next;
    *pp = a;
}

/* Answers kept because a queue was full, in order, while they go. */
static void acks_retry(relay_t *r)
{
    while (r->acks) {
        rack_t *a = r->acks;
        if (shk_bus_send(r->bus, a->pid, SHK_REDIS_ALERT_ACK, &a->ack, sizeof a->ack) ==
            SHK_EAGAIN)
            return;
        r->acks = a->next;
        free(a);
    }
}

/* 1 if the store's channel holds id (or a later one). */
static int store_has(relay_t *r, const char *chan, const shk_chan_msgid_t *id)
{
    shk_chan_info_t in;
    return shk_chan_info(r->ch, chan, &in) == SHK_OK && id_cmp(&in.last_id, id) >= 0;
}

/* Answer the held publishes whose message the store holds now, or whose
 * wait is over (all of them with force), in order. */
static void held_flush(relay_t *r, int force)
{
    rhold_t **pp = &r->held, *last = NULL;
    while (*pp) {
        rhold_t *h = *pp;
        if (force || r->now_ms >= h->until_ms || store_has(r, h->chan, &h->id)) {
            ack_send(r, h->pid, h->req, SHK_OK, &h->id, "");
            *pp = h->next;
            free(h);
        } else {
            last = h;
            pp = &h->next;
        }
    }
    r->held_tail = last;
}

/* ---- publishes ------------------------------------------------------------------------ */

static void on_published(relay_t *r, rcmd_t *c, redisReply *rep)
{
    pid_t pid = (pid_t)c->u64;
    uint64_t req = (uint64_t)(uintptr_t)c->ctx;
    shk_chan_msgid_t id;
    char msg[SHK_REDIS_ERRMSG_MAX + 1];
    if (!rep) {
        ack_send(r, pid, req, SHK_EAGAIN, NULL,
                 "the link to Redis was lost before the answer: the message may have been "
                 "stored");
    } else if (rep->type == REDIS_REPLY_ERROR) {
        snprintf(msg, sizeof msg, "Redis refused the publish: %.*s", (int)rep->len, rep->str);
        ack_send(r, pid, req, SHK_EAGAIN, NULL, msg);
    } else if (rep->type != REDIS_REPLY_STRING ||
               shk_redis_parse_id(rep->str, rep->len, &id) != SHK_OK) {
        ack_send(r, pid, req, SHK_EAGAIN, NULL, "Redis answered the publish with no stream id");
    } else {
        /* the announcement usually comes with the answer: hold the answer
         * until it is applied (held_flush after the epoll batch) */
        rhold_t *h = c->argc > 6 && c->argvlen[6] <= SHK_CHAN_ID_MAX ? malloc(sizeof *h) : NULL;
        if (!h) {
            ack_send(r, pid, req, SHK_OK, &id, "");
            return;
        }
        h->next = NULL;
        h->pid = pid;
        h->req = req;
        h->id = id;
        h->until_ms = r->now_ms + HOLD_MS;
        memcpy(h->chan, c->argv[6], c->argvlen[6]); /* the channel (on_pub_alert's argv) */
        h->chan[c->argvlen[6]] = '\0';
        if (r->held_tail)
            r->held_tail->next = h;
        else
            r->held = h;
        r->held_tail = h;
    }
}

static int ok_event(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return 0;
    return 1;
}

static void on_pub_alert(shk_bus_t *bus, const char *name, const void *data, size_t len,
                         void *ctx)
{
    relay_t *r = ctx;
    pid_t pid = shk_bus_sender(bus);
    redis_pub_msg_t h;
    const char *p = (const char *)data + sizeof h, *chan, *eid, *et, *d;
    char key[SHK_REDIS_NS_MAX + SHK_CHAN_ID_MAX + 8], maxlen[24], ttl[24];
    (void)name;
    if (len < sizeof h)
        return;
    memcpy(&h, data, sizeof h);
    if (h.chlen == 0 || h.chlen > SHK_CHAN_ID_MAX || h.eidlen > SHK_CHAN_EVENT_MAX ||
        h.etlen > SHK_CHAN_EVENT_MAX || h.len > r->conf.max_message ||
        len - sizeof h != (uint64_t)h.chlen + h.eidlen + h.etlen + h.len) {
        ack_send(r, pid, h.req, SHK_EINVAL, NULL, "malformed publish request");
        return;
    }
    chan = p;
    eid = chan + h.chlen;
    et = eid + h.eidlen;
    d = et + h.etlen;
    {
        char id[SHK_CHAN_ID_MAX + 1];
        memcpy(id, chan, h.chlen);
        id[h.chlen] = '\0';
        if (strlen(id) != h.chlen || shk_chan_check_id(id, SHK_CHAN_ID_MAX, NULL) != SHK_OK ||
            !ok_event(eid, h.eidlen) || !ok_event(et, h.etlen)) {
            ack_send(r, pid, h.req, SHK_EINVAL, NULL, "invalid channel id or event string");
            return;
        }
    }
    if (r->state < SHK_REDIS_SYNCING) {
        char msg[SHK_REDIS_ERRMSG_MAX + 1];
        snprintf(msg, sizeof msg, "Redis link is %s%s%.150s", shk_redis_state_name(r->state),
                 r->last_error[0] ? ": " : "", r->last_error);
        ack_send(r, pid, h.req, SHK_EAGAIN, NULL, msg);
        return;
    }
    int klen = snprintf(key, sizeof key, "%s:{%.*s}", r->conf.ns, (int)h.chlen, chan);
    int mlen = snprintf(maxlen, sizeof maxlen, "%u", r->conf.max_stored);
    int tlen = snprintf(ttl, sizeof ttl, "%lld", (long long)(r->conf.ttl_ms > 0 ? r->conf.ttl_ms : 0));
    const char *argv[] = {"EVALSHA", r->sha, "1", key, maxlen, ttl, chan, d, eid, et, r->pubchan};
    size_t lens[] = {7, strlen(r->sha), 1, (size_t)klen, (size_t)mlen, (size_t)tlen,
                     h.chlen, (size_t)h.len, h.eidlen, h.etlen, strlen(r->pubchan)};
    rcmd_t *c = shk_redis_cmd_new(r, 11, argv, lens);
    if (!c) {
        ack_send(r, pid, h.req, SHK_ENOMEM, NULL, "the relay is out of memory");
        return;
    }
    c->slot = (int)shk_redis_slot(chan, h.chlen);
    c->done = on_published;
    c->ctx = (void *)(uintptr_t)h.req;
    c->u64 = (uint64_t)pid;
    shk_redis_cmd_send(r, c);
}

/* ---- applying messages ------------------------------------------------------------------ */

static void apply(relay_t *r, const char *chan, const shk_chan_msgid_t *id, const char *data,
                  size_t len, const char *eid, const char *et, int caught_up)
{
    int rc = shk_chan_publish_id(r->ch, chan, id, data, len, eid, et, NULL);
    if (rc == SHK_EEXIST) {
        SHK_ADD_SOLE(r->sh->duplicates, 1);
        return;
    }
    if (rc != SHK_OK) {
        shk_log(SHK_LOG_WARN, "redis relay: message %llu-%u of channel \"%s\" not stored: %s",
                (unsigned long long)id->time_ms, (unsigned)id->tag, chan, shk_last_errmsg());
        return;
    }
    uint64_t now = shk_time_ms();
    SHK_ADD_SOLE(r->sh->relayed, 1);
    if (caught_up)
        SHK_ADD_SOLE(r->sh->caught_up, 1);
    SHK_WRITE_ONCE(r->sh->last_id_ms, id->time_ms);
    SHK_WRITE_ONCE(r->sh->lag_ms, now > id->time_ms ? now - id->time_ms : 0);
}

/* ---- the catch-up ------------------------------------------------------------------------ */

static void sync_push(relay_t *r, const char *chan, const shk_chan_msgid_t *from, int incl)
{
    rsync_t *s = calloc(1, sizeof *s);
    if (!s) {
        shk_log(SHK_LOG_ERR, "redis relay: out of memory: channel \"%s\" not caught up", chan);
        return;
    }
    snprintf(s->id, sizeof s->id, "%s", chan);
    s->from = *from;
    s->incl = incl;
    if (r->sync_tail)
        r->sync_tail->next = s;
    else
        r->sync_head = s;
    r->sync_tail = s;
    r->syncing = 1;
}

static void sync_start(relay_t *r);
static void replay(relay_t *r);

/* An entry of XRANGE: [id, [field, value, ...]]. */
static void apply_entry(relay_t *r, const char *chan, redisReply *e, shk_chan_msgid_t *id)
{
    redisReply *f;
    const char *data = "", *eid = NULL, *et = NULL;
    size_t dlen = 0;
    char eb[SHK_CHAN_EVENT_MAX + 1], tb[SHK_CHAN_EVENT_MAX + 1];
    if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
        e->element[0]->type != REDIS_REPLY_STRING ||
        shk_redis_parse_id(e->element[0]->str, e->element[0]->len, id) != SHK_OK ||
        (f = e->element[1])->type != REDIS_REPLY_ARRAY) {
        id->time_ms = 0;
        return;
    }
    for (size_t i = 0; i + 1 < f->elements; i += 2) {
        redisReply *k = f->element[i], *v = f->element[i + 1];
        if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING || k->len != 1)
            continue;
        if (k->str[0] == 'd') {
            data = v->str;
            dlen = v->len;
        } else if ((k->str[0] == 'e' || k->str[0] == 't') && v->len <= SHK_CHAN_EVENT_MAX) {
            char *b = k->str[0] == 'e' ? eb : tb;
            memcpy(b, v->str, v->len);
            b[v->len] = '\0';
            if (k->str[0] == 'e')
                eid = b;
            else
                et = b;
        }
    }
    apply(r, chan, id, data, dlen, eid, et, 1);
}

static void on_range(relay_t *r, rcmd_t *c, redisReply *rep)
{
    rsync_t *s = c->ctx;
    shk_chan_msgid_t last = {0, 0};
    r->sync_running--;
    if (!rep || r->state == SHK_REDIS_DOWN) {
        free(s);
        return; /* the link went: the next connect catches up again */
    }
    if (rep->type == REDIS_REPLY_ERROR) {
        shk_log(SHK_LOG_WARN, "redis relay: catching up channel \"%s\": %.*s", s->id,
                (int)rep->len, rep->str);
    } else if (rep->type == REDIS_REPLY_ARRAY) {
        for (size_t i = 0; i < rep->elements; i++) {
            shk_chan_msgid_t id;
            apply_entry(r, s->id, rep->element[i], &id);
            if (id.time_ms)
                last = id;
        }
        if (rep->elements == SYNC_COUNT && last.time_ms) {
            /* more: the next page, after the last entry */
            s->from = last;
            s->incl = 0;
            s->next = r->sync_head;
            r->sync_head = s;
            if (!r->sync_tail)
                r->sync_tail = s;
            s = NULL;
        }
    }
    free(s);
    sync_start(r);
}

static void sync_start(relay_t *r)
{
    while (r->sync_head && r->sync_running < SYNC_PARALLEL && r->state != SHK_REDIS_DOWN) {
        rsync_t *s = r->sync_head;
        char key[SHK_REDIS_NS_MAX + SHK_CHAN_ID_MAX + 8], from[48];
        int klen, flen;
        if (!(r->sync_head = s->next))
            r->sync_tail = NULL;
        s->next = NULL;
        klen = snprintf(key, sizeof key, "%s:{%s}", r->conf.ns, s->id);
        if (!s->incl || s->from.time_ms || s->from.tag)
            flen = snprintf(from, sizeof from, "%s%llu-%u", s->incl ? "" : "(",
                            (unsigned long long)s->from.time_ms, (unsigned)s->from.tag);
        else
            flen = snprintf(from, sizeof from, "-");
        const char *argv[] = {"XRANGE", key, from, "+", "COUNT", "256"};
        size_t lens[] = {6, (size_t)klen, (size_t)flen, 1, 5, 3};
        rcmd_t *c = shk_redis_cmd_new(r, 6, argv, lens);
        if (!c) {
            free(s);
            continue;
        }
        c->slot = (int)shk_redis_slot(s->id, strlen(s->id));
        c->done = on_range;
        c->ctx = s;
        SHK_ADD_SOLE(r->sh->catchups, 1);
        r->sync_running++;
        shk_redis_cmd_send(r, c);
    }
    if (!r->sync_head && !r->sync_running && r->syncing && r->state != SHK_REDIS_DOWN) {
        r->syncing = 0;
        if (r->resync) {
            /* announcements were dropped while catching up: again */
            r->resync = 0;
            shk_redis_on_ready(r);
            return;
        }
        replay(r);
        if (!r->syncing)
            shk_redis_set_state(r, SHK_REDIS_UP);
    }
}

/* ---- announcements -------------------------------------------------------------------------- */

/* One line of the announcement's head: [*p, end) up to '\n'. */
static int ann_line(const char **p, const char *end, const char **s, size_t *n)
{
    const char *nl = memchr(*p, '\n', (size_t)(end - *p));
    if (!nl)
        return -1;
    *s = *p;
    *n = (size_t)(nl - *p);
    *p = nl + 1;
    return 0;
}

static int ann_num(const char *s, size_t n, size_t max, size_t *out)
{
    size_t v = 0;
    if (!n || n > 5)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (size_t)(s[i] - '0');
    }
    if (v > max)
        return -1;
    *out = v;
    return 0;
}

/* "ID\nPREV\nCHLEN\nEIDLEN\nETLEN\n" CHANNEL EID ET DATA, every byte untrusted. */
int shk_redis_ann_parse(const char *data, size_t len, redis_ann_t *a)
{
    const char *p = data, *end = data + len, *s;
    size_t n, chlen, eidlen, etlen;
    /* the previous id is "0-0" for a stream's first entry: a valid id */
    if (ann_line(&p, end, &s, &n) || shk_redis_parse_id(s, n, &a->id) ||
        ann_line(&p, end, &s, &n) || shk_redis_parse_id(s, n, &a->prev) ||
        ann_line(&p, end, &s, &n) || ann_num(s, n, SHK_CHAN_ID_MAX, &chlen) ||
        ann_line(&p, end, &s, &n) || ann_num(s, n, SHK_CHAN_EVENT_MAX, &eidlen) ||
        ann_line(&p, end, &s, &n) || ann_num(s, n, SHK_CHAN_EVENT_MAX, &etlen) || !chlen ||
        (size_t)(end - p) < chlen + eidlen + etlen)
        return -1;
    memcpy(a->chan, p, chlen);
    a->chan[chlen] = '\0';
    p += chlen;
    memcpy(a->eid, p, eidlen);
    a->eid[eidlen] = '\0';
    p += eidlen;
    memcpy(a->et, p, etlen);
    a->et[etlen] = '\0';
    p += etlen;
    a->data = p;
    a->len = (size_t)(end - p);
    if (strlen(a->chan) != chlen || strlen(a->eid) != eidlen || strlen(a->et) != etlen)
        return -1;
    return 0;
}

/* Apply one announcement, or, when the store is behind the entry before
 * it, queue its channel's catch-up and return 1 (not applied). `force`:
 * the channel was just caught up; what is still missing is gone from the
 * stream (trimmed), so apply. */
static int process(relay_t *r, const char *data, size_t len, int force)
{
    redis_ann_t a;
    shk_chan_info_t info;
    int rc;
    if (shk_redis_ann_parse(data, len, &a) != 0) {
        shk_log(SHK_LOG_WARN, "redis relay: a malformed announcement of %zu bytes ignored", len);
        return 0;
    }
    rc = shk_chan_info(r->ch, a.chan, &info);
    if (!force && rc == SHK_ENOENT && (a.prev.time_ms || a.prev.tag)) {
        /* a channel this store never saw: take what its stream holds */
        sync_push(r, a.chan, &(shk_chan_msgid_t){0, 0}, 1);
        return 1;
    }
    if (rc == SHK_OK && info.last_seq && id_cmp(&a.id, &info.last_id) <= 0) {
        SHK_ADD_SOLE(r->sh->duplicates, 1);
        return 0;
    }
    if (!force && rc == SHK_OK && (a.prev.time_ms || a.prev.tag)) {
        if (info.last_seq && id_cmp(&a.prev, &info.last_id) > 0) {
            sync_push(r, a.chan, &info.last_id, 0);
            return 1;
        }
        if (!info.last_seq && a.prev.time_ms >= info.created_ms) {
            /* the channel is known here only by its subscribers: what
             * came since they arrived */
            sync_push(r, a.chan, &(shk_chan_msgid_t){info.created_ms, 0}, 1);
            return 1;
        }
    }
    apply(r, a.chan, &a.id, a.data, a.len, a.eid, a.et, 0);
    return 0;
}

static void buf_free(relay_t *r)
{
    while (r->buf_head) {
        rbuf_t *b = r->buf_head;
        r->buf_head = b->next;
        free(b);
    }
    r->buf_tail = NULL;
    r->buf_bytes = 0;
}

static void buf_push(relay_t *r, const char *data, size_t len, int front)
{
    rbuf_t *b;
    if (r->buf_bytes + len > BUF_MAX_BYTES || !(b = malloc(sizeof *b + len))) {
        /* too much while catching up: start over once this round ends */
        buf_free(r);
        r->resync = 1;
        return;
    }
    b->len = len;
    b->retried = front;
    memcpy(b->data, data, len);
    r->buf_bytes += len;
    if (front) {
        b->next = r->buf_head;
        r->buf_head = b;
        if (!r->buf_tail)
            r->buf_tail = b;
    } else {
        b->next = NULL;
        if (r->buf_tail)
            r->buf_tail->next = b;
        else
            r->buf_head = b;
        r->buf_tail = b;
    }
}

/* The announcements kept during a catch-up, in order, until one needs
 * another catch-up. */
static void replay(relay_t *r)
{
    while (r->buf_head && !r->syncing) {
        rbuf_t *b = r->buf_head;
        if (!(r->buf_head = b->next))
            r->buf_tail = NULL;
        r->buf_bytes -= b->len;
        if (process(r, b->data, b->len, b->retried) == 1)
            buf_push(r, b->data, b->len, 1);
        free(b);
    }
    if (r->syncing)
        sync_start(r);
}

void shk_redis_on_message(relay_t *r, const char *data, size_t len)
{
    if (r->syncing || r->state != SHK_REDIS_UP) {
        buf_push(r, data, len, 0);
        return;
    }
    if (process(r, data, len, 0) == 1) {
        buf_push(r, data, len, 1);
        sync_start(r);
    }
}

/* The link is made: catch every local channel up from its last id. */
void shk_redis_on_ready(relay_t *r)
{
    shk_chan_info_t info;
    char after[SHK_CHAN_ID_MAX + 1];
    int first = 1;
    shk_redis_set_state(r, r->state == SHK_REDIS_UP ? SHK_REDIS_UP : SHK_REDIS_SYNCING);
    r->syncing = 1;
    while (shk_chan_next(r->ch, NULL, first ? NULL : after, &info) == SHK_OK) {
        first = 0;
        snprintf(after, sizeof after, "%s", info.id);
        if (info.flags & SHK_CHAN_EVENTS)
            continue; /* local to this instance */
        if (info.last_seq)
            sync_push(r, info.id, &info.last_id, 0);
        else
            sync_push(r, info.id, &(shk_chan_msgid_t){info.created_ms, 0}, 1);
    }
    sync_start(r);
}

void shk_redis_on_reset(relay_t *r)
{
    while (r->sync_head) {
        rsync_t *s = r->sync_head;
        r->sync_head = s->next;
        free(s);
    }
    r->sync_tail = NULL;
    r->syncing = 0;
    r->resync = 0;
    buf_free(r);
}

/* ---- the loop -------------------------------------------------------------------------------- */

static int bus_marker;

int shk_redis_run(shk_zone_t *zone, shk_chan_t *ch, shk_bus_t *bus, const shk_redis_opts_t *o,
                  int (*stop)(void *ctx), void *ctx)
{
    relay_t *r;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &bus_marker}, evs[64];
    int rc;
    pid_t me = SHK_PID();

    if (!ch || !bus || !stop)
        return shk_error(SHK_EINVAL, "NULL store, bus or stop function");
    if (shk_bus_fd(bus) < 0)
        return shk_error(SHK_EPERM, "the redis relay must join the bus first");
    if (!(r = calloc(1, sizeof *r)))
        return shk_error(SHK_ENOMEM, "redis relay");
    if ((rc = shk_redis_conf(o, &r->conf)) != SHK_OK || !(r->sh = shk_redis_shared(zone))) {
        rc = shk_last_error();
        free(r);
        return rc;
    }
    r->zone = zone;
    r->ch = ch;
    r->bus = bus;
    snprintf(r->pubchan, sizeof r->pubchan, "%s:pub", r->conf.ns);
    r->ep = epoll_create1(EPOLL_CLOEXEC);
    if (r->ep < 0 || epoll_ctl(r->ep, EPOLL_CTL_ADD, shk_bus_fd(bus), &ev) != 0) {
        rc = shk_error_sys("redis relay: epoll");
        if (r->ep >= 0)
            close(r->ep);
        free(r);
        return rc;
    }
    shk_bus_on(bus, SHK_REDIS_ALERT_PUB, on_pub_alert, r);
    SHK_WRITE_ONCE(r->sh->down_since_ms, shk_time_ms());
    shk_redis_set_state(r, SHK_REDIS_DOWN);
    SHK_WRITE_ONCE(r->sh->state, SHK_REDIS_DOWN);
    /* Release: a publisher that reads the pid (acquire) finds the relay's
     * handler registered. */
    SHK_STORE_RELEASE(r->sh->pid, (int32_t)me);
    /* A dispatch announces the sleep the doorbell protocol needs before
     * the first epoll_wait: publishers ring only a consumer that did. */
    shk_bus_dispatch(bus, SHK_BUS_BUDGET);

    while (!stop(ctx)) {
        int n, timeout = LOOP_MS;
        r->now_ms = shk_time_ms();
        shk_redis_link_tick(r);
        if (r->want_reset)
            shk_redis_link_reset(r, NULL);
        acks_retry(r);
        if (r->state == SHK_REDIS_DOWN && r->next_connect_ms > r->now_ms &&
            r->next_connect_ms - r->now_ms < (uint64_t)timeout)
            timeout = (int)(r->next_connect_ms - r->now_ms);
        if (r->acks || r->held)
            timeout = r->acks ? 5 : 1;
        n = epoll_wait(r->ep, evs, 64, timeout);
        if (n < 0 && errno != EINTR) {
            shk_log(SHK_LOG_ERR, "redis relay: epoll_wait: %s", strerror(errno));
            break;
        }
        r->now_ms = shk_time_ms();
        for (int i = 0; i < n; i++) {
            if (evs[i].data.ptr == &bus_marker)
                shk_bus_dispatch(bus, SHK_BUS_BUDGET);
            else
                shk_redis_link_events(evs[i].data.ptr, evs[i].events);
        }
        if (r->want_reset)
            shk_redis_link_reset(r, NULL);
        shk_redis_link_reap(r);
        if (r->held)
            held_flush(r, 0);
    }

    shk_bus_on(bus, SHK_REDIS_ALERT_PUB, NULL, NULL);
    shk_redis_error(r, "the relay stopped");
    r->state = SHK_REDIS_DOWN; /* a stop, not a loss: the reset logs nothing */
    shk_redis_link_reset(r, NULL);
    SHK_WRITE_ONCE(r->sh->state, SHK_REDIS_DOWN);
    SHK_WRITE_ONCE(r->sh->down_since_ms, shk_time_ms());
    shk_redis_link_reap(r);
    held_flush(r, 1);
    acks_retry(r);
    while (r->acks) {
        rack_t *a = r->acks;
        r->acks = a->next;
        free(a);
    }
    {
        int32_t expect = (int32_t)me;
        /* Only our own pid: a newer relay may have taken the record. */
        SHK_CAS(r->sh->pid, &expect, 0, release, relaxed);
    }
    close(r->ep);
    free(r);
    return SHK_OK;
}
