/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * shmkit.c: the `shmkit` command: inspect live named zones (stat, zones,
 * and top: the live view, in shmkit_top*.c) and test configuration files against the library's own directives
 * (check), as `nginx -t` does. An application's own directives are its
 * business: it checks them with its -t (shk_app_main). A thin layer: the
 * reports are the stat module's (shk_stat_render, shk_stat_render_list
 * over shk_zones_list), and every message that may hold someone else's
 * bytes goes out escaped as the reports escape them (shk_stat_escape).
 */
#include "shmkit.h"
#include "shmkit_top_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SHM_DIR "/dev/shm"

static const char *prog = "shmkit";

static void usage_main(FILE *f)
{
    fprintf(f,
            "usage: %s VERB [OPTIONS]\n"
            "\n"
            "Inspect shmkit shared-memory zones and configuration files.\n"
            "\n"
            "verbs:\n"
            "  stat [--json] [--instance NAME] [ZONE...]\n"
            "                 attach to named zones read-only and print their size, tag,\n"
            "                 generation, creator, slab pool, locks and bus\n"
            "  top [--instance NAME] [--interval MS] [--once] [ZONE...]\n"
            "                 a live view of an instance's zones, refreshed every second:\n"
            "                 slab classes, lock rates, bus queues and alert rates,\n"
            "                 channels (one text report when not on a terminal)\n"
            "  zones [--json] list the live named zones of every instance\n"
            "  check -c FILE  test a configuration file\n"
            "  help [VERB]    this text, or a verb's\n"
            "\n"
            "Run '%s VERB --help' for a verb's options.\n",
            prog, prog);
}

static void usage_stat(FILE *f)
{
    fprintf(f,
            "usage: %s stat [--json] [--instance NAME] [ZONE...]\n"
            "\n"
            "Attach read-only to the named zones of instance NAME (default \"default\") and\n"
            "print, for each: size, tag, generation, creator pid, the slab pool (pages\n"
            "total and free, the largest free run, failures, process caches), the size-class\n"
            "table (size, used, cached, total, requests, failures), every lock in the zone\n"
            "(owner pid or free, waiters, counters) and the bus if the zone holds one (a row\n"
            "per slot). Without ZONE, every zone of the instance. --json prints one JSON\n"
            "document (the demo's /status prints the same). Strings are escaped: the text\n"
            "shows control bytes and bytes >= 0x80 as \\xHH (docs/stat.md).\n"
            "Exit status: 0, or 1 if a zone could not be attached.\n",
            prog);
}

static void usage_zones(FILE *f)
{
    fprintf(f,
            "usage: %s zones [--json]\n"
            "\n"
            "List the named zones found in " SHM_DIR ": instance, zone, size, tag, generation\n"
            "and creator pid (alive or gone). Objects that are not valid zones are listed\n"
            "with the reason; names that are not zone names are left out. --json prints\n"
            "one JSON document: {\"zones\": [...]}.\n",
            prog);
}

static void usage_check(FILE *f)
{
    fprintf(f,
            "usage: %s check -c FILE\n"
            "\n"
            "Read FILE with the library's own directives only: worker_processes, listen,\n"
            "pid, worker_shutdown_timeout, bus_queue, channels, shm_zone, shm_instance,\n"
            "shm_mapping and include. Print \"configuration file FILE test is successful\", or the first\n"
            "error and exit 1. Any other directive is an error here: an application built\n"
            "on shmkit checks its configuration itself, with its own directives too (its\n"
            "-t, e.g. shmkit-demo -t -c FILE).\n",
            prog);
}

static int is_help(const char *a)
{
    return strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0;
}

/* s on f, escaped for a terminal: a message may name an object or quote
 * an argument or a configuration file byte for byte. */
static void put_esc(FILE *f, const char *s)
{
    char *e = shk_stat_escape(s, 0);
    fputs(e ? e : "(out of memory)", f);
    free(e);
}

/* "shmkit VERB: MSG" on stderr. */
static void complain(const char *verb, const char *msg)
{
    fprintf(stderr, "%s %s: ", prog, verb);
    put_esc(stderr, msg);
    fputc('\n', stderr);
}

/* "shmkit VERB: unknown WHAT "ARG"" on stderr. */
static void complain_arg(const char *verb, const char *what, const char *arg)
{
    fprintf(stderr, "%s %s: unknown %s \"", prog, verb, what);
    put_esc(stderr, arg);
    fputs("\"\n", stderr);
}

/* Print a report from shk_stat_render*, or complain. */
static int emit(const char *verb, char *out)
{
    if (!out) {
        complain(verb, shk_last_errmsg());
        return 1;
    }
    fputs(out, stdout);
    free(out);
    return 0;
}

