/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * shk_zone_map.c: a zone's memory: anonymous and POSIX shared-memory
 * mappings, the named objects (their naming scheme "/shmkit.<instance>.
 * <zone>", how one is made and put in place, what may be found at a zone's
 * name and what is done with it, listing them with shk_zones_list), and
 * attaching to a named zone from an unrelated process. Nothing outside this
 * file builds or parses an object's name.
 *
 * Another local user can plant anything at a name in the shm directory, so
 * no name is trusted (docs/untrusted.md): a name is first looked at without
 * being opened or followed (lstat); only a regular file owned by this
 * effective uid is ever opened, with O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC,
 * and checked again through its descriptor. A new zone is made complete in
 * an unnamed file (O_TMPFILE) and only then linked at its name, so a name
 * never shows a zone half made; an object in the way is removed only when
 * it is provably a stale zone of ours, under an exclusive flock so two
 * servers never both remove and replace it.
 */
#include "shk_zone_internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

/* An object's name is "/" SHK_ZONE_OBJ_PREFIX "<instance>.<zone>"; in the
 * shm directory the file has the name without the slash. */
#define SHK_ZONE_OBJ_PREFIX "shmkit."

/* How often creation retries when the name changes under it (another server
 * of the instance starting at the same moment, a planted object going). */
#define ZONE_LINK_TRIES 4

/* The flags of every open of a named object: never follow a link, never
 * wait (a FIFO), never leak into an exec'd program. */
#define ZONE_OPEN_FLAGS (O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)

/* The file behind the object: SHK_ZONE_SHM_DIR "/shmkit.<instance>.<zone>",
 * the path every message names (it is what an admin removes). */
static int object_file(char *buf, size_t cap, const char *instance, const char *name)
{
    int n = snprintf(buf, cap, SHK_ZONE_SHM_DIR "/" SHK_ZONE_OBJ_PREFIX "%s.%s", instance, name);
    if (n < 0 || (size_t)n >= cap)
        return shk_error(SHK_ERANGE, "shared memory object name too long");
    return SHK_OK;
}

static const char *file_type(mode_t m)
{
    switch (m & S_IFMT) {
    case S_IFREG: return "regular file";
    case S_IFIFO: return "FIFO";
    case S_IFDIR: return "directory";
    case S_IFLNK: return "symbolic link";
    case S_IFSOCK: return "socket";
    case S_IFCHR: return "character device";
    case S_IFBLK: return "block device";
    default: return "special file";
    }
}

static int same_file(const struct stat *a, const struct stat *b)
{
    return a->st_dev == b->st_dev && a->st_ino == b->st_ino;
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
        struct stat st;
        /* The names were checked when declared: the path fits (no error).
         * Only our own file is unlinked: if the name was removed and taken
         * by someone else meanwhile, theirs stays. */
        if (object_file(path, sizeof path, z->reg->instance, z->name) == SHK_OK &&
            lstat(path, &st) == 0) {
            if (S_ISREG(st.st_mode) && st.st_dev == z->dev && st.st_ino == z->ino)
                unlink(path);
            else
                shk_log(SHK_LOG_NOTICE, "%s is no longer the object of shared memory zone "
                                        "\"%s\": left alone",
                        path, z->name);
        }
        z->unlinked = 1;
    }
    zone_unmap(z);
}

/* ---- what is at a zone's name ---------------------------------------------------- */

/* The name is taken by something we will not remove: SHK_EEXIST with what
 * it is and what the admin can do. */
#define NAME_REFUSED(...) shk_error(SHK_EEXIST, __VA_ARGS__)

/* Does the live process pid map the file (dev, ino)? Its /proc/PID/maps
 * is read (a line per mapping: range, mode, offset, major:minor, inode,
 * path); 1 when a line names that device and inode, 0 when none does, -1
 * when it cannot tell (the file cannot be opened or read: another user's
 * process, no /proc). A pid that maps nothing of ours while its number is
 * in a zone's header is another process that got the dead creator's pid. */
