/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * test_fuzz.c: replays every fuzz target (fuzz/fuzz_<name>.c, built with
 * -DSHK_FUZZ_REPLAY) on its seed corpus (fuzz/corpus/<name>/) and on the
 * inputs of the crashes the fuzzers found and that were fixed
 * (fuzz/regress/<name>/), so `make test` keeps every one of them fixed,
 * natively and under valgrind. A target aborts on a broken property, which
 * Check reports as the test's failure.
 */
#include "util_test.h"

#include <dirent.h>
#include <errno.h>
#include <string.h>
#include <sys/stat.h>

int shk_fuzz_conf(const uint8_t *data, size_t size);
int shk_fuzz_zone(const uint8_t *data, size_t size);
int shk_fuzz_bus(const uint8_t *data, size_t size);
int shk_fuzz_slab(const uint8_t *data, size_t size);
int shk_fuzz_redis(const uint8_t *data, size_t size);

typedef struct {
    const char *name;
    int (*fn)(const uint8_t *data, size_t size);
} target_t;

static const target_t targets[] = {
    {"conf", shk_fuzz_conf},
    {"zone", shk_fuzz_zone},
    {"bus", shk_fuzz_bus},
    {"slab", shk_fuzz_slab},
    {"redis", shk_fuzz_redis},
};

/* Run fn on every regular file of dir; returns how many (0 if no dir). */
static unsigned replay_dir(const char *dir, int (*fn)(const uint8_t *, size_t))
{
    DIR *d = opendir(dir);
    struct dirent *e;
    unsigned n = 0;
    if (!d) {
        ck_assert_msg(errno == ENOENT, "opendir %s: %s", dir, strerror(errno));
        return 0;
    }
    while ((e = readdir(d))) {
        char path[512];
        struct stat st;
        if (e->d_name[0] == '.')
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        ck_assert_int_eq(stat(path, &st), 0);
        if (!S_ISREG(st.st_mode))
            continue;
        uint8_t *buf = malloc(st.st_size ? (size_t)st.st_size : 1);
        ck_assert_ptr_nonnull(buf);
        FILE *f = fopen(path, "rb");
        ck_assert_ptr_nonnull(f);
        size_t got = fread(buf, 1, (size_t)st.st_size, f);
        fclose(f);
        ck_assert_uint_eq(got, (size_t)st.st_size);
        ck_assert_int_eq(fn(buf, got), 0);
        free(buf);
        n++;
    }
    closedir(d);
    return n;
}

START_TEST(replay_corpora)
{
    const target_t *t = &targets[_i];
    char dir[256];
    snprintf(dir, sizeof dir, "fuzz/corpus/%s", t->name);
    unsigned seeds = replay_dir(dir, t->fn);
    ck_assert_msg(seeds > 0, "target %s has no seed corpus in %s", t->name, dir);
    snprintf(dir, sizeof dir, "fuzz/regress/%s", t->name);
    unsigned regress = replay_dir(dir, t->fn);
    printf("fuzz target %s: %u seeds, %u regression inputs replayed\n", t->name, seeds, regress);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("fuzz");
    TCase *tc = tcase_create("replay");
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, replay_corpora, 0, (int)(sizeof targets / sizeof targets[0]));
    suite_add_tcase(s, tc);
    return tu_run(s);
}
