/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * shk_stat_tables.c: the description of every section of the reports, one
 * table each: per figure its JSON key, where it is in the section's record,
 * its text label (a line's or a column's) and how its text reads. A figure
 * added to a module's stats structure is one line here, and appears in the
 * JSON and the text alike; docs/stat.md lists them all (test_stat checks
 * that every key is there, and that every field has both outputs or a
 * reason why not).
 */
#include "shk_stat_internal.h"

#define N_FIELDS(a) (unsigned)SHK_ARRAY_LEN(a)

/* Labels of line sections are padded to this: "  tag          limit_req". */
#define LABEL_W 13

/* ---- the document --------------------------------------------------------------------- */

static const shk_stat_field_t doc_fields[] = {
    {.key = "instance", SHK_STAT_CSTRF(shk_stat_doc_t, instance), .label = "instance",
     .flags = SHK_STAT_HEAD},
};

const shk_stat_section_t shk_stat_doc_sec = {
    .rec_size = sizeof(shk_stat_doc_t), .name = "document", .style = SHK_STAT_LINES, .indent = "",
    .fields = doc_fields, .nfields = N_FIELDS(doc_fields)};

/* ---- a zone --------------------------------------------------------------------------- */

static const char *const alive_text[] = {"gone", "alive", NULL};

/* A number member m of record type T, JSON key k, then the text designators. */
#define NUMF(T, k, m, ...) {.key = k, SHK_STAT_NUM(T, m), __VA_ARGS__}
#define ZONE(k, m, ...) NUMF(shk_stat_zone_t, k, m, __VA_ARGS__)

static const shk_stat_field_t zone_fields[] = {
    {.key = "name", SHK_STAT_CSTRF(shk_stat_zone_t, name), .label = "zone",
     .flags = SHK_STAT_HEAD},
    {.key = "tag", SHK_STAT_CSTRF(shk_stat_zone_t, tag), .label = "tag"},
    ZONE("size", size, .label = "size"),
    ZONE("kind", kind, .pre = " (", .post = ")",
         .names = (const char *const[]){"anon", "named", NULL},
         .tnames = (const char *const[]){"anonymous", "named", NULL}),
    ZONE("generation", generation, .label = "generation"),
    ZONE("creator", creator, .label = "creator pid"),
    {.key = "creator_alive", SHK_STAT_BOOLF(shk_stat_zone_t, creator_alive), .pre = " (",
     .post = ")", .tnames = alive_text},
};

const shk_stat_section_t shk_stat_zone_sec = {
    .rec_size = sizeof(shk_stat_zone_t), .name = "zone", .key = "zones", .style = SHK_STAT_LINES,
    .indent = "  ", .label_width = LABEL_W, .fields = zone_fields,
    .nfields = N_FIELDS(zone_fields)};

/* ---- the slab pool: totals, then one row per size class -------------------------------- */

#define SLAB(k, m, ...) NUMF(shk_slab_stats_t, k, m, __VA_ARGS__)

static const shk_stat_field_t slab_fields[] = {
    SLAB("page_size", page_size, .label = "page size", .post = " bytes"),
    SLAB("pages_total", pages_total, .label = "slab pages", .post = " total"),
    SLAB("pages_free", pages_free, .pre = ", ", .post = " free"),
    SLAB("largest_free_run", largest_free_run, .label = "largest run", .post = " pages"),
    SLAB("fails", fails, .label = "alloc fails"),
    SLAB("caches", caches, .label = "caches", .post = " process caches",
         .flags = SHK_STAT_HIDE0),
    SLAB("cache_pages", cache_pages, .pre = ", ", .post = " pages each"),
};

const shk_stat_section_t shk_stat_slab_sec = {
    .rec_size = sizeof(shk_slab_stats_t), .name = "slab pool", .key = "slab",
    .style = SHK_STAT_LINES, .indent = "  ", .label_width = LABEL_W, .fields = slab_fields,
    .nfields = N_FIELDS(slab_fields)};

/* The zone's "slab" is null and this says why. */
static const shk_stat_field_t slab_fault_fields[] = {
    {.key = "slab_error", SHK_STAT_CSTRF(shk_stat_fault_t, error), .label = "slab",
     .pre = "unreadable: "},
};

