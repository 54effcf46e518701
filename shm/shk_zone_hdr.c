/*
 * shk_zone_hdr.c: what a zone's header holds and how it changes: the layout
 * written when a zone is created, the accessors, the user's data root and
 * the named roots, the lock table (shk_zone_shmtx_create, shk_zone_locks,
 * shk_zone_lock_info) and the master's recovery after a dead worker
 * (shk_zone_recover). The layout itself is in shk_zone_internal.h.
 */
#include "shk_zone_internal.h"

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
    /* No other process can see the zone yet (anonymous: not forked yet;
     * named: an attacher checks the magic first), so relaxed stores do. */
    SHK_WRITE_ONCE(h->generation, 1);
    h->creator = (int32_t)SHK_PID();
    h->kind = z->kind;
    strcpy(h->instance, z->reg->instance);
    strcpy(h->name, z->name);
    strcpy(h->tag, z->tag);
    strcpy(h->locks[0].name, SHK_ZONE_SLAB_LOCK);
    h->locks[0].off =
        (uint64_t)((char *)shk_slab_mutex(z->slab)->sh - (char *)shk_slab_base(z->slab));
    SHK_WRITE_ONCE(h->nlocks, 1);
    /* release: an attacher that acquires the magic sees the whole header. */
    SHK_STORE_RELEASE(h->magic, SHK_ZONE_MAGIC);
    z->hdr = h;
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
        if (strcmp(h->locks[i].name, name) == 0) {
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