static int pid_maps_file(pid_t pid, dev_t dev, ino_t ino)
{
    char path[64], *line = NULL;
    size_t cap = 0;
    int found = 0;
    snprintf(path, sizeof path, "/proc/%d/maps", (int)pid);
    FILE *f = fopen(path, "re");
    if (!f)
        return -1;
    while (!found && getline(&line, &cap, f) > 0) {
        unsigned long long lo, hi, off, inode;
        unsigned maj, mnr;
        char mode[8];
        if (sscanf(line, "%llx-%llx %7s %llx %x:%x %llu", &lo, &hi, mode, &off, &maj, &mnr,
                   &inode) == 7 &&
            inode == (unsigned long long)ino && maj == major(dev) && mnr == minor(dev))
            found = 1;
    }
    int bad = ferror(f);
    free(line);
    fclose(f);
    return found ? 1 : bad ? -1 : 0;
}

/*
 * The name `path` of zone z is taken (a link failed with EEXIST). Decide
 * what is there, without blocking and without following a link:
 *   - the old generation's object of this zone (`replaced`, the same file):
 *     its name moves to the new object (its mappings stay valid);
 *   - not a regular file, or not ours: refused;
 *   - ours, but no zone header of this layout naming this instance and zone
 *     (too short, another magic, another zone's header): nothing can be
 *     using it as this zone (a zone is linked at its name only complete):
 *     removed;
 *   - ours, a zone header of another layout version: another shmkit may be
 *     using it: refused;
 *   - ours, this zone's header: refused while its creator is alive
 *     (shk_pid_alive) and maps it (or its maps cannot be read), removed as
 *     stale otherwise: a live pid that does not map the object is not its
 *     creator but a later process that was given the same number.
 * Removal happens under an exclusive flock on the object, which every
 * process that removes one takes first, so that of two servers starting
 * at once only one removes the stale object (the other then finds the
 * winner's live zone). Returns SHK_OK when the name may be free now (link
 * again), or the refusal.
 */
static int name_clear(const shk_zone_t *z, shk_zone_t *replaced, const char *path)
{
    struct stat ls, st;
    shk_zone_hdr_t h;
    const char *why = NULL;
    char whybuf[160];
    int fd, rc = SHK_OK;
    ssize_t got;

    if (lstat(path, &ls) != 0)
        return errno == ENOENT ? SHK_OK : shk_error_sys("lstat");
    if (replaced && replaced->kind == SHK_ZONE_NAMED && replaced->base && !replaced->unlinked &&
        S_ISREG(ls.st_mode) && ls.st_dev == replaced->dev && ls.st_ino == replaced->ino) {
        /* The old generation's zone of this name is being replaced: its
         * mappings stay valid, only the name moves to the new object. */
        if (unlink(path) != 0 && errno != ENOENT)
            return shk_error_sys("unlink");
        replaced->unlinked = 1;
        return SHK_OK;
    }
    if (!S_ISREG(ls.st_mode))
        return NAME_REFUSED("%s is a %s, not a zone: refused; remove it to let shared memory "
                            "zone \"%s\" be created",
                            path, file_type(ls.st_mode), z->name);
    if (ls.st_uid != geteuid())
        return NAME_REFUSED("%s is owned by uid %u, not by uid %u that runs this: refused; "
                            "remove it to let shared memory zone \"%s\" be created",
                            path, (unsigned)ls.st_uid, (unsigned)geteuid(), z->name);

    fd = open(path, O_RDONLY | ZONE_OPEN_FLAGS);
    if (fd < 0) {
        if (errno == ENOENT || errno == ELOOP)
            return SHK_OK; /* changed since the lstat: look again */
        return NAME_REFUSED("%s cannot be read (%s): refused; remove it to let shared memory "
                            "zone \"%s\" be created",
                            path, strerror(errno), z->name);
    }
    if (fstat(fd, &st) != 0) {
        rc = shk_error_sys("fstat");
        goto out;
    }
    if (!same_file(&st, &ls) || !S_ISREG(st.st_mode) || st.st_uid != geteuid())
        goto out; /* changed since the lstat: look again */
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        rc = errno == EWOULDBLOCK
                 ? NAME_REFUSED("%s is being examined by another process (a server of instance "
                                "\"%s\" starting at the same time?): refused",
                                path, z->reg->instance)
                 : shk_error_sys("flock");
        goto out;
    }
    /* Who held the lock before us may have removed it already. */
    if (fstat(fd, &st) != 0 || st.st_nlink == 0)
        goto out;

    memset(&h, 0, sizeof h);
    got = pread(fd, &h, sizeof h, 0);
    if (got < 0) {
        rc = shk_error_sys("pread");
        goto out;
    }
    /* A plain copy: the object is not mapped, the header is checked field
     * by field here. */
    if ((size_t)got < sizeof h) {
        why = "it is too small for a zone header";
    } else if (SHK_READ_ONCE(h.magic) != SHK_ZONE_MAGIC) {
        why = "it holds no zone header";
    } else if (h.version != SHK_ZONE_VERSION || h.hdr_size != sizeof h) {
        rc = NAME_REFUSED("%s holds a zone of layout version %u (this library reads %u): "
                          "refused; remove it once no server of that version uses it",
                          path, h.version, SHK_ZONE_VERSION);
        goto out;
    } else if (!memchr(h.instance, 0, sizeof h.instance) || !memchr(h.name, 0, sizeof h.name) ||
               strcmp(h.instance, z->reg->instance) != 0 || strcmp(h.name, z->name) != 0) {
        snprintf(whybuf, sizeof whybuf, "its header names zone \"%.*s\" of instance \"%.*s\"",
                 (int)strnlen(h.name, sizeof h.name), h.name,
                 (int)strnlen(h.instance, sizeof h.instance), h.instance);
        why = whybuf;
    } else if (shk_pid_alive((pid_t)h.creator) &&
               pid_maps_file((pid_t)h.creator, st.st_dev, st.st_ino) != 0) {
        rc = NAME_REFUSED("shared memory zone \"%s\" of instance \"%s\" exists and its creator "
                          "(pid %d) is alive: refused; if pid %d is no server of this instance, "
                          "remove %s",
                          z->name, z->reg->instance, (int)h.creator, (int)h.creator, path);
        goto out;
    } else if (shk_pid_alive((pid_t)h.creator)) {
        snprintf(whybuf, sizeof whybuf,
                 "pid %d, its creator's number, belongs to a process that does not map it",
                 (int)h.creator);
        why = whybuf;
    } else {
        why = "its creator is gone";
    }
    shk_log(SHK_LOG_NOTICE, "removing stale shared memory object \"%s\" (%s)", path, why);
    if (unlink(path) != 0 && errno != ENOENT)
        rc = shk_error_sys("unlink");