const shk_stat_section_t shk_stat_slab_fault_sec = {
    .rec_size = sizeof(shk_stat_fault_t), .name = "slab pool (unreadable)",
    .style = SHK_STAT_LINES, .indent = "  ", .label_width = LABEL_W, .fields = slab_fault_fields,
    .nfields = N_FIELDS(slab_fault_fields)};

#define CLASS(k, m, lbl, w) NUMF(shk_slab_class_stat_t, k, m, .label = lbl, .width = w)

static const shk_stat_field_t class_fields[] = {
    CLASS("size", size, "size", 10),         CLASS("used", used, "used", 10),
    CLASS("cached", cached, "cached", 10),   CLASS("total", total, "total", 10),
    CLASS("reqs", reqs, "requests", 12),     CLASS("fails", fails, "failures", 10),
};

/* The text leaves out classes that never held a slab nor served a request
 * (the JSON has every class). */
static int class_shown(const void *rec)
{
    const shk_slab_class_stat_t *c = rec;
    return c->total || c->reqs || c->fails;
}

const shk_stat_section_t shk_stat_class_sec = {
    .rec_size = sizeof(shk_slab_class_stat_t), .name = "size class", .key = "classes",
    .style = SHK_STAT_TABLE, .indent = "  ", .shown = class_shown, .fields = class_fields,
    .nfields = N_FIELDS(class_fields)};

/* ---- the zone's locks ------------------------------------------------------------------- */

#define LOCK(k, m, ...) NUMF(shk_zone_lock_t, k, stats.m, __VA_ARGS__)

static const shk_stat_field_t lock_fields[] = {
    {.key = "name", SHK_STAT_CHARSF(shk_zone_lock_t, name), .label = "name", .width = -20},
    LOCK("owner", owner, .label = "owner", .width = -16, .pre = "held by ", .zero = "free"),
    LOCK("waiters", waiters, .label = "waiters", .width = 8),
    LOCK("acquired", acquired, .label = "acquired", .width = 10),
    LOCK("contended", contended, .label = "contended", .width = 10),
    LOCK("sleeps", sleeps, .label = "sleeps", .width = 10),
    LOCK("recovered", recovered, .label = "recovered", .width = 10),
    LOCK("forced", forced, .label = "forced", .width = 10),
};

const shk_stat_section_t shk_stat_lock_sec = {
    .rec_size = sizeof(shk_zone_lock_t), .name = "lock", .key = "locks", .style = SHK_STAT_TABLE,
    .indent = "    ", .title = "  locks", .fields = lock_fields, .nfields = N_FIELDS(lock_fields)};

/* A lock table entry that could not be read (its record outside the pool):
 * a row of its own in the locks. */
static const shk_stat_field_t lock_fault_fields[] = {
    {.key = "error", SHK_STAT_CSTRF(shk_stat_fault_t, error), .label = "error",
     .pre = "unreadable: "},
};

const shk_stat_section_t shk_stat_lock_fault_sec = {
    .rec_size = sizeof(shk_stat_fault_t), .name = "lock (unreadable)", .style = SHK_STAT_TABLE,
    .indent = "    ", .fields = lock_fault_fields, .nfields = N_FIELDS(lock_fault_fields)};

/* ---- the bus, when the zone holds one: totals, then one row per slot --------------------- */

static const shk_stat_field_t bus_fields[] = {
    {.key = NULL, SHK_STAT_NUM(shk_bus_stats_t, nslots), .label = "bus", .post = " slots",
     .why = "JSON: the length of \"slots\""},
    {.key = "large", SHK_STAT_NUM(shk_bus_stats_t, large), .pre = ", ",
     .post = " large alerts through the slab"},
    {.key = "large_live", SHK_STAT_NUM(shk_bus_stats_t, large_live), .pre = ", ",
     .post = " blocks live"},
    {.key = "large_bytes", SHK_STAT_NUM(shk_bus_stats_t, large_bytes), .pre = " (",
     .post = " bytes)"},
    {.key = "large_sending", SHK_STAT_NUM(shk_bus_stats_t, large_sending), .pre = ", ",
     .post = " being sent"},
};

const shk_stat_section_t shk_stat_bus_sec = {
    .rec_size = sizeof(shk_bus_stats_t), .name = "bus", .key = "bus", .style = SHK_STAT_LINES,
    .indent = "  ", .label_width = LABEL_W, .fields = bus_fields, .nfields = N_FIELDS(bus_fields)};

