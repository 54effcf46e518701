/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * push_conf.c: the push_stream_* directives (push-stream's names and
 * meanings), client_max_body_size, default_type, and the demo's own
 * eventsource_retry, demo_page, demo_stats_channel and
 * subscriber_output_limit; after reading, every
 * location's settings completed from the defaults given outside locations
 * (nginx's inheritance, one level), checked, and the channel store declared
 * with the limits the directives gave (shk_cycle_set_chan). No libevent.
 */
#include "demo_conf.h"

#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#define PAGE_MAX (4u << 20)
#define OFF(f) ((void *)(uintptr_t)offsetof(push_loc_t, f))
#define FIELD(pl, data, type) ((type *)((char *)(pl) + (uintptr_t)(data)))

static const char *const mode_names[] = {"streaming", "polling", "long-polling", "eventsource",
                                         "websocket"};

int push_mode_parse(const char *s)
{
    for (int i = 0; i < 5; i++)
        if (s && strcasecmp(s, mode_names[i]) == 0)
            return i;
    return -1;
}

const char *push_mode_name(int mode)
{
    return mode >= 0 && mode < 5 ? mode_names[mode] : "?";
}

void push_loc_init(push_loc_t *pl)
{
    memset(pl, 0, sizeof *pl);
    pl->mode = -1;
    pl->admin = -1;
    pl->store = pl->info_on_publish = pl->authorized_only = pl->ws_publish = -1;
    pl->ping_ms = pl->ttl_ms = pl->lp_ttl_ms = pl->wildcard_max = pl->retry_ms = PUSH_UNSET;
}

void push_loc_free(push_loc_t *pl)
{
    char **s[] = {&pl->path, &pl->last_time, &pl->last_tag, &pl->last_event_id, &pl->header,
                  &pl->message, &pl->footer, &pl->origins, &pl->content_type, &pl->page};
    for (size_t i = 0; i < sizeof s / sizeof s[0]; i++) {
        free(*s[i]);
        *s[i] = NULL;
    }
}

void push_main_free(push_main_t *pm)
{
    free(pm->deleted_text);
    free(pm->ping_text);
    pm->deleted_text = pm->ping_text = NULL;
}

/* ---- values -------------------------------------------------------------------------- */

static int on_off(shk_conf_t *cf, char **argv, int *out)
{
    if (strcmp(argv[1], "on") == 0)
        *out = 1;
    else if (strcmp(argv[1], "off") == 0)
        *out = 0;
    else
        return shk_conf_error(cf, "invalid value \"%s\" in \"%s\" directive, it must be \"on\" "
                                  "or \"off\"",
                              argv[1], argv[0]);
    return SHK_OK;
}

static int count_arg(shk_conf_t *cf, char **argv, unsigned max, unsigned *out)
{
    char *end;
    unsigned long n;
    errno = 0;
    n = strtoul(argv[1], &end, 10);
    if (!argv[1][0] || *end || errno || argv[1][0] == '-' || argv[1][0] == '+' || n == 0 ||
        n > max)
        return shk_conf_error(cf, "invalid value \"%s\" in \"%s\" directive (1 to %u)", argv[1],
                              argv[0], max);
    *out = (unsigned)n;
    return SHK_OK;
}

static int time_arg(shk_conf_t *cf, char **argv, unsigned *ms)
{
    if (shk_parse_duration(argv[1], ms) != SHK_OK || *ms == 0 || *ms == PUSH_UNSET)
        return shk_conf_error(cf, "invalid value \"%s\" in \"%s\" directive (a time: 30s, 5m)",
                              argv[1], argv[0]);
    return SHK_OK;
}

static int dup_into(shk_conf_t *cf, char **slot, const char *v)
{
    char *s = strdup(v);
    if (!s)
        return shk_conf_error(cf, "out of memory");
    free(*slot);
    *slot = s;
    return SHK_OK;
}

/* ---- the main directives --------------------------------------------------------------- */

static int d_shm_size(shk_conf_t *cf, int argc, char **argv, void *data)
{
    push_main_t *pm = demo_push_main_of(cf);
    size_t sz;
    (void)argc;
    (void)data;
    if (pm->shm_size)
        return shk_conf_error(cf, "\"%s\" directive is duplicate", argv[0]);
    if (shk_parse_size(argv[1], &sz) != SHK_OK || sz < 64 * 1024)
        return shk_conf_error(cf, "invalid value \"%s\" in \"%s\" directive (at least 64k)",
                              argv[1], argv[0]);
    pm->shm_size = sz; /* argv[2], push-stream's zone name, has no use here: one store */
    return SHK_OK;
}

enum { M_TTL, M_INACTIVITY, M_MAX_SUBS, M_MAX_STORED, M_MAX_ID, M_MAX_CH, M_MAX_WILD, M_PREFIX,
       M_EVENTS, M_DELETED, M_PING_TEXT };

static int d_main(shk_conf_t *cf, int argc, char **argv, void *data)
{
    push_main_t *pm = demo_push_main_of(cf);
    shk_chan_opts_t *o = &pm->opts;
    unsigned v;
    size_t n;
    int rc = SHK_OK;
    (void)argc;
    if ((uintptr_t)data < M_DELETED)
        pm->limits_given = 1;
    switch ((int)(uintptr_t)data) {
    case M_TTL:
    case M_INACTIVITY:
        if ((rc = time_arg(cf, argv, &v)) == SHK_OK)
            *((uintptr_t)data == M_TTL ? &o->ttl_ms : &o->inactivity_ms) = v;
        break;
    case M_MAX_SUBS: rc = count_arg(cf, argv, SHK_CHAN_UNLIMITED - 1, &o->max_subscribers); break;
    case M_MAX_STORED: rc = count_arg(cf, argv, SHK_CHAN_UNLIMITED - 1, &o->max_stored); break;
    case M_MAX_ID: rc = count_arg(cf, argv, SHK_CHAN_ID_MAX, &o->max_id_len); break;
    case M_MAX_CH: rc = count_arg(cf, argv, SHK_CHAN_UNLIMITED - 1, &o->max_channels); break;
    case M_MAX_WILD:
        rc = count_arg(cf, argv, SHK_CHAN_UNLIMITED - 1, &o->max_wildcard_channels);
        break;
    case M_PREFIX:
        if (shk_chan_check_id(argv[1], SHK_CHAN_PREFIX_MAX, &n) != SHK_OK)
            return shk_conf_error(cf, "invalid wildcard prefix: %s", shk_last_errmsg());
        memcpy(pm->prefix, argv[1], n + 1);
        o->wildcard_prefix = pm->prefix;
        break;
    case M_EVENTS:
        if (shk_chan_check_id(argv[1], SHK_CHAN_ID_MAX, &n) != SHK_OK)
            return shk_conf_error(cf, "invalid events channel: %s", shk_last_errmsg());
        memcpy(pm->events, argv[1], n + 1);
        o->events_channel = pm->events;
        break;
    case M_DELETED: return dup_into(cf, &pm->deleted_text, argv[1]);
    default: return dup_into(cf, &pm->ping_text, argv[1]);
    }
    return rc;
}

static int d_max_body(shk_conf_t *cf, int argc, char **argv, void *data)
{
    size_t sz;
    (void)argc;
    (void)data;
    if (shk_parse_size(argv[1], &sz) != SHK_OK || sz == 0 || sz > SHK_CHAN_MESSAGE_MAX)
        return shk_conf_error(cf, "invalid value \"%s\" in \"%s\" directive (1 to 4g - 1)",
                              argv[1], argv[0]);
    push_loc_t *pl = demo_push_loc_of(cf);
    pl->max_body = sz;
    return SHK_OK;
}

static int d_output_limit(shk_conf_t *cf, int argc, char **argv, void *data)
{
    push_main_t *pm = demo_push_main_of(cf);
    size_t sz;
    (void)argc;
    (void)data;
    if (pm->out_limit)
        return shk_conf_error(cf, "\"%s\" directive is duplicate", argv[0]);
    if (shk_parse_size(argv[1], &sz) != SHK_OK || sz < 4096 || sz > ((size_t)1 << 32))
        return shk_conf_error(cf, "invalid value \"%s\" in \"%s\" directive (4k to 4g)",
                              argv[1], argv[0]);
    pm->out_limit = sz;
    return SHK_OK;
}

static int d_stats_channel(shk_conf_t *cf, int argc, char **argv, void *data)
{
    push_main_t *pm = demo_push_main_of(cf);
    size_t n;
    unsigned ms = PUSH_DEFAULT_STATS_MS;
    (void)data;
    if (shk_chan_check_id(argv[1], SHK_CHAN_ID_MAX, &n) != SHK_OK)
        return shk_conf_error(cf, "invalid stats channel: %s", shk_last_errmsg());
    if (argc > 2) {
        char *a[] = {argv[0], argv[2]};
        if (time_arg(cf, a, &ms) != SHK_OK)
            return SHK_ECONF;
    }
    memcpy(pm->stats_channel, argv[1], n + 1);
    pm->stats_ms = ms;
    return SHK_OK;
}

/* ---- the location directives ----------------------------------------------------------- */

static int set_kind(shk_conf_t *cf, push_loc_t *pl, int kind, const char *name)
{
    if (pl->kind && pl->kind != kind)
        return shk_conf_error(cf, "\"%s\": this location is a push-stream %s already", name,
                              pl->kind == PUSH_PUBLISHER    ? "publisher"
                              : pl->kind == PUSH_SUBSCRIBER ? "subscriber"
                              : pl->kind == PUSH_STATS      ? "statistics location"
                                                            : "page");
    if (pl->kind == kind)
        return shk_conf_error(cf, "\"%s\" directive is duplicate", name);
    pl->kind = kind;
    return SHK_OK;
}

static int d_publisher(shk_conf_t *cf, int argc, char **argv, void *data)
{
    push_loc_t *pl = demo_push_loc_of(cf);
    int rc;
    (void)data;
    if ((rc = set_kind(cf, pl, PUSH_PUBLISHER, argv[0])) != SHK_OK)
        return rc;
    if (argc == 1 || strcmp(argv[1], "normal") == 0)
        pl->admin = 0;
    else if (strcmp(argv[1], "admin") == 0)
        pl->admin = 1;
    else
        return shk_conf_error(cf, "invalid value \"%s\" in \"%s\" directive, it must be "
                                  "\"normal\" or \"admin\"",
                              argv[1], argv[0]);
    return SHK_OK;
}

static int d_subscriber(shk_conf_t *cf, int argc, char **argv, void *data)
{
    push_loc_t *pl = demo_push_loc_of(cf);
    int rc;
    (void)data;
    if ((rc = set_kind(cf, pl, PUSH_SUBSCRIBER, argv[0])) != SHK_OK)
        return rc;
    pl->mode = argc == 1 ? PUSH_STREAMING : push_mode_parse(argv[1]);
    if (pl->mode < 0)
        return shk_conf_error(cf, "invalid value \"%s\" in \"%s\" directive, it must be "
                                  "\"streaming\", \"polling\", \"long-polling\", \"eventsource\" "
                                  "or \"websocket\"",
                              argv[1], argv[0]);
    return SHK_OK;
}

static int d_stats(shk_conf_t *cf, int argc, char **argv, void *data)
{
    (void)argc;
    (void)data;
    return set_kind(cf, demo_push_loc_of(cf), PUSH_STATS, argv[0]);
}

static int d_page(shk_conf_t *cf, int argc, char **argv, void *data)
{
    push_loc_t *pl = demo_push_loc_of(cf);
    char path[4096];
    const char *file = shk_conf_file(cf), *slash = strrchr(file, '/');
    struct stat st;
    int rc, fd, n;
    (void)argc;
    (void)data;
    if ((rc = set_kind(cf, pl, PUSH_PAGE, argv[0])) != SHK_OK)
        return rc;
    if (argv[1][0] == '/' || !slash)
        n = snprintf(path, sizeof path, "%s", argv[1]);
    else
        n = snprintf(path, sizeof path, "%.*s/%s", (int)(slash - file), file, argv[1]);
    if (n < 0 || (size_t)n >= sizeof path)
        return shk_conf_error(cf, "page path is too long");
    if ((fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)) < 0)
        return shk_conf_error(cf, "open() \"%s\" failed (%s)", path, strerror(errno));
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > (off_t)PAGE_MAX) {
        close(fd);
        return shk_conf_error(cf, "\"%s\" is not a regular file of at most 4 MiB", path);
    }
    free(pl->page);
    pl->page = malloc((size_t)st.st_size + 1);
    if (!pl->page) {
        close(fd);
        return shk_conf_error(cf, "out of memory");
    }
    size_t got = 0;
    ssize_t k;
    while (got < (size_t)st.st_size && (k = read(fd, pl->page + got, (size_t)st.st_size - got)) > 0)
        got += (size_t)k;
    close(fd);
    pl->page[got] = '\0';
    pl->page_len = got;
    return SHK_OK;
}

