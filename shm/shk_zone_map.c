/*
 * shk_zone_map.c: a zone's memory: anonymous and POSIX shared-memory
 * mappings, the named objects (their naming scheme "/shmkit.<instance>.
 * <zone>", creation with O_EXCL and the stale-object rule, listing them with
 * shk_zones_list), and attaching to a named zone from an unrelated process,
 * which validates the header before it reads anything else. Nothing outside
 * this file builds or parses an object's name.
 */
#include "shk_zone_internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* An object's name is "/" SHK_ZONE_OBJ_PREFIX "<instance>.<zone>"; in the
 * shm directory the file has the name without the slash. */
#define SHK_ZONE_OBJ_PREFIX "shmkit."

static int object_path(char *buf, size_t cap, const char *instance, const char *name)
{
    int n = snprintf(buf, cap, "/" SHK_ZONE_OBJ_PREFIX "%s.%s", instance, name);
    if (n < 0 || (size_t)n >= cap)
        return shk_error(SHK_ERANGE, "shared memory object name too long");
    return SHK_OK;
}

/* ---- mapping ---------------------------------------------------------------- */

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

void shk_zone_release(shk_zone_t *z, pid_t creator)
{
    if (z->adopted)
        return;
    if (z->base && z->kind == SHK_ZONE_NAMED && z->created_here && !z->unlinked &&
        creator == SHK_PID() && z->reg) {
        char path[SHK_ZONE_PATH_MAX];
        /* The names were checked when declared: the path fits (no error). */
        if (object_path(path, sizeof path, z->reg->instance, z->name) == SHK_OK)
            shm_unlink(path);
        z->unlinked = 1;
    }
    zone_unmap(z);
}

/* The creator recorded in someone else's object at `path`, 0 when it holds
 * no zone header. */
static pid_t object_creator(const char *path)
{
    int fd = shm_open(path, O_RDONLY | O_CLOEXEC, 0);
    pid_t owner = 0;
    struct stat st;

    if (fd < 0)
        return 0;
    if (fstat(fd, &st) == 0 && (size_t)st.st_size >= sizeof(shk_zone_hdr_t)) {
        shk_zone_hdr_t *h = mmap(NULL, sizeof *h, PROT_READ, MAP_SHARED, fd, 0);
        if (h != MAP_FAILED) {
            /* acquire: pairs with the creator's release of the magic. */
            if (SHK_LOAD_ACQUIRE(h->magic) == SHK_ZONE_MAGIC)
                owner = h->creator;
            munmap(h, sizeof *h);
        }
    }
    close(fd);
    return owner;
}

/* Create the named object for z; if a stale one is in the way (its creator is
 * gone, or it belongs to the zone this one replaces), unlink it first. */
