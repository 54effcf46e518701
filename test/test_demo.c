/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * test_demo.c: the demo server, run for real with a real HTTP client (curl):
 * send and broadcast with the replies in the log, a bad pid, names and data
 * at the limits, limit_req on a scripted burst, /status parsed as JSON, and
 * a worker killed with SIGKILL while requests keep coming (none fails once
 * the worker is back). The application command line the demo gets from
 * shk_app_main: -v, -t on good and bad files, -s reload and -s quit against
 * the running server, and -s refusing pid files that do not name a process
 * (a decoy process with the signals blocked shows that nothing was sent).
 * Also the request limiter's rule on scripted schedules (the nginx leaky
 * bucket) and its tree, without HTTP.
 */
#include "demo_conf.h"
#include "shmkit.h"
#include "util_json.h"
#include "util_test.h"
#include "util_run.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

static char dir[128], conf_path[256], log_path[256], pid_path[256], base_url[64];
static char demo_bin[PATH_MAX + 32], tool_bin[PATH_MAX + 32];
static pid_t master;

/* GET path; returns the HTTP status, body in out. */
static int get(const char *path, char *out, size_t cap)
{
    char url[4096], code[16];
    snprintf(url, sizeof url, "%s%s", base_url, path);
    char *argv[] = {"curl", "-s", "--max-time", "10", "-w", "\n%{http_code}", url, NULL};
    tu_run_capture(argv, 120000, out, cap, NULL, 0);
    char *nl = strrchr(out, '\n');
    if (!nl)
        return 0;
    snprintf(code, sizeof code, "%s", nl + 1);
    *nl = '\0';
    if (nl > out && nl[-1] == '\n') /* the server ends its text bodies with one */
        nl[-1] = '\0';
    return atoi(code);
}

static int log_count(const char *needle)
{
    static char buf[1 << 20];
    int fd = open(log_path, O_RDONLY), n = 0;
    ssize_t len = fd >= 0 ? read(fd, buf, sizeof buf - 1) : 0;
    if (fd >= 0)
        close(fd);
    buf[len > 0 ? len : 0] = '\0';
    for (char *p = buf; (p = strstr(p, needle)); p++)
        n++;
    return n;
}

/* Wait (bounded) until the log holds `n` copies of needle: the server acts
 * asynchronously; the log is how it tells. */
static int await_log(const char *needle, int n)
{
    for (int i = 0; i < 2000; i++) {
        if (log_count(needle) >= n)
            return 1;
        struct timespec ts = {0, 5 * 1000 * 1000};
        nanosleep(&ts, NULL); /* polling an external process's log, not a sync */
    }
    return 0;
}

static int worker_pids(pid_t *pids, int max)
{
    char out[4096];
    if (get("/workers", out, sizeof out) != 200)
        return 0;
    tj_t *j = tj_parse(out, NULL, 0);
    const tj_t *w = j ? tj_get(j, "workers") : NULL;
    int n = 0;
    for (size_t i = 0; w && i < w->nkids && n < max; i++)
        pids[n++] = (pid_t)tj_num(&w->kids[i], "pid", 0);
    tj_free(j);
    return n;
}

