/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * test_core.c: status texts, last error, the log sink, the cached pid across
 * fork, liveness of live, zombie and reaped processes, clocks.
 */
#include "shk_core.h"
#include "util_test.h"

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>

START_TEST(strerror_every_code)
{
    for (int c = SHK_OK; c >= SHK_ERANGE; c--) {
        const char *s = shk_strerror(c);
        ck_assert_ptr_nonnull(s);
        ck_assert_msg(strcmp(s, "unknown error") != 0, "code %d has no text", c);
        for (int d = c + 1; d <= SHK_OK; d++)
            ck_assert_msg(strcmp(s, shk_strerror(d)) != 0, "codes %d and %d share a text", c, d);
    }
    ck_assert_str_eq(shk_strerror(-1000), "unknown error");
    ck_assert_str_eq(shk_strerror(7), "unknown error");
}
END_TEST

/* The one list (SHK_ERRNO_MAP) gives every code a name and a text, each its
 * own, and the names are the C identifiers. */
START_TEST(error_list_names_every_code)
{
    struct { int code; const char *name; } want[] = {
#define XX(name, value, text) {SHK_##name, "SHK_" #name},
        SHK_ERRNO_MAP(XX)
#undef XX
    };
    int n = (int)(sizeof want / sizeof want[0]);
    ck_assert_int_eq(n, 1 - SHK_ERRNO_LAST_);
    for (int i = 0; i < n; i++) {
        ck_assert_int_eq(want[i].code, -i); /* dense, 0 down to the last */
        ck_assert_str_eq(shk_err_name(want[i].code), want[i].name);
        for (int j = 0; j < i; j++)
            ck_assert_msg(strcmp(shk_err_name(want[i].code), shk_err_name(want[j].code)) != 0,
                          "codes %d and %d share a name", want[i].code, want[j].code);
    }
    ck_assert_str_eq(shk_err_name(SHK_EOWNERDEAD), "SHK_EOWNERDEAD");
    ck_assert_str_eq(shk_err_name(-1000), "SHK_E?");
    ck_assert_str_eq(shk_err_name(3), "SHK_E?");
}
END_TEST

/* A message re-raised with context from the last one: shk_error formats
 * into its own buffer, so its argument may be the message it replaces. */
START_TEST(error_reraised_with_context)
{
    shk_error(SHK_ENOENT, "open \"%s\" failed", "/dev/shm/x");
    ck_assert_int_eq(shk_error(SHK_ECONF, "zone \"%s\": %s", "one", shk_last_errmsg()), SHK_ECONF);
    ck_assert_str_eq(shk_last_errmsg(), "zone \"one\": open \"/dev/shm/x\" failed");
    ck_assert_int_eq(shk_last_error(), SHK_ECONF);
    /* Twice more, each wrapping the one before. */
    shk_error(SHK_ECONF, "a: %s", shk_last_errmsg());
    shk_error(SHK_ECONF, "b: %s", shk_last_errmsg());
    ck_assert_str_eq(shk_last_errmsg(), "b: a: zone \"one\": open \"/dev/shm/x\" failed");
}
END_TEST

START_TEST(last_error_message)
{
    ck_assert_int_eq(shk_error(SHK_ECONF, "unknown directive \"%s\" in %s:%d", "x", "a.conf", 7),
                     SHK_ECONF);
    ck_assert_int_eq(shk_last_error(), SHK_ECONF);
    ck_assert_str_eq(shk_last_errmsg(), "unknown directive \"x\" in a.conf:7");

    /* A message too long for the buffer is cut visibly, not silently. */
    char big[3000];
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    shk_error(SHK_EINVAL, "%s", big);
    size_t n = strlen(shk_last_errmsg());
    ck_assert_uint_eq(n, 1023);
    ck_assert_str_eq(shk_last_errmsg() + n - 3, "...");
    ck_assert_int_eq(shk_last_error(), SHK_EINVAL);
}
END_TEST

struct captured {
    int count;
    int level;
    char msg[2048];
};

static void capture(void *ctx, int level, const char *msg)
{
    struct captured *c = ctx;
    c->count++;
    c->level = level;
    snprintf(c->msg, sizeof(c->msg), "%s", msg);
}