enum { V_PATH, V_LAST_TIME, V_LAST_TAG, V_LAST_EVENT, T_HEADER, T_MESSAGE, T_FOOTER, S_ORIGINS,
       S_TYPE };

static int d_text(shk_conf_t *cf, int argc, char **argv, void *data)
{
    push_loc_t *pl = demo_push_loc_of(cf);
    char **slots[] = {&pl->path,   &pl->last_time, &pl->last_tag, &pl->last_event_id, &pl->header,
                      &pl->message, &pl->footer,   &pl->origins,  &pl->content_type};
    int which = (int)(uintptr_t)data;
    (void)argc;
    if (which <= V_LAST_EVENT && push_value_check(argv[1]) != SHK_OK)
        return shk_conf_error(cf, "%s", shk_last_errmsg());
    if (which == S_TYPE && strpbrk(argv[1], "\r\n"))
        return shk_conf_error(cf, "invalid content type \"%s\"", argv[1]);
    if (which == S_ORIGINS && (strpbrk(argv[1], "\r\n") || strchr(argv[1], '$')))
        return shk_conf_error(cf, "invalid value \"%s\" in \"%s\" directive (plain text: the "
                                  "demo takes no variable here)",
                              argv[1], argv[0]);
    return dup_into(cf, slots[which], argv[1]);
}