static void start_server(void)
{
    snprintf(demo_bin, sizeof demo_bin, "%s/shmkit-demo", tu_build_dir());
    snprintf(tool_bin, sizeof tool_bin, "%s/shmkit", tu_build_dir());
    snprintf(dir, sizeof dir, "/tmp/shk_test_demo_%ld", (long)getpid());
    mkdir(dir, 0700);
    snprintf(conf_path, sizeof conf_path, "%s/demo.conf", dir);
    snprintf(log_path, sizeof log_path, "%s/demo.log", dir);
    snprintf(pid_path, sizeof pid_path, "%s/demo.pid", dir);
    int port = tu_free_port();
    snprintf(base_url, sizeof base_url, "http://127.0.0.1:%d", port);
    FILE *f = fopen(conf_path, "w");
    fprintf(f,
            "worker_processes 2;\nlisten 127.0.0.1:%d;\nshm_instance t%ld;\npid %s;\n"
            "limit_req_zone $binary_remote_addr zone=one:1m rate=10r/s;\n"
            "location /limited { limit_req zone=one burst=5 nodelay; }\n",
            port, (long)getpid(), pid_path);
    fclose(f);
    fflush(NULL);
    char *argv[] = {demo_bin, "-c", conf_path, NULL};
    master = tu_spawn_logged(argv, log_path);
    pid_t pids[4];
    for (int i = 0; i < 4000 && worker_pids(pids, 4) < 2; i++) {
        struct timespec ts = {0, 5 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    ck_assert_msg(worker_pids(pids, 4) == 2, "the demo server did not come up");
}

static void stop_server(void)
{
    kill(master, SIGQUIT);
    int st;
    waitpid(master, &st, 0);
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "master status %d", st);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    ck_assert_int_eq(system(cmd), 0);
}

START_TEST(http_send_broadcast_status_limits)
{
    char out[65536], path[2048], want[256];
    pid_t pids[2];
    start_server();
    ck_assert_int_eq(worker_pids(pids, 2), 2);

    /* send, and the reply comes back */
    snprintf(path, sizeof path, "/send/%d/hi", (int)pids[1]);
    ck_assert_int_eq(get(path, out, sizeof out), 200);
    snprintf(want, sizeof want, "Sent alert to pid %d", (int)pids[1]);
    ck_assert_str_eq(out, want);
    snprintf(want, sizeof want, "%d: sender ", (int)pids[1]);
    ck_assert(await_log(want, 1));
    ck_assert(await_log("says hi", 1));
    snprintf(want, sizeof want, "%d replied hello to you too. you said hi", (int)pids[1]);
    ck_assert(await_log(want, 1));

    /* a pid that is not a worker */
    ck_assert_int_eq(get("/send/1/x", out, sizeof out), 500);
    ck_assert_msg(strstr(out, "pid 1 is not a worker"), "%s", out);

    /* Regression: a pid written as 2^32 + pid was cut down to pid_t and
     * delivered to that worker. Now refused, and nothing reaches it. */
    snprintf(path, sizeof path, "/send/%lld/wrapped", 4294967296LL + pids[1]);
    ck_assert_int_eq(get(path, out, sizeof out), 400);
    ck_assert_msg(strstr(out, "out of range"), "%s", out);
    ck_assert_int_eq(get("/send/-5/x", out, sizeof out), 400);
    ck_assert_int_eq(get("/send/12ab/x", out, sizeof out), 400);
    /* Regression: %0A in alert data forged a line in the log; it is
     * escaped now, so the log has one line for it. */
    snprintf(path, sizeof path, "/send/%d/a%%0A2026/01/01%%2000:00:00%%20%%5Bnotice%%5D%%201:%%20forged",
             (int)pids[1]);
    ck_assert_int_eq(get(path, out, sizeof out), 200);
    ck_assert(await_log("says a\\x0a2026/01/01 00:00:00 [notice] 1: forged", 1));
    ck_assert_int_eq(log_count("\n2026/01/01 00:00:00 [notice] 1: forged"), 0);

    /* broadcast: both workers, the sender included */
    ck_assert_int_eq(get("/broadcast/all", out, sizeof out), 200);
    ck_assert_str_eq(out, "Broadcast alert to 2 workers");
    ck_assert(await_log("says all", 2));
    ck_assert_int_eq(log_count("says wrapped"), 0);
    ck_assert(await_log("you said all", 2));

    /* names at the limits */
    char name[300];
    memset(name, 'n', 254);
    name[254] = '\0';
    snprintf(path, sizeof path, "/send/%d/x?name=%s", (int)pids[0], name);
    ck_assert_int_eq(get(path, out, sizeof out), 200);
    memset(name, 'n', 255);
    name[255] = '\0';
    snprintf(path, sizeof path, "/send/%d/x?name=%s", (int)pids[0], name);
    ck_assert_int_eq(get(path, out, sizeof out), 500);
    ck_assert_msg(strstr(out, "longer than 254"), "%s", out);

    /* limit_req: 20 back to back on one connection */
    char url[128];
    snprintf(url, sizeof url, "%s/limited", base_url);
    char *argv[80];
    int k = 0;
    argv[k++] = "curl";
    argv[k++] = "-s";
    argv[k++] = "-w";
    argv[k++] = "%{http_code}\n";
    for (int i = 0; i < 20; i++) {
        argv[k++] = "-o";
        argv[k++] = "/dev/null";
        argv[k++] = url;
    }
    argv[k] = NULL;
    tu_run_capture(argv, 120000, out, sizeof out, NULL, 0);
    int ok = 0, limited = 0;
    for (char *p = out; *p; p++)
        if (strncmp(p, "200", 3) == 0)
            ok++;
        else if (strncmp(p, "503", 3) == 0)
            limited++;
    ck_assert_msg(ok >= 6 && ok <= 7 && ok + limited == 20, "200: %d, 503: %d", ok, limited);

    /* /status is JSON with the zone, its locks and the bus */
    ck_assert_int_eq(get("/status", out, sizeof out), 200);
    tj_t *j = tj_parse(out, NULL, 0);
    ck_assert_msg(j != NULL, "not JSON: %.200s", out);
    int found_one = 0, found_bus = 0;
    const tj_t *zs = tj_get(j, "zones");
    for (size_t i = 0; zs && i < zs->nkids; i++) {
        const char *n = tj_str(&zs->kids[i], "name");
        if (n && strcmp(n, "one") == 0) {
            found_one = 1;
            ck_assert_str_eq(tj_str(&zs->kids[i], "tag"), "limit_req");
            ck_assert_str_eq(tj_str(&zs->kids[i], "locks.0.name"), "slab");
        }
        if (tj_get(&zs->kids[i], "bus.slots.1.pid"))
            found_bus = 1;
    }
    ck_assert(found_one && found_bus);
    tj_free(j);

    /* kill -9 a worker during load: after the respawn, no request fails */
    kill(pids[0], SIGKILL);
    int after_ok = 0, tries = 0;
    pid_t now[2];
    while (tries++ < 2000) {
        if (worker_pids(now, 2) == 2 && now[0] != pids[0] && now[1] != pids[0])
            break;
        get("/workers", out, sizeof out); /* load meanwhile; may fail while it dies */
    }
    ck_assert_msg(now[0] != pids[0] && now[1] != pids[0], "not respawned");
    for (int i = 0; i < 50; i++)
        after_ok += get("/workers", out, sizeof out) == 200;
    ck_assert_int_eq(after_ok, 50);
    snprintf(want, sizeof want, "worker process %d exited on signal 9", (int)pids[0]);
    ck_assert(await_log(want, 1));
    stop_server();
}
END_TEST

/* ---- the application command line (shk_app_main) -------------------------------------- */

/* Run argv; stdout into out, stderr into err; returns the exit status. */
static int run2(char *const argv[], char *out, size_t ocap, char *err, size_t ecap)
{
    int po[2], pe[2];
    ck_assert_int_eq(pipe(po), 0);
    ck_assert_int_eq(pipe(pe), 0);
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(po[1], 1);
        dup2(pe[1], 2);
        close(po[0]);
        close(po[1]);
        close(pe[0]);
        close(pe[1]);
        execv(argv[0], argv);
        _exit(127);
    }
    close(po[1]);
    close(pe[1]);
    size_t no = 0, ne = 0;
    int open_fds = 2;
    struct pollfd p[2] = {{.fd = po[0], .events = POLLIN}, {.fd = pe[0], .events = POLLIN}};
    while (open_fds > 0) {
        ck_assert_msg(poll(p, 2, 30000) > 0, "%s did not finish", argv[0]);
        for (int i = 0; i < 2; i++) {
            if (p[i].fd < 0 || !p[i].revents)
                continue;
            char *b = i ? err : out;
            size_t *n = i ? &ne : &no, cap = i ? ecap : ocap;
            char tmp[4096];
            ssize_t k = read(p[i].fd, tmp, sizeof tmp);
            if (k <= 0) {
                close(p[i].fd);
                p[i].fd = -1;
                open_fds--;
                continue;
            }
            size_t take = (size_t)k < cap - 1 - *n ? (size_t)k : cap - 1 - *n;
            memcpy(b + *n, tmp, take);
            *n += take;
        }
    }
    out[no] = '\0';
    err[ne] = '\0';
    int st;
    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
}