START_TEST(log_sink_and_levels)
{
    struct captured c = {0};

    ck_assert_int_eq(shk_log_level(), SHK_LOG_ERR);
    shk_log_set(capture, &c, SHK_LOG_WARN);
    ck_assert_int_eq(shk_log_level(), SHK_LOG_WARN);
    shk_log(SHK_LOG_INFO, "not shown %d", 1);
    ck_assert_int_eq(c.count, 0);
    shk_log(SHK_LOG_WARN, "zone \"%s\" was locked by %d", "one", 1234);
    ck_assert_int_eq(c.count, 1);
    ck_assert_int_eq(c.level, SHK_LOG_WARN);
    ck_assert_str_eq(c.msg, "zone \"one\" was locked by 1234");
    shk_log(SHK_LOG_ERR, "e");
    ck_assert_int_eq(c.count, 2);

    /* Out-of-range levels are clamped. */
    shk_log_set(capture, &c, 99);
    ck_assert_int_eq(shk_log_level(), SHK_LOG_DEBUG);
    shk_log_set(NULL, NULL, SHK_LOG_ERR);
    ck_assert_int_eq(shk_log_level(), SHK_LOG_ERR);
    ck_assert_str_eq(shk_log_level_name(SHK_LOG_NOTICE), "notice");
    ck_assert_str_eq(shk_log_level_name(42), "?");
}
END_TEST

static int child_pid_matches(void *arg)
{
    pid_t parent = *(pid_t *)arg;
    TU_CHECK(shk_pid() == getpid(), "cached %ld, real %ld", (long)shk_pid(), (long)getpid());
    TU_CHECK(shk_pid() != parent, "child still has the parent's pid");
    return 0;
}

START_TEST(pid_cache_follows_fork)
{
    pid_t me = getpid();
    ck_assert_int_eq(shk_pid(), me);
    tu_wait_ok(tu_fork(child_pid_matches, &me));
    ck_assert_int_eq(shk_pid(), me);
    ck_assert_int_eq(shk_pid_refresh(), me);
}
END_TEST

static int child_block(void *arg)
{
    tu_pipe_t *p = arg;
    char c;
    close(p->wr);
    /* Wait until the parent closes the pipe or kills us. */
    while (read(p->rd, &c, 1) > 0)
        ;
    return 0;
}

START_TEST(pid_alive_states)
{
    tu_pipe_t p;
    tu_pipe(&p);
    pid_t pid = tu_fork(child_block, &p);

    ck_assert_int_eq(shk_pid_alive(getpid()), 1);
    ck_assert_int_eq(shk_pid_alive(pid), 1);
    ck_assert_int_eq(shk_pid_alive(0), 0);
    ck_assert_int_eq(shk_pid_alive(-5), 0);
    ck_assert_int_eq(shk_pid_alive(1), 1); /* init: alive, maybe not signalable */

    kill(pid, SIGKILL);
    /* Wait until it is a zombie without reaping it. */
    siginfo_t si;
    ck_assert_int_eq(waitid(P_PID, pid, &si, WEXITED | WNOWAIT), 0);
    ck_assert_int_eq(shk_pid_alive(pid), 0); /* zombie counts as dead */
    ck_assert_int_eq(tu_wait(pid), 128 + SIGKILL);
    ck_assert_int_eq(shk_pid_alive(pid), 0); /* reaped */
    tu_pipe_close(&p);
}
END_TEST

START_TEST(clocks_and_cpu)
{
    uint64_t a = shk_time_ns();
    uint64_t b = shk_time_ns();
    ck_assert_uint_ge(b, a);
    ck_assert_uint_ge(shk_time_ms(), a / 1000000u);
    ck_assert_uint_ge(shk_ncpu(), 1);
    ck_assert_uint_ge(shk_spin_per_us(), 1);
    ck_assert_str_eq(shk_version(), "0.1.0");
}
END_TEST

int main(void)
{
    Suite *s = suite_create("core");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, strerror_every_code);
    tcase_add_test(tc, last_error_message);
    tcase_add_test(tc, error_list_names_every_code);
    tcase_add_test(tc, error_reraised_with_context);
    tcase_add_test(tc, log_sink_and_levels);
    tcase_add_test(tc, pid_cache_follows_fork);
    tcase_add_test(tc, pid_alive_states);
    tcase_add_test(tc, clocks_and_cpu);
    suite_add_tcase(s, tc);
    return tu_run(s);
}
