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

#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

static char bin_dir[PATH_MAX], top_dir[PATH_MAX];

/* build/<variant>/test/test_examples -> build/<variant> and the tree's top. */
static void find_dirs(void)
{
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    ck_assert(n > 0);
    exe[n] = '\0';
    *strrchr(exe, '/') = '\0'; /* .../build/<v>/test */
    *strrchr(exe, '/') = '\0'; /* .../build/<v> */
    snprintf(bin_dir, sizeof bin_dir, "%s", exe);
    *strrchr(exe, '/') = '\0'; /* .../build */
    *strrchr(exe, '/') = '\0'; /* the top */
    snprintf(top_dir, sizeof top_dir, "%s", exe);
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Run argv with stdout into out and stderr into err; returns the exit
 * status, or -1 if it was still running after timeout_ms (then it is
 * stopped: SIGTERM, which stops the workers too, then SIGKILL). */
static int run(char *const argv[], int timeout_ms, char *out, size_t ocap, char *err, size_t ecap)
{
    int po[2], pe[2], st, left = 2, timed_out = 0;
    size_t n[2] = {0, 0};
    ck_assert_int_eq(pipe(po), 0);
    ck_assert_int_eq(pipe(pe), 0);
    fflush(NULL);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        dup2(po[1], 1);
        dup2(pe[1], 2);
        close(po[0]);
        close(pe[0]);
        close(po[1]);
        close(pe[1]);
        execv(argv[0], argv);
        _exit(127);
    }
    close(po[1]);
    close(pe[1]);
    struct pollfd p[2] = {{.fd = po[0], .events = POLLIN}, {.fd = pe[0], .events = POLLIN}};
    char *buf[2] = {out, err};
    size_t cap[2] = {ocap, ecap};
    uint64_t deadline = now_ms() + (uint64_t)timeout_ms;
    while (left > 0) {
        uint64_t t = now_ms();
        if (t >= deadline) {
            if (timed_out)
                break; /* still there 5 s after SIGTERM: SIGKILL below */
            timed_out = 1;
            kill(pid, SIGTERM); /* a fast stop: the workers go too */
            deadline = t + 5000;
        }
        if (poll(p, 2, (int)(deadline - t)) <= 0)
            continue;
        for (int i = 0; i < 2; i++) {
            char tmp[4096];
            if (p[i].fd < 0 || !p[i].revents)
                continue;
            ssize_t k = read(p[i].fd, tmp, sizeof tmp);
            if (k <= 0) {
                close(p[i].fd);
                p[i].fd = -1;
                left--;
                continue;
            }
            size_t take = (size_t)k < cap[i] - 1 - n[i] ? (size_t)k : cap[i] - 1 - n[i];
            memcpy(buf[i] + n[i], tmp, take);
            n[i] += take;
        }
    }
    out[n[0]] = '\0';
    err[n[1]] = '\0';
    for (int i = 0; i < 2; i++)
        if (p[i].fd >= 0)
            close(p[i].fd);
    if (timed_out)
        kill(pid, SIGKILL);
    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
    if (timed_out)
        return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* The path of example `name`, or NULL (said so) when it was not built. */
static const char *example(const char *name, const char *needs)
{
    static char path[PATH_MAX + 64];
    struct stat st;
    find_dirs();
    snprintf(path, sizeof path, "%s/examples/%s", bin_dir, name);
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
    snprintf(conf, sizeof conf, "%s/examples/example.conf", top_dir);
    snprintf(pings, sizeof pings, "%ld", n);
    char *argv[] = {(char *)bin, conf, pings, NULL};
    int rc = run(argv, tu_valgrind() ? 120000 : 20000, out, sizeof out, err, sizeof err);
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
    int rc = run(argv, tu_valgrind() ? 60000 : 10000, out, sizeof out, err, sizeof err);
    unlink(conf);
    ck_assert_int_eq(rc, 1);
    ck_assert_str_eq(out, "");
    ck_assert_msg(strstr(err, "needs worker_processes 2 and shm_zone counter"), "%s", err);
    char *bad[] = {(char *)bin, conf, "12x", NULL};
    ck_assert_int_eq(run(bad, 10000, out, sizeof out, err, sizeof err), 2);
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
