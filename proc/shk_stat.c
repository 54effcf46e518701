/*
 * shk_stat.c: text and JSON reports on zones (shmkit stat, demo /status).
 */
#include "shk_stat.h"

#include "shk_bus.h"
#include "shk_internal.h"

#include <stdio.h>
#include <stdlib.h>


/* The bus in zone z, if it holds one: a read-only handle (close it) and
 * the bus's totals in *st. */
static shk_bus_t *bus_of(shk_zone_t *z, shk_bus_stats_t *st)
{
    shk_bus_t *bus;
    if (!shk_zone_root(z, "bus"))
        return NULL;
    bus = shk_bus_open(z, SHK_ZONE_RDONLY);
    if (bus && shk_bus_stats(bus, st) != SHK_OK) {
        shk_bus_close(bus);
        return NULL;
    }
    return bus;
}

static void bus_json(shk_sbuf_t *b, shk_zone_t *z)
{
    shk_bus_stats_t st;
    shk_bus_t *bus = bus_of(z, &st);
    if (!bus)
        return;
    shk_sbuf_printf(b, ",\"bus\":{\"large\":%llu,\"slots\":[", (unsigned long long)st.large);
    for (unsigned i = 0; i < st.nslots; i++) {
        shk_bus_slot_stats_t qs;
        const shk_bus_slot_stats_t *q = &qs;
        shk_bus_slot_stats(bus, i, &qs);
        shk_sbuf_printf(b,
                        "%s{\"slot\":%u,\"pid\":%d,\"state\":\"%s\",\"generation\":%llu,"
                        "\"depth\":%llu,\"high_water\":%llu,\"oldest_age_us\":%llu,"
                        "\"queue_bytes\":%llu,\"sent\":%llu,\"received\":%llu,"
                        "\"discarded\":%llu,\"rejected\":%llu,\"skipped\":%llu,"
                        "\"stale\":%llu,\"doorbells_rung\":%llu,\"doorbells_coalesced\":%llu}",
                        i ? "," : "", i, (int)q->pid,
                        q->state == SHK_BUS_SLOT_JOINED ? "joined" : "free",
                        (unsigned long long)q->generation, (unsigned long long)q->depth,
                        (unsigned long long)q->high_water, (unsigned long long)q->oldest_age_us,
                        (unsigned long long)q->queue_bytes, (unsigned long long)q->sent,
                        (unsigned long long)q->received, (unsigned long long)q->discarded,
                        (unsigned long long)q->rejected, (unsigned long long)q->skipped,
                        (unsigned long long)q->stale, (unsigned long long)q->rung,
                        (unsigned long long)q->coalesced);
    }
    shk_sbuf_printf(b, "]}");
    shk_bus_close(bus);
}

static void bus_text(shk_sbuf_t *b, shk_zone_t *z)
{
    shk_bus_stats_t st;
    shk_bus_t *bus = bus_of(z, &st);
    if (!bus)
        return;
    shk_sbuf_printf(b, "  bus          %u slots, %llu large alerts through the slab\n",
                    st.nslots, (unsigned long long)st.large);
    shk_sbuf_printf(b, "    %4s %7s %5s %6s %6s %9s %10s %10s %6s %6s %6s %8s %10s\n", "slot",
                    "pid", "gen", "depth", "high", "oldest_us", "sent", "received", "disc",
                    "rej", "skip", "rung", "coalesced");
    for (unsigned i = 0; i < st.nslots; i++) {
        shk_bus_slot_stats_t qs;
        const shk_bus_slot_stats_t *q = &qs;
        shk_bus_slot_stats(bus, i, &qs);
        shk_sbuf_printf(b, "    %4u %7d %5llu %6llu %6llu %9llu %10llu %10llu %6llu %6llu %6llu "
                           "%8llu %10llu\n",
                        i, q->state == SHK_BUS_SLOT_JOINED ? (int)q->pid : 0,
                        (unsigned long long)q->generation, (unsigned long long)q->depth,
                        (unsigned long long)q->high_water, (unsigned long long)q->oldest_age_us,
                        (unsigned long long)q->sent, (unsigned long long)q->received,
                        (unsigned long long)q->discarded, (unsigned long long)q->rejected,
                        (unsigned long long)q->skipped, (unsigned long long)q->rung,
                        (unsigned long long)q->coalesced);
    }
    shk_bus_close(bus);
}

