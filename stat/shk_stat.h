/*
 * shk_stat.h: reports on live zones: sizes, slab pools, locks (and the bus
 * when a zone holds one), and the list of named zones, as text for people
 * or as one JSON document for programs. `shmkit stat`, `shmkit zones` and
 * the demo's /status print them. Every figure comes from one description
 * that makes both outputs, and every string is escaped (JSON: valid UTF-8
 * and valid JSON whatever the bytes; text: no raw control byte or byte
 * >= 0x80), since zones attached from elsewhere and names in /dev/shm are
 * untrusted. docs/stat.md lists every section and field and the escaping
 * rules.
 */
#ifndef SHK_STAT_H
#define SHK_STAT_H

#include "shk_bus.h"
#include "shk_core.h"
#include "shk_zone.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SHK_STAT_JSON 0x1u /* one JSON document instead of text */

/*
 * Describe `n` zones (registry zones or attached ones, read-only mappings
 * included: nothing is locked or written) for the instance `instance` (NULL
 * reads as ""). Returns a NUL-terminated string the caller frees with
 * free(), or NULL with SHK_EINVAL (a flag other than SHK_STAT_JSON, NULL
 * zones with n > 0, a NULL zone) or SHK_ENOMEM. Figures are a snapshot read
 * without locks, through the modules' lock-free stats calls only; a part
 * that cannot be read (a damaged slab pool, bus, lock entry or slot) is
 * reported with the reason.
 *
 * JSON shape: {"instance": s, "zones": [{"name", "tag", "size", "kind",
 * "generation", "creator", "creator_alive", "slab": {"page_size",
 * "pages_total", "pages_free", "largest_free_run", "fails", "caches",
 * "cache_pages", "classes": [{"size", "used", "cached", "total", "reqs",
 * "fails"}]}, "locks": [{"name",
 * "owner", "waiters", "acquired", "contended", "sleeps", "recovered",
 * "forced"}], "bus": {"large", "slots": [{"slot", "pid", "state",
 * "generation", "depth", "high_water", "oldest_age_us", "queue_bytes",
 * "sent", "received", "discarded", "rejected", "skipped", "stale",
 * "doorbells_rung", "doorbells_coalesced"}]}}]}, "bus" only for a zone
 * that holds one. What cannot be read: "slab": null with "slab_error": s;
 * "bus": null with "bus_error": s; a lock {"error": s}; a slot {"slot",
 * "error": s}. docs/stat.md lists every field of both outputs.
 */
SHK_API char *shk_stat_render(shk_zone_t *const *zones, unsigned n, const char *instance,
                              unsigned flags);

/*
 * Describe the named zones of a list from shk_zones_list(): each is
 * attached read-only (shk_zone_attach), described and detached, taking no
 * lock; one that does not attach is reported with the reason. Returns a NUL-terminated
 * string the caller frees with free(), or NULL with SHK_EINVAL (a flag
 * other than SHK_STAT_JSON, NULL list with n > 0) or SHK_ENOMEM.
 *
 * JSON shape: {"zones": [{"instance", "zone", "size", "tag", "generation",
 * "creator", "creator_alive"} or {"instance", "zone", "error"}]}. Text: a
 * header row (INSTANCE ZONE SIZE TAG GEN CREATOR), then a row per entry.
 */
SHK_API char *shk_stat_render_list(const shk_zone_name_t *list, unsigned n, unsigned flags);

/*
 * The string s escaped as the reports escape strings: with SHK_STAT_JSON
 * a JSON string literal, quotes included; else for a terminal (controls,
 * DEL, bytes >= 0x80 as \xHH, backslash doubled). For a program that
 * prints a message that may hold someone else's bytes (an error naming an
 * object) next to a report. Returns a string the caller frees with free(),
 * or NULL with SHK_EINVAL (NULL s, unknown flags) or SHK_ENOMEM.
 */
SHK_API char *shk_stat_escape(const char *s, unsigned flags);

#ifdef __cplusplus
}
#endif

#endif /* SHK_STAT_H */
