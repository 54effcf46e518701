/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * shk_zone.h: named, tagged shared-memory zones and the registry that
 * declares them.
 *
 * A zone is a region of shared memory with a name, a size and a tag (a
 * string naming its user, e.g. the module that declared it). The master
 * declares zones while it reads its configuration (shk_zone_add), maps them
 * all at once (shk_zones_create) before it forks workers, and on reload
 * builds a new registry in which every zone whose name, size and tag match
 * one of the old registry keeps its memory and its data.
 *
 * Every zone starts with a header (magic, layout version, name, tag, size,
 * generation, creator pid, a table of the locks that live in it, named
 * roots), followed by a slab pool that fills the rest. See docs/zones.md.
 *
 * The module also owns the zone grammar: what a zone or instance name may
 * be (SHK_ZONE_NAME_MAX), the `name:size` argument (shk_zone_parse) and the
 * naming of named zones' POSIX objects, which shk_zones_list reads back.
 *
 * Handles (shk_zone_t, shk_zones_t) are process-local; a forked worker
 * inherits its master's handles and mappings and may use them.
 */
#ifndef SHK_ZONE_H
#define SHK_ZONE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "shk_conf.h"
#include "shk_core.h"
#include "shk_shmtx.h"
#include "shk_slab.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct shk_zone_s shk_zone_t;   /* one zone, process-local handle */
typedef struct shk_zones_s shk_zones_t; /* the zones one configuration declares */

/* Longest zone or instance name, bytes without the NUL; names are
 * [A-Za-z0-9_-]+. */
#define SHK_ZONE_NAME_MAX 63
/* Longest tag, bytes without the NUL. */
#define SHK_ZONE_TAG_MAX 63
/* Named roots per zone, and the longest root key. */
#define SHK_ZONE_ROOTS 8
#define SHK_ZONE_ROOT_KEY_MAX 15
/* Locks a zone's lock table can hold (the slab pool's included). */
#define SHK_ZONE_MAX_LOCKS 32
/* A zone must hold at least this many pages (header and slab pool). */
#define SHK_ZONE_MIN_PAGES 8

/* Mapping kinds (shk_zone_set_kind) and attach flags. */
#define SHK_ZONE_ANON 0u   /* anonymous shared mapping, inherited by fork (default) */
#define SHK_ZONE_NAMED 1u  /* POSIX shm object "/shmkit.<instance>.<zone>" */
#define SHK_ZONE_RDONLY 0x10u

/*
 * Init callback: runs in the creating process once the zone is mapped.
 * For a fresh zone old_data is NULL and the slab pool is empty; for a zone
 * kept on reload, old_data is what the previous generation set with
 * shk_zone_set_data() (the memory is the same, so it may simply be
 * adopted). Return SHK_OK or an error status: shk_zones_create() then fails
 * with it.
 */
typedef int (*shk_zone_init_t)(shk_zone_t *zone, void *old_data, void *ctx);

/* ---- the grammar ------------------------------------------------------ */

/*
 * Parse a `name:size` argument ("one:10m" -> "one", 10485760), as
 * `shm_zone NAME:SIZE` and every `zone=NAME:SIZE` parameter take it. The
 * name (before the last ':') is [A-Za-z0-9_-], 1 to SHK_ZONE_NAME_MAX
 * bytes; the size is shk_parse_size()'s syntax and not 0. Errors, with
 * their messages (a directive handler passes them to shk_conf_error):
 *   SHK_EINVAL  invalid zone "one", expected name:size     (no ':' or no name)
 *   SHK_ERANGE  zone name "nnn..." is longer than 63 bytes
 *   SHK_EINVAL  invalid zone name "o.e" (allowed: A-Z a-z 0-9 _ -)
 *   SHK_EINVAL  invalid zone size "10x"                    (also "0")
 *   SHK_ERANGE  invalid zone size "99999999999999999999"   (overflow)
 * `name` and `*size` are written only on success.
 */
SHK_API int shk_zone_parse(const char *arg, char name[SHK_ZONE_NAME_MAX + 1], size_t *size);

/* ---- registry -------------------------------------------------------- */

/* Registry-wide mapping default for zones whose kind was not set with
 * shk_zone_set_kind(): applied by shk_zones_create(). */
SHK_API int shk_zones_set_mapping(shk_zones_t *reg, unsigned kind, unsigned mode);

/* Change the instance name (before shk_zones_create). */
SHK_API int shk_zones_set_instance(shk_zones_t *reg, const char *instance);