/* The generation /workers reports (0 if it does not answer). */
static int served_generation(void)
{
    char out[4096];
    if (get("/workers", out, sizeof out) != 200)
        return 0;
    tj_t *j = tj_parse(out, NULL, 0);
    int g = j ? (int)tj_num(j, "generation", 0) : 0;
    tj_free(j);
    return g;
}

/* A decoy for `-s`: a process with SIGHUP, SIGQUIT and SIGTERM blocked that
 * answers each byte on its request pipe with the set of them pending
 * (1 HUP, 2 QUIT, 4 TERM) and takes them. A signal sent by a `-s` that has
 * exited is already pending, so the answer is exact. */
typedef struct {
    pid_t pid;
    int req, rep;
} decoy_t;

static void decoy_start(decoy_t *d)
{
    int rq[2], rp[2];
    sigset_t set;
    ck_assert_int_eq(pipe(rq), 0);
    ck_assert_int_eq(pipe(rp), 0);
    sigemptyset(&set);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGQUIT);
    sigaddset(&set, SIGTERM);
    d->pid = tu_fork_raw();
    if (d->pid == 0) {
        char c;
        sigprocmask(SIG_BLOCK, &set, NULL);
        close(rq[1]);
        close(rp[0]);
        /* the first answer says the signals are blocked */
        if (write(rp[1], "r", 1) != 1)
            tu_exit(1);
        while (read(rq[0], &c, 1) == 1) {
            sigset_t pend;
            struct timespec zero = {0, 0};
            sigpending(&pend);
            c = (char)((sigismember(&pend, SIGHUP) ? 1 : 0) | (sigismember(&pend, SIGQUIT) ? 2 : 0) |
                       (sigismember(&pend, SIGTERM) ? 4 : 0));
            while (sigtimedwait(&set, NULL, &zero) > 0)
                ;
            if (write(rp[1], &c, 1) != 1)
                tu_exit(1);
        }
        tu_exit(0);
    }
    close(rq[0]);
    close(rp[1]);
    d->req = rq[1];
    d->rep = rp[0];
    char c;
    ck_assert_int_eq(read(d->rep, &c, 1), 1);
    ck_assert_int_eq(c, 'r');
}

