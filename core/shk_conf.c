/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * shk_conf.c: the configuration reader: tokenizer, directive dispatch with
 * contexts and argument counts, blocks, include (the values of directives
 * are read by shk_conf_value.c; zone names and `name:size` belong to shm/,
 * shk_zone_parse).
 */
#include "shk_conf.h"

#include "shk_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct conf_file_s {
    const char *path; /* as given (for messages) */
    char *real;       /* realpath, for include cycles */
    const char *buf;
    size_t len, pos;
    unsigned line;
} conf_file_t;

struct shk_conf_s {
    void *user;
    const shk_conf_directive_t **tables;
    size_t ntables, cap;
    conf_file_t *files[SHK_CONF_MAX_DEPTH + 1];
    int nfiles;
    unsigned opened;   /* files read by this shk_conf_parse, includes counted */
    size_t bytes_read; /* their bytes, all together */
    int depth; /* block nesting */
    unsigned ctx;
    const char *dir_file; /* where the current directive is */
    unsigned dir_line;
    int located; /* shk_conf_error ran during the current handler */
};

enum { T_WORD, T_SEMI, T_OPEN, T_CLOSE, T_EOF, T_ERR };

typedef struct {
    char **argv;
    unsigned *lines;
    int argc, cap;
    char *tok;
    size_t toklen, tokcap;
} args_t;

shk_conf_t *shk_conf_new(void *user)
{
    shk_conf_t *cf = calloc(1, sizeof *cf);
    if (!cf) {
        shk_error(SHK_ENOMEM, "out of memory");
        return NULL;
    }
    cf->user = user;
    cf->ctx = SHK_CONF_MAIN;
    return cf;
}

void shk_conf_free(shk_conf_t *cf)
{
    if (!cf)
        return;
    free(cf->tables);
    free(cf);
}

static const shk_conf_directive_t *find(shk_conf_t *cf, const char *name)
{
    for (size_t i = 0; i < cf->ntables; i++)
        for (const shk_conf_directive_t *d = cf->tables[i]; d->name; d++)
            if (strcmp(d->name, name) == 0)
                return d;
    return NULL;
}

int shk_conf_add(shk_conf_t *cf, const shk_conf_directive_t *table)
{
    if (!cf || !table)
        return shk_error(SHK_EINVAL, "NULL argument");
    for (const shk_conf_directive_t *d = table; d->name; d++) {
        if (strcmp(d->name, "include") == 0 || find(cf, d->name))
            return shk_error(SHK_EEXIST, "directive \"%s\" is already registered", d->name);
        for (const shk_conf_directive_t *e = table; e < d; e++)
            if (strcmp(e->name, d->name) == 0)
                return shk_error(SHK_EEXIST, "directive \"%s\" appears twice in its table",
                                 d->name);
        if (!d->handler)
            return shk_error(SHK_EINVAL, "directive \"%s\" has no handler", d->name);
    }
    if (cf->ntables == cf->cap) {
        size_t cap = cf->cap ? cf->cap * 2 : 8;
        const shk_conf_directive_t **nt = realloc(cf->tables, cap * sizeof *nt);
        if (!nt)
            return shk_error(SHK_ENOMEM, "out of memory");
        cf->tables = nt;
        cf->cap = cap;
    }
    cf->tables[cf->ntables++] = table;
    return SHK_OK;
}

void *shk_conf_user(shk_conf_t *cf)
{
    return cf ? cf->user : NULL;
}

const char *shk_conf_file(shk_conf_t *cf)
{
    return cf ? cf->dir_file : NULL;
}

unsigned shk_conf_line(shk_conf_t *cf)
{
    return cf ? cf->dir_line : 0;
}

unsigned shk_conf_context(shk_conf_t *cf)
{
    return cf ? cf->ctx : 0;
}

/* shk_error() keeps 1023 bytes. The location (" in FILE:LINE") matters
 * most, so when the whole does not fit, the message part is cut, visibly
 * with "...", and the location is kept. Only a location longer than half the
 * buffer is itself cut (at its end, by shk_error). */
#define MSG_KEEP 1023

static int verror_at(int status, const char *file, unsigned line, const char *fmt, va_list ap)
    __attribute__((format(printf, 4, 0)));
