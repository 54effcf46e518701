/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * shmkit_top_view.c: the text of `shmkit top`, made from two readings of an
 * instance: per zone its figures, the slab pool and the size classes in
 * use, the locks with their acquire, contend and recover rates, the bus
 * with each slot's queue depth, oldest alert, alerts in and out and
 * doorbells per second, and the channel store with its slots. A rate is
 * the difference of a counter between the two readings over the time
 * between them, shown only when both readings saw the same thing: the same
 * zone (name, tag, creator, generation), the same lock (its place and
 * name), the same slot holder (pid and generation or epoch), and a counter
 * that did not go back; otherwise "-". Every string from a zone is escaped
 * (shk_stat_escape), so the text is printable ASCII, one byte a column.
 */
#include "shmkit_top_internal.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct {
    char *p;
    size_t len, cap;
    int failed;
} vbuf_t;

static void put(vbuf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void put(vbuf_t *b, const char *fmt, ...)
{
    va_list ap;
    for (;;) {
        size_t room = b->cap - b->len;
        va_start(ap, fmt);
        int n = b->failed ? 0 : vsnprintf(b->p ? b->p + b->len : NULL, room, fmt, ap);
        va_end(ap);
        if (b->failed || n < 0) {
            b->failed = 1;
            return;
        }
        if ((size_t)n < room) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = b->cap ? b->cap * 2 : 8192;
        while (cap < b->len + (size_t)n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->failed = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
}

/* A zone's string, escaped for the terminal, padded to `width` (0: none). */
static void put_str(vbuf_t *b, const char *s, int width)
{
    char *e = shk_stat_escape(s, 0);
    if (!e) {
        b->failed = 1;
        return;
    }
    put(b, "%-*s", width, e);
    free(e);
}

/* ---- rates --------------------------------------------------------------------------- */

typedef struct {
    double dt; /* seconds between the readings; 0: no rates */
} rates_t;

/* `cur - prev` per second into a field of `width`, or "-". */
static void put_rate(vbuf_t *b, const rates_t *r, int same, uint64_t cur, uint64_t prev,
                     int width)
{
    if (!same || r->dt <= 0 || cur < prev)
        put(b, " %*s", width, "-");
    else
        put(b, " %*.1f", width, (double)(cur - prev) / r->dt);
}

/* The previous reading's zone of the same name, if it is the same zone. */
static const shmkit_top_zone_t *same_zone(const shmkit_top_snap_t *prev,
                                          const shmkit_top_zone_t *t)
{
    for (unsigned k = 0; prev && k < prev->n; k++) {
        const shmkit_top_zone_t *p = &prev->zones[k];
        if (strcmp(p->name, t->name) != 0)
            continue;
        if (p->error || p->creator != t->creator || p->generation != t->generation ||
            strcmp(p->tag, t->tag) != 0)
            return NULL;
        return p;
    }
    return NULL;
}

/* ---- a zone's parts ---------------------------------------------------------------- */

static void slab_part(vbuf_t *b, const shmkit_top_zone_t *t, const shmkit_top_zone_t *p,
                      const rates_t *r)
{
    const shk_slab_stats_t *s = &t->slab;
    if (t->slab_error) {
        put(b, "  slab: cannot be read: ");
        put_str(b, t->slab_error, 0);
        put(b, "\n");
        return;
    }
    put(b, "  slab: %zu pages of %zu bytes, %zu free, largest free run %zu, %llu alloc fails, "
           "%u process caches\n",
        s->pages_total, s->page_size, s->pages_free, s->largest_free_run,
        (unsigned long long)s->fails, s->caches);
    int header = 0;
    for (unsigned i = 0; i < t->nclasses; i++) {
        const shk_slab_class_stat_t *c = &t->classes[i];
        if (!c->total && !c->used && !c->reqs)
            continue; /* a class never used: nothing to watch */
        if (!header++)
            put(b, "    %8s %10s %10s %10s %5s %10s %8s\n", "size", "used", "cached", "total",
                "use%", "reqs/s", "fails");
        int same = p && !p->slab_error && i < p->nclasses && p->classes[i].size == c->size;
        put(b, "    %8zu %10llu %10llu %10llu %5.1f", c->size, (unsigned long long)c->used,
            (unsigned long long)c->cached, (unsigned long long)c->total,
            c->total ? 100.0 * (double)c->used / (double)c->total : 0.0);
        put_rate(b, r, same, c->reqs, same ? p->classes[i].reqs : 0, 10);
        put(b, " %8llu\n", (unsigned long long)c->fails);
    }
}

static void locks_part(vbuf_t *b, const shmkit_top_zone_t *t, const shmkit_top_zone_t *p,
                       const rates_t *r)
{
    put(b, "  locks:\n    %-24s %9s %7s %10s %10s %10s %12s %10s %9s\n", "name", "owner",
        "waiters", "acquire/s", "contend/s", "recover/s", "acquired", "contended",
        "recovered");
    for (unsigned i = 0; i < t->nlocks; i++) {
        const shk_zone_lock_t *l = &t->locks[i];
        char name[SHK_SHMTX_NAME_MAX + 1], owner[16];
        if (t->lock_error[i]) {
            put(b, "    lock %u: cannot be read: ", i);
            put_str(b, t->lock_error[i], 0);
            put(b, "\n");
            continue;
        }
        memcpy(name, l->name, sizeof name - 1);
        name[sizeof name - 1] = '\0';
        const shk_zone_lock_t *pl = p && i < p->nlocks && !p->lock_error[i] ? &p->locks[i] : NULL;
        int same = pl && strncmp(pl->name, l->name, sizeof name - 1) == 0;
        if (l->stats.owner)
            snprintf(owner, sizeof owner, "%d", (int)l->stats.owner);
        else
            snprintf(owner, sizeof owner, "free");
        put(b, "    ");
        put_str(b, name, 24);
        put(b, " %9s %7u", owner, l->stats.waiters);
        put_rate(b, r, same, l->stats.acquired, same ? pl->stats.acquired : 0, 10);
        put_rate(b, r, same, l->stats.contended, same ? pl->stats.contended : 0, 10);
        put_rate(b, r, same, l->stats.recovered, same ? pl->stats.recovered : 0, 10);
        put(b, " %12llu %10llu %9llu\n", (unsigned long long)l->stats.acquired,
            (unsigned long long)l->stats.contended, (unsigned long long)l->stats.recovered);
    }
}

static void bus_part(vbuf_t *b, const shmkit_top_zone_t *t, const shmkit_top_zone_t *p,
                     const rates_t *r)
{
    const shk_bus_stats_t *s = &t->bus;
    if (!t->has_bus)
        return;
    if (t->bus_error) {
        put(b, "  bus: cannot be read: ");
        put_str(b, t->bus_error, 0);
        put(b, "\n");
        return;
    }
    put(b, "  bus: %u slots, %u joined, queues of %llu bytes, %llu large alerts live "
           "(%llu bytes)\n",
        s->nslots, s->joined, (unsigned long long)s->queue_bytes,
        (unsigned long long)s->large_live, (unsigned long long)s->large_bytes);
    put(b, "    %-4s %8s %6s %7s %10s %10s %10s %11s %9s\n", "slot", "pid", "state", "depth",
        "oldest_ms", "in/s", "out/s", "doorbells/s", "rejected");
    for (unsigned i = 0; i < t->nslots; i++) {
        const shk_bus_slot_stats_t *q = &t->slots[i];
        if (!t->slot_ok[i]) {
            put(b, "    %-4u cannot be read\n", i);
            continue;
        }
        const shk_bus_slot_stats_t *pq = p && !p->bus_error && i < p->nslots && p->slot_ok[i]
                                             ? &p->slots[i]
                                             : NULL;
        int same = pq && pq->pid == q->pid && pq->generation == q->generation;
        put(b, "    %-4u %8d %6s %7llu %10.1f", i, (int)q->pid,
            q->state == SHK_BUS_SLOT_JOINED ? "joined" : "free", (unsigned long long)q->depth,
            (double)q->oldest_age_us / 1000.0);
        put_rate(b, r, same, q->received, same ? pq->received : 0, 10);
        put_rate(b, r, same, q->sent, same ? pq->sent : 0, 10);
        put_rate(b, r, same, q->rung, same ? pq->rung : 0, 11);
        put(b, " %9llu\n", (unsigned long long)q->rejected);
    }
}

static void chan_part(vbuf_t *b, const shmkit_top_zone_t *t, const shmkit_top_zone_t *p,
                      const rates_t *r)
{
    const shk_chan_stats_t *s = &t->chan;
    if (!t->has_chan)
        return;
    if (t->chan_error) {
        put(b, "  channels: cannot be read: ");
        put_str(b, t->chan_error, 0);
        put(b, "\n");
        return;
    }
    int same = p && p->has_chan && !p->chan_error;
    put(b, "  channels: %llu (%llu wildcard), %llu subscribers, %llu messages stored "
           "(%llu bytes), %llu in the zone, oldest %llu ms\n",
        (unsigned long long)s->channels, (unsigned long long)s->wildcard_channels,
        (unsigned long long)s->subscribers, (unsigned long long)s->stored,
        (unsigned long long)s->stored_bytes, (unsigned long long)s->messages,
        (unsigned long long)s->oldest_age_ms);
    put(b, "    published/s");
    put_rate(b, r, same, s->published, same ? p->chan.published : 0, 1);
    put(b, ", delivered/s");
    put_rate(b, r, same, s->delivered, same ? p->chan.delivered : 0, 1);
    put(b, ", reclaimed %llu, expired %llu, deleted %llu, events failed %llu\n",
        (unsigned long long)s->reclaimed, (unsigned long long)s->expired,
        (unsigned long long)s->deleted, (unsigned long long)s->events_failed);
    put(b, "    %-4s %8s %6s %11s %12s %9s %9s\n", "slot", "pid", "epoch", "subscribers",
        "delivered/s", "alerts/s", "missed/s");
    for (unsigned i = 0; i < t->ncslots; i++) {
        const shk_chan_slot_stats_t *c = &t->cslots[i];
        if (!t->cslot_ok[i]) {
            put(b, "    %-4u cannot be read\n", i);
            continue;
        }
        if (!c->pid && !c->subscribers)
            continue; /* a free slot */
        const shk_chan_slot_stats_t *pc = same && i < p->ncslots && p->cslot_ok[i]
                                              ? &p->cslots[i]
                                              : NULL;
        int ss = pc && pc->pid == c->pid && pc->epoch == c->epoch;
        put(b, "    %-4u %8d %6u %11llu", i, (int)c->pid, (unsigned)c->epoch,
            (unsigned long long)c->subscribers);
        put_rate(b, r, ss, c->delivered, ss ? pc->delivered : 0, 12);
        put_rate(b, r, ss, c->alerts, ss ? pc->alerts : 0, 9);
        put_rate(b, r, ss, c->alerts_missed, ss ? pc->alerts_missed : 0, 9);
        put(b, "%s\n", c->dead ? "  (dead, clean-up pending)" : "");
    }
}

static void zone_part(vbuf_t *b, const shmkit_top_zone_t *t, const shmkit_top_snap_t *prev,
                      const rates_t *r)
{
    put(b, "\nzone ");
    put_str(b, t->name, 0);
    if (t->error) {
        put(b, ": cannot be attached: ");
        put_str(b, t->error, 0);
        put(b, "\n");
        return;
    }
    const shmkit_top_zone_t *p = same_zone(prev, t);
    put(b, "  tag ");
    put_str(b, t->tag, 0);
    put(b, "  %zu bytes (%s)  generation %llu  creator %d (%s)\n", t->size,
        t->kind == SHK_ZONE_NAMED ? "named" : "anon", (unsigned long long)t->generation,
        (int)t->creator, t->creator_alive ? "alive" : "gone");
    slab_part(b, t, p, r);
    locks_part(b, t, p, r);
    bus_part(b, t, p, r);
    chan_part(b, t, p, r);
}

char *shmkit_top_render(const shmkit_top_snap_t *prev, const shmkit_top_snap_t *cur,
                        const shmkit_top_head_t *head)
{
    vbuf_t b = {0};
    rates_t r = {0};
    char when[32] = "";
    time_t now = time(NULL);
    struct tm tm;
    if (prev && cur->at_ns > prev->at_ns)
        r.dt = (double)(cur->at_ns - prev->at_ns) / 1e9;
    if (localtime_r(&now, &tm))
        strftime(when, sizeof when, "%H:%M:%S", &tm);
    put(&b, "shmkit top: instance ");
    put_str(&b, head->instance, 0);
    put(&b, ", %u zone%s, %s", cur->n, cur->n == 1 ? "" : "s", when);
    if (cur->n && r.dt > 0)
        put(&b, ", rates per second over the last %.1f s", r.dt);
    else if (cur->n)
        put(&b, ", rates from the next reading on");
    put(&b, "%s\n", head->live ? " (q quits)" : "");
    if (cur->error) {
        put(&b, "\nthe zones cannot be listed: ");
        put_str(&b, cur->error, 0);
        put(&b, "\n");
    } else if (!cur->n) {
        put(&b, "\nno named zones for instance ");
        put_str(&b, head->instance, 0);
        put(&b, "%s\n", head->live ? " (waiting for them to appear)" : "");
    }
    for (unsigned k = 0; k < cur->n; k++)
        zone_part(&b, &cur->zones[k], prev, &r);
    if (b.failed || !b.p) {
        free(b.p);
        shk_error(SHK_ENOMEM, "out of memory building the view");
        return NULL;
    }
    return b.p;
}
