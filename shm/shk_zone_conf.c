/*
 * shk_zone_conf.c: the zone grammar, in one place: the name check every
 * zone and instance name goes through (declaration, attach, listing, the
 * directives), what a tag may hold, the `name:size` parser that `shm_zone` and every
 * `zone=name:size` argument use, and the built-in directives shm_zone,
 * shm_instance and shm_mapping (shk_zones_conf).
 */
#include "shk_zone_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int shk_zone_name_check(const char *s, size_t n, const char *what)
{
    if (!s || !n)
        return shk_error(SHK_EINVAL, "empty %s name", what);
    if (n > SHK_ZONE_NAME_MAX)
        return shk_error(SHK_ERANGE, "%s name \"%.*s\" is longer than %d bytes", what, (int)n, s,
                         SHK_ZONE_NAME_MAX);
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-'))
            return shk_error(SHK_EINVAL, "invalid %s name \"%.*s\" (allowed: A-Z a-z 0-9 _ -)",
                             what, (int)n, s);
    }
    return SHK_OK;
}

int shk_zone_tag_printable(const char *tag)
{
    for (const unsigned char *p = (const unsigned char *)tag; *p; p++)
        if (*p < 0x20 || *p == 0x7f)
            return 0;
    return 1;
}

int shk_zone_parse(const char *arg, char name[SHK_ZONE_NAME_MAX + 1], size_t *size)
{
    const char *colon;
    size_t n, sz;
    int rc;

    if (!arg || !name || !size)
        return shk_error(SHK_EINVAL, "NULL argument");
    colon = strrchr(arg, ':');
    if (!colon || colon == arg)
        return shk_error(SHK_EINVAL, "invalid zone \"%s\", expected name:size", arg);
    n = (size_t)(colon - arg);
    if ((rc = shk_zone_name_check(arg, n, "zone")) != SHK_OK)
        return rc;
    rc = shk_parse_size(colon + 1, &sz);
    if (rc != SHK_OK)
        return shk_error(rc, "invalid zone size \"%s\"", colon + 1);
    if (sz == 0)
        return shk_error(SHK_EINVAL, "invalid zone size \"%s\"", colon + 1);
    memcpy(name, arg, n);
    name[n] = '\0';
    *size = sz;
    return SHK_OK;
}

/* ---- directives ------------------------------------------------------------------ */

static int conf_shm_zone(shk_conf_t *cf, int argc, char **argv, void *data)
{
    char name[SHK_ZONE_NAME_MAX + 1];
    size_t size;

    if (shk_zone_parse(argv[1], name, &size) != SHK_OK ||
        !shk_zone_add(data, name, size, argc > 2 ? argv[2] : NULL))
        return shk_conf_error(cf, "%s", shk_last_errmsg());
    return SHK_OK;
}

static int conf_shm_instance(shk_conf_t *cf, int argc, char **argv, void *data)
{
    (void)argc;
    if (shk_zones_set_instance(data, argv[1]) != SHK_OK)
        return shk_conf_error(cf, "%s", shk_last_errmsg());
    return SHK_OK;
}

static int conf_shm_mapping(shk_conf_t *cf, int argc, char **argv, void *data)
{
    unsigned kind, mode = 0600;
    if (strcmp(argv[1], "anon") == 0)
        kind = SHK_ZONE_ANON;
    else if (strcmp(argv[1], "named") == 0)
        kind = SHK_ZONE_NAMED;
    else
        return shk_conf_error(cf, "invalid value \"%s\" in \"%s\" directive, it must be \"anon\" "
                                  "or \"named\"",
                              argv[1], argv[0]);
    if (argc > 2) {
        const char *key, *val;
        size_t klen;
        char *end;
        unsigned long m;
        if (shk_parse_kv(argv[2], &key, &klen, &val) != SHK_OK || klen != 4 ||
            strncmp(key, "mode", 4) != 0)
            return shk_conf_error(cf, "invalid parameter \"%s\"", argv[2]);
        errno = 0;
        m = strtoul(val, &end, 8);
        if (!*val || *end || errno || m > 0777 || !(m & 0600))
            return shk_conf_error(cf, "invalid mode \"%s\" (octal, owner must read and write)",
                                  val);
        mode = (unsigned)m;
    }
    if (shk_zones_set_mapping(data, kind, mode) != SHK_OK)
        return shk_conf_error(cf, "%s", shk_last_errmsg());
    return SHK_OK;
}

int shk_zones_conf(shk_zones_t *reg, shk_conf_t *cf)
{
    if (!reg || !cf)
        return shk_error(SHK_EINVAL, "NULL argument");
    reg->dirs[0] = (shk_conf_directive_t){"shm_zone", SHK_CONF_MAIN,
                                          SHK_CONF_TAKE1 | SHK_CONF_TAKE2, conf_shm_zone, 0, reg};
    reg->dirs[1] = (shk_conf_directive_t){"shm_instance", SHK_CONF_MAIN, SHK_CONF_TAKE1,
                                          conf_shm_instance, 0, reg};
    reg->dirs[2] = (shk_conf_directive_t){"shm_mapping", SHK_CONF_MAIN,
                                          SHK_CONF_TAKE1 | SHK_CONF_TAKE2, conf_shm_mapping, 0,
                                          reg};
    memset(&reg->dirs[3], 0, sizeof reg->dirs[3]);
    return shk_conf_add(cf, reg->dirs);
}