/* A new, empty registry. `instance` ([A-Za-z0-9_-], at most SHK_ZONE_NAME_MAX
 * bytes) names the server instance in the names of named zones; NULL means
 * "default". NULL on failure (SHK_EINVAL, SHK_ERANGE, SHK_ENOMEM). */
SHK_API shk_zones_t *shk_zones_new(const char *instance);

/* Release the registry: zones that a newer registry adopted (reload) are
 * left mapped for it; every other zone is unmapped, and a named zone this
 * registry created is unlinked. Handles into the registry become invalid.
 * NULL is fine. */
SHK_API void shk_zones_free(shk_zones_t *reg);

/* The registry's instance name. */
SHK_API const char *shk_zones_instance(const shk_zones_t *reg);

/*
 * Declare a zone (before shk_zones_create). `name`: [A-Za-z0-9_-], at most
 * SHK_ZONE_NAME_MAX bytes; `tag`: 1 to SHK_ZONE_TAG_MAX bytes without
 * control characters (reports print it), NULL means "shm_zone". `size` is rounded up to whole pages; 0 means "whatever size it
 * is declared with elsewhere" (a reference, as limit_req makes to a
 * limit_req_zone). Returns the declaration, or NULL with:
 *   SHK_EEXIST  the shared memory zone "one" is already declared for a
 *               different use (same name, another tag);
 *   SHK_EEXIST  the size 2097152 of shared memory zone "one" conflicts with
 *               already declared size 1048576;
 *   SHK_EINVAL  bad name or tag (empty, a control character), zone too small (fewer than
 *               SHK_ZONE_MIN_PAGES pages), or the registry is already created;
 *   SHK_ERANGE  name or tag too long.
 * Same name and tag returns the existing declaration (and sets its size if
 * it had none).
 */
SHK_API shk_zone_t *shk_zone_add(shk_zones_t *reg, const char *name, size_t size,
                                 const char *tag);

/* Set the init callback of a declared zone (replaces a previous one). */
SHK_API int shk_zone_set_init(shk_zone_t *zone, shk_zone_init_t init, void *ctx);

/* Choose the mapping kind of a declared zone: SHK_ZONE_ANON (default) or
 * SHK_ZONE_NAMED with file mode `mode` (0 means 0600). SHK_EINVAL after
 * the zones are created or for a bad kind or mode. */
SHK_API int shk_zone_set_kind(shk_zone_t *zone, unsigned kind, unsigned mode);

/*
 * Map every declared zone and initialise it, applying the reuse rule
 * against `old` (the previous registry, or NULL): a zone whose name, size,
 * tag and kind match a zone of `old` keeps that zone's memory, its
 * generation goes up by one, and its init gets the old data. Other zones
 * are created fresh (generation 1): header, empty slab pool, init with
 * old_data NULL. A named zone is made complete in an unnamed file and only
 * then linked at its name, so a name never shows half a zone. Something
 * already at the name (docs/untrusted.md) is removed only when it is
 * provably a stale zone of ours: a regular file owned by this effective
 * uid that holds no zone header, another zone's header, or this zone's
 * header with its creator gone (shk_pid_alive, or its pid now a process
 * that does not map the object: the number reused); every other thing is left
 * alone and refused with SHK_EEXIST and a message naming it and saying
 * what to remove:
 *   /dev/shm/shmkit.x.one is a FIFO, not a zone: refused; remove it ...
 *   /dev/shm/shmkit.x.one is owned by uid 65534, not by uid 0 that runs
 *     this: refused; remove it ...
 *   shared memory zone "one" of instance "x" exists and its creator (pid
 *     1234) is alive: refused; if pid 1234 is no server of this instance,
 *     remove /dev/shm/shmkit.x.one
 *   /dev/shm/shmkit.x.one holds a zone of layout version 2 (this library
 *     reads 1): refused; ...
 * Nothing here blocks on a name or follows a symbolic link.
 *
 * On failure nothing changes: zones mapped by this call are unmapped, and
 * `old` keeps every zone it had, untouched. Errors: SHK_EINVAL (a zone
 * declared with size 0 only, or already created), SHK_ENOMEM, SHK_ESYS,
 * SHK_EPERM (the shm directory refuses us), SHK_EEXIST, or what an init
 * callback returned. Not thread-safe; call it in the master before forking.
 */
SHK_API int shk_zones_create(shk_zones_t *reg, shk_zones_t *old);

/*
 * Undo a successful shk_zones_create(reg, old), while `old` is still alive:
 * zones adopted from `old` go back to it untouched (generation restored),
 * zones created fresh are unmapped (and unlinked). For a reload that fails
 * after its zones were created. Afterwards reg may be freed or created
 * again. SHK_EINVAL if reg is not created.
 */
