/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * test_hostile.c: what shmkit does with objects it did not make
 * (docs/untrusted.md). Zones: things planted at a zone's name (a FIFO, a
 * directory, symbolic links, forged and garbage headers, files of another
 * user) as shk_zones_create, shk_zone_attach, shk_zones_list, `shmkit stat`
 * and `shmkit zones` meet them, every call run in a child with a bounded
 * wait so a hang or a crash is a failure, never a stuck suite; zone headers
 * with each field out of range, at attach and changed behind an attached
 * handle's back. The second-user cases run as root, planting with `nobody`
 * through setpriv, and are skipped with the reason printed otherwise.
 */
#include "shk_zone.h"
#include "shk_zone_internal.h"
#include "util_test.h"
#include "util_run.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stddef.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>

#define MB (1024 * 1024)
#define NOBODY_UID 65534u

static char instance[64];
static char logbuf[4096];

static void setup(void)
{
    snprintf(instance, sizeof instance, "h%ld", (long)getpid());
    tu_log_capture(logbuf, sizeof logbuf);
}

/* Remove every entry this test may have left in /dev/shm: ours are
 * shmkit.<instance>.* and shmkit.<instance>-*.*, plus notshmkit.<instance>.*
 * (targets of symbolic links); files, FIFOs, links and directories alike. */
static void teardown(void)
{
    char a[128], b[128], c[128];
    shk_log_set(NULL, NULL, SHK_LOG_ERR);
    snprintf(a, sizeof a, "shmkit.%s.", instance);
    snprintf(b, sizeof b, "shmkit.%s-", instance);
    snprintf(c, sizeof c, "notshmkit.%s.", instance);
    DIR *d = opendir("/dev/shm");
    for (struct dirent *e; d && (e = readdir(d));) {
        if (strncmp(e->d_name, a, strlen(a)) && strncmp(e->d_name, b, strlen(b)) &&
            strncmp(e->d_name, c, strlen(c)))
            continue;
        char path[300];
        snprintf(path, sizeof path, "/dev/shm/%s", e->d_name);
        if (unlink(path) != 0 && errno == EISDIR)
            rmdir(path);
    }
    if (d)
        closedir(d);
}

static void zpath(char *buf, size_t cap, const char *inst, const char *zone)
{
    snprintf(buf, cap, "/dev/shm/shmkit.%s.%s", inst, zone);
}

/* ---- bounded calls ------------------------------------------------------------
 *
 * A call that may hang or crash on a hostile object runs in a child; the
 * parent waits at most bound_ms() for its outcome (status, message, log) and
 * fails the test if it hangs (the child is killed) or dies of a signal. */

typedef struct {
    int rc;
    char msg[1024];
    char log[4096];
} outcome_t;

static int bound_ms(void)
{
    return tu_valgrind() ? 30000 : 5000;
}

static void bounded(const char *what, int (*fn)(void *arg, char *msg, size_t cap), void *arg,
                    outcome_t *out)
{
    int p[2];
    ck_assert_int_eq(pipe(p), 0);
    pid_t pid = tu_fork_raw();
    if (pid == 0) {
        outcome_t o;
        close(p[0]);
        memset(&o, 0, sizeof o);
        logbuf[0] = '\0';
        o.rc = fn(arg, o.msg, sizeof o.msg);
        memcpy(o.log, logbuf, sizeof o.log - 1); /* logbuf is NUL-filled past its end */
        for (size_t off = 0; off < sizeof o;) {
            ssize_t w = write(p[1], (char *)&o + off, sizeof o - off);
            if (w <= 0)
                tu_exit(3);
            off += (size_t)w;
        }
        close(p[1]);
        tu_exit(0);
    }
    close(p[1]);
    memset(out, 0, sizeof *out);
    size_t got = 0;
    uint64_t end = shk_time_ms() + (uint64_t)bound_ms();
    while (got < sizeof *out) {
        uint64_t now = shk_time_ms();
        struct pollfd pf = {p[0], POLLIN, 0};
        if (now >= end || poll(&pf, 1, (int)(end - now)) == 0) {
            kill(pid, SIGKILL);
            tu_wait(pid);
            close(p[0]);
            ck_abort_msg("%s: no answer within %d ms (it hangs)", what, bound_ms());
        }
        ssize_t k = read(p[0], (char *)out + got, sizeof *out - got);
        if (k <= 0)
            break;
        got += (size_t)k;
    }
    close(p[0]);
    int st = tu_wait(pid);
    ck_assert_msg(st == 0 && got == sizeof *out, "%s: the child died (status %d%s)", what, st,
                  st > 128 ? ", killed by a signal" : "");
}

/* shk_zones_create of one named zone `arg` (1 MiB, mode 0600) of instance,
 * then shk_zones_free; the message is the failure's, or "created". */
