/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * shk_stat_render.c: the reports as documents: which sections a zone's
 * report is made of and how they nest (the zone, its slab pool and size
 * classes, its locks, its bus and slots, its channel store and slots), the
 * zones list of `shmkit zones`,
 * and the walk that fills each section's record. Only the modules'
 * lock-free stats calls are used (shk_slab_stats, shk_slab_class_stats,
 * shk_zone_lock_info, shk_bus_stats, shk_bus_slot_stats, shk_chan_stats,
 * shk_chan_slot_stats, shk_redis_stats), every loop is
 * bounded by the module's own limit as well as by the count it reports, and
 * a part that cannot be read is reported with the reason, so an attached
 * zone someone else wrote gives odd figures at worst, never a crash.
 */
#include "shk_stat_internal.h"

#include <stdlib.h>

_Static_assert(SHK_ZONE_ANON == 0 && SHK_ZONE_NAMED == 1, "the zone kind's names");
_Static_assert(SHK_BUS_SLOT_FREE == 0 && SHK_BUS_SLOT_JOINED == 1, "the slot state's names");

static void zone_record(shk_stat_zone_t *r, shk_zone_t *z)
{
    memset(r, 0, sizeof *r);
    r->name = shk_zone_name(z);
    r->tag = shk_zone_tag(z);
    r->size = shk_zone_size(z);
    r->kind = shk_zone_kind(z);
    r->generation = shk_zone_generation(z);
    r->creator = shk_zone_creator(z);
    r->creator_alive = r->creator > 0 && shk_pid_alive(r->creator);
}

/* "key": null and the fault section saying why (JSON), or its line (text). */
static void part_fault(shk_stat_w_t *w, const char *key, const shk_stat_section_t *sec,
                       const char *why)
{
    shk_stat_fault_t f = {0, why};
    if (w->json) {
        shk_stat_json_key(w, key);
        shk_stat_puts(w, "null");
    }
    shk_stat_section(w, sec, &f);
}

/* The slab pool: totals, then every size class. */
static void slab_part(shk_stat_w_t *w, shk_zone_t *z)
{
    shk_slab_t *slab = shk_zone_slab(z);
    shk_slab_stats_t st;
    if (shk_slab_stats(slab, &st) != SHK_OK) {
        part_fault(w, shk_stat_slab_sec.key, &shk_stat_slab_fault_sec, shk_last_errmsg());
        return;
    }
    shk_stat_json_open(w, shk_stat_slab_sec.key, '{');
    shk_stat_section(w, &shk_stat_slab_sec, &st);
    shk_stat_table_open(w, &shk_stat_class_sec);
    /* shk_slab_class_stats bounds i by the class table it checked on open */
    for (unsigned i = 0; i < st.nclasses; i++) {
        shk_slab_class_stat_t cs;
        if (shk_slab_class_stats(slab, i, &cs) != SHK_OK)
            break;
        shk_stat_section(w, &shk_stat_class_sec, &cs);
    }
    shk_stat_table_close(w, &shk_stat_class_sec);
    shk_stat_json_close(w);
}

/* Every entry of the lock table; one that cannot be read says why. */
static void locks_part(shk_stat_w_t *w, shk_zone_t *z)
{
    unsigned n = shk_zone_locks(z);
    if (n > SHK_ZONE_MAX_LOCKS)
        n = SHK_ZONE_MAX_LOCKS;
    shk_stat_table_open(w, &shk_stat_lock_sec);
    for (unsigned i = 0; i < n; i++) {
        shk_zone_lock_t l;
        int rc = shk_zone_lock_info(z, i, &l);
        if (rc == SHK_OK) {
            shk_stat_section(w, &shk_stat_lock_sec, &l);
        } else {
            shk_stat_fault_t f = {i, shk_last_errmsg()};
            shk_stat_section(w, &shk_stat_lock_fault_sec, &f);
        }
    }
    shk_stat_table_close(w, &shk_stat_lock_sec);
}

