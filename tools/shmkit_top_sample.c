/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * shmkit_top_sample.c: one reading of an instance for `shmkit top`. The
 * zones are listed (shk_zones_list) and each is attached read-only, read
 * and detached at every reading: a restarted instance unlinks its zones
 * and makes new ones under the same names, and a mapping held from the
 * last reading would go on showing the old memory. Figures come only from
 * the library's lock-free stats calls, as the stat module reads them
 * (shk_slab_stats, shk_slab_class_stats, shk_zone_lock_info,
 * shk_bus_stats, shk_bus_slot_stats, shk_chan_stats, shk_chan_slot_stats),
 * and every loop is bounded by the module's own limit as well as by the
 * count it reports. Nothing here takes a lock or writes to a zone.
 */
#include "shmkit_top_internal.h"

#include <stdlib.h>
#include <string.h>

/* A copy of the last error's message for the snapshot; -1 when out of memory. */
static int keep_error(char **dst)
{
    *dst = strdup(shk_last_errmsg());
    return *dst ? 0 : -1;
}

/* A string of the zone, copied terminated within cap bytes. */
static void copy_str(char *dst, const char *src, size_t cap)
{
    size_t n = src ? strnlen(src, cap - 1) : 0;
    memcpy(dst, src ? src : "", n);
    dst[n] = '\0';
}

static int read_slab(shmkit_top_zone_t *t, shk_zone_t *z)
{
    shk_slab_t *slab = shk_zone_slab(z);
    if (shk_slab_stats(slab, &t->slab) != SHK_OK)
        return keep_error(&t->slab_error);
    /* shk_slab_class_stats bounds i by the class table it checked on open */
    for (unsigned i = 0; i < t->slab.nclasses && t->nclasses < SHMKIT_TOP_MAX_CLASSES; i++) {
        if (shk_slab_class_stats(slab, i, &t->classes[t->nclasses]) != SHK_OK)
            break;
        t->nclasses++;
    }
    return 0;
}

static int read_locks(shmkit_top_zone_t *t, shk_zone_t *z)
{
    unsigned n = shk_zone_locks(z);
    t->nlocks = n < SHK_ZONE_MAX_LOCKS ? n : SHK_ZONE_MAX_LOCKS;
    for (unsigned i = 0; i < t->nlocks; i++)
        if (shk_zone_lock_info(z, i, &t->locks[i]) != SHK_OK && keep_error(&t->lock_error[i]))
            return -1;
    return 0;
}

static int read_bus(shmkit_top_zone_t *t, shk_zone_t *z)
{
    shk_bus_t *bus;
    if (!shk_zone_root(z, "bus"))
        return 0;
    t->has_bus = 1;
    bus = shk_bus_open(z, SHK_ZONE_RDONLY);
    if (!bus || shk_bus_stats(bus, &t->bus) != SHK_OK) {
        int rc = keep_error(&t->bus_error);
        shk_bus_close(bus);
        return rc;
    }
    t->nslots = t->bus.nslots < SHK_BUS_MAX_SLOTS ? t->bus.nslots : SHK_BUS_MAX_SLOTS;
    for (unsigned i = 0; i < t->nslots; i++)
        t->slot_ok[i] = shk_bus_slot_stats(bus, i, &t->slots[i]) == SHK_OK;
    shk_bus_close(bus);
    return 0;
}

static int read_chan(shmkit_top_zone_t *t, shk_zone_t *z)
{
    shk_chan_t *ch;
    if (!shk_zone_root(z, "chan"))
        return 0;
    t->has_chan = 1;
    ch = shk_chan_open(z, SHK_ZONE_RDONLY);
    if (!ch || shk_chan_stats(ch, &t->chan) != SHK_OK) {
        int rc = keep_error(&t->chan_error);
        shk_chan_close(ch);
        return rc;
    }
    /* shk_chan_slot_stats bounds i by the slot count it checked on open */
    t->ncslots = t->chan.nslots < SHK_CHAN_MAX_SLOTS ? t->chan.nslots : SHK_CHAN_MAX_SLOTS;
    for (unsigned i = 0; i < t->ncslots; i++)
        t->cslot_ok[i] = shk_chan_slot_stats(ch, i, &t->cslots[i]) == SHK_OK;
    shk_chan_close(ch);
    return 0;
}

/* Attach, read, detach one zone. -1 only when out of memory. */
static int read_zone(shmkit_top_zone_t *t, const char *instance, const char *name)
{
    shk_zone_t *z;
    int rc;
    copy_str(t->name, name, sizeof t->name);
    if (!(z = shk_zone_attach(instance, t->name, SHK_ZONE_RDONLY)))
        return keep_error(&t->error) == 0 ? 1 : -1;
    copy_str(t->tag, shk_zone_tag(z), sizeof t->tag);
    t->size = shk_zone_size(z);
    t->kind = shk_zone_kind(z);
    t->generation = shk_zone_generation(z);
    t->creator = shk_zone_creator(z);
    t->creator_alive = t->creator > 0 && shk_pid_alive(t->creator);
    rc = read_slab(t, z) | read_locks(t, z) | read_bus(t, z) | read_chan(t, z);
    shk_zone_detach(z);
    return rc < 0 ? -1 : 0;
}

int shmkit_top_sample(const char *instance, char *const *names, unsigned nnames,
                      shmkit_top_snap_t *snap)
{
    shk_zone_name_t *found = NULL;
    unsigned n = nnames;
    memset(snap, 0, sizeof *snap);
    snap->at_ns = shk_time_ns();
    if (!nnames && shk_zones_list(instance, &found, &n) != SHK_OK)
        return keep_error(&snap->error);
    if (n && !(snap->zones = calloc(n, sizeof *snap->zones))) {
        shk_zones_list_free(found);
        return -1;
    }
    for (unsigned k = 0; k < n; k++) {
        const char *name = found ? found[k].zone : names[k];
        if (found && !memchr(found[k].zone, '\0', sizeof found[k].zone))
            continue; /* the list terminates its names; never read past one */
        int rc = read_zone(&snap->zones[snap->n++], instance, name);
        if (rc < 0) {
            shk_zones_list_free(found);
            return -1;
        }
        snap->failed += rc == 1;
    }
    shk_zones_list_free(found);
    return 0;
}

void shmkit_top_snap_free(shmkit_top_snap_t *snap)
{
    for (unsigned k = 0; k < snap->n; k++) {
        shmkit_top_zone_t *t = &snap->zones[k];
        free(t->error);
        free(t->slab_error);
        free(t->bus_error);
        free(t->chan_error);
        for (unsigned i = 0; i < SHK_ZONE_MAX_LOCKS; i++)
            free(t->lock_error[i]);
    }
    free(snap->zones);
    free(snap->error);
    memset(snap, 0, sizeof *snap);
}