static void zone_json(shk_sbuf_t *b, shk_zone_t *z)
{
    shk_slab_stats_t st;
    pid_t creator = shk_zone_creator(z);
    unsigned nl = shk_zone_locks(z);

    shk_sbuf_printf(b, "{\"name\":");
    shk_sbuf_json_str(b, shk_zone_name(z));
    shk_sbuf_printf(b, ",\"tag\":");
    shk_sbuf_json_str(b, shk_zone_tag(z));
    shk_sbuf_printf(b,
                    ",\"size\":%zu,\"kind\":\"%s\",\"generation\":%llu,\"creator\":%d,"
                    "\"creator_alive\":%s",
                    shk_zone_size(z), shk_zone_kind(z) == SHK_ZONE_NAMED ? "named" : "anon",
                    (unsigned long long)shk_zone_generation(z), (int)creator,
                    creator > 0 && shk_pid_alive(creator) ? "true" : "false");
    if (shk_slab_stats(shk_zone_slab(z), &st) == SHK_OK) {
        shk_sbuf_printf(b,
                        ",\"slab\":{\"page_size\":%zu,\"pages_total\":%zu,\"pages_free\":%zu,"
                        "\"largest_free_run\":%zu,\"fails\":%llu,\"caches\":%u,"
                        "\"cache_pages\":%zu,\"classes\":[",
                        st.page_size, st.pages_total, st.pages_free, st.largest_free_run,
                        (unsigned long long)st.fails, st.caches, st.cache_pages);
        shk_slab_class_stat_t cs;
        for (unsigned i = 0; shk_slab_class_stats(shk_zone_slab(z), i, &cs) == SHK_OK; i++)
            shk_sbuf_printf(b,
                            "%s{\"size\":%zu,\"used\":%llu,\"cached\":%llu,\"total\":%llu,"
                            "\"reqs\":%llu,\"fails\":%llu}",
                            i ? "," : "", cs.size, (unsigned long long)cs.used,
                            (unsigned long long)cs.cached, (unsigned long long)cs.total,
                            (unsigned long long)cs.reqs, (unsigned long long)cs.fails);
        shk_sbuf_printf(b, "]}");
    } else {
        shk_sbuf_printf(b, ",\"slab\":null,\"slab_error\":");
        shk_sbuf_json_str(b, shk_last_errmsg());
    }
    shk_sbuf_printf(b, ",\"locks\":[");
    for (unsigned i = 0, k = 0; i < nl; i++) {
        shk_zone_lock_t l;
        if (shk_zone_lock_info(z, i, &l) != SHK_OK)
            continue;
        shk_sbuf_printf(b, "%s{\"name\":", k++ ? "," : "");
        shk_sbuf_json_str(b, l.name);
        shk_sbuf_printf(b,
                        ",\"owner\":%d,\"waiters\":%u,\"acquired\":%llu,\"contended\":%llu,"
                        "\"sleeps\":%llu,\"recovered\":%llu,\"forced\":%llu}",
                        (int)l.stats.owner, l.stats.waiters,
                        (unsigned long long)l.stats.acquired,
                        (unsigned long long)l.stats.contended,
                        (unsigned long long)l.stats.sleeps,
                        (unsigned long long)l.stats.recovered,
                        (unsigned long long)l.stats.forced);
    }
    shk_sbuf_printf(b, "]");
    bus_json(b, z);
    shk_sbuf_printf(b, "}");
}