out:
    close(fd); /* and with it the flock */
    return rc;
}

/* Put the complete zone behind fd at its name: link it there (which fails
 * if the name is taken), clearing the name by name_clear's rules. */
static int named_link(shk_zone_t *z, shk_zone_t *replaced, int fd, const char *path)
{
    char proc[64];
    snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
    for (int attempt = 0; attempt < ZONE_LINK_TRIES; attempt++) {
        int r = linkat(AT_FDCWD, proc, AT_FDCWD, path, AT_SYMLINK_FOLLOW);
        if (r != 0 && errno == ENOENT) /* no /proc: the descriptor itself */
            r = linkat(fd, "", AT_FDCWD, path, AT_EMPTY_PATH);
        if (r == 0)
            return SHK_OK;
        if (errno != EEXIST)
            return shk_error(errno == EACCES || errno == EPERM ? SHK_EPERM : SHK_ESYS,
                             "cannot link shared memory zone \"%s\" at %s: %s", z->name, path,
                             strerror(errno));
        int rc = name_clear(z, replaced, path);
        if (rc != SHK_OK)
            return rc;
    }
    return NAME_REFUSED("%s: the name keeps being taken while shared memory zone \"%s\" is "
                        "created: refused",
                        path, z->name);
}

/* An unnamed file in the shm directory for zone z, with exactly the mode
 * the configuration asked for (the umask must not decide it). */
