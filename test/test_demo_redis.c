/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * test_demo_redis.c: demo servers sharing their channels through Redis
 * (channels_redis, docs/redis.md), run for real: a redis-server started
 * for each test on a free loopback port in a temporary directory
 * (util_redis), two or three demo instances on their own ports and shm
 * instances (util_demo), and Node clients in every subscriber mode
 * (EventSource, WebSocket, long-polling, streaming; some move from one
 * instance to another with their position: test/node/redis_clients.js).
 * Publishes on A reach every subscriber of A, B and C once, in order, with
 * the ids of Redis's stream entries; redis-server SIGKILLed under a
 * publisher and restarted: 503 while it is away, nothing answered 200 lost,
 * subscribers stay connected; B's relay SIGKILLed and respawned while A
 * publishes: B catches up; the same on a 3-master Redis Cluster with a
 * channel on each master.
 */
#include "util_demo.h"
#include "util_redis.h"
#include "util_run.h"
#include "util_test.h"

#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#define NS "tdr"    /* the instances' namespace in Redis */
#define MAXREC 2048 /* messages a client may record */

/* The subscriber locations redis_clients.js speaks to, and the publisher. */
static const char *const LOCATIONS =
    "location /channels-stats { push_stream_channels_statistics; "
    "push_stream_channels_path $arg_id; }\n"
    "location /pub { push_stream_publisher admin; push_stream_channels_path $arg_id; "
    "push_stream_store_messages on; }\n"
    "location ~ /ev/(.*) { push_stream_subscriber eventsource; push_stream_channels_path $1; "
    "eventsource_retry 100ms; }\n"
    "location ~ /lp/(.*) { push_stream_subscriber long-polling; push_stream_channels_path $1; "
    "push_stream_message_template \"~text~=~position~\\n\"; }\n"
    "location ~ /st/(.*) { push_stream_subscriber streaming; push_stream_channels_path $1; "
    "push_stream_last_received_message_tag $arg_tag; "
    "push_stream_message_template \"~text~=~position~\\n\"; }\n"
    "location ~ /ws/(.*) { push_stream_subscriber websocket; push_stream_channels_path $1; "
    "push_stream_last_received_message_tag $arg_tag; "
    "push_stream_message_template \"{\\\"pos\\\":\\\"~position~\\\",\\\"text\\\":\\\"~text~\\\"}\"; }\n";

static int workers(void)
{
    return tu_valgrind() ? 1 : 2;
}

/* n instances on the Redis at redis_port. */
static void start_instances(td_srv_t *d, int n, int redis_port)
{
    char main_text[256], inst[32];
    snprintf(main_text, sizeof main_text,
             "channels_redis redis://127.0.0.1:%d/0 namespace=" NS " backoff=50ms "
             "backoff_max=500ms;",
             redis_port);
    for (int i = 0; i < n; i++) {
        memset(&d[i], 0, sizeof d[i]);
        d[i].port = tu_free_port();
        snprintf(inst, sizeof inst, "dr%ld_%d", (long)getpid(), i);
        td_start(&d[i], inst, workers(), main_text,
                 "push_stream_shared_memory_size 8m;\n"
                 "push_stream_max_messages_stored_per_channel 1000;\n"
                 "push_stream_message_ttl 10m;",
                 LOCATIONS);
        td_await_str(d[i].port, NULL, "redis.state", "up", 10000);
    }
}

static void stop_instances(td_srv_t *d, int n)
{
    for (int i = 0; i < n; i++)
        td_stop(&d[i], 0);
}

static td_resp_t R; /* the last publish's answer */

static int publish(const td_srv_t *d, const char *ch, const char *text)
{
    char t[128];
    snprintf(t, sizeof t, "/pub?id=%s", ch);
    return td_http(d->port, "POST", t, NULL, text, strlen(text), &R);
}

/* ---- the Node clients ---------------------------------------------------------------------- */

typedef struct {
    pid_t pid;
    int fd;
    int nclients;
    size_t n;
    char out[256 * 1024];
} node_t;

