/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * test_shm.c: zones: declaration conflicts, creation and the header, the
 * reload reuse rule (every branch), rollback of a failed create, named zones
 * (mode, stale objects, attach from an exec'd process, damaged objects,
 * listing them among objects that are not zones), the lock table and
 * recovery after a dead worker, the zone grammar (shk_zone_parse at its
 * limits; test_demo checks the demo's limit_req_zone gives the same
 * messages), the shm_zone directive, and `shmkit stat` / `shmkit zones` /
 * `shmkit check` on live zones. Hostile objects at a zone's name and
 * damaged headers are test_hostile.c's.
 */
#include "shk_conf.h"
#include "shk_zone.h"
#include "util_json.h"
#include "util_test.h"
#include "util_run.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>

#define MB (1024 * 1024)

static char instance[64];
static char logbuf[8192];

static void setup(void)
{
    snprintf(instance, sizeof instance, "t%ld", (long)getpid());
    tu_log_capture(logbuf, sizeof logbuf);
}

static void teardown(void)
{
    /* A failed test must not leave named objects behind for the next:
     * ours are shmkit.<instance>.* and shmkit.<instance>-*.* (a second
     * instance), plus the listing test's notshmkit.<instance>.*. */
    char cmd[128];
    size_t n;
    shk_log_set(NULL, NULL, SHK_LOG_ERR);
    n = (size_t)snprintf(cmd, sizeof cmd, "/dev/shm/shmkit.%s", instance);
    DIR *d = opendir("/dev/shm");
    for (struct dirent *e; d && (e = readdir(d));) {
        char path[300], alien[128];
        snprintf(path, sizeof path, "/dev/shm/%s", e->d_name);
        snprintf(alien, sizeof alien, "notshmkit.%s.", instance);
        if ((strncmp(path, cmd, n) == 0 && (path[n] == '.' || path[n] == '-')) ||
            strncmp(e->d_name, alien, strlen(alien)) == 0)
            unlink(path);
    }
    if (d)
        closedir(d);
}

/* Whether address p is mapped in this process (from /proc/self/maps, which
 * unlike probing with a system call is quiet under valgrind). */
static int mapped(const void *p)
{
    FILE *f = fopen("/proc/self/maps", "r");
    char line[512];
    int found = 0;
    ck_assert_ptr_nonnull(f);
    while (!found && fgets(line, sizeof line, f)) {
        unsigned long lo, hi;
        if (sscanf(line, "%lx-%lx", &lo, &hi) == 2 && (uintptr_t)p >= lo && (uintptr_t)p < hi)
            found = 1;
    }
    fclose(f);
    return found;
}

static int object_exists(const char *inst, const char *zone)
{
    char path[256];
    struct stat st;
    snprintf(path, sizeof path, "/dev/shm/shmkit.%s.%s", inst, zone);
    return stat(path, &st) == 0;
}


/* ---- declarations --------------------------------------------------------- */

START_TEST(add_conflict_rules)
{
    shk_zones_t *reg = shk_zones_new(NULL);
    ck_assert_ptr_nonnull(reg);
    shk_zone_t *a = shk_zone_add(reg, "one", 1 * MB, "limit_req");
    ck_assert_ptr_nonnull(a);

    /* same name and tag: the same declaration */
    ck_assert_ptr_eq(shk_zone_add(reg, "one", 1 * MB, "limit_req"), a);
    ck_assert_ptr_eq(shk_zone_add(reg, "one", 0, "limit_req"), a);

    /* another tag */
    ck_assert_ptr_null(shk_zone_add(reg, "one", 1 * MB, "cache"));
    ck_assert_int_eq(shk_last_error(), SHK_EEXIST);
    ck_assert_str_eq(shk_last_errmsg(),
                     "the shared memory zone \"one\" is already declared for a different use");

    /* another size */
    ck_assert_ptr_null(shk_zone_add(reg, "one", 2 * MB, "limit_req"));
    ck_assert_int_eq(shk_last_error(), SHK_EEXIST);
    ck_assert_str_eq(shk_last_errmsg(), "the size 2097152 of shared memory zone \"one\" "
                                        "conflicts with already declared size 1048576");

    /* a reference first, the size later */
    shk_zone_t *b = shk_zone_add(reg, "two", 0, "limit_req");
    ck_assert_ptr_nonnull(b);
    ck_assert_ptr_eq(shk_zone_add(reg, "two", 1 * MB, "limit_req"), b);

    /* a reference that never gets a size */
    ck_assert_ptr_nonnull(shk_zone_add(reg, "three", 0, "x"));
    ck_assert_int_eq(shk_zones_create(reg, NULL), SHK_EINVAL);
    ck_assert_str_eq(shk_last_errmsg(), "zero size shared memory zone \"three\"");
    shk_zones_free(reg);
}
END_TEST