static int named_tmpfile(const shk_zone_t *z, int *fd_out)
{
    struct stat st;
    int fd = open(SHK_ZONE_SHM_DIR, O_TMPFILE | O_RDWR | O_CLOEXEC, (mode_t)z->mode);
    int rc;

    if (fd < 0)
        return shk_error(errno == EACCES ? SHK_EPERM : SHK_ESYS,
                         "cannot make the object of shared memory zone \"%s\" in %s: %s",
                         z->name, SHK_ZONE_SHM_DIR, strerror(errno));
    if (fchmod(fd, (mode_t)z->mode) != 0) {
        rc = shk_error_sys("fchmod");
        goto fail;
    }
    if (fstat(fd, &st) != 0) {
        rc = shk_error_sys("fstat");
        goto fail;
    }
    if (!S_ISREG(st.st_mode) || st.st_uid != geteuid() || (st.st_mode & 07777) != z->mode) {
        rc = shk_error(SHK_ESYS, "the object of shared memory zone \"%s\" came out a %s of uid "
                                 "%u, mode 0%o (wanted a regular file of uid %u, mode 0%o)",
                       z->name, file_type(st.st_mode), (unsigned)st.st_uid,
                       (unsigned)(st.st_mode & 07777), (unsigned)geteuid(), z->mode);
        goto fail;
    }
    *fd_out = fd;
    return SHK_OK;
fail:
    close(fd);
    return rc;
}

