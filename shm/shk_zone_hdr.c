/*
 * shk_zone_hdr.c: what a zone's header holds and how it changes: the layout
 * written when a zone is created, the checks of a header someone else wrote
 * (attach: every field against the mapping, docs/untrusted.md), the
 * accessors, the user's data root and the named roots, the lock table
 * (shk_zone_shmtx_create, shk_zone_locks, shk_zone_lock_info) and the
 * master's recovery after a dead worker (shk_zone_recover). The layout
 * itself is in shk_zone_internal.h. Every offset read from a header is
 * checked, at each use, against the pool's place kept in the handle.
 */
#include "shk_zone_internal.h"

#include <stddef.h>
#include <stdio.h>
#include <string.h>

/* ---- layout ------------------------------------------------------------------- */

size_t shk_zone_hdr_bytes(void)
{
    return SHK_ALIGN_UP(sizeof(shk_zone_hdr_t), shk_page_size());
}

size_t shk_zone_min_size(void)
{
    size_t ps = shk_page_size();
    size_t min = (size_t)SHK_ZONE_MIN_PAGES * ps;
    size_t need = SHK_ALIGN_UP(shk_zone_hdr_bytes() + shk_slab_min_size(), ps);
    return need > min ? need : min;
}

void shk_zone_hdr_init(shk_zone_t *z)
{
    shk_zone_hdr_t *h = z->base;
    size_t hdr_bytes = shk_zone_hdr_bytes();

    h->version = SHK_ZONE_VERSION;
    h->hdr_size = sizeof *h;
    h->size = z->size;
    h->page_size = shk_page_size();
    h->slab_off = hdr_bytes;
    h->slab_size = z->size - hdr_bytes;
    z->slab_off = h->slab_off;
    z->slab_size = h->slab_size;
    /* No other process can see the zone yet (anonymous: not forked yet;
     * named: an attacher checks the magic first), so relaxed stores do. */
    SHK_WRITE_ONCE(h->generation, 1);
    h->creator = (int32_t)SHK_PID();
    h->kind = z->kind;
    strcpy(h->instance, z->reg->instance);
    strcpy(h->name, z->name);
    strcpy(h->tag, z->tag);
    strcpy(h->locks[0].name, SHK_ZONE_SLAB_LOCK);
    SHK_WRITE_ONCE(h->locks[0].off, (uint64_t)((char *)shk_slab_mutex(z->slab)->sh -
                                               (char *)shk_slab_base(z->slab)));
    SHK_WRITE_ONCE(h->nlocks, 1);
    /* release: an attacher that acquires the magic sees the whole header. */
    SHK_STORE_RELEASE(h->magic, SHK_ZONE_MAGIC);
    z->hdr = h;
}

/* ---- checking a header someone else wrote --------------------------------------- */

/* SHK_ECORRUPT with "shared memory zone "<zone>": " before the format (the
 * first argument after it is the zone's name). */
#define HDR_BAD(...) shk_error(SHK_ECORRUPT, "shared memory zone \"%s\": " __VA_ARGS__)

/* A NUL-terminated string field of `cap` bytes at s, 1 byte at least. */
static int hdr_str_check(const char *zname, const char *field, const char *s, size_t cap,
                         int may_be_empty)
{
    if (!memchr(s, 0, cap))
        return HDR_BAD("%s is not NUL-terminated", zname, field);
    if (!may_be_empty && !*s)
        return HDR_BAD("%s is empty", zname, field);
    return SHK_OK;
}

/* A slab offset read from the header: 0 when allowed (`may_be_0`), else
 * [off, off + len) inside the pool. */
