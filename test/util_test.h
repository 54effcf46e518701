/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * util_test.h: helpers shared by the Check suites: shared memory, forked
 * children that report through their exit status, pipe handshakes, seeds,
 * the library's log captured into a buffer, message templates.
 *
 * Children never call ck_assert: with CK_FORK=no (the valgrind run) a failed
 * assertion in a child would unwind into the child's copy of the runner.
 * They use TU_CHECK, which prints and exits 1, and the parent asserts the
 * exit status.
 */
#ifndef UTIL_TEST_H
#define UTIL_TEST_H

#include <check.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/types.h>
#include <unistd.h>

/* In a child: fail the child (exit 1) with a message if cond is false. */
#define TU_CHECK(cond, ...)                                                     \
    do {                                                                        \
        if (!(cond)) {                                                          \
            fprintf(stderr, "%s:%d: child %ld: check failed: %s: ", __FILE__,   \
                    __LINE__, (long)getpid(), #cond);                           \
            fprintf(stderr, __VA_ARGS__);                                       \
            fputc('\n', stderr);                                                \
            tu_exit(1);                                                         \
        }                                                                       \
    } while (0)

/* Anonymous shared memory, zero-filled; aborts the test on failure. */
void *tu_shared(size_t size);
void tu_unshare(void *p, size_t size);

/* Fork a child that runs fn(arg) and exits with its return value. */
pid_t tu_fork(int (*fn)(void *arg), void *arg);

/* fork() for tests that run their own child code: returns 0 in the child,
 * which must end with tu_exit(status). */
pid_t tu_fork_raw(void);

/* End a forked child with `status`. Under valgrind the status goes to the
 * parent through a pipe and the child ends with SIGKILL, skipping the
 * exit-time leak check (a child inherits its parent's heap: those blocks are
 * not its leaks); memory errors it made turn the status into 1. */
void tu_exit(int status) __attribute__((noreturn));

/* Wait for pid and return its exit status (128+signal if killed). */
int tu_wait(pid_t pid);

/* ck_assert that pid exits with status 0. */
void tu_wait_ok(pid_t pid);

/* A one-way pipe used as a handshake: tu_signal writes a byte, tu_await
 * blocks until one arrives (returns 0) or the writer is gone (-1). */
typedef struct { int rd, wr; } tu_pipe_t;
void tu_pipe(tu_pipe_t *p);
void tu_signal(tu_pipe_t *p);
int tu_await(tu_pipe_t *p);
void tu_pipe_close(tu_pipe_t *p);

/* 1 when running under valgrind. */
int tu_valgrind(void);

/* Iteration count: n natively, n / div under valgrind (at least 1). */
long tu_scale(long n, long div);

/* A seed for randomized tests: $SHK_TEST_SEED if set, else from the clock;
 * printed with the test's name so a failure can be replayed. */
uint64_t tu_seed(const char *test);

/* xorshift64* step. */
uint64_t tu_rand(uint64_t *state);

/* Send the library's log (every level) to buf: each message and a newline
 * appended, buf emptied first; what does not fit in cap is dropped at the
 * end (tests look for lines near the start). */
void tu_log_capture(char *buf, size_t cap);

/* out = tmpl with its one "%s" replaced by s (tmpl itself if it has none). */
void tu_subst(char *out, size_t cap, const char *tmpl, const char *s);

/* Run a suite (CK_NORMAL output), return the process exit status. */
int tu_run(Suite *s);

#endif