/* redis_clients.js on channel ch with the instances d[0..n-1] and specs. */
static void node_start(node_t *nd, const char *ch, const td_srv_t *d, int n, const char *specs)
{
    char script[PATH_MAX + 64], bases[256] = "", timeout[32], spec_buf[512];
    char *argv[48];
    int k = 0;
    for (int i = 0; i < n; i++)
        snprintf(bases + strlen(bases), sizeof bases - strlen(bases), "%shttp://127.0.0.1:%d",
                 i ? "," : "", d[i].port);
    snprintf(script, sizeof script, "%s/test/node/redis_clients.js", tu_top_dir());
    snprintf(timeout, sizeof timeout, "%d", td_bound(25000));
    setenv("PUSH_CLIENT_TIMEOUT_MS", timeout, 1);
    snprintf(spec_buf, sizeof spec_buf, "%s", specs);
    argv[k++] = "node";
    argv[k++] = script;
    argv[k++] = (char *)ch;
    argv[k++] = bases;
    nd->nclients = 0;
    for (char *save, *t = strtok_r(spec_buf, " ", &save); t && k < 47;
         t = strtok_r(NULL, " ", &save), nd->nclients++)
        argv[k++] = t;
    argv[k] = NULL;
    nd->n = 0;
    nd->out[0] = '\0';
    nd->pid = tu_spawn(argv, &nd->fd);
}

/* Wait until the node child ends (every client got "end"); asserted. */
static void node_finish(node_t *nd)
{
    uint64_t end = tu_now_ms() + (uint64_t)td_bound(25000);
    /* no such line: read to the end of its output */
    td_child_until(nd->fd, nd->out, &nd->n, sizeof nd->out, "\n\n", td_bound(25000));
    int ok = tu_now_ms() < end && !strstr(nd->out, "FAIL");
    if (!ok)
        kill(nd->pid, SIGKILL);
    int st = tu_wait(nd->pid);
    close(nd->fd);
    ck_assert_msg(ok && st == 0, "node (status %d): %.3000s", st, nd->out);
}

/* How many lines of nd's output are exactly `line`. */
static int node_lines(const node_t *nd, const char *line)
{
    int c = 0;
    size_t l = strlen(line);
    for (const char *p = nd->out; (p = strstr(p, line)); p += l)
        if ((p == nd->out || p[-1] == '\n') && p[l] == '\n')
            c++;
    return c;
}

/* ---- what the clients got -------------------------------------------------------------------- */

/* One channel's messages: the texts "m<i>" published, what happened to each. */
enum { M_NONE, M_OK, M_REFUSED, M_MAYBE };

typedef struct {
    int n;                 /* m1 .. mn were tried */
    unsigned char st[MAXREC];
    char pos[MAXREC][40];  /* the position every client saw for m<i> ("" none yet) */
    char xid[MAXREC][40];  /* the stream entry's id, as a position */
} msgs_t;

/* Read the channel's stream from the Redis at port (on a cluster: the
 * channel's master) and record each entry's id by its text. */
static void msgs_read_stream(msgs_t *m, int port, const char *ch)
{
    tr_srv_t s = {.port = port};
    redisContext *c = tr_srv_conn(&s);
    redisReply *r = redisCommand(c, "XRANGE " NS ":{%s} - +", ch);
    ck_assert_msg(r && r->type == REDIS_REPLY_ARRAY, "XRANGE %s: %s", ch,
                  r && r->type == REDIS_REPLY_ERROR ? r->str : "?");
    for (size_t i = 0; i < r->elements; i++) {
        redisReply *e = r->element[i], *f = e->element[1];
        const char *text = NULL;
        for (size_t k = 0; k + 1 < f->elements; k += 2)
            if (!strcmp(f->element[k]->str, "d"))
                text = f->element[k + 1]->str;
        ck_assert_ptr_nonnull(text);
        if (!strcmp(text, "end"))
            continue;
        int idx = text[0] == 'm' ? atoi(text + 1) : 0;
        ck_assert_msg(idx > 0 && idx <= m->n, "stream %s: entry \"%s\"", ch, text);
        ck_assert_msg(!m->xid[idx][0], "stream %s: \"%s\" stored twice", ch, text);
        char *dash = strchr(e->element[0]->str, '-');
        ck_assert_ptr_nonnull(dash);
        snprintf(m->xid[idx], sizeof m->xid[idx], "%.*s:%s", (int)(dash - e->element[0]->str),
                 e->element[0]->str, dash + 1);
    }
    freeReplyObject(r);
    redisFree(c);
    for (int i = 1; i <= m->n; i++) {
        ck_assert_msg(m->st[i] != M_OK || m->xid[i][0], "m%d was answered 200 and is not in "
                      "the stream %s", i, ch);
        ck_assert_msg(m->st[i] != M_REFUSED || !m->xid[i][0], "m%d was refused and is in the "
                      "stream %s", i, ch);
    }
}