static int decoy_pending(decoy_t *d)
{
    char c = '?';
    ck_assert_int_eq(write(d->req, &c, 1), 1);
    ck_assert_int_eq(read(d->rep, &c, 1), 1);
    return c;
}

static void decoy_stop(decoy_t *d)
{
    close(d->req);
    ck_assert_int_eq(tu_wait(d->pid), 0);
    close(d->rep);
}

START_TEST(app_command_line)
{
    char out[65536], err[8192], want[1024], bad_conf[300], decoy_conf[300], decoy_pid[300],
        text[600];
    start_server();

    /* -v */
    char *vargv[] = {demo_bin, "-v", NULL};
    ck_assert_int_eq(run2(vargv, out, sizeof out, err, sizeof err), 0);
    snprintf(want, sizeof want, "demo version %s (shmkit %s)\n", shk_version(), shk_version());
    ck_assert_str_eq(out, want);

    /* -t: the demo's directives are known to it */
    char *targv[] = {demo_bin, "-t", "-c", conf_path, NULL};
    ck_assert_int_eq(run2(targv, out, sizeof out, err, sizeof err), 0);
    snprintf(want, sizeof want, "configuration file %s test is successful\n", conf_path);
    ck_assert_str_eq(out, want);
    snprintf(bad_conf, sizeof bad_conf, "%s/bad.conf", dir);
    write_file(bad_conf, "worker_processes 1;\nlimit_rq zone=one;\n");
    char *bargv[] = {demo_bin, "-t", "-c", bad_conf, NULL};
    ck_assert_int_eq(run2(bargv, out, sizeof out, err, sizeof err), 1);
    snprintf(want, sizeof want,
             "unknown directive \"limit_rq\" in %s:2\nconfiguration file %s test failed\n",
             bad_conf, bad_conf);
    ck_assert_str_eq(err, want);
    ck_assert_str_eq(out, "");
    /* while `shmkit check` knows the library's directives only */
    char *cargv[] = {tool_bin, "check", "-c", conf_path, NULL};
    ck_assert_int_eq(run2(cargv, out, sizeof out, err, sizeof err), 1);
    snprintf(want, sizeof want, "unknown directive \"limit_req_zone\" in %s:5\n", conf_path);
    ck_assert_msg(strncmp(err, want, strlen(want)) == 0, "%s", err);
    ck_assert_msg(strstr(err, "-t"), "%s", err);

    /* -s: refused without a pid directive, without a pid file, and when the
     * pid file does not hold one process id; nothing is sent then */
    decoy_t d;
    decoy_start(&d);
    snprintf(decoy_conf, sizeof decoy_conf, "%s/decoy.conf", dir);
    snprintf(decoy_pid, sizeof decoy_pid, "%s/decoy.pid", dir);
    char *sargv[] = {demo_bin, "-s", "reload", "-c", decoy_conf, NULL};
    write_file(decoy_conf, "worker_processes 1;\n");
    ck_assert_int_eq(run2(sargv, out, sizeof out, err, sizeof err), 1);
    snprintf(want, sizeof want, "has no \"pid\" directive");
    ck_assert_msg(strstr(err, want), "%s", err);
    snprintf(text, sizeof text, "pid %s;\n", decoy_pid);
    write_file(decoy_conf, text);
    ck_assert_int_eq(run2(sargv, out, sizeof out, err, sizeof err), 1);
    snprintf(want, sizeof want,
             "shmkit-demo: pid file \"%s\" does not exist: is the master running?; no signal sent\n",
             decoy_pid);
    ck_assert_str_eq(err, want);
    enum { NONE, BIG, PID };
    static const struct {
        const char *pre;
        int num; /* between pre and post: nothing, 2^32 + the decoy's pid, its pid */
        const char *post, *msg;
    } bad[] = {
        {"", BIG, "\n", "holds a number out of range"},
        {"", BIG, "", "holds a number out of range"},
        {"2147483648\n", NONE, "", "holds a number out of range"},
        {"99999999999999999999\n", NONE, "", "holds a number out of range"},
        {"0\n", NONE, "", "holds a number out of range"},
        {"12ab\n", NONE, "", "does not hold a process id"},
        {" ", PID, "\n", "does not hold a process id"},
        {"+", PID, "\n", "does not hold a process id"},
        {"", PID, " \n", "does not hold a process id"},
        {"", PID, "\n\n", "does not hold a process id"},
        {"-1\n", NONE, "", "does not hold a process id"},
        {"", NONE, "", "is empty"},
        {"\n", NONE, "", "is empty"},
        {"0000000000000000000000000000000" /* 31 zeros: too long whatever the pid */, PID, "\n", "is longer than 31 bytes"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (bad[i].num == BIG)
            snprintf(text, sizeof text, "%s%lld%s", bad[i].pre, 4294967296LL + d.pid, bad[i].post);
        else if (bad[i].num == PID)
            snprintf(text, sizeof text, "%s%d%s", bad[i].pre, (int)d.pid, bad[i].post);
        else
            snprintf(text, sizeof text, "%s%s", bad[i].pre, bad[i].post);
        write_file(decoy_pid, text);
        ck_assert_int_eq(run2(sargv, out, sizeof out, err, sizeof err), 1);
        ck_assert_msg(strstr(err, bad[i].msg) && strstr(err, "no signal sent"), "%zu: %s", i, err);
        ck_assert_int_eq(decoy_pending(&d), 0);
    }
    /* a symbolic link and a world-writable file are refused too */
    char real[320];
    snprintf(real, sizeof real, "%s/real.pid", dir);
    snprintf(text, sizeof text, "%d\n", (int)d.pid);
    write_file(real, text);
    unlink(decoy_pid);
    ck_assert_int_eq(symlink(real, decoy_pid), 0);
    ck_assert_int_eq(run2(sargv, out, sizeof out, err, sizeof err), 1);
    ck_assert_msg(strstr(err, "is a symbolic link: refused"), "%s", err);
    unlink(decoy_pid);
    write_file(decoy_pid, text);
    chmod(decoy_pid, 0666);
    ck_assert_int_eq(run2(sargv, out, sizeof out, err, sizeof err), 1);
    ck_assert_msg(strstr(err, "is writable by anyone: refused"), "%s", err);
    ck_assert_int_eq(decoy_pending(&d), 0);
    /* the right pid gets the signal named: reload, quit, stop */
    chmod(decoy_pid, 0644);
    const char *names[] = {"reload", "quit", "stop"};
    for (int i = 0; i < 3; i++) {
        char *argv[] = {demo_bin, "-s", (char *)names[i], "-c", decoy_conf, NULL};
        ck_assert_int_eq(run2(argv, out, sizeof out, err, sizeof err), 0);
        ck_assert_str_eq(err, "");
        ck_assert_int_eq(decoy_pending(&d), 1 << i);
    }
    char *fargv[] = {demo_bin, "-s", "frob", "-c", decoy_conf, NULL};
    ck_assert_int_eq(run2(fargv, out, sizeof out, err, sizeof err), 2);
    ck_assert_msg(strstr(err, "-s takes reload, stop or quit, not \"frob\""), "%s", err);
    ck_assert_int_eq(decoy_pending(&d), 0);
    pid_t gone = d.pid;
    decoy_stop(&d);
    /* a pid file naming a process that is gone */
    snprintf(text, sizeof text, "%d\n", (int)gone);
    write_file(decoy_pid, text);
    ck_assert_int_eq(run2(sargv, out, sizeof out, err, sizeof err), 1);
    snprintf(want, sizeof want, "shmkit-demo: no process %d (from pid file \"%s\"): is the master "
                                "running?\n", (int)gone, decoy_pid);
    ck_assert_str_eq(err, want);

    /* -s reload against the server: a new generation of workers */
    ck_assert_int_eq(served_generation(), 1);
    char *rargv[] = {demo_bin, "-s", "reload", "-c", conf_path, NULL};
    ck_assert_int_eq(run2(rargv, out, sizeof out, err, sizeof err), 0);
    ck_assert(await_log("reload done: generation 2 started", 1));
    int gen = 0;
    for (int i = 0; i < 2000 && (gen = served_generation()) != 2; i++) {
        struct timespec ts = {0, 5 * 1000 * 1000};
        nanosleep(&ts, NULL); /* polling the server, not a sync */
    }
    ck_assert_int_eq(gen, 2);

    /* -s quit: the master and every worker go, the pid file too */
    pid_t pids[4];
    int nw = worker_pids(pids, 4);
    ck_assert_int_eq(nw, 2);
    char *qargv[] = {demo_bin, "-s", "quit", "-c", conf_path, NULL};
    ck_assert_int_eq(run2(qargv, out, sizeof out, err, sizeof err), 0);
    int st = 0;
    pid_t r = 0;
    for (int i = 0; i < 4000 && (r = waitpid(master, &st, WNOHANG)) == 0; i++) {
        struct timespec ts = {0, 5 * 1000 * 1000};
        nanosleep(&ts, NULL); /* polling for the exit, bounded */
    }
    ck_assert_msg(r == master, "the master did not stop");
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "master status %d", st);
    for (int i = 0; i < nw; i++)
        ck_assert_msg(kill(pids[i], 0) == -1 && errno == ESRCH, "worker %d left", (int)pids[i]);
    ck_assert_msg(access(pid_path, F_OK) != 0, "pid file left");
    ck_assert(await_log("graceful stop requested", 1));
    snprintf(text, sizeof text, "rm -rf %s", dir);
    ck_assert_int_eq(system(text), 0);
}
END_TEST

