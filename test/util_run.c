/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * util_run.c: running other programs from a suite (util_run.h). The output
 * pipes are read with poll() so that neither fills while the other is
 * drained, and the time bound holds even for a program that keeps its
 * pipes open after a hang.
 */
#include "util_run.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

uint64_t tu_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

void tu_pause_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
        ;
}

int tu_run_capture(char *const argv[], int timeout_ms, char *out, size_t ocap, char *err,
                   size_t ecap)
{
    int merged = err == out, po[2], pe[2] = {-1, -1};
    ck_assert(out && ocap > 0 && (!err || merged || ecap > 0));
    ck_assert_int_eq(pipe(po), 0);
    if (err && !merged)
        ck_assert_int_eq(pipe(pe), 0);
    fflush(NULL);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        dup2(po[1], 1);
        if (merged)
            dup2(po[1], 2);
        else if (err)
            dup2(pe[1], 2);
        close(po[0]);
        close(po[1]);
        if (pe[0] >= 0) {
            close(pe[0]);
            close(pe[1]);
        }
        execvp(argv[0], argv);
        _exit(127);
    }
    close(po[1]);
    if (pe[1] >= 0)
        close(pe[1]);
    struct pollfd p[2] = {{.fd = po[0], .events = POLLIN}, {.fd = pe[0], .events = POLLIN}};
    char *buf[2] = {out, err};
    size_t cap[2] = {ocap, ecap}, n[2] = {0, 0};
    int left = pe[0] >= 0 ? 2 : 1, timed_out = 0, st;
    uint64_t deadline = timeout_ms < 0 ? UINT64_MAX : tu_now_ms() + (uint64_t)timeout_ms;
    while (left > 0) {
        uint64_t t = tu_now_ms();
        if (t >= deadline) {
            if (timed_out)
                break; /* still there 5 s after SIGTERM: SIGKILL below */
            timed_out = 1;
            kill(pid, SIGTERM);
            deadline = t + 5000;
        }
        uint64_t wait = deadline - t;
        if (poll(p, 2, wait > INT_MAX ? -1 : (int)wait) <= 0)
            continue;
        for (int i = 0; i < 2; i++) {
            if (p[i].fd < 0 || !p[i].revents)
                continue;
            size_t room = cap[i] - 1 - n[i];
            char spill;
            /* With no room left, one more byte tells an end from an overflow. */
            ssize_t k = room ? read(p[i].fd, buf[i] + n[i], room) : read(p[i].fd, &spill, 1);
            if (k < 0 && errno == EINTR)
                continue;
            if (k <= 0) {
                close(p[i].fd);
                p[i].fd = -1;
                left--;
                continue;
            }
            if (!room) {
                kill(pid, SIGKILL);
                waitpid(pid, &st, 0);
                ck_abort_msg("%s: its %s is longer than the %zu bytes the test keeps", argv[0],
                             i ? "stderr" : "stdout", cap[i] - 1);
            }
            n[i] += (size_t)k;
        }
    }
    out[n[0]] = '\0';
    if (err && !merged)
        err[n[1]] = '\0';
    for (int i = 0; i < 2; i++)
        if (p[i].fd >= 0)
            close(p[i].fd);
    if (timed_out && left > 0)
        kill(pid, SIGKILL);
    while (waitpid(pid, &st, 0) == -1)
        ck_assert_int_eq(errno, EINTR);
    if (timed_out)
        return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

pid_t tu_spawn(char *const argv[], int *out_fd)
{
    int p[2];
    ck_assert_int_eq(pipe(p), 0);
    fflush(NULL);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        dup2(p[1], 1);
        close(p[0]);
        close(p[1]);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        execvp(argv[0], argv);
        _exit(127);
    }
    close(p[1]);
    *out_fd = p[0];
    return pid;
}

pid_t tu_spawn_logged(char *const argv[], const char *log_path)
{
    fflush(NULL);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        int fd = open(log_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd < 0)
            _exit(126);
        dup2(fd, 2);
        dup2(fd, 1);
        if (fd > 2)
            close(fd);
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        execvp(argv[0], argv);
        _exit(127);
    }
    return pid;
}

int tu_free_port(void)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_ge(s, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t l = sizeof a;
    ck_assert_int_eq(bind(s, (struct sockaddr *)&a, sizeof a), 0);
    ck_assert_int_eq(getsockname(s, (struct sockaddr *)&a, &l), 0);
    close(s);
    return ntohs(a.sin_port);
}

static char build_dir[PATH_MAX], top_dir[PATH_MAX];

/* build/<variant>/test/<suite> -> build/<variant>, and the top two above. */
static void find_dirs(void)
{
    if (build_dir[0])
        return;
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    ck_assert(n > 0);
    exe[n] = '\0';
    for (int up = 0; up < 4; up++) {
        char *slash = strrchr(exe, '/');
        ck_assert_msg(slash && slash != exe, "%s: not under build/<variant>/test", exe);
        *slash = '\0';
        if (up == 1)
            snprintf(build_dir, sizeof build_dir, "%s", exe);
    }
    snprintf(top_dir, sizeof top_dir, "%s", exe);
}

const char *tu_build_dir(void)
{
    find_dirs();
    return build_dir;
}

const char *tu_top_dir(void)
{
    find_dirs();
    return top_dir;
}
