/*
 * shk_zone.c: zones and their registry: declaration and conflict rules,
 * mapping (anonymous or named POSIX shm), the zone header, the reload reuse
 * rule, attaching from unrelated processes, the lock table and recovery.
 */
#include "shk_zone.h"

#include "shk_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define ZONE_MAGIC 0x454e4f5a4b4d4853ULL /* "SHMKZONE" read as little-endian */
#define ZONE_VERSION 1u
#define DEFAULT_INSTANCE "default"
#define DEFAULT_TAG "shm_zone"
#define SLAB_LOCK_NAME "slab"

/* ---- the header at offset 0 of every zone (shared) ------------------------
 *
 * Written once by the creator before any other process can see the zone,
 * except: generation (bumped by the master on reuse, before it forks the new
 * workers), data_off, roots[] and the lock table (changed under the slab
 * pool's lock, read without it: see the orders below). */

typedef struct zroot_s {
    char key[SHK_ZONE_ROOT_KEY_MAX + 1];
    _Atomic uint64_t off; /* slab offset, 0 when the entry is unused */
} zroot_t;

typedef struct zlock_s {
    char name[SHK_SHMTX_NAME_MAX + 1];
    uint64_t off; /* slab offset of the shk_shmtx_sh_t */
} zlock_t;

typedef struct zone_hdr_s {
    uint64_t magic;
    uint32_t version;
    uint32_t hdr_size; /* sizeof(zone_hdr_t), a layout check */
    uint64_t size;     /* bytes mapped: header page(s) + slab pool */
    uint64_t page_size;
    uint64_t slab_off; /* from the zone's start; page-aligned */
    uint64_t slab_size;
    _Atomic uint64_t generation;
    int32_t creator;
    uint32_t kind;
    char instance[SHK_NAME_MAX + 1];
    char name[SHK_NAME_MAX + 1];
    char tag[SHK_ZONE_TAG_MAX + 1];
    _Atomic uint64_t data_off; /* slab offset of the user's root, 0 if none */
    zroot_t roots[SHK_ZONE_ROOTS];
    _Atomic uint32_t nlocks;
    uint32_t pad;
    zlock_t locks[SHK_ZONE_MAX_LOCKS];
} zone_hdr_t;

/* ---- process-local handles ---------------------------------------------- */

struct shk_zone_s {
    shk_zones_t *reg; /* NULL for an attached zone */
    char name[SHK_NAME_MAX + 1];
    char tag[SHK_ZONE_TAG_MAX + 1];
    size_t size; /* declared, page-rounded; 0 = not yet known */
    unsigned kind, mode;
    int kind_set;
    shk_zone_init_t init;
    void *init_ctx;

    void *base; /* mapping, NULL until created */
    size_t map_size;
    zone_hdr_t *hdr;
    shk_slab_t *slab;
    int rdonly;
    int adopted;      /* a newer registry took this mapping over */
    int created_here; /* this handle created the named object */
    int unlinked;     /* the named object's name is gone already */
    shk_zone_t *from; /* during create: the old zone being reused */
};

struct shk_zones_s {
    char instance[SHK_NAME_MAX + 1];
    shk_zone_t **zones;
    unsigned n, cap;
    int created;
    pid_t creator; /* pid that ran shk_zones_create: only it unlinks */
    unsigned def_kind, def_mode;
    shk_conf_directive_t dirs[4];
};

static size_t page_size(void)
{
    static size_t ps;
    if (!ps)
        ps = (size_t)sysconf(_SC_PAGESIZE);
    return ps;
}

static int valid_name(const char *s, size_t max, const char *what)
{
    size_t n;
    if (!s || !*s)
        return shk_error(SHK_EINVAL, "empty %s name", what);
    n = strlen(s);
    if (n > max)
        return shk_error(SHK_ERANGE, "%s name \"%s\" is longer than %zu bytes", what, s, max);
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-'))
            return shk_error(SHK_EINVAL, "invalid %s name \"%s\" (allowed: A-Z a-z 0-9 _ -)",
                             what, s);
    }
    return SHK_OK;
}

static size_t min_zone_size(void)
{
    size_t ps = page_size();
    size_t min = (size_t)SHK_ZONE_MIN_PAGES * ps;
    size_t need = SHK_ALIGN_UP(sizeof(zone_hdr_t), ps) + shk_slab_min_size();
    need = SHK_ALIGN_UP(need, ps);
    return need > min ? need : min;
}

static int object_path(char *buf, size_t cap, const char *instance, const char *name)
{
    int n = snprintf(buf, cap, "/shmkit.%s.%s", instance, name);
    if (n < 0 || (size_t)n >= cap)
        return shk_error(SHK_ERANGE, "shared memory object name too long");
    return SHK_OK;
}

/* ---- registry ------------------------------------------------------------ */

shk_zones_t *shk_zones_new(const char *instance)
{
    shk_zones_t *reg;
    if (!instance)
        instance = DEFAULT_INSTANCE;
    if (valid_name(instance, SHK_NAME_MAX, "instance") != SHK_OK)
        return NULL;
    reg = calloc(1, sizeof *reg);
    if (!reg) {
        shk_error(SHK_ENOMEM, "out of memory");
        return NULL;
    }
    strcpy(reg->instance, instance);
    reg->def_kind = SHK_ZONE_ANON;
    reg->def_mode = 0600;
    return reg;
}

const char *shk_zones_instance(const shk_zones_t *reg)
{
    return reg ? reg->instance : NULL;
}

int shk_zones_set_instance(shk_zones_t *reg, const char *instance)
{
    int rc;
    if (!reg)
        return shk_error(SHK_EINVAL, "NULL registry");
    if (reg->created)
        return shk_error(SHK_EINVAL, "zones already created");
    if ((rc = valid_name(instance, SHK_NAME_MAX, "instance")) != SHK_OK)
        return rc;
    strcpy(reg->instance, instance);
    return SHK_OK;
}

