/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * test_demo_push.c: the demo's push-stream interface (docs/pushstream.md),
 * run for real: a demo server started on a free loopback port with a
 * configuration written for the test, against plain-socket HTTP clients,
 * Node's eventsource and ws packages and fetch (test/node/push_clients.js),
 * and Debian's Chromium driven headless by playwright-core
 * (test/node/push_browser.js). The publisher, /channels-stats, bad
 * requests and their statuses, every subscriber mode with templates,
 * backtrack, positions, resume, ping, ttl and delete; every message once
 * and in order to real clients across a reload; a worker killed while
 * holding subscribers leaves nothing pinned; many subscribers of a channel
 * on one worker, in several framings, each get every message once and in
 * order (the frame made once per worker); subscribers that vanish
 * mid-stream (resets, closes with unread output) never end a worker (no
 * SIGPIPE); the zone full is 507 and DELETE still works. Also the text
 * helpers and the directives, without a server.
 */
#include "demo_conf.h"
#include "push.h"
#include "shmkit.h"
#include "util_json.h"
#include "util_test.h"
#include "util_demo.h"
#include "util_run.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

static char dir[128], conf_path[256], log_path[256], pid_path[256], repo[PATH_MAX + 16];
static char demo_bin[PATH_MAX + 32];
static int port;
static pid_t master;

/* Liveness bounds: valgrind runs the server many times slower. */
static int ms_bound(int native)
{
    return tu_valgrind() ? native * 10 : native;
}

/* Workers for the tests that do not need many (under valgrind too: the
 * store's views tell memcheck a block another worker made is live). */
static int test_workers(void)
{
    return 2;
}

static void find_repo(void)
{
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    ck_assert(n > 0);
    exe[n] = '\0';
    *strrchr(exe, '/') = '\0'; /* build/<v>/test */
    snprintf(demo_bin, sizeof demo_bin, "%s/../shmkit-demo", exe);
    snprintf(repo, sizeof repo, "%s/../../..", exe);
}

/* ---- a plain HTTP client ------------------------------------------------------------- */

typedef struct resp_s {
    int status;
    char head[8192];
    char body[256 * 1024];
    size_t blen;
} resp_t;

static int conn(void)
{
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    ck_assert_int_ge(s, 0);
    ck_assert_msg(connect(s, (struct sockaddr *)&a, sizeof a) == 0, "connect: %s",
                  strerror(errno));
    return s;
}

static void send_all(int s, const void *p, size_t n)
{
    ck_assert_msg(td_send_all(s, p, n) == 0, "send: %s", strerror(errno));
}

/* Send a request; hdrs are extra "Name: value\r\n" lines. */
static int req_send(const char *method, const char *target, const char *hdrs, const void *body,
                    size_t blen, int keep)
{
    char head[8192];
    int s = conn();
    int n = snprintf(head, sizeof head,
                     "%s %s HTTP/1.1\r\nHost: t\r\n%s%s%s", method, target,
                     keep ? "" : "Connection: close\r\n", hdrs ? hdrs : "",
                     body || !strcmp(method, "POST") ? "" : "\r\n");
    if (body || !strcmp(method, "POST"))
        n += snprintf(head + n, sizeof head - (size_t)n, "Content-Length: %zu\r\n\r\n", blen);
    send_all(s, head, (size_t)n);
    if (blen)
        send_all(s, body, blen);
    return s;
}

/* Append what arrives within ms to acc; 0 at EOF or timeout, else bytes. */
static ssize_t read_some(int s, char *acc, size_t *len, size_t cap, int ms)
{
    struct pollfd p = {s, POLLIN, 0};
    if (poll(&p, 1, ms) <= 0)
        return 0;
    ssize_t k = read(s, acc + *len, cap - 1 - *len);
    if (k <= 0)
        return 0;
    *len += (size_t)k;
    acc[*len] = '\0';
    return k;
}

/* Read until `needle` is in acc (bounded). */
static int read_until(int s, char *acc, size_t *len, size_t cap, const char *needle, int ms)
{
    uint64_t end = shk_time_ms() + (uint64_t)ms_bound(ms);
    while (!strstr(acc, needle)) {
        uint64_t now = shk_time_ms();
        if (now >= end || *len + 1 >= cap || read_some(s, acc, len, cap, (int)(end - now)) <= 0)
            return 0;
    }
    return 1;
}

static void resp_parse(resp_t *r, char *raw, size_t n)
{
    char *sep = strstr(raw, "\r\n\r\n");
    r->status = n > 12 ? atoi(raw + 9) : 0;
    size_t hl = sep ? (size_t)(sep - raw) : n;
    snprintf(r->head, sizeof r->head, "%.*s", (int)(hl < sizeof r->head ? hl : sizeof r->head - 1),
             raw);
    r->blen = sep ? n - hl - 4 : 0;
    memcpy(r->body, sep ? sep + 4 : "", r->blen);
    r->body[r->blen] = '\0';
    if (strcasestr(r->head, "transfer-encoding: chunked"))
        r->blen = td_dechunk(r->body, r->blen);
}

/* One whole request on its own connection. */
static int http(const char *method, const char *target, const char *hdrs, const void *body,
                size_t blen, resp_t *r)
{
    static char raw[sizeof r->body + 8192];
    size_t n = 0;
    int s = req_send(method, target, hdrs, body, blen, 0);
    while (read_some(s, raw, &n, sizeof raw, ms_bound(10000)) > 0)
        ;
    close(s);
    resp_parse(r, raw, n);
    return r->status;
}

static resp_t R; /* the last answer */

static int get(const char *target)
{
    return http("GET", target, NULL, NULL, 0, &R);
}

static int publish(const char *ch, const char *text, const char *hdrs)
{
    char t[512];
    snprintf(t, sizeof t, "/pub?id=%s", ch);
    return http("POST", t, hdrs, text, strlen(text), &R);
}

static const char *header(const resp_t *r, const char *name, char *out, size_t cap)
{
    return td_head_value(r->head, name, out, cap);
}

/* ---- the server -------------------------------------------------------------------------- */

/* The number in /channels-stats' summary at `key` (-1 if none). */
static double stat_num(const char *key)
{
    resp_t r;
    if (http("GET", "/channels-stats", NULL, NULL, 0, &r) != 200)
        return -1;
    tj_t *j = tj_parse(r.body, NULL, 0);
    double v = j ? tj_num(j, key, -1) : -1;
    tj_free(j);
    return v;
}

static double chan_subs(const char *ch)
{
    char t[300];
    resp_t r;
    snprintf(t, sizeof t, "/channels-stats?id=%s", ch);
    if (http("GET", t, NULL, NULL, 0, &r) != 200)
        return 0;
    tj_t *j = tj_parse(r.body, NULL, 0);
    double v = j ? tj_num(j, "subscribers", 0) : 0;
    tj_free(j);
    return v;
}

/* Poll until /channels-stats?id=ch shows n subscribers (bounded). */
static void await_subs(const char *ch, double n)
{
    for (int i = 0; i < ms_bound(10000) / 5 && chan_subs(ch) != n; i++)
        tu_pause_ms(5);
    ck_assert_msg(chan_subs(ch) == n, "channel %s: %.0f subscribers, not %.0f", ch,
                  chan_subs(ch), n);
}

static char logbuf[1 << 20];