static int verror_at(int status, const char *file, unsigned line, const char *fmt, va_list ap)
{
    char msg[MSG_KEEP + 1], loc[MSG_KEEP + 1];
    int n = vsnprintf(msg, sizeof msg, fmt, ap);
    int l = snprintf(loc, sizeof loc, " in %s:%u", file, line);

    if (n < 0)
        n = snprintf(msg, sizeof msg, "(unformattable message)");
    if (l >= 0 && l <= MSG_KEEP / 2 && n + l > MSG_KEEP)
        memcpy(msg + (MSG_KEEP - l - 3), "...", 4);
    return shk_error(status, "%s%s", msg, loc);
}

int shk_conf_error(shk_conf_t *cf, const char *fmt, ...)
{
    va_list ap;
    int rc;
    if (cf)
        cf->located = 1;
    va_start(ap, fmt);
    rc = verror_at(SHK_ECONF, cf && cf->dir_file ? cf->dir_file : "(none)",
                   cf ? cf->dir_line : 0, fmt, ap);
    va_end(ap);
    return rc;
}

/* An error with status `status` located at FILE:LINE (" in FILE:LINE"
 * appended). With "%s" and shk_last_errmsg() it locates the last error,
 * keeping its status. */
static int locate_last(int status, const char *file, unsigned line, const char *fmt, ...)
    SHK_PRINTF(4, 5);
static int locate_last(int status, const char *file, unsigned line, const char *fmt, ...)
{
    va_list ap;
    int rc;
    va_start(ap, fmt);
    rc = verror_at(status, file, line, fmt, ap);
    va_end(ap);
    return rc;
}

/* A configuration error (SHK_ECONF) at FILE:LINE. */
#define error_at(file, line, ...) locate_last(SHK_ECONF, (file), (line), __VA_ARGS__)

/* ---- tokenizer ----------------------------------------------------------------- */

static int tok_putc(args_t *a, char c)
{
    if (a->toklen + 2 > a->tokcap) {
        size_t cap = a->tokcap ? a->tokcap * 2 : 64;
        char *nt = realloc(a->tok, cap);
        if (!nt)
            return -1;
        a->tok = nt;
        a->tokcap = cap;
    }
    a->tok[a->toklen++] = c;
    return 0;
}

/* Append c to the token being read, within SHK_CONF_MAX_TOKEN; on failure
 * the error is set (naming the file and line) and -1 returned. */
static int tok_add(args_t *a, const char *path, unsigned line, char c)
{
    if (a->toklen >= SHK_CONF_MAX_TOKEN)
        return error_at(path, line, "too long parameter (more than %d bytes)", SHK_CONF_MAX_TOKEN),
               -1;
    if (tok_putc(a, c) != 0)
        return shk_error(SHK_ENOMEM, "out of memory"), -1;
    return 0;
}

static int is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* Read the next token of f into a->tok. Returns T_*; T_ERR has set the
 * error. *line gets the line the token starts on. */
static int next_token(conf_file_t *f, args_t *a, unsigned *line)
{
    const char *b = f->buf;
    for (;;) {
        if (f->pos >= f->len) {
            *line = f->line;
            return T_EOF;
        }
        char c = b[f->pos];
        if (c == '\n') {
            f->line++;
            f->pos++;
        } else if (is_space(c)) {
            f->pos++;
        } else if (c == '#') {
            while (f->pos < f->len && b[f->pos] != '\n')
                f->pos++;
        } else {
            break;
        }
    }
    *line = f->line;
    a->toklen = 0;
    char c = b[f->pos];
    if (c == ';' || c == '{' || c == '}') {
        f->pos++;
        return c == ';' ? T_SEMI : c == '{' ? T_OPEN : T_CLOSE;
    }
    if (c == '"' || c == '\'') {
        char q = c;
        f->pos++;
        for (;;) {
            if (f->pos >= f->len)
                return error_at(f->path, *line, "unexpected end of file, expecting %s",
                                q == '"' ? "'\"'" : "\"'\""),
                       T_ERR;
            c = b[f->pos++];
            if (c == q)
                break;
            if (c == '\n')
                f->line++;
            if (c == '\\' && f->pos < f->len) {
                char e = b[f->pos];
                char out = e == 't' ? '\t' : e == 'n' ? '\n' : e == 'r' ? '\r' : e;
                if (e == '"' || e == '\'' || e == '\\' || e == 't' || e == 'n' || e == 'r') {
                    f->pos++;
                    c = out;
                }
            }
            if (tok_add(a, f->path, *line, c) != 0)
                return T_ERR;
        }
        if (f->pos < f->len) {
            char n = b[f->pos];
            if (!is_space(n) && n != ';' && n != '{' && n != '}')
                return error_at(f->path, f->line, "unexpected \"%c\" after a quoted string", n),
                       T_ERR;
        }
    } else {
        while (f->pos < f->len) {
            c = b[f->pos];
            if (is_space(c) || c == ';' || c == '{' || c == '}')
                break;
            if (tok_add(a, f->path, *line, c) != 0)
                return T_ERR;
            f->pos++;
        }
    }
    /* An empty quoted word ("" or '') put no byte: the buffer may not
     * exist yet. */
    if (!a->tok && tok_putc(a, '\0') != 0)
        return shk_error(SHK_ENOMEM, "out of memory"), T_ERR;
    a->tok[a->toklen] = '\0';
    return T_WORD;
}

