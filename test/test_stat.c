/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * test_stat.c: the reports (stat/, docs/stat.md). `shmkit zones --json`
 * and `shmkit stat --json` parsed with a hostile tag (a quote, a backslash,
 * a stray byte >= 0x80, valid UTF-8), lock names and a tag with control
 * characters written into the header bytes, objects in /dev/shm whose
 * names hold such bytes; the text outputs with no raw control byte or byte
 * >= 0x80; the escaping rules byte by byte and on random strings; the
 * description tables: every field in both outputs (or a reason), today's
 * JSON keys in today's order, every key in docs/stat.md; damaged parts of
 * an attached zone (a lock entry, the bus) reported with the reason.
 */
#include "shk_stat_internal.h"
#include "shk_zone_internal.h"
#include "shmkit.h"
#include "util_json.h"
#include "util_test.h"
#include "util_run.h"

#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

#define MB (1024 * 1024)

static char instance[64];

/* Ours in /dev/shm: "shmkit.<instance>" followed by anything but a name
 * character (so another instance whose name starts with ours is not). */
static int ours(const char *name)
{
    size_t n = strlen("shmkit.") + strlen(instance);
    char c;
    if (strncmp(name, "shmkit.", 7) != 0 || strncmp(name + 7, instance, strlen(instance)) != 0)
        return 0;
    c = name[n];
    return !(c == '_' || c == '-' || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
             (c >= 'A' && c <= 'Z'));
}

static void clean_shm(void)
{
    DIR *d = opendir("/dev/shm");
    struct dirent *e;
    char path[PATH_MAX];
    if (!d)
        return;
    while ((e = readdir(d)))
        if (ours(e->d_name)) {
            snprintf(path, sizeof path, "/dev/shm/%s", e->d_name);
            unlink(path);
        }
    closedir(d);
}

/* Each test starts clean; a failed test (whose checked teardown does not
 * run) leaves its objects to the next test's setup and to the runner's
 * teardown at the end. */
static void setup(void)
{
    clean_shm();
}

static void teardown(void)
{
    clean_shm();
}

static void tool_path(char *buf, size_t sz)
{
    snprintf(buf, sz, "%s/shmkit", tu_build_dir());
}

/* Offset of the first byte of s a terminal must not see raw (not printable
 * ASCII, not a newline), or -1. */
static long first_raw(const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if ((*p < 0x20 && *p != '\n') || *p >= 0x7f)
            return (long)(p - (const unsigned char *)s);
    return -1;
}

#define ASSERT_NO_RAW(what, s)                                                                 \
    do {                                                                                       \
        long at_ = first_raw(s);                                                               \
        ck_assert_msg(at_ < 0, "%s: raw byte 0x%02x at %ld: %s", what,                         \
                      at_ < 0 ? 0 : (unsigned char)(s)[at_], at_, s);                          \
    } while (0)

/* The whole text is valid UTF-8 without raw control bytes but newlines. */
static int valid_json_text(const char *s)
{
    while (*s) {
        size_t n = tj_utf8_len(s);
        if (!n || ((unsigned char)*s < 0x20 && *s != '\n'))
            return 0;
        s += n;
    }
    return 1;
}

static tj_t *parse_ok(const char *what, const char *out)
{
    char err[256];
    ck_assert_msg(valid_json_text(out), "%s: not valid UTF-8 or a raw control byte: %s", what,
                  out);
    tj_t *j = tj_parse(out, err, sizeof err);
    ck_assert_msg(j != NULL, "%s: bad JSON (%s): %s", what, err, out);
    return j;
}

/* The zones-list entry of our instance named zone, or NULL. */
static const tj_t *listed(const tj_t *j, const char *zone)
{
    const tj_t *zs = tj_get(j, "zones");
    for (size_t i = 0; zs && i < zs->nkids; i++) {
        const char *in = tj_str(&zs->kids[i], "instance"), *zn = tj_str(&zs->kids[i], "zone");
        if (in && zn && strcmp(in, instance) == 0 && strcmp(zn, zone) == 0)
            return &zs->kids[i];
    }
    return NULL;
}

static void zpath(char *buf, size_t sz, const char *zone)
{
    snprintf(buf, sz, "/dev/shm/shmkit.%s.%s", instance, zone);
}

/* Write len bytes at offset off of the named zone's object. */
static void patch(const char *zone, size_t off, const void *bytes, size_t len)
{
    char path[PATH_MAX];
    zpath(path, sizeof path, zone);
    int fd = open(path, O_RDWR);
    ck_assert_msg(fd >= 0, "%s", path);
    ck_assert_int_eq(pwrite(fd, bytes, len, (off_t)off), (ssize_t)len);
    close(fd);
}

/* Give lock `name` of zone z the name `to` in the header's bytes. */
static void patch_lock_name(shk_zone_t *z, const char *zone, const char *name, const char *to)
{
    const shk_zone_hdr_t *h = shk_zone_base(z);
    char b[SHK_SHMTX_NAME_MAX + 1] = {0};
    ck_assert_uint_lt(strlen(to), sizeof b);
    memcpy(b, to, strlen(to));
    for (unsigned i = 0; i < shk_zone_locks(z); i++)
        if (strcmp(h->locks[i].name, name) == 0) {
            patch(zone, offsetof(shk_zone_hdr_t, locks) + i * sizeof h->locks[0] +
                            offsetof(shk_zone_hlock_t, name),
                  b, sizeof b);
            return;
        }
    ck_abort_msg("no lock \"%s\"", name);
}

/* ---- hostile strings through the tool ---------------------------------------------------- */