/* ---- the limiter without HTTP ---------------------------------------------------------- */

static shk_cycle_t *cycle;

static const demo_location_t *limiter_at(const char *text, const char *path, int create)
{
    static char cpath[256];
    static shk_app_t app_storage;
    shk_app_t *app = &app_storage;
    demo_app(app);
    snprintf(cpath, sizeof cpath, "/tmp/shk_test_demo_lr_%ld.conf", (long)getpid());
    FILE *f = fopen(cpath, "w");
    fputs(text, f);
    fclose(f);
    cycle = shk_cycle_new(app);
    shk_conf_t *cf = shk_conf_new(cycle);
    ck_assert_int_eq(shk_proc_conf(cf, cycle), SHK_OK);
    ck_assert_int_eq(shk_conf_add(cf, app->directives), SHK_OK);
    /* what shk_master_run does: conf_create (in shk_cycle_new), parse,
     * conf_done, create */
    ck_assert_msg(shk_conf_parse(cf, cpath) == SHK_OK, "%s", shk_last_errmsg());
    ck_assert_int_eq(app->conf_done(cycle, shk_cycle_app_conf(cycle), NULL), SHK_OK);
    if (create)
        ck_assert_int_eq(shk_zones_create(shk_cycle_zones(cycle), NULL), SHK_OK);
    shk_conf_free(cf);
    unlink(cpath);
    return demo_location_find(shk_cycle_app_conf(cycle), path);
}

