/*
 * shk_zone_internal.h: what the zone module's files share: the header every
 * zone starts with (the shared layout, docs/zones.md), the process-local
 * handles behind shk_zone_t and shk_zones_t, and the functions one file
 * offers the others. Never installed, never included by a public header.
 *
 * Who holds what: shk_zone_reg.c the registry and the reload reuse rule;
 * shk_zone_map.c mappings, named objects (their naming scheme, what may be
 * found at a name, listing) and attach; shk_zone_hdr.c the header, its
 * checks on attach, roots, lock table and recovery; shk_zone_conf.c the
 * zone grammar (names, tags, name:size) and the directives.
 */
#ifndef SHK_ZONE_INTERNAL_H
#define SHK_ZONE_INTERNAL_H

#include "shk_atomic_internal.h"
#include "shk_internal.h"
#include "shk_zone.h"

#include <sys/types.h>

#define SHK_ZONE_MAGIC 0x454e4f5a4b4d4853ULL /* "SHMKZONE" read as little-endian */
#define SHK_ZONE_VERSION 1u
#define SHK_ZONE_DEFAULT_INSTANCE "default"
#define SHK_ZONE_DEFAULT_TAG "shm_zone"
#define SHK_ZONE_SLAB_LOCK "slab" /* lock table entry 0: the slab pool's lock */

/* Where the system keeps POSIX shared-memory objects (shm_open's names), for
 * listing them; only shk_zone_map.c uses it. */
#define SHK_ZONE_SHM_DIR "/dev/shm"
/* Room for SHK_ZONE_SHM_DIR "/shmkit.<instance>.<zone>" and its NUL. */
#define SHK_ZONE_PATH_MAX (2 * SHK_ZONE_NAME_MAX + 32)

/* ---- the header at offset 0 of every zone (shared) ------------------------
 *
 * Written once by the creator before any other process can see the zone,
 * then published by a release store of `magic`; an attacher loads `magic`
 * with acquire before it trusts any other field. Afterwards only these
 * change: generation (by the master on reuse, before it forks the new
 * workers), data_off, roots[] and the lock table (under the slab pool's
 * lock, read without it: release stores, acquire loads). */

typedef struct shk_zone_hroot_s {
    char key[SHK_ZONE_ROOT_KEY_MAX + 1];
    _Atomic uint64_t off; /* slab offset, 0 when the entry is unused */
} shk_zone_hroot_t;

typedef struct shk_zone_hlock_s {
    char name[SHK_SHMTX_NAME_MAX + 1];
    _Atomic uint64_t off; /* slab offset of the shk_shmtx_sh_t; written before nlocks grows */
} shk_zone_hlock_t;

typedef struct shk_zone_hdr_s {
    _Atomic uint64_t magic; /* SHK_ZONE_MAGIC, stored last (release) */
    uint32_t version;
    uint32_t hdr_size; /* sizeof(shk_zone_hdr_t), a layout check */
    uint64_t size;     /* bytes mapped: header page(s) + slab pool */
    uint64_t page_size;
    uint64_t slab_off; /* from the zone's start; page-aligned */
    uint64_t slab_size;
    _Atomic uint64_t generation;
    int32_t creator;
    uint32_t kind;
    char instance[SHK_ZONE_NAME_MAX + 1];
    char name[SHK_ZONE_NAME_MAX + 1];
    char tag[SHK_ZONE_TAG_MAX + 1];
    _Atomic uint64_t data_off; /* slab offset of the user's root, 0 if none */
    shk_zone_hroot_t roots[SHK_ZONE_ROOTS];
    _Atomic uint32_t nlocks;
    uint32_t pad;
    shk_zone_hlock_t locks[SHK_ZONE_MAX_LOCKS];
} shk_zone_hdr_t;

/* ---- process-local handles ---------------------------------------------- */

struct shk_zone_s {
    shk_zones_t *reg; /* NULL for an attached zone */
    char name[SHK_ZONE_NAME_MAX + 1];
    char tag[SHK_ZONE_TAG_MAX + 1];
    size_t size; /* declared, page-rounded; 0 = not yet known */
    unsigned kind, mode;
    int kind_set;
    shk_zone_init_t init;
    void *init_ctx;

