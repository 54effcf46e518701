/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * test_top.c: `shmkit top`. The text report (standard output a pipe) on
 * zones this test makes, while a child takes a lock and sends itself
 * alerts: the figures and rates per second of the lock, the bus slot and
 * the channel store are there and the rates are not zero; a zone that
 * does not attach is reported (exit 1); an instance with no zones says so;
 * a wrong command line is exit 2. Then the live view, for real, in a
 * detached tmux session of fixed size on the demo server: the pane is
 * read twice with load sent in between (the lock's total and its rate
 * move), the server is stopped (the view says there are no zones) and
 * started again (the view shows the new master), and `q` ends it. The
 * live part runs natively only: under valgrind the view would not be
 * traced anyway (tmux starts it), so it is skipped with the reason.
 */
#include "shmkit.h"
#include "util_test.h"
#include "util_run.h"

#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

#define MB (1024 * 1024)

/* Named after the runner's pid, so that its teardown finds what a failed
 * test left (Check ends a failed test's process at once): the zones of
 * both instances, the live test's directory, its tmux server. */
static char inst_text[32], inst_live[32], dir[128], sock[192], conf[192], pidfile[192];

static char tool[PATH_MAX + 16], demo[PATH_MAX + 16];

static void find_bins(void)
{
    snprintf(tool, sizeof tool, "%s/shmkit", tu_build_dir());
    snprintf(demo, sizeof demo, "%s/shmkit-demo", tu_build_dir());
}

/* Token k (from 0, split at spaces) of the first line at or after `from`
 * in text that starts with `prefix`, as a number; -1 if there is none. */
static double field(const char *text, const char *from, const char *prefix, int k)
{
    const char *s = from ? strstr(text, from) : text;
    if (!s)
        return -1;
    size_t plen = strlen(prefix);
    for (; s; s = strchr(s, '\n'), s = s ? s + 1 : NULL) {
        if (strncmp(s, prefix, plen) != 0)
            continue;
        char line[512];
        const char *nl = strchr(s, '\n');
        size_t len = nl ? (size_t)(nl - s) : strlen(s);
        if (len >= sizeof line)
            len = sizeof line - 1;
        memcpy(line, s, len);
        line[len] = '\0';
        char *save, *tok = strtok_r(line, " ", &save);
        for (int i = 0; tok && i < k; i++)
            tok = strtok_r(NULL, " ", &save);
        return tok ? strtod(tok, NULL) : -1;
    }
    return -1;
}

/* ---- the text report ------------------------------------------------------------------ */