static const demo_location_t *limiter(const char *text, const char *path)
{
    return limiter_at(text, path, 1);
}

static void limiter_done(void)
{
    shk_cycle_free(cycle);
}

static const char *schedule(const demo_location_t *l, const uint64_t *t, int n)
{
    static char out[256];
    unsigned char key[4] = {127, 0, 0, 1};
    for (int i = 0; i < n; i++) {
        unsigned d;
        int v = demo_limit_at(l, key, 4, t[i], &d);
        out[i] = v == DEMO_LIMIT_PASS ? 'P' : v == DEMO_LIMIT_REJECT ? 'R' : (char)('0' + d / 100);
    }
    out[n] = '\0';
    return out;
}

START_TEST(leaky_bucket_schedules)
{
    /* rate=10r/s burst=5 nodelay: 6 pass at once, then one per 100 ms */
    const demo_location_t *l = limiter("limit_req_zone $binary_remote_addr zone=z:64k rate=10r/s;\n"
                                       "location /a { limit_req zone=z burst=5 nodelay; }\n",
                                       "/a/x");
    ck_assert_ptr_nonnull(l);
    uint64_t t1[] = {1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000, 1100, 1100, 2000};
    ck_assert_str_eq(schedule(l, t1, 11), "PPPPPPRRPRP");
    ck_assert_int_eq(demo_limit_check(l), SHK_OK);
    limiter_done();

    /* without nodelay: the excess is served late, 100 ms per request */
    l = limiter("limit_req_zone $binary_remote_addr zone=z:64k rate=10r/s;\n"
                "location /a { limit_req zone=z burst=5; }\n",
                "/a");
    uint64_t t2[] = {0, 0, 0, 0, 0, 0, 0};
    ck_assert_str_eq(schedule(l, t2, 7), "P12345R");
    limiter_done();

    /* delay=2: two excess requests at once, the rest delayed */
    l = limiter("limit_req_zone $binary_remote_addr zone=z:64k rate=10r/s;\n"
                "location /a { limit_req zone=z burst=5 delay=2; }\n",
                "/a");
    ck_assert_str_eq(schedule(l, t2, 7), "PPP123R");
    limiter_done();

    /* 30r/m, no burst: one every 2 s */
    l = limiter("limit_req_zone $binary_remote_addr zone=z:64k rate=30r/m;\n"
                "location /a { limit_req zone=z; }\n",
                "/a");
    uint64_t t3[] = {0, 1000, 1999, 2000, 2500, 4000};
    ck_assert_str_eq(schedule(l, t3, 6), "PRRPRP");
    limiter_done();

    /* the clock going back: a little counts as no time; a jump of more than
     * a minute makes the node look idle (nginx compares the absolute
     * difference) so it is expired and the client starts afresh */
    l = limiter("limit_req_zone $binary_remote_addr zone=z:64k rate=10r/s;\n"
                "location /a { limit_req zone=z burst=1 nodelay; }\n",
                "/a");
    uint64_t t4[] = {100000, 100000, 99000, 30000, 101000};
    ck_assert_str_eq(schedule(l, t4, 5), "PPRPP");
    limiter_done();
}
END_TEST

