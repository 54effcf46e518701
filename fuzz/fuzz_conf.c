/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * fuzz_conf.c: the configuration reader on arbitrary bytes, with the
 * library's own directives (the supervisor's and the zones') registered,
 * so their argument parsers run too. The bytes are written to a file in a
 * private empty directory, so a relative include names nothing (through
 * /proc/self/fd an `include 3;` read the fuzzer's own pipe and blocked).
 * Properties: the reader returns SHK_OK or an error with a non-empty
 * message; never a crash, a hang or a leak.
 */
#include "fuzz.h"
#include "shmkit.h"

#include <fcntl.h>
#include <string.h>
#include <unistd.h>

static int h_any(shk_conf_t *cf, int argc, char **argv, void *data)
{
    (void)cf, (void)data;
    /* Touch every argument: the reader promises NUL-terminated words. */
    size_t n = 0;
    for (int i = 0; i < argc; i++)
        n += strlen(argv[i]);
    return n > (size_t)1 << 40 ? SHK_ERANGE : SHK_OK;
}

#define CTX_A (SHK_CONF_USER << 0)

static const shk_conf_directive_t table[] = {
    {"a", SHK_CONF_ANY, SHK_CONF_NOARGS | SHK_CONF_TAKE1 | SHK_CONF_TAKE2, h_any, 0, NULL},
    {"m", SHK_CONF_ANY, SHK_CONF_1MORE, h_any, 0, NULL},
    {"b", SHK_CONF_ANY, SHK_CONF_NOARGS | SHK_CONF_TAKE1 | SHK_CONF_BLOCK, h_any, CTX_A, NULL},
    {NULL, 0, 0, NULL, 0, NULL},
};

static char dir[64], path[96];

static void cleanup(void)
{
    unlink(path);
    rmdir(dir);
}

SHK_FUZZ_TARGET(conf)
{
    if (!dir[0]) {
        snprintf(dir, sizeof dir, "/tmp/shk_fuzz_conf.XXXXXX");
        FUZZ_CHECK(mkdtemp(dir) != NULL, "mkdtemp");
        snprintf(path, sizeof path, "%s/input.conf", dir);
        atexit(cleanup);
    }
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    FUZZ_CHECK(fd >= 0, "open %s", path);
    for (size_t off = 0; off < size;) {
        ssize_t w = write(fd, data + off, size - off);
        FUZZ_CHECK(w > 0, "write");
        off += (size_t)w;
    }
    close(fd);

    shk_app_t app = {0};
    shk_cycle_t *cy = shk_cycle_new(&app);
    shk_conf_t *cf = shk_conf_new(cy);
    FUZZ_CHECK(cy && cf, "set-up");
    FUZZ_CHECK(shk_proc_conf(cf, cy) == SHK_OK, "proc directives");
    FUZZ_CHECK(shk_conf_add(cf, table) == SHK_OK, "table");
    int rc = shk_conf_parse(cf, path);
    FUZZ_CHECK(rc == SHK_OK || (rc < 0 && shk_last_errmsg()[0] != '\0'), "status %d, message \"%s\"",
               rc, shk_last_errmsg());
    shk_conf_free(cf);
    shk_cycle_free(cy);
    return 0;
}