int shk_zone_map_fresh(shk_zone_t *z, shk_zone_t *replaced)
{
    size_t hdr_bytes = shk_zone_hdr_bytes();
    char path[SHK_ZONE_PATH_MAX];
    struct stat st;
    void *base;
    int fd = -1, rc;

    if (z->kind == SHK_ZONE_NAMED) {
        if ((rc = object_file(path, sizeof path, z->reg->instance, z->name)) != SHK_OK ||
            (rc = named_tmpfile(z, &fd)) != SHK_OK)
            return rc;
        if (ftruncate(fd, (off_t)z->size) != 0) {
            rc = shk_error_sys("ftruncate");
            close(fd);
            return rc;
        }
        base = mmap(NULL, z->size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    } else {
        base = mmap(NULL, z->size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    }
    if (base == MAP_FAILED) {
        rc = shk_error(errno == ENOMEM ? SHK_ENOMEM : SHK_ESYS,
                       "mmap of shared memory zone \"%s\" (%zu bytes) failed: %s", z->name,
                       z->size, strerror(errno));
        if (fd >= 0)
            close(fd);
        return rc;
    }
    z->base = base;
    z->map_size = z->size;

    rc = shk_slab_init(&z->slab, (char *)base + hdr_bytes, z->size - hdr_bytes,
                       SHK_ZONE_SLAB_LOCK);
    if (rc != SHK_OK)
        goto fail;
    shk_zone_hdr_init(z);
    if (fd >= 0) {
        /* Complete (magic published): only now does it get its name. */
        if ((rc = named_link(z, replaced, fd, path)) != SHK_OK)
            goto fail;
        if (fstat(fd, &st) != 0) {
            rc = shk_error_sys("fstat");
            goto fail;
        }
        z->dev = st.st_dev;
        z->ino = st.st_ino;
        z->created_here = 1;
        close(fd);
    }
    return SHK_OK;

fail:
    /* Not linked (or linked and then fstat failed, which cannot happen on
     * a descriptor we hold): the unnamed file goes with its last user. */
    if (fd >= 0)
        close(fd);
    zone_unmap(z);
    return rc;
}

/* ---- attach ----------------------------------------------------------------- */

/* What attach accepts at a name, checked on lstat's answer (before anything
 * is opened) and again on the descriptor's: a regular file owned by this
 * effective uid whose owner may read it (and write it, for read-write).
 * Group and other bits are the creator's choice and not judged here. */
static int attach_check(const char *path, const struct stat *st, int rdonly)
{
    mode_t need = rdonly ? S_IRUSR : S_IRUSR | S_IWUSR;
    if (!S_ISREG(st->st_mode))
        return shk_error(SHK_ECORRUPT, "%s is a %s, not a zone: refused", path,
                         file_type(st->st_mode));
    if (st->st_uid != geteuid())
        return shk_error(SHK_EPERM, "%s is owned by uid %u, not by uid %u that runs this: "
                                    "refused",
                         path, (unsigned)st->st_uid, (unsigned)geteuid());
    if ((st->st_mode & need) != need)
        return shk_error(SHK_EPERM, "%s has mode 0%03o, its owner may not %s it: refused", path,
                         (unsigned)(st->st_mode & 07777), rdonly ? "read" : "read and write");
    return SHK_OK;
}

/* Open the object at path for attach; *st is the descriptor's fstat. */
static int attach_open(const char *path, const char *instance, const char *name, int rdonly,
                       struct stat *st, int *fd_out)
{
    struct stat ls;
    int fd, rc;

    if (lstat(path, &ls) != 0)
        return shk_error(errno == ENOENT ? SHK_ENOENT : errno == EACCES ? SHK_EPERM : SHK_ESYS,
                         "cannot open shared memory zone \"%s\" of instance \"%s\" (%s): %s",
                         name, instance, path, strerror(errno));
    if ((rc = attach_check(path, &ls, rdonly)) != SHK_OK)
        return rc;
    fd = open(path, (rdonly ? O_RDONLY : O_RDWR) | ZONE_OPEN_FLAGS);
    if (fd < 0) {
        if (errno == ELOOP)
            return shk_error(SHK_ECORRUPT, "%s is a symbolic link, not a zone: refused", path);
        return shk_error(errno == ENOENT ? SHK_ENOENT
                         : errno == EACCES || errno == EPERM ? SHK_EPERM
                                                             : SHK_ESYS,
                         "cannot open shared memory zone \"%s\" of instance \"%s\" (%s): %s",
                         name, instance, path, strerror(errno));
    }
    if (fstat(fd, st) != 0) {
        rc = shk_error_sys("fstat");
        close(fd);
        return rc;
    }
    /* The descriptor's answer is the one that counts (the name may have
     * changed since the lstat). */
    if ((rc = attach_check(path, st, rdonly)) != SHK_OK) {
        close(fd);
        return rc;
    }
    *fd_out = fd;
    return SHK_OK;
}

shk_zone_t *shk_zone_attach(const char *instance, const char *name, unsigned flags)
{
    char path[SHK_ZONE_PATH_MAX];
    int rdonly = !!(flags & SHK_ZONE_RDONLY);
    struct stat st;
    shk_zone_t *z = NULL;
    void *base;
    size_t size;
    int fd = -1;

    if (flags & ~SHK_ZONE_RDONLY) {
        shk_error(SHK_EINVAL, "invalid attach flags %#x", flags);
        return NULL;
    }
    if (!instance)
        instance = SHK_ZONE_DEFAULT_INSTANCE;
    if (shk_zone_name_check_str(instance, "instance") != SHK_OK ||
        shk_zone_name_check_str(name, "zone") != SHK_OK)
        return NULL;
    if (object_file(path, sizeof path, instance, name) != SHK_OK)
        return NULL;
    if (attach_open(path, instance, name, rdonly, &st, &fd) != SHK_OK)
        return NULL;
    if (st.st_size < (off_t)sizeof(shk_zone_hdr_t)) {
        shk_error(SHK_ECORRUPT, "shared memory zone \"%s\": object is %lld bytes, too small "
                                "for a zone header",
                  name, (long long)st.st_size);
        close(fd);
        return NULL;
    }
    size = (size_t)st.st_size;
    base = mmap(NULL, size, PROT_READ | (rdonly ? 0 : PROT_WRITE), MAP_SHARED, fd, 0);
    close(fd);
    if (base == MAP_FAILED) {
        shk_error(SHK_ESYS, "mmap of %s failed: %s", path, strerror(errno));
        return NULL;
    }
    z = calloc(1, sizeof *z);
    if (!z) {
        shk_error(SHK_ENOMEM, "out of memory");
        munmap(base, size);
        return NULL;
    }
    z->base = base;
    z->map_size = size;
    z->hdr = base;
    z->size = size;
    z->kind = SHK_ZONE_NAMED;
    z->rdonly = rdonly;
    z->dev = st.st_dev;
    z->ino = st.st_ino;
    if (shk_zone_hdr_check(base, size, instance, name, z) != SHK_OK)
        goto fail;
    /* The pool's bounds are the checked ones: inside the mapping. */
    if (shk_slab_open(&z->slab, (char *)base + z->slab_off, (size_t)z->slab_size,
                      rdonly ? SHK_SLAB_RDONLY : 0) != SHK_OK) {
        shk_error(SHK_ECORRUPT, "shared memory zone \"%s\": %s", name, shk_last_errmsg());
        goto fail;
    }
    if (shk_zone_hdr_check_slab_lock(z) != SHK_OK)
        goto fail;
    return z;

fail:
    zone_unmap(z);
    free(z);
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