static void zone_text(shk_sbuf_t *b, shk_zone_t *z)
{
    shk_slab_stats_t st;
    pid_t creator = shk_zone_creator(z);
    unsigned nl = shk_zone_locks(z);

    shk_sbuf_printf(b, "zone %s\n", shk_zone_name(z));
    shk_sbuf_printf(b, "  tag          %s\n", shk_zone_tag(z));
    shk_sbuf_printf(b, "  size         %zu (%s)\n", shk_zone_size(z),
                    shk_zone_kind(z) == SHK_ZONE_NAMED ? "named" : "anonymous");
    shk_sbuf_printf(b, "  generation   %llu\n", (unsigned long long)shk_zone_generation(z));
    shk_sbuf_printf(b, "  creator pid  %d (%s)\n", (int)creator,
                    creator > 0 && shk_pid_alive(creator) ? "alive" : "gone");
    if (shk_slab_stats(shk_zone_slab(z), &st) == SHK_OK) {
        shk_sbuf_printf(b, "  slab pages   %zu free / %zu total (page %zu bytes)\n",
                        st.pages_free, st.pages_total, st.page_size);
        shk_sbuf_printf(b, "  largest run  %zu pages\n", st.largest_free_run);
        shk_sbuf_printf(b, "  alloc fails  %llu\n", (unsigned long long)st.fails);
        if (st.caches)
            shk_sbuf_printf(b, "  caches       %u process caches, %zu pages each\n", st.caches,
                            st.cache_pages);
        shk_sbuf_printf(b, "  %10s %21s %10s %12s %10s\n", "size", "used/total", "cached",
                        "requests", "failures");
        shk_slab_class_stat_t cs;
        for (unsigned i = 0; shk_slab_class_stats(shk_zone_slab(z), i, &cs) == SHK_OK; i++) {
            char ut[48];
            if (!cs.total && !cs.reqs && !cs.fails)
                continue;
            snprintf(ut, sizeof ut, "%llu/%llu", (unsigned long long)cs.used,
                     (unsigned long long)cs.total);
            shk_sbuf_printf(b, "  %10zu %21s %10llu %12llu %10llu\n", cs.size, ut,
                            (unsigned long long)cs.cached, (unsigned long long)cs.reqs,
                            (unsigned long long)cs.fails);
        }
    } else {
        shk_sbuf_printf(b, "  slab         unreadable: %s\n", shk_last_errmsg());
    }
    shk_sbuf_printf(b, "  locks\n");
    for (unsigned i = 0; i < nl; i++) {
        shk_zone_lock_t l;
        char owner[32];
        if (shk_zone_lock_info(z, i, &l) != SHK_OK)
            continue;
        if (l.stats.owner)
            snprintf(owner, sizeof owner, "held by %d", (int)l.stats.owner);
        else
            snprintf(owner, sizeof owner, "free");
        shk_sbuf_printf(b,
                        "    %-20s %-16s acquired %llu contended %llu sleeps %llu "
                        "recovered %llu forced %llu\n",
                        l.name, owner, (unsigned long long)l.stats.acquired,
                        (unsigned long long)l.stats.contended,
                        (unsigned long long)l.stats.sleeps,
                        (unsigned long long)l.stats.recovered,
                        (unsigned long long)l.stats.forced);
    }
    bus_text(b, z);
}

char *shk_stat_render(shk_zone_t *const *zones, unsigned n, const char *instance,
                      unsigned flags)
{
    shk_sbuf_t b = {0};
    if (flags & SHK_STAT_JSON) {
        shk_sbuf_printf(&b, "{\"instance\":");
        shk_sbuf_json_str(&b, instance ? instance : "");
        shk_sbuf_printf(&b, ",\"zones\":[");
        for (unsigned i = 0; i < n; i++) {
            if (i)
                shk_sbuf_printf(&b, ",");
            zone_json(&b, zones[i]);
        }
        shk_sbuf_printf(&b, "]}\n");
    } else {
        shk_sbuf_printf(&b, "instance %s\n", instance ? instance : "");
        for (unsigned i = 0; i < n; i++)
            zone_text(&b, zones[i]);
    }
    if (b.oom || !b.p) {
        shk_sbuf_free(&b);
        shk_error(SHK_ENOMEM, "out of memory building the report");
        return NULL;
    }
    return b.p;
}