/* a quote, a backslash, a stray byte, valid UTF-8 (é) */
#define HOSTILE_TAG "my\"tag\\\xff\xc3\xa9!"
#define HOSTILE_TAG_JSON "my\"tag\\\xc3\xbf\xc3\xa9!"         /* decoded: 0xff read as U+00FF */
#define HOSTILE_TAG_TEXT "my\"tag\\\\\\xff\\xc3\\xa9!"         /* as the text shows it */
/* ESC, a quote, a backslash, DEL, a C1 control (U+009B, CSI), a newline, a stray byte */
#define HOSTILE_LOCK "lk\x1b[31m\"\\\x7f\xc2\x9b\n\xff"
#define HOSTILE_LOCK_JSON "lk\x1b[31m\"\\\x7f\xc2\x9b\n\xc3\xbf"
#define HOSTILE_LOCK_TEXT "lk\\x1b[31m\"\\\\\\x7f\\xc2\\x9b\\x0a\\xff"

START_TEST(hostile_tag_and_lock_name)
{
    shk_zones_t *reg = shk_zones_new(instance);
    ck_assert_ptr_nonnull(reg);
    ck_assert_int_eq(shk_zones_set_mapping(reg, SHK_ZONE_NAMED, 0), SHK_OK);
    shk_zone_t *z = shk_zone_add(reg, "hostile", MB, HOSTILE_TAG);
    ck_assert_msg(z != NULL, "%s", shk_last_errmsg());
    ck_assert_int_eq(shk_zones_create(reg, NULL), SHK_OK);
    shk_shmtx_t m;
    ck_assert_int_eq(shk_zone_shmtx_create(z, &m, "counters"), SHK_OK);
    /* lock names are read from the header at each report: write raw bytes there */
    patch_lock_name(z, "hostile", "counters", HOSTILE_LOCK);

    char tool[PATH_MAX + 16], out[65536], err[4096];
    tool_path(tool, sizeof tool);

    char *jargv[] = {tool, "stat", "--json", "--instance", instance, NULL};
    ck_assert_msg(tu_run_capture(jargv, -1, out, sizeof out, err, sizeof err) == 0, "%s", err);
    tj_t *j = parse_ok("stat --json", out);
    ck_assert_str_eq(tj_str(j, "zones.0.name"), "hostile");
    ck_assert_str_eq(tj_str(j, "zones.0.tag"), HOSTILE_TAG_JSON);
    ck_assert_str_eq(tj_str(j, "zones.0.locks.1.name"), HOSTILE_LOCK_JSON);
    tj_free(j);

    char *zargv[] = {tool, "zones", "--json", NULL};
    ck_assert_msg(tu_run_capture(zargv, -1, out, sizeof out, err, sizeof err) == 0, "%s", err);
    j = parse_ok("zones --json", out);
    const tj_t *e = listed(j, "hostile");
    ck_assert_msg(e != NULL, "not listed: %s", out);
    ck_assert_str_eq(tj_str(e, "tag"), HOSTILE_TAG_JSON);
    tj_free(j);

    char *targv[] = {tool, "stat", "--instance", instance, NULL};
    ck_assert_msg(tu_run_capture(targv, -1, out, sizeof out, err, sizeof err) == 0, "%s", err);
    ASSERT_NO_RAW("stat", out);
    ck_assert_msg(strstr(out, "  tag          " HOSTILE_TAG_TEXT "\n"), "%s", out);
    ck_assert_msg(strstr(out, "    " HOSTILE_LOCK_TEXT " "), "%s", out);

    char *ztargv[] = {tool, "zones", NULL};
    ck_assert_msg(tu_run_capture(ztargv, -1, out, sizeof out, err, sizeof err) == 0, "%s", err);
    ASSERT_NO_RAW("zones", out);
    ck_assert_msg(strstr(out, " " HOSTILE_TAG_TEXT " "), "%s", out);

    shk_shmtx_destroy(&m);
    shk_zones_free(reg);
}
END_TEST

/* Tags with control characters are refused at shk_zone_add and at attach;
 * one written into the header behind an attached handle, or into a handle,
 * is still escaped. */
START_TEST(control_characters_in_header_bytes)
{
    const char *bad = "t\x1b]0;pwn\x07\x9b\xff";
    const char *bad_json = "t\x1b]0;pwn\x07\xc2\x9b\xc3\xbf";
    const char *bad_text = "t\\x1b]0;pwn\\x07\\x9b\\xff";
    shk_zones_t *reg = shk_zones_new(instance);
    ck_assert_int_eq(shk_zones_set_mapping(reg, SHK_ZONE_NAMED, 0), SHK_OK);
    ck_assert_ptr_null(shk_zone_add(reg, "patched", MB, bad)); /* refused */
    shk_zone_t *z = shk_zone_add(reg, "patched", MB, "plain");
    ck_assert_ptr_nonnull(z);
    ck_assert_int_eq(shk_zones_create(reg, NULL), SHK_OK);
    shk_zone_t *a = shk_zone_attach(instance, "patched", SHK_ZONE_RDONLY);
    ck_assert_msg(a != NULL, "%s", shk_last_errmsg());

    char tb[SHK_ZONE_TAG_MAX + 1] = {0};
    memcpy(tb, bad, strlen(bad));
    patch("patched", offsetof(shk_zone_hdr_t, tag), tb, sizeof tb);

    char tool[PATH_MAX + 16], out[65536], err[4096];
    tool_path(tool, sizeof tool);
    /* the tools now refuse to attach it, and say so without raw bytes */
    char *zargv[] = {tool, "zones", "--json", NULL};
    ck_assert_int_eq(tu_run_capture(zargv, -1, out, sizeof out, err, sizeof err), 0);
    tj_t *j = parse_ok("zones --json", out);
    const tj_t *e = listed(j, "patched");
    ck_assert_msg(e && tj_str(e, "error") && strstr(tj_str(e, "error"), "control character"),
                  "%s", out);
    tj_free(j);
    char *ztargv[] = {tool, "zones", NULL};
    ck_assert_int_eq(tu_run_capture(ztargv, -1, out, sizeof out, err, sizeof err), 0);
    ASSERT_NO_RAW("zones", out);
    ck_assert_msg(strstr(out, "invalid: "), "%s", out);
    char *sargv[] = {tool, "stat", "--instance", instance, "patched", NULL};
    ck_assert_int_eq(tu_run_capture(sargv, -1, out, sizeof out, err, sizeof err), 1);
    ASSERT_NO_RAW("stat stdout", out);
    ASSERT_NO_RAW("stat stderr", err);
    ck_assert_msg(strstr(err, "control character"), "%s", err);

    /* a handle holding such a tag (as one from an older build could) */
    snprintf(a->tag, sizeof a->tag, "%s", bad);
    char *txt = shk_stat_render(&a, 1, instance, 0);
    char *js = shk_stat_render(&a, 1, instance, SHK_STAT_JSON);
    ck_assert_ptr_nonnull(txt);
    ck_assert_ptr_nonnull(js);
    ASSERT_NO_RAW("render", txt);
    ck_assert_msg(strstr(txt, bad_text), "%s", txt);
    j = parse_ok("render --json", js);
    ck_assert_str_eq(tj_str(j, "zones.0.tag"), bad_json);
    tj_free(j);
    free(txt);
    free(js);
    shk_zone_detach(a);
    shk_zones_free(reg);
}
END_TEST