static int op_create(void *arg, char *msg, size_t cap)
{
    shk_zones_t *reg = shk_zones_new(instance);
    shk_zone_t *z = shk_zone_add(reg, arg, MB, NULL);
    if (!z || shk_zone_set_kind(z, SHK_ZONE_NAMED, 0) != SHK_OK)
        return 99;
    int rc = shk_zones_create(reg, NULL);
    snprintf(msg, cap, "%s", rc == SHK_OK ? "created" : shk_last_errmsg());
    if (rc == SHK_OK && shk_zone_creator(z) != getpid())
        rc = 98;
    shk_zones_free(reg);
    return rc;
}

static int op_attach(const char *zone, unsigned flags, char *msg, size_t cap)
{
    shk_zone_t *z = shk_zone_attach(instance, zone, flags);
    int rc = z ? SHK_OK : shk_last_error();
    snprintf(msg, cap, "%s", z ? "attached" : shk_last_errmsg());
    shk_zone_detach(z);
    return rc;
}

static int op_attach_ro(void *arg, char *msg, size_t cap)
{
    return op_attach(arg, SHK_ZONE_RDONLY, msg, cap);
}

static int op_attach_rw(void *arg, char *msg, size_t cap)
{
    return op_attach(arg, 0, msg, cap);
}

/* shk_zones_list(instance): the message lists the zones, space-separated. */
static int op_list(void *arg, char *msg, size_t cap)
{
    (void)arg;
    shk_zone_name_t *l;
    unsigned n;
    int rc = shk_zones_list(instance, &l, &n);
    msg[0] = '\0';
    for (unsigned i = 0; rc == SHK_OK && i < n; i++)
        snprintf(msg + strlen(msg), cap - strlen(msg), "%s ", l[i].zone);
    shk_zones_list_free(l);
    return rc;
}

/* Run argv with stdout and stderr into out; a bounded wait: fails the test
 * if it does not end in time. Returns the exit status. */
static int run_bounded(char *const argv[], char *out, size_t outsz)
{
    int st = tu_run_capture(argv, bound_ms(), out, outsz, out, outsz);
    ck_assert_msg(st != -1, "%s %s: no end within %d ms (it hangs)", argv[0], argv[1], bound_ms());
    return st;
}

static void tool_path(char *buf, size_t sz)
{
    snprintf(buf, sz, "%s/shmkit", tu_build_dir());
}

/* `shmkit stat --instance <instance>` and `shmkit zones` end in time, and
 * their output holds `want` (for each). */
static void tools_refuse(const char *want)
{
    char tool[PATH_MAX + 16], out[65536];
    tool_path(tool, sizeof tool);
    char *sargv[] = {tool, "stat", "--instance", instance, NULL};
    ck_assert_int_eq(run_bounded(sargv, out, sizeof out), 1);
    ck_assert_msg(strstr(out, want), "shmkit stat: no \"%s\" in: %s", want, out);
    char *zargv[] = {tool, "zones", NULL};
    ck_assert_int_eq(run_bounded(zargv, out, sizeof out), 0);
    ck_assert_msg(strstr(out, want), "shmkit zones: no \"%s\" in: %s", want, out);
}

/* What every caller must do with the thing planted at zone "one": create
 * refuses it (SHK_EEXIST, message holding want_create), attach refuses it
 * both ways (attach_rc, message holding want_attach), the listing names it,
 * and the tools end with the reason. */
static void refused_everywhere(const char *want_create, int attach_rc, const char *want_attach)
{
    outcome_t o;
    bounded("shk_zones_create", op_create, "one", &o);
    ck_assert_msg(o.rc == SHK_EEXIST, "create: %s (%d)", o.msg, o.rc);
    ck_assert_msg(strstr(o.msg, want_create), "create: no \"%s\" in \"%s\"", want_create, o.msg);
    bounded("shk_zone_attach ro", op_attach_ro, "one", &o);
    ck_assert_msg(o.rc == attach_rc, "attach ro: %s (%d)", o.msg, o.rc);
    ck_assert_msg(strstr(o.msg, want_attach), "attach ro: no \"%s\" in \"%s\"", want_attach,
                  o.msg);
    bounded("shk_zone_attach rw", op_attach_rw, "one", &o);
    ck_assert_msg(o.rc == attach_rc, "attach rw: %s (%d)", o.msg, o.rc);
    ck_assert_msg(strstr(o.msg, want_attach), "attach rw: no \"%s\" in \"%s\"", want_attach,
                  o.msg);
    bounded("shk_zones_list", op_list, NULL, &o);
    ck_assert_int_eq(o.rc, SHK_OK);
    ck_assert_msg(strstr(o.msg, "one "), "listing: \"%s\"", o.msg);
    tools_refuse(want_attach);
}

static mode_t ltype(const char *path)
{
    struct stat st;
    ck_assert_msg(lstat(path, &st) == 0, "%s: %s", path, strerror(errno));
    return st.st_mode & S_IFMT;
}

/* ---- special files at a zone's name ------------------------------------------------ */

START_TEST(fifo_at_zone_name)
{
    char path[256], want[512];
    zpath(path, sizeof path, instance, "one");
    ck_assert_int_eq(mkfifo(path, 0600), 0);
    snprintf(want, sizeof want, "%s is a FIFO, not a zone: refused", path);
    refused_everywhere(want, SHK_ECORRUPT, want);
    ck_assert_uint_eq(ltype(path), S_IFIFO); /* left alone */
}
END_TEST