/* The zone's "bus" root is set but the bus does not open: "bus" is null. */
static const shk_stat_field_t bus_fault_fields[] = {
    {.key = "bus_error", SHK_STAT_CSTRF(shk_stat_fault_t, error), .label = "bus",
     .pre = "unreadable: "},
};

const shk_stat_section_t shk_stat_bus_fault_sec = {
    .rec_size = sizeof(shk_stat_fault_t), .name = "bus (unreadable)", .style = SHK_STAT_LINES,
    .indent = "  ", .label_width = LABEL_W, .fields = bus_fault_fields,
    .nfields = N_FIELDS(bus_fault_fields)};

#define SLOT(k, m, lbl, w) NUMF(shk_stat_slot_t, k, m, .label = lbl, .width = w)

static const shk_stat_field_t slot_fields[] = {
    SLOT("slot", slot, "slot", 4),
    SLOT("pid", s.pid, "pid", 7),
    NUMF(shk_stat_slot_t, "state", s.state, .label = "state", .width = -6,
         .names = (const char *const[]){"free", "joined", NULL}),
    SLOT("generation", s.generation, "gen", 5),
    SLOT("depth", s.depth, "depth", 6),
    SLOT("high_water", s.high_water, "high", 6),
    SLOT("oldest_age_us", s.oldest_age_us, "oldest_us", 9),
    SLOT("queue_bytes", s.queue_bytes, "qbytes", 10),
    SLOT("sent", s.sent, "sent", 10),
    SLOT("received", s.received, "received", 10),
    SLOT("discarded", s.discarded, "disc", 6),
    SLOT("rejected", s.rejected, "rej", 6),
    SLOT("skipped", s.skipped, "skip", 6),
    SLOT("stale", s.stale, "stale", 6),
    SLOT("doorbells_rung", s.rung, "rung", 8),
    SLOT("doorbells_coalesced", s.coalesced, "coalesced", 10),
    SLOT("large_refs", s.large_refs, "lrefs", 6),
    SLOT("large_ref_bytes", s.large_ref_bytes, "lbytes", 10),
};

const shk_stat_section_t shk_stat_slot_sec = {
    .rec_size = sizeof(shk_stat_slot_t), .name = "bus slot", .key = "slots",
    .style = SHK_STAT_TABLE, .indent = "    ", .fields = slot_fields,
    .nfields = N_FIELDS(slot_fields)};

/* A slot whose stats could not be read: its index and why. */
static const shk_stat_field_t slot_fault_fields[] = {
    {.key = "slot", SHK_STAT_NUM(shk_stat_fault_t, index), .label = "slot", .width = 4},
    {.key = "error", SHK_STAT_CSTRF(shk_stat_fault_t, error), .label = "error",
     .pre = "unreadable: "},
};

const shk_stat_section_t shk_stat_slot_fault_sec = {
    .rec_size = sizeof(shk_stat_fault_t), .name = "bus slot (unreadable)", .style = SHK_STAT_TABLE,
    .indent = "    ", .fields = slot_fault_fields, .nfields = N_FIELDS(slot_fault_fields)};

/* ---- the channel store (chan/) ------------------------------------------------------- */

#define CHAN(k, m, pre_, post_)                                                                    \
    NUMF(shk_chan_stats_t, k, m, .pre = pre_, .post = post_)

static const shk_stat_field_t chan_fields[] = {
    {.key = NULL, SHK_STAT_NUM(shk_chan_stats_t, nslots), .label = "channels", .post = " slots",
     .why = "JSON: the length of \"slots\""},
    CHAN("channels", channels, ", ", " channels"),
    CHAN("wildcard_channels", wildcard_channels, " (", " wildcard)"),
    CHAN("subscribers", subscribers, ", ", " subscribers"),
    CHAN("stored", stored, ", ", " messages stored"),
    CHAN("stored_bytes", stored_bytes, " (", " bytes)"),
    CHAN("messages", messages, ", ", " in the zone"),
    CHAN("published", published, ", ", " published"),
    CHAN("delivered", delivered, ", ", " delivered"),
    CHAN("reclaimed", reclaimed, ", ", " reclaimed"),
    CHAN("expired", expired, ", ", " expired"),
    CHAN("deleted", deleted, ", ", " channels deleted"),
    CHAN("events_failed", events_failed, ", ", " events failed"),
    CHAN("oldest_age_ms", oldest_age_ms, ", oldest ", " ms old"),
};