static const char *log_text(void)
{
    int fd = open(log_path, O_RDONLY);
    ssize_t len = fd >= 0 ? read(fd, logbuf, sizeof logbuf - 1) : 0;
    if (fd >= 0)
        close(fd);
    logbuf[len > 0 ? len : 0] = '\0';
    return logbuf;
}

static int log_has(const char *needle)
{
    return strstr(log_text(), needle) != NULL;
}

/* Start a demo with `workers` workers and `body` inside http { server { } }
 * (after listen); `outer` goes in http { } before the server. */
static void start_server(int workers, const char *outer, const char *body)
{
    static int nth;
    find_repo();
    snprintf(dir, sizeof dir, "/tmp/shk_test_push_%ld_%d", (long)getpid(), nth++);
    mkdir(dir, 0700);
    snprintf(conf_path, sizeof conf_path, "%s/demo.conf", dir);
    snprintf(log_path, sizeof log_path, "%s/demo.log", dir);
    snprintf(pid_path, sizeof pid_path, "%s/demo.pid", dir);
    port = tu_free_port();
    FILE *f = fopen(conf_path, "w");
    ck_assert_ptr_nonnull(f);
    fprintf(f,
            "worker_processes %d;\npid %s;\nworker_shutdown_timeout 20s;\nshm_instance p%ld;\n"
            "shm_mapping named;\nhttp {\n%s\nserver {\nlisten 127.0.0.1:%d;\n%s\n}\n}\n",
            workers, pid_path, (long)getpid(), outer, port, body);
    fclose(f);
    fflush(NULL);
    char *argv[] = {(char *)demo_bin, "-c", conf_path, NULL};
    master = tu_spawn_logged(argv, log_path);
    for (int i = 0; i < ms_bound(20000) / 5; i++) {
        resp_t r;
        int s = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                                .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        int up = connect(s, (struct sockaddr *)&a, sizeof a) == 0;
        close(s);
        if (up && http("GET", "/channels-stats", NULL, NULL, 0, &r) == 200) {
            tj_t *j = tj_parse(r.body, NULL, 0);
            const tj_t *w = j ? tj_get(j, "by_worker") : NULL;
            size_t n = w ? w->nkids : 0;
            tj_free(j);
            if (n == (size_t)workers)
                return;
        }
        ck_assert_msg(waitpid(master, NULL, WNOHANG) == 0, "the demo exited: see %s", log_path);
        tu_pause_ms(5);
    }
    ck_abort_msg("the demo server did not come up (%s)", log_path);
}

static void stop_server_errors(int errors_expected)
{
    int st;
    kill(master, SIGQUIT);
    waitpid(master, &st, 0);
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "master status %d", st);
    const char *e = strstr(log_text(), "[error]");
    if (!e)
        e = strstr(logbuf, "[crit]");
    ck_assert_msg(errors_expected || !e, "errors in %s: %.600s", log_path, e);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    ck_assert_int_eq(system(cmd), 0);
}

static void stop_server(void)
{
    stop_server_errors(0);
}