START_TEST(directory_at_zone_name)
{
    char path[256], want[512];
    zpath(path, sizeof path, instance, "one");
    ck_assert_int_eq(mkdir(path, 0700), 0);
    snprintf(want, sizeof want, "%s is a directory, not a zone: refused", path);
    refused_everywhere(want, SHK_ECORRUPT, want);
    ck_assert_uint_eq(ltype(path), S_IFDIR);
}
END_TEST

/* A named zone `zone` of instance `inst`, created in this process. */
static shk_zones_t *real_zone(const char *inst, const char *zone)
{
    shk_zones_t *reg = shk_zones_new(inst);
    ck_assert_ptr_nonnull(reg);
    shk_zone_t *z = shk_zone_add(reg, zone, MB, "real");
    ck_assert_ptr_nonnull(z);
    ck_assert_int_eq(shk_zone_set_kind(z, SHK_ZONE_NAMED, 0), SHK_OK);
    ck_assert_int_eq(shk_zones_create(reg, NULL), SHK_OK);
    return reg;
}

START_TEST(symlink_at_zone_name)
{
    char path[256], want[512], other[80], target[256], file[256];
    zpath(path, sizeof path, instance, "one");
    snprintf(want, sizeof want, "%s is a symbolic link, not a zone: refused", path);

    /* to a real zone of ours (another instance): never followed */
    snprintf(other, sizeof other, "%s-t", instance);
    shk_zones_t *reg = real_zone(other, "real");
    zpath(target, sizeof target, other, "real");
    ck_assert_int_eq(symlink(target, path), 0);
    refused_everywhere(want, SHK_ECORRUPT, want);
    ck_assert_uint_eq(ltype(path), S_IFLNK);
    shk_zone_t *z = shk_zone_attach(other, "real", SHK_ZONE_RDONLY);
    ck_assert_msg(z != NULL, "%s", shk_last_errmsg()); /* the target is untouched */
    shk_zone_detach(z);
    shk_zones_free(reg);
    ck_assert_int_eq(unlink(path), 0);

    /* to a plain file of ours, and dangling */
    snprintf(file, sizeof file, "/dev/shm/notshmkit.%s.file", instance);
    int fd = open(file, O_WRONLY | O_CREAT | O_EXCL, 0600);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, "mine", 4), 4);
    close(fd);
    ck_assert_int_eq(symlink(file, path), 0);
    refused_everywhere(want, SHK_ECORRUPT, want);
    struct stat st;
    ck_assert_int_eq(stat(file, &st), 0);
    ck_assert_int_eq(st.st_size, 4);
    ck_assert_int_eq(unlink(file), 0);
    refused_everywhere(want, SHK_ECORRUPT, want); /* now dangling */
    ck_assert_uint_eq(ltype(path), S_IFLNK);
}
END_TEST

/* ---- forged and garbage headers of ours ---------------------------------------------- */

/* The bytes of a real named zone of 1 MiB, with its instance and name
 * rewritten to `instance` and `zone`, its creator to `creator`. */
static char *zone_image(const char *zone, pid_t creator, size_t *len)
{
    char other[80], path[256];
    snprintf(other, sizeof other, "%s-img", instance);
    shk_zones_t *reg = real_zone(other, "img");
    zpath(path, sizeof path, other, "img");
    int fd = open(path, O_RDONLY);
    ck_assert_int_ge(fd, 0);
    char *img = malloc(MB);
    ck_assert_ptr_nonnull(img);
    ck_assert_int_eq(pread(fd, img, MB, 0), MB);
    close(fd);
    shk_zones_free(reg);
    shk_zone_hdr_t *h = (shk_zone_hdr_t *)img;
    memset(h->instance, 0, sizeof h->instance);
    strcpy(h->instance, instance);
    memset(h->name, 0, sizeof h->name);
    strcpy(h->name, zone);
    h->creator = (int32_t)creator;
    *len = MB;
    return img;
}

static void put_file(const char *path, const void *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
    ck_assert_msg(fd >= 0, "%s: %s", path, strerror(errno));
    ck_assert_int_eq(write(fd, data, len), (ssize_t)len);
    close(fd);
}

/* A pid that is certainly dead: a child that exited and was reaped. */
static pid_t dead_pid(void)
{
    pid_t pid = fork();
    ck_assert_int_ne(pid, -1);
    if (pid == 0)
        _exit(0);
    ck_assert_int_eq(tu_wait(pid), 0);
    return pid;
}

/* A zone's header names its creator. While that pid is alive and maps the
 * object, it is a server of this instance as far as anyone can tell: the
 * object is refused, and the message says what to remove. A live pid that
 * does not map it got the dead creator's number (pids are reused): the
 * object is stale, as it is once no process has the number. */