/* Client `name`'s record in nd: every message answered 200 once, in
 * order, none refused, each at the position of its stream entry (so the
 * same on every instance). */
static void check_client(const node_t *nd, const char *name, msgs_t *m)
{
    char want[64];
    snprintf(want, sizeof want, "\nrec %s ", name); /* never the first line: "open" is */
    const char *p = strstr(nd->out, want);
    ck_assert_msg(p, "client %s: no record in %.2000s", name, nd->out);
    p += strlen(want);
    int last = 0, got = 0;
    while (*p && *p != '\n') {
        size_t len = strcspn(p, " \n");
        char item[96];
        snprintf(item, sizeof item, "%.*s", (int)len, p);
        p += len;
        if (*p == ' ')
            p++;
        char *eq = strchr(item, '=');
        ck_assert_msg(eq && item[0] == 'm', "client %s: \"%s\"", name, item);
        *eq = '\0';
        int idx = atoi(item + 1);
        ck_assert_msg(idx > last && idx <= m->n, "client %s: m%d after m%d (lost order or twice)",
                      name, idx, last);
        for (int k = last + 1; k < idx; k++)
            ck_assert_msg(m->st[k] != M_OK, "client %s: m%d (answered 200) lost", name, k);
        ck_assert_msg(m->st[idx] != M_REFUSED, "client %s: got m%d, which was refused", name,
                      idx);
        ck_assert_msg(!strcmp(eq + 1, m->xid[idx]), "client %s: m%d at %s, its stream entry is "
                      "%s", name, idx, eq + 1, m->xid[idx]);
        if (!m->pos[idx][0])
            snprintf(m->pos[idx], sizeof m->pos[idx], "%s", eq + 1);
        ck_assert_str_eq(m->pos[idx], eq + 1);
        last = idx;
        got++;
    }
    for (int k = last + 1; k <= m->n; k++)
        ck_assert_msg(m->st[k] != M_OK, "client %s: m%d (answered 200) lost", name, k);
    ck_assert_int_gt(got, 0);
}

/* Every client of nd (space-separated names in specs). */
static void check_clients(const node_t *nd, const char *specs, msgs_t *m)
{
    char buf[512];
    snprintf(buf, sizeof buf, "%s", specs);
    for (char *save, *t = strtok_r(buf, " ", &save); t; t = strtok_r(NULL, " ", &save))
        check_client(nd, t, m);
}

/* m1..m<count> on ch through d, each answered 200. */
static void publish_ok(const td_srv_t *d, const char *ch, msgs_t *m, int count)
{
    char text[32];
    for (int i = 0; i < count; i++) {
        ck_assert_int_lt(m->n + 1, MAXREC);
        snprintf(text, sizeof text, "m%d", ++m->n);
        ck_assert_msg(publish(d, ch, text) == 200, "publish %s on port %d: %d %s", text, d->port,
                      R.status, R.body);
        m->st[m->n] = M_OK;
    }
}

static void publish_end(const td_srv_t *d, const char *ch)
{
    ck_assert_msg(publish(d, ch, "end") == 200, "publish end: %d %s", R.status, R.body);
}

/* Poll until `ch` has `subs` subscribers on instance d. */
static void await_subs(const td_srv_t *d, const char *ch, int subs)
{
    char q[80];
    snprintf(q, sizeof q, "?id=%s", ch);
    td_await_stat(d->port, q, "subscribers", subs, 20000);
}

/* ==== three instances, every mode, clients moving ================================================ */

#define SPECS_3 "es0 ws0 lp0 st0 es1 ws1 lp1 st1 es2 ws2 lp2 st2"
#define MOVERS_3(k) "es0>1@" k " ws0>2@" k " lp0>1@" k " st0>2@" k