SHK_API int shk_zones_undo(shk_zones_t *reg);

/* The zone declared as `name`, or NULL (SHK_ENOENT). */
SHK_API shk_zone_t *shk_zones_find(shk_zones_t *reg, const char *name);

/* The i-th zone in declaration order, NULL past the end. */
SHK_API shk_zone_t *shk_zones_at(shk_zones_t *reg, unsigned i);

/*
 * Register the built-in zone directives (main context) with the config
 * reader; declarations go into `reg`:
 *   shm_zone NAME:SIZE [TAG];        declare a plain zone (tag "shm_zone")
 *   shm_instance NAME;               the instance named zones belong to
 *   shm_mapping anon|named [mode=0NNN];
 *                                    how zones without an explicit kind are
 *                                    mapped (default anon; named mode 0600)
 * The directive table lives in `reg`: keep reg alive while cf is used.
 */
SHK_API int shk_zones_conf(shk_zones_t *reg, shk_conf_t *cf);

/* ---- attaching from an unrelated process ------------------------------ */

/*
 * Map the named zone `name` of `instance` (NULL: "default"), read-only with
 * SHK_ZONE_RDONLY, else read-write, at whatever address the kernel picks.
 * The object must be a regular file owned by this process's effective uid
 * whose owner may read it (and write it, without SHK_ZONE_RDONLY): it is
 * looked at before it is opened and again through its descriptor, opened
 * without following a link and without waiting, so a FIFO or a directory
 * at the name is refused at once. Then every field of the header is
 * checked against the mapping (docs/untrusted.md): magic, layout version,
 * recorded size against the object's, page size, the slab pool's place,
 * creator, kind, the termination of every string, the instance and name,
 * the data root, every root, the lock table's count and each entry's
 * offset and alignment; the slab pool is opened only inside the mapping,
 * and lock 0 must be its lock. Errors:
 *   SHK_ENOENT    no object at the name
 *   SHK_EPERM     /dev/shm/shmkit.x.one is owned by uid 33, not by uid 0
 *                 that runs this: refused (run as the zone's owner); its
 *                 owner may not read it
 *   SHK_ECORRUPT  /dev/shm/shmkit.x.one is a FIFO, not a zone: refused;
 *                 shared memory zone "one": nlocks 4294967295, the lock
 *                 table holds 1 to 32 (every bad field named)
 * Release with shk_zone_detach().
 */
SHK_API shk_zone_t *shk_zone_attach(const char *instance, const char *name, unsigned flags);

/* Unmap an attached zone and release its handle. NULL is fine. Only for
 * handles from shk_zone_attach(); registry zones go with shk_zones_free(). */
SHK_API void shk_zone_detach(shk_zone_t *zone);

/* One named zone found by shk_zones_list(). */
typedef struct shk_zone_name_s {
    char instance[SHK_ZONE_NAME_MAX + 1];
    char zone[SHK_ZONE_NAME_MAX + 1];
} shk_zone_name_t;

/*
 * The named zones that exist now, of `instance` or, with NULL, of every
 * instance, read from the system's POSIX shared-memory directory: *out gets
 * a malloc'd array of *n entries sorted by instance, then zone (strcmp
 * order; NULL when *n is 0); free it with shk_zones_list_free(). The list
 * is made from the objects' names only (nothing but the directory is
 * opened, so nothing planted there can block it): an entry may still fail
 * shk_zone_attach() (not a regular file, another user's, a damaged
 * object, a zone going away), which says why. Objects whose names are not ours are ignored; objects whose
 * names start like ours but do not carry a valid instance and zone name are
 * skipped, each logged at SHK_LOG_DEBUG with the reason. Errors: SHK_EINVAL
 * (NULL out or n, bad instance name), SHK_ERANGE (instance name too long),
 * SHK_ESYS (the directory cannot be read), SHK_ENOMEM; *out is NULL and *n 0
 * on error.
 */
SHK_API int shk_zones_list(const char *instance, shk_zone_name_t **out, unsigned *n);

/* Free a list from shk_zones_list(). NULL is fine. */
SHK_API void shk_zones_list_free(shk_zone_name_t *list);

/* ---- a zone ------------------------------------------------------------ */