START_TEST(forged_header_naming_a_live_pid)
{
    char path[256], want[512];
    size_t len;
    tu_pipe_t go, mapped, done;
    tu_pipe(&go);
    tu_pipe(&mapped);
    tu_pipe(&done);
    zpath(path, sizeof path, instance, "one");
    pid_t live = fork(); /* alive, mapping the object, no server of this instance */
    ck_assert_int_ne(live, -1);
    if (live == 0) {
        tu_await(&go);
        int fd = open(path, O_RDONLY);
        void *m = fd < 0 ? MAP_FAILED : mmap(NULL, 4096, PROT_READ, MAP_SHARED, fd, 0);
        if (m == MAP_FAILED)
            _exit(2);
        tu_signal(&mapped);
        tu_await(&done);
        _exit(0);
    }
    char *img = zone_image("one", live, &len);
    put_file(path, img, len);
    free(img);
    tu_signal(&go);
    ck_assert_int_eq(tu_await(&mapped), 0);

    outcome_t o;
    bounded("shk_zones_create", op_create, "one", &o);
    ck_assert_int_eq(o.rc, SHK_EEXIST);
    snprintf(want, sizeof want, "its creator (pid %d) is alive", (int)live);
    ck_assert_msg(strstr(o.msg, want), "%s", o.msg);
    /* the message tells the admin what to remove */
    snprintf(want, sizeof want, "remove %s", path);
    ck_assert_msg(strstr(o.msg, want), "%s", o.msg);
    ck_assert_uint_eq(ltype(path), S_IFREG);
    tu_signal(&done);
    ck_assert_int_eq(tu_wait(live), 0);

    /* the same object naming a live process that does not map it: the
     * creator's number given to another process, the object stale */
    ck_assert_int_eq(unlink(path), 0);
    pid_t other = fork();
    ck_assert_int_ne(other, -1);
    if (other == 0) {
        tu_await(&go);
        _exit(0);
    }
    img = zone_image("one", other, &len);
    put_file(path, img, len);
    free(img);
    bounded("shk_zones_create", op_create, "one", &o);
    ck_assert_msg(o.rc == SHK_OK, "%s", o.msg);
    snprintf(want, sizeof want, "pid %d, its creator's number, belongs to a process that does not map it",
             (int)other);
    ck_assert_msg(strstr(o.log, "removing stale shared memory object") && strstr(o.log, want),
                  "%s", o.log);
    tu_signal(&go);
    ck_assert_int_eq(tu_wait(other), 0);

    /* its creator gone: stale and replaced */
    img = zone_image("one", dead_pid(), &len);
    put_file(path, img, len);
    free(img);
    bounded("shk_zones_create", op_create, "one", &o);
    ck_assert_msg(o.rc == SHK_OK, "%s", o.msg);
    ck_assert_msg(strstr(o.log, "removing stale shared memory object") &&
                      strstr(o.log, "its creator is gone"),
                  "%s", o.log);
    tu_pipe_close(&go);
    tu_pipe_close(&mapped);
    tu_pipe_close(&done);
}
END_TEST

START_TEST(garbage_headers_of_ours)
{
    char path[256];
    size_t len;
    outcome_t o;
    zpath(path, sizeof path, instance, "one");

    /* not a zone at all: ours, so nothing can be using it as one: replaced */
    char *junk = malloc(16 * 4096);
    ck_assert_ptr_nonnull(junk);
    memset(junk, 0x5a, 16 * 4096);
    put_file(path, junk, 16 * 4096);
    bounded("shk_zones_create", op_create, "one", &o);
    ck_assert_msg(o.rc == SHK_OK, "%s", o.msg);
    ck_assert_msg(strstr(o.log, "removing stale shared memory object") &&
                      strstr(o.log, "no zone header"),
                  "%s", o.log);
    free(junk);
    put_file(path, "", 0); /* empty */
    bounded("shk_zones_create", op_create, "one", &o);
    ck_assert_msg(o.rc == SHK_OK, "%s", o.msg);
    ck_assert_msg(strstr(o.log, "too small for a zone header"), "%s", o.log);

    /* a header naming another zone: not this zone, whoever its creator is */
    char *img = zone_image("two", getpid(), &len);
    put_file(path, img, len);
    bounded("shk_zones_create", op_create, "one", &o);
    ck_assert_msg(o.rc == SHK_OK, "%s", o.msg);
    ck_assert_msg(strstr(o.log, "its header names zone \"two\""), "%s", o.log);
    free(img);

    /* another layout version: some other shmkit may be using it: refused,
     * even though the creator field (as this version reads it) is dead */
    img = zone_image("one", dead_pid(), &len);
    ((shk_zone_hdr_t *)img)->version = SHK_ZONE_VERSION + 1;
    put_file(path, img, len);
    bounded("shk_zones_create", op_create, "one", &o);
    ck_assert_int_eq(o.rc, SHK_EEXIST);
    ck_assert_msg(strstr(o.msg, "layout version 2 (this library reads 1)") &&
                      strstr(o.msg, path),
                  "%s", o.msg);
    ck_assert_uint_eq(ltype(path), S_IFREG);
    free(img);
}
END_TEST