START_TEST(three_instances_every_mode)
{
    static msgs_t m;
    static node_t nd;
    tr_srv_t srv = {0};
    td_srv_t d[3];
    int n = (int)tu_scale(60, 4);
    char specs[256];
    memset(&m, 0, sizeof m);
    tr_srv_start(&srv);
    start_instances(d, 3, srv.port);
    snprintf(specs, sizeof specs, "%s %s", SPECS_3, tu_valgrind() ? MOVERS_3("7") : MOVERS_3("30"));
    node_start(&nd, "fan", d, 3, specs);
    await_subs(&d[0], "fan", 8);
    await_subs(&d[1], "fan", 4);
    await_subs(&d[2], "fan", 4);
    publish_ok(&d[0], "fan", &m, n);
    ck_assert_msg(strstr(R.body, "\"published_messages\": "), "%s", R.body);
    publish_end(&d[0], "fan");
    node_finish(&nd);
    msgs_read_stream(&m, srv.port, "fan");
    check_clients(&nd, specs, &m);
    ck_assert_int_eq(node_lines(&nd, "moved es0>1@30") + node_lines(&nd, "moved es0>1@7"), 1);
    ck_assert_int_eq(node_lines(&nd, "moved st0>2@30") + node_lines(&nd, "moved st0>2@7"), 1);
    /* B and C got every message from Redis, none twice */
    for (int i = 1; i < 3; i++)
        ck_assert_int_eq(td_stat(d[i].port, NULL, "redis.relayed"), n + 1);
    /* commands: one per publish, the link's own few besides */
    double cmds = td_stat(d[0].port, NULL, "redis.commands");
    ck_assert_msg(cmds >= n + 1 && cmds <= n + 1 + 8, "A sent %.0f commands for %d publishes",
                  cmds, n + 1);
    stop_instances(d, 3);
    tr_srv_stop(&srv);
}
END_TEST

/* ==== redis-server SIGKILLed under a publisher, restarted ========================================== */

/* A child that SIGKILLs pid when told (so the kill lands while the test's
 * publish is in flight); returns its pid. */
static pid_t killer(pid_t victim, tu_pipe_t *go)
{
    pid_t k = tu_fork_raw();
    if (k == 0) {
        close(go->wr);
        if (tu_await(go) == 0)
            kill(victim, SIGKILL);
        tu_exit(0);
    }
    close(go->rd);
    return k;
}

/* A publish of m<n> not answered 200: it must be 503 with a clear body
 * and Retry-After; one in flight when the link fell may have been stored
 * (1), else it was refused. */
static int refusal(msgs_t *m, int st)
{
    char hv[64];
    ck_assert_msg(st == 503, "publish m%d without Redis: %d %s", m->n, st, R.body);
    ck_assert_msg(strstr(R.body, "Redis is unavailable: "), "503 body: %s", R.body);
    ck_assert_msg(td_header(&R, "Retry-After", hv, sizeof hv), "no Retry-After: %s", R.head);
    m->st[m->n] = strstr(R.body, "may have been stored") ? M_MAYBE : M_REFUSED;
    return m->st[m->n] == M_MAYBE;
}