START_TEST(text_report_has_rates)
{
    static char out[1 << 16], err[1 << 16];
    char iarg[48];
    find_bins();
    snprintf(iarg, sizeof iarg, "--instance=%s", inst_text);
    shk_zones_t *reg = shk_zones_new(inst_text);
    ck_assert_int_eq(shk_zones_set_mapping(reg, SHK_ZONE_NAMED, 0), SHK_OK);
    shk_zone_t *z = shk_zone_add(reg, "data", MB, "shm_zone");
    shk_zone_t *bz = shk_zone_add(reg, "bus", shk_bus_zone_size(2, 65536), "bus:1");
    shk_zone_t *cz = shk_zone_add(reg, "chan", MB, "chan:2");
    ck_assert_int_eq(shk_zones_create(reg, NULL), SHK_OK);
    shk_bus_t *bus = shk_bus_create(bz, 2, 65536);
    ck_assert_msg(bus != NULL, "%s", shk_last_errmsg());
    shk_shmtx_t m;
    ck_assert_int_eq(shk_zone_shmtx_create(z, &m, "hammer"), SHK_OK);
    shk_chan_opts_t co = {.slots = 2, .store_messages = 1};
    shk_chan_t *ch = shk_chan_create(cz, &co);
    ck_assert_msg(ch != NULL, "%s", shk_last_errmsg());
    ck_assert_int_eq(shk_chan_publish(ch, "news", "hello", 5, NULL, NULL, NULL), SHK_OK);

    /* the load: a child takes the lock and sends itself alerts until told */
    volatile int *stop = tu_shared(sizeof *stop);
    tu_pipe_t ready;
    tu_pipe(&ready);
    pid_t child = tu_fork_raw();
    if (child == 0) {
        TU_CHECK(shk_bus_join(bus, 0) == SHK_OK, "join: %s", shk_last_errmsg());
        tu_signal(&ready);
        while (!*stop) {
            TU_CHECK(shk_shmtx_held(shk_shmtx_lock(&m)), "lock");
            shk_shmtx_unlock(&m);
            int rc = shk_bus_send(bus, shk_pid(), "x", "1", 1);
            TU_CHECK(rc == SHK_OK || rc == SHK_EAGAIN, "send: %s", shk_last_errmsg());
            shk_bus_dispatch(bus, SHK_BUS_BUDGET);
        }
        tu_exit(0);
    }
    ck_assert_int_eq(tu_await(&ready), 0);
    char *argv[] = {tool, "top", iarg, "--interval", "300", NULL};
    int rc = tu_run_capture(argv, 60000, out, sizeof out, err, sizeof err);
    *stop = 1;
    tu_wait_ok(child);
    ck_assert_msg(rc == 0, "exit %d: %s%s", rc, out, err);
    ck_assert_msg(strstr(out, "shmkit top: instance top") && strstr(out, "rates per second over"),
                  "%s", out);
    ck_assert_msg(!strstr(out, "(q quits)"), "the text report has no key hint: %s", out);
    ck_assert_msg(strstr(out, "zone data  tag shm_zone") && strstr(out, "zone bus  tag bus:1"),
                  "%s", out);
    /* hammer: name owner waiters acquire/s ...: taken all along */
    ck_assert_msg(field(out, "zone data", "    hammer ", 3) > 0, "lock rate: %s", out);
    ck_assert_msg(field(out, "zone data", "    hammer ", 6) > 0, "lock total: %s", out);
    /* slot 0: slot pid state depth oldest in/s out/s doorbells/s */
    ck_assert_msg(field(out, "  bus: 2 slots, 1 joined", "    0 ", 5) > 0, "in/s: %s", out);
    ck_assert_msg(field(out, "  bus: 2 slots, 1 joined", "    0 ", 6) > 0, "out/s: %s", out);
    ck_assert_msg(strstr(out, "  channels: 1 (0 wildcard), 0 subscribers, 1 messages stored"),
                  "%s", out);

    /* a zone that does not attach: said, exit 1 */
    char *argv2[] = {tool, "top", iarg, "--interval", "100", "data", "nosuch", NULL};
    ck_assert_int_eq(tu_run_capture(argv2, 30000, out, sizeof out, err, sizeof err), 1);
    ck_assert_msg(strstr(out, "zone nosuch: cannot be attached: "), "%s", out);
    ck_assert_msg(strstr(out, "zone data  tag shm_zone"), "%s", out);

    shk_chan_close(ch);
    shk_bus_close(bus);
    shk_zones_free(reg);
    tu_unshare((void *)stop, sizeof *stop);
    tu_pipe_close(&ready);

    /* no zones: said, exit 0, at once */
    char *argv3[] = {tool, "top", iarg, "--once", NULL};
    ck_assert_int_eq(tu_run_capture(argv3, 30000, out, sizeof out, err, sizeof err), 0);
    ck_assert_msg(strstr(out, "no named zones for instance top"), "%s", out);
    /* a wrong command line */
    char *argv4[] = {tool, "top", "--interval", "5", NULL};
    ck_assert_int_eq(tu_run_capture(argv4, 30000, out, sizeof out, err, sizeof err), 2);
    ck_assert_msg(strstr(err, "--interval takes 100 to 3600000"), "%s", err);
    char *argv5[] = {tool, "top", "--bogus", NULL};
    ck_assert_int_eq(tu_run_capture(argv5, 30000, out, sizeof out, err, sizeof err), 2);
    ck_assert_msg(strstr(err, "unknown option \"--bogus\"") && strstr(err, "usage:"), "%s", err);
}
END_TEST

/* ---- the live view, in tmux ------------------------------------------------------------ */

static pid_t master;