/* The bus, when the zone holds one: totals, then every slot. */
static void bus_part(shk_stat_w_t *w, shk_zone_t *z)
{
    shk_bus_stats_t st;
    shk_bus_t *bus;
    unsigned n;
    if (!shk_zone_root(z, "bus"))
        return;
    bus = shk_bus_open(z, SHK_ZONE_RDONLY);
    if (!bus || shk_bus_stats(bus, &st) != SHK_OK) {
        part_fault(w, shk_stat_bus_sec.key, &shk_stat_bus_fault_sec, shk_last_errmsg());
        shk_bus_close(bus);
        return;
    }
    shk_stat_json_open(w, shk_stat_bus_sec.key, '{');
    shk_stat_section(w, &shk_stat_bus_sec, &st);
    shk_stat_table_open(w, &shk_stat_slot_sec);
    n = st.nslots < SHK_BUS_MAX_SLOTS ? st.nslots : SHK_BUS_MAX_SLOTS;
    for (unsigned i = 0; i < n; i++) {
        shk_stat_slot_t r = {.slot = i};
        if (shk_bus_slot_stats(bus, i, &r.s) == SHK_OK) {
            shk_stat_section(w, &shk_stat_slot_sec, &r);
        } else {
            shk_stat_fault_t f = {i, shk_last_errmsg()};
            shk_stat_section(w, &shk_stat_slot_fault_sec, &f);
        }
    }
    shk_stat_table_close(w, &shk_stat_slot_sec);
    shk_stat_json_close(w);
    shk_bus_close(bus);
}

/* The channel store, when the zone holds one: totals, then every slot. */
static void chan_part(shk_stat_w_t *w, shk_zone_t *z)
{
    shk_chan_stats_t st;
    shk_chan_t *ch;
    if (!shk_zone_root(z, "chan"))
        return;
    ch = shk_chan_open(z, SHK_ZONE_RDONLY);
    if (!ch || shk_chan_stats(ch, &st) != SHK_OK) {
        part_fault(w, shk_stat_chan_sec.key, &shk_stat_chan_fault_sec, shk_last_errmsg());
        shk_chan_close(ch);
        return;
    }
    shk_stat_json_open(w, shk_stat_chan_sec.key, '{');
    shk_stat_section(w, &shk_stat_chan_sec, &st);
    shk_stat_table_open(w, &shk_stat_cslot_sec);
    /* shk_chan_slot_stats bounds i by the slot count it checked on open */
    for (unsigned i = 0; i < st.nslots && i < SHK_CHAN_MAX_SLOTS; i++) {
        shk_stat_cslot_t r = {.slot = i};
        if (shk_chan_slot_stats(ch, i, &r.s) == SHK_OK) {
            shk_stat_section(w, &shk_stat_cslot_sec, &r);
        } else {
            shk_stat_fault_t f = {i, shk_last_errmsg()};
            shk_stat_section(w, &shk_stat_cslot_fault_sec, &f);
        }
    }
    shk_stat_table_close(w, &shk_stat_cslot_sec);
    shk_stat_json_close(w);
    shk_chan_close(ch);
}

/* The link to Redis, when the zone holds its record (channels_redis). */
static void redis_part(shk_stat_w_t *w, shk_zone_t *z)
{
    shk_redis_stats_t st;
    if (!shk_zone_root(z, "redis"))
        return;
    if (shk_redis_stats(z, &st) != SHK_OK) {
        part_fault(w, shk_stat_redis_sec.key, &shk_stat_redis_fault_sec, shk_last_errmsg());
        return;
    }
    shk_stat_json_open(w, shk_stat_redis_sec.key, '{');
    shk_stat_section(w, &shk_stat_redis_sec, &st);
    shk_stat_json_close(w);
}

/* The parts of a zone's report after its own figures, in order. A module
 * that keeps a structure in zones (a root) adds its part here and its
 * sections to shk_stat_tables.c. */
static void (*const zone_parts[])(shk_stat_w_t *w, shk_zone_t *z) = {
    slab_part,
    locks_part,
    bus_part,
    chan_part,
    redis_part,
};

static void zone_report(shk_stat_w_t *w, shk_zone_t *z)
{
    shk_stat_zone_t r;
    zone_record(&r, z);
    shk_stat_json_open(w, NULL, '{');
    shk_stat_section(w, &shk_stat_zone_sec, &r);
    for (size_t i = 0; i < SHK_ARRAY_LEN(zone_parts); i++)
        zone_parts[i](w, z);
    shk_stat_json_close(w);
}

