/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * test_examples.c: the programs of examples/ (one per event loop: epoll,
 * libevent, libuv, io_uring), each run for real as a reader would run it,
 * on examples/example.conf: a master and 2 workers that play ping-pong
 * over the bus and count in a zone under its lock, then stop the master.
 * Each must print exactly "ok: N pings, counter 2N", exit 0 and say
 * nothing on stderr (no log line, so no worker failed, and under valgrind
 * no report from any of the three processes), within a bounded wait. A
 * configuration the examples refuse gives exit 1 and the reason. An
 * example whose loop library is not installed was not built: its test
 * says so and passes.
 */
#include "util_test.h"
#include "util_run.h"

#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

/* The path of example `name`, or NULL (said so) when it was not built. */
static const char *example(const char *name, const char *needs)
{
    static char path[PATH_MAX + 64];
    struct stat st;
    snprintf(path, sizeof path, "%s/examples/%s", tu_build_dir(), name);
    if (stat(path, &st) != 0) {
        printf("test_examples: skip %s: %s was not built (%s is not installed; mk/deps.sh "
               "examples installs it)\n",
               name, path, needs);
        return NULL;
    }
    return path;
}

static void run_example(const char *name, const char *needs)
{
    static char out[65536], err[65536];
    char conf[PATH_MAX + 64], pings[32], want[128];
    const char *bin = example(name, needs);
    if (!bin)
        return;
    long n = tu_scale(1000, 20);
    snprintf(conf, sizeof conf, "%s/examples/example.conf", tu_top_dir());
    snprintf(pings, sizeof pings, "%ld", n);
    char *argv[] = {(char *)bin, conf, pings, NULL};
    int rc = tu_run_capture(argv, tu_valgrind() ? 120000 : 20000, out, sizeof out, err, sizeof err);
    ck_assert_msg(rc != -1, "%s did not finish in time; stdout: %s; stderr: %s", name, out, err);
    snprintf(want, sizeof want, "ok: %ld pings, counter %ld\n", n, 2 * n);
    ck_assert_msg(strcmp(out, want) == 0, "%s printed \"%s\", not \"%s\"; stderr: %s", name, out,
                  want, err);
    ck_assert_msg(rc == 0, "%s exited %d; stderr: %s", name, rc, err);
    ck_assert_msg(err[0] == '\0', "%s wrote on stderr: %s", name, err);
}

START_TEST(epoll_example)
{
    run_example("epoll", "nothing but the C library");
}
END_TEST

START_TEST(libevent_example)
{
    run_example("libevent", "libevent-dev");
}
END_TEST

START_TEST(libuv_example)
{
    run_example("libuv", "libuv1-dev");
}
END_TEST

START_TEST(io_uring_example)
{
    run_example("io_uring", "liburing-dev");
}
END_TEST

/* A configuration the examples cannot run with: refused before anything
 * starts, with the reason, exit 1; and a bad PINGS is the usage, exit 2. */
START_TEST(examples_refuse_a_bad_configuration)
{
    static char out[4096], err[4096];
    char conf[64];
    const char *bin = example("epoll", "nothing but the C library");
    ck_assert_ptr_nonnull(bin);
    snprintf(conf, sizeof conf, "/tmp/shk_test_examples_%ld.conf", (long)getpid());
    FILE *f = fopen(conf, "w");
    ck_assert_ptr_nonnull(f);
    fputs("worker_processes 3;\nshm_zone counter:64k;\n", f);
    fclose(f);
    char *argv[] = {(char *)bin, conf, "10", NULL};
    int rc = tu_run_capture(argv, tu_valgrind() ? 60000 : 10000, out, sizeof out, err, sizeof err);
    unlink(conf);
    ck_assert_int_eq(rc, 1);
    ck_assert_str_eq(out, "");
    ck_assert_msg(strstr(err, "needs worker_processes 2 and shm_zone counter"), "%s", err);
    char *bad[] = {(char *)bin, conf, "12x", NULL};
    ck_assert_int_eq(tu_run_capture(bad, 10000, out, sizeof out, err, sizeof err), 2);
    ck_assert_msg(strstr(err, "usage:"), "%s", err);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("examples");
    TCase *tc = tcase_create("examples");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, epoll_example);
    tcase_add_test(tc, libevent_example);
    tcase_add_test(tc, libuv_example);
    tcase_add_test(tc, io_uring_example);
    tcase_add_test(tc, examples_refuse_a_bad_configuration);
    suite_add_tcase(s, tc);
    return tu_run(s);
}