static void tmux(const char *a1, const char *a2, const char *a3, const char *a4)
{
    static char out[4096], err[4096];
    char *argv[] = {"tmux", "-f", "/dev/null", "-S", sock, (char *)a1, (char *)a2, (char *)a3,
                    (char *)a4, NULL};
    tu_run_capture(argv, 10000, out, sizeof out, err, sizeof err);
}

/* The pane as it shows now; 0 when there is no session any more. */
static int capture(char *out, size_t cap)
{
    static char err[4096];
    char *argv[] = {"tmux", "-f", "/dev/null", "-S", sock, "capture-pane", "-p", "-t", "top", NULL};
    return tu_run_capture(argv, 10000, out, cap, err, sizeof err) == 0;
}

/* Read the pane until it holds `needle` (bounded: the view is another
 * process that redraws on its own clock, so polling it is the only way). */
static int await_pane(char *out, size_t cap, const char *needle)
{
    for (uint64_t end = tu_now_ms() + 15000; tu_now_ms() < end; tu_pause_ms(100))
        if (capture(out, cap) && strstr(out, needle))
            return 1;
    return 0;
}

static void start_demo(void)
{
    char log[256];
    snprintf(log, sizeof log, "%s/demo.log", dir);
    fflush(NULL);
    master = fork();
    ck_assert_int_ge(master, 0);
    if (master == 0) {
        FILE *f = freopen(log, "a", stderr);
        (void)f;
        dup2(2, 1);
        execl(demo, demo, "-c", conf, (char *)NULL);
        _exit(127);
    }
}

static void stop_demo(void)
{
    int st;
    if (master <= 0)
        return;
    kill(master, SIGQUIT);
    waitpid(master, &st, 0);
    master = 0;
}

/* In the runner, after the tests: whatever a failed one left. */
static void teardown(void)
{
    char cmd[1024];
    FILE *f = fopen(pidfile, "r");
    long pid = 0;
    if (f) {
        if (fscanf(f, "%ld", &pid) == 1 && pid > 1)
            kill((pid_t)pid, SIGKILL);
        fclose(f);
    }
    snprintf(cmd, sizeof cmd,
             "tmux -f /dev/null -S %s kill-server 2>/dev/null; rm -rf %s "
             "/dev/shm/shmkit.%s.* /dev/shm/shmkit.%s.*",
             sock, dir, inst_text, inst_live);
    if (system(cmd) != 0)
        fprintf(stderr, "test_top: could not clean up after the tests\n");
}