const shk_stat_section_t shk_stat_chan_sec = {
    .rec_size = sizeof(shk_chan_stats_t), .name = "channel store", .key = "chan",
    .style = SHK_STAT_LINES, .indent = "  ", .label_width = LABEL_W, .fields = chan_fields,
    .nfields = N_FIELDS(chan_fields)};

/* The zone's "chan" root is set but the store does not open: "chan" is null. */
static const shk_stat_field_t chan_fault_fields[] = {
    {.key = "chan_error", SHK_STAT_CSTRF(shk_stat_fault_t, error), .label = "channels",
     .pre = "unreadable: "},
};

const shk_stat_section_t shk_stat_chan_fault_sec = {
    .rec_size = sizeof(shk_stat_fault_t), .name = "channel store (unreadable)",
    .style = SHK_STAT_LINES, .indent = "  ", .label_width = LABEL_W, .fields = chan_fault_fields,
    .nfields = N_FIELDS(chan_fault_fields)};

#define CSLOT(k, m, lbl, w) NUMF(shk_stat_cslot_t, k, m, .label = lbl, .width = w)

static const shk_stat_field_t cslot_fields[] = {
    CSLOT("slot", slot, "slot", 4),
    CSLOT("pid", s.pid, "pid", 7),
    CSLOT("epoch", s.epoch, "epoch", 6),
    {.key = "dead", SHK_STAT_BOOLF(shk_stat_cslot_t, s.dead), .label = "dead", .width = -5,
     .tnames = (const char *const[]){"no", "yes", NULL}},
    CSLOT("subscribers", s.subscribers, "subs", 8),
    CSLOT("delivered", s.delivered, "delivered", 10),
    CSLOT("alerts", s.alerts, "alerts", 10),
    CSLOT("alerts_missed", s.alerts_missed, "missed", 8),
    CSLOT("stale", s.stale, "stale", 6),
};

const shk_stat_section_t shk_stat_cslot_sec = {
    .rec_size = sizeof(shk_stat_cslot_t), .name = "channel store slot", .key = "slots",
    .style = SHK_STAT_TABLE, .indent = "    ", .fields = cslot_fields,
    .nfields = N_FIELDS(cslot_fields)};

static const shk_stat_field_t cslot_fault_fields[] = {
    {.key = "slot", SHK_STAT_NUM(shk_stat_fault_t, index), .label = "slot", .width = 4},
    {.key = "error", SHK_STAT_CSTRF(shk_stat_fault_t, error), .label = "error",
     .pre = "unreadable: "},
};

const shk_stat_section_t shk_stat_cslot_fault_sec = {
    .rec_size = sizeof(shk_stat_fault_t), .name = "channel store slot (unreadable)",
    .style = SHK_STAT_TABLE, .indent = "    ", .fields = cslot_fault_fields,
    .nfields = N_FIELDS(cslot_fault_fields)};

/* ---- the link to Redis (redis/) ------------------------------------------------------ */

#define RLINK(k, m, pre_, post_) NUMF(shk_redis_stats_t, k, m, .pre = pre_, .post = post_)

static const char *const redis_states[] = {"down", "connecting", "syncing", "up", NULL};

static const shk_stat_field_t redis_fields[] = {
    NUMF(shk_redis_stats_t, "state", state, .label = "redis", .names = redis_states,
         .tnames = redis_states),
    {.key = "cluster", SHK_STAT_BOOLF(shk_redis_stats_t, cluster), .pre = " (", .post = ")",
     .tnames = (const char *const[]){"one server", "cluster", NULL}},
    RLINK("nodes", nodes, ", ", " nodes"),
    RLINK("pid", pid, ", relay pid ", ""),
    RLINK("lag_ms", lag_ms, ", lag ", " ms"),
    RLINK("reconnects", reconnects, ", ", " reconnects"),
    RLINK("relayed", relayed, ", ", " relayed"),
    RLINK("caught_up", caught_up, " (", " caught up)"),
    RLINK("duplicates", duplicates, ", ", " duplicates"),
    RLINK("catchups", catchups, ", ", " catch-up reads"),
    RLINK("commands", commands, ", ", " commands"),
    RLINK("published", published, ", ", " published"),
    RLINK("publish_errors", publish_errors, ", ", " publish errors"),
    RLINK("refused", refused, ", ", " refused"),
    RLINK("last_id_ms", last_id_ms, ", last id at ", " ms"),
};