START_TEST(tree_expiry_and_full_zone)
{
    const demo_location_t *l = limiter("limit_req_zone $binary_remote_addr zone=z:32k rate=1r/s;\n"
                                       "location /a { limit_req zone=z burst=100 nodelay; }\n",
                                       "/a");
    uint64_t r = tu_seed("tree_expiry_and_full_zone");
    unsigned d;
    /* many clients in a tiny zone: the oldest are reclaimed, everyone passes */
    for (int i = 0; i < 5000; i++) {
        uint32_t ip = (uint32_t)tu_rand(&r);
        ck_assert_int_eq(demo_limit_at(l, &ip, 4, 1000 + (uint64_t)i, &d), DEMO_LIMIT_PASS);
        if (i % 500 == 0)
            ck_assert_int_eq(demo_limit_check(l), SHK_OK);
    }
    uint64_t full = demo_limit_nodes(l);
    ck_assert_uint_gt(full, 10);
    ck_assert_uint_lt(full, 5000);
    ck_assert_int_eq(demo_limit_check(l), SHK_OK);
    /* a minute later, each request expires up to two idle nodes */
    for (int i = 0; i < 100; i++) {
        uint32_t ip = 0xffff0000u + (uint32_t)i;
        demo_limit_at(l, &ip, 4, 200000, &d);
    }
    ck_assert_uint_lt(demo_limit_nodes(l), full);
    ck_assert_int_eq(demo_limit_check(l), SHK_OK);
    limiter_done();
}
END_TEST

/* The check used to take any status of shk_slab_lock() above SHK_EOWNERDEAD
 * (SHK_EINVAL among them) for "held": on a zone not created yet (no slab,
 * so shk_slab_lock(NULL) is SHK_EINVAL) it went on to read the missing
 * tree and crashed. It must report the lock's error instead. */
START_TEST(check_without_the_lock_fails)
{
    const demo_location_t *l = limiter_at("limit_req_zone $binary_remote_addr zone=z:64k "
                                          "rate=10r/s;\n"
                                          "location /a { limit_req zone=z burst=5 nodelay; }\n",
                                          "/a", 0);
    unsigned char key[4] = {127, 0, 0, 1};
    unsigned d;
    ck_assert_ptr_nonnull(l);
    ck_assert_int_eq(demo_limit_check(l), SHK_EINVAL);
    ck_assert_int_eq(demo_limit_at(l, key, 4, 1000, &d), DEMO_LIMIT_REJECT);
    ck_assert_uint_eq(demo_limit_nodes(l), 0);
    limiter_done();
}
END_TEST

/* The check sees damage to the tree, through the library's check (a wrong
 * count) and through its own (a node whose key no longer is its hash). */
START_TEST(check_reports_damage)
{
    const demo_location_t *l = limiter("limit_req_zone $binary_remote_addr zone=z:64k rate=1r/s;\n"
                                       "location /a { limit_req zone=z burst=5 nodelay; }\n",
                                       "/a");
    unsigned d;
    for (uint32_t ip = 1; ip <= 50; ip++)
        demo_limit_at(l, &ip, 4, 1000, &d);
    ck_assert_int_eq(demo_limit_check(l), SHK_OK);
    shk_zone_t *z = shk_zones_find(shk_cycle_zones(cycle), "z");
    shk_rbtree_t *tree = shk_zone_data(z);
    ck_assert_uint_eq(shk_rbtree_count(tree), 50);
    tree->count++;
    ck_assert_int_eq(demo_limit_check(l), SHK_ECORRUPT);
    ck_assert_msg(strstr(shk_last_errmsg(), "zone \"z\": rbtree:"), "%s", shk_last_errmsg());
    tree->count--;
    ck_assert_int_eq(demo_limit_check(l), SHK_OK);
    shk_rbtree_node_t *n = shk_rbtree_max(tree, shk_slab_base(shk_zone_slab(z)));
    n->key++; /* the last node: still in order, but not its address's hash */
    ck_assert_int_eq(demo_limit_check(l), SHK_ECORRUPT);
    ck_assert_msg(strstr(shk_last_errmsg(), "does not hash"), "%s", shk_last_errmsg());
    n->key--;
    ck_assert_int_eq(demo_limit_check(l), SHK_OK);
    limiter_done();
}
END_TEST