static int hdr_off_check(const char *zname, const char *field, uint64_t off, uint64_t len,
                         uint64_t slab_size, int may_be_0)
{
    if (!off && may_be_0)
        return SHK_OK;
    if (off && shk_span_ok(off, len, slab_size))
        return SHK_OK;
    if (len == 1 || !shk_span_ok(off, 1, slab_size))
        return HDR_BAD("%s %llu lies outside the slab pool (%llu bytes)", zname, field,
                       (unsigned long long)off, (unsigned long long)slab_size);
    return HDR_BAD("%s %llu: a %llu-byte record there would end outside the slab pool (%llu "
                   "bytes)",
                   zname, field, (unsigned long long)off, (unsigned long long)len,
                   (unsigned long long)slab_size);
}

int shk_zone_hdr_check(const shk_zone_hdr_t *h, size_t real, const char *instance,
                       const char *name, shk_zone_t *z)
{
    size_t ps = shk_page_size(), hdr_bytes = shk_zone_hdr_bytes();
    shk_zone_hdr_t c; /* the fixed fields, read once */
    char field[32];
    int rc;

    /* acquire: pairs with the creator's release of the magic, so every
     * field it wrote before is visible to the copy below. */
    uint64_t magic = SHK_LOAD_ACQUIRE(h->magic);
    memcpy(&c, h, offsetof(shk_zone_hdr_t, data_off));
    rc = shk_layout_check("shared memory zone", name, magic, SHK_ZONE_MAGIC, c.version,
                          SHK_ZONE_VERSION, c.hdr_size, sizeof(shk_zone_hdr_t));
    if (rc != SHK_OK)
        return rc;
    if (c.size != real)
        return shk_error(SHK_ECORRUPT, "shared memory zone \"%s\": recorded size %llu but the "
                                       "object holds %zu bytes",
                         name, (unsigned long long)c.size, real);
    if (real % ps || real < shk_zone_min_size())
        return HDR_BAD("size %zu is not a whole number of pages of at least %zu bytes", name,
                       real, shk_zone_min_size());
    if (c.page_size != ps)
        return HDR_BAD("page_size %llu, this system uses %zu", name,
                       (unsigned long long)c.page_size, ps);
    if (c.slab_off != hdr_bytes)
        return HDR_BAD("slab_off %llu, the pool starts after the header at %zu", name,
                       (unsigned long long)c.slab_off, hdr_bytes);
    if (c.slab_size != real - hdr_bytes)
        return HDR_BAD("slab_size %llu, the pool fills the %zu bytes after the header",
                       name, (unsigned long long)c.slab_size, real - hdr_bytes);
    /* relaxed: a value we check; only the master changes it (reload). */
    if (SHK_READ_ONCE(c.generation) == 0)
        return HDR_BAD("generation 0 (a zone starts at 1)", name);
    if (c.creator <= 0)
        return HDR_BAD("creator %d is no pid", name, (int)c.creator);
    if (c.kind != SHK_ZONE_NAMED)
        return HDR_BAD("kind %u, a named object holds a named zone (%u)", name, c.kind,
                       SHK_ZONE_NAMED);
    if ((rc = hdr_str_check(name, "instance", c.instance, sizeof c.instance, 0)) != SHK_OK ||
        (rc = hdr_str_check(name, "name", c.name, sizeof c.name, 0)) != SHK_OK ||
        (rc = hdr_str_check(name, "tag", c.tag, sizeof c.tag, 0)) != SHK_OK)
        return rc;
    if (strcmp(c.name, name) != 0)
        return shk_error(SHK_ECORRUPT, "shared memory object for zone \"%s\" holds zone \"%s\"",
                         name, c.name);
    if (strcmp(c.instance, instance) != 0)
        return HDR_BAD("instance \"%s\", the object belongs to instance \"%s\"", name,
                       c.instance, instance);
    if (!shk_zone_tag_printable(c.tag))
        return HDR_BAD("tag holds a control character", name);

    /* The growing parts, each loaded as its readers always load it. */
    uint64_t slab = c.slab_size;
    /* acquire: as shk_zone_data. */
    if ((rc = hdr_off_check(name, "data_off", SHK_LOAD_ACQUIRE(h->data_off), 1, slab, 1)) !=
        SHK_OK)
        return rc;
    for (int i = 0; i < SHK_ZONE_ROOTS; i++) {
        /* acquire: as shk_zone_root; the key was written before. */
        uint64_t off = SHK_LOAD_ACQUIRE(h->roots[i].off);
        char key[sizeof h->roots[i].key];
        if (!off)
            continue;
        memcpy(key, h->roots[i].key, sizeof key);
        snprintf(field, sizeof field, "roots[%d].key", i);
        if ((rc = hdr_str_check(name, field, key, sizeof key, 0)) != SHK_OK)
            return rc;
        snprintf(field, sizeof field, "roots[%d].off", i);
        if ((rc = hdr_off_check(name, field, off, 1, slab, 0)) != SHK_OK)
            return rc;
    }
    /* acquire: as shk_zone_locks; entries below n are complete. */
    uint32_t n = SHK_LOAD_ACQUIRE(h->nlocks);
    if (n < 1 || n > SHK_ZONE_MAX_LOCKS)
        return HDR_BAD("nlocks %u, the lock table holds 1 to %d", name, n,
                       SHK_ZONE_MAX_LOCKS);
    for (uint32_t i = 0; i < n; i++) {
        char lname[sizeof h->locks[i].name];
        /* relaxed: published by the acquire of nlocks above. */
        uint64_t off = SHK_READ_ONCE(h->locks[i].off);
        memcpy(lname, h->locks[i].name, sizeof lname);
        snprintf(field, sizeof field, "locks[%u].name", i);
        if ((rc = hdr_str_check(name, field, lname, sizeof lname, 0)) != SHK_OK)
            return rc;
        snprintf(field, sizeof field, "locks[%u].off", i);
        if ((rc = hdr_off_check(name, field, off, sizeof(shk_shmtx_sh_t), slab, 0)) != SHK_OK)
            return rc;
        /* the pool starts on a page, so this is the record's alignment */
        if (off % 64)
            return HDR_BAD("%s %llu is not 64-byte aligned", name, field,
                           (unsigned long long)off);
    }
    strcpy(z->name, c.name);
    strcpy(z->tag, c.tag);
    z->slab_off = c.slab_off;
    z->slab_size = c.slab_size;
    return SHK_OK;
}

