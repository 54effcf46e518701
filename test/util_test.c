/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * util_test.c: shared helpers for the Check suites (see util_test.h).
 */
#include "util_test.h"

#include "shmkit.h"

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>

#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#define TU_ON_VALGRIND() RUNNING_ON_VALGRIND
#else
#define TU_ON_VALGRIND() 0
#endif

void *tu_shared(size_t size)
{
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    ck_assert_msg(p != MAP_FAILED, "mmap %zu: %s", size, strerror(errno));
    return p;
}

void tu_unshare(void *p, size_t size)
{
    munmap(p, size);
}

/* Under valgrind a forked child inherits its parent's heap, and memcheck
 * would report the parent's live blocks as the child's leaks when it exits.
 * So a child's status travels through a pipe and the child ends with
 * SIGKILL (no exit-time leak check); memory errors it made are still
 * counted: any error raises its status to 1. */
static int tu_status_fd = -1;
static unsigned tu_child_errors;
static struct {
    pid_t pid;
    int fd;
} tu_children[256];

void tu_exit(int status)
{
#if __has_include(<valgrind/valgrind.h>)
    if (TU_ON_VALGRIND() && tu_status_fd >= 0) {
        unsigned char c = (unsigned char)status;
        if (VALGRIND_COUNT_ERRORS > tu_child_errors) {
            fprintf(stderr, "child %ld: memcheck reported errors\n", (long)getpid());
            c = 1;
        }
        fflush(NULL);
        /* The parent reads the status and then kills us from outside (a
         * SIGKILL we sent ourselves would still run the leak check). */
        if (write(tu_status_fd, &c, 1) == 1)
            for (;;)
                pause();
    }
#endif
    _exit(status);
}

pid_t tu_fork_raw(void)
{
    int fd[2] = {-1, -1};
    fflush(NULL);
    if (TU_ON_VALGRIND() && pipe(fd) != 0)
        fd[0] = fd[1] = -1;
    pid_t pid = fork();
    ck_assert_msg(pid != -1, "fork: %s", strerror(errno));
    if (pid == 0) {
        if (fd[0] >= 0)
            close(fd[0]);
        tu_status_fd = fd[1];
#if __has_include(<valgrind/valgrind.h>)
        tu_child_errors = TU_ON_VALGRIND() ? VALGRIND_COUNT_ERRORS : 0;
#endif
        return 0;
    }
    if (fd[1] >= 0)
        close(fd[1]);
    if (fd[0] >= 0) {
        for (size_t i = 0; i < sizeof tu_children / sizeof tu_children[0]; i++)
            if (tu_children[i].pid == 0) {
                tu_children[i].pid = pid;
                tu_children[i].fd = fd[0];
                fd[0] = -1;
                break;
            }
        if (fd[0] >= 0)
            close(fd[0]);
    }
    return pid;
}

pid_t tu_fork(int (*fn)(void *arg), void *arg)
{
    pid_t pid = tu_fork_raw();
    if (pid == 0)
        tu_exit(fn(arg));
    return pid;
}

int tu_wait(pid_t pid)
{
    int st, status = -1, reported = -1;
    for (size_t i = 0; i < sizeof tu_children / sizeof tu_children[0]; i++)
        if (tu_children[i].pid == pid) {
            unsigned char c;
            ssize_t n;
            while ((n = read(tu_children[i].fd, &c, 1)) == -1 && errno == EINTR)
                ;
            if (n == 1) {
                reported = c;
                kill(pid, SIGKILL);
            }
            close(tu_children[i].fd);
            tu_children[i].pid = 0;
            break;
        }
    while (waitpid(pid, &st, 0) == -1) {
        if (errno != EINTR)
            return -1;
    }
    if (WIFEXITED(st))
        status = WEXITSTATUS(st);
    else if (WIFSIGNALED(st))
        status = 128 + WTERMSIG(st);
    return reported >= 0 ? reported : status;
}

void tu_wait_ok(pid_t pid)
{
    int st = tu_wait(pid);
    ck_assert_msg(st == 0, "child %ld exited with status %d", (long)pid, st);
}

void tu_pipe(tu_pipe_t *p)
{
    int fd[2];
    ck_assert_msg(pipe(fd) == 0, "pipe: %s", strerror(errno));
    p->rd = fd[0];
    p->wr = fd[1];
}

void tu_signal(tu_pipe_t *p)
{
    char c = 1;
    while (write(p->wr, &c, 1) == -1 && errno == EINTR)
        ;
}

int tu_await(tu_pipe_t *p)
{
    char c;
    ssize_t n;
    while ((n = read(p->rd, &c, 1)) == -1 && errno == EINTR)
        ;
    return n == 1 ? 0 : -1;
}

void tu_pipe_close(tu_pipe_t *p)
{
    if (p->rd >= 0)
        close(p->rd);
    if (p->wr >= 0)
        close(p->wr);
    p->rd = p->wr = -1;
}

int tu_valgrind(void)
{
    return TU_ON_VALGRIND() ? 1 : 0;
}

long tu_scale(long n, long div)
{
    if (!tu_valgrind())
        return n;
    n /= div;
    return n > 0 ? n : 1;
}

uint64_t tu_seed(const char *test)
{
    const char *env = getenv("SHK_TEST_SEED");
    uint64_t seed;
    if (env && *env) {
        seed = strtoull(env, NULL, 0);
    } else {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        seed = (uint64_t)ts.tv_sec * 1000003u ^ (uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 32);
    }
    if (seed == 0)
        seed = 0x9e3779b97f4a7c15ull;
    printf("%s: seed=%llu (set SHK_TEST_SEED to replay)\n", test, (unsigned long long)seed);
    fflush(stdout);
    return seed;
}

uint64_t tu_rand(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545f4914f6cdd1dull;
}

int tu_run(Suite *s)
{
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

static struct { char *buf; size_t cap; } tu_log;

static void tu_log_append(void *ctx, int level, const char *msg)
{
    (void)ctx;
    (void)level;
    size_t n = strlen(tu_log.buf);
    snprintf(tu_log.buf + n, tu_log.cap - n, "%s\n", msg);
}

void tu_log_capture(char *buf, size_t cap)
{
    ck_assert(buf && cap > 0);
    tu_log.buf = buf;
    tu_log.cap = cap;
    buf[0] = '\0';
    shk_log_set(tu_log_append, NULL, SHK_LOG_DEBUG);
}

void tu_subst(char *out, size_t cap, const char *tmpl, const char *s)
{
    const char *p = strstr(tmpl, "%s");
    if (!p)
        snprintf(out, cap, "%s", tmpl);
    else
        snprintf(out, cap, "%.*s%s%s", (int)(p - tmpl), tmpl, s, p + 2);
}
