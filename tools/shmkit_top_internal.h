/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * shmkit_top_internal.h: what the files of `shmkit top` share: a snapshot
 * of an instance's named zones (shmkit_top_sample.c: every figure read
 * through the library's lock-free stats calls, from zones attached
 * read-only for the one reading and detached after it), the text a pair of
 * snapshots makes, rates included (shmkit_top_view.c), and the verb itself
 * with its terminal (shmkit_top.c). Never installed.
 */
#ifndef SHMKIT_TOP_INTERNAL_H
#define SHMKIT_TOP_INTERNAL_H

#include "shmkit.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Most size classes a zone's snapshot keeps (a pool has about a dozen). */
#define SHMKIT_TOP_MAX_CLASSES 64

/* One zone as one reading found it. Strings are as the zone holds them:
 * the view escapes them. A part that could not be read has its error. */
typedef struct shmkit_top_zone_s {
    char name[SHK_ZONE_NAME_MAX + 1];
    char *error; /* the attach failed: why (malloc'd); nothing else is set */
    char tag[SHK_ZONE_TAG_MAX + 1];
    size_t size;
    unsigned kind;
    uint64_t generation;
    pid_t creator;
    int creator_alive;

    char *slab_error;
    shk_slab_stats_t slab;
    unsigned nclasses;
    shk_slab_class_stat_t classes[SHMKIT_TOP_MAX_CLASSES];

    unsigned nlocks;
    shk_zone_lock_t locks[SHK_ZONE_MAX_LOCKS];
    char *lock_error[SHK_ZONE_MAX_LOCKS];

    int has_bus;
    char *bus_error;
    shk_bus_stats_t bus;
    unsigned nslots;
    shk_bus_slot_stats_t slots[SHK_BUS_MAX_SLOTS];
    int slot_ok[SHK_BUS_MAX_SLOTS];

    int has_chan;
    char *chan_error;
    shk_chan_stats_t chan;
    unsigned ncslots;
    shk_chan_slot_stats_t cslots[SHK_CHAN_MAX_SLOTS];
    int cslot_ok[SHK_CHAN_MAX_SLOTS];
} shmkit_top_zone_t;

/* One reading of an instance. */
typedef struct shmkit_top_snap_s {
    uint64_t at_ns;    /* monotonic time of the reading */
    char *error;       /* the zones could not be listed: why (malloc'd) */
    unsigned n;        /* zones */
    unsigned failed;   /* of them, how many did not attach */
    shmkit_top_zone_t *zones;
} shmkit_top_snap_t;

/* Read the zones `names` (nnames of them) of `instance`, or with nnames 0
 * every named zone shk_zones_list finds for it, into *snap. Each zone is
 * attached read-only, read and detached, so that a zone replaced by a
 * restart of the instance is found anew at the next reading. 0, or -1
 * when out of memory (snap->error set when the list failed: not an error
 * of the call). Release with shmkit_top_snap_free. */
int shmkit_top_sample(const char *instance, char *const *names, unsigned nnames,
                      shmkit_top_snap_t *snap);
void shmkit_top_snap_free(shmkit_top_snap_t *snap);

/* How the view is headed. */
typedef struct shmkit_top_head_s {
    const char *instance;
    int live;        /* the terminal view (its key hint), else the one text report */
    double interval; /* seconds between readings */
} shmkit_top_head_t;

/* The text of `cur`, with rates per second against `prev` (NULL: none yet;
 * a figure whose zone, lock or slot is not the same one in both readings
 * has none either): lines ending in '\n', only printable ASCII (every
 * string of a zone escaped as shk_stat_escape does), so that a byte is a
 * column. malloc'd; NULL when out of memory. */
char *shmkit_top_render(const shmkit_top_snap_t *prev, const shmkit_top_snap_t *cur,
                        const shmkit_top_head_t *head);

/* The `top` verb: argv[0] is "top". Returns the exit status. */
int shmkit_top_main(int argc, char **argv, const char *prog);
void shmkit_top_usage(FILE *f, const char *prog);

#endif /* SHMKIT_TOP_INTERNAL_H */