static void args_clear(args_t *a)
{
    for (int i = 0; i < a->argc; i++)
        free(a->argv[i]);
    a->argc = 0;
}

static int args_push(args_t *a, unsigned line)
{
    if (a->argc == a->cap) {
        int cap = a->cap ? a->cap * 2 : 8;
        char **nv = realloc(a->argv, (size_t)(cap + 1) * sizeof *nv);
        unsigned *nl;
        if (!nv)
            return -1;
        a->argv = nv;
        nl = realloc(a->lines, (size_t)cap * sizeof *nl);
        if (!nl)
            return -1;
        a->lines = nl;
        a->cap = cap;
    }
    a->argv[a->argc] = malloc(a->toklen + 1);
    if (!a->argv[a->argc])
        return -1;
    memcpy(a->argv[a->argc], a->tok, a->toklen + 1);
    a->lines[a->argc] = line;
    a->argc++;
    a->argv[a->argc] = NULL;
    return 0;
}

/* ---- reader ---------------------------------------------------------------------- */

static int parse_file(shk_conf_t *cf, const char *path, const char *from_file, unsigned from_line);
static int parse_block(shk_conf_t *cf, conf_file_t *f, int in_block);

static int argc_ok(unsigned flags, int nargs)
{
    if ((flags & SHK_CONF_NOARGS) && nargs == 0)
        return 1;
    if ((flags & SHK_CONF_TAKE1) && nargs == 1)
        return 1;
    if ((flags & SHK_CONF_TAKE2) && nargs == 2)
        return 1;
    if ((flags & SHK_CONF_TAKE3) && nargs == 3)
        return 1;
    if ((flags & SHK_CONF_TAKE4) && nargs == 4)
        return 1;
    if ((flags & SHK_CONF_1MORE) && nargs >= 1)
        return 1;
    if ((flags & SHK_CONF_2MORE) && nargs >= 2)
        return 1;
    return 0;
}

/* Run a directive whose words are in a; `block` says it ended with "{". */
static int run_directive(shk_conf_t *cf, conf_file_t *f, args_t *a, int block)
{
    const char *name = a->argv[0];
    unsigned line = a->lines[0];
    const shk_conf_directive_t *d;
    int rc;

    if (strcmp(name, "include") == 0) {
        char path[PATH_MAX];
        if (block)
            return error_at(f->path, line, "unexpected \"{\"");
        if (a->argc != 2)
            return error_at(f->path, line,
                            "invalid number of arguments in \"include\" directive");
        const char *inc = a->argv[1];
        const char *slash = strrchr(f->path, '/');
        if (inc[0] != '/' && slash) {
            int n = snprintf(path, sizeof path, "%.*s/%s", (int)(slash - f->path), f->path, inc);
            if (n < 0 || (size_t)n >= sizeof path)
                return error_at(f->path, line, "include path \"%s\" is too long", inc);
        } else {
            if (strlen(inc) >= sizeof path)
                return error_at(f->path, line, "include path \"%s\" is too long", inc);
            strcpy(path, inc);
        }
        return parse_file(cf, path, f->path, line);
    }

    d = find(cf, name);
    if (!d)
        return error_at(f->path, line, "unknown directive \"%s\"", name);
    if (!(d->contexts & cf->ctx))
        return error_at(f->path, line, "\"%s\" directive is not allowed here", name);
    if ((d->args & SHK_CONF_BLOCK) && !block)
        return error_at(f->path, line, "directive \"%s\" has no opening \"{\"", name);
    if (!(d->args & SHK_CONF_BLOCK) && block)
        return error_at(f->path, line, "directive \"%s\" takes no block, unexpected \"{\"",
                        name);
    if (!argc_ok(d->args, a->argc - 1))
        return error_at(f->path, line, "invalid number of arguments in \"%s\" directive", name);

    if (block && cf->depth >= SHK_CONF_MAX_DEPTH)
        return error_at(f->path, line, "blocks nested too deep (more than %d)",
                        SHK_CONF_MAX_DEPTH);

    cf->dir_file = f->path;
    cf->dir_line = line;
    cf->located = 0;
    rc = d->handler(cf, a->argc, a->argv, d->data);
    if (rc != SHK_OK) {
        /* A handler that failed without shk_conf_error() (a helper's
         * shk_error(), or a positive value) still gets its location. */
        if (rc > 0) {
            rc = SHK_ECONF;
            if (!cf->located)
                return error_at(f->path, line, "\"%s\" directive failed", name);
        }
        if (!cf->located)
            locate_last(rc, f->path, line, "%s", shk_last_errmsg());
        return rc;
    }
    if (!block)
        return SHK_OK;

    /* The block's body, in the directive's own context. */
    unsigned saved = cf->ctx;
    cf->ctx = d->block_ctx ? d->block_ctx : cf->ctx;
    cf->depth++;
    rc = parse_block(cf, f, 1);
    cf->depth--;
    cf->ctx = saved;
    return rc;
}