static int check_mode(unsigned mode)
{
    if (mode & ~0777u)
        return shk_error(SHK_EINVAL, "invalid mode %#o", mode);
    if (!(mode & 0600u))
        return shk_error(SHK_EINVAL, "mode %#o does not let the owner read and write", mode);
    return SHK_OK;
}

int shk_zones_set_mapping(shk_zones_t *reg, unsigned kind, unsigned mode)
{
    int rc;
    if (!reg)
        return shk_error(SHK_EINVAL, "NULL registry");
    if (kind != SHK_ZONE_ANON && kind != SHK_ZONE_NAMED)
        return shk_error(SHK_EINVAL, "invalid zone kind %u", kind);
    if (!mode)
        mode = 0600;
    if ((rc = check_mode(mode)) != SHK_OK)
        return rc;
    reg->def_kind = kind;
    reg->def_mode = mode;
    return SHK_OK;
}

static void zone_unmap(shk_zone_t *z)
{
    if (z->slab) {
        shk_slab_close(z->slab);
        z->slab = NULL;
    }
    if (z->base) {
        munmap(z->base, z->map_size);
        z->base = NULL;
        z->hdr = NULL;
    }
}

/* Forget the zone's mapping: unmap it, and unlink the named object when this
 * process created it and no newer registry uses it. */
static void zone_release(shk_zone_t *z, pid_t creator)
{
    if (z->adopted)
        return;
    if (z->base && z->kind == SHK_ZONE_NAMED && z->created_here && !z->unlinked &&
        creator == SHK_PID() && z->reg) {
        char path[2 * SHK_NAME_MAX + 16];
        if (object_path(path, sizeof path, z->reg->instance, z->name) == SHK_OK)
            shm_unlink(path);
        z->unlinked = 1;
    }
    zone_unmap(z);
}

void shk_zones_free(shk_zones_t *reg)
{
    if (!reg)
        return;
    for (unsigned i = 0; i < reg->n; i++) {
        zone_release(reg->zones[i], reg->creator);
        free(reg->zones[i]);
    }
    free(reg->zones);
    free(reg);
}

shk_zone_t *shk_zone_add(shk_zones_t *reg, const char *name, size_t size, const char *tag)
{
    shk_zone_t *z;
    size_t ps = page_size();

    if (!reg) {
        shk_error(SHK_EINVAL, "NULL registry");
        return NULL;
    }
    if (reg->created) {
        shk_error(SHK_EINVAL, "zone \"%s\" declared after the zones were created",
                  name ? name : "");
        return NULL;
    }
    if (valid_name(name, SHK_NAME_MAX, "zone") != SHK_OK)
        return NULL;
    if (!tag)
        tag = DEFAULT_TAG;
    if (!*tag) {
        shk_error(SHK_EINVAL, "empty tag for shared memory zone \"%s\"", name);
        return NULL;
    }
    if (strlen(tag) > SHK_ZONE_TAG_MAX) {
        shk_error(SHK_ERANGE, "tag of shared memory zone \"%s\" is longer than %d bytes", name,
                  SHK_ZONE_TAG_MAX);
        return NULL;
    }
    if (size) {
        if (size > SIZE_MAX - ps) {
            shk_error(SHK_ERANGE, "the size %zu of shared memory zone \"%s\" is too large", size,
                      name);
            return NULL;
        }
        size = SHK_ALIGN_UP(size, ps);
        if (size < min_zone_size()) {
            shk_error(SHK_EINVAL,
                      "shared memory zone \"%s\" is too small: %zu bytes, the minimum is %zu "
                      "(%d pages)",
                      name, size, min_zone_size(), (int)(min_zone_size() / ps));
            return NULL;
        }
    }

    for (unsigned i = 0; i < reg->n; i++) {
        z = reg->zones[i];
        if (strcmp(z->name, name) != 0)
            continue;
        if (strcmp(z->tag, tag) != 0) {
            shk_error(SHK_EEXIST,
                      "the shared memory zone \"%s\" is already declared for a different use",
                      name);
            return NULL;
        }
        if (size && z->size && size != z->size) {
            shk_error(SHK_EEXIST,
                      "the size %zu of shared memory zone \"%s\" conflicts with already "
                      "declared size %zu",
                      size, name, z->size);
            return NULL;
        }
        if (size)
            z->size = size;
        return z;
    }

    if (reg->n == reg->cap) {
        unsigned cap = reg->cap ? reg->cap * 2 : 8;
        shk_zone_t **nz = realloc(reg->zones, cap * sizeof *nz);
        if (!nz) {
            shk_error(SHK_ENOMEM, "out of memory");
            return NULL;
        }
        reg->zones = nz;
        reg->cap = cap;
    }
    z = calloc(1, sizeof *z);
    if (!z) {
        shk_error(SHK_ENOMEM, "out of memory");
        return NULL;
    }
    z->reg = reg;
    strcpy(z->name, name);
    strcpy(z->tag, tag);
    z->size = size;
    z->kind = SHK_ZONE_ANON;
    z->mode = 0600;
    reg->zones[reg->n++] = z;
    return z;
}

int shk_zone_set_init(shk_zone_t *zone, shk_zone_init_t init, void *ctx)
{
    if (!zone)
        return shk_error(SHK_EINVAL, "NULL zone");
    zone->init = init;
    zone->init_ctx = ctx;
    return SHK_OK;
}