START_TEST(add_rejects_bad_input)
{
    long ps = sysconf(_SC_PAGESIZE);
    char longname[SHK_ZONE_NAME_MAX + 2];
    char longtag[SHK_ZONE_TAG_MAX + 2];
    shk_zones_t *reg = shk_zones_new("ok_inst-1");
    ck_assert_ptr_nonnull(reg);

    ck_assert_ptr_null(shk_zone_add(reg, "small", (size_t)(SHK_ZONE_MIN_PAGES - 1) * (size_t)ps, NULL));
    ck_assert_int_eq(shk_last_error(), SHK_EINVAL);
    ck_assert_msg(strstr(shk_last_errmsg(), "\"small\" is too small"), "%s", shk_last_errmsg());
    ck_assert_ptr_nonnull(shk_zone_add(reg, "min", (size_t)SHK_ZONE_MIN_PAGES * (size_t)ps, NULL));

    ck_assert_ptr_null(shk_zone_add(reg, "", MB, NULL));
    ck_assert_int_eq(shk_last_error(), SHK_EINVAL);
    ck_assert_ptr_null(shk_zone_add(reg, "a.b", MB, NULL));
    ck_assert_int_eq(shk_last_error(), SHK_EINVAL);
    ck_assert_ptr_null(shk_zone_add(reg, "a/b", MB, NULL));
    ck_assert_int_eq(shk_last_error(), SHK_EINVAL);
    memset(longname, 'n', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    ck_assert_ptr_null(shk_zone_add(reg, longname, MB, NULL));
    ck_assert_int_eq(shk_last_error(), SHK_ERANGE);
    longname[SHK_ZONE_NAME_MAX] = '\0';
    ck_assert_ptr_nonnull(shk_zone_add(reg, longname, MB, NULL));
    memset(longtag, 't', sizeof longtag - 1);
    longtag[sizeof longtag - 1] = '\0';
    ck_assert_ptr_null(shk_zone_add(reg, "tagged", MB, longtag));
    ck_assert_int_eq(shk_last_error(), SHK_ERANGE);
    ck_assert_ptr_null(shk_zone_add(reg, "huge", SIZE_MAX, NULL));
    ck_assert_int_eq(shk_last_error(), SHK_ERANGE);

    ck_assert_ptr_null(shk_zones_new("bad.instance"));
    ck_assert_int_eq(shk_last_error(), SHK_EINVAL);

    /* sizes are whole pages */
    shk_zone_t *z = shk_zone_add(reg, "odd", (size_t)SHK_ZONE_MIN_PAGES * (size_t)ps + 1, NULL);
    ck_assert_ptr_nonnull(z);
    ck_assert_int_eq(shk_zones_create(reg, NULL), SHK_OK);
    ck_assert_uint_eq(shk_zone_size(z), (size_t)(SHK_ZONE_MIN_PAGES + 1) * (size_t)ps);
    ck_assert_ptr_null(shk_zone_add(reg, "late", MB, NULL));
    ck_assert_int_eq(shk_last_error(), SHK_EINVAL);
    shk_zones_free(reg);
}
END_TEST

/* Tags are printed by the reports: one with a control character (a
 * terminal escape) is refused where it is declared, as attach refuses it in
 * a header. */
START_TEST(add_refuses_control_characters_in_tags)
{
    shk_zones_t *reg = shk_zones_new(instance);
    ck_assert_ptr_null(shk_zone_add(reg, "esc", MB, "red\x1b[31m"));
    ck_assert_int_eq(shk_last_error(), SHK_EINVAL);
    ck_assert_str_eq(shk_last_errmsg(), "tag of shared memory zone \"esc\" holds a control character");
    ck_assert_ptr_null(shk_zone_add(reg, "tab", MB, "a\tb"));
    ck_assert_ptr_null(shk_zone_add(reg, "del", MB, "a\x7f"));
    ck_assert_ptr_nonnull(shk_zone_add(reg, "fine", MB, "limit_req: \"x\" 100%"));
    shk_zones_free(reg);
}
END_TEST

/* ---- creation and reload ---------------------------------------------------- */

typedef struct {
    int calls;
    void *old_seen;
    int fail;
} init_rec_t;

/* The zone keeps a counter block as its data: fresh zones allocate it,
 * reused zones adopt the old one. */
static int counter_init(shk_zone_t *zone, void *old, void *ctx)
{
    init_rec_t *r = ctx;
    r->calls++;
    r->old_seen = old;
    if (r->fail)
        return shk_error(SHK_EINVAL, "init of \"%s\" refused on purpose", shk_zone_name(zone));
    if (old)
        return SHK_OK;
    uint64_t *c = shk_slab_calloc(shk_zone_slab(zone), 64);
    if (!c)
        return SHK_ENOMEM;
    return shk_zone_set_data(zone, c);
}

START_TEST(create_lays_out_header)
{
    init_rec_t r = {0};
    shk_zones_t *reg = shk_zones_new(NULL);
    shk_zone_t *z = shk_zone_add(reg, "one", MB, "limit_req");
    ck_assert_int_eq(shk_zone_set_init(z, counter_init, &r), SHK_OK);
    ck_assert_int_eq(shk_zones_create(reg, NULL), SHK_OK);
    ck_assert_int_eq(r.calls, 1);
    ck_assert_ptr_null(r.old_seen);
    ck_assert_uint_eq(shk_zone_size(z), MB);
    ck_assert_str_eq(shk_zone_name(z), "one");
    ck_assert_str_eq(shk_zone_tag(z), "limit_req");
    ck_assert_uint_eq(shk_zone_generation(z), 1);
    ck_assert_int_eq(shk_zone_creator(z), getpid());
    ck_assert_uint_eq(shk_zone_kind(z), SHK_ZONE_ANON);
    ck_assert_ptr_nonnull(shk_zone_data(z));
    ck_assert_int_eq(shk_slab_check(shk_zone_slab(z)), SHK_OK);
    /* the slab pool lies inside the zone, after the header */
    char *base = shk_zone_base(z);
    char *sb = shk_slab_base(shk_zone_slab(z));
    ck_assert(sb > base && sb + shk_slab_size(shk_zone_slab(z)) == base + MB);
    /* the slab pool's lock is the first in the table */
    ck_assert_uint_eq(shk_zone_locks(z), 1);
    shk_zone_lock_t l;
    ck_assert_int_eq(shk_zone_lock_info(z, 0, &l), SHK_OK);
    ck_assert_str_eq(l.name, "slab");
    ck_assert_int_eq(shk_zone_lock_info(z, 1, &l), SHK_ENOENT);
    /* data pointers outside the pool are refused */
    int local;
    ck_assert_int_eq(shk_zone_set_data(z, &local), SHK_EINVAL);
    ck_assert_ptr_eq(shk_zones_find(reg, "one"), z);
    ck_assert_ptr_null(shk_zones_find(reg, "nope"));
    ck_assert_int_eq(shk_last_error(), SHK_ENOENT);
    ck_assert_ptr_eq(shk_zones_at(reg, 0), z);
    ck_assert_ptr_null(shk_zones_at(reg, 1));
    ck_assert_int_eq(shk_zones_create(reg, NULL), SHK_EINVAL);
    shk_zones_free(reg);
}
END_TEST

START_TEST(reload_reuse_rule)
{
    init_rec_t ra = {0}, rb = {0}, rc = {0}, rt = {0};
    shk_zones_t *r1 = shk_zones_new(NULL);
    shk_zone_t *a1 = shk_zone_add(r1, "a", MB, "t");
    shk_zone_t *b1 = shk_zone_add(r1, "b", MB, "t");
    shk_zone_t *c1 = shk_zone_add(r1, "c", MB, "t");
    shk_zone_t *t1 = shk_zone_add(r1, "tagged", MB, "t");
    shk_zone_set_init(a1, counter_init, &ra);
    shk_zone_set_init(b1, counter_init, &rb);
    shk_zone_set_init(c1, counter_init, &rc);
    shk_zone_set_init(t1, counter_init, &rt);
    ck_assert_int_eq(shk_zones_create(r1, NULL), SHK_OK);
    uint64_t *da = shk_zone_data(a1), *db = shk_zone_data(b1), *dc = shk_zone_data(c1);
    da[0] = 111;
    db[0] = 222;
    dc[0] = 333;

    /* the new configuration: a unchanged, b resized, c gone, d new,
     * "tagged" now belongs to another user */
    init_rec_t na = {0}, nb = {0}, nd = {0}, nt = {0};
    shk_zones_t *r2 = shk_zones_new(NULL);
    shk_zone_t *a2 = shk_zone_add(r2, "a", MB, "t");
    shk_zone_t *b2 = shk_zone_add(r2, "b", 2 * MB, "t");
    shk_zone_t *d2 = shk_zone_add(r2, "d", MB, "t");
    shk_zone_t *t2 = shk_zone_add(r2, "tagged", MB, "other");
    shk_zone_set_init(a2, counter_init, &na);
    shk_zone_set_init(b2, counter_init, &nb);
    shk_zone_set_init(d2, counter_init, &nd);
    shk_zone_set_init(t2, counter_init, &nt);
    ck_assert_int_eq(shk_zones_create(r2, r1), SHK_OK);

    /* kept: same memory, old data handed to init, generation 2 */
    ck_assert_ptr_eq(shk_zone_base(a2), shk_zone_base(a1));
    ck_assert_ptr_eq(na.old_seen, da);
    ck_assert_uint_eq(((uint64_t *)shk_zone_data(a2))[0], 111);
    ck_assert_uint_eq(shk_zone_generation(a2), 2);
    /* resized: fresh memory, no old data */
    ck_assert_ptr_ne(shk_zone_base(b2), shk_zone_base(b1));
    ck_assert_ptr_null(nb.old_seen);
    ck_assert_uint_eq(((uint64_t *)shk_zone_data(b2))[0], 0);
    ck_assert_uint_eq(shk_zone_generation(b2), 1);
    ck_assert_uint_eq(shk_zone_size(b2), 2 * MB);
    /* new */
    ck_assert_ptr_null(nd.old_seen);
    ck_assert_int_eq(nd.calls, 1);
    /* retagged: fresh */
    ck_assert_ptr_null(nt.old_seen);
    ck_assert_ptr_ne(shk_zone_base(t2), shk_zone_base(t1));

    /* the old generation keeps running on its memory until released */
    ck_assert_uint_eq(db[0], 222);
    ck_assert_uint_eq(dc[0], 333);
    void *b1base = shk_zone_base(b1), *c1base = shk_zone_base(c1);
    shk_zones_free(r1);
    ck_assert(!mapped(c1base)); /* no longer declared: unmapped */
    ck_assert(!mapped(b1base)); /* replaced: unmapped */
    ck_assert(mapped(shk_zone_base(a2)));
    ck_assert_uint_eq(((uint64_t *)shk_zone_data(a2))[0], 111);
    ck_assert_int_eq(shk_slab_check(shk_zone_slab(a2)), SHK_OK);

    /* and a third generation keeps it again */
    shk_zones_t *r3 = shk_zones_new(NULL);
    shk_zone_t *a3 = shk_zone_add(r3, "a", MB, "t");
    ck_assert_int_eq(shk_zones_create(r3, r2), SHK_OK);
    ck_assert_uint_eq(shk_zone_generation(a3), 3);
    shk_zones_free(r2);
    ck_assert_uint_eq(((uint64_t *)shk_zone_data(a3))[0], 111);
    shk_zones_free(r3);
}
END_TEST

START_TEST(failed_create_leaves_old_untouched)
{
    init_rec_t ra = {0};
    shk_zones_t *r1 = shk_zones_new(NULL);
    shk_zone_t *a1 = shk_zone_add(r1, "a", MB, "t");
    shk_zone_set_init(a1, counter_init, &ra);
    ck_assert_int_eq(shk_zones_create(r1, NULL), SHK_OK);
    ((uint64_t *)shk_zone_data(a1))[0] = 7;

    init_rec_t na = {0}, nbad = {.fail = 1};
    shk_zones_t *r2 = shk_zones_new(NULL);
    shk_zone_t *a2 = shk_zone_add(r2, "a", MB, "t");
    shk_zone_t *n2 = shk_zone_add(r2, "fresh", MB, "t");
    shk_zone_t *bad = shk_zone_add(r2, "bad", MB, "t");
    shk_zone_set_init(a2, counter_init, &na);
    shk_zone_set_init(n2, counter_init, &na);
    shk_zone_set_init(bad, counter_init, &nbad);
    ck_assert_int_eq(shk_zones_create(r2, r1), SHK_EINVAL);
    ck_assert_str_eq(shk_last_errmsg(), "init of \"bad\" refused on purpose");
    ck_assert_ptr_null(shk_zone_base(n2));
    ck_assert_ptr_null(shk_zone_base(a2));
    shk_zones_free(r2);
    /* the old registry still owns its zone, unchanged */
    ck_assert(mapped(shk_zone_base(a1)));
    ck_assert_uint_eq(shk_zone_generation(a1), 1);
    ck_assert_uint_eq(((uint64_t *)shk_zone_data(a1))[0], 7);

    /* and can still be reused afterwards */
    shk_zones_t *r3 = shk_zones_new(NULL);
    shk_zone_t *a3 = shk_zone_add(r3, "a", MB, "t");
    ck_assert_int_eq(shk_zones_create(r3, r1), SHK_OK);
    ck_assert_uint_eq(((uint64_t *)shk_zone_data(a3))[0], 7);
    shk_zones_free(r1);
    shk_zones_free(r3);
}
END_TEST

static int child_reads_inherited(void *arg)
{
    shk_zone_t *z = arg;
    uint64_t *d = shk_zone_data(z);
    TU_CHECK(d && d[0] == 42, "inherited data");
    TU_CHECK(shk_slab_alloc(shk_zone_slab(z), 100) != NULL, "child allocates");
    d[1] = 43;
    return 0;
}

START_TEST(anonymous_zone_is_inherited)
{
    init_rec_t r = {0};
    shk_zones_t *reg = shk_zones_new(NULL);
    shk_zone_t *z = shk_zone_add(reg, "one", MB, NULL);
    shk_zone_set_init(z, counter_init, &r);
    ck_assert_int_eq(shk_zones_create(reg, NULL), SHK_OK);
    ((uint64_t *)shk_zone_data(z))[0] = 42;
    tu_wait_ok(tu_fork(child_reads_inherited, z));
    ck_assert_uint_eq(((uint64_t *)shk_zone_data(z))[1], 43);
    ck_assert_int_eq(shk_slab_check(shk_zone_slab(z)), SHK_OK);
    shk_zones_free(reg);
}
END_TEST

/* ---- named zones -------------------------------------------------------------- */

START_TEST(named_zone_mode_and_unlink)
{
    shk_zones_t *reg = shk_zones_new(instance);
    shk_zone_t *a = shk_zone_add(reg, "a", MB, NULL);
    shk_zone_t *b = shk_zone_add(reg, "b", MB, NULL);
    ck_assert_int_eq(shk_zone_set_kind(a, SHK_ZONE_NAMED, 0), SHK_OK);
    ck_assert_int_eq(shk_zone_set_kind(b, SHK_ZONE_NAMED, 0640), SHK_OK);
    ck_assert_int_eq(shk_zone_set_kind(b, 7, 0), SHK_EINVAL);
    ck_assert_int_eq(shk_zone_set_kind(b, SHK_ZONE_NAMED, 01777), SHK_EINVAL);
    ck_assert_int_eq(shk_zone_set_kind(b, SHK_ZONE_NAMED, 0044), SHK_EINVAL);
    ck_assert_int_eq(shk_zones_create(reg, NULL), SHK_OK);
    char path[256];
    struct stat st;
    snprintf(path, sizeof path, "/dev/shm/shmkit.%s.a", instance);
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert_uint_eq(st.st_mode & 0777, 0600);
    ck_assert_uint_eq((size_t)st.st_size, MB);
    snprintf(path, sizeof path, "/dev/shm/shmkit.%s.b", instance);
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert_uint_eq(st.st_mode & 0777, 0640);

    /* a second creator of the same instance is refused while we live */
    shk_zones_t *other = shk_zones_new(instance);
    shk_zone_t *oa = shk_zone_add(other, "a", MB, NULL);
    shk_zone_set_kind(oa, SHK_ZONE_NAMED, 0);
    ck_assert_int_eq(shk_zones_create(other, NULL), SHK_EEXIST);
    ck_assert_msg(strstr(shk_last_errmsg(), "is alive"), "%s", shk_last_errmsg());
    shk_zones_free(other);
    ck_assert(object_exists(instance, "a"));

    shk_zones_free(reg);
    ck_assert(!object_exists(instance, "a"));
    ck_assert(!object_exists(instance, "b"));
}
END_TEST

static int child_creates_and_dies(void *arg)
{
    (void)arg;
    shk_zones_t *reg = shk_zones_new(instance);
    shk_zone_t *a = shk_zone_add(reg, "stale", MB, NULL);
    shk_zone_set_kind(a, SHK_ZONE_NAMED, 0);
    TU_CHECK(shk_zones_create(reg, NULL) == SHK_OK, "%s", shk_last_errmsg());
    tu_exit(0); /* dies without cleaning up */
}

START_TEST(stale_named_object_is_replaced)
{
    tu_wait_ok(tu_fork(child_creates_and_dies, NULL));
    ck_assert(object_exists(instance, "stale"));
    shk_zones_t *reg = shk_zones_new(instance);
    shk_zone_t *a = shk_zone_add(reg, "stale", 2 * MB, NULL);
    shk_zone_set_kind(a, SHK_ZONE_NAMED, 0);
    ck_assert_int_eq(shk_zones_create(reg, NULL), SHK_OK);
    ck_assert_int_eq(shk_zone_creator(a), getpid());
    ck_assert_uint_eq(shk_zone_size(a), 2 * MB);
    ck_assert_msg(strstr(logbuf, "removing stale shared memory object"), "%s", logbuf);
    shk_zones_free(reg);
    ck_assert(!object_exists(instance, "stale"));
}
END_TEST

START_TEST(named_reload_replaces_and_keeps)
{
    init_rec_t r = {0};
    shk_zones_t *r1 = shk_zones_new(instance);
    shk_zones_set_mapping(r1, SHK_ZONE_NAMED, 0);
    shk_zone_t *keep1 = shk_zone_add(r1, "keep", MB, NULL);
    shk_zone_t *grow1 = shk_zone_add(r1, "grow", MB, NULL);
    shk_zone_add(r1, "gone", MB, NULL);
    shk_zone_set_init(keep1, counter_init, &r);
    shk_zone_set_init(grow1, counter_init, &r);
    ck_assert_int_eq(shk_zones_create(r1, NULL), SHK_OK);
    ((uint64_t *)shk_zone_data(keep1))[0] = 5;
    ((uint64_t *)shk_zone_data(grow1))[0] = 6;

    shk_zones_t *r2 = shk_zones_new(instance);
    shk_zones_set_mapping(r2, SHK_ZONE_NAMED, 0);
    shk_zone_t *keep2 = shk_zone_add(r2, "keep", MB, NULL);
    shk_zone_t *grow2 = shk_zone_add(r2, "grow", 2 * MB, NULL);
    shk_zone_set_init(keep2, counter_init, &r);
    shk_zone_set_init(grow2, counter_init, &r);
    ck_assert_int_eq(shk_zones_create(r2, r1), SHK_OK);
    /* the old "grow" is still usable by the old generation */
    ck_assert_uint_eq(((uint64_t *)shk_zone_data(grow1))[0], 6);
    shk_zones_free(r1);
    ck_assert(object_exists(instance, "keep"));
    ck_assert(object_exists(instance, "grow"));
    ck_assert(!object_exists(instance, "gone"));

    shk_zone_t *att = shk_zone_attach(instance, "grow", SHK_ZONE_RDONLY);
    ck_assert_msg(att != NULL, "%s", shk_last_errmsg());
    ck_assert_uint_eq(shk_zone_size(att), 2 * MB);
    shk_zone_detach(att);
    att = shk_zone_attach(instance, "keep", SHK_ZONE_RDONLY);
    ck_assert_ptr_nonnull(att);
    ck_assert_uint_eq(((uint64_t *)shk_zone_data(att))[0], 5);
    ck_assert_uint_eq(shk_zone_generation(att), 2);
    shk_zone_detach(att);
    shk_zones_free(r2);
    ck_assert(!object_exists(instance, "keep"));
    ck_assert(!object_exists(instance, "grow"));
}
END_TEST

static void self_dir(char *buf, size_t sz)
{
    ssize_t n = readlink("/proc/self/exe", buf, sz - 1);
    ck_assert(n > 0);
    buf[n] = '\0';
    *strrchr(buf, '/') = '\0';
}

START_TEST(attach_from_exec_child)
{
    init_rec_t r = {0};
    shk_zones_t *reg = shk_zones_new(instance);
    shk_zone_t *z = shk_zone_add(reg, "shared", MB, "demo");
    shk_zone_set_kind(z, SHK_ZONE_NAMED, 0);
    shk_zone_set_init(z, counter_init, &r);
    ck_assert_int_eq(shk_zones_create(reg, NULL), SHK_OK);
    uint64_t *d = shk_zone_data(z);
    d[0] = 0x5eed;
    char *msg = shk_slab_alloc(shk_zone_slab(z), 64);
    strcpy(msg, "written by the creator");
    d[1] = shk_slab_off(shk_zone_slab(z), msg);

    char exe[PATH_MAX];
    ssize_t en = readlink("/proc/self/exe", exe, sizeof exe - 1);
    ck_assert(en > 0);
    exe[en] = '\0';
    char *argv[] = {exe, "--attach-child", instance, "shared", NULL};
    char out[512];
    int st = tu_run_capture(argv, -1, out, sizeof out, NULL, 0);
    ck_assert_int_eq(st, 0);
    ck_assert_str_eq(out, "5eed written by the creator\n");
    ck_assert_str_eq((char *)shk_slab_ptr(shk_zone_slab(z), d[2]), "written by the child");
    ck_assert_int_eq(shk_slab_check(shk_zone_slab(z)), SHK_OK);
    shk_zones_free(reg);
}
END_TEST

/* main() runs this when exec'd with --attach-child INSTANCE ZONE. */
static int attach_child(const char *inst, const char *name)
{
    shk_zone_t *ro = shk_zone_attach(inst, name, SHK_ZONE_RDONLY);
    if (!ro) {
        fprintf(stderr, "attach ro: %s\n", shk_last_errmsg());
        return 1;
    }
    if (shk_zone_shmtx_create(ro, &(shk_shmtx_t){0}, "newlock") != SHK_EPERM ||
        shk_zone_set_data(ro, NULL) != SHK_EPERM)
        return 2;
    shk_zone_detach(ro);
    shk_zone_t *z = shk_zone_attach(inst, name, 0);
    if (!z)
        return 3;
    uint64_t *d = shk_zone_data(z);
    shk_slab_t *s = shk_zone_slab(z);
    printf("%llx %s\n", (unsigned long long)d[0], (char *)shk_slab_ptr(s, d[1]));
    char *m = shk_slab_alloc(s, 64);
    if (!m)
        return 4;
    strcpy(m, "written by the child");
    d[2] = shk_slab_off(s, m);
    shk_zone_detach(z);
    return 0;
}

START_TEST(attach_refuses_damaged_objects)
{
    char path[256], shmname[256];
    long ps = sysconf(_SC_PAGESIZE);

    ck_assert_ptr_null(shk_zone_attach(instance, "missing", SHK_ZONE_RDONLY));
    ck_assert_int_eq(shk_last_error(), SHK_ENOENT);
    ck_assert_ptr_null(shk_zone_attach(instance, "x", 0x4));
    ck_assert_int_eq(shk_last_error(), SHK_EINVAL);

    /* a foreign object of plausible size */
    snprintf(shmname, sizeof shmname, "/shmkit.%s.foreign", instance);
    int fd = shm_open(shmname, O_RDWR | O_CREAT | O_EXCL, 0600);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(ftruncate(fd, 16 * ps), 0);
    char junk[4096];
    memset(junk, 0x5a, sizeof junk);
    ck_assert_int_eq(write(fd, junk, sizeof junk), (ssize_t)sizeof junk);
    close(fd);
    ck_assert_ptr_null(shk_zone_attach(instance, "foreign", SHK_ZONE_RDONLY));
    ck_assert_int_eq(shk_last_error(), SHK_ECORRUPT);
    ck_assert_msg(strstr(shk_last_errmsg(), "bad magic"), "%s", shk_last_errmsg());
    shm_unlink(shmname);

    /* a tiny object */
    snprintf(shmname, sizeof shmname, "/shmkit.%s.tiny", instance);
    fd = shm_open(shmname, O_RDWR | O_CREAT | O_EXCL, 0600);
    ck_assert_int_eq(write(fd, "SHMKZONE", 8), 8);
    close(fd);
    ck_assert_ptr_null(shk_zone_attach(instance, "tiny", SHK_ZONE_RDONLY));
    ck_assert_int_eq(shk_last_error(), SHK_ECORRUPT);
    shm_unlink(shmname);

    /* a real zone whose object was truncated behind its back */
    shk_zones_t *reg = shk_zones_new(instance);
    shk_zone_t *z = shk_zone_add(reg, "cut", MB, NULL);
    shk_zone_set_kind(z, SHK_ZONE_NAMED, 0);
    ck_assert_int_eq(shk_zones_create(reg, NULL), SHK_OK);
    snprintf(path, sizeof path, "/dev/shm/shmkit.%s.cut", instance);
    ck_assert_int_eq(truncate(path, MB / 2), 0);
    ck_assert_ptr_null(shk_zone_attach(instance, "cut", SHK_ZONE_RDONLY));
    ck_assert_int_eq(shk_last_error(), SHK_ECORRUPT);
    ck_assert_msg(strstr(shk_last_errmsg(), "recorded size 1048576 but the object holds 524288"),
                  "%s", shk_last_errmsg());
    /* restore the size so our own mapping stays valid, then release */
    ck_assert_int_eq(truncate(path, MB), 0);
    shk_zones_free(reg);
}
END_TEST

/* ---- listing named zones ---------------------------------------------------------- */

/* Make an empty file /dev/shm/<fmt with the instance>, or one holding junk. */
static void shm_file(const char *name, int junk)
{
    char path[300];
    snprintf(path, sizeof path, "/dev/shm/%s", name);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
    ck_assert_msg(fd >= 0, "%s: %s", path, strerror(errno));
    if (junk) {
        char b[8192];
        memset(b, 0x5a, sizeof b);
        ck_assert_int_eq(write(fd, b, sizeof b), (ssize_t)sizeof b);
    }
    close(fd);
}

static void shm_file_rm(const char *name)
{
    char path[300];
    snprintf(path, sizeof path, "/dev/shm/%s", name);
    ck_assert_int_eq(unlink(path), 0);
}

START_TEST(zones_list_sorted_and_filtered)
{
    char other[80];
    snprintf(other, sizeof other, "%s-2", instance);
    shk_zones_t *r1 = shk_zones_new(instance), *r2 = shk_zones_new(other);
    ck_assert_ptr_nonnull(r1);
    ck_assert_ptr_nonnull(r2);
    shk_zones_set_mapping(r1, SHK_ZONE_NAMED, 0);
    shk_zones_set_mapping(r2, SHK_ZONE_NAMED, 0);
    /* declared out of order: the list is sorted, not in creation order */
    ck_assert_ptr_nonnull(shk_zone_add(r1, "b", MB, NULL));
    ck_assert_ptr_nonnull(shk_zone_add(r1, "a", MB, NULL));
    ck_assert_ptr_nonnull(shk_zone_add(r2, "c", MB, NULL));
    ck_assert_int_eq(shk_zones_create(r1, NULL), SHK_OK);
    ck_assert_int_eq(shk_zones_create(r2, NULL), SHK_OK);

    /* objects that are not zones: a name that is not ours, names that start
     * like ours but carry no valid zone name, and a valid name on junk */
    char alien[128], skipped[5][160], junk[128], longz[SHK_ZONE_NAME_MAX + 2];
    memset(longz, 'z', sizeof longz - 1);
    longz[sizeof longz - 1] = '\0';
    snprintf(alien, sizeof alien, "notshmkit.%s.a", instance);
    snprintf(skipped[0], sizeof skipped[0], "shmkit.%s", instance);
    snprintf(skipped[1], sizeof skipped[1], "shmkit.%s.a.b", instance);
    snprintf(skipped[2], sizeof skipped[2], "shmkit.%s.bad!name", instance);
    snprintf(skipped[3], sizeof skipped[3], "shmkit.%s.", instance);
    snprintf(skipped[4], sizeof skipped[4], "shmkit.%s.%s", instance, longz);
    snprintf(junk, sizeof junk, "shmkit.%s.junk", instance);
    shm_file(alien, 0);
    for (int i = 0; i < 5; i++)
        shm_file(skipped[i], 0);
    shm_file(junk, 1);

    shk_zone_name_t *l = NULL;
    unsigned n = 99;
    logbuf[0] = '\0';
    ck_assert_int_eq(shk_zones_list(instance, &l, &n), SHK_OK);
    ck_assert_uint_eq(n, 3);
    ck_assert_str_eq(l[0].instance, instance);
    ck_assert_str_eq(l[0].zone, "a");
    ck_assert_str_eq(l[1].instance, instance);
    ck_assert_str_eq(l[1].zone, "b");
    ck_assert_str_eq(l[2].instance, instance);
    ck_assert_str_eq(l[2].zone, "junk");
    shk_zones_list_free(l);
    /* every skipped object is reported, with its reason, at debug level */
    for (int i = 0; i < 5; i++) {
        char want[1024];
        snprintf(want, sizeof want, "shared memory object \"%s\" skipped: ", skipped[i]);
        ck_assert_msg(strstr(logbuf, want), "no \"%s\" in log: %s", want, logbuf);
    }
    ck_assert_msg(strstr(logbuf, "skipped: invalid zone name \"a.b\" (allowed: A-Z a-z 0-9 _ -)"),
                  "log: %s", logbuf);
    ck_assert_msg(strstr(logbuf, "is longer than 63 bytes"), "log: %s", logbuf);
    ck_assert_msg(!strstr(logbuf, alien), "log: %s", logbuf);
    /* the list is made of names: the junk object is listed, attach says why it is no zone */
    ck_assert_ptr_null(shk_zone_attach(instance, "junk", SHK_ZONE_RDONLY));
    ck_assert_int_eq(shk_last_error(), SHK_ECORRUPT);

    ck_assert_int_eq(shk_zones_list(other, &l, &n), SHK_OK);
    ck_assert_uint_eq(n, 1);
    ck_assert_str_eq(l[0].instance, other);
    ck_assert_str_eq(l[0].zone, "c");
    shk_zones_list_free(l);

    /* every instance: sorted throughout (other tests' zones may be there
     * too), ours in order, and only valid names */
    ck_assert_int_eq(shk_zones_list(NULL, &l, &n), SHK_OK);
    const char *want[][2] = {{instance, "a"}, {instance, "b"}, {instance, "junk"}, {other, "c"}};
    unsigned next = 0;
    for (unsigned i = 0; i < n; i++) {
        if (i) {
            int c = strcmp(l[i - 1].instance, l[i].instance);
            ck_assert_msg(c < 0 || (c == 0 && strcmp(l[i - 1].zone, l[i].zone) < 0),
                          "unsorted: %s.%s before %s.%s", l[i - 1].instance, l[i - 1].zone,
                          l[i].instance, l[i].zone);
        }
        ck_assert_msg(strspn(l[i].zone, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                        "0123456789_-") == strlen(l[i].zone) && *l[i].zone,
                      "listed \"%s\"", l[i].zone);
        if (strcmp(l[i].instance, instance) == 0 || strcmp(l[i].instance, other) == 0) {
            ck_assert_uint_lt(next, 4);
            ck_assert_str_eq(l[i].instance, want[next][0]);
            ck_assert_str_eq(l[i].zone, want[next][1]);
            next++;
        }
    }
    ck_assert_uint_eq(next, 4);
    shk_zones_list_free(l);

    /* bad arguments */
    l = (shk_zone_name_t *)1;
    ck_assert_int_eq(shk_zones_list("bad.inst", &l, &n), SHK_EINVAL);
    ck_assert_ptr_null(l);
    ck_assert_uint_eq(n, 0);
    ck_assert_str_eq(shk_last_errmsg(),
                     "invalid instance name \"bad.inst\" (allowed: A-Z a-z 0-9 _ -)");
    ck_assert_int_eq(shk_zones_list(longz, &l, &n), SHK_ERANGE);
    ck_assert_int_eq(shk_zones_list(instance, NULL, &n), SHK_EINVAL);
    ck_assert_int_eq(shk_zones_list(instance, &l, NULL), SHK_EINVAL);
    shk_zones_list_free(NULL);

    /* gone with their registries and files */
    shm_file_rm(alien);
    for (int i = 0; i < 5; i++)
        shm_file_rm(skipped[i]);
    shm_file_rm(junk);
    shk_zones_free(r1);
    shk_zones_free(r2);
    ck_assert_int_eq(shk_zones_list(instance, &l, &n), SHK_OK);
    ck_assert_uint_eq(n, 0);
    ck_assert_ptr_null(l);
}
END_TEST

/* ---- locks ------------------------------------------------------------------------ */

typedef struct {
    shk_zone_t *zone;
    tu_pipe_t locked;
    int which; /* 0: a user lock, 1: the slab pool's lock */
} holder_t;

static int hold_and_wait(void *arg)
{
    holder_t *h = arg;
    shk_shmtx_t m;
    shk_slab_t *slab = shk_zone_slab(h->zone);
    void *b[10];
    /* some free chunks wait in its slab cache when it dies */
    TU_CHECK(shk_slab_cache(slab, 1) == SHK_OK, "%s", shk_last_errmsg());
    for (int i = 0; i < 10; i++)
        TU_CHECK((b[i] = shk_slab_alloc(slab, 100)) != NULL, "alloc");
    for (int i = 0; i < 10; i++)
        TU_CHECK(shk_slab_free(slab, b[i]) == SHK_OK, "%s", shk_last_errmsg());
    if (h->which == 0) {
        TU_CHECK(shk_zone_shmtx_create(h->zone, &m, "counters") == SHK_OK, "%s",
                 shk_last_errmsg());
        TU_CHECK(shk_shmtx_lock(&m) == SHK_OK, "lock");
    } else {
        TU_CHECK(shk_slab_lock(shk_zone_slab(h->zone)) == SHK_OK, "slab lock");
    }
    tu_signal(&h->locked);
    for (;;)
        pause();
}

START_TEST(lock_table_and_recovery)
{
    shk_zones_t *reg = shk_zones_new(NULL);
    shk_zone_t *z = shk_zone_add(reg, "one", MB, NULL);
    ck_assert_int_eq(shk_zones_create(reg, NULL), SHK_OK);

    shk_shmtx_t m1, m2;
    ck_assert_int_eq(shk_zone_shmtx_create(z, &m1, "counters"), SHK_OK);
    ck_assert_int_eq(shk_zone_shmtx_create(z, &m2, "counters"), SHK_OK);
    ck_assert_ptr_eq(m1.sh, m2.sh);
    ck_assert_uint_eq((uintptr_t)m1.sh % 64, 0);
    ck_assert_uint_eq(shk_zone_locks(z), 2);
    char longname[SHK_SHMTX_NAME_MAX + 2];
    memset(longname, 'l', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    ck_assert_int_eq(shk_zone_shmtx_create(z, &m2, longname), SHK_ERANGE);

    for (int which = 0; which < 2; which++) {
        holder_t h = {.zone = z, .which = which};
        tu_pipe(&h.locked);
        pid_t pid = tu_fork(hold_and_wait, &h);
        ck_assert_int_eq(tu_await(&h.locked), 0);
        shk_zone_lock_t info;
        ck_assert_int_eq(shk_zone_lock_info(z, which ? 0 : 1, &info), SHK_OK);
        ck_assert_int_eq(info.stats.owner, pid);
        kill(pid, SIGKILL);
        ck_assert_int_eq(tu_wait(pid), 128 + SIGKILL);
        logbuf[0] = '\0';
        ck_assert_int_eq(shk_zone_recover(z, pid), 1);
        char want[128];
        snprintf(want, sizeof want, "shared memory zone \"one\" was locked by %d\n", (int)pid);
        ck_assert_msg(strstr(logbuf, want), "log: %s", logbuf);
        if (which)
            ck_assert_msg(strstr(logbuf, "slab check after recovery passed"), "log: %s", logbuf);
        snprintf(want, sizeof want, "free chunks cached by %d went back to the pool", (int)pid);
        ck_assert_msg(strstr(logbuf, want), "log: %s", logbuf);
        shk_slab_stats_t st;
        ck_assert_int_eq(shk_slab_stats(shk_zone_slab(z), &st), SHK_OK);
        ck_assert_uint_eq(st.caches, 0);
        ck_assert_int_eq(shk_zone_recover(z, pid), 0);
        ck_assert_int_eq(shk_shmtx_trylock(&m1), 1);
        shk_shmtx_unlock(&m1);
        ck_assert_int_eq(shk_slab_lock(shk_zone_slab(z)), SHK_OK);
        shk_slab_unlock(shk_zone_slab(z));
        tu_pipe_close(&h.locked);
    }
    /* the table fills up, with a clear error */
    int made = 0, rc = SHK_OK;
    for (int i = 0; rc == SHK_OK; i++) {
        char name[32];
        shk_shmtx_t m;
        snprintf(name, sizeof name, "l%d", i);
        rc = shk_zone_shmtx_create(z, &m, name);
        made += rc == SHK_OK;
    }
    ck_assert_int_eq(rc, SHK_ENOMEM);
    ck_assert_int_eq(made, SHK_ZONE_MAX_LOCKS - 2);
    ck_assert_msg(strstr(shk_last_errmsg(), "lock table full"), "%s", shk_last_errmsg());
    shk_zones_free(reg);
}
END_TEST

START_TEST(named_roots)
{
    shk_zones_t *reg = shk_zones_new(NULL);
    shk_zone_t *z = shk_zone_add(reg, "one", MB, NULL);
    ck_assert_int_eq(shk_zones_create(reg, NULL), SHK_OK);
    shk_slab_t *s = shk_zone_slab(z);
    void *blocks[SHK_ZONE_ROOTS + 1];
    for (int i = 0; i <= SHK_ZONE_ROOTS; i++)
        blocks[i] = shk_slab_alloc(s, 32);
    ck_assert_int_eq(shk_zone_root_set(z, "bus", blocks[0]), SHK_OK);
    ck_assert_ptr_eq(shk_zone_root(z, "bus"), blocks[0]);
    ck_assert_int_eq(shk_zone_root_set(z, "bus", blocks[1]), SHK_OK);
    ck_assert_ptr_eq(shk_zone_root(z, "bus"), blocks[1]);
    ck_assert_ptr_null(shk_zone_root(z, "nope"));
    ck_assert_int_eq(shk_zone_root_set(z, "0123456789abcdefX", blocks[0]), SHK_ERANGE);
    for (int i = 1; i < SHK_ZONE_ROOTS; i++) {
        char key[16];
        snprintf(key, sizeof key, "k%d", i);
        ck_assert_int_eq(shk_zone_root_set(z, key, blocks[i]), SHK_OK);
    }
    ck_assert_int_eq(shk_zone_root_set(z, "full", blocks[SHK_ZONE_ROOTS]), SHK_ENOMEM);
    ck_assert_int_eq(shk_zone_root_set(z, "k3", NULL), SHK_OK);
    ck_assert_ptr_null(shk_zone_root(z, "k3"));
    ck_assert_int_eq(shk_zone_root_set(z, "full", blocks[SHK_ZONE_ROOTS]), SHK_OK);
    ck_assert_ptr_eq(shk_zone_root(z, "full"), blocks[SHK_ZONE_ROOTS]);
    shk_zones_free(reg);
}
END_TEST

/* ---- the zone grammar ----------------------------------------------------------------- */

START_TEST(zone_parse_at_limits)
{
    /* (moved from test_conf.c when the parser moved from core to shm) */
    char name[SHK_ZONE_NAME_MAX + 1];
    size_t size;
    ck_assert_int_eq(shk_zone_parse("one:10m", name, &size), SHK_OK);
    ck_assert_str_eq(name, "one");
    ck_assert_uint_eq(size, 10u << 20);
    ck_assert_int_eq(shk_zone_parse("one:10x", name, &size), SHK_EINVAL);
    ck_assert_str_eq(shk_last_errmsg(), "invalid zone size \"10x\"");
    ck_assert_int_eq(shk_zone_parse("one", name, &size), SHK_EINVAL);
    ck_assert_int_eq(shk_zone_parse(":1m", name, &size), SHK_EINVAL);
    ck_assert_int_eq(shk_zone_parse("o/ne:1m", name, &size), SHK_EINVAL);
    ck_assert_int_eq(shk_zone_parse("one:99999999999999999999", name, &size), SHK_ERANGE);
    char longz[SHK_ZONE_NAME_MAX + 8];
    memset(longz, 'z', SHK_ZONE_NAME_MAX + 1);
    strcpy(longz + SHK_ZONE_NAME_MAX + 1, ":1m");
    ck_assert_int_eq(shk_zone_parse(longz, name, &size), SHK_ERANGE);
    strcpy(longz + SHK_ZONE_NAME_MAX, ":1m");
    ck_assert_int_eq(shk_zone_parse(longz, name, &size), SHK_OK);
    ck_assert_uint_eq(strlen(name), SHK_ZONE_NAME_MAX);

    /* a size of 0 is no zone; the outputs stay untouched on failure */
    strcpy(name, "kept");
    size = 7;
    ck_assert_int_eq(shk_zone_parse("one:0", name, &size), SHK_EINVAL);
    ck_assert_str_eq(shk_last_errmsg(), "invalid zone size \"0\"");
    ck_assert_str_eq(name, "kept");
    ck_assert_uint_eq(size, 7);
    /* the name is what comes before the last ':' */
    ck_assert_int_eq(shk_zone_parse("a:b:1m", name, &size), SHK_EINVAL);
    ck_assert_str_eq(shk_last_errmsg(), "invalid zone name \"a:b\" (allowed: A-Z a-z 0-9 _ -)");
    ck_assert_int_eq(shk_zone_parse(NULL, name, &size), SHK_EINVAL);
}
END_TEST

/* ---- configuration ------------------------------------------------------------------ */

static char conf_path[256];

static void write_conf(const char *text)
{
    snprintf(conf_path, sizeof conf_path, "/tmp/shk_test_shm_%ld.conf", (long)getpid());
    FILE *f = fopen(conf_path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
}

static int parse_conf(shk_zones_t *reg, const char *text)
{
    write_conf(text);
    shk_conf_t *cf = shk_conf_new(NULL);
    ck_assert_int_eq(shk_zones_conf(reg, cf), SHK_OK);
    int rc = shk_conf_parse(cf, conf_path);
    shk_conf_free(cf);
    unlink(conf_path);
    return rc;
}

START_TEST(shm_zone_directive)
{
    char want[512];
    shk_zones_t *reg = shk_zones_new(NULL);
    ck_assert_int_eq(parse_conf(reg, "shm_instance web1;\n"
                                     "shm_mapping named mode=0640;\n"
                                     "shm_zone one:1m;\n"
                                     "shm_zone two:2M cache;\n"),
                     SHK_OK);
    ck_assert_str_eq(shk_zones_instance(reg), "web1");
    ck_assert_uint_eq(shk_zones_find(reg, "two") ? 1 : 0, 1);
    ck_assert_str_eq(shk_zone_tag(shk_zones_find(reg, "one")), "shm_zone");
    ck_assert_str_eq(shk_zone_tag(shk_zones_find(reg, "two")), "cache");
    shk_zones_free(reg);

    struct {
        const char *text, *msg;
    } bad[] = {
        {"shm_zone one:10x;\n", "invalid zone size \"10x\" in %s:1"},
        {"\n\nshm_zone one:1m;\nshm_zone one:2m;\n",
         "the size 2097152 of shared memory zone \"one\" conflicts with already declared size "
         "1048576 in %s:4"},
        {"shm_zone one:1m a;\nshm_zone one:1m b;\n",
         "the shared memory zone \"one\" is already declared for a different use in %s:2"},
        {"shm_zone one;\n", "invalid zone \"one\", expected name:size in %s:1"},
        {"shm_zone one:0;\n", "invalid zone size \"0\" in %s:1"},
        {"shm_zone one:8k;\n", NULL}, /* too small: message checked below */
        {"shm_zone o.e:1m;\n", "invalid zone name \"o.e\" (allowed: A-Z a-z 0-9 _ -) in %s:1"},
        {"shm_mapping shared;\n",
         "invalid value \"shared\" in \"shm_mapping\" directive, it must be \"anon\" or \"named\" "
         "in %s:1"},
        {"shm_mapping named mode=0044;\n",
         "invalid mode \"0044\" (octal, owner must read and write) in %s:1"},
        {"shm_zone one:1m a b;\n",
         "invalid number of arguments in \"shm_zone\" directive in %s:1"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        reg = shk_zones_new(NULL);
        ck_assert_int_eq(parse_conf(reg, bad[i].text), SHK_ECONF);
        if (bad[i].msg) {
            tu_subst(want, sizeof want, bad[i].msg, conf_path);
            ck_assert_str_eq(shk_last_errmsg(), want);
        } else {
            ck_assert_msg(strstr(shk_last_errmsg(), "\"one\" is too small"), "%s",
                          shk_last_errmsg());
        }
        shk_zones_free(reg);
    }
}
END_TEST

/* ---- the shmkit command ------------------------------------------------------------- */

START_TEST(shmkit_stat_on_live_zone)
{
    init_rec_t r = {0};
    shk_zones_t *reg = shk_zones_new(instance);
    shk_zones_set_mapping(reg, SHK_ZONE_NAMED, 0);
    shk_zone_t *z = shk_zone_add(reg, "one", MB, "limit_req");
    shk_zone_add(reg, "two", 2 * MB, NULL);
    shk_zone_set_init(z, counter_init, &r);
    ck_assert_int_eq(shk_zones_create(reg, NULL), SHK_OK);
    shk_shmtx_t m;
    ck_assert_int_eq(shk_zone_shmtx_create(z, &m, "counters"), SHK_OK);
    ck_assert_int_eq(shk_shmtx_lock(&m), SHK_OK); /* shown as held by us */
    for (int i = 0; i < 10; i++)
        ck_assert_ptr_nonnull(shk_slab_alloc(shk_zone_slab(z), 100));
    /* and a process cache holding some free 48-byte chunks */
    ck_assert_int_eq(shk_slab_cache(shk_zone_slab(z), 1), SHK_OK);
    ck_assert_int_eq(shk_slab_free(shk_zone_slab(z), shk_slab_alloc(shk_zone_slab(z), 48)), SHK_OK);

    char dir[PATH_MAX], tool[PATH_MAX + 16], out[65536], err[256];
    self_dir(dir, sizeof dir);
    snprintf(tool, sizeof tool, "%s/../shmkit", dir);

    char *jargv[] = {tool, "stat", "--json", "--instance", instance, NULL};
    ck_assert_int_eq(tu_run_capture(jargv, -1, out, sizeof out, NULL, 0), 0);
    tj_t *j = tj_parse(out, err, sizeof err);
    ck_assert_msg(j != NULL, "bad JSON (%s): %s", err, out);
    ck_assert_str_eq(tj_str(j, "instance"), instance);
    ck_assert_str_eq(tj_str(j, "zones.0.name"), "one");
    ck_assert_str_eq(tj_str(j, "zones.0.tag"), "limit_req");
    ck_assert_str_eq(tj_str(j, "zones.0.kind"), "named");
    ck_assert_str_eq(tj_str(j, "zones.1.name"), "two");
    ck_assert_int_eq((long)tj_num(j, "zones.0.size", 0), MB);
    ck_assert_int_eq((long)tj_num(j, "zones.1.size", 0), 2 * MB);
    ck_assert_int_eq((long)tj_num(j, "zones.0.generation", 0), 1);
    ck_assert_int_eq((long)tj_num(j, "zones.0.creator", 0), getpid());
    ck_assert_int_eq((int)tj_num(j, "zones.0.creator_alive", 0), 1);
    shk_slab_stats_t st;
    ck_assert_int_eq(shk_slab_stats(shk_zone_slab(z), &st), SHK_OK);
    ck_assert_int_eq((long)tj_num(j, "zones.0.slab.pages_total", -1), (long)st.pages_total);
    ck_assert_int_eq((long)tj_num(j, "zones.0.slab.pages_free", -1), (long)st.pages_free);
    ck_assert_str_eq(tj_str(j, "zones.0.locks.0.name"), "slab");
    ck_assert_str_eq(tj_str(j, "zones.0.locks.1.name"), "counters");
    ck_assert_int_eq((long)tj_num(j, "zones.0.locks.1.owner", 0), getpid());
    ck_assert_int_eq((long)tj_num(j, "zones.0.locks.0.owner", -1), 0);
    /* the size-class table accounts for the ten 100-byte blocks */
    const tj_t *cls = tj_get(j, "zones.0.slab.classes");
    ck_assert_ptr_nonnull(cls);
    double used = 0;
    for (size_t i = 0; i < cls->nkids; i++) {
        double sz = tj_num(&cls->kids[i], "size", 0);
        if (sz >= 100 && sz < 200)
            used += tj_num(&cls->kids[i], "used", 0);
    }
    ck_assert_msg(used >= 10, "classes show %g used blocks of 100..199 bytes", used);
    ck_assert_int_eq((long)tj_num(j, "zones.0.slab.caches", -1), 1);
    ck_assert_int_eq((long)tj_num(j, "zones.0.slab.cache_pages", -1), (long)st.cache_pages);
    double cached = 0;
    for (size_t i = 0; i < cls->nkids; i++)
        if (tj_num(&cls->kids[i], "size", 0) == 48)
            cached = tj_num(&cls->kids[i], "cached", -1);
    ck_assert_msg(cached >= 1, "48-byte class shows %g cached chunks", cached);
    tj_free(j);

    char *targv[] = {tool, "stat", "--instance", instance, "one", NULL};
    ck_assert_int_eq(tu_run_capture(targv, -1, out, sizeof out, NULL, 0), 0);
    ck_assert_msg(strstr(out, "zone one\n"), "%s", out);
    ck_assert_msg(strstr(out, "  tag          limit_req\n"), "%s", out);
    ck_assert_msg(strstr(out, "  caches       1 process caches"), "%s", out);
    char want[128];
    snprintf(want, sizeof want, "held by %d", (int)getpid());
    ck_assert_msg(strstr(out, want), "%s", out);
    ck_assert_msg(!strstr(out, "zone two"), "%s", out);

    char *zargv[] = {tool, "zones", "--json", NULL};
    ck_assert_int_eq(tu_run_capture(zargv, -1, out, sizeof out, NULL, 0), 0);
    j = tj_parse(out, err, sizeof err);
    ck_assert_msg(j != NULL, "bad JSON (%s): %s", err, out);
    int found = 0;
    const tj_t *zs = tj_get(j, "zones");
    for (size_t i = 0; zs && i < zs->nkids; i++)
        if (tj_str(&zs->kids[i], "instance") && strcmp(tj_str(&zs->kids[i], "instance"), instance) == 0)
            found++;
    ck_assert_int_eq(found, 2);
    tj_free(j);

    char *margv[] = {tool, "stat", "--instance", instance, "missing", NULL};
    ck_assert_int_eq(tu_run_capture(margv, -1, out, sizeof out, NULL, 0), 1);

    shk_shmtx_unlock(&m);
    shk_zones_free(reg);
}
END_TEST

START_TEST(shmkit_check)
{
    char dir[PATH_MAX], tool[PATH_MAX + 16], out[4096];
    self_dir(dir, sizeof dir);
    snprintf(tool, sizeof tool, "%s/../shmkit", dir);

    write_conf("shm_zone one:1m;\n");
    char *argv[] = {tool, "check", "-c", conf_path, NULL};
    ck_assert_int_eq(tu_run_capture(argv, -1, out, sizeof out, NULL, 0), 0);
    char want[512];
    snprintf(want, sizeof want, "configuration file %s test is successful\n", conf_path);
    ck_assert_str_eq(out, want);
    write_conf("shm_zone one:1m;\nshm_zone two:10x;\n");
    ck_assert_int_eq(tu_run_capture(argv, -1, out, sizeof out, NULL, 0), 1);
    unlink(conf_path);

    char *hargv[] = {tool, "stat", "--help", NULL};
    ck_assert_int_eq(tu_run_capture(hargv, -1, out, sizeof out, NULL, 0), 0);
    ck_assert_msg(strstr(out, "usage: shmkit stat"), "%s", out);
    char *bargv[] = {tool, "frobnicate", NULL};
    ck_assert_int_eq(tu_run_capture(bargv, -1, out, sizeof out, NULL, 0), 2);
}
END_TEST

int main(int argc, char **argv)
{
    if (argc == 4 && strcmp(argv[1], "--attach-child") == 0)
        return attach_child(argv[2], argv[3]);

    Suite *s = suite_create("shm");
    TCase *tc = tcase_create("zones");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, add_conflict_rules);
    tcase_add_test(tc, add_rejects_bad_input);
    tcase_add_test(tc, add_refuses_control_characters_in_tags);
    tcase_add_test(tc, create_lays_out_header);
    tcase_add_test(tc, reload_reuse_rule);
    tcase_add_test(tc, failed_create_leaves_old_untouched);
    tcase_add_test(tc, anonymous_zone_is_inherited);
    tcase_add_test(tc, named_zone_mode_and_unlink);
    tcase_add_test(tc, stale_named_object_is_replaced);
    tcase_add_test(tc, named_reload_replaces_and_keeps);
    tcase_add_test(tc, attach_from_exec_child);
    tcase_add_test(tc, attach_refuses_damaged_objects);
    tcase_add_test(tc, zones_list_sorted_and_filtered);
    tcase_add_test(tc, lock_table_and_recovery);
    tcase_add_test(tc, named_roots);
    tcase_add_test(tc, zone_parse_at_limits);
    tcase_add_test(tc, shm_zone_directive);
    tcase_add_test(tc, shmkit_stat_on_live_zone);
    tcase_add_test(tc, shmkit_check);
    suite_add_tcase(s, tc);
    return tu_run(s);
}