/* Objects in /dev/shm with hostile names: those that are not valid zone
 * names are left out, the rest listed; every output parses or is clean. */
START_TEST(hostile_names_in_dev_shm)
{
    shk_zones_t *reg = shk_zones_new(instance);
    ck_assert_int_eq(shk_zones_set_mapping(reg, SHK_ZONE_NAMED, 0), SHK_OK);
    ck_assert_ptr_nonnull(shk_zone_add(reg, "ok", MB, "fine"));
    ck_assert_int_eq(shk_zones_create(reg, NULL), SHK_OK);

    const char *names[] = {"q\"uote", "back\\slash", "hi\xff", "utf\xc3\xa9", "esc\x1b[31m",
                           "nl\nx", "bell\x07"};
    char path[PATH_MAX];
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        zpath(path, sizeof path, names[i]);
        int fd = open(path, O_CREAT | O_EXCL | O_WRONLY, 0600);
        ck_assert_msg(fd >= 0, "%s", path);
        ck_assert_int_eq(write(fd, "not a zone", 10), 10);
        close(fd);
    }
    /* a bad instance part, and a valid name that is no zone */
    snprintf(path, sizeof path, "/dev/shm/shmkit.%s\x1b[2J.z", instance);
    int fd = open(path, O_CREAT | O_EXCL | O_WRONLY, 0600);
    ck_assert_int_ge(fd, 0);
    close(fd);
    zpath(path, sizeof path, "junk");
    fd = open(path, O_CREAT | O_EXCL | O_WRONLY, 0600);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, "\x1b[2J not a zone \xff", 17), 17);
    close(fd);

    char tool[PATH_MAX + 16], out[65536], err[4096];
    tool_path(tool, sizeof tool);
    char *zargv[] = {tool, "zones", "--json", NULL};
    ck_assert_msg(tu_run_capture(zargv, -1, out, sizeof out, err, sizeof err) == 0, "%s", err);
    tj_t *j = parse_ok("zones --json", out);
    const tj_t *zs = tj_get(j, "zones");
    int n = 0;
    for (size_t i = 0; zs && i < zs->nkids; i++) {
        const char *in = tj_str(&zs->kids[i], "instance");
        if (in && strcmp(in, instance) == 0) {
            const char *zn = tj_str(&zs->kids[i], "zone");
            ck_assert_msg(zn && (strcmp(zn, "ok") == 0 || strcmp(zn, "junk") == 0), "%s", out);
            n++;
        }
    }
    ck_assert_int_eq(n, 2);
    ck_assert_str_eq(tj_str(listed(j, "ok"), "tag"), "fine");
    ck_assert_ptr_nonnull(tj_str(listed(j, "junk"), "error"));
    tj_free(j);

    char *ztargv[] = {tool, "zones", NULL};
    ck_assert_int_eq(tu_run_capture(ztargv, -1, out, sizeof out, err, sizeof err), 0);
    ASSERT_NO_RAW("zones", out);
    char want[256];
    snprintf(want, sizeof want, "%-16s %-16s invalid: ", instance, "junk");
    ck_assert_msg(strstr(out, want), "%s", out);

    char *sargv[] = {tool, "stat", "--instance", instance, NULL};
    ck_assert_int_eq(tu_run_capture(sargv, -1, out, sizeof out, err, sizeof err), 1); /* junk does not attach */
    ASSERT_NO_RAW("stat stdout", out);
    ASSERT_NO_RAW("stat stderr", err);
    ck_assert_msg(strstr(out, "zone ok\n"), "%s", out);
    char *jargv[] = {tool, "stat", "--json", "--instance", instance, NULL};
    ck_assert_int_eq(tu_run_capture(jargv, -1, out, sizeof out, err, sizeof err), 1);
    j = parse_ok("stat --json", out);
    ck_assert_str_eq(tj_str(j, "zones.0.name"), "ok");
    tj_free(j);

    /* a hostile name asked for on the command line is quoted escaped */
    char *bargv[] = {tool, "stat", "--instance", instance, "bad\x1b[2Jname\xff", NULL};
    ck_assert_int_eq(tu_run_capture(bargv, -1, out, sizeof out, err, sizeof err), 1);
    ASSERT_NO_RAW("stat stderr", err);
    ck_assert_msg(strstr(err, "bad\\x1b[2Jname\\xff"), "%s", err);
    shk_zones_free(reg);
}
END_TEST

/* ---- the escaping rules ----------------------------------------------------------------- */