int shk_zone_set_kind(shk_zone_t *zone, unsigned kind, unsigned mode)
{
    int rc;
    if (!zone || !zone->reg)
        return shk_error(SHK_EINVAL, "not a declared zone");
    if (zone->reg->created)
        return shk_error(SHK_EINVAL, "zone \"%s\" is already created", zone->name);
    if (kind != SHK_ZONE_ANON && kind != SHK_ZONE_NAMED)
        return shk_error(SHK_EINVAL, "invalid zone kind %u", kind);
    if (!mode)
        mode = 0600;
    if ((rc = check_mode(mode)) != SHK_OK)
        return rc;
    zone->kind = kind;
    zone->mode = mode;
    zone->kind_set = 1;
    return SHK_OK;
}

shk_zone_t *shk_zones_find(shk_zones_t *reg, const char *name)
{
    if (reg && name)
        for (unsigned i = 0; i < reg->n; i++)
            if (strcmp(reg->zones[i]->name, name) == 0)
                return reg->zones[i];
    shk_error(SHK_ENOENT, "no shared memory zone \"%s\"", name ? name : "(null)");
    return NULL;
}

shk_zone_t *shk_zones_at(shk_zones_t *reg, unsigned i)
{
    return reg && i < reg->n ? reg->zones[i] : NULL;
}

/* ---- mapping --------------------------------------------------------------- */

static shk_zone_t *old_zone(shk_zones_t *old, const char *name)
{
    if (old)
        for (unsigned i = 0; i < old->n; i++)
            if (strcmp(old->zones[i]->name, name) == 0)
                return old->zones[i];
    return NULL;
}

/* Create the named object for z; if a stale one is in the way (its creator is
 * gone, or it belongs to the zone this one replaces), unlink it first. */
static int named_create(shk_zone_t *z, shk_zone_t *replaced, int *fd_out)
{
    char path[2 * SHK_NAME_MAX + 16];
    int rc, fd;

    if ((rc = object_path(path, sizeof path, z->reg->instance, z->name)) != SHK_OK)
        return rc;
    for (int attempt = 0; attempt < 2; attempt++) {
        fd = shm_open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, z->mode);
        if (fd >= 0) {
            /* The umask must not decide the mode the configuration asked for. */
            if (fchmod(fd, z->mode) != 0) {
                rc = shk_error_sys("fchmod");
                close(fd);
                shm_unlink(path);
                return rc;
            }
            *fd_out = fd;
            return SHK_OK;
        }
        if (errno != EEXIST)
            return shk_error(errno == EACCES ? SHK_EPERM : SHK_ESYS,
                             "shm_open(\"%s\") failed: %s", path, strerror(errno));
        if (attempt)
            break;
        if (replaced && replaced->kind == SHK_ZONE_NAMED && replaced->base &&
            !replaced->unlinked) {
            /* The old generation's zone of this name is being replaced: its
             * mappings stay valid, only the name moves to the new object. */
            shm_unlink(path);
            replaced->unlinked = 1;
            continue;
        }
        /* Someone else's object: refuse unless its creator is gone. */
        int ofd = shm_open(path, O_RDONLY | O_CLOEXEC, 0);
        pid_t owner = 0;
        if (ofd >= 0) {
            struct stat st;
            if (fstat(ofd, &st) == 0 && (size_t)st.st_size >= sizeof(zone_hdr_t)) {
                zone_hdr_t *h = mmap(NULL, sizeof *h, PROT_READ, MAP_SHARED, ofd, 0);
                if (h != MAP_FAILED) {
                    if (h->magic == ZONE_MAGIC)
                        owner = h->creator;
                    munmap(h, sizeof *h);
                }
            }
            close(ofd);
        }
        if (owner > 0 && shk_pid_alive(owner))
            return shk_error(SHK_EEXIST,
                             "shared memory zone \"%s\" of instance \"%s\" exists and its "
                             "creator (pid %d) is alive",
                             z->name, z->reg->instance, (int)owner);
        shk_log(SHK_LOG_NOTICE, "removing stale shared memory object \"%s\"%s", path,
                owner > 0 ? " (its creator is gone)" : "");
        shm_unlink(path);
    }
    return shk_error(SHK_EEXIST, "shm_open(\"%s\"): object exists", path);
}