/* ---- two servers and one stale object ------------------------------------------------- */

typedef struct {
    tu_pipe_t go, rc, done;
} racer_t;

/* A child racing for zone "race": waits for the start, creates it, reports
 * its status, and keeps the zone until told to end. */
static int racer(void *arg)
{
    racer_t *r = arg;
    if (tu_await(&r->go) != 0)
        return 1;
    shk_zones_t *reg = shk_zones_new(instance);
    shk_zone_t *z = shk_zone_add(reg, "race", MB, NULL);
    shk_zone_set_kind(z, SHK_ZONE_NAMED, 0);
    int rc = shk_zones_create(reg, NULL);
    unsigned char b = (unsigned char)-rc;
    TU_CHECK(write(r->rc.wr, &b, 1) == 1, "write");
    tu_await(&r->done);
    shk_zones_free(reg);
    return 0;
}

START_TEST(two_servers_one_stale_object)
{
    char path[256];
    size_t len;
    zpath(path, sizeof path, instance, "race");
    long rounds = tu_scale(60, 10), wins[2] = {0, 0};
    for (long round = 0; round < rounds; round++) {
        char *img = zone_image("race", dead_pid(), &len);
        put_file(path, img, len);
        free(img);
        racer_t r[2];
        pid_t pid[2];
        for (int k = 0; k < 2; k++) {
            tu_pipe(&r[k].go);
            tu_pipe(&r[k].rc);
            tu_pipe(&r[k].done);
            pid[k] = tu_fork(racer, &r[k]);
        }
        tu_signal(&r[0].go);
        tu_signal(&r[1].go);
        int ok = 0;
        for (int k = 0; k < 2; k++) {
            unsigned char b;
            ck_assert_int_eq(read(r[k].rc.rd, &b, 1), 1);
            int rc = -(int)b;
            ck_assert_msg(rc == SHK_OK || rc == SHK_EEXIST, "round %ld: racer %d: %d", round, k,
                          rc);
            if (rc == SHK_OK) {
                ok++;
                wins[k]++;
            }
        }
        /* both holding what they made: exactly one got the name */
        ck_assert_msg(ok == 1, "round %ld: %d of 2 servers created the zone", round, ok);
        for (int k = 0; k < 2; k++) {
            tu_signal(&r[k].done);
            tu_wait_ok(pid[k]);
            tu_pipe_close(&r[k].go);
            tu_pipe_close(&r[k].rc);
            tu_pipe_close(&r[k].done);
        }
        ck_assert_int_ne(access(path, F_OK), 0); /* the winner removed it */
    }
    printf("two_servers_one_stale_object: %ld rounds, wins %ld / %ld\n", rounds, wins[0], wins[1]);
}
END_TEST

/* The admin removed a live zone's object and someone planted a FIFO at the
 * name: freeing the registry must not unlink what is not its own. */
START_TEST(release_leaves_a_foreign_object)
{
    char path[256];
    shk_zones_t *reg = real_zone(instance, "one");
    zpath(path, sizeof path, instance, "one");
    ck_assert_int_eq(unlink(path), 0);
    ck_assert_int_eq(mkfifo(path, 0600), 0);
    shk_zones_free(reg);
    ck_assert_uint_eq(ltype(path), S_IFIFO);
    ck_assert_msg(strstr(logbuf, "is no longer the object of shared memory zone \"one\""), "%s",
                  logbuf);
}
END_TEST

/* ---- header fields out of range ------------------------------------------------------- */

typedef struct {
    const char *what; /* field, as the message names it */
    size_t off;       /* where the patch goes in the header */
    size_t len;
    uint64_t val;     /* written as len bytes (little-endian), unless bytes */
    const char *bytes; /* NUL-padded to len, or fill_x */
    const char *want; /* substring of the message */
} patch_t;

#define HOFF(f) offsetof(shk_zone_hdr_t, f)
#define HLEN(f) sizeof(((shk_zone_hdr_t *)0)->f)
#define PATCH(f, v, want) {#f, HOFF(f), HLEN(f), (uint64_t)(v), NULL, want}
#define PATCHB(f, b, want) {#f, HOFF(f), HLEN(f), 0, b, want}

/* bytes: the whole field 'x', no NUL anywhere */
static const char fill_x[] = "(unterminated)";

static void apply(int fd, const patch_t *p)
{
    char b[64];
    ck_assert_uint_le(p->len, sizeof b);
    if (p->bytes == fill_x) {
        memset(b, 'x', sizeof b);
    } else if (p->bytes) {
        memset(b, 0, sizeof b);
        ck_assert_uint_lt(strlen(p->bytes), p->len);
        memcpy(b, p->bytes, strlen(p->bytes));
    } else {
        uint64_t v = p->val;
        memcpy(b, &v, p->len); /* little-endian: the low bytes */
    }
    ck_assert_int_eq(pwrite(fd, b, p->len, (off_t)p->off), (ssize_t)p->len);
}