static int parse_block(shk_conf_t *cf, conf_file_t *f, int in_block)
{
    args_t a = {0};
    int rc = SHK_OK;
    unsigned line = f->line, last = f->line;

    for (;;) {
        int t = next_token(f, &a, &line);
        if (t == T_ERR) {
            rc = shk_last_error();
            break;
        }
        if (t == T_WORD) {
            if (a.argc >= SHK_CONF_MAX_ARGS) {
                rc = error_at(f->path, line, "too many arguments in \"%s\" directive (at most %d)",
                              a.argv[0], SHK_CONF_MAX_ARGS - 1);
                break;
            }
            if (args_push(&a, line) != 0) {
                rc = shk_error(SHK_ENOMEM, "out of memory");
                break;
            }
            last = line;
            continue;
        }
        if (t == T_EOF) {
            if (a.argc)
                rc = error_at(f->path, last, "unexpected end of file, expecting \";\" or \"}\"");
            else if (in_block)
                rc = error_at(f->path, last, "unexpected end of file, expecting \"}\"");
            break;
        }
        if (t == T_CLOSE) {
            if (a.argc || !in_block)
                rc = error_at(f->path, line, "unexpected \"}\"");
            break;
        }
        if (a.argc == 0) {
            rc = error_at(f->path, line, t == T_SEMI ? "unexpected \";\"" : "unexpected \"{\"");
            break;
        }
        rc = run_directive(cf, f, &a, t == T_OPEN);
        args_clear(&a);
        if (rc != SHK_OK)
            break;
        last = f->line; /* the ";" or the "}" that closed the directive */
    }
    args_clear(&a);
    free(a.argv);
    free(a.lines);
    free(a.tok);
    return rc;
}

/* An error about `path` itself: located at the include directive when there
 * is one, bare for the top-level file (as nginx prints it). */
static int file_error(const char *from_file, unsigned from_line, const char *fmt, ...)
    SHK_PRINTF(3, 4);
static int file_error(const char *from_file, unsigned from_line, const char *fmt, ...)
{
    va_list ap;
    int rc;
    va_start(ap, fmt);
    if (from_file) {
        rc = verror_at(SHK_ECONF, from_file, from_line, fmt, ap);
    } else {
        char msg[MSG_KEEP + 1];
        vsnprintf(msg, sizeof msg, fmt, ap);
        rc = shk_error(SHK_ECONF, "%s", msg);
    }
    va_end(ap);
    return rc;
}

/* Read all of fd into a malloc'd buffer. A NUL byte ends the reading at
 * once (so `include /dev/zero;` fails fast), as does passing
 * SHK_CONF_MAX_FILE bytes (a FIFO or device that never ends). */