static int zone_map_fresh(shk_zone_t *z, shk_zone_t *replaced)
{
    size_t ps = page_size();
    void *base;
    int fd = -1, rc;
    zone_hdr_t *h;
    size_t hdr_bytes = SHK_ALIGN_UP(sizeof(zone_hdr_t), ps);

    if (z->kind == SHK_ZONE_NAMED) {
        if ((rc = named_create(z, replaced, &fd)) != SHK_OK)
            return rc;
        if (ftruncate(fd, (off_t)z->size) != 0) {
            rc = shk_error_sys("ftruncate");
            goto fail_named;
        }
        base = mmap(NULL, z->size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    } else {
        base = mmap(NULL, z->size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    }
    if (base == MAP_FAILED) {
        rc = shk_error(errno == ENOMEM ? SHK_ENOMEM : SHK_ESYS,
                       "mmap of shared memory zone \"%s\" (%zu bytes) failed: %s", z->name,
                       z->size, strerror(errno));
        goto fail_named;
    }
    if (fd >= 0)
        close(fd);
    z->base = base;
    z->map_size = z->size;
    if (z->kind == SHK_ZONE_NAMED)
        z->created_here = 1;

    rc = shk_slab_init(&z->slab, (char *)base + hdr_bytes, z->size - hdr_bytes, SLAB_LOCK_NAME);
    if (rc != SHK_OK)
        goto fail_mapped;

    h = base;
    h->version = ZONE_VERSION;
    h->hdr_size = sizeof *h;
    h->size = z->size;
    h->page_size = ps;
    h->slab_off = hdr_bytes;
    h->slab_size = z->size - hdr_bytes;
    atomic_store_explicit(&h->generation, 1, memory_order_relaxed);
    h->creator = (int32_t)SHK_PID();
    h->kind = z->kind;
    strcpy(h->instance, z->reg->instance);
    strcpy(h->name, z->name);
    strcpy(h->tag, z->tag);
    strcpy(h->locks[0].name, SLAB_LOCK_NAME);
    h->locks[0].off = (uint64_t)((char *)shk_slab_mutex(z->slab)->sh - (char *)shk_slab_base(z->slab));
    /* No other process can see the zone yet (anonymous: not forked yet;
     * named: attach checks the magic, stored last with release so that an
     * attacher that acquires it sees the whole header). */
    atomic_store_explicit(&h->nlocks, 1, memory_order_relaxed);
    atomic_store_explicit((_Atomic uint64_t *)&h->magic, ZONE_MAGIC, memory_order_release);
    z->hdr = h;
    return SHK_OK;

fail_mapped:
    zone_release(z, SHK_PID());
    return rc;
fail_named:
    if (fd >= 0) {
        char path[2 * SHK_NAME_MAX + 16];
        close(fd);
        if (object_path(path, sizeof path, z->reg->instance, z->name) == SHK_OK)
            shm_unlink(path);
    }
    return rc;
}

/* Undo what shk_zones_create() did to reg's zones [0, upto). */
static void create_rollback(shk_zones_t *reg, unsigned upto)
{
    for (unsigned i = 0; i < upto; i++) {
        shk_zone_t *z = reg->zones[i];
        if (z->from) {
            /* Give the mapping back to the old registry untouched, apart
             * from the generation, which is restored. */
            shk_zone_t *o = z->from;
            atomic_fetch_sub_explicit(&z->hdr->generation, 1, memory_order_relaxed);
            o->slab = z->slab;
            o->adopted = 0;
            z->slab = NULL;
            z->base = NULL;
            z->hdr = NULL;
            z->from = NULL;
        } else {
            zone_release(z, SHK_PID());
            z->created_here = 0;
            z->unlinked = 0;
        }
    }
}

int shk_zones_create(shk_zones_t *reg, shk_zones_t *old)
{
    int rc = SHK_OK;
    unsigned i;

    if (!reg)
        return shk_error(SHK_EINVAL, "NULL registry");
    if (reg->created)
        return shk_error(SHK_EINVAL, "zones already created");
    if (old == reg)
        return shk_error(SHK_EINVAL, "a registry cannot reuse itself");
    for (i = 0; i < reg->n; i++)
        if (!reg->zones[i]->size)
            return shk_error(SHK_EINVAL, "zero size shared memory zone \"%s\"",
                             reg->zones[i]->name);
    if (old && strcmp(old->instance, reg->instance) != 0)
        old = NULL; /* another instance: nothing to share */

    for (i = 0; i < reg->n; i++) {
        shk_zone_t *z = reg->zones[i];
        shk_zone_t *o = old_zone(old, z->name);
        void *old_data = NULL;

        if (!z->kind_set) {
            z->kind = reg->def_kind;
            z->mode = reg->def_mode;
        }
        if (o && o->base && !o->adopted && o->size == z->size && strcmp(o->tag, z->tag) == 0 &&
            o->kind == z->kind) {
            /* Reuse: same memory, one more generation. */
            z->from = o;
            z->base = o->base;
            z->map_size = o->map_size;
            z->hdr = o->hdr;
            z->slab = o->slab;
            z->created_here = o->created_here;
            o->adopted = 1;
            atomic_fetch_add_explicit(&z->hdr->generation, 1, memory_order_relaxed);
            old_data = shk_zone_data(z);
        } else {
            rc = zone_map_fresh(z, o);
            if (rc != SHK_OK) {
                i++;
                goto fail;
            }
        }
        if (z->init) {
            rc = z->init(z, old_data, z->init_ctx);
            if (rc != SHK_OK) {
                if (rc > 0)
                    rc = SHK_EINVAL;
                shk_log(SHK_LOG_ERR, "init of shared memory zone \"%s\" failed: %s", z->name,
                        shk_last_errmsg());
                i++;
                goto fail;
            }
        }
    }
    /* `from` stays set so that shk_zones_undo() can give adopted zones
     * back; an old zone replaced by a fresh one of the same name keeps its
     * memory for the old workers until the old registry is freed. */
    reg->created = 1;
    reg->creator = SHK_PID();
    return SHK_OK;

fail: {
    int saved = rc;
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", shk_last_errmsg());
    create_rollback(reg, i);
    /* Old named zones whose name we unlinked to make room cannot get their
     * name back; they stay mapped and usable by the old generation. */
    return shk_error(saved, "%s", msg);
}
}

int shk_zones_undo(shk_zones_t *reg)
{
    if (!reg || !reg->created)
        return shk_error(SHK_EINVAL, "zones not created");
    if (reg->creator != SHK_PID())
        return shk_error(SHK_EPERM, "only the creating process can undo");
    create_rollback(reg, reg->n);
    reg->created = 0;
    return SHK_OK;
}

/* ---- attach ----------------------------------------------------------------- */

static int hdr_validate(const zone_hdr_t *h, size_t real, const char *name)
{
    size_t ps = page_size();
    uint64_t magic = atomic_load_explicit((_Atomic uint64_t *)&h->magic, memory_order_acquire);

    if (magic != ZONE_MAGIC)
        return shk_error(SHK_ECORRUPT, "shared memory zone \"%s\": bad magic %#llx (not a "
                                       "shmkit zone, or not initialised yet)",
                         name, (unsigned long long)magic);
    if (h->version != ZONE_VERSION)
        return shk_error(SHK_ECORRUPT, "shared memory zone \"%s\": layout version %u, this "
                                       "library reads version %u",
                         name, h->version, ZONE_VERSION);
    if (h->hdr_size != sizeof(zone_hdr_t))
        return shk_error(SHK_ECORRUPT, "shared memory zone \"%s\": header size %u, expected %zu",
                         name, h->hdr_size, sizeof(zone_hdr_t));
    if (h->size != real)
        return shk_error(SHK_ECORRUPT, "shared memory zone \"%s\": recorded size %llu but the "
                                       "object holds %zu bytes",
                         name, (unsigned long long)h->size, real);
    if (h->page_size != ps)
        return shk_error(SHK_ECORRUPT, "shared memory zone \"%s\": page size %llu, this system "
                                       "uses %zu",
                         name, (unsigned long long)h->page_size, ps);
    if (h->slab_off < sizeof(zone_hdr_t) || h->slab_off % ps || h->slab_off > real ||
        h->slab_size != real - h->slab_off)
        return shk_error(SHK_ECORRUPT, "shared memory zone \"%s\": slab pool out of bounds",
                         name);
    if (!memchr(h->name, 0, sizeof h->name) || !memchr(h->tag, 0, sizeof h->tag) ||
        !memchr(h->instance, 0, sizeof h->instance))
        return shk_error(SHK_ECORRUPT, "shared memory zone \"%s\": unterminated name", name);
    if (strcmp(h->name, name) != 0)
        return shk_error(SHK_ECORRUPT, "shared memory object for zone \"%s\" holds zone \"%s\"",
                         name, h->name);
    if (atomic_load_explicit((_Atomic uint32_t *)&h->nlocks, memory_order_acquire) >
        SHK_ZONE_MAX_LOCKS)
        return shk_error(SHK_ECORRUPT, "shared memory zone \"%s\": lock table overflow", name);
    return SHK_OK;
}

shk_zone_t *shk_zone_attach(const char *instance, const char *name, unsigned flags)
{
    char path[2 * SHK_NAME_MAX + 16];
    int rdonly = !!(flags & SHK_ZONE_RDONLY);
    struct stat st;
    shk_zone_t *z = NULL;
    void *base = MAP_FAILED;
    int fd, rc;

    if (flags & ~SHK_ZONE_RDONLY) {
        shk_error(SHK_EINVAL, "invalid attach flags %#x", flags);
        return NULL;
    }
    if (!instance)
        instance = DEFAULT_INSTANCE;
    if (valid_name(instance, SHK_NAME_MAX, "instance") != SHK_OK ||
        valid_name(name, SHK_NAME_MAX, "zone") != SHK_OK)
        return NULL;
    if (object_path(path, sizeof path, instance, name) != SHK_OK)
        return NULL;
    fd = shm_open(path, (rdonly ? O_RDONLY : O_RDWR) | O_CLOEXEC, 0);
    if (fd < 0) {
        shk_error(errno == ENOENT ? SHK_ENOENT : errno == EACCES ? SHK_EPERM : SHK_ESYS,
                  "cannot open shared memory zone \"%s\" of instance \"%s\" (%s): %s", name,
                  instance, path, strerror(errno));
        return NULL;
    }
    if (fstat(fd, &st) != 0) {
        shk_error_sys("fstat");
        close(fd);
        return NULL;
    }
    if ((size_t)st.st_size < sizeof(zone_hdr_t)) {
        shk_error(SHK_ECORRUPT, "shared memory zone \"%s\": object is %lld bytes, too small "
                                "for a zone header",
                  name, (long long)st.st_size);
        close(fd);
        return NULL;
    }
    base = mmap(NULL, (size_t)st.st_size, PROT_READ | (rdonly ? 0 : PROT_WRITE), MAP_SHARED, fd,
                0);
    close(fd);
    if (base == MAP_FAILED) {
        shk_error(SHK_ESYS, "mmap of \"%s\" failed: %s", path, strerror(errno));
        return NULL;
    }
    if (hdr_validate(base, (size_t)st.st_size, name) != SHK_OK)
        goto fail;
    z = calloc(1, sizeof *z);
    if (!z) {
        shk_error(SHK_ENOMEM, "out of memory");
        goto fail;
    }
    z->base = base;
    z->map_size = (size_t)st.st_size;
    z->hdr = base;
    z->size = z->map_size;
    z->kind = SHK_ZONE_NAMED;
    z->rdonly = rdonly;
    strcpy(z->name, z->hdr->name);
    strcpy(z->tag, z->hdr->tag);
    rc = shk_slab_open(&z->slab, (char *)base + z->hdr->slab_off, z->hdr->slab_size,
                       rdonly ? SHK_SLAB_RDONLY : 0);
    if (rc != SHK_OK) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", shk_last_errmsg());
        shk_error(SHK_ECORRUPT, "shared memory zone \"%s\": %s", name, msg);
        goto fail;
    }
    return z;

fail:
    free(z);
    munmap(base, (size_t)st.st_size);
    return NULL;
}

void shk_zone_detach(shk_zone_t *zone)
{
    if (!zone)
        return;
    if (zone->reg) {
        shk_log(SHK_LOG_ERR, "shk_zone_detach: zone \"%s\" belongs to a registry", zone->name);
        return;
    }
    zone_unmap(zone);
    free(zone);
}

/* ---- a zone -------------------------------------------------------------------- */

const char *shk_zone_name(const shk_zone_t *zone) { return zone ? zone->name : NULL; }
const char *shk_zone_tag(const shk_zone_t *zone) { return zone ? zone->tag : NULL; }
size_t shk_zone_size(const shk_zone_t *zone) { return zone && zone->base ? zone->map_size : 0; }
void *shk_zone_base(const shk_zone_t *zone) { return zone ? zone->base : NULL; }
shk_slab_t *shk_zone_slab(shk_zone_t *zone) { return zone ? zone->slab : NULL; }
unsigned shk_zone_kind(const shk_zone_t *zone) { return zone ? zone->kind : 0; }
int shk_zone_rdonly(const shk_zone_t *zone) { return zone ? zone->rdonly : 0; }

uint64_t shk_zone_generation(const shk_zone_t *zone)
{
    /* relaxed: only the master changes it, before it forks the workers
     * that read it (fork orders the two). */
    return zone && zone->hdr
               ? atomic_load_explicit(&zone->hdr->generation, memory_order_relaxed)
               : 0;
}

pid_t shk_zone_creator(const shk_zone_t *zone)
{
    return zone && zone->hdr ? (pid_t)zone->hdr->creator : 0;
}

/* A slab offset -> pointer, refusing offsets outside the pool. */
static void *slab_ptr_checked(const shk_zone_t *zone, uint64_t off, size_t len)
{
    if (!off || off >= zone->hdr->slab_size || len > zone->hdr->slab_size - off)
        return NULL;
    return (char *)zone->base + zone->hdr->slab_off + off;
}

static int slab_off_checked(const shk_zone_t *zone, const void *p, uint64_t *off)
{
    const char *s = (const char *)zone->base + zone->hdr->slab_off;
    if (!p) {
        *off = 0;
        return SHK_OK;
    }
    if ((const char *)p <= s || (const char *)p >= s + zone->hdr->slab_size)
        return shk_error(SHK_EINVAL, "pointer %p is not inside the slab pool of zone \"%s\"", p,
                         zone->name);
    *off = (uint64_t)((const char *)p - s);
    return SHK_OK;
}

void *shk_zone_data(const shk_zone_t *zone)
{
    if (!zone || !zone->hdr)
        return NULL;
    /* acquire: pairs with the release in shk_zone_set_data(), so the data a
     * setter wrote before publishing the root is visible. */
    return slab_ptr_checked(zone,
                            atomic_load_explicit(&zone->hdr->data_off, memory_order_acquire), 1);
}

int shk_zone_set_data(shk_zone_t *zone, void *p)
{
    uint64_t off;
    int rc;
    if (!zone || !zone->hdr)
        return shk_error(SHK_EINVAL, "zone not created");
    if (zone->rdonly)
        return shk_error(SHK_EPERM, "zone \"%s\" is mapped read-only", zone->name);
    if ((rc = slab_off_checked(zone, p, &off)) != SHK_OK)
        return rc;
    atomic_store_explicit(&zone->hdr->data_off, off, memory_order_release);
    return SHK_OK;
}

int shk_zone_root_set(shk_zone_t *zone, const char *key, void *p)
{
    uint64_t off;
    int rc, free_i = -1;
    zone_hdr_t *h;

    if (!zone || !zone->hdr || !key || !*key)
        return shk_error(SHK_EINVAL, "zone not created or empty key");
    if (strlen(key) > SHK_ZONE_ROOT_KEY_MAX)
        return shk_error(SHK_ERANGE, "root key \"%s\" is longer than %d bytes", key,
                         SHK_ZONE_ROOT_KEY_MAX);
    if (zone->rdonly)
        return shk_error(SHK_EPERM, "zone \"%s\" is mapped read-only", zone->name);
    if ((rc = slab_off_checked(zone, p, &off)) != SHK_OK)
        return rc;
    h = zone->hdr;
    rc = shk_slab_lock(zone->slab);
    if (rc != SHK_OK && rc != SHK_EOWNERDEAD)
        return rc;
    rc = SHK_OK;
    for (int i = 0; i < SHK_ZONE_ROOTS; i++) {
        uint64_t cur = atomic_load_explicit(&h->roots[i].off, memory_order_relaxed);
        if (cur && strcmp(h->roots[i].key, key) == 0) {
            /* release: what p points to is written before it is published. */
            atomic_store_explicit(&h->roots[i].off, off, memory_order_release);
            goto out;
        }
        if (!cur && free_i < 0)
            free_i = i;
    }
    if (!off)
        goto out;
    if (free_i < 0) {
        rc = shk_error(SHK_ENOMEM, "zone \"%s\" has no free root entry (%d in use)", zone->name,
                       SHK_ZONE_ROOTS);
        goto out;
    }
    memset(h->roots[free_i].key, 0, sizeof h->roots[free_i].key);
    strcpy(h->roots[free_i].key, key);
    atomic_store_explicit(&h->roots[free_i].off, off, memory_order_release);
out:
    shk_slab_unlock(zone->slab);
    return rc;
}

void *shk_zone_root(const shk_zone_t *zone, const char *key)
{
    if (!zone || !zone->hdr || !key)
        return NULL;
    for (int i = 0; i < SHK_ZONE_ROOTS; i++) {
        /* acquire: pairs with the release in shk_zone_root_set(); roots are
         * meant to be set once while a zone is set up. */
        uint64_t off = atomic_load_explicit(&zone->hdr->roots[i].off, memory_order_acquire);
        if (off && strncmp(zone->hdr->roots[i].key, key, sizeof zone->hdr->roots[i].key) == 0)
            return slab_ptr_checked(zone, off, 1);
    }
    return NULL;
}

/* ---- locks ------------------------------------------------------------------------ */

unsigned shk_zone_locks(const shk_zone_t *zone)
{
    uint32_t n;
    if (!zone || !zone->hdr)
        return 0;
    /* acquire: pairs with the release that appends an entry, so the entry's
     * name and offset are complete. */
    n = atomic_load_explicit(&zone->hdr->nlocks, memory_order_acquire);
    return n > SHK_ZONE_MAX_LOCKS ? SHK_ZONE_MAX_LOCKS : n;
}

static shk_shmtx_sh_t *lock_sh(const shk_zone_t *zone, unsigned i)
{
    uint64_t off = zone->hdr->locks[i].off;
    shk_shmtx_sh_t *sh = slab_ptr_checked(zone, off, sizeof *sh);
    if (sh && ((uintptr_t)sh & 63))
        return NULL;
    return sh;
}

int shk_zone_lock_info(const shk_zone_t *zone, unsigned i, shk_zone_lock_t *out)
{
    shk_shmtx_sh_t *sh;
    if (!zone || !out)
        return shk_error(SHK_EINVAL, "NULL argument");
    if (i >= shk_zone_locks(zone))
        return shk_error(SHK_ENOENT, "zone \"%s\" has no lock %u", zone->name, i);
    sh = lock_sh(zone, i);
    if (!sh)
        return shk_error(SHK_ECORRUPT, "zone \"%s\": lock %u is out of bounds", zone->name, i);
    memset(out, 0, sizeof *out);
    memcpy(out->name, zone->hdr->locks[i].name, sizeof out->name);
    out->name[sizeof out->name - 1] = '\0';
    shk_shmtx_stats(sh, &out->stats);
    return SHK_OK;
}

int shk_zone_shmtx_create(shk_zone_t *zone, shk_shmtx_t *mtx, const char *name)
{
    zone_hdr_t *h;
    unsigned n;
    int rc;
    char *blk;
    shk_shmtx_sh_t *sh;

    if (!zone || !zone->hdr || !mtx || !name || !*name)
        return shk_error(SHK_EINVAL, "shk_zone_shmtx_create: bad argument");
    if (strlen(name) > SHK_SHMTX_NAME_MAX)
        return shk_error(SHK_ERANGE, "lock name \"%s\" is longer than %d bytes", name,
                         SHK_SHMTX_NAME_MAX);
    h = zone->hdr;
    n = shk_zone_locks(zone);
    for (unsigned i = 0; i < n; i++)
        if (strcmp(h->locks[i].name, name) == 0) {
            if (!(sh = lock_sh(zone, i)))
                return shk_error(SHK_ECORRUPT, "zone \"%s\": lock \"%s\" is out of bounds",
                                 zone->name, name);
            return shk_shmtx_create(mtx, sh, name);
        }
    if (zone->rdonly)
        return shk_error(SHK_EPERM, "zone \"%s\" is mapped read-only", zone->name);

    rc = shk_slab_lock(zone->slab);
    if (rc != SHK_OK && rc != SHK_EOWNERDEAD)
        return rc;
    /* Again under the lock: another process may have added it meanwhile. */
    n = atomic_load_explicit(&h->nlocks, memory_order_relaxed);
    for (unsigned i = 0; i < n; i++)
        if (strcmp(h->locks[i].name, name) == 0) {
            sh = lock_sh(zone, i);
            shk_slab_unlock(zone->slab);
            if (!sh)
                return shk_error(SHK_ECORRUPT, "zone \"%s\": lock \"%s\" is out of bounds",
                                 zone->name, name);
            return shk_shmtx_create(mtx, sh, name);
        }
    if (n >= SHK_ZONE_MAX_LOCKS) {
        shk_slab_unlock(zone->slab);
        return shk_error(SHK_ENOMEM, "zone \"%s\": lock table full (%d locks)", zone->name,
                         SHK_ZONE_MAX_LOCKS);
    }
    /* The slab guarantees 16-byte alignment; a lock wants its own cache line. */
    blk = shk_slab_calloc_locked(zone->slab, sizeof(shk_shmtx_sh_t) + 64);
    if (!blk) {
        shk_slab_unlock(zone->slab);
        return shk_error(SHK_ENOMEM, "zone \"%s\": no memory for lock \"%s\"", zone->name, name);
    }
    sh = (shk_shmtx_sh_t *)SHK_ALIGN_UP((uintptr_t)blk, (uintptr_t)64);
    memset(h->locks[n].name, 0, sizeof h->locks[n].name);
    strcpy(h->locks[n].name, name);
    h->locks[n].off = (uint64_t)((char *)sh - ((char *)zone->base + h->slab_off));
    /* release: the entry is complete before readers (who acquire nlocks)
     * can see it. */
    atomic_store_explicit(&h->nlocks, n + 1, memory_order_release);
    shk_slab_unlock(zone->slab);
    return shk_shmtx_create(mtx, sh, name);
}

int shk_zone_recover(shk_zone_t *zone, pid_t pid)
{
    unsigned n;
    int released = 0, slab_taken = 0;

    if (!zone || !zone->hdr || pid <= 0)
        return shk_error(SHK_EINVAL, "shk_zone_recover: bad argument");
    if (zone->rdonly)
        return shk_error(SHK_EPERM, "zone \"%s\" is mapped read-only", zone->name);
    n = shk_zone_locks(zone);
    for (unsigned i = 0; i < n; i++) {
        shk_shmtx_t m;
        shk_shmtx_sh_t *sh = lock_sh(zone, i);
        if (!sh || shk_shmtx_create(&m, sh, zone->hdr->locks[i].name) != SHK_OK)
            continue;
        if (shk_shmtx_force_unlock(&m, pid)) {
            shk_log(SHK_LOG_WARN, "shared memory zone \"%s\" was locked by %d", zone->name,
                    (int)pid);
            released++;
            if (i == 0)
                slab_taken = 1;
        }
        shk_shmtx_destroy(&m);
    }
    if (slab_taken) {
        /* The wait for the pool's lock is bounded (a worker waiting on it
         * took it as soon as it was released): the master must not stall
         * behind a live worker that keeps it. */
        shk_shmtx_t *m = shk_slab_mutex(zone->slab);
        int rc = shk_shmtx_timedlock(m, SHK_SLAB_REAP_WAIT_MS);
        if (rc == SHK_ETIMEDOUT) {
            shk_log(SHK_LOG_WARN, "shared memory zone \"%s\": slab check after recovery "
                                  "skipped: the lock is held by %d",
                    zone->name, (int)shk_shmtx_owner(m));
            return released;
        }
        if (rc != SHK_OK && rc != SHK_EOWNERDEAD)
            return rc;
        rc = shk_slab_check_locked(zone->slab);
        shk_slab_unlock(zone->slab);
        if (rc != SHK_OK) {
            char msg[1024];
            snprintf(msg, sizeof msg, "%s", shk_last_errmsg());
            shk_log(SHK_LOG_ERR, "shared memory zone \"%s\": slab check after recovery failed: %s",
                    zone->name, msg);
            return shk_error(SHK_ECORRUPT, "shared memory zone \"%s\": %s", zone->name, msg);
        }
        shk_log(SHK_LOG_NOTICE, "shared memory zone \"%s\": slab check after recovery passed",
                zone->name);
    }
    /* The dead process's slab cache (if it had one) goes back to the pool;
     * on a pool that is sound (checked above when the lock was taken over).
     * A lock kept busy by a live worker leaves it for later (logged). */
    int back = shk_slab_reap(zone->slab, pid);
    if (back > 0)
        shk_log(SHK_LOG_NOTICE, "shared memory zone \"%s\": %d free chunks cached by %d went "
                                "back to the pool",
                zone->name, back, (int)pid);
    else if (back == SHK_ETIMEDOUT)
        shk_log(SHK_LOG_WARN, "shared memory zone \"%s\": %s", zone->name, shk_last_errmsg());
    return released;
}

/* ---- configuration -------------------------------------------------------------- */

static int conf_shm_zone(shk_conf_t *cf, int argc, char **argv, void *data)
{
    shk_zones_t *reg = data;
    const char *arg = argv[1];
    const char *colon = strrchr(arg, ':');
    char name[SHK_NAME_MAX + 1];
    size_t size, nlen;
    int rc;

    if (!colon || colon == arg)
        return shk_conf_error(cf, "invalid zone \"%s\", expected name:size", arg);
    nlen = (size_t)(colon - arg);
    if (nlen > SHK_NAME_MAX)
        return shk_conf_error(cf, "zone name \"%.*s\" is longer than %d bytes", (int)nlen, arg,
                              SHK_NAME_MAX);
    memcpy(name, arg, nlen);
    name[nlen] = '\0';
    rc = shk_parse_size(colon + 1, &size);
    if (rc != SHK_OK || size == 0)
        return shk_conf_error(cf, "invalid zone size \"%s\"", colon + 1);
    if (!shk_zone_add(reg, name, size, argc > 2 ? argv[2] : NULL)) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", shk_last_errmsg());
        return shk_conf_error(cf, "%s", msg);
    }
    return SHK_OK;
}

