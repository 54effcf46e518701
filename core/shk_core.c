/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * shk_core.c: status texts, the per-thread last error, the log sink, the
 * cached pid and its fork handler, liveness checks, clocks, CPU facts.
 */
#include "shk_internal.h"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#define SHK_MSG_MAX 1024

pid_t shk_pid_cache;
int shk_log_max = SHK_LOG_ERR;

static shk_log_handler_t log_fn;
static void *log_ctx;
static unsigned ncpu = 1;
static size_t page_size_cache = 4096;
static unsigned spin_per_us = 1;

static _Thread_local int last_status;
static _Thread_local char last_msg[SHK_MSG_MAX];

/* ---- status ------------------------------------------------------------ */

const char *shk_strerror(int status)
{
    switch (status) {
#define SHK_ERRNO_TEXT_(name, value, text)                                                       \
    case SHK_##name:                                                                             \
        return text;
        SHK_ERRNO_MAP(SHK_ERRNO_TEXT_)
#undef SHK_ERRNO_TEXT_
    default:
        return "unknown error";
    }
}

const char *shk_err_name(int status)
{
    switch (status) {
#define SHK_ERRNO_NAME_(name, value, text)                                                       \
    case SHK_##name:                                                                             \
        return "SHK_" #name;
        SHK_ERRNO_MAP(SHK_ERRNO_NAME_)
#undef SHK_ERRNO_NAME_
    default:
        return "SHK_E?";
    }
}

int shk_last_error(void)
{
    return last_status;
}

const char *shk_last_errmsg(void)
{
    return last_msg;
}

/* vsnprintf into a fixed buffer, marking a cut with "..." */
static void format_line(char *buf, size_t size, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));
static void format_line(char *buf, size_t size, const char *fmt, va_list ap)
{
    int n = vsnprintf(buf, size, fmt, ap);
    if (n < 0) {
        snprintf(buf, size, "(unformattable message)");
    } else if ((size_t)n >= size) {
        memcpy(buf + size - 4, "...", 4);
    }
}