int shk_zone_hdr_check_slab_lock(const shk_zone_t *z)
{
    const shk_zone_hdr_t *h = z->hdr;
    uint64_t want = (uint64_t)((char *)shk_slab_mutex(z->slab)->sh - (char *)shk_slab_base(z->slab));
    /* relaxed: entry 0 is written once, before the magic's release. */
    if (SHK_READ_ONCE(h->locks[0].off) != want ||
        strncmp(h->locks[0].name, SHK_ZONE_SLAB_LOCK, sizeof h->locks[0].name) != 0)
        return HDR_BAD("locks[0] is not the slab pool's lock (\"%s\" at %llu)", z->name,
                       SHK_ZONE_SLAB_LOCK, (unsigned long long)want);
    return SHK_OK;
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
    return zone && zone->hdr ? SHK_READ_ONCE(zone->hdr->generation) : 0;
}

pid_t shk_zone_creator(const shk_zone_t *zone)
{
    return zone && zone->hdr ? (pid_t)zone->hdr->creator : 0;
}

/* A slab offset read from the header -> pointer, refusing offsets whose
 * [off, off + len) is not inside the pool (the handle's bounds, never the
 * header's: another process may change the header at any time). */
static void *slab_ptr_checked(const shk_zone_t *zone, uint64_t off, size_t len)
{
    if (!off || !shk_span_ok(off, len, zone->slab_size))
        return NULL;
    return (char *)zone->base + zone->slab_off + off;
}

static int slab_off_checked(const shk_zone_t *zone, const void *p, uint64_t *off)
{
    const char *s = (const char *)zone->base + zone->slab_off;
    if (!p) {
        *off = 0;
        return SHK_OK;
    }
    if ((const char *)p <= s || (const char *)p >= s + zone->slab_size)
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
    return slab_ptr_checked(zone, SHK_LOAD_ACQUIRE(zone->hdr->data_off), 1);
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
    /* release: what p points to is written before it is published. */
    SHK_STORE_RELEASE(zone->hdr->data_off, off);
    return SHK_OK;
}