START_TEST(escape_rules)
{
    static const struct {
        const char *in, *json, *text;
    } cases[] = {
        {"plain", "\"plain\"", "plain"},
        {"a\"b\\c/", "\"a\\\"b\\\\c/\"", "a\"b\\\\c/"},
        {"\n\t\r\b\f", "\"\\n\\t\\r\\b\\f\"", "\\x0a\\x09\\x0d\\x08\\x0c"},
        {"\x01\x1b\x1f\x7f", "\"\\u0001\\u001b\\u001f\\u007f\"", "\\x01\\x1b\\x1f\\x7f"},
        {"\xc3\xa9", "\"\xc3\xa9\"", "\\xc3\\xa9"},                      /* é passes */
        {"\xf0\x9f\x98\x80", "\"\xf0\x9f\x98\x80\"", "\\xf0\\x9f\\x98\\x80"}, /* U+1F600 */
        {"\xc2\x85\xc2\x9f\xc2\xa0", "\"\\u0085\\u009f\xc2\xa0\"", /* C1 escaped, NBSP not */
         "\\xc2\\x85\\xc2\\x9f\\xc2\\xa0"},
        {"\xe2\x80\xa8\xe2\x80\xa9", "\"\\u2028\\u2029\"", "\\xe2\\x80\\xa8\\xe2\\x80\\xa9"},
        {"\xff\xfe", "\"\\u00ff\\u00fe\"", "\\xff\\xfe"},           /* never valid */
        {"\xc3", "\"\\u00c3\"", "\\xc3"},                           /* cut short */
        {"\xc3(", "\"\\u00c3(\"", "\\xc3("},                        /* bad continuation */
        {"\xc0\xaf", "\"\\u00c0\\u00af\"", "\\xc0\\xaf"},           /* overlong '/' */
        {"\xe0\x80\xaf", "\"\\u00e0\\u0080\\u00af\"", "\\xe0\\x80\\xaf"},
        {"\xed\xa0\x80", "\"\\u00ed\\u00a0\\u0080\"", "\\xed\\xa0\\x80"}, /* a surrogate */
        {"\xf4\x90\x80\x80", "\"\\u00f4\\u0090\\u0080\\u0080\"", "\\xf4\\x90\\x80\\x80"},
        {"\x80", "\"\\u0080\"", "\\x80"},                           /* a lone continuation */
        {"", "\"\"", ""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *js = shk_stat_escape(cases[i].in, SHK_STAT_JSON);
        char *tx = shk_stat_escape(cases[i].in, 0);
        ck_assert_ptr_nonnull(js);
        ck_assert_ptr_nonnull(tx);
        ck_assert_msg(strcmp(js, cases[i].json) == 0, "case %zu: json %s, want %s", i, js,
                      cases[i].json);
        ck_assert_msg(strcmp(tx, cases[i].text) == 0, "case %zu: text %s, want %s", i, tx,
                      cases[i].text);
        free(js);
        free(tx);
    }
    ck_assert_ptr_null(shk_stat_escape(NULL, 0));
    ck_assert_int_eq(shk_last_error(), SHK_EINVAL);
    ck_assert_ptr_null(shk_stat_escape("x", 0x80));
    ck_assert_int_eq(shk_last_error(), SHK_EINVAL);
}
END_TEST

/* Random byte strings: the JSON is valid UTF-8, parses, and reads back as
 * the input with each stray byte as U+00XX; the text is printable ASCII and
 * reads back exactly. */
START_TEST(escape_random_strings)
{
    uint64_t seed = tu_seed("escape_random_strings");
    long rounds = tu_scale(3000, 10);
    for (long r = 0; r < rounds; r++) {
        char in[48], want[200], back[48], wrapped[300];
        size_t n = 1 + tu_rand(&seed) % 40, w = 0, b = 0;
        for (size_t i = 0; i < n; i++) {
            /* bias toward bytes that make UTF-8 sequences */
            uint64_t x = tu_rand(&seed);
            in[i] = (char)(x % 3 == 0 ? 0x80 + (x >> 8) % 0x80 : 1 + (x >> 8) % 255);
        }
        in[n] = '\0';
        for (size_t i = 0; i < n;) {
            size_t len = tj_utf8_len(in + i);
            if (len) {
                memcpy(want + w, in + i, len);
                w += len;
                i += len;
            } else {
                unsigned char c = (unsigned char)in[i++];
                want[w++] = (char)(0xc0 | (c >> 6));
                want[w++] = (char)(0x80 | (c & 0x3f));
            }
        }
        want[w] = '\0';

        char *js = shk_stat_escape(in, SHK_STAT_JSON);
        ck_assert_ptr_nonnull(js);
        ck_assert_msg(valid_json_text(js), "seed round %ld: %s", r, js);
        snprintf(wrapped, sizeof wrapped, "{\"s\":%s}", js);
        tj_t *j = tj_parse(wrapped, NULL, 0);
        ck_assert_msg(j != NULL, "round %ld: does not parse: %s", r, js);
        ck_assert_msg(strcmp(tj_str(j, "s"), want) == 0, "round %ld: %s", r, js);
        tj_free(j);
        free(js);

        char *tx = shk_stat_escape(in, 0);
        ck_assert_ptr_nonnull(tx);
        ASSERT_NO_RAW("text", tx);
        for (const char *p = tx; *p;) {
            unsigned h;
            if (p[0] == '\\' && p[1] == '\\') {
                back[b++] = '\\';
                p += 2;
            } else if (p[0] == '\\' && p[1] == 'x' && sscanf(p + 2, "%2x", &h) == 1) {
                back[b++] = (char)h;
                p += 4;
            } else {
                ck_assert_msg(*p != '\\', "round %ld: lone backslash in %s", r, tx);
                back[b++] = *p++;
            }
            ck_assert_uint_lt(b, sizeof back);
        }
        back[b] = '\0';
        ck_assert_msg(strcmp(back, in) == 0, "round %ld: %s does not read back", r, tx);
        free(tx);
    }
}
END_TEST

/* ---- the tables ---------------------------------------------------------------------------- */

/* The index of the last of a field's names. */
static uint64_t last_name(const shk_stat_field_t *f)
{
    uint64_t v = 0;
    while (f->names[v + 1])
        v++;
    return v;
}

/* Fill field f of rec with a value of its own (number i of the section). */
static void fill(const shk_stat_field_t *f, unsigned i, void *rec, char strs[][16])
{
    char *p = (char *)rec + f->off;
    uint64_t v = f->names ? last_name(f) : 7000 + 111 * (uint64_t)i;
    switch (f->kind) {
    case SHK_STAT_BOOL:
        v = 1;
        /* fall through */
    case SHK_STAT_UINT:
    case SHK_STAT_INT:
        if (f->size == 8) {
            memcpy(p, &v, 8);
        } else if (f->size == 4) {
            uint32_t x = (uint32_t)v;
            memcpy(p, &x, 4);
        } else if (f->size == 2) {
            uint16_t x = (uint16_t)v;
            memcpy(p, &x, 2);
        } else {
            ck_assert_uint_eq(f->size, 1);
            *p = (char)(v & 0x7f);
        }
        break;
    case SHK_STAT_CHARS:
        ck_assert_uint_gt(f->size, 6);
        snprintf(p, f->size, "c%u", 50 + i);
        break;
    case SHK_STAT_CSTR: {
        const char *s = strs[i];
        snprintf(strs[i], 16, "s%u", 50 + i);
        memcpy(p, &s, sizeof s);
        break;
    }
    default:
        ck_abort_msg("field %u: kind %u", i, f->kind);
    }
}

/* Every field of every section: a key or a reason, a text or a reason, a
 * place inside its record; written from a record of its own values, the
 * JSON holds every key with its value and the text every label and the
 * field's text. */
START_TEST(tables_drive_both_outputs)
{
    unsigned nsec = 0;
    for (const shk_stat_section_t *const *sp = shk_stat_sections; *sp; sp++, nsec++) {
        const shk_stat_section_t *sec = *sp;
        char strs[32][16];
        ck_assert_msg(sec->name && sec->fields && sec->nfields && sec->rec_size, "section %u",
                      nsec);
        ck_assert_uint_le(sec->nfields, 32);
        ck_assert(sec->style == SHK_STAT_LINES || sec->style == SHK_STAT_TABLE);
        ck_assert_msg(sec->fields[0].label, "%s: the first field opens a line or column",
                      sec->name);
        void *rec = calloc(1, sec->rec_size);
        ck_assert_ptr_nonnull(rec);
        for (unsigned i = 0; i < sec->nfields; i++) {
            const shk_stat_field_t *f = &sec->fields[i];
            ck_assert_msg(f->off <= sec->rec_size && f->size <= sec->rec_size - f->off,
                          "%s field %u: outside its record", sec->name, i);
            ck_assert_msg(f->key || (f->why && *f->why), "%s field %u: no key and no reason",
                          sec->name, i);
            ck_assert_msg(!(f->flags & SHK_STAT_NOTEXT) || (f->why && *f->why),
                          "%s field %s: no text and no reason", sec->name, f->key);
            ck_assert_msg(!(f->flags & SHK_STAT_HEAD) || sec->style == SHK_STAT_LINES, "%s",
                          sec->name);
            for (unsigned k = 0; k < i && f->key; k++)
                ck_assert_msg(!sec->fields[k].key || strcmp(sec->fields[k].key, f->key) != 0,
                              "%s: key %s twice", sec->name, f->key);
            fill(f, i, rec, strs);
        }

        /* JSON: the section's object holds exactly its keys, with their values */
        shk_stat_w_t w = {.json = 1};
        shk_stat_json_open(&w, NULL, '{');
        if (sec->style == SHK_STAT_TABLE)
            shk_stat_json_open(&w, "rows", '[');
        shk_stat_section(&w, sec, rec);
        if (sec->style == SHK_STAT_TABLE)
            shk_stat_json_close(&w);
        shk_stat_json_close(&w);
        ck_assert(!w.failed && !w.depth);
        tj_t *j = parse_ok(sec->name, w.p);
        const tj_t *o = sec->style == SHK_STAT_TABLE ? tj_get(j, "rows.0") : j;
        ck_assert_msg(o && o->type == TJ_OBJ, "%s: %s", sec->name, w.p);
        size_t keys = 0;
        for (unsigned i = 0; i < sec->nfields; i++) {
            const shk_stat_field_t *f = &sec->fields[i];
            shk_stat_val_t v;
            if (!f->key)
                continue;
            keys++;
            const tj_t *m = tj_get(o, f->key);
            ck_assert_msg(m, "%s: no key %s in %s", sec->name, f->key, w.p);
            shk_stat_value(f, rec, &v);
            if (f->names)
                ck_assert_msg(m->type == TJ_STR && strcmp(m->str, f->names[last_name(f)]) == 0,
                              "%s.%s", sec->name, f->key);
            else if (f->kind == SHK_STAT_BOOL)
                ck_assert(m->type == TJ_BOOL && m->num == 1);
            else if (f->kind == SHK_STAT_CHARS || f->kind == SHK_STAT_CSTR)
                ck_assert_msg(m->type == TJ_STR && strcmp(m->str, v.s) == 0, "%s.%s", sec->name,
                              f->key);
            else
                ck_assert_msg(m->type == TJ_NUM && m->num == (double)(7000 + 111 * i), "%s.%s",
                              sec->name, f->key);
        }
        ck_assert_uint_eq(o->nkids, keys);
        tj_free(j);
        shk_stat_w_free(&w);

        /* text: every label, and every field's own text */
        w.json = 0;
        if (sec->style == SHK_STAT_TABLE)
            shk_stat_table_open(&w, sec);
        shk_stat_section(&w, sec, rec);
        ck_assert(!w.failed);
        ASSERT_NO_RAW(sec->name, w.p);
        for (unsigned i = 0; i < sec->nfields; i++) {
            const shk_stat_field_t *f = &sec->fields[i];
            shk_stat_w_t piece = {0};
            if (f->flags & SHK_STAT_NOTEXT)
                continue;
            if (f->label)
                ck_assert_msg(strstr(w.p, f->label), "%s: no label \"%s\" in:\n%s", sec->name,
                              f->label, w.p);
            shk_stat_field_text(&piece, f, rec);
            ck_assert_msg(piece.p && strstr(w.p, piece.p), "%s: no \"%s\" (%s) in:\n%s",
                          sec->name, piece.p, f->key ? f->key : f->label, w.p);
            shk_stat_w_free(&piece);
        }
        shk_stat_w_free(&w);
        free(rec);
    }
    ck_assert_uint_ge(nsec, 13);
}
END_TEST

/* Today's keys (the NULL-terminated list want) are all in JSON object o, in
 * today's order: new figures may come anywhere, none may go or move. */
static void keys_in_order(const char *what, const tj_t *o, const char *const *want)
{
    size_t at = 0;
    ck_assert_msg(o && o->type == TJ_OBJ, "%s: no object", what);
    for (size_t i = 0; want[i]; i++) {
        while (at < o->nkids && strcmp(o->kids[at].key, want[i]) != 0)
            at++;
        ck_assert_msg(at < o->nkids, "%s: no key %s after %s", what, want[i],
                      i ? want[i - 1] : "the start");
        at++;
    }
}

/* The keys of o outside the section's table are exactly `extra`. */
static void keys_from_table(const char *what, const tj_t *o, const shk_stat_section_t *sec,
                            const char *const *extra)
{
    for (size_t i = 0; i < o->nkids; i++) {
        int found = 0;
        for (unsigned k = 0; k < sec->nfields; k++)
            found |= sec->fields[k].key && strcmp(sec->fields[k].key, o->kids[i].key) == 0;
        for (size_t k = 0; extra[k]; k++)
            found |= strcmp(extra[k], o->kids[i].key) == 0;
        ck_assert_msg(found, "%s: key %s is in no table", what, o->kids[i].key);
    }
    for (unsigned k = 0; k < sec->nfields; k++)
        ck_assert_msg(!sec->fields[k].key || tj_get(o, sec->fields[k].key), "%s: no %s", what,
                      sec->fields[k].key);
}

/* A real report: today's keys in today's order, every key from a table,
 * and every label of the sections in the text. */
START_TEST(real_report_shape)
{
    shk_zones_t *reg = shk_zones_new(instance);
    shk_zone_t *z = shk_zone_add(reg, "one", MB, "limit_req");
    shk_zone_t *bz = shk_zone_add(reg, "bus", shk_bus_zone_size(2, 65536), "bus:1");
    shk_zone_t *cz = shk_zone_add(reg, "chan", MB, "chan:2");
    ck_assert_int_eq(shk_zones_create(reg, NULL), SHK_OK);
    shk_bus_t *bus = shk_bus_create(bz, 2, 65536);
    ck_assert_msg(bus != NULL, "%s", shk_last_errmsg());
    shk_shmtx_t m;
    ck_assert_int_eq(shk_zone_shmtx_create(z, &m, "counters"), SHK_OK);
    ck_assert_int_eq(shk_slab_cache(shk_zone_slab(z), 1), SHK_OK);
    ck_assert_ptr_nonnull(shk_slab_alloc(shk_zone_slab(z), 100));
    /* a channel store: 2 channels, 3 messages stored, published by a
     * process that is not joined */
    shk_chan_opts_t co = {.slots = 2, .store_messages = 1};
    shk_chan_t *ch = shk_chan_create(cz, &co);
    ck_assert_msg(ch != NULL, "%s", shk_last_errmsg());
    ck_assert_int_eq(shk_chan_publish(ch, "a", "x", 1, NULL, NULL, NULL), SHK_OK);
    ck_assert_int_eq(shk_chan_publish(ch, "a", "yy", 2, NULL, NULL, NULL), SHK_OK);
    ck_assert_int_eq(shk_chan_publish(ch, "b", "zzz", 3, NULL, NULL, NULL), SHK_OK);
    shk_zone_t *zs[3] = {z, bz, cz};

    char *js = shk_stat_render(zs, 3, instance, SHK_STAT_JSON);
    ck_assert_ptr_nonnull(js);
    tj_t *j = parse_ok("render", js);
    static const char *const doc[] = {"instance", "zones", NULL};
    static const char *const zone[] = {"name", "tag", "size", "kind", "generation", "creator",
        "creator_alive", "slab", "locks", NULL};
    static const char *const slab[] = {"page_size", "pages_total", "pages_free",
        "largest_free_run", "fails", "caches", "cache_pages", "classes", NULL};
    static const char *const cls[] = {"size", "used", "cached", "total", "reqs", "fails", NULL};
    static const char *const lock[] = {"name", "owner", "waiters", "acquired", "contended",
        "sleeps", "recovered", "forced", NULL};
    static const char *const busk[] = {"large", "slots", NULL};
    static const char *const slot[] = {"slot", "pid", "state", "generation", "depth", "high_water",
        "oldest_age_us", "queue_bytes", "sent", "received", "discarded", "rejected", "skipped",
        "stale", "doorbells_rung", "doorbells_coalesced", NULL};
    static const char *const chank[] = {"channels", "wildcard_channels", "subscribers", "stored",
        "stored_bytes", "messages", "published", "delivered", "reclaimed", "expired", "deleted",
        "events_failed", "oldest_age_ms", "slots", NULL};
    static const char *const cslot[] = {"slot", "pid", "epoch", "dead", "subscribers",
        "delivered", "alerts", "alerts_missed", "stale", NULL};
    static const char *const zone_extra[] = {"slab", "locks", "bus", "chan", NULL};
    static const char *const slab_extra[] = {"classes", NULL};
    static const char *const bus_extra[] = {"slots", NULL};
    static const char *const doc_extra[] = {"zones", NULL};
    static const char *const none[] = {NULL};
    keys_in_order("document", j, doc);
    keys_from_table("document", j, &shk_stat_doc_sec, doc_extra);
    for (int i = 0; i < 2; i++) {
        char p[64];
        snprintf(p, sizeof p, "zones.%d", i);
        keys_in_order(p, tj_get(j, p), zone);
        keys_from_table(p, tj_get(j, p), &shk_stat_zone_sec, zone_extra);
        snprintf(p, sizeof p, "zones.%d.slab", i);
        keys_in_order(p, tj_get(j, p), slab);
        keys_from_table(p, tj_get(j, p), &shk_stat_slab_sec, slab_extra);
        snprintf(p, sizeof p, "zones.%d.slab.classes.0", i);
        keys_in_order(p, tj_get(j, p), cls);
        keys_from_table(p, tj_get(j, p), &shk_stat_class_sec, none);
        snprintf(p, sizeof p, "zones.%d.locks.0", i);
        keys_in_order(p, tj_get(j, p), lock);
        keys_from_table(p, tj_get(j, p), &shk_stat_lock_sec, none);
    }
    ck_assert_ptr_null(tj_get(j, "zones.0.bus"));
    keys_in_order("bus", tj_get(j, "zones.1.bus"), busk);
    keys_from_table("bus", tj_get(j, "zones.1.bus"), &shk_stat_bus_sec, bus_extra);
    keys_in_order("slot", tj_get(j, "zones.1.bus.slots.1"), slot);
    keys_from_table("slot", tj_get(j, "zones.1.bus.slots.1"), &shk_stat_slot_sec, none);
    ck_assert_ptr_null(tj_get(j, "zones.1.bus.slots.2"));
    ck_assert_ptr_null(tj_get(j, "zones.0.chan"));
    ck_assert_ptr_null(tj_get(j, "zones.1.chan"));
    keys_in_order("chan", tj_get(j, "zones.2.chan"), chank);
    keys_from_table("chan", tj_get(j, "zones.2.chan"), &shk_stat_chan_sec, bus_extra);
    keys_in_order("chan slot", tj_get(j, "zones.2.chan.slots.1"), cslot);
    keys_from_table("chan slot", tj_get(j, "zones.2.chan.slots.1"), &shk_stat_cslot_sec, none);
    ck_assert_ptr_null(tj_get(j, "zones.2.chan.slots.2"));
    ck_assert(tj_get(j, "zones.2.chan.channels")->num == 2);
    ck_assert(tj_get(j, "zones.2.chan.stored")->num == 3);
    ck_assert(tj_get(j, "zones.2.chan.stored_bytes")->num == 6);
    ck_assert(tj_get(j, "zones.2.chan.published")->num == 3);
    ck_assert(tj_get(j, "zones.2.chan.subscribers")->num == 0);
    tj_free(j);
    free(js);

    char *txt = shk_stat_render(zs, 3, instance, 0);
    ck_assert_ptr_nonnull(txt);
    const shk_stat_section_t *shown[] = {&shk_stat_doc_sec,  &shk_stat_zone_sec,
                                          &shk_stat_slab_sec, &shk_stat_class_sec,
                                          &shk_stat_lock_sec, &shk_stat_bus_sec,
                                          &shk_stat_slot_sec, &shk_stat_chan_sec,
                                          &shk_stat_cslot_sec};
    for (size_t s = 0; s < sizeof shown / sizeof shown[0]; s++)
        for (unsigned i = 0; i < shown[s]->nfields; i++) {
            const shk_stat_field_t *f = &shown[s]->fields[i];
            const char *bit = f->label ? f->label : f->post ? f->post : f->pre;
            if (!(f->flags & SHK_STAT_NOTEXT) && bit)
                ck_assert_msg(strstr(txt, bit), "%s: no \"%s\" in:\n%s", shown[s]->name, bit,
                              txt);
        }
    ck_assert_msg(strstr(txt, "  caches       1 process caches, "), "%s", txt);
    ck_assert_msg(strstr(txt, "\n  locks\n"), "%s", txt);
    ck_assert_msg(strstr(txt, "2 slots, 2 channels (0 wildcard), 0 subscribers, 3 messages stored"),
                  "%s", txt);
    free(txt);
    shk_chan_close(ch);
    shk_shmtx_destroy(&m);
    shk_bus_close(bus);
    shk_zones_free(reg);
}
END_TEST

/* docs/stat.md names every key of every section. */
START_TEST(docs_list_every_key)
{
    char path[PATH_MAX + 32], dir[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", dir, sizeof dir - 1);
    ck_assert(n > 0);
    dir[n] = '\0';
    *strrchr(dir, '/') = '\0'; /* build/<variant>/test */
    snprintf(path, sizeof path, "%s/../../../docs/stat.md", dir);
    FILE *f = fopen(path, "r");
    ck_assert_msg(f != NULL, "%s", path);
    static char doc[65536];
    size_t len = fread(doc, 1, sizeof doc - 1, f);
    fclose(f);
    doc[len] = '\0';
    for (const shk_stat_section_t *const *sp = shk_stat_sections; *sp; sp++)
        for (unsigned i = 0; i < (*sp)->nfields; i++) {
            const shk_stat_field_t *fl = &(*sp)->fields[i];
            char want[80];
            if (!fl->key)
                continue;
            snprintf(want, sizeof want, "`%s`", fl->key);
            ck_assert_msg(strstr(doc, want), "docs/stat.md does not name %s (%s)", want,
                          (*sp)->name);
        }
}
END_TEST

/* ---- damaged parts ------------------------------------------------------------------------ */

/* A lock entry pointing outside the pool and a bus that does not open, on
 * read-only attached handles, and a zone without a slab pool: each part is
 * reported with the reason, the rest as usual. */
START_TEST(damaged_parts_are_reported)
{
    shk_zones_t *reg = shk_zones_new(instance);
    ck_assert_int_eq(shk_zones_set_mapping(reg, SHK_ZONE_NAMED, 0), SHK_OK);
    shk_zone_t *z = shk_zone_add(reg, "dmg", MB, "damaged");
    shk_zone_t *bz = shk_zone_add(reg, "dbus", shk_bus_zone_size(2, 65536), "bus:1");
    ck_assert_int_eq(shk_zones_create(reg, NULL), SHK_OK);
    shk_bus_t *bus = shk_bus_create(bz, 2, 65536);
    ck_assert_ptr_nonnull(bus);
    shk_shmtx_t m;
    ck_assert_int_eq(shk_zone_shmtx_create(z, &m, "counters"), SHK_OK);
    shk_zone_t *a[2] = {shk_zone_attach(instance, "dmg", SHK_ZONE_RDONLY),
                        shk_zone_attach(instance, "dbus", SHK_ZONE_RDONLY)};
    ck_assert(a[0] && a[1]);

    uint64_t far = UINT64_MAX - 7, zero = 0;
    patch("dmg", offsetof(shk_zone_hdr_t, locks) + sizeof(shk_zone_hlock_t) +
                     offsetof(shk_zone_hlock_t, off),
          &far, sizeof far);
    const char *broot = shk_zone_root(bz, "bus");
    ck_assert_ptr_nonnull(broot);
    patch("dbus", (size_t)(broot - (const char *)shk_zone_base(bz)), &zero, sizeof zero);

    char *js = shk_stat_render(a, 2, instance, SHK_STAT_JSON);
    ck_assert_ptr_nonnull(js);
    tj_t *j = parse_ok("render", js);
    ck_assert_str_eq(tj_str(j, "zones.0.locks.0.name"), "slab");
    ck_assert_msg(tj_str(j, "zones.0.locks.1.error") &&
                      strstr(tj_str(j, "zones.0.locks.1.error"), "out of bounds"),
                  "%s", js);
    ck_assert_ptr_null(tj_get(j, "zones.0.locks.1.name"));
    const tj_t *b = tj_get(j, "zones.1.bus");
    ck_assert_msg(b && b->type == TJ_NULL, "%s", js);
    ck_assert_msg(tj_str(j, "zones.1.bus_error") && strstr(tj_str(j, "zones.1.bus_error"), "bus"),
                  "%s", js);
    ck_assert_ptr_nonnull(tj_get(j, "zones.1.slab.classes"));
    tj_free(j);
    free(js);

    char *txt = shk_stat_render(a, 2, instance, 0);
    ck_assert_ptr_nonnull(txt);
    ASSERT_NO_RAW("render", txt);
    ck_assert_msg(strstr(txt, "\n    unreadable: ") && strstr(txt, "out of bounds"), "%s", txt);
    ck_assert_msg(strstr(txt, "\n  bus          unreadable: "), "%s", txt);
    free(txt);

    /* a declared zone not created yet has no slab pool */
    shk_zones_t *later = shk_zones_new(instance);
    shk_zone_t *nz = shk_zone_add(later, "later", MB, NULL);
    js = shk_stat_render(&nz, 1, instance, SHK_STAT_JSON);
    j = parse_ok("render", js);
    b = tj_get(j, "zones.0.slab");
    ck_assert_msg(b && b->type == TJ_NULL && tj_str(j, "zones.0.slab_error"), "%s", js);
    tj_free(j);
    free(js);
    txt = shk_stat_render(&nz, 1, instance, 0);
    ck_assert_msg(strstr(txt, "\n  slab         unreadable: "), "%s", txt);
    free(txt);
    shk_zones_free(later);

    /* arguments */
    ck_assert_ptr_null(shk_stat_render(NULL, 1, instance, 0));
    ck_assert_int_eq(shk_last_error(), SHK_EINVAL);
    ck_assert_ptr_null(shk_stat_render(a, 2, instance, 0x4));
    ck_assert_int_eq(shk_last_error(), SHK_EINVAL);
    ck_assert_ptr_null(shk_stat_render_list(NULL, 1, 0));
    ck_assert_int_eq(shk_last_error(), SHK_EINVAL);
    char *empty = shk_stat_render_list(NULL, 0, SHK_STAT_JSON);
    ck_assert_str_eq(empty, "{\"zones\":[]}\n");
    free(empty);

    shk_zone_detach(a[0]);
    shk_zone_detach(a[1]);
    shk_shmtx_destroy(&m);
    shk_bus_close(bus);
    shk_zones_free(reg);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("stat");
    TCase *tc = tcase_create("stat");
    snprintf(instance, sizeof instance, "stat%ld", (long)getpid());
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_unchecked_fixture(tc, NULL, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, hostile_tag_and_lock_name);
    tcase_add_test(tc, control_characters_in_header_bytes);
    tcase_add_test(tc, hostile_names_in_dev_shm);
    tcase_add_test(tc, escape_rules);
    tcase_add_test(tc, escape_random_strings);
    tcase_add_test(tc, tables_drive_both_outputs);
    tcase_add_test(tc, real_report_shape);
    tcase_add_test(tc, docs_list_every_key);
    tcase_add_test(tc, damaged_parts_are_reported);
    suite_add_tcase(s, tc);
    return tu_run(s);
}
