/*
 * shk_zone_reg.c: the registry of the zones one configuration declares:
 * declaration and its conflict rules (shk_zone_add), per-zone and
 * registry-wide mapping choices, lookup, and shk_zones_create with the
 * reload reuse rule (a zone whose name, size, tag and kind did not change
 * keeps its memory), its rollback on failure and shk_zones_undo.
 */
#include "shk_zone_internal.h"

#include <stdlib.h>
#include <string.h>

/* ---- registry ------------------------------------------------------------ */

shk_zones_t *shk_zones_new(const char *instance)
{
    shk_zones_t *reg;
    if (!instance)
        instance = SHK_ZONE_DEFAULT_INSTANCE;
    if (shk_zone_name_check_str(instance, "instance") != SHK_OK)
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
    if ((rc = shk_zone_name_check_str(instance, "instance")) != SHK_OK)
        return rc;
    strcpy(reg->instance, instance);
    return SHK_OK;
}

/* A mapping kind and file mode as the setters take them; *mode 0 becomes
 * the default 0600. */
static int check_kind_mode(unsigned kind, unsigned *mode)
{
    if (kind != SHK_ZONE_ANON && kind != SHK_ZONE_NAMED)
        return shk_error(SHK_EINVAL, "invalid zone kind %u", kind);
    if (!*mode)
        *mode = 0600;
    if (*mode & ~0777u)
        return shk_error(SHK_EINVAL, "invalid mode %#o", *mode);
    if (!(*mode & 0600u))
        return shk_error(SHK_EINVAL, "mode %#o does not let the owner read and write", *mode);
    return SHK_OK;
}

int shk_zones_set_mapping(shk_zones_t *reg, unsigned kind, unsigned mode)
{
    int rc;
    if (!reg)
        return shk_error(SHK_EINVAL, "NULL registry");
    if ((rc = check_kind_mode(kind, &mode)) != SHK_OK)
        return rc;
    reg->def_kind = kind;
    reg->def_mode = mode;
    return SHK_OK;
}

void shk_zones_free(shk_zones_t *reg)
{
    if (!reg)
        return;
    for (unsigned i = 0; i < reg->n; i++) {
        shk_zone_release(reg->zones[i], reg->creator);
        free(reg->zones[i]);
    }
    free(reg->zones);
    free(reg);
}

shk_zone_t *shk_zone_add(shk_zones_t *reg, const char *name, size_t size, const char *tag)
{
    shk_zone_t *z;
    size_t ps = shk_page_size();

    if (!reg) {
        shk_error(SHK_EINVAL, "NULL registry");
        return NULL;
    }
    if (reg->created) {
        shk_error(SHK_EINVAL, "zone \"%s\" declared after the zones were created",
                  name ? name : "");
        return NULL;
    }
    if (shk_zone_name_check_str(name, "zone") != SHK_OK)
        return NULL;
    if (!tag)
        tag = SHK_ZONE_DEFAULT_TAG;
    if (!*tag) {
        shk_error(SHK_EINVAL, "empty tag for shared memory zone \"%s\"", name);
        return NULL;
    }
    if (strlen(tag) > SHK_ZONE_TAG_MAX) {
        shk_error(SHK_ERANGE, "tag of shared memory zone \"%s\" is longer than %d bytes", name,
                  SHK_ZONE_TAG_MAX);
        return NULL;
    }
    if (!shk_zone_tag_printable(tag)) {
        shk_error(SHK_EINVAL, "tag of shared memory zone \"%s\" holds a control character", name);
        return NULL;
    }
    if (size) {
        if (size > SIZE_MAX - ps) {
            shk_error(SHK_ERANGE, "the size %zu of shared memory zone \"%s\" is too large", size,
                      name);
            return NULL;
        }
        size = SHK_ALIGN_UP(size, ps);
        if (size < shk_zone_min_size()) {
            shk_error(SHK_EINVAL,
                      "shared memory zone \"%s\" is too small: %zu bytes, the minimum is %zu "
                      "(%d pages)",
                      name, size, shk_zone_min_size(), (int)(shk_zone_min_size() / ps));
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
    if ((rc = check_kind_mode(kind, &mode)) != SHK_OK)
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

/* ---- create, reuse, undo ------------------------------------------------------- */

static shk_zone_t *old_zone(shk_zones_t *old, const char *name)
{
    if (old)
        for (unsigned i = 0; i < old->n; i++)
            if (strcmp(old->zones[i]->name, name) == 0)
                return old->zones[i];
    return NULL;
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
            /* relaxed: the master is the generation's only writer, and
             * the workers that will read it are forked after this. */
            SHK_WRITE_ONCE(z->hdr->generation, SHK_READ_ONCE(z->hdr->generation) - 1);
            o->slab = z->slab;
            o->adopted = 0;
            z->slab = NULL;
            z->base = NULL;
            z->hdr = NULL;
            z->from = NULL;
        } else {
            shk_zone_release(z, SHK_PID());
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
            z->slab_off = o->slab_off;
            z->slab_size = o->slab_size;
            z->dev = o->dev;
            z->ino = o->ino;
            z->slab = o->slab;
            z->created_here = o->created_here;
            o->adopted = 1;
            /* the master is the only writer, before it forks the
             * workers that read it (fork orders the two). */
            SHK_ADD_SOLE(z->hdr->generation, 1);
            old_data = shk_zone_data(z);
        } else {
            rc = shk_zone_map_fresh(z, o);
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

fail:
    /* The rollback sets no error: the failure's message stays the last.
     * Old named zones whose name we unlinked to make room cannot get their
     * name back; they stay mapped and usable by the old generation. */
    create_rollback(reg, i);
    return rc;
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