/* The finished document, or NULL with SHK_ENOMEM. */
static char *report_done(shk_stat_w_t *w)
{
    if (w->json)
        shk_stat_puts(w, "\n");
    if (w->failed || w->depth || !w->p) {
        shk_stat_w_free(w);
        shk_error(SHK_ENOMEM, "out of memory building the report");
        return NULL;
    }
    return w->p;
}

char *shk_stat_render(shk_zone_t *const *zones, unsigned n, const char *instance,
                      unsigned flags)
{
    shk_stat_w_t w = {0};
    shk_stat_doc_t d = {instance ? instance : ""};
    if ((flags & ~SHK_STAT_JSON) || (n && !zones)) {
        shk_error(SHK_EINVAL, "shk_stat_render: %s", n && !zones ? "NULL zones" : "unknown flags");
        return NULL;
    }
    for (unsigned i = 0; i < n; i++)
        if (!zones[i]) {
            shk_error(SHK_EINVAL, "shk_stat_render: zone %u is NULL", i);
            return NULL;
        }
    w.json = (flags & SHK_STAT_JSON) != 0;
    shk_stat_json_open(&w, NULL, '{');
    shk_stat_section(&w, &shk_stat_doc_sec, &d);
    shk_stat_json_open(&w, shk_stat_zone_sec.key, '[');
    for (unsigned i = 0; i < n; i++)
        zone_report(&w, zones[i]);
    shk_stat_json_close(&w);
    shk_stat_json_close(&w);
    return report_done(&w);
}

/* Copy a name of the list, which must be terminated within its array. */
static int listed_name(char *dst, const char *src, size_t size)
{
    const char *end = memchr(src, '\0', size);
    if (!end)
        return -1;
    memcpy(dst, src, (size_t)(end - src) + 1);
    return 0;
}

char *shk_stat_render_list(const shk_zone_name_t *list, unsigned n, unsigned flags)
{
    shk_stat_w_t w = {0};
    if ((flags & ~SHK_STAT_JSON) || (n && !list)) {
        shk_error(SHK_EINVAL, "shk_stat_render_list: %s",
                  n && !list ? "NULL list" : "unknown flags");
        return NULL;
    }
    w.json = (flags & SHK_STAT_JSON) != 0;
    shk_stat_json_open(&w, NULL, '{');
    shk_stat_table_open(&w, &shk_stat_list_sec);
    for (unsigned k = 0; k < n; k++) {
        shk_stat_listed_t r;
        shk_zone_t *z = NULL;
        memset(&r, 0, sizeof r);
        if (listed_name(r.instance, list[k].instance, sizeof r.instance) != 0 ||
            listed_name(r.zone, list[k].zone, sizeof r.zone) != 0)
            r.error = "the entry's instance or zone name is not terminated";
        else if (!(z = shk_zone_attach(r.instance, r.zone, SHK_ZONE_RDONLY)))
            r.error = shk_last_errmsg();
        if (r.error) {
            shk_stat_section(&w, &shk_stat_list_fault_sec, &r);
            continue;
        }
        zone_record(&r.z, z);
        shk_stat_section(&w, &shk_stat_list_sec, &r);
        shk_zone_detach(z);
    }
    shk_stat_table_close(&w, &shk_stat_list_sec);
    shk_stat_json_close(&w);
    return report_done(&w);
}

char *shk_stat_escape(const char *s, unsigned flags)
{
    shk_stat_w_t w = {0};
    if (!s || (flags & ~SHK_STAT_JSON)) {
        shk_error(SHK_EINVAL, "shk_stat_escape: %s", !s ? "NULL string" : "unknown flags");
        return NULL;
    }
    if (flags & SHK_STAT_JSON)
        shk_stat_json_str(&w, s, strlen(s));
    else
        shk_stat_text_str(&w, s, strlen(s));
    if (!w.p && !w.failed)
        shk_stat_put(&w, "", 0);
    if (w.failed || !w.p) {
        shk_stat_w_free(&w);
        shk_error(SHK_ENOMEM, "out of memory escaping a string");
        return NULL;
    }
    return w.p;
}
