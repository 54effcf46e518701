/*
 * shk_stat.h: reports on live zones: sizes, slab pools, locks (and the bus
 * when a zone holds one), as text for people or as one JSON document for
 * programs. `shmkit stat` and the demo's /status print the same document.
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
 * included: nothing is locked or written) for the instance `instance`.
 * Returns a NUL-terminated string the caller frees with free(), or NULL
 * with SHK_ENOMEM. Figures are a snapshot read without locks.
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
 * that holds one. docs/zones.md and docs/bus.md list every field.
 */
SHK_API char *shk_stat_render(shk_zone_t *const *zones, unsigned n, const char *instance,
                              unsigned flags);

#ifdef __cplusplus
}
#endif

#endif /* SHK_STAT_H */