static int d_flag(shk_conf_t *cf, int argc, char **argv, void *data)
{
    (void)argc;
    return on_off(cf, argv, FIELD(demo_push_loc_of(cf), data, int));
}

static int d_time(shk_conf_t *cf, int argc, char **argv, void *data)
{
    (void)argc;
    return time_arg(cf, argv, FIELD(demo_push_loc_of(cf), data, unsigned));
}

static int d_count(shk_conf_t *cf, int argc, char **argv, void *data)
{
    (void)argc;
    return count_arg(cf, argv, PUSH_MAX_CHANNELS, FIELD(demo_push_loc_of(cf), data, unsigned));
}

/* ---- the table ------------------------------------------------------------------------------ */

#define NDIRS 48
static shk_conf_directive_t dirs[NDIRS];

const shk_conf_directive_t *push_conf_directives(unsigned loc, unsigned outer)
{
    const unsigned any = loc | outer, T1 = SHK_CONF_TAKE1;
    const shk_conf_directive_t t[] = {
        {"push_stream_shared_memory_size", outer, T1 | SHK_CONF_TAKE2, d_shm_size, 0, NULL},
        {"push_stream_message_ttl", outer, T1, d_main, 0, (void *)M_TTL},
        {"push_stream_channel_inactivity_time", outer, T1, d_main, 0, (void *)M_INACTIVITY},
        {"push_stream_max_subscribers_per_channel", outer, T1, d_main, 0, (void *)M_MAX_SUBS},
        {"push_stream_max_messages_stored_per_channel", outer, T1, d_main, 0,
         (void *)M_MAX_STORED},
        {"push_stream_max_channel_id_length", outer, T1, d_main, 0, (void *)M_MAX_ID},
        {"push_stream_max_number_of_channels", outer, T1, d_main, 0, (void *)M_MAX_CH},
        {"push_stream_max_number_of_wildcard_channels", outer, T1, d_main, 0,
         (void *)M_MAX_WILD},
        {"push_stream_wildcard_channel_prefix", outer, T1, d_main, 0, (void *)M_PREFIX},
        {"push_stream_events_channel_id", outer, T1, d_main, 0, (void *)M_EVENTS},
        {"push_stream_channel_deleted_message_text", outer, T1, d_main, 0, (void *)M_DELETED},
        {"push_stream_ping_message_text", outer, T1, d_main, 0, (void *)M_PING_TEXT},
        {"demo_stats_channel", outer, T1 | SHK_CONF_TAKE2, d_stats_channel, 0, NULL},
        {"subscriber_output_limit", outer, T1, d_output_limit, 0, NULL},
        {"client_max_body_size", any, T1, d_max_body, 0, NULL},
        {"push_stream_publisher", loc, SHK_CONF_NOARGS | T1, d_publisher, 0, NULL},
        {"push_stream_subscriber", loc, SHK_CONF_NOARGS | T1, d_subscriber, 0, NULL},
        {"push_stream_channels_statistics", loc, SHK_CONF_NOARGS, d_stats, 0, NULL},
        {"demo_page", loc, T1, d_page, 0, NULL},
        {"push_stream_channels_path", any, T1, d_text, 0, (void *)V_PATH},
        {"push_stream_last_received_message_time", any, T1, d_text, 0, (void *)V_LAST_TIME},
        {"push_stream_last_received_message_tag", any, T1, d_text, 0, (void *)V_LAST_TAG},
        {"push_stream_last_event_id", any, T1, d_text, 0, (void *)V_LAST_EVENT},
        {"push_stream_header_template", any, T1, d_text, 0, (void *)T_HEADER},
        {"push_stream_message_template", any, T1, d_text, 0, (void *)T_MESSAGE},
        {"push_stream_footer_template", any, T1, d_text, 0, (void *)T_FOOTER},
        {"push_stream_allowed_origins", any, T1, d_text, 0, (void *)S_ORIGINS},
        {"default_type", any, T1, d_text, 0, (void *)S_TYPE},
        {"push_stream_store_messages", any, T1, d_flag, 0, OFF(store)},
        {"push_stream_channel_info_on_publish", any, T1, d_flag, 0, OFF(info_on_publish)},
        {"push_stream_authorized_channels_only", any, T1, d_flag, 0, OFF(authorized_only)},
        {"push_stream_websocket_allow_publish", any, T1, d_flag, 0, OFF(ws_publish)},
        {"push_stream_ping_message_interval", any, T1, d_time, 0, OFF(ping_ms)},
        {"push_stream_subscriber_connection_ttl", any, T1, d_time, 0, OFF(ttl_ms)},
        {"push_stream_longpolling_connection_ttl", any, T1, d_time, 0, OFF(lp_ttl_ms)},
        {"eventsource_retry", any, T1, d_time, 0, OFF(retry_ms)},
        {"push_stream_wildcard_channel_max_qtd", any, T1, d_count, 0, OFF(wildcard_max)},
        /* the names of push-stream's older releases */
        {"push_stream_broadcast_channel_prefix", outer, T1, d_main, 0, (void *)M_PREFIX},
        {"push_stream_broadcast_channel_max_qtd", any, T1, d_count, 0, OFF(wildcard_max)},
        {"push_stream_channel_id", any, T1, d_text, 0, (void *)V_PATH},
        {NULL, 0, 0, NULL, 0, NULL},
    };
    _Static_assert(sizeof t / sizeof t[0] <= NDIRS, "room for the table");
    memcpy(dirs, t, sizeof t);
    return dirs;
}