int shk_zone_root_set(shk_zone_t *zone, const char *key, void *p)
{
    uint64_t off;
    int rc, free_i = -1;
    shk_zone_hdr_t *h;

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
    if (!shk_shmtx_held(rc))
        return rc;
    rc = SHK_OK;
    for (int i = 0; i < SHK_ZONE_ROOTS; i++) {
        /* relaxed: the entries change only under the lock we hold. */
        uint64_t cur = SHK_READ_ONCE(h->roots[i].off);
        if (cur && strcmp(h->roots[i].key, key) == 0) {
            /* release: what p points to is written before it is published. */
            SHK_STORE_RELEASE(h->roots[i].off, off);
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
    /* release: the key (and what p points to) before the offset. */
    SHK_STORE_RELEASE(h->roots[free_i].off, off);
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
        uint64_t off = SHK_LOAD_ACQUIRE(zone->hdr->roots[i].off);
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
    n = SHK_LOAD_ACQUIRE(zone->hdr->nlocks);
    return n > SHK_ZONE_MAX_LOCKS ? SHK_ZONE_MAX_LOCKS : n;
}

/* Lock i's shared part, or NULL when its offset is out of the pool or the
 * record misaligned. i < SHK_ZONE_MAX_LOCKS (callers clamp). */
static shk_shmtx_sh_t *lock_sh(const shk_zone_t *zone, unsigned i)
{
    /* relaxed: read once and checked; the entry was published by the
     * caller's acquire of nlocks. */
    uint64_t off = SHK_READ_ONCE(zone->hdr->locks[i].off);
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
    shk_zone_hdr_t *h;
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
        if (strncmp(h->locks[i].name, name, sizeof h->locks[i].name) == 0) {
            if (!(sh = lock_sh(zone, i)))
                return shk_error(SHK_ECORRUPT, "zone \"%s\": lock \"%s\" is out of bounds",
                                 zone->name, name);
            return shk_shmtx_create(mtx, sh, name);
        }
    if (zone->rdonly)
        return shk_error(SHK_EPERM, "zone \"%s\" is mapped read-only", zone->name);

    rc = shk_slab_lock(zone->slab);
    if (!shk_shmtx_held(rc))
        return rc;
    /* Again under the lock: another process may have added it meanwhile.
     * relaxed: nlocks changes only under the lock we hold. */
    n = SHK_READ_ONCE(h->nlocks);
    if (n > SHK_ZONE_MAX_LOCKS)
        n = SHK_ZONE_MAX_LOCKS;
    for (unsigned i = 0; i < n; i++)
        if (strncmp(h->locks[i].name, name, sizeof h->locks[i].name) == 0) {
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
    SHK_WRITE_ONCE(h->locks[n].off, (uint64_t)((char *)sh - ((char *)zone->base + zone->slab_off)));
    /* release: the entry is complete before readers (who acquire nlocks)
     * can see it. */
    SHK_STORE_RELEASE(h->nlocks, n + 1);
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
        char lname[sizeof zone->hdr->locks[i].name];
        memcpy(lname, zone->hdr->locks[i].name, sizeof lname);
        lname[sizeof lname - 1] = '\0';
        if (!sh || shk_shmtx_create(&m, sh, lname) != SHK_OK)
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
        if (!shk_shmtx_held(rc))
            return rc;
        rc = shk_slab_check_locked(zone->slab);
        shk_slab_unlock(zone->slab);
        if (rc != SHK_OK) {
            shk_log(SHK_LOG_ERR, "shared memory zone \"%s\": slab check after recovery failed: %s",
                    zone->name, shk_last_errmsg());
            return shk_error(SHK_ECORRUPT, "shared memory zone \"%s\": %s", zone->name,
                             shk_last_errmsg());
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