static int wait_status(pid_t pid)
{
    int st;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* The common subscriber locations of these tests. */
#define SUB_LOCATIONS                                                                        \
    "location /channels-stats { push_stream_channels_statistics; "                            \
    "push_stream_channels_path $arg_id; }\n"                                                  \
    "location /pub { push_stream_publisher admin; push_stream_channels_path $arg_id; "        \
    "push_stream_store_messages on; }\n"                                                      \
    "location ~ /ev/(.*) { push_stream_subscriber eventsource; push_stream_channels_path $1; " \
    "eventsource_retry 100ms; }\n"                                                            \
    "location ~ /lp/(.*) { push_stream_subscriber long-polling; push_stream_channels_path $1; " \
    "push_stream_message_template \"~text~\\n\"; }\n"                                          \
    "location ~ /ws/(.*) { push_stream_subscriber websocket; push_stream_channels_path $1; "   \
    "push_stream_last_received_message_tag $arg_tag; "                                        \
    "push_stream_message_template \"{\\\"pos\\\":\\\"~position~\\\",\\\"text\\\":\\\"~text~\\\"}\"; }\n"

/* ==== the text helpers and the directives, no server ======================================= */

START_TEST(helpers_and_directives)
{
    push_chan_t ch[PUSH_MAX_CHANNELS];
    unsigned n;
    ck_assert_int_eq(push_parse_channels("/a/b.b5//c.b", 255, ch, 16, &n), SHK_OK);
    ck_assert_uint_eq(n, 3);
    ck_assert_str_eq(ch[0].id, "a");
    ck_assert_str_eq(ch[1].id, "b");
    ck_assert_uint_eq(ch[1].backtrack, 5);
    ck_assert_str_eq(ch[2].id, "c.b"); /* no digits: part of the id */
    ck_assert_int_eq(push_parse_channels("", 255, ch, 16, &n), SHK_ENOENT);
    ck_assert_str_eq(shk_last_errmsg(), "No channel id provided.");
    ck_assert_int_eq(push_parse_channels("a/b/c", 255, ch, 2, &n), SHK_ERANGE);
    ck_assert_int_eq(push_parse_channels("a/a", 255, ch, 16, &n), SHK_EINVAL);
    ck_assert_int_eq(push_parse_channels("abc", 2, ch, 16, &n), SHK_ERANGE);
    ck_assert_int_eq(push_parse_channels("a b", 255, ch, 16, &n), SHK_EINVAL);
    ck_assert_int_eq(push_parse_channels("a.b99999999", 255, ch, 16, &n), SHK_ERANGE);
    ck_assert_int_eq(push_parse_channels(".b3", 255, ch, 16, &n), SHK_EINVAL);

    shk_chan_msgid_t pos[3];
    char text[PUSH_POS_MAX];
    ck_assert_int_eq(push_pos_parse("W/\"12:3,4:0\"", 2, pos), SHK_OK);
    ck_assert(pos[0].time_ms == 12 && pos[0].tag == 3 && pos[1].time_ms == 4 && pos[1].tag == 0);
    push_pos_format(pos, 2, text, sizeof text);
    ck_assert_str_eq(text, "12:3,4:0");
    ck_assert_int_eq(push_pos_parse("12:3", 2, pos), SHK_EINVAL);       /* another count */
    ck_assert_int_eq(push_pos_parse("12:3,4:0,5:5", 2, pos), SHK_EINVAL);
    ck_assert_int_eq(push_pos_parse("12:4294967296", 1, pos), SHK_EINVAL); /* tag past 32 bits */
    ck_assert_int_eq(push_pos_parse("99999999999999999999:1", 1, pos), SHK_EINVAL);
    ck_assert_int_eq(push_pos_parse("12:-1", 1, pos), SHK_EINVAL);
    ck_assert_int_eq(push_pos_parse("abc", 1, pos), SHK_EINVAL);

    push_buf_t b = {0};
    push_view_t v = {7, "hi", 2, "ch", 86400000, 3, "e1", "t1", "9:9"};
    push_tmpl_render(&b, "~id~|~text~|~size~|~channel~|~time~|~tag~|~event-id~|~event-type~|"
                         "~position~|~other~|~",
                     &v);
    ck_assert_str_eq(b.p, "7|hi|2|ch|Fri, 02 Jan 1970 00:00:00 GMT|3|e1|t1|9:9|~other~|~");
    push_buf_free(&b);
    int64_t sec;
    ck_assert_int_eq(push_http_date_parse("Fri, 02 Jan 1970 00:00:00 GMT", &sec), SHK_OK);
    ck_assert_int_eq(sec, 86400);
    ck_assert_int_eq(push_http_date_parse("yesterday", &sec), SHK_EINVAL);

    regoff_t caps[20];
    for (int i = 0; i < 20; i++)
        caps[i] = -1;
    caps[2] = 5, caps[3] = 8; /* $1 = "abc" of "/sub/abc" */
    ck_assert_int_eq(push_value_check("x$arg_id-$1$uri"), SHK_OK);
    ck_assert_int_eq(push_value_check("$host"), SHK_EINVAL);
    push_value_eval(&b, "x$arg_id-$1-$2|$uri", "/sub/abc", caps, NULL, NULL);
    ck_assert_str_eq(b.p, "x-abc-|/sub/abc");
    push_buf_free(&b);

    /* a push-stream configuration ports as it is; the refusals name the problem */
    shk_app_t app = {0};
    demo_app(&app);
    char path[] = "/tmp/shk_test_push_conf_XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    close(fd);
    struct {
        const char *text, *err; /* err NULL: accepted */
    } cases[] = {
        {"http { push_stream_shared_memory_size 1m; push_stream_message_ttl 5m;\n"
         "push_stream_max_messages_stored_per_channel 20; push_stream_ping_message_interval 10s;\n"
         "push_stream_wildcard_channel_prefix \"broad_\"; push_stream_events_channel_id ev;\n"
         "server { listen 127.0.0.1:0; server_name localhost;\n"
         "location /channels-stats { push_stream_channels_statistics; push_stream_channels_path "
         "$arg_id; }\n"
         "location /pub { push_stream_publisher admin; push_stream_channels_path $arg_id;\n"
         "push_stream_store_messages on; client_max_body_size 32k; }\n"
         "location ~ /sub/(.*) { push_stream_subscriber; push_stream_channels_path $1;\n"
         "push_stream_header_template \"<html>\"; push_stream_message_template "
         "\"<script>p(~id~,'~channel~','~text~');</script>\";\n"
         "push_stream_footer_template \"</html>\"; default_type \"text/html; charset=utf-8\"; }\n"
         "location ~ /lp/(.*) { push_stream_subscriber long-polling; push_stream_channels_path "
         "$1; }\n"
         "location ~ /ws/(.*) { push_stream_subscriber websocket; push_stream_channels_path $1;\n"
         "push_stream_websocket_allow_publish on; }\n} }\n",
         NULL},
        {"location /s { push_stream_subscriber; }\n", "push_stream_shared_memory_size is not set"},
        {"push_stream_shared_memory_size 1m; location /s { push_stream_subscriber sometimes; }\n",
         "invalid value \"sometimes\" in \"push_stream_subscriber\" directive"},
        {"channels 1m; push_stream_shared_memory_size 1m;\n", "both declare the channel store"},
        {"push_stream_message_ttl 5m;\n", "need push_stream_shared_memory_size"},
        {"push_stream_shared_memory_size 1m; location ~ /s/(.*) { push_stream_subscriber; }\n",
         "need push_stream_channels_path"},
        {"push_stream_shared_memory_size 1m; location /p { push_stream_publisher;\n"
         "push_stream_channels_path $host; }\n",
         "unknown variable in \"$host\""},
        {"push_stream_shared_memory_size 1m; location /p { push_stream_publisher;\n"
         "push_stream_subscriber; }\n",
         "this location is a push-stream publisher already"},
        {"push_stream_shared_memory_size 1m; location ~ ( { }\n", "invalid regular expression"},
        {"push_stream_shared_memory_size 1m; push_stream_timeout_with_body on;\n",
         "unknown directive \"push_stream_timeout_with_body\""},
        {"push_stream_shared_memory_size 1m; subscriber_output_limit 16m;\n", NULL},
        {"push_stream_shared_memory_size 1m; subscriber_output_limit 1k;\n",
         "invalid value \"1k\" in \"subscriber_output_limit\" directive"},
        {"push_stream_shared_memory_size 1m; subscriber_output_limit 1m;\n"
         "subscriber_output_limit 2m;\n",
         "\"subscriber_output_limit\" directive is duplicate"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        FILE *f = fopen(path, "w");
        fputs(cases[i].text, f);
        fclose(f);
        int rc = shk_master_check(path, &app);
        if (!cases[i].err)
            ck_assert_msg(rc == SHK_OK, "case %zu: %s", i, shk_last_errmsg());
        else
            ck_assert_msg(rc != SHK_OK && strstr(shk_last_errmsg(), cases[i].err),
                          "case %zu: %d %s", i, rc, shk_last_errmsg());
    }
    unlink(path);

    /* nginx's choice of a location: exact, then ^~ prefixes, regexes, the longest prefix */
    shk_cycle_t *cy = shk_cycle_new(&app);
    shk_conf_t *cf = shk_conf_new(cy);
    FILE *f = fopen(path, "w");
    fputs("location / { }\nlocation = /x { }\nlocation /sub { }\nlocation ^~ /st { }\n"
          "location ~ ^/s(.)(.*)$ { }\n",
          f);
    fclose(f);
    ck_assert_int_eq(shk_proc_conf(cf, cy), SHK_OK);
    ck_assert_int_eq(shk_conf_add(cf, app.directives), SHK_OK);
    ck_assert_msg(shk_conf_parse(cf, path) == SHK_OK, "%s", shk_last_errmsg());
    const demo_conf_t *dc = shk_cycle_app_conf(cy);
    regoff_t c[20];
    ck_assert_str_eq(demo_location_match(dc, "/x", c)->path, "/x");
    ck_assert_str_eq(demo_location_match(dc, "/xy", c)->path, "/");
    ck_assert_str_eq(demo_location_match(dc, "/stat", c)->path, "/st");
    ck_assert_int_eq(demo_location_match(dc, "/sub/ch", c)->match, DEMO_MATCH_REGEX);
    ck_assert(c[2] == 2 && c[3] == 3 && c[4] == 3 && c[5] == 7);
    ck_assert_str_eq(demo_location_match(dc, "/a", c)->path, "/");
    shk_conf_free(cf);
    shk_cycle_free(cy);
    unlink(path);
}
END_TEST

/* ==== the publisher, /channels-stats, bad requests =========================================== */

START_TEST(publisher_stats_and_bad_requests)
{
    char h[256], big[70 * 1024];
    start_server(test_workers(),
                 "push_stream_shared_memory_size 4m; push_stream_max_channel_id_length 32;\n"
                 "push_stream_max_subscribers_per_channel 2; client_max_body_size 64k;\n"
                 "push_stream_wildcard_channel_prefix w_;",
                 SUB_LOCATIONS
                 "location /pubn { push_stream_publisher; push_stream_channel_info_on_publish "
                 "off; }\n"
                 "location /sub { push_stream_subscriber; }\n"
                 "location /auth { push_stream_subscriber; push_stream_authorized_channels_only "
                 "on; push_stream_wildcard_channel_max_qtd 1; }\n");

    /* publish: the channel's info; GET; 404 */
    ck_assert_int_eq(publish("c1", "hello", "Event-Id: e1\r\nEvent-Type: t\r\n"), 200);
    ck_assert_msg(strstr(R.head, "Content-Type: application/json"), "%s", R.head);
    ck_assert_str_eq(R.body, "{\"channel\": \"c1\", \"published_messages\": 1, "
                             "\"stored_messages\": 1, \"subscribers\": 0}\r\n");
    ck_assert_int_eq(publish("c1", "again", NULL), 200);
    ck_assert_int_eq(get("/pub?id=c1"), 200);
    tj_t *j = tj_parse(R.body, NULL, 0);
    ck_assert_ptr_nonnull(j);
    ck_assert(tj_num(j, "published_messages", 0) == 2 && tj_num(j, "stored_messages", 0) == 2);
    tj_free(j);
    ck_assert_int_eq(get("/pub?id=nothing"), 404);
    ck_assert_str_eq(R.body, "Channel not found.\n");
    ck_assert_int_eq(http("POST", "/pubn?id=c2", NULL, "x", 1, &R), 200);
    ck_assert_str_eq(R.body, "\n"); /* push_stream_channel_info_on_publish off */

    /* DELETE: only in admin mode; then the channel is gone */
    ck_assert_int_eq(http("DELETE", "/pubn?id=c1", NULL, NULL, 0, &R), 405);
    ck_assert_ptr_nonnull(header(&R, "Allow", h, sizeof h));
    ck_assert_str_eq(h, "GET, POST, PUT");
    ck_assert_int_eq(http("DELETE", "/pub?id=c1", NULL, NULL, 0, &R), 200);
    ck_assert_int_eq(get("/pub?id=c1"), 404);
    ck_assert_int_eq(http("DELETE", "/pub?id=c1", NULL, NULL, 0, &R), 404);
    ck_assert_int_eq(http("PATCH", "/pub?id=c1", NULL, NULL, 0, &R), 405);

    /* bad requests: the status and a body that says why */
    ck_assert_int_eq(publish("", "x", NULL), 400);
    ck_assert_str_eq(R.body, "No channel id provided.\n");
    ck_assert_int_eq(http("POST", "/pub", NULL, "x", 1, &R), 400);
    ck_assert_str_eq(R.body, "No channel id provided.\n");
    ck_assert_int_eq(publish("a%20b", "x", NULL), 400);
    ck_assert_msg(strstr(R.body, "Invalid channel id: channel id \"a b\" has byte 0x20 at 1"),
                  "%s", R.body);
    ck_assert_int_eq(publish("0123456789012345678901234567890123", "x", NULL), 400);
    ck_assert_msg(strstr(R.body, "Invalid channel id") && strstr(R.body, "32"), "%s", R.body);
    ck_assert_int_eq(publish("c3", "x", "Event-Id: a\x01\r\n"), 400);
    memset(big, 'x', sizeof big);
    ck_assert_int_eq(http("POST", "/pub?id=c3", NULL, big, sizeof big, &R), 413);
    ck_assert_int_eq(get("/sub/"), 400);
    ck_assert_str_eq(R.body, "No channel id provided.\n");
    ck_assert_int_eq(get("/sub/a/b/c/d/e/f/g/h/i/j/k/l/m/n/o/p/q"), 400);
    ck_assert_str_eq(R.body, "Too many channels in one request (at most 16).\n");
    ck_assert_int_eq(get("/sub/ok/b%20d"), 400);
    ck_assert_msg(strstr(R.body, "Invalid channel id"), "%s", R.body);
    ck_assert_int_eq(get("/sub/x.b9999999"), 400);
    ck_assert_int_eq(http("GET", "/sub/x", "X-Nginx-PushStream-Mode: sometimes\r\n", NULL, 0, &R),
                     400);
    ck_assert_msg(strstr(R.body, "Unknown push stream mode"), "%s", R.body);
    ck_assert_int_eq(http("POST", "/sub/x", NULL, "x", 1, &R), 405);
    ck_assert_int_eq(get("/auth/never-published"), 403);
    ck_assert_str_eq(R.body, "Subscriber could not create channels.\n");
    ck_assert_int_eq(get("/auth/c2/w_a/w_b"), 403);
    ck_assert_str_eq(R.body, "Subscribed too much wildcard channels.\n");

    /* too many subscribers on a channel: 403 */
    int s1 = req_send("GET", "/sub/full", NULL, NULL, 0, 0);
    int s2 = req_send("GET", "/sub/full", NULL, NULL, 0, 0);
    await_subs("full", 2);
    ck_assert_int_eq(get("/sub/full"), 403);
    ck_assert_str_eq(R.body, "Subscribers limit per channel has been exceeded.\n");
    close(s1);
    close(s2);
    await_subs("full", 0);

    /* /channels-stats: the summary, one channel, several, all, a prefix */
    ck_assert_int_eq(publish("w_x", "x", NULL), 200);
    ck_assert_int_eq(publish("pre_1", "x", NULL), 200);
    ck_assert_int_eq(publish("pre_2", "x", NULL), 200);
    ck_assert_int_eq(get("/channels-stats"), 200);
    j = tj_parse(R.body, NULL, 0);
    ck_assert_ptr_nonnull(j);
    const char *keys[] = {"hostname", "time",  "channels",          "wildcard_channels",
                          "published_messages", "stored_messages", "messages_in_trash",
                          "channels_in_delete", "channels_in_trash", "subscribers", "uptime",
                          "by_worker.0.pid", "by_worker.0.subscribers", "by_worker.0.uptime"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        ck_assert_msg(tj_get(j, keys[i]), "no %s in %s", keys[i], R.body);
    ck_assert(tj_num(j, "wildcard_channels", 0) == 1);
    ck_assert(tj_num(j, "messages_in_trash", 1) == 0);
    tj_free(j);
    ck_assert_int_eq(get("/channels-stats?id=pre_1"), 200);
    ck_assert_str_eq(R.body, "{\"channel\": \"pre_1\", \"published_messages\": 1, "
                             "\"stored_messages\": 1, \"subscribers\": 0}\r\n");
    ck_assert_int_eq(get("/channels-stats?id=nope"), 404);
    ck_assert_int_eq(get("/channels-stats?id=pre_*"), 200);
    j = tj_parse(R.body, NULL, 0);
    ck_assert(j && tj_num(j, "channels", 0) == 2 && tj_get(j, "infos.1") && !tj_get(j, "infos.2"));
    ck_assert_str_eq(tj_str(j, "infos.1.channel"), "pre_2");
    tj_free(j);
    ck_assert_int_eq(get("/channels-stats?id=pre_2/nope/w_x"), 200);
    j = tj_parse(R.body, NULL, 0);
    ck_assert(j && tj_num(j, "channels", 0) == 1 && tj_num(j, "wildcard_channels", 0) == 1);
    tj_free(j);
    ck_assert_int_eq(get("/channels-stats?id=ALL"), 200);
    j = tj_parse(R.body, NULL, 0);
    ck_assert(j && tj_get(j, "uptime") && tj_get(j, "infos.4") && !tj_get(j, "infos.5"));
    tj_free(j);
    stop_server();
}
END_TEST

/* ==== the subscriber modes ====================================================================== */

START_TEST(subscriber_modes)
{
    char acc[65536] = "", h[256], etag[256], lm[64];
    size_t n = 0;
    start_server(test_workers(),
                 "push_stream_shared_memory_size 4m; push_stream_ping_message_text pong;",
                 SUB_LOCATIONS
                 "location /sub { push_stream_subscriber; push_stream_header_template \"H\\n\";\n"
                 "push_stream_message_template "
                 "\"[~id~|~channel~|~text~|~size~|~tag~|~event-id~|~event-type~]\\n\";\n"
                 "push_stream_footer_template \"F\\n\"; }\n"
                 "location /pinged { push_stream_subscriber; push_stream_ping_message_interval "
                 "200ms; push_stream_subscriber_connection_ttl 1s;\n"
                 "push_stream_message_template \"<~id~:~text~>\"; push_stream_footer_template "
                 "\"bye\"; }\n"
                 "location /espinged { push_stream_subscriber eventsource; "
                 "push_stream_ping_message_interval 200ms; }\n"
                 "location /lpt { push_stream_subscriber long-polling; "
                 "push_stream_longpolling_connection_ttl 300ms; }\n"
                 "location /poll { push_stream_subscriber polling; }\n");

    /* streaming: header, the backlog (.b2 of 3), then live, several channels */
    ck_assert_int_eq(publish("s1", "one", NULL), 200);
    ck_assert_int_eq(publish("s1", "two", "Event-Id: E2\r\n"), 200);
    ck_assert_int_eq(publish("s1", "three", "Event-Type: T3\r\n"), 200);
    int s = req_send("GET", "/sub/s1.b2/s2", NULL, NULL, 0, 0);
    ck_assert_msg(read_until(s, acc, &n, sizeof acc, "|s1|three|5|", 5000), "%s", acc);
    ck_assert_msg(strstr(acc, "Transfer-Encoding: chunked") && strstr(acc, "H\n") &&
                      strstr(acc, "[2|s1|two|3|") && strstr(acc, "|E2|]\n") &&
                      strstr(acc, "||T3]\n") && !strstr(acc, "|one|"),
                  "%s", acc);
    ck_assert_int_eq(publish("s2", "four", NULL), 200);
    ck_assert(read_until(s, acc, &n, sizeof acc, "[1|s2|four|4|0||]\n", 5000));
    /* a delete of one channel: its deleted message; the other goes on */
    ck_assert_int_eq(http("DELETE", "/pub?id=s2", NULL, NULL, 0, &R), 200);
    ck_assert(read_until(s, acc, &n, sizeof acc, "[-2|s2|Channel deleted|15|0||]\n", 5000));
    ck_assert_int_eq(publish("s1", "five", NULL), 200);
    ck_assert(read_until(s, acc, &n, sizeof acc, "[4|s1|five|", 5000));
    /* the last one deleted: the footer and the end of the stream */
    ck_assert_int_eq(http("DELETE", "/pub?id=s1", NULL, NULL, 0, &R), 200);
    ck_assert(read_until(s, acc, &n, sizeof acc, "F\n\r\n0\r\n\r\n", 5000));
    close(s);

    /* ping messages at the interval (~id~ -1, the ping text), then the ttl: the footer */
    n = 0;
    acc[0] = '\0';
    s = req_send("GET", "/pinged/p1", NULL, NULL, 0, 0);
    ck_assert(read_until(s, acc, &n, sizeof acc, "<-1:pong>", 3000));
    ck_assert(read_until(s, acc, &n, sizeof acc, "bye\r\n0\r\n\r\n", 5000));
    close(s);
    n = 0;
    acc[0] = '\0';
    s = req_send("GET", "/espinged/p2", NULL, NULL, 0, 0);
    ck_assert(read_until(s, acc, &n, sizeof acc, "text/event-stream", 3000));
    ck_assert(read_until(s, acc, &n, sizeof acc, "\r\n: \n\r\n", 3000)); /* a comment chunk */
    close(s);

    /* EventSource: id lines (ours or the publisher's), event and multi-line data; resume */
    ck_assert_int_eq(publish("e1", "a", NULL), 200);
    shk_chan_msgid_t first;
    ck_assert_int_eq(get("/pub?id=e1"), 200);
    n = 0;
    acc[0] = '\0';
    s = req_send("GET", "/ev/e1.b1", NULL, NULL, 0, 0);
    ck_assert(read_until(s, acc, &n, sizeof acc, "data: a\n\n", 5000));
    char *idl = strstr(acc, "id: ");
    ck_assert_ptr_nonnull(idl);
    ck_assert_int_eq(push_id_parse(idl + 4, strcspn(idl + 4, "\n"), &first), SHK_OK);
    ck_assert_int_eq(publish("e1", "b\nc", "Event-Id: my-b\r\nEvent-Type: greet\r\n"), 200);
    ck_assert(read_until(s, acc, &n, sizeof acc, "id: my-b\nevent: greet\ndata: b\ndata: c\n\n",
                         5000));
    close(s);
    ck_assert_int_eq(publish("e1", "d", NULL), 200);
    /* after our id: b and d; after the publisher's Event-Id: d only */
    char hdr[512], idtext[64];
    push_id_format(&first, idtext, sizeof idtext);
    snprintf(hdr, sizeof hdr, "Last-Event-ID: %s\r\n", idtext);
    n = 0;
    acc[0] = '\0';
    s = req_send("GET", "/ev/e1", hdr, NULL, 0, 0);
    ck_assert(read_until(s, acc, &n, sizeof acc, "data: d\n\n", 5000));
    ck_assert_msg(strstr(acc, "data: b\n") && !strstr(acc, "data: a\n"), "%s", acc);
    close(s);
    n = 0;
    acc[0] = '\0';
    s = req_send("GET", "/ev/e1", "Last-Event-ID: my-b\r\n", NULL, 0, 0);
    ck_assert(read_until(s, acc, &n, sizeof acc, "data: d\n\n", 5000));
    ck_assert_msg(!strstr(acc, "data: b\n"), "%s", acc);
    close(s);

    /* long-polling: every stored message newer than the Etag in one answer; then the Etag
     * resumes exactly; nothing new: held, then 304 at the ttl */
    ck_assert_int_eq(publish("l1", "x1", NULL), 200);
    ck_assert_int_eq(publish("l1", "x2", NULL), 200);
    ck_assert_int_eq(get("/lp/l1.b2"), 200);
    ck_assert_str_eq(R.body, "x1\nx2\n");
    ck_assert_ptr_nonnull(header(&R, "Etag", etag, sizeof etag));
    ck_assert_ptr_nonnull(header(&R, "Last-Modified", lm, sizeof lm));
    ck_assert_msg(strncmp(etag, "W/\"", 3) == 0, "%s", etag);
    snprintf(hdr, sizeof hdr, "If-None-Match: %s\r\n", etag);
    s = req_send("GET", "/lp/l1", hdr, NULL, 0, 0);
    await_subs("l1", 1);
    ck_assert_int_eq(publish("l1", "x3", NULL), 200);
    n = 0;
    acc[0] = '\0';
    while (read_some(s, acc, &n, sizeof acc, ms_bound(5000)) > 0)
        ;
    close(s);
    resp_parse(&R, acc, n);
    ck_assert_int_eq(R.status, 200);
    ck_assert_str_eq(R.body, "x3\n");
    ck_assert_ptr_nonnull(header(&R, "Etag", etag, sizeof etag));
    snprintf(hdr, sizeof hdr, "If-None-Match: %s\r\n", etag);
    ck_assert_int_eq(http("GET", "/lpt/l1", hdr, NULL, 0, &R), 304);
    ck_assert_ptr_nonnull(header(&R, "Etag", h, sizeof h));
    ck_assert_str_eq(h, etag);
    /* If-Modified-Since alone: from the next second on */
    snprintf(hdr, sizeof hdr, "If-Modified-Since: Thu, 01 Jan 1970 00:00:00 GMT\r\n");
    ck_assert_int_eq(http("GET", "/lp/l1", hdr, NULL, 0, &R), 200);
    ck_assert_str_eq(R.body, "x1\nx2\nx3\n");

    /* polling: 304 at once when nothing is new, 200 with what is */
    snprintf(hdr, sizeof hdr, "If-None-Match: %s\r\n", etag);
    ck_assert_int_eq(http("GET", "/poll/l1", hdr, NULL, 0, &R), 304);
    ck_assert_int_eq(publish("l1", "x4", NULL), 200);
    ck_assert_int_eq(http("GET", "/poll/l1", hdr, NULL, 0, &R), 200);
    ck_assert_str_eq(R.body, "x4");
    /* the header switches a streaming location to polling */
    snprintf(hdr, sizeof hdr, "If-None-Match: %s\r\nX-Nginx-PushStream-Mode: polling\r\n", etag);
    ck_assert_int_eq(http("GET", "/sub/l1", hdr, NULL, 0, &R), 200);
    ck_assert_str_eq(R.body, "H\n[4|l1|x4|2|0||]\nF\n");
    stop_server();
}
END_TEST

/* ==== real clients across a reload ============================================================== */

/* Publish m1..mN on ch, with a reload (SIGHUP) after m<reload_at>: the next
 * messages go out while the old workers close their subscribers and the
 * clients come back, the rest once the old generation is gone, so every
 * client was closed by the reload before its last message. */
static void publish_with_reload(const char *ch, int nmsg, int reload_at)
{
    char text[32];
    for (int i = 1; i <= nmsg; i++) {
        snprintf(text, sizeof text, "m%d", i);
        ck_assert_int_eq(publish(ch, text, NULL), 200);
        if (i == reload_at)
            kill(master, SIGHUP);
        if (i == reload_at + 5) {
            for (int k = 0; k < ms_bound(20000) / 5 && !log_has("generation 1 finished"); k++)
                tu_pause_ms(5);
            ck_assert_msg(log_has("generation 1 finished"), "the reload did not end");
        }
    }
}

/* Read the node child's lines until `needle` (bounded). */
static int child_until(int fd, char *acc, size_t *n, size_t cap, const char *needle, int ms)
{
    uint64_t end = shk_time_ms() + (uint64_t)ms;
    while (!strstr(acc, needle) && !strstr(acc, "FAIL")) {
        uint64_t now = shk_time_ms();
        if (now >= end || read_some(fd, acc, n, cap, (int)(end - now)) <= 0)
            return 0;
    }
    return strstr(acc, needle) != NULL;
}

START_TEST(node_clients_across_reload)
{
    char script[PATH_MAX + 64], base[64], acc[8192] = "";
    size_t n = 0;
    int fd;
    start_server(2, "push_stream_shared_memory_size 4m;",
                 SUB_LOCATIONS "location /wsp { push_stream_subscriber websocket; "
                               "push_stream_ping_message_interval 100ms; }\n");
    snprintf(script, sizeof script, "%s/test/node/push_clients.js", repo);
    snprintf(base, sizeof base, "http://127.0.0.1:%d", port);
    char *argv[] = {"node", script, base, "nc", "60", "es", "ws", "lp", "wp", NULL};
    pid_t node = tu_spawn(argv, &fd);
    await_subs("nc", 3);
    publish_with_reload("nc", 60, 25);
    int ok = child_until(fd, acc, &n, sizeof acc, "done es", ms_bound(30000)) &&
             child_until(fd, acc, &n, sizeof acc, "done ws", ms_bound(30000)) &&
             child_until(fd, acc, &n, sizeof acc, "done lp", ms_bound(30000)) &&
             child_until(fd, acc, &n, sizeof acc, "done wp", ms_bound(30000)); /* ping frames */
    if (!ok)
        kill(node, SIGKILL);
    ck_assert_msg(wait_status(node) == 0 && ok, "node: %s", acc);
    /* the streams were closed by the reload and came back (a long-poll may have been
     * between two requests then) */
    ck_assert_msg(!strstr(acc, "done es 0") && !strstr(acc, "done ws 0"), "no reconnection: %s",
                  acc);
    ck_assert(log_has("reload done"));
    close(fd);
    stop_server();
}
END_TEST

START_TEST(browser_across_reload)
{
    char script[PATH_MAX + 64], base[64], acc[8192] = "", page[PATH_MAX + 128];
    size_t n = 0;
    int fd;
    find_repo();
    snprintf(page, sizeof page,
             "push_stream_shared_memory_size 4m; demo_stats_channel shmkit-stats 200ms;\n"
             "push_stream_max_messages_stored_per_channel 50;");
    char body[PATH_MAX + 4096];
    snprintf(body, sizeof body, "%slocation = / { demo_page %s/demo/push_page.html; }\n",
             SUB_LOCATIONS, repo);
    start_server(2, page, body);
    snprintf(script, sizeof script, "%s/test/node/push_browser.js", repo);
    snprintf(base, sizeof base, "http://127.0.0.1:%d", port);
    char *argv[] = {"node", script, base, "bc", "40", NULL};
    pid_t node = tu_spawn(argv, &fd);
    int ok = child_until(fd, acc, &n, sizeof acc, "page form ok", 30000) &&
             child_until(fd, acc, &n, sizeof acc, "open\n", 30000);
    if (ok) {
        await_subs("bc", 2);
        publish_with_reload("bc", 40, 15);
        ok = child_until(fd, acc, &n, sizeof acc, "done es", 30000) &&
             child_until(fd, acc, &n, sizeof acc, "done ws", 30000);
    }
    if (!ok)
        kill(node, SIGKILL);
    ck_assert_msg(wait_status(node) == 0 && ok, "chromium: %s", acc);
    ck_assert_msg(!strstr(acc, "done es 0") && !strstr(acc, "done ws 0"), "no reconnection: %s",
                  acc);
    close(fd);
    stop_server();
}
END_TEST

/* ==== failures ==================================================================================== */

START_TEST(worker_killed_leaves_nothing_pinned)
{
    int socks[6];
    start_server(2, "push_stream_shared_memory_size 4m;",
                 SUB_LOCATIONS "location /sub { push_stream_subscriber; }\n");
    for (int i = 0; i < 6; i++)
        socks[i] = req_send("GET", "/sub/k1/k2", NULL, NULL, 0, 0);
    await_subs("k1", 6);
    /* the worker holding the most subscribers is killed */
    ck_assert_int_eq(get("/channels-stats"), 200);
    tj_t *j = tj_parse(R.body, NULL, 0);
    ck_assert_ptr_nonnull(j);
    pid_t victim = 0;
    double most = 0, total = tj_num(j, "subscribers", 0);
    const tj_t *w = tj_get(j, "by_worker");
    for (size_t i = 0; w && i < w->nkids; i++)
        if (tj_num(&w->kids[i], "subscribers", 0) > most) {
            most = tj_num(&w->kids[i], "subscribers", 0);
            victim = (pid_t)atoi(tj_str(&w->kids[i], "pid"));
        }
    tj_free(j);
    ck_assert(victim > 0 && most > 0 && total == 12);
    for (int i = 0; i < 20; i++)
        ck_assert_int_eq(publish(i % 2 ? "k1" : "k2", "x", NULL), 200);
    kill(victim, SIGKILL);
    /* its subscribers leave the counts once the master reaped it */
    for (int i = 0; i < ms_bound(10000) / 5 && stat_num("subscribers") != total - most; i++)
        tu_pause_ms(5);
    ck_assert_msg(stat_num("subscribers") == total - most, "%.0f subscribers",
                  stat_num("subscribers"));
    for (int i = 0; i < 20; i++)
        ck_assert_int_eq(publish(i % 2 ? "k1" : "k2", "y", NULL), 200);
    /* nothing in flight is held for the dead worker: every message in the zone is stored */
    for (int i = 0; i < ms_bound(5000) / 5 && stat_num("messages_in_trash") != 0; i++)
        tu_pause_ms(5);
    ck_assert(stat_num("messages_in_trash") == 0);
    ck_assert(log_has("exited on signal 9"));
    for (int i = 0; i < 6; i++)
        close(socks[i]);
    await_subs("k1", 0);
    await_subs("k2", 0);
    stop_server_errors(1); /* the kill is logged as one */
}
END_TEST

/* The pids of the workers in /channels-stats' by_worker, sorted, into
 * pids[cap]; their number. */
static int worker_pids(pid_t *pids, int cap)
{
    ck_assert_int_eq(get("/channels-stats"), 200);
    tj_t *j = tj_parse(R.body, NULL, 0);
    ck_assert_ptr_nonnull(j);
    const tj_t *w = tj_get(j, "by_worker");
    int n = 0;
    for (size_t i = 0; w && i < w->nkids && n < cap; i++) {
        pid_t p = (pid_t)atoi(tj_str(&w->kids[i], "pid"));
        int k = n++;
        for (; k > 0 && pids[k - 1] > p; k--)
            pids[k] = pids[k - 1];
        pids[k] = p;
    }
    tj_free(j);
    return n;
}

/* The log from the master's line saying a worker exited on a signal (what
 * a SIGPIPE in a worker leaves), or "" if it has none. */
static const char *signal_line(void)
{
    const char *l = strstr(log_text(), "exited on signal");
    return l ? l : "";
}

/* Read the answers to `want` pipelined publishes on keep-alive socket s
 * (bounded); each must be a 200. */
static void pub_answers(int s, int want)
{
    static char acc[64 * 1024];
    size_t n = 0;
    int done = 0; /* status lines already dropped from acc's front */
    acc[0] = '\0';
    for (;;) {
        int seen = 0;
        const char *last = NULL, *p = acc;
        for (; (p = strstr(p, "HTTP/1.1 ")) && p + 13 <= acc + n; p += 9, seen++) {
            ck_assert_msg(!strncmp(p, "HTTP/1.1 200 ", 13), "a publish was not a 200: %.300s", p);
            last = p;
        }
        if (done + seen >= want)
            return;
        if (last && n > sizeof acc / 2) { /* keep the last answer on */
            done += seen - 1;
            n -= (size_t)(last - acc);
            memmove(acc, last, n + 1);
        }
        ck_assert_msg(read_some(s, acc, &n, sizeof acc, ms_bound(10000)) > 0,
                      "the publisher got %d of %d answers (its worker ended? %s)", done + seen, want,
                      signal_line());
    }
}

/* Subscribers that vanish mid-stream (a reset, or a close with unread data)
 * while messages are written to them: the worker meets the dead socket on
 * its direct write or its bufferevent's, and drops the connection; it is
 * never ended by SIGPIPE. Half the subscribers read, so their output goes
 * out directly; the other half never read, with a small receive buffer, so
 * their output piles up in the server's bufferevents. */
START_TEST(subscribers_vanish_mid_stream)
{
    enum { MAXSUB = 400, MSG = 4096 };
    int nsub = (int)tu_scale(MAXSUB, 4), waves = 16, per = nsub / waves;
    int socks[MAXSUB], reads[MAXSUB], small = 4096, pub, npub = 0;
    pid_t before[4] = {0}, after[4] = {0};
    static char body[MSG], req[4 * (MSG + 256)], sink[64 * 1024], acc[8192];
    size_t n = 0;
    start_server(2, "push_stream_shared_memory_size 16m;", SUB_LOCATIONS);
    ck_assert_int_eq(worker_pids(before, 4), 2);
    memset(body, 'v', sizeof body);
    for (int i = 0; i < nsub; i++) {
        char t[32];
        snprintf(t, sizeof t, "/ev/v%d", i % 2);
        socks[i] = req_send("GET", t, NULL, NULL, 0, 0);
        reads[i] = (i / 2) % 2;
        if (!reads[i])
            ck_assert_int_eq(setsockopt(socks[i], SOL_SOCKET, SO_RCVBUF, &small, sizeof small), 0);
    }
    await_subs("v0", nsub / 2);
    await_subs("v1", nsub / 2);
    pub = conn();
    for (int w = 0; w < waves; w++) {
        /* four publishes (4 KiB, both channels) before every second close, their
         * answers read only after the wave, so the resets arrive while the
         * workers write */
        for (int k = 0; k < per; k++) {
            int i = w * per + k;
            if (k % 2 == 0) {
                size_t len = 0;
                for (int m = 0; m < 4; m++) {
                    len += (size_t)snprintf(req + len, sizeof req - len,
                                            "POST /pub?id=v%d HTTP/1.1\r\nHost: t\r\n"
                                            "Content-Length: %d\r\n\r\n",
                                            m % 2, MSG);
                    memcpy(req + len, body, MSG);
                    len += MSG;
                }
                send_all(pub, req, len);
                npub += 4;
            }
            if (i % 3 != 2) { /* a reset; the rest a plain close */
                struct linger l = {1, 0};
                ck_assert_int_eq(setsockopt(socks[i], SOL_SOCKET, SO_LINGER, &l, sizeof l), 0);
            }
            close(socks[i]);
            socks[i] = -1;
        }
        for (int i = 0; i < nsub; i++) /* the readers drain what came */
            while (socks[i] >= 0 && reads[i] && recv(socks[i], sink, sizeof sink, MSG_DONTWAIT) > 0)
                ;
        pub_answers(pub, npub);
        npub = 0;
    }
    for (int i = 0; i < nsub; i++)
        if (socks[i] >= 0)
            close(socks[i]);
    close(pub);
    /* every subscriber left the counts: a worker that died was reaped (and logged) by now */
    await_subs("v0", 0);
    await_subs("v1", 0);
    /* the server still works: a new subscriber gets a new message */
    int s = req_send("GET", "/ev/v0", NULL, NULL, 0, 0);
    await_subs("v0", 1);
    ck_assert_int_eq(publish("v0", "after the waves", NULL), 200);
    ck_assert_msg(read_until(s, acc, &n, sizeof acc, "data: after the waves\n\n", 5000), "%s", acc);
    close(s);
    /* the same workers as at the start: none was ended by a signal and respawned */
    ck_assert_msg(worker_pids(after, 4) == 2 && before[0] == after[0] && before[1] == after[1],
                  "workers %d %d, then %d %d: %.600s", (int)before[0], (int)before[1],
                  (int)after[0], (int)after[1], signal_line());
    ck_assert_msg(!log_has("exited on signal"), "%s", signal_line());
    stop_server();
}
END_TEST

START_TEST(zone_full_then_delete)
{
    char req[64 * 1024], body[2048], raw[1 << 16];
    int got507 = 0, s, last = 0;
    start_server(1, "push_stream_shared_memory_size 64k; push_stream_max_channel_id_length 16;",
                 SUB_LOCATIONS);
    memset(body, 'z', sizeof body);
    /* channels on channels, each with a stored message: the oldest messages are
     * reclaimed, then making a channel fails: 507, and the store stays sound */
    for (int i = 0; i < 4000 && !got507; i += 50) {
        size_t len = 0, n = 0;
        for (int k = i; k < i + 50; k++) {
            size_t bl = k % 8 ? 16 : sizeof body;
            len += (size_t)snprintf(req + len, sizeof req - len,
                                    "POST /pub?id=z%d HTTP/1.1\r\nHost: t\r\nContent-Length: "
                                    "%zu\r\n%s\r\n",
                                    k, bl, k == i + 49 ? "Connection: close\r\n" : "");
            memcpy(req + len, body, bl);
            len += bl;
        }
        s = conn();
        send_all(s, req, len);
        while (read_some(s, raw, &n, sizeof raw, ms_bound(10000)) > 0)
            ;
        close(s);
        got507 = strstr(raw, "HTTP/1.1 507") != NULL;
        if (got507)
            ck_assert_msg(strstr(raw, "The channel store is full"), "%s", raw);
        ck_assert_msg(!strstr(raw, "HTTP/1.1 500"), "%s", raw);
        last = i + 49;
    }
    ck_assert_msg(got507, "the zone never filled");
    /* DELETE always works, and gives room back: a new channel can be made again */
    for (int k = 0; k <= last; k++) {
        char t[64];
        snprintf(t, sizeof t, "/pub?id=z%d", k);
        int st = http("DELETE", t, NULL, NULL, 0, &R);
        ck_assert_msg(st == 200 || st == 404, "DELETE %s: %d", t, st);
    }
    ck_assert_int_eq(publish("fresh", "room", NULL), 200);
    stop_server_errors(1); /* the slab logs the allocations that failed */
}
END_TEST

/* The frame made once per worker for a message (push_sub.c, frame_of):
 * on one worker, many EventSource subscribers of a channel, streaming ones
 * of another location and EventSource ones of two channels (whose id is a
 * position of both) each get every message once, in order, in their own
 * framing; the one-channel EventSource ids of a message are the same. */
static const char *es_frame(const char *from, int i, char *id, size_t cap)
{
    char data[64];
    snprintf(data, sizeof data, "\ndata: msg-%d\n%s\n", i, i % 3 == 0 ? "data: line2\n" : "");
    const char *d = strstr(from, data);
    if (!d)
        return NULL;
    const char *l = d; /* the id line ends at d */
    while (l > from && l[-1] != '\n')
        l--;
    if (strncmp(l, "id: ", 4) != 0 || (size_t)(d - l - 4) >= cap)
        return NULL;
    memcpy(id, l + 4, (size_t)(d - l - 4));
    id[d - l - 4] = '\0';
    const char *end = d + strlen(data);
    return strstr(end, data) ? NULL : end; /* once */
}

START_TEST(one_worker_many_subscribers_one_frame)
{
    enum { NSUB = 13, NMSG = 30 };
    /* the store gives a message to them in this order: 0 EventSource, 1
     * streaming, 2 EventSource of m1 and m2 */
    static const int kind[NSUB] = {0, 0, 0, 0, 2, 1, 1, 0, 2, 0, 1, 0, 0};
    static char acc[NSUB][65536];
    size_t n[NSUB] = {0};
    int s[NSUB];
    start_server(1, "push_stream_shared_memory_size 4m;",
                 SUB_LOCATIONS "location ~ /st/(.*) { push_stream_subscriber; "
                               "push_stream_channels_path $1; "
                               "push_stream_message_template \"[~id~|~channel~|~text~]\\n\"; }\n");
    for (int k = 0; k < NSUB; k++) {
        acc[k][0] = '\0';
        s[k] = req_send("GET", kind[k] == 0 ? "/ev/m1" : kind[k] == 1 ? "/st/m1" : "/ev/m1/m2",
                        NULL, NULL, 0, 0);
        ck_assert(read_until(s[k], acc[k], &n[k], sizeof acc[k], "\r\n\r\n", 5000));
    }
    await_subs("m1", NSUB);
    for (int i = 1; i <= NMSG; i++) {
        char text[64], hdr[64];
        snprintf(text, sizeof text, "msg-%d%s", i, i % 3 == 0 ? "\nline2" : "");
        snprintf(hdr, sizeof hdr, "Event-Id: E%d\r\n", i);
        ck_assert_int_eq(publish("m1", text, i % 5 == 0 ? hdr : NULL), 200);
    }
    char ids[NMSG + 1][64] = {{0}};
    for (int k = 0; k < NSUB; k++) {
        char last[64];
        const char *l2 = NMSG % 3 ? "" : "line2";
        if (kind[k] == 1)
            snprintf(last, sizeof last, "[%d|m1|msg-%d%s%s]\n", NMSG, NMSG, *l2 ? "\n" : "", l2);
        else
            snprintf(last, sizeof last, "data: msg-%d\n%s%s%s\n", NMSG, *l2 ? "data: " : "", l2,
                     *l2 ? "\n" : "");
        ck_assert_msg(read_until(s[k], acc[k], &n[k], sizeof acc[k], last, 5000), "%d: %s", k,
                      acc[k]);
        close(s[k]);
        const char *at = strstr(acc[k], "\r\n\r\n");
        for (int i = 1; i <= NMSG; i++) {
            char id[64], want[64];
            if (kind[k] == 1) {
                snprintf(want, sizeof want, "[%d|m1|msg-%d%s]\n", i, i, i % 3 ? "" : "\nline2");
                const char *f = strstr(at, want);
                ck_assert_msg(f && !strstr(f + 1, want), "stream %d, message %d: %s", k, i,
                              acc[k]);
                at = f + strlen(want);
                continue;
            }
            const char *next = es_frame(at, i, id, sizeof id);
            ck_assert_msg(next, "eventsource %d, message %d: %s", k, i, acc[k]);
            at = next;
            if (i % 5 == 0) {
                snprintf(want, sizeof want, "E%d", i);
                ck_assert_str_eq(id, want);
            } else if (kind[k] == 0) {
                ck_assert_msg(strspn(id, "0123456789:") == strlen(id) && strchr(id, ':') &&
                                  !strchr(id, ','),
                              "id %s", id);
                if (!ids[i][0])
                    snprintf(ids[i], sizeof ids[i], "%s", id);
                else
                    ck_assert_str_eq(id, ids[i]);
            } else { /* two channels: the position of both */
                ck_assert_msg(strchr(id, ',') && strncmp(id, ids[i], strlen(ids[i])) == 0 &&
                                  id[strlen(ids[i])] == ',',
                              "id %s (m1 alone %s)", id, ids[i]);
            }
        }
    }
    stop_server();
}
END_TEST

int main(void)
{
    Suite *s = suite_create("demo_push");
    TCase *tc = tcase_create("push");
    tcase_set_timeout(tc, tu_valgrind() ? 600 : 60);
    tcase_add_test(tc, helpers_and_directives);
    tcase_add_test(tc, publisher_stats_and_bad_requests);
    tcase_add_test(tc, subscriber_modes);
    tcase_add_test(tc, one_worker_many_subscribers_one_frame);
    tcase_add_test(tc, node_clients_across_reload);
    tcase_add_test(tc, browser_across_reload);
    tcase_add_test(tc, worker_killed_leaves_nothing_pinned);
    tcase_add_test(tc, subscribers_vanish_mid_stream);
    tcase_add_test(tc, zone_full_then_delete);
    suite_add_tcase(s, tc);
    return tu_run(s);
}