/* ---- after reading ------------------------------------------------------------------------- */

static char *inherit_str(char *mine, const char *dflt)
{
    return mine ? mine : dflt ? strdup(dflt) : NULL;
}

/* Fill the unset fields of pl from def, then from push-stream's defaults. */
static int merge(push_loc_t *pl, const push_loc_t *def)
{
    char **s[] = {&pl->path,   &pl->last_time, &pl->last_tag, &pl->last_event_id, &pl->header,
                  &pl->message, &pl->footer,   &pl->origins,  &pl->content_type};
    char *const d[] = {def->path,    def->last_time, def->last_tag, def->last_event_id,
                       def->header,  def->message,   def->footer,   def->origins,
                       def->content_type};
    for (size_t i = 0; i < sizeof s / sizeof s[0]; i++) {
        if (!*s[i] && d[i] && !(*s[i] = inherit_str(NULL, d[i])))
            return shk_error(SHK_ENOMEM, "out of memory");
    }
#define INH(f, unset, dflt) pl->f = pl->f != (unset) ? pl->f : def->f != (unset) ? def->f : (dflt)
    INH(store, -1, 0);
    INH(info_on_publish, -1, 1);
    INH(authorized_only, -1, 0);
    INH(ws_publish, -1, 0);
    INH(ping_ms, PUSH_UNSET, 0);
    INH(ttl_ms, PUSH_UNSET, 0);
    INH(lp_ttl_ms, PUSH_UNSET, pl->ttl_ms);
    INH(wildcard_max, PUSH_UNSET, PUSH_MAX_CHANNELS);
    INH(retry_ms, PUSH_UNSET, 0);
    INH(max_body, 0, 0);
#undef INH
    if (pl->admin < 0)
        pl->admin = 0;
    if (pl->mode < 0)
        pl->mode = PUSH_STREAMING;
    return SHK_OK;
}

