/*
 * shmkit.c: the `shmkit` command: inspect live named zones (stat, zones)
 * and test configuration files against the library's own directives
 * (check), as `nginx -t` does. An application's own directives are its
 * business: it checks them with its -t (shk_app_main).
 */
#include "shmkit.h"

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
            "print, for each: size, tag, generation, creator pid, slab pages free/total, the\n"
            "largest free run, the size-class table (size, used/total, requests, failures),\n"
            "every lock in the zone (owner pid or free, counters) and the bus if the zone\n"
            "holds one. Without ZONE, every zone of the instance. --json prints one JSON\n"
            "document (the demo's /status prints the same).\n"
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
            "with the reason.\n",
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

static int cmd_stat(int argc, char **argv)
{
    const char *instance = "default";
    unsigned flags = 0, nz = 0, nnames = 0;
    char **names = NULL;
    shk_zone_name_t *found = NULL;
    int rc = 0;
    shk_zone_t **zones;
    char *out;

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
            fprintf(stderr, "%s stat: unknown option \"%s\"\n", prog, argv[i]);
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
        fprintf(stderr, "%s stat: %s\n", prog, shk_last_errmsg());
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
            fprintf(stderr, "%s stat: %s\n", prog, shk_last_errmsg());
            rc = 1;
            continue;
        }
        zones[nz++] = z;
    }
    out = shk_stat_render(zones, nz, instance, flags);
    if (out) {
        fputs(out, stdout);
        free(out);
    } else {
        fprintf(stderr, "%s stat: %s\n", prog, shk_last_errmsg());
        rc = 1;
    }
    for (unsigned k = 0; k < nz; k++)
        shk_zone_detach(zones[k]);
    free(zones);
    shk_zones_list_free(found);
    if (!nnames && !(flags & SHK_STAT_JSON))
        fprintf(stderr, "%s stat: no named zones for instance \"%s\"\n", prog, instance);
    return rc;
}

static int cmd_zones(int argc, char **argv)
{
    int json = 0;
    shk_zone_name_t *found;
    unsigned n;

    for (int i = 1; i < argc; i++) {
        if (is_help(argv[i])) {
            usage_zones(stdout);
            return 0;
        } else if (strcmp(argv[i], "--json") == 0) {
            json = 1;
        } else {
            fprintf(stderr, "%s zones: unknown argument \"%s\"\n", prog, argv[i]);
            usage_zones(stderr);
            return 2;
        }
    }
    if (shk_zones_list(NULL, &found, &n) != SHK_OK) {
        fprintf(stderr, "%s zones: %s\n", prog, shk_last_errmsg());
        return 1;
    }
    if (json)
        printf("{\"zones\":[");
    else
        printf("%-16s %-16s %12s %-16s %5s %s\n", "INSTANCE", "ZONE", "SIZE", "TAG", "GEN",
               "CREATOR");
    for (unsigned k = 0; k < n; k++) {
        const char *inst = found[k].instance, *zname = found[k].zone;
        shk_zone_t *z = shk_zone_attach(inst, zname, SHK_ZONE_RDONLY);
        if (json) {
            printf("%s{\"instance\":\"%s\",\"zone\":\"%s\"", k ? "," : "", inst, zname);
            if (z) {
                pid_t c = shk_zone_creator(z);
                printf(",\"size\":%zu,\"tag\":\"%s\",\"generation\":%llu,\"creator\":%d,"
                       "\"creator_alive\":%s}",
                       shk_zone_size(z), shk_zone_tag(z),
                       (unsigned long long)shk_zone_generation(z), (int)c,
                       c > 0 && shk_pid_alive(c) ? "true" : "false");
            } else {
                printf(",\"error\":\"");
                for (const char *m = shk_last_errmsg(); *m; m++)
                    printf(*m == '"' || *m == '\\' ? "\\%c" : "%c", *m);
                printf("\"}");
            }
        } else if (z) {
            pid_t c = shk_zone_creator(z);
            printf("%-16s %-16s %12zu %-16s %5llu %d (%s)\n", inst, zname, shk_zone_size(z),
                   shk_zone_tag(z), (unsigned long long)shk_zone_generation(z), (int)c,
                   c > 0 && shk_pid_alive(c) ? "alive" : "gone");
        } else {
            printf("%-16s %-16s invalid: %s\n", inst, zname, shk_last_errmsg());
        }
        shk_zone_detach(z);
    }
    shk_zones_list_free(found);
    if (json)
        printf("]}\n");
    return 0;
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
            fprintf(stderr, "%s check: unknown argument \"%s\"\n", prog, argv[i]);
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
        printf("configuration file %s test is successful\n", file);
        fprintf(stderr,
                "%s check: only the library's directives were checked; an application checks "
                "its own with its -t\n",
                prog);
        return 0;
    }
    fprintf(stderr, "%s\nconfiguration file %s test failed\n", shk_last_errmsg(), file);
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
    if (strcmp(argv[1], "check") == 0)
        return cmd_check(argc - 1, argv + 1);
    if (strcmp(argv[1], "--version") == 0) {
        printf("shmkit %s\n", shk_version());
        return 0;
    }
    fprintf(stderr, "%s: unknown verb \"%s\"\n", prog, argv[1]);
    usage_main(stderr);
    return 2;
}