START_TEST(redis_killed_and_restarted)
{
    static msgs_t m;
    static node_t nd;
    const char *specs = "es1 ws1 lp1 st1 es0 st0";
    tr_srv_t srv = {0};
    td_srv_t d[2];
    tu_pipe_t go;
    char text[32];
    int n = (int)tu_scale(40, 4), refused = 0, maybe = 0;
    memset(&m, 0, sizeof m);
    tr_srv_start(&srv);
    start_instances(d, 2, srv.port);
    node_start(&nd, "kill", d, 2, specs);
    await_subs(&d[1], "kill", 4);
    await_subs(&d[0], "kill", 2);
    publish_ok(&d[0], "kill", &m, n);

    /* the kill lands during the next publishes */
    tu_pipe(&go);
    pid_t k = killer(srv.pid, &go);
    tu_signal(&go);
    uint64_t end = tu_now_ms() + (uint64_t)td_bound(20000);
    while (refused < 5) { /* until five refusals in a row: Redis is gone for the link */
        ck_assert_msg(tu_now_ms() < end, "publishes were not refused after Redis died");
        snprintf(text, sizeof text, "m%d", ++m.n);
        int st = publish(&d[0], "kill", text);
        if (st == 200) {
            m.st[m.n] = M_OK;
            refused = 0;
            continue;
        }
        refused++;
        maybe += refusal(&m, st);
    }
    tu_wait_ok(k);
    close(go.wr);
    tr_srv_kill(&srv, SIGKILL); /* reaps it */
    ck_assert_msg(strstr(R.body, "the link to Redis is"), "503 body: %s", R.body);

    /* restarted: the first publish that is not refused is 200, after it all are */
    tr_srv_start(&srv);
    for (;;) {
        ck_assert_msg(tu_now_ms() < end + (uint64_t)td_bound(20000), "Redis back, still 503");
        snprintf(text, sizeof text, "m%d", ++m.n);
        int st = publish(&d[0], "kill", text);
        if (st == 200) {
            m.st[m.n] = M_OK;
            break;
        }
        maybe += refusal(&m, st);
        tu_pause_ms(20); /* the link's backoff */
    }
    publish_ok(&d[0], "kill", &m, n);
    publish_end(&d[0], "kill");
    node_finish(&nd);
    msgs_read_stream(&m, srv.port, "kill");
    check_clients(&nd, specs, &m);
    /* the streaming subscribers stayed connected through the outage */
    ck_assert_int_eq(node_lines(&nd, "open es1"), 1);
    ck_assert_int_eq(node_lines(&nd, "open ws1"), 1);
    ck_assert_int_eq(node_lines(&nd, "open st1"), 1);
    ck_assert_int_eq(node_lines(&nd, "open es0"), 1);
    ck_assert_int_eq(node_lines(&nd, "open st0"), 1);
    for (int i = 0; i < 2; i++)
        ck_assert_int_ge(td_stat(d[i].port, NULL, "redis.reconnects"), 1);
    fprintf(stderr, "redis_killed_and_restarted: %d published, %d uncertain (in flight)\n",
            m.n, maybe);
    stop_instances(d, 2);
    tr_srv_stop(&srv);
}
END_TEST

/* ==== B's relay SIGKILLed: respawned, it catches B up ============================================ */

START_TEST(relay_killed_resumes)
{
    static msgs_t m;
    static node_t nd;
    char specs[256];
    tr_srv_t srv = {0};
    td_srv_t d[2];
    int n = (int)tu_scale(40, 4);
    /* the movers leave A for B while B's store is behind A's (its relay
     * dead): B must not give them again what it catches up to */
    snprintf(specs, sizeof specs, "es1 ws1 lp1 st1 es0 es0>1@%d ws0>1@%d lp0>1@%d st0>1@%d",
             n + n / 2, n + n / 2, n + n / 2, n + n / 2);
    memset(&m, 0, sizeof m);
    tr_srv_start(&srv);
    start_instances(d, 2, srv.port);
    node_start(&nd, "relay", d, 2, specs);
    await_subs(&d[1], "relay", 4);
    await_subs(&d[0], "relay", 5);
    publish_ok(&d[0], "relay", &m, n);

    /* B's master held stopped: the relay stays dead while A publishes */
    td_await_stat(d[1].port, "?id=relay", "published_messages", n, 10000);
    pid_t relay = (pid_t)td_stat(d[1].port, NULL, "redis.relay_pid");
    ck_assert_int_gt(relay, 0);
    ck_assert_int_eq(kill(d[1].master, SIGSTOP), 0);
    ck_assert_int_eq(kill(relay, SIGKILL), 0);
    publish_ok(&d[0], "relay", &m, n);
    await_subs(&d[1], "relay", 8); /* the movers are on B, ahead of its store */
    ck_assert_int_eq(td_stat(d[1].port, "?id=relay", "published_messages"), n);
    ck_assert_int_eq(kill(d[1].master, SIGCONT), 0);
    publish_end(&d[0], "relay");
    node_finish(&nd);
    ck_assert_int_ne(td_stat(d[1].port, NULL, "redis.relay_pid"), relay);
    /* what A published meanwhile came by the catch-up */
    ck_assert_int_ge(td_stat(d[1].port, NULL, "redis.caught_up"), n);
    msgs_read_stream(&m, srv.port, "relay");
    check_clients(&nd, specs, &m);
    td_stop(&d[0], 0);
    ck_assert(td_log_has(&d[1], "exited on signal 9")); /* the relay's death, logged */
    td_stop(&d[1], 1);
    tr_srv_stop(&srv);
}
END_TEST

