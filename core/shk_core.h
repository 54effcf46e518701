/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * shk_core.h: the ground every shmkit module stands on.
 *
 * Status codes and their text, the per-thread "last error" that explains a
 * failure, the log callback through which the library reports (it never
 * prints on its own), the process's cached pid, monotonic time, and the CPU
 * facts the lock's spin loop needs.
 */
#ifndef SHK_CORE_H
#define SHK_CORE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SHK_API __attribute__((visibility("default")))

#if defined(__GNUC__)
#define SHK_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define SHK_PRINTF(f, a)
#endif

#define SHK_VERSION_MAJOR 0
#define SHK_VERSION_MINOR 1
#define SHK_VERSION_PATCH 0

/*
 * Status codes. Every function that can fail returns one of these as an int:
 * SHK_OK (0) on success, a negative code on failure. Functions returning a
 * pointer return NULL on failure; shk_last_error() and shk_last_errmsg() then
 * say why.
 *
 * SHK_ERRNO_MAP(XX) is the one list: XX(name, value, text) for every code.
 * It generates the enum, shk_strerror() and shk_err_name(); an application
 * may use it too (for a table of its own, say).
 */
#define SHK_ERRNO_MAP(XX)                                                                \
    XX(OK, 0, "success")                                                                 \
    XX(EINVAL, -1, "invalid argument")                  /* bad argument */               \
    XX(ENOMEM, -2, "out of memory")                     /* process heap or shared pool */ \
    XX(EAGAIN, -3, "resource temporarily unavailable")  /* full or busy; try again */    \
    XX(ETIMEDOUT, -4, "timed out")                      /* a timed wait expired */       \
    XX(EOWNERDEAD, -5, "previous owner died")           /* lock taken over; check data */ \
    XX(ESRCH, -6, "no such process")                    /* process, worker or slot */    \
    XX(EPERM, -7, "operation not permitted")            /* not in this state or mode */  \
    XX(EEXIST, -8, "already exists")                    /* or declared differently */    \
    XX(ENOENT, -9, "no such object")                    /* object, file or name */       \
    XX(EBUSY, -10, "busy")                              /* in use */                     \
    XX(ESYS, -11, "system call failed")                 /* the message names it */       \
    XX(ECONF, -12, "configuration error")               /* the message names file:line */ \
    XX(ECORRUPT, -13, "shared structure corrupted")     /* failed validation */          \
    XX(ENOTSUP, -14, "not supported")                   /* not here */                   \
    XX(ERANGE, -15, "out of range")                     /* value out of range, too large */

enum {
#define SHK_ERRNO_ENUM_(name, value, text) SHK_##name = (value),
    SHK_ERRNO_MAP(SHK_ERRNO_ENUM_)
#undef SHK_ERRNO_ENUM_
    SHK_ERRNO_LAST_ = SHK_ERANGE /* the lowest code; for loops over the list */
};

/* Short English text for a status code ("invalid argument"). Never NULL;
 * unknown codes give "unknown error". The string is static. */
SHK_API const char *shk_strerror(int status);

/* The code's name as written in C ("SHK_EINVAL"). Never NULL; unknown codes
 * give "SHK_E?". The string is static. */
SHK_API const char *shk_err_name(int status);

/* The status of the last failure reported by a shmkit call in this thread,
 * SHK_OK if none yet. Successful calls do not reset it. */
SHK_API int shk_last_error(void);

/* A one-line, human-readable account of the last failure in this thread
 * (for example `invalid zone size "10x" in conf/demo.conf:3`), or "" if none.
 * The buffer is thread-local and overwritten by the next failure. */
SHK_API const char *shk_last_errmsg(void);

/* Record a failure: sets this thread's last error and message, returns
 * `status` so a caller can write `return shk_error(SHK_EINVAL, ...)`. Long
 * messages are cut at 1023 bytes with "..." (the status is never lost).
 * The message is formatted into a buffer of its own before it replaces the
 * last one, so shk_last_errmsg() may be among the arguments: re-raise with
 * context as `shk_error(rc, "zone \"%s\": %s", name, shk_last_errmsg())`.
 * Applications built on shmkit may use it for their own errors. */
SHK_API int shk_error(int status, const char *fmt, ...) SHK_PRINTF(2, 3);

/* ---- logging ----------------------------------------------------------- */

enum {
    SHK_LOG_ERR = 0,
    SHK_LOG_WARN = 1,
    SHK_LOG_NOTICE = 2,
    SHK_LOG_INFO = 3,
    SHK_LOG_DEBUG = 4
};

/* A log sink: receives one complete line (no trailing newline). */
typedef void (*shk_log_handler_t)(void *ctx, int level, const char *msg);

/* Set where the library's log lines go and the most verbose level passed on.
 * `fn == NULL` restores the default sink (stderr, "shmkit[pid]: level: msg").
 * The default level is SHK_LOG_ERR. Call it at start-up, before other
 * threads use shmkit: the setting is a plain process-wide variable. */
SHK_API void shk_log_set(shk_log_handler_t fn, void *ctx, int max_level);

/* The current maximum level. */
SHK_API int shk_log_level(void);

/* Emit one log line at `level` through the configured sink, if the level is
 * enabled. Lines longer than 1023 bytes are cut with "...". */
SHK_API void shk_log(int level, const char *fmt, ...) SHK_PRINTF(2, 3);

/* Name of a level ("error", "warn", "notice", "info", "debug"). */
SHK_API const char *shk_log_level_name(int level);

/* ---- process ----------------------------------------------------------- */

/* This process's pid, read from a process-wide cache: no system call. The
 * cache is filled when the library loads and refreshed in the child by a
 * pthread_atfork handler, so it stays right across fork(). A child created by
 * a raw clone()/vfork() that bypasses the atfork handlers must call
 * shk_pid_refresh() before using shmkit. */
SHK_API pid_t shk_pid(void);

/* Re-read getpid() into the cache and return it. */
SHK_API pid_t shk_pid_refresh(void);

/* Whether process `pid` is alive: 1 alive, 0 dead. A process that has exited
 * but not been reaped (a zombie) counts as dead; a live process owned by
 * another user counts as alive. pid <= 0 is never alive. Costs one or two
 * system calls: keep it off fast paths. */
SHK_API int shk_pid_alive(pid_t pid);

/* ---- time and CPU ------------------------------------------------------ */

/* Monotonic clock in nanoseconds and milliseconds (CLOCK_MONOTONIC). */
SHK_API uint64_t shk_time_ns(void);
SHK_API uint64_t shk_time_ms(void);

/* Number of online CPUs, read once at load time. */
SHK_API unsigned shk_ncpu(void);

/* Iterations of shk_cpu_relax() that take about one microsecond on this
 * machine, measured once at load time (at least 1). */
SHK_API unsigned shk_spin_per_us(void);

/* The CPU's spin-wait hint (PAUSE on x86, YIELD on arm64). */
static inline void shk_cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __asm__ __volatile__("pause" ::: "memory");
#elif defined(__aarch64__)
    __asm__ __volatile__("yield" ::: "memory");
#else
    __asm__ __volatile__("" ::: "memory");
#endif
}

/* Library version as "major.minor.patch". */
SHK_API const char *shk_version(void);

#ifdef __cplusplus
}
#endif

#endif /* SHK_CORE_H */
