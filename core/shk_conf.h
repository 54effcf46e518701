/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * shk_conf.h: an nginx-style configuration reader any application can use.
 *
 * Syntax: directives `name arg ...;`, blocks `name args { ... }`, `#`
 * comments to the end of the line, single- and double-quoted strings with
 * escapes (\" \' \\ \t \n \r), `$variables` kept as plain tokens, and
 * `include FILE;` (relative to the including file). Applications (and the
 * higher shmkit modules) register their directives in tables: name, allowed
 * contexts, argument count, handler. Every error names the file and line,
 * nginx style: `unknown directive "limit_rq" in conf/demo.conf:7`.
 * See docs/config.md for the grammar and every message.
 */
#ifndef SHK_CONF_H
#define SHK_CONF_H

#include <stddef.h>
#include <sys/types.h>

#include "shk_core.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SHK_CONF_MAX_ARGS 16 /* per directive, the name included */
#define SHK_CONF_MAX_TOKEN (64 * 1024) /* longest token, bytes */
#define SHK_CONF_MAX_DEPTH 16          /* include and block nesting */
#define SHK_CONF_MAX_FILE (16 * 1024 * 1024) /* longest file, bytes (each include apart) */

/* The whole work of one shk_conf_parse: files read (the top one and every
 * include, each time it is included) and their bytes all together. */
#define SHK_CONF_MAX_FILES 1024
#define SHK_CONF_MAX_TOTAL (64 * 1024 * 1024)

/* Contexts, as bit masks. SHK_CONF_MAIN is the top level; applications
 * define their block contexts from SHK_CONF_USER up, e.g.
 * #define MY_LOCATION (SHK_CONF_USER << 0). */
#define SHK_CONF_MAIN 0x1u
#define SHK_CONF_ANY 0xffffffffu
#define SHK_CONF_USER 0x100u

/* Argument counts (OR them) and the block flag. */
#define SHK_CONF_NOARGS 0x001u
#define SHK_CONF_TAKE1 0x002u
#define SHK_CONF_TAKE2 0x004u
#define SHK_CONF_TAKE3 0x008u
#define SHK_CONF_TAKE4 0x010u
#define SHK_CONF_1MORE 0x100u
#define SHK_CONF_2MORE 0x200u
#define SHK_CONF_BLOCK 0x400u /* the directive opens a block { ... } */

typedef struct shk_conf_s shk_conf_t; /* a reader (opaque) */

/* argv[0] is the directive's name, argv[1..argc-1] its arguments, unquoted
 * and unescaped. The strings live until the handler returns. Return SHK_OK,
 * or an error (use shk_conf_error to get the file:line). */
typedef int (*shk_conf_handler_t)(shk_conf_t *cf, int argc, char **argv, void *data);

typedef struct shk_conf_directive_s {
    const char *name;
    unsigned contexts;          /* where it may appear (mask) */
    unsigned args;              /* SHK_CONF_TAKE1 | ... | SHK_CONF_BLOCK */
    shk_conf_handler_t handler; /* for a block: called at "{" */
    unsigned block_ctx;         /* a block's body is read in this context */
    void *data;                 /* passed to the handler */
} shk_conf_directive_t;         /* a table ends with a NULL name */

/* A new reader; `user` is returned by shk_conf_user(). NULL on ENOMEM. */
SHK_API shk_conf_t *shk_conf_new(void *user);
SHK_API void shk_conf_free(shk_conf_t *cf);

/* Register a table of directives. The table must outlive the reader. A
 * name already registered: SHK_EEXIST. */
SHK_API int shk_conf_add(shk_conf_t *cf, const shk_conf_directive_t *table);

/*
 * Read a file, calling handlers in order. Returns SHK_OK, or SHK_ECONF
 * (syntax, unknown or misplaced directive, wrong argument count, a
 * handler's error) with the message in shk_last_errmsg(), e.g.
 *   unexpected end of file, expecting ";" or "}" in conf/demo.conf:12
 *   open() "conf/x.conf" failed (No such file or directory)
 * The file name is given as the path was (relative stays relative). A
 * handler's own status is returned when it is not SHK_ECONF (e.g.
 * SHK_ENOMEM); a positive one becomes SHK_ECONF. A handler that fails
 * without shk_conf_error() still gets " in FILE:LINE" appended to its
 * message. Limits, each reported: SHK_CONF_MAX_ARGS words per directive,
 * SHK_CONF_MAX_TOKEN bytes per word, SHK_CONF_MAX_DEPTH nested blocks and
 * nested includes, SHK_CONF_MAX_FILE bytes per file, SHK_CONF_MAX_FILES
 * files and SHK_CONF_MAX_TOTAL bytes read in all, no NUL byte. The
 * reader may parse several files in turn, but not from inside one of its
 * handlers (SHK_EBUSY). Not thread-safe: one reader, one thread.
 */
SHK_API int shk_conf_parse(shk_conf_t *cf, const char *path);

SHK_API void *shk_conf_user(shk_conf_t *cf);
/* While a handler runs: the file, line and context of its directive. */
SHK_API const char *shk_conf_file(shk_conf_t *cf);
SHK_API unsigned shk_conf_line(shk_conf_t *cf);
SHK_API unsigned shk_conf_context(shk_conf_t *cf);

/* For handlers: format a message, append " in FILE:LINE" of the directive
 * being run, make it the last error and return SHK_ECONF. A message too
 * long for the last-error buffer (1023 bytes) is cut in the middle, with
 * "...", so the location stays. The message is formatted into a buffer of
 * its own first, so shk_last_errmsg() may be an argument: a handler
 * re-raises a helper's error as shk_conf_error(cf, "%s", shk_last_errmsg()). */
SHK_API int shk_conf_error(shk_conf_t *cf, const char *fmt, ...) SHK_PRINTF(2, 3);

/* "10m" -> 10485760. Digits then an optional k/K, m/M or g/G; nothing
 * else. SHK_EINVAL for junk (empty, sign, space, other suffix), SHK_ERANGE
 * on overflow. */
SHK_API int shk_parse_size(const char *s, size_t *out);

/* "10s" -> 10000 milliseconds. One or more terms of digits and a unit,
 * ms, s, m, h or d, from the largest unit down and each at most once
 * ("1m30s", "1h", "500ms"); a bare number is seconds ("30" is 30000).
 * Nothing else: no sign, space or decimal point. SHK_EINVAL for junk,
 * SHK_ERANGE when the total does not fit in an unsigned of milliseconds
 * (UINT_MAX, about 49 days). *ms is written only on success. */
SHK_API int shk_parse_duration(const char *s, unsigned *ms);

/* A process id: `len` bytes of s (no NUL needed), digits only, 1 to
 * INT_MAX. SHK_EINVAL for anything else (empty, sign, space, junk),
 * SHK_ERANGE for 0 or a number past INT_MAX: never cut down to a pid_t, so
 * 2^32 + pid is refused rather than taken for pid. *out is written only on
 * success. */
SHK_API int shk_parse_pid(const char *s, size_t len, pid_t *out);

/* "key=value": *key and *keylen give the key, *val the value (both point
 * into arg). SHK_EINVAL when there is no '=' or the key is empty. */
SHK_API int shk_parse_kv(const char *arg, const char **key, size_t *keylen, const char **val);

/* The longest key shk_conf_params hands to its callback. */
#define SHK_CONF_KEY_MAX 63

/* One key=value parameter for shk_conf_params: key is NUL-terminated
 * (at most SHK_CONF_KEY_MAX bytes), val points into the directive's word.
 * Return SHK_OK when taken; SHK_ENOENT for a key this directive does not
 * have; SHK_ECONF after raising a message of its own with shk_conf_error;
 * any other negative status for a value it refuses. */
typedef int (*shk_conf_param_t)(shk_conf_t *cf, const char *key, const char *val, void *ctx);

/* For handlers: hand each of argv[first..argc-1] (first >= 1), a
 * "key=value" word, to set(cf, key, val, ctx), in order, stopping at the
 * first refusal: a word without '=' or with an empty or too long key, and
 * a key set answers SHK_ENOENT to, fail with
 *   invalid parameter "WORD" in "DIRECTIVE" directive in FILE:LINE
 * a refused value with
 *   invalid value in "WORD" of "DIRECTIVE" directive in FILE:LINE
 * (both SHK_ECONF); set's own SHK_ECONF is passed on as it is. Returns
 * SHK_OK when every word was taken, SHK_EINVAL for a NULL argument. */
SHK_API int shk_conf_params(shk_conf_t *cf, int argc, char **argv, int first, shk_conf_param_t set,
                            void *ctx);

#ifdef __cplusplus
}
#endif

#endif /* SHK_CONF_H */