/* ==== a 3-master Redis Cluster ===================================================================== */

/* The index of the cluster node that serves channel ch (its master). */
static int cluster_owner(tr_srv_t cl[3], const char *ch)
{
    redisContext *c = tr_srv_conn(&cl[0]);
    redisReply *r = redisCommand(c, "XLEN " NS ":{%s}", ch);
    int owner = -1;
    ck_assert_ptr_nonnull(r);
    if (r->type == REDIS_REPLY_INTEGER)
        owner = 0;
    else if (r->type == REDIS_REPLY_ERROR && !strncmp(r->str, "MOVED ", 6)) {
        const char *colon = strrchr(r->str, ':');
        int port = colon ? atoi(colon + 1) : 0;
        for (int i = 0; i < 3; i++)
            if (cl[i].port == port)
                owner = i;
    }
    freeReplyObject(r);
    redisFree(c);
    ck_assert_msg(owner >= 0, "no owner for %s", ch);
    return owner;
}

START_TEST(cluster_fan_out_and_resume)
{
    static msgs_t m[3];
    static node_t nd[3];
    const char *specs = "es0 ws1 lp1 st0 es1>0@10 st0>1@10";
    tr_srv_t cl[3];
    td_srv_t d[2];
    char ch[3][16];
    int n = (int)tu_scale(30, 3), found = 0;
    memset(m, 0, sizeof m);
    tr_cluster_start(cl);
    /* one channel on each master */
    for (int i = 0; found < 7 && i < 1000; i++) {
        char name[16];
        snprintf(name, sizeof name, "c%d", i);
        int o = cluster_owner(cl, name);
        if (!(found & (1 << o))) {
            snprintf(ch[o], sizeof ch[o], "%s", name);
            found |= 1 << o;
        }
    }
    ck_assert_int_eq(found, 7);
    /* A on one node, B on another: each finds the whole cluster */
    char main_text[2][256], inst[32];
    for (int i = 0; i < 2; i++) {
        memset(&d[i], 0, sizeof d[i]);
        d[i].port = tu_free_port();
        snprintf(main_text[i], sizeof main_text[i],
                 "channels_redis redis://127.0.0.1:%d namespace=" NS " backoff=50ms;",
                 cl[i].port);
        snprintf(inst, sizeof inst, "drc%ld_%d", (long)getpid(), i);
        td_start(&d[i], inst, workers(), main_text[i],
                 "push_stream_shared_memory_size 8m;\n"
                 "push_stream_max_messages_stored_per_channel 1000;",
                 LOCATIONS);
        td_await_str(d[i].port, NULL, "redis.state", "up", 10000);
        ck_assert_int_eq(td_stat(d[i].port, NULL, "redis.cluster"), 1);
        ck_assert_int_eq(td_stat(d[i].port, NULL, "redis.nodes"), 3);
    }
    for (int c = 0; c < 3; c++)
        node_start(&nd[c], ch[c], d, 2, specs);
    for (int c = 0; c < 3; c++) {
        await_subs(&d[0], ch[c], 3);
        await_subs(&d[1], ch[c], 3);
    }
    for (int i = 0; i < n; i++) /* interleaved over the three masters */
        for (int c = 0; c < 3; c++)
            publish_ok(&d[i % 2 ? 1 : 0], ch[c], &m[c], 1);
    for (int c = 0; c < 3; c++)
        publish_end(&d[0], ch[c]);
    for (int c = 0; c < 3; c++) {
        node_finish(&nd[c]);
        msgs_read_stream(&m[c], cl[c].port, ch[c]);
        check_clients(&nd[c], specs, &m[c]);
        ck_assert_int_eq(node_lines(&nd[c], "moved es1>0@10"), 1);
    }
    stop_instances(d, 2);
    tr_cluster_stop(cl);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("demo_redis");
    TCase *tc = tcase_create("redis");
    tcase_set_timeout(tc, tu_valgrind() ? 600 : 60);
    tcase_add_test(tc, three_instances_every_mode);
    tcase_add_test(tc, redis_killed_and_restarted);
    tcase_add_test(tc, relay_killed_resumes);
    tcase_add_test(tc, cluster_fan_out_and_resume);
    suite_add_tcase(s, tc);
    return tu_run(s);
}