static int cmd_stat(int argc, char **argv)
{
    const char *instance = "default";
    unsigned flags = 0, nz = 0, nnames = 0;
    char **names = NULL;
    shk_zone_name_t *found = NULL;
    int rc = 0;
    shk_zone_t **zones;
    int i;

    for (i = 1; i < argc; i++) {
        if (is_help(argv[i])) {
            usage_stat(stdout);
            return 0;
        } else if (strcmp(argv[i], "--json") == 0) {
            flags |= SHK_STAT_JSON;
        } else if (strcmp(argv[i], "--instance") == 0 && i + 1 < argc) {
            instance = argv[++i];
        } else if (strncmp(argv[i], "--instance=", 11) == 0) {
            instance = argv[i] + 11;
        } else if (argv[i][0] == '-') {
            complain_arg("stat", "option", argv[i]);
            usage_stat(stderr);
            return 2;
        } else {
            break;
        }
    }
    if (i < argc) {
        names = argv + i;
        nnames = (unsigned)(argc - i);
    } else if (shk_zones_list(instance, &found, &nnames) != SHK_OK) {
        complain("stat", shk_last_errmsg());
        return 1;
    }
    zones = calloc(nnames ? nnames : 1, sizeof *zones);
    if (!zones) {
        shk_zones_list_free(found);
        return 2;
    }
    for (unsigned k = 0; k < nnames; k++) {
        shk_zone_t *z = shk_zone_attach(instance, found ? found[k].zone : names[k],
                                        SHK_ZONE_RDONLY);
        if (!z) {
            complain("stat", shk_last_errmsg());
            rc = 1;
            continue;
        }
        zones[nz++] = z;
    }
    if (emit("stat", shk_stat_render(zones, nz, instance, flags)) != 0)
        rc = 1;
    for (unsigned k = 0; k < nz; k++)
        shk_zone_detach(zones[k]);
    free(zones);
    shk_zones_list_free(found);
    if (!nnames && !(flags & SHK_STAT_JSON)) {
        fprintf(stderr, "%s stat: no named zones for instance \"", prog);
        put_esc(stderr, instance);
        fputs("\"\n", stderr);
    }
    return rc;
}

static int cmd_zones(int argc, char **argv)
{
    unsigned flags = 0, n;
    shk_zone_name_t *found;
    int rc;

    for (int i = 1; i < argc; i++) {
        if (is_help(argv[i])) {
            usage_zones(stdout);
            return 0;
        } else if (strcmp(argv[i], "--json") == 0) {
            flags |= SHK_STAT_JSON;
        } else {
            complain_arg("zones", "argument", argv[i]);
            usage_zones(stderr);
            return 2;
        }
    }
    if (shk_zones_list(NULL, &found, &n) != SHK_OK) {
        complain("zones", shk_last_errmsg());
        return 1;
    }
    rc = emit("zones", shk_stat_render_list(found, n, flags));
    shk_zones_list_free(found);
    return rc;
}

static int cmd_check(int argc, char **argv)
{
    const char *file = NULL;
    int rc;

    for (int i = 1; i < argc; i++) {
        if (is_help(argv[i])) {
            usage_check(stdout);
            return 0;
        } else if (strcmp(argv[i], "-c") == 0 && i + 1 < argc) {
            file = argv[++i];
        } else {
            complain_arg("check", "argument", argv[i]);
            usage_check(stderr);
            return 2;
        }
    }
    if (!file) {
        usage_check(stderr);
        return 2;
    }
    /* No application: the library's directives only. */
    rc = shk_master_check(file, NULL);
    if (rc == SHK_OK) {
        fputs("configuration file ", stdout);
        put_esc(stdout, file);
        fputs(" test is successful\n", stdout);
        fprintf(stderr,
                "%s check: only the library's directives were checked; an application checks "
                "its own with its -t\n",
                prog);
        return 0;
    }
    put_esc(stderr, shk_last_errmsg());
    fputs("\nconfiguration file ", stderr);
    put_esc(stderr, file);
    fputs(" test failed\n", stderr);
    if (strncmp(shk_last_errmsg(), "unknown directive", 17) == 0)
        fprintf(stderr,
                "%s check knows only the library's directives; check an application's "
                "configuration with its -t (e.g. shmkit-demo -t -c FILE)\n",
                prog);
    return 1;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage_main(stderr);
        return 2;
    }
    if (is_help(argv[1]) || strcmp(argv[1], "help") == 0) {
        if (argc > 2 && strcmp(argv[1], "help") == 0) {
            if (strcmp(argv[2], "stat") == 0)
                usage_stat(stdout);
            else if (strcmp(argv[2], "zones") == 0)
                usage_zones(stdout);
            else if (strcmp(argv[2], "top") == 0)
                shmkit_top_usage(stdout, prog);
            else if (strcmp(argv[2], "check") == 0)
                usage_check(stdout);
            else
                usage_main(stdout);
        } else {
            usage_main(stdout);
        }
        return 0;
    }
    if (strcmp(argv[1], "stat") == 0)
        return cmd_stat(argc - 1, argv + 1);
    if (strcmp(argv[1], "zones") == 0)
        return cmd_zones(argc - 1, argv + 1);
    if (strcmp(argv[1], "top") == 0)
        return shmkit_top_main(argc - 1, argv + 1, prog);
    if (strcmp(argv[1], "check") == 0)
        return cmd_check(argc - 1, argv + 1);
    if (strcmp(argv[1], "--version") == 0) {
        printf("shmkit %s\n", shk_version());
        return 0;
    }
    fprintf(stderr, "%s: unknown verb \"", prog);
    put_esc(stderr, argv[1]);
    fputs("\"\n", stderr);
    usage_main(stderr);
    return 2;
}