SHK_API const char *shk_zone_name(const shk_zone_t *zone);
SHK_API const char *shk_zone_tag(const shk_zone_t *zone);
/* Mapped size in bytes (0 before the zone is created). */
SHK_API size_t shk_zone_size(const shk_zone_t *zone);
/* Start of the mapping in this process (NULL before creation). */
SHK_API void *shk_zone_base(const shk_zone_t *zone);
/* The zone's slab pool (NULL before creation). */
SHK_API shk_slab_t *shk_zone_slab(shk_zone_t *zone);
/* How many times the zone has been initialised: 1 when fresh, +1 on each
 * reload that kept it. */
SHK_API uint64_t shk_zone_generation(const shk_zone_t *zone);
/* Pid of the process that created the zone's memory. */
SHK_API pid_t shk_zone_creator(const shk_zone_t *zone);
/* SHK_ZONE_ANON or SHK_ZONE_NAMED. */
SHK_API unsigned shk_zone_kind(const shk_zone_t *zone);
/* 1 when this handle maps the zone read-only. */
SHK_API int shk_zone_rdonly(const shk_zone_t *zone);

/* The user's root object (a block of the zone's slab), or NULL. The offset
 * is read from the header at each call and checked against the pool this
 * handle validated: the pointer lies inside the slab pool, with at least
 * one byte of it; a caller reading a record there on a zone it did not
 * create checks that the record fits (shk_zone_base + shk_zone_size) and
 * is aligned before it reads it. */
SHK_API void *shk_zone_data(const shk_zone_t *zone);
/* Record the user's root object: NULL or a pointer inside the slab pool
 * (SHK_EINVAL otherwise). Stored as an offset, so every process sees it. */
SHK_API int shk_zone_set_data(shk_zone_t *zone, void *p);

/* Named roots, for library modules that share a zone with its user (the
 * bus keeps "bus"): key at most SHK_ZONE_ROOT_KEY_MAX bytes, p NULL (remove)
 * or inside the slab pool. SHK_ENOMEM when all SHK_ZONE_ROOTS are used.
 * Takes the slab lock. */
SHK_API int shk_zone_root_set(shk_zone_t *zone, const char *key, void *p);
/* The root stored under `key`, or NULL; checked as shk_zone_data's. */
SHK_API void *shk_zone_root(const shk_zone_t *zone, const char *key);

/*
 * Bind `mtx` to the zone's lock called `name` (at most SHK_SHMTX_NAME_MAX
 * bytes), creating it (shared part allocated from the slab, entry added to
 * the lock table) if the zone has none of that name yet. Any process that
 * maps the zone may call it; the same name always yields the same lock.
 * Errors: SHK_EINVAL, SHK_ERANGE, SHK_ENOMEM (slab full or lock table full,
 * SHK_ZONE_MAX_LOCKS), SHK_EPERM on a read-only mapping.
 */
SHK_API int shk_zone_shmtx_create(shk_zone_t *zone, shk_shmtx_t *mtx, const char *name);

/* One entry of the zone's lock table. */
typedef struct shk_zone_lock_s {
    char name[SHK_SHMTX_NAME_MAX + 1];
    shk_shmtx_stats_t stats;
} shk_zone_lock_t;

/* Number of locks in the zone's table (the slab pool's is the first). */
SHK_API unsigned shk_zone_locks(const shk_zone_t *zone);
/* Snapshot of lock i (name and counters); SHK_ENOENT past the end,
 * SHK_ECORRUPT when the entry's offset lies outside the slab pool or its
 * record is not 64-byte aligned (checked at each call: the header may have
 * changed since attach). Works on a read-only mapping. */
SHK_API int shk_zone_lock_info(const shk_zone_t *zone, unsigned i, shk_zone_lock_t *out);

/*
 * For the master, after a worker died: force-unlock every lock in the
 * zone's table that `pid` held, logging each as
 *   shared memory zone "one" was locked by 1234
 * at warning level. If one of them was the slab pool's lock, the pool is
 * then repaired (shk_slab_repair_locked: the dead process may have been in
 * the middle of an operation), checked (shk_slab_check) and the result
 * logged. Then the chunks
 * the process kept in its slab cache (shk_slab_cache) go back to the pool
 * (shk_slab_reap). Returns how many locks were released, or SHK_ECORRUPT if
 * the pool check failed (the locks are released either way, the cache is
 * left alone; shk_last_errmsg() says what broke). The pool's lock is waited
 * for at most SHK_SLAB_REAP_WAIT_MS each time: when a live worker keeps it
 * longer, the check or the cache's return is skipped with a warning, so the
 * master never stalls behind a worker. A process that held no pool lock and
 * had no cache costs no lock at all.
 */
SHK_API int shk_zone_recover(shk_zone_t *zone, pid_t pid);

#ifdef __cplusplus
}
#endif

#endif /* SHK_ZONE_H */
