/*
 * shk_internal.h: helpers shared by the library's own .c files; never
 * installed, never included by a public header.
 */
#ifndef SHK_INTERNAL_H
#define SHK_INTERNAL_H

#include "shk_core.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>

#define SHK_LIKELY(x) __builtin_expect(!!(x), 1)
#define SHK_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define SHK_HIDDEN __attribute__((visibility("hidden")))

#define SHK_ALIGN_UP(x, a) (((x) + ((a) - 1)) & ~((__typeof__(x))(a) - 1))
#define SHK_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* The cached pid (see shk_pid()). Written only at load time and by the
 * atfork child handler, when this process runs a single thread. */
extern pid_t shk_pid_cache SHK_HIDDEN;
#define SHK_PID() (shk_pid_cache)

/* Log only when the level is enabled, so callers do not format for nothing. */
extern int shk_log_max SHK_HIDDEN;
#define shk_logf(level, ...)                                                   \
    do {                                                                       \
        if ((level) <= shk_log_max)                                            \
            shk_log((level), __VA_ARGS__);                                     \
    } while (0)

/* The system's page size, read once when the library loads. */
size_t shk_page_size(void) SHK_HIDDEN;

/* [off, off + len) lies inside [0, size), computed without overflow: the
 * check every offset and length read from a mapping goes through. */
static inline int shk_span_ok(uint64_t off, uint64_t len, uint64_t size)
{
    return off <= size && len <= size - off;
}

/*
 * The one check of a mapped layout header (zone, slab pool, bus): the magic
 * (already loaded with SHK_LOAD_ACQUIRE, see shk_atomic_internal.h), the layout
 * version and the recorded size against what the caller expects. `what`
 * names the structure ("zone", "slab pool", "bus") and `name` the object,
 * for the message. Returns SHK_OK, or SHK_ECORRUPT naming the field:
 *   slab pool "one": bad magic 0x0 (not a slab pool, or not initialised)
 *   zone "one": layout version 2, this library reads 3
 *   bus "one": recorded size 4096 does not match 8192
 */
int shk_layout_check(const char *what, const char *name, uint64_t magic, uint64_t want_magic,
                     uint32_t version, uint32_t want_version, uint64_t size,
                     uint64_t want_size) SHK_HIDDEN;

/* Record a failed system call: sets SHK_ESYS with "<what>: <strerror>" and
 * returns SHK_ESYS. errno is preserved. */
int shk_error_sys(const char *what) SHK_HIDDEN;

/* Copy a NUL-terminated string into a fixed buffer. Returns SHK_OK, or
 * SHK_ERANGE (and copies nothing) if it does not fit: shmkit never truncates
 * a name silently. */
int shk_strlcpy_exact(char *dst, size_t dstsz, const char *src) SHK_HIDDEN;

#endif /* SHK_INTERNAL_H */