const shk_stat_section_t shk_stat_redis_sec = {
    .rec_size = sizeof(shk_redis_stats_t), .name = "redis link", .key = "redis",
    .style = SHK_STAT_LINES, .indent = "  ", .label_width = LABEL_W, .fields = redis_fields,
    .nfields = N_FIELDS(redis_fields)};

/* The zone's "redis" root is set but is not a link record: "redis" is null. */
static const shk_stat_field_t redis_fault_fields[] = {
    {.key = "redis_error", SHK_STAT_CSTRF(shk_stat_fault_t, error), .label = "redis",
     .pre = "unreadable: "},
};

const shk_stat_section_t shk_stat_redis_fault_sec = {
    .rec_size = sizeof(shk_stat_fault_t), .name = "redis link (unreadable)",
    .style = SHK_STAT_LINES, .indent = "  ", .label_width = LABEL_W, .fields = redis_fault_fields,
    .nfields = N_FIELDS(redis_fault_fields)};

/* ---- the zones list (shmkit zones) ----------------------------------------------------- */

#define LISTED(k, m, ...) NUMF(shk_stat_listed_t, k, m, __VA_ARGS__)

static const shk_stat_field_t list_fields[] = {
    {.key = "instance", SHK_STAT_CHARSF(shk_stat_listed_t, instance), .label = "INSTANCE",
     .width = -16},
    {.key = "zone", SHK_STAT_CHARSF(shk_stat_listed_t, zone), .label = "ZONE", .width = -16},
    LISTED("size", z.size, .label = "SIZE", .width = 12),
    {.key = "tag", SHK_STAT_CSTRF(shk_stat_listed_t, z.tag), .label = "TAG", .width = -16},
    LISTED("generation", z.generation, .label = "GEN", .width = 5),
    LISTED("creator", z.creator, .label = "CREATOR"),
    {.key = "creator_alive", SHK_STAT_BOOLF(shk_stat_listed_t, z.creator_alive), .pre = " (",
     .post = ")", .tnames = alive_text},
};

const shk_stat_section_t shk_stat_list_sec = {
    .rec_size = sizeof(shk_stat_listed_t), .name = "listed zone", .key = "zones",
    .style = SHK_STAT_TABLE, .indent = "", .fields = list_fields, .nfields = N_FIELDS(list_fields)};

/* An object of the listing that does not attach: its names and why. */
static const shk_stat_field_t list_fault_fields[] = {
    {.key = "instance", SHK_STAT_CHARSF(shk_stat_listed_t, instance), .label = "INSTANCE",
     .width = -16},
    {.key = "zone", SHK_STAT_CHARSF(shk_stat_listed_t, zone), .label = "ZONE", .width = -16},
    {.key = "error", SHK_STAT_CSTRF(shk_stat_listed_t, error), .label = "ERROR",
     .pre = "invalid: "},
};

const shk_stat_section_t shk_stat_list_fault_sec = {
    .rec_size = sizeof(shk_stat_listed_t), .name = "listed zone (invalid)",
    .style = SHK_STAT_TABLE, .indent = "", .fields = list_fault_fields,
    .nfields = N_FIELDS(list_fault_fields)};

const shk_stat_section_t *const shk_stat_sections[] = {
    &shk_stat_doc_sec,       &shk_stat_zone_sec,       &shk_stat_slab_sec,
    &shk_stat_slab_fault_sec, &shk_stat_class_sec,     &shk_stat_lock_sec,
    &shk_stat_lock_fault_sec, &shk_stat_bus_sec,       &shk_stat_bus_fault_sec,
    &shk_stat_slot_sec,      &shk_stat_slot_fault_sec, &shk_stat_chan_sec,
    &shk_stat_chan_fault_sec, &shk_stat_cslot_sec,     &shk_stat_cslot_fault_sec,
    &shk_stat_redis_sec,     &shk_stat_redis_fault_sec,
    &shk_stat_list_sec,
    &shk_stat_list_fault_sec, NULL};
