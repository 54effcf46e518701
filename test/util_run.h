/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * util_run.h: helpers of the suites that drive other programs (the shmkit
 * command, the demo server, curl, Node clients, the examples): running one
 * with its output captured and a bound on its time, a free loopback port,
 * the monotonic clock, and where the build and the tree are.
 *
 * Like util_test.h, for the runner process only: these fail the test with
 * ck_assert, so a forked child must not call them.
 */
#ifndef UTIL_RUN_H
#define UTIL_RUN_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Run argv (a path, or a program found in PATH) and wait for it.
 * Its stdout goes into out (NUL-terminated, ocap bytes with the NUL); its
 * stderr into err the same way, or into out as well when err == out, or to
 * this process's stderr when err is NULL. Output that does not fit fails
 * the test (nothing is cut silently). timeout_ms < 0: no limit; otherwise,
 * once it has passed, the program gets SIGTERM (a master stops its workers
 * then) and 5 s later SIGKILL, and the result is -1. Returns the exit
 * status, 128 + the signal's number if a signal ended it, -1 on timeout. */
int tu_run_capture(char *const argv[], int timeout_ms, char *out, size_t ocap, char *err,
                   size_t ecap);

/* Start argv (a path, or a program found in PATH) with its stdout on a
 * pipe whose reading end goes to *out_fd (the caller closes it and waits
 * for the pid); the program gets SIGKILL if this process dies first. */
pid_t tu_spawn(char *const argv[], int *out_fd);

/* Start argv with its stdout and stderr into the file log_path (made 0600,
 * emptied); the program gets SIGTERM if this process dies first (a server
 * a failed test started does not outlive it). Returns its pid. */
pid_t tu_spawn_logged(char *const argv[], const char *log_path);

/* A TCP port on 127.0.0.1 that was free a moment ago (bound to port 0 and
 * closed): a test's servers listen there. */
int tu_free_port(void);

/* CLOCK_MONOTONIC in milliseconds. */
uint64_t tu_now_ms(void);

/* Sleep ms milliseconds: only for polling a program outside the test's
 * control (a server coming up, a pane redrawn), never to order the test's
 * own processes (those use pipes). */
void tu_pause_ms(long ms);

/* The build directory of the running suite (build/<variant>, the parent of
 * its test/ folder) and the tree's top (two levels above it); static
 * strings. */
const char *tu_build_dir(void);
const char *tu_top_dir(void);

#endif