/* The zone "mut" with a data root, a named root and two more locks. */
static shk_zones_t *rich_zone(shk_zone_t **out)
{
    shk_zones_t *reg = shk_zones_new(instance);
    shk_zone_t *z = shk_zone_add(reg, "mut", MB, "rich");
    ck_assert_int_eq(shk_zone_set_kind(z, SHK_ZONE_NAMED, 0), SHK_OK);
    ck_assert_int_eq(shk_zones_create(reg, NULL), SHK_OK);
    shk_shmtx_t m;
    ck_assert_int_eq(shk_zone_shmtx_create(z, &m, "alpha"), SHK_OK);
    shk_shmtx_destroy(&m);
    ck_assert_int_eq(shk_zone_shmtx_create(z, &m, "beta"), SHK_OK);
    shk_shmtx_destroy(&m);
    void *d = shk_slab_calloc(shk_zone_slab(z), 128);
    ck_assert_int_eq(shk_zone_set_data(z, d), SHK_OK);
    ck_assert_int_eq(shk_zone_root_set(z, "bus", shk_slab_calloc(shk_zone_slab(z), 64)), SHK_OK);
    *out = z;
    return reg;
}

START_TEST(corrupt_header_fields_at_attach)
{
    shk_zone_t *z;
    shk_zones_t *reg = rich_zone(&z);
    const shk_zone_hdr_t *h = shk_zone_base(z);
    uint64_t ss = h->slab_size, ps = h->page_size;
    uint64_t l1 = SHK_READ_ONCE(h->locks[1].off);
    char path[256];
    zpath(path, sizeof path, instance, "mut");

    const patch_t patches[] = {
        PATCH(magic, 0x1234, "bad magic 0x1234"),
        PATCH(version, 9, "layout version 9"),
        PATCH(hdr_size, 8, "recorded size 8 does not match"),
        PATCH(size, 2 * MB, "recorded size 2097152 but the object holds 1048576"),
        PATCH(page_size, 65536, "page_size 65536"),
        PATCH(slab_off, 2 * ps, "slab_off"),
        PATCH(slab_off, UINT64_MAX - ps + 1, "slab_off"),
        PATCH(slab_size, ss + ps, "slab_size"),
        PATCH(slab_size, 0, "slab_size"),
        PATCH(generation, 0, "generation 0"),
        PATCH(creator, 0, "creator 0"),
        PATCH(creator, 0xfffffffb, "creator -5"),
        PATCH(kind, 7, "kind 7"),
        PATCHB(instance, fill_x, "instance is not NUL-terminated"),
        PATCHB(name, fill_x, "name is not NUL-terminated"),
        PATCHB(tag, fill_x, "tag is not NUL-terminated"),
        PATCHB(tag, "\x1b[2J", "tag holds a control character"),
        PATCHB(tag, "", "tag is empty"),
        PATCH(data_off, ss, "data_off"),
        PATCH(data_off, UINT64_MAX, "data_off"),
        PATCH(roots[0].off, ss + 100, "roots[0].off"),
        PATCH(roots[0].off, UINT64_MAX - 3, "roots[0].off"),
        PATCHB(roots[0].key, fill_x, "roots[0].key is not NUL-terminated"),
        PATCH(nlocks, 0xffffffffu, "nlocks 4294967295"),
        PATCH(nlocks, 0, "nlocks 0"),
        PATCH(nlocks, SHK_ZONE_MAX_LOCKS + 1, "nlocks 33"),
        PATCH(locks[1].off, ss, "locks[1].off"),
        PATCH(locks[1].off, ss - 8, "locks[1].off"),
        PATCH(locks[1].off, UINT64_MAX - 7, "locks[1].off"),
        PATCH(locks[1].off, 0, "locks[1].off"),
        PATCH(locks[1].off, l1 + 8, "locks[1].off"),
        PATCH(locks[2].off, l1 + 1, "locks[2].off"),
        PATCHB(locks[1].name, fill_x, "locks[1].name is not NUL-terminated"),
        PATCHB(locks[2].name, "", "locks[2].name is empty"),
        PATCH(locks[0].off, l1, "locks[0]"),
        PATCHB(locks[0].name, "alpha", "locks[0]"),
    };
    char *orig = malloc(4096);
    ck_assert_ptr_nonnull(orig);
    int fd = open(path, O_RDWR);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(pread(fd, orig, 4096, 0), 4096);
    for (size_t i = 0; i < sizeof patches / sizeof patches[0]; i++) {
        const patch_t *p = &patches[i];
        char what[128];
        outcome_t o;
        apply(fd, p);
        snprintf(what, sizeof what, "attach with %s patched (case %zu)", p->what, i);
        bounded(what, op_attach_ro, "mut", &o);
        ck_assert_msg(o.rc == SHK_ECORRUPT, "%s: %s (%d)", what, o.msg, o.rc);
        ck_assert_msg(strstr(o.msg, p->want), "%s: no \"%s\" in \"%s\"", what, p->want, o.msg);
        ck_assert_msg(strstr(o.msg, "shared memory zone \"mut\""), "%s: %s", what, o.msg);
        ck_assert_int_eq(pwrite(fd, orig, 4096, 0), 4096);
    }
    /* restored: attaches again */
    outcome_t o;
    bounded("attach restored", op_attach_ro, "mut", &o);
    ck_assert_msg(o.rc == SHK_OK, "%s", o.msg);
    close(fd);
    free(orig);
    shk_zones_free(reg);
}
END_TEST

