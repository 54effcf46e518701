/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * push_stats.c: push-stream's /channels-stats on the channel store: the
 * summary (no id), one channel (id=CH), several (id=a/b), all (id=ALL) or
 * those with a prefix (id=prefix_*), with push-stream's JSON keys; and the
 * uptimes it reports, read from /proc (the master's for the server, each
 * worker's for by_worker) as untrusted text.
 */
#include "push.h"

#include "http.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Read at most cap-1 bytes of a small /proc file; "" on failure. */
static void read_small(const char *path, char *buf, size_t cap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t n = fd >= 0 ? read(fd, buf, cap - 1) : -1;
    if (fd >= 0)
        close(fd);
    buf[n > 0 ? n : 0] = '\0';
}

/* Seconds process `pid` has run (0 if unknown): /proc/uptime less the
 * start time in field 22 of /proc/PID/stat, counted after the last ')'
 * (the command name may hold anything). */
static unsigned long long proc_uptime(pid_t pid)
{
    char path[64], buf[1024];
    double up;
    unsigned long long start = 0;
    long hz = sysconf(_SC_CLK_TCK);
    read_small("/proc/uptime", buf, sizeof buf);
    if (sscanf(buf, "%lf", &up) != 1 || up < 0 || hz <= 0)
        return 0;
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    read_small(path, buf, sizeof buf);
    char *p = strrchr(buf, ')');
    if (!p)
        return 0;
    p++;
    for (int field = 3; field < 22 && p; field++) { /* p is just before field 3 */
        p = strchr(p + 1, ' ');
    }
    if (!p || sscanf(p, " %llu", &start) != 1)
        return 0;
    double s = up - (double)start / (double)hz;
    return s > 0 ? (unsigned long long)s : 0;
}

/* The head every document shares. */
static void head(push_buf_t *b)
{
    char host[256] = "", t[40];
    time_t now = time(NULL);
    struct tm tm;
    if (gethostname(host, sizeof host - 1) != 0)
        host[0] = '\0';
    localtime_r(&now, &tm);
    long off = tm.tm_gmtoff / 60;
    size_t k = strftime(t, sizeof t, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(t + k, sizeof t - k, "%c%02ld:%02ld", off < 0 ? '-' : '+', labs(off) / 60,
             labs(off) % 60);
    push_buf_str(b, "{\"hostname\": ");
    push_buf_json(b, host, strlen(host));
    push_buf_printf(b, ", \"time\": \"%s\"", t);
}

static void summary(push_srv_t *ps, push_buf_t *b)
{
    shk_chan_stats_t st;
    if (shk_chan_stats(ps->ch, &st) != SHK_OK) {
        b->failed = 1;
        return;
    }
    head(b);
    push_buf_printf(b,
                    ", \"channels\": %llu, \"wildcard_channels\": %llu, \"published_messages\": "
                    "%llu, \"stored_messages\": %llu, \"messages_in_trash\": %llu, "
                    "\"channels_in_delete\": 0, \"channels_in_trash\": 0, \"subscribers\": %llu, "
                    "\"uptime\": %llu",
                    (unsigned long long)st.channels, (unsigned long long)st.wildcard_channels,
                    (unsigned long long)st.published, (unsigned long long)st.stored,
                    (unsigned long long)(st.messages > st.stored ? st.messages - st.stored : 0),
                    (unsigned long long)st.subscribers, proc_uptime(getppid()));
    push_redis_stats_json(ps, b); /* channels_redis: the link */
    push_buf_str(b, ", \"by_worker\": [");
    shk_chan_slot_stats_t s;
    for (unsigned i = 0, k = 0; shk_chan_slot_stats(ps->ch, i, &s) == SHK_OK; i++) {
        if (!s.pid || s.dead)
            continue;
        push_buf_printf(b, "%s{\"pid\": \"%d\", \"subscribers\": %llu, \"uptime\": %llu}",
                        k++ ? ", " : "", (int)s.pid, (unsigned long long)s.subscribers,
                        proc_uptime(s.pid));
    }
    push_buf_str(b, "]}\r\n");
}

/* id=ALL, id=prefix*, id=a/b: the channels' infos. */
static void group(push_srv_t *ps, push_buf_t *b, const char *id)
{
    push_buf_t items = {0};
    unsigned long long normal = 0, wild = 0;
    shk_chan_info_t in;
    size_t idl = strlen(id);
    int all = strcmp(id, "ALL") == 0;
    if (all || (idl && id[idl - 1] == '*')) {
        char prefix[SHK_CHAN_ID_MAX + 1];
        snprintf(prefix, sizeof prefix, "%.*s", all ? 0 : (int)(idl - 1), id);
        for (int rc = shk_chan_next(ps->ch, prefix, NULL, &in); rc == SHK_OK;) {
            char after[SHK_CHAN_ID_MAX + 1];
            push_buf_str(&items, normal + wild ? ", " : "");
            push_info_json(&items, &in);
            *(in.flags & SHK_CHAN_WILDCARD ? &wild : &normal) += 1;
            memcpy(after, in.id, sizeof after);
            rc = shk_chan_next(ps->ch, prefix, after, &in);
        }
    } else {
        push_chan_t chans[PUSH_MAX_CHANNELS];
        unsigned n = 0;
        if (push_parse_channels(id, SHK_CHAN_ID_MAX, chans, PUSH_MAX_CHANNELS, &n) == SHK_OK)
            for (unsigned i = 0; i < n; i++) {
                if (shk_chan_info(ps->ch, chans[i].id, &in) != SHK_OK)
                    continue;
                push_buf_str(&items, normal + wild ? ", " : "");
                push_info_json(&items, &in);
                *(in.flags & SHK_CHAN_WILDCARD ? &wild : &normal) += 1;
            }
    }
    head(b);
    push_buf_printf(b, ", \"channels\": %llu, \"wildcard_channels\": %llu, \"uptime\": %llu, "
                       "\"infos\": [",
                    normal, wild, proc_uptime(getppid()));
    push_buf_add(b, items.p, items.len);
    push_buf_str(b, "]}\r\n");
    b->failed |= items.failed;
    push_buf_free(&items);
}

void push_stats_handle(push_srv_t *ps, http_req_t *req, const push_loc_t *pl,
                       const push_match_t *m)
{
    push_buf_t id = {0}, out = {0};
    const char *meth = http_req_method(req);
    if (strcmp(meth, "GET") && strcmp(meth, "HEAD")) {
        const char *allow[] = {"Allow", "GET, HEAD", NULL};
        http_reply(req, 405, allow, "Method Not Allowed\n", 19);
        return;
    }
    if (!ps->ch) {
        push_reply_text(req, pl, 500, "No channel store (push_stream_shared_memory_size).");
        return;
    }
    push_eval_path(req, pl, m, "$arg_id", &id);
    if (!id.len) {
        summary(ps, &out);
    } else if (!strcmp(id.p, "ALL") || id.p[id.len - 1] == '*' || strchr(id.p, '/')) {
        group(ps, &out, id.p);
    } else {
        shk_chan_info_t in;
        int rc = shk_chan_check_id(id.p, SHK_CHAN_ID_MAX, NULL);
        if (rc != SHK_OK) {
            push_buf_printf(&out, "Invalid channel id: %s.", shk_last_errmsg());
            push_reply_text(req, pl, 400, out.p ? out.p : "Invalid channel id.");
            goto out;
        }
        if (shk_chan_info(ps->ch, id.p, &in) != SHK_OK) {
            push_reply_text(req, pl, 404, "Channel not found.");
            goto out;
        }
        push_info_json(&out, &in);
        push_buf_str(&out, "\r\n");
    }
    push_reply_json(req, pl, 200, &out);
out:
    push_buf_free(&id);
    push_buf_free(&out);
}
