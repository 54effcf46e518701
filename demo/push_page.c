/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * push_page.c: the page at / (the file demo_page read at start, served as
 * it is) and the stats channel it draws: the worker in slot 0 publishes,
 * every demo_stats_channel interval, one JSON message with the store's
 * publishes and deliveries per second, subscribers, stored messages, the
 * zone's use and the bus queues' depth.
 */
#include "push.h"

#include "http.h"

#include <event2/event.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static uint64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

void push_page_handle(push_srv_t *ps, http_req_t *req, const push_loc_t *pl)
{
    const char *meth = http_req_method(req);
    static const char *const hdr[] = {"Content-Type", "text/html; charset=utf-8",
                                      "Cache-Control", "no-cache", NULL};
    (void)ps;
    if (strcmp(meth, "GET") && strcmp(meth, "HEAD")) {
        const char *allow[] = {"Allow", "GET, HEAD", NULL};
        http_reply(req, 405, allow, "Method Not Allowed\n", 19);
        return;
    }
    http_reply(req, 200, hdr, pl->page ? pl->page : "", pl->page_len);
}

/* ---- the stats channel ------------------------------------------------------------------ */

static void stats_json(push_srv_t *ps, push_buf_t *b)
{
    shk_chan_stats_t st;
    shk_bus_t *bus = shk_worker_bus(ps->w);
    shk_bus_stats_t bs;
    shk_zone_t *z = shk_worker_zone(ps->w, "shmkit_chan");
    shk_slab_stats_t ss = {0};
    uint64_t now = shk_time_ms(), depth = 0, high = 0;
    if (shk_chan_stats(ps->ch, &st) != SHK_OK) {
        b->failed = 1;
        return;
    }
    if (z)
        shk_slab_stats(shk_zone_slab(z), &ss);
    double dt = ps->stats_at && now > ps->stats_at ? (double)(now - ps->stats_at) / 1000.0 : 0;
    double pubs = dt > 0 && st.published >= ps->stats_pub
                      ? (double)(st.published - ps->stats_pub) / dt
                      : 0;
    double dels = dt > 0 && st.delivered >= ps->stats_deliv
                      ? (double)(st.delivered - ps->stats_deliv) / dt
                      : 0;
    push_buf_printf(b,
                    "{\"time_ms\": %llu, \"pid\": %d, \"publishes_per_s\": %.1f, "
                    "\"deliveries_per_s\": %.1f, \"published\": %llu, \"delivered\": %llu, "
                    "\"subscribers\": %llu, \"channels\": %llu, \"stored\": %llu, "
                    "\"stored_bytes\": %llu, \"messages\": %llu, \"zone_used\": %llu, "
                    "\"zone_size\": %llu",
                    (unsigned long long)wall_ms(), (int)shk_pid(), pubs, dels,
                    (unsigned long long)st.published, (unsigned long long)st.delivered,
                    (unsigned long long)st.subscribers,
                    (unsigned long long)(st.channels + st.wildcard_channels),
                    (unsigned long long)st.stored, (unsigned long long)st.stored_bytes,
                    (unsigned long long)st.messages,
                    (unsigned long long)((ss.pages_total - ss.pages_free) * ss.page_size),
                    (unsigned long long)(ss.pages_total * ss.page_size));
    push_buf_str(b, ", \"workers\": [");
    if (bus && shk_bus_stats(bus, &bs) == SHK_OK)
        for (unsigned i = 0, k = 0; i < bs.nslots; i++) {
            shk_bus_slot_stats_t q;
            if (shk_bus_slot_stats(bus, i, &q) != SHK_OK || !q.pid ||
                q.state != SHK_BUS_SLOT_JOINED)
                continue;
            depth += q.depth;
            high = q.high_water > high ? q.high_water : high;
            push_buf_printf(b, "%s{\"slot\": %u, \"pid\": %d, \"bus_depth\": %llu}",
                            k++ ? ", " : "", i, (int)q.pid, (unsigned long long)q.depth);
        }
    push_buf_printf(b, "], \"bus_depth\": %llu, \"bus_high_water\": %llu}",
                    (unsigned long long)depth, (unsigned long long)high);
    ps->stats_pub = st.published;
    ps->stats_deliv = st.delivered;
    ps->stats_at = now;
}

static void stats_tick(evutil_socket_t fd, short what, void *arg)
{
    push_srv_t *ps = arg;
    push_buf_t b = {0};
    (void)fd;
    (void)what;
    stats_json(ps, &b);
    if (!b.failed && shk_chan_publish(ps->ch, ps->pm->stats_channel, b.p, b.len, NULL,
                                      "stats", NULL) != SHK_OK)
        shk_log(SHK_LOG_WARN, "stats channel \"%s\": %s", ps->pm->stats_channel,
                shk_last_errmsg());
    push_buf_free(&b);
}

int push_srv_start(push_srv_t *ps)
{
    if (!ps->ch || !ps->pm->stats_channel[0] || shk_worker_slot(ps->w) != 0)
        return SHK_OK;
    struct timeval tv = {ps->pm->stats_ms / 1000, (ps->pm->stats_ms % 1000) * 1000};
    ps->stats_ev = event_new(ps->base, -1, EV_PERSIST, stats_tick, ps);
    if (!ps->stats_ev || event_add(ps->stats_ev, &tv) != 0)
        return shk_error(SHK_ENOMEM, "the stats channel's timer");
    return SHK_OK;
}

void push_srv_stop(push_srv_t *ps)
{
    if (ps->stats_ev)
        event_free(ps->stats_ev);
    ps->stats_ev = NULL;
    push_buf_free(&ps->fc.frame);
    ps->fc.ok = 0;
}