/* In a child: attach "mut" read-only, then damage its header through the
 * file behind the handle's back, and use every accessor. None may read
 * outside the mapping or a misaligned lock record. */
static int op_accessors_after_damage(void *arg, char *msg, size_t cap)
{
    const char *path = arg;
    shk_zone_t *z = shk_zone_attach(instance, "mut", SHK_ZONE_RDONLY);
    if (!z) {
        snprintf(msg, cap, "attach: %s", shk_last_errmsg());
        return 1;
    }
    const char *base = shk_zone_base(z), *end = base + shk_zone_size(z);
    const shk_zone_hdr_t *h = (const void *)base;
    uint64_t l1 = SHK_READ_ONCE(h->locks[1].off);
    int fd = open(path, O_RDWR);
    if (fd < 0)
        return 2;
    struct {
        size_t off, len;
        uint64_t val;
    } hits[] = {
        {HOFF(slab_size), 8, UINT64_MAX / 2}, /* the bounds the handle was given stay */
        {HOFF(slab_off), 8, 0},
        {HOFF(nlocks), 4, 0xffffffffu},
        {HOFF(locks[1].off), 8, UINT64_MAX / 2},
        {HOFF(locks[2].off), 8, l1 + 8},
        {HOFF(locks[3].off), 8, (uint64_t)MB * 64},
        {HOFF(data_off), 8, (uint64_t)MB * 64},
        {HOFF(roots[0].off), 8, UINT64_MAX - 1},
    };
    for (size_t i = 0; i < sizeof hits / sizeof hits[0]; i++)
        if (pwrite(fd, &hits[i].val, hits[i].len, (off_t)hits[i].off) != (ssize_t)hits[i].len)
            return 3;
    close(fd);
    unsigned n = shk_zone_locks(z);
    if (n > SHK_ZONE_MAX_LOCKS) {
        snprintf(msg, cap, "shk_zone_locks says %u", n);
        return 4;
    }
    int bad = 0;
    for (unsigned i = 0; i <= n; i++) {
        shk_zone_lock_t li;
        int rc = shk_zone_lock_info(z, i, &li);
        if (rc != SHK_OK && rc != SHK_ECORRUPT && rc != SHK_ENOENT)
            return 5;
        if (i == 1 || i == 2 || i == 3)
            bad += rc == SHK_ECORRUPT;
    }
    const char *d = shk_zone_data(z), *r = shk_zone_root(z, "bus");
    if ((d && (d < base || d >= end)) || (r && (r < base || r >= end))) {
        snprintf(msg, cap, "a pointer outside the mapping");
        return 6;
    }
    snprintf(msg, cap, "locks %u, %d refused, data %s, root %s", n, bad, d ? "set" : "NULL",
             r ? "set" : "NULL");
    shk_zone_detach(z);
    return bad == 3 && !d && !r ? SHK_OK : 7;
}

START_TEST(accessors_after_header_damage)
{
    shk_zone_t *z;
    shk_zones_t *reg = rich_zone(&z);
    char path[256];
    zpath(path, sizeof path, instance, "mut");
    char *orig = malloc(4096);
    int fd = open(path, O_RDWR);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(pread(fd, orig, 4096, 0), 4096);
    outcome_t o;
    bounded("accessors after damage", op_accessors_after_damage, path, &o);
    ck_assert_int_eq(pwrite(fd, orig, 4096, 0), 4096);
    close(fd);
    free(orig);
    ck_assert_msg(o.rc == SHK_OK, "%s (%d)", o.msg, o.rc);
    shk_zones_free(reg);
}
END_TEST

/* ---- a second user ---------------------------------------------------------------------- */

/* Why the second-user test cannot run here, or NULL. */
static const char *no_second_user(void)
{
    struct passwd *pw = getpwnam("nobody");
    if (geteuid() != 0)
        return "not root (it acts as nobody through setpriv)";
    if (!pw || pw->pw_uid != NOBODY_UID)
        return "no user nobody with uid 65534";
    if (access("/usr/bin/setpriv", X_OK) != 0)
        return "no /usr/bin/setpriv (util-linux)";
    return NULL;
}

/* Run argv (a command and its arguments) as nobody, bounded; 0 expected. */
static void as_nobody(const char *const *cmd)
{
    char *argv[16] = {"/usr/bin/setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"};
    int n = 4;
    for (; *cmd && n < 15; cmd++)
        argv[n++] = (char *)*cmd;
    argv[n] = NULL;
    char out[4096];
    int st = run_bounded(argv, out, sizeof out);
    ck_assert_msg(st == 0, "as nobody: %s %s: status %d: %s", argv[4], argv[5], st, out);
}