static int named_create(shk_zone_t *z, shk_zone_t *replaced, int *fd_out)
{
    char path[SHK_ZONE_PATH_MAX];
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
        pid_t owner = object_creator(path);
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

int shk_zone_map_fresh(shk_zone_t *z, shk_zone_t *replaced)
{
    size_t hdr_bytes = shk_zone_hdr_bytes();
    void *base;
    int fd = -1, rc;

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

    rc = shk_slab_init(&z->slab, (char *)base + hdr_bytes, z->size - hdr_bytes,
                       SHK_ZONE_SLAB_LOCK);
    if (rc != SHK_OK) {
        shk_zone_release(z, SHK_PID());
        return rc;
    }
    shk_zone_hdr_init(z);
    return SHK_OK;

fail_named:
    if (fd >= 0) {
        char path[SHK_ZONE_PATH_MAX];
        close(fd);
        if (object_path(path, sizeof path, z->reg->instance, z->name) == SHK_OK)
            shm_unlink(path);
    }
    return rc;
}

/* ---- attach ----------------------------------------------------------------- */

/* Everything attach trusts, checked before anything else is read: the
 * magic (acquire, pairing with the creator's release), version and header
 * size through shk_layout_check, then the size against the object's. */
static int hdr_validate(const shk_zone_hdr_t *h, size_t real, const char *name)
{
    size_t ps = shk_page_size();
    int rc = shk_layout_check("shared memory zone", name, SHK_LOAD_ACQUIRE(h->magic),
                              SHK_ZONE_MAGIC, h->version, SHK_ZONE_VERSION, h->hdr_size,
                              sizeof(shk_zone_hdr_t));
    if (rc != SHK_OK)
        return rc;
    if (h->size != real)
        return shk_error(SHK_ECORRUPT, "shared memory zone \"%s\": recorded size %llu but the "
                                       "object holds %zu bytes",
                         name, (unsigned long long)h->size, real);
    if (h->page_size != ps)
        return shk_error(SHK_ECORRUPT, "shared memory zone \"%s\": page size %llu, this system "
                                       "uses %zu",
                         name, (unsigned long long)h->page_size, ps);
    if (h->slab_off < sizeof(shk_zone_hdr_t) || h->slab_off % ps || h->slab_off > real ||
        h->slab_size != real - h->slab_off)
        return shk_error(SHK_ECORRUPT, "shared memory zone \"%s\": slab pool out of bounds",
                         name);
    if (!memchr(h->name, 0, sizeof h->name) || !memchr(h->tag, 0, sizeof h->tag) ||
        !memchr(h->instance, 0, sizeof h->instance))
        return shk_error(SHK_ECORRUPT, "shared memory zone \"%s\": unterminated name", name);
    if (strcmp(h->name, name) != 0)
        return shk_error(SHK_ECORRUPT, "shared memory object for zone \"%s\" holds zone \"%s\"",
                         name, h->name);
    /* acquire: as every reader of the lock table (shk_zone_locks). */
    if (SHK_LOAD_ACQUIRE(h->nlocks) > SHK_ZONE_MAX_LOCKS)
        return shk_error(SHK_ECORRUPT, "shared memory zone \"%s\": lock table overflow", name);
    return SHK_OK;
}

shk_zone_t *shk_zone_attach(const char *instance, const char *name, unsigned flags)
{
    char path[SHK_ZONE_PATH_MAX];
    int rdonly = !!(flags & SHK_ZONE_RDONLY);
    struct stat st;
    shk_zone_t *z = NULL;
    void *base = MAP_FAILED;
    int fd;

    if (flags & ~SHK_ZONE_RDONLY) {
        shk_error(SHK_EINVAL, "invalid attach flags %#x", flags);
        return NULL;
    }
    if (!instance)
        instance = SHK_ZONE_DEFAULT_INSTANCE;
    if (shk_zone_name_check_str(instance, "instance") != SHK_OK ||
        shk_zone_name_check_str(name, "zone") != SHK_OK)
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
    if ((size_t)st.st_size < sizeof(shk_zone_hdr_t)) {
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
    if (shk_slab_open(&z->slab, (char *)base + z->hdr->slab_off, z->hdr->slab_size,
                      rdonly ? SHK_SLAB_RDONLY : 0) != SHK_OK) {
        shk_error(SHK_ECORRUPT, "shared memory zone \"%s\": %s", name, shk_last_errmsg());
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

/* ---- listing ------------------------------------------------------------------ */

static int name_cmp(const void *a, const void *b)
{
    const shk_zone_name_t *x = a, *y = b;
    int c = strcmp(x->instance, y->instance);
    return c ? c : strcmp(x->zone, y->zone);
}

/* Read one directory entry: 1 and *out filled when it names a zone (of
 * `instance`, when given), 0 when it does not. An entry that starts like
 * ours but does not name a zone is logged at debug level with the reason. */
static int entry_name(const char *ent, const char *instance, shk_zone_name_t *out)
{
    size_t pl = sizeof SHK_ZONE_OBJ_PREFIX - 1;
    const char *inst, *dot;
    size_t il;

    if (strncmp(ent, SHK_ZONE_OBJ_PREFIX, pl) != 0)
        return 0; /* not ours at all */
    inst = ent + pl;
    dot = strchr(inst, '.');
    il = dot ? (size_t)(dot - inst) : strlen(inst);
    if (instance && (il != strlen(instance) || memcmp(inst, instance, il) != 0))
        return 0; /* another instance's (or nobody's) */
    if (!dot) {
        shk_logf(SHK_LOG_DEBUG, "shared memory object \"%s\" skipped: no zone name after the "
                                "instance",
                 ent);
        return 0;
    }
    if (shk_zone_name_check(inst, il, "instance") != SHK_OK ||
        shk_zone_name_check_str(dot + 1, "zone") != SHK_OK) {
        shk_logf(SHK_LOG_DEBUG, "shared memory object \"%s\" skipped: %s", ent,
                 shk_last_errmsg());
        return 0;
    }
    memcpy(out->instance, inst, il);
    out->instance[il] = '\0';
    strcpy(out->zone, dot + 1);
    return 1;
}

int shk_zones_list(const char *instance, shk_zone_name_t **out, unsigned *n)
{
    shk_zone_name_t *list = NULL, ent;
    unsigned cnt = 0, cap = 0;
    struct dirent *e;
    DIR *d;
    int rc;

    if (!out || !n)
        return shk_error(SHK_EINVAL, "NULL argument");
    *out = NULL;
    *n = 0;
    if (instance && (rc = shk_zone_name_check_str(instance, "instance")) != SHK_OK)
        return rc;
    d = opendir(SHK_ZONE_SHM_DIR);
    if (!d)
        return shk_error(SHK_ESYS, "cannot read %s: %s", SHK_ZONE_SHM_DIR, strerror(errno));
    for (;;) {
        errno = 0;
        if (!(e = readdir(d))) {
            if (errno) {
                rc = shk_error(SHK_ESYS, "cannot read %s: %s", SHK_ZONE_SHM_DIR,
                               strerror(errno));
                goto fail;
            }
            break;
        }
        if (!entry_name(e->d_name, instance, &ent))
            continue;
        if (cnt == cap) {
            unsigned ncap = cap ? cap * 2 : 16;
            shk_zone_name_t *nl = ncap > cap ? realloc(list, ncap * sizeof *nl) : NULL;
            if (!nl) {
                rc = shk_error(SHK_ENOMEM, "out of memory listing %s", SHK_ZONE_SHM_DIR);
                goto fail;
            }
            list = nl;
            cap = ncap;
        }
        list[cnt++] = ent;
    }
    closedir(d);
    if (cnt)
        qsort(list, cnt, sizeof *list, name_cmp);
    *out = list;
    *n = cnt;
    return SHK_OK;

fail:
    closedir(d);
    free(list);
    return rc;
}

void shk_zones_list_free(shk_zone_name_t *list)
{
    free(list);
}