START_TEST(live_view_in_tmux)
{
    static char pane[1 << 16], out[4096], err[4096];
    char want[128], url[128], cmd[PATH_MAX + 128];
    find_bins();
    if (tu_valgrind()) {
        printf("test_top: skip the live view under valgrind: tmux starts it, so valgrind would "
               "not trace it; it runs natively\n");
        return;
    }
    char *which[] = {"tmux", "-V", NULL};
    if (tu_run_capture(which, 10000, out, sizeof out, err, sizeof err) != 0) {
        printf("test_top: skip the live view: tmux is not installed (mk/deps.sh test installs "
               "it)\n");
        return;
    }
    if (access(demo, X_OK) != 0) {
        printf("test_top: skip the live view: %s was not built (libevent missing)\n", demo);
        return;
    }
    ck_assert_int_eq(mkdir(dir, 0700), 0);
    int port = tu_free_port();
    FILE *f = fopen(conf, "w");
    ck_assert_ptr_nonnull(f);
    fprintf(f,
            "worker_processes 2;\nlisten 127.0.0.1:%d;\nshm_instance %s;\nshm_mapping named;\n"
            "channels 1m;\npid %s;\n"
            "limit_req_zone $binary_remote_addr zone=one:1m rate=1000r/s;\n"
            "location /limited { limit_req zone=one burst=100 nodelay; }\n",
            port, inst_live, pidfile);
    fclose(f);
    start_demo();

    /* the view, on a pane of 160 x 60 */
    snprintf(cmd, sizeof cmd, "exec %s top --instance %s --interval 500", tool, inst_live);
    char *argv[] = {"tmux", "-f", "/dev/null", "-S", sock, "new-session", "-d", "-s", "top",
                    "-x", "160", "-y", "60", cmd, NULL};
    ck_assert_int_eq(tu_run_capture(argv, 10000, out, sizeof out, err, sizeof err), 0);
    snprintf(want, sizeof want, "creator %d (alive)", (int)master);
    ck_assert_msg(await_pane(pane, sizeof pane, want), "the view never showed the server: %s",
                  pane);
    ck_assert_msg(await_pane(pane, sizeof pane, "rates per second over the last 0.5 s (q quits)"),
                  "%s", pane);
    ck_assert_msg(strstr(pane, "zone one  tag limit_req") && strstr(pane, "zone shmkit_bus") &&
                      strstr(pane, "  locks:") && strstr(pane, "  bus: 2 slots") &&
                      strstr(pane, "  channels: "),
                  "%s", pane);
    double before = field(pane, "zone one", "    slab ", 6);
    ck_assert_msg(before >= 0, "no slab lock in zone one: %s", pane);

    /* load: 30 requests through limit_req (each takes the zone's lock) */
    snprintf(url, sizeof url, "http://127.0.0.1:%d/limited", port);
    char *curl[100];
    int k = 0;
    curl[k++] = "curl";
    curl[k++] = "-s";
    for (int i = 0; i < 30; i++) {
        curl[k++] = "-o";
        curl[k++] = "/dev/null";
        curl[k++] = url;
    }
    curl[k] = NULL;
    ck_assert_int_eq(tu_run_capture(curl, 30000, out, sizeof out, err, sizeof err), 0);
    /* the first frame with the new total has the rate of it */
    double after = before, rate = -1;
    for (uint64_t end = tu_now_ms() + 15000; after <= before && tu_now_ms() < end; tu_pause_ms(100)) {
        if (!capture(pane, sizeof pane))
            continue;
        after = field(pane, "zone one", "    slab ", 6);
        rate = field(pane, "zone one", "    slab ", 3);
    }
    ck_assert_msg(after >= before + 30, "acquired %g then %g: %s", before, after, pane);
    ck_assert_msg(rate > 0, "acquire/s %g with the total moving: %s", rate, pane);

    /* the server stops: no zones; it starts again: the view shows it */
    pid_t old = master;
    stop_demo();
    ck_assert_msg(await_pane(pane, sizeof pane, "no named zones for instance"), "%s", pane);
    start_demo();
    ck_assert(master != old);
    snprintf(want, sizeof want, "creator %d (alive)", (int)master);
    ck_assert_msg(await_pane(pane, sizeof pane, want), "the view did not follow the restart: %s",
                  pane);
    ck_assert_msg(await_pane(pane, sizeof pane, "  bus: 2 slots, 2 joined"), "%s", pane);

    /* q ends it, and with it the session */
    tmux("send-keys", "-t", "top", "q");
    int gone = 0;
    for (uint64_t end = tu_now_ms() + 10000; !gone && tu_now_ms() < end; tu_pause_ms(50))
        gone = !capture(pane, sizeof pane);
    ck_assert_msg(gone, "q did not end the view: %s", pane);
    stop_demo();
}
END_TEST

int main(void)
{
    long me = (long)getpid();
    snprintf(inst_text, sizeof inst_text, "top%ldt", me);
    snprintf(inst_live, sizeof inst_live, "top%ldl", me);
    snprintf(dir, sizeof dir, "/tmp/shk_test_top_%ld", me);
    snprintf(sock, sizeof sock, "%s/tmux.sock", dir);
    snprintf(conf, sizeof conf, "%s/demo.conf", dir);
    snprintf(pidfile, sizeof pidfile, "%s/demo.pid", dir);
    Suite *s = suite_create("top");
    TCase *tc = tcase_create("top");
    tcase_set_timeout(tc, 180);
    tcase_add_unchecked_fixture(tc, NULL, teardown);
    tcase_add_test(tc, text_report_has_rates);
    tcase_add_test(tc, live_view_in_tmux);
    suite_add_tcase(s, tc);
    return tu_run(s);
}