    void *base; /* mapping, NULL until created */
    size_t map_size;
    shk_zone_hdr_t *hdr;
    /* The slab pool's place, validated once (written at creation, checked
     * at attach) and never read back from the header: every offset read
     * from the mapping is checked against these. */
    uint64_t slab_off, slab_size;
    dev_t dev; /* the named object's file, to know it again at its name */
    ino_t ino;
    shk_slab_t *slab;
    int rdonly;
    int adopted;      /* a newer registry took this mapping over */
    int created_here; /* this handle created the named object */
    int unlinked;     /* the named object's name is gone already */
    shk_zone_t *from; /* during create: the old zone being reused */
};

struct shk_zones_s {
    char instance[SHK_ZONE_NAME_MAX + 1];
    shk_zone_t **zones;
    unsigned n, cap;
    int created;
    pid_t creator; /* pid that ran shk_zones_create: only it unlinks */
    unsigned def_kind, def_mode;
    shk_conf_directive_t dirs[4];
};

/* ---- shk_zone_conf.c: the grammar ------------------------------------------ */

/*
 * The one check of a zone or instance name: the n bytes at s (no NUL needed
 * there) are [A-Za-z0-9_-], 1 to SHK_ZONE_NAME_MAX of them. `what` ("zone",
 * "instance") goes into the message:
 *   empty zone name                                        SHK_EINVAL
 *   zone name "nnn..." is longer than 63 bytes             SHK_ERANGE
 *   invalid zone name "o.e" (allowed: A-Z a-z 0-9 _ -)     SHK_EINVAL
 */
SHK_HIDDEN int shk_zone_name_check(const char *s, size_t n, const char *what);

/* 1 when the NUL-terminated tag holds no control character (tags are
 * printed by the reports, so one made by someone else must not carry
 * terminal escapes); shk_zone_add and attach both ask. */
SHK_HIDDEN int shk_zone_tag_printable(const char *tag);

/* shk_zone_name_check on a NUL-terminated string (NULL is empty). */
static inline int shk_zone_name_check_str(const char *s, const char *what)
{
    return shk_zone_name_check(s, s ? strlen(s) : 0, what);
}

/* ---- shk_zone_map.c: mappings and named objects ---------------------------- */

/* Map z fresh (anonymous, or a new named object that takes the name from
 * `replaced`, the old zone of that name, or from a stale object) and lay
 * out its header and slab pool. On failure nothing is left mapped. */
SHK_HIDDEN int shk_zone_map_fresh(shk_zone_t *z, shk_zone_t *replaced);

/* Forget z's mapping: unmap it, and unlink the named object when this
 * process (`creator`, the registry's) created it and no newer registry
 * adopted it. Sets no error. */
SHK_HIDDEN void shk_zone_release(shk_zone_t *z, pid_t creator);

/* ---- shk_zone_hdr.c: the header --------------------------------------------- */

/* Smallest zone: SHK_ZONE_MIN_PAGES pages, or a header page plus the
 * smallest slab pool if that is more. */
SHK_HIDDEN size_t shk_zone_min_size(void);

/* Bytes the header takes at the start of a zone: whole pages. */
SHK_HIDDEN size_t shk_zone_hdr_bytes(void);

/* Write the header of a zone just mapped at z->base whose slab pool z->slab
 * is laid out, and publish it (magic last, release). */
SHK_HIDDEN void shk_zone_hdr_init(shk_zone_t *z);

/*
 * The checks of attach, on a header someone else wrote (docs/untrusted.md):
 * every field of the header mapped at `h` (`real` bytes, the object's size)
 * against the mapping, with the zone's expected `instance` and `name`.
 * The fixed fields are read once into a copy, the growing ones (data root,
 * roots, lock table) with the loads their writers pair with. SHK_OK, or
 * SHK_ECORRUPT naming the field: `shared memory zone "one": nlocks
 * 4294967295, the lock table holds 1 to 32`. On success the checked fixed
 * fields go into z: name, tag, slab_off, slab_size.
 */
SHK_HIDDEN int shk_zone_hdr_check(const shk_zone_hdr_t *h, size_t real, const char *instance,
                                  const char *name, shk_zone_t *z);

/* After the slab pool is open: lock table entry 0 is the pool's own lock
 * ("slab", at the pool's lock). SHK_OK or SHK_ECORRUPT. */
SHK_HIDDEN int shk_zone_hdr_check_slab_lock(const shk_zone_t *z);

#endif /* SHK_ZONE_INTERNAL_H */
