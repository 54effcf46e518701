/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * shk_app.c: shk_app_main, an application's command line: -c FILE, -t (test
 * the configuration with the application's directives), -s reload|stop|quit
 * (signal the running master found through the configuration's pid file),
 * -v, -h, and otherwise run the master. This is the one file of the library
 * that prints: the application handed it its command line, and answering
 * on stdout and stderr is that job. The pid file is untrusted input: it is
 * opened without following links, read with a bound and parsed with a
 * range check before any cast.
 */
#include "shk_proc_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Longest pid file read, bytes: "2147483647\n" is 11. */
#define PID_FILE_MAX 31

static const struct {
    const char *name;
    int sig;
    const char *sig_name;
} signals[] = {
    {"reload", SIGHUP, "SIGHUP"},
    {"stop", SIGTERM, "SIGTERM"},
    {"quit", SIGQUIT, "SIGQUIT"},
};

static void usage(FILE *f, const char *prog, const shk_app_t *app)
{
    const char *def = app && app->conf_path ? app->conf_path : NULL;
    fprintf(f,
            "usage: %s [-c FILE] [-t | -s SIGNAL] [-v] [-h]\n"
            "  -c FILE    configuration file (%s%s)\n"
            "  -t         test the configuration and exit\n"
            "  -s SIGNAL  signal the running master (found through the configuration's pid\n"
            "             file): reload (SIGHUP), stop (SIGTERM: fast), quit (SIGQUIT: graceful)\n"
            "  -v         print the version and exit\n"
            "  -h         print this text and exit\n"
            "Without -t or -s, %s runs its master in the foreground: SIGHUP reloads,\n"
            "SIGQUIT stops gracefully, SIGTERM and SIGINT stop fast.\n",
            prog, def ? "default: " : "required", def ? def : "", prog);
}

static int usage_error(const char *prog, const shk_app_t *app, const char *what, const char *arg)
{
    fprintf(stderr, "%s: %s%s%s%s\n", prog, what, arg ? " \"" : "", arg ? arg : "",
            arg ? "\"" : "");
    usage(stderr, prog, app);
    return 2;
}

/* The master's pid from the pid file at `path`. */
static int read_pid_file(const char *path, pid_t *out)
{
    char buf[PID_FILE_MAX + 1];
    size_t n = 0, len;
    ssize_t k;
    struct stat st;
    int fd;

    /* O_NONBLOCK: a FIFO put in its place must not hang us in open(). */
    fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT)
            return shk_error(SHK_ENOENT, "pid file \"%s\" does not exist: is the master running?",
                             path);
        if (errno == ELOOP)
            return shk_error(SHK_EPERM, "pid file \"%s\" is a symbolic link: refused", path);
        return shk_error(SHK_ESYS, "open() \"%s\" failed (%s)", path, strerror(errno));
    }
    if (fstat(fd, &st) != 0) {
        int rc = shk_error(SHK_ESYS, "fstat() \"%s\" failed (%s)", path, strerror(errno));
        close(fd);
        return rc;
    }
    if (!S_ISREG(st.st_mode) || (st.st_mode & S_IWOTH)) {
        close(fd);
        return shk_error(SHK_EPERM, "pid file \"%s\" is %s: refused", path,
                         S_ISREG(st.st_mode) ? "writable by anyone" : "not a regular file");
    }
    while (n < sizeof buf && (k = read(fd, buf + n, sizeof buf - n)) != 0) {
        if (k < 0) {
            if (errno == EINTR)
                continue;
            int rc = shk_error(SHK_ESYS, "read() \"%s\" failed (%s)", path, strerror(errno));
            close(fd);
            return rc;
        }
        n += (size_t)k;
    }
    close(fd);
    if (n == sizeof buf)
        return shk_error(SHK_EINVAL, "pid file \"%s\" is longer than %d bytes: not a pid file",
                         path, PID_FILE_MAX);
    len = n && buf[n - 1] == '\n' ? n - 1 : n;
    if (len == 0)
        return shk_error(SHK_EINVAL, "pid file \"%s\" is empty", path);
    switch (shk_parse_pid(buf, len, out)) {
    case SHK_OK:
        return SHK_OK;
    case SHK_ERANGE:
        return shk_error(SHK_ERANGE,
                         "pid file \"%s\" holds a number out of range (a process id is 1 to %d)",
                         path, INT_MAX);
    default:
        return shk_error(SHK_EINVAL, "pid file \"%s\" does not hold a process id", path);
    }
}