static void owned_by_nobody(const char *path, mode_t type)
{
    struct stat st;
    ck_assert_int_eq(lstat(path, &st), 0);
    ck_assert_uint_eq(st.st_uid, NOBODY_UID);
    ck_assert_uint_eq(st.st_mode & S_IFMT, type);
}

START_TEST(second_user_plants_at_the_names)
{
    const char *why = no_second_user();
    if (why) {
        printf("test_hostile: second_user_plants_at_the_names skipped: %s\n", why);
        return;
    }
    char path[256], img_file[256], want[512];
    size_t len;
    outcome_t o;

    /* nobody's junk file at "one" */
    zpath(path, sizeof path, instance, "one");
    as_nobody((const char *[]){"/bin/sh", "-c", "echo junk > \"$0\"", path, NULL});
    owned_by_nobody(path, S_IFREG);
    snprintf(want, sizeof want, "%s is owned by uid 65534, not by uid 0", path);
    refused_everywhere(want, SHK_EPERM, want);
    owned_by_nobody(path, S_IFREG); /* root removed nothing */
    ck_assert_int_eq(unlink(path), 0);

    /* nobody's FIFO */
    as_nobody((const char *[]){"/usr/bin/mkfifo", "-m", "0666", path, NULL});
    owned_by_nobody(path, S_IFIFO);
    snprintf(want, sizeof want, "%s is a FIFO, not a zone: refused", path);
    refused_everywhere(want, SHK_ECORRUPT, want);
    owned_by_nobody(path, S_IFIFO);
    ck_assert_int_eq(unlink(path), 0);

    /* nobody's forged headers: naming a dead pid (old code took it for
     * stale and root removed it), and naming a live one (pid 1) */
    pid_t creators[2] = {dead_pid(), 1};
    for (int k = 0; k < 2; k++) {
        char *img = zone_image("one", creators[k], &len);
        snprintf(img_file, sizeof img_file, "/tmp/shmkit-hostile-%ld.img", (long)getpid());
        unlink(img_file);
        int fd = open(img_file, O_WRONLY | O_CREAT | O_EXCL, 0644);
        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(write(fd, img, len), (ssize_t)len);
        close(fd);
        free(img);
        as_nobody((const char *[]){"/bin/cp", img_file, path, NULL});
        unlink(img_file);
        owned_by_nobody(path, S_IFREG);
        snprintf(want, sizeof want, "%s is owned by uid 65534, not by uid 0", path);
        refused_everywhere(want, SHK_EPERM, want);
        bounded("shk_zones_create", op_create, "one", &o);
        snprintf(want, sizeof want, "remove it");
        ck_assert_msg(strstr(o.msg, want), "%s", o.msg);
        owned_by_nobody(path, S_IFREG);
        ck_assert_int_eq(unlink(path), 0);
    }

    /* a symbolic link of ours to nobody's file */
    char file[256];
    snprintf(file, sizeof file, "/dev/shm/notshmkit.%s.theirs", instance);
    as_nobody((const char *[]){"/bin/sh", "-c", "echo theirs > \"$0\"", file, NULL});
    ck_assert_int_eq(symlink(file, path), 0);
    snprintf(want, sizeof want, "%s is a symbolic link, not a zone: refused", path);
    refused_everywhere(want, SHK_ECORRUPT, want);
    owned_by_nobody(file, S_IFREG);
    ck_assert_int_eq(unlink(path), 0);

    /* and the other way round: nobody's tool on root's zone (mode 0644, so
     * the kernel would let it read) refuses it by its owner */
    shk_zones_t *reg = shk_zones_new(instance);
    shk_zone_t *z = shk_zone_add(reg, "one", MB, NULL);
    ck_assert_int_eq(shk_zone_set_kind(z, SHK_ZONE_NAMED, 0644), SHK_OK);
    ck_assert_int_eq(shk_zones_create(reg, NULL), SHK_OK);
    char tool[PATH_MAX + 16], out[8192];
    tool_path(tool, sizeof tool);
    char *argv[] = {"/usr/bin/setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                    tool, "stat", "--instance", instance, NULL};
    ck_assert_int_eq(run_bounded(argv, out, sizeof out), 1);
    snprintf(want, sizeof want, "%s is owned by uid 0, not by uid 65534", path);
    ck_assert_msg(strstr(out, want), "%s", out);
    shk_zones_free(reg);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("hostile");
    TCase *tc = tcase_create("zones");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, fifo_at_zone_name);
    tcase_add_test(tc, directory_at_zone_name);
    tcase_add_test(tc, symlink_at_zone_name);
    tcase_add_test(tc, forged_header_naming_a_live_pid);
    tcase_add_test(tc, garbage_headers_of_ours);
    tcase_add_test(tc, two_servers_one_stale_object);
    tcase_add_test(tc, release_leaves_a_foreign_object);
    tcase_add_test(tc, corrupt_header_fields_at_attach);
    tcase_add_test(tc, accessors_after_header_damage);
    tcase_add_test(tc, second_user_plants_at_the_names);
    suite_add_tcase(s, tc);
    return tu_run(s);
}