int shk_error(int status, const char *fmt, ...)
{
    va_list ap;
    int saved = errno;
    char buf[SHK_MSG_MAX];

    /* Into a buffer of our own first: an argument may be last_msg itself. */
    va_start(ap, fmt);
    format_line(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    last_status = status;
    memcpy(last_msg, buf, strlen(buf) + 1);
    errno = saved;
    return status;
}

int shk_error_sys(const char *what)
{
    int e = errno;
    shk_error(SHK_ESYS, "%s: %s", what, strerror(e));
    errno = e;
    return SHK_ESYS;
}

int shk_layout_check(const char *what, const char *name, uint64_t magic, uint64_t want_magic,
                     uint32_t version, uint32_t want_version, uint64_t size, uint64_t want_size)
{
    if (magic != want_magic)
        return shk_error(SHK_ECORRUPT, "%s \"%s\": bad magic 0x%llx (not a %s, or not initialised)",
                         what, name, (unsigned long long)magic, what);
    if (version != want_version)
        return shk_error(SHK_ECORRUPT, "%s \"%s\": layout version %u, this library reads %u", what,
                         name, version, want_version);
    if (size != want_size)
        return shk_error(SHK_ECORRUPT, "%s \"%s\": recorded size %llu does not match %llu", what,
                         name, (unsigned long long)size, (unsigned long long)want_size);
    return SHK_OK;
}

int shk_strlcpy_exact(char *dst, size_t dstsz, const char *src)
{
    size_t n = strlen(src);
    if (n >= dstsz)
        return SHK_ERANGE;
    memcpy(dst, src, n + 1);
    return SHK_OK;
}

/* ---- log --------------------------------------------------------------- */

const char *shk_log_level_name(int level)
{
    static const char *const names[] = {"error", "warn", "notice", "info", "debug"};
    if (level < 0 || level > SHK_LOG_DEBUG)
        return "?";
    return names[level];
}

static void default_sink(void *ctx, int level, const char *msg)
{
    (void)ctx;
    /* One fprintf per line so lines from several processes do not interleave
     * inside a line (stderr is unbuffered: one write per call). */
    fprintf(stderr, "shmkit[%ld]: %s: %s\n", (long)SHK_PID(), shk_log_level_name(level), msg);
}

void shk_log_set(shk_log_handler_t fn, void *ctx, int max_level)
{
    log_fn = fn;
    log_ctx = ctx;
    if (max_level < SHK_LOG_ERR)
        max_level = SHK_LOG_ERR;
    if (max_level > SHK_LOG_DEBUG)
        max_level = SHK_LOG_DEBUG;
    shk_log_max = max_level;
}

int shk_log_level(void)
{
    return shk_log_max;
}

void shk_log(int level, const char *fmt, ...)
{
    char buf[SHK_MSG_MAX];
    va_list ap;
    int saved = errno;

    if (level > shk_log_max)
        return;
    va_start(ap, fmt);
    format_line(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    if (log_fn)
        log_fn(log_ctx, level, buf);
    else
        default_sink(NULL, level, buf);
    errno = saved;
}

/* ---- pid --------------------------------------------------------------- */

pid_t shk_pid(void)
{
    return shk_pid_cache;
}

pid_t shk_pid_refresh(void)
{
    shk_pid_cache = getpid();
    return shk_pid_cache;
}

static void atfork_child(void)
{
    shk_pid_cache = getpid();
}

int shk_pid_alive(pid_t pid)
{
    char path[64], buf[256];
    ssize_t n;
    int fd;
    char *p;

    if (pid <= 0)
        return 0;
    if (kill(pid, 0) == -1 && errno == ESRCH)
        return 0;
    /* kill() succeeds on a zombie: an exited process nobody has reaped yet.
     * Its state letter in /proc/<pid>/stat (after the last ')') says so. */
    snprintf(path, sizeof(path), "/proc/%ld/stat", (long)pid);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd == -1)
        return errno == ENOENT ? 0 : 1;
    n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return 1;
    buf[n] = '\0';
    p = strrchr(buf, ')');
    if (p && p[1] == ' ' && (p[2] == 'Z' || p[2] == 'X'))
        return 0;
    return 1;
}

/* ---- time and CPU ------------------------------------------------------ */

uint64_t shk_time_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t shk_time_ms(void)
{
    return shk_time_ns() / 1000000u;
}

size_t shk_page_size(void)
{
    return page_size_cache;
}

unsigned shk_ncpu(void)
{
    return ncpu;
}

unsigned shk_spin_per_us(void)
{
    return spin_per_us;
}

/* Time a burst of relax hints and scale to one microsecond. The cost of the
 * hint varies by two orders of magnitude between CPU generations, so a fixed
 * count would spin for 10 ns on one machine and 1 us on another. */
static void calibrate_spin(void)
{
    const unsigned n = 2000;
    uint64_t best = UINT64_MAX;

    for (int round = 0; round < 3; round++) {
        uint64_t t0 = shk_time_ns();
        for (unsigned i = 0; i < n; i++)
            shk_cpu_relax();
        uint64_t dt = shk_time_ns() - t0;
        if (dt < best)
            best = dt;
    }
    if (best == 0)
        best = 1;
    uint64_t per_us = (uint64_t)n * 1000u / best;
    if (per_us < 1)
        per_us = 1;
    if (per_us > 100000)
        per_us = 100000;
    spin_per_us = (unsigned)per_us;
}

const char *shk_version(void)
{
#define SHK_STR2(x) #x
#define SHK_STR(x) SHK_STR2(x)
    return SHK_STR(SHK_VERSION_MAJOR) "." SHK_STR(SHK_VERSION_MINOR) "." SHK_STR(SHK_VERSION_PATCH);
}

__attribute__((constructor)) static void shk_core_init(void)
{
    long n;

    shk_pid_cache = getpid();
    pthread_atfork(NULL, NULL, atfork_child);
    n = sysconf(_SC_NPROCESSORS_ONLN);
    ncpu = n > 0 ? (unsigned)n : 1;
    n = sysconf(_SC_PAGESIZE);
    if (n > 0)
        page_size_cache = (size_t)n;
    calibrate_spin();
}