static int conf_shm_instance(shk_conf_t *cf, int argc, char **argv, void *data)
{
    (void)argc;
    if (shk_zones_set_instance(data, argv[1]) != SHK_OK) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", shk_last_errmsg());
        return shk_conf_error(cf, "%s", msg);
    }
    return SHK_OK;
}

static int conf_shm_mapping(shk_conf_t *cf, int argc, char **argv, void *data)
{
    unsigned kind, mode = 0600;
    if (strcmp(argv[1], "anon") == 0)
        kind = SHK_ZONE_ANON;
    else if (strcmp(argv[1], "named") == 0)
        kind = SHK_ZONE_NAMED;
    else
        return shk_conf_error(cf, "invalid value \"%s\" in \"%s\" directive, it must be \"anon\" "
                                  "or \"named\"",
                              argv[1], argv[0]);
    if (argc > 2) {
        const char *key, *val;
        size_t klen;
        char *end;
        unsigned long m;
        if (shk_parse_kv(argv[2], &key, &klen, &val) != SHK_OK || klen != 4 ||
            strncmp(key, "mode", 4) != 0)
            return shk_conf_error(cf, "invalid parameter \"%s\"", argv[2]);
        errno = 0;
        m = strtoul(val, &end, 8);
        if (!*val || *end || errno || m > 0777 || !(m & 0600))
            return shk_conf_error(cf, "invalid mode \"%s\" (octal, owner must read and write)",
                                  val);
        mode = (unsigned)m;
    }
    if (shk_zones_set_mapping(data, kind, mode) != SHK_OK) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", shk_last_errmsg());
        return shk_conf_error(cf, "%s", msg);
    }
    return SHK_OK;
}

int shk_zones_conf(shk_zones_t *reg, shk_conf_t *cf)
{
    if (!reg || !cf)
        return shk_error(SHK_EINVAL, "NULL argument");
    reg->dirs[0] = (shk_conf_directive_t){"shm_zone", SHK_CONF_MAIN,
                                          SHK_CONF_TAKE1 | SHK_CONF_TAKE2, conf_shm_zone, 0, reg};
    reg->dirs[1] = (shk_conf_directive_t){"shm_instance", SHK_CONF_MAIN, SHK_CONF_TAKE1,
                                          conf_shm_instance, 0, reg};
    reg->dirs[2] = (shk_conf_directive_t){"shm_mapping", SHK_CONF_MAIN,
                                          SHK_CONF_TAKE1 | SHK_CONF_TAKE2, conf_shm_mapping, 0,
                                          reg};
    memset(&reg->dirs[3], 0, sizeof reg->dirs[3]);
    return shk_conf_add(cf, reg->dirs);
}