typedef struct {
    const demo_location_t *l;
    _Atomic int passed;
} hammer_t;

static int hammer(void *arg)
{
    hammer_t *h = arg;
    unsigned char key[4] = {10, 0, 0, 1};
    unsigned d;
    for (int i = 0; i < 1000; i++)
        if (demo_limit_at(h->l, key, 4, 5000, &d) == DEMO_LIMIT_PASS)
            h->passed++;
    return 0;
}

START_TEST(processes_share_the_buckets)
{
    hammer_t *h = tu_shared(sizeof *h);
    h->l = limiter("limit_req_zone $binary_remote_addr zone=z:64k rate=10r/s;\n"
                   "location /a { limit_req zone=z burst=5 nodelay; }\n",
                   "/a");
    pid_t p[4];
    for (int i = 0; i < 4; i++)
        p[i] = tu_fork(hammer, h);
    for (int i = 0; i < 4; i++)
        tu_wait_ok(p[i]);
    ck_assert_int_eq(h->passed, 6); /* at one instant, burst + 1 in all */
    ck_assert_int_eq(demo_limit_check(h->l), SHK_OK);
    limiter_done();
    tu_unshare(h, sizeof *h);
}
END_TEST

/* The messages a config check gives for `text` (one directive on line 1). */
static const char *check_message(const char *text)
{
    static char msg[1024];
    static shk_app_t app;
    char path[256];
    snprintf(path, sizeof path, "/tmp/shk_test_demo_grammar_%ld.conf", (long)getpid());
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
    demo_app(&app);
    int rc = shk_master_check(path, &app);
    unlink(path);
    ck_assert_msg(rc == SHK_ECONF, "\"%s\" gave %d: %s", text, rc, shk_last_errmsg());
    /* without " in FILE:1", which must be there */
    snprintf(msg, sizeof msg, "%s", shk_last_errmsg());
    char *loc = strstr(msg, " in /tmp/shk_test_demo_grammar_");
    ck_assert_msg(loc && strcmp(strrchr(msg, ':'), ":1") == 0, "%s", msg);
    *loc = '\0';
    return msg;
}

START_TEST(zone_grammar_is_shared)
{
    /* shm_zone NAME:SIZE and limit_req_zone ... zone=NAME:SIZE take their
     * argument through the one parser: same mistakes, same messages */
    char longz[SHK_ZONE_NAME_MAX + 8];
    memset(longz, 'z', SHK_ZONE_NAME_MAX + 1);
    strcpy(longz + SHK_ZONE_NAME_MAX + 1, ":1m");
    const char *bad[] = {"one:10x", "one",    ":1m",   "o.e:1m", "one:0",
                         "a:b:1m",  longz,    "one:99999999999999999999", "one:1m5"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char name[SHK_ZONE_NAME_MAX + 1], text[256], want[1024];
        size_t size;
        ck_assert_int_ne(shk_zone_parse(bad[i], name, &size), SHK_OK);
        snprintf(want, sizeof want, "%s", shk_last_errmsg());
        snprintf(text, sizeof text, "shm_zone %s;\n", bad[i]);
        ck_assert_str_eq(check_message(text), want);
        snprintf(text, sizeof text, "limit_req_zone $binary_remote_addr zone=%s rate=1r/s;\n",
                 bad[i]);
        ck_assert_str_eq(check_message(text), want);
    }
    /* and the declared zone itself goes through the same rules */
    ck_assert_str_eq(check_message("shm_zone one:8k;\n"),
                     check_message("limit_req_zone $binary_remote_addr zone=one:8k rate=1r/s;\n"));
}
END_TEST

int main(void)
{
    Suite *s = suite_create("demo");
    TCase *tc = tcase_create("demo");
    tcase_set_timeout(tc, 180);
    tcase_add_test(tc, leaky_bucket_schedules);
    tcase_add_test(tc, tree_expiry_and_full_zone);
    tcase_add_test(tc, processes_share_the_buckets);
    tcase_add_test(tc, check_without_the_lock_fails);
    tcase_add_test(tc, check_reports_damage);
    tcase_add_test(tc, http_send_broadcast_status_limits);
    tcase_add_test(tc, app_command_line);
    tcase_add_test(tc, zone_grammar_is_shared);
    suite_add_tcase(s, tc);
    return tu_run(s);
}