/* -s NAME: signal the master the configuration's pid file names. */
static int send_signal(const char *prog, const char *conf, const shk_app_t *app, unsigned which)
{
    char pid_path[PATH_MAX];
    shk_cycle_t *cy;
    pid_t pid = 0;

    cy = shk_cycle_read(conf, app);
    if (!cy) {
        fprintf(stderr, "%s: %s\n", prog, shk_last_errmsg());
        return 1;
    }
    memcpy(pid_path, cy->pid_path, sizeof pid_path);
    shk_cycle_free(cy);
    if (!pid_path[0]) {
        fprintf(stderr,
                "%s: the configuration file %s has no \"pid\" directive, so the master cannot "
                "be found\n",
                prog, conf);
        return 1;
    }
    if (read_pid_file(pid_path, &pid) != SHK_OK) {
        fprintf(stderr, "%s: %s; no signal sent\n", prog, shk_last_errmsg());
        return 1;
    }
    /* A zombie is no master (shk_pid_alive); the pid could still have been
     * reused by another process if a master died without removing its pid
     * file, a hazard every pid file shares. */
    if (!shk_pid_alive(pid)) {
        fprintf(stderr, "%s: no process %d (from pid file \"%s\"): is the master running?\n",
                prog, (int)pid, pid_path);
        return 1;
    }
    if (kill(pid, signals[which].sig) != 0) {
        fprintf(stderr, "%s: kill(%d, %s) failed (%s)\n", prog, (int)pid,
                signals[which].sig_name, strerror(errno));
        return 1;
    }
    return 0;
}

int shk_app_main(int argc, char **argv, const shk_app_t *app, const shk_master_opts_t *opts)
{
    const char *prog = argc > 0 && argv && argv[0] ? argv[0] : shk_proc_app_name(app);
    const char *conf = app ? app->conf_path : NULL, *sig = NULL;
    int test = 0, version = 0, help = 0, rc;
    unsigned which = 0;

    if (strrchr(prog, '/'))
        prog = strrchr(prog, '/') + 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-c") == 0 || strcmp(a, "-s") == 0) {
            if (i + 1 >= argc)
                return usage_error(prog, app, "a value is missing after", a);
            if (a[1] == 'c')
                conf = argv[++i];
            else
                sig = argv[++i];
        } else if (strcmp(a, "-t") == 0) {
            test = 1;
        } else if (strcmp(a, "-v") == 0 || strcmp(a, "--version") == 0) {
            version = 1;
        } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0 || strcmp(a, "-?") == 0) {
            help = 1;
        } else {
            return usage_error(prog, app, "unknown option", a);
        }
    }
    if (help) {
        usage(stdout, prog, app);
        return 0;
    }
    if (version) {
        printf("%s version %s (shmkit %s)\n", shk_proc_app_name(app),
               app && app->version ? app->version : shk_version(), shk_version());
        return 0;
    }
    if (sig) {
        while (which < SHK_ARRAY_LEN(signals) && strcmp(signals[which].name, sig) != 0)
            which++;
        if (which == SHK_ARRAY_LEN(signals))
            return usage_error(prog, app, "-s takes reload, stop or quit, not", sig);
    }
    if (test && sig)
        return usage_error(prog, app, "-t and -s do not go together", NULL);
    if (!conf)
        return usage_error(prog, app, "no configuration file: give -c FILE", NULL);

    if (test) {
        rc = shk_master_check(conf, app);
        if (rc == SHK_OK)
            printf("configuration file %s test is successful\n", conf);
        else
            fprintf(stderr, "%s\nconfiguration file %s test failed\n", shk_last_errmsg(), conf);
        return rc == SHK_OK ? 0 : 1;
    }
    if (sig)
        return send_signal(prog, conf, app, which);
    rc = shk_master_run(conf, app, opts);
    if (rc != SHK_OK) {
        fprintf(stderr, "%s: %s\n", prog, shk_last_errmsg());
        return 1;
    }
    return 0;
}