int push_conf_done(shk_cycle_t *cy, push_main_t *pm, push_loc_t *def, push_loc_t *const *locs,
                   const char *const *names, unsigned n)
{
    shk_chan_opts_t o = pm->opts;
    size_t max_body = def->max_body;
    unsigned npush = 0, first = 0;
    int rc;

    for (unsigned i = 0; i < n; i++) {
        push_loc_t *pl = locs[i];
        if ((rc = merge(pl, def)) != SHK_OK)
            return rc;
        if (pl->max_body > max_body)
            max_body = pl->max_body;
        if (pl->kind == PUSH_NONE || pl->kind == PUSH_PAGE)
            continue;
        if (!npush++)
            first = i;
        if (pl->store)
            o.store_messages = 1;
    }
    pm->max_body = max_body ? max_body : SHK_CHAN_DEFAULT_MESSAGE_MAX;
    if (!pm->shm_size) {
        if (pm->limits_given)
            return shk_error(SHK_ECONF, "the push_stream_* limits of the channel store need "
                                        "push_stream_shared_memory_size");
        if (npush && !shk_cycle_chan_size(cy))
            return shk_error(SHK_ECONF, "push_stream_shared_memory_size is not set: the "
                                        "push-stream locations (\"%s\" first) need the channel "
                                        "store",
                             names[first]);
        if (npush && o.store_messages)
            shk_log(SHK_LOG_WARN, "push_stream_store_messages on: the \"channels\" directive "
                                  "decides whether the store keeps messages");
        return SHK_OK;
    }
    /* push-stream keeps every stored message until its ttl unless told a
     * count: so does the store, bounded by the zone (the oldest go first) */
    if (!o.max_stored)
        o.max_stored = SHK_CHAN_UNLIMITED;
    o.max_message = pm->max_body;
    /* wildcard channels per subscriber are counted per location, by the demo */
    o.max_wildcard = PUSH_MAX_CHANNELS;
    rc = shk_cycle_set_chan(cy, pm->shm_size, &o);
    if (rc == SHK_EEXIST)
        return shk_error(SHK_ECONF, "push_stream_shared_memory_size and the \"channels\" "
                                    "directive both declare the channel store: keep one");
    if (rc != SHK_OK)
        return shk_error(SHK_ECONF, "push_stream_shared_memory_size: %s", shk_last_errmsg());
    return SHK_OK;
}