static int read_all(int fd, const char *path, const char *from_file, unsigned from_line,
                    char **out, size_t *outlen)
{
    char *buf = NULL;
    size_t len = 0, cap = 0;
    int rc;

    for (;;) {
        if (len == cap) {
            size_t ncap = cap ? cap * 2 : 8192;
            char *nb;
            if (cap >= SHK_CONF_MAX_FILE) {
                rc = file_error(from_file, from_line, "file \"%s\" is too large (more than %d bytes)",
                                path, SHK_CONF_MAX_FILE);
                goto fail;
            }
            if (ncap > SHK_CONF_MAX_FILE)
                ncap = SHK_CONF_MAX_FILE;
            /* One byte beyond the limit tells "exactly full" from "more". */
            nb = realloc(buf, ncap + (ncap == SHK_CONF_MAX_FILE));
            if (!nb) {
                rc = shk_error(SHK_ENOMEM, "out of memory reading \"%s\"", path);
                goto fail;
            }
            buf = nb;
            cap = ncap + (ncap == SHK_CONF_MAX_FILE);
        }
        ssize_t n = read(fd, buf + len, cap - len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            rc = file_error(from_file, from_line, "read() \"%s\" failed (%s)", path,
                            strerror(errno));
            goto fail;
        }
        if (n == 0)
            break;
        char *nul = memchr(buf + len, '\0', (size_t)n);
        if (nul) {
            unsigned line = 1;
            for (char *p = buf; p < nul; p++)
                line += *p == '\n';
            rc = error_at(path, line, "unexpected NUL byte");
            goto fail;
        }
        len += (size_t)n;
        if (len > SHK_CONF_MAX_FILE) {
            rc = file_error(from_file, from_line, "file \"%s\" is too large (more than %d bytes)",
                            path, SHK_CONF_MAX_FILE);
            goto fail;
        }
    }
    *out = buf;
    *outlen = len;
    return SHK_OK;
fail:
    free(buf);
    return rc;
}

static int parse_file(shk_conf_t *cf, const char *path, const char *from_file, unsigned from_line)
{
    conf_file_t f = {0};
    char *buf = NULL;
    size_t len = 0;
    int fd, rc;

    if (cf->nfiles > SHK_CONF_MAX_DEPTH)
        return error_at(from_file, from_line, "includes nested too deep (more than %d)",
                        SHK_CONF_MAX_DEPTH);
    /* Depth alone does not bound the work: a few levels of files that each
     * include many others would be read an exponential number of times. */
    if (cf->opened >= SHK_CONF_MAX_FILES)
        return error_at(from_file, from_line, "too many files read (more than %d, includes counted)",
                        SHK_CONF_MAX_FILES);
    cf->opened++;
    do
        fd = open(path, O_RDONLY | O_CLOEXEC);
    while (fd == -1 && errno == EINTR);
    if (fd == -1)
        return file_error(from_file, from_line, "open() \"%s\" failed (%s)", path,
                          strerror(errno));
    f.real = realpath(path, NULL);
    for (int i = 0; f.real && i < cf->nfiles; i++)
        if (cf->files[i]->real && strcmp(cf->files[i]->real, f.real) == 0) {
            close(fd);
            free(f.real);
            return error_at(from_file, from_line, "include cycle: \"%s\" is already being read",
                            path);
        }
    rc = read_all(fd, path, from_file, from_line, &buf, &len);
    close(fd);
    if (rc == SHK_OK && len > SHK_CONF_MAX_TOTAL - cf->bytes_read)
        rc = file_error(from_file, from_line,
                        "\"%s\" takes the files read past %d bytes in all (includes counted)", path,
                        SHK_CONF_MAX_TOTAL);
    if (rc != SHK_OK) {
        free(buf);
        free(f.real);
        return rc;
    }
    cf->bytes_read += len;
    f.path = path;
    f.buf = buf;
    f.len = len;
    f.line = 1;
    cf->files[cf->nfiles++] = &f;
    const char *saved_file = cf->dir_file;
    unsigned saved_line = cf->dir_line;
    rc = parse_block(cf, &f, 0);
    cf->dir_file = saved_file;
    cf->dir_line = saved_line;
    cf->nfiles--;
    free(buf);
    free(f.real);
    return rc;
}

int shk_conf_parse(shk_conf_t *cf, const char *path)
{
    if (!cf || !path)
        return shk_error(SHK_EINVAL, "NULL argument");
    if (cf->nfiles)
        return shk_error(SHK_EBUSY, "shk_conf_parse: the reader is already reading \"%s\"",
                         cf->files[cf->nfiles - 1]->path);
    cf->ctx = SHK_CONF_MAIN;
    cf->depth = 0;
    cf->opened = 0;
    cf->bytes_read = 0;
    return parse_file(cf, path, NULL, 0);
}
